//! The eye on the live camera stream: frames → detections → incidents →
//! alerts in the spool, geotagged with the bridge's pose history.
//!
//! - [`load_detector`] builds the detector the `[camera]` section asks
//!   for (model, backend, provider, input size). The daemon calls it
//!   before it announces itself: a model, library or provider that cannot
//!   load stops the companion at start-up with the reason, it never comes
//!   up half-configured.
//! - [`start`] runs the inference [`Pipeline`] on that detector on a
//!   thread of its own (the camera is live, so the pipeline tracks at the
//!   camera's pace: every frame moves the tracks, runs the rules and gets
//!   its own video overlay, and the detector's results are applied late in
//!   their own frames, `tiancha_inference::timeline`) and publishes what it
//!   produces through the companion's spooling channel, exactly as the
//!   daemon publishes its other messages: an opened incident becomes an
//!   alert (with its annotated snapshot), a change or the end of one an
//!   `incident_update` event.
//! - [`BridgePoses`] answers the geotagger's "where was the camera at
//!   capture time t?" from the firmware bridge's TIMESYNC-fitted pose
//!   history ([`to_camera_pose`] adapts the bridge's pose to the camera
//!   model's). While the autopilot link is down it answers nothing, so
//!   incidents still raise alerts, marked "position unknown" and not
//!   geotagged.
//! - Detection zones from the ground (`set_detection_zones`) replace the
//!   rules at run time ([`engine_config`]); open incidents of the old rules
//!   are closed.
//! - Health (camera link, frames, drops, fps, latency) goes to
//!   [`EyeStatus`] (the daemon's status and failsafes) and the Prometheus
//!   metrics.
//! - With `[video] enabled`, the camera stream also goes out as RTSP
//!   (H.264, scaled, tracks and incidents drawn on it; see
//!   `tiancha_inference::video_out`). Video that cannot start is logged
//!   and left out: the eye and its alerts run without it.
//! - Optionally (`detection.auto_investigate_min_people`) a gathering that
//!   reaches that many people makes the companion investigate it on its
//!   own, through the same executor as the ground's commands.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tiancha_firmware_bridge::pose::CameraPose as BridgePose;
use tiancha_firmware_bridge::{Bridge, VehicleState};
use tiancha_inference::alert::{self, Outgoing};
use tiancha_inference::events::RuleKind;
use tiancha_inference::geometry::camera::{
    Attitude, CameraModel, CameraPose, GimbalAngles, GimbalMount, PoseSigma, PoseSource,
};
use tiancha_inference::geotag::Ground;
use tiancha_inference::manifest::Manifest;
use tiancha_inference::model_set::{ExtraModel, ModelSchedule};
use tiancha_inference::protocol::{
    self as proto, Command, CommandKind, DetectionZone, DroneEvent, EventKind, LinkName, LinkState,
    ZoneRule,
};
use tiancha_inference::video_out::{VideoConfig, VideoOut};
use tiancha_inference::{
    Detector, DetectorOptions, EngineConfig, Eye, EyeConfig, EyeOutput, FrameSource, Geotagger,
    Pipeline, PipelineOptions, RuleConfig, SourceConfig, SourceEvent,
};
use tokio::sync::watch;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::channel::ChannelHandle;
use crate::commands::Executor;
use crate::config::{CameraSection, DetectionSection};
use crate::metrics::Metrics;

/// What the eye reports about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EyeStatus {
    /// `None` until the camera has been tried.
    pub camera_up: Option<bool>,
    pub fps: f64,
    pub frames: u64,
    pub dropped: u64,
    /// Latency of the latest frame (hand-over by the decoder → events), ms.
    pub latency_ms: f64,
    /// Alerts handed to the spool so far.
    pub alerts: u64,
    /// `Some` when the eye could not start (e.g. the model is missing).
    pub error: Option<String>,
}

