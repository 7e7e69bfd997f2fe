//! The companion daemon: one process on the drone that connects the
//! autopilot (firmware bridge), the camera (the eye) and the ground (the
//! spooling channel), each reconnecting on its own, and runs the
//! commands, the failsafes and the telemetry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tiancha_firmware_bridge::state::LandedState;
use tiancha_firmware_bridge::{Bridge, BridgeConfig, Event as BridgeEvent, FlightMode};
use tiancha_protocol::{
    self as proto, DroneEvent, DroneStatus, EventKind, LinkState, LinkStates, MissionState,
};
use tokio::sync::watch;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::channel::{self, ChannelConfig, ChannelHandle};
use crate::commands::{Executor, Patrol};
use crate::config::CompanionConfig;
use crate::failsafe::{self, Failsafe};
use crate::metrics::Metrics;
use crate::vehicle::{battery_pct, in_air, mode_name, readiness, telemetry};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("channel: {0}")]
    Channel(#[from] channel::ChannelError),
    #[error("autopilot link {address}: {message}")]
    Bridge { address: String, message: String },
    #[error("signing key: {0}")]
    Signing(String),
    #[error("synthetic alerts ledger: {0}")]
    Synthetic(String),
    /// The detector `[camera]` asks for could not be built (model,
    /// backend, onnxruntime library, execution provider, input size).
    #[error("eye: {0}")]
    Eye(String),
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Run until the process is stopped.
pub async fn run(cfg: CompanionConfig) -> Result<(), DaemonError> {
    let cfg = Arc::new(cfg);
    let drone = cfg.drone_id();
    // The detector before anything is announced: a companion whose model,
    // onnxruntime library or execution provider cannot load stops here
    // with the reason instead of coming up without its eye.
    let detector = match &cfg.camera {
        Some(cam) => {
            let cam = cam.clone();
            let d = tokio::task::spawn_blocking(move || crate::eye::load_models(&cam))
                .await
                .map_err(|e| DaemonError::Eye(format!("loading the detector: {e}")))?
                .map_err(DaemonError::Eye)?;
            Some(d)
        }
        None => None,
    };
    let (channel, mut commands, _channel_task) = channel::start(ChannelConfig {
        drone_id: drone.clone(),
        mqtt: cfg.mqtt.clone(),
        spool_path: cfg.spool.path.clone(),
        spool: cfg.spool.spool_config(),
        software_version: env!("CARGO_PKG_VERSION").into(),
    })?;
    info!(drone = %drone, "channel started (spool {})", cfg.spool.path.display());

    let bridge_cfg = BridgeConfig {
        signing: crate::signing::signing_config(&cfg.autopilot).map_err(DaemonError::Signing)?,
        ..BridgeConfig::default()
    };
    let bridge = Bridge::connect(&cfg.autopilot.address, bridge_cfg)
        .await
        .map_err(|e| DaemonError::Bridge {
            address: cfg.autopilot.address.clone(),
            message: e.to_string(),
        })?;
    info!(address = %cfg.autopilot.address, "autopilot link open");
    if let Some(p) = cfg.camera.as_ref().and_then(|c| c.fixed_pitch_deg) {
        bridge
            .poses()
            .write()
            .expect("pose lock")
            .fixed_camera_pitch_deg = p;
    }

    let (zones_tx, zones_rx) = watch::channel(cfg.detection.zones.clone());
    let exec = Executor::new(bridge.clone(), channel.clone(), cfg.clone(), zones_tx);
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = cfg.metrics_listen {
        crate::metrics::serve(addr, metrics.clone())
            .await
            .map_err(|source| DaemonError::Metrics { addr, source })?;
    }

    // The eye, if a camera is configured.
    let eye_status = match (&cfg.camera, detector) {
        (Some(cam), Some(detector)) => crate::eye::start(
            detector,
            cam.clone(),
            cfg.detection.clone(),
            cfg.video.clone(),
            zones_rx,
            bridge.clone(),
            channel.clone(),
            exec.clone(),
            metrics.clone(),
        ),
        _ => {
            info!("no camera configured: telemetry and commands only");
            drop(zones_rx);
            watch::channel(crate::eye::EyeStatus::default()).1
        }
    };

    // Load/chaos testing only: made-up alerts through the same spool.
    if let Some(syn) = cfg.synthetic_alerts.clone() {
        crate::synthetic::start(syn, bridge.clone(), channel.clone(), metrics.clone())
            .map_err(|e| DaemonError::Synthetic(e.to_string()))?;
    }

    // Commands from the ground.
    tokio::spawn({
        let exec = exec.clone();
        async move {
            while let Some(c) = commands.recv().await {
                exec.dispatch_ground(c);
            }
        }
    });

    // A restart mid-flight: take over the patrol on board, undisturbed.
    tokio::spawn({
        let (bridge, exec, channel) = (bridge.clone(), exec.clone(), channel.clone());
        async move {
            // The first heartbeat says whether the vehicle was already
            // armed when we came up (the state is published only after
            // that heartbeat was read whole).
            let Ok(first) = bridge.wait_for_autopilot(Duration::from_secs(3600)).await else {
                return;
            };
            if !first.armed {
                return;
            }
            let (level, message) = match exec.adopt_flight().await {
                None => return,
                Some(Ok(m)) => {
                    info!(%m, "restarted mid-flight");
                    ("warning", m)
                }
                Some(Err(e)) => {
                    error!(error = %e, "restarted mid-flight; could not read the flight on board");
                    (
                        "error",
                        format!("restarted mid-flight; could not read the flight on board: {e}"),
                    )
                }
            };
            submit_event(
                &channel,
                EventKind::Log {
                    level: level.into(),
                    message,
                },
            )
            .await;
        }
    });

    tokio::spawn(mission_events(
        bridge.clone(),
        channel.clone(),
        exec.clone(),
    ));

    // Telemetry, status and failsafes on one clock.
    let period = Duration::from_secs_f64(1.0 / cfg.telemetry.rate_hz);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failsafe = Failsafe::new(&cfg.safety);
    let mut last_status: Option<(DroneStatus, Instant)> = None;
    loop {
        tick.tick().await;
        let now_ms = proto::unix_ms(std::time::SystemTime::now());
        let s = bridge.snapshot();
        if let Some(t) = telemetry(&drone, &s, now_ms) {
            channel.set_telemetry(t);
        }
        let ch = channel.stats();
        let eye_now = eye_status.borrow().clone();
        let status = DroneStatus {
            schema: proto::SCHEMA_VERSION,
            drone_id: drone.clone(),
            t_unix_ms: now_ms,
            online: true,
            state: state_text(&s, exec.patrol().as_ref(), || exec.returning_to()),
            mode: Some(mode_name(s.mode)),
            armed: s.armed,
            battery_pct: battery_pct(&s).map(|b| b.clamp(0.0, 100.0)),
            links: LinkStates {
                autopilot: up_down(s.link_up),
                camera: match eye_now.camera_up {
                    Some(up) => up_down(up),
                    None => LinkState::Unknown,
                },
                ground: up_down(ch.connected),
            },
            spool_depth: ch.spool.depth,
            software_version: env!("CARGO_PKG_VERSION").into(),
            readiness: Some(readiness(&s, &cfg.safety)),
            rtl_target: exec.rtl_target(&s).map(|t| proto::RtlTarget {
                position: proto::GeoPoint::new(t.at.lat_deg, t.at.lon_deg),
                rally_point: t.rally_index.map(|i| i as u32 + 1),
                description: t.describe(),
            }),
            fence: exec
                .patrol()
                .and_then(|p| p.fence.map(|f| f.summary()))
                .map(|f| f.chars().take(500).collect()),
        };
        // Retained status: on change of anything but the time, or every 10 s.
        let changed = last_status.as_ref().is_none_or(|(prev, at)| {
            at.elapsed() > Duration::from_secs(10)
                || DroneStatus {
                    t_unix_ms: now_ms,
                    spool_depth: status.spool_depth,
                    ..prev.clone()
                } != status
        });
        if changed {
            channel.set_status(status.clone());
            last_status = Some((status, Instant::now()));
        }
        metrics.update_vehicle(&s, &ch);

        let actions = failsafe.update(
            Instant::now(),
            failsafe::Inputs {
                ground_up: ch.connected,
                autopilot_up: s.link_up,
                camera_up: eye_now.camera_up,
                in_air: in_air(&s),
                battery_pct: battery_pct(&s),
                returning: returning(&s, exec.patrol().as_ref()),
            },
        );
        for a in actions {
            match a {
                failsafe::Action::Event(kind) => submit_event(&channel, kind).await,
                failsafe::Action::ReturnToLaunch { reason } => {
                    warn!(%reason, to = %exec.returning_to(), "FAILSAFE: return to launch");
                    if let Err(e) = bridge.rtl().await {
                        error!(error = %e, "failsafe RTL was refused by the autopilot");
                    }
                }
            }
        }
    }
}

/// Already on the way down or home: in RTL, SmartRTL or LAND mode, or
/// flying the mission's own final RTL or LAND item (ArduPilot stays in
/// AUTO for those, and a failsafe RTL there would only cost time, or send
/// the drone to a rally point instead of where it is landing).
fn returning(s: &tiancha_firmware_bridge::VehicleState, patrol: Option<&Patrol>) -> bool {
    use tiancha_protocol::mission::cmd;
    if matches!(
        s.mode,
        FlightMode::Rtl | FlightMode::SmartRtl | FlightMode::Land
    ) {
        return true;
    }
    let (Some(p), Some(seq), FlightMode::Auto) = (patrol, s.mission.current_seq, s.mode) else {
        return false;
    };
    p.on_board
        .mission
        .get(seq as usize)
        .is_some_and(|it| matches!(it.command, cmd::NAV_RETURN_TO_LAUNCH | cmd::NAV_LAND))
}

fn up_down(up: bool) -> LinkState {
    if up {
        LinkState::Up
    } else {
        LinkState::Down
    }
}

fn state_text(
    s: &tiancha_firmware_bridge::VehicleState,
    patrol: Option<&Patrol>,
    returning_to: impl FnOnce() -> String,
) -> String {
    if !s.link_up {
        return "autopilot link down".into();
    }
    if in_air(s) && s.mode != FlightMode::Land && returning(s, patrol) {
        return returning_to();
    }
    match (in_air(s), s.mode) {
        (true, FlightMode::Auto) if patrol.is_some() => "patrolling".into(),
        (true, FlightMode::Land) => "landing".into(),
        (true, m) => format!("flying ({})", mode_name(m).to_lowercase()),
        (false, _) if s.armed => "armed on the ground".into(),
        (false, _) => "on the ground".into(),
    }
}

async fn submit_event(channel: &ChannelHandle, kind: EventKind) {
    let ev = DroneEvent {
        schema: proto::SCHEMA_VERSION,
        event_id: Uuid::now_v7(),
        drone_id: channel.drone_id().clone(),
        t_unix_ms: proto::unix_ms(std::time::SystemTime::now()),
        kind,
    };
    if let Err(e) = channel.submit_event(&ev).await {
        warn!(error = %e, "could not spool an event");
    }
}

/// Mission progress and landing, from the bridge's events.
async fn mission_events(bridge: Bridge, channel: ChannelHandle, exec: Arc<Executor>) {
    let mut rx = bridge.events();
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                warn!(missed = n, "mission events lagged");
                continue;
            }
            Err(_) => return,
        };
        let mission_id = exec.patrol().map(|p| p.mission_id);
        let kind = match ev {
            BridgeEvent::MissionItemReached { seq } => {
                let s = bridge.snapshot();
                let total = s.mission.total.unwrap_or(seq + 1).max(seq + 1) as u32;
                EventKind::MissionProgress {
                    mission_id,
                    current_seq: s.mission.current_seq.unwrap_or(seq).min(total as u16) as u32,
                    total,
                    reached_seq: Some(seq as u32),
                }
            }
            BridgeEvent::LandedStateChanged {
                state: LandedState::OnGround,
            } if mission_id.is_some() => EventKind::MissionState {
                mission_id,
                state: MissionState::Landed,
                detail: "landed".into(),
            },
            BridgeEvent::StatusText { severity, text } if severity <= 4 => EventKind::Log {
                level: if severity <= 3 { "error" } else { "warning" }.into(),
                message: format!("autopilot: {text}"),
            },
            _ => continue,
        };
        submit_event(&channel, kind).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiancha_firmware_bridge::state::MissionProgress;
    use tiancha_protocol::mission::{cmd, MissionItem, MissionSet};

    fn patrol() -> Patrol {
        let wp = MissionItem::nav(cmd::NAV_WAYPOINT, 28.45, 117.94, 50.0);
        let rtl = MissionItem::command(cmd::NAV_RETURN_TO_LAUNCH, [0.0; 4]);
        Patrol {
            mission_id: Uuid::now_v7(),
            plan: None,
            sortie: 0,
            on_board: MissionSet {
                mission: vec![wp, wp, wp, rtl],
                ..MissionSet::default()
            },
            fence: None,
        }
    }

    fn state(mode: FlightMode, seq: u16) -> tiancha_firmware_bridge::VehicleState {
        tiancha_firmware_bridge::VehicleState {
            mode,
            mission: MissionProgress {
                current_seq: Some(seq),
                ..MissionProgress::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_missions_own_final_rtl_counts_as_returning() {
        let p = patrol();
        assert!(!returning(&state(FlightMode::Auto, 2), Some(&p)));
        // ArduPilot stays in AUTO while it flies the mission's RTL item:
        // a battery failsafe must not command RTL on top of it.
        assert!(returning(&state(FlightMode::Auto, 3), Some(&p)));
        assert!(returning(&state(FlightMode::Rtl, 1), Some(&p)));
        assert!(returning(&state(FlightMode::Land, 1), None));
        assert!(!returning(&state(FlightMode::Auto, 3), None));
    }
}
