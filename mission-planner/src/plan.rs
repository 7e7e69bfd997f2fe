//! `plan_patrol`: request → airspace → coverage → tour → route → sorties →
//! missions, fence, rally points and a summary.

use serde::{Deserialize, Serialize};
use tiancha_geometry::geodesy::LatLon;
use tiancha_protocol::mission::MissionSet;

use crate::airspace::{Airspace, LocalShape};
use crate::coverage::{self, Coverage, SweepParams};
use crate::error::PlanError;
use crate::geom::{dist, P};
use crate::mission::{self, MissionStyle, Step};
use crate::request::{Autopilot, BatteryModel, CameraGeometry, PlanRequest};
use crate::route::{self, Flight, Mark, RoutePoint};
use crate::tour::{Node, NodeVariant, Problem};

/// One sortie: what to upload and what it flies.
#[derive(Debug, Clone)]
pub struct Sortie {
    /// Mission, fence and rally items for the autopilot.
    pub mission: MissionSet,
    /// The flown path from take-off to landing, WGS84.
    pub route: Vec<LatLon>,
    /// The same, with what each vertex is, in the plan's local frame.
    pub route_local: Vec<RoutePoint>,
    /// The steps the mission was built from.
    pub steps: Vec<Step>,
    /// Points of interest visited (indices into the request).
    pub points_of_interest: Vec<usize>,
    pub length_m: f64,
    pub time_s: f64,
    /// Battery used including take-off and landing, in `battery_unit`.
    pub battery_used: f64,
}

/// The fence as emitted, WGS84.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fence {
    pub inclusion: Vec<LatLon>,
    pub exclusion_polygons: Vec<(String, Vec<LatLon>)>,
    pub exclusion_circles: Vec<(String, LatLon, f64)>,
}

/// Figures an operator reads before flying.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub length_m: f64,
    pub time_s: f64,
    pub sorties: usize,
    /// Coverable area covered by the camera footprint along the route, %.
    pub coverage_percent: f64,
    /// Area of the areas, m².
    pub area_m2: f64,
    /// Area minus buffered no-fly zones (within the fence), m².
    pub coverable_area_m2: f64,
    pub altitude_m: f64,
    pub lane_spacing_m: f64,
    pub footprint_width_m: f64,
    pub gsd_cm_per_px: Option<f64>,
    /// Lane direction, degrees clockwise from north.
    pub sweep_heading_deg: f64,
    pub points_of_interest: usize,
    pub cells: usize,
    /// Cells that could not be reached from home and were left out.
    pub unreachable_cells: usize,
    pub home: LatLon,
    pub home_inferred: bool,
    pub battery_unit: String,
    pub battery_usable: f64,
    /// Largest share of the usable battery any sortie uses, 0..1.
    pub max_battery_fraction: f64,
}

/// A planned patrol.
#[derive(Debug, Clone)]
pub struct Plan {
    pub sorties: Vec<Sortie>,
    pub fence: Fence,
    pub rally: Vec<LatLon>,
    pub summary: Summary,
    /// The airspace it was planned in (re-plans and point checks use it).
    pub airspace: Airspace,
    pub camera: CameraGeometry,
    pub coverage: Coverage,
    pub autopilot: Autopilot,
    pub battery: BatteryModel,
    pub style: MissionStyle,
}

