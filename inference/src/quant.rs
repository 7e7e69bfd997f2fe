//! The manifest's `[quantization]` table checked against the graph: a
//! manifest that says `int8` must name a graph with quantization
//! operators, and a quantized graph must have a manifest that says so
//! (thresholds tuned on a float model are not silently reused for an
//! int8 one, nor the other way round).
//!
//! The graph's operators are read from the ONNX protobuf with
//! tract-onnx's parser (`proto_model_for_path`), whatever backend then
//! runs the model. Subgraphs (`If`, `Loop`, `Scan`) and local functions
//! are included.

use std::collections::BTreeSet;
use std::path::Path;

use tract_onnx::pb;
use tract_onnx::prelude::Framework;

use crate::error::{InferenceError, Result};
use crate::manifest::{Manifest, Precision, QuantScheme, QuantizationSpec};

/// QDQ: float operators between these.
const QDQ_OPS: [&str; 2] = ["QuantizeLinear", "DequantizeLinear"];

/// Operators that compute on quantized integers (ONNX and onnxruntime's
/// `com.microsoft` contrib ops).
fn is_qoperator(op: &str) -> bool {
    op.starts_with("QLinear")
        || matches!(
            op,
            "ConvInteger" | "MatMulInteger" | "DynamicQuantizeLinear" | "DynamicQuantizeMatMul"
        )
}

/// What the graph's operators say about its precision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphQuantization {
    /// `QuantizeLinear`/`DequantizeLinear` nodes.
    pub qdq_nodes: usize,
    /// Quantized-arithmetic nodes (`QLinearConv`, `ConvInteger`, …).
    pub qoperator_nodes: usize,
    /// The quantization operator types present, sorted.
    pub op_types: BTreeSet<String>,
}

impl GraphQuantization {
    pub fn is_quantized(&self) -> bool {
        self.qdq_nodes > 0 || self.qoperator_nodes > 0
    }

    /// The operator types, for messages: `QuantizeLinear ×12, …`.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.qdq_nodes > 0 {
            parts.push(format!(
                "{} QuantizeLinear/DequantizeLinear",
                self.qdq_nodes
            ));
        }
        if self.qoperator_nodes > 0 {
            parts.push(format!("{} quantized-operator", self.qoperator_nodes));
        }
        format!(
            "{} nodes ({})",
            parts.join(" and "),
            self.op_types.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    }

    fn add_graph(&mut self, g: &pb::GraphProto) {
        for n in &g.node {
            self.add_node(n);
        }
    }

    fn add_node(&mut self, n: &pb::NodeProto) {
        let op = n.op_type.as_str();
        if QDQ_OPS.contains(&op) {
            self.qdq_nodes += 1;
            self.op_types.insert(op.to_string());
        } else if is_qoperator(op) {
            self.qoperator_nodes += 1;
            self.op_types.insert(op.to_string());
        }
        for a in &n.attribute {
            if let Some(g) = &a.g {
                self.add_graph(g);
            }
            for g in &a.graphs {
                self.add_graph(g);
            }
        }
    }
}

/// The quantization operators of an ONNX model.
pub fn graph_quantization(model: &pb::ModelProto) -> GraphQuantization {
    let mut q = GraphQuantization::default();
    if let Some(g) = &model.graph {
        q.add_graph(g);
    }
    for f in &model.functions {
        for n in &f.node {
            q.add_node(n);
        }
    }
    q
}

/// Read the ONNX file at `path` and list its quantization operators.
pub fn read_graph_quantization(path: &Path) -> Result<GraphQuantization> {
    let proto =
        tract_onnx::onnx()
            .proto_model_for_path(path)
            .map_err(|e| InferenceError::ModelLoad {
                path: path.to_path_buf(),
                reason: format!("{e:#}"),
            })?;
    Ok(graph_quantization(&proto))
}

/// Check the manifest's `[quantization]` (fp32 when absent) against the
/// graph: `ModelMismatch` naming both files when they disagree.
pub fn check(manifest: &Manifest) -> Result<()> {
    let graph = read_graph_quantization(&manifest.model_path)?;
    check_against(manifest, &graph)
}

