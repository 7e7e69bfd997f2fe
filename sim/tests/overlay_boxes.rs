//! The live overlay against the simulator's ground truth: are the boxes
//! drawn on a video frame where the people are *in that frame*?
//!
//! The sim's renderer films the demo scenario's lane-1 gathering
//! (examples/shangrao/scenario.toml: 7 people within 4 m) from a camera
//! flying east along the lane at 60 m and 5 m/s, 45° down, 10 fps,
//! 1280×720, 30° HFOV, with its capture time burnt into the top-left
//! corner as the sim's camera streams it (a 520×140 panel, like a gimbal
//! camera's OSD); the eye geotags with the exact pose of each frame.
//! The detector is the demo's (CenterNet COCO, 2×3 tiles, as in
//! examples/demo/companion.toml) and slow, as on the companion: it runs on
//! every 5th frame and its result arrives 3 frames later, as it would from
//! the inference thread.
//!
//! - New: the eye tracks at the camera's pace ([`Eye::advance`] on every
//!   frame, [`Eye::detected`] when a result arrives); the overlay of frame
//!   i is built from the tracks moved to frame i.
//! - Old: the overlay is the latest *processed* frame's ([`Eye::process`]
//!   when the result arrives), drawn on every frame until the next.
//!
//! The same again with the eye's poses from noisy telemetry (the sim's
//! `--noise` levels, `NoiseConfig::realistic`: white 0.5° attitude and
//! 0.3° gimbal noise per sample, 1.5 m GPS error correlated over 5 s, 0.5 m baro height
//! error over 30 s),
//! the demo's condition: the camera motion between two frames is then off
//! by the two frames' attitude errors, unless the eye also measures the
//! image shift between consecutive frames (`EyeConfig::image_motion`, on
//! by default; measured both ways).
//!
//! Each overlay's track boxes, scaled to the 640×360 video out, are matched
//! one to one (nearest first) with the truth boxes of the people whose
//! feet are in that frame; the figure is the distance between box centres
//! in output pixels. Figures go to docs/benchmarks/inference.md ("Overlay
//! boxes on the live picture").
//!
//! A second test measures the eye's ground points (per person, each camera
//! frame) and the gathering incident's location against the sim's truth
//! positions, for the fast detector above and for a slow, late one (every
//! 10th frame, its result 20 frames = 2 s late, as on a loaded machine),
//! with exact and with noisy poses.
//!
//! ```text
//! cargo nextest run --workspace -E 'binary(overlay_boxes)' --no-capture
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tiancha_geometry::camera::{
    Attitude, CameraPose, GimbalAngles, GimbalMount, PoseSigma, PoseSource,
};
use tiancha_geometry::geodesy::{LatLon, LocalFrame};
use tiancha_inference::events::EngineConfig;
use tiancha_inference::geotag::Ground;
use tiancha_inference::manifest::TilingSpec;
use tiancha_inference::pipeline::FrameOutcome;
use tiancha_inference::protocol::ZoneRule;
use tiancha_inference::video_out::overlay::{overlay_state, scale_shapes, OverlayState};
use tiancha_inference::video_out::overlay::{LOST_COLOUR, TRACK_COLOUR};
use tiancha_inference::{
    Detection, Detector, DetectorOptions, Eye, EyeConfig, Frame, Geotagger, IncidentChange,
    RuleConfig,
};
use tiancha_sim::camera::{CameraSpec, Renderer, Scenario};
use tiancha_sim::noise::{Noise, NoiseConfig};

const FPS: f64 = 10.0;
const SPEED_MPS: f64 = 5.0;
const ALTITUDE_M: f64 = 60.0;
const FRAMES: u64 = 90;
/// The detector sees every 5th frame…
const DETECT_EVERY: u64 = 5;
/// …and its result is out 3 frames later.
const RESULT_DELAY: u64 = 3;
const OUT_W: u32 = 640;
const OUT_H: u32 = 360;
const T0_UNIX_MS: i64 = 1_780_000_000_000;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Frame `i` of the flight at `t`, as the sim's camera streams it: the
/// render with its capture time burnt in.
fn film(
    renderer: &Renderer,
    pose: &CameraPose,
    i: u64,
    t: i64,
) -> tiancha_sim::camera::RenderedFrame {
    let mut r = renderer.render(pose, 60.0 + i as f64 / FPS).unwrap();
    tiancha_sim::camera::timestamp::burn_timestamp(&mut r.image, t).unwrap();
    r
}

