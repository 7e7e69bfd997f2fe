//! The autopilot side of the mission protocol, as ArduPilot does it
//! (`libraries/GCS_MAVLink/MissionItemProtocol.cpp`), for MISSION, FENCE
//! and RALLY:
//!
//! - uploads are driven by the vehicle with `MISSION_REQUEST` (40), not
//!   `_INT`; a missing item is re-requested after 1 s; 8 s without an item
//!   cancels the upload (`MISSION_ACK OPERATION_CANCELLED`);
//! - an item out of sequence is answered with `MISSION_ACK
//!   INVALID_SEQUENCE` and the transfer goes on; an item when no upload is
//!   in progress gets no answer at all;
//! - mission and rally items are written in place as they arrive (a
//!   cancelled upload leaves a mix, which is why the bridge reads back);
//!   the fence is staged and replaced only when complete and valid;
//! - mission item 0 is home: writes to it are ignored and reads return the
//!   current home (frame `GLOBAL`, altitude AMSL);
//! - downloads are stateless: every request is answered on its own;
//!   `MISSION_REQUEST` gets a float `MISSION_ITEM`, `MISSION_REQUEST_INT` a
//!   `MISSION_ITEM_INT`; frames come back without the `_INT` suffix.
//!
//! Sans-IO: time is sim seconds; replies are queued with their recipient.

use std::collections::VecDeque;

use tiancha_firmware_bridge::codec::{dialect, Msg};
use tiancha_firmware_bridge::mission::{
    from_mav_type, item_from_legacy, item_from_mav, item_to_mav, to_mav_type,
};
use tiancha_protocol::mission::{frame, MissionItem, MissionType};

use crate::fence::Fence;

/// Re-request a missing item after this long (ArduPilot: 1000 ms).
pub const REREQUEST_S: f64 = 1.0;
/// Cancel an upload after this long without an item (ArduPilot: 8000 ms).
pub const UPLOAD_TIMEOUT_S: f64 = 8.0;

/// The three lists. `mission[0]` is home.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    pub mission: Vec<MissionItem>,
    pub fence: Vec<MissionItem>,
    pub rally: Vec<MissionItem>,
}

impl Lists {
    fn list_mut(&mut self, t: MissionType) -> &mut Vec<MissionItem> {
        match t {
            MissionType::Mission => &mut self.mission,
            MissionType::Fence => &mut self.fence,
            MissionType::Rally => &mut self.rally,
        }
    }

    fn list(&self, t: MissionType) -> &Vec<MissionItem> {
        match t {
            MissionType::Mission => &self.mission,
            MissionType::Fence => &self.fence,
            MissionType::Rally => &self.rally,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Proto {
    receiving: bool,
    request_i: u16,
    request_last: u16,
    dest: (u8, u8),
    timelast_receive: f64,
    timelast_request: f64,
    staged: Vec<MissionItem>,
    item_warning_sent: bool,
}

/// What the server wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerOutput {
    /// Send `msg` (already addressed).
    Send(Box<Msg>),
    /// A STATUSTEXT.
    Text(u8, String),
    /// A list changed (completed, cleared or cancelled mid-way).
    Changed(MissionType),
}

/// Counters (for tests and the benchmark).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub uploads_completed: u64,
    pub uploads_cancelled: u64,
    pub rerequests: u64,
    pub invalid_sequence: u64,
    pub items_ignored: u64,
}

#[derive(Debug, Clone)]
pub struct MissionServer {
    protos: [Proto; 3],
    pub max_items: [usize; 3],
    pub out: VecDeque<ServerOutput>,
    pub stats: ServerStats,
    sys: u8,
    comp: u8,
}

fn idx(t: MissionType) -> usize {
    t as usize
}

/// ArduPilot answers with the float-frame variant.
fn download_frame(f: u8) -> u8 {
    match f {
        frame::GLOBAL_INT => frame::GLOBAL,
        frame::GLOBAL_RELATIVE_ALT_INT => frame::GLOBAL_RELATIVE_ALT,
        11 => 10,
        f => f,
    }
}

impl MissionServer {
    pub fn new(sys: u8, comp: u8) -> Self {
        Self {
            protos: Default::default(),
            max_items: [2000, 256, 64],
            out: VecDeque::new(),
            stats: ServerStats::default(),
            sys,
            comp,
        }
    }

    pub fn receiving(&self, t: MissionType) -> bool {
        self.protos[idx(t)].receiving
    }

    fn ack(&mut self, to: (u8, u8), t: MissionType, r: dialect::MavMissionResult) {
        self.out
            .push_back(ServerOutput::Send(Box::new(Msg::MISSION_ACK(
                dialect::MISSION_ACK_DATA {
                    target_system: to.0,
                    target_component: to.1,
                    mavtype: r,
                    mission_type: to_mav_type(t),
                    opaque_id: 0,
                },
            ))));
    }

