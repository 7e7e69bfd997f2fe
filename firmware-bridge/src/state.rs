//! The typed picture of the vehicle: who it is, its modes, and what its
//! telemetry says. Plain data; the core keeps it up to date.

use serde::Serialize;
use tiancha_geometry::geodesy::LatLonAlt;

use crate::codec::dialect;

/// Which flight stack runs on the autopilot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum AutopilotKind {
    #[default]
    Unknown,
    ArduPilot,
    Px4,
    /// Another `MAV_AUTOPILOT` value.
    Other(u8),
}

impl AutopilotKind {
    pub fn from_mav(a: dialect::MavAutopilot) -> Self {
        match a {
            dialect::MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA => Self::ArduPilot,
            dialect::MavAutopilot::MAV_AUTOPILOT_PX4 => Self::Px4,
            other => Self::Other(other as u8),
        }
    }
}

/// What kind of airframe (from `MAV_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum VehicleKind {
    #[default]
    Unknown,
    Copter,
    Plane,
    /// A VTOL plane (ArduPlane QuadPlane, PX4 VTOL).
    Vtol,
    Rover,
    Other(u8),
}

impl VehicleKind {
    pub fn from_mav(t: dialect::MavType) -> Self {
        use dialect::MavType::*;
        match t {
            MAV_TYPE_QUADROTOR | MAV_TYPE_COAXIAL | MAV_TYPE_HELICOPTER | MAV_TYPE_HEXAROTOR
            | MAV_TYPE_OCTOROTOR | MAV_TYPE_TRICOPTER | MAV_TYPE_DODECAROTOR
            | MAV_TYPE_DECAROTOR => Self::Copter,
            MAV_TYPE_FIXED_WING => Self::Plane,
            MAV_TYPE_VTOL_TAILSITTER_DUOROTOR
            | MAV_TYPE_VTOL_TAILSITTER_QUADROTOR
            | MAV_TYPE_VTOL_TILTROTOR
            | MAV_TYPE_VTOL_FIXEDROTOR
            | MAV_TYPE_VTOL_TAILSITTER
            | MAV_TYPE_VTOL_TILTWING
            | MAV_TYPE_VTOL_RESERVED5 => Self::Vtol,
            MAV_TYPE_GROUND_ROVER | MAV_TYPE_SURFACE_BOAT => Self::Rover,
            other => Self::Other(other as u8),
        }
    }

    /// True for `MAV_TYPE`s that are not vehicles (GCS, companions,
    /// gimbals, cameras, ADS-B …): their heartbeats do not identify the
    /// autopilot.
    pub fn is_vehicle_type(t: dialect::MavType) -> bool {
        use dialect::MavType::*;
        !matches!(
            t,
            MAV_TYPE_GCS
                | MAV_TYPE_ONBOARD_CONTROLLER
                | MAV_TYPE_GIMBAL
                | MAV_TYPE_ADSB
                | MAV_TYPE_CAMERA
                | MAV_TYPE_CHARGING_STATION
                | MAV_TYPE_FLARM
                | MAV_TYPE_SERVO
                | MAV_TYPE_ODID
                | MAV_TYPE_GENERIC
                | MAV_TYPE_ANTENNA_TRACKER
                | MAV_TYPE_BATTERY
                | MAV_TYPE_PARACHUTE
                | MAV_TYPE_LOG
                | MAV_TYPE_OSD
                | MAV_TYPE_IMU
                | MAV_TYPE_GPS
                | MAV_TYPE_WINCH
        )
    }
}

/// One vocabulary of flight modes over ArduPilot's custom modes and PX4's
/// main/sub modes. Not every mode exists on every stack:
/// [`mode_to_custom`] says which do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum FlightMode {
    #[default]
    Unknown,
    Manual,
    Stabilize,
    Acro,
    AltHold,
    /// Position hold with pilot input (ArduCopter POSHOLD, PX4 POSCTL).
    PosHold,
    /// Autonomous hold at a point (ArduCopter LOITER, PX4 AUTO.LOITER).
    Loiter,
    /// Companion/GCS-commanded flight (ArduPilot GUIDED).
    Guided,
    /// Fly the uploaded mission (ArduPilot AUTO, PX4 AUTO.MISSION).
    Auto,
    Rtl,
    SmartRtl,
    Land,
    Takeoff,
    Circle,
    Brake,
    Offboard,
    /// A mode without a name here; the raw custom mode is in the state.
    Other,
}

