//! The camera's motion between two consecutive frames as the pictures
//! show it: what the poses leave unexplained.
//!
//! Between detector frames the tracks follow the camera through the
//! poses (ground-plane reprojection, [`crate::timeline`]). Telemetry
//! attitude is noisy (the simulator's `--noise`: 0.5° white noise per
//! sample; 0.5° is ~20 px at 30° HFOV and 1280 px), so two frames' poses
//! disagree with their pictures by a shift that changes every frame, and
//! boxes moved by the poses alone jump by it. The detector frames' vote
//! ([`crate::tracker`]) removes it only when a result arrives.
//!
//! [`residual_shift`]: warp a small grey copy of the previous frame
//! ([`Thumbnail`]) into the current one through the pose-based map (a
//! homography for flat ground, from four points), then phase-correlate it
//! with the current frame's copy: the peak is the translation the poses
//! missed (attitude noise moves the whole picture nearly uniformly). With
//! no poses the map is the identity and the shift is the whole motion
//! (good enough between two frames 33-100 ms apart). A weak peak (sky,
//! water, a featureless picture: `MIN_RESPONSE`) or a shift beyond the
//! bound gives nothing.
//!
//! The peak is taken on a middle band only ([`MOTION_MARGIN`] of the
//! height off the top and the bottom, [`MOTION_MARGIN_X`] of the width
//! off the sides): cameras burn text into the picture (the sim's capture
//! timestamp, a gimbal camera's OSD bars) that stays put while the ground
//! moves, and a high-contrast panel outweighs the ground's texture and
//! pulls the shift towards "no motion". With the sim's 520×140 timestamp
//! panel in the corner, a whole-picture peak put a late detector's people
//! 3.7 m (median) off on the ground with exact poses, and the demo's
//! alerts 5-6 m ahead of the people along the flight
//! (sim/tests/overlay_boxes.rs films with the panel burnt in). The band
//! leaves room for the panel to move by a frame's motion when the
//! previous picture is warped.
//!
//! Cost: ~1 ms a frame on the companion (grey conversion and resize of the
//! frame, a 320×180 warp and two FFTs; docs/benchmarks/inference.md).

use opencv::core::{self, Mat, Point2f, Size, Vector, CV_32F};
use opencv::imgproc;
use opencv::prelude::*;

use crate::error::{InferenceError, Result};
use crate::frame::Frame;

/// Width of the grey copies the shift is measured on.
pub const THUMB_WIDTH: i32 = 320;

/// Fraction of the thumbnail's height left out at the top and at the
/// bottom when the shift is measured (burnt-in text lives there)…
pub const MOTION_MARGIN: f32 = 0.25;
/// …and of its width on each side.
pub const MOTION_MARGIN_X: f32 = 0.05;

/// Least phase-correlation peak (fraction of the correlation energy in
/// the 5×5 around the peak) taken as a measurement.
pub const MIN_RESPONSE: f64 = 0.05;

/// A frame's small grey copy (32-bit float), its scale, and the Hanning
/// window of its central part (made once, passed on to the next thumbnail).
pub struct Thumbnail {
    img: Mat,
    /// Frame pixels per thumbnail pixel.
    scale: f32,
    window: Mat,
}

fn cv(e: opencv::Error) -> InferenceError {
    InferenceError::image("motion thumbnail", e)
}

impl Thumbnail {
    /// Grey, `THUMB_WIDTH` wide (area-averaged), float; `prev`'s window is
    /// reused when the size is the same.
    pub fn of(frame: &Frame, prev: Option<&Thumbnail>) -> Result<Self> {
        let src = frame.as_mat()?;
        let mut grey = Mat::default();
        imgproc::cvt_color_def(&src, &mut grey, imgproc::COLOR_BGR2GRAY).map_err(cv)?;
        let w = THUMB_WIDTH.min(frame.width as i32).max(16);
        let scale = frame.width as f32 / w as f32;
        let h = ((frame.height as f32 / scale).round() as i32).max(16);
        let mut small = Mat::default();
        imgproc::resize(
            &grey,
            &mut small,
            Size::new(w, h),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )
        .map_err(cv)?;
        let mut img = Mat::default();
        small.convert_to(&mut img, CV_32F, 1.0, 0.0).map_err(cv)?;
        let window = match prev {
            Some(p) if p.size() == Size::new(w, h) => p.window.clone(),
            _ => {
                let mut window = Mat::default();
                imgproc::create_hanning_window(
                    &mut window,
                    central(Size::new(w, h)).size(),
                    CV_32F,
                )
                .map_err(cv)?;
                window
            }
        };
        Ok(Self { img, scale, window })
    }

    fn size(&self) -> Size {
        Size::new(self.img.cols(), self.img.rows())
    }
}

/// The middle band of a thumbnail of `size` the shift is measured on.
fn central(size: Size) -> core::Rect {
    let (mx, my) = (
        (size.width as f32 * MOTION_MARGIN_X).round() as i32,
        (size.height as f32 * MOTION_MARGIN).round() as i32,
    );
    core::Rect::new(mx, my, size.width - 2 * mx, size.height - 2 * my)
}

