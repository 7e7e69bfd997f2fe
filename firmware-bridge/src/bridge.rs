//! The async API: one shared connection to the autopilot, driven by a tokio
//! task around [`Core`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use tiancha_protocol::mission::{deg_to_e7, MissionItem, MissionSet, MissionType};
use tiancha_protocol::Validate;

use crate::codec::{dialect, Msg};
use crate::command::{Command, CommandError, CommandId, CommandOk};
use crate::core::{
    BridgeConfig, BridgeStats, Core, MissionJob, MissionJobResult, SharedPoses, SigningConfig,
    SigningSetupError, UploadReport,
};
use crate::mission::{MissionError, MissionOp, MissionOutcome};
use crate::params::{ParamError, ParamValue};
use crate::pose::{CameraPose, ClockMap, PoseError, PoseHistory};
use crate::signing::SigningKey;
use crate::state::*;
use crate::transport::{Address, AddressError, Transport};

/// Why the bridge could not start or a wait failed.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error("cannot open {address}: {source}")]
    Open {
        address: String,
        source: std::io::Error,
    },
    #[error("no autopilot heartbeat within {0:?}")]
    NoAutopilot(Duration),
    #[error("timed out after {0:?} waiting for {1}")]
    WaitTimeout(Duration, String),
    #[error("the bridge has stopped")]
    Stopped,
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
}

enum Request {
    Command {
        cmd: Command,
        reply: oneshot::Sender<Result<CommandOk, CommandError>>,
    },
    Mission {
        job: MissionJob,
        reply: oneshot::Sender<MissionJobResult>,
    },
    Send(Box<Msg>),
    Param {
        name: String,
        value: Option<f64>,
        reply: oneshot::Sender<Result<ParamValue, ParamError>>,
    },
    SigningSetup {
        key: SigningKey,
        require: bool,
        reply: oneshot::Sender<Result<(), SigningSetupError>>,
    },
    ApplySigning(Option<SigningConfig>),
}

struct AbortOnDrop(JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A handle to the link. Cheap to clone; the link stays up while any clone
/// lives.
#[derive(Clone)]
pub struct Bridge {
    req: mpsc::Sender<Request>,
    state: watch::Receiver<VehicleState>,
    events: broadcast::Sender<Event>,
    stats: watch::Receiver<BridgeStats>,
    poses: SharedPoses,
    address: String,
    _task: Arc<AbortOnDrop>,
}

/// How a gimbal command got through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GimbalPath {
    /// Gimbal manager protocol v2 (`DO_GIMBAL_MANAGER_PITCHYAW`,
    /// `DO_SET_ROI_LOCATION`).
    ManagerV2,
    /// Legacy mount commands (`DO_MOUNT_CONTROL`, `DO_SET_ROI`).
    LegacyMount,
}

