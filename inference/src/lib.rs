//! The eye: camera stream → detections → tracks → events → geotagged alerts.
//!
//! # What it does
//!
//! - [`source`]: video in by URI (`rtsp://`, `udp://` RTP H.264/H.265,
//!   files, `v4l2`, test pattern, image folders) through GStreamer with
//!   `decodebin`; a newest-frame slot that drops and counts under
//!   overload; reconnects with back-off, reported as [`SourceEvent`]s;
//!   every [`Frame`] carries wall-clock and monotonic capture times.
//! - [`manifest`]: models described by a TOML manifest in `models/` —
//!   input name/shape/layout/colour/scaling, stretch or letterbox, output
//!   decoder (CenterNet heads, decoded `[1,N,6]`, YOLOv5 `[1,N,5+C]`,
//!   YOLOv8/11 `[1,4+C,N]`), class names, per-class thresholds, and which
//!   classes feed which rule. A drop-in model needs no code change.
//! - [`detector`]: the model loaded once and run by a [`backend`]: tract
//!   (pure Rust, the default; optimised for the input shape, matrix
//!   products on a multithreaded executor) or onnxruntime (cargo feature
//!   `ort`, on the CPU, CUDA, TensorRT or OpenVINO); OpenCV
//!   pre-processing ([`preprocess`]); decoders and class-aware NMS
//!   ([`decode`]); optional SAHI-style tiling with overlap and merge, the
//!   slices run as one batch when the model's batch is symbolic; an input
//!   size override for fully convolutional models.
//! - [`tracker`]: ByteTrack-style multi-object tracking (Kalman motion
//!   model, Hungarian IoU assignment, low-score second pass);
//!   [`timeline`]: the tracks moved to every camera frame, detector
//!   results applied late in their own frame's geometry.
//! - [`events`]: rules per zone in the wire contract's shape
//!   ([`tiancha_protocol::ZoneRule`]): gathering, intrusion, hazard; one
//!   incident per situation, opened, updated, closed.
//! - [`geotag`]: capture time → pose ([`PoseSource`]) → camera model
//!   ([`tiancha_geometry::camera`]) → ground point and 1-σ ellipse;
//!   "position unknown" when there is no pose.
//! - [`alert`]: incidents → [`tiancha_protocol::Alert`] (with the
//!   annotated JPEG snapshot, [`annotate`]) and incident updates.
//! - [`pipeline`]: [`Eye`] (per-frame logic) and [`Pipeline`] (threads that
//!   overlap pre-processing with inference, outputs through a channel).
//!
//! # What it does not
//!
//! No MQTT, no MAVLink, no spool: the companion daemon publishes what the
//! eye produces, and the firmware bridge supplies poses by implementing
//! [`PoseSource`].
//!
//! # Driving it (what a daemon does)
//!
//! ```no_run
//! use std::sync::Arc;
//! use tiancha_inference::*;
//! # fn main() -> Result<()> {
//! let detector = Arc::new(Detector::from_manifest_path(
//!     "models/centernet_mnv3_coco80.toml",
//!     &DetectorOptions::default(),
//! )?);
//! # let poses: Arc<dyn PoseSource> = Arc::new(tiancha_geometry::camera::PoseHistory::new(100));
//! let camera = tiancha_geometry::camera::CameraModel::ideal(1920, 1080, 82.0);
//! let geotagger = Geotagger::new(camera, geotag::Ground::Flat(62.0), poses);
//! let eye = Eye::new(
//!     detector.manifest().clone(),
//!     EyeConfig { engine: EngineConfig::from_zones(&[]), ..EyeConfig::default() },
//!     Some(geotagger),
//! )?;
//! let source = FrameSource::open(SourceConfig::new("rtsp://192.168.144.25:8554/main.264"))?;
//! let pipeline = Pipeline::start(source, detector, eye, PipelineOptions::default())?;
//! let drone = tiancha_protocol::DroneId::new("drone-1").unwrap();
//! while let Some(out) = pipeline.recv(std::time::Duration::from_secs(1)) {
//!     match out {
//!         EyeOutput::Incident(i) => match alert::outgoing(&i, &drone, None) {
//!             alert::Outgoing::Alert(a) => { /* spool and publish */ }
//!             alert::Outgoing::Update(ev) => { /* spool and publish */ }
//!         },
//!         EyeOutput::Source(e) => { /* camera link up/down */ }
//!         EyeOutput::End(summary) => break,
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Invariants
//!
//! - Nothing reads `../shared` at run time; models live in `models/`.
//! - The eye never blocks the camera: a live source keeps only the newest
//!   frame, so latency is bounded by one inference.
//! - Rules run on frame capture times, never on the wall clock, so a file
//!   gives the same incidents however fast it is processed.
//! - One incident per situation: an incident id (UUID v7) is made when it
//!   opens and carried by every update and the close.

pub mod alert;
pub mod annotate;
pub mod backend;
pub mod decode;
pub mod detector;
pub mod error;
pub mod events;
pub mod frame;
pub mod geotag;
pub mod hotspot;
pub mod image_motion;
pub mod manifest;
pub mod model_set;
pub mod pipeline;
pub mod preprocess;
pub mod quant;
pub mod source;
pub mod textio;
pub mod timeline;
pub mod tracker;
pub mod video_out;
pub mod writer;

pub use backend::{
    onnxruntime_in_venv, Backend, BackendKind, BackendOptions, OrtOptions, Provider,
};
pub use decode::{BBox, Detection};
pub use detector::{Detector, DetectorOptions};
pub use error::{InferenceError, Result};
pub use events::{EngineConfig, EventEngine, Incident, IncidentChange, IncidentEvent, RuleConfig};
pub use frame::Frame;
pub use geotag::{Geotagger, GroundFix};
pub use manifest::Manifest;
/// OpenCV, re-exported so users can hold the images the eye draws.
pub use opencv;
pub use pipeline::{Eye, EyeConfig, EyeOutput, Pipeline, PipelineOptions, Summary};
pub use source::{FrameSource, SourceConfig, SourceEvent, SourceItem};
/// The geometry crate (camera model, poses), re-exported for users of the eye.
pub use tiancha_geometry as geometry;
pub use tiancha_geometry::camera::{CameraPose, PoseSource};
/// The wire contract, re-exported.
pub use tiancha_protocol as protocol;
pub use tracker::{Track, Tracker, TrackerConfig};
