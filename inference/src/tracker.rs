//! A ByteTrack-style multi-object tracker: a constant-velocity Kalman
//! filter per track on (centre x, centre y, aspect, height), optimal IoU
//! assignment (Hungarian, `pathfinding::kuhn_munkres`), and the ByteTrack
//! idea of a second pass that lets low-score detections (an occluded
//! person) keep an existing track alive without ever starting one.
//!
//! Pure logic: feed it each frame's detections with the frame time.
//! Association is within a class.
//!
//! **Camera motion.** From a drone the whole image moves: at 5 m/s and the
//! <1 fps a companion CPU manages with tiling, a person standing still
//! moves hundreds of pixels between processed frames, and plain IoU never
//! matches twice. [`Tracker::update_with_motion`] takes the map from the
//! previous frame's pixels to this frame's (the eye builds it from the two
//! camera poses through the ground plane) and moves every track's Kalman
//! state through it first (as BoT-SORT does with its image-based motion
//! estimate). Telemetry attitude noise still leaves a shift common to the
//! whole frame (0.5° of pitch is ~20 px at 30° HFOV, and the GPS error's
//! drift between frames as much again per metre), so it then finds the
//! one translation most track–detection pairs agree on (a vote over the
//! pairs within [`TrackerConfig::cmc_search_px`]) and applies it before
//! association.
//!
//! **Two paces.** [`Tracker::update_with_motion`] is one detector frame:
//! [`Tracker::predict_to`] (camera motion, then the Kalman prediction to
//! the frame's time) and [`Tracker::correct`] (association with the
//! detections, misses, births). A camera frame the detector did not see
//! is [`Tracker::predict_to`] alone: the tracks move with the camera and
//! their own velocity, and nothing counts as a miss (misses, hits and
//! confirmation are counted per detector frame only).
//! [`crate::timeline::TrackTimeline`] keeps a checkpoint per camera frame
//! so that a detector result that arrives late is applied in its own
//! frame's geometry.
//!
//! **Time.** The filter's unit of time is the detector's interval (a
//! running mean of the time between detector frames): the ByteTrack noise
//! constants are per frame, and this tracker has always applied them per
//! processed frame, at the 0.7-10 fps its detectors run. A camera frame in
//! between predicts by the fraction of that interval it covers, so that
//! the camera frames between two detector frames add up to one step.

use nalgebra::{SMatrix, SVector};
use pathfinding::matrix::Matrix;
use serde::{Deserialize, Serialize};

use crate::decode::{BBox, Detection};

/// Tracker settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackerConfig {
    /// Detections below this score only take part in the second pass;
    /// `None` uses the model's class thresholds.
    pub high_score: Option<f32>,
    /// A new track needs a detection at least this good (and at least the
    /// class threshold).
    pub new_track_score: f32,
    /// First pass: minimum IoU between a predicted track and a detection.
    pub match_iou: f32,
    /// Second (low-score) pass: minimum IoU.
    pub low_match_iou: f32,
    /// A lost track is forgotten after this long without a detection.
    pub max_lost_ms: i64,
    /// A new track is confirmed after this many consecutive hits.
    pub confirm_hits: u32,
    /// A lost track also survives this many processed frames without a
    /// detection, however long they take: at the <1 fps of a tiled
    /// companion, `max_lost_ms` alone would drop a track at its first miss.
    pub max_lost_frames: u32,
    /// With camera motion given: the largest residual shift (pixels of the
    /// processed frame) searched for between the motion-compensated tracks
    /// and this frame's detections; 0 disables the search.
    pub cmc_search_px: f32,
    /// With camera motion given: offsets within this many pixels vote for
    /// the same shift.
    pub cmc_vote_px: f32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            high_score: None,
            new_track_score: 0.3,
            match_iou: 0.2,
            low_match_iou: 0.5,
            max_lost_ms: 2_000,
            confirm_hits: 2,
            max_lost_frames: 2,
            // GPS error alone moves the image 50-150 px between frames a
            // second apart at the 30-60 px/m of a 30° camera 40-80 m away.
            cmc_search_px: 250.0,
            cmc_vote_px: 12.0,
        }
    }
}

/// Where a track is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackState {
    /// Seen, not yet confirmed.
    Tentative,
    /// Matched in the latest detector frame.
    Tracked,
    /// Not matched in the latest detector frame; still predicted.
    Lost,
}

/// A track as reported after each frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Track {
    pub id: u64,
    pub class_id: usize,
    /// Matched detection's box, or the prediction when lost; after a
    /// camera frame without detections ([`Tracker::predict_to`]), the
    /// prediction in that frame.
    pub bbox: BBox,
    /// Score of the last matched detection.
    pub score: f32,
    /// Running mean of the matched scores (exponential, weight
    /// [`SCORE_EMA_WEIGHT`] for the newest): what a track has looked like
    /// over time, not just now. Event rules count tracks by it, so that a
    /// stone that looks like a person in one frame out of ten, and lives on
    /// through low-score matches, never counts as one.
    pub score_ema: f32,
    pub state: TrackState,
    pub hits: u32,
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
    /// Has been confirmed at some point.
    pub confirmed: bool,
    /// Detector frames since the last matched detection (0 when
    /// [`TrackState::Tracked`]).
    #[serde(default)]
    pub missed: u32,
}

