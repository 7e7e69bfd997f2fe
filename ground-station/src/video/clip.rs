//! Clips around alerts: access units cut from a drone's ring buffer and
//! muxed to MP4 without re-encoding (`appsrc ! h264parse ! mp4mux !
//! filesink`), timestamps from their arrival times. A finished clip goes
//! to a [`ClipSink`]: the ground station keeps it in the store's `clips`
//! table (`store::clips`) and adds it to the alert's case as evidence.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sha2::{Digest, Sha256};

use super::ring::Au;
use super::{make, now_ms, VideoError, VideoHub};
use crate::store::clips::ClipRow;

/// A written clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
    /// Arrival times of its first and last access unit (Unix ms).
    pub start_unix_ms: i64,
    pub end_unix_ms: i64,
    pub frames: usize,
}

/// Write `aus` (starting with a keyframe) to `path` as MP4.
pub fn write_mp4(aus: &[Arc<Au>], path: &Path) -> Result<Written, VideoError> {
    let first = aus
        .first()
        .ok_or_else(|| VideoError::Clip("no video in the window".into()))?;
    if !first.keyframe {
        return Err(VideoError::Clip("a clip must start at a keyframe".into()));
    }
    let gerr = |what: &str, e: &dyn std::fmt::Display| VideoError::Clip(format!("{what}: {e}"));
    let p = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(
            &gst::Caps::builder("video/x-h264")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
        )
        .format(gst::Format::Time)
        .block(true)
        .build();
    super::track(src.upcast_ref());
    let parse = make("h264parse")?;
    let mux = make("mp4mux")?;
    let sink = make("filesink")?;
    let tmp = path.with_extension("part");
    sink.set_property("location", tmp.to_string_lossy().as_ref());
    p.add_many([src.upcast_ref(), &parse, &mux, &sink])
        .map_err(|e| gerr("clip pipeline", &e))?;
    gst::Element::link_many([src.upcast_ref(), &parse, &mux, &sink])
        .map_err(|e| gerr("clip pipeline", &e))?;
    p.set_state(gst::State::Playing)
        .map_err(|e| gerr("clip pipeline cannot play", &e))?;
    let t0 = first.recv_unix_ms;
    let mut last_pts = None::<u64>;
    let result = (|| {
        for (i, au) in aus.iter().enumerate() {
            // Strictly increasing: units that arrived in the same ms are
            // a ms apart.
            let mut pts = ((au.recv_unix_ms - t0).max(0) as u64) * 1_000_000;
            if let Some(l) = last_pts {
                pts = pts.max(l + 1_000_000);
            }
            last_pts = Some(pts);
            let next = aus
                .get(i + 1)
                .map(|n| ((n.recv_unix_ms - t0).max(0) as u64) * 1_000_000);
            let dur = next
                .filter(|n| *n > pts)
                .map(|n| n - pts)
                .unwrap_or(100_000_000);
            let mut b = gst::Buffer::from_slice(au.data.clone());
            {
                let b = b.get_mut().expect("fresh buffer");
                b.set_pts(gst::ClockTime::from_nseconds(pts));
                b.set_dts(gst::ClockTime::from_nseconds(pts));
                b.set_duration(gst::ClockTime::from_nseconds(dur));
                if !au.keyframe {
                    b.set_flags(gst::BufferFlags::DELTA_UNIT);
                }
            }
            src.push_buffer(b)
                .map_err(|e| VideoError::Clip(format!("muxing: {e:?}")))?;
        }
        src.end_of_stream()
            .map_err(|e| VideoError::Clip(format!("muxing: {e:?}")))?;
        let bus = p.bus().expect("a pipeline has a bus");
        match bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            Some(m) => match m.view() {
                gst::MessageView::Eos(_) => Ok(()),
                gst::MessageView::Error(e) => Err(VideoError::Clip(format!(
                    "muxing: {} ({:?})",
                    e.error(),
                    e.debug()
                ))),
                _ => unreachable!("filtered"),
            },
            None => Err(VideoError::Clip("muxing did not finish in 60 s".into())),
        }
    })();
    let _ = p.set_state(gst::State::Null);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let data = std::fs::read(&tmp).map_err(|e| gerr(&tmp.display().to_string(), &e))?;
    std::fs::rename(&tmp, path).map_err(|e| gerr(&path.display().to_string(), &e))?;
    Ok(Written {
        path: path.to_path_buf(),
        sha256: hex::encode(Sha256::digest(&data)),
        bytes: data.len() as u64,
        start_unix_ms: t0,
        end_unix_ms: aus.last().expect("non-empty").recv_unix_ms,
        frames: aus.len(),
    })
}

