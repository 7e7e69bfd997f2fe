//! Inference backends: the engines that run a model on prepared input
//! tensors, behind one [`Backend`] trait.
//!
//! - [`tract`] ([`TractBackend`]): pure Rust, always built, the default.
//!   One plan optimised per batch size (batch 1 at load time).
//! - `ort` (`OrtBackend`, cargo feature `ort`): onnxruntime through the
//!   `ort` crate, loaded at run time from a `libonnxruntime.so`
//!   ([`OrtOptions::library`], else `ORT_DYLIB_PATH`), on the CPU or an
//!   execution provider ([`Provider`]: CUDA, TensorRT, OpenVINO). A
//!   provider that cannot be registered is an error, never a silent CPU
//!   fallback.
//!
//! The detector ([`crate::detector`]) owns everything else (pre-processing,
//! tiling, decoding, NMS); a backend only maps input tensors to output
//! tensors. When the model's batch dimension is symbolic
//! ([`Backend::dynamic_batch`]) the detector can run all slices of a frame
//! (full frame and tiles) as one batch: by default where that is faster
//! ([`Backend::batch_by_default`]: onnxruntime on a GPU/NPU provider, not
//! on the CPU), or as [`crate::DetectorOptions::batch_slices`] says.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{InferenceError, Result};
use crate::manifest::{Layout, Manifest};

#[cfg(feature = "ort")]
pub mod ort;
pub mod tract;

#[cfg(feature = "ort")]
pub use self::ort::OrtBackend;
pub use self::tract::TractBackend;

/// One model output, owned: the whole batch, row-major.
pub struct RawOutput {
    pub name: String,
    /// Batch first (`shape[0]` = the batch size of the run).
    pub shape: Vec<usize>,
    pub(crate) value: OutputData,
}

pub(crate) enum OutputData {
    Tract(::tract_onnx::prelude::TValue),
    /// onnxruntime's own output value, read in place.
    #[cfg(feature = "ort")]
    Ort(::ort::value::DynValue),
    #[allow(dead_code)]
    Owned(Vec<f32>),
}

impl RawOutput {
    /// An output from plain data (tests, other engines).
    pub fn owned(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self {
            name: name.into(),
            shape,
            value: OutputData::Owned(data),
        }
    }

    pub fn data(&self) -> Result<&[f32]> {
        let err = |reason: String| InferenceError::Decode {
            output: self.name.clone(),
            reason,
        };
        match &self.value {
            OutputData::Tract(v) => v
                .to_plain_array_view::<f32>()
                .map_err(|e| format!("not a float32 tensor: {e}"))
                .and_then(|a| a.to_slice().ok_or_else(|| "not contiguous".to_string()))
                .map_err(err),
            #[cfg(feature = "ort")]
            OutputData::Ort(v) => v
                .try_extract_tensor::<f32>()
                .map(|(_, d)| d)
                .map_err(|e| err(format!("not a float32 tensor: {e}"))),
            OutputData::Owned(v) => Ok(v),
        }
    }
}

/// An inference engine that runs prepared inputs.
pub trait Backend: Send + Sync {
    /// Short name for logs and benchmarks ("tract", "onnxruntime/cpu").
    fn name(&self) -> &str;

    /// True when the model's batch dimension is symbolic: [`Backend::run`]
    /// then takes any `batch`; otherwise only 1.
    fn dynamic_batch(&self) -> bool;

    /// Whether several inputs in one run are faster per input than one at
    /// a time, so that the detector batches a frame's slices by default.
    /// Not on the CPU: on the 2-core development machine a batch of five
    /// 512×512 slices cost 2.1× (tract) and 1.2–1.4× (onnxruntime) more
    /// per slice than single runs (`bench_model run --batch 1,5`).
    fn batch_by_default(&self) -> bool {
        false
    }

    /// Run `batch` input tensors laid out back to back (each of the
    /// manifest's shape, row-major) and return the decoder's outputs in
    /// manifest order, batch first.
    fn run(&self, input: Vec<f32>, batch: usize) -> Result<Vec<RawOutput>>;
}

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// tract: pure Rust, always available.
    #[default]
    Tract,
    /// onnxruntime through the `ort` crate (cargo feature `ort`).
    Ort,
}

