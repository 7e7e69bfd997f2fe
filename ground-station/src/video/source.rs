//! One drone's RTSP source: `rtspsrc latency=0 ! (repair: [`super::rtp_h264`])
//! rtph264depay ! h264parse config-interval=-1 ! appsink` on a supervisor thread that restarts it
//! with back-off after an error, an end of stream or a stall, until the
//! [`Source`] is dropped. Each access unit goes to one callback (the
//! drone's fan-out); no decoding happens here.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::config::DroneVideoConfig;
use super::ring::Au;
use super::{make, now_ms, VideoError};

/// Counters of one drone's source (read by `/metrics` and tests).
#[derive(Debug, Default)]
pub struct SourceStats {
    pub starts: AtomicU64,
    pub errors: AtomicU64,
    pub access_units: AtomicU64,
    pub bytes: AtomicU64,
    pub running: AtomicBool,
    pub last_au_unix_ms: AtomicI64,
}

pub type Deliver = Arc<dyn Fn(Arc<Au>) + Send + Sync>;

/// A running source; dropping it stops the pipeline (on its own thread).
pub struct Source {
    stop: Arc<AtomicBool>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// No access unit for this long while playing: reconnect.
const STALL: Duration = Duration::from_secs(5);

impl Source {
    pub fn start(
        drone: String,
        cfg: DroneVideoConfig,
        deliver: Deliver,
        stats: Arc<SourceStats>,
    ) -> Source {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::Builder::new()
            .name(format!("video-src-{drone}"))
            .spawn(move || supervise(&drone, &cfg, deliver, &stats, &stop2))
            .expect("spawn a thread");
        Source { stop }
    }
}

fn supervise(
    drone: &str,
    cfg: &DroneVideoConfig,
    deliver: Deliver,
    stats: &Arc<SourceStats>,
    stop: &AtomicBool,
) {
    let mut backoff = Duration::from_millis(250);
    while !stop.load(Ordering::SeqCst) {
        stats.starts.fetch_add(1, Ordering::Relaxed);
        let got = Arc::new(AtomicBool::new(false));
        match build(cfg, deliver.clone(), stats, got.clone()) {
            Ok(p) => {
                let why = run(&p, stats, stop);
                stats.running.store(false, Ordering::Relaxed);
                let _ = p.set_state(gst::State::Null);
                match why {
                    None => break,
                    Some(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(drone, url = %cfg.url, error = %e, "video source stopped; reconnecting");
                    }
                }
                if got.load(Ordering::Relaxed) {
                    backoff = Duration::from_millis(250);
                }
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(drone, error = %e, "video source cannot start");
            }
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    tracing::debug!(drone, "video source stopped");
}

/// Play until stop (None) or a reason to restart (Some).
fn run(p: &gst::Pipeline, stats: &SourceStats, stop: &AtomicBool) -> Option<String> {
    if let Err(e) = p.set_state(gst::State::Playing) {
        return Some(format!("cannot play: {e}"));
    }
    let bus = p.bus().expect("a pipeline has a bus");
    let started = now_ms();
    loop {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        if let Some(m) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        ) {
            return Some(match m.view() {
                gst::MessageView::Error(e) => format!(
                    "{} ({})",
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                ),
                _ => "end of stream".into(),
            });
        }
        let last = stats.last_au_unix_ms.load(Ordering::Relaxed).max(started);
        if now_ms() - last > STALL.as_millis() as i64 {
            return Some(format!("no video for {} s", STALL.as_secs()));
        }
    }
}

fn build(
    cfg: &DroneVideoConfig,
    deliver: Deliver,
    stats: &Arc<SourceStats>,
    got: Arc<AtomicBool>,
) -> Result<gst::Pipeline, VideoError> {
    let p = gst::Pipeline::new();
    let src = make("rtspsrc")?;
    src.set_property("location", cfg.url.as_str());
    src.set_property("latency", cfg.latency_ms);
    src.set_property("drop-on-latency", true);
    if cfg.tcp {
        src.set_property_from_str("protocols", "tcp");
    }
    let depay = make("rtph264depay")?;
    let parse = make("h264parse")?;
    parse.set_property("config-interval", -1i32);
    let sink = gst_app::AppSink::builder()
        .caps(
            &gst::Caps::builder("video/x-h264")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
        )
        .sync(false)
        .max_buffers(30)
        .drop(true)
        .build();
    super::track(sink.upcast_ref());
    p.add_many([&src, &depay, &parse, sink.upcast_ref()])
        .map_err(|e| VideoError::Gst(format!("source pipeline: {e}")))?;
    gst::Element::link_many([&depay, &parse, sink.upcast_ref()])
        .map_err(|e| VideoError::Gst(format!("source pipeline: {e}")))?;
    // Parameter sets repeated between the slices of a key frame are
    // dropped before the depayloader splits the frame on them (`rtp_h264`).
    let repair = std::sync::Mutex::new(super::rtp_h264::Repair::default());
    depay
        .static_pad("sink")
        .expect("depay has a sink")
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(gst::PadProbeData::Buffer(buf)) = info.data.as_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            let verdict = match buf.map_readable() {
                Ok(m) => repair.lock().expect("repair lock").packet(&m),
                Err(_) => return gst::PadProbeReturn::Ok,
            };
            match verdict {
                super::rtp_h264::Verdict::Keep => gst::PadProbeReturn::Ok,
                super::rtp_h264::Verdict::Drop => gst::PadProbeReturn::Drop,
                super::rtp_h264::Verdict::Renumber(seq) => {
                    if let Ok(mut m) = buf.make_mut().map_writable() {
                        m[2..4].copy_from_slice(&seq.to_be_bytes());
                    }
                    gst::PadProbeReturn::Ok
                }
            }
        });
    let depay_w = depay.downgrade();
    src.connect_pad_added(move |_, pad| {
        let Some(depay) = depay_w.upgrade() else {
            return;
        };
        let is_video = pad
            .current_caps()
            .and_then(|c| {
                c.structure(0)
                    .and_then(|s| s.get::<String>("media").ok())
                    .map(|m| m == "video")
            })
            .unwrap_or(true);
        let sinkpad = depay.static_pad("sink").expect("depay has a sink");
        if is_video && !sinkpad.is_linked() {
            if let Err(e) = pad.link(&sinkpad) {
                tracing::warn!(error = ?e, "cannot link the RTSP pad");
            }
        }
    });
    let stats_au = stats.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buf) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let map = buf.map_readable().map_err(|_| gst::FlowError::Error)?;
                let now = now_ms();
                let au = Arc::new(Au {
                    data: bytes::Bytes::copy_from_slice(map.as_slice()),
                    keyframe: !buf.flags().contains(gst::BufferFlags::DELTA_UNIT),
                    recv_unix_ms: now,
                });
                stats_au.access_units.fetch_add(1, Ordering::Relaxed);
                stats_au
                    .bytes
                    .fetch_add(au.data.len() as u64, Ordering::Relaxed);
                stats_au.last_au_unix_ms.store(now, Ordering::Relaxed);
                got.store(true, Ordering::Relaxed);
                deliver(au);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    stats.running.store(true, Ordering::Relaxed);
    Ok(p)
}
