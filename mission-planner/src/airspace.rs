//! Where the drone may fly: the local frame, the validated area(s), the
//! buffered no-fly zones, the fence, the free space (fence minus buffered
//! zones) with its visibility graph for shortest paths, and the point
//! checks the companion uses to refuse unsafe commands.
//!
//! Layers, from strict to loose (each contains the one before):
//! * the **free space** the route stays in: the planner fence minus every
//!   zone grown by `buffer_m + clearance_m`;
//! * the **planner fence**: the areas' outlines grown by the fence margin
//!   (plus a corridor to home if it is outside), cut to the maximum distance
//!   from home;
//! * the **emitted inclusion fence**: the planner fence grown by
//!   `fence_slack_m`, one simple polygon, so GPS noise does not trip it.
//!
//! Exclusion fences are emitted at the zone grown by a fraction of its
//! buffer, so a route skimming the buffered zone never touches them.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use geo::MultiPolygon;
use tiancha_geometry::geodesy::{LatLon, LocalFrame};

use crate::error::{PlanError, Where};
use crate::geom::{self, dist, p, Region, P};
use crate::request::{PlanRequest, ZoneShape};

/// A no-fly zone in the local plane.
#[derive(Debug, Clone)]
pub struct Zone {
    pub name: String,
    pub buffer_m: f64,
    pub shape: LocalShape,
    /// The zone grown by `buffer_m + clearance_m` (outer approximation):
    /// what the route avoids.
    pub planning: MultiPolygon<f64>,
}

/// A zone's own geometry, before buffering.
#[derive(Debug, Clone)]
pub enum LocalShape {
    /// Exterior ring then holes.
    Polygon(Vec<Vec<P>>),
    Circle(P, f64),
}

impl LocalShape {
    /// Distance from `q` to the zone (0 inside).
    pub fn distance(&self, q: P) -> f64 {
        match self {
            LocalShape::Circle(c, r) => (dist(q, *c) - r).max(0.0),
            LocalShape::Polygon(rings) => {
                if geom::point_in_rings(q, rings) {
                    return 0.0;
                }
                rings
                    .iter()
                    .flat_map(|r| (0..r.len()).map(move |i| (r[i], r[(i + 1) % r.len()])))
                    .map(|(a, b)| geom::dist_point_segment(q, a, b))
                    .fold(f64::INFINITY, f64::min)
            }
        }
    }

    /// Distance from the segment `a`–`b` to the zone (0 if it touches).
    pub fn segment_distance(&self, a: P, b: P) -> f64 {
        match self {
            LocalShape::Circle(c, r) => (geom::dist_point_segment(*c, a, b) - r).max(0.0),
            LocalShape::Polygon(rings) => {
                if geom::point_in_rings(a, rings) || geom::point_in_rings(b, rings) {
                    return 0.0;
                }
                rings
                    .iter()
                    .flat_map(|r| (0..r.len()).map(move |i| (r[i], r[(i + 1) % r.len()])))
                    .map(|(c, d)| geom::dist_segment_segment(a, b, c, d))
                    .fold(f64::INFINITY, f64::min)
            }
        }
    }
}

/// An area in the local plane.
#[derive(Debug, Clone)]
pub struct LocalArea {
    pub name: String,
    /// Exterior ring then holes.
    pub rings: Vec<Vec<P>>,
}

/// Visibility graph over the reflex corners of the free space.
#[derive(Debug, Clone, Default)]
struct VisGraph {
    verts: Vec<P>,
    /// Ring neighbours of each corner (for the tangent test).
    nbr: Vec<(P, P)>,
    adj: Vec<Vec<(u32, f64)>>,
}

