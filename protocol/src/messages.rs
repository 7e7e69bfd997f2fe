//! The typed messages. Field names carry their units (`_deg`, `_m`, `_mps`,
//! `_unix_ms`, `_pct`); positions are WGS84 degrees, altitudes metres AMSL
//! unless the name says `_rel` (above home) or `_agl`.

use base64::Engine;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topic::DroneId;
use crate::validate::{self as v, Validate, ValidationError};
use crate::MAX_SNAPSHOT_BYTES;
#[allow(unused_imports)] // referenced by doc links
use crate::SCHEMA_VERSION;

/// The message kinds, each with its schema version field. Implemented by
/// every top-level payload so generic code (codec, spool, store) can tell
/// them apart.
pub trait Message: Serialize + for<'de> Deserialize<'de> + Validate {
    /// A short name used in errors and logs (`"alert"`, `"telemetry"`, ...).
    const KIND: &'static str;
}

/// A WGS84 point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lat_deg: f64,
    pub lon_deg: f64,
}

impl GeoPoint {
    pub const fn new(lat_deg: f64, lon_deg: f64) -> Self {
        Self { lat_deg, lon_deg }
    }
}

impl Validate for GeoPoint {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::in_range(at, "lat_deg", self.lat_deg, -90.0, 90.0)?;
        v::in_range(at, "lon_deg", self.lon_deg, -180.0, 180.0)
    }
}

/// A WGS84 position with altitude.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub lat_deg: f64,
    pub lon_deg: f64,
    /// Metres above mean sea level.
    pub alt_m: f64,
    /// Metres above home, when home is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_rel_m: Option<f64>,
}

impl Validate for Position {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        GeoPoint::new(self.lat_deg, self.lon_deg).validate_at(at)?;
        v::in_range(at, "alt_m", self.alt_m, -1_000.0, 20_000.0)?;
        v::opt_in_range(at, "alt_rel_m", self.alt_rel_m, -2_000.0, 20_000.0)
    }
}

// ---------------------------------------------------------------- status

/// Retained on `.../status`. The broker publishes the last will (a status
/// with `online: false`) when the companion vanishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroneStatus {
    /// Payload schema version, [`SCHEMA_VERSION`] when written by this build.
    pub schema: u32,
    pub drone_id: DroneId,
    pub t_unix_ms: i64,
    pub online: bool,
    /// Free text such as "patrolling", "idle", "offline (last will)".
    #[serde(default)]
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default)]
    pub armed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<f64>,
    #[serde(default)]
    pub links: LinkStates,
    /// Entries waiting in the companion's spool.
    #[serde(default)]
    pub spool_depth: u64,
    #[serde(default)]
    pub software_version: String,
    /// Whether the autopilot would allow a launch now, and why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,
    /// Where a return-to-launch would take the drone now (home or a rally
    /// point), as the autopilot will choose it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtl_target: Option<RtlTarget>,
    /// The autopilot's fence as last confirmed by reading it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<String>,
}

/// The autopilot's readiness to launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    /// Why not, in the autopilot's words where it gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where a return-to-launch goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RtlTarget {
    pub position: GeoPoint,
    /// 1-based rally point number; `None` is home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rally_point: Option<u32>,
    pub description: String,
}

/// Health of each of the companion's links.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStates {
    pub autopilot: LinkState,
    pub camera: LinkState,
    pub ground: LinkState,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    #[default]
    Unknown,
    Up,
    Down,
}

impl Message for DroneStatus {
    const KIND: &'static str = "status";
}

impl Validate for DroneStatus {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::timestamp(at, "t_unix_ms", self.t_unix_ms)?;
        v::max_len(at, "state", &self.state, 200)?;
        v::opt_in_range(at, "battery_pct", self.battery_pct, 0.0, 100.0)?;
        if let Some(m) = &self.mode {
            v::max_len(at, "mode", m, 64)?;
        }
        if let Some(r) = &self.readiness {
            if let Some(t) = &r.reason {
                v::max_len(at, "readiness.reason", t, 300)?;
            }
        }
        if let Some(r) = &self.rtl_target {
            r.position
                .validate_at(&format!("{at}.rtl_target.position"))?;
            v::max_len(at, "rtl_target.description", &r.description, 200)?;
        }
        if let Some(f) = &self.fence {
            v::max_len(at, "fence", f, 500)?;
        }
        v::max_len(at, "software_version", &self.software_version, 64)
    }
}

