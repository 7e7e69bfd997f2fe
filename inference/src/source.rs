//! Video in: a frame source by URI, built on GStreamer (hardware-agnostic
//! decoding through `decodebin`), handing over decoded BGR frames.
//!
//! | URI | pipeline |
//! |---|---|
//! | `rtsp://…`, `rtsps://…` | `uridecodebin` (rtspsrc, latency and timeouts set) |
//! | `udp://[host]:port?codec=h264\|h265&pt=96` | `udpsrc` (RTP caps) ! `rtpjitterbuffer` ! depay ! parse ! `decodebin` |
//! | a file path or `file://…` (mp4, mkv, avi, …) | `uridecodebin` |
//! | a directory or `dir://…` | the images in it (jpg, png, bmp, tif), in name order, via OpenCV |
//! | `v4l2:///dev/video0`, `/dev/videoN` | `v4l2src` ! `decodebin` |
//! | `test://[pattern]?width=&height=&fps=` | live `videotestsrc` |
//!
//! With [`SourceConfig::video`] set, the decoded stream is teed: one
//! branch as below, the other to the video out ([`crate::video_out`]:
//! leaky queue, videorate, videoscale, overlay, encoder, RTSP). Folders
//! have no video out.
//!
//! All end in `videoconvert ! appsink` (BGR). The appsink's callback puts
//! each frame in a one-frame slot:
//!
//! - [`Delivery::Newest`] (live streams): a new frame replaces an unread
//!   one, which is counted as dropped. Latency stays bounded under
//!   overload and nothing builds a backlog.
//! - [`Delivery::Every`] (files, folders): the decoder waits until the
//!   slot is free, so every frame is processed.
//!
//! A file can also be replayed as a camera would deliver it
//! ([`SourceConfig::realtime`], at its own frame rate, usually with
//! `Newest`), or thinned to every Nth frame ([`SourceConfig::frame_step`]).
//!
//! A supervisor thread watches the bus. A live stream that errors, ends,
//! never delivers a first frame within `connect_timeout`, or stalls for
//! `stall_timeout` is torn down and rebuilt with exponential back-off,
//! and each step is reported as a [`SourceEvent`]. Files do not reconnect:
//! their errors (including a file that ends well before its declared
//! duration — truncated) end the source with a [`SourceError`].
//!
//! Every frame carries its capture time: for live sources, the buffer's
//! running time converted to wall clock and monotonic time (so it includes
//! the pipeline's latency); for files and folders, `start_unix_ms` plus
//! the stream position.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use serde::{Deserialize, Serialize};

use crate::frame::{unix_ms_now, Frame};
use crate::video_out::{OverlayBoard, VideoTap};

/// Why a source failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    #[error("video source {uri:?} is not a usable URI: {reason}")]
    InvalidUri { uri: String, reason: String },
    #[error("video source {uri}: bad setting: {reason}")]
    InvalidConfig { uri: String, reason: String },
    #[error("video source {path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error("video source {uri}: cannot build the GStreamer pipeline: {reason}")]
    Pipeline { uri: String, reason: String },
    #[error("video source {uri}: {reason}")]
    Stream { uri: String, reason: String },
    #[error("video source {uri}: no frame within {after_s:.1} s (the stream never answered)")]
    NoFrames { uri: String, after_s: f64 },
    #[error("video source {uri}: file is truncated or damaged: it ended at {ended_s:.1} s of the {declared_s:.1} s its header declares")]
    Truncated {
        uri: String,
        ended_s: f64,
        declared_s: f64,
    },
    #[error("video source {uri}: gave up after {attempts} attempts; last error: {last}")]
    GaveUp {
        uri: String,
        attempts: u32,
        last: String,
    },
}

/// What the source does when frames come faster than they are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Keep only the newest frame; count the others as dropped.
    Newest,
    /// Hold the decoder until each frame is taken.
    Every,
}

/// Reconnection back-off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// Delay before attempt `n` (1-based): initial × 2^(n−1), capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let f = 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        self.initial.mul_f64(f).min(self.max)
    }
}

/// How to open a source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub uri: String,
    /// `None`: `Every` for files and folders, `Newest` for live sources.
    pub delivery: Option<Delivery>,
    /// A live source must deliver its first frame within this.
    pub connect_timeout: Duration,
    /// A live source that delivered frames and then none for this long is
    /// reconnected.
    pub stall_timeout: Duration,
    pub backoff: Backoff,
    /// RTSP / RTP jitter-buffer latency, ms.
    pub latency_ms: u32,
    /// Wall-clock time of a file's first frame (default: when opened).
    pub start_unix_ms: Option<i64>,
    /// Frame interval for image folders, ms.
    pub folder_interval_ms: i64,
    /// Play a file at its own frame rate, as a live camera would deliver
    /// it (the appsink waits for each frame's time). With
    /// [`Delivery::Newest`] this replays a recording under live
    /// conditions: benchmarks measure frame-to-event latency this way.
    pub realtime: bool,
    /// Deliver every `frame_step`-th decoded frame (1: all). The others
    /// are skipped, not counted as dropped; frame numbers (`seq`) stay
    /// those of the stream. Runs a recording at the frame rate a companion
    /// keeps up with (e.g. 2 on a 10 fps file: 5 fps of capture time).
    pub frame_step: u64,
    /// Also carry the stream out as video (see [`crate::video_out`]).
    pub video: Option<VideoTap>,
}

