//! The wire contract between the drone (companion) and the ground station.
//!
//! What it does:
//! - typed messages: [`DroneStatus`], [`Telemetry`], [`Alert`] (with its
//!   JPEG [`Snapshot`], [`Geotag`] and uncertainty, category, confidence,
//!   tracks, person count), [`DroneEvent`] (mission progress, incident
//!   updates, failsafes, link changes), [`Command`], [`CommandResult`],
//!   [`Receipt`] (the ground station's end-to-end "stored" receipt) and
//!   [`Case`] / [`CaseStatusUpdate`] for dispute systems;
//! - MQTT topic names, built and parsed in one place ([`topic`]);
//! - a schema version in every payload ([`SCHEMA_VERSION`]);
//! - JSON encoding via serde, and decoding that returns errors naming the
//!   field that is wrong and why ([`codec`], [`validate`]);
//! - end-to-end command signatures: Ed25519 over a canonical byte string
//!   of each [`Command`] ([`command_auth`]: `CommandSigner`,
//!   `TrustedKeys`).
//!
//! What it does not: no I/O, no MQTT client, no clock. Producers stamp times
//! and ids (UUID v7, made where a thing is born).

pub mod codec;
pub mod command_auth;
pub mod messages;
pub mod mission;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod topic;
pub mod validate;

pub use codec::{decode, encode, DecodeError};
pub use messages::*;
pub use mission::{MissionItem, MissionSet, MissionType};
pub use topic::{Channel, DroneId, Topic, TopicError};
pub use validate::{Validate, ValidationError};

/// The payload schema version this build writes and reads. Every payload
/// carries it in its `schema` field; a payload with another version is
/// rejected with [`DecodeError::UnknownSchema`].
pub const SCHEMA_VERSION: u32 = 1;

/// Largest snapshot JPEG accepted in an alert (bytes, after base64 decoding).
/// 512 KiB holds a well-compressed 1080p frame; the companion re-encodes at
/// lower quality until its snapshot fits.
pub const MAX_SNAPSHOT_BYTES: usize = 512 * 1024;

/// Largest JSON payload accepted on any topic (bytes). Larger payloads are
/// quarantined without being parsed.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Milliseconds since the Unix epoch of a wall-clock time (the crate reads
/// no clock itself; callers pass `SystemTime::now()`).
pub fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