/// The bridge's camera pose in the camera model's terms: the camera
/// orientation (NED ← camera) becomes a vehicle-mounted gimbal at zero
/// angles on a body whose attitude is the gimbal's, so that the camera
/// model's `r_ned_cam()` is exactly the bridge's orientation.
pub fn to_camera_pose(p: &BridgePose, sigma: PoseSigma) -> CameraPose {
    let q_ned_gimbal =
        p.camera_orientation * tiancha_firmware_bridge::pose::camera_from_frd().inverse();
    CameraPose {
        t_unix_ms: p.t_unix_ms.round() as i64,
        position: p.position,
        attitude: Attitude::from_quaternion(&q_ned_gimbal),
        gimbal: GimbalAngles::new(0.0, 0.0, 0.0, GimbalMount::Vehicle),
        velocity_ned_mps: p.velocity_ned_mps,
        angular_rate_dps: [0.0; 3],
        sigma,
    }
}

/// Poses from the firmware bridge, for the geotagger.
pub struct BridgePoses {
    bridge: Bridge,
    state: watch::Receiver<VehicleState>,
    sigma: PoseSigma,
}

impl BridgePoses {
    pub fn new(bridge: Bridge, sigma: PoseSigma) -> Self {
        Self {
            state: bridge.state(),
            bridge,
            sigma,
        }
    }
}

impl PoseSource for BridgePoses {
    fn pose_at(&self, t_unix_ms: i64) -> Option<CameraPose> {
        if !self.state.borrow().link_up {
            return None;
        }
        self.bridge
            .pose_at(t_unix_ms as f64)
            .ok()
            .map(|p| to_camera_pose(&p, self.sigma))
    }
}

/// The rules for a set of zones: the zones' own rules, or without zones a
/// gathering rule everywhere with the configured thresholds; a hazard
/// rule everywhere when the model has hazard classes.
pub fn engine_config(
    zones: &[DetectionZone],
    d: &DetectionSection,
    manifest: &Manifest,
) -> EngineConfig {
    let model_has_hazards = !manifest.hazards.is_empty();
    let mut rules: Vec<RuleConfig> = zones.iter().map(RuleConfig::from).collect();
    // The default gathering rule only for a model that sees people (a
    // hazard-only model runs with its hazard rule alone).
    if zones.is_empty() && !manifest.people.is_empty() {
        rules.push(RuleConfig {
            name: "gathering".into(),
            zone: None,
            rule: ZoneRule::Gathering {
                min_people: d.default_gathering_min_people,
                radius_m: d.default_gathering_radius_m,
                min_duration_s: d.default_gathering_min_duration_s,
            },
        });
    }
    if model_has_hazards
        && !rules
            .iter()
            .any(|r| matches!(r.rule, ZoneRule::Hazard { .. }))
    {
        rules.push(RuleConfig {
            name: "hazard".into(),
            zone: None,
            rule: ZoneRule::Hazard {
                classes: vec![],
                k_of_m: (3, 5),
            },
        });
    }
    EngineConfig {
        rules,
        close_after_s: d.close_after_s,
        ..EngineConfig::default()
    }
}

/// One alert per situation across passes: a gathering seen again on a
/// later lane opens a new incident in the eye (its tracks were lost in
/// between); when it opens within `radius_m` of an alert of the same
/// category raised in the last `window_ms`, it is a re-sighting and goes
/// out as an update of that alert instead of a new one.
#[derive(Debug, Default)]
pub struct Resighting {
    pub radius_m: f64,
    pub window_ms: i64,
    recent: Vec<(Uuid, proto::Category, f64, f64, i64)>,
    alias: std::collections::HashMap<Uuid, Uuid>,
}

impl Resighting {
    pub fn new(radius_m: f64, window_s: f64) -> Self {
        Self {
            radius_m,
            window_ms: (window_s * 1000.0) as i64,
            ..Self::default()
        }
    }

