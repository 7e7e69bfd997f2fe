//! `tiancha sim`: the simulated ArduCopter (or PX4, `--autopilot px4`) on
//! a MAVLink address.
//!
//! Settings come from an optional TOML file (`--config`, the fields of
//! `tiancha_sim::SimConfig`) and are overridden by the flags given.

use std::path::PathBuf;

use anyhow::Context;
use tiancha_sim::camera::{CameraConfig, Scenario};
use tiancha_sim::{Flavour, ImpairmentConfig, NoiseConfig, Sim, SimConfig};

/// `--autopilot`: which firmware the simulator behaves like.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutopilotFlavour {
    /// ArduCopter.
    Ardupilot,
    /// PX4 v1.15.4 where it differs from ArduCopter.
    Px4,
}

impl From<AutopilotFlavour> for Flavour {
    fn from(a: AutopilotFlavour) -> Self {
        match a {
            AutopilotFlavour::Ardupilot => Flavour::ArduCopter,
            AutopilotFlavour::Px4 => Flavour::Px4,
        }
    }
}

/// Arguments of `tiancha sim`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// MAVLink address to serve: udpin:IP:PORT (reply to whoever sends),
    /// udpout:HOST:PORT, tcpin:IP:PORT, tcp:HOST:PORT or serial:/dev/X:BAUD.
    #[arg(long)]
    pub listen: Option<String>,
    /// TOML file with any `SimConfig` fields.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Behave like this autopilot firmware where ArduCopter and PX4 differ
    /// (heartbeat, modes, parameters, mission protocol, arming, geofence,
    /// RTL) [default: ardupilot, or the config file's `flavour`].
    #[arg(long, value_enum, value_name = "ardupilot|px4")]
    pub autopilot: Option<AutopilotFlavour>,
    /// Home (and ground) position: LAT,LON,ALT_AMSL (default Shangrao 28.45,117.94,70).
    #[arg(long, value_parser = parse_home)]
    pub home: Option<(f64, f64, f64)>,
    /// Battery at start, percent.
    #[arg(long)]
    pub battery: Option<f64>,
    /// Time scale (10 = ten times faster than real time).
    #[arg(long)]
    pub speed: Option<f64>,
    /// Require MAVLink 2 signing with this key (64 hex digits, or a passphrase).
    #[arg(long)]
    pub signing_key: Option<String>,
    /// Packet loss probability, each direction.
    #[arg(long)]
    pub loss: Option<f64>,
    /// Duplication probability, each direction.
    #[arg(long)]
    pub dup: Option<f64>,
    /// Reordering probability, each direction.
    #[arg(long)]
    pub reorder: Option<f64>,
    /// One-way delay (ms), each direction.
    #[arg(long)]
    pub delay_ms: Option<f64>,
    /// Uniform extra delay (ms), each direction.
    #[arg(long)]
    pub jitter_ms: Option<f64>,
    /// Seed of the impairment and noise generators.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Realistic telemetry noise (GPS 1.5 m, baro height 0.5 m, attitude 0.5°, gimbal 0.3°, 2 ms timestamps).
    #[arg(long)]
    pub noise: bool,
    /// No GPS: never gets a fix, refuses to arm.
    #[arg(long)]
    pub no_gps: bool,
    /// Seconds after boot before the EKF has a position and arming is
    /// allowed, like real ArduCopter (its SITL needs about 25-40 s); default 0.
    #[arg(long, value_name = "SECONDS")]
    pub ekf_delay: Option<f64>,
    /// Only legacy mount commands (no gimbal manager v2).
    #[arg(long)]
    pub legacy_gimbal: bool,
    /// Refuse SET_MESSAGE_INTERVAL (REQUEST_DATA_STREAM only, like old firmware).
    #[arg(long)]
    pub legacy_streams: bool,
    /// Waypoint speed, m/s.
    #[arg(long)]
    pub wp_speed: Option<f64>,
    /// MAVLink system id.
    #[arg(long)]
    pub system_id: Option<u8>,
    /// Start the simulated gimbal camera rendering this scenario (TOML,
    /// see examples/shangrao/scenario.toml); needs --camera-udp or
    /// --camera-rtsp-port.
    #[arg(long)]
    pub camera_scenario: Option<PathBuf>,
    /// Stream the camera as RTP/H.264 over UDP to HOST:PORT (receive with
    /// `udp://0.0.0.0:PORT` in the companion's camera.uri).
    #[arg(long, requires = "camera_scenario")]
    pub camera_udp: Option<String>,
    /// Also serve the camera as rtsp://127.0.0.1:PORT/camera.
    #[arg(long, requires = "camera_scenario")]
    pub camera_rtsp_port: Option<u16>,
    /// Camera frames per second (wall clock).
    #[arg(long, default_value_t = 10.0, requires = "camera_scenario")]
    pub camera_fps: f64,
    /// Camera horizontal field of view, degrees (1280x720 image).
    #[arg(long, requires = "camera_scenario")]
    pub camera_hfov: Option<f64>,
    /// Write one JSON line of ground truth per streamed frame here.
    #[arg(long, requires = "camera_scenario")]
    pub camera_truth_log: Option<PathBuf>,
    /// No simulated vehicle: the camera follows a real autopilot (e.g.
    /// ArduCopter SITL's second port, tcp:127.0.0.1:5762) from its own
    /// telemetry, read over MAVLink.
    #[arg(long, requires = "camera_scenario", value_name = "MAVLINK_ADDRESS")]
    pub follow: Option<String>,
    /// With --follow: the camera's pitch (degrees, negative down) when the
    /// autopilot reports no gimbal.
    #[arg(long, default_value_t = -45.0, allow_negative_numbers = true)]
    pub follow_fixed_pitch: f64,
}

