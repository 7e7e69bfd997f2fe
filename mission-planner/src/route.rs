//! The route as a polyline with meaning (transit, lane, point of interest)
//! and its split into sorties that each fit the battery with reserve.
//!
//! Energy along the route is a non-decreasing function, and so is "energy
//! so far + energy to fly home from here" (the way home shortens by at most
//! the distance flown), so the farthest feasible stop of a sortie is found
//! by bisection.

use crate::airspace::Airspace;
use crate::coverage::turn_s;
use crate::error::PlanError;
use crate::geom::{dist, p, P};
use crate::request::BatteryModel;

/// What a route vertex is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mark {
    Transit,
    LaneStart,
    LaneEnd,
    /// Arrival at point of interest `i` (dwell happens here).
    Poi(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutePoint {
    pub p: P,
    pub mark: Mark,
}

/// Flight parameters for costing a route.
#[derive(Debug, Clone, Copy)]
pub struct Flight {
    pub speed_mps: f64,
    pub turn_cost_s: f64,
    pub takeoff_s: f64,
    pub landing_s: f64,
    pub battery: BatteryModel,
}

impl Flight {
    fn move_cost(&self, d: f64) -> f64 {
        d / self.speed_mps * self.battery.cruise_rate
    }
    fn hover_cost(&self, s: f64) -> f64 {
        s * self.battery.hover_rate
    }
    fn fixed(&self) -> f64 {
        self.hover_cost(self.takeoff_s + self.landing_s)
    }
}

/// A position along the route: segment `k` (from vertex k to k+1) at
/// fraction `f`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct At {
    pub k: usize,
    pub f: f64,
}

/// One sortie: the part of the route it flies, with the transits to and
/// from home.
#[derive(Debug, Clone)]
pub struct SortiePath {
    pub points: Vec<RoutePoint>,
    pub length_m: f64,
    pub time_s: f64,
    /// Battery used, in the battery's units.
    pub energy: f64,
    pub pois: Vec<usize>,
}

pub(crate) struct Costed<'a> {
    pub pts: &'a [RoutePoint],
    /// Energy at arrival at vertex k, extras (turn, dwell) included.
    pub e: Vec<f64>,
    /// Extras at vertex k (turn + dwell).
    pub extra: Vec<f64>,
    pub seg: Vec<f64>,
}

impl<'a> Costed<'a> {
    pub fn new(pts: &'a [RoutePoint], fl: &Flight, dwell: &dyn Fn(usize) -> f64) -> Self {
        let n = pts.len();
        let mut e = vec![0.0; n];
        let mut extra = vec![0.0; n];
        let mut seg = vec![0.0; n.saturating_sub(1)];
        for k in 0..n {
            let mut x = 0.0;
            if k > 0 && k + 1 < n {
                x += turn_s(fl.turn_cost_s, pts[k - 1].p, pts[k].p, pts[k + 1].p)
                    * fl.battery.cruise_rate;
            }
            if let Mark::Poi(i) = pts[k].mark {
                x += fl.hover_cost(dwell(i));
            }
            extra[k] = x;
            if k + 1 < n {
                seg[k] = fl.move_cost(dist(pts[k].p, pts[k + 1].p));
            }
            e[k] = if k == 0 { x } else { e[k - 1] + seg[k - 1] + x };
        }
        Costed { pts, e, extra, seg }
    }

    fn pos(&self, at: At) -> P {
        let (a, b) = (
            self.pts[at.k].p,
            self.pts[(at.k + 1).min(self.pts.len() - 1)].p,
        );
        p(a.x + at.f * (b.x - a.x), a.y + at.f * (b.y - a.y))
    }

    /// Energy at a position (extras at the segment's end not included
    /// unless f = 1 and `with_end`).
    fn e_at(&self, at: At) -> f64 {
        self.e[at.k] + at.f * self.seg.get(at.k).copied().unwrap_or(0.0)
    }
}

