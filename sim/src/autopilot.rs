//! The simulated autopilot on the wire: ArduCopter's messages, commands,
//! streams, mission protocol ([`MissionServer`]) and parameter protocol
//! ([`Params`], kept in the [`Vehicle`], which reads them) over the
//! [`Vehicle`]. Sans-IO: [`Autopilot`] works on decoded messages and
//! simulated time; [`SimNode`] adds framing and signing (bytes in, bytes
//! out).
//!
//! Readiness as ArduCopter: the GPS has a fix after `gps_fix_delay_s`; the
//! EKF has a position 1 s later, and not before `ekf_ready_delay_s` after
//! boot (real ArduCopter SITL takes about 25–40 s). Until then
//! `EKF_STATUS_REPORT` lacks the horizontal position flags, `SYS_STATUS`
//! reports `MAV_SYS_STATUS_PREARM_CHECK` present, enabled and unhealthy,
//! and arming fails (`COMMAND_ACK` FAILED, `Arm: Need Position
//! Estimate`). While disarmed, a failing pre-arm check is repeated as
//! `PreArm: …` every 30 s. `FENCE_TOTAL` and `RALLY_TOTAL` follow the lists
//! on board; `MAV_CMD_DO_FENCE_ENABLE` enables or disables the fence
//! without changing `FENCE_ENABLE`, as this firmware does.
//!
//! With [`AutopilotConfig::flavour`] [`Flavour::Px4`] it is PX4 v1.15.4
//! on the wire where the two differ ([`crate::px4`]): its heartbeat and
//! mode numbers, parameters, mission protocol without a home item,
//! arming in AUTO.MISSION, refusals, `SYS_STATUS` pre-arm bit in health
//! only, no `EKF_STATUS_REPORT`, repeated `MISSION_ITEM_REACHED`, RTL
//! rally frames, STATUSTEXT ending with a TAB.

use std::collections::{HashMap, VecDeque};

use mavlink::{MavHeader, MessageData};
use nalgebra::{UnitQuaternion, Vector3};
use tiancha_firmware_bridge::codec::{dialect, Decoder, Encoder, Msg, Received};
use tiancha_firmware_bridge::pose::camera_from_frd;
use tiancha_firmware_bridge::signing::{Signer, SigningKey, Verifier};
use tiancha_firmware_bridge::transport::{Packet, PeerId};
use tiancha_geometry::geodesy::LatLonAlt;
use tiancha_protocol::mission::MissionType;

use crate::fence::Fence;
use crate::mission_server::{Lists, MissionServer, ServerOutput};
use crate::noise::{Noise, NoiseConfig};
use crate::params::{ParamReply, Params};
use crate::px4::{self, Flavour};
use crate::truth::Truth;
use crate::vehicle::{home_item, severity, Airframe, Mode, Refused, Vehicle, VehicleEvent};

/// Physics step (simulated seconds).
pub const DT: f64 = 0.02;

/// A failing pre-arm check is repeated this often while disarmed
/// (ArduPilot's `PREARM_DISPLAY_PERIOD`).
pub const PREARM_REPORT_S: f64 = 30.0;

/// What the autopilot is and how it behaves.
#[derive(Debug, Clone)]
pub struct AutopilotConfig {
    pub system_id: u8,
    pub component_id: u8,
    pub home: LatLonAlt,
    pub battery_pct: f64,
    pub airframe: Airframe,
    /// Has a GPS at all.
    pub gps: bool,
    /// Simulated seconds until the GPS has a 3D fix (EKF good 1 s later).
    pub gps_fix_delay_s: f64,
    /// Simulated seconds after boot before the EKF has a position (and
    /// arming is allowed), at the earliest; 0: as soon as the GPS allows.
    /// Real ArduCopter SITL needs about 25–40 s.
    pub ekf_ready_delay_s: f64,
    /// Supports the gimbal manager v2 commands (else only the legacy mount
    /// commands).
    pub gimbal_manager: bool,
    /// Refuse SET_MESSAGE_INTERVAL (old firmware): REQUEST_DATA_STREAM only.
    pub legacy_streams_only: bool,
    pub noise: NoiseConfig,
    /// Simulated Unix time at boot, microseconds.
    pub boot_unix_us: u64,
    /// ArduCopter (default) or PX4 where they differ.
    pub flavour: Flavour,
}

impl Default for AutopilotConfig {
    fn default() -> Self {
        Self {
            system_id: 1,
            component_id: 1,
            home: LatLonAlt::new(28.45, 117.94, 70.0),
            battery_pct: 100.0,
            airframe: Airframe::default(),
            gps: true,
            gps_fix_delay_s: 2.0,
            ekf_ready_delay_s: 0.0,
            gimbal_manager: true,
            legacy_streams_only: false,
            noise: NoiseConfig::default(),
            boot_unix_us: 1_750_000_000_000_000,
            flavour: Flavour::ArduCopter,
        }
    }
}

/// Telemetry messages the simulator can stream.
fn streamable() -> Vec<(u32, f64)> {
    use dialect::*;
    // (message id, default rate Hz)
    vec![
        (HEARTBEAT_DATA::ID, 1.0),
        (SYS_STATUS_DATA::ID, 1.0),
        (GPS_RAW_INT_DATA::ID, 1.0),
        (GLOBAL_POSITION_INT_DATA::ID, 4.0),
        (ATTITUDE_DATA::ID, 4.0),
        (MISSION_CURRENT_DATA::ID, 1.0),
        (SYSTEM_TIME_DATA::ID, 1.0),
        (EXTENDED_SYS_STATE_DATA::ID, 1.0),
        (BATTERY_STATUS_DATA::ID, 1.0),
        (EKF_STATUS_REPORT_DATA::ID, 1.0),
        (GIMBAL_DEVICE_ATTITUDE_STATUS_DATA::ID, 2.0),
        (MOUNT_STATUS_DATA::ID, 1.0),
        (HOME_POSITION_DATA::ID, 0.2),
        (VFR_HUD_DATA::ID, 2.0),
    ]
}

/// ArduPilot's REQUEST_DATA_STREAM groups.
fn stream_group(id: u8) -> Vec<u32> {
    use dialect::*;
    match id {
        2 => vec![
            SYS_STATUS_DATA::ID,
            GPS_RAW_INT_DATA::ID,
            MISSION_CURRENT_DATA::ID,
            EXTENDED_SYS_STATE_DATA::ID,
        ],
        6 => vec![GLOBAL_POSITION_INT_DATA::ID],
        10 => vec![ATTITUDE_DATA::ID],
        11 => vec![VFR_HUD_DATA::ID],
        12 => vec![
            SYSTEM_TIME_DATA::ID,
            BATTERY_STATUS_DATA::ID,
            EKF_STATUS_REPORT_DATA::ID,
            GIMBAL_DEVICE_ATTITUDE_STATUS_DATA::ID,
            MOUNT_STATUS_DATA::ID,
        ],
        _ => vec![],
    }
}

#[derive(Debug, Clone)]
struct Stream {
    default_interval: Option<f64>,
    interval: Option<f64>,
    next: f64,
}

#[derive(Debug, Clone, Copy)]
struct Snapshot {
    t: f64,
    pos: Vector3<f64>,
    vel: Vector3<f64>,
    rpy: (f64, f64, f64),
    gimbal: (f64, f64, bool),
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AutopilotStats {
    pub commands: u64,
    pub commands_rejected: u64,
    pub ignored_not_for_us: u64,
}

/// The autopilot. See the module docs.
pub struct Autopilot {
    pub cfg: AutopilotConfig,
    pub vehicle: Vehicle,
    pub lists: Lists,
    pub server: MissionServer,
    streams: HashMap<u32, Stream>,
    out: VecDeque<Msg>,
    now: f64,
    phys_t: f64,
    noise: Noise,
    history: VecDeque<Snapshot>,
    /// A SETUP_SIGNING asked to change the key (`Some(None)` = disable).
    pub signing_change: Option<Option<SigningKey>>,
    pub stats: AutopilotStats,
    signing: bool,
    /// Bumped whenever a list changes.
    pub lists_version: u64,
    /// When the next periodic `PreArm: …` is due.
    next_prearm_report: f64,
    /// PX4's once-a-second repeats.
    px4: px4::Timers,
    /// The id of the last chunked STATUSTEXT (PX4).
    text_id: u16,
}

fn is_global_frame(f: u8) -> bool {
    matches!(f, 0 | 5)
}

impl Autopilot {
    pub fn new(cfg: AutopilotConfig) -> Self {
        let mut vehicle = Vehicle::new(cfg.home, cfg.airframe.clone(), cfg.battery_pct);
        vehicle.gps_fix = false;
        vehicle.params = Params::arducopter(cfg.system_id, &cfg.airframe);
        let px4 = cfg.flavour.is_px4();
        if px4 {
            px4::configure_vehicle(&mut vehicle, cfg.system_id);
        }
        let lists = Lists {
            mission: if px4 {
                vec![]
            } else {
                vec![home_item(cfg.home)]
            },
            fence: vec![],
            rally: vec![],
        };
        let mut server = MissionServer::new(cfg.system_id, cfg.component_id);
        server.flavour = cfg.flavour;
        let streams = streamable()
            .into_iter()
            // PX4 sends no EKF_STATUS_REPORT.
            .filter(|(id, _)| !(px4 && *id == dialect::EKF_STATUS_REPORT_DATA::ID))
            .map(|(id, hz)| {
                let iv = Some(1.0 / hz);
                (
                    id,
                    Stream {
                        default_interval: iv,
                        interval: iv,
                        next: 0.0,
                    },
                )
            })
            .collect();
        Self {
            server,
            noise: Noise::new(cfg.noise),
            vehicle,
            lists,
            streams,
            out: VecDeque::new(),
            now: 0.0,
            phys_t: 0.0,
            history: VecDeque::new(),
            signing_change: None,
            stats: AutopilotStats::default(),
            signing: false,
            lists_version: 0,
            next_prearm_report: PREARM_REPORT_S,
            px4: px4::Timers::default(),
            text_id: 0,
            cfg,
        }
    }

    /// Set a parameter as a `PARAM_SET` would, with its effect on the
    /// vehicle; `None` for an unknown name, `Some(Err(kept))` if refused.
    pub fn set_param(&mut self, name: &str, value: f32) -> Option<Result<f32, f32>> {
        let before = self.vehicle.params.get(name)?;
        let r = self.vehicle.params.set(name, value)?;
        if matches!(r, Ok(v) if v.to_bits() != before.to_bits()) {
            self.vehicle.param_changed(name);
        }
        Some(r)
    }

    /// The value of a parameter.
    pub fn param(&self, name: &str) -> Option<f32> {
        self.vehicle.params.get(name)
    }

    pub fn set_signing_flag(&mut self, on: bool) {
        self.signing = on;
    }

    pub fn now(&self) -> f64 {
        self.now
    }

    fn boot_ms(&self, t: f64) -> u32 {
        (t * 1000.0).max(0.0) as u32
    }

    pub fn poll_transmit(&mut self) -> Option<Msg> {
        self.out.pop_front()
    }