impl BackendKind {
    pub const ALL: [BackendKind; 2] = [BackendKind::Tract, BackendKind::Ort];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Tract => "tract",
            BackendKind::Ort => "ort",
        }
    }

    /// Whether this build can run it.
    pub fn compiled(self) -> bool {
        match self {
            BackendKind::Tract => true,
            BackendKind::Ort => cfg!(feature = "ort"),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown backend {s:?}; valid backends: tract, ort"))
    }
}

/// An onnxruntime execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// onnxruntime's own CPU kernels.
    #[default]
    Cpu,
    /// NVIDIA CUDA (onnxruntime-gpu; CUDA and cuDNN libraries).
    Cuda,
    /// NVIDIA TensorRT (onnxruntime-gpu; TensorRT libraries).
    Tensorrt,
    /// Intel OpenVINO (CPU, iGPU, NPU; onnxruntime-openvino).
    Openvino,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::Cpu,
        Provider::Cuda,
        Provider::Tensorrt,
        Provider::Openvino,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::Tensorrt => "tensorrt",
            Provider::Openvino => "openvino",
        }
    }

    /// The valid names, for error messages: `cpu, cuda, tensorrt, openvino`.
    pub fn valid_names() -> String {
        Self::ALL.map(|p| p.as_str()).join(", ")
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown execution provider {s:?}; valid providers: {}",
                    Self::valid_names()
                )
            })
    }
}

/// The `libonnxruntime.so.<version>` the PyPI `onnxruntime` wheel installed
/// into the virtualenv `venv`
/// (`lib/python3*/site-packages/onnxruntime/capi/`), the newest when there
/// are several; `None` when there is none.
pub fn onnxruntime_in_venv(venv: &Path) -> Option<PathBuf> {
    std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .filter_map(|e| std::fs::read_dir(e.path().join("site-packages/onnxruntime/capi")).ok())
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so."))
        })
        .max()
}

/// onnxruntime settings (used with [`BackendKind::Ort`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrtOptions {
    /// `libonnxruntime.so` to load; `None` reads `ORT_DYLIB_PATH`.
    pub library: Option<PathBuf>,
    pub provider: Provider,
    /// GPU for CUDA and TensorRT.
    pub device_id: u32,
    /// TensorRT: cache built engines here (building one takes minutes on
    /// a Jetson; the cache makes the next start fast). `None`: no cache.
    pub trt_cache_dir: Option<PathBuf>,
    /// TensorRT: allow FP16 kernels.
    pub trt_fp16: bool,
    /// OpenVINO device type (`CPU`, `GPU`, `NPU`, ...); `None`: OpenVINO's
    /// default.
    pub openvino_device: Option<String>,
}

/// Which backend to build, and its settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendOptions {
    pub kind: BackendKind,
    pub ort: OrtOptions,
}

/// What a backend loader needs besides the manifest.
#[derive(Debug, Clone, Copy)]
pub struct LoadContext {
    /// Threads for the model's operators (tract's matrix products,
    /// onnxruntime's intra-op pool).
    pub threads: usize,
    /// The input size the manifest itself gives, `(w, h)`, when
    /// [`crate::DetectorOptions::input_size`] replaced it (for messages).
    pub overridden_size: Option<(usize, usize)>,
}

/// The selection rule: a backend this build lacks is an error that says
/// so (pure, so that it is tested in every build).
pub fn check_compiled(kind: BackendKind, compiled: bool) -> Result<BackendKind> {
    if compiled {
        Ok(kind)
    } else {
        Err(InferenceError::Backend(format!(
            "backend \"{kind}\" was asked for, but this build lacks it: rebuild with the cargo \
             feature `{kind}` (tiancha's default features include it; for the library crates: \
             `--features {kind}`), or use backend \"tract\""
        )))
    }
}

