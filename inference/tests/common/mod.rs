//! Shared helpers for the integration tests: paths to the real model and
//! media, the Python referee, frame extraction, and a builder for small
//! ONNX models the tests generate.
#![allow(dead_code)]

pub mod thermal;

use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message;
use tiancha_inference::source::{Delivery, SourceConfig, SourceItem};
use tiancha_inference::{Detection, Frame, FrameSource};
use tract_onnx::pb;

/// Two engines' detections are the same one: same class, boxes within
/// 1 px, scores within 0.01 (the referee tests' tolerance).
pub fn same_detection(a: &Detection, b: &Detection) -> bool {
    a.class_id == b.class_id
        && (a.score - b.score).abs() <= 0.01
        && (a.bbox.x1 - b.bbox.x1).abs() <= 1.0
        && (a.bbox.y1 - b.bbox.y1).abs() <= 1.0
        && (a.bbox.x2 - b.bbox.x2).abs() <= 1.0
        && (a.bbox.y2 - b.bbox.y2).abs() <= 1.0
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn default_manifest() -> PathBuf {
    workspace_root().join("models/centernet_mnv3_coco80.toml")
}

pub const VTEST: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";

/// Debian opencv-doc's vtest.avi; fails the test clearly when missing.
pub fn vtest() -> PathBuf {
    let p = PathBuf::from(VTEST);
    assert!(
        p.exists(),
        "{VTEST} is missing: install Debian's opencv-doc package (apt-get install opencv-doc); \
         scripts/dev setup does this"
    );
    p
}

/// The Python with onnxruntime: $TIANCHA_PYTHON or <workspace>/.venv/bin/python.
pub fn python() -> PathBuf {
    let p = std::env::var_os("TIANCHA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "Python for the onnxruntime reference not found at {}: run `scripts/dev setup` \
         (creates .venv from scripts/requirements.txt) or set TIANCHA_PYTHON",
        p.display()
    );
    p
}

/// Decode the frames with the given sequence numbers (sorted) from a file.
pub fn frames_at(path: &Path, wanted: &[u64]) -> Vec<Frame> {
    let mut cfg = SourceConfig::new(path.to_string_lossy());
    cfg.delivery = Some(Delivery::Every);
    cfg.start_unix_ms = Some(1_700_000_000_000);
    let src = FrameSource::open(cfg).unwrap();
    let mut out = Vec::new();
    let last = *wanted.iter().max().unwrap();
    loop {
        match src.recv(Duration::from_secs(30)).expect("the decoder hung") {
            SourceItem::Frame(f) => {
                if wanted.contains(&f.seq) {
                    out.push(f.clone());
                }
                if f.seq >= last {
                    break;
                }
            }
            SourceItem::Event(_) => {}
            SourceItem::End(r) => {
                r.unwrap();
                break;
            }
        }
    }
    assert_eq!(out.len(), wanted.len(), "not all frames found");
    out
}

// ------------------------------------------------------------ ONNX builder

fn dims(shape: &[i64]) -> Option<pb::TypeProto> {
    Some(pb::TypeProto {
        denotation: String::new(),
        value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
            elem_type: 1,
            shape: Some(pb::TensorShapeProto {
                dim: shape
                    .iter()
                    .map(|d| pb::tensor_shape_proto::Dimension {
                        denotation: String::new(),
                        value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(*d)),
                    })
                    .collect(),
            }),
        })),
    })
}

fn value(name: &str, shape: &[i64]) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.into(),
        r#type: dims(shape),
        doc_string: String::new(),
    }
}

fn tensor_f32(name: &str, shape: &[i64], data: Vec<f32>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: shape.to_vec(),
        data_type: 1,
        float_data: data,
        ..Default::default()
    }
}

fn tensor_i64(name: &str, data: Vec<i64>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: vec![data.len() as i64],
        data_type: 7,
        int64_data: data,
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: output.into(),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 7,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 2,
        i: v,
        ..Default::default()
    }
}

/// A tiny detection "model" for decoder tests:
/// `output = base + mean(input) × gain`, with `base` and `gain` tensors of
/// the output's shape. The input is `[1, 3, h, w]` named `images`, the
/// output is named `output0`. The mean of the pre-processed input (0..1
/// for a 1/255 scale) lets a test switch detections on and off with the
/// frame's brightness.
pub fn mean_gain_model(
    h: i64,
    w: i64,
    out_shape: &[i64],
    base: Vec<f32>,
    gain: Vec<f32>,
) -> Vec<u8> {
    let n: i64 = out_shape.iter().product();
    assert_eq!(base.len() as i64, n);
    assert_eq!(gain.len() as i64, n);
    let graph = pb::GraphProto {
        name: "mean_gain".into(),
        node: vec![
            node(
                "ReduceMean",
                &["images"],
                "mean4",
                vec![ints("axes", &[1, 2, 3]), int("keepdims", 1)],
            ),
            node("Reshape", &["mean4", "shape3"], "mean3", vec![]),
            node("Mul", &["mean3", "gain"], "scaled", vec![]),
            node("Add", &["scaled", "base"], "output0", vec![]),
        ],
        initializer: vec![
            tensor_i64("shape3", vec![1, 1, 1]),
            tensor_f32("gain", out_shape, gain),
            tensor_f32("base", out_shape, base),
        ],
        input: vec![value("images", &[1, 3, h, w])],
        output: vec![value("output0", out_shape)],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "tiancha-tests".into(),
        graph: Some(graph),
        ..Default::default()
    };
    model.encode_to_vec()
}
