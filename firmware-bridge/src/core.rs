//! The whole link as one sans-IO state machine: bytes and the time in,
//! bytes, events and results out. [`crate::Bridge`] drives it from a tokio
//! task; tests drive it in virtual time.
//!
//! It owns identity and liveness (our heartbeat, autopilot discovery,
//! link lost/regained), the telemetry picture ([`VehicleState`] and the
//! [`PoseHistory`]), time synchronisation, stream requests, the command
//! and mission services, and signing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mavlink::{MavHeader, Message, MessageData};
use serde::Serialize;
use tiancha_geometry::geodesy::LatLonAlt;

use crate::codec::{dialect, Decoder, Encoder, LinkStats, Msg, Received};
use crate::command::{
    Command, CommandClient, CommandConfig, CommandError, CommandId, CommandOk, CommandStats,
};
use crate::mission::{
    verify, MissionClient, MissionConfig, MissionError, MissionOp, MissionOutcome, MissionStats,
};
use crate::params::{ParamClient, ParamConfig, ParamEncoding, ParamError, ParamOpId, ParamValue};
use crate::pose::{from_euler, AttitudeSample, GimbalSample, PoseHistory, PositionSample};
use crate::signing::{setup_signing_message, Signer, SigningKey, Verifier};
use crate::state::*;
use crate::transport::{Packet, PeerId};
use tiancha_protocol::mission::{cmd, MissionItem, MissionType};

/// Signing on this link.
#[derive(Debug, Clone)]
pub struct SigningConfig {
    pub key: SigningKey,
    /// Our link id in signatures.
    pub link_id: u8,
    /// Reject unsigned (and badly signed, stale) frames.
    pub require: bool,
}

/// How the bridge behaves. `Default` suits a companion computer on a
/// telemetry radio.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Our MAVLink system id (a companion shares the vehicle's).
    pub system_id: u8,
    /// Our component id (191 = MAV_COMP_ID_ONBOARD_COMPUTER).
    pub component_id: u8,
    /// Talk to this system only; `None` = the first autopilot heard.
    pub target_system: Option<u8>,
    pub heartbeat_interval: Duration,
    /// No message from the autopilot for this long = link lost.
    pub link_timeout: Duration,
    pub timesync_interval: Duration,
    /// Messages to stream and their rates (message id, Hz).
    pub streams: Vec<(u32, f32)>,
    pub mission: MissionConfig,
    pub command: CommandConfig,
    pub signing: Option<SigningConfig>,
    /// Pose history length.
    pub pose_keep: Duration,
    /// Whole-transfer attempts of a verified upload (restart after the
    /// autopilot cancels, or the read-back differs).
    pub transfer_attempts: u32,
}

/// Message ids the bridge streams by default, with rates (Hz).
pub fn default_streams() -> Vec<(u32, f32)> {
    use dialect::*;
    vec![
        (GLOBAL_POSITION_INT_DATA::ID, 10.0),
        (ATTITUDE_DATA::ID, 20.0),
        (GIMBAL_DEVICE_ATTITUDE_STATUS_DATA::ID, 10.0),
        (MOUNT_STATUS_DATA::ID, 5.0),
        (SYS_STATUS_DATA::ID, 1.0),
        (GPS_RAW_INT_DATA::ID, 2.0),
        (BATTERY_STATUS_DATA::ID, 1.0),
        (EKF_STATUS_REPORT_DATA::ID, 1.0),
        (EXTENDED_SYS_STATE_DATA::ID, 1.0),
        (SYSTEM_TIME_DATA::ID, 1.0),
        (MISSION_CURRENT_DATA::ID, 1.0),
        (HOME_POSITION_DATA::ID, 0.2),
    ]
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            system_id: 1,
            component_id: 191,
            target_system: None,
            heartbeat_interval: Duration::from_secs(1),
            link_timeout: Duration::from_millis(2000),
            timesync_interval: Duration::from_millis(1000),
            streams: default_streams(),
            mission: MissionConfig::default(),
            command: CommandConfig::default(),
            signing: None,
            pose_keep: Duration::from_secs(60),
            transfer_attempts: 4,
        }
    }
}

/// The pose history, shared between the core (writer) and readers.
pub type SharedPoses = Arc<RwLock<PoseHistory>>;

/// A mission job for the core: one protocol operation, or a verified
/// upload (upload, read back, compare; restart on failure).
#[derive(Debug, Clone, PartialEq)]
pub enum MissionJob {
    Op(MissionOp),
    VerifiedUpload {
        ty: MissionType,
        items: Vec<MissionItem>,
    },
}

/// What a finished job produced.
#[derive(Debug, Clone, PartialEq)]
pub enum MissionJobResult {
    Op(Result<MissionOutcome, MissionError>),
    Verified(Result<UploadReport, MissionError>),
}

/// What a verified upload did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UploadReport {
    pub ty: MissionType,
    pub items: usize,
    /// Whole-transfer attempts needed (1 = first time).
    pub attempts: u32,
    /// The final MISSION_ACK arrived (else the read-back alone proved it).
    pub acked: bool,
    /// ArduPilot's home item as read back (mission list only).
    pub home_on_board: Option<MissionItem>,
}

#[derive(Debug)]
enum Stage {
    Single,
    Uploading,
    ReadingBack { acked: bool },
}

#[derive(Debug)]
struct Job {
    ty: MissionType,
    items: Vec<MissionItem>,
    attempt: u32,
    stage: Stage,
    last_err: Option<MissionError>,
}

