//! Model-only benchmark, the tract side (the onnxruntime side is
//! `inference/bench/ort_bench.py`; `inference/bench/run.sh` runs both side
//! by side).
//!
//! ```text
//! bench_model dump DIR N            # pre-process N vtest.avi frames into DIR/*.f32
//! bench_model tract DIR THREADS REPS [MANIFEST]
//!                                   # time the model on them; prints JSON
//! ```
//!
//! The tract figure is the whole detector step the eye runs: model and
//! decoding of its outputs (CenterNet heads → boxes), not NMS.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tiancha_inference::source::{Delivery, SourceConfig, SourceItem};
use tiancha_inference::{Detector, DetectorOptions, FrameSource};

fn manifest_default() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/centernet_mnv3_coco80.toml")
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(|s| s.as_str()) {
        Some("dump") => {
            let dir = PathBuf::from(&args[2]);
            let n: u64 = args[3].parse().unwrap();
            std::fs::create_dir_all(&dir).unwrap();
            let det = Detector::from_manifest_path(manifest_default(), &DetectorOptions::default())
                .unwrap();
            let mut pre = det.preprocessor();
            let mut cfg = SourceConfig::new("/usr/share/doc/opencv-doc/examples/data/vtest.avi");
            cfg.delivery = Some(Delivery::Every);
            let src = FrameSource::open(cfg).unwrap();
            let step = 795 / n;
            let mut written = 0;
            while written < n {
                match src.recv(Duration::from_secs(30)).unwrap() {
                    SourceItem::Frame(f) if f.seq % step == 0 => {
                        let p = det.prepare(&mut pre, &f).unwrap();
                        let input = p.slice_input(0);
                        let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
                        std::fs::write(dir.join(format!("{:04}.f32", f.seq)), bytes).unwrap();
                        written += 1;
                    }
                    SourceItem::End(r) => {
                        r.unwrap();
                        break;
                    }
                    _ => {}
                }
            }
        }
        Some("tract") => {
            let dir = PathBuf::from(&args[2]);
            let threads: usize = args[3].parse().unwrap();
            let reps: usize = args[4].parse().unwrap();
            let manifest = args
                .get(5)
                .map(PathBuf::from)
                .unwrap_or_else(manifest_default);
            let t0 = Instant::now();
            let det = Detector::from_manifest_path(
                &manifest,
                &DetectorOptions {
                    threads,
                    low_score_floor: None,
                    ..DetectorOptions::default()
                },
            )
            .unwrap();
            let load_s = t0.elapsed().as_secs_f64();
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "f32"))
                .collect();
            files.sort();
            let inputs: Vec<Vec<f32>> = files
                .iter()
                .map(|p| {
                    std::fs::read(p)
                        .unwrap()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect()
                })
                .collect();
            // Warm up.
            det.infer_raw(inputs[0].clone()).unwrap();
            let mut ms = Vec::new();
            for _ in 0..reps {
                for x in &inputs {
                    let x = x.clone();
                    let t = Instant::now();
                    det.infer_raw(x).unwrap();
                    ms.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            ms.sort_by(f64::total_cmp);
            let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
            println!(
                "{{\"engine\":\"tract\",\"threads\":{threads},\"runs\":{},\"median_ms\":{:.2},\"p95_ms\":{:.2},\"min_ms\":{:.2},\"load_s\":{load_s:.2},\"peak_rss_mb\":{:.1}}}",
                ms.len(),
                pct(0.5),
                pct(0.95),
                ms[0],
                peak_rss_mb()
            );
        }
        _ => {
            eprintln!("usage: bench_model dump DIR N | tract DIR THREADS REPS [MANIFEST]");
            std::process::exit(2);
        }
    }
}
