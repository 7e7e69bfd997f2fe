//! PX4 v1.15.4 where it differs from ArduCopter: the simulator's
//! [`Flavour::Px4`]. Pure rules, each recorded from the real PX4 SITL
//! (`firmware-bridge/tests/data/firmware-replies/px4-v1.15.4.json` and its
//! README); the autopilot, mission server and vehicle call them behind the
//! flavour switch and otherwise behave as ArduCopter.
//!
//! - **Heartbeat**: `MAV_AUTOPILOT_PX4`, custom mode `(main << 16) | (sub
//!   << 24)` ([`custom_mode`]); boots in AUTO.LOITER; `DO_SET_MODE`
//!   param2/param3 = main/sub ([`mode_from`]).
//! - **Mission protocol**: no home item (seq 0 is the first real item;
//!   the vehicle keeps its home in front of its own copy, [`vehicle_mission`],
//!   and [`wire_seq`] maps back); read-back exactly as sent except fence
//!   items' `autocontinue` 0 ([`readback_item`]); rally frame 3 is
//!   stored as 6 ([`stored_item`]); items are pulled with
//!   `MISSION_REQUEST_INT`. `MISSION_ITEM_REACHED` for every item, the last
//!   one repeated once a second ([`Timers`]).
//! - **Arming**: in AUTO.MISSION with a mission, arming takes off and flies
//!   it; `COM_DISARM_PRFLT` disarms an armed vehicle that has not taken
//!   off; a refusal before readiness is `TEMPORARILY_REJECTED` with
//!   [`ARMING_DENIED`]. `SYS_STATUS` carries the pre-arm bit in `health`
//!   only; no `EKF_STATUS_REPORT`.
//! - **Commands**: `DO_PAUSE_CONTINUE` and `DO_FENCE_ENABLE` are
//!   UNSUPPORTED; `NAV_TAKEOFF` param7 is AMSL (NaN: `MIS_TAKEOFF_ALT`).
//! - **Parameters** ([`params`]): PX4's names, INT32 values bytewise.
//! - **Geofence**: the uploaded fence is enforced with no enabling step
//!   while `GF_ACTION` >= 2 ([`fence_enforced`], [`fence_action`]);
//!   `GF_MAX_HOR_DIST` > 0 is a circle round home, `GF_MAX_VER_DIST` > 0 a
//!   ceiling ([`fence_breach_at`]).
//! - **RTL** (`RTL_TYPE` 0): to the nearest of home and the rally points in
//!   frame 0 (AMSL) at `RTL_RETURN_ALT`, and land; rally points in any
//!   other frame make PX4 say [`RTL_UNSUPPORTED_FRAME`] once a second and
//!   are not used ([`rally_supported`]).
//! - **STATUSTEXT** ends with a TAB ([`statustext`]).

use nalgebra::{Vector2, Vector3};
use serde::{Deserialize, Serialize};
use tiancha_firmware_bridge::codec::dialect::{MavCmd, MavResult};
use tiancha_firmware_bridge::params::ParamEncoding;
use tiancha_geometry::geodesy::{LatLon, LatLonAlt};
use tiancha_protocol::mission::{cmd, frame, MissionItem, MissionType};

use crate::params::{Param, ParamType, Params};
use crate::rally::{rtl_target, RtlTarget};
use crate::vehicle::{home_item, Airframe, Mode, Vehicle};

/// Which autopilot firmware the simulator behaves like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavour {
    /// ArduCopter (the default): everything outside this module.
    /// (`ardu_copter`; `ardupilot` and `arducopter` are accepted too.)
    #[default]
    #[serde(alias = "ardupilot", alias = "arducopter")]
    ArduCopter,
    /// PX4 v1.15.4 where it differs from ArduCopter (this module).
    Px4,
}

impl Flavour {
    pub fn is_px4(self) -> bool {
        self == Flavour::Px4
    }

    /// Items in the mission list before the first real one (ArduPilot's
    /// home at seq 0; none on PX4).
    pub fn home_items(self) -> usize {
        match self {
            Flavour::ArduCopter => 1,
            Flavour::Px4 => 0,
        }
    }
}