    /// What to publish for an outgoing message: alerts that re-sight an
    /// earlier one become updates of it; updates of such incidents carry
    /// the earlier alert's id.
    pub fn filter(&mut self, out: Outgoing, drone: &proto::DroneId) -> Outgoing {
        match out {
            Outgoing::Alert(a) => {
                let Some(loc) = a.location.as_ref() else {
                    return Outgoing::Alert(a);
                };
                let (lat, lon, t) = (loc.lat_deg, loc.lon_deg, a.t_unix_ms);
                self.recent.retain(|r| t - r.4 <= self.window_ms);
                let m_lat = 111_320.0;
                let m_lon = 111_320.0 * lat.to_radians().cos();
                let near = self.recent.iter().find(|r| {
                    r.1 == a.category
                        && (((r.2 - lat) * m_lat).powi(2) + ((r.3 - lon) * m_lon).powi(2)).sqrt()
                            <= self.radius_m
                });
                match near {
                    Some(&(earlier, ..)) if self.radius_m > 0.0 => {
                        self.alias.insert(a.alert_id, earlier);
                        Outgoing::Update(DroneEvent {
                            schema: proto::SCHEMA_VERSION,
                            event_id: Uuid::now_v7(),
                            drone_id: drone.clone(),
                            t_unix_ms: a.t_unix_ms,
                            kind: EventKind::IncidentUpdate {
                                alert_id: earlier,
                                person_count: a.person_count,
                                location: a.location,
                                closed: false,
                            },
                        })
                    }
                    _ => {
                        self.recent.push((a.alert_id, a.category, lat, lon, t));
                        Outgoing::Alert(a)
                    }
                }
            }
            Outgoing::Update(mut ev) => {
                if let EventKind::IncidentUpdate { alert_id, .. } = &mut ev.kind {
                    if let Some(earlier) = self.alias.get(alert_id) {
                        *alert_id = *earlier;
                    }
                }
                Outgoing::Update(ev)
            }
        }
    }
}

/// Build the detector `[camera]` asks for: its model manifest, tiles,
/// backend (tract or onnxruntime with its provider) and input size. Slow
/// (seconds: the model is optimised, a TensorRT engine may be built);
/// every error names the setting behind it.
/// The camera's models: the detector of `model_manifest` and the extra
/// models, each with its frame-rate budget.
pub struct EyeModels {
    pub detector: Arc<Detector>,
    pub extras: Vec<ExtraModel>,
}

/// Load every model the `[camera]` section names ([`load_detector`] and
/// `extra_models`, on the same backend).
pub fn load_models(cam: &CameraSection) -> Result<EyeModels, String> {
    let detector = Arc::new(load_detector(cam)?);
    let mut extras = Vec::new();
    for (i, e) in cam.extra_models.iter().enumerate() {
        let d = load_one(
            cam,
            &format!("camera.extra_models[{i}].model_manifest"),
            &e.model_manifest,
            e.tiles,
            e.tiles_full_frame,
            e.input_size,
        )?;
        extras.push(ExtraModel {
            detector: Arc::new(d),
            fps: e.fps,
        });
    }
    Ok(EyeModels { detector, extras })
}

pub fn load_detector(cam: &CameraSection) -> Result<Detector, String> {
    load_one(
        cam,
        "camera.model_manifest",
        &cam.model_manifest,
        cam.tiles,
        cam.tiles_full_frame,
        cam.input_size,
    )
}

fn load_one(
    cam: &CameraSection,
    what: &str,
    manifest: &std::path::Path,
    tiles: Option<(u32, u32)>,
    tiles_full_frame: bool,
    input_size: Option<(u32, u32)>,
) -> Result<Detector, String> {
    let t0 = Instant::now();
    let backend = cam.backend_options()?;
    let opts = DetectorOptions {
        tiling: tiles.map(|(rows, cols)| {
            Some(tiancha_inference::manifest::TilingSpec {
                rows,
                cols,
                overlap: 0.2,
                include_full: tiles_full_frame,
            })
        }),
        backend,
        input_size,
        ..DetectorOptions::default()
    };
    let detector = Detector::from_manifest_path(manifest, &opts).map_err(|e| {
        format!(
            "{what} {} (backend {}, provider {}{}): {e}",
            manifest.display(),
            cam.backend,
            cam.provider,
            input_size
                .map(|(w, h)| format!(", input_size {w}x{h}"))
                .unwrap_or_default()
        )
    })?;
    info!(
        "eye: model {} loaded in {:.1} s on {} (input {:?}{})",
        detector.manifest().file.name,
        t0.elapsed().as_secs_f64(),
        detector.backend_name(),
        detector.manifest().file.input.shape,
        if detector.batches_slices() {
            ", slices batched"
        } else {
            ""
        }
    );
    Ok(detector)
}

