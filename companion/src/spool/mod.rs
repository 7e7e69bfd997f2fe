//! The alert spool: every alert, event and command result the drone
//! produces is written here *before* it is published, and stays until the
//! ground has it.
//!
//! [`Spool`] is the sans-IO core (quinn-proto style): it is fed entries,
//! link changes, PUBACKs, ground receipts and the time, and answers what to
//! publish next ([`Spool::poll_transmit`]), what may be deleted from disk
//! ([`Spool::drain_deletions`]) and when to wake ([`Spool::poll_timeout`]).
//! [`store::SpoolStore`] is the on-disk half (SQLite, WAL,
//! `synchronous=FULL`); the channel driver moves entries between them.
//!
//! Life of an entry:
//!
//! ```text
//!   insert ──► Queued ──poll_transmit──► Inflight ──PUBACK──► Acked ──receipt──► deleted
//!                ▲                          │                    │
//!                └── session lost / inflight timeout             │
//!                └───────────── receipt timeout (back-off) ──────┘
//! ```
//!
//! Invariants:
//! - an entry is never deleted before the broker's PUBACK for it, or the
//!   ground station's receipt (which implies the broker had it);
//! - when the spool is full, the oldest *acked* entries (which the broker
//!   already holds) make room; if none are acked, new entries are refused
//!   with [`SpoolFull`] and nothing already accepted is touched;
//! - high-priority entries (alerts, command results) are transmitted before
//!   normal ones (events); telemetry never enters the spool.

pub mod store;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Transmission priority; lower sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Alerts and command results.
    High = 0,
    /// Events (mission progress, incident updates, logs).
    Normal = 1,
}

impl Priority {
    pub fn from_i64(v: i64) -> Self {
        if v == 0 {
            Priority::High
        } else {
            Priority::Normal
        }
    }
}

/// What the core knows of an entry (the payload stays on disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// Spool-local sequence number, increasing in acceptance order.
    pub seq: u64,
    /// The message's own id (alert id, event id, command id).
    pub id: Uuid,
    pub priority: Priority,
    /// Bytes on disk (payload + topic).
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpoolConfig {
    /// Most entries held at once.
    pub max_entries: u64,
    /// Most payload bytes held at once.
    pub max_bytes: u64,
    /// Most entries handed to the MQTT client and not yet PUBACKed.
    pub max_inflight: usize,
    /// How long an entry may wait for PUBACK while connected before it is
    /// sent again.
    pub inflight_timeout: Duration,
    /// How long an acked entry waits for the ground's receipt before it is
    /// published again (doubling per attempt up to `max_receipt_backoff`).
    pub receipt_timeout: Duration,
    pub max_receipt_backoff: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 2 * 1024 * 1024 * 1024,
            max_inflight: 64,
            inflight_timeout: Duration::from_secs(60),
            receipt_timeout: Duration::from_secs(60),
            max_receipt_backoff: Duration::from_secs(600),
        }
    }
}

/// The spool refuses a new entry: it holds `depth` entries / `bytes` bytes
/// and none of them may be dropped yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("spool full: {depth} entries, {bytes} bytes held and none yet acknowledged by the broker; new entries are refused until the link drains it")]
pub struct SpoolFull {
    pub depth: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    Inflight { since: Instant },
    Acked { at: Instant },
}

#[derive(Debug)]
struct Slot {
    meta: EntryMeta,
    state: State,
    /// How often the receipt timed out (for back-off).
    receipt_misses: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub depth: u64,
    pub bytes: u64,
    pub queued: u64,
    pub inflight: u64,
    pub acked: u64,
    /// Entries refused because the spool was full (since start).
    pub refused: u64,
    /// Acked entries evicted to make room (since start).
    pub evicted: u64,
    /// Entries published again after a timeout (since start).
    pub republished: u64,
    /// Entries removed after the ground's receipt (since start).
    pub receipted: u64,
    /// The last write to the spool's disk failed because the disk is full
    /// (cleared by the next successful write).
    pub disk_full: bool,
    /// Entries refused because the spool's disk was full (since start).
    pub disk_full_refused: u64,
}

/// The sans-IO spool core. See the module docs.
#[derive(Debug)]
pub struct Spool {
    cfg: SpoolConfig,
    entries: HashMap<u64, Slot>,
    by_id: HashMap<Uuid, u64>,
    queued: BTreeSet<(Priority, u64)>,
    /// (deadline, seq) for inflight and acked entries.
    deadlines: BTreeSet<(Instant, u64)>,
    /// Acked entries in acceptance order, eviction candidates.
    acked: BTreeSet<u64>,
    inflight: usize,
    connected: bool,
    bytes: u64,
    deletions: Vec<u64>,
    stats: SpoolStats,
    next_seq: u64,
}

