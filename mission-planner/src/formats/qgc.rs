//! QGroundControl `.plan` files (JSON): mission, geoFence, rallyPoints.
//!
//! Writing: one `.plan` per sortie. ArduPilot's home item (seq 0) becomes
//! `plannedHomePosition`; MAVLink `*_INT` frames are written as their
//! float twins (3 for relative altitude, 0 for global), as QGroundControl
//! does; fence vertex items become polygons, circle items circles, rally
//! items points (altitude above home, as QGroundControl keeps them; PX4's
//! rally items, AMSL in frame 0, are converted with the home altitude both
//! ways).
//! Only the current forms are written: a `.plan` wrapper and items with 7
//! `params`. Reading maps everything back, so a file written by tiancha
//! reads back to the identical [`MissionSet`]. Survey and corridor complex
//! items are expanded into the simple items QGroundControl stored with
//! them; their polygons are offered as areas.
//!
//! Reading also takes the older forms QGroundControl still loads:
//!
//! * Simple items (QGroundControl's `MissionItem::load` converts each to
//!   the current form, and so does [`read_plan`]):
//!   - current: `"params": [p1, …, p7]`, latitude, longitude and altitude
//!     in params 5–7;
//!   - QGroundControl's item V2: `"coordinate": [lat, lon, alt]` and
//!     `"params": [p1, p2, p3, p4]` (QGroundControl's own unit-test file
//!     `SectionTest.plan` is written so);
//!   - QGroundControl's item V1: `"param1"` … `"param4"` keys and
//!     `"coordinate"`, type `"missionItem"`.
//!
//!   `null` stands for NaN in every form, as in QGroundControl.
//! * Wrappers: the `.plan` document (`"fileType": "Plan"`, the mission
//!   under `"mission"`), and the legacy `.mission` document where the
//!   mission keys are at the top level (`"fileType": "Mission"`, or no
//!   `fileType` at all as QGroundControl 2.x/3.x wrote them):
//!   - version 2: `plannedHomePosition` is `[lat, lon, alt]`,
//!     `firmwareType` the autopilot;
//!   - version 1 (`"version": "1.0"`): `plannedHomePosition` is an item
//!     object whose `coordinate` is home, `MAV_AUTOPILOT` the autopilot.
//!     Its `complexItems` (surveys stored without their flight items)
//!     cannot be expanded and are refused with the path to them.
//!
//!   Error paths of a `.mission` document have no `mission.` prefix.
//! * A version 1 `geoFence` (`"polygon": [[lat, lon], …]`, a single
//!   inclusion polygon) is read as an inclusion fence; QGroundControl
//!   itself drops such fences, but dropping a fence someone drew is not
//!   safe for us. An empty one (as in `SectionTest.plan`) is nothing.
//!
//! Areas (`--area some.plan`) come, in order of preference, from the
//! survey / corridor polygons, else the inclusion fences, else — for a
//! plain waypoint mission such as `SectionTest.plan`, which has neither —
//! the convex hull of the mission's navigation waypoints: the `MAV_CMD`
//! NAV commands (16–95) with a valid global position other than (0, 0),
//! in a global frame, home excluded. The patrol then covers the ground
//! the mission flies over. A mission whose waypoints enclose no area
//! (fewer than three, all in a line, or spanning the antimeridian) gives
//! no area, and the planner says there is nothing to plan.

use serde_json::{json, Map, Value};
use tiancha_geometry::geodesy::{LatLon, LatLonAlt};
use tiancha_protocol::mission::{cmd, deg_to_e7, e7_to_deg, frame, MissionItem, MissionSet};

use crate::error::PlanError;
use crate::mission::home_item;
use crate::request::{Area, Autopilot, GeoPolygon, NoFlyZone, ZoneShape};

const FMT: &str = "QGroundControl plan";

/// QGroundControl's `firmwareType` values (MAV_AUTOPILOT).
const FW_ARDUPILOT: i64 = 3;
const FW_PX4: i64 = 12;

/// What a `.plan` holds.
#[derive(Debug, Clone, PartialEq)]
pub struct QgcPlan {
    pub autopilot: Autopilot,
    /// `plannedHomePosition` (altitude AMSL).
    pub home: Option<LatLonAlt>,
    /// Mission (ArduPilot: home at seq 0), fence and rally items.
    pub missions: MissionSet,
    /// Survey polygons; else the inclusion fences; else the convex hull
    /// of the mission's NAV waypoints (see the module doc).
    pub areas: Vec<Area>,
    /// Exclusion fences, as no-fly zones with no buffer.
    pub no_fly_zones: Vec<NoFlyZone>,
    pub rally_points: Vec<LatLon>,
    pub cruise_speed_mps: Option<f64>,
    pub hover_speed_mps: Option<f64>,
}

fn to_file_frame(f: u8) -> u8 {
    match f {
        frame::GLOBAL_RELATIVE_ALT_INT => frame::GLOBAL_RELATIVE_ALT,
        frame::GLOBAL_INT => frame::GLOBAL,
        11 => 10, // terrain
        other => other,
    }
}

fn from_file_frame(f: u8) -> u8 {
    match f {
        frame::GLOBAL_RELATIVE_ALT => frame::GLOBAL_RELATIVE_ALT_INT,
        frame::GLOBAL => frame::GLOBAL_INT,
        10 => 11,
        other => other,
    }
}

fn num(v: f32) -> Value {
    if v.is_finite() {
        json!(v as f64)
    } else {
        Value::Null
    }
}

fn item_json(it: &MissionItem, jump_id: usize) -> Value {
    json!({
        "autoContinue": it.autocontinue,
        "command": it.command,
        "doJumpId": jump_id,
        "frame": to_file_frame(it.frame),
        "params": [
            num(it.param1), num(it.param2), num(it.param3), num(it.param4),
            e7_to_deg(it.x), e7_to_deg(it.y), num(it.z)
        ],
        "type": "SimpleItem"
    })
}

