//! The wire contract from raw bytes: every payload kind the ground
//! station and the companion decode (MQTT uplinks and downlinks, cases and
//! dispute-system status callbacks), and topic names. Must never panic;
//! whatever decodes must encode (it passed validation) and decode again to
//! the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tiancha_protocol::messages::Message;
use tiancha_protocol::{
    decode, encode, Alert, Case, CaseStatusUpdate, Command, CommandResult, DroneEvent,
    DroneStatus, Receipt, Telemetry, Topic,
};

fn round_trip<M: Message + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(m) = decode::<M>(bytes) {
        let again = encode(&m).unwrap_or_else(|e| {
            panic!("{}: decoded but does not encode: {e}", M::KIND)
        });
        let back: M = decode(&again).unwrap_or_else(|e| {
            panic!("{}: encoded but does not decode: {e}", M::KIND)
        });
        assert_eq!(back, m, "{}: round trip changed the value", M::KIND);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 10 {
        0 => round_trip::<DroneStatus>(bytes),
        1 => round_trip::<Telemetry>(bytes),
        2 => round_trip::<Alert>(bytes),
        3 => round_trip::<DroneEvent>(bytes),
        4 => round_trip::<Command>(bytes),
        5 => round_trip::<CommandResult>(bytes),
        6 => round_trip::<Receipt>(bytes),
        7 => round_trip::<Case>(bytes),
        8 => round_trip::<CaseStatusUpdate>(bytes),
        _ => {
            if let Ok(s) = std::str::from_utf8(bytes) {
                if let Ok(t) = Topic::parse(s) {
                    let text = t.to_string();
                    assert_eq!(Topic::parse(&text).ok(), Some(t), "topic round trip");
                }
            }
        }
    }
});
