//! What the outgoing video shows on top of the picture: the current
//! tracks (box, id, class), the open incidents' boxes and labels.
//!
//! The eye builds an [`OverlayState`] for a frame ([`overlay_state`],
//! pure) in that frame's pixel coordinates and publishes it on an
//! [`OverlayBoard`]; the video branch picks the state for each outgoing
//! frame ([`OverlayBoard::for_frame`]), scales it to the output size
//! ([`scale_shapes`], pure) and draws it ([`draw`]). The inference side
//! never waits on the video side: publishing is one short lock.
//!
//! Which state: when the eye tracks every camera frame
//! ([`OverlayBoard::set_per_frame`]), each state carries its frame's
//! stream position (PTS) and the video frame with the same PTS gets it
//! ([`pick`], pure), waiting briefly for the eye if it is not there yet;
//! otherwise (the eye runs at the detector's pace) the latest state.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use opencv::core::{Mat, Point, Rect, Scalar};
use opencv::imgproc;
use opencv::prelude::*;

use crate::decode::BBox;
use crate::events::Incident;
use crate::tracker::{Track, TrackState};

/// A colour, BGR.
pub type Bgr = [u8; 3];

/// Confirmed, matched tracks.
pub const TRACK_COLOUR: Bgr = [60, 200, 60];
/// Confirmed tracks not matched in the latest frame (predicted).
pub const LOST_COLOUR: Bgr = [160, 160, 160];
/// Incident (event) boxes and labels.
pub const EVENT_COLOUR: Bgr = [30, 30, 230];

/// One box to draw, in the inference frame's pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayShape {
    pub bbox: BBox,
    pub colour: Bgr,
    /// Line width in output pixels.
    pub thickness: u32,
    /// Drawn above the box's top-left corner.
    pub label: Option<String>,
}

/// What to draw on frame `seq` (and, when the eye runs at the detector's
/// pace, on the frames that follow it).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OverlayState {
    /// Size of the frame the coordinates refer to.
    pub frame_width: u32,
    pub frame_height: u32,
    pub seq: u64,
    pub capture_unix_ms: i64,
    /// The frame's stream position (ms), when the source has one: what
    /// the video branch matches its own frames by.
    pub pts_ms: Option<i64>,
    /// Tracks first, then incident boxes (drawn on top).
    pub shapes: Vec<OverlayShape>,
    /// One line per open incident, drawn top-left.
    pub banner: Vec<String>,
}

/// The overlay for one processed frame: confirmed tracks (green, grey
/// when lost, label `#id class`), then every open incident's member boxes
/// (red, thicker), the first labelled with the incident's category and
/// count, and a banner line per incident. Tentative tracks are left out
/// (they flicker).
pub fn overlay_state(
    frame_width: u32,
    frame_height: u32,
    seq: u64,
    capture_unix_ms: i64,
    tracks: &[Track],
    open: &[Incident],
    class_name: &dyn Fn(usize) -> String,
) -> OverlayState {
    let mut shapes = Vec::new();
    for t in tracks.iter().filter(|t| t.confirmed) {
        let lost = t.state == TrackState::Lost;
        shapes.push(OverlayShape {
            bbox: t.bbox,
            colour: if lost { LOST_COLOUR } else { TRACK_COLOUR },
            thickness: 2,
            label: Some(format!("#{} {}", t.id, class_name(t.class_id))),
        });
    }
    let mut banner = Vec::new();
    for inc in open {
        let what = match inc.count {
            Some(n) => format!("{} x{n}", inc.category),
            None => inc.category.to_string(),
        };
        for (i, b) in inc.boxes.iter().enumerate() {
            shapes.push(OverlayShape {
                bbox: *b,
                colour: EVENT_COLOUR,
                thickness: 3,
                label: (i == 0).then(|| what.clone()),
            });
        }
        banner.push(format!("{what} ({})", inc.rule_name));
    }
    OverlayState {
        frame_width,
        frame_height,
        seq,
        capture_unix_ms,
        pts_ms: None,
        shapes,
        banner,
    }
}

