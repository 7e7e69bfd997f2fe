//! The gimbal's thermal view of the scenario, by day and by night.
//!
//! A thermal camera sees temperature, not colour. The ground's materials
//! ([`super::ground::Material`]) take the temperatures of [`Temperatures`]
//! (at night: water and roads hold the day's heat, roofs and fields have
//! cooled; by day: roofs and roads are hot, water cool), varied across
//! fields by the texture's own brightness (moist and dry soil); people
//! are warm bodies (a clothed person seen from above, ~31 °C); a fire is
//! a disc of flames and embers hundreds of degrees hot inside a ring of
//! scorched ground (smoke is mostly transparent to long-wave infrared and
//! is not drawn); the sky is cold. Sensor noise (NETD) is white Gaussian,
//! seeded by the scenario and the time step, so a frame is a fixed
//! function of the scenario, pose and time.
//!
//! [`ThermalRenderer::render`] gives degrees Celsius per pixel
//! ([`ThermalFrame::celsius`]); [`to_gray16`] makes a radiometric GRAY16
//! frame of it through a calibration, [`to_palette`] a white-hot 8-bit
//! picture with the automatic gain a palette camera applies. The truth of
//! each warm person and each fire is its box in the thermal picture.

use std::sync::Arc;

use nalgebra::{Point2, Vector3};
use opencv::core::{self, Mat, Point, Scalar, Size, Vector, CV_32FC1, CV_8UC1};
use opencv::imgproc;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};
use tiancha_geometry::camera::{CameraModel, CameraPose, CameraView, Distortion, Intrinsics};
use tiancha_geometry::geodesy::{LatLon, LocalFrame};

use super::ground::{GroundTexture, Material};
use super::render::{fill_sky, ground_projection, GroundProjection};
use super::scenario::{IncidentKind, Scenario};
use super::CameraError;

fn cv_err(e: opencv::Error) -> CameraError {
    CameraError::OpenCv(e.to_string())
}

/// Surface temperatures of the scene, °C.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Temperatures {
    pub sky_c: f64,
    pub field_c: f64,
    pub yard_c: f64,
    pub roof_c: f64,
    pub road_c: f64,
    pub water_c: f64,
    /// Spread across fields (dry and moist soil, crops), ± °C.
    pub field_spread_c: f64,
    pub person_c: f64,
    pub flames_c: f64,
    pub scorched_c: f64,
}

impl Temperatures {
    /// A clear autumn night in Jiangxi, a few hours after sunset.
    pub fn night() -> Self {
        Self {
            sky_c: -25.0,
            field_c: 12.0,
            yard_c: 14.0,
            roof_c: 8.0,
            road_c: 17.0,
            water_c: 19.0,
            field_spread_c: 1.5,
            person_c: 31.0,
            flames_c: 450.0,
            scorched_c: 120.0,
        }
    }

    /// A sunny autumn afternoon.
    pub fn day() -> Self {
        Self {
            sky_c: -10.0,
            field_c: 27.0,
            yard_c: 34.0,
            roof_c: 48.0,
            road_c: 44.0,
            water_c: 21.0,
            field_spread_c: 3.0,
            person_c: 33.0,
            flames_c: 450.0,
            scorched_c: 160.0,
        }
    }

    fn of(&self, m: u8) -> f64 {
        match m {
            x if x == Material::Yard as u8 => self.yard_c,
            x if x == Material::Roof as u8 => self.roof_c,
            x if x == Material::Road as u8 => self.road_c,
            x if x == Material::Water as u8 => self.water_c,
            _ => self.field_c,
        }
    }
}

/// The thermal camera: its picture, lens and noise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThermalSpec {
    pub width_px: u32,
    pub height_px: u32,
    pub hfov_deg: f64,
    /// Noise-equivalent temperature difference (1-σ per pixel), °C.
    pub netd_c: f64,
}

impl Default for ThermalSpec {
    /// A 640 × 512 core (Boson 640, the ZT30's thermal) with a 32° lens,
    /// NETD 50 mK.
    fn default() -> Self {
        Self {
            width_px: 640,
            height_px: 512,
            hfov_deg: 32.0,
            netd_c: 0.05,
        }
    }
}

