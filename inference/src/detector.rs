//! The detector: a model loaded once from its manifest, optimised for its
//! fixed input shape, run with tract on a multithreaded executor (both
//! cores for the matrix products), decoded and NMS'd, optionally tiled.
//!
//! Pre-processing ([`Detector::prepare`]) and inference
//! ([`Detector::infer`]) are separate steps so that a pipeline can run
//! them on different threads and overlap frame *n + 1*'s preparation with
//! frame *n*'s inference ([`crate::pipeline`]).

use std::path::Path;
use std::sync::Arc;

use opencv::core::Rect;
use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::SimplePlan;
use tract_onnx::tract_core::runtime::RunOptions;
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::internal::DimLike;

use crate::decode::{self, Detection, OutputView};
use crate::error::{InferenceError, Result};
use crate::frame::Frame;
use crate::manifest::{Manifest, TilingSpec};
use crate::preprocess::{Letterbox, Preprocessor};

/// How to load and run a detector.
#[derive(Debug, Clone)]
pub struct DetectorOptions {
    /// Threads for tract's matrix products (1 = single-threaded).
    pub threads: usize,
    /// Check the model's sha256 against the manifest (when it has one).
    pub verify_checksum: bool,
    /// Tiling override (`Some(None)` turns the manifest's tiling off).
    pub tiling: Option<Option<TilingSpec>>,
    /// Also keep detections below the class thresholds down to this score
    /// (ByteTrack's second pass uses them); `None` keeps only confident
    /// ones. Tell them apart with [`Detector::is_confident`].
    pub low_score_floor: Option<f32>,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(4),
            verify_checksum: true,
            tiling: None,
            low_score_floor: Some(0.1),
        }
    }
}

/// One model output, owned.
pub struct RawOutput {
    pub name: String,
    pub shape: Vec<usize>,
    value: OutputData,
}

enum OutputData {
    Tract(TValue),
    #[allow(dead_code)]
    Owned(Vec<f32>),
}

impl RawOutput {
    pub fn data(&self) -> Result<&[f32]> {
        match &self.value {
            OutputData::Tract(v) => v
                .to_plain_array_view::<f32>()
                .map_err(|e| format!("not a float32 tensor: {e}"))
                .and_then(|a| a.to_slice().ok_or_else(|| "not contiguous".to_string()))
                .map_err(|reason| InferenceError::Decode {
                    output: self.name.clone(),
                    reason,
                }),
            OutputData::Owned(v) => Ok(v),
        }
    }
}

/// An inference engine that runs one prepared input.
pub trait Backend: Send + Sync {
    /// Short name for logs and benchmarks ("tract", "onnxruntime").
    fn name(&self) -> &'static str;
    /// Run one input tensor (the manifest's shape, row-major) and return
    /// the decoder's outputs in manifest order.
    fn run(&self, input: Vec<f32>) -> Result<Vec<RawOutput>>;
}

/// tract: pure Rust, the default.
pub struct TractBackend {
    plan: Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
    output_names: Vec<String>,
}

