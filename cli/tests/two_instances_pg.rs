//! Past one machine: two ground-station instances share one mosquitto
//! (an MQTT shared subscription, `$share/gs/...`) and one PostgreSQL store.
//!
//! Real parts throughout: a throwaway PostgreSQL cluster (initdb on a temp
//! dir, a free port), mosquitto, two `tiancha ground-station` processes, a
//! `tiancha dispute-receiver`, and several drones (one `tiancha loadgen`
//! process each: its own MQTT client and spool). One instance is killed with
//! SIGKILL mid-run and stays down until the drones have their receipts; the
//! other carries on alone. Afterwards:
//! - every alert a drone had accepted is stored exactly once (snapshot
//!   bytes intact), each triaged once;
//! - every case is delivered to the receiver exactly once (one `created`
//!   per idempotency key), none pending or dead;
//! - the alert list on BOTH instances' HTTP APIs shows all of them;
//! - both instances did part of the ingest (the shared subscription split
//!   the stream) before the kill.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

const DRONES: usize = 4;
const PER_DRONE: usize = 150;
const N: usize = DRONES * PER_DRONE;
const SECRET: &str = "two-instances-route-secret-0123456789";

#[path = "../../ground-station/tests/common/pg.rs"]
mod pg;
use pg::Postgres;

