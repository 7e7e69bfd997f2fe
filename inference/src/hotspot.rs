//! The thermal eye's detector that needs no model: hot (or warm) blobs in
//! a heat image.
//!
//! A heat image is one `f32` value per pixel: degrees Celsius from a
//! radiometric stream ([`heat_from_radiometric`], GRAY16 counts through a
//! linear calibration), or the grey level 0–255 of a palette-rendered
//! stream ([`heat_from_palette`]), whose scale the camera's automatic
//! gain changes from frame to frame.
//!
//! Each [`HotspotBand`] (a class: `fire`, `person`) finds its blobs by
//! hysteresis, the way the hot core and its glow look in a thermal
//! picture:
//!
//! 1. the picture is smoothed (3×3 Gaussian) and its background level
//!    taken (the median);
//! 2. seeds: pixels at or above `hot` (and not above `max`, for a band of
//!    warm bodies);
//! 3. the blob: pixels above `background + grow × (hot − background)`
//!    (and not above `max`), closed over `close_px` gaps, connected
//!    (8-neighbourhood); a component counts when it holds a seed and its
//!    area is within `min_area_px..=max_area_px`;
//! 4. its box, padded by `pad` of its size on each side (hand-drawn
//!    boxes hold the glow around a fire).
//!
//! A blob of a band with a `max` (warm bodies) that touches a blob of a
//! hotter band is dropped: it is that blob's rim, blurred by the optics.
//! The score is 0.5 at `hot` and reaches 1 as the blob's peak rises one
//! more `hot − background` above it. Persistence over frames and the
//! place on the ground are the event rules' business (`events`), as for
//! any detector.
//!
//! The defaults ([`HotspotBand::palette_fire`]) were chosen on the
//! `fire-thermal-drone` train and valid images (a grid over `hot`,
//! `grow`, `pad` and `close_px`, box recall and precision at IoU 0.5) and
//! are scored on its held-out test images by
//! `inference/tests/hotspot_thermal.rs` (docs/thermal.md).

use opencv::core::{self, Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};

use crate::decode::{BBox, Detection};

/// What is wrong with a heat image, a calibration or a band.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HotspotError {
    #[error("thermal frame: {0}")]
    Frame(String),
    #[error("thermal calibration: {0}")]
    Calibration(String),
    #[error("hotspot band `{class}`: {reason}")]
    Band { class: String, reason: String },
    #[error("OpenCV: {0}")]
    OpenCv(String),
}

fn cv(e: opencv::Error) -> HotspotError {
    HotspotError::OpenCv(e.to_string())
}

/// A radiometric stream's counts to degrees Celsius:
/// `°C = counts × gain_c_per_count + offset_c`. For example a FLIR Boson
/// or Lepton in TLinear mode at 0.01 K resolution: gain 0.01, offset
/// −273.15.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub gain_c_per_count: f64,
    pub offset_c: f64,
}

impl Calibration {
    pub fn validate(&self) -> Result<(), HotspotError> {
        if !(self.gain_c_per_count.is_finite() && self.gain_c_per_count > 0.0) {
            return Err(HotspotError::Calibration(format!(
                "gain_c_per_count = {} must be a positive number",
                self.gain_c_per_count
            )));
        }
        if !self.offset_c.is_finite() {
            return Err(HotspotError::Calibration(format!(
                "offset_c = {} must be a number",
                self.offset_c
            )));
        }
        Ok(())
    }
}

/// Degrees Celsius from a radiometric GRAY16 frame (`CV_16UC1`). Any
/// other depth or channel count is an error naming what came.
pub fn heat_from_radiometric(counts: &Mat, cal: &Calibration) -> Result<Mat, HotspotError> {
    cal.validate()?;
    if counts.typ() != core::CV_16UC1 {
        return Err(HotspotError::Frame(format!(
            "a radiometric frame must be 16-bit single-channel (GRAY16), got {} channel(s) of depth {}",
            counts.channels(),
            depth_name(counts.depth())
        )));
    }
    let mut out = Mat::default();
    counts
        .convert_to(&mut out, core::CV_32F, cal.gain_c_per_count, cal.offset_c)
        .map_err(cv)?;
    Ok(out)
}

