//! Helpers shared by the bridge's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tiancha_firmware_bridge::{Bridge, BridgeConfig, Event};
use tiancha_protocol::mission::{cmd, frame, MissionItem};
use tiancha_sim::{Sim, SimConfig};
use tokio::sync::broadcast;

pub const HOME: (f64, f64, f64) = (28.45, 117.94, 70.0);

/// The Python with pymavlink: `$TIANCHA_PYTHON`, else `<workspace>/.venv/bin/python`.
/// Fails (never skips) when missing.
pub fn python() -> PathBuf {
    let p = match std::env::var_os("TIANCHA_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join(".venv/bin/python"),
    };
    assert!(
        p.exists(),
        "the pymavlink referee needs Python at {} — set TIANCHA_PYTHON or run `scripts/dev setup`",
        p.display()
    );
    let ok = Command::new(&p)
        .args(["-c", "import pymavlink"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{} cannot import pymavlink — run `scripts/dev setup`",
        p.display()
    );
    p
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate is in the workspace")
        .to_path_buf()
}

pub fn referee(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/referees")
        .join(name)
}

/// A UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A simulator on a fresh UDP port, `speed`× real time.
pub async fn sim(speed: f64, tweak: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut cfg = SimConfig {
        listen: "udpin:127.0.0.1:0".into(),
        speed,
        gps_fix_delay_s: 1.0,
        ..SimConfig::default()
    };
    tweak(&mut cfg);
    Sim::start(cfg).await.expect("simulator starts")
}

/// A bridge connected to `sim`, with the autopilot found.
pub async fn bridge_to(sim: &Sim, cfg: BridgeConfig) -> Bridge {
    let b = Bridge::connect(&sim.client_address(), cfg)
        .await
        .expect("bridge connects");
    b.wait_for_autopilot(Duration::from_secs(10))
        .await
        .expect("autopilot found");
    b
}

/// Wait for an event matching `f`, up to `timeout`.
pub async fn wait_event<T>(
    rx: &mut broadcast::Receiver<Event>,
    timeout: Duration,
    mut f: impl FnMut(&Event) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(timeout, async {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if let Some(t) = f(&e) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => std::future::pending::<()>().await,
            }
        }
    })
    .await
    .ok()
}

/// A `n`-waypoint ArduPilot mission (home placeholder first) on a circle of
/// `radius_m` around home, at 30 m.
pub fn waypoint_loop(n: usize, radius_m: f64) -> Vec<MissionItem> {
    let (lat0, lon0, alt0) = HOME;
    let mut home = MissionItem::nav(cmd::NAV_WAYPOINT, lat0, lon0, alt0 as f32);
    home.frame = frame::GLOBAL;
    let mut v = vec![home];
    let m_per_deg = 111_320.0;
    for k in 0..n {
        let a = k as f64 / n as f64 * std::f64::consts::TAU;
        v.push(MissionItem::nav(
            cmd::NAV_WAYPOINT,
            lat0 + radius_m * a.cos() / m_per_deg,
            lon0 + radius_m * a.sin() / (m_per_deg * lat0.to_radians().cos()),
            30.0,
        ));
    }
    v
}
