//! What tracking at the camera's pace costs: the eye's work per camera
//! frame ([`Eye::advance`]: camera-motion warp and prediction of every
//! track, geotag of each counted track's foot point, rules, ground paths,
//! plus the overlay state the video branch draws) and per late detector
//! result ([`Eye::detected`]: rewind, association, replay of the camera
//! frames since), without the detector; with and without the image shift
//! between frames (`EyeConfig::image_motion`; the frames here are black,
//! so it measures the cost, and finds nothing).
//!
//! A camera 60 m up, 45° down, 1280×720 at 30° HFOV, flying east at
//! 2 m/s (the demo's pace) and 30 fps for 10 s towards N people standing
//! in a 20 m square 65-85 m ahead of its start (in view throughout; one
//! gathering rule); the detector (simulated: each person's box projected
//! from the exact pose) sees every 10th frame and its result arrives 8
//! frames later, as from a 3 fps detector with a 270 ms latency.
//!
//! ```text
//! cargo run --release --workspace --example bench_tracking [N...]   (default 7 20 50)
//! ```

use std::sync::Arc;
use std::time::Instant;

use tiancha_inference::geometry::camera::{
    Attitude, CameraModel, CameraPose, GimbalAngles, GimbalMount, PoseSigma, PoseSource,
};
use tiancha_inference::geometry::{LatLonAlt, LocalFrame};
use tiancha_inference::geotag::Ground;
use tiancha_inference::protocol::ZoneRule;
use tiancha_inference::video_out::overlay::overlay_state;
use tiancha_inference::*;

const FPS: f64 = 30.0;
const FRAMES: u64 = 300;
const EVERY: u64 = 10;
const DELAY: u64 = 8;
const T0: i64 = 1_780_000_000_000;

struct Flight(LatLonAlt);

impl Flight {
    fn pose(&self, t: i64) -> CameraPose {
        let s = (t - T0) as f64 / 1000.0;
        let p = LocalFrame::new(self.0).from_ned(nalgebra::Vector3::new(0.0, 2.0 * s, 0.0));
        CameraPose::new(
            t,
            p,
            Attitude::new(0.0, 0.0, 90.0),
            GimbalAngles::new(0.0, -45.0, 0.0, GimbalMount::Stabilized),
        )
        .with_sigma(PoseSigma::typical())
    }
}

struct Poses(Arc<Flight>);

impl PoseSource for Poses {
    fn pose_at(&self, t: i64) -> Option<CameraPose> {
        Some(self.0.pose(t))
    }
}

fn stats(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.3} ms, p95 {:.3} ms, max {:.3} ms",
        p(0.5),
        p(0.95),
        v[v.len() - 1]
    )
}

fn run(n: usize, image_motion: bool) {
    let manifest = Arc::new(
        Manifest::load(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../models/centernet_mnv3_coco80.toml"),
        )
        .unwrap(),
    );
    let person = manifest.class_id("person").unwrap();
    let ground_alt = 70.0;
    let home = LatLonAlt::new(28.4486, 117.9390, ground_alt);
    let flight = Arc::new(Flight(LatLonAlt::new(
        home.lat_deg,
        home.lon_deg,
        ground_alt + 60.0,
    )));
    let model = CameraModel::ideal(1280, 720, 30.0);
    let geotagger = Geotagger::new(
        model,
        Ground::Flat(ground_alt),
        Arc::new(Poses(flight.clone())),
    )
    .with_sigma_px(3.0);
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
        ..EngineConfig::default()
    };
    let mut eye = Eye::new(
        manifest.clone(),
        EyeConfig {
            engine: rules,
            image_motion,
            ..EyeConfig::default()
        },
        Some(geotagger.clone()),
    )
    .unwrap();
    let local = LocalFrame::new(home);
    let side = (n as f64).sqrt().ceil() as usize;
    let people: Vec<LatLonAlt> = (0..n)
        .map(|i| {
            let (r, c) = ((i / side) as f64, (i % side) as f64);
            let step = 20.0 / side as f64;
            local.from_ned(nalgebra::Vector3::new(
                -10.0 + r * step,
                65.0 + c * step,
                0.0,
            ))
        })
        .collect();
    let black = Frame::from_bgr(0, 1280, 720, vec![0; 1280 * 720 * 3], T0).unwrap();
    let detect = |f: &Frame| -> Vec<Detection> {
        let geo = geotagger.frame(f.capture_unix_ms, 1280, 720).unwrap();
        people
            .iter()
            .filter_map(|p| {
                let foot = geo.view.ground_to_pixel(*p)?;
                let head = geo.view.ground_to_pixel(LatLonAlt::new(
                    p.lat_deg,
                    p.lon_deg,
                    p.alt_m + 1.7,
                ))?;
                let h = (foot.y - head.y) as f32;
                let (x, y) = (foot.x as f32, foot.y as f32);
                (x > 0.0 && x < 1280.0 && y > 0.0 && y < 720.0).then(|| Detection {
                    bbox: BBox::new(x - 0.15 * h, y - h, x + 0.15 * h, y),
                    score: 0.8,
                    class_id: person,
                })
            })
            .collect()
    };
    let (mut adv, mut det) = (Vec::new(), Vec::new());
    let mut frames = Vec::new();
    let mut tracks = 0;
    for i in 0..FRAMES {
        let mut f = black.clone();
        f.seq = i;
        f.capture_unix_ms = T0 + (i as f64 * 1000.0 / FPS).round() as i64;
        frames.push(f.clone());
        if i >= DELAY && (i - DELAY).is_multiple_of(EVERY) {
            let k = (i - DELAY) as usize;
            let d = detect(&frames[k]);
            let t0 = Instant::now();
            eye.detected(&frames[k], &d).unwrap();
            det.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let t0 = Instant::now();
        let o = eye.advance(&f).unwrap().unwrap();
        let st = overlay_state(
            f.width,
            f.height,
            f.seq,
            f.capture_unix_ms,
            &o.tracks,
            &o.open,
            &|c| manifest.class_name(c).to_string(),
        );
        std::hint::black_box(st);
        adv.push(t0.elapsed().as_secs_f64() * 1e3);
        tracks = tracks.max(o.tracks.len());
    }
    // After the first 2 s (tracks being born). The incident opens (and a
    // snapshot JPEG is made) on one frame: the max.
    println!(
        "{n} people ({tracks} tracks), image shift {}: per camera frame {}; per late result (replay of {} frames) {}; timeline {:?}",
        if image_motion { "on" } else { "off" },
        stats(&mut adv[60..].to_vec()),
        DELAY - 1,
        stats(&mut det),
        eye.timeline_stats()
    );
}

fn main() {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number of people"))
        .collect();
    for n in if ns.is_empty() { vec![7, 20, 50] } else { ns } {
        run(n, false);
        run(n, true);
    }
}