// ---------------------------------------------------------------- telemetry

/// Published at 1–5 Hz on `.../telemetry`, QoS 0. Never spooled: a stale
/// position is worth less than a fresh one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Payload schema version, [`SCHEMA_VERSION`] when written by this build.
    pub schema: u32,
    pub drone_id: DroneId,
    pub t_unix_ms: i64,
    pub position: Position,
    /// North, east, down velocity (m/s).
    #[serde(default)]
    pub velocity_ned_mps: [f64; 3],
    pub attitude: Attitude,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gimbal: Option<GimbalAttitude>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery: Option<Battery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps: Option<GpsInfo>,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub armed: bool,
    #[serde(default)]
    pub in_air: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mission: Option<MissionProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<Position>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Attitude {
    pub roll_deg: f64,
    pub pitch_deg: f64,
    /// Heading, degrees clockwise from true north.
    pub yaw_deg: f64,
}

impl Validate for Attitude {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::in_range(at, "roll_deg", self.roll_deg, -180.0, 180.0)?;
        v::in_range(at, "pitch_deg", self.pitch_deg, -90.0, 90.0)?;
        v::in_range(at, "yaw_deg", self.yaw_deg, -360.0, 360.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GimbalAttitude {
    /// Negative looks down; -90 is nadir.
    pub pitch_deg: f64,
    /// Relative to the vehicle's nose.
    pub yaw_deg: f64,
}

impl Validate for GimbalAttitude {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::in_range(at, "pitch_deg", self.pitch_deg, -180.0, 180.0)?;
        v::in_range(at, "yaw_deg", self.yaw_deg, -360.0, 360.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Battery {
    pub remaining_pct: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voltage_v: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_a: Option<f64>,
}

impl Validate for Battery {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::in_range(at, "remaining_pct", self.remaining_pct, 0.0, 100.0)?;
        v::opt_in_range(at, "voltage_v", self.voltage_v, 0.0, 200.0)?;
        v::opt_in_range(at, "current_a", self.current_a, -500.0, 500.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GpsInfo {
    /// MAVLink GPS_FIX_TYPE (0 none … 3 3D, 4 DGPS, 5/6 RTK).
    pub fix_type: u8,
    pub satellites: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdop: Option<f64>,
}

impl Validate for GpsInfo {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        if self.fix_type > 8 {
            return Err(v::fail(
                at,
                "fix_type",
                "must be a MAVLink GPS_FIX_TYPE (0-8)",
            ));
        }
        v::opt_in_range(at, "hdop", self.hdop, 0.0, 100.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissionProgress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mission_id: Option<Uuid>,
    pub current_seq: u32,
    pub total: u32,
}

impl Message for Telemetry {
    const KIND: &'static str = "telemetry";
}

impl Validate for Telemetry {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::timestamp(at, "t_unix_ms", self.t_unix_ms)?;
        self.position.validate_at(&v::path(at, "position"))?;
        for (i, c) in self.velocity_ned_mps.iter().enumerate() {
            v::in_range(at, &format!("velocity_ned_mps[{i}]"), *c, -200.0, 200.0)?;
        }
        self.attitude.validate_at(&v::path(at, "attitude"))?;
        if let Some(g) = &self.gimbal {
            g.validate_at(&v::path(at, "gimbal"))?;
        }
        if let Some(b) = &self.battery {
            b.validate_at(&v::path(at, "battery"))?;
        }
        if let Some(g) = &self.gps {
            g.validate_at(&v::path(at, "gps"))?;
        }
        if let Some(h) = &self.home {
            h.validate_at(&v::path(at, "home"))?;
        }
        v::max_len(at, "mode", &self.mode, 64)
    }
}

// ---------------------------------------------------------------- alert

/// What an alert is about. Categories decide routing at the ground station
/// ("2+N": safety/stability → governance centre, livelihood → hotline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// N or more people close together for some time.
    Gathering,
    /// A person or vehicle inside a danger zone (reservoir bank, site).
    Intrusion,
    Fire,
    Smoke,
    Flood,
    TrafficAccident,
    IllegalDumping,
    IllegalConstruction,
    RoadDamage,
    /// A hazard class of a drop-in model that has no category of its own.
    OtherHazard,
}

impl Category {
    pub const ALL: [Category; 10] = [
        Category::Gathering,
        Category::Intrusion,
        Category::Fire,
        Category::Smoke,
        Category::Flood,
        Category::TrafficAccident,
        Category::IllegalDumping,
        Category::IllegalConstruction,
        Category::RoadDamage,
        Category::OtherHazard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Gathering => "gathering",
            Category::Intrusion => "intrusion",
            Category::Fire => "fire",
            Category::Smoke => "smoke",
            Category::Flood => "flood",
            Category::TrafficAccident => "traffic_accident",
            Category::IllegalDumping => "illegal_dumping",
            Category::IllegalConstruction => "illegal_construction",
            Category::RoadDamage => "road_damage",
            Category::OtherHazard => "other_hazard",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An alert: one per incident, raised by the companion when an event rule
/// fires, published QoS 1 on `.../alerts` and kept in the spool until the
/// broker has it. Later changes to the incident travel as
/// [`EventKind::IncidentUpdate`] referring to `alert_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Payload schema version, [`SCHEMA_VERSION`] when written by this build.
    pub schema: u32,
    /// UUID v7, made on the drone when the incident is first seen.
    pub alert_id: Uuid,
    pub drone_id: DroneId,
    pub category: Category,
    /// 0..1, the rule's confidence in the incident.
    pub confidence: f64,
    /// When the incident was first seen.
    pub t_first_unix_ms: i64,
    /// When the rule fired (the alert's time).
    pub t_unix_ms: i64,
    /// Whether `location` holds a geotag; `unknown` when the autopilot link
    /// was lost and the camera pose could not be known.
    pub location_status: LocationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Geotag>,
    /// Where the drone was when it saw the incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observer: Option<Position>,
    /// For gatherings: how many people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_count: Option<u32>,
    /// Ground extent of the incident (largest distance between members), m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extent_m: Option<f64>,
    /// The tracks behind the incident.
    #[serde(default)]
    pub tracks: Vec<TrackRef>,
    /// Which rule fired and what it saw, for the operator.
    pub rule: RuleInfo,
    /// Name of the danger zone for intrusions, of the rule zone otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mission_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocationStatus {
    Geotagged,
    Unknown,
}

/// A ground position with its 1-σ uncertainty ellipse.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Geotag {
    pub lat_deg: f64,
    pub lon_deg: f64,
    /// Ground altitude used for the intersection (m AMSL), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_m: Option<f64>,
    pub sigma: Ellipse,
}

/// 1-σ uncertainty ellipse on the ground.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ellipse {
    pub semi_major_m: f64,
    pub semi_minor_m: f64,
    /// Direction of the major axis, degrees clockwise from north.
    pub orientation_deg: f64,
}

impl Validate for Geotag {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        GeoPoint::new(self.lat_deg, self.lon_deg).validate_at(at)?;
        v::opt_in_range(at, "alt_m", self.alt_m, -1_000.0, 20_000.0)?;
        let s = v::path(at, "sigma");
        v::in_range(&s, "semi_major_m", self.sigma.semi_major_m, 0.0, 100_000.0)?;
        v::in_range(&s, "semi_minor_m", self.sigma.semi_minor_m, 0.0, 100_000.0)?;
        v::in_range(
            &s,
            "orientation_deg",
            self.sigma.orientation_deg,
            -360.0,
            360.0,
        )?;
        if self.sigma.semi_minor_m > self.sigma.semi_major_m {
            return Err(v::fail(&s, "semi_minor_m", "is larger than semi_major_m"));
        }
        Ok(())
    }
}

/// A track behind an incident, with its recent ground path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackRef {
    pub track_id: u64,
    /// Detector class name (e.g. "person").
    pub class: String,
    #[serde(default)]
    pub path: Vec<GeoPoint>,
}

impl Validate for TrackRef {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::non_empty(at, "class", &self.class, 64)?;
        v::max_items(at, "path", &self.path, 512)?;
        v::each(at, "path", &self.path)
    }
}

/// Which rule fired, with a human-readable account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleInfo {
    pub name: String,
    /// e.g. "12 people within 15 m for 180 s (threshold 8 people, 60 s)".
    #[serde(default)]
    pub detail: String,
}

