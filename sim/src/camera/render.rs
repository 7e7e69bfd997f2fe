//! The renderer: a camera pose → the picture that camera would take.
//!
//! 1. **Ground.** Four ground points around where the camera looks are
//!    projected with the camera model ([`CameraView::ground_to_pixel`],
//!    the same code the eye geotags with); the homography from their
//!    texels to their pixels warps the ground texture into the frame
//!    (`warpPerspective`). Rays that miss the ground are sky; ground
//!    beyond the texture is haze.
//! 2. **People.** Each person of the scenario is an upright billboard at
//!    its feet, `height_m` tall, as wide as its sprite's aspect says,
//!    turned to face the camera horizontally. Its four corners are
//!    projected with the camera model and the sprite is warped onto them
//!    with its alpha, far ones first.
//! 3. **Lens.** With distortion, the ideal picture is remapped through the
//!    model's distortion (a per-pixel map computed once).
//!
//! The per-frame ground truth lists every person in view with the pixel
//! of their feet and their box, from the same projection.

use std::sync::Arc;

use nalgebra::{Point2, UnitQuaternion, Vector3};
use opencv::core::{
    self, Mat, Point, Point2f, Rect, Scalar, Size, Vector, CV_32F, CV_32FC1, CV_8UC3,
};
use opencv::imgproc;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};
use tiancha_geometry::camera::{
    Attitude, CameraModel, CameraPose, CameraView, Distortion, FlatGround, GimbalAngles,
    GimbalMount, Intrinsics,
};
use tiancha_geometry::geodesy::{LatLon, LatLonAlt, LocalFrame};

use super::ground::GroundTexture;
use super::scenario::Scenario;
use super::sprites::SpriteBank;
use super::CameraError;
use crate::truth::Truth;

/// The simulated camera's optics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSpec {
    pub width_px: u32,
    pub height_px: u32,
    /// Horizontal field of view, degrees (zoom).
    pub hfov_deg: f64,
    /// OpenCV lens distortion (default none).
    #[serde(default)]
    pub distortion: Distortion,
}

impl Default for CameraSpec {
    /// 1280×720 at 30° HFOV: the demo's setting (see
    /// `docs/benchmarks/sim-camera.md` for why).
    fn default() -> Self {
        Self {
            width_px: 1280,
            height_px: 720,
            hfov_deg: 30.0,
            distortion: Distortion::NONE,
        }
    }
}

impl CameraSpec {
    pub fn validate(&self) -> Result<(), CameraError> {
        let bad = |field: &'static str, reason: String| CameraError::Config { field, reason };
        if !(16..=7680).contains(&self.width_px) || !(16..=4320).contains(&self.height_px) {
            return Err(bad(
                "camera size",
                format!(
                    "{}x{} is not in 16x16 .. 7680x4320",
                    self.width_px, self.height_px
                ),
            ));
        }
        if self.width_px % 2 == 1 || self.height_px % 2 == 1 {
            return Err(bad(
                "camera size",
                format!(
                    "{}x{}: H.264 (4:2:0) needs even sides",
                    self.width_px, self.height_px
                ),
            ));
        }
        if !(self.hfov_deg.is_finite() && self.hfov_deg >= 1.0 && self.hfov_deg <= 150.0) {
            return Err(bad(
                "hfov_deg",
                format!("{} is not in [1, 150]", self.hfov_deg),
            ));
        }
        let d = self.distortion;
        if ![d.k1, d.k2, d.p1, d.p2, d.k3].iter().all(|v| v.is_finite()) {
            return Err(bad("distortion", "coefficients must be finite".into()));
        }
        Ok(())
    }

    /// The camera model (what the eye must be configured with).
    pub fn model(&self) -> CameraModel {
        CameraModel::new(
            Intrinsics::from_hfov(self.width_px, self.height_px, self.hfov_deg),
            self.distortion,
        )
    }
}

/// One person in a rendered frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonInView {
    /// Index and id of the incident in the scenario.
    pub incident: usize,
    pub incident_id: String,
    pub member: usize,
    pub lat_deg: f64,
    pub lon_deg: f64,
    /// Pixel of the feet (may be outside the image).
    pub foot_px: [f64; 2],
    /// Bounding box of the billboard, x1, y1, x2, y2 (unclipped).
    pub bbox_px: [f64; 4],
    /// Slant range from the camera to the feet, metres.
    pub range_m: f64,
    /// The feet are inside the image.
    pub in_image: bool,
}