impl VisGraph {
    /// A shortest path only turns at corner `i` if the line to `other`
    /// keeps both of the corner's neighbours on one side (it grazes the
    /// obstacle); other segments through the corner are never needed.
    fn tangent(&self, i: usize, other: P) -> bool {
        let v = self.verts[i];
        let (a, b) = self.nbr[i];
        let scale = dist(v, other).max(1e-9);
        let c1 = geom::cross(v, other, a) / scale;
        let c2 = geom::cross(v, other, b) / scale;
        !((c1 > 1e-9 && c2 < -1e-9) || (c1 < -1e-9 && c2 > 1e-9))
    }
}

/// The airspace of one plan. Built once per request; re-plans and point
/// checks reuse it.
#[derive(Debug, Clone)]
pub struct Airspace {
    pub frame: LocalFrame,
    pub home: LatLon,
    pub home_local: P,
    /// True when home was not given and was inferred.
    pub home_inferred: bool,
    pub areas: Vec<LocalArea>,
    pub zones: Vec<Zone>,
    /// Where the route may go, ignoring zones.
    pub fence: Region,
    /// The inclusion fence to emit (one ring, local).
    pub fence_emit: Vec<P>,
    /// Fence minus buffered zones.
    pub free: Region,
    /// Areas minus buffered zones, within the fence.
    pub coverable: Region,
    /// Area of the union of the areas, m².
    pub area_m2: f64,
    pub clearance_m: f64,
    pub exclusion_fraction: f64,
    graph: VisGraph,
}

