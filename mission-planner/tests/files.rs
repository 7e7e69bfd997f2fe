//! Round trips and readers: QGroundControl `.plan`, GeoJSON, KML.

mod common;

use common::*;
use tiancha_geometry::geodesy::LatLonAlt;
use tiancha_mission_planner::formats::{geojson, kml, qgc, Inputs, Role};
use tiancha_mission_planner::{plan_patrol, Autopilot, PlanRequest};
use tiancha_protocol::mission::{cmd, MissionItem, MissionSet};

/// Bit-for-bit equality (NaN params compare equal to themselves).
fn same(a: &MissionItem, b: &MissionItem) -> bool {
    a.frame == b.frame
        && a.command == b.command
        && a.autocontinue == b.autocontinue
        && a.param1.to_bits() == b.param1.to_bits()
        && a.param2.to_bits() == b.param2.to_bits()
        && a.param3.to_bits() == b.param3.to_bits()
        && a.param4.to_bits() == b.param4.to_bits()
        && a.x == b.x
        && a.y == b.y
        && a.z.to_bits() == b.z.to_bits()
}

fn assert_same_set(a: &MissionSet, b: &MissionSet) {
    for (name, x, y) in [
        ("mission", &a.mission, &b.mission),
        ("fence", &a.fence, &b.fence),
        ("rally", &a.rally, &b.rally),
    ] {
        assert_eq!(x.len(), y.len(), "{name} length");
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            assert!(same(p, q), "{name}[{i}]: {p:?} != {q:?}");
        }
    }
}

fn inputs() -> Inputs {
    let req = request(
        vec![
            village(),
            area(
                "east field",
                &[(1300.0, 0.0), (1700.0, 50.0), (1650.0, 400.0)],
                &[],
            ),
        ],
        vec![
            circle_zone("hospital helipad", 900.0, 250.0, 60.0, 30.0),
            poly_zone(
                "prison & yard <north>",
                &[(200.0, 200.0), (380.0, 220.0), (300.0, 380.0)],
                40.5,
            ),
        ],
        vec![
            poi("market", 700.0, 100.0, 30.0, 1),
            poi("学校门口 school gate", 450.0, 700.0, 45.25, 3),
        ],
        (-50.0, -50.0),
    );
    Inputs {
        areas: req.areas,
        no_fly_zones: req.no_fly_zones,
        points_of_interest: req.points_of_interest,
        home: req.vehicle.home,
        rally_points: vec![ll(-10.0, 30.0)],
    }
}

#[test]
fn a_plan_written_by_tiancha_reads_back_identical() {
    for autopilot in [Autopilot::Ardupilot, Autopilot::Px4] {
        let i = inputs();
        let mut req = PlanRequest {
            areas: i.areas,
            no_fly_zones: i.no_fly_zones,
            points_of_interest: i.points_of_interest,
            ..Default::default()
        };
        req.vehicle.home = i.home;
        req.vehicle.autopilot = autopilot;
        req.vehicle.home_alt_amsl_m = 71.3;
        req.vehicle.endurance_min = Some(16.0);
        let plan = plan_patrol(&req).unwrap();
        assert!(plan.sorties.len() >= 2);
        let home = LatLonAlt::new(plan.summary.home.lat_deg, plan.summary.home.lon_deg, 71.3);
        for s in &plan.sorties {
            let text = qgc::write_plan(&s.mission, autopilot, Some(home), 8.0, 5.0);
            let back = qgc::read_plan(&text).unwrap();
            assert_eq!(back.autopilot, autopilot);
            assert_same_set(&s.mission, &back.missions);
            // Written again, the text is the same.
            assert_eq!(
                qgc::write_plan(&back.missions, autopilot, back.home, 8.0, 5.0),
                text
            );
            // QGroundControl's structure.
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["fileType"], "Plan");
            assert_eq!(v["geoFence"]["version"], 2);
            assert_eq!(v["rallyPoints"]["version"], 2);
            assert_eq!(
                v["mission"]["firmwareType"],
                if autopilot == Autopilot::Ardupilot {
                    3
                } else {
                    12
                }
            );
            for it in v["mission"]["items"].as_array().unwrap() {
                assert_eq!(it["type"], "SimpleItem");
                assert_eq!(it["params"].as_array().unwrap().len(), 7);
                // QGroundControl's float frames, not the *_INT ones.
                assert!([0, 2, 3].contains(&it["frame"].as_u64().unwrap()), "{it}");
            }
            let polys = v["geoFence"]["polygons"].as_array().unwrap();
            assert_eq!(polys.iter().filter(|p| p["inclusion"] == true).count(), 1);
            assert_eq!(polys.iter().filter(|p| p["inclusion"] == false).count(), 1);
            assert_eq!(v["geoFence"]["circles"].as_array().unwrap().len(), 1);
        }
    }
}

