//! Behaviour of the planner: geodesy, sweep-angle choice, tours, sorties,
//! mission flavours, errors that name the problem, and the re-plan.

mod common;

use common::*;
use tiancha_geometry::geodesy::LatLon;
use tiancha_mission_planner::coverage::{sweep_time_s, SweepParams};
use tiancha_mission_planner::geom::{dist, P};
use tiancha_mission_planner::mission::DO_SET_CAM_TRIGG_DIST;
use tiancha_mission_planner::tour::{Node, Problem};
use tiancha_mission_planner::{
    check_point, plan_patrol, verify, Airspace, Autopilot, InvestigateRequest, Plan, PlanError,
    PlanRequest,
};
use tiancha_protocol::mission::{cmd, frame, MissionItem};
use tiancha_protocol::validate::Validate;

fn demo_request() -> PlanRequest {
    request(
        vec![village()],
        vec![
            circle_zone("hospital helipad", 900.0, 250.0, 60.0, 30.0),
            poly_zone(
                "prison",
                &[(200.0, 200.0), (380.0, 220.0), (300.0, 380.0)],
                40.0,
            ),
        ],
        vec![
            poi("market", 700.0, 100.0, 30.0, 1),
            poi("village shop", 100.0, 950.0, 20.0, 0),
            poi("school gate", 450.0, 700.0, 45.0, 3),
        ],
        (-50.0, -50.0),
    )
}

fn demo_plan() -> (PlanRequest, Plan) {
    let req = demo_request();
    let plan = plan_patrol(&req).expect("demo plans");
    (req, plan)
}

#[test]
fn ten_km_plan_round_trips_through_the_local_frame_within_a_millimetre() {
    let req = demo_request();
    let air = Airspace::new(&req, 50.0).unwrap();
    for i in 0..200 {
        let a = i as f64 * 0.377;
        let r = 10_000.0 * ((i % 10) as f64 + 1.0) / 10.0;
        let q = air.to_latlon(tiancha_mission_planner::geom::p(r * a.cos(), r * a.sin()));
        let back = air.to_latlon(air.to_local(q));
        let err = tiancha_geometry::geodesy::distance_m(q, back);
        assert!(err < 1e-3, "{err} m at {r} m");
        let local = air.to_local(q);
        assert!(
            (dist(
                local,
                tiancha_mission_planner::geom::p(r * a.cos(), r * a.sin())
            )) < 1e-3
        );
    }
}

#[test]
fn chosen_sweep_angle_is_within_one_percent_of_the_best_of_180() {
    let shapes: Vec<PlanRequest> = vec![
        demo_request(),
        // A long thin field at 30° from north.
        request(
            vec![area(
                "strip",
                &{
                    let (s, c) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
                    let pts = [(0.0, 0.0), (150.0, 0.0), (150.0, 1500.0), (0.0, 1500.0)];
                    pts.iter()
                        .map(|&(x, y)| (x * c + y * s, -x * s + y * c))
                        .collect::<Vec<_>>()
                },
                &[],
            )],
            vec![],
            vec![],
            (-40.0, -40.0),
        ),
        // An L with a zone in the corner.
        request(
            vec![area(
                "L",
                &[
                    (0.0, 0.0),
                    (900.0, 0.0),
                    (900.0, 300.0),
                    (300.0, 300.0),
                    (300.0, 900.0),
                    (0.0, 900.0),
                ],
                &[],
            )],
            vec![circle_zone("mast", 250.0, 250.0, 40.0, 20.0)],
            vec![],
            (-40.0, -40.0),
        ),
    ];
    for req in shapes {
        let plan = plan_patrol(&req).unwrap();
        let prm = SweepParams {
            spacing_m: plan.camera.lane_spacing_m,
            speed_mps: req.vehicle.cruise_speed_mps,
            turn_cost_s: req.vehicle.turn_cost_s,
            extend_m: 0.0,
        };
        let chosen = sweep_time_s(&plan.airspace, plan.coverage.heading_deg, &prm);
        let best = (0..180)
            .map(|i| sweep_time_s(&plan.airspace, i as f64, &prm))
            .fold(f64::INFINITY, f64::min);
        assert!(
            chosen <= best * 1.01,
            "{}: chosen {:.1}° gives {chosen:.1} s, best of 180 is {best:.1} s",
            req.areas[0].name,
            plan.coverage.heading_deg
        );
    }
}

