//! The ground station: where drone findings become decisions.
//!
//! What it does:
//! - [`ingest`]: subscribes to every drone's uplink topics, validates with
//!   the wire contract, checks that each payload's drone id matches its
//!   topic, de-duplicates by id and stores in batches; what fails lands in
//!   quarantine with its reason; stored ids go back to the drones as
//!   receipts.
//! - [`store`]: SQLite (WAL) on disk by default, or PostgreSQL shared by
//!   several instances (`[store]`); the only module that speaks SQL:
//!   drones, alerts with snapshots, events, command results, down-sampled
//!   telemetry, quarantine, cases and their timeline, the outbox, users,
//!   sessions, API tokens, the audit log.
//! - [`desk`] with [`cases`] (pure rules) and [`grid`] (GeoJSON grid cells
//!   in an R-tree): alerts → cases (confirm, merge within R m / T min,
//!   dismiss with a reason, "四优先" priority, auto-dispatch), status
//!   callbacks along the timeline.
//! - [`dispatch`]: the sans-IO outbox with retries and dead letters, HMAC
//!   signatures, CAP 1.2, and the HTTP driver ("2+N" routes).
//! - [`http`]: the web UI (embedded; Leaflet map, alert feed, triage,
//!   missions, case desk), the JSON API with sessions / CSRF / roles / API
//!   tokens, the live WebSocket, OpenAPI and `/metrics`.
//! - [`broker`]: an embedded MQTT broker (rumqttd), on by default.
//! - [`receiver`]: a small dispute-system endpoint (verifies signatures,
//!   honours idempotency keys, sends signed status callbacks) for the demo
//!   and tests (`tiancha dispute-receiver`).
//!
//! - [`video`]: each drone's live video to the browser (WebRTC with the
//!   H.264 passed through, MJPEG fallback), clips around alerts.
//! - [`command_key`]: the Ed25519 key that signs every command end to end
//!   (companions verify it; a broker alone cannot command a drone).
//!
//! What it does not:
//! TLS (put it behind a reverse proxy; cookies are `Secure` by default).
//!
//! Main types: [`Config`], [`store::Store`], [`desk::Desk`],
//! [`dispatch::outbox::Outbox`], [`http::AppState`].

pub mod auth;
pub mod broker;
pub mod cases;
pub mod command_key;
pub mod config;
pub mod desk;
pub mod dispatch;
pub mod grid;
pub mod http;
pub mod ingest;
pub mod receiver;
pub mod store;
pub mod video;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use config::Config;
use tokio::sync::{broadcast, Notify};

#[derive(Debug, thiserror::Error)]
pub enum GroundStationError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    CommandKey(#[from] command_key::KeyFileError),
}

fn now_ms() -> i64 {
    tiancha_protocol::unix_ms(std::time::SystemTime::now())
}

/// Open the store (for `tiancha ground-station user ...` and tests).
pub fn open_store(cfg: &Config) -> Result<store::Store, store::StoreError> {
    store::Store::open_config(cfg)
}

/// What [`load_map`] returns: the layers, the named zones, the grid index.
pub type MapData = (
    serde_json::Value,
    Vec<(String, geo::MultiPolygon<f64>)>,
    grid::GridIndex,
);

