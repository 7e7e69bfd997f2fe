//! The simulated drone camera: what the camera on the simulated gimbal
//! would see, streamed like a real one.
//!
//! # What it does
//!
//! - [`scenario`]: a TOML scenario — the ground (texture extent and
//!   features), detection zones in the wire contract's shape, and
//!   incidents (a gathering of N people within R m, a person, a walker) at
//!   known lat/lon with start and end times.
//! - [`ground`]: a procedural, georeferenced, map-like ground texture
//!   (fields, roads, water, roofs; muted, nothing person-like).
//! - [`sprites`]: people cut at start-up from the installed `vtest.avi`
//!   (median background, difference masks inside detector-chosen boxes).
//! - [`render`]: pose + camera → image, with the camera model the eye
//!   geotags with ([`tiancha_geometry::camera`]): the ground warped by the
//!   homography of four projected ground points, people as upright
//!   billboards at their feet, optional lens distortion; per-frame ground
//!   truth (who is in view, at which pixel).
//! - [`timestamp`]: the capture time burned in as digits and a block code
//!   that [`timestamp::read_timestamp`] reads back.
//! - [`stream`]: GStreamer appsrc → x264enc (zerolatency, ultrafast) →
//!   RTP/H.264 over UDP, and optionally RTSP (gst-rtsp-server).
//! - [`start_camera`]: all of it on a thread that renders at a fixed
//!   wall-clock rate from the newest [`Truth`], whatever the sim's speed.
//!
//! # What it does not
//!
//! Terrain relief, lighting, shadows, motion blur, sensor noise, rolling
//! shutter, occlusion by buildings, vehicles. People are flat billboards
//! (seen from straight above they vanish, as a real person nearly does).
//!
//! # Main types
//!
//! [`Scenario`], [`CameraSpec`], [`Renderer`], [`Streamer`],
//! [`CameraConfig`], [`CameraHandle`], [`FrameTruth`].

pub mod fire;
pub mod ground;
pub mod render;
pub mod scenario;
pub mod sprites;
pub mod stream;
pub mod thermal;
pub mod timestamp;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use fire::FireInView;
pub use ground::GroundTexture;
pub use render::{pose_from_truth, CameraSpec, PersonInView, RenderedFrame, Renderer};
pub use scenario::{Incident, IncidentKind, PlacedPerson, Scenario};
pub use sprites::{SpriteBank, VTEST_AVI};
pub use stream::{StreamConfig, Streamer};

use crate::truth::Truth;

/// What can go wrong, naming the field, file or element.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("scenario {path}: {reason}")]
    ScenarioFile { path: String, reason: String },
    #[error("scenario `{field}`: {reason}")]
    Scenario { field: String, reason: String },
    #[error("camera `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("{}: {reason}", path.display())]
    Footage { path: PathBuf, reason: String },
    #[error("OpenCV: {0}")]
    OpenCv(String),
    #[error("camera stream: {0}")]
    Stream(String),
    #[error("camera model: {0}")]
    Geometry(#[from] tiancha_geometry::camera::CameraError),
    #[error("ground-truth log {}: {reason}", path.display())]
    TruthLog { path: PathBuf, reason: String },
}

impl From<opencv::Error> for CameraError {
    fn from(e: opencv::Error) -> Self {
        CameraError::OpenCv(e.to_string())
    }
}

/// Everything the running camera needs besides the scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    pub camera: CameraSpec,
    /// Frames per second of wall-clock time.
    pub fps: f64,
    /// Burn the capture time (Unix ms) into the top-left corner.
    pub burn_timestamp: bool,
    /// Write one JSON line of ground truth per frame ([`FrameTruth`]).
    pub truth_log: Option<PathBuf>,
    pub stream: StreamConfig,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            camera: CameraSpec::default(),
            fps: 10.0,
            burn_timestamp: false,
            truth_log: None,
            stream: StreamConfig::default(),
        }
    }
}

/// The ground truth of one streamed frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameTruth {
    /// Frame number in the stream (0, 1, …).
    pub seq: u64,
    /// Wall-clock time the frame was rendered (what is burned in).
    pub capture_unix_ms: i64,
    /// The truth it was rendered from: simulated time and pose.
    pub sim_time_s: f64,
    pub truth_t_unix_ms: f64,
    pub lat_deg: f64,
    pub lon_deg: f64,
    pub alt_m: f64,
    pub roll_deg: f64,
    pub pitch_deg: f64,
    pub yaw_deg: f64,
    pub gimbal_pitch_deg: f64,
    pub gimbal_yaw_deg: f64,
    /// People in view (feet inside the image or their box overlapping it).
    pub people: Vec<PersonInView>,
    /// Fires burning (in view or not: see `in_image`).
    #[serde(default)]
    pub fires: Vec<FireInView>,
}

impl FrameTruth {
    fn new(
        seq: u64,
        capture_unix_ms: i64,
        t: &Truth,
        people: Vec<PersonInView>,
        fires: Vec<FireInView>,
    ) -> Self {
        Self {
            seq,
            capture_unix_ms,
            sim_time_s: t.sim_time_s,
            truth_t_unix_ms: t.t_unix_ms,
            lat_deg: t.position.lat_deg,
            lon_deg: t.position.lon_deg,
            alt_m: t.position.alt_m,
            roll_deg: t.roll_rad.to_degrees(),
            pitch_deg: t.pitch_rad.to_degrees(),
            yaw_deg: t.yaw_rad.to_degrees(),
            gimbal_pitch_deg: t.gimbal_pitch_deg,
            gimbal_yaw_deg: t.gimbal_yaw_deg,
            people,
            fires,
        }
    }
}

