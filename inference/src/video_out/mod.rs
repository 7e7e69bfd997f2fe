//! Video out: the camera stream, scaled down, with the eye's tracks and
//! incidents drawn on it, encoded to H.264 and served over RTSP for the
//! ground station (and VLC, QGroundControl).
//!
//! ```text
//! camera … decodebin ! tee ─ videoconvert ! appsink        (inference, as without video)
//!                          └ queue (1 buffer, leaky) ! videorate (max-rate, drop-only) !
//!                            videoscale ! videoconvert ! BGR W×H ! appsink (drop)
//!                               │  VideoTap: copy, draw the latest OverlayState
//!                               ▼
//! appsrc (live, leaky) ! videoconvert ! I420 ! x264enc (zerolatency, ultrafast,
//!   no B-frames, bitrate) ! constrained-baseline byte-stream !
//!   h264parse config-interval=-1 ! rtph264pay ! udpsink 127.0.0.1:RELAY  ──►  RtspRelay
//!                                     rtsp://<rtsp_address>:<rtsp_port><rtsp_path>
//! ```
//!
//! - The source ([`crate::source`]) adds the branch when its
//!   [`crate::SourceConfig::video`] holds a [`VideoTap`]; the inference
//!   branch is unchanged (same elements, same one-frame slot), and the
//!   video branch can never hold it up: its queue keeps one buffer and
//!   drops older ones, its appsink drops too.
//! - Drawing happens on the video branch's own thread, at most `fps`
//!   times a second, on the small output picture ([`overlay`]). When the
//!   eye tracks every camera frame, each outgoing frame gets the overlay
//!   of that same frame (matched by stream position, PTS: the tee hands
//!   both branches the same buffer and `videorate drop-only` keeps its
//!   timestamps), so boxes sit on the people, not where they were when
//!   the detector last finished.
//! - A key frame is forced at least every second (SPS/PPS with it), so a
//!   viewer joining late waits at most a second.
//! - Nobody watching: nothing is drawn or encoded.
//! - Bandwidth adaptation ([`rate`]): the viewers' RTCP receiver reports
//!   (loss fraction, round trip) set x264enc's `bitrate` and videorate's
//!   `max-rate` live, between the configured minimum and maximum.
//! - The RTP and RTCP sockets get the configured DSCP (default CS1, "lower
//!   effort"), so that on a shared IP radio link routers that honour DSCP
//!   send MQTT alerts and telemetry (best effort, their own TCP
//!   connection) before video.

pub mod overlay;
pub mod rate;
pub mod rtsp;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_video as gst_video;
use opencv::core::{Mat, CV_8UC3};
use opencv::prelude::*;
use serde::{Deserialize, Serialize};

pub use overlay::{OverlayBoard, OverlayShape, OverlayState};
pub use rate::{LinkReport, RateController, RateLimits, RateTarget};
pub use rtsp::RtspRelay;

/// Overlays older than this are not drawn (the eye stalled or stopped).
pub const OVERLAY_MAX_AGE: Duration = Duration::from_secs(2);
/// How long a video frame waits for the eye's overlay of that same frame
/// (when the eye tracks every camera frame) before it is drawn with the
/// newest overlay before it. The eye needs well under a millisecond for a
/// frame; a snapshot JPEG or a late detector result's replay can take a
/// few. Only the video branch waits (its queue drops frames meanwhile).
pub const OVERLAY_WAIT: Duration = Duration::from_millis(50);
/// A key frame at least this often.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);
/// RTP payload type of the stream.
pub const PAYLOAD_TYPE: u8 = 96;