impl TractBackend {
    /// Load, check against the manifest, optimise for the fixed shape.
    pub fn load(manifest: &Manifest, threads: usize) -> Result<Self> {
        let path = &manifest.model_path;
        let load_err = |e: anyhow_like::Error| InferenceError::ModelLoad {
            path: path.clone(),
            reason: format!("{e:#}"),
        };
        let mismatch = |reason: String| InferenceError::ModelMismatch {
            model: path.clone(),
            manifest: manifest.path.clone(),
            reason,
        };
        let spec = &manifest.file.input;
        let mut model = tract_onnx::onnx().model_for_path(path).map_err(load_err)?;

        // Input: by name, with a shape compatible with the manifest.
        let inputs = model.input_outlets().map_err(load_err)?.to_vec();
        let names: Vec<String> = inputs
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        if inputs.len() != 1 {
            return Err(mismatch(format!(
                "the model has {} inputs ({names:?}); one image input is supported",
                inputs.len()
            )));
        }
        if names[0] != spec.name {
            return Err(mismatch(format!(
                "input.name is {:?} but the model's input is {:?}",
                spec.name, names[0]
            )));
        }
        let fact = model.input_fact(0).map_err(load_err)?.clone();
        let declared: Vec<Option<usize>> = fact
            .shape
            .dims()
            .map(|d| d.concretize().and_then(|d| d.to_usize().ok()))
            .collect();
        if !fact.shape.is_open() && !declared.is_empty() {
            let compatible = declared.len() == spec.shape.len()
                && declared
                    .iter()
                    .zip(&spec.shape)
                    .all(|(d, s)| d.is_none_or(|d| d == *s));
            if !compatible {
                let shown: Vec<String> = declared
                    .iter()
                    .map(|d| d.map(|d| d.to_string()).unwrap_or_else(|| "?".into()))
                    .collect();
                return Err(mismatch(format!(
                    "input.shape is {:?} but the model's input {:?} is [{}]",
                    spec.shape,
                    spec.name,
                    shown.join(", ")
                )));
            }
        }
        model
            .set_input_fact(0, f32::fact(&spec.shape).into())
            .map_err(load_err)?;

        // Outputs: by name.
        let wanted: Vec<String> = manifest
            .file
            .output
            .output_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let available: Vec<String> = model
            .output_outlets()
            .map_err(load_err)?
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        for w in &wanted {
            let known = available.contains(w)
                || model.nodes().iter().any(|n| &n.name == w)
                || model.nodes().iter().enumerate().any(|(i, n)| {
                    (0..n.outputs.len())
                        .any(|s| model.outlet_label(OutletId::new(i, s)) == Some(w.as_str()))
                });
            if !known {
                return Err(mismatch(format!(
                    "output {w:?} named in the manifest is not in the model (its outputs are {available:?})"
                )));
            }
        }
        let model = model.with_outputs_by_name(&wanted).map_err(load_err)?;
        let typed = model.into_typed().map_err(|e| {
            mismatch(format!(
                "the model cannot run with input shape {:?}: {e:#}",
                spec.shape
            ))
        })?;
        let mut shapes = Vec::new();
        for (i, name) in wanted.iter().enumerate() {
            let f = typed.output_fact(i).map_err(load_err)?;
            let shape = f.shape.as_concrete().map(|s| s.to_vec()).ok_or_else(|| {
                mismatch(format!(
                    "output {name:?} has no fixed shape ({:?}) for input {:?}",
                    f.shape, spec.shape
                ))
            })?;
            if f.datum_type != f32::datum_type() {
                return Err(mismatch(format!(
                    "output {name:?} is {:?}, float32 expected",
                    f.datum_type
                )));
            }
            shapes.push(shape);
        }
        decode::check_output_shapes(&manifest.file.output, &shapes, manifest.num_classes())
            .map_err(mismatch)?;

        let optimized = typed.into_optimized().map_err(load_err)?;
        let mut opts = RunOptions::default();
        if threads > 1 {
            opts.executor = Some(tract_linalg::multithread::Executor::multithread_with_name(
                threads,
                "tiancha-tract",
            ));
        }
        let plan = SimplePlan::new_with_options(optimized, &opts).map_err(load_err)?;
        Ok(Self {
            plan,
            input_shape: spec.shape.clone(),
            output_names: wanted,
        })
    }
}

/// tract's error type, named once.
mod anyhow_like {
    pub type Error = tract_onnx::prelude::TractError;
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn run(&self, input: Vec<f32>) -> Result<Vec<RawOutput>> {
        let arr = tract_ndarray::ArrayD::from_shape_vec(self.input_shape.clone(), input)
            .map_err(|e| InferenceError::Run(format!("input tensor: {e}")))?;
        let t: Tensor = arr.into();
        let outs = self
            .plan
            .run(tvec!(t.into()))
            .map_err(|e| InferenceError::Run(format!("{e:#}")))?;
        Ok(outs
            .into_iter()
            .zip(&self.output_names)
            .map(|(v, name)| RawOutput {
                name: name.clone(),
                shape: v.shape().to_vec(),
                value: OutputData::Tract(v),
            })
            .collect())
    }
}

/// A frame made ready for the model: one input per slice.
pub struct Prepared {
    pub seq: u64,
    pub frame_size: (u32, u32),
    pub slices: Vec<PreparedSlice>,
}

pub struct PreparedSlice {
    pub input: Vec<f32>,
    pub letterbox: Letterbox,
    /// The slice's region in the frame.
    pub region: Rect,
    /// True for a tile (not the full frame).
    pub is_tile: bool,
}

/// A loaded detector. Cheap to share (`Arc`), safe to call from several
/// threads.
pub struct Detector {
    manifest: Arc<Manifest>,
    backend: Box<dyn Backend>,
    tiling: Option<TilingSpec>,
    floor: Option<f32>,
}