/// A warm person or a fire in a thermal frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThermalTarget {
    pub incident_id: String,
    /// x1, y1, x2, y2 in the thermal picture (unclipped).
    pub box_px: [f64; 4],
    /// Its ground point is inside the picture.
    pub in_image: bool,
}

/// One rendered thermal frame.
#[derive(Debug)]
pub struct ThermalFrame {
    /// °C per pixel, `CV_32FC1`.
    pub celsius: Mat,
    pub people: Vec<ThermalTarget>,
    pub fires: Vec<ThermalTarget>,
}

/// Renders thermal frames of one scenario.
pub struct ThermalRenderer {
    scenario: Arc<Scenario>,
    ground: Arc<GroundTexture>,
    /// °C per texel of the ground.
    heat: Mat,
    model: CameraModel,
    temps: Temperatures,
    netd_c: f64,
}

impl std::fmt::Debug for ThermalRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThermalRenderer")
            .field("scenario", &self.scenario.name)
            .field("model", &self.model)
            .finish()
    }
}

impl ThermalRenderer {
    /// The ground's temperatures from its materials (and, across fields,
    /// its brightness), once.
    pub fn new(
        scenario: Arc<Scenario>,
        ground: Arc<GroundTexture>,
        spec: ThermalSpec,
        temps: Temperatures,
    ) -> Result<Self, CameraError> {
        if spec.width_px < 16 || spec.height_px < 16 || !(1.0..179.0).contains(&spec.hfov_deg) {
            return Err(CameraError::Config {
                field: "thermal",
                reason: format!(
                    "{}×{} at {}° HFOV: needs at least 16×16 and an HFOV within 1..179",
                    spec.width_px, spec.height_px, spec.hfov_deg
                ),
            });
        }
        let mut grey = Mat::default();
        imgproc::cvt_color_def(&ground.image, &mut grey, imgproc::COLOR_BGR2GRAY)
            .map_err(cv_err)?;
        let mean = core::mean_def(&grey).map_err(cv_err)?[0];
        let (rows, cols) = (grey.rows(), grey.cols());
        let mut heat = Mat::new_rows_cols_with_default(rows, cols, CV_32FC1, Scalar::all(0.0))
            .map_err(cv_err)?;
        for y in 0..rows {
            let m = ground.material.at_row::<u8>(y).map_err(cv_err)?;
            let g = grey.at_row::<u8>(y).map_err(cv_err)?;
            let h = heat.at_row_mut::<f32>(y).map_err(cv_err)?;
            for x in 0..h.len() {
                let base = temps.of(m[x]);
                let vary = if m[x] == Material::Field as u8 {
                    // Brighter (drier) soil is warmer by day, cooler at night.
                    let sign = if temps.field_c > temps.water_c {
                        1.0
                    } else {
                        -1.0
                    };
                    sign * temps.field_spread_c * ((g[x] as f64 - mean) / 24.0).clamp(-1.0, 1.0)
                } else {
                    0.0
                };
                h[x] = (base + vary) as f32;
            }
        }
        let model = CameraModel::new(
            Intrinsics::from_hfov(spec.width_px, spec.height_px, spec.hfov_deg),
            Distortion::NONE,
        );
        Ok(Self {
            scenario,
            ground,
            heat,
            model,
            temps,
            netd_c: spec.netd_c.max(0.0),
        })
    }

    pub fn model(&self) -> CameraModel {
        self.model
    }

