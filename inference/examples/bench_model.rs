//! Model-only benchmark: tract and onnxruntime (the `ort` backend) side by
//! side in one process, on the same pre-processed vtest.avi frames, the
//! same threads and the same subgraph (the raw heads; by default the
//! dynamic heads model `models/centernet_mnv3_coco80_heads.toml`),
//! interleaved rounds so that machine noise hits both alike.
//! `inference/bench/run.sh` drives it.
//!
//! ```text
//! bench_model dump DIR N [--manifest M] [--input-size WxH]
//!     pre-process N vtest.avi frames (whole frames) into DIR/*.f32
//! bench_model run DIR [--engines tract,ort] [--threads T] [--reps R] [--rounds K]
//!                     [--batch B[,B...]] [--manifest M] [--input-size WxH] [--model-only]
//!                     [--provider cpu|cuda|tensorrt|openvino] [--ort-library PATH]
//!                     [--device-id N] [--trt-cache-dir DIR] [--trt-fp16]
//!     time each engine R passes over the frames per round, K rounds;
//!     prints one JSON line per engine and round, then one summary line
//! ```
//!
//! What is timed is the detector step the eye runs on a prepared input:
//! the model and the decoding of its outputs (CenterNet heads → boxes),
//! not NMS; with `--model-only`, the model's run alone. With `--batch B` each run takes B frames as one tensor (models
//! with a symbolic batch); the figure is per frame. Several sizes
//! (`--batch 1,5`) are contenders of their own, interleaved like the
//! engines. The onnxruntime
//! library: `--ort-library`, else `ORT_DYLIB_PATH`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tiancha_inference::source::{Delivery, SourceConfig, SourceItem};
use tiancha_inference::{
    BackendKind, BackendOptions, Detector, DetectorOptions, FrameSource, OrtOptions, Provider,
};

/// The raw-heads model with symbolic N, H, W when it is there, else the
/// shipped full model (tract cuts it to the heads itself; onnxruntime
/// runs what the outputs need).
fn manifest_default() -> PathBuf {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let heads = models.join("centernet_mnv3_coco80_heads.toml");
    if heads.exists() {
        heads
    } else {
        models.join("centernet_mnv3_coco80.toml")
    }
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

/// `--key value` flags after the positional arguments.
struct Flags(Vec<String>);

impl Flags {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().position(|a| a == key).map(|i| {
            self.0
                .get(i + 1)
                .map(|s| s.as_str())
                .unwrap_or_else(|| usage(key))
        })
    }
    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|a| a == key)
    }
    fn parse<T: std::str::FromStr>(&self, key: &str, default: T) -> T
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|e| {
                eprintln!("{key} {v}: {e}");
                std::process::exit(2)
            }),
        }
    }
    fn manifest(&self) -> PathBuf {
        self.get("--manifest")
            .map(PathBuf::from)
            .unwrap_or_else(manifest_default)
    }
    fn input_size(&self) -> Option<(u32, u32)> {
        self.get("--input-size").map(|s| {
            s.split_once('x')
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                .unwrap_or_else(|| usage("--input-size WxH"))
        })
    }
}

