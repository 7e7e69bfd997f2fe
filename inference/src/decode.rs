//! Output decoders (CenterNet heads, decoded `[1,N,6]`, YOLOv5 `[1,N,5+C]`,
//! YOLOv8/11 `[1,4+C,N]`) and class-aware non-maximum suppression.
//!
//! Pure functions over `f32` slices and shapes: no model, no image.
//! Boxes come out in model-input pixels; [`crate::preprocess::Letterbox`]
//! maps them back to the frame.

use serde::{Deserialize, Serialize};

use crate::error::{InferenceError, Result};
use crate::manifest::{Manifest, OutputSpec};

/// An axis-aligned box, pixels, `x1 < x2`, `y1 < y2`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BBox {
    pub fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self { x1, y1, x2, y2 }
    }

    pub fn from_cxcywh(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
    }

    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    pub fn center(&self) -> (f32, f32) {
        ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)
    }

    /// Bottom centre: where a standing person touches the ground.
    pub fn foot(&self) -> (f32, f32) {
        ((self.x1 + self.x2) / 2.0, self.y2)
    }

    pub fn intersection(&self, o: &BBox) -> f32 {
        let w = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let h = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        w * h
    }

    pub fn iou(&self, o: &BBox) -> f32 {
        let i = self.intersection(o);
        let u = self.area() + o.area() - i;
        if u <= 0.0 {
            0.0
        } else {
            i / u
        }
    }

    /// Intersection over the smaller box's area.
    pub fn ios(&self, o: &BBox) -> f32 {
        let m = self.area().min(o.area());
        if m <= 0.0 {
            0.0
        } else {
            self.intersection(o) / m
        }
    }

    pub fn clamp(&self, w: f32, h: f32) -> BBox {
        BBox::new(
            self.x1.clamp(0.0, w),
            self.y1.clamp(0.0, h),
            self.x2.clamp(0.0, w),
            self.y2.clamp(0.0, h),
        )
    }

    pub fn is_finite(&self) -> bool {
        self.x1.is_finite() && self.y1.is_finite() && self.x2.is_finite() && self.y2.is_finite()
    }
}

/// One detection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub bbox: BBox,
    pub score: f32,
    pub class_id: usize,
}

/// A model output as a flat row-major slice with its shape.
#[derive(Debug, Clone, Copy)]
pub struct OutputView<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

impl OutputView<'_> {
    fn err(&self, reason: impl Into<String>) -> InferenceError {
        InferenceError::Decode {
            output: self.name.to_string(),
            reason: reason.into(),
        }
    }
}

/// Check that an output shape suits a decoder; used both at load time
/// (against the model's declared shapes) and on every run. Returns a
/// reason when it does not.
pub fn check_output_shapes(
    spec: &OutputSpec,
    shapes: &[Vec<usize>],
    num_classes: usize,
) -> std::result::Result<(), String> {
    let c = num_classes;
    let s = |i: usize| &shapes[i];
    match spec {
        OutputSpec::Detections { name, .. } => {
            let sh = s(0);
            if sh.len() != 3 || sh[0] != 1 || sh[2] < 6 {
                return Err(format!(
                    "output `{name}` has shape {sh:?}; the detections decoder needs [1, N, 6] (x1, y1, x2, y2, score, class)"
                ));
            }
        }
        OutputSpec::Yolov5 { name, .. } => {
            let sh = s(0);
            if sh.len() != 3 || sh[0] != 1 || sh[2] != 5 + c {
                return Err(format!(
                    "output `{name}` has shape {sh:?}; the yolov5 decoder needs [1, N, 5 + {c} classes] = [1, N, {}]{}",
                    5 + c,
                    implied_classes(sh, 5, 2)
                ));
            }
        }
        OutputSpec::Yolov8 {
            name, transposed, ..
        } => {
            let sh = s(0);
            let (axis, want) = if *transposed {
                (2, format!("[1, N, {}]", 4 + c))
            } else {
                (1, format!("[1, {}, N]", 4 + c))
            };
            if sh.len() != 3 || sh[0] != 1 || sh[axis] != 4 + c {
                return Err(format!(
                    "output `{name}` has shape {sh:?}; the yolov8 decoder needs {want} (4 box values + {c} classes){}",
                    implied_classes(sh, 4, axis)
                ));
            }
        }
        OutputSpec::Centernet { heatmap, sizes, .. } => {
            let (h, wh) = (s(0), s(1));
            if h.len() != 4 || h[0] != 1 || h[3] != c {
                return Err(format!(
                    "heat-map `{heatmap}` has shape {h:?}; the centernet decoder needs [1, H, W, {c} classes]"
                ));
            }
            if wh.len() != 4 || wh[..3] != h[..3] || wh[3] != 4 {
                return Err(format!(
                    "box sizes `{sizes}` have shape {wh:?}; the centernet decoder needs [1, {}, {}, 4]",
                    h[1], h[2]
                ));
            }
        }
    }
    Ok(())
}