/// A shape in output pixels: `rect` is `(x, y, width, height)`, clipped
/// to the output (shapes entirely outside are dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct PixelShape {
    pub rect: (i32, i32, i32, i32),
    pub colour: Bgr,
    pub thickness: u32,
    pub label: Option<String>,
}

/// Scale a state from its frame's pixels to an `out_w × out_h` picture
/// (the video branch stretches the whole frame to the output size, so x
/// and y scale independently).
pub fn scale_shapes(state: &OverlayState, out_w: u32, out_h: u32) -> Vec<PixelShape> {
    if state.frame_width == 0 || state.frame_height == 0 || out_w == 0 || out_h == 0 {
        return Vec::new();
    }
    let sx = out_w as f32 / state.frame_width as f32;
    let sy = out_h as f32 / state.frame_height as f32;
    let (w, h) = (out_w as f32, out_h as f32);
    state
        .shapes
        .iter()
        .filter_map(|s| {
            let b = &s.bbox;
            if !(b.x1.is_finite() && b.y1.is_finite() && b.x2.is_finite() && b.y2.is_finite()) {
                return None;
            }
            let x1 = (b.x1.min(b.x2) * sx).clamp(0.0, w - 1.0);
            let x2 = (b.x1.max(b.x2) * sx).clamp(0.0, w - 1.0);
            let y1 = (b.y1.min(b.y2) * sy).clamp(0.0, h - 1.0);
            let y2 = (b.y1.max(b.y2) * sy).clamp(0.0, h - 1.0);
            // Entirely outside: clamping collapsed it onto an edge.
            if b.x1.max(b.x2) * sx < 0.0
                || b.x1.min(b.x2) * sx > w
                || b.y1.max(b.y2) * sy < 0.0
                || b.y1.min(b.y2) * sy > h
            {
                return None;
            }
            let (x, y) = (x1.round() as i32, y1.round() as i32);
            Some(PixelShape {
                rect: (
                    x,
                    y,
                    ((x2.round() as i32) - x).max(1),
                    ((y2.round() as i32) - y).max(1),
                ),
                colour: s.colour,
                thickness: s.thickness,
                label: s.label.clone(),
            })
        })
        .collect()
}

fn scalar(c: Bgr) -> Scalar {
    Scalar::new(c[0] as f64, c[1] as f64, c[2] as f64, 0.0)
}

/// Draw scaled shapes and the banner on a BGR picture in place.
pub fn draw(img: &mut Mat, shapes: &[PixelShape], banner: &[String]) -> opencv::Result<()> {
    let font = imgproc::FONT_HERSHEY_SIMPLEX;
    let scale = (img.cols() as f64 / 1280.0).clamp(0.35, 1.0);
    let text = |img: &mut Mat, s: &str, x: i32, y: i32, bg: Bgr| -> opencv::Result<()> {
        let mut base = 0;
        let size = imgproc::get_text_size(s, font, scale, 1, &mut base)?;
        let y = y.max(size.height + 2);
        imgproc::rectangle(
            img,
            Rect::new(
                x,
                y - size.height - 2,
                size.width + 4,
                size.height + base + 2,
            ),
            scalar(bg),
            imgproc::FILLED,
            imgproc::LINE_8,
            0,
        )?;
        imgproc::put_text(
            img,
            s,
            Point::new(x + 2, y),
            font,
            scale,
            Scalar::new(255.0, 255.0, 255.0, 0.0),
            1,
            imgproc::LINE_8,
            false,
        )
    };
    for s in shapes {
        let (x, y, w, h) = s.rect;
        imgproc::rectangle(
            img,
            Rect::new(x, y, w, h),
            scalar(s.colour),
            s.thickness.max(1) as i32,
            imgproc::LINE_8,
            0,
        )?;
        if let Some(l) = &s.label {
            text(img, l, x, y - 2, s.colour)?;
        }
    }
    // The banner sits at the bottom-left, the last line lowest: the top
    // of the picture stays free (a camera's own time stamp is usually
    // there, the simulator's burned-in capture time is).
    let n = banner.len() as i32;
    for (i, line) in banner.iter().enumerate() {
        let line: String = line.chars().take(80).collect();
        let y = img.rows() - 6 - 18 * (n - 1 - i as i32);
        text(img, &line, 4, y, EVENT_COLOUR)?;
    }
    Ok(())
}