impl SourceConfig {
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            delivery: None,
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
            latency_ms: 200,
            start_unix_ms: None,
            folder_interval_ms: 1000,
            realtime: false,
            frame_step: 1,
            video: None,
        }
    }
}

/// What a URI points at.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    Rtsp {
        uri: String,
    },
    Udp {
        address: Option<String>,
        port: u16,
        codec: Codec,
        payload: u8,
    },
    File {
        path: PathBuf,
    },
    Folder {
        path: PathBuf,
    },
    V4l2 {
        device: PathBuf,
    },
    Test {
        pattern: String,
        width: u32,
        height: u32,
        fps: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
}

impl SourceKind {
    /// Parse a source URI (see the module docs).
    pub fn parse(uri: &str) -> Result<Self, SourceError> {
        let invalid = |reason: &str| SourceError::InvalidUri {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = match uri.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => (String::new(), uri),
        };
        let (body, query) = match rest.split_once('?') {
            Some((b, q)) => (b, q),
            None => (rest, ""),
        };
        let params: Vec<(&str, &str)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        let param = |k: &str| params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        let num = |k: &str, default: u32| -> Result<u32, SourceError> {
            match param(k) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| invalid(&format!("parameter {k}={v:?} is not a number"))),
            }
        };
        match scheme.as_str() {
            "rtsp" | "rtsps" | "rtspt" => {
                if body.is_empty() {
                    return Err(invalid("no host"));
                }
                Ok(SourceKind::Rtsp {
                    uri: uri.to_string(),
                })
            }
            "udp" | "rtp" => {
                let (host, port) = body
                    .rsplit_once(':')
                    .ok_or_else(|| invalid("needs a port, e.g. udp://0.0.0.0:5600"))?;
                let port: u16 = port
                    .trim_end_matches('/')
                    .parse()
                    .map_err(|_| invalid("the port is not a number"))?;
                let codec = match param("codec")
                    .unwrap_or("h264")
                    .to_ascii_lowercase()
                    .as_str()
                {
                    "h264" | "avc" => Codec::H264,
                    "h265" | "hevc" => Codec::H265,
                    other => return Err(invalid(&format!("codec {other:?} is not h264 or h265"))),
                };
                let payload = num("pt", 96)?;
                if payload > 127 {
                    return Err(invalid("RTP payload type must be 0..127"));
                }
                let host = host.trim_matches(|c| c == '[' || c == ']');
                Ok(SourceKind::Udp {
                    address: (!host.is_empty() && host != "0.0.0.0" && host != "@")
                        .then(|| host.to_string()),
                    port,
                    codec,
                    payload: payload as u8,
                })
            }
            "v4l2" => {
                let dev = if body.is_empty() { "/dev/video0" } else { body };
                Ok(SourceKind::V4l2 {
                    device: PathBuf::from(dev),
                })
            }
            "test" | "testsrc" => {
                let pattern = if body.is_empty() {
                    "smpte"
                } else {
                    body.trim_matches('/')
                };
                let fps = num("fps", 30)?;
                let (width, height) = (num("width", 640)?, num("height", 480)?);
                if fps == 0 || width == 0 || height == 0 {
                    return Err(invalid("width, height and fps must be positive"));
                }
                Ok(SourceKind::Test {
                    pattern: pattern.to_string(),
                    width,
                    height,
                    fps,
                })
            }
            "dir" => Ok(SourceKind::Folder {
                path: PathBuf::from(body),
            }),
            "file" | "" => {
                let path = PathBuf::from(if scheme.is_empty() { uri } else { body });
                if path.to_string_lossy().starts_with("/dev/video") {
                    return Ok(SourceKind::V4l2 { device: path });
                }
                if path.is_dir() {
                    Ok(SourceKind::Folder { path })
                } else {
                    Ok(SourceKind::File { path })
                }
            }
            other => Err(invalid(&format!(
                "scheme {other:?} is not one of rtsp, udp, file, dir, v4l2, test"
            ))),
        }
    }

    /// Files and folders are not live.
    pub fn is_live(&self) -> bool {
        !matches!(self, SourceKind::File { .. } | SourceKind::Folder { .. })
    }
}

/// Something the source wants its user to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SourceEvent {
    /// Frames are flowing (first frame of a connection).
    Connected {
        t_unix_ms: i64,
        width: u32,
        height: u32,
        attempt: u32,
    },
    /// The stream failed; a reconnect follows unless the source gives up.
    Disconnected { t_unix_ms: i64, reason: String },
    /// About to try again after `delay_ms`.
    Reconnecting {
        t_unix_ms: i64,
        attempt: u32,
        delay_ms: u64,
    },
    /// An item (an image in a folder) could not be read and was skipped.
    Skipped {
        t_unix_ms: i64,
        item: String,
        reason: String,
    },
}

/// What [`FrameSource::recv`] returns.
#[derive(Debug)]
pub enum SourceItem {
    Frame(Frame),
    Event(SourceEvent),
    /// The source is finished (end of file, gave up, or stopped). Returned
    /// again on every later call.
    End(Result<(), SourceError>),
}

