//! The tokio driver of the [`Outbox`]: reads bodies from the store, POSTs
//! them with reqwest (signed, with the idempotency key), feeds the
//! outcomes back, and writes what the outbox decided to the store (and
//! the case timeline).
//!
//! Each attempt sends the entry's current revision (its own idempotency
//! key, header `X-Tiancha-Case-Revision`); the outcome is written for that
//! revision only, and if the entry moved on meanwhile (new evidence) the
//! newer revision is taken up again from the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tiancha_protocol::{unix_ms, CaseStatus};
use tokio::sync::{mpsc, Notify};
use tracing::{info, warn};
use uuid::Uuid;

use super::outbox::{Outbox, OutboxEvent, Response, RetryPolicy};
use super::sign::{self, IDEMPOTENCY_HEADER, REVISION_HEADER, SIGNATURE_HEADER};
use crate::store::cases::{add_timeline, advance_status};
use crate::store::outbox::{idempotency_key, mark_dead, mark_delivered, Claimed};
use crate::store::Store;

/// A route ready to use: URL and secret.
#[derive(Clone)]
pub struct Route {
    pub name: String,
    pub url: String,
    pub secret: Vec<u8>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct DispatchStats {
    pub attempts: AtomicU64,
    pub delivered: AtomicU64,
    pub retries: AtomicU64,
    pub dead: AtomicU64,
}

pub struct DriverConfig {
    pub routes: Vec<Route>,
    pub policy: RetryPolicy,
    pub request_timeout: Duration,
}

fn now_ms() -> i64 {
    unix_ms(std::time::SystemTime::now())
}

/// Run until the process ends. `wake` is notified when entries are added
/// to (or put back in) the store's outbox; `changed` hears case ids whose
/// delivery state moved.
pub async fn run(
    cfg: DriverConfig,
    store: Arc<Mutex<Store>>,
    wake: Arc<Notify>,
    stats: Arc<DispatchStats>,
    changed: impl Fn(Uuid) + Send + 'static,
) {
    let routes: HashMap<String, Route> = cfg
        .routes
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    let client = reqwest::Client::builder()
        .timeout(cfg.request_timeout)
        .connect_timeout(cfg.request_timeout.min(Duration::from_secs(5)))
        .user_agent(concat!(
            "tiancha-ground-station/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .expect("HTTP client");
    let pending = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.lock().unwrap().outbox_pending())
            .await
            .expect("store worker")
    };
    let pending = pending.unwrap_or_else(|e| {
        warn!(error = %e, "cannot read the outbox; starting empty");
        vec![]
    });
    if !pending.is_empty() {
        info!(n = pending.len(), "outbox: resuming undelivered cases");
    }
    let mut outbox = Outbox::restore(cfg.policy, pending);
    // The revision each in-flight attempt sends (one attempt per case at
    // a time).
    let mut sent_rev: HashMap<Uuid, i64> = HashMap::new();
    let (tx, mut rx) = mpsc::channel::<(Uuid, Response)>(1024);
    // With a shared store, entries enqueued by other instances (or left by
    // one that died) show up only in the store: look every poll_ms.
    let (shared, poll_ms) = {
        let s = store.lock().unwrap();
        (s.is_shared(), s.poll_ms())
    };
    let mut refresh = tokio::time::interval(Duration::from_millis(poll_ms.max(50)));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = now_ms();
        while let Some(t) = outbox.poll_transmit(now) {
            stats.attempts.fetch_add(1, Ordering::Relaxed);
            // Claim the entry (a lease in the store) so that of several
            // instances sharing the store only one sends it.
            let s = store.clone();
            let body = tokio::task::spawn_blocking(move || {
                let mut st = s.lock().unwrap();
                let (owner, lease) = (st.owner().to_string(), st.lease_ms());
                st.outbox_claim(t.case_id, &owner, now_ms(), lease)
            })
            .await
            .expect("store worker");
            let Claimed {
                content_type: ct,
                body,
                revision,
            } = match body {
                Ok(Some(b)) => b,
                Ok(None) => {
                    // Delivered, dead, or being sent by another instance.
                    outbox.forget(t.case_id);
                    continue;
                }
                Err(e) => {
                    let _ = tx
                        .send((
                            t.case_id,
                            Response::Network(format!("cannot read the body from the store: {e}")),
                        ))
                        .await;
                    continue;
                }
            };
            sent_rev.insert(t.case_id, revision);
            let Some(route) = routes.get(&t.route).cloned() else {
                // The route left the config: answer as a permanent failure.
                let _ = tx.send((t.case_id, Response::Status(404))).await;
                continue;
            };
            let client = client.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let sig = sign::sign(&route.secret, now_ms() / 1000, &body);
                let r = client
                    .post(&route.url)
                    .header("content-type", ct)
                    .header(IDEMPOTENCY_HEADER, idempotency_key(t.case_id, revision))
                    .header(REVISION_HEADER, revision.to_string())
                    .header(SIGNATURE_HEADER, sig)
                    .header("x-tiancha-route", &route.name)
                    .header("x-tiancha-attempt", t.attempt.to_string())
                    .body(body)
                    .send()
                    .await;
                let resp = match r {
                    Ok(r) => Response::Status(r.status().as_u16()),
                    Err(e) if e.is_timeout() => Response::Timeout,
                    Err(e) => Response::Network(e.to_string()),
                };
                let _ = tx.send((t.case_id, resp)).await;
            });
        }
        let mut events = vec![];
        while let Some(e) = outbox.poll_event() {
            let (OutboxEvent::Delivered { case_id, .. }
            | OutboxEvent::DeadLettered { case_id, .. }
            | OutboxEvent::Retrying { case_id, .. }) = &e;
            let revision = sent_rev.remove(case_id).unwrap_or(0);
            events.push((e, revision));
        }
        if !events.is_empty() {
            let s = store.clone();
            let st = stats.clone();
            let (ids, superseded) = tokio::task::spawn_blocking(move || {
                let mut s = s.lock().unwrap();
                let r = persist(&mut s, events, &st);
                // A revision newer than the one that was answered is
                // pending: put it back in the queue.
                let pending = if r.1 { s.outbox_pending().ok() } else { None };
                (r.0, pending)
            })
            .await
            .expect("store worker");
            for p in superseded.into_iter().flatten() {
                outbox.add(p);
            }
            for id in ids {
                changed(id);
            }
        }
        let sleep = outbox
            .poll_timeout()
            .map(|t| Duration::from_millis((t - now_ms()).clamp(0, 3_600_000) as u64))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            r = rx.recv() => {
                if let Some((id, resp)) = r {
                    outbox.handle_response(id, resp, now_ms());
                    while let Ok((id, resp)) = rx.try_recv() {
                        outbox.handle_response(id, resp, now_ms());
                    }
                }
            }
            _ = refresh.tick(), if shared => {
                let s = store.clone();
                match tokio::task::spawn_blocking(move || s.lock().unwrap().outbox_pending()).await {
                    Ok(Ok(p)) => {
                        for e in p {
                            outbox.add(e);
                        }
                    }
                    Ok(Err(e)) => warn!(error = %e, "cannot read the outbox"),
                    Err(_) => {}
                }
            }
            _ = wake.notified() => {
                let s = store.clone();
                if let Ok(Ok(p)) = tokio::task::spawn_blocking(move || s.lock().unwrap().outbox_pending()).await {
                    for e in p {
                        outbox.add(e);
                    }
                }
            }
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Write outcomes (each with the revision its attempt sent). Returns the
/// cases whose delivery state moved, and whether an outcome was about a
/// revision since superseded (the newer one is pending in the store).
fn persist(
    store: &mut Store,
    events: Vec<(OutboxEvent, i64)>,
    stats: &DispatchStats,
) -> (Vec<Uuid>, bool) {
    let now = now_ms();
    let mut ids = vec![];
    let mut superseded = false;
    for (e, revision) in events {
        let r = match &e {
            OutboxEvent::Delivered {
                case_id,
                route,
                attempts,
                status,
            } => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                info!(%case_id, route, attempts, status, revision, "case delivered");
                ids.push(*case_id);
                store.with_tx(|tx| {
                    if !mark_delivered(tx, *case_id, revision, *attempts, now)? {
                        superseded = true;
                    }
                    if revision > 0 {
                        add_timeline(
                            tx,
                            *case_id,
                            now,
                            "dispatch",
                            None,
                            "ground station",
                            &format!("update (revision {revision}, new evidence) delivered to {route} (HTTP {status}, attempt {attempts})"),
                            Some(&format!("dispatched:{case_id}:rev{revision}")),
                        )?;
                    }
                    add_timeline(
                        tx,
                        *case_id,
                        now,
                        "status",
                        Some(CaseStatus::Dispatched),
                        "ground station",
                        &format!("delivered to {route} (HTTP {status}, attempt {attempts})"),
                        Some(&format!("dispatched:{case_id}")),
                    )?;
                    advance_status(tx, *case_id, CaseStatus::Dispatched, now)?;
                    Ok(())
                })
            }
            OutboxEvent::Retrying {
                case_id,
                attempts,
                next_attempt_unix_ms,
                failing_since_unix_ms,
                error,
            } => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                warn!(%case_id, attempts, error, "case delivery failed; will retry");
                store.outbox_retrying(
                    *case_id,
                    *attempts,
                    *next_attempt_unix_ms,
                    *failing_since_unix_ms,
                    error,
                )
            }
            OutboxEvent::DeadLettered {
                case_id,
                attempts,
                error,
            } => {
                stats.dead.fetch_add(1, Ordering::Relaxed);
                warn!(%case_id, attempts, error, "case delivery dead-lettered");
                ids.push(*case_id);
                store.with_tx(|tx| {
                    if !mark_dead(tx, *case_id, revision, *attempts, error)? {
                        superseded = true;
                        return Ok(());
                    }
                    add_timeline(tx, *case_id, now, "dispatch", None, "ground station",
                        &format!("delivery (revision {revision}) failed after {attempts} attempt(s): {error}; waiting in dead letters"), None)?;
                    Ok(())
                })
            }
        };
        if let Err(err) = r {
            warn!(error = %err, "cannot record a delivery outcome");
        }
    }
    (ids, superseded)
}
