//! Coverage of the coverable area (areas minus buffered no-fly zones) by
//! parallel lanes, decomposed into boustrophedon cells, with the sweep
//! angle chosen to minimise flight time.
//!
//! For a sweep angle the area is rotated so lanes run along x. Rows are
//! spaced at most one lane spacing apart. A row flies the *projection* of
//! the area's part within its band (± half a spacing) onto the row, not just
//! where the row's centre line is inside the area, so slanted edges and
//! narrow spikes are covered. Each row is clipped to the free space; where
//! the centre line is blocked by a buffered zone but the band is not, a
//! shifted line inside the band takes over. Consecutive rows whose pieces
//! overlap one-to-one, and whose end-to-end turns are both in the free
//! space, form a cell flown back and forth.

use crate::airspace::Airspace;
use crate::geom::{self, dist, p, Region, P};

/// One lane in the rotated frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seg {
    pub y: f64,
    pub x0: f64,
    pub x1: f64,
}

/// A boustrophedon cell: lanes flown in order, alternating direction.
#[derive(Debug, Clone)]
pub struct Cell {
    pub segs: Vec<Seg>,
}

/// One way to fly a cell: where it starts and ends, its lanes in the local
/// frame (start, end) and its time.
#[derive(Debug, Clone)]
pub struct Variant {
    pub lanes: Vec<(P, P)>,
    pub cost_s: f64,
    pub length_m: f64,
}

impl Variant {
    pub fn entry(&self) -> P {
        self.lanes[0].0
    }
    pub fn exit(&self) -> P {
        self.lanes.last().unwrap().1
    }
}

/// A planned coverage: sweep direction, spacing and cells with their ways
/// of flying.
#[derive(Debug, Clone)]
pub struct Coverage {
    /// Lane direction, degrees clockwise from north, in [0, 180).
    pub heading_deg: f64,
    pub spacing_m: f64,
    pub cells: Vec<Vec<Variant>>,
    /// The objective the angle minimised: lanes, turns and connections.
    pub cost_s: f64,
}

/// Parameters of the sweep.
#[derive(Debug, Clone, Copy)]
pub struct SweepParams {
    pub spacing_m: f64,
    pub speed_mps: f64,
    pub turn_cost_s: f64,
    /// Lane extension at both ends (turn-around + oblique camera lead-in).
    pub extend_m: f64,
}

/// Turn penalty between two directions.
pub fn turn_s(turn_cost_s: f64, a: P, b: P, c: P) -> f64 {
    let (ux, uy) = (b.x - a.x, b.y - a.y);
    let (vx, vy) = (c.x - b.x, c.y - b.y);
    let (lu, lv) = ((ux * ux + uy * uy).sqrt(), (vx * vx + vy * vy).sqrt());
    if lu < 1e-9 || lv < 1e-9 {
        return 0.0;
    }
    let cos = ((ux * vx + uy * vy) / (lu * lv)).clamp(-1.0, 1.0);
    turn_cost_s * cos.acos() / std::f64::consts::PI
}

fn heading_to_theta(heading_deg: f64) -> f64 {
    (90.0 - heading_deg).to_radians()
}

