//! GeoJSON reader: never panics; accepted inputs write back and read back
//! identical.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tiancha_mission_planner::formats::{geojson, Role};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(inp) = geojson::read_geojson(text, Role::Area) {
        let again = geojson::write_inputs(&inp);
        let back = geojson::read_geojson(&again, Role::Area).expect("written GeoJSON reads back");
        assert_eq!(back, inp);
    }
});
