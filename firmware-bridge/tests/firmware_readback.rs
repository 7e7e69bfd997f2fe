//! The read-back rules against replies recorded from the real firmware
//! (`tests/data/firmware-replies/`, recorded by
//! `scripts/sitl/record_replies.py` from ArduCopter SITL and PX4 SITL).
//!
//! For each list the test checks that what the firmware returned is
//! accepted under that autopilot's rules, that it would *not* be accepted
//! without them (so each rule is needed), and that a real change (a moved
//! waypoint) is still caught.

use std::path::PathBuf;

use serde_json::Value;
use tiancha_firmware_bridge::mission::{readback_rules, verify, MissionError};
use tiancha_firmware_bridge::state::AutopilotKind;
use tiancha_protocol::mission::{MissionItem, MissionType};

fn data(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/firmware-replies")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn num(v: &Value) -> f32 {
    match v {
        Value::String(s) if s.eq_ignore_ascii_case("nan") => f32::NAN,
        v => v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) as f32,
    }
}

fn item(v: &Value) -> MissionItem {
    MissionItem {
        frame: v["frame"].as_u64().unwrap() as u8,
        command: v["command"].as_u64().unwrap() as u16,
        autocontinue: v["autocontinue"].as_bool().unwrap(),
        param1: num(&v["param1"]),
        param2: num(&v["param2"]),
        param3: num(&v["param3"]),
        param4: num(&v["param4"]),
        x: v["x"].as_i64().unwrap() as i32,
        y: v["y"].as_i64().unwrap() as i32,
        z: num(&v["z"]),
    }
}

fn list(d: &Value, ty: &str, which: &str) -> Vec<MissionItem> {
    d["lists"][ty][which]
        .as_array()
        .unwrap_or_else(|| panic!("{ty}.{which} missing"))
        .iter()
        .map(item)
        .collect()
}

fn check(file: &str, kind: AutopilotKind) {
    let d = data(file);
    let mut rewritten = 0;
    for (name, ty) in [
        ("mission", MissionType::Mission),
        ("fence", MissionType::Fence),
        ("rally", MissionType::Rally),
    ] {
        let sent = list(&d, name, "sent");
        let on_board = list(&d, name, "on_board");
        assert!(!sent.is_empty(), "{file}: {name} list is empty");
        verify(kind, ty, &sent, &on_board).unwrap_or_else(|e| {
            panic!("{file}: {name}: the firmware's own read-back is refused: {e}")
        });
        // Without the rules (an autopilot tiancha does not know), the
        // firmware's rewrites are differences: each rule is needed.
        let strict = verify(AutopilotKind::Other(0), ty, &sent, &on_board);
        if !readback_rules(kind, ty).is_empty() {
            if let Err(MissionError::VerificationFailed { diffs, .. }) = &strict {
                rewritten += diffs.len();
            }
        }
        // A real difference is still caught: move the last positional item.
        if let Some(i) = on_board.iter().rposition(|it| it.x != 0) {
            let mut moved = on_board.clone();
            moved[i].x += 100; // ~11 m north
            match verify(kind, ty, &sent, &moved) {
                Err(MissionError::VerificationFailed { diffs, .. }) => {
                    assert!(
                        diffs.iter().any(|d| d.field == "x" && d.seq == i),
                        "{diffs:?}"
                    )
                }
                other => panic!("{file}: {name}: a moved item passed: {other:?}"),
            }
        }
    }
    assert!(
        rewritten > 0,
        "{file}: the recording shows no rewrite at all; the rules would be untested"
    );
}

#[test]
fn ardupilot_replies_pass_under_ardupilot_rules() {
    check("ardupilot-copter-90700977.json", AutopilotKind::ArduPilot);
}

#[test]
fn px4_replies_pass_under_px4_rules() {
    check("px4-v1.15.4.json", AutopilotKind::Px4);
}

#[test]
fn ardupilot_frames_of_non_positional_items_are_the_named_rewrite() {
    let d = data("ardupilot-copter-90700977.json");
    let sent = list(&d, "mission", "sent");
    let on_board = list(&d, "mission", "on_board");
    let Err(MissionError::VerificationFailed { diffs, .. }) = verify(
        AutopilotKind::Other(0),
        MissionType::Mission,
        &sent,
        &on_board,
    ) else {
        panic!("strict comparison passed");
    };
    let frames: Vec<_> = diffs.iter().filter(|d| d.field == "frame").collect();
    assert!(!frames.is_empty(), "{diffs:?}");
    for f in frames {
        let it = sent[f.seq];
        assert!(
            !tiancha_protocol::mission::command_has_position(it.command),
            "a positional item's frame was rewritten: {f:?}"
        );
        assert_eq!(f.on_board, "0", "{f:?}");
    }
}