/// The grey level (0–255) of a palette-rendered frame, 8-bit BGR or grey.
pub fn heat_from_palette(frame: &Mat) -> Result<Mat, HotspotError> {
    if frame.depth() != core::CV_8U {
        return Err(HotspotError::Frame(format!(
            "a palette frame must be 8-bit, got depth {}",
            depth_name(frame.depth())
        )));
    }
    let grey = match frame.channels() {
        1 => frame.clone(),
        3 => {
            let mut g = Mat::default();
            imgproc::cvt_color_def(frame, &mut g, imgproc::COLOR_BGR2GRAY).map_err(cv)?;
            g
        }
        n => {
            return Err(HotspotError::Frame(format!(
                "a palette frame must have 1 or 3 channels, got {n}"
            )))
        }
    };
    let mut out = Mat::default();
    grey.convert_to(&mut out, core::CV_32F, 1.0, 0.0)
        .map_err(cv)?;
    Ok(out)
}

fn depth_name(d: i32) -> &'static str {
    match d {
        core::CV_8U => "8U",
        core::CV_8S => "8S",
        core::CV_16U => "16U",
        core::CV_16S => "16S",
        core::CV_32S => "32S",
        core::CV_32F => "32F",
        core::CV_64F => "64F",
        _ => "?",
    }
}

/// One class of blob and how to find it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotspotBand {
    /// The class the blobs are reported as (`fire`, `person`).
    pub class: String,
    /// Seed level: a blob holds at least one pixel this hot.
    pub hot: f32,
    /// Nothing above this belongs to the band (warm bodies, not fires).
    #[serde(default)]
    pub max: Option<f32>,
    /// The blob grows down to `background + grow × (hot − background)`.
    #[serde(default = "default_grow")]
    pub grow: f32,
    #[serde(default = "default_min_area")]
    pub min_area_px: u32,
    #[serde(default)]
    pub max_area_px: Option<u32>,
    /// Gaps closed before the blobs are counted, pixels (1: none).
    #[serde(default = "default_close")]
    pub close_px: u32,
    /// Box padding on each side, as a fraction of the blob's size.
    #[serde(default = "default_pad")]
    pub pad: f32,
}

fn default_grow() -> f32 {
    0.45
}
fn default_min_area() -> u32 {
    30
}
fn default_close() -> u32 {
    9
}
fn default_pad() -> f32 {
    0.15
}

impl HotspotBand {
    /// Fire in a palette-rendered stream (grey levels): the defaults.
    pub fn palette_fire() -> Self {
        Self {
            class: "fire".into(),
            hot: 220.0,
            max: None,
            grow: default_grow(),
            min_area_px: default_min_area(),
            max_area_px: None,
            close_px: default_close(),
            pad: default_pad(),
        }
    }

    /// Fire in a radiometric stream: flames and embers of a straw fire
    /// are hundreds of degrees; 150 °C is far above anything the sun
    /// heats (dark roofs and roads reach 60–70 °C).
    pub fn radiometric_fire() -> Self {
        Self {
            hot: 150.0,
            ..Self::palette_fire()
        }
    }

    /// People at night in a radiometric stream: clothed bodies seen from
    /// above show 25–37 °C against ground that has cooled to 5–20 °C.
    pub fn radiometric_person() -> Self {
        Self {
            class: "person".into(),
            hot: 28.0,
            max: Some(40.0),
            grow: 0.5,
            min_area_px: 4,
            max_area_px: Some(2_000),
            close_px: 1,
            pad: 0.0,
        }
    }

