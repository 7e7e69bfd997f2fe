//! The simulator's thermal view at night, scored by the thermal eye's
//! hotspot detector (`tiancha_inference::hotspot`): a straw fire and a
//! gathering on a field with a road, a pond and a hamlet. The fire band
//! finds the fire where the renderer's truth puts it and nothing else;
//! the people band finds the gathering's warm bodies, not the warm road
//! or the pond; both through the radiometric GRAY16 frame the gimbal
//! would send, and the palette picture finds the fire too.

use std::sync::Arc;

use tiancha_geometry::camera::{Attitude, CameraPose, GimbalAngles, GimbalMount};
use tiancha_geometry::geodesy::{LatLon, LocalFrame};
use tiancha_inference::hotspot::{
    heat_from_palette, heat_from_radiometric, Calibration, HotspotBand, HotspotDetector,
};
use tiancha_inference::Detection;
use tiancha_sim::camera::thermal::{
    to_gray16, to_palette, Temperatures, ThermalRenderer, ThermalSpec,
};
use tiancha_sim::camera::{GroundTexture, Scenario};

const SCENE: &str = r#"
name = "night"
ground_alt_m = 70.0
origin = { lat_deg = 28.45, lon_deg = 117.94 }
seed = 3
[ground]
west_m = -150.0
east_m = 150.0
south_m = -150.0
north_m = 150.0
[[ground.water]]
name = "pond"
polygon = [
  { lat_deg = 28.45020, lon_deg = 117.94030 },
  { lat_deg = 28.45020, lon_deg = 117.94060 },
  { lat_deg = 28.45035, lon_deg = 117.94060 },
  { lat_deg = 28.45035, lon_deg = 117.94030 },
]
[[ground.roads]]
name = "road"
width_m = 6.0
path = [
  { lat_deg = 28.44960, lon_deg = 117.93900 },
  { lat_deg = 28.45010, lon_deg = 117.94100 },
]
[[ground.villages]]
name = "hamlet"
houses = 4
polygon = [
  { lat_deg = 28.45040, lon_deg = 117.93930 },
  { lat_deg = 28.45040, lon_deg = 117.93970 },
  { lat_deg = 28.45060, lon_deg = 117.93970 },
  { lat_deg = 28.45060, lon_deg = 117.93930 },
]
[[incidents]]
id = "straw"
kind = "fire"
at = { lat_deg = 28.45000, lon_deg = 117.94000 }
radius_m = 2.5
[[incidents]]
id = "crowd"
kind = "gathering"
at = { lat_deg = 28.45000, lon_deg = 117.93975 }
people = 6
radius_m = 3.0
"#;

/// TLinear at 0.01 K (FLIR Boson / Lepton).
const CAL: Calibration = Calibration {
    gain_c_per_count: 0.01,
    offset_c: -273.15,
};

fn overlaps(d: &Detection, b: &[f64; 4]) -> bool {
    let (x1, y1, x2, y2) = (
        d.bbox.x1 as f64,
        d.bbox.y1 as f64,
        d.bbox.x2 as f64,
        d.bbox.y2 as f64,
    );
    x1 < b[2] + 2.0 && x2 > b[0] - 2.0 && y1 < b[3] + 2.0 && y2 > b[1] - 2.0
}

#[test]
fn at_night_the_fire_and_the_gathering_are_the_hot_and_warm_spots() {
    let scenario = Arc::new(Scenario::from_toml(SCENE, "night.toml").unwrap());
    let ground = Arc::new(GroundTexture::generate(&scenario).unwrap());
    let r = ThermalRenderer::new(
        scenario.clone(),
        ground,
        ThermalSpec::default(),
        Temperatures::night(),
    )
    .unwrap();
    // 60 m up, 60 m south of the fire, 45° down, facing north.
    let target = LocalFrame::new(LatLon::new(28.45, 117.94).with_alt(70.0));
    let pose = CameraPose::new(
        0,
        target.from_ned(nalgebra::Vector3::new(-60.0, -10.0, -60.0)),
        Attitude::new(0.0, 0.0, 0.0),
        GimbalAngles::new(0.0, -45.0, 0.0, GimbalMount::Stabilized),
    );
    let f = r.render(&pose, 10.0).unwrap();
    assert_eq!(f.fires.len(), 1);
    assert!(f.fires[0].in_image, "{:?}", f.fires);
    let people: Vec<_> = f.people.iter().filter(|p| p.in_image).collect();
    assert_eq!(people.len(), 6, "{:?}", f.people);

    // Radiometric: GRAY16 counts back to °C through the calibration.
    let counts = to_gray16(&f.celsius, CAL.gain_c_per_count, CAL.offset_c).unwrap();
    let celsius = heat_from_radiometric(&counts, &CAL).unwrap();
    let det = HotspotDetector::new(vec![
        HotspotBand::radiometric_fire(),
        HotspotBand::radiometric_person(),
    ])
    .unwrap();
    let found = det.detect(&celsius).unwrap();
    let fires: Vec<&Detection> = found.iter().filter(|d| d.class_id == 0).collect();
    let bodies: Vec<&Detection> = found.iter().filter(|d| d.class_id == 1).collect();
    assert_eq!(fires.len(), 1, "{found:?}");
    assert!(
        overlaps(fires[0], &f.fires[0].box_px),
        "{:?} vs {:?}",
        fires[0],
        f.fires[0]
    );
    // Every warm body is a person of the gathering (a pair standing close
    // may merge into one blob); none is the road, the pond or a roof.
    assert!(
        (4..=6).contains(&bodies.len()),
        "{} warm blobs: {bodies:?}",
        bodies.len()
    );
    for b in &bodies {
        assert!(
            people.iter().any(|p| overlaps(b, &p.box_px)),
            "a warm blob where nobody stands: {b:?}"
        );
    }

    // Palette (white-hot, automatic gain): the fire band finds the fire.
    let palette = to_palette(&f.celsius).unwrap();
    let heat = heat_from_palette(&palette).unwrap();
    let det = HotspotDetector::new(vec![HotspotBand::palette_fire()]).unwrap();
    let found = det.detect(&heat).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(overlaps(&found[0], &f.fires[0].box_px));
}
