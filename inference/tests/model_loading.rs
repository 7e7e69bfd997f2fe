//! Models load from a manifest alone: YOLOv5-style `[1, N, 5+C]` and
//! YOLOv8/11-style `[1, 4+C, N]` outputs on small models the test builds,
//! and clear errors for manifests that do not match their model and for
//! corrupt ONNX files.

mod common;

use std::path::Path;

use tiancha_inference::{BBox, Detection, Detector, DetectorOptions, Frame, InferenceError};

const H: i64 = 32;
const W: i64 = 48;

fn opts() -> DetectorOptions {
    DetectorOptions {
        threads: 1,
        low_score_floor: None,
        ..DetectorOptions::default()
    }
}

fn manifest(
    dir: &Path,
    decoder: &str,
    extra_output: &str,
    resize: &str,
    classes: &str,
) -> std::path::PathBuf {
    let text = format!(
        r#"
name = "tiny_{decoder}"
model = "tiny.onnx"
[input]
name = "images"
shape = [1, 3, {H}, {W}]
layout = "nchw"
color = "rgb"
resize = "{resize}"
scale = 0.00392156862745098
[output]
decoder = "{decoder}"
name = "output0"
{extra_output}
[classes]
names = [{classes}]
threshold = 0.5
[nms]
iou = 0.5
[events]
people = ["person"]
hazards = ["fire"]
"#
    );
    let p = dir.join("tiny.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A frame of one grey level.
fn frame(w: u32, h: u32, level: u8) -> Frame {
    Frame::from_bgr(0, w, h, vec![level; (w * h * 3) as usize], 0).unwrap()
}

fn sorted(mut d: Vec<Detection>) -> Vec<Detection> {
    d.sort_by(|a, b| b.score.total_cmp(&a.score));
    d
}

fn close(a: &BBox, b: &BBox) -> bool {
    (a.x1 - b.x1).abs() < 0.01
        && (a.y1 - b.y1).abs() < 0.01
        && (a.x2 - b.x2).abs() < 0.01
        && (a.y2 - b.y2).abs() < 0.01
}

/// Candidates in model-input pixels (48 × 32): (cx, cy, w, h, [person,
/// fire] base scores, [person, fire] gain on the mean brightness).
#[allow(clippy::type_complexity)]
const CANDIDATES: [(f32, f32, f32, f32, [f32; 2], [f32; 2]); 4] = [
    // Fire that only shows in a bright frame: 0.2 + mean.
    (10.0, 8.0, 8.0, 10.0, [0.0, 0.2], [0.0, 1.0]),
    // A person, always 0.9.
    (30.0, 20.0, 12.0, 8.0, [0.9, 0.0], [0.0, 0.0]),
    // A weaker duplicate of the person: NMS removes it.
    (30.5, 20.0, 12.0, 8.0, [0.6, 0.0], [0.0, 0.0]),
    // Fire in the same box as the person: class-aware NMS keeps it.
    (30.0, 20.0, 12.0, 8.0, [0.0, 0.55], [0.0, 0.0]),
];

fn check(
    dets: Vec<Detection>,
    bright: bool,
    to_frame: impl Fn(f32, f32) -> (f32, f32),
    size: (f32, f32),
) {
    let want = if bright { 3 } else { 2 };
    assert_eq!(dets.len(), want, "{dets:?}");
    let b = |i: usize| {
        let (cx, cy, w, h, ..) = CANDIDATES[i];
        let (x1, y1) = to_frame(cx - w / 2.0, cy - h / 2.0);
        let (x2, y2) = to_frame(cx + w / 2.0, cy + h / 2.0);
        // Boxes are clipped to the frame.
        BBox::new(x1, y1, x2, y2).clamp(size.0, size.1)
    };
    let find = |class: usize, i: usize| {
        dets.iter()
            .find(|d| d.class_id == class && close(&d.bbox, &b(i)))
            .unwrap_or_else(|| panic!("no class {class} box {:?} in {dets:?}", b(i)))
    };
    // The person; its weaker duplicate was suppressed.
    assert!((find(0, 1).score - 0.9).abs() < 1e-5);
    // Fire in the person's box survives class-aware NMS.
    assert!((find(1, 3).score - 0.55).abs() < 1e-5);
    if bright {
        // 0.2 + mean brightness of the input.
        let s = find(1, 0).score;
        assert!(s > 0.5 && s < 1.2, "{s}");
    }
}

#[test]
fn yolov5_rows_from_a_manifest_alone() {
    let dir = tempfile::tempdir().unwrap();
    // [1, N, 5 + C]: cx, cy, w, h, objectness, person, fire.
    let (mut base, mut gain) = (vec![], vec![]);
    for (cx, cy, w, h, s, g) in CANDIDATES {
        base.extend([cx, cy, w, h, 1.0, s[0], s[1]]);
        gain.extend([0.0, 0.0, 0.0, 0.0, 0.0, g[0], g[1]]);
    }
    let model = common::mean_gain_model(H, W, &[1, 4, 7], base, gain);
    std::fs::write(dir.path().join("tiny.onnx"), model).unwrap();
    let det = Detector::from_manifest_path(
        manifest(dir.path(), "yolov5", "", "stretch", "\"person\", \"fire\""),
        &opts(),
    )
    .unwrap();
    // A 96 × 64 frame: twice the input size.
    let scale = |x: f32, y: f32| (x * 2.0, y * 2.0);
    check(
        det.detect(&frame(96, 64, 200)).unwrap(),
        true,
        scale,
        (96.0, 64.0),
    );
    let s = sorted(det.detect(&frame(96, 64, 200)).unwrap())[0].score;
    assert!((s - (0.2 + 200.0 / 255.0)).abs() < 1e-4, "{s}");
    check(
        det.detect(&frame(96, 64, 0)).unwrap(),
        false,
        scale,
        (96.0, 64.0),
    );
}

#[test]
fn yolov8_columns_with_letterbox_from_a_manifest_alone() {
    let dir = tempfile::tempdir().unwrap();
    // [1, 4 + C, N]: rows cx, cy, w, h, person, fire; one column per candidate.
    let n = CANDIDATES.len();
    let (mut base, mut gain) = (vec![0.0; 6 * n], vec![0.0; 6 * n]);
    for (j, (cx, cy, w, h, s, g)) in CANDIDATES.iter().enumerate() {
        for (r, v) in [*cx, *cy, *w, *h, s[0], s[1]].iter().enumerate() {
            base[r * n + j] = *v;
        }
        gain[4 * n + j] = g[0];
        gain[5 * n + j] = g[1];
    }
    let model = common::mean_gain_model(H, W, &[1, 6, n as i64], base, gain);
    std::fs::write(dir.path().join("tiny.onnx"), model).unwrap();
    let det = Detector::from_manifest_path(
        manifest(
            dir.path(),
            "yolov8",
            "",
            "letterbox",
            "\"person\", \"fire\"",
        ),
        &opts(),
    )
    .unwrap();
    // A 96 × 96 frame letterboxed into 48 × 32: scale 1/3, 8 px padding left and right.
    let lb = |x: f32, y: f32| ((x - 8.0) * 3.0, y * 3.0);
    // The mean of a letterboxed frame includes the grey padding (114): the
    // bright frame still makes the fire pass (0.2 + 0.75), the black one
    // not (0.2 + 0.15).
    check(
        det.detect(&frame(96, 96, 230)).unwrap(),
        true,
        lb,
        (96.0, 96.0),
    );
    check(
        det.detect(&frame(96, 96, 0)).unwrap(),
        false,
        lb,
        (96.0, 96.0),
    );
}

#[test]
fn a_manifest_that_does_not_match_its_model_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let n = CANDIDATES.len() as i64;
    let model = common::mean_gain_model(
        H,
        W,
        &[1, 6, n],
        vec![0.0; 6 * n as usize],
        vec![0.0; 6 * n as usize],
    );
    std::fs::write(dir.path().join("tiny.onnx"), model).unwrap();
    let load = |text_fix: &dyn Fn(String) -> String| -> String {
        let p = manifest(
            dir.path(),
            "yolov8",
            "",
            "stretch",
            "\"person\", \"fire\", \"smoke\"",
        );
        let t = text_fix(std::fs::read_to_string(&p).unwrap());
        std::fs::write(&p, t).unwrap();
        match Detector::from_manifest_path(&p, &opts()) {
            Ok(_) => panic!("loaded a mismatching manifest"),
            Err(e) => e.to_string(),
        }
    };
    // Three classes in the manifest, two in the model's output.
    let e = load(&|t| t);
    assert!(e.contains("tiny.onnx") && e.contains("tiny.toml"), "{e}");
    assert!(e.contains("[1, 7, N]") && e.contains("2 classes"), "{e}");
    // Wrong input name.
    let e = load(&|t| {
        t.replace("name = \"images\"", "name = \"input_1\"")
            .replace("\"smoke\"", "\"s2\"")
            .replace(", \"s2\"", "")
    });
    assert!(e.contains("input_1") && e.contains("images"), "{e}");
    // Wrong input size.
    let e = load(&|t| {
        t.replace("[1, 3, 32, 48]", "[1, 3, 64, 64]")
            .replace(", \"smoke\"", "")
    });
    assert!(
        e.contains("[1, 3, 64, 64]") && e.contains("[1, 3, 32, 48]"),
        "{e}"
    );
    // Wrong output name.
    let e = load(&|t| {
        t.replace("name = \"output0\"", "name = \"detections\"")
            .replace(", \"smoke\"", "")
    });
    assert!(e.contains("\"detections\"") && e.contains("output0"), "{e}");
    // The yolov5 decoder on a yolov8-shaped output.
    let e = load(&|t| {
        t.replace("decoder = \"yolov8\"", "decoder = \"yolov5\"")
            .replace(", \"smoke\"", "")
    });
    assert!(e.contains("yolov5") && e.contains("[1, 6, 4]"), "{e}");
}

#[test]
fn corrupt_or_missing_onnx_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = manifest(dir.path(), "yolov8", "", "stretch", "\"person\", \"fire\"");
    // Missing.
    let e = Detector::from_manifest_path(&p, &opts()).err().unwrap();
    assert!(matches!(e, InferenceError::ModelLoad { .. }), "{e}");
    assert!(e.to_string().contains("tiny.onnx"), "{e}");
    // Garbage.
    std::fs::write(
        dir.path().join("tiny.onnx"),
        b"this is not a protobuf at all \xff\xfe",
    )
    .unwrap();
    let e = Detector::from_manifest_path(&p, &opts()).err().unwrap();
    assert!(matches!(e, InferenceError::ModelLoad { .. }), "{e}");
    assert!(
        e.to_string().contains("tiny.onnx") && e.to_string().contains("could not be loaded"),
        "{e}"
    );
    // The real model cut short (a broken download).
    let real =
        std::fs::read(common::workspace_root().join("models/centernet_mnv3_coco80.onnx")).unwrap();
    std::fs::write(dir.path().join("tiny.onnx"), &real[..real.len() / 3]).unwrap();
    let e = Detector::from_manifest_path(&p, &opts()).err().unwrap();
    assert!(e.to_string().contains("tiny.onnx"), "{e}");
    // A checksum that does not match is caught before parsing.
    let real_manifest = common::default_manifest();
    let text = std::fs::read_to_string(&real_manifest).unwrap();
    std::fs::copy(
        common::workspace_root().join("models/coco80_labels.txt"),
        dir.path().join("coco80_labels.txt"),
    )
    .unwrap();
    std::fs::write(dir.path().join("centernet_mnv3_coco80.onnx"), &real[..1000]).unwrap();
    std::fs::write(dir.path().join("c.toml"), text).unwrap();
    let e = Detector::from_manifest_path(dir.path().join("c.toml"), &opts())
        .err()
        .unwrap();
    assert!(matches!(e, InferenceError::ModelChecksum { .. }), "{e}");
    assert!(e.to_string().contains("sha256"), "{e}");
}