/// Where the eye leaves its overlays and the video branch picks them up.
/// Cloning shares the board.
#[derive(Clone, Default)]
pub struct OverlayBoard {
    inner: Arc<BoardInner>,
}

#[derive(Default)]
struct BoardInner {
    /// The newest states, oldest first, with when each was published.
    states: Mutex<VecDeque<Published>>,
    cond: Condvar,
    per_frame: AtomicBool,
}

/// A state and when it was published.
type Published = (Instant, Arc<OverlayState>);

/// States kept for matching video frames (a few seconds of camera frames:
/// the video branch is at most a frame or two behind).
pub const BOARD_STATES: usize = 64;

impl std::fmt::Debug for OverlayBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OverlayBoard")
    }
}

/// Which of `states` (oldest first) to draw on the video frame at stream
/// position `pts_ms`: the one of that very frame; else the newest one
/// before it (the eye has not got there yet); `None` when every state is
/// of a later frame (or none has a position).
pub fn pick(states: &[&OverlayState], pts_ms: i64) -> Option<usize> {
    if let Some(i) = states.iter().rposition(|s| s.pts_ms == Some(pts_ms)) {
        return Some(i);
    }
    states
        .iter()
        .enumerate()
        .filter(|(_, s)| s.pts_ms.is_some_and(|p| p < pts_ms))
        .max_by_key(|(i, s)| (s.pts_ms, *i))
        .map(|(i, _)| i)
}

