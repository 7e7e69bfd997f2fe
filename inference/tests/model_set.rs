//! Several models on one camera (`inference/src/model_set.rs`), with real
//! models: the extra model runs within its frame-rate budget and its
//! detections arrive in the merged class table.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tiancha_inference::model_set::{ExtraModel, ModelSchedule};
use tiancha_inference::*;

#[test]
fn an_extra_model_runs_within_its_budget_and_its_classes_come_after_the_primarys() {
    let opts = DetectorOptions {
        threads: 2,
        ..DetectorOptions::default()
    };
    let primary = Detector::from_manifest_path(common::default_manifest(), &opts).unwrap();
    // The same COCO model as the extra, at 2 frames a second.
    let extra = Arc::new(Detector::from_manifest_path(common::default_manifest(), &opts).unwrap());
    let mut s = ModelSchedule::new(
        primary.manifest(),
        vec![ExtraModel {
            detector: extra.clone(),
            fps: 2.0,
        }],
    )
    .unwrap();
    let n = primary.manifest().num_classes();
    assert_eq!(s.manifest().num_classes(), 2 * n);
    assert_eq!(s.manifest().class_name(n), "person");
    assert_eq!(s.manifest().people, vec![0, n]);

    let frame = common::frames_at(&common::vtest(), &[300]).remove(0);
    let t0 = Instant::now();
    let ms = |m: u64| t0 + Duration::from_millis(m);
    // Due at once, then not before 500 ms have passed.
    let (first, looked) = s.run_due(&frame, ms(0));
    assert!(!looked, "COCO has no hazard classes");
    let people = first
        .iter()
        .filter(|d| d.class_id == n && d.score >= 0.45)
        .count();
    assert!(people >= 5, "the extra found {people} people in frame 300");
    assert!(first.iter().all(|d| d.class_id >= n));
    // The same detections as the model alone, offset.
    let alone = extra.detect(&frame).unwrap();
    assert_eq!(first.len(), alone.len());
    assert!(first
        .iter()
        .zip(&alone)
        .all(|(a, b)| a.class_id == b.class_id + n
            && common::same_detection(
                &Detection {
                    class_id: b.class_id,
                    ..*a
                },
                b
            )));
    for m in [100, 250, 499] {
        assert!(s.run_due(&frame, ms(m)).0.is_empty(), "ran again at {m} ms");
    }
    assert!(
        !s.run_due(&frame, ms(500)).0.is_empty(),
        "did not run at 500 ms"
    );
    assert!(s.run_due(&frame, ms(900)).0.is_empty());
    assert_eq!(s.runs(), vec![(extra.manifest().file.name.clone(), 2)]);

    // A budget that is not a positive rate is refused with the model's name.
    let e = ModelSchedule::new(
        primary.manifest(),
        vec![ExtraModel {
            detector: extra,
            fps: 0.0,
        }],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("centernet_mnv3_coco80.toml") && e.contains("fps"),
        "{e}"
    );
}