/// Counters, readable at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStats {
    /// Frames decoded.
    pub decoded: u64,
    /// Frames handed to the user.
    pub delivered: u64,
    /// Frames replaced in the slot before being taken (Newest).
    pub dropped: u64,
    /// Connections made after the first.
    pub reconnects: u64,
}

struct Inner {
    slot: Option<Frame>,
    events: VecDeque<SourceEvent>,
    end: Option<Result<(), SourceError>>,
}

struct Shared {
    inner: Mutex<Inner>,
    cond: Condvar,
    stop: AtomicBool,
    decoded: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    /// Monotonic ms (since `epoch`) of the latest decoded frame.
    last_frame_ms: AtomicU64,
    epoch: Instant,
    delivery: Delivery,
    /// Declared duration of a file, ms (−1: unknown).
    duration_ms: AtomicI64,
    /// Size of the latest frame, `width << 32 | height`.
    last_size: AtomicU64,
    /// Stream position of the latest frame, ms (−1: none).
    last_pts_ms: AtomicI64,
    /// Deliver only frames whose `seq` is a multiple of this.
    frame_step: u64,
    /// The connection attempt whose first frame is still to come (−1:
    /// none). The first frame announces `Connected` before it is offered,
    /// so a consumer always sees the event before that connection's frames.
    announce: AtomicI64,
    /// Called with every decoded frame ([`FrameSource::on_every_frame`]).
    hook: Mutex<Option<FrameHook>>,
}

/// Called with every decoded frame, on the decoder's thread, before the
/// frame is offered to the newest-frame slot; it must return at once.
pub type FrameHook = Box<dyn Fn(&Frame) + Send + Sync>;

impl Shared {
    fn push_event(&self, e: SourceEvent) {
        tracing::info!(?e, "video source");
        let mut g = self.inner.lock().unwrap();
        g.events.push_back(e);
        self.cond.notify_all();
    }

    fn finish(&self, r: Result<(), SourceError>) {
        if let Err(e) = &r {
            tracing::warn!("{e}");
        }
        let mut g = self.inner.lock().unwrap();
        if g.end.is_none() {
            g.end = Some(r);
        }
        self.cond.notify_all();
    }

    /// Offer a decoded frame (called from GStreamer's streaming thread).
    /// Returns false when the source is stopping.
    fn offer(&self, frame: Frame) -> bool {
        self.last_size.store(
            (frame.width as u64) << 32 | frame.height as u64,
            Ordering::Relaxed,
        );
        if let Some(p) = frame.pts_ms {
            self.last_pts_ms.store(p, Ordering::Relaxed);
        }
        // After the size: whoever sees the count sees the size.
        self.decoded.fetch_add(1, Ordering::Release);
        self.last_frame_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let attempt = self.announce.swap(-1, Ordering::AcqRel);
        if attempt >= 0 {
            if attempt > 0 {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            self.push_event(SourceEvent::Connected {
                t_unix_ms: unix_ms_now(),
                width: frame.width,
                height: frame.height,
                attempt: attempt as u32,
            });
        }
        if let Some(hook) = self.hook.lock().unwrap().as_ref() {
            hook(&frame);
        }
        if !frame.seq.is_multiple_of(self.frame_step) {
            return !self.stop.load(Ordering::Relaxed);
        }
        let mut g = self.inner.lock().unwrap();
        match self.delivery {
            Delivery::Newest => {
                if g.slot.replace(frame).is_some() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Delivery::Every => {
                while g.slot.is_some() {
                    if self.stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    g = self
                        .cond
                        .wait_timeout(g, Duration::from_millis(100))
                        .unwrap()
                        .0;
                }
                g.slot = Some(frame);
            }
        }
        self.cond.notify_all();
        !self.stop.load(Ordering::Relaxed)
    }

    fn since_last_frame(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_frame_ms.load(Ordering::Relaxed)))
    }
}

/// A running video source. Dropping it stops it.
pub struct FrameSource {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    kind: SourceKind,
    uri: String,
    overlay: Option<OverlayBoard>,
}