#[derive(Copy, Clone, PartialEq)]
struct HeapItem(f64, u32);
impl Eq for HeapItem {}
impl Ord for HeapItem {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0).then(self.1.cmp(&o.1))
    }
}
impl PartialOrd for HeapItem {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Validate a ring of lat/lon points and convert it to the local plane.
/// Drops a repeated closing point and consecutive duplicates (keeping the
/// original indices for messages).
fn local_ring(frame: &LocalFrame, what: &str, ring: &[LatLon]) -> Result<Vec<P>, PlanError> {
    for (i, q) in ring.iter().enumerate() {
        if !q.is_valid() {
            return Err(PlanError::InvalidCoordinate {
                what: what.to_string(),
                index: i,
                lat: q.lat_deg,
                lon: q.lon_deg,
            });
        }
    }
    let mut idx: Vec<usize> = Vec::with_capacity(ring.len());
    for i in 0..ring.len() {
        if let Some(&j) = idx.last() {
            if ring[j] == ring[i] {
                continue;
            }
        }
        idx.push(i);
    }
    while idx.len() > 1 && ring[idx[0]] == ring[*idx.last().unwrap()] {
        idx.pop();
    }
    if idx.len() < 3 {
        return Err(PlanError::TooFewPoints {
            what: what.to_string(),
            points: idx.len(),
        });
    }
    let pts: Vec<P> = idx
        .iter()
        .map(|&i| {
            let (e, n) = frame.to_en(ring[i]);
            p(e, n)
        })
        .collect();
    if pts
        .iter()
        .any(|q| q.x.abs() > 200_000.0 || q.y.abs() > 200_000.0)
    {
        return Err(PlanError::param(
            what,
            "lies more than 200 km from home; plan areas near the launch point",
        ));
    }
    if let Some((a, b, q)) = geom::ring_self_intersection(&pts) {
        let n = idx.len();
        let ll = frame.from_en(q.x, q.y);
        return Err(PlanError::SelfIntersection {
            what: what.to_string(),
            a0: idx[a],
            a1: idx[(a + 1) % n],
            b0: idx[b],
            b1: idx[(b + 1) % n],
            at: ll.into(),
        });
    }
    if geom::ring_area(&pts).abs() < 1.0 {
        return Err(PlanError::param(
            what,
            "encloses no area (are all its points on a line?)",
        ));
    }
    Ok(pts)
}

fn local_polygon(
    frame: &LocalFrame,
    what: &str,
    poly: &crate::request::GeoPolygon,
) -> Result<Vec<Vec<P>>, PlanError> {
    let ext = local_ring(frame, what, &poly.exterior)?;
    let mut rings = vec![ext];
    for (i, h) in poly.holes.iter().enumerate() {
        let hr = local_ring(frame, &format!("{what} hole {i}"), h)?;
        if let Some(q) = hr.iter().find(|q| !geom::point_in_rings(**q, &rings[..1])) {
            return Err(PlanError::HoleOutside {
                what: what.to_string(),
                hole: i,
                at: frame.from_en(q.x, q.y).into(),
            });
        }
        rings.push(hr);
    }
    Ok(rings)
}

fn mp_of(rings: &[Vec<P>]) -> MultiPolygon<f64> {
    MultiPolygon(vec![geom::polygon(&rings[0], &rings[1..])])
}

/// Keep only exteriors (fill holes).
fn fill_holes(mp: &MultiPolygon<f64>) -> MultiPolygon<f64> {
    MultiPolygon(
        mp.0.iter()
            .map(|poly| geo::Polygon::new(poly.exterior().clone(), vec![]))
            .collect(),
    )
}

impl Airspace {
    /// Build the airspace of a request. `lane_spacing_m` widens the fence
    /// margin to at least half a lane (lanes may reach that far outside
    /// the area's edge).
    pub fn new(req: &PlanRequest, lane_spacing_m: f64) -> Result<Self, PlanError> {
        let opts = &req.options;
        opts.validate()?;
        let (home, home_inferred) = match req.vehicle.home {
            Some(h) => (h, false),
            None => match (req.points_of_interest.first(), req.areas.first()) {
                (Some(poi), _) => (poi.position, true),
                (None, Some(a)) if !a.polygon.exterior.is_empty() => (a.polygon.exterior[0], true),
                _ => return Err(PlanError::NoHome),
            },
        };
        if !home.is_valid() {
            return Err(PlanError::InvalidCoordinate {
                what: "home".into(),
                index: 0,
                lat: home.lat_deg,
                lon: home.lon_deg,
            });
        }
        let frame = LocalFrame::at(home);
        let home_local = p(0.0, 0.0);

        // Areas.
        let mut areas = Vec::new();
        for (i, a) in req.areas.iter().enumerate() {
            let what = if a.name.is_empty() {
                format!("area polygon {i}")
            } else {
                format!("area polygon {i} ('{}')", a.name)
            };
            areas.push(LocalArea {
                name: if a.name.is_empty() {
                    format!("{i}")
                } else {
                    a.name.clone()
                },
                rings: local_polygon(&frame, &what, &a.polygon)?,
            });
        }

        // Zones.
        let mut zones = Vec::new();
        for (i, z) in req.no_fly_zones.iter().enumerate() {
            let what = format!("no-fly zone {i} ('{}')", z.name);
            if !z.buffer_m.is_finite() || !(0.0..=10_000.0).contains(&z.buffer_m) {
                return Err(PlanError::param(
                    format!("{what}.buffer_m"),
                    format!("must be between 0 and 10000 m, got {}", z.buffer_m),
                ));
            }
            let grow = z.buffer_m + opts.clearance_m;
            let (shape, planning) = match &z.shape {
                ZoneShape::Polygon { polygon } => {
                    let rings = local_polygon(&frame, &what, polygon)?;
                    let planning = geom::buffer_outer(&mp_of(&rings), grow);
                    (LocalShape::Polygon(rings), planning)
                }
                ZoneShape::Circle { center, radius_m } => {
                    if !center.is_valid() {
                        return Err(PlanError::InvalidCoordinate {
                            what,
                            index: 0,
                            lat: center.lat_deg,
                            lon: center.lon_deg,
                        });
                    }
                    if !radius_m.is_finite() || *radius_m <= 0.0 || *radius_m > 100_000.0 {
                        return Err(PlanError::param(
                            format!("{what}.radius_m"),
                            format!("must be between 0 and 100 km, got {radius_m}"),
                        ));
                    }
                    let (e, n) = frame.to_en(*center);
                    let c = p(e, n);
                    let poly = geom::circle_polygon(c, radius_m + grow, 16, true);
                    (
                        LocalShape::Circle(c, *radius_m),
                        MultiPolygon(vec![geom::polygon(&poly, &[])]),
                    )
                }
            };
            zones.push(Zone {
                name: z.name.clone(),
                buffer_m: z.buffer_m,
                shape,
                planning,
            });
        }

        let margin = opts.fence_margin_m.max(lane_spacing_m / 2.0 + 1.0) + opts.turnaround_m;
        const FENCE_STEP: f64 = std::f64::consts::PI / 6.0;

        // The union of the areas, and of their outlines.
        let mut area_mp = MultiPolygon::<f64>(vec![]);
        let mut outline = MultiPolygon::<f64>(vec![]);
        for a in &areas {
            area_mp = geom::union(&area_mp, &mp_of(&a.rings));
            outline = geom::union(&outline, &mp_of(&a.rings[..1]));
        }
        let area_m2 = Region::from_multipolygon(&area_mp).area();

        // Planner fence: outlines grown by the margin, joined by corridors
        // (to home and between separate areas), holes filled.
        let home_disk = MultiPolygon(vec![geom::polygon(
            &geom::circle_polygon(home_local, margin.max(20.0), 12, false),
            &[],
        )]);
        let mut fence_mp = if areas.is_empty() {
            MultiPolygon(vec![])
        } else {
            fill_holes(&geom::buffer_inner(&outline, margin, FENCE_STEP))
        };
        fence_mp = geom::union(&fence_mp, &home_disk);
        // Points of interest outside the areas get their own small disk.
        let mut poi_pts = Vec::new();
        for (i, poi) in req.points_of_interest.iter().enumerate() {
            if !poi.position.is_valid() {
                return Err(PlanError::InvalidCoordinate {
                    what: format!("point of interest {i} ('{}')", poi.name),
                    index: 0,
                    lat: poi.position.lat_deg,
                    lon: poi.position.lon_deg,
                });
            }
            let (e, n) = frame.to_en(poi.position);
            let q = p(e, n);
            poi_pts.push(q);
            let r = margin.max(opts.poi_orbit_radius_m + margin);
            let disk = MultiPolygon(vec![geom::polygon(
                &geom::circle_polygon(q, r, 12, false),
                &[],
            )]);
            fence_mp = geom::union(&fence_mp, &disk);
        }
        fence_mp = connect_components(fence_mp, margin.max(20.0));
        fence_mp = fill_holes(&fence_mp);
        if let Some(maxd) = req.vehicle.max_distance_from_home_m {
            let disk = MultiPolygon(vec![geom::polygon(
                &geom::circle_polygon(home_local, maxd, 90, false),
                &[],
            )]);
            fence_mp = geom::intersection(&fence_mp, &disk);
        }
        // Keep the part that contains home.
        fence_mp = MultiPolygon(
            fence_mp
                .0
                .into_iter()
                .filter(|poly| {
                    let r = Region::from_multipolygon(&MultiPolygon(vec![poly.clone()]));
                    r.contains(home_local)
                })
                .collect(),
        );
        if fence_mp.0.is_empty() {
            return Err(PlanError::OutsideFence {
                what: "home".into(),
                at: home.into(),
                reason: "home is not inside the fence".into(),
            });
        }
        let fence = Region::from_multipolygon(&fence_mp);

        // The emitted fence: grown by the slack, one ring.
        let emit_mp = fill_holes(&geom::buffer_inner(
            &fence_mp,
            opts.fence_slack_m,
            FENCE_STEP,
        ));
        let fence_emit = emit_mp
            .0
            .iter()
            .map(|poly| geom::open_ring(poly.exterior()))
            .find(|r| geom::point_in_rings(home_local, std::slice::from_ref(r)))
            .unwrap_or_else(|| fence.rings[0].clone());

        // Free space and coverable area.
        let mut zones_mp = MultiPolygon::<f64>(vec![]);
        for z in &zones {
            zones_mp = geom::union(&zones_mp, &z.planning);
        }
        let free_mp = geom::difference(&fence_mp, &zones_mp);
        let free = Region::from_multipolygon(&free_mp);
        let cov_mp = geom::difference(&geom::intersection(&area_mp, &fence_mp), &zones_mp);
        let coverable = Region::from_multipolygon(&cov_mp);

        let mut me = Airspace {
            frame,
            home,
            home_local,
            home_inferred,
            areas,
            zones,
            fence,
            fence_emit,
            free,
            coverable,
            area_m2,
            clearance_m: opts.clearance_m,
            exclusion_fraction: opts.exclusion_fence_buffer_fraction,
            graph: VisGraph::default(),
        };

        // Home itself must be usable.
        me.check_local("home", home_local)?;
        // Every area must keep something to cover.
        for a in &me.areas {
            let amp = mp_of(&a.rings);
            let left = Region::from_multipolygon(&geom::intersection(&amp, &cov_mp)).area();
            let total = Region::from_multipolygon(&amp).area();
            if left < 0.001 * total {
                let zone = me
                    .zones
                    .iter()
                    .find(|z| {
                        Region::from_multipolygon(&geom::difference(&amp, &z.planning)).area()
                            < 0.001 * total
                    })
                    .map(|z| {
                        format!(
                            "it lies inside no-fly zone '{}' (buffer {} m)",
                            z.name, z.buffer_m
                        )
                    })
                    .unwrap_or_else(|| {
                        if req.vehicle.max_distance_from_home_m.is_some() {
                            "it lies beyond the maximum distance from home or inside no-fly zones"
                                .into()
                        } else {
                            "it lies inside no-fly zones".into()
                        }
                    });
                let c = a.rings[0][0];
                return Err(PlanError::AreaNotCoverable {
                    area: format!(
                        "'{}' (near {})",
                        a.name,
                        Where::from(me.frame.from_en(c.x, c.y))
                    ),
                    reason: zone,
                });
            }
        }
        me.graph = build_graph(&me.free);
        Ok(me)
    }