/// `[video]` in the companion's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoConfig {
    pub enabled: bool,
    /// Address the RTSP server binds (`0.0.0.0` for every interface).
    pub rtsp_address: String,
    /// RTSP port (0: any free port, for tests).
    pub rtsp_port: u16,
    /// Mount path, starting with `/`.
    pub rtsp_path: String,
    /// Output picture size (the camera frame is scaled to it).
    pub width: u32,
    pub height: u32,
    /// Highest output frame rate.
    pub fps: u32,
    /// Encoder bitrate on a clean link (the most it uses).
    pub bitrate_kbps: u32,
    /// Bandwidth adaptation never goes below these.
    pub min_bitrate_kbps: u32,
    pub min_fps: u32,
    /// DSCP of the RTP/RTCP packets (0..=63; 8 = CS1, lower than the
    /// best-effort MQTT link; 0 leaves the sockets alone).
    pub dscp: u8,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            rtsp_address: "127.0.0.1".into(),
            rtsp_port: 8554,
            rtsp_path: "/live".into(),
            width: 640,
            height: 360,
            fps: 10,
            bitrate_kbps: 1000,
            min_bitrate_kbps: 250,
            min_fps: 2,
            dscp: 8,
        }
    }
}

/// What went wrong with video out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VideoError {
    #[error("video.{field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("video out: {0}")]
    Pipeline(String),
}

fn bad(field: &'static str, reason: impl Into<String>) -> VideoError {
    VideoError::Config {
        field,
        reason: reason.into(),
    }
}

impl VideoConfig {
    /// Check every field (called at start-up, whether enabled or not).
    pub fn validate(&self) -> Result<(), VideoError> {
        if self.rtsp_address.trim().is_empty()
            || self.rtsp_address.parse::<std::net::IpAddr>().is_err()
        {
            return Err(bad(
                "rtsp_address",
                format!("{:?} is not an IP address", self.rtsp_address),
            ));
        }
        if !self.rtsp_path.starts_with('/')
            || self.rtsp_path.len() < 2
            || self
                .rtsp_path
                .chars()
                .any(|c| c.is_whitespace() || c == '?' || c == '#')
        {
            return Err(bad(
                "rtsp_path",
                format!(
                    "{:?} must start with / and name a path (no spaces, ? or #)",
                    self.rtsp_path
                ),
            ));
        }
        for (field, v, max) in [("width", self.width, 3840), ("height", self.height, 2160)] {
            if !(16..=max).contains(&v) || v % 2 != 0 {
                return Err(bad(
                    field,
                    format!("{v} is not an even number in 16..={max}"),
                ));
            }
        }
        if !(1..=60).contains(&self.fps) {
            return Err(bad("fps", format!("{} is not in 1..=60", self.fps)));
        }
        if !(1..=self.fps).contains(&self.min_fps) {
            return Err(bad(
                "min_fps",
                format!("{} is not in 1..=fps ({})", self.min_fps, self.fps),
            ));
        }
        if !(100..=20_000).contains(&self.bitrate_kbps) {
            return Err(bad(
                "bitrate_kbps",
                format!("{} is not in 100..=20000", self.bitrate_kbps),
            ));
        }
        if !(50..=self.bitrate_kbps).contains(&self.min_bitrate_kbps) {
            return Err(bad(
                "min_bitrate_kbps",
                format!(
                    "{} is not in 50..=bitrate_kbps ({})",
                    self.min_bitrate_kbps, self.bitrate_kbps
                ),
            ));
        }
        if self.dscp > 63 {
            return Err(bad("dscp", format!("{} is not in 0..=63", self.dscp)));
        }
        Ok(())
    }

    pub fn limits(&self) -> RateLimits {
        RateLimits {
            max_bitrate_kbps: self.bitrate_kbps,
            min_bitrate_kbps: self.min_bitrate_kbps,
            max_fps: self.fps,
            min_fps: self.min_fps,
        }
    }
}

/// Live figures of the video out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoStats {
    /// Frames that reached the video branch (after videorate).
    pub frames_in: u64,
    /// Frames drawn and handed to the encoder.
    pub frames_sent: u64,
    /// Viewers' streams being served now.
    pub viewers: u32,
    pub bitrate_kbps: u32,
    pub fps: u32,
    /// Receiver reports taken.
    pub reports: u64,
    pub last_report: Option<LinkReport>,
    /// RTP/RTCP sockets that carry the configured DSCP.
    pub dscp_sockets: u32,
}

