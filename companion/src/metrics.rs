//! Prometheus metrics on a local port (`metrics_listen`), for the drone's
//! own monitoring: links, spool, battery, and the eye's frame rate and
//! latency.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tiancha_firmware_bridge::VehicleState;

use crate::channel::ChannelStats;
use crate::vehicle::battery_pct;

pub struct Metrics {
    registry: Mutex<Registry>,
    pub spool_depth: Gauge,
    pub spool_bytes: Gauge,
    pub ground_link_up: Gauge,
    pub autopilot_link_up: Gauge,
    pub camera_link_up: Gauge,
    pub battery_pct: Gauge<f64, AtomicU64>,
    pub alt_rel_m: Gauge<f64, AtomicU64>,
    pub frames: Counter,
    pub tracked_frames: Counter,
    pub frames_dropped: Gauge<i64, AtomicI64>,
    pub fps: Gauge<f64, AtomicU64>,
    pub frame_to_event_latency_s: Histogram,
    pub alerts: Counter,
    pub alerts_refused: Counter,
    pub spool_disk_full: Gauge,
    pub cpu_temp_c: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("tiancha_companion")),
            spool_depth: Gauge::default(),
            spool_bytes: Gauge::default(),
            ground_link_up: Gauge::default(),
            autopilot_link_up: Gauge::default(),
            camera_link_up: Gauge::default(),
            battery_pct: Gauge::default(),
            alt_rel_m: Gauge::default(),
            frames: Counter::default(),
            tracked_frames: Counter::default(),
            frames_dropped: Gauge::default(),
            fps: Gauge::default(),
            frame_to_event_latency_s: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            alerts: Counter::default(),
            alerts_refused: Counter::default(),
            spool_disk_full: Gauge::default(),
            cpu_temp_c: Gauge::default(),
        };
        {
            let mut r = m.registry.lock().unwrap();
            r.register(
                "spool_depth",
                "Entries waiting in the spool",
                m.spool_depth.clone(),
            );
            r.register(
                "spool_bytes",
                "Bytes held by the spool",
                m.spool_bytes.clone(),
            );
            r.register(
                "ground_link_up",
                "1 when connected to the broker",
                m.ground_link_up.clone(),
            );
            r.register(
                "autopilot_link_up",
                "1 when the autopilot is heard",
                m.autopilot_link_up.clone(),
            );
            r.register(
                "camera_link_up",
                "1 when frames arrive",
                m.camera_link_up.clone(),
            );
            r.register(
                "battery_percent",
                "Battery remaining",
                m.battery_pct.clone(),
            );
            r.register("altitude_rel_m", "Altitude above home", m.alt_rel_m.clone());
            r.register("frames", "Frames processed by the eye", m.frames.clone());
            r.register(
                "tracked_frames",
                "Camera frames the eye moved its tracks to and ran its rules on",
                m.tracked_frames.clone(),
            );
            r.register(
                "frames_dropped",
                "Frames dropped (newest-frame policy)",
                m.frames_dropped.clone(),
            );
            r.register(
                "fps",
                "Frames per second through the detector",
                m.fps.clone(),
            );
            r.register(
                "frame_to_event_latency_seconds",
                "Capture time to event, seconds",
                m.frame_to_event_latency_s.clone(),
            );
            r.register("alerts", "Alerts spooled", m.alerts.clone());
            r.register(
                "alerts_refused",
                "Alerts the spool refused (full)",
                m.alerts_refused.clone(),
            );
            r.register(
                "spool_disk_full",
                "1 while the spool's disk is full (new alerts refused, spooled ones kept)",
                m.spool_disk_full.clone(),
            );
            r.register(
                "cpu_temperature_celsius",
                "CPU temperature, where readable",
                m.cpu_temp_c.clone(),
            );
        }
        m
    }
}

impl Metrics {
    pub fn update_vehicle(&self, s: &VehicleState, ch: &ChannelStats) {
        self.spool_depth.set(ch.spool.depth as i64);
        self.spool_bytes.set(ch.spool.bytes as i64);
        self.spool_disk_full.set(ch.spool.disk_full as i64);
        self.ground_link_up.set(ch.connected as i64);
        self.autopilot_link_up.set(s.link_up as i64);
        if let Some(b) = battery_pct(s) {
            self.battery_pct.set(b);
        }
        if let Some(p) = s.position {
            self.alt_rel_m.set(p.alt_rel_m);
        }
        if let Some(t) = cpu_temperature_c() {
            self.cpu_temp_c.set(t);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry.lock().unwrap()).expect("writing to a String");
        out
    }
}

/// The first thermal zone's temperature, where the kernel exposes one.
pub fn cpu_temperature_c() -> Option<f64> {
    let milli: f64 = std::fs::read_to_string("/sys/class/thermal/thermal_zone0/temp")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(milli / 1000.0)
}

/// Serve `/metrics` on `addr`.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.render(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    tracing::info!(%addr, "metrics on /metrics");
    Ok(())
}
