//! Event rules: tracks on the ground → incidents that open, update and
//! close. One incident per gathering / intrusion / hazard, however many
//! frames see it: no alert storm from one crowd.
//!
//! Rules use the wire contract's shape ([`ZoneRule`]: gathering,
//! intrusion, hazard), either everywhere in view (`zone: None`) or inside
//! a zone polygon ([`DetectionZone`]).
//!
//! - **gathering**: at least `min_people` people, each within `radius_m`
//!   of another (connected components on the ground), for
//!   `min_duration_s`. A group is followed from frame to frame by the
//!   track ids it shares (or, failing that, by its centroid).
//! - **intrusion**: a track of one of `classes` inside the zone for
//!   `min_duration_s`; one incident per zone while anyone is inside.
//! - **hazard**: a detection of one of `classes` in at least K of the last
//!   M detector frames; one incident per class.
//!
//! The engine may be fed every camera frame (tracks predicted between
//! detector frames, [`crate::timeline`]) or only detector frames:
//! gathering and intrusion rules are timed in milliseconds, and hazard
//! rules count only frames marked [`FrameInput::detected`].
//!
//! An incident closes when its condition has been false for
//! `close_after_s` (hysteresis: a crowd that thins out for a moment stays
//! one incident). Updates are sent when the count or place changes, at
//! most every `update_interval_s`.
//!
//! Positions: the ground fix of each track's foot point when the frame is
//! geotagged. Without a pose, global gathering rules still work on an
//! image-plane estimate (pixel distance scaled by each person's apparent
//! height, `person_height_m`) and the incident is "position unknown";
//! zone rules need ground positions and are skipped.
//!
//! Pure logic: no clock (frame times in), no I/O.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use geo::{Contains, Coord, LineString, Point, Polygon};
use nalgebra::Matrix2;
use serde::{Deserialize, Serialize};
use tiancha_geometry::camera::GroundEllipse;
use tiancha_geometry::{LatLon, LocalFrame};
use tiancha_protocol::{Category, DetectionZone, GeoPolygon, ZoneRule};
use uuid::Uuid;

use crate::decode::BBox;
use crate::error::{InferenceError, Result};
use crate::geotag::GroundFix;
use crate::manifest::Manifest;

/// One rule, optionally limited to a zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<GeoPolygon>,
    pub rule: ZoneRule,
}

impl From<&DetectionZone> for RuleConfig {
    fn from(z: &DetectionZone) -> Self {
        Self {
            name: z.name.clone(),
            zone: Some(z.polygon.clone()),
            rule: z.rule.clone(),
        }
    }
}

fn default_close() -> f64 {
    10.0
}
fn default_update() -> f64 {
    10.0
}
fn default_person_h() -> f64 {
    1.7
}

/// The event engine's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// An incident closes after its condition has been false this long (s).
    #[serde(default = "default_close")]
    pub close_after_s: f64,
    /// Least time between two updates of one incident (s).
    #[serde(default = "default_update")]
    pub update_interval_s: f64,
    /// Assumed standing height of a person (m), for the image-plane
    /// fallback when a frame has no pose.
    #[serde(default = "default_person_h")]
    pub person_height_m: f64,
    /// Hazard sightings (fire, smoke…) within this many metres of each
    /// other, or of a hazard already tracked (plus twice their position
    /// errors), are one hazard: one incident per place, not per class.
    #[serde(default = "default_hazard_merge")]
    pub hazard_merge_m: f64,
}

fn default_hazard_merge() -> f64 {
    15.0
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            rules: vec![],
            close_after_s: default_close(),
            update_interval_s: default_update(),
            person_height_m: default_person_h(),
            hazard_merge_m: default_hazard_merge(),
        }
    }
}

impl EngineConfig {
    /// Rules from the ground station's detection zones, with defaults.
    pub fn from_zones(zones: &[DetectionZone]) -> Self {
        Self {
            rules: zones.iter().map(RuleConfig::from).collect(),
            ..Self::default()
        }
    }
}

/// What kind of rule raised an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    Gathering,
    Intrusion,
    Hazard,
}

/// A tracked (or, for hazards, detected) object in one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Subject {
    /// Track id; 0 for an untracked detection.
    pub track_id: u64,
    pub class_id: usize,
    pub bbox: BBox,
    pub score: f32,
    /// Ground fix of the foot point, when the frame is geotagged.
    pub ground: Option<GroundFix>,
}

/// What the engine sees in one frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameInput<'a> {
    pub seq: u64,
    pub t_unix_ms: i64,
    /// Confirmed, currently matched tracks.
    pub tracks: &'a [Subject],
    /// Detections of hazard classes (above threshold) in this frame.
    pub hazards: &'a [Subject],
    /// The detector has looked since the previous frame given to the
    /// engine (`hazards` holds what it found). False for a camera frame
    /// whose tracks were only predicted: hazard rules count K of the last
    /// M *detector* frames, and skip such frames.
    pub detected: bool,
}

/// Where an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IncidentLocation {
    pub lat_deg: f64,
    pub lon_deg: f64,
    pub alt_m: f64,
    pub sigma: GroundEllipse,
}

/// An incident as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// UUID v7, made when the incident opens; becomes the alert id.
    pub id: Uuid,
    pub rule_name: String,
    pub rule_kind: RuleKind,
    pub category: Category,
    /// The rule's zone name, when it has a zone.
    pub zone: Option<String>,
    /// When the condition was first seen (Unix ms).
    pub t_first_unix_ms: i64,
    /// When the rule fired.
    pub t_opened_unix_ms: i64,
    /// Latest frame that saw it.
    pub t_last_unix_ms: i64,
    pub frame_seq: u64,
    pub confidence: f64,
    /// Tracks behind it (now).
    pub track_ids: Vec<u64>,
    /// Their boxes in the latest frame (for the snapshot).
    pub boxes: Vec<BBox>,
    pub class_ids: Vec<usize>,
    /// People in a gathering, intruders in an intrusion.
    pub count: Option<u32>,
    pub count_at_open: Option<u32>,
    pub peak_count: Option<u32>,
    /// Largest distance between members on the ground (m).
    pub extent_m: Option<f64>,
    /// `None`: position unknown (no pose at frame time).
    pub location: Option<IncidentLocation>,
    /// Human-readable account of what the rule saw.
    pub detail: String,
}

/// What happened to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentChange {
    Opened,
    Updated,
    Closed,
}

/// One incident event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentEvent {
    pub change: IncidentChange,
    pub t_unix_ms: i64,
    pub incident: Incident,
}

// ------------------------------------------------------------ positions

#[derive(Debug, Clone, Copy)]
enum Pos {
    /// East, north in the engine's local frame, with the fix.
    Ground { e: f64, n: f64, fix: GroundFix },
    /// Image plane: foot pixel and metres per pixel at that person.
    Image { x: f64, y: f64, m_per_px: f64 },
}

fn dist(a: &Pos, b: &Pos) -> Option<f64> {
    match (a, b) {
        (Pos::Ground { e: e1, n: n1, .. }, Pos::Ground { e: e2, n: n2, .. }) => {
            Some((e1 - e2).hypot(n1 - n2))
        }
        (
            Pos::Image {
                x: x1,
                y: y1,
                m_per_px: s1,
            },
            Pos::Image {
                x: x2,
                y: y2,
                m_per_px: s2,
            },
        ) => Some((x1 - x2).hypot(y1 - y2) * (s1 + s2) / 2.0),
        _ => None,
    }
}

struct Member {
    subject: Subject,
    pos: Pos,
}

struct Zone {
    name: String,
    polygon: Polygon<f64>,
}

