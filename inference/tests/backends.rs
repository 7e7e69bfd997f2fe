//! The backends against each other, with real parts: tract and onnxruntime
//! (the `ort` backend on the venv's real libonnxruntime, the one the
//! Python referee uses) on real vtest.avi frames.
//!
//! - Same detections (class equal, boxes within 1 px, scores within 0.01)
//!   on the shipped 512×512 manifest, and on the whole frame at its native
//!   size through the input-size override with the dynamic heads model
//!   (symbolic N, H, W).
//! - Tiles run as one batch give what they give one by one.
//! - Errors: a missing library, a provider this library cannot register
//!   (no silent CPU fallback), an input-size override on a fixed-shape
//!   model.
//!
//! The dynamic heads model is `models/centernet_mnv3_coco80_heads.toml`
//! when it exists; otherwise it is cut from the shipped model with the
//! venv's `onnx` into the test's temporary directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

#[cfg(feature = "ort")]
use tiancha_inference::backend::{self, LoadContext};
use tiancha_inference::manifest::TilingSpec;
#[cfg(feature = "ort")]
use tiancha_inference::{BackendKind, OrtOptions, Provider};
use tiancha_inference::{
    BackendOptions, Detection, Detector, DetectorOptions, Frame, InferenceError,
};

/// The virtualenv with onnxruntime: $TIANCHA_VENV, else the one
/// $TIANCHA_PYTHON lives in, else <workspace>/.venv.
fn venv() -> PathBuf {
    if let Some(v) = std::env::var_os("TIANCHA_VENV") {
        return PathBuf::from(v);
    }
    if let Some(p) = std::env::var_os("TIANCHA_PYTHON") {
        if let Some(v) = Path::new(&p).parent().and_then(Path::parent) {
            return v.to_path_buf();
        }
    }
    common::workspace_root().join(".venv")
}

/// The venv's libonnxruntime.so.<version> (the PyPI wheel's).
#[cfg(feature = "ort")]
fn ort_library() -> PathBuf {
    let venv = venv();
    let found = tiancha_inference::onnxruntime_in_venv(&venv);
    found.unwrap_or_else(|| {
        panic!(
            "no lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* in {}: run \
             `scripts/dev setup` (creates .venv from scripts/requirements.txt) or set TIANCHA_VENV",
            venv.display()
        )
    })
}

