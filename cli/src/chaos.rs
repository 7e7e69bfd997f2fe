//! `tiancha chaos`: the whole system as real processes — `tiancha sim`,
//! `tiancha companion` (with the synthetic alert source, a load/chaos
//! source, not a detector), `tiancha broker` (rumqttd standalone),
//! `tiancha ground-station` (`[broker] embedded = false`) and `tiancha
//! dispute-receiver` — raising a known number of alerts while every fault
//! of issue 8 is injected at least once:
//!
//! | fault | how |
//! |---|---|
//! | broker killed and restarted | SIGKILL `tiancha broker`, restart after 10 s (rumqttd keeps sessions in memory: all of it is lost) |
//! | drone↔ground link cut for 5 min | the TCP relay between companion and broker ([`crate::link_cut`]) |
//! | companion SIGKILLed mid-spool | twice: while alerts flow, and during the link cut with the backlog on disk |
//! | ground station SIGKILLed mid-ingest | right after the link returns, as the backlog floods in |
//! | ground station SIGKILLed mid-delivery | right after the receiver returns, as the outbox drains |
//! | dispute receiver down 10 min | SIGKILL, restart 10 min later |
//! | spool disk full | the spool lives on its own tmpfs (mounted here; needs root), filled with a ballast file during the link cut until the companion refuses alerts, then freed |
//!
//! Every alert becomes exactly one case: the ground station's
//! `[cases]` has `merge_radius_m = 0` and `merge_window_min = 0` (each
//! synthetic alert has its own place) and one auto-dispatch rule for the
//! synthetic alerts' category with `min_confidence = 0.5` (they carry
//! 0.9), to one route. So "cases delivered by id" is well defined: every
//! raised alert id must appear in exactly one case the receiver holds.
//!
//! Counted by id at the end: raised (the synthetic source's ledger lines
//! `accepted`: the spool explicitly took it; refused alerts are offered
//! again until taken), stored (the ground station's `GET /api/alerts`),
//! delivered (the receiver's `GET /cases`, each case's `alert_ids`),
//! duplicates, missing ids, and the worst raise→store and raise→delivery
//! delays. Exit status 1 unless raised = stored = delivered with no
//! duplicate and no missing id, every fault happened, and the companion
//! said that its disk was full.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::demo::{free_port, free_udp_port, secret, unix_ms};
use crate::link_cut::LinkCut;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run directory (emptied first; logs, configs, databases stay there).
    #[arg(long, default_value = "target/chaos")]
    dir: PathBuf,
    /// How many alerts the synthetic source raises.
    #[arg(long, default_value_t = 540)]
    alerts: u64,
    /// Synthetic alerts per second.
    #[arg(long, default_value_t = 0.8)]
    rate: f64,
    /// Scale of the long faults (1: link cut 5 min, receiver down 10 min).
    /// Below 1 only to try the harness quickly; the test runs at 1.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Give up this many seconds after the last fault if not everything
    /// has arrived.
    #[arg(long, default_value_t = 420)]
    drain_timeout_s: u64,
    /// Size of the spool's tmpfs (MB).
    #[arg(long, default_value_t = 16)]
    spool_disk_mb: u64,
    /// Also write the summary as JSON here.
    #[arg(long)]
    summary_json: Option<PathBuf>,
}

/// One injected fault, seconds from the first raised alert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRec {
    pub fault: String,
    pub start_s: f64,
    pub end_s: f64,
    pub note: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub alerts_raised: usize,
    pub alerts_stored: usize,
    pub cases_delivered: usize,
    /// Raised ids stored more than once (rows) + delivered in more than one case.
    pub duplicates: usize,
    pub duplicate_ids: Vec<String>,
    pub missing_stored: Vec<String>,
    pub missing_delivered: Vec<String>,
    /// Ids at the ground or the receiver that were never raised.
    pub unexpected: Vec<String>,
    pub worst_raise_to_store_s: f64,
    pub worst_raise_to_delivery_s: f64,
    pub median_raise_to_store_s: f64,
    /// Case POSTs the receiver saw again for a case it already had
    /// (recognised by Idempotency-Key: resends, not duplicates).
    pub redelivery_requests: usize,
    /// Offers the spool refused (then offered again), by reason.
    pub refusals: BTreeMap<String, usize>,
    pub disk_full_logged: bool,
    pub faults: Vec<FaultRec>,
    pub wall_s: f64,
    pub ok: bool,
    pub problems: Vec<String>,
}

