//! Live video from the drones to the browser, and clips around alerts.
//!
//! What it does:
//! - [`source`]: per drone, one GStreamer pipeline pulls the RTSP/H.264
//!   stream (`rtspsrc latency=0 ! rtph264depay ! h264parse ! appsink`),
//!   reconnecting with back-off. Its access units go to a fan-out shared
//!   by every consumer: WebRTC viewers, the MJPEG transcoder and the ring
//!   buffer. The source runs while someone watches or the drone records
//!   (`record = true`), and stops otherwise.
//! - [`webrtc`]: per viewer, `appsrc ! h264parse ! rtph264pay ! webrtcbin`
//!   (H.264 passed through, never re-encoded), signalled over a WebSocket;
//!   closing the socket tears the viewer's pipeline down.
//! - [`mjpeg`]: the fallback that works everywhere: one decoder + JPEG
//!   encoder per drone at a capped frame rate, shared by its viewers,
//!   served as `multipart/x-mixed-replace`.
//! - [`ring`] and [`clip`]: the last `pre_alert_s + post_alert_s` seconds
//!   of access units (keyframe-aligned); an alert from a recording drone
//!   waits `post_alert_s`, cuts its window out of the ring and muxes it to
//!   MP4 (`appsrc ! h264parse ! mp4mux ! filesink`, no re-encode) under
//!   `{data_dir}/clips/`, recorded in the store with its SHA-256.
//!
//! What it does not: adapt bitrate (the drone's encoder does), transcode
//! for WebRTC, or relay through TURN (host candidates only: the browser
//! must reach the station directly).
//!
//! Main types: [`VideoHub`], [`DroneVideo`], [`Subscription`],
//! [`config::VideoConfig`].

pub mod clip;
pub mod config;
pub mod mjpeg;
pub mod ring;
pub mod rtp_h264;
pub mod source;
pub mod webrtc;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use gstreamer as gst;
use gstreamer::prelude::*;

use config::{DroneVideoConfig, VideoConfig};
use ring::{Au, Ring};
use source::{Source, SourceStats};

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("GStreamer: {0}")]
    Gst(String),
    #[error("no video is configured for drone `{0}`")]
    NoSuchDrone(String),
    #[error("too many viewers ({0} at once); try again later")]
    TooManyViewers(usize),
    #[error("clip: {0}")]
    Clip(String),
}

pub(crate) fn now_ms() -> i64 {
    tiancha_protocol::unix_ms(std::time::SystemTime::now())
}

/// Every element this module made, weakly: [`live_elements`] counts those
/// still alive, so a viewer whose pipeline leaks shows up.
fn registry() -> &'static Mutex<Vec<glib::WeakRef<gst::Element>>> {
    static R: OnceLock<Mutex<Vec<glib::WeakRef<gst::Element>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Vec::new()))
}

use gstreamer::glib;

pub(crate) fn track(e: &gst::Element) {
    let mut r = registry().lock().unwrap();
    if r.len() > 256 {
        r.retain(|w| w.upgrade().is_some());
    }
    r.push(e.downgrade());
}

/// Make an element (and track it).
pub(crate) fn make(factory: &str) -> Result<gst::Element, VideoError> {
    let e = gst::ElementFactory::make(factory).build().map_err(|_| {
        VideoError::Gst(format!("no `{factory}` element (GStreamer plugin missing)"))
    })?;
    track(&e);
    Ok(e)
}

/// A viewer's source of H.264 access units (tracked): live, time-stamped
/// on arrival, never blocking the drone's source; a viewer that falls
/// 4 MB behind loses its oldest units, not the others' video.
pub(crate) fn live_h264_src() -> gstreamer_app::AppSrc {
    let src = gstreamer_app::AppSrc::builder()
        .caps(
            &gst::Caps::builder("video/x-h264")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
        )
        .is_live(true)
        .do_timestamp(true)
        .format(gst::Format::Time)
        .block(false)
        .max_bytes(4 * 1024 * 1024)
        .leaky_type(gstreamer_app::AppLeakyType::Downstream)
        .build();
    track(src.upcast_ref());
    src
}

/// GStreamer elements made by this module that are still alive.
pub fn live_elements() -> usize {
    let mut r = registry().lock().unwrap();
    r.retain(|w| w.upgrade().is_some());
    r.len()
}

/// What a subscriber gets: each access unit, in order.
pub type AuSink = Box<dyn FnMut(&Arc<Au>) + Send>;
type Consumer = Arc<Mutex<AuSink>>;

/// One drone's video: its source (when running), consumers and ring.
pub struct DroneVideo {
    pub id: String,
    pub cfg: DroneVideoConfig,
    pub stats: Arc<SourceStats>,
    consumers: Mutex<BTreeMap<u64, Consumer>>,
    next_id: AtomicU64,
    source: Mutex<Option<Source>>,
    /// The ring (recording drones only).
    pub ring: Option<Mutex<Ring>>,
    mjpeg: Mutex<Weak<mjpeg::Mjpeg>>,
    me: Weak<DroneVideo>,
}

/// A consumer's place in the fan-out; dropping it leaves (and stops the
/// source when nothing else needs it).
pub struct Subscription {
    drone: Arc<DroneVideo>,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let empty = {
            let mut c = self.drone.consumers.lock().unwrap();
            c.remove(&self.id);
            c.is_empty()
        };
        if empty && self.drone.ring.is_none() {
            let mut s = self.drone.source.lock().unwrap();
            // Re-check under the source lock: someone may have joined.
            if self.drone.consumers.lock().unwrap().is_empty() {
                *s = None;
            }
        }
    }
}