/// A JPEG snapshot (the annotated frame), base64 in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub width: u32,
    pub height: u32,
    #[serde(with = "b64")]
    pub jpeg: Vec<u8>,
}

impl Validate for Snapshot {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        if self.jpeg.len() > MAX_SNAPSHOT_BYTES {
            return Err(v::fail(
                at,
                "jpeg",
                format!(
                    "{} bytes is larger than the limit of {MAX_SNAPSHOT_BYTES}",
                    self.jpeg.len()
                ),
            ));
        }
        if !self.jpeg.starts_with(&[0xFF, 0xD8, 0xFF]) {
            return Err(v::fail(
                at,
                "jpeg",
                "is not a JPEG (no FF D8 FF start-of-image)",
            ));
        }
        if self.width == 0 || self.height == 0 || self.width > 16_384 || self.height > 16_384 {
            return Err(v::fail(
                at,
                "width",
                format!(
                    "{}x{} is not a plausible image size",
                    self.width, self.height
                ),
            ));
        }
        Ok(())
    }
}

impl Message for Alert {
    const KIND: &'static str = "alert";
}

impl Validate for Alert {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::in_range(at, "confidence", self.confidence, 0.0, 1.0)?;
        v::timestamp(at, "t_first_unix_ms", self.t_first_unix_ms)?;
        v::timestamp(at, "t_unix_ms", self.t_unix_ms)?;
        if self.t_first_unix_ms > self.t_unix_ms {
            return Err(v::fail(at, "t_first_unix_ms", "is after t_unix_ms"));
        }
        match (self.location_status, &self.location) {
            (LocationStatus::Geotagged, None) => {
                return Err(v::fail(
                    at,
                    "location",
                    "is missing but location_status is geotagged",
                ))
            }
            (LocationStatus::Unknown, Some(_)) => {
                return Err(v::fail(
                    at,
                    "location",
                    "is present but location_status is unknown",
                ))
            }
            (_, Some(g)) => g.validate_at(&v::path(at, "location"))?,
            _ => {}
        }
        if let Some(o) = &self.observer {
            o.validate_at(&v::path(at, "observer"))?;
        }
        if let Some(n) = self.person_count {
            if n > 100_000 {
                return Err(v::fail(at, "person_count", format!("{n} is implausible")));
            }
        }
        v::opt_in_range(at, "extent_m", self.extent_m, 0.0, 100_000.0)?;
        v::max_items(at, "tracks", &self.tracks, 1_000)?;
        v::each(at, "tracks", &self.tracks)?;
        v::non_empty(&v::path(at, "rule"), "name", &self.rule.name, 64)?;
        v::max_len(&v::path(at, "rule"), "detail", &self.rule.detail, 2_000)?;
        if let Some(z) = &self.zone {
            v::max_len(at, "zone", z, 200)?;
        }
        if let Some(s) = &self.snapshot {
            s.validate_at(&v::path(at, "snapshot"))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- events

/// Something that happened on the drone, QoS 1 on `.../events`, spooled
/// like alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroneEvent {
    /// Payload schema version, [`SCHEMA_VERSION`] when written by this build.
    pub schema: u32,
    /// UUID v7, made where the event happened.
    pub event_id: Uuid,
    pub drone_id: DroneId,
    pub t_unix_ms: i64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The mission moved on: `reached_seq` reached, now heading to
    /// `current_seq` of `total`.
    MissionProgress {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mission_id: Option<Uuid>,
        current_seq: u32,
        total: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reached_seq: Option<u32>,
    },
    /// The patrol changed state.
    MissionState {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mission_id: Option<Uuid>,
        state: MissionState,
        #[serde(default)]
        detail: String,
    },
    /// An incident behind an alert changed (more people, moved) or ended.
    IncidentUpdate {
        alert_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        person_count: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<Geotag>,
        closed: bool,
    },
    /// A failsafe acted (low battery → RTL, ground link lost, fence).
    Failsafe { reason: String, action: String },
    /// One of the companion's links changed state.
    Link { link: LinkName, state: LinkState },
    /// The spool is full and refuses new entries.
    SpoolFull { depth: u64, bytes: u64 },
    /// Free-form operational log line worth keeping on the ground.
    Log { level: String, message: String },
}

impl EventKind {
    /// The `kind` tag as written on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::MissionProgress { .. } => "mission_progress",
            EventKind::MissionState { .. } => "mission_state",
            EventKind::IncidentUpdate { .. } => "incident_update",
            EventKind::Failsafe { .. } => "failsafe",
            EventKind::Link { .. } => "link",
            EventKind::SpoolFull { .. } => "spool_full",
            EventKind::Log { .. } => "log",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissionState {
    Planned,
    Uploaded,
    Started,
    Paused,
    Resumed,
    Investigating,
    Returning,
    Landed,
    Completed,
    Aborted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkName {
    Autopilot,
    Camera,
    Ground,
}

impl Message for DroneEvent {
    const KIND: &'static str = "event";
}

impl Validate for DroneEvent {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::timestamp(at, "t_unix_ms", self.t_unix_ms)?;
        match &self.kind {
            EventKind::MissionProgress {
                current_seq, total, ..
            } => {
                if current_seq > total {
                    return Err(v::fail(at, "current_seq", "is beyond total"));
                }
            }
            EventKind::MissionState { detail, .. } => v::max_len(at, "detail", detail, 2_000)?,
            EventKind::IncidentUpdate { location, .. } => {
                if let Some(g) = location {
                    g.validate_at(&v::path(at, "location"))?;
                }
            }
            EventKind::Failsafe { reason, action } => {
                v::non_empty(at, "reason", reason, 500)?;
                v::max_len(at, "action", action, 200)?;
            }
            EventKind::Log { level, message } => {
                v::max_len(at, "level", level, 16)?;
                v::max_len(at, "message", message, 4_000)?;
            }
            EventKind::Link { .. } | EventKind::SpoolFull { .. } => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- commands

/// A command from the ground, QoS 1 on `.../commands`. Every command gets
/// exactly one final [`CommandResult`] (and possibly `in_progress` ones
/// before it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Payload schema version, [`SCHEMA_VERSION`] when written by this build.
    pub schema: u32,
    pub command_id: Uuid,
    pub drone_id: DroneId,
    /// Who asked (user name at the ground station).
    pub issued_by: String,
    pub t_unix_ms: i64,
    /// After this the companion refuses the command as expired.
    pub expires_unix_ms: i64,
    #[serde(flatten)]
    pub kind: CommandKind,
    /// End-to-end authentication by the ground station (issue 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<CommandAuth>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum CommandKind {
    /// Plan (or take a ready QGroundControl plan), upload, check, arm,
    /// take off and fly.
    LaunchPatrol {
        patrol: PatrolSpec,
    },
    Pause,
    Resume,
    ReturnToLaunch,
    Land,
    /// Leave the patrol, orbit a point with the gimbal on it, then resume.
    Investigate {
        target: GeoPoint,
        #[serde(default = "default_orbit_radius")]
        orbit_radius_m: f64,
        #[serde(default = "default_investigate_s")]
        duration_s: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alert_id: Option<Uuid>,
    },
    /// Replace the drone's detection zones and rules.
    SetDetectionZones {
        zones: Vec<DetectionZone>,
    },
}

fn default_orbit_radius() -> f64 {
    30.0
}
fn default_investigate_s() -> f64 {
    60.0
}

impl CommandKind {
    pub fn name(&self) -> &'static str {
        match self {
            CommandKind::LaunchPatrol { .. } => "launch_patrol",
            CommandKind::Pause => "pause",
            CommandKind::Resume => "resume",
            CommandKind::ReturnToLaunch => "return_to_launch",
            CommandKind::Land => "land",
            CommandKind::Investigate { .. } => "investigate",
            CommandKind::SetDetectionZones { .. } => "set_detection_zones",
        }
    }
}

/// A polygon with optional holes; rings are lists of points, not closed
/// (the first point is not repeated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeoPolygon {
    pub exterior: Vec<GeoPoint>,
    #[serde(default)]
    pub holes: Vec<Vec<GeoPoint>>,
}

impl Validate for GeoPolygon {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        let ring = |name: &str, r: &[GeoPoint]| -> Result<(), ValidationError> {
            if r.len() < 3 {
                return Err(v::fail(
                    at,
                    name,
                    format!("a ring needs at least 3 points, got {}", r.len()),
                ));
            }
            v::max_items(at, name, r, 10_000)?;
            v::each(at, name, r)
        };
        ring("exterior", &self.exterior)?;
        for (i, h) in self.holes.iter().enumerate() {
            ring(&format!("holes[{i}]"), h)?;
        }
        Ok(())
    }
}

/// A no-fly zone: a polygon or a circle, with a safety buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoFlyZone {
    pub name: String,
    #[serde(flatten)]
    pub shape: ZoneShape,
    #[serde(default)]
    pub buffer_m: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum ZoneShape {
    Polygon { polygon: GeoPolygon },
    Circle { center: GeoPoint, radius_m: f64 },
}

impl Validate for ZoneShape {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        match self {
            ZoneShape::Polygon { polygon } => polygon.validate_at(&v::path(at, "polygon")),
            ZoneShape::Circle { center, radius_m } => {
                center.validate_at(&v::path(at, "center"))?;
                v::in_range(at, "radius_m", *radius_m, 0.1, 100_000.0)
            }
        }
    }
}