fn make(name: &str) -> Result<gst::Element, VideoError> {
    gst::ElementFactory::make(name).build().map_err(|_| {
        VideoError::Pipeline(format!(
            "GStreamer element {name:?} is missing (gstreamer1.0-plugins-base/good/ugly)"
        ))
    })
}

/// The H.264 encoder every tiancha camera stream uses (the companion's
/// video out and the simulator's camera), raw video in:
/// `videoconvert ! I420 ! x264enc (zerolatency, ultrafast, no B-frames)
/// ! constrained-baseline byte-stream ! h264parse config-interval=-1`.
///
/// SPS/PPS are inserted by `h264parse`, once at the start of each key
/// frame's access unit. Not by `rtph264pay config-interval=-1`: x264's
/// zerolatency tune cuts a frame into several slices, and the payloader
/// repeats SPS/PPS before every IDR *slice*, which makes a receiver's
/// parser split the key frame in two (a browser then shows torn frames).
pub struct H264Chain {
    /// To link in order, after the raw-video source.
    pub elements: Vec<gst::Element>,
    /// The x264enc among them (its `bitrate` may be changed live).
    pub encoder: gst::Element,
}

pub fn h264_encoder(bitrate_kbps: u32, key_int_max: u32) -> Result<H264Chain, VideoError> {
    let convert = make("videoconvert")?;
    let i420 = make("capsfilter")?;
    i420.set_property(
        "caps",
        gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::I420)
            .build(),
    );
    let enc = make("x264enc")?;
    enc.set_property_from_str("tune", "zerolatency");
    enc.set_property_from_str("speed-preset", "ultrafast");
    enc.set_property("bitrate", bitrate_kbps);
    enc.set_property("bframes", 0u32);
    enc.set_property("key-int-max", key_int_max);
    let h264 = make("capsfilter")?;
    h264.set_property(
        "caps",
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "byte-stream")
            .field("profile", "constrained-baseline")
            .build(),
    );
    let parse = make("h264parse")?;
    parse.set_property("config-interval", -1i32);
    Ok(H264Chain {
        elements: vec![convert, i420, enc.clone(), h264, parse],
        encoder: enc,
    })
}

/// RTP payloader for [`h264_encoder`]'s output (SPS/PPS already in band,
/// so `config-interval` stays 0; MTU 1400 to leave room for tunnels).
pub fn rtp_h264_pay(pt: u8) -> Result<gst::Element, VideoError> {
    let pay = make("rtph264pay")?;
    pay.set_property("pt", pt as u32);
    pay.set_property("mtu", 1400u32);
    Ok(pay)
}

fn perr(what: &str, e: impl std::fmt::Display) -> VideoError {
    VideoError::Pipeline(format!("{what}: {e}"))
}

struct TapInner {
    width: u32,
    height: u32,
    fps: AtomicU32,
    bitrate_kbps: AtomicU32,
    board: OverlayBoard,
    appsrc: gst_app::AppSrc,
    encoder: gst::Element,
    pipeline: gst::Pipeline,
    videorates: Mutex<Vec<glib::WeakRef<gst::Element>>>,
    last_key: Mutex<Option<Instant>>,
    viewers: AtomicU32,
    frames_in: AtomicU64,
    frames_sent: AtomicU64,
}

/// The handle the camera source feeds: it owns nothing but references to
/// the encoder and the overlay board. Cloning shares it.
#[derive(Clone)]
pub struct VideoTap {
    inner: Arc<TapInner>,
}

impl std::fmt::Debug for VideoTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoTap")
            .field("width", &self.inner.width)
            .field("height", &self.inner.height)
            .finish()
    }
}

impl VideoTap {
    /// Output size.
    pub fn size(&self) -> (u32, u32) {
        (self.inner.width, self.inner.height)
    }

    /// Current frame-rate ceiling.
    pub fn fps(&self) -> u32 {
        self.inner.fps.load(Ordering::Relaxed)
    }

