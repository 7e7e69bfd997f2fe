//! The simulated vehicle's true state, for other simulator parts (the
//! camera renders from it) and for tests that measure errors against it.

use nalgebra::UnitQuaternion;
use serde::Serialize;
use tiancha_geometry::geodesy::LatLonAlt;

/// The truth at one instant. Published on a `tokio::sync::watch` by
/// [`crate::Sim::truth`] after every simulation step batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Truth {
    /// Simulated seconds since boot.
    pub sim_time_s: f64,
    /// The autopilot's `time_boot_ms` at this instant.
    pub time_boot_ms: u64,
    /// Simulated Unix time (boot Unix time + simulated seconds); equals the
    /// wall clock only at speed 1.
    pub t_unix_ms: f64,
    /// Position, altitude AMSL.
    pub position: LatLonAlt,
    /// Metres north, east, down of home.
    pub ned_m: [f64; 3],
    pub velocity_ned_mps: [f64; 3],
    pub roll_rad: f64,
    pub pitch_rad: f64,
    pub yaw_rad: f64,
    /// NED ← body (FRD).
    #[serde(skip)]
    pub attitude: UnitQuaternion<f64>,
    /// Gimbal pitch (negative down) and yaw relative to the vehicle, degrees.
    pub gimbal_pitch_deg: f64,
    pub gimbal_yaw_deg: f64,
    /// NED ← gimbal (FRD).
    #[serde(skip)]
    pub gimbal_attitude: UnitQuaternion<f64>,
    /// NED ← camera (x right, y down, z forward), ready for a camera model.
    #[serde(skip)]
    pub camera_orientation: UnitQuaternion<f64>,
    pub home: LatLonAlt,
    pub armed: bool,
    /// ArduCopter custom mode number.
    pub mode: u32,
    pub mode_name: &'static str,
    pub landed: bool,
    pub battery_pct: f64,
    pub mission_current: u16,
    pub mission_len: usize,
    pub fence_zones: usize,
    /// The fence is enforced (`FENCE_ENABLE` or `MAV_CMD_DO_FENCE_ENABLE`).
    pub fence_enabled: bool,
    pub rally_points: usize,
    pub signing: bool,
}
