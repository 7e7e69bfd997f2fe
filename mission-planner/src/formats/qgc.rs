//! QGroundControl `.plan` files (JSON): mission, geoFence, rallyPoints.
//!
//! Writing: one `.plan` per sortie. ArduPilot's home item (seq 0) becomes
//! `plannedHomePosition`; MAVLink `*_INT` frames are written as their
//! float twins (3 for relative altitude, 0 for global), as QGroundControl
//! does; fence vertex items become polygons, circle items circles, rally
//! items points. Reading maps everything back, so a file written by
//! tiancha reads back to the identical [`MissionSet`]. Survey and corridor
//! complex items are expanded into the simple items QGroundControl stored
//! with them; their polygons are offered as areas.

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
    /// Survey polygons, or the inclusion fences when there is no survey.
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
        .map(|r| json!([r.lat_deg(), r.lon_deg(), r.z as f64]))
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
    let params = arr(
        o.get("params")
            .ok_or_else(|| err(format!("{path}.params"), "is missing"))?,
        &format!("{path}.params"),
    )?;
    if params.len() != 7 {
        return Err(err(
            format!("{path}.params"),
            format!("must hold 7 values, has {}", params.len()),
        ));
    }
    let mut p = [0f64; 7];
    for (k, v) in params.iter().enumerate() {
        p[k] = f64_or_nan(v, &format!("{path}.params[{k}]"))?;
    }
    Ok(MissionItem {
        frame: from_file_frame(fr),
        command,
        autocontinue,
        param1: p[0] as f32,
        param2: p[1] as f32,
        param3: p[2] as f32,
        param4: p[3] as f32,
        x: e7(p[4], &format!("{path}.params[4]"))?,
        y: e7(p[5], &format!("{path}.params[5]"))?,
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

/// Read a `.plan` document.
pub fn read_plan(text: &str) -> Result<QgcPlan, PlanError> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| err("(document)", format!("not JSON: {e}")))?;
    let top = obj(&doc, "(document)")?;
    if let Some(ft) = top.get("fileType") {
        if ft.as_str() != Some("Plan") {
            return Err(err("fileType", format!("must be \"Plan\", got {ft}")));
        }
    } else {
        return Err(err("fileType", "is missing (not a QGroundControl plan)"));
    }
    let mission = obj(
        top.get("mission")
            .ok_or_else(|| err("mission", "is missing"))?,
        "mission",
    )?;
    let autopilot = match mission.get("firmwareType").and_then(Value::as_i64) {
        Some(FW_ARDUPILOT) => Autopilot::Ardupilot,
        _ => Autopilot::Px4,
    };
    let home = match mission.get("plannedHomePosition") {
        Some(Value::Array(a)) if a.len() >= 2 => {
            let q = latlon(
                &Value::Array(a[..2].to_vec()),
                "mission.plannedHomePosition",
            )?;
            let alt = a.get(2).and_then(Value::as_f64).unwrap_or(0.0);
            Some(LatLonAlt::new(q.lat_deg, q.lon_deg, alt))
        }
        Some(Value::Null) | None => None,
        Some(_) => {
            return Err(err(
                "mission.plannedHomePosition",
                "must be [lat, lon, alt]",
            ))
        }
    };
    let mut items = Vec::new();
    if autopilot == Autopilot::Ardupilot {
        let h = home.unwrap_or(LatLonAlt::new(0.0, 0.0, 0.0));
        items.push(home_item(h.horizontal(), h.alt_m));
    }
    let mut areas = Vec::new();
    let list = arr(
        mission
            .get("items")
            .ok_or_else(|| err("mission.items", "is missing"))?,
        "mission.items",
    )?;
    if list.len() > 65_535 {
        return Err(err("mission.items", "more than 65535 items"));
    }
    for (i, v) in list.iter().enumerate() {
        let path = format!("mission.items[{i}]");
        let o = obj(v, &path)?;
        match o.get("type").and_then(Value::as_str) {
            Some("SimpleItem") => items.push(simple_item(v, &path)?),
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
        if let Some(polys) = gf.get("polygons") {
            for (i, pv) in arr(polys, "geoFence.polygons")?.iter().enumerate() {
                let path = format!("geoFence.polygons[{i}]");
                let po = obj(pv, &path)?;
                let inclusion = po.get("inclusion").and_then(Value::as_bool).unwrap_or(true);
                let ring = polygon_of(
                    po.get("polygon")
                        .ok_or_else(|| err(format!("{path}.polygon"), "is missing"))?,
                    &format!("{path}.polygon"),
                )?;
                if ring.len() < 3 {
                    return Err(err(format!("{path}.polygon"), "needs at least 3 points"));
                }
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
    let mut rally = Vec::new();
    let mut rally_points = Vec::new();
    if let Some(rp) = top.get("rallyPoints") {
        let rp = obj(rp, "rallyPoints")?;
        if let Some(pts) = rp.get("points") {
            for (i, v) in arr(pts, "rallyPoints.points")?.iter().enumerate() {
                let path = format!("rallyPoints.points[{i}]");
                let q = latlon(v, &path)?;
                let alt = v.get(2).and_then(Value::as_f64).unwrap_or(0.0);
                rally.push(MissionItem::nav(
                    cmd::NAV_RALLY_POINT,
                    q.lat_deg,
                    q.lon_deg,
                    alt as f32,
                ));
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