impl Zone {
    fn contains(&self, s: &Subject) -> bool {
        match &s.ground {
            Some(g) => self
                .polygon
                .contains(&Point::new(g.point.lon_deg, g.point.lat_deg)),
            None => false,
        }
    }
}

fn to_polygon(p: &GeoPolygon) -> Polygon<f64> {
    let ring = |r: &[tiancha_protocol::GeoPoint]| -> LineString<f64> {
        LineString::from(
            r.iter()
                .map(|g| Coord {
                    x: g.lon_deg,
                    y: g.lat_deg,
                })
                .collect::<Vec<_>>(),
        )
    };
    Polygon::new(ring(&p.exterior), p.holes.iter().map(|h| ring(h)).collect())
}

// ------------------------------------------------------------ rule state

struct Episode {
    since_ms: i64,
    last_seen_ms: i64,
    members: BTreeSet<u64>,
    centroid: Option<Pos>,
    open: Option<Incident>,
    last_update_ms: i64,
    reported_count: u32,
    reported_at: Option<(f64, f64)>,
}

/// One hazard place: the sightings of any of the rule's classes there,
/// k of the last m detector frames, its own incident.
struct HazardSite {
    /// Classes seen here.
    classes: BTreeSet<usize>,
    /// Hit or miss in each of the last m detector frames.
    window: VecDeque<bool>,
    since_ms: i64,
    last_hit_ms: i64,
    /// Positions of its recent sightings (oldest first).
    seen_at: VecDeque<Pos>,
    best_score: f32,
    open: Option<Incident>,
    last_update_ms: i64,
}

/// Sightings a hazard site remembers for its place.
const SITE_FIXES: usize = 30;

impl HazardSite {
    /// Where it is: the mean of its ground sightings, or its newest
    /// image-plane one when there is no pose.
    fn pos(&self) -> Option<Pos> {
        let newest = *self.seen_at.back()?;
        let Pos::Ground { fix, .. } = newest else {
            return Some(newest);
        };
        Some(ground_mean(self.seen_at.iter(), fix))
    }
}

/// The mean of the ground positions among `ps`, carrying `fix`.
fn ground_mean<'a>(ps: impl Iterator<Item = &'a Pos>, fix: GroundFix) -> Pos {
    let g: Vec<(f64, f64)> = ps
        .filter_map(|p| match p {
            Pos::Ground { e, n, .. } => Some((*e, *n)),
            _ => None,
        })
        .collect();
    let k = g.len() as f64;
    Pos::Ground {
        e: g.iter().map(|p| p.0).sum::<f64>() / k,
        n: g.iter().map(|p| p.1).sum::<f64>() / k,
        fix,
    }
}

/// A position's own error (1-σ semi-major, m); 0 on the image plane.
fn pos_sigma(p: &Pos) -> f64 {
    match p {
        Pos::Ground { fix, .. } => fix.sigma.semi_major_m,
        Pos::Image { .. } => 0.0,
    }
}

