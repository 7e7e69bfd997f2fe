//! A dispute system's status callback as the ground station receives it
//! (`POST /api/callbacks/{route}`): the `X-Tiancha-Signature` header and
//! the body, from raw bytes. The signature check and the body decoding
//! must never panic, whatever the header says (huge or negative times,
//! odd hex, many `v1=` values); a body signed with the route's secret
//! within the tolerance verifies, and the same body with one bit flipped
//! does not.
//!
//! Input layout: byte 0 = header length (0–255), then the header, then
//! the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tiancha_ground_station::dispatch::sign::{sign, verify};
use tiancha_protocol::{decode, CaseStatusUpdate};

const SECRET: &[u8] = b"route-secret-for-fuzzing";
const NOW_S: i64 = 1_795_000_000;
const TOLERANCE_S: i64 = 300;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize).min(rest.len());
    let (header, body) = rest.split_at(n);
    let header = String::from_utf8_lossy(header);
    if verify(SECRET, Some(&header), body, NOW_S, TOLERANCE_S).is_ok() {
        // Only bodies signed with the secret get here (the fuzzer cannot
        // forge HMAC-SHA256): decoding must not panic either way.
        let _ = decode::<CaseStatusUpdate>(body);
    }
    let _ = decode::<CaseStatusUpdate>(body);

    // What an honest dispute system sends verifies; a flipped bit does not.
    let t = NOW_S - (n as i64 % TOLERANCE_S);
    let good = sign(SECRET, t, body);
    assert!(verify(SECRET, Some(&good), body, NOW_S, TOLERANCE_S).is_ok());
    if !body.is_empty() {
        let mut bad = body.to_vec();
        bad[n % body.len()] ^= 1 << (n % 8);
        assert!(verify(SECRET, Some(&good), &bad, NOW_S, TOLERANCE_S).is_err());
    }
});
