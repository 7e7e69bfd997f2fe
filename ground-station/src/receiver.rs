//! A small dispute-system endpoint (`tiancha dispute-receiver`) for the
//! demo and the tests: what a governance-centre or hotline platform does
//! at its edge.
//!
//! - `POST /{route}/cases`: checks the HMAC signature with the route's
//!   secret, requires `Idempotency-Key` equal to the body's case id (or
//!   `{case_id}.rev{n}` for the n-th update of a case, e.g. a clip added
//!   as evidence after it was sent; `X-Tiancha-Case-Revision`, if given,
//!   must say the same n), records each revision once (SQLite on disk)
//!   and answers 201; a repeat of the same key answers 200 `duplicate`
//!   without recording again; the same key with a different body is
//!   refused (422).
//! - `POST /admin/callback` `{route, case_id, status, note, handler}`:
//!   sends a signed [`CaseStatusUpdate`] to the ground station.
//! - optional automatic callbacks after each new case, and scripted faults
//!   (answer 5xx, or hang past the client's timeout) for fault tests.
//! - `GET /cases` (one entry per case: its newest revision, and how many
//!   arrived), `GET /requests`: what arrived (for tests and the demo).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tiancha_protocol::{Case, CaseStatus, CaseStatusUpdate, SCHEMA_VERSION};
use uuid::Uuid;

use crate::dispatch::sign;

/// One phase of scripted misbehaviour, counted from the first case request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status (without recording the case).
    Status(u16, Duration),
    /// Record the case, then never answer (the client times out).
    Hang(Duration),
}

impl std::str::FromStr for Fault {
    type Err = String;
    /// `500:30s`, `503:2m`, `hang:10s`, `hang:1500ms`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, d) = s.split_once(':').ok_or_else(|| {
            format!("fault `{s}`: expected KIND:DURATION such as 500:30s or hang:10s")
        })?;
        let dur = parse_duration(d)
            .ok_or_else(|| format!("fault `{s}`: bad duration `{d}` (e.g. 30s, 2m, 1500ms)"))?;
        if k == "hang" {
            return Ok(Fault::Hang(dur));
        }
        match k.parse::<u16>() {
            Ok(c) if (400..600).contains(&c) => Ok(Fault::Status(c, dur)),
            _ => Err(format!(
                "fault `{s}`: kind must be hang or an HTTP status 400-599"
            )),
        }
    }
}

fn parse_duration(d: &str) -> Option<Duration> {
    let (n, unit) = d
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| d.split_at(i))?;
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return None,
    })
}

#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Route name → HMAC secret.
    pub secrets: HashMap<String, Vec<u8>>,
    /// Base of the ground station's callback URLs, e.g.
    /// `http://127.0.0.1:8080/api/callbacks/` (the route name is appended).
    pub callback_base: Option<String>,
    pub faults: Vec<Fault>,
    /// Statuses sent back automatically after each new case, in order.
    pub auto_callbacks: Vec<CaseStatus>,
    pub auto_callback_delay: Duration,
    pub tolerance_s: i64,
}

#[derive(Clone)]
struct St {
    cfg: Arc<ReceiverConfig>,
    db: Arc<Mutex<Connection>>,
    first_request: Arc<Mutex<Option<Instant>>>,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("receiver store {0}: {1}")]
    Db(PathBuf, rusqlite::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

fn now_ms() -> i64 {
    tiancha_protocol::unix_ms(std::time::SystemTime::now())
}

/// Serve until the process ends. Prints nothing; logs via tracing.
pub async fn run(cfg: ReceiverConfig) -> Result<(), ReceiverError> {
    let _ = std::fs::create_dir_all(&cfg.data_dir);
    let path = cfg.data_dir.join("receiver.db");
    let db = Connection::open(&path).map_err(|e| ReceiverError::Db(path.clone(), e))?;
    db.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS cases (idempotency_key TEXT PRIMARY KEY, route TEXT NOT NULL,
             body BLOB NOT NULL, sha256 TEXT NOT NULL, first_unix_ms INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY, t_unix_ms INTEGER NOT NULL,
             route TEXT NOT NULL, idempotency_key TEXT NOT NULL, outcome TEXT NOT NULL, attempt TEXT NOT NULL);",
    )
    .map_err(|e| ReceiverError::Db(path.clone(), e))?;
    let listen = cfg.listen;
    let st = St {
        cfg: Arc::new(cfg),
        db: Arc::new(Mutex::new(db)),
        first_request: Arc::new(Mutex::new(None)),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client"),
    };
    let app = Router::new()
        .route("/{route}/cases", post(receive))
        .route("/admin/callback", post(admin_callback))
        .route("/cases", get(list_cases))
        .route("/requests", get(list_requests))
        .with_state(st);
    let l = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ReceiverError::Listen(listen, e))?;
    tracing::info!(
        "dispute receiver on http://{}",
        l.local_addr().unwrap_or(listen)
    );
    axum::serve(l, app)
        .await
        .map_err(|e| ReceiverError::Listen(listen, e))
}