impl FrameSource {
    /// Check the URI, then start the source in the background. Errors
    /// here are about the URI itself (bad syntax, missing file, missing
    /// GStreamer); stream problems arrive through [`FrameSource::recv`].
    pub fn open(cfg: SourceConfig) -> Result<Self, SourceError> {
        let kind = SourceKind::parse(&cfg.uri)?;
        if cfg.frame_step == 0 {
            return Err(SourceError::InvalidConfig {
                uri: cfg.uri.clone(),
                reason: "frame_step must be at least 1".into(),
            });
        }
        match &kind {
            SourceKind::File { path } | SourceKind::Folder { path } if !path.exists() => {
                return Err(SourceError::NotFound { path: path.clone() })
            }
            SourceKind::V4l2 { device } if !device.exists() => {
                return Err(SourceError::NotFound {
                    path: device.clone(),
                })
            }
            _ => {}
        }
        if !matches!(kind, SourceKind::Folder { .. }) {
            gst::init().map_err(|e| SourceError::Pipeline {
                uri: cfg.uri.clone(),
                reason: format!("GStreamer did not initialise: {e}"),
            })?;
        }
        let delivery = cfg.delivery.unwrap_or(if kind.is_live() {
            Delivery::Newest
        } else {
            Delivery::Every
        });
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                slot: None,
                events: VecDeque::new(),
                end: None,
            }),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
            decoded: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_frame_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            delivery,
            duration_ms: AtomicI64::new(-1),
            last_size: AtomicU64::new(0),
            last_pts_ms: AtomicI64::new(-1),
            frame_step: cfg.frame_step,
            announce: AtomicI64::new(-1),
            hook: Mutex::new(None),
        });
        let uri = cfg.uri.clone();
        let overlay = cfg.video.as_ref().map(|v| v.overlay().clone());
        let thread = {
            let shared = shared.clone();
            let kind = kind.clone();
            std::thread::Builder::new()
                .name("tiancha-source".into())
                .spawn(move || match &kind {
                    SourceKind::Folder { path } => run_folder(&shared, path.clone(), &cfg),
                    _ => supervise(&shared, &kind, &cfg),
                })
                .map_err(|e| SourceError::Pipeline {
                    uri: uri.clone(),
                    reason: format!("cannot start a thread: {e}"),
                })?
        };
        Ok(Self {
            shared,
            thread: Some(thread),
            kind,
            uri,
            overlay,
        })
    }

    /// Where to publish the overlay when the source carries video out
    /// (the [`crate::Pipeline`] does, after each frame).
    pub fn video_overlay(&self) -> Option<OverlayBoard> {
        self.overlay.clone()
    }

    /// See every decoded frame as it comes, whatever the newest-frame slot
    /// keeps (the [`crate::Pipeline`] moves its tracks with each). Replaces
    /// an earlier hook; dropped when the source stops.
    pub fn on_every_frame(&self, hook: FrameHook) {
        *self.shared.hook.lock().unwrap() = Some(hook);
    }

    pub fn kind(&self) -> &SourceKind {
        &self.kind
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn delivery(&self) -> Delivery {
        self.shared.delivery
    }

    /// The next event, frame or end, waiting at most `timeout`. Events
    /// come before frames; `None` means nothing arrived in time.
    pub fn recv(&self, timeout: Duration) -> Option<SourceItem> {
        let deadline = Instant::now() + timeout;
        let mut g = self.shared.inner.lock().unwrap();
        loop {
            if let Some(e) = g.events.pop_front() {
                return Some(SourceItem::Event(e));
            }
            if let Some(f) = g.slot.take() {
                self.shared.delivered.fetch_add(1, Ordering::Relaxed);
                self.shared.cond.notify_all();
                return Some(SourceItem::Frame(f));
            }
            if let Some(end) = &g.end {
                return Some(SourceItem::End(end.clone()));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            g = self.shared.cond.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// A handle for reading the counters and duration while something
    /// else owns the source (e.g. a [`crate::Pipeline`]).
    pub fn handle(&self) -> SourceHandle {
        SourceHandle {
            shared: self.shared.clone(),
        }
    }

    /// A file's declared duration (ms), once known.
    pub fn duration_ms(&self) -> Option<i64> {
        let d = self.shared.duration_ms.load(Ordering::Relaxed);
        (d >= 0).then_some(d)
    }

    pub fn stats(&self) -> SourceStats {
        self.handle().stats()
    }

    /// Stop the source and wait for its thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.cond.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FrameSource {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Read-only view of a running source.
#[derive(Clone)]
pub struct SourceHandle {
    shared: Arc<Shared>,
}

impl SourceHandle {
    /// A file's declared duration (ms), once known.
    pub fn duration_ms(&self) -> Option<i64> {
        let d = self.shared.duration_ms.load(Ordering::Relaxed);
        (d >= 0).then_some(d)
    }

    pub fn stats(&self) -> SourceStats {
        SourceStats {
            decoded: self.shared.decoded.load(Ordering::Relaxed),
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
        }
    }
}

// ------------------------------------------------------------ GStreamer

enum Outcome {
    Stopped,
    Eos,
    Failed(SourceError),
}

fn make(name: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(name)
        .build()
        .map_err(|_| format!("GStreamer element {name:?} is missing (is its plugin installed?)"))
}

struct Built {
    pipeline: gst::Pipeline,
}

/// Build the pipeline for one connection attempt.
fn build(
    shared: &Arc<Shared>,
    kind: &SourceKind,
    cfg: &SourceConfig,
    seq: Arc<AtomicU64>,
    start_unix_ms: i64,
    start_mono: Instant,
) -> Result<Built, String> {
    let pipeline = gst::Pipeline::default();
    let convert = make("videoconvert")?;
    let caps = gst_video::VideoCapsBuilder::new()
        .format(gst_video::VideoFormat::Bgr)
        .build();
    let appsink = gst_app::AppSink::builder()
        .caps(&caps)
        .max_buffers(2)
        .drop(false)
        .sync(cfg.realtime && !kind.is_live())
        .build();
    pipeline
        .add_many([&convert, appsink.upcast_ref()])
        .map_err(|e| e.to_string())?;
    convert
        .link(&appsink)
        .map_err(|e| format!("cannot link videoconvert to appsink: {e}"))?;
    // Where decoded video enters: videoconvert, or a tee in front of it
    // that also feeds the video out.
    let head = match &cfg.video {
        None => convert.clone(),
        Some(tap) => video_branch(&pipeline, &convert, tap)?,
    };

    // Link a dynamic decoder pad to the head when it is video.
    let link_video = {
        let convert = head.clone();
        move |pad: &gst::Pad| {
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let is_video = caps
                .structure(0)
                .map(|s| s.name().starts_with("video/"))
                .unwrap_or(false);
            let sink = convert
                .static_pad("sink")
                .expect("videoconvert has a sink pad");
            if is_video && !sink.is_linked() {
                if let Err(e) = pad.link(&sink) {
                    tracing::warn!("cannot link decoded video: {e:?}");
                }
            }
        }
    };

    match kind {
        SourceKind::Rtsp { uri } => {
            let dec = make("uridecodebin")?;
            dec.set_property("uri", uri);
            let latency = cfg.latency_ms;
            let tcp_timeout_us = cfg.connect_timeout.as_micros() as u64;
            dec.connect("source-setup", false, move |args| {
                if let Ok(src) = args[1].get::<gst::Element>() {
                    if src.has_property("latency") {
                        src.set_property("latency", latency);
                    }
                    if src.has_property("tcp-timeout") {
                        src.set_property("tcp-timeout", tcp_timeout_us);
                    }
                    if src.has_property("teardown-timeout") {
                        src.set_property("teardown-timeout", 100_000_000u64);
                    }
                }
                None
            });
            pipeline.add(&dec).map_err(|e| e.to_string())?;
            dec.connect_pad_added(move |_, pad| link_video(pad));
        }
        SourceKind::File { path } => {
            let dec = make("uridecodebin")?;
            let uri = gst::glib::filename_to_uri(path, None)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            dec.set_property("uri", uri.as_str());
            pipeline.add(&dec).map_err(|e| e.to_string())?;
            dec.connect_pad_added(move |_, pad| link_video(pad));
        }
        SourceKind::Udp {
            address,
            port,
            codec,
            payload,
        } => {
            let src = make("udpsrc")?;
            src.set_property("port", *port as i32);
            if let Some(a) = address {
                src.set_property("address", a.as_str());
            }
            let enc = match codec {
                Codec::H264 => "H264",
                Codec::H265 => "H265",
            };
            let rtp_caps = gst::Caps::builder("application/x-rtp")
                .field("media", "video")
                .field("clock-rate", 90_000i32)
                .field("encoding-name", enc)
                .field("payload", *payload as i32)
                .build();
            src.set_property("caps", &rtp_caps);
            let jitter = make("rtpjitterbuffer")?;
            jitter.set_property("latency", cfg.latency_ms);
            let (depay, parse) = match codec {
                Codec::H264 => (make("rtph264depay")?, make("h264parse")?),
                Codec::H265 => (make("rtph265depay")?, make("h265parse")?),
            };
            let dec = make("decodebin")?;
            pipeline
                .add_many([&src, &jitter, &depay, &parse, &dec])
                .map_err(|e| e.to_string())?;
            gst::Element::link_many([&src, &jitter, &depay, &parse, &dec])
                .map_err(|e| format!("cannot link the RTP chain: {e}"))?;
            dec.connect_pad_added(move |_, pad| link_video(pad));
        }
        SourceKind::V4l2 { device } => {
            let src = make("v4l2src")?;
            src.set_property("device", device.to_string_lossy().as_ref());
            let dec = make("decodebin")?;
            pipeline.add_many([&src, &dec]).map_err(|e| e.to_string())?;
            src.link(&dec).map_err(|e| e.to_string())?;
            dec.connect_pad_added(move |_, pad| link_video(pad));
        }
        SourceKind::Test {
            pattern,
            width,
            height,
            fps,
        } => {
            let src = make("videotestsrc")?;
            src.set_property("is-live", true);
            src.set_property_from_str("pattern", pattern);
            let filter = make("capsfilter")?;
            filter.set_property(
                "caps",
                gst_video::VideoCapsBuilder::new()
                    .width(*width as i32)
                    .height(*height as i32)
                    .framerate(gst::Fraction::new(*fps as i32, 1))
                    .build(),
            );
            pipeline
                .add_many([&src, &filter])
                .map_err(|e| e.to_string())?;
            gst::Element::link_many([&src, &filter, &head])
                .map_err(|e| format!("test pattern: {e}"))?;
        }
        SourceKind::Folder { .. } => unreachable!("folders are not GStreamer sources"),
    }

    let live = kind.is_live();
    let shared_cb = shared.clone();
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let received = Instant::now();
                let frame = match crate::frame::sample_bgr(&sample) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!("skipping an undecodable frame: {e}");
                        return Ok(gst::FlowSuccess::Ok);
                    }
                };
                let (width, height, bgr) = frame;
                let pts = sample.buffer().and_then(|b| b.pts());
                let pts_ms = pts.map(|p| p.mseconds() as i64);
                let (capture_unix_ms, capture_mono) = if live {
                    // Running time → clock time → age → wall clock.
                    let age = (|| {
                        let seg = sample.segment()?.downcast_ref::<gst::ClockTime>()?.clone();
                        let running = seg.to_running_time(pts?)?;
                        let clock = sink.clock()?;
                        let base = sink.base_time()?;
                        let now = clock.time();
                        Some(Duration::from_nanos(
                            now.nseconds().saturating_sub((base + running).nseconds()),
                        ))
                    })()
                    .unwrap_or_default()
                    .min(Duration::from_secs(60));
                    (
                        unix_ms_now() - age.as_millis() as i64,
                        received.checked_sub(age).unwrap_or(received),
                    )
                } else {
                    let p = pts_ms.unwrap_or(0).max(0);
                    (
                        start_unix_ms + p,
                        start_mono + Duration::from_millis(p as u64),
                    )
                };
                let frame = Frame {
                    seq: seq.fetch_add(1, Ordering::Relaxed),
                    width,
                    height,
                    bgr: Arc::new(bgr),
                    pts_ms,
                    capture_unix_ms,
                    capture_mono,
                    received_mono: received,
                    name: None,
                };
                if shared_cb.offer(frame) {
                    Ok(gst::FlowSuccess::Ok)
                } else {
                    Err(gst::FlowError::Flushing)
                }
            })
            .build(),
    );
    Ok(Built { pipeline })
}

