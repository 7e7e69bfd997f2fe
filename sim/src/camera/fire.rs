//! Fires in the simulated picture: a straw fire (秸秆焚烧) seen from the
//! air, and its truth.
//!
//! Each `fire` incident of the scenario ([`super::IncidentKind::Fire`]) is
//! drawn in three layers, projected through the camera like everything
//! else (so it sits on the ground and scales with range):
//!
//! 1. a scorched disc of 1.3 × `radius_m` (dark ash);
//! 2. flame tongues over the disc, 0.8-2.5 m tall, each a red-orange
//!    ellipse with a yellow core, re-drawn 8 times a simulated second
//!    (flicker, seeded by the incident and the time step, so a frame is a
//!    fixed function of the scenario and the time);
//! 3. with `smoke`, a plume of translucent grey rising 2-30 m and
//!    drifting towards `wind_to_deg` as it rises, wider and fainter with
//!    height (puffs in a blurred opacity mask).
//!
//! The truth of each fire is its place and the pixel box of its flames
//! (and of its smoke), the boxes a person would draw by hand.

use nalgebra::Point2;
use opencv::core::{self, Mat, Point, Rect, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tiancha_geometry::camera::CameraView;
use tiancha_geometry::geodesy::{LatLon, LocalFrame};

use super::scenario::{IncidentKind, Scenario};
use super::CameraError;

/// A fire in a rendered frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FireInView {
    /// Index and id of the incident in the scenario.
    pub incident: usize,
    pub incident_id: String,
    pub lat_deg: f64,
    pub lon_deg: f64,
    /// Pixel of the fire's centre on the ground (may be outside).
    pub centre_px: [f64; 2],
    /// Box of the flames, x1, y1, x2, y2 (unclipped).
    pub flames_px: [f64; 4],
    /// Box of the smoke plume, when it has one.
    pub smoke_px: Option<[f64; 4]>,
    /// The centre is inside the image.
    pub in_image: bool,
}

fn cv_err(e: opencv::Error) -> CameraError {
    CameraError::OpenCv(e.to_string())
}

/// Grows a box to hold a point.
fn grow(b: &mut Option<[f64; 4]>, p: Point2<f64>, r: f64) {
    let n = [p.x - r, p.y - r, p.x + r, p.y + r];
    *b = Some(match b {
        None => n,
        Some(o) => [
            o[0].min(n[0]),
            o[1].min(n[1]),
            o[2].max(n[2]),
            o[3].max(n[3]),
        ],
    });
}

/// Blend grey smoke into `image` within `bbox`: each puff (centre,
/// radius, opacity) a disc of its opacity in a mask, the faint ones
/// first, the mask blurred, then `image = image (1 − m) + grey m`.
fn blend_smoke(
    image: &mut Mat,
    bbox: [f64; 4],
    puffs: &[(Point2<f64>, f64, f64)],
) -> Result<(), CameraError> {
    let size = image.size().map_err(cv_err)?;
    // Room for the blur around the discs.
    let pad = ((bbox[2] - bbox[0]).min(bbox[3] - bbox[1]) / 8.0).ceil() + 2.0;
    let roi = Rect::new(
        (bbox[0] - pad).floor() as i32,
        (bbox[1] - pad).floor() as i32,
        (bbox[2] - bbox[0] + 2.0 * pad).ceil() as i32 + 1,
        (bbox[3] - bbox[1] + 2.0 * pad).ceil() as i32 + 1,
    ) & Rect::new(0, 0, size.width, size.height);
    if roi.width < 2 || roi.height < 2 {
        return Ok(());
    }
    let mut mask = Mat::zeros(roi.height, roi.width, core::CV_32F)
        .and_then(|m| m.to_mat())
        .map_err(cv_err)?;
    for (c, rad, alpha) in puffs.iter().rev() {
        imgproc::circle(
            &mut mask,
            Point::new(c.x as i32 - roi.x, c.y as i32 - roi.y),
            rad.round().max(1.0) as i32,
            Scalar::all(*alpha),
            -1,
            imgproc::LINE_AA,
            0,
        )
        .map_err(cv_err)?;
    }
    let k = ((roi.width.min(roi.height) / 8) | 1).clamp(3, 61);
    let mut soft = Mat::default();
    imgproc::gaussian_blur_def(&mask, &mut soft, Size::new(k, k), 0.0).map_err(cv_err)?;
    let mut m3 = Mat::default();
    core::merge(
        &core::Vector::<Mat>::from_iter([soft.clone(), soft.clone(), soft]),
        &mut m3,
    )
    .map_err(cv_err)?;
    let mut area = Mat::roi_mut(image, roi).map_err(cv_err)?;
    let mut img = Mat::default();
    area.convert_to(&mut img, core::CV_32FC3, 1.0, 0.0)
        .map_err(cv_err)?;
    // image + (grey − image) · m
    let grey = Mat::new_size_with_default(
        img.size().map_err(cv_err)?,
        core::CV_32FC3,
        Scalar::new(178.0, 178.0, 182.0, 0.0),
    )
    .map_err(cv_err)?;
    let mut diff = Mat::default();
    core::subtract_def(&grey, &img, &mut diff).map_err(cv_err)?;
    let mut step = Mat::default();
    core::multiply_def(&diff, &m3, &mut step).map_err(cv_err)?;
    let mut out = Mat::default();
    core::add_def(&img, &step, &mut out).map_err(cv_err)?;
    out.convert_to(&mut area, core::CV_8UC3, 1.0, 0.0)
        .map_err(cv_err)?;
    Ok(())
}

