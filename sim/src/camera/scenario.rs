//! The scenario: what is on the ground, where and when.
//!
//! A TOML file (see `examples/shangrao/scenario.toml`) with
//!
//! - the flat ground's altitude and the origin of its texture;
//! - `[ground]`: the texture's extent and resolution, and the features
//!   drawn on it (water, roads, villages with roofs);
//! - `[[zones]]`: detection zones in the wire contract's shape
//!   ([`tiancha_protocol::DetectionZone`]), e.g. a reservoir bank with an
//!   intrusion rule, so a demo can send them to the drone as they are;
//! - `[[incidents]]`: people placed at known lat/lon with start and end
//!   times (simulated seconds since the simulator booted): a `gathering`
//!   (N people within R m), a single `person`, a `walker` along a path.
//!
//! Points are `{ lat_deg = …, lon_deg = … }` tables everywhere (the wire
//! contract's `GeoPoint`), so a swapped latitude and longitude is caught
//! by validation rather than silently misplaced.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tiancha_geometry::geodesy::{LatLon, LocalFrame};
use tiancha_protocol::{DetectionZone, GeoPoint, Validate};

use super::CameraError;

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Altitude of the (flat) ground, metres AMSL. Must match the
    /// simulator's home altitude for the picture to match the telemetry.
    pub ground_alt_m: f64,
    /// Origin of the ground texture's local east/north frame.
    pub origin: GeoPoint,
    /// Seed of every random choice (texture, who stands where, which sprite).
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub ground: GroundSpec,
    #[serde(default)]
    pub zones: Vec<DetectionZone>,
    #[serde(default)]
    pub incidents: Vec<Incident>,
}

fn default_seed() -> u64 {
    7
}

/// The ground texture: extent (metres from the origin), resolution and
/// the features drawn on it. Everything not covered by a feature is
/// farmland.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundSpec {
    /// Texture resolution, metres per texel.
    #[serde(default = "default_mpp")]
    pub metres_per_px: f64,
    pub west_m: f64,
    pub east_m: f64,
    pub south_m: f64,
    pub north_m: f64,
    /// Typical size of a field, metres.
    #[serde(default = "default_field")]
    pub field_size_m: f64,
    #[serde(default)]
    pub water: Vec<Area>,
    #[serde(default)]
    pub roads: Vec<Road>,
    #[serde(default)]
    pub villages: Vec<Village>,
}

fn default_mpp() -> f64 {
    0.25
}
fn default_field() -> f64 {
    40.0
}

/// A named polygon (water: a pond, a reservoir).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Area {
    pub name: String,
    pub polygon: Vec<GeoPoint>,
}

/// A road: a polyline with a width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Road {
    pub name: String,
    #[serde(default = "default_road_width")]
    pub width_m: f64,
    pub path: Vec<GeoPoint>,
}

fn default_road_width() -> f64 {
    6.0
}

/// Houses scattered inside a polygon (roofs seen from above).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Village {
    pub name: String,
    pub polygon: Vec<GeoPoint>,
    pub houses: u32,
}

/// Something placed in the scene.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentKind {
    /// `people` people standing within `radius_m` of `at`.
    Gathering {
        at: GeoPoint,
        people: u32,
        radius_m: f64,
    },
    /// One person standing at `at`.
    Person { at: GeoPoint },
    /// One person walking along `path` at `speed_mps`, back and forth.
    Walker { path: Vec<GeoPoint>, speed_mps: f64 },
    /// A fire on the ground (straw burning, 秸秆焚烧): flames over a disc of
    /// `radius_m` around `at`, and, with `smoke`, a plume that rises and
    /// drifts downwind (towards `wind_to_deg`, from north).
    Fire {
        at: GeoPoint,
        radius_m: f64,
        smoke: bool,
        wind_to_deg: f64,
    },
}

impl IncidentKind {
    /// Where a fire burns, if this is one.
    pub fn fire_at(&self) -> Option<&GeoPoint> {
        match self {
            IncidentKind::Fire { at, .. } => Some(at),
            _ => None,
        }
    }
}

