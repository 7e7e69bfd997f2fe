//! The companion computer's MAVLink 2 link to the autopilot (ArduPilot or
//! PX4), built to survive real telemetry radios.
//!
//! # What it does
//!
//! - **Connections** ([`transport`]): `serial:/dev/ttyX:BAUD`, `udpin:`,
//!   `udpout:`, `tcp:`, `tcpin:`; tokio tasks that reopen serial ports and
//!   reconnect TCP with back-off. One connection, shared by every service.
//! - **Framing** ([`codec`]): its own frame parser (MAVLink 1 and 2) over the
//!   `mavlink` crate's dialect, because a link must *count* what it drops:
//!   CRC errors, unknown ids, truncated datagrams, garbage, sequence gaps,
//!   unsigned or badly signed frames ([`codec::LinkStats`]). Never panics
//!   (fuzzed: `firmware-bridge/fuzz`).
//! - **Signing** ([`signing`]): MAVLink 2 signing with replay and
//!   freshness checks, keys from hex or passphrase (as MAVProxy derives
//!   them), provisioning with SETUP_SIGNING confirmed by the autopilot's
//!   signed replies. Interoperates with pymavlink (tested).
//! - **Identity and liveness**: 1 Hz heartbeat as
//!   `MAV_TYPE_ONBOARD_CONTROLLER`, component 191; the autopilot is the first
//!   vehicle heartbeat (ArduPilot/PX4, copter/plane/VTOL from `MAV_TYPE`);
//!   link lost after 2 s without any message from it, regained on the next.
//! - **Telemetry** ([`state`], [`pose`]): SET_MESSAGE_INTERVAL per message
//!   (REQUEST_DATA_STREAM as ArduPilot's fallback) into a typed
//!   [`VehicleState`]; a pose history that answers "where was the camera
//!   at time t" ([`Bridge::pose_at`]) with the autopilot's boot clock fitted
//!   to the companion clock by TIMESYNC (offset *and* rate, so fast-time
//!   simulation maps correctly), SYSTEM_TIME as fallback.
//! - **Commands** ([`command`]): COMMAND_LONG/INT with retries (rising
//!   confirmation), IN_PROGRESS and progress, typed results; one API for
//!   flight modes over ArduPilot custom modes and PX4 main/sub modes;
//!   gimbal manager v2 with the legacy mount commands as fallback.
//! - **Missions** ([`mission`]): MISSION, FENCE and RALLY upload, download,
//!   clear, set current; answers MISSION_REQUEST as well as
//!   MISSION_REQUEST_INT; adaptive timeouts; gives up on *no progress*, not
//!   on a per-item retry count; every upload is read back and compared
//!   ([`mission::verify`], which knows ArduPilot keeps and rewrites home in
//!   item 0) and restarted if the autopilot cancelled it or the read-back
//!   differs. 50 seeded 700-item runs at 20 % loss each way pass
//!   (`sim/tests/lossy_transfers.rs`).
//!
//! - **Parameters** ([`params`]): read and set by name, with retries, the
//!   set confirmed by the autopilot's echo (an echo of another value is an
//!   error), integers cast (ArduPilot) or bytewise (PX4).
//! - **Status texts**: chunked `STATUSTEXT`s (MAVLink 2 `id`/`chunk_seq`,
//!   PX4 splits texts over 50 bytes) are joined into one event; one
//!   `MissionItemReached` per item even though PX4 repeats the message.
//! - **Readiness** ([`state::Readiness`]): the autopilot's pre-arm verdict
//!   (`SYS_STATUS` pre-arm bit) and its last stated pre-arm failure, beside
//!   the EKF flags.
//!
//! All protocol logic is sans-IO: [`Core`] (and inside it
//! [`mission::MissionClient`], [`command::CommandClient`]) is fed bytes and
//! the time and returns bytes, events and results; [`Bridge`] drives it
//! from one tokio task. Tests run the same core in virtual time
//! (`tiancha_sim::harness`).
//!
//! # What it does not
//!
//! Plan missions (`mission-planner`), look at video (`inference`), decide
//! what to fly (`companion`), or route MAVLink between several GCSs (use
//! mavlink-router in front when a GCS must share the radio).
//!
//! # Main types
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tiancha_firmware_bridge::{Bridge, BridgeConfig, FlightMode};
//! use tiancha_protocol::mission::MissionType;
//!
//! let bridge = Bridge::connect("serial:/dev/ttyAMA0:921600", BridgeConfig::default()).await?;
//! bridge.wait_for_autopilot(Duration::from_secs(30)).await?;
//! let state = bridge.state();            // watch::Receiver<VehicleState>
//! let mut events = bridge.events();      // broadcast::Receiver<Event>
//! bridge.set_mode(FlightMode::Guided).await?;
//! bridge.arm().await?;
//! bridge.takeoff(30.0).await?;
//! # let items = vec![];
//! let report = bridge.upload(MissionType::Mission, &items).await?; // verified
//! bridge.start_mission().await?;
//! let pose = bridge.pose_at(1_750_000_000_000.0)?; // camera pose at a frame's time
//! # Ok(()) }
//! ```
//!
//! - [`Bridge`] / [`BridgeConfig`]: the async handle (cheap to clone) and
//!   its settings ([`BridgeSettings`] is the TOML form, validated);
//!   [`VehicleState`], [`Event`], [`FlightMode`].
//! - [`Core`]: the sans-IO link; [`MissionJob`] / [`MissionJobResult`] /
//!   [`UploadReport`].
//! - [`pose::CameraPose`]: position, vehicle attitude, gimbal attitude and
//!   camera orientation (NED ← camera, OpenCV axes) at one instant.

// The legacy MAVLink messages (MISSION_ITEM, REQUEST_DATA_STREAM, mount
// commands) are used on purpose: autopilots in the field still need them.
#![allow(deprecated)]

pub mod bridge;
pub mod codec;
pub mod command;
pub mod core;
pub mod mission;
pub mod params;
pub mod pose;
pub mod settings;
pub mod signing;
pub mod state;
pub mod transport;

pub use crate::bridge::{Bridge, BridgeError, GimbalPath};
pub use crate::core::{
    BridgeConfig, BridgeStats, Core, MissionJob, MissionJobResult, SigningConfig, UploadReport,
};
pub use crate::settings::{BridgeSettings, SettingsError};
pub use crate::state::{Event, FlightMode, VehicleState};
