//! Pipeline benchmark: the whole eye (decode → pre-process → model → NMS →
//! tracker → geotag → rules) over a video file, as `tiancha detect` runs
//! it. Prints the run's summary as JSON with the peak RSS.
//!
//! ```text
//! bench_pipeline [VIDEO] [THREADS] [file|live] [--backend tract|ort] [--provider P]
//!                [--ort-library PATH] [--manifest M] [--input-size WxH]
//!                [--tiles RxC] [--extra MANIFEST --extra-fps F [--extra-tiles RxC]]
//! ```
//!
//! `--extra` runs a second model beside the first on the same frames, at
//! most `--extra-fps` frames a second (`inference/src/model_set.rs`, as
//! the companion's `[[camera.extra_models]]`): the hazard model's cost to
//! the eye is this run's `fps` against the same run without it.
//!
//! `file` (default): every frame, as fast as the eye goes — throughput.
//! `live`: the file replayed at its own frame rate with newest-frame
//! delivery, as a camera would feed the eye — frame-to-event latency and
//! drops under live conditions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tiancha_inference::geometry::camera::{
    Attitude, CameraModel, CameraPose, FixedPose, GimbalAngles, GimbalMount, PoseSigma,
};
use tiancha_inference::geometry::LatLonAlt;
use tiancha_inference::geotag::Ground;
use tiancha_inference::pipeline::{EyeOutput, PipelineOptions};
use tiancha_inference::protocol::ZoneRule;
use tiancha_inference::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let video = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "/usr/share/doc/opencv-doc/examples/data/vtest.avi".into());
    let threads: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(2);
    let live = match args.get(3).map(|s| s.as_str()) {
        None | Some("file") => false,
        Some("live") => true,
        Some(other) => panic!("mode {other:?}: expected file or live"),
    };
    // Optional flags after the three positional arguments.
    let flag = |key: &str| {
        args.iter()
            .skip(4)
            .position(|a| a == key)
            .and_then(|i| args.get(i + 5).cloned())
    };
    let manifest = flag("--manifest").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/centernet_mnv3_coco80.toml")
    });
    let backend = BackendOptions {
        kind: flag("--backend").map_or(BackendKind::Tract, |b| b.parse().unwrap()),
        ort: OrtOptions {
            library: flag("--ort-library").map(PathBuf::from),
            provider: flag("--provider").map_or(Provider::Cpu, |p| p.parse().unwrap()),
            ..OrtOptions::default()
        },
    };
    let input_size = flag("--input-size").map(|s| {
        let (w, h) = s.split_once('x').expect("--input-size WxH");
        (w.parse().unwrap(), h.parse().unwrap())
    });
    let tiles = |key: &str| {
        flag(key).map(|s| {
            let (r, c) = s.split_once('x').expect("tiles RxC");
            Some(tiancha_inference::manifest::TilingSpec {
                rows: r.parse().unwrap(),
                cols: c.parse().unwrap(),
                overlap: 0.2,
                include_full: false,
            })
        })
    };
    let det = Arc::new(
        Detector::from_manifest_path(
            &manifest,
            &DetectorOptions {
                threads,
                backend: backend.clone(),
                input_size,
                tiling: tiles("--tiles"),
                ..DetectorOptions::default()
            },
        )
        .unwrap(),
    );
    let extras: Vec<tiancha_inference::model_set::ExtraModel> = flag("--extra")
        .map(|m| {
            let d = Detector::from_manifest_path(
                &m,
                &DetectorOptions {
                    threads,
                    backend: backend.clone(),
                    tiling: tiles("--extra-tiles"),
                    ..DetectorOptions::default()
                },
            )
            .unwrap();
            tiancha_inference::model_set::ExtraModel {
                detector: Arc::new(d),
                fps: flag("--extra-fps").map_or(1.0, |f| f.parse().unwrap()),
            }
        })
        .into_iter()
        .collect();
    let schedule =
        tiancha_inference::model_set::ModelSchedule::new(det.manifest(), extras).unwrap();
    eprintln!(
        "bench_pipeline: {} on {}, input {:?}",
        manifest.display(),
        det.backend_name(),
        det.manifest().file.input.shape
    );
    let pose = CameraPose::new(
        0,
        LatLonAlt::new(28.45, 117.94, 70.0 + 8.0),
        Attitude::new(0.0, 0.0, 0.0),
        GimbalAngles::new(0.0, -25.0, 0.0, GimbalMount::Stabilized),
    )
    .with_sigma(PoseSigma::typical());
    let geo = Geotagger::new(
        CameraModel::ideal(768, 576, 60.0),
        Ground::Flat(70.0),
        Arc::new(FixedPose(pose)),
    );
    let eye = Eye::new(
        schedule.manifest().clone(),
        EyeConfig {
            engine: EngineConfig {
                rules: vec![RuleConfig {
                    name: "gathering".into(),
                    zone: None,
                    rule: ZoneRule::Gathering {
                        min_people: 2,
                        radius_m: 2.5,
                        min_duration_s: 4.0,
                    },
                }],
                ..EngineConfig::default()
            },
            ..EyeConfig::default()
        },
        Some(geo),
    )
    .unwrap();
    let mut cfg = SourceConfig::new(video);
    cfg.start_unix_ms = Some(1_700_000_000_000);
    if live {
        cfg.realtime = true;
        cfg.delivery = Some(tiancha_inference::source::Delivery::Newest);
    }
    let src = FrameSource::open(cfg).unwrap();
    let p = Pipeline::start_with(src, det, schedule, eye, PipelineOptions::default()).unwrap();
    let s = p.run_to_end(|o| {
        if let EyeOutput::FrameError(e) = o {
            eprintln!("{e}");
        }
    });
    println!("{}", serde_json::to_string(&s).unwrap());
}