/// An incident with its identity and time window. In TOML: `id`, `kind`
/// (`gathering`, `person`, `walker`, `fire`), the kind's fields, and
/// optionally `start_s`, `end_s`, `height_m`. A fire takes `at`,
/// `radius_m` (default 2), `smoke` (default true) and `wind_to_deg`
/// (default 60).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawIncident", into = "RawIncident")]
pub struct Incident {
    /// Unique name, used in the per-frame ground truth.
    pub id: String,
    pub kind: IncidentKind,
    /// Appears at this simulated time (s since boot).
    pub start_s: f64,
    /// Disappears at this simulated time (default: never).
    pub end_s: Option<f64>,
    /// Standing height of the people, metres (default 1.7).
    pub height_m: f64,
}

/// The incident as written in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIncident {
    id: String,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<GeoPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    people: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    radius_m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<Vec<GeoPoint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    speed_mps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    height_m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    smoke: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wind_to_deg: Option<f64>,
}

impl TryFrom<RawIncident> for Incident {
    type Error = String;
    fn try_from(r: RawIncident) -> Result<Self, String> {
        let id = r.id.clone();
        fn need<T>(v: Option<T>, id: &str, kind: &str, f: &str) -> Result<T, String> {
            v.ok_or_else(|| format!("incident {id:?} ({kind}) needs `{f}`"))
        }
        let not = |present: bool, f: &str| {
            if present {
                Err(format!(
                    "incident {id:?}: `{f}` is not a field of a {} incident",
                    r.kind
                ))
            } else {
                Ok(())
            }
        };
        let kind = match r.kind.as_str() {
            "gathering" => {
                not(r.path.is_some(), "path")?;
                not(r.speed_mps.is_some(), "speed_mps")?;
                not(r.smoke.is_some(), "smoke")?;
                not(r.wind_to_deg.is_some(), "wind_to_deg")?;
                IncidentKind::Gathering {
                    at: need(r.at, &id, &r.kind, "at")?,
                    people: need(r.people, &id, &r.kind, "people")?,
                    radius_m: need(r.radius_m, &id, &r.kind, "radius_m")?,
                }
            }
            "person" => {
                for (p, f) in [
                    (r.people.is_some(), "people"),
                    (r.radius_m.is_some(), "radius_m"),
                    (r.path.is_some(), "path"),
                    (r.speed_mps.is_some(), "speed_mps"),
                    (r.smoke.is_some(), "smoke"),
                    (r.wind_to_deg.is_some(), "wind_to_deg"),
                ] {
                    not(p, f)?;
                }
                IncidentKind::Person {
                    at: need(r.at, &id, &r.kind, "at")?,
                }
            }
            "walker" => {
                for (p, f) in [
                    (r.people.is_some(), "people"),
                    (r.radius_m.is_some(), "radius_m"),
                    (r.at.is_some(), "at"),
                ] {
                    not(p, f)?;
                }
                not(r.smoke.is_some(), "smoke")?;
                not(r.wind_to_deg.is_some(), "wind_to_deg")?;
                IncidentKind::Walker {
                    path: need(r.path.clone(), &id, &r.kind, "path")?,
                    speed_mps: r.speed_mps.unwrap_or(1.3),
                }
            }
            "fire" => {
                for (p, f) in [
                    (r.people.is_some(), "people"),
                    (r.path.is_some(), "path"),
                    (r.speed_mps.is_some(), "speed_mps"),
                ] {
                    not(p, f)?;
                }
                IncidentKind::Fire {
                    at: need(r.at, &id, &r.kind, "at")?,
                    radius_m: r.radius_m.unwrap_or(2.0),
                    smoke: r.smoke.unwrap_or(true),
                    wind_to_deg: r.wind_to_deg.unwrap_or(60.0),
                }
            }
            other => {
                return Err(format!(
                    "incident {id:?}: kind {other:?} is not one of gathering, person, walker, fire"
                ))
            }
        };
        Ok(Incident {
            id: r.id,
            kind,
            start_s: r.start_s.unwrap_or(0.0),
            end_s: r.end_s,
            height_m: r.height_m.unwrap_or(1.7),
        })
    }
}