/// Plan a patrol. Pure: no I/O, no clock; the same request gives the same
/// plan.
pub fn plan_patrol(req: &PlanRequest) -> Result<Plan, PlanError> {
    let cam = req.camera.geometry()?;
    req.vehicle.validate()?;
    req.options.validate()?;
    let battery = req.vehicle.battery()?;
    if req.areas.is_empty() && req.points_of_interest.is_empty() {
        return Err(PlanError::NothingToPlan);
    }
    let (amin, amax) = (
        req.vehicle.fence_alt_min_m.unwrap_or(0.0),
        req.vehicle.fence_alt_max_m.unwrap_or(f64::INFINITY),
    );
    if cam.altitude_m < amin || cam.altitude_m > amax {
        return Err(PlanError::AltitudeOutsideFence {
            alt_m: cam.altitude_m,
            min_m: amin,
            max_m: amax,
        });
    }
    let air = Airspace::new(req, cam.lane_spacing_m)?;
    let v = &req.vehicle;
    let opts = &req.options;

    // Points of interest must be reachable.
    let mut poi_local = Vec::new();
    for (i, poi) in req.points_of_interest.iter().enumerate() {
        let what = format!("point of interest '{}'", poi.name);
        if !poi.dwell_s.is_finite() || !(0.0..=3600.0).contains(&poi.dwell_s) {
            return Err(PlanError::param(
                format!("points_of_interest[{i}].dwell_s"),
                format!("must be between 0 and 3600 s, got {}", poi.dwell_s),
            ));
        }
        air.check_point(&what, poi.position)?;
        let q = air.to_local(poi.position);
        if opts.poi_orbit_radius_m > 0.0 && poi.dwell_s > 0.0 {
            air.check_circle(&what, q, opts.poi_orbit_radius_m)?;
        }
        poi_local.push(q);
    }
    for (i, r) in req.rally_points.iter().enumerate() {
        air.check_point(&format!("rally point {i}"), *r)?;
    }

    // Coverage.
    let oblique_lead = (cam.footprint_offset_m.abs() - cam.footprint_length_m / 2.0).max(0.0);
    let prm = SweepParams {
        spacing_m: cam.lane_spacing_m,
        speed_mps: v.cruise_speed_mps,
        turn_cost_s: v.turn_cost_s,
        extend_m: opts.turnaround_m + oblique_lead,
    };
    let cov = coverage::plan_coverage(&air, &prm, opts.sweep_angle_deg);

    // Ports: home, points, then each cell's distinct entry/exit points.
    let mut ports: Vec<P> = vec![air.home_local];
    ports.extend(poi_local.iter().copied());
    let port_of = |q: P, ports: &mut Vec<P>| -> usize {
        if let Some(i) = ports.iter().position(|x| dist(*x, q) < 1e-9) {
            i
        } else {
            ports.push(q);
            ports.len() - 1
        }
    };
    let mut cell_ports = Vec::new();
    for vs in &cov.cells {
        let mut ids = Vec::new();
        for var in vs {
            let e = port_of(var.entry(), &mut ports);
            let x = port_of(var.exit(), &mut ports);
            ids.push((e, x));
        }
        cell_ports.push(ids);
    }
    let dm = air.distance_matrix(&ports);
    for (i, poi) in req.points_of_interest.iter().enumerate() {
        if !dm[0][i + 1].is_finite() {
            return Err(PlanError::Unreachable {
                what: format!("point of interest '{}'", poi.name),
                from: air.home.into(),
                to: poi.position.into(),
            });
        }
    }
    // Nodes: home, points, reachable cells.
    let mut nodes = vec![Node::point(0, 0.0)];
    let mut node_kind: Vec<NodeKind> = vec![NodeKind::Home];
    for (i, poi) in req.points_of_interest.iter().enumerate() {
        nodes.push(Node::point(i + 1, poi.dwell_s));
        node_kind.push(NodeKind::Poi(i));
    }
    let mut unreachable_cells = 0;
    for (ci, vs) in cov.cells.iter().enumerate() {
        let ids = &cell_ports[ci];
        if !dm[0][ids[0].0].is_finite() {
            unreachable_cells += 1;
            continue;
        }
        nodes.push(Node {
            variants: vs
                .iter()
                .zip(ids)
                .map(|(var, &(e, x))| NodeVariant {
                    entry: e,
                    exit: x,
                    cost: var.cost_s,
                })
                .collect(),
        });
        node_kind.push(NodeKind::Cell(ci));
    }
    if nodes.len() == 1 && !cov.cells.is_empty() {
        // Every cell is walled off from home (by zones across the way in).
        let c = cov.cells[0][0].entry();
        return Err(PlanError::Unreachable {
            what: format!(
                "the area{}",
                air.areas
                    .first()
                    .map(|a| format!(" '{}'", a.name))
                    .unwrap_or_default()
            ),
            from: air.home.into(),
            to: air.to_latlon(c).into(),
        });
    }
    let speed = v.cruise_speed_mps;
    let cost = |a: usize, b: usize| dm[a][b] / speed;
    let pb = Problem {
        nodes: &nodes,
        cost: &cost,
    };
    let tour = pb.solve();

    // Expand the tour into a route.
    let mut pts: Vec<RoutePoint> = vec![RoutePoint {
        p: air.home_local,
        mark: Mark::Transit,
    }];
    let mut at = air.home_local;
    let go_to = |pts: &mut Vec<RoutePoint>, from: P, to: P| {
        let path = air
            .shortest_path(from, to)
            .unwrap_or_else(|| vec![from, to]);
        for q in &path[1..path.len() - 1] {
            pts.push(RoutePoint {
                p: *q,
                mark: Mark::Transit,
            });
        }
    };
    for &(node, var) in tour.iter().skip(1) {
        match node_kind[node] {
            NodeKind::Home => {}
            NodeKind::Poi(i) => {
                go_to(&mut pts, at, poi_local[i]);
                pts.push(RoutePoint {
                    p: poi_local[i],
                    mark: Mark::Poi(i),
                });
                at = poi_local[i];
            }
            NodeKind::Cell(ci) => {
                let variant = &cov.cells[ci][var];
                go_to(&mut pts, at, variant.entry());
                for &(a, b) in &variant.lanes {
                    pts.push(RoutePoint {
                        p: a,
                        mark: Mark::LaneStart,
                    });
                    pts.push(RoutePoint {
                        p: b,
                        mark: Mark::LaneEnd,
                    });
                }
                at = variant.exit();
            }
        }
    }
    go_to(&mut pts, at, air.home_local);
    pts.push(RoutePoint {
        p: air.home_local,
        mark: Mark::Transit,
    });
    // Drop zero-length steps (a lane start at the previous point).
    let mut clean: Vec<RoutePoint> = Vec::with_capacity(pts.len());
    for rp in pts {
        if let Some(last) = clean.last_mut() {
            if dist(last.p, rp.p) < 1e-6 {
                if last.mark == Mark::Transit {
                    last.mark = rp.mark;
                }
                continue;
            }
        }
        clean.push(rp);
    }
    if clean.len() < 2 {
        return Err(PlanError::NothingToPlan);
    }

    let alt = cam.altitude_m;
    let fl = Flight {
        speed_mps: speed,
        turn_cost_s: v.turn_cost_s,
        takeoff_s: alt / v.climb_rate_mps,
        landing_s: alt / v.descent_rate_mps,
        battery,
    };
    let dwell = |i: usize| req.points_of_interest[i].dwell_s;
    let name = |i: usize| req.points_of_interest[i].name.clone();
    let mut paths = route::split(&air, &clean, &fl, &dwell, &name, opts.resume_overlap_m)?;
    // Sorties holding high-priority points fly first (stable).
    let prio = |s: &route::SortiePath| {
        s.pois
            .iter()
            .map(|&i| req.points_of_interest[i].priority)
            .max()
            .unwrap_or(0)
    };
    paths.sort_by_key(|s| std::cmp::Reverse(prio(s)));

    // Fence and rally.
    let fence = Fence {
        inclusion: air.fence_emit.iter().map(|q| air.to_latlon(*q)).collect(),
        exclusion_polygons: air
            .exclusion_shapes()
            .into_iter()
            .filter_map(|(n, s)| match s {
                LocalShape::Polygon(r) => {
                    Some((n, r[0].iter().map(|q| air.to_latlon(*q)).collect()))
                }
                _ => None,
            })
            .collect(),
        exclusion_circles: air
            .exclusion_shapes()
            .into_iter()
            .filter_map(|(n, s)| match s {
                LocalShape::Circle(c, r) => Some((n, air.to_latlon(c), r)),
                _ => None,
            })
            .collect(),
    };
    let fence_items = mission::fence_items(
        &fence.inclusion,
        &fence
            .exclusion_polygons
            .iter()
            .map(|x| x.1.clone())
            .collect::<Vec<_>>(),
        &fence
            .exclusion_circles
            .iter()
            .map(|x| (x.1, x.2))
            .collect::<Vec<_>>(),
    );
    let rally = rally_points(&air, &clean, &req.rally_points, opts.rally_points);
    let rally_items = mission::rally_items(v.autopilot, &rally, alt, v.home_alt_amsl_m);

    let style = MissionStyle {
        autopilot: v.autopilot,
        home: air.home,
        home_alt_amsl_m: v.home_alt_amsl_m,
        alt_rel_m: alt,
        speed_mps: speed,
        gimbal_pitch_deg: req.camera.gimbal_pitch_deg,
        trigger_distance_m: req.camera.trigger_photos.then_some(cam.trigger_distance_m),
    };
    let mut sorties = Vec::new();
    for sp in &paths {
        let steps = steps_of(&air, &sp.points, req, opts.poi_orbit_radius_m);
        let items = mission::sortie_mission(&style, &steps);
        sorties.push(Sortie {
            mission: mission::mission_set(items, fence_items.clone(), rally_items.clone()),
            route: sp.points.iter().map(|r| air.to_latlon(r.p)).collect(),
            route_local: sp.points.clone(),
            steps,
            points_of_interest: sp.pois.clone(),
            length_m: sp.length_m,
            time_s: sp.time_s,
            battery_used: battery.display(sp.energy),
        });
    }
    let lanes: Vec<(P, P)> = paths
        .iter()
        .flat_map(|s| crate::verify::lanes_of(&s.points))
        .collect();
    let coverage_percent = if air.coverable.is_empty() {
        100.0
    } else {
        100.0 * crate::verify::covered_fraction(&air, &lanes, &cam, 200_000)
    };
    let summary = Summary {
        length_m: sorties.iter().map(|s| s.length_m).sum(),
        time_s: sorties.iter().map(|s| s.time_s).sum(),
        sorties: sorties.len(),
        coverage_percent,
        area_m2: air.area_m2,
        coverable_area_m2: air.coverable.area(),
        altitude_m: alt,
        lane_spacing_m: cam.lane_spacing_m,
        footprint_width_m: cam.footprint_width_m,
        gsd_cm_per_px: cam.gsd_cm_per_px,
        sweep_heading_deg: cov.heading_deg,
        points_of_interest: req.points_of_interest.len(),
        cells: cov.cells.len(),
        unreachable_cells,
        home: air.home,
        home_inferred: air.home_inferred,
        battery_unit: battery.unit.to_string(),
        battery_usable: battery.display(battery.usable),
        max_battery_fraction: paths
            .iter()
            .map(|s| s.energy / battery.usable)
            .fold(0.0, f64::max),
    };
    Ok(Plan {
        sorties,
        fence,
        rally,
        summary,
        airspace: air,
        camera: cam,
        coverage: cov,
        autopilot: v.autopilot,
        battery,
        style,
    })
}

