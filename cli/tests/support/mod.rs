//! Helpers for tests that run real processes on loopback: the `tiancha`
//! binary, mosquitto, free ports, waiting for things.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub fn tiancha_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tiancha")
}

/// A child process killed (SIGKILL) when dropped, with its output in a log
/// file under the test's directory.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, dir: &Path, program: &str, args: &[&str]) -> Proc {
        Self::spawn_env(name, dir, program, args, &[])
    }

    /// [`Proc::spawn`] with extra environment variables (they win over
    /// the default `RUST_LOG`).
    pub fn spawn_env(
        name: &str,
        dir: &Path,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info,rumqttd=warn")
            .envs(env.iter().copied())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Proc {
            name: name.into(),
            child,
            log,
        }
    }

    pub fn tiancha(name: &str, dir: &Path, args: &[&str]) -> Proc {
        Self::spawn(name, dir, tiancha_bin(), args)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (for brokers that save state on a clean stop).
    pub fn terminate(&mut self) {
        unsafe_kill(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for exit; panics with the log tail on timeout.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "{} did not finish within {timeout:?}; log tail:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let v: Vec<&str> = text.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listens on port {port} after {timeout:?}");
}

/// Poll `f` until it returns Some, or panic with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The MQTT broker under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// rumqttd, as `tiancha broker`.
    Embedded,
    /// Debian's mosquitto, persistence on.
    Mosquitto,
}

pub struct Broker {
    pub kind: BrokerKind,
    pub port: u16,
    dir: PathBuf,
    pub proc: Proc,
}

impl Broker {
    pub fn start(kind: BrokerKind, dir: &Path, port: u16) -> Broker {
        let proc = Self::spawn(kind, dir, port);
        wait_port(port, Duration::from_secs(10));
        Broker {
            kind,
            port,
            dir: dir.to_path_buf(),
            proc,
        }
    }

    fn spawn(kind: BrokerKind, dir: &Path, port: u16) -> Proc {
        match kind {
            BrokerKind::Embedded => Proc::tiancha(
                "broker",
                dir,
                &["broker", "--listen", &format!("127.0.0.1:{port}")],
            ),
            BrokerKind::Mosquitto => {
                let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
                    .into_iter()
                    .find(|p| Path::new(p).exists())
                    .expect("mosquitto is not installed (scripts/dev setup installs it)");
                let conf = dir.join("mosquitto.conf");
                let store = dir.join("mosquitto-data");
                std::fs::create_dir_all(&store).unwrap();
                let mut f = std::fs::File::create(&conf).unwrap();
                // `user root` keeps mosquitto from dropping privileges to a
                // user that cannot write our temp dir.
                writeln!(
                    f,
                    "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                     persistence_location {}/\nmax_queued_messages 0\nmax_inflight_messages 100\n\
                     user root\nlog_dest stderr",
                    store.display()
                )
                .unwrap();
                Proc::spawn("mosquitto", dir, bin, &["-c", conf.to_str().unwrap()])
            }
        }
    }

    /// Stop (cleanly for mosquitto, which saves its sessions; rumqttd has
    /// nothing to save) and start again on the same port.
    pub fn restart(&mut self) {
        self.proc.terminate();
        std::thread::sleep(Duration::from_millis(500));
        self.proc = Self::spawn(self.kind, &self.dir, self.port);
        wait_port(self.port, Duration::from_secs(10));
    }
}

/// Write a ground-station config using an external broker.
pub fn ground_station_config(
    dir: &Path,
    mqtt_port: u16,
    http_port: u16,
    embedded: bool,
) -> PathBuf {
    let path = dir.join("gs.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\ninstance = \"test\"\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\
             [mqtt]\nport = {mqtt_port}\n[broker]\nembedded = {embedded}\nlisten = \"127.0.0.1:{mqtt_port}\"\n",
            dir.join("gs-data").display()
        ),
    )
    .unwrap();
    path
}

pub fn store_path(dir: &Path) -> PathBuf {
    dir.join("gs-data").join("store.db")
}

/// Open the ground station's store read-only (it may be running).
pub fn open_store(dir: &Path) -> Option<rusqlite::Connection> {
    let p = store_path(dir);
    if !p.exists() {
        return None;
    }
    let c = rusqlite::Connection::open_with_flags(
        p,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    c.busy_timeout(Duration::from_secs(5)).ok()?;
    Some(c)
}

pub fn count(dir: &Path, sql: &str) -> i64 {
    open_store(dir)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)).ok())
        .unwrap_or(-1)
}

