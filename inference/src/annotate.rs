//! Drawing on frames (tracks, incidents) and JPEG snapshots that fit the
//! wire contract's size limit.

use opencv::core::{Mat, MatTraitConst, Point, Rect, Scalar, Size, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;

use crate::decode::BBox;
use crate::error::{InferenceError, Result};
use crate::events::Incident;
use crate::manifest::Manifest;
use crate::tracker::{Track, TrackState};

/// Snapshot settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnapshotConfig {
    /// Hard limit on the JPEG size (the wire contract's, by default).
    pub max_bytes: usize,
    /// Frames wider than this are scaled down first.
    pub max_width: u32,
    /// First JPEG quality tried; lowered until the image fits.
    pub quality: i32,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            max_bytes: tiancha_protocol::MAX_SNAPSHOT_BYTES,
            max_width: 1280,
            quality: 85,
        }
    }
}

/// An encoded snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Jpeg {
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

fn rect(b: &BBox) -> Rect {
    Rect::new(
        b.x1.round() as i32,
        b.y1.round() as i32,
        b.width().round().max(1.0) as i32,
        b.height().round().max(1.0) as i32,
    )
}

const GREEN: (f64, f64, f64) = (60.0, 200.0, 60.0);
const GREY: (f64, f64, f64) = (160.0, 160.0, 160.0);
const RED: (f64, f64, f64) = (30.0, 30.0, 230.0);

fn bgr(c: (f64, f64, f64)) -> Scalar {
    Scalar::new(c.0, c.1, c.2, 0.0)
}

fn label(img: &mut Mat, text: &str, at: Point, color: Scalar, scale: f64) -> Result<()> {
    let err = |e| InferenceError::image("annotation", e);
    let mut base = 0;
    let size = imgproc::get_text_size(text, imgproc::FONT_HERSHEY_SIMPLEX, scale, 1, &mut base)
        .map_err(err)?;
    let y = (at.y - 2).max(size.height + 2);
    imgproc::rectangle(
        img,
        Rect::new(
            at.x,
            y - size.height - 2,
            size.width + 4,
            size.height + base + 2,
        ),
        color,
        imgproc::FILLED,
        imgproc::LINE_8,
        0,
    )
    .map_err(err)?;
    imgproc::put_text(
        img,
        text,
        Point::new(at.x + 2, y),
        imgproc::FONT_HERSHEY_SIMPLEX,
        scale,
        Scalar::new(255.0, 255.0, 255.0, 0.0),
        1,
        imgproc::LINE_AA,
        false,
    )
    .map_err(err)
}

/// Draw tracks (green, grey when lost) and incidents (red, with their
/// account) on a BGR image in place.
pub fn draw(
    img: &mut Mat,
    manifest: &Manifest,
    tracks: &[Track],
    incidents: &[&Incident],
) -> Result<()> {
    let err = |e| InferenceError::image("annotation", e);
    let scale = (img.cols() as f64 / 1280.0).clamp(0.4, 1.5);
    for t in tracks {
        if !t.confirmed {
            continue;
        }
        let c = if t.state == TrackState::Lost {
            GREY
        } else {
            GREEN
        };
        imgproc::rectangle(img, rect(&t.bbox), bgr(c), 1, imgproc::LINE_8, 0).map_err(err)?;
        label(
            img,
            &format!(
                "#{} {} {:.2}",
                t.id,
                manifest.class_name(t.class_id),
                t.score
            ),
            Point::new(t.bbox.x1 as i32, t.bbox.y1 as i32),
            bgr(c),
            0.4 * scale,
        )?;
    }
    for (n, inc) in incidents.iter().enumerate() {
        for b in &inc.boxes {
            imgproc::rectangle(img, rect(b), bgr(RED), 3, imgproc::LINE_8, 0).map_err(err)?;
        }
        let text = format!("{}: {}", inc.category, inc.detail);
        let text: String = text.chars().take(110).collect();
        label(
            img,
            &text,
            Point::new(4, 22 + 22 * n as i32),
            bgr(RED),
            0.5 * scale,
        )?;
    }
    Ok(())
}

/// JPEG-encode, lowering quality (and then size) until it fits
/// `cfg.max_bytes`.
pub fn encode_jpeg(img: &Mat, cfg: &SnapshotConfig) -> Result<Jpeg> {
    let err = |e| InferenceError::image("JPEG encoding", e);
    let mut cur = img.clone();
    if cur.cols() as u32 > cfg.max_width {
        let s = cfg.max_width as f64 / cur.cols() as f64;
        let mut small = Mat::default();
        imgproc::resize(&cur, &mut small, Size::new(0, 0), s, s, imgproc::INTER_AREA)
            .map_err(err)?;
        cur = small;
    }
    loop {
        for q in [cfg.quality, 70, 55, 40, 25] {
            let mut buf = Vector::<u8>::new();
            let params = Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, q]);
            imgcodecs::imencode(".jpg", &cur, &mut buf, &params).map_err(err)?;
            if buf.len() <= cfg.max_bytes {
                return Ok(Jpeg {
                    width: cur.cols() as u32,
                    height: cur.rows() as u32,
                    bytes: buf.to_vec(),
                });
            }
        }
        if cur.cols() < 64 {
            return Err(InferenceError::Image {
                what: "JPEG encoding",
                reason: format!("cannot fit a snapshot into {} bytes", cfg.max_bytes),
            });
        }
        let mut small = Mat::default();
        imgproc::resize(
            &cur,
            &mut small,
            Size::new(0, 0),
            0.5,
            0.5,
            imgproc::INTER_AREA,
        )
        .map_err(err)?;
        cur = small;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::CV_8UC3;

    #[test]
    fn noisy_frames_are_squeezed_under_the_limit() {
        // Random noise compresses badly: forces the quality/size ladder.
        let mut img =
            Mat::new_rows_cols_with_default(1080, 1920, CV_8UC3, Scalar::all(0.0)).unwrap();
        let mut rng = 12345u32;
        for b in img.data_bytes_mut().unwrap() {
            rng = rng.wrapping_mul(1664525).wrapping_add(1013904223);
            *b = (rng >> 24) as u8;
        }
        let cfg = SnapshotConfig {
            max_bytes: 100_000,
            ..SnapshotConfig::default()
        };
        let j = encode_jpeg(&img, &cfg).unwrap();
        assert!(j.bytes.len() <= 100_000, "{}", j.bytes.len());
        assert!(j.bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
        assert!(j.width <= 1280 && j.width as f64 / j.height as f64 - 16.0 / 9.0 < 0.01);
        let back =
            imgcodecs::imdecode(&Vector::<u8>::from_slice(&j.bytes), imgcodecs::IMREAD_COLOR)
                .unwrap();
        assert_eq!(
            (back.cols() as u32, back.rows() as u32),
            (j.width, j.height)
        );
    }
}
