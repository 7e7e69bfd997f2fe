//! HMAC-SHA256 signatures on dispute-system traffic, both ways.
//!
//! Header `X-Tiancha-Signature: t=<unix seconds>,v1=<hex HMAC>` where the
//! HMAC (SHA-256, the route's secret as key) covers `"<t>." + body`. The
//! time inside the signed text stops replays of an old request beyond the
//! tolerance window; several `v1=` values may be given (secret rotation).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-tiancha-signature";
/// The idempotency header: the case id, `{case_id}.rev{n}` for the n-th
/// update of a case (see [`crate::store::outbox::idempotency_key`]).
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// The revision of the case a request carries (0: as first sent).
pub const REVISION_HEADER: &str = "x-tiancha-case-revision";

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. `Display` is fit for the 401 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Tiancha-Signature header")]
    Missing,
    #[error("malformed X-Tiancha-Signature header (expected `t=<unix seconds>,v1=<hex>`)")]
    Malformed,
    #[error("signature timestamp is {0} s away from now (tolerance {1} s): replay or clock skew")]
    Stale(i64, i64),
    #[error("signature does not match the body")]
    Mismatch,
}

fn mac(secret: &[u8], t_unix_s: i64, body: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(t_unix_s.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The header value for `body` signed at `t_unix_s`.
pub fn sign(secret: &[u8], t_unix_s: i64, body: &[u8]) -> String {
    let tag = mac(secret, t_unix_s, body).finalize().into_bytes();
    format!("t={t_unix_s},v1={}", hex::encode(tag))
}

/// Check a header value against `body`, in constant time.
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now_unix_s: i64,
    tolerance_s: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut sigs = vec![];
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match k {
            "t" => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            "v1" => sigs.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() || sigs.len() > 4 {
        return Err(SignatureError::Malformed);
    }
    // Any i64 may arrive in the header: no arithmetic that can overflow.
    if now_unix_s.abs_diff(t) > tolerance_s.unsigned_abs() {
        return Err(SignatureError::Stale(
            now_unix_s.saturating_sub(t),
            tolerance_s,
        ));
    }
    for s in sigs {
        if mac(secret, t, body).verify_slice(&s).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let h = sign(b"s3cret", 1_700_000_000, b"{\"a\":1}");
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(
            verify(b"s3cret", Some(&h), b"{\"a\":1}", 1_700_000_010, 300),
            Ok(())
        );
        assert_eq!(
            verify(b"s3cret", Some(&h), b"{\"a\":2}", 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", Some(&h), b"{\"a\":1}", 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"s3cret", Some(&h), b"{\"a\":1}", 1_700_001_000, 300),
            Err(SignatureError::Stale(1000, 300))
        );
        assert_eq!(
            verify(b"s3cret", None, b"", 0, 300),
            Err(SignatureError::Missing)
        );
        for bad in ["", "t=x,v1=00", "v1=00", "t=1", "t=1,v1=zz", "garbage"] {
            assert!(
                verify(b"s3cret", Some(bad), b"", 1, 300).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        for t in [i64::MIN, i64::MAX, -1] {
            let h = format!("t={t},v1=00");
            assert!(matches!(
                verify(b"k", Some(&h), b"{}", 1_700_000_000, 300),
                Err(SignatureError::Stale(..))
            ));
        }
    }

    #[test]
    fn matches_an_independent_hmac() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
        // Our signed text is "<t>." + body, so split the data accordingly is
        // not possible; instead check the HMAC primitive through a known
        // vector with t folded into the body prefix.
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
