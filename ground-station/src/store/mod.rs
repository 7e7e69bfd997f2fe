//! The ground station's store: SQLite on disk in WAL mode.
//!
//! Everything the drones send that passes validation is kept here (alerts
//! with their snapshots as BLOBs, events, command results, drone status,
//! down-sampled telemetry); what fails validation goes to `quarantine` with
//! the reason. Writes come in batches ([`Store::ingest_batch`]), one
//! transaction each; alert and event ids are primary keys, so a message
//! delivered twice is stored once.
//!
//! This module is the only place that speaks SQL: cases and their timeline
//! ([`cases`]), the dispatch outbox ([`outbox`]), users, sessions, API
//! tokens and the audit log ([`auth`]), commands and retention ([`ops`]).
//! Everything else calls these methods, so another engine (PostgreSQL)
//! can take its place behind the same API.

pub mod auth;
pub mod cases;
pub mod ops;
pub mod outbox;

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use sha2::{Digest, Sha256};
use tiancha_protocol::{Alert, CommandResult, DroneEvent, DroneStatus, LocationStatus, Telemetry};
use uuid::Uuid;

/// Bytes of a quarantined payload kept verbatim (the rest is summarised by
/// its length and SHA-256, so a 10 MB garbage payload cannot bloat the
/// store).
pub const QUARANTINE_KEEP_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: stored JSON does not parse: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

/// One validated (or rejected) message, ready to be written.
#[derive(Debug, Clone)]
pub enum Record {
    Alert(Box<Alert>),
    Event(DroneEvent),
    Status(DroneStatus),
    Telemetry(Box<Telemetry>),
    CommandResult(CommandResult),
    Quarantine(Quarantined),
}

#[derive(Debug, Clone)]
pub struct Quarantined {
    pub topic: String,
    pub class: String,
    pub reason: String,
    pub payload: Vec<u8>,
}

/// What a batch did, for receipts and counters.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    /// (drone id, message id) of every alert, event and command result
    /// that is now in the store (new or duplicate): these get receipts.
    pub stored: Vec<(String, Uuid)>,
    pub new_alerts: Vec<Uuid>,
    pub duplicates: u64,
    pub quarantined: u64,
    pub telemetry_kept: u64,
    pub telemetry_dropped: u64,
}

/// A row of the alert list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertRow {
    pub alert_id: Uuid,
    pub drone_id: String,
    pub category: String,
    pub confidence: f64,
    pub t_unix_ms: i64,
    pub lat_deg: Option<f64>,
    pub lon_deg: Option<f64>,
    pub person_count: Option<i64>,
    pub received_unix_ms: i64,
    pub has_snapshot: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuarantineRow {
    pub id: i64,
    pub received_unix_ms: i64,
    pub topic: String,
    pub class: String,
    pub reason: String,
    pub payload_len: i64,
    pub payload_sha256: String,
}

