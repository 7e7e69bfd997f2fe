//! The HTTP side: the JSON API, the embedded web UI, the live feed
//! (WebSocket), signed dispute-system callbacks, signed evidence links,
//! MBTiles tiles, the OpenAPI document and Prometheus `/metrics`.
//!
//! Authentication: a session cookie (`tiancha_session`, HttpOnly,
//! SameSite=Strict, Secure unless configured off) from `POST /api/login`,
//! or `Authorization: Bearer <API token>` for machine clients. Requests
//! that change something with a cookie must carry the session's CSRF token
//! in `X-CSRF-Token` (tokens are exempt: no ambient credential), and a
//! cross-site `Origin` is refused. Roles decide the rest (see
//! [`crate::auth::Role`]).

pub mod api;
pub mod live;
pub mod openapi;
pub mod ui;
pub mod video;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{broadcast, Notify};

use crate::auth::{LoginLimiter, Role};
use crate::config::Config;
use crate::desk::{Desk, DeskError};
use crate::dispatch::driver::DispatchStats;
use crate::ingest::IngestStats;
use crate::store::auth::Principal;
use crate::store::{Store, StoreError};

pub const SESSION_COOKIE: &str = "tiancha_session";

/// Counters of the live feed.
#[derive(Debug, Default)]
pub struct LiveStats {
    pub clients: std::sync::atomic::AtomicU64,
    pub sent: std::sync::atomic::AtomicU64,
    pub lagged: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Mutex<Store>>,
    pub stats: Arc<IngestStats>,
    pub dispatch_stats: Arc<DispatchStats>,
    pub live_stats: Arc<LiveStats>,
    pub desk: Arc<Desk>,
    pub cfg: Arc<Config>,
    /// Pre-serialised live messages (JSON text), one send for all clients.
    pub live: broadcast::Sender<Arc<str>>,
    pub dispatch_wake: Arc<Notify>,
    pub limiter: Arc<Mutex<LoginLimiter>>,
    /// Publishes commands to drones (None in tests without MQTT).
    pub mqtt: Option<rumqttc::AsyncClient>,
    /// Signs every command (companions verify it end to end).
    pub command_signer: Arc<tiancha_protocol::command_auth::CommandSigner>,
    pub route_secrets: Arc<HashMap<String, Vec<u8>>>,
    /// The map layers as one GeoJSON FeatureCollection.
    pub layers: Arc<serde_json::Value>,
    /// Live video and alert clips.
    pub video: Arc<crate::video::VideoHub>,
}

pub fn router(state: AppState) -> Router {
    let callback_limit = state.cfg.dispatch.callback_max_bytes;
    Router::new()
        .route("/", get(ui::index))
        .route("/ui/{*path}", get(ui::asset))
        .route("/api/health", get(api::health))
        .route("/api/openapi.json", get(openapi::document_get))
        .route("/metrics", get(api::metrics))
        .route("/api/login", post(api::login))
        .route("/api/logout", post(api::logout))
        .route("/api/session", get(api::session))
        .route("/api/map", get(api::map))
        .route("/tiles/{z}/{x}/{y}", get(api::tile))
        .route("/api/drones", get(api::drones))
        .route("/api/drones/{id}/track", get(api::track))
        .route(
            "/api/drones/{id}/commands",
            post(api::command).get(api::commands_of),
        )
        .route("/api/commands", get(api::commands))
        .route("/api/missions/preview", post(api::mission_preview))
        .route("/api/alerts", get(api::alerts))
        .route("/api/alerts/{id}", get(api::alert))
        .route("/api/alerts/{id}/snapshot.jpg", get(api::snapshot))
        .route("/api/alerts/{id}/confirm", post(api::confirm))
        .route("/api/alerts/{id}/dismiss", post(api::dismiss))
        .route("/api/alerts/{id}/merge", post(api::merge))
        .route("/api/alerts/{id}/investigate", post(api::investigate))
        .route("/api/cases", get(api::cases))
        .route("/api/cases/{id}", get(api::case))
        .route("/api/cases/{id}/cap.xml", get(api::case_cap))
        .route("/api/cases/{id}/notes", post(api::case_note))
        .route("/api/dispatch/outbox", get(api::outbox))
        .route("/api/dispatch/outbox/{id}/retry", post(api::outbox_retry))
        .route(
            "/api/callbacks/{route}",
            post(api::callback).layer(DefaultBodyLimit::max(callback_limit)),
        )
        .route("/evidence/{case}/{file}", get(api::evidence))
        .route("/api/quarantine", get(api::quarantine))
        .route("/api/admin/users", get(api::users).post(api::put_user))
        .route("/api/admin/users/{name}/disable", post(api::disable_user))
        .route("/api/admin/tokens", post(api::create_token))
        .route("/api/admin/audit", get(api::audit_log))
        .route("/api/live", get(live::upgrade))
        .route("/api/video", get(video::list))
        .route("/api/drones/{id}/video.mjpeg", get(video::mjpeg))
        .route("/api/drones/{id}/video/webrtc", get(video::webrtc_ws))
        .route("/api/alerts/{id}/clip.mp4", get(video::clip_mp4))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, "nosniff".parse().unwrap());
    h.insert(header::X_FRAME_OPTIONS, "DENY".parse().unwrap());
    h.insert(header::REFERRER_POLICY, "no-referrer".parse().unwrap());
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, "no-store".parse().unwrap());
    }
    r
}

