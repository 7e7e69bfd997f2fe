//! What the planner is asked: area(s), no-fly zones, points of interest,
//! camera, vehicle and options. Plain serde data (the CLI reads it from
//! TOML; the companion builds it from the wire contract with
//! [`PlanRequest::from_patrol_spec`]).

use serde::{Deserialize, Serialize};
use tiancha_geometry::geodesy::LatLon;

use crate::error::PlanError;

/// A polygon in WGS84 degrees with optional holes. Rings are open (the
/// first point is not repeated; a repeated closing point is accepted and
/// dropped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeoPolygon {
    pub exterior: Vec<LatLon>,
    #[serde(default)]
    pub holes: Vec<Vec<LatLon>>,
}

/// An area to watch (a grid cell, a village).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Area {
    #[serde(default)]
    pub name: String,
    #[serde(flatten)]
    pub polygon: GeoPolygon,
}

/// The shape of a no-fly zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum ZoneShape {
    Polygon {
        #[serde(flatten)]
        polygon: GeoPolygon,
    },
    Circle {
        center: LatLon,
        radius_m: f64,
    },
}

/// A no-fly zone with its safety buffer: the route keeps `buffer_m` from
/// the zone's edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoFlyZone {
    pub name: String,
    #[serde(flatten)]
    pub shape: ZoneShape,
    #[serde(default)]
    pub buffer_m: f64,
}

/// A place that matters (market, village shop, school gate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointOfInterest {
    pub name: String,
    pub position: LatLon,
    /// Hover (or orbit, see [`PlanOptions::poi_orbit_radius_m`]) time at
    /// the point, seconds.
    #[serde(default)]
    pub dwell_s: f64,
    /// Higher is more important: sorties holding high-priority points fly
    /// first.
    #[serde(default)]
    pub priority: u8,
}

/// Camera and how it is flown. Give either the sensor
/// (`sensor_width_mm`, `sensor_height_mm`, `focal_length_mm`) or the field
/// of view (`hfov_deg`, `vfov_deg`); give either `altitude_agl_m` or
/// `gsd_cm_per_px` (which needs `image_width_px`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Camera {
    pub sensor_width_mm: Option<f64>,
    pub sensor_height_mm: Option<f64>,
    pub focal_length_mm: Option<f64>,
    pub hfov_deg: Option<f64>,
    pub vfov_deg: Option<f64>,
    pub image_width_px: Option<u32>,
    pub image_height_px: Option<u32>,
    /// Gimbal pitch, degrees: -90 looks straight down.
    pub gimbal_pitch_deg: f64,
    /// Flight altitude above ground (≈ above home on flat ground).
    pub altitude_agl_m: Option<f64>,
    /// Target ground sample distance at nadir, cm per pixel.
    pub gsd_cm_per_px: Option<f64>,
    /// Overlap of consecutive footprints along track, 0..1.
    pub front_overlap: f64,
    /// Overlap of neighbouring lanes, 0..1.
    pub side_overlap: f64,
    /// Emit `DO_SET_CAM_TRIGG_DIST` so the camera takes photos at the
    /// front-overlap distance on lanes (video needs none).
    pub trigger_photos: bool,
}

/// The companion's default camera: a 1/2.3" 4K gimbal camera (DJI-class,
/// 6.17 × 4.55 mm sensor, 4.5 mm lens), nadir, 60 m AGL, 70 % / 30 %
/// overlap.
impl Default for Camera {
    fn default() -> Self {
        Camera {
            sensor_width_mm: Some(6.17),
            sensor_height_mm: Some(4.55),
            focal_length_mm: Some(4.5),
            hfov_deg: None,
            vfov_deg: None,
            image_width_px: Some(4000),
            image_height_px: Some(3000),
            gimbal_pitch_deg: -90.0,
            altitude_agl_m: Some(60.0),
            gsd_cm_per_px: None,
            front_overlap: 0.7,
            side_overlap: 0.3,
            trigger_photos: false,
        }
    }
}

/// Which autopilot the mission is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Autopilot {
    /// Home at mission seq 0.
    #[default]
    Ardupilot,
    /// No home item.
    Px4,
}

