//! The camera model: pixels ↔ rays ↔ ground points, and how sure we are.
//!
//! One model serves both directions, so that what the simulator renders
//! (ground → pixel, [`CameraView::ground_to_pixel`]) is exactly what the eye
//! reads back (pixel → ground, [`CameraView::pixel_to_ground`]).
//!
//! # Frames and rotation chain
//!
//! ```text
//!  world  NED (north, east, down) at the camera position
//!    ↑ R_ned_body     vehicle attitude: yaw, pitch, roll (Z-Y-X Euler, FRD body)
//!  body   FRD (forward, right, down)
//!    ↑ R_body_gimbal  gimbal angles (Z-Y-X Euler; pitch −90° looks straight down)
//!  gimbal FRD-like: x along the optical axis, y right, z down
//!    ↑ R_gimbal_cam   fixed axis permutation
//!  camera x right, y down, z forward (OpenCV)
//! ```
//!
//! With all angles zero the camera looks along the vehicle's nose, image
//! right is the vehicle's right. A [`GimbalMount::Stabilized`] gimbal holds
//! pitch and roll relative to the horizon (yaw still follows the vehicle),
//! which is what most 3-axis camera gimbals report.
//!
//! # Lens
//!
//! Pinhole [`Intrinsics`] (`fx, fy, cx, cy` in pixels) with OpenCV's
//! distortion model ([`Distortion`]: `k1, k2, p1, p2, k3`, same order and
//! meaning as `cv::calibrateCamera`), so a calibration file from OpenCV can
//! be used as is. Undistortion is solved by Newton's method to 1e-12 in
//! normalised coordinates.
//!
//! # Ground
//!
//! A ray is intersected with the surface "altitude = terrain height" on the
//! WGS84 ellipsoid (exactly, not a flat-earth approximation), where the
//! terrain is a [`FlatGround`] at a given altitude (e.g. home) or any
//! height function implementing [`Terrain`].
//!
//! # Uncertainty
//!
//! [`CameraView::locate`] propagates the 1-σ errors of a [`CameraPose`]
//! ([`PoseSigma`]: horizontal position, altitude, vehicle attitude, gimbal
//! angles, ground height, timing — the latter through the vehicle velocity
//! and angular rates) and of the pixel itself, by central differences
//! (first-order, like an EKF), to a 2×2 north/east covariance and its
//! [`GroundEllipse`].
//!
//! # Poses at frame time
//!
//! [`PoseSource`] is how the geotagger asks "where was the camera at
//! `t_unix_ms`?". [`PoseHistory`] is a ready implementation that
//! interpolates timestamped samples (linear position, quaternion slerp for
//! attitude) and refuses to extrapolate beyond a bound.
//!
//! Everything here is pure: no I/O, no clock.

use std::collections::VecDeque;

use nalgebra::{
    Matrix2, Matrix3, Point2, Rotation3, SymmetricEigen, UnitQuaternion, Vector2, Vector3,
};
use serde::{Deserialize, Serialize};

use crate::geodesy::{LatLon, LatLonAlt, LocalFrame};

/// Errors of the camera model. Each says what could not be done and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CameraError {
    #[error("camera intrinsics are invalid: {0}")]
    InvalidIntrinsics(String),
    #[error("pixel ({u:.2}, {v:.2}) is not finite")]
    PixelNotFinite { u: f64, v: f64 },
    #[error(
        "pixel ({u:.2}, {v:.2}) cannot be undistorted (outside the lens model's valid region)"
    )]
    Undistort { u: f64, v: f64 },
    #[error("the ray through pixel ({u:.1}, {v:.1}) points at or above the horizon (down component {down:.4})")]
    AboveHorizon { u: f64, v: f64, down: f64 },
    #[error(
        "the ray through pixel ({u:.1}, {v:.1}) does not meet the ground within {max_range_m} m"
    )]
    NoGround { u: f64, v: f64, max_range_m: f64 },
    #[error(
        "the camera is below the ground ({camera_alt_m:.1} m AMSL, ground {ground_alt_m:.1} m)"
    )]
    CameraBelowGround {
        camera_alt_m: f64,
        ground_alt_m: f64,
    },
    #[error("terrain height is unknown at {lat_deg:.6}, {lon_deg:.6}")]
    TerrainUnknown { lat_deg: f64, lon_deg: f64 },
}

/// Pinhole intrinsics in pixels for an image of `width_px × height_px`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Intrinsics {
    pub width_px: u32,
    pub height_px: u32,
    pub fx_px: f64,
    pub fy_px: f64,
    pub cx_px: f64,
    pub cy_px: f64,
}

impl Intrinsics {
    /// Square pixels, principal point at the image centre, horizontal field
    /// of view `hfov_deg`.
    pub fn from_hfov(width_px: u32, height_px: u32, hfov_deg: f64) -> Self {
        let f = width_px as f64 / 2.0 / (hfov_deg.to_radians() / 2.0).tan();
        Self {
            width_px,
            height_px,
            fx_px: f,
            fy_px: f,
            cx_px: width_px as f64 / 2.0,
            cy_px: height_px as f64 / 2.0,
        }
    }

    /// The same lens seen through an image resized to `width_px × height_px`.
    pub fn scaled_to(&self, width_px: u32, height_px: u32) -> Self {
        let sx = width_px as f64 / self.width_px as f64;
        let sy = height_px as f64 / self.height_px as f64;
        Self {
            width_px,
            height_px,
            fx_px: self.fx_px * sx,
            fy_px: self.fy_px * sy,
            cx_px: self.cx_px * sx,
            cy_px: self.cy_px * sy,
        }
    }

    /// Horizontal field of view in degrees (ignoring distortion).
    pub fn hfov_deg(&self) -> f64 {
        2.0 * (self.width_px as f64 / 2.0 / self.fx_px)
            .atan()
            .to_degrees()
    }

    pub fn validate(&self) -> Result<(), CameraError> {
        let bad = |m: String| Err(CameraError::InvalidIntrinsics(m));
        if self.width_px == 0 || self.height_px == 0 {
            return bad(format!(
                "image size {}x{} is empty",
                self.width_px, self.height_px
            ));
        }
        for (n, v) in [("fx_px", self.fx_px), ("fy_px", self.fy_px)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{n} = {v} must be a positive number"));
            }
        }
        for (n, v) in [("cx_px", self.cx_px), ("cy_px", self.cy_px)] {
            if !v.is_finite() {
                return bad(format!("{n} = {v} must be finite"));
            }
        }
        Ok(())
    }

    /// True when the pixel lies inside the image (edges included).
    pub fn contains(&self, px: Point2<f64>) -> bool {
        px.x >= 0.0 && px.y >= 0.0 && px.x <= self.width_px as f64 && px.y <= self.height_px as f64
    }
}

/// OpenCV's 5-coefficient distortion model (`k1, k2, p1, p2, k3`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Distortion {
    #[serde(default)]
    pub k1: f64,
    #[serde(default)]
    pub k2: f64,
    #[serde(default)]
    pub p1: f64,
    #[serde(default)]
    pub p2: f64,
    #[serde(default)]
    pub k3: f64,
}

