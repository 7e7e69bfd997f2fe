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
//!   `MISSION_ITEM_INT`;
//! - read-back is what ArduPilot stores, not what was sent
//!   ([`readback_item`]): items with a position come back in the float
//!   variant of their frame (`GLOBAL_RELATIVE_ALT_INT` → `GLOBAL_RELATIVE_ALT`),
//!   commands without one (`DO_CHANGE_SPEED`, `DO_MOUNT_CONTROL`,
//!   `NAV_RETURN_TO_LAUNCH`, …) are stored without a frame and come back
//!   with frame 0 (`GLOBAL`) whatever was sent, and fence and rally items
//!   come back with `autocontinue` 0. [`Lists`] keep the items as
//!   received; the rewrite is applied when they are read.
//!
//! With [`Flavour::Px4`] it is PX4's instead where the two differ: no
//! home item (seq 0 is the first real item), items pulled with
//! `MISSION_REQUEST_INT`, read-back as sent but for fence items'
//! `autocontinue` and rally frame 3 stored as 6 ([`crate::px4`]).
//!
//! Sans-IO: time is sim seconds; replies are queued with their recipient.

use std::collections::VecDeque;

use tiancha_firmware_bridge::codec::{dialect, Msg};
use tiancha_firmware_bridge::mission::{
    from_mav_type, item_from_legacy, item_from_mav, item_to_mav, to_mav_type,
};
use tiancha_protocol::mission::{frame, MissionItem, MissionType};

use crate::fence::Fence;
use crate::px4::{self, Flavour};

/// Re-request a missing item after this long (ArduPilot: 1000 ms).
pub const REREQUEST_S: f64 = 1.0;
/// Cancel an upload after this long without an item (ArduPilot: 8000 ms).
pub const UPLOAD_TIMEOUT_S: f64 = 8.0;

/// The three lists, as received (see [`readback_item`] for what a
/// download returns). `mission[0]` is home.
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
    /// ArduPilot's protocol or PX4's.
    pub flavour: Flavour,
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

