//! The tokio driver: a [`SimNode`] on a transport, in scaled time, with
//! optional impairment, publishing the truth.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tiancha_firmware_bridge::codec::LinkStats;
use tiancha_firmware_bridge::signing::SigningKey;
use tiancha_firmware_bridge::transport::{Address, Packet, PeerId, Transport};
use tiancha_geometry::geodesy::LatLonAlt;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::autopilot::{AutopilotConfig, AutopilotStats, SimNode};
use crate::impair::{Impairment, ImpairmentConfig, ImpairmentStats};
use crate::mission_server::{Lists, ServerStats};
use crate::noise::NoiseConfig;
use crate::px4::Flavour;
use crate::truth::Truth;
use crate::vehicle::Airframe;

/// Home position in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Home {
    pub lat_deg: f64,
    pub lon_deg: f64,
    /// Ground altitude AMSL.
    pub alt_m: f64,
}

impl Default for Home {
    fn default() -> Self {
        // Shangrao, Jiangxi.
        Self {
            lat_deg: 28.45,
            lon_deg: 117.94,
            alt_m: 70.0,
        }
    }
}

/// Everything `tiancha sim` can be told (also a TOML file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Where to serve MAVLink (see `firmware_bridge::transport`).
    pub listen: String,
    pub home: Home,
    /// Battery at start, percent.
    pub battery_pct: f64,
    /// Time scale: 10 = ten simulated seconds per real second.
    pub speed: f64,
    pub system_id: u8,
    pub component_id: u8,
    /// Fit a GPS (false: never gets a fix, never arms).
    pub gps: bool,
    pub gps_fix_delay_s: f64,
    /// Seconds after boot before the EKF has a position and arming is
    /// allowed (0: as soon as the GPS allows; real ArduCopter SITL: ~25–40).
    pub ekf_ready_delay_s: f64,
    /// Support gimbal manager v2 commands (false: legacy mount only).
    pub gimbal_manager: bool,
    /// Refuse SET_MESSAGE_INTERVAL (REQUEST_DATA_STREAM only).
    pub legacy_streams_only: bool,
    /// WPNAV_SPEED, m/s.
    pub wp_speed_mps: f64,
    /// Impairment of what the simulator receives.
    pub impair_in: ImpairmentConfig,
    /// Impairment of what the simulator sends.
    pub impair_out: ImpairmentConfig,
    pub noise: NoiseConfig,
    /// Require MAVLink 2 signing with this key (64 hex digits, or a
    /// passphrase hashed with SHA-256 as MAVProxy does).
    pub signing_key: Option<String>,
    /// Simulated Unix time at boot (ms); default: the wall clock at start.
    pub boot_unix_ms: Option<u64>,
    /// Behave like ArduCopter (`ardu_copter`, the default) or like PX4
    /// v1.15.4 where the two differ (`px4`).
    pub flavour: Flavour,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: "udpin:127.0.0.1:14550".into(),
            home: Home::default(),
            battery_pct: 100.0,
            speed: 1.0,
            system_id: 1,
            component_id: 1,
            gps: true,
            gps_fix_delay_s: 2.0,
            ekf_ready_delay_s: 0.0,
            gimbal_manager: true,
            legacy_streams_only: false,
            wp_speed_mps: 5.0,
            impair_in: ImpairmentConfig::default(),
            impair_out: ImpairmentConfig::default(),
            noise: NoiseConfig::default(),
            signing_key: None,
            boot_unix_ms: None,
            flavour: Flavour::ArduCopter,
        }
    }
}

/// A configuration or start-up problem, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("sim config `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("sim config: {0}")]
    Impairment(#[from] crate::impair::ImpairmentError),
    #[error("cannot open {address}: {source}")]
    Open {
        address: String,
        source: std::io::Error,
    },
}

fn bad(field: &'static str, reason: impl Into<String>) -> SimError {
    SimError::Config {
        field,
        reason: reason.into(),
    }
}