/// The vehicle and its battery. Give the battery either as endurance in
/// minutes (`endurance_min`, `reserve_min`) or as energy (`capacity_wh`,
/// `reserve_wh`, `cruise_power_w`, `hover_power_w`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Vehicle {
    pub autopilot: Autopilot,
    pub cruise_speed_mps: f64,
    pub climb_rate_mps: f64,
    pub descent_rate_mps: f64,
    /// Extra time for a full reversal (180° turn); scaled linearly by the
    /// turn angle at each waypoint.
    pub turn_cost_s: f64,
    pub endurance_min: Option<f64>,
    pub reserve_min: Option<f64>,
    pub capacity_wh: Option<f64>,
    pub reserve_wh: Option<f64>,
    pub cruise_power_w: Option<f64>,
    pub hover_power_w: Option<f64>,
    /// Launch point; if absent, the first point of interest or the area's
    /// first vertex is used (and the summary says so).
    pub home: Option<LatLon>,
    /// Home altitude AMSL, written into the ArduPilot home item.
    pub home_alt_amsl_m: f64,
    pub max_distance_from_home_m: Option<f64>,
    pub fence_alt_min_m: Option<f64>,
    pub fence_alt_max_m: Option<f64>,
}

/// The companion's default vehicle: a small quadcopter, 8 m/s cruise,
/// 25 min endurance with 5 min reserve.
impl Default for Vehicle {
    fn default() -> Self {
        Vehicle {
            autopilot: Autopilot::Ardupilot,
            cruise_speed_mps: 8.0,
            climb_rate_mps: 3.0,
            descent_rate_mps: 2.0,
            turn_cost_s: 4.0,
            endurance_min: Some(25.0),
            reserve_min: Some(5.0),
            capacity_wh: None,
            reserve_wh: None,
            cruise_power_w: None,
            hover_power_w: None,
            home: None,
            home_alt_amsl_m: 0.0,
            max_distance_from_home_m: None,
            fence_alt_min_m: None,
            fence_alt_max_m: Some(120.0),
        }
    }
}

/// Planning options with operator-friendly defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanOptions {
    /// How far beyond the area the route may go (turns, transits), metres.
    /// Raised to half a lane spacing if smaller.
    pub fence_margin_m: f64,
    /// The emitted inclusion fence is this much wider than where the route
    /// may go, so GPS noise does not trip it.
    pub fence_slack_m: f64,
    /// Extra clearance the route keeps beyond each zone's buffer (absorbs
    /// rounding), metres.
    pub clearance_m: f64,
    /// Extend each lane beyond the covered area by this much (fixed-wing
    /// turn-arounds; 0 for copters).
    pub turnaround_m: f64,
    /// A new sortie starts this far back along the route from where the
    /// last one stopped.
    pub resume_overlap_m: f64,
    /// Force the sweep angle (degrees clockwise from north); chosen to
    /// minimise flight time when absent.
    pub sweep_angle_deg: Option<f64>,
    /// Orbit points of interest at this radius while dwelling (0: hover
    /// above them).
    pub poi_orbit_radius_m: f64,
    /// Exclusion fences are emitted at the zone grown by this fraction of
    /// its buffer (the route keeps the whole buffer).
    pub exclusion_fence_buffer_fraction: f64,
    /// How many rally points to add besides home.
    pub rally_points: usize,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            fence_margin_m: 30.0,
            fence_slack_m: 15.0,
            clearance_m: 1.0,
            turnaround_m: 0.0,
            resume_overlap_m: 20.0,
            sweep_angle_deg: None,
            poi_orbit_radius_m: 0.0,
            exclusion_fence_buffer_fraction: 0.5,
            rally_points: 2,
        }
    }
}

/// Everything the planner needs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanRequest {
    pub name: Option<String>,
    pub areas: Vec<Area>,
    pub no_fly_zones: Vec<NoFlyZone>,
    pub points_of_interest: Vec<PointOfInterest>,
    /// Extra rally points given by the operator.
    pub rally_points: Vec<LatLon>,
    pub camera: Camera,
    pub vehicle: Vehicle,
    pub options: PlanOptions,
}

/// Derived camera geometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraGeometry {
    pub altitude_m: f64,
    pub hfov_rad: f64,
    pub vfov_rad: f64,
    /// Across-track width of the footprint at its near (narrowest) edge.
    pub footprint_width_m: f64,
    /// Along-track length of the footprint.
    pub footprint_length_m: f64,
    /// Forward offset of the footprint centre from the drone (oblique
    /// gimbal).
    pub footprint_offset_m: f64,
    /// Distance between lanes.
    pub lane_spacing_m: f64,
    /// Distance between photos on a lane.
    pub trigger_distance_m: f64,
    /// Ground sample distance at nadir, cm/px, if the image size is known.
    pub gsd_cm_per_px: Option<f64>,
}

