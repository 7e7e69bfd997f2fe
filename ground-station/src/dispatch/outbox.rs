//! The case outbox as a sans-IO state machine (quinn-proto style).
//!
//! It owns no socket and reads no clock: the driver feeds it entries
//! ([`Outbox::insert`]), the time and the outcome of each HTTP attempt
//! ([`Outbox::handle_response`]); it says what to send now
//! ([`Outbox::poll_transmit`]), when to wake up ([`Outbox::poll_timeout`])
//! and what happened ([`Outbox::poll_event`], which the driver writes to
//! the store). Times are Unix milliseconds so that a pending entry's next
//! attempt survives a restart: after a crash the driver rebuilds the outbox
//! from the store with [`Outbox::restore`] and every undelivered case is
//! sent again under the same idempotency key (its case id).
//!
//! Outcomes: a 2xx delivers; 408, 425, 429, 5xx, timeouts and connection
//! errors retry with exponential back-off (deterministic ±20 % jitter per
//! case, capped); other 4xx are permanent (the request itself is wrong, a
//! retry cannot help) and dead-letter at once, as does an entry that has
//! kept failing for `give_up_after_ms`. A dead letter waits for a person
//! ([`Outbox::retry`]).

use std::collections::{BTreeMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Back-off and limits. Real deployments use the defaults (seconds to
/// minutes); tests shrink them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// First retry after this long.
    pub initial_backoff_ms: i64,
    /// Back-off doubles up to this.
    pub max_backoff_ms: i64,
    /// Dead-letter an entry that has failed for this long (0: never).
    pub give_up_after_ms: i64,
    /// At most this many requests in flight at once.
    pub max_in_flight: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 2_000,
            max_backoff_ms: 60_000,
            give_up_after_ms: 7 * 24 * 3_600_000,
            max_in_flight: 8,
        }
    }
}

impl RetryPolicy {
    pub fn check(&self) -> Result<(), String> {
        if self.initial_backoff_ms < 1 || self.max_backoff_ms < self.initial_backoff_ms {
            return Err("dispatch.retry: need 1 <= initial_backoff_ms <= max_backoff_ms".into());
        }
        if self.give_up_after_ms < 0 {
            return Err("dispatch.retry.give_up_after_ms must not be negative".into());
        }
        if !(1..=1000).contains(&self.max_in_flight) {
            return Err("dispatch.retry.max_in_flight must be 1..=1000".into());
        }
        Ok(())
    }

    /// Delay before attempt `attempts + 1`, given `attempts` failures.
    pub fn backoff_ms(&self, id: Uuid, attempts: u32) -> i64 {
        let exp = attempts.saturating_sub(1).min(30);
        let base = (self.initial_backoff_ms as i128) << exp;
        let base = base.min(self.max_backoff_ms as i128) as i64;
        // ±20 % jitter, deterministic per (case, attempt), so many cases
        // failing together do not retry in lock-step.
        let b = id.as_bytes();
        let h = (b[15] as u32)
            .wrapping_mul(2654435761)
            .wrapping_add(attempts.wrapping_mul(40503))
            % 401;
        let jitter = base * (h as i64 - 200) / 1000;
        (base + jitter).max(1)
    }
}

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    Pending,
    Delivered,
    Dead,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Pending => "pending",
            EntryState::Delivered => "delivered",
            EntryState::Dead => "dead",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// A pending entry as persisted (what [`Outbox::restore`] takes).
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub case_id: Uuid,
    pub route: String,
    pub attempts: u32,
    pub next_attempt_unix_ms: i64,
    /// When the first attempt failed (for `give_up_after_ms`).
    pub failing_since_unix_ms: Option<i64>,
}

/// Send this now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub case_id: Uuid,
    pub route: String,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// How an attempt ended, as the driver saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Status(u16),
    Timeout,
    /// Connection refused / reset / DNS / TLS: nothing usable came back.
    Network(String),
}

impl Response {
    fn describe(&self) -> String {
        match self {
            Response::Status(s) => format!("HTTP {s}"),
            Response::Timeout => "timed out".into(),
            Response::Network(e) => format!("network error: {e}"),
        }
    }
}

/// What happened, for the store and the logs.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxEvent {
    Delivered {
        case_id: Uuid,
        route: String,
        attempts: u32,
        status: u16,
    },
    Retrying {
        case_id: Uuid,
        attempts: u32,
        next_attempt_unix_ms: i64,
        failing_since_unix_ms: i64,
        error: String,
    },
    DeadLettered {
        case_id: Uuid,
        attempts: u32,
        error: String,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    route: String,
    attempts: u32,
    next_at: i64,
    failing_since: Option<i64>,
}

