//! Helpers shared by the integration tests.
#![allow(dead_code)]

use tiancha_geometry::geodesy::{LatLon, LocalFrame};
use tiancha_mission_planner::{
    Area, GeoPolygon, NoFlyZone, PlanRequest, PointOfInterest, ZoneShape,
};

pub const ORIGIN: LatLon = LatLon::new(28.45, 117.94);

pub fn frame() -> LocalFrame {
    LocalFrame::at(ORIGIN)
}

/// Local (east, north) metres → WGS84 around Shangrao.
pub fn ll(e: f64, n: f64) -> LatLon {
    frame().from_en(e, n)
}

pub fn ring(pts: &[(f64, f64)]) -> Vec<LatLon> {
    pts.iter().map(|&(e, n)| ll(e, n)).collect()
}

pub fn area(name: &str, ext: &[(f64, f64)], holes: &[&[(f64, f64)]]) -> Area {
    Area {
        name: name.into(),
        polygon: GeoPolygon {
            exterior: ring(ext),
            holes: holes.iter().map(|h| ring(h)).collect(),
        },
    }
}

pub fn circle_zone(name: &str, e: f64, n: f64, r: f64, buffer: f64) -> NoFlyZone {
    NoFlyZone {
        name: name.into(),
        shape: ZoneShape::Circle {
            center: ll(e, n),
            radius_m: r,
        },
        buffer_m: buffer,
    }
}

pub fn poly_zone(name: &str, pts: &[(f64, f64)], buffer: f64) -> NoFlyZone {
    NoFlyZone {
        name: name.into(),
        shape: ZoneShape::Polygon {
            polygon: GeoPolygon {
                exterior: ring(pts),
                holes: vec![],
            },
        },
        buffer_m: buffer,
    }
}

pub fn poi(name: &str, e: f64, n: f64, dwell: f64, prio: u8) -> PointOfInterest {
    PointOfInterest {
        name: name.into(),
        position: ll(e, n),
        dwell_s: dwell,
        priority: prio,
    }
}

/// A request with home at the local origin's south-west and defaults.
pub fn request(
    areas: Vec<Area>,
    zones: Vec<NoFlyZone>,
    pois: Vec<PointOfInterest>,
    home: (f64, f64),
) -> PlanRequest {
    let mut r = PlanRequest {
        areas,
        no_fly_zones: zones,
        points_of_interest: pois,
        ..Default::default()
    };
    r.vehicle.home = Some(ll(home.0, home.1));
    r
}

/// A non-convex, roughly 1 km² village with a pond (hole).
pub fn village() -> Area {
    area(
        "village",
        &[
            (0.0, 0.0),
            (1200.0, 0.0),
            (1200.0, 500.0),
            (600.0, 450.0),
            (550.0, 1100.0),
            (0.0, 1100.0),
        ],
        &[&[
            (150.0, 600.0),
            (140.0, 720.0),
            (280.0, 700.0),
            (260.0, 600.0),
        ]],
    )
}
