//! The simulated multicopter: point-mass kinematics with speed and
//! acceleration limits, ArduCopter's flight modes and their behaviour,
//! arming checks, mission execution, geofence, rally points, battery and
//! gimbal. Pure: stepped with a time delta, no I/O, no clock.
//!
//! Behaviour that ArduCopter ties to parameters reads them from
//! [`Vehicle::params`] (see [`Params::arducopter`]):
//!
//! - **Geofence** as `AC_Fence`: enforced only while enabled
//!   ([`Vehicle::fence_enabled`]: `FENCE_ENABLE` = 1 by `PARAM_SET`, or
//!   `MAV_CMD_DO_FENCE_ENABLE`, which enables it without changing the
//!   parameter, as this firmware does). `FENCE_TYPE` selects what is
//!   checked: 1 = `FENCE_ALT_MAX` above home, 2 = a circle of
//!   `FENCE_RADIUS` around home, 4 = the uploaded polygons and circles.
//!   A breach is reported ("Fence Breach: …") and acted on by
//!   `FENCE_ACTION` (0 report only, 2 and 5 land, 4 brake, otherwise RTL);
//!   arming while breaching an enabled fence is refused.
//! - **RTL** climbs to at least `RTL_ALT`, flies to home or the rally point
//!   [`rtl_target`] chooses (`RALLY_LIMIT_KM`, `RALLY_INCL_HOME`) and lands
//!   there.
//! - **Readiness**: arming needs a GPS fix, then the EKF's position
//!   (`Need Position Estimate`), then the battery, then the fence; failures
//!   on an arming attempt are stated as `Arm: …` ([`Vehicle::prearm_failure`]
//!   is the check itself; the autopilot repeats it as `PreArm: …`).
//! - `WPNAV_SPEED` is the waypoint speed (a `DO_CHANGE_SPEED` overrides it
//!   until the next change), `DISARM_DELAY` the auto-disarm after an
//!   arming without takeoff (0: never).
//!
//! With [`Vehicle::flavour`] PX4 the rules of [`crate::px4`] replace these
//! where the two differ (its parameters, geofence, RTL target, arming in
//! AUTO.MISSION, every item reported reached).

use std::collections::{HashMap, VecDeque};

use nalgebra::{UnitQuaternion, Vector2, Vector3};
use tiancha_geometry::geodesy::{LatLon, LatLonAlt, LocalFrame};
use tiancha_protocol::mission::{cmd, frame, MissionItem};

use crate::fence::Fence;
use crate::params::Params;
use crate::px4::{self, Flavour};
use crate::rally::{rtl_target, RtlTarget};

/// ArduCopter flight modes (custom mode numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Stabilize = 0,
    AltHold = 2,
    Auto = 3,
    Guided = 4,
    Loiter = 5,
    Rtl = 6,
    Circle = 7,
    Land = 9,
    PosHold = 16,
    Brake = 17,
}