fn positive(field: &str, v: f64) -> Result<f64, PlanError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(PlanError::param(
            field,
            format!("must be a positive number, got {v}"),
        ))
    }
}

fn fraction(field: &str, v: f64, max: f64) -> Result<f64, PlanError> {
    if v.is_finite() && (0.0..=max).contains(&v) {
        Ok(v)
    } else {
        Err(PlanError::param(
            field,
            format!("must be between 0 and {max}, got {v}"),
        ))
    }
}

impl Camera {
    /// Fields of view (h, v) in radians.
    fn fov_rad(&self) -> Result<(f64, f64), PlanError> {
        match (self.hfov_deg, self.vfov_deg) {
            (Some(h), Some(v)) => {
                let h = fraction("camera.hfov_deg", h, 170.0)?;
                let v = fraction("camera.vfov_deg", v, 170.0)?;
                positive("camera.hfov_deg", h)?;
                positive("camera.vfov_deg", v)?;
                Ok((h.to_radians(), v.to_radians()))
            }
            (None, None) => {
                let (Some(w), Some(hh), Some(f)) = (
                    self.sensor_width_mm,
                    self.sensor_height_mm,
                    self.focal_length_mm,
                ) else {
                    return Err(PlanError::param(
                        "camera",
                        "give hfov_deg and vfov_deg, or sensor_width_mm, sensor_height_mm and focal_length_mm",
                    ));
                };
                let w = positive("camera.sensor_width_mm", w)?;
                let hh = positive("camera.sensor_height_mm", hh)?;
                let f = positive("camera.focal_length_mm", f)?;
                Ok((2.0 * (w / (2.0 * f)).atan(), 2.0 * (hh / (2.0 * f)).atan()))
            }
            _ => Err(PlanError::param(
                "camera",
                "give both hfov_deg and vfov_deg, or neither",
            )),
        }
    }

    /// Altitude, footprint and lane spacing, validated.
    pub fn geometry(&self) -> Result<CameraGeometry, PlanError> {
        let (hfov, vfov) = self.fov_rad()?;
        let side = fraction("camera.side_overlap", self.side_overlap, 0.95)?;
        let front = fraction("camera.front_overlap", self.front_overlap, 0.95)?;
        let pitch = self.gimbal_pitch_deg;
        if !pitch.is_finite() || !(-90.0..=-10.0).contains(&pitch) {
            return Err(PlanError::param(
                "camera.gimbal_pitch_deg",
                format!("must be between -90 (nadir) and -10, got {pitch}"),
            ));
        }
        // Nadir GSD: metres per pixel = alt * (2 tan(hfov/2)) / width_px.
        let per_px_at_1m = self
            .image_width_px
            .filter(|w| *w > 0)
            .map(|w| 2.0 * (hfov / 2.0).tan() / w as f64);
        let altitude_m = match (self.altitude_agl_m, self.gsd_cm_per_px) {
            (Some(a), None) => positive("camera.altitude_agl_m", a)?,
            (None, Some(g)) => {
                let g = positive("camera.gsd_cm_per_px", g)?;
                let Some(k) = per_px_at_1m else {
                    return Err(PlanError::param(
                        "camera.gsd_cm_per_px",
                        "needs image_width_px to turn a GSD into an altitude",
                    ));
                };
                g / 100.0 / k
            }
            (Some(_), Some(_)) => {
                return Err(PlanError::param(
                    "camera",
                    "give altitude_agl_m or gsd_cm_per_px, not both",
                ))
            }
            (None, None) => {
                return Err(PlanError::param(
                    "camera",
                    "give altitude_agl_m or gsd_cm_per_px",
                ))
            }
        };
        if altitude_m > 1000.0 {
            return Err(PlanError::param(
                "camera altitude",
                format!("{altitude_m:.0} m is above 1000 m"),
            ));
        }
        let depression = (-pitch).to_radians();
        // Ranges to the near and far edges and to the centre of the view.
        let near = (depression + vfov / 2.0).min(std::f64::consts::FRAC_PI_2);
        let far = (depression - vfov / 2.0).max(5f64.to_radians());
        let r_near = altitude_m / near.sin();
        let footprint_width_m = 2.0 * r_near * (hfov / 2.0).tan();
        // Along-track ground distances of the edges (signed, forward +).
        let x_near = altitude_m / (depression + vfov / 2.0).tan();
        let x_far = altitude_m / far.tan();
        let (x_near, x_far) = if depression + vfov / 2.0 >= std::f64::consts::FRAC_PI_2 {
            // Nadir-ish: the near edge is behind the drone.
            (
                -altitude_m * (depression + vfov / 2.0 - std::f64::consts::FRAC_PI_2).tan(),
                x_far,
            )
        } else {
            (x_near, x_far)
        };
        let footprint_length_m = (x_far - x_near).max(0.1);
        let footprint_offset_m = (x_far + x_near) / 2.0;
        let lane_spacing_m = footprint_width_m * (1.0 - side);
        let trigger_distance_m = footprint_length_m * (1.0 - front);
        Ok(CameraGeometry {
            altitude_m,
            hfov_rad: hfov,
            vfov_rad: vfov,
            footprint_width_m,
            footprint_length_m,
            footprint_offset_m,
            lane_spacing_m,
            trigger_distance_m,
            gsd_cm_per_px: per_px_at_1m.map(|k| k * altitude_m * 100.0),
        })
    }
}

