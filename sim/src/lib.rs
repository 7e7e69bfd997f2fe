//! A simulated ArduPilot-like multicopter, for tests and the demo (the
//! simulated camera will join it, reading [`Truth`]).
//!
//! # What it does
//!
//! ArduCopter by default; with [`SimConfig::flavour`] [`Flavour::Px4`]
//! (`tiancha sim --autopilot px4`) PX4 v1.15.4 wherever the two differ
//! ([`px4`]: heartbeat and modes, parameters, mission protocol without a
//! home item, arming in AUTO.MISSION, geofence, RTL, STATUSTEXT).
//!
//! - **On the wire, ArduCopter** ([`autopilot`]): heartbeat
//!   (`MAV_AUTOPILOT_ARDUPILOTMEGA`, quadrotor), ArduCopter mode numbers,
//!   COMMAND_LONG/INT with COMMAND_ACK, SET_MESSAGE_INTERVAL and
//!   REQUEST_DATA_STREAM streams, TIMESYNC, SYSTEM_TIME (0 until GPS time),
//!   STATUSTEXT, gimbal manager v2 and legacy mount commands, MAVLink 2
//!   signing (required when a key is set; SETUP_SIGNING accepted);
//!   readiness after an EKF delay (`ekf_ready_delay_s`), with
//!   `MAV_SYS_STATUS_PREARM_CHECK` and `PreArm: …` every 30 s.
//! - **Parameters as ArduPilot** ([`params`]): PARAM_REQUEST_READ (name or
//!   index), PARAM_REQUEST_LIST, PARAM_SET with its PARAM_VALUE echo,
//!   silence for unknown names, values cast to float; the `FENCE_*`,
//!   `RALLY_*`, `RTL_ALT`, `WPNAV_SPEED`, … the vehicle honours.
//! - **Mission protocol as ArduPilot** ([`mission_server`]): MISSION_REQUEST
//!   (40) for uploads, 1 s re-requests, 8 s cancel, INVALID_SEQUENCE for
//!   out-of-order items, silence for items after completion, in-place
//!   writes for mission and rally, staged fence, home in mission item 0,
//!   float MISSION_ITEM for MISSION_REQUEST downloads; read-back as stored
//!   (frames without `_INT`, frame 0 for commands without a position,
//!   `autocontinue` 0 for fence and rally items).
//! - **Flight** ([`vehicle`]): point-mass kinematics with ArduCopter's speed,
//!   acceleration and climb limits; arming checks (GPS fix, EKF position,
//!   battery, mode, fence); takeoff; GUIDED go-to; AUTO missions (waypoint,
//!   takeoff, land, RTL, loiter time/turns/unlimited, change speed, ROI,
//!   yaw, jump, gimbal); RTL to home or the nearest rally point
//!   ([`rally`]); LAND; CIRCLE/orbit; pause/continue; a geofence enforced
//!   once enabled (`FENCE_ENABLE` or `DO_FENCE_ENABLE`; `FENCE_TYPE`: max
//!   altitude, circle round home, uploaded zones ([`fence`])) with
//!   `FENCE_ACTION` on a breach; battery drain with low (RTL) and critical
//!   (LAND) failsafes; a stabilised gimbal that slews and tracks an ROI.
//! - **Truth and noise**: the exact state on a `watch` ([`Sim::truth`]);
//!   reported telemetry can carry GPS random-walk error, attitude and gimbal
//!   noise, timestamp jitter and latency ([`noise`]).
//! - **Time scale**: `speed` simulated seconds per real second; every
//!   timer, stream and protocol timeout scales with it.
//! - **Impairment** ([`impair`]): seeded loss, duplication, reordering,
//!   delay and jitter, applied by the simulator to its own socket
//!   (`impair_in`/`impair_out`) or by a [`UdpProxy`] any test can put
//!   between two UDP peers.
//! - **Virtual time** ([`harness::VirtualLink`]): the bridge's and the
//!   simulator's sans-IO cores exchanging real bytes through the impairment
//!   with no sockets or clock: minutes of lossy flight in milliseconds,
//!   reproducible by seed.
//!
//! # What it does not
//!
//! Aerodynamics, wind, sensors below the EKF, parameters beyond the few it
//! honours ([`params::Params::arducopter`]; the `BATT_*` failsafe
//! parameters are reported, not followed), the lossy storage of some
//! mission item fields, MAVLink routing, or anything a real autopilot would
//! need to be flown by a pilot. It is a test double: the pymavlink referees
//! (`tests/referees`) keep it honest.
//!
//! # Main types
//!
//! - [`Sim`] / [`SimConfig`]: `Sim::start(config)` serves MAVLink on an
//!   address (as `tiancha sim` does); [`Sim::truth`], [`Sim::lists`],
//!   [`Sim::stats`].
//! - [`SimNode`] / [`Autopilot`]: the sans-IO autopilot (bytes or messages
//!   and simulated time in, bytes out).
//! - [`Truth`]: position, attitude, gimbal, camera orientation, time.

// The legacy MAVLink messages (MISSION_ITEM, REQUEST_DATA_STREAM, mount
// commands) are part of what an ArduPilot double must answer.
#![allow(deprecated)]

pub mod autopilot;
pub mod camera;
pub mod fence;
pub mod follow;
pub mod harness;
pub mod impair;
pub mod mission_server;
pub mod noise;
pub mod params;
pub mod px4;
pub mod rally;
pub mod runner;
pub mod truth;
pub mod vehicle;

pub use crate::autopilot::{Autopilot, AutopilotConfig, SimNode};
pub use crate::impair::{Impairment, ImpairmentConfig, UdpProxy};
pub use crate::mission_server::Lists;
pub use crate::noise::NoiseConfig;
pub use crate::params::Params;
pub use crate::px4::Flavour;
pub use crate::rally::{rtl_target, RtlTarget};
pub use crate::runner::{Home, Sim, SimConfig, SimError, SimStats};
pub use crate::truth::Truth;
