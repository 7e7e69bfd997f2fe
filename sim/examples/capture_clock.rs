//! How far the eye's capture time of a live frame is from the moment the
//! picture was taken: receives a `tiancha sim` camera stream (its frames
//! carry their capture time burnt in, `--camera-*` with the sim's
//! default `burn_timestamp`) through the eye's own source and prints
//! `capture_unix_ms − burnt` per frame, then the median and p95.
//!
//! ```text
//! tiancha sim --camera-udp 127.0.0.1:5600 --camera-scenario examples/shangrao/scenario.toml &
//! cargo run --example capture_clock -- udp://127.0.0.1:5600 100
//! ```
use std::time::Duration;

use tiancha_inference::source::{FrameSource, SourceConfig, SourceItem};
use tiancha_sim::camera::timestamp::read_timestamp;

fn main() {
    let mut args = std::env::args().skip(1);
    let uri = args.next().unwrap_or_else(|| "udp://127.0.0.1:5600".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    let src = FrameSource::open(SourceConfig::new(uri)).expect("source");
    let mut d = Vec::new();
    while d.len() < n {
        match src.recv(Duration::from_secs(10)) {
            Some(SourceItem::Frame(f)) => {
                let mat = f.to_mat().expect("mat");
                if let Some(burnt) = read_timestamp(&mat) {
                    let e = f.capture_unix_ms - burnt;
                    println!("seq {} capture − burnt {e} ms", f.seq);
                    d.push(e);
                }
            }
            Some(SourceItem::End(r)) => panic!("ended: {r:?}"),
            Some(SourceItem::Event(e)) => eprintln!("{e:?}"),
            None => eprintln!("no frame for 10 s"),
        }
    }
    d.sort_unstable();
    println!(
        "frames {}: median {} ms, p95 {} ms",
        d.len(),
        d[d.len() / 2],
        d[d.len() * 95 / 100]
    );
}
