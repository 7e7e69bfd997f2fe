//! The mission microservice, ground side, sans-IO: upload, download and
//! clear the MISSION, FENCE and RALLY lists (<https://mavlink.io/en/services/mission.html>).
//!
//! [`MissionClient`] is a state machine fed with received messages and the
//! time ([`handle`](MissionClient::handle),
//! [`handle_timeout`](MissionClient::handle_timeout)); it says what to send
//! ([`poll_transmit`](MissionClient::poll_transmit)) and when to wake it
//! ([`poll_timeout`](MissionClient::poll_timeout)). One transfer at a time.
//!
//! What it does beyond the letter of the protocol, because radios lose
//! packets:
//! - answers `MISSION_REQUEST` (ArduPilot) as well as `MISSION_REQUEST_INT`,
//!   always with `MISSION_ITEM_INT`;
//! - retransmission timeouts adapt to the measured round trip (Jacobson/
//!   Karels, Karn's rule), clamped to `[min_timeout, max_timeout]`;
//! - it gives up only after `max_stalled_retries` consecutive timeouts
//!   *without progress*, not after N retries of one item: the spec's 5
//!   retries per item lose a 700-item mission at 20 % loss most of the time;
//! - ArduPilot answers an out-of-sequence item with `MISSION_ACK
//!   INVALID_SEQUENCE` and carries on: that is not treated as fatal. If the
//!   final `MISSION_ACK` is lost, resending the last item provokes exactly
//!   that answer, which is taken as "complete but unacknowledged"
//!   ([`MissionOutcome::Uploaded`] with `acked: false`); the read-back
//!   ([`verify`]) then decides;
//! - downloads may keep several requests in flight (`download_window`);
//!   ArduPilot answers each request independently, PX4 wants them in order
//!   (window 1).
//!
//! [`verify`] compares what was sent with what was read back, knowing what
//! each autopilot rewrites ([`ReadbackRule`]): ArduPilot keeps its home in
//! mission item 0, drops the frame of commands without a position and
//! `autocontinue` on fence and rally items; PX4 drops it on fence items.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use num_traits::FromPrimitive;
use serde::Serialize;
use tiancha_protocol::mission::{command_has_position, frame, MissionItem, MissionType};

use crate::codec::{dialect, Msg};
use crate::state::AutopilotKind;

/// How long a vehicle must stay silent after the final item before an
/// upload counts as complete without its MISSION_ACK (three ArduPilot
/// re-request periods).
const FINAL_QUIET: Duration = Duration::from_millis(3000);

/// Timeouts and retry policy of the mission microservice.
#[derive(Debug, Clone, Serialize)]
pub struct MissionConfig {
    /// Retransmission timeout before any round trip was measured.
    pub initial_timeout: Duration,
    /// Lower bound of the adaptive timeout.
    pub min_timeout: Duration,
    /// Upper bound of the adaptive timeout.
    pub max_timeout: Duration,
    /// Consecutive timeouts without progress before a transfer fails.
    pub max_stalled_retries: u32,
    /// Item requests kept in flight during a download (1 = strictly in
    /// order, as PX4 requires).
    pub download_window: u16,
}

impl Default for MissionConfig {
    fn default() -> Self {
        Self {
            initial_timeout: Duration::from_millis(1500),
            min_timeout: Duration::from_millis(250),
            max_timeout: Duration::from_millis(3000),
            max_stalled_retries: 30,
            download_window: 1,
        }
    }
}

/// `MAV_MISSION_RESULT` error codes as a Rust enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MissionResult {
    Error,
    UnsupportedFrame,
    Unsupported,
    NoSpace,
    Invalid,
    InvalidParam1,
    InvalidParam2,
    InvalidParam3,
    InvalidParam4,
    InvalidParam5X,
    InvalidParam6Y,
    InvalidParam7,
    InvalidSequence,
    Denied,
    OperationCancelled,
}

impl MissionResult {
    /// `None` for `MAV_MISSION_ACCEPTED`.
    pub fn from_mav(r: dialect::MavMissionResult) -> Option<Self> {
        use dialect::MavMissionResult::*;
        Some(match r {
            MAV_MISSION_ACCEPTED => return None,
            MAV_MISSION_ERROR => Self::Error,
            MAV_MISSION_UNSUPPORTED_FRAME => Self::UnsupportedFrame,
            MAV_MISSION_UNSUPPORTED => Self::Unsupported,
            MAV_MISSION_NO_SPACE => Self::NoSpace,
            MAV_MISSION_INVALID => Self::Invalid,
            MAV_MISSION_INVALID_PARAM1 => Self::InvalidParam1,
            MAV_MISSION_INVALID_PARAM2 => Self::InvalidParam2,
            MAV_MISSION_INVALID_PARAM3 => Self::InvalidParam3,
            MAV_MISSION_INVALID_PARAM4 => Self::InvalidParam4,
            MAV_MISSION_INVALID_PARAM5_X => Self::InvalidParam5X,
            MAV_MISSION_INVALID_PARAM6_Y => Self::InvalidParam6Y,
            MAV_MISSION_INVALID_PARAM7 => Self::InvalidParam7,
            MAV_MISSION_INVALID_SEQUENCE => Self::InvalidSequence,
            MAV_MISSION_DENIED => Self::Denied,
            MAV_MISSION_OPERATION_CANCELLED => Self::OperationCancelled,
        })
    }
}