/// Start the eye on its own threads, on the models from [`load_models`].
#[allow(clippy::too_many_arguments)]
pub fn start(
    models: EyeModels,
    cam: CameraSection,
    detection: DetectionSection,
    video: VideoConfig,
    zones: watch::Receiver<Vec<DetectionZone>>,
    bridge: Bridge,
    channel: ChannelHandle,
    exec: Arc<Executor>,
    metrics: Arc<Metrics>,
) -> watch::Receiver<EyeStatus> {
    let (tx, rx) = watch::channel(EyeStatus::default());
    let rt = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name("tiancha-eye".into())
        .spawn(move || {
            let ctx = Ctx {
                models,
                cam,
                detection,
                video,
                zones,
                bridge,
                channel,
                exec,
                metrics,
                rt,
                status: tx,
            };
            if let Err(e) = ctx.run() {
                error!("the eye stopped: {e}");
                ctx.status.send_modify(|s| {
                    s.camera_up = Some(false);
                    s.error = Some(e.clone());
                });
                ctx.metrics.camera_link_up.set(0);
            }
        });
    if let Err(e) = spawned {
        error!("cannot start the eye's thread: {e}");
    }
    rx
}

struct Ctx {
    models: EyeModels,
    cam: CameraSection,
    detection: DetectionSection,
    video: VideoConfig,
    zones: watch::Receiver<Vec<DetectionZone>>,
    bridge: Bridge,
    channel: ChannelHandle,
    exec: Arc<Executor>,
    metrics: Arc<Metrics>,
    rt: tokio::runtime::Handle,
    status: watch::Sender<EyeStatus>,
}