    /// The board the eye publishes its overlay on.
    pub fn overlay(&self) -> &OverlayBoard {
        &self.inner.board
    }

    /// The source registers each (re)built branch's videorate so that
    /// adaptation can change its `max-rate`.
    pub(crate) fn attach_videorate(&self, e: &gst::Element) {
        e.set_property("max-rate", self.fps() as i32);
        let mut v = self.inner.videorates.lock().expect("videorate lock");
        v.retain(|w| w.upgrade().is_some());
        v.push(e.downgrade());
    }

    fn set_fps(&self, fps: u32) {
        self.inner.fps.store(fps, Ordering::Relaxed);
        let v = self.inner.videorates.lock().expect("videorate lock");
        for e in v.iter().filter_map(|w| w.upgrade()) {
            e.set_property("max-rate", fps as i32);
        }
    }

    fn set_bitrate(&self, kbps: u32) {
        self.inner.bitrate_kbps.store(kbps, Ordering::Relaxed);
        self.inner.encoder.set_property("bitrate", kbps);
    }

    /// One frame from the video branch (GStreamer streaming thread):
    /// copy, draw the overlay, hand it to the encoder.
    pub(crate) fn on_sample(&self, sample: &gst::Sample) {
        let t = &self.inner;
        t.frames_in.fetch_add(1, Ordering::Relaxed);
        if t.viewers.load(Ordering::Relaxed) == 0 {
            *t.last_key.lock().expect("key lock") = None;
            return;
        }
        if let Err(e) = self.draw_and_push(sample) {
            tracing::warn!("video out: frame skipped: {e}");
        }
    }

