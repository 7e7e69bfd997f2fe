//! Planner benchmarks (criterion). Run:
//! `CARGO_TARGET_DIR=… cargo bench -p tiancha-mission-planner --bench planner`
//!
//! Groups:
//! * `plan/1km2_10nfz` — a 1 km² non-convex area with a hole and 10 no-fly
//!   zones, planned end to end (target < 50 ms);
//! * `plan/25km2` — a 25 km² non-convex area with 4 zones (target < 1 s);
//! * `tour/200_points` — 200 points of interest ordered (Euclidean matrix)
//!   and `plan/200_points_10nfz` — the same points planned around 10
//!   zones, shortest-path matrix included (target < 200 ms);
//! * `sweep/eval_one_angle` — one evaluation of the sweep objective.
//!
//! Before the groups it prints the comparison with QGroundControl's
//! single-angle lawnmower (path length and time, same area, same spacing).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;
use tiancha_geometry::geodesy::{LatLon, LocalFrame};
use tiancha_mission_planner::coverage::{lanes_cost, lawnmower, sweep_time_s, SweepParams};
use tiancha_mission_planner::geom::dist;
use tiancha_mission_planner::tour::order_points;
use tiancha_mission_planner::{
    plan_patrol, Area, GeoPolygon, NoFlyZone, PlanRequest, PointOfInterest, ZoneShape,
};

const ORIGIN: LatLon = LatLon::new(28.45, 117.94);

fn ll(e: f64, n: f64) -> LatLon {
    LocalFrame::at(ORIGIN).from_en(e, n)
}

fn poly(pts: &[(f64, f64)], s: f64) -> GeoPolygon {
    GeoPolygon {
        exterior: pts.iter().map(|&(e, n)| ll(e * s, n * s)).collect(),
        holes: vec![],
    }
}

/// A non-convex outline with a notch, scaled to `s` (s = 1 → ≈ 1 km²).
fn outline(s: f64) -> GeoPolygon {
    let mut p = poly(
        &[
            (0.0, 0.0),
            (1300.0, 0.0),
            (1300.0, 500.0),
            (700.0, 450.0),
            (650.0, 1000.0),
            (300.0, 1050.0),
            (0.0, 900.0),
        ],
        s,
    );
    p.holes.push(
        [
            (150.0, 600.0),
            (140.0, 720.0),
            (280.0, 700.0),
            (260.0, 600.0),
        ]
        .iter()
        .map(|&(e, n)| ll(e * s, n * s))
        .collect(),
    );
    p
}

fn zones(n: usize, s: f64) -> Vec<NoFlyZone> {
    (0..n)
        .map(|i| {
            let (e, nn) = (
                100.0 + (i as f64 * 0.618).fract() * 1100.0,
                80.0 + (i as f64 * 0.414).fract() * 380.0 + if i % 3 == 0 { 450.0 } else { 0.0 },
            );
            let (e, nn) = (e.min(600.0 + (i % 2) as f64 * 600.0) * s, nn * s);
            let shape = if i % 2 == 0 {
                ZoneShape::Circle {
                    center: ll(e, nn),
                    radius_m: 20.0 + 5.0 * (i % 4) as f64,
                }
            } else {
                ZoneShape::Polygon {
                    polygon: GeoPolygon {
                        exterior: vec![
                            ll(e - 30.0, nn - 25.0),
                            ll(e + 35.0, nn - 20.0),
                            ll(e + 5.0, nn + 30.0),
                        ],
                        holes: vec![],
                    },
                }
            };
            NoFlyZone {
                name: format!("zone {i}"),
                shape,
                buffer_m: 15.0,
            }
        })
        .collect()
}

fn request(s: f64, nz: usize) -> PlanRequest {
    let mut r = PlanRequest {
        areas: vec![Area {
            name: "bench".into(),
            polygon: outline(s),
        }],
        no_fly_zones: zones(nz, s),
        ..Default::default()
    };
    r.vehicle.home = Some(ll(-30.0, -30.0));
    r.vehicle.endurance_min = Some(25.0);
    r.vehicle.reserve_min = Some(5.0);
    r
}

