//! The `fire-thermal-drone` data set (../shared/data, CC BY 4.0) as the
//! hotspot detector is scored on it: de-duplicated splits and box recall
//! and precision at an IoU.
//!
//! The set is a Roboflow export: `cap_N_jpg.rf.<hash>.jpg`, the train
//! split three augmented copies of each source frame, and some frames in
//! two splits (its SOURCE.md). One image per source frame (the stem
//! before `.rf.`), and a test frame whose stem is also in train or valid
//! is not held out: it is dropped from test.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tiancha_inference::hotspot::{heat_from_palette, HotspotDetector};
use tiancha_inference::opencv::core::Mat;
use tiancha_inference::opencv::imgcodecs;
use tiancha_inference::opencv::prelude::*;
use tiancha_inference::BBox;

pub struct Labelled {
    pub path: PathBuf,
    pub stem: String,
    /// The picture as read (8-bit BGR).
    pub image: Mat,
    /// Fire boxes in pixels.
    pub boxes: Vec<BBox>,
}

fn stem(p: &Path) -> String {
    let n = p.file_name().unwrap().to_string_lossy();
    n.split(".rf.").next().unwrap().to_string()
}

/// The files of a folder of the shared data sets (../shared/data), sorted;
/// a missing folder is a panic that says where the data sets belong.
pub fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the shared data sets sit beside the checkout)",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// The images of one split (`train`, `valid`, `test`), one per stem.
pub fn split(root: &Path, name: &str) -> Vec<Labelled> {
    let files = sorted_files(&root.join(name).join("images"));
    let mut seen = BTreeSet::new();
    let mut out = vec![];
    for path in files {
        let s = stem(&path);
        if !seen.insert(s.clone()) {
            continue;
        }
        let img = imgcodecs::imread_def(path.to_str().unwrap()).unwrap();
        let (w, h) = (img.cols() as f32, img.rows() as f32);
        let label = root
            .join(name)
            .join("labels")
            .join(path.with_extension("txt").file_name().unwrap());
        let text = std::fs::read_to_string(&label).unwrap_or_default();
        let boxes = text
            .lines()
            .filter_map(|l| {
                let v: Vec<f32> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                (v.len() == 5).then(|| {
                    BBox::new(
                        (v[1] - v[3] / 2.0) * w,
                        (v[2] - v[4] / 2.0) * h,
                        (v[1] + v[3] / 2.0) * w,
                        (v[2] + v[4] / 2.0) * h,
                    )
                })
            })
            .collect();
        out.push(Labelled {
            path,
            stem: s,
            image: img,
            boxes,
        });
    }
    out
}

/// Train and valid (one per stem), and the held-out test frames (one per
/// stem, none whose stem is in train or valid).
pub fn splits(root: &Path) -> (Vec<Labelled>, Vec<Labelled>) {
    let mut tune = split(root, "train");
    let stems: BTreeSet<String> = tune.iter().map(|l| l.stem.clone()).collect();
    tune.extend(
        split(root, "valid")
            .into_iter()
            .filter(|l| !stems.contains(&l.stem)),
    );
    let stems: BTreeSet<String> = tune.iter().map(|l| l.stem.clone()).collect();
    let test = split(root, "test")
        .into_iter()
        .filter(|l| !stems.contains(&l.stem))
        .collect();
    (tune, test)
}

fn iou(a: &BBox, b: &BBox) -> f32 {
    let w = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let h = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let i = w * h;
    let u = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - i;
    if u > 0.0 {
        i / u
    } else {
        0.0
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Score {
    pub images: usize,
    pub true_pos: usize,
    pub false_pos: usize,
    pub missed: usize,
}

impl Score {
    pub fn recall(&self) -> f64 {
        self.true_pos as f64 / (self.true_pos + self.missed).max(1) as f64
    }
    pub fn precision(&self) -> f64 {
        self.true_pos as f64 / (self.true_pos + self.false_pos).max(1) as f64
    }
}

/// Every detection matched greedily (in the detector's order) to the
/// unmatched label box it overlaps most, a match when IoU ≥ `min_iou`.
pub fn score(det: &HotspotDetector, images: &[Labelled], min_iou: f32) -> Score {
    let mut s = Score::default();
    for l in images {
        let heat = heat_from_palette(&l.image).unwrap();
        let found = det.detect(&heat).unwrap();
        let mut used = vec![false; l.boxes.len()];
        for d in &found {
            let best = l
                .boxes
                .iter()
                .enumerate()
                .filter(|(j, _)| !used[*j])
                .map(|(j, b)| (j, iou(&d.bbox, b)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((j, v)) if v >= min_iou => {
                    used[j] = true;
                    s.true_pos += 1;
                }
                _ => s.false_pos += 1,
            }
        }
        s.missed += used.iter().filter(|u| !**u).count();
        s.images += 1;
    }
    s
}