impl Spool {
    /// A core holding what a previous run left on disk. Recovered entries
    /// are all queued: whether the broker got them is unknown, and the
    /// ground de-duplicates by id.
    pub fn new(cfg: SpoolConfig, recovered: impl IntoIterator<Item = EntryMeta>) -> Self {
        let mut s = Self {
            cfg,
            entries: HashMap::new(),
            by_id: HashMap::new(),
            queued: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            acked: BTreeSet::new(),
            inflight: 0,
            connected: false,
            bytes: 0,
            deletions: Vec::new(),
            stats: SpoolStats::default(),
            next_seq: 1,
        };
        for m in recovered {
            s.insert(m);
        }
        s
    }

    pub fn config(&self) -> &SpoolConfig {
        &self.cfg
    }

    /// The sequence number the next accepted entry must take.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Is `id` already held? (A producer retrying the same alert.)
    pub fn contains(&self, id: &Uuid) -> bool {
        self.by_id.contains_key(id)
    }

    /// Make room for an entry of `bytes` bytes, evicting the oldest acked
    /// entries if that is enough. On success the evicted seqs are queued for
    /// deletion ([`Spool::drain_deletions`]); on failure nothing changes.
    pub fn reserve(&mut self, bytes: u64) -> Result<(), SpoolFull> {
        let fits = |n: u64, b: u64, cfg: &SpoolConfig| {
            n < cfg.max_entries && b.saturating_add(bytes) <= cfg.max_bytes
        };
        let (mut n, mut b) = (self.entries.len() as u64, self.bytes);
        let mut victims = Vec::new();
        let mut acked = self.acked.iter();
        while !fits(n, b, &self.cfg) {
            match acked.next() {
                Some(&seq) => {
                    victims.push(seq);
                    n -= 1;
                    b -= self.entries[&seq].meta.bytes;
                }
                None => {
                    self.stats.refused += 1;
                    return Err(SpoolFull {
                        depth: self.entries.len() as u64,
                        bytes: self.bytes,
                    });
                }
            }
        }
        for seq in victims {
            self.remove(seq);
            self.stats.evicted += 1;
        }
        Ok(())
    }

    /// Take an entry that is now durably on disk. Its seq must be
    /// [`Spool::next_seq`] or later.
    pub fn insert(&mut self, meta: EntryMeta) {
        if self.by_id.contains_key(&meta.id) || self.entries.contains_key(&meta.seq) {
            return;
        }
        self.next_seq = self.next_seq.max(meta.seq + 1);
        self.bytes += meta.bytes;
        self.by_id.insert(meta.id, meta.seq);
        self.queued.insert((meta.priority, meta.seq));
        self.entries.insert(
            meta.seq,
            Slot {
                meta,
                state: State::Queued,
                receipt_misses: 0,
            },
        );
    }

    /// The MQTT session is up. With `session_present == false` the broker
    /// forgot everything in flight: call [`Spool::requeue`] for those seqs
    /// (the channel's packet-id tracker knows which).
    pub fn on_connected(&mut self) {
        self.connected = true;
    }

    pub fn on_disconnected(&mut self) {
        self.connected = false;
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Send `seq` again (its publish was lost with the session).
    pub fn requeue(&mut self, seq: u64) {
        let Some(slot) = self.entries.get_mut(&seq) else {
            return;
        };
        match slot.state {
            State::Queued => {}
            State::Inflight { since } => {
                self.deadlines
                    .remove(&(since + self.cfg.inflight_timeout, seq));
                self.inflight -= 1;
                slot.state = State::Queued;
                self.queued.insert((slot.meta.priority, seq));
            }
            // The broker has it; the receipt timer covers the rest.
            State::Acked { .. } => {}
        }
    }

    /// The next entry to publish, if connected and the in-flight window has
    /// room. The entry becomes in flight.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<EntryMeta> {
        if !self.connected || self.inflight >= self.cfg.max_inflight {
            return None;
        }
        let (_, seq) = self.queued.pop_first()?;
        let slot = self.entries.get_mut(&seq).expect("queued entry exists");
        slot.state = State::Inflight { since: now };
        self.inflight += 1;
        self.deadlines
            .insert((now + self.cfg.inflight_timeout, seq));
        Some(slot.meta.clone())
    }