/// The camera flying east along lane 1 (the truth the renderer uses and
/// the pose the eye gets: "pose from the truth").
struct Flight {
    start: tiancha_geometry::LatLonAlt,
}

impl Flight {
    fn pose(&self, t_unix_ms: i64) -> CameraPose {
        let s = (t_unix_ms - T0_UNIX_MS) as f64 / 1000.0;
        let frame = LocalFrame::new(self.start);
        let position = frame.from_ned(nalgebra::Vector3::new(0.0, SPEED_MPS * s, 0.0));
        let mut pose = CameraPose::new(
            t_unix_ms,
            position,
            Attitude::new(0.0, 0.0, 90.0),
            GimbalAngles::new(0.0, -45.0, 0.0, GimbalMount::Stabilized),
        )
        .with_sigma(PoseSigma::typical());
        pose.velocity_ned_mps = [0.0, SPEED_MPS, 0.0];
        pose
    }
}

struct FlightPoses(Arc<Flight>);

impl PoseSource for FlightPoses {
    fn pose_at(&self, t_unix_ms: i64) -> Option<CameraPose> {
        Some(self.0.pose(t_unix_ms))
    }
}

/// The flight as noisy telemetry reports it: one sample per frame time
/// (the sim's noise generators, seeded), exact between.
struct NoisyPoses {
    flight: Arc<Flight>,
    /// Per frame: GPS error north/east/down (m), roll/pitch/yaw error
    /// (rad), gimbal pitch error (°).
    errors: Vec<([f64; 3], [f64; 3], f64)>,
}

impl NoisyPoses {
    fn new(flight: Arc<Flight>, seed: u64) -> Self {
        let mut n = Noise::new(NoiseConfig::realistic(seed));
        let errors = (0..FRAMES)
            .map(|i| {
                let gps = n.gps_error(i as f64 / FPS);
                let att = [n.attitude_rad(), n.attitude_rad(), n.attitude_rad()];
                (gps, att, n.gimbal_deg())
            })
            .collect();
        Self { flight, errors }
    }
}

impl PoseSource for NoisyPoses {
    fn pose_at(&self, t_unix_ms: i64) -> Option<CameraPose> {
        let mut p = self.flight.pose(t_unix_ms);
        let i = ((t_unix_ms - T0_UNIX_MS) as f64 * FPS / 1000.0).round() as usize;
        let (gps, att, gimbal) = self.errors.get(i)?;
        p.position = LocalFrame::new(p.position).from_ned(nalgebra::Vector3::from(*gps));
        // The camera's orientation error: the attitude noise on all three
        // axes (as if the stabilised gimbal's own report carried it) and
        // the gimbal's on pitch.
        p.gimbal.roll_deg += att[0].to_degrees();
        p.gimbal.pitch_deg += att[1].to_degrees() + gimbal;
        p.attitude.yaw_deg += att[2].to_degrees();
        Some(p)
    }
}

/// Track boxes of an overlay in output pixels: centres.
fn track_centres(state: &OverlayState) -> Vec<(f64, f64)> {
    scale_shapes(state, OUT_W, OUT_H)
        .into_iter()
        .filter(|s| s.colour == TRACK_COLOUR || s.colour == LOST_COLOUR)
        .map(|s| {
            let (x, y, w, h) = s.rect;
            (x as f64 + w as f64 / 2.0, y as f64 + h as f64 / 2.0)
        })
        .collect()
}

