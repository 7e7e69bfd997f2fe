//! Commands from the ground, each answered with results: `accepted`, then
//! `in_progress` steps for long ones, then exactly one final status
//! (`succeeded`, `refused` with the reason, `failed`, `expired`).
//!
//! Short commands (pause, resume, RTL, land, detection zones) run at once,
//! even while a long one (launch, investigate) is under way, so RTL always
//! gets through. Two long commands never overlap: the second is refused
//! ("busy"). A command id seen before is not executed again (MQTT may
//! deliver twice).
//!
//! Commands from the ground enter through [`Executor::dispatch_ground`]:
//! the [`CommandGuard`] checks the ground station's signature, expiry,
//! clock skew and replays first; a refused command is logged, answered
//! with the reason (except replays) and never executed.
//! [`Executor::dispatch`] is for commands the companion makes itself
//! (auto-investigate) and trusts.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tiancha_firmware_bridge::state::AutopilotKind;
use tiancha_firmware_bridge::{Bridge, FlightMode, VehicleState};
use tiancha_mission_planner::{self as planner, Plan, PlanRequest};
use tiancha_protocol::{
    self as proto, mission::MissionSet, Command, CommandKind, CommandResult, CommandStatus,
    DetectionZone, EventKind, GeoPoint, MissionState, PatrolSpec,
};
use tokio::sync::watch;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::autopilot::{self, Stack};
use crate::channel::ChannelHandle;
use crate::command_guard::{CommandGuard, Rejection};
use crate::config::CompanionConfig;
use crate::vehicle::{in_air, launch_refusal};

/// The patrol the drone is flying (or last flew).
#[derive(Debug, Clone)]
pub struct Patrol {
    pub mission_id: Uuid,
    /// The plan the patrol was flown from (`None`: adopted from what was
    /// on board after the companion restarted mid-flight).
    pub plan: Option<Arc<Plan>>,
    pub sortie: usize,
    /// What is on board now (the sortie, or the sortie with a detour).
    pub on_board: MissionSet,
    /// How the fence was enforced and how the autopilot picks its RTL
    /// destination (set once the fence is on).
    pub fence: Option<autopilot::FenceReport>,
}

pub struct Executor {
    bridge: Bridge,
    channel: ChannelHandle,
    cfg: Arc<CompanionConfig>,
    patrol: Arc<Mutex<Option<Patrol>>>,
    busy: Arc<tokio::sync::Mutex<()>>,
    seen: Mutex<(HashSet<Uuid>, VecDeque<Uuid>)>,
    guard: Mutex<CommandGuard>,
    zones: watch::Sender<Vec<DetectionZone>>,
}

/// How long to wait for the vehicle to climb to patrol altitude (after arming).
const TAKEOFF_TIMEOUT: Duration = Duration::from_secs(120);

impl Executor {
    pub fn new(
        bridge: Bridge,
        channel: ChannelHandle,
        cfg: Arc<CompanionConfig>,
        zones: watch::Sender<Vec<DetectionZone>>,
    ) -> Arc<Self> {
        // Keys were checked when the config was loaded.
        let keys = cfg.commands.trusted_keys().unwrap_or_else(|e| {
            error!(error = %e, "ground-station command keys unreadable: trusting none");
            Default::default()
        });
        if keys.is_empty() {
            error!(
                "no ground-station command key configured ([commands] ground_station_public_keys): \
                 every command from the ground will be refused"
            );
        } else {
            let ids: Vec<&str> = keys.keys().iter().map(|k| k.key_id()).collect();
            info!(keys = ?ids, "commands from the ground must be signed by one of these keys");
        }
        let started = proto::unix_ms(std::time::SystemTime::now());
        let guard = CommandGuard::new(keys, cfg.commands.guard_config(), started);
        Arc::new(Self {
            bridge,
            channel,
            cfg,
            patrol: Arc::new(Mutex::new(None)),
            busy: Arc::new(tokio::sync::Mutex::new(())),
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
            guard: Mutex::new(guard),
            zones,
        })
    }

    pub fn patrol(&self) -> Option<Patrol> {
        self.patrol.lock().unwrap().clone()
    }