    pub fn validate(&self) -> Result<(), HotspotError> {
        let bad = |reason: String| HotspotError::Band {
            class: self.class.clone(),
            reason,
        };
        if self.class.trim().is_empty() {
            return Err(bad("class must not be empty".into()));
        }
        if !self.hot.is_finite() {
            return Err(bad(format!("hot = {} must be a number", self.hot)));
        }
        if let Some(m) = self.max {
            if !(m.is_finite() && m > self.hot) {
                return Err(bad(format!("max = {m} must be above hot = {}", self.hot)));
            }
        }
        if !(0.0..=1.0).contains(&self.grow) {
            return Err(bad(format!("grow = {} must be within 0..=1", self.grow)));
        }
        if self.min_area_px == 0 {
            return Err(bad("min_area_px must be at least 1".into()));
        }
        if let Some(m) = self.max_area_px {
            if m < self.min_area_px {
                return Err(bad(format!(
                    "max_area_px = {m} is below min_area_px = {}",
                    self.min_area_px
                )));
            }
        }
        if !(1..=64).contains(&self.close_px) {
            return Err(bad(format!(
                "close_px = {} must be within 1..=64",
                self.close_px
            )));
        }
        if !(0.0..=2.0).contains(&self.pad) {
            return Err(bad(format!("pad = {} must be within 0..=2", self.pad)));
        }
        Ok(())
    }
}

/// The hotspot detector: bands, each a class of its own (class ids in
/// band order).
#[derive(Debug, Clone)]
pub struct HotspotDetector {
    bands: Vec<HotspotBand>,
}

impl HotspotDetector {
    pub fn new(bands: Vec<HotspotBand>) -> Result<Self, HotspotError> {
        if bands.is_empty() {
            return Err(HotspotError::Band {
                class: String::new(),
                reason: "at least one band is needed".into(),
            });
        }
        for b in &bands {
            b.validate()?;
        }
        Ok(Self { bands })
    }

    /// Class names, by class id.
    pub fn classes(&self) -> Vec<String> {
        self.bands.iter().map(|b| b.class.clone()).collect()
    }

    /// Blobs of every band in a heat image (`CV_32FC1`).
    pub fn detect(&self, heat: &Mat) -> Result<Vec<Detection>, HotspotError> {
        if heat.typ() != core::CV_32FC1 {
            return Err(HotspotError::Frame(format!(
                "a heat image must be one 32-bit float channel, got {} channel(s) of depth {}",
                heat.channels(),
                depth_name(heat.depth())
            )));
        }
        if heat.empty() {
            return Err(HotspotError::Frame("empty heat image".into()));
        }
        let mut smooth = Mat::default();
        imgproc::gaussian_blur_def(heat, &mut smooth, Size::new(3, 3), 0.0).map_err(cv)?;
        let background = median(&smooth)?;
        let mut out = vec![];
        for (class_id, band) in self.bands.iter().enumerate() {
            self.band(&smooth, background, class_id, band, &mut out)?;
        }
        // A warm blob that touches a hotter band's blob is that blob's
        // rim (the optics blur a fire's edge through every temperature
        // down to the ground's), not a body of its own.
        let hot: Vec<(BBox, f32)> = out
            .iter()
            .map(|d| (d.bbox, self.bands[d.class_id].hot))
            .collect();
        out.retain(|d| {
            let band = &self.bands[d.class_id];
            band.max.is_none()
                || !hot
                    .iter()
                    .any(|(b, level)| *level > band.hot && touches(b, &d.bbox))
        });
        Ok(out)
    }