/// PX4's main modes (`custom_mode` bits 16–23).
pub mod main_mode {
    pub const ALTCTL: u8 = 2;
    pub const POSCTL: u8 = 3;
    pub const AUTO: u8 = 4;
    pub const STABILIZED: u8 = 7;
}

/// PX4's AUTO sub-modes (`custom_mode` bits 24–31).
pub mod auto_sub {
    pub const TAKEOFF: u8 = 2;
    pub const LOITER: u8 = 3;
    pub const MISSION: u8 = 4;
    pub const RTL: u8 = 5;
    pub const LAND: u8 = 6;
}

/// PX4's `custom_mode` for the sim's mode; `taking_off`: a takeoff is
/// climbing (AUTO.TAKEOFF). GUIDED, CIRCLE and BRAKE (no PX4 equivalent;
/// a DO_REPOSITION puts PX4 in Hold) report AUTO.LOITER.
pub fn custom_mode(mode: Mode, taking_off: bool) -> u32 {
    use auto_sub::*;
    let (main, sub) = match mode {
        Mode::Auto => (main_mode::AUTO, MISSION),
        Mode::Rtl => (main_mode::AUTO, RTL),
        Mode::Land => (main_mode::AUTO, LAND),
        Mode::Guided if taking_off => (main_mode::AUTO, TAKEOFF),
        Mode::Loiter | Mode::Guided | Mode::Circle | Mode::Brake => (main_mode::AUTO, LOITER),
        Mode::PosHold => (main_mode::POSCTL, 0),
        Mode::AltHold => (main_mode::ALTCTL, 0),
        Mode::Stabilize => (main_mode::STABILIZED, 0),
    };
    ((main as u32) << 16) | ((sub as u32) << 24)
}

/// The sim's mode for PX4's (main, sub): AUTO.LOITER is LOITER,
/// AUTO.MISSION is AUTO, AUTO.TAKEOFF is GUIDED (with a takeoff, see
/// [`command`]). `None`: not a mode the simulator has.
pub fn mode_from(main: u8, sub: u8) -> Option<Mode> {
    use auto_sub::*;
    Some(match (main, sub) {
        (main_mode::AUTO, TAKEOFF) => Mode::Guided,
        (main_mode::AUTO, LOITER) => Mode::Loiter,
        (main_mode::AUTO, MISSION) => Mode::Auto,
        (main_mode::AUTO, RTL) => Mode::Rtl,
        (main_mode::AUTO, LAND) => Mode::Land,
        (main_mode::POSCTL, _) => Mode::PosHold,
        (main_mode::ALTCTL, _) => Mode::AltHold,
        (main_mode::STABILIZED, _) => Mode::Stabilize,
        _ => return None,
    })
}

/// [`mode_from`] for a whole `custom_mode` (SET_MODE).
pub fn mode_from_custom(custom: u32) -> Option<Mode> {
    mode_from(((custom >> 16) & 0xFF) as u8, ((custom >> 24) & 0xFF) as u8)
}