/// Wait until the window after an alert at `t_alert_ms` has passed, cut
/// it from the drone's ring and write it under `dir`. `None` when the
/// drone is not recording or its ring holds nothing of the window.
pub async fn record_alert(
    hub: Arc<VideoHub>,
    drone: String,
    alert_id: uuid::Uuid,
    t_alert_ms: i64,
    dir: PathBuf,
) -> Result<Option<Written>, VideoError> {
    let Ok(d) = hub.drone(&drone).cloned() else {
        return Ok(None);
    };
    if d.ring.is_none() {
        return Ok(None);
    }
    let start = t_alert_ms - (hub.cfg.pre_alert_s * 1000.0) as i64;
    let end = t_alert_ms + (hub.cfg.post_alert_s * 1000.0) as i64;
    // The last units of the window may still be on their way.
    let wait = end + 500 - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let aus = d
        .ring
        .as_ref()
        .expect("checked")
        .lock()
        .unwrap()
        .window(start, end);
    if aus.last().is_none_or(|a| a.recv_unix_ms < start) {
        tracing::warn!(%drone, %alert_id, "no video of the alert's window in the ring; no clip");
        return Ok(None);
    }
    let path = dir.join(format!("{alert_id}.mp4"));
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)
            .map_err(|e| VideoError::Clip(format!("{}: {e}", dir.display())))?;
        write_mp4(&aus, &path)
    })
    .await
    .map_err(|e| VideoError::Clip(format!("writer panicked: {e}")))?
    .map(Some)
}

/// Where clips live: `{data_dir}/clips`.
pub fn clips_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("clips")
}

/// Where the recorder's clips go: a directory for the files and a record
/// for each finished clip. The ground station records into its store and
/// sends the clip's case again with the new evidence
/// (`impl ClipSink for http::AppState`, in `desk.rs`).
pub trait ClipSink: Clone + Send + Sync + 'static {
    /// `{data_dir}`: files go under `{data_dir}/clips`.
    fn data_dir(&self) -> PathBuf;
    /// A clip was written: record it (with its SHA-256).
    fn recorded(&self, clip: ClipRow) -> impl std::future::Future<Output = ()> + Send;
}

/// Record every alert of a recording drone (until the notices end): cut
/// the window, write the MP4, hand its record to `sink`.
pub async fn run_recorder(
    hub: Arc<VideoHub>,
    sink: impl ClipSink,
    mut notices: tokio::sync::broadcast::Receiver<crate::ingest::Notice>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let data_dir = sink.data_dir();
    let dir = clips_dir(&data_dir);
    loop {
        let a = match notices.recv().await {
            Ok(crate::ingest::Notice::NewAlert(a)) => a,
            Ok(_) => continue,
            Err(RecvError::Lagged(k)) => {
                tracing::warn!(missed = k, "clip recorder lagged behind ingest");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let recording = hub
            .drones
            .get(&a.drone_id.to_string())
            .is_some_and(|d| d.ring.is_some());
        if !recording {
            continue;
        }
        let (hub, dir, data_dir, sink) = (hub.clone(), dir.clone(), data_dir.clone(), sink.clone());
        tokio::spawn(async move {
            let (id, drone, t) = (a.alert_id, a.drone_id.to_string(), a.t_unix_ms);
            let pre = (hub.cfg.pre_alert_s * 1000.0) as i64;
            let post = (hub.cfg.post_alert_s * 1000.0) as i64;
            match record_alert(hub, drone.clone(), id, t, dir).await {
                Ok(Some(w)) => {
                    let path = w.path.strip_prefix(&data_dir).unwrap_or(&w.path);
                    tracing::info!(
                        %drone, alert_id = %id, sha256 = %w.sha256, bytes = w.bytes,
                        seconds = (w.end_unix_ms - w.start_unix_ms) as f64 / 1000.0,
                        "alert clip written"
                    );
                    sink.recorded(ClipRow {
                        alert_id: id,
                        drone_id: drone,
                        path: path.to_string_lossy().into_owned(),
                        sha256: w.sha256,
                        bytes: w.bytes as i64,
                        frames: w.frames as i64,
                        start_unix_ms: w.start_unix_ms,
                        end_unix_ms: w.end_unix_ms,
                        window_start_unix_ms: t - pre,
                        window_end_unix_ms: t + post,
                        created_unix_ms: now_ms(),
                    })
                    .await;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(%drone, alert_id = %id, error = %e, "alert clip failed"),
            }
        });
    }
}