pub struct Store {
    conn: Connection,
    /// Keep one telemetry row per drone per this many ms.
    telemetry_interval_ms: i64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS drones (
    drone_id TEXT PRIMARY KEY,
    first_seen_unix_ms INTEGER NOT NULL,
    last_seen_unix_ms INTEGER NOT NULL,
    online INTEGER NOT NULL DEFAULT 0,
    status_json TEXT,
    telemetry_json TEXT,
    last_telemetry_kept_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    drone_id TEXT NOT NULL,
    category TEXT NOT NULL,
    confidence REAL NOT NULL,
    t_first_unix_ms INTEGER NOT NULL,
    t_unix_ms INTEGER NOT NULL,
    location_status TEXT NOT NULL,
    lat_deg REAL,
    lon_deg REAL,
    person_count INTEGER,
    json TEXT NOT NULL,
    received_unix_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (t_unix_ms);
CREATE INDEX IF NOT EXISTS alerts_by_drone ON alerts (drone_id, t_unix_ms);
CREATE TABLE IF NOT EXISTS snapshots (
    alert_id TEXT PRIMARY KEY REFERENCES alerts(alert_id),
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    jpeg BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    drone_id TEXT NOT NULL,
    t_unix_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    json TEXT NOT NULL,
    received_unix_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_drone ON events (drone_id, t_unix_ms);
CREATE TABLE IF NOT EXISTS command_results (
    result_id TEXT PRIMARY KEY,
    command_id TEXT NOT NULL,
    drone_id TEXT NOT NULL,
    t_unix_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS command_results_by_command ON command_results (command_id);
CREATE TABLE IF NOT EXISTS telemetry (
    id INTEGER PRIMARY KEY,
    drone_id TEXT NOT NULL,
    t_unix_ms INTEGER NOT NULL,
    lat_deg REAL NOT NULL,
    lon_deg REAL NOT NULL,
    alt_m REAL NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS telemetry_by_drone ON telemetry (drone_id, t_unix_ms);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_triage (
    alert_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    case_id TEXT,
    reason TEXT NOT NULL DEFAULT '',
    actor TEXT NOT NULL,
    t_unix_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_triage_by_case ON alert_triage (case_id);
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY,
    category TEXT NOT NULL,
    priority TEXT NOT NULL,
    priority_reasons TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL,
    lat_deg REAL NOT NULL,
    lon_deg REAL NOT NULL,
    grid_id TEXT NOT NULL DEFAULT '',
    county TEXT NOT NULL DEFAULT '',
    township TEXT NOT NULL DEFAULT '',
    village TEXT NOT NULL DEFAULT '',
    t_start_unix_ms INTEGER NOT NULL,
    t_end_unix_ms INTEGER NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    confirmed_by TEXT,
    route TEXT,
    max_person_count INTEGER,
    created_unix_ms INTEGER NOT NULL,
    updated_unix_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_by_status ON cases (status, updated_unix_ms);
CREATE INDEX IF NOT EXISTS cases_by_end ON cases (t_end_unix_ms);
CREATE TABLE IF NOT EXISTS case_timeline (
    id INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL,
    t_unix_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    status TEXT,
    actor TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    dedup TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS case_timeline_by_case ON case_timeline (case_id, t_unix_ms);
CREATE TABLE IF NOT EXISTS outbox (
    case_id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    state TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_unix_ms INTEGER NOT NULL,
    failing_since_unix_ms INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    created_unix_ms INTEGER NOT NULL,
    delivered_unix_ms INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (state);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL,
    expires_unix_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_sha256 TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    user_name TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL,
    last_used_unix_ms INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    t_unix_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    client TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (t_unix_ms);
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    drone_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    json TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    t_unix_ms INTEGER NOT NULL,
    expires_unix_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_by_drone ON commands (drone_id, t_unix_ms);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    received_unix_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    class TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload_len INTEGER NOT NULL,
    payload_sha256 TEXT NOT NULL,
    payload_head BLOB NOT NULL
);
";

impl Store {
    pub fn open(path: &Path, telemetry_interval_ms: i64) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             PRAGMA busy_timeout=5000;
             PRAGMA foreign_keys=ON;",
        )
        .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        Ok(Self {
            conn,
            telemetry_interval_ms,
        })
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Run `f` in one transaction (committed if it returns Ok).
    pub fn with_tx<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.conn.transaction()?;
        let v = f(&tx)?;
        tx.commit()?;
        Ok(v)
    }

    /// Write a batch in one transaction. Commit happens before the caller
    /// acknowledges anything to the broker or the drone.
    pub fn ingest_batch(
        &mut self,
        records: &[Record],
        now_unix_ms: i64,
    ) -> Result<BatchOutcome, StoreError> {
        let interval = self.telemetry_interval_ms;
        let tx = self.conn.transaction()?;
        let mut out = BatchOutcome::default();
        for r in records {
            match r {
                Record::Alert(a) => {
                    let new = insert_alert(&tx, a, now_unix_ms)?;
                    touch_drone(&tx, a.drone_id.as_str(), now_unix_ms)?;
                    out.stored.push((a.drone_id.to_string(), a.alert_id));
                    if new {
                        out.new_alerts.push(a.alert_id);
                    } else {
                        out.duplicates += 1;
                    }
                }
                Record::Event(e) => {
                    let n = tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO events (event_id, drone_id, t_unix_ms, kind, json, received_unix_ms)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )?
                        .execute(params![
                            e.event_id.to_string(),
                            e.drone_id.as_str(),
                            e.t_unix_ms,
                            e.kind.name(),
                            serde_json::to_string(e).expect("serialisable"),
                            now_unix_ms
                        ])?;
                    touch_drone(&tx, e.drone_id.as_str(), now_unix_ms)?;
                    out.stored.push((e.drone_id.to_string(), e.event_id));
                    if n == 0 {
                        out.duplicates += 1;
                    }
                }
                Record::CommandResult(c) => {
                    let id = c.spool_id();
                    let n = tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO command_results (result_id, command_id, drone_id, t_unix_ms, status, json)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )?
                        .execute(params![
                            id.to_string(),
                            c.command_id.to_string(),
                            c.drone_id.as_str(),
                            c.t_unix_ms,
                            serde_json::to_value(c.status).expect("serialisable").as_str().unwrap_or_default(),
                            serde_json::to_string(c).expect("serialisable"),
                        ])?;
                    touch_drone(&tx, c.drone_id.as_str(), now_unix_ms)?;
                    out.stored.push((c.drone_id.to_string(), id));
                    if n == 0 {
                        out.duplicates += 1;
                    }
                }
                Record::Status(s) => {
                    touch_drone(&tx, s.drone_id.as_str(), now_unix_ms)?;
                    tx.prepare_cached(
                        "UPDATE drones SET online = ?2, status_json = ?3 WHERE drone_id = ?1",
                    )?
                    .execute(params![
                        s.drone_id.as_str(),
                        s.online,
                        serde_json::to_string(s).expect("serialisable")
                    ])?;
                }
                Record::Telemetry(t) => {
                    touch_drone(&tx, t.drone_id.as_str(), now_unix_ms)?;
                    let json = serde_json::to_string(t).expect("serialisable");
                    let last: i64 = tx
                        .prepare_cached(
                            "SELECT last_telemetry_kept_ms FROM drones WHERE drone_id = ?1",
                        )?
                        .query_row([t.drone_id.as_str()], |r| r.get(0))?;
                    tx.prepare_cached("UPDATE drones SET telemetry_json = ?2 WHERE drone_id = ?1")?
                        .execute(params![t.drone_id.as_str(), json])?;
                    if t.t_unix_ms - last >= interval || t.t_unix_ms < last {
                        tx.prepare_cached(
                            "INSERT INTO telemetry (drone_id, t_unix_ms, lat_deg, lon_deg, alt_m, json)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )?
                        .execute(params![
                            t.drone_id.as_str(),
                            t.t_unix_ms,
                            t.position.lat_deg,
                            t.position.lon_deg,
                            t.position.alt_m,
                            json
                        ])?;
                        tx.prepare_cached(
                            "UPDATE drones SET last_telemetry_kept_ms = ?2 WHERE drone_id = ?1",
                        )?
                        .execute(params![t.drone_id.as_str(), t.t_unix_ms])?;
                        out.telemetry_kept += 1;
                    } else {
                        out.telemetry_dropped += 1;
                    }
                }
                Record::Quarantine(q) => {
                    let head = &q.payload[..q.payload.len().min(QUARANTINE_KEEP_BYTES)];
                    tx.prepare_cached(
                        "INSERT INTO quarantine (received_unix_ms, topic, class, reason, payload_len, payload_sha256, payload_head)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        now_unix_ms,
                        q.topic,
                        q.class,
                        q.reason,
                        q.payload.len() as i64,
                        hex::encode(Sha256::digest(&q.payload)),
                        head
                    ])?;
                    out.quarantined += 1;
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    pub fn alert_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM alerts", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    pub fn recent_alerts(&self, limit: u32) -> Result<Vec<AlertRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT a.alert_id, a.drone_id, a.category, a.confidence, a.t_unix_ms, a.lat_deg, a.lon_deg,
                    a.person_count, a.received_unix_ms, s.alert_id IS NOT NULL
             FROM alerts a LEFT JOIN snapshots s ON s.alert_id = a.alert_id
             ORDER BY a.t_unix_ms DESC, a.alert_id DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit], |r| {
            Ok(AlertRow {
                alert_id: r
                    .get::<_, String>(0)?
                    .parse()
                    .unwrap_or_else(|_| Uuid::nil()),
                drone_id: r.get(1)?,
                category: r.get(2)?,
                confidence: r.get(3)?,
                t_unix_ms: r.get(4)?,
                lat_deg: r.get(5)?,
                lon_deg: r.get(6)?,
                person_count: r.get(7)?,
                received_unix_ms: r.get(8)?,
                has_snapshot: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The full alert as the drone sent it (snapshot included).
    pub fn alert(&self, id: Uuid) -> Result<Option<Alert>, StoreError> {
        let json: Option<String> = self
            .conn
            .prepare_cached("SELECT json FROM alerts WHERE alert_id = ?1")?
            .query_row([id.to_string()], |r| r.get(0))
            .optional()?;
        let Some(json) = json else { return Ok(None) };
        let mut a: Alert = serde_json::from_str(&json).map_err(|e| {
            StoreError::Sqlite(rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                Box::new(e),
            ))
        })?;
        if let Some((w, h, jpeg)) = self.snapshot(id)? {
            a.snapshot = Some(tiancha_protocol::Snapshot {
                width: w,
                height: h,
                jpeg,
            });
        }
        Ok(Some(a))
    }

    /// Width, height and JPEG bytes of an alert's snapshot.
    pub fn snapshot(&self, id: Uuid) -> Result<Option<(u32, u32, Vec<u8>)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT width, height, jpeg FROM snapshots WHERE alert_id = ?1")?
            .query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?)
    }

    pub fn quarantine(&self, limit: u32) -> Result<Vec<QuarantineRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, received_unix_ms, topic, class, reason, payload_len, payload_sha256
             FROM quarantine ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit], |r| {
            Ok(QuarantineRow {
                id: r.get(0)?,
                received_unix_ms: r.get(1)?,
                topic: r.get(2)?,
                class: r.get(3)?,
                reason: r.get(4)?,
                payload_len: r.get(5)?,
                payload_sha256: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn touch_drone(tx: &Transaction<'_>, drone_id: &str, now: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO drones (drone_id, first_seen_unix_ms, last_seen_unix_ms) VALUES (?1, ?2, ?2)
         ON CONFLICT(drone_id) DO UPDATE SET last_seen_unix_ms = excluded.last_seen_unix_ms",
    )?
    .execute(params![drone_id, now])?;
    Ok(())
}

/// Insert an alert and its snapshot; false if it was already there.
fn insert_alert(tx: &Transaction<'_>, a: &Alert, now: i64) -> rusqlite::Result<bool> {
    // The JSON column holds the alert without its snapshot (the JPEG lives
    // in `snapshots` as a BLOB, byte for byte as it arrived).
    let mut meta = a.clone();
    let snap = meta.snapshot.take();
    let (lat, lon) = match (&a.location_status, &a.location) {
        (LocationStatus::Geotagged, Some(g)) => (Some(g.lat_deg), Some(g.lon_deg)),
        _ => (None, None),
    };
    let n = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO alerts (alert_id, drone_id, category, confidence, t_first_unix_ms, t_unix_ms,
                location_status, lat_deg, lon_deg, person_count, json, received_unix_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            a.alert_id.to_string(),
            a.drone_id.as_str(),
            a.category.as_str(),
            a.confidence,
            a.t_first_unix_ms,
            a.t_unix_ms,
            if lat.is_some() { "geotagged" } else { "unknown" },
            lat,
            lon,
            a.person_count,
            serde_json::to_string(&meta).expect("serialisable"),
            now
        ])?;
    if n == 1 {
        if let Some(s) = snap {
            tx.prepare_cached(
                "INSERT INTO snapshots (alert_id, width, height, sha256, jpeg) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                a.alert_id.to_string(),
                s.width,
                s.height,
                hex::encode(Sha256::digest(&s.jpeg)),
                s.jpeg
            ])?;
        }
    }
    Ok(n == 1)
}
