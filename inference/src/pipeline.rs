//! Putting the eye together.
//!
//! - [`Eye`]: the per-frame logic after detection — tracker, geotagging of
//!   each track's foot point, event rules, track ground paths, snapshots.
//!   Synchronous, no threads: feed it frames and detections.
//! - [`Pipeline`]: the threaded runner a daemon or the CLI uses. It owns a
//!   [`FrameSource`] and three threads, so that pre-processing of the next
//!   frame overlaps inference of the current one (tract uses both cores
//!   for its matrix products in the inference thread), and the tracks
//!   follow the camera while the detector works:
//!
//! ```text
//!  GStreamer decode ─┬▶ every frame (live sources) ──────────────────────▶ [track thread]
//!                    │                                                       Eye::advance
//!                    └▶ newest-frame slot ─▶ [prep thread] resize+normalise    ▲
//!        ─▶ bounded(1) ─▶ [infer thread] model → decode → NMS ─▶ Eye::detected ┘ ─▶ outputs
//! ```
//!
//! Detect at the model's pace, track at the camera's: with a live source
//! each decoded frame moves the tracks (camera motion + prediction), runs
//! the rules and gives the video overlay of that very frame; a detector
//! result, a few camera frames old by the time it is out, is applied in
//! its own frame's geometry and carried forward ([`crate::timeline`]).
//! Files (every frame detected) run detector-paced.
//!
//! Outputs come through [`Pipeline::recv`] as [`EyeOutput`]: incident
//! events (ready to become alerts with [`crate::alert`]), source events
//! (connected / disconnected / reconnecting), optional per-frame reports
//! (one per detector frame), and a final [`Summary`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tiancha_protocol::GeoPoint;

use crate::alert::{EyeIncident, TrackPath};
use crate::annotate::{self, Jpeg, SnapshotConfig};
use crate::decode::Detection;
use crate::detector::{Detector, Prepared};
use crate::error::{InferenceError, Result};
use crate::events::{EngineConfig, EventEngine, FrameInput, IncidentChange, Subject};
use crate::frame::Frame;
use crate::geotag::{FrameGeo, Geotagger, GroundFix};
use crate::image_motion::{residual_shift, Thumbnail};
use crate::manifest::Manifest;
use crate::model_set::ModelSchedule;
use crate::source::{Delivery, FrameSource, SourceError, SourceEvent, SourceItem, SourceStats};
use crate::timeline::{move_box, TimelineStats, TrackTimeline};
use crate::tracker::{Track, TrackState, Tracker, TrackerConfig};
use crate::video_out::overlay::{overlay_state, OverlayBoard};

/// Settings of the per-frame logic.
#[derive(Debug, Clone)]
pub struct EyeConfig {
    pub tracker: TrackerConfig,
    pub engine: EngineConfig,
    pub snapshot: SnapshotConfig,
    /// Ground path of a track: one point at most every this many ms…
    pub path_interval_ms: i64,
    /// …and at most this many points.
    pub path_len: usize,
    /// Attach a snapshot to updates too (opened incidents always get one).
    pub snapshot_on_update: bool,
    /// Rules still count a confirmed track that has missed at most this
    /// many frames (at its predicted place): at the 1-3 fps of a tiled
    /// companion, a person the detector misses in one frame out of three
    /// would otherwise make a gathering of five flicker between 3 and 5.
    pub hold_lost_frames: u32,
    /// Camera-paced ([`Eye::advance`]): measure on each pair of consecutive
    /// frames the image shift the poses miss (attitude noise) and move the
    /// tracks by it too ([`crate::image_motion`], ~1 ms a frame).
    pub image_motion: bool,
    /// The rules see each track's ground point as the mean of its fixes
    /// over this many ms (each camera frame's pose carries its own white
    /// attitude and gimbal error, ~2 m on the ground at 100 m slant range;
    /// the mean of ten frames has a third of it). A walker (1.5 m/s) is
    /// placed at most ~0.75 m behind. 0: each frame's own fix.
    pub ground_window_ms: i64,
}

impl Default for EyeConfig {
    fn default() -> Self {
        Self {
            tracker: TrackerConfig::default(),
            engine: EngineConfig::default(),
            snapshot: SnapshotConfig::default(),
            path_interval_ms: 500,
            path_len: 240,
            snapshot_on_update: false,
            hold_lost_frames: 1,
            image_motion: true,
            ground_window_ms: 1000,
        }
    }
}

/// What one frame produced.
pub struct FrameOutcome {
    pub tracks: Vec<Track>,
    /// Incidents open after this frame.
    pub open: Vec<crate::events::Incident>,
    /// True when the frame had a pose (positions are on the ground).
    pub geotagged: bool,
    pub incidents: Vec<EyeIncident>,
}

