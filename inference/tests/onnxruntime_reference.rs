//! tract against an independent referee: Python onnxruntime runs the same
//! model on the same pre-processed vtest.avi frames. The eye reads the
//! model's raw CenterNet heads and decodes them itself; onnxruntime runs
//! the whole graph including its own in-graph decoder (`tower_0/detections`,
//! top-100). Every confident detection of one must be found in the other:
//! same class, boxes within 1 px, scores within 0.01.

mod common;

use std::process::Command;

use serde::Deserialize;
use tiancha_inference::{Detection, Detector, DetectorOptions};

#[derive(Deserialize)]
struct OrtOut {
    shape: Vec<usize>,
    data: Vec<f64>,
}

#[derive(Deserialize)]
struct OrtRun {
    outputs: Vec<OrtOut>,
    onnxruntime: String,
}

#[test]
fn tract_detections_equal_onnxruntime_on_vtest_frames() {
    let python = common::python();
    let vtest = common::vtest();
    let det = Detector::from_manifest_path(
        common::default_manifest(),
        &DetectorOptions {
            threads: 2,
            low_score_floor: None,
            ..DetectorOptions::default()
        },
    )
    .unwrap();
    let m = det.manifest().clone();
    let seqs = [0, 150, 300, 450, 600, 750];
    let frames = common::frames_at(&vtest, &seqs);
    let dir = tempfile::tempdir().unwrap();
    let mut pre = det.preprocessor();
    let mut files = vec![];
    let mut ours = vec![];
    for f in &frames {
        let p = det.prepare(&mut pre, f).unwrap();
        let input = p.inputs.into_iter().next().unwrap();
        let path = dir.path().join(format!("in_{}.f32", f.seq));
        let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, bytes).unwrap();
        files.push(path);
        ours.push(det.infer_raw(input).unwrap());
    }
    let out = Command::new(&python)
        .arg(common::workspace_root().join("inference/tests/support/ort_reference.py"))
        .arg(&m.model_path)
        .arg(&m.file.input.name)
        .arg("1,512,512,3")
        .arg("tower_0/detections")
        .arg("2")
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "onnxruntime reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: OrtRun = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run.outputs.len(), frames.len());
    let mut compared = 0;
    let mut worst = (0.0f32, 0.0f32);
    for ((f, o), mine) in frames.iter().zip(&run.outputs).zip(&ours) {
        assert_eq!(o.shape, [1, 100, 6]);
        let reference: Vec<Detection> = o
            .data
            .chunks(6)
            .map(|r| Detection {
                bbox: tiancha_inference::BBox::new(
                    r[0] as f32,
                    r[1] as f32,
                    r[2] as f32,
                    r[3] as f32,
                ),
                score: r[4] as f32,
                class_id: r[5].round() as usize,
            })
            .collect();
        // Confident on either side, away from the threshold by more than
        // the score tolerance (so a 0.001 difference cannot flip it).
        let margin = 0.011;
        let confident = |d: &Detection| d.score >= m.thresholds[d.class_id] + margin;
        for r in reference.iter().filter(|d| confident(d)) {
            let hit = mine.iter().find(|d| common::same_detection(d, r));
            assert!(
                hit.is_some(),
                "frame {}: onnxruntime found {r:?}, tract did not: {mine:?}",
                f.seq
            );
            let h = hit.unwrap();
            let db = [
                h.bbox.x1 - r.bbox.x1,
                h.bbox.y1 - r.bbox.y1,
                h.bbox.x2 - r.bbox.x2,
                h.bbox.y2 - r.bbox.y2,
            ]
            .iter()
            .fold(0.0f32, |a, b| a.max(b.abs()));
            worst = (worst.0.max(db), worst.1.max((h.score - r.score).abs()));
            compared += 1;
        }
        for d in mine.iter().filter(|d| confident(d)) {
            assert!(
                reference.iter().any(|r| common::same_detection(d, r)),
                "frame {}: tract found {d:?}, onnxruntime did not",
                f.seq
            );
        }
    }
    eprintln!(
        "compared {compared} detections with onnxruntime {}: largest box difference {:.2e} px, score {:.2e}",
        run.onnxruntime, worst.0, worst.1
    );
    assert!(
        compared >= 20,
        "only {compared} confident detections: the comparison says little"
    );
}