const ARDUCOPTER: &[(FlightMode, u32)] = &[
    (FlightMode::Stabilize, 0),
    (FlightMode::Acro, 1),
    (FlightMode::AltHold, 2),
    (FlightMode::Auto, 3),
    (FlightMode::Guided, 4),
    (FlightMode::Loiter, 5),
    (FlightMode::Rtl, 6),
    (FlightMode::Circle, 7),
    (FlightMode::Land, 9),
    (FlightMode::PosHold, 16),
    (FlightMode::Brake, 17),
    (FlightMode::SmartRtl, 21),
];

const ARDUPLANE: &[(FlightMode, u32)] = &[
    (FlightMode::Manual, 0),
    (FlightMode::Circle, 1),
    (FlightMode::Stabilize, 2),
    (FlightMode::Acro, 4),
    (FlightMode::Auto, 10),
    (FlightMode::Rtl, 11),
    (FlightMode::Loiter, 12),
    (FlightMode::Takeoff, 13),
    (FlightMode::Guided, 15),
];

/// PX4: (main mode, sub mode).
const PX4: &[(FlightMode, (u8, u8))] = &[
    (FlightMode::Manual, (1, 0)),
    (FlightMode::AltHold, (2, 0)),
    (FlightMode::PosHold, (3, 0)),
    (FlightMode::Takeoff, (4, 2)),
    (FlightMode::Loiter, (4, 3)),
    (FlightMode::Auto, (4, 4)),
    (FlightMode::Rtl, (4, 5)),
    (FlightMode::Land, (4, 6)),
    (FlightMode::Acro, (5, 0)),
    (FlightMode::Offboard, (6, 0)),
    (FlightMode::Stabilize, (7, 0)),
];

/// ArduCopter's custom mode numbers (for the simulator and tests).
pub fn arducopter_mode_number(m: FlightMode) -> Option<u32> {
    ARDUCOPTER.iter().find(|(f, _)| *f == m).map(|(_, n)| *n)
}

/// The custom mode number of `mode` on this stack and airframe.
pub fn mode_to_custom(kind: AutopilotKind, vehicle: VehicleKind, mode: FlightMode) -> Option<u32> {
    match kind {
        AutopilotKind::ArduPilot => {
            let table = match vehicle {
                VehicleKind::Plane | VehicleKind::Vtol => ARDUPLANE,
                _ => ARDUCOPTER,
            };
            table.iter().find(|(f, _)| *f == mode).map(|(_, n)| *n)
        }
        AutopilotKind::Px4 => PX4
            .iter()
            .find(|(f, _)| *f == mode)
            .map(|(_, (main, sub))| ((*sub as u32) << 24) | ((*main as u32) << 16)),
        _ => None,
    }
}

/// Decode a heartbeat's custom mode.
pub fn mode_from_custom(kind: AutopilotKind, vehicle: VehicleKind, custom: u32) -> FlightMode {
    match kind {
        AutopilotKind::ArduPilot => {
            let table = match vehicle {
                VehicleKind::Plane | VehicleKind::Vtol => ARDUPLANE,
                _ => ARDUCOPTER,
            };
            table
                .iter()
                .find(|(_, n)| *n == custom)
                .map(|(f, _)| *f)
                .unwrap_or(FlightMode::Other)
        }
        AutopilotKind::Px4 => {
            let main = ((custom >> 16) & 0xFF) as u8;
            let sub = ((custom >> 24) & 0xFF) as u8;
            PX4.iter()
                .find(|(_, (m, s))| *m == main && (*s == sub || *s == 0 && main != 4))
                .map(|(f, _)| *f)
                .unwrap_or(FlightMode::Other)
        }
        _ => FlightMode::Unknown,
    }
}

/// GPS fix quality (`GPS_FIX_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
pub enum GpsFix {
    #[default]
    NoGps,
    NoFix,
    Fix2d,
    Fix3d,
    Dgps,
    RtkFloat,
    RtkFixed,
    Static,
    Ppp,
}

