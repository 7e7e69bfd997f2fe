//! `tiancha detect`: run the eye on a video file, a stream or a folder of
//! images; write incidents (as wire-contract alerts and incident updates)
//! to a JSON-lines file, optionally an annotated video; show progress and
//! a summary.
//!
//! ```text
//! tiancha detect vtest.avi --camera-height 8 --camera-pitch -25 \
//!     --gathering 3,2.5,4 --out events.jsonl --annotated out.mp4
//! ```
//!
//! onnxruntime instead of tract, and the whole frame at its own size on a
//! model with symbolic input height and width:
//!
//! ```text
//! tiancha detect vtest.avi --out events.jsonl --backend ort \
//!     --ort-library .venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.23.2 \
//!     --model models/centernet_mnv3_coco80_heads.toml --input-size 768x576
//! ```
//!
//! Each line of `--out` is `{"type": "alert" | "incident_update" |
//! "source" | "summary", "data": …}`; alerts and updates are exactly what
//! the companion would publish.
//!
//! A model is scored on a folder of unrelated images with `--frames-out`:
//! one JSON line per frame with its file and the detector's detections
//! (see [`FrameLine`]). The rules are the ones the model can feed
//! (gathering when it has people classes, hazard when it has hazard
//! classes) unless `--rules` names them, so a hazard-only model runs with
//! no extra flags:
//!
//! ```text
//! tiancha detect photos/ --model models/fire_smoke.toml \
//!     --out events.jsonl --frames-out frames.jsonl
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tiancha_inference::alert::{self, Outgoing};
use tiancha_inference::annotate;
use tiancha_inference::geometry::camera::{
    Attitude, CameraModel, CameraPose, FixedPose, GimbalAngles, GimbalMount, PoseHistory,
    PoseSigma, PoseSource,
};
use tiancha_inference::geometry::LatLonAlt;
use tiancha_inference::geotag::{Geotagger, Ground};
use tiancha_inference::manifest::Manifest;
use tiancha_inference::manifest::TilingSpec;
use tiancha_inference::opencv::core::MatTraitConst;
use tiancha_inference::pipeline::{EyeOutput, PipelineOptions};
use tiancha_inference::source::SourceConfig;
use tiancha_inference::writer::VideoWriter;
use tiancha_inference::{
    BackendKind, BackendOptions, Detection, Detector, DetectorOptions, EngineConfig, Eye,
    EyeConfig, FrameSource, OrtOptions, Pipeline, Provider, RuleConfig,
};
use tiancha_protocol::{DetectionZone, DroneId, ZoneRule};