/// A rendered picture with its ground truth.
pub struct RenderedFrame {
    /// BGR, 8 bits, the camera's size.
    pub image: Mat,
    pub people: Vec<PersonInView>,
    /// Fires burning (drawn where in view).
    pub fires: Vec<super::fire::FireInView>,
}

impl RenderedFrame {
    /// People whose feet are inside the image.
    pub fn visible(&self) -> impl Iterator<Item = &PersonInView> {
        self.people.iter().filter(|p| p.in_image)
    }
}

/// The camera pose of a [`Truth`]: position, attitude, and the gimbal as
/// a stabilised mount (roll and pitch to the horizon, yaw relative to the
/// heading) taken from the truth's gimbal attitude.
pub fn pose_from_truth(t: &Truth) -> CameraPose {
    let attitude = Attitude::new(
        t.roll_rad.to_degrees(),
        t.pitch_rad.to_degrees(),
        t.yaw_rad.to_degrees(),
    );
    let (r, p, y) = t.gimbal_attitude.euler_angles();
    let mut pose = CameraPose::new(
        t.t_unix_ms.round() as i64,
        t.position,
        attitude,
        GimbalAngles::new(
            r.to_degrees(),
            p.to_degrees(),
            y.to_degrees() - attitude.yaw_deg,
            GimbalMount::Stabilized,
        ),
    );
    pose.velocity_ned_mps = t.velocity_ned_mps;
    pose
}

/// Renders frames of one scenario through one camera.
pub struct Renderer {
    scenario: Arc<Scenario>,
    ground: Arc<GroundTexture>,
    sprites: Arc<SpriteBank>,
    model: CameraModel,
    /// The same intrinsics without distortion: what the warps use.
    ideal: CameraModel,
    /// Distorted pixel → ideal pixel, when the lens has distortion.
    lens_maps: Option<(Mat, Mat)>,
    sky: Scalar,
    haze: Scalar,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("scenario", &self.scenario.name)
            .field("model", &self.model)
            .finish()
    }
}

fn cv_err(e: opencv::Error) -> CameraError {
    CameraError::OpenCv(e.to_string())
}

impl Renderer {
    /// Generate the ground texture and cut the sprites from the installed
    /// vtest.avi (a few seconds), then render with `spec`.
    pub fn new(scenario: &Scenario, spec: CameraSpec) -> Result<Self, CameraError> {
        let ground = Arc::new(GroundTexture::generate(scenario)?);
        let sprites = Arc::new(SpriteBank::from_vtest()?);
        Self::with_parts(Arc::new(scenario.clone()), ground, sprites, spec)
    }

    /// Render with parts made earlier (several renderers can share them).
    pub fn with_parts(
        scenario: Arc<Scenario>,
        ground: Arc<GroundTexture>,
        sprites: Arc<SpriteBank>,
        spec: CameraSpec,
    ) -> Result<Self, CameraError> {
        spec.validate()?;
        let model = spec.model();
        let ideal = CameraModel::new(model.intrinsics, Distortion::NONE);
        let lens_maps = if model.distortion.is_none() {
            None
        } else {
            Some(lens_maps(&model)?)
        };
        Ok(Self {
            scenario,
            ground,
            sprites,
            model,
            ideal,
            lens_maps,
            sky: Scalar::new(200.0, 190.0, 176.0, 0.0),
            haze: Scalar::new(150.0, 156.0, 150.0, 0.0),
        })
    }

    pub fn model(&self) -> CameraModel {
        self.model
    }

    pub fn scenario(&self) -> &Arc<Scenario> {
        &self.scenario
    }

    pub fn ground(&self) -> &Arc<GroundTexture> {
        &self.ground
    }

    pub fn sprites(&self) -> &Arc<SpriteBank> {
        &self.sprites
    }

    /// Render what the camera sees at the truth's pose and time.
    pub fn render_truth(&self, t: &Truth) -> Result<RenderedFrame, CameraError> {
        self.render(&pose_from_truth(t), t.sim_time_s)
    }