impl Detector {
    /// Load the manifest at `path` and its model with tract.
    pub fn from_manifest_path(path: impl AsRef<Path>, opts: &DetectorOptions) -> Result<Self> {
        let manifest = Manifest::load(path)?;
        Self::load(manifest, opts)
    }

    /// Load a parsed manifest's model with tract.
    pub fn load(manifest: Manifest, opts: &DetectorOptions) -> Result<Self> {
        if opts.verify_checksum {
            verify_checksum(&manifest)?;
        } else if !manifest.model_path.exists() {
            return Err(InferenceError::ModelLoad {
                path: manifest.model_path.clone(),
                reason: "no such file".into(),
            });
        }
        let backend = TractBackend::load(&manifest, opts.threads.max(1))?;
        Ok(Self::with_backend(manifest, Box::new(backend), opts))
    }

    /// A detector around any backend (e.g. onnxruntime).
    pub fn with_backend(
        manifest: Manifest,
        backend: Box<dyn Backend>,
        opts: &DetectorOptions,
    ) -> Self {
        let tiling = match opts.tiling {
            Some(t) => t,
            None => manifest.file.tiling,
        };
        Self {
            manifest: Arc::new(manifest),
            backend,
            tiling,
            floor: opts.low_score_floor,
        }
    }

    /// At or above its class threshold (not only a low-score candidate).
    pub fn is_confident(&self, d: &Detection) -> bool {
        self.manifest
            .thresholds
            .get(d.class_id)
            .is_some_and(|t| d.score >= *t)
    }

    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub fn tiling(&self) -> Option<TilingSpec> {
        self.tiling
    }

    /// A pre-processor for this model (one per thread).
    pub fn preprocessor(&self) -> Preprocessor {
        Preprocessor::new(&self.manifest.file.input)
    }

    /// Slice regions for a frame: the full frame (unless tiling says
    /// otherwise) and the tiles.
    pub fn regions(&self, width: u32, height: u32) -> Vec<(Rect, bool)> {
        let full = Rect::new(0, 0, width as i32, height as i32);
        match self.tiling {
            None => vec![(full, false)],
            Some(t) => {
                let mut v = Vec::new();
                if t.include_full {
                    v.push((full, false));
                }
                v.extend(
                    tile_regions(width, height, &t)
                        .into_iter()
                        .map(|r| (r, true)),
                );
                v
            }
        }
    }

    /// Pre-process a frame (all slices).
    pub fn prepare(&self, pre: &mut Preprocessor, frame: &Frame) -> Result<Prepared> {
        let mat = frame.as_mat()?;
        let mut slices = Vec::new();
        for (region, is_tile) in self.regions(frame.width, frame.height) {
            let mut input = vec![0.0f32; pre.tensor_len()];
            let letterbox = pre.run(&mat, region, &mut input)?;
            slices.push(PreparedSlice {
                input,
                letterbox,
                region,
                is_tile,
            });
        }
        Ok(Prepared {
            seq: frame.seq,
            frame_size: (frame.width, frame.height),
            slices,
        })
    }

    /// Raw decoded detections of one prepared input, in model-input
    /// pixels, before NMS.
    pub fn infer_raw(&self, input: Vec<f32>) -> Result<Vec<Detection>> {
        let outs = self.backend.run(input)?;
        let mut views = Vec::with_capacity(outs.len());
        for o in &outs {
            views.push(OutputView {
                name: &o.name,
                shape: &o.shape,
                data: o.data()?,
            });
        }
        decode::decode(&self.manifest, &views, self.floor)
    }

    /// Run the model on every slice, map to frame pixels, drop tile boxes
    /// cut by an inner tile edge, and merge with class-aware NMS.
    pub fn infer(&self, prepared: Prepared) -> Result<Vec<Detection>> {
        let (fw, fh) = (prepared.frame_size.0 as f32, prepared.frame_size.1 as f32);
        let mut all = Vec::new();
        for s in prepared.slices {
            let lb = s.letterbox;
            let region = s.region;
            for mut d in self.infer_raw(s.input)? {
                d.bbox = lb.to_frame(&d.bbox).clamp(fw, fh);
                if s.is_tile && touches_inner_edge(&d, region, fw, fh) {
                    continue;
                }
                if d.bbox.area() > 0.0 {
                    all.push(d);
                }
            }
        }
        let nms = &self.manifest.file.nms;
        Ok(decode::nms(
            all,
            nms.iou,
            nms.class_aware,
            nms.max_detections,
        ))
    }

