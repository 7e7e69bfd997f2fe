//! Plane geometry in the local east/north frame (metres): regions made of
//! rings, segment predicates, polygon buffering and boolean operations
//! (through `geo`, which uses `i_overlay`).

use geo::{BooleanOps, Buffer, Coord, LineString, MultiPolygon, Polygon};

/// A point in the local plane: `x` east, `y` north, metres.
pub type P = Coord<f64>;

#[inline]
pub fn p(x: f64, y: f64) -> P {
    Coord { x, y }
}

#[inline]
pub fn dist(a: P, b: P) -> f64 {
    let (dx, dy) = (a.x - b.x, a.y - b.y);
    (dx * dx + dy * dy).sqrt()
}

#[inline]
pub fn cross(o: P, a: P, b: P) -> f64 {
    (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x)
}

/// Distance from `q` to the segment `a`–`b`.
pub fn dist_point_segment(q: P, a: P, b: P) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let l2 = dx * dx + dy * dy;
    if l2 == 0.0 {
        return dist(q, a);
    }
    let t = (((q.x - a.x) * dx + (q.y - a.y) * dy) / l2).clamp(0.0, 1.0);
    dist(q, p(a.x + t * dx, a.y + t * dy))
}

/// Distance between two segments (0 if they intersect).
pub fn dist_segment_segment(a: P, b: P, c: P, d: P) -> f64 {
    if segments_intersect(a, b, c, d) {
        return 0.0;
    }
    dist_point_segment(a, c, d)
        .min(dist_point_segment(b, c, d))
        .min(dist_point_segment(c, a, b))
        .min(dist_point_segment(d, a, b))
}

/// True if the closed segments intersect (touching counts).
pub fn segments_intersect(a: P, b: P, c: P, d: P) -> bool {
    let d1 = cross(c, d, a);
    let d2 = cross(c, d, b);
    let d3 = cross(a, b, c);
    let d4 = cross(a, b, d);
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return true;
    }
    let on = |p: P, q: P, r: P, c: f64| {
        c == 0.0
            && r.x >= p.x.min(q.x)
            && r.x <= p.x.max(q.x)
            && r.y >= p.y.min(q.y)
            && r.y <= p.y.max(q.y)
    };
    on(c, d, a, d1) || on(c, d, b, d2) || on(a, b, c, d3) || on(a, b, d, d4)
}

/// True if the segments cross at a single point interior to both, with a
/// tolerance: touching, collinear overlap and near-misses are not proper.
fn proper_crossing(a: P, b: P, c: P, d: P, eps: f64) -> bool {
    let lab = dist(a, b).max(1e-12);
    let lcd = dist(c, d).max(1e-12);
    // Quick reject: both ends of cd strictly on one side of ab.
    let (c1, c2) = (cross(a, b, c), cross(a, b, d));
    if (c1 > eps * lab && c2 > eps * lab) || (c1 < -eps * lab && c2 < -eps * lab) {
        return false;
    }
    // Signed distances of c, d from line ab and of a, b from line cd.
    let d1 = cross(a, b, c) / lab;
    let d2 = cross(a, b, d) / lab;
    let d3 = cross(c, d, a) / lcd;
    let d4 = cross(c, d, b) / lcd;
    ((d1 > eps && d2 < -eps) || (d1 < -eps && d2 > eps))
        && ((d3 > eps && d4 < -eps) || (d3 < -eps && d4 > eps))
}

/// Intersection point of two segments in general position (if any).
pub fn segment_intersection(a: P, b: P, c: P, d: P) -> Option<P> {
    let r = p(b.x - a.x, b.y - a.y);
    let s = p(d.x - c.x, d.y - c.y);
    let den = r.x * s.y - r.y * s.x;
    if den.abs() < 1e-15 {
        return None;
    }
    let t = ((c.x - a.x) * s.y - (c.y - a.y) * s.x) / den;
    let u = ((c.x - a.x) * r.y - (c.y - a.y) * r.x) / den;
    if (0.0..=1.0).contains(&t) && (0.0..=1.0).contains(&u) {
        Some(p(a.x + t * r.x, a.y + t * r.y))
    } else {
        None
    }
}