impl Validate for NoFlyZone {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::non_empty(at, "name", &self.name, 200)?;
        self.shape.validate_at(at)?;
        v::in_range(at, "buffer_m", self.buffer_m, 0.0, 10_000.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointOfInterest {
    pub name: String,
    pub position: GeoPoint,
    /// Hover/orbit time at the point.
    #[serde(default)]
    pub dwell_s: f64,
    /// Higher is more important (visited first when the battery is short).
    #[serde(default)]
    pub priority: u8,
}

impl Validate for PointOfInterest {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::non_empty(at, "name", &self.name, 200)?;
        self.position.validate_at(&v::path(at, "position"))?;
        v::in_range(at, "dwell_s", self.dwell_s, 0.0, 3_600.0)
    }
}

/// What a launch-patrol command asks for: an area with no-fly zones and
/// points of interest (the companion plans it), or a ready QGroundControl
/// `.plan` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatrolSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub areas: Vec<GeoPolygon>,
    #[serde(default)]
    pub no_fly_zones: Vec<NoFlyZone>,
    #[serde(default)]
    pub points_of_interest: Vec<PointOfInterest>,
    /// Patrol altitude above home; the drone's configured default if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude_rel_m: Option<f64>,
    /// A QGroundControl `.plan` JSON document, used as-is instead of
    /// planning from `areas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qgc_plan: Option<serde_json::Value>,
}