    /// °C per pixel from a camera pose; incidents as at `sim_time_s`.
    pub fn render(&self, pose: &CameraPose, sim_time_s: f64) -> Result<ThermalFrame, CameraError> {
        let k = self.model.intrinsics;
        let size = Size::new(k.width_px as i32, k.height_px as i32);
        let view = CameraView::new(self.model, *pose);
        let t = &self.temps;
        let mut img =
            Mat::new_size_with_default(size, CV_32FC1, Scalar::all(t.sky_c)).map_err(cv_err)?;
        match ground_projection(&self.ground, &self.model, &view)? {
            GroundProjection::Underground => {
                img.set_to_def(&Scalar::all(t.field_c)).map_err(cv_err)?;
            }
            GroundProjection::AllSky => {}
            GroundProjection::Ground { h, sky } => {
                imgproc::warp_perspective(
                    &self.heat,
                    &mut img,
                    &h,
                    size,
                    imgproc::INTER_LINEAR,
                    core::BORDER_CONSTANT,
                    Scalar::all(t.field_c),
                )
                .map_err(cv_err)?;
                fill_sky(&mut img, &sky, Scalar::all(t.sky_c))?;
            }
        }
        let fires = self.draw_fires(&view, &mut img, sim_time_s)?;
        let people = self.draw_people(pose, &view, &mut img, sim_time_s)?;
        if self.netd_c > 0.0 {
            let mut noise =
                Mat::new_size_with_default(size, CV_32FC1, Scalar::all(0.0)).map_err(cv_err)?;
            let step = (sim_time_s * 30.0).floor() as u64;
            let mut rng = core::RNG::new(self.scenario.seed ^ step.wrapping_mul(0x9E37_79B9))
                .map_err(cv_err)?;
            rng.fill(
                &mut noise,
                core::RNG_NORMAL,
                &Scalar::all(0.0),
                &Scalar::all(self.netd_c),
                false,
            )
            .map_err(cv_err)?;
            let mut out = Mat::default();
            core::add_def(&img, &noise, &mut out).map_err(cv_err)?;
            img = out;
        }
        Ok(ThermalFrame {
            celsius: img,
            people,
            fires,
        })
    }

    fn draw_fires(
        &self,
        view: &CameraView,
        img: &mut Mat,
        sim_time_s: f64,
    ) -> Result<Vec<ThermalTarget>, CameraError> {
        let g = &self.ground;
        let k = self.model.intrinsics;
        let mut out = vec![];
        for (_, inc) in self.scenario.fires_at(sim_time_s) {
            let IncidentKind::Fire { at, radius_m, .. } = &inc.kind else {
                continue;
            };
            let (e0, n0) = g.frame.to_en(LatLon::new(at.lat_deg, at.lon_deg));
            let ring = |r: f64| -> Option<Vector<Point>> {
                (0..32)
                    .map(|i| {
                        let a = i as f64 / 32.0 * std::f64::consts::TAU;
                        view.ground_to_pixel(
                            g.frame
                                .from_en(e0 + r * a.sin(), n0 + r * a.cos())
                                .with_alt(g.alt_m),
                        )
                        .map(|p| Point::new((p.x * 8.0).round() as i32, (p.y * 8.0).round() as i32))
                    })
                    .collect()
            };
            let (Some(scorched), Some(flames)) = (ring(radius_m * 1.3), ring(*radius_m)) else {
                continue; // behind the camera
            };
            for (poly, c) in [
                (&scorched, self.temps.scorched_c),
                (&flames, self.temps.flames_c),
            ] {
                let mut v = Vector::<Vector<Point>>::new();
                v.push(poly.clone());
                imgproc::fill_poly(
                    img,
                    &v,
                    Scalar::all(c),
                    imgproc::LINE_8,
                    3,
                    Point::new(0, 0),
                )
                .map_err(cv_err)?;
            }
            let centre = view.ground_to_pixel(g.frame.from_en(e0, n0).with_alt(g.alt_m));
            out.push(ThermalTarget {
                incident_id: inc.id.clone(),
                box_px: bounds(flames.iter().map(|p| (p.x as f64 / 8.0, p.y as f64 / 8.0))),
                in_image: centre.is_some_and(|c| k.contains(c)),
            });
        }
        Ok(out)
    }