/// Even-odd point in rings.
pub fn point_in_rings(q: P, rings: &[Vec<P>]) -> bool {
    let mut inside = false;
    for ring in rings {
        let n = ring.len();
        let mut j = n - 1;
        for i in 0..n {
            let (a, b) = (ring[i], ring[j]);
            if (a.y > q.y) != (b.y > q.y) {
                let x = a.x + (q.y - a.y) * (b.x - a.x) / (b.y - a.y);
                if q.x < x {
                    inside = !inside;
                }
            }
            j = i;
        }
    }
    inside
}

/// Signed area of a ring (positive counter-clockwise).
pub fn ring_area(ring: &[P]) -> f64 {
    let n = ring.len();
    let mut s = 0.0;
    for i in 0..n {
        let (a, b) = (ring[i], ring[(i + 1) % n]);
        s += a.x * b.y - b.x * a.y;
    }
    s / 2.0
}

/// A closed region of the plane bounded by rings (even-odd rule). Used for
/// the free space (fence minus buffered no-fly zones), the fence and the
/// coverable area.
#[derive(Debug, Clone, Default)]
pub struct Region {
    pub rings: Vec<Vec<P>>,
    edges: Vec<(P, P)>,
    min: P,
    max: P,
    grid: Grid,
}

/// A uniform grid over the bounding box listing the edges whose bounding
/// box touches each cell: segment and point queries look only at nearby
/// edges.
#[derive(Debug, Clone, Default)]
struct Grid {
    origin: P,
    cell: f64,
    nx: usize,
    ny: usize,
    cells: Vec<Vec<u32>>,
    n_edges: usize,
}

impl Grid {
    fn new(edges: &[(P, P)], min: P, max: P) -> Grid {
        if edges.is_empty() {
            return Grid::default();
        }
        let w = (max.x - min.x).max(1e-6);
        let h = (max.y - min.y).max(1e-6);
        // About two edges per cell, at most 128 cells a side.
        let target = (edges.len() as f64 / 2.0).max(1.0);
        let cell = ((w * h) / target).sqrt().max(w.max(h) / 128.0).max(1e-3);
        let nx = ((w / cell).ceil() as usize).clamp(1, 128);
        let ny = ((h / cell).ceil() as usize).clamp(1, 128);
        let cell = (w / nx as f64).max(h / ny as f64);
        let mut g = Grid {
            origin: min,
            cell,
            nx,
            ny,
            cells: vec![Vec::new(); nx * ny],
            n_edges: edges.len(),
        };
        for (k, &(a, b)) in edges.iter().enumerate() {
            let (i0, j0) = g.idx(p(a.x.min(b.x) - 1e-7, a.y.min(b.y) - 1e-7));
            let (i1, j1) = g.idx(p(a.x.max(b.x) + 1e-7, a.y.max(b.y) + 1e-7));
            for j in j0..=j1 {
                for i in i0..=i1 {
                    g.cells[j * nx + i].push(k as u32);
                }
            }
        }
        g
    }

    fn idx(&self, q: P) -> (usize, usize) {
        let i = ((q.x - self.origin.x) / self.cell).floor();
        let j = ((q.y - self.origin.y) / self.cell).floor();
        (
            (i.max(0.0) as usize).min(self.nx - 1),
            (j.max(0.0) as usize).min(self.ny - 1),
        )
    }