/// The map layers (one FeatureCollection, grid cells marked `kind: grid`),
/// the named zones for priority rules, and the grid index.
pub fn load_map(cfg: &Config) -> Result<MapData, GroundStationError> {
    let mut features = vec![];
    let mut zones = vec![];
    let read = |p: &std::path::Path| -> Result<serde_json::Value, GroundStationError> {
        let t = std::fs::read_to_string(p)
            .map_err(|e| GroundStationError::Setup(format!("map layer {}: {e}", p.display())))?;
        let v: serde_json::Value = serde_json::from_str(&t).map_err(|e| {
            GroundStationError::Setup(format!("map layer {}: not JSON: {e}", p.display()))
        })?;
        if v["type"] != "FeatureCollection" || !v["features"].is_array() {
            return Err(GroundStationError::Setup(format!(
                "map layer {}: expected a GeoJSON FeatureCollection",
                p.display()
            )));
        }
        Ok(v)
    };
    for p in &cfg.map.layers {
        let v = read(p)?;
        for (i, f) in v["features"]
            .as_array()
            .expect("checked")
            .iter()
            .enumerate()
        {
            let kind = f["properties"]["kind"].as_str().unwrap_or("");
            if matches!(kind, "sensitive_site" | "danger_zone") {
                if let Ok(mp) = grid::geometry_to_multipolygon(
                    &f["geometry"],
                    &format!("features[{i}].geometry"),
                ) {
                    let name = f["properties"]["name"].as_str().unwrap_or("").to_string();
                    zones.push((name, mp));
                }
            }
            features.push(f.clone());
        }
    }
    let grid = match &cfg.map.grid {
        Some(p) => {
            let v = read(p)?;
            for f in v["features"].as_array().expect("checked") {
                let mut f = f.clone();
                f["properties"]["kind"] = "grid".into();
                features.push(f);
            }
            grid::GridIndex::from_geojson(&v.to_string(), &p.display().to_string())
                .map_err(|e| GroundStationError::Setup(e.to_string()))?
        }
        None => grid::GridIndex::empty(),
    };
    Ok((
        serde_json::json!({"type": "FeatureCollection", "features": features}),
        zones,
        grid,
    ))
}

/// Everything the HTTP side and the workers share, built from the config
/// and an open store. `mqtt`: the client that publishes commands.
pub fn build_state(
    cfg: Config,
    mut st: store::Store,
    mqtt: Option<rumqttc::AsyncClient>,
) -> Result<http::AppState, GroundStationError> {
    let cfg = Arc::new(cfg);
    let evidence_key = match st.kv("evidence_key")? {
        Some(k) => hex::decode(k).unwrap_or_default(),
        None => {
            let k = auth::new_token().into_bytes();
            st.with_tx(|tx| store::cases::set_kv(tx, "evidence_key", &hex::encode(&k)))?;
            k
        }
    };
    let mut route_secrets = HashMap::new();
    for r in &cfg.dispatch.routes {
        route_secrets.insert(
            r.name.clone(),
            r.secret_bytes().map_err(GroundStationError::Setup)?,
        );
    }
    let (layers, zones, grid) = load_map(&cfg)?;
    tracing::info!(
        grid_cells = grid.len(),
        zones = zones.len(),
        "map layers loaded"
    );
    let rules = cases::CaseRules::new(cfg.cases.clone(), zones);
    rules.check_zones().map_err(GroundStationError::Setup)?;
    let desk = Arc::new(desk::Desk {
        rules,
        grid: Arc::new(grid),
        cfg: cfg.clone(),
        evidence_key,
    });
    let command_signer = Arc::new(command_key::load_or_create(&cfg)?);
    let (live, _) = broadcast::channel(16_384);
    let video = Arc::new(
        video::VideoHub::new(cfg.video.clone())
            .map_err(|e| GroundStationError::Setup(e.to_string()))?,
    );
    Ok(http::AppState {
        video,
        command_signer,
        store: Arc::new(Mutex::new(st)),
        stats: Arc::new(ingest::IngestStats::default()),
        dispatch_stats: Arc::new(dispatch::driver::DispatchStats::default()),
        live_stats: Arc::new(http::LiveStats::default()),
        desk,
        cfg: cfg.clone(),
        live,
        dispatch_wake: Arc::new(Notify::new()),
        limiter: Arc::new(Mutex::new(auth::LoginLimiter::new(
            cfg.auth.login_max_failures,
            cfg.auth.login_window_s,
            cfg.auth.login_lockout_s,
        ))),
        mqtt,
        route_secrets: Arc::new(route_secrets),
        layers: Arc::new(layers),
    })
}