/// The mean of ground fixes: point and covariance (the pose errors of
/// nearby frames are partly shared, so the covariance is not shrunk).
fn mean_fix<'a>(fixes: impl Iterator<Item = &'a GroundFix>) -> GroundFix {
    let fixes: Vec<&GroundFix> = fixes.collect();
    let newest = fixes[fixes.len() - 1];
    if fixes.len() == 1 {
        return *newest;
    }
    let k = fixes.len() as f64;
    let mean = |f: fn(&GroundFix) -> f64| fixes.iter().map(|g| f(g)).sum::<f64>() / k;
    let cov = fixes
        .iter()
        .fold(nalgebra::Matrix2::zeros(), |c, g| c + g.cov_ne_m2)
        / k;
    GroundFix {
        point: tiancha_geometry::LatLonAlt::new(
            mean(|g| g.point.lat_deg),
            mean(|g| g.point.lon_deg),
            mean(|g| g.point.alt_m),
        ),
        cov_ne_m2: cov,
        sigma: tiancha_geometry::camera::GroundEllipse::from_covariance(&cov),
        range_m: newest.range_m,
    }
}

/// Camera frames (checkpoints) the eye keeps for late detector results:
/// 20 s at 30 fps, far more than a detector's latency.
pub const TIMELINE_FRAMES: usize = 600;

/// Tracker + geotagger + event rules + snapshots, frame by frame.
///
/// Two ways to drive it:
///
/// - Detector-paced ([`Eye::process`]): each frame the detector saw, in
///   order; the tracks, rules and geotags advance with the detector.
/// - Camera-paced: [`Eye::advance`] for every camera frame (the tracks
///   moved by camera motion and prediction, the rules and geotags on that
///   frame), and [`Eye::detected`] whenever the detector finishes a frame,
///   however many camera frames ago that was: its detections are applied
///   in that frame's geometry and carried forward ([`TrackTimeline`]); the
///   rules see the correction at the next camera frame.
pub struct Eye {
    manifest: Arc<Manifest>,
    cfg: EyeConfig,
    timeline: TrackTimeline<FrameGeo>,
    engine: EventEngine,
    geotagger: Option<Geotagger>,
    paths: HashMap<u64, VecDeque<(i64, GeoPoint)>>,
    /// Each track's fixes of the last `ground_window_ms`.
    fixes: HashMap<u64, VecDeque<(i64, GroundFix)>>,
    last_t_unix_ms: i64,
    /// Hazard detections of detector results applied since the rules last
    /// ran (moved to the newest frame), and whether there were any results.
    pending_hazards: Vec<Subject>,
    detected_since_rules: bool,
    /// …and whether any of those results looked for hazards (a model
    /// with hazard classes ran on its frame): the hazard rule counts a
    /// miss only then.
    hazards_looked_since_rules: bool,
    /// The newest camera frame's small grey copy, for the image shift.
    thumb: Option<(u64, Thumbnail)>,
}

impl Eye {
    pub fn new(
        manifest: Arc<Manifest>,
        cfg: EyeConfig,
        geotagger: Option<Geotagger>,
    ) -> Result<Self> {
        let engine = EventEngine::new(cfg.engine.clone(), manifest.clone())?;
        Ok(Self {
            timeline: TrackTimeline::new(
                Tracker::new(cfg.tracker, manifest.thresholds.clone()),
                TIMELINE_FRAMES,
            ),
            engine,
            manifest,
            cfg,
            geotagger,
            paths: HashMap::new(),
            fixes: HashMap::new(),
            last_t_unix_ms: 0,
            pending_hazards: Vec::new(),
            detected_since_rules: false,
            hazards_looked_since_rules: false,
            thumb: None,
        })
    }

    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// Replace the event rules (e.g. new detection zones from the ground).
    /// Open incidents of the old rules are closed and returned.
    pub fn set_rules(&mut self, rules: EngineConfig) -> Result<Vec<EyeIncident>> {
        let engine = EventEngine::new(rules.clone(), self.manifest.clone())?;
        let closed = self.engine.finish(self.last_t_unix_ms);
        self.engine = engine;
        self.cfg.engine = rules;
        Ok(closed
            .into_iter()
            .map(|e| self.wrap(e, None, None))
            .collect())
    }

    /// Distinct track ids handed out so far.
    pub fn track_ids_issued(&self) -> u64 {
        self.timeline.tracker().ids_issued()
    }

    /// Counters of the tracks' timeline (camera frames, late results,
    /// frames replayed).
    pub fn timeline_stats(&self) -> TimelineStats {
        self.timeline.stats()
    }

    /// Incidents open now.
    pub fn open_incidents(&self) -> Vec<crate::events::Incident> {
        self.engine.open_incidents().into_iter().cloned().collect()
    }

    fn geo(&self, frame: &Frame) -> Option<FrameGeo> {
        self.geotagger
            .as_ref()
            .and_then(|g| g.frame(frame.capture_unix_ms, frame.width, frame.height))
    }

    /// Process one detector frame's detections (all scores down to the
    /// tracker's low floor) and run the rules on it: detector-paced use.
    /// A frame older than the newest camera frame ([`Eye::advance`]) is
    /// applied as [`Eye::detected`] does, and no rules run.
    pub fn process(&mut self, frame: &Frame, detections: &[Detection]) -> Result<FrameOutcome> {
        self.process_looking(frame, detections, true)
    }

