//! The dispatch outbox's durable half: one row per case, with the exact
//! body to send (frozen when the case is dispatched, so every retry and
//! every resend after a crash carries the same bytes under the same
//! idempotency key).

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::dispatch::outbox::Pending;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxRow {
    pub case_id: Uuid,
    pub route: String,
    pub state: String,
    pub attempts: u32,
    pub next_attempt_unix_ms: i64,
    pub last_error: String,
    pub created_unix_ms: i64,
    pub delivered_unix_ms: Option<i64>,
}

/// Queue a case for delivery (in the transaction that dispatches it).
pub fn enqueue(
    tx: &Transaction<'_>,
    case_id: Uuid,
    route: &str,
    content_type: &str,
    body: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO outbox (case_id, route, state, content_type, body, attempts, next_attempt_unix_ms, created_unix_ms)
         VALUES (?1, ?2, 'pending', ?3, ?4, 0, ?5, ?5)",
    )?
    .execute(params![case_id.to_string(), route, content_type, body, now])?;
    Ok(())
}

impl Store {
    /// Pending entries, for [`crate::dispatch::outbox::Outbox::restore`].
    pub fn outbox_pending(&self) -> Result<Vec<Pending>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT case_id, route, attempts, next_attempt_unix_ms, failing_since_unix_ms
             FROM outbox WHERE state = 'pending'",
        )?;
        let rows = st.query_map([], |r| {
            Ok(Pending {
                case_id: r
                    .get::<_, String>(0)?
                    .parse()
                    .unwrap_or_else(|_| Uuid::nil()),
                route: r.get(1)?,
                attempts: r.get(2)?,
                next_attempt_unix_ms: r.get(3)?,
                failing_since_unix_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// (content type, body) of an entry.
    pub fn outbox_body(&self, case_id: Uuid) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT content_type, body FROM outbox WHERE case_id = ?1")?
            .query_row([case_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Entries by state (`pending`, `delivered`, `dead`), newest first.
    pub fn outbox_rows(
        &self,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT case_id, route, state, attempts, next_attempt_unix_ms, last_error, created_unix_ms, delivered_unix_ms
             FROM outbox WHERE (?1 IS NULL OR state = ?1) ORDER BY created_unix_ms DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![state, limit.clamp(1, 10_000)], |r| {
            Ok(OutboxRow {
                case_id: r
                    .get::<_, String>(0)?
                    .parse()
                    .unwrap_or_else(|_| Uuid::nil()),
                route: r.get(1)?,
                state: r.get(2)?,
                attempts: r.get(3)?,
                next_attempt_unix_ms: r.get(4)?,
                last_error: r.get(5)?,
                created_unix_ms: r.get(6)?,
                delivered_unix_ms: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn outbox_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT state, count(*) FROM outbox GROUP BY state")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Record a failed attempt that will be retried.
    pub fn outbox_retrying(
        &mut self,
        case_id: Uuid,
        attempts: u32,
        next: i64,
        failing_since: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE outbox SET attempts = ?2, next_attempt_unix_ms = ?3, failing_since_unix_ms = ?4, last_error = ?5
                 WHERE case_id = ?1 AND state = 'pending'",
            )?
            .execute(params![case_id.to_string(), attempts, next, failing_since, error])?;
        Ok(())
    }

    /// Put a dead letter back in the queue. Returns its route.
    pub fn outbox_requeue(&mut self, case_id: Uuid, now: i64) -> Result<String, StoreError> {
        let route: Option<(String, String)> = self
            .conn
            .prepare_cached("SELECT route, state FROM outbox WHERE case_id = ?1")?
            .query_row([case_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match route {
            None => Err(StoreError::NotFound(format!(
                "case {case_id} has no delivery"
            ))),
            Some((_, s)) if s != "dead" => Err(StoreError::Conflict(format!(
                "the delivery of case {case_id} is {s}, not dead: nothing to retry"
            ))),
            Some((route, _)) => {
                self.conn
                    .prepare_cached(
                        "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_unix_ms = ?2,
                            failing_since_unix_ms = NULL WHERE case_id = ?1",
                    )?
                    .execute(params![case_id.to_string(), now])?;
                Ok(route)
            }
        }
    }
}

pub fn mark_delivered(
    tx: &Transaction<'_>,
    case_id: Uuid,
    attempts: u32,
    now: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE outbox SET state = 'delivered', attempts = ?2, delivered_unix_ms = ?3, last_error = '' WHERE case_id = ?1",
    )?
    .execute(params![case_id.to_string(), attempts, now])?;
    Ok(())
}

pub fn mark_dead(
    tx: &Transaction<'_>,
    case_id: Uuid,
    attempts: u32,
    error: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE outbox SET state = 'dead', attempts = ?2, last_error = ?3 WHERE case_id = ?1",
    )?
    .execute(params![case_id.to_string(), attempts, error])?;
    Ok(())
}