fn pois(n: usize) -> Vec<PointOfInterest> {
    let mut st = 0x2545f4914f6cdd1du64;
    let mut rnd = move || {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        (st >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| PointOfInterest {
            name: format!("p{i}"),
            position: ll(rnd() * 550.0, rnd() * 420.0),
            dwell_s: 0.0,
            priority: 0,
        })
        .collect()
}

/// The comparison with QGroundControl's survey, printed once.
fn compare_with_lawnmower() {
    eprintln!("\n| area | tiancha heading | tiancha length km | QGC 0° length km | QGC best-angle length km | ratio vs 0° | ratio vs best | tiancha time min | QGC 0° time min | QGC best time min |");
    eprintln!("|---|---|---|---|---|---|---|---|---|---|");
    let shapes: Vec<(&str, PlanRequest)> = vec![
        ("rectangle 1.2×0.8 km", {
            let mut r = request(1.0, 0);
            r.areas[0].polygon = poly(
                &[(0.0, 0.0), (1200.0, 0.0), (1200.0, 800.0), (0.0, 800.0)],
                1.0,
            );
            r
        }),
        ("rotated rectangle (25°)", {
            let mut r = request(1.0, 0);
            let (sn, c) = (25f64.to_radians().sin(), 25f64.to_radians().cos());
            let pts: Vec<(f64, f64)> = [(0.0, 0.0), (1200.0, 0.0), (1200.0, 400.0), (0.0, 400.0)]
                .iter()
                .map(|&(x, y)| (x * c - y * sn + 200.0, x * sn + y * c))
                .collect();
            r.areas[0].polygon = poly(&pts, 1.0);
            r
        }),
        ("village with notch and pond (1 km²)", request(1.0, 0)),
        ("L-shape 1 km", {
            let mut r = request(1.0, 0);
            r.areas[0].polygon = poly(
                &[
                    (0.0, 0.0),
                    (1000.0, 0.0),
                    (1000.0, 300.0),
                    (300.0, 300.0),
                    (300.0, 1000.0),
                    (0.0, 1000.0),
                ],
                1.0,
            );
            r
        }),
        ("comb (3 teeth)", {
            let mut r = request(1.0, 0);
            r.areas[0].polygon = poly(
                &[
                    (0.0, 0.0),
                    (1000.0, 0.0),
                    (1000.0, 900.0),
                    (850.0, 900.0),
                    (850.0, 200.0),
                    (600.0, 200.0),
                    (600.0, 900.0),
                    (400.0, 900.0),
                    (400.0, 200.0),
                    (150.0, 200.0),
                    (150.0, 900.0),
                    (0.0, 900.0),
                ],
                1.0,
            );
            r
        }),
    ];
    for (name, mut req) in shapes {
        req.vehicle.endurance_min = Some(600.0);
        let plan = plan_patrol(&req).unwrap();
        let air = &plan.airspace;
        let prm = SweepParams {
            spacing_m: plan.camera.lane_spacing_m,
            speed_mps: req.vehicle.cruise_speed_mps,
            turn_cost_s: req.vehicle.turn_cost_s,
            extend_m: 0.0,
        };
        let qgc = |h: f64| {
            let mut pts = vec![air.home_local];
            pts.extend(lawnmower(air, h, prm.spacing_m));
            pts.push(air.home_local);
            let lanes: Vec<_> = pts
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| (c[0], c[1]))
                .collect();
            let (len, t) = lanes_cost(&lanes, &prm);
            (
                len,
                t + (plan.summary.altitude_m / req.vehicle.climb_rate_mps)
                    + plan.summary.altitude_m / req.vehicle.descent_rate_mps,
            )
        };
        let q0 = qgc(0.0);
        let qb = (0..180)
            .map(|h| qgc(h as f64))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap();
        let (ml, mt) = (plan.summary.length_m, plan.summary.time_s);
        eprintln!(
            "| {name} | {:.1}° | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} | {:.1} | {:.1} | {:.1} |",
            plan.coverage.heading_deg,
            ml / 1000.0,
            q0.0 / 1000.0,
            qb.0 / 1000.0,
            ml / q0.0,
            ml / qb.0,
            mt / 60.0,
            q0.1 / 60.0,
            qb.1 / 60.0
        );
        let _ = dist;
    }
    eprintln!();
}