/// One difference between what was sent and what is on board.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemDiff {
    pub seq: usize,
    pub field: &'static str,
    pub sent: String,
    pub on_board: String,
}

/// Why a mission operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MissionError {
    #[error("another mission transfer is in progress")]
    Busy,
    #[error("no autopilot found yet (no heartbeat)")]
    NoAutopilot,
    #[error("{op} {ty:?}: the autopilot refused with {result:?}")]
    Rejected {
        op: &'static str,
        ty: MissionType,
        result: MissionResult,
    },
    #[error("{op} {ty:?}: the autopilot cancelled the transfer")]
    Cancelled { op: &'static str, ty: MissionType },
    #[error("{op} {ty:?}: no progress after {retries} retries ({stage}; {done}/{total} items)")]
    Timeout {
        op: &'static str,
        ty: MissionType,
        stage: &'static str,
        retries: u32,
        done: usize,
        total: usize,
    },
    #[error("item {seq}: MAV_CMD {command} is not in the MAVLink dialect")]
    UnsupportedCommand { seq: usize, command: u16 },
    #[error("item {seq}: MAV_FRAME {frame} is not in the MAVLink dialect")]
    UnsupportedFrame { seq: usize, frame: u8 },
    #[error("{ty:?}: {count} items is more than MAVLink can carry (65535)")]
    TooManyItems { ty: MissionType, count: usize },
    #[error("invalid mission: {0}")]
    Invalid(String),
    #[error("mission for ArduPilot must start with the home item (seq 0, NAV_WAYPOINT); got MAV_CMD {command} — it would be overwritten by home")]
    MissingHomeItem { command: u16 },
    #[error("{ty:?}: what is on board differs from what was sent ({sent} sent, {on_board} on board): {}", summarize(diffs))]
    VerificationFailed {
        ty: MissionType,
        sent: usize,
        on_board: usize,
        diffs: Vec<ItemDiff>,
    },
    #[error("the transfer was cancelled locally")]
    CancelledLocally,
    #[error("the bridge has stopped")]
    BridgeStopped,
}

fn summarize(d: &[ItemDiff]) -> String {
    let mut s: Vec<String> = d
        .iter()
        .take(5)
        .map(|d| {
            format!(
                "item {} {}: sent {} on board {}",
                d.seq, d.field, d.sent, d.on_board
            )
        })
        .collect();
    if d.len() > 5 {
        s.push(format!("… {} more", d.len() - 5));
    }
    s.join("; ")
}

/// What a finished operation produced.
#[derive(Debug, Clone, PartialEq)]
pub enum MissionOutcome {
    /// `acked: false` when every item was delivered but the final
    /// `MISSION_ACK` never arrived (the read-back must confirm).
    Uploaded {
        acked: bool,
        opaque_id: u32,
    },
    /// `legacy: true` if the autopilot answered with float `MISSION_ITEM`s
    /// (positions then carry float precision only).
    Downloaded {
        items: Vec<MissionItem>,
        opaque_id: u32,
        legacy: bool,
    },
    Cleared,
}

/// A transfer to start.
#[derive(Debug, Clone, PartialEq)]
pub enum MissionOp {
    Upload {
        ty: MissionType,
        items: Vec<MissionItem>,
    },
    Download {
        ty: MissionType,
    },
    Clear {
        ty: MissionType,
    },
}

/// Counters for the link report and the benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MissionStats {
    pub transfers: u64,
    pub retransmissions: u64,
    pub timeouts: u64,
    pub unexpected: u64,
    pub duplicates: u64,
}

pub fn to_mav_type(t: MissionType) -> dialect::MavMissionType {
    match t {
        MissionType::Mission => dialect::MavMissionType::MAV_MISSION_TYPE_MISSION,
        MissionType::Fence => dialect::MavMissionType::MAV_MISSION_TYPE_FENCE,
        MissionType::Rally => dialect::MavMissionType::MAV_MISSION_TYPE_RALLY,
    }
}

pub fn from_mav_type(t: dialect::MavMissionType) -> Option<MissionType> {
    match t {
        dialect::MavMissionType::MAV_MISSION_TYPE_MISSION => Some(MissionType::Mission),
        dialect::MavMissionType::MAV_MISSION_TYPE_FENCE => Some(MissionType::Fence),
        dialect::MavMissionType::MAV_MISSION_TYPE_RALLY => Some(MissionType::Rally),
        _ => None,
    }
}

