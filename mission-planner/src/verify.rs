//! Independent checks of a plan, used by the summary and by the tests:
//! coverage measured by rasterising the camera footprint swept along the
//! lanes, and the clearance of every route segment from the no-fly zones
//! and the fence.

use crate::airspace::Airspace;
use crate::geom::{dist, p, Region, P};
use crate::request::CameraGeometry;
use crate::route::{Mark, RoutePoint};

/// Lane segments (camera on, at patrol altitude) of a sortie route.
pub fn lanes_of(pts: &[RoutePoint]) -> Vec<(P, P)> {
    pts.windows(2)
        .filter(|w| w[0].mark == Mark::LaneStart && w[1].mark == Mark::LaneEnd)
        .map(|w| (w[0].p, w[1].p))
        .collect()
}

/// Fraction of `region` covered by footprints swept along `lanes`: a point
/// is seen if it is within half the footprint width across track and
/// within half the footprint length beyond the lane's ends (continuous
/// video). The region is sampled on a grid of at most about `max_samples`
/// points.
pub fn covered_fraction_of(
    region: &Region,
    lanes: &[(P, P)],
    cam: &CameraGeometry,
    max_samples: usize,
) -> f64 {
    let (min, max) = region.bbox();
    let area = ((max.x - min.x) * (max.y - min.y)).max(1e-9);
    let cell = (area / max_samples as f64).sqrt().max(0.05);
    let nx = ((max.x - min.x) / cell).ceil() as usize + 1;
    let ny = ((max.y - min.y) / cell).ceil() as usize + 1;
    let mut inside = vec![false; nx * ny];
    let mut seen = vec![false; nx * ny];
    let mut total = 0usize;
    for j in 0..ny {
        let y = min.y + (j as f64 + 0.5) * cell;
        // Row intervals once per row (faster than point tests).
        let iv = region.line_intervals(y);
        for (a, b) in iv {
            let i0 = (((a - min.x) / cell) - 0.5).ceil().max(0.0) as usize;
            let i1 = ((((b - min.x) / cell) - 0.5).floor() as isize).min(nx as isize - 1);
            if i1 < i0 as isize {
                continue;
            }
            for i in i0..=i1 as usize {
                inside[j * nx + i] = true;
                total += 1;
            }
        }
    }
    if total == 0 {
        return 1.0;
    }
    let hw = cam.footprint_width_m / 2.0;
    let hl = cam.footprint_length_m / 2.0;
    for &(a, b) in lanes {
        let len = dist(a, b);
        if len < 1e-9 {
            continue;
        }
        let u = p((b.x - a.x) / len, (b.y - a.y) / len);
        let r = hw.max(hl);
        let (lx, hx) = (a.x.min(b.x) - r, a.x.max(b.x) + r);
        let (ly, hy) = (a.y.min(b.y) - r, a.y.max(b.y) + r);
        let i0 = (((lx - min.x) / cell) - 0.5).floor().max(0.0) as usize;
        let i1 = ((((hx - min.x) / cell) - 0.5).ceil() as usize).min(nx - 1);
        let j0 = (((ly - min.y) / cell) - 0.5).floor().max(0.0) as usize;
        let j1 = ((((hy - min.y) / cell) - 0.5).ceil() as usize).min(ny - 1);
        if hx < min.x || lx > max.x || hy < min.y || ly > max.y {
            continue;
        }
        for j in j0..=j1 {
            let y = min.y + (j as f64 + 0.5) * cell;
            for i in i0..=i1 {
                let k = j * nx + i;
                if !inside[k] || seen[k] {
                    continue;
                }
                let x = min.x + (i as f64 + 0.5) * cell;
                let (dx, dy) = (x - a.x, y - a.y);
                let t = dx * u.x + dy * u.y;
                let c = (dx * u.y - dy * u.x).abs();
                if c <= hw && t >= -hl && t <= len + hl {
                    seen[k] = true;
                }
            }
        }
    }
    let n_seen = seen.iter().filter(|s| **s).count();
    n_seen as f64 / total as f64
}

/// Fraction of the airspace's coverable area seen from `lanes`.
pub fn covered_fraction(
    air: &Airspace,
    lanes: &[(P, P)],
    cam: &CameraGeometry,
    max_samples: usize,
) -> f64 {
    covered_fraction_of(&air.coverable, lanes, cam, max_samples)
}

/// The smallest margin by which a route segment keeps clear of a zone's
/// buffer (negative: it enters the buffered zone), with the zone's name.
pub fn min_zone_clearance(air: &Airspace, route: &[P]) -> Option<(f64, String)> {
    let mut worst: Option<(f64, String)> = None;
    for w in route.windows(2) {
        for z in &air.zones {
            let m = z.shape.segment_distance(w[0], w[1]) - z.buffer_m;
            if worst.as_ref().is_none_or(|(x, _)| m < *x) {
                worst = Some((m, z.name.clone()));
            }
        }
    }
    worst
}

/// True if every segment of the route stays inside the emitted inclusion
/// fence.
pub fn inside_emitted_fence(air: &Airspace, route: &[P]) -> bool {
    let fence = Region::from_rings(vec![air.fence_emit.clone()]);
    route.windows(2).all(|w| fence.segment_inside(w[0], w[1]))
}