/// Rows of lane pieces for the rotated regions.
fn rows(cov: &Region, free: &Region, prm: &SweepParams) -> Vec<Vec<Seg>> {
    let (min, max) = cov.bbox();
    let height = max.y - min.y;
    if height.is_nan() || height <= 0.0 {
        return vec![];
    }
    let n = (height / prm.spacing_m).ceil().max(1.0) as usize;
    let s = height / n as f64;
    let merge_gap = 2.0 * prm.spacing_m + prm.turn_cost_s * prm.speed_mps;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let y = min.y + s * (i as f64 + 0.5);
        let mut proj = cov.band_projection(y - s / 2.0, y + s / 2.0);
        for iv in &mut proj {
            iv.0 -= prm.extend_m;
            iv.1 += prm.extend_m;
        }
        let proj = geom::merge_intervals(proj, 0.0);
        let line_free = |yy: f64| -> Vec<(f64, f64)> {
            free.line_intervals(yy)
                .into_iter()
                .map(|(a, b)| (a + 0.01, b - 0.01))
                .filter(|(a, b)| b > a)
                .collect()
        };
        let fl = line_free(y);
        let main = geom::intersect_intervals(&proj, &fl);
        // Merge pieces separated by short gaps the drone can fly across.
        let mut segs: Vec<Seg> = Vec::new();
        for (a, b) in main {
            if let Some(last) = segs.last_mut() {
                if a - last.x1 <= merge_gap && free.segment_inside(p(last.x1, y), p(a, y)) {
                    last.x1 = b;
                    continue;
                }
            }
            segs.push(Seg { y, x0: a, x1: b });
        }
        // Parts of the band the centre line cannot reach: try shifted
        // lines inside the band.
        let covered: Vec<(f64, f64)> = segs.iter().map(|sg| (sg.x0, sg.x1)).collect();
        let missing = subtract_intervals(&proj, &covered);
        for (ma, mb) in missing {
            if mb - ma < 0.5 {
                continue;
            }
            for k in [0.3, -0.3, 0.45, -0.45] {
                let yy = y + k * s;
                let got = geom::intersect_intervals(&[(ma, mb)], &line_free(yy));
                if !got.is_empty() {
                    for (a, b) in got {
                        if b - a > 0.5 {
                            segs.push(Seg {
                                y: yy,
                                x0: a,
                                x1: b,
                            });
                        }
                    }
                    break;
                }
            }
        }
        segs.sort_by(|a, b| a.x0.total_cmp(&b.x0));
        segs.retain(|sg| sg.x1 - sg.x0 > 0.05);
        out.push(segs);
    }
    out
}

fn subtract_intervals(a: &[(f64, f64)], b: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for &(lo, hi) in a {
        let mut cur = lo;
        for &(c, d) in b {
            if d <= cur || c >= hi {
                continue;
            }
            if c > cur {
                out.push((cur, c));
            }
            cur = cur.max(d);
        }
        if cur < hi {
            out.push((cur, hi));
        }
    }
    out
}

/// Group rows into boustrophedon cells.
fn cells(rows: &[Vec<Seg>], free: &Region) -> Vec<Cell> {
    let mut cells: Vec<Cell> = Vec::new();
    // Cell id of each piece of the previous row.
    let mut prev_ids: Vec<usize> = Vec::new();
    let overlaps = |a: &Seg, b: &Seg| a.x0 < b.x1 && b.x0 < a.x1;
    for r in 0..rows.len() {
        let row = &rows[r];
        let mut ids = Vec::with_capacity(row.len());
        for sg in row {
            let mut cont = None;
            if r > 0 {
                let prev = &rows[r - 1];
                let up: Vec<usize> = (0..prev.len())
                    .filter(|&k| overlaps(&prev[k], sg))
                    .collect();
                if up.len() == 1 {
                    let k = up[0];
                    let down = row.iter().filter(|s2| overlaps(&prev[k], s2)).count();
                    let a = prev[k];
                    if down == 1
                        && free.segment_inside(p(a.x0, a.y), p(sg.x0, sg.y))
                        && free.segment_inside(p(a.x1, a.y), p(sg.x1, sg.y))
                    {
                        cont = Some(prev_ids[k]);
                    }
                }
            }
            let id = match cont {
                Some(id) => {
                    cells[id].segs.push(*sg);
                    id
                }
                None => {
                    cells.push(Cell { segs: vec![*sg] });
                    cells.len() - 1
                }
            };
            ids.push(id);
        }
        prev_ids = ids;
    }
    cells
}