    /// Prepare and infer in one call.
    pub fn detect(&self, frame: &Frame) -> Result<Vec<Detection>> {
        let mut pre = self.preprocessor();
        let p = self.prepare(&mut pre, frame)?;
        self.infer(p)
    }
}

/// A tile detection whose box reaches an edge of the tile that is not an
/// edge of the frame was cut by the tiling; the neighbouring tile (the
/// overlap is wider than such objects) or the full-frame pass sees it whole.
fn touches_inner_edge(d: &Detection, r: Rect, fw: f32, fh: f32) -> bool {
    let m = 2.0;
    let (x0, y0) = (r.x as f32, r.y as f32);
    let (x1, y1) = (x0 + r.width as f32, y0 + r.height as f32);
    let b = &d.bbox;
    (x0 > 0.0 && b.x1 <= x0 + m)
        || (y0 > 0.0 && b.y1 <= y0 + m)
        || (x1 < fw && b.x2 >= x1 - m)
        || (y1 < fh && b.y2 >= y1 - m)
}

/// `rows × cols` slices covering the frame with the given overlap.
pub fn tile_regions(width: u32, height: u32, t: &TilingSpec) -> Vec<Rect> {
    let span = |len: u32, n: u32| -> Vec<(i32, i32)> {
        if n <= 1 {
            return vec![(0, len as i32)];
        }
        let n = n as f32;
        let size = len as f32 / (n - (n - 1.0) * t.overlap);
        let step = size * (1.0 - t.overlap);
        (0..n as u32)
            .map(|i| {
                let start = (i as f32 * step).round() as i32;
                let end = if i as f32 == n - 1.0 {
                    len as i32
                } else {
                    ((i as f32 * step + size).round() as i32).min(len as i32)
                };
                (start, end - start)
            })
            .collect()
    };
    let mut v = Vec::new();
    for (y, h) in span(height, t.rows) {
        for (x, w) in span(width, t.cols) {
            v.push(Rect::new(x, y, w, h));
        }
    }
    v
}

fn verify_checksum(m: &Manifest) -> Result<()> {
    let bytes = std::fs::read(&m.model_path).map_err(|e| InferenceError::ModelLoad {
        path: m.model_path.clone(),
        reason: format!("cannot read: {e}"),
    })?;
    if let Some(expected) = &m.file.sha256 {
        let actual = hex::encode(Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(InferenceError::ModelChecksum {
                path: m.model_path.clone(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_frame_with_overlap() {
        let t = TilingSpec {
            rows: 2,
            cols: 3,
            overlap: 0.25,
            include_full: true,
        };
        let r = tile_regions(1000, 600, &t);
        assert_eq!(r.len(), 6);
        // Each column tile is 1000 / (3 - 2·0.25) = 400 wide, step 300.
        assert_eq!((r[0].x, r[0].width), (0, 400));
        assert_eq!((r[1].x, r[1].width), (300, 400));
        assert_eq!((r[2].x, r[2].width), (600, 400));
        assert_eq!((r[3].y, r[3].height), (257, 343));
        assert_eq!(r[0].height, 343);
        // Union covers everything.
        for y in (0..600).step_by(7) {
            for x in (0..1000).step_by(7) {
                assert!(r
                    .iter()
                    .any(|t| x >= t.x && x < t.x + t.width && y >= t.y && y < t.y + t.height));
            }
        }
    }

    #[test]
    fn cut_boxes_are_recognised() {
        let r = Rect::new(300, 0, 400, 343);
        let d = |x1, y1, x2, y2| Detection {
            bbox: crate::decode::BBox::new(x1, y1, x2, y2),
            score: 1.0,
            class_id: 0,
        };
        assert!(touches_inner_edge(
            &d(300.0, 10.0, 320.0, 50.0),
            r,
            1000.0,
            600.0
        ));
        assert!(touches_inner_edge(
            &d(500.0, 300.0, 520.0, 343.0),
            r,
            1000.0,
            600.0
        ));
        assert!(
            !touches_inner_edge(&d(400.0, 0.0, 420.0, 50.0), r, 1000.0, 600.0),
            "frame edge"
        );
        assert!(!touches_inner_edge(
            &d(400.0, 100.0, 420.0, 150.0),
            r,
            1000.0,
            600.0
        ));
    }
}
