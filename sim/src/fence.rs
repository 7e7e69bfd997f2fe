//! Geofence from MAVLink fence items: inclusion/exclusion polygons (a run
//! of `NAV_FENCE_POLYGON_VERTEX_*` items, param1 = vertex count) and
//! circles (param1 = radius), as ArduPilot stores them.

use nalgebra::Vector2;
use tiancha_geometry::geodesy::{LatLon, LocalFrame};
use tiancha_protocol::mission::{cmd, MissionItem};

#[derive(Debug, Clone, PartialEq)]
pub enum Zone {
    Polygon {
        inclusion: bool,
        vertices: Vec<LatLon>,
    },
    Circle {
        inclusion: bool,
        center: LatLon,
        radius_m: f64,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fence {
    pub zones: Vec<Zone>,
    pub return_point: Option<LatLon>,
}

/// Why fence items do not make a fence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fence item {seq}: {reason}")]
pub struct FenceError {
    pub seq: usize,
    pub reason: String,
}

impl Fence {
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    pub fn from_items(items: &[MissionItem]) -> Result<Fence, FenceError> {
        let mut f = Fence::default();
        let mut i = 0;
        while i < items.len() {
            let it = &items[i];
            let ll = LatLon::new(it.lat_deg(), it.lon_deg());
            match it.command {
                cmd::NAV_FENCE_POLYGON_VERTEX_INCLUSION
                | cmd::NAV_FENCE_POLYGON_VERTEX_EXCLUSION => {
                    let n = it.param1 as usize;
                    if !(3..=100).contains(&n) {
                        return Err(FenceError {
                            seq: i,
                            reason: format!("polygon vertex count {n} (need 3..100)"),
                        });
                    }
                    if i + n > items.len() {
                        return Err(FenceError {
                            seq: i,
                            reason: format!("polygon of {n} vertices runs past the end"),
                        });
                    }
                    let mut v = Vec::with_capacity(n);
                    for (k, vi) in items[i..i + n].iter().enumerate() {
                        if vi.command != it.command || vi.param1 as usize != n {
                            return Err(FenceError {
                                seq: i + k,
                                reason: "polygon vertices disagree on type or count".into(),
                            });
                        }
                        v.push(LatLon::new(vi.lat_deg(), vi.lon_deg()));
                    }
                    f.zones.push(Zone::Polygon {
                        inclusion: it.command == cmd::NAV_FENCE_POLYGON_VERTEX_INCLUSION,
                        vertices: v,
                    });
                    i += n;
                    continue;
                }
                cmd::NAV_FENCE_CIRCLE_INCLUSION | cmd::NAV_FENCE_CIRCLE_EXCLUSION => {
                    if it.param1.is_nan() || it.param1 <= 0.0 {
                        return Err(FenceError {
                            seq: i,
                            reason: format!("circle radius {} must be positive", it.param1),
                        });
                    }
                    f.zones.push(Zone::Circle {
                        inclusion: it.command == cmd::NAV_FENCE_CIRCLE_INCLUSION,
                        center: ll,
                        radius_m: it.param1 as f64,
                    });
                }
                cmd::NAV_FENCE_RETURN_POINT => f.return_point = Some(ll),
                other => {
                    return Err(FenceError {
                        seq: i,
                        reason: format!("MAV_CMD {other} is not a fence item"),
                    })
                }
            }
            i += 1;
        }
        Ok(f)
    }

    /// Which zone the NED point `p` (north, east) violates, if any.
    pub fn breach(&self, frame: &LocalFrame, p: Vector2<f64>) -> Option<String> {
        let mut any_inclusion = false;
        let mut inside_some_inclusion = false;
        for (k, z) in self.zones.iter().enumerate() {
            match z {
                Zone::Polygon {
                    inclusion,
                    vertices,
                } => {
                    let poly: Vec<Vector2<f64>> = vertices
                        .iter()
                        .map(|v| {
                            let (e, n) = frame.to_en(*v);
                            Vector2::new(n, e)
                        })
                        .collect();
                    let inside = point_in_polygon(p, &poly);
                    if *inclusion {
                        any_inclusion = true;
                        inside_some_inclusion |= inside;
                    } else if inside {
                        return Some(format!("exclusion zone {k}"));
                    }
                }
                Zone::Circle {
                    inclusion,
                    center,
                    radius_m,
                } => {
                    let (e, n) = frame.to_en(*center);
                    let inside = (p - Vector2::new(n, e)).norm() <= *radius_m;
                    if *inclusion {
                        any_inclusion = true;
                        inside_some_inclusion |= inside;
                    } else if inside {
                        return Some(format!("exclusion circle {k}"));
                    }
                }
            }
        }
        (any_inclusion && !inside_some_inclusion).then(|| "outside the inclusion zone".to_string())
    }
}

fn point_in_polygon(p: Vector2<f64>, poly: &[Vector2<f64>]) -> bool {
    let mut inside = false;
    let n = poly.len();
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (poly[i], poly[j]);
        if (a.y > p.y) != (b.y > p.y) && p.x < (b.x - a.x) * (p.y - a.y) / (b.y - a.y) + a.x {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiancha_geometry::geodesy::LatLonAlt;

    fn vertex(command: u16, n: f32, lat: f64, lon: f64) -> MissionItem {
        let mut it = MissionItem::nav(command, lat, lon, 0.0);
        it.param1 = n;
        it
    }

    #[test]
    fn inclusion_and_exclusion() {
        let frame = LocalFrame::new(LatLonAlt::new(28.45, 117.94, 70.0));
        let inc = cmd::NAV_FENCE_POLYGON_VERTEX_INCLUSION;
        let exc = cmd::NAV_FENCE_POLYGON_VERTEX_EXCLUSION;
        let items = vec![
            vertex(inc, 4.0, 28.44, 117.93),
            vertex(inc, 4.0, 28.46, 117.93),
            vertex(inc, 4.0, 28.46, 117.95),
            vertex(inc, 4.0, 28.44, 117.95),
            vertex(exc, 3.0, 28.451, 117.941),
            vertex(exc, 3.0, 28.452, 117.941),
            vertex(exc, 3.0, 28.452, 117.942),
        ];
        let f = Fence::from_items(&items).unwrap();
        assert_eq!(f.zones.len(), 2);
        let at = |lat: f64, lon: f64| {
            let (e, n) = frame.to_en(LatLon::new(lat, lon));
            f.breach(&frame, Vector2::new(n, e))
        };
        assert_eq!(at(28.45, 117.94), None);
        assert!(at(28.47, 117.94).is_some());
        assert!(
            at(28.4518, 117.9412).is_some(),
            "inside the exclusion triangle"
        );
        let bad = vec![vertex(inc, 4.0, 28.44, 117.93)];
        assert!(Fence::from_items(&bad).is_err());
    }
}