    fn text(&mut self, severity: u8, text: &str) {
        if self.cfg.flavour.is_px4() {
            self.px4_text(severity, &px4::statustext(text));
            return;
        }
        let mut buf = [0u8; 50];
        let b = text.as_bytes();
        let n = b.len().min(50);
        buf[..n].copy_from_slice(&b[..n]);
        self.out
            .push_back(Msg::STATUSTEXT(dialect::STATUSTEXT_DATA {
                severity: num_traits::FromPrimitive::from_u8(severity)
                    .unwrap_or(dialect::MavSeverity::MAV_SEVERITY_INFO),
                text: buf.into(),
                id: 0,
                chunk_seq: 0,
            }));
    }

    /// A STATUSTEXT as PX4 sends it: longer than 50 bytes, in chunks of
    /// one `id` (MAVLink 2), the last one NUL-terminated.
    fn px4_text(&mut self, severity: u8, text: &str) {
        let b = text.as_bytes();
        let id = if b.len() > 50 {
            self.text_id = self.text_id.wrapping_add(1).max(1);
            self.text_id
        } else {
            0
        };
        let mut chunks: Vec<&[u8]> = b.chunks(50).collect();
        if b.len() > 50 && b.len().is_multiple_of(50) {
            chunks.push(&[]);
        }
        for (k, c) in chunks.iter().enumerate() {
            let mut buf = [0u8; 50];
            buf[..c.len()].copy_from_slice(c);
            self.out
                .push_back(Msg::STATUSTEXT(dialect::STATUSTEXT_DATA {
                    severity: num_traits::FromPrimitive::from_u8(severity)
                        .unwrap_or(dialect::MavSeverity::MAV_SEVERITY_INFO),
                    text: buf.into(),
                    id,
                    chunk_seq: k as u8,
                }));
        }
    }

    /// The next simulated time something is due.
    pub fn next_wakeup(&self) -> f64 {
        let s = self
            .streams
            .values()
            .filter(|s| s.interval.is_some())
            .map(|s| s.next)
            .fold(f64::INFINITY, f64::min);
        s.min(self.phys_t + DT)
    }

    /// Advance to simulated time `now`: physics, mission protocol timers,
    /// telemetry.
    pub fn tick(&mut self, now: f64) {
        if now < self.now {
            return;
        }
        self.now = now;
        // (The epsilon absorbs float rounding of callers' clocks.)
        while self.phys_t + DT <= now + 1e-9 {
            self.phys_t += DT;
            let t = self.phys_t;
            // Sensors come up (ArduPilot says so; PX4 does not).
            let ardupilot = !self.cfg.flavour.is_px4();
            if self.cfg.gps && !self.vehicle.gps_fix && t >= self.cfg.gps_fix_delay_s {
                self.vehicle.gps_fix = true;
                if ardupilot {
                    self.text(severity::INFO, "GPS 1: detected as u-blox at 230400 baud");
                }
            }
            if self.vehicle.gps_fix
                && !self.vehicle.ekf_ok
                && t >= (self.cfg.gps_fix_delay_s + 1.0).max(self.cfg.ekf_ready_delay_s)
            {
                self.vehicle.ekf_ok = true;
                if ardupilot {
                    self.text(severity::INFO, "EKF3 IMU0 is using GPS");
                }
            }
            self.vehicle.step(DT);
            if !ardupilot {
                self.px4_due(t);
            } else if t + 1e-9 >= self.next_prearm_report {
                while t + 1e-9 >= self.next_prearm_report {
                    self.next_prearm_report += PREARM_REPORT_S;
                }
                if !self.vehicle.armed {
                    if let Some(f) = self.vehicle.prearm_failure() {
                        self.text(severity::CRITICAL, &format!("PreArm: {f}"));
                    }
                }
            }
            self.history.push_back(Snapshot {
                t,
                pos: self.vehicle.pos,
                vel: self.vehicle.vel,
                rpy: (self.vehicle.roll, self.vehicle.pitch, self.vehicle.yaw),
                gimbal: (
                    self.vehicle.gimbal.pitch_deg,
                    self.vehicle.gimbal.yaw_deg,
                    self.vehicle.gimbal.yaw_lock,
                ),
            });
            while self.history.len() > 200 {
                self.history.pop_front();
            }
            self.drain_vehicle_events();
        }
        self.server.tick(now);
        self.drain_server();
        // Streams.
        let due: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| s.interval.is_some() && s.next <= now + 1e-9)
            .map(|(id, _)| *id)
            .collect();
        let mut due = due;
        due.sort_unstable();
        for id in due {
            let s = self.streams.get_mut(&id).expect("present");
            let iv = s.interval.expect("filtered");
            s.next = if now - s.next > iv {
                now + iv
            } else {
                s.next + iv
            };
            self.emit(id);
        }
    }

    /// PX4's once-a-second repeats: the last item reached, and the
    /// complaint about rally points it cannot use.
    fn px4_due(&mut self, t: f64) {
        let bad_rally = self.lists.rally.iter().any(|r| !px4::rally_supported(r));
        let due = self.px4.due(t, bad_rally);
        if let Some(seq) = due.reached {
            self.out.push_back(Msg::MISSION_ITEM_REACHED(
                dialect::MISSION_ITEM_REACHED_DATA { seq },
            ));
        }
        if due.rally_warning {
            self.text(severity::CRITICAL, px4::RTL_UNSUPPORTED_FRAME);
        }
    }

    /// The wire's mission seq of the vehicle's (PX4 has no home item).
    fn wire_seq(&self, seq: u16) -> u16 {
        if self.cfg.flavour.is_px4() {
            px4::wire_seq(seq)
        } else {
            seq
        }
    }

    /// The vehicle's mission seq of the wire's.
    fn vehicle_seq(&self, seq: u16) -> u16 {
        if self.cfg.flavour.is_px4() {
            px4::vehicle_seq(seq)
        } else {
            seq
        }
    }

    fn drain_vehicle_events(&mut self) {
        while let Some(e) = self.vehicle.events.pop_front() {
            match e {
                VehicleEvent::Text { severity, text } => self.text(severity, &text),
                VehicleEvent::ItemReached(seq) => {
                    let seq = self.wire_seq(seq);
                    if self.cfg.flavour.is_px4() {
                        self.px4.reached(seq, self.phys_t);
                    }
                    self.out.push_back(Msg::MISSION_ITEM_REACHED(
                        dialect::MISSION_ITEM_REACHED_DATA { seq },
                    ))
                }
                VehicleEvent::CurrentChanged(_) => self.emit(dialect::MISSION_CURRENT_DATA::ID),
                VehicleEvent::ModeChanged(_) | VehicleEvent::Armed(_) => {
                    self.emit(dialect::HEARTBEAT_DATA::ID)
                }
                VehicleEvent::HomeChanged => {
                    if !self.cfg.flavour.is_px4() {
                        self.lists.mission[0] = home_item(self.vehicle.home);
                    }
                    self.emit(dialect::HOME_POSITION_DATA::ID)
                }
            }
        }
    }

    fn drain_server(&mut self) {
        while let Some(o) = self.server.out.pop_front() {
            match o {
                ServerOutput::Send(m) => self.out.push_back(*m),
                ServerOutput::Text(s, t) => self.text(s, &t),
                ServerOutput::Changed(t) => self.apply_list(t),
            }
        }
    }

    fn apply_list(&mut self, t: MissionType) {
        self.lists_version += 1;
        match t {
            MissionType::Mission => {
                if self.cfg.flavour.is_px4() {
                    self.vehicle.mission =
                        px4::vehicle_mission(self.vehicle.home, &self.lists.mission);
                    self.px4.mission_changed();
                } else {
                    self.lists.mission[0] = home_item(self.vehicle.home);
                    self.vehicle.mission = self.lists.mission.clone();
                }
                self.vehicle.mission_changed();
            }
            MissionType::Fence => {
                self.vehicle.fence = Fence::from_items(&self.lists.fence).unwrap_or_default();
                self.vehicle
                    .params
                    .set_internal("FENCE_TOTAL", self.lists.fence.len() as f32);
            }
            MissionType::Rally => {
                self.vehicle.rally = self.lists.rally.clone();
                self.vehicle
                    .params
                    .set_internal("RALLY_TOTAL", self.lists.rally.len() as f32);
            }
        }
    }

    fn snapshot_at(&self, t: f64) -> Snapshot {
        let cur = Snapshot {
            t: self.phys_t,
            pos: self.vehicle.pos,
            vel: self.vehicle.vel,
            rpy: (self.vehicle.roll, self.vehicle.pitch, self.vehicle.yaw),
            gimbal: (
                self.vehicle.gimbal.pitch_deg,
                self.vehicle.gimbal.yaw_deg,
                self.vehicle.gimbal.yaw_lock,
            ),
        };
        if t >= self.phys_t {
            return cur;
        }
        self.history
            .iter()
            .rev()
            .find(|s| s.t <= t)
            .copied()
            .unwrap_or(cur)
    }

