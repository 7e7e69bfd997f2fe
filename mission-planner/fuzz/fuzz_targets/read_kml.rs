//! KML reader: never panics; accepted inputs write back and read back
//! identical (names are trimmed by the reader, so compare geometry).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tiancha_mission_planner::formats::{kml, Role};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(inp) = kml::read_kml(text, Role::Area) {
        let again = kml::write_kml(&inp, &[]);
        let back = kml::read_kml(&again, Role::Area).expect("written KML reads back");
        assert_eq!(back.areas.len(), inp.areas.len());
        assert_eq!(back.no_fly_zones.len(), inp.no_fly_zones.len());
        assert_eq!(back.points_of_interest.len(), inp.points_of_interest.len());
        for (a, b) in back.areas.iter().zip(&inp.areas) {
            assert_eq!(a.polygon, b.polygon);
        }
    }
});