    pub fn to_local(&self, q: LatLon) -> P {
        let (e, n) = self.frame.to_en(q);
        p(e, n)
    }

    pub fn to_latlon(&self, q: P) -> LatLon {
        self.frame.from_en(q.x, q.y)
    }

    /// Is this position safe to fly to (inside the fence, outside every
    /// buffered no-fly zone)? The error names the zone or says how far
    /// outside the fence it is.
    pub fn check_point(&self, what: &str, q: LatLon) -> Result<(), PlanError> {
        if !q.is_valid() {
            return Err(PlanError::InvalidCoordinate {
                what: what.into(),
                index: 0,
                lat: q.lat_deg,
                lon: q.lon_deg,
            });
        }
        self.check_local(what, self.to_local(q))
    }

    pub(crate) fn check_local(&self, what: &str, q: P) -> Result<(), PlanError> {
        if self.free.contains_closed(q, 1e-6) {
            return Ok(());
        }
        let at: Where = self.to_latlon(q).into();
        if let Some(z) = self
            .zones
            .iter()
            .filter(|z| z.shape.distance(q) < z.buffer_m + self.clearance_m + 1e-6)
            .min_by(|a, b| a.shape.distance(q).total_cmp(&b.shape.distance(q)))
        {
            return Err(PlanError::InsideNoFlyZone {
                what: what.into(),
                zone: z.name.clone(),
                buffer_m: z.buffer_m,
                at,
            });
        }
        if !self.fence.contains_closed(q, 1e-6) {
            let out = self.fence.boundary_distance(q);
            return Err(PlanError::OutsideFence {
                what: what.into(),
                at,
                reason: format!("{out:.0} m beyond the fence (the areas grown by the fence margin, within the maximum distance from home)"),
            });
        }
        // Inside the outer approximation of a zone's buffer only.
        let z = self
            .zones
            .iter()
            .min_by(|a, b| a.shape.distance(q).total_cmp(&b.shape.distance(q)));
        Err(PlanError::InsideNoFlyZone {
            what: what.into(),
            zone: z.map(|z| z.name.clone()).unwrap_or_default(),
            buffer_m: z.map(|z| z.buffer_m).unwrap_or(0.0),
            at,
        })
    }

