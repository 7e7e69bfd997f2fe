//! Missions as plain data: the items the planner produces, the bridge
//! uploads and the ground station draws.
//!
//! A [`MissionItem`] mirrors MAVLink's `MISSION_ITEM_INT` (without the
//! target ids and sequence number, which the transfer adds): positions are
//! integers in 1e-7 degrees so what is uploaded and read back compares
//! exactly. A [`MissionSet`] bundles the three lists an autopilot holds:
//! the mission, the geofence and the rally points.

use serde::{Deserialize, Serialize};

use crate::validate::{self as v, Validate, ValidationError};

/// MAVLink `MAV_CMD` values tiancha uses.
pub mod cmd {
    pub const NAV_WAYPOINT: u16 = 16;
    pub const NAV_LOITER_UNLIM: u16 = 17;
    pub const NAV_LOITER_TURNS: u16 = 18;
    pub const NAV_LOITER_TIME: u16 = 19;
    pub const NAV_RETURN_TO_LAUNCH: u16 = 20;
    pub const NAV_LAND: u16 = 21;
    pub const NAV_TAKEOFF: u16 = 22;
    pub const CONDITION_YAW: u16 = 115;
    pub const DO_JUMP: u16 = 177;
    pub const DO_CHANGE_SPEED: u16 = 178;
    pub const DO_SET_ROI_LOCATION: u16 = 195;
    pub const DO_SET_ROI_NONE: u16 = 197;
    pub const DO_MOUNT_CONTROL: u16 = 205;
    pub const DO_GIMBAL_MANAGER_PITCHYAW: u16 = 1000;
    pub const NAV_FENCE_RETURN_POINT: u16 = 5000;
    pub const NAV_FENCE_POLYGON_VERTEX_INCLUSION: u16 = 5001;
    pub const NAV_FENCE_POLYGON_VERTEX_EXCLUSION: u16 = 5002;
    pub const NAV_FENCE_CIRCLE_INCLUSION: u16 = 5003;
    pub const NAV_FENCE_CIRCLE_EXCLUSION: u16 = 5004;
    pub const NAV_RALLY_POINT: u16 = 5100;
}

/// MAVLink `MAV_FRAME` values tiancha uses.
pub mod frame {
    pub const GLOBAL: u8 = 0;
    pub const MISSION: u8 = 2;
    pub const GLOBAL_RELATIVE_ALT: u8 = 3;
    pub const GLOBAL_INT: u8 = 5;
    pub const GLOBAL_RELATIVE_ALT_INT: u8 = 6;
}

/// True for the commands tiancha uses whose x/y/z are a position. An
/// autopilot may store the others without a frame (ArduPilot does).
pub fn command_has_position(command: u16) -> bool {
    use cmd::*;
    matches!(
        command,
        NAV_WAYPOINT
            | NAV_LOITER_UNLIM
            | NAV_LOITER_TURNS
            | NAV_LOITER_TIME
            | NAV_LAND
            | NAV_TAKEOFF
            | DO_SET_ROI_LOCATION
            | NAV_FENCE_RETURN_POINT
            | NAV_FENCE_POLYGON_VERTEX_INCLUSION
            | NAV_FENCE_POLYGON_VERTEX_EXCLUSION
            | NAV_FENCE_CIRCLE_INCLUSION
            | NAV_FENCE_CIRCLE_EXCLUSION
            | NAV_RALLY_POINT
    )
}

/// Which list on the autopilot (`MAV_MISSION_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissionType {
    Mission = 0,
    Fence = 1,
    Rally = 2,
}

/// One mission item, as in `MISSION_ITEM_INT`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MissionItem {
    /// `MAV_FRAME`.
    pub frame: u8,
    /// `MAV_CMD`.
    pub command: u16,
    pub autocontinue: bool,
    pub param1: f32,
    pub param2: f32,
    pub param3: f32,
    pub param4: f32,
    /// Latitude in 1e-7 degrees (or a local x, per frame).
    pub x: i32,
    /// Longitude in 1e-7 degrees (or a local y, per frame).
    pub y: i32,
    /// Altitude in metres (meaning per frame).
    pub z: f32,
}

