//! onnxruntime through the `ort` crate (cargo feature `ort`), loaded at
//! run time (`load-dynamic`: nothing is linked or downloaded at build
//! time).
//!
//! - The library: [`OrtOptions::library`], else `ORT_DYLIB_PATH`, else an
//!   error that says how to set it. One library per process (onnxruntime
//!   has one global environment); asking for another is an error.
//! - Threads: intra-op = the detector's threads (not spinning), inter-op
//!   1; graph optimisation level all.
//! - Execution providers ([`Provider`]) are registered with
//!   `error_on_failure`: a provider that cannot be registered, or a session
//!   that it cannot build, is an error naming the provider and the library,
//!   never a silent fall back to the CPU.
//! - Inputs are handed over without a copy (the prepared `Vec` becomes
//!   the tensor's buffer); outputs are read in place from onnxruntime's
//!   values.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::ep;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::{Tensor, ValueType};

use super::{
    batch_shape, check_input_dims, check_input_len, check_input_names, Backend, LoadContext,
    OrtOptions, OutputData, Provider, RawOutput,
};
use crate::decode;
use crate::error::{InferenceError, Result};
use crate::manifest::Manifest;

/// The environment variable naming the library when the config does not.
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";

/// How to get a library, for error messages.
pub const LIBRARY_HINT: &str = "set `ort_library` in the [camera] config, `--ort-library` on the \
command line, or the ORT_DYLIB_PATH environment variable to a libonnxruntime.so (1.23 or newer): \
the PyPI wheel `onnxruntime` ships it as site-packages/onnxruntime/capi/libonnxruntime.so.<version>, \
`onnxruntime-gpu` also ships the CUDA and TensorRT providers next to it";

/// Where the library is: configured, else `ORT_DYLIB_PATH` (pure: the
/// environment's value is passed in).
pub fn library_path(configured: Option<&Path>, env: Option<std::ffi::OsString>) -> Result<PathBuf> {
    match (configured, env) {
        (Some(p), _) => Ok(p.to_path_buf()),
        (None, Some(v)) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => Err(InferenceError::Backend(format!(
            "backend \"ort\" needs the onnxruntime library and none is configured: {LIBRARY_HINT}"
        ))),
    }
}

/// The process's onnxruntime: which library, and its environment.
struct Runtime {
    library: PathBuf,
    env: Environment,
}

static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

/// Load the library (once per process) and return it with the environment.
fn runtime(library: &Path) -> Result<(PathBuf, Environment)> {
    let lib_err = |reason: String| InferenceError::OrtLibrary {
        path: library.to_path_buf(),
        reason,
    };
    let abs = std::path::absolute(library).map_err(|e| lib_err(e.to_string()))?;
    if !abs.exists() {
        return Err(lib_err(format!("no such file; {LIBRARY_HINT}")));
    }
    let abs = abs.canonicalize().unwrap_or(abs);
    let mut rt = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = rt.as_ref() {
        if r.library != abs {
            return Err(lib_err(format!(
                "onnxruntime is already loaded from {} in this process; one library per process",
                r.library.display()
            )));
        }
        return Ok((r.library.clone(), r.env.clone()));
    }
    let env = ort::init_from(&abs)
        .map_err(|e| lib_err(format!("cannot load it: {e}; {LIBRARY_HINT}")))?
        .with_name("tiancha")
        .with_telemetry(false)
        .build()
        .map_err(|e| lib_err(format!("cannot create the onnxruntime environment: {e}")))?;
    tracing::info!(library = %abs.display(), "onnxruntime loaded");
    *rt = Some(Runtime {
        library: abs.clone(),
        env: env.clone(),
    });
    Ok((abs, env))
}

