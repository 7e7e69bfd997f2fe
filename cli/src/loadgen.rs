//! `tiancha loadgen`: a companion channel publishing synthetic alerts and
//! telemetry through the real spool and MQTT client. Used by the
//! end-to-end tests, the chaos test and the benchmarks; also handy to see
//! a ground station fill up without a drone.
//!
//! Every accepted alert is appended to `--out` as a JSON line
//! `{"alert_id": ..., "snapshot_sha256": ...}` once the spool has it on
//! disk, so a test can check the ground's store against exactly what was
//! accepted.
//!
//! `--drones N` runs N such channels in one process (tokio tasks), e.g.
//! 200 drones with telemetry at 2 Hz each and 5 alerts/s overall for the
//! load run (`scripts/bench-load`).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use tiancha_companion::channel::{self, ChannelConfig};
use tiancha_companion::spool::SpoolConfig;
use tiancha_inference::pipeline::proc_status_kb;
use tiancha_protocol::{self as proto, mqtt::Endpoint, DroneId};
use uuid::Uuid;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, default_value = "loadgen-1")]
    drone_id: String,
    #[arg(long, default_value = "127.0.0.1")]
    mqtt_host: String,
    #[arg(long, default_value_t = 1883)]
    mqtt_port: u16,
    /// The spool database.
    #[arg(long, default_value = "var/loadgen/spool.db")]
    spool: PathBuf,
    /// How many alerts to raise.
    #[arg(long, default_value_t = 100)]
    alerts: u64,
    /// Alerts per second (0: as fast as the spool accepts them).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Snapshot size in bytes.
    #[arg(long, default_value_t = 2048)]
    snapshot_bytes: usize,
    /// Telemetry rate (Hz, 0 for none).
    #[arg(long, default_value_t = 0.0)]
    telemetry_hz: f64,
    /// Where to append the ids (and snapshot hashes) of accepted alerts.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seconds to wait for the ground's receipts of everything before
    /// giving up (exit status 1).
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Seconds an acked alert waits for its receipt before it is published
    /// again.
    #[arg(long, default_value_t = 10)]
    receipt_timeout_s: u64,
    /// Don't wait for receipts: exit once everything is spooled.
    #[arg(long)]
    no_wait: bool,
    /// Simulate this many drones in one process: each its own MQTT client
    /// and spool (`--spool` with `-NNN` before the extension), named
    /// `<drone-id>-NNN`. `--alerts` and `--rate` are totals, dealt out in
    /// turn; `--telemetry-hz` is per drone.
    #[arg(long, default_value_t = 1)]
    drones: u32,
    /// TLS to the broker: the CA (PEM) its certificate must chain to.
    #[arg(long)]
    mqtt_ca: Option<PathBuf>,
    /// With --mqtt-ca: client certificates `<dir>/<drone id>.pem` and
    /// `.key` (as `tiancha broker pki --client` writes them).
    #[arg(long, requires = "mqtt_ca")]
    mqtt_cert_dir: Option<PathBuf>,
}

