//! The detector: a model loaded once from its manifest, run by a
//! [`Backend`] (tract by default, onnxruntime with the `ort` feature; see
//! [`crate::backend`]), decoded and NMS'd, optionally tiled.
//!
//! Pre-processing ([`Detector::prepare`]) and inference
//! ([`Detector::infer`]) are separate steps so that a pipeline can run
//! them on different threads and overlap frame *n + 1*'s preparation with
//! frame *n*'s inference ([`crate::pipeline`]). A model whose batch
//! dimension is symbolic can get all slices of a frame (full frame and
//! tiles) in one run ([`DetectorOptions::batch_slices`]); otherwise they
//! run one by one.
//!
//! [`DetectorOptions::input_size`] replaces the manifest's input height
//! and width (a fully convolutional model with symbolic H and W run on a
//! whole 1280×720 frame at 1280×736, say); the manifest the detector
//! carries ([`Detector::manifest`]) then has that shape, so the
//! pre-processor and the decoder follow it.

use std::path::Path;
use std::sync::Arc;

use opencv::core::Rect;
use sha2::{Digest, Sha256};

use crate::backend::{self, LoadContext};
pub use crate::backend::{Backend, BackendKind, BackendOptions, OrtOptions, Provider, RawOutput};
use crate::decode::{self, Detection, OutputView};
use crate::error::{InferenceError, Result};
use crate::frame::Frame;
use crate::manifest::{Layout, Manifest, TilingSpec};
use crate::preprocess::{Letterbox, Preprocessor};

/// How to load and run a detector.
#[derive(Debug, Clone)]
pub struct DetectorOptions {
    /// Threads for the model (tract's matrix products, onnxruntime's
    /// intra-op pool; 1 = single-threaded).
    pub threads: usize,
    /// Check the model's sha256 against the manifest (when it has one).
    pub verify_checksum: bool,
    /// Tiling override (`Some(None)` turns the manifest's tiling off).
    pub tiling: Option<Option<TilingSpec>>,
    /// Also keep detections below the class thresholds down to this score
    /// (ByteTrack's second pass uses them); `None` keeps only confident
    /// ones. Tell them apart with [`Detector::is_confident`].
    pub low_score_floor: Option<f32>,
    /// Which engine runs the model (tract unless asked otherwise).
    pub backend: BackendOptions,
    /// Replace the manifest's input `(width, height)`. Allowed only when
    /// the model's H and W dims are symbolic (or equal to these); a
    /// fixed-size model is a [`InferenceError::ModelMismatch`].
    pub input_size: Option<(u32, u32)>,
    /// Run all slices of a frame (full frame and tiles) as one batch when
    /// the model's batch dimension is symbolic: `None` where the backend
    /// finds it faster ([`Backend::batch_by_default`]: onnxruntime on an
    /// accelerator, not on the CPU), `Some(true)` always, `Some(false)`
    /// never (one by one).
    pub batch_slices: Option<bool>,
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
            backend: BackendOptions::default(),
            input_size: None,
            batch_slices: None,
        }
    }
}

/// The manifest with its input height and width replaced by `(w, h)`
/// (NHWC or NCHW per its layout).
pub fn with_input_size(manifest: &Manifest, (w, h): (u32, u32)) -> Result<Manifest> {
    if !(8..=8192).contains(&w) || !(8..=8192).contains(&h) {
        return Err(InferenceError::Config(format!(
            "input size {w}x{h} is outside 8..8192"
        )));
    }
    let mut m = manifest.clone();
    let s = &mut m.file.input.shape;
    match m.file.input.layout {
        Layout::Nhwc => {
            s[1] = h as usize;
            s[2] = w as usize;
        }
        Layout::Nchw => {
            s[2] = h as usize;
            s[3] = w as usize;
        }
    }
    Ok(m)
}

/// A frame made ready for the model.
pub struct Prepared {
    pub seq: u64,
    pub frame_size: (u32, u32),
    pub slices: Vec<PreparedSlice>,
    /// The model inputs: one tensor holding every slice back to back when
    /// the detector batches, else one per slice.
    pub inputs: Vec<Vec<f32>>,
    /// Values of one slice's input.
    pub slice_len: usize,
}

impl Prepared {
    /// Slices per model input (the batch size of each run).
    pub fn batch(&self) -> usize {
        if self.inputs.len() == self.slices.len() {
            1
        } else {
            self.slices.len()
        }
    }

    /// Slice `i`'s input tensor.
    pub fn slice_input(&self, i: usize) -> &[f32] {
        let b = self.batch();
        &self.inputs[i / b][(i % b) * self.slice_len..(i % b + 1) * self.slice_len]
    }
}

/// Where a slice of the frame went and how it was scaled.
pub struct PreparedSlice {
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
    batch: bool,
}

impl Detector {
    /// Load the manifest at `path` and its model with the backend the
    /// options name.
    pub fn from_manifest_path(path: impl AsRef<Path>, opts: &DetectorOptions) -> Result<Self> {
        let manifest = Manifest::load(path)?;
        Self::load(manifest, opts)
    }

