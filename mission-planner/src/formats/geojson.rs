//! GeoJSON (RFC 7946): inputs in, inputs and routes out. Coordinates are
//! `[lon, lat]`. Feature properties: `kind` (role), `name`, `buffer_m`
//! (no-fly zones), `radius_m` (a Point no-fly zone is a circle), `dwell_s`
//! and `priority` (points of interest).

use serde_json::{json, Map, Value};
use tiancha_geometry::geodesy::LatLon;

use super::{Inputs, Role, MAX_POINTS};
use crate::error::PlanError;
use crate::request::{Area, GeoPolygon, NoFlyZone, PointOfInterest, ZoneShape};

const FMT: &str = "GeoJSON";

fn err(path: impl Into<String>, reason: impl std::fmt::Display) -> PlanError {
    PlanError::format(FMT, path, reason)
}

fn position(v: &Value, path: &str) -> Result<LatLon, PlanError> {
    let a = v
        .as_array()
        .ok_or_else(|| err(path, "a position must be [lon, lat]"))?;
    if a.len() < 2 {
        return Err(err(path, "a position must be [lon, lat]"));
    }
    let lon = a[0]
        .as_f64()
        .ok_or_else(|| err(path, "longitude must be a number"))?;
    let lat = a[1]
        .as_f64()
        .ok_or_else(|| err(path, "latitude must be a number"))?;
    let q = LatLon::new(lat, lon);
    if !q.is_valid() {
        return Err(err(
            path,
            format!("[{lon}, {lat}] is not a valid [lon, lat] position"),
        ));
    }
    Ok(q)
}

fn ring(v: &Value, path: &str, budget: &mut usize) -> Result<Vec<LatLon>, PlanError> {
    let a = v
        .as_array()
        .ok_or_else(|| err(path, "a ring must be an array of positions"))?;
    if a.len() > *budget {
        return Err(err(path, "too many points"));
    }
    *budget -= a.len();
    let mut r: Vec<LatLon> = a
        .iter()
        .enumerate()
        .map(|(i, q)| position(q, &format!("{path}[{i}]")))
        .collect::<Result<_, _>>()?;
    if r.len() > 1 && r.first() == r.last() {
        r.pop();
    }
    if r.len() < 3 {
        return Err(err(
            path,
            format!(
                "a ring needs at least 3 distinct positions, has {}",
                r.len()
            ),
        ));
    }
    Ok(r)
}

fn polygon(v: &Value, path: &str, budget: &mut usize) -> Result<GeoPolygon, PlanError> {
    let rings = v
        .as_array()
        .ok_or_else(|| err(path, "Polygon coordinates must be an array of rings"))?;
    if rings.is_empty() {
        return Err(err(path, "a Polygon needs an exterior ring"));
    }
    let exterior = ring(&rings[0], &format!("{path}[0]"), budget)?;
    let holes = rings[1..]
        .iter()
        .enumerate()
        .map(|(i, h)| ring(h, &format!("{path}[{}]", i + 1), budget))
        .collect::<Result<_, _>>()?;
    Ok(GeoPolygon { exterior, holes })
}

fn prop_f64(props: &Map<String, Value>, key: &str, path: &str) -> Result<Option<f64>, PlanError> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let x = v
                .as_f64()
                .ok_or_else(|| err(format!("{path}.properties.{key}"), "must be a number"))?;
            if !x.is_finite() {
                return Err(err(format!("{path}.properties.{key}"), "must be finite"));
            }
            Ok(Some(x))
        }
    }
}