    /// [`Eye::process`] for a result that looked for hazards or not (see
    /// [`Eye::detected_looking`]).
    pub fn process_looking(
        &mut self,
        frame: &Frame,
        detections: &[Detection],
        hazards_looked: bool,
    ) -> Result<FrameOutcome> {
        let newest = self.timeline.head().is_none_or(|h| frame.seq > h);
        let outcome = self.detected_looking(frame, detections, hazards_looked)?;
        if !newest {
            return Ok(outcome);
        }
        let geo = self.timeline.geo_of(frame.seq).flatten().cloned();
        self.rules(frame, geo, outcome.tracks)
    }

    /// A camera frame, with or without a detector result to come: the
    /// tracks move to it (camera motion from the previous frame's pose to
    /// this one's, and the prediction over the time between), then
    /// geotags, ground paths, rules and snapshots as for a detector frame.
    /// `None` for a frame not newer than the newest one seen.
    pub fn advance(&mut self, frame: &Frame) -> Result<Option<FrameOutcome>> {
        let head = self.timeline.head();
        if head.is_some_and(|h| frame.seq <= h) {
            return Ok(None);
        }
        let geo = self.geo(frame);
        let shift = if self.cfg.image_motion {
            self.image_shift(frame, head, geo.as_ref())
        } else {
            (0.0, 0.0)
        };
        let Some(tracks) =
            self.timeline
                .advance_with_shift(frame.seq, frame.capture_unix_ms, geo.clone(), shift)
        else {
            return Ok(None);
        };
        self.rules(frame, geo, tracks).map(Some)
    }