    /// Check an orbit of radius `r` around `c` (local): the whole circle
    /// must be in the free space.
    pub(crate) fn check_circle(&self, what: &str, c: P, r: f64) -> Result<(), PlanError> {
        self.check_local(what, c)?;
        let ring = geom::circle_polygon(c, r, 24, true);
        for i in 0..ring.len() {
            let (a, b) = (ring[i], ring[(i + 1) % ring.len()]);
            if !self.free.segment_inside(a, b) {
                let at: Where = self.to_latlon(a).into();
                if let Some(z) = self
                    .zones
                    .iter()
                    .min_by(|x, y| {
                        x.shape
                            .segment_distance(a, b)
                            .total_cmp(&y.shape.segment_distance(a, b))
                    })
                    .filter(|z| {
                        z.shape.segment_distance(a, b) < z.buffer_m + self.clearance_m + 1.0
                    })
                {
                    return Err(PlanError::InsideNoFlyZone {
                        what: format!("{what} (orbit radius {r:.0} m)"),
                        zone: z.name.clone(),
                        buffer_m: z.buffer_m,
                        at,
                    });
                }
                return Err(PlanError::OutsideFence {
                    what: format!("{what} (orbit radius {r:.0} m)"),
                    at,
                    reason: "the orbit leaves the fence".into(),
                });
            }
        }
        Ok(())
    }

