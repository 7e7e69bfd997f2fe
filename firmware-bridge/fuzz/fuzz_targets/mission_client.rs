//! The mission state machine against an adversarial autopilot: any
//! sequence of requests, items, counts, acks and timeouts. Must never
//! panic or hang, must only send items that exist with their true content,
//! and must only report success consistent with what it saw.
#![no_main]
#![allow(deprecated)]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tiancha_firmware_bridge::codec::{dialect, Msg};
use tiancha_firmware_bridge::mission::{
    item_from_mav, to_mav_type, MissionClient, MissionConfig, MissionOp, MissionOutcome,
};
use tiancha_protocol::mission::{cmd, MissionItem, MissionType};

fn ty(b: u8) -> MissionType {
    match b % 3 {
        0 => MissionType::Mission,
        1 => MissionType::Fence,
        _ => MissionType::Rally,
    }
}

fn item(k: u16) -> MissionItem {
    let mut it = MissionItem::nav(cmd::NAV_WAYPOINT, 28.0 + k as f64 * 1e-4, 117.0, 30.0 + k as f32);
    it.param1 = k as f32;
    it
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let t = ty(data[1]);
    let n = (data[2] as u16) % 40;
    let items: Vec<MissionItem> = (0..n).map(item).collect();
    let op = match data[0] % 3 {
        0 => MissionOp::Upload { ty: t, items: items.clone() },
        1 => MissionOp::Download { ty: t },
        _ => MissionOp::Clear { ty: t },
    };
    let mut c = MissionClient::new(MissionConfig {
        download_window: 1 + (data[0] / 3) as u16 % 5,
        ..MissionConfig::default()
    });
    let mut now = Instant::now();
    c.start(op.clone(), now).unwrap();
    let mut announced: Vec<u16> = Vec::new();
    let mut result = None;
    let mut i = 3;
    while i + 4 <= data.len() && result.is_none() {
        let (k, a, b, x) = (data[i], data[i + 1], data[i + 2], data[i + 3]);
        i += 4;
        let mt = if x & 0x80 != 0 { to_mav_type(ty(x)) } else { to_mav_type(t) };
        let seq = u16::from_le_bytes([a, b]) % 64;
        let msg = match k % 8 {
            0 => {
                now += Duration::from_millis(u16::from_le_bytes([a, b]) as u64 * 10);
                c.handle_timeout(now);
                None
            }
            1 => Some(Msg::MISSION_REQUEST(dialect::MISSION_REQUEST_DATA {
                seq, target_system: 1, target_component: 191, mission_type: mt,
            })),
            2 => Some(Msg::MISSION_REQUEST_INT(dialect::MISSION_REQUEST_INT_DATA {
                seq, target_system: 1, target_component: 191, mission_type: mt,
            })),
            3 => {
                let r: dialect::MavMissionResult =
                    num_traits_from(a % 16).unwrap_or(dialect::MavMissionResult::MAV_MISSION_ACCEPTED);
                Some(Msg::MISSION_ACK(dialect::MISSION_ACK_DATA {
                    target_system: 1, target_component: 191, mavtype: r, mission_type: mt, opaque_id: 0,
                }))
            }
            4 => {
                if mt == to_mav_type(t) {
                    announced.push(seq);
                }
                Some(Msg::MISSION_COUNT(dialect::MISSION_COUNT_DATA {
                    count: seq, target_system: 1, target_component: 191, mission_type: mt, opaque_id: 0,
                }))
            }
            5 | 6 => {
                let mut m = dialect::MISSION_ITEM_INT_DATA::default();
                m.seq = seq;
                m.x = i32::from_le_bytes([a, b, x, k]);
                m.param1 = f32::from_bits(u32::from_le_bytes([x, a, b, k]));
                m.mission_type = mt;
                Some(Msg::MISSION_ITEM_INT(m))
            }
            _ => Some(Msg::HEARTBEAT(dialect::HEARTBEAT_DATA::default())),
        };
        if let Some(m) = msg {
            c.handle(&m, now);
        }
        while let Some(out) = c.poll_transmit() {
            if let (MissionOp::Upload { items, ty }, Msg::MISSION_ITEM_INT(m)) = (&op, &out) {
                assert_eq!(m.mission_type, to_mav_type(*ty));
                let sent = item_from_mav(m);
                let want = items.get(m.seq as usize).expect("sent an item that does not exist");
                assert_eq!(sent.x, want.x);
                assert_eq!(sent.param1.to_bits(), want.param1.to_bits());
            }
        }
        result = c.poll_result();
    }
    // Let it time out: a transfer always ends.
    let mut guard = 0;
    while result.is_none() {
        now += Duration::from_secs(10);
        c.handle_timeout(now);
        while c.poll_transmit().is_some() {}
        result = c.poll_result();
        guard += 1;
        assert!(guard < 1000, "transfer never ends");
    }
    if let Some(Ok(MissionOutcome::Downloaded { items, .. })) = &result {
        assert!(matches!(op, MissionOp::Download { .. }));
        assert!(
            announced.contains(&(items.len() as u16)),
            "downloaded {} items but the vehicle announced {announced:?}",
            items.len()
        );
    }
    if let Some(Ok(MissionOutcome::Uploaded { .. })) = &result {
        assert!(matches!(op, MissionOp::Upload { .. }));
    }
    assert!(!c.is_busy(), "idle after the result");
});

fn num_traits_from(v: u8) -> Option<dialect::MavMissionResult> {
    use dialect::MavMissionResult::*;
    Some(match v {
        0 => MAV_MISSION_ACCEPTED,
        1 => MAV_MISSION_ERROR,
        2 => MAV_MISSION_UNSUPPORTED_FRAME,
        3 => MAV_MISSION_UNSUPPORTED,
        4 => MAV_MISSION_NO_SPACE,
        5 => MAV_MISSION_INVALID,
        6 => MAV_MISSION_INVALID_PARAM1,
        13 => MAV_MISSION_INVALID_SEQUENCE,
        14 => MAV_MISSION_DENIED,
        15 => MAV_MISSION_OPERATION_CANCELLED,
        _ => return None,
    })
}