impl Validate for PatrolSpec {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        if self.areas.is_empty() && self.qgc_plan.is_none() && self.points_of_interest.is_empty() {
            return Err(v::fail(
                at,
                "areas",
                "a patrol needs an area, points of interest or a qgc_plan",
            ));
        }
        v::max_items(at, "areas", &self.areas, 100)?;
        v::each(at, "areas", &self.areas)?;
        v::max_items(at, "no_fly_zones", &self.no_fly_zones, 1_000)?;
        v::each(at, "no_fly_zones", &self.no_fly_zones)?;
        v::max_items(at, "points_of_interest", &self.points_of_interest, 1_000)?;
        v::each(at, "points_of_interest", &self.points_of_interest)?;
        v::opt_in_range(at, "altitude_rel_m", self.altitude_rel_m, 2.0, 1_000.0)
    }
}

/// A zone where a detection rule applies (gathering thresholds, danger
/// zone for intrusions, hazard watch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionZone {
    pub name: String,
    pub polygon: GeoPolygon,
    pub rule: ZoneRule,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum ZoneRule {
    Gathering {
        min_people: u32,
        radius_m: f64,
        min_duration_s: f64,
    },
    Intrusion {
        classes: Vec<String>,
        min_duration_s: f64,
    },
    Hazard {
        classes: Vec<String>,
        k_of_m: (u32, u32),
    },
}