/// (alert id → snapshot SHA-256) of every alert the drones had accepted.
fn sent(dir: &Path) -> HashMap<String, String> {
    (0..DRONES)
        .flat_map(|i| {
            let text =
                std::fs::read_to_string(dir.join(format!("sent-{i}.jsonl"))).unwrap_or_default();
            let complete = text[..text.rfind('\n').map_or(0, |i| i + 1)].to_string();
            complete.lines().map(String::from).collect::<Vec<_>>()
        })
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            (
                v["alert_id"].as_str().unwrap().to_string(),
                v["snapshot_sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn metric(http_port: u16, name: &str) -> Option<u64> {
    let (st, body) = http(
        "GET",
        &format!("http://127.0.0.1:{http_port}/metrics"),
        &[],
        None,
    );
    (st == 200).then_some(())?;
    body.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn get_json(url: &str, token: Option<&str>) -> Option<serde_json::Value> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    let (st, body) = http("GET", url, &headers, None);
    (st == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

struct Instance {
    name: &'static str,
    http: u16,
    conf: PathBuf,
    proc: Option<Proc>,
}

impl Instance {
    fn new(dir: &Path, name: &'static str, mqtt: u16, rport: u16, pg_url: &str) -> Instance {
        let http = free_port();
        let conf = dir.join(format!("{name}.toml"));
        std::fs::write(
            &conf,
            format!(
                "data_dir = \"{data}\"\ninstance = \"{name}\"\n\
                 [http]\nlisten = \"127.0.0.1:{http}\"\nsecure_cookies = false\n\
                 [mqtt]\nport = {mqtt}\n[broker]\nembedded = false\n\
                 [ingest]\nshared_group = \"gs\"\n\
                 [store]\nbackend = \"postgres\"\nurl = \"{pg_url}\"\nlease_ms = 4000\npoll_ms = 300\n\
                 [cases]\nmerge_radius_m = 10\n\
                 [[cases.auto_dispatch]]\ncategories = [\"gathering\", \"intrusion\", \"fire\", \"smoke\"]\nmin_confidence = 0.0\n\
                 [[dispatch.routes]]\nname = \"governance\"\nurl = \"http://127.0.0.1:{rport}/governance/cases\"\n\
                 secret = \"{SECRET}\"\ndefault = true\n\
                 [dispatch]\nrequest_timeout_ms = 2000\n[dispatch.retry]\ninitial_backoff_ms = 200\nmax_backoff_ms = 2000\n",
                data = dir.join(format!("{name}-data")).display()
            ),
        )
        .unwrap();
        Instance {
            name,
            http,
            conf,
            proc: None,
        }
    }

    fn start(&mut self, dir: &Path) {
        let p = Proc::tiancha(
            self.name,
            dir,
            &["ground-station", "--config", self.conf.to_str().unwrap()],
        );
        self.proc = Some(p);
        wait_port(self.http, Duration::from_secs(30));
        let log = self.proc.as_ref().unwrap().log.clone();
        wait_for(
            &format!("{} ingest connected", self.name),
            Duration::from_secs(20),
            || {
                std::fs::read_to_string(&log)
                    .ok()
                    .filter(|l| l.contains("ingest connected"))
            },
        );
    }

    fn log_tail(&self) -> String {
        self.proc
            .as_ref()
            .map(|p| p.log_tail(30))
            .unwrap_or_default()
    }
}

#[test]
fn two_ground_stations_share_mosquitto_and_postgres_without_loss_or_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pg = Postgres::start_logging_to(dir);
    let mqtt = free_port();
    let _broker = Broker::start(BrokerKind::Mosquitto, dir, mqtt);
    let rport = free_port();
    let _receiver = Proc::tiancha(
        "receiver",
        dir,
        &[
            "dispute-receiver",
            "--listen",
            &format!("127.0.0.1:{rport}"),
            "--data-dir",
            dir.join("receiver").to_str().unwrap(),
            "--route",
            &format!("governance={SECRET}"),
        ],
    );
    wait_port(rport, Duration::from_secs(20));

    let mut a = Instance::new(dir, "gs-a", mqtt, rport, &pg.url());
    let mut b = Instance::new(dir, "gs-b", mqtt, rport, &pg.url());
    // Start both at once: the schema migration must happen once.
    a.start(dir);
    b.start(dir);
    assert_eq!(
        pg.count("SELECT count(*) FROM schema_migrations"),
        tiancha_ground_station::store::migrations_pg().len() as i64,
        "every migration recorded once"
    );
    // Users live in the shared store: one token works on both instances.
    let token = api_token(dir, &a.conf, "operator");

    let mut drones: Vec<Proc> = (0..DRONES)
        .map(|i| {
            let spool = dir.join(format!("spool-{i}.db"));
            let out = dir.join(format!("sent-{i}.jsonl"));
            Proc::tiancha(
                &format!("loadgen-{i}"),
                dir,
                &[
                    "loadgen",
                    "--drone-id",
                    &format!("pg-{i}"),
                    "--mqtt-port",
                    &mqtt.to_string(),
                    "--spool",
                    spool.to_str().unwrap(),
                    "--alerts",
                    &PER_DRONE.to_string(),
                    "--rate",
                    "5",
                    "--snapshot-bytes",
                    "2000",
                    "--telemetry-hz",
                    "1",
                    "--out",
                    out.to_str().unwrap(),
                    "--receipt-timeout-s",
                    "3",
                    "--timeout-s",
                    "240",
                ],
            )
        })
        .collect();

    // Both instances take part while both are up.
    wait_for(
        "both instances ingesting alerts",
        Duration::from_secs(60),
        || {
            let na = metric(a.http, "tiancha_ingest_alerts_new_total")?;
            let nb = metric(b.http, "tiancha_ingest_alerts_new_total")?;
            (na >= 20 && nb >= 20).then_some((na, nb))
        },
    );
    wait_for(
        "a third of the alerts stored",
        Duration::from_secs(60),
        || (pg.count("SELECT count(*) FROM alerts") as usize >= N / 3).then_some(()),
    );
    let stored_before_kill = pg.count("SELECT count(*) FROM alerts");
    let delivered_before_kill = pg.count("SELECT count(*) FROM outbox WHERE state = 'delivered'");
    // SIGKILL gs-a mid-ingest and mid-delivery; gs-b carries on alone.
    a.proc.as_mut().unwrap().kill();

    for d in &mut drones {
        let status = d.wait(Duration::from_secs(300));
        assert!(
            status.success(),
            "{} did not get every receipt with gs-a down; its log:\n{}\ngs-b:\n{}",
            d.name,
            d.log_tail(20),
            b.log_tail()
        );
    }
    let expected = sent(dir);
    assert_eq!(expected.len(), N, "every alert was accepted by a drone");
    assert!(
        stored_before_kill > 0 && (stored_before_kill as usize) < N * 2 / 3,
        "gs-a was killed mid-run (store had {stored_before_kill} of {N})"
    );

    // Every alert triaged, every case delivered (by gs-b alone, now).
    wait_for(
        "every alert triaged and every case delivered",
        Duration::from_secs(120),
        || {
            let untriaged = pg.count(
                "SELECT count(*) FROM alerts a LEFT JOIN alert_triage t USING (alert_id) \
                 WHERE t.alert_id IS NULL",
            );
            let open = pg.count("SELECT count(*) FROM outbox WHERE state <> 'delivered'");
            let cases = pg.count("SELECT count(*) FROM cases");
            let outbox = pg.count("SELECT count(*) FROM outbox");
            (untriaged == 0 && open == 0 && cases == outbox).then_some(())
        },
    );

    // Restart gs-a: both UIs must show everything.
    a.start(dir);

    // Stored exactly once, snapshots intact.
    assert_eq!(pg.count("SELECT count(*) FROM alerts") as usize, N);
    let rows = pg.query(
        "SELECT a.alert_id || '|' || s.sha256 FROM alerts a JOIN snapshots s USING (alert_id)",
    );
    let stored: HashMap<String, String> = rows
        .iter()
        .map(|l| {
            let (id, sha) = l.split_once('|').unwrap();
            (id.to_string(), sha.to_string())
        })
        .collect();
    assert_eq!(stored.len(), N, "each alert once, with its snapshot");
    for (id, sha) in &expected {
        let got = stored
            .get(id)
            .unwrap_or_else(|| panic!("alert {id} was accepted by its drone but never stored"));
        assert_eq!(got, sha, "snapshot of {id} differs");
    }
    // Triaged once each: every alert is in exactly one case.
    assert_eq!(
        pg.count("SELECT count(*) FROM alert_triage WHERE state = 'case'") as usize,
        N
    );
    assert_eq!(pg.count("SELECT count(*) FROM quarantine"), 0);

    // Delivered exactly once: the receiver created each case once.
    let cases: HashSet<String> = pg.query("SELECT case_id FROM cases").into_iter().collect();
    assert!(!cases.is_empty());
    assert_eq!(
        pg.count("SELECT count(*) FROM cases WHERE status = 'dispatched'") as usize,
        cases.len(),
        "every case dispatched"
    );
    assert!(
        (delivered_before_kill as usize) < cases.len(),
        "cases raised after the kill were delivered by gs-b ({delivered_before_kill} before, {} in all)",
        cases.len()
    );
    let received = get_json(&format!("http://127.0.0.1:{rport}/cases"), None).unwrap();
    let received = received.as_array().unwrap();
    assert_eq!(
        received.len(),
        cases.len(),
        "the receiver has each case once"
    );
    let requests = get_json(&format!("http://127.0.0.1:{rport}/requests"), None).unwrap();
    let mut created: HashMap<String, usize> = HashMap::new();
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for r in requests.as_array().unwrap() {
        let o = r["outcome"].as_str().unwrap().to_string();
        if o == "created" {
            *created
                .entry(r["idempotency_key"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        *outcomes.entry(o).or_default() += 1;
    }
    assert_eq!(
        created.keys().cloned().collect::<HashSet<_>>(),
        cases,
        "each case created at the receiver"
    );
    assert!(
        created.values().all(|&n| n == 1),
        "a case was created twice: {created:?}"
    );

    // Both instances' APIs list every alert.
    for inst in [&a, &b] {
        let list = get_json(
            &format!("http://127.0.0.1:{}/api/alerts?limit=10000", inst.http),
            Some(&token),
        )
        .unwrap_or_else(|| panic!("{} alert list; log:\n{}", inst.name, inst.log_tail()));
        let ids: HashSet<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["alert_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), N, "{} lists every alert", inst.name);
        assert!(ids.iter().all(|i| expected.contains_key(i)));
        let cases_api = get_json(
            &format!("http://127.0.0.1:{}/api/cases?limit=10000", inst.http),
            Some(&token),
        )
        .unwrap();
        assert_eq!(
            cases_api.as_array().unwrap().len(),
            cases.len(),
            "{} lists every case",
            inst.name
        );
    }
    println!(
        "two instances: {N} alerts from {DRONES} drones stored once; {} cases delivered once \
         (receiver requests {outcomes:?}); gs-a killed with {stored_before_kill} alerts stored \
         and {delivered_before_kill} cases delivered",
        cases.len()
    );
}