/// Groups of members within `radius_m` of one another (single linkage).
fn components<'a>(members: &[&'a Member], radius_m: f64) -> Vec<Vec<&'a Member>> {
    let n = members.len();
    let mut comp: Vec<usize> = (0..n).collect();
    fn find(c: &mut [usize], i: usize) -> usize {
        let mut r = i;
        while c[r] != r {
            r = c[r];
        }
        let mut j = i;
        while c[j] != r {
            let next = c[j];
            c[j] = r;
            j = next;
        }
        r
    }
    for i in 0..n {
        for j in i + 1..n {
            if dist(&members[i].pos, &members[j].pos).is_some_and(|d| d <= radius_m) {
                let (a, b) = (find(&mut comp, i), find(&mut comp, j));
                if a != b {
                    comp[a] = b;
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<&Member>> = BTreeMap::new();
    for (i, p) in members.iter().enumerate() {
        let r = find(&mut comp, i);
        groups.entry(r).or_default().push(p);
    }
    groups.into_values().collect()
}

// One per rule, a handful per engine: boxing the big variant buys nothing.
#[allow(clippy::large_enum_variant)]
enum RuleState {
    Gathering {
        min_people: u32,
        radius_m: f64,
        min_duration_ms: i64,
        episodes: Vec<Episode>,
    },
    Intrusion {
        classes: Vec<usize>,
        min_duration_ms: i64,
        /// track id → (entered, last seen inside)
        inside: BTreeMap<u64, (i64, i64)>,
        open: Option<Incident>,
        since_ms: Option<i64>,
        last_update_ms: i64,
        reported_count: u32,
    },
    Hazard {
        k: u32,
        m: u32,
        /// The rule's classes and their alert categories.
        categories: BTreeMap<usize, Category>,
        sites: Vec<HazardSite>,
    },
}

struct Rule {
    name: String,
    zone: Option<Zone>,
    state: RuleState,
}

/// The event engine.
pub struct EventEngine {
    cfg: EngineConfig,
    manifest: Arc<Manifest>,
    rules: Vec<Rule>,
    frame: Option<LocalFrame>,
}

impl EventEngine {
    /// Check the rules against the model's classes and build the engine.
    pub fn new(cfg: EngineConfig, manifest: Arc<Manifest>) -> Result<Self> {
        let bad = |m: String| Err(InferenceError::Config(m));
        if !(cfg.close_after_s >= 0.0 && cfg.close_after_s.is_finite()) {
            return bad(format!(
                "close_after_s = {} must be >= 0",
                cfg.close_after_s
            ));
        }
        if !(cfg.update_interval_s >= 0.0 && cfg.update_interval_s.is_finite()) {
            return bad(format!(
                "update_interval_s = {} must be >= 0",
                cfg.update_interval_s
            ));
        }
        if cfg.person_height_m.is_nan() || cfg.person_height_m <= 0.0 {
            return bad("person_height_m must be positive".into());
        }
        let mut rules = Vec::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            let at = format!("rules[{i}] ({:?})", r.name);
            let class_ids = |names: &[String]| -> Result<Vec<usize>> {
                names
                    .iter()
                    .map(|n| {
                        manifest.class_id(n).ok_or_else(|| {
                            InferenceError::Config(format!(
                                "{at}: class {n:?} is not one of model {:?}'s classes",
                                manifest.file.name
                            ))
                        })
                    })
                    .collect()
            };
            if let Some(z) = &r.zone {
                if z.exterior.len() < 3 {
                    return bad(format!("{at}: zone polygon needs at least 3 points"));
                }
            }
            let dur = |s: f64| -> Result<i64> {
                if s.is_finite() && s >= 0.0 {
                    Ok((s * 1000.0).round() as i64)
                } else {
                    Err(InferenceError::Config(format!(
                        "{at}: duration {s} s is invalid"
                    )))
                }
            };
            let state = match &r.rule {
                ZoneRule::Gathering {
                    min_people,
                    radius_m,
                    min_duration_s,
                } => {
                    if *min_people < 2 {
                        return bad(format!("{at}: a gathering needs min_people >= 2"));
                    }
                    if !(radius_m.is_finite() && *radius_m > 0.0) {
                        return bad(format!("{at}: radius_m {radius_m} must be positive"));
                    }
                    if manifest.people.is_empty() {
                        return bad(format!(
                            "{at}: model {:?} has no people classes (events.people) to count",
                            manifest.file.name
                        ));
                    }
                    RuleState::Gathering {
                        min_people: *min_people,
                        radius_m: *radius_m,
                        min_duration_ms: dur(*min_duration_s)?,
                        episodes: vec![],
                    }
                }
                ZoneRule::Intrusion {
                    classes,
                    min_duration_s,
                } => {
                    if r.zone.is_none() {
                        return bad(format!("{at}: an intrusion rule needs a zone polygon"));
                    }
                    let classes = if classes.is_empty() {
                        manifest.intruders.clone()
                    } else {
                        class_ids(classes)?
                    };
                    RuleState::Intrusion {
                        classes,
                        min_duration_ms: dur(*min_duration_s)?,
                        inside: BTreeMap::new(),
                        open: None,
                        since_ms: None,
                        last_update_ms: 0,
                        reported_count: 0,
                    }
                }
                ZoneRule::Hazard { classes, k_of_m } => {
                    let (k, m) = *k_of_m;
                    if k == 0 || k > m || m > 1000 {
                        return bad(format!("{at}: k_of_m ({k}, {m}) needs 1 <= k <= m <= 1000"));
                    }
                    let ids = if classes.is_empty() {
                        manifest.hazards.iter().map(|(id, _)| *id).collect()
                    } else {
                        class_ids(classes)?
                    };
                    RuleState::Hazard {
                        k,
                        m,
                        categories: ids
                            .into_iter()
                            .map(|id| {
                                let cat = manifest.hazard_category(id).unwrap_or_else(|| {
                                    crate::manifest::default_hazard_category(
                                        manifest.class_name(id),
                                    )
                                });
                                (id, cat)
                            })
                            .collect(),
                        sites: Vec::new(),
                    }
                }
            };
            rules.push(Rule {
                name: r.name.clone(),
                zone: r.zone.as_ref().map(|z| Zone {
                    name: r.name.clone(),
                    polygon: to_polygon(z),
                }),
                state,
            });
        }
        Ok(Self {
            cfg,
            manifest,
            rules,
            frame: None,
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Incidents open now.
    pub fn open_incidents(&self) -> Vec<&Incident> {
        let mut v = Vec::new();
        for r in &self.rules {
            match &r.state {
                RuleState::Gathering { episodes, .. } => {
                    v.extend(episodes.iter().filter_map(|e| e.open.as_ref()))
                }
                RuleState::Intrusion { open, .. } => v.extend(open.as_ref()),
                RuleState::Hazard { sites, .. } => {
                    v.extend(sites.iter().filter_map(|h| h.open.as_ref()))
                }
            }
        }
        v
    }

    fn pos_of(&mut self, s: &Subject) -> Pos {
        if let Some(fix) = s.ground {
            let frame = *self.frame.get_or_insert_with(|| LocalFrame::new(fix.point));
            let (e, n) = frame.to_en(fix.point.horizontal());
            Pos::Ground { e, n, fix }
        } else {
            let (x, y) = s.bbox.foot();
            let h = s.bbox.height().max(1.0) as f64;
            Pos::Image {
                x: x as f64,
                y: y as f64,
                m_per_px: self.cfg.person_height_m / h,
            }
        }
    }

    /// Location of a group: mean of the members' ground points; the
    /// covariance is the members' mean (their pose errors are shared, so
    /// averaging does not shrink them).
    fn locate(&self, members: &[&Member]) -> Option<IncidentLocation> {
        self.locate_at(members.iter().map(|m| &m.pos))
    }

    /// [`EventEngine::locate`] of positions.
    fn locate_at<'a>(&self, positions: impl Iterator<Item = &'a Pos>) -> Option<IncidentLocation> {
        let frame = self.frame?;
        let fixes: Vec<(f64, f64, &GroundFix)> = positions
            .filter_map(|p| match p {
                Pos::Ground { e, n, fix } => Some((*e, *n, fix)),
                _ => None,
            })
            .collect();
        if fixes.is_empty() {
            return None;
        }
        let k = fixes.len() as f64;
        let e = fixes.iter().map(|f| f.0).sum::<f64>() / k;
        let n = fixes.iter().map(|f| f.1).sum::<f64>() / k;
        let alt = fixes.iter().map(|f| f.2.point.alt_m).sum::<f64>() / k;
        let mut cov = Matrix2::zeros();
        for f in &fixes {
            cov += f.2.cov_ne_m2;
        }
        cov /= k;
        // "Where the group is" is the centre of all its people, and the
        // members seen are a sample of them: the standard error of their
        // mean (sample covariance / k) adds to the geotag's own error.
        // The spread itself is reported as the extent.
        if fixes.len() >= 2 {
            let mut scatter = Matrix2::zeros();
            for f in &fixes {
                let d = nalgebra::Vector2::new(f.1 - n, f.0 - e);
                scatter += d * d.transpose();
            }
            cov += scatter / ((k - 1.0) * k);
        }
        let p = frame.from_en(e, n);
        Some(IncidentLocation {
            lat_deg: p.lat_deg,
            lon_deg: p.lon_deg,
            alt_m: alt,
            sigma: GroundEllipse::from_covariance(&cov),
        })
    }

    /// Feed one frame; returns the incident events it causes.
    pub fn update(&mut self, input: &FrameInput<'_>) -> Vec<IncidentEvent> {
        let now = input.t_unix_ms;
        let close_ms = (self.cfg.close_after_s * 1000.0).round() as i64;
        let update_ms = (self.cfg.update_interval_s * 1000.0).round() as i64;
        let members: Vec<Member> = input
            .tracks
            .iter()
            .map(|s| Member {
                subject: *s,
                pos: self.pos_of(s),
            })
            .collect();
        let hazard_members: Vec<Member> = input
            .hazards
            .iter()
            .map(|s| Member {
                subject: *s,
                pos: self.pos_of(s),
            })
            .collect();
        let mut out = Vec::new();
        let mut rules = std::mem::take(&mut self.rules);
        for rule in &mut rules {
            match &mut rule.state {
                RuleState::Gathering { .. } => {
                    self.update_gathering(rule, &members, input, close_ms, update_ms, &mut out)
                }
                RuleState::Intrusion { .. } => {
                    self.update_intrusion(rule, &members, input, close_ms, update_ms, &mut out)
                }
                RuleState::Hazard { .. } => {
                    self.update_hazard(rule, &hazard_members, input, close_ms, update_ms, &mut out)
                }
            }
        }
        self.rules = rules;
        let _ = now;
        out
    }

    /// Close every open incident (end of stream).
    pub fn finish(&mut self, t_unix_ms: i64) -> Vec<IncidentEvent> {
        let mut out = Vec::new();
        let mut close = |inc: Option<Incident>| {
            if let Some(mut i) = inc {
                i.detail = format!("{} — closed at end of stream", i.detail);
                out.push(IncidentEvent {
                    change: IncidentChange::Closed,
                    t_unix_ms,
                    incident: i,
                });
            }
        };
        for r in &mut self.rules {
            match &mut r.state {
                RuleState::Gathering { episodes, .. } => {
                    for e in episodes.drain(..) {
                        close(e.open);
                    }
                }
                RuleState::Intrusion {
                    open,
                    inside,
                    since_ms,
                    ..
                } => {
                    close(open.take());
                    inside.clear();
                    *since_ms = None;
                }
                RuleState::Hazard { sites, .. } => {
                    for h in sites.drain(..) {
                        close(h.open);
                    }
                }
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn update_gathering(
        &self,
        rule: &mut Rule,
        all: &[Member],
        input: &FrameInput<'_>,
        close_ms: i64,
        update_ms: i64,
        out: &mut Vec<IncidentEvent>,
    ) {
        let RuleState::Gathering {
            min_people,
            radius_m,
            min_duration_ms,
            episodes,
        } = &mut rule.state
        else {
            return;
        };
        let now = input.t_unix_ms;
        let people: Vec<&Member> = all
            .iter()
            .filter(|m| self.manifest.people.contains(&m.subject.class_id))
            .filter(|m| rule.zone.as_ref().is_none_or(|z| z.contains(&m.subject)))
            .collect();
        let n = people.len();
        let candidates: Vec<Vec<&Member>> = components(&people, *radius_m)
            .into_iter()
            .filter(|g| g.len() as u32 >= *min_people)
            .collect();
        tracing::debug!(
            rule = %rule.name,
            people = n,
            all = ?all
                .iter()
                .map(|m| (
                    m.subject.class_id,
                    m.subject.ground.map(|g| (g.point.lat_deg, g.point.lon_deg))
                ))
                .collect::<Vec<_>>(),
            candidates = ?candidates.iter().map(|c| c.len()).collect::<Vec<_>>(),
            episodes = episodes.len(),
            "gathering rule"
        );

        // Match candidates to episodes: most shared track ids first, then
        // nearest centroid within the radius.
        let mut pairs: Vec<(usize, usize, usize, f64)> = Vec::new();
        for (ci, c) in candidates.iter().enumerate() {
            let ids: BTreeSet<u64> = c.iter().map(|m| m.subject.track_id).collect();
            let cen = centroid(c);
            for (ei, e) in episodes.iter().enumerate() {
                let shared = ids.intersection(&e.members).count();
                let d = match (&cen, &e.centroid) {
                    (Some(a), Some(b)) => dist(a, b).unwrap_or(f64::INFINITY),
                    _ => f64::INFINITY,
                };
                if shared > 0 || d <= *radius_m {
                    pairs.push((ci, ei, shared, d));
                }
            }
        }
        pairs.sort_by(|a, b| b.2.cmp(&a.2).then(a.3.total_cmp(&b.3)));
        let mut c_used = vec![None; candidates.len()];
        let mut e_used = vec![false; episodes.len()];
        for (ci, ei, _, _) in pairs {
            if c_used[ci].is_none() && !e_used[ei] {
                c_used[ci] = Some(ei);
                e_used[ei] = true;
            }
        }
        for (ci, c) in candidates.iter().enumerate() {
            let ids: BTreeSet<u64> = c.iter().map(|m| m.subject.track_id).collect();
            match c_used[ci] {
                Some(ei) => {
                    let e = &mut episodes[ei];
                    e.members = ids;
                    e.last_seen_ms = now;
                    e.centroid = centroid(c);
                }
                None => episodes.push(Episode {
                    since_ms: now,
                    last_seen_ms: now,
                    members: ids,
                    centroid: centroid(c),
                    open: None,
                    last_update_ms: now,
                    reported_count: 0,
                    reported_at: None,
                }),
            }
        }
        // Candidate index per episode (new ones were appended in order).
        let mut cand_of: Vec<Option<usize>> = vec![None; episodes.len()];
        let mut next_new = e_used.len();
        for (ci, u) in c_used.iter().enumerate() {
            match u {
                Some(ei) => cand_of[*ei] = Some(ci),
                None => {
                    cand_of[next_new] = Some(ci);
                    next_new += 1;
                }
            }
        }

        let mut keep = Vec::new();
        for (ei, mut e) in std::mem::take(episodes).into_iter().enumerate() {
            let Some(ci) = cand_of[ei] else {
                // Not seen this frame.
                if now - e.last_seen_ms > close_ms {
                    if let Some(mut inc) = e.open.take() {
                        let dur = (e.last_seen_ms - e.since_ms) as f64 / 1000.0;
                        inc.detail = format!(
                            "gathering ended: {} people at the peak, lasted {:.0} s",
                            inc.peak_count.unwrap_or(0),
                            dur
                        );
                        inc.t_last_unix_ms = e.last_seen_ms;
                        out.push(IncidentEvent {
                            change: IncidentChange::Closed,
                            t_unix_ms: now,
                            incident: inc,
                        });
                    }
                    continue;
                }
                keep.push(e);
                continue;
            };
            let c = &candidates[ci];
            let count = c.len() as u32;
            let extent = extent(c);
            let location = self.locate(c);
            let duration_s = (now - e.since_ms) as f64 / 1000.0;
            let conf = c.iter().map(|m| m.subject.score as f64).sum::<f64>() / c.len() as f64;
            let threshold_txt = format!(
                "threshold {min_people} people within {radius_m} m for {:.0} s",
                *min_duration_ms as f64 / 1000.0
            );
            match &mut e.open {
                None if now - e.since_ms >= *min_duration_ms => {
                    let inc =
                        Incident {
                            id: Uuid::now_v7(),
                            rule_name: rule.name.clone(),
                            rule_kind: RuleKind::Gathering,
                            category: Category::Gathering,
                            zone: rule.zone.as_ref().map(|z| z.name.clone()),
                            t_first_unix_ms: e.since_ms,
                            t_opened_unix_ms: now,
                            t_last_unix_ms: now,
                            frame_seq: input.seq,
                            confidence: conf.clamp(0.0, 1.0),
                            track_ids: c.iter().map(|m| m.subject.track_id).collect(),
                            boxes: c.iter().map(|m| m.subject.bbox).collect(),
                            class_ids: c.iter().map(|m| m.subject.class_id).collect(),
                            count: Some(count),
                            count_at_open: Some(count),
                            peak_count: Some(count),
                            extent_m: extent,
                            location,
                            detail: format!(
                            "{count} people within {} for {duration_s:.0} s ({threshold_txt}){}",
                            extent.map(|x| format!("{x:.0} m")).unwrap_or("?".into()),
                            if location.is_none() { "; position unknown" } else { "" }
                        ),
                        };
                    e.last_update_ms = now;
                    e.reported_count = count;
                    e.reported_at = centroid_en(c);
                    out.push(IncidentEvent {
                        change: IncidentChange::Opened,
                        t_unix_ms: now,
                        incident: inc.clone(),
                    });
                    e.open = Some(inc);
                }
                None => {}
                Some(inc) => {
                    inc.t_last_unix_ms = now;
                    inc.frame_seq = input.seq;
                    inc.track_ids = c.iter().map(|m| m.subject.track_id).collect();
                    inc.boxes = c.iter().map(|m| m.subject.bbox).collect();
                    inc.class_ids = c.iter().map(|m| m.subject.class_id).collect();
                    inc.count = Some(count);
                    inc.peak_count = Some(inc.peak_count.unwrap_or(0).max(count));
                    inc.extent_m = extent;
                    if location.is_some() {
                        inc.location = location;
                    }
                    inc.confidence = conf.clamp(0.0, 1.0);
                    let moved = match (e.reported_at, centroid_en(c)) {
                        (Some(a), Some(b)) => (a.0 - b.0).hypot(a.1 - b.1) > radius_m.max(5.0),
                        _ => false,
                    };
                    if (count != e.reported_count || moved) && now - e.last_update_ms >= update_ms {
                        let from = inc.count_at_open.unwrap_or(count);
                        let growth = if count > from {
                            format!("grew from {from} to {count} people")
                        } else if count < from {
                            format!("shrank from {from} to {count} people")
                        } else {
                            format!("{count} people")
                        };
                        inc.detail = format!(
                            "{growth} within {} for {duration_s:.0} s ({threshold_txt})",
                            extent.map(|x| format!("{x:.0} m")).unwrap_or("?".into()),
                        );
                        e.last_update_ms = now;
                        e.reported_count = count;
                        e.reported_at = centroid_en(c);
                        out.push(IncidentEvent {
                            change: IncidentChange::Updated,
                            t_unix_ms: now,
                            incident: inc.clone(),
                        });
                    }
                }
            }
            keep.push(e);
        }
        *episodes = keep;
    }

    #[allow(clippy::too_many_arguments)]
    fn update_intrusion(
        &self,
        rule: &mut Rule,
        all: &[Member],
        input: &FrameInput<'_>,
        close_ms: i64,
        update_ms: i64,
        out: &mut Vec<IncidentEvent>,
    ) {
        let Some(zone) = &rule.zone else { return };
        let RuleState::Intrusion {
            classes,
            min_duration_ms,
            inside,
            open,
            since_ms,
            last_update_ms,
            reported_count,
        } = &mut rule.state
        else {
            return;
        };
        let now = input.t_unix_ms;
        let here: Vec<&Member> = all
            .iter()
            .filter(|m| classes.contains(&m.subject.class_id) && zone.contains(&m.subject))
            .collect();
        for m in &here {
            inside
                .entry(m.subject.track_id)
                .and_modify(|v| v.1 = now)
                .or_insert((now, now));
        }
        // Forget tracks not seen inside for the grace period.
        inside.retain(|_, v| now - v.1 <= close_ms);
        if here.is_empty() {
            if inside.is_empty() {
                if let Some(mut inc) = open.take() {
                    inc.detail = format!(
                        "{} left danger zone {:?}",
                        if inc.peak_count.unwrap_or(1) > 1 {
                            "everyone"
                        } else {
                            "the intruder"
                        },
                        zone.name
                    );
                    out.push(IncidentEvent {
                        change: IncidentChange::Closed,
                        t_unix_ms: now,
                        incident: inc,
                    });
                }
                *since_ms = None;
            }
            return;
        }
        let first_in = here
            .iter()
            .map(|m| inside[&m.subject.track_id].0)
            .min()
            .unwrap_or(now);
        since_ms.get_or_insert(first_in);
        let longest = now - first_in;
        let count = here.len() as u32;
        let names: BTreeSet<&str> = here
            .iter()
            .map(|m| self.manifest.class_name(m.subject.class_id))
            .collect();
        let what = names.into_iter().collect::<Vec<_>>().join("/");
        let conf = here.iter().map(|m| m.subject.score as f64).sum::<f64>() / here.len() as f64;
        let location = self.locate(&here);
        let detail = format!(
            "{count} {what} inside danger zone {:?} for {:.0} s (threshold {:.0} s)",
            zone.name,
            longest as f64 / 1000.0,
            *min_duration_ms as f64 / 1000.0
        );
        match open {
            None if longest >= *min_duration_ms => {
                let inc = Incident {
                    id: Uuid::now_v7(),
                    rule_name: rule.name.clone(),
                    rule_kind: RuleKind::Intrusion,
                    category: Category::Intrusion,
                    zone: Some(zone.name.clone()),
                    t_first_unix_ms: since_ms.unwrap_or(first_in),
                    t_opened_unix_ms: now,
                    t_last_unix_ms: now,
                    frame_seq: input.seq,
                    confidence: conf.clamp(0.0, 1.0),
                    track_ids: here.iter().map(|m| m.subject.track_id).collect(),
                    boxes: here.iter().map(|m| m.subject.bbox).collect(),
                    class_ids: here.iter().map(|m| m.subject.class_id).collect(),
                    count: Some(count),
                    count_at_open: Some(count),
                    peak_count: Some(count),
                    extent_m: extent(&here),
                    location,
                    detail,
                };
                *last_update_ms = now;
                *reported_count = count;
                out.push(IncidentEvent {
                    change: IncidentChange::Opened,
                    t_unix_ms: now,
                    incident: inc.clone(),
                });
                *open = Some(inc);
            }
            None => {}
            Some(inc) => {
                inc.t_last_unix_ms = now;
                inc.frame_seq = input.seq;
                inc.track_ids = here.iter().map(|m| m.subject.track_id).collect();
                inc.boxes = here.iter().map(|m| m.subject.bbox).collect();
                inc.class_ids = here.iter().map(|m| m.subject.class_id).collect();
                inc.count = Some(count);
                inc.peak_count = Some(inc.peak_count.unwrap_or(0).max(count));
                if location.is_some() {
                    inc.location = location;
                }
                if count != *reported_count && now - *last_update_ms >= update_ms {
                    inc.detail = detail;
                    *last_update_ms = now;
                    *reported_count = count;
                    out.push(IncidentEvent {
                        change: IncidentChange::Updated,
                        t_unix_ms: now,
                        incident: inc.clone(),
                    });
                }
            }
        }
    }

    /// Hazards by place: this detector frame's sightings of the rule's
    /// classes, grouped within `hazard_merge_m`, each group matched to
    /// the nearest site within `hazard_merge_m` plus twice both position
    /// errors (else a new site); a site opens its incident when seen in k
    /// of its last m detector frames, updates when its category rises
    /// (smoke, then fire) or it moves, and closes when unseen for the
    /// close time.
    #[allow(clippy::too_many_arguments)]
    fn update_hazard(
        &self,
        rule: &mut Rule,
        all: &[Member],
        input: &FrameInput<'_>,
        close_ms: i64,
        update_ms: i64,
        out: &mut Vec<IncidentEvent>,
    ) {
        let RuleState::Hazard {
            k,
            m,
            categories,
            sites,
        } = &mut rule.state
        else {
            return;
        };
        let now = input.t_unix_ms;
        let merge_m = self.cfg.hazard_merge_m;
        // Sites unseen for the close time end first: a sighting after
        // that is a new hazard.
        sites.retain_mut(|site| {
            if now - site.last_hit_ms <= close_ms {
                return true;
            }
            if let Some(mut inc) = site.open.take() {
                inc.detail = format!(
                    "{} no longer seen since {:.0} s",
                    self.class_names(&site.classes),
                    close_ms as f64 / 1000.0
                );
                out.push(IncidentEvent {
                    change: IncidentChange::Closed,
                    t_unix_ms: now,
                    incident: inc,
                });
            }
            false
        });
        let hits: Vec<&Member> = all
            .iter()
            .filter(|x| categories.contains_key(&x.subject.class_id))
            .filter(|x| rule.zone.as_ref().is_none_or(|z| z.contains(&x.subject)))
            .collect();
        // This frame's sightings per site (index into `sites`).
        let mut hit_of: BTreeMap<usize, Vec<&Member>> = BTreeMap::new();
        if input.detected {
            let groups = components(&hits, merge_m);
            let mut pairs: Vec<(usize, usize, f64)> = Vec::new();
            for (gi, g) in groups.iter().enumerate() {
                let Some(gp) = centroid(g) else { continue };
                let g_sigma = g.iter().map(|x| pos_sigma(&x.pos)).fold(0.0, f64::max);
                for (si, site) in sites.iter().enumerate() {
                    let Some(sp) = site.pos() else { continue };
                    if let Some(d) = dist(&gp, &sp) {
                        if d <= merge_m + 2.0 * g_sigma.hypot(pos_sigma(&sp)) {
                            pairs.push((gi, si, d));
                        }
                    }
                }
            }
            pairs.sort_by(|a, b| a.2.total_cmp(&b.2));
            let mut g_site: Vec<Option<usize>> = vec![None; groups.len()];
            let mut s_used = vec![false; sites.len()];
            for (gi, si, _) in pairs {
                if g_site[gi].is_none() && !s_used[si] {
                    g_site[gi] = Some(si);
                    s_used[si] = true;
                }
            }
            for (gi, g) in groups.into_iter().enumerate() {
                let si = match g_site[gi] {
                    Some(si) => si,
                    None => {
                        sites.push(HazardSite {
                            classes: BTreeSet::new(),
                            window: VecDeque::new(),
                            since_ms: now,
                            last_hit_ms: now,
                            seen_at: VecDeque::new(),
                            best_score: 0.0,
                            open: None,
                            last_update_ms: now,
                        });
                        sites.len() - 1
                    }
                };
                let site = &mut sites[si];
                site.last_hit_ms = now;
                site.best_score = g.iter().map(|x| x.subject.score).fold(0.0, f32::max);
                for x in &g {
                    site.classes.insert(x.subject.class_id);
                    site.seen_at.push_back(x.pos);
                }
                while site.seen_at.len() > SITE_FIXES {
                    site.seen_at.pop_front();
                }
                hit_of.insert(si, g);
            }
            for (si, site) in sites.iter_mut().enumerate() {
                site.window.push_back(hit_of.contains_key(&si));
                while site.window.len() > *m as usize {
                    site.window.pop_front();
                }
            }
        }
        let mut keep = Vec::with_capacity(sites.len());
        for (si, mut site) in std::mem::take(sites).into_iter().enumerate() {
            let seen = site.window.iter().filter(|b| **b).count() as u32;
            let Some(here) = hit_of.get(&si) else {
                keep.push(site);
                continue;
            };
            // The most severe class seen here: fire before smoke before
            // the rest (the wire contract's order).
            let category = site
                .classes
                .iter()
                .map(|c| categories[c])
                .min_by_key(|c| Category::ALL.iter().position(|a| a == c))
                .expect("a site has a class");
            let location = self.locate_at(site.seen_at.iter());
            let max_score = site.best_score as f64;
            let conf = (max_score * seen as f64 / *m as f64).clamp(0.0, 1.0);
            let what = self.class_names(&site.classes);
            let detail = format!(
                "{what} seen in {seen} of the last {} frames (threshold {k} of {m}), best score {max_score:.2}",
                site.window.len()
            );
            let track_ids = here
                .iter()
                .map(|x| x.subject.track_id)
                .filter(|t| *t != 0)
                .collect();
            let boxes = here.iter().map(|x| x.subject.bbox).collect();
            let class_ids = here.iter().map(|x| x.subject.class_id).collect();
            match &mut site.open {
                None if seen >= *k => {
                    let inc = Incident {
                        id: Uuid::now_v7(),
                        rule_name: rule.name.clone(),
                        rule_kind: RuleKind::Hazard,
                        category,
                        zone: rule.zone.as_ref().map(|z| z.name.clone()),
                        t_first_unix_ms: site.since_ms,
                        t_opened_unix_ms: now,
                        t_last_unix_ms: now,
                        frame_seq: input.seq,
                        confidence: conf,
                        track_ids,
                        boxes,
                        class_ids,
                        count: None,
                        count_at_open: None,
                        peak_count: None,
                        extent_m: None,
                        location,
                        detail,
                    };
                    site.last_update_ms = now;
                    out.push(IncidentEvent {
                        change: IncidentChange::Opened,
                        t_unix_ms: now,
                        incident: inc.clone(),
                    });
                    site.open = Some(inc);
                }
                None => {}
                Some(inc) => {
                    inc.t_last_unix_ms = now;
                    inc.frame_seq = input.seq;
                    inc.boxes = boxes;
                    inc.class_ids = class_ids;
                    inc.confidence = conf;
                    let moved = match (&inc.location, &location) {
                        (Some(a), Some(b)) => {
                            tiancha_geometry::geodesy::distance_m(
                                LatLon::new(a.lat_deg, a.lon_deg),
                                LatLon::new(b.lat_deg, b.lon_deg),
                            ) > 10.0
                        }
                        _ => false,
                    };
                    let worse = category != inc.category;
                    if location.is_some() {
                        inc.location = location;
                    }
                    if (worse || moved) && now - site.last_update_ms >= update_ms {
                        inc.category = category;
                        inc.detail = detail;
                        site.last_update_ms = now;
                        out.push(IncidentEvent {
                            change: IncidentChange::Updated,
                            t_unix_ms: now,
                            incident: inc.clone(),
                        });
                    }
                }
            }
            keep.push(site);
        }
        *sites = keep;
    }

    /// "fire/smoke": the names of classes.
    fn class_names(&self, classes: &BTreeSet<usize>) -> String {
        classes
            .iter()
            .map(|c| self.manifest.class_name(*c))
            .collect::<Vec<_>>()
            .join("/")
    }
}

fn centroid(ms: &[&Member]) -> Option<Pos> {
    let first = ms.first()?;
    match first.pos {
        Pos::Ground { fix, .. } => Some(ground_mean(ms.iter().map(|m| &m.pos), fix)),
        Pos::Image { .. } => {
            let g: Vec<(f64, f64, f64)> = ms
                .iter()
                .filter_map(|m| match m.pos {
                    Pos::Image { x, y, m_per_px } => Some((x, y, m_per_px)),
                    _ => None,
                })
                .collect();
            let k = g.len() as f64;
            Some(Pos::Image {
                x: g.iter().map(|p| p.0).sum::<f64>() / k,
                y: g.iter().map(|p| p.1).sum::<f64>() / k,
                m_per_px: g.iter().map(|p| p.2).sum::<f64>() / k,
            })
        }
    }
}

/// Centroid as a plain (a, b) pair in its own units (metres east/north
/// for ground, metres-scaled pixels for the image plane).
fn centroid_en(ms: &[&Member]) -> Option<(f64, f64)> {
    match centroid(ms)? {
        Pos::Ground { e, n, .. } => Some((e, n)),
        Pos::Image { x, y, m_per_px } => Some((x * m_per_px, y * m_per_px)),
    }
}

fn extent(ms: &[&Member]) -> Option<f64> {
    let mut best: Option<f64> = None;
    for i in 0..ms.len() {
        for j in i + 1..ms.len() {
            if let Some(d) = dist(&ms[i].pos, &ms[j].pos) {
                best = Some(best.map_or(d, |b: f64| b.max(d)));
            }
        }
    }
    if ms.len() == 1 {
        return Some(0.0);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use tiancha_geometry::LatLonAlt;
    use tiancha_protocol::GeoPoint;

    fn manifest() -> Arc<Manifest> {
        let text = r#"
name = "t"
model = "t.onnx"
[input]
name = "x"
shape = [1, 3, 64, 64]
layout = "nchw"
color = "rgb"
resize = "stretch"
[output]
decoder = "yolov8"
name = "y"
[classes]
names = ["person", "car", "fire", "smoke"]
[events]
people = ["person"]
intruders = ["person", "car"]
hazards = ["fire", "smoke"]
"#;
        Arc::new(Manifest::parse(text, Path::new("t.toml"), |_| Err("".into())).unwrap())
    }

    const HOME: LatLonAlt = LatLonAlt::new(28.45, 117.94, 60.0);

    /// A person standing `e`, `n` metres from home, with a ground fix.
    fn person(id: u64, e: f64, n: f64) -> Subject {
        let p = LocalFrame::new(HOME).from_en(e, n).with_alt(HOME.alt_m);
        Subject {
            track_id: id,
            class_id: 0,
            bbox: BBox::new(0.0, 0.0, 10.0, 30.0),
            score: 0.8,
            ground: Some(GroundFix {
                point: p,
                cov_ne_m2: Matrix2::identity() * 4.0,
                sigma: GroundEllipse::from_covariance(&(Matrix2::identity() * 4.0)),
                range_m: 50.0,
            }),
        }
    }

    fn gathering(min_people: u32, radius_m: f64, min_duration_s: f64) -> EngineConfig {
        EngineConfig {
            rules: vec![RuleConfig {
                name: "crowd".into(),
                zone: None,
                rule: ZoneRule::Gathering {
                    min_people,
                    radius_m,
                    min_duration_s,
                },
            }],
            close_after_s: 5.0,
            update_interval_s: 2.0,
            ..EngineConfig::default()
        }
    }

    fn run(engine: &mut EventEngine, t: i64, tracks: &[Subject]) -> Vec<IncidentEvent> {
        engine.update(&FrameInput {
            seq: (t / 100) as u64,
            t_unix_ms: t,
            tracks,
            hazards: &[],
            detected: true,
        })
    }

    #[test]
    fn a_gathering_opens_once_after_its_duration_updates_on_growth_and_closes() {
        let mut eng = EventEngine::new(gathering(3, 3.0, 10.0), manifest()).unwrap();
        let mut events = Vec::new();
        let group = |n: usize| -> Vec<Subject> {
            (0..n)
                .map(|i| person(i as u64 + 1, i as f64 * 2.0, 0.0))
                .collect()
        };
        // Plus a loner far away who never counts.
        let loner = person(99, 100.0, 100.0);
        let mut t = 0;
        // 15 s with 3 people (chain 0-2-4 m: each within 3 m of a neighbour).
        while t < 15_000 {
            let mut s = group(3);
            s.push(loner);
            events.extend(run(&mut eng, t, &s));
            t += 100;
        }
        assert_eq!(events.len(), 1, "{events:#?}");
        let opened = events[0].clone();
        assert_eq!(opened.change, IncidentChange::Opened);
        assert_eq!(opened.t_unix_ms, 10_000);
        let inc = &opened.incident;
        assert_eq!((inc.count, inc.t_first_unix_ms), (Some(3), 0));
        assert!((inc.extent_m.unwrap() - 4.0).abs() < 0.01);
        // Located at the members' mean (2 m east), not anywhere else.
        let loc = inc.location.unwrap();
        let (e, n) = LocalFrame::new(HOME).to_en(LatLon::new(loc.lat_deg, loc.lon_deg));
        assert!((e - 2.0).abs() < 0.01 && n.abs() < 0.01, "{e} {n}");
        // Each fix has σ = 2 m; the mean of the three (east 0, 2, 4 m) adds
        // its standard error east: sample variance 4 m² / 3 members.
        assert!((loc.sigma.semi_major_m - (4.0f64 + 4.0 / 3.0).sqrt()).abs() < 1e-6);
        assert!((loc.sigma.semi_minor_m - 2.0).abs() < 1e-6);
        assert!(inc.detail.contains("3 people"), "{}", inc.detail);

        // It grows to 5, with a brief dip to 2 (shorter than close_after): one update, no new incident.
        events.clear();
        while t < 25_000 {
            let s = if (18_000..19_000).contains(&t) {
                group(2)
            } else {
                group(5)
            };
            events.extend(run(&mut eng, t, &s));
            t += 100;
        }
        let kinds: Vec<_> = events.iter().map(|e| e.change).collect();
        assert!(
            kinds.iter().all(|k| *k == IncidentChange::Updated),
            "{kinds:?}"
        );
        assert!(!kinds.is_empty());
        let last = events.last().unwrap();
        assert_eq!(last.incident.count, Some(5));
        assert_eq!(last.incident.id, inc.id);
        assert!(
            last.incident.detail.contains("grew from 3 to 5"),
            "{}",
            last.incident.detail
        );

        // Everyone leaves: closed once, after close_after_s.
        events.clear();
        while t < 40_000 {
            events.extend(run(&mut eng, t, &[loner]));
            t += 100;
        }
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0].change, IncidentChange::Closed);
        assert_eq!(events[0].t_unix_ms, 24_900 + 5_100);
        assert_eq!(events[0].incident.peak_count, Some(5));
        assert!(eng.open_incidents().is_empty());
    }

    #[test]
    fn a_short_gathering_never_opens_and_two_groups_make_two_incidents() {
        let mut eng = EventEngine::new(gathering(2, 3.0, 5.0), manifest()).unwrap();
        let mut events = Vec::new();
        for t in (0..4_000).step_by(100) {
            events.extend(run(
                &mut eng,
                t,
                &[person(1, 0.0, 0.0), person(2, 1.0, 0.0)],
            ));
        }
        for t in (4_000..20_000).step_by(100) {
            events.extend(run(&mut eng, t, &[]));
        }
        assert!(events.is_empty(), "{events:#?}");
        for t in (20_000..30_000).step_by(100) {
            events.extend(run(
                &mut eng,
                t,
                &[
                    person(1, 0.0, 0.0),
                    person(2, 1.0, 0.0),
                    person(3, 50.0, 0.0),
                    person(4, 51.0, 0.5),
                ],
            ));
        }
        let opened: Vec<_> = events
            .iter()
            .filter(|e| e.change == IncidentChange::Opened)
            .collect();
        assert_eq!(opened.len(), 2);
        assert_ne!(opened[0].incident.id, opened[1].incident.id);
    }

    #[test]
    fn gatherings_without_a_pose_use_the_image_plane_and_say_position_unknown() {
        let mut eng = EventEngine::new(gathering(2, 2.0, 1.0), manifest()).unwrap();
        // Two people 34 px apart, each 34 px tall (1.7 m): 1.7 m apart.
        let p = |id, x: f32| Subject {
            track_id: id,
            class_id: 0,
            bbox: BBox::new(x, 100.0, x + 12.0, 134.0),
            score: 0.7,
            ground: None,
        };
        let mut events = Vec::new();
        for t in (0..2_000).step_by(100) {
            events.extend(run(&mut eng, t, &[p(1, 100.0), p(2, 134.0)]));
        }
        assert_eq!(events.len(), 1);
        let inc = &events[0].incident;
        assert!(inc.location.is_none());
        assert!((inc.extent_m.unwrap() - 1.7).abs() < 1e-6);
        assert!(inc.detail.contains("position unknown"), "{}", inc.detail);
        // 3.4 m apart: no gathering at 2 m.
        let mut eng = EventEngine::new(gathering(2, 2.0, 1.0), manifest()).unwrap();
        for t in (0..3_000).step_by(100) {
            assert!(run(&mut eng, t, &[p(1, 100.0), p(2, 168.0)]).is_empty());
        }
    }

    fn square(e0: f64, n0: f64, size: f64) -> GeoPolygon {
        let f = LocalFrame::new(HOME);
        let pt = |e, n| {
            let p = f.from_en(e, n);
            GeoPoint::new(p.lat_deg, p.lon_deg)
        };
        GeoPolygon {
            exterior: vec![
                pt(e0, n0),
                pt(e0 + size, n0),
                pt(e0 + size, n0 + size),
                pt(e0, n0 + size),
            ],
            holes: vec![],
        }
    }

    #[test]
    fn intrusion_needs_dwell_inside_the_zone() {
        let cfg = EngineConfig {
            rules: vec![RuleConfig {
                name: "reservoir bank".into(),
                zone: Some(square(0.0, 0.0, 10.0)),
                rule: ZoneRule::Intrusion {
                    classes: vec!["person".into()],
                    min_duration_s: 3.0,
                },
            }],
            close_after_s: 2.0,
            ..EngineConfig::default()
        };
        let mut eng = EventEngine::new(cfg, manifest()).unwrap();
        let mut events = Vec::new();
        // Walks along outside the zone, then steps in at t = 5 s.
        for t in (0..12_000).step_by(100) {
            let e = if t < 5_000 { -5.0 } else { 5.0 };
            events.extend(run(&mut eng, t, &[person(7, e, 5.0)]));
        }
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].change, IncidentChange::Opened);
        assert_eq!(events[0].t_unix_ms, 8_000);
        assert_eq!(events[0].incident.zone.as_deref(), Some("reservoir bank"));
        assert!(
            events[0]
                .incident
                .detail
                .contains("person inside danger zone"),
            "{}",
            events[0].incident.detail
        );
        // Leaves: closed after the grace period.
        events.clear();
        for t in (12_000..20_000).step_by(100) {
            events.extend(run(&mut eng, t, &[person(7, 20.0, 5.0)]));
        }
        assert_eq!(
            events.iter().map(|e| e.change).collect::<Vec<_>>(),
            [IncidentChange::Closed]
        );
        // Without a zone the rule is refused.
        let bad = EngineConfig {
            rules: vec![RuleConfig {
                name: "x".into(),
                zone: None,
                rule: ZoneRule::Intrusion {
                    classes: vec!["person".into()],
                    min_duration_s: 1.0,
                },
            }],
            ..EngineConfig::default()
        };
        assert!(EventEngine::new(bad, manifest())
            .err()
            .unwrap()
            .to_string()
            .contains("zone"));
    }

    #[test]
    fn hazards_need_k_of_m_frames_and_map_to_categories() {
        let mut eng = hazard_engine(1.0);
        let mut fire = person(0, 3.0, 3.0);
        fire.class_id = 2;
        fire.track_id = 0;
        let mut events = Vec::new();
        // Flickering: hit, miss, hit, miss, hit → third hit in 5 frames opens.
        let pattern = [true, false, true, false, true, true, true];
        for (i, hit) in pattern.iter().enumerate() {
            let hz = if *hit { vec![fire] } else { vec![] };
            events.extend(eng.update(&FrameInput {
                seq: i as u64,
                t_unix_ms: i as i64 * 100,
                tracks: &[],
                hazards: &hz,
                detected: true,
            }));
            // Camera frames in between (tracks predicted, no detector
            // output) do not count as misses.
            for j in 1..4 {
                events.extend(eng.update(&FrameInput {
                    seq: i as u64,
                    t_unix_ms: i as i64 * 100 + j * 20,
                    tracks: &[],
                    hazards: &[],
                    detected: false,
                }));
            }
        }
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].t_unix_ms, 400);
        assert_eq!(events[0].incident.category, Category::Fire);
        assert!(events[0].incident.location.is_some());
        // Two hits in five never open (smoke).
        let mut smoke = fire;
        smoke.class_id = 3;
        let mut ev2 = Vec::new();
        for i in 0..50 {
            let hz = if i % 5 < 2 { vec![smoke] } else { vec![] };
            ev2.extend(eng.update(&FrameInput {
                seq: 100 + i,
                t_unix_ms: 10_000 + i as i64 * 100,
                tracks: &[],
                hazards: &hz,
                detected: true,
            }));
        }
        assert!(
            ev2.iter().all(|e| e.incident.category != Category::Smoke),
            "{ev2:#?}"
        );
        // …and the fire, gone for more than close_after, was closed.
        assert!(ev2
            .iter()
            .any(|e| e.change == IncidentChange::Closed && e.incident.category == Category::Fire));
    }

    /// A hazard sighting of class `class_id` at `e`, `n` metres from home.
    fn sighting(class_id: usize, e: f64, n: f64) -> Subject {
        Subject {
            track_id: 0,
            class_id,
            ..person(0, e, n)
        }
    }

    /// The hazard rule everywhere, 3 of 5 frames, closing after
    /// `close_after_s`, updates as often as they come.
    fn hazard_engine(close_after_s: f64) -> EventEngine {
        let cfg = EngineConfig {
            rules: vec![RuleConfig {
                name: "hazards".into(),
                zone: None,
                rule: ZoneRule::Hazard {
                    classes: vec![],
                    k_of_m: (3, 5),
                },
            }],
            close_after_s,
            update_interval_s: 0.0,
            ..EngineConfig::default()
        };
        EventEngine::new(cfg, manifest()).unwrap()
    }

    /// Detector frames 100 ms apart from `t0`, each with `sightings(i)`.
    fn detector_frames(
        eng: &mut EventEngine,
        t0: i64,
        n: usize,
        sightings: impl Fn(usize) -> Vec<Subject>,
    ) -> Vec<IncidentEvent> {
        let mut out = Vec::new();
        for i in 0..n {
            let hz = sightings(i);
            out.extend(eng.update(&FrameInput {
                seq: i as u64,
                t_unix_ms: t0 + i as i64 * 100,
                tracks: &[],
                hazards: &hz,
                detected: true,
            }));
        }
        out
    }

    #[test]
    fn hazards_are_incidents_by_place_not_by_class() {
        let opened = |ev: &[IncidentEvent]| -> Vec<Incident> {
            ev.iter()
                .filter(|e| e.change == IncidentChange::Opened)
                .map(|e| e.incident.clone())
                .collect()
        };
        // Two fires 80 m apart in the same frames: two incidents, each
        // where its fire is.
        let mut eng = hazard_engine(2.0);
        let ev = detector_frames(&mut eng, 0, 5, |_| {
            vec![sighting(2, 0.0, 0.0), sighting(2, 80.0, 0.0)]
        });
        let o = opened(&ev);
        assert_eq!(o.len(), 2, "{ev:#?}");
        let frame = LocalFrame::new(HOME);
        let mut east: Vec<f64> = o
            .iter()
            .map(|i| {
                let l = i.location.unwrap();
                frame.to_en(LatLon::new(l.lat_deg, l.lon_deg)).0
            })
            .collect();
        east.sort_by(f64::total_cmp);
        assert!(
            east[0].abs() < 0.5 && (east[1] - 80.0).abs() < 0.5,
            "{east:?}"
        );

        // Smoke first, then the fire under it 6 m away: one incident, a
        // smoke alert that becomes a fire.
        let mut eng = hazard_engine(2.0);
        let ev = detector_frames(&mut eng, 0, 10, |i| {
            let mut v = vec![sighting(3, 6.0, 0.0)];
            if i >= 4 {
                v.push(sighting(2, 0.0, 0.0));
            }
            v
        });
        let o = opened(&ev);
        assert_eq!(o.len(), 1, "{ev:#?}");
        assert_eq!(o[0].category, Category::Smoke);
        let up: Vec<&IncidentEvent> = ev
            .iter()
            .filter(|e| e.change == IncidentChange::Updated)
            .collect();
        assert_eq!(up.len(), 1, "{ev:#?}");
        assert_eq!(up[0].incident.category, Category::Fire);
        assert_eq!(up[0].incident.id, o[0].id);

        // The fire out of view (the drone turned) for less than the close
        // time, then seen again within its position error: the same
        // incident, no new one; unseen for longer, it closes.
        let mut eng = hazard_engine(2.0);
        let mut ev = detector_frames(&mut eng, 0, 5, |_| vec![sighting(2, 0.0, 0.0)]);
        ev.extend(detector_frames(&mut eng, 500, 10, |_| vec![]));
        ev.extend(detector_frames(&mut eng, 1500, 5, |_| {
            vec![sighting(2, 4.0, -3.0)]
        }));
        assert_eq!(opened(&ev).len(), 1, "{ev:#?}");
        ev.extend(detector_frames(&mut eng, 2000, 30, |_| vec![]));
        assert_eq!(
            ev.iter()
                .filter(|e| e.change == IncidentChange::Closed)
                .count(),
            1
        );
    }

    #[test]
    fn bad_rules_are_refused_with_their_name() {
        let mut cfg = gathering(1, 3.0, 1.0);
        assert!(EventEngine::new(cfg.clone(), manifest())
            .err()
            .unwrap()
            .to_string()
            .contains("crowd"));
        cfg.rules[0].rule = ZoneRule::Hazard {
            classes: vec!["lava".into()],
            k_of_m: (1, 2),
        };
        let e = EventEngine::new(cfg, manifest()).err().unwrap().to_string();
        assert!(e.contains("lava") && e.contains("crowd"), "{e}");
    }
}
