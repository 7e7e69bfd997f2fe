//! The companion's configuration (`companion.toml`), validated at start-up.
//! See `examples/companion.toml` for a commented example.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tiancha_protocol::{mqtt::Endpoint, DetectionZone, DroneId, Validate};

use tiancha_inference::backend::{self, BackendKind, BackendOptions, OrtOptions, Provider};

use crate::spool::SpoolConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanionConfig {
    pub drone_id: String,
    #[serde(default)]
    pub mqtt: Endpoint,
    #[serde(default)]
    pub spool: SpoolSection,
    pub autopilot: AutopilotSection,
    #[serde(default)]
    pub camera: Option<CameraSection>,
    /// Live video out (RTSP, H.264, the eye's overlay drawn on it).
    #[serde(default)]
    pub video: tiancha_inference::video_out::VideoConfig,
    #[serde(default)]
    pub patrol: PatrolSection,
    #[serde(default)]
    pub safety: SafetySection,
    #[serde(default)]
    pub detection: DetectionSection,
    #[serde(default)]
    pub telemetry: TelemetrySection,
    /// Prometheus metrics (`/metrics`) on this local address.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// End-to-end command authentication (see docs/security.md).
    #[serde(default)]
    pub commands: CommandsSection,
    /// Load/chaos testing only: made-up alerts (see `crate::synthetic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic_alerts: Option<crate::synthetic::SyntheticAlertsSection>,
}

/// `[commands]`: which ground stations may command this drone, and the
/// limits of the replay window. Without a key every command from the
/// ground is refused (`unauthorized: no ground-station command key
/// configured`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsSection {
    /// Ed25519 public keys (`ed25519:<base64>`, as `tiancha command-key`
    /// prints them) whose signatures are trusted. Several: key rotation,
    /// or several ground-station instances.
    pub ground_station_public_keys: Vec<String>,
    /// How far a command's issue time may be ahead of this drone's clock
    /// (seconds).
    pub max_clock_skew_s: u64,
    /// Longest validity (expires − issued, seconds) accepted; ids are
    /// remembered this long at most.
    pub max_lifetime_s: u64,
}

impl Default for CommandsSection {
    fn default() -> Self {
        Self {
            ground_station_public_keys: vec![],
            max_clock_skew_s: 5,
            max_lifetime_s: 900,
        }
    }
}

impl CommandsSection {
    pub fn trusted_keys(
        &self,
    ) -> Result<tiancha_protocol::command_auth::TrustedKeys, tiancha_protocol::command_auth::KeyError>
    {
        tiancha_protocol::command_auth::TrustedKeys::parse(&self.ground_station_public_keys)
    }

    pub fn guard_config(&self) -> crate::command_guard::GuardConfig {
        crate::command_guard::GuardConfig {
            max_clock_skew_ms: self.max_clock_skew_s as i64 * 1000,
            max_lifetime_ms: self.max_lifetime_s as i64 * 1000,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSection {
    pub path: PathBuf,
    pub max_entries: u64,
    pub max_mb: u64,
    /// Seconds an alert the broker acknowledged waits for the ground's
    /// receipt before it is published again.
    pub receipt_timeout_s: u64,
}

fn yes() -> bool {
    true
}

impl Default for SpoolSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from("var/companion/spool.db"),
            max_entries: 100_000,
            max_mb: 2048,
            receipt_timeout_s: 60,
        }
    }
}