/// Build the backend `opts` asks for.
pub fn load(
    manifest: &Manifest,
    opts: &BackendOptions,
    ctx: LoadContext,
) -> Result<Box<dyn Backend>> {
    let kind = check_compiled(opts.kind, opts.kind.compiled())?;
    if kind == BackendKind::Tract && opts.ort.provider != Provider::Cpu {
        return Err(InferenceError::Backend(format!(
            "execution provider \"{}\" needs backend \"ort\" (tract runs on the CPU only)",
            opts.ort.provider
        )));
    }
    match kind {
        BackendKind::Tract => Ok(Box::new(TractBackend::load(manifest, ctx)?)),
        #[cfg(feature = "ort")]
        BackendKind::Ort => Ok(Box::new(OrtBackend::load(manifest, &opts.ort, ctx)?)),
        #[cfg(not(feature = "ort"))]
        BackendKind::Ort => unreachable!("check_compiled refused it"),
    }
}

/// What the model's declared input allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputDims {
    /// The batch dimension is symbolic.
    pub dynamic_batch: bool,
}

/// The model must have one input, named as the manifest's `input.name`.
/// Returns a reason when it does not.
pub fn check_input_names(names: &[String], manifest: &Manifest) -> std::result::Result<(), String> {
    let spec = &manifest.file.input;
    if names.len() != 1 {
        return Err(format!(
            "the model has {} inputs ({names:?}); one image input is supported",
            names.len()
        ));
    }
    if names[0] != spec.name {
        return Err(format!(
            "input.name is {:?} but the model's input is {:?}",
            spec.name, names[0]
        ));
    }
    Ok(())
}

/// Check the model's declared input dims (`None` = symbolic) against the
/// manifest's shape (after any input-size override). A symbolic dim
/// accepts anything; a fixed one must be equal. Returns a reason when
/// they do not fit.
pub fn check_input_dims(
    declared: &[Option<usize>],
    manifest: &Manifest,
    overridden_size: Option<(usize, usize)>,
) -> std::result::Result<InputDims, String> {
    let spec = &manifest.file.input;
    let shown = || {
        let d: Vec<String> = declared
            .iter()
            .map(|d| d.map(|d| d.to_string()).unwrap_or_else(|| "?".into()))
            .collect();
        format!("[{}]", d.join(", "))
    };
    if declared.len() != spec.shape.len() {
        return Err(format!(
            "input.shape is {:?} but the model's input {:?} is {}",
            spec.shape,
            spec.name,
            shown()
        ));
    }
    let (hi, wi) = match spec.layout {
        Layout::Nhwc => (1, 2),
        Layout::Nchw => (2, 3),
    };
    if let Some((ow, oh)) = overridden_size {
        let (w, h) = spec.size();
        let fixed = |i: usize, want: usize| declared[i].is_some_and(|d| d != want);
        if fixed(hi, h) || fixed(wi, w) {
            return Err(format!(
                "input size {w}x{h} (overriding the manifest's {ow}x{oh}) needs a model whose input \
                 height and width are symbolic (or exactly {w}x{h}), but the model's input {:?} is {} \
                 ({} layout): its height and width are fixed",
                spec.name,
                shown(),
                match spec.layout {
                    Layout::Nhwc => "NHWC",
                    Layout::Nchw => "NCHW",
                }
            ));
        }
    }
    let compatible = declared
        .iter()
        .zip(&spec.shape)
        .all(|(d, s)| d.is_none_or(|d| d == *s));
    if !compatible {
        return Err(format!(
            "input.shape is {:?} but the model's input {:?} is {}",
            spec.shape,
            spec.name,
            shown()
        ));
    }
    Ok(InputDims {
        dynamic_batch: declared.first().is_some_and(|d| d.is_none()),
    })
}

/// The shape of a batch of `batch` inputs.
pub(crate) fn batch_shape(manifest: &Manifest, batch: usize) -> Vec<usize> {
    let mut s = manifest.file.input.shape.clone();
    s[0] = batch;
    s
}