/// Battery as an energy budget in abstract units: seconds of flight for the
/// minutes model, Wh for the energy model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatteryModel {
    /// Capacity minus reserve.
    pub usable: f64,
    /// Units per second while cruising.
    pub cruise_rate: f64,
    /// Units per second while hovering, climbing or descending.
    pub hover_rate: f64,
    /// "min" or "Wh".
    pub unit: &'static str,
    /// Units → what is printed (seconds → minutes).
    pub display_scale: f64,
}

impl BatteryModel {
    pub fn display(&self, units: f64) -> f64 {
        units * self.display_scale
    }
}

impl Vehicle {
    pub fn validate(&self) -> Result<(), PlanError> {
        positive("vehicle.cruise_speed_mps", self.cruise_speed_mps)?;
        positive("vehicle.climb_rate_mps", self.climb_rate_mps)?;
        positive("vehicle.descent_rate_mps", self.descent_rate_mps)?;
        fraction("vehicle.turn_cost_s", self.turn_cost_s, 600.0)?;
        if let Some(d) = self.max_distance_from_home_m {
            positive("vehicle.max_distance_from_home_m", d)?;
        }
        if !self.home_alt_amsl_m.is_finite() {
            return Err(PlanError::param(
                "vehicle.home_alt_amsl_m",
                "must be finite",
            ));
        }
        if let Some(h) = self.home {
            if !h.is_valid() {
                return Err(PlanError::InvalidCoordinate {
                    what: "vehicle.home".into(),
                    index: 0,
                    lat: h.lat_deg,
                    lon: h.lon_deg,
                });
            }
        }
        self.battery().map(|_| ())
    }

    /// The battery model, validated.
    pub fn battery(&self) -> Result<BatteryModel, PlanError> {
        match (self.endurance_min, self.capacity_wh) {
            (Some(e), None) => {
                let e = positive("vehicle.endurance_min", e)?;
                let r = fraction("vehicle.reserve_min", self.reserve_min.unwrap_or(0.0), e)?;
                Ok(BatteryModel {
                    usable: (e - r) * 60.0,
                    cruise_rate: 1.0,
                    hover_rate: 1.0,
                    unit: "min",
                    display_scale: 1.0 / 60.0,
                })
            }
            (None, Some(c)) => {
                let c = positive("vehicle.capacity_wh", c)?;
                let r = fraction("vehicle.reserve_wh", self.reserve_wh.unwrap_or(0.0), c)?;
                let p = positive(
                    "vehicle.cruise_power_w",
                    self.cruise_power_w.ok_or_else(|| {
                        PlanError::param("vehicle.cruise_power_w", "needed with capacity_wh")
                    })?,
                )?;
                let h = positive("vehicle.hover_power_w", self.hover_power_w.unwrap_or(p))?;
                Ok(BatteryModel {
                    usable: c - r,
                    cruise_rate: p / 3600.0,
                    hover_rate: h / 3600.0,
                    unit: "Wh",
                    display_scale: 1.0,
                })
            }
            (Some(_), Some(_)) => Err(PlanError::param(
                "vehicle",
                "give endurance_min or capacity_wh, not both",
            )),
            (None, None) => Err(PlanError::param(
                "vehicle",
                "give the battery as endurance_min (+ reserve_min) or capacity_wh (+ reserve_wh, cruise_power_w)",
            )),
        }
    }
}

