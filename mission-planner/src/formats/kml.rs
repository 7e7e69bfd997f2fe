//! KML 2.2 (Google Earth, many GIS tools): Placemarks with Polygon, Point
//! and MultiGeometry. A Placemark's role comes from its ExtendedData
//! `kind` (or the enclosing Folder's name if that is a role, e.g. a folder
//! called "no_fly_zone"), else the caller's default; `buffer_m`,
//! `radius_m`, `dwell_s`, `priority` come from ExtendedData too.

use tiancha_geometry::geodesy::LatLon;

use super::{Inputs, Role, MAX_POINTS};
use crate::error::PlanError;
use crate::request::{Area, GeoPolygon, NoFlyZone, PointOfInterest, ZoneShape};

const FMT: &str = "KML";

fn err(path: impl Into<String>, reason: impl std::fmt::Display) -> PlanError {
    PlanError::format(FMT, path, reason)
}

fn coords(text: &str, path: &str, budget: &mut usize) -> Result<Vec<LatLon>, PlanError> {
    let mut out = Vec::new();
    for (i, tuple) in text.split_whitespace().enumerate() {
        if *budget == 0 {
            return Err(err(path, "too many points"));
        }
        *budget -= 1;
        let mut it = tuple.split(',');
        let lon = it.next().and_then(|s| s.trim().parse::<f64>().ok());
        let lat = it.next().and_then(|s| s.trim().parse::<f64>().ok());
        let (Some(lon), Some(lat)) = (lon, lat) else {
            return Err(err(
                format!("{path} tuple {i}"),
                format!("'{tuple}' is not lon,lat[,alt]"),
            ));
        };
        let q = LatLon::new(lat, lon);
        if !q.is_valid() {
            return Err(err(
                format!("{path} tuple {i}"),
                format!("{lon},{lat} is not a valid lon,lat"),
            ));
        }
        out.push(q);
    }
    Ok(out)
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn ring_of(n: roxmltree::Node, path: &str, budget: &mut usize) -> Result<Vec<LatLon>, PlanError> {
    let lr = n
        .descendants()
        .find(|c| c.is_element() && c.tag_name().name() == "coordinates")
        .ok_or_else(|| err(path, "LinearRing has no coordinates"))?;
    let mut r = coords(lr.text().unwrap_or(""), path, budget)?;
    if r.len() > 1 && r.first() == r.last() {
        r.pop();
    }
    if r.len() < 3 {
        return Err(err(
            path,
            format!("a ring needs at least 3 distinct points, has {}", r.len()),
        ));
    }
    Ok(r)
}

struct Props {
    role: Option<Role>,
    buffer_m: Option<f64>,
    radius_m: Option<f64>,
    dwell_s: Option<f64>,
    priority: Option<f64>,
}

fn props(pm: roxmltree::Node, path: &str) -> Result<Props, PlanError> {
    let mut p = Props {
        role: None,
        buffer_m: None,
        radius_m: None,
        dwell_s: None,
        priority: None,
    };
    if let Some(ed) = child(pm, "ExtendedData") {
        for d in ed
            .children()
            .filter(|c| c.is_element() && c.tag_name().name() == "Data")
        {
            let key = d.attribute("name").unwrap_or("");
            let val = child(d, "value")
                .and_then(|v| v.text())
                .unwrap_or("")
                .trim();
            let num = || -> Result<f64, PlanError> {
                val.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| {
                        err(
                            format!("{path} ExtendedData {key}"),
                            format!("'{val}' is not a number"),
                        )
                    })
            };
            match key {
                "kind" | "role" => {
                    p.role = Some(Role::parse(val).ok_or_else(|| {
                        err(
                            format!("{path} ExtendedData kind"),
                            format!("unknown kind '{val}'"),
                        )
                    })?)
                }
                "buffer_m" => p.buffer_m = Some(num()?),
                "radius_m" => p.radius_m = Some(num()?),
                "dwell_s" => p.dwell_s = Some(num()?),
                "priority" => p.priority = Some(num()?),
                _ => {}
            }
        }
    }
    Ok(p)
}