/// One-to-one matching, nearest pairs first: the distances of the pairs
/// and how many boxes found no person.
fn match_centres(boxes: &[(f64, f64)], truth: &[(f64, f64)]) -> (Vec<f64>, usize) {
    let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
    for (i, b) in boxes.iter().enumerate() {
        for (j, t) in truth.iter().enumerate() {
            pairs.push(((b.0 - t.0).hypot(b.1 - t.1), i, j));
        }
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut bu, mut tu) = (vec![false; boxes.len()], vec![false; truth.len()]);
    let mut d = Vec::new();
    for (dist, i, j) in pairs {
        if !bu[i] && !tu[j] {
            bu[i] = true;
            tu[j] = true;
            d.push(dist);
        }
    }
    (d, bu.iter().filter(|u| !**u).count())
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn eye(
    detector: &Detector,
    poses: Arc<dyn PoseSource>,
    spec: &CameraSpec,
    ground_alt_m: f64,
    image_motion: bool,
) -> Eye {
    let geotagger =
        Geotagger::new(spec.model(), Ground::Flat(ground_alt_m), poses).with_sigma_px(3.0);
    // The demo's default rule (examples/demo/companion.toml [detection]).
    let rules = EngineConfig {
        rules: vec![RuleConfig {
            name: "gathering".into(),
            zone: None,
            rule: ZoneRule::Gathering {
                min_people: 4,
                radius_m: 15.0,
                min_duration_s: 1.0,
            },
        }],
        close_after_s: 5.0,
        ..EngineConfig::default()
    };
    Eye::new(
        detector.manifest().clone(),
        EyeConfig {
            engine: rules,
            image_motion,
            ..EyeConfig::default()
        },
        Some(geotagger),
    )
    .unwrap()
}

/// The overlay an eye's outcome draws on `frame`.
fn overlay_of(frame: &Frame, o: &FrameOutcome, class: &dyn Fn(usize) -> String) -> OverlayState {
    overlay_state(
        frame.width,
        frame.height,
        frame.seq,
        frame.capture_unix_ms,
        &o.tracks,
        &o.open,
        class,
    )
}

/// Incidents an outcome opened.
fn opened(o: &FrameOutcome) -> usize {
    o.incidents
        .iter()
        .filter(|e| e.event.change == IncidentChange::Opened)
        .count()
}

/// What both tests film: the demo scenario's lane-1 gathering, a flight
/// towards it, and the demo's detector (2×3 tiles).
struct Lane1 {
    spec: CameraSpec,
    renderer: Renderer,
    ground: f64,
    target: LocalFrame,
    flight: Arc<Flight>,
    detector: Detector,
}

fn lane1() -> Lane1 {
    let scenario = Scenario::load(workspace().join("examples/shangrao/scenario.toml")).unwrap();
    let spec = CameraSpec::default();
    assert_eq!(
        (spec.width_px, spec.height_px, spec.hfov_deg),
        (1280, 720, 30.0)
    );
    let renderer = Renderer::new(&scenario, spec).unwrap();
    let gathering = scenario
        .incidents
        .iter()
        .find(|i| i.id == "gathering-lane-1")
        .expect("the demo scenario's lane-1 gathering");
    let (lat, lon) = match &gathering.kind {
        tiancha_sim::camera::IncidentKind::Gathering { at, .. } => (at.lat_deg, at.lon_deg),
        other => panic!("{other:?}"),
    };
    // Start 85 m west of the gathering: at 45° down from 60 m the view
    // spans 44-81 m ahead, so it comes into view after ~1 s and leaves the
    // bottom of the picture after ~8 s of the 9 s flown.
    let ground = scenario.ground_alt_m;
    let target = LocalFrame::new(LatLon::new(lat, lon).with_alt(ground));
    let flight = Arc::new(Flight {
        start: target.from_ned(nalgebra::Vector3::new(0.0, -85.0, -ALTITUDE_M)),
    });

    let detector = Detector::from_manifest_path(
        workspace().join("models/centernet_mnv3_coco80.toml"),
        &DetectorOptions {
            tiling: Some(Some(TilingSpec {
                rows: 2,
                cols: 3,
                overlap: 0.2,
                include_full: false,
            })),
            ..DetectorOptions::default()
        },
    )
    .unwrap();
    Lane1 {
        spec,
        renderer,
        ground,
        target,
        flight,
        detector,
    }
}

#[test]
fn overlay_boxes_sit_on_the_people_of_their_own_frame_with_a_slow_detector() {
    let Lane1 {
        spec,
        renderer,
        ground,
        target: _,
        flight,
        detector,
    } = lane1();
    let exact: Arc<dyn PoseSource> = Arc::new(FlightPoses(flight.clone()));
    let noisy: Arc<dyn PoseSource> = Arc::new(NoisyPoses::new(flight.clone(), 7));
    let mut new_eye = eye(&detector, exact.clone(), &spec, ground, true);
    let mut old_eye = eye(&detector, exact, &spec, ground, true);
    let mut noisy_eye = eye(&detector, noisy.clone(), &spec, ground, true);
    let mut noisy_old_eye = eye(&detector, noisy.clone(), &spec, ground, true);
    // Noisy poses alone, without the image shift between frames.
    let mut poses_only_eye = eye(&detector, noisy, &spec, ground, false);
    let class = |id: usize| detector.manifest().class_name(id).to_string();

    let mut frames: Vec<Frame> = Vec::new();
    let mut results: Vec<(u64, Vec<Detection>)> = Vec::new();
    let mut old_overlay: Option<OverlayState> = None;
    let mut noisy_old_overlay: Option<OverlayState> = None;
    let (mut new_err, mut old_err) = (Vec::new(), Vec::new());
    let (mut noisy_err, mut noisy_old_err) = (Vec::new(), Vec::new());
    let mut poses_only_err = Vec::new();
    let mut noisy_opened = 0;
    let (mut new_spare, mut old_spare, mut people_frames, mut people) = (0, 0, 0, 0);
    let mut new_opened = 0;
    let (mut advance_ms, mut detected_ms, mut detect_ms) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..FRAMES {
        let t = T0_UNIX_MS + (i as f64 * 1000.0 / FPS).round() as i64;
        let pose = flight.pose(t);
        let rendered = film(&renderer, &pose, i, t);
        let frame = Frame::from_mat(i, &rendered.image, t).unwrap();
        frames.push(frame.clone());
        let truth: Vec<(f64, f64)> = rendered
            .visible()
            .map(|p| {
                let [x1, y1, x2, y2] = p.bbox_px;
                let (sx, sy) = (
                    OUT_W as f64 / spec.width_px as f64,
                    OUT_H as f64 / spec.height_px as f64,
                );
                ((x1 + x2) / 2.0 * sx, (y1 + y2) / 2.0 * sy)
            })
            .collect();

        // A result due now comes out of the inference thread before this
        // frame reaches the tracker.
        if i >= RESULT_DELAY && (i - RESULT_DELAY).is_multiple_of(DETECT_EVERY) {
            let k = i - RESULT_DELAY;
            let (_, dets) = results.iter().find(|(f, _)| *f == k).unwrap();
            let fk = &frames[k as usize];
            let t0 = Instant::now();
            new_eye.detected(fk, dets).unwrap();
            detected_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            // Old: the detector's frame through the eye, its boxes drawn
            // from now on.
            let o = old_eye.process(fk, dets).unwrap();
            old_overlay = Some(overlay_of(fk, &o, &class));
            noisy_eye.detected(fk, dets).unwrap();
            poses_only_eye.detected(fk, dets).unwrap();
            let o = noisy_old_eye.process(fk, dets).unwrap();
            noisy_old_overlay = Some(overlay_of(fk, &o, &class));
        }
        let o = poses_only_eye
            .advance(&frame)
            .unwrap()
            .expect("a newer frame");
        let poses_only_overlay = overlay_of(&frame, &o, &class);
        let o = noisy_eye.advance(&frame).unwrap().expect("a newer frame");
        noisy_opened += opened(&o);
        let noisy_overlay = overlay_of(&frame, &o, &class);
        let t0 = Instant::now();
        let o = new_eye.advance(&frame).unwrap().expect("a newer frame");
        advance_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        new_opened += opened(&o);
        let new_overlay = overlay_of(&frame, &o, &class);
        if i.is_multiple_of(DETECT_EVERY) {
            let t0 = Instant::now();
            results.push((i, detector.detect(&frame).unwrap()));
            detect_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }

        if truth.is_empty() {
            continue;
        }
        people_frames += 1;
        people += truth.len();
        let (d, spare) = match_centres(&track_centres(&new_overlay), &truth);
        new_err.extend(d);
        new_spare += spare;
        if let Some(old) = &old_overlay {
            let (d, spare) = match_centres(&track_centres(old), &truth);
            old_err.extend(d);
            old_spare += spare;
        }
        noisy_err.extend(match_centres(&track_centres(&noisy_overlay), &truth).0);
        poses_only_err.extend(match_centres(&track_centres(&poses_only_overlay), &truth).0);
        if let Some(old) = &noisy_old_overlay {
            noisy_old_err.extend(match_centres(&track_centres(old), &truth).0);
        }
    }

    let figures = |e: &[f64]| (percentile(e, 0.5), percentile(e, 0.95), e.len());
    let (nm, np, nn) = figures(&new_err);
    let (om, op, on) = figures(&old_err);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    eprintln!(
        "{people_frames} frames with people in view ({people} person-frames); \
         boxes matched to a person: new {nn}, old {on}; boxes without one: new {new_spare}, old {old_spare}"
    );
    eprintln!(
        "centre error at {OUT_W}x{OUT_H}: new (tracks moved to each frame) median {nm:.1} px, p95 {np:.1} px; \
         old (latest processed frame's boxes) median {om:.1} px, p95 {op:.1} px"
    );
    eprintln!(
        "eye per camera frame (advance; debug build): median {:.2} ms, mean {:.2} ms, max {:.2} ms; \
         per late result (detected, replay included): mean {:.2} ms, max {:.2} ms; \
         detector (2x3 tiles): mean {:.0} ms",
        percentile(&advance_ms, 0.5),
        mean(&advance_ms),
        advance_ms.iter().copied().fold(0.0, f64::max),
        mean(&detected_ms),
        detected_ms.iter().copied().fold(0.0, f64::max),
        mean(&detect_ms),
    );
    let (zm, zp, zn) = figures(&noisy_err);
    let (ym, yp, yn) = figures(&noisy_old_err);
    let (xm, xp, xn) = figures(&poses_only_err);
    eprintln!(
        "with noisy telemetry (NoiseConfig::realistic): new median {zm:.1} px, p95 {zp:.1} px ({zn} boxes); \
         without the image shift (poses alone) median {xm:.1} px, p95 {xp:.1} px ({xn} boxes); \
         old median {ym:.1} px, p95 {yp:.1} px ({yn} boxes); incidents opened: {noisy_opened}"
    );
    eprintln!(
        "timeline: {:?}; gathering incidents opened: {new_opened}",
        new_eye.timeline_stats()
    );

    // Enough to judge: the gathering was in view and tracked.
    assert!(people_frames >= 50, "{people_frames} frames with people");
    assert!(
        nn >= people / 2,
        "new overlay boxed {nn} of {people} person-frames"
    );
    assert!(
        on >= people / 3,
        "old overlay boxed {on} of {people} person-frames"
    );
    // The boxes sit on the people of their own frame…
    assert!(np <= 15.0, "new p95 {np:.1} px > 15 px");
    // …and the latest processed frame's boxes measurably do not.
    assert!(
        om >= 2.0 * nm && op >= np + 5.0,
        "old median {om:.1} / p95 {op:.1} px vs new {nm:.1} / {np:.1} px"
    );
    // One gathering, one incident (rules on every camera frame).
    assert_eq!(new_opened, 1, "one incident for the one gathering");
    // Noisy telemetry: moved by the poses alone, each frame's boxes are
    // off by two frames' attitude errors; the image shift between frames
    // takes that out. Still one incident.
    assert!(zp <= 15.0, "noisy telemetry: new p95 {zp:.1} px > 15 px");
    assert!(
        xp > 2.0 * zp,
        "poses alone {xm:.1}/{xp:.1} px vs {zm:.1}/{zp:.1} px"
    );
    assert_eq!(noisy_opened, 1, "one incident with noisy telemetry");
}

/// One eye under test for the ground error: its detector schedule, its
/// poses, and what it geotagged.
struct GroundRun {
    name: &'static str,
    /// The detector sees every `every`-th frame, its result out `delay`
    /// frames later.
    every: u64,
    delay: u64,
    eye: Eye,
    /// The eye's own geotagger (same poses), to locate the subjects'
    /// foot points as `Eye::rules` does.
    geotagger: Geotagger,
    person_err: Vec<f64>,
    incident_err: Vec<f64>,
    opened: usize,
}

/// Does the eye's rules count this track (as `Eye::rules` filters them)?
fn counted(t: &tiancha_inference::Track) -> bool {
    use tiancha_inference::tracker::TrackState;
    t.confirmed
        && (t.state == TrackState::Tracked || (t.state == TrackState::Lost && t.missed <= 1))
}

/// The ground error of the eye's geotags against the sim's truth: each
/// camera frame's counted tracks (their foot points located with that
/// frame's pose, as the rules see them) matched one to one with the
/// people in view (nearest first), and the open gathering incident's
/// location against the centre of the gathering's people, for a fast
/// detector (every 5th frame, 3 frames late) and a slow, late one (every
/// 10th frame, 20 frames = 2 s late, as on the loaded demo machine), with
/// exact and with noisy poses.
#[test]
fn ground_points_and_incident_location_hold_with_a_slow_late_detector() {
    let Lane1 {
        spec,
        renderer,
        ground,
        target,
        flight,
        detector,
    } = lane1();
    let exact: Arc<dyn PoseSource> = Arc::new(FlightPoses(flight.clone()));
    let noisy: Arc<dyn PoseSource> = Arc::new(NoisyPoses::new(flight.clone(), 7));
    let run = |name, every, delay, poses: &Arc<dyn PoseSource>| GroundRun {
        name,
        every,
        delay,
        eye: eye(&detector, poses.clone(), &spec, ground, true),
        geotagger: Geotagger::new(spec.model(), Ground::Flat(ground), poses.clone()),
        person_err: Vec::new(),
        incident_err: Vec::new(),
        opened: 0,
    };
    let mut runs = vec![
        run("fast (every 5th, 3 late), exact poses", 5, 3, &exact),
        run(
            "slow-late (every 10th, 20 late), exact poses",
            10,
            20,
            &exact,
        ),
        run("fast (every 5th, 3 late), noisy poses", 5, 3, &noisy),
        run(
            "slow-late (every 10th, 20 late), noisy poses",
            10,
            20,
            &noisy,
        ),
    ];

    let mut frames: Vec<Frame> = Vec::new();
    let mut results: Vec<(u64, Vec<Detection>)> = Vec::new();
    for i in 0..FRAMES {
        let t = T0_UNIX_MS + (i as f64 * 1000.0 / FPS).round() as i64;
        let pose = flight.pose(t);
        let rendered = film(&renderer, &pose, i, t);
        let frame = Frame::from_mat(i, &rendered.image, t).unwrap();
        frames.push(frame.clone());
        let en = |lat: f64, lon: f64| target.to_en(LatLon::new(lat, lon));
        let truth: Vec<(f64, f64)> = rendered
            .visible()
            .map(|p| en(p.lat_deg, p.lon_deg))
            .collect();
        let members: Vec<(f64, f64)> = rendered
            .people
            .iter()
            .filter(|p| p.incident_id == "gathering-lane-1")
            .map(|p| en(p.lat_deg, p.lon_deg))
            .collect();
        let centre = (
            members.iter().map(|m| m.0).sum::<f64>() / members.len() as f64,
            members.iter().map(|m| m.1).sum::<f64>() / members.len() as f64,
        );
        for r in &mut runs {
            if i >= r.delay && (i - r.delay).is_multiple_of(r.every) {
                let k = i - r.delay;
                let (_, dets) = results.iter().find(|(f, _)| *f == k).unwrap();
                r.eye.detected(&frames[k as usize], dets).unwrap();
            }
            let o = r.eye.advance(&frame).unwrap().expect("a newer frame");
            r.opened += opened(&o);
            let geo = r
                .geotagger
                .frame(t, frame.width, frame.height)
                .expect("a pose");
            let located: Vec<(f64, f64)> = o
                .tracks
                .iter()
                .filter(|t| counted(t))
                .filter_map(|t| {
                    let (x, y) = t.bbox.foot();
                    geo.locate(x, y)
                })
                .map(|g| en(g.point.lat_deg, g.point.lon_deg))
                .collect();
            r.person_err.extend(match_centres(&located, &truth).0);
            for inc in &o.open {
                if let Some(l) = &inc.location {
                    let (e, n) = en(l.lat_deg, l.lon_deg);
                    r.incident_err.push((e - centre.0).hypot(n - centre.1));
                }
            }
        }
        if i.is_multiple_of(DETECT_EVERY) {
            results.push((i, detector.detect(&frame).unwrap()));
        }
    }

    for r in &runs {
        let (pm, pp) = if r.person_err.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            (
                percentile(&r.person_err, 0.5),
                percentile(&r.person_err, 0.95),
            )
        };
        let (im, imax) = if r.incident_err.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            (
                percentile(&r.incident_err, 0.5),
                r.incident_err.iter().copied().fold(0.0, f64::max),
            )
        };
        eprintln!(
            "{}: per-person ground error median {pm:.1} m, p95 {pp:.1} m ({} track-frames); \
             incident location error median {im:.1} m, max {imax:.1} m ({} frames open); \
             opened {}",
            r.name,
            r.person_err.len(),
            r.incident_err.len(),
            r.opened
        );
    }
    for r in &runs[..2] {
        assert!(r.person_err.len() >= 100, "{}: too few geotags", r.name);
        // Exact poses: what is left is the detector's box and the
        // tracker's motion between results (a whole-picture image shift,
        // pulled by the burnt-in panel, made it median 2.0 m, p95 8.3 m).
        let (pm, pp) = (
            percentile(&r.person_err, 0.5),
            percentile(&r.person_err, 0.95),
        );
        assert!(pm <= 1.0, "{}: per-person median {pm:.1} m > 1 m", r.name);
        assert!(pp <= 3.0, "{}: per-person p95 {pp:.1} m > 3 m", r.name);
        assert_eq!(r.opened, 1, "{}: one incident for the gathering", r.name);
        let imax = r.incident_err.iter().copied().fold(0.0, f64::max);
        assert!(
            imax <= 8.0,
            "{}: incident location off by {imax:.1} m",
            r.name
        );
    }
}
