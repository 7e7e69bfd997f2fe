//! `[synthetic_alerts]`: a **load and chaos source, not a detector**. It
//! raises made-up alerts at a fixed rate so that the channel, the ground
//! station and dispatch can be tested with more alerts than the real eye
//! can produce on a small machine (the chaos test, `tiancha chaos`, needs
//! 500+). Never enable it on a drone that flies for real: every alert it
//! raises says so (`rule.name = "synthetic"`).
//!
//! The alerts enter exactly where the eye's do: [`ChannelHandle::submit_alert`]
//! (spool on disk, then MQTT). Each is geotagged at the drone's current
//! position (from the autopilot link) plus a distinct offset on a 3 m grid,
//! so no two alerts share a place, and each has its own UUID v7.
//!
//! The source keeps a ledger (JSON lines, `ledger`): `attempt` before an
//! alert is offered to the spool, then `accepted` or `refused` (with the
//! reason). A refused alert (spool full, spool disk full) is offered again,
//! same id and time, every `retry_s` until the spool takes it, so all
//! `count` alerts are eventually raised. After a restart the source reads
//! its ledger: alerts accepted before are not raised again, alerts
//! attempted without an outcome (killed in between) are offered again with
//! their id (the spool and the ground de-duplicate by id), and it carries
//! on until `count` alerts have been accepted. "Raised" means exactly the
//! ids with an `accepted` line.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tiancha_firmware_bridge::Bridge;
use tiancha_protocol::{self as proto, Category};
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::channel::{ChannelHandle, Submitted};
use crate::metrics::Metrics;

/// `[synthetic_alerts]` (load / chaos testing only; see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticAlertsSection {
    /// New alerts per second.
    pub rate_hz: f64,
    /// How many alerts to raise in all (across restarts, from the ledger).
    pub count: u64,
    /// The ledger file (JSON lines). Keep it off the spool's disk.
    pub ledger: PathBuf,
    /// Seconds before a refused alert is offered again.
    #[serde(default = "default_retry_s")]
    pub retry_s: f64,
    /// Snapshot size in bytes (a JPEG-looking blob; 0 for none).
    #[serde(default = "default_snapshot_bytes")]
    pub snapshot_bytes: usize,
    #[serde(default = "default_category")]
    pub category: Category,
}

fn default_retry_s() -> f64 {
    2.0
}
fn default_snapshot_bytes() -> usize {
    2048
}
fn default_category() -> Category {
    Category::Gathering
}

impl SyntheticAlertsSection {
    pub fn check(&self) -> Result<(), String> {
        if !(self.rate_hz > 0.0 && self.rate_hz <= 1000.0) {
            return Err(format!(
                "synthetic_alerts.rate_hz = {} must be within (0, 1000]",
                self.rate_hz
            ));
        }
        if self.count == 0 || self.count > 1_000_000 {
            return Err("synthetic_alerts.count must be within 1..=1000000".into());
        }
        if !(self.retry_s >= 0.1 && self.retry_s <= 3600.0) {
            return Err("synthetic_alerts.retry_s must be within 0.1..=3600".into());
        }
        if self.snapshot_bytes > 1_000_000 {
            return Err("synthetic_alerts.snapshot_bytes must be at most 1000000".into());
        }
        if self.ledger.as_os_str().is_empty() {
            return Err("synthetic_alerts.ledger must be a file path".into());
        }
        Ok(())
    }
}

/// One ledger line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum LedgerLine {
    Attempt {
        n: u64,
        alert_id: Uuid,
        t_unix_ms: i64,
        lat_deg: f64,
        lon_deg: f64,
        alt_m: f64,
    },
    Accepted {
        n: u64,
        alert_id: Uuid,
        t_unix_ms: i64,
        accepted_unix_ms: i64,
        /// The spool already held this id (a retry after a restart).
        duplicate: bool,
    },
    Refused {
        n: u64,
        alert_id: Uuid,
        t_unix_ms: i64,
        refused_unix_ms: i64,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Pending {
    n: u64,
    id: Uuid,
    t_unix_ms: i64,
    lat_deg: f64,
    lon_deg: f64,
    alt_m: f64,
}

/// What a ledger says: accepted numbers, alerts still to be offered
/// (attempted or refused, never accepted), the next new number.
#[derive(Debug, Default, PartialEq)]
pub struct LedgerState {
    accepted: BTreeSet<u64>,
    pending: BTreeMap<u64, Pending>,
    next_n: u64,
}

impl LedgerState {
    /// Read a ledger; a torn last line (killed mid-write) is ignored.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let mut st = LedgerState::default();
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(st),
            Err(e) => return Err(e),
        };
        for line in std::io::BufReader::new(f).lines() {
            let line = line?;
            let Ok(l) = serde_json::from_str::<LedgerLine>(&line) else {
                continue;
            };
            st.apply(&l);
        }
        Ok(st)
    }

    fn apply(&mut self, l: &LedgerLine) {
        match *l {
            LedgerLine::Attempt {
                n,
                alert_id,
                t_unix_ms,
                lat_deg,
                lon_deg,
                alt_m,
            } => {
                self.next_n = self.next_n.max(n + 1);
                if !self.accepted.contains(&n) {
                    self.pending.insert(
                        n,
                        Pending {
                            n,
                            id: alert_id,
                            t_unix_ms,
                            lat_deg,
                            lon_deg,
                            alt_m,
                        },
                    );
                }
            }
            LedgerLine::Accepted { n, .. } => {
                self.accepted.insert(n);
                self.pending.remove(&n);
            }
            LedgerLine::Refused { .. } => {}
        }
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.len() as u64
    }
}