    /// Shortest path from `a` to `b` in the free space (both must be in
    /// it), as a polyline from `a` to `b`.
    pub fn shortest_path(&self, a: P, b: P) -> Option<Vec<P>> {
        if self.free.segment_inside(a, b) {
            return Some(vec![a, b]);
        }
        let g = &self.graph;
        let n = g.verts.len();
        let vis_b: Vec<(usize, f64)> = (0..n)
            .filter(|&i| g.tangent(i, b) && self.free.segment_inside(g.verts[i], b))
            .map(|i| (i, dist(g.verts[i], b)))
            .collect();
        if vis_b.is_empty() {
            return None;
        }
        let mut to_b = vec![f64::INFINITY; n];
        for &(i, d) in &vis_b {
            to_b[i] = d;
        }
        // A* from a; node n = b.
        let mut best = vec![f64::INFINITY; n + 1];
        let mut prev = vec![u32::MAX; n + 1];
        let mut heap = BinaryHeap::new();
        for i in 0..n {
            if g.tangent(i, a) && self.free.segment_inside(a, g.verts[i]) {
                let d = dist(a, g.verts[i]);
                best[i] = d;
                prev[i] = u32::MAX - 1; // from a
                heap.push(HeapItem(d + dist(g.verts[i], b), i as u32));
            }
        }
        while let Some(HeapItem(_, u)) = heap.pop() {
            let u = u as usize;
            if u == n {
                break;
            }
            let du = best[u];
            if to_b[u].is_finite() && du + to_b[u] < best[n] {
                best[n] = du + to_b[u];
                prev[n] = u as u32;
                heap.push(HeapItem(best[n], n as u32));
            }
            for &(v, w) in &g.adj[u] {
                let v = v as usize;
                let nd = du + w;
                if nd < best[v] {
                    best[v] = nd;
                    prev[v] = u as u32;
                    heap.push(HeapItem(nd + dist(g.verts[v], b), v as u32));
                }
            }
        }
        if !best[n].is_finite() {
            return None;
        }
        let mut path = vec![b];
        let mut cur = prev[n];
        while cur != u32::MAX - 1 {
            path.push(g.verts[cur as usize]);
            cur = prev[cur as usize];
        }
        path.push(a);
        path.reverse();
        Some(path)
    }

