//! Geotagging: frame capture time → camera pose ([`PoseSource`]) → camera
//! model at that pose → pixel → ground point with a 1-σ ellipse.
//!
//! The camera model is calibrated at one resolution and scaled to the
//! frame's. When no pose is known for a frame (autopilot link lost,
//! telemetry gap) nothing is geotagged and events are still produced,
//! marked "position unknown".

use std::sync::Arc;

use nalgebra::{Matrix2, Point2};
use serde::{Deserialize, Serialize};
use tiancha_geometry::camera::{
    CameraModel, CameraPose, CameraView, FlatGround, GroundEllipse, PoseSource, Terrain,
};
use tiancha_geometry::{LatLon, LatLonAlt};

/// A ground position with its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundFix {
    pub point: LatLonAlt,
    /// North/east covariance, m².
    pub cov_ne_m2: Matrix2<f64>,
    pub sigma: GroundEllipse,
    pub range_m: f64,
}

/// Which ground to intersect with.
#[derive(Clone)]
pub enum Ground {
    /// Flat at one altitude (m AMSL), e.g. home.
    Flat(f64),
    /// A terrain height function (DEM).
    Terrain(Arc<dyn Terrain + Send + Sync>),
}

impl std::fmt::Debug for Ground {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ground::Flat(a) => write!(f, "Flat({a} m)"),
            Ground::Terrain(_) => f.write_str("Terrain(..)"),
        }
    }
}

/// Serializable geotag settings (camera and ground), e.g. from TOML.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeotagConfig {
    pub camera: CameraModel,
    /// Flat ground altitude, m AMSL.
    pub ground_alt_m: f64,
    /// 1-σ error of a detection's foot point, pixels of the calibrated
    /// resolution.
    #[serde(default = "default_sigma_px")]
    pub sigma_px: f64,
}

fn default_sigma_px() -> f64 {
    3.0
}

/// Locates pixels of frames on the ground.
#[derive(Clone)]
pub struct Geotagger {
    camera: CameraModel,
    ground: Ground,
    poses: Arc<dyn PoseSource>,
    sigma_px: f64,
}

impl Geotagger {
    pub fn new(camera: CameraModel, ground: Ground, poses: Arc<dyn PoseSource>) -> Self {
        Self {
            camera,
            ground,
            poses,
            sigma_px: default_sigma_px(),
        }
    }

    pub fn from_config(cfg: &GeotagConfig, poses: Arc<dyn PoseSource>) -> Self {
        Self {
            camera: cfg.camera,
            ground: Ground::Flat(cfg.ground_alt_m),
            poses,
            sigma_px: cfg.sigma_px,
        }
    }

    pub fn with_sigma_px(mut self, sigma_px: f64) -> Self {
        self.sigma_px = sigma_px;
        self
    }

    pub fn camera(&self) -> &CameraModel {
        &self.camera
    }

    /// The camera at a frame's capture time, scaled to the frame size;
    /// `None` when the pose is unknown.
    pub fn frame(&self, t_unix_ms: i64, width: u32, height: u32) -> Option<FrameGeo> {
        let pose = self.poses.pose_at(t_unix_ms)?;
        let scale = width as f64 / self.camera.intrinsics.width_px as f64;
        let model = self.camera.scaled_to(width, height);
        Some(FrameGeo {
            view: CameraView::new(model, pose),
            ground: self.ground.clone(),
            sigma_px: self.sigma_px * scale,
        })
    }
}

/// The camera geometry of one frame.
#[derive(Clone)]
pub struct FrameGeo {
    pub view: CameraView,
    ground: Ground,
    sigma_px: f64,
}

impl FrameGeo {
    pub fn pose(&self) -> &CameraPose {
        &self.view.pose
    }

    /// A pixel on the ground, with uncertainty; `None` when its ray does
    /// not meet the ground (sky, above the horizon).
    pub fn locate(&self, x: f32, y: f32) -> Option<GroundFix> {
        let px = Point2::new(x as f64, y as f64);
        let est = match &self.ground {
            Ground::Flat(a) => self.view.locate(px, &FlatGround::new(*a), self.sigma_px),
            Ground::Terrain(t) => self.view.locate(px, t.as_ref(), self.sigma_px),
        }
        .ok()?;
        Some(GroundFix {
            point: est.point,
            cov_ne_m2: est.cov_ne_m2,
            sigma: est.sigma,
            range_m: est.range_m,
        })
    }

    /// Where this frame's pixel `(x, y)` appears in `other` (another frame
    /// of the same camera): through the ground point it sees. The map the
    /// tracker uses to follow the camera's motion; `None` for a pixel on
    /// the sky or behind `other`.
    pub fn reproject_into(&self, other: &FrameGeo, x: f32, y: f32) -> Option<(f32, f32)> {
        let px = Point2::new(x as f64, y as f64);
        let hit = match &self.ground {
            Ground::Flat(a) => self.view.pixel_to_ground(px, &FlatGround::new(*a)),
            Ground::Terrain(t) => self.view.pixel_to_ground(px, t.as_ref()),
        }
        .ok()?;
        let q = other.view.ground_to_pixel(hit.point)?;
        Some((q.x as f32, q.y as f32))
    }

    /// Ground altitude under a point (for ground → pixel of zones).
    pub fn ground_alt_at(&self, p: LatLon) -> Option<f64> {
        match &self.ground {
            Ground::Flat(a) => Some(*a),
            Ground::Terrain(t) => t.ground_alt_m(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiancha_geometry::camera::{Attitude, FixedPose, GimbalAngles, PoseHistory, PoseSigma};
    use tiancha_geometry::LocalFrame;

    #[test]
    fn frames_scale_the_camera_and_unknown_poses_give_none() {
        let home = LatLonAlt::new(28.45, 117.94, 60.0);
        let pose = CameraPose::new(
            0,
            LatLonAlt::new(home.lat_deg, home.lon_deg, 160.0),
            Attitude::default(),
            GimbalAngles::nadir(),
        )
        .with_sigma(PoseSigma::typical());
        let cam = CameraModel::ideal(1920, 1080, 80.0);
        let g = Geotagger::new(cam, Ground::Flat(60.0), Arc::new(FixedPose(pose)));
        // Half-resolution frame: pixel (480+100, 270) is 200 px right at full res.
        let f = g.frame(1_000, 960, 540).unwrap();
        let fix = f.locate(580.0, 270.0).unwrap();
        let ned = LocalFrame::new(home).to_ned(fix.point);
        let expect = 200.0 * 100.0 / cam.intrinsics.fx_px;
        assert!((ned.y - expect).abs() < 0.01, "{ned}");
        assert!(
            fix.sigma.semi_major_m > 1.0,
            "typical sigmas give metres: {:?}",
            fix.sigma
        );

        let empty = Geotagger::new(cam, Ground::Flat(60.0), Arc::new(PoseHistory::new(10)));
        assert!(empty.frame(1_000, 960, 540).is_none());
    }
}