/// The shipped manifest at `name` rewritten by `fix`, in a temp dir, with
/// the model and class file named by absolute path (the real files).
fn shipped_manifest_variant(
    dir: &Path,
    name: &str,
    fix: impl Fn(String) -> String,
) -> std::path::PathBuf {
    let models = common::workspace_root().join("models");
    let text = std::fs::read_to_string(models.join(name)).unwrap();
    let onnx = name.replace(".toml", ".onnx");
    let text = fix(text)
        .replace(
            &format!("model = \"{onnx}\""),
            &format!("model = \"{}\"", models.join(&onnx).display()),
        )
        .replace(
            "file = \"coco80_labels.txt\"",
            &format!("file = \"{}\"", models.join("coco80_labels.txt").display()),
        );
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_quantization_table_that_does_not_match_the_graph_is_refused_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let expect_mismatch = |manifest: &Path, onnx: &str, needle: &str| {
        let e = Detector::from_manifest_path(manifest, &opts())
            .err()
            .expect("loaded a manifest whose precision does not match its graph");
        assert!(matches!(e, InferenceError::ModelMismatch { .. }), "{e}");
        let s = e.to_string();
        assert!(
            s.contains(onnx) && s.contains(&manifest.display().to_string()),
            "{s}"
        );
        assert!(s.contains(needle), "{needle:?} not in {s}");
    };

    // The INT8 (QDQ) graph with a manifest that says nothing (= fp32) ...
    let int8 = "centernet_mnv3_coco80_heads_int8.toml";
    let cut_table = |t: String| t[..t.find("[quantization]").unwrap()].to_string();
    let p = shipped_manifest_variant(dir.path(), int8, cut_table);
    expect_mismatch(
        &p,
        "centernet_mnv3_coco80_heads_int8.onnx",
        "has no [quantization] table",
    );
    // ... or says fp32.
    let p = shipped_manifest_variant(dir.path(), int8, |t| {
        cut_table(t) + "[quantization]\nprecision = \"fp32\"\n"
    });
    expect_mismatch(
        &p,
        "centernet_mnv3_coco80_heads_int8.onnx",
        "says precision = \"fp32\"",
    );

    // The FP32 graph with a manifest that says int8.
    let fp32 = "centernet_mnv3_coco80_heads.toml";
    let p = shipped_manifest_variant(dir.path(), fp32, |t| {
        t.replace("precision = \"fp32\"", "precision = \"int8\"")
    });
    expect_mismatch(&p, "centernet_mnv3_coco80_heads.onnx", "float model");
    // The original (no table) with a manifest that says int8.
    let p = shipped_manifest_variant(dir.path(), "centernet_mnv3_coco80.toml", |t| {
        t + "\n[quantization]\nprecision = \"int8\"\nscheme = \"qdq\"\n"
    });
    expect_mismatch(&p, "centernet_mnv3_coco80.onnx", "float model");
}

