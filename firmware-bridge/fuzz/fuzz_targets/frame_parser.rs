//! The receive path from raw bytes: framing (stream and datagram), CRC,
//! signature checks, decoding, and the whole link core's handling of
//! whatever decodes. Must never panic; anything decoded must re-encode to
//! a frame that decodes to the same bytes again.
#![no_main]
#![allow(deprecated)]

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tiancha_firmware_bridge::codec::{encode, Decoder};
use tiancha_firmware_bridge::core::{BridgeConfig, Core};
use tiancha_firmware_bridge::pose::PoseHistory;
use tiancha_firmware_bridge::signing::{SigningKey, Verifier};
use tiancha_firmware_bridge::transport::Packet;

fuzz_target!(|data: &[u8]| {
    let split = if data.is_empty() { 0 } else { data[0] as usize % (data.len() + 1) };
    // Stream framing, split anywhere.
    let mut d = Decoder::new(None);
    let mut got = d.push_stream(&data[..split], 0);
    got.extend(d.push_stream(&data[split..], 0));
    // Datagram framing with signing required.
    let key = SigningKey::from_passphrase("fuzz");
    let mut ds = Decoder::new(Some(Verifier::new(key, true)));
    let _ = ds.push_datagram(data, 1_700_000_000_000_000);
    // Round trip of whatever decoded.
    for r in &got {
        let b1 = encode(r.header.system_id as u8, r.header.component_id, 0, &r.msg, None);
        let back = Decoder::new(None).push_datagram(&b1, 0);
        assert_eq!(back.len(), 1, "re-encoded frame does not decode: {:?}", r.msg);
        let b2 = encode(r.header.system_id as u8, r.header.component_id, 0, &back[0].msg, None);
        assert_eq!(b1, b2, "encode/decode not idempotent");
    }
    // The link core: discovery, telemetry, mission and command handling.
    let t0 = Instant::now();
    let poses = Arc::new(RwLock::new(PoseHistory::default()));
    let mut core = Core::new(BridgeConfig::default(), t0, 1_700_000_000_000_000, poses.clone());
    core.handle_packet(1, &Packet::Stream(data[..split].to_vec()), t0);
    core.handle_packet(2, &Packet::Datagram(data[split..].to_vec()), t0 + Duration::from_millis(5));
    core.handle_timeout(t0 + Duration::from_secs(3));
    while core.poll_transmit().is_some() {}
    while core.poll_event().is_some() {}
    let _ = poses.read().unwrap().pose_at(1_700_000_000_100.0);
});