/// An item as ArduPilot hands it back after storing it in list `t`:
///
/// - a command that ArduPilot stores with a location
///   ([`MissionItem::has_position`]) keeps its frame, as the float variant;
/// - any other command is stored without a frame and comes back with
///   frame 0 (`MAV_FRAME_GLOBAL`);
/// - fence and rally items come back with `autocontinue` 0.
///
/// Everything else (params, x, y, z) is returned as stored.
pub fn readback_item(t: MissionType, item: &MissionItem) -> MissionItem {
    let mut it = *item;
    it.frame = if it.has_position() {
        download_frame(it.frame)
    } else {
        frame::GLOBAL
    };
    if t != MissionType::Mission {
        it.autocontinue = false;
    }
    it
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
            flavour: Flavour::ArduCopter,
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
        let m = if self.flavour.is_px4() {
            Msg::MISSION_REQUEST_INT(dialect::MISSION_REQUEST_INT_DATA {
                seq: p.request_i,
                target_system: p.dest.0,
                target_component: p.dest.1,
                mission_type: to_mav_type(t),
            })
        } else {
            Msg::MISSION_REQUEST(dialect::MISSION_REQUEST_DATA {
                seq: p.request_i,
                target_system: p.dest.0,
                target_component: p.dest.1,
                mission_type: to_mav_type(t),
            })
        };
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
                    MissionType::Mission => {
                        lists.mission.truncate(count.max(self.flavour.home_items()))
                    }
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
                let item = if self.flavour.is_px4() {
                    px4::stored_item(t, &item)
                } else {
                    item
                };
                let home_items = self.flavour.home_items();
                let p = &mut self.protos[i];
                let s = seq as usize;
                match t {
                    MissionType::Fence => p.staged.push(item),
                    _ => {
                        let list = lists.list_mut(t);
                        if t == MissionType::Mission && s < home_items {
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
                let item = if self.flavour.is_px4() {
                    px4::readback_item(t, item)
                } else {
                    readback_item(t, item)
                };
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
                    MissionType::Mission => lists.mission.truncate(self.flavour.home_items()),
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

/// `MISSION_ITEM_INT` → `MISSION_ITEM` as ArduPilot's
/// `convert_MISSION_ITEM_INT_to_MISSION_ITEM`: x and y are degrees × 1e-7
/// for every command except the few whose x and y are plain numbers (so a
/// stored non-positional item, now frame `GLOBAL`, keeps its numbers).
fn to_legacy(m: &dialect::MISSION_ITEM_INT_DATA) -> dialect::MISSION_ITEM_DATA {
    use dialect::MavCmd::*;
    let plain = matches!(
        m.command,
        MAV_CMD_DO_DIGICAM_CONFIGURE
            | MAV_CMD_DO_DIGICAM_CONTROL
            | MAV_CMD_NAV_ATTITUDE_TIME
            | MAV_CMD_DO_GIMBAL_MANAGER_PITCHYAW
            | MAV_CMD_DO_SET_RESUME_REPEAT_DIST
    );
    let conv = |v: i32| {
        if plain {
            v as f32
        } else {
            (v as f64 / 1e7) as f32
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

#[cfg(test)]
mod tests {
    use super::*;
    use tiancha_protocol::mission::cmd;

    const HOME: (f64, f64) = (28.45, 117.94);

    fn home() -> MissionItem {
        let mut h = MissionItem::nav(cmd::NAV_WAYPOINT, HOME.0, HOME.1, 70.0);
        h.frame = frame::GLOBAL;
        h
    }

    /// The mission, fence and rally tiancha's planner uploads (frames as
    /// it sends them).
    fn lists() -> Lists {
        let (lat, lon) = HOME;
        let mut mount = MissionItem::command(cmd::DO_MOUNT_CONTROL, [-60.0, 0.0, 0.0, 0.0]);
        mount.z = 2.0;
        let mut vertex = MissionItem::nav(cmd::NAV_FENCE_POLYGON_VERTEX_INCLUSION, lat, lon, 0.0);
        vertex.frame = frame::GLOBAL_INT;
        vertex.param1 = 3.0;
        Lists {
            mission: vec![
                home(),
                MissionItem::nav(cmd::NAV_TAKEOFF, lat, lon, 50.0),
                MissionItem::command(cmd::DO_CHANGE_SPEED, [1.0, 5.0, -1.0, 0.0]),
                mount,
                MissionItem::nav(cmd::NAV_WAYPOINT, lat + 0.001, lon, 50.0),
                MissionItem::command(cmd::NAV_RETURN_TO_LAUNCH, [0.0; 4]),
            ],
            fence: vec![vertex; 3],
            rally: vec![MissionItem::nav(
                cmd::NAV_RALLY_POINT,
                lat,
                lon + 0.001,
                30.0,
            )],
        }
    }

    #[test]
    fn readback_is_what_ardupilot_stores() {
        let l = lists();
        let m: Vec<_> = l
            .mission
            .iter()
            .map(|it| readback_item(MissionType::Mission, it))
            .collect();
        // Home: GLOBAL as it was.
        assert_eq!(m[0], l.mission[0]);
        // Positional items: the float variant of their frame.
        assert_eq!(m[1].frame, frame::GLOBAL_RELATIVE_ALT);
        assert_eq!(m[4].frame, frame::GLOBAL_RELATIVE_ALT);
        // No position (sent as MAV_FRAME_MISSION): frame 0.
        for i in [2, 3, 5] {
            assert_eq!(l.mission[i].frame, frame::MISSION);
            assert_eq!(m[i].frame, frame::GLOBAL, "item {i}");
        }
        // Nothing else changes; mission items keep autocontinue.
        for (a, b) in m.iter().zip(&l.mission) {
            assert_eq!(
                (a.command, a.autocontinue, a.x, a.y, a.param1, a.param2, a.z),
                (b.command, b.autocontinue, b.x, b.y, b.param1, b.param2, b.z)
            );
        }
        // Fence and rally: float frame, autocontinue 0.
        let f = readback_item(MissionType::Fence, &l.fence[0]);
        assert_eq!((f.frame, f.autocontinue), (frame::GLOBAL, false));
        let r = readback_item(MissionType::Rally, &l.rally[0]);
        assert_eq!(
            (r.frame, r.autocontinue),
            (frame::GLOBAL_RELATIVE_ALT, false)
        );
        assert_eq!((r.x, r.y, r.z), (l.rally[0].x, l.rally[0].y, l.rally[0].z));
    }

    fn request(t: MissionType, seq: u16, legacy: bool) -> Msg {
        let mission_type = to_mav_type(t);
        if legacy {
            Msg::MISSION_REQUEST(dialect::MISSION_REQUEST_DATA {
                seq,
                target_system: 1,
                target_component: 1,
                mission_type,
            })
        } else {
            Msg::MISSION_REQUEST_INT(dialect::MISSION_REQUEST_INT_DATA {
                seq,
                target_system: 1,
                target_component: 1,
                mission_type,
            })
        }
    }

    /// (frame, autocontinue, x, y) of what a download of `seq` returns.
    fn download(
        s: &mut MissionServer,
        l: &mut Lists,
        t: MissionType,
        seq: u16,
        legacy: bool,
    ) -> (u8, u8, f64, f64) {
        assert!(s.handle((255, 190), &request(t, seq, legacy), 0.0, l));
        match s.out.pop_front() {
            Some(ServerOutput::Send(m)) => match *m {
                Msg::MISSION_ITEM_INT(i) if !legacy => {
                    (i.frame as u8, i.autocontinue, i.x as f64, i.y as f64)
                }
                Msg::MISSION_ITEM(i) if legacy => {
                    (i.frame as u8, i.autocontinue, i.x as f64, i.y as f64)
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn downloads_return_the_stored_form_in_both_messages() {
        let mut s = MissionServer::new(1, 1);
        let mut l = lists();
        for legacy in [false, true] {
            // DO_CHANGE_SPEED sent with MAV_FRAME_MISSION comes back as 0.
            let (f, ac, x, y) = download(&mut s, &mut l, MissionType::Mission, 2, legacy);
            assert_eq!((f, ac, x, y), (0, 1, 0.0, 0.0));
            // RTL likewise.
            assert_eq!(
                download(&mut s, &mut l, MissionType::Mission, 5, legacy).0,
                0
            );
            // A waypoint: relative-altitude frame without _INT, its position.
            let (f, ac, x, _) = download(&mut s, &mut l, MissionType::Mission, 4, legacy);
            assert_eq!((f, ac), (frame::GLOBAL_RELATIVE_ALT, 1));
            let lat = if legacy { x } else { x / 1e7 };
            assert!((lat - (HOME.0 + 0.001)).abs() < 4e-6, "{lat}");
            // Fence and rally: autocontinue 0.
            let (f, ac, ..) = download(&mut s, &mut l, MissionType::Fence, 1, legacy);
            assert_eq!((f, ac), (frame::GLOBAL, 0));
            let (f, ac, ..) = download(&mut s, &mut l, MissionType::Rally, 0, legacy);
            assert_eq!((f, ac), (frame::GLOBAL_RELATIVE_ALT, 0));
        }
        // The lists themselves keep what was received.
        assert_eq!(l.mission[2].frame, frame::MISSION);
        assert!(l.fence[0].autocontinue);
    }

    #[test]
    fn legacy_items_convert_x_y_by_command_as_ardupilot() {
        // DO_GIMBAL_MANAGER_PITCHYAW carries flags in x: a plain number in
        // MISSION_ITEM, even though the stored item is now frame 0.
        let mut s = MissionServer::new(1, 1);
        let mut py = MissionItem::command(cmd::DO_GIMBAL_MANAGER_PITCHYAW, [-90.0, 0.0, 0.0, 0.0]);
        py.x = 16;
        let mut l = Lists {
            mission: vec![home(), py],
            ..Default::default()
        };
        let (f, _, x, _) = download(&mut s, &mut l, MissionType::Mission, 1, true);
        assert_eq!((f, x), (frame::GLOBAL, 16.0));
    }

    /// Upload `items` as a GCS would (answering each request) and return
    /// the server's last MISSION_ACK result and the requests' kinds.
    fn upload(
        s: &mut MissionServer,
        l: &mut Lists,
        t: MissionType,
        items: &[MissionItem],
    ) -> (dialect::MavMissionResult, Vec<&'static str>) {
        let gcs = (255, 190);
        let count = Msg::MISSION_COUNT(dialect::MISSION_COUNT_DATA {
            count: items.len() as u16,
            target_system: 1,
            target_component: 1,
            mission_type: to_mav_type(t),
            opaque_id: 0,
        });
        assert!(s.handle(gcs, &count, 0.0, l));
        let mut kinds = vec![];
        loop {
            let Some(o) = s.out.pop_front() else {
                panic!("no answer")
            };
            let seq = match o {
                ServerOutput::Send(m) => match *m {
                    Msg::MISSION_REQUEST_INT(r) => {
                        kinds.push("MISSION_REQUEST_INT");
                        r.seq
                    }
                    Msg::MISSION_REQUEST(r) => {
                        kinds.push("MISSION_REQUEST");
                        r.seq
                    }
                    Msg::MISSION_ACK(a) => return (a.mavtype, kinds),
                    other => panic!("{other:?}"),
                },
                _ => continue,
            };
            let m = item_to_mav(&items[seq as usize], seq, t).unwrap();
            assert!(s.handle(gcs, &Msg::MISSION_ITEM_INT(m), 0.0, l));
        }
    }

    fn download_all(s: &mut MissionServer, l: &mut Lists, t: MissionType) -> Vec<MissionItem> {
        (0..l.list(t).len() as u16)
            .map(|seq| {
                assert!(s.handle((255, 190), &request(t, seq, false), 0.0, l));
                match s.out.pop_front() {
                    Some(ServerOutput::Send(m)) => match *m {
                        Msg::MISSION_ITEM_INT(i) => item_from_mav(&i),
                        other => panic!("{other:?}"),
                    },
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn px4_has_no_home_item_and_reads_back_as_sent() {
        let mut s = MissionServer::new(1, 1);
        s.flavour = Flavour::Px4;
        let mut l = Lists::default();
        let sent = lists();
        // The PX4 mission: no home; frames as sent (2 for RTL and the
        // speed change).
        let mut mission = sent.mission[1..].to_vec();
        for it in &mut mission {
            if !it.has_position() {
                it.frame = frame::MISSION;
            }
        }
        let (r, kinds) = upload(&mut s, &mut l, MissionType::Mission, &mission);
        assert_eq!(r, dialect::MavMissionResult::MAV_MISSION_ACCEPTED);
        assert!(
            kinds.iter().all(|k| *k == "MISSION_REQUEST_INT"),
            "{kinds:?}"
        );
        assert_eq!(l.mission, mission, "seq 0 is the first real item");
        let back = download_all(&mut s, &mut l, MissionType::Mission);
        assert_eq!(back.len(), mission.len());
        for (a, b) in mission.iter().zip(&back) {
            assert_eq!(a.frame, b.frame);
            assert_eq!(a.autocontinue, b.autocontinue);
            assert_eq!((a.command, a.x, a.y), (b.command, b.x, b.y));
        }
        // Fence: autocontinue 0, frames kept.
        let (r, _) = upload(&mut s, &mut l, MissionType::Fence, &sent.fence);
        assert_eq!(r, dialect::MavMissionResult::MAV_MISSION_ACCEPTED);
        let back = download_all(&mut s, &mut l, MissionType::Fence);
        assert!(back
            .iter()
            .all(|b| !b.autocontinue && b.frame == frame::GLOBAL_INT));
        // Rally: frame 3 comes back as 6, 0 as 0; autocontinue kept.
        let mut r3 = sent.rally[0];
        r3.frame = frame::GLOBAL_RELATIVE_ALT;
        let mut r0 = sent.rally[0];
        r0.frame = frame::GLOBAL;
        let (r, _) = upload(&mut s, &mut l, MissionType::Rally, &[r3, r0]);
        assert_eq!(r, dialect::MavMissionResult::MAV_MISSION_ACCEPTED);
        let back = download_all(&mut s, &mut l, MissionType::Rally);
        assert_eq!(back[0].frame, frame::GLOBAL_RELATIVE_ALT_INT);
        assert_eq!(back[1].frame, frame::GLOBAL);
        assert!(back.iter().all(|b| b.autocontinue));
        // Clearing the mission leaves nothing (no home).
        let clear = Msg::MISSION_CLEAR_ALL(dialect::MISSION_CLEAR_ALL_DATA {
            target_system: 1,
            target_component: 1,
            mission_type: to_mav_type(MissionType::Mission),
        });
        assert!(s.handle((255, 190), &clear, 0.0, &mut l));
        assert!(l.mission.is_empty());
    }
}