#[test]
fn thin_strip_is_swept_along_its_length() {
    let (s, c) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
    let pts: Vec<(f64, f64)> = [(0.0, 0.0), (120.0, 0.0), (120.0, 2000.0), (0.0, 2000.0)]
        .iter()
        .map(|&(x, y)| (x * c + y * s, -x * s + y * c))
        .collect();
    let req = request(
        vec![area("strip", &pts, &[])],
        vec![],
        vec![],
        (-30.0, -30.0),
    );
    let plan = plan_patrol(&req).unwrap();
    let h = plan.coverage.heading_deg;
    // The strip runs 30° east of north.
    assert!((h - 30.0).abs() < 2.0, "heading {h}");
}

/// Every 2-opt move of a closed tour, checked independently of the
/// planner's own move evaluation.
fn two_opt_improvable(order: &[usize], d: &dyn Fn(usize, usize) -> f64) -> bool {
    let n = order.len();
    let len = |o: &[usize]| {
        (0..o.len())
            .map(|i| d(o[i], o[(i + 1) % o.len()]))
            .sum::<f64>()
    };
    let base = len(order);
    for i in 1..n {
        for j in i + 1..n {
            let mut o = order.to_vec();
            o[i..=j].reverse();
            if len(&o) < base - 1e-7 {
                return true;
            }
        }
    }
    false
}

fn brute_force(d: &dyn Fn(usize, usize) -> f64, n: usize) -> f64 {
    fn rec(
        d: &dyn Fn(usize, usize) -> f64,
        path: &mut Vec<usize>,
        used: &mut [bool],
        cost: f64,
        best: &mut f64,
    ) {
        let n = used.len();
        if cost >= *best {
            return;
        }
        if path.len() == n {
            *best = best.min(cost + d(*path.last().unwrap(), 0));
            return;
        }
        for k in 1..n {
            if !used[k] {
                used[k] = true;
                let c = d(*path.last().unwrap(), k);
                path.push(k);
                rec(d, path, used, cost + c, best);
                path.pop();
                used[k] = false;
            }
        }
    }
    let mut used = vec![false; n];
    used[0] = true;
    let mut best = f64::INFINITY;
    rec(d, &mut vec![0], &mut used, 0.0, &mut best);
    best
}

#[test]
fn point_tours_are_two_opt_optimal_and_within_two_percent_of_exact() {
    // Deterministic pseudo-random instances (xorshift), 5..=10 points.
    let mut s = 0x9e3779b97f4a7c15u64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut worst: f64 = 0.0;
    for inst in 0..60 {
        let n = 5 + inst % 6;
        let pts: Vec<(f64, f64)> = (0..n).map(|_| (rnd() * 1000.0, rnd() * 1000.0)).collect();
        let d = |a: usize, b: usize| (pts[a].0 - pts[b].0).hypot(pts[a].1 - pts[b].1);
        let nodes: Vec<Node> = (0..n).map(|i| Node::point(i, 0.0)).collect();
        let pb = Problem {
            nodes: &nodes,
            cost: &d,
        };
        let tour = pb.solve();
        let order: Vec<usize> = tour.iter().map(|t| t.0).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            (0..n).collect::<Vec<_>>(),
            "a tour visits every point once"
        );
        assert!(
            !two_opt_improvable(&order, &d),
            "instance {inst}: an improving 2-opt move remains"
        );
        let cost = pb.tour_cost(&tour);
        let (exact, _) = pb.exact().unwrap();
        if n <= 8 {
            let bf = brute_force(&d, n);
            assert!(
                (bf - exact).abs() < 1e-6,
                "Held–Karp {exact} vs brute force {bf}"
            );
        }
        assert!(
            cost <= exact * 1.02 + 1e-9,
            "instance {inst}: {cost} vs optimum {exact}"
        );
        worst = worst.max(cost / exact - 1.0);
    }
    eprintln!(
        "worst gap to the optimum over 60 instances: {:.3} %",
        worst * 100.0
    );
}