    fn send_request(&mut self, t: MissionType, now: f64) {
        let p = &mut self.protos[idx(t)];
        p.timelast_request = now;
        let m = Msg::MISSION_REQUEST(dialect::MISSION_REQUEST_DATA {
            seq: p.request_i,
            target_system: p.dest.0,
            target_component: p.dest.1,
            mission_type: to_mav_type(t),
        });
        self.out.push_back(ServerOutput::Send(Box::new(m)));
    }

    /// Handle a mission-protocol message from `from`. Returns false if it is
    /// not one.
    pub fn handle(&mut self, from: (u8, u8), msg: &Msg, now: f64, lists: &mut Lists) -> bool {
        use dialect::MavMissionResult as R;
        let (mt, _) = match msg {
            Msg::MISSION_COUNT(m) => (m.mission_type, 0),
            Msg::MISSION_ITEM_INT(m) => (m.mission_type, 0),
            Msg::MISSION_ITEM(m) => (m.mission_type, 0),
            Msg::MISSION_REQUEST_LIST(m) => (m.mission_type, 0),
            Msg::MISSION_REQUEST_INT(m) => (m.mission_type, 0),
            Msg::MISSION_REQUEST(m) => (m.mission_type, 0),
            Msg::MISSION_CLEAR_ALL(m) => (m.mission_type, 0),
            Msg::MISSION_ACK(_) => return true, // end of a download: nothing to do
            _ => return false,
        };
        let Some(t) = from_mav_type(mt) else {
            self.ack(from, MissionType::Mission, R::MAV_MISSION_UNSUPPORTED);
            return true;
        };
        let i = idx(t);
        match msg {
            Msg::MISSION_COUNT(m) => {
                let p = &mut self.protos[i];
                if p.receiving && p.dest != from {
                    self.ack(from, t, R::MAV_MISSION_DENIED);
                    return true;
                }
                let count = m.count as usize;
                if count > self.max_items[i] {
                    self.ack(from, t, R::MAV_MISSION_NO_SPACE);
                    self.out.push_back(ServerOutput::Text(
                        4,
                        format!("Only {} items are supported", self.max_items[i]),
                    ));
                    return true;
                }
                p.receiving = false;
                p.staged.clear();
                p.item_warning_sent = false;
                // Truncate in place (mission keeps home).
                match t {
                    MissionType::Mission => lists.mission.truncate(count.max(1)),
                    MissionType::Rally => lists.rally.truncate(count),
                    MissionType::Fence => {}
                }
                if count == 0 {
                    if t == MissionType::Fence {
                        lists.fence.clear();
                    }
                    self.out.push_back(ServerOutput::Changed(t));
                    self.ack(from, t, R::MAV_MISSION_ACCEPTED);
                    return true;
                }
                let p = &mut self.protos[i];
                p.receiving = true;
                p.request_i = 0;
                p.request_last = (count - 1) as u16;
                p.dest = from;
                p.timelast_receive = now;
                self.send_request(t, now);
            }
            Msg::MISSION_ITEM_INT(_) | Msg::MISSION_ITEM(_) => {
                let (item, seq, legacy) = match msg {
                    Msg::MISSION_ITEM_INT(m) => (item_from_mav(m), m.seq, false),
                    Msg::MISSION_ITEM(m) => (item_from_legacy(m), m.seq, true),
                    _ => unreachable!(),
                };
                let p = &mut self.protos[i];
                if !p.receiving {
                    // ArduPilot: no link, no answer.
                    self.stats.items_ignored += 1;
                    return true;
                }
                if legacy && !p.item_warning_sent {
                    p.item_warning_sent = true;
                    self.out.push_back(ServerOutput::Text(
                        4,
                        "got MISSION_ITEM; GCS should send MISSION_ITEM_INT".into(),
                    ));
                }
                if seq != p.request_i {
                    self.stats.invalid_sequence += 1;
                    self.ack(from, t, R::MAV_MISSION_INVALID_SEQUENCE);
                    return true;
                }
                if from != p.dest {
                    self.ack(from, t, R::MAV_MISSION_DENIED);
                    return true;
                }
                if let Err(r) = check_item(&item) {
                    let p = &mut self.protos[i];
                    p.receiving = false;
                    self.ack(from, t, r);
                    self.out.push_back(ServerOutput::Changed(t));
                    return true;
                }
                let p = &mut self.protos[i];
                let s = seq as usize;
                match t {
                    MissionType::Fence => p.staged.push(item),
                    _ => {
                        let list = lists.list_mut(t);
                        if t == MissionType::Mission && s == 0 {
                            // home: ignored
                        } else if s < list.len() {
                            list[s] = item;
                        } else if s == list.len() {
                            list.push(item);
                        }
                    }
                }
                let p = &mut self.protos[i];
                p.timelast_receive = now;
                p.request_i += 1;
                if p.request_i > p.request_last {
                    p.receiving = false;
                    let mut result = R::MAV_MISSION_ACCEPTED;
                    if t == MissionType::Fence {
                        let staged = std::mem::take(&mut p.staged);
                        match Fence::from_items(&staged) {
                            Ok(_) => lists.fence = staged,
                            Err(e) => {
                                self.out
                                    .push_back(ServerOutput::Text(4, format!("Fence: {e}")));
                                result = R::MAV_MISSION_INVALID;
                            }
                        }
                    }
                    self.stats.uploads_completed += 1;
                    self.out.push_back(ServerOutput::Changed(t));
                    self.ack(from, t, result);
                } else {
                    self.send_request(t, now);
                }
            }
            Msg::MISSION_REQUEST_LIST(_) => {
                if self.protos[i].receiving {
                    self.ack(from, t, R::MAV_MISSION_DENIED);
                    return true;
                }
                let count = lists.list(t).len() as u16;
                self.out
                    .push_back(ServerOutput::Send(Box::new(Msg::MISSION_COUNT(
                        dialect::MISSION_COUNT_DATA {
                            count,
                            target_system: from.0,
                            target_component: from.1,
                            mission_type: to_mav_type(t),
                            opaque_id: 0,
                        },
                    ))));
            }
            Msg::MISSION_REQUEST_INT(dialect::MISSION_REQUEST_INT_DATA { seq, .. })
            | Msg::MISSION_REQUEST(dialect::MISSION_REQUEST_DATA { seq, .. }) => {
                let legacy = matches!(msg, Msg::MISSION_REQUEST(_));
                if self.protos[i].receiving {
                    self.ack(from, t, R::MAV_MISSION_DENIED);
                    return true;
                }
                let list = lists.list(t);
                let Some(item) = list.get(*seq as usize) else {
                    self.ack(from, t, R::MAV_MISSION_INVALID_SEQUENCE);
                    return true;
                };
                let mut item = *item;
                item.frame = download_frame(item.frame);
                let Ok(mut m) = item_to_mav(&item, *seq, t) else {
                    self.ack(from, t, R::MAV_MISSION_ERROR);
                    return true;
                };
                m.target_system = from.0;
                m.target_component = from.1;
                let out = if legacy {
                    Msg::MISSION_ITEM(to_legacy(&m))
                } else {
                    Msg::MISSION_ITEM_INT(m)
                };
                self.out.push_back(ServerOutput::Send(Box::new(out)));
            }
            Msg::MISSION_CLEAR_ALL(_) => {
                if self.protos[i].receiving {
                    self.ack(from, t, R::MAV_MISSION_ERROR);
                    return true;
                }
                match t {
                    MissionType::Mission => lists.mission.truncate(1),
                    _ => lists.list_mut(t).clear(),
                }
                self.out.push_back(ServerOutput::Changed(t));
                self.ack(from, t, R::MAV_MISSION_ACCEPTED);
            }
            _ => {}
        }
        let _ = (self.sys, self.comp);
        true
    }

