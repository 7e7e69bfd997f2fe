//! `tiancha demo`: the whole mission on one machine, in one command.
//!
//! Starts, as child processes of this same binary, each with its log in
//! the run directory:
//!
//! 1. `tiancha ground-station` with its embedded broker (the web UI's URL
//!    is printed, with a demo operator and its one-time password);
//! 2. `tiancha dispute-receiver`, the local dispute-system endpoint the
//!    ground station delivers cases to (signed, both routes);
//! 3. `tiancha sim` in fast time with realistic telemetry noise and the
//!    simulated gimbal camera rendering the Shangrao scenario
//!    (`examples/shangrao/scenario.toml`), streamed as RTP/H.264 over UDP;
//! 4. `tiancha companion` (`examples/demo/companion.toml`, ports filled
//!    in) running the eye on that stream, and serving the picture with
//!    the eye's tracks and incidents drawn on it over RTSP; the ground
//!    station pulls it (`[video.drones."sr-01"]`) for the browser's live
//!    video (WebRTC, MJPEG fallback) and, with `--record-video`, cuts a
//!    clip around each alert as case evidence (3 s before to 3 s after).
//!
//! Then, as an operator would, through the ground station's HTTP API
//! (Bearer API token): launches the patrol of `examples/demo/patrol.toml`,
//! waits until the drone has flown it and landed (asking for RTL when
//! `--duration` runs out), and prints a summary: incidents placed, alerts
//! raised (each matched to the nearest placed incident), geotag error per
//! incident (median, 95th percentile, 1-σ ellipse coverage), cases the
//! receiver got, latencies, commands and their results. The ground station
//! auto-forwards gathering and intrusion cases (`[[cases.auto_dispatch]]`).
//!
//! `--headless` stops everything after the summary; otherwise the
//! processes keep running for the UI until Ctrl-C. `--summary-json FILE`
//! writes the summary for scripts and tests.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::Value;
use tiancha_companion::config::CompanionConfig;
use tiancha_protocol::{CommandKind, PatrolSpec};
use tiancha_sim::camera::Scenario;

mod sitl;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Stop everything after the summary (default: keep running for the UI
    /// until Ctrl-C).
    #[arg(long)]
    pub headless: bool,
    /// Simulated seconds per real second. The demo flies in real time
    /// (1×) at the patrol's 5 m/s; faster than real time, the eye (2×3
    /// tiles, a few detector frames a second on two cores) sees each
    /// gathering in fewer frames.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Give the patrol at most this long (wall clock; `600`, `600s`, `10m`)
    /// before commanding RTL.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Run directory (logs, stores, spool); emptied first.
    #[arg(long, default_value = "var/demo")]
    pub dir: PathBuf,
    /// What the camera sees.
    #[arg(long, default_value = "examples/shangrao/scenario.toml")]
    pub scenario: PathBuf,
    /// The patrol to launch (a PatrolSpec in TOML).
    #[arg(long, default_value = "examples/demo/patrol.toml")]
    pub patrol: PathBuf,
    /// The companion's configuration (addresses and paths are filled in).
    #[arg(long, default_value = "examples/demo/companion.toml")]
    pub companion_config: PathBuf,
    /// The ground station's web UI port (0: any free port).
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Write the summary as JSON here too.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Cut the drone↔ground link (companion ↔ broker) mid-patrol:
    /// `START+LENGTH` after the patrol begins, e.g. `20s+2m`. The companion
    /// keeps patrolling and spools its alerts; the summary shows they all
    /// arrived after the link came back.
    #[arg(long, value_parser = parse_cut)]
    pub cut_ground_link: Option<(Duration, Duration)>,
    /// Have the ground station record the drone's video all the time and
    /// attach a clip (3 s before to 3 s after) to each alert's case. Off
    /// by default: the companion then encodes video only while someone
    /// watches, and on a 2-core machine the continuous encoding takes
    /// enough CPU from the eye (and the simulator's camera) to blur its
    /// geotags.
    #[arg(long)]
    pub record_video: bool,
    /// Which autopilot flies: `sim` (tiancha's simulated ArduCopter) or
    /// `ardupilot-sitl` (the real ArduCopter firmware in SITL, from
    /// `--sitl-dir`; the simulated camera then follows that vehicle's
    /// telemetry).
    #[arg(long, default_value = "sim", value_parser = ["sim", "ardupilot-sitl"])]
    pub autopilot: String,
    /// Where the prebuilt SITL autopilots are (`ardupilot/arducopter`,
    /// `ardupilot/copter.parm`): `$TIANCHA_SITL_DIR`, else `../shared/sitl`
    /// beside the checkout.
    #[arg(long, env = "TIANCHA_SITL_DIR", default_value = "../shared/sitl")]
    pub sitl_dir: PathBuf,
}

fn parse_cut(s: &str) -> Result<(Duration, Duration), String> {
    let (a, b) = s
        .split_once('+')
        .ok_or_else(|| format!("{s:?}: expected START+LENGTH, e.g. 20s+2m"))?;
    Ok((parse_duration(a)?, parse_duration(b)?))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected seconds (600, 600s) or minutes (10m)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(v * mul))
}

const DRONE: &str = "sr-01";
const HOME: (f64, f64, f64) = (28.4476392, 117.9383877, 70.0);

/// The children, stopped (killed) in reverse order when dropped.
struct Children(Vec<(String, Child)>);

impl Children {
    fn spawn(
        &mut self,
        name: &str,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("finding this executable")?;
        self.spawn_program(name, &exe, dir, dir, args, env)
    }