/// Arguments of `tiancha detect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Video file, image folder, rtsp://…, udp://host:port?codec=h264, v4l2:///dev/video0 or test://ball.
    pub input: String,
    /// Model manifest (TOML). Default: models/centernet_mnv3_coco80.toml.
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// Camera poses over time: JSON lines of CameraPose (t_unix_ms, position, attitude, gimbal, sigma).
    #[arg(long, conflicts_with_all = ["camera_height"])]
    pub pose: Option<PathBuf>,
    /// Fixed camera: height above the ground, metres.
    #[arg(long)]
    pub camera_height: Option<f64>,
    /// Fixed camera: pitch, degrees (negative looks down, -90 is nadir).
    #[arg(long, allow_hyphen_values = true, default_value_t = -30.0)]
    pub camera_pitch: f64,
    /// Fixed camera: heading, degrees from north.
    #[arg(long, default_value_t = 0.0)]
    pub camera_heading: f64,
    /// Fixed camera position and ground altitude: LAT,LON[,GROUND_ALT_M].
    #[arg(long, default_value = "0,0,0", allow_hyphen_values = true)]
    pub origin: String,
    /// Horizontal field of view of an ideal camera, degrees (ignored with --camera).
    #[arg(long, default_value_t = 60.0)]
    pub hfov: f64,
    /// Calibrated camera (TOML or JSON CameraModel: intrinsics + distortion).
    #[arg(long)]
    pub camera: Option<PathBuf>,
    /// Ground altitude (m AMSL) for --pose; default: the --origin altitude.
    #[arg(long, allow_hyphen_values = true)]
    pub ground_alt: Option<f64>,
    /// Wall-clock time of the first frame of a file (Unix ms); default: the first pose, or now.
    #[arg(long)]
    pub start_unix_ms: Option<i64>,
    /// Where to write events (JSON lines).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write an annotated video (.mp4, .mkv or .avi).
    #[arg(long)]
    pub annotated: Option<PathBuf>,
    /// Gathering rule everywhere in view: MIN_PEOPLE,RADIUS_M,DURATION_S.
    #[arg(long, default_value = "5,10,30")]
    pub gathering: String,
    /// Hazard rule for the model's hazard classes: K,M (seen in K of M frames).
    #[arg(long, default_value = "3,5")]
    pub hazard: String,
    /// Rules everywhere in view, comma-separated: gathering, hazard, or
    /// none (zones only). Default: those the model's classes can feed.
    #[arg(long)]
    pub rules: Option<String>,
    /// Also write each frame's detections (JSON lines: file, seq, time,
    /// size, and every detection with its class, score and box).
    #[arg(long)]
    pub frames_out: Option<PathBuf>,
    /// Detection zones (JSON array of the wire contract's DetectionZone).
    #[arg(long)]
    pub zones: Option<PathBuf>,
    /// An incident closes after its condition has been false this long, s.
    #[arg(long, default_value_t = 10.0)]
    pub close_after: f64,
    /// Least time between updates of one incident, s.
    #[arg(long, default_value_t = 10.0)]
    pub update_interval: f64,
    /// Tiling: ROWSxCOLS (e.g. 2x2), or "off".
    #[arg(long)]
    pub tiling: Option<String>,
    /// Threads for the model (tract's matrix products, onnxruntime's intra-op pool).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Inference engine: tract (pure Rust) or ort (onnxruntime, needs --ort-library or ORT_DYLIB_PATH).
    #[arg(long, default_value = "tract")]
    pub backend: BackendKind,
    /// With --backend ort: execution provider (cpu, cuda, tensorrt, openvino); one that cannot load is an error.
    #[arg(long, default_value = "cpu")]
    pub provider: Provider,
    /// With --backend ort: GPU index for cuda and tensorrt.
    #[arg(long, default_value_t = 0)]
    pub device_id: u32,
    /// With --backend ort: the libonnxruntime.so to load (default: $ORT_DYLIB_PATH).
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// With --provider tensorrt: cache built engines in this directory.
    #[arg(long)]
    pub trt_cache_dir: Option<PathBuf>,
    /// With --provider tensorrt: allow FP16 kernels.
    #[arg(long)]
    pub trt_fp16: bool,
    /// Model input size WxH instead of the manifest's (models with symbolic H and W only), e.g. 1280x736.
    #[arg(long, value_parser = parse_size)]
    pub input_size: Option<(u32, u32)>,
    /// Stop after this many frames (the two or three already in the pipeline are finished too).
    #[arg(long)]
    pub max_frames: Option<u64>,
    /// Give up on a live stream that has not delivered a frame within this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Reconnect attempts for a live stream before giving up.
    #[arg(long, default_value_t = 3)]
    pub reconnects: u32,
    /// Drone id written into alerts.
    #[arg(long, default_value = "local")]
    pub drone_id: String,
    /// Leave the JPEG snapshot out of alerts (smaller output).
    #[arg(long)]
    pub no_snapshots: bool,
    /// No progress line.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Which of the everywhere-rules run (gathering, hazard): those `--rules`
/// names, else those the model's classes can feed. Naming one the model
/// cannot feed is an error that says why.
fn wanted_rules(rules: Option<&str>, manifest: &Manifest) -> anyhow::Result<(bool, bool)> {
    let can = (!manifest.people.is_empty(), !manifest.hazards.is_empty());
    let Some(list) = rules else {
        return Ok(can);
    };
    let mut want = (false, false);
    for r in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        match r {
            "gathering" if !can.0 => bail!(
                "--rules gathering: model {:?} has no people classes (events.people) to count",
                manifest.file.name
            ),
            "hazard" if !can.1 => bail!(
                "--rules hazard: model {:?} has no hazard classes (events.hazards)",
                manifest.file.name
            ),
            "gathering" => want.0 = true,
            "hazard" => want.1 = true,
            "none" => {}
            other => bail!("--rules: unknown rule {other:?} (gathering, hazard or none)"),
        }
    }
    Ok(want)
}