    /// Emit one telemetry message now.
    fn emit(&mut self, id: u32) {
        use dialect::*;
        let lat_ms = self.cfg.noise.latency_ms / 1000.0;
        let snap = self.snapshot_at(self.phys_t - lat_ms);
        let stamp = |s: &mut Self| {
            let j = s.noise.stamp_ms() / 1000.0;
            s.boot_ms(snap.t + j)
        };
        let v = &self.vehicle;
        let m = match id {
            HEARTBEAT_DATA::ID => {
                let mut base = MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
                    | MavModeFlag::MAV_MODE_FLAG_STABILIZE_ENABLED;
                if matches!(
                    v.mode,
                    Mode::Guided | Mode::Auto | Mode::Rtl | Mode::Land | Mode::Circle
                ) {
                    base |= MavModeFlag::MAV_MODE_FLAG_GUIDED_ENABLED;
                }
                if v.armed {
                    base |= MavModeFlag::MAV_MODE_FLAG_SAFETY_ARMED;
                }
                let status = if v.battery_fs_critical() {
                    MavState::MAV_STATE_CRITICAL
                } else if v.armed {
                    MavState::MAV_STATE_ACTIVE
                } else {
                    MavState::MAV_STATE_STANDBY
                };
                let (custom_mode, autopilot) = match self.cfg.flavour {
                    Flavour::ArduCopter => {
                        (v.mode as u32, MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA)
                    }
                    Flavour::Px4 => (
                        px4::custom_mode(v.mode, v.taking_off()),
                        MavAutopilot::MAV_AUTOPILOT_PX4,
                    ),
                };
                Msg::HEARTBEAT(HEARTBEAT_DATA {
                    custom_mode,
                    mavtype: MavType::MAV_TYPE_QUADROTOR,
                    autopilot,
                    base_mode: base,
                    system_status: status,
                    mavlink_version: 3,
                })
            }
            GLOBAL_POSITION_INT_DATA::ID => {
                if !v.ekf_ok {
                    return;
                }
                let e = self.noise.gps_error(snap.t);
                let p = snap.pos + Vector3::new(e[0], e[1], e[2]);
                let mut ll = self.vehicle.frame.from_ned(p);
                ll.alt_m = self.vehicle.home.alt_m - p.z;
                let t = stamp(self);
                Msg::GLOBAL_POSITION_INT(GLOBAL_POSITION_INT_DATA {
                    time_boot_ms: t,
                    lat: (ll.lat_deg * 1e7).round() as i32,
                    lon: (ll.lon_deg * 1e7).round() as i32,
                    alt: (ll.alt_m * 1000.0).round() as i32,
                    relative_alt: (-p.z * 1000.0).round() as i32,
                    vx: (snap.vel.x * 100.0).round() as i16,
                    vy: (snap.vel.y * 100.0).round() as i16,
                    vz: (snap.vel.z * 100.0).round() as i16,
                    hdg: ((snap.rpy.2.to_degrees().rem_euclid(360.0)) * 100.0).round() as u16
                        % 36000,
                })
            }
            ATTITUDE_DATA::ID => {
                let (r, p, y) = snap.rpy;
                let (nr, np, ny) = (
                    self.noise.attitude_rad(),
                    self.noise.attitude_rad(),
                    self.noise.attitude_rad(),
                );
                let t = stamp(self);
                Msg::ATTITUDE(ATTITUDE_DATA {
                    time_boot_ms: t,
                    roll: (r + nr) as f32,
                    pitch: (p + np) as f32,
                    yaw: (y + ny) as f32,
                    rollspeed: 0.0,
                    pitchspeed: 0.0,
                    yawspeed: 0.0,
                })
            }
            GIMBAL_DEVICE_ATTITUDE_STATUS_DATA::ID => {
                let (gp, gy, lock) = snap.gimbal;
                let gp = gp + self.noise.gimbal_deg();
                let gy = gy + self.noise.gimbal_deg();
                let q = UnitQuaternion::from_euler_angles(0.0, gp.to_radians(), gy.to_radians());
                let flags = if lock {
                    GimbalDeviceFlags::GIMBAL_DEVICE_FLAGS_ROLL_LOCK
                        | GimbalDeviceFlags::GIMBAL_DEVICE_FLAGS_PITCH_LOCK
                        | GimbalDeviceFlags::GIMBAL_DEVICE_FLAGS_YAW_LOCK
                        | GimbalDeviceFlags::GIMBAL_DEVICE_FLAGS_YAW_IN_EARTH_FRAME
                } else {
                    GimbalDeviceFlags::GIMBAL_DEVICE_FLAGS_ROLL_LOCK
                        | GimbalDeviceFlags::GIMBAL_DEVICE_FLAGS_PITCH_LOCK
                        | GimbalDeviceFlags::GIMBAL_DEVICE_FLAGS_YAW_IN_VEHICLE_FRAME
                };
                let t = stamp(self);
                Msg::GIMBAL_DEVICE_ATTITUDE_STATUS(GIMBAL_DEVICE_ATTITUDE_STATUS_DATA {
                    time_boot_ms: t,
                    q: [q.w as f32, q.i as f32, q.j as f32, q.k as f32],
                    angular_velocity_x: f32::NAN,
                    angular_velocity_y: f32::NAN,
                    angular_velocity_z: f32::NAN,
                    failure_flags: GimbalDeviceErrorFlags::empty(),
                    flags,
                    target_system: 0,
                    target_component: 0,
                    delta_yaw: f32::NAN,
                    delta_yaw_velocity: f32::NAN,
                    gimbal_device_id: 1,
                })
            }
            MOUNT_STATUS_DATA::ID => {
                let (gp, gy, _) = snap.gimbal;
                Msg::MOUNT_STATUS(MOUNT_STATUS_DATA {
                    pointing_a: (gp * 100.0).round() as i32,
                    pointing_b: 0,
                    pointing_c: (gy * 100.0).round() as i32,
                    target_system: 0,
                    target_component: 0,
                    mount_mode: MavMountMode::MAV_MOUNT_MODE_MAVLINK_TARGETING,
                })
            }
            SYS_STATUS_DATA::ID => {
                let volts = v.battery_voltage();
                let sensors = MavSysStatusSensor::MAV_SYS_STATUS_SENSOR_3D_GYRO
                    | MavSysStatusSensor::MAV_SYS_STATUS_SENSOR_3D_ACCEL
                    | MavSysStatusSensor::MAV_SYS_STATUS_SENSOR_GPS
                    | MavSysStatusSensor::MAV_SYS_STATUS_SENSOR_BATTERY;
                // Present and enabled always, healthy when the pre-arm
                // checks pass (ArduPilot's `AP_Notify` pre_arm_check flag).
                let sensors = sensors | MavSysStatusSensor::MAV_SYS_STATUS_PREARM_CHECK;
                // The fence: present always, enabled while enforced,
                // unhealthy while breached (as ArduCopter reports it).
                let fence = MavSysStatusSensor::MAV_SYS_STATUS_GEOFENCE;
                let mut enabled = sensors;
                if v.fence_enabled {
                    enabled |= fence;
                }
                let sensors = sensors | fence;
                let mut health = sensors;
                if v.fence_breached() {
                    health.remove(fence);
                }
                if !v.gps_fix {
                    health.remove(MavSysStatusSensor::MAV_SYS_STATUS_SENSOR_GPS);
                }
                if !v.armed && v.prearm_failure().is_some() {
                    health.remove(MavSysStatusSensor::MAV_SYS_STATUS_PREARM_CHECK);
                }
                let (mut sensors, mut enabled) = (sensors, enabled);
                if self.cfg.flavour.is_px4() {
                    // PX4 1.15: the pre-arm bit in health only.
                    sensors.remove(MavSysStatusSensor::MAV_SYS_STATUS_PREARM_CHECK);
                    enabled.remove(MavSysStatusSensor::MAV_SYS_STATUS_PREARM_CHECK);
                }
                Msg::SYS_STATUS(SYS_STATUS_DATA {
                    onboard_control_sensors_present: sensors,
                    onboard_control_sensors_enabled: enabled,
                    onboard_control_sensors_health: health,
                    load: 200,
                    voltage_battery: (volts * 1000.0) as u16,
                    current_battery: (v.current_a * 100.0) as i16,
                    drop_rate_comm: 0,
                    errors_comm: 0,
                    errors_count1: 0,
                    errors_count2: 0,
                    errors_count3: 0,
                    errors_count4: 0,
                    battery_remaining: v.battery_pct.round() as i8,
                    onboard_control_sensors_present_extended: MavSysStatusSensorExtended::empty(),
                    onboard_control_sensors_enabled_extended: MavSysStatusSensorExtended::empty(),
                    onboard_control_sensors_health_extended: MavSysStatusSensorExtended::empty(),
                })
            }
            BATTERY_STATUS_DATA::ID => {
                let mut voltages = [u16::MAX; 10];
                voltages[0] = (v.battery_voltage() * 1000.0) as u16;
                Msg::BATTERY_STATUS(BATTERY_STATUS_DATA {
                    current_consumed: ((100.0 - v.battery_pct) / 100.0 * v.af.capacity_mah) as i32,
                    energy_consumed: -1,
                    temperature: i16::MAX,
                    voltages,
                    current_battery: (v.current_a * 100.0) as i16,
                    id: 0,
                    battery_function: MavBatteryFunction::MAV_BATTERY_FUNCTION_ALL,
                    mavtype: MavBatteryType::MAV_BATTERY_TYPE_LIPO,
                    battery_remaining: v.battery_pct.round() as i8,
                    time_remaining: 0,
                    charge_state: MavBatteryChargeState::MAV_BATTERY_CHARGE_STATE_OK,
                    voltages_ext: [0; 4],
                    mode: MavBatteryMode::MAV_BATTERY_MODE_UNKNOWN,
                    fault_bitmask: MavBatteryFault::empty(),
                })
            }
            GPS_RAW_INT_DATA::ID => {
                let ll = v.position();
                let fix = if !self.cfg.gps {
                    GpsFixType::GPS_FIX_TYPE_NO_GPS
                } else if v.gps_fix {
                    GpsFixType::GPS_FIX_TYPE_3D_FIX
                } else {
                    GpsFixType::GPS_FIX_TYPE_NO_FIX
                };
                Msg::GPS_RAW_INT(GPS_RAW_INT_DATA {
                    time_usec: (self.now * 1e6) as u64,
                    lat: if v.gps_fix {
                        (ll.lat_deg * 1e7) as i32
                    } else {
                        0
                    },
                    lon: if v.gps_fix {
                        (ll.lon_deg * 1e7) as i32
                    } else {
                        0
                    },
                    alt: (ll.alt_m * 1000.0) as i32,
                    eph: 70,
                    epv: 120,
                    vel: (v.vel.xy().norm() * 100.0) as u16,
                    cog: 0,
                    fix_type: fix,
                    satellites_visible: if v.gps_fix { 14 } else { 0 },
                    alt_ellipsoid: 0,
                    h_acc: 800,
                    v_acc: 1500,
                    vel_acc: 200,
                    hdg_acc: 0,
                    yaw: 0,
                })
            }
            EKF_STATUS_REPORT_DATA::ID => {
                use EkfStatusFlags as F;
                let flags = if v.ekf_ok {
                    F::EKF_ATTITUDE
                        | F::EKF_VELOCITY_HORIZ
                        | F::EKF_VELOCITY_VERT
                        | F::EKF_POS_HORIZ_REL
                        | F::EKF_POS_HORIZ_ABS
                        | F::EKF_POS_VERT_ABS
                        | F::EKF_PRED_POS_HORIZ_REL
                        | F::EKF_PRED_POS_HORIZ_ABS
                } else {
                    // What ArduCopter SITL reports before the EKF uses
                    // the GPS (flags 167): no horizontal position.
                    F::EKF_ATTITUDE
                        | F::EKF_VELOCITY_HORIZ
                        | F::EKF_VELOCITY_VERT
                        | F::EKF_POS_VERT_ABS
                        | F::EKF_CONST_POS_MODE
                };
                Msg::EKF_STATUS_REPORT(EKF_STATUS_REPORT_DATA {
                    velocity_variance: 0.05,
                    pos_horiz_variance: 0.05,
                    pos_vert_variance: 0.05,
                    compass_variance: 0.05,
                    terrain_alt_variance: 0.0,
                    flags,
                    airspeed_variance: 0.0,
                })
            }
            EXTENDED_SYS_STATE_DATA::ID => {
                let landed = if v.landed {
                    MavLandedState::MAV_LANDED_STATE_ON_GROUND
                } else if v.vel.z < -0.3 && v.alt_rel() < 5.0 {
                    MavLandedState::MAV_LANDED_STATE_TAKEOFF
                } else if v.vel.z > 0.3 && v.alt_rel() < 5.0 {
                    MavLandedState::MAV_LANDED_STATE_LANDING
                } else {
                    MavLandedState::MAV_LANDED_STATE_IN_AIR
                };
                Msg::EXTENDED_SYS_STATE(EXTENDED_SYS_STATE_DATA {
                    vtol_state: MavVtolState::MAV_VTOL_STATE_UNDEFINED,
                    landed_state: landed,
                })
            }
            HOME_POSITION_DATA::ID => {
                if !v.ekf_ok {
                    return;
                }
                let h = v.home;
                Msg::HOME_POSITION(HOME_POSITION_DATA {
                    latitude: (h.lat_deg * 1e7).round() as i32,
                    longitude: (h.lon_deg * 1e7).round() as i32,
                    altitude: (h.alt_m * 1000.0).round() as i32,
                    x: 0.0,
                    y: 0.0,
                    z: 0.0,
                    q: [1.0, 0.0, 0.0, 0.0],
                    approach_x: 0.0,
                    approach_y: 0.0,
                    approach_z: 0.0,
                    time_usec: (self.now * 1e6) as u64,
                })
            }
            SYSTEM_TIME_DATA::ID => Msg::SYSTEM_TIME(SYSTEM_TIME_DATA {
                // ArduPilot's Unix time comes from the GPS.
                time_unix_usec: if v.gps_fix {
                    self.cfg.boot_unix_us + (self.now * 1e6) as u64
                } else {
                    0
                },
                time_boot_ms: self.boot_ms(self.now),
            }),
            MISSION_CURRENT_DATA::ID => Msg::MISSION_CURRENT(MISSION_CURRENT_DATA {
                seq: self.wire_seq(v.mission_current),
                total: (self.lists.mission.len() as u16)
                    .saturating_sub(self.cfg.flavour.home_items() as u16),
                mission_state: if v.mission.len() < 2 {
                    MissionState::MISSION_STATE_NO_MISSION
                } else if v.mode == Mode::Auto {
                    MissionState::MISSION_STATE_ACTIVE
                } else {
                    MissionState::MISSION_STATE_NOT_STARTED
                },
                mission_mode: (v.mode == Mode::Auto) as u8,
                mission_id: 0,
                fence_id: 0,
                rally_points_id: 0,
            }),
            VFR_HUD_DATA::ID => Msg::VFR_HUD(VFR_HUD_DATA {
                airspeed: v.vel.xy().norm() as f32,
                groundspeed: v.vel.xy().norm() as f32,
                alt: v.position().alt_m as f32,
                climb: -v.vel.z as f32,
                heading: v.yaw.to_degrees().rem_euclid(360.0) as i16,
                throttle: if v.armed { 45 } else { 0 },
            }),
            _ => return,
        };
        self.out.push_back(m);
    }