fn feature(
    geom: &Value,
    props: &Map<String, Value>,
    default: Role,
    path: &str,
    out: &mut Inputs,
    budget: &mut usize,
    depth: usize,
) -> Result<(), PlanError> {
    if depth > 8 {
        return Err(err(path, "geometry collections nested too deep"));
    }
    let role = match props.get("kind").or_else(|| props.get("role")) {
        // Outputs of `tiancha plan`: not inputs.
        Some(Value::String(s)) if s == "route" || s == "fence" => return Ok(()),
        Some(Value::String(s)) => Role::parse(s).ok_or_else(|| {
            err(
                format!("{path}.properties.kind"),
                format!("unknown kind '{s}' (area, no_fly_zone, point_of_interest, home, rally)"),
            )
        })?,
        Some(Value::Null) | None => default,
        Some(_) => return Err(err(format!("{path}.properties.kind"), "must be a string")),
    };
    let name = props
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let g = geom
        .as_object()
        .ok_or_else(|| err(format!("{path}.geometry"), "must be an object"))?;
    let ty = g.get("type").and_then(Value::as_str).unwrap_or("");
    let coords = g.get("coordinates");
    let cpath = format!("{path}.geometry.coordinates");
    let need = || coords.ok_or_else(|| err(&cpath, "is missing"));
    match ty {
        "Polygon" | "MultiPolygon" => {
            let polys = if ty == "Polygon" {
                vec![polygon(need()?, &cpath, budget)?]
            } else {
                need()?
                    .as_array()
                    .ok_or_else(|| err(&cpath, "MultiPolygon coordinates must be an array"))?
                    .iter()
                    .enumerate()
                    .map(|(i, pv)| polygon(pv, &format!("{cpath}[{i}]"), budget))
                    .collect::<Result<Vec<_>, _>>()?
            };
            let many = polys.len() > 1;
            for (i, poly) in polys.into_iter().enumerate() {
                let nm = if many {
                    format!("{name} {i}")
                } else {
                    name.clone()
                };
                match role {
                    Role::Area => out.areas.push(Area {
                        name: nm,
                        polygon: poly,
                    }),
                    Role::NoFlyZone => out.no_fly_zones.push(NoFlyZone {
                        name: if nm.is_empty() {
                            format!("zone {}", out.no_fly_zones.len())
                        } else {
                            nm
                        },
                        shape: ZoneShape::Polygon { polygon: poly },
                        buffer_m: prop_f64(props, "buffer_m", path)?.unwrap_or(0.0),
                    }),
                    _ => {
                        return Err(err(
                            path,
                            format!("a {} must be a Point, not a {ty}", role.as_str()),
                        ))
                    }
                }
            }
        }
        "Point" => {
            let q = position(need()?, &cpath)?;
            match role {
                Role::PointOfInterest => out.points_of_interest.push(PointOfInterest {
                    name: if name.is_empty() {
                        format!("point {}", out.points_of_interest.len())
                    } else {
                        name
                    },
                    position: q,
                    dwell_s: prop_f64(props, "dwell_s", path)?.unwrap_or(0.0),
                    priority: prop_f64(props, "priority", path)?
                        .unwrap_or(0.0)
                        .clamp(0.0, 255.0) as u8,
                }),
                Role::Home => out.home = Some(q),
                Role::Rally => out.rally_points.push(q),
                Role::NoFlyZone => {
                    let r = prop_f64(props, "radius_m", path)?.ok_or_else(|| {
                        err(
                            format!("{path}.properties.radius_m"),
                            "a Point no-fly zone needs radius_m",
                        )
                    })?;
                    out.no_fly_zones.push(NoFlyZone {
                        name: if name.is_empty() {
                            format!("zone {}", out.no_fly_zones.len())
                        } else {
                            name
                        },
                        shape: ZoneShape::Circle {
                            center: q,
                            radius_m: r,
                        },
                        buffer_m: prop_f64(props, "buffer_m", path)?.unwrap_or(0.0),
                    });
                }
                Role::Area => return Err(err(path, "an area must be a Polygon, not a Point")),
            }
        }
        "MultiPoint" => {
            let a = need()?
                .as_array()
                .ok_or_else(|| err(&cpath, "must be an array"))?;
            for (i, qv) in a.iter().enumerate() {
                let single = json!({"type": "Point", "coordinates": qv});
                let mut pr = props.clone();
                if !name.is_empty() {
                    pr.insert("name".into(), json!(format!("{name} {i}")));
                }
                feature(
                    &single,
                    &pr,
                    role,
                    &format!("{path}[{i}]"),
                    out,
                    budget,
                    depth + 1,
                )?;
            }
        }
        "GeometryCollection" => {
            let gs = g
                .get("geometries")
                .and_then(Value::as_array)
                .ok_or_else(|| err(format!("{path}.geometry.geometries"), "must be an array"))?;
            for (i, gv) in gs.iter().enumerate() {
                feature(
                    gv,
                    props,
                    role,
                    &format!("{path}.geometries[{i}]"),
                    out,
                    budget,
                    depth + 1,
                )?;
            }
        }
        // Routes and lines are outputs; ignore them on input.
        "LineString" | "MultiLineString" => {}
        other => {
            return Err(err(
                format!("{path}.geometry.type"),
                format!("unsupported geometry type '{other}'"),
            ))
        }
    }
    Ok(())
}

/// Read inputs from GeoJSON text. Features without a `kind` property take
/// `default`.
pub fn read_geojson(text: &str, default: Role) -> Result<Inputs, PlanError> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| err("(document)", format!("not JSON: {e}")))?;
    let mut out = Inputs::default();
    let mut budget = MAX_POINTS;
    let empty = Map::new();
    match doc.get("type").and_then(Value::as_str) {
        Some("FeatureCollection") => {
            let fs = doc
                .get("features")
                .and_then(Value::as_array)
                .ok_or_else(|| err("features", "must be an array"))?;
            for (i, f) in fs.iter().enumerate() {
                let path = format!("features[{i}]");
                if f.get("type").and_then(Value::as_str) != Some("Feature") {
                    return Err(err(&path, "must be a Feature"));
                }
                let props = f
                    .get("properties")
                    .and_then(Value::as_object)
                    .unwrap_or(&empty);
                match f.get("geometry") {
                    Some(Value::Null) | None => continue,
                    Some(g) => feature(g, props, default, &path, &mut out, &mut budget, 0)?,
                }
            }
        }
        Some("Feature") => {
            let props = doc
                .get("properties")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            if let Some(g) = doc.get("geometry").filter(|g| !g.is_null()) {
                feature(g, props, default, "(feature)", &mut out, &mut budget, 0)?;
            }
        }
        Some(_) => feature(
            &doc,
            &empty,
            default,
            "(geometry)",
            &mut out,
            &mut budget,
            0,
        )?,
        None => return Err(err("type", "is missing (not GeoJSON)")),
    }
    Ok(out)
}

