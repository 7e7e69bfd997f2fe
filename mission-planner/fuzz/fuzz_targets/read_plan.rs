//! QGroundControl `.plan` reader: never panics; whatever it accepts writes
//! back and reads back to the same missions.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tiancha_mission_planner::formats::qgc;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = qgc::read_plan(text) {
        let again = qgc::write_plan(&p.missions, p.autopilot, p.home, 5.0, 5.0);
        let back = qgc::read_plan(&again).expect("a written plan reads back");
        assert_eq!(back.missions.mission.len(), p.missions.mission.len());
        assert_eq!(back.missions.rally.len(), p.missions.rally.len());
    }
});
