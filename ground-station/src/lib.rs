//! The ground station: where drone findings become decisions.
//!
//! What it does:
//! - [`ingest`]: subscribes to every drone's uplink topics, validates with
//!   the wire contract, checks that each payload's drone id matches its
//!   topic, de-duplicates by id and stores in batches; what fails lands in
//!   quarantine with its reason; stored ids go back to the drones as
//!   receipts.
//! - [`store`]: SQLite (WAL) on disk: drones, alerts with snapshots,
//!   events, command results, down-sampled telemetry, quarantine.
//! - [`broker`]: an embedded MQTT broker (rumqttd), on by default, so one
//!   process is enough; `broker.embedded = false` points ingest at an
//!   external broker.
//! - [`http`]: the HTTP API and `/metrics`.
//!
//! What it does not (yet): the web UI, triage, cases and dispatch into
//! dispute systems (issue 7).

pub mod broker;
pub mod config;
pub mod http;
pub mod ingest;
pub mod store;

use std::sync::{Arc, Mutex};

pub use config::Config;

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
}

/// Run the ground station until the process ends.
pub async fn run(cfg: Config) -> Result<(), GroundStationError> {
    let store = store::Store::open(&cfg.store_path(), cfg.ingest.telemetry_interval_ms)?;
    tracing::info!(path = %cfg.store_path().display(), "store open");
    let store = Arc::new(Mutex::new(store));
    if cfg.broker.embedded {
        let listen = cfg.broker.listen;
        tokio::task::spawn_blocking(move || broker::start_embedded(listen))
            .await
            .expect("broker start panicked")?;
    }
    let stats = Arc::new(ingest::IngestStats::default());
    let (notices, _) = tokio::sync::broadcast::channel(4096);
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
    let app = http::router(http::AppState {
        store: store.clone(),
        stats: stats.clone(),
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    ingest::run(
        cfg.mqtt.clone(),
        format!("tiancha-gs-{}", cfg.instance),
        cfg.ingest.clone(),
        store,
        stats,
        notices,
    )
    .await;
    Ok(())
}