/// All counters of the link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BridgeStats {
    pub link: LinkStats,
    pub commands: CommandStats,
    pub mission: MissionStats,
}

const INTERNAL: CommandId = 1 << 63;
const REBOOT_BACKSTEP_MS: u32 = 5000;

#[derive(Debug)]
struct SigningSetup {
    key: SigningKey,
    require: bool,
    link_id: u8,
    attempts: u32,
    deadline: Instant,
}

/// Result of a SETUP_SIGNING provisioning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningSetupError {
    #[error("the autopilot never answered with signed frames after {0} SETUP_SIGNING attempts")]
    NoConfirmation(u32),
    #[error("no autopilot found yet")]
    NoAutopilot,
}

/// The link state machine. See the module docs.
pub struct Core {
    cfg: BridgeConfig,
    t0: Instant,
    unix0_us: u64,
    decoders: HashMap<PeerId, Decoder>,
    encoder: Encoder,
    verifier: Option<Verifier>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    state: VehicleState,
    state_dirty: bool,
    target: Option<(u8, u8)>,
    last_rx: Option<Instant>,
    ever_up: bool,
    next_heartbeat: Instant,
    next_timesync: Instant,
    stream_fallback_sent: bool,
    next_internal: CommandId,
    pub commands: CommandClient,
    pub mission: MissionClient,
    pub params: ParamClient,
    param_results: VecDeque<(ParamOpId, Result<ParamValue, ParamError>)>,
    poses: SharedPoses,
    max_boot_ms: Option<u32>,
    gimbal_device_seen: Option<Instant>,
    command_results: VecDeque<(CommandId, Result<CommandOk, CommandError>)>,
    signing_setup: Option<SigningSetup>,
    signing_result: Option<Result<(), SigningSetupError>>,
    extra: LinkStats,
    job: Option<Job>,
    job_result: Option<MissionJobResult>,
    /// A chunked STATUSTEXT being joined: (id, text so far).
    text_chunks: Option<(u16, String)>,
}

fn now_unix_us_at(t0: Instant, unix0_us: u64, now: Instant) -> u64 {
    unix0_us + now.saturating_duration_since(t0).as_micros() as u64
}

impl Core {
    /// `now` and `unix_now_us` anchor the companion clock: Unix time is
    /// derived from the monotonic clock from here on (no jumps).
    pub fn new(cfg: BridgeConfig, now: Instant, unix_now_us: u64, poses: SharedPoses) -> Self {
        {
            let mut p = poses.write().expect("pose lock");
            p.keep_ms = cfg.pose_keep.as_secs_f64() * 1000.0;
        }
        let (signer, verifier) = match &cfg.signing {
            Some(s) => (
                Some(Signer::new(s.key.clone(), s.link_id)),
                Some(Verifier::new(s.key.clone(), s.require)),
            ),
            None => (None, None),
        };
        let mut state = VehicleState {
            signing: signer.is_some(),
            ..Default::default()
        };
        state.link_up = false;
        Self {
            encoder: Encoder::new(cfg.system_id, cfg.component_id, signer),
            verifier,
            commands: CommandClient::new(cfg.command.clone()),
            mission: MissionClient::new(cfg.mission.clone()),
            params: ParamClient::new(ParamConfig::default()),
            param_results: VecDeque::new(),
            cfg,
            t0: now,
            unix0_us: unix_now_us,
            decoders: HashMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            state,
            state_dirty: true,
            target: None,
            last_rx: None,
            ever_up: false,
            next_heartbeat: now,
            next_timesync: now,
            stream_fallback_sent: false,
            next_internal: INTERNAL,
            poses,
            max_boot_ms: None,
            gimbal_device_seen: None,
            command_results: VecDeque::new(),
            signing_setup: None,
            signing_result: None,
            extra: LinkStats::default(),
            job: None,
            job_result: None,
            text_chunks: None,
        }
    }

    pub fn config(&self) -> &BridgeConfig {
        &self.cfg
    }

    pub fn unix_us(&self, now: Instant) -> u64 {
        now_unix_us_at(self.t0, self.unix0_us, now)
    }

    pub fn state(&self) -> &VehicleState {
        &self.state
    }

    /// True once after the state changed.
    pub fn take_state_dirty(&mut self) -> bool {
        std::mem::take(&mut self.state_dirty)
    }

    pub fn target(&self) -> Option<(u8, u8)> {
        self.target
    }

    pub fn stats(&self) -> BridgeStats {
        let mut link = self.extra;
        for d in self.decoders.values() {
            let s = d.stats;
            link.bytes_rx += s.bytes_rx;
            link.frames_rx += s.frames_rx;
            link.garbage_bytes += s.garbage_bytes;
            link.crc_errors += s.crc_errors;
            link.unknown_messages += s.unknown_messages;
            link.unsupported_flags += s.unsupported_flags;
            link.bad_payloads += s.bad_payloads;
            link.truncated += s.truncated;
            link.seq_gaps += s.seq_gaps;
            link.unsigned_rejected += s.unsigned_rejected;
            link.bad_signatures += s.bad_signatures;
            link.stale_signatures += s.stale_signatures;
        }
        link.frames_tx = self.encoder.frames_tx;
        link.bytes_tx = self.encoder.bytes_tx;
        link.unexpected_acks = self.commands.stats.unexpected_acks;
        link.unexpected_mission_messages = self.mission.stats.unexpected;
        BridgeStats {
            link,
            commands: self.commands.stats,
            mission: self.mission.stats,
        }
    }

