//! The burned-in capture time: large digits for people, and a block code
//! for programs (a glass-to-glass latency probe reads it back from a
//! screenshot of the browser, [`read_timestamp`]).
//!
//! Layout, all in units of `cell = max(6, width / 64)` pixels from the
//! top-left corner: a black panel; at `(1, 1)` two rows of 24 square
//! cells, white = 1, most significant bit first: 44 bits of the Unix time
//! in ms, then a 4-bit check (the sum of the eleven 4-bit groups of the
//! time, mod 16); below them the same time as decimal digits. The code
//! scales with the image, so a resized picture still reads as long as a
//! cell stays a few pixels wide and the corner is not cropped.

use opencv::core::{Mat, Point, Rect, Scalar};
use opencv::imgproc;
use opencv::prelude::*;

const COLS: i32 = 24;
const ROWS: i32 = 2;
const VALUE_BITS: u32 = 44;

fn cell_of(width: i32) -> i32 {
    (width / 64).max(6)
}

fn check(v: u64) -> u64 {
    (0..11).map(|i| (v >> (4 * i)) & 0xf).sum::<u64>() & 0xf
}

/// The size of the panel the code and the digits take (x, y, w, h).
pub fn panel(width: i32) -> Rect {
    let c = cell_of(width);
    Rect::new(0, 0, c * (COLS + 2), c * (ROWS + 5))
}

/// Draw the time (Unix ms) in the top-left corner.
pub fn burn_timestamp(img: &mut Mat, unix_ms: i64) -> opencv::Result<()> {
    let c = cell_of(img.cols());
    let v = (unix_ms.max(0) as u64) & ((1u64 << VALUE_BITS) - 1);
    let word = (v << 4) | check(v);
    imgproc::rectangle(
        img,
        panel(img.cols()),
        Scalar::all(0.0),
        imgproc::FILLED,
        imgproc::LINE_8,
        0,
    )?;
    for i in 0..(COLS * ROWS) {
        let bit = (word >> (47 - i)) & 1;
        if bit == 1 {
            let (row, col) = (i / COLS, i % COLS);
            imgproc::rectangle(
                img,
                Rect::new(c * (1 + col), c * (1 + row), c, c),
                Scalar::all(255.0),
                imgproc::FILLED,
                imgproc::LINE_8,
                0,
            )?;
        }
    }
    let scale = 2.2 * c as f64 / 22.0;
    imgproc::put_text(
        img,
        &format!("{unix_ms}"),
        Point::new(c, c * (ROWS + 4)),
        imgproc::FONT_HERSHEY_SIMPLEX,
        scale,
        Scalar::all(255.0),
        (c / 5).max(2),
        imgproc::LINE_AA,
        false,
    )?;
    Ok(())
}

/// Read the time back (`None` when there is no valid code: no panel, a
/// cell misread, or the check fails).
pub fn read_timestamp(img: &Mat) -> Option<i64> {
    let c = cell_of(img.cols());
    let mut grey = Mat::default();
    if img.channels() == 3 {
        imgproc::cvt_color_def(img, &mut grey, imgproc::COLOR_BGR2GRAY).ok()?;
    } else {
        grey = img.try_clone().ok()?;
    }
    if grey.cols() < c * (COLS + 1) || grey.rows() < c * (ROWS + 1) {
        return None;
    }
    let q = (c / 4).max(1);
    let mut word = 0u64;
    for i in 0..(COLS * ROWS) {
        let (row, col) = (i / COLS, i % COLS);
        let r = Rect::new(c * (1 + col) + q, c * (1 + row) + q, c - 2 * q, c - 2 * q);
        let roi = Mat::roi(&grey, r).ok()?;
        let m = opencv::core::mean_def(&roi).ok()?[0];
        // Anything between is a misread, not a guess.
        let bit = if m > 170.0 {
            1
        } else if m < 85.0 {
            0
        } else {
            return None;
        };
        word = (word << 1) | bit;
    }
    let v = word >> 4;
    (check(v) == word & 0xf).then_some(v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::CV_8UC3;

    #[test]
    fn burns_and_reads_back_at_several_sizes() {
        for (w, h) in [(1280, 720), (640, 360), (1920, 1080)] {
            let mut img = Mat::new_rows_cols_with_default(
                h,
                w,
                CV_8UC3,
                Scalar::new(90.0, 120.0, 110.0, 0.0),
            )
            .unwrap();
            assert_eq!(read_timestamp(&img), None);
            for t in [0i64, 1_712_345_678_901, 17_592_186_044_415] {
                burn_timestamp(&mut img, t).unwrap();
                assert_eq!(read_timestamp(&img), Some(t), "{w}x{h} {t}");
            }
        }
    }

    #[test]
    fn a_flipped_cell_fails_the_check() {
        let mut img =
            Mat::new_rows_cols_with_default(720, 1280, CV_8UC3, Scalar::all(0.0)).unwrap();
        burn_timestamp(&mut img, 1_712_345_678_901).unwrap();
        let c = cell_of(1280);
        // Flip the last value bit's cell (row 1, column 19).
        let r = Rect::new(c * 20, c * 2, c, c);
        let cur = opencv::core::mean_def(&Mat::roi(&img, r).unwrap()).unwrap()[0];
        let colour = if cur > 128.0 { 0.0 } else { 255.0 };
        imgproc::rectangle(
            &mut img,
            r,
            Scalar::all(colour),
            imgproc::FILLED,
            imgproc::LINE_8,
            0,
        )
        .unwrap();
        assert_eq!(read_timestamp(&img), None);
    }
}