/// A camera-motion map: a pixel of the previous frame → the same ground
/// point's pixel in this one (`None` where it cannot say).
pub type CameraMotion<'a> = &'a dyn Fn(f32, f32) -> Option<(f32, f32)>;

type V8 = SVector<f32, 8>;
type M8 = SMatrix<f32, 8, 8>;
type V4 = SVector<f32, 4>;
type M4 = SMatrix<f32, 4, 4>;
type M48 = SMatrix<f32, 4, 8>;

/// Weight of the newest score in [`Track::score_ema`].
pub const SCORE_EMA_WEIGHT: f32 = 0.2;

const W_POS: f32 = 1.0 / 20.0;
const W_VEL: f32 = 1.0 / 160.0;

/// Constant-velocity Kalman filter on (cx, cy, aspect, height), as in
/// SORT/DeepSORT/ByteTrack.
#[derive(Debug, Clone, Copy)]
struct Kalman {
    mean: V8,
    cov: M8,
}

fn xyah(b: &BBox) -> V4 {
    let (cx, cy) = b.center();
    let h = b.height().max(1e-3);
    V4::new(cx, cy, b.width() / h, h)
}

fn bbox_of(m: &V8) -> BBox {
    let h = m[3].max(1e-3);
    let w = (m[2] * h).max(1e-3);
    BBox::from_cxcywh(m[0], m[1], w, h)
}

impl Kalman {
    fn new(b: &BBox) -> Self {
        let z = xyah(b);
        let h = z[3];
        let mut mean = V8::zeros();
        mean.fixed_rows_mut::<4>(0).copy_from(&z);
        let std = [
            2.0 * W_POS * h,
            2.0 * W_POS * h,
            1e-2,
            2.0 * W_POS * h,
            10.0 * W_VEL * h,
            10.0 * W_VEL * h,
            1e-5,
            10.0 * W_VEL * h,
        ];
        Self {
            mean,
            cov: M8::from_diagonal(&V8::from_iterator(std.iter().map(|s| s * s))),
        }
    }

    /// Predict `steps` (a fraction, or several) detector intervals ahead:
    /// the mean moves by velocity × steps, the process noise of one step
    /// is scaled by `steps` (so that predictions in pieces add up to one
    /// whole step).
    fn predict(&mut self, steps: f32) {
        let h = self.mean[3];
        let mut f = M8::identity();
        for i in 0..4 {
            f[(i, i + 4)] = steps;
        }
        let std = [
            W_POS * h,
            W_POS * h,
            1e-2,
            W_POS * h,
            W_VEL * h,
            W_VEL * h,
            1e-5,
            W_VEL * h,
        ];
        let q = M8::from_diagonal(&V8::from_iterator(std.iter().map(|s| steps * s * s)));
        self.mean = f * self.mean;
        self.cov = f * self.cov * f.transpose() + q;
    }

    /// Express the velocity in a new unit of time `new = old × s`
    /// (velocity per step × s).
    fn rescale_velocity(&mut self, s: f32) {
        let mut t = M8::identity();
        for i in 4..8 {
            t[(i, i)] = s;
        }
        self.mean = t * self.mean;
        self.cov = t * self.cov * t.transpose();
    }

    /// Move the state through a camera-motion map (old pixel → new pixel):
    /// the centre through the map itself; velocity, shape and covariance
    /// through its Jacobian at the centre (finite differences of half the
    /// box height). Returns false (state untouched) where the map fails.
    fn warp(&mut self, map: CameraMotion<'_>) -> bool {
        let (cx, cy, h) = (self.mean[0], self.mean[1], self.mean[3].max(1.0));
        let d = 0.5 * h;
        let (Some(p0), Some(px), Some(py)) = (map(cx, cy), map(cx + d, cy), map(cx, cy + d)) else {
            return false;
        };
        // Jacobian columns: d(new)/d(old x), d(new)/d(old y).
        let j = nalgebra::Matrix2::new(
            (px.0 - p0.0) / d,
            (py.0 - p0.0) / d,
            (px.1 - p0.1) / d,
            (py.1 - p0.1) / d,
        );
        let sx = (j[(0, 0)].powi(2) + j[(1, 0)].powi(2)).sqrt();
        let sy = (j[(0, 1)].powi(2) + j[(1, 1)].powi(2)).sqrt();
        if !(sx.is_finite() && sy.is_finite() && sx > 0.1 && sy > 0.1 && sx < 10.0 && sy < 10.0) {
            return false;
        }
        let mut t = M8::identity();
        for base in [0usize, 4] {
            for r in 0..2 {
                for c in 0..2 {
                    t[(base + r, base + c)] = j[(r, c)];
                }
            }
        }
        t[(2, 2)] = sx / sy;
        t[(3, 3)] = sy;
        t[(7, 7)] = sy;
        let mut mean = t * self.mean;
        mean[0] = p0.0;
        mean[1] = p0.1;
        self.mean = mean;
        self.cov = t * self.cov * t.transpose();
        true
    }