    /// Take a command from the ground: verify it (signature, expiry,
    /// skew, replay) and run it, or refuse it with the reason.
    pub fn dispatch_ground(self: &Arc<Self>, cmd: Command) {
        let now = proto::unix_ms(std::time::SystemTime::now());
        let verdict = self.guard.lock().unwrap().check(&cmd, now);
        match verdict {
            Ok(key) => {
                info!(command = %cmd.command_id, kind = cmd.kind.name(), by = %cmd.issued_by, key = %key, "command signature verified");
                let me = self.clone();
                tokio::spawn(async move { me.execute(cmd).await });
            }
            Err(r) => self.reject(cmd, r, now),
        }
    }

    fn reject(self: &Arc<Self>, cmd: Command, r: Rejection, now: i64) {
        warn!(
            command = %cmd.command_id,
            kind = cmd.kind.name(),
            by = %cmd.issued_by,
            class = r.class(),
            reason = %r,
            "command REJECTED, not executed"
        );
        if !r.answered() {
            return;
        }
        if !self.guard.lock().unwrap().may_answer(now) {
            warn!(command = %cmd.command_id, "too many rejected commands this minute: not answering this one");
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            me.result(&cmd, r.status(), None, r.to_string()).await;
        });
    }

    /// Run a command the companion made itself (trusted; not for commands
    /// from the ground, which go through [`Self::dispatch_ground`]).
    pub fn dispatch(self: &Arc<Self>, cmd: Command) {
        {
            let mut seen = self.seen.lock().unwrap();
            if !seen.0.insert(cmd.command_id) {
                info!(command = %cmd.command_id, "duplicate delivery of a command ignored");
                return;
            }
            seen.1.push_back(cmd.command_id);
            if seen.1.len() > 10_000 {
                let old = seen.1.pop_front().expect("non-empty");
                seen.0.remove(&old);
            }
        }
        let me = self.clone();
        tokio::spawn(async move { me.execute(cmd).await });
    }

    async fn execute(self: Arc<Self>, cmd: Command) {
        let now = proto::unix_ms(std::time::SystemTime::now());
        info!(command = %cmd.command_id, kind = cmd.kind.name(), by = %cmd.issued_by, "command received");
        if now > cmd.expires_unix_ms {
            let late = (now - cmd.expires_unix_ms) / 1000;
            self.result(
                &cmd,
                CommandStatus::Expired,
                None,
                format!("arrived {late} s after it expired"),
            )
            .await;
            return;
        }
        let outcome = match &cmd.kind {
            CommandKind::LaunchPatrol { patrol } => match self.begin_long(&cmd).await {
                Some(_busy) => self.launch(&cmd, patrol.clone()).await,
                None => busy(),
            },
            CommandKind::Investigate {
                target,
                orbit_radius_m,
                duration_s,
                ..
            } => match self.begin_long(&cmd).await {
                Some(_busy) => {
                    self.investigate(*target, *orbit_radius_m, *duration_s)
                        .await
                }
                None => busy(),
            },
            CommandKind::Pause => match Stack::of(self.bridge.snapshot().autopilot) {
                Ok(k) => self.simple(k.pause(&self.bridge).await, "paused"),
                Err(why) => (CommandStatus::Refused, why),
            },
            CommandKind::Resume => match Stack::of(self.bridge.snapshot().autopilot) {
                Ok(k) => self.simple(k.resume(&self.bridge).await, "resumed"),
                Err(why) => (CommandStatus::Refused, why),
            },
            CommandKind::ReturnToLaunch => {
                let to = self.returning_to();
                let r = self.simple(self.bridge.rtl().await, &to);
                if r.0 == CommandStatus::Succeeded {
                    self.mission_event(MissionState::Returning, &to).await;
                }
                r
            }
            CommandKind::Land => self.simple(self.bridge.land().await, "landing"),
            CommandKind::SetDetectionZones { zones } => {
                let _ = self.zones.send(zones.clone());
                (
                    CommandStatus::Succeeded,
                    format!("{} detection zone(s) in force", zones.len()),
                )
            }
        };
        self.result(&cmd, outcome.0, None, outcome.1).await;
    }

    /// Start a long command unless another is under way: the guard holds
    /// the slot until dropped.
    async fn begin_long(&self, cmd: &Command) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let guard = self.busy.clone().try_lock_owned().ok()?;
        self.result(cmd, CommandStatus::Accepted, None, String::new())
            .await;
        Some(guard)
    }

    fn simple<T, E: std::fmt::Display>(
        &self,
        r: Result<T, E>,
        ok: &str,
    ) -> (CommandStatus, String) {
        match r {
            Ok(_) => (CommandStatus::Succeeded, ok.into()),
            Err(e) => (CommandStatus::Failed, e.to_string()),
        }
    }

    async fn result(
        &self,
        cmd: &Command,
        status: CommandStatus,
        progress_pct: Option<f64>,
        reason: String,
    ) {
        let r = CommandResult {
            schema: proto::SCHEMA_VERSION,
            command_id: cmd.command_id,
            drone_id: self.channel.drone_id().clone(),
            t_unix_ms: proto::unix_ms(std::time::SystemTime::now()),
            status,
            progress_pct,
            reason,
            detail: None,
        };
        if status.is_final() {
            info!(command = %cmd.command_id, ?status, reason = %r.reason, "command result");
        }
        if let Err(e) = self.channel.submit_command_result(&r).await {
            warn!(error = %e, "could not spool a command result");
        }
    }

    async fn progress(&self, cmd: &Command, pct: f64, what: &str) {
        self.result(cmd, CommandStatus::InProgress, Some(pct), what.into())
            .await;
    }

    async fn mission_event(&self, state: MissionState, detail: &str) {
        let mission_id = self.patrol().map(|p| p.mission_id);
        let ev = proto::DroneEvent {
            schema: proto::SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            drone_id: self.channel.drone_id().clone(),
            t_unix_ms: proto::unix_ms(std::time::SystemTime::now()),
            kind: EventKind::MissionState {
                mission_id,
                state,
                detail: detail.into(),
            },
        };
        if let Err(e) = self.channel.submit_event(&ev).await {
            warn!(error = %e, "could not spool a mission event");
        }
    }

    /// Plan the patrol (or take the ready plan) for the current vehicle.
    fn plan(&self, spec: &PatrolSpec, s: &VehicleState) -> Result<Plan, String> {
        let (vehicle, camera) = planner_inputs(&self.cfg, s, spec.altitude_rel_m);
        let req =
            PlanRequest::from_patrol_spec(spec, &vehicle, &camera).map_err(|e| e.to_string())?;
        planner::plan_patrol(&req).map_err(|e| e.to_string())
    }

    async fn launch(&self, cmd: &Command, spec: PatrolSpec) -> (CommandStatus, String) {
        let s = self.bridge.snapshot();
        if let Some(why) = launch_refusal(&s, &self.cfg.safety) {
            return (CommandStatus::Refused, why);
        }
        // Readiness (GPS, EKF, the autopilot's pre-arm checks) may come
        // while we wait; arming is retried until the same deadline.
        let ready_by =
            std::time::Instant::now() + Duration::from_secs(self.cfg.safety.readiness_timeout_s);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let say = move |m: &str| {
            let _ = tx.send(m.to_string());
        };
        let ready = self
            .with_progress(
                cmd,
                5.0,
                &mut rx,
                autopilot::wait_ready(&self.bridge, &self.cfg.safety, ready_by, &say),
            )
            .await;
        let s = match ready {
            Ok(s) => s,
            Err(why) => return (CommandStatus::Refused, why),
        };
        if let Some(why) = launch_refusal(&s, &self.cfg.safety) {
            return (CommandStatus::Refused, why);
        }
        let stack = match Stack::of(s.autopilot) {
            Ok(k) => k,
            Err(why) => return (CommandStatus::Refused, why),
        };
        let plan = match self.plan(&spec, &s) {
            Ok(p) => p,
            Err(why) => return (CommandStatus::Refused, why),
        };
        let sortie = &plan.sorties[0];
        let set = sortie.mission.clone();
        if set.fence.is_empty() {
            return (
                CommandStatus::Refused,
                "no fence in the plan: refusing to fly without one".into(),
            );
        }
        let summary = format!(
            "{} waypoints, sortie 1 of {}, {:.1} km, about {:.0} min",
            set.mission.len(),
            plan.sorties.len(),
            sortie.length_m / 1000.0,
            sortie.time_s / 60.0
        );
        self.progress(cmd, 10.0, &format!("planned: {summary}"))
            .await;
        let mission_id = Uuid::now_v7();
        *self.patrol.lock().unwrap() = Some(Patrol {
            mission_id,
            plan: Some(Arc::new(plan.clone())),
            sortie: 0,
            on_board: set.clone(),
            fence: None,
        });
        self.mission_event(MissionState::Planned, &summary).await;
        if let Err(e) = self.bridge.upload_set(&set).await {
            return (CommandStatus::Failed, format!("upload failed: {e}"));
        }
        self.progress(cmd, 35.0, "mission, fence and rally uploaded and verified")
            .await;
        let Some(home) = s.home else {
            return (CommandStatus::Refused, "home not known".into());
        };
        let fence = match stack
            .enforce_fence(
                &self.bridge,
                &set,
                planner::LatLon::new(home.lat_deg, home.lon_deg),
                home.alt_m,
                &self.cfg.safety,
            )
            .await
        {
            Ok(f) => f,
            Err(why) => return (CommandStatus::Refused, why),
        };
        let fence_summary = fence.summary();
        info!(fence = %fence_summary, "fence enforced");
        if let Some(p) = self.patrol.lock().unwrap().as_mut() {
            p.fence = Some(fence);
        }
        self.progress(cmd, 45.0, &fence_summary).await;
        self.mission_event(
            MissionState::Uploaded,
            &format!("mission, fence and rally verified on board; {fence_summary}"),
        )
        .await;
        // Conditions may have changed while uploading.
        if let Some(why) = launch_refusal(&self.bridge.snapshot(), &self.cfg.safety) {
            return (CommandStatus::Refused, why);
        }
        let alt = spec
            .altitude_rel_m
            .unwrap_or(self.cfg.patrol.altitude_rel_m);
        let climb = self
            .with_progress(
                cmd,
                55.0,
                &mut rx,
                stack.take_off(&self.bridge, alt, ready_by, TAKEOFF_TIMEOUT, &say),
            )
            .await;
        if let Err(why) = climb {
            return (CommandStatus::Failed, why);
        }
        self.progress(cmd, 80.0, "at patrol altitude").await;
        if let Err(why) = stack.start_patrol(&self.bridge).await {
            return (CommandStatus::Failed, why);
        }
        self.mission_event(MissionState::Started, &summary).await;
        (
            CommandStatus::Succeeded,
            format!("patrol started: {summary}"),
        )
    }

    /// Take over a flight already under way (the companion restarted
    /// mid-patrol): what is on board becomes the patrol, with the fence as
    /// read back. Nothing is sent to the vehicle; the flight goes on
    /// undisturbed. `None` when the vehicle is not armed.
    pub async fn adopt_flight(&self) -> Option<Result<String, String>> {
        let s = self.bridge.snapshot();
        // Never over a patrol this process launched, or while it launches.
        let _busy = self.busy.clone().try_lock_owned().ok()?;
        if !s.armed || self.patrol().is_some() {
            return None;
        }
        let r = async {
            let stack = Stack::of(s.autopilot)?;
            let set = self
                .bridge
                .download_set()
                .await
                .map_err(|e| format!("reading the mission on board: {e}"))?;
            let fence = stack.read_fence(&self.bridge).await?;
            let what = format!(
                "adopted the flight under way: {} mission items, {} fence items, {} rally points on board; {}",
                set.mission.len(),
                set.fence.len(),
                set.rally.len(),
                fence.summary()
            );
            *self.patrol.lock().unwrap() = Some(Patrol {
                mission_id: Uuid::now_v7(),
                plan: None,
                sortie: 0,
                on_board: set,
                fence: Some(fence),
            });
            Ok(what)
        }
        .await;
        Some(r)
    }

    /// Run `fut`, passing what it says on `rx` to the operator as
    /// progress of `cmd`, all of it.
    async fn with_progress<T>(
        &self,
        cmd: &Command,
        pct: f64,
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
        fut: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::pin!(fut);
        let r = loop {
            tokio::select! {
                r = &mut fut => break r,
                Some(m) = rx.recv() => self.progress(cmd, pct, &m).await,
            }
        };
        while let Ok(m) = rx.try_recv() {
            self.progress(cmd, pct, &m).await;
        }
        r
    }

    /// Where RTL would take the drone now, if the patrol's fence report
    /// says how the autopilot chooses.
    pub fn rtl_target(&self, s: &VehicleState) -> Option<autopilot::RtlTarget> {
        let patrol = self.patrol()?;
        let rule = patrol.fence.as_ref()?.rtl_rule;
        let home = s.home?;
        let pos = s.position?;
        Some(autopilot::rtl_target(
            planner::LatLon::new(pos.lat_deg, pos.lon_deg),
            planner::LatLon::new(home.lat_deg, home.lon_deg),
            &patrol.on_board.rally,
            rule,
        ))
    }

    /// "returning to …", naming where the autopilot will go.
    pub fn returning_to(&self) -> String {
        match self.rtl_target(&self.bridge.snapshot()) {
            Some(t) if t.rally_index.is_some() => format!("returning to {}", t.describe()),
            Some(t) => format!("returning to launch: {}", t.describe()),
            None => "returning to launch".into(),
        }
    }

    async fn investigate(
        &self,
        target: GeoPoint,
        radius_m: f64,
        duration_s: f64,
    ) -> (CommandStatus, String) {
        let Some(patrol) = self.patrol() else {
            return (
                CommandStatus::Refused,
                "no patrol is running to investigate from".into(),
            );
        };
        let s = self.bridge.snapshot();
        if !in_air(&s) {
            return (CommandStatus::Refused, "the drone is not flying".into());
        }
        let (Some(pos), Some(seq)) = (s.position, s.mission.current_seq) else {
            return (
                CommandStatus::Refused,
                "position or mission progress unknown".into(),
            );
        };
        let Some(plan) = patrol.plan.as_ref() else {
            return (
                CommandStatus::Refused,
                "the companion restarted during this flight and flies the mission on board without its plan: \
                 land and launch again to investigate"
                    .into(),
            );
        };
        let inv = match plan.investigate(
            &patrol.on_board.mission,
            seq,
            planner::LatLon::new(pos.lat_deg, pos.lon_deg),
            pos.alt_rel_m,
            planner::LatLon::new(target.lat_deg, target.lon_deg),
            radius_m,
            duration_s,
        ) {
            Ok(i) => i,
            Err(e) => return (CommandStatus::Refused, e.to_string()),
        };
        let mut set = patrol.on_board.clone();
        set.mission = inv.mission.clone();
        if let Err(e) = self
            .bridge
            .upload(proto::MissionType::Mission, &set.mission)
            .await
        {
            return (CommandStatus::Failed, format!("upload failed: {e}"));
        }
        if let Err(e) = self.bridge.set_current(inv.start_seq).await {
            return (CommandStatus::Failed, format!("set current item: {e}"));
        }
        if s.mode != FlightMode::Auto {
            if let Err(e) = self.bridge.set_mode(FlightMode::Auto).await {
                return (CommandStatus::Failed, format!("set AUTO: {e}"));
            }
        }
        if let Some(p) = self.patrol.lock().unwrap().as_mut() {
            p.on_board = set;
        }
        self.mission_event(
            MissionState::Investigating,
            &format!(
                "investigating {:.5}, {:.5}: orbit {radius_m:.0} m for {duration_s:.0} s, then resume",
                target.lat_deg, target.lon_deg
            ),
        )
        .await;
        (
            CommandStatus::Succeeded,
            format!(
                "investigating: detour uploaded ({} items), resuming the patrol afterwards",
                inv.mission.len()
            ),
        )
    }
}