    /// Edges near the segment a–b (sorted, unique).
    fn near_segment(&self, a: P, b: P, pad: f64, out: &mut Vec<u32>) {
        out.clear();
        if self.nx == 0 {
            return;
        }
        let mut seen = vec![0u64; self.n_edges.div_ceil(64)];
        let (lo, hi) = (a.x.min(b.x) - pad, a.x.max(b.x) + pad);
        let (i0, _) = self.idx(p(lo, self.origin.y));
        let (i1, _) = self.idx(p(hi, self.origin.y));
        for i in i0..=i1 {
            let cx0 = (self.origin.x + i as f64 * self.cell).max(lo);
            let cx1 = (self.origin.x + (i + 1) as f64 * self.cell).min(hi);
            let y_at = |x: f64| {
                if (b.x - a.x).abs() < 1e-12 {
                    None
                } else {
                    Some(a.y + (x - a.x) * (b.y - a.y) / (b.x - a.x))
                }
            };
            let (ylo, yhi) = match (
                y_at(cx0.clamp(a.x.min(b.x), a.x.max(b.x))),
                y_at(cx1.clamp(a.x.min(b.x), a.x.max(b.x))),
            ) {
                (Some(u), Some(v)) => (u.min(v), u.max(v)),
                _ => (a.y.min(b.y), a.y.max(b.y)),
            };
            let (_, j0) = self.idx(p(self.origin.x, ylo - pad));
            let (_, j1) = self.idx(p(self.origin.x, yhi + pad));
            for j in j0..=j1 {
                for &k in &self.cells[j * self.nx + i] {
                    let (w, bit) = ((k / 64) as usize, 1u64 << (k % 64));
                    if seen[w] & bit == 0 {
                        seen[w] |= bit;
                        out.push(k);
                    }
                }
            }
        }
    }
}

impl Region {
    pub fn from_rings(rings: Vec<Vec<P>>) -> Self {
        let rings: Vec<Vec<P>> = rings.into_iter().filter(|r| r.len() >= 3).collect();
        let mut edges = Vec::new();
        let mut min = p(f64::INFINITY, f64::INFINITY);
        let mut max = p(f64::NEG_INFINITY, f64::NEG_INFINITY);
        for r in &rings {
            for i in 0..r.len() {
                let a = r[i];
                let b = r[(i + 1) % r.len()];
                edges.push((a, b));
                min = p(min.x.min(a.x), min.y.min(a.y));
                max = p(max.x.max(a.x), max.y.max(a.y));
            }
        }
        let grid = Grid::new(&edges, min, max);
        Region {
            rings,
            edges,
            min,
            max,
            grid,
        }
    }

    pub fn from_multipolygon(mp: &MultiPolygon<f64>) -> Self {
        let mut rings = Vec::new();
        for poly in &mp.0 {
            rings.push(open_ring(poly.exterior()));
            for h in poly.interiors() {
                rings.push(open_ring(h));
            }
        }
        Region::from_rings(rings)
    }