/// The offset of alert `n` from the drone, metres (north, east): a 3 m
/// grid, distinct for the first 1600 numbers and then repeating in time.
fn offset_m(n: u64) -> (f64, f64) {
    let k = n % 1600;
    (
        ((k % 40) as f64 - 20.0) * 3.0,
        ((k / 40) as f64 - 20.0) * 3.0,
    )
}

/// A deterministic, JPEG-looking snapshot (valid SOI marker).
fn snapshot(bytes: usize, salt: u64) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0];
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < bytes.max(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

fn alert(cfg: &SyntheticAlertsSection, drone: &proto::DroneId, p: &Pending) -> proto::Alert {
    proto::Alert {
        schema: proto::SCHEMA_VERSION,
        alert_id: p.id,
        drone_id: drone.clone(),
        category: cfg.category,
        confidence: 0.9,
        t_first_unix_ms: p.t_unix_ms,
        t_unix_ms: p.t_unix_ms,
        location_status: proto::LocationStatus::Geotagged,
        location: Some(proto::Geotag {
            lat_deg: p.lat_deg,
            lon_deg: p.lon_deg,
            alt_m: Some(p.alt_m),
            sigma: proto::Ellipse {
                semi_major_m: 1.0,
                semi_minor_m: 1.0,
                orientation_deg: 0.0,
            },
        }),
        observer: None,
        person_count: Some(5),
        extent_m: Some(4.0),
        tracks: vec![],
        rule: proto::RuleInfo {
            name: "synthetic".into(),
            detail: format!(
                "synthetic alert #{} (load/chaos source, not a detection)",
                p.n
            ),
        },
        zone: None,
        mission_id: None,
        snapshot: (cfg.snapshot_bytes > 0).then(|| proto::Snapshot {
            width: 64,
            height: 48,
            jpeg: snapshot(cfg.snapshot_bytes, p.n + 1),
        }),
    }
}

struct Ledger {
    file: std::fs::File,
    path: PathBuf,
}

impl Ledger {
    fn write(&mut self, l: &LedgerLine) {
        let mut s = serde_json::to_string(l).expect("ledger lines serialise");
        s.push('\n');
        if let Err(e) = self.file.write_all(s.as_bytes()) {
            error!(path = %self.path.display(), error = %e, "synthetic alerts: cannot write the ledger");
        }
    }
}

/// Start the source on the current tokio runtime. Returns once the ledger
/// is open; the task ends when `count` alerts have been accepted.
pub fn start(
    cfg: SyntheticAlertsSection,
    bridge: Bridge,
    channel: ChannelHandle,
    metrics: Arc<Metrics>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut st = LedgerState::read(&cfg.ledger)?;
    if let Some(dir) = cfg.ledger.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cfg.ledger)?;
    let mut ledger = Ledger {
        file,
        path: cfg.ledger.clone(),
    };
    warn!(
        rate_hz = cfg.rate_hz,
        count = cfg.count,
        already_raised = st.accepted(),
        to_retry = st.pending.len(),
        ledger = %cfg.ledger.display(),
        "SYNTHETIC ALERTS enabled: a load/chaos source, not a detector"
    );
    Ok(tokio::spawn(async move {
        let drone = channel.drone_id().clone();
        let period = Duration::from_secs_f64(1.0 / cfg.rate_hz);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Pending alerts from the ledger are due at once.
        let mut retry_at: BTreeMap<u64, Instant> =
            st.pending.keys().map(|&n| (n, Instant::now())).collect();
        let mut said_waiting = false;
        loop {
            if st.accepted() >= cfg.count {
                info!(count = cfg.count, "synthetic alerts: all raised");
                return;
            }
            tick.tick().await;
            // Refused or in-doubt alerts first (bounded per tick).
            let now = Instant::now();
            let due: Vec<u64> = retry_at
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(n, _)| *n)
                .take(64)
                .collect();
            for n in due {
                let p = st.pending[&n];
                if offer(&cfg, &drone, &channel, &metrics, &mut ledger, &p, false).await {
                    st.accepted.insert(n);
                    st.pending.remove(&n);
                    retry_at.remove(&n);
                } else {
                    retry_at.insert(n, Instant::now() + Duration::from_secs_f64(cfg.retry_s));
                }
            }
            // One new alert per tick.
            if st.accepted() + st.pending.len() as u64 >= cfg.count {
                continue;
            }
            let Some(pos) = bridge.snapshot().position else {
                if !said_waiting {
                    info!("synthetic alerts: waiting for a position from the autopilot");
                    said_waiting = true;
                }
                continue;
            };
            let n = st.next_n;
            st.next_n += 1;
            let (dn, de) = offset_m(n);
            let lat = pos.lat_deg + dn / 111_320.0;
            let lon = pos.lon_deg + de / (111_320.0 * pos.lat_deg.to_radians().cos().max(0.01));
            let p = Pending {
                n,
                id: Uuid::now_v7(),
                t_unix_ms: proto::unix_ms(std::time::SystemTime::now()),
                lat_deg: lat,
                lon_deg: lon,
                alt_m: pos.alt_m - pos.alt_rel_m,
            };
            st.pending.insert(n, p);
            if offer(&cfg, &drone, &channel, &metrics, &mut ledger, &p, true).await {
                st.accepted.insert(n);
                st.pending.remove(&n);
            } else {
                retry_at.insert(n, Instant::now() + Duration::from_secs_f64(cfg.retry_s));
            }
        }
    }))
}