    /// Render from a camera pose; incidents as at `sim_time_s`.
    pub fn render(&self, pose: &CameraPose, sim_time_s: f64) -> Result<RenderedFrame, CameraError> {
        let k = self.model.intrinsics;
        let size = Size::new(k.width_px as i32, k.height_px as i32);
        let view = CameraView::new(self.ideal, *pose);
        let mut image = Mat::new_size_with_default(size, CV_8UC3, self.sky).map_err(cv_err)?;
        self.draw_ground(&view, &mut image)?;
        let people = self.draw_people(pose, &view, &mut image, sim_time_s)?;
        let fires = super::fire::draw_fires(
            &self.scenario,
            &self.ground.frame,
            self.ground.alt_m,
            &view,
            &mut image,
            sim_time_s,
        )?;
        let image = match &self.lens_maps {
            None => image,
            Some((mx, my)) => {
                let mut out = Mat::default();
                imgproc::remap(
                    &image,
                    &mut out,
                    mx,
                    my,
                    imgproc::INTER_LINEAR,
                    core::BORDER_CONSTANT,
                    self.sky,
                )
                .map_err(cv_err)?;
                out
            }
        };
        Ok(RenderedFrame {
            image,
            people,
            fires,
        })
    }

    fn draw_ground(&self, view: &CameraView, image: &mut Mat) -> Result<(), CameraError> {
        let (h, sky) = match ground_projection(&self.ground, &self.ideal, view)? {
            GroundProjection::Underground => {
                // On or below the ground: nothing but a dark image.
                image.set_to_def(&Scalar::all(20.0)).map_err(cv_err)?;
                return Ok(());
            }
            GroundProjection::AllSky => return Ok(()),
            GroundProjection::Ground { h, sky } => (h, sky),
        };
        let mut warped = Mat::default();
        imgproc::warp_perspective(
            &self.ground.image,
            &mut warped,
            &h,
            image.size().map_err(cv_err)?,
            imgproc::INTER_LINEAR,
            core::BORDER_CONSTANT,
            self.haze,
        )
        .map_err(cv_err)?;
        fill_sky(&mut warped, &sky, self.sky)?;
        *image = warped;
        Ok(())
    }

    fn draw_people(
        &self,
        pose: &CameraPose,
        view: &CameraView,
        image: &mut Mat,
        sim_time_s: f64,
    ) -> Result<Vec<PersonInView>, CameraError> {
        let g = &self.ground;
        let full = CameraView::new(self.model, *pose);
        let k = self.model.intrinsics;
        let mut drawn: Vec<(f64, usize, [Point2<f64>; 4])> = Vec::new();
        let mut truth = Vec::new();
        let placed = self.scenario.people_at(sim_time_s);
        for (idx, p) in placed.iter().enumerate() {
            let foot = p.at.with_alt(g.alt_m);
            let local = LocalFrame::new(foot);
            let cam_ned = local.to_ned(pose.position);
            let range = cam_ned.norm();
            let horiz = nalgebra::Vector2::new(cam_ned.x, cam_ned.y);
            // Direction from the camera to the feet, horizontal (N, E).
            let d = if horiz.norm() > 0.3 {
                -horiz.normalize()
            } else {
                let fwd = view.r_ned_cam() * Vector3::new(0.0, -1.0, 1.0);
                let f = nalgebra::Vector2::new(fwd.x, fwd.y);
                if f.norm() > 1e-6 {
                    f.normalize()
                } else {
                    nalgebra::Vector2::x()
                }
            };
            let right = nalgebra::Vector2::new(-d.y, d.x);
            let sprite = self.sprites.pick(p.look);
            let h = p.height_m;
            let w = h * sprite.width() as f64 / sprite.height() as f64;
            let at = |side: f64, up: f64| {
                local.from_ned(Vector3::new(
                    right.x * side * w / 2.0,
                    right.y * side * w / 2.0,
                    -up,
                ))
            };
            // TL, TR, BR, BL.
            let corners3: [LatLonAlt; 4] = [at(-1.0, h), at(1.0, h), at(1.0, 0.0), at(-1.0, 0.0)];
            let ideal_px: Option<Vec<Point2<f64>>> =
                corners3.iter().map(|c| view.world_to_pixel(*c)).collect();
            let full_px: Option<Vec<Point2<f64>>> =
                corners3.iter().map(|c| full.world_to_pixel(*c)).collect();
            let (Some(ideal_px), Some(full_px), Some(foot_px)) =
                (ideal_px, full_px, full.world_to_pixel(foot))
            else {
                continue; // behind the camera
            };
            let xs = full_px.iter().map(|q| q.x);
            let ys = full_px.iter().map(|q| q.y);
            let bbox = [
                xs.clone().fold(f64::MAX, f64::min),
                ys.clone().fold(f64::MAX, f64::min),
                xs.fold(f64::MIN, f64::max),
                ys.fold(f64::MIN, f64::max),
            ];
            let in_image = k.contains(foot_px);
            let overlaps = bbox[2] >= 0.0
                && bbox[3] >= 0.0
                && bbox[0] <= k.width_px as f64
                && bbox[1] <= k.height_px as f64;
            if !overlaps {
                continue;
            }
            truth.push(PersonInView {
                incident: p.incident,
                incident_id: self.scenario.incidents[p.incident].id.clone(),
                member: p.member,
                lat_deg: p.at.lat_deg,
                lon_deg: p.at.lon_deg,
                foot_px: [foot_px.x, foot_px.y],
                bbox_px: bbox,
                range_m: range,
                in_image,
            });
            drawn.push((
                range,
                idx,
                [ideal_px[0], ideal_px[1], ideal_px[2], ideal_px[3]],
            ));
        }
        // Far ones first.
        drawn.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, idx, quad) in drawn {
            let sprite = self.sprites.pick(placed[idx].look);
            paste_sprite(image, &sprite.bgr, &sprite.alpha, &quad).map_err(cv_err)?;
        }
        Ok(truth)
    }
}