/// PX4's parameters that the simulator has, with PX4 v1.15.4's SITL
/// defaults (as recorded) unless the airframe says otherwise:
///
/// | name | type | value | meaning here |
/// |---|---|---|---|
/// | `GF_ACTION` | INT32 | 2 | 0 none, 1 warn, 2 hold, 3 return, 4 terminate (lands here), 5 land; >= 2 enforces the fence |
/// | `GF_MAX_HOR_DIST` | REAL32 | 0 | > 0: a circle round home |
/// | `GF_MAX_VER_DIST` | REAL32 | 0 | > 0: a ceiling above home |
/// | `GF_SOURCE`, `GF_PREDICT` | INT32 | 0 | reported only |
/// | `RTL_TYPE` | INT32 | 0 | reported; the simulator does type 0 |
/// | `RTL_RETURN_ALT` | REAL32 | 30 m | RTL's altitude above home |
/// | `COM_DISARM_PRFLT` | REAL32 | 10 s | disarm when armed without takeoff |
/// | `NAV_ACC_RAD` | REAL32 | 2 m | waypoint acceptance radius |
/// | `MIS_TAKEOFF_ALT` | REAL32 | 2.5 m | takeoff altitude when none is given |
/// | `MPC_XY_CRUISE` | REAL32 | `Airframe::wp_speed_mps` (PX4 5) | mission speed |
/// | `COM_LOW_BAT_ACT` | INT32 | 2 | reported only |
/// | `BAT_LOW_THR` | REAL32 | 0.15 | reported only |
/// | `COM_ARM_WO_GPS` | INT32 | 1 | reported only |
/// | `MIS_DIST_1WP` | REAL32 | 900 | reported only |
/// | `MAV_SYS_ID` | INT32 | `system_id` | |
pub fn params(system_id: u8, af: &Airframe) -> Params {
    use ParamType::*;
    let p = |name: &'static str, ty: ParamType, value: f64| Param {
        name,
        ty,
        value: value as f32,
        read_only: false,
    };
    Params::new(vec![
        p("GF_ACTION", MAV_PARAM_TYPE_INT32, 2.0),
        p("GF_MAX_HOR_DIST", MAV_PARAM_TYPE_REAL32, 0.0),
        p("GF_MAX_VER_DIST", MAV_PARAM_TYPE_REAL32, 0.0),
        p("GF_SOURCE", MAV_PARAM_TYPE_INT32, 0.0),
        p("GF_PREDICT", MAV_PARAM_TYPE_INT32, 0.0),
        p("RTL_TYPE", MAV_PARAM_TYPE_INT32, 0.0),
        p("RTL_RETURN_ALT", MAV_PARAM_TYPE_REAL32, 30.0),
        p("COM_DISARM_PRFLT", MAV_PARAM_TYPE_REAL32, af.disarm_delay_s),
        p("NAV_ACC_RAD", MAV_PARAM_TYPE_REAL32, af.wp_radius_m),
        p("MIS_TAKEOFF_ALT", MAV_PARAM_TYPE_REAL32, 2.5),
        p("MIS_DIST_1WP", MAV_PARAM_TYPE_REAL32, 900.0),
        p("MPC_XY_CRUISE", MAV_PARAM_TYPE_REAL32, af.wp_speed_mps),
        p("COM_LOW_BAT_ACT", MAV_PARAM_TYPE_INT32, 2.0),
        p("BAT_LOW_THR", MAV_PARAM_TYPE_REAL32, 0.15),
        p("COM_ARM_WO_GPS", MAV_PARAM_TYPE_INT32, 1.0),
        p("MAV_SYS_ID", MAV_PARAM_TYPE_INT32, system_id as f64),
    ])
    .with_encoding(ParamEncoding::Bytewise)
}

/// Set up a new vehicle as PX4 boots: its parameters, the fence enforced
/// per `GF_ACTION`, AUTO.LOITER.
pub fn configure_vehicle(v: &mut Vehicle, system_id: u8) {
    v.flavour = Flavour::Px4;
    v.params = params(system_id, &v.af);
    v.fence_enabled = fence_enforced(&v.params);
    v.speed_mps = v.params.value("MPC_XY_CRUISE");
    v.mode = Mode::Loiter;
}

/// An item as PX4 stores it on upload: rally points in frame 3
/// (`GLOBAL_RELATIVE_ALT`) become frame 6 (`_INT`); everything else as
/// received.
pub fn stored_item(t: MissionType, item: &MissionItem) -> MissionItem {
    let mut it = *item;
    if t == MissionType::Rally && it.frame == frame::GLOBAL_RELATIVE_ALT {
        it.frame = frame::GLOBAL_RELATIVE_ALT_INT;
    }
    it
}

/// An item as PX4 hands it back: as stored, except fence items with
/// `autocontinue` 0 (rally points keep theirs: recorded from PX4 SITL,
/// and checked by `cli/tests/sitl_e2e.rs`).
pub fn readback_item(t: MissionType, item: &MissionItem) -> MissionItem {
    let mut it = *item;
    if t == MissionType::Fence {
        it.autocontinue = false;
    }
    it
}

/// The vehicle's copy of a PX4 mission: home in front (the vehicle counts
/// items from 1, as ArduPilot does) and `DO_JUMP` targets moved with it.
pub fn vehicle_mission(home: LatLonAlt, items: &[MissionItem]) -> Vec<MissionItem> {
    let mut v = Vec::with_capacity(items.len() + 1);
    v.push(home_item(home));
    v.extend(items.iter().map(|it| {
        let mut it = *it;
        if it.command == cmd::DO_JUMP {
            it.param1 += 1.0;
        }
        it
    }));
    v
}