    /// Re-request and time out uploads.
    pub fn tick(&mut self, now: f64) {
        for t in [MissionType::Mission, MissionType::Fence, MissionType::Rally] {
            let p = &mut self.protos[idx(t)];
            if !p.receiving {
                continue;
            }
            if now - p.timelast_receive > UPLOAD_TIMEOUT_S {
                p.receiving = false;
                p.staged.clear();
                let dest = p.dest;
                self.stats.uploads_cancelled += 1;
                self.ack(
                    dest,
                    t,
                    dialect::MavMissionResult::MAV_MISSION_OPERATION_CANCELLED,
                );
                self.out.push_back(ServerOutput::Changed(t));
                continue;
            }
            if now - p.timelast_request > REREQUEST_S {
                self.stats.rerequests += 1;
                self.send_request(t, now);
            }
        }
    }
}

/// ArduPilot's checks on a received item (positions on the earth).
fn check_item(it: &MissionItem) -> Result<(), dialect::MavMissionResult> {
    if it.has_position() {
        if !(-90.0..=90.0).contains(&it.lat_deg()) {
            return Err(dialect::MavMissionResult::MAV_MISSION_INVALID_PARAM5_X);
        }
        if !(-180.0..=180.0).contains(&it.lon_deg()) {
            return Err(dialect::MavMissionResult::MAV_MISSION_INVALID_PARAM6_Y);
        }
    }
    Ok(())
}

fn to_legacy(m: &dialect::MISSION_ITEM_INT_DATA) -> dialect::MISSION_ITEM_DATA {
    let global = matches!(m.frame as u8, 0 | 3 | 5 | 6 | 10 | 11);
    let conv = |v: i32| {
        if global {
            (v as f64 / 1e7) as f32
        } else {
            v as f32
        }
    };
    dialect::MISSION_ITEM_DATA {
        param1: m.param1,
        param2: m.param2,
        param3: m.param3,
        param4: m.param4,
        x: conv(m.x),
        y: conv(m.y),
        z: m.z,
        seq: m.seq,
        command: m.command,
        target_system: m.target_system,
        target_component: m.target_component,
        frame: m.frame,
        current: m.current,
        autocontinue: m.autocontinue,
        mission_type: m.mission_type,
    }
}