    /// The image shift from the newest frame (`head`) into `frame` that the
    /// poses miss (the whole shift without poses); zero when the pictures
    /// do not tell ([`crate::image_motion`]).
    fn image_shift(
        &mut self,
        frame: &Frame,
        head: Option<u64>,
        geo: Option<&FrameGeo>,
    ) -> (f32, f32) {
        let thumb = match Thumbnail::of(frame, self.thumb.as_ref().map(|(_, t)| t)) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!("eye: no thumbnail of frame {}: {e}", frame.seq);
                self.thumb = None;
                return (0.0, 0.0);
            }
        };
        let mut shift = (0.0, 0.0);
        if let Some((seq, prev)) = &self.thumb {
            if Some(*seq) == head {
                let prev_geo = self.timeline.geo_of(*seq).flatten();
                let through_poses;
                let identity = |x: f32, y: f32| Some((x, y));
                let map: &dyn Fn(f32, f32) -> Option<(f32, f32)> = match (prev_geo, geo) {
                    (Some(a), Some(b)) => {
                        through_poses = move |x: f32, y: f32| a.reproject_into(b, x, y);
                        &through_poses
                    }
                    _ => &identity,
                };
                match residual_shift(prev, &thumb, map, self.cfg.tracker.cmc_search_px) {
                    Ok(Some((s, _))) => shift = s,
                    Ok(None) => {}
                    Err(e) => tracing::debug!("eye: image shift of frame {}: {e}", frame.seq),
                }
            }
        }
        self.thumb = Some((frame.seq, thumb));
        shift
    }

    /// The detector's result for `frame`, which may be older than the
    /// newest camera frame: associated in that frame's geometry and carried
    /// forward to the newest (see [`TrackTimeline`]). Its hazard
    /// detections go to the rules with the next camera frame. The outcome
    /// holds the tracks in `frame` just after the correction (what a report
    /// of that frame shows), the incidents open now, and no incident
    /// events (those come from the rules, at the next camera frame).
    pub fn detected(&mut self, frame: &Frame, detections: &[Detection]) -> Result<FrameOutcome> {
        self.detected_looking(frame, detections, true)
    }

    /// [`Eye::detected`] for a result that looked for hazards or not
    /// (several models on one camera, [`crate::model_set`]: the hazard
    /// model runs on some frames only).
    pub fn detected_looking(
        &mut self,
        frame: &Frame,
        detections: &[Detection],
        hazards_looked: bool,
    ) -> Result<FrameOutcome> {
        let t = frame.capture_unix_ms;
        let geo = match self.timeline.geo_of(frame.seq) {
            Some(g) => g.cloned(),
            None => self.geo(frame),
        };
        let tracks = self
            .timeline
            .detections(frame.seq, t, geo.clone(), detections);
        let head = self
            .timeline
            .head()
            .filter(|h| *h != frame.seq)
            .and_then(|h| self.timeline.geo_of(h))
            .flatten();
        for d in detections.iter().filter(|d| {
            self.manifest.hazard_category(d.class_id).is_some()
                && d.score >= self.manifest.thresholds[d.class_id]
        }) {
            let (x, y) = d.bbox.foot();
            let ground = geo.as_ref().and_then(|g| g.locate(x, y));
            // Drawn on the newest frame: moved there by the camera motion.
            let bbox = match (geo.as_ref(), head) {
                (Some(from), Some(to)) => move_box(&d.bbox, from, to).unwrap_or(d.bbox),
                _ => d.bbox,
            };
            self.pending_hazards.push(Subject {
                track_id: 0,
                class_id: d.class_id,
                bbox,
                score: d.score,
                ground,
            });
        }
        self.detected_since_rules = true;
        self.hazards_looked_since_rules |= hazards_looked;
        tracing::debug!(
            seq = frame.seq,
            head = ?self.timeline.head(),
            detections = detections.len(),
            tracks = tracks.len(),
            confirmed = tracks.iter().filter(|t| t.confirmed).count(),
            tracked = tracks.iter().filter(|t| t.state == TrackState::Tracked).count(),
            pose = ?geo.as_ref().map(|g| (g.pose().position.lat_deg, g.pose().position.lon_deg)),
            "eye: detector frame"
        );
        Ok(FrameOutcome {
            tracks,
            open: self.open_incidents(),
            geotagged: geo.is_some(),
            incidents: vec![],
        })
    }

    /// Geotags, ground paths, rules and snapshots on the newest frame.
    fn rules(
        &mut self,
        frame: &Frame,
        geo: Option<FrameGeo>,
        tracks: Vec<Track>,
    ) -> Result<FrameOutcome> {
        let t = frame.capture_unix_ms;
        self.last_t_unix_ms = t;
        let locate = |b: &crate::decode::BBox| {
            let (x, y) = b.foot();
            geo.as_ref().and_then(|g| g.locate(x, y))
        };
        let window = self.cfg.ground_window_ms;
        let fixes = &mut self.fixes;
        let mut smoothed = |id: u64, fix: GroundFix| {
            let f = fixes.entry(id).or_default();
            f.push_back((t, fix));
            while f.front().is_some_and(|(ft, _)| t - ft > window) {
                f.pop_front();
            }
            mean_fix(f.iter().map(|(_, g)| g))
        };
        let subjects: Vec<Subject> = tracks
            .iter()
            .filter(|t| {
                t.confirmed
                    && (t.state == TrackState::Tracked
                        || (t.state == TrackState::Lost && t.missed <= self.cfg.hold_lost_frames))
                    && t.score_ema >= self.manifest.thresholds[t.class_id]
            })
            .map(|t| Subject {
                track_id: t.id,
                class_id: t.class_id,
                bbox: t.bbox,
                score: t.score,
                ground: locate(&t.bbox).map(|g| smoothed(t.id, g)),
            })
            .collect();
        let hazards = std::mem::take(&mut self.pending_hazards);
        let detected = std::mem::take(&mut self.detected_since_rules);
        let hazards_looked = std::mem::take(&mut self.hazards_looked_since_rules);
        if detected {
            tracing::debug!(
                seq = frame.seq,
                subjects = subjects.len(),
                on_ground = subjects.iter().filter(|s| s.ground.is_some()).count(),
                "eye: rules after a detector result"
            );
        }

        // Ground paths.
        for s in &subjects {
            if let Some(g) = s.ground {
                let p = self.paths.entry(s.track_id).or_default();
                if p.back()
                    .is_none_or(|(pt, _)| t - pt >= self.cfg.path_interval_ms)
                {
                    p.push_back((t, GeoPoint::new(g.point.lat_deg, g.point.lon_deg)));
                    while p.len() > self.cfg.path_len {
                        p.pop_front();
                    }
                }
            }
        }
        let live: std::collections::HashSet<u64> = tracks.iter().map(|t| t.id).collect();

        let events = self.engine.update(&FrameInput {
            seq: frame.seq,
            t_unix_ms: t,
            tracks: &subjects,
            hazards: &hazards,
            detected: hazards_looked,
        });
        let observer = geo.as_ref().map(|g| g.pose().position);
        let mut incidents = Vec::with_capacity(events.len());
        for ev in events {
            let snap = match ev.change {
                IncidentChange::Opened => true,
                IncidentChange::Updated => self.cfg.snapshot_on_update,
                IncidentChange::Closed => false,
            };
            let snapshot = if snap {
                match self.snapshot(frame, &tracks, &ev.incident) {
                    Ok(j) => Some(j),
                    Err(e) => {
                        tracing::warn!("snapshot failed: {e}");
                        None
                    }
                }
            } else {
                None
            };
            incidents.push(self.wrap(ev, snapshot, observer));
        }
        self.paths.retain(|id, _| live.contains(id));
        self.fixes.retain(|id, _| live.contains(id));
        Ok(FrameOutcome {
            open: self.open_incidents(),
            tracks,
            geotagged: geo.is_some(),
            incidents,
        })
    }

    /// End of stream: close what is open.
    pub fn finish(&mut self) -> Vec<EyeIncident> {
        let t = self.last_t_unix_ms;
        self.engine
            .finish(t)
            .into_iter()
            .map(|e| self.wrap(e, None, None))
            .collect()
    }

    fn wrap(
        &self,
        event: crate::events::IncidentEvent,
        snapshot: Option<Jpeg>,
        observer: Option<tiancha_geometry::LatLonAlt>,
    ) -> EyeIncident {
        let tracks = event
            .incident
            .track_ids
            .iter()
            .zip(&event.incident.class_ids)
            .map(|(id, c)| TrackPath {
                track_id: *id,
                class: self.manifest.class_name(*c).to_string(),
                path: self
                    .paths
                    .get(id)
                    .map(|p| p.iter().map(|(_, g)| *g).collect())
                    .unwrap_or_default(),
            })
            .collect();
        EyeIncident {
            event,
            tracks,
            snapshot,
            observer,
        }
    }

    fn snapshot(
        &self,
        frame: &Frame,
        tracks: &[Track],
        inc: &crate::events::Incident,
    ) -> Result<Jpeg> {
        let mut img = frame.to_mat()?;
        annotate::draw(&mut img, &self.manifest, tracks, &[inc])?;
        annotate::encode_jpeg(&img, &self.cfg.snapshot)
    }
}