/// The wire's sequence number of the vehicle's item `seq` (see
/// [`vehicle_mission`]).
pub fn wire_seq(seq: u16) -> u16 {
    seq.saturating_sub(1)
}

/// The vehicle's sequence number of the wire's item `seq`.
pub fn vehicle_seq(seq: u16) -> u16 {
    seq.saturating_add(1)
}

/// The fence is enforced (`GF_ACTION` >= 2; 1 only warns, 0 does nothing).
pub fn fence_enforced(p: &Params) -> bool {
    p.value("GF_ACTION") >= 2.0
}

/// What `GF_ACTION` does on a breach: `None` for nothing; the mode to hold
/// (2: AUTO.LOITER), return (3: RTL) or land (4 terminate, 5: LAND).
pub fn fence_action(gf_action: f64) -> Option<Mode> {
    match gf_action as i64 {
        2 => Some(Mode::Loiter),
        3 => Some(Mode::Rtl),
        4 | 5 => Some(Mode::Land),
        _ => None,
    }
}

/// PX4's words on a breach (then `Failsafe activated` when it acts).
pub const GEOFENCE_VIOLATION: &str = "Geofence violation: approaching or outside geofence";

/// Which fence the NED point `p` breaches on PX4: `GF_MAX_VER_DIST` above
/// home, a circle of `GF_MAX_HOR_DIST` round `circle_centre` (home), and
/// the uploaded zones.
pub fn fence_breach_at(
    v: &Vehicle,
    p: Vector3<f64>,
    circle_centre: Vector2<f64>,
) -> Option<(&'static str, String)> {
    let max = v.params.value("GF_MAX_VER_DIST");
    if max > 0.0 && -p.z > max {
        return Some(("Max Alt", format!("altitude {:.1} m > {max} m", -p.z)));
    }
    let r = v.params.value("GF_MAX_HOR_DIST");
    let d = (p.xy() - circle_centre).norm();
    if r > 0.0 && d > r {
        return Some(("Circle", format!("{d:.0} m from home > {r} m")));
    }
    v.fence
        .breach(&v.frame, p.xy())
        .map(|what| ("Polygon", what))
}

/// PX4 flies RTL only to rally points in frame 0 (`GLOBAL`, altitude
/// AMSL); others make it say [`RTL_UNSUPPORTED_FRAME`].
pub fn rally_supported(item: &MissionItem) -> bool {
    item.frame == frame::GLOBAL
}

pub const RTL_UNSUPPORTED_FRAME: &str = "RTL: unsupported MAV_FRAME";

/// RTL_TYPE 0's destination: the nearest of home and the usable rally
/// points (no distance limit). `rally` are all the points on board;
/// [`RtlTarget::Rally`] indexes into it.
pub fn rtl_destination(current: LatLon, home: LatLon, rally: &[MissionItem]) -> RtlTarget {
    let usable: Vec<(usize, LatLon)> = rally
        .iter()
        .enumerate()
        .filter(|(_, it)| rally_supported(it))
        .map(|(i, it)| (i, LatLon::new(it.lat_deg(), it.lon_deg())))
        .collect();
    let lls: Vec<LatLon> = usable.iter().map(|(_, ll)| *ll).collect();
    match rtl_target(current, home, &lls, 0.0, true) {
        RtlTarget::Home => RtlTarget::Home,
        RtlTarget::Rally(i) => RtlTarget::Rally(usable[i].0),
    }
}

/// An arming refusal before readiness (with `COMMAND_ACK`
/// TEMPORARILY_REJECTED).
pub const ARMING_DENIED: &str = "Arming denied: Resolve system health failures first";
/// PX4's words when an arming command is accepted.
pub const ARMED: &str = "Armed by external command";

/// A STATUSTEXT as PX4 sends it: with a trailing TAB.
pub fn statustext(text: &str) -> String {
    format!("{text}\t")
}

