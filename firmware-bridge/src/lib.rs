//! The companion computer's MAVLink 2 link to the autopilot (ArduPilot or PX4).
//!
//! placeholder docs (rewritten below once the crate is complete)

// The legacy MAVLink messages (MISSION_ITEM, REQUEST_DATA_STREAM, mount
// commands) are used on purpose: autopilots in the field still need them.
#![allow(deprecated)]

pub mod bridge;
pub mod codec;
pub mod command;
pub mod core;
pub mod mission;
pub mod pose;
pub mod signing;
pub mod state;
pub mod transport;

pub use crate::bridge::{Bridge, BridgeError, GimbalPath};
pub use crate::core::{
    BridgeConfig, BridgeStats, Core, MissionJob, MissionJobResult, SigningConfig, UploadReport,
};
pub use crate::state::{Event, FlightMode, VehicleState};