const DRONE: &str = "chaos-01";
const HOME: (f64, f64, f64) = (28.4476392, 117.9383877, 70.0);

/// Children by name; each can be killed (SIGKILL) and started again with
/// the same arguments. Logs append across restarts.
struct Procs {
    dir: PathBuf,
    exe: PathBuf,
    procs: BTreeMap<String, Proc>,
}

struct Proc {
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    starts: u32,
}

impl Procs {
    fn add(&mut self, name: &str, args: &[String], env: &[(&str, &str)]) -> anyhow::Result<()> {
        self.procs.insert(
            name.into(),
            Proc {
                args: args.to_vec(),
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                child: None,
                starts: 0,
            },
        );
        self.start(name)
    }

    fn start(&mut self, name: &str) -> anyhow::Result<()> {
        let p = self.procs.get_mut(name).expect("known process");
        let path = self.dir.join(format!("{name}.log"));
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        p.starts += 1;
        writeln!(log, "=== chaos: start #{} of {name} ===", p.starts)?;
        let mut c = Command::new(&self.exe);
        c.args(&p.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in &p.env {
            c.env(k, v);
        }
        p.child = Some(c.spawn().with_context(|| format!("starting {name}"))?);
        Ok(())
    }

    /// SIGKILL (std's `Child::kill` on Unix) and reap.
    fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let p = self.procs.get_mut(name).expect("known process");
        let Some(mut c) = p.child.take() else {
            bail!("{name} is not running");
        };
        c.kill().with_context(|| format!("killing {name}"))?;
        let _ = c.wait();
        Ok(())
    }