    /// Start `program` in `cwd`, its output in `{dir}/{name}.log`.
    fn spawn_program(
        &mut self,
        name: &str,
        exe: &Path,
        dir: &Path,
        cwd: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let log = std::fs::File::create(dir.join(format!("{name}.log")))
            .with_context(|| format!("creating {name}.log"))?;
        let mut c = Command::new(exe);
        c.current_dir(cwd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().with_context(|| format!("starting {name}"))?;
        self.0.push((name.to_string(), child));
        Ok(())
    }

    fn pid(&self, name: &str) -> Option<u32> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, c)| c.id())
    }

    /// The first child that has exited, with its status.
    fn exited(&mut self) -> Option<(String, std::process::ExitStatus)> {
        self.0
            .iter_mut()
            .find_map(|(n, c)| c.try_wait().ok().flatten().map(|s| (n.clone(), s)))
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in self.0.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn unix_ms() -> i64 {
    tiancha_protocol::unix_ms(std::time::SystemTime::now())
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_tcp(port: u16, what: &str, timeout: Duration, kids: &mut Children) -> anyhow::Result<()> {
    let until = Instant::now() + timeout;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some((n, s)) = kids.exited() {
            bail!("{n} exited ({s}) before {what} was up; see its log");
        }
        if Instant::now() > until {
            bail!("{what} did not open port {port} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// CPU time (user + system, s) and peak RSS (MB) of a process, from /proc.
fn proc_usage(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let hwm_kb = tiancha_inference::pipeline::proc_status_kb(Some(pid), "VmHWM:")?;
    // USER_HZ is 100 on Linux.
    Some((ticks / 100.0, hwm_kb as f64 / 1024.0))
}

/// 128 random bits, hex (route secrets, passwords of throwaway accounts).
pub(crate) fn secret() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom")?;
    Ok(hex::encode(b))
}

/// The `libonnxruntime.so` for a demo eye on onnxruntime: `ORT_DYLIB_PATH`,
/// else the one in the project's virtualenv (`TIANCHA_VENV`, else `.venv`;
/// `scripts/dev setup` installs the PyPI `onnxruntime` wheel there).
fn onnxruntime_library() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(p));
    }
    let venv = std::env::var_os("TIANCHA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".venv"));
    let found = tiancha_inference::onnxruntime_in_venv(&venv);
    found.ok_or_else(|| {
        anyhow::anyhow!(
            "the demo's eye runs on onnxruntime ([camera] backend = \"ort\"), and no libonnxruntime.so was found: \
             run `scripts/dev setup` (it installs the onnxruntime wheel into {}), or set ORT_DYLIB_PATH",
            venv.display()
        )
    })
}

/// The ground station's HTTP API with a Bearer token.
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
    /// The companion's Prometheus endpoint.
    metrics_url: String,
}

impl Api {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let st = r.status();
        let body = r.text().await?;
        if !st.is_success() {
            bail!("GET {path}: {st}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON"))
    }

    async fn command(&self, kind: &CommandKind) -> anyhow::Result<Value> {
        let path = format!("/api/drones/{DRONE}/commands");
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(kind)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let st = r.status();
        let body = r.text().await?;
        if !st.is_success() {
            bail!("POST {path}: {st}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// Frames the companion's eye has put through the detector
    /// (`tiancha_companion_frames_total`).
    async fn eye_frames(&self) -> Option<f64> {
        let text = self
            .http
            .get(&self.metrics_url)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("tiancha_companion_frames_total "))
            .and_then(|v| v.trim().parse().ok())
    }

    async fn drone(&self) -> Option<Value> {
        let v = self.get("/api/drones").await.ok()?;
        v.as_array()?
            .iter()
            .find(|d| d["drone_id"] == DRONE)
            .cloned()
    }
}

fn list(v: Value, key: &str) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove(key) {
            Some(Value::Array(a)) => a,
            _ => vec![],
        },
        _ => vec![],
    }
}

/// One row of the geotag table.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    pub alert_id: String,
    pub category: String,
    pub person_count: Option<i64>,
    /// The placed incident it matches (nearest within 40 m), if any.
    pub incident: Option<String>,
    pub error_m: Option<f64>,
    /// Truth inside the reported 1-σ ellipse.
    pub within_1_sigma: Option<bool>,
    /// The error in units of the reported ellipse (Mahalanobis distance).
    pub error_sigmas: Option<f64>,
    pub location_status: String,
    /// Capture → ground station, ms.
    pub latency_ms: i64,
    /// First seen by the drone (capture time) and received by the ground
    /// station, Unix ms.
    pub t_first_unix_ms: i64,
    pub received_unix_ms: i64,
}

/// The demo's summary.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    pub ui_url: String,
    pub incidents_placed: Vec<String>,
    pub incidents_in_view: Vec<String>,
    pub alerts: Vec<AlertRow>,
    /// Alerts per placed incident.
    pub alerts_per_incident: BTreeMap<String, usize>,
    /// Alerts matching no placed incident.
    pub unmatched_alerts: usize,
    pub geotag_error_median_m: Option<f64>,
    pub geotag_error_p95_m: Option<f64>,
    pub within_1_sigma_pct: Option<f64>,
    pub within_2_sigma_pct: Option<f64>,
    /// Every track-path point of the alerts against the nearest person of
    /// the matched incident: how well single people are placed.
    pub person_geotag_points: usize,
    pub person_geotag_error_median_m: Option<f64>,
    pub person_geotag_error_p95_m: Option<f64>,
    pub alert_latency_median_ms: Option<f64>,
    pub cases: usize,
    pub cases_delivered: usize,
    pub receiver_cases: usize,
    /// The route each case category reached the receiver on (case
    /// category → routes, one entry per case).
    pub receiver_routes: BTreeMap<String, Vec<String>>,
    /// (command, final status, reason)
    pub commands: Vec<(String, String, String)>,
    pub mission_states: Vec<String>,
    pub landed: bool,
    pub flight_s: f64,
    /// The companion process: peak RSS (MB, whole run) and CPU while
    /// patrolling (% of one core).
    pub companion_peak_rss_mb: Option<f64>,
    pub companion_cpu_patrol_pct: Option<f64>,
    pub patrol_wall_s: Option<f64>,
    /// Frames through the eye's detector per second of patrol (the
    /// companion's `frames` counter over the same span as the CPU).
    pub eye_detector_fps: Option<f64>,
    /// With `--cut-ground-link`: what happened around the cut.
    pub ground_link_cut: Option<CutReport>,
}