/// Per-frame report (when asked for).
pub struct FrameReport {
    pub frame: Frame,
    pub detections: Vec<Detection>,
    pub tracks: Vec<Track>,
    /// Incidents open after this frame.
    pub open: Vec<crate::events::Incident>,
    pub geotagged: bool,
    /// Incidents raised by this frame (also sent as [`EyeOutput::Incident`]).
    pub incidents: Vec<EyeIncident>,
    pub timing: FrameTiming,
}

/// Where a frame's time went, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FrameTiming {
    pub prep_ms: f64,
    pub infer_ms: f64,
    pub post_ms: f64,
    /// From the source handing the frame over to its events being out.
    pub latency_ms: f64,
}

/// What the pipeline says.
pub enum EyeOutput {
    Incident(Box<EyeIncident>),
    Source(SourceEvent),
    Frame(Box<FrameReport>),
    /// A frame failed (it is skipped; the pipeline goes on).
    FrameError(String),
    /// The pipeline is done; nothing follows.
    End(Box<Summary>),
}

/// Figures of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub frames: u64,
    pub frame_errors: u64,
    pub source: SourceStats,
    pub wall_s: f64,
    pub fps: f64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub mean_prep_ms: f64,
    pub mean_infer_ms: f64,
    pub mean_post_ms: f64,
    pub incidents_opened: u64,
    pub incident_updates: u64,
    pub incidents_closed: u64,
    pub track_ids: u64,
    /// Camera frames the tracks were moved to and the rules ran on (live
    /// sources: every decoded frame; 0 for detector-paced sources).
    #[serde(default)]
    pub tracked_frames: u64,
    /// Camera frames the tracker never saw because it was behind.
    #[serde(default)]
    pub tracked_frames_dropped: u64,
    /// How the source ended; `None` when it ended normally or was stopped.
    pub source_error: Option<String>,
    /// Peak resident memory of the process so far (Linux), MB.
    pub peak_rss_mb: Option<f64>,
}

/// Peak resident set size of this process (VmHWM), MB; Linux only.
pub fn peak_rss_mb() -> Option<f64> {
    proc_status_kb(None, "VmHWM:").map(|kb| kb as f64 / 1024.0)
}

/// A kB figure (`VmHWM:`, `VmRSS:`, …) from `/proc/<pid>/status`, this
/// process's when `pid` is `None`; Linux only.
pub fn proc_status_kb(pid: Option<u32>, key: &str) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Live figures of a running pipeline ([`Pipeline::health`]), updated
/// after every frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Frames through the detector so far.
    pub frames: u64,
    /// Frames the source dropped (newest-frame policy) so far.
    pub dropped: u64,
    /// Frames per second over the last few seconds.
    pub fps: f64,
    /// Latency of the latest frame (source hand-over → events out), ms.
    pub latency_ms: f64,
    /// Detector time of the latest frame, ms.
    pub infer_ms: f64,
    /// Capture time of the latest frame (Unix ms); 0 before the first.
    pub last_capture_unix_ms: i64,
    /// Camera frames the tracks were moved to so far (see
    /// [`Summary::tracked_frames`]).
    #[serde(default)]
    pub tracked_frames: u64,
}

/// Pipeline settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct PipelineOptions {
    /// Send a [`FrameReport`] for every frame (the CLI draws them).
    pub report_frames: bool,
}

enum Work {
    Frame(Frame, Prepared, f64, u64),
    End(Option<SourceError>, SourceStats),
}

/// A detector result on its way to the tracking thread.
struct DetectorResult {
    frame: Frame,
    detections: Vec<Detection>,
    /// A model with hazard classes ran on the frame.
    hazards_looked: bool,
    prep_ms: f64,
    infer_ms: f64,
    /// The source's drop count when the frame was prepared.
    dropped: u64,
}

/// What reaches the tracking thread, in the order it happened: a camera
/// frame is announced (by the source's frame hook) before it can enter
/// the newest-frame slot, so before its detector result.
enum TrackMsg {
    /// A camera frame (camera-paced mode): move the tracks, run the rules.
    Camera(Frame),
    Detected(Box<DetectorResult>),
    /// A frame the detector failed on.
    Error(String),
    End(Option<SourceError>, SourceStats),
}

/// Camera frames and results queued for the tracking thread; a camera
/// frame that finds the queue full is not tracked (and counted).
const TRACK_QUEUE: usize = 8;