    fn draw_and_push(&self, sample: &gst::Sample) -> Result<(), String> {
        let t = &self.inner;
        let (w, h, bgr) = crate::frame::sample_bgr(sample)?;
        if (w, h) != (t.width, t.height) {
            return Err(format!(
                "frame is {w}x{h}, expected {}x{}",
                t.width, t.height
            ));
        }
        let mut img = Mat::new_rows_cols_with_default(h as i32, w as i32, CV_8UC3, 0.into())
            .map_err(|e| e.to_string())?;
        img.data_bytes_mut()
            .map_err(|e| e.to_string())?
            .copy_from_slice(&bgr);
        // The overlay of this very frame (same stream position as the
        // inference branch's copy of it) when the eye tracks every frame.
        let pts_ms = sample
            .buffer()
            .and_then(|b| b.pts())
            .map(|p| p.mseconds() as i64);
        if let Some(state) = t.board.for_frame(pts_ms, OVERLAY_WAIT, OVERLAY_MAX_AGE) {
            let shapes = overlay::scale_shapes(&state, t.width, t.height);
            overlay::draw(&mut img, &shapes, &state.banner).map_err(|e| e.to_string())?;
        }
        let bytes = img.data_bytes().map_err(|e| e.to_string())?.to_vec();
        let mut buf = gst::Buffer::from_mut_slice(bytes);
        buf.get_mut()
            .expect("a new buffer is writable")
            .set_pts(t.pipeline.current_running_time());
        // A key frame (with SPS/PPS) at least every KEYFRAME_INTERVAL.
        let frame_interval = Duration::from_secs_f64(1.0 / self.fps().max(1) as f64);
        let force = {
            let mut last = t.last_key.lock().expect("key lock");
            let due = last.is_none_or(|k| k.elapsed() + frame_interval > KEYFRAME_INTERVAL);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if force {
            let ev = gst_video::UpstreamForceKeyUnitEvent::builder()
                .all_headers(true)
                .build();
            if let Some(pad) = t.encoder.static_pad("src") {
                pad.send_event(ev);
            }
        }
        t.appsrc
            .push_buffer(buf)
            .map_err(|e| format!("the encoder refused a frame: {e}"))?;
        t.frames_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The running video out: encoder, RTSP server and the adaptation loop.
/// Dropping it stops them.
pub struct VideoOut {
    tap: VideoTap,
    relay: Arc<RtspRelay>,
    stop: Arc<AtomicBool>,
    control: Option<JoinHandle<()>>,
    shared: Arc<Mutex<ControlShared>>,
}

#[derive(Default)]
struct ControlShared {
    reports: u64,
    last_report: Option<LinkReport>,
    dscp_sockets: u32,
}

impl VideoOut {
    /// Start the encoder and the RTSP server (the camera's source is
    /// started separately, with [`VideoOut::tap`] in its config).
    pub fn start(cfg: &VideoConfig) -> Result<Self, VideoError> {
        cfg.validate()?;
        gst::init().map_err(|e| perr("GStreamer did not initialise", e))?;
        let pipeline = gst::Pipeline::new();
        let caps = gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::Bgr)
            .width(cfg.width as i32)
            .height(cfg.height as i32)
            .framerate(gst::Fraction::new(cfg.fps as i32, 1))
            .build();
        let appsrc = gst_app::AppSrc::builder()
            .caps(&caps)
            .is_live(true)
            .format(gst::Format::Time)
            .stream_type(gst_app::AppStreamType::Stream)
            .max_buffers(2)
            .leaky_type(gst_app::AppLeakyType::Downstream)
            .build();
        let H264Chain {
            elements,
            encoder: enc,
        } = h264_encoder(cfg.bitrate_kbps, cfg.fps * 2)?;
        let pay = rtp_h264_pay(PAYLOAD_TYPE)?;
        let relay_port = rtsp::free_udp_port().map_err(VideoError::Pipeline)?;
        let sink = make("udpsink")?;
        sink.set_property("host", "127.0.0.1");
        sink.set_property("port", relay_port as i32);
        sink.set_property("sync", false);
        sink.set_property("async", false);
        let chain: Vec<&gst::Element> = std::iter::once(appsrc.upcast_ref())
            .chain(&elements)
            .chain([&pay, &sink])
            .collect();
        pipeline
            .add_many(chain.iter().copied())
            .map_err(|e| perr("encoder pipeline", e))?;
        gst::Element::link_many(chain).map_err(|e| perr("linking the encoder", e))?;
        let relay = RtspRelay::start(
            &cfg.rtsp_address,
            cfg.rtsp_port,
            &cfg.rtsp_path,
            relay_port,
            PAYLOAD_TYPE,
        )
        .map_err(VideoError::Pipeline)?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| perr("cannot start the encoder", e))?;
        let tap = VideoTap {
            inner: Arc::new(TapInner {
                width: cfg.width,
                height: cfg.height,
                fps: AtomicU32::new(cfg.fps),
                bitrate_kbps: AtomicU32::new(cfg.bitrate_kbps),
                board: OverlayBoard::new(),
                appsrc,
                encoder: enc,
                pipeline,
                videorates: Mutex::new(Vec::new()),
                last_key: Mutex::new(None),
                viewers: AtomicU32::new(0),
                frames_in: AtomicU64::new(0),
                frames_sent: AtomicU64::new(0),
            }),
        };
        let relay = Arc::new(relay);
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(ControlShared::default()));
        let control = {
            let (tap, relay, stop, shared) =
                (tap.clone(), relay.clone(), stop.clone(), shared.clone());
            let limits = cfg.limits();
            let dscp = cfg.dscp;
            std::thread::Builder::new()
                .name("tiancha-video-ctl".into())
                .spawn(move || control_loop(&tap, &relay, &stop, &shared, limits, dscp))
                .map_err(|e| perr("cannot start a thread", e))?
        };
        tracing::info!(
            url = relay.url(),
            width = cfg.width,
            height = cfg.height,
            fps = cfg.fps,
            bitrate_kbps = cfg.bitrate_kbps,
            "video out: serving RTSP"
        );
        Ok(Self {
            tap,
            relay,
            stop,
            control: Some(control),
            shared,
        })
    }

    /// What the camera source needs (`SourceConfig::video`).
    pub fn tap(&self) -> VideoTap {
        self.tap.clone()
    }