    fn param_reply(&mut self, r: ParamReply) {
        if let Some((sev, t)) = &r.text {
            self.text(*sev, t);
        }
        if let Some(name) = r.changed {
            self.vehicle.param_changed(name);
            self.drain_vehicle_events();
        }
        self.out.extend(r.send);
    }

    fn ack(&mut self, to: (u8, u8), command: dialect::MavCmd, result: dialect::MavResult) {
        if result != dialect::MavResult::MAV_RESULT_ACCEPTED {
            self.stats.commands_rejected += 1;
        }
        self.out
            .push_back(Msg::COMMAND_ACK(dialect::COMMAND_ACK_DATA {
                command,
                result,
                progress: 0,
                result_param2: 0,
                target_system: to.0,
                target_component: to.1,
            }));
    }

    /// Handle one decoded message from `from` (system, component).
    pub fn handle(&mut self, from: (u8, u8), msg: &Msg, now: f64) {
        use mavlink::Message;
        self.tick(now);
        if let Some(ts) = msg.target_system_id() {
            if ts != 0 && ts != self.cfg.system_id {
                self.stats.ignored_not_for_us += 1;
                return;
            }
            let tc = msg.target_component_id().unwrap_or(0);
            if ts != 0 && tc != 0 && tc != self.cfg.component_id {
                self.stats.ignored_not_for_us += 1;
                return;
            }
        }
        if self.server.handle(from, msg, now, &mut self.lists) {
            self.drain_server();
            return;
        }
        if let Some(r) = self.vehicle.params.handle(msg) {
            self.param_reply(r);
            return;
        }
        match msg {
            Msg::COMMAND_LONG(c) => {
                let p = [
                    c.param1, c.param2, c.param3, c.param4, c.param5, c.param6, c.param7,
                ];
                self.command(from, c.command, p, None);
            }
            Msg::COMMAND_INT(c) => {
                let global =
                    is_global_frame(c.frame as u8) || matches!(c.frame as u8, 3 | 6 | 10 | 11);
                let (x, y) = if global {
                    (c.x as f64 / 1e7, c.y as f64 / 1e7)
                } else {
                    (c.x as f64, c.y as f64)
                };
                let p = [
                    c.param1, c.param2, c.param3, c.param4, x as f32, y as f32, c.z,
                ];
                self.command(from, c.command, p, Some((c.frame as u8, x, y)));
            }
            Msg::SET_MODE(m) => {
                let mode = match self.cfg.flavour {
                    Flavour::ArduCopter => Mode::from_number(m.custom_mode),
                    Flavour::Px4 => px4::mode_from_custom(m.custom_mode),
                };
                let r = match mode {
                    Some(mode) => self.vehicle.set_mode(mode).is_ok(),
                    None => false,
                };
                self.drain_vehicle_events();
                self.ack(
                    from,
                    dialect::MavCmd::MAV_CMD_DO_SET_MODE,
                    if r {
                        dialect::MavResult::MAV_RESULT_ACCEPTED
                    } else {
                        dialect::MavResult::MAV_RESULT_FAILED
                    },
                );
            }
            Msg::MISSION_SET_CURRENT(m) => {
                let seq = self.vehicle_seq(m.seq);
                let _ = self.vehicle.set_current(seq);
                self.drain_vehicle_events();
                self.emit(dialect::MISSION_CURRENT_DATA::ID);
            }
            Msg::REQUEST_DATA_STREAM(r) => {
                let ids = if r.req_stream_id as u8 == 0 {
                    streamable().into_iter().map(|(id, _)| id).collect()
                } else {
                    stream_group(r.req_stream_id as u8)
                };
                for id in ids {
                    if let Some(s) = self.streams.get_mut(&id) {
                        s.interval = (r.start_stop != 0 && r.req_message_rate > 0)
                            .then(|| 1.0 / r.req_message_rate as f64);
                        s.next = now;
                    }
                }
            }
            Msg::TIMESYNC(t) if t.tc1 == 0 => {
                self.out.push_back(Msg::TIMESYNC(dialect::TIMESYNC_DATA {
                    tc1: (now * 1e9) as i64,
                    ts1: t.ts1,
                    target_system: from.0,
                    target_component: from.1,
                }));
            }
            Msg::SETUP_SIGNING(s) => {
                let key = (s.secret_key != [0u8; 32]).then_some(SigningKey(s.secret_key));
                self.text(
                    severity::INFO,
                    if key.is_some() {
                        "Signing key set"
                    } else {
                        "Signing disabled"
                    },
                );
                self.signing_change = Some(key);
            }
            _ => {}
        }
    }

    fn command(
        &mut self,
        from: (u8, u8),
        c: dialect::MavCmd,
        p: [f32; 7],
        int: Option<(u8, f64, f64)>,
    ) {
        use dialect::MavCmd::*;
        use dialect::MavResult::*;
        self.stats.commands += 1;
        if self.cfg.flavour.is_px4() {
            if let Some(r) = px4::command(&mut self.vehicle, c, p) {
                self.ack(from, c, r);
                self.drain_vehicle_events();
                return;
            }
        }
        let refused = |r: Result<(), Refused>| {
            if r.is_ok() {
                MAV_RESULT_ACCEPTED
            } else {
                MAV_RESULT_FAILED
            }
        };
        let alt_rel_of = |s: &Self, frame: Option<u8>, z: f32| -> f64 {
            match frame {
                Some(f) if is_global_frame(f) => z as f64 - s.vehicle.home.alt_m,
                _ => z as f64,
            }
        };
        let result = match c {
            MAV_CMD_COMPONENT_ARM_DISARM => {
                let force = (p[1] - 21196.0).abs() < 0.5;
                let r = if p[0] > 0.5 {
                    self.vehicle.arm(force)
                } else {
                    self.vehicle.disarm(force)
                };
                refused(r)
            }
            MAV_CMD_DO_SET_MODE => match Mode::from_number(p[1] as u32) {
                Some(m) if (p[0] as u32) & 1 == 1 => refused(self.vehicle.set_mode(m)),
                _ => MAV_RESULT_DENIED,
            },
            MAV_CMD_NAV_TAKEOFF => refused(self.vehicle.takeoff(p[6] as f64)),
            MAV_CMD_MISSION_START => refused(self.vehicle.start_mission()),
            MAV_CMD_DO_PAUSE_CONTINUE => refused(self.vehicle.pause(p[0] < 0.5)),
            MAV_CMD_NAV_RETURN_TO_LAUNCH => refused(self.vehicle.set_mode(Mode::Rtl)),
            MAV_CMD_NAV_LAND => refused(self.vehicle.set_mode(Mode::Land)),
            MAV_CMD_DO_REPOSITION => {
                let Some((f, lat, lon)) = int else {
                    self.ack(from, c, MAV_RESULT_COMMAND_INT_ONLY);
                    return;
                };
                let change_mode = (p[1] as u32) & 1 == 1;
                if self.vehicle.mode != Mode::Guided && !change_mode {
                    MAV_RESULT_DENIED
                } else {
                    let alt = if p[6].is_finite() {
                        alt_rel_of(self, Some(f), p[6])
                    } else {
                        self.vehicle.alt_rel()
                    };
                    let speed = (p[0] > 0.0).then_some(p[0] as f64);
                    refused(self.vehicle.goto(LatLonAlt::new(lat, lon, 0.0), alt, speed))
                }
            }
            MAV_CMD_DO_ORBIT => {
                let Some((f, lat, lon)) = int else {
                    self.ack(from, c, MAV_RESULT_COMMAND_INT_ONLY);
                    return;
                };
                if !(p[0].is_finite() && p[0].abs() >= 1.0) {
                    MAV_RESULT_DENIED
                } else {
                    let alt = p[6].is_finite().then(|| alt_rel_of(self, Some(f), p[6]));
                    refused(self.vehicle.orbit(
                        LatLonAlt::new(lat, lon, 0.0),
                        alt,
                        p[0] as f64,
                        p[1] as f64,
                    ))
                }
            }
            MAV_CMD_DO_CHANGE_SPEED => refused(self.vehicle.set_speed(p[1] as f64)),
            // ArduPilot: 0 disables, 1 enables, 2 disables the floor only
            // (no floor here); FENCE_ENABLE keeps its value.
            MAV_CMD_DO_FENCE_ENABLE => match p[0] as i64 {
                0 => {
                    self.vehicle.set_fence_enabled(false);
                    MAV_RESULT_ACCEPTED
                }
                1 => {
                    self.vehicle.set_fence_enabled(true);
                    MAV_RESULT_ACCEPTED
                }
                2 => MAV_RESULT_ACCEPTED,
                _ => MAV_RESULT_FAILED,
            },
            MAV_CMD_DO_SET_MISSION_CURRENT => {
                let r = self.vehicle.set_current(self.vehicle_seq(p[0] as u16));
                let ok = r.is_ok();
                self.drain_vehicle_events();
                if ok {
                    self.emit(dialect::MISSION_CURRENT_DATA::ID);
                }
                refused(r)
            }
            MAV_CMD_SET_MESSAGE_INTERVAL => {
                if self.cfg.legacy_streams_only {
                    MAV_RESULT_UNSUPPORTED
                } else {
                    let id = p[0] as u32;
                    let iv = p[1];
                    match self.streams.get_mut(&id) {
                        None => MAV_RESULT_FAILED,
                        Some(s) => {
                            s.interval = if iv < 0.0 {
                                None
                            } else if iv == 0.0 {
                                s.default_interval
                            } else {
                                Some((iv as f64 / 1e6).max(0.001))
                            };
                            s.next = self.now;
                            MAV_RESULT_ACCEPTED
                        }
                    }
                }
            }
            MAV_CMD_REQUEST_MESSAGE => {
                let id = p[0] as u32;
                if self.streams.contains_key(&id) {
                    self.ack(from, c, MAV_RESULT_ACCEPTED);
                    self.emit(id);
                    return;
                }
                MAV_RESULT_FAILED
            }
            MAV_CMD_GET_HOME_POSITION => {
                self.ack(from, c, MAV_RESULT_ACCEPTED);
                self.emit(dialect::HOME_POSITION_DATA::ID);
                return;
            }
            MAV_CMD_DO_GIMBAL_MANAGER_PITCHYAW => {
                if !self.cfg.gimbal_manager {
                    MAV_RESULT_UNSUPPORTED
                } else {
                    let lock = (p[4] as u32) & 16 != 0;
                    self.vehicle.point_gimbal(p[0] as f64, p[1] as f64, lock);
                    MAV_RESULT_ACCEPTED
                }
            }
            MAV_CMD_DO_MOUNT_CONTROL => {
                self.vehicle.point_gimbal(p[0] as f64, p[2] as f64, false);
                MAV_RESULT_ACCEPTED
            }
            MAV_CMD_DO_SET_ROI_LOCATION => {
                if !self.cfg.gimbal_manager {
                    MAV_RESULT_UNSUPPORTED
                } else {
                    let alt = match int {
                        Some((f, _, _)) if !is_global_frame(f) => {
                            self.vehicle.home.alt_m + p[6] as f64
                        }
                        _ => p[6] as f64,
                    };
                    self.vehicle
                        .set_roi(Some(LatLonAlt::new(p[4] as f64, p[5] as f64, alt)));
                    MAV_RESULT_ACCEPTED
                }
            }
            MAV_CMD_DO_SET_ROI => {
                if p[0] as u32 == 3 {
                    self.vehicle.set_roi(Some(LatLonAlt::new(
                        p[4] as f64,
                        p[5] as f64,
                        p[6] as f64,
                    )));
                } else {
                    self.vehicle.set_roi(None);
                }
                MAV_RESULT_ACCEPTED
            }
            MAV_CMD_DO_SET_ROI_NONE => {
                if !self.cfg.gimbal_manager {
                    MAV_RESULT_UNSUPPORTED
                } else {
                    self.vehicle.set_roi(None);
                    MAV_RESULT_ACCEPTED
                }
            }
            _ => MAV_RESULT_UNSUPPORTED,
        };
        self.ack(from, c, result);
        self.drain_vehicle_events();
    }