#[derive(Debug, Clone, Copy)]
enum NodeKind {
    Home,
    Poi(usize),
    Cell(usize),
}

fn steps_of(air: &Airspace, pts: &[RoutePoint], req: &PlanRequest, orbit_r: f64) -> Vec<Step> {
    // Skip the take-off and landing point (home) itself.
    let inner = &pts[1..pts.len().saturating_sub(1)];
    inner
        .iter()
        .map(|r| {
            let q = air.to_latlon(r.p);
            match r.mark {
                Mark::Transit => Step::Transit(q),
                Mark::LaneStart => Step::LaneStart(q),
                Mark::LaneEnd => Step::LaneEnd(q),
                Mark::Poi(i) => Step::Poi {
                    at: q,
                    dwell_s: req.points_of_interest[i].dwell_s,
                    orbit_radius_m: if req.points_of_interest[i].dwell_s > 0.0 {
                        orbit_r
                    } else {
                        0.0
                    },
                },
            }
        })
        .collect()
}

/// Home, the operator's rally points, and `extra` route points spread out
/// (farthest-point sampling), all in the free space.
fn rally_points(
    air: &Airspace,
    route: &[RoutePoint],
    given: &[LatLon],
    extra: usize,
) -> Vec<LatLon> {
    let mut chosen: Vec<P> = vec![air.home_local];
    chosen.extend(given.iter().map(|q| air.to_local(*q)));
    for _ in 0..extra {
        let best = route
            .iter()
            .map(|r| r.p)
            .map(|q| {
                (
                    chosen
                        .iter()
                        .map(|c| dist(*c, q))
                        .fold(f64::INFINITY, f64::min),
                    q,
                )
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((d, q)) if d > 50.0 => chosen.push(q),
            _ => break,
        }
    }
    chosen.iter().map(|q| air.to_latlon(*q)).collect()
}

impl Plan {
    /// Check that a position is safe to send the drone to.
    pub fn check_point(&self, q: LatLon) -> Result<(), PlanError> {
        self.airspace.check_point("point", q)
    }
}

/// Check a point against a request without planning a route (builds the
/// airspace).
pub fn check_point(req: &PlanRequest, q: LatLon) -> Result<(), PlanError> {
    let cam = req.camera.geometry()?;
    let air = Airspace::new(req, cam.lane_spacing_m)?;
    air.check_point("point", q)
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "route      {:.2} km, {:.1} min in {} sortie(s)",
            self.length_m / 1000.0,
            self.time_s / 60.0,
            self.sorties
        )?;
        writeln!(
            f,
            "coverage   {:.1} % of {:.3} km² coverable ({:.3} km² of area)",
            self.coverage_percent,
            self.coverable_area_m2 / 1e6,
            self.area_m2 / 1e6
        )?;
        write!(
            f,
            "camera     {:.0} m altitude, footprint {:.0} m wide, lanes {:.0} m apart at {:.1}°",
            self.altitude_m, self.footprint_width_m, self.lane_spacing_m, self.sweep_heading_deg
        )?;
        if let Some(g) = self.gsd_cm_per_px {
            write!(f, ", GSD {g:.2} cm/px")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "battery    at most {:.0} % of {:.1} {} usable per sortie",
            self.max_battery_fraction * 100.0,
            self.battery_usable,
            self.battery_unit
        )?;
        write!(
            f,
            "home       {:.6}, {:.6}{}",
            self.home.lat_deg,
            self.home.lon_deg,
            if self.home_inferred {
                " (not given: first point of interest or area vertex)"
            } else {
                ""
            }
        )?;
        if self.unreachable_cells > 0 {
            write!(
                f,
                "\nwarning    {} part(s) of the area cannot be reached from home without crossing a no-fly zone and are not covered",
                self.unreachable_cells
            )?;
        }
        Ok(())
    }
}