/// One line of `--frames-out`.
#[derive(serde::Serialize)]
pub struct FrameLine {
    /// The image's file name (folders), else null.
    pub file: Option<String>,
    pub seq: u64,
    pub capture_unix_ms: i64,
    pub width: u32,
    pub height: u32,
    /// Every detection the detector returned (scores down to the
    /// tracker's floor; the manifest's class thresholds are in
    /// `above_threshold`).
    pub detections: Vec<DetectionLine>,
}

#[derive(serde::Serialize)]
pub struct DetectionLine {
    pub class: String,
    pub class_id: usize,
    pub score: f32,
    pub above_threshold: bool,
    /// x1, y1, x2, y2 in the frame's pixels.
    pub bbox: [f32; 4],
}

impl FrameLine {
    fn of(frame: &tiancha_inference::Frame, dets: &[Detection], manifest: &Manifest) -> Self {
        Self {
            file: frame.name.as_deref().map(str::to_string),
            seq: frame.seq,
            capture_unix_ms: frame.capture_unix_ms,
            width: frame.width,
            height: frame.height,
            detections: dets
                .iter()
                .map(|d| DetectionLine {
                    class: manifest.class_name(d.class_id).to_string(),
                    class_id: d.class_id,
                    score: d.score,
                    above_threshold: d.score >= manifest.thresholds[d.class_id],
                    bbox: [d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2],
                })
                .collect(),
        }
    }
}

/// `WxH`, e.g. `1280x736`.
fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?}: expected WxH, e.g. 1280x736"))?;
    let n = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|e| format!("{s:?}: {v:?} is not a size: {e}"))
    };
    Ok((n(w)?, n(h)?))
}

fn parse_list(s: &str, n: usize, what: &str) -> anyhow::Result<Vec<f64>> {
    let v: Result<Vec<f64>, _> = s.split(',').map(|x| x.trim().parse::<f64>()).collect();
    let v = v.with_context(|| format!("{what} {s:?}: not a list of numbers"))?;
    if v.len() != n {
        bail!("{what} {s:?}: expected {n} comma-separated numbers");
    }
    Ok(v)
}

/// Where the models are: --model, else `models/` here, next to the binary, or in the source tree.
fn default_manifest() -> anyhow::Result<PathBuf> {
    let name = "centernet_mnv3_coco80.toml";
    let mut candidates = vec![PathBuf::from("models").join(name)];
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(4) {
            candidates.push(up.join("models").join(name));
        }
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(name),
    );
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .with_context(|| {
            format!("no model given and {name} not found in {candidates:?}; use --model")
        })
}