    pub fn to_multipolygon(&self) -> MultiPolygon<f64> {
        // Rebuild polygons: each ring with positive area is an exterior
        // (as produced by i_overlay), negative ones are holes placed in the
        // exterior that contains them.
        let mut exteriors: Vec<(Vec<P>, Vec<Vec<P>>)> = Vec::new();
        let mut holes = Vec::new();
        for r in &self.rings {
            if ring_area(r) >= 0.0 {
                exteriors.push((r.clone(), vec![]));
            } else {
                holes.push(r.clone());
            }
        }
        for h in holes {
            let q = h[0];
            if let Some(e) = exteriors
                .iter_mut()
                .filter(|(e, _)| point_in_rings(q, std::slice::from_ref(e)))
                .min_by(|a, b| ring_area(&a.0).total_cmp(&ring_area(&b.0)))
            {
                e.1.push(h);
            }
        }
        MultiPolygon(
            exteriors
                .into_iter()
                .map(|(e, hs)| {
                    Polygon::new(closed_ls(&e), hs.iter().map(|h| closed_ls(h)).collect())
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.rings.is_empty()
    }

    pub fn edges(&self) -> &[(P, P)] {
        &self.edges
    }

    pub fn bbox(&self) -> (P, P) {
        (self.min, self.max)
    }

    /// Area (even-odd; rings from boolean ops do not overlap).
    pub fn area(&self) -> f64 {
        let mut pos = 0.0;
        let mut neg = 0.0;
        for r in &self.rings {
            let a = ring_area(r);
            if a >= 0.0 {
                pos += a;
            } else {
                neg -= a;
            }
        }
        // Orientation-agnostic for a single ring.
        if neg > pos {
            neg - pos
        } else {
            pos - neg
        }
    }

    /// Strict even-odd containment (boundary undefined).
    pub fn contains(&self, q: P) -> bool {
        if q.x < self.min.x || q.x > self.max.x || q.y < self.min.y || q.y > self.max.y {
            return false;
        }
        // Even-odd ray to +x through the grid row; each crossing is counted
        // in the cell whose x-range holds it.
        let g = &self.grid;
        let (i0, j) = g.idx(q);
        let mut inside = false;
        for i in i0..g.nx {
            let cx0 = g.origin.x + i as f64 * g.cell;
            let cx1 = cx0 + g.cell;
            for &k in &g.cells[j * g.nx + i] {
                let (a, b) = self.edges[k as usize];
                if (a.y > q.y) != (b.y > q.y) {
                    let x = a.x + (q.y - a.y) * (b.x - a.x) / (b.y - a.y);
                    let in_cell = (x >= cx0 || i == 0) && (x < cx1 || i == g.nx - 1);
                    if q.x < x && in_cell {
                        inside = !inside;
                    }
                }
            }
        }
        inside
    }

    /// Within `tol` of an edge (looks only at nearby edges).
    fn near_boundary(&self, q: P, tol: f64) -> bool {
        let mut v = Vec::new();
        self.grid.near_segment(q, q, tol, &mut v);
        v.iter().any(|&k| {
            let (a, b) = self.edges[k as usize];
            dist_point_segment(q, a, b) <= tol
        })
    }

    /// Distance from `q` to the boundary.
    pub fn boundary_distance(&self, q: P) -> f64 {
        self.edges
            .iter()
            .map(|&(a, b)| dist_point_segment(q, a, b))
            .fold(f64::INFINITY, f64::min)
    }

    /// Containment where points within `tol` of the boundary count as
    /// inside (the region is closed).
    pub fn contains_closed(&self, q: P, tol: f64) -> bool {
        self.contains(q) || self.near_boundary(q, tol)
    }

    /// True if the whole segment `a`–`b` lies in the closed region: it
    /// crosses no boundary edge, and every piece between the places it
    /// touches the boundary has its midpoint inside.
    pub fn segment_inside(&self, a: P, b: P) -> bool {
        const EPS: f64 = 1e-7;
        let len = dist(a, b);
        let (lo, hi) = (
            p(a.x.min(b.x) - EPS, a.y.min(b.y) - EPS),
            p(a.x.max(b.x) + EPS, a.y.max(b.y) + EPS),
        );
        let mut ts: Vec<f64> = vec![0.0, 1.0];
        let mut near = Vec::new();
        self.grid.near_segment(a, b, 1e-6, &mut near);
        for &k in &near {
            let (c, d) = self.edges[k as usize];
            if c.x.max(d.x) < lo.x
                || c.x.min(d.x) > hi.x
                || c.y.max(d.y) < lo.y
                || c.y.min(d.y) > hi.y
            {
                continue;
            }
            if proper_crossing(a, b, c, d, EPS) {
                return false;
            }
            if len > 0.0 {
                // Vertices of the boundary that touch the segment split it.
                for v in [c, d] {
                    if dist_point_segment(v, a, b) <= 1e-6 {
                        let t =
                            ((v.x - a.x) * (b.x - a.x) + (v.y - a.y) * (b.y - a.y)) / (len * len);
                        ts.push(t.clamp(0.0, 1.0));
                    }
                }
            }
        }
        if len == 0.0 {
            return self.contains_closed(a, 1e-6);
        }
        ts.sort_by(f64::total_cmp);
        for w in ts.windows(2) {
            if w[1] - w[0] < 1e-12 {
                continue;
            }
            let t = (w[0] + w[1]) / 2.0;
            let m = p(a.x + t * (b.x - a.x), a.y + t * (b.y - a.y));
            if !self.contains_closed(m, 1e-6) {
                return false;
            }
        }
        true
    }

    /// The region rotated by `-angle` about the origin (so that direction
    /// `angle` (radians, from the x axis) becomes the x axis).
    pub fn rotated(&self, angle: f64) -> Region {
        let (s, c) = (-angle).sin_cos();
        Region::from_rings(
            self.rings
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|q| p(c * q.x - s * q.y, s * q.x + c * q.y))
                        .collect()
                })
                .collect(),
        )
    }