    /// The true state now.
    pub fn truth(&self) -> Truth {
        let v = &self.vehicle;
        let att = v.attitude();
        let g = v.gimbal_attitude();
        Truth {
            sim_time_s: self.now,
            time_boot_ms: (self.now * 1000.0) as u64,
            t_unix_ms: self.cfg.boot_unix_us as f64 / 1000.0 + self.now * 1000.0,
            position: v.position(),
            ned_m: [v.pos.x, v.pos.y, v.pos.z],
            velocity_ned_mps: [v.vel.x, v.vel.y, v.vel.z],
            roll_rad: v.roll,
            pitch_rad: v.pitch,
            yaw_rad: v.yaw,
            attitude: att,
            gimbal_pitch_deg: v.gimbal.pitch_deg,
            gimbal_yaw_deg: v.gimbal.yaw_deg,
            gimbal_attitude: g,
            camera_orientation: g * camera_from_frd(),
            home: v.home,
            armed: v.armed,
            mode: v.mode as u32,
            mode_name: v.mode.name(),
            landed: v.landed,
            battery_pct: v.battery_pct,
            mission_current: self.wire_seq(v.mission_current),
            mission_len: self.lists.mission.len(),
            fence_zones: v.fence.zones.len(),
            fence_enabled: v.fence_enabled,
            rally_points: self.lists.rally.len(),
            signing: self.signing,
        }
    }
}

impl Vehicle {
    fn battery_voltage(&self) -> f64 {
        let cell = 3.5 + 0.7 * self.battery_pct / 100.0 - 0.004 * self.current_a;
        cell * self.af.cells
    }

    fn battery_fs_critical(&self) -> bool {
        self.armed && self.battery_pct <= self.af.battery_critical_pct
    }
}

/// The autopilot with framing and signing: bytes in, bytes out. One
/// decoder per peer; replies go to every peer (the transport decides).
pub struct SimNode {
    pub autopilot: Autopilot,
    encoder: Encoder,
    decoders: HashMap<PeerId, Decoder>,
    key: Option<SigningKey>,
    /// One verifier for the link; every peer's decoder holds a clone
    /// sharing its replay state.
    verifier: Option<Verifier>,
    out: VecDeque<Vec<u8>>,
}

impl SimNode {
    pub fn new(cfg: AutopilotConfig, key: Option<SigningKey>) -> Self {
        let mut autopilot = Autopilot::new(cfg);
        autopilot.set_signing_flag(key.is_some());
        let encoder = Encoder::new(
            autopilot.cfg.system_id,
            autopilot.cfg.component_id,
            key.clone().map(|k| Signer::new(k, 0)),
        );
        Self {
            autopilot,
            encoder,
            decoders: HashMap::new(),
            verifier: key.clone().map(|k| Verifier::new(k, true)),
            key,
            out: VecDeque::new(),
        }
    }

    /// Dropped-input counters over all peers.
    pub fn link_stats(&self) -> tiancha_firmware_bridge::codec::LinkStats {
        let mut s = tiancha_firmware_bridge::codec::LinkStats::default();
        for d in self.decoders.values() {
            s.frames_rx += d.stats.frames_rx;
            s.crc_errors += d.stats.crc_errors;
            s.unsigned_rejected += d.stats.unsigned_rejected;
            s.bad_signatures += d.stats.bad_signatures;
            s.stale_signatures += d.stats.stale_signatures;
            s.truncated += d.stats.truncated;
            s.unknown_messages += d.stats.unknown_messages;
            s.bad_payloads += d.stats.bad_payloads;
        }
        s.frames_tx = self.encoder.frames_tx;
        s
    }

    fn verifier(&self) -> Option<Verifier> {
        self.verifier.clone()
    }

    /// `now` is simulated seconds; `wall_unix_us` the real clock (signing
    /// timestamps must follow real time, not simulated time).
    pub fn handle_packet(&mut self, peer: PeerId, packet: &Packet, now: f64, wall_unix_us: u64) {
        let v = self.verifier();
        let dec = self.decoders.entry(peer).or_insert_with(|| Decoder::new(v));
        let rx = match packet {
            Packet::Datagram(d) => dec.push_datagram(d, wall_unix_us),
            Packet::Stream(d) => dec.push_stream(d, wall_unix_us),
        };
        for Received { header, msg, .. } in rx {
            self.handle_msg(header, &msg, now, wall_unix_us);
        }
        self.flush(wall_unix_us);
    }

    fn handle_msg(&mut self, header: MavHeader, msg: &Msg, now: f64, wall_unix_us: u64) {
        let from = (header.system_id as u8, header.component_id);
        self.autopilot.handle(from, msg, now);
        if let Some(change) = self.autopilot.signing_change.take() {
            // Reply (the STATUSTEXT) still goes out with the old setting.
            self.flush(wall_unix_us);
            self.key = change;
            self.verifier = self.key.clone().map(|k| Verifier::new(k, true));
            self.encoder
                .set_signer(self.key.clone().map(|k| Signer::new(k, 0)));
            let v = self.verifier();
            for d in self.decoders.values_mut() {
                d.set_verifier(v.clone());
            }
            self.autopilot.set_signing_flag(self.key.is_some());
        }
    }

    pub fn tick(&mut self, now: f64, wall_unix_us: u64) {
        self.autopilot.tick(now);
        self.flush(wall_unix_us);
    }