fn busy() -> (CommandStatus, String) {
    (
        CommandStatus::Refused,
        "busy: another launch or investigation is under way".into(),
    )
}

/// The planner's vehicle and camera for this drone, home from the vehicle.
pub fn planner_inputs(
    cfg: &CompanionConfig,
    s: &VehicleState,
    altitude_rel_m: Option<f64>,
) -> (planner::Vehicle, planner::Camera) {
    let p = &cfg.patrol;
    let vehicle = planner::Vehicle {
        // The heartbeat says which stack flies; the config only when it
        // has not been heard yet.
        autopilot: match s.autopilot {
            AutopilotKind::Px4 => planner::Autopilot::Px4,
            AutopilotKind::ArduPilot => planner::Autopilot::Ardupilot,
            _ if p.autopilot == "px4" => planner::Autopilot::Px4,
            _ => planner::Autopilot::Ardupilot,
        },
        cruise_speed_mps: p.cruise_speed_mps,
        endurance_min: Some(p.battery_minutes),
        reserve_min: Some(p.reserve_minutes),
        home: s.home.map(|h| planner::LatLon::new(h.lat_deg, h.lon_deg)),
        home_alt_amsl_m: s.home.map_or(0.0, |h| h.alt_m),
        max_distance_from_home_m: Some(p.max_distance_from_home_m),
        ..planner::Vehicle::default()
    };
    let camera = planner::Camera {
        hfov_deg: Some(p.camera_hfov_deg),
        vfov_deg: Some(p.camera_vfov_deg),
        gimbal_pitch_deg: p.camera_gimbal_pitch_deg,
        altitude_agl_m: Some(altitude_rel_m.unwrap_or(p.altitude_rel_m)),
        side_overlap: p.side_overlap,
        front_overlap: p.front_overlap,
        ..planner::Camera::default()
    };
    (vehicle, camera)
}