fn folder_role(n: roxmltree::Node) -> Option<Role> {
    n.ancestors()
        .filter(|a| a.is_element() && a.tag_name().name() == "Folder")
        .find_map(|f| {
            child(f, "name")
                .and_then(|x| x.text())
                .and_then(Role::parse)
        })
}

/// Read inputs from KML text.
pub fn read_kml(text: &str, default: Role) -> Result<Inputs, PlanError> {
    let doc =
        roxmltree::Document::parse(text).map_err(|e| err("(document)", format!("not XML: {e}")))?;
    if doc.root_element().tag_name().name() != "kml" {
        return Err(err(
            "(document)",
            format!(
                "root element is <{}>, not <kml>",
                doc.root_element().tag_name().name()
            ),
        ));
    }
    let mut out = Inputs::default();
    let mut budget = MAX_POINTS;
    for (pi, pm) in doc
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "Placemark")
        .enumerate()
    {
        let name = child(pm, "name")
            .and_then(|n| n.text())
            .unwrap_or("")
            .trim()
            .to_string();
        let path = if name.is_empty() {
            format!("Placemark {pi}")
        } else {
            format!("Placemark {pi} ('{name}')")
        };
        let pr = props(pm, &path)?;
        let role = pr.role.or_else(|| folder_role(pm)).unwrap_or(default);
        // Geometries: Polygons and Points anywhere inside (MultiGeometry).
        let mut polys = Vec::new();
        let mut points = Vec::new();
        for g in pm.descendants().filter(|n| n.is_element()) {
            match g.tag_name().name() {
                "Polygon" => {
                    let outer = child(g, "outerBoundaryIs")
                        .ok_or_else(|| err(&path, "Polygon has no outerBoundaryIs"))?;
                    let exterior = ring_of(outer, &path, &mut budget)?;
                    let holes = g
                        .children()
                        .filter(|c| c.is_element() && c.tag_name().name() == "innerBoundaryIs")
                        .map(|h| ring_of(h, &path, &mut budget))
                        .collect::<Result<Vec<_>, _>>()?;
                    polys.push(GeoPolygon { exterior, holes });
                }
                "Point" => {
                    let c = child(g, "coordinates")
                        .ok_or_else(|| err(&path, "Point has no coordinates"))?;
                    let q = coords(c.text().unwrap_or(""), &path, &mut budget)?;
                    let q = *q
                        .first()
                        .ok_or_else(|| err(&path, "Point has no coordinates"))?;
                    points.push(q);
                }
                _ => {}
            }
        }
        let many = polys.len() + points.len() > 1;
        let nm = |i: usize, base: &str| {
            if many {
                format!("{name} {i}")
            } else {
                base.to_string()
            }
        };
        for (i, poly) in polys.into_iter().enumerate() {
            match role {
                Role::Area => out.areas.push(Area {
                    name: nm(i, &name),
                    polygon: poly,
                }),
                Role::NoFlyZone => out.no_fly_zones.push(NoFlyZone {
                    name: if name.is_empty() {
                        format!("zone {}", out.no_fly_zones.len())
                    } else {
                        nm(i, &name)
                    },
                    shape: ZoneShape::Polygon { polygon: poly },
                    buffer_m: pr.buffer_m.unwrap_or(0.0),
                }),
                _ => {
                    return Err(err(
                        &path,
                        format!("a {} must be a Point, not a Polygon", role.as_str()),
                    ))
                }
            }
        }
        for (i, q) in points.into_iter().enumerate() {
            match role {
                Role::PointOfInterest => out.points_of_interest.push(PointOfInterest {
                    name: if name.is_empty() {
                        format!("point {}", out.points_of_interest.len())
                    } else {
                        nm(i, &name)
                    },
                    position: q,
                    dwell_s: pr.dwell_s.unwrap_or(0.0),
                    priority: pr.priority.unwrap_or(0.0).clamp(0.0, 255.0) as u8,
                }),
                Role::Home => out.home = Some(q),
                Role::Rally => out.rally_points.push(q),
                Role::NoFlyZone => out.no_fly_zones.push(NoFlyZone {
                    name: if name.is_empty() {
                        format!("zone {}", out.no_fly_zones.len())
                    } else {
                        nm(i, &name)
                    },
                    shape: ZoneShape::Circle {
                        center: q,
                        radius_m: pr.radius_m.ok_or_else(|| {
                            err(&path, "a Point no-fly zone needs ExtendedData radius_m")
                        })?,
                    },
                    buffer_m: pr.buffer_m.unwrap_or(0.0),
                }),
                Role::Area => return Err(err(&path, "an area must be a Polygon, not a Point")),
            }
        }
    }
    Ok(out)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn ring_text(r: &[LatLon]) -> String {
    let mut s = String::new();
    for q in r.iter().chain(r.first()) {
        s.push_str(&format!("{},{} ", q.lon_deg, q.lat_deg));
    }
    s.trim_end().to_string()
}