    /// Each person an upright warm body 0.5 m wide, `height_m` tall,
    /// facing the camera.
    fn draw_people(
        &self,
        pose: &CameraPose,
        view: &CameraView,
        img: &mut Mat,
        sim_time_s: f64,
    ) -> Result<Vec<ThermalTarget>, CameraError> {
        let g = &self.ground;
        let k = self.model.intrinsics;
        let mut out = vec![];
        for p in self.scenario.people_at(sim_time_s) {
            let foot = p.at.with_alt(g.alt_m);
            let local = LocalFrame::new(foot);
            let cam = local.to_ned(pose.position);
            let horiz = nalgebra::Vector2::new(cam.x, cam.y);
            let d = if horiz.norm() > 0.3 {
                -horiz.normalize()
            } else {
                nalgebra::Vector2::x()
            };
            let right = nalgebra::Vector2::new(-d.y, d.x);
            let at = |side: f64, up: f64| {
                local.from_ned(Vector3::new(
                    right.x * side * 0.25,
                    right.y * side * 0.25,
                    -up,
                ))
            };
            let corners = [
                at(-1.0, p.height_m),
                at(1.0, p.height_m),
                at(1.0, 0.0),
                at(-1.0, 0.0),
            ];
            let px: Option<Vec<Point2<f64>>> =
                corners.iter().map(|c| view.world_to_pixel(*c)).collect();
            let (Some(px), Some(foot_px)) = (px, view.world_to_pixel(foot)) else {
                continue;
            };
            let poly: Vector<Point> = px
                .iter()
                .map(|q| Point::new((q.x * 8.0).round() as i32, (q.y * 8.0).round() as i32))
                .collect();
            imgproc::fill_convex_poly(
                img,
                &poly,
                Scalar::all(self.temps.person_c),
                imgproc::LINE_8,
                3,
            )
            .map_err(cv_err)?;
            out.push(ThermalTarget {
                incident_id: self
                    .scenario
                    .incidents
                    .get(p.incident)
                    .map(|i| i.id.clone())
                    .unwrap_or_default(),
                box_px: bounds(px.iter().map(|q| (q.x, q.y))),
                in_image: k.contains(foot_px),
            });
        }
        Ok(out)
    }
}

/// The box (x1, y1, x2, y2) around points.
fn bounds(points: impl Iterator<Item = (f64, f64)>) -> [f64; 4] {
    points.fold([f64::MAX, f64::MAX, f64::MIN, f64::MIN], |b, (x, y)| {
        [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)]
    })
}

/// A radiometric GRAY16 frame (`CV_16UC1`) of a °C frame:
/// `counts = (°C − offset_c) / gain_c_per_count`, saturated to 0..65535.
pub fn to_gray16(celsius: &Mat, gain_c_per_count: f64, offset_c: f64) -> Result<Mat, CameraError> {
    if !(gain_c_per_count.is_finite() && gain_c_per_count > 0.0) {
        return Err(CameraError::Config {
            field: "gain_c_per_count",
            reason: format!("{gain_c_per_count} must be positive"),
        });
    }
    let mut out = Mat::default();
    celsius
        .convert_to(
            &mut out,
            core::CV_16U,
            1.0 / gain_c_per_count,
            -offset_c / gain_c_per_count,
        )
        .map_err(cv_err)?;
    Ok(out)
}

/// A white-hot palette picture (8-bit BGR) of a °C frame, with the
/// automatic gain of a palette camera: the 1st to the 99.5th percentile of
/// the frame's temperatures span 0–255.
pub fn to_palette(celsius: &Mat) -> Result<Mat, CameraError> {
    let mut v: Vec<f32> = Vec::with_capacity(celsius.total() / 16 + 1);
    for y in (0..celsius.rows()).step_by(4) {
        v.extend(celsius.at_row::<f32>(y).map_err(cv_err)?.iter().step_by(4));
    }
    if v.is_empty() {
        return Err(CameraError::Config {
            field: "celsius",
            reason: "empty thermal frame".into(),
        });
    }
    v.sort_by(f32::total_cmp);
    let lo = v[v.len() / 100] as f64;
    let hi = (v[(v.len() * 995 / 1000).min(v.len() - 1)] as f64).max(lo + 1.0);
    let mut grey = Mat::default();
    celsius
        .convert_to(
            &mut grey,
            CV_8UC1,
            255.0 / (hi - lo),
            -lo * 255.0 / (hi - lo),
        )
        .map_err(cv_err)?;
    let mut bgr = Mat::default();
    imgproc::cvt_color_def(&grey, &mut bgr, imgproc::COLOR_GRAY2BGR).map_err(cv_err)?;
    Ok(bgr)
}