/// The threaded runner.
pub struct Pipeline {
    rx: Receiver<EyeOutput>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    rules: Mutex<std::sync::mpsc::Sender<EngineConfig>>,
    health: Arc<Mutex<Health>>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| InferenceError::Config(format!("cannot start a thread: {e}")))
}

impl Pipeline {
    /// Start running `source` through `detector` and `eye`.
    ///
    /// A source that keeps only the newest frame (a live camera,
    /// [`crate::source::Delivery::Newest`]) runs camera-paced: every
    /// decoded frame moves the tracks and runs the rules ([`Eye::advance`],
    /// on the tracking thread), the detector's results are applied late
    /// ([`Eye::detected`]), and the video overlay is drawn for each frame
    /// from that frame's tracks. A source that delivers every frame (a
    /// file) runs detector-paced ([`Eye::process`]), as every frame is
    /// detected anyway.
    pub fn start(
        source: FrameSource,
        detector: Arc<Detector>,
        eye: Eye,
        opts: PipelineOptions,
    ) -> Result<Self> {
        let schedule = ModelSchedule::none(detector.manifest());
        Self::start_with(source, detector, schedule, eye, opts)
    }

    /// [`Pipeline::start`] with extra models beside `detector`, each run
    /// on the detector's frames within its budget ([`crate::model_set`]);
    /// `eye` must use the schedule's merged class table
    /// ([`ModelSchedule::manifest`]).
    pub fn start_with(
        source: FrameSource,
        detector: Arc<Detector>,
        schedule: ModelSchedule,
        eye: Eye,
        opts: PipelineOptions,
    ) -> Result<Self> {
        if eye.manifest().class_names != schedule.manifest().class_names {
            return Err(InferenceError::Config(
                "the eye's class table is not the models' (build the eye on ModelSchedule::manifest)"
                    .into(),
            ));
        }
        let (out_tx, rx) = sync_channel::<EyeOutput>(16);
        let (work_tx, work_rx) = sync_channel::<Work>(1);
        let (track_tx, track_rx) = sync_channel::<TrackMsg>(TRACK_QUEUE);
        let (rules_tx, rules_rx) = std::sync::mpsc::channel::<EngineConfig>();
        let health = Arc::new(Mutex::new(Health::default()));
        let stop = Arc::new(AtomicBool::new(false));
        // With video out, the overlay goes here.
        let overlay = source.video_overlay();
        let camera_paced = source.delivery() == Delivery::Newest;
        let not_tracked = Arc::new(AtomicU64::new(0));
        if camera_paced {
            let tx = track_tx.clone();
            let not_tracked = not_tracked.clone();
            source.on_every_frame(Box::new(move |f: &Frame| {
                if let Err(TrySendError::Full(_)) = tx.try_send(TrackMsg::Camera(f.clone())) {
                    not_tracked.fetch_add(1, Ordering::Relaxed);
                }
            }));
            if let Some(b) = &overlay {
                b.set_per_frame(true);
            }
        }
        let prep = {
            let detector = detector.clone();
            let out = out_tx.clone();
            let stop = stop.clone();
            spawn("tiancha-prep", move || {
                prep_loop(source, &detector, &work_tx, &out, &stop)
            })?
        };
        let infer = spawn("tiancha-infer", move || {
            infer_loop(&detector, schedule, work_rx, &track_tx)
        })?;
        let track = {
            let health = health.clone();
            spawn("tiancha-track", move || {
                track_loop(
                    eye,
                    track_rx,
                    &out_tx,
                    TrackSettings {
                        opts,
                        camera_paced,
                        overlay,
                        not_tracked,
                    },
                    &rules_rx,
                    &health,
                )
            })?
        };
        Ok(Self {
            rx,
            stop,
            threads: vec![prep, infer, track],
            rules: Mutex::new(rules_tx),
            health,
        })
    }

    /// Replace the event rules while running (e.g. new detection zones
    /// from the ground). They apply from the next frame on; incidents open
    /// under the old rules are closed (their closing events come out as
    /// [`EyeOutput::Incident`]). Rules the engine refuses come out as an
    /// [`EyeOutput::FrameError`] and the old rules stay. Returns `false`
    /// when the pipeline has ended.
    pub fn set_rules(&self, rules: EngineConfig) -> bool {
        self.rules.lock().expect("rules lock").send(rules).is_ok()
    }

    /// Live figures (frames, drops, fps, latency).
    pub fn health(&self) -> Health {
        *self.health.lock().expect("health lock")
    }