fn unix_now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Bridge {
    /// Open `address` (see [`crate::transport`]) and start the link task.
    /// Returns at once; use [`wait_for_autopilot`](Self::wait_for_autopilot)
    /// to wait for the heartbeat.
    pub async fn connect(address: &str, cfg: BridgeConfig) -> Result<Bridge, BridgeError> {
        let addr: Address = address.parse()?;
        let transport = Transport::open(&addr)
            .await
            .map_err(|source| BridgeError::Open {
                address: address.to_string(),
                source,
            })?;
        let poses: SharedPoses = Arc::new(RwLock::new(PoseHistory::default()));
        let core = Core::new(cfg, Instant::now(), unix_now_us(), poses.clone());
        let (req_tx, req_rx) = mpsc::channel(256);
        let (state_tx, state) = watch::channel(core.state().clone());
        let (events, _) = broadcast::channel(1024);
        let (stats_tx, stats) = watch::channel(core.stats());
        let task = tokio::spawn(drive(
            core,
            transport,
            req_rx,
            state_tx,
            events.clone(),
            stats_tx,
        ));
        Ok(Bridge {
            req: req_tx,
            state,
            events,
            stats,
            poses,
            address: addr.to_string(),
            _task: Arc::new(AbortOnDrop(task)),
        })
    }

    /// Validate file settings and connect.
    pub async fn from_settings(s: &crate::settings::BridgeSettings) -> Result<Bridge, BridgeError> {
        let (addr, cfg) = s.validate()?;
        Self::connect(&addr.to_string(), cfg).await
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The vehicle state, updated as telemetry arrives.
    pub fn state(&self) -> watch::Receiver<VehicleState> {
        self.state.clone()
    }

    /// A snapshot of the state.
    pub fn snapshot(&self) -> VehicleState {
        self.state.borrow().clone()
    }

    /// Events from now on (link, mission progress, mode changes, status
    /// texts). A slow reader loses the oldest (tokio broadcast semantics).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Link, command and mission counters (updated about once a second).
    pub fn stats(&self) -> BridgeStats {
        *self.stats.borrow()
    }

    /// Where the camera was at companion wall-clock time `t_unix_ms`.
    pub fn pose_at(&self, t_unix_ms: f64) -> Result<CameraPose, PoseError> {
        self.poses.read().expect("pose lock").pose_at(t_unix_ms)
    }

    /// The current boot-time ↔ companion-clock mapping.
    pub fn clock(&self) -> Option<ClockMap> {
        self.poses.read().expect("pose lock").clock.map()
    }

    /// Direct access to the pose history (e.g. to change the extrapolation
    /// limit).
    pub fn poses(&self) -> SharedPoses {
        self.poses.clone()
    }

    /// Wait until the state satisfies `pred`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&VehicleState) -> bool,
    ) -> Result<VehicleState, BridgeError> {
        let mut rx = self.state.clone();
        let fut = async {
            loop {
                {
                    let s = rx.borrow_and_update();
                    if pred(&s) {
                        return Ok(s.clone());
                    }
                }
                if rx.changed().await.is_err() {
                    return Err(BridgeError::Stopped);
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| BridgeError::WaitTimeout(timeout, what.to_string()))?
    }

    /// Wait for the autopilot's heartbeat.
    pub async fn wait_for_autopilot(&self, timeout: Duration) -> Result<VehicleState, BridgeError> {
        self.wait_for("autopilot heartbeat", timeout, |s| {
            s.system_id.is_some() && s.link_up
        })
        .await
        .map_err(|e| match e {
            BridgeError::WaitTimeout(t, _) => BridgeError::NoAutopilot(t),
            e => e,
        })
    }

    // ----- commands -----

    /// Send any command and wait for its typed result.
    pub async fn command(&self, cmd: Command) -> Result<CommandOk, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.req
            .send(Request::Command { cmd, reply })
            .await
            .map_err(|_| CommandError::BridgeStopped)?;
        rx.await.map_err(|_| CommandError::BridgeStopped)?
    }

    async fn long(&self, c: dialect::MavCmd, p: [f32; 7]) -> Result<CommandOk, CommandError> {
        self.command(Command::long(c, p)).await
    }

    pub async fn arm(&self) -> Result<CommandOk, CommandError> {
        self.long(
            dialect::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
            [1., 0., 0., 0., 0., 0., 0.],
        )
        .await
    }

    /// Disarm; `force` disarms even in flight (21196, the magic number).
    pub async fn disarm(&self, force: bool) -> Result<CommandOk, CommandError> {
        let p2 = if force { 21196.0 } else { 0.0 };
        self.long(
            dialect::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
            [0., p2, 0., 0., 0., 0., 0.],
        )
        .await
    }

    /// Set a flight mode, translated for ArduPilot (custom mode number) or
    /// PX4 (main/sub mode).
    pub async fn set_mode(&self, mode: FlightMode) -> Result<CommandOk, CommandError> {
        let s = self.snapshot();
        if s.system_id.is_none() {
            return Err(CommandError::NoAutopilot);
        }
        let custom = mode_to_custom(s.autopilot, s.vehicle, mode).ok_or_else(|| {
            CommandError::Invalid(format!(
                "flight mode {mode:?} does not exist on {:?} {:?}",
                s.autopilot, s.vehicle
            ))
        })?;
        let p = match s.autopilot {
            AutopilotKind::Px4 => [
                1.0,
                ((custom >> 16) & 0xFF) as f32,
                ((custom >> 24) & 0xFF) as f32,
                0.,
                0.,
                0.,
                0.,
            ],
            _ => [1.0, custom as f32, 0., 0., 0., 0., 0.],
        };
        self.long(dialect::MavCmd::MAV_CMD_DO_SET_MODE, p).await
    }

    /// Take off to `alt_rel_m` above home (ArduPilot: in GUIDED, armed).
    pub async fn takeoff(&self, alt_rel_m: f32) -> Result<CommandOk, CommandError> {
        if !(alt_rel_m.is_finite() && alt_rel_m > 0.0) {
            return Err(CommandError::Invalid(format!(
                "takeoff altitude must be a positive number of metres, got {alt_rel_m}"
            )));
        }
        let s = self.snapshot();
        let alt = match s.autopilot {
            // PX4 wants AMSL.
            AutopilotKind::Px4 => {
                let home = s.home.ok_or_else(|| {
                    CommandError::Invalid("PX4 takeoff needs the home altitude; none known".into())
                })?;
                (home.alt_m + alt_rel_m as f64) as f32
            }
            _ => alt_rel_m,
        };
        self.long(
            dialect::MavCmd::MAV_CMD_NAV_TAKEOFF,
            [0., 0., 0., f32::NAN, f32::NAN, f32::NAN, alt],
        )
        .await
    }

    /// Start (or restart) the uploaded mission.
    pub async fn start_mission(&self) -> Result<CommandOk, CommandError> {
        self.long(
            dialect::MavCmd::MAV_CMD_MISSION_START,
            [0., 0., 0., 0., 0., 0., 0.],
        )
        .await
    }

    pub async fn pause(&self) -> Result<CommandOk, CommandError> {
        self.long(
            dialect::MavCmd::MAV_CMD_DO_PAUSE_CONTINUE,
            [0., 0., 0., 0., 0., 0., 0.],
        )
        .await
    }

    pub async fn resume(&self) -> Result<CommandOk, CommandError> {
        self.long(
            dialect::MavCmd::MAV_CMD_DO_PAUSE_CONTINUE,
            [1., 0., 0., 0., 0., 0., 0.],
        )
        .await
    }

    pub async fn rtl(&self) -> Result<CommandOk, CommandError> {
        self.long(dialect::MavCmd::MAV_CMD_NAV_RETURN_TO_LAUNCH, [0.; 7])
            .await
    }

    pub async fn land(&self) -> Result<CommandOk, CommandError> {
        self.long(
            dialect::MavCmd::MAV_CMD_NAV_LAND,
            [0., 0., 0., f32::NAN, 0., 0., 0.],
        )
        .await
    }

    fn check_position(lat_deg: f64, lon_deg: f64) -> Result<(), CommandError> {
        if !(lat_deg.is_finite()
            && lon_deg.is_finite()
            && (-90.0..=90.0).contains(&lat_deg)
            && (-180.0..=180.0).contains(&lon_deg))
        {
            return Err(CommandError::Invalid(format!(
                "position ({lat_deg}, {lon_deg}) is not a valid WGS84 latitude/longitude"
            )));
        }
        Ok(())
    }

    /// Fly to a point (DO_REPOSITION, switching to GUIDED/hold), altitude
    /// above home; `speed_mps` ≤ 0 keeps the current speed.
    pub async fn goto(
        &self,
        lat_deg: f64,
        lon_deg: f64,
        alt_rel_m: f32,
        speed_mps: f32,
    ) -> Result<CommandOk, CommandError> {
        Self::check_position(lat_deg, lon_deg)?;
        self.command(Command::Int {
            command: dialect::MavCmd::MAV_CMD_DO_REPOSITION,
            frame: dialect::MavFrame::MAV_FRAME_GLOBAL_RELATIVE_ALT_INT,
            params: [
                if speed_mps > 0.0 { speed_mps } else { -1.0 },
                1.0,
                0.0,
                f32::NAN,
            ],
            x: deg_to_e7(lat_deg),
            y: deg_to_e7(lon_deg),
            z: alt_rel_m,
        })
        .await
    }

    /// Circle a point (DO_ORBIT); positive radius = clockwise. Altitude
    /// NaN keeps the current one.
    pub async fn orbit(
        &self,
        lat_deg: f64,
        lon_deg: f64,
        alt_rel_m: f32,
        radius_m: f32,
        speed_mps: f32,
    ) -> Result<CommandOk, CommandError> {
        Self::check_position(lat_deg, lon_deg)?;
        if !(radius_m.is_finite() && radius_m.abs() >= 1.0) {
            return Err(CommandError::Invalid(format!(
                "orbit radius must be at least 1 m, got {radius_m}"
            )));
        }
        self.command(Command::Int {
            command: dialect::MavCmd::MAV_CMD_DO_ORBIT,
            frame: dialect::MavFrame::MAV_FRAME_GLOBAL_RELATIVE_ALT_INT,
            params: [radius_m, speed_mps, 0.0, 0.0],
            x: deg_to_e7(lat_deg),
            y: deg_to_e7(lon_deg),
            z: alt_rel_m,
        })
        .await
    }

    /// Ground speed for the rest of the flight.
    pub async fn set_speed(&self, speed_mps: f32) -> Result<CommandOk, CommandError> {
        if !(speed_mps.is_finite() && speed_mps > 0.0) {
            return Err(CommandError::Invalid(format!(
                "speed must be positive, got {speed_mps}"
            )));
        }
        self.long(
            dialect::MavCmd::MAV_CMD_DO_CHANGE_SPEED,
            [1., speed_mps, -1., 0., 0., 0., 0.],
        )
        .await
    }

    /// Point the gimbal: pitch (negative = down) and yaw in degrees; yaw
    /// relative to the vehicle unless `yaw_earth`. Gimbal manager v2 first,
    /// the legacy mount command if the autopilot does not support it.
    pub async fn gimbal_pitch_yaw(
        &self,
        pitch_deg: f32,
        yaw_deg: f32,
        yaw_earth: bool,
    ) -> Result<GimbalPath, CommandError> {
        if !(pitch_deg.is_finite() && yaw_deg.is_finite()) {
            return Err(CommandError::Invalid("gimbal angles must be finite".into()));
        }
        let flags = if yaw_earth { 16.0 } else { 0.0 }; // GIMBAL_MANAGER_FLAGS_YAW_LOCK
        match self
            .long(
                dialect::MavCmd::MAV_CMD_DO_GIMBAL_MANAGER_PITCHYAW,
                [pitch_deg, yaw_deg, f32::NAN, f32::NAN, flags, 0., 0.],
            )
            .await
        {
            Ok(_) => Ok(GimbalPath::ManagerV2),
            Err(CommandError::Unsupported { .. }) => {
                self.long(
                    dialect::MavCmd::MAV_CMD_DO_MOUNT_CONTROL,
                    // pitch, roll, yaw, …, mode MAV_MOUNT_MODE_MAVLINK_TARGETING
                    [pitch_deg, 0., yaw_deg, 0., 0., 0., 2.],
                )
                .await?;
                Ok(GimbalPath::LegacyMount)
            }
            Err(e) => Err(e),
        }
    }

    /// Keep the camera on a point (altitude AMSL).
    pub async fn gimbal_roi(
        &self,
        lat_deg: f64,
        lon_deg: f64,
        alt_m: f32,
    ) -> Result<GimbalPath, CommandError> {
        Self::check_position(lat_deg, lon_deg)?;
        match self
            .command(Command::Int {
                command: dialect::MavCmd::MAV_CMD_DO_SET_ROI_LOCATION,
                frame: dialect::MavFrame::MAV_FRAME_GLOBAL_INT,
                params: [0., 0., 0., 0.],
                x: deg_to_e7(lat_deg),
                y: deg_to_e7(lon_deg),
                z: alt_m,
            })
            .await
        {
            Ok(_) => Ok(GimbalPath::ManagerV2),
            Err(CommandError::Unsupported { .. }) => {
                self.long(
                    dialect::MavCmd::MAV_CMD_DO_SET_ROI,
                    [3., 0., 0., 0., lat_deg as f32, lon_deg as f32, alt_m],
                )
                .await?;
                Ok(GimbalPath::LegacyMount)
            }
            Err(e) => Err(e),
        }
    }

    /// Stop tracking a region of interest.
    pub async fn gimbal_roi_none(&self) -> Result<GimbalPath, CommandError> {
        match self
            .long(dialect::MavCmd::MAV_CMD_DO_SET_ROI_NONE, [0.; 7])
            .await
        {
            Ok(_) => Ok(GimbalPath::ManagerV2),
            Err(CommandError::Unsupported { .. }) => {
                self.long(dialect::MavCmd::MAV_CMD_DO_SET_ROI, [0.; 7])
                    .await?;
                Ok(GimbalPath::LegacyMount)
            }
            Err(e) => Err(e),
        }
    }

    /// Ask for one message now (MAV_CMD_REQUEST_MESSAGE).
    pub async fn request_message(&self, message_id: u32) -> Result<CommandOk, CommandError> {
        self.long(
            dialect::MavCmd::MAV_CMD_REQUEST_MESSAGE,
            [message_id as f32, 0., 0., 0., 0., 0., 0.],
        )
        .await
    }

    /// Send a message as is, without retries (e.g. a TIMESYNC).
    pub async fn send_message(&self, msg: Msg) -> Result<(), CommandError> {
        self.req
            .send(Request::Send(Box::new(msg)))
            .await
            .map_err(|_| CommandError::BridgeStopped)
    }

    // ----- mission -----

    async fn mission_job(&self, job: MissionJob) -> Result<MissionJobResult, MissionError> {
        let (reply, rx) = oneshot::channel();
        self.req
            .send(Request::Mission { job, reply })
            .await
            .map_err(|_| MissionError::BridgeStopped)?;
        rx.await.map_err(|_| MissionError::BridgeStopped)
    }

    async fn mission_op(&self, op: MissionOp) -> Result<MissionOutcome, MissionError> {
        match self.mission_job(MissionJob::Op(op)).await? {
            MissionJobResult::Op(r) => r,
            MissionJobResult::Verified(r) => Err(MissionError::Invalid(format!(
                "unexpected verified-upload result {r:?}"
            ))),
        }
    }

    /// Download one list.
    pub async fn download(&self, ty: MissionType) -> Result<Vec<MissionItem>, MissionError> {
        match self.mission_op(MissionOp::Download { ty }).await? {
            MissionOutcome::Downloaded { items, .. } => Ok(items),
            other => unreachable!("download produced {other:?}"),
        }
    }

    /// Download the mission, fence and rally lists.
    pub async fn download_set(&self) -> Result<MissionSet, MissionError> {
        Ok(MissionSet {
            mission: self.download(MissionType::Mission).await?,
            fence: self.download(MissionType::Fence).await?,
            rally: self.download(MissionType::Rally).await?,
        })
    }

    /// Clear one list on the autopilot.
    pub async fn clear(&self, ty: MissionType) -> Result<(), MissionError> {
        self.mission_op(MissionOp::Clear { ty }).await.map(|_| ())
    }

    /// Upload one list, then read it back and compare
    /// ([`crate::mission::verify`]). Restarts the whole transfer (up to
    /// `transfer_attempts`) if the autopilot cancels it, it stalls, or the
    /// read-back differs. On ArduPilot the mission must start with the home
    /// item (seq 0).
    pub async fn upload(
        &self,
        ty: MissionType,
        items: &[MissionItem],
    ) -> Result<UploadReport, MissionError> {
        match self
            .mission_job(MissionJob::VerifiedUpload {
                ty,
                items: items.to_vec(),
            })
            .await?
        {
            MissionJobResult::Verified(r) => r,
            MissionJobResult::Op(r) => Err(MissionError::Invalid(format!(
                "unexpected single-operation result {r:?}"
            ))),
        }
    }

    /// Upload one list without reading it back: one protocol transfer, no
    /// restart. Returns whether the final MISSION_ACK arrived. For
    /// measurements and special cases; [`upload`](Self::upload) is the one
    /// to use.
    pub async fn upload_unverified(
        &self,
        ty: MissionType,
        items: &[MissionItem],
    ) -> Result<bool, MissionError> {
        match self
            .mission_op(MissionOp::Upload {
                ty,
                items: items.to_vec(),
            })
            .await?
        {
            MissionOutcome::Uploaded { acked, .. } => Ok(acked),
            other => Err(MissionError::Invalid(format!(
                "unexpected outcome {other:?}"
            ))),
        }
    }

    /// Upload and verify the mission, fence and rally lists (each, in that
    /// order). The set is validated first; nothing is sent if it is invalid.
    pub async fn upload_set(&self, set: &MissionSet) -> Result<Vec<UploadReport>, MissionError> {
        set.validate()
            .map_err(|e| MissionError::Invalid(e.to_string()))?;
        let mut reports = Vec::new();
        for ty in [MissionType::Mission, MissionType::Fence, MissionType::Rally] {
            reports.push(self.upload(ty, set.list(ty)).await?);
        }
        Ok(reports)
    }

    /// Make `seq` the current mission item (DO_SET_MISSION_CURRENT, or
    /// MISSION_SET_CURRENT confirmed by MISSION_CURRENT).
    pub async fn set_current(&self, seq: u16) -> Result<(), MissionError> {
        match self
            .long(
                dialect::MavCmd::MAV_CMD_DO_SET_MISSION_CURRENT,
                [seq as f32, 0., 0., 0., 0., 0., 0.],
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(CommandError::Unsupported { .. }) => {}
            Err(CommandError::NoAutopilot) => return Err(MissionError::NoAutopilot),
            Err(e) => {
                return Err(MissionError::Invalid(format!(
                    "set current item {seq}: {e}"
                )))
            }
        }
        let (sys, comp) = {
            let s = self.snapshot();
            (s.system_id.unwrap_or(1), s.component_id.unwrap_or(1))
        };
        for _ in 0..10 {
            let _ = self
                .send_message(Msg::MISSION_SET_CURRENT(
                    dialect::MISSION_SET_CURRENT_DATA {
                        seq,
                        target_system: sys,
                        target_component: comp,
                    },
                ))
                .await;
            if self
                .wait_for("MISSION_CURRENT", Duration::from_millis(700), |s| {
                    s.mission.current_seq == Some(seq)
                })
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(MissionError::Timeout {
            op: "set current",
            ty: MissionType::Mission,
            stage: "waiting for MISSION_CURRENT",
            retries: 10,
            done: 0,
            total: 1,
        })
    }

    // ----- parameters -----

    async fn param(&self, name: &str, value: Option<f64>) -> Result<ParamValue, ParamError> {
        let (reply, rx) = oneshot::channel();
        self.req
            .send(Request::Param {
                name: name.to_string(),
                value,
                reply,
            })
            .await
            .map_err(|_| ParamError::NoAutopilot)?;
        rx.await.map_err(|_| ParamError::NoAutopilot)?
    }

    /// Read a parameter by name.
    pub async fn param_get(&self, name: &str) -> Result<ParamValue, ParamError> {
        self.param(name, None).await
    }

    /// Set a parameter and return what the autopilot confirmed; an
    /// autopilot that keeps another value is an error.
    pub async fn param_set(&self, name: &str, value: f64) -> Result<ParamValue, ParamError> {
        self.param(name, Some(value)).await
    }

    // ----- signing -----

    /// Provision `key` to the autopilot (SETUP_SIGNING — only over a trusted
    /// link) and sign from now on; `require` then rejects unsigned frames.
    pub async fn setup_signing(
        &self,
        key: SigningKey,
        require: bool,
    ) -> Result<(), SigningSetupError> {
        let (reply, rx) = oneshot::channel();
        self.req
            .send(Request::SigningSetup {
                key,
                require,
                reply,
            })
            .await
            .map_err(|_| SigningSetupError::NoAutopilot)?;
        rx.await.map_err(|_| SigningSetupError::NoAutopilot)?
    }

    /// Start or stop signing on our side only (the autopilot already has
    /// the key).
    pub async fn set_signing(&self, s: Option<SigningConfig>) {
        let _ = self.req.send(Request::ApplySigning(s)).await;
    }
}

async fn drive(
    mut core: Core,
    mut transport: Transport,
    mut req_rx: mpsc::Receiver<Request>,
    state_tx: watch::Sender<VehicleState>,
    events: broadcast::Sender<Event>,
    stats_tx: watch::Sender<BridgeStats>,
) {
    let sender = transport.sender();
    let mut next_cmd: CommandId = 1;
    let mut pending: HashMap<CommandId, oneshot::Sender<Result<CommandOk, CommandError>>> =
        HashMap::new();
    let mut mission_queue: VecDeque<(MissionJob, oneshot::Sender<MissionJobResult>)> =
        VecDeque::new();
    let mut mission_reply: Option<oneshot::Sender<MissionJobResult>> = None;
    let mut signing_reply: Option<oneshot::Sender<Result<(), SigningSetupError>>> = None;
    let mut next_param: u64 = 1;
    let mut param_pending: HashMap<u64, oneshot::Sender<Result<ParamValue, ParamError>>> =
        HashMap::new();
    let mut next_stats = Instant::now();
    loop {
        let now = Instant::now();
        // Start the next mission transfer when idle.
        if mission_reply.is_none() {
            while let Some((job, reply)) = mission_queue.pop_front() {
                let verified = matches!(job, MissionJob::VerifiedUpload { .. });
                match core.start_mission_job(job, now) {
                    Ok(()) => {
                        mission_reply = Some(reply);
                        break;
                    }
                    Err(e) => {
                        let _ = reply.send(if verified {
                            MissionJobResult::Verified(Err(e))
                        } else {
                            MissionJobResult::Op(Err(e))
                        });
                    }
                }
            }
        }
        while let Some(bytes) = core.poll_transmit() {
            if !sender.send(bytes) {
                tracing::debug!("transport queue full: frame dropped");
            }
        }
        if core.take_state_dirty() {
            state_tx.send_replace(core.state().clone());
        }
        while let Some(e) = core.poll_event() {
            let _ = events.send(e);
        }
        while let Some((id, r)) = core.poll_command_result() {
            if let Some(tx) = pending.remove(&id) {
                let _ = tx.send(r);
            }
        }
        while let Some((id, r)) = core.poll_param_result() {
            if let Some(tx) = param_pending.remove(&id) {
                let _ = tx.send(r);
            }
        }
        if let Some(r) = core.poll_mission_result() {
            if let Some(tx) = mission_reply.take() {
                let _ = tx.send(r);
            }
            continue; // maybe start the next one
        }
        if let Some(r) = core.poll_signing_result() {
            if let Some(tx) = signing_reply.take() {
                let _ = tx.send(r);
            }
        }
        if now >= next_stats {
            stats_tx.send_replace(core.stats());
            next_stats = now + Duration::from_millis(500);
        }
        let deadline = core
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(1))
            .min(next_stats);
        tokio::select! {
            p = transport.incoming.recv() => {
                let Some((peer, packet)) = p else { break };
                core.handle_packet(peer, &packet, Instant::now());
            }
            r = req_rx.recv() => {
                let Some(r) = r else { break };
                let now = Instant::now();
                match r {
                    Request::Command { cmd, reply } => {
                        let id = next_cmd;
                        next_cmd += 1;
                        pending.insert(id, reply);
                        core.submit_command(id, cmd, now);
                    }
                    Request::Mission { job, reply } => mission_queue.push_back((job, reply)),
                    Request::Send(m) => core.send_message(&m, now),
                    Request::Param { name, value, reply } => {
                        let id = next_param;
                        next_param += 1;
                        param_pending.insert(id, reply);
                        core.submit_param(id, &name, value, now);
                    }
                    Request::SigningSetup { key, require, reply } => {
                        signing_reply = Some(reply);
                        core.start_signing_setup(key, require, now);
                    }
                    Request::ApplySigning(s) => core.apply_signing(s),
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                core.handle_timeout(Instant::now());
            }
        }
    }
    core.commands.fail_all(CommandError::BridgeStopped);
}