/// A cut in progress: when it began and ended (Unix ms), the drone's last
/// position before and first after, as the ground station saw them.
struct Cut {
    from: i64,
    to: Option<i64>,
    before: Option<(f64, f64)>,
    after: Option<(f64, f64)>,
}

/// The drone↔ground link cut of `--cut-ground-link`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CutReport {
    pub from_unix_ms: i64,
    pub to_unix_ms: i64,
    /// How far the drone flew while cut (its last position before and its
    /// first after, as the ground station saw them), m.
    pub flown_m: Option<f64>,
    /// Alerts first seen while the link was cut…
    pub alerts_raised: Vec<String>,
    /// …of which the ground station received after the link came back.
    pub received_after: usize,
    /// Connection attempts the cut link turned away (the companion trying).
    pub reconnects_refused: u64,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

fn resolve(p: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(p).with_context(|| {
        format!(
            "{} not found (run `tiancha demo` from the repository root, or give the path)",
            p.display()
        )
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !(0.1..=50.0).contains(&args.speed) {
        bail!("--speed {} must be within 0.1..=50", args.speed);
    }
    let scenario_path = resolve(&args.scenario)?;
    let scenario = Scenario::load(&scenario_path)?;
    let patrol_text = std::fs::read_to_string(resolve(&args.patrol)?)?;
    let patrol: PatrolSpec = toml::from_str(&patrol_text)
        .with_context(|| format!("{}: not a patrol spec", args.patrol.display()))?;
    let companion_path = resolve(&args.companion_config)?;
    let mut ccfg = CompanionConfig::load(&companion_path)?;
    let Some(cam) = ccfg.camera.as_mut() else {
        bail!(
            "{}: the demo needs a [camera] section",
            companion_path.display()
        );
    };
    cam.model_manifest = resolve(&cam.model_manifest)?;
    for e in &mut cam.extra_models {
        e.model_manifest = resolve(&e.model_manifest)?;
    }
    if cam.backend == "ort" && cam.ort_library.is_none() {
        cam.ort_library = Some(onnxruntime_library()?);
    }

    // A fresh run directory.
    let dir = args.dir.clone();
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("emptying the run directory {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let dir = std::fs::canonicalize(&dir)?;
    // Command signing: the ground station signs, the companion trusts only
    // this public key (docs/security.md).
    let key_path = dir.join("command-signing-key.pem");
    let signer = tiancha_ground_station::command_key::generate(&key_path)
        .context("creating the command signing key")?;

    let mqtt = free_port()?;
    let http = if args.http_port == 0 || TcpListener::bind(("127.0.0.1", args.http_port)).is_err() {
        free_port()?
    } else {
        args.http_port
    };
    let receiver = free_port()?;
    let mav = free_udp_port()?;
    let cam_port = free_udp_port()?;
    let metrics = free_port()?;
    // The companion's RTSP video out, which the ground station pulls.
    let video_port = free_port()?;
    let video_url = format!("rtsp://127.0.0.1:{video_port}{}", ccfg.video.rtsp_path);
    let gov = secret()?;
    let hotline = secret()?;
    let password = secret()?;

    // Ground station config: auto-forward gatherings and intrusions.
    let layers = resolve(Path::new("examples/ground-station/layers.geojson")).ok();
    let grid = resolve(Path::new("examples/ground-station/grid.geojson")).ok();
    let gs_conf = dir.join("ground-station.toml");
    let mut gs = format!(
        "data_dir = \"{data}\"\ninstance = \"demo\"\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\nsecure_cookies = false\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt}\n\
         [broker]\nembedded = true\nlisten = \"127.0.0.1:{mqtt}\"\n\
         [map]\ncenter = [{lat}, {lon}]\nzoom = 17\n",
        data = dir.join("ground-station").display(),
        lat = HOME.0 + 0.0015,
        lon = HOME.1 + 0.0015,
    );
    if let Some(l) = &layers {
        gs += &format!("layers = [\"{}\"]\n", l.display());
    }
    if let Some(g) = &grid {
        gs += &format!("grid = \"{}\"\n", g.display());
    }
    gs += &format!(
        "[commands]\nsigning_key_file = \"{}\"\n",
        key_path.display()
    );
    gs += &format!(
        "[cases]\nmerge_radius_m = 30\nmerge_window_min = 30\n\
         [[cases.auto_dispatch]]\ncategories = [\"gathering\", \"intrusion\", \"fire\"]\nmin_confidence = 0.0\n\
         [[dispatch.routes]]\nname = \"governance\"\nurl = \"http://127.0.0.1:{receiver}/governance/cases\"\n\
         secret_env = \"TIANCHA_GOV_SECRET\"\ncategories = [\"gathering\", \"intrusion\", \"fire\", \"smoke\", \"flood\", \"traffic_accident\"]\n\
         [[dispatch.routes]]\nname = \"hotline\"\nurl = \"http://127.0.0.1:{receiver}/hotline/cases\"\n\
         secret_env = \"TIANCHA_HOTLINE_SECRET\"\ndefault = true\n\
         [dispatch.retry]\ninitial_backoff_ms = 1000\nmax_backoff_ms = 5000\n"
    );
    // Live video next to the map (WebRTC, MJPEG fallback), and with
    // --record-video a clip around each alert as case evidence.
    gs += &format!(
        "[video]\npre_alert_s = 3\npost_alert_s = 3\n\
         [video.drones.\"{DRONE}\"]\nurl = \"{video_url}\"\nrecord = {}\n",
        args.record_video
    );
    std::fs::write(&gs_conf, gs)?;
    let gs_conf_s = gs_conf.display().to_string();
    let exe = std::env::current_exe()?;
    let st = Command::new(&exe)
        .args([
            "ground-station",
            "--config",
            gs_conf_s.as_str(),
            "user",
            "add",
            "demo",
            "--role",
            "operator",
            "--password-env",
            "TIANCHA_DEMO_PASSWORD",
        ])
        .env("TIANCHA_DEMO_PASSWORD", &password)
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("creating the demo operator failed ({st})");
    }
    let out = Command::new(&exe)
        .args([
            "ground-station",
            "--config",
            gs_conf_s.as_str(),
            "token",
            "create",
            "--user",
            "demo",
            "--label",
            "tiancha-demo",
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("creating the demo's API token failed ({})", out.status);
    }
    let token = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string();

    let secrets = [
        ("TIANCHA_GOV_SECRET", gov.as_str()),
        ("TIANCHA_HOTLINE_SECRET", hotline.as_str()),
    ];
    let mut kids = Children(vec![]);
    kids.spawn(
        "ground-station",
        &dir,
        &["ground-station", "--config", &gs_conf_s],
        &secrets,
    )?;
    wait_tcp(mqtt, "the broker", Duration::from_secs(30), &mut kids)?;
    wait_tcp(
        http,
        "the ground station",
        Duration::from_secs(30),
        &mut kids,
    )?;
    let ui_url = format!("http://127.0.0.1:{http}/");
    println!("ground station  {ui_url}  (user `demo`, password `{password}`)");

    kids.spawn(
        "dispute-receiver",
        &dir,
        &[
            "dispute-receiver",
            "--listen",
            &format!("127.0.0.1:{receiver}"),
            "--data-dir",
            &dir.join("receiver").display().to_string(),
            "--route",
            "governance=env:TIANCHA_GOV_SECRET",
            "--route",
            "hotline=env:TIANCHA_HOTLINE_SECRET",
            "--callback-url",
            &format!("http://127.0.0.1:{http}/api/callbacks/"),
            "--auto-callback",
            "received",
        ],
        &secrets,
    )?;
    wait_tcp(
        receiver,
        "the dispute receiver",
        Duration::from_secs(30),
        &mut kids,
    )?;
    println!("dispute system  http://127.0.0.1:{receiver}/ (governance, hotline)");

    let truth_log = dir.join("camera-truth.jsonl");
    let hfov = ccfg
        .camera
        .as_ref()
        .map_or(30.0, |c| c.hfov_deg)
        .to_string();
    let camera_args = [
        "--camera-scenario".to_string(),
        scenario_path.display().to_string(),
        "--camera-udp".into(),
        format!("127.0.0.1:{cam_port}"),
        "--camera-hfov".into(),
        hfov,
        "--camera-truth-log".into(),
        truth_log.display().to_string(),
        // 10 fps: the eye's tracker follows every camera frame between
        // detector frames (the overlay's boxes sit on the people); the
        // sim renders and encodes it for ~10 % of one core.
        "--camera-fps".into(),
        "10".into(),
    ];
    let home_arg = format!("{},{},{}", HOME.0, HOME.1, scenario.ground_alt_m);
    let autopilot_address = if args.autopilot == "ardupilot-sitl" {
        let sitl = sitl::start(
            &args.sitl_dir,
            &dir,
            args.speed,
            (HOME.0, HOME.1, scenario.ground_alt_m),
            &mut kids,
        )?;
        // The simulated camera rides on the real vehicle: it follows the
        // firmware's own telemetry on a second port.
        let mut a = vec![
            "sim".to_string(),
            "--follow".into(),
            sitl.second_port.clone(),
            "--follow-fixed-pitch".into(),
            ccfg.patrol.camera_gimbal_pitch_deg.to_string(),
        ];
        a.extend(camera_args.iter().cloned());
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        kids.spawn("sim", &dir, &a, &[])?;
        // ArduCopter SITL has no gimbal: the camera is fixed at the
        // patrol's pitch, and the companion geotags with the same.
        if let Some(c) = ccfg.camera.as_mut() {
            c.fixed_pitch_deg = Some(ccfg.patrol.camera_gimbal_pitch_deg);
        }
        println!(
            "autopilot       ArduCopter SITL (real firmware), {}x speed, {}; camera follows it ({:?}, {} incident(s)) → RTP/H.264 10 fps, udp 127.0.0.1:{cam_port}",
            args.speed,
            sitl.companion_port,
            scenario.name,
            scenario.incidents.len()
        );
        sitl.companion_port
    } else {
        let mut a = vec![
            "sim".to_string(),
            "--listen".into(),
            format!("udpin:127.0.0.1:{mav}"),
            "--home".into(),
            home_arg,
            "--speed".into(),
            args.speed.to_string(),
            "--noise".into(),
        ];
        a.extend(camera_args.iter().cloned());
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        kids.spawn("sim", &dir, &a, &[])?;
        println!(
            "simulator       {}x speed, home {:.5},{:.5}; camera scenario {:?} ({} incident(s)) → RTP/H.264 10 fps, udp 127.0.0.1:{cam_port}",
            args.speed,
            HOME.0,
            HOME.1,
            scenario.name,
            scenario.incidents.len()
        );
        format!("udpout:127.0.0.1:{mav}")
    };

    // The companion reaches the broker through a relay the demo can cut.
    let link = crate::link_cut::LinkCut::start(([127, 0, 0, 1], mqtt).into())
        .context("starting the ground-link relay")?;
    ccfg.mqtt.host = "127.0.0.1".into();
    ccfg.mqtt.port = link.port();
    ccfg.spool.path = dir.join("companion-spool.db");
    ccfg.autopilot.address = autopilot_address;
    if let Some(c) = ccfg.camera.as_mut() {
        c.uri = format!("udp://127.0.0.1:{cam_port}");
        c.ground_alt_m = Some(scenario.ground_alt_m);
    }
    ccfg.metrics_listen = Some(([127, 0, 0, 1], metrics).into());
    // Live video out (RTSP, overlay drawn) for the ground station to pull.
    ccfg.video.enabled = true;
    ccfg.video.rtsp_address = "127.0.0.1".into();
    ccfg.video.rtsp_port = video_port;
    ccfg.commands.ground_station_public_keys = vec![signer.public_key().to_string()];
    let cconf = dir.join("companion.toml");
    std::fs::write(&cconf, toml::to_string(&ccfg)?)?;
    kids.spawn(
        "companion",
        &dir,
        &["companion", "--config", &cconf.display().to_string()],
        &[],
    )?;
    println!(
        "companion       drone {DRONE}, metrics http://127.0.0.1:{metrics}/metrics, logs in {}",
        dir.display()
    );
    println!(
        "live video      {video_url} (H.264, tracks and incidents drawn; in the browser next to the map{})",
        if args.record_video {
            "; a clip around each alert"
        } else {
            ""
        }
    );

    let rt = tokio::runtime::Runtime::new()?;
    let api = Api {
        base: format!("http://127.0.0.1:{http}"),
        token,
        http: reqwest::Client::new(),
        metrics_url: format!("http://127.0.0.1:{metrics}/metrics"),
    };
    let summary = rt.block_on(async {
        tokio::select! {
            r = fly(&args, &mut kids, api, patrol, &scenario, &truth_log, &dir, receiver, ui_url, &link) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted: stopping everything")),
        }
    })?;
    print_summary(&summary);
    if let Some(p) = &args.summary_json {
        std::fs::write(p, serde_json::to_string_pretty(&summary)?)?;
    }
    if !args.headless {
        println!(
            "\nstill running: the ground station is at {} — Ctrl-C stops everything",
            summary.ui_url
        );
        rt.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
    }
    drop(kids);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn fly(
    args: &Args,
    kids: &mut Children,
    api: Api,
    patrol: PatrolSpec,
    scenario: &Scenario,
    truth_log: &Path,
    dir: &Path,
    receiver_port: u16,
    ui_url: String,
    link: &crate::link_cut::LinkCut,
) -> anyhow::Result<Summary> {
    // Wait until the drone says its autopilot is ready to launch (GPS,
    // EKF, its own pre-arm checks, home: the companion's readiness), and
    // the eye is up.
    let t0 = Instant::now();
    let mut last_reason = String::new();
    loop {
        if let Some((n, s)) = kids.exited() {
            bail!("{n} exited ({s}); see {}/{n}.log", dir.display());
        }
        if let Some(d) = api.drone().await {
            let status = &d["status"];
            let links = &status["links"];
            if status["readiness"]["ready"] == true
                && links["autopilot"] == "up"
                && links["camera"] == "up"
            {
                break;
            }
            if let Some(r) = status["readiness"]["reason"].as_str() {
                last_reason = r.to_string();
            }
        }
        if t0.elapsed() > Duration::from_secs(180) {
            bail!(
                "the drone was not ready with a working camera within 180 s (autopilot: {last_reason}); see {}/companion.log",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "drone ready     after {:.0} s (autopilot ready to launch, camera up)",
        t0.elapsed().as_secs_f64()
    );

    let mut commands = vec![];
    if !scenario.zones.is_empty() {
        let z = api
            .command(&CommandKind::SetDetectionZones {
                zones: scenario.zones.clone(),
            })
            .await?;
        let id = z["command_id"].as_str().unwrap_or_default().to_string();
        println!(
            "detection zones {} sent ({})",
            scenario.zones.len(),
            scenario
                .zones
                .iter()
                .map(|z| z.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        commands.push(("set_detection_zones".to_string(), id));
    }
    let launch = api.command(&CommandKind::LaunchPatrol { patrol }).await?;
    let launch_id = launch["command_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    commands.push(("launch_patrol".to_string(), launch_id.clone()));
    println!("launch patrol   sent (command {launch_id})");
    let started = Instant::now();
    let mut armed_seen = false;
    let mut rtl_sent = false;
    let mut last_state = String::new();
    let mut states = vec![];
    let companion_pid = kids.pid("companion");
    let mut patrol_start: Option<(Instant, f64)> = None;
    let mut eye_frames_start: Option<f64> = None;
    let mut eye_fps: Option<f64> = None;
    let mut patrol_cpu: Option<(f64, f64)> = None;
    let mut peak_rss: Option<f64> = None;
    let mut patrolling_since: Option<Instant> = None;
    let mut cut: Option<Cut> = None;
    let mut last_pos: Option<(f64, f64)> = None;
    let landed = loop {
        let usage = companion_pid.and_then(proc_usage);
        if let Some((_, rss)) = usage {
            peak_rss = Some(rss.max(peak_rss.unwrap_or(0.0)));
        }
        if let Some((n, s)) = kids.exited() {
            bail!("{n} exited ({s}); see {}/{n}.log", dir.display());
        }
        if let Some(d) = api.drone().await {
            let state = d["status"]["state"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let armed = d["status"]["armed"].as_bool().unwrap_or(false);
            if state != last_state {
                if let Some((cpu, _)) = usage {
                    // From the patrol's start to its end (a cut ground link
                    // shows as "offline" meanwhile: still patrolling).
                    let ended = matches!(state.as_str(), "returning" | "landing" | "on the ground");
                    if state == "patrolling" && patrol_start.is_none() {
                        patrol_start = Some((Instant::now(), cpu));
                        eye_frames_start = api.eye_frames().await;
                    } else if ended && patrol_cpu.is_none() {
                        if let Some((t, c0)) = patrol_start {
                            let wall = t.elapsed().as_secs_f64();
                            patrol_cpu = Some((100.0 * (cpu - c0) / wall.max(1e-3), wall));
                            if let (Some(f0), Some(f1)) = (eye_frames_start, api.eye_frames().await)
                            {
                                eye_fps = Some((f1 - f0) / wall.max(1e-3));
                            }
                        }
                    }
                }
                println!("  {:>6.1} s  {state}", started.elapsed().as_secs_f64());
                last_state = state.clone();
                states.push(state.clone());
            }
            let pos = (
                d["telemetry"]["position"]["lat_deg"].as_f64(),
                d["telemetry"]["position"]["lon_deg"].as_f64(),
            );
            if let (Some(a), Some(b)) = pos {
                if last_pos != Some((a, b)) {
                    if let Some(c) = cut.as_mut().filter(|c| c.to.is_some() && c.after.is_none()) {
                        c.after = Some((a, b));
                    }
                    last_pos = Some((a, b));
                }
            }
            if state == "patrolling" && patrolling_since.is_none() {
                patrolling_since = Some(Instant::now());
            }
            if let (Some((at, len)), Some(p)) = (args.cut_ground_link, patrolling_since) {
                let now = unix_ms();
                match &mut cut {
                    None if p.elapsed() >= at => {
                        link.set_cut(true);
                        println!(
                            "  {:>6.1} s  ground link CUT for {:.0} s",
                            started.elapsed().as_secs_f64(),
                            len.as_secs_f64()
                        );
                        cut = Some(Cut {
                            from: now,
                            to: None,
                            before: last_pos,
                            after: None,
                        });
                    }
                    Some(c) if c.to.is_none() && p.elapsed() >= at + len => {
                        link.set_cut(false);
                        println!(
                            "  {:>6.1} s  ground link restored",
                            started.elapsed().as_secs_f64()
                        );
                        c.to = Some(now);
                    }
                    _ => {}
                }
            }
            armed_seen |= armed;
            if armed_seen && !armed && state == "on the ground" {
                break true;
            }
        }
        // A refused or failed launch ends the demo early.
        if let Some((st, reason)) = final_result(&api, &launch_id).await {
            if st != "succeeded" && !armed_seen {
                println!("launch {st}: {reason}");
                break false;
            }
        }
        if !rtl_sent && started.elapsed() > args.duration {
            println!("--duration reached: return to launch");
            let r = api.command(&CommandKind::ReturnToLaunch).await?;
            commands.push((
                "return_to_launch".into(),
                r["command_id"].as_str().unwrap_or_default().to_string(),
            ));
            rtl_sent = true;
        }
        if started.elapsed() > args.duration + Duration::from_secs(300) {
            println!("the drone did not land within 5 min of the RTL");
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let flight_s = started.elapsed().as_secs_f64();
    // Let the last alerts, updates and case deliveries arrive.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut s = summarize(
        &api,
        commands,
        scenario,
        truth_log,
        receiver_port,
        ui_url,
        landed,
        flight_s,
    )
    .await?;
    if let Some(Cut {
        from,
        to,
        before,
        after,
    }) = cut
    {
        let to = to.unwrap_or_else(|| {
            link.set_cut(false);
            unix_ms()
        });
        let raised: Vec<&AlertRow> = s
            .alerts
            .iter()
            .filter(|a| (from..=to).contains(&a.t_first_unix_ms))
            .collect();
        s.ground_link_cut = Some(CutReport {
            from_unix_ms: from,
            to_unix_ms: to,
            flown_m: before.zip(after).map(|(a, b)| {
                // Equirectangular: ample for the few hundred metres of a cut.
                let dn = (b.0 - a.0) * 111_320.0;
                let de = (b.1 - a.1) * 111_320.0 * a.0.to_radians().cos();
                dn.hypot(de)
            }),
            received_after: raised.iter().filter(|a| a.received_unix_ms >= to).count(),
            alerts_raised: raised.iter().map(|a| a.alert_id.clone()).collect(),
            reconnects_refused: link.refused(),
        });
    }
    s.mission_states = states;
    s.companion_peak_rss_mb = peak_rss;
    s.companion_cpu_patrol_pct = patrol_cpu.map(|c| c.0);
    s.patrol_wall_s = patrol_cpu.map(|c| c.1);
    s.eye_detector_fps = eye_fps;
    Ok(s)
}

async fn final_result(api: &Api, id: &str) -> Option<(String, String)> {
    let rows = api
        .get(&format!("/api/drones/{DRONE}/commands"))
        .await
        .ok()?;
    let row = list(rows, "commands")
        .into_iter()
        .find(|r| r["command"]["command_id"] == id)?;
    row["results"]
        .as_array()?
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap_or_default().to_string(),
                r["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .find(|(s, _)| !matches!(s.as_str(), "accepted" | "in_progress"))
}

/// Where each placed incident's people stood (centroid), and where each
/// fire burns, by incident id.
fn incident_truth(scenario: &Scenario, sim_time_s: f64) -> BTreeMap<String, (f64, f64)> {
    let mut acc: BTreeMap<usize, (f64, f64, f64)> = BTreeMap::new();
    for p in scenario.people_at(sim_time_s) {
        let e = acc.entry(p.incident).or_default();
        e.0 += p.at.lat_deg;
        e.1 += p.at.lon_deg;
        e.2 += 1.0;
    }
    let mut truth: BTreeMap<String, (f64, f64)> = acc
        .into_iter()
        .map(|(i, (a, b, n))| (scenario.incidents[i].id.clone(), (a / n, b / n)))
        .collect();
    for (_, inc) in scenario.fires_at(sim_time_s) {
        if let Some(at) = inc.kind.fire_at() {
            truth.insert(inc.id.clone(), (at.lat_deg, at.lon_deg));
        }
    }
    truth
}

#[allow(clippy::too_many_arguments)]
async fn summarize(
    api: &Api,
    commands: Vec<(String, String)>,
    scenario: &Scenario,
    truth_log: &Path,
    receiver_port: u16,
    ui_url: String,
    landed: bool,
    flight_s: f64,
) -> anyhow::Result<Summary> {
    // Which incidents the camera actually had in view, from its ground truth.
    let mut in_view = std::collections::BTreeSet::new();
    let mut last_sim_s = 0.0;
    if let Ok(text) = std::fs::read_to_string(truth_log) {
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            last_sim_s = v["sim_time_s"].as_f64().unwrap_or(last_sim_s);
            let fires_in_view = v["fires"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["in_image"] == true);
            for p in v["people"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(fires_in_view)
            {
                if let Some(i) = p["incident"].as_str() {
                    in_view.insert(i.to_string());
                } else if let Some(i) = p["incident"].as_u64() {
                    if let Some(inc) = scenario.incidents.get(i as usize) {
                        in_view.insert(inc.id.clone());
                    }
                }
            }
        }
    }
    let truth = incident_truth(scenario, last_sim_s);
    let people = scenario.people_at(last_sim_s);
    // Per-person geotag errors: every point of every track path an alert
    // carries, against the nearest person of the incident it matched.
    let mut person_errs: Vec<f64> = vec![];
    let alerts = list(api.get("/api/alerts?limit=1000").await?, "alerts");
    let mut rows = vec![];
    let mut per: BTreeMap<String, usize> = scenario
        .incidents
        .iter()
        .map(|i| (i.id.clone(), 0))
        .collect();
    let mut unmatched = 0;
    for a in &alerts {
        let id = a["alert_id"].as_str().unwrap_or_default().to_string();
        let full = api.get(&format!("/api/alerts/{id}")).await.ok();
        let alert = full.as_ref().map(|f| {
            if f["alert"].is_object() {
                &f["alert"]
            } else {
                f
            }
        });
        let loc = alert.map(|a| &a["location"]).filter(|l| l.is_object());
        let status = alert
            .and_then(|a| a["location_status"].as_str())
            .unwrap_or("unknown")
            .to_string();
        let (mut incident, mut error_m, mut within, mut sigmas) = (None, None, None, None);
        if let (Some(lat), Some(lon)) = (a["lat_deg"].as_f64(), a["lon_deg"].as_f64()) {
            let m_lat = 111_320.0;
            let m_lon = 111_320.0 * lat.to_radians().cos();
            let best = truth
                .iter()
                .map(|(k, (tl, tn))| (k, (tl - lat) * m_lat, (tn - lon) * m_lon))
                .map(|(k, dn, de)| (k, dn, de, (dn * dn + de * de).sqrt()))
                .min_by(|a, b| a.3.total_cmp(&b.3));
            if let Some((k, dn, de, d)) = best {
                if d <= 40.0 {
                    incident = Some(k.clone());
                    error_m = Some(d);
                    if let Some(l) = loc {
                        let s = &l["sigma"];
                        let (maj, min, ori) = (
                            s["semi_major_m"].as_f64().unwrap_or(0.0),
                            s["semi_minor_m"].as_f64().unwrap_or(0.0),
                            s["orientation_deg"].as_f64().unwrap_or(0.0).to_radians(),
                        );
                        // Orientation: of the major axis, clockwise from north.
                        let u = dn * ori.cos() + de * ori.sin();
                        let v = -dn * ori.sin() + de * ori.cos();
                        sigmas = (maj > 0.0 && min > 0.0)
                            .then(|| ((u / maj).powi(2) + (v / min).powi(2)).sqrt());
                        within = Some(sigmas.is_some_and(|m| m <= 1.0));
                    }
                }
            }
        }
        match &incident {
            Some(k) => *per.entry(k.clone()).or_default() += 1,
            None => unmatched += 1,
        }
        if let (Some(k), Some(al)) = (&incident, alert) {
            let mine: Vec<(f64, f64)> = people
                .iter()
                .filter(|p| {
                    scenario
                        .incidents
                        .get(p.incident)
                        .is_some_and(|i| &i.id == k)
                })
                .map(|p| (p.at.lat_deg, p.at.lon_deg))
                .collect();
            for t in al["tracks"].as_array().into_iter().flatten() {
                for pt in t["path"].as_array().into_iter().flatten() {
                    let (Some(lat), Some(lon)) = (pt["lat_deg"].as_f64(), pt["lon_deg"].as_f64())
                    else {
                        continue;
                    };
                    let m_lon = 111_320.0 * lat.to_radians().cos();
                    if let Some(d) = mine
                        .iter()
                        .map(|(tl, tn)| ((tl - lat) * 111_320.0).hypot((tn - lon) * m_lon))
                        .min_by(f64::total_cmp)
                    {
                        person_errs.push(d);
                    }
                }
            }
        }
        rows.push(AlertRow {
            alert_id: id,
            category: a["category"].as_str().unwrap_or_default().to_string(),
            person_count: a["person_count"].as_i64(),
            incident,
            error_m,
            within_1_sigma: within,
            error_sigmas: sigmas,
            location_status: status,
            latency_ms: a["received_unix_ms"].as_i64().unwrap_or(0)
                - a["t_unix_ms"].as_i64().unwrap_or(0),
            t_first_unix_ms: alert
                .and_then(|a| a["t_first_unix_ms"].as_i64())
                .or(a["t_first_unix_ms"].as_i64())
                .unwrap_or(0),
            received_unix_ms: a["received_unix_ms"].as_i64().unwrap_or(0),
        });
    }
    let mut errs: Vec<f64> = rows.iter().filter_map(|r| r.error_m).collect();
    errs.sort_by(f64::total_cmp);
    let mut lat: Vec<f64> = rows.iter().map(|r| r.latency_ms as f64).collect();
    lat.sort_by(f64::total_cmp);
    let ell: Vec<bool> = rows.iter().filter_map(|r| r.within_1_sigma).collect();
    person_errs.sort_by(f64::total_cmp);
    let cases = list(
        api.get("/api/cases?limit=500").await.unwrap_or(Value::Null),
        "cases",
    );
    let delivered = cases
        .iter()
        .filter(|c| {
            c["delivery"]
                .as_str()
                .is_some_and(|d| d == "delivered" || d == "acknowledged")
        })
        .count();
    let received = receiver_routes(api, receiver_port).await;
    let receiver_cases = received.len();
    let mut routes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &cases {
        let (Some(id), Some(cat)) = (c["case_id"].as_str(), c["category"].as_str()) else {
            continue;
        };
        if let Some(r) = received.get(id) {
            routes.entry(cat.to_string()).or_default().push(r.clone());
        }
    }
    let mut cmd_rows = vec![];
    for (name, id) in &commands {
        let (st, reason) = final_result(api, id)
            .await
            .unwrap_or(("no result".into(), String::new()));
        cmd_rows.push((name.clone(), st, reason));
    }
    Ok(Summary {
        ui_url,
        incidents_placed: scenario.incidents.iter().map(|i| i.id.clone()).collect(),
        incidents_in_view: in_view.into_iter().collect(),
        alerts_per_incident: per,
        unmatched_alerts: unmatched,
        geotag_error_median_m: percentile(&errs, 0.5),
        geotag_error_p95_m: percentile(&errs, 0.95),
        within_1_sigma_pct: (!ell.is_empty())
            .then(|| 100.0 * ell.iter().filter(|b| **b).count() as f64 / ell.len() as f64),
        within_2_sigma_pct: {
            let m: Vec<f64> = rows.iter().filter_map(|r| r.error_sigmas).collect();
            (!m.is_empty())
                .then(|| 100.0 * m.iter().filter(|x| **x <= 2.0).count() as f64 / m.len() as f64)
        },
        alert_latency_median_ms: percentile(&lat, 0.5),
        person_geotag_points: person_errs.len(),
        person_geotag_error_median_m: percentile(&person_errs, 0.5),
        person_geotag_error_p95_m: percentile(&person_errs, 0.95),
        cases: cases.len(),
        cases_delivered: delivered,
        receiver_cases,
        receiver_routes: routes,
        commands: cmd_rows,
        mission_states: vec![],
        landed,
        flight_s,
        alerts: rows,
        ..Summary::default()
    })
}

/// Cases the dispute receiver recorded (its `GET /cases`): case id →
/// the route it arrived on.
async fn receiver_routes(api: &Api, port: u16) -> BTreeMap<String, String> {
    let Ok(r) = api
        .http
        .get(format!("http://127.0.0.1:{port}/cases"))
        .send()
        .await
    else {
        return BTreeMap::new();
    };
    let cases = r.json::<Value>().await.map(|v| list(v, "cases"));
    cases
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let key = c["idempotency_key"].as_str()?;
            let id = key.split_once(".rev").map_or(key, |(id, _)| id);
            Some((id.to_string(), c["route"].as_str()?.to_string()))
        })
        .collect()
}

fn print_summary(s: &Summary) {
    println!("\n=== tiancha demo summary ===");
    println!(
        "flight          {:.0} s wall clock, landed: {}",
        s.flight_s,
        if s.landed { "yes" } else { "NO" }
    );
    println!(
        "incidents       {} placed ({}), {} in the camera's view ({})",
        s.incidents_placed.len(),
        s.incidents_placed.join(", "),
        s.incidents_in_view.len(),
        s.incidents_in_view.join(", ")
    );
    println!(
        "alerts          {} raised, {} matching no placed incident",
        s.alerts.len(),
        s.unmatched_alerts
    );
    for (k, n) in &s.alerts_per_incident {
        println!("  {k:<22} {n} alert(s)");
    }
    println!(
        "\n  {:<38} {:<10} {:>6} {:<18} {:>9} {:>7} {:>11}",
        "alert", "category", "people", "incident", "error m", "in 1σ", "latency ms"
    );
    for a in &s.alerts {
        println!(
            "  {:<38} {:<10} {:>6} {:<18} {:>9} {:>7} {:>11}",
            a.alert_id,
            a.category,
            a.person_count.map(|c| c.to_string()).unwrap_or("-".into()),
            a.incident.as_deref().unwrap_or("(none)"),
            a.error_m
                .map(|e| format!("{e:.2}"))
                .unwrap_or(a.location_status.clone()),
            a.within_1_sigma
                .map(|b| if b { "yes" } else { "no" })
                .unwrap_or("-"),
            a.latency_ms
        );
    }
    let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or("-".into());
    println!(
        "\ngeotag error    median {} m, p95 {} m; truth inside the 1-σ ellipse in {} % of alerts, inside 2 σ in {} %",
        f(s.geotag_error_median_m),
        f(s.geotag_error_p95_m),
        s.within_1_sigma_pct
            .map(|x| format!("{x:.0}"))
            .unwrap_or("-".into()),
        s.within_2_sigma_pct
            .map(|x| format!("{x:.0}"))
            .unwrap_or("-".into())
    );
    println!(
        "                (a calibrated 2-D 1-σ ellipse holds the truth 39 % of the time; 2 σ: 86 %)"
    );
    println!(
        "person geotags  {} track points: median {} m, p95 {} m from the nearest placed person",
        s.person_geotag_points,
        f(s.person_geotag_error_median_m),
        f(s.person_geotag_error_p95_m)
    );
    println!(
        "latency         capture → ground station, median {} ms",
        f(s.alert_latency_median_ms)
    );
    println!(
        "cases           {} at the ground station, {} delivered; the dispute receiver holds {}",
        s.cases, s.cases_delivered, s.receiver_cases
    );
    for (category, routes) in &s.receiver_routes {
        println!("  {category:<13} → {}", routes.join(", "));
    }
    if let (Some(rss), Some(cpu), Some(w)) = (
        s.companion_peak_rss_mb,
        s.companion_cpu_patrol_pct,
        s.patrol_wall_s,
    ) {
        println!(
            "companion       peak RSS {rss:.0} MB; CPU while patrolling {cpu:.0} % of one core (over {w:.0} s)"
        );
    }
    if let Some(fps) = s.eye_detector_fps {
        println!("eye             {fps:.1} frames/s through the detector while patrolling");
    }
    if let Some(c) = &s.ground_link_cut {
        println!(
            "ground link     cut for {:.0} s; the drone flew {} m meanwhile; {} alert(s) raised while cut, {} received after the link came back; {} reconnect(s) turned away",
            (c.to_unix_ms - c.from_unix_ms) as f64 / 1000.0,
            c.flown_m.map(|m| format!("{m:.0}")).unwrap_or("?".into()),
            c.alerts_raised.len(),
            c.received_after,
            c.reconnects_refused
        );
    }
    println!("commands");
    for (n, st, r) in &s.commands {
        println!("  {n:<18} {st:<10} {r}");
    }
}