/// A mission item as `MISSION_ITEM_INT` (target ids filled in later).
pub fn item_to_mav(
    item: &MissionItem,
    seq: u16,
    ty: MissionType,
) -> Result<dialect::MISSION_ITEM_INT_DATA, MissionError> {
    let command =
        dialect::MavCmd::from_u16(item.command).ok_or(MissionError::UnsupportedCommand {
            seq: seq as usize,
            command: item.command,
        })?;
    let frame = dialect::MavFrame::from_u8(item.frame).ok_or(MissionError::UnsupportedFrame {
        seq: seq as usize,
        frame: item.frame,
    })?;
    Ok(dialect::MISSION_ITEM_INT_DATA {
        param1: item.param1,
        param2: item.param2,
        param3: item.param3,
        param4: item.param4,
        x: item.x,
        y: item.y,
        z: item.z,
        seq,
        command,
        target_system: 0,
        target_component: 0,
        frame,
        current: 0,
        autocontinue: item.autocontinue as u8,
        mission_type: to_mav_type(ty),
    })
}

pub fn item_from_mav(m: &dialect::MISSION_ITEM_INT_DATA) -> MissionItem {
    MissionItem {
        frame: m.frame as u8,
        command: m.command as u16,
        autocontinue: m.autocontinue != 0,
        param1: m.param1,
        param2: m.param2,
        param3: m.param3,
        param4: m.param4,
        x: m.x,
        y: m.y,
        z: m.z,
    }
}

/// Legacy float `MISSION_ITEM`: positions are degrees in `f32` for global
/// frames (about 0.2 m resolution at 28° N).
pub fn item_from_legacy(m: &dialect::MISSION_ITEM_DATA) -> MissionItem {
    let global = is_global_frame(m.frame as u8);
    let conv = |v: f32| {
        if global {
            (v as f64 * 1e7).round() as i32
        } else {
            v.round() as i32
        }
    };
    MissionItem {
        frame: m.frame as u8,
        command: m.command as u16,
        autocontinue: m.autocontinue != 0,
        param1: m.param1,
        param2: m.param2,
        param3: m.param3,
        param4: m.param4,
        x: conv(m.x),
        y: conv(m.y),
        z: m.z,
    }
}

fn is_global_frame(f: u8) -> bool {
    matches!(f, 0 | 3 | 5 | 6 | 10 | 11)
}

/// The `_INT` and float variants of a global frame are the same frame (ArduPilot
/// answers `GLOBAL_RELATIVE_ALT` for an item uploaded as `GLOBAL_RELATIVE_ALT_INT`).
pub fn normalize_frame(f: u8) -> u8 {
    match f {
        frame::GLOBAL_INT => frame::GLOBAL,
        frame::GLOBAL_RELATIVE_ALT_INT => frame::GLOBAL_RELATIVE_ALT,
        11 => 10, // GLOBAL_TERRAIN_ALT_INT → GLOBAL_TERRAIN_ALT
        f => f,
    }
}

fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// One thing an autopilot is documented to rewrite when a list is read
/// back. [`verify`] compares modulo exactly the rules of the autopilot and
/// list at hand ([`readback_rules`]); everything else must come back as
/// sent. Each rule was seen on the real firmware, and the replies are
/// replayed in `firmware-bridge/tests/firmware_readback.rs`
/// (`tests/data/firmware-replies/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ReadbackRule {
    /// ArduPilot, mission list: item 0 is the vehicle's home. ArduPilot
    /// replaces whatever was uploaded there with its current home (frame
    /// `GLOBAL`, altitude AMSL), so item 0 must only exist and be a
    /// `NAV_WAYPOINT`; its content is reported as the home, not compared.
    HomeIsItemZero,
    /// ArduPilot stores commands without a position (`DO_CHANGE_SPEED`,
    /// `DO_MOUNT_CONTROL`, `NAV_RETURN_TO_LAUNCH` …) without a frame and
    /// returns frame 0 (`GLOBAL`) for them, whatever frame was sent.
    NonPositionalFrameNotKept,
    /// Items come back with `autocontinue` 0: ArduPilot's fence and rally
    /// items, PX4's fence items (PX4 keeps it on rally points).
    AutocontinueNotKept,
}

/// The read-back rules of `kind` for list `ty`. An autopilot tiancha
/// does not know gets none: everything must come back as sent.
pub fn readback_rules(kind: AutopilotKind, ty: MissionType) -> &'static [ReadbackRule] {
    use ReadbackRule::*;
    match (kind, ty) {
        (AutopilotKind::ArduPilot, MissionType::Mission) => {
            &[HomeIsItemZero, NonPositionalFrameNotKept]
        }
        (AutopilotKind::ArduPilot, _) => &[NonPositionalFrameNotKept, AutocontinueNotKept],
        (AutopilotKind::Px4, MissionType::Fence) => &[AutocontinueNotKept],
        (AutopilotKind::Px4, _) => &[],
        _ => &[],
    }
}

