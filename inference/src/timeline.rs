//! Tracks at the camera's pace, detections at the model's.
//!
//! The detector takes 0.1-1.5 s a frame; the camera delivers 10-30 frames
//! a second. [`TrackTimeline`] moves the tracks to every camera frame
//! ([`TrackTimeline::advance`]: camera motion from the previous frame's
//! pose to this one's through the ground plane, then the Kalman
//! prediction; see [`Tracker::predict_to`]) and keeps a checkpoint of the
//! tracks at each frame since the last detector result.
//!
//! **Late detections.** A detector result is for frame k, which the
//! camera delivered a few frames ago. It is applied in frame k's own
//! geometry ([`TrackTimeline::detections`]): rewind to the checkpoint of
//! frame k, associate and correct there (IoU between boxes of one and the
//! same picture), then replay the camera frames after k (camera motion
//! and prediction again, from the corrected state) up to the newest. The
//! other way, moving frame k's detections forward to the newest frame and
//! associating there, would compare boxes across the people's own motion
//! in between and update the filter with a measurement at the wrong time;
//! the replay costs a few reprojections per track and frame (see
//! docs/benchmarks/inference.md).
//!
//! Results must come in frame order (one detector thread). Checkpoints
//! before the last applied result are dropped; the history is capped at
//! `capacity` frames. A result for a frame with no checkpoint (the camera
//! frame was dropped, or is older than the history) starts from the
//! nearest checkpoint before it, moved to its geometry (or, older than
//! all, from the oldest one moved back; there is no prediction backwards
//! in time). A result for a frame newer than the newest camera frame
//! first advances the timeline to it.
//!
//! Pure logic, generic over the frame geometry ([`FrameGeometry`],
//! implemented by [`crate::geotag::FrameGeo`]).

use std::collections::VecDeque;

use crate::decode::{BBox, Detection};
use crate::tracker::{Track, Tracker, TrackerCheckpoint};

/// What the timeline needs of a frame's camera geometry.
pub trait FrameGeometry: Clone {
    /// Where this frame's pixel `(x, y)` appears in `other` (through the
    /// ground point it sees); `None` where it cannot say.
    fn reproject_into(&self, other: &Self, x: f32, y: f32) -> Option<(f32, f32)>;
}

impl FrameGeometry for crate::geotag::FrameGeo {
    fn reproject_into(&self, other: &Self, x: f32, y: f32) -> Option<(f32, f32)> {
        crate::geotag::FrameGeo::reproject_into(self, other, x, y)
    }
}

/// A box of one frame moved into another through the camera motion: its
/// centre mapped, its size kept. `None` where the centre cannot be mapped.
pub fn move_box<G: FrameGeometry>(b: &BBox, from: &G, to: &G) -> Option<BBox> {
    let (cx, cy) = b.center();
    let (x, y) = from.reproject_into(to, cx, cy)?;
    Some(BBox::from_cxcywh(x, y, b.width(), b.height()))
}

struct Moment<G> {
    seq: u64,
    t_unix_ms: i64,
    geo: Option<G>,
    /// Measured on the pictures: the image shift into this frame that the
    /// poses missed ([`crate::image_motion`]), frame pixels.
    shift: (f32, f32),
    state: TrackerCheckpoint,
}

/// Counters of a timeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimelineStats {
    /// Camera frames advanced through.
    pub frames: u64,
    /// Detector results applied.
    pub results: u64,
    /// …of which arrived after a newer camera frame (applied in the past).
    pub late_results: u64,
    /// Camera frames replayed after late results.
    pub replayed: u64,
    /// Results whose frame had no checkpoint.
    pub without_checkpoint: u64,
}

/// The tracker with a checkpoint per camera frame. See the module doc.
pub struct TrackTimeline<G> {
    tracker: Tracker,
    moments: VecDeque<Moment<G>>,
    capacity: usize,
    stats: TimelineStats,
}

type Motion<'a> = Box<dyn Fn(f32, f32) -> Option<(f32, f32)> + 'a>;

/// The camera motion into a frame: through the ground plane when both
/// frames have a pose, plus the shift the pictures show beyond it (alone
/// when a pose is missing); none when neither says anything.
fn motion_between<'a, G: FrameGeometry>(
    from: Option<&'a G>,
    to: Option<&'a G>,
    shift: (f32, f32),
) -> Option<Motion<'a>> {
    let (sx, sy) = shift;
    match (from, to) {
        (Some(a), Some(b)) => Some(Box::new(move |x: f32, y: f32| {
            a.reproject_into(b, x, y).map(|(x, y)| (x + sx, y + sy))
        })),
        _ if shift != (0.0, 0.0) => Some(Box::new(move |x: f32, y: f32| Some((x + sx, y + sy)))),
        _ => None,
    }
}