/// The state machine. See the module doc.
#[derive(Debug)]
pub struct Outbox {
    policy: RetryPolicy,
    entries: BTreeMap<Uuid, Entry>,
    in_flight: HashSet<Uuid>,
    events: VecDeque<OutboxEvent>,
}

impl Outbox {
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            entries: BTreeMap::new(),
            in_flight: HashSet::new(),
            events: VecDeque::new(),
        }
    }

    /// Rebuild from the store's pending entries (after a restart nothing
    /// is in flight: what was is sent again, same idempotency key).
    pub fn restore(policy: RetryPolicy, pending: impl IntoIterator<Item = Pending>) -> Self {
        let mut o = Self::new(policy);
        for p in pending {
            o.add(p);
        }
        o
    }

    /// A new case to deliver, due at once. Inserting a case already
    /// pending changes nothing (idempotent).
    pub fn insert(&mut self, case_id: Uuid, route: String, now_unix_ms: i64) {
        self.add(Pending {
            case_id,
            route,
            attempts: 0,
            next_attempt_unix_ms: now_unix_ms,
            failing_since_unix_ms: None,
        });
    }

    /// A persisted pending entry (the store had it); ignored if known.
    pub fn add(&mut self, p: Pending) {
        self.entries.entry(p.case_id).or_insert(Entry {
            route: p.route,
            attempts: p.attempts,
            next_at: p.next_attempt_unix_ms,
            failing_since: p.failing_since_unix_ms,
        });
    }

    /// Put a dead letter back (an operator pressed "retry").
    pub fn retry(&mut self, case_id: Uuid, route: String, now_unix_ms: i64) {
        self.entries.insert(
            case_id,
            Entry {
                route,
                attempts: 0,
                next_at: now_unix_ms,
                failing_since: None,
            },
        );
    }

    /// Drop an entry without an event: another ground-station instance
    /// sharing the store has claimed it (or already finished it). If it is
    /// still pending later, the store hands it back through [`Self::add`].
    pub fn forget(&mut self, case_id: Uuid) {
        self.entries.remove(&case_id);
        self.in_flight.remove(&case_id);
    }

    pub fn pending(&self) -> usize {
        self.entries.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The next request to make now, if any (oldest due first).
    pub fn poll_transmit(&mut self, now_unix_ms: i64) -> Option<Transmit> {
        if self.in_flight.len() >= self.policy.max_in_flight {
            return None;
        }
        let (id, e) = self
            .entries
            .iter_mut()
            .filter(|(id, e)| e.next_at <= now_unix_ms && !self.in_flight.contains(id))
            .min_by_key(|(id, e)| (e.next_at, **id))?;
        e.attempts += 1;
        let t = Transmit {
            case_id: *id,
            route: e.route.clone(),
            attempt: e.attempts,
        };
        self.in_flight.insert(*id);
        Some(t)
    }

    /// When the driver should call [`Self::poll_transmit`] again (Unix ms),
    /// if nothing else happens first.
    pub fn poll_timeout(&self) -> Option<i64> {
        if self.in_flight.len() >= self.policy.max_in_flight {
            return None;
        }
        self.entries
            .iter()
            .filter(|(id, _)| !self.in_flight.contains(id))
            .map(|(_, e)| e.next_at)
            .min()
    }

    /// The outcome of the attempt for `case_id`.
    pub fn handle_response(&mut self, case_id: Uuid, response: Response, now_unix_ms: i64) {
        if !self.in_flight.remove(&case_id) {
            return; // not ours (or a stale answer after a retry): ignore
        }
        let Some(e) = self.entries.get_mut(&case_id) else {
            return;
        };
        let permanent = match &response {
            Response::Status(s) if (200..300).contains(s) => {
                let e = self.entries.remove(&case_id).expect("present");
                self.events.push_back(OutboxEvent::Delivered {
                    case_id,
                    route: e.route,
                    attempts: e.attempts,
                    status: *s,
                });
                return;
            }
            Response::Status(s) => {
                (400..500).contains(s) && !matches!(s, 408 | 425 | 429) || (300..400).contains(s)
            }
            Response::Timeout | Response::Network(_) => false,
        };
        let since = *e.failing_since.get_or_insert(now_unix_ms);
        let too_long =
            self.policy.give_up_after_ms > 0 && now_unix_ms - since >= self.policy.give_up_after_ms;
        let error = response.describe();
        if permanent || too_long {
            let e = self.entries.remove(&case_id).expect("present");
            let error = if permanent {
                format!("{error} (permanent: the request itself was refused)")
            } else {
                format!(
                    "{error}; failing for {} s, gave up",
                    (now_unix_ms - since) / 1000
                )
            };
            self.events.push_back(OutboxEvent::DeadLettered {
                case_id,
                attempts: e.attempts,
                error,
            });
            return;
        }
        e.next_at = now_unix_ms + self.policy.backoff_ms(case_id, e.attempts);
        self.events.push_back(OutboxEvent::Retrying {
            case_id,
            attempts: e.attempts,
            next_attempt_unix_ms: e.next_at,
            failing_since_unix_ms: since,
            error,
        });
    }

    pub fn poll_event(&mut self) -> Option<OutboxEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const T0: i64 = 1_800_000_000_000;

    /// A simulated receiver on a virtual clock: how it answers at time t
    /// (ms since T0), and how long the answer takes.
    fn run_virtual(
        outbox: &mut Outbox,
        ids: &[Uuid],
        answer: impl Fn(i64) -> (Response, i64),
        horizon_ms: i64,
    ) -> (HashMap<Uuid, u32>, Vec<OutboxEvent>, i64) {
        let mut now = T0;
        let mut in_flight: Vec<(i64, Uuid, Response)> = vec![];
        let mut received: HashMap<Uuid, u32> = HashMap::new();
        let mut events = vec![];
        for id in ids {
            outbox.insert(*id, "governance".into(), now);
        }
        while now - T0 < horizon_ms {
            while let Some(t) = outbox.poll_transmit(now) {
                let (resp, took) = answer(now - T0);
                if matches!(resp, Response::Status(s) if (200..300).contains(&s)) {
                    *received.entry(t.case_id).or_default() += 1;
                }
                in_flight.push((now + took, t.case_id, resp));
            }
            in_flight.sort_by_key(|x| x.0);
            let next_resp = in_flight.first().map(|x| x.0);
            let next = match (next_resp, outbox.poll_timeout()) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => break,
            };
            now = next.max(now);
            while in_flight.first().is_some_and(|x| x.0 <= now) {
                let (_, id, r) = in_flight.remove(0);
                outbox.handle_response(id, r, now);
            }
            while let Some(e) = outbox.poll_event() {
                events.push(e);
            }
        }
        (received, events, now - T0)
    }

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::now_v7()).collect()
    }

    /// The "must hold" scenario with the real (default) policy on a
    /// virtual clock: 500 for 5 minutes, then 2 minutes of requests that
    /// hang until the 10 s client timeout, then recovery. Every case is
    /// delivered, each exactly once, within one max back-off of recovery.
    #[test]
    fn five_minutes_of_500_then_timeouts_then_recovery_delivers_everything_once() {
        let mut o = Outbox::new(RetryPolicy::default());
        let cases = ids(40);
        let (received, events, _) = run_virtual(
            &mut o,
            &cases,
            |t| {
                if t < 300_000 {
                    (Response::Status(500), 30)
                } else if t < 420_000 {
                    (Response::Timeout, 10_000)
                } else {
                    (Response::Status(201), 40)
                }
            },
            3_600_000,
        );
        assert_eq!(received.len(), 40);
        assert!(received.values().all(|n| *n == 1));
        let delivered: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                OutboxEvent::Delivered { case_id, .. } => Some(*case_id),
                _ => None,
            })
            .collect();
        assert_eq!(delivered.len(), 40);
        assert!(!events
            .iter()
            .any(|e| matches!(e, OutboxEvent::DeadLettered { .. })));
        assert_eq!(o.pending(), 0);
        // Back-off grew: far fewer attempts than one per second.
        let retries = events
            .iter()
            .filter(|e| matches!(e, OutboxEvent::Retrying { .. }))
            .count();
        assert!(retries < 40 * 20, "{retries} retries");
    }

    #[test]
    fn delivery_ends_within_one_max_backoff_after_recovery() {
        let policy = RetryPolicy::default();
        let mut o = Outbox::new(policy.clone());
        let cases = ids(5);
        let (_, events, _) = run_virtual(
            &mut o,
            &cases,
            |t| {
                if t < 300_000 {
                    (Response::Status(503), 5)
                } else {
                    (Response::Status(200), 5)
                }
            },
            3_600_000,
        );
        let n = events
            .iter()
            .filter(|e| matches!(e, OutboxEvent::Delivered { .. }))
            .count();
        assert_eq!(n, 5);
        // The last retry before recovery was at most max_backoff (+20 %) before it.
        let last_retry = events
            .iter()
            .filter_map(|e| match e {
                OutboxEvent::Retrying {
                    next_attempt_unix_ms,
                    ..
                } => Some(*next_attempt_unix_ms - T0),
                _ => None,
            })
            .max()
            .unwrap();
        assert!(last_retry <= 300_000 + policy.max_backoff_ms * 12 / 10);
    }

    #[test]
    fn permanent_errors_dead_letter_and_retry_brings_them_back() {
        let mut o = Outbox::new(RetryPolicy::default());
        let id = Uuid::now_v7();
        o.insert(id, "hotline".into(), T0);
        let t = o.poll_transmit(T0).unwrap();
        assert_eq!(t.attempt, 1);
        o.handle_response(id, Response::Status(422), T0 + 10);
        match o.poll_event() {
            Some(OutboxEvent::DeadLettered { error, .. }) => {
                assert!(error.contains("HTTP 422"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(o.pending(), 0);
        assert_eq!(o.poll_timeout(), None);
        o.retry(id, "hotline".into(), T0 + 1000);
        let t = o.poll_transmit(T0 + 1000).unwrap();
        assert_eq!(t.attempt, 1);
        o.handle_response(id, Response::Status(200), T0 + 1010);
        assert!(matches!(
            o.poll_event(),
            Some(OutboxEvent::Delivered { attempts: 1, .. })
        ));
        // 429 and 408 are not permanent.
        for s in [408, 429, 500, 502] {
            let id = Uuid::now_v7();
            o.insert(id, "x".into(), T0);
            o.poll_transmit(T0).unwrap();
            o.handle_response(id, Response::Status(s), T0);
            assert!(
                matches!(o.poll_event(), Some(OutboxEvent::Retrying { .. })),
                "{s}"
            );
        }
    }

    #[test]
    fn gives_up_after_the_configured_time() {
        let policy = RetryPolicy {
            give_up_after_ms: 60_000,
            ..Default::default()
        };
        let mut o = Outbox::new(policy);
        let cases = ids(3);
        let (received, events, _) = run_virtual(
            &mut o,
            &cases,
            |_| (Response::Network("refused".into()), 1),
            600_000,
        );
        assert!(received.is_empty());
        let dead = events
            .iter()
            .filter(|e| matches!(e, OutboxEvent::DeadLettered { .. }))
            .count();
        assert_eq!(dead, 3);
    }

    #[test]
    fn restore_resends_what_was_in_flight_and_keeps_backoff() {
        let mut o = Outbox::new(RetryPolicy::default());
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        o.insert(a, "r".into(), T0);
        o.insert(b, "r".into(), T0);
        assert!(o.poll_transmit(T0).is_some());
        assert!(o.poll_transmit(T0).is_some());
        // Crash: both in flight, nothing answered. The store still says
        // pending (attempt counts as persisted before the crash: 0).
        let o2 = Outbox::restore(
            RetryPolicy::default(),
            vec![
                Pending {
                    case_id: a,
                    route: "r".into(),
                    attempts: 0,
                    next_attempt_unix_ms: T0,
                    failing_since_unix_ms: None,
                },
                Pending {
                    case_id: b,
                    route: "r".into(),
                    attempts: 3,
                    next_attempt_unix_ms: T0 + 50_000,
                    failing_since_unix_ms: Some(T0 - 10_000),
                },
            ],
        );
        let mut o2 = o2;
        let t = o2.poll_transmit(T0 + 1).unwrap();
        assert_eq!(t.case_id, a);
        assert!(o2.poll_transmit(T0 + 1).is_none(), "b waits its back-off");
        assert_eq!(o2.poll_timeout(), Some(T0 + 50_000));
        let t = o2.poll_transmit(T0 + 50_000).unwrap();
        assert_eq!((t.case_id, t.attempt), (b, 4));
    }

    #[test]
    fn in_flight_is_bounded_and_stale_answers_are_ignored() {
        let policy = RetryPolicy {
            max_in_flight: 2,
            ..Default::default()
        };
        let mut o = Outbox::new(policy);
        let cases = ids(5);
        for id in &cases {
            o.insert(*id, "r".into(), T0);
        }
        let a = o.poll_transmit(T0).unwrap();
        let _b = o.poll_transmit(T0).unwrap();
        assert!(o.poll_transmit(T0).is_none());
        assert_eq!(o.poll_timeout(), None);
        o.handle_response(a.case_id, Response::Status(200), T0);
        o.handle_response(a.case_id, Response::Status(200), T0); // duplicate answer
        assert_eq!(
            std::iter::from_fn(|| o.poll_event()).count(),
            1,
            "one delivery event"
        );
        assert!(o.poll_transmit(T0).is_some());
        o.handle_response(Uuid::now_v7(), Response::Status(200), T0); // unknown
        assert!(o.poll_event().is_none());
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let p = RetryPolicy::default();
        let id = Uuid::now_v7();
        for (n, base) in [
            (1, 2_000),
            (2, 4_000),
            (3, 8_000),
            (10, 60_000),
            (40, 60_000),
        ] {
            let b = p.backoff_ms(id, n);
            assert!(
                b >= base * 8 / 10 && b <= base * 12 / 10,
                "attempt {n}: {b} vs {base}"
            );
        }
    }
}