#[test]
fn reads_a_qgroundcontrol_survey_and_fence() {
    // The shape QGroundControl 4 saves: a survey complex item with its
    // generated items, an exclusion circle, an inclusion polygon, rally.
    let text = r#"{
      "fileType": "Plan", "groundStation": "QGroundControl", "version": 1,
      "geoFence": {"version": 2,
        "circles": [{"circle": {"center": [28.451, 117.941], "radius": 55.5}, "inclusion": false, "version": 1}],
        "polygons": [{"inclusion": true, "version": 1,
          "polygon": [[28.449, 117.939], [28.449, 117.946], [28.455, 117.946], [28.455, 117.939]]}]},
      "mission": {"version": 2, "firmwareType": 3, "vehicleType": 2, "cruiseSpeed": 15, "hoverSpeed": 5,
        "plannedHomePosition": [28.4495, 117.9395, 70],
        "items": [
          {"type": "SimpleItem", "autoContinue": true, "command": 22, "doJumpId": 1, "frame": 3,
           "params": [0, 0, 0, null, 28.4495, 117.9395, 50]},
          {"type": "ComplexItem", "complexItemType": "survey", "version": 5,
           "polygon": [[28.450, 117.940], [28.450, 117.945], [28.454, 117.945], [28.454, 117.940]],
           "TransectStyleComplexItem": {"Items": [
             {"type": "SimpleItem", "autoContinue": true, "command": 16, "doJumpId": 2, "frame": 3,
              "params": [0, 0, 0, null, 28.450, 117.940, 50]},
             {"type": "SimpleItem", "autoContinue": true, "command": 16, "doJumpId": 3, "frame": 3,
              "params": [0, 0, 0, null, 28.450, 117.945, 50]}
           ]}},
          {"type": "SimpleItem", "autoContinue": true, "command": 20, "doJumpId": 4, "frame": 2,
           "params": [0, 0, 0, 0, 0, 0, 0]}
        ]},
      "rallyPoints": {"version": 2, "points": [[28.4496, 117.9396, 40]]}
    }"#;
    let p = qgc::read_plan(text).unwrap();
    assert_eq!(p.autopilot, Autopilot::Ardupilot);
    let m = &p.missions.mission;
    assert_eq!(m.len(), 5, "home + takeoff + 2 survey items + RTL");
    assert_eq!(m[1].command, cmd::NAV_TAKEOFF);
    assert!(m[1].param4.is_nan());
    assert_eq!(m[3].y, 1_179_450_000);
    assert_eq!(p.areas.len(), 1, "the survey polygon is the area");
    assert_eq!(p.no_fly_zones.len(), 1);
    assert_eq!(p.missions.fence.len(), 5);
    assert_eq!(p.rally_points.len(), 1);
    // And it plans.
    let mut req = PlanRequest {
        areas: p.areas,
        no_fly_zones: p.no_fly_zones,
        ..Default::default()
    };
    req.vehicle.home = p.home.map(|h| h.horizontal());
    assert!(plan_patrol(&req).is_ok());
}

#[test]
fn bad_plan_files_say_where() {
    let e = qgc::read_plan("{").unwrap_err().to_string();
    assert!(
        e.starts_with("QGroundControl plan (document): not JSON"),
        "{e}"
    );
    let e = qgc::read_plan(r#"{"fileType":"Plan","mission":{"items":[{"type":"SimpleItem","command":16,"frame":3,"autoContinue":true,"params":[0,0,0]}]}}"#)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "QGroundControl plan mission.items[0].params: must hold 7 values, has 3"
    );
    let e = qgc::read_plan(r#"{"fileType":"Plan","mission":{"items":[]},"geoFence":{"polygons":[{"polygon":[[95,1],[1,1],[1,2]]}]}}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("geoFence.polygons[0].polygon[0]") && e.contains("not a valid WGS84"),
        "{e}"
    );
}