/// A drone test double on MQTT (until the companion daemon exists): it
/// publishes status and 2 Hz telemetry, and answers every command on its
/// commands topic with `accepted` then `succeeded` (QoS 1), as the
/// companion will.
pub struct DroneDouble {
    answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DroneDouble {
    pub fn start(mqtt_port: u16, drone: &str) -> DroneDouble {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let answered = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut opts = rumqttc::MqttOptions::new(format!("double-{drone}"), "127.0.0.1", mqtt_port);
        opts.set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = rumqttc::Client::new(opts, 100);
        let drone = drone.to_string();
        let base = format!("tiancha/v1/drones/{drone}");
        client
            .subscribe(format!("{base}/commands"), rumqttc::QoS::AtLeastOnce)
            .unwrap();
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
        };
        let status = serde_json::json!({"schema": 1, "drone_id": drone, "t_unix_ms": now(), "online": true,
            "state": "patrolling", "mode": "AUTO", "armed": true, "battery_pct": 76.0,
            "links": {"autopilot": "up", "camera": "up", "ground": "up"}, "spool_depth": 0, "software_version": "double",
            "readiness": {"ready": false, "reason": "EKF not ready (flags 0x00a7) (autopilot: PreArm: Need Position Estimate)"},
            "rtl_target": {"position": {"lat_deg": 28.4512, "lon_deg": 117.9431}, "rally_point": 2,
                           "description": "rally point 2 (28.451200, 117.943100), 170 m from home"}});
        client
            .publish(
                format!("{base}/status"),
                rumqttc::QoS::AtLeastOnce,
                true,
                status.to_string(),
            )
            .unwrap();
        {
            let (c, d, b, s) = (client.clone(), drone.clone(), base.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0.0f64;
                while !s.load(Ordering::Relaxed) {
                    let (lat, lon) = (
                        28.4490 + 0.0004 * (i / 10.0).sin(),
                        117.9410 + 0.0006 * (i / 10.0).cos(),
                    );
                    let t = serde_json::json!({"schema": 1, "drone_id": d, "t_unix_ms": now(),
                        "position": {"lat_deg": lat, "lon_deg": lon, "alt_m": 130.0, "alt_rel_m": 60.0},
                        "attitude": {"roll_deg": 0.0, "pitch_deg": 0.0, "yaw_deg": (i * 6.0) % 360.0},
                        "battery": {"remaining_pct": 76.0}, "mode": "AUTO", "armed": true, "in_air": true,
                        "mission": {"current_seq": 3, "total": 42},
                        "home": {"lat_deg": 28.4476392, "lon_deg": 117.9383877, "alt_m": 70.0}});
                    let _ = c.try_publish(
                        format!("{b}/telemetry"),
                        rumqttc::QoS::AtMostOnce,
                        false,
                        t.to_string(),
                    );
                    i += 1.0;
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
        }
        {
            let (a, s) = (answered.clone(), stop.clone());
            std::thread::spawn(move || {
                for ev in conn.iter() {
                    if s.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) = ev else {
                        if ev.is_err() {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        continue;
                    };
                    let Ok(cmd) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
                        continue;
                    };
                    for status in ["accepted", "succeeded"] {
                        let r = serde_json::json!({"schema": 1, "command_id": cmd["command_id"], "drone_id": drone,
                            "t_unix_ms": now(), "status": status, "reason": ""});
                        let _ = client.try_publish(
                            format!("{base}/command-results"),
                            rumqttc::QoS::AtLeastOnce,
                            false,
                            r.to_string(),
                        );
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    a.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        DroneDouble { answered, stop }
    }

    pub fn commands_answered(&self) -> u64 {
        self.answered.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for DroneDouble {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Create a user with `role` (operator, dispute-centre, admin) in the
/// ground station's store (config at `config`) and an API token for it;
/// returns the token for `Authorization: Bearer`.
pub fn api_token(dir: &Path, config: &Path, role: &str) -> String {
    let name = format!("test-{role}");
    let conf = config.to_str().unwrap();
    let out = std::process::Command::new(tiancha_bin())
        .current_dir(dir)
        .env("TIANCHA_TEST_PW", "correct horse battery staple")
        .args(["ground-station", "--config", conf, "user", "add", &name])
        .args(["--role", role, "--password-env", "TIANCHA_TEST_PW"])
        .output()
        .unwrap();
    assert!(out.status.success(), "user add: {out:?}");
    let out = std::process::Command::new(tiancha_bin())
        .current_dir(dir)
        .args(["ground-station", "--config", conf, "token", "create"])
        .args(["--user", &name, "--label", "test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "token create: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `tiancha command-key generate --out {dir}/command-signing-key.pem`:
/// the key file and the printed public key (`ed25519:...`).
pub fn command_key(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("command-signing-key.pem");
    let out = std::process::Command::new(tiancha_bin())
        .args(["command-key", "generate", "--out", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "command-key generate: {out:?}");
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(public.starts_with("ed25519:"), "{public}");
    (path, public)
}

/// The ground station's signer, read from its key file (tests sign as the
/// station would).
pub fn command_signer(key: &Path) -> tiancha_protocol::command_auth::CommandSigner {
    tiancha_protocol::command_auth::CommandSigner::from_pkcs8_pem(
        &std::fs::read_to_string(key).unwrap(),
    )
    .unwrap()
}

/// Publish `payload` with mosquitto_pub (an independent MQTT client), QoS 1.
pub fn mosquitto_pub(dir: &Path, mqtt_port: u16, topic: &str, payload: &[u8]) {
    let file = dir.join(format!("pub-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, payload).unwrap();
    let st = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &mqtt_port.to_string(), "-q", "1"])
        .args(["-t", topic, "-f", file.to_str().unwrap()])
        .status()
        .expect("mosquitto_pub (mosquitto-clients) is needed");
    assert!(st.success(), "mosquitto_pub to {topic}");
}

/// One HTTP request (real socket): (status, body).
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let mut req = match method {
            "GET" => c.get(url),
            "POST" => c.post(url),
            m => panic!("method {m}"),
        };
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    })
}

/// Final result (status, reason) of a command in the ground station's
/// store, once there.
pub fn final_command_result(dir: &Path, id: uuid::Uuid, timeout: Duration) -> (String, String) {
    wait_for(&format!("final result of command {id}"), timeout, || {
        let db = open_store(dir)?;
        let rows: Vec<(String, String)> = db
            .prepare(
                "SELECT status, json FROM command_results WHERE command_id = ?1 ORDER BY t_unix_ms",
            )
            .ok()?
            .query_map([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
            .ok()?
            .map(Result::unwrap)
            .collect();
        rows.into_iter()
            .find(|(s, _)| !matches!(s.as_str(), "accepted" | "in_progress"))
            .map(|(s, json)| {
                let v: serde_json::Value = serde_json::from_str(&json).unwrap();
                (s, v["reason"].as_str().unwrap_or_default().to_string())
            })
    })
}

/// The events of `kind` in the ground station's store, oldest first.
pub fn events(dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    let Some(db) = open_store(dir) else {
        return vec![];
    };
    let Ok(mut st) = db.prepare("SELECT json FROM events WHERE kind = ?1 ORDER BY t_unix_ms")
    else {
        return vec![];
    };
    st.query_map([kind], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|j| serde_json::from_str(&j.unwrap()).unwrap())
        .collect()
}

/// A point `dn` m north and `de` m east of the test home (28.45, 117.94).
pub fn offset(dn: f64, de: f64) -> tiancha_protocol::GeoPoint {
    tiancha_protocol::GeoPoint::new(28.45 + dn / 111_320.0, 117.94 + de / 97_900.0)
}

/// A 200 m × 150 m field north-east of the test home (its far corner
/// ~320 m out), with one circular no-fly zone `zone` centred `(dn, de)`
/// m from home.
pub fn field_patrol(
    zone: &str,
    zone_at: (f64, f64),
    buffer_m: f64,
    alt_rel_m: f64,
) -> tiancha_protocol::PatrolSpec {
    use tiancha_protocol as proto;
    let p = |(dn, de)| offset(dn, de);
    proto::PatrolSpec {
        name: Some("test field".into()),
        areas: vec![proto::GeoPolygon {
            exterior: vec![
                p((50.0, 50.0)),
                p((50.0, 250.0)),
                p((200.0, 250.0)),
                p((200.0, 50.0)),
            ],
            holes: vec![],
        }],
        no_fly_zones: vec![proto::NoFlyZone {
            name: zone.into(),
            shape: proto::ZoneShape::Circle {
                center: p(zone_at),
                radius_m: 30.0,
            },
            buffer_m,
        }],
        points_of_interest: vec![],
        altitude_rel_m: Some(alt_rel_m),
        qgc_plan: None,
    }
}