impl Validate for DetectionZone {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::non_empty(at, "name", &self.name, 200)?;
        self.polygon.validate_at(&v::path(at, "polygon"))?;
        let r = v::path(at, "rule");
        match &self.rule {
            ZoneRule::Gathering {
                min_people,
                radius_m,
                min_duration_s,
            } => {
                if *min_people < 2 {
                    return Err(v::fail(
                        &r,
                        "min_people",
                        "a gathering needs at least 2 people",
                    ));
                }
                v::in_range(&r, "radius_m", *radius_m, 0.5, 1_000.0)?;
                v::in_range(&r, "min_duration_s", *min_duration_s, 0.0, 86_400.0)
            }
            ZoneRule::Intrusion {
                classes,
                min_duration_s,
            } => {
                if classes.is_empty() {
                    return Err(v::fail(&r, "classes", "must name at least one class"));
                }
                v::in_range(&r, "min_duration_s", *min_duration_s, 0.0, 86_400.0)
            }
            ZoneRule::Hazard { classes, k_of_m } => {
                if classes.is_empty() {
                    return Err(v::fail(&r, "classes", "must name at least one class"));
                }
                if k_of_m.0 == 0 || k_of_m.0 > k_of_m.1 {
                    return Err(v::fail(&r, "k_of_m", "needs 1 <= k <= m"));
                }
                Ok(())
            }
        }
    }
}