/// The distinct ways to fly a cell (up to 4), in the local frame.
fn variants(cell: &Cell, theta: f64, prm: &SweepParams) -> Vec<Variant> {
    let (s, c) = theta.sin_cos();
    let un = |x: f64, y: f64| p(c * x - s * y, s * x + c * y);
    let mut out: Vec<Variant> = Vec::new();
    for from_last in [false, true] {
        for start_right in [false, true] {
            let order: Vec<&Seg> = if from_last {
                cell.segs.iter().rev().collect()
            } else {
                cell.segs.iter().collect()
            };
            let mut lanes = Vec::with_capacity(order.len());
            for (k, sg) in order.iter().enumerate() {
                let rtl = start_right ^ (k % 2 == 1);
                let (a, b) = if rtl { (sg.x1, sg.x0) } else { (sg.x0, sg.x1) };
                lanes.push((un(a, sg.y), un(b, sg.y)));
            }
            let (e, x) = (lanes[0].0, lanes.last().unwrap().1);
            if out
                .iter()
                .any(|v| dist(v.entry(), e) < 1e-9 && dist(v.exit(), x) < 1e-9)
            {
                continue;
            }
            let (len, cost) = lanes_cost(&lanes, prm);
            out.push(Variant {
                lanes,
                cost_s: cost,
                length_m: len,
            });
        }
    }
    out
}

/// Length and time of flying lanes with straight transitions.
pub fn lanes_cost(lanes: &[(P, P)], prm: &SweepParams) -> (f64, f64) {
    let mut pts = Vec::with_capacity(lanes.len() * 2);
    for &(a, b) in lanes {
        pts.push(a);
        pts.push(b);
    }
    let len: f64 = pts.windows(2).map(|w| dist(w[0], w[1])).sum();
    let turns: f64 = pts
        .windows(3)
        .map(|w| turn_s(prm.turn_cost_s, w[0], w[1], w[2]))
        .sum();
    (len, len / prm.speed_mps + turns)
}

/// Lanes and cells for one heading.
pub fn sweep_cells(air: &Airspace, heading_deg: f64, prm: &SweepParams) -> Vec<Vec<Variant>> {
    let theta = heading_to_theta(heading_deg);
    let cov = air.coverable.rotated(theta);
    let free = air.free.rotated(theta);
    let rows = rows(&cov, &free, prm);
    cells(&rows, &free)
        .iter()
        .map(|c| variants(c, theta, prm))
        .collect()
}

/// Flight time of covering the area at this heading: lanes, turns, and
/// straight connections between cells in nearest-neighbour order from
/// home and back. This is the objective the sweep angle minimises.
pub fn sweep_time_s(air: &Airspace, heading_deg: f64, prm: &SweepParams) -> f64 {
    let cells = sweep_cells(air, heading_deg, prm);
    objective(&cells, air.home_local, prm)
}

fn objective(cells: &[Vec<Variant>], home: P, prm: &SweepParams) -> f64 {
    let mut done = vec![false; cells.len()];
    let mut at = home;
    let mut total = 0.0;
    for _ in 0..cells.len() {
        let mut best = (f64::INFINITY, 0, 0);
        for (i, vs) in cells.iter().enumerate() {
            if done[i] {
                continue;
            }
            for (j, v) in vs.iter().enumerate() {
                let c = dist(at, v.entry()) / prm.speed_mps + v.cost_s;
                if c < best.0 {
                    best = (c, i, j);
                }
            }
        }
        done[best.1] = true;
        total += best.0;
        at = cells[best.1][best.2].exit();
    }
    total + dist(at, home) / prm.speed_mps
}

