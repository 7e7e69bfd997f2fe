//! A throwaway PostgreSQL cluster for tests: `initdb` in a temp dir, the
//! server on a free loopback port (as the `postgres` user when we are
//! root: PostgreSQL refuses root), a `tiancha` database, fast shutdown on
//! drop. Shared by `ground-station/tests/store_pg.rs` and
//! `cli/tests/two_instances_pg.rs` (which includes this file by path).
//! Fails with a clear message when the server binaries are missing; never
//! skips.
#![allow(dead_code)] // each including test uses a different part

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Postgres {
    pub port: u16,
    pub bin: PathBuf,
    pub child: Child,
    /// The server's log (`postgres.log` in the cluster's temp dir, or in
    /// the directory given to [`Postgres::start_logging_to`]).
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists() && p.join("postgres").exists());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: \
             install the `postgresql` package (scripts/dev setup does)"
        )
    })
}

/// `program args` as the `postgres` user when root; `setpriv` execs in
/// place, so the child is the server itself.
fn pg_command(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let ok = Command::new("id")
            .arg("postgres")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "running as root and there is no `postgres` user to run PostgreSQL as \
             (the `postgresql` package creates it)"
        );
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program)
        .args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

impl Postgres {
    /// A cluster whose log stays in its temp dir.
    pub fn start() -> Postgres {
        Self::start_inner(None)
    }

    /// A cluster whose log is `log_dir/postgres.log` (kept for diagnosis).
    pub fn start_logging_to(log_dir: &Path) -> Postgres {
        Self::start_inner(Some(log_dir))
    }

    fn start_inner(log_dir: Option<&Path>) -> Postgres {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("tiancha-pg-")
            .tempdir()
            .unwrap();
        if is_root() {
            assert!(
                Command::new("chown")
                    .args(["-R", "postgres:postgres", dir.path().to_str().unwrap()])
                    .status()
                    .unwrap()
                    .success(),
                "running as root: the temp dir must be handed to the `postgres` user"
            );
        }
        let data = dir.path().join("data");
        let out = pg_command(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "tiancha",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let port_s = port.to_string();
        let log = log_dir.unwrap_or(dir.path()).join("postgres.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = pg_command(
            &bin.join("postgres"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-p",
                &port_s,
                "-k",
                dir.path().to_str().unwrap(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=50",
            ],
        )
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
        let pg = Postgres {
            port,
            bin,
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(pg.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port_s])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start within 30 s (log: {})",
                pg.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = Command::new(pg.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port_s, "-U", "tiancha", "tiancha"])
            .output()
            .unwrap();
        assert!(out.status.success(), "createdb: {out:?}");
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://tiancha@127.0.0.1:{}/tiancha", self.port)
    }

    /// Rows of a query, each a `|`-separated line (psql -At).
    pub fn query(&self, sql: &str) -> Vec<String> {
        let psql = [self.bin.join("psql"), PathBuf::from("/usr/bin/psql")]
            .into_iter()
            .find(|p| p.exists())
            .expect("psql (postgresql-client)");
        let out = Command::new(psql)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                "tiancha",
                "-d",
                "tiancha",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql `{sql}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.query(sql)
            .first()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("`{sql}` gave no count"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: fast shutdown (clients are disconnected).
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