#[test]
fn the_demo_plan_is_safe_complete_and_speaks_ardupilot() {
    let (req, plan) = demo_plan();
    assert!(plan.summary.coverage_percent >= 99.0, "{}", plan.summary);
    for s in &plan.sorties {
        let line: Vec<P> = s.route_local.iter().map(|r| r.p).collect();
        let (m, zone) = verify::min_zone_clearance(&plan.airspace, &line).unwrap();
        assert!(m >= -1e-6, "enters buffered zone {zone} by {m}");
        assert!(verify::inside_emitted_fence(&plan.airspace, &line));
        // Missions are valid protocol data, home first, RTL last.
        s.mission.validate().unwrap();
        let m0 = s.mission.mission[0];
        assert_eq!((m0.command, m0.frame), (cmd::NAV_WAYPOINT, frame::GLOBAL));
        assert!((m0.lat_deg() - req.vehicle.home.unwrap().lat_deg).abs() < 1e-7);
        assert_eq!(s.mission.mission[1].command, cmd::NAV_TAKEOFF);
        assert_eq!(
            s.mission.mission.last().unwrap().command,
            cmd::NAV_RETURN_TO_LAUNCH
        );
        // Fence: one inclusion polygon, the prison polygon, the helipad circle.
        let incl: Vec<&MissionItem> = s
            .mission
            .fence
            .iter()
            .filter(|i| i.command == cmd::NAV_FENCE_POLYGON_VERTEX_INCLUSION)
            .collect();
        assert_eq!(incl.len(), incl[0].param1 as usize);
        assert!(s
            .mission
            .fence
            .iter()
            .any(|i| i.command == cmd::NAV_FENCE_POLYGON_VERTEX_EXCLUSION));
        let circle = s
            .mission
            .fence
            .iter()
            .find(|i| i.command == cmd::NAV_FENCE_CIRCLE_EXCLUSION)
            .unwrap();
        assert!(
            (circle.param1 - 75.0).abs() < 1e-3,
            "radius + half the buffer: {}",
            circle.param1
        );
        assert!(s
            .mission
            .rally
            .iter()
            .all(|r| r.command == cmd::NAV_RALLY_POINT));
        assert!(!s.mission.rally.is_empty());
    }
    // Every point of interest is visited with its dwell and camera on it.
    let all: Vec<&MissionItem> = plan
        .sorties
        .iter()
        .flat_map(|s| s.mission.mission.iter())
        .collect();
    for p in &req.points_of_interest {
        let roi = all.iter().any(|i| {
            i.command == cmd::DO_SET_ROI_LOCATION
                && (i.lat_deg() - p.position.lat_deg).abs() < 2e-7
                && (i.lon_deg() - p.position.lon_deg).abs() < 2e-7
        });
        assert!(roi, "no ROI on {}", p.name);
        let loiter = all.iter().any(|i| {
            i.command == cmd::NAV_LOITER_TIME && (i.param1 as f64 - p.dwell_s).abs() < 1e-3
        });
        assert!(loiter, "no dwell at {}", p.name);
    }
}

