//! The dispatch outbox's durable half: one row per case, with the exact
//! body to send (frozen when the case is dispatched, so every retry and
//! every resend after a crash carries the same bytes under the same
//! idempotency key).
//!
//! A case sent again with new evidence (an alert clip finished after the
//! case went out) is a new *revision* of its entry: the body is rebuilt,
//! `revision` goes up and the entry is pending again. Each revision has
//! its own idempotency key ([`idempotency_key`]): `{case_id}` for the
//! first, `{case_id}.rev{n}` after; retries of one revision repeat its
//! key and bytes. An attempt's outcome is written only if the entry is
//! still at the revision that attempt sent ([`mark_delivered`],
//! [`mark_dead`]), so a late answer about revision 0 never marks
//! revision 1 delivered.

use serde::Serialize;
use uuid::Uuid;

use super::db::params;
use super::{Store, StoreError, Tx};
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
    /// 0 for the case as first sent; n after n updates (new evidence).
    pub revision: i64,
}

/// The `Idempotency-Key` of a case's revision: the case id, then
/// `{case_id}.rev{n}` for each update.
pub fn idempotency_key(case_id: Uuid, revision: i64) -> String {
    if revision == 0 {
        case_id.to_string()
    } else {
        format!("{case_id}.rev{revision}")
    }
}

/// A claimed entry: what to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub content_type: String,
    pub body: Vec<u8>,
    pub revision: i64,
}

/// Replace a case's body with a new revision (its evidence changed).
/// A delivered entry is pending again (due now); a pending one keeps its
/// schedule and sends the new body at its next attempt; a dead letter
/// stays dead (a person's retry sends the newest revision). Returns the
/// new revision, or None if the case has no outbox entry (never sent:
/// no route).
pub fn revise(
    tx: &mut Tx<'_>,
    case_id: Uuid,
    content_type: &str,
    body: &[u8],
    now: i64,
) -> Result<Option<i64>, StoreError> {
    tx.query_opt(
        "UPDATE outbox SET content_type = ?2, body = ?3, revision = revision + 1,
            state = CASE WHEN state = 'delivered' THEN 'pending' ELSE state END,
            attempts = CASE WHEN state = 'delivered' THEN 0 ELSE attempts END,
            next_attempt_unix_ms = CASE WHEN state = 'delivered' THEN ?4 ELSE next_attempt_unix_ms END,
            failing_since_unix_ms = CASE WHEN state = 'delivered' THEN NULL ELSE failing_since_unix_ms END,
            delivered_unix_ms = CASE WHEN state = 'delivered' THEN NULL ELSE delivered_unix_ms END
         WHERE case_id = ?1 RETURNING revision",
        params![case_id, content_type, body, now],
    )?
    .map(|r| r.get(0))
    .transpose()
}

/// Queue a case for delivery (in the transaction that dispatches it).
pub fn enqueue(
    tx: &mut Tx<'_>,
    case_id: Uuid,
    route: &str,
    content_type: &str,
    body: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO outbox (case_id, route, state, content_type, body, attempts, next_attempt_unix_ms, created_unix_ms)
         VALUES (?1, ?2, 'pending', ?3, ?4, 0, ?5, ?5) ON CONFLICT DO NOTHING",
        params![case_id, route, content_type, body, now],
    )?;
    Ok(())
}

impl Store {
    /// Pending entries, for [`crate::dispatch::outbox::Outbox::restore`].
    pub fn outbox_pending(&self) -> Result<Vec<Pending>, StoreError> {
        self.db
            .query(
                "SELECT case_id, route, attempts, next_attempt_unix_ms, failing_since_unix_ms
             FROM outbox WHERE state = 'pending'",
                params![],
            )?
            .iter()
            .map(|r| {
                Ok(Pending {
                    case_id: r.get(0)?,
                    route: r.get(1)?,
                    attempts: r.get(2)?,
                    next_attempt_unix_ms: r.get(3)?,
                    failing_since_unix_ms: r.get(4)?,
                })
            })
            .collect()
    }

    /// The current revision of a case's entry (None: no entry).
    pub fn outbox_revision(&self, case_id: Uuid) -> Result<Option<i64>, StoreError> {
        self.db
            .query_opt(
                "SELECT revision FROM outbox WHERE case_id = ?1",
                params![case_id],
            )?
            .map(|r| r.get(0))
            .transpose()
    }