/// tract loads and runs the INT8 (QDQ) heads, and on vtest.avi's frame 300
/// they find the pedestrians the FP32 heads find (person ≥ 0.45).
#[test]
fn tract_runs_the_int8_heads_and_they_find_what_the_fp32_heads_find() {
    let models = common::workspace_root().join("models");
    let load = |name: &str| {
        Detector::from_manifest_path(
            models.join(name),
            &DetectorOptions {
                threads: 2,
                low_score_floor: None,
                ..DetectorOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let frame = &common::frames_at(&common::vtest(), &[300])[0];
    let people = |d: &Detector| -> Vec<Detection> {
        d.detect(frame)
            .unwrap()
            .into_iter()
            .filter(|x| d.manifest().class_name(x.class_id) == "person")
            .collect()
    };
    let fp32 = people(&load("centernet_mnv3_coco80_heads.toml"));
    let int8 = people(&load("centernet_mnv3_coco80_heads_int8.toml"));
    assert!(fp32.len() >= 5, "FP32 found {fp32:?}");
    let matched = fp32
        .iter()
        .filter(|a| int8.iter().any(|b| a.bbox.iou(&b.bbox) >= 0.5))
        .count();
    assert!(
        matched + 1 >= fp32.len(),
        "INT8 matched {matched} of FP32's {}: {int8:?} vs {fp32:?}",
        fp32.len()
    );
}