    /// Load a parsed manifest's model with the backend the options name.
    pub fn load(manifest: Manifest, opts: &DetectorOptions) -> Result<Self> {
        if opts.verify_checksum {
            verify_checksum(&manifest)?;
        } else if !manifest.model_path.exists() {
            return Err(InferenceError::ModelLoad {
                path: manifest.model_path.clone(),
                reason: "no such file".into(),
            });
        }
        crate::quant::check(&manifest)?;
        let (manifest, overridden_size) = match opts.input_size {
            Some(size) => {
                let original = manifest.file.input.size();
                (with_input_size(&manifest, size)?, Some(original))
            }
            None => (manifest, None),
        };
        let backend = backend::load(
            &manifest,
            &opts.backend,
            LoadContext {
                threads: opts.threads.max(1),
                overridden_size,
            },
        )?;
        Ok(Self::with_backend(manifest, backend, opts))
    }

    /// A detector around any backend. `manifest` must be the one the
    /// backend was loaded with (after any input-size override).
    pub fn with_backend(
        manifest: Manifest,
        backend: Box<dyn Backend>,
        opts: &DetectorOptions,
    ) -> Self {
        let tiling = match opts.tiling {
            Some(t) => t,
            None => manifest.file.tiling,
        };
        let batch = backend.dynamic_batch()
            && opts
                .batch_slices
                .unwrap_or_else(|| backend.batch_by_default());
        Self {
            manifest: Arc::new(manifest),
            backend,
            tiling,
            floor: opts.low_score_floor,
            batch,
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

    pub fn backend_name(&self) -> &str {
        self.backend.name()
    }

    /// True when all slices of a frame run as one batch.
    pub fn batches_slices(&self) -> bool {
        self.batch
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

    /// Pre-process a frame (all slices), straight into the model's input
    /// tensors.
    pub fn prepare(&self, pre: &mut Preprocessor, frame: &Frame) -> Result<Prepared> {
        let mat = frame.as_mat()?;
        let regions = self.regions(frame.width, frame.height);
        let len = pre.tensor_len();
        let batched = self.batch && regions.len() > 1;
        let mut inputs: Vec<Vec<f32>> = if batched {
            vec![vec![0.0f32; len * regions.len()]]
        } else {
            Vec::with_capacity(regions.len())
        };
        let mut slices = Vec::with_capacity(regions.len());
        for (i, (region, is_tile)) in regions.into_iter().enumerate() {
            let letterbox = if batched {
                pre.run(&mat, region, &mut inputs[0][i * len..(i + 1) * len])?
            } else {
                let mut input = vec![0.0f32; len];
                let lb = pre.run(&mat, region, &mut input)?;
                inputs.push(input);
                lb
            };
            slices.push(PreparedSlice {
                letterbox,
                region,
                is_tile,
            });
        }
        Ok(Prepared {
            seq: frame.seq,
            frame_size: (frame.width, frame.height),
            slices,
            inputs,
            slice_len: len,
        })
    }

    /// The model's raw outputs for `batch` prepared inputs, nothing
    /// decoded (benchmarks compare this with other runtimes on the same
    /// graph).
    pub fn run_model(&self, input: Vec<f32>, batch: usize) -> Result<Vec<RawOutput>> {
        self.backend.run(input, batch)
    }

    /// Raw decoded detections of one prepared input, in model-input
    /// pixels, before NMS.
    pub fn infer_raw(&self, input: Vec<f32>) -> Result<Vec<Detection>> {
        Ok(self.infer_raw_batch(input, 1)?.pop().unwrap_or_default())
    }

    /// Raw decoded detections of `batch` prepared inputs back to back (the
    /// model's batch dimension must be symbolic when `batch` > 1), one
    /// list per input, in model-input pixels, before NMS.
    pub fn infer_raw_batch(&self, input: Vec<f32>, batch: usize) -> Result<Vec<Vec<Detection>>> {
        let outs = self.backend.run(input, batch)?;
        let mut data = Vec::with_capacity(outs.len());
        for o in &outs {
            let d = o.data()?;
            if o.shape.first() != Some(&batch) || d.len() % batch != 0 {
                return Err(InferenceError::Decode {
                    output: o.name.clone(),
                    reason: format!(
                        "shape {:?} with {} values for a batch of {batch}",
                        o.shape,
                        d.len()
                    ),
                });
            }
            let mut item_shape = o.shape.clone();
            item_shape[0] = 1;
            data.push((d, item_shape));
        }
        (0..batch)
            .map(|i| {
                let views: Vec<OutputView> = outs
                    .iter()
                    .zip(&data)
                    .map(|(o, (d, shape))| {
                        let n = d.len() / batch;
                        OutputView {
                            name: &o.name,
                            shape,
                            data: &d[i * n..(i + 1) * n],
                        }
                    })
                    .collect();
                decode::decode(&self.manifest, &views, self.floor)
            })
            .collect()
    }

    /// Run the model on every slice (as one batch when the model allows),
    /// map to frame pixels, drop tile boxes cut by an inner tile edge, and
    /// merge with class-aware NMS.
    pub fn infer(&self, prepared: Prepared) -> Result<Vec<Detection>> {
        let (fw, fh) = (prepared.frame_size.0 as f32, prepared.frame_size.1 as f32);
        let batch = prepared.batch();
        let mut per_slice = Vec::with_capacity(prepared.slices.len());
        for input in prepared.inputs {
            per_slice.extend(self.infer_raw_batch(input, batch)?);
        }
        let mut all = Vec::new();
        for (s, dets) in prepared.slices.iter().zip(per_slice) {
            for mut d in dets {
                d.bbox = s.letterbox.to_frame(&d.bbox).clamp(fw, fh);
                if s.is_tile && touches_inner_edge(&d, s.region, fw, fh) {
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