/// Draw every fire burning at `sim_time_s` onto `image` (the ideal,
/// undistorted picture of `view`), on flat ground at `ground_alt_m`.
pub fn draw_fires(
    scenario: &Scenario,
    frame: &LocalFrame,
    ground_alt_m: f64,
    view: &CameraView,
    image: &mut Mat,
    sim_time_s: f64,
) -> Result<Vec<FireInView>, CameraError> {
    let size = image.size().map_err(cv_err)?;
    let mut out = Vec::new();
    let step = (sim_time_s * 8.0).floor() as u64;
    for (i, inc) in scenario.fires_at(sim_time_s) {
        let IncidentKind::Fire {
            at,
            radius_m,
            smoke,
            wind_to_deg,
        } = &inc.kind
        else {
            continue;
        };
        let (e0, n0) = frame.to_en(LatLon::new(at.lat_deg, at.lon_deg));
        let px = |de: f64, dn: f64, up: f64| {
            view.ground_to_pixel(frame.from_en(e0 + de, n0 + dn).with_alt(ground_alt_m + up))
        };
        let Some(centre) = px(0.0, 0.0, 0.0) else {
            continue;
        };
        // Pixels per metre on the ground here.
        let scale = match px(1.0, 0.0, 0.0) {
            Some(p) => ((p - centre).norm()).max(0.05),
            None => continue,
        };
        let mut rng = StdRng::seed_from_u64(scenario.seed ^ (i as u64 * 7_777_777 + step));
        // 1. Scorched ground.
        let mut ring = core::Vector::<Point>::new();
        for k in 0..24 {
            let a = k as f64 / 24.0 * std::f64::consts::TAU;
            let r = radius_m * (1.3 + 0.1 * (3.0 * a).sin());
            if let Some(p) = px(r * a.sin(), r * a.cos(), 0.0) {
                ring.push(Point::new(p.x as i32, p.y as i32));
            }
        }
        if ring.len() >= 3 {
            imgproc::fill_poly_def(
                image,
                &core::Vector::<core::Vector<Point>>::from_iter([ring]),
                Scalar::new(34.0, 38.0, 42.0, 0.0),
            )
            .map_err(cv_err)?;
        }
        // 2. Flames.
        let mut flames: Option<[f64; 4]> = None;
        let tongues = ((radius_m * radius_m * 8.0) as usize).clamp(10, 120);
        for _ in 0..tongues {
            let r = radius_m * rng.random::<f64>().sqrt();
            let a = rng.random::<f64>() * std::f64::consts::TAU;
            let h = 0.8 + 1.7 * rng.random::<f64>();
            let w = 0.6 + 0.7 * rng.random::<f64>();
            let (de, dn) = (r * a.sin(), r * a.cos());
            let (Some(base), Some(top)) = (px(de, dn, 0.0), px(de, dn, h)) else {
                continue;
            };
            let mid = Point2::new((base.x + top.x) / 2.0, (base.y + top.y) / 2.0);
            let half_h = ((top - base).norm() / 2.0).max(1.0);
            let half_w = (w * scale / 2.0).max(1.0);
            let angle = (top.y - base.y).atan2(top.x - base.x).to_degrees();
            for (f, colour) in [
                (1.0, Scalar::new(20.0, 70.0, 230.0, 0.0)),
                (0.6, Scalar::new(40.0, 160.0, 255.0, 0.0)),
                (0.3, Scalar::new(170.0, 235.0, 255.0, 0.0)),
            ] {
                imgproc::ellipse(
                    image,
                    Point::new(mid.x.round() as i32, mid.y.round() as i32),
                    Size::new(
                        (half_h * f).round().max(1.0) as i32,
                        (half_w * f).round().max(1.0) as i32,
                    ),
                    angle,
                    0.0,
                    360.0,
                    colour,
                    -1,
                    imgproc::LINE_AA,
                    0,
                )
                .map_err(cv_err)?;
            }
            grow(&mut flames, base, half_w);
            grow(&mut flames, top, half_w);
        }
        // 3. Smoke: puffs (fainter with height) into one alpha mask over
        // the plume's box, softened, then grey blended in by it.
        let mut plume: Option<[f64; 4]> = None;
        if *smoke {
            let (ws, wc) = wind_to_deg.to_radians().sin_cos();
            let mut puffs = Vec::new();
            for k in 0..16 {
                let z = 2.5 + k as f64 * 1.8;
                let drift = 0.6 * z;
                let wob = 0.4 * (rng.random::<f64>() - 0.5) * z.sqrt();
                let Some(c) = px(drift * ws + wob * wc, drift * wc - wob * ws, z) else {
                    continue;
                };
                let rad = (0.8 * radius_m + 0.35 * z) * scale;
                puffs.push((c, rad, 0.9 * (1.0 - k as f64 / 18.0)));
                grow(&mut plume, c, rad);
            }
            if let Some(b) = plume {
                blend_smoke(image, b, &puffs)?;
            }
        }
        let inside = |p: Point2<f64>| {
            p.x >= 0.0 && p.y >= 0.0 && p.x < size.width as f64 && p.y < size.height as f64
        };
        out.push(FireInView {
            incident: i,
            incident_id: inc.id.clone(),
            lat_deg: at.lat_deg,
            lon_deg: at.lon_deg,
            centre_px: [centre.x, centre.y],
            flames_px: flames.unwrap_or([centre.x, centre.y, centre.x, centre.y]),
            smoke_px: plume,
            in_image: inside(centre),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{CameraSpec, Renderer};
    use super::*;
    use tiancha_geometry::camera::{Attitude, CameraPose, GimbalAngles, GimbalMount};

    const SCENE: &str = r#"
name = "t"
ground_alt_m = 70.0
origin = { lat_deg = 28.45, lon_deg = 117.94 }
[ground]
west_m = -150.0
east_m = 150.0
south_m = -150.0
north_m = 150.0
[[incidents]]
id = "straw"
kind = "fire"
at = { lat_deg = 28.45, lon_deg = 117.94 }
radius_m = 2.5
"#;

    /// Fire colour: red high, blue low (flames), as BGR.
    fn fiery(p: &core::Vec3b) -> bool {
        p[2] > 200 && p[1] < 200 && p[0] < 120
    }

    fn count_fiery(img: &Mat, inside: Option<[f64; 4]>) -> (usize, usize) {
        let (mut inn, mut out) = (0, 0);
        for y in 0..img.rows() {
            for x in 0..img.cols() {
                if fiery(img.at_2d::<core::Vec3b>(y, x).unwrap()) {
                    let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
                    match inside {
                        Some(b) if fx >= b[0] && fx <= b[2] && fy >= b[1] && fy <= b[3] => inn += 1,
                        _ => out += 1,
                    }
                }
            }
        }
        (inn, out)
    }

    #[test]
    fn a_straw_fire_is_drawn_where_its_truth_says_and_nowhere_else() {
        let scenario = Scenario::from_toml(SCENE, "t.toml").unwrap();
        let r = Renderer::new(&scenario, CameraSpec::default()).unwrap();
        // 60 m up, 60 m south of the fire, 45° down, facing north.
        let target = LocalFrame::new(LatLon::new(28.45, 117.94).with_alt(70.0));
        let pose = CameraPose::new(
            0,
            target.from_ned(nalgebra::Vector3::new(-60.0, 0.0, -60.0)),
            Attitude::new(0.0, 0.0, 0.0),
            GimbalAngles::new(0.0, -45.0, 0.0, GimbalMount::Stabilized),
        );
        let f = r.render(&pose, 10.0).unwrap();
        assert_eq!(f.fires.len(), 1);
        let fire = &f.fires[0];
        assert!(fire.in_image, "{fire:?}");
        // The centre of the picture is where the optical axis meets the
        // ground: the fire.
        assert!(
            (fire.centre_px[0] - 640.0).abs() < 2.0 && (fire.centre_px[1] - 360.0).abs() < 2.0,
            "{fire:?}"
        );
        let b = fire.flames_px;
        // 5 m across at 85 m and 30° HFOV: ~120 px wide.
        assert!((60.0..250.0).contains(&(b[2] - b[0])), "{b:?}");
        let (inn, out) = count_fiery(&f.image, Some(b));
        assert!(inn > 500, "{inn} flame pixels in the flames' box");
        assert_eq!(out, 0, "flame pixels outside the flames' box");
        let smoke = fire.smoke_px.expect("a plume");
        assert!(
            smoke[1] < b[1],
            "the smoke rises above the flames: {smoke:?}"
        );
        // Before it starts (start_s), and without fires: no flame anywhere.
        let later = Scenario::from_toml(
            &SCENE.replace("radius_m = 2.5", "radius_m = 2.5\nstart_s = 20.0"),
            "t.toml",
        )
        .unwrap();
        let r = Renderer::new(&later, CameraSpec::default()).unwrap();
        let f = r.render(&pose, 10.0).unwrap();
        assert!(f.fires.is_empty());
        assert_eq!(count_fiery(&f.image, None), (0, 0));
    }
}