/// Write one sortie as a `.plan` document. For ArduPilot, `set.mission[0]`
/// must be the home item; for PX4 give `home`.
pub fn write_plan(
    set: &MissionSet,
    autopilot: Autopilot,
    home: Option<LatLonAlt>,
    cruise_speed_mps: f64,
    hover_speed_mps: f64,
) -> String {
    let (home, items): (Option<LatLonAlt>, &[MissionItem]) = match autopilot {
        Autopilot::Ardupilot if !set.mission.is_empty() => {
            let h = set.mission[0];
            (
                Some(LatLonAlt::new(h.lat_deg(), h.lon_deg(), h.z as f64)),
                &set.mission[1..],
            )
        }
        _ => (home, &set.mission[..]),
    };
    let home = home.unwrap_or(LatLonAlt::new(0.0, 0.0, 0.0));
    let items: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, it)| item_json(it, i + 1))
        .collect();

    // Fence: group vertex items into polygons.
    let mut polygons = Vec::new();
    let mut circles = Vec::new();
    let mut i = 0;
    let f = &set.fence;
    while i < f.len() {
        let it = f[i];
        match it.command {
            cmd::NAV_FENCE_POLYGON_VERTEX_INCLUSION | cmd::NAV_FENCE_POLYGON_VERTEX_EXCLUSION => {
                let count = (it.param1.max(1.0) as usize).min(f.len() - i);
                let pts: Vec<Value> = f[i..i + count]
                    .iter()
                    .map(|v| json!([v.lat_deg(), v.lon_deg()]))
                    .collect();
                polygons.push(json!({
                    "inclusion": it.command == cmd::NAV_FENCE_POLYGON_VERTEX_INCLUSION,
                    "polygon": pts,
                    "version": 1
                }));
                i += count;
            }
            cmd::NAV_FENCE_CIRCLE_INCLUSION | cmd::NAV_FENCE_CIRCLE_EXCLUSION => {
                circles.push(json!({
                    "circle": { "center": [it.lat_deg(), it.lon_deg()], "radius": it.param1 as f64 },
                    "inclusion": it.command == cmd::NAV_FENCE_CIRCLE_INCLUSION,
                    "version": 1
                }));
                i += 1;
            }
            _ => i += 1,
        }
    }
    let rally: Vec<Value> = set
        .rally
        .iter()
        .map(|r| {
            // QGroundControl's rally altitudes are above home (it uploads
            // them as GLOBAL_RELATIVE_ALT); PX4's rally items are AMSL.
            let alt = if matches!(r.frame, frame::GLOBAL | frame::GLOBAL_INT) {
                r.z as f64 - home.alt_m
            } else {
                r.z as f64
            };
            json!([r.lat_deg(), r.lon_deg(), alt])
        })
        .collect();
    let doc = json!({
        "fileType": "Plan",
        "geoFence": { "circles": circles, "polygons": polygons, "version": 2 },
        "groundStation": "tiancha",
        "mission": {
            "cruiseSpeed": cruise_speed_mps,
            "firmwareType": match autopilot { Autopilot::Ardupilot => FW_ARDUPILOT, Autopilot::Px4 => FW_PX4 },
            "globalPlanAltitudeMode": 1,
            "hoverSpeed": hover_speed_mps,
            "items": items,
            "plannedHomePosition": [home.lat_deg, home.lon_deg, home.alt_m],
            "vehicleType": 2,
            "version": 2
        },
        "rallyPoints": { "points": rally, "version": 2 },
        "version": 1
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

fn err(path: impl Into<String>, reason: impl std::fmt::Display) -> PlanError {
    PlanError::format(FMT, path, reason)
}

fn obj<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, PlanError> {
    v.as_object().ok_or_else(|| err(path, "must be an object"))
}

fn arr<'a>(v: &'a Value, path: &str) -> Result<&'a Vec<Value>, PlanError> {
    v.as_array().ok_or_else(|| err(path, "must be an array"))
}

fn f64_or_nan(v: &Value, path: &str) -> Result<f64, PlanError> {
    match v {
        Value::Null => Ok(f64::NAN),
        Value::Number(n) => n.as_f64().ok_or_else(|| err(path, "is not a number")),
        _ => Err(err(path, "must be a number or null")),
    }
}

fn finite(v: &Value, path: &str) -> Result<f64, PlanError> {
    let x = v.as_f64().ok_or_else(|| err(path, "must be a number"))?;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(err(path, "must be finite"))
    }
}

fn latlon(v: &Value, path: &str) -> Result<LatLon, PlanError> {
    let a = arr(v, path)?;
    if a.len() < 2 {
        return Err(err(path, "a coordinate needs [lat, lon]"));
    }
    let q = LatLon::new(
        finite(&a[0], &format!("{path}[0]"))?,
        finite(&a[1], &format!("{path}[1]"))?,
    );
    if !q.is_valid() {
        return Err(err(
            path,
            format!(
                "({}, {}) is not a valid WGS84 position",
                q.lat_deg, q.lon_deg
            ),
        ));
    }
    Ok(q)
}

fn e7(x: f64, path: &str) -> Result<i32, PlanError> {
    if !x.is_finite() {
        return Ok(0);
    }
    if x.abs() > 214.0 {
        return Err(err(path, format!("{x} is out of range")));
    }
    Ok(deg_to_e7(x))
}

/// A number or `null` (NaN), for a param or coordinate value.
fn param(o: &Map<String, Value>, key: &str, path: &str) -> Result<f64, PlanError> {
    let path = format!("{path}.{key}");
    f64_or_nan(
        o.get(key).ok_or_else(|| {
            err(
                &path,
                "is missing (an item without \"params\" needs param1..param4 and coordinate)",
            )
        })?,
        &path,
    )
}

