//! Choose the hotspot detector's palette fire defaults on the
//! `fire-thermal-drone` train and valid frames (never test): a grid over
//! `hot`, `grow`, `pad` and `close_px`, box recall and precision at IoU
//! 0.5, best F1 first.
//!
//! ```text
//! cargo run --workspace --example hotspot_sweep [-- DATA_DIR]
//! ```

#[path = "../tests/common/thermal.rs"]
mod thermal;

use std::path::PathBuf;

use tiancha_inference::hotspot::{HotspotBand, HotspotDetector};

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/fire-thermal-drone")
        });
    let (tune, test) = thermal::splits(&root);
    println!(
        "{} train+valid frames (one per source frame); {} held-out test frames are not used here",
        tune.len(),
        test.len()
    );
    let mut rows = vec![];
    for hot in [210.0, 220.0, 230.0] {
        for grow in [0.3, 0.35, 0.4, 0.45] {
            for pad in [0.05, 0.1, 0.15] {
                for close_px in [5, 7, 9] {
                    let band = HotspotBand {
                        hot,
                        grow,
                        pad,
                        close_px,
                        ..HotspotBand::palette_fire()
                    };
                    let det = HotspotDetector::new(vec![band]).unwrap();
                    let s = thermal::score(&det, &tune, 0.5);
                    let (r, p) = (s.recall(), s.precision());
                    let f1 = 2.0 * r * p / (r + p).max(1e-9);
                    rows.push((f1, r, p, hot, grow, pad, close_px));
                    eprintln!("hot {hot} grow {grow} pad {pad} close {close_px}: recall {r:.3} precision {p:.3}");
                }
            }
        }
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("| F1 | recall | precision | hot | grow | pad | close_px |");
    println!("|---|---|---|---|---|---|---|");
    for (f1, r, p, hot, grow, pad, close) in rows.iter().take(15) {
        println!("| {f1:.3} | {r:.3} | {p:.3} | {hot} | {grow} | {pad} | {close} |");
    }
}