/// Compare what was sent with what was read back.
///
/// - Lengths must match.
/// - What the autopilot is documented to rewrite ([`readback_rules`]) is
///   not compared.
/// - Frames compare modulo the `_INT` suffix ([`normalize_frame`]).
/// - Everything else compares exactly: x/y integers, `f32` bit patterns
///   (NaN equals NaN), command, autocontinue.
pub fn verify(
    kind: AutopilotKind,
    ty: MissionType,
    sent: &[MissionItem],
    on_board: &[MissionItem],
) -> Result<(), MissionError> {
    let rules = readback_rules(kind, ty);
    let mut diffs = Vec::new();
    if sent.len() != on_board.len() {
        diffs.push(ItemDiff {
            seq: sent.len().min(on_board.len()),
            field: "count",
            sent: sent.len().to_string(),
            on_board: on_board.len().to_string(),
        });
    }
    let skip_home = rules.contains(&ReadbackRule::HomeIsItemZero);
    for (seq, (a, b)) in sent.iter().zip(on_board).enumerate() {
        if seq == 0 && skip_home {
            if b.command != tiancha_protocol::mission::cmd::NAV_WAYPOINT {
                diffs.push(ItemDiff {
                    seq,
                    field: "home.command",
                    sent: "16 (NAV_WAYPOINT, home)".into(),
                    on_board: b.command.to_string(),
                });
            }
            continue;
        }
        let mut d = |field: &'static str, x: String, y: String| {
            diffs.push(ItemDiff {
                seq,
                field,
                sent: x,
                on_board: y,
            })
        };
        if a.command != b.command {
            d("command", a.command.to_string(), b.command.to_string());
        }
        let frame_kept = command_has_position(a.command)
            || !rules.contains(&ReadbackRule::NonPositionalFrameNotKept);
        if frame_kept && normalize_frame(a.frame) != normalize_frame(b.frame) {
            d("frame", a.frame.to_string(), b.frame.to_string());
        }
        if a.autocontinue != b.autocontinue && !rules.contains(&ReadbackRule::AutocontinueNotKept) {
            d(
                "autocontinue",
                a.autocontinue.to_string(),
                b.autocontinue.to_string(),
            );
        }
        for (name, x, y) in [
            ("param1", a.param1, b.param1),
            ("param2", a.param2, b.param2),
            ("param3", a.param3, b.param3),
            ("param4", a.param4, b.param4),
            ("z", a.z, b.z),
        ] {
            if !same_f32(x, y) {
                d(name, x.to_string(), y.to_string());
            }
        }
        if a.x != b.x {
            d("x", a.x.to_string(), b.x.to_string());
        }
        if a.y != b.y {
            d("y", a.y.to_string(), b.y.to_string());
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(MissionError::VerificationFailed {
            ty,
            sent: sent.len(),
            on_board: on_board.len(),
            diffs,
        })
    }
}

/// Round-trip time estimator (RFC 6298).
#[derive(Debug, Clone)]
struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl Rtt {
    fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((s * 7 + r) / 8);
            }
        }
    }

    fn rto(&self, cfg: &MissionConfig) -> Duration {
        match self.srtt {
            None => cfg.initial_timeout,
            Some(s) => (s + self.rttvar * 4).clamp(cfg.min_timeout, cfg.max_timeout),
        }
    }
}

#[derive(Debug)]
struct Upload {
    ty: MissionType,
    items: Vec<dialect::MISSION_ITEM_INT_DATA>,
    /// Highest sequence number requested so far.
    max_requested: Option<u16>,
    /// The item most recently requested (the one to resend).
    last_requested: Option<u16>,
    /// Whether the item last sent was a resend.
    resent: bool,
    deadline: Instant,
    stalled: u32,
    /// The final item was resent at least once.
    final_resent: bool,
    /// INVALID_SEQUENCE answers after a resend of the final item.
    complete_hints: u32,
    /// When the last item request arrived.
    last_request_at: Instant,
}

#[derive(Debug)]
struct Download {
    ty: MissionType,
    count: Option<u16>,
    opaque_id: u32,
    items: Vec<Option<MissionItem>>,
    received: usize,
    next_to_request: u16,
    /// seq → (sent at, retransmitted)
    in_flight: BTreeMap<u16, (Instant, bool)>,
    list_sent_at: Instant,
    list_resent: bool,
    deadline: Instant,
    stalled: u32,
    legacy: bool,
}

#[derive(Debug)]
struct Clear {
    ty: MissionType,
    deadline: Instant,
    stalled: u32,
}

#[derive(Debug)]
enum Active {
    Upload(Upload),
    Download(Download),
    Clear(Clear),
}

/// The ground side of the mission protocol. See the module docs.
#[derive(Debug)]
pub struct MissionClient {
    cfg: MissionConfig,
    target_system: u8,
    target_component: u8,
    active: Option<Active>,
    out: VecDeque<Msg>,
    result: Option<Result<MissionOutcome, MissionError>>,
    rtt: Rtt,
    pub stats: MissionStats,
}

impl MissionClient {
    pub fn new(cfg: MissionConfig) -> Self {
        Self {
            cfg,
            target_system: 1,
            target_component: 1,
            active: None,
            out: VecDeque::new(),
            result: None,
            rtt: Rtt {
                srtt: None,
                rttvar: Duration::ZERO,
            },
            stats: MissionStats::default(),
        }
    }

