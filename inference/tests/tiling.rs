//! Tiling (SAHI-style slices) recovers people too small for the full-frame
//! pass: four vtest.avi frames side by side (1536 × 1152) make people a
//! third of their size at the model's 512 × 512; 2 × 2 slices with overlap
//! bring them back. Reference: what the model finds on each frame alone.

mod common;

use tiancha_inference::manifest::TilingSpec;
use tiancha_inference::{BBox, Detection, Detector, DetectorOptions, Frame};

/// Four frames in a 2 × 2 mosaic.
fn mosaic(f: &[Frame]) -> Frame {
    let (w, h) = (f[0].width as usize, f[0].height as usize);
    let mut out = vec![0u8; 4 * w * h * 3];
    for (k, fr) in f.iter().enumerate() {
        let (ox, oy) = ((k % 2) * w, (k / 2) * h);
        for y in 0..h {
            let src = &fr.bgr[y * w * 3..(y + 1) * w * 3];
            let at = ((oy + y) * 2 * w + ox) * 3;
            out[at..at + w * 3].copy_from_slice(src);
        }
    }
    Frame::from_bgr(0, 2 * w as u32, 2 * h as u32, out, 0).unwrap()
}

fn recall(found: &[Detection], truth: &[BBox]) -> f64 {
    let hit = truth
        .iter()
        .filter(|t| found.iter().any(|d| d.bbox.iou(t) >= 0.5))
        .count();
    hit as f64 / truth.len() as f64
}

#[test]
fn tiling_recovers_small_people() {
    let opts = |tiling| DetectorOptions {
        threads: 2,
        low_score_floor: None,
        tiling: Some(tiling),
        ..DetectorOptions::default()
    };
    let plain = Detector::from_manifest_path(common::default_manifest(), &opts(None)).unwrap();
    let tiled = Detector::from_manifest_path(
        common::default_manifest(),
        &opts(Some(TilingSpec {
            rows: 2,
            cols: 2,
            overlap: 0.2,
            include_full: true,
        })),
    )
    .unwrap();
    let person = plain.manifest().class_id("person").unwrap();
    let frames = common::frames_at(&common::vtest(), &[100, 300, 500, 700]);
    // Reference: people found in each frame at its own resolution, moved
    // to their place in the mosaic.
    let (w, h) = (frames[0].width as f32, frames[0].height as f32);
    let mut truth = vec![];
    for (k, f) in frames.iter().enumerate() {
        let (ox, oy) = ((k % 2) as f32 * w, (k / 2) as f32 * h);
        for d in plain
            .detect(f)
            .unwrap()
            .into_iter()
            .filter(|d| d.class_id == person)
        {
            truth.push(BBox::new(
                d.bbox.x1 + ox,
                d.bbox.y1 + oy,
                d.bbox.x2 + ox,
                d.bbox.y2 + oy,
            ));
        }
    }
    assert!(truth.len() >= 15, "{} reference people", truth.len());
    let m = mosaic(&frames);
    let people = |d: Vec<Detection>| -> Vec<Detection> {
        d.into_iter().filter(|d| d.class_id == person).collect()
    };
    let r_plain = recall(&people(plain.detect(&m).unwrap()), &truth);
    let found = people(tiled.detect(&m).unwrap());
    let r_tiled = recall(&found, &truth);
    eprintln!("recall on the mosaic: full frame {r_plain:.2}, 2x2 tiles {r_tiled:.2} ({} reference people)", truth.len());
    assert!(r_tiled >= 0.8, "tiled recall {r_tiled:.2}");
    assert!(
        r_tiled >= r_plain + 0.3,
        "tiling gained too little: {r_plain:.2} → {r_tiled:.2}"
    );
    // Merging left no duplicates: at most one detection per reference person
    // (plus a few the slices see that the single frames did not).
    let dups = truth
        .iter()
        .filter(|t| found.iter().filter(|d| d.bbox.iou(t) >= 0.5).count() > 1)
        .count();
    assert_eq!(dups, 0, "duplicate detections after merging");
}