impl<G: FrameGeometry> TrackTimeline<G> {
    /// `capacity`: most camera frames kept (at least 1).
    pub fn new(tracker: Tracker, capacity: usize) -> Self {
        Self {
            tracker,
            moments: VecDeque::new(),
            capacity: capacity.max(1),
            stats: TimelineStats::default(),
        }
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn stats(&self) -> TimelineStats {
        self.stats
    }

    /// The newest frame (sequence number), if any.
    pub fn head(&self) -> Option<u64> {
        self.moments.back().map(|m| m.seq)
    }

    /// Frames (checkpoints) held.
    pub fn len(&self) -> usize {
        self.moments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.moments.is_empty()
    }

    /// The geometry recorded for frame `seq`: `None` when the frame is not
    /// held, `Some(None)` when it was held without a pose.
    pub fn geo_of(&self, seq: u64) -> Option<Option<&G>> {
        self.moments
            .iter()
            .rev()
            .find(|m| m.seq == seq)
            .map(|m| m.geo.as_ref())
    }

    /// The tracks at the newest frame.
    pub fn tracks(&self) -> Vec<Track> {
        self.tracker.tracks()
    }

    /// A camera frame: move the tracks to it (camera motion from the
    /// previous frame, prediction over the time between). Returns the
    /// tracks in this frame, or `None` for a frame not newer than the
    /// newest (nothing changes).
    pub fn advance(&mut self, seq: u64, t_unix_ms: i64, geo: Option<G>) -> Option<Vec<Track>> {
        self.advance_with_shift(seq, t_unix_ms, geo, (0.0, 0.0))
    }

    /// [`TrackTimeline::advance`] with the image shift into this frame
    /// that the poses missed (measured on the pictures,
    /// [`crate::image_motion`]); it is applied again when the frame is
    /// replayed.
    pub fn advance_with_shift(
        &mut self,
        seq: u64,
        t_unix_ms: i64,
        geo: Option<G>,
        shift: (f32, f32),
    ) -> Option<Vec<Track>> {
        if self.head().is_some_and(|h| seq <= h) {
            return None;
        }
        {
            let prev = self.moments.back().and_then(|m| m.geo.as_ref());
            let motion = motion_between(prev, geo.as_ref(), shift);
            self.tracker.predict_to(t_unix_ms, motion.as_deref());
        }
        self.moments.push_back(Moment {
            seq,
            t_unix_ms,
            geo,
            shift,
            state: self.tracker.checkpoint(),
        });
        while self.moments.len() > self.capacity {
            self.moments.pop_front();
        }
        self.stats.frames += 1;
        Some(self.tracker.tracks())
    }

    /// The detector's result for frame `seq` (captured at `t_unix_ms`,
    /// camera geometry `geo`): applied in that frame, then carried forward
    /// to the newest frame (see the module doc). Returns the tracks in
    /// frame `seq` just after the correction; [`TrackTimeline::tracks`]
    /// has them at the newest frame.
    pub fn detections(
        &mut self,
        seq: u64,
        t_unix_ms: i64,
        geo: Option<G>,
        detections: &[Detection],
    ) -> Vec<Track> {
        self.stats.results += 1;
        if self.head().is_none_or(|h| seq > h) {
            self.advance(seq, t_unix_ms, geo);
            let tracks = self.tracker.correct(detections, t_unix_ms);
            let last = self.moments.len() - 1;
            self.moments.drain(..last);
            if let Some(m) = self.moments.back_mut() {
                m.state = self.tracker.checkpoint();
            }
            return tracks;
        }
        self.stats.late_results += 1;
        // Frames after `seq` are replayed; the checkpoint to start from is
        // frame `seq` itself, else the newest before it, else the oldest
        // held (moved back).
        let cut = self
            .moments
            .iter()
            .position(|m| m.seq > seq)
            .unwrap_or(self.moments.len());
        let later: Vec<Moment<G>> = self.moments.drain(cut..).collect();
        let base = match self.moments.pop_back() {
            Some(m) => m,
            None => {
                let m = &later[0];
                Moment {
                    seq: m.seq,
                    t_unix_ms: m.t_unix_ms,
                    geo: m.geo.clone(),
                    shift: m.shift,
                    state: m.state.clone(),
                }
            }
        };
        // Results come in frame order: nothing before `seq` is needed again.
        self.moments.clear();
        self.tracker.rewind(base.state);
        let geo = if base.seq == seq {
            base.geo
        } else {
            self.stats.without_checkpoint += 1;
            {
                let motion = motion_between(base.geo.as_ref(), geo.as_ref(), (0.0, 0.0));
                self.tracker.predict_to(t_unix_ms, motion.as_deref());
            }
            geo
        };
        let tracks = self.tracker.correct(detections, t_unix_ms);
        self.moments.push_back(Moment {
            seq,
            t_unix_ms,
            geo,
            shift: if base.seq == seq {
                base.shift
            } else {
                (0.0, 0.0)
            },
            state: self.tracker.checkpoint(),
        });
        for mut m in later {
            {
                let prev = self.moments.back().and_then(|p| p.geo.as_ref());
                let motion = motion_between(prev, m.geo.as_ref(), m.shift);
                self.tracker.predict_to(m.t_unix_ms, motion.as_deref());
            }
            m.state = self.tracker.checkpoint();
            self.moments.push_back(m);
            self.stats.replayed += 1;
        }
        while self.moments.len() > self.capacity {
            self.moments.pop_front();
        }
        tracks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{TrackState, TrackerConfig};

    /// A toy camera that pans over a flat world: a ground point `g` is at
    /// pixel `g − at` in a frame whose camera is at `at`.
    #[derive(Debug, Clone, Copy)]
    struct Pan {
        at: (f32, f32),
    }

    impl FrameGeometry for Pan {
        fn reproject_into(&self, other: &Self, x: f32, y: f32) -> Option<(f32, f32)> {
            Some((x + self.at.0 - other.at.0, y + self.at.1 - other.at.1))
        }
    }

    fn person(g: (f32, f32), cam: Pan) -> Detection {
        let (x, y) = (g.0 - cam.at.0, g.1 - cam.at.1);
        Detection {
            bbox: BBox::new(x - 10.0, y - 25.0, x + 10.0, y + 25.0),
            score: 0.9,
            class_id: 0,
        }
    }

    fn timeline() -> TrackTimeline<Pan> {
        TrackTimeline::new(Tracker::new(TrackerConfig::default(), vec![0.5, 0.5]), 64)
    }

    /// Frames at 10 fps from a camera panning 12 px a frame; the detector
    /// sees every `every`-th frame and its result arrives `delay` frames
    /// later. `walks`: each person's own velocity, px per frame.
    fn run(every: u64, delay: u64, walks: [(f32, f32); 3]) -> (Vec<f32>, TrackTimeline<Pan>) {
        let people = [(300.0, 200.0), (360.0, 210.0), (320.0, 280.0)];
        let cam = |k: u64| Pan {
            at: (12.0 * k as f32, 3.0 * k as f32),
        };
        let at = |i: usize, k: u64| {
            let (p, w) = (people[i], walks[i]);
            (p.0 + w.0 * k as f32, p.1 + w.1 * k as f32)
        };
        let mut tl = timeline();
        let mut pending: Vec<(u64, u64)> = Vec::new(); // (arrives at, frame)
        let mut errors = Vec::new();
        for k in 0..60u64 {
            // Results due now arrive before this frame.
            while let Some(&(due, f)) = pending.first() {
                if due > k {
                    break;
                }
                pending.remove(0);
                let dets: Vec<Detection> = (0..3).map(|i| person(at(i, f), cam(f))).collect();
                tl.detections(f, f as i64 * 100, Some(cam(f)), &dets);
            }
            let tracks = tl.advance(k, k as i64 * 100, Some(cam(k))).unwrap();
            if k.is_multiple_of(every) {
                pending.push((k + delay, k));
            }
            // Once every track is confirmed, each box must sit on its person.
            if k >= 3 * every + delay {
                assert_eq!(tracks.len(), 3, "frame {k}: {tracks:?}");
                for t in &tracks {
                    assert!(t.confirmed && t.state == TrackState::Tracked, "{t:?}");
                    assert_eq!(t.missed, 0);
                    let (cx, cy) = t.bbox.center();
                    let e = (0..3)
                        .map(|i| {
                            let g = at(i, k);
                            let c = cam(k);
                            ((g.0 - c.at.0) - cx).hypot((g.1 - c.at.1) - cy)
                        })
                        .fold(f32::INFINITY, f32::min);
                    errors.push(e);
                }
            }
        }
        (errors, tl)
    }

    #[test]
    fn boxes_follow_the_camera_between_late_detector_results() {
        // A fast detector (every frame, one frame late), the demo's pace
        // (every 5th, 3 late) and a slow one (1 fps, 7 late).
        for (every, delay) in [(1, 1), (5, 3), (10, 7)] {
            let (errors, tl) = run(every, delay, [(0.0, 0.0); 3]);
            let worst = errors.iter().copied().fold(0.0, f32::max);
            assert!(worst < 0.5, "every {every}, delay {delay}: {worst} px");
            assert_eq!(tl.tracker().ids_issued(), 3, "one id per person");
            let s = tl.stats();
            assert_eq!(s.frames, 60);
            assert!(s.late_results > 0 && s.replayed >= s.late_results * (delay - 1));
            assert_eq!(s.without_checkpoint, 0);
            // Checkpoints are kept only back to the last result.
            assert!(tl.len() <= (every + delay) as usize, "{}", tl.len());
        }
    }

    #[test]
    fn walkers_are_predicted_between_detector_results() {
        // People walking their own ways (a walk they all share would be
        // taken for camera error by the tracker's residual-shift vote), the
        // camera panning 12 px a frame: the filter learns each walk and
        // carries it between results. `v` px a frame: 15 px a detector
        // frame at 10 fps and 2 fps; at 1 fps 5 px (a 20 px wide person
        // walking 15 px a detector frame is lost by IoU before the
        // filter's velocity catches up: the ByteTrack constants learn
        // velocity slowly).
        for (every, delay, v) in [(1, 1, 1.5), (5, 3, 1.5), (10, 7, 0.5)] {
            let (errors, tl) = run(every, delay, [(v, 0.0), (-v, 0.0), (0.0, v)]);
            let mut sorted = errors.clone();
            sorted.sort_by(f32::total_cmp);
            let median = sorted[sorted.len() / 2];
            let worst = *sorted.last().unwrap();
            // Within what they walk in one detector interval.
            let step = v * every as f32;
            assert!(
                median < step.max(1.0) && worst < 2.0 * step.max(1.0),
                "every {every}, delay {delay}: median {median}, worst {worst} px"
            );
            assert_eq!(tl.tracker().ids_issued(), 3);
        }
    }

    #[test]
    fn a_result_without_its_camera_frame_or_ahead_of_the_camera_still_applies() {
        let cam = |k: u64| Pan {
            at: (10.0 * k as f32, 0.0),
        };
        let p = (400.0, 300.0);
        let mut tl = timeline();
        // Ahead of the camera: frame 0 was never advanced to.
        let t = tl.detections(0, 0, Some(cam(0)), &[person(p, cam(0))]);
        assert_eq!((t.len(), tl.head()), (1, Some(0)));
        for k in 1..=4 {
            tl.advance(k, k as i64 * 100, Some(cam(k)));
        }
        // Frame 5 was dropped before the tracker saw it; 6 and 7 came.
        for k in 6..=7 {
            tl.advance(k, k as i64 * 100, Some(cam(k)));
        }
        let t5 = tl.detections(5, 500, Some(cam(5)), &[person(p, cam(5))]);
        assert_eq!(t5.len(), 1);
        assert!(t5[0].confirmed, "second hit: {t5:?}");
        let (cx, _) = t5[0].bbox.center();
        assert!((cx - (p.0 - 50.0)).abs() < 0.5, "in frame 5's pixels: {cx}");
        assert_eq!(tl.stats().without_checkpoint, 1);
        // Carried to frame 7.
        let now = tl.tracks();
        assert!(
            (now[0].bbox.center().0 - (p.0 - 70.0)).abs() < 0.5,
            "{now:?}"
        );
        assert_eq!(tl.head(), Some(7));
        // A stale camera frame changes nothing.
        assert!(tl.advance(6, 600, Some(cam(6))).is_none());
        // Older than every frame held (checkpoints before the last
        // result are gone): applied from the oldest, moved back.
        let t3 = tl.detections(3, 300, Some(cam(3)), &[person(p, cam(3))]);
        assert!((t3[0].bbox.center().0 - (p.0 - 30.0)).abs() < 0.5, "{t3:?}");
        assert_eq!(tl.tracker().ids_issued(), 1);
        assert!((tl.tracks()[0].bbox.center().0 - (p.0 - 70.0)).abs() < 0.5);
    }

    #[test]
    fn the_history_is_capped() {
        let mut tl =
            TrackTimeline::<Pan>::new(Tracker::new(TrackerConfig::default(), vec![0.5]), 8);
        for k in 0..100 {
            tl.advance(k, k as i64 * 33, Some(Pan { at: (0.0, 0.0) }));
        }
        assert_eq!(tl.len(), 8);
        assert_eq!(tl.geo_of(99).map(|g| g.is_some()), Some(true));
        assert!(tl.geo_of(50).is_none());
    }
}
