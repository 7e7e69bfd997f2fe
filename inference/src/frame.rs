//! Video frames as the eye passes them around.

use std::sync::Arc;
use std::time::Instant;

use gstreamer as gst;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use opencv::boxed_ref::BoxedRef;
use opencv::core::{Mat, MatTraitConst, CV_8UC3};
use opencv::prelude::*;

use crate::error::{InferenceError, Result};

/// One decoded frame: packed BGR, 8 bits per channel, rows of
/// `width * 3` bytes, with the times the geotagger and the latency
/// figures need.
#[derive(Clone)]
pub struct Frame {
    /// Position in the source's delivered sequence (0, 1, 2, … across
    /// reconnects; gaps mean frames were dropped).
    pub seq: u64,
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, BGR.
    pub bgr: Arc<Vec<u8>>,
    /// Stream position (presentation time), ms, when the source has one.
    pub pts_ms: Option<i64>,
    /// Wall-clock capture time (Unix ms): what the pose is looked up at.
    pub capture_unix_ms: i64,
    /// Monotonic capture time (same instant as `capture_unix_ms`).
    pub capture_mono: Instant,
    /// When the source handed the frame over (monotonic); latency figures
    /// start here.
    pub received_mono: Instant,
    /// The file the frame was read from (folder sources).
    pub name: Option<Arc<str>>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("seq", &self.seq)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("pts_ms", &self.pts_ms)
            .field("capture_unix_ms", &self.capture_unix_ms)
            .finish()
    }
}

impl Frame {
    /// A frame from packed BGR bytes. Errors when the length does not
    /// match the size.
    pub fn from_bgr(
        seq: u64,
        width: u32,
        height: u32,
        bgr: Vec<u8>,
        capture_unix_ms: i64,
    ) -> Result<Self> {
        let want = width as usize * height as usize * 3;
        if bgr.len() != want || width == 0 || height == 0 {
            return Err(InferenceError::Image {
                what: "frame",
                reason: format!(
                    "{} bytes for a {width}x{height} BGR frame (expected {want})",
                    bgr.len()
                ),
            });
        }
        let now = Instant::now();
        Ok(Self {
            seq,
            width,
            height,
            bgr: Arc::new(bgr),
            pts_ms: None,
            capture_unix_ms,
            capture_mono: now,
            received_mono: now,
            name: None,
        })
    }

    /// A frame from an OpenCV BGR `Mat` (copied).
    pub fn from_mat(seq: u64, mat: &Mat, capture_unix_ms: i64) -> Result<Self> {
        if mat.typ() != CV_8UC3 {
            return Err(InferenceError::Image {
                what: "frame",
                reason: format!("Mat type {} is not 8-bit BGR", mat.typ()),
            });
        }
        let mat = if mat.is_continuous() {
            mat.clone()
        } else {
            mat.try_clone()
                .map_err(|e| InferenceError::image("frame", e))?
        };
        let bytes = mat
            .data_bytes()
            .map_err(|e| InferenceError::image("frame", e))?
            .to_vec();
        Self::from_bgr(
            seq,
            mat.cols() as u32,
            mat.rows() as u32,
            bytes,
            capture_unix_ms,
        )
    }

    /// The frame as an OpenCV `Mat` borrowing its bytes (no copy).
    pub fn as_mat(&self) -> Result<BoxedRef<'_, Mat>> {
        bgr_mat(&self.bgr, self.width, self.height)
    }

    /// A deep copy as an owned `Mat` (for drawing on).
    pub fn to_mat(&self) -> Result<Mat> {
        self.as_mat()?
            .try_clone()
            .map_err(|e| InferenceError::image("frame", e))
    }
}

/// Borrow packed BGR bytes as a `Mat`.
pub fn bgr_mat(bytes: &[u8], width: u32, height: u32) -> Result<BoxedRef<'_, Mat>> {
    let want = width as usize * height as usize * 3;
    if bytes.len() != want {
        return Err(InferenceError::Image {
            what: "frame",
            reason: format!("{} bytes for {width}x{height} BGR", bytes.len()),
        });
    }
    // SAFETY: `bytes` holds exactly rows × cols × 3 bytes (checked above)
    // and outlives the returned BoxedRef, which borrows it; the Mat is
    // only read through the BoxedRef.
    let m = unsafe {
        Mat::new_rows_cols_with_data_unsafe_def(
            height as i32,
            width as i32,
            CV_8UC3,
            bytes.as_ptr() as *mut std::ffi::c_void,
        )
    }
    .map_err(|e| InferenceError::image("frame", e))?;
    Ok(BoxedRef::from(m))
}

/// Wall-clock now, Unix ms.
pub fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Copy a GStreamer sample's BGR image into packed rows: (width, height,
/// bytes). Used by the camera source and the video out alike.
pub(crate) fn sample_bgr(sample: &gst::Sample) -> Result<(u32, u32, Vec<u8>), String> {
    let caps = sample.caps().ok_or("sample without caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
    let buffer = sample.buffer().ok_or("sample without buffer")?;
    let vf = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|_| "cannot map the frame")?;
    let (w, h) = (info.width() as usize, info.height() as usize);
    let stride = vf.plane_stride()[0] as usize;
    let data = vf.plane_data(0).map_err(|e| e.to_string())?;
    let row = w * 3;
    let mut out = Vec::with_capacity(row * h);
    for y in 0..h {
        out.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok((w as u32, h as u32, out))
}
