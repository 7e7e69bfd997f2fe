//! ArduCopter SITL as the demo's autopilot (`tiancha demo --autopilot
//! ardupilot-sitl`): the real firmware, prebuilt beside the checkout
//! (`../shared/sitl/ardupilot`, GPL, a test tool that is referenced and
//! never copied), started as one of the demo's children.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::Children;

/// Where to reach the running SITL.
pub struct Sitl {
    /// SERIAL0: the companion's link.
    pub companion_port: String,
    /// SERIAL1: the camera's (a second client).
    pub second_port: String,
}

fn free(n: u16) -> bool {
    (0..4).all(|k| TcpListener::bind(("127.0.0.1", 5760 + 10 * n + k)).is_ok())
}

/// Start ArduCopter SITL at `speed` × real time, home at `home`
/// (lat, lon, alt AMSL), as `run_arducopter.sh` does; give it a real
/// pack's battery (SITL's default 3300 mAh drains ~15 %/min of simulated
/// time, less than a demo patrol); return its ports.
pub fn start(
    sitl_dir: &Path,
    dir: &Path,
    speed: f64,
    home: (f64, f64, f64),
    kids: &mut Children,
) -> anyhow::Result<Sitl> {
    let ap = std::fs::canonicalize(sitl_dir.join("ardupilot")).with_context(|| {
        format!(
            "ArduCopter SITL not found at {} (give --sitl-dir or TIANCHA_SITL_DIR)",
            sitl_dir.join("ardupilot").display()
        )
    })?;
    let n = (1..60)
        .find(|n| free(*n))
        .context("no free SITL instance (TCP 5760+10N)")?;
    let work = dir.join("sitl");
    std::fs::create_dir_all(&work)?;
    // Our own parameter defaults after copter.parm's.
    let parm = work.join("demo.parm");
    std::fs::write(&parm, "BATT_CAPACITY 20000\n")?;
    let defaults = format!("{},{}", ap.join("copter.parm").display(), parm.display());
    let args = [
        "--model".to_string(),
        "+".into(),
        "--speedup".into(),
        speed.to_string(),
        "--defaults".into(),
        defaults,
        format!("-I{n}"),
        "--home".into(),
        format!("{},{},{},0", home.0, home.1, home.2),
        "-w".into(),
        "--serial0".into(),
        "tcp:0".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kids.spawn_program("arducopter", &ap.join("arducopter"), dir, &work, &args, &[])?;
    let port = 5760 + 10 * n;
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port + 2)).is_err() {
        if let Some((name, st)) = kids.exited() {
            bail!("{name} exited ({st}); see {}/{name}.log", dir.display());
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!(
                "ArduCopter SITL did not open TCP {port} within 30 s; see {}/arducopter.log",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Sitl {
        companion_port: format!("tcp:127.0.0.1:{port}"),
        second_port: format!("tcp:127.0.0.1:{}", port + 2),
    })
}