impl Ctx {
    fn run(&self) -> Result<(), String> {
        let detector = self.models.detector.clone();
        let schedule = ModelSchedule::new(detector.manifest(), self.models.extras.clone())
            .map_err(|e| format!("camera.extra_models: {e}"))?;
        let manifest = schedule.manifest().clone();
        let model = CameraModel::ideal(self.cam.width, self.cam.height, self.cam.hfov_deg);
        let sigma = self.cam.pose_sigma.unwrap_or_else(PoseSigma::typical);
        let ground_alt = self.ground_alt();
        let geotagger = Geotagger::new(
            model,
            Ground::Flat(ground_alt),
            Arc::new(BridgePoses::new(self.bridge.clone(), sigma)),
        )
        .with_sigma_px(self.cam.sigma_px);
        let mut zones = self.zones.clone();
        let rules = engine_config(&zones.borrow_and_update(), &self.detection, &manifest);
        let eye = Eye::new(
            manifest.clone(),
            EyeConfig {
                engine: rules,
                ..EyeConfig::default()
            },
            Some(geotagger),
        )
        .map_err(|e| format!("detection rules: {e}"))?;
        let mut source_cfg = SourceConfig::new(self.cam.uri.clone());
        // Kept alive for as long as the eye runs.
        let _video = self
            .video
            .enabled
            .then(|| match VideoOut::start(&self.video) {
                Ok(v) => {
                    info!(url = v.url(), "eye: live video out");
                    source_cfg.video = Some(v.tap());
                    Some(v)
                }
                Err(e) => {
                    error!("eye: live video out did not start (the eye runs without it): {e}");
                    None
                }
            });
        let source = FrameSource::open(source_cfg)
            .map_err(|e| format!("camera.uri {}: {e}", self.cam.uri))?;
        let pipeline =
            Pipeline::start_with(source, detector, schedule, eye, PipelineOptions::default())
                .map_err(|e| format!("eye pipeline: {e}"))?;
        info!(uri = %self.cam.uri, ground_alt_m = ground_alt, "eye running");
        self.status.send_modify(|s| s.camera_up = Some(false));

        let mut last_health = Instant::now();
        let mut last_log = Instant::now();
        let (mut last_frames, mut last_tracked) = (0u64, 0u64);
        let mut investigated: std::collections::HashSet<Uuid> = Default::default();
        let mut resighting = Resighting::new(
            self.detection.resighting_radius_m,
            self.detection.resighting_window_s,
        );
        loop {
            if zones.has_changed().unwrap_or(false) {
                let z = zones.borrow_and_update().clone();
                let r = engine_config(&z, &self.detection, &manifest);
                info!(
                    "eye: {} rule(s) from {} detection zone(s)",
                    r.rules.len(),
                    z.len()
                );
                if !pipeline.set_rules(r) {
                    return Err("the pipeline ended".into());
                }
            }
            match pipeline.recv(Duration::from_millis(250)) {
                None => {}
                Some(EyeOutput::Incident(i)) => {
                    self.publish(&i, &mut resighting, &mut investigated)
                }
                Some(EyeOutput::Source(e)) => self.source_event(e),
                Some(EyeOutput::FrameError(e)) => warn!("eye: {e}"),
                Some(EyeOutput::Frame(_)) => {}
                Some(EyeOutput::End(s)) => {
                    return Err(format!(
                        "the camera source ended after {} frames{}",
                        s.frames,
                        s.source_error.map(|e| format!(": {e}")).unwrap_or_default()
                    ));
                }
            }
            if last_health.elapsed() >= Duration::from_secs(1) {
                last_health = Instant::now();
                let h = pipeline.health();
                self.metrics.frames.inc_by(h.frames - last_frames);
                last_frames = h.frames;
                self.metrics
                    .tracked_frames
                    .inc_by(h.tracked_frames - last_tracked);
                last_tracked = h.tracked_frames;
                self.metrics.fps.set(h.fps);
                self.metrics.frames_dropped.set(h.dropped as i64);
                if h.frames > 0 {
                    self.metrics
                        .frame_to_event_latency_s
                        .observe(h.latency_ms / 1000.0);
                }
                if last_log.elapsed() >= Duration::from_secs(10) {
                    last_log = Instant::now();
                    let pose = match self.bridge.pose_at(h.last_capture_unix_ms as f64) {
                        Ok(_) => "known".to_string(),
                        Err(e) => e.to_string(),
                    };
                    info!(
                        frames = h.frames,
                        tracked_frames = h.tracked_frames,
                        dropped = h.dropped,
                        fps = format!("{:.1}", h.fps),
                        latency_ms = format!("{:.0}", h.latency_ms),
                        infer_ms = format!("{:.0}", h.infer_ms),
                        "eye health; pose at the latest frame: {pose}"
                    );
                }
                self.status.send_modify(|s| {
                    s.fps = h.fps;
                    s.frames = h.frames;
                    s.dropped = h.dropped;
                    s.latency_ms = h.latency_ms;
                });
            }
        }
    }