impl Distortion {
    pub const NONE: Distortion = Distortion {
        k1: 0.0,
        k2: 0.0,
        p1: 0.0,
        p2: 0.0,
        k3: 0.0,
    };

    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }

    /// Undistorted normalised coordinates → distorted normalised coordinates.
    pub fn distort(&self, p: Vector2<f64>) -> Vector2<f64> {
        let (x, y) = (p.x, p.y);
        let r2 = x * x + y * y;
        let radial = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3));
        Vector2::new(
            x * radial + 2.0 * self.p1 * x * y + self.p2 * (r2 + 2.0 * x * x),
            y * radial + self.p1 * (r2 + 2.0 * y * y) + 2.0 * self.p2 * x * y,
        )
    }

    /// Jacobian of [`Distortion::distort`].
    fn jacobian(&self, p: Vector2<f64>) -> Matrix2<f64> {
        let (x, y) = (p.x, p.y);
        let r2 = x * x + y * y;
        let radial = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3));
        let d_radial = self.k1 + 2.0 * self.k2 * r2 + 3.0 * self.k3 * r2 * r2;
        let dxdx = radial + 2.0 * x * x * d_radial + 2.0 * self.p1 * y + 6.0 * self.p2 * x;
        let dxdy = 2.0 * x * y * d_radial + 2.0 * self.p1 * x + 2.0 * self.p2 * y;
        let dydx = 2.0 * x * y * d_radial + 2.0 * self.p1 * x + 2.0 * self.p2 * y;
        let dydy = radial + 2.0 * y * y * d_radial + 6.0 * self.p1 * y + 2.0 * self.p2 * x;
        Matrix2::new(dxdx, dxdy, dydx, dydy)
    }

    /// Distorted → undistorted normalised coordinates (Newton's method).
    /// `None` when the point is outside the region where the model is
    /// invertible (the polynomial folds over far outside the calibrated
    /// field of view).
    pub fn undistort(&self, d: Vector2<f64>) -> Option<Vector2<f64>> {
        if self.is_none() {
            return Some(d);
        }
        let mut p = d;
        for _ in 0..100 {
            let f = self.distort(p) - d;
            if f.norm() < 1e-14 {
                return self.jacobian(p).determinant().gt(&0.0).then_some(p);
            }
            let j = self.jacobian(p);
            let step = j.try_inverse()? * f;
            // Damp big steps: the polynomial is wild far out.
            let max_step = 0.5 * (1.0 + p.norm());
            let step = if step.norm() > max_step {
                step * (max_step / step.norm())
            } else {
                step
            };
            p -= step;
            if !p.x.is_finite() || !p.y.is_finite() {
                return None;
            }
        }
        let ok = (self.distort(p) - d).norm() < 1e-10 && self.jacobian(p).determinant() > 0.0;
        ok.then_some(p)
    }
}

/// A calibrated camera: intrinsics plus lens distortion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CameraModel {
    pub intrinsics: Intrinsics,
    #[serde(default)]
    pub distortion: Distortion,
}

impl CameraModel {
    pub fn new(intrinsics: Intrinsics, distortion: Distortion) -> Self {
        Self {
            intrinsics,
            distortion,
        }
    }

    /// An ideal (distortion-free) camera with a horizontal field of view.
    pub fn ideal(width_px: u32, height_px: u32, hfov_deg: f64) -> Self {
        Self::new(
            Intrinsics::from_hfov(width_px, height_px, hfov_deg),
            Distortion::NONE,
        )
    }

    /// The same camera for an image resized to `width_px × height_px`
    /// (distortion is in normalised coordinates and does not change).
    pub fn scaled_to(&self, width_px: u32, height_px: u32) -> Self {
        Self::new(
            self.intrinsics.scaled_to(width_px, height_px),
            self.distortion,
        )
    }

    /// A point in the camera frame (x right, y down, z forward, metres) →
    /// pixel. `None` when the point is not in front of the camera.
    pub fn project(&self, p_cam: Vector3<f64>) -> Option<Point2<f64>> {
        if p_cam.z <= 1e-9 || !p_cam.iter().all(|c| c.is_finite()) {
            return None;
        }
        let n = Vector2::new(p_cam.x / p_cam.z, p_cam.y / p_cam.z);
        let d = self.distortion.distort(n);
        let k = &self.intrinsics;
        Some(Point2::new(
            k.fx_px * d.x + k.cx_px,
            k.fy_px * d.y + k.cy_px,
        ))
    }

    /// Pixel → unit ray in the camera frame.
    pub fn unproject(&self, px: Point2<f64>) -> Result<Vector3<f64>, CameraError> {
        if !px.x.is_finite() || !px.y.is_finite() {
            return Err(CameraError::PixelNotFinite { u: px.x, v: px.y });
        }
        let k = &self.intrinsics;
        let d = Vector2::new((px.x - k.cx_px) / k.fx_px, (px.y - k.cy_px) / k.fy_px);
        let n = self
            .distortion
            .undistort(d)
            .ok_or(CameraError::Undistort { u: px.x, v: px.y })?;
        Ok(Vector3::new(n.x, n.y, 1.0).normalize())
    }
}

/// Vehicle attitude: Z-Y-X Euler angles of the FRD body in NED, degrees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Attitude {
    pub roll_deg: f64,
    /// Positive nose up.
    pub pitch_deg: f64,
    /// Heading, clockwise from true north.
    pub yaw_deg: f64,
}

impl Attitude {
    pub fn new(roll_deg: f64, pitch_deg: f64, yaw_deg: f64) -> Self {
        Self {
            roll_deg,
            pitch_deg,
            yaw_deg,
        }
    }

    /// Rotation body → NED.
    pub fn quaternion(&self) -> UnitQuaternion<f64> {
        UnitQuaternion::from_euler_angles(
            self.roll_deg.to_radians(),
            self.pitch_deg.to_radians(),
            self.yaw_deg.to_radians(),
        )
    }

    pub fn from_quaternion(q: &UnitQuaternion<f64>) -> Self {
        let (r, p, y) = q.euler_angles();
        Self::new(r.to_degrees(), p.to_degrees(), y.to_degrees())
    }
}

/// What the gimbal's angles are relative to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GimbalMount {
    /// Roll, pitch and yaw relative to the vehicle body (a fixed mount is
    /// this with constant angles).
    Vehicle,
    /// Roll and pitch relative to the horizon, yaw relative to the
    /// vehicle's heading: a stabilised 3-axis gimbal in "follow" mode.
    #[default]
    Stabilized,
}

/// Gimbal angles, degrees. Pitch −90 looks straight down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GimbalAngles {
    #[serde(default)]
    pub roll_deg: f64,
    pub pitch_deg: f64,
    #[serde(default)]
    pub yaw_deg: f64,
    #[serde(default)]
    pub mount: GimbalMount,
}

impl GimbalAngles {
    pub fn new(roll_deg: f64, pitch_deg: f64, yaw_deg: f64, mount: GimbalMount) -> Self {
        Self {
            roll_deg,
            pitch_deg,
            yaw_deg,
            mount,
        }
    }

    /// Straight down, stabilised.
    pub fn nadir() -> Self {
        Self::new(0.0, -90.0, 0.0, GimbalMount::Stabilized)
    }
}

/// 1-σ uncertainties of a [`CameraPose`]. Zero means "exact".
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoseSigma {
    /// Horizontal position (GNSS), metres, per axis.
    pub horizontal_m: f64,
    /// Camera height above the ground (altitude and ground height), metres.
    pub vertical_m: f64,
    pub roll_deg: f64,
    pub pitch_deg: f64,
    pub yaw_deg: f64,
    pub gimbal_roll_deg: f64,
    pub gimbal_pitch_deg: f64,
    pub gimbal_yaw_deg: f64,
    /// Frame-time error (capture time vs pose time), seconds; acts through
    /// the velocity and angular rates.
    pub time_s: f64,
}

impl PoseSigma {
    /// Typical for a small multicopter with a consumer GNSS receiver and a
    /// stabilised gimbal: 1.5 m horizontal, 1 m vertical, 1° roll/pitch,
    /// 3° yaw, 1° gimbal, 50 ms frame timing.
    pub fn typical() -> Self {
        Self {
            horizontal_m: 1.5,
            vertical_m: 1.0,
            roll_deg: 1.0,
            pitch_deg: 1.0,
            yaw_deg: 3.0,
            gimbal_roll_deg: 0.5,
            gimbal_pitch_deg: 1.0,
            gimbal_yaw_deg: 1.0,
            time_s: 0.05,
        }
    }
}

