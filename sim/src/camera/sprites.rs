//! People sprites cut from real footage: Debian opencv-doc's `vtest.avi`
//! (768×576, 10 fps, an elevated camera over a campus crossing).
//!
//! At start-up the video is read once: the median of frames spread over
//! the clip is the empty background (people move, the ground does not);
//! each person in [`CUTS`] (a frame number and a box, chosen once with the
//! real detector and checked by eye, see `docs/benchmarks/sim-camera.md`)
//! becomes a BGRA sprite whose alpha is the difference from the background
//! inside the box, cleaned (threshold, close, open, largest blob, holes
//! filled, edges feathered). No frame of the video is stored in the
//! repository: only these frame numbers and boxes.

use std::path::{Path, PathBuf};

use opencv::core::{self, Mat, Point, Rect, Scalar, Size, Vector, CV_8UC1};
use opencv::imgproc;
use opencv::prelude::*;
use opencv::videoio;

use super::CameraError;

/// Where Debian's opencv-doc package installs the clip.
pub const VTEST_AVI: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";

/// One person to cut: frame number and box `(x1, y1, x2, y2)` in pixels
/// of the 768×576 frame, tight around the person (feet at `y2`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cut {
    pub frame: u32,
    pub x1: i32,
    pub y1: i32,
    pub x2: i32,
    pub y2: i32,
}

const fn cut(frame: u32, x1: i32, y1: i32, x2: i32, y2: i32) -> Cut {
    Cut {
        frame,
        x1,
        y1,
        x2,
        y2,
    }
}

/// Pedestrians of vtest.avi: the six of frame 300 boxed by hand for the
/// eye's own tests (`inference/tests/vtest.rs`, `FRAME_300`), which the
/// CenterNet COCO model finds there. A neighbour's edge inside a box is
/// removed by the largest-blob mask.
pub const CUTS: &[Cut] = &[
    cut(300, 188, 160, 214, 235),
    cut(300, 243, 155, 264, 222),
    cut(300, 296, 156, 325, 228),
    cut(300, 313, 214, 345, 293),
    cut(300, 580, 160, 609, 234),
    cut(300, 618, 161, 644, 233),
];

/// A person sprite: BGR pixels and an alpha mask (0..255) of the same
/// size; the feet are at the bottom centre.
pub struct Sprite {
    pub bgr: Mat,
    pub alpha: Mat,
    /// Where it came from.
    pub cut: Cut,
}

impl Sprite {
    pub fn width(&self) -> i32 {
        self.bgr.cols()
    }
    pub fn height(&self) -> i32 {
        self.bgr.rows()
    }
}

/// All sprites cut from one video.
pub struct SpriteBank {
    pub sprites: Vec<Sprite>,
    pub source: PathBuf,
}

impl std::fmt::Debug for SpriteBank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpriteBank")
            .field("sprites", &self.sprites.len())
            .field("source", &self.source)
            .finish()
    }
}