/// `"coordinate": [lat, lon, alt]` of the older item forms, as params 5–7.
fn coordinate(o: &Map<String, Value>, path: &str) -> Result<[f64; 3], PlanError> {
    let path = format!("{path}.coordinate");
    let c = arr(
        o.get("coordinate").ok_or_else(|| {
            err(
                &path,
                "is missing (an item with 4 params needs [lat, lon, alt])",
            )
        })?,
        &path,
    )?;
    if c.len() != 3 {
        return Err(err(
            &path,
            format!("must be [lat, lon, alt] (3 values), has {}", c.len()),
        ));
    }
    let mut q = [0f64; 3];
    for (k, v) in c.iter().enumerate() {
        q[k] = f64_or_nan(v, &format!("{path}[{k}]"))?;
    }
    Ok(q)
}

/// One simple item, in any of the three forms (see the module doc).
fn simple_item(v: &Value, path: &str) -> Result<MissionItem, PlanError> {
    let o = obj(v, path)?;
    let command = o
        .get("command")
        .and_then(Value::as_u64)
        .filter(|c| *c <= u16::MAX as u64)
        .ok_or_else(|| err(format!("{path}.command"), "must be a MAV_CMD number"))?
        as u16;
    let fr = o
        .get("frame")
        .and_then(Value::as_u64)
        .filter(|c| *c <= u8::MAX as u64)
        .ok_or_else(|| err(format!("{path}.frame"), "must be a MAV_FRAME number"))?
        as u8;
    let autocontinue = o
        .get("autoContinue")
        .and_then(Value::as_bool)
        .ok_or_else(|| err(format!("{path}.autoContinue"), "must be true or false"))?;
    let mut p = [0f64; 7];
    match o.get("params") {
        Some(params) => {
            let ppath = format!("{path}.params");
            let params = arr(params, &ppath)?;
            // QGroundControl's V2 item: 4 params and a coordinate.
            let want = if o.contains_key("coordinate") { 4 } else { 7 };
            if params.len() != want {
                return Err(err(
                    &ppath,
                    if want == 4 {
                        format!(
                            "must hold 4 values when the item has a \"coordinate\", has {}",
                            params.len()
                        )
                    } else {
                        format!("must hold 7 values, has {}", params.len())
                    },
                ));
            }
            for (k, v) in params.iter().enumerate() {
                p[k] = f64_or_nan(v, &format!("{ppath}[{k}]"))?;
            }
            if want == 4 {
                let c = coordinate(o, path)?;
                p[4..].copy_from_slice(&c);
            }
        }
        None if ["param1", "param2", "param3", "param4", "coordinate"]
            .iter()
            .any(|k| o.contains_key(*k)) =>
        {
            // QGroundControl's V1 item: param1..param4 keys and a coordinate.
            for (k, key) in ["param1", "param2", "param3", "param4"].iter().enumerate() {
                p[k] = param(o, key, path)?;
            }
            let c = coordinate(o, path)?;
            p[4..].copy_from_slice(&c);
        }
        None => return Err(err(format!("{path}.params"), "is missing")),
    }
    let (lat_path, lon_path) = if o.contains_key("params") && !o.contains_key("coordinate") {
        (format!("{path}.params[4]"), format!("{path}.params[5]"))
    } else {
        (
            format!("{path}.coordinate[0]"),
            format!("{path}.coordinate[1]"),
        )
    };
    Ok(MissionItem {
        frame: from_file_frame(fr),
        command,
        autocontinue,
        param1: p[0] as f32,
        param2: p[1] as f32,
        param3: p[2] as f32,
        param4: p[3] as f32,
        x: e7(p[4], &lat_path)?,
        y: e7(p[5], &lon_path)?,
        z: p[6] as f32,
    })
}

fn polygon_of(v: &Value, path: &str) -> Result<Vec<LatLon>, PlanError> {
    let a = arr(v, path)?;
    if a.len() > super::MAX_POINTS {
        return Err(err(path, "too many points"));
    }
    a.iter()
        .enumerate()
        .map(|(i, q)| latlon(q, &format!("{path}[{i}]")))
        .collect()
}

/// `plannedHomePosition`: `[lat, lon, alt]`, or (version 1 `.mission`)
/// an item object whose `coordinate` is home.
fn home_of(v: Option<&Value>, path: &str) -> Result<Option<LatLonAlt>, PlanError> {
    let (a, path) = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => (a, path.to_string()),
        Some(Value::Object(o)) => {
            let cpath = format!("{path}.coordinate");
            match o.get("coordinate") {
                Some(Value::Array(a)) => (a, cpath),
                _ => return Err(err(cpath, "must be [lat, lon, alt]")),
            }
        }
        Some(_) => return Err(err(path, "must be [lat, lon, alt]")),
    };
    if a.len() < 2 {
        return Err(err(path, "must be [lat, lon, alt]"));
    }
    let q = latlon(&Value::Array(a[..2].to_vec()), &path)?;
    let alt = a.get(2).and_then(Value::as_f64).unwrap_or(0.0);
    Ok(Some(LatLonAlt::new(q.lat_deg, q.lon_deg, alt)))
}

/// The version of a legacy `.mission` document: 1 (`"1.0"` or 1) or 2.
fn mission_file_version(top: &Map<String, Value>) -> Result<u8, PlanError> {
    match top.get("version") {
        Some(Value::String(s)) if s == "1.0" => Ok(1),
        Some(v) if v.as_u64() == Some(1) => Ok(1),
        Some(v) if v.as_u64() == Some(2) => Ok(2),
        // No version: tell the two apart by the home's form.
        None if matches!(top.get("plannedHomePosition"), Some(Value::Object(_))) => Ok(1),
        None => Ok(2),
        Some(v) => Err(err(
            "version",
            format!("a .mission file must be version 1 (\"1.0\") or 2, got {v}"),
        )),
    }
}

