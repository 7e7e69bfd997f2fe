//! Video-out benchmark: inference frames/s with the video out enabled (and
//! a viewer pulling the RTSP stream) against video out disabled, side by
//! side in one process, same model, same clip, interleaved rounds.
//!
//! ```text
//! bench_video [VIDEO] [ROUNDS] [SECONDS] [file|live]
//! ```
//!
//! `live` (default): the clip replayed at its own frame rate with
//! newest-frame delivery, as a camera feeds the companion; the video
//! branch then runs at its full configured rate (10 fps, 640×360,
//! 1000 kbit/s) whatever the eye manages — the deployed case. `file`:
//! every frame as fast as the eye goes (the video branch sees only the
//! frames the eye lets the decoder produce).
//!
//! The viewer is an in-process `rtspsrc ! rtph264depay ! fakesink`: it
//! makes the encoder run (nobody watching, nothing is encoded) without
//! charging a decoder to the drone's CPU. Prints one JSON line per run
//! and a summary line.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use tiancha_inference::pipeline::{EyeOutput, PipelineOptions};
use tiancha_inference::protocol::ZoneRule;
use tiancha_inference::video_out::{VideoConfig, VideoOut, OVERLAY_MAX_AGE};
use tiancha_inference::*;

fn eye(det: &Detector) -> Eye {
    Eye::new(
        det.manifest().clone(),
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
        None,
    )
    .unwrap()
}

struct Run {
    fps: f64,
    frames: u64,
    dropped: u64,
    video_frames: u64,
    overlay_shapes: usize,
}

fn run(det: &Arc<Detector>, video: &str, secs: u64, live: bool, with_video: bool) -> Run {
    let out = with_video.then(|| {
        VideoOut::start(&VideoConfig {
            enabled: true,
            rtsp_port: 0,
            ..VideoConfig::default()
        })
        .unwrap()
    });
    let viewer = out.as_ref().map(|o| {
        let p = gst::parse::launch(&format!(
            "rtspsrc location={} latency=100 protocols=udp ! rtph264depay ! fakesink sync=false",
            o.url()
        ))
        .unwrap();
        p.set_state(gst::State::Playing).unwrap();
        p
    });
    let mut cfg = SourceConfig::new(video);
    cfg.start_unix_ms = Some(1_700_000_000_000);
    if live {
        cfg.realtime = true;
        cfg.delivery = Some(source::Delivery::Newest);
    }
    cfg.video = out.as_ref().map(|o| o.tap());
    let src = FrameSource::open(cfg).unwrap();
    let p = Pipeline::start(src, det.clone(), eye(det), PipelineOptions::default()).unwrap();
    let t0 = Instant::now();
    let mut summary = None;
    while summary.is_none() {
        if t0.elapsed() > Duration::from_secs(secs) {
            p.request_stop();
        }
        match p.recv(Duration::from_millis(200)) {
            Some(EyeOutput::End(s)) => summary = Some(*s),
            Some(EyeOutput::FrameError(e)) => eprintln!("{e}"),
            _ => {}
        }
    }
    let s = summary.unwrap();
    let (video_frames, overlay_shapes) = match &out {
        Some(o) => (
            o.stats().frames_sent,
            o.overlay()
                .latest(OVERLAY_MAX_AGE * 10)
                .map_or(0, |st| st.shapes.len()),
        ),
        None => (0, 0),
    };
    if let Some(v) = viewer {
        let _ = v.set_state(gst::State::Null);
    }
    drop(p);
    drop(out);
    Run {
        fps: s.fps,
        frames: s.frames,
        dropped: s.source.dropped,
        video_frames,
        overlay_shapes,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let video = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "/usr/share/doc/opencv-doc/examples/data/vtest.avi".into());
    let rounds: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(3);
    let secs: u64 = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(40);
    let live = match args.get(4).map(|s| s.as_str()) {
        None | Some("live") => true,
        Some("file") => false,
        Some(other) => panic!("mode {other:?}: expected live or file"),
    };
    gst::init().unwrap();
    let det = Arc::new(
        Detector::from_manifest_path(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/centernet_mnv3_coco80.toml"),
            &DetectorOptions::default(),
        )
        .unwrap(),
    );
    let (mut off, mut on) = (vec![], vec![]);
    for r in 0..rounds {
        // Alternate the order so that drift in the machine's load does
        // not favour one side.
        let order = if r % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with_video in order {
            let x = run(&det, &video, secs, live, with_video);
            println!(
                "{{\"round\":{r},\"video\":{with_video},\"fps\":{:.3},\"frames\":{},\"dropped\":{},\"video_frames_sent\":{},\"overlay_shapes\":{}}}",
                x.fps, x.frames, x.dropped, x.video_frames, x.overlay_shapes
            );
            if with_video {
                on.push(x.fps);
            } else {
                off.push(x.fps);
            }
        }
    }
    let ratios: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a / b).collect();
    println!(
        "{{\"summary\":true,\"mode\":\"{}\",\"median_fps_off\":{:.3},\"median_fps_on\":{:.3},\"median_ratio\":{:.3},\"ratios\":{:?}}}",
        if live { "live" } else { "file" },
        median(off),
        median(on),
        median(ratios.clone()),
        ratios.iter().map(|r| (r * 1000.0).round() / 1000.0).collect::<Vec<_>>()
    );
}