    /// Intervals of the horizontal line `y` inside the region (even-odd).
    pub fn line_intervals(&self, y: f64) -> Vec<(f64, f64)> {
        let mut xs = Vec::new();
        for &(a, b) in &self.edges {
            if (a.y > y) != (b.y > y) {
                xs.push(a.x + (y - a.y) * (b.x - a.x) / (b.y - a.y));
            }
        }
        xs.sort_by(f64::total_cmp);
        xs.chunks_exact(2).map(|c| (c[0], c[1])).collect()
    }

    /// The projection on the x axis of the region's part within the band
    /// `y0 ≤ y ≤ y1`, as sorted disjoint intervals. Exact: every point of
    /// the band part is either on the line `y1` inside the region or below
    /// a boundary edge portion within the band.
    pub fn band_projection(&self, y0: f64, y1: f64) -> Vec<(f64, f64)> {
        let mut iv = self.line_intervals(y1);
        iv.extend(self.line_intervals(y0));
        for &(a, b) in &self.edges {
            let (lo, hi) = if a.y <= b.y { (a, b) } else { (b, a) };
            if hi.y < y0 || lo.y > y1 {
                continue;
            }
            let at = |y: f64| {
                if hi.y == lo.y {
                    (lo.x, hi.x)
                } else {
                    let x = lo.x + (y - lo.y) * (hi.x - lo.x) / (hi.y - lo.y);
                    (x, x)
                }
            };
            let (s0, s1) = at(y0.max(lo.y));
            let (e0, e1) = at(y1.min(hi.y));
            let xa = s0.min(s1).min(e0).min(e1);
            let xb = s0.max(s1).max(e0).max(e1);
            iv.push((xa, xb));
        }
        merge_intervals(iv, 0.0)
    }
}

/// Sort and merge intervals closer than `gap`.
pub fn merge_intervals(mut iv: Vec<(f64, f64)>, gap: f64) -> Vec<(f64, f64)> {
    iv.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(iv.len());
    for (a, b) in iv {
        if let Some(last) = out.last_mut() {
            if a <= last.1 + gap {
                last.1 = last.1.max(b);
                continue;
            }
        }
        out.push((a, b));
    }
    out
}

