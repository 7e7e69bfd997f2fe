//! The live feed: one WebSocket per browser, fed from ingest's notices and
//! the desk's changes. Each message is serialised once and shared by all
//! clients (`Arc<str>` on a broadcast channel). A client that falls
//! behind is told to resynchronise (`{"type":"resync"}`: it reloads its
//! lists over HTTP) instead of silently missing messages.
//!
//! Messages: `{"type": T, "data": ...}` with T one of `hello`, `alert`
//! (summary of a new alert), `telemetry`, `status`, `event`,
//! `command`, `command_result`, `case` (a case row changed), `triage` (an
//! alert's triage changed), `resync`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast;

use super::{blocking, same_origin, ApiError, AppState, User};
use crate::desk::Changed;
use crate::ingest::Notice;

pub fn msg<T: Serialize + ?Sized>(kind: &str, data: &T) -> Arc<str> {
    serde_json::to_string(&json!({"type": kind, "data": data}))
        .expect("serialisable")
        .into()
}

/// The alert as the feed shows it (no snapshot bytes, a link instead).
pub fn alert_summary(
    a: &tiancha_protocol::Alert,
    grid: &crate::grid::GridIndex,
) -> serde_json::Value {
    let cell = a
        .location
        .as_ref()
        .and_then(|g| grid.lookup(g.lat_deg, g.lon_deg));
    json!({
        "alert_id": a.alert_id,
        "drone_id": a.drone_id,
        "category": a.category,
        "confidence": a.confidence,
        "person_count": a.person_count,
        "t_first_unix_ms": a.t_first_unix_ms,
        "t_unix_ms": a.t_unix_ms,
        "location": a.location,
        "observer": a.observer,
        "zone": a.zone,
        "rule": a.rule,
        "grid": cell,
        "triage": "new",
        "snapshot_url": a.snapshot.as_ref().map(|_| format!("/api/alerts/{}/snapshot.jpg", a.alert_id)),
    })
}

/// Forward ingest's notices to the live feed until the process ends.
///
/// With a shared store (PostgreSQL, several instances) this instance's
/// ingest sees only its share of the alerts, so new alerts are announced
/// by [`follow_store`] from the store instead (every instance's, once,
/// in the order they were stored); the other notices still come from here.
pub async fn forward(mut notices: broadcast::Receiver<Notice>, s: AppState) {
    let shared = s.store.lock().unwrap().is_shared();
    if shared {
        tokio::spawn(follow_store(s.clone()));
    }
    loop {
        let n = match notices.recv().await {
            Ok(n) => n,
            Err(broadcast::error::RecvError::Lagged(k)) => {
                tracing::warn!(missed = k, "live forwarder lagged behind ingest");
                let _ = s.live.send(msg("resync", &json!({"missed": k})));
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let m = match &n {
            Notice::NewAlert(_) if shared => continue,
            Notice::NewAlert(a) => msg("alert", &alert_summary(a, &s.desk.grid)),
            Notice::Telemetry(t) => msg("telemetry", t),
            Notice::Status(st) => msg("status", st),
            Notice::Event(e) => msg("event", e),
            Notice::CommandResult(c) => msg("command_result", c),
            Notice::Quarantined { topic, reason } => {
                msg("quarantined", &json!({"topic": topic, "reason": reason}))
            }
        };
        let _ = s.live.send(m);
    }
}

/// Announce alerts as they appear in a shared store, whichever instance
/// stored them: poll by the alerts' `seq` (committed in order, see
/// [`crate::store::LOCK_INGEST`]) every `[store] poll_ms`.
pub async fn follow_store(s: AppState) {
    let poll_ms = s.store.lock().unwrap().poll_ms();
    let mut cursor = match blocking(&s, |st| st.last_alert_seq()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e.1, "live feed cannot read the store; alerts from other instances will not be announced");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(poll_ms.max(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            let from = cursor;
            let r = blocking(&s, move |st| {
                let batch = st.alerts_after(from, 500)?;
                let mut out = Vec::with_capacity(batch.len());
                for (seq, a) in batch {
                    let snap = st.snapshot_sha256(a.alert_id)?.is_some();
                    out.push((seq, a, snap));
                }
                Ok::<_, crate::store::StoreError>(out)
            })
            .await;
            let batch = match r {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e.1, "live feed: cannot read new alerts; will retry");
                    break;
                }
            };
            let n = batch.len();
            for (seq, a, snap) in batch {
                cursor = seq;
                let mut v = alert_summary(&a, &s.desk.grid);
                if snap {
                    v["snapshot_url"] = format!("/api/alerts/{}/snapshot.jpg", a.alert_id).into();
                }
                let _ = s.live.send(msg("alert", &v));
            }
            if n < 500 {
                break;
            }
        }
    }
}

/// Tell live clients what a desk operation changed.
pub fn announce(s: &AppState, ch: &Changed) {
    if ch.cases.is_empty() && ch.alerts.is_empty() {
        return;
    }
    let s = s.clone();
    let ch = ch.clone();
    tokio::spawn(async move {
        let ids = ch.cases.clone();
        let alerts = ch.alerts.clone();
        let r = blocking(&s, move |st| {
            let mut cases = vec![];
            for id in ids {
                if let Some(c) = st.case(id)? {
                    cases.push(c);
                }
            }
            let mut tri = vec![];
            for a in alerts {
                if let Some((state, case_id)) = st.triage_of(a)? {
                    tri.push(json!({"alert_id": a, "triage": state, "case_id": case_id}));
                }
            }
            Ok::<_, crate::store::StoreError>((cases, tri))
        })
        .await;
        if let Ok((cases, tri)) = r {
            for c in cases {
                let _ = s.live.send(msg("case", &c));
            }
            for t in tri {
                let _ = s.live.send(msg("triage", &t));
            }
        }
    });
}

pub async fn upgrade(
    State(s): State<AppState>,
    u: User,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if !same_origin(&headers) {
        return Err(ApiError::forbidden("cross-site WebSocket refused"));
    }
    let rx = s.live.subscribe();
    Ok(ws.on_upgrade(move |socket| client(socket, rx, s, u)))
}

async fn client(
    mut socket: WebSocket,
    mut rx: broadcast::Receiver<Arc<str>>,
    s: AppState,
    u: User,
) {
    s.live_stats.clients.fetch_add(1, Ordering::Relaxed);
    let hello = msg("hello", &json!({"user": u.name, "role": u.role}));
    let mut ok = socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_ok();
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    while ok {
        tokio::select! {
            m = rx.recv() => {
                let text = match m {
                    Ok(t) => t,
                    Err(broadcast::error::RecvError::Lagged(k)) => {
                        s.live_stats.lagged.fetch_add(1, Ordering::Relaxed);
                        msg("resync", &json!({"missed": k}))
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                ok = socket.send(Message::Text(text.to_string().into())).await.is_ok();
                s.live_stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            r = socket.recv() => match r {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
            _ = ping.tick() => {
                ok = socket.send(Message::Ping(Vec::new().into())).await.is_ok();
            }
        }
    }
    s.live_stats.clients.fetch_sub(1, Ordering::Relaxed);
}