/// A command as PX4 answers it where that differs from ArduCopter;
/// `None`: as ArduCopter. `NAV_TAKEOFF`'s altitude is AMSL (NaN:
/// `MIS_TAKEOFF_ALT`); AUTO.TAKEOFF climbs to `MIS_TAKEOFF_ALT`.
pub fn command(v: &mut Vehicle, c: MavCmd, p: [f32; 7]) -> Option<MavResult> {
    use MavCmd::*;
    use MavResult::*;
    let ok = |r: Result<(), crate::vehicle::Refused>| {
        if r.is_ok() {
            MAV_RESULT_ACCEPTED
        } else {
            MAV_RESULT_FAILED
        }
    };
    Some(match c {
        // PX4 1.15 implements neither.
        MAV_CMD_DO_PAUSE_CONTINUE | MAV_CMD_DO_FENCE_ENABLE => MAV_RESULT_UNSUPPORTED,
        MAV_CMD_COMPONENT_ARM_DISARM => {
            let force = (p[1] - 21196.0).abs() < 0.5;
            if p[0] > 0.5 {
                let unready = !v.armed && !force && v.prearm_failure().is_some();
                match v.arm(force) {
                    Ok(()) => MAV_RESULT_ACCEPTED,
                    Err(_) if unready => MAV_RESULT_TEMPORARILY_REJECTED,
                    Err(_) => MAV_RESULT_DENIED,
                }
            } else {
                ok(v.disarm(force))
            }
        }
        MAV_CMD_DO_SET_MODE => {
            let (main, sub) = (p[1] as u8, p[2] as u8);
            match mode_from(main, sub) {
                Some(m) if (p[0] as u32) & 1 == 1 => {
                    if (main, sub) == (main_mode::AUTO, auto_sub::TAKEOFF) {
                        let alt = v.params.value("MIS_TAKEOFF_ALT");
                        ok(takeoff(v, alt))
                    } else {
                        ok(v.set_mode(m))
                    }
                }
                _ => MAV_RESULT_DENIED,
            }
        }
        MAV_CMD_NAV_TAKEOFF => {
            let alt = if p[6].is_finite() {
                p[6] as f64 - v.home.alt_m
            } else {
                v.params.value("MIS_TAKEOFF_ALT")
            };
            ok(takeoff(v, alt))
        }
        _ => return None,
    })
}

/// AUTO.TAKEOFF: from the ground, armed, to `alt_rel` above home.
fn takeoff(v: &mut Vehicle, alt_rel: f64) -> Result<(), crate::vehicle::Refused> {
    if !v.armed || !v.landed {
        return Err(crate::vehicle::Refused(
            "Takeoff: not armed on the ground".into(),
        ));
    }
    if v.mode != Mode::Guided {
        v.set_mode(Mode::Guided)?;
    }
    v.takeoff(alt_rel)
}

/// The once-a-second things PX4 repeats.
#[derive(Debug, Clone, Default)]
pub struct Timers {
    /// The last `MISSION_ITEM_REACHED` (wire seq), repeated.
    pub last_reached: Option<u16>,
    next_reached: f64,
    next_rally_warning: f64,
}

/// What [`Timers::due`] says to send now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Due {
    /// Repeat `MISSION_ITEM_REACHED` with this seq.
    pub reached: Option<u16>,
    /// Say [`RTL_UNSUPPORTED_FRAME`].
    pub rally_warning: bool,
}

/// The repeat period of [`Timers`].
pub const REPEAT_S: f64 = 1.0;

impl Timers {
    /// An item was reached at `now` (sent now; repeated from `now` + 1 s).
    pub fn reached(&mut self, seq: u16, now: f64) {
        self.last_reached = Some(seq);
        self.next_reached = now + REPEAT_S;
    }

    /// A new mission: nothing reached yet.
    pub fn mission_changed(&mut self) {
        self.last_reached = None;
    }