fn polygon_kml(p: &GeoPolygon) -> String {
    let mut s = format!(
        "<Polygon><outerBoundaryIs><LinearRing><coordinates>{}</coordinates></LinearRing></outerBoundaryIs>",
        ring_text(&p.exterior)
    );
    for h in &p.holes {
        s.push_str(&format!(
            "<innerBoundaryIs><LinearRing><coordinates>{}</coordinates></LinearRing></innerBoundaryIs>",
            ring_text(h)
        ));
    }
    s.push_str("</Polygon>");
    s
}

fn data(pairs: &[(&str, String)]) -> String {
    let mut s = String::from("<ExtendedData>");
    for (k, v) in pairs {
        s.push_str(&format!(
            "<Data name=\"{k}\"><value>{}</value></Data>",
            esc(v)
        ));
    }
    s.push_str("</ExtendedData>");
    s
}

fn point_kml(q: &LatLon) -> String {
    format!(
        "<Point><coordinates>{},{}</coordinates></Point>",
        q.lon_deg, q.lat_deg
    )
}

/// Write inputs (and optionally the planned routes, one LineString per
/// sortie) as KML. Inputs read back identical.
pub fn write_kml(inp: &Inputs, routes: &[Vec<LatLon>]) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<kml xmlns=\"http://www.opengis.net/kml/2.2\"><Document>\n");
    for a in &inp.areas {
        s.push_str(&format!(
            "<Placemark><name>{}</name>{}{}</Placemark>\n",
            esc(&a.name),
            data(&[("kind", "area".into())]),
            polygon_kml(&a.polygon)
        ));
    }
    for z in &inp.no_fly_zones {
        let (geom, mut d) = match &z.shape {
            ZoneShape::Polygon { polygon } => (polygon_kml(polygon), vec![]),
            ZoneShape::Circle { center, radius_m } => {
                (point_kml(center), vec![("radius_m", radius_m.to_string())])
            }
        };
        d.push(("kind", "no_fly_zone".into()));
        d.push(("buffer_m", z.buffer_m.to_string()));
        s.push_str(&format!(
            "<Placemark><name>{}</name>{}{}</Placemark>\n",
            esc(&z.name),
            data(&d),
            geom
        ));
    }
    for p in &inp.points_of_interest {
        s.push_str(&format!(
            "<Placemark><name>{}</name>{}{}</Placemark>\n",
            esc(&p.name),
            data(&[
                ("kind", "point_of_interest".into()),
                ("dwell_s", p.dwell_s.to_string()),
                ("priority", p.priority.to_string())
            ]),
            point_kml(&p.position)
        ));
    }
    if let Some(h) = &inp.home {
        s.push_str(&format!(
            "<Placemark><name>home</name>{}{}</Placemark>\n",
            data(&[("kind", "home".into())]),
            point_kml(h)
        ));
    }
    for r in &inp.rally_points {
        s.push_str(&format!(
            "<Placemark><name>rally</name>{}{}</Placemark>\n",
            data(&[("kind", "rally".into())]),
            point_kml(r)
        ));
    }
    for (i, r) in routes.iter().enumerate() {
        let c: Vec<String> = r
            .iter()
            .map(|q| format!("{},{}", q.lon_deg, q.lat_deg))
            .collect();
        s.push_str(&format!(
            "<Placemark><name>sortie {}</name><LineString><coordinates>{}</coordinates></LineString></Placemark>\n",
            i + 1,
            c.join(" ")
        ));
    }
    s.push_str("</Document></kml>\n");
    s
}