/// Choose the heading: a coarse scan (every 5° and along the 12 longest edges
/// of the coverable area), then golden-section refinement around the
/// three best.
pub fn choose_heading(air: &Airspace, prm: &SweepParams) -> f64 {
    let mut cand: Vec<f64> = (0..36).map(|i| i as f64 * 5.0).collect();
    // Edge directions of the coverable area, longest first.
    let mut edges: Vec<(f64, f64)> = air
        .coverable
        .edges()
        .iter()
        .map(|&(a, b)| {
            let h = (b.x - a.x).atan2(b.y - a.y).to_degrees().rem_euclid(180.0);
            (dist(a, b), h)
        })
        .collect();
    edges.sort_by(|a, b| b.0.total_cmp(&a.0));
    cand.extend(edges.iter().take(12).map(|e| e.1));
    let mut scored: Vec<(f64, f64)> = cand
        .into_iter()
        .map(|h| (sweep_time_s(air, h, prm), h))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut best = scored[0];
    for &(_, h0) in scored.iter().take(3) {
        let (mut lo, mut hi) = (h0 - 5.0, h0 + 5.0);
        let g = (5f64.sqrt() - 1.0) / 2.0;
        let mut x1 = hi - g * (hi - lo);
        let mut x2 = lo + g * (hi - lo);
        let mut f1 = sweep_time_s(air, x1.rem_euclid(180.0), prm);
        let mut f2 = sweep_time_s(air, x2.rem_euclid(180.0), prm);
        for _ in 0..9 {
            if f1 < f2 {
                hi = x2;
                x2 = x1;
                f2 = f1;
                x1 = hi - g * (hi - lo);
                f1 = sweep_time_s(air, x1.rem_euclid(180.0), prm);
            } else {
                lo = x1;
                x1 = x2;
                f1 = f2;
                x2 = lo + g * (hi - lo);
                f2 = sweep_time_s(air, x2.rem_euclid(180.0), prm);
            }
        }
        for (f, x) in [(f1, x1), (f2, x2)] {
            if f < best.0 {
                best = (f, x.rem_euclid(180.0));
            }
        }
    }
    best.1
}

/// Plan the coverage: heading (given or chosen), cells and variants.
pub fn plan_coverage(air: &Airspace, prm: &SweepParams, heading: Option<f64>) -> Coverage {
    if air.coverable.is_empty() {
        return Coverage {
            heading_deg: heading.unwrap_or(0.0),
            spacing_m: prm.spacing_m,
            cells: vec![],
            cost_s: 0.0,
        };
    }
    let h = heading
        .map(|h| h.rem_euclid(180.0))
        .unwrap_or_else(|| choose_heading(air, prm));
    let cells = sweep_cells(air, h, prm);
    let cost_s = objective(&cells, air.home_local, prm);
    Coverage {
        heading_deg: h,
        spacing_m: prm.spacing_m,
        cells,
        cost_s,
    }
}

/// The single-angle lawnmower QGroundControl's survey flies, for
/// comparison: transects at one heading across the area, each flown from
/// its first to its last crossing of the area's outline (QGroundControl
/// keeps only those two intersections, so a concave notch or a hole is
/// flown over), alternating direction, no decomposition and no no-fly-zone
/// avoidance. Returns the polyline (local frame).
pub fn lawnmower(air: &Airspace, heading_deg: f64, spacing_m: f64) -> Vec<P> {
    let theta = heading_to_theta(heading_deg);
    let rings: Vec<Vec<P>> = air
        .areas
        .iter()
        .flat_map(|a| a.rings.iter().cloned())
        .collect();
    let reg = Region::from_rings(rings).rotated(theta);
    let (min, max) = reg.bbox();
    let height = max.y - min.y;
    let n = (height / spacing_m).ceil().max(1.0) as usize;
    let s = height / n as f64;
    let (sn, cs) = theta.sin_cos();
    let un = |x: f64, y: f64| p(cs * x - sn * y, sn * x + cs * y);
    let mut pts: Vec<P> = Vec::new();
    for i in 0..n {
        let y = min.y + s * (i as f64 + 0.5);
        let iv = reg.line_intervals(y);
        if iv.is_empty() {
            continue;
        }
        let (a, b) = (iv[0].0, iv.last().unwrap().1);
        if (pts.len() / 2).is_multiple_of(2) {
            pts.push(un(a, y));
            pts.push(un(b, y));
        } else {
            pts.push(un(b, y));
            pts.push(un(a, y));
        }
    }
    pts
}