    /// What is due at `now`; `bad_rally`: rally points PX4 cannot use are
    /// on board.
    pub fn due(&mut self, now: f64, bad_rally: bool) -> Due {
        let mut d = Due::default();
        if let Some(seq) = self.last_reached {
            if now + 1e-9 >= self.next_reached {
                self.next_reached = now + REPEAT_S;
                d.reached = Some(seq);
            }
        }
        if bad_rally {
            if now + 1e-9 >= self.next_rally_warning {
                self.next_rally_warning = now + REPEAT_S;
                d.rally_warning = true;
            }
        } else {
            self.next_rally_warning = 0.0;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::Fence;
    use crate::vehicle::Airframe;

    const HOME: LatLonAlt = LatLonAlt::new(28.45, 117.94, 70.0);

    #[test]
    fn mode_numbers_round_trip_as_px4_encodes_them() {
        assert_eq!(custom_mode(Mode::Loiter, false), (4 << 16) | (3 << 24));
        assert_eq!(custom_mode(Mode::Auto, false), (4 << 16) | (4 << 24));
        assert_eq!(custom_mode(Mode::Rtl, false), (4 << 16) | (5 << 24));
        assert_eq!(custom_mode(Mode::Land, false), (4 << 16) | (6 << 24));
        assert_eq!(custom_mode(Mode::Guided, true), (4 << 16) | (2 << 24));
        assert_eq!(custom_mode(Mode::Guided, false), (4 << 16) | (3 << 24));
        for m in [Mode::Loiter, Mode::Auto, Mode::Rtl, Mode::Land] {
            assert_eq!(mode_from_custom(custom_mode(m, false)), Some(m));
        }
        assert_eq!(mode_from(4, 2), Some(Mode::Guided));
        assert_eq!(mode_from(4, 0), None);
        assert_eq!(mode_from(9, 0), None);
    }

    #[test]
    fn readback_and_storage_rules() {
        let mut rtl = MissionItem::command(cmd::NAV_RETURN_TO_LAUNCH, [0.0; 4]);
        rtl.frame = frame::MISSION;
        assert_eq!(readback_item(MissionType::Mission, &rtl), rtl);
        let f = MissionItem::nav(cmd::NAV_FENCE_CIRCLE_EXCLUSION, 28.4, 117.9, 0.0);
        assert!(!readback_item(MissionType::Fence, &f).autocontinue);
        let mut r = MissionItem::nav(cmd::NAV_RALLY_POINT, 28.4, 117.9, 50.0);
        assert!(readback_item(MissionType::Rally, &r).autocontinue);
        r.frame = frame::GLOBAL_RELATIVE_ALT;
        assert_eq!(
            stored_item(MissionType::Rally, &r).frame,
            frame::GLOBAL_RELATIVE_ALT_INT
        );
        r.frame = frame::GLOBAL;
        assert_eq!(stored_item(MissionType::Rally, &r).frame, frame::GLOBAL);
        let mut wp = MissionItem::nav(cmd::NAV_WAYPOINT, 28.4, 117.9, 20.0);
        wp.frame = frame::GLOBAL_RELATIVE_ALT;
        assert_eq!(stored_item(MissionType::Mission, &wp), wp);
    }

    #[test]
    fn the_vehicles_copy_has_home_in_front_and_jumps_follow() {
        let wp = MissionItem::nav(cmd::NAV_WAYPOINT, 28.451, 117.94, 20.0);
        let jump = MissionItem::command(cmd::DO_JUMP, [0.0, 2.0, 0.0, 0.0]);
        let v = vehicle_mission(HOME, &[wp, jump]);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], home_item(HOME));
        assert_eq!(v[1], wp);
        assert_eq!(v[2].param1, 1.0);
        assert_eq!(wire_seq(vehicle_seq(0)), 0);
        assert_eq!(wire_seq(0), 0);
    }