#[test]
fn px4_missions_have_no_home_item_and_use_the_gimbal_manager() {
    let mut req = demo_request();
    req.vehicle.autopilot = Autopilot::Px4;
    req.camera.trigger_photos = true;
    let plan = plan_patrol(&req).unwrap();
    let m = &plan.sorties[0].mission.mission;
    assert_eq!(m[0].command, cmd::NAV_TAKEOFF);
    assert!(m
        .iter()
        .any(|i| i.command == cmd::DO_GIMBAL_MANAGER_PITCHYAW));
    assert!(!m.iter().any(|i| i.command == cmd::DO_MOUNT_CONTROL));
    let trig = m
        .iter()
        .filter(|i| i.command == DO_SET_CAM_TRIGG_DIST)
        .count();
    assert!(
        trig >= 2 && trig % 2 == 0,
        "trigger on and off per lane: {trig}"
    );
}

#[test]
fn small_battery_splits_into_sorties_that_resume_with_overlap() {
    let mut req = demo_request();
    req.vehicle.endurance_min = Some(9.0);
    req.vehicle.reserve_min = Some(2.0);
    let plan = plan_patrol(&req).unwrap();
    assert!(plan.sorties.len() >= 3, "{} sorties", plan.sorties.len());
    assert!(plan.summary.coverage_percent >= 99.0, "{}", plan.summary);
    for s in &plan.sorties {
        assert!(s.battery_used <= 7.0 + 1e-9, "{} min used", s.battery_used);
        let first = s.route_local.first().unwrap().p;
        let last = s.route_local.last().unwrap().p;
        assert!(
            dist(first, plan.airspace.home_local) < 1e-6
                && dist(last, plan.airspace.home_local) < 1e-6
        );
    }
    // The sortie with the school gate (priority 3) flies first.
    let school = req
        .points_of_interest
        .iter()
        .position(|p| p.name == "school gate")
        .unwrap();
    assert!(plan.sorties[0].points_of_interest.contains(&school));
    // Every point of interest is visited exactly once over all sorties.
    let mut visits: Vec<usize> = plan
        .sorties
        .iter()
        .flat_map(|s| s.points_of_interest.clone())
        .collect();
    visits.sort();
    assert_eq!(visits, vec![0, 1, 2]);
}