    /// Where the eye publishes its overlay.
    pub fn overlay(&self) -> OverlayBoard {
        self.tap.inner.board.clone()
    }

    /// The RTSP URL being served (with the port actually bound).
    pub fn url(&self) -> &str {
        self.relay.url()
    }

    pub fn stats(&self) -> VideoStats {
        let t = &self.tap.inner;
        let s = self.shared.lock().expect("video stats lock");
        VideoStats {
            frames_in: t.frames_in.load(Ordering::Relaxed),
            frames_sent: t.frames_sent.load(Ordering::Relaxed),
            viewers: t.viewers.load(Ordering::Relaxed),
            bitrate_kbps: t.bitrate_kbps.load(Ordering::Relaxed),
            fps: t.fps.load(Ordering::Relaxed),
            reports: s.reports,
            last_report: s.last_report,
            dscp_sockets: s.dscp_sockets,
        }
    }
}

impl Drop for VideoOut {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.control.take() {
            let _ = t.join();
        }
        let _ = self.tap.inner.appsrc.end_of_stream();
        let _ = self.tap.inner.pipeline.set_state(gst::State::Null);
    }
}

/// The latest receiver report about our stream in an RTP session's
/// statistics (the worst when several viewers report), with a key
/// that changes with every new report.
fn receiver_report(stream: &gstreamer_rtsp_server::RTSPStream) -> Option<(u64, LinkReport)> {
    let session = stream.rtpsession()?;
    session.find_property("stats")?;
    let stats = session.property::<gst::Structure>("stats");
    let sources = stats.get::<glib::ValueArray>("source-stats").ok()?;
    let mut best: Option<(u64, LinkReport)> = None;
    for v in sources.iter() {
        let Ok(s) = v.get::<gst::Structure>() else {
            continue;
        };
        // A viewer's report block about our stream is kept on the
        // viewer's (remote) source, `rb-ssrc` naming ours.
        if s.get::<bool>("internal").unwrap_or(true) || !s.get::<bool>("have-rb").unwrap_or(false) {
            continue;
        }
        let u = |k: &str| s.get::<u32>(k).unwrap_or(0);
        let key = ((u("rb-exthighestseq") as u64) << 32) | (u("rb-lsr") ^ u("rb-dlsr")) as u64;
        let r = LinkReport {
            loss_fraction: u("rb-fractionlost") as f64 / 256.0,
            // Compact NTP (1/65536 s); none when the receiver had no sender
            // report to refer to.
            rtt_ms: (u("rb-lsr") != 0).then(|| u("rb-round-trip") as f64 * 1000.0 / 65536.0),
            // RTP clock units (90 kHz for video).
            jitter_ms: u("rb-jitter") as f64 / 90.0,
        };
        if best.is_none_or(|(_, b)| r.loss_fraction > b.loss_fraction) {
            best = Some((key, r));
        }
    }
    best
}

/// Set DSCP on a stream's RTP/RTCP sockets; returns how many carry it.
fn apply_dscp(stream: &gstreamer_rtsp_server::RTSPStream, dscp: u8) -> u32 {
    use gstreamer_rtsp_server::gio;
    use gstreamer_rtsp_server::gio::prelude::*;
    // IPPROTO_IP / IP_TOS and IPPROTO_IPV6 / IPV6_TCLASS (Linux values).
    const IPPROTO_IP: i32 = 0;
    const IP_TOS: i32 = 1;
    const IPPROTO_IPV6: i32 = 41;
    const IPV6_TCLASS: i32 = 67;
    let tos = (dscp as i32) << 2;
    let mut n = 0;
    for (family, level, opt) in [
        (gio::SocketFamily::Ipv4, IPPROTO_IP, IP_TOS),
        (gio::SocketFamily::Ipv6, IPPROTO_IPV6, IPV6_TCLASS),
    ] {
        for s in [stream.rtp_socket(family), stream.rtcp_socket(family)]
            .into_iter()
            .flatten()
        {
            if s.option(level, opt).ok() != Some(tos) {
                if let Err(e) = s.set_option(level, opt, tos) {
                    tracing::debug!("video out: cannot set DSCP on a socket: {e}");
                    continue;
                }
            }
            n += 1;
        }
    }
    n
}