impl DroneVideo {
    fn new(id: String, cfg: DroneVideoConfig, vc: &VideoConfig) -> Arc<Self> {
        let ring = cfg.record.then(|| {
            Mutex::new(Ring::new(
                (vc.ring_s() * 1000.0) as i64,
                // 8 Mbit/s over the window, at most.
                (vc.ring_s() * 1_000_000.0) as usize,
            ))
        });
        Arc::new_cyclic(|me| DroneVideo {
            id,
            cfg,
            stats: Arc::new(SourceStats::default()),
            consumers: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            source: Mutex::new(None),
            ring,
            mjpeg: Mutex::new(Weak::new()),
            me: me.clone(),
        })
    }

    fn deliver(&self, au: Arc<Au>) {
        if let Some(r) = &self.ring {
            r.lock().unwrap().push(au.clone());
        }
        let cs: Vec<Consumer> = self.consumers.lock().unwrap().values().cloned().collect();
        for c in cs {
            let mut g = c.lock().unwrap();
            (g.as_mut())(&au);
        }
    }

    fn ensure_source(&self) {
        let mut s = self.source.lock().unwrap();
        if s.is_none() {
            let me = self.me.clone();
            *s = Some(Source::start(
                self.id.clone(),
                self.cfg.clone(),
                Arc::new(move |au| {
                    if let Some(d) = me.upgrade() {
                        d.deliver(au)
                    }
                }),
                self.stats.clone(),
            ));
        }
    }

    /// Receive access units from the next keyframe on, starting the
    /// source if it is not running.
    pub fn subscribe(&self, mut f: AuSink) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut started = false;
        let b: AuSink = Box::new(move |au: &Arc<Au>| {
            started |= au.keyframe;
            if started {
                f(au)
            }
        });
        let c: Consumer = Arc::new(Mutex::new(b));
        self.consumers.lock().unwrap().insert(id, c);
        self.ensure_source();
        Subscription {
            drone: self.me.upgrade().expect("alive while borrowed"),
            id,
        }
    }

    pub fn consumers(&self) -> usize {
        self.consumers.lock().unwrap().len()
    }

    pub fn source_running(&self) -> bool {
        self.source.lock().unwrap().is_some()
    }
}

/// All drones' video, and the viewer count.
pub struct VideoHub {
    pub cfg: VideoConfig,
    pub drones: BTreeMap<String, Arc<DroneVideo>>,
    viewers: Arc<AtomicUsize>,
}

/// A viewer's slot (counted against `max_viewers`).
pub struct ViewerSlot(Arc<AtomicUsize>);

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl VideoHub {
    /// Build from the config; recording drones start their sources now
    /// (GStreamer is initialised here when any drone is configured).
    pub fn new(cfg: VideoConfig) -> Result<Self, VideoError> {
        if !cfg.drones.is_empty() {
            gst::init().map_err(|e| VideoError::Gst(e.to_string()))?;
            for f in [
                "rtspsrc",
                "rtph264depay",
                "h264parse",
                "avdec_h264",
                "jpegenc",
                "mp4mux",
                "rtph264pay",
                "webrtcbin",
            ] {
                if gst::ElementFactory::find(f).is_none() {
                    return Err(VideoError::Gst(format!(
                        "[video] needs the GStreamer element `{f}` (install gstreamer1.0-plugins-good/bad, -libav, gstreamer1.0-nice)"
                    )));
                }
            }
        }
        let drones = cfg
            .drones
            .iter()
            .map(|(id, d)| (id.clone(), DroneVideo::new(id.clone(), d.clone(), &cfg)))
            .collect::<BTreeMap<_, _>>();
        for d in drones.values() {
            if d.ring.is_some() {
                d.ensure_source();
            }
        }
        Ok(Self {
            cfg,
            drones,
            viewers: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub fn drone(&self, id: &str) -> Result<&Arc<DroneVideo>, VideoError> {
        self.drones
            .get(id)
            .ok_or_else(|| VideoError::NoSuchDrone(id.to_string()))
    }

    /// Take a viewer slot, or refuse when `max_viewers` are watching.
    pub fn viewer_slot(&self) -> Result<ViewerSlot, VideoError> {
        let n = self.viewers.fetch_add(1, Ordering::SeqCst);
        let slot = ViewerSlot(self.viewers.clone());
        if n >= self.cfg.max_viewers {
            return Err(VideoError::TooManyViewers(self.cfg.max_viewers));
        }
        Ok(slot)
    }

    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::SeqCst)
    }

    /// The drone's shared MJPEG transcoder (started if none runs).
    pub fn mjpeg(&self, id: &str) -> Result<Arc<mjpeg::Mjpeg>, VideoError> {
        let d = self.drone(id)?;
        let mut w = d.mjpeg.lock().unwrap();
        if let Some(m) = w.upgrade() {
            return Ok(m);
        }
        let m = Arc::new(mjpeg::start(d, self.cfg.mjpeg_fps, self.cfg.mjpeg_quality)?);
        *w = Arc::downgrade(&m);
        Ok(m)
    }
}