/// An API error: status plus a message that says what is wrong.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self(StatusCode::FORBIDDEN, msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            StoreError::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
            e => {
                tracing::error!(error = %e, "store error in HTTP handler");
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, "store error".into())
            }
        }
    }
}

impl From<DeskError> for ApiError {
    fn from(e: DeskError) -> Self {
        match e {
            DeskError::Store(s) => s.into(),
            DeskError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            DeskError::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
            DeskError::Invalid(m) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, m),
        }
    }
}

/// Run store work off the async threads.
pub async fn blocking<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&mut Store) -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || f(&mut store.lock().unwrap()).map_err(Into::into))
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "worker failed".into()))?
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The client's address, for rate limiting and the audit log.
pub fn client_addr(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default()
}

/// Refuse a cross-site `Origin` (CSRF / WebSocket hijacking defence).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // not a browser cross-origin request
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let o = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    !host.is_empty() && o == host
}

/// An authenticated caller. Extracting it enforces login, CSRF and origin.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub client: String,
    pub via_token: bool,
}

impl User {
    pub fn require_command(&self) -> Result<(), ApiError> {
        if self.role.may_command() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "role {} may not command drones or triage alerts (operator or admin only)",
                self.role.as_str()
            )))
        }
    }
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("admin only"))
        }
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let client = client_addr(parts);
        let now = tiancha_protocol::unix_ms(std::time::SystemTime::now());
        let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if let Some(tok) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            let h = crate::auth::token_hash(tok.trim());
            let p: Option<Principal> = blocking(s, move |st| st.api_token(&h, now)).await?;
            let p = p.ok_or_else(|| {
                ApiError(
                    StatusCode::UNAUTHORIZED,
                    "invalid or revoked API token".into(),
                )
            })?;
            return Ok(User {
                name: p.user,
                role: p.role,
                client,
                via_token: true,
            });
        }
        let Some(tok) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(ApiError(StatusCode::UNAUTHORIZED, "log in first".into()));
        };
        let h = crate::auth::token_hash(&tok);
        let p = blocking(s, move |st| st.session(&h, now)).await?;
        let p = p.ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "session expired; log in again".into(),
            )
        })?;
        if unsafe_method {
            if !same_origin(&parts.headers) {
                return Err(ApiError::forbidden(
                    "cross-site request refused (Origin does not match Host)",
                ));
            }
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !crate::auth::ct_eq(sent, p.csrf.as_deref().unwrap_or("-")) {
                return Err(ApiError::forbidden("missing or wrong X-CSRF-Token"));
            }
        }
        Ok(User {
            name: p.user,
            role: p.role,
            client,
            via_token: false,
        })
    }
}

/// Write an audit row (errors are logged, never fatal to the request).
pub async fn audit(s: &AppState, u: &User, action: &str, object: String, detail: String) {
    let (actor, client, action) = (u.name.clone(), u.client.clone(), action.to_string());
    let now = tiancha_protocol::unix_ms(std::time::SystemTime::now());
    if let Err(e) = blocking(s, move |st| {
        st.audit(now, &actor, &action, &object, &detail, &client)
    })
    .await
    {
        tracing::warn!(error = %e.1, "audit write failed");
    }
}