fn pos(q: &LatLon) -> Value {
    json!([q.lon_deg, q.lat_deg])
}

fn closed(r: &[LatLon]) -> Value {
    let mut v: Vec<Value> = r.iter().map(pos).collect();
    if let Some(f) = r.first() {
        v.push(pos(f));
    }
    Value::Array(v)
}

fn poly_coords(p: &GeoPolygon) -> Value {
    let mut rings = vec![closed(&p.exterior)];
    rings.extend(p.holes.iter().map(|h| closed(h)));
    Value::Array(rings)
}

/// Features for the inputs.
pub fn input_features(inp: &Inputs) -> Vec<Value> {
    let mut fs = Vec::new();
    for a in &inp.areas {
        fs.push(
            json!({"type": "Feature", "properties": {"kind": "area", "name": a.name},
            "geometry": {"type": "Polygon", "coordinates": poly_coords(&a.polygon)}}),
        );
    }
    for z in &inp.no_fly_zones {
        let g = match &z.shape {
            ZoneShape::Polygon { polygon } => {
                json!({"type": "Polygon", "coordinates": poly_coords(polygon)})
            }
            ZoneShape::Circle { center, .. } => {
                json!({"type": "Point", "coordinates": pos(center)})
            }
        };
        let mut props = json!({"kind": "no_fly_zone", "name": z.name, "buffer_m": z.buffer_m});
        if let ZoneShape::Circle { radius_m, .. } = &z.shape {
            props["radius_m"] = json!(radius_m);
        }
        fs.push(json!({"type": "Feature", "properties": props, "geometry": g}));
    }
    for p in &inp.points_of_interest {
        fs.push(json!({"type": "Feature",
            "properties": {"kind": "point_of_interest", "name": p.name, "dwell_s": p.dwell_s, "priority": p.priority},
            "geometry": {"type": "Point", "coordinates": pos(&p.position)}}));
    }
    if let Some(h) = &inp.home {
        fs.push(json!({"type": "Feature", "properties": {"kind": "home"},
            "geometry": {"type": "Point", "coordinates": pos(h)}}));
    }
    for r in &inp.rally_points {
        fs.push(json!({"type": "Feature", "properties": {"kind": "rally"},
            "geometry": {"type": "Point", "coordinates": pos(r)}}));
    }
    fs
}

/// Write inputs as a FeatureCollection (reads back identical).
pub fn write_inputs(inp: &Inputs) -> String {
    serde_json::to_string_pretty(
        &json!({"type": "FeatureCollection", "features": input_features(inp)}),
    )
    .unwrap_or_default()
}

/// The planned route: one LineString per sortie (with its figures and a
/// display colour), the fence, the exclusion zones as emitted, the rally
/// points, and the inputs.
pub fn write_plan_geojson(plan: &crate::Plan, inputs: &Inputs) -> String {
    let mut fs = input_features(&Inputs {
        rally_points: vec![],
        ..inputs.clone()
    });
    fs.push(
        json!({"type": "Feature", "properties": {"kind": "fence", "name": "inclusion fence"},
        "geometry": {"type": "Polygon", "coordinates": [closed(&plan.fence.inclusion)]}}),
    );
    for (i, s) in plan.sorties.iter().enumerate() {
        let coords: Vec<Value> = s.route.iter().map(pos).collect();
        fs.push(json!({"type": "Feature",
            "properties": {"kind": "route", "sortie": i + 1, "length_m": s.length_m, "time_s": s.time_s,
                "battery_used": s.battery_used, "battery_unit": plan.summary.battery_unit,
                "stroke": crate::render::sortie_colour(i)},
            "geometry": {"type": "LineString", "coordinates": coords}}));
    }
    for r in &plan.rally {
        fs.push(json!({"type": "Feature", "properties": {"kind": "rally"},
            "geometry": {"type": "Point", "coordinates": pos(r)}}));
    }
    serde_json::to_string_pretty(&json!({
        "type": "FeatureCollection",
        "properties": serde_json::to_value(&plan.summary).unwrap_or(Value::Null),
        "features": fs
    }))
    .unwrap_or_default()
}