impl MissionItem {
    /// A navigation item at a position, relative altitude frame.
    pub fn nav(command: u16, lat_deg: f64, lon_deg: f64, alt_rel_m: f32) -> Self {
        Self {
            frame: frame::GLOBAL_RELATIVE_ALT_INT,
            command,
            autocontinue: true,
            param1: 0.0,
            param2: 0.0,
            param3: 0.0,
            param4: 0.0,
            x: deg_to_e7(lat_deg),
            y: deg_to_e7(lon_deg),
            z: alt_rel_m,
        }
    }

    /// A non-positional command (e.g. `DO_CHANGE_SPEED`).
    pub fn command(command: u16, params: [f32; 4]) -> Self {
        Self {
            frame: frame::MISSION,
            command,
            autocontinue: true,
            param1: params[0],
            param2: params[1],
            param3: params[2],
            param4: params[3],
            x: 0,
            y: 0,
            z: 0.0,
        }
    }

    pub fn lat_deg(&self) -> f64 {
        e7_to_deg(self.x)
    }

    pub fn lon_deg(&self) -> f64 {
        e7_to_deg(self.y)
    }

    /// True for commands whose x/y are a position.
    pub fn has_position(&self) -> bool {
        command_has_position(self.command) && self.frame != frame::MISSION
    }
}

impl Validate for MissionItem {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        for (name, p) in [
            ("param1", self.param1),
            ("param2", self.param2),
            ("param3", self.param3),
            ("param4", self.param4),
            ("z", self.z),
        ] {
            // NaN is legal in MAVLink params ("unset"), infinities are not.
            if p.is_infinite() {
                return Err(v::fail(at, name, "must not be infinite"));
            }
        }
        if self.has_position() {
            v::in_range(at, "x", self.lat_deg(), -90.0, 90.0)?;
            v::in_range(at, "y", self.lon_deg(), -180.0, 180.0)?;
        }
        Ok(())
    }
}

/// The three lists an autopilot holds. For ArduPilot, `mission[0]` is the
/// home position (the planner puts it there; PX4 plans have no home item).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MissionSet {
    pub mission: Vec<MissionItem>,
    #[serde(default)]
    pub fence: Vec<MissionItem>,
    #[serde(default)]
    pub rally: Vec<MissionItem>,
}

impl MissionSet {
    pub fn list(&self, t: MissionType) -> &[MissionItem] {
        match t {
            MissionType::Mission => &self.mission,
            MissionType::Fence => &self.fence,
            MissionType::Rally => &self.rally,
        }
    }
}

impl Validate for MissionSet {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::max_items(at, "mission", &self.mission, 65_535)?;
        v::each(at, "mission", &self.mission)?;
        v::max_items(at, "fence", &self.fence, 65_535)?;
        v::each(at, "fence", &self.fence)?;
        v::max_items(at, "rally", &self.rally, 65_535)?;
        v::each(at, "rally", &self.rally)
    }
}

/// Degrees → 1e-7 degrees, rounded to nearest.
pub fn deg_to_e7(deg: f64) -> i32 {
    (deg * 1e7).round() as i32
}

pub fn e7_to_deg(e7: i32) -> f64 {
    e7 as f64 / 1e7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_to_a_centimetre() {
        let it = MissionItem::nav(cmd::NAV_WAYPOINT, 28.4512345678, 117.9412345678, 60.0);
        assert!((it.lat_deg() - 28.4512345678).abs() < 1e-7);
        assert!(it.has_position());
        assert!(it.validate().is_ok());
        let speed = MissionItem::command(cmd::DO_CHANGE_SPEED, [1.0, 8.0, -1.0, 0.0]);
        assert!(!speed.has_position());
    }

    #[test]
    fn rejects_off_earth_positions() {
        let mut it = MissionItem::nav(cmd::NAV_WAYPOINT, 28.0, 117.0, 60.0);
        it.x = 950_000_000;
        assert_eq!(it.validate().unwrap_err().field, "x");
    }
}