/// Where the camera was and how it was pointing at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CameraPose {
    /// Time of the pose (Unix ms).
    pub t_unix_ms: i64,
    /// Camera position, metres AMSL.
    pub position: LatLonAlt,
    pub attitude: Attitude,
    pub gimbal: GimbalAngles,
    /// Vehicle velocity, north/east/down m/s (used for timing errors and
    /// interpolation).
    #[serde(default)]
    pub velocity_ned_mps: [f64; 3],
    /// Rate of change of the camera's pointing: vehicle roll, pitch, yaw
    /// rates plus gimbal motion, deg/s, applied to the camera's own axes
    /// (used for timing errors only).
    #[serde(default)]
    pub angular_rate_dps: [f64; 3],
    #[serde(default)]
    pub sigma: PoseSigma,
}

/// Rotation gimbal frame (x optical axis, y right, z down) ← camera frame
/// (x right, y down, z forward).
fn r_gimbal_cam() -> UnitQuaternion<f64> {
    #[rustfmt::skip]
    let m = Matrix3::new(
        0.0, 0.0, 1.0,
        1.0, 0.0, 0.0,
        0.0, 1.0, 0.0,
    );
    UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(m))
}

impl CameraPose {
    /// A pose with no uncertainty, no motion.
    pub fn new(
        t_unix_ms: i64,
        position: LatLonAlt,
        attitude: Attitude,
        gimbal: GimbalAngles,
    ) -> Self {
        Self {
            t_unix_ms,
            position,
            attitude,
            gimbal,
            velocity_ned_mps: [0.0; 3],
            angular_rate_dps: [0.0; 3],
            sigma: PoseSigma::default(),
        }
    }

    pub fn with_sigma(mut self, sigma: PoseSigma) -> Self {
        self.sigma = sigma;
        self
    }

    /// Rotation gimbal → NED.
    pub fn r_ned_gimbal(&self) -> UnitQuaternion<f64> {
        let g = &self.gimbal;
        match g.mount {
            GimbalMount::Vehicle => {
                self.attitude.quaternion()
                    * UnitQuaternion::from_euler_angles(
                        g.roll_deg.to_radians(),
                        g.pitch_deg.to_radians(),
                        g.yaw_deg.to_radians(),
                    )
            }
            GimbalMount::Stabilized => UnitQuaternion::from_euler_angles(
                g.roll_deg.to_radians(),
                g.pitch_deg.to_radians(),
                (self.attitude.yaw_deg + g.yaw_deg).to_radians(),
            ),
        }
    }

    /// Rotation camera frame → NED: `v_ned = r_ned_cam() * v_cam`.
    pub fn r_ned_cam(&self) -> UnitQuaternion<f64> {
        self.r_ned_gimbal() * r_gimbal_cam()
    }

    /// The pose `dt_s` later, extrapolated with the velocity and rates.
    pub fn extrapolate(&self, dt_s: f64) -> CameraPose {
        let mut p = *self;
        let f = LocalFrame::new(self.position);
        let v = Vector3::from(self.velocity_ned_mps) * dt_s;
        p.position = f.from_ned(v);
        let w = Vector3::from(self.angular_rate_dps).map(|d| d.to_radians() * dt_s);
        // Rates are about the camera's own axes: rotate the camera.
        let q = self.r_ned_cam() * UnitQuaternion::from_scaled_axis(w);
        p.set_camera_rotation(&q);
        p.t_unix_ms = self.t_unix_ms + (dt_s * 1000.0).round() as i64;
        p
    }

    /// Replace the pointing so that `r_ned_cam()` becomes `q`, keeping the
    /// vehicle attitude and expressing the change in the gimbal angles.
    fn set_camera_rotation(&mut self, q: &UnitQuaternion<f64>) {
        let r_ned_gimbal = q * r_gimbal_cam().inverse();
        match self.gimbal.mount {
            GimbalMount::Vehicle => {
                let rel = self.attitude.quaternion().inverse() * r_ned_gimbal;
                let (r, p, y) = rel.euler_angles();
                self.gimbal.roll_deg = r.to_degrees();
                self.gimbal.pitch_deg = p.to_degrees();
                self.gimbal.yaw_deg = y.to_degrees();
            }
            GimbalMount::Stabilized => {
                let (r, p, y) = r_ned_gimbal.euler_angles();
                self.gimbal.roll_deg = r.to_degrees();
                self.gimbal.pitch_deg = p.to_degrees();
                self.gimbal.yaw_deg = y.to_degrees() - self.attitude.yaw_deg;
            }
        }
    }
}

/// Ground height. Implement it for a DEM; [`FlatGround`] is the usual choice
/// (home altitude). Any `Fn(LatLon) -> Option<f64>` is a terrain too.
pub trait Terrain {
    /// Ground altitude (m AMSL) at a point, `None` where unknown.
    fn ground_alt_m(&self, at: LatLon) -> Option<f64>;

    /// `Some(alt)` when the ground is flat everywhere (lets the intersection
    /// skip ray marching).
    fn flat_alt_m(&self) -> Option<f64> {
        None
    }
}

/// Flat ground at one altitude (m AMSL).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FlatGround {
    pub alt_m: f64,
}

impl FlatGround {
    pub fn new(alt_m: f64) -> Self {
        Self { alt_m }
    }
}

impl Terrain for FlatGround {
    fn ground_alt_m(&self, _at: LatLon) -> Option<f64> {
        Some(self.alt_m)
    }
    fn flat_alt_m(&self) -> Option<f64> {
        Some(self.alt_m)
    }
}

impl<F: Fn(LatLon) -> Option<f64>> Terrain for F {
    fn ground_alt_m(&self, at: LatLon) -> Option<f64> {
        self(at)
    }
}

/// Where a pixel's ray meets the ground.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundHit {
    pub point: LatLonAlt,
    /// Slant range from the camera, metres.
    pub range_m: f64,
    /// Unit ray in NED at the camera.
    pub ray_ned: Vector3<f64>,
}

/// A 1-σ ground uncertainty ellipse.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroundEllipse {
    pub semi_major_m: f64,
    pub semi_minor_m: f64,
    /// Direction of the major axis, degrees clockwise from north, [0, 180).
    pub orientation_deg: f64,
}

impl GroundEllipse {
    /// The ellipse of a north/east covariance matrix (m²).
    pub fn from_covariance(cov_ne: &Matrix2<f64>) -> Self {
        let sym = (cov_ne + cov_ne.transpose()) * 0.5;
        let eig = SymmetricEigen::new(sym);
        let (i_max, i_min) = if eig.eigenvalues[0] >= eig.eigenvalues[1] {
            (0, 1)
        } else {
            (1, 0)
        };
        let major = eig.eigenvectors.column(i_max);
        let mut orientation = major[1].atan2(major[0]).to_degrees();
        orientation = orientation.rem_euclid(180.0);
        if orientation >= 180.0 - 1e-12 {
            orientation = 0.0;
        }
        Self {
            semi_major_m: eig.eigenvalues[i_max].max(0.0).sqrt(),
            semi_minor_m: eig.eigenvalues[i_min].max(0.0).sqrt(),
            orientation_deg: orientation,
        }
    }
}

/// A located ground point with its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundEstimate {
    pub point: LatLonAlt,
    pub range_m: f64,
    /// North/east covariance, m².
    pub cov_ne_m2: Matrix2<f64>,
    pub sigma: GroundEllipse,
}