fn control_loop(
    tap: &VideoTap,
    relay: &RtspRelay,
    stop: &AtomicBool,
    shared: &Mutex<ControlShared>,
    limits: RateLimits,
    dscp: u8,
) {
    let mut ctl = RateController::new(limits);
    let mut seen: std::collections::HashMap<usize, u64> = Default::default();
    let bus = tap.inner.pipeline.bus();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        if let Some(bus) = &bus {
            while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
                if let gst::MessageView::Error(e) = msg.view() {
                    tracing::warn!("video out: encoder error: {} ({:?})", e.error(), e.debug());
                }
            }
        }
        let streams = relay.streams();
        let before = tap
            .inner
            .viewers
            .swap(streams.len() as u32, Ordering::Relaxed);
        if before == 0 && !streams.is_empty() {
            tracing::info!("video out: a viewer connected");
        } else if before > 0 && streams.is_empty() {
            tracing::info!("video out: no viewers; encoder idle");
        }
        let mut dscp_sockets = 0;
        let mut worst: Option<LinkReport> = None;
        for s in &streams {
            if dscp > 0 {
                dscp_sockets += apply_dscp(s, dscp);
            }
            let id = s.as_ptr() as usize;
            if let Some((key, r)) = receiver_report(s) {
                if seen.insert(id, key) != Some(key) {
                    worst = Some(match worst {
                        Some(w) if w.loss_fraction >= r.loss_fraction => w,
                        _ => r,
                    });
                }
            }
        }
        let mut g = shared.lock().expect("video stats lock");
        g.dscp_sockets = dscp_sockets;
        if let Some(r) = worst {
            g.reports += 1;
            g.last_report = Some(r);
            drop(g);
            let before = ctl.target();
            let t = ctl.on_report(&r);
            if t != before {
                tracing::info!(
                    loss = r.loss_fraction,
                    rtt_ms = ?r.rtt_ms,
                    bitrate_kbps = t.bitrate_kbps,
                    fps = t.fps,
                    "video out: adapting to the link"
                );
                tap.set_bitrate(t.bitrate_kbps);
                tap.set_fps(t.fps);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_fields_are_named() {
        VideoConfig::default().validate().unwrap();
        type Edit = Box<dyn Fn(&mut VideoConfig)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "rtsp_address",
                Box::new(|c| c.rtsp_address = "drone".into()),
            ),
            ("rtsp_path", Box::new(|c| c.rtsp_path = "live".into())),
            ("rtsp_path", Box::new(|c| c.rtsp_path = "/".into())),
            ("width", Box::new(|c| c.width = 641)),
            ("height", Box::new(|c| c.height = 0)),
            ("fps", Box::new(|c| c.fps = 0)),
            ("min_fps", Box::new(|c| c.min_fps = 11)),
            ("bitrate_kbps", Box::new(|c| c.bitrate_kbps = 50)),
            ("min_bitrate_kbps", Box::new(|c| c.min_bitrate_kbps = 2000)),
            ("dscp", Box::new(|c| c.dscp = 64)),
        ];
        for (field, f) in cases {
            let mut c = VideoConfig::default();
            f(&mut c);
            let e = c.validate().unwrap_err();
            assert!(
                matches!(&e, VideoError::Config { field: got, .. } if *got == field),
                "{field}: {e}"
            );
            assert!(e.to_string().starts_with(&format!("video.{field}:")), "{e}");
        }
    }

    #[test]
    fn the_section_parses_with_defaults_and_refuses_unknown_keys() {
        let c: VideoConfig = toml::from_str("enabled = true\nrtsp_port = 9000").unwrap();
        assert!(c.enabled);
        assert_eq!(c.rtsp_port, 9000);
        assert_eq!(c.rtsp_path, "/live");
        assert!(toml::from_str::<VideoConfig>("bitrate = 5").is_err());
    }
}