/// A deterministic, JPEG-looking snapshot (valid SOI marker).
fn snapshot(n: usize, salt: u64) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0];
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < n.max(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

/// The drones' ids and spool files.
fn fleet(args: &Args) -> anyhow::Result<Vec<(DroneId, PathBuf)>> {
    if args.drones == 0 || args.drones > 10_000 {
        bail!("--drones {} must be within 1..=10000", args.drones);
    }
    if args.drones == 1 {
        return Ok(vec![(
            DroneId::new(args.drone_id.clone())?,
            args.spool.clone(),
        )]);
    }
    let stem = args
        .spool
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "spool".into());
    let ext = args
        .spool
        .extension()
        .map(|s| format!(".{}", s.to_string_lossy()))
        .unwrap_or_default();
    (1..=args.drones)
        .map(|i| {
            Ok((
                DroneId::new(format!("{}-{i:03}", args.drone_id))?,
                args.spool.with_file_name(format!("{stem}-{i:03}{ext}")),
            ))
        })
        .collect()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let fleet = fleet(&args)?;
    // What the process holds before the channel exists: the binary and the
    // shared libraries it is linked with (OpenCV alone maps ~150), which the
    // companion carries whatever it does. The channel's own cost is the
    // peak minus this.
    let baseline_kb = proc_status_kb(None, "VmRSS:");
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let mut drones = Vec::with_capacity(fleet.len());
        for (drone_id, spool_path) in fleet {
        let cfg = ChannelConfig {
            drone_id: drone_id.clone(),
            mqtt: Endpoint {
                host: args.mqtt_host.clone(),
                port: args.mqtt_port,
                tls: args.mqtt_ca.as_ref().map(|ca| proto::mqtt::ClientTls {
                    ca_file: ca.clone(),
                    client_cert_file: args.mqtt_cert_dir.as_ref().map(|d| d.join(format!("{drone_id}.pem"))),
                    client_key_file: args.mqtt_cert_dir.as_ref().map(|d| d.join(format!("{drone_id}.key"))),
                }),
                ..Endpoint::default()
            },
            spool_path: spool_path.clone(),
            spool: SpoolConfig {
                receipt_timeout: Duration::from_secs(args.receipt_timeout_s),
                max_receipt_backoff: Duration::from_secs(args.receipt_timeout_s * 4),
                ..SpoolConfig::default()
            },
            software_version: env!("CARGO_PKG_VERSION").into(),
        };
        cfg.mqtt.check_files().map_err(anyhow::Error::msg)?;
        let (handle, commands, task) = channel::start(cfg)?;
        drones.push((drone_id, handle, commands, task));
        }
        let n_drones = drones.len();
        // Telemetry: one task per drone, phases spread over the period.
        let mut tele_tasks = Vec::new();
        if args.telemetry_hz > 0.0 {
            let period = Duration::from_secs_f64(1.0 / args.telemetry_hz);
            for (k, (id, h, _, _)) in drones.iter().enumerate() {
                let (id, h) = (id.clone(), h.clone());
                let phase = period.mul_f64(k as f64 / n_drones as f64);
                tele_tasks.push(tokio::spawn(async move {
                    tokio::time::sleep(phase).await;
                    let mut tick = tokio::time::interval(period);
                    let mut i = 0u64;
                    loop {
                        tick.tick().await;
                        h.set_telemetry(telemetry(&id, i));
                        i += 1;
                    }
                }));
            }
        }
        let mut out = match &args.out {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening {}", p.display()))?,
            ),
            None => None,
        };
        let t0 = Instant::now();
        // Submit concurrently so the spool can group-commit.
        let mut inflight = tokio::task::JoinSet::new();
        for i in 0..args.alerts {
            if args.rate > 0.0 {
                let due = t0 + Duration::from_secs_f64(i as f64 / args.rate);
                tokio::time::sleep_until(due.into()).await;
            }
            let (drone_id, handle, _, _) = &drones[(i % n_drones as u64) as usize];
            let a = alert(drone_id, i, args.snapshot_bytes);
            let h = handle.clone();
            inflight.spawn(async move {
                let r = h.submit_alert(&a).await;
                (a, r)
            });
            while inflight.len() >= 256 {
                record(inflight.join_next().await, &mut out)?;
            }
        }
        while !inflight.is_empty() {
            record(inflight.join_next().await, &mut out)?;
        }
        let accepted_in = t0.elapsed();
        eprintln!(
            "loadgen: {} alerts accepted into the spool in {:.2} s ({:.0}/s)",
            args.alerts,
            accepted_in.as_secs_f64(),
            args.alerts as f64 / accepted_in.as_secs_f64().max(1e-9)
        );
        let total = |drones: &[(DroneId, channel::ChannelHandle, _, _)]| {
            let mut t = channel::ChannelStats::default();
            for (_, h, _, _) in drones {
                let s = h.stats();
                t.spool.depth += s.spool.depth;
                t.spool.inflight += s.spool.inflight;
                t.spool.acked += s.spool.acked;
                t.spool.republished += s.spool.republished;
                t.connects += s.connects;
                t.telemetry_sent += s.telemetry_sent;
                t.telemetry_skipped += s.telemetry_skipped;
            }
            t
        };
        let stop = |drones: Vec<(DroneId, channel::ChannelHandle, _, tokio::task::JoinHandle<()>)>| async move {
            for (_, h, _, _) in &drones {
                h.shutdown();
            }
            for (_, _, _, t) in drones {
                let _ = t.await;
            }
        };
        if args.no_wait {
            tele_tasks.iter().for_each(|t| t.abort());
            stop(drones).await;
            return Ok(());
        }
        // The channels publish their stats every 250 ms: a reading taken
        // sooner after the last submission may predate it and say "empty".
        tokio::time::sleep(Duration::from_millis(300)).await;
        let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
        loop {
            let s = total(&drones);
            if s.spool.depth == 0 {
                eprintln!(
                    "loadgen: all delivered and receipted after {:.2} s ({} drones, {} connects, {} republished; telemetry {} sent, {} skipped behind alerts)",
                    t0.elapsed().as_secs_f64(),
                    n_drones,
                    s.connects,
                    s.spool.republished,
                    s.telemetry_sent,
                    s.telemetry_skipped
                );
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out with {} entries still in the spools ({} in flight, {} acked)",
                    s.spool.depth,
                    s.spool.inflight,
                    s.spool.acked
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tele_tasks.iter().for_each(|t| t.abort());
        stop(drones).await;
        if let (Some(peak), Some(base)) = (proc_status_kb(None, "VmHWM:"), baseline_kb) {
            eprintln!(
                "loadgen: peak RSS {:.1} MB (at start {:.1} MB; channel +{:.1} MB)",
                peak as f64 / 1024.0,
                base as f64 / 1024.0,
                peak.saturating_sub(base) as f64 / 1024.0
            );
        }
        Ok(())
    })
}