/// Longest ray considered when intersecting with the ground.
pub const DEFAULT_MAX_RANGE_M: f64 = 20_000.0;

/// A camera at a pose: the object both the eye (pixel → ground) and the
/// simulator (ground → pixel) use.
#[derive(Debug, Clone, Copy)]
pub struct CameraView {
    pub model: CameraModel,
    pub pose: CameraPose,
    /// Rotation camera → NED at the camera position.
    r_ned_cam: UnitQuaternion<f64>,
    frame: LocalFrame,
    max_range_m: f64,
}

impl CameraView {
    pub fn new(model: CameraModel, pose: CameraPose) -> Self {
        Self {
            model,
            r_ned_cam: pose.r_ned_cam(),
            frame: LocalFrame::new(pose.position),
            pose,
            max_range_m: DEFAULT_MAX_RANGE_M,
        }
    }

    pub fn with_max_range(mut self, max_range_m: f64) -> Self {
        self.max_range_m = max_range_m;
        self
    }

    /// Rotation camera → NED.
    pub fn r_ned_cam(&self) -> UnitQuaternion<f64> {
        self.r_ned_cam
    }

    /// The local NED frame at the camera.
    pub fn local_frame(&self) -> &LocalFrame {
        &self.frame
    }

    /// Unit ray in NED through a pixel.
    pub fn pixel_ray_ned(&self, px: Point2<f64>) -> Result<Vector3<f64>, CameraError> {
        Ok(self.r_ned_cam * self.model.unproject(px)?)
    }

    /// A world point → pixel (distortion applied). `None` when the point is
    /// behind the camera. The pixel may lie outside the image: check with
    /// [`Intrinsics::contains`].
    pub fn world_to_pixel(&self, p: LatLonAlt) -> Option<Point2<f64>> {
        let ned = self.frame.to_ned(p);
        self.ned_to_pixel(ned)
    }

    /// Alias of [`CameraView::world_to_pixel`] for ground points: what the
    /// simulator uses to render.
    pub fn ground_to_pixel(&self, p: LatLonAlt) -> Option<Point2<f64>> {
        self.world_to_pixel(p)
    }

    /// A point in the camera's NED frame (metres from the camera) → pixel.
    pub fn ned_to_pixel(&self, ned: Vector3<f64>) -> Option<Point2<f64>> {
        self.model.project(self.r_ned_cam.inverse() * ned)
    }

    /// Pixel → ground.
    pub fn pixel_to_ground(
        &self,
        px: Point2<f64>,
        terrain: &dyn Terrain,
    ) -> Result<GroundHit, CameraError> {
        let ray = self.pixel_ray_ned(px)?;
        self.intersect(ray, px, terrain)
    }

    fn alt_and_ground(
        &self,
        ray: &Vector3<f64>,
        t: f64,
        terrain: &dyn Terrain,
    ) -> Result<(LatLonAlt, f64), CameraError> {
        let p = self.frame.from_ned(ray * t);
        let g = terrain
            .ground_alt_m(p.horizontal())
            .ok_or(CameraError::TerrainUnknown {
                lat_deg: p.lat_deg,
                lon_deg: p.lon_deg,
            })?;
        Ok((p, g))
    }