    fn shift(&mut self, dx: f32, dy: f32) {
        self.mean[0] += dx;
        self.mean[1] += dy;
    }

    fn update(&mut self, b: &BBox) {
        let z = xyah(b);
        let h = self.mean[3];
        let mut hm = M48::zeros();
        for i in 0..4 {
            hm[(i, i)] = 1.0;
        }
        let std = [W_POS * h, W_POS * h, 1e-1, W_POS * h];
        let r = M4::from_diagonal(&V4::from_iterator(std.iter().map(|s| s * s)));
        let s = hm * self.cov * hm.transpose() + r;
        let Some(s_inv) = s.try_inverse() else {
            *self = Kalman::new(b);
            return;
        };
        let k = self.cov * hm.transpose() * s_inv;
        self.mean += k * (z - hm * self.mean);
        self.cov -= k * s * k.transpose();
    }
}

#[derive(Debug, Clone)]
struct TrackState_ {
    track: Track,
    kf: Kalman,
}

/// The detector interval assumed until two detector frames have been
/// seen (ms): only camera frames before the second detector frame use it.
pub const DEFAULT_STEP_MS: f32 = 1_000.0;

/// Weight of the newest interval in the running mean of the detector's
/// interval (the filter's unit of time).
const STEP_EMA_WEIGHT: f32 = 0.2;

/// The tracks' state at one moment: what [`Tracker::checkpoint`] saves and
/// [`Tracker::rewind`] restores (ids issued, detector frames counted and
/// the detector interval are not part of it: they only go forward).
#[derive(Debug, Clone)]
pub struct TrackerCheckpoint {
    tracks: Vec<TrackState_>,
    t_unix_ms: Option<i64>,
    moved: bool,
}

/// The tracker.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackerConfig,
    /// Class threshold per class id (high-score cut).
    class_thresholds: Vec<f32>,
    tracks: Vec<TrackState_>,
    next_id: u64,
    /// Detector frames seen.
    frames: u64,
    /// Time the tracks' state refers to.
    t_unix_ms: Option<i64>,
    /// Moved by camera motion since the last correction.
    moved: bool,
    /// The filter's unit of time: running mean of the detector interval (ms).
    step_ms: Option<f32>,
    last_detection_ms: Option<i64>,
}

impl Tracker {
    /// `class_thresholds[c]` is the score above which a class-`c`
    /// detection counts as "high" (the manifest's thresholds).
    pub fn new(config: TrackerConfig, class_thresholds: Vec<f32>) -> Self {
        Self {
            config,
            class_thresholds,
            tracks: Vec::new(),
            next_id: 1,
            frames: 0,
            t_unix_ms: None,
            moved: false,
            step_ms: None,
            last_detection_ms: None,
        }
    }

    /// Number of track ids handed out so far.
    pub fn ids_issued(&self) -> u64 {
        self.next_id - 1
    }

    /// The filter's unit of time: the running mean of the interval
    /// between detector frames (ms), once two have been seen.
    pub fn step_ms(&self) -> Option<f32> {
        self.step_ms
    }

    /// Every live track as it stands (at the time of the last
    /// [`Tracker::predict_to`] or [`Tracker::correct`]).
    pub fn tracks(&self) -> Vec<Track> {
        self.tracks.iter().map(|t| t.track).collect()
    }

    /// Save the tracks' state (see [`TrackerCheckpoint`]).
    pub fn checkpoint(&self) -> TrackerCheckpoint {
        TrackerCheckpoint {
            tracks: self.tracks.clone(),
            t_unix_ms: self.t_unix_ms,
            moved: self.moved,
        }
    }

    /// Go back to a saved state (ids already issued stay issued).
    pub fn rewind(&mut self, cp: TrackerCheckpoint) {
        self.tracks = cp.tracks;
        self.t_unix_ms = cp.t_unix_ms;
        self.moved = cp.moved;
    }

    fn is_high(&self, d: &Detection) -> bool {
        let t = self.config.high_score.unwrap_or_else(|| {
            self.class_thresholds
                .get(d.class_id)
                .copied()
                .unwrap_or(0.5)
        });
        d.score >= t
    }

    /// Feed one frame's detections (all scores down to the low floor);
    /// returns every live track (tentative ones included; use
    /// [`Track::confirmed`] and [`TrackState`] to filter).
    pub fn update(&mut self, detections: &[Detection], t_unix_ms: i64) -> Vec<Track> {
        self.update_with_motion(detections, t_unix_ms, None)
    }