fn footage_err(path: &Path, reason: impl Into<String>) -> CameraError {
    CameraError::Footage {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Read the frames with the given numbers (any order) from a video, all
/// frames being decoded in order. Also returns the frame count.
pub fn read_frames(path: &Path, wanted: &[u32]) -> Result<(Vec<(u32, Mat)>, u32), CameraError> {
    if !path.exists() {
        return Err(footage_err(
            path,
            "no such file: the people sprites are cut from it; install Debian's opencv-doc \
             package (apt-get install opencv-doc; `scripts/dev setup` does it)",
        ));
    }
    let mut cap = videoio::VideoCapture::from_file(path, videoio::CAP_ANY)
        .map_err(|e| footage_err(path, format!("cannot open: {e}")))?;
    if !cap.is_opened().unwrap_or(false) {
        return Err(footage_err(path, "OpenCV cannot open it as a video"));
    }
    let last = wanted.iter().copied().max().unwrap_or(0);
    let mut out = Vec::new();
    let mut n = 0u32;
    let mut frame = Mat::default();
    loop {
        let ok = cap
            .read(&mut frame)
            .map_err(|e| footage_err(path, format!("cannot decode frame {n}: {e}")))?;
        if !ok || frame.empty() {
            break;
        }
        if wanted.contains(&n) {
            out.push((n, frame.try_clone()?));
        }
        n += 1;
        if n > last && out.len() == wanted.len() {
            break;
        }
    }
    if let Some(missing) = wanted.iter().find(|w| !out.iter().any(|(k, _)| k == *w)) {
        return Err(footage_err(
            path,
            format!("has {n} frames; frame {missing} is needed (is it the opencv-doc vtest.avi?)"),
        ));
    }
    Ok((out, n))
}

/// Per-pixel median of same-sized BGR frames (OpenCV row sort).
pub fn median_background(frames: &[Mat]) -> Result<Mat, CameraError> {
    let (rows, cols) = (frames[0].rows(), frames[0].cols());
    let n = rows * cols * 3;
    let mut columns = Vector::<Mat>::new();
    for f in frames {
        let flat = f.reshape(1, n)?;
        columns.push(flat.try_clone()?);
    }
    let mut stacked = Mat::default();
    core::hconcat(&columns, &mut stacked)?;
    let mut sorted = Mat::default();
    core::sort(
        &stacked,
        &mut sorted,
        core::SORT_EVERY_ROW | core::SORT_ASCENDING,
    )?;
    let mid = sorted.col(frames.len() as i32 / 2)?.try_clone()?;
    Ok(mid.reshape(3, rows)?.try_clone()?)
}

/// The alpha mask of a person inside `roi`: |frame − background| over a
/// threshold, closed and opened, the largest blob with its holes filled,
/// edges feathered.
pub fn person_mask(frame: &Mat, background: &Mat, roi: Rect) -> Result<Mat, CameraError> {
    let f = Mat::roi(frame, roi)?;
    let b = Mat::roi(background, roi)?;
    let mut diff = Mat::default();
    core::absdiff(&f, &b, &mut diff)?;
    let mut grey = Mat::default();
    imgproc::cvt_color_def(&diff, &mut grey, imgproc::COLOR_BGR2GRAY)?;
    // Sum of channels would be better for colour-only differences; the
    // max over channels is close enough and keeps 8 bits.
    let mut ch = Vector::<Mat>::new();
    core::split(&diff, &mut ch)?;
    let mut mx = Mat::default();
    core::max(&ch.get(0)?, &ch.get(1)?, &mut mx)?;
    let mut mx2 = Mat::default();
    core::max(&mx, &ch.get(2)?, &mut mx2)?;
    let mut bin = Mat::default();
    imgproc::threshold(&mx2, &mut bin, 22.0, 255.0, imgproc::THRESH_BINARY)?;
    let k3 = imgproc::get_structuring_element_def(imgproc::MORPH_ELLIPSE, Size::new(3, 3))?;
    let k5 = imgproc::get_structuring_element_def(imgproc::MORPH_ELLIPSE, Size::new(5, 5))?;
    let mut closed = Mat::default();
    imgproc::morphology_ex_def(&bin, &mut closed, imgproc::MORPH_CLOSE, &k5)?;
    let mut opened = Mat::default();
    imgproc::morphology_ex_def(&closed, &mut opened, imgproc::MORPH_OPEN, &k3)?;
    // Largest external contour, filled (fills holes too).
    let mut contours = Vector::<Vector<Point>>::new();
    imgproc::find_contours_def(
        &opened,
        &mut contours,
        imgproc::RETR_EXTERNAL,
        imgproc::CHAIN_APPROX_SIMPLE,
    )?;
    let mut best = None;
    let mut best_area = 0.0;
    for (i, c) in contours.iter().enumerate() {
        let a = imgproc::contour_area_def(&c)?;
        if a > best_area {
            best_area = a;
            best = Some(i);
        }
    }
    let mut mask = Mat::new_size_with_default(roi.size(), CV_8UC1, Scalar::all(0.0))?;
    if let Some(i) = best {
        imgproc::draw_contours(
            &mut mask,
            &contours,
            i as i32,
            Scalar::all(255.0),
            imgproc::FILLED,
            imgproc::LINE_8,
            &core::no_array(),
            i32::MAX,
            Point::new(0, 0),
        )?;
    }
    let mut soft = Mat::default();
    imgproc::gaussian_blur_def(&mask, &mut soft, Size::new(3, 3), 0.8)?;
    Ok(soft)
}

impl SpriteBank {
    /// Cut the sprites of [`CUTS`] from the installed vtest.avi.
    pub fn from_vtest() -> Result<Self, CameraError> {
        Self::cut(Path::new(VTEST_AVI), CUTS)
    }

    /// Cut `cuts` from a video. Sprites whose mask covers less than 25 %
    /// or more than 90 % of their box are dropped (a bad cut); at least
    /// one must survive.
    pub fn cut(path: &Path, cuts: &[Cut]) -> Result<Self, CameraError> {
        // Background: 25 frames spread over the clip.
        let bg_frames: Vec<u32> = (0..25).map(|i| 10 + i * 31).collect();
        let mut wanted: Vec<u32> = bg_frames.clone();
        wanted.extend(cuts.iter().map(|c| c.frame));
        wanted.sort_unstable();
        wanted.dedup();
        let (frames, _) = read_frames(path, &wanted)?;
        let get = |n: u32| frames.iter().find(|(k, _)| *k == n).map(|(_, m)| m);
        let bg_mats: Vec<Mat> = bg_frames
            .iter()
            .filter_map(|n| get(*n).map(|m| m.try_clone()))
            .collect::<Result<_, _>>()?;
        let background = median_background(&bg_mats)?;
        let (fw, fh) = (background.cols(), background.rows());
        let mut sprites = Vec::new();
        for c in cuts {
            let r = Rect::new(c.x1, c.y1, c.x2 - c.x1, c.y2 - c.y1);
            if r.width < 4
                || r.height < 8
                || r.x < 0
                || r.y < 0
                || r.x + r.width > fw
                || r.y + r.height > fh
            {
                return Err(footage_err(
                    path,
                    format!("cut {c:?} is not a box inside the {fw}x{fh} frame"),
                ));
            }
            let frame = get(c.frame).expect("read_frames returned every wanted frame");
            let alpha = person_mask(frame, &background, r)?;
            let cover = core::mean_def(&alpha)?[0] / 255.0;
            if !(0.25..=0.9).contains(&cover) {
                tracing::warn!(?c, cover, "sprite mask is implausible; skipped");
                continue;
            }
            sprites.push(Sprite {
                bgr: Mat::roi(frame, r)?.try_clone()?,
                alpha,
                cut: *c,
            });
        }
        if sprites.is_empty() {
            return Err(footage_err(path, "no usable person sprite could be cut"));
        }
        Ok(SpriteBank {
            sprites,
            source: path.to_path_buf(),
        })
    }

    /// The sprite for a stable `look` number.
    pub fn pick(&self, look: u64) -> &Sprite {
        &self.sprites[(look % self.sprites.len() as u64) as usize]
    }
}