/// The tee and the video-out branch: `tee ! videoconvert` (inference, as
/// without video) and `tee ! queue (1 buffer, leaky) ! videorate ! videoscale
/// ! videoconvert ! BGR W×H ! appsink` whose samples go to the tap.
/// Returns the tee.
fn video_branch(
    pipeline: &gst::Pipeline,
    convert: &gst::Element,
    tap: &VideoTap,
) -> Result<gst::Element, String> {
    let tee = make("tee")?;
    let queue = make("queue")?;
    queue.set_property("max-size-buffers", 1u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", 0u64);
    queue.set_property_from_str("leaky", "downstream");
    let rate = make("videorate")?;
    rate.set_property("drop-only", true);
    rate.set_property("skip-to-first", true);
    let scale = make("videoscale")?;
    let vconvert = make("videoconvert")?;
    let (w, h) = tap.size();
    let sink = gst_app::AppSink::builder()
        .caps(
            &gst_video::VideoCapsBuilder::new()
                .format(gst_video::VideoFormat::Bgr)
                .width(w as i32)
                .height(h as i32)
                .build(),
        )
        .max_buffers(1)
        .drop(true)
        .sync(false)
        .build();
    sink.set_property("async", false);
    tap.attach_videorate(&rate);
    let chain = [&queue, &rate, &scale, &vconvert, sink.upcast_ref()];
    pipeline.add(&tee).map_err(|e| e.to_string())?;
    pipeline.add_many(chain).map_err(|e| e.to_string())?;
    tee.link(convert)
        .map_err(|e| format!("cannot link the tee to inference: {e}"))?;
    tee.link(&queue)
        .map_err(|e| format!("cannot link the tee to video out: {e}"))?;
    gst::Element::link_many(chain).map_err(|e| format!("video out branch: {e}"))?;
    let tap = tap.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                tap.on_sample(&sample);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(tee)
}

fn error_text(msg: &gst::message::Error) -> String {
    let src = msg
        .src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_default();
    let short = src.rsplit('/').next().unwrap_or("");
    match msg.debug() {
        Some(d) => format!("{} (from {short}: {})", msg.error(), first_line(&d)),
        None => format!("{} (from {short})", msg.error()),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().last().unwrap_or(s).trim()
}

/// Run one connection until it ends. Returns how.
fn run_once(
    shared: &Arc<Shared>,
    kind: &SourceKind,
    cfg: &SourceConfig,
    seq: &Arc<AtomicU64>,
    attempt: u32,
) -> Outcome {
    let uri = cfg.uri.clone();
    let declared = match kind {
        SourceKind::File { path } => declared_duration(path),
        _ => None,
    };
    let start_unix_ms = cfg.start_unix_ms.unwrap_or_else(unix_ms_now);
    let built = match build(
        shared,
        kind,
        cfg,
        seq.clone(),
        start_unix_ms,
        Instant::now(),
    ) {
        Ok(b) => b,
        Err(reason) => return Outcome::Failed(SourceError::Pipeline { uri, reason }),
    };
    let pipeline = built.pipeline;
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let decoded_before = shared.decoded.load(Ordering::Relaxed);
    shared.announce.store(attempt as i64, Ordering::Release);
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        // The real reason is on the bus.
        let reason = bus
            .timed_pop_filtered(
                gst::ClockTime::from_mseconds(500),
                &[gst::MessageType::Error],
            )
            .and_then(|m| match m.view() {
                gst::MessageView::Error(err) => Some(error_text(err)),
                _ => None,
            })
            .unwrap_or_else(|| format!("cannot start: {e}"));
        let _ = pipeline.set_state(gst::State::Null);
        return Outcome::Failed(SourceError::Stream { uri, reason });
    }
    let started = Instant::now();
    let mut duration: Option<gst::ClockTime> = None;
    let outcome = loop {
        if shared.stop.load(Ordering::Relaxed) {
            break Outcome::Stopped;
        }
        let got_frames = shared.decoded.load(Ordering::Acquire) > decoded_before;
        if duration.is_none() && !kind.is_live() {
            duration = pipeline.query_duration::<gst::ClockTime>();
            if let Some(d) = duration {
                // The header's claim wins when it is longer: a demuxer that
                // rebuilt its index from a cut file reports what is left.
                let d = d.max(declared.unwrap_or(gst::ClockTime::ZERO));
                duration = Some(d);
                shared
                    .duration_ms
                    .store(d.mseconds() as i64, Ordering::Relaxed);
            }
        }
        if kind.is_live() {
            if !got_frames && started.elapsed() > cfg.connect_timeout {
                break Outcome::Failed(SourceError::NoFrames {
                    uri: uri.clone(),
                    after_s: cfg.connect_timeout.as_secs_f64(),
                });
            }
            if got_frames && shared.since_last_frame() > cfg.stall_timeout {
                break Outcome::Failed(SourceError::Stream {
                    uri: uri.clone(),
                    reason: format!(
                        "stalled: no frame for {:.1} s",
                        cfg.stall_timeout.as_secs_f64()
                    ),
                });
            }
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Error(err) => {
                break Outcome::Failed(SourceError::Stream {
                    uri: uri.clone(),
                    reason: error_text(err),
                });
            }
            gst::MessageView::Eos(_) => {
                if kind.is_live() {
                    break Outcome::Failed(SourceError::Stream {
                        uri: uri.clone(),
                        reason: "the stream ended".into(),
                    });
                }
                break Outcome::Eos;
            }
            gst::MessageView::Warning(w) => {
                tracing::warn!("video source {uri}: {}", w.error());
            }
            _ => {}
        }
    };
    // Files: compare where we ended with the declared duration.
    let outcome = match outcome {
        Outcome::Eos => {
            let duration = match (duration, declared) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            tracing::debug!(?duration, ?declared, "end of file");
            let decoded = shared.decoded.load(Ordering::Relaxed) - decoded_before;
            let last_pts = Some(shared.last_pts_ms.load(Ordering::Relaxed)).filter(|p| *p >= 0);
            let ended_ms = last_pts.or_else(|| {
                pipeline
                    .query_position::<gst::ClockTime>()
                    .map(|p| p.mseconds() as i64)
            });
            match (decoded, duration, ended_ms) {
                (0, _, _) => Outcome::Failed(SourceError::Stream {
                    uri: uri.clone(),
                    reason: "contains no decodable video".into(),
                }),
                (_, Some(d), Some(end)) if (end as f64) < d.mseconds() as f64 * 0.95 - 1000.0 => {
                    Outcome::Failed(SourceError::Truncated {
                        uri: uri.clone(),
                        ended_s: end as f64 / 1000.0,
                        declared_s: d.mseconds() as f64 / 1000.0,
                    })
                }
                _ => Outcome::Eos,
            }
        }
        o => o,
    };
    teardown(pipeline);
    outcome
}

/// The duration a file's container header declares (frame count / frame
/// rate as FFmpeg reads them through OpenCV), independent of what the
/// GStreamer demuxer managed to index.
fn declared_duration(path: &Path) -> Option<gst::ClockTime> {
    use opencv::prelude::*;
    use opencv::videoio;
    let cap = videoio::VideoCapture::from_file(path, videoio::CAP_FFMPEG).ok()?;
    if !cap.is_opened().ok()? {
        return None;
    }
    let frames = cap.get(videoio::CAP_PROP_FRAME_COUNT).ok()?;
    let fps = cap.get(videoio::CAP_PROP_FPS).ok()?;
    (frames > 0.0 && fps > 0.0 && frames.is_finite() && fps.is_finite())
        .then(|| gst::ClockTime::from_mseconds((frames / fps * 1000.0) as u64))
}

/// Set a pipeline to NULL without letting a stuck element (an RTSP
/// teardown to a dead server) hang the caller for long.
fn teardown(pipeline: gst::Pipeline) {
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("tiancha-teardown".into())
        .spawn(move || {
            let _ = pipeline.set_state(gst::State::Null);
            let _ = tx.send(());
        });
    if rx.recv_timeout(Duration::from_secs(3)).is_err() {
        tracing::warn!("video pipeline teardown is taking long; continuing without waiting");
    }
}

fn supervise(shared: &Arc<Shared>, kind: &SourceKind, cfg: &SourceConfig) {
    let seq = Arc::new(AtomicU64::new(0));
    let mut failures: u32 = 0;
    let mut attempt: u32 = 0;
    loop {
        let decoded_before = shared.decoded.load(Ordering::Relaxed);
        let outcome = run_once(shared, kind, cfg, &seq, attempt);
        attempt += 1;
        match outcome {
            Outcome::Stopped => return shared.finish(Ok(())),
            Outcome::Eos => {
                // Wait until the last frame is taken, then end.
                return shared.finish(Ok(()));
            }
            Outcome::Failed(e) => {
                if !kind.is_live() {
                    return shared.finish(Err(e));
                }
                if shared.decoded.load(Ordering::Relaxed) > decoded_before {
                    failures = 0; // it worked for a while
                }
                failures += 1;
                shared.push_event(SourceEvent::Disconnected {
                    t_unix_ms: unix_ms_now(),
                    reason: e.to_string(),
                });
                if cfg.backoff.max_attempts.is_some_and(|m| failures >= m) {
                    return shared.finish(Err(match e {
                        SourceError::NoFrames { .. } if failures == 1 => e,
                        _ => SourceError::GaveUp {
                            uri: cfg.uri.clone(),
                            attempts: failures,
                            last: e.to_string(),
                        },
                    }));
                }
                let delay = cfg.backoff.delay(failures);
                shared.push_event(SourceEvent::Reconnecting {
                    t_unix_ms: unix_ms_now(),
                    attempt: failures,
                    delay_ms: delay.as_millis() as u64,
                });
                let until = Instant::now() + delay;
                while Instant::now() < until {
                    if shared.stop.load(Ordering::Relaxed) {
                        return shared.finish(Ok(()));
                    }
                    std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
                }
            }
        }
    }
}

// ------------------------------------------------------------ folders

const IMAGE_EXTS: [&str; 7] = ["jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp"];

fn run_folder(shared: &Arc<Shared>, dir: PathBuf, cfg: &SourceConfig) {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect(),
        Err(e) => {
            return shared.finish(Err(SourceError::Stream {
                uri: cfg.uri.clone(),
                reason: format!("cannot list {}: {e}", dir.display()),
            }))
        }
    };
    files.sort();
    if files.is_empty() {
        return shared.finish(Err(SourceError::Stream {
            uri: cfg.uri.clone(),
            reason: format!(
                "{} holds no images ({})",
                dir.display(),
                IMAGE_EXTS.join(", ")
            ),
        }));
    }
    let start_unix_ms = cfg.start_unix_ms.unwrap_or_else(unix_ms_now);
    let start_mono = Instant::now();
    let mut seq = 0;
    shared.announce.store(0, Ordering::Release);
    for (i, path) in files.iter().enumerate() {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        match read_image(path) {
            Ok(mat) => {
                let t = i as i64 * cfg.folder_interval_ms;
                match Frame::from_mat(seq, &mat, start_unix_ms + t) {
                    Ok(mut f) => {
                        f.pts_ms = Some(t);
                        f.name = path.file_name().map(|n| n.to_string_lossy().into());
                        f.capture_mono = start_mono + Duration::from_millis(t as u64);
                        seq += 1;
                        if !shared.offer(f) {
                            break;
                        }
                    }
                    Err(e) => skip(shared, path, &e.to_string()),
                }
            }
            Err(reason) => skip(shared, path, &reason),
        }
    }
    shared.finish(Ok(()))
}