#[test]
fn errors_name_the_problem_and_where_it_is() {
    // Self-intersecting area.
    let bow = request(
        vec![area(
            "bow",
            &[(0.0, 0.0), (500.0, 500.0), (500.0, 0.0), (0.0, 500.0)],
            &[],
        )],
        vec![],
        vec![],
        (-20.0, -20.0),
    );
    let e = plan_patrol(&bow).unwrap_err().to_string();
    assert!(
        e.starts_with("area polygon 0 ('bow') self-intersects at edge 0–1 and 2–3 near 28.45"),
        "{e}"
    );

    // Point of interest inside a buffered zone.
    let mut r = demo_request();
    r.points_of_interest
        .push(poi("clinic door", 905.0, 250.0, 0.0, 0));
    let e = plan_patrol(&r).unwrap_err();
    assert!(matches!(e, PlanError::InsideNoFlyZone { .. }));
    assert!(
        e.to_string().starts_with(
            "point of interest 'clinic door' is unreachable: inside no-fly zone 'hospital helipad' (buffer 30 m) at 28.45"
        ),
        "{e}"
    );

    // Area inside a no-fly zone.
    let r = request(
        vec![area(
            "yard",
            &[(0.0, 0.0), (50.0, 0.0), (50.0, 50.0), (0.0, 50.0)],
            &[],
        )],
        vec![circle_zone("airport", 25.0, 25.0, 500.0, 100.0)],
        vec![],
        (-900.0, 0.0),
    );
    let e = plan_patrol(&r).unwrap_err().to_string();
    assert!(
        e.contains("area 'yard'") && e.contains("inside no-fly zone 'airport' (buffer 100 m)"),
        "{e}"
    );

    // Battery too small for even one leg.
    let mut r = demo_request();
    r.vehicle.endurance_min = Some(2.0);
    r.vehicle.reserve_min = Some(1.0);
    let e = plan_patrol(&r).unwrap_err();
    assert!(matches!(e, PlanError::BatteryTooSmall { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("battery too small: the leg to ") && msg.contains("min, 1.00 usable"),
        "{msg}"
    );

    // A hole outside its polygon, a ring of two points, a bad coordinate.
    let r = request(
        vec![area(
            "a",
            &[(0.0, 0.0), (100.0, 0.0), (100.0, 100.0)],
            &[&[(500.0, 500.0), (510.0, 500.0), (510.0, 510.0)]],
        )],
        vec![],
        vec![],
        (-10.0, -10.0),
    );
    assert!(plan_patrol(&r)
        .unwrap_err()
        .to_string()
        .contains("hole 0 is not inside the exterior ring"));
    let mut r = demo_request();
    r.areas[0].polygon.exterior.truncate(2);
    assert!(plan_patrol(&r)
        .unwrap_err()
        .to_string()
        .contains("has only 2 distinct points"));
    let mut r = demo_request();
    r.areas[0].polygon.exterior[3] = LatLon::new(91.0, 117.0);
    assert_eq!(
        plan_patrol(&r).unwrap_err().to_string(),
        "area polygon 0 ('village'): point 3 (91, 117) is not a valid WGS84 position"
    );
    // Altitude above the fence ceiling.
    let mut r = demo_request();
    r.camera.altitude_agl_m = Some(150.0);
    assert!(matches!(
        plan_patrol(&r).unwrap_err(),
        PlanError::AltitudeOutsideFence { .. }
    ));
}

#[test]
fn check_point_refuses_with_a_reason() {
    let req = demo_request();
    assert!(check_point(&req, ll(100.0, 100.0)).is_ok());
    let e = check_point(&req, ll(900.0, 300.0)).unwrap_err().to_string();
    assert!(e.contains("no-fly zone 'hospital helipad'"), "{e}");
    let e = check_point(&req, ll(5000.0, 5000.0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the fence"), "{e}");
}

#[test]
fn patrol_spec_from_the_wire_plans() {
    use tiancha_protocol::{
        GeoPoint, GeoPolygon, NoFlyZone, PatrolSpec, PointOfInterest, ZoneShape,
    };
    let gp = |e: f64, n: f64| {
        let q = ll(e, n);
        GeoPoint::new(q.lat_deg, q.lon_deg)
    };
    let spec = PatrolSpec {
        name: Some("wire".into()),
        areas: vec![GeoPolygon {
            exterior: vec![
                gp(0.0, 0.0),
                gp(400.0, 0.0),
                gp(400.0, 300.0),
                gp(0.0, 300.0),
            ],
            holes: vec![],
        }],
        no_fly_zones: vec![NoFlyZone {
            name: "helipad".into(),
            shape: ZoneShape::Circle {
                center: gp(200.0, 150.0),
                radius_m: 30.0,
            },
            buffer_m: 20.0,
        }],
        points_of_interest: vec![PointOfInterest {
            name: "gate".into(),
            position: gp(50.0, 250.0),
            dwell_s: 10.0,
            priority: 1,
        }],
        altitude_rel_m: Some(50.0),
        qgc_plan: None,
    };
    let v = tiancha_mission_planner::Vehicle {
        home: Some(ll(-20.0, -20.0)),
        ..Default::default()
    };
    let req = PlanRequest::from_patrol_spec(&spec, &v, &Default::default()).unwrap();
    assert_eq!(req.camera.altitude_agl_m, Some(50.0));
    let plan = plan_patrol(&req).unwrap();
    assert!(plan.summary.coverage_percent >= 99.0);
    assert_eq!(plan.fence.exclusion_circles.len(), 1);
}

fn investigate(
    plan: &Plan,
    target: LatLon,
    radius: f64,
) -> Result<tiancha_mission_planner::Investigation, PlanError> {
    let s = &plan.sorties[0];
    let m = &s.mission.mission;
    // The drone is on its way to the 8th navigation waypoint.
    let (cur, _) = m
        .iter()
        .enumerate()
        .filter(|(_, i)| i.command == cmd::NAV_WAYPOINT && i.frame != frame::GLOBAL)
        .nth(8)
        .unwrap();
    let prev = m[..cur]
        .iter()
        .rev()
        .find(|i| i.command == cmd::NAV_WAYPOINT)
        .unwrap();
    let pos = LatLon::new(
        (prev.lat_deg() + m[cur].lat_deg()) / 2.0,
        (prev.lon_deg() + m[cur].lon_deg()) / 2.0,
    );
    plan.investigate(m, cur as u16, pos, 60.0, target, radius, 60.0)
}

#[test]
fn investigation_detours_around_zones_orbits_and_resumes() {
    let (_, plan) = demo_plan();
    let m = &plan.sorties[0].mission.mission;
    // A target behind the helipad from most of the area.
    let target = ll(1100.0, 250.0);
    let inv = investigate(&plan, target, 30.0).unwrap();
    let air = &plan.airspace;
    for path in [&inv.path_to_target, &inv.path_back] {
        let line: Vec<P> = path.iter().map(|q| air.to_local(*q)).collect();
        let (clear, zone) = verify::min_zone_clearance(air, &line).unwrap();
        assert!(clear >= -1e-6, "detour enters {zone}");
        assert!(verify::inside_emitted_fence(air, &line));
    }
    let nm = &inv.mission;
    assert_eq!(nm[0], m[0], "home item kept");
    assert_eq!(inv.start_seq, 1);
    let roi = nm
        .iter()
        .position(|i| i.command == cmd::DO_SET_ROI_LOCATION)
        .unwrap();
    assert!((nm[roi].lat_deg() - target.lat_deg).abs() < 1e-7);
    let orbit = nm
        .iter()
        .find(|i| i.command == cmd::NAV_LOITER_TURNS)
        .unwrap();
    assert_eq!(orbit.param3, 30.0);
    assert!(orbit.param1 >= 1.0);
    assert!(nm.iter().any(|i| i.command == cmd::DO_SET_ROI_NONE));
    // The patrol resumes with the item it was flying to, and the rest.
    let cur = m.len() - (nm.len() - inv.resume_seq as usize);
    assert_eq!(&nm[inv.resume_seq as usize..], &m[cur..]);
    // The way back ends where the drone left the patrol.
    let back_end = *inv.path_back.last().unwrap();
    let left = nm[inv.resume_seq as usize - 1];
    assert!((left.lat_deg() - back_end.lat_deg).abs() < 1e-6);
    assert!(inv.detour_length_m > 0.0 && inv.detour_time_s >= 60.0);
}

#[test]
fn investigation_refuses_unsafe_targets_naming_the_zone() {
    let (_, plan) = demo_plan();
    let e = investigate(&plan, ll(900.0, 250.0), 30.0).unwrap_err();
    assert!(
        matches!(&e, PlanError::InsideNoFlyZone { zone, .. } if zone == "hospital helipad"),
        "{e}"
    );
    // The target is clear but the orbit would cross the buffer.
    let e = investigate(&plan, ll(900.0, 370.0), 40.0).unwrap_err();
    assert!(
        e.to_string().contains("orbit radius 40 m") && e.to_string().contains("hospital helipad"),
        "{e}"
    );
    let e = investigate(&plan, ll(5000.0, 0.0), 30.0).unwrap_err();
    assert!(matches!(e, PlanError::OutsideFence { .. }), "{e}");
}

#[test]
fn px4_investigation_orbits_with_waypoints() {
    let mut req = demo_request();
    req.vehicle.autopilot = Autopilot::Px4;
    let plan = plan_patrol(&req).unwrap();
    let target = ll(150.0, 850.0);
    let s = &plan.sorties[0];
    let inv = tiancha_mission_planner::plan_investigation(
        &plan.airspace,
        &InvestigateRequest {
            mission: s.mission.mission.clone(),
            current_seq: 5,
            position: s.route[2],
            alt_rel_m: 60.0,
            target,
            orbit_radius_m: 25.0,
            duration_s: 40.0,
            autopilot: Autopilot::Px4,
            speed_mps: 8.0,
        },
    )
    .unwrap();
    assert_eq!(inv.start_seq, 0);
    let roi = inv
        .mission
        .iter()
        .position(|i| i.command == cmd::DO_SET_ROI_LOCATION)
        .unwrap();
    let ring: Vec<&MissionItem> = inv.mission[roi + 1..]
        .iter()
        .take_while(|i| i.command == cmd::NAV_WAYPOINT)
        .collect();
    assert!(ring.len() >= 12);
    let air = &plan.airspace;
    let c = air.to_local(target);
    for w in ring {
        let r = dist(air.to_local(LatLon::new(w.lat_deg(), w.lon_deg())), c);
        assert!((r - 25.0).abs() < 0.05, "{r}");
    }
}

#[test]
fn energy_battery_model_keeps_every_sortie_within_usable_wh() {
    let mut req = demo_request();
    req.vehicle.endurance_min = None;
    req.vehicle.reserve_min = None;
    req.vehicle.capacity_wh = Some(60.0);
    req.vehicle.reserve_wh = Some(12.0);
    req.vehicle.cruise_power_w = Some(300.0);
    req.vehicle.hover_power_w = Some(350.0);
    let plan = plan_patrol(&req).unwrap();
    assert_eq!(plan.summary.battery_unit, "Wh");
    assert!((plan.summary.battery_usable - 48.0).abs() < 1e-9);
    assert!(plan.sorties.len() >= 2, "{}", plan.summary);
    for s in &plan.sorties {
        assert!(s.battery_used <= 48.0 + 1e-9, "{} Wh", s.battery_used);
        // At least cruise power for the flight time's share spent moving.
        assert!(s.battery_used >= 300.0 * (s.length_m / 8.0) / 3600.0);
    }
    // Missing cruise power is refused by name.
    req.vehicle.cruise_power_w = None;
    let e = plan_patrol(&req).unwrap_err().to_string();
    assert_eq!(e, "invalid vehicle.cruise_power_w: needed with capacity_wh");
}

#[test]
fn patrol_spec_with_a_qgc_plan_takes_its_survey_polygon_and_fence() {
    let q = |e: f64, n: f64| {
        let p = ll(e, n);
        serde_json::json!([p.lat_deg, p.lon_deg])
    };
    let doc = serde_json::json!({
        "fileType": "Plan", "version": 1, "groundStation": "QGroundControl",
        "geoFence": {"version": 2, "polygons": [], "circles": [
            {"inclusion": false, "version": 1, "circle": {"center": q(200.0, 150.0), "radius": 30.0}}]},
        "mission": {"version": 2, "firmwareType": 3, "plannedHomePosition": [ll(-20.0, -20.0).lat_deg, ll(-20.0, -20.0).lon_deg, 50.0],
            "items": [{"type": "ComplexItem", "complexItemType": "survey",
                "polygon": [q(0.0, 0.0), q(400.0, 0.0), q(400.0, 300.0), q(0.0, 300.0)],
                "TransectStyleComplexItem": {"Items": []}}]},
        "rallyPoints": {"version": 2, "points": []}
    });
    let spec = tiancha_protocol::PatrolSpec {
        name: None,
        areas: vec![],
        no_fly_zones: vec![],
        points_of_interest: vec![],
        altitude_rel_m: None,
        qgc_plan: Some(doc),
    };
    let req =
        PlanRequest::from_patrol_spec(&spec, &Default::default(), &Default::default()).unwrap();
    assert_eq!(req.areas.len(), 1);
    assert_eq!(req.no_fly_zones.len(), 1);
    assert!(req.vehicle.home.is_some());
    let plan = plan_patrol(&req).unwrap();
    assert!(plan.summary.coverage_percent >= 99.0);
}