impl From<Incident> for RawIncident {
    fn from(i: Incident) -> Self {
        let mut r = RawIncident {
            id: i.id,
            kind: String::new(),
            at: None,
            people: None,
            radius_m: None,
            path: None,
            speed_mps: None,
            start_s: Some(i.start_s),
            end_s: i.end_s,
            height_m: Some(i.height_m),
            smoke: None,
            wind_to_deg: None,
        };
        match i.kind {
            IncidentKind::Gathering {
                at,
                people,
                radius_m,
            } => {
                r.kind = "gathering".into();
                r.at = Some(at);
                r.people = Some(people);
                r.radius_m = Some(radius_m);
            }
            IncidentKind::Person { at } => {
                r.kind = "person".into();
                r.at = Some(at);
            }
            IncidentKind::Walker { path, speed_mps } => {
                r.kind = "walker".into();
                r.path = Some(path);
                r.speed_mps = Some(speed_mps);
            }
            IncidentKind::Fire {
                at,
                radius_m,
                smoke,
                wind_to_deg,
            } => {
                r.kind = "fire".into();
                r.at = Some(at);
                r.radius_m = Some(radius_m);
                r.smoke = Some(smoke);
                r.wind_to_deg = Some(wind_to_deg);
            }
        }
        r
    }
}

/// One person in the scene at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlacedPerson {
    /// Index of the incident in [`Scenario::incidents`].
    pub incident: usize,
    /// Which of the incident's people (0 for a single person).
    pub member: usize,
    /// Where the feet are.
    pub at: LatLon,
    pub height_m: f64,
    /// A stable number for choosing the sprite.
    pub look: u64,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> CameraError {
    CameraError::Scenario {
        field: field.into(),
        reason: reason.into(),
    }
}

fn check_point(field: &str, p: &GeoPoint) -> Result<(), CameraError> {
    if !LatLon::new(p.lat_deg, p.lon_deg).is_valid() {
        return Err(err(
            field,
            format!(
                "({}, {}) is not a latitude/longitude (write {{ lat_deg = …, lon_deg = … }})",
                p.lat_deg, p.lon_deg
            ),
        ));
    }
    Ok(())
}

fn check_ring(field: &str, r: &[GeoPoint], min: usize) -> Result<(), CameraError> {
    if r.len() < min {
        return Err(err(
            field,
            format!("needs at least {min} points, has {}", r.len()),
        ));
    }
    for (i, p) in r.iter().enumerate() {
        check_point(&format!("{field}[{i}]"), p)?;
    }
    Ok(())
}

impl Scenario {
    /// Parse and validate TOML text. `source` names the file in errors.
    pub fn from_toml(text: &str, source: &str) -> Result<Self, CameraError> {
        let s: Scenario = toml::from_str(text).map_err(|e| CameraError::ScenarioFile {
            path: source.to_string(),
            reason: e.to_string(),
        })?;
        s.validate().map_err(|e| match e {
            CameraError::Scenario { field, reason } => CameraError::ScenarioFile {
                path: source.to_string(),
                reason: format!("`{field}`: {reason}"),
            },
            other => other,
        })?;
        Ok(s)
    }

