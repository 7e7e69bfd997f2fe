//! A picture of a plan as SVG text: areas, no-fly zones (with their
//! buffers), the fence, the route coloured by sortie, points of interest,
//! home and rally points, a scale bar and the summary. Pure: the caller
//! writes the file (and rasterises it to PNG if it wants one).

use std::fmt::Write;

use crate::airspace::LocalShape;
use crate::geom::{self, P};
use crate::plan::Plan;
use crate::request::PlanRequest;

const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
];

/// Display colour of sortie `i`.
pub fn sortie_colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct View {
    min: P,
    scale: f64,
    h: f64,
    pad: f64,
}

impl View {
    fn pt(&self, q: P) -> (f64, f64) {
        (
            self.pad + (q.x - self.min.x) * self.scale,
            self.pad + self.h - (q.y - self.min.y) * self.scale,
        )
    }
    fn path(&self, ring: &[P], close: bool) -> String {
        let mut s = String::new();
        for (i, q) in ring.iter().enumerate() {
            let (x, y) = self.pt(*q);
            let _ = write!(s, "{}{:.1},{:.1} ", if i == 0 { "M" } else { "L" }, x, y);
        }
        if close {
            s.push('Z');
        }
        s
    }
}

/// Render the plan as an SVG document `width_px` wide.
pub fn svg(plan: &Plan, req: &PlanRequest, width_px: u32) -> String {
    let air = &plan.airspace;
    // Extent: the emitted fence and every route point.
    let mut pts: Vec<P> = air.fence_emit.clone();
    for s in &plan.sorties {
        pts.extend(s.route_local.iter().map(|r| r.p));
    }
    for z in &air.zones {
        if let LocalShape::Circle(c, r) = z.shape {
            pts.push(geom::p(c.x - r - z.buffer_m, c.y - r - z.buffer_m));
            pts.push(geom::p(c.x + r + z.buffer_m, c.y + r + z.buffer_m));
        }
    }
    let min = geom::p(
        pts.iter().map(|q| q.x).fold(f64::INFINITY, f64::min),
        pts.iter().map(|q| q.y).fold(f64::INFINITY, f64::min),
    );
    let max = geom::p(
        pts.iter().map(|q| q.x).fold(f64::NEG_INFINITY, f64::max),
        pts.iter().map(|q| q.y).fold(f64::NEG_INFINITY, f64::max),
    );
    let pad = 30.0;
    let w = width_px.max(200) as f64 - 2.0 * pad;
    let span_x = (max.x - min.x).max(1.0);
    let span_y = (max.y - min.y).max(1.0);
    let scale = w / span_x;
    let h = span_y * scale;
    let legend_h = 120.0;
    let total_h = h + 2.0 * pad + legend_h;
    let v = View { min, scale, h, pad };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{:.0}" viewBox="0 0 {} {:.0}" font-family="DejaVu Sans, Arial, sans-serif">"#,
        width_px.max(200),
        total_h,
        width_px.max(200),
        total_h
    );
    let _ = writeln!(
        s,
        r##"<defs><pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="8" stroke="#d62728" stroke-width="2" opacity="0.5"/></pattern></defs>
<rect width="100%" height="100%" fill="#fbfbf8"/>"##
    );
    // Fence.
    let _ = writeln!(
        s,
        r##"<path d="{}" fill="none" stroke="#555" stroke-width="1.5" stroke-dasharray="8 5"/>"##,
        v.path(&air.fence_emit, true)
    );
    // Areas (with holes, even-odd).
    for a in &air.areas {
        let d: String = a
            .rings
            .iter()
            .map(|r| v.path(r, true))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            s,
            r##"<path d="{d}" fill="#c7e9c0" fill-opacity="0.6" fill-rule="evenodd" stroke="#31a354" stroke-width="1.5"/>"##
        );
    }
    // No-fly zones: the buffer (outline) and the zone (hatched).
    for z in &air.zones {
        match &z.shape {
            LocalShape::Circle(c, r) => {
                let (x, y) = v.pt(*c);
                let _ = writeln!(
                    s,
                    r##"<circle cx="{x:.1}" cy="{y:.1}" r="{:.1}" fill="#d62728" fill-opacity="0.08" stroke="#d62728" stroke-dasharray="4 3"/>
<circle cx="{x:.1}" cy="{y:.1}" r="{:.1}" fill="url(#hatch)" stroke="#d62728" stroke-width="1.5"/>"##,
                    (r + z.buffer_m) * scale,
                    r * scale
                );
            }
            LocalShape::Polygon(rings) => {
                let buf = Region(z.planning.clone());
                let _ = writeln!(
                    s,
                    r##"<path d="{}" fill="#d62728" fill-opacity="0.08" fill-rule="evenodd" stroke="#d62728" stroke-dasharray="4 3"/>"##,
                    buf.d(&v)
                );
                let d: String = rings
                    .iter()
                    .map(|r| v.path(r, true))
                    .collect::<Vec<_>>()
                    .join(" ");
                let _ = writeln!(
                    s,
                    r##"<path d="{d}" fill="url(#hatch)" fill-rule="evenodd" stroke="#d62728" stroke-width="1.5"/>"##
                );
            }
        }
        let c = match &z.shape {
            LocalShape::Circle(c, _) => *c,
            LocalShape::Polygon(r) => {
                let n = r[0].len() as f64;
                geom::p(
                    r[0].iter().map(|q| q.x).sum::<f64>() / n,
                    r[0].iter().map(|q| q.y).sum::<f64>() / n,
                )
            }
        };
        let (x, y) = v.pt(c);
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{y:.1}" font-size="12" fill="#a50f15" text-anchor="middle">no-fly: {}</text>"##,
            esc(&z.name)
        );
    }
    // Routes.
    for (i, so) in plan.sorties.iter().enumerate() {
        let line: Vec<P> = so.route_local.iter().map(|r| r.p).collect();
        let _ = writeln!(
            s,
            r##"<path d="{}" fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round" opacity="0.9"/>"##,
            v.path(&line, false),
            sortie_colour(i)
        );
    }
    // Rally points.
    for r in &plan.rally {
        let (x, y) = v.pt(air.to_local(*r));
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="8" height="8" fill="#ffd92f" stroke="#444"/>"##,
            x - 4.0,
            y - 4.0
        );
    }
    // Points of interest.
    for poi in &req.points_of_interest {
        let (x, y) = v.pt(air.to_local(poi.position));
        let _ = writeln!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="6" fill="#6a3d9a" stroke="white" stroke-width="1.5"/>
<text x="{:.1}" y="{:.1}" font-size="13" fill="#3f007d" stroke="white" stroke-width="3" paint-order="stroke">{}</text>"##,
            x + 9.0,
            y + 4.0,
            esc(&poi.name)
        );
    }
    // Home.
    let (hx, hy) = v.pt(air.home_local);
    let _ = writeln!(
        s,
        r##"<path d="M{:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1} Z" fill="black"/><text x="{:.1}" y="{:.1}" font-size="13" font-weight="bold">H</text>"##,
        hx,
        hy - 9.0,
        hx - 8.0,
        hy + 6.0,
        hx + 8.0,
        hy + 6.0,
        hx + 10.0,
        hy - 6.0
    );
    // Scale bar and north arrow.
    let nice = [
        10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
    ];
    let target = span_x / 5.0;
    let bar = nice.iter().copied().rfind(|b| *b <= target).unwrap_or(10.0);
    let by = pad + h + 25.0;
    let _ = writeln!(
        s,
        r##"<line x1="{pad}" y1="{by:.1}" x2="{:.1}" y2="{by:.1}" stroke="black" stroke-width="3"/><text x="{pad}" y="{:.1}" font-size="12">{} m</text>"##,
        pad + bar * scale,
        by + 16.0,
        bar
    );
    let nx = pad + w - 10.0;
    let _ = writeln!(
        s,
        r##"<path d="M{nx:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1} Z" fill="black"/><text x="{nx:.1}" y="{:.1}" font-size="12" text-anchor="middle">N</text>"##,
        pad,
        nx - 6.0,
        pad + 16.0,
        nx + 6.0,
        pad + 16.0,
        pad + 30.0
    );
    // Summary.
    let sm = &plan.summary;
    let name = req.name.clone().unwrap_or_else(|| "patrol".into());
    let lines = [
        format!(
            "{} — {} sortie(s), {:.2} km, {:.1} min, coverage {:.1} % of {:.3} km² coverable",
            name,
            sm.sorties,
            sm.length_m / 1000.0,
            sm.time_s / 60.0,
            sm.coverage_percent,
            sm.coverable_area_m2 / 1e6
        ),
        format!(
            "altitude {:.0} m, lanes {:.0} m apart at {:.0}°, {} point(s) of interest, {} no-fly zone(s)",
            sm.altitude_m,
            sm.lane_spacing_m,
            sm.sweep_heading_deg,
            sm.points_of_interest,
            air.zones.len()
        ),
    ];
    for (i, l) in lines.iter().enumerate() {
        let _ = writeln!(
            s,
            r##"<text x="{pad}" y="{:.1}" font-size="14">{}</text>"##,
            by + 42.0 + 20.0 * i as f64,
            esc(l)
        );
    }
    let mut lx = pad;
    let ly = by + 90.0;
    for (i, so) in plan.sorties.iter().enumerate() {
        let _ = writeln!(
            s,
            r##"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="4"/><text x="{:.1}" y="{:.1}" font-size="12">sortie {} ({:.1} min)</text>"##,
            lx + 20.0,
            sortie_colour(i),
            lx + 24.0,
            ly + 4.0,
            i + 1,
            so.time_s / 60.0
        );
        lx += 140.0;
        if lx > w {
            break;
        }
    }
    s.push_str("</svg>\n");
    s
}

struct Region(geo::MultiPolygon<f64>);

impl Region {
    fn d(&self, v: &View) -> String {
        let mut out = Vec::new();
        for poly in &self.0 .0 {
            out.push(v.path(&geom::open_ring(poly.exterior()), true));
            for h in poly.interiors() {
                out.push(v.path(&geom::open_ring(h), true));
            }
        }
        out.join(" ")
    }
}