/// The translation (frame pixels) that carries `prev`, moved into the
/// current frame by `map` (a pixel of the previous frame → the current
/// frame's, both in frame pixels), onto `cur`: add it to `map` to get
/// where a ground point really went. `None` when the pictures do not say
/// (weak peak), `map` fails on the probe points, or the shift exceeds
/// `max_px`. Also returns the peak's response.
pub fn residual_shift(
    prev: &Thumbnail,
    cur: &Thumbnail,
    map: &dyn Fn(f32, f32) -> Option<(f32, f32)>,
    max_px: f32,
) -> Result<Option<((f32, f32), f64)>> {
    let size = cur.size();
    if prev.size() != size {
        return Ok(None);
    }
    // The map as a homography between the thumbnails, from four points
    // of the picture's central part.
    let (w, h) = (size.width as f32, size.height as f32);
    let mut src = Vector::<Point2f>::new();
    let mut dst = Vector::<Point2f>::new();
    for (fx, fy) in [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)] {
        let (x, y) = (fx * w, fy * h);
        let Some((mx, my)) = map(x * prev.scale, y * prev.scale) else {
            return Ok(None);
        };
        src.push(Point2f::new(x, y));
        dst.push(Point2f::new(mx / cur.scale, my / cur.scale));
    }
    let hm = imgproc::get_perspective_transform_def(&src, &dst).map_err(cv)?;
    let mut warped = Mat::default();
    imgproc::warp_perspective(
        &prev.img,
        &mut warped,
        &hm,
        size,
        imgproc::INTER_LINEAR,
        core::BORDER_REPLICATE,
        core::Scalar::default(),
    )
    .map_err(cv)?;
    let roi = central(size);
    let crop = |m: &Mat| Mat::roi(m, roi).and_then(|r| r.try_clone()).map_err(cv);
    let mut response = 0.0;
    let p = imgproc::phase_correlate(
        &crop(&warped)?,
        &crop(&cur.img)?,
        &cur.window,
        Some(&mut response),
    )
    .map_err(cv)?;
    let shift = (p.x as f32 * cur.scale, p.y as f32 * cur.scale);
    if !(response >= MIN_RESPONSE && shift.0.hypot(shift.1) <= max_px) {
        return Ok(None);
    }
    Ok(Some((shift, response)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured 1280×720 picture (smoothed noise), shifted by `(dx, dy)`.
    fn picture(dx: i32, dy: i32) -> Frame {
        let (w, h) = (1400usize, 820usize);
        let mut state = 12345u32;
        let mut big = vec![0u8; w * h];
        for v in big.iter_mut() {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *v = (state >> 24) as u8;
        }
        // 9×9 box blur so that a 320-wide thumbnail keeps texture.
        let mut blur = vec![0u8; w * h];
        for y in 4..h - 4 {
            for x in 4..w - 4 {
                let mut s = 0u32;
                for j in 0..9 {
                    for i in 0..9 {
                        s += big[(y + j - 4) * w + x + i - 4] as u32;
                    }
                }
                blur[y * w + x] = (s / 81) as u8;
            }
        }
        let mut bgr = Vec::with_capacity(1280 * 720 * 3);
        for y in 0..720 {
            for x in 0..1280 {
                let v = blur[(y + 50 - dy) as usize * w + (x + 60 - dx) as usize];
                bgr.extend([v, v, v]);
            }
        }
        Frame::from_bgr(0, 1280, 720, bgr, 0).unwrap()
    }

    #[test]
    fn the_shift_the_map_misses_is_found_and_a_flat_picture_gives_none() {
        let prev = Thumbnail::of(&picture(0, 0), None).unwrap();
        // The picture moved by (28, −12) px; the poses said (20, 0).
        let cur = Thumbnail::of(&picture(28, -12), Some(&prev)).unwrap();
        let map = |x: f32, y: f32| Some((x + 20.0, y));
        let ((sx, sy), r) = residual_shift(&prev, &cur, &map, 250.0).unwrap().unwrap();
        assert!(
            (sx - 8.0).abs() < 2.0 && (sy + 12.0).abs() < 2.0,
            "({sx}, {sy}), {r}"
        );
        // No poses: the whole motion.
        let id = |x: f32, y: f32| Some((x, y));
        let ((sx, sy), _) = residual_shift(&prev, &cur, &id, 250.0).unwrap().unwrap();
        assert!(
            (sx - 28.0).abs() < 2.0 && (sy + 12.0).abs() < 2.0,
            "({sx}, {sy})"
        );
        // Beyond the bound, or a map that fails: nothing.
        assert!(residual_shift(&prev, &cur, &id, 10.0).unwrap().is_none());
        assert!(residual_shift(&prev, &cur, &|_, _| None, 250.0)
            .unwrap()
            .is_none());
        // A featureless picture says nothing.
        let black = Frame::from_bgr(0, 1280, 720, vec![0; 1280 * 720 * 3], 0).unwrap();
        let b = Thumbnail::of(&black, None).unwrap();
        assert!(residual_shift(&b, &b, &id, 250.0).unwrap().is_none());
    }
}
