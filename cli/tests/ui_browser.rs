//! The web UI in real headless Chromium (Debian's /usr/bin/chromium,
//! driven by playwright-core from `tests/ui/ui.test.mjs`): log in as an
//! operator, see an alert published over MQTT on the feed and the map
//! within 1 s, confirm it, the test's dispute system gets the case exactly
//! once with a valid signature, a status callback shows on the timeline,
//! a command and a mission launch show the drone's results, and a
//! dispute-centre user sees the case but cannot launch (the API refuses
//! too). The ground station is the real `tiancha` binary with its
//! embedded broker; the drone is a small MQTT test double.
//!
//! `TIANCHA_SCREENSHOT_DIR=docs/screenshots` writes the screenshots there.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

const PW: &str = "operator password 1";
const SECRET: &str = "ui-test-route-secret-0123";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn tiancha(args: &[&str], env: &[(&str, &str)]) {
    let out = Command::new(tiancha_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tiancha {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn operator_and_dispute_centre_in_headless_chromium() {
    let ui = workspace().join("tests/ui");
    assert!(
        ui.join("node_modules/playwright-core").exists(),
        "tests/ui/node_modules is missing: run `scripts/dev setup` (npm ci in tests/ui)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is not installed (scripts/dev setup)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mqtt, http, rport) = (free_port(), free_port(), free_port());
    let conf = dir.join("gs.toml");
    let ex = workspace().join("examples/ground-station");
    std::fs::write(
        &conf,
        format!(
            r#"data_dir = "{data}"
instance = "ui-test"
[http]
listen = "127.0.0.1:{http}"
public_url = "http://localhost:{http}/"
[mqtt]
port = {mqtt}
[broker]
embedded = true
listen = "127.0.0.1:{mqtt}"
[map]
center = [28.452, 117.945]
zoom = 15
layers = ["{ex}/layers.geojson"]
grid = "{ex}/grid.geojson"
[[dispatch.routes]]
name = "governance"
url = "http://127.0.0.1:{rport}/cases"
secret = "{SECRET}"
default = true
[dispatch.retry]
initial_backoff_ms = 200
max_backoff_ms = 1000
[missions.vehicle]
endurance_min = 20.0
reserve_min = 5.0
"#,
            data = dir.join("gs-data").display(),
            ex = ex.display(),
        ),
    )
    .unwrap();
    let c = conf.to_str().unwrap();
    for (name, role) in [("op1", "operator"), ("centre1", "dispute-centre")] {
        tiancha(
            &[
                "ground-station",
                "--config",
                c,
                "user",
                "add",
                name,
                "--role",
                role,
                "--password-env",
                "PW",
            ],
            &[("PW", PW)],
        );
    }
    let mut gs = Proc::tiancha("ground-station", dir, &["ground-station", "--config", c]);
    wait_port(http, Duration::from_secs(20));
    wait_port(mqtt, Duration::from_secs(20));
    wait_for("ingest connected", Duration::from_secs(10), || {
        std::fs::read_to_string(&gs.log)
            .ok()
            .filter(|l| l.contains("ingest connected"))
    });
    let drone = DroneDouble::start(mqtt, "sr-07");
    let shots = std::env::var("TIANCHA_SCREENSHOT_DIR")
        .map(|d| workspace().join(d))
        .unwrap_or_else(|_| dir.join("shots"));
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(ui.join("ui.test.mjs"))
        .current_dir(&ui)
        .env("GS_URL", format!("http://localhost:{http}"))
        .env("MQTT_PORT", mqtt.to_string())
        .env("RECEIVER_PORT", rport.to_string())
        .env("ROUTE_SECRET", SECRET)
        .env("PASSWORD", PW)
        .env("DRONE_ID", "sr-07")
        .env("SCREENSHOT_DIR", &shots)
        .output()
        .expect("node is needed (scripts/dev setup installs nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}\nground station log:\n{}",
        gs.log_tail(40)
    );
    assert!(
        drone.commands_answered() >= 2,
        "the drone double answered pause and launch"
    );
    for f in ["map.png", "feed.png", "case-desk.png", "mission.png"] {
        assert!(
            std::fs::metadata(shots.join(f))
                .map(|m| m.len() > 10_000)
                .unwrap_or(false),
            "{f} written"
        );
    }
    assert!(gs.is_running());
}