/// The dynamic heads manifest (see the module doc).
fn heads_manifest() -> PathBuf {
    let shipped = common::workspace_root().join("models/centernet_mnv3_coco80_heads.toml");
    if shipped.exists() {
        return shipped;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("heads_dyn");
    let manifest = dir.join("centernet_heads_dyn.toml");
    if manifest.exists() {
        return manifest;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let src = common::workspace_root().join("models/centernet_mnv3_coco80.onnx");
    let model = dir.join("centernet_heads_dyn.onnx");
    let tmp = dir.join(format!("cut.{}.onnx", std::process::id()));
    let script = r#"
import sys
import onnx
from onnx import numpy_helper, utils
src, dst = sys.argv[1:3]
utils.extract_model(src, dst, ['tower_0/images:0'], ['tower_0/keypoints', 'tower_0/wh'])
m = onnx.load(dst)
dims = m.graph.input[0].type.tensor_type.shape.dim
for i, name in enumerate('NHW'):
    dims[i].dim_param = name
for o in m.graph.output:
    for d in o.type.tensor_type.shape.dim:
        d.dim_param = '?'
for t in m.graph.initializer:
    if t.name.startswith('new_shape__'):
        a = numpy_helper.to_array(t).copy()
        a[0] = -1
        t.CopyFrom(numpy_helper.from_array(a, t.name))
onnx.checker.check_model(m)
onnx.save(m, dst)
"#;
    let out = Command::new(common::python())
        .arg("-c")
        .arg(script)
        .arg(&src)
        .arg(&tmp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cutting the heads model failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &model).unwrap();
    let text = std::fs::read_to_string(common::default_manifest())
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("sha256"))
        .map(|l| {
            l.replace(
                "\"centernet_mnv3_coco80.onnx\"",
                &format!("{:?}", model.display().to_string()),
            )
            .replace(
                "\"coco80_labels.txt\"",
                &format!(
                    "{:?}",
                    common::workspace_root()
                        .join("models/coco80_labels.txt")
                        .display()
                        .to_string()
                ),
            )
            .replace(
                "name = \"centernet_mnv3_coco80\"",
                "name = \"centernet_heads_dyn\"",
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let tmp = dir.join(format!("m.{}.toml", std::process::id()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &manifest).unwrap();
    manifest
}

fn options(backend: BackendOptions) -> DetectorOptions {
    DetectorOptions {
        threads: 2,
        low_score_floor: None,
        backend,
        ..DetectorOptions::default()
    }
}

#[cfg(feature = "ort")]
fn ort_options(provider: Provider) -> BackendOptions {
    BackendOptions {
        kind: BackendKind::Ort,
        ort: OrtOptions {
            library: Some(ort_library()),
            provider,
            ..OrtOptions::default()
        },
    }
}

/// Every detection confidently above its class threshold on one side (by
/// more than the score tolerance, so a 0.001 difference cannot flip it)
/// has its match on the other. Returns how many were compared.
fn assert_same(
    what: &str,
    det: &Detector,
    seq: u64,
    (an, a): (&str, &[Detection]),
    (bn, b): (&str, &[Detection]),
) -> usize {
    let thr = &det.manifest().thresholds;
    let confident = |d: &Detection| d.score >= thr[d.class_id] + 0.011;
    let mut n = 0;
    for (xn, x, yn, y) in [(an, a, bn, b), (bn, b, an, a)] {
        for d in x.iter().filter(|d| confident(d)) {
            assert!(
                y.iter().any(|e| common::same_detection(d, e)),
                "{what}, frame {seq}: {xn} found {d:?}, {yn} did not: {y:?}"
            );
            n += 1;
        }
    }
    n / 2
}

fn vtest_frames() -> Vec<Frame> {
    common::frames_at(&common::vtest(), &[0, 150, 300, 450, 600, 750])
}

#[cfg(feature = "ort")]
fn tract_and_ort_agree(what: &str, manifest: &Path, input_size: Option<(u32, u32)>) {
    tract_and_ort_agree_on(what, manifest, input_size, &vtest_frames(), 20);
}

/// [`tract_and_ort_agree`] on `frames`, comparing at least `least`
/// confident detections.
#[cfg(feature = "ort")]
fn tract_and_ort_agree_on(
    what: &str,
    manifest: &Path,
    input_size: Option<(u32, u32)>,
    frames: &[Frame],
    least: usize,
) {
    let tract = Detector::from_manifest_path(
        manifest,
        &DetectorOptions {
            input_size,
            ..options(BackendOptions::default())
        },
    )
    .unwrap();
    let ort = Detector::from_manifest_path(
        manifest,
        &DetectorOptions {
            input_size,
            ..options(ort_options(Provider::Cpu))
        },
    )
    .unwrap();
    assert_eq!(tract.backend_name(), "tract");
    assert_eq!(ort.backend_name(), "onnxruntime/cpu");
    assert_eq!(
        tract.manifest().file.input.shape,
        ort.manifest().file.input.shape
    );
    let mut compared = 0;
    for f in frames {
        let a = tract.detect(f).unwrap();
        let b = ort.detect(f).unwrap();
        compared += assert_same(what, &tract, f.seq, ("tract", &a), ("onnxruntime", &b));
    }
    eprintln!(
        "{what}: input {:?}, {compared} confident detections equal in tract and onnxruntime",
        tract.manifest().file.input.shape
    );
    assert!(
        compared >= least,
        "{what}: only {compared} confident detections: the comparison says little"
    );
}

/// The shipped fire/smoke model (models/train/run) on held-out test
/// photos of its data set (../shared/data/fire-smoke-rgb, CC BY 4.0, read
/// in place): tract and onnxruntime find the same fires and smoke.
#[cfg(feature = "ort")]
#[test]
fn tract_and_ort_agree_on_the_fire_smoke_model() {
    let files = common::thermal::sorted_files(
        &common::workspace_root().join("../shared/data/fire-smoke-rgb/test/images"),
    );
    let frames: Vec<Frame> = files
        .iter()
        .take(24)
        .enumerate()
        .map(|(i, p)| {
            let img =
                tiancha_inference::opencv::imgcodecs::imread_def(p.to_str().unwrap()).unwrap();
            Frame::from_mat(i as u64, &img, 0).unwrap()
        })
        .collect();
    tract_and_ort_agree_on(
        "fire/smoke model on 24 test photos",
        &common::workspace_root().join("models/fire_smoke_centernet_mnv3.toml"),
        None,
        &frames,
        10,
    );
}

#[cfg(feature = "ort")]
#[test]
fn tract_and_ort_agree_on_the_512_manifest() {
    tract_and_ort_agree("512x512 manifest", &common::default_manifest(), None);
}

/// vtest.avi's 768×576 frames whole, at their own size (both multiples of
/// 32): the heat-map is 144×192.
#[cfg(feature = "ort")]
#[test]
fn tract_and_ort_agree_on_the_whole_frame_with_the_dynamic_heads_model() {
    tract_and_ort_agree(
        "whole frame 768x576, dynamic heads",
        &heads_manifest(),
        Some((768, 576)),
    );
}

/// The eye's case: a 1280×720 camera frame whole at 1280×736 (H, W
/// multiples of 32); the heat-map follows (184×320 at stride 4) and
/// decodes, on both backends alike.
#[cfg(feature = "ort")]
#[test]
fn a_1280x736_input_gives_a_184x320_heat_map_on_both_backends() {
    let f = &vtest_frames()[2];
    // The vtest frame scaled to 1280×720, as the camera gives it.
    let mut big = tiancha_inference::opencv::core::Mat::default();
    tiancha_inference::opencv::imgproc::resize(
        &f.to_mat().unwrap(),
        &mut big,
        tiancha_inference::opencv::core::Size::new(1280, 720),
        0.0,
        0.0,
        tiancha_inference::opencv::imgproc::INTER_LINEAR,
    )
    .unwrap();
    let frame = Frame::from_mat(f.seq, &big, f.capture_unix_ms).unwrap();
    let mut found = vec![];
    for b in [BackendOptions::default(), ort_options(Provider::Cpu)] {
        let det = Detector::from_manifest_path(
            heads_manifest(),
            &DetectorOptions {
                input_size: Some((1280, 736)),
                ..options(b.clone())
            },
        )
        .unwrap();
        assert_eq!(det.manifest().file.input.shape, [1, 736, 1280, 3]);
        assert_eq!(det.manifest().file.input.size(), (1280, 736));
        let mut pre = det.preprocessor();
        let p = det.prepare(&mut pre, &frame).unwrap();
        assert_eq!(p.slice_len, 736 * 1280 * 3);
        // The raw heads, straight from a backend loaded the same way.
        let raw = backend::load(
            det.manifest(),
            &b,
            LoadContext {
                threads: 2,
                overridden_size: Some((512, 512)),
            },
        )
        .unwrap();
        let outs = raw.run(vec![0.0; 736 * 1280 * 3], 1).unwrap();
        let shapes: Vec<&[usize]> = outs.iter().map(|o| o.shape.as_slice()).collect();
        assert_eq!(
            shapes,
            [&[1, 184, 320, 80][..], &[1, 184, 320, 4]],
            "{}",
            raw.name()
        );
        found.push(det.detect(&frame).unwrap());
    }
    let det = Detector::from_manifest_path(heads_manifest(), &options(Default::default())).unwrap();
    let n = assert_same(
        "1280x736",
        &det,
        f.seq,
        ("tract", &found[0]),
        ("onnxruntime", &found[1]),
    );
    eprintln!("1280x736: {n} confident detections equal");
    assert!(n >= 3, "only {n} confident detections");
}

fn tiled(batch: bool, backend: BackendOptions) -> Detector {
    Detector::from_manifest_path(
        heads_manifest(),
        &DetectorOptions {
            tiling: Some(Some(TilingSpec {
                rows: 2,
                cols: 2,
                overlap: 0.2,
                include_full: true,
            })),
            batch_slices: Some(batch),
            ..options(backend)
        },
    )
    .unwrap()
}

fn batched_equals_one_by_one(backend: BackendOptions) {
    let one = tiled(false, backend.clone());
    let batched = tiled(true, backend.clone());
    assert!(!one.batches_slices());
    let by_default = Detector::from_manifest_path(
        heads_manifest(),
        &DetectorOptions {
            tiling: Some(Some(TilingSpec {
                rows: 2,
                cols: 2,
                overlap: 0.2,
                include_full: true,
            })),
            ..options(backend)
        },
    )
    .unwrap();
    assert!(
        !by_default.batches_slices(),
        "on the CPU one by one is faster, so the default"
    );
    assert!(
        batched.batches_slices(),
        "the heads model's batch is symbolic"
    );
    let mut pre = batched.preprocessor();
    let mut compared = 0;
    for f in &vtest_frames()[..3] {
        let p = batched.prepare(&mut pre, f).unwrap();
        assert_eq!(
            (p.inputs.len(), p.batch()),
            (1, 5),
            "one tensor of 5 slices"
        );
        let a = one.detect(f).unwrap();
        let b = batched.infer(p).unwrap();
        compared += assert_same(
            one.backend_name(),
            &one,
            f.seq,
            ("one by one", &a),
            ("batched", &b),
        );
        assert_eq!(a.len(), b.len(), "frame {}", f.seq);
    }
    eprintln!(
        "{}: {compared} confident detections equal batched and one by one",
        one.backend_name()
    );
    assert!(compared >= 10, "only {compared}");
}

#[test]
fn tract_batched_tiles_equal_one_by_one() {
    batched_equals_one_by_one(BackendOptions::default());
}

#[cfg(feature = "ort")]
#[test]
fn ort_batched_tiles_equal_one_by_one() {
    batched_equals_one_by_one(ort_options(Provider::Cpu));
}

#[cfg(feature = "ort")]
#[test]
fn a_missing_onnxruntime_library_is_an_error_naming_the_path() {
    let missing = "/nonexistent/onnxruntime/libonnxruntime.so.1.23.2";
    let mut b = ort_options(Provider::Cpu);
    b.ort.library = Some(missing.into());
    let e = Detector::from_manifest_path(common::default_manifest(), &options(b))
        .err()
        .expect("a missing library must not load");
    assert!(matches!(e, InferenceError::OrtLibrary { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains(missing) && e.contains("no such file") && e.contains("ORT_DYLIB_PATH"),
        "{e}"
    );
    // A file that is not a library: an error naming it, too.
    let not_a_lib = common::default_manifest();
    let mut b = ort_options(Provider::Cpu);
    b.ort.library = Some(not_a_lib.clone());
    let e = Detector::from_manifest_path(common::default_manifest(), &options(b))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&not_a_lib.display().to_string()) && e.contains("cannot load"),
        "{e}"
    );
}

/// This venv has the CPU-only onnxruntime wheel: CUDA, TensorRT and
/// OpenVINO cannot be registered. Each must be an error naming the
/// provider and the library, never a detector quietly on the CPU.
#[cfg(feature = "ort")]
#[test]
fn a_provider_that_cannot_load_is_an_error_not_a_cpu_fallback() {
    let lib = ort_library();
    for p in [Provider::Cuda, Provider::Tensorrt, Provider::Openvino] {
        let r = Detector::from_manifest_path(common::default_manifest(), &options(ort_options(p)));
        let e = match r {
            Ok(d) => panic!("{p}: a detector was built on {}", d.backend_name()),
            Err(e) => e,
        };
        assert!(
            matches!(&e, InferenceError::Provider { provider, .. } if provider == p.as_str()),
            "{p}: {e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("`{p}`"))
                && msg.contains(&lib.canonicalize().unwrap().display().to_string()),
            "{msg}"
        );
        eprintln!("{p}: {msg}");
    }
    // The CPU still works in the same process afterwards.
    Detector::from_manifest_path(
        common::default_manifest(),
        &options(ort_options(Provider::Cpu)),
    )
    .unwrap();
}

#[test]
fn an_input_size_override_on_a_fixed_shape_model_is_a_mismatch() {
    let mut backends = vec![BackendOptions::default()];
    #[cfg(feature = "ort")]
    backends.push(ort_options(Provider::Cpu));
    for b in backends {
        let kind = b.kind;
        let e = Detector::from_manifest_path(
            common::default_manifest(),
            &DetectorOptions {
                input_size: Some((768, 576)),
                ..options(b)
            },
        )
        .err()
        .expect("a fixed 512x512 model must refuse 768x576");
        assert!(
            matches!(e, InferenceError::ModelMismatch { .. }),
            "{kind}: {e:?}"
        );
        let e = e.to_string();
        assert!(
            e.contains("768x576") && e.contains("symbolic") && e.contains("[1, 512, 512, 3]"),
            "{kind}: {e}"
        );
    }
    // The same size as the model's is fine.
    Detector::from_manifest_path(
        common::default_manifest(),
        &DetectorOptions {
            input_size: Some((512, 512)),
            ..options(BackendOptions::default())
        },
    )
    .unwrap();
}