#[test]
fn geojson_inputs_read_back_identical() {
    let i = inputs();
    let text = geojson::write_inputs(&i);
    let back = geojson::read_geojson(&text, Role::Area).unwrap();
    assert_eq!(back, i);
}

#[test]
fn kml_inputs_read_back_identical() {
    let i = inputs();
    let text = kml::write_kml(&i, &[vec![ll(0.0, 0.0), ll(10.0, 10.0)]]);
    let back = kml::read_kml(&text, Role::Area).unwrap();
    assert_eq!(back, i);
}

#[test]
fn plan_geojson_carries_routes_and_reads_back_its_inputs() {
    let i = inputs();
    let mut req = PlanRequest {
        areas: i.areas.clone(),
        no_fly_zones: i.no_fly_zones.clone(),
        points_of_interest: i.points_of_interest.clone(),
        ..Default::default()
    };
    req.vehicle.home = i.home;
    let plan = plan_patrol(&req).unwrap();
    let text = geojson::write_plan_geojson(&plan, &i);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let routes: Vec<&serde_json::Value> = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["properties"]["kind"] == "route")
        .collect();
    assert_eq!(routes.len(), plan.sorties.len());
    assert_eq!(routes[0]["geometry"]["type"], "LineString");
    let back = geojson::read_geojson(&text, Role::Area).unwrap();
    assert_eq!(back.areas, i.areas);
    assert_eq!(back.no_fly_zones, i.no_fly_zones);
    assert_eq!(back.points_of_interest, i.points_of_interest);
}

#[test]
fn kml_from_other_tools_uses_folders_and_defaults() {
    let text = r#"<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>
      <Folder><name>no_fly_zone</name>
        <Placemark><name>airport</name><Polygon><outerBoundaryIs><LinearRing><coordinates>
          117.94,28.45,0 117.95,28.45,0 117.95,28.46,0 117.94,28.45,0
        </coordinates></LinearRing></outerBoundaryIs></Polygon></Placemark>
      </Folder>
      <Placemark><name>cell</name><MultiGeometry>
        <Polygon><outerBoundaryIs><LinearRing><coordinates>117.90,28.40 117.91,28.40 117.91,28.41</coordinates></LinearRing></outerBoundaryIs></Polygon>
      </MultiGeometry></Placemark>
    </Document></kml>"#;
    let i = kml::read_kml(text, Role::Area).unwrap();
    assert_eq!(i.no_fly_zones.len(), 1);
    assert_eq!(i.no_fly_zones[0].name, "airport");
    assert_eq!(i.areas.len(), 1);
    let e = kml::read_kml(
        "<kml><Placemark><Point><coordinates>x,y</coordinates></Point></Placemark></kml>",
        Role::PointOfInterest,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "KML Placemark 0 tuple 0: 'x,y' is not lon,lat[,alt]");
}

#[test]
fn geojson_errors_say_which_feature() {
    let e = geojson::read_geojson(
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"kind":"poi"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}}]}"#,
        Role::Area,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "GeoJSON features[0]: a point_of_interest must be a Point, not a Polygon"
    );
    let e = geojson::read_geojson(
        r#"{"type":"Feature","properties":{"kind":"no_fly_zone"},"geometry":{"type":"Point","coordinates":[117.9,28.4]}}"#,
        Role::Area,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("needs radius_m"), "{e}");
}

#[test]
fn toml_config_is_validated_with_the_key() {
    use tiancha_mission_planner::config::PlanConfig;
    let ok = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/shangrao/plan.toml"
    ))
    .unwrap();
    let cfg = PlanConfig::from_toml(&ok).unwrap();
    assert_eq!(cfg.inputs.area, vec!["area.geojson".to_string()]);
    let e = PlanConfig::from_toml("[vehicle]\ncruise_speed = 8.0\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `cruise_speed`"), "{e}");
    let e = PlanConfig::from_toml("[camera]\nside_overlap = 1.5\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid camera.side_overlap: must be between 0 and 0.95, got 1.5"
    );
}