    /// The next output, waiting at most `timeout`; `None` on timeout or
    /// after the end.
    pub fn recv(&self, timeout: Duration) -> Option<EyeOutput> {
        match self.rx.recv_timeout(timeout) {
            Ok(o) => Some(o),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Ask the pipeline to stop; it finishes the frame in hand, closes open
    /// incidents and ends with [`EyeOutput::End`].
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Run to the end, calling `f` for each output; returns the summary.
    pub fn run_to_end(self, mut f: impl FnMut(&EyeOutput)) -> Summary {
        let mut summary = Summary::default();
        while let Ok(o) = self.rx.recv() {
            f(&o);
            if let EyeOutput::End(s) = o {
                summary = *s;
                break;
            }
        }
        summary
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Drain so that blocked senders can finish.
        while self.rx.recv_timeout(Duration::from_millis(10)).is_ok() {}
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn prep_loop(
    source: FrameSource,
    detector: &Detector,
    work: &SyncSender<Work>,
    out: &SyncSender<EyeOutput>,
    stop: &AtomicBool,
) {
    let mut pre = detector.preprocessor();
    let end = loop {
        if stop.load(Ordering::Relaxed) {
            break None;
        }
        match source.recv(Duration::from_millis(100)) {
            None => continue,
            Some(SourceItem::Event(e)) => {
                if out.send(EyeOutput::Source(e)).is_err() {
                    break None;
                }
            }
            Some(SourceItem::End(r)) => break r.err(),
            Some(SourceItem::Frame(f)) => {
                let t0 = Instant::now();
                match detector.prepare(&mut pre, &f) {
                    Ok(p) => {
                        let ms = t0.elapsed().as_secs_f64() * 1000.0;
                        let dropped = source.stats().dropped;
                        if work.send(Work::Frame(f, p, ms, dropped)).is_err() {
                            break None;
                        }
                    }
                    Err(e) => {
                        let _ = out.send(EyeOutput::FrameError(format!("frame {}: {e}", f.seq)));
                    }
                }
            }
        }
    };
    let stats = source.stats();
    // Stopping the source also drops its frame hook (the tracking
    // thread's camera-frame sender).
    source.stop();
    let _ = work.send(Work::End(end, stats));
}

/// The detector, nothing else: results go to the tracking thread.
fn infer_loop(
    detector: &Detector,
    mut schedule: ModelSchedule,
    work: Receiver<Work>,
    track: &SyncSender<TrackMsg>,
) {
    loop {
        let msg = match work.recv() {
            Err(_) => TrackMsg::End(None, SourceStats::default()),
            Ok(Work::End(e, stats)) => TrackMsg::End(e, stats),
            Ok(Work::Frame(frame, prepared, prep_ms, dropped)) => {
                let t0 = Instant::now();
                match detector.infer(prepared) {
                    Ok(mut detections) => {
                        let (extra, hazards_looked) = schedule.run_due(&frame, Instant::now());
                        detections.extend(extra);
                        TrackMsg::Detected(Box::new(DetectorResult {
                            infer_ms: t0.elapsed().as_secs_f64() * 1000.0,
                            frame,
                            detections,
                            hazards_looked,
                            prep_ms,
                            dropped,
                        }))
                    }
                    Err(e) => TrackMsg::Error(format!("frame {}: {e}", frame.seq)),
                }
            }
        };
        let end = matches!(msg, TrackMsg::End(..));
        if track.send(msg).is_err() || end {
            return;
        }
    }
}

struct TrackSettings {
    opts: PipelineOptions,
    camera_paced: bool,
    overlay: Option<OverlayBoard>,
    not_tracked: Arc<AtomicU64>,
}

/// The overlay of one frame, in that frame's pixels, tagged with its
/// stream position so that the video branch draws it on that very frame.
fn publish_overlay(board: Option<&OverlayBoard>, eye: &Eye, frame: &Frame, o: &FrameOutcome) {
    if let Some(board) = board {
        let manifest = eye.manifest();
        let mut state = overlay_state(
            frame.width,
            frame.height,
            frame.seq,
            frame.capture_unix_ms,
            &o.tracks,
            &o.open,
            &|id| manifest.class_name(id).to_string(),
        );
        state.pts_ms = frame.pts_ms;
        board.publish(state);
    }
}

/// The eye's thread: camera frames, detector results, rules, outputs.
fn track_loop(
    mut eye: Eye,
    rx: Receiver<TrackMsg>,
    out: &SyncSender<EyeOutput>,
    settings: TrackSettings,
    rules: &Receiver<EngineConfig>,
    health: &Mutex<Health>,
) {
    let TrackSettings {
        opts,
        camera_paced,
        overlay,
        not_tracked,
    } = settings;
    let overlay = overlay.as_ref();
    let mut recent: VecDeque<Instant> = VecDeque::new();
    let started = Instant::now();
    let mut s = Summary::default();
    let mut latencies = Vec::new();
    let (mut prep_sum, mut infer_sum, mut post_sum) = (0.0, 0.0, 0.0);
    let count = |s: &mut Summary, incs: &[EyeIncident]| {
        for i in incs {
            match i.event.change {
                IncidentChange::Opened => s.incidents_opened += 1,
                IncidentChange::Updated => s.incident_updates += 1,
                IncidentChange::Closed => s.incidents_closed += 1,
            }
        }
    };
    let mut first_frame: Option<Instant> = None;
    let mut last_done = started;
    let (end_err, stats) = loop {
        let Ok(msg) = rx.recv() else {
            break (None, SourceStats::default());
        };
        // New rules first, so that this frame runs under them.
        while let Ok(r) = rules.try_recv() {
            match eye.set_rules(r) {
                Ok(closed) => {
                    count(&mut s, &closed);
                    for i in closed {
                        if out.send(EyeOutput::Incident(Box::new(i))).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = out.send(EyeOutput::FrameError(format!(
                        "new rules refused (the old ones stay): {e}"
                    )));
                }
            }
        }
        let d = match msg {
            TrackMsg::End(e, stats) => break (e, stats),
            TrackMsg::Error(e) => {
                s.frame_errors += 1;
                let _ = out.send(EyeOutput::FrameError(e));
                continue;
            }
            TrackMsg::Camera(frame) => {
                match eye.advance(&frame) {
                    Ok(Some(o)) => {
                        s.tracked_frames += 1;
                        health.lock().expect("health lock").tracked_frames = s.tracked_frames;
                        publish_overlay(overlay, &eye, &frame, &o);
                        count(&mut s, &o.incidents);
                        for i in o.incidents {
                            if out.send(EyeOutput::Incident(Box::new(i))).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ =
                            out.send(EyeOutput::FrameError(format!("frame {}: {e}", frame.seq)));
                    }
                }
                continue;
            }
            TrackMsg::Detected(d) => d,
        };
        let DetectorResult {
            frame,
            detections: dets,
            hazards_looked,
            prep_ms,
            infer_ms,
            dropped,
        } = *d;
        first_frame.get_or_insert(frame.received_mono);
        let t1 = Instant::now();
        let outcome = if camera_paced {
            eye.detected_looking(&frame, &dets, hazards_looked)
        } else {
            eye.process_looking(&frame, &dets, hazards_looked)
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                s.frame_errors += 1;
                let _ = out.send(EyeOutput::FrameError(format!("frame {}: {e}", frame.seq)));
                continue;
            }
        };
        if !camera_paced {
            publish_overlay(overlay, &eye, &frame, &outcome);
        }
        let t2 = Instant::now();
        last_done = t2;
        let timing = FrameTiming {
            prep_ms,
            infer_ms,
            post_ms: (t2 - t1).as_secs_f64() * 1000.0,
            latency_ms: t2
                .saturating_duration_since(frame.received_mono)
                .as_secs_f64()
                * 1000.0,
        };
        s.frames += 1;
        recent.push_back(t2);
        while recent
            .front()
            .is_some_and(|f| t2.saturating_duration_since(*f) > Duration::from_secs(3))
        {
            recent.pop_front();
        }
        {
            let span = recent
                .front()
                .map(|f| t2.saturating_duration_since(*f).as_secs_f64())
                .unwrap_or(0.0);
            let mut h = health.lock().expect("health lock");
            *h = Health {
                frames: s.frames,
                dropped,
                fps: if span > 0.0 {
                    (recent.len() - 1) as f64 / span
                } else {
                    0.0
                },
                latency_ms: timing.latency_ms,
                infer_ms: timing.infer_ms,
                last_capture_unix_ms: frame.capture_unix_ms,
                tracked_frames: s.tracked_frames,
            };
        }
        prep_sum += timing.prep_ms;
        infer_sum += timing.infer_ms;
        post_sum += timing.post_ms;
        latencies.push(timing.latency_ms);
        count(&mut s, &outcome.incidents);
        for i in &outcome.incidents {
            if out.send(EyeOutput::Incident(Box::new(i.clone()))).is_err() {
                return;
            }
        }
        if opts.report_frames {
            let report = FrameReport {
                frame,
                detections: dets,
                tracks: outcome.tracks,
                open: outcome.open,
                geotagged: outcome.geotagged,
                incidents: outcome.incidents,
                timing,
            };
            if out.send(EyeOutput::Frame(Box::new(report))).is_err() {
                return;
            }
        }
    };
    let closing = eye.finish();
    count(&mut s, &closing);
    for i in closing {
        let _ = out.send(EyeOutput::Incident(Box::new(i)));
    }
    latencies.sort_by(f64::total_cmp);
    let n = s.frames.max(1) as f64;
    s.source = stats;
    s.wall_s = started.elapsed().as_secs_f64();
    // Throughput from the first frame in to the last frame out.
    let busy = first_frame
        .map(|f| last_done.saturating_duration_since(f).as_secs_f64())
        .unwrap_or(0.0);
    s.fps = if busy > 0.0 {
        s.frames as f64 / busy
    } else {
        0.0
    };
    s.latency_p50_ms = percentile(&latencies, 0.5);
    s.latency_p95_ms = percentile(&latencies, 0.95);
    s.mean_prep_ms = prep_sum / n;
    s.mean_infer_ms = infer_sum / n;
    s.mean_post_ms = post_sum / n;
    s.track_ids = eye.track_ids_issued();
    s.tracked_frames_dropped = not_tracked.load(Ordering::Relaxed);
    s.source_error = end_err.map(|e| e.to_string());
    s.peak_rss_mb = peak_rss_mb();
    let _ = out.send(EyeOutput::End(Box::new(s)));
}

/// Counts of incident events by change, for tests and summaries.
pub fn count_changes(incidents: &[EyeIncident]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for i in incidents {
        let k = match i.event.change {
            IncidentChange::Opened => "opened",
            IncidentChange::Updated => "updated",
            IncidentChange::Closed => "closed",
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}