/// Warp a sprite (BGR + alpha) onto the quad TL, TR, BR, BL of `image`,
/// blending with the alpha.
fn paste_sprite(
    image: &mut Mat,
    bgr: &Mat,
    alpha: &Mat,
    quad: &[Point2<f64>; 4],
) -> opencv::Result<()> {
    let (iw, ih) = (image.cols(), image.rows());
    let x0 = quad
        .iter()
        .map(|p| p.x)
        .fold(f64::MAX, f64::min)
        .floor()
        .max(0.0) as i32;
    let y0 = quad
        .iter()
        .map(|p| p.y)
        .fold(f64::MAX, f64::min)
        .floor()
        .max(0.0) as i32;
    let x1 = (quad.iter().map(|p| p.x).fold(f64::MIN, f64::max).ceil() as i32 + 1).min(iw);
    let y1 = (quad.iter().map(|p| p.y).fold(f64::MIN, f64::max).ceil() as i32 + 1).min(ih);
    if x1 - x0 < 1 || y1 - y0 < 1 {
        return Ok(());
    }
    // Shrink the sprite first when it is drawn much smaller (area
    // averaging, not aliasing).
    let target_h = ((quad[3] - quad[0]).norm()).max((quad[2] - quad[1]).norm());
    let target_w = ((quad[1] - quad[0]).norm()).max((quad[2] - quad[3]).norm());
    let (sw, sh) = (bgr.cols() as f64, bgr.rows() as f64);
    let scale = (target_h / sh).max(target_w / sw);
    let (src_bgr, src_a) = if scale < 0.6 && target_h >= 1.0 {
        let size = Size::new(
            ((sw * scale * 1.3).round() as i32).max(2),
            ((sh * scale * 1.3).round() as i32).max(2),
        );
        let mut b = Mat::default();
        imgproc::resize(bgr, &mut b, size, 0.0, 0.0, imgproc::INTER_AREA)?;
        let mut a = Mat::default();
        imgproc::resize(alpha, &mut a, size, 0.0, 0.0, imgproc::INTER_AREA)?;
        (b, a)
    } else {
        (bgr.try_clone()?, alpha.try_clone()?)
    };
    let (sw, sh) = (src_bgr.cols() as f32, src_bgr.rows() as f32);
    // Continuous corners (edges) in OpenCV's centre-at-integer convention.
    let src: Vector<Point2f> = [
        (-0.5, -0.5),
        (sw - 0.5, -0.5),
        (sw - 0.5, sh - 0.5),
        (-0.5, sh - 0.5),
    ]
    .iter()
    .map(|&(x, y)| Point2f::new(x, y))
    .collect();
    let dst: Vector<Point2f> = quad
        .iter()
        .map(|p| {
            Point2f::new(
                (p.x - 0.5 - x0 as f64) as f32,
                (p.y - 0.5 - y0 as f64) as f32,
            )
        })
        .collect();
    let m = imgproc::get_perspective_transform_def(&src, &dst)?;
    let roi_rect = Rect::new(x0, y0, x1 - x0, y1 - y0);
    let mut warped = Mat::default();
    imgproc::warp_perspective(
        &src_bgr,
        &mut warped,
        &m,
        roi_rect.size(),
        imgproc::INTER_LINEAR,
        core::BORDER_CONSTANT,
        Scalar::all(0.0),
    )?;
    let mut wa = Mat::default();
    imgproc::warp_perspective(
        &src_a,
        &mut wa,
        &m,
        roi_rect.size(),
        imgproc::INTER_LINEAR,
        core::BORDER_CONSTANT,
        Scalar::all(0.0),
    )?;
    let mut a = Mat::default();
    wa.convert_to(&mut a, CV_32FC1, 1.0 / 255.0, 0.0)?;
    let mut inv = Mat::default();
    core::subtract(&Scalar::all(1.0), &a, &mut inv, &core::no_array(), CV_32F)?;
    let mut roi = Mat::roi_mut(image, roi_rect)?;
    let under = roi.try_clone()?;
    let mut out = Mat::default();
    imgproc::blend_linear(&warped, &under, &a, &inv, &mut out)?;
    out.copy_to(&mut roi)?;
    Ok(())
}