    /// [`Tracker::update`] for a moving camera: `motion` maps a pixel of
    /// the previous frame to where the same ground point is in this one
    /// (`None` for a pixel it cannot map). See the module doc. The same
    /// as [`Tracker::predict_to`] then [`Tracker::correct`].
    pub fn update_with_motion(
        &mut self,
        detections: &[Detection],
        t_unix_ms: i64,
        motion: Option<CameraMotion<'_>>,
    ) -> Vec<Track> {
        // The interval first, so that this frame's prediction is one step.
        self.note_detector_frame(t_unix_ms);
        self.predict_to(t_unix_ms, motion);
        self.correct(detections, t_unix_ms)
    }

    /// Move every track to a camera frame at `t_unix_ms`: through the
    /// camera motion from the tracks' current frame to that one (when
    /// given), then the Kalman prediction over the time in between (a
    /// fraction of the detector interval; none when `t_unix_ms` is not
    /// later). No detections: nothing is matched, missed or born. Each
    /// track's box becomes its prediction in that frame.
    ///
    /// Tracks are forgotten here only when the detector has gone silent:
    /// no detector frame for [`Tracker::silence_ms`], which a slow
    /// detector's own pace never reaches (a stalled one would otherwise
    /// leave its last tracks drifting, counted by the rules, for ever).
    pub fn predict_to(&mut self, t_unix_ms: i64, motion: Option<CameraMotion<'_>>) -> Vec<Track> {
        let dt = self.t_unix_ms.map_or(0, |t0| t_unix_ms - t0).max(0) as f32;
        let steps = dt / self.step_ms.unwrap_or(DEFAULT_STEP_MS);
        for t in &mut self.tracks {
            if let Some(m) = motion {
                t.kf.warp(m);
            }
            if steps > 0.0 {
                t.kf.predict(steps);
            }
            t.track.bbox = bbox_of(&t.kf.mean);
        }
        if motion.is_some() {
            self.moved = true;
        }
        if self
            .last_detection_ms
            .is_some_and(|d| t_unix_ms - d > self.silence_ms())
        {
            self.tracks.clear();
        }
        self.t_unix_ms = Some(t_unix_ms);
        self.tracks()
    }

    /// How long after the last detector frame [`Tracker::predict_to`]
    /// takes the detector for silent and forgets every track:
    /// `max_lost_ms`, or `max_lost_frames + 3` detector intervals when that
    /// is longer.
    pub fn silence_ms(&self) -> i64 {
        let step = self.step_ms.unwrap_or(DEFAULT_STEP_MS);
        (self.config.max_lost_ms as f32)
            .max(step * (self.config.max_lost_frames + 3) as f32)
            .round() as i64
    }

    /// A detector frame at `t_unix_ms`: update the running mean of the
    /// detector interval (the filter's unit of time; velocities are
    /// re-expressed in the new unit). Idempotent for one frame.
    fn note_detector_frame(&mut self, t_unix_ms: i64) {
        let Some(prev) = self.last_detection_ms else {
            self.last_detection_ms = Some(t_unix_ms);
            return;
        };
        if t_unix_ms <= prev {
            return;
        }
        self.last_detection_ms = Some(t_unix_ms);
        let dt = (t_unix_ms - prev) as f32;
        match self.step_ms {
            // The first interval defines the unit: what the tracks hold
            // is "per detector frame" already.
            None => self.step_ms = Some(dt),
            Some(old) => {
                let new = old + STEP_EMA_WEIGHT * (dt - old);
                for t in &mut self.tracks {
                    t.kf.rescale_velocity(new / old);
                }
                self.step_ms = Some(new);
            }
        }
    }

    /// Apply one detector frame's detections to the tracks as they stand
    /// (already moved to that frame with [`Tracker::predict_to`]): the
    /// residual camera shift (when camera motion moved them), the three
    /// association passes, misses (a lost track is forgotten after
    /// `max_lost_ms` and `max_lost_frames` detector frames), births.
    pub fn correct(&mut self, detections: &[Detection], t_unix_ms: i64) -> Vec<Track> {
        self.note_detector_frame(t_unix_ms);
        self.frames += 1;
        self.t_unix_ms = Some(t_unix_ms);
        let (high, low): (Vec<&Detection>, Vec<&Detection>) =
            detections.iter().partition(|d| self.is_high(d));
        if std::mem::take(&mut self.moved) && self.config.cmc_search_px > 0.0 {
            let shift = self.residual_shift(&high);
            tracing::debug!(
                ?shift,
                tracks = self.tracks.len(),
                "tracker: residual camera shift"
            );
            if let Some((dx, dy)) = shift {
                for t in &mut self.tracks {
                    t.kf.shift(dx, dy);
                }
            }
        }

        // Pass 1: high-score detections against confirmed (tracked or lost) tracks.
        let confirmed: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| self.tracks[i].track.confirmed)
            .collect();
        let (m1, unmatched_tracks, unmatched_high) =
            self.associate(&confirmed, &high, self.config.match_iou);
        let mut matched_now = vec![false; self.tracks.len()];
        for (ti, di) in m1 {
            self.apply(ti, high[di], t_unix_ms);
            matched_now[ti] = true;
        }