impl OverlayBoard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Publish a frame's overlay (the newest).
    pub fn publish(&self, state: OverlayState) {
        let mut g = self.inner.states.lock().expect("overlay lock");
        g.push_back((Instant::now(), Arc::new(state)));
        while g.len() > BOARD_STATES {
            g.pop_front();
        }
        self.inner.cond.notify_all();
    }

    /// Say whether the eye publishes an overlay for every camera frame
    /// (then each video frame is drawn with its own, see
    /// [`OverlayBoard::for_frame`]).
    pub fn set_per_frame(&self, on: bool) {
        self.inner.per_frame.store(on, Ordering::Relaxed);
    }

    pub fn per_frame(&self) -> bool {
        self.inner.per_frame.load(Ordering::Relaxed)
    }

    /// The latest overlay, unless it is older than `max_age` (the eye has
    /// stopped or stalled: stale boxes would mislead).
    pub fn latest(&self, max_age: Duration) -> Option<Arc<OverlayState>> {
        let g = self.inner.states.lock().expect("overlay lock");
        g.back()
            .filter(|(t, _)| t.elapsed() <= max_age)
            .map(|(_, s)| s.clone())
    }

    /// The overlay to draw on the video frame at stream position `pts_ms`.
    /// Per-frame boards: waits up to `wait` for the eye to publish that
    /// frame's (or a later one), then [`pick`]s among the states younger
    /// than `max_age`. Otherwise, or without a position: the latest.
    pub fn for_frame(
        &self,
        pts_ms: Option<i64>,
        wait: Duration,
        max_age: Duration,
    ) -> Option<Arc<OverlayState>> {
        let Some(pts) = pts_ms.filter(|_| self.per_frame()) else {
            return self.latest(max_age);
        };
        let deadline = Instant::now() + wait;
        let mut g = self.inner.states.lock().expect("overlay lock");
        loop {
            let there = g
                .back()
                .is_some_and(|(_, s)| s.pts_ms.is_some_and(|p| p >= pts));
            let now = Instant::now();
            if there || now >= deadline {
                break;
            }
            g = self
                .inner
                .cond
                .wait_timeout(g, deadline - now)
                .expect("overlay lock")
                .0;
        }
        let fresh: Vec<&Arc<OverlayState>> = g
            .iter()
            .filter(|(t, _)| t.elapsed() <= max_age)
            .map(|(_, s)| s)
            .collect();
        let refs: Vec<&OverlayState> = fresh.iter().map(|s| s.as_ref()).collect();
        pick(&refs, pts).map(|i| fresh[i].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RuleKind;
    use tiancha_protocol::Category;

    fn track(id: u64, b: BBox, confirmed: bool, state: TrackState) -> Track {
        Track {
            id,
            class_id: 0,
            bbox: b,
            score: 0.9,
            score_ema: 0.9,
            state,
            hits: 5,
            first_seen_unix_ms: 0,
            last_seen_unix_ms: 0,
            confirmed,
            missed: 0,
        }
    }

    fn incident(boxes: Vec<BBox>, count: Option<u32>) -> Incident {
        Incident {
            id: uuid::Uuid::now_v7(),
            rule_name: "gathering".into(),
            rule_kind: RuleKind::Gathering,
            category: Category::Gathering,
            zone: None,
            t_first_unix_ms: 0,
            t_opened_unix_ms: 0,
            t_last_unix_ms: 0,
            frame_seq: 0,
            confidence: 0.8,
            track_ids: vec![1, 2],
            boxes,
            class_ids: vec![0, 0],
            count,
            count_at_open: count,
            peak_count: count,
            extent_m: None,
            location: None,
            detail: String::new(),
        }
    }

    fn names(id: usize) -> String {
        ["person", "bicycle"][id].to_string()
    }

    #[test]
    fn confirmed_tracks_and_incident_boxes_become_shapes() {
        let a = BBox::new(10.0, 20.0, 50.0, 120.0);
        let b = BBox::new(200.0, 20.0, 240.0, 120.0);
        let c = BBox::new(300.0, 300.0, 310.0, 330.0);
        let tracks = [
            track(7, a, true, TrackState::Tracked),
            track(8, b, true, TrackState::Lost),
            track(9, c, false, TrackState::Tentative),
        ];
        let inc = incident(vec![a, b], Some(2));
        let s = overlay_state(640, 480, 42, 1_000, &tracks, &[inc], &names);
        assert_eq!((s.frame_width, s.frame_height, s.seq), (640, 480, 42));
        assert_eq!(
            s.shapes.len(),
            4,
            "two confirmed tracks + two incident boxes"
        );
        assert_eq!(s.shapes[0].colour, TRACK_COLOUR);
        assert_eq!(s.shapes[0].label.as_deref(), Some("#7 person"));
        assert_eq!(s.shapes[1].colour, LOST_COLOUR);
        assert!(s.shapes[2..].iter().all(|x| x.colour == EVENT_COLOUR));
        assert_eq!(s.shapes[2].label.as_deref(), Some("gathering x2"));
        assert_eq!(s.shapes[3].label, None);
        assert!(s.shapes[2].thickness > s.shapes[0].thickness);
        assert_eq!(s.banner, ["gathering x2 (gathering)"]);
        // Nothing tracked, nothing open: nothing drawn.
        let empty = overlay_state(640, 480, 43, 1_100, &[], &[], &names);
        assert!(empty.shapes.is_empty() && empty.banner.is_empty());
    }

    #[test]
    fn shapes_scale_to_the_output_and_clip() {
        let shape = |b: BBox| OverlayShape {
            bbox: b,
            colour: EVENT_COLOUR,
            thickness: 3,
            label: None,
        };
        let state = OverlayState {
            frame_width: 1280,
            frame_height: 720,
            shapes: vec![
                shape(BBox::new(640.0, 360.0, 960.0, 540.0)),
                // Partly outside: clipped.
                shape(BBox::new(-100.0, 700.0, 100.0, 800.0)),
                // Entirely outside: dropped.
                shape(BBox::new(1300.0, 10.0, 1400.0, 50.0)),
                // Not a number: dropped.
                shape(BBox::new(f32::NAN, 10.0, 20.0, 50.0)),
            ],
            ..OverlayState::default()
        };
        let px = scale_shapes(&state, 640, 360);
        assert_eq!(px.len(), 2);
        assert_eq!(px[0].rect, (320, 180, 160, 90));
        assert_eq!(px[1].rect, (0, 350, 50, 9));
        // Independent x/y scale (the output stretches the frame).
        let px = scale_shapes(&state, 320, 360);
        assert_eq!(px[0].rect, (160, 180, 80, 90));
        // A state without a frame size draws nothing.
        assert!(scale_shapes(&OverlayState::default(), 640, 360).is_empty());
    }

    #[test]
    fn drawing_puts_the_colour_on_the_box_edge_only() {
        let mut img =
            Mat::new_rows_cols_with_default(120, 160, opencv::core::CV_8UC3, Scalar::all(0.0))
                .unwrap();
        let shapes = [PixelShape {
            rect: (40, 50, 60, 40),
            colour: EVENT_COLOUR,
            thickness: 3,
            label: None,
        }];
        draw(&mut img, &shapes, &[]).unwrap();
        let at = |x: i32, y: i32| *img.at_2d::<opencv::core::Vec3b>(y, x).unwrap();
        assert_eq!(at(40, 70).0, EVENT_COLOUR, "left edge");
        assert_eq!(at(70, 50).0, EVENT_COLOUR, "top edge");
        assert_eq!(at(70, 70).0, [0, 0, 0], "inside stays untouched");
        assert_eq!(at(10, 10).0, [0, 0, 0], "outside stays untouched");
    }

    fn at(seq: u64, pts_ms: Option<i64>) -> OverlayState {
        OverlayState {
            seq,
            pts_ms,
            ..OverlayState::default()
        }
    }

    #[test]
    fn a_video_frame_gets_its_own_overlay_or_the_newest_before_it() {
        let states = [at(1, Some(100)), at(2, Some(133)), at(3, Some(166))];
        let refs: Vec<&OverlayState> = states.iter().collect();
        assert_eq!(pick(&refs, 133), Some(1), "that very frame");
        assert_eq!(
            pick(&refs, 150),
            Some(1),
            "not published: the newest before"
        );
        assert_eq!(pick(&refs, 400), Some(2));
        assert_eq!(pick(&refs, 50), None, "nothing before it");
        let none = [at(1, None)];
        assert_eq!(pick(&none.iter().collect::<Vec<_>>(), 100), None);
    }

    #[test]
    fn a_per_frame_board_waits_for_the_frame_then_gives_it() {
        let board = OverlayBoard::new();
        board.set_per_frame(true);
        board.publish(at(1, Some(100)));
        // The eye publishes frame 2 a little later.
        let b = board.clone();
        let eye = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            b.publish(at(2, Some(133)));
        });
        let got = board
            .for_frame(Some(133), Duration::from_secs(5), Duration::from_secs(5))
            .unwrap();
        eye.join().unwrap();
        assert_eq!(got.seq, 2);
        // Gone past the wait: the newest before it.
        let got = board
            .for_frame(Some(166), Duration::from_millis(10), Duration::from_secs(5))
            .unwrap();
        assert_eq!(got.seq, 2);
        // An older frame still in the board gets its own.
        let got = board
            .for_frame(Some(100), Duration::ZERO, Duration::from_secs(5))
            .unwrap();
        assert_eq!(got.seq, 1);
        // Without a position: the latest. Not per frame: the latest.
        assert_eq!(
            board
                .for_frame(None, Duration::ZERO, Duration::from_secs(5))
                .unwrap()
                .seq,
            2
        );
        board.set_per_frame(false);
        assert_eq!(
            board
                .for_frame(Some(100), Duration::ZERO, Duration::from_secs(5))
                .unwrap()
                .seq,
            2
        );
        // Bounded.
        for k in 0..200 {
            board.publish(at(k, Some(k as i64)));
        }
        assert_eq!(board.inner.states.lock().unwrap().len(), BOARD_STATES);
    }

    #[test]
    fn the_board_hands_out_the_latest_fresh_state() {
        let board = OverlayBoard::new();
        assert!(board.latest(Duration::from_secs(1)).is_none());
        board.publish(OverlayState {
            seq: 1,
            ..OverlayState::default()
        });
        board.publish(OverlayState {
            seq: 2,
            ..OverlayState::default()
        });
        assert_eq!(board.clone().latest(Duration::from_secs(1)).unwrap().seq, 2);
        std::thread::sleep(Duration::from_millis(20));
        assert!(board.latest(Duration::from_millis(5)).is_none(), "stale");
    }
}