    /// (content type, body) of an entry.
    pub fn outbox_body(&self, case_id: Uuid) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        self.db
            .query_opt(
                "SELECT content_type, body FROM outbox WHERE case_id = ?1",
                params![case_id],
            )?
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .transpose()
    }

    /// Claim a pending entry for one attempt by `owner` (an instance name)
    /// until `now + lease_ms`, and return what to send. None
    /// when it is delivered, dead, or leased by another instance whose
    /// lease has not run out: that instance is sending it. One UPDATE, so
    /// two instances racing for an entry cannot both win.
    pub fn outbox_claim(
        &mut self,
        case_id: Uuid,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<Claimed>, StoreError> {
        self.db
            .query_opt(
                "UPDATE outbox SET lease_owner = ?2, lease_until_unix_ms = ?3
             WHERE case_id = ?1 AND state = 'pending'
               AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until_unix_ms < ?4)
             RETURNING content_type, body, revision",
                params![case_id, owner, now + lease_ms, now],
            )?
            .map(|r| {
                Ok(Claimed {
                    content_type: r.get(0)?,
                    body: r.get(1)?,
                    revision: r.get(2)?,
                })
            })
            .transpose()
    }

    /// Entries by state (`pending`, `delivered`, `dead`), newest first.
    pub fn outbox_rows(
        &self,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.db
            .query(
                "SELECT case_id, route, state, attempts, next_attempt_unix_ms, last_error, created_unix_ms, delivered_unix_ms, revision
             FROM outbox WHERE (CAST(?1 AS TEXT) IS NULL OR state = CAST(?1 AS TEXT))
             ORDER BY created_unix_ms DESC LIMIT ?2",
                params![state, limit.clamp(1, 10_000)],
            )?
            .iter()
            .map(|r| {
                Ok(OutboxRow {
                    case_id: r.get(0)?,
                    route: r.get(1)?,
                    state: r.get(2)?,
                    attempts: r.get(3)?,
                    next_attempt_unix_ms: r.get(4)?,
                    last_error: r.get(5)?,
                    created_unix_ms: r.get(6)?,
                    delivered_unix_ms: r.get(7)?,
                    revision: r.get(8)?,
                })
            })
            .collect()
    }

    pub fn outbox_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.db
            .query(
                "SELECT state, count(*) FROM outbox GROUP BY state",
                params![],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect()
    }

    /// Record a failed attempt that will be retried (and release the lease:
    /// whichever instance is due first sends the next attempt).
    pub fn outbox_retrying(
        &mut self,
        case_id: Uuid,
        attempts: u32,
        next: i64,
        failing_since: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.db.execute(
            "UPDATE outbox SET attempts = ?2, next_attempt_unix_ms = ?3, failing_since_unix_ms = ?4, last_error = ?5,
                lease_owner = NULL, lease_until_unix_ms = NULL
             WHERE case_id = ?1 AND state = 'pending'",
            params![case_id, attempts, next, failing_since, error],
        )?;
        Ok(())
    }

    /// Put a dead letter back in the queue. Returns its route.
    pub fn outbox_requeue(&mut self, case_id: Uuid, now: i64) -> Result<String, StoreError> {
        let route: Option<(String, String)> = self
            .db
            .query_opt(
                "SELECT route, state FROM outbox WHERE case_id = ?1",
                params![case_id],
            )?
            .map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?)))
            .transpose()?;
        match route {
            None => Err(StoreError::NotFound(format!(
                "case {case_id} has no delivery"
            ))),
            Some((_, s)) if s != "dead" => Err(StoreError::Conflict(format!(
                "the delivery of case {case_id} is {s}, not dead: nothing to retry"
            ))),
            Some((route, _)) => {
                self.db.execute(
                    "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_unix_ms = ?2,
                            failing_since_unix_ms = NULL, lease_owner = NULL, lease_until_unix_ms = NULL
                     WHERE case_id = ?1",
                    params![case_id, now],
                )?;
                Ok(route)
            }
        }
    }
}