/// Counters of a running camera.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CameraStats {
    pub frames: u64,
    /// Frames whose render + encode hand-off overran the frame period.
    pub late: u64,
    /// Render + push time of the latest frame, ms.
    pub last_frame_ms: f64,
    /// Sum of render + push times, ms (mean = total / frames).
    pub total_frame_ms: f64,
}

/// A running camera. Dropping it stops it.
pub struct CameraHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), CameraError>>>,
    stats: Arc<Mutex<CameraStats>>,
    model: tiancha_geometry::camera::CameraModel,
    rtsp_url: Option<String>,
}

impl CameraHandle {
    pub fn stats(&self) -> CameraStats {
        *self.stats.lock().unwrap()
    }

    /// The camera model the eye must use for this stream.
    pub fn model(&self) -> tiancha_geometry::camera::CameraModel {
        self.model
    }

    /// The RTSP URL when serving RTSP.
    pub fn rtsp_url(&self) -> Option<&str> {
        self.rtsp_url.as_deref()
    }

    /// True while the render thread runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stop and return the render thread's result (its error, if it
    /// failed).
    pub fn stop(mut self) -> Result<CameraStats, CameraError> {
        self.stop.store(true, Ordering::SeqCst);
        let r = match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(CameraError::Stream("the render thread panicked".into()))),
            None => Ok(()),
        };
        r.map(|_| self.stats())
    }
}

impl Drop for CameraHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Start the camera: generate the ground, cut the sprites, start the
/// stream, then render `cfg.fps` frames per wall-clock second from the
/// newest truth on a thread of its own. Set-up errors (a bad config, the
/// missing vtest.avi, a missing GStreamer element) are returned here;
/// later errors end the thread and come back from [`CameraHandle::stop`].
/// The thread also ends when the truth's sender is dropped.
pub fn start_camera(
    scenario: &Scenario,
    cfg: CameraConfig,
    truth: watch::Receiver<Truth>,
) -> Result<CameraHandle, CameraError> {
    let renderer = Renderer::new(scenario, cfg.camera)?;
    start_with_renderer(renderer, cfg, truth)
}

/// [`start_camera`] with a renderer made earlier.
pub fn start_with_renderer(
    renderer: Renderer,
    cfg: CameraConfig,
    truth: watch::Receiver<Truth>,
) -> Result<CameraHandle, CameraError> {
    cfg.camera.validate()?;
    if !(cfg.fps.is_finite() && cfg.fps > 0.0 && cfg.fps <= 60.0) {
        return Err(CameraError::Config {
            field: "fps",
            reason: format!("{} is not in (0, 60]", cfg.fps),
        });
    }
    let streamer = Streamer::start(
        &cfg.stream,
        cfg.camera.width_px,
        cfg.camera.height_px,
        cfg.fps,
    )?;
    let rtsp_url = streamer.rtsp_url().map(str::to_string);
    let log = match &cfg.truth_log {
        None => None,
        Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p).map_err(
            |e| CameraError::TruthLog {
                path: p.clone(),
                reason: e.to_string(),
            },
        )?)),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Mutex::new(CameraStats::default()));
    let model = renderer.model();
    let thread = {
        let stop = stop.clone();
        let stats = stats.clone();
        std::thread::Builder::new()
            .name("tiancha-sim-camera".into())
            .spawn(move || run(renderer, streamer, cfg, truth, log, stop, stats))
            .map_err(|e| CameraError::Stream(format!("cannot start the render thread: {e}")))?
    };
    Ok(CameraHandle {
        stop,
        thread: Some(thread),
        stats,
        model,
        rtsp_url,
    })
}

fn run(
    renderer: Renderer,
    mut streamer: Streamer,
    cfg: CameraConfig,
    truth: watch::Receiver<Truth>,
    mut log: Option<std::io::BufWriter<std::fs::File>>,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<CameraStats>>,
) -> Result<(), CameraError> {
    let period = Duration::from_secs_f64(1.0 / cfg.fps);
    let mut next = Instant::now();
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if truth.has_changed().is_err() {
            tracing::info!("simulated camera: the simulator stopped");
            break;
        }
        let started = Instant::now();
        let t = truth.borrow().clone();
        let capture_unix_ms = unix_ms_now();
        let mut frame = renderer.render_truth(&t)?;
        if cfg.burn_timestamp {
            timestamp::burn_timestamp(&mut frame.image, capture_unix_ms)?;
        }
        streamer.push(&frame.image)?;
        if let Some(w) = log.as_mut() {
            let line = serde_json::to_string(&FrameTruth::new(
                seq,
                capture_unix_ms,
                &t,
                frame.people,
                frame.fires,
            ))
            .expect("ground truth serialises");
            let path = || cfg.truth_log.clone().unwrap_or_default();
            writeln!(w, "{line}")
                .and_then(|_| w.flush())
                .map_err(|e| CameraError::TruthLog {
                    path: path(),
                    reason: e.to_string(),
                })?;
        }
        seq += 1;
        let took = started.elapsed();
        next += period;
        let now = Instant::now();
        let late = now > next;
        {
            let mut s = stats.lock().unwrap();
            s.frames += 1;
            s.last_frame_ms = took.as_secs_f64() * 1e3;
            s.total_frame_ms += s.last_frame_ms;
            if late {
                s.late += 1;
            }
        }
        if late {
            // Drop the missed slots rather than bursting to catch up.
            next = now;
        } else {
            std::thread::sleep(next - now);
        }
    }
    Ok(())
}