impl PlanOptions {
    pub fn validate(&self) -> Result<(), PlanError> {
        fraction("options.fence_margin_m", self.fence_margin_m, 10_000.0)?;
        positive("options.fence_slack_m", self.fence_slack_m)?;
        fraction("options.clearance_m", self.clearance_m, 1_000.0)?;
        fraction("options.turnaround_m", self.turnaround_m, 1_000.0)?;
        fraction("options.resume_overlap_m", self.resume_overlap_m, 10_000.0)?;
        fraction(
            "options.poi_orbit_radius_m",
            self.poi_orbit_radius_m,
            1_000.0,
        )?;
        fraction(
            "options.exclusion_fence_buffer_fraction",
            self.exclusion_fence_buffer_fraction,
            1.0,
        )?;
        if let Some(a) = self.sweep_angle_deg {
            if !a.is_finite() {
                return Err(PlanError::param(
                    "options.sweep_angle_deg",
                    "must be finite",
                ));
            }
        }
        Ok(())
    }
}

fn from_wire_point(p: &tiancha_protocol::GeoPoint) -> LatLon {
    LatLon::new(p.lat_deg, p.lon_deg)
}

fn from_wire_polygon(p: &tiancha_protocol::GeoPolygon) -> GeoPolygon {
    GeoPolygon {
        exterior: p.exterior.iter().map(from_wire_point).collect(),
        holes: p
            .holes
            .iter()
            .map(|h| h.iter().map(from_wire_point).collect())
            .collect(),
    }
}

impl From<&tiancha_protocol::NoFlyZone> for NoFlyZone {
    fn from(z: &tiancha_protocol::NoFlyZone) -> Self {
        NoFlyZone {
            name: z.name.clone(),
            buffer_m: z.buffer_m,
            shape: match &z.shape {
                tiancha_protocol::ZoneShape::Polygon { polygon } => ZoneShape::Polygon {
                    polygon: from_wire_polygon(polygon),
                },
                tiancha_protocol::ZoneShape::Circle { center, radius_m } => ZoneShape::Circle {
                    center: from_wire_point(center),
                    radius_m: *radius_m,
                },
            },
        }
    }
}

impl PlanRequest {
    /// Build a request from a launch-patrol command's [`PatrolSpec`]
    /// (`tiancha_protocol::PatrolSpec`) and the drone's configured camera
    /// and vehicle. `spec.altitude_rel_m` overrides the camera altitude. If
    /// the spec carries a QGroundControl plan and no areas, its survey
    /// polygons / inclusion fences become the areas and its exclusion
    /// fences no-fly zones (use [`crate::formats::qgc::read_plan`] to fly
    /// the plan as-is instead).
    ///
    /// [`PatrolSpec`]: tiancha_protocol::PatrolSpec
    pub fn from_patrol_spec(
        spec: &tiancha_protocol::PatrolSpec,
        vehicle: &Vehicle,
        camera: &Camera,
    ) -> Result<Self, PlanError> {
        let mut req = PlanRequest {
            name: spec.name.clone(),
            areas: spec
                .areas
                .iter()
                .enumerate()
                .map(|(i, a)| Area {
                    name: format!("area {i}"),
                    polygon: from_wire_polygon(a),
                })
                .collect(),
            no_fly_zones: spec.no_fly_zones.iter().map(NoFlyZone::from).collect(),
            points_of_interest: spec
                .points_of_interest
                .iter()
                .map(|p| PointOfInterest {
                    name: p.name.clone(),
                    position: from_wire_point(&p.position),
                    dwell_s: p.dwell_s,
                    priority: p.priority,
                })
                .collect(),
            rally_points: vec![],
            camera: camera.clone(),
            vehicle: vehicle.clone(),
            options: PlanOptions::default(),
        };
        if let Some(alt) = spec.altitude_rel_m {
            req.camera.altitude_agl_m = Some(alt);
            req.camera.gsd_cm_per_px = None;
        }
        if let Some(doc) = &spec.qgc_plan {
            let text = serde_json::to_string(doc)
                .map_err(|e| PlanError::format("QGroundControl plan", "qgc_plan", e))?;
            let qgc = crate::formats::qgc::read_plan(&text)?;
            if req.areas.is_empty() {
                req.areas = qgc.areas;
            }
            req.no_fly_zones.extend(qgc.no_fly_zones);
            req.rally_points.extend(qgc.rally_points);
            if req.vehicle.home.is_none() {
                req.vehicle.home = qgc.home.map(|h| h.horizontal());
            }
        }
        Ok(req)
    }
}