    pub fn config(&self) -> &MissionConfig {
        &self.cfg
    }

    pub fn set_download_window(&mut self, w: u16) {
        self.cfg.download_window = w.max(1);
    }

    pub fn set_target(&mut self, system: u8, component: u8) {
        self.target_system = system;
        self.target_component = component;
    }

    pub fn is_busy(&self) -> bool {
        self.active.is_some() || self.result.is_some()
    }

    /// A round-trip measurement from elsewhere on the link (command acks),
    /// so the first upload does not start with the blind initial timeout.
    pub fn rtt_sample(&mut self, d: Duration) {
        self.rtt.sample(d);
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rtt.rto(&self.cfg)
    }

    /// Start a transfer. Items are converted up front, so an item the
    /// dialect cannot carry fails here, before anything is sent.
    pub fn start(&mut self, op: MissionOp, now: Instant) -> Result<(), MissionError> {
        if self.is_busy() {
            return Err(MissionError::Busy);
        }
        self.stats.transfers += 1;
        let deadline = now + self.rto();
        match op {
            MissionOp::Upload { ty, items } => {
                if items.len() > u16::MAX as usize {
                    return Err(MissionError::TooManyItems {
                        ty,
                        count: items.len(),
                    });
                }
                let items = items
                    .iter()
                    .enumerate()
                    .map(|(i, it)| item_to_mav(it, i as u16, ty))
                    .collect::<Result<Vec<_>, _>>()?;
                self.send_count(ty, items.len() as u16);
                self.active = Some(Active::Upload(Upload {
                    ty,
                    items,
                    max_requested: None,
                    last_requested: None,
                    resent: false,
                    deadline,
                    stalled: 0,
                    final_resent: false,
                    complete_hints: 0,
                    last_request_at: now,
                }));
            }
            MissionOp::Download { ty } => {
                self.send_request_list(ty);
                self.active = Some(Active::Download(Download {
                    ty,
                    count: None,
                    opaque_id: 0,
                    items: Vec::new(),
                    received: 0,
                    next_to_request: 0,
                    in_flight: BTreeMap::new(),
                    list_sent_at: now,
                    list_resent: false,
                    deadline,
                    stalled: 0,
                    legacy: false,
                }));
            }
            MissionOp::Clear { ty } => {
                self.send_clear(ty);
                self.active = Some(Active::Clear(Clear {
                    ty,
                    deadline,
                    stalled: 0,
                }));
            }
        }
        Ok(())
    }

