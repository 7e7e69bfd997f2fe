//! The hotspot detector's defaults on held-out drone thermal pictures
//! (issue 16's must-hold): `fire-thermal-drone` (../shared/data, CC BY
//! 4.0), its test frames that are not also in train or valid, one per
//! source frame. The defaults were chosen on train and valid
//! (`cargo run --workspace --example hotspot_sweep`).

mod common;

use tiancha_inference::hotspot::{HotspotBand, HotspotDetector};

#[test]
fn the_default_fire_band_finds_nine_in_ten_held_out_fires_at_eight_in_ten_precision() {
    let root = common::workspace_root().join("../shared/data/fire-thermal-drone");
    let (_, test) = common::thermal::splits(&root);
    let boxes: usize = test.iter().map(|l| l.boxes.len()).sum();
    assert!(
        test.len() >= 20 && boxes >= 20,
        "{} images, {boxes} boxes",
        test.len()
    );
    let det = HotspotDetector::new(vec![HotspotBand::palette_fire()]).unwrap();
    for iou in [0.5, 0.3] {
        let s = common::thermal::score(&det, &test, iou);
        println!(
            "held-out test, IoU {iou}: {} images, {boxes} fire boxes: recall {:.3}, precision {:.3} ({} found, {} false, {} missed)",
            s.images,
            s.recall(),
            s.precision(),
            s.true_pos,
            s.false_pos,
            s.missed
        );
        if iou == 0.5 {
            assert!(s.recall() >= 0.90, "recall {:.3}", s.recall());
            assert!(s.precision() >= 0.80, "precision {:.3}", s.precision());
        }
    }
}