    /// Fails if a process we did not stop has exited.
    fn check(&mut self) -> anyhow::Result<()> {
        for (name, p) in self.procs.iter_mut() {
            if let Some(c) = p.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    bail!(
                        "{name} exited by itself ({st}); see {}",
                        self.dir.join(format!("{name}.log")).display()
                    );
                }
            }
        }
        Ok(())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for p in self.procs.values_mut() {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The spool's own small disk, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size_mb: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_mb}m,mode=0700"))
            .arg("tiancha-chaos-spool")
            .arg(dir)
            .output()
            .context("running mount(8)")?;
        if !out.status.success() {
            bail!(
                "chaos: cannot mount a {size_mb} MB tmpfs at {} for the companion's spool disk \
                 (the disk-full fault needs its own small disk; run as root or with CAP_SYS_ADMIN): {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Self(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn tcp_up(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

async fn wait_tcp(port: u16, what: &str, procs: &mut Procs) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    while !tcp_up(port) {
        procs.check()?;
        if Instant::now() > until {
            bail!("{what} did not open port {port} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Fill the disk holding `path` with a ballast file until it is full.
fn fill_disk(path: &Path) -> anyhow::Result<u64> {
    let mut f = std::fs::File::create(path).context("creating the ballast file")?;
    let buf = vec![0xA5u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        match f.write(&buf) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => return Err(e).context("writing the ballast file"),
        }
    }
    let _ = f.sync_all();
    Ok(n)
}

/// What the three ends know.
struct Obs {
    http: reqwest::Client,
    gs: String,
    token: String,
    receiver: String,
    ledger: PathBuf,
}

#[derive(Default)]
struct Ledger {
    /// Raised: id → the alert's time.
    accepted: HashMap<Uuid, i64>,
    /// (refused at, reason)
    refused: Vec<(i64, String)>,
}

struct Stored {
    alert_id: Uuid,
    received_unix_ms: i64,
}

struct Delivered {
    alert_ids: Vec<Uuid>,
    first_unix_ms: i64,
    requests: i64,
}

impl Obs {
    fn ledger(&self) -> Ledger {
        let mut l = Ledger::default();
        let Ok(text) = std::fs::read_to_string(&self.ledger) else {
            return l;
        };
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let id = v["alert_id"].as_str().and_then(|s| s.parse::<Uuid>().ok());
            match (v["ev"].as_str(), id) {
                (Some("accepted"), Some(id)) => {
                    l.accepted
                        .insert(id, v["t_unix_ms"].as_i64().unwrap_or_default());
                }
                (Some("refused"), Some(_)) => l.refused.push((
                    v["refused_unix_ms"].as_i64().unwrap_or_default(),
                    v["reason"].as_str().unwrap_or_default().to_string(),
                )),
                _ => {}
            }
        }
        l
    }

    async fn get(&self, url: String, bearer: bool) -> anyhow::Result<Value> {
        let mut r = self.http.get(&url).timeout(Duration::from_secs(20));
        if bearer {
            r = r.bearer_auth(&self.token);
        }
        let resp = r.send().await.with_context(|| format!("GET {url}"))?;
        let st = resp.status();
        let body = resp.text().await?;
        if !st.is_success() {
            bail!("GET {url}: {st}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    async fn stored(&self) -> anyhow::Result<Vec<Stored>> {
        let v = self
            .get(format!("{}/api/alerts?limit=10000", self.gs), true)
            .await?;
        Ok(v.as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|r| {
                Some(Stored {
                    alert_id: r["alert_id"].as_str()?.parse().ok()?,
                    received_unix_ms: r["received_unix_ms"].as_i64()?,
                })
            })
            .collect())
    }

    async fn delivered(&self) -> anyhow::Result<Vec<Delivered>> {
        let v = self.get(format!("{}/cases", self.receiver), false).await?;
        Ok(v.as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|r| Delivered {
                alert_ids: r["case"]["alert_ids"]
                    .as_array()
                    .map(|a| a.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|x| x.as_str()?.parse().ok())
                    .collect(),
                first_unix_ms: r["first_unix_ms"].as_i64().unwrap_or_default(),
                requests: r["requests"].as_i64().unwrap_or(1),
            })
            .collect())
    }
}

/// Counts for progress lines; `None` where that end is down.
struct Counts {
    raised: usize,
    stored: Option<usize>,
    delivered: Option<usize>,
}

struct Run {
    t0: Instant,
    procs: Procs,
    obs: Obs,
    faults: Vec<FaultRec>,
    last_progress: Instant,
}

impl Run {
    fn t(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn say(&self, msg: &str) {
        println!("[t+{:6.1}s] {msg}", self.t());
    }

    fn fault_start(&mut self, fault: &str, note: &str) -> usize {
        self.say(&format!("FAULT START {fault}: {note}"));
        self.faults.push(FaultRec {
            fault: fault.into(),
            start_s: self.t(),
            end_s: f64::NAN,
            note: note.into(),
        });
        self.faults.len() - 1
    }

    fn fault_end(&mut self, i: usize, note: &str) {
        let t = self.t();
        let f = &mut self.faults[i];
        f.end_s = t;
        if !note.is_empty() {
            f.note = format!("{}; {note}", f.note);
        }
        let line = format!(
            "FAULT END   {} after {:.1} s{}",
            f.fault,
            t - f.start_s,
            if note.is_empty() {
                String::new()
            } else {
                format!(": {note}")
            }
        );
        self.say(&line);
    }

    async fn counts(&self) -> Counts {
        let raised = self.obs.ledger().accepted.len();
        let stored = self.obs.stored().await.ok().map(|s| s.len());
        let delivered = self
            .obs
            .delivered()
            .await
            .ok()
            .map(|d| d.iter().map(|c| c.alert_ids.len()).sum());
        Counts {
            raised,
            stored,
            delivered,
        }
    }

    fn show(c: &Counts) -> String {
        let f = |o: Option<usize>| o.map_or("(down)".to_string(), |n| n.to_string());
        format!(
            "raised {} stored {} delivered {}",
            c.raised,
            f(c.stored),
            f(c.delivered)
        )
    }

    /// Sleep until `t0 + at_s`, checking the children and printing
    /// progress every 30 s.
    async fn until(&mut self, at_s: f64) -> anyhow::Result<()> {
        let due = self.t0 + Duration::from_secs_f64(at_s.max(0.0));
        while Instant::now() < due {
            self.procs.check()?;
            if self.last_progress.elapsed() > Duration::from_secs(30) {
                self.last_progress = Instant::now();
                let c = self.counts().await;
                self.say(&Self::show(&c));
            }
            let left = due.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        }
        Ok(())
    }

    async fn sleep(&mut self, s: f64) -> anyhow::Result<()> {
        let at = self.t() + s;
        self.until(at).await
    }

    /// Wait (up to `max_s`) for `pred` over fresh counts.
    async fn wait_for(
        &mut self,
        max_s: f64,
        poll_ms: u64,
        mut pred: impl FnMut(&Counts) -> bool,
    ) -> anyhow::Result<(bool, Counts)> {
        let until = Instant::now() + Duration::from_secs_f64(max_s);
        loop {
            self.procs.check()?;
            let c = self.counts().await;
            if pred(&c) {
                return Ok((true, c));
            }
            if Instant::now() > until {
                return Ok((false, c));
            }
            tokio::time::sleep(Duration::from_millis(poll_ms)).await;
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !(0.01..=10.0).contains(&args.time_scale) {
        bail!("--time-scale {} must be within 0.01..=10", args.time_scale);
    }
    if args.alerts == 0 || !(args.rate > 0.0 && args.rate <= 100.0) {
        bail!("--alerts must be positive and --rate within (0, 100]");
    }
    let dir = args.dir.clone();
    let disk = dir.join("spool-disk");
    if disk.exists() {
        // A previous run that did not clean up.
        let _ = Command::new("umount").arg("-l").arg(&disk).status();
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("emptying the run directory {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let dir = std::fs::canonicalize(&dir)?;
    let disk = dir.join("spool-disk");
    let tmpfs = Tmpfs::mount(&disk, args.spool_disk_mb)?;
    let rt = tokio::runtime::Runtime::new()?;
    let summary = rt.block_on(chaos(&args, &dir, &disk));
    drop(tmpfs);
    let summary = summary?;
    print_summary(&summary);
    if let Some(p) = &args.summary_json {
        std::fs::write(p, serde_json::to_string_pretty(&summary)?)?;
    }
    if !summary.ok {
        bail!("chaos: {}", summary.problems.join("; "));
    }
    Ok(())
}

async fn chaos(args: &Args, dir: &Path, disk: &Path) -> anyhow::Result<Summary> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let s = |x: &dyn std::fmt::Display| x.to_string();
    let mqtt = free_port()?;
    let http = free_port()?;
    let receiver = free_port()?;
    let metrics = free_port()?;
    let mav = free_udp_port()?;
    let route_secret = secret()?;
    let ledger = dir.join("synthetic-ledger.jsonl");

    // The ground station: external broker; one case per alert, each
    // auto-dispatched to the one route.
    let gs_conf = dir.join("ground-station.toml");
    std::fs::write(
        &gs_conf,
        format!(
            "data_dir = \"{data}\"\ninstance = \"chaos\"\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\nsecure_cookies = false\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt}\n\
             [broker]\nembedded = false\n\
             [cases]\nmerge_radius_m = 0\nmerge_window_min = 0\n\
             [[cases.auto_dispatch]]\ncategories = [\"gathering\"]\nmin_confidence = 0.5\n\
             [[dispatch.routes]]\nname = \"governance\"\nurl = \"http://127.0.0.1:{receiver}/governance/cases\"\n\
             secret_env = \"TIANCHA_GOV_SECRET\"\ndefault = true\n\
             [dispatch.retry]\ninitial_backoff_ms = 1000\nmax_backoff_ms = 5000\n",
            data = dir.join("ground-station").display(),
        ),
    )?;
    let gs_conf_s = gs_conf.display().to_string();
    let password = secret()?;
    let st = Command::new(&exe)
        .args([
            "ground-station",
            "--config",
            &gs_conf_s,
            "user",
            "add",
            "chaos",
        ])
        .args([
            "--role",
            "operator",
            "--password-env",
            "TIANCHA_CHAOS_PASSWORD",
        ])
        .env("TIANCHA_CHAOS_PASSWORD", &password)
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("creating the chaos operator failed ({st})");
    }
    let out = Command::new(&exe)
        .args(["ground-station", "--config", &gs_conf_s, "token", "create"])
        .args(["--user", "chaos", "--label", "tiancha-chaos"])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("creating the chaos API token failed ({})", out.status);
    }
    let token = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string();

    // The companion: through the cuttable relay, spool on its own tmpfs,
    // synthetic alerts.
    let link = LinkCut::start(([127, 0, 0, 1], mqtt).into()).context("starting the link relay")?;
    let c_conf = dir.join("companion.toml");
    std::fs::write(
        &c_conf,
        format!(
            "drone_id = \"{DRONE}\"\nmetrics_listen = \"127.0.0.1:{metrics}\"\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {relay}\n\
             [spool]\npath = \"{spool}\"\nreceipt_timeout_s = 10\n\
             [autopilot]\naddress = \"udpout:127.0.0.1:{mav}\"\n\
             # A load/chaos source, not a detector (companion::synthetic).\n\
             [synthetic_alerts]\nrate_hz = {rate}\ncount = {count}\nledger = \"{ledger}\"\nretry_s = 2\n",
            relay = link.port(),
            spool = disk.join("spool.db").display(),
            rate = args.rate,
            count = args.alerts,
            ledger = ledger.display(),
        ),
    )?;

    let mut procs = Procs {
        dir: dir.to_path_buf(),
        exe,
        procs: BTreeMap::new(),
    };
    let env_secret = [("TIANCHA_GOV_SECRET", route_secret.as_str())];
    procs.add(
        "broker",
        &[
            "broker".into(),
            "--listen".into(),
            format!("127.0.0.1:{mqtt}"),
        ],
        &[],
    )?;
    wait_tcp(mqtt, "the broker", &mut procs).await?;
    procs.add(
        "ground-station",
        &[
            "ground-station".into(),
            "--config".into(),
            gs_conf_s.clone(),
        ],
        &env_secret,
    )?;
    wait_tcp(http, "the ground station", &mut procs).await?;
    procs.add(
        "dispute-receiver",
        &[
            "dispute-receiver".into(),
            "--listen".into(),
            format!("127.0.0.1:{receiver}"),
            "--data-dir".into(),
            dir.join("receiver").display().to_string(),
            "--route".into(),
            "governance=env:TIANCHA_GOV_SECRET".into(),
        ],
        &env_secret,
    )?;
    wait_tcp(receiver, "the dispute receiver", &mut procs).await?;
    procs.add(
        "sim",
        &[
            "sim".into(),
            "--listen".into(),
            format!("udpin:127.0.0.1:{mav}"),
            "--home".into(),
            format!("{},{},{}", HOME.0, HOME.1, HOME.2),
        ],
        &[],
    )?;
    procs.add(
        "companion",
        &["companion".into(), "--config".into(), s(&c_conf.display())],
        &[],
    )?;

    let obs = Obs {
        http: reqwest::Client::new(),
        gs: format!("http://127.0.0.1:{http}"),
        token,
        receiver: format!("http://127.0.0.1:{receiver}"),
        ledger: ledger.clone(),
    };
    println!(
        "chaos: {} alerts at {}/s; run directory {} (logs: <process>.log)",
        args.alerts,
        args.rate,
        dir.display()
    );
    // t = 0 is the first raised alert.
    let start = Instant::now();
    while obs.ledger().accepted.is_empty() {
        procs.check()?;
        if start.elapsed() > Duration::from_secs(120) {
            bail!("the companion raised no alert within 120 s; see companion.log");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut run = Run {
        t0: Instant::now(),
        procs,
        obs,
        faults: vec![],
        last_progress: Instant::now(),
    };
    run.say("first alert raised");
    let sc = args.time_scale;
    let cut_start = 75.0;
    let cut_len = 300.0 * sc;
    let recv_start = 60.0;
    let recv_len = 600.0 * sc;

    // 1. The broker, SIGKILLed (rumqttd keeps everything in memory).
    run.until(20.0).await?;
    let f = run.fault_start(
        "broker SIGKILL",
        "rumqttd standalone, sessions and in-flight messages lost",
    );
    run.procs.kill("broker")?;
    run.sleep(10.0).await?;
    run.procs.start("broker")?;
    wait_tcp(mqtt, "the broker", &mut run.procs).await?;
    run.fault_end(f, "restarted");

    // 2. The companion, SIGKILLed while alerts flow.
    run.until(45.0).await?;
    let f = run.fault_start("companion SIGKILL #1", "while alerts flow");
    run.procs.kill("companion")?;
    run.sleep(5.0).await?;
    run.procs.start("companion")?;
    run.fault_end(f, "restarted");

    // 3. The dispute receiver, down for 10 minutes.
    run.until(recv_start).await?;
    let recv_fault = run.fault_start(
        "dispute receiver down",
        &format!("SIGKILL, back after {recv_len:.0} s"),
    );
    run.procs.kill("dispute-receiver")?;

    // 4. The drone↔ground link, cut for 5 minutes.
    run.until(cut_start).await?;
    let cut_fault = run.fault_start(
        "drone<->ground link cut",
        &format!("relay refuses and drops connections for {cut_len:.0} s"),
    );
    link.set_cut(true);

    // 5. The companion, SIGKILLed with a backlog in its spool.
    run.until(cut_start + 0.3 * cut_len).await?;
    let depth = spool_depth(metrics).await;
    let f = run.fault_start(
        "companion SIGKILL #2",
        &format!(
            "mid-spool, {} entries spooled",
            depth.map_or("?".into(), |d| d.to_string())
        ),
    );
    run.procs.kill("companion")?;
    run.sleep(5.0).await?;
    run.procs.start("companion")?;
    run.fault_end(f, "restarted");

    // 6. The spool's disk, full.
    run.until(cut_start + 0.45 * cut_len).await?;
    let ballast = disk.join("ballast");
    let n = fill_disk(&ballast)?;
    let f = run.fault_start(
        "spool disk full",
        &format!("{} MB ballast on the spool's tmpfs", n / (1024 * 1024)),
    );
    let filled_at = unix_ms();
    let refused_after = |run: &Run| {
        run.obs
            .ledger()
            .refused
            .iter()
            .filter(|(t, _)| *t >= filled_at)
            .count()
    };
    let until_refused = Instant::now() + Duration::from_secs(180);
    while refused_after(&run) == 0 && Instant::now() < until_refused {
        run.sleep(1.0).await?;
        // Whatever the spool frees, take too.
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(&ballast)
            .map(|mut b| {
                let buf = vec![0xA5u8; 4096];
                while b.write(&buf).is_ok_and(|k| k > 0) {}
            });
    }
    let first_refusal = refused_after(&run);
    run.sleep(20.0).await?;
    std::fs::remove_file(&ballast).context("removing the ballast")?;
    let refused = refused_after(&run);
    run.fault_end(
        f,
        &format!(
            "ballast removed; {refused} offers refused while full{}",
            if first_refusal == 0 {
                " (NONE within 180 s)"
            } else {
                ""
            }
        ),
    );

    // 7. The link back; the ground station SIGKILLed as the backlog floods in.
    run.until(cut_start + cut_len).await?;
    link.set_cut(false);
    run.fault_end(
        cut_fault,
        &format!("{} connection attempts refused while cut", link.refused()),
    );
    let before = run.counts().await.stored.unwrap_or(0);
    let (flowing, c) = run
        .wait_for(90.0, 100, |c| c.stored.is_some_and(|s| s > before))
        .await?;
    let f = run.fault_start(
        "ground station SIGKILL mid-ingest",
        &format!(
            "{} backlog arriving: {}",
            if flowing { "with the" } else { "NOT seen: no" },
            Run::show(&c)
        ),
    );
    run.procs.kill("ground-station")?;
    run.sleep(5.0).await?;
    run.procs.start("ground-station")?;
    wait_tcp(http, "the ground station", &mut run.procs).await?;
    run.fault_end(f, "restarted");

    // 8. The receiver back; the ground station SIGKILLed as the outbox drains.
    run.until(recv_start + recv_len).await?;
    run.procs.start("dispute-receiver")?;
    wait_tcp(receiver, "the dispute receiver", &mut run.procs).await?;
    run.fault_end(recv_fault, "restarted");
    let before = run.counts().await.delivered.unwrap_or(0);
    let (flowing, c) = run
        .wait_for(90.0, 100, |c| c.delivered.is_some_and(|d| d > before))
        .await?;
    let f = run.fault_start(
        "ground station SIGKILL mid-delivery",
        &format!(
            "{}: {}",
            if flowing {
                "cases being delivered"
            } else {
                "NO delivery seen"
            },
            Run::show(&c)
        ),
    );
    run.procs.kill("ground-station")?;
    run.sleep(5.0).await?;
    run.procs.start("ground-station")?;
    wait_tcp(http, "the ground station", &mut run.procs).await?;
    run.fault_end(f, "restarted");

    // Drain: all raised, all stored, all delivered (or time out).
    let total = args.alerts as usize;
    run.say("all faults done; waiting for every alert to be raised, stored and delivered");
    let (done, c) = run
        .wait_for(args.drain_timeout_s as f64, 2000, |c| {
            c.raised >= total
                && c.stored.is_some_and(|s| s >= c.raised)
                && c.delivered.is_some_and(|d| d >= c.raised)
        })
        .await?;
    run.say(&format!(
        "{}: {}",
        if done { "converged" } else { "TIMED OUT" },
        Run::show(&c)
    ));
    // A few more seconds: anything extra (a duplicate) would show now.
    run.sleep(10.0).await?;
    run.procs.check()?;

    let mut sum = tally(&run.obs, total).await?;
    sum.faults = run.faults.clone();
    sum.wall_s = run.t();
    sum.disk_full_logged = std::fs::read_to_string(dir.join("companion.log"))
        .unwrap_or_default()
        .contains("SPOOL DISK FULL");
    let need = [
        "broker SIGKILL",
        "drone<->ground link cut",
        "companion SIGKILL",
        "ground station SIGKILL mid-ingest",
        "ground station SIGKILL mid-delivery",
        "dispute receiver down",
        "spool disk full",
    ];
    for n in need {
        if !sum
            .faults
            .iter()
            .any(|f| f.fault.starts_with(n) && f.end_s.is_finite())
        {
            sum.problems.push(format!("fault `{n}` did not happen"));
        }
    }
    if !flowing {
        sum.problems
            .push("no case was seen being delivered when the ground station was killed".into());
    }
    if first_refusal == 0 {
        sum.problems
            .push("the spool never refused an alert while its disk was full".into());
    }
    if !sum.disk_full_logged {
        sum.problems
            .push("the companion's log never said SPOOL DISK FULL".into());
    }
    sum.ok = sum.problems.is_empty();
    Ok(sum)
}

async fn spool_depth(port: u16) -> Option<u64> {
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find(|l| l.starts_with("tiancha_companion_spool_depth "))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn tally(obs: &Obs, total: usize) -> anyhow::Result<Summary> {
    let ledger = obs.ledger();
    let raised = &ledger.accepted;
    let mut stored = None;
    let mut delivered = None;
    for _ in 0..30 {
        if stored.is_none() {
            stored = obs.stored().await.ok();
        }
        if delivered.is_none() {
            delivered = obs.delivered().await.ok();
        }
        if stored.is_some() && delivered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let stored = stored.context("the ground station's API did not answer")?;
    let delivered = delivered.context("the receiver did not answer")?;
    let mut s = Summary {
        alerts_raised: raised.len(),
        ..Summary::default()
    };
    let mut dup: HashSet<Uuid> = HashSet::new();
    let mut unexpected: HashSet<Uuid> = HashSet::new();
    let mut store_at: HashMap<Uuid, i64> = HashMap::new();
    for r in &stored {
        if store_at.insert(r.alert_id, r.received_unix_ms).is_some() {
            dup.insert(r.alert_id);
        }
        if !raised.contains_key(&r.alert_id) {
            unexpected.insert(r.alert_id);
        }
    }
    let mut deliver_at: HashMap<Uuid, i64> = HashMap::new();
    for c in &delivered {
        if c.requests > 1 {
            s.redelivery_requests += (c.requests - 1) as usize;
        }
        for id in &c.alert_ids {
            if deliver_at.insert(*id, c.first_unix_ms).is_some() {
                dup.insert(*id);
            }
            if !raised.contains_key(id) {
                unexpected.insert(*id);
            }
        }
    }
    s.alerts_stored = raised.keys().filter(|id| store_at.contains_key(id)).count();
    s.cases_delivered = raised
        .keys()
        .filter(|id| deliver_at.contains_key(id))
        .count();
    s.duplicates = dup.len();
    s.duplicate_ids = dup.iter().map(|u| u.to_string()).collect();
    s.missing_stored = raised
        .keys()
        .filter(|id| !store_at.contains_key(id))
        .map(|u| u.to_string())
        .collect();
    s.missing_delivered = raised
        .keys()
        .filter(|id| !deliver_at.contains_key(id))
        .map(|u| u.to_string())
        .collect();
    s.unexpected = unexpected.iter().map(|u| u.to_string()).collect();
    let mut store_delays: Vec<f64> = raised
        .iter()
        .filter_map(|(id, t)| Some((store_at.get(id)? - t) as f64 / 1000.0))
        .collect();
    store_delays.sort_by(|a, b| a.total_cmp(b));
    s.worst_raise_to_store_s = store_delays.last().copied().unwrap_or(f64::NAN);
    s.median_raise_to_store_s = store_delays
        .get(store_delays.len() / 2)
        .copied()
        .unwrap_or(f64::NAN);
    s.worst_raise_to_delivery_s = raised
        .iter()
        .filter_map(|(id, t)| Some((deliver_at.get(id)? - t) as f64 / 1000.0))
        .fold(f64::NAN, f64::max);
    for (_, reason) in &ledger.refused {
        let key = if reason.contains("disk is full") {
            "spool disk full".to_string()
        } else {
            reason.chars().take(60).collect()
        };
        *s.refusals.entry(key).or_default() += 1;
    }
    if s.alerts_raised != total {
        s.problems
            .push(format!("{} of {total} alerts raised", s.alerts_raised));
    }
    if s.alerts_raised < 500 {
        s.problems.push(format!(
            "only {} alerts raised (need 500 or more)",
            s.alerts_raised
        ));
    }
    if !(s.alerts_stored == s.alerts_raised && s.cases_delivered == s.alerts_raised) {
        s.problems.push(format!(
            "raised {} stored {} delivered {}",
            s.alerts_raised, s.alerts_stored, s.cases_delivered
        ));
    }
    if s.duplicates > 0 {
        s.problems.push(format!("{} duplicate ids", s.duplicates));
    }
    if !s.unexpected.is_empty() {
        s.problems
            .push(format!("{} ids never raised", s.unexpected.len()));
    }
    Ok(s)
}

fn print_summary(s: &Summary) {
    println!("\nfaults (seconds from the first alert):");
    println!("  {:<40} {:>8} {:>8}  note", "fault", "start", "end");
    for f in &s.faults {
        println!(
            "  {:<40} {:>8.1} {:>8.1}  {}",
            f.fault, f.start_s, f.end_s, f.note
        );
    }
    println!("\nchaos result (by id):");
    let rows: [(&str, String); 9] = [
        (
            "alerts raised (spool accepted)",
            s.alerts_raised.to_string(),
        ),
        (
            "alerts stored, each exactly once",
            s.alerts_stored.to_string(),
        ),
        (
            "cases delivered, each exactly once",
            s.cases_delivered.to_string(),
        ),
        ("duplicates", s.duplicates.to_string()),
        (
            "missing (not stored / not delivered)",
            format!("{} / {}", s.missing_stored.len(), s.missing_delivered.len()),
        ),
        ("ids never raised", s.unexpected.len().to_string()),
        (
            "raise→store worst (median)",
            format!(
                "{:.1} s ({:.2} s)",
                s.worst_raise_to_store_s, s.median_raise_to_store_s
            ),
        ),
        (
            "raise→delivery worst",
            format!("{:.1} s", s.worst_raise_to_delivery_s),
        ),
        (
            "case resends recognised by the receiver",
            s.redelivery_requests.to_string(),
        ),
    ];
    for (k, v) in rows {
        println!("  {k:<42} {v}");
    }
    for (k, v) in &s.refusals {
        println!("  {:<42} {v}", format!("offers refused: {k}"));
    }
    println!(
        "  {:<42} {}",
        "companion said SPOOL DISK FULL",
        if s.disk_full_logged { "yes" } else { "NO" }
    );
    println!("  {:<42} {:.0} s", "wall time from first alert", s.wall_s);
    if s.ok {
        println!("\nPASS: raised = stored = delivered, no duplicate, no missing id");
    } else {
        println!("\nFAIL: {}", s.problems.join("; "));
    }
}