    /// Abandon the transfer in progress, telling the autopilot.
    pub fn cancel(&mut self) {
        if let Some(a) = self.active.take() {
            let ty = match &a {
                Active::Upload(u) => u.ty,
                Active::Download(d) => d.ty,
                Active::Clear(c) => c.ty,
            };
            self.send_ack(
                ty,
                dialect::MavMissionResult::MAV_MISSION_OPERATION_CANCELLED,
            );
            self.result = Some(Err(MissionError::CancelledLocally));
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Msg> {
        self.out.pop_front()
    }

    pub fn poll_result(&mut self) -> Option<Result<MissionOutcome, MissionError>> {
        self.result.take()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.active.as_ref()? {
            Active::Upload(u) => Some(u.deadline),
            Active::Download(d) => Some(d.deadline),
            Active::Clear(c) => Some(c.deadline),
        }
    }

    fn finish(&mut self, r: Result<MissionOutcome, MissionError>) {
        self.active = None;
        self.result = Some(r);
    }

    fn send_count(&mut self, ty: MissionType, count: u16) {
        self.out
            .push_back(Msg::MISSION_COUNT(dialect::MISSION_COUNT_DATA {
                count,
                target_system: self.target_system,
                target_component: self.target_component,
                mission_type: to_mav_type(ty),
                opaque_id: 0,
            }));
    }

    fn send_request_list(&mut self, ty: MissionType) {
        self.out.push_back(Msg::MISSION_REQUEST_LIST(
            dialect::MISSION_REQUEST_LIST_DATA {
                target_system: self.target_system,
                target_component: self.target_component,
                mission_type: to_mav_type(ty),
            },
        ));
    }

    fn send_clear(&mut self, ty: MissionType) {
        self.out
            .push_back(Msg::MISSION_CLEAR_ALL(dialect::MISSION_CLEAR_ALL_DATA {
                target_system: self.target_system,
                target_component: self.target_component,
                mission_type: to_mav_type(ty),
            }));
    }

    fn send_ack(&mut self, ty: MissionType, r: dialect::MavMissionResult) {
        self.out
            .push_back(Msg::MISSION_ACK(dialect::MISSION_ACK_DATA {
                target_system: self.target_system,
                target_component: self.target_component,
                mavtype: r,
                mission_type: to_mav_type(ty),
                opaque_id: 0,
            }));
    }

    fn send_item_request(&mut self, ty: MissionType, seq: u16) {
        self.out.push_back(Msg::MISSION_REQUEST_INT(
            dialect::MISSION_REQUEST_INT_DATA {
                seq,
                target_system: self.target_system,
                target_component: self.target_component,
                mission_type: to_mav_type(ty),
            },
        ));
    }

    /// Feed a received message from the autopilot. Returns whether it was a
    /// mission message this client consumed.
    pub fn handle(&mut self, msg: &Msg, now: Instant) -> bool {
        let (ty, kind) = match msg {
            Msg::MISSION_REQUEST(m) => (m.mission_type, Incoming::Request(m.seq)),
            Msg::MISSION_REQUEST_INT(m) => (m.mission_type, Incoming::Request(m.seq)),
            Msg::MISSION_ACK(m) => (m.mission_type, Incoming::Ack(m.mavtype, m.opaque_id)),
            Msg::MISSION_COUNT(m) => (m.mission_type, Incoming::Count(m.count, m.opaque_id)),
            Msg::MISSION_ITEM_INT(m) => (
                m.mission_type,
                Incoming::Item(item_from_mav(m), m.seq, false),
            ),
            Msg::MISSION_ITEM(m) => (
                m.mission_type,
                Incoming::Item(item_from_legacy(m), m.seq, true),
            ),
            _ => return false,
        };
        // (The driver has already dropped messages addressed to others.)
        let Some(ty) = from_mav_type(ty) else {
            self.stats.unexpected += 1;
            return true;
        };
        match self.active.take() {
            Some(Active::Upload(u)) if u.ty == ty => self.upload_handle(u, kind, now),
            Some(Active::Download(d)) if d.ty == ty => self.download_handle(d, kind, now),
            Some(Active::Clear(c)) if c.ty == ty => self.clear_handle(c, kind),
            other => {
                self.active = other;
                self.stats.unexpected += 1;
            }
        }
        true
    }

    fn upload_handle(&mut self, mut u: Upload, m: Incoming, now: Instant) {
        let count = u.items.len() as u16;
        match m {
            Incoming::Request(seq) => {
                if seq >= count {
                    self.stats.unexpected += 1;
                    self.active = Some(Active::Upload(u));
                    return;
                }
                // No round-trip samples here: the vehicle drives uploads and
                // may answer late with its own re-request (ArduPilot: 1 s),
                // which would inflate the estimate. Downloads measure it.
                tracing::trace!(seq, "upload: item requested");
                u.last_request_at = now;
                let progress = u.max_requested.is_none_or(|m| seq > m);
                if progress {
                    u.stalled = 0;
                    u.max_requested = Some(seq);
                } else {
                    self.stats.duplicates += 1;
                }
                let mut it = u.items[seq as usize].clone();
                it.target_system = self.target_system;
                it.target_component = self.target_component;
                self.out.push_back(Msg::MISSION_ITEM_INT(it));
                u.resent = u.last_requested == Some(seq);
                if u.resent {
                    self.stats.retransmissions += 1;
                }
                u.last_requested = Some(seq);
                u.deadline = now + self.rto();
                self.active = Some(Active::Upload(u));
            }
            Incoming::Ack(r, opaque_id) => {
                tracing::trace!(?r, "upload: ack");
                let all_requested = count == 0 || u.max_requested == Some(count - 1);
                match MissionResult::from_mav(r) {
                    None if all_requested => {
                        self.finish(Ok(MissionOutcome::Uploaded {
                            acked: true,
                            opaque_id,
                        }));
                    }
                    None => {
                        // An ACCEPTED before we sent everything: a stale
                        // or duplicated ACK of an earlier transfer.
                        self.stats.unexpected += 1;
                        self.active = Some(Active::Upload(u));
                    }
                    Some(MissionResult::InvalidSequence) => {
                        // ArduPilot's answer to a duplicate item; after a
                        // resend of the final item it means "already done".
                        if all_requested && u.final_resent {
                            u.complete_hints += 1;
                        }
                        self.stats.duplicates += 1;
                        if u.complete_hints >= 2 {
                            self.finish(Ok(MissionOutcome::Uploaded {
                                acked: false,
                                opaque_id: 0,
                            }));
                        } else {
                            self.active = Some(Active::Upload(u));
                        }
                    }
                    Some(MissionResult::OperationCancelled) => {
                        self.finish(Err(MissionError::Cancelled {
                            op: "upload",
                            ty: u.ty,
                        }));
                    }
                    Some(result) => {
                        if all_requested && u.final_resent && result == MissionResult::Error {
                            // PX4 answers a stray item after completion with
                            // an error: also a hint, not a verdict.
                            u.complete_hints += 1;
                            self.active = Some(Active::Upload(u));
                            return;
                        }
                        self.finish(Err(MissionError::Rejected {
                            op: "upload",
                            ty: u.ty,
                            result,
                        }));
                    }
                }
            }
            _ => {
                self.stats.unexpected += 1;
                self.active = Some(Active::Upload(u));
            }
        }
    }

    fn download_fill_window(&mut self, d: &mut Download, now: Instant) {
        let Some(count) = d.count else { return };
        while (d.in_flight.len() as u16) < self.cfg.download_window && d.next_to_request < count {
            let seq = d.next_to_request;
            d.next_to_request += 1;
            if d.items[seq as usize].is_some() {
                continue;
            }
            self.send_item_request(d.ty, seq);
            d.in_flight.insert(seq, (now, false));
        }
        d.deadline = d
            .in_flight
            .values()
            .map(|(t, _)| *t)
            .min()
            .map(|t| t + self.rto())
            .unwrap_or(now + self.rto());
    }

    fn download_handle(&mut self, mut d: Download, m: Incoming, now: Instant) {
        match m {
            Incoming::Count(count, opaque_id) => {
                match d.count {
                    None => {
                        if !d.list_resent {
                            self.rtt
                                .sample(now.saturating_duration_since(d.list_sent_at));
                        }
                        d.count = Some(count);
                        d.opaque_id = opaque_id;
                        d.items = vec![None; count as usize];
                        d.stalled = 0;
                        if count == 0 {
                            self.send_ack(d.ty, dialect::MavMissionResult::MAV_MISSION_ACCEPTED);
                            self.finish(Ok(MissionOutcome::Downloaded {
                                items: Vec::new(),
                                opaque_id,
                                legacy: false,
                            }));
                            return;
                        }
                        self.download_fill_window(&mut d, now);
                    }
                    Some(c) if c == count => self.stats.duplicates += 1,
                    Some(_) => {
                        // The list changed under us (someone else uploaded):
                        // start over with the new count.
                        tracing::warn!("mission count changed during download; restarting");
                        d.count = Some(count);
                        d.opaque_id = opaque_id;
                        d.items = vec![None; count as usize];
                        d.received = 0;
                        d.next_to_request = 0;
                        d.in_flight.clear();
                        self.download_fill_window(&mut d, now);
                    }
                }
                self.active = Some(Active::Download(d));
            }
            Incoming::Item(item, seq, legacy) => {
                let Some(count) = d.count else {
                    self.stats.unexpected += 1;
                    self.active = Some(Active::Download(d));
                    return;
                };
                if seq >= count {
                    self.stats.unexpected += 1;
                    self.active = Some(Active::Download(d));
                    return;
                }
                if d.items[seq as usize].is_some() {
                    self.stats.duplicates += 1;
                    self.active = Some(Active::Download(d));
                    return;
                }
                if let Some((sent, resent)) = d.in_flight.remove(&seq) {
                    if !resent {
                        self.rtt.sample(now.saturating_duration_since(sent));
                    }
                }
                d.items[seq as usize] = Some(item);
                d.received += 1;
                d.legacy |= legacy;
                d.stalled = 0;
                if d.received == count as usize {
                    self.send_ack(d.ty, dialect::MavMissionResult::MAV_MISSION_ACCEPTED);
                    let items = d
                        .items
                        .into_iter()
                        .map(|i| i.expect("all received"))
                        .collect();
                    self.finish(Ok(MissionOutcome::Downloaded {
                        items,
                        opaque_id: d.opaque_id,
                        legacy: d.legacy,
                    }));
                    return;
                }
                // Requests for items skipped earlier (received out of order
                // or lost) are re-issued by the timeout; keep the window full.
                if d.next_to_request >= count && d.in_flight.is_empty() {
                    // Everything requested once; ask again for the gaps.
                    if let Some(gap) = d.items.iter().position(|i| i.is_none()) {
                        d.next_to_request = gap as u16;
                    }
                }
                self.download_fill_window(&mut d, now);
                self.active = Some(Active::Download(d));
            }
            Incoming::Ack(r, _) => match MissionResult::from_mav(r) {
                None => {
                    self.stats.unexpected += 1;
                    self.active = Some(Active::Download(d));
                }
                Some(MissionResult::InvalidSequence) => {
                    // Never an answer to this download (only items below
                    // the count are requested): ArduPilot's reply to a
                    // duplicated or late item of the upload just before,
                    // delayed or duplicated by the radio. Not a verdict;
                    // if the list really changed, the timeouts decide.
                    self.stats.unexpected += 1;
                    self.active = Some(Active::Download(d));
                }
                Some(MissionResult::OperationCancelled) => {
                    self.finish(Err(MissionError::Cancelled {
                        op: "download",
                        ty: d.ty,
                    }))
                }
                Some(result) => self.finish(Err(MissionError::Rejected {
                    op: "download",
                    ty: d.ty,
                    result,
                })),
            },
            Incoming::Request(_) => {
                self.stats.unexpected += 1;
                self.active = Some(Active::Download(d));
            }
        }
    }

    fn clear_handle(&mut self, c: Clear, m: Incoming) {
        match m {
            Incoming::Ack(r, _) => match MissionResult::from_mav(r) {
                None => self.finish(Ok(MissionOutcome::Cleared)),
                Some(result) => self.finish(Err(MissionError::Rejected {
                    op: "clear",
                    ty: c.ty,
                    result,
                })),
            },
            _ => {
                self.stats.unexpected += 1;
                self.active = Some(Active::Clear(c));
            }
        }
    }

    /// Call when [`poll_timeout`](Self::poll_timeout) has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(a) = self.active.take() else { return };
        let rto = self.rto();
        let max = self.cfg.max_stalled_retries;
        match a {
            Active::Upload(mut u) => {
                if now < u.deadline {
                    self.active = Some(Active::Upload(u));
                    return;
                }
                self.stats.timeouts += 1;
                u.stalled += 1;
                tracing::trace!(stalled = u.stalled, last = ?u.last_requested, final_resent = u.final_resent, "upload: timeout");
                let count = u.items.len() as u16;
                let all_requested = count == 0 || u.max_requested == Some(count - 1);
                // Every item was requested and sent, the last one resent,
                // and the vehicle has been quiet for several of its own
                // re-request periods: the final MISSION_ACK was lost
                // (ArduPilot does not answer items after completion).
                let quiet = now.saturating_duration_since(u.last_request_at);
                if all_requested && u.final_resent && quiet >= (rto * 3).max(FINAL_QUIET) {
                    self.finish(Ok(MissionOutcome::Uploaded {
                        acked: false,
                        opaque_id: 0,
                    }));
                    return;
                }
                if u.stalled > max {
                    if all_requested && u.complete_hints > 0 {
                        self.finish(Ok(MissionOutcome::Uploaded {
                            acked: false,
                            opaque_id: 0,
                        }));
                    } else {
                        self.finish(Err(MissionError::Timeout {
                            op: "upload",
                            ty: u.ty,
                            stage: if u.max_requested.is_none() {
                                "waiting for the first item request"
                            } else if all_requested {
                                "waiting for the final MISSION_ACK"
                            } else {
                                "waiting for the next item request"
                            },
                            retries: max,
                            done: u.max_requested.map_or(0, |m| m as usize),
                            total: count as usize,
                        }));
                    }
                    return;
                }
                self.stats.retransmissions += 1;
                // Resend the highest item requested, not the last: a
                // reordered, stale request must not send us backwards (the
                // vehicle only moves forward).
                match u.max_requested {
                    None => self.send_count(u.ty, count),
                    Some(seq) => {
                        let mut it = u.items[seq as usize].clone();
                        it.target_system = self.target_system;
                        it.target_component = self.target_component;
                        self.out.push_back(Msg::MISSION_ITEM_INT(it));
                        if seq + 1 == count {
                            u.final_resent = true;
                        }
                    }
                }
                u.resent = true;
                u.deadline = now + rto;
                self.active = Some(Active::Upload(u));
            }
            Active::Download(mut d) => {
                if now < d.deadline {
                    self.active = Some(Active::Download(d));
                    return;
                }
                self.stats.timeouts += 1;
                d.stalled += 1;
                if d.stalled > max {
                    let total = d.count.unwrap_or(0) as usize;
                    self.finish(Err(MissionError::Timeout {
                        op: "download",
                        ty: d.ty,
                        stage: if d.count.is_none() {
                            "waiting for MISSION_COUNT"
                        } else {
                            "waiting for items"
                        },
                        retries: max,
                        done: d.received,
                        total,
                    }));
                    return;
                }
                if d.count.is_none() {
                    self.stats.retransmissions += 1;
                    self.send_request_list(d.ty);
                    d.list_resent = true;
                    d.list_sent_at = now;
                    d.deadline = now + rto;
                } else {
                    let due: Vec<u16> = d
                        .in_flight
                        .iter()
                        .filter(|(_, (t, _))| *t + rto <= now)
                        .map(|(s, _)| *s)
                        .collect();
                    for seq in due {
                        self.stats.retransmissions += 1;
                        self.send_item_request(d.ty, seq);
                        d.in_flight.insert(seq, (now, true));
                    }
                    if d.in_flight.is_empty() {
                        // Nothing in flight but items missing: re-request gaps.
                        if let Some(gap) = d.items.iter().position(|i| i.is_none()) {
                            d.next_to_request = gap as u16;
                        }
                    }
                    self.download_fill_window(&mut d, now);
                }
                self.active = Some(Active::Download(d));
            }
            Active::Clear(mut c) => {
                if now < c.deadline {
                    self.active = Some(Active::Clear(c));
                    return;
                }
                self.stats.timeouts += 1;
                c.stalled += 1;
                if c.stalled > max.min(10) {
                    self.finish(Err(MissionError::Timeout {
                        op: "clear",
                        ty: c.ty,
                        stage: "waiting for MISSION_ACK",
                        retries: c.stalled - 1,
                        done: 0,
                        total: 0,
                    }));
                    return;
                }
                self.stats.retransmissions += 1;
                self.send_clear(c.ty);
                c.deadline = now + rto;
                self.active = Some(Active::Clear(c));
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Incoming {
    Request(u16),
    Ack(dialect::MavMissionResult, u32),
    Count(u16, u32),
    Item(MissionItem, u16, bool),
}