/// The NAV waypoints' convex hull, for a plan with no survey polygon and
/// no inclusion fence (see the module doc).
fn waypoint_hull(items: &[MissionItem]) -> Option<GeoPolygon> {
    use geo::{ConvexHull, MultiPoint, Point};
    let global = [
        frame::GLOBAL_INT,
        frame::GLOBAL_RELATIVE_ALT_INT,
        11, // terrain, int
    ];
    let pts: Vec<Point<f64>> = items
        .iter()
        .filter(|it| (16..=95).contains(&it.command) && global.contains(&it.frame))
        .filter(|it| it.x != 0 || it.y != 0)
        .map(|it| LatLon::new(it.lat_deg(), it.lon_deg()))
        .filter(LatLon::is_valid)
        .map(|q| Point::new(q.lon_deg, q.lat_deg))
        .collect();
    if pts.len() < 3 {
        return None;
    }
    let (lo, hi) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.x()), hi.max(p.x()))
        });
    if hi - lo > 180.0 {
        return None;
    }
    let hull = MultiPoint::from(pts).convex_hull();
    let mut ring: Vec<LatLon> = hull
        .exterior()
        .coords()
        .map(|c| LatLon::new(c.y, c.x))
        .collect();
    ring.dedup();
    if ring.len() > 1 && ring.first() == ring.last() {
        ring.pop();
    }
    if ring.len() < 3 {
        return None;
    }
    // Twice the area (shoelace), in square degrees, about the first
    // vertex so that large coordinates do not cancel.
    let o = ring[0];
    let area2: f64 = (1..ring.len() - 1)
        .map(|i| {
            let (a, b) = (ring[i], ring[i + 1]);
            (a.lon_deg - o.lon_deg) * (b.lat_deg - o.lat_deg)
                - (b.lon_deg - o.lon_deg) * (a.lat_deg - o.lat_deg)
        })
        .sum();
    if area2.abs() < 1e-12 {
        return None;
    }
    Some(GeoPolygon {
        exterior: ring,
        holes: vec![],
    })
}