        // Pass 2 (ByteTrack): low-score detections keep tracked tracks alive.
        let still: Vec<usize> = unmatched_tracks
            .into_iter()
            .filter(|&i| self.tracks[i].track.state == TrackState::Tracked)
            .collect();
        let (m2, _, _) = self.associate(&still, &low, self.config.low_match_iou);
        for (ti, di) in m2 {
            self.apply(ti, low[di], t_unix_ms);
            matched_now[ti] = true;
        }

        // Pass 3: remaining high detections against tentative tracks.
        let tentative: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| !self.tracks[i].track.confirmed)
            .collect();
        let rest: Vec<&Detection> = unmatched_high.iter().map(|&i| high[i]).collect();
        let (m3, _, unmatched_rest) = self.associate(&tentative, &rest, self.config.match_iou);
        for (ti, di) in m3 {
            self.apply(ti, rest[di], t_unix_ms);
            matched_now[ti] = true;
        }

        // Unmatched: tentative tracks die at once, others become lost.
        let cfg = self.config;
        let mut keep = Vec::with_capacity(self.tracks.len());
        for (i, mut t) in std::mem::take(&mut self.tracks).into_iter().enumerate() {
            if !matched_now[i] {
                if !t.track.confirmed {
                    continue;
                }
                t.track.state = TrackState::Lost;
                t.track.bbox = bbox_of(&t.kf.mean);
                t.track.missed += 1;
                if t_unix_ms - t.track.last_seen_unix_ms > cfg.max_lost_ms
                    && t.track.missed > cfg.max_lost_frames
                {
                    continue;
                }
            } else {
                t.track.missed = 0;
            }
            keep.push(t);
        }
        self.tracks = keep;

        // New tracks from good unmatched high detections.
        let first_frame = self.frames == 1;
        for &di in &unmatched_rest {
            let d = rest[di];
            if d.score < cfg.new_track_score {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let confirmed = first_frame || cfg.confirm_hits <= 1;
            self.tracks.push(TrackState_ {
                track: Track {
                    id,
                    class_id: d.class_id,
                    bbox: d.bbox,
                    score: d.score,
                    score_ema: d.score,
                    state: if confirmed {
                        TrackState::Tracked
                    } else {
                        TrackState::Tentative
                    },
                    hits: 1,
                    first_seen_unix_ms: t_unix_ms,
                    last_seen_unix_ms: t_unix_ms,
                    confirmed,
                    missed: 0,
                },
                kf: Kalman::new(&d.bbox),
            });
        }
        self.tracks.iter().map(|t| t.track).collect()
    }

    fn apply(&mut self, ti: usize, d: &Detection, t_unix_ms: i64) {
        let cfg = self.config;
        let t = &mut self.tracks[ti];
        t.kf.update(&d.bbox);
        t.track.bbox = d.bbox;
        t.track.score = d.score;
        t.track.score_ema += SCORE_EMA_WEIGHT * (d.score - t.track.score_ema);
        t.track.hits += 1;
        t.track.last_seen_unix_ms = t_unix_ms;
        if !t.track.confirmed && t.track.hits >= cfg.confirm_hits {
            t.track.confirmed = true;
        }
        t.track.state = if t.track.confirmed {
            TrackState::Tracked
        } else {
            TrackState::Tentative
        };
    }

    /// The translation most (track prediction → same-class high detection)
    /// pairs within `cmc_search_px` agree on, to within `cmc_vote_px`; the
    /// mean of the agreeing offsets. Needs two votes when two or more tracks
    /// have a candidate (one lone pair is taken as it is).
    fn residual_shift(&self, high: &[&Detection]) -> Option<(f32, f32)> {
        let r2 = self.config.cmc_search_px.powi(2);
        let mut offsets = Vec::new();
        let mut tracks_with_candidates = 0;
        for t in &self.tracks {
            let (tx, ty) = bbox_of(&t.kf.mean).center();
            let before = offsets.len();
            for d in high.iter().filter(|d| d.class_id == t.track.class_id) {
                let (dx, dy) = d.bbox.center();
                let o = (dx - tx, dy - ty);
                if o.0 * o.0 + o.1 * o.1 <= r2 {
                    offsets.push(o);
                }
            }
            if offsets.len() > before {
                tracks_with_candidates += 1;
            }
        }
        let v2 = self.config.cmc_vote_px.powi(2);
        let near = |a: (f32, f32), b: (f32, f32)| (a.0 - b.0).powi(2) + (a.1 - b.1).powi(2) <= v2;
        let best = offsets
            .iter()
            .map(|&o| (offsets.iter().filter(|&&p| near(o, p)).count(), o))
            .max_by(|a, b| {
                a.0.cmp(&b.0).then_with(|| {
                    // Ties: the smaller shift.
                    let n = |o: (f32, f32)| o.0 * o.0 + o.1 * o.1;
                    n(b.1).total_cmp(&n(a.1))
                })
            })?;
        let needed = tracks_with_candidates.min(2);
        if best.0 < needed {
            return None;
        }
        let inliers: Vec<_> = offsets.iter().filter(|&&p| near(best.1, p)).collect();
        let n = inliers.len() as f32;
        Some((
            inliers.iter().map(|o| o.0).sum::<f32>() / n,
            inliers.iter().map(|o| o.1).sum::<f32>() / n,
        ))
    }

    /// Optimal assignment between tracks (indices into `self.tracks`) and
    /// detections, maximising total IoU; pairs below `min_iou` or of
    /// different classes never match. Returns (matches as (track index,
    /// detection index)), unmatched track indices, unmatched detection
    /// indices.
    fn associate(
        &self,
        tracks: &[usize],
        dets: &[&Detection],
        min_iou: f32,
    ) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
        if tracks.is_empty() || dets.is_empty() {
            return (vec![], tracks.to_vec(), (0..dets.len()).collect());
        }
        let scale = 1_000_000.0;
        let iou = |ti: usize, di: usize| -> i64 {
            let t = &self.tracks[tracks[ti]];
            let d = dets[di];
            if t.track.class_id != d.class_id {
                return 0;
            }
            let v = bbox_of(&t.kf.mean).iou(&d.bbox);
            if v >= min_iou {
                (v * scale) as i64
            } else {
                0
            }
        };
        // kuhn_munkres needs rows <= columns.
        let transpose = tracks.len() > dets.len();
        let (rows, cols) = if transpose {
            (dets.len(), tracks.len())
        } else {
            (tracks.len(), dets.len())
        };
        let mut w = Matrix::new(rows, cols, 0i64);
        for r in 0..rows {
            for c in 0..cols {
                w[(r, c)] = if transpose { iou(c, r) } else { iou(r, c) };
            }
        }
        let (_, assign) = pathfinding::kuhn_munkres::kuhn_munkres(&w);
        let mut matches = Vec::new();
        let mut t_used = vec![false; tracks.len()];
        let mut d_used = vec![false; dets.len()];
        for (r, &c) in assign.iter().enumerate() {
            if w[(r, c)] <= 0 {
                continue;
            }
            let (ti, di) = if transpose { (c, r) } else { (r, c) };
            t_used[ti] = true;
            d_used[di] = true;
            matches.push((tracks[ti], di));
        }
        let ut = (0..tracks.len())
            .filter(|&i| !t_used[i])
            .map(|i| tracks[i])
            .collect();
        let ud = (0..dets.len()).filter(|&i| !d_used[i]).collect();
        (matches, ut, ud)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, y: f32, s: f32) -> Detection {
        Detection {
            bbox: BBox::new(x, y, x + 20.0, y + 50.0),
            score: s,
            class_id: 0,
        }
    }

    fn tracker() -> Tracker {
        Tracker::new(TrackerConfig::default(), vec![0.5, 0.5])
    }

    #[test]
    fn two_walkers_keep_their_ids_when_crossing_paths() {
        let mut t = tracker();
        let mut ids_a = vec![];
        let mut ids_b = vec![];
        for f in 0..40 {
            let xa = 10.0 + f as f32 * 5.0;
            let xb = 210.0 - f as f32 * 5.0;
            // b walks a little lower so the boxes overlap but stay distinct.
            let tracks = t.update(&[det(xa, 100.0, 0.9), det(xb, 110.0, 0.8)], f * 100);
            let live: Vec<_> = tracks
                .iter()
                .filter(|t| t.state == TrackState::Tracked)
                .collect();
            assert_eq!(live.len(), 2, "frame {f}: {tracks:?}");
            // a walks at y = 100, b at y = 110: tell them apart by height.
            let a = live.iter().find(|t| t.bbox.y1 == 100.0).unwrap();
            let b = live.iter().find(|t| t.bbox.y1 == 110.0).unwrap();
            assert!((a.bbox.x1 - xa).abs() < 1e-3 && (b.bbox.x1 - xb).abs() < 1e-3);
            ids_a.push(a.id);
            ids_b.push(b.id);
        }
        ids_a.dedup();
        ids_b.dedup();
        assert_eq!(ids_a.len(), 1, "{ids_a:?}");
        assert_eq!(ids_b.len(), 1, "{ids_b:?}");
        assert_eq!(t.ids_issued(), 2);
    }

    #[test]
    fn low_score_detections_keep_a_track_but_never_start_one() {
        let mut t = tracker();
        for f in 0..5 {
            t.update(&[det(100.0 + f as f32 * 2.0, 100.0, 0.9)], f * 100);
        }
        // Partly occluded: score drops below the high threshold.
        for f in 5..10 {
            let tracks = t.update(&[det(100.0 + f as f32 * 2.0, 100.0, 0.2)], f * 100);
            assert_eq!(tracks.len(), 1);
            assert_eq!(tracks[0].state, TrackState::Tracked, "frame {f}");
            assert_eq!(tracks[0].id, 1);
        }
        // A lone low-score detection elsewhere starts nothing.
        let tracks = t.update(
            &[det(100.0 + 20.0, 100.0, 0.9), det(400.0, 300.0, 0.3)],
            1000,
        );
        assert_eq!(tracks.len(), 1);
        assert_eq!(t.ids_issued(), 1);
        // The running score remembers the weak spell.
        let mut ema = 0.9f32;
        for s in [0.9, 0.9, 0.9, 0.9, 0.2, 0.2, 0.2, 0.2, 0.2, 0.9] {
            ema += SCORE_EMA_WEIGHT * (s - ema);
        }
        assert!(
            (tracks[0].score_ema - ema).abs() < 1e-5,
            "{} vs {ema}",
            tracks[0].score_ema
        );
        assert!(tracks[0].score_ema < 0.6);
    }

    #[test]
    fn a_missed_detection_is_bridged_by_prediction_and_lost_tracks_expire() {
        let mut t = tracker();
        for f in 0..10 {
            t.update(&[det(100.0 + f as f32 * 8.0, 100.0, 0.9)], f * 100);
        }
        // Three frames without a detection: the track is lost, predicted on.
        for f in 10..13 {
            let tracks = t.update(&[], f * 100);
            assert_eq!(tracks[0].state, TrackState::Lost);
            assert!(
                (tracks[0].bbox.x1 - (100.0 + f as f32 * 8.0)).abs() < 6.0,
                "{:?}",
                tracks[0].bbox
            );
        }
        // It reappears where the motion model says: same id.
        let tracks = t.update(&[det(100.0 + 13.0 * 8.0, 100.0, 0.9)], 1300);
        assert_eq!(
            (tracks.len(), tracks[0].id, tracks[0].state),
            (1, 1, TrackState::Tracked)
        );
        // Gone for longer than max_lost_ms: kept while it has missed at
        // most max_lost_frames frames (a slow eye), then forgotten.
        assert_eq!(t.update(&[], 1300 + 2_001).len(), 1);
        assert_eq!(t.update(&[], 1300 + 2_002).len(), 1);
        assert!(t.update(&[], 1300 + 2_003).is_empty());
    }

    /// A gathering of six standing people seen from a drone at 0.6 fps:
    /// the image moves 365 px between frames, plus a shift of up to ±30 px
    /// the pose does not explain (attitude noise). With the camera motion
    /// the six tracks confirm and keep their ids; without it none ever
    /// confirms.
    #[test]
    fn camera_motion_keeps_ids_across_large_image_shifts() {
        let people: Vec<(f32, f32)> = (0..6)
            .map(|i| (40.0 * (i % 3) as f32, 60.0 * (i / 3) as f32))
            .collect();
        let noise = [
            (0.0, 0.0),
            (25.0, -18.0),
            (-30.0, 12.0),
            (8.0, 29.0),
            (-22.0, -25.0),
        ];
        let frame = |k: usize| -> Vec<Detection> {
            // The drone flies "up" the image: ground points move down.
            let (nx, ny) = noise[k];
            people
                .iter()
                .map(|&(x, y)| det(300.0 + x + nx, 20.0 + y + 365.0 * k as f32 + ny, 0.9))
                .collect()
        };
        let dt = 1_700;
        let motion = |x: f32, y: f32| Some((x, y + 365.0));
        let mut with = tracker();
        let mut without = tracker();
        // The first frame confirms at once (first frame); start one later
        // so that confirmation has to be earned.
        with.update(&[], 0);
        without.update(&[], 0);
        let mut ids_with = std::collections::BTreeSet::new();
        let mut confirmed_without = 0;
        for k in 0..5 {
            let tw = with.update_with_motion(&frame(k), (k as i64 + 1) * dt, Some(&motion));
            if k >= 1 {
                assert_eq!(tw.len(), 6, "frame {k}: {tw:?}");
                assert!(tw
                    .iter()
                    .all(|t| t.confirmed && t.state == TrackState::Tracked));
            }
            ids_with.extend(tw.iter().map(|t| t.id));
            let to = without.update(&frame(k), (k as i64 + 1) * dt);
            confirmed_without += to.iter().filter(|t| t.confirmed).count();
        }
        assert_eq!(ids_with.len(), 6, "one id per person: {ids_with:?}");
        assert_eq!(confirmed_without, 0, "plain IoU cannot follow 365 px");
    }

    /// The state follows a zoom: twice the scale about the image origin
    /// doubles the box and its velocity.
    #[test]
    fn kalman_warp_follows_scale_and_refuses_bad_maps() {
        let b = BBox::from_cxcywh(100.0, 50.0, 20.0, 40.0);
        let mut k = Kalman::new(&b);
        k.mean[4] = 3.0;
        assert!(k.warp(&|x, y| Some((2.0 * x, 2.0 * y))));
        let w = bbox_of(&k.mean);
        assert!((w.center().0 - 200.0).abs() < 1e-3 && (w.center().1 - 100.0).abs() < 1e-3);
        assert!((w.height() - 80.0).abs() < 1e-3 && (w.width() - 40.0).abs() < 1e-3);
        assert!((k.mean[4] - 6.0).abs() < 1e-4);
        let before = k.mean;
        assert!(!k.warp(&|_, _| None));
        assert!(!k.warp(&|x, _| Some((x, 0.0))), "a degenerate map");
        assert_eq!(k.mean, before);
    }

    /// Camera frames between detector frames move the tracks (camera
    /// motion, then the velocity learnt) and never count as misses, however
    /// slow the detector; a detector gone silent lets them go.
    #[test]
    fn camera_frames_move_tracks_without_counting_misses() {
        let mut t = tracker();
        // A walker, 10 px per 500 ms detector frame, and a person standing.
        for f in 0..12 {
            t.update(
                &[
                    det(100.0 + f as f32 * 10.0, 100.0, 0.9),
                    det(400.0, 300.0, 0.9),
                ],
                f * 500,
            );
        }
        assert_eq!(t.step_ms(), Some(500.0));
        let start = t.tracks();
        // 24 camera frames at 100 ms (2.4 s: past max_lost_ms, within
        // max_lost_frames + 3 = 5 detector intervals); the camera pans so
        // that the ground moves 5 px left a frame.
        assert_eq!(t.silence_ms(), 2_500);
        let pan = |x: f32, y: f32| Some((x - 5.0, y));
        let mut walked = 0.0;
        for k in 1..=24 {
            let tr = t.predict_to(5_500 + k * 100, Some(&pan));
            assert_eq!(tr.len(), 2);
            for (a, b) in tr.iter().zip(&start) {
                assert_eq!((a.id, a.state, a.missed), (b.id, TrackState::Tracked, 0));
            }
            // The standing person moves with the camera only.
            let still = tr[1].bbox.x1 - (start[1].bbox.x1 - 5.0 * k as f32);
            assert!(still.abs() < 0.5, "frame {k}: {still}");
            // The walker also walks on (at most 2 px a frame, its pace).
            let w = tr[0].bbox.x1 - (start[0].bbox.x1 - 5.0 * k as f32);
            assert!(w > walked && w <= 2.0 * k as f32 + 0.5, "frame {k}: {w}");
            walked = w;
        }
        // The next detector frame finds both where the predictions are.
        let now = t.tracks();
        let d: Vec<Detection> = now
            .iter()
            .map(|t| det(t.bbox.x1 + 1.0, t.bbox.y1, 0.9))
            .collect();
        let tr = t.correct(&d, 7_900);
        assert_eq!(tr.len(), 2);
        assert!(tr.iter().all(|t| t.state == TrackState::Tracked), "{tr:?}");
        assert_eq!(t.ids_issued(), 2);
        // The detector falls silent: the tracks go once it has been silent
        // for longer than that (not before).
        let silence = t.silence_ms();
        assert_eq!(t.predict_to(7_900 + silence, Some(&pan)).len(), 2);
        assert!(t.predict_to(7_900 + silence + 100, Some(&pan)).is_empty());
    }

    /// Predicting in pieces (camera frames) adds up to one detector step:
    /// the same detections give (almost) the same tracks.
    #[test]
    fn predictions_in_pieces_add_up_to_one_step() {
        let mut whole = tracker();
        let mut pieces = tracker();
        for f in 0..8i64 {
            let d = [det(100.0 + f as f32 * 12.0, 100.0 + f as f32 * 3.0, 0.9)];
            let a = whole.update(&d, f * 500);
            for k in 1..5 {
                pieces.predict_to(f * 500 - 500 + k * 100, None);
            }
            let b = pieces.update(&d, f * 500);
            assert_eq!(a.len(), b.len());
            for (a, b) in a.iter().zip(&b) {
                assert_eq!((a.id, a.state), (b.id, b.state));
            }
        }
        let (a, b) = (
            whole.predict_to(4_000, None),
            pieces.predict_to(4_000, None),
        );
        let (ac, bc) = (a[0].bbox.center(), b[0].bbox.center());
        assert!(
            (ac.0 - bc.0).abs() < 0.5 && (ac.1 - bc.1).abs() < 0.5,
            "{ac:?} vs {bc:?}"
        );
    }

    #[test]
    fn classes_do_not_mix_and_one_frame_blips_never_confirm() {
        let mut t = tracker();
        t.update(&[det(0.0, 0.0, 0.9)], 0);
        let mut car = det(0.0, 0.0, 0.9);
        car.class_id = 1;
        // Same place, other class: the person is lost, a car track starts.
        let tracks = t.update(&[car], 100);
        assert_eq!(tracks.len(), 2);
        assert!(tracks
            .iter()
            .any(|t| t.class_id == 1 && t.state == TrackState::Tentative));
        // A blip that does not come back is dropped without ever confirming.
        let tracks = t.update(&[det(0.0, 0.0, 0.9)], 200);
        assert!(tracks.iter().all(|t| t.class_id == 0), "{tracks:?}");
    }
}
