//! Model manifests: everything the eye needs to know about an ONNX model,
//! so that a new model (e.g. a fire/smoke YOLO trained on D-Fire) drops in
//! without code changes.
//!
//! A manifest is a TOML file next to the model (see `models/*.toml`):
//!
//! ```toml
//! name = "dfire_yolov8n"
//! model = "dfire_yolov8n.onnx"        # relative to the manifest
//! sha256 = "…"                         # optional, checked at load
//!
//! [input]
//! name = "images"
//! shape = [1, 3, 640, 640]
//! layout = "nchw"                      # or "nhwc"
//! color = "rgb"                        # or "bgr"
//! resize = "letterbox"                 # or "stretch"
//! scale = 0.00392156862745098          # pixel (0..255) × scale, then (− mean) / std
//!
//! [output]
//! decoder = "yolov8"                   # [1, 4+C, N]; "yolov5" is [1, N, 5+C],
//! name = "output0"                     # "detections" is [1, N, 6], "centernet" raw heads
//!
//! [classes]
//! names = ["smoke", "fire"]            # or file = "labels.txt", one per line
//! threshold = 0.35
//! thresholds = { fire = 0.3 }
//!
//! [events]
//! hazards = ["smoke", "fire"]          # classes that feed the hazard rule
//!
//! [quantization]                       # optional; absent = a float graph
//! precision = "int8"                   # or "fp32"
//! scheme = "qdq"                       # or "qoperator"; optional
//! calibration = "…"                    # how it was calibrated (free text)
//! ```
//!
//! [`Manifest::load`] parses and validates it (every error names the file
//! and the field); the detector then checks it against the model's real
//! input and output shapes, and [`crate::quant::check`] checks the
//! `[quantization]` table against the graph's operators.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiancha_protocol::Category;

use crate::error::{InferenceError, Result};

/// Tensor layout of the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nhwc,
    Nchw,
}

/// Channel order the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    Rgb,
    Bgr,
}

/// How a frame is brought to the input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// Stretch to the input size (aspect ratio not kept).
    Stretch,
    /// Keep the aspect ratio, pad the rest with `pad_value` (centred).
    Letterbox,
}

fn one() -> f32 {
    1.0
}
fn ones3() -> [f32; 3] {
    [1.0; 3]
}
fn pad114() -> u8 {
    114
}

/// The model input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Input tensor name in the ONNX graph.
    pub name: String,
    /// Fixed input shape, batch 1 (`[1, H, W, 3]` or `[1, 3, H, W]`).
    pub shape: Vec<usize>,
    pub layout: Layout,
    pub color: ColorOrder,
    pub resize: ResizeMode,
    /// Pixel values 0..255 are multiplied by this, then `(x − mean) / std`.
    #[serde(default = "one")]
    pub scale: f32,
    #[serde(default)]
    pub mean: [f32; 3],
    #[serde(default = "ones3")]
    pub std: [f32; 3],
    /// Grey level of letterbox padding.
    #[serde(default = "pad114")]
    pub pad_value: u8,
}

impl InputSpec {
    /// Input (width, height) in pixels.
    pub fn size(&self) -> (usize, usize) {
        match self.layout {
            Layout::Nhwc => (self.shape[2], self.shape[1]),
            Layout::Nchw => (self.shape[3], self.shape[2]),
        }
    }
}

fn default_max_det() -> usize {
    100
}

/// How to read detections out of the model's outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decoder", rename_all = "lowercase", deny_unknown_fields)]
pub enum OutputSpec {
    /// Already decoded: `[1, N, 6]` rows of `x1, y1, x2, y2, score, class`.
    Detections {
        name: String,
        /// Coordinates are 0..1 of the input instead of input pixels.
        #[serde(default)]
        normalized: bool,
    },
    /// CenterNet raw heads: a class heat-map `[1, H, W, C]` (after
    /// sigmoid) and box sides `[1, H, W, 4]` = left, top, right, bottom
    /// distances in input pixels from the cell centre × `stride`. Peaks
    /// are 3×3 local maxima, as CenterNet does.
    Centernet {
        heatmap: String,
        sizes: String,
        stride: u32,
        #[serde(default = "default_max_det")]
        max_detections: usize,
    },
    /// YOLOv5/v7 style: `[1, N, 5 + C]` rows of `cx, cy, w, h,
    /// objectness, class scores…`; score = objectness × class score.
    Yolov5 {
        name: String,
        #[serde(default)]
        normalized: bool,
    },
    /// YOLOv8/11 style: `[1, 4 + C, N]` columns of `cx, cy, w, h, class
    /// scores…` (no objectness). `transposed = true` reads `[1, N, 4 + C]`.
    Yolov8 {
        name: String,
        #[serde(default)]
        transposed: bool,
        #[serde(default)]
        normalized: bool,
    },
}

