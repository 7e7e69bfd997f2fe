//! The ground station's HTTP API (axum).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use crate::ingest::IngestStats;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Mutex<Store>>,
    pub stats: Arc<IngestStats>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/alerts", get(list_alerts))
        .route("/api/alerts/{id}", get(get_alert))
        .route("/api/alerts/{id}/snapshot.jpg", get(get_snapshot))
        .route("/api/quarantine", get(list_quarantine))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// An API error: status plus a message that says what is wrong.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store error in HTTP handler");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, "store error".into())
    }
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{id}` is not a UUID")))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn health(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let alerts = blocking(&s, |st| st.alert_count()).await?;
    Ok(Json(serde_json::json!({
        "status": "ok",
        "alerts": alerts,
        "mqtt_connects": s.stats.connects.load(Ordering::Relaxed),
    })))
}

async fn list_alerts(
    State(s): State<AppState>,
    Query(q): Query<Limit>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = q.limit.unwrap_or(100).min(10_000);
    Ok(Json(blocking(&s, move |st| st.recent_alerts(limit)).await?))
}

async fn get_alert(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id)?;
    let mut alert = blocking(&s, move |st| st.alert(id))
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no alert {id}")))?;
    // The JPEG is served on its own URL, not inlined as base64.
    let has_snapshot = alert.snapshot.take().is_some();
    let mut v = serde_json::to_value(&alert).expect("serialisable");
    if has_snapshot {
        v["snapshot_url"] = format!("/api/alerts/{id}/snapshot.jpg").into();
    }
    Ok(Json(v))
}

async fn get_snapshot(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let (_, _, jpeg) = blocking(&s, move |st| st.snapshot(id))
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no snapshot for {id}")))?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response())
}

async fn list_quarantine(
    State(s): State<AppState>,
    Query(q): Query<Limit>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = q.limit.unwrap_or(100).min(10_000);
    Ok(Json(blocking(&s, move |st| st.quarantine(limit)).await?))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let st = &s.stats;
    let mut out = String::new();
    for (name, help, v) in [
        (
            "tiancha_ingest_received_total",
            "MQTT messages received",
            &st.received,
        ),
        (
            "tiancha_ingest_alerts_new_total",
            "New alerts stored",
            &st.alerts_new,
        ),
        (
            "tiancha_ingest_duplicates_total",
            "Messages already stored (de-duplicated by id)",
            &st.duplicates,
        ),
        (
            "tiancha_ingest_quarantined_total",
            "Payloads quarantined",
            &st.quarantined,
        ),
        (
            "tiancha_ingest_telemetry_kept_total",
            "Telemetry samples stored",
            &st.telemetry_kept,
        ),
        (
            "tiancha_ingest_telemetry_dropped_total",
            "Telemetry samples down-sampled away",
            &st.telemetry_dropped,
        ),
        (
            "tiancha_ingest_batches_total",
            "Store transactions",
            &st.batches,
        ),
        (
            "tiancha_ingest_receipts_sent_total",
            "Receipts sent to drones",
            &st.receipts_sent,
        ),
        (
            "tiancha_ingest_connects_total",
            "Connections to the broker",
            &st.connects,
        ),
        (
            "tiancha_ingest_store_errors_total",
            "Failed store transactions",
            &st.store_errors,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

async fn blocking<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || f(&store.lock().unwrap()))
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "worker failed".into()))?
        .map_err(ApiError::from)
}
