//! Patrol planning as pure functions over plain data: no I/O, no clock.
//!
//! **What it does.** Given an area (polygons with holes), no-fly zones
//! (polygons and circles, each with a safety buffer), points of interest
//! (with dwell and priority), a camera and a vehicle with its battery, it
//! plans a patrol that
//! * covers the area with the camera footprint: lanes spaced from the
//!   footprint and side overlap, decomposed into boustrophedon cells, at the
//!   sweep angle that minimises flight time (turns included);
//! * routes around every buffered no-fly zone and stays inside the fence
//!   (shortest paths on a visibility graph of the free space);
//! * orders cells and points of interest into one tour (nearest neighbour,
//!   then 2-opt, Or-opt and cell-entry changes to a local optimum);
//! * splits the tour into sorties that each fit the battery with its
//!   reserve, transits to and from home included, each resuming a little
//!   before where the last one stopped;
//! * writes MAVLink mission items ([`tiancha_protocol::mission`]) for
//!   ArduPilot (home at seq 0) or PX4, an inclusion fence, exclusion fences
//!   and rally points, plus a summary (length, time, sorties, coverage %);
//! * re-plans on demand: [`plan_investigation`] inserts an "investigate
//!   this point" detour (fly there clear of the zones, orbit with the
//!   region of interest on the target, fly back, resume) into a running
//!   sortie, and refuses unsafe targets with an error naming the zone.
//!
//! Files are text ↔ data in [`formats`]: QGroundControl `.plan`
//! ([`formats::qgc`]), GeoJSON and KML; [`render::svg`] draws the plan;
//! [`config::PlanConfig`] is the `tiancha plan` TOML file.
//!
//! **For the companion.** [`PlanRequest::from_patrol_spec`] turns a
//! launch-patrol command's `PatrolSpec` (plus the drone's configured
//! [`Vehicle`] and [`Camera`]) into a request, reading an attached
//! QGroundControl plan; [`formats::qgc::read_plan`] gives a plan's
//! `MissionSet` to fly as-is; [`plan_patrol`] plans; [`Plan::investigate`] /
//! [`plan_investigation`] re-plan; [`Airspace::check_point`],
//! [`Plan::check_point`] and [`check_point`] refuse unsafe targets with a
//! readable reason.
//!
//! **What it does not do.** No file or network I/O, no clock, no
//! threads: the `tiancha plan` command and the companion daemon do those.
//! It does not model terrain (altitudes are above home on flat ground) or
//! wind, and it does not upload missions (the firmware bridge does).
//!
//! **Main types.** [`PlanRequest`] (with [`Camera`], [`Vehicle`],
//! [`PlanOptions`]) → [`plan_patrol`] → [`Plan`] (per-sortie [`Sortie`]
//! with its `MissionSet` and lat/lon route, [`Fence`], rally points,
//! [`Summary`], and the [`Airspace`] for re-plans and
//! [`Airspace::check_point`]). Every failure is a [`PlanError`] that names
//! the problem and where it is.
//!
//! ```
//! use tiancha_mission_planner::{plan_patrol, Area, GeoPolygon, PlanRequest};
//! use tiancha_geometry::geodesy::LatLon;
//!
//! let ring = vec![
//!     LatLon::new(28.450, 117.940), LatLon::new(28.450, 117.944),
//!     LatLon::new(28.453, 117.944), LatLon::new(28.453, 117.940),
//! ];
//! let mut req = PlanRequest::default();
//! req.areas.push(Area { name: "cell".into(), polygon: GeoPolygon { exterior: ring, holes: vec![] } });
//! req.vehicle.home = Some(LatLon::new(28.4499, 117.9399));
//! let plan = plan_patrol(&req).unwrap();
//! assert!(plan.summary.coverage_percent > 99.0);
//! assert_eq!(plan.sorties[0].mission.mission[0].frame, 0); // ArduPilot home at seq 0
//! ```
//!
//! Coordinates inside the planner are metres east/north in a local tangent
//! plane at home ([`tiancha_geometry::geodesy::LocalFrame`], exact ECEF
//! rotation with nalgebra: a 10 km plan round-trips WGS84 → local → WGS84
//! well within 1 mm).

pub mod airspace;
pub mod config;
pub mod coverage;
pub mod error;
pub mod formats;
pub mod geom;
pub mod mission;
pub mod plan;
pub mod render;
pub mod replan;
pub mod request;
pub mod route;
pub mod tour;
pub mod verify;

pub use airspace::Airspace;
pub use error::{PlanError, Where};
pub use plan::{check_point, plan_patrol, Fence, Plan, Sortie, Summary};
pub use replan::{plan_investigation, InvestigateRequest, Investigation};
pub use request::{
    Area, Autopilot, Camera, GeoPolygon, NoFlyZone, PlanOptions, PlanRequest, PointOfInterest,
    Vehicle, ZoneShape,
};
pub use tiancha_geometry::geodesy::{LatLon, LatLonAlt};

impl Plan {
    /// Re-plan the running sortie for an investigation (see
    /// [`plan_investigation`]); autopilot and speed come from the plan.
    #[allow(clippy::too_many_arguments)]
    pub fn investigate(
        &self,
        mission: &[tiancha_protocol::mission::MissionItem],
        current_seq: u16,
        position: tiancha_geometry::geodesy::LatLon,
        alt_rel_m: f64,
        target: tiancha_geometry::geodesy::LatLon,
        orbit_radius_m: f64,
        duration_s: f64,
    ) -> Result<Investigation, PlanError> {
        plan_investigation(
            &self.airspace,
            &InvestigateRequest {
                mission: mission.to_vec(),
                current_seq,
                position,
                alt_rel_m,
                target,
                orbit_radius_m,
                duration_s,
                autopilot: self.autopilot,
                speed_mps: self.style.speed_mps,
            },
        )
    }
}