/// Read a `.plan` document, or a legacy `.mission` document (see the
/// module doc for the forms taken).
pub fn read_plan(text: &str) -> Result<QgcPlan, PlanError> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| err("(document)", format!("not JSON: {e}")))?;
    let top = obj(&doc, "(document)")?;
    // The mission object and the prefix of its error paths.
    let (mission, pre) = match top.get("fileType") {
        Some(Value::String(ft)) if ft == "Plan" => (
            obj(
                top.get("mission")
                    .ok_or_else(|| err("mission", "is missing"))?,
                "mission",
            )?,
            "mission.",
        ),
        Some(Value::String(ft)) if ft == "Mission" => {
            mission_file_version(top)?;
            (top, "")
        }
        None if top.contains_key("items") => {
            mission_file_version(top)?;
            (top, "")
        }
        None => return Err(err("fileType", "is missing (not a QGroundControl plan)")),
        Some(ft) => {
            return Err(err(
                "fileType",
                format!("must be \"Plan\" (or \"Mission\" for a .mission file), got {ft}"),
            ))
        }
    };
    let autopilot = match mission
        .get("firmwareType")
        .or_else(|| mission.get("MAV_AUTOPILOT"))
        .and_then(Value::as_i64)
    {
        Some(FW_ARDUPILOT) => Autopilot::Ardupilot,
        _ => Autopilot::Px4,
    };
    let home = home_of(
        mission.get("plannedHomePosition"),
        &format!("{pre}plannedHomePosition"),
    )?;
    if let Some(c) = mission.get("complexItems") {
        let cpath = format!("{pre}complexItems");
        if !arr(c, &cpath)?.is_empty() {
            return Err(err(
                format!("{cpath}[0]"),
                "a version 1 .mission survey has no stored Items; open and save it with QGroundControl 4 or later",
            ));
        }
    }
    let mut items = Vec::new();
    if autopilot == Autopilot::Ardupilot {
        let h = home.unwrap_or(LatLonAlt::new(0.0, 0.0, 0.0));
        items.push(home_item(h.horizontal(), h.alt_m));
    }
    let first_read = items.len();
    let mut areas = Vec::new();
    let list = arr(
        mission
            .get("items")
            .ok_or_else(|| err(format!("{pre}items"), "is missing"))?,
        &format!("{pre}items"),
    )?;
    if list.len() > 65_535 {
        return Err(err(format!("{pre}items"), "more than 65535 items"));
    }
    for (i, v) in list.iter().enumerate() {
        let path = format!("{pre}items[{i}]");
        let o = obj(v, &path)?;
        match o.get("type").and_then(Value::as_str) {
            // "missionItem": QGroundControl's V1 item type.
            Some("SimpleItem" | "missionItem") => items.push(simple_item(v, &path)?),
            Some("ComplexItem") => {
                let kind = o
                    .get("complexItemType")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if let Some(poly) = o.get("polygon") {
                    let ring = polygon_of(poly, &format!("{path}.polygon"))?;
                    if ring.len() >= 3 {
                        areas.push(Area {
                            name: format!("{kind} {i}"),
                            polygon: GeoPolygon {
                                exterior: ring,
                                holes: vec![],
                            },
                        });
                    }
                }
                let inner = o
                    .get("TransectStyleComplexItem")
                    .and_then(|t| t.get("Items"))
                    .or_else(|| o.get("Items"));
                match inner {
                    Some(Value::Array(sub)) => {
                        if items.len() + sub.len() > 65_535 {
                            return Err(err(&path, "more than 65535 items"));
                        }
                        for (k, s) in sub.iter().enumerate() {
                            items.push(simple_item(s, &format!("{path}.Items[{k}]"))?);
                        }
                    }
                    _ => {
                        return Err(err(
                            &path,
                            format!("complex item '{kind}' has no stored Items; save it with QGroundControl 4 or later"),
                        ))
                    }
                }
            }
            other => {
                return Err(err(
                    format!("{path}.type"),
                    format!("must be \"SimpleItem\" or \"ComplexItem\", got {other:?}"),
                ))
            }
        }
    }

    // Geofence.
    let mut fence = Vec::new();
    let mut no_fly_zones = Vec::new();
    let mut inclusions = Vec::new();
    if let Some(gf) = top.get("geoFence") {
        let gf = obj(gf, "geoFence")?;
        // (inclusion, ring): version 2 "polygons", version 1 "polygon".
        let mut rings = Vec::new();
        if let Some(polys) = gf.get("polygons") {
            for (i, pv) in arr(polys, "geoFence.polygons")?.iter().enumerate() {
                let path = format!("geoFence.polygons[{i}]");
                let po = obj(pv, &path)?;
                let inclusion = po.get("inclusion").and_then(Value::as_bool).unwrap_or(true);
                let path = format!("{path}.polygon");
                let ring = polygon_of(
                    po.get("polygon").ok_or_else(|| err(&path, "is missing"))?,
                    &path,
                )?;
                if ring.len() < 3 {
                    return Err(err(path, "needs at least 3 points"));
                }
                rings.push((inclusion, ring));
            }
        }
        if let Some(pv) = gf.get("polygon") {
            let ring = polygon_of(pv, "geoFence.polygon")?;
            match ring.len() {
                0 => {}
                1 | 2 => return Err(err("geoFence.polygon", "needs at least 3 points")),
                _ => rings.push((true, ring)),
            }
        }
        for (i, (inclusion, ring)) in rings.into_iter().enumerate() {
            let c = if inclusion {
                cmd::NAV_FENCE_POLYGON_VERTEX_INCLUSION
            } else {
                cmd::NAV_FENCE_POLYGON_VERTEX_EXCLUSION
            };
            for q in &ring {
                let mut it = MissionItem::nav(c, q.lat_deg, q.lon_deg, 0.0);
                it.frame = frame::GLOBAL_INT;
                it.param1 = ring.len() as f32;
                fence.push(it);
            }
            let gp = GeoPolygon {
                exterior: ring,
                holes: vec![],
            };
            if inclusion {
                inclusions.push(gp);
            } else {
                no_fly_zones.push(NoFlyZone {
                    name: format!("exclusion polygon {i}"),
                    shape: ZoneShape::Polygon { polygon: gp },
                    buffer_m: 0.0,
                });
            }
        }
        if let Some(circles) = gf.get("circles") {
            for (i, cv) in arr(circles, "geoFence.circles")?.iter().enumerate() {
                let path = format!("geoFence.circles[{i}]");
                let co = obj(cv, &path)?;
                let inclusion = co
                    .get("inclusion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let circle = obj(
                    co.get("circle")
                        .ok_or_else(|| err(format!("{path}.circle"), "is missing"))?,
                    &path,
                )?;
                let center = latlon(
                    circle
                        .get("center")
                        .ok_or_else(|| err(format!("{path}.circle.center"), "is missing"))?,
                    &format!("{path}.circle.center"),
                )?;
                let radius = finite(
                    circle
                        .get("radius")
                        .ok_or_else(|| err(format!("{path}.circle.radius"), "is missing"))?,
                    &format!("{path}.circle.radius"),
                )?;
                if radius <= 0.0 {
                    return Err(err(format!("{path}.circle.radius"), "must be positive"));
                }
                let c = if inclusion {
                    cmd::NAV_FENCE_CIRCLE_INCLUSION
                } else {
                    cmd::NAV_FENCE_CIRCLE_EXCLUSION
                };
                let mut it = MissionItem::nav(c, center.lat_deg, center.lon_deg, 0.0);
                it.frame = frame::GLOBAL_INT;
                it.param1 = radius as f32;
                fence.push(it);
                if !inclusion {
                    no_fly_zones.push(NoFlyZone {
                        name: format!("exclusion circle {i}"),
                        shape: ZoneShape::Circle {
                            center,
                            radius_m: radius,
                        },
                        buffer_m: 0.0,
                    });
                }
            }
        }
    }
    if areas.is_empty() {
        areas = inclusions
            .into_iter()
            .enumerate()
            .map(|(i, polygon)| Area {
                name: format!("inclusion fence {i}"),
                polygon,
            })
            .collect();
    }
    if areas.is_empty() {
        areas.extend(waypoint_hull(&items[first_read..]).map(|polygon| Area {
            name: "mission waypoints (convex hull)".into(),
            polygon,
        }));
    }
    let mut rally = Vec::new();
    let mut rally_points = Vec::new();
    if let Some(rp) = top.get("rallyPoints") {
        let rp = obj(rp, "rallyPoints")?;
        if let Some(pts) = rp.get("points") {
            for (i, v) in arr(pts, "rallyPoints.points")?.iter().enumerate() {
                let path = format!("rallyPoints.points[{i}]");
                let q = latlon(v, &path)?;
                let alt = v.get(2).and_then(Value::as_f64).unwrap_or(0.0);
                rally.push(match (autopilot, home) {
                    // PX4 takes rally points only AMSL (frame 0), as
                    // `mission::rally_items` makes them.
                    (Autopilot::Px4, Some(h)) => {
                        let mut it = MissionItem::nav(
                            cmd::NAV_RALLY_POINT,
                            q.lat_deg,
                            q.lon_deg,
                            (alt + h.alt_m) as f32,
                        );
                        it.frame = frame::GLOBAL;
                        it
                    }
                    _ => MissionItem::nav(cmd::NAV_RALLY_POINT, q.lat_deg, q.lon_deg, alt as f32),
                });
                rally_points.push(q);
            }
        }
    }
    Ok(QgcPlan {
        autopilot,
        home,
        missions: MissionSet {
            mission: items,
            fence,
            rally,
        },
        areas,
        no_fly_zones,
        rally_points,
        cruise_speed_mps: mission.get("cruiseSpeed").and_then(Value::as_f64),
        hover_speed_mps: mission.get("hoverSpeed").and_then(Value::as_f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QGroundControl's own unit-test files (see tests/data/qgc/SOURCE.md).
    const SECTION_TEST: &str = include_str!("../../tests/data/qgc/SectionTest.plan");
    const OLD_FILE_FORMAT: &str = include_str!("../../tests/data/qgc/OldFileFormat.mission");

    fn plan_with(item: &str) -> String {
        format!(r#"{{"fileType":"Plan","mission":{{"firmwareType":12,"items":[{item}]}}}}"#)
    }

    fn one_item(item: &str) -> MissionItem {
        let p = read_plan(&plan_with(item)).unwrap();
        assert_eq!(p.missions.mission.len(), 1);
        p.missions.mission[0]
    }

    fn error(item: &str) -> String {
        read_plan(&plan_with(item)).unwrap_err().to_string()
    }

    #[test]
    fn the_three_item_forms_read_into_the_same_item() {
        let current = one_item(
            r#"{"type":"SimpleItem","autoContinue":true,"command":16,"frame":3,
                "params":[1,2,3,4,47.63369112,-122.08925023,20]}"#,
        );
        let v2 = one_item(
            r#"{"type":"SimpleItem","autoContinue":true,"command":16,"frame":3,
                "coordinate":[47.63369112,-122.08925023,20],"params":[1,2,3,4]}"#,
        );
        let v1 = one_item(
            r#"{"type":"missionItem","autoContinue":true,"command":16,"frame":3,"id":1,
                "coordinate":[47.63369112,-122.08925023,20],
                "param1":1,"param2":2,"param3":3,"param4":4}"#,
        );
        assert_eq!(v2, current);
        assert_eq!(v1, current);
        assert_eq!(current.x, deg_to_e7(47.63369112));
        assert_eq!(current.y, deg_to_e7(-122.08925023));
        assert_eq!(current.z, 20.0);
        assert_eq!(current.frame, frame::GLOBAL_RELATIVE_ALT_INT);
        assert_eq!(
            (
                current.param1,
                current.param2,
                current.param3,
                current.param4
            ),
            (1.0, 2.0, 3.0, 4.0)
        );
        // null is NaN in the older forms too.
        let v2 = one_item(
            r#"{"type":"SimpleItem","autoContinue":true,"command":16,"frame":3,
                "coordinate":[47.6,-122.0,null],"params":[0,0,0,null]}"#,
        );
        assert!(v2.param4.is_nan() && v2.z.is_nan());
        let v1 = one_item(
            r#"{"type":"missionItem","autoContinue":true,"command":16,"frame":3,
                "coordinate":[47.6,-122.0,5],"param1":0,"param2":0,"param3":0,"param4":null}"#,
        );
        assert!(v1.param4.is_nan());
    }

    #[test]
    fn bad_older_items_name_the_field() {
        let head = r#""type":"SimpleItem","autoContinue":true,"command":16,"frame":3"#;
        let cases = [
            (
                format!(r#"{{{head},"coordinate":[1,2,3],"params":[0,0,0,0,1,2,3]}}"#),
                "mission.items[0].params: must hold 4 values when the item has a \"coordinate\", has 7",
            ),
            (
                format!(r#"{{{head},"coordinate":[1,2],"params":[0,0,0,0]}}"#),
                "mission.items[0].coordinate: must be [lat, lon, alt] (3 values), has 2",
            ),
            (
                format!(r#"{{{head},"coordinate":{{"lat":1}},"params":[0,0,0,0]}}"#),
                "mission.items[0].coordinate: must be an array",
            ),
            (
                format!(r#"{{{head},"coordinate":[1,"x",3],"params":[0,0,0,0]}}"#),
                "mission.items[0].coordinate[1]: must be a number or null",
            ),
            (
                format!(r#"{{{head},"coordinate":[300,2,3],"params":[0,0,0,0]}}"#),
                "mission.items[0].coordinate[0]: 300 is out of range",
            ),
            (
                format!(r#"{{{head},"coordinate":[1,2,3],"params":[0,0,"0",0]}}"#),
                "mission.items[0].params[2]: must be a number or null",
            ),
            (
                format!(r#"{{{head},"coordinate":[1,2,3],"param1":0,"param2":0,"param4":0}}"#),
                "mission.items[0].param3: is missing (an item without \"params\" needs param1..param4 and coordinate)",
            ),
            (
                format!(r#"{{{head},"param1":0,"param2":0,"param3":0,"param4":0}}"#),
                "mission.items[0].coordinate: is missing (an item with 4 params needs [lat, lon, alt])",
            ),
            (
                format!(r#"{{{head},"coordinate":[1,2,3],"param1":0,"param2":true,"param3":0,"param4":0}}"#),
                "mission.items[0].param2: must be a number or null",
            ),
            (
                format!(r#"{{{head}}}"#),
                "mission.items[0].params: is missing",
            ),
            (
                format!(r#"{{{head},"params":[0,0,0,0]}}"#),
                "mission.items[0].params: must hold 7 values, has 4",
            ),
        ];
        for (item, want) in cases {
            assert_eq!(error(&item), format!("{FMT} {want}"), "{item}");
        }
    }

    #[test]
    fn qgroundcontrols_section_test_plan_reads() {
        let p = read_plan(SECTION_TEST).unwrap();
        let file: Value = serde_json::from_str(SECTION_TEST).unwrap();
        let want = file["mission"]["items"].as_array().unwrap();
        assert_eq!(p.autopilot, Autopilot::Px4, "firmwareType 12");
        let home = p.home.unwrap();
        assert_eq!(
            (home.lat_deg, home.lon_deg, home.alt_m),
            (47.633389756176875, -122.09076300000001, 20.0)
        );
        let m = &p.missions.mission;
        assert_eq!(m.len(), 5, "PX4: no home item, the file's 5 items");
        assert_eq!(m.len(), want.len());
        let commands: Vec<u16> = m.iter().map(|it| it.command).collect();
        assert_eq!(commands, [22, 16, 16, 205, 16]);
        for (it, w) in m.iter().zip(want) {
            assert_eq!(it.command as u64, w["command"].as_u64().unwrap());
            let c = w["coordinate"].as_array().unwrap();
            assert_eq!(it.x, deg_to_e7(c[0].as_f64().unwrap()));
            assert_eq!(it.y, deg_to_e7(c[1].as_f64().unwrap()));
            assert_eq!(it.z as f64, c[2].as_f64().unwrap());
            let p4 = &w["params"][3];
            assert_eq!(it.param4.is_nan(), p4.is_null());
            assert!(it.autocontinue);
        }
        assert_eq!(m[0].command, cmd::NAV_TAKEOFF);
        assert_eq!(m[0].frame, frame::GLOBAL_RELATIVE_ALT_INT);
        assert_eq!(
            (m[0].x, m[0].y),
            (deg_to_e7(47.63311996), deg_to_e7(-122.090763))
        );
        assert_eq!(m[3].command, cmd::DO_MOUNT_CONTROL);
        assert_eq!(m[3].frame, frame::MISSION);
        assert_eq!((m[3].x, m[3].y, m[3].z), (0, 0, 2.0));
        assert_eq!(
            (m[4].x, m[4].y),
            (deg_to_e7(47.63261386), deg_to_e7(-122.08661094))
        );
        // Empty version 1 fence and rally points: nothing.
        assert!(p.missions.fence.is_empty() && p.missions.rally.is_empty());
        assert!(p.no_fly_zones.is_empty() && p.rally_points.is_empty());
        assert_eq!(
            (p.cruise_speed_mps, p.hover_speed_mps),
            (Some(15.0), Some(5.0))
        );

        // No survey polygon, no fence: the area is the hull of the four
        // positioned NAV items (takeoff and 3 waypoints), not the
        // DO_MOUNT_CONTROL at (0, 0).
        assert_eq!(p.areas.len(), 1);
        let ring = &p.areas[0].polygon.exterior;
        assert_eq!(ring.len(), 4, "{ring:?}");
        for it in [m[0], m[1], m[2], m[4]] {
            let q = LatLon::new(it.lat_deg(), it.lon_deg());
            assert!(ring.contains(&q), "{q:?} not in {ring:?}");
        }

        // And it plans, as `tiancha plan --area SectionTest.plan` does.
        let mut req = crate::PlanRequest {
            areas: p.areas.clone(),
            no_fly_zones: p.no_fly_zones.clone(),
            rally_points: p.rally_points.clone(),
            ..Default::default()
        };
        req.vehicle.home = p.home.map(|h| h.horizontal());
        let plan = crate::plan_patrol(&req).unwrap();
        assert!(!plan.sorties.is_empty());
        assert!(plan.summary.coverage_percent >= 99.0, "{}", plan.summary);

        // Written back in the current form only, and read back the same.
        let text = write_plan(&p.missions, p.autopilot, p.home, 15.0, 5.0);
        let v: Value = serde_json::from_str(&text).unwrap();
        for it in v["mission"]["items"].as_array().unwrap() {
            assert_eq!(it["params"].as_array().unwrap().len(), 7);
            assert!(it.get("coordinate").is_none());
        }
        let back = read_plan(&text).unwrap();
        assert_eq!(
            write_plan(&back.missions, back.autopilot, back.home, 15.0, 5.0),
            text
        );
        assert_eq!(back.areas, p.areas);
    }

    #[test]
    fn qgroundcontrols_old_mission_file_reads() {
        let p = read_plan(OLD_FILE_FORMAT).unwrap();
        let file: Value = serde_json::from_str(OLD_FILE_FORMAT).unwrap();
        let coord = |i: usize, k: usize| file["items"][i]["coordinate"][k].as_f64().unwrap();
        assert_eq!(p.autopilot, Autopilot::Ardupilot, "firmwareType 3");
        let home = p.home.unwrap();
        let want_home = &file["plannedHomePosition"];
        assert_eq!(
            (home.lat_deg, home.lon_deg, home.alt_m),
            (
                want_home[0].as_f64().unwrap(),
                want_home[1].as_f64().unwrap(),
                0.0
            )
        );
        let m = &p.missions.mission;
        let commands: Vec<u16> = m.iter().map(|it| it.command).collect();
        assert_eq!(
            commands,
            [16, 22, 18, 18, 16, 16, 21],
            "home + the file's 6"
        );
        assert_eq!(m[0].x, deg_to_e7(home.lat_deg), "home item");
        assert_eq!((m[1].frame, m[1].z), (frame::MISSION, 50.0));
        assert_eq!((m[3].param1, m[3].x), (3.0, deg_to_e7(coord(2, 0))));
        assert_eq!((m[6].y, m[6].z), (deg_to_e7(coord(5, 1)), 3.0));
        assert_eq!(
            p.areas.len(),
            1,
            "the hull of the loiters, waypoints and land"
        );
        // Errors in a .mission name the top-level keys.
        let bad =
            OLD_FILE_FORMAT.replacen("\"params\": [\r\n                0,", "\"params\": [", 1);
        assert_eq!(
            read_plan(&bad).unwrap_err().to_string(),
            format!("{FMT} items[0].params: must hold 4 values when the item has a \"coordinate\", has 3")
        );
    }

    /// Shaped like QGroundControl's test/100Waypoints.mission (version
    /// "1.0", V1 items, home as an item object), cut to three items.
    const V1_MISSION: &str = r#"{
        "MAV_AUTOPILOT": 3, "groundStation": "QGroundControl", "version": "1.0",
        "items": [
            {"autoContinue": true, "command": 22, "coordinate": [0, 0, 30], "frame": 2, "id": 1,
             "param1": 20, "param2": 0, "param3": 0, "param4": 0, "type": "missionItem"},
            {"autoContinue": true, "command": 16, "coordinate": [34.469587, -112.534801, 90], "frame": 3, "id": 2,
             "param1": 0, "param2": 0, "param3": 0, "param4": 0, "type": "missionItem"},
            {"autoContinue": true, "command": 206, "coordinate": [0, 0, 0], "frame": 2, "id": 3,
             "param1": 21.06, "param2": 0, "param3": 0, "param4": 0, "type": "missionItem"}
        ],
        "plannedHomePosition": {"autoContinue": true, "command": 16, "coordinate": [34.577822, -112.469101, 584.38],
            "frame": 0, "id": 0, "param1": 0, "param2": 0, "param3": 0, "param4": 0, "type": "missionItem"}
    }"#;

    #[test]
    fn a_version_1_mission_file_reads() {
        let p = read_plan(V1_MISSION).unwrap();
        assert_eq!(p.autopilot, Autopilot::Ardupilot, "MAV_AUTOPILOT 3");
        let home = p.home.unwrap();
        assert_eq!(
            (home.lat_deg, home.lon_deg, home.alt_m),
            (34.577822, -112.469101, 584.38)
        );
        let m = &p.missions.mission;
        let commands: Vec<u16> = m.iter().map(|it| it.command).collect();
        assert_eq!(commands, [16, 22, 16, 206]);
        assert_eq!(m[1].param1, 20.0);
        assert_eq!(
            (m[2].x, m[2].y, m[2].z),
            (deg_to_e7(34.469587), deg_to_e7(-112.534801), 90.0)
        );
        assert_eq!(m[3].param1, 21.06);
        assert!(
            p.areas.is_empty(),
            "one positioned waypoint encloses no area"
        );
        // Surveys of version 1 files carry no flight items.
        let with_survey = V1_MISSION.replace(
            r#""version": "1.0","#,
            r#""version": "1.0", "complexItems": [{"id": 4, "type": "survey"}],"#,
        );
        assert_eq!(
            read_plan(&with_survey).unwrap_err().to_string(),
            format!("{FMT} complexItems[0]: a version 1 .mission survey has no stored Items; open and save it with QGroundControl 4 or later")
        );
        let v3 = V1_MISSION.replace(r#""version": "1.0""#, r#""version": 3"#);
        assert_eq!(
            read_plan(&v3).unwrap_err().to_string(),
            format!("{FMT} version: a .mission file must be version 1 (\"1.0\") or 2, got 3")
        );
        let other = r#"{"fileType": "GeoFence", "version": 1}"#;
        assert_eq!(
            read_plan(other).unwrap_err().to_string(),
            format!("{FMT} fileType: must be \"Plan\" (or \"Mission\" for a .mission file), got \"GeoFence\"")
        );
    }

    #[test]
    fn px4_rally_points_are_amsl_in_the_set_and_above_home_in_the_file() {
        let home = LatLonAlt::new(28.45, 117.94, 71.3);
        let mut amsl = MissionItem::nav(cmd::NAV_RALLY_POINT, 28.4496, 117.9396, 131.3);
        amsl.frame = frame::GLOBAL;
        let set = MissionSet {
            mission: vec![],
            fence: vec![],
            rally: vec![amsl],
        };
        let text = write_plan(&set, Autopilot::Px4, Some(home), 8.0, 5.0);
        let v: Value = serde_json::from_str(&text).unwrap();
        let alt = v["rallyPoints"]["points"][0][2].as_f64().unwrap();
        assert!((alt - 60.0).abs() < 1e-4, "{alt}");
        let back = read_plan(&text).unwrap();
        assert_eq!(back.missions.rally, [amsl]);
        // ArduPilot keeps them above home, unchanged.
        let rel = MissionItem::nav(cmd::NAV_RALLY_POINT, 28.4496, 117.9396, 60.0);
        let set = MissionSet {
            rally: vec![rel],
            ..set
        };
        let mut with_home = set.clone();
        with_home.mission = vec![home_item(home.horizontal(), home.alt_m)];
        let text = write_plan(&with_home, Autopilot::Ardupilot, None, 8.0, 5.0);
        assert_eq!(read_plan(&text).unwrap().missions.rally, [rel]);
    }

    #[test]
    fn a_version_1_fence_is_an_inclusion_fence() {
        let doc = |poly: &str| {
            format!(
                r#"{{"fileType":"Plan","mission":{{"firmwareType":12,"items":[]}},
                    "geoFence":{{"version":1,"polygon":{poly}}}}}"#
            )
        };
        let p = read_plan(&doc("[[47.0,8.0],[47.0,8.01],[47.01,8.01]]")).unwrap();
        assert_eq!(p.missions.fence.len(), 3);
        assert!(p
            .missions
            .fence
            .iter()
            .all(|f| f.command == cmd::NAV_FENCE_POLYGON_VERTEX_INCLUSION && f.param1 == 3.0));
        assert_eq!(p.areas.len(), 1);
        assert_eq!(p.areas[0].name, "inclusion fence 0");
        let e = read_plan(&doc("[[47.0,8.0],[47.0,8.01]]"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("{FMT} geoFence.polygon: needs at least 3 points")
        );
        assert!(read_plan(&doc("[]")).unwrap().missions.fence.is_empty());
    }

    #[test]
    fn waypoints_in_a_line_give_no_area() {
        let wp = |lat: f64, lon: f64| {
            format!(
                r#"{{"type":"SimpleItem","autoContinue":true,"command":16,"frame":3,"params":[0,0,0,0,{lat},{lon},30]}}"#
            )
        };
        let doc = |items: &[String]| {
            format!(
                r#"{{"fileType":"Plan","mission":{{"firmwareType":12,"items":[{}]}}}}"#,
                items.join(",")
            )
        };
        let two = [wp(47.0, 8.0), wp(47.01, 8.0)];
        assert!(read_plan(&doc(&two)).unwrap().areas.is_empty());
        let line = [wp(47.0, 8.0), wp(47.01, 8.01), wp(47.02, 8.02)];
        assert!(read_plan(&doc(&line)).unwrap().areas.is_empty());
        let triangle = [wp(47.0, 8.0), wp(47.01, 8.0), wp(47.0, 8.01)];
        let p = read_plan(&doc(&triangle)).unwrap();
        assert_eq!(p.areas.len(), 1);
        assert_eq!(p.areas[0].name, "mission waypoints (convex hull)");
        assert_eq!(p.areas[0].polygon.exterior.len(), 3);
    }
}