/// The execution provider's registration (`None` for the CPU, which is
/// always there).
fn provider_dispatch(o: &OrtOptions) -> Option<ep::ExecutionProviderDispatch> {
    let device = o.device_id as i32;
    let d = match o.provider {
        Provider::Cpu => return None,
        Provider::Cuda => ep::CUDA::default().with_device_id(device).build(),
        Provider::Tensorrt => {
            let mut t = ep::TensorRT::default()
                .with_device_id(device)
                .with_fp16(o.trt_fp16);
            if let Some(dir) = &o.trt_cache_dir {
                t = t
                    .with_engine_cache(true)
                    .with_engine_cache_path(dir.display())
                    .with_timing_cache(true)
                    .with_timing_cache_path(dir.display());
            }
            t.build()
        }
        Provider::Openvino => {
            let mut v = ep::OpenVINO::default();
            if let Some(d) = &o.openvino_device {
                v = v.with_device_type(d);
            }
            v.build()
        }
    };
    Some(d.error_on_failure())
}

/// onnxruntime (feature `ort`).
pub struct OrtBackend {
    name: String,
    library: PathBuf,
    provider: Provider,
    input_name: String,
    manifest: Manifest,
    dynamic_batch: bool,
    output_names: Vec<String>,
    state: Mutex<(Session, RunOptions<HasSelectedOutputs>)>,
}

impl OrtBackend {
    /// Load the library (if not yet), build a session on the provider,
    /// check the model against the manifest (one run on a zero input
    /// checks the output shapes).
    pub fn load(manifest: &Manifest, o: &OrtOptions, ctx: LoadContext) -> Result<Self> {
        let library = library_path(o.library.as_deref(), std::env::var_os(LIBRARY_ENV))?;
        let (library, env) = runtime(&library)?;
        let path = &manifest.model_path;
        let provider_err = |reason: String| InferenceError::Provider {
            provider: o.provider.to_string(),
            library: library.clone(),
            reason,
        };
        let load_err = |reason: String| InferenceError::ModelLoad {
            path: path.clone(),
            reason,
        };
        let mismatch = |reason: String| InferenceError::ModelMismatch {
            model: path.clone(),
            manifest: manifest.path.clone(),
            reason,
        };
        if let (Provider::Tensorrt, Some(dir)) = (o.provider, &o.trt_cache_dir) {
            std::fs::create_dir_all(dir).map_err(|e| {
                provider_err(format!(
                    "the engine cache directory {} cannot be made: {e}",
                    dir.display()
                ))
            })?;
        }
        let threads = ctx.threads.max(1);
        let opt_err = |e: ort::Error<ort::session::builder::SessionBuilder>| {
            load_err(format!("session options: {e}"))
        };
        let builder = Session::builder(&env)
            .map_err(|e| load_err(format!("session options: {e}")))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(opt_err)?
            .with_intra_threads(threads)
            .map_err(opt_err)?
            .with_inter_threads(1)
            .map_err(opt_err)?
            // No spinning: with the camera, pre-processing and video on
            // the same cores, spinning workers starve them and themselves
            // (2 threads, loaded 2-core machine: 107 ms with spinning, 56
            // without, interleaved runs).
            .with_intra_op_spinning(false)
            .map_err(opt_err)?;
        let mut builder = match provider_dispatch(o) {
            None => builder,
            Some(d) => builder
                .with_execution_providers([d])
                .map_err(|e| provider_err(format!("registration failed: {e}")))?,
        };
        let session = builder.commit_from_file(path).map_err(|e| {
            if o.provider == Provider::Cpu {
                load_err(format!("onnxruntime: {e}"))
            } else {
                provider_err(format!("the session could not be built on it: {e}"))
            }
        })?;

        // Input: by name, with a shape compatible with the manifest.
        let spec = &manifest.file.input;
        let inputs: Vec<String> = session
            .inputs()
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        check_input_names(&inputs, manifest).map_err(mismatch)?;
        let declared: Vec<Option<usize>> = match session.inputs()[0].dtype() {
            ValueType::Tensor { shape, .. } => {
                shape.iter().map(|&d| usize::try_from(d).ok()).collect()
            }
            other => {
                return Err(mismatch(format!(
                    "the model's input {:?} is {other}, a tensor expected",
                    spec.name
                )))
            }
        };
        let dims = check_input_dims(&declared, manifest, ctx.overridden_size).map_err(mismatch)?;

        // Outputs: by name.
        let wanted: Vec<String> = manifest
            .file
            .output
            .output_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let available: Vec<String> = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        for w in &wanted {
            if !available.contains(w) {
                return Err(mismatch(format!(
                    "output {w:?} named in the manifest is not an output of the model (its outputs are {available:?}); \
                     onnxruntime reads only graph outputs"
                )));
            }
        }
        let selector = wanted
            .iter()
            .fold(OutputSelector::no_default(), |s, w| s.with(w.clone()));
        let run_options = RunOptions::new()
            .map_err(|e| load_err(format!("run options: {e}")))?
            .with_outputs(selector);
        let name = format!("onnxruntime/{}", o.provider);
        let backend = Self {
            name,
            library: library.clone(),
            provider: o.provider,
            input_name: spec.name.clone(),
            manifest: manifest.clone(),
            dynamic_batch: dims.dynamic_batch,
            output_names: wanted,
            state: Mutex::new((session, run_options)),
        };

        // One run on zeros: the output shapes the decoder will see.
        let len: usize = spec.shape.iter().product();
        let outs = backend.run(vec![0.0; len], 1).map_err(|e| {
            if o.provider == Provider::Cpu {
                load_err(format!("a first run failed: {e}"))
            } else {
                provider_err(format!("a first run failed: {e}"))
            }
        })?;
        let shapes: Vec<Vec<usize>> = outs.iter().map(|o| o.shape.clone()).collect();
        decode::check_output_shapes(&manifest.file.output, &shapes, manifest.num_classes())
            .map_err(mismatch)?;
        tracing::info!(
            model = %path.display(),
            provider = %backend.provider,
            library = %backend.library.display(),
            threads,
            dynamic_batch = backend.dynamic_batch,
            "onnxruntime session ready"
        );
        Ok(backend)
    }