/// A kB figure of this process from /proc/self/status (`VmRSS:`, `VmHWM:`).
type Joined = Option<
    Result<
        (
            proto::Alert,
            Result<channel::Submitted, channel::ChannelError>,
        ),
        tokio::task::JoinError,
    >,
>;

fn record(j: Joined, out: &mut Option<std::fs::File>) -> anyhow::Result<()> {
    let Some(j) = j else { return Ok(()) };
    let (a, r) = j?;
    r.with_context(|| format!("alert {} was refused", a.alert_id))?;
    if let Some(f) = out {
        let sha = hex::encode(Sha256::digest(
            &a.snapshot
                .as_ref()
                .expect("loadgen alerts have snapshots")
                .jpeg,
        ));
        let line = serde_json::json!({"alert_id": a.alert_id, "snapshot_sha256": sha});
        f.write_all(format!("{line}\n").as_bytes())?;
        f.flush()?;
    }
    Ok(())
}

fn alert(drone: &DroneId, i: u64, snapshot_bytes: usize) -> proto::Alert {
    let now = proto::unix_ms(std::time::SystemTime::now());
    let (lat, lon) = (
        28.45 + (i % 100) as f64 * 1e-4,
        117.94 + (i / 100 % 100) as f64 * 1e-4,
    );
    proto::Alert {
        schema: proto::SCHEMA_VERSION,
        alert_id: Uuid::now_v7(),
        drone_id: drone.clone(),
        category: proto::Category::ALL[(i % 4) as usize],
        confidence: 0.5 + (i % 50) as f64 / 100.0,
        t_first_unix_ms: now - 30_000,
        t_unix_ms: now,
        location_status: proto::LocationStatus::Geotagged,
        location: Some(proto::Geotag {
            lat_deg: lat,
            lon_deg: lon,
            alt_m: Some(70.0),
            sigma: proto::Ellipse {
                semi_major_m: 3.0,
                semi_minor_m: 2.0,
                orientation_deg: 30.0,
            },
        }),
        observer: None,
        person_count: Some((i % 20) as u32 + 3),
        extent_m: Some(12.0),
        tracks: vec![],
        rule: proto::RuleInfo {
            name: "loadgen".into(),
            detail: format!("synthetic alert #{i}"),
        },
        zone: None,
        mission_id: None,
        snapshot: Some(proto::Snapshot {
            width: 64,
            height: 48,
            jpeg: snapshot(snapshot_bytes, i + 1),
        }),
    }
}

fn telemetry(drone: &DroneId, i: u64) -> proto::Telemetry {
    proto::Telemetry {
        schema: proto::SCHEMA_VERSION,
        drone_id: drone.clone(),
        t_unix_ms: proto::unix_ms(std::time::SystemTime::now()),
        position: proto::Position {
            lat_deg: 28.45 + (i % 1000) as f64 * 1e-6,
            lon_deg: 117.94,
            alt_m: 130.0,
            alt_rel_m: Some(60.0),
        },
        velocity_ned_mps: [5.0, 0.0, 0.0],
        attitude: proto::Attitude {
            roll_deg: 0.0,
            pitch_deg: -3.0,
            yaw_deg: 0.0,
        },
        gimbal: None,
        battery: Some(proto::Battery {
            remaining_pct: 80.0,
            voltage_v: Some(15.8),
            current_a: None,
        }),
        gps: None,
        mode: "AUTO".into(),
        armed: true,
        in_air: true,
        mission: None,
        home: None,
    }
}