impl SimConfig {
    /// Check every field; the first problem is returned.
    pub fn validate(&self) -> Result<(), SimError> {
        self.listen
            .parse::<Address>()
            .map_err(|e| bad("listen", e.to_string()))?;
        let h = self.home;
        if !(h.lat_deg.is_finite() && (-90.0..=90.0).contains(&h.lat_deg)) {
            return Err(bad(
                "home.lat_deg",
                format!("{} is not a latitude", h.lat_deg),
            ));
        }
        if !(h.lon_deg.is_finite() && (-180.0..=180.0).contains(&h.lon_deg)) {
            return Err(bad(
                "home.lon_deg",
                format!("{} is not a longitude", h.lon_deg),
            ));
        }
        if !(h.alt_m.is_finite() && (-500.0..=9000.0).contains(&h.alt_m)) {
            return Err(bad(
                "home.alt_m",
                format!("{} m is not a ground altitude", h.alt_m),
            ));
        }
        if !(self.battery_pct.is_finite() && (0.0..=100.0).contains(&self.battery_pct)) {
            return Err(bad(
                "battery_pct",
                format!("{} is not in [0, 100]", self.battery_pct),
            ));
        }
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= 1000.0) {
            return Err(bad("speed", format!("{} is not in (0, 1000]", self.speed)));
        }
        if self.system_id == 0 {
            return Err(bad("system_id", "0 is the broadcast id"));
        }
        if !(self.gps_fix_delay_s.is_finite() && self.gps_fix_delay_s >= 0.0) {
            return Err(bad("gps_fix_delay_s", "must be a non-negative number"));
        }
        if !(self.ekf_ready_delay_s.is_finite() && self.ekf_ready_delay_s >= 0.0) {
            return Err(bad("ekf_ready_delay_s", "must be a non-negative number"));
        }
        if !(self.wp_speed_mps.is_finite() && self.wp_speed_mps > 0.0 && self.wp_speed_mps <= 30.0)
        {
            return Err(bad(
                "wp_speed_mps",
                format!("{} is not in (0, 30]", self.wp_speed_mps),
            ));
        }
        self.impair_in.validate()?;
        self.impair_out.validate()?;
        self.noise.validate().map_err(|r| bad("noise", r))?;
        if let Some(k) = &self.signing_key {
            SigningKey::parse(k).map_err(|e| bad("signing_key", e.to_string()))?;
        }
        Ok(())
    }

    pub fn home(&self) -> LatLonAlt {
        LatLonAlt::new(self.home.lat_deg, self.home.lon_deg, self.home.alt_m)
    }

    /// Load a TOML file (unknown keys are errors).
    pub fn from_toml(text: &str) -> Result<SimConfig, SimError> {
        let c: SimConfig = toml::from_str(text).map_err(|e| bad("file", e.to_string()))?;
        c.validate()?;
        Ok(c)
    }
}

/// Counters of a running simulator.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimStats {
    pub link: LinkStats,
    pub autopilot: AutopilotStats,
    pub mission_server: ServerStats,
    pub impair_in: ImpairmentStats,
    pub impair_out: ImpairmentStats,
}