    #[test]
    fn parameters_are_px4s_with_int32_bytewise() {
        let p = params(6, &Airframe::default());
        for (name, value, ty) in [
            ("GF_ACTION", 2.0, ParamType::MAV_PARAM_TYPE_INT32),
            ("GF_MAX_HOR_DIST", 0.0, ParamType::MAV_PARAM_TYPE_REAL32),
            ("GF_MAX_VER_DIST", 0.0, ParamType::MAV_PARAM_TYPE_REAL32),
            ("RTL_TYPE", 0.0, ParamType::MAV_PARAM_TYPE_INT32),
            ("RTL_RETURN_ALT", 30.0, ParamType::MAV_PARAM_TYPE_REAL32),
            ("COM_DISARM_PRFLT", 10.0, ParamType::MAV_PARAM_TYPE_REAL32),
            ("NAV_ACC_RAD", 2.0, ParamType::MAV_PARAM_TYPE_REAL32),
            ("MIS_TAKEOFF_ALT", 2.5, ParamType::MAV_PARAM_TYPE_REAL32),
            ("MAV_SYS_ID", 6.0, ParamType::MAV_PARAM_TYPE_INT32),
        ] {
            let q = p.param(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!((q.value, q.ty), (value as f32, ty), "{name}");
        }
        assert_eq!(p.get("FENCE_ENABLE"), None);
        assert_eq!(p.encoding(), ParamEncoding::Bytewise);
    }

    #[test]
    fn geofence_actions_and_limits() {
        assert_eq!(fence_action(0.0), None);
        assert_eq!(fence_action(1.0), None);
        assert_eq!(fence_action(2.0), Some(Mode::Loiter));
        assert_eq!(fence_action(3.0), Some(Mode::Rtl));
        assert_eq!(fence_action(5.0), Some(Mode::Land));
        let mut v = Vehicle::new(HOME, Airframe::default(), 100.0);
        configure_vehicle(&mut v, 1);
        assert!(v.fence_enabled, "GF_ACTION 2: enforced without enabling");
        let far = Vector3::new(500.0, 0.0, -20.0);
        assert_eq!(fence_breach_at(&v, far, Vector2::zeros()), None);
        v.params.set("GF_MAX_HOR_DIST", 300.0);
        assert_eq!(
            fence_breach_at(&v, far, Vector2::zeros()).unwrap().0,
            "Circle"
        );
        v.params.set("GF_MAX_HOR_DIST", 0.0);
        v.params.set("GF_MAX_VER_DIST", 15.0);
        assert_eq!(
            fence_breach_at(&v, far, Vector2::zeros()).unwrap().0,
            "Max Alt"
        );
        v.params.set("GF_MAX_VER_DIST", 0.0);
        let c = MissionItem {
            param1: 100.0,
            ..MissionItem::nav(cmd::NAV_FENCE_CIRCLE_INCLUSION, 28.45, 117.94, 0.0)
        };
        v.fence = Fence::from_items(&[c]).unwrap();
        assert_eq!(
            fence_breach_at(&v, far, Vector2::zeros()).unwrap().0,
            "Polygon"
        );
        v.params.set("GF_ACTION", 1.0);
        assert!(!fence_enforced(&v.params));
    }

    #[test]
    fn rtl_goes_to_the_nearest_frame_0_rally_point_or_home() {
        let home = HOME.horizontal();
        let at = |n: f64| tiancha_geometry::geodesy::LocalFrame::at(home).from_en(0.0, n);
        let point = |n: f64, f: u8| {
            let ll = at(n);
            let mut it = MissionItem::nav(cmd::NAV_RALLY_POINT, ll.lat_deg, ll.lon_deg, 120.0);
            it.frame = f;
            it
        };
        let rally = [
            point(400.0, frame::GLOBAL_RELATIVE_ALT_INT),
            point(300.0, 0),
        ];
        // No distance limit (ArduPilot's RALLY_LIMIT_KM is 0.3 km).
        assert_eq!(
            rtl_destination(at(800.0), home, &rally),
            RtlTarget::Rally(1)
        );
        assert_eq!(rtl_destination(at(100.0), home, &rally), RtlTarget::Home);
        assert!(!rally_supported(&rally[0]) && rally_supported(&rally[1]));
        assert_eq!(
            rtl_destination(at(800.0), home, &rally[..1]),
            RtlTarget::Home
        );
    }

    #[test]
    fn timers_repeat_the_last_item_and_the_rally_warning_once_a_second() {
        let mut t = Timers::default();
        assert_eq!(t.due(0.0, false), Due::default());
        t.reached(3, 10.0);
        assert_eq!(t.due(10.5, false).reached, None);
        assert_eq!(t.due(11.0, false).reached, Some(3));
        assert_eq!(t.due(11.5, false).reached, None);
        assert_eq!(t.due(12.0, false).reached, Some(3));
        t.mission_changed();
        assert_eq!(t.due(20.0, false).reached, None);
        assert!(t.due(20.0, true).rally_warning);
        assert!(!t.due(20.5, true).rally_warning);
        assert!(t.due(21.0, true).rally_warning);
        assert!(!t.due(22.0, false).rally_warning);
        assert_eq!(statustext("Landed"), "Landed\t");
    }
}