    /// Ground altitude for geotagging: configured, else home's.
    fn ground_alt(&self) -> f64 {
        if let Some(a) = self.cam.ground_alt_m {
            return a;
        }
        // Home arrives with the first telemetry; wait a little for it.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(h) = self.bridge.snapshot().home {
                return h.alt_m;
            }
            if Instant::now() > deadline {
                warn!("eye: no home position after 30 s and no camera.ground_alt_m: geotagging on ground at 0 m AMSL");
                return 0.0;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn source_event(&self, e: SourceEvent) {
        let up = match &e {
            SourceEvent::Connected { width, height, .. } => {
                info!("eye: camera connected ({width}x{height})");
                if (*width, *height) != (self.cam.width, self.cam.height) {
                    info!(
                        "eye: frames are {width}x{height}, the camera model {}x{}: scaled",
                        self.cam.width, self.cam.height
                    );
                }
                true
            }
            SourceEvent::Disconnected { reason, .. } => {
                warn!("eye: camera disconnected: {reason}");
                false
            }
            _ => return,
        };
        let was = self.status.borrow().camera_up;
        self.status.send_modify(|s| s.camera_up = Some(up));
        self.metrics.camera_link_up.set(up as i64);
        if was != Some(up) {
            let ev = DroneEvent {
                schema: proto::SCHEMA_VERSION,
                event_id: Uuid::now_v7(),
                drone_id: self.channel.drone_id().clone(),
                t_unix_ms: proto::unix_ms(std::time::SystemTime::now()),
                kind: EventKind::Link {
                    link: LinkName::Camera,
                    state: if up { LinkState::Up } else { LinkState::Down },
                },
            };
            if let Err(e) = self.rt.block_on(self.channel.submit_event(&ev)) {
                warn!("eye: could not spool a link event: {e}");
            }
        }
    }

    fn publish(
        &self,
        i: &tiancha_inference::alert::EyeIncident,
        resighting: &mut Resighting,
        investigated: &mut std::collections::HashSet<Uuid>,
    ) {
        let drone = self.channel.drone_id().clone();
        let mission_id = self.exec.patrol().map(|p| p.mission_id);
        match resighting.filter(alert::outgoing(i, &drone, mission_id), &drone) {
            Outgoing::Alert(a) => {
                info!(
                    alert = %a.alert_id,
                    category = ?a.category,
                    people = ?a.person_count,
                    location = ?a.location.as_ref().map(|g| (g.lat_deg, g.lon_deg)),
                    status = ?a.location_status,
                    "eye: alert"
                );
                match self.rt.block_on(self.channel.submit_alert(&a)) {
                    Ok(_) => {
                        self.metrics.alerts.inc();
                        self.status.send_modify(|s| s.alerts += 1);
                    }
                    Err(e) => {
                        self.metrics.alerts_refused.inc();
                        error!("eye: the spool refused alert {}: {e}", a.alert_id);
                    }
                }
            }
            Outgoing::Update(ev) => {
                if let Err(e) = self.rt.block_on(self.channel.submit_event(&ev)) {
                    warn!("eye: could not spool an incident update: {e}");
                }
            }
        }
        self.maybe_investigate(i, investigated);
    }

    fn maybe_investigate(
        &self,
        i: &tiancha_inference::alert::EyeIncident,
        investigated: &mut std::collections::HashSet<Uuid>,
    ) {
        let n = self.detection.auto_investigate_min_people;
        let inc = &i.event.incident;
        if n == 0
            || inc.rule_kind != RuleKind::Gathering
            || inc.count.unwrap_or(0) < n
            || investigated.contains(&inc.id)
            || self.exec.patrol().is_none()
        {
            return;
        }
        let Some(loc) = inc.location.as_ref() else {
            return;
        };
        investigated.insert(inc.id);
        let now = proto::unix_ms(std::time::SystemTime::now());
        let cmd = Command {
            schema: proto::SCHEMA_VERSION,
            command_id: Uuid::now_v7(),
            drone_id: self.channel.drone_id().clone(),
            issued_by: "companion (auto-investigate)".into(),
            t_unix_ms: now,
            expires_unix_ms: now + 60_000,
            kind: CommandKind::Investigate {
                target: proto::GeoPoint::new(loc.lat_deg, loc.lon_deg),
                orbit_radius_m: 20.0,
                duration_s: 30.0,
                alert_id: Some(inc.id),
            },
            auth: None,
        };
        info!(alert = %inc.id, people = ?inc.count, "eye: gathering past the threshold: investigating on our own");
        let exec = self.exec.clone();
        let _guard = self.rt.enter();
        exec.dispatch(cmd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Point2, UnitQuaternion, Vector3};
    use tiancha_firmware_bridge::pose::camera_from_frd;
    use tiancha_inference::geometry::camera::{CameraView, FlatGround};
    use tiancha_inference::geometry::{LatLonAlt, LocalFrame};

    fn bridge_pose(q_gimbal: UnitQuaternion<f64>) -> BridgePose {
        BridgePose {
            t_unix_ms: 1_700_000_000_000.0,
            boot_ms: 5_000.0,
            position: LatLonAlt::new(28.45, 117.94, 130.0),
            velocity_ned_mps: [8.0, 0.0, 0.0],
            vehicle_attitude: UnitQuaternion::identity(),
            gimbal_attitude: Some(q_gimbal),
            camera_orientation: q_gimbal * camera_from_frd(),
            extrapolated_ms: 0.0,
        }
    }

    #[test]
    fn the_adapted_pose_points_the_camera_as_the_bridge_says() {
        for (roll, pitch, yaw) in [
            (0.0, -90.0, 0.0),
            (0.0, -45.0, 30.0),
            (3.0, -60.0, 200.0),
            (-2.0, -89.9, 95.0),
            (0.0, -20.0, -120.0),
        ] {
            let q = UnitQuaternion::from_euler_angles(
                f64::to_radians(roll),
                f64::to_radians(pitch),
                f64::to_radians(yaw),
            );
            let b = bridge_pose(q);
            let c = to_camera_pose(&b, PoseSigma::default());
            let err = c.r_ned_cam().angle_to(&b.camera_orientation).to_degrees();
            // 1e-4° is 1.7 mm at 1 km; straight down (gimbal lock of the
            // Euler angles the adapter goes through) it is ~1e-6°.
            assert!(err < 1e-4, "({roll},{pitch},{yaw}): {err} deg off");
            assert_eq!(c.t_unix_ms, 1_700_000_000_000);
            assert_eq!(c.position, b.position);
        }
    }

    #[test]
    fn the_image_centre_of_a_forward_tilted_camera_lands_where_trigonometry_says() {
        // 60 m above flat ground at 70 m AMSL, gimbal 45° down, facing east:
        // the optical axis meets the ground 60 m east.
        let q =
            UnitQuaternion::from_euler_angles(0.0, f64::to_radians(-45.0), f64::to_radians(90.0));
        let mut b = bridge_pose(q);
        b.position = LatLonAlt::new(28.45, 117.94, 130.0);
        let c = to_camera_pose(&b, PoseSigma::default());
        let view = CameraView::new(CameraModel::ideal(1280, 720, 60.0), c);
        let est = view
            .locate(Point2::new(640.0, 360.0), &FlatGround::new(70.0), 1.0)
            .unwrap();
        let ned = LocalFrame::new(LatLonAlt::new(28.45, 117.94, 70.0)).to_ned(est.point);
        assert!((ned - Vector3::new(0.0, 60.0, 0.0)).norm() < 0.05, "{ned}");
    }

    #[test]
    fn a_gathering_seen_again_nearby_updates_the_first_alert() {
        use tiancha_inference::protocol::{Alert, Category, Ellipse, Geotag};
        let drone = proto::DroneId::new("sr-01").unwrap();
        let alert = |lat: f64, t: i64, cat: Category| {
            let mut a: Alert = serde_json::from_value(serde_json::json!({
                "schema": 1, "alert_id": Uuid::now_v7(), "drone_id": "sr-01",
                "category": "gathering", "confidence": 0.8, "t_first_unix_ms": t,
                "t_unix_ms": t, "location_status": "geotagged",
                "rule": {"name": "gathering", "detail": ""}, "tracks": []
            }))
            .unwrap();
            a.category = cat;
            a.location = Some(Geotag {
                lat_deg: lat,
                lon_deg: 117.94,
                alt_m: Some(70.0),
                sigma: Ellipse {
                    semi_major_m: 2.0,
                    semi_minor_m: 1.0,
                    orientation_deg: 0.0,
                },
            });
            Box::new(a)
        };
        let mut r = Resighting::new(25.0, 600.0);
        let first = alert(28.45, 1_000, Category::Gathering);
        let first_id = first.alert_id;
        assert!(matches!(
            r.filter(Outgoing::Alert(first), &drone),
            Outgoing::Alert(_)
        ));
        // 10 m away a minute later: the same gathering.
        let again = alert(28.45 + 10.0 / 111_320.0, 61_000, Category::Gathering);
        let again_id = again.alert_id;
        match r.filter(Outgoing::Alert(again), &drone) {
            Outgoing::Update(ev) => match ev.kind {
                EventKind::IncidentUpdate { alert_id, .. } => assert_eq!(alert_id, first_id),
                k => panic!("{k:?}"),
            },
            Outgoing::Alert(_) => panic!("a re-sighting raised a second alert"),
        }
        // Its later updates are the first alert's.
        let upd = DroneEvent {
            schema: proto::SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            drone_id: drone.clone(),
            t_unix_ms: 62_000,
            kind: EventKind::IncidentUpdate {
                alert_id: again_id,
                person_count: Some(6),
                location: None,
                closed: true,
            },
        };
        match r.filter(Outgoing::Update(upd), &drone) {
            Outgoing::Update(DroneEvent {
                kind: EventKind::IncidentUpdate { alert_id, .. },
                ..
            }) => assert_eq!(alert_id, first_id),
            _ => panic!(),
        }
        // 60 m away, another category nearby, or after the window: new alerts.
        let far = alert(28.45 + 60.0 / 111_320.0, 62_000, Category::Gathering);
        assert!(matches!(
            r.filter(Outgoing::Alert(far), &drone),
            Outgoing::Alert(_)
        ));
        let other = alert(28.45, 63_000, Category::Intrusion);
        assert!(matches!(
            r.filter(Outgoing::Alert(other), &drone),
            Outgoing::Alert(_)
        ));
        let late = alert(28.45, 1_000_000, Category::Gathering);
        assert!(matches!(
            r.filter(Outgoing::Alert(late), &drone),
            Outgoing::Alert(_)
        ));
    }

    /// A manifest with these classes (TOML list) and `[events]` lines.
    fn manifest(classes: &str, events: &str) -> Manifest {
        let text = format!(
            "name = \"m\"\nmodel = \"m.onnx\"\n[input]\nname = \"i\"\nshape = [1, 3, 64, 64]\n\
             layout = \"nchw\"\ncolor = \"rgb\"\nresize = \"letterbox\"\nscale = 1.0\n\
             [output]\ndecoder = \"yolov8\"\nname = \"o\"\n[classes]\nnames = {classes}\n\
             [events]\n{events}\n"
        );
        Manifest::parse(&text, std::path::Path::new("m.toml"), |_| Err("".into())).unwrap()
    }

    #[test]
    fn rules_from_zones_or_the_default_gathering() {
        let d = DetectionSection::default();
        let people = manifest("[\"person\", \"car\"]", "");
        let both = manifest("[\"person\", \"fire\"]", "hazards = [\"fire\"]");
        let hazards_only = manifest("[\"smoke\", \"fire\"]", "hazards = [\"smoke\", \"fire\"]");
        let r = engine_config(&[], &d, &people);
        assert_eq!(r.rules.len(), 1);
        assert!(matches!(
            r.rules[0].rule,
            ZoneRule::Gathering { min_people: 5, .. }
        ));
        // A hazard-only model: its hazard rule alone, and the engine takes it.
        let r = engine_config(&[], &d, &hazards_only);
        assert_eq!(r.rules.len(), 1);
        assert!(matches!(r.rules[0].rule, ZoneRule::Hazard { .. }));
        tiancha_inference::EventEngine::new(r, Arc::new(hazards_only)).unwrap();
        let zone = DetectionZone {
            name: "reservoir bank".into(),
            polygon: proto::GeoPolygon {
                exterior: vec![
                    proto::GeoPoint::new(28.45, 117.94),
                    proto::GeoPoint::new(28.45, 117.941),
                    proto::GeoPoint::new(28.451, 117.941),
                ],
                holes: vec![],
            },
            rule: ZoneRule::Intrusion {
                classes: vec!["person".into()],
                min_duration_s: 2.0,
            },
        };
        let r = engine_config(std::slice::from_ref(&zone), &d, &both);
        assert_eq!(r.rules.len(), 2, "the zone's rule and the hazard rule");
        assert_eq!(r.rules[0].name, "reservoir bank");
        assert!(matches!(r.rules[1].rule, ZoneRule::Hazard { .. }));
    }
}