/// Split the route (home … home) into sorties.
pub fn split(
    air: &Airspace,
    pts: &[RoutePoint],
    fl: &Flight,
    dwell: &dyn Fn(usize) -> f64,
    poi_name: &dyn Fn(usize) -> String,
    overlap_m: f64,
) -> Result<Vec<SortiePath>, PlanError> {
    let c = Costed::new(pts, fl, dwell);
    let n = pts.len();
    let usable = fl.battery.usable;
    let home = air.home_local;
    // Cost of a transit, with every corner and the junction charged a full
    // turn (an upper bound, so a built sortie never costs more).
    let transit = |a: P, b: P| -> f64 {
        match air.shortest_path(a, b) {
            Some(path) => {
                let len: f64 = path.windows(2).map(|w| dist(w[0], w[1])).sum();
                fl.move_cost(len)
                    + (path.len() as f64 - 1.0) * fl.turn_cost_s * fl.battery.cruise_rate
            }
            None => f64::INFINITY,
        }
    };
    let mut out = Vec::new();
    let mut start = At { k: 0, f: 0.0 };
    let mut prev_end: Option<At> = None;
    let last_vertex = n - 1;
    loop {
        let sp = c.pos(start);
        let e_before = if start.f == 0.0 {
            c.e[start.k] - c.extra[start.k]
        } else {
            c.e_at(start)
        };
        let base = fl.fixed() + transit(home, sp) - e_before;
        let fits_vertex = |k: usize| base + c.e[k] + transit(c.pts[k].p, home) <= usable + 1e-9;
        let fits_at = |at: At| base + c.e_at(at) + transit(c.pos(at), home) <= usable + 1e-9;
        let first_k = if start.f > 0.0 { start.k + 1 } else { start.k };
        let end: At;
        if fits_vertex(last_vertex) {
            end = At {
                k: last_vertex,
                f: 0.0,
            };
        } else {
            // Largest vertex in [first_k, last) that fits.
            let (mut lo, mut hi) = (first_k as isize - 1, last_vertex as isize);
            while hi - lo > 1 {
                let mid = (lo + hi) / 2;
                if fits_vertex(mid as usize) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let (seg_k, mut a, ok) = if lo >= first_k as isize {
                (lo as usize, 0.0, true)
            } else {
                (start.k, start.f, start.f > 0.0 && fits_at(start))
            };
            if ok {
                let mut b = 1.0;
                for _ in 0..30 {
                    let m = (a + b) / 2.0;
                    if fits_at(At { k: seg_k, f: m }) {
                        a = m;
                    } else {
                        b = m;
                    }
                }
            }
            end = At { k: seg_k, f: a };
            // Progress beyond where the last sortie stopped, not just
            // beyond the (overlapping) resume point.
            let from = prev_end.unwrap_or(start);
            let stuck = !ok
                || dist_along(&c, start, end) < 1.0
                || (from > start && dist_along(&c, from, end) < 1.0);
            if stuck && from > start {
                // The overlap eats the battery: resume exactly where the
                // last sortie stopped instead.
                start = from;
                continue;
            }
            if stuck {
                let tk = (seg_k + 1).min(n - 1);
                let what = match c.pts[tk].mark {
                    Mark::Poi(i) => format!(
                        "the leg to point of interest '{}' (dwell {:.0} s) and back",
                        poi_name(i),
                        dwell(i)
                    ),
                    _ => {
                        let ll = air.to_latlon(c.pts[tk].p);
                        format!("the leg to {:.4}, {:.4} and back", ll.lat_deg, ll.lon_deg)
                    }
                };
                let needed = base + c.e[tk] + transit(c.pts[tk].p, home);
                return Err(PlanError::BatteryTooSmall {
                    what,
                    needed: fl.battery.display(needed),
                    usable: fl.battery.display(usable),
                    unit: fl.battery.unit,
                });
            }
        }
        out.push(build_sortie(air, &c, fl, start, end, dwell));
        prev_end = Some(end);
        if end.k >= last_vertex {
            break;
        }
        // Resume a little before where this sortie stopped, along the lane.
        let mut resume = end;
        let on_lane = matches!(c.pts[end.k].mark, Mark::LaneStart)
            && matches!(c.pts[(end.k + 1).min(n - 1)].mark, Mark::LaneEnd);
        if on_lane && overlap_m > 0.0 && end.f > 0.0 {
            let len = dist(c.pts[end.k].p, c.pts[end.k + 1].p).max(1e-9);
            let mut f = (end.f - overlap_m / len).max(0.0);
            if start.k == end.k {
                f = f.max(start.f);
            }
            resume = At { k: end.k, f };
        }
        if end.f == 0.0 {
            // Ended at a vertex with its extras done: go on from there.
            resume = At { k: end.k, f: 1e-12 };
        }
        start = resume;
    }
    Ok(out)
}

fn dist_along(c: &Costed, a: At, b: At) -> f64 {
    if b < a {
        return 0.0;
    }
    let seg_len = |k: usize| dist(c.pts[k].p, c.pts[(k + 1).min(c.pts.len() - 1)].p);
    if a.k == b.k {
        return (b.f - a.f) * seg_len(a.k);
    }
    let mut d = (1.0 - a.f) * seg_len(a.k);
    for k in a.k + 1..b.k {
        d += seg_len(k);
    }
    d + b.f * seg_len(b.k)
}

fn build_sortie(
    air: &Airspace,
    c: &Costed,
    fl: &Flight,
    start: At,
    end: At,
    dwell: &dyn Fn(usize) -> f64,
) -> SortiePath {
    let home = air.home_local;
    let n = c.pts.len();
    let mut pts: Vec<RoutePoint> = Vec::new();
    let sp = c.pos(start);
    let ep = c.pos(end);
    // Transit in.
    let inbound = air
        .shortest_path(home, sp)
        .unwrap_or_else(|| vec![home, sp]);
    for q in &inbound[..inbound.len() - 1] {
        pts.push(RoutePoint {
            p: *q,
            mark: Mark::Transit,
        });
    }
    // The start point keeps the meaning of the segment it lies on.
    let start_mark = if start.f == 0.0 {
        c.pts[start.k].mark
    } else if matches!(c.pts[start.k].mark, Mark::LaneStart) {
        Mark::LaneStart
    } else {
        Mark::Transit
    };
    pts.push(RoutePoint {
        p: sp,
        mark: start_mark,
    });
    let first = start.k + 1;
    let last = end.k;
    let mut pois = Vec::new();
    if let Mark::Poi(i) = start_mark {
        pois.push(i);
    }
    for k in first..=last.min(n - 1) {
        if k == end.k && end.f == 0.0 && k == start.k {
            continue;
        }
        pts.push(c.pts[k]);
        if let Mark::Poi(i) = c.pts[k].mark {
            pois.push(i);
        }
    }
    if end.f > 0.0 {
        let mark = if matches!(c.pts[end.k].mark, Mark::LaneStart) {
            Mark::LaneEnd
        } else {
            Mark::Transit
        };
        pts.push(RoutePoint { p: ep, mark });
    }
    // Transit out.
    let outbound = air
        .shortest_path(ep, home)
        .unwrap_or_else(|| vec![ep, home]);
    for q in &outbound[1..] {
        pts.push(RoutePoint {
            p: *q,
            mark: Mark::Transit,
        });
    }
    // Remove consecutive duplicates (keep the more meaningful mark).
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
    let costed = Costed::new(&clean, fl, dwell);
    let length_m: f64 = clean.windows(2).map(|w| dist(w[0].p, w[1].p)).sum();
    let energy = costed.e.last().copied().unwrap_or(0.0) + fl.fixed();
    let turns: f64 = (1..clean.len().saturating_sub(1))
        .map(|k| turn_s(fl.turn_cost_s, clean[k - 1].p, clean[k].p, clean[k + 1].p))
        .sum();
    let dwell_s: f64 = pois.iter().map(|&i| dwell(i)).sum();
    let time_s = length_m / fl.speed_mps + turns + dwell_s + fl.takeoff_s + fl.landing_s;
    SortiePath {
        points: clean,
        length_m,
        time_s,
        energy,
        pois,
    }
}