/// Sutherland–Hodgman: the part of a convex polygon where `f(x, y) >= 0`
/// (`f` affine).
fn clip_half_plane(poly: &[(f64, f64)], f: impl Fn(f64, f64) -> f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for i in 0..poly.len() {
        let p = poly[i];
        let q = poly[(i + 1) % poly.len()];
        let (fp, fq) = (f(p.0, p.1), f(q.0, q.1));
        if fp >= 0.0 {
            out.push(p);
        }
        if (fp >= 0.0) != (fq >= 0.0) {
            let t = fp / (fp - fq);
            out.push((p.0 + (q.0 - p.0) * t, p.1 + (q.1 - p.1) * t));
        }
    }
    out
}

/// Maps for `remap`: each distorted pixel → the ideal pixel that sees the
/// same ray.
fn lens_maps(model: &CameraModel) -> Result<(Mat, Mat), CameraError> {
    let k = model.intrinsics;
    let (w, h) = (k.width_px as i32, k.height_px as i32);
    let mut mx =
        Mat::new_rows_cols_with_default(h, w, CV_32FC1, Scalar::all(-1.0)).map_err(cv_err)?;
    let mut my =
        Mat::new_rows_cols_with_default(h, w, CV_32FC1, Scalar::all(-1.0)).map_err(cv_err)?;
    {
        let xs = mx.data_typed_mut::<f32>().map_err(cv_err)?;
        let ys = my.data_typed_mut::<f32>().map_err(cv_err)?;
        for v in 0..h {
            for u in 0..w {
                if let Ok(ray) = model.unproject(Point2::new(u as f64 + 0.5, v as f64 + 0.5)) {
                    let i = (v * w + u) as usize;
                    xs[i] = (k.fx_px * ray.x / ray.z + k.cx_px - 0.5) as f32;
                    ys[i] = (k.fy_px * ray.y / ray.z + k.cy_px - 0.5) as f32;
                }
            }
        }
    }
    Ok((mx, my))
}

/// Rotation of a truth's camera as the camera model computes it (for
/// checks: equals `Truth::camera_orientation`).
pub fn camera_rotation_of(t: &Truth) -> UnitQuaternion<f64> {
    pose_from_truth(t).r_ned_cam()
}

/// Ground point seen at a pixel (the eye's direction), on the scenario's
/// flat ground.
pub fn pixel_to_ground(
    model: &CameraModel,
    pose: &CameraPose,
    ground_alt_m: f64,
    px: (f64, f64),
) -> Result<LatLon, CameraError> {
    Ok(CameraView::new(*model, *pose)
        .pixel_to_ground(Point2::new(px.0, px.1), &FlatGround::new(ground_alt_m))?
        .point
        .horizontal())
}

/// How the ground texture lands in a picture.
pub(crate) enum GroundProjection {
    /// The camera is on or below the ground.
    Underground,
    /// Nothing of the ground is in view.
    AllSky,
    /// Texel → pixel homography (OpenCV pixel centres), and the polygon
    /// of the picture above the horizon (pixels, possibly empty).
    Ground { h: Mat, sky: Vec<(f64, f64)> },
}

