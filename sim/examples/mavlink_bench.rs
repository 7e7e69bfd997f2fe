//! Benchmark: mission upload over an impaired link, the tiancha bridge vs
//! pymavlink's classic loader, side by side on the same link and simulator.
//!
//! ```text
//! cargo run --release -p tiancha-sim --example mavlink_bench -- --reps 5
//! ```
//!
//! For each loss rate (each way) and mission size, each tool uploads to a
//! fresh simulator (ArduCopter-like, 10× time: its 1 s re-request is
//! 100 ms) through a seeded UDP impairment proxy (10 ms ± 5 ms one way).
//! Success means the tool reported success *and* the simulator holds the
//! mission (pymavlink's float items within 4e-6°). Prints a Markdown table.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use tiancha_firmware_bridge::{Bridge, BridgeConfig};
use tiancha_protocol::mission::{MissionItem, MissionType};
use tiancha_sim::{ImpairmentConfig, Sim, SimConfig, UdpProxy};

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Bridge,
    BridgeUnverified,
    Pymavlink,
}

impl Tool {
    fn name(&self) -> &'static str {
        match self {
            Tool::Bridge => "tiancha bridge (upload + read-back)",
            Tool::BridgeUnverified => "tiancha bridge (upload only)",
            Tool::Pymavlink => "pymavlink MAVWPLoader loop",
        }
    }
}

struct Run {
    ok: bool,
    secs: f64,
    /// Why the tool stopped (pymavlink's own words), for the log.
    why: String,
}

fn link(loss: f64, seed: u64) -> ImpairmentConfig {
    ImpairmentConfig {
        loss,
        delay_ms: 10.0,
        jitter_ms: 5.0,
        seed,
        ..Default::default()
    }
}

fn on_board_ok(sim: &Sim, sent: &[MissionItem], float_items: bool) -> bool {
    let l = sim.lists();
    if l.mission.len() != sent.len() {
        return false;
    }
    l.mission.iter().zip(sent).skip(1).all(|(a, b)| {
        if float_items {
            a.command == b.command
                && (a.lat_deg() - b.lat_deg()).abs() < 4e-6
                && (a.lon_deg() - b.lon_deg()).abs() < 4e-6
        } else {
            common::same_item(a, b)
        }
    })
}

async fn one(tool: Tool, items: &[MissionItem], loss: f64, seed: u64, speed: f64) -> Run {
    let sim = Sim::start(SimConfig {
        listen: "udpin:127.0.0.1:0".into(),
        speed,
        gps_fix_delay_s: 0.5,
        ..Default::default()
    })
    .await
    .unwrap();
    let proxy = UdpProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        sim.local_addr().unwrap(),
        link(loss, seed * 2 + 1),
        link(loss, seed * 2 + 2),
    )
    .await
    .unwrap();
    let addr = format!("udpout:{}", proxy.local_addr());
    match tool {
        Tool::Bridge | Tool::BridgeUnverified => {
            let b = Bridge::connect(&addr, BridgeConfig::default())
                .await
                .unwrap();
            if b.wait_for_autopilot(Duration::from_secs(30)).await.is_err() {
                return Run {
                    ok: false,
                    secs: f64::NAN,
                    why: "no heartbeat".into(),
                };
            }
            let t0 = Instant::now();
            let r = if tool == Tool::Bridge {
                b.upload(MissionType::Mission, items)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                b.upload_unverified(MissionType::Mission, items)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            let secs = t0.elapsed().as_secs_f64();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let why = match &r {
                Ok(()) => "ok".to_string(),
                Err(e) => e.clone(),
            };
            Run {
                ok: r.is_ok() && on_board_ok(&sim, items, false),
                secs,
                why,
            }
        }
        Tool::Pymavlink => {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("m.txt");
            common::write_wpl(&f, items);
            let py = common::python();
            let script = common::referee("pymavlink_upload.py");
            let out = tokio::task::spawn_blocking(move || {
                Command::new(py)
                    .arg(script)
                    .args(["--connect", &addr, "--mission", f.to_str().unwrap()])
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("{}"))
                .unwrap_or(serde_json::Value::Null);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let reported = v["ok"].as_bool().unwrap_or(false);
            Run {
                ok: reported && on_board_ok(&sim, items, true),
                secs: v["seconds"].as_f64().unwrap_or(f64::NAN),
                why: v["reason"].as_str().unwrap_or("no report").to_string(),
            }
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str, d: &str| -> String {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| d.to_string())
    };
    let reps: u64 = get("--reps", "5").parse().unwrap();
    let speed: f64 = get("--speed", "10").parse().unwrap();
    let sizes: Vec<usize> = get("--sizes", "100,700")
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let losses: Vec<f64> = get("--losses", "0,0.1,0.2")
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    println!("| tool | items | loss each way | success | median s (successful) | min s | max s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for &n in &sizes {
        let items = common::mission(n);
        for &loss in &losses {
            for tool in [Tool::Bridge, Tool::BridgeUnverified, Tool::Pymavlink] {
                let mut ok = 0;
                let mut times = vec![];
                for rep in 0..reps {
                    let r = one(tool, &items, loss, 1000 + rep, speed).await;
                    if r.ok {
                        ok += 1;
                        times.push(r.secs);
                    }
                    eprintln!(
                        "{} n={n} loss={loss} rep={rep}: ok={} {:.1}s ({})",
                        tool.name(),
                        r.ok,
                        r.secs,
                        r.why
                    );
                }
                let (mn, mx) = times
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &t| {
                        (a.min(t), b.max(t))
                    });
                let med = median(&mut times);
                let fmt = |x: f64| {
                    if x.is_finite() {
                        format!("{x:.1}")
                    } else {
                        "—".into()
                    }
                };
                println!(
                    "| {} | {n} | {:.0} % | {ok}/{reps} | {} | {} | {} |",
                    tool.name(),
                    loss * 100.0,
                    fmt(med),
                    fmt(mn),
                    fmt(mx)
                );
            }
        }
    }
}
