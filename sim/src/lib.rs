//! A simulated ArduPilot-like multicopter, for tests and the demo.
#![allow(deprecated)]
//!
//! placeholder docs (rewritten once complete)

pub mod autopilot;
pub mod fence;
pub mod harness;
pub mod impair;
pub mod mission_server;
pub mod noise;
pub mod runner;
pub mod truth;
pub mod vehicle;

pub use crate::autopilot::{Autopilot, AutopilotConfig, SimNode};
pub use crate::impair::{Impairment, ImpairmentConfig, UdpProxy};
pub use crate::noise::NoiseConfig;
pub use crate::runner::{Home, Sim, SimConfig, SimError, SimStats};
pub use crate::truth::Truth;