    fn band(
        &self,
        heat: &Mat,
        background: f32,
        class_id: usize,
        b: &HotspotBand,
        out: &mut Vec<Detection>,
    ) -> Result<(), HotspotError> {
        let (w, h) = (heat.cols() as f32, heat.rows() as f32);
        let upper = b.max.unwrap_or(f32::INFINITY);
        let lo = if b.hot > background {
            background + b.grow * (b.hot - background)
        } else {
            b.hot
        };
        // Masks 0/255 of the seeds and of the grown blobs.
        let within = |low: f32| -> Result<Mat, HotspotError> {
            let mut m = Mat::default();
            core::in_range(
                heat,
                &core::Scalar::all(low as f64),
                &core::Scalar::all(upper.min(f32::MAX) as f64),
                &mut m,
            )
            .map_err(cv)?;
            Ok(m)
        };
        let seeds = within(b.hot)?;
        if core::count_non_zero(&seeds).map_err(cv)? == 0 {
            return Ok(());
        }
        let mut grown = within(lo)?;
        if b.close_px > 1 {
            let k = imgproc::get_structuring_element_def(
                imgproc::MORPH_RECT,
                Size::new(b.close_px as i32, b.close_px as i32),
            )
            .map_err(cv)?;
            let mut closed = Mat::default();
            imgproc::morphology_ex_def(&grown, &mut closed, imgproc::MORPH_CLOSE, &k)
                .map_err(cv)?;
            grown = closed;
        }
        let (mut labels, mut stats, mut centroids) =
            (Mat::default(), Mat::default(), Mat::default());
        let n = imgproc::connected_components_with_stats(
            &grown,
            &mut labels,
            &mut stats,
            &mut centroids,
            8,
            core::CV_32S,
        )
        .map_err(cv)? as usize;
        // Which components hold a seed, and their peak.
        let mut peak = vec![f32::NEG_INFINITY; n];
        let mut at_seeds = core::Vector::<core::Point>::new();
        core::find_non_zero(&seeds, &mut at_seeds).map_err(cv)?;
        for p in at_seeds {
            let c = *labels.at_2d::<i32>(p.y, p.x).map_err(cv)? as usize;
            let v = *heat.at_2d::<f32>(p.y, p.x).map_err(cv)?;
            peak[c] = peak[c].max(v);
        }
        let span = (b.hot - background).max(1e-3);
        for (c, &p) in peak.iter().enumerate().skip(1) {
            if !p.is_finite() {
                continue;
            }
            let at = |k: i32| -> Result<i32, HotspotError> {
                stats.at_2d::<i32>(c as i32, k).copied().map_err(cv)
            };
            let area = at(imgproc::CC_STAT_AREA)? as u32;
            if area < b.min_area_px || b.max_area_px.is_some_and(|m| area > m) {
                continue;
            }
            let (x, y) = (
                at(imgproc::CC_STAT_LEFT)? as f32,
                at(imgproc::CC_STAT_TOP)? as f32,
            );
            let (bw, bh) = (
                at(imgproc::CC_STAT_WIDTH)? as f32,
                at(imgproc::CC_STAT_HEIGHT)? as f32,
            );
            let (px, py) = (bw * b.pad, bh * b.pad);
            out.push(Detection {
                bbox: BBox::new(
                    (x - px).max(0.0),
                    (y - py).max(0.0),
                    (x + bw + px).min(w),
                    (y + bh + py).min(h),
                ),
                score: (0.5 + 0.5 * (p - b.hot) / span).clamp(0.5, 1.0),
                class_id,
            });
        }
        Ok(())
    }
}

/// Two boxes overlap or touch (within a pixel).
fn touches(a: &BBox, b: &BBox) -> bool {
    a.x1 <= b.x2 + 1.0 && b.x1 <= a.x2 + 1.0 && a.y1 <= b.y2 + 1.0 && b.y1 <= a.y2 + 1.0
}