impl OutputSpec {
    /// Names of the model outputs the decoder reads.
    pub fn output_names(&self) -> Vec<&str> {
        match self {
            OutputSpec::Detections { name, .. }
            | OutputSpec::Yolov5 { name, .. }
            | OutputSpec::Yolov8 { name, .. } => vec![name.as_str()],
            OutputSpec::Centernet { heatmap, sizes, .. } => vec![heatmap.as_str(), sizes.as_str()],
        }
    }

    pub fn decoder_name(&self) -> &'static str {
        match self {
            OutputSpec::Detections { .. } => "detections",
            OutputSpec::Centernet { .. } => "centernet",
            OutputSpec::Yolov5 { .. } => "yolov5",
            OutputSpec::Yolov8 { .. } => "yolov8",
        }
    }
}

fn default_threshold() -> f32 {
    0.3
}

/// Class names and score thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassSpec {
    /// A text file (relative to the manifest), one class name per line,
    /// line 1 = class 0.
    #[serde(default)]
    pub file: Option<String>,
    /// Or the names inline.
    #[serde(default)]
    pub names: Vec<String>,
    /// Default score threshold for every class.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// Per-class thresholds by name.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f32>,
}

fn default_iou() -> f32 {
    0.5
}
fn default_max_total() -> usize {
    300
}
fn yes() -> bool {
    true
}

/// Non-maximum suppression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmsSpec {
    /// Boxes overlapping more than this (IoU) are merged into the best.
    #[serde(default = "default_iou")]
    pub iou: f32,
    /// Suppress only within a class (true) or across classes.
    #[serde(default = "yes")]
    pub class_aware: bool,
    /// At most this many detections per frame.
    #[serde(default = "default_max_total")]
    pub max_detections: usize,
}

impl Default for NmsSpec {
    fn default() -> Self {
        Self {
            iou: default_iou(),
            class_aware: true,
            max_detections: default_max_total(),
        }
    }
}

/// Which classes feed which event rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventClasses {
    /// Counted as people for gathering rules. Absent: the class named
    /// `person` if the model has one, else none (a hazard-only model).
    #[serde(default)]
    pub people: Option<Vec<String>>,
    /// Classes that trigger intrusion rules by default (a zone's rule can
    /// name its own).
    #[serde(default)]
    pub intruders: Vec<String>,
    /// Hazard classes (fire, smoke…): each feeds the hazard rule.
    #[serde(default)]
    pub hazards: Vec<String>,
    /// Alert category per hazard class (`fire`, `smoke`, `flood`, … as in
    /// the wire contract). By default `fire`/`flame` → fire, `smoke` →
    /// smoke, anything else → other_hazard.
    #[serde(default)]
    pub hazard_categories: BTreeMap<String, String>,
}

fn default_overlap() -> f32 {
    0.2
}

/// SAHI-style tiling: the frame is cut into `rows × cols` overlapping
/// slices, each run through the model at full input resolution, and the
/// detections merged (with the full-frame pass if `include_full`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TilingSpec {
    pub rows: u32,
    pub cols: u32,
    /// Overlap between neighbouring slices, fraction of a slice (0..0.5).
    #[serde(default = "default_overlap")]
    pub overlap: f32,
    #[serde(default = "yes")]
    pub include_full: bool,
}

/// Numeric precision of a model's graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Float weights and activations (no quantization operators).
    Fp32,
    /// 8-bit integer quantized.
    Int8,
}

/// How a quantized graph expresses its quantization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantScheme {
    /// Float operators between `QuantizeLinear`/`DequantizeLinear` pairs
    /// (onnxruntime's `QuantFormat.QDQ`).
    Qdq,
    /// Quantized operators (`QLinearConv`, `ConvInteger`, …).
    Qoperator,
}

/// The `[quantization]` table: what the graph's precision is, checked
/// against the graph's operators when the model is loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizationSpec {
    pub precision: Precision,
    #[serde(default)]
    pub scheme: Option<QuantScheme>,
    /// How the quantization was calibrated (for people; not checked).
    #[serde(default)]
    pub calibration: Option<String>,
}