fn skip(shared: &Shared, path: &Path, reason: &str) {
    shared.push_event(SourceEvent::Skipped {
        t_unix_ms: unix_ms_now(),
        item: path.display().to_string(),
        reason: reason.to_string(),
    });
}

fn read_image(path: &Path) -> Result<opencv::core::Mat, String> {
    use opencv::core::MatTraitConst;
    let m = opencv::imgcodecs::imread(path, opencv::imgcodecs::IMREAD_COLOR)
        .map_err(|e| e.to_string())?;
    if m.empty() {
        return Err("not a readable image".into());
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_into_kinds() {
        assert_eq!(
            SourceKind::parse("rtsp://10.0.0.2:8554/cam").unwrap(),
            SourceKind::Rtsp {
                uri: "rtsp://10.0.0.2:8554/cam".into()
            }
        );
        assert_eq!(
            SourceKind::parse("udp://0.0.0.0:5600?codec=h265&pt=97").unwrap(),
            SourceKind::Udp {
                address: None,
                port: 5600,
                codec: Codec::H265,
                payload: 97
            }
        );
        assert_eq!(
            SourceKind::parse("udp://239.0.0.1:5000").unwrap(),
            SourceKind::Udp {
                address: Some("239.0.0.1".into()),
                port: 5000,
                codec: Codec::H264,
                payload: 96
            }
        );
        assert_eq!(
            SourceKind::parse("test://ball?width=320&height=240&fps=15").unwrap(),
            SourceKind::Test {
                pattern: "ball".into(),
                width: 320,
                height: 240,
                fps: 15
            }
        );
        assert_eq!(
            SourceKind::parse("/dev/video2").unwrap(),
            SourceKind::V4l2 {
                device: "/dev/video2".into()
            }
        );
        assert_eq!(
            SourceKind::parse("file:///tmp/x.mp4").unwrap(),
            SourceKind::File {
                path: "/tmp/x.mp4".into()
            }
        );
        assert!(matches!(
            SourceKind::parse("/tmp").unwrap(),
            SourceKind::Folder { .. }
        ));
        for bad in [
            "ftp://x/y",
            "udp://nohost",
            "udp://:notaport",
            "udp://:5000?codec=vp8",
            "test://?fps=0",
        ] {
            let e = SourceKind::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad.split('?').next().unwrap()), "{e}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            max_attempts: None,
        };
        let d: Vec<u128> = (1..=6).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn missing_files_are_refused_at_open() {
        let e = FrameSource::open(SourceConfig::new("/no/such/video.mp4"))
            .err()
            .unwrap();
        assert!(matches!(e, SourceError::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("/no/such/video.mp4"));
    }
}