/// The ground station's Ed25519 signature over a command: see
/// [`crate::command_auth`] for what is signed and how keys are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandAuth {
    pub key_id: String,
    pub nonce: String,
    pub signature: String,
}

impl Message for Command {
    const KIND: &'static str = "command";
}

impl Validate for Command {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::non_empty(at, "issued_by", &self.issued_by, 200)?;
        v::timestamp(at, "t_unix_ms", self.t_unix_ms)?;
        v::timestamp(at, "expires_unix_ms", self.expires_unix_ms)?;
        if self.expires_unix_ms <= self.t_unix_ms {
            return Err(v::fail(at, "expires_unix_ms", "is not after t_unix_ms"));
        }
        if let Some(a) = &self.auth {
            let at = v::path(at, "auth");
            v::max_len(&at, "key_id", &a.key_id, 64)?;
            v::max_len(&at, "nonce", &a.nonce, 64)?;
            v::max_len(&at, "signature", &a.signature, 128)?;
        }
        match &self.kind {
            CommandKind::LaunchPatrol { patrol } => patrol.validate_at(&v::path(at, "patrol"))?,
            CommandKind::Investigate {
                target,
                orbit_radius_m,
                duration_s,
                ..
            } => {
                target.validate_at(&v::path(at, "target"))?;
                v::in_range(at, "orbit_radius_m", *orbit_radius_m, 5.0, 1_000.0)?;
                v::in_range(at, "duration_s", *duration_s, 0.0, 3_600.0)?;
            }
            CommandKind::SetDetectionZones { zones } => {
                v::max_items(at, "zones", zones, 1_000)?;
                v::each(at, "zones", zones)?;
            }
            CommandKind::Pause
            | CommandKind::Resume
            | CommandKind::ReturnToLaunch
            | CommandKind::Land => {}
        }
        Ok(())
    }
}

/// The drone's answer to a [`Command`], QoS 1 on `.../command-results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// Payload schema version, [`SCHEMA_VERSION`] when written by this build.
    pub schema: u32,
    pub command_id: Uuid,
    pub drone_id: DroneId,
    pub t_unix_ms: i64,
    pub status: CommandStatus,
    /// For `in_progress`: 0..100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_pct: Option<f64>,
    /// Why it was refused or failed, or what is happening.
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// Taken; work goes on (a final status follows).
    Accepted,
    InProgress,
    Succeeded,
    /// Not done because it would be unsafe or is not possible now.
    Refused,
    /// Tried and did not work.
    Failed,
    /// Arrived after `expires_unix_ms`.
    Expired,
    /// Failed end-to-end authentication.
    Unauthorized,
}

impl CommandResult {
    /// The id under which this result is spooled, stored and receipted: a
    /// command has several results (accepted, in progress, final), so the
    /// id is derived from the command id and the status (UUID v5), and a
    /// retried identical result de-duplicates.
    pub fn spool_id(&self) -> Uuid {
        let progress = self.progress_pct.map(|p| p.to_bits()).unwrap_or(u64::MAX);
        let mut name = serde_json::to_string(&self.status).expect("serialisable");
        name.push_str(&progress.to_string());
        Uuid::new_v5(&self.command_id, name.as_bytes())
    }
}

impl CommandStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, CommandStatus::Accepted | CommandStatus::InProgress)
    }
}

impl Message for CommandResult {
    const KIND: &'static str = "command result";
}