    fn flush(&mut self, wall_unix_us: u64) {
        while let Some(m) = self.autopilot.poll_transmit() {
            let b = self.encoder.encode(&m, wall_unix_us);
            self.out.push_back(b);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    pub fn signing_key(&self) -> Option<&SigningKey> {
        self.key.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialect::MavParamType::*;

    const GCS: (u8, u8) = (255, 190);

    fn drain(ap: &mut Autopilot) -> Vec<Msg> {
        std::iter::from_fn(|| ap.poll_transmit()).collect()
    }

    fn texts(msgs: &[Msg]) -> Vec<String> {
        msgs.iter()
            .filter_map(|m| match m {
                Msg::STATUSTEXT(s) => Some(
                    String::from_utf8_lossy(&s.text[..])
                        .trim_end_matches('\0')
                        .to_string(),
                ),
                _ => None,
            })
            .collect()
    }

    fn acks(msgs: &[Msg]) -> Vec<(dialect::MavCmd, dialect::MavResult)> {
        msgs.iter()
            .filter_map(|m| match m {
                Msg::COMMAND_ACK(a) => Some((a.command, a.result)),
                _ => None,
            })
            .collect()
    }

    fn long(ap: &mut Autopilot, c: dialect::MavCmd, p: [f32; 7]) -> Vec<Msg> {
        let now = ap.now();
        ap.handle(
            GCS,
            &Msg::COMMAND_LONG(dialect::COMMAND_LONG_DATA {
                param1: p[0],
                param2: p[1],
                param3: p[2],
                param4: p[3],
                param5: p[4],
                param6: p[5],
                param7: p[6],
                command: c,
                target_system: 1,
                target_component: 1,
                confirmation: 0,
            }),
            now,
        );
        drain(ap)
    }

    fn param_msg(ap: &mut Autopilot, m: Msg) -> Vec<dialect::PARAM_VALUE_DATA> {
        let now = ap.now();
        ap.handle(GCS, &m, now);
        drain(ap)
            .into_iter()
            .filter_map(|m| match m {
                Msg::PARAM_VALUE(v) => Some(v),
                _ => None,
            })
            .collect()
    }

    fn read(ap: &mut Autopilot, name: &str) -> Vec<dialect::PARAM_VALUE_DATA> {
        let sys = ap.cfg.system_id;
        param_msg(
            ap,
            Msg::PARAM_REQUEST_READ(dialect::PARAM_REQUEST_READ_DATA {
                param_index: -1,
                target_system: sys,
                target_component: 1,
                param_id: name.into(),
            }),
        )
    }

    fn set(ap: &mut Autopilot, name: &str, v: f32) -> Vec<dialect::PARAM_VALUE_DATA> {
        let sys = ap.cfg.system_id;
        param_msg(
            ap,
            Msg::PARAM_SET(dialect::PARAM_SET_DATA {
                param_value: v,
                target_system: sys,
                target_component: 1,
                param_id: name.into(),
                param_type: MAV_PARAM_TYPE_INT8,
            }),
        )
    }

    fn sys_status(ap: &mut Autopilot) -> dialect::SYS_STATUS_DATA {
        ap.emit(dialect::SYS_STATUS_DATA::ID);
        drain(ap)
            .into_iter()
            .rev()
            .find_map(|m| match m {
                Msg::SYS_STATUS(s) => Some(s),
                _ => None,
            })
            .expect("SYS_STATUS")
    }

    fn ekf_flags(ap: &mut Autopilot) -> dialect::EkfStatusFlags {
        ap.emit(dialect::EKF_STATUS_REPORT_DATA::ID);
        drain(ap)
            .into_iter()
            .rev()
            .find_map(|m| match m {
                Msg::EKF_STATUS_REPORT(e) => Some(e.flags),
                _ => None,
            })
            .expect("EKF_STATUS_REPORT")
    }

    #[test]
    fn parameters_on_the_wire() {
        let mut ap = Autopilot::new(AutopilotConfig {
            system_id: 7,
            ..Default::default()
        });
        let v = read(&mut ap, "FENCE_RADIUS");
        assert_eq!(v.len(), 1);
        assert_eq!(
            (v[0].param_value, v[0].param_type),
            (150.0, MAV_PARAM_TYPE_REAL32)
        );
        assert_eq!(read(&mut ap, "MAV_SYSID")[0].param_value, 7.0);
        // Unknown: silence (ArduPilot does not answer).
        assert!(read(&mut ap, "SYSID_THISMAV").is_empty());
        assert!(set(&mut ap, "NO_SUCH_PARAM", 1.0).is_empty());
        // The whole list.
        let all = param_msg(
            &mut ap,
            Msg::PARAM_REQUEST_LIST(dialect::PARAM_REQUEST_LIST_DATA {
                target_system: 7,
                target_component: 1,
            }),
        );
        assert_eq!(all.len(), ap.vehicle.params.len());
        // By index.
        let v = param_msg(
            &mut ap,
            Msg::PARAM_REQUEST_READ(dialect::PARAM_REQUEST_READ_DATA {
                param_index: 3,
                target_system: 7,
                target_component: 1,
                param_id: "".into(),
            }),
        );
        assert_eq!(v[0].param_id, all[3].param_id);
        assert_eq!(v[0].param_index, 3);
        // PARAM_SET: echoed, applied to the vehicle.
        let v = set(&mut ap, "FENCE_ENABLE", 1.0);
        assert_eq!(
            (v[0].param_value, v[0].param_type, v[0].param_index),
            (1.0, MAV_PARAM_TYPE_INT8, u16::MAX)
        );
        assert!(ap.vehicle.fence_enabled);
        assert!(ap.truth().fence_enabled);
        assert_eq!(read(&mut ap, "FENCE_ENABLE")[0].param_value, 1.0);
        set(&mut ap, "FENCE_ENABLE", 0.0);
        assert!(!ap.vehicle.fence_enabled);
        // For another system: ignored.
        let now = ap.now();
        ap.handle(
            GCS,
            &Msg::PARAM_REQUEST_READ(dialect::PARAM_REQUEST_READ_DATA {
                param_index: -1,
                target_system: 9,
                target_component: 1,
                param_id: "FENCE_RADIUS".into(),
            }),
            now,
        );
        assert!(!drain(&mut ap)
            .iter()
            .any(|m| matches!(m, Msg::PARAM_VALUE(_))));
    }

    #[test]
    fn do_fence_enable_switches_enforcement_but_not_the_parameter() {
        let mut ap = Autopilot::new(AutopilotConfig::default());
        assert!(!ap.vehicle.fence_enabled, "ArduCopter's default");
        let m = long(
            &mut ap,
            dialect::MavCmd::MAV_CMD_DO_FENCE_ENABLE,
            [1.0, 0., 0., 0., 0., 0., 0.],
        );
        assert_eq!(
            acks(&m),
            vec![(
                dialect::MavCmd::MAV_CMD_DO_FENCE_ENABLE,
                dialect::MavResult::MAV_RESULT_ACCEPTED
            )]
        );
        assert!(ap.vehicle.fence_enabled);
        // As this firmware does: FENCE_ENABLE reads back unchanged.
        assert_eq!(read(&mut ap, "FENCE_ENABLE")[0].param_value, 0.0);
        long(&mut ap, dialect::MavCmd::MAV_CMD_DO_FENCE_ENABLE, [0.0; 7]);
        assert!(!ap.vehicle.fence_enabled);
        let m = long(
            &mut ap,
            dialect::MavCmd::MAV_CMD_DO_FENCE_ENABLE,
            [7.0, 0., 0., 0., 0., 0., 0.],
        );
        assert_eq!(acks(&m)[0].1, dialect::MavResult::MAV_RESULT_FAILED);
    }

    #[test]
    fn totals_follow_the_lists_on_board() {
        use tiancha_protocol::mission::{cmd, MissionItem};
        let mut ap = Autopilot::new(AutopilotConfig::default());
        let (lat, lon) = (28.45, 117.94);
        ap.lists.fence = (0..3)
            .map(|k| {
                let mut it = MissionItem::nav(
                    cmd::NAV_FENCE_POLYGON_VERTEX_INCLUSION,
                    lat + 0.01 * (k as f64 - 1.0),
                    lon + 0.01 * (k % 2) as f64,
                    0.0,
                );
                it.param1 = 3.0;
                it
            })
            .collect();
        ap.apply_list(MissionType::Fence);
        ap.lists.rally = vec![
            MissionItem::nav(cmd::NAV_RALLY_POINT, lat, lon + 0.001, 20.0),
            MissionItem::nav(cmd::NAV_RALLY_POINT, lat + 0.001, lon, 20.0),
        ];
        ap.apply_list(MissionType::Rally);
        assert_eq!(read(&mut ap, "FENCE_TOTAL")[0].param_value, 3.0);
        assert_eq!(read(&mut ap, "RALLY_TOTAL")[0].param_value, 2.0);
        assert_eq!(ap.vehicle.rally.len(), 2);
        ap.lists.rally.clear();
        ap.apply_list(MissionType::Rally);
        assert_eq!(read(&mut ap, "RALLY_TOTAL")[0].param_value, 0.0);
        assert!(ap.vehicle.rally.is_empty());
        // Read-only to a GCS.
        let now = ap.now();
        ap.handle(
            GCS,
            &Msg::PARAM_SET(dialect::PARAM_SET_DATA {
                param_value: 9.0,
                target_system: 1,
                target_component: 1,
                param_id: "FENCE_TOTAL".into(),
                param_type: MAV_PARAM_TYPE_INT8,
            }),
            now,
        );
        let m = drain(&mut ap);
        assert_eq!(
            texts(&m),
            vec!["Param write denied (FENCE_TOTAL)".to_string()]
        );
        assert_eq!(ap.param("FENCE_TOTAL"), Some(3.0));
    }

    #[test]
    fn not_ready_until_the_ekf_delay_has_passed() {
        use dialect::EkfStatusFlags as F;
        use dialect::MavSysStatusSensor as S;
        let mut ap = Autopilot::new(AutopilotConfig {
            ekf_ready_delay_s: 40.0,
            ..Default::default()
        });
        ap.tick(10.0);
        let boot_texts = texts(&drain(&mut ap));
        assert!(
            boot_texts.iter().any(|t| t.starts_with("GPS 1")),
            "{boot_texts:?}"
        );
        assert!(!ap.vehicle.ekf_ok);
        let f = ekf_flags(&mut ap);
        assert!(!f.contains(F::EKF_POS_HORIZ_ABS) && !f.contains(F::EKF_PRED_POS_HORIZ_ABS));
        assert!(f.contains(F::EKF_ATTITUDE));
        let s = sys_status(&mut ap);
        assert!(s
            .onboard_control_sensors_present
            .contains(S::MAV_SYS_STATUS_PREARM_CHECK));
        assert!(s
            .onboard_control_sensors_enabled
            .contains(S::MAV_SYS_STATUS_PREARM_CHECK));
        assert!(!s
            .onboard_control_sensors_health
            .contains(S::MAV_SYS_STATUS_PREARM_CHECK));
        // Arming: FAILED with ArduPilot's words.
        let m = long(
            &mut ap,
            dialect::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
            [1.0, 0., 0., 0., 0., 0., 0.],
        );
        assert_eq!(
            acks(&m),
            vec![(
                dialect::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
                dialect::MavResult::MAV_RESULT_FAILED
            )]
        );
        assert_eq!(texts(&m), vec!["Arm: Need Position Estimate".to_string()]);
        // Repeated as PreArm every 30 s while disarmed.
        ap.tick(29.9);
        assert!(texts(&drain(&mut ap)).is_empty());
        ap.tick(30.1);
        assert_eq!(
            texts(&drain(&mut ap)),
            vec!["PreArm: Need Position Estimate".to_string()]
        );
        // Ready at 40 s.
        ap.tick(40.1);
        let t = texts(&drain(&mut ap));
        assert!(t.contains(&"EKF3 IMU0 is using GPS".to_string()), "{t:?}");
        let f = ekf_flags(&mut ap);
        assert!(f.contains(F::EKF_POS_HORIZ_ABS | F::EKF_PRED_POS_HORIZ_ABS));
        assert!(!f.contains(F::EKF_CONST_POS_MODE));
        let s = sys_status(&mut ap);
        assert!(s
            .onboard_control_sensors_health
            .contains(S::MAV_SYS_STATUS_PREARM_CHECK));
        // Nothing more to say at 60 s.
        ap.tick(60.1);
        assert!(!texts(&drain(&mut ap))
            .iter()
            .any(|t| t.starts_with("PreArm")));
        let m = long(
            &mut ap,
            dialect::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
            [1.0, 0., 0., 0., 0., 0., 0.],
        );
        assert_eq!(acks(&m)[0].1, dialect::MavResult::MAV_RESULT_ACCEPTED);
    }

    #[test]
    fn default_config_is_ready_after_the_gps_as_before() {
        use dialect::MavSysStatusSensor as S;
        let mut ap = Autopilot::new(AutopilotConfig::default());
        ap.tick(3.1);
        assert!(ap.vehicle.ekf_ok);
        let s = sys_status(&mut ap);
        assert!(s
            .onboard_control_sensors_health
            .contains(S::MAV_SYS_STATUS_PREARM_CHECK));
        // A failing check other than the EKF also clears the bit.
        ap.vehicle.battery_pct = 10.0;
        let s = sys_status(&mut ap);
        assert!(!s
            .onboard_control_sensors_health
            .contains(S::MAV_SYS_STATUS_PREARM_CHECK));
    }

    // ---- PX4 flavour ----

    use tiancha_protocol::mission::{cmd, frame, MissionItem};

    fn px4(ekf_ready_delay_s: f64) -> Autopilot {
        Autopilot::new(AutopilotConfig {
            flavour: Flavour::Px4,
            ekf_ready_delay_s,
            ..Default::default()
        })
    }

    /// Run `secs` of simulated time in 0.1 s ticks; everything sent.
    fn run(ap: &mut Autopilot, secs: f64) -> Vec<Msg> {
        let t0 = ap.now();
        let mut out = vec![];
        for i in 1..=(secs * 10.0).round() as usize {
            ap.tick(t0 + i as f64 * 0.1);
            out.extend(drain(ap));
        }
        out
    }

    /// STATUSTEXTs with PX4's chunks joined (raw: TAB kept).
    fn px4_texts(msgs: &[Msg]) -> Vec<String> {
        let mut v: Vec<String> = vec![];
        let mut last_id = 0;
        for m in msgs {
            if let Msg::STATUSTEXT(s) = m {
                let n = s.text.iter().position(|&b| b == 0).unwrap_or(50);
                let t = String::from_utf8_lossy(&s.text[..n]).to_string();
                if s.id != 0 && s.id == last_id && s.chunk_seq > 0 {
                    v.last_mut().unwrap().push_str(&t);
                } else {
                    v.push(t);
                }
                last_id = s.id;
            }
        }
        v
    }

    fn reached(msgs: &[Msg]) -> Vec<u16> {
        msgs.iter()
            .filter_map(|m| match m {
                Msg::MISSION_ITEM_REACHED(r) => Some(r.seq),
                _ => None,
            })
            .collect()
    }

    fn heartbeat(ap: &mut Autopilot) -> dialect::HEARTBEAT_DATA {
        ap.emit(dialect::HEARTBEAT_DATA::ID);
        drain(ap)
            .into_iter()
            .rev()
            .find_map(|m| match m {
                Msg::HEARTBEAT(h) => Some(h),
                _ => None,
            })
            .expect("HEARTBEAT")
    }

    /// A point `n` m north and `e` m east of home.
    fn at(ap: &Autopilot, n: f64, e: f64) -> (f64, f64) {
        let ll = ap.vehicle.frame.from_ned(Vector3::new(n, e, 0.0));
        (ll.lat_deg, ll.lon_deg)
    }

    fn set_list(ap: &mut Autopilot, t: MissionType, items: Vec<MissionItem>) {
        match t {
            MissionType::Mission => ap.lists.mission = items,
            MissionType::Fence => ap.lists.fence = items,
            MissionType::Rally => ap.lists.rally = items,
        }
        ap.apply_list(t);
    }

    /// Takeoff to 10 m, a speed change (frame 2), two waypoints 60 m out.
    fn px4_mission(ap: &Autopilot) -> Vec<MissionItem> {
        let (lat0, lon0) = at(ap, 0.0, 0.0);
        let (lat1, lon1) = at(ap, 60.0, 0.0);
        let (lat2, lon2) = at(ap, 60.0, 60.0);
        let mut speed = MissionItem::command(cmd::DO_CHANGE_SPEED, [1.0, 8.0, -1.0, 0.0]);
        speed.frame = frame::MISSION;
        vec![
            MissionItem::nav(cmd::NAV_TAKEOFF, lat0, lon0, 10.0),
            speed,
            MissionItem::nav(cmd::NAV_WAYPOINT, lat1, lon1, 15.0),
            MissionItem::nav(cmd::NAV_WAYPOINT, lat2, lon2, 15.0),
        ]
    }

    const AUTO_MISSION: [f32; 7] = [1., 4., 4., 0., 0., 0., 0.];
    const ARM: [f32; 7] = [1., 0., 0., 0., 0., 0., 0.];

    #[test]
    fn px4_heartbeat_boots_in_auto_loiter_and_sets_modes_by_main_and_sub() {
        let mut ap = px4(0.0);
        run(&mut ap, 3.5);
        let h = heartbeat(&mut ap);
        assert_eq!(h.autopilot, dialect::MavAutopilot::MAV_AUTOPILOT_PX4);
        assert_eq!(h.mavtype, dialect::MavType::MAV_TYPE_QUADROTOR);
        assert_eq!(h.custom_mode, (4 << 16) | (3 << 24), "AUTO.LOITER");
        let m = px4_mission(&ap);
        set_list(&mut ap, MissionType::Mission, m);
        let m = long(&mut ap, dialect::MavCmd::MAV_CMD_DO_SET_MODE, AUTO_MISSION);
        assert_eq!(acks(&m)[0].1, dialect::MavResult::MAV_RESULT_ACCEPTED);
        assert_eq!(ap.vehicle.mode, Mode::Auto);
        assert_eq!(heartbeat(&mut ap).custom_mode, (4 << 16) | (4 << 24));
        for (sub, mode) in [(5, Mode::Rtl), (6, Mode::Land), (3, Mode::Loiter)] {
            let m = long(
                &mut ap,
                dialect::MavCmd::MAV_CMD_DO_SET_MODE,
                [1., 4., sub as f32, 0., 0., 0., 0.],
            );
            assert_eq!(acks(&m)[0].1, dialect::MavResult::MAV_RESULT_ACCEPTED);
            assert_eq!(ap.vehicle.mode, mode);
            assert_eq!(heartbeat(&mut ap).custom_mode, (4 << 16) | (sub << 24));
        }
        // ArduCopter's numbering means nothing here.
        let m = long(
            &mut ap,
            dialect::MavCmd::MAV_CMD_DO_SET_MODE,
            [1., 6., 0., 0., 0., 0., 0.],
        );
        assert_ne!(acks(&m)[0].1, dialect::MavResult::MAV_RESULT_ACCEPTED);
        // SET_MODE with PX4's custom mode.
        let now = ap.now();
        ap.handle(
            GCS,
            &Msg::SET_MODE(dialect::SET_MODE_DATA {
                custom_mode: (4 << 16) | (5 << 24),
                target_system: 1,
                base_mode: dialect::MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
            }),
            now,
        );
        assert_eq!(ap.vehicle.mode, Mode::Rtl);
    }

    #[test]
    fn px4_arming_refusal_readiness_bits_and_no_ekf_report() {
        use dialect::MavSysStatusSensor as S;
        let mut ap = px4(30.0);
        let early = run(&mut ap, 5.0);
        assert!(!early.iter().any(|m| matches!(m, Msg::EKF_STATUS_REPORT(_))));
        let m = long(&mut ap, dialect::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM, ARM);
        assert_eq!(
            acks(&m),
            vec![(
                dialect::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
                dialect::MavResult::MAV_RESULT_TEMPORARILY_REJECTED
            )]
        );
        assert_eq!(
            px4_texts(&m),
            vec!["Arming denied: Resolve system health failures first\t".to_string()]
        );
        let s = sys_status(&mut ap);
        assert!(!s
            .onboard_control_sensors_present
            .contains(S::MAV_SYS_STATUS_PREARM_CHECK));
        assert!(!s
            .onboard_control_sensors_enabled
            .contains(S::MAV_SYS_STATUS_PREARM_CHECK));
        assert!(!s
            .onboard_control_sensors_health
            .contains(S::MAV_SYS_STATUS_PREARM_CHECK));
        // No EKF_STATUS_REPORT on request either; no ArduPilot PreArm.
        let m = long(
            &mut ap,
            dialect::MavCmd::MAV_CMD_REQUEST_MESSAGE,
            [
                dialect::EKF_STATUS_REPORT_DATA::ID as f32,
                0.,
                0.,
                0.,
                0.,
                0.,
                0.,
            ],
        );
        assert_eq!(acks(&m)[0].1, dialect::MavResult::MAV_RESULT_FAILED);
        let later = run(&mut ap, 26.0);
        assert!(!later.iter().any(|m| matches!(m, Msg::EKF_STATUS_REPORT(_))));
        assert!(!px4_texts(&later).iter().any(|t| t.contains("PreArm")));
        let s = sys_status(&mut ap);
        assert!(s
            .onboard_control_sensors_health
            .contains(S::MAV_SYS_STATUS_PREARM_CHECK));
        assert!(!s
            .onboard_control_sensors_present
            .contains(S::MAV_SYS_STATUS_PREARM_CHECK));
        // Armed in AUTO.LOITER without a takeoff: disarmed after
        // COM_DISARM_PRFLT (10 s).
        let m = long(&mut ap, dialect::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM, ARM);
        assert_eq!(acks(&m)[0].1, dialect::MavResult::MAV_RESULT_ACCEPTED);
        assert_eq!(
            px4_texts(&m),
            vec!["Armed by external command\t".to_string()]
        );
        run(&mut ap, 9.5);
        assert!(ap.vehicle.armed);
        run(&mut ap, 1.0);
        assert!(!ap.vehicle.armed, "COM_DISARM_PRFLT");
        // COM_DISARM_PRFLT 0: never.
        set(&mut ap, "COM_DISARM_PRFLT", 0.0);
        long(&mut ap, dialect::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM, ARM);
        run(&mut ap, 15.0);
        assert!(ap.vehicle.armed);
    }

    #[test]
    fn px4_arming_in_auto_mission_flies_it_reporting_every_item_and_repeating_the_last() {
        let mut ap = px4(0.0);
        run(&mut ap, 3.5);
        let m = px4_mission(&ap);
        set_list(&mut ap, MissionType::Mission, m);
        long(&mut ap, dialect::MavCmd::MAV_CMD_DO_SET_MODE, AUTO_MISSION);
        let m = long(&mut ap, dialect::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM, ARM);
        assert_eq!(acks(&m)[0].1, dialect::MavResult::MAV_RESULT_ACCEPTED);
        let mut out = vec![];
        for _ in 0..120 {
            out.extend(run(&mut ap, 1.0));
            if reached(&out).contains(&3) {
                break;
            }
        }
        assert!(!ap.vehicle.landed);
        let mut r = reached(&out);
        r.dedup(); // (each one repeated until the next)
        assert_eq!(r, vec![0, 1, 2, 3], "every item, seq 0 first");
        let v = &ap.vehicle;
        assert!(
            (v.pos - Vector3::new(60.0, 60.0, -15.0)).norm() < 4.0,
            "{}",
            v.pos
        );
        // The last one again about once a second.
        let more = reached(&run(&mut ap, 5.05));
        assert!((4..=6).contains(&more.len()), "{more:?}");
        assert!(more.iter().all(|&s| s == 3));
        // MISSION_CURRENT counts from 0 (no home item).
        ap.emit(dialect::MISSION_CURRENT_DATA::ID);
        let cur = drain(&mut ap)
            .into_iter()
            .find_map(|m| match m {
                Msg::MISSION_CURRENT(c) => Some(c),
                _ => None,
            })
            .unwrap();
        assert_eq!((cur.seq, cur.total), (3, 4));
    }

    #[test]
    fn px4_without_a_takeoff_item_climbs_to_the_first_waypoint() {
        let mut ap = px4(0.0);
        run(&mut ap, 3.5);
        let (lat, lon) = at(&ap, 50.0, 0.0);
        set_list(
            &mut ap,
            MissionType::Mission,
            vec![MissionItem::nav(cmd::NAV_WAYPOINT, lat, lon, 12.0)],
        );
        long(&mut ap, dialect::MavCmd::MAV_CMD_DO_SET_MODE, AUTO_MISSION);
        long(&mut ap, dialect::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM, ARM);
        // Straight up first.
        let mut max_horiz_below_10m = 0.0f64;
        let mut out = vec![];
        for _ in 0..60 {
            out.extend(run(&mut ap, 0.5));
            let v = &ap.vehicle;
            if v.alt_rel() < 11.0 {
                max_horiz_below_10m = max_horiz_below_10m.max(v.pos.xy().norm());
            }
            if reached(&out).contains(&0) {
                break;
            }
        }
        assert_eq!(reached(&out), vec![0]);
        assert!(max_horiz_below_10m < 1.0, "{max_horiz_below_10m}");
        assert!(ap.vehicle.armed, "took off, not auto-disarmed");
    }

    /// PX4, ready, climbed to 20 m in AUTO.TAKEOFF over home.
    fn px4_flying() -> Autopilot {
        let mut ap = px4(0.0);
        run(&mut ap, 3.5);
        long(&mut ap, dialect::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM, ARM);
        let amsl = ap.vehicle.home.alt_m as f32 + 20.0;
        let m = long(
            &mut ap,
            dialect::MavCmd::MAV_CMD_NAV_TAKEOFF,
            [0., 0., 0., f32::NAN, f32::NAN, f32::NAN, amsl],
        );
        assert_eq!(acks(&m)[0].1, dialect::MavResult::MAV_RESULT_ACCEPTED);
        assert_eq!(
            heartbeat(&mut ap).custom_mode,
            (4 << 16) | (2 << 24),
            "AUTO.TAKEOFF"
        );
        run(&mut ap, 15.0);
        assert!(
            (ap.vehicle.alt_rel() - 20.0).abs() < 0.5,
            "AMSL takeoff altitude"
        );
        ap
    }

    #[test]
    fn px4_command_answers() {
        let mut ap = px4_flying();
        use dialect::MavCmd::*;
        use dialect::MavResult::*;
        for c in [MAV_CMD_DO_PAUSE_CONTINUE, MAV_CMD_DO_FENCE_ENABLE] {
            let m = long(&mut ap, c, [1., 0., 0., 0., 0., 0., 0.]);
            assert_eq!(acks(&m), vec![(c, MAV_RESULT_UNSUPPORTED)]);
        }
        let m = px4_mission(&ap);
        set_list(&mut ap, MissionType::Mission, m);
        let m = long(&mut ap, MAV_CMD_MISSION_START, [0.; 7]);
        assert_eq!(acks(&m)[0].1, MAV_RESULT_ACCEPTED);
        assert_eq!(ap.vehicle.mode, Mode::Auto);
        let m = long(&mut ap, MAV_CMD_NAV_RETURN_TO_LAUNCH, [0.; 7]);
        assert_eq!(acks(&m)[0].1, MAV_RESULT_ACCEPTED);
        assert_eq!(ap.vehicle.mode, Mode::Rtl);
        let m = long(&mut ap, MAV_CMD_NAV_LAND, [0.; 7]);
        assert_eq!(acks(&m)[0].1, MAV_RESULT_ACCEPTED);
        assert_eq!(ap.vehicle.mode, Mode::Land);
        run(&mut ap, 40.0);
        assert!(ap.vehicle.landed && !ap.vehicle.armed);
    }

    #[test]
    fn px4_parameters_on_the_wire_bytewise() {
        let mut ap = Autopilot::new(AutopilotConfig {
            flavour: Flavour::Px4,
            system_id: 6,
            ..Default::default()
        });
        let v = read(&mut ap, "GF_ACTION");
        assert_eq!(v[0].param_type, MAV_PARAM_TYPE_INT32);
        assert_eq!(v[0].param_value.to_bits(), 2);
        assert_eq!(read(&mut ap, "MAV_SYS_ID")[0].param_value.to_bits(), 6);
        for (name, value) in [
            ("GF_MAX_HOR_DIST", 0.0),
            ("GF_MAX_VER_DIST", 0.0),
            ("RTL_RETURN_ALT", 30.0),
            ("COM_DISARM_PRFLT", 10.0),
            ("NAV_ACC_RAD", 2.0),
            ("MIS_TAKEOFF_ALT", 2.5),
        ] {
            let v = read(&mut ap, name);
            assert_eq!(
                (v[0].param_value, v[0].param_type),
                (value, MAV_PARAM_TYPE_REAL32),
                "{name}"
            );
        }
        assert_eq!(read(&mut ap, "RTL_TYPE")[0].param_value.to_bits(), 0);
        assert!(read(&mut ap, "FENCE_ENABLE").is_empty(), "not a PX4 name");
        // PARAM_SET echoes in the same encoding, and GF_ACTION < 2 stops
        // enforcing the fence.
        assert!(ap.vehicle.fence_enabled);
        let v = set(&mut ap, "GF_ACTION", f32::from_bits(1));
        assert_eq!(
            (v[0].param_value.to_bits(), v[0].param_type),
            (1, MAV_PARAM_TYPE_INT32)
        );
        assert!(!ap.vehicle.fence_enabled);
        assert!(!ap.truth().fence_enabled);
    }

    fn circle_fence(ap: &Autopilot, radius: f32) -> Vec<MissionItem> {
        let (lat, lon) = at(ap, 0.0, 0.0);
        let mut c = MissionItem::nav(cmd::NAV_FENCE_CIRCLE_INCLUSION, lat, lon, 0.0);
        c.frame = frame::GLOBAL_INT;
        c.param1 = radius;
        vec![c]
    }

    fn go(ap: &mut Autopilot, n: f64, e: f64) {
        let (lat, lon) = at(ap, n, e);
        ap.vehicle
            .goto(
                tiancha_geometry::geodesy::LatLonAlt::new(lat, lon, 0.0),
                20.0,
                None,
            )
            .unwrap();
    }

    #[test]
    fn px4_enforces_the_uploaded_fence_without_enabling_and_gf_action_decides() {
        // GF_ACTION 2 (default): hold at the edge.
        let mut ap = px4_flying();
        let f = circle_fence(&ap, 100.0);
        set_list(&mut ap, MissionType::Fence, f);
        go(&mut ap, 300.0, 0.0);
        let out = run(&mut ap, 60.0);
        let t = px4_texts(&out);
        assert!(
            t.contains(&"Geofence violation: approaching or outside geofence\t".to_string()),
            "{t:?}"
        );
        assert_eq!(ap.vehicle.mode, Mode::Loiter);
        let d = ap.vehicle.pos.xy().norm();
        assert!((100.0..115.0).contains(&d), "held at {d:.1} m");
        // GF_ACTION 3: return.
        let mut ap = px4_flying();
        let f = circle_fence(&ap, 100.0);
        set_list(&mut ap, MissionType::Fence, f);
        set(&mut ap, "GF_ACTION", f32::from_bits(3));
        go(&mut ap, 300.0, 0.0);
        run(&mut ap, 40.0);
        assert_eq!(ap.vehicle.mode, Mode::Rtl);
        // GF_ACTION 5 and the GF_MAX_HOR_DIST circle (no fence uploaded).
        let mut ap = px4_flying();
        set(&mut ap, "GF_ACTION", f32::from_bits(5));
        set(&mut ap, "GF_MAX_HOR_DIST", 80.0);
        go(&mut ap, 300.0, 0.0);
        run(&mut ap, 40.0);
        assert_eq!(ap.vehicle.mode, Mode::Land);
        // GF_ACTION 1: only warns (not enforced).
        let mut ap = px4_flying();
        set(&mut ap, "GF_ACTION", f32::from_bits(1));
        set(&mut ap, "GF_MAX_HOR_DIST", 80.0);
        go(&mut ap, 150.0, 0.0);
        run(&mut ap, 40.0);
        assert_eq!(ap.vehicle.mode, Mode::Guided);
    }

    fn rally_point(ap: &Autopilot, n: f64, e: f64, f: u8, z: f32) -> MissionItem {
        let (lat, lon) = at(ap, n, e);
        let mut it = MissionItem::nav(cmd::NAV_RALLY_POINT, lat, lon, z);
        it.frame = f;
        it
    }

    #[test]
    fn px4_rtl_lands_at_the_nearest_frame_0_rally_point_and_complains_of_others() {
        let mut ap = px4_flying();
        let amsl = ap.vehicle.home.alt_m as f32 + 25.0;
        let r = vec![
            rally_point(&ap, 400.0, 0.0, frame::GLOBAL, amsl),
            rally_point(&ap, 380.0, 0.0, frame::GLOBAL_RELATIVE_ALT_INT, 25.0),
        ];
        set_list(&mut ap, MissionType::Rally, r);
        // Once a second while the frame-6 point is on board.
        let out = run(&mut ap, 3.05);
        let warnings = px4_texts(&out)
            .iter()
            .filter(|t| *t == "RTL: unsupported MAV_FRAME\t")
            .count();
        assert!((3..=4).contains(&warnings), "{warnings}");
        // 450 m north: the frame-0 point (50 m) beats home; the nearer
        // frame-6 one is not used. No RALLY_LIMIT_KM.
        go(&mut ap, 450.0, 0.0);
        run(&mut ap, 120.0);
        long(
            &mut ap,
            dialect::MavCmd::MAV_CMD_NAV_RETURN_TO_LAUNCH,
            [0.; 7],
        );
        let d = ap.vehicle.rtl_destination();
        assert!(
            (d.xy() - nalgebra::Vector2::new(400.0, 0.0)).norm() < 0.1,
            "{d}"
        );
        assert!((d.z + 25.0).abs() < 0.1, "frame 0 is AMSL: {d}");
        run(&mut ap, 120.0);
        assert!(ap.vehicle.landed && !ap.vehicle.armed);
        assert!((ap.vehicle.pos.xy() - nalgebra::Vector2::new(400.0, 0.0)).norm() < 1.0);
        // Only a frame-6 point: home.
        let mut ap = px4_flying();
        let r = vec![rally_point(
            &ap,
            380.0,
            0.0,
            frame::GLOBAL_RELATIVE_ALT_INT,
            25.0,
        )];
        set_list(&mut ap, MissionType::Rally, r);
        go(&mut ap, 400.0, 0.0);
        run(&mut ap, 120.0);
        long(
            &mut ap,
            dialect::MavCmd::MAV_CMD_NAV_RETURN_TO_LAUNCH,
            [0.; 7],
        );
        assert_eq!(ap.vehicle.rtl_destination(), Vector3::zeros());
        // Nothing more to complain about once the points are gone.
        set_list(&mut ap, MissionType::Rally, vec![]);
        drain(&mut ap);
        let out = run(&mut ap, 3.0);
        assert!(!px4_texts(&out)
            .iter()
            .any(|t| t.starts_with("RTL: unsupported")));
    }

    #[test]
    fn px4_statustexts_end_with_a_tab_and_arducopters_do_not() {
        let mut ap = px4_flying();
        let _ = long(&mut ap, dialect::MavCmd::MAV_CMD_NAV_LAND, [0.; 7]);
        let t = px4_texts(&run(&mut ap, 40.0));
        assert!(!t.is_empty());
        assert!(t.iter().all(|t| t.ends_with('\t')), "{t:?}");
        let mut ap = Autopilot::new(AutopilotConfig::default());
        let t = texts(&run(&mut ap, 3.5));
        assert!(
            !t.is_empty() && t.iter().all(|t| !t.ends_with('\t')),
            "{t:?}"
        );
    }
}
