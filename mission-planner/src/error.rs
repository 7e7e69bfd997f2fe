//! The one error type of the planner. Every variant names the problem and
//! where it is (which polygon, which edge, which zone, which point), so an
//! operator can fix the input and the companion can refuse a command with a
//! readable reason.

use std::fmt;

/// A position for error messages, printed as `lat, lon` with 4 decimals
/// (about 10 m), which is what an operator needs to find the spot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Where {
    pub lat_deg: f64,
    pub lon_deg: f64,
}

impl fmt::Display for Where {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.4}, {:.4}", self.lat_deg, self.lon_deg)
    }
}

impl From<tiancha_geometry::geodesy::LatLon> for Where {
    fn from(p: tiancha_geometry::geodesy::LatLon) -> Self {
        Where {
            lat_deg: p.lat_deg,
            lon_deg: p.lon_deg,
        }
    }
}

/// Everything that can go wrong while planning, re-planning or reading a
/// file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// A parameter is out of range or missing.
    #[error("invalid {field}: {reason}")]
    InvalidParameter { field: String, reason: String },

    /// A coordinate is not a valid WGS84 position.
    #[error("{what}: point {index} ({lat}, {lon}) is not a valid WGS84 position")]
    InvalidCoordinate {
        what: String,
        index: usize,
        lat: f64,
        lon: f64,
    },

    /// A ring has fewer than three distinct points.
    #[error("{what} has only {points} distinct points; a ring needs at least 3")]
    TooFewPoints { what: String, points: usize },

    /// Two edges of a polygon cross.
    #[error("{what} self-intersects at edge {a0}–{a1} and {b0}–{b1} near {at}")]
    SelfIntersection {
        what: String,
        a0: usize,
        a1: usize,
        b0: usize,
        b1: usize,
        at: Where,
    },

    /// A hole is not inside its exterior ring.
    #[error("{what}: hole {hole} is not inside the exterior ring (near {at})")]
    HoleOutside {
        what: String,
        hole: usize,
        at: Where,
    },

    /// There is nothing to plan.
    #[error("nothing to plan: give an area or points of interest")]
    NothingToPlan,

    /// No home position and none can be inferred.
    #[error("no home / launch point given")]
    NoHome,

    /// The area lies entirely inside buffered no-fly zones (or beyond the
    /// allowed distance from home).
    #[error("area {area} has nothing left to cover: {reason}")]
    AreaNotCoverable { area: String, reason: String },

    /// A point is inside a buffered no-fly zone.
    #[error("{what} is unreachable: inside no-fly zone '{zone}' (buffer {buffer_m} m) at {at}")]
    InsideNoFlyZone {
        what: String,
        zone: String,
        buffer_m: f64,
        at: Where,
    },

    /// A point is outside the fence (the buffered area, limited by the
    /// maximum distance from home).
    #[error("{what} is outside the fence at {at}: {reason}")]
    OutsideFence {
        what: String,
        at: Where,
        reason: String,
    },

    /// No path stays clear of the no-fly zones and inside the fence.
    #[error("{what} is unreachable: no path from {from} to {to} stays outside the no-fly zones and inside the fence")]
    Unreachable {
        what: String,
        from: Where,
        to: Where,
    },

    /// Even the shortest leg does not fit the battery.
    #[error("battery too small: {what} needs {needed:.2} {unit}, {usable:.2} usable")]
    BatteryTooSmall {
        what: String,
        needed: f64,
        usable: f64,
        unit: &'static str,
    },

    /// The altitude does not fit the fence altitude limits.
    #[error("altitude {alt_m:.1} m is outside the fence altitude limits {min_m:.1}–{max_m:.1} m")]
    AltitudeOutsideFence { alt_m: f64, min_m: f64, max_m: f64 },

    /// A mission given for a re-plan is unusable.
    #[error("mission: {0}")]
    BadMission(String),

    /// A file could not be read.
    #[error("{format} {path}: {reason}")]
    Format {
        format: &'static str,
        path: String,
        reason: String,
    },
}

impl PlanError {
    pub(crate) fn param(field: impl Into<String>, reason: impl Into<String>) -> Self {
        PlanError::InvalidParameter {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn format(
        format: &'static str,
        path: impl Into<String>,
        reason: impl fmt::Display,
    ) -> Self {
        PlanError::Format {
            format,
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