/// Intersection of two sorted disjoint interval lists.
pub fn intersect_intervals(a: &[(f64, f64)], b: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let lo = a[i].0.max(b[j].0);
        let hi = a[i].1.min(b[j].1);
        if hi > lo {
            out.push((lo, hi));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

pub fn open_ring(ls: &LineString<f64>) -> Vec<P> {
    let mut v: Vec<P> = ls.0.clone();
    if v.len() > 1 && v.first() == v.last() {
        v.pop();
    }
    v
}

pub fn closed_ls(r: &[P]) -> LineString<f64> {
    let mut v = r.to_vec();
    if let Some(&f) = v.first() {
        v.push(f);
    }
    LineString(v)
}

pub fn polygon(exterior: &[P], holes: &[Vec<P>]) -> Polygon<f64> {
    Polygon::new(
        closed_ls(exterior),
        holes.iter().map(|h| closed_ls(h)).collect(),
    )
}

/// Step of the polygonal arcs used when buffering, radians.
pub const ARC_STEP: f64 = std::f64::consts::PI / 8.0;

/// Grow a polygon by `d` metres so that the result contains every point
/// within `d` of it (the arcs' chords are pushed out to stay outside the
/// true round buffer).
pub fn buffer_outer(poly: &MultiPolygon<f64>, d: f64) -> MultiPolygon<f64> {
    if d <= 0.0 {
        return poly.clone();
    }
    let r = d / (ARC_STEP / 2.0).cos();
    poly.buffer_with_style(
        geo::algorithm::buffer::BufferStyle::new(r)
            .line_join(geo::algorithm::buffer::LineJoin::Round(ARC_STEP * 0.999)),
    )
}

/// Grow a polygon by `d` metres so that the result is contained in the
/// true round buffer (arcs drawn as chords inside the circle).
pub fn buffer_inner(poly: &MultiPolygon<f64>, d: f64, step: f64) -> MultiPolygon<f64> {
    if d <= 0.0 {
        return poly.clone();
    }
    poly.buffer_with_style(
        geo::algorithm::buffer::BufferStyle::new(d)
            .line_join(geo::algorithm::buffer::LineJoin::Round(step)),
    )
}

/// A regular polygon that contains the circle (`outer`) or is contained
/// in it.
pub fn circle_polygon(c: P, r: f64, n: usize, outer: bool) -> Vec<P> {
    let rr = if outer {
        r / (std::f64::consts::PI / n as f64).cos()
    } else {
        r
    };
    (0..n)
        .map(|i| {
            let a = 2.0 * std::f64::consts::PI * i as f64 / n as f64;
            p(c.x + rr * a.cos(), c.y + rr * a.sin())
        })
        .collect()
}

pub fn union(a: &MultiPolygon<f64>, b: &MultiPolygon<f64>) -> MultiPolygon<f64> {
    a.union(b)
}

pub fn difference(a: &MultiPolygon<f64>, b: &MultiPolygon<f64>) -> MultiPolygon<f64> {
    a.difference(b)
}

pub fn intersection(a: &MultiPolygon<f64>, b: &MultiPolygon<f64>) -> MultiPolygon<f64> {
    a.intersection(b)
}

/// Find the first pair of crossing edges of a ring (non-adjacent edges that
/// intersect, or adjacent edges that overlap). Returns the edge indices and
/// the crossing point.
pub fn ring_self_intersection(ring: &[P]) -> Option<(usize, usize, P)> {
    let n = ring.len();
    if n < 4 {
        return None;
    }
    // Sort edges by min x for a simple sweep.
    let mut order: Vec<usize> = (0..n).collect();
    let ex = |i: usize| {
        let (a, b) = (ring[i], ring[(i + 1) % n]);
        (a.x.min(b.x), a.x.max(b.x))
    };
    order.sort_by(|&i, &j| ex(i).0.total_cmp(&ex(j).0));
    let mut found: Option<(usize, usize, P)> = None;
    for (k, &i) in order.iter().enumerate() {
        let (_, imax) = ex(i);
        for &j in &order[k + 1..] {
            if ex(j).0 > imax {
                break;
            }
            let (lo, hi) = if i < j { (i, j) } else { (j, i) };
            let adjacent = hi == lo + 1 || (lo == 0 && hi == n - 1);
            let (a, b) = (ring[lo], ring[(lo + 1) % n]);
            let (c, d) = (ring[hi], ring[(hi + 1) % n]);
            let hit = if adjacent {
                // Adjacent edges share a vertex; they only "intersect" if
                // they fold back onto each other.
                let shared = if hi == lo + 1 { b } else { a };
                let other1 = if hi == lo + 1 { a } else { b };
                let other2 = if hi == lo + 1 { d } else { c };
                let cr = cross(shared, other1, other2);
                let dot = (other1.x - shared.x) * (other2.x - shared.x)
                    + (other1.y - shared.y) * (other2.y - shared.y);
                if cr.abs() <= 1e-12 * dist(shared, other1) * dist(shared, other2) && dot > 0.0 {
                    Some(shared)
                } else {
                    None
                }
            } else if segments_intersect(a, b, c, d) {
                Some(segment_intersection(a, b, c, d).unwrap_or(c))
            } else {
                None
            };
            if let Some(q) = hit {
                let cand = (lo, hi, q);
                if found.is_none_or(|f| (cand.0, cand.1) < (f.0, f.1)) {
                    found = Some(cand);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(s: f64) -> Vec<P> {
        vec![p(0.0, 0.0), p(s, 0.0), p(s, s), p(0.0, s)]
    }

    #[test]
    fn segment_inside_respects_holes_and_touching() {
        let hole = vec![p(4.0, 4.0), p(6.0, 4.0), p(6.0, 6.0), p(4.0, 6.0)];
        let r = Region::from_rings(vec![square(10.0), hole]);
        assert!(r.segment_inside(p(1.0, 1.0), p(9.0, 1.0)));
        assert!(
            !r.segment_inside(p(1.0, 5.0), p(9.0, 5.0)),
            "crosses the hole"
        );
        // Along the hole's edge and through its corner: allowed (closed).
        assert!(r.segment_inside(p(1.0, 4.0), p(9.0, 4.0)));
        assert!(!r.segment_inside(p(2.0, 2.0), p(8.0, 8.0)));
        assert!(
            r.segment_inside(p(3.0, 5.0), p(5.0, 7.0)),
            "touches corner 4,6 from outside"
        );
        assert!(
            !r.segment_inside(p(-1.0, 1.0), p(5.0, 1.0)),
            "leaves the outer ring"
        );
    }

    #[test]
    fn band_projection_covers_slanted_edges() {
        let tri = vec![p(0.0, 0.0), p(10.0, 0.0), p(0.0, 10.0)];
        let r = Region::from_rings(vec![tri]);
        let iv = r.band_projection(4.0, 6.0);
        assert_eq!(iv.len(), 1);
        assert!(
            (iv[0].0 - 0.0).abs() < 1e-9 && (iv[0].1 - 6.0).abs() < 1e-9,
            "{iv:?}"
        );
    }

    #[test]
    fn finds_the_crossing_of_a_bow_tie() {
        let bow = vec![p(0.0, 0.0), p(10.0, 10.0), p(10.0, 0.0), p(0.0, 10.0)];
        let (a, b, q) = ring_self_intersection(&bow).unwrap();
        assert_eq!((a, b), (0, 2));
        assert!((q.x - 5.0).abs() < 1e-9 && (q.y - 5.0).abs() < 1e-9);
        assert!(ring_self_intersection(&square(5.0)).is_none());
    }

    #[test]
    fn outer_buffer_contains_the_true_buffer() {
        let sq = MultiPolygon(vec![polygon(&square(10.0), &[])]);
        let b = Region::from_multipolygon(&buffer_outer(&sq, 5.0));
        for i in 0..360 {
            let a = (i as f64).to_radians();
            // Points at distance 4.99 from the corner (10,10).
            let q = p(10.0 + 4.99 * a.cos(), 10.0 + 4.99 * a.sin());
            assert!(b.contains(q), "{q:?}");
        }
        let c = circle_polygon(p(0.0, 0.0), 10.0, 24, true);
        let r = Region::from_rings(vec![c]);
        for i in 0..360 {
            let a = (i as f64).to_radians();
            assert!(r.contains(p(9.999 * a.cos(), 9.999 * a.sin())));
        }
    }
}