impl Validate for CommandResult {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::timestamp(at, "t_unix_ms", self.t_unix_ms)?;
        v::opt_in_range(at, "progress_pct", self.progress_pct, 0.0, 100.0)?;
        v::max_len(at, "reason", &self.reason, 2_000)?;
        if matches!(
            self.status,
            CommandStatus::Refused | CommandStatus::Failed | CommandStatus::Unauthorized
        ) && self.reason.trim().is_empty()
        {
            return Err(v::fail(at, "reason", "a refusal or failure must say why"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- receipts

/// Ground → drone on `.../receipts`: these alert/event ids are stored in
/// the ground station's store. The companion may then drop them from its
/// spool; until then it republishes them after a timeout (the broker may
/// have lost them in a crash even after its PUBACK).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// Payload schema version, [`SCHEMA_VERSION`] when written by this build.
    pub schema: u32,
    pub drone_id: DroneId,
    pub ids: Vec<Uuid>,
}

impl Message for Receipt {
    const KIND: &'static str = "receipt";
}

impl Validate for Receipt {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::max_items(at, "ids", &self.ids, 10_000)
    }
}

// ---------------------------------------------------------------- cases

/// Priority of a case at the dispute centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

/// The life of a case: warning → mediation → resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Raised,
    Confirmed,
    Dispatched,
    Received,
    Mediating,
    Resolved,
    Closed,
    Rejected,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Raised => "raised",
            CaseStatus::Confirmed => "confirmed",
            CaseStatus::Dispatched => "dispatched",
            CaseStatus::Received => "received",
            CaseStatus::Mediating => "mediating",
            CaseStatus::Resolved => "resolved",
            CaseStatus::Closed => "closed",
            CaseStatus::Rejected => "rejected",
        }
    }
}

/// The grid cell (网格) a case falls in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridCell {
    pub grid_id: String,
    #[serde(default)]
    pub county: String,
    #[serde(default)]
    pub township: String,
    #[serde(default)]
    pub village: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// "snapshot" or "clip".
    pub kind: String,
    pub url: String,
    pub mime: String,
    /// Hex SHA-256 of the evidence bytes.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<Uuid>,
}

/// A case as delivered to a dispute system (HTTP POST JSON, with
/// `Idempotency-Key: <case_id>` and an HMAC-SHA256 signature header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// Payload schema version, [`SCHEMA_VERSION`] when written by this build.
    pub schema: u32,
    pub case_id: Uuid,
    /// Always "drone" for cases tiancha raises.
    pub source: String,
    pub category: Category,
    pub priority: Priority,
    pub location: GeoPoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<GridCell>,
    pub t_start_unix_ms: i64,
    pub t_end_unix_ms: i64,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    pub alert_ids: Vec<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_by: Option<String>,
    /// The route (dispute system) the case is sent to.
    pub route: String,
    pub status: CaseStatus,
}

impl Message for Case {
    const KIND: &'static str = "case";
}

impl Validate for Case {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::non_empty(at, "source", &self.source, 32)?;
        self.location.validate_at(&v::path(at, "location"))?;
        v::timestamp(at, "t_start_unix_ms", self.t_start_unix_ms)?;
        v::timestamp(at, "t_end_unix_ms", self.t_end_unix_ms)?;
        if self.t_start_unix_ms > self.t_end_unix_ms {
            return Err(v::fail(at, "t_start_unix_ms", "is after t_end_unix_ms"));
        }
        v::non_empty(at, "title", &self.title, 500)?;
        v::max_len(at, "description", &self.description, 20_000)?;
        if self.alert_ids.is_empty() {
            return Err(v::fail(at, "alert_ids", "a case needs at least one alert"));
        }
        v::non_empty(at, "route", &self.route, 64)
    }
}

/// A status callback from a dispute system: the case moved on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseStatusUpdate {
    /// Payload schema version, [`SCHEMA_VERSION`] when written by this build.
    pub schema: u32,
    pub case_id: Uuid,
    pub status: CaseStatus,
    pub t_unix_ms: i64,
    /// Who handles it at the dispute system (person or unit).
    #[serde(default)]
    pub handler: String,
    #[serde(default)]
    pub note: String,
}

impl Message for CaseStatusUpdate {
    const KIND: &'static str = "case status update";
}

impl Validate for CaseStatusUpdate {
    fn validate_at(&self, at: &str) -> Result<(), ValidationError> {
        v::timestamp(at, "t_unix_ms", self.t_unix_ms)?;
        v::max_len(at, "handler", &self.handler, 200)?;
        v::max_len(at, "note", &self.note, 10_000)
    }
}

/// Base64 (standard alphabet, padded) for byte fields.
mod b64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}