    fn intersect(
        &self,
        ray: Vector3<f64>,
        px: Point2<f64>,
        terrain: &dyn Terrain,
    ) -> Result<GroundHit, CameraError> {
        let cam_alt = self.pose.position.alt_m;
        let (u, v) = (px.x, px.y);
        if let Some(ground) = terrain.flat_alt_m() {
            if cam_alt <= ground {
                return Err(CameraError::CameraBelowGround {
                    camera_alt_m: cam_alt,
                    ground_alt_m: ground,
                });
            }
            if ray.z <= 1e-9 {
                return Err(CameraError::AboveHorizon { u, v, down: ray.z });
            }
            // Plane solution, then Newton on the true altitude (earth
            // curvature): alt(t) decreases at about ray.z per metre.
            let mut t = (cam_alt - ground) / ray.z;
            for _ in 0..20 {
                if t > self.max_range_m {
                    break;
                }
                let alt = self.frame.from_ned(ray * t).alt_m;
                let h = 1e-3;
                let alt2 = self.frame.from_ned(ray * (t + h)).alt_m;
                let slope = (alt2 - alt) / h;
                if slope >= -1e-12 {
                    return Err(CameraError::NoGround {
                        u,
                        v,
                        max_range_m: self.max_range_m,
                    });
                }
                let dt = (alt - ground) / slope;
                t -= dt;
                if dt.abs() < 1e-7 {
                    break;
                }
            }
            if !(t.is_finite() && t > 0.0 && t <= self.max_range_m) {
                return Err(CameraError::NoGround {
                    u,
                    v,
                    max_range_m: self.max_range_m,
                });
            }
            return Ok(GroundHit {
                point: self.frame.from_ned(ray * t),
                range_m: t,
                ray_ned: ray,
            });
        }
        // General terrain: march along the ray, then bisect.
        let (_, g0) = self.alt_and_ground(&ray, 0.0, terrain)?;
        if cam_alt <= g0 {
            return Err(CameraError::CameraBelowGround {
                camera_alt_m: cam_alt,
                ground_alt_m: g0,
            });
        }
        let step = ((cam_alt - g0) * 0.05).clamp(0.5, 25.0);
        let mut t_prev = 0.0;
        let mut t = step;
        loop {
            if t > self.max_range_m {
                return Err(if ray.z <= 0.0 {
                    CameraError::AboveHorizon { u, v, down: ray.z }
                } else {
                    CameraError::NoGround {
                        u,
                        v,
                        max_range_m: self.max_range_m,
                    }
                });
            }
            let (p, g) = self.alt_and_ground(&ray, t, terrain)?;
            if p.alt_m <= g {
                break;
            }
            t_prev = t;
            t += step;
        }
        let (mut lo, mut hi) = (t_prev, t);
        while hi - lo > 1e-5 {
            let mid = 0.5 * (lo + hi);
            let (p, g) = self.alt_and_ground(&ray, mid, terrain)?;
            if p.alt_m <= g {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let t = 0.5 * (lo + hi);
        Ok(GroundHit {
            point: self.frame.from_ned(ray * t),
            range_m: t,
            ray_ned: ray,
        })
    }

    /// Pixel → ground with a 1-σ ellipse propagated from the pose's
    /// [`PoseSigma`] and a pixel uncertainty `sigma_px` (per axis).
    pub fn locate(
        &self,
        px: Point2<f64>,
        terrain: &dyn Terrain,
        sigma_px: f64,
    ) -> Result<GroundEstimate, CameraError> {
        let hit = self.pixel_to_ground(px, terrain)?;
        let ground_frame = LocalFrame::new(hit.point);
        let s = self.pose.sigma;
        let mut cov = Matrix2::<f64>::zeros();
        cov[(0, 0)] += s.horizontal_m.powi(2);
        cov[(1, 1)] += s.horizontal_m.powi(2);

        // Ground point (north, east of the nominal) for a perturbed pose or
        // pixel; None when the perturbed ray misses the ground.
        let offset = |pose: &CameraPose, px: Point2<f64>, dz: f64| -> Option<Vector2<f64>> {
            let mut pose = *pose;
            pose.position.alt_m += dz;
            let view = CameraView::new(self.model, pose).with_max_range(self.max_range_m);
            let h = view.pixel_to_ground(px, terrain).ok()?;
            let ned = ground_frame.to_ned(h.point);
            Some(Vector2::new(ned.x, ned.y))
        };
        let base = self.pose;
        let mut add = |sigma: f64, step: f64, f: &dyn Fn(f64) -> Option<Vector2<f64>>| {
            if sigma <= 0.0 {
                return;
            }
            let j = match (f(step), f(-step)) {
                (Some(a), Some(b)) => (a - b) / (2.0 * step),
                // Near the horizon a perturbation can lose the ground: the
                // error is then as large as the range allows.
                _ => Vector2::new(self.max_range_m, self.max_range_m) / sigma,
            };
            cov += j * j.transpose() * sigma * sigma;
        };
        let ang = 0.01; // degrees
        add(s.roll_deg, ang, &|d| {
            let mut p = base;
            p.attitude.roll_deg += d;
            offset(&p, px, 0.0)
        });
        add(s.pitch_deg, ang, &|d| {
            let mut p = base;
            p.attitude.pitch_deg += d;
            offset(&p, px, 0.0)
        });
        add(s.yaw_deg, ang, &|d| {
            let mut p = base;
            p.attitude.yaw_deg += d;
            offset(&p, px, 0.0)
        });
        add(s.gimbal_roll_deg, ang, &|d| {
            let mut p = base;
            p.gimbal.roll_deg += d;
            offset(&p, px, 0.0)
        });
        add(s.gimbal_pitch_deg, ang, &|d| {
            let mut p = base;
            p.gimbal.pitch_deg += d;
            offset(&p, px, 0.0)
        });
        add(s.gimbal_yaw_deg, ang, &|d| {
            let mut p = base;
            p.gimbal.yaw_deg += d;
            offset(&p, px, 0.0)
        });
        add(s.vertical_m, 0.01, &|d| offset(&base, px, d));
        add(s.time_s, 0.001, &|d| offset(&base.extrapolate(d), px, 0.0));
        add(sigma_px, 0.05, &|d| {
            offset(&base, Point2::new(px.x + d, px.y), 0.0)
        });
        add(sigma_px, 0.05, &|d| {
            offset(&base, Point2::new(px.x, px.y + d), 0.0)
        });

        Ok(GroundEstimate {
            point: hit.point,
            range_m: hit.range_m,
            cov_ne_m2: cov,
            sigma: GroundEllipse::from_covariance(&cov),
        })
    }
}

/// Where the camera was at a given time. The firmware bridge implements it
/// from autopilot telemetry; [`PoseHistory`] is a ready implementation;
/// `tiancha detect` reads one from a file or makes a fixed one.
pub trait PoseSource: Send + Sync {
    /// The camera pose at `t_unix_ms`, or `None` when it is not known well
    /// enough (no telemetry around that time).
    fn pose_at(&self, t_unix_ms: i64) -> Option<CameraPose>;
}

/// A fixed pose (a mast camera, or a test), valid at any time.
#[derive(Debug, Clone, Copy)]
pub struct FixedPose(pub CameraPose);

impl PoseSource for FixedPose {
    fn pose_at(&self, t_unix_ms: i64) -> Option<CameraPose> {
        Some(CameraPose {
            t_unix_ms,
            ..self.0
        })
    }
}

/// Timestamped pose samples, interpolated at frame times.
///
/// Between two samples no more than `max_gap_ms` apart the pose is
/// interpolated (position linearly, pointing by quaternion slerp, velocity
/// and sigmas linearly); outside the samples it is extrapolated by at most
/// `max_extrapolate_ms` with the velocity. Otherwise: `None`.
#[derive(Debug, Clone)]
pub struct PoseHistory {
    samples: VecDeque<CameraPose>,
    capacity: usize,
    pub max_gap_ms: i64,
    pub max_extrapolate_ms: i64,
}

impl PoseHistory {
    pub fn new(capacity: usize) -> Self {
        Self {
            samples: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(2),
            max_gap_ms: 1_000,
            max_extrapolate_ms: 250,
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Time of the oldest sample.
    pub fn first_t_unix_ms(&self) -> Option<i64> {
        self.samples.front().map(|p| p.t_unix_ms)
    }

    /// Time of the newest sample.
    pub fn last_t_unix_ms(&self) -> Option<i64> {
        self.samples.back().map(|p| p.t_unix_ms)
    }

    /// Add a sample. Samples may arrive out of order; duplicates (same
    /// time) replace the older one. The oldest sample goes when full.
    pub fn push(&mut self, pose: CameraPose) {
        let i = self
            .samples
            .partition_point(|p| p.t_unix_ms < pose.t_unix_ms);
        if i < self.samples.len() && self.samples[i].t_unix_ms == pose.t_unix_ms {
            self.samples[i] = pose;
        } else {
            self.samples.insert(i, pose);
        }
        while self.samples.len() > self.capacity {
            self.samples.pop_front();
        }
    }

    /// The pose at `t_unix_ms` (see the type's docs).
    pub fn interpolate(&self, t: i64) -> Option<CameraPose> {
        let i = self.samples.partition_point(|p| p.t_unix_ms <= t);
        if i == 0 {
            let first = self.samples.front()?;
            let dt = first.t_unix_ms - t;
            return (dt <= self.max_extrapolate_ms)
                .then(|| first.extrapolate(-(dt as f64) / 1000.0))
                .map(|p| CameraPose { t_unix_ms: t, ..p });
        }
        let a = &self.samples[i - 1];
        if a.t_unix_ms == t {
            return Some(*a);
        }
        let Some(b) = self.samples.get(i) else {
            let dt = t - a.t_unix_ms;
            return (dt <= self.max_extrapolate_ms)
                .then(|| a.extrapolate(dt as f64 / 1000.0))
                .map(|p| CameraPose { t_unix_ms: t, ..p });
        };
        if b.t_unix_ms - a.t_unix_ms > self.max_gap_ms {
            return None;
        }
        let w = (t - a.t_unix_ms) as f64 / (b.t_unix_ms - a.t_unix_ms) as f64;
        Some(interpolate_pose(a, b, w, t))
    }
}

impl PoseSource for PoseHistory {
    fn pose_at(&self, t_unix_ms: i64) -> Option<CameraPose> {
        self.interpolate(t_unix_ms)
    }
}

fn lerp(a: f64, b: f64, w: f64) -> f64 {
    a + (b - a) * w
}

/// Angles in degrees, the short way round.
fn lerp_deg(a: f64, b: f64, w: f64) -> f64 {
    let d = (b - a + 180.0).rem_euclid(360.0) - 180.0;
    a + d * w
}

fn interpolate_pose(a: &CameraPose, b: &CameraPose, w: f64, t: i64) -> CameraPose {
    let qa = a.attitude.quaternion();
    let qb = b.attitude.quaternion();
    let q = qa
        .try_slerp(&qb, w, 1e-9)
        .unwrap_or(if w < 0.5 { qa } else { qb });
    let gimbal = GimbalAngles {
        roll_deg: lerp_deg(a.gimbal.roll_deg, b.gimbal.roll_deg, w),
        pitch_deg: lerp_deg(a.gimbal.pitch_deg, b.gimbal.pitch_deg, w),
        yaw_deg: lerp_deg(a.gimbal.yaw_deg, b.gimbal.yaw_deg, w),
        mount: a.gimbal.mount,
    };
    let s = |f: fn(&PoseSigma) -> f64| lerp(f(&a.sigma), f(&b.sigma), w);
    CameraPose {
        t_unix_ms: t,
        position: LatLonAlt::new(
            lerp(a.position.lat_deg, b.position.lat_deg, w),
            lerp_deg(a.position.lon_deg, b.position.lon_deg, w),
            lerp(a.position.alt_m, b.position.alt_m, w),
        ),
        attitude: Attitude::from_quaternion(&q),
        gimbal,
        velocity_ned_mps: std::array::from_fn(|i| {
            lerp(a.velocity_ned_mps[i], b.velocity_ned_mps[i], w)
        }),
        angular_rate_dps: std::array::from_fn(|i| {
            lerp(a.angular_rate_dps[i], b.angular_rate_dps[i], w)
        }),
        sigma: PoseSigma {
            horizontal_m: s(|x| x.horizontal_m),
            vertical_m: s(|x| x.vertical_m),
            roll_deg: s(|x| x.roll_deg),
            pitch_deg: s(|x| x.pitch_deg),
            yaw_deg: s(|x| x.yaw_deg),
            gimbal_roll_deg: s(|x| x.gimbal_roll_deg),
            gimbal_pitch_deg: s(|x| x.gimbal_pitch_deg),
            gimbal_yaw_deg: s(|x| x.gimbal_yaw_deg),
            time_s: s(|x| x.time_s),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOME: LatLonAlt = LatLonAlt::new(28.45, 117.94, 70.0);

    fn above_home(h: f64) -> LatLonAlt {
        LatLonAlt::new(HOME.lat_deg, HOME.lon_deg, HOME.alt_m + h)
    }

    fn nadir_view(h: f64) -> CameraView {
        let model = CameraModel::ideal(1920, 1080, 80.0);
        let pose = CameraPose::new(0, above_home(h), Attitude::default(), GimbalAngles::nadir());
        CameraView::new(model, pose)
    }

    fn ne_of(p: LatLonAlt, from: LatLonAlt) -> (f64, f64) {
        let n = LocalFrame::new(from).to_ned(p);
        (n.x, n.y)
    }

    #[test]
    fn nadir_at_100m_pixel_offsets_map_to_ground_offsets_within_1cm() {
        let view = nadir_view(100.0);
        let k = view.model.intrinsics;
        let ground = FlatGround::new(HOME.alt_m);
        for (du, dv) in [
            (0.0, 0.0),
            (100.0, 0.0),
            (0.0, 100.0),
            (-400.0, 250.0),
            (900.0, -500.0),
        ] {
            let px = Point2::new(k.cx_px + du, k.cy_px + dv);
            let hit = view.pixel_to_ground(px, &ground).unwrap();
            let (n, e) = ne_of(hit.point, HOME);
            // Image right is east, image down is south when the nose is north.
            let e_expected = du * 100.0 / k.fx_px;
            let n_expected = -dv * 100.0 / k.fy_px;
            assert!(
                (e - e_expected).abs() < 0.01,
                "east {e} vs {e_expected} for {du},{dv}"
            );
            assert!(
                (n - n_expected).abs() < 0.01,
                "north {n} vs {n_expected} for {du},{dv}"
            );
            assert!((hit.point.alt_m - HOME.alt_m).abs() < 1e-6);
        }
    }

    #[test]
    fn nadir_heading_east_turns_image_right_to_south() {
        let mut view = nadir_view(100.0);
        view = CameraView::new(
            view.model,
            CameraPose::new(
                0,
                above_home(100.0),
                Attitude::new(0.0, 0.0, 90.0),
                GimbalAngles::nadir(),
            ),
        );
        let k = view.model.intrinsics;
        let hit = view
            .pixel_to_ground(
                Point2::new(k.cx_px + 200.0, k.cy_px),
                &FlatGround::new(HOME.alt_m),
            )
            .unwrap();
        let (n, e) = ne_of(hit.point, HOME);
        assert!((n + 200.0 * 100.0 / k.fx_px).abs() < 0.01, "north {n}");
        assert!(e.abs() < 0.01, "east {e}");
    }

    #[test]
    fn tilted_gimbal_centre_ray_lands_at_h_over_tan_pitch() {
        let model = CameraModel::ideal(1280, 720, 70.0);
        let ground = FlatGround::new(HOME.alt_m);
        for (pitch, yaw, heading) in [(-45.0, 0.0, 0.0), (-30.0, 0.0, 90.0), (-60.0, 30.0, 200.0)] {
            let pose = CameraPose::new(
                0,
                above_home(80.0),
                Attitude::new(0.0, 0.0, heading),
                GimbalAngles::new(0.0, pitch, yaw, GimbalMount::Stabilized),
            );
            let view = CameraView::new(model, pose);
            let hit = view
                .pixel_to_ground(Point2::new(640.0, 360.0), &ground)
                .unwrap();
            let (n, e) = ne_of(hit.point, HOME);
            let dist = 80.0 / (-pitch).to_radians().tan();
            let bearing = (heading + yaw).to_radians();
            assert!(
                (n - dist * bearing.cos()).abs() < 0.01,
                "pitch {pitch}: n {n}"
            );
            assert!(
                (e - dist * bearing.sin()).abs() < 0.01,
                "pitch {pitch}: e {e}"
            );
            // Top of the image looks further away, the bottom closer.
            let top = view
                .pixel_to_ground(Point2::new(640.0, 100.0), &ground)
                .unwrap();
            let bottom = view
                .pixel_to_ground(Point2::new(640.0, 700.0), &ground)
                .unwrap();
            assert!(top.range_m > hit.range_m && hit.range_m > bottom.range_m);
        }
    }

    #[test]
    fn vehicle_relative_gimbal_follows_vehicle_pitch() {
        let model = CameraModel::ideal(1280, 720, 70.0);
        let ground = FlatGround::new(HOME.alt_m);
        // Nose down 10° with a body-fixed camera at -35° = -45° in the world.
        let pose = CameraPose::new(
            0,
            above_home(50.0),
            Attitude::new(0.0, -10.0, 0.0),
            GimbalAngles::new(0.0, -35.0, 0.0, GimbalMount::Vehicle),
        );
        let hit = CameraView::new(model, pose)
            .pixel_to_ground(Point2::new(640.0, 360.0), &ground)
            .unwrap();
        let (n, e) = ne_of(hit.point, HOME);
        assert!((n - 50.0).abs() < 0.01 && e.abs() < 0.01, "{n} {e}");
        // Rolled right 20° with a nadir body-fixed camera: the centre ray
        // goes to the left (west) of the vehicle... rolling right tilts the
        // body's down axis to the left? No: rolling right lowers the right
        // wing, so the down axis swings to the left (west when heading north).
        let pose = CameraPose::new(
            0,
            above_home(50.0),
            Attitude::new(20.0, 0.0, 0.0),
            GimbalAngles::new(0.0, -90.0, 0.0, GimbalMount::Vehicle),
        );
        let hit = CameraView::new(model, pose)
            .pixel_to_ground(Point2::new(640.0, 360.0), &ground)
            .unwrap();
        let (n, e) = ne_of(hit.point, HOME);
        assert!(n.abs() < 0.01, "{n}");
        assert!((e + 50.0 * 20f64.to_radians().tan()).abs() < 0.01, "{e}");
    }

    #[test]
    fn distortion_round_trips_and_matches_opencv_formula() {
        let d = Distortion {
            k1: -0.28,
            k2: 0.09,
            p1: 0.001,
            p2: -0.0015,
            k3: -0.01,
        };
        // OpenCV's formula at one point, by hand.
        let (x, y) = (0.3_f64, -0.2_f64);
        let r2 = x * x + y * y;
        let radial = 1.0 + d.k1 * r2 + d.k2 * r2 * r2 + d.k3 * r2 * r2 * r2;
        let xd = x * radial + 2.0 * d.p1 * x * y + d.p2 * (r2 + 2.0 * x * x);
        let yd = y * radial + d.p1 * (r2 + 2.0 * y * y) + 2.0 * d.p2 * x * y;
        let got = d.distort(Vector2::new(x, y));
        assert!((got.x - xd).abs() < 1e-15 && (got.y - yd).abs() < 1e-15);
        for &(x, y) in &[(0.0, 0.0), (0.5, 0.3), (-0.6, 0.4), (0.1, -0.55)] {
            let p = Vector2::new(x, y);
            let back = d.undistort(d.distort(p)).unwrap();
            assert!((back - p).norm() < 1e-12, "{p} -> {back}");
        }
    }

    #[test]
    fn barrel_distortion_moves_the_ground_point_outwards_as_expected() {
        // A pixel near the corner of a barrel-distorted image sees further
        // out than the same pixel of an ideal lens.
        let ideal = CameraModel::ideal(1920, 1080, 80.0);
        let barrel = CameraModel::new(
            ideal.intrinsics,
            Distortion {
                k1: -0.25,
                k2: 0.07,
                ..Distortion::NONE
            },
        );
        let pose = CameraPose::new(
            0,
            above_home(100.0),
            Attitude::default(),
            GimbalAngles::nadir(),
        );
        let ground = FlatGround::new(HOME.alt_m);
        let px = Point2::new(1700.0, 950.0);
        let a = CameraView::new(ideal, pose)
            .pixel_to_ground(px, &ground)
            .unwrap();
        let b = CameraView::new(barrel, pose)
            .pixel_to_ground(px, &ground)
            .unwrap();
        let (an, ae) = ne_of(a.point, HOME);
        let (bn, be) = ne_of(b.point, HOME);
        assert!(bn.hypot(be) > an.hypot(ae) * 1.05, "{bn},{be} vs {an},{ae}");
        // And projecting the distorted camera's ground point gives back the pixel.
        let back = CameraView::new(barrel, pose)
            .ground_to_pixel(b.point)
            .unwrap();
        assert!((back - px).norm() < 1e-6, "{back}");
        // The undistorted direction matches the ideal lens at the
        // undistorted pixel.
        let k = ideal.intrinsics;
        let n = barrel
            .distortion
            .undistort(Vector2::new(
                (px.x - k.cx_px) / k.fx_px,
                (px.y - k.cy_px) / k.fy_px,
            ))
            .unwrap();
        let ideal_px = Point2::new(n.x * k.fx_px + k.cx_px, n.y * k.fy_px + k.cy_px);
        let c = CameraView::new(ideal, pose)
            .pixel_to_ground(ideal_px, &ground)
            .unwrap();
        let (cn, ce) = ne_of(c.point, HOME);
        assert!((cn - bn).abs() < 1e-6 && (ce - be).abs() < 1e-6);
    }

    #[test]
    fn rays_above_the_horizon_and_cameras_underground_are_errors() {
        let model = CameraModel::ideal(1280, 720, 70.0);
        let pose = CameraPose::new(
            0,
            above_home(50.0),
            Attitude::default(),
            GimbalAngles::new(0.0, 0.0, 0.0, GimbalMount::Stabilized),
        );
        let view = CameraView::new(model, pose);
        let ground = FlatGround::new(HOME.alt_m);
        let e = view
            .pixel_to_ground(Point2::new(640.0, 100.0), &ground)
            .unwrap_err();
        assert!(matches!(e, CameraError::AboveHorizon { .. }), "{e}");
        assert!(e.to_string().contains("horizon"));
        let e = view
            .pixel_to_ground(
                Point2::new(640.0, 360.0),
                &FlatGround::new(HOME.alt_m + 60.0),
            )
            .unwrap_err();
        assert!(matches!(e, CameraError::CameraBelowGround { .. }), "{e}");
        let e = view
            .pixel_to_ground(Point2::new(f64::NAN, 3.0), &ground)
            .unwrap_err();
        assert!(matches!(e, CameraError::PixelNotFinite { .. }));
    }

    #[test]
    fn terrain_function_slopes_are_intersected() {
        // Ground rising 1 m per 10 m northwards from home; camera looking
        // north at 45° from 50 m: the hit is where 50 - n = n/10 + 0 → n = 45.45.
        let frame = LocalFrame::new(HOME);
        let terrain = move |p: LatLon| {
            let ned = frame.to_ned(p.with_alt(HOME.alt_m));
            Some(HOME.alt_m + ned.x / 10.0)
        };
        let model = CameraModel::ideal(1280, 720, 70.0);
        let pose = CameraPose::new(
            0,
            above_home(50.0),
            Attitude::default(),
            GimbalAngles::new(0.0, -45.0, 0.0, GimbalMount::Stabilized),
        );
        let hit = CameraView::new(model, pose)
            .pixel_to_ground(Point2::new(640.0, 360.0), &terrain)
            .unwrap();
        let (n, e) = ne_of(hit.point, HOME);
        assert!((n - 50.0 / 1.1).abs() < 0.01, "{n}");
        assert!(e.abs() < 0.01);
        assert!((hit.point.alt_m - (HOME.alt_m + n / 10.0)).abs() < 0.01);
        // Terrain that is unknown somewhere along the ray is an error.
        let holey = |p: LatLon| (p.lat_deg < HOME.lat_deg + 0.0001).then_some(HOME.alt_m);
        let e = CameraView::new(model, pose)
            .pixel_to_ground(Point2::new(640.0, 360.0), &holey)
            .unwrap_err();
        assert!(matches!(e, CameraError::TerrainUnknown { .. }), "{e}");
    }

    #[test]
    fn nadir_uncertainty_from_altitude_and_attitude() {
        // At nadir, 1° of roll moves the ground point h·tan(1°) sideways;
        // an altitude error moves a centre pixel nowhere.
        let mut view = nadir_view(100.0);
        view.pose.sigma = PoseSigma {
            roll_deg: 1.0,
            vertical_m: 5.0,
            ..PoseSigma::default()
        };
        let view = CameraView::new(view.model, view.pose);
        let k = view.model.intrinsics;
        let ground = FlatGround::new(HOME.alt_m);
        let est = view
            .locate(Point2::new(k.cx_px, k.cy_px), &ground, 0.0)
            .unwrap();
        let expect = 100.0 * 1f64.to_radians().tan();
        // A stabilised gimbal does not follow roll: no error at all...
        assert!(est.sigma.semi_major_m < 1e-6, "{:?}", est.sigma);
        // ...a body-fixed camera does.
        let mut pose = view.pose;
        pose.gimbal.mount = GimbalMount::Vehicle;
        let est = CameraView::new(view.model, pose)
            .locate(Point2::new(k.cx_px, k.cy_px), &ground, 0.0)
            .unwrap();
        assert!(
            (est.sigma.semi_major_m - expect).abs() < 1e-3,
            "{:?}",
            est.sigma
        );
        assert!(est.sigma.semi_minor_m < 1e-3);
        // Roll moves the point east-west: major axis at 90°.
        assert!(
            (est.sigma.orientation_deg - 90.0).abs() < 0.1,
            "{:?}",
            est.sigma
        );
        // Off centre, the altitude error scales the offset: 5 m of 100 m
        // at 500 px ≈ 0.05 × ground offset.
        let est = view
            .locate(Point2::new(k.cx_px + 500.0, k.cy_px), &ground, 0.0)
            .unwrap();
        let offset = 500.0 * 100.0 / k.fx_px;
        assert!(
            (est.sigma.semi_major_m - offset * 0.05).abs() < 1e-3,
            "{:?}",
            est.sigma
        );
    }

    #[test]
    fn timing_error_acts_through_velocity() {
        let mut view = nadir_view(60.0);
        view.pose.velocity_ned_mps = [10.0, 0.0, 0.0];
        view.pose.sigma = PoseSigma {
            time_s: 0.1,
            horizontal_m: 0.0,
            ..PoseSigma::default()
        };
        let view = CameraView::new(view.model, view.pose);
        let k = view.model.intrinsics;
        let est = view
            .locate(
                Point2::new(k.cx_px, k.cy_px),
                &FlatGround::new(HOME.alt_m),
                0.0,
            )
            .unwrap();
        assert!(
            (est.sigma.semi_major_m - 1.0).abs() < 1e-3,
            "{:?}",
            est.sigma
        );
        assert!(
            est.sigma.orientation_deg.abs() < 0.1
                || (est.sigma.orientation_deg - 180.0).abs() < 0.1
        );
    }

    #[test]
    fn tilted_view_ellipse_follows_the_error_source() {
        // Looking east, 30° down, from 50 m: a gimbal pitch error moves the
        // point along the look direction by h / sin²(30°) per radian; a yaw
        // error moves it across by the ground distance per radian.
        let model = CameraModel::ideal(1280, 720, 70.0);
        let pose = |sigma: PoseSigma| {
            CameraPose::new(
                0,
                above_home(50.0),
                Attitude::new(0.0, 0.0, 90.0),
                GimbalAngles::new(0.0, -30.0, 0.0, GimbalMount::Stabilized),
            )
            .with_sigma(sigma)
        };
        let ground = FlatGround::new(HOME.alt_m);
        let centre = Point2::new(640.0, 360.0);
        let est = CameraView::new(
            model,
            pose(PoseSigma {
                gimbal_pitch_deg: 1.0,
                ..PoseSigma::default()
            }),
        )
        .locate(centre, &ground, 0.0)
        .unwrap();
        let along = 50.0 / 30f64.to_radians().sin().powi(2) * 1f64.to_radians();
        assert!(
            (est.sigma.orientation_deg - 90.0).abs() < 0.01,
            "{:?}",
            est.sigma
        );
        assert!(
            (est.sigma.semi_major_m - along).abs() < 0.01 * along,
            "{:?} vs {along}",
            est.sigma
        );
        assert!(est.sigma.semi_minor_m < 1e-3);
        let est = CameraView::new(
            model,
            pose(PoseSigma {
                yaw_deg: 2.0,
                ..PoseSigma::default()
            }),
        )
        .locate(centre, &ground, 0.0)
        .unwrap();
        let across = 50.0 / 30f64.to_radians().tan() * 2f64.to_radians();
        let o = est.sigma.orientation_deg;
        assert!(!(0.01..=179.99).contains(&o), "{:?}", est.sigma);
        assert!(
            (est.sigma.semi_major_m - across).abs() < 0.01 * across,
            "{:?} vs {across}",
            est.sigma
        );
        // Typical sigmas: metres, in both directions.
        let est = CameraView::new(model, pose(PoseSigma::typical()))
            .locate(centre, &ground, 2.0)
            .unwrap();
        assert!(
            est.sigma.semi_minor_m > 2.0 && est.sigma.semi_major_m < 10.0,
            "{:?}",
            est.sigma
        );
    }

    #[test]
    fn ellipse_of_covariance() {
        let e = GroundEllipse::from_covariance(&Matrix2::new(4.0, 0.0, 0.0, 1.0));
        assert!((e.semi_major_m - 2.0).abs() < 1e-12 && (e.semi_minor_m - 1.0).abs() < 1e-12);
        assert!(e.orientation_deg.abs() < 1e-9, "{e:?}");
        let e = GroundEllipse::from_covariance(&Matrix2::new(1.0, 0.0, 0.0, 9.0));
        assert!((e.orientation_deg - 90.0).abs() < 1e-9, "{e:?}");
        // 45° (north-east) correlation.
        let e = GroundEllipse::from_covariance(&Matrix2::new(2.0, 1.5, 1.5, 2.0));
        assert!((e.orientation_deg - 45.0).abs() < 1e-9, "{e:?}");
        assert!((e.semi_major_m - 3.5f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn pose_history_interpolates_and_refuses_gaps() {
        let mut h = PoseHistory::new(100);
        let mut a = CameraPose::new(
            1_000,
            above_home(50.0),
            Attitude::new(0.0, 0.0, 350.0),
            GimbalAngles::nadir(),
        );
        a.velocity_ned_mps = [10.0, 0.0, 0.0];
        let mut b = a;
        b.t_unix_ms = 1_200;
        b.position = LocalFrame::new(a.position).from_ned(Vector3::new(2.0, 0.0, 0.0));
        b.attitude = Attitude::new(0.0, 0.0, 10.0);
        h.push(b);
        h.push(a);
        assert_eq!(h.len(), 2);
        let m = h.pose_at(1_100).unwrap();
        let (n, e) = ne_of(m.position, a.position);
        assert!((n - 1.0).abs() < 1e-3 && e.abs() < 1e-3, "{n} {e}");
        // 350° → 10° through north, not through 180°.
        let yaw = m.attitude.yaw_deg.rem_euclid(360.0);
        assert!(yaw < 1e-6 || (360.0 - yaw) < 1e-6, "{yaw}");
        // Extrapolation is bounded.
        let x = h.pose_at(1_300).unwrap();
        let (n, _) = ne_of(x.position, b.position);
        assert!((n - 1.0).abs() < 1e-3, "{n}");
        assert!(h.pose_at(1_200 + 251).is_none());
        assert!(h.pose_at(1_000 - 251).is_none());
        // A gap wider than max_gap_ms is not bridged.
        let mut c = b;
        c.t_unix_ms = 5_000;
        h.push(c);
        assert!(h.pose_at(3_000).is_none());
        assert!(h.pose_at(5_000).is_some());
    }

    #[test]
    fn fixed_pose_is_valid_any_time() {
        let p = FixedPose(CameraPose::new(
            0,
            above_home(10.0),
            Attitude::default(),
            GimbalAngles::nadir(),
        ));
        assert_eq!(p.pose_at(123).unwrap().t_unix_ms, 123);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn ground_to_pixel_to_ground_within_1mm(
            h in 15.0f64..400.0,
            roll in -15.0f64..15.0,
            pitch in -15.0f64..15.0,
            yaw in 0.0f64..360.0,
            g_pitch in -90.0f64..-25.0,
            g_yaw in -180.0f64..180.0,
            stabilized in any::<bool>(),
            k1 in -0.3f64..0.1,
            k2 in -0.05f64..0.1,
            p1 in -0.002f64..0.002,
            p2 in -0.002f64..0.002,
            hfov in 40.0f64..90.0,
            u in 0.05f64..0.95,
            v in 0.05f64..0.95,
            ground_alt in -50.0f64..1500.0,
        ) {
            let model = CameraModel::new(
                Intrinsics::from_hfov(1280, 720, hfov),
                Distortion { k1, k2, p1, p2, k3: 0.0 },
            );
            let pose = CameraPose::new(
                0,
                LatLonAlt::new(28.45, 117.94, ground_alt + h),
                Attitude::new(roll, pitch, yaw),
                GimbalAngles::new(0.0, g_pitch, g_yaw, if stabilized { GimbalMount::Stabilized } else { GimbalMount::Vehicle }),
            );
            let view = CameraView::new(model, pose);
            let ground = FlatGround::new(ground_alt);
            // A ground point in view: through a random pixel.
            let px = Point2::new(u * 1280.0, v * 720.0);
            let hit = view.pixel_to_ground(px, &ground);
            prop_assume!(hit.is_ok());
            let g = hit.unwrap().point;
            prop_assume!(LocalFrame::new(pose.position).to_ned(g).xy().norm() < 5_000.0);
            // ground → pixel → ground
            let back_px = view.ground_to_pixel(g).unwrap();
            let back = view.pixel_to_ground(back_px, &ground).unwrap();
            let d = LocalFrame::new(g).to_ned(back.point).norm();
            prop_assert!(d < 1e-3, "moved {d} m; px {px} -> {back_px}");
            prop_assert!((back_px - px).norm() < 1e-6);
        }
    }
}