/// Check a run's input length against the shape.
pub(crate) fn check_input_len(input: &[f32], shape: &[usize]) -> Result<()> {
    let n: usize = shape.iter().product();
    if input.len() != n {
        return Err(InferenceError::Run(format!(
            "input has {} values, {n} expected for shape {shape:?}",
            input.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest(shape: &str, layout: &str) -> Manifest {
        let text = format!(
            r#"
name = "t"
model = "t.onnx"
[input]
name = "images"
shape = {shape}
layout = "{layout}"
color = "rgb"
resize = "stretch"
[output]
decoder = "centernet"
heatmap = "hm"
sizes = "wh"
stride = 4
[classes]
names = ["person"]
"#
        );
        Manifest::parse(&text, Path::new("/m/t.toml"), |_| Err("none".into())).unwrap()
    }

    #[test]
    fn a_build_without_a_backend_says_so() {
        let e = check_compiled(BackendKind::Ort, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"ort\"") && e.contains("lacks") && e.contains("feature"),
            "{e}"
        );
        assert_eq!(
            check_compiled(BackendKind::Ort, true).unwrap(),
            BackendKind::Ort
        );
        assert_eq!(
            check_compiled(BackendKind::Tract, BackendKind::Tract.compiled()).unwrap(),
            BackendKind::Tract
        );
        assert_eq!(BackendKind::Ort.compiled(), cfg!(feature = "ort"));
    }

    #[test]
    fn names_parse_and_unknown_ones_list_the_valid() {
        assert_eq!("tensorrt".parse::<Provider>().unwrap(), Provider::Tensorrt);
        assert_eq!("ort".parse::<BackendKind>().unwrap(), BackendKind::Ort);
        let e = "cdua".parse::<Provider>().unwrap_err();
        assert!(
            e.contains("\"cdua\"") && e.contains("cpu, cuda, tensorrt, openvino"),
            "{e}"
        );
        let e = "onnx".parse::<BackendKind>().unwrap_err();
        assert!(e.contains("tract, ort"), "{e}");
        for p in Provider::ALL {
            assert_eq!(p.to_string().parse::<Provider>().unwrap(), p);
        }
    }

    #[test]
    fn symbolic_dims_accept_an_override_fixed_ones_refuse_it() {
        // NHWC, overridden to 1280x736.
        let m = manifest("[1, 736, 1280, 3]", "nhwc");
        let dynamic = [None, None, None, Some(3)];
        let d = check_input_dims(&dynamic, &m, Some((512, 512))).unwrap();
        assert!(d.dynamic_batch);
        let fixed = [Some(1), Some(512), Some(512), Some(3)];
        let e = check_input_dims(&fixed, &m, Some((512, 512))).unwrap_err();
        assert!(
            e.contains("1280x736") && e.contains("symbolic") && e.contains("[1, 512, 512, 3]"),
            "{e}"
        );
        // Equal fixed dims are fine.
        let same = [Some(1), Some(736), Some(1280), Some(3)];
        assert!(
            !check_input_dims(&same, &m, Some((512, 512)))
                .unwrap()
                .dynamic_batch
        );
        // NCHW: H and W are dims 2 and 3.
        let m = manifest("[1, 3, 736, 1280]", "nchw");
        let nchw_fixed_c_only = [None, Some(3), None, None];
        assert!(check_input_dims(&nchw_fixed_c_only, &m, Some((640, 640))).is_ok());
        let nchw_fixed = [Some(1), Some(3), Some(640), Some(640)];
        assert!(check_input_dims(&nchw_fixed, &m, Some((640, 640)))
            .unwrap_err()
            .contains("NCHW"));
        // Without an override, the old rule: equal or symbolic.
        let m = manifest("[1, 512, 512, 3]", "nhwc");
        assert!(check_input_dims(&[Some(1), Some(512), Some(512), Some(3)], &m, None).is_ok());
        assert!(
            check_input_dims(&[Some(1), Some(640), Some(640), Some(3)], &m, None)
                .unwrap_err()
                .contains("input.shape")
        );
        assert!(check_input_dims(&[None, None, Some(3)], &m, None).is_err());
    }
}