fn usage(what: &str) -> ! {
    eprintln!(
        "bench_model: {what}\nusage: bench_model dump DIR N [--manifest M] [--input-size WxH]\n       \
         bench_model run DIR [--engines tract,ort] [--threads T] [--reps R] [--rounds K] [--batch B[,B...]] \
         [--manifest M] [--input-size WxH] [--model-only] [--provider P] [--ort-library PATH] [--device-id N] \
         [--trt-cache-dir DIR] [--trt-fp16]"
    );
    std::process::exit(2)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn dump(dir: &Path, n: u64, flags: &Flags) {
    std::fs::create_dir_all(dir).unwrap();
    let det = Detector::from_manifest_path(
        flags.manifest(),
        &DetectorOptions {
            input_size: flags.input_size(),
            tiling: Some(None),
            ..DetectorOptions::default()
        },
    )
    .unwrap_or_else(|e| usage(&e.to_string()));
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
                let bytes: Vec<u8> = p
                    .slice_input(0)
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect();
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
    eprintln!(
        "{written} frames of {:?} in {}",
        det.manifest().file.input.shape,
        dir.display()
    );
}

fn run(dir: &Path, flags: &Flags) {
    let threads: usize = flags.parse("--threads", 2);
    let reps: usize = flags.parse("--reps", 3);
    let rounds: usize = flags.parse("--rounds", 5);
    let batch_sizes: Vec<usize> = flags
        .get("--batch")
        .unwrap_or("1")
        .split(',')
        .map(|b| {
            b.parse::<usize>()
                .unwrap_or_else(|_| usage("--batch B[,B...]"))
                .max(1)
        })
        .collect();
    let provider: Provider = flags.parse("--provider", Provider::Cpu);
    let engines: Vec<BackendKind> = flags
        .get("--engines")
        .unwrap_or("tract,ort")
        .split(',')
        .map(|e| e.parse().unwrap_or_else(|e: String| usage(&e)))
        .collect();
    let manifest = flags.manifest();
    let input_size = flags.input_size();
    // `--model-only`: time the model's run alone, without decoding the
    // heads (the work a bare runtime does on the same graph).
    let model_only = flags.has("--model-only");

    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| usage(&format!("{}: {e}", dir.display())))
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
    if inputs.is_empty() {
        usage(&format!("no *.f32 in {}", dir.display()));
    }

    // The engines, loaded once; one contender per engine and batch size.
    struct Contender {
        det: std::sync::Arc<Detector>,
        batch: usize,
        batches: Vec<Vec<f32>>,
        load_s: f64,
        first_ms: f64,
        medians: Vec<f64>,
    }
    let mut contenders: Vec<Contender> = Vec::new();
    for kind in &engines {
        let t0 = Instant::now();
        let det = Detector::from_manifest_path(
            &manifest,
            &DetectorOptions {
                threads,
                low_score_floor: None,
                input_size,
                backend: BackendOptions {
                    kind: *kind,
                    ort: OrtOptions {
                        library: flags.get("--ort-library").map(PathBuf::from),
                        provider,
                        device_id: flags.parse("--device-id", 0),
                        trt_cache_dir: flags.get("--trt-cache-dir").map(PathBuf::from),
                        trt_fp16: flags.has("--trt-fp16"),
                        openvino_device: flags.get("--openvino-device").map(String::from),
                    },
                },
                ..DetectorOptions::default()
            },
        )
        .unwrap_or_else(|e| usage(&format!("{kind}: {e}")));
        let det = std::sync::Arc::new(det);
        let load_s = t0.elapsed().as_secs_f64();
        let len: usize = det.manifest().file.input.shape.iter().product();
        if inputs[0].len() != len {
            usage(&format!(
                "the frames in {} have {} values, the model's input {:?} needs {len}: dump them with the same --manifest/--input-size",
                dir.display(),
                inputs[0].len(),
                det.manifest().file.input.shape
            ));
        }
        for &batch in &batch_sizes {
            // The batches: B frames back to back, the frames taken in turn.
            let batches: Vec<Vec<f32>> = (0..inputs.len().div_ceil(batch))
                .map(|k| {
                    (0..batch)
                        .flat_map(|j| inputs[(k * batch + j) % inputs.len()].iter().copied())
                        .collect()
                })
                .collect();
            // Warm up (and make the batch plan).
            let t = Instant::now();
            det.infer_raw_batch(batches[0].clone(), batch)
                .unwrap_or_else(|e| usage(&format!("{kind}: batch {batch}: {e}")));
            let first_ms = t.elapsed().as_secs_f64() * 1000.0;
            contenders.push(Contender {
                det: det.clone(),
                batch,
                batches,
                load_s,
                first_ms,
                medians: Vec::new(),
            });
        }
    }

    let shape = contenders[0].det.manifest().file.input.shape.clone();
    for round in 0..rounds {
        // Alternate which contender goes first.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..contenders.len()).collect()
        } else {
            (0..contenders.len()).rev().collect()
        };
        for i in order {
            let c = &mut contenders[i];
            let mut ms = Vec::new();
            for _ in 0..reps {
                for b in c.batches.iter() {
                    let x = b.clone();
                    let t = Instant::now();
                    if model_only {
                        c.det.run_model(x, c.batch).unwrap();
                    } else {
                        c.det.infer_raw_batch(x, c.batch).unwrap();
                    }
                    ms.push(t.elapsed().as_secs_f64() * 1000.0 / c.batch as f64);
                }
            }
            let m = median(&mut ms);
            c.medians.push(m);
            println!(
                "{{\"engine\":\"{}\",\"round\":{round},\"threads\":{threads},\"batch\":{},\"input\":{shape:?},\"runs\":{},\"median_ms_per_frame\":{m:.2},\"min_ms\":{:.2},\"load_s\":{:.2},\"first_run_ms\":{:.0},\"peak_rss_mb\":{:.0}}}",
                c.det.backend_name(),
                c.batch,
                ms.len(),
                ms[0],
                c.load_s,
                c.first_ms,
                peak_rss_mb()
            );
        }
    }
    let summary: Vec<(String, f64, Vec<f64>)> = contenders
        .iter()
        .map(|c| {
            let name = if batch_sizes.len() > 1 {
                format!("{} batch {}", c.det.backend_name(), c.batch)
            } else {
                c.det.backend_name().to_string()
            };
            let rounds = c.medians.clone();
            (name, median(&mut c.medians.clone()), rounds)
        })
        .collect();
    let parts: Vec<String> = summary
        .iter()
        .map(|(n, m, r)| {
            let r: Vec<String> = r.iter().map(|x| format!("{x:.0}")).collect();
            format!(
                "{n} {m:.1} ms/frame ({:.1} fps; rounds {})",
                1000.0 / m,
                r.join(" ")
            )
        })
        .collect();
    let ratio = match summary.as_slice() {
        [(a, x, _), (b, y, _)] => format!("; {a}/{b} = {:.2}", x / y),
        _ => String::new(),
    };
    eprintln!(
        "median of {rounds} round medians, input {shape:?}, batch {}, {threads} thread(s), {}: {}{ratio}",
        batch_sizes
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(","),
        manifest.file_name().unwrap().to_string_lossy(),
        parts.join(", ")
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(|s| s.as_str()) {
        Some("dump") if args.len() >= 4 => {
            let n = args[3].parse().unwrap_or_else(|_| usage("N"));
            dump(Path::new(&args[2]), n, &Flags(args[4..].to_vec()))
        }
        Some("run") if args.len() >= 3 => run(Path::new(&args[2]), &Flags(args[3..].to_vec())),
        _ => usage("a command"),
    }
}