/// The homography that maps the ground texture into an ideal (undistorted)
/// camera's picture, by four ground points around where the optical axis
/// meets the ground (or 200 m ahead when it looks above the horizon).
pub(crate) fn ground_projection(
    g: &GroundTexture,
    ideal: &CameraModel,
    view: &CameraView,
) -> Result<GroundProjection, CameraError> {
    let k = ideal.intrinsics;
    let flat = FlatGround::new(g.alt_m);
    let cam = view.pose.position;
    if cam.alt_m <= g.alt_m + 0.01 {
        return Ok(GroundProjection::Underground);
    }
    let here = g.frame.to_en(cam.horizontal());
    let centre = Point2::new(k.cx_px, k.cy_px);
    let (anchor, range) = match view.pixel_to_ground(centre, &flat) {
        Ok(hit) if hit.range_m < 3_000.0 => (g.frame.to_en(hit.point.horizontal()), hit.range_m),
        _ => {
            // Looking at or above the horizon: anchor on the ground
            // 200 m ahead along the view's horizontal direction.
            let fwd = view.r_ned_cam() * Vector3::z();
            let h = nalgebra::Vector2::new(fwd.x, fwd.y);
            let h = if h.norm() > 1e-6 {
                h.normalize()
            } else {
                nalgebra::Vector2::x()
            };
            ((here.0 + 200.0 * h.y, here.1 + 200.0 * h.x), 200.0)
        }
    };
    let mut half = (range * 0.5).clamp(5.0, 1_000.0);
    let mut pairs = None;
    for _ in 0..8 {
        let corners = [(-half, -half), (half, -half), (half, half), (-half, half)];
        let mut src = Vector::<Point2f>::new();
        let mut dst = Vector::<Point2f>::new();
        let mut ok = true;
        for (de, dn) in corners {
            let (e, n) = (anchor.0 + de, anchor.1 + dn);
            let p = g.frame.from_en(e, n).with_alt(g.alt_m);
            match view.ground_to_pixel(p) {
                Some(px) if px.x.abs() < 1e7 && px.y.abs() < 1e7 => {
                    let (tx, ty) = g.texel_of_en(e, n);
                    // Model pixels are continuous (the image spans
                    // [0, W]); OpenCV's pixel i is centred at i.
                    src.push(Point2f::new(tx as f32, ty as f32));
                    dst.push(Point2f::new((px.x - 0.5) as f32, (px.y - 0.5) as f32));
                }
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            pairs = Some((src, dst));
            break;
        }
        half /= 2.0;
    }
    let Some((src, dst)) = pairs else {
        return Ok(GroundProjection::AllSky);
    };
    // f64 homography from the f32 points (OpenCV's own solver).
    let h = imgproc::get_perspective_transform_def(&src, &dst).map_err(cv_err)?;
    // Sky: where the inverse homography's w has the wrong sign (the ray
    // goes above the horizon).
    let mut hinv = Mat::default();
    core::invert(&h, &mut hinv, core::DECOMP_LU).map_err(cv_err)?;
    let r = |i: i32, j: i32| -> Result<f64, CameraError> {
        Ok(*hinv.at_2d::<f64>(i, j).map_err(cv_err)?)
    };
    let (a, b, c) = (r(2, 0)?, r(2, 1)?, r(2, 2)?);
    let d0 = dst.get(0).map_err(cv_err)?;
    let sign = (a * d0.x as f64 + b * d0.y as f64 + c).signum();
    let (a, b, c) = (a * sign, b * sign, c * sign);
    let (w, hh) = (k.width_px as f64, k.height_px as f64);
    // Keep a margin above the horizon line: w → 0 there.
    let eps = 1e-6 * (a.abs() * w + b.abs() * hh + c.abs());
    let sky = clip_half_plane(&[(0.0, 0.0), (w, 0.0), (w, hh), (0.0, hh)], |x, y| {
        -(a * x + b * y + c - eps)
    });
    Ok(GroundProjection::Ground { h, sky })
}

/// Paint the sky polygon of [`ground_projection`] (any Mat type).
pub(crate) fn fill_sky(
    image: &mut Mat,
    sky: &[(f64, f64)],
    colour: Scalar,
) -> Result<(), CameraError> {
    if sky.len() < 3 {
        return Ok(());
    }
    let poly: Vector<Point> = sky
        .iter()
        .map(|&(x, y)| Point::new((x * 8.0).round() as i32, (y * 8.0).round() as i32))
        .collect();
    let mut v = Vector::<Vector<Point>>::new();
    v.push(poly);
    imgproc::fill_poly(image, &v, colour, imgproc::LINE_AA, 3, Point::new(0, 0)).map_err(cv_err)
}