    /// The broker acknowledged `seq`.
    pub fn on_puback(&mut self, seq: u64, now: Instant) {
        let wait_for = |misses| receipt_wait(&self.cfg, misses);
        let Some(slot) = self.entries.get_mut(&seq) else {
            return; // already receipted
        };
        if let State::Inflight { since } = slot.state {
            self.deadlines
                .remove(&(since + self.cfg.inflight_timeout, seq));
            self.inflight -= 1;
            slot.state = State::Acked { at: now };
            self.deadlines
                .insert((now + wait_for(slot.receipt_misses), seq));
            self.acked.insert(seq);
        }
    }

    /// The ground station has stored these ids: they may leave the spool.
    pub fn on_receipt<'a>(&mut self, ids: impl IntoIterator<Item = &'a Uuid>) {
        for id in ids {
            if let Some(&seq) = self.by_id.get(id) {
                self.remove(seq);
                self.stats.receipted += 1;
            }
        }
    }

    /// When [`Spool::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Re-queue in-flight entries that never got a PUBACK (while connected)
    /// and acked entries whose receipt never came.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(t, seq)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            let slot = self.entries.get_mut(&seq).expect("deadline entry exists");
            match slot.state {
                State::Inflight { .. } => {
                    if !self.connected {
                        // The session may still deliver it on reconnect;
                        // look again later.
                        slot.state = State::Inflight { since: now };
                        self.deadlines
                            .insert((now + self.cfg.inflight_timeout, seq));
                        continue;
                    }
                    self.inflight -= 1;
                }
                State::Acked { .. } => {
                    self.acked.remove(&seq);
                    slot.receipt_misses += 1;
                }
                State::Queued => continue,
            }
            slot.state = State::Queued;
            self.queued.insert((slot.meta.priority, seq));
            self.stats.republished += 1;
        }
    }

    /// A batch of `entries` could not be written (`disk_full`: the disk
    /// has no room). Call [`Spool::abandon`] for each of them as well.
    /// Returns true when this starts a disk-full episode (say it loudly
    /// once, not for every refused entry).
    pub fn on_write_failed(&mut self, entries: u64, disk_full: bool) -> bool {
        if !disk_full {
            return false;
        }
        self.stats.disk_full_refused += entries;
        !std::mem::replace(&mut self.stats.disk_full, true)
    }

    /// A batch reached the disk. Returns true when this ends a disk-full
    /// episode.
    pub fn on_write_ok(&mut self) -> bool {
        std::mem::replace(&mut self.stats.disk_full, false)
    }

    /// Forget an entry whose write to disk failed (it was never accepted).
    pub fn abandon(&mut self, seq: u64) {
        self.remove(seq);
        self.deletions.retain(|s| *s != seq);
    }

    /// Seqs that may now be deleted from disk.
    pub fn drain_deletions(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.deletions)
    }

    pub fn stats(&self) -> SpoolStats {
        let mut s = self.stats;
        s.depth = self.entries.len() as u64;
        s.bytes = self.bytes;
        s.queued = self.queued.len() as u64;
        s.inflight = self.inflight as u64;
        s.acked = self.acked.len() as u64;
        s
    }

    fn remove(&mut self, seq: u64) {
        let Some(Slot {
            meta,
            state,
            receipt_misses,
        }) = self.entries.remove(&seq)
        else {
            return;
        };
        self.by_id.remove(&meta.id);
        self.bytes -= meta.bytes;
        match state {
            State::Queued => {
                self.queued.remove(&(meta.priority, seq));
            }
            State::Inflight { since } => {
                self.inflight -= 1;
                self.deadlines
                    .remove(&(since + self.cfg.inflight_timeout, seq));
            }
            State::Acked { at } => {
                self.acked.remove(&seq);
                self.deadlines
                    .remove(&(at + receipt_wait(&self.cfg, receipt_misses), seq));
            }
        }
        self.deletions.push(seq);
    }
}

/// How long an acked entry waits for its receipt after `misses` timeouts.
fn receipt_wait(cfg: &SpoolConfig, misses: u32) -> Duration {
    let base = cfg.receipt_timeout;
    let wait = base.saturating_mul(1u32 << misses.min(16));
    wait.min(cfg.max_receipt_backoff.max(base))
}

#[cfg(test)]
mod tests;