    fn emit(&mut self, e: Event) {
        tracing::debug!(event = ?e, "bridge event");
        self.events.push_back(e);
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn send(&mut self, msg: &Msg, now: Instant) {
        let us = self.unix_us(now);
        let bytes = self.encoder.encode(msg, us);
        self.out.push_back(bytes);
    }

    fn flush(&mut self, now: Instant) {
        self.progress_job(now);
        while let Some(m) = self.commands.poll_transmit() {
            self.send(&m, now);
        }
        while let Some(m) = self.mission.poll_transmit() {
            self.send(&m, now);
        }
        while let Some(m) = self.params.poll_transmit() {
            self.send(&m, now);
        }
        while let Some(r) = self.params.poll_result() {
            self.param_results.push_back(r);
        }
        while let Some((id, r)) = self.commands.poll_result() {
            if id & INTERNAL != 0 {
                self.internal_result(r, now);
            } else {
                self.command_results.push_back((id, r));
            }
        }
        if let Some(d) = self.commands.take_rtt_sample() {
            self.mission.rtt_sample(d);
        }
        while let Some((command, progress)) = self.commands.poll_progress() {
            self.emit(Event::CommandProgress { command, progress });
        }
        // Internal results may have queued more to send.
        while let Some(m) = self.commands.poll_transmit() {
            self.send(&m, now);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    pub fn poll_command_result(&mut self) -> Option<(CommandId, Result<CommandOk, CommandError>)> {
        self.command_results.pop_front()
    }

    /// The result of the mission job started with
    /// [`start_mission_job`](Self::start_mission_job).
    pub fn poll_mission_result(&mut self) -> Option<MissionJobResult> {
        self.job_result.take()
    }

    /// Whether a mission job is running.
    pub fn mission_busy(&self) -> bool {
        self.job.is_some() || self.job_result.is_some()
    }

    fn progress_job(&mut self, now: Instant) {
        let Some(r) = self.mission.poll_result() else {
            return;
        };
        let Some(mut job) = self.job.take() else {
            return;
        };
        // DENIED on a read-back: ArduPilot still thinks an upload is in
        // progress (our last item was lost); uploading again fixes it.
        let reading_back = matches!(job.stage, Stage::ReadingBack { .. });
        let retryable = |e: &MissionError| {
            matches!(
                e,
                MissionError::Timeout { .. }
                    | MissionError::Cancelled { .. }
                    | MissionError::VerificationFailed { .. }
            ) || (reading_back
                && matches!(
                    e,
                    MissionError::Rejected {
                        result: crate::mission::MissionResult::Denied,
                        ..
                    }
                ))
        };
        let max = self.cfg.transfer_attempts.max(1);
        let next: Result<MissionOp, MissionJobResult> = match (
            std::mem::replace(&mut job.stage, Stage::Single),
            r,
        ) {
            (Stage::Single, r) => Err(MissionJobResult::Op(r)),
            (Stage::Uploading, Ok(MissionOutcome::Uploaded { acked, .. })) => {
                job.stage = Stage::ReadingBack { acked };
                Ok(MissionOp::Download { ty: job.ty })
            }
            (Stage::ReadingBack { acked }, Ok(MissionOutcome::Downloaded { items, .. })) => {
                let kind = self.state.autopilot;
                let cmp = if kind == AutopilotKind::ArduPilot
                    && job.ty == MissionType::Mission
                    && job.items.is_empty()
                    && items.len() == 1
                {
                    Ok(()) // only ArduPilot's home item remains
                } else {
                    verify(kind, job.ty, &job.items, &items)
                };
                match cmp {
                    Ok(()) => Err(MissionJobResult::Verified(Ok(UploadReport {
                        ty: job.ty,
                        items: job.items.len(),
                        attempts: job.attempt,
                        acked,
                        home_on_board: (kind == AutopilotKind::ArduPilot
                            && job.ty == MissionType::Mission)
                            .then(|| items.first().copied())
                            .flatten(),
                    }))),
                    Err(e) => {
                        tracing::warn!(attempt = job.attempt, error = %e, "read-back differs");
                        job.last_err = Some(e);
                        job.stage = Stage::Uploading;
                        job.attempt += 1;
                        Ok(MissionOp::Upload {
                            ty: job.ty,
                            items: job.items.clone(),
                        })
                    }
                }
            }
            (_, Ok(other)) => Err(MissionJobResult::Verified(Err(MissionError::Invalid(
                format!("unexpected transfer outcome {other:?}"),
            )))),
            (_, Err(e)) if retryable(&e) => {
                tracing::warn!(attempt = job.attempt, error = %e, "transfer failed; restarting the upload");
                job.last_err = Some(e);
                job.stage = Stage::Uploading;
                job.attempt += 1;
                Ok(MissionOp::Upload {
                    ty: job.ty,
                    items: job.items.clone(),
                })
            }
            (_, Err(e)) => Err(MissionJobResult::Verified(Err(e))),
        };
        match next {
            Err(done) => self.job_result = Some(done),
            Ok(op) => {
                if job.attempt > max {
                    let e = job
                        .last_err
                        .take()
                        .unwrap_or(MissionError::Invalid("transfer attempts exhausted".into()));
                    self.job_result = Some(MissionJobResult::Verified(Err(e)));
                } else if let Err(e) = self.mission.start(op, now) {
                    self.job_result = Some(MissionJobResult::Verified(Err(e)));
                } else {
                    self.job = Some(job);
                }
            }
        }
    }

    pub fn poll_signing_result(&mut self) -> Option<Result<(), SigningSetupError>> {
        self.signing_result.take()
    }

    /// Earliest time [`handle_timeout`](Self::handle_timeout) must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_heartbeat;
        if self.target.is_some() {
            t = t.min(self.next_timesync);
        }
        if let (true, Some(last)) = (self.state.link_up, self.last_rx) {
            t = t.min(last + self.cfg.link_timeout);
        }
        for x in [
            self.commands.poll_timeout(),
            self.mission.poll_timeout(),
            self.params.poll_timeout(),
            self.signing_setup.as_ref().map(|s| s.deadline),
        ]
        .into_iter()
        .flatten()
        {
            t = t.min(x);
        }
        Some(t)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.cfg.heartbeat_interval;
            let hb = Msg::HEARTBEAT(dialect::HEARTBEAT_DATA {
                custom_mode: 0,
                mavtype: dialect::MavType::MAV_TYPE_ONBOARD_CONTROLLER,
                autopilot: dialect::MavAutopilot::MAV_AUTOPILOT_INVALID,
                base_mode: dialect::MavModeFlag::empty(),
                system_status: dialect::MavState::MAV_STATE_ACTIVE,
                mavlink_version: 3,
            });
            self.send(&hb, now);
        }
        if let Some((sys, comp)) = self.target {
            if now >= self.next_timesync {
                // Faster until the clock fit has a few samples.
                let warm = self.poses.read().expect("pose lock").clock.samples() >= 8;
                self.next_timesync = now
                    + if warm {
                        self.cfg.timesync_interval
                    } else {
                        self.cfg.timesync_interval / 4
                    };
                let ns = self.unix_us(now) as i64 * 1000;
                self.send(
                    &Msg::TIMESYNC(dialect::TIMESYNC_DATA {
                        tc1: 0,
                        ts1: ns,
                        target_system: sys,
                        target_component: comp,
                    }),
                    now,
                );
            }
        }
        if let (true, Some(last)) = (self.state.link_up, self.last_rx) {
            if now >= last + self.cfg.link_timeout {
                self.state.link_up = false;
                self.state_dirty = true;
                tracing::warn!("link to the autopilot lost");
                self.emit(Event::LinkLost);
            }
        }
        if let Some(s) = self.signing_setup.as_mut() {
            if now >= s.deadline {
                if s.attempts >= 10 {
                    let n = s.attempts;
                    self.signing_setup = None;
                    self.signing_result = Some(Err(SigningSetupError::NoConfirmation(n)));
                } else {
                    s.attempts += 1;
                    s.deadline = now + Duration::from_millis(500);
                    let key = s.key.clone();
                    self.send_setup_signing(&key, now);
                }
            }
        }
        self.commands.handle_timeout(now);
        self.mission.handle_timeout(now);
        self.params.handle_timeout(now);
        self.flush(now);
    }

    /// Bytes from the transport.
    pub fn handle_packet(&mut self, peer: PeerId, packet: &Packet, now: Instant) {
        let us = self.unix_us(now);
        let verifier = self.verifier.clone();
        let dec = self
            .decoders
            .entry(peer)
            .or_insert_with(|| Decoder::new(verifier));
        let received = match packet {
            Packet::Datagram(d) => dec.push_datagram(d, us),
            Packet::Stream(d) => dec.push_stream(d, us),
        };
        for r in received {
            self.handle_received(r, now);
        }
        self.flush(now);
    }

    /// A decoded message (for tests that bypass framing).
    pub fn handle_received(&mut self, r: Received, now: Instant) {
        let Received {
            header,
            msg,
            signed,
        } = r;
        let sys = header.system_id as u8;
        let comp = header.component_id;
        if sys == self.cfg.system_id && comp == self.cfg.component_id {
            return; // our own echo
        }
        if self.target.is_none() {
            if let Msg::HEARTBEAT(hb) = &msg {
                let is_autopilot = hb.autopilot != dialect::MavAutopilot::MAV_AUTOPILOT_INVALID
                    && VehicleKind::is_vehicle_type(hb.mavtype);
                if is_autopilot && self.cfg.target_system.is_none_or(|t| t == sys) {
                    self.discover(header, hb, now);
                }
            }
            if self.target.is_none() {
                self.extra.foreign_frames += 1;
                return;
            }
        }
        let (tsys, tcomp) = self.target.expect("set above");
        if sys != tsys {
            self.extra.foreign_frames += 1;
            return;
        }
        if let Some(ts) = msg.target_system_id() {
            let tc = msg.target_component_id().unwrap_or(0);
            let for_us =
                ts == 0 || (ts == self.cfg.system_id && (tc == 0 || tc == self.cfg.component_id));
            if !for_us {
                self.extra.not_for_us += 1;
                return;
            }
        }
        // Liveness: any message from the autopilot system.
        self.last_rx = Some(now);
        if !self.state.link_up {
            self.state.link_up = true;
            self.state_dirty = true;
            if self.ever_up {
                tracing::info!("link to the autopilot regained");
                self.emit(Event::LinkRegained);
                // It may have rebooted while we could not hear it.
                self.request_streams(now);
            }
            self.ever_up = true;
        }
        if let Some(s) = &self.signing_setup {
            if signed {
                // The autopilot signs with the new key: provisioning worked.
                let require = s.require;
                let key = s.key.clone();
                let link_id = s.link_id;
                self.signing_setup = None;
                self.apply_signing(Some(SigningConfig {
                    key,
                    link_id,
                    require,
                }));
                self.signing_result = Some(Ok(()));
            }
        }
        self.handle_message(comp == tcomp, &msg, now);
    }

    fn discover(&mut self, header: MavHeader, hb: &dialect::HEARTBEAT_DATA, now: Instant) {
        let sys = header.system_id as u8;
        let comp = header.component_id;
        self.target = Some((sys, comp));
        self.commands.set_target(sys, comp);
        self.mission.set_target(sys, comp);
        let autopilot = AutopilotKind::from_mav(hb.autopilot);
        self.params.set_target(
            sys,
            comp,
            if autopilot == AutopilotKind::Px4 {
                ParamEncoding::Bytewise
            } else {
                ParamEncoding::Cast
            },
        );
        let vehicle = VehicleKind::from_mav(hb.mavtype);
        // ArduPilot answers every item request independently; PX4 wants
        // them in order.
        if autopilot == AutopilotKind::ArduPilot && self.cfg.mission.download_window <= 1 {
            self.mission.set_download_window(4);
        }
        self.state.system_id = Some(sys);
        self.state.component_id = Some(comp);
        self.state.autopilot = autopilot;
        self.state.vehicle = vehicle;
        self.state_dirty = true;
        tracing::info!(sys, comp, ?autopilot, ?vehicle, "autopilot found");
        self.emit(Event::AutopilotFound {
            system_id: sys,
            component_id: comp,
            autopilot,
            vehicle,
        });
        self.next_timesync = now;
        self.request_streams(now);
    }

    fn next_internal_id(&mut self) -> CommandId {
        self.next_internal += 1;
        self.next_internal
    }

    /// SET_MESSAGE_INTERVAL for every configured stream, and home.
    fn request_streams(&mut self, now: Instant) {
        self.stream_fallback_sent = false;
        let streams = self.cfg.streams.clone();
        for (id, hz) in streams {
            let interval_us = if hz > 0.0 { 1e6 / hz } else { -1.0 };
            let cid = self.next_internal_id();
            self.commands.submit(
                cid,
                Command::long(
                    dialect::MavCmd::MAV_CMD_SET_MESSAGE_INTERVAL,
                    [id as f32, interval_us, 0., 0., 0., 0., 0.],
                ),
                now,
            );
        }
        let cid = self.next_internal_id();
        self.commands.submit(
            cid,
            Command::long(
                dialect::MavCmd::MAV_CMD_REQUEST_MESSAGE,
                [
                    dialect::HOME_POSITION_DATA::ID as f32,
                    0.,
                    0.,
                    0.,
                    0.,
                    0.,
                    0.,
                ],
            ),
            now,
        );
    }

    fn internal_result(&mut self, r: Result<CommandOk, CommandError>, now: Instant) {
        let needs_fallback = matches!(
            r,
            Err(CommandError::Unsupported { command: 511 })
                | Err(CommandError::Denied { command: 511 })
                | Err(CommandError::Failed { command: 511 })
                | Err(CommandError::Timeout { command: 511, .. })
        );
        if needs_fallback
            && !self.stream_fallback_sent
            && self.state.autopilot == AutopilotKind::ArduPilot
        {
            self.stream_fallback_sent = true;
            tracing::info!("SET_MESSAGE_INTERVAL refused; falling back to REQUEST_DATA_STREAM");
            self.request_data_streams(now);
        }
    }

    /// ArduPilot's legacy stream groups at rates that cover our needs.
    fn request_data_streams(&mut self, now: Instant) {
        let Some((sys, comp)) = self.target else {
            return;
        };
        use dialect::MavDataStream::*;
        for (s, hz) in [
            (MAV_DATA_STREAM_EXTENDED_STATUS, 2u16),
            (MAV_DATA_STREAM_POSITION, 10),
            (MAV_DATA_STREAM_EXTRA1, 20),
            (MAV_DATA_STREAM_EXTRA2, 4),
            (MAV_DATA_STREAM_EXTRA3, 2),
        ] {
            let m = Msg::REQUEST_DATA_STREAM(dialect::REQUEST_DATA_STREAM_DATA {
                req_message_rate: hz,
                target_system: sys,
                target_component: comp,
                req_stream_id: s,
                start_stop: 1,
            });
            self.send(&m, now);
        }
    }

    fn note_boot_ms(&mut self, t: u32) {
        match self.max_boot_ms {
            Some(m) if t + REBOOT_BACKSTEP_MS < m => {
                tracing::warn!(was = m, now = t, "autopilot clock went back: reboot");
                self.max_boot_ms = Some(t);
                self.poses.write().expect("pose lock").reset();
                self.emit(Event::AutopilotRebooted);
            }
            Some(m) if t <= m => {}
            _ => self.max_boot_ms = Some(t),
        }
    }

    fn handle_message(&mut self, from_autopilot_component: bool, msg: &Msg, now: Instant) {
        match msg {
            Msg::HEARTBEAT(hb) if from_autopilot_component => {
                let armed = hb
                    .base_mode
                    .contains(dialect::MavModeFlag::MAV_MODE_FLAG_SAFETY_ARMED);
                let mode =
                    mode_from_custom(self.state.autopilot, self.state.vehicle, hb.custom_mode);
                if armed != self.state.armed {
                    self.state.armed = armed;
                    self.emit(Event::ArmedChanged { armed });
                }
                if hb.custom_mode != self.state.custom_mode || mode != self.state.mode {
                    let from = self.state.mode;
                    self.state.mode = mode;
                    self.state.custom_mode = hb.custom_mode;
                    self.emit(Event::ModeChanged {
                        from,
                        to: mode,
                        custom_mode: hb.custom_mode,
                    });
                }
                self.state.system_status = Some(hb.system_status as u8);
                self.state_dirty = true;
            }
            Msg::COMMAND_ACK(ack) => {
                self.commands.handle_ack(ack, now);
            }
            Msg::PARAM_VALUE(_) => {
                self.params.handle(msg, now);
            }
            Msg::MISSION_REQUEST(_)
            | Msg::MISSION_REQUEST_INT(_)
            | Msg::MISSION_ACK(_)
            | Msg::MISSION_COUNT(_)
            | Msg::MISSION_ITEM_INT(_)
            | Msg::MISSION_ITEM(_) => {
                self.mission.handle(msg, now);
            }
            Msg::MISSION_CURRENT(m) => {
                let total = (m.total != u16::MAX && m.total != 0).then_some(m.total);
                if self.state.mission.current_seq != Some(m.seq) {
                    self.emit(Event::MissionCurrentChanged { seq: m.seq, total });
                    self.state.mission.current_seq = Some(m.seq);
                    self.state_dirty = true;
                }
                if total != self.state.mission.total {
                    self.state.mission.total = total;
                    self.state_dirty = true;
                }
            }
            // PX4 repeats the last MISSION_ITEM_REACHED about once a
            // second: one event per item reached.
            Msg::MISSION_ITEM_REACHED(m) if self.state.mission.last_reached != Some(m.seq) => {
                self.state.mission.last_reached = Some(m.seq);
                self.state_dirty = true;
                self.emit(Event::MissionItemReached { seq: m.seq });
            }
            Msg::GLOBAL_POSITION_INT(p) => {
                self.note_boot_ms(p.time_boot_ms);
                let pos = Position {
                    lat_deg: p.lat as f64 * 1e-7,
                    lon_deg: p.lon as f64 * 1e-7,
                    alt_m: p.alt as f64 / 1000.0,
                    alt_rel_m: p.relative_alt as f64 / 1000.0,
                    heading_deg: (p.hdg != u16::MAX).then(|| p.hdg as f64 / 100.0),
                    time_boot_ms: p.time_boot_ms,
                };
                let v = [
                    p.vx as f64 / 100.0,
                    p.vy as f64 / 100.0,
                    p.vz as f64 / 100.0,
                ];
                self.state.position = Some(pos);
                self.state.velocity_ned_mps = Some(v);
                self.state_dirty = true;
                self.poses
                    .write()
                    .expect("pose lock")
                    .push_position(PositionSample {
                        boot_ms: p.time_boot_ms as f64,
                        lat_deg: pos.lat_deg,
                        lon_deg: pos.lon_deg,
                        alt_m: pos.alt_m,
                        velocity_ned_mps: v,
                    });
            }
            Msg::ATTITUDE(a) => {
                self.note_boot_ms(a.time_boot_ms);
                self.state.attitude = Some(Attitude {
                    roll_rad: a.roll as f64,
                    pitch_rad: a.pitch as f64,
                    yaw_rad: a.yaw as f64,
                    time_boot_ms: a.time_boot_ms,
                });
                self.state_dirty = true;
                self.poses
                    .write()
                    .expect("pose lock")
                    .push_attitude(AttitudeSample {
                        boot_ms: a.time_boot_ms as f64,
                        q: from_euler(a.roll as f64, a.pitch as f64, a.yaw as f64),
                    });
            }
            Msg::GIMBAL_DEVICE_ATTITUDE_STATUS(g) => {
                let q = nalgebra::UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(
                    g.q[0] as f64,
                    g.q[1] as f64,
                    g.q[2] as f64,
                    g.q[3] as f64,
                ));
                if !q.coords.iter().all(|c| c.is_finite()) {
                    return;
                }
                use dialect::GimbalDeviceFlags as F;
                let earth = g.flags.contains(F::GIMBAL_DEVICE_FLAGS_YAW_IN_EARTH_FRAME)
                    || (g.flags.contains(F::GIMBAL_DEVICE_FLAGS_YAW_LOCK)
                        && !g
                            .flags
                            .contains(F::GIMBAL_DEVICE_FLAGS_YAW_IN_VEHICLE_FRAME));
                let yaw_frame = if earth {
                    YawFrame::Earth
                } else {
                    YawFrame::Vehicle
                };
                let (r, p, y) = q.euler_angles();
                self.gimbal_device_seen = Some(now);
                self.state.gimbal = Some(GimbalState {
                    roll_deg: r.to_degrees(),
                    pitch_deg: p.to_degrees(),
                    yaw_deg: y.to_degrees(),
                    yaw_frame,
                    from_gimbal_device: true,
                });
                self.state_dirty = true;
                self.poses
                    .write()
                    .expect("pose lock")
                    .push_gimbal(GimbalSample {
                        boot_ms: g.time_boot_ms as f64,
                        q,
                        yaw_frame,
                    });
            }
            Msg::MOUNT_STATUS(m) => {
                let fresh_device = self
                    .gimbal_device_seen
                    .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(3));
                if fresh_device {
                    return;
                }
                let (p, r, y) = (
                    m.pointing_a as f64 / 100.0,
                    m.pointing_b as f64 / 100.0,
                    m.pointing_c as f64 / 100.0,
                );
                self.state.gimbal = Some(GimbalState {
                    roll_deg: r,
                    pitch_deg: p,
                    yaw_deg: y,
                    yaw_frame: YawFrame::Vehicle,
                    from_gimbal_device: false,
                });
                self.state_dirty = true;
                // No timestamp in MOUNT_STATUS: stamp with the arrival time
                // on the autopilot clock.
                let boot = {
                    let poses = self.poses.read().expect("pose lock");
                    poses
                        .clock
                        .map()
                        .map(|m| m.boot_ms(self.unix_us(now) as f64 / 1000.0))
                };
                if let Some(boot) = boot {
                    self.poses
                        .write()
                        .expect("pose lock")
                        .push_gimbal(GimbalSample {
                            boot_ms: boot,
                            q: from_euler(r.to_radians(), p.to_radians(), y.to_radians()),
                            yaw_frame: YawFrame::Vehicle,
                        });
                }
            }
            Msg::SYS_STATUS(s) => {
                let b = self.state.battery.get_or_insert(Battery {
                    voltage_v: None,
                    current_a: None,
                    remaining_pct: None,
                });
                b.voltage_v =
                    (s.voltage_battery != u16::MAX).then(|| s.voltage_battery as f64 / 1000.0);
                b.current_a = (s.current_battery >= 0).then(|| s.current_battery as f64 / 100.0);
                if s.battery_remaining >= 0 {
                    b.remaining_pct = Some(s.battery_remaining as f64);
                }
                use dialect::MavSysStatusSensor as S;
                let on = |bit| {
                    s.onboard_control_sensors_present.contains(bit)
                        && s.onboard_control_sensors_enabled.contains(bit)
                };
                // PX4 1.15 sets the pre-arm bit in `health` only (never in
                // present/enabled); ArduPilot in all three.
                if on(S::MAV_SYS_STATUS_PREARM_CHECK) || self.state.autopilot == AutopilotKind::Px4
                {
                    let ok = s
                        .onboard_control_sensors_health
                        .contains(S::MAV_SYS_STATUS_PREARM_CHECK);
                    self.state.readiness.prearm_ok = Some(ok);
                    if ok {
                        self.state.readiness.prearm_reason = None;
                    }
                }
                if s.onboard_control_sensors_present
                    .contains(S::MAV_SYS_STATUS_GEOFENCE)
                {
                    self.state.fence_enabled = Some(
                        s.onboard_control_sensors_enabled
                            .contains(S::MAV_SYS_STATUS_GEOFENCE),
                    );
                }
                self.state_dirty = true;
            }
            Msg::BATTERY_STATUS(s) if s.id == 0 => {
                let b = self.state.battery.get_or_insert(Battery {
                    voltage_v: None,
                    current_a: None,
                    remaining_pct: None,
                });
                if s.battery_remaining >= 0 {
                    b.remaining_pct = Some(s.battery_remaining as f64);
                }
                self.state_dirty = true;
            }
            Msg::GPS_RAW_INT(g) => {
                self.state.gps = Some(Gps {
                    fix: GpsFix::from_mav(g.fix_type),
                    satellites: (g.satellites_visible != u8::MAX).then_some(g.satellites_visible),
                    hdop: (g.eph != u16::MAX).then(|| g.eph as f64 / 100.0),
                });
                self.state_dirty = true;
            }
            Msg::EKF_STATUS_REPORT(e) => {
                use dialect::EkfStatusFlags as F;
                let need = F::EKF_ATTITUDE | F::EKF_VELOCITY_HORIZ | F::EKF_POS_HORIZ_ABS;
                let healthy = e.flags.contains(need)
                    && !e.flags.contains(F::EKF_GPS_GLITCHING)
                    && !e.flags.contains(F::EKF_UNINITIALIZED)
                    && !e.flags.contains(F::EKF_CONST_POS_MODE);
                self.state.ekf = Some(Ekf {
                    flags: e.flags.bits(),
                    healthy,
                });
                self.state_dirty = true;
            }
            Msg::EXTENDED_SYS_STATE(s) => {
                let l = LandedState::from_mav(s.landed_state);
                if l != self.state.landed {
                    self.state.landed = l;
                    self.state_dirty = true;
                    self.emit(Event::LandedStateChanged { state: l });
                }
            }
            Msg::HOME_POSITION(h) => {
                let home = LatLonAlt::new(
                    h.latitude as f64 * 1e-7,
                    h.longitude as f64 * 1e-7,
                    h.altitude as f64 / 1000.0,
                );
                if self.state.home != Some(home) {
                    self.state.home = Some(home);
                    self.state_dirty = true;
                }
            }
            Msg::SYSTEM_TIME(t) => {
                self.note_boot_ms(t.time_boot_ms);
                self.poses
                    .write()
                    .expect("pose lock")
                    .clock
                    .add_system_time(t.time_unix_usec as f64 / 1000.0, t.time_boot_ms as f64);
            }
            Msg::TIMESYNC(t) => {
                let now_ns = self.unix_us(now) as i64 * 1000;
                if t.tc1 == 0 {
                    // A request from the autopilot: answer with our clock.
                    let (sys, comp) = self.target.unwrap_or((0, 0));
                    self.send(
                        &Msg::TIMESYNC(dialect::TIMESYNC_DATA {
                            tc1: now_ns,
                            ts1: t.ts1,
                            target_system: sys,
                            target_component: comp,
                        }),
                        now,
                    );
                } else if t.ts1 > 0 && t.ts1 <= now_ns && now_ns - t.ts1 < 10_000_000_000 {
                    // An answer to one of ours (ts1 is our send time).
                    self.poses.write().expect("pose lock").clock.add_timesync(
                        t.ts1 as f64 / 1e6,
                        now_ns as f64 / 1e6,
                        t.tc1 as f64 / 1e6,
                    );
                }
            }
            Msg::STATUSTEXT(s) => {
                let end = s.text.iter().position(|&b| b == 0).unwrap_or(s.text.len());
                let part = String::from_utf8_lossy(&s.text[..end]).into_owned();
                // MAVLink 2 splits texts longer than 50 bytes into chunks
                // with one `id` (PX4 does): join them; the last chunk is
                // the one shorter than 50 bytes.
                let whole = if s.id == 0 {
                    Some(part)
                } else {
                    let buf = match self.text_chunks.take() {
                        Some((id, mut t)) if id == s.id => {
                            t.push_str(&part);
                            t
                        }
                        _ => part,
                    };
                    if end < s.text.len() {
                        Some(buf)
                    } else {
                        self.text_chunks = Some((s.id, buf));
                        None
                    }
                };
                let Some(whole) = whole else {
                    return;
                };
                // PX4 ends its texts with a TAB.
                let text = whole.trim_end().to_string();
                tracing::info!(severity = s.severity as u8, %text, "autopilot says");
                if let Some(reason) = prearm_failure(&text) {
                    self.state.readiness.prearm_reason = Some(reason.to_string());
                    self.state_dirty = true;
                }
                self.emit(Event::StatusText {
                    severity: s.severity as u8,
                    text,
                });
            }
            _ => {}
        }
    }

    /// Read (`value: None`) or set a parameter (result via
    /// [`poll_param_result`](Self::poll_param_result)).
    pub fn submit_param(&mut self, id: ParamOpId, name: &str, value: Option<f64>, now: Instant) {
        match value {
            None => self.params.read(id, name, now),
            Some(v) => self.params.set(id, name, v, now),
        }
        self.flush(now);
    }

    pub fn poll_param_result(&mut self) -> Option<(ParamOpId, Result<ParamValue, ParamError>)> {
        self.param_results.pop_front()
    }

    /// Submit a command (result via [`poll_command_result`](Self::poll_command_result)).
    pub fn submit_command(&mut self, id: CommandId, cmd: Command, now: Instant) {
        if self.target.is_none() {
            self.command_results
                .push_back((id, Err(CommandError::NoAutopilot)));
            return;
        }
        self.commands.submit(id, cmd, now);
        self.flush(now);
    }

    /// Send a message to the autopilot as is (no retries).
    pub fn send_message(&mut self, msg: &Msg, now: Instant) {
        self.send(msg, now);
    }

    /// Start a mission job (result via
    /// [`poll_mission_result`](Self::poll_mission_result)).
    pub fn start_mission_job(&mut self, job: MissionJob, now: Instant) -> Result<(), MissionError> {
        if self.target.is_none() {
            return Err(MissionError::NoAutopilot);
        }
        if self.mission_busy() {
            return Err(MissionError::Busy);
        }
        let j = match job {
            MissionJob::Op(op) => {
                let ty = match &op {
                    MissionOp::Upload { ty, .. }
                    | MissionOp::Download { ty }
                    | MissionOp::Clear { ty } => *ty,
                };
                self.mission.start(op, now)?;
                Job {
                    ty,
                    items: vec![],
                    attempt: 1,
                    stage: Stage::Single,
                    last_err: None,
                }
            }
            MissionJob::VerifiedUpload { ty, items } => {
                if ty == MissionType::Mission && self.state.autopilot == AutopilotKind::ArduPilot {
                    if let Some(first) = items.first() {
                        if first.command != cmd::NAV_WAYPOINT {
                            return Err(MissionError::MissingHomeItem {
                                command: first.command,
                            });
                        }
                    }
                }
                self.mission.start(
                    MissionOp::Upload {
                        ty,
                        items: items.clone(),
                    },
                    now,
                )?;
                Job {
                    ty,
                    items,
                    attempt: 1,
                    stage: Stage::Uploading,
                    last_err: None,
                }
            }
        };
        self.job = Some(j);
        self.flush(now);
        Ok(())
    }

    /// Switch signing on this side (no provisioning).
    pub fn apply_signing(&mut self, s: Option<SigningConfig>) {
        let (signer, verifier) = match &s {
            Some(s) => (
                Some(Signer::new(s.key.clone(), s.link_id)),
                Some(Verifier::new(s.key.clone(), s.require)),
            ),
            None => (None, None),
        };
        self.encoder.set_signer(signer);
        for d in self.decoders.values_mut() {
            d.set_verifier(verifier.clone());
        }
        self.verifier = verifier;
        self.state.signing = s.is_some();
        self.state_dirty = true;
        self.cfg.signing = s;
    }

    fn send_setup_signing(&mut self, key: &SigningKey, now: Instant) {
        let Some((sys, comp)) = self.target else {
            return;
        };
        let m = setup_signing_message(key, sys, comp, self.unix_us(now));
        self.send(&m, now);
    }

    /// Provision `key` to the autopilot with SETUP_SIGNING (over a trusted
    /// link!), then sign with it. Confirmed when the autopilot's frames
    /// arrive signed with the new key; resent until then.
    pub fn start_signing_setup(&mut self, key: SigningKey, require: bool, now: Instant) {
        if self.target.is_none() {
            self.signing_result = Some(Err(SigningSetupError::NoAutopilot));
            return;
        }
        self.send_setup_signing(&key, now);
        // Accept unsigned frames until the autopilot signs, but only verify
        // signed ones against the new key from now on.
        let link_id = self.cfg.signing.as_ref().map_or(0, |s| s.link_id);
        self.apply_signing(Some(SigningConfig {
            key: key.clone(),
            link_id,
            require: false,
        }));
        self.signing_setup = Some(SigningSetup {
            key,
            require,
            link_id,
            attempts: 1,
            deadline: now + Duration::from_millis(500),
        });
    }
}