/// [`check`] with the graph's operators already read.
pub fn check_against(manifest: &Manifest, graph: &GraphQuantization) -> Result<()> {
    let mismatch = |reason: String| InferenceError::ModelMismatch {
        model: manifest.model_path.clone(),
        manifest: manifest.path.clone(),
        reason,
    };
    let spec = manifest.file.quantization.as_ref();
    match QuantizationSpec::precision_of(spec) {
        Precision::Fp32 if graph.is_quantized() => Err(mismatch(format!(
            "the graph is quantized ({}) but the manifest {}; \
             add [quantization] precision = \"int8\" (and check the thresholds for the quantized model)",
            graph.describe(),
            if spec.is_some() {
                "says precision = \"fp32\""
            } else {
                "has no [quantization] table (= fp32)"
            }
        ))),
        Precision::Int8 if !graph.is_quantized() => Err(mismatch(
            "the manifest says [quantization] precision = \"int8\" but the graph has no \
             QuantizeLinear/DequantizeLinear or QLinear*/…Integer nodes: it is a float model"
                .into(),
        )),
        Precision::Int8 => match spec.and_then(|q| q.scheme) {
            Some(QuantScheme::Qdq) if graph.qdq_nodes == 0 => Err(mismatch(format!(
                "the manifest says scheme = \"qdq\" but the graph has no \
                 QuantizeLinear/DequantizeLinear nodes ({})",
                graph.describe()
            ))),
            Some(QuantScheme::Qoperator) if graph.qoperator_nodes == 0 => Err(mismatch(format!(
                "the manifest says scheme = \"qoperator\" but the graph has no \
                 QLinear*/…Integer nodes ({})",
                graph.describe()
            ))),
            _ => Ok(()),
        },
        Precision::Fp32 => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str) -> pb::NodeProto {
        pb::NodeProto {
            op_type: op.into(),
            ..Default::default()
        }
    }

    fn model(ops: &[&str]) -> pb::ModelProto {
        pb::ModelProto {
            graph: Some(pb::GraphProto {
                node: ops.iter().map(|o| node(o)).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn manifest(quant: &str) -> Manifest {
        let text = format!(
            r#"
name = "m"
model = "m.onnx"
[input]
name = "x"
shape = [1, 64, 64, 3]
layout = "nhwc"
color = "rgb"
resize = "stretch"
[output]
decoder = "detections"
name = "y"
[classes]
names = ["person"]
{quant}
"#
        );
        Manifest::parse(&text, Path::new("/models/m.toml"), |_| Err("no".into())).unwrap()
    }

    #[test]
    fn operators_are_counted_including_subgraphs() {
        let mut m = model(&["Conv", "QuantizeLinear", "DequantizeLinear", "Relu"]);
        let mut iff = node("If");
        iff.attribute.push(pb::AttributeProto {
            name: "then_branch".into(),
            g: Some(pb::GraphProto {
                node: vec![node("QLinearConv")],
                ..Default::default()
            }),
            ..Default::default()
        });
        m.graph.as_mut().unwrap().node.push(iff);
        let q = graph_quantization(&m);
        assert_eq!((q.qdq_nodes, q.qoperator_nodes), (2, 1));
        assert!(q.is_quantized());
        assert!(!graph_quantization(&model(&["Conv", "Relu", "Sigmoid"])).is_quantized());
        assert!(graph_quantization(&model(&["ConvInteger"])).is_quantized());
    }

    #[test]
    fn both_directions_of_mismatch_are_refused_with_both_files() {
        let float = graph_quantization(&model(&["Conv", "Sigmoid"]));
        let qdq = graph_quantization(&model(&["QuantizeLinear", "Conv", "DequantizeLinear"]));
        let qop = graph_quantization(&model(&["QLinearConv"]));
        let int8 = "[quantization]\nprecision = \"int8\"";
        let int8_qdq = "[quantization]\nprecision = \"int8\"\nscheme = \"qdq\"";
        let int8_qop = "[quantization]\nprecision = \"int8\"\nscheme = \"qoperator\"";
        let fp32 = "[quantization]\nprecision = \"fp32\"";
        for (quant, graph, ok) in [
            ("", &float, true),
            (fp32, &float, true),
            (int8, &qdq, true),
            (int8, &qop, true),
            (int8_qdq, &qdq, true),
            (int8_qop, &qop, true),
            ("", &qdq, false),
            (fp32, &qop, false),
            (int8, &float, false),
            (int8_qdq, &qop, false),
            (int8_qop, &qdq, false),
        ] {
            let r = check_against(&manifest(quant), graph);
            assert_eq!(r.is_ok(), ok, "{quant:?} on {graph:?}: {r:?}");
            if let Err(e) = r {
                assert!(matches!(e, InferenceError::ModelMismatch { .. }), "{e}");
                let s = e.to_string();
                assert!(
                    s.contains("/models/m.onnx") && s.contains("/models/m.toml"),
                    "{s}"
                );
            }
        }
    }
}
