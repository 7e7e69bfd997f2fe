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
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info,rumqttd=warn")
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