/// Median of a `CV_32FC1` image (every fourth pixel of every fourth row
/// on large ones).
fn median(m: &Mat) -> Result<f32, HotspotError> {
    let step = if m.total() > 65_536 { 4 } else { 1 };
    let mut v: Vec<f32> = Vec::with_capacity(m.total() / (step * step) + 1);
    for y in (0..m.rows()).step_by(step) {
        let row = m.at_row::<f32>(y).map_err(cv)?;
        v.extend(row.iter().step_by(step).filter(|x| x.is_finite()));
    }
    if v.is_empty() {
        return Err(HotspotError::Frame("no finite heat value".into()));
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f32::total_cmp);
    Ok(*m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Rect, Scalar};

    fn field(w: i32, h: i32, level: f32) -> Mat {
        Mat::new_rows_cols_with_default(h, w, core::CV_32FC1, Scalar::all(level as f64)).unwrap()
    }

    fn paint(m: &mut Mat, r: Rect, v: f32) {
        let mut roi = Mat::roi_mut(m, r).unwrap();
        roi.set_to_def(&Scalar::all(v as f64)).unwrap();
    }

    #[test]
    fn a_hot_core_with_its_glow_is_one_box_around_the_glow() {
        let mut m = field(200, 150, 20.0);
        paint(&mut m, Rect::new(50, 40, 30, 20), 120.0); // glow
        paint(&mut m, Rect::new(60, 45, 10, 10), 250.0); // core
        let d = HotspotDetector::new(vec![HotspotBand {
            pad: 0.0,
            ..HotspotBand::palette_fire()
        }])
        .unwrap();
        let found = d.detect(&m).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        let b = found[0].bbox;
        // The glow (120) is above 20 + 0.45 × (220 − 20) = 110: it belongs.
        assert!(
            (b.x1 - 50.0).abs() <= 1.0 && (b.x2 - 80.0).abs() <= 1.0,
            "{b:?}"
        );
        assert!(
            (b.y1 - 40.0).abs() <= 1.0 && (b.y2 - 60.0).abs() <= 1.0,
            "{b:?}"
        );
        assert!(found[0].score > 0.5);
    }

    #[test]
    fn warm_patches_without_a_hot_seed_and_sparks_are_not_fires() {
        let mut m = field(200, 150, 20.0);
        paint(&mut m, Rect::new(10, 10, 40, 40), 150.0); // warm roof, no seed
        paint(&mut m, Rect::new(120, 100, 3, 3), 250.0); // a spark: 9 px
        let d = HotspotDetector::new(vec![HotspotBand::palette_fire()]).unwrap();
        assert!(d.detect(&m).unwrap().is_empty());
    }

    #[test]
    fn a_person_band_keeps_warm_bodies_and_leaves_the_fire_out() {
        let mut m = field(200, 150, 12.0);
        paint(&mut m, Rect::new(20, 20, 4, 8), 33.0); // a person
        paint(&mut m, Rect::new(100, 60, 20, 20), 400.0); // a fire
        let d = HotspotDetector::new(vec![
            HotspotBand::radiometric_fire(),
            HotspotBand::radiometric_person(),
        ])
        .unwrap();
        let found = d.detect(&m).unwrap();
        let fires: Vec<_> = found.iter().filter(|d| d.class_id == 0).collect();
        let people: Vec<_> = found.iter().filter(|d| d.class_id == 1).collect();
        assert_eq!(fires.len(), 1, "{found:?}");
        assert_eq!(people.len(), 1, "{found:?}");
        assert!(people[0].bbox.x1 <= 20.0 && people[0].bbox.x2 >= 24.0);
        assert_eq!(d.classes(), ["fire", "person"]);
    }

    #[test]
    fn radiometric_counts_become_celsius_through_the_calibration() {
        let counts =
            Mat::new_rows_cols_with_default(2, 2, core::CV_16UC1, Scalar::all(30_000.0)).unwrap();
        let cal = Calibration {
            gain_c_per_count: 0.01,
            offset_c: -273.15,
        };
        let c = heat_from_radiometric(&counts, &cal).unwrap();
        assert!((c.at_2d::<f32>(0, 0).unwrap() - 26.85).abs() < 1e-3);
    }

    #[test]
    fn wrong_frames_and_calibrations_are_named() {
        let rgb = Mat::new_rows_cols_with_default(2, 2, core::CV_8UC3, Scalar::all(0.0)).unwrap();
        let cal = Calibration {
            gain_c_per_count: 0.01,
            offset_c: -273.15,
        };
        let e = heat_from_radiometric(&rgb, &cal).unwrap_err().to_string();
        assert!(
            e.contains("16-bit single-channel") && e.contains("3 channel"),
            "{e}"
        );
        let bad = Calibration {
            gain_c_per_count: 0.0,
            ..cal
        };
        let g16 = Mat::new_rows_cols_with_default(2, 2, core::CV_16UC1, Scalar::all(0.0)).unwrap();
        let e = heat_from_radiometric(&g16, &bad).unwrap_err().to_string();
        assert!(e.contains("gain_c_per_count"), "{e}");
        let e = heat_from_palette(&g16).unwrap_err().to_string();
        assert!(e.contains("8-bit"), "{e}");
        let d = HotspotDetector::new(vec![HotspotBand::palette_fire()]).unwrap();
        assert!(d
            .detect(&rgb)
            .unwrap_err()
            .to_string()
            .contains("32-bit float"));
        let e = HotspotDetector::new(vec![HotspotBand {
            max: Some(10.0),
            ..HotspotBand::palette_fire()
        }])
        .unwrap_err()
        .to_string();
        assert!(e.contains("max = 10") && e.contains("fire"), "{e}");
    }
}