fn benches(c: &mut Criterion) {
    compare_with_lawnmower();
    let small = request(1.0, 10);
    let big = {
        let mut r = request(5.0, 4);
        r.camera.altitude_agl_m = Some(100.0);
        // A larger drone launched from the middle of the area.
        r.vehicle.home = Some(ll(1500.0, 1000.0));
        r.vehicle.endurance_min = Some(45.0);
        r
    };
    {
        let p = plan_patrol(&small).unwrap();
        eprintln!(
            "1 km² case: area {:.3} km², {} zones, {} sorties, coverage {:.2} %, graph {:?}",
            p.summary.area_m2 / 1e6,
            small.no_fly_zones.len(),
            p.summary.sorties,
            p.summary.coverage_percent,
            p.airspace.graph_size()
        );
        let p = plan_patrol(&big).unwrap();
        eprintln!(
            "25 km² case: area {:.2} km², {} sorties, {:.0} km, coverage {:.2} %",
            p.summary.area_m2 / 1e6,
            p.summary.sorties,
            p.summary.length_m / 1000.0,
            p.summary.coverage_percent
        );
    }
    let mut g = c.benchmark_group("plan");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("1km2_10nfz", |b| {
        b.iter(|| plan_patrol(black_box(&small)).unwrap())
    });
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("25km2", |b| {
        b.iter(|| plan_patrol(black_box(&big)).unwrap())
    });
    let mut with_pois = request(1.0, 10);
    with_pois.areas.clear();
    with_pois.points_of_interest = pois(200);
    with_pois.no_fly_zones = zones(10, 1.0)
        .into_iter()
        .filter(|z| {
            // Keep zones that leave every point reachable.
            let ok = |q: LatLon| match &z.shape {
                ZoneShape::Circle { center, radius_m } => {
                    tiancha_geometry::geodesy::distance_m(*center, q) > radius_m + z.buffer_m + 5.0
                }
                ZoneShape::Polygon { polygon } => polygon
                    .exterior
                    .iter()
                    .all(|v| tiancha_geometry::geodesy::distance_m(*v, q) > z.buffer_m + 60.0),
            };
            with_pois_ok(&pois(200), ok)
        })
        .collect();
    with_pois.vehicle.endurance_min = Some(600.0);
    let nz = with_pois.no_fly_zones.len();
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function(format!("200_points_{nz}nfz"), |b| {
        b.iter(|| plan_patrol(black_box(&with_pois)).unwrap())
    });
    g.finish();

    let pts: Vec<(f64, f64)> = {
        let fr = LocalFrame::at(ORIGIN);
        pois(200).iter().map(|p| fr.to_en(p.position)).collect()
    };
    let d: Vec<Vec<f64>> = pts
        .iter()
        .map(|a| pts.iter().map(|b| (a.0 - b.0).hypot(a.1 - b.1)).collect())
        .collect();
    let mut g = c.benchmark_group("tour");
    g.sample_size(20);
    g.bench_function("200_points", |b| b.iter(|| order_points(black_box(&d))));
    g.finish();

    let p = plan_patrol(&small).unwrap();
    let prm = SweepParams {
        spacing_m: p.camera.lane_spacing_m,
        speed_mps: small.vehicle.cruise_speed_mps,
        turn_cost_s: small.vehicle.turn_cost_s,
        extend_m: 0.0,
    };
    let mut g = c.benchmark_group("sweep");
    g.bench_function("eval_one_angle_1km2", |b| {
        b.iter(|| sweep_time_s(&p.airspace, black_box(37.0), &prm))
    });
    g.finish();
}

fn with_pois_ok(pois: &[PointOfInterest], ok: impl Fn(LatLon) -> bool) -> bool {
    pois.iter().all(|p| ok(p.position))
}

criterion_group!(planner, benches);
criterion_main!(planner);