/// The camera's settings from the flags, and the scenario.
pub fn camera(args: &Args) -> anyhow::Result<Option<(Scenario, CameraConfig)>> {
    let Some(path) = &args.camera_scenario else {
        return Ok(None);
    };
    if args.camera_udp.is_none() && args.camera_rtsp_port.is_none() {
        anyhow::bail!("--camera-scenario needs --camera-udp HOST:PORT or --camera-rtsp-port PORT");
    }
    let scenario = Scenario::load(path)?;
    let mut cfg = CameraConfig {
        fps: args.camera_fps,
        burn_timestamp: true,
        truth_log: args.camera_truth_log.clone(),
        ..CameraConfig::default()
    };
    if let Some(h) = args.camera_hfov {
        cfg.camera.hfov_deg = h;
    }
    cfg.stream.udp = args.camera_udp.clone();
    cfg.stream.rtsp_port = args.camera_rtsp_port;
    cfg.stream.validate()?;
    cfg.camera.validate()?;
    Ok(Some((scenario, cfg)))
}

fn parse_home(s: &str) -> Result<(f64, f64, f64), String> {
    let v: Vec<&str> = s.split(',').map(str::trim).collect();
    if v.len() != 3 {
        return Err(format!("expected LAT,LON,ALT, got {s:?}"));
    }
    let n = |x: &str, what: &str| {
        x.parse::<f64>()
            .map_err(|_| format!("{what} {x:?} is not a number"))
    };
    Ok((
        n(v[0], "latitude")?,
        n(v[1], "longitude")?,
        n(v[2], "altitude")?,
    ))
}

/// Merge the file and the flags into one validated config.
pub fn config(args: &Args) -> anyhow::Result<SimConfig> {
    let mut c = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            SimConfig::from_toml(&text).with_context(|| format!("in {}", p.display()))?
        }
        None => SimConfig::default(),
    };
    if let Some(l) = &args.listen {
        c.listen = l.clone();
    }
    if let Some(a) = args.autopilot {
        c.flavour = a.into();
    }
    if let Some((lat, lon, alt)) = args.home {
        c.home.lat_deg = lat;
        c.home.lon_deg = lon;
        c.home.alt_m = alt;
    }
    if let Some(b) = args.battery {
        c.battery_pct = b;
    }
    if let Some(s) = args.speed {
        c.speed = s;
    }
    if args.signing_key.is_some() {
        c.signing_key = args.signing_key.clone();
    }
    let seed = args.seed.unwrap_or(1);
    let touch = |i: &mut ImpairmentConfig, seed: u64| {
        if let Some(v) = args.loss {
            i.loss = v;
        }
        if let Some(v) = args.dup {
            i.duplicate = v;
        }
        if let Some(v) = args.reorder {
            i.reorder = v;
        }
        if let Some(v) = args.delay_ms {
            i.delay_ms = v;
        }
        if let Some(v) = args.jitter_ms {
            i.jitter_ms = v;
        }
        if args.seed.is_some() {
            i.seed = seed;
        }
    };
    touch(&mut c.impair_in, seed);
    touch(&mut c.impair_out, seed.wrapping_add(1));
    if args.noise {
        c.noise = NoiseConfig::realistic(seed);
    }
    if args.no_gps {
        c.gps = false;
    }
    if let Some(d) = args.ekf_delay {
        c.ekf_ready_delay_s = d;
    }
    if args.legacy_gimbal {
        c.gimbal_manager = false;
    }
    if args.legacy_streams {
        c.legacy_streams_only = true;
    }
    if let Some(s) = args.wp_speed {
        c.wp_speed_mps = s;
    }
    if let Some(id) = args.system_id {
        c.system_id = id;
    }
    c.validate()?;
    Ok(c)
}

