//! Files as text ↔ data (no I/O here; the caller reads and writes):
//! QGroundControl `.plan`, GeoJSON and KML.
//!
//! GeoJSON and KML carry the *inputs* (areas, no-fly zones, points of
//! interest, home, rally points) and the planned route. A feature's role
//! comes from its `kind` property (`area`, `no_fly_zone`,
//! `point_of_interest`, `home`, `rally`), or from the default the caller
//! gives (the CLI's `--area` file holds areas, …).

pub mod geojson;
pub mod kml;
pub mod qgc;

use serde::{Deserialize, Serialize};
use tiancha_geometry::geodesy::LatLon;

use crate::request::{Area, NoFlyZone, PointOfInterest};

/// What a GeoJSON or KML file can hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Inputs {
    pub areas: Vec<Area>,
    pub no_fly_zones: Vec<NoFlyZone>,
    pub points_of_interest: Vec<PointOfInterest>,
    pub home: Option<LatLon>,
    pub rally_points: Vec<LatLon>,
}

impl Inputs {
    pub fn extend(&mut self, other: Inputs) {
        self.areas.extend(other.areas);
        self.no_fly_zones.extend(other.no_fly_zones);
        self.points_of_interest.extend(other.points_of_interest);
        if other.home.is_some() {
            self.home = other.home;
        }
        self.rally_points.extend(other.rally_points);
    }
}

/// The role of a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Area,
    NoFlyZone,
    PointOfInterest,
    Home,
    Rally,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', ' '], "_")
            .as_str()
        {
            "area" | "patrol_area" | "grid_cell" | "village" => Some(Role::Area),
            "no_fly_zone" | "no_fly" | "nofly" | "nfz" | "exclusion" => Some(Role::NoFlyZone),
            "point_of_interest" | "poi" | "point" => Some(Role::PointOfInterest),
            "home" | "launch" => Some(Role::Home),
            "rally" | "rally_point" => Some(Role::Rally),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Area => "area",
            Role::NoFlyZone => "no_fly_zone",
            Role::PointOfInterest => "point_of_interest",
            Role::Home => "home",
            Role::Rally => "rally",
        }
    }
}

/// Upper bound on points per file, so a hostile file cannot exhaust
/// memory through the planner.
pub const MAX_POINTS: usize = 1_000_000;