impl GpsFix {
    pub fn from_mav(f: dialect::GpsFixType) -> Self {
        use dialect::GpsFixType::*;
        match f {
            GPS_FIX_TYPE_NO_GPS => Self::NoGps,
            GPS_FIX_TYPE_NO_FIX => Self::NoFix,
            GPS_FIX_TYPE_2D_FIX => Self::Fix2d,
            GPS_FIX_TYPE_3D_FIX => Self::Fix3d,
            GPS_FIX_TYPE_DGPS => Self::Dgps,
            GPS_FIX_TYPE_RTK_FLOAT => Self::RtkFloat,
            GPS_FIX_TYPE_RTK_FIXED => Self::RtkFixed,
            GPS_FIX_TYPE_STATIC => Self::Static,
            GPS_FIX_TYPE_PPP => Self::Ppp,
        }
    }

    pub fn has_3d(&self) -> bool {
        *self >= GpsFix::Fix3d
    }
}

/// `MAV_LANDED_STATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum LandedState {
    #[default]
    Unknown,
    OnGround,
    InAir,
    Takeoff,
    Landing,
}

impl LandedState {
    pub fn from_mav(s: dialect::MavLandedState) -> Self {
        use dialect::MavLandedState::*;
        match s {
            MAV_LANDED_STATE_UNDEFINED => Self::Unknown,
            MAV_LANDED_STATE_ON_GROUND => Self::OnGround,
            MAV_LANDED_STATE_IN_AIR => Self::InAir,
            MAV_LANDED_STATE_TAKEOFF => Self::Takeoff,
            MAV_LANDED_STATE_LANDING => Self::Landing,
        }
    }
}

/// Global position as the autopilot reports it (GLOBAL_POSITION_INT).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Position {
    pub lat_deg: f64,
    pub lon_deg: f64,
    /// Metres above mean sea level.
    pub alt_m: f64,
    /// Metres above home.
    pub alt_rel_m: f64,
    pub heading_deg: Option<f64>,
    pub time_boot_ms: u32,
}

impl Position {
    pub fn lat_lon_alt(&self) -> LatLonAlt {
        LatLonAlt::new(self.lat_deg, self.lon_deg, self.alt_m)
    }
}

/// Vehicle attitude (ATTITUDE), radians, NED/FRD aerospace convention.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Attitude {
    pub roll_rad: f64,
    pub pitch_rad: f64,
    pub yaw_rad: f64,
    pub time_boot_ms: u32,
}

/// In which frame the gimbal reports its yaw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum YawFrame {
    /// Relative to the vehicle's heading.
    Vehicle,
    /// Relative to north.
    Earth,
}

/// Gimbal attitude: roll and pitch relative to the horizon, yaw in
/// `yaw_frame`. Degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GimbalState {
    pub roll_deg: f64,
    pub pitch_deg: f64,
    pub yaw_deg: f64,
    pub yaw_frame: YawFrame,
    /// `GIMBAL_DEVICE_ATTITUDE_STATUS` (true) or legacy `MOUNT_STATUS`.
    pub from_gimbal_device: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Battery {
    pub voltage_v: Option<f64>,
    pub current_a: Option<f64>,
    pub remaining_pct: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Gps {
    pub fix: GpsFix,
    pub satellites: Option<u8>,
    pub hdop: Option<f64>,
}

/// EKF health (ArduPilot `EKF_STATUS_REPORT`, or PX4's `ESTIMATOR_STATUS`
/// when present).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ekf {
    pub flags: u16,
    /// Attitude, velocity and absolute horizontal position estimates good,
    /// and no GPS glitch.
    pub healthy: bool,
}

/// Whether the autopilot would allow arming, in its own words.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Readiness {
    /// `SYS_STATUS` `MAV_SYS_STATUS_PREARM_CHECK`: the autopilot's own
    /// verdict on its pre-arm checks (`None`: it does not report one).
    pub prearm_ok: Option<bool>,
    /// The last pre-arm failure it stated (ArduPilot `PreArm: …`, PX4
    /// `Preflight Fail: …` / `Arming denied: …`); cleared when the checks
    /// pass.
    pub prearm_reason: Option<String>,
}