/// Revision `revision` of the case was delivered. False (nothing
/// written) when the entry has moved on to a newer revision meanwhile:
/// that one is still to send.
pub fn mark_delivered(
    tx: &mut Tx<'_>,
    case_id: Uuid,
    revision: i64,
    attempts: u32,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE outbox SET state = 'delivered', attempts = ?2, delivered_unix_ms = ?3, last_error = '',
            lease_owner = NULL, lease_until_unix_ms = NULL WHERE case_id = ?1 AND revision = ?4",
        params![case_id, attempts, now, revision],
    )? > 0)
}

/// Revision `revision` failed for good. False (nothing written) when the
/// entry has moved on to a newer revision, which gets its own attempts.
pub fn mark_dead(
    tx: &mut Tx<'_>,
    case_id: Uuid,
    revision: i64,
    attempts: u32,
    error: &str,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE outbox SET state = 'dead', attempts = ?2, last_error = ?3,
            lease_owner = NULL, lease_until_unix_ms = NULL WHERE case_id = ?1 AND revision = ?4",
        params![case_id, attempts, error, revision],
    )? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(st: &mut Store, id: Uuid) {
        st.with_tx(|tx| enqueue(tx, id, "governance", "application/json", b"r0", 100))
            .unwrap();
    }

    fn row(st: &Store, id: Uuid) -> OutboxRow {
        st.outbox_rows(None, 100)
            .unwrap()
            .into_iter()
            .find(|r| r.case_id == id)
            .unwrap()
    }

    #[test]
    fn a_revision_is_sent_again_and_outcomes_only_count_for_their_revision() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = Store::open(&dir.path().join("store.db"), 1000).unwrap();
        assert_eq!(idempotency_key(Uuid::nil(), 0), Uuid::nil().to_string());
        assert_eq!(
            idempotency_key(Uuid::nil(), 2),
            format!("{}.rev2", Uuid::nil())
        );
        let revise_to = |st: &mut Store, id, body: &'static [u8], now| {
            st.with_tx(|tx| revise(tx, id, "application/json", body, now))
                .unwrap()
        };

        // Delivered, then new evidence: pending again at once, as rev 1.
        let a = Uuid::now_v7();
        entry(&mut st, a);
        assert!(st.with_tx(|tx| mark_delivered(tx, a, 0, 1, 200)).unwrap());
        assert_eq!(revise_to(&mut st, a, b"r1", 300), Some(1));
        let r = row(&st, a);
        assert_eq!(
            (
                r.state.as_str(),
                r.revision,
                r.attempts,
                r.next_attempt_unix_ms
            ),
            ("pending", 1, 0, 300)
        );
        let c = st.outbox_claim(a, "gs-1", 301, 1000).unwrap().unwrap();
        assert_eq!((c.revision, c.body.as_slice()), (1, &b"r1"[..]));

        // Revised while revision 1 was in flight: the answer about 1 does
        // not mark 2 delivered, nor dead.
        assert_eq!(revise_to(&mut st, a, b"r2", 302), Some(2));
        assert!(!st.with_tx(|tx| mark_delivered(tx, a, 1, 1, 303)).unwrap());
        assert!(!st.with_tx(|tx| mark_dead(tx, a, 1, 1, "HTTP 422")).unwrap());
        assert_eq!(row(&st, a).state, "pending");
        assert_eq!(st.outbox_pending().unwrap().len(), 1);
        assert!(st.with_tx(|tx| mark_delivered(tx, a, 2, 1, 304)).unwrap());
        assert!(st.outbox_pending().unwrap().is_empty());

        // A dead letter stays dead (a person retries it, with the new body).
        let b = Uuid::now_v7();
        entry(&mut st, b);
        assert!(st.with_tx(|tx| mark_dead(tx, b, 0, 3, "HTTP 400")).unwrap());
        assert_eq!(revise_to(&mut st, b, b"r1", 400), Some(1));
        assert_eq!(row(&st, b).state, "dead");
        st.outbox_requeue(b, 500).unwrap();
        let c = st.outbox_claim(b, "gs-1", 501, 1000).unwrap().unwrap();
        assert_eq!((c.revision, c.body.as_slice()), (1, &b"r1"[..]));

        // No entry (the case has no route): nothing to revise.
        assert_eq!(revise_to(&mut st, Uuid::now_v7(), b"x", 600), None);
    }
}