/// The dispatch driver for a state (routes from its config).
pub fn spawn_dispatcher(state: &http::AppState) {
    let routes = state
        .cfg
        .dispatch
        .routes
        .iter()
        .map(|r| dispatch::driver::Route {
            name: r.name.clone(),
            url: r.url.clone(),
            secret: state.route_secrets[&r.name].clone(),
        })
        .collect();
    let s2 = state.clone();
    tokio::spawn(dispatch::driver::run(
        dispatch::driver::DriverConfig {
            routes,
            policy: state.cfg.dispatch.retry.clone(),
            request_timeout: Duration::from_millis(state.cfg.dispatch.request_timeout_ms),
        },
        state.store.clone(),
        state.dispatch_wake.clone(),
        state.dispatch_stats.clone(),
        move |id| {
            http::live::announce(
                &s2,
                &desk::Changed {
                    cases: vec![id],
                    ..Default::default()
                },
            )
        },
    ));
}

/// Run the ground station until the process ends.
pub async fn run(cfg: Config) -> Result<(), GroundStationError> {
    let st = open_store(&cfg)?;
    tracing::info!(path = %cfg.store_path().display(), "store open");
    if cfg.broker.embedded {
        let broker_cfg = cfg.broker.clone();
        tokio::task::spawn_blocking(move || broker::start(&broker_cfg))
            .await
            .expect("broker start panicked")?;
    }
    let (client, eventloop) = ingest::client(&cfg.mqtt, &format!("tiancha-gs-{}", cfg.instance));
    let state = build_state(cfg, st, Some(client.clone()))?;
    let cfg = state.cfg.clone();
    let store = state.store.clone();
    let stats = state.stats.clone();
    let (notices, _) = broadcast::channel(16_384);
    let listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .map_err(|source| GroundStationError::Http {
            addr: cfg.http.listen,
            source,
        })?;
    tracing::info!(
        "ground station HTTP on http://{}",
        listener.local_addr().unwrap_or(cfg.http.listen)
    );
    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    tokio::spawn(http::live::forward(notices.subscribe(), state.clone()));
    tokio::spawn(triage_worker(notices.subscribe(), state.clone()));
    tokio::spawn(video::clip::run_recorder(
        state.video.clone(),
        state.clone(),
        notices.subscribe(),
    ));
    spawn_dispatcher(&state);
    tokio::spawn(retention(state.clone()));
    ingest::run_with(client, eventloop, cfg.ingest.clone(), store, stats, notices).await;
    Ok(())
}

/// Auto-triage new alerts (merge into open cases, auto-dispatch) as they
/// are stored; a durable cursor makes it catch up after a restart.
async fn triage_worker(mut notices: broadcast::Receiver<ingest::Notice>, s: http::AppState) {
    loop {
        let wait = tokio::time::sleep(Duration::from_secs(2));
        tokio::select! {
            n = notices.recv() => match n {
                Ok(ingest::Notice::NewAlert(_)) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = wait => {}
        }
        // Coalesce a burst into one pass.
        while let Ok(_n) = notices.try_recv() {}
        let desk = s.desk.clone();
        match http::blocking(&s, move |st| desk.auto_triage(st, now_ms())).await {
            Ok(ch) => {
                if ch.enqueued {
                    s.dispatch_wake.notify_one();
                }
                http::live::announce(&s, &ch);
            }
            Err(e) => tracing::warn!(error = %e.1, "auto-triage failed; will retry"),
        }
    }
}

/// Purge old snapshots and telemetry (cases are kept).
async fn retention(s: http::AppState) {
    let r = s.cfg.retention.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(r.purge_interval_s));
    loop {
        tick.tick().await;
        let now = now_ms();
        let day = 86_400_000i64;
        let snap = (r.snapshot_days > 0).then(|| now - r.snapshot_days as i64 * day);
        let tel = (r.telemetry_days > 0).then(|| now - r.telemetry_days as i64 * day);
        match http::blocking(&s, move |st| st.purge(snap, tel, now)).await {
            Ok(p) if p.snapshots + p.telemetry > 0 || !p.clip_paths.is_empty() => {
                for c in &p.clip_paths {
                    if let Err(e) = std::fs::remove_file(s.cfg.data_dir.join(c)) {
                        tracing::warn!(path = %c, error = %e, "cannot delete a purged clip");
                    }
                }
                tracing::info!(
                    snapshots = p.snapshots,
                    clips = p.clip_paths.len(),
                    telemetry = p.telemetry,
                    "retention purge"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.1, "retention purge failed"),
        }
    }
}