fn load_poses(path: &Path) -> anyhow::Result<PoseHistory> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading poses {}", path.display()))?;
    let mut h = PoseHistory::new(1_000_000);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let p: CameraPose = tiancha_inference::textio::parse_json(line)
            .with_context(|| format!("{}:{}: not a camera pose", path.display(), i + 1))?;
        h.push(p);
    }
    if h.is_empty() {
        bail!("{}: no poses", path.display());
    }
    Ok(h)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let manifest_path = match &args.model {
        Some(m) => m.clone(),
        None => default_manifest()?,
    };
    let tiling = match args.tiling.as_deref() {
        None => None,
        Some("off") => Some(None),
        Some(t) => {
            let (r, c) = t
                .split_once(['x', 'X'])
                .with_context(|| format!("--tiling {t:?}: expected ROWSxCOLS"))?;
            Some(Some(TilingSpec {
                rows: r.parse().context("--tiling rows")?,
                cols: c.parse().context("--tiling cols")?,
                overlap: 0.2,
                include_full: true,
            }))
        }
    };
    let opts = DetectorOptions {
        threads: args.threads.max(1),
        tiling,
        backend: BackendOptions {
            kind: args.backend,
            ort: OrtOptions {
                library: args.ort_library.clone(),
                provider: args.provider,
                device_id: args.device_id,
                trt_cache_dir: args.trt_cache_dir.clone(),
                trt_fp16: args.trt_fp16,
                openvino_device: None,
            },
        },
        input_size: args.input_size,
        ..DetectorOptions::default()
    };
    let t_load = Instant::now();
    let detector = Arc::new(
        Detector::from_manifest_path(&manifest_path, &opts)
            .with_context(|| format!("loading model {}", manifest_path.display()))?,
    );
    let manifest = detector.manifest().clone();
    tracing::info!(
        "model {} loaded in {:.2} s ({} classes, {} backend, input {:?}{})",
        manifest.file.name,
        t_load.elapsed().as_secs_f64(),
        manifest.num_classes(),
        detector.backend_name(),
        manifest.file.input.shape,
        if detector.batches_slices() {
            ", slices batched"
        } else {
            ""
        }
    );

    // Rules.
    let g = parse_list(&args.gathering, 3, "--gathering")?;
    let hz = parse_list(&args.hazard, 2, "--hazard")?;
    let (gathering, hazard) = wanted_rules(args.rules.as_deref(), &manifest)?;
    let mut rules = vec![];
    if gathering {
        rules.push(RuleConfig {
            name: "gathering".into(),
            zone: None,
            rule: ZoneRule::Gathering {
                min_people: g[0] as u32,
                radius_m: g[1],
                min_duration_s: g[2],
            },
        });
    }
    if hazard {
        rules.push(RuleConfig {
            name: "hazard".into(),
            zone: None,
            rule: ZoneRule::Hazard {
                classes: vec![],
                k_of_m: (hz[0] as u32, hz[1] as u32),
            },
        });
    }
    if let Some(z) = &args.zones {
        let text =
            std::fs::read_to_string(z).with_context(|| format!("reading zones {}", z.display()))?;
        let zones: Vec<DetectionZone> = tiancha_inference::textio::parse_json(&text)
            .with_context(|| format!("{}: not a JSON array of detection zones", z.display()))?;
        rules.extend(zones.iter().map(RuleConfig::from));
    }
    let engine = EngineConfig {
        rules,
        close_after_s: args.close_after,
        update_interval_s: args.update_interval,
        ..EngineConfig::default()
    };

    // Camera and poses.
    let origin = parse_list(&args.origin, 3, "--origin").or_else(|_| {
        parse_list(&args.origin, 2, "--origin").map(|mut v| {
            v.push(0.0);
            v
        })
    })?;
    let camera: Option<CameraModel> = match &args.camera {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading camera {}", p.display()))?;
            Some(if p.extension().is_some_and(|e| e == "json") {
                tiancha_inference::textio::parse_json(&text)?
            } else {
                tiancha_inference::textio::parse_toml(&text)
                    .with_context(|| format!("{}: not a camera model", p.display()))?
            })
        }
        None => None,
    };
    let mut start_unix_ms = args.start_unix_ms;
    let poses: Option<(Arc<dyn PoseSource>, f64)> = if let Some(p) = &args.pose {
        let h = load_poses(p)?;
        if start_unix_ms.is_none() {
            start_unix_ms = h.first_t_unix_ms();
        }
        Some((Arc::new(h), args.ground_alt.unwrap_or(origin[2])))
    } else if let Some(h) = args.camera_height {
        if h.is_nan() || h <= 0.0 {
            bail!("--camera-height {h}: must be above the ground");
        }
        let pose = CameraPose::new(
            0,
            LatLonAlt::new(origin[0], origin[1], origin[2] + h),
            Attitude::new(0.0, 0.0, args.camera_heading),
            GimbalAngles::new(0.0, args.camera_pitch, 0.0, GimbalMount::Stabilized),
        )
        .with_sigma(PoseSigma {
            vertical_m: 0.5,
            pitch_deg: 1.0,
            yaw_deg: 2.0,
            ..PoseSigma::default()
        });
        Some((Arc::new(FixedPose(pose)), origin[2]))
    } else {
        None
    };

    // Source.
    let mut scfg = SourceConfig::new(args.input.clone());
    scfg.start_unix_ms = start_unix_ms;
    scfg.connect_timeout = Duration::from_secs_f64(args.connect_timeout.max(0.1));
    scfg.backoff.max_attempts = Some(args.reconnects.max(1));
    let source = FrameSource::open(scfg).with_context(|| format!("opening {}", args.input))?;
    let handle = source.handle();
    let live = source.kind().is_live();

    let geotagger = match poses {
        Some((p, ground)) => {
            // The camera model needs the frame size when it is an ideal one:
            // made lazily from the first frame below via scaling, so build it
            // at a nominal 1000 px width and let the geotagger scale it.
            let cam = camera.unwrap_or_else(|| CameraModel::ideal(1000, 750, args.hfov));
            Some(Geotagger::new(cam, Ground::Flat(ground), p))
        }
        None => {
            tracing::warn!(
                "no --pose or --camera-height: events are not geotagged (position unknown)"
            );
            None
        }
    };
    let eye = Eye::new(
        manifest.clone(),
        EyeConfig {
            engine,
            ..EyeConfig::default()
        },
        geotagger,
    )?;
    let pipeline = Pipeline::start(
        source,
        detector.clone(),
        eye,
        PipelineOptions {
            report_frames: true,
        },
    )?;

    let out_file = std::fs::File::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(out_file);
    let mut frames_out = match &args.frames_out {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let drone =
        DroneId::new(args.drone_id.clone()).map_err(|e| anyhow::anyhow!("--drone-id: {e}"))?;
    let mut writer: Option<VideoWriter> = None;
    // The first annotated frame waits for the second, to learn the frame rate.
    let mut pending: Option<(tiancha_inference::opencv::core::Mat, Option<i64>)> = None;
    let mut frames = 0u64;
    let mut alerts = 0u64;
    let started = Instant::now();
    let mut last_progress = Instant::now() - Duration::from_secs(1);
    let mut summary = None;
    while let Some(o) = pipeline.recv(Duration::from_secs(3600)) {
        match o {
            EyeOutput::Incident(mut i) => {
                if args.no_snapshots {
                    i.snapshot = None;
                }
                let line = match alert::outgoing(&i, &drone, None) {
                    Outgoing::Alert(a) => {
                        alerts += 1;
                        tiancha_inference::textio::jsonl("alert", &*a)
                    }
                    Outgoing::Update(u) => tiancha_inference::textio::jsonl("incident_update", &u),
                };
                writeln!(out, "{line}")?;
                if !args.quiet {
                    eprint!("\r\x1b[K");
                }
                tracing::info!(
                    "{} {} [{}]: {}",
                    i.event.incident.category,
                    format!("{:?}", i.event.change).to_lowercase(),
                    i.event.incident.id,
                    i.event.incident.detail
                );
            }
            EyeOutput::Source(e) => {
                writeln!(out, "{}", tiancha_inference::textio::jsonl("source", &e))?;
                tracing::info!("source: {e:?}");
            }
            EyeOutput::FrameError(e) => tracing::warn!("{e}"),
            EyeOutput::Frame(r) => {
                frames += 1;
                if let Some(f) = frames_out.as_mut() {
                    let line = FrameLine::of(&r.frame, &r.detections, &manifest);
                    writeln!(f, "{}", serde_json::to_string(&line)?)?;
                }
                if let Some(path) = &args.annotated {
                    let mut img = r.frame.to_mat()?;
                    let open: Vec<_> = r.open.iter().collect();
                    annotate::draw(&mut img, &manifest, &r.tracks, &open)?;
                    match (&mut writer, pending.take()) {
                        (Some(w), _) => w.write(&img)?,
                        (None, None) => pending = Some((img, r.frame.pts_ms)),
                        (None, Some((first, pts0))) => {
                            let fps = match (pts0, r.frame.pts_ms) {
                                (Some(a), Some(b)) if b > a => {
                                    (1000.0 / (b - a) as f64).round().clamp(1.0, 120.0) as u32
                                }
                                _ => 10,
                            };
                            let mut w =
                                VideoWriter::create(path, r.frame.width, r.frame.height, fps)?;
                            w.write(&first)?;
                            w.write(&img)?;
                            writer = Some(w);
                        }
                    }
                }
                if !args.quiet && last_progress.elapsed() > Duration::from_millis(250) {
                    last_progress = Instant::now();
                    let fps = frames as f64 / started.elapsed().as_secs_f64().max(1e-3);
                    let pos = r.frame.pts_ms.unwrap_or(0);
                    let line = match handle.duration_ms() {
                        Some(d) if !live && d > 0 => {
                            let frac = (pos as f64 / d as f64).clamp(0.0, 1.0);
                            let n = (frac * 30.0) as usize;
                            format!(
                                "[{}{}] {:5.1}%  {frames} frames  {fps:.1} fps  {alerts} alerts",
                                "=".repeat(n),
                                " ".repeat(30 - n),
                                frac * 100.0
                            )
                        }
                        _ => format!(
                            "{frames} frames  {fps:.1} fps  {} dropped  {alerts} alerts",
                            handle.stats().dropped
                        ),
                    };
                    eprint!("\r\x1b[K{line}");
                }
                if args.max_frames.is_some_and(|m| frames >= m) {
                    pipeline.request_stop();
                }
            }
            EyeOutput::End(s) => {
                summary = Some(*s);
                break;
            }
        }
    }
    if !args.quiet {
        eprintln!("\r\x1b[K");
    }
    let summary = summary.context("the pipeline ended without a summary")?;
    writeln!(
        out,
        "{}",
        tiancha_inference::textio::jsonl("summary", &summary)
    )?;
    out.flush()?;
    if let Some(f) = frames_out.as_mut() {
        f.flush()?;
    }
    if let (None, Some((first, _)), Some(path)) = (&writer, pending.take(), &args.annotated) {
        let mut w = VideoWriter::create(path, first.cols() as u32, first.rows() as u32, 10)?;
        w.write(&first)?;
        writer = Some(w);
    }
    if let Some(w) = writer {
        w.finish()?;
    }
    eprintln!(
        "{} frames in {:.1} s ({:.1} fps; model {:.1} ms/frame, pre-processing {:.1} ms, tracking+events {:.1} ms); \
latency p50 {:.0} ms, p95 {:.0} ms; {} dropped; {} track ids; peak RSS {:.0} MB; incidents: {} opened, {} updates, {} closed → {}",
        summary.frames,
        summary.wall_s,
        summary.fps,
        summary.mean_infer_ms,
        summary.mean_prep_ms,
        summary.mean_post_ms,
        summary.latency_p50_ms,
        summary.latency_p95_ms,
        summary.source.dropped,
        summary.track_ids,
        summary.peak_rss_mb.unwrap_or(f64::NAN),
        summary.incidents_opened,
        summary.incident_updates,
        summary.incidents_closed,
        args.out.display()
    );
    if let Some(e) = summary.source_error {
        bail!("{e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(names: &str, events: &str) -> Manifest {
        let text = format!(
            "name = \"m\"\nmodel = \"m.onnx\"\n[input]\nname = \"i\"\nshape = [1, 3, 64, 64]\n\
             layout = \"nchw\"\ncolor = \"rgb\"\nresize = \"letterbox\"\nscale = 1.0\n\
             [output]\ndecoder = \"yolov8\"\nname = \"o\"\n[classes]\nnames = {names}\n\
             threshold = 0.4\n[events]\n{events}\n"
        );
        Manifest::parse(&text, Path::new("m.toml"), |_| Err("no class file".into())).unwrap()
    }

    #[test]
    fn the_rules_are_those_the_model_can_feed_unless_named() {
        let hazards_only = manifest("[\"smoke\", \"fire\"]", "hazards = [\"smoke\", \"fire\"]");
        let people_only = manifest("[\"person\", \"car\"]", "");
        assert_eq!(wanted_rules(None, &hazards_only).unwrap(), (false, true));
        assert_eq!(wanted_rules(None, &people_only).unwrap(), (true, false));
        assert_eq!(
            wanted_rules(Some("none"), &people_only).unwrap(),
            (false, false)
        );
        let e = wanted_rules(Some("hazard,gathering"), &hazards_only)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no people classes"), "{e}");
        let e = wanted_rules(Some("hazard"), &people_only)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no hazard classes"), "{e}");
        let e = wanted_rules(Some("gatherings"), &people_only)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown rule"), "{e}");
    }

    #[test]
    fn input_size_is_w_x_h() {
        assert_eq!(parse_size("1280x736"), Ok((1280, 736)));
        assert_eq!(parse_size("768X576"), Ok((768, 576)));
        assert!(parse_size("1280").unwrap_err().contains("WxH"));
        assert!(parse_size("1280x-1").is_err());
    }

    #[test]
    fn backend_and_provider_flags_parse_and_unknown_ones_list_the_valid() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let a = Cli::try_parse_from([
            "detect",
            "in.avi",
            "--out",
            "o.jsonl",
            "--backend",
            "ort",
            "--provider",
            "tensorrt",
            "--input-size",
            "1280x736",
        ])
        .unwrap()
        .args;
        assert_eq!(
            (a.backend, a.provider, a.input_size),
            (BackendKind::Ort, Provider::Tensorrt, Some((1280, 736)))
        );
        let e = Cli::try_parse_from(["detect", "in.avi", "--out", "o.jsonl", "--provider", "cdua"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cpu, cuda, tensorrt, openvino"), "{e}");
    }
}
