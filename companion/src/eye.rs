//! The eye on the live camera stream: frames → detections → incidents →
//! alerts in the spool, geotagged with the bridge's pose history.

use std::sync::Arc;

use tiancha_firmware_bridge::Bridge;
use tiancha_protocol::DetectionZone;
use tokio::sync::watch;

use crate::channel::ChannelHandle;
use crate::commands::Executor;
use crate::config::{CameraSection, DetectionSection};
use crate::metrics::Metrics;

/// What the eye reports about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EyeStatus {
    /// `None` until the camera has been tried.
    pub camera_up: Option<bool>,
    pub fps: f64,
    pub frames: u64,
    pub dropped: u64,
}

/// Start the eye on its own threads.
pub fn start(
    _cam: CameraSection,
    _detection: DetectionSection,
    _zones: watch::Receiver<Vec<DetectionZone>>,
    _bridge: Bridge,
    _channel: ChannelHandle,
    _exec: Arc<Executor>,
    _metrics: Arc<Metrics>,
) -> watch::Receiver<EyeStatus> {
    tracing::error!("camera configured, but the live eye is not wired into the companion yet");
    watch::channel(EyeStatus::default()).1
}