/// A running simulator. Dropping it stops it.
pub struct Sim {
    truth: watch::Receiver<Truth>,
    lists: watch::Receiver<Arc<Lists>>,
    local_addr: Option<SocketAddr>,
    address: Address,
    stats: Arc<Mutex<SimStats>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn wall_unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

enum Delayed {
    In(PeerId, Packet),
    Out(Vec<u8>),
}

impl Sim {
    /// Validate the config, open the transport and start simulating.
    pub async fn start(cfg: SimConfig) -> Result<Sim, SimError> {
        cfg.validate()?;
        let address: Address =
            cfg.listen
                .parse()
                .map_err(|e: tiancha_firmware_bridge::transport::AddressError| {
                    bad("listen", e.to_string())
                })?;
        let transport = Transport::open(&address)
            .await
            .map_err(|source| SimError::Open {
                address: cfg.listen.clone(),
                source,
            })?;
        let local_addr = transport.local_addr;
        let key = cfg
            .signing_key
            .as_deref()
            .map(SigningKey::parse)
            .transpose()
            .map_err(|e| bad("signing_key", e.to_string()))?;
        let airframe = Airframe {
            wp_speed_mps: cfg.wp_speed_mps,
            ..Airframe::default()
        };
        let ap = AutopilotConfig {
            system_id: cfg.system_id,
            component_id: cfg.component_id,
            home: cfg.home(),
            battery_pct: cfg.battery_pct,
            airframe,
            gps: cfg.gps,
            gps_fix_delay_s: cfg.gps_fix_delay_s,
            ekf_ready_delay_s: cfg.ekf_ready_delay_s,
            gimbal_manager: cfg.gimbal_manager,
            legacy_streams_only: cfg.legacy_streams_only,
            noise: cfg.noise,
            boot_unix_us: cfg
                .boot_unix_ms
                .map(|ms| ms * 1000)
                .unwrap_or_else(wall_unix_us),
            flavour: cfg.flavour,
        };
        let node = SimNode::new(ap, key);
        let (truth_tx, truth) = watch::channel(node.autopilot.truth());
        let (lists_tx, lists) = watch::channel(Arc::new(node.autopilot.lists.clone()));
        let stats = Arc::new(Mutex::new(SimStats::default()));
        let (stop_tx, stop_rx) = oneshot::channel();
        tracing::info!(listen = %address, speed = cfg.speed, flavour = ?cfg.flavour, "simulated autopilot started");
        let task = tokio::spawn(drive(
            node,
            transport,
            cfg,
            truth_tx,
            lists_tx,
            stats.clone(),
            stop_rx,
        ));
        Ok(Sim {
            truth,
            lists,
            local_addr,
            address,
            stats,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The true state, updated every step batch.
    pub fn truth(&self) -> watch::Receiver<Truth> {
        self.truth.clone()
    }

    /// What the autopilot stores (mission with home at 0, fence, rally),
    /// updated whenever a transfer completes, is cancelled or clears.
    pub fn lists(&self) -> Arc<Lists> {
        self.lists.borrow().clone()
    }

    /// The bound socket address (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The address a client (bridge, pymavlink) should connect to.
    pub fn client_address(&self) -> String {
        match (&self.address, self.local_addr) {
            (Address::UdpIn(_), Some(a)) => format!("udpout:{a}"),
            (Address::TcpIn(_), Some(a)) => format!("tcp:{a}"),
            (Address::UdpOut(a), _) => format!("udpin:{a}"),
            (other, _) => other.to_string(),
        }
    }

    pub fn stats(&self) -> SimStats {
        *self.stats.lock().expect("stats lock")
    }

    /// Stop and wait for the task to end.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Run until the task ends (never, unless stopped or it fails).
    pub async fn wait(mut self) {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

async fn drive(
    mut node: SimNode,
    mut transport: Transport,
    cfg: SimConfig,
    truth_tx: watch::Sender<Truth>,
    lists_tx: watch::Sender<Arc<Lists>>,
    stats: Arc<Mutex<SimStats>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut lists_version = node.autopilot.lists_version;
    let speed = cfg.speed;
    let t0 = Instant::now();
    let sim_now = |at: Instant| at.saturating_duration_since(t0).as_secs_f64() * speed;
    let mut imp_in = (!cfg.impair_in.is_clean()).then(|| Impairment::new(cfg.impair_in));
    let mut imp_out = (!cfg.impair_out.is_clean()).then(|| Impairment::new(cfg.impair_out));
    let mut delayed: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut store: std::collections::HashMap<u64, Delayed> = std::collections::HashMap::new();
    let mut next_id = 0u64;
    let sender = transport.sender();
    let mut last_stats = Instant::now();
    loop {
        let now = Instant::now();
        node.tick(sim_now(now), wall_unix_us());
        // Due delayed packets.
        while let Some(Reverse((at, id))) = delayed.peek().copied() {
            if at > now {
                break;
            }
            delayed.pop();
            match store.remove(&id) {
                Some(Delayed::In(peer, p)) => {
                    node.handle_packet(peer, &p, sim_now(now), wall_unix_us())
                }
                Some(Delayed::Out(b)) => {
                    sender.send(b);
                }
                None => {}
            }
        }
        while let Some(b) = node.poll_transmit() {
            match imp_out.as_mut() {
                None => {
                    sender.send(b);
                }
                Some(imp) => {
                    for d in imp.schedule() {
                        if d.is_zero() {
                            sender.send(b.clone());
                        } else {
                            next_id += 1;
                            store.insert(next_id, Delayed::Out(b.clone()));
                            delayed.push(Reverse((now + d, next_id)));
                        }
                    }
                }
            }
        }
        truth_tx.send_replace(node.autopilot.truth());
        if node.autopilot.lists_version != lists_version {
            lists_version = node.autopilot.lists_version;
            lists_tx.send_replace(Arc::new(node.autopilot.lists.clone()));
        }
        if now.duration_since(last_stats) > Duration::from_millis(200) {
            last_stats = now;
            let mut s = stats.lock().expect("stats lock");
            s.link = node.link_stats();
            s.autopilot = node.autopilot.stats;
            s.mission_server = node.autopilot.server.stats;
            s.impair_in = imp_in.as_ref().map(|i| i.stats).unwrap_or_default();
            s.impair_out = imp_out.as_ref().map(|i| i.stats).unwrap_or_default();
        }
        let next_sim = node.autopilot.next_wakeup();
        let mut wake = t0 + Duration::from_secs_f64((next_sim / speed).max(0.0));
        if let Some(Reverse((at, _))) = delayed.peek() {
            wake = wake.min(*at);
        }
        // Never sleep less than a millisecond (timer resolution) or more
        // than 100 ms.
        let wake = wake
            .max(now + Duration::from_millis(1))
            .min(now + Duration::from_millis(100));
        tokio::select! {
            _ = &mut stop => break,
            p = transport.incoming.recv() => {
                let Some((peer, packet)) = p else { break };
                let now = Instant::now();
                match imp_in.as_mut() {
                    None => node.handle_packet(peer, &packet, sim_now(now), wall_unix_us()),
                    Some(imp) => {
                        for d in imp.schedule() {
                            if d.is_zero() {
                                node.handle_packet(peer, &packet, sim_now(now), wall_unix_us());
                            } else {
                                next_id += 1;
                                store.insert(next_id, Delayed::In(peer, packet.clone()));
                                delayed.push(Reverse((now + d, next_id)));
                            }
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    tracing::info!("simulator stopped");
}