/// The pre-arm failure a `STATUSTEXT` states, if it states one.
pub fn prearm_failure(text: &str) -> Option<&str> {
    const PREFIXES: [&str; 4] = ["PreArm:", "Preflight Fail:", "Arming denied:", "Arm:"];
    PREFIXES
        .iter()
        .find(|p| text.starts_with(*p))
        .map(|_| text.trim())
}

/// Mission progress as last reported.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct MissionProgress {
    pub current_seq: Option<u16>,
    pub total: Option<u16>,
    pub last_reached: Option<u16>,
}

/// Everything known about the vehicle. Published through a
/// `tokio::sync::watch` by [`crate::Bridge`].
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct VehicleState {
    /// Telemetry from the autopilot arrived within the link timeout.
    pub link_up: bool,
    pub system_id: Option<u8>,
    pub component_id: Option<u8>,
    pub autopilot: AutopilotKind,
    pub vehicle: VehicleKind,
    pub armed: bool,
    pub mode: FlightMode,
    pub custom_mode: u32,
    pub system_status: Option<u8>,
    pub position: Option<Position>,
    pub velocity_ned_mps: Option<[f64; 3]>,
    pub attitude: Option<Attitude>,
    pub gimbal: Option<GimbalState>,
    pub home: Option<LatLonAlt>,
    pub battery: Option<Battery>,
    pub gps: Option<Gps>,
    pub ekf: Option<Ekf>,
    pub readiness: Readiness,
    /// `SYS_STATUS` geofence bit: the autopilot enforces its fence now
    /// (`None`: it does not report a fence).
    pub fence_enabled: Option<bool>,
    pub landed: LandedState,
    pub mission: MissionProgress,
    /// Signing is in use on this link.
    pub signing: bool,
}

/// Something that happened, in order, on [`crate::Bridge::events`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Event {
    /// First heartbeat of the autopilot.
    AutopilotFound {
        system_id: u8,
        component_id: u8,
        autopilot: AutopilotKind,
        vehicle: VehicleKind,
    },
    LinkLost,
    LinkRegained,
    /// The autopilot's boot clock went backwards: it rebooted.
    AutopilotRebooted,
    ModeChanged {
        from: FlightMode,
        to: FlightMode,
        custom_mode: u32,
    },
    ArmedChanged {
        armed: bool,
    },
    LandedStateChanged {
        state: LandedState,
    },
    MissionItemReached {
        seq: u16,
    },
    MissionCurrentChanged {
        seq: u16,
        total: Option<u16>,
    },
    StatusText {
        severity: u8,
        text: String,
    },
    /// COMMAND_ACK with MAV_RESULT_IN_PROGRESS.
    CommandProgress {
        command: u16,
        progress: Option<u8>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_per_stack() {
        for m in [
            FlightMode::Guided,
            FlightMode::Auto,
            FlightMode::Rtl,
            FlightMode::Land,
            FlightMode::Loiter,
        ] {
            let c = mode_to_custom(AutopilotKind::ArduPilot, VehicleKind::Copter, m).unwrap();
            assert_eq!(
                mode_from_custom(AutopilotKind::ArduPilot, VehicleKind::Copter, c),
                m
            );
        }
        assert_eq!(
            mode_to_custom(
                AutopilotKind::ArduPilot,
                VehicleKind::Copter,
                FlightMode::Guided
            ),
            Some(4)
        );
        assert_eq!(
            mode_to_custom(
                AutopilotKind::ArduPilot,
                VehicleKind::Plane,
                FlightMode::Guided
            ),
            Some(15)
        );
        // PX4 AUTO.MISSION: main 4, sub 4.
        let c = mode_to_custom(AutopilotKind::Px4, VehicleKind::Copter, FlightMode::Auto).unwrap();
        assert_eq!(c, (4 << 24) | (4 << 16));
        assert_eq!(
            mode_from_custom(AutopilotKind::Px4, VehicleKind::Copter, c),
            FlightMode::Auto
        );
        let pos =
            mode_to_custom(AutopilotKind::Px4, VehicleKind::Copter, FlightMode::PosHold).unwrap();
        assert_eq!(
            mode_from_custom(AutopilotKind::Px4, VehicleKind::Copter, pos),
            FlightMode::PosHold
        );
        assert_eq!(
            mode_to_custom(AutopilotKind::Px4, VehicleKind::Copter, FlightMode::Guided),
            None
        );
    }
}
