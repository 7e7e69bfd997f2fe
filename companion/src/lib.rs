//! The onboard daemon: wires the firmware bridge, the planner and the eye
//! together and talks to the ground over MQTT.
//!
//! Owns the drone side of the channel: the sans-IO alert spool that keeps
//! every alert on disk until the ground has it, and the rumqttc driver
//! around it.
pub mod autopilot;
pub mod channel;
pub mod command_guard;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod eye;
pub mod failsafe;
pub mod metrics;
pub mod signing;
pub mod spool;
pub mod synthetic;
pub mod thermal;
pub mod vehicle;