impl Mode {
    pub fn from_number(n: u32) -> Option<Mode> {
        Some(match n {
            0 => Mode::Stabilize,
            2 => Mode::AltHold,
            3 => Mode::Auto,
            4 => Mode::Guided,
            5 => Mode::Loiter,
            6 => Mode::Rtl,
            7 => Mode::Circle,
            9 => Mode::Land,
            16 => Mode::PosHold,
            17 => Mode::Brake,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Mode::Stabilize => "STABILIZE",
            Mode::AltHold => "ALT_HOLD",
            Mode::Auto => "AUTO",
            Mode::Guided => "GUIDED",
            Mode::Loiter => "LOITER",
            Mode::Rtl => "RTL",
            Mode::Circle => "CIRCLE",
            Mode::Land => "LAND",
            Mode::PosHold => "POSHOLD",
            Mode::Brake => "BRAKE",
        }
    }

    /// ArduCopter refuses to arm in these.
    fn armable(&self) -> bool {
        !matches!(self, Mode::Auto | Mode::Rtl | Mode::Land | Mode::Circle)
    }

    fn needs_position(&self) -> bool {
        matches!(
            self,
            Mode::Auto | Mode::Guided | Mode::Loiter | Mode::Rtl | Mode::Circle | Mode::PosHold
        )
    }
}

/// Flight characteristics (ArduCopter parameter defaults, SI units). Those
/// that are ArduCopter parameters (`WPNAV_SPEED`, `RTL_ALT`,
/// `DISARM_DELAY`, `BATT_CAPACITY`) are the parameters' initial values;
/// at run time the vehicle reads [`Vehicle::params`].
#[derive(Debug, Clone)]
pub struct Airframe {
    /// WPNAV_SPEED (ArduCopter's default is 10 m/s; the simulator's 5).
    pub wp_speed_mps: f64,
    pub accel_mps2: f64,
    pub climb_mps: f64,
    pub descent_mps: f64,
    pub land_speed_mps: f64,
    /// WPNAV_RADIUS.
    pub wp_radius_m: f64,
    /// RTL_ALT.
    pub rtl_alt_m: f64,
    pub yaw_rate_dps: f64,
    pub max_tilt_deg: f64,
    /// Battery capacity and currents.
    pub capacity_mah: f64,
    pub hover_current_a: f64,
    pub idle_current_a: f64,
    pub cells: f64,
    /// Low-battery failsafe (RTL) and critical (LAND), percent.
    pub battery_low_pct: f64,
    pub battery_critical_pct: f64,
    /// Disarm this long after arming if not taken off (DISARM_DELAY).
    pub disarm_delay_s: f64,
}

impl Default for Airframe {
    fn default() -> Self {
        Self {
            wp_speed_mps: 5.0,
            accel_mps2: 2.5,
            climb_mps: 2.5,
            descent_mps: 1.5,
            land_speed_mps: 0.5,
            wp_radius_m: 2.0,
            rtl_alt_m: 15.0,
            yaw_rate_dps: 90.0,
            max_tilt_deg: 30.0,
            capacity_mah: 5000.0,
            hover_current_a: 15.0,
            idle_current_a: 1.0,
            cells: 4.0,
            battery_low_pct: 20.0,
            battery_critical_pct: 10.0,
            disarm_delay_s: 10.0,
        }
    }
}

/// Things the vehicle reports (turned into MAVLink by the autopilot).
#[derive(Debug, Clone, PartialEq)]
pub enum VehicleEvent {
    Text { severity: u8, text: String },
    ItemReached(u16),
    CurrentChanged(u16),
    ModeChanged(Mode),
    Armed(bool),
    HomeChanged,
}

/// `FENCE_TYPE` bits.
pub mod fence_type {
    /// `FENCE_ALT_MAX` above home.
    pub const ALT_MAX: u8 = 1;
    /// A circle of `FENCE_RADIUS` around home.
    pub const CIRCLE: u8 = 2;
    /// The uploaded inclusion/exclusion polygons and circles.
    pub const POLYGON: u8 = 4;
}

/// MAV_SEVERITY values used.
pub mod severity {
    pub const CRITICAL: u8 = 2;
    pub const WARNING: u8 = 4;
    pub const NOTICE: u8 = 5;
    pub const INFO: u8 = 6;
}

/// Gimbal state: roll/pitch relative to the horizon, yaw relative to the
/// vehicle (or to north when `yaw_lock`).
#[derive(Debug, Clone, PartialEq)]
pub struct Gimbal {
    pub pitch_deg: f64,
    pub yaw_deg: f64,
    pub target_pitch_deg: f64,
    pub target_yaw_deg: f64,
    pub yaw_lock: bool,
    pub roi: Option<LatLonAlt>,
    pub slew_dps: f64,
}

impl Default for Gimbal {
    fn default() -> Self {
        Self {
            pitch_deg: 0.0,
            yaw_deg: 0.0,
            target_pitch_deg: 0.0,
            target_yaw_deg: 0.0,
            yaw_lock: false,
            roi: None,
            slew_dps: 90.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RtlPhase {
    Climb,
    Return,
    Descend,
}

#[derive(Debug, Clone, PartialEq)]
enum NavState {
    /// Not executing (mission complete or not started).
    Idle,
    /// Flying towards / doing nav item `seq`.
    Item {
        seq: u16,
        arrived_at: Option<f64>,
    },
    Complete,
}

/// Why a request was refused (STATUSTEXT goes out with it).
#[derive(Debug, Clone, PartialEq)]
pub struct Refused(pub String);

/// The vehicle.
#[derive(Debug, Clone)]
pub struct Vehicle {
    pub frame: LocalFrame,
    pub home: LatLonAlt,
    pub af: Airframe,
    /// NED metres from home.
    pub pos: Vector3<f64>,
    pub vel: Vector3<f64>,
    pub accel_cmd: Vector3<f64>,
    pub roll: f64,
    pub pitch: f64,
    pub yaw: f64,
    pub armed: bool,
    pub mode: Mode,
    pub landed: bool,
    pub gimbal: Gimbal,
    pub battery_pct: f64,
    pub current_a: f64,
    pub gps_fix: bool,
    pub ekf_ok: bool,
    pub mission: Vec<MissionItem>,
    /// The uploaded fence (checked when `FENCE_TYPE` has the polygon bit).
    pub fence: Fence,
    /// The fence is enforced (`AC_Fence`'s run-time state): follows
    /// `FENCE_ENABLE` when that parameter changes, and
    /// `MAV_CMD_DO_FENCE_ENABLE` (which leaves the parameter as it was).
    pub fence_enabled: bool,
    /// Rally points on board (`NAV_RALLY_POINT` items).
    pub rally: Vec<MissionItem>,
    /// ArduCopter's parameters (the autopilot serves them on the wire).
    pub params: Params,
    /// ArduCopter's behaviour or PX4's ([`px4::configure_vehicle`]).
    pub flavour: Flavour,
    /// PX4 in AUTO.MISSION from the ground: climbing to this altitude
    /// above home before flying to the first item.
    px4_takeoff: Option<f64>,
    pub speed_mps: f64,
    pub mission_current: u16,
    nav: NavState,
    jump_counts: HashMap<u16, u16>,
    target: Vector3<f64>,
    takeoff_alt: Option<f64>,
    rtl_phase: RtlPhase,
    /// Where RTL lands (NED; z = minus the destination's altitude above home).
    rtl_dest: Vector3<f64>,
    orbit: Option<(Vector2<f64>, f64, f64, f64)>,
    yaw_override: Option<f64>,
    paused: bool,
    armed_at: f64,
    flown_since_arm: bool,
    battery_fs: u8,
    fence_breached: bool,
    t: f64,
    pub events: VecDeque<VehicleEvent>,
}

const G: f64 = 9.80665;

fn wrap_pi(a: f64) -> f64 {
    let mut a = (a + std::f64::consts::PI) % (2.0 * std::f64::consts::PI);
    if a < 0.0 {
        a += 2.0 * std::f64::consts::PI;
    }
    a - std::f64::consts::PI
}

fn wrap_180(a: f64) -> f64 {
    wrap_pi(a.to_radians()).to_degrees()
}

fn is_nav(c: u16) -> bool {
    matches!(
        c,
        cmd::NAV_WAYPOINT
            | cmd::NAV_LOITER_UNLIM
            | cmd::NAV_LOITER_TURNS
            | cmd::NAV_LOITER_TIME
            | cmd::NAV_RETURN_TO_LAUNCH
            | cmd::NAV_LAND
            | cmd::NAV_TAKEOFF
    )
}

impl Vehicle {
    pub fn new(home: LatLonAlt, af: Airframe, battery_pct: f64) -> Self {
        let frame = LocalFrame::new(home);
        let home_item = home_item(home);
        let params = Params::arducopter(1, &af);
        Self {
            frame,
            home,
            speed_mps: af.wp_speed_mps,
            af,
            pos: Vector3::zeros(),
            vel: Vector3::zeros(),
            accel_cmd: Vector3::zeros(),
            roll: 0.0,
            pitch: 0.0,
            yaw: 0.0,
            armed: false,
            mode: Mode::Stabilize,
            landed: true,
            gimbal: Gimbal::default(),
            battery_pct: battery_pct.clamp(0.0, 100.0),
            current_a: 0.0,
            gps_fix: false,
            ekf_ok: false,
            mission: vec![home_item],
            fence: Fence::default(),
            fence_enabled: params.value("FENCE_ENABLE") != 0.0,
            rally: vec![],
            params,
            flavour: Flavour::ArduCopter,
            px4_takeoff: None,
            mission_current: 0,
            nav: NavState::Idle,
            jump_counts: HashMap::new(),
            target: Vector3::zeros(),
            takeoff_alt: None,
            rtl_phase: RtlPhase::Climb,
            rtl_dest: Vector3::zeros(),
            orbit: None,
            yaw_override: None,
            paused: false,
            armed_at: 0.0,
            flown_since_arm: false,
            battery_fs: 0,
            fence_breached: false,
            t: 0.0,
            events: VecDeque::new(),
        }
    }

    fn text(&mut self, severity: u8, text: impl Into<String>) {
        self.events.push_back(VehicleEvent::Text {
            severity,
            text: text.into(),
        });
    }

    /// Current position (WGS84, altitude AMSL).
    pub fn position(&self) -> LatLonAlt {
        let mut p = self.frame.from_ned(self.pos);
        // Altitude above home is exactly -down; keep AMSL consistent with it.
        p.alt_m = self.home.alt_m - self.pos.z;
        p
    }

    pub fn alt_rel(&self) -> f64 {
        -self.pos.z
    }

    pub fn attitude(&self) -> UnitQuaternion<f64> {
        UnitQuaternion::from_euler_angles(self.roll, self.pitch, self.yaw)
    }

    /// The gimbal's FRD axes in NED.
    pub fn gimbal_attitude(&self) -> UnitQuaternion<f64> {
        let yaw = if self.gimbal.yaw_lock {
            self.gimbal.yaw_deg.to_radians()
        } else {
            self.yaw + self.gimbal.yaw_deg.to_radians()
        };
        UnitQuaternion::from_euler_angles(0.0, self.gimbal.pitch_deg.to_radians(), yaw)
    }

    fn ned_of(&self, item: &MissionItem) -> Option<Vector3<f64>> {
        if !item.has_position() {
            return None;
        }
        let (lat, lon) = (item.lat_deg(), item.lon_deg());
        let z = item.z as f64;
        let alt_rel = match item.frame {
            frame::GLOBAL | frame::GLOBAL_INT => z - self.home.alt_m,
            _ => z,
        };
        let mut ned = if item.x == 0 && item.y == 0 {
            // "here" (ArduPilot: 0,0 means current position).
            self.pos
        } else {
            self.frame.to_ned(LatLonAlt::new(lat, lon, self.home.alt_m))
        };
        ned.z = -alt_rel;
        Some(ned)
    }

    /// Set mode, with ArduCopter's checks.
    pub fn set_mode(&mut self, m: Mode) -> Result<(), Refused> {
        if m.needs_position() && !self.ekf_ok {
            let r = format!("Mode change to {} failed: requires position", m.name());
            self.text(severity::WARNING, &r);
            return Err(Refused(r));
        }
        if m == Mode::Auto && self.mission.len() < 2 {
            let r = "Mode change to AUTO failed: no mission".to_string();
            self.text(severity::WARNING, &r);
            return Err(Refused(r));
        }
        self.enter_mode(m);
        Ok(())
    }

    fn enter_mode(&mut self, m: Mode) {
        let changed = m != self.mode;
        self.mode = m;
        self.paused = false;
        self.px4_takeoff = None;
        self.orbit = if m == Mode::Circle { self.orbit } else { None };
        match m {
            Mode::Auto => {
                if !self.flavour.is_px4()
                    && self.landed
                    && self.armed
                    && self
                        .next_nav_from(1)
                        .map(|s| self.mission[s as usize].command)
                        != Some(cmd::NAV_TAKEOFF)
                {
                    // ArduCopter needs a takeoff item to start on the ground;
                    // it just sits there otherwise.
                    self.text(severity::WARNING, "Auto: Missing Takeoff Cmd");
                }
                self.start_mission_from(self.resume_seq());
            }
            Mode::Rtl => self.plan_rtl(),
            Mode::Guided
            | Mode::Loiter
            | Mode::PosHold
            | Mode::Brake
            | Mode::AltHold
            | Mode::Stabilize => {
                self.target = self.pos;
                self.takeoff_alt = None;
            }
            Mode::Land => {
                // ArduCopter lands where it can stop, not at whatever
                // point the previous mode was flying to.
                let stop = self.target_hold();
                self.target = Vector3::new(stop.x, stop.y, self.pos.z);
            }
            Mode::Circle => {}
        }
        if changed {
            self.events.push_back(VehicleEvent::ModeChanged(m));
        }
    }

    fn resume_seq(&self) -> u16 {
        match self.nav {
            NavState::Item { seq, .. } if (seq as usize) < self.mission.len() => seq,
            _ => 1,
        }
    }

    /// The first pre-arm check that fails, in ArduPilot's words without
    /// its prefix (`PreArm: ` when reported periodically, `Arm: ` on an
    /// arming attempt). `None`: ready to arm (as far as pre-arm checks go;
    /// the mode is checked at arming).
    pub fn prearm_failure(&self) -> Option<String> {
        if !self.gps_fix {
            return Some("GPS 1: Bad fix".into());
        }
        if !self.ekf_ok {
            return Some("Need Position Estimate".into());
        }
        if self.battery_pct <= self.af.battery_low_pct {
            return Some("Battery 1 below minimum arming capacity".into());
        }
        if self.fence_enabled {
            // Home moves to where the vehicle arms, so a landed vehicle is
            // at the centre of the circle fence.
            let centre = if self.landed {
                self.pos.xy()
            } else {
                Vector2::zeros()
            };
            if let Some((kind, _)) = self.fence_breach_at(self.pos, centre) {
                return Some(format!("Vehicle breaching {kind} fence"));
            }
        }
        None
    }

    /// Arm with ArduCopter's pre-arm and arming checks (refusals stated
    /// as `Arm: …`, as ArduPilot words them during an arming attempt).
    pub fn arm(&mut self, force: bool) -> Result<(), Refused> {
        if self.armed {
            return Ok(());
        }
        if !force {
            if self.flavour.is_px4() {
                if self.prearm_failure().is_some() {
                    self.text(severity::CRITICAL, px4::ARMING_DENIED);
                    return Err(Refused(px4::ARMING_DENIED.into()));
                }
                let armable = match self.mode {
                    Mode::Auto => self.mission.len() >= 2,
                    m => m.armable(),
                };
                if !armable {
                    let r = "Arming denied: not armable in this mode".to_string();
                    self.text(severity::CRITICAL, &r);
                    return Err(Refused(r));
                }
            } else {
                let fail = self
                    .prearm_failure()
                    .or_else(|| (!self.mode.armable()).then(|| "Mode not armable".to_string()));
                if let Some(f) = fail {
                    let f = format!("Arm: {f}");
                    self.text(severity::CRITICAL, &f);
                    return Err(Refused(f));
                }
            }
        }
        self.armed = true;
        self.armed_at = self.t;
        self.flown_since_arm = false;
        self.battery_fs = 0;
        self.fence_breached = false;
        // ArduPilot sets home where it arms.
        if self.landed && self.pos.xy().norm() > 0.5 {
            self.home = self.position();
            self.frame = LocalFrame::new(self.home);
            self.pos = Vector3::zeros();
            self.mission[0] = home_item(self.home);
            self.events.push_back(VehicleEvent::HomeChanged);
        }
        self.target = self.pos;
        self.events.push_back(VehicleEvent::Armed(true));
        if self.flavour.is_px4() {
            self.text(severity::INFO, px4::ARMED);
            if self.mode == Mode::Auto {
                // PX4 takes off and flies the mission by itself.
                if matches!(self.nav, NavState::Complete) {
                    self.nav = NavState::Idle;
                }
                self.start_mission_from(self.resume_seq());
            }
        } else {
            self.text(severity::INFO, "Arming motors");
        }
        Ok(())
    }

    pub fn disarm(&mut self, force: bool) -> Result<(), Refused> {
        if !self.armed {
            return Ok(());
        }
        if !self.landed && !force {
            let r = "Disarm: not landed".to_string();
            self.text(severity::WARNING, &r);
            return Err(Refused(r));
        }
        self.do_disarm();
        Ok(())
    }

    fn do_disarm(&mut self) {
        self.armed = false;
        self.takeoff_alt = None;
        self.px4_takeoff = None;
        self.events.push_back(VehicleEvent::Armed(false));
        self.text(severity::INFO, "Disarming motors");
    }

    /// NAV_TAKEOFF from GUIDED.
    pub fn takeoff(&mut self, alt_rel: f64) -> Result<(), Refused> {
        if !self.armed {
            return Err(Refused("Takeoff: not armed".into()));
        }
        if self.mode != Mode::Guided {
            return Err(Refused("Takeoff: not in GUIDED".into()));
        }
        if !self.landed {
            return Err(Refused("Takeoff: already flying".into()));
        }
        if !(alt_rel.is_finite() && alt_rel > 0.5) {
            return Err(Refused("Takeoff: bad altitude".into()));
        }
        self.takeoff_alt = Some(alt_rel);
        self.target = Vector3::new(self.pos.x, self.pos.y, -alt_rel);
        self.landed = false;
        self.flown_since_arm = true;
        Ok(())
    }

    /// DO_REPOSITION / guided go-to (relative altitude).
    pub fn goto(&mut self, p: LatLonAlt, alt_rel: f64, speed: Option<f64>) -> Result<(), Refused> {
        if !self.armed || self.landed {
            return Err(Refused("Reposition: not flying".into()));
        }
        if self.mode != Mode::Guided {
            self.set_mode(Mode::Guided)?;
        }
        let mut ned = self
            .frame
            .to_ned(LatLonAlt::new(p.lat_deg, p.lon_deg, self.home.alt_m));
        ned.z = -alt_rel;
        self.target = ned;
        self.takeoff_alt = None;
        if let Some(s) = speed.filter(|s| *s > 0.0) {
            self.speed_mps = s;
        }
        Ok(())
    }

    /// DO_ORBIT: circle a point (CIRCLE mode).
    pub fn orbit(
        &mut self,
        center: LatLonAlt,
        alt_rel: Option<f64>,
        radius: f64,
        speed: f64,
    ) -> Result<(), Refused> {
        if !self.armed || self.landed {
            return Err(Refused("Orbit: not flying".into()));
        }
        let c = self.frame.to_ned(LatLonAlt::new(
            center.lat_deg,
            center.lon_deg,
            self.home.alt_m,
        ));
        let c2 = Vector2::new(c.x, c.y);
        let rel = self.pos.xy() - c2;
        let angle = rel.y.atan2(rel.x);
        let alt = alt_rel.unwrap_or(self.alt_rel());
        let speed = if speed > 0.0 {
            speed
        } else {
            self.wpnav_speed_mps()
        };
        self.orbit = Some((c2, radius, speed, angle));
        self.target.z = -alt;
        if self.mode != Mode::Circle {
            self.mode = Mode::Circle;
            self.events
                .push_back(VehicleEvent::ModeChanged(Mode::Circle));
        }
        Ok(())
    }

    pub fn set_speed(&mut self, s: f64) -> Result<(), Refused> {
        if !(s.is_finite() && s > 0.0 && s <= 30.0) {
            return Err(Refused(format!("Bad speed {s}")));
        }
        self.speed_mps = s;
        Ok(())
    }

    pub fn pause(&mut self, pause: bool) -> Result<(), Refused> {
        if self.mode != Mode::Auto && self.mode != Mode::Guided {
            return Err(Refused("Pause: only in AUTO or GUIDED".into()));
        }
        if pause && !self.paused {
            self.paused = true;
            self.text(severity::INFO, "Paused mission");
        } else if !pause && self.paused {
            self.paused = false;
            self.text(severity::INFO, "Resumed mission");
        }
        Ok(())
    }

    /// MISSION_START / MAV_CMD_MISSION_START.
    pub fn start_mission(&mut self) -> Result<(), Refused> {
        if !self.armed {
            return Err(Refused("Mission start: not armed".into()));
        }
        if self.mission.len() < 2 {
            return Err(Refused("Mission start: no mission".into()));
        }
        if matches!(self.nav, NavState::Complete) {
            self.nav = NavState::Idle;
        }
        self.set_mode(Mode::Auto)
    }

    pub fn set_current(&mut self, seq: u16) -> Result<(), Refused> {
        if seq == 0 || seq as usize >= self.mission.len() {
            let r = format!("Mission: cannot set current to {seq}");
            self.text(severity::WARNING, &r);
            return Err(Refused(r));
        }
        self.jump_counts.clear();
        if self.mode == Mode::Auto {
            self.start_mission_from(seq);
        } else {
            self.nav = NavState::Item {
                seq,
                arrived_at: None,
            };
            self.mission_current = seq;
            self.events.push_back(VehicleEvent::CurrentChanged(seq));
        }
        Ok(())
    }

    /// Replace the mission (item 0 stays home).
    pub fn mission_changed(&mut self) {
        self.mission[0] = home_item(self.home);
        self.jump_counts.clear();
        if let NavState::Item { seq, .. } = self.nav {
            if seq as usize >= self.mission.len() {
                self.nav = NavState::Idle;
            }
        }
    }

    fn next_nav_from(&self, mut seq: u16) -> Option<u16> {
        let mut guard = 0;
        while (seq as usize) < self.mission.len() && guard < 10_000 {
            guard += 1;
            let it = &self.mission[seq as usize];
            if is_nav(it.command) {
                return Some(seq);
            }
            if it.command == cmd::DO_JUMP {
                // Jumps are resolved when executed; for lookahead follow them.
                let target = it.param1 as u16;
                if target >= 1 && (target as usize) < self.mission.len() && target != seq {
                    seq = target;
                    continue;
                }
            }
            seq += 1;
        }
        None
    }

    /// Run DO commands from `seq` until a NAV command; make it current.
    fn start_mission_from(&mut self, mut seq: u16) {
        let mut guard = 0;
        loop {
            guard += 1;
            if guard > 10_000 || seq as usize >= self.mission.len() {
                self.nav = NavState::Complete;
                self.text(severity::INFO, "Mission complete");
                self.target = self.pos;
                return;
            }
            let it = self.mission[seq as usize];
            if is_nav(it.command) {
                self.nav = NavState::Item {
                    seq,
                    arrived_at: None,
                };
                if self.mission_current != seq {
                    self.mission_current = seq;
                    self.events.push_back(VehicleEvent::CurrentChanged(seq));
                }
                self.begin_nav(seq);
                return;
            }
            if it.command == cmd::DO_JUMP {
                let target = it.param1 as u16;
                let repeat = it.param2 as i32;
                let done = self.jump_counts.entry(seq).or_insert(0);
                if target >= 1
                    && (target as usize) < self.mission.len()
                    && (repeat < 0 || (*done as i32) < repeat)
                {
                    *done += 1;
                    seq = target;
                    continue;
                }
                seq += 1;
                continue;
            }
            self.do_command(&it);
            if self.flavour.is_px4() {
                // PX4 reports every item reached, not only NAV ones.
                self.events.push_back(VehicleEvent::ItemReached(seq));
            }
            seq += 1;
        }
    }

    fn do_command(&mut self, it: &MissionItem) {
        match it.command {
            cmd::DO_CHANGE_SPEED if it.param2 > 0.0 => self.speed_mps = it.param2 as f64,
            cmd::DO_SET_ROI_LOCATION => {
                let alt = match it.frame {
                    frame::GLOBAL | frame::GLOBAL_INT => it.z as f64,
                    _ => self.home.alt_m + it.z as f64,
                };
                self.gimbal.roi = Some(LatLonAlt::new(it.lat_deg(), it.lon_deg(), alt));
            }
            cmd::DO_SET_ROI_NONE => self.gimbal.roi = None,
            cmd::DO_MOUNT_CONTROL => {
                self.gimbal.roi = None;
                self.gimbal.target_pitch_deg = it.param1 as f64;
                self.gimbal.target_yaw_deg = it.param3 as f64;
            }
            cmd::DO_GIMBAL_MANAGER_PITCHYAW => {
                self.gimbal.roi = None;
                self.gimbal.target_pitch_deg = it.param1 as f64;
                self.gimbal.target_yaw_deg = it.param2 as f64;
                self.gimbal.yaw_lock = (it.param5_flags() & 16) != 0;
            }
            cmd::CONDITION_YAW => {
                let relative = it.param4 != 0.0;
                let a = it.param1 as f64;
                let y = if relative {
                    self.yaw.to_degrees() + a * if it.param3 < 0.0 { -1.0 } else { 1.0 }
                } else {
                    a
                };
                self.yaw_override = Some(wrap_pi(y.to_radians()));
            }
            _ => {}
        }
    }

    fn begin_nav(&mut self, seq: u16) {
        let it = self.mission[seq as usize];
        match it.command {
            cmd::NAV_TAKEOFF => {
                let alt = it.z as f64;
                self.target = Vector3::new(self.pos.x, self.pos.y, -alt.max(1.0));
                if self.landed && self.armed {
                    self.landed = false;
                    self.flown_since_arm = true;
                }
            }
            cmd::NAV_RETURN_TO_LAUNCH => self.plan_rtl(),
            cmd::NAV_LAND => {
                if let Some(mut t) = self.ned_of(&it) {
                    t.z = self.pos.z;
                    self.target = t;
                } else {
                    self.target = self.pos;
                }
            }
            _ => {
                if let Some(t) = self.ned_of(&it) {
                    self.target = t;
                    if self.flavour.is_px4() && self.landed && self.armed {
                        // PX4 climbs to the item's altitude first.
                        self.px4_takeoff = Some(-t.z);
                        self.landed = false;
                        self.flown_since_arm = true;
                    }
                }
            }
        }
    }

    fn advance(&mut self, seq: u16) {
        self.events.push_back(VehicleEvent::ItemReached(seq));
        self.text(severity::INFO, format!("Reached command #{seq}"));
        self.start_mission_from(seq + 1);
    }

    /// `WPNAV_SPEED` in m/s (PX4: `MPC_XY_CRUISE`).
    pub fn wpnav_speed_mps(&self) -> f64 {
        match self.flavour {
            Flavour::ArduCopter => self.params.value("WPNAV_SPEED") / 100.0,
            Flavour::Px4 => self.params.value("MPC_XY_CRUISE"),
        }
    }

    /// `RTL_ALT` in m (PX4: `RTL_RETURN_ALT`).
    pub fn rtl_alt_m(&self) -> f64 {
        match self.flavour {
            Flavour::ArduCopter => self.params.value("RTL_ALT") / 100.0,
            Flavour::Px4 => self.params.value("RTL_RETURN_ALT"),
        }
    }

    /// `DISARM_DELAY` in s (PX4: `COM_DISARM_PRFLT`).
    pub fn disarm_delay_s(&self) -> f64 {
        match self.flavour {
            Flavour::ArduCopter => self.params.value("DISARM_DELAY"),
            Flavour::Px4 => self.params.value("COM_DISARM_PRFLT"),
        }
    }

    /// The waypoint acceptance radius (PX4: `NAV_ACC_RAD`).
    pub fn wp_radius_m(&self) -> f64 {
        match self.flavour {
            Flavour::ArduCopter => self.af.wp_radius_m,
            Flavour::Px4 => self.params.value("NAV_ACC_RAD"),
        }
    }

    /// The vehicle is climbing in a takeoff (reported as PX4's
    /// AUTO.TAKEOFF).
    pub fn taking_off(&self) -> bool {
        !self.landed
            && self.mode == Mode::Guided
            && self.takeoff_alt.is_some_and(|a| self.alt_rel() < a - 0.5)
    }

    /// Act on a parameter that changed (after a `PARAM_SET`).
    pub fn param_changed(&mut self, name: &str) {
        match name {
            "FENCE_ENABLE" => self.set_fence_enabled(self.params.value("FENCE_ENABLE") != 0.0),
            "GF_ACTION" => self.set_fence_enabled(px4::fence_enforced(&self.params)),
            "WPNAV_SPEED" | "MPC_XY_CRUISE" => {
                let s = self.wpnav_speed_mps();
                if s > 0.0 {
                    self.speed_mps = s;
                }
            }
            _ => {}
        }
    }

    /// Enable or disable the fence at run time (`FENCE_ENABLE` changing,
    /// `MAV_CMD_DO_FENCE_ENABLE`).
    pub fn set_fence_enabled(&mut self, on: bool) {
        self.fence_enabled = on;
        if !on {
            self.fence_breached = false;
        }
    }

    /// Which fence the NED point `p` breaches, of those `FENCE_TYPE`
    /// selects, whether or not the fence is enabled: the kind (`Max Alt`,
    /// `Circle`, `Polygon`) and a description. `circle_centre` is home's
    /// position (NED north, east).
    pub fn fence_breach_at(
        &self,
        p: Vector3<f64>,
        circle_centre: Vector2<f64>,
    ) -> Option<(&'static str, String)> {
        if self.flavour.is_px4() {
            return px4::fence_breach_at(self, p, circle_centre);
        }
        let types = self.params.value("FENCE_TYPE") as i64 as u8;
        if types & fence_type::ALT_MAX != 0 {
            let max = self.params.value("FENCE_ALT_MAX");
            if -p.z > max {
                return Some(("Max Alt", format!("altitude {:.1} m > {max} m", -p.z)));
            }
        }
        if types & fence_type::CIRCLE != 0 {
            let r = self.params.value("FENCE_RADIUS");
            let d = (p.xy() - circle_centre).norm();
            if d > r {
                return Some(("Circle", format!("{d:.0} m from home > {r} m")));
            }
        }
        if types & fence_type::POLYGON != 0 {
            if let Some(what) = self.fence.breach(&self.frame, p.xy()) {
                return Some(("Polygon", what));
            }
        }
        None
    }

    /// A breach of the fences `FENCE_TYPE` selects at the current position
    /// (whether or not the fence is enabled), described.
    pub fn fence_breach(&self) -> Option<String> {
        self.fence_breach_at(self.pos, Vector2::zeros())
            .map(|(kind, what)| format!("{kind} ({what})"))
    }

    /// Choose RTL's destination now (on entering RTL, as ArduCopter does).
    fn plan_rtl(&mut self) {
        self.rtl_phase = RtlPhase::Climb;
        let points: Vec<(LatLon, Vector3<f64>)> = self
            .rally
            .iter()
            .filter_map(|it| {
                self.ned_of(it)
                    .map(|ned| (LatLon::new(it.lat_deg(), it.lon_deg()), ned))
            })
            .collect();
        let lls: Vec<LatLon> = points.iter().map(|(ll, _)| *ll).collect();
        let target = match self.flavour {
            Flavour::ArduCopter => rtl_target(
                self.position().horizontal(),
                self.home.horizontal(),
                &lls,
                self.params.value("RALLY_LIMIT_KM"),
                self.params.value("RALLY_INCL_HOME") != 0.0,
            ),
            Flavour::Px4 => px4::rtl_destination(
                self.position().horizontal(),
                self.home.horizontal(),
                &self.rally,
            ),
        };
        self.rtl_dest = match target {
            RtlTarget::Home => Vector3::zeros(),
            RtlTarget::Rally(i) => {
                let mut d = points[i].1;
                d.z = d.z.min(0.0);
                d
            }
        };
    }

    /// A fence breach is in progress (until back inside).
    pub fn fence_breached(&self) -> bool {
        self.fence_breached
    }

    /// Where RTL is taking the vehicle (NED from home; z = minus the
    /// destination's altitude above home, 0 for home).
    pub fn rtl_destination(&self) -> Vector3<f64> {
        self.rtl_dest
    }

    /// Advance the simulation by `dt` seconds.
    pub fn step(&mut self, dt: f64) {
        self.t += dt;
        // Battery.
        self.current_a = if !self.armed {
            0.3
        } else if self.landed {
            self.af.idle_current_a
        } else {
            self.af.hover_current_a * (1.0 + 0.02 * self.vel.norm())
        };
        self.battery_pct = (self.battery_pct
            - self.current_a * dt / (self.af.capacity_mah * 3.6) * 100.0)
            .max(0.0);
        if self.armed && !self.landed {
            if self.battery_fs < 2 && self.battery_pct <= self.af.battery_critical_pct {
                self.battery_fs = 2;
                self.text(severity::CRITICAL, "Battery 1 is critical! Landing");
                self.enter_mode(Mode::Land);
            } else if self.battery_fs < 1 && self.battery_pct <= self.af.battery_low_pct {
                self.battery_fs = 1;
                self.text(severity::CRITICAL, "Battery 1 is low! Returning to launch");
                if self.mode != Mode::Land {
                    self.enter_mode(Mode::Rtl);
                }
            }
            // Geofence (only while enabled).
            if self.fence_enabled && !self.fence_breached {
                if let Some(what) = self.fence_breach() {
                    self.fence_breached = true;
                    if self.flavour.is_px4() {
                        self.text(severity::CRITICAL, px4::GEOFENCE_VIOLATION);
                    } else {
                        self.text(severity::CRITICAL, format!("Fence Breach: {what}"));
                    }
                    self.fence_action();
                }
            } else if self.fence_breached && self.fence_breach().is_none() {
                self.fence_breached = false;
            }
        }
        if !self.armed {
            self.vel = Vector3::zeros();
            self.accel_cmd = Vector3::zeros();
            self.roll = 0.0;
            self.pitch = 0.0;
            self.step_gimbal(dt);
            return;
        }
        let disarm_delay = self.disarm_delay_s();
        if self.landed
            && !self.flown_since_arm
            && disarm_delay > 0.0
            && self.t - self.armed_at > disarm_delay
        {
            self.text(severity::INFO, "Disarming: no takeoff");
            self.do_disarm();
            return;
        }
        let (target, landing) = self.guidance(dt);
        self.move_towards(target, landing, dt);
        self.step_yaw(dt);
        self.step_gimbal(dt);
        self.after_move();
    }

    /// Where to go now, and whether to descend to the ground.
    fn guidance(&mut self, dt: f64) -> (Vector3<f64>, bool) {
        if self.landed {
            return (self.pos, false);
        }
        if self.paused {
            return (self.target_hold(), false);
        }
        match self.mode {
            Mode::Land => (Vector3::new(self.target.x, self.target.y, 1.0), true),
            Mode::Rtl => self.rtl_guidance(),
            Mode::Circle => {
                if let Some((c, r, speed, angle)) = self.orbit {
                    let w = speed / r.abs().max(1.0) * r.signum();
                    let a = angle + w * dt;
                    self.orbit = Some((c, r, speed, a));
                    let p = c + Vector2::new(a.cos(), a.sin()) * r.abs();
                    (Vector3::new(p.x, p.y, self.target.z), false)
                } else {
                    (self.target, false)
                }
            }
            Mode::Auto => self.auto_guidance(),
            _ => (self.target, false),
        }
    }

    fn target_hold(&mut self) -> Vector3<f64> {
        // Brake to a stop where we are: the stopping point of the
        // horizontal and the vertical motion, each from its own speed (a
        // stopping distance from the total speed made a vehicle paused
        // while climbing at cruise speed climb away).
        let a = self.af.accel_mps2;
        let vxy = self.vel.xy();
        let sxy = vxy * (vxy.norm() / (2.0 * a)).min(3.0);
        let sz = self.vel.z * (self.vel.z.abs() / (2.0 * a)).min(3.0);
        self.pos + Vector3::new(sxy.x, sxy.y, sz)
    }

    /// What `FENCE_ACTION` does on a breach: 0 report only; 2 (always
    /// land) and 5 (SmartRTL or land: no SmartRTL here) land; 4 brakes;
    /// 1 (RTL or land), 3 (SmartRTL or RTL) and anything else RTL.
    fn fence_action(&mut self) {
        if self.flavour.is_px4() {
            let Some(m) = px4::fence_action(self.params.value("GF_ACTION")) else {
                return;
            };
            if matches!(self.mode, Mode::Land | Mode::Rtl) || self.mode == m {
                return;
            }
            self.text(severity::CRITICAL, "Failsafe activated");
            self.enter_mode(m);
            if m == Mode::Loiter {
                // Hold: stop where it can.
                self.target = self.target_hold();
            }
            return;
        }
        let action = self.params.value("FENCE_ACTION") as i64;
        match action {
            0 => {}
            2 | 5 => {
                if self.mode != Mode::Land {
                    self.enter_mode(Mode::Land);
                }
            }
            4 => {
                if !matches!(self.mode, Mode::Land | Mode::Rtl | Mode::Brake) {
                    self.enter_mode(Mode::Brake);
                    let stop = self.target_hold();
                    self.target = stop;
                }
            }
            _ => {
                if self.mode != Mode::Land && self.mode != Mode::Rtl {
                    self.enter_mode(Mode::Rtl);
                }
            }
        }
    }

    fn rtl_guidance(&mut self) -> (Vector3<f64>, bool) {
        let dest = self.rtl_dest;
        let rtl_alt = self.rtl_alt_m().max(-dest.z);
        let cruise = rtl_alt.max(self.alt_rel());
        let to_dest = (self.pos.xy() - dest.xy()).norm();
        match self.rtl_phase {
            RtlPhase::Climb => {
                if self.alt_rel() >= rtl_alt - 0.5 || to_dest < self.wp_radius_m() {
                    self.rtl_phase = RtlPhase::Return;
                }
                (Vector3::new(self.pos.x, self.pos.y, -cruise), false)
            }
            RtlPhase::Return => {
                if to_dest < 0.3 && self.vel.xy().norm() < 0.3 {
                    self.rtl_phase = RtlPhase::Descend;
                }
                (Vector3::new(dest.x, dest.y, -cruise), false)
            }
            RtlPhase::Descend => (Vector3::new(dest.x, dest.y, 1.0), true),
        }
    }

    fn auto_guidance(&mut self) -> (Vector3<f64>, bool) {
        let NavState::Item { seq, arrived_at } = self.nav.clone() else {
            return (self.target, false);
        };
        if let Some(alt) = self.px4_takeoff {
            if (self.alt_rel() - alt).abs() < 0.5 {
                self.px4_takeoff = None;
            } else {
                return (Vector3::new(self.pos.x, self.pos.y, -alt), false);
            }
        }
        let it = self.mission[seq as usize];
        match it.command {
            cmd::NAV_TAKEOFF => {
                if (self.pos.z - self.target.z).abs() < 0.5 {
                    self.advance(seq);
                }
                (self.target, false)
            }
            cmd::NAV_RETURN_TO_LAUNCH => self.rtl_guidance(),
            cmd::NAV_LAND => {
                let horiz = (self.pos.xy() - self.target.xy()).norm();
                if horiz > 1.0 {
                    (self.target, false)
                } else {
                    (Vector3::new(self.target.x, self.target.y, 1.0), true)
                }
            }
            cmd::NAV_LOITER_UNLIM => (self.target, false),
            _ => {
                let d = (self.pos - self.target).norm();
                let hold_s = match it.command {
                    cmd::NAV_LOITER_TIME => it.param1 as f64,
                    cmd::NAV_LOITER_TURNS => 10.0 * it.param1 as f64,
                    _ => it.param1 as f64, // WAYPOINT: delay
                };
                match arrived_at {
                    None if d < self.wp_radius_m() => {
                        if hold_s <= 0.0 {
                            self.advance(seq);
                        } else {
                            self.nav = NavState::Item {
                                seq,
                                arrived_at: Some(self.t),
                            };
                        }
                    }
                    Some(t) if self.t - t >= hold_s => self.advance(seq),
                    _ => {}
                }
                (self.target, false)
            }
        }
    }

    fn move_towards(&mut self, target: Vector3<f64>, landing: bool, dt: f64) {
        let a_max = self.af.accel_mps2;
        // Horizontal: speed limited, braking distance respected.
        let dxy = Vector2::new(target.x - self.pos.x, target.y - self.pos.y);
        let dist = dxy.norm();
        let speed_cap = if landing {
            self.af.wp_speed_mps.min(2.0)
        } else if let (Mode::Circle, Some((_, _, orbit_speed, _))) = (self.mode, self.orbit) {
            // The orbit's own speed (DO_ORBIT param 2), with a margin to
            // catch up with the moving point on the circle.
            orbit_speed * 1.2
        } else {
            self.speed_mps
        };
        let v_des = if dist > 1e-3 {
            dxy / dist * speed_cap.min((2.0 * a_max * dist).sqrt() * 0.9)
        } else {
            Vector2::zeros()
        };
        let vxy = self.vel.xy();
        let dv = v_des - vxy;
        let dv_max = a_max * dt;
        let dv = if dv.norm() > dv_max {
            dv / dv.norm() * dv_max
        } else {
            dv
        };
        let new_vxy = vxy + dv;
        // Vertical.
        let dz = target.z - self.pos.z; // positive = descend
        let agl = self.alt_rel();
        let vz_des = if landing {
            if agl > 10.0 {
                self.af.descent_mps
            } else {
                self.af
                    .land_speed_mps
                    .max(self.af.descent_mps * agl / 10.0)
                    .min(self.af.descent_mps)
            }
        } else if dz > 0.0 {
            self.af
                .descent_mps
                .min((2.0 * a_max * dz).sqrt() * 0.9)
                .min(dz / dt)
        } else {
            -(self
                .af
                .climb_mps
                .min((2.0 * a_max * -dz).sqrt() * 0.9)
                .min(-dz / dt))
        };
        let dvz = (vz_des - self.vel.z).clamp(-a_max * dt, a_max * dt);
        let new_vz = self.vel.z + dvz;
        self.accel_cmd = Vector3::new(dv.x / dt, dv.y / dt, dvz / dt);
        self.vel = Vector3::new(new_vxy.x, new_vxy.y, new_vz);
        self.pos += self.vel * dt;
        if dist < 0.02 && new_vxy.norm() < 0.05 {
            self.pos.x = target.x;
            self.pos.y = target.y;
            self.vel.x = 0.0;
            self.vel.y = 0.0;
        }
        // Tilt from commanded acceleration plus drag compensation.
        let drag = 0.15;
        let a_h = Vector2::new(
            self.accel_cmd.x + drag * self.vel.x,
            self.accel_cmd.y + drag * self.vel.y,
        );
        let (s, c) = self.yaw.sin_cos();
        let a_fwd = a_h.x * c + a_h.y * s;
        let a_right = -a_h.x * s + a_h.y * c;
        let max_tilt = self.af.max_tilt_deg.to_radians();
        let pitch_t = (-(a_fwd / G).atan()).clamp(-max_tilt, max_tilt);
        let roll_t = (a_right / G).atan().clamp(-max_tilt, max_tilt);
        let k = (dt / 0.2).min(1.0);
        self.pitch += (pitch_t - self.pitch) * k;
        self.roll += (roll_t - self.roll) * k;
    }

    fn step_yaw(&mut self, dt: f64) {
        let desired = if let Some(y) = self.yaw_override {
            Some(y)
        } else if let (Some(roi), false) = (self.gimbal.roi, self.landed) {
            // Point the nose at the region of interest (the gimbal does pitch).
            let r = self
                .frame
                .to_ned(LatLonAlt::new(roi.lat_deg, roi.lon_deg, self.home.alt_m));
            let d = r.xy() - self.pos.xy();
            (d.norm() > 1.0).then(|| d.y.atan2(d.x))
        } else if self.vel.xy().norm() > 1.0 {
            Some(self.vel.y.atan2(self.vel.x))
        } else {
            None
        };
        if let Some(y) = desired {
            let err = wrap_pi(y - self.yaw);
            let max = self.af.yaw_rate_dps.to_radians() * dt;
            self.yaw = wrap_pi(self.yaw + err.clamp(-max, max));
        }
    }

    fn step_gimbal(&mut self, dt: f64) {
        if let Some(roi) = self.gimbal.roi {
            let r = self.frame.to_ned(roi);
            let d = r - self.pos;
            let horiz = d.xy().norm();
            self.gimbal.target_pitch_deg = (-d.z).atan2(horiz).to_degrees();
            let bearing = d.y.atan2(d.x);
            self.gimbal.target_yaw_deg = wrap_pi(bearing - self.yaw).to_degrees();
            self.gimbal.yaw_lock = false;
        }
        let tp = self.gimbal.target_pitch_deg.clamp(-90.0, 30.0);
        let ty = wrap_180(self.gimbal.target_yaw_deg);
        let max = self.gimbal.slew_dps * dt;
        self.gimbal.pitch_deg += (tp - self.gimbal.pitch_deg).clamp(-max, max);
        let ey = wrap_180(ty - self.gimbal.yaw_deg);
        self.gimbal.yaw_deg = wrap_180(self.gimbal.yaw_deg + ey.clamp(-max, max));
    }

    fn after_move(&mut self) {
        if self.pos.z >= 0.0 {
            // On the ground.
            self.pos.z = 0.0;
            if self.vel.z > 0.0 {
                self.vel.z = 0.0;
            }
            let landing = matches!(self.mode, Mode::Land | Mode::Rtl)
                || (self.mode == Mode::Auto && self.current_is_landing());
            if !self.landed && landing && self.vel.xy().norm() < 0.5 {
                self.landed = true;
                self.vel = Vector3::zeros();
                self.roll = 0.0;
                self.pitch = 0.0;
                self.text(severity::INFO, "Landed");
                if self.mode == Mode::Auto {
                    if let NavState::Item { seq, .. } = self.nav {
                        self.events.push_back(VehicleEvent::ItemReached(seq));
                        self.nav = NavState::Complete;
                    }
                }
                self.do_disarm();
            }
        }
    }

    fn current_is_landing(&self) -> bool {
        match self.nav {
            NavState::Item { seq, .. } => matches!(
                self.mission.get(seq as usize).map(|i| i.command),
                Some(cmd::NAV_LAND) | Some(cmd::NAV_RETURN_TO_LAUNCH)
            ),
            _ => false,
        }
    }

    /// Point the gimbal (manager v2 / mount control); yaw earth-locked if
    /// `yaw_lock`.
    pub fn point_gimbal(&mut self, pitch_deg: f64, yaw_deg: f64, yaw_lock: bool) {
        self.gimbal.roi = None;
        if pitch_deg.is_finite() {
            self.gimbal.target_pitch_deg = pitch_deg;
        }
        if yaw_deg.is_finite() {
            self.gimbal.target_yaw_deg = yaw_deg;
        }
        self.gimbal.yaw_lock = yaw_lock;
    }

    pub fn set_roi(&mut self, roi: Option<LatLonAlt>) {
        self.gimbal.roi = roi;
        if roi.is_none() {
            self.yaw_override = None;
        }
    }
}

/// Item 0 of an ArduPilot mission: home, frame GLOBAL, altitude AMSL.
pub fn home_item(home: LatLonAlt) -> MissionItem {
    let mut it = MissionItem::nav(
        cmd::NAV_WAYPOINT,
        home.lat_deg,
        home.lon_deg,
        home.alt_m as f32,
    );
    it.frame = frame::GLOBAL;
    it
}

trait Param5Flags {
    fn param5_flags(&self) -> u32;
}

impl Param5Flags for MissionItem {
    /// DO_GIMBAL_MANAGER_PITCHYAW carries its flags in param5 (x).
    fn param5_flags(&self) -> u32 {
        self.x.max(0) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: LatLonAlt = LatLonAlt::new(28.45, 117.94, 70.0);

    fn ready() -> Vehicle {
        let mut v = Vehicle::new(HOME, Airframe::default(), 100.0);
        v.gps_fix = true;
        v.ekf_ok = true;
        v
    }

    fn run(v: &mut Vehicle, secs: f64) {
        for _ in 0..(secs / 0.02) as usize {
            v.step(0.02);
        }
    }

    #[test]
    fn refuses_to_arm_without_gps_or_with_a_low_battery() {
        let mut v = Vehicle::new(HOME, Airframe::default(), 100.0);
        assert!(v.arm(false).is_err());
        let mut v = ready();
        v.battery_pct = 15.0;
        let e = v.arm(false).unwrap_err();
        assert!(e.0.contains("Battery"), "{e:?}");
        let mut v = ready();
        v.set_mode(Mode::Guided).unwrap();
        v.arm(false).unwrap();
        assert!(v.armed);
    }

    #[test]
    fn takes_off_flies_to_a_point_and_returns_home() {
        let mut v = ready();
        v.set_mode(Mode::Guided).unwrap();
        v.arm(false).unwrap();
        v.takeoff(20.0).unwrap();
        run(&mut v, 15.0);
        assert!((v.alt_rel() - 20.0).abs() < 0.3, "alt {}", v.alt_rel());
        let dest = v.frame.from_ned(Vector3::new(100.0, 50.0, 0.0));
        v.goto(dest, 30.0, None).unwrap();
        run(&mut v, 40.0);
        assert!(
            (v.pos - Vector3::new(100.0, 50.0, -30.0)).norm() < 0.5,
            "{}",
            v.pos
        );
        assert!(v.vel.norm() < 0.2);
        v.set_mode(Mode::Rtl).unwrap();
        run(&mut v, 90.0);
        assert!(
            v.landed && !v.armed,
            "landed {} armed {}",
            v.landed,
            v.armed
        );
        assert!(v.pos.xy().norm() < 1.0, "{}", v.pos);
    }

    #[test]
    fn low_battery_triggers_rtl() {
        let mut v = ready();
        v.battery_pct = 21.0;
        v.set_mode(Mode::Guided).unwrap();
        v.arm(false).unwrap();
        v.takeoff(10.0).unwrap();
        run(&mut v, 120.0);
        assert!(v
            .events
            .iter()
            .any(|e| matches!(e, VehicleEvent::ModeChanged(Mode::Rtl))));
    }

    fn texts(v: &mut Vehicle) -> Vec<String> {
        v.events
            .drain(..)
            .filter_map(|e| match e {
                VehicleEvent::Text { text, .. } => Some(text),
                _ => None,
            })
            .collect()
    }

    /// Armed in GUIDED, 20 m up over home.
    fn flying() -> Vehicle {
        let mut v = ready();
        v.set_mode(Mode::Guided).unwrap();
        v.arm(false).unwrap();
        v.takeoff(20.0).unwrap();
        run(&mut v, 15.0);
        v
    }

    /// Fly towards `n` m north, `e` m east at `alt` m, for up to `secs`
    /// or until the mode changes.
    fn fly_to(v: &mut Vehicle, n: f64, e: f64, alt: f64, secs: f64) {
        let dest = v.frame.from_ned(Vector3::new(n, e, 0.0));
        v.goto(dest, alt, None).unwrap();
        for _ in 0..(secs / 0.02) as usize {
            v.step(0.02);
            if v.mode != Mode::Guided {
                return;
            }
        }
    }

    fn set(v: &mut Vehicle, name: &str, value: f32) {
        assert!(matches!(v.params.set(name, value), Some(Ok(_))), "{name}");
        v.param_changed(name);
    }

    /// A square exclusion polygon, `half` m either side of (n, e).
    fn exclusion_square(v: &Vehicle, n: f64, e: f64, half: f64) -> Fence {
        let items: Vec<MissionItem> = [(-1.0, -1.0), (-1.0, 1.0), (1.0, 1.0), (1.0, -1.0)]
            .iter()
            .map(|(a, b)| {
                let ll = v
                    .frame
                    .from_ned(Vector3::new(n + a * half, e + b * half, 0.0));
                let mut it = MissionItem::nav(
                    cmd::NAV_FENCE_POLYGON_VERTEX_EXCLUSION,
                    ll.lat_deg,
                    ll.lon_deg,
                    0.0,
                );
                it.param1 = 4.0;
                it
            })
            .collect();
        Fence::from_items(&items).unwrap()
    }

    #[test]
    fn the_fence_is_not_enforced_until_enabled() {
        // ArduCopter's default: FENCE_ENABLE = 0. The uploaded exclusion
        // zone and the 150 m circle are both crossed without a breach.
        let mut v = flying();
        assert!(!v.fence_enabled);
        v.fence = exclusion_square(&v, 0.0, 100.0, 20.0);
        fly_to(&mut v, 0.0, 250.0, 20.0, 80.0);
        assert_eq!(v.mode, Mode::Guided);
        assert!((v.pos.y - 250.0).abs() < 1.0, "{}", v.pos);
        assert!(!texts(&mut v).iter().any(|t| t.contains("Fence")));
    }

    #[test]
    fn fence_enable_enforces_the_150_m_circle_of_copter_parm() {
        let mut v = flying();
        set(&mut v, "FENCE_ENABLE", 1.0);
        assert!(v.fence_enabled);
        let _ = texts(&mut v);
        fly_to(&mut v, 300.0, 0.0, 20.0, 80.0);
        assert_eq!(v.mode, Mode::Rtl, "FENCE_ACTION 1: RTL");
        let d = v.pos.xy().norm();
        assert!((150.0..160.0).contains(&d), "breached at {d:.1} m");
        let t = texts(&mut v);
        assert!(
            t.iter().any(|t| t.starts_with("Fence Breach: Circle")),
            "{t:?}"
        );
        // And RTL brings it home.
        run(&mut v, 120.0);
        assert!(v.landed && !v.armed && v.pos.xy().norm() < 1.0);
    }

    #[test]
    fn fence_type_selects_what_is_enforced() {
        // Polygon only: the circle is not checked, the exclusion zone is.
        let mut v = flying();
        set(&mut v, "FENCE_TYPE", 4.0);
        set(&mut v, "FENCE_ENABLE", 1.0);
        v.fence = exclusion_square(&v, 0.0, 250.0, 20.0);
        fly_to(&mut v, 0.0, 300.0, 20.0, 120.0);
        assert_eq!(v.mode, Mode::Rtl);
        assert!((225.0..235.0).contains(&v.pos.y), "{}", v.pos);
        assert!(texts(&mut v)
            .iter()
            .any(|t| t.starts_with("Fence Breach: Polygon")));

        // Altitude only: FENCE_ALT_MAX 100 m above home; the polygon is
        // ignored.
        let mut v = flying();
        set(&mut v, "FENCE_TYPE", 1.0);
        set(&mut v, "FENCE_ENABLE", 1.0);
        v.fence = exclusion_square(&v, 0.0, 0.0, 50.0);
        v.af.climb_mps = 5.0;
        fly_to(&mut v, 0.0, 0.0, 150.0, 60.0);
        assert_eq!(v.mode, Mode::Rtl);
        assert!((100.0..103.0).contains(&v.alt_rel()), "{}", v.alt_rel());
        assert!(texts(&mut v)
            .iter()
            .any(|t| t.starts_with("Fence Breach: Max Alt")));
    }

    #[test]
    fn fence_action_0_only_reports_and_disabling_stops_enforcement() {
        let mut v = flying();
        set(&mut v, "FENCE_ACTION", 0.0);
        set(&mut v, "FENCE_ENABLE", 1.0);
        fly_to(&mut v, 200.0, 0.0, 20.0, 60.0);
        assert_eq!(v.mode, Mode::Guided);
        assert!(texts(&mut v)
            .iter()
            .any(|t| t.starts_with("Fence Breach: Circle")));
        // Disabled (DO_FENCE_ENABLE 0): no breach state, nothing reported.
        set(&mut v, "FENCE_ACTION", 1.0);
        v.set_fence_enabled(false);
        fly_to(&mut v, 250.0, 0.0, 20.0, 30.0);
        assert_eq!(v.mode, Mode::Guided);
        assert!(!texts(&mut v).iter().any(|t| t.contains("Fence")));
        // The parameter was never touched by the run-time switch.
        assert_eq!(v.params.get("FENCE_ENABLE"), Some(1.0));
    }

    #[test]
    fn arming_inside_an_enabled_fence_breach_is_refused() {
        let mut v = ready();
        v.fence = exclusion_square(&v, 0.0, 0.0, 20.0);
        v.set_mode(Mode::Guided).unwrap();
        // Not enabled: arms.
        v.arm(false).unwrap();
        v.disarm(false).unwrap();
        set(&mut v, "FENCE_ENABLE", 1.0);
        let e = v.arm(false).unwrap_err();
        assert_eq!(e.0, "Arm: Vehicle breaching Polygon fence");
        assert_eq!(
            v.prearm_failure().as_deref(),
            Some("Vehicle breaching Polygon fence")
        );
    }

    #[test]
    fn arming_waits_for_the_position_estimate() {
        let mut v = ready();
        v.ekf_ok = false;
        v.set_mode(Mode::Stabilize).unwrap();
        let e = v.arm(false).unwrap_err();
        assert_eq!(e.0, "Arm: Need Position Estimate");
        assert!(texts(&mut v).contains(&"Arm: Need Position Estimate".to_string()));
        v.ekf_ok = true;
        assert_eq!(v.prearm_failure(), None);
        v.arm(false).unwrap();
    }

    fn rally_point(v: &Vehicle, n: f64, e: f64, alt: f32) -> MissionItem {
        let ll = v.frame.from_ned(Vector3::new(n, e, 0.0));
        MissionItem::nav(cmd::NAV_RALLY_POINT, ll.lat_deg, ll.lon_deg, alt)
    }

    #[test]
    fn rtl_lands_at_the_nearest_rally_point_when_it_is_closer_than_home() {
        let mut v = flying();
        v.rally = vec![
            rally_point(&v, 0.0, -200.0, 25.0),
            rally_point(&v, 200.0, 0.0, 25.0),
        ];
        fly_to(&mut v, 300.0, 0.0, 20.0, 80.0);
        v.set_mode(Mode::Rtl).unwrap();
        let dest = v.rtl_destination();
        assert!(
            (dest.xy() - Vector2::new(200.0, 0.0)).norm() < 0.01,
            "{dest}"
        );
        let mut max_alt = 0.0f64;
        for _ in 0..(120.0 / 0.02) as usize {
            v.step(0.02);
            max_alt = max_alt.max(v.alt_rel());
        }
        assert!(
            v.landed && !v.armed,
            "landed {} armed {}",
            v.landed,
            v.armed
        );
        assert!(
            (v.pos.xy() - Vector2::new(200.0, 0.0)).norm() < 1.0,
            "landed at {}",
            v.pos
        );
        // Climbed to the rally point's altitude (above RTL_ALT 15 m).
        assert!(max_alt > 24.0, "{max_alt}");
        // Home did not move.
        assert_eq!(v.home, HOME);
    }

    #[test]
    fn rtl_goes_home_when_home_is_closer_or_the_rally_point_too_far() {
        // Home closer (RALLY_INCL_HOME 1).
        let mut v = flying();
        v.rally = vec![rally_point(&v, 200.0, 0.0, 20.0)];
        fly_to(&mut v, 60.0, 0.0, 20.0, 40.0);
        v.set_mode(Mode::Rtl).unwrap();
        assert_eq!(v.rtl_destination(), Vector3::zeros());
        // RALLY_INCL_HOME 0: the rally point although home is closer.
        set(&mut v, "RALLY_INCL_HOME", 0.0);
        v.set_mode(Mode::Guided).unwrap();
        v.set_mode(Mode::Rtl).unwrap();
        assert!((v.rtl_destination().xy() - Vector2::new(200.0, 0.0)).norm() < 0.01);
        // Beyond RALLY_LIMIT_KM (0.3 km): home.
        let mut v = flying();
        v.rally = vec![rally_point(&v, 500.0, 0.0, 20.0)];
        fly_to(&mut v, 900.0, 0.0, 20.0, 200.0);
        assert!(v.pos.x > 850.0);
        v.set_mode(Mode::Rtl).unwrap();
        assert_eq!(v.rtl_destination(), Vector3::zeros());
        run(&mut v, 300.0);
        assert!(v.landed && v.pos.xy().norm() < 1.0, "{}", v.pos);
    }
}
