//! Frame → model input tensor: OpenCV resize (stretch or letterbox), then
//! one pass that reorders colour, scales, normalises and lays out (NHWC or
//! NCHW) through per-channel lookup tables.

use opencv::core::{Mat, MatTraitConst, Rect, Size, CV_8UC3};
use opencv::imgproc;
use opencv::prelude::*;

use crate::decode::BBox;
use crate::error::{InferenceError, Result};
use crate::manifest::{ColorOrder, InputSpec, Layout, ResizeMode};

/// How model-input pixels relate to source-image pixels:
/// `input = source × scale + pad`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub scale_x: f32,
    pub scale_y: f32,
    pub pad_x: f32,
    pub pad_y: f32,
    /// Offset of the source region in the frame (tiles), pixels.
    pub offset_x: f32,
    pub offset_y: f32,
}

impl Letterbox {
    /// A box in model-input pixels → frame pixels.
    pub fn to_frame(&self, b: &BBox) -> BBox {
        BBox::new(
            (b.x1 - self.pad_x) / self.scale_x + self.offset_x,
            (b.y1 - self.pad_y) / self.scale_y + self.offset_y,
            (b.x2 - self.pad_x) / self.scale_x + self.offset_x,
            (b.y2 - self.pad_y) / self.scale_y + self.offset_y,
        )
    }
}

/// Reusable pre-processing for one input spec.
pub struct Preprocessor {
    spec: InputSpec,
    /// `lut[c][v]`: value written for source channel value `v` in model
    /// channel `c` (colour order already applied).
    lut: [[f32; 256]; 3],
    resized: Mat,
}