    /// Length of the shortest path (infinite if none).
    pub fn path_length(&self, a: P, b: P) -> f64 {
        self.shortest_path(a, b)
            .map(|pth| pth.windows(2).map(|w| dist(w[0], w[1])).sum())
            .unwrap_or(f64::INFINITY)
    }

    /// Shortest-path distances between all pairs of `ports` (infinite when
    /// unreachable). One Dijkstra per port over the visibility graph.
    pub fn distance_matrix(&self, ports: &[P]) -> Vec<Vec<f64>> {
        let g = &self.graph;
        let n = g.verts.len();
        let k = ports.len();
        let vis: Vec<Vec<(usize, f64)>> = ports
            .iter()
            .map(|&q| {
                (0..n)
                    .filter(|&i| g.tangent(i, q) && self.free.segment_inside(q, g.verts[i]))
                    .map(|i| (i, dist(q, g.verts[i])))
                    .collect()
            })
            .collect();
        let mut out = vec![vec![f64::INFINITY; k]; k];
        // Direct visibility first.
        let mut direct = vec![vec![false; k]; k];
        for i in 0..k {
            out[i][i] = 0.0;
            for j in i + 1..k {
                if self.free.segment_inside(ports[i], ports[j]) {
                    let d = dist(ports[i], ports[j]);
                    out[i][j] = d;
                    out[j][i] = d;
                    direct[i][j] = true;
                    direct[j][i] = true;
                }
            }
        }
        if n == 0 {
            return out;
        }
        for i in 0..k {
            if (0..k).all(|j| direct[i][j] || i == j) {
                continue;
            }
            // Dijkstra from port i over the graph.
            let mut best = vec![f64::INFINITY; n];
            let mut heap = BinaryHeap::new();
            for &(v, d) in &vis[i] {
                best[v] = d;
                heap.push(HeapItem(d, v as u32));
            }
            while let Some(HeapItem(d, u)) = heap.pop() {
                let u = u as usize;
                if d > best[u] {
                    continue;
                }
                for &(v, w) in &g.adj[u] {
                    let v = v as usize;
                    if d + w < best[v] {
                        best[v] = d + w;
                        heap.push(HeapItem(d + w, v as u32));
                    }
                }
            }
            for j in 0..k {
                if direct[i][j] || i == j {
                    continue;
                }
                let d = vis[j]
                    .iter()
                    .map(|&(v, dv)| best[v] + dv)
                    .fold(f64::INFINITY, f64::min);
                out[i][j] = out[i][j].min(d);
                out[j][i] = out[j][i].min(d);
            }
        }
        out
    }

    /// Emitted exclusion geometry of each zone (local): polygons grown by
    /// a fraction of the buffer, circles with the grown radius.
    pub fn exclusion_shapes(&self) -> Vec<(String, LocalShape)> {
        self.zones
            .iter()
            .map(|z| {
                let g = z.buffer_m * self.exclusion_fraction;
                let shape = match &z.shape {
                    LocalShape::Circle(c, r) => LocalShape::Circle(*c, r + g),
                    LocalShape::Polygon(rings) => {
                        let mp =
                            geom::buffer_inner(&mp_of(&rings[..1]), g, std::f64::consts::PI / 6.0);
                        let ring =
                            mp.0.iter()
                                .max_by(|a, b| {
                                    geom::ring_area(&geom::open_ring(a.exterior()))
                                        .abs()
                                        .total_cmp(
                                            &geom::ring_area(&geom::open_ring(b.exterior())).abs(),
                                        )
                                })
                                .map(|poly| geom::open_ring(poly.exterior()))
                                .unwrap_or_else(|| rings[0].clone());
                        LocalShape::Polygon(vec![ring])
                    }
                };
                (z.name.clone(), shape)
            })
            .collect()
    }