/// `--follow`: the camera over a real autopilot, until Ctrl-C.
fn follow(args: &Args, address: &str) -> anyhow::Result<()> {
    let (scenario, ccfg) = camera(args)?.context("--follow needs --camera-scenario")?;
    let fixed = args.follow_fixed_pitch;
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async move {
        let bridge = tiancha_firmware_bridge::Bridge::connect(
            address,
            tiancha_firmware_bridge::BridgeConfig {
                // A second client beside the companion (component 191).
                component_id: 192,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("connecting to the autopilot at {address}"))?;
        bridge
            .wait_for_autopilot(std::time::Duration::from_secs(60))
            .await?;
        let first = bridge
            .wait_for(
                "position, attitude and home",
                std::time::Duration::from_secs(120),
                |s| s.position.is_some() && s.attitude.is_some() && s.home.is_some(),
            )
            .await?;
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let t0 = tiancha_sim::follow::truth_from_state(&first, fixed, now())
            .context("no pose from the autopilot")?;
        let (tx, truth) = tokio::sync::watch::channel(t0);
        let mut state = bridge.state();
        tokio::spawn(async move {
            while state.changed().await.is_ok() {
                let s = state.borrow_and_update().clone();
                if let Some(t) = tiancha_sim::follow::truth_from_state(&s, fixed, now()) {
                    tx.send_replace(t);
                }
            }
        });
        let cam = tokio::task::spawn_blocking(move || {
            tiancha_sim::camera::start_camera(&scenario, ccfg, truth)
        })
        .await??;
        eprintln!(
            "tiancha sim: camera following the autopilot at {address}{}",
            cam.rtsp_url().map(|u| format!(", {u}")).unwrap_or_default()
        );
        tokio::signal::ctrl_c().await.ok();
        eprintln!("tiancha sim: stopping");
        if let Err(e) = cam.stop() {
            eprintln!("tiancha sim: camera: {e}");
        }
        drop(bridge);
        anyhow::Ok(())
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(a) = args.follow.clone() {
        return follow(&args, &a);
    }
    let cfg = config(&args)?;
    let camera = camera(&args)?;
    if let Some((sc, _)) = &camera {
        if (sc.ground_alt_m - cfg.home.alt_m).abs() > 0.5 {
            anyhow::bail!(
                "scenario {:?}: ground_alt_m = {} but the simulator's home is at {} m AMSL; they must agree (use --home or edit the scenario)",
                sc.name,
                sc.ground_alt_m,
                cfg.home.alt_m
            );
        }
    }
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async move {
        let sim = Sim::start(cfg.clone()).await?;
        eprintln!(
            "tiancha sim: {}-like vehicle at {:.5},{:.5} ({} m AMSL), {}x speed, serving {} — connect with {}",
            match cfg.flavour {
                Flavour::ArduCopter => "ArduCopter",
                Flavour::Px4 => "PX4",
            },
            cfg.home.lat_deg,
            cfg.home.lon_deg,
            cfg.home.alt_m,
            cfg.speed,
            cfg.listen,
            sim.client_address()
        );
        let cam = match camera {
            None => None,
            Some((scenario, ccfg)) => {
                let truth = sim.truth();
                let (udp, fps, hfov) = (ccfg.stream.udp.clone(), ccfg.fps, ccfg.camera.hfov_deg);
                // Cutting sprites and drawing the ground take a few seconds.
                let h = tokio::task::spawn_blocking(move || {
                    tiancha_sim::camera::start_camera(&scenario, ccfg, truth)
                })
                .await??;
                eprintln!(
                    "tiancha sim: camera {}x{} at {hfov}° HFOV, {fps} fps{}{}",
                    h.model().intrinsics.width_px,
                    h.model().intrinsics.height_px,
                    udp.map(|u| format!(", RTP/H.264 to udp {u}")).unwrap_or_default(),
                    h.rtsp_url().map(|u| format!(", {u}")).unwrap_or_default()
                );
                Some(h)
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                eprintln!("tiancha sim: stopping");
                if let Some(c) = cam {
                    if let Err(e) = c.stop() {
                        eprintln!("tiancha sim: camera: {e}");
                    }
                }
                sim.stop().await;
            }
        }
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parsed(argv: &[&str]) -> SimConfig {
        let cli = Cli::try_parse_from(std::iter::once("sim").chain(argv.iter().copied()))
            .expect("parses");
        config(&cli.args).expect("valid")
    }

    #[test]
    fn autopilot_flag_selects_the_flavour_default_ardupilot() {
        assert_eq!(parsed(&[]).flavour, Flavour::ArduCopter);
        assert_eq!(
            parsed(&["--autopilot", "ardupilot"]).flavour,
            Flavour::ArduCopter
        );
        assert_eq!(parsed(&["--autopilot", "px4"]).flavour, Flavour::Px4);
        assert!(Cli::try_parse_from(["sim", "--autopilot", "inav"]).is_err());
        // The config file's field, and its spelling.
        let c = SimConfig::from_toml("flavour = \"px4\"").unwrap();
        assert_eq!(c.flavour, Flavour::Px4);
        let c = SimConfig::from_toml("flavour = \"ardupilot\"").unwrap();
        assert_eq!(c.flavour, Flavour::ArduCopter);
    }
}