impl Preprocessor {
    pub fn new(spec: &InputSpec) -> Self {
        let mut lut = [[0.0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 * spec.scale - spec.mean[c]) / spec.std[c];
            }
        }
        Self {
            spec: spec.clone(),
            lut,
            resized: Mat::default(),
        }
    }

    pub fn spec(&self) -> &InputSpec {
        &self.spec
    }

    /// Number of `f32` values of one input tensor.
    pub fn tensor_len(&self) -> usize {
        self.spec.shape.iter().product()
    }

    /// Pre-process `region` of a BGR image into `out` (length
    /// [`Preprocessor::tensor_len`]). `region` is the whole image or a tile.
    pub fn run(
        &mut self,
        image: &impl MatTraitConst,
        region: Rect,
        out: &mut [f32],
    ) -> Result<Letterbox> {
        let err = |e: opencv::Error| InferenceError::image("pre-processing", e);
        if image.typ() != CV_8UC3 {
            return Err(InferenceError::Image {
                what: "pre-processing",
                reason: format!("image type {} is not 8-bit BGR", image.typ()),
            });
        }
        if out.len() != self.tensor_len() {
            return Err(InferenceError::Image {
                what: "pre-processing",
                reason: format!(
                    "output buffer has {} values, {} needed",
                    out.len(),
                    self.tensor_len()
                ),
            });
        }
        let src = Mat::roi(image, region).map_err(err)?;
        let (w, h) = self.spec.size();
        let (sw, sh) = (region.width as f32, region.height as f32);
        let interp = imgproc::INTER_LINEAR;
        let lb = match self.spec.resize {
            ResizeMode::Stretch => {
                imgproc::resize(
                    &src,
                    &mut self.resized,
                    Size::new(w as i32, h as i32),
                    0.0,
                    0.0,
                    interp,
                )
                .map_err(err)?;
                Letterbox {
                    scale_x: w as f32 / sw,
                    scale_y: h as f32 / sh,
                    pad_x: 0.0,
                    pad_y: 0.0,
                    offset_x: region.x as f32,
                    offset_y: region.y as f32,
                }
            }
            ResizeMode::Letterbox => {
                let s = (w as f32 / sw).min(h as f32 / sh);
                let nw = ((sw * s).round() as i32).clamp(1, w as i32);
                let nh = ((sh * s).round() as i32).clamp(1, h as i32);
                let px = (w as i32 - nw) / 2;
                let py = (h as i32 - nh) / 2;
                let mut small = Mat::default();
                imgproc::resize(&src, &mut small, Size::new(nw, nh), 0.0, 0.0, interp)
                    .map_err(err)?;
                let p = self.spec.pad_value as f64;
                opencv::core::copy_make_border(
                    &small,
                    &mut self.resized,
                    py,
                    h as i32 - nh - py,
                    px,
                    w as i32 - nw - px,
                    opencv::core::BORDER_CONSTANT,
                    opencv::core::Scalar::new(p, p, p, 0.0),
                )
                .map_err(err)?;
                Letterbox {
                    scale_x: nw as f32 / sw,
                    scale_y: nh as f32 / sh,
                    pad_x: px as f32,
                    pad_y: py as f32,
                    offset_x: region.x as f32,
                    offset_y: region.y as f32,
                }
            }
        };
        let bytes = self.resized.data_bytes().map_err(err)?;
        debug_assert_eq!(bytes.len(), w * h * 3);
        // Source is BGR: model channel c reads source channel src_c[c].
        let src_c = match self.spec.color {
            ColorOrder::Rgb => [2usize, 1, 0],
            ColorOrder::Bgr => [0usize, 1, 2],
        };
        let lut = &self.lut;
        match self.spec.layout {
            Layout::Nhwc => {
                for (o, px) in out.chunks_exact_mut(3).zip(bytes.chunks_exact(3)) {
                    o[0] = lut[0][px[src_c[0]] as usize];
                    o[1] = lut[1][px[src_c[1]] as usize];
                    o[2] = lut[2][px[src_c[2]] as usize];
                }
            }
            Layout::Nchw => {
                let plane = w * h;
                let (p0, rest) = out.split_at_mut(plane);
                let (p1, p2) = rest.split_at_mut(plane);
                for (i, px) in bytes.chunks_exact(3).enumerate() {
                    p0[i] = lut[0][px[src_c[0]] as usize];
                    p1[i] = lut[1][px[src_c[1]] as usize];
                    p2[i] = lut[2][px[src_c[2]] as usize];
                }
            }
        }
        Ok(lb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Scalar, Vec3b};

    fn spec(
        layout: Layout,
        color: ColorOrder,
        resize: ResizeMode,
        w: usize,
        h: usize,
    ) -> InputSpec {
        InputSpec {
            name: "x".into(),
            shape: match layout {
                Layout::Nhwc => vec![1, h, w, 3],
                Layout::Nchw => vec![1, 3, h, w],
            },
            layout,
            color,
            resize,
            scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            pad_value: 114,
        }
    }

    #[test]
    fn nchw_rgb_letterbox_keeps_aspect_and_maps_boxes_back() {
        // 200x100 image, left half blue (BGR 255,0,0), right half red.
        let mut img = Mat::new_rows_cols_with_default(100, 200, CV_8UC3, Scalar::all(0.0)).unwrap();
        for y in 0..100 {
            for x in 0..200 {
                *img.at_2d_mut::<Vec3b>(y, x).unwrap() = if x < 100 {
                    Vec3b::from([255, 0, 0])
                } else {
                    Vec3b::from([0, 0, 255])
                };
            }
        }
        let s = spec(Layout::Nchw, ColorOrder::Rgb, ResizeMode::Letterbox, 64, 64);
        let mut p = Preprocessor::new(&s);
        let mut out = vec![0.0; p.tensor_len()];
        let lb = p.run(&img, Rect::new(0, 0, 200, 100), &mut out).unwrap();
        assert_eq!((lb.scale_x, lb.pad_x, lb.pad_y), (0.32, 0.0, 16.0));
        let at = |c: usize, y: usize, x: usize| out[c * 64 * 64 + y * 64 + x];
        // Padding rows are grey 114/255.
        assert!((at(0, 2, 10) - 114.0 / 255.0).abs() < 1e-6);
        // Left: blue → R=0, B=1. Right: red → R=1.
        assert!((at(2, 32, 10) - 1.0).abs() < 1e-6 && at(0, 32, 10).abs() < 1e-6);
        assert!((at(0, 32, 54) - 1.0).abs() < 1e-6 && at(2, 32, 54).abs() < 1e-6);
        // A box in input pixels maps back to the frame.
        let b = lb.to_frame(&BBox::new(0.0, 16.0, 32.0, 48.0));
        assert!((b.x1 - 0.0).abs() < 1e-4 && (b.y1 - 0.0).abs() < 1e-4);
        assert!((b.x2 - 100.0).abs() < 1e-3 && (b.y2 - 100.0).abs() < 1e-3);
    }

    #[test]
    fn nhwc_bgr_stretch_of_a_tile_with_mean_and_std() {
        let img =
            Mat::new_rows_cols_with_default(50, 80, CV_8UC3, Scalar::new(10.0, 20.0, 30.0, 0.0))
                .unwrap();
        let mut s = spec(Layout::Nhwc, ColorOrder::Bgr, ResizeMode::Stretch, 16, 8);
        s.scale = 1.0;
        s.mean = [10.0, 0.0, 0.0];
        s.std = [1.0, 2.0, 3.0];
        let mut p = Preprocessor::new(&s);
        let mut out = vec![0.0; p.tensor_len()];
        let lb = p.run(&img, Rect::new(40, 10, 40, 40), &mut out).unwrap();
        assert_eq!(&out[..3], &[0.0, 10.0, 10.0]);
        let b = lb.to_frame(&BBox::new(0.0, 0.0, 16.0, 8.0));
        assert_eq!(b, BBox::new(40.0, 10.0, 80.0, 50.0));
        // Wrong buffer size is an error, not a panic.
        assert!(p.run(&img, Rect::new(0, 0, 80, 50), &mut [0.0; 3]).is_err());
    }
}