    /// Number of visibility-graph corners (for benchmarks and docs).
    pub fn graph_size(&self) -> (usize, usize) {
        (
            self.graph.verts.len(),
            self.graph.adj.iter().map(|a| a.len()).sum::<usize>() / 2,
        )
    }
}

/// Join the separate parts of a fence by corridors between their nearest
/// vertices (a spanning tree), so one inclusion polygon holds them all.
fn connect_components(mp: MultiPolygon<f64>, half_width: f64) -> MultiPolygon<f64> {
    let mut cur = mp;
    for _ in 0..64 {
        if cur.0.len() <= 1 {
            return cur;
        }
        let rings: Vec<Vec<P>> = cur
            .0
            .iter()
            .map(|poly| geom::open_ring(poly.exterior()))
            .collect();
        // Nearest pair of vertices between component 0 and any other.
        let mut best = (f64::INFINITY, p(0.0, 0.0), p(0.0, 0.0));
        for other in &rings[1..] {
            for &a in &rings[0] {
                for &b in other {
                    let d = dist(a, b);
                    if d < best.0 {
                        best = (d, a, b);
                    }
                }
            }
        }
        let (a, b) = (best.1, best.2);
        let len = dist(a, b).max(1e-9);
        let (ux, uy) = ((b.x - a.x) / len, (b.y - a.y) / len);
        let (nx, ny) = (-uy * half_width, ux * half_width);
        // Extend into both components so the union overlaps.
        let a2 = p(a.x - ux * half_width, a.y - uy * half_width);
        let b2 = p(b.x + ux * half_width, b.y + uy * half_width);
        let corridor = vec![
            p(a2.x + nx, a2.y + ny),
            p(a2.x - nx, a2.y - ny),
            p(b2.x - nx, b2.y - ny),
            p(b2.x + nx, b2.y + ny),
        ];
        let corridor = if geom::ring_area(&corridor) < 0.0 {
            corridor.into_iter().rev().collect()
        } else {
            corridor
        };
        cur = geom::union(&cur, &MultiPolygon(vec![geom::polygon(&corridor, &[])]));
    }
    cur
}

fn build_graph(free: &Region) -> VisGraph {
    let mut verts = Vec::new();
    let mut nbr = Vec::new();
    for ring in &free.rings {
        let n = ring.len();
        for i in 0..n {
            let a = ring[(i + n - 1) % n];
            let v = ring[i];
            let b = ring[(i + 1) % n];
            let (la, lb) = (dist(a, v), dist(b, v));
            if la < 1e-9 || lb < 1e-9 {
                continue;
            }
            let bis = p(
                (a.x - v.x) / la + (b.x - v.x) / lb,
                (a.y - v.y) / la + (b.y - v.y) / lb,
            );
            let bl = bis.x.hypot(bis.y);
            // A straight vertex is never a shortest-path corner.
            if bl < 1e-9 {
                continue;
            }
            let probe = p(v.x + bis.x / bl * 1e-3, v.y + bis.y / bl * 1e-3);
            // The bisector points into the smaller angle; if that side is
            // outside the free space the corner is reflex for it.
            if !free.contains(probe) {
                verts.push(v);
                nbr.push((a, b));
            }
        }
    }
    let n = verts.len();
    let mut g = VisGraph {
        verts,
        nbr,
        adj: vec![Vec::new(); n],
    };
    for i in 0..n {
        for j in i + 1..n {
            let (vi, vj) = (g.verts[i], g.verts[j]);
            if g.tangent(i, vj) && g.tangent(j, vi) && free.segment_inside(vi, vj) {
                let d = dist(vi, vj);
                g.adj[i].push((j as u32, d));
                g.adj[j].push((i as u32, d));
            }
        }
    }
    g
}