fn log_request(st: &St, route: &str, key: &str, outcome: &str, attempt: &str) {
    let _ = st.db.lock().unwrap().execute(
        "INSERT INTO requests (t_unix_ms, route, idempotency_key, outcome, attempt) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now_ms(), route, key, outcome, attempt],
    );
}

fn current_fault(st: &St) -> Option<Fault> {
    let start = *st
        .first_request
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    let mut t = start.elapsed();
    for f in &st.cfg.faults {
        let d = match f {
            Fault::Status(_, d) | Fault::Hang(d) => *d,
        };
        if t < d {
            return Some(f.clone());
        }
        t -= d;
    }
    None
}

async fn receive(
    State(st): State<St>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let key = headers
        .get(sign::IDEMPOTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let attempt = headers
        .get("x-tiancha-attempt")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let err = |st: &St, code: StatusCode, outcome: &str, msg: String| {
        log_request(st, &route, &key, outcome, &attempt);
        (code, Json(json!({"error": msg})))
    };
    let Some(secret) = st.cfg.secrets.get(&route) else {
        return err(
            &st,
            StatusCode::NOT_FOUND,
            "unknown_route",
            format!("no route `{route}` here"),
        );
    };
    let sig = headers
        .get(sign::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = sign::verify(secret, sig, &body, now_ms() / 1000, st.cfg.tolerance_s) {
        return err(
            &st,
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            e.to_string(),
        );
    }
    if key.is_empty() {
        return err(
            &st,
            StatusCode::BAD_REQUEST,
            "no_key",
            "Idempotency-Key is required".into(),
        );
    }
    let fault = current_fault(&st);
    if let Some(Fault::Status(code, _)) = fault {
        return err(
            &st,
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "fault_status",
            format!("scripted fault {code}"),
        );
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some((key_case, revision)) = parse_key(&key) else {
        return err(
            &st,
            StatusCode::BAD_REQUEST,
            "bad_key",
            format!(
                "Idempotency-Key `{}` is neither a case id nor `<case id>.rev<n>`",
                key.chars().take(80).collect::<String>()
            ),
        );
    };
    if let Some(h) = headers
        .get(sign::REVISION_HEADER)
        .map(|v| v.to_str().unwrap_or(""))
    {
        if h.parse::<u32>().ok() != Some(revision) {
            return err(
                &st,
                StatusCode::UNPROCESSABLE_ENTITY,
                "revision_mismatch",
                format!("X-Tiancha-Case-Revision `{h}` differs from the key's revision {revision}"),
            );
        }
    }
    let case_id = if ct.starts_with("application/json") {
        match tiancha_protocol::decode::<Case>(&body) {
            Ok(c) => Some(c.case_id.to_string()),
            Err(e) => {
                return err(
                    &st,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "bad_case",
                    e.to_string(),
                )
            }
        }
    } else {
        None // CAP XML: the key alone identifies the case
    };
    if let Some(id) = &case_id {
        if *id != key_case {
            return err(
                &st,
                StatusCode::UNPROCESSABLE_ENTITY,
                "key_mismatch",
                format!("Idempotency-Key {key} is not about case_id {id}"),
            );
        }
    }
    let sha = hex::encode(Sha256::digest(&body));
    let existing: Option<String> = st
        .db
        .lock()
        .unwrap()
        .query_row(
            "SELECT sha256 FROM cases WHERE idempotency_key = ?1",
            [&key],
            |r| r.get(0),
        )
        .optional()
        .unwrap_or(None);
    let (code, outcome) = match existing {
        Some(s) if s == sha => (StatusCode::OK, "duplicate"),
        Some(_) => {
            return err(
                &st,
                StatusCode::UNPROCESSABLE_ENTITY,
                "key_reused",
                "this Idempotency-Key was used with another body".into(),
            )
        }
        None => {
            // Automatic callbacks follow a case's first arrival, not its updates.
            let seen_before: bool = st
                .db
                .lock()
                .unwrap()
                .query_row(
                    "SELECT count(*) > 0 FROM cases WHERE idempotency_key = ?1 OR idempotency_key LIKE ?2",
                    params![key_case, format!("{key_case}.rev%")],
                    |r| r.get(0),
                )
                .unwrap_or(false);
            let r = st.db.lock().unwrap().execute(
                "INSERT INTO cases (idempotency_key, route, body, sha256, first_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key, route, body.as_ref(), sha, now_ms()],
            );
            if let Err(e) = r {
                return err(
                    &st,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_error",
                    e.to_string(),
                );
            }
            if let (Some(id), false, false) = (
                case_id.as_ref().and_then(|k| k.parse::<Uuid>().ok()),
                st.cfg.auto_callbacks.is_empty(),
                seen_before,
            ) {
                let st2 = st.clone();
                let route2 = route.clone();
                tokio::spawn(async move {
                    for s in st2.cfg.auto_callbacks.clone() {
                        tokio::time::sleep(st2.cfg.auto_callback_delay).await;
                        if let Err(e) = send_callback(&st2, &route2, id, s, "auto", "").await {
                            tracing::warn!(error = %e, "automatic callback failed");
                        }
                    }
                });
            }
            (StatusCode::CREATED, "created")
        }
    };
    if let Some(Fault::Hang(d)) = fault {
        log_request(
            &st,
            &route,
            &key,
            &format!("hang_after_{outcome}"),
            &attempt,
        );
        tokio::time::sleep(d + Duration::from_secs(3600)).await;
    }
    log_request(&st, &route, &key, outcome, &attempt);
    (code, Json(json!({"status": outcome, "case_id": key})))
}

/// `{case_id}` → (case id, 0); `{case_id}.rev{n}` → (case id, n ≥ 1).
fn parse_key(key: &str) -> Option<(String, u32)> {
    match key.split_once(".rev") {
        None => Some((key.to_string(), 0)),
        Some((c, digits)) => match digits.parse::<u32>() {
            // Canonical digits only (no sign, no leading zero).
            Ok(n) if n >= 1 && !c.is_empty() && n.to_string() == digits => Some((c.to_string(), n)),
            _ => None,
        },
    }
}

async fn send_callback(
    st: &St,
    route: &str,
    case_id: Uuid,
    status: CaseStatus,
    handler: &str,
    note: &str,
) -> Result<(u16, String), String> {
    let base = st
        .cfg
        .callback_base
        .as_ref()
        .ok_or("no --callback-url configured")?;
    let secret = st
        .cfg
        .secrets
        .get(route)
        .ok_or_else(|| format!("no route `{route}`"))?;
    let u = CaseStatusUpdate {
        schema: SCHEMA_VERSION,
        case_id,
        status,
        t_unix_ms: now_ms(),
        handler: handler.into(),
        note: note.into(),
    };
    let body = tiancha_protocol::encode(&u).map_err(|e| e.to_string())?;
    let r = st
        .http
        .post(format!("{base}{route}"))
        .header("content-type", "application/json")
        .header(
            sign::SIGNATURE_HEADER,
            sign::sign(secret, now_ms() / 1000, &body),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let code = r.status().as_u16();
    Ok((code, r.text().await.unwrap_or_default()))
}

#[derive(Deserialize)]
struct CallbackReq {
    route: String,
    case_id: Uuid,
    status: CaseStatus,
    #[serde(default)]
    note: String,
    #[serde(default)]
    handler: String,
}

async fn admin_callback(State(st): State<St>, Json(req): Json<CallbackReq>) -> impl IntoResponse {
    match send_callback(
        &st,
        &req.route,
        req.case_id,
        req.status,
        &req.handler,
        &req.note,
    )
    .await
    {
        Ok((code, body)) => (
            StatusCode::OK,
            Json(json!({"ground_station_status": code, "ground_station_body": body})),
        ),
        Err(e) => (StatusCode::BAD_GATEWAY, Json(json!({"error": e}))),
    }
}

async fn list_cases(State(st): State<St>) -> impl IntoResponse {
    let db = st.db.lock().unwrap();
    let mut s = db
        .prepare(
            "SELECT c.idempotency_key, c.route, c.first_unix_ms, c.body,
                (SELECT count(*) FROM requests r WHERE r.idempotency_key = c.idempotency_key)
             FROM cases c ORDER BY c.first_unix_ms",
        )
        .expect("query");
    // One entry per case: the newest revision's body, the first arrival's
    // time, the requests of all revisions.
    let mut order: Vec<String> = vec![];
    let mut by_case: HashMap<String, serde_json::Value> = HashMap::new();
    let rows = s
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .expect("query")
        .filter_map(Result::ok);
    for (key, route, first, body, requests) in rows {
        let (case, revision) = parse_key(&key).unwrap_or((key.clone(), 0));
        let body = serde_json::from_slice::<serde_json::Value>(&body)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into());
        match by_case.get_mut(&case) {
            None => {
                order.push(case.clone());
                by_case.insert(
                    case,
                    json!({
                        "idempotency_key": key,
                        "route": route,
                        "first_unix_ms": first,
                        "requests": requests,
                        "revision": revision,
                        "revisions": 1,
                        "case": body,
                    }),
                );
            }
            Some(e) => {
                e["requests"] = (e["requests"].as_i64().unwrap_or(0) + requests).into();
                e["revisions"] = (e["revisions"].as_i64().unwrap_or(0) + 1).into();
                if i64::from(revision) > e["revision"].as_i64().unwrap_or(0) {
                    e["idempotency_key"] = key.into();
                    e["revision"] = revision.into();
                    e["case"] = body;
                }
            }
        }
    }
    let rows: Vec<serde_json::Value> = order
        .into_iter()
        .filter_map(|c| by_case.remove(&c))
        .collect();
    Json(rows)
}

async fn list_requests(State(st): State<St>) -> impl IntoResponse {
    let db = st.db.lock().unwrap();
    let mut s = db
        .prepare(
            "SELECT t_unix_ms, route, idempotency_key, outcome, attempt FROM requests ORDER BY id",
        )
        .expect("query");
    let rows: Vec<serde_json::Value> = s
        .query_map([], |r| {
            Ok(json!({
                "t_unix_ms": r.get::<_, i64>(0)?,
                "route": r.get::<_, String>(1)?,
                "idempotency_key": r.get::<_, String>(2)?,
                "outcome": r.get::<_, String>(3)?,
                "attempt": r.get::<_, String>(4)?,
            }))
        })
        .expect("query")
        .filter_map(Result::ok)
        .collect();
    Json(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_a_case_and_its_revision() {
        let id = "019a0000-0000-7000-8000-000000000001";
        assert_eq!(parse_key(id), Some((id.to_string(), 0)));
        assert_eq!(parse_key(&format!("{id}.rev2")), Some((id.to_string(), 2)));
        for bad in ["x.rev0", "x.rev", "x.rev01", "x.rev+1", ".rev1", "x.rev1a"] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn faults_parse() {
        assert_eq!(
            "500:30s".parse::<Fault>().unwrap(),
            Fault::Status(500, Duration::from_secs(30))
        );
        assert_eq!(
            "hang:1500ms".parse::<Fault>().unwrap(),
            Fault::Hang(Duration::from_millis(1500))
        );
        assert_eq!(
            "503:5m".parse::<Fault>().unwrap(),
            Fault::Status(503, Duration::from_secs(300))
        );
        assert!("200:1s".parse::<Fault>().is_err());
        assert!("hang".parse::<Fault>().is_err());
        assert!("hang:1h".parse::<Fault>().is_err());
    }
}
