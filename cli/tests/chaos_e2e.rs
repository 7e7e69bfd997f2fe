//! The chaos test (issue 8, "Faults"): `tiancha chaos`, the same code
//! path as `scripts/chaos`, runs the whole system as real processes (sim,
//! companion with 540 synthetic alerts, rumqttd standalone, ground station
//! on that external broker, dispute receiver) and injects every fault:
//! broker SIGKILL + restart, drone↔ground link cut for 5 minutes,
//! companion SIGKILL mid-spool (twice), ground station SIGKILL mid-ingest
//! and mid-delivery, dispute receiver down for 10 minutes, and the
//! companion's spool disk full (its own tmpfs, filled with a ballast; the
//! mount needs root, and the test fails — never skips — without it).
//!
//! Asserts, by id: raised = stored = delivered ≥ 500, no duplicate, no
//! missing id, every fault logged with its start and end, and the
//! companion said that its disk was full and refused (then took) alerts.
//! About 14 minutes of wall clock, little CPU: nextest runs it alongside
//! the rest of the suite (`.config/nextest.toml`).

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::tiancha_bin;

#[test]
fn chaos_every_alert_stored_and_delivered_exactly_once_under_every_fault() {
    // Under target/tmp: after a failure the logs and stores are still there.
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chaos_e2e");
    let _ = std::fs::create_dir_all(&keep);
    let summary_path = keep.join("summary.json");
    let _ = std::fs::remove_file(&summary_path);
    let status = Command::new(tiancha_bin())
        .args(["chaos", "--dir"])
        .arg(keep.join("run"))
        .arg("--summary-json")
        .arg(&summary_path)
        .status()
        .expect("running tiancha chaos");
    let text = std::fs::read_to_string(&summary_path).unwrap_or_else(|e| {
        panic!(
            "tiancha chaos ({status}) wrote no summary ({e}); see its output above and {}",
            keep.join("run").display()
        )
    });
    let s: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {s}"));
    let len = |k: &str| s[k].as_array().map_or(usize::MAX, |a| a.len());

    assert!(n("alerts_raised") >= 500, "{s}");
    assert_eq!(n("alerts_stored"), n("alerts_raised"), "{s}");
    assert_eq!(n("cases_delivered"), n("alerts_raised"), "{s}");
    assert_eq!(n("duplicates"), 0, "{s}");
    assert_eq!(len("missing_stored"), 0, "{s}");
    assert_eq!(len("missing_delivered"), 0, "{s}");
    assert_eq!(len("unexpected"), 0, "{s}");

    // Every fault happened, with a start and an end.
    let faults = s["faults"].as_array().expect("faults");
    for want in [
        "broker SIGKILL",
        "drone<->ground link cut",
        "companion SIGKILL #1",
        "companion SIGKILL #2",
        "ground station SIGKILL mid-ingest",
        "ground station SIGKILL mid-delivery",
        "dispute receiver down",
        "spool disk full",
    ] {
        let f = faults
            .iter()
            .find(|f| f["fault"].as_str().is_some_and(|x| x.starts_with(want)))
            .unwrap_or_else(|| panic!("fault {want} not injected: {s}"));
        let (a, b) = (f["start_s"].as_f64().unwrap(), f["end_s"].as_f64().unwrap());
        assert!(b > a, "{want}: start {a} end {b}");
    }
    let dur = |name: &str| {
        let f = faults
            .iter()
            .find(|f| f["fault"] == name)
            .unwrap_or_else(|| panic!("{name}: {s}"));
        f["end_s"].as_f64().unwrap() - f["start_s"].as_f64().unwrap()
    };
    assert!(dur("drone<->ground link cut") >= 299.0, "{s}");
    assert!(dur("dispute receiver down") >= 599.0, "{s}");

    // The full disk was felt and said.
    assert!(
        s["refusals"]["spool disk full"].as_u64().unwrap_or(0) > 0,
        "the spool never refused an alert for a full disk: {s}"
    );
    assert_eq!(s["disk_full_logged"], true, "{s}");
    assert_eq!(s["ok"], true, "{s}");
    assert!(status.success(), "tiancha chaos exited {status}");
}