fn implied_classes(sh: &[usize], extra: usize, axis: usize) -> String {
    match sh.get(axis) {
        Some(&n) if n > extra => format!(" — it looks like a model with {} classes", n - extra),
        _ => String::new(),
    }
}

/// Decode raw model outputs into detections in model-input pixels, above
/// the per-class thresholds — or above `floor` when that is lower (low-score
/// detections for the tracker's second pass). No NMS yet (see [`nms`]).
pub fn decode(
    manifest: &Manifest,
    outputs: &[OutputView<'_>],
    floor: Option<f32>,
) -> Result<Vec<Detection>> {
    let shapes: Vec<Vec<usize>> = outputs.iter().map(|o| o.shape.to_vec()).collect();
    check_output_shapes(&manifest.file.output, &shapes, manifest.num_classes())
        .map_err(|r| outputs[0].err(r))?;
    for o in outputs {
        let n: usize = o.shape.iter().product();
        if o.data.len() != n {
            return Err(o.err(format!("{} values for shape {:?}", o.data.len(), o.shape)));
        }
    }
    let thr: Vec<f32> = manifest
        .thresholds
        .iter()
        .map(|t| floor.map_or(*t, |f| t.min(f)))
        .collect();
    let thr = &thr;
    let (in_w, in_h) = manifest.file.input.size();
    let (in_w, in_h) = (in_w as f32, in_h as f32);
    let min_thr = thr.iter().copied().fold(1.0, f32::min);
    let mut dets = Vec::new();
    match &manifest.file.output {
        OutputSpec::Detections { normalized, .. } => {
            let o = &outputs[0];
            let (n, stride) = (o.shape[1], o.shape[2]);
            for i in 0..n {
                let r = &o.data[i * stride..(i + 1) * stride];
                let score = r[4];
                if score.is_nan() || score < min_thr {
                    continue;
                }
                let cls = r[5];
                if !(cls >= 0.0 && (cls.round() as usize) < thr.len()) {
                    return Err(o.err(format!("row {i} has class {cls}, outside 0..{}", thr.len())));
                }
                let cls = cls.round() as usize;
                if score < thr[cls] {
                    continue;
                }
                let mut b = BBox::new(r[0], r[1], r[2], r[3]);
                if *normalized {
                    b = BBox::new(b.x1 * in_w, b.y1 * in_h, b.x2 * in_w, b.y2 * in_h);
                }
                push_valid(&mut dets, b, score, cls);
            }
        }
        OutputSpec::Centernet {
            stride,
            max_detections,
            ..
        } => {
            let (hm, wh) = (&outputs[0], &outputs[1]);
            let (h, w, c) = (hm.shape[1], hm.shape[2], hm.shape[3]);
            let data = hm.data;
            let at = |y: usize, x: usize, k: usize| data[(y * w + x) * c + k];
            let mut peaks: Vec<(f32, usize)> = Vec::new();
            for (idx, &v) in data.iter().enumerate() {
                if v.is_nan() || v < min_thr {
                    continue;
                }
                let k = idx % c;
                if v < thr[k] {
                    continue;
                }
                let x = (idx / c) % w;
                let y = idx / c / w;
                // 3x3 local maximum in the same class plane (ties are
                // peaks, as MaxPool + Equal in the reference graph).
                let mut is_peak = true;
                'n: for yy in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                    for xx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                        if at(yy, xx, k) > v {
                            is_peak = false;
                            break 'n;
                        }
                    }
                }
                if is_peak {
                    peaks.push((v, idx));
                }
            }
            // Highest first; equal scores by index, as TopK does.
            peaks.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            peaks.truncate(*max_detections);
            let s = *stride as f32;
            for (score, idx) in peaks {
                let k = idx % c;
                let cell = idx / c;
                let (x, y) = ((cell % w) as f32 * s, (cell / w) as f32 * s);
                let sides = &wh.data[cell * 4..cell * 4 + 4];
                let b = BBox::new(x - sides[0], y - sides[1], x + sides[2], y + sides[3]);
                push_valid(&mut dets, b, score, k);
            }
        }
        OutputSpec::Yolov5 { normalized, .. } => {
            let o = &outputs[0];
            let (n, stride) = (o.shape[1], o.shape[2]);
            for i in 0..n {
                let r = &o.data[i * stride..(i + 1) * stride];
                let obj = r[4];
                if obj.is_nan() || obj < min_thr {
                    continue;
                }
                let (k, cls_score) = argmax(&r[5..]);
                let score = obj * cls_score;
                if score.is_nan() || score < thr[k] {
                    continue;
                }
                let mut b = BBox::from_cxcywh(r[0], r[1], r[2], r[3]);
                if *normalized {
                    b = BBox::new(b.x1 * in_w, b.y1 * in_h, b.x2 * in_w, b.y2 * in_h);
                }
                push_valid(&mut dets, b, score, k);
            }
        }
        OutputSpec::Yolov8 {
            transposed,
            normalized,
            ..
        } => {
            let o = &outputs[0];
            let c = manifest.num_classes();
            let (n, get): (usize, Box<dyn Fn(usize, usize) -> f32>) = if *transposed {
                let n = o.shape[1];
                (n, Box::new(move |j, f| o.data[j * (4 + c) + f]))
            } else {
                let n = o.shape[2];
                (n, Box::new(move |j, f| o.data[f * n + j]))
            };
            for j in 0..n {
                let mut best = (0usize, f32::MIN);
                for k in 0..c {
                    let v = get(j, 4 + k);
                    if v > best.1 {
                        best = (k, v);
                    }
                }
                let (k, score) = best;
                if score.is_nan() || score < thr[k] {
                    continue;
                }
                let mut b = BBox::from_cxcywh(get(j, 0), get(j, 1), get(j, 2), get(j, 3));
                if *normalized {
                    b = BBox::new(b.x1 * in_w, b.y1 * in_h, b.x2 * in_w, b.y2 * in_h);
                }
                push_valid(&mut dets, b, score, k);
            }
        }
    }
    Ok(dets)
}