    /// The library this backend runs on.
    pub fn library(&self) -> &Path {
        &self.library
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn dynamic_batch(&self) -> bool {
        self.dynamic_batch
    }

    /// On an accelerator one launch for all slices beats one per slice;
    /// on the CPU it does not (see the trait).
    fn batch_by_default(&self) -> bool {
        self.provider != Provider::Cpu
    }

    fn run(&self, input: Vec<f32>, batch: usize) -> Result<Vec<RawOutput>> {
        if batch != 1 && !self.dynamic_batch {
            return Err(InferenceError::Run(format!(
                "batch {batch}: the model's batch dimension is fixed at 1"
            )));
        }
        let shape = batch_shape(&self.manifest, batch);
        check_input_len(&input, &shape)?;
        let run_err = |e: ort::Error| InferenceError::Run(format!("onnxruntime: {e}"));
        let tensor = Tensor::from_array((shape, input)).map_err(run_err)?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (session, options) = &mut *state;
        let mut outs = session
            .run_with_options(ort::inputs![self.input_name.as_str() => tensor], options)
            .map_err(run_err)?;
        let mut result = Vec::with_capacity(self.output_names.len());
        for name in &self.output_names {
            let v = outs.remove(name).ok_or_else(|| {
                InferenceError::Run(format!("onnxruntime returned no output {name:?}"))
            })?;
            let shape = match v.dtype() {
                ValueType::Tensor { shape, .. } => {
                    shape.iter().map(|&d| d.max(0) as usize).collect()
                }
                other => {
                    return Err(InferenceError::Decode {
                        output: name.clone(),
                        reason: format!("{other}, a float32 tensor expected"),
                    })
                }
            };
            result.push(RawOutput {
                name: name.clone(),
                shape,
                value: OutputData::Ort(v),
            });
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_comes_from_config_then_the_environment_else_a_clear_error() {
        let p = library_path(
            Some(Path::new("/opt/ort/libonnxruntime.so")),
            Some("/x".into()),
        );
        assert_eq!(p.unwrap(), Path::new("/opt/ort/libonnxruntime.so"));
        let p = library_path(None, Some("/env/libonnxruntime.so.1.23.2".into()));
        assert_eq!(p.unwrap(), Path::new("/env/libonnxruntime.so.1.23.2"));
        for env in [None, Some("".into())] {
            let e = library_path(None, env).unwrap_err().to_string();
            assert!(
                e.contains("ORT_DYLIB_PATH")
                    && e.contains("ort_library")
                    && e.contains("capi/libonnxruntime.so"),
                "{e}"
            );
        }
    }
}
