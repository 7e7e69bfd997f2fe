//! Geometry shared by every part of tiancha that reasons about places.
//!
//! What it does:
//! - [`geodesy`]: WGS84 geodetic ↔ ECEF ↔ local tangent plane (NED / ENU)
//!   conversions, exact to well below a millimetre over tens of kilometres,
//!   plus great-circle distance and bearing helpers.
//! - [`camera`]: the pinhole camera model with OpenCV-style distortion, the
//!   gimbal/vehicle rotation chain, pixel → ground-ray → ground intersection
//!   and ground → pixel projection. The inference crate geotags with it and
//!   the simulator renders with it, so both see the same camera.
//!
//! What it does not: no I/O, no clock, no polygons or planning (those belong
//! to `mission-planner`).
//!
//! Conventions (see `ARCHITECTURE.md`): latitude/longitude in degrees (f64),
//! altitude in metres AMSL; local frame NED (north, east, down) in metres at
//! a reference point; body frame FRD; camera frame x right, y down, z forward.

pub mod camera;
pub mod geodesy;

pub use geodesy::{LatLon, LatLonAlt, LocalFrame};
