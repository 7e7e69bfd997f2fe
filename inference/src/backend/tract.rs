//! tract: pure Rust, the default backend. The model is typed and
//! optimised for a concrete input shape; a model with a symbolic batch
//! dimension gets one more plan per batch size it is asked to run (made
//! on first use and kept: a detector always runs the same number of
//! slices per frame).

use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::SimplePlan;
use tract_onnx::tract_core::runtime::RunOptions;
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::internal::DimLike;

use super::{
    batch_shape, check_input_dims, check_input_len, check_input_names, Backend, LoadContext,
    OutputData, RawOutput,
};
use crate::decode;
use crate::error::{InferenceError, Result};
use crate::manifest::Manifest;

type Plan = Arc<TypedRunnableModel>;

/// tract: pure Rust, the default.
pub struct TractBackend {
    manifest: Manifest,
    threads: usize,
    /// The model with its outputs selected, before typing (kept to make
    /// plans for other batch sizes).
    source: Option<InferenceModel>,
    /// Plans by batch size; batch 1 is made at load.
    plans: Mutex<Vec<(usize, Plan)>>,
    output_names: Vec<String>,
}

/// tract's error type, named once.
type TractErr = tract_onnx::prelude::TractError;

impl TractBackend {
    /// Load, check against the manifest, optimise for the manifest's
    /// input shape (batch 1).
    pub fn load(manifest: &Manifest, ctx: LoadContext) -> Result<Self> {
        let path = &manifest.model_path;
        let load_err = |e: TractErr| InferenceError::ModelLoad {
            path: path.clone(),
            reason: format!("{e:#}"),
        };
        let mismatch = |reason: String| InferenceError::ModelMismatch {
            model: path.clone(),
            manifest: manifest.path.clone(),
            reason,
        };
        let mut model = tract_onnx::onnx().model_for_path(path).map_err(load_err)?;

        // Input: by name, with a shape compatible with the manifest.
        let inputs = model.input_outlets().map_err(load_err)?.to_vec();
        let names: Vec<String> = inputs
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        check_input_names(&names, manifest).map_err(mismatch)?;
        let fact = model.input_fact(0).map_err(load_err)?.clone();
        let declared: Vec<Option<usize>> = fact
            .shape
            .dims()
            .map(|d| d.concretize().and_then(|d| d.to_usize().ok()))
            .collect();
        let dims = if fact.shape.is_open() || declared.is_empty() {
            // Rank unknown: trust the manifest, one input at a time.
            super::InputDims {
                dynamic_batch: false,
            }
        } else {
            check_input_dims(&declared, manifest, ctx.overridden_size).map_err(mismatch)?
        };

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
        model = model.with_outputs_by_name(&wanted).map_err(load_err)?;
        let source = dims.dynamic_batch.then(|| model.clone());
        let (typed, shapes) = type_for(model, manifest, 1, &wanted).map_err(|e| match e {
            TypeErr::Load(e) => load_err(e),
            TypeErr::Mismatch(r) => mismatch(r),
        })?;
        decode::check_output_shapes(&manifest.file.output, &shapes, manifest.num_classes())
            .map_err(mismatch)?;
        let plan = optimise(typed, ctx.threads).map_err(load_err)?;
        Ok(Self {
            manifest: manifest.clone(),
            threads: ctx.threads,
            source,
            plans: Mutex::new(vec![(1, plan)]),
            output_names: wanted,
        })
    }

    fn plan(&self, batch: usize) -> Result<Plan> {
        let mut plans = self.plans.lock().expect("plan lock");
        if let Some((_, p)) = plans.iter().find(|(b, _)| *b == batch) {
            return Ok(p.clone());
        }
        let Some(source) = &self.source else {
            return Err(InferenceError::Run(format!(
                "batch {batch}: the model's batch dimension is fixed at 1"
            )));
        };
        let run_err =
            |e: String| InferenceError::Run(format!("making the batch-{batch} plan: {e}"));
        let (typed, _) = type_for(source.clone(), &self.manifest, batch, &self.output_names)
            .map_err(|e| {
                run_err(match e {
                    TypeErr::Load(e) => format!("{e:#}"),
                    TypeErr::Mismatch(r) => r,
                })
            })?;
        let plan = optimise(typed, self.threads).map_err(|e| run_err(format!("{e:#}")))?;
        tracing::debug!(batch, "tract: plan made");
        plans.push((batch, plan.clone()));
        Ok(plan)
    }
}

enum TypeErr {
    Load(TractErr),
    Mismatch(String),
}

/// Fix the input shape (batch `batch`), type the model, read the output
/// shapes.
fn type_for(
    mut model: InferenceModel,
    manifest: &Manifest,
    batch: usize,
    wanted: &[String],
) -> std::result::Result<(TypedModel, Vec<Vec<usize>>), TypeErr> {
    let shape = batch_shape(manifest, batch);
    model
        .set_input_fact(0, f32::fact(&shape).into())
        .map_err(TypeErr::Load)?;
    let typed = model.into_typed().map_err(|e| {
        TypeErr::Mismatch(format!(
            "the model cannot run with input shape {shape:?}: {e:#}"
        ))
    })?;
    let mut shapes = Vec::new();
    for (i, name) in wanted.iter().enumerate() {
        let f = typed.output_fact(i).map_err(TypeErr::Load)?;
        let s = f.shape.as_concrete().map(|s| s.to_vec()).ok_or_else(|| {
            TypeErr::Mismatch(format!(
                "output {name:?} has no fixed shape ({:?}) for input {shape:?}",
                f.shape
            ))
        })?;
        if f.datum_type != f32::datum_type() {
            return Err(TypeErr::Mismatch(format!(
                "output {name:?} is {:?}, float32 expected",
                f.datum_type
            )));
        }
        shapes.push(s);
    }
    Ok((typed, shapes))
}

fn optimise(typed: TypedModel, threads: usize) -> TractResult<Plan> {
    let optimized = typed.into_optimized()?;
    let mut opts = RunOptions::default();
    if threads > 1 {
        opts.executor = Some(tract_linalg::multithread::Executor::multithread_with_name(
            threads,
            "tiancha-tract",
        ));
    }
    SimplePlan::new_with_options(optimized, &opts)
}

impl Backend for TractBackend {
    fn name(&self) -> &str {
        "tract"
    }

    fn dynamic_batch(&self) -> bool {
        self.source.is_some()
    }

    fn run(&self, input: Vec<f32>, batch: usize) -> Result<Vec<RawOutput>> {
        let shape = batch_shape(&self.manifest, batch);
        check_input_len(&input, &shape)?;
        let plan = self.plan(batch)?;
        let arr = tract_ndarray::ArrayD::from_shape_vec(shape, input)
            .map_err(|e| InferenceError::Run(format!("input tensor: {e}")))?;
        let t: Tensor = arr.into();
        let outs = plan
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