impl SpoolSection {
    pub fn spool_config(&self) -> SpoolConfig {
        SpoolConfig {
            max_entries: self.max_entries,
            max_bytes: self.max_mb * 1024 * 1024,
            receipt_timeout: Duration::from_secs(self.receipt_timeout_s),
            max_receipt_backoff: Duration::from_secs(self.receipt_timeout_s * 10),
            ..SpoolConfig::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutopilotSection {
    /// `serial:/dev/ttyAMA0:921600`, `udpin:0.0.0.0:14550`, `udpout:...`,
    /// `tcp:host:port`.
    pub address: String,
    /// MAVLink 2 signing key (64 hex digits), or a file holding it.
    #[serde(default)]
    pub signing_key: Option<String>,
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// Refuse unsigned packets from the autopilot.
    #[serde(default)]
    pub require_signing: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSection {
    /// Source URI (rtsp://, udp://host:port RTP H.264, a file, v4l2 ...).
    pub uri: String,
    /// The detector's model manifest.
    #[serde(default = "default_manifest")]
    pub model_manifest: PathBuf,
    /// Image size the camera model refers to.
    pub width: u32,
    pub height: u32,
    /// Horizontal field of view (ideal pinhole), degrees.
    pub hfov_deg: f64,
    /// Cut frames into overlapping tiles before detection (small people
    /// seen from altitude).
    #[serde(default)]
    pub tiles: Option<(u32, u32)>,
    /// With `tiles`, also run the whole frame (large, near objects); off
    /// halves the work when only small, distant people matter.
    #[serde(default = "yes")]
    pub tiles_full_frame: bool,
    /// Ground altitude AMSL for geotagging; home altitude when absent.
    #[serde(default)]
    pub ground_alt_m: Option<f64>,
    /// 1-σ uncertainties of the telemetry pose (GNSS, attitude, gimbal,
    /// frame timing) for the geotag ellipse; typical multicopter values
    /// when absent.
    #[serde(default)]
    pub pose_sigma: Option<tiancha_inference::geometry::camera::PoseSigma>,
    /// 1-σ error of a detection's foot point, pixels.
    #[serde(default = "default_sigma_px")]
    pub sigma_px: f64,
    /// A camera without a gimbal report (fixed mount, or a gimbal that
    /// does not speak MAVLink): its pitch below the horizon, degrees
    /// (negative down), facing forward. Used only while the autopilot
    /// reports no gimbal attitude; straight down (-90) when absent.
    #[serde(default)]
    pub fixed_pitch_deg: Option<f64>,
    /// The inference engine: `"tract"` (pure Rust, the default) or
    /// `"ort"` (onnxruntime, loaded at run time from `ort_library`; about
    /// twice as fast on the CPU, and the way to GPUs and NPUs). A build
    /// without the `ort` cargo feature refuses `"ort"` at start-up.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// With `backend = "ort"`: the execution provider, `"cpu"` (default),
    /// `"cuda"`, `"tensorrt"` or `"openvino"`. One that cannot be
    /// registered (e.g. the CPU-only onnxruntime wheel asked for CUDA)
    /// stops the companion at start-up with the provider and library
    /// named; it never falls back to the CPU on its own.
    #[serde(default = "default_provider")]
    pub provider: String,
    /// GPU index for `cuda` and `tensorrt`.
    #[serde(default)]
    pub device_id: u32,
    /// With `backend = "ort"`: the `libonnxruntime.so` to load (the PyPI
    /// wheel ships it as
    /// `site-packages/onnxruntime/capi/libonnxruntime.so.<version>`;
    /// `onnxruntime-gpu` adds the CUDA and TensorRT providers). Absent:
    /// the `ORT_DYLIB_PATH` environment variable.
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
    /// With `provider = "tensorrt"`: keep built engines (and timing data)
    /// in this directory, so that only the first start builds them
    /// (minutes on a Jetson). Absent: built at every start.
    #[serde(default)]
    pub trt_cache_dir: Option<PathBuf>,
    /// With `provider = "tensorrt"`: allow FP16 kernels.
    #[serde(default)]
    pub trt_fp16: bool,
    /// With `provider = "openvino"`: the OpenVINO device (`"CPU"`,
    /// `"GPU"`, `"NPU"`); OpenVINO's default when absent.
    #[serde(default)]
    pub openvino_device: Option<String>,
    /// Replace the model's input size, `[width, height]`: a fully
    /// convolutional model with symbolic input height and width (such as
    /// `models/centernet_mnv3_coco80_heads.toml`) then sees the whole frame
    /// at its own resolution, e.g. `[1280, 736]` for a 1280×720 camera
    /// (the shipped CenterNet needs multiples of 32). A model with a fixed
    /// input size refuses it at start-up.
    #[serde(default)]
    pub input_size: Option<(u32, u32)>,
    /// More models on the same frames, beside `model_manifest` (e.g. a
    /// fire/smoke model beside the people detector), each at most `fps`
    /// frames a second, on the same backend and provider:
    ///
    /// ```toml
    /// [[camera.extra_models]]
    /// model_manifest = "models/fire_smoke_centernet.toml"
    /// fps = 1.0
    /// tiles = [1, 2]
    /// ```
    #[serde(default)]
    pub extra_models: Vec<ExtraModelSection>,
    /// The gimbal's thermal camera, a second stream
    /// ([`crate::thermal::ThermalSection`]).
    #[serde(default)]
    pub thermal: Option<crate::thermal::ThermalSection>,
}

/// One extra model of a camera (`[[camera.extra_models]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraModelSection {
    pub model_manifest: PathBuf,
    /// Frame-rate budget: at most this many frames a second (it runs on
    /// the frames the main detector has just run on).
    pub fps: f64,
    #[serde(default)]
    pub tiles: Option<(u32, u32)>,
    #[serde(default = "yes")]
    pub tiles_full_frame: bool,
    #[serde(default)]
    pub input_size: Option<(u32, u32)>,
}

fn default_backend() -> String {
    "tract".into()
}

fn default_provider() -> String {
    "cpu".into()
}

impl CameraSection {
    /// The backend settings, checked (names the offending field).
    pub fn backend_options(&self) -> Result<BackendOptions, String> {
        let kind: BackendKind = self
            .backend
            .parse()
            .map_err(|e| format!("camera.backend: {e}"))?;
        backend::check_compiled(kind, kind.compiled())
            .map_err(|e| format!("camera.backend: {e}"))?;
        let provider: Provider = self
            .provider
            .parse()
            .map_err(|e| format!("camera.provider: {e}"))?;
        if kind == BackendKind::Tract && provider != Provider::Cpu {
            return Err(format!(
                "camera.provider = \"{provider}\" needs camera.backend = \"ort\" (tract runs on the CPU only)"
            ));
        }
        Ok(BackendOptions {
            kind,
            ort: OrtOptions {
                library: self.ort_library.clone(),
                provider,
                device_id: self.device_id,
                trt_cache_dir: self.trt_cache_dir.clone(),
                trt_fp16: self.trt_fp16,
                openvino_device: self.openvino_device.clone(),
            },
        })
    }
}

fn default_sigma_px() -> f64 {
    3.0
}

fn default_manifest() -> PathBuf {
    PathBuf::from("models/centernet_mnv3_coco80.toml")
}

/// What the planner needs to know about this drone and its camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PatrolSection {
    pub altitude_rel_m: f64,
    pub cruise_speed_mps: f64,
    pub battery_minutes: f64,
    pub reserve_minutes: f64,
    pub max_distance_from_home_m: f64,
    pub camera_hfov_deg: f64,
    pub camera_vfov_deg: f64,
    /// Gimbal pitch during the patrol, degrees (−90 = nadir; a forward
    /// tilt such as −45 sees people standing, not just their heads).
    pub camera_gimbal_pitch_deg: f64,
    pub side_overlap: f64,
    pub front_overlap: f64,
    /// "ardupilot" (home at seq 0) or "px4".
    pub autopilot: String,
}

impl Default for PatrolSection {
    fn default() -> Self {
        Self {
            altitude_rel_m: 60.0,
            cruise_speed_mps: 8.0,
            battery_minutes: 25.0,
            reserve_minutes: 5.0,
            max_distance_from_home_m: 5_000.0,
            camera_hfov_deg: 60.0,
            camera_vfov_deg: 45.0,
            camera_gimbal_pitch_deg: -90.0,
            side_overlap: 0.2,
            front_overlap: 0.2,
            autopilot: "ardupilot".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SafetySection {
    /// Refuse to launch below this battery percentage.
    pub min_launch_battery_pct: f64,
    /// Return to launch at or below this battery percentage.
    pub low_battery_rtl_pct: f64,
    /// Return to launch after the ground link has been down this long
    /// (seconds; 0 = never, keep patrolling and spooling).
    pub ground_link_rtl_s: u64,
    /// Minimum GPS fix (MAVLink GPS_FIX_TYPE; 3 = 3D) to launch.
    pub require_gps_fix: u8,
    /// How long a launch waits for the autopilot to become ready (GPS,
    /// EKF, its pre-arm checks) before it refuses with the autopilot's
    /// reason (seconds; 0 = refuse at once). ArduPilot and PX4 need 35-40 s
    /// after boot.
    pub readiness_timeout_s: u64,
    /// The operator's consent that tiancha may widen the autopilot's own
    /// fence limits (ArduPilot FENCE_RADIUS / FENCE_ALT_MAX, PX4
    /// GF_MAX_HOR_DIST / GF_MAX_VER_DIST) when the plan reaches beyond
    /// them. Without it such a launch is refused, naming the parameter and
    /// the value the plan needs.
    pub widen_autopilot_fence: bool,
}

impl Default for SafetySection {
    fn default() -> Self {
        Self {
            min_launch_battery_pct: 30.0,
            low_battery_rtl_pct: 20.0,
            ground_link_rtl_s: 600,
            require_gps_fix: 3,
            readiness_timeout_s: 120,
            widen_autopilot_fence: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionSection {
    /// Zones with their rules (as the ground's `set_detection_zones`
    /// command sends them).
    pub zones: Vec<DetectionZone>,
    /// Without zones: a gathering rule everywhere with these thresholds.
    pub default_gathering_min_people: u32,
    pub default_gathering_radius_m: f64,
    pub default_gathering_min_duration_s: f64,
    /// Investigate on our own when a gathering reaches this many people
    /// (0 = never).
    pub auto_investigate_min_people: u32,
    /// An incident closes after its condition has been false this long (s).
    pub close_after_s: f64,
    /// A new incident of the same category opening within this distance
    /// (m) of an alert raised in the last `resighting_window_s` seconds is
    /// the same situation seen again (another lane): it updates that alert
    /// instead of raising a second one. 0 turns this off.
    pub resighting_radius_m: f64,
    pub resighting_window_s: f64,
}

impl Default for DetectionSection {
    fn default() -> Self {
        Self {
            zones: vec![],
            default_gathering_min_people: 5,
            default_gathering_radius_m: 15.0,
            default_gathering_min_duration_s: 5.0,
            auto_investigate_min_people: 0,
            close_after_s: 10.0,
            resighting_radius_m: 25.0,
            resighting_window_s: 900.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySection {
    /// Telemetry rate to the ground, 1–5 Hz.
    pub rate_hz: f64,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        Self { rate_hz: 2.0 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl CompanionConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.into(),
            message,
        };
        let cfg: Self = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        cfg.check().map_err(invalid)?;
        Ok(cfg)
    }

    pub fn drone_id(&self) -> DroneId {
        DroneId::new(self.drone_id.clone()).expect("checked at load")
    }

    pub fn check(&self) -> Result<(), String> {
        DroneId::new(self.drone_id.clone()).map_err(|e| format!("drone_id: {e}"))?;
        self.mqtt.check()?;
        self.mqtt.check_files()?;
        if self.autopilot.address.trim().is_empty() {
            return Err("autopilot.address must not be empty".into());
        }
        if self.autopilot.signing_key.is_some() && self.autopilot.signing_key_file.is_some() {
            return Err("autopilot: give signing_key or signing_key_file, not both".into());
        }
        if let Some(k) = &self.autopilot.signing_key {
            if k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("autopilot.signing_key must be 64 hex digits (32 bytes)".into());
            }
        }
        if self.autopilot.require_signing
            && self.autopilot.signing_key.is_none()
            && self.autopilot.signing_key_file.is_none()
        {
            return Err("autopilot.require_signing needs a signing key".into());
        }
        if !(1.0..=5.0).contains(&self.telemetry.rate_hz) {
            return Err(format!(
                "telemetry.rate_hz = {} is outside 1..=5",
                self.telemetry.rate_hz
            ));
        }
        let s = &self.safety;
        if !(0.0..=100.0).contains(&s.min_launch_battery_pct)
            || !(0.0..=100.0).contains(&s.low_battery_rtl_pct)
        {
            return Err("safety battery percentages must be within 0..=100".into());
        }
        if s.low_battery_rtl_pct >= s.min_launch_battery_pct {
            return Err(format!(
                "safety.low_battery_rtl_pct ({}) must be below min_launch_battery_pct ({})",
                s.low_battery_rtl_pct, s.min_launch_battery_pct
            ));
        }
        let p = &self.patrol;
        if !(2.0..=500.0).contains(&p.altitude_rel_m) {
            return Err(format!(
                "patrol.altitude_rel_m = {} is outside 2..=500",
                p.altitude_rel_m
            ));
        }
        if !(0.5..=40.0).contains(&p.cruise_speed_mps) {
            return Err("patrol.cruise_speed_mps must be within 0.5..=40".into());
        }
        if p.reserve_minutes >= p.battery_minutes {
            return Err("patrol.reserve_minutes must be below battery_minutes".into());
        }
        if !(-90.0..=-10.0).contains(&p.camera_gimbal_pitch_deg) {
            return Err(format!(
                "patrol.camera_gimbal_pitch_deg = {} is outside -90..=-10",
                p.camera_gimbal_pitch_deg
            ));
        }
        if let Some(f) = self.camera.as_ref().and_then(|c| c.fixed_pitch_deg) {
            if !(-90.0..=0.0).contains(&f) {
                return Err(format!("camera.fixed_pitch_deg = {f} is outside -90..=0"));
            }
        }
        if !matches!(p.autopilot.as_str(), "ardupilot" | "px4") {
            return Err(format!(
                "patrol.autopilot = `{}` must be \"ardupilot\" or \"px4\"",
                p.autopilot
            ));
        }
        if let Some(c) = &self.camera {
            if c.uri.trim().is_empty() {
                return Err("camera.uri must not be empty".into());
            }
            if c.width == 0 || c.height == 0 {
                return Err("camera.width and camera.height must be positive".into());
            }
            if !(1.0..=170.0).contains(&c.hfov_deg) {
                return Err("camera.hfov_deg must be within 1..=170".into());
            }
            if !(c.sigma_px.is_finite() && c.sigma_px >= 0.0) {
                return Err("camera.sigma_px must be a non-negative number".into());
            }
            if let Some((r, k)) = c.tiles {
                if !(1..=8).contains(&r) || !(1..=8).contains(&k) {
                    return Err(format!(
                        "camera.tiles = [{r}, {k}]: each must be within 1..=8"
                    ));
                }
            }
            c.backend_options()?;
            if let Some((w, h)) = c.input_size {
                if !(8..=8192).contains(&w) || !(8..=8192).contains(&h) {
                    return Err(format!(
                        "camera.input_size = [{w}, {h}]: width and height must be within 8..=8192"
                    ));
                }
            }
            if c.openvino_device
                .as_deref()
                .is_some_and(|d| d.trim().is_empty())
            {
                return Err("camera.openvino_device must not be empty".into());
            }
            if let Some(t) = &c.thermal {
                t.validate()?;
            }
            for (i, e) in c.extra_models.iter().enumerate() {
                let at = format!("camera.extra_models[{i}] ({})", e.model_manifest.display());
                if !(e.fps.is_finite() && e.fps > 0.0 && e.fps <= 60.0) {
                    return Err(format!("{at}: fps = {} must be within (0, 60]", e.fps));
                }
                if let Some((r, k)) = e.tiles {
                    if !(1..=8).contains(&r) || !(1..=8).contains(&k) {
                        return Err(format!(
                            "{at}: tiles = [{r}, {k}]: each must be within 1..=8"
                        ));
                    }
                }
            }
        }
        if let Some(s) = &self.synthetic_alerts {
            s.check()?;
        }
        self.video.validate().map_err(|e| e.to_string())?;
        if self.video.enabled && self.camera.is_none() {
            return Err("video.enabled needs a [camera] section".into());
        }
        let d = &self.detection;
        if d.default_gathering_min_people < 2 {
            return Err("detection.default_gathering_min_people must be at least 2".into());
        }
        if !(0.5..=1_000.0).contains(&d.default_gathering_radius_m) {
            return Err("detection.default_gathering_radius_m must be within 0.5..=1000".into());
        }
        if !(0.0..=86_400.0).contains(&d.default_gathering_min_duration_s) {
            return Err(
                "detection.default_gathering_min_duration_s must be within 0..=86400".into(),
            );
        }
        if !(0.0..=10_000.0).contains(&d.resighting_radius_m)
            || !(0.0..=86_400.0).contains(&d.resighting_window_s)
        {
            return Err("detection.resighting_radius_m must be within 0..=10000 and resighting_window_s within 0..=86400".into());
        }
        if !(0.1..=3_600.0).contains(&d.close_after_s) {
            return Err("detection.close_after_s must be within 0.1..=3600".into());
        }
        let c = &self.commands;
        c.trusted_keys()
            .map_err(|e| format!("commands.ground_station_public_keys: {e}"))?;
        if c.max_clock_skew_s > 300 {
            return Err(format!(
                "commands.max_clock_skew_s = {} is above 300 (synchronise the clocks instead)",
                c.max_clock_skew_s
            ));
        }
        if !(10..=86_400).contains(&c.max_lifetime_s) {
            return Err(format!(
                "commands.max_lifetime_s = {} is outside 10..=86400",
                c.max_lifetime_s
            ));
        }
        for (i, z) in self.detection.zones.iter().enumerate() {
            z.validate_at(&format!("detection.zones[{i}]"))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "drone_id = \"sr-01\"\n[autopilot]\naddress = \"udpin:0.0.0.0:14550\"\n";

    #[test]
    fn minimal_config_is_valid() {
        let c = CompanionConfig::parse(MIN, Path::new("c.toml")).unwrap();
        assert_eq!(c.drone_id().as_str(), "sr-01");
        assert_eq!(c.safety.min_launch_battery_pct, 30.0);
    }

    #[test]
    fn errors_name_the_field() {
        let bad = |extra: &str| {
            CompanionConfig::parse(&format!("{MIN}{extra}"), Path::new("c.toml"))
                .unwrap_err()
                .to_string()
        };
        assert!(bad("[telemetry]\nrate_hz = 50\n").contains("telemetry.rate_hz = 50"));
        assert!(bad("[safety]\nlow_battery_rtl_pct = 40\n").contains("low_battery_rtl_pct"));
        assert!(bad("[patrol]\nautopilot = \"inav\"\n").contains("patrol.autopilot"));
        assert!(bad("typo = 1\n").contains("unknown field `typo`"));
        let e = CompanionConfig::parse(
            "drone_id = \"a/b\"\n[autopilot]\naddress = \"x\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("drone_id"), "{e}");
    }

    #[test]
    fn camera_backend_fields_are_checked_at_load() {
        let cam = |extra: &str| {
            format!(
                "{MIN}[camera]\nuri = \"udp://0.0.0.0:5600\"\nwidth = 1280\nheight = 720\nhfov_deg = 60.0\n{extra}"
            )
        };
        let c = CompanionConfig::parse(&cam(""), Path::new("c.toml")).unwrap();
        let b = c.camera.as_ref().unwrap().backend_options().unwrap();
        assert_eq!(b, BackendOptions::default(), "tract on the CPU by default");
        let c = CompanionConfig::parse(
            &cam("backend = \"ort\"\nprovider = \"tensorrt\"\ndevice_id = 1\nort_library = \"/opt/ort/libonnxruntime.so\"\ntrt_cache_dir = \"/var/cache/trt\"\ntrt_fp16 = true\ninput_size = [1280, 736]\n"),
            Path::new("c.toml"),
        );
        if cfg!(feature = "ort") {
            let c = c.unwrap();
            let cam = c.camera.as_ref().unwrap();
            let b = cam.backend_options().unwrap();
            assert_eq!(b.kind, BackendKind::Ort);
            assert_eq!(b.ort.provider, Provider::Tensorrt);
            assert_eq!(b.ort.device_id, 1);
            assert!(b.ort.trt_fp16);
            assert_eq!(
                b.ort.trt_cache_dir.as_deref(),
                Some(Path::new("/var/cache/trt"))
            );
            assert_eq!(cam.input_size, Some((1280, 736)));
        } else {
            let e = c.unwrap_err().to_string();
            assert!(e.contains("camera.backend") && e.contains("lacks"), "{e}");
        }
        let bad = |extra: &str| {
            CompanionConfig::parse(&cam(extra), Path::new("c.toml"))
                .unwrap_err()
                .to_string()
        };
        let e = bad("backend = \"ort\"\nprovider = \"cdua\"\n");
        assert!(
            e.contains("camera.provider")
                && e.contains("\"cdua\"")
                && e.contains("cpu, cuda, tensorrt, openvino"),
            "{e}"
        );
        let e = bad("backend = \"onnx\"\n");
        assert!(
            e.contains("camera.backend") && e.contains("tract, ort"),
            "{e}"
        );
        let e = bad("provider = \"cuda\"\n");
        assert!(
            e.contains("camera.provider") && e.contains("backend = \"ort\""),
            "{e}"
        );
        let e = bad("input_size = [1280, 0]\n");
        assert!(e.contains("camera.input_size"), "{e}");
        // Extra models: each with a positive budget, named in errors.
        let extra = |m: &str| {
            format!("[[camera.extra_models]]\nmodel_manifest = \"models/fire.toml\"\n{m}")
        };
        let c = CompanionConfig::parse(
            &cam(&extra("fps = 1.5\ntiles = [1, 2]\n")),
            Path::new("c.toml"),
        )
        .unwrap();
        let x = &c.camera.as_ref().unwrap().extra_models;
        assert_eq!((x.len(), x[0].fps, x[0].tiles), (1, 1.5, Some((1, 2))));
        let e = bad(&extra("fps = 0\n"));
        assert!(
            e.contains("camera.extra_models[0] (models/fire.toml)") && e.contains("fps"),
            "{e}"
        );
        let e = bad(&extra("fps = 1\nbudget = 2\n"));
        assert!(e.contains("budget"), "{e}");
    }

    #[test]
    fn the_commented_example_is_valid() {
        let c = CompanionConfig::parse(
            include_str!("../../examples/companion.toml"),
            Path::new("examples/companion.toml"),
        )
        .unwrap();
        assert_eq!(c.commands, CommandsSection::default());
    }

    #[test]
    fn command_keys_are_checked_at_load() {
        let c = CompanionConfig::parse(MIN, Path::new("c.toml")).unwrap();
        assert!(c.commands.trusted_keys().unwrap().is_empty());
        let key = tiancha_protocol::command_auth::CommandSigner::from_seed(&[1; 32])
            .public_key()
            .to_string();
        let c = CompanionConfig::parse(
            &format!("{MIN}[commands]\nground_station_public_keys = [\"{key}\"]\n"),
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(c.commands.trusted_keys().unwrap().keys().len(), 1);
        let e = CompanionConfig::parse(
            &format!("{MIN}[commands]\nground_station_public_keys = [\"ed25519:AAAA\"]\n"),
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("commands.ground_station_public_keys"), "{e}");
    }
}