    /// Read, parse and validate a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CameraError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| CameraError::ScenarioFile {
            path: path.display().to_string(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The local east/north frame of the ground texture (origin at ground
    /// altitude).
    pub fn frame(&self) -> LocalFrame {
        LocalFrame::new(
            LatLon::new(self.origin.lat_deg, self.origin.lon_deg).with_alt(self.ground_alt_m),
        )
    }

    /// Check every field; the first problem is returned, naming it.
    pub fn validate(&self) -> Result<(), CameraError> {
        if self.name.trim().is_empty() {
            return Err(err("name", "is empty"));
        }
        if !(self.ground_alt_m.is_finite() && (-500.0..=9000.0).contains(&self.ground_alt_m)) {
            return Err(err(
                "ground_alt_m",
                format!("{} m is not a ground altitude", self.ground_alt_m),
            ));
        }
        check_point("origin", &self.origin)?;
        let g = &self.ground;
        if !(g.metres_per_px.is_finite() && (0.02..=5.0).contains(&g.metres_per_px)) {
            return Err(err(
                "ground.metres_per_px",
                format!("{} is not in [0.02, 5]", g.metres_per_px),
            ));
        }
        for (n, v) in [
            ("ground.west_m", g.west_m),
            ("ground.east_m", g.east_m),
            ("ground.south_m", g.south_m),
            ("ground.north_m", g.north_m),
        ] {
            if !v.is_finite() {
                return Err(err(n, "must be a number"));
            }
        }
        if g.east_m <= g.west_m || g.north_m <= g.south_m {
            return Err(err(
                "ground",
                "east_m must exceed west_m and north_m must exceed south_m",
            ));
        }
        let (w, h) = self.texture_size();
        if (w as u64) * (h as u64) > 120_000_000 {
            return Err(err(
                "ground.metres_per_px",
                format!(
                    "the texture would be {w} x {h} texels (over 120 M): use a coarser \
                     resolution or a smaller extent"
                ),
            ));
        }
        if !(g.field_size_m.is_finite() && g.field_size_m >= 2.0) {
            return Err(err("ground.field_size_m", "must be at least 2 m"));
        }
        for (i, a) in g.water.iter().enumerate() {
            check_ring(&format!("ground.water[{i}].polygon"), &a.polygon, 3)?;
        }
        for (i, r) in g.roads.iter().enumerate() {
            check_ring(&format!("ground.roads[{i}].path"), &r.path, 2)?;
            if !(r.width_m.is_finite() && r.width_m > 0.0 && r.width_m < 100.0) {
                return Err(err(
                    format!("ground.roads[{i}].width_m"),
                    "must be in (0, 100) m",
                ));
            }
        }
        for (i, v) in g.villages.iter().enumerate() {
            check_ring(&format!("ground.villages[{i}].polygon"), &v.polygon, 3)?;
            if v.houses > 10_000 {
                return Err(err(format!("ground.villages[{i}].houses"), "at most 10000"));
            }
        }
        for (i, z) in self.zones.iter().enumerate() {
            z.validate_at(&format!("zones[{i}]"))
                .map_err(|e| err(format!("zones[{i}]"), e.to_string()))?;
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, inc) in self.incidents.iter().enumerate() {
            let f = |n: &str| format!("incidents[{i}] ({:?}).{n}", inc.id);
            if inc.id.trim().is_empty() {
                return Err(err(format!("incidents[{i}].id"), "is empty"));
            }
            if !ids.insert(inc.id.clone()) {
                return Err(err(f("id"), "is used twice"));
            }
            if !(inc.start_s.is_finite() && inc.start_s >= 0.0) {
                return Err(err(f("start_s"), "must be a non-negative number"));
            }
            if let Some(e) = inc.end_s {
                if !(e.is_finite() && e > inc.start_s) {
                    return Err(err(f("end_s"), "must be after start_s"));
                }
            }
            if !(inc.height_m.is_finite() && (0.5..=2.5).contains(&inc.height_m)) {
                return Err(err(f("height_m"), "must be in [0.5, 2.5] m"));
            }
            let points: Vec<&GeoPoint> = match &inc.kind {
                IncidentKind::Gathering {
                    at,
                    people,
                    radius_m,
                } => {
                    if !(2..=200).contains(people) {
                        return Err(err(f("people"), "must be in [2, 200]"));
                    }
                    let need = (*people as f64 * 0.8 / std::f64::consts::PI).sqrt();
                    if !(radius_m.is_finite() && *radius_m >= need && *radius_m <= 500.0) {
                        return Err(err(
                            f("radius_m"),
                            format!(
                                "{radius_m} m cannot hold {people} people (at least {need:.1} m, \
                                 at most 500 m)"
                            ),
                        ));
                    }
                    vec![at]
                }
                IncidentKind::Person { at } => vec![at],
                IncidentKind::Fire {
                    at,
                    radius_m,
                    wind_to_deg,
                    ..
                } => {
                    if !(radius_m.is_finite() && (0.3..=50.0).contains(radius_m)) {
                        return Err(err(f("radius_m"), "must be in [0.3, 50] m"));
                    }
                    if !wind_to_deg.is_finite() {
                        return Err(err(f("wind_to_deg"), "must be a number"));
                    }
                    vec![at]
                }
                IncidentKind::Walker { path, speed_mps } => {
                    if path.len() < 2 {
                        return Err(err(f("path"), "needs at least 2 points"));
                    }
                    if !(speed_mps.is_finite() && *speed_mps > 0.0 && *speed_mps <= 10.0) {
                        return Err(err(f("speed_mps"), "must be in (0, 10] m/s"));
                    }
                    path.iter().collect()
                }
            };
            for (j, p) in points.iter().enumerate() {
                let name = f(&format!("point {j}"));
                check_point(&name, p)?;
                let (e, n) = self.frame().to_en(LatLon::new(p.lat_deg, p.lon_deg));
                if e < g.west_m || e > g.east_m || n < g.south_m || n > g.north_m {
                    return Err(err(
                        name,
                        format!(
                            "is outside the ground texture ({e:.0} m east, {n:.0} m north of \
                             the origin)"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Texture size in texels.
    pub fn texture_size(&self) -> (u32, u32) {
        let g = &self.ground;
        (
            ((g.east_m - g.west_m) / g.metres_per_px).ceil() as u32,
            ((g.north_m - g.south_m) / g.metres_per_px).ceil() as u32,
        )
    }

    /// The fires burning at simulated time `sim_time_s`: incident index
    /// and incident.
    pub fn fires_at(&self, sim_time_s: f64) -> Vec<(usize, &Incident)> {
        self.incidents
            .iter()
            .enumerate()
            .filter(|(_, inc)| {
                inc.kind.fire_at().is_some()
                    && sim_time_s >= inc.start_s
                    && inc.end_s.is_none_or(|e| sim_time_s < e)
            })
            .collect()
    }

    /// Everyone in the scene at simulated time `sim_time_s`.
    pub fn people_at(&self, sim_time_s: f64) -> Vec<PlacedPerson> {
        let frame = self.frame();
        let mut out = Vec::new();
        for (i, inc) in self.incidents.iter().enumerate() {
            if sim_time_s < inc.start_s || inc.end_s.is_some_and(|e| sim_time_s >= e) {
                continue;
            }
            let look = |m: usize| self.seed ^ (i as u64 * 1_000_003 + m as u64 * 7_919);
            match &inc.kind {
                IncidentKind::Person { at } => out.push(PlacedPerson {
                    incident: i,
                    member: 0,
                    at: LatLon::new(at.lat_deg, at.lon_deg),
                    height_m: inc.height_m,
                    look: look(0),
                }),
                IncidentKind::Gathering {
                    at,
                    people,
                    radius_m,
                } => {
                    let c = frame.to_en(LatLon::new(at.lat_deg, at.lon_deg));
                    for (m, (de, dn)) in gathering_layout(
                        *people as usize,
                        *radius_m,
                        self.seed.wrapping_add(i as u64),
                    )
                    .into_iter()
                    .enumerate()
                    {
                        out.push(PlacedPerson {
                            incident: i,
                            member: m,
                            at: frame.from_en(c.0 + de, c.1 + dn),
                            height_m: inc.height_m * (0.94 + 0.1 * unit(look(m).wrapping_mul(31))),
                            look: look(m),
                        });
                    }
                }
                IncidentKind::Fire { .. } => {}
                IncidentKind::Walker { path, speed_mps } => {
                    let pts: Vec<(f64, f64)> = path
                        .iter()
                        .map(|p| frame.to_en(LatLon::new(p.lat_deg, p.lon_deg)))
                        .collect();
                    let (e, n) =
                        walk_position(&pts, speed_mps * (sim_time_s - inc.start_s).max(0.0));
                    out.push(PlacedPerson {
                        incident: i,
                        member: 0,
                        at: frame.from_en(e, n),
                        height_m: inc.height_m,
                        look: look(0),
                    });
                }
            }
        }
        out
    }

    /// Index of an incident by id.
    pub fn incident(&self, id: &str) -> Option<usize> {
        self.incidents.iter().position(|i| i.id == id)
    }

    /// The same scenario with no incidents (an empty scene).
    pub fn without_incidents(&self) -> Scenario {
        Scenario {
            incidents: Vec::new(),
            ..self.clone()
        }
    }
}

/// A deterministic number in [0, 1) from a seed.
fn unit(seed: u64) -> f64 {
    StdRng::seed_from_u64(seed).random::<f64>()
}

/// `n` positions (east, north offsets, metres) within `radius_m`, at
/// least 0.8 m apart where possible (rejection sampling, seeded).
pub fn gathering_layout(n: usize, radius_m: f64, seed: u64) -> Vec<(f64, f64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pts: Vec<(f64, f64)> = Vec::with_capacity(n);
    let mut min_sep: f64 = 0.8;
    let mut tries = 0;
    while pts.len() < n {
        let r = radius_m * rng.random::<f64>().sqrt();
        let a = rng.random::<f64>() * std::f64::consts::TAU;
        let p = (r * a.sin(), r * a.cos());
        if pts.iter().all(|q| (q.0 - p.0).hypot(q.1 - p.1) >= min_sep) {
            pts.push(p);
        }
        tries += 1;
        if tries % 2_000 == 0 {
            min_sep *= 0.8;
        }
    }
    pts
}

/// Position after walking `dist_m` along a polyline, back and forth.
fn walk_position(pts: &[(f64, f64)], dist_m: f64) -> (f64, f64) {
    let seg: Vec<f64> = pts
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).hypot(w[1].1 - w[0].1))
        .collect();
    let total: f64 = seg.iter().sum();
    if total <= 1e-9 {
        return pts[0];
    }
    let mut d = dist_m.rem_euclid(2.0 * total);
    if d > total {
        d = 2.0 * total - d;
    }
    for (i, l) in seg.iter().enumerate() {
        if d <= *l || i == seg.len() - 1 {
            let t = if *l > 0.0 { (d / l).min(1.0) } else { 0.0 };
            let (a, b) = (pts[i], pts[i + 1]);
            return (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
        }
        d -= l;
    }
    pts[pts.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
ground_alt_m = 70.0
origin = { lat_deg = 28.45, lon_deg = 117.94 }
[ground]
west_m = -100.0
east_m = 100.0
south_m = -100.0
north_m = 100.0
[[incidents]]
id = "g"
kind = "gathering"
at = { lat_deg = 28.4502, lon_deg = 117.9402 }
people = 6
radius_m = 3.0
[[incidents]]
id = "w"
kind = "walker"
path = [{ lat_deg = 28.45, lon_deg = 117.94 }, { lat_deg = 28.4501, lon_deg = 117.94 }]
start_s = 10.0
end_s = 100.0
"#;

    #[test]
    fn parses_and_places_people_deterministically() {
        let s = Scenario::from_toml(MINIMAL, "t.toml").unwrap();
        let a = s.people_at(0.0);
        assert_eq!(a.len(), 6, "walker not yet there");
        let b = s.people_at(20.0);
        assert_eq!(b.len(), 7);
        assert_eq!(&a[..], &b[..6]);
        let f = s.frame();
        let c = f.to_en(LatLon::new(28.4502, 117.9402));
        for p in &a {
            let (e, n) = f.to_en(p.at);
            assert!((e - c.0).hypot(n - c.1) <= 3.0 + 1e-6);
        }
        for (i, p) in a.iter().enumerate() {
            for q in &a[i + 1..] {
                let (pe, pn) = f.to_en(p.at);
                let (qe, qn) = f.to_en(q.at);
                assert!((pe - qe).hypot(pn - qn) >= 0.79);
            }
        }
        assert!(s.people_at(100.0).len() == 6, "walker gone at end_s");
    }

    #[test]
    fn walker_goes_back_and_forth() {
        let pts = [(0.0, 0.0), (10.0, 0.0), (10.0, 5.0)];
        assert_eq!(walk_position(&pts, 5.0), (5.0, 0.0));
        assert_eq!(walk_position(&pts, 12.0), (10.0, 2.0));
        // 15 m out; at 18 m the walker is 3 m back from the end, at 24 m
        // 9 m back (on the first leg).
        assert_eq!(walk_position(&pts, 18.0), (10.0, 2.0));
        assert_eq!(walk_position(&pts, 24.0), (6.0, 0.0));
        assert_eq!(walk_position(&pts, 30.0), (0.0, 0.0));
    }

    #[test]
    fn errors_name_the_field() {
        let bad = MINIMAL.replace("people = 6", "people = 60");
        let e = Scenario::from_toml(&bad, "x.toml").unwrap_err().to_string();
        assert!(
            e.contains("x.toml") && e.contains("incidents[0]") && e.contains("radius_m"),
            "{e}"
        );
        let swapped = MINIMAL.replace(
            "at = { lat_deg = 28.4502, lon_deg = 117.9402 }",
            "at = { lat_deg = 117.9402, lon_deg = 28.4502 }",
        );
        let e = Scenario::from_toml(&swapped, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a latitude"), "{e}");
        let far = MINIMAL.replace("lat_deg = 28.4502", "lat_deg = 28.46");
        let e = Scenario::from_toml(&far, "x.toml").unwrap_err().to_string();
        assert!(e.contains("outside the ground texture"), "{e}");
        let unknown = format!("{MINIMAL}\nbogus = 1\n");
        let e = Scenario::from_toml(&unknown, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = Scenario::load("/nonexistent/s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/s.toml"), "{e}");
    }
}
