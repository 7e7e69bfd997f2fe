//! Bring your own model: the hazard-only YOLOv8 manifest written in
//! docs/models.md, taken from the page as it stands, runs in `tiancha
//! detect` with no flag but the model (no people class needed, no gathering
//! rule forced on it, fire alerts out, and each frame's detections with its
//! file name, `--frames-out`), and as the companion's camera model with
//! nothing else set. The ONNX graph is a test fixture with the
//! YOLOv8 output layout (`output0` [1, 4 + 2, N]) whose fire score rises
//! with the frame's brightness (inference/tests/common); the manifest is
//! the documentation's, byte for byte.

#[path = "../../inference/tests/common/mod.rs"]
mod fixtures;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tiancha_inference::opencv::core::{Mat, Scalar, Vector, CV_8UC3};
use tiancha_inference::opencv::imgcodecs;

/// The manifest between the page's markers.
fn documented_manifest() -> String {
    let page = std::fs::read_to_string(fixtures::workspace_root().join("docs/models.md")).unwrap();
    let start = page
        .find("<!-- yolov8-hazard-manifest -->")
        .expect("docs/models.md has the hazard-only YOLOv8 manifest");
    let end = page[start..]
        .find("<!-- /yolov8-hazard-manifest -->")
        .unwrap()
        + start;
    let block = &page[start..end];
    let body = block.split("```toml").nth(1).unwrap();
    body.split("```").next().unwrap().to_string()
}

/// The documented manifest and the fixture model in `dir`; returns the
/// manifest's path.
fn documented_model(dir: &Path) -> PathBuf {
    let manifest = documented_manifest();
    assert!(
        !manifest.contains("people"),
        "the page's manifest names no people"
    );
    std::fs::write(dir.join("fire_yolov8n.toml"), &manifest).unwrap();
    // Two candidates in 640×640 letterbox space: a fire in the middle whose
    // score is 0.1 + 0.8 × mean brightness, and a faint smoke (0.05).
    let n = 2;
    let (mut base, mut gain) = (vec![0.0f32; 6 * n], vec![0.0f32; 6 * n]);
    for (j, (cx, cy, w, h, smoke, fire)) in [
        (320.0, 320.0, 80.0, 60.0, 0.0, 0.1),
        (100.0, 100.0, 40.0, 40.0, 0.05, 0.0),
    ]
    .into_iter()
    .enumerate()
    {
        for (r, v) in [cx, cy, w, h, smoke, fire].into_iter().enumerate() {
            base[r * n + j] = v;
        }
        if j == 0 {
            gain[5 * n] = 0.8;
        }
    }
    let model = fixtures::mean_gain_model(640, 640, &[1, 6, n as i64], base, gain);
    std::fs::write(dir.join("fire_yolov8n.onnx"), model).unwrap();
    dir.join("fire_yolov8n.toml")
}

#[test]
fn the_documented_hazard_only_yolov8_manifest_runs_in_detect_with_no_extra_flags() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = documented_model(dir.path());
    // Eight bright frames (a 640×480 camera: letterboxed into 640×640).
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for i in 0..8 {
        let img = Mat::new_rows_cols_with_default(480, 640, CV_8UC3, Scalar::all(235.0)).unwrap();
        let p = frames.join(format!("f{i:02}.png"));
        assert!(imgcodecs::imwrite(p.to_str().unwrap(), &img, &Vector::new()).unwrap());
    }
    let (events, per_frame) = (
        dir.path().join("events.jsonl"),
        dir.path().join("frames.jsonl"),
    );
    let out = Command::new(support::tiancha_bin())
        .arg("detect")
        .arg(&frames)
        .arg("--model")
        .arg(&manifest)
        .arg("--out")
        .arg(&events)
        .arg("--frames-out")
        .arg(&per_frame)
        .arg("--quiet")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tiancha detect failed:\n{log}");

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&per_frame)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8, "one line per frame");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["file"], format!("f{i:02}.png"));
        let fire: Vec<&serde_json::Value> = l["detections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["class"] == "fire" && d["above_threshold"] == true)
            .collect();
        assert_eq!(fire.len(), 1, "{l}");
        // Back in the frame's pixels: (320, 320) in the letterbox is the
        // middle of the 640×480 frame.
        let b: Vec<f64> = fire[0]["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(((b[0] + b[2]) / 2.0 - 320.0).abs() < 1.0, "{b:?}");
        assert!(((b[1] + b[3]) / 2.0 - 240.0).abs() < 1.0, "{b:?}");
    }
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let alerts: Vec<&serde_json::Value> = events.iter().filter(|e| e["type"] == "alert").collect();
    assert_eq!(alerts.len(), 1, "one fire alert: {events:?}");
    assert_eq!(alerts[0]["data"]["category"], "fire");
    assert!(
        !log.contains("no people classes"),
        "no gathering rule was forced on a hazard-only model:\n{log}"
    );
}

#[test]
fn the_documented_hazard_only_yolov8_manifest_is_a_companion_camera_model_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = documented_model(dir.path());
    let cfg = dir.path().join("companion.toml");
    std::fs::write(
        &cfg,
        format!(
            "drone_id = \"sr-fire\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt}\n[spool]\npath = \"{spool}\"\n\
             [autopilot]\naddress = \"udpin:127.0.0.1:{udp}\"\n[camera]\nuri = \"test://ball\"\n\
             model_manifest = \"{manifest}\"\nwidth = 640\nheight = 480\nhfov_deg = 60.0\nground_alt_m = 0.0\n",
            mqtt = support::free_port(),
            udp = support::free_port(),
            spool = dir.path().join("spool.db").display(),
            manifest = manifest.display(),
        ),
    )
    .unwrap();
    let mut p = support::Proc::tiancha(
        "companion",
        dir.path(),
        &["companion", "--config", cfg.to_str().unwrap()],
    );
    support::wait_for("the eye running", Duration::from_secs(60), || {
        let log = std::fs::read_to_string(&p.log).unwrap_or_default();
        assert!(
            !log.contains("the eye stopped"),
            "the eye refused a hazard-only model:\n{log}"
        );
        assert!(p.is_running(), "the companion stopped:\n{}", p.log_tail(40));
        log.contains("eye running").then_some(())
    });
    p.kill();
}