fn argmax(v: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::MIN);
    for (i, &x) in v.iter().enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best
}

fn push_valid(dets: &mut Vec<Detection>, bbox: BBox, score: f32, class_id: usize) {
    if bbox.is_finite() && score.is_finite() && bbox.x2 > bbox.x1 && bbox.y2 > bbox.y1 {
        dets.push(Detection {
            bbox,
            score,
            class_id,
        });
    }
}

/// Greedy non-maximum suppression: keep the best box, drop those that
/// overlap it by more than `iou` (within its class when `class_aware`),
/// repeat; at most `max` boxes, best first.
pub fn nms(mut dets: Vec<Detection>, iou: f32, class_aware: bool, max: usize) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Detection> = Vec::with_capacity(dets.len().min(max));
    for d in dets {
        if keep.len() >= max {
            break;
        }
        let suppressed = keep
            .iter()
            .any(|k| (!class_aware || k.class_id == d.class_id) && k.bbox.iou(&d.bbox) > iou);
        if !suppressed {
            keep.push(d);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest(output: &str, classes: &str) -> Manifest {
        let text = format!(
            r#"
name = "t"
model = "t.onnx"
[input]
name = "x"
shape = [1, 3, 64, 128]
layout = "nchw"
color = "rgb"
resize = "stretch"
[output]
{output}
[classes]
names = [{classes}]
threshold = 0.5
[events]
people = []
"#
        );
        Manifest::parse(&text, Path::new("t.toml"), |_| Err("none".into())).unwrap()
    }

    #[test]
    fn iou_and_friends() {
        let a = BBox::new(0.0, 0.0, 10.0, 10.0);
        let b = BBox::new(5.0, 0.0, 15.0, 10.0);
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&BBox::new(20.0, 20.0, 30.0, 30.0)), 0.0);
        let inner = BBox::new(2.0, 2.0, 4.0, 4.0);
        assert!((a.ios(&inner) - 1.0).abs() < 1e-6);
        assert_eq!(a.foot(), (5.0, 10.0));
    }

    #[test]
    fn nms_is_class_aware_and_capped() {
        let d = |x: f32, s: f32, c: usize| Detection {
            bbox: BBox::new(x, 0.0, x + 10.0, 10.0),
            score: s,
            class_id: c,
        };
        let dets = vec![
            d(0.0, 0.9, 0),
            d(1.0, 0.8, 0),
            d(1.0, 0.85, 1),
            d(50.0, 0.7, 0),
        ];
        let kept = nms(dets.clone(), 0.5, true, 10);
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[0].score, 0.9);
        assert!(kept.iter().any(|k| k.class_id == 1));
        let kept = nms(dets.clone(), 0.5, false, 10);
        assert_eq!(kept.len(), 2);
        let kept = nms(dets, 0.5, true, 1);
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn yolov5_rows_multiply_objectness_by_class_score() {
        let m = manifest("decoder = \"yolov5\"\nname = \"out\"", "\"a\", \"b\"");
        #[rustfmt::skip]
        let data = [
            // cx, cy, w, h, obj, a, b
            10.0, 20.0, 4.0, 6.0, 0.9, 0.1, 0.8,   // b, 0.72
            30.0, 30.0, 4.0, 4.0, 0.9, 0.5, 0.1,   // a, 0.45 < 0.5: dropped
            50.0, 40.0, 8.0, 8.0, 0.3, 0.9, 0.9,   // obj too low
        ];
        let dets = decode(
            &m,
            &[OutputView {
                name: "out",
                shape: &[1, 3, 7],
                data: &data,
            }],
            None,
        )
        .unwrap();
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].class_id, 1);
        assert!((dets[0].score - 0.72).abs() < 1e-6);
        assert_eq!(dets[0].bbox, BBox::new(8.0, 17.0, 12.0, 23.0));
    }

    #[test]
    fn yolov8_columns_and_transposed_rows() {
        let m = manifest(
            "decoder = \"yolov8\"\nname = \"out\"",
            "\"a\", \"b\", \"c\"",
        );
        // [1, 4+3, 2]: two candidates as columns.
        #[rustfmt::skip]
        let data = [
            10.0, 100.0,  // cx
            20.0, 50.0,   // cy
            4.0, 10.0,    // w
            6.0, 10.0,    // h
            0.1, 0.2,     // a
            0.2, 0.95,    // b
            0.7, 0.1,     // c
        ];
        let dets = decode(
            &m,
            &[OutputView {
                name: "out",
                shape: &[1, 7, 2],
                data: &data,
            }],
            None,
        )
        .unwrap();
        assert_eq!(dets.len(), 2);
        assert_eq!((dets[0].class_id, dets[0].score), (2, 0.7));
        assert_eq!((dets[1].class_id, dets[1].score), (1, 0.95));
        assert_eq!(dets[1].bbox, BBox::new(95.0, 45.0, 105.0, 55.0));

        let mt = manifest(
            "decoder = \"yolov8\"\nname = \"out\"\ntransposed = true\nnormalized = true",
            "\"a\", \"b\", \"c\"",
        );
        let rows = [0.5, 0.5, 0.25, 0.5, 0.0, 0.9, 0.0];
        let dets = decode(
            &mt,
            &[OutputView {
                name: "out",
                shape: &[1, 1, 7],
                data: &rows,
            }],
            None,
        )
        .unwrap();
        // Input is 128 wide, 64 high.
        assert_eq!(dets[0].bbox, BBox::new(48.0, 16.0, 80.0, 48.0));
    }

    #[test]
    fn wrong_shapes_say_what_was_expected() {
        let m = manifest(
            "decoder = \"yolov8\"\nname = \"out\"",
            "\"a\", \"b\", \"c\"",
        );
        let data = vec![0.0; 6 * 10];
        let e = decode(
            &m,
            &[OutputView {
                name: "out",
                shape: &[1, 6, 10],
                data: &data,
            }],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("[1, 7, N]") && e.contains("2 classes") && e.contains("`out`"),
            "{e}"
        );
        let m = manifest("decoder = \"yolov5\"\nname = \"out\"", "\"a\"");
        let e = decode(
            &m,
            &[OutputView {
                name: "out",
                shape: &[1, 10, 7],
                data: &vec![0.0; 70],
            }],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("2 classes"), "{e}");
        // Data length that does not match the shape.
        let m = manifest("decoder = \"detections\"\nname = \"out\"", "\"a\"");
        let e = decode(
            &m,
            &[OutputView {
                name: "out",
                shape: &[1, 2, 6],
                data: &[0.0; 5],
            }],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("5 values"), "{e}");
    }

    #[test]
    fn centernet_takes_3x3_peaks_and_decodes_sides() {
        let m = manifest(
            "decoder = \"centernet\"\nheatmap = \"hm\"\nsizes = \"wh\"\nstride = 4\nmax_detections = 2",
            "\"a\", \"b\"",
        );
        let (h, w, c) = (4, 5, 2);
        let mut hm = vec![0.0f32; h * w * c];
        let mut wh = vec![0.0f32; h * w * 4];
        let set =
            |hm: &mut Vec<f32>, y: usize, x: usize, k: usize, v: f32| hm[(y * w + x) * c + k] = v;
        set(&mut hm, 1, 1, 0, 0.9); // peak
        set(&mut hm, 1, 2, 0, 0.8); // neighbour of a higher one: not a peak
        set(&mut hm, 3, 4, 0, 0.7); // peak at the corner
        set(&mut hm, 3, 4, 1, 0.6); // peak in the other class plane
        set(&mut hm, 0, 4, 1, 0.95); // peak, highest
        for (i, s) in [1.0, 2.0, 3.0, 4.0].iter().enumerate() {
            wh[(w + 1) * 4 + i] = *s;
            wh[4 * 4 + i] = 2.0;
        }
        let dets = decode(
            &m,
            &[
                OutputView {
                    name: "hm",
                    shape: &[1, h, w, c],
                    data: &hm,
                },
                OutputView {
                    name: "wh",
                    shape: &[1, h, w, 4],
                    data: &wh,
                },
            ],
            None,
        )
        .unwrap();
        // Top 2 of the 4 peaks: 0.95 (b at y 0, x 4) and 0.9 (a at 1,1).
        assert_eq!(dets.len(), 2, "{dets:?}");
        assert_eq!((dets[0].class_id, dets[0].score), (1, 0.95));
        assert_eq!(dets[0].bbox, BBox::new(16.0 - 2.0, -2.0, 18.0, 2.0));
        assert_eq!((dets[1].class_id, dets[1].score), (0, 0.9));
        assert_eq!(
            dets[1].bbox,
            BBox::new(4.0 - 1.0, 4.0 - 2.0, 4.0 + 3.0, 4.0 + 4.0)
        );
    }
}