/// Offer one alert to the spool, with its ledger lines. True if accepted.
async fn offer(
    cfg: &SyntheticAlertsSection,
    drone: &proto::DroneId,
    channel: &ChannelHandle,
    metrics: &Metrics,
    ledger: &mut Ledger,
    p: &Pending,
    first: bool,
) -> bool {
    if first {
        ledger.write(&LedgerLine::Attempt {
            n: p.n,
            alert_id: p.id,
            t_unix_ms: p.t_unix_ms,
            lat_deg: p.lat_deg,
            lon_deg: p.lon_deg,
            alt_m: p.alt_m,
        });
    }
    let a = alert(cfg, drone, p);
    match channel.submit_alert(&a).await {
        Ok(s) => {
            metrics.alerts.inc();
            ledger.write(&LedgerLine::Accepted {
                n: p.n,
                alert_id: p.id,
                t_unix_ms: p.t_unix_ms,
                accepted_unix_ms: proto::unix_ms(std::time::SystemTime::now()),
                duplicate: s == Submitted::Duplicate,
            });
            true
        }
        Err(e) => {
            metrics.alerts_refused.inc();
            warn!(alert = %p.id, n = p.n, "synthetic alerts: the spool refused an alert (offered again in {} s): {e}", cfg.retry_s);
            ledger.write(&LedgerLine::Refused {
                n: p.n,
                alert_id: p.id,
                t_unix_ms: p.t_unix_ms,
                refused_unix_ms: proto::unix_ms(std::time::SystemTime::now()),
                reason: e.to_string(),
            });
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_resumes_accepted_and_retries_in_doubt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let id = |n: u64| Uuid::from_u128(n as u128 + 1);
        let attempt = |n| LedgerLine::Attempt {
            n,
            alert_id: id(n),
            t_unix_ms: 1_700_000_000_000 + n as i64,
            lat_deg: 28.0,
            lon_deg: 117.0,
            alt_m: 70.0,
        };
        let accepted = |n| LedgerLine::Accepted {
            n,
            alert_id: id(n),
            t_unix_ms: 1_700_000_000_000 + n as i64,
            accepted_unix_ms: 1_700_000_000_100,
            duplicate: false,
        };
        let refused = |n| LedgerLine::Refused {
            n,
            alert_id: id(n),
            t_unix_ms: 1_700_000_000_000 + n as i64,
            refused_unix_ms: 1_700_000_000_100,
            reason: "spool disk is full".into(),
        };
        let mut text = String::new();
        for l in [
            attempt(0),
            accepted(0),
            attempt(1),
            refused(1),
            attempt(2),
            accepted(2),
            attempt(3),
        ] {
            text += &serde_json::to_string(&l).unwrap();
            text.push('\n');
        }
        text += "{\"ev\":\"attempt\",\"n\":4,\"alert_"; // torn by a kill
        std::fs::write(&path, text).unwrap();
        let st = LedgerState::read(&path).unwrap();
        assert_eq!(st.accepted(), 2);
        assert_eq!(st.pending.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(st.pending[&3].id, id(3));
        assert_eq!(st.next_n, 4);
    }

    #[test]
    fn offsets_are_distinct_and_alerts_valid() {
        let set: std::collections::HashSet<_> = (0..1600)
            .map(|n| {
                let (a, b) = offset_m(n);
                ((a * 10.0) as i64, (b * 10.0) as i64)
            })
            .collect();
        assert_eq!(set.len(), 1600);
        let cfg = SyntheticAlertsSection {
            rate_hz: 1.0,
            count: 10,
            ledger: "l.jsonl".into(),
            retry_s: 2.0,
            snapshot_bytes: 100,
            category: Category::Gathering,
        };
        cfg.check().unwrap();
        let p = Pending {
            n: 7,
            id: Uuid::now_v7(),
            t_unix_ms: proto::unix_ms(std::time::SystemTime::now()),
            lat_deg: 28.4,
            lon_deg: 117.9,
            alt_m: 70.0,
        };
        let a = alert(&cfg, &proto::DroneId::new("d1".to_string()).unwrap(), &p);
        proto::encode(&a).expect("a synthetic alert passes the wire contract's validation");
        assert_eq!(a.rule.name, "synthetic");
    }
}