impl QuantizationSpec {
    /// The precision a manifest declares: fp32 without the table.
    pub fn precision_of(q: Option<&QuantizationSpec>) -> Precision {
        q.map_or(Precision::Fp32, |q| q.precision)
    }
}

/// A model manifest as written in TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub name: String,
    /// ONNX file, relative to the manifest.
    pub model: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub description: String,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub classes: ClassSpec,
    #[serde(default)]
    pub nms: NmsSpec,
    #[serde(default)]
    pub events: EventClasses,
    #[serde(default)]
    pub tiling: Option<TilingSpec>,
    #[serde(default)]
    pub quantization: Option<QuantizationSpec>,
}

/// A loaded, validated manifest with its class table resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The manifest file (for error messages).
    pub path: PathBuf,
    /// The ONNX file.
    pub model_path: PathBuf,
    pub file: ManifestFile,
    /// Class names, index = class id.
    pub class_names: Vec<String>,
    /// Score threshold per class id.
    pub thresholds: Vec<f32>,
    /// Class ids counted as people.
    pub people: Vec<usize>,
    pub intruders: Vec<usize>,
    /// Hazard class ids with their alert category.
    pub hazards: Vec<(usize, Category)>,
}

impl Manifest {
    /// Read, parse and validate a manifest file (and its class file).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| InferenceError::Manifest {
            path: path.to_path_buf(),
            reason: format!("cannot read: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, |name| {
            let p = base.join(name);
            std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        })
    }

    /// Parse and validate manifest text. `path` is used to resolve the
    /// model file and in messages; `read_class_file` reads a class file
    /// named in `classes.file` (no I/O happens here otherwise).
    pub fn parse(
        text: &str,
        path: &Path,
        read_class_file: impl FnOnce(&str) -> std::result::Result<String, String>,
    ) -> Result<Self> {
        let file: ManifestFile = toml::from_str(text).map_err(|e| InferenceError::Manifest {
            path: path.to_path_buf(),
            reason: e.to_string().trim().to_string(),
        })?;
        let field = |field: &str, reason: String| InferenceError::ManifestField {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason,
        };

        if file.name.trim().is_empty() {
            return Err(field("name", "must not be empty".into()));
        }
        if file.model.trim().is_empty() {
            return Err(field("model", "must name the ONNX file".into()));
        }
        if let Some(s) = &file.sha256 {
            if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(field("sha256", format!("{s:?} is not 64 hex digits")));
            }
        }

        // Input.
        let inp = &file.input;
        if inp.name.is_empty() {
            return Err(field("input.name", "must not be empty".into()));
        }
        if inp.shape.len() != 4 {
            return Err(field(
                "input.shape",
                format!("must have 4 dimensions (batch, …), got {:?}", inp.shape),
            ));
        }
        if inp.shape[0] != 1 {
            return Err(field(
                "input.shape",
                format!("batch must be 1, got {}", inp.shape[0]),
            ));
        }
        let channels = match inp.layout {
            Layout::Nhwc => inp.shape[3],
            Layout::Nchw => inp.shape[1],
        };
        if channels != 3 {
            return Err(field(
                "input.shape",
                format!(
                    "{:?} has {channels} channels for layout {:?}; 3 expected",
                    inp.shape, inp.layout
                ),
            ));
        }
        let (w, h) = inp.size();
        if !(8..=8192).contains(&w) || !(8..=8192).contains(&h) {
            return Err(field(
                "input.shape",
                format!("input size {w}x{h} is outside 8..8192"),
            ));
        }
        if !inp.scale.is_finite() || inp.scale == 0.0 {
            return Err(field("input.scale", format!("{} is not usable", inp.scale)));
        }
        if inp.std.iter().any(|s| !s.is_finite() || *s == 0.0)
            || inp.mean.iter().any(|m| !m.is_finite())
        {
            return Err(field(
                "input.std",
                "mean must be finite and std finite and non-zero".into(),
            ));
        }

        // Output.
        for n in file.output.output_names() {
            if n.is_empty() {
                return Err(field("output", "output names must not be empty".into()));
            }
        }
        if let OutputSpec::Centernet {
            stride,
            max_detections,
            ..
        } = &file.output
        {
            if *stride == 0 || *stride > 256 {
                return Err(field(
                    "output.stride",
                    format!("{stride} is not a plausible stride"),
                ));
            }
            if *max_detections == 0 || *max_detections > 10_000 {
                return Err(field(
                    "output.max_detections",
                    format!("{max_detections} is outside 1..10000"),
                ));
            }
        }

        // Classes.
        let class_names: Vec<String> = match (&file.classes.file, file.classes.names.is_empty()) {
            (Some(_), false) => {
                return Err(field(
                    "classes",
                    "give either `file` or `names`, not both".into(),
                ))
            }
            (None, true) => return Err(field("classes", "needs `file` or `names`".into())),
            (None, false) => file.classes.names.clone(),
            (Some(f), true) => read_class_file(f)
                .map_err(|e| field("classes.file", e))?
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect(),
        };
        if class_names.is_empty() {
            return Err(field("classes", "lists no class names".into()));
        }
        if class_names.len() > 100_000 {
            return Err(field("classes", "lists more than 100000 classes".into()));
        }
        for (i, n) in class_names.iter().enumerate() {
            if class_names[..i].contains(n) {
                return Err(field("classes", format!("class {n:?} is listed twice")));
            }
        }
        let class_id = |what: &str, name: &str| -> Result<usize> {
            class_names
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| field(what, format!("{name:?} is not one of the model's classes")))
        };
        let t_ok = |t: f32| t.is_finite() && t > 0.0 && t <= 1.0;
        if !t_ok(file.classes.threshold) {
            return Err(field(
                "classes.threshold",
                format!("{} is not in (0, 1]", file.classes.threshold),
            ));
        }
        let mut thresholds = vec![file.classes.threshold; class_names.len()];
        for (name, t) in &file.classes.thresholds {
            let id = class_id("classes.thresholds", name)?;
            if !t_ok(*t) {
                return Err(field(
                    &format!("classes.thresholds.{name}"),
                    format!("{t} is not in (0, 1]"),
                ));
            }
            thresholds[id] = *t;
        }

        // Event classes.
        let ids = |what: &str, names: &[String]| -> Result<Vec<usize>> {
            names.iter().map(|n| class_id(what, n)).collect()
        };
        let people = match &file.events.people {
            Some(names) => ids("events.people", names)?,
            None => class_names
                .iter()
                .position(|n| n == "person")
                .into_iter()
                .collect(),
        };
        let intruders = ids("events.intruders", &file.events.intruders)?;
        let mut hazards = Vec::new();
        for n in &file.events.hazards {
            let id = class_id("events.hazards", n)?;
            let cat = match file.events.hazard_categories.get(n) {
                Some(c) => Category::parse(c).ok_or_else(|| {
                    field(
                        &format!("events.hazard_categories.{n}"),
                        format!("{c:?} is not an alert category"),
                    )
                })?,
                None => default_hazard_category(n),
            };
            hazards.push((id, cat));
        }
        for n in file.events.hazard_categories.keys() {
            if !file.events.hazards.contains(n) {
                return Err(field(
                    "events.hazard_categories",
                    format!("{n:?} is not listed in events.hazards"),
                ));
            }
        }

        if !(file.nms.iou > 0.0 && file.nms.iou <= 1.0) {
            return Err(field(
                "nms.iou",
                format!("{} is not in (0, 1]", file.nms.iou),
            ));
        }
        if file.nms.max_detections == 0 {
            return Err(field("nms.max_detections", "must be at least 1".into()));
        }
        if let Some(t) = &file.tiling {
            if t.rows == 0 || t.cols == 0 || t.rows > 8 || t.cols > 8 {
                return Err(field(
                    "tiling",
                    format!("{}x{} slices: rows and cols must be 1..8", t.rows, t.cols),
                ));
            }
            if !(0.0..0.5).contains(&t.overlap) {
                return Err(field(
                    "tiling.overlap",
                    format!("{} is not in [0, 0.5)", t.overlap),
                ));
            }
        }

        if let Some(q) = &file.quantization {
            if q.precision == Precision::Fp32 && q.scheme.is_some() {
                return Err(field(
                    "quantization.scheme",
                    "a scheme is only for a quantized precision (precision = \"int8\")".into(),
                ));
            }
        }

        let base = path.parent().unwrap_or(Path::new("."));
        Ok(Manifest {
            path: path.to_path_buf(),
            model_path: base.join(&file.model),
            file,
            class_names,
            thresholds,
            people,
            intruders,
            hazards,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    pub fn class_name(&self, id: usize) -> &str {
        self.class_names.get(id).map(|s| s.as_str()).unwrap_or("?")
    }

    pub fn class_id(&self, name: &str) -> Option<usize> {
        self.class_names.iter().position(|c| c == name)
    }

    /// The lowest threshold of any class: decoders drop anything below.
    pub fn min_threshold(&self) -> f32 {
        self.thresholds.iter().copied().fold(1.0, f32::min)
    }

    /// The alert category of a hazard class, if it is one.
    pub fn hazard_category(&self, class_id: usize) -> Option<Category> {
        self.hazards
            .iter()
            .find(|(id, _)| *id == class_id)
            .map(|(_, c)| *c)
    }
}

/// `fire`/`flame` → Fire, `smoke` → Smoke, else OtherHazard.
pub fn default_hazard_category(class: &str) -> Category {
    let c = class.to_ascii_lowercase();
    if let Some(cat) = Category::parse(&c) {
        return cat;
    }
    if c.contains("fire") || c.contains("flame") {
        Category::Fire
    } else if c.contains("smoke") {
        Category::Smoke
    } else {
        Category::OtherHazard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "m"
model = "m.onnx"
[input]
name = "images"
shape = [1, 3, 64, 96]
layout = "nchw"
color = "rgb"
resize = "letterbox"
scale = 0.0039215686
[output]
decoder = "yolov8"
name = "output0"
[classes]
names = ["smoke", "fire", "person"]
threshold = 0.4
thresholds = { fire = 0.3 }
[events]
hazards = ["smoke", "fire"]
"#;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(
            text,
            Path::new("/models/m.toml"),
            |_| Err("no files".into()),
        )
    }

    #[test]
    fn people_default_to_the_person_class_when_there_is_one() {
        // A hazard-only model (the first one anyone drops in): no people.
        let m = parse(&GOOD.replace(
            "names = [\"smoke\", \"fire\", \"person\"]",
            "names = [\"smoke\", \"fire\"]",
        ))
        .unwrap();
        assert!(m.people.is_empty());
        assert_eq!(m.hazards.len(), 2);
        // Named people must exist.
        let err = parse(
            &GOOD
                .replace(
                    "names = [\"smoke\", \"fire\", \"person\"]",
                    "names = [\"smoke\", \"fire\"]",
                )
                .replace("[events]", "[events]\npeople = [\"person\"]"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("events.people"), "{err}");
    }

    #[test]
    fn a_good_manifest_resolves_classes_thresholds_and_hazards() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.model_path, Path::new("/models/m.onnx"));
        assert_eq!(m.file.input.size(), (96, 64));
        assert_eq!(m.thresholds, vec![0.4, 0.3, 0.4]);
        assert_eq!(m.people, vec![2]);
        assert_eq!(m.hazards, vec![(0, Category::Smoke), (1, Category::Fire)]);
        assert_eq!(m.hazard_category(1), Some(Category::Fire));
        assert_eq!(m.hazard_category(2), None);
        assert!((m.min_threshold() - 0.3).abs() < 1e-6);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (GOOD.replace("[1, 3, 64, 96]", "[1, 64, 96]"), "input.shape"),
            (
                GOOD.replace("[1, 3, 64, 96]", "[2, 3, 64, 96]"),
                "batch must be 1",
            ),
            (GOOD.replace("[1, 3, 64, 96]", "[1, 64, 96, 3]"), "channels"),
            (
                GOOD.replace("fire = 0.3", "flame = 0.3"),
                "classes.thresholds",
            ),
            (
                GOOD.replace("fire = 0.3", "fire = 1.5"),
                "classes.thresholds.fire",
            ),
            (
                GOOD.replace("hazards = [\"smoke\", \"fire\"]", "hazards = [\"lava\"]"),
                "events.hazards",
            ),
            (
                GOOD.replace("decoder = \"yolov8\"", "decoder = \"yolov99\""),
                "yolov99",
            ),
            (GOOD.replace("layout = \"nchw\"", "layout = \"chw\""), "chw"),
            (
                GOOD.replace("names = [\"smoke\", \"fire\", \"person\"]", "names = []"),
                "classes",
            ),
            (GOOD.replace("\"person\"]", "\"fire\"]"), "listed twice"),
            (format!("{GOOD}\nbogus = 1\n"), "bogus"),
            (
                GOOD.replace("model = \"m.onnx\"", "model = \"m.onnx\"\nsha256 = \"xyz\""),
                "sha256",
            ),
            (
                format!("{GOOD}\n[quantization]\nprecision = \"int4\"\n"),
                "int4",
            ),
            (
                format!("{GOOD}\n[quantization]\nprecision = \"fp32\"\nscheme = \"qdq\"\n"),
                "quantization.scheme",
            ),
            (
                format!("{GOOD}\n[quantization]\nprecision = \"int8\"\nbits = 8\n"),
                "bits",
            ),
        ];
        for (text, needle) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "expected {needle:?} in: {e}");
            assert!(e.contains("/models/m.toml"), "no path in: {e}");
        }
    }

    #[test]
    fn the_quantization_table_is_optional() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.file.quantization, None);
        assert_eq!(QuantizationSpec::precision_of(None), Precision::Fp32);
        let text = format!(
            "{GOOD}\n[quantization]\nprecision = \"int8\"\nscheme = \"qdq\"\ncalibration = \"minmax\"\n"
        );
        let q = parse(&text).unwrap().file.quantization.unwrap();
        assert_eq!(q.precision, Precision::Int8);
        assert_eq!(q.scheme, Some(QuantScheme::Qdq));
        assert_eq!(q.calibration.as_deref(), Some("minmax"));
    }

    #[test]
    fn class_file_is_read_through_the_callback() {
        let text = GOOD.replace(
            "names = [\"smoke\", \"fire\", \"person\"]",
            "file = \"labels.txt\"",
        );
        let m = Manifest::parse(&text, Path::new("m.toml"), |f| {
            assert_eq!(f, "labels.txt");
            Ok("smoke\nfire\n\nperson\n".into())
        })
        .unwrap();
        assert_eq!(m.class_names, ["smoke", "fire", "person"]);
        let e = Manifest::parse(&text, Path::new("m.toml"), |_| {
            Err("cannot read labels.txt: gone".into())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("classes.file") && e.contains("gone"), "{e}");
    }

    #[test]
    fn hazard_categories_default_by_name_and_can_be_overridden() {
        assert_eq!(default_hazard_category("fire"), Category::Fire);
        assert_eq!(default_hazard_category("Flame"), Category::Fire);
        assert_eq!(default_hazard_category("smoke"), Category::Smoke);
        assert_eq!(default_hazard_category("flood"), Category::Flood);
        assert_eq!(default_hazard_category("oil_spill"), Category::OtherHazard);
        let text = GOOD.replace(
            "hazards = [\"smoke\", \"fire\"]",
            "hazards = [\"smoke\", \"fire\"]\nhazard_categories = { smoke = \"other_hazard\" }",
        );
        assert_eq!(parse(&text).unwrap().hazards[0], (0, Category::OtherHazard));
        let text = GOOD.replace(
            "hazards = [\"smoke\", \"fire\"]",
            "hazards = [\"smoke\", \"fire\"]\nhazard_categories = { smoke = \"volcano\" }",
        );
        assert!(parse(&text).unwrap_err().to_string().contains("volcano"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// Damaged manifests (bytes flipped, cut short, junk inserted) are
        /// errors or valid manifests, never panics.
        #[test]
        fn damaged_manifests_never_panic(
            cut in 0usize..GOOD.len(),
            flips in proptest::collection::vec((0usize..GOOD.len(), proptest::prelude::any::<u8>()), 0..8),
            junk in "[ -~]{0,20}",
            at in 0usize..GOOD.len(),
        ) {
            let mut b = GOOD.as_bytes().to_vec();
            for (i, v) in flips {
                b[i] = v;
            }
            b.truncate(cut.max(at));
            let mut text = String::from_utf8_lossy(&b).into_owned();
            let at = (0..=at.min(text.len())).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            text.insert_str(at, &junk);
            let _ = parse(&text);
        }
    }

    #[test]
    fn the_shipped_manifests_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let m = Manifest::load(dir.join("centernet_mnv3_coco80.toml")).unwrap();
        assert_eq!(m.num_classes(), 80);
        assert_eq!(m.class_name(0), "person");
        assert!(m.model_path.exists());
        for (name, precision) in [
            ("centernet_mnv3_coco80_heads.toml", Precision::Fp32),
            ("centernet_mnv3_coco80_heads_int8.toml", Precision::Int8),
        ] {
            let h = Manifest::load(dir.join(name)).unwrap();
            assert_eq!(h.class_names, m.class_names, "{name}");
            assert_eq!(h.thresholds, m.thresholds, "{name}");
            assert_eq!(h.file.output, m.file.output, "{name}");
            assert_eq!(h.file.input, m.file.input, "{name}");
            assert_eq!(
                QuantizationSpec::precision_of(h.file.quantization.as_ref()),
                precision,
                "{name}"
            );
            assert!(h.model_path.exists(), "{name}");
        }
    }
}
