//! The ground station's store: SQLite on disk in WAL mode (the default),
//! or PostgreSQL when several ground-station instances share one store
//! (`[store] backend = "postgres"`). Both engines run the same SQL through
//! [`db`]; the schema is migrated on open ([`MIGRATIONS_SQLITE`],
//! [`migrations_pg`]).
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
//! Everything else calls these methods.
//!
//! Several instances on one PostgreSQL store: ingest batches take a
//! transaction-scoped advisory lock ([`LOCK_INGEST`]) so the alerts'
//! `seq` numbers become visible in order (the triage cursor and the live
//! feed never skip one committed late); the case desk runs under a
//! session advisory lock ([`Store::serialized`]); the outbox is claimed
//! row by row with a lease ([`Store::outbox_claim`]).

pub mod auth;
pub mod cases;
pub mod clips;
pub mod db;
pub mod ops;
pub mod outbox;

use std::cell::RefCell;
use std::path::Path;

use db::{params, Db, Pg};
pub use db::{Dialect, Tx};
use rusqlite::Connection;
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
    #[error("store: cannot connect to PostgreSQL at {url}: {source}")]
    OpenPg {
        url: String,
        source: postgres::Error,
    },
    #[error("store (PostgreSQL): {0}")]
    Postgres(#[from] postgres::Error),
    #[error("store: unexpected column value: {0}")]
    Decode(String),
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

/// Advisory lock keys (PostgreSQL; arbitrary but fixed).
pub const LOCK_MIGRATE: i64 = 0x7469_616e_0001;
pub const LOCK_INGEST: i64 = 0x7469_616e_0002;
pub const LOCK_DESK: i64 = 0x7469_616e_0003;

/// Which engine holds the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `{data_dir}/store.db`: one ground-station instance.
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by several instances.
    Postgres,
}

/// The `[store]` section of the ground-station config.
///
/// ```toml
/// [store]
/// backend = "postgres"                       # default "sqlite"
/// url = "postgres://tiancha:secret@db.example:5432/tiancha"
/// lease_ms = 30000                           # a claimed delivery is this instance's for this long
/// poll_ms = 1000                             # how often the live feed and outbox look for others' work
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: Backend,
    /// PostgreSQL connection string (`postgres://user:password@host:port/db`
    /// or `host=... user=... dbname=...`); only with `backend = "postgres"`.
    pub url: Option<String>,
    /// How long a claimed outbox entry stays with the instance sending it
    /// before another may take it over (it must exceed the HTTP timeout).
    pub lease_ms: u64,
    /// How often (ms) an instance looks for alerts and deliveries written
    /// by the others (PostgreSQL only).
    pub poll_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            url: None,
            lease_ms: 30_000,
            poll_ms: 1_000,
        }
    }
}

impl StoreConfig {
    /// Validate; `request_timeout_ms` is the dispatch HTTP timeout.
    pub fn check(&self, request_timeout_ms: u64) -> Result<(), String> {
        match (self.backend, &self.url) {
            (Backend::Sqlite, Some(_)) => {
                return Err(
                    "store.url is only for backend = \"postgres\" (SQLite lives in {data_dir}/store.db)"
                        .into(),
                )
            }
            (Backend::Postgres, None) => {
                return Err(
                    "store.backend = \"postgres\" needs store.url, e.g. \"postgres://user:password@host:5432/tiancha\""
                        .into(),
                )
            }
            (Backend::Postgres, Some(u)) => {
                u.parse::<postgres::Config>().map_err(|e| {
                    format!(
                        "store.url `{}` is not a PostgreSQL connection string: {e}",
                        redact_url(u)
                    )
                })?;
            }
            (Backend::Sqlite, None) => {}
        }
        if self.lease_ms <= request_timeout_ms {
            return Err(format!(
                "store.lease_ms ({}) must exceed dispatch.request_timeout_ms ({request_timeout_ms}): a delivery still in flight would be sent again by another instance",
                self.lease_ms
            ));
        }
        if !(50..=60_000).contains(&self.poll_ms) {
            return Err("store.poll_ms must be 50..=60000".into());
        }
        Ok(())
    }
}

pub struct Store {
    db: Db,
    /// This instance's name (who holds an outbox lease).
    owner: String,
    lease_ms: i64,
    poll_ms: u64,
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

/// SQLite migrations, applied in order; `PRAGMA user_version` says how
/// many ran. Version 1 is the original schema (`IF NOT EXISTS`, so a store
/// made before versioning passes through it unchanged).
pub const MIGRATIONS_SQLITE: &[&str] = &[
    SCHEMA,
    "ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
     ALTER TABLE outbox ADD COLUMN lease_until_unix_ms INTEGER;",
    MIGRATION_3,
];

/// Version 3: alert clips ([`clips`]) and case revisions in the outbox (a
/// case sent again with new evidence goes out as revision n under its own
/// idempotency key, see [`outbox::idempotency_key`]). Written in the
/// common subset; PostgreSQL gets it through the same type rewrite as v1.
const MIGRATION_3: &str = "
CREATE TABLE IF NOT EXISTS clips (
    alert_id TEXT PRIMARY KEY,
    drone_id TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    start_unix_ms INTEGER NOT NULL,
    end_unix_ms INTEGER NOT NULL,
    window_start_unix_ms INTEGER NOT NULL,
    window_end_unix_ms INTEGER NOT NULL,
    created_unix_ms INTEGER NOT NULL
);
ALTER TABLE outbox ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
";

/// SQLite's types → PostgreSQL's.
fn pg_types(sql: &str) -> String {
    sql.replace(" INTEGER PRIMARY KEY", " BIGSERIAL PRIMARY KEY")
        .replace(" INTEGER", " BIGINT")
        .replace(" REAL", " DOUBLE PRECISION")
        .replace(" BLOB", " BYTEA")
}

/// PostgreSQL migrations, applied in order; the `schema_migrations` table
/// says which ran. Same tables as SQLite with PostgreSQL types, plus an
/// explicit `seq` where SQLite uses its `rowid`.
pub fn migrations_pg() -> Vec<String> {
    let v1 = pg_types(SCHEMA)
        + "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS seq BIGSERIAL;
           CREATE UNIQUE INDEX IF NOT EXISTS alerts_by_seq ON alerts (seq);
           ALTER TABLE command_results ADD COLUMN IF NOT EXISTS seq BIGSERIAL;";
    vec![
        v1,
        "ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
         ALTER TABLE outbox ADD COLUMN lease_until_unix_ms BIGINT;"
            .to_string(),
        pg_types(MIGRATION_3),
    ]
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db` (for
/// logs and errors).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            match cred.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &cred[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Store {
    pub fn open(path: &Path, telemetry_interval_ms: i64) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             PRAGMA busy_timeout=5000;
             PRAGMA foreign_keys=ON;",
        )
        .map_err(open_err)?;
        let done: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        for (i, m) in MIGRATIONS_SQLITE
            .iter()
            .enumerate()
            .skip(done.max(0) as usize)
        {
            let tx = conn.transaction().map_err(open_err)?;
            tx.execute_batch(m).map_err(open_err)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .map_err(open_err)?;
            tx.commit().map_err(open_err)?;
        }
        Ok(Self {
            db: Db::Sqlite(conn),
            owner: "gs-1".into(),
            lease_ms: StoreConfig::default().lease_ms as i64,
            poll_ms: StoreConfig::default().poll_ms,
            telemetry_interval_ms,
        })
    }

    /// Connect to PostgreSQL (`postgres://user:pass@host:port/db`) and
    /// migrate the schema (under an advisory lock, so instances starting
    /// together migrate once).
    pub fn open_postgres(url: &str, telemetry_interval_ms: i64) -> Result<Self, StoreError> {
        db::off_runtime(|| Self::open_postgres_inner(url, telemetry_interval_ms))
    }

    fn open_postgres_inner(url: &str, telemetry_interval_ms: i64) -> Result<Self, StoreError> {
        let mut pg = Pg::connect(url).map_err(|source| StoreError::OpenPg {
            url: redact_url(url),
            source,
        })?;
        {
            let mut tx = pg.client().transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_MIGRATE])?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version BIGINT PRIMARY KEY, applied_unix_ms BIGINT NOT NULL)",
            )?;
            let done: i64 = tx
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM schema_migrations",
                    &[],
                )?
                .get(0);
            for (i, m) in migrations_pg()
                .iter()
                .enumerate()
                .skip(done.max(0) as usize)
            {
                tx.batch_execute(m)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_unix_ms) VALUES ($1, $2)",
                    &[
                        &(i as i64 + 1),
                        &tiancha_protocol::unix_ms(std::time::SystemTime::now()),
                    ],
                )?;
            }
            tx.commit()?;
        }
        Ok(Self {
            db: Db::Pg(Box::new(RefCell::new(pg))),
            owner: "gs-1".into(),
            lease_ms: StoreConfig::default().lease_ms as i64,
            poll_ms: StoreConfig::default().poll_ms,
            telemetry_interval_ms,
        })
    }

    /// Open the store a config names (`[store]`), as instance `cfg.instance`.
    pub fn open_config(cfg: &crate::Config) -> Result<Self, StoreError> {
        let s = &cfg.store;
        let mut st = match (s.backend, &s.url) {
            (Backend::Postgres, Some(url)) => {
                let st = Self::open_postgres(url, cfg.ingest.telemetry_interval_ms)?;
                tracing::info!(url = %redact_url(url), instance = %cfg.instance, "store open (PostgreSQL)");
                st
            }
            _ => {
                let st = Self::open(&cfg.store_path(), cfg.ingest.telemetry_interval_ms)?;
                tracing::info!(path = %cfg.store_path().display(), "store open (SQLite)");
                st
            }
        };
        st.owner = cfg.instance.clone();
        st.lease_ms = s.lease_ms as i64;
        st.poll_ms = s.poll_ms;
        Ok(st)
    }

    /// This instance's name.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// How long a claimed delivery stays with this instance (ms).
    pub fn lease_ms(&self) -> i64 {
        self.lease_ms
    }

    /// How often to look for other instances' work (ms).
    pub fn poll_ms(&self) -> u64 {
        self.poll_ms
    }

    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// True when other processes may write the same store at the same time
    /// (PostgreSQL): the live feed and the outbox then poll it.
    pub fn is_shared(&self) -> bool {
        self.dialect() == Dialect::Postgres
    }

    /// The name of the column that numbers rows in insertion order.
    fn seq_col(&self) -> &'static str {
        match self.dialect() {
            Dialect::Sqlite => "rowid",
            Dialect::Postgres => "seq",
        }
    }

    /// Run `f` in one transaction (committed if it returns Ok).
    pub fn with_tx<T>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let run = |db: &mut Db| {
            let mut tx = db.transaction()?;
            let v = f(&mut tx)?;
            tx.commit()?;
            Ok(v)
        };
        match &mut self.db {
            db @ Db::Sqlite(_) => run(db),
            db => db::off_runtime(|| run(db)),
        }
    }

    /// Run `f` while holding the store-wide lock `key`: on PostgreSQL a
    /// session advisory lock, so instances sharing the store take turns
    /// (the case desk: merging and auto-dispatch must see each other's
    /// cases); on SQLite the caller's mutex already serialises.
    pub fn serialized<T, E: From<StoreError>>(
        &mut self,
        key: i64,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        if !self.is_shared() {
            return f(self);
        }
        self.db
            .execute("SELECT pg_advisory_lock(?1)", params![key])
            .map_err(E::from)?;
        let r = f(self);
        if let Err(e) = self
            .db
            .execute("SELECT pg_advisory_unlock(?1)", params![key])
        {
            tracing::warn!(error = %e, "cannot release a store lock");
        }
        r
    }

    /// Write a batch in one transaction. Commit happens before the caller
    /// acknowledges anything to the broker or the drone.
    pub fn ingest_batch(
        &mut self,
        records: &[Record],
        now_unix_ms: i64,
    ) -> Result<BatchOutcome, StoreError> {
        let interval = self.telemetry_interval_ms;
        let mut txn = self.db.transaction()?;
        let tx = &mut txn;
        let mut out = BatchOutcome::default();
        if !records.is_empty() {
            // Instances sharing the store write batches one at a time: the
            // alerts' seq numbers then become visible in order (readers by
            // seq never skip one committed late), and two batches never
            // deadlock on the same drones' rows.
            tx.advisory_lock(LOCK_INGEST)?;
        }
        for r in records {
            match r {
                Record::Alert(a) => {
                    let new = insert_alert(tx, a, now_unix_ms)?;
                    touch_drone(tx, a.drone_id.as_str(), now_unix_ms)?;
                    out.stored.push((a.drone_id.to_string(), a.alert_id));
                    if new {
                        out.new_alerts.push(a.alert_id);
                    } else {
                        out.duplicates += 1;
                    }
                }
                Record::Event(e) => {
                    let n = tx.execute(
                        "INSERT INTO events (event_id, drone_id, t_unix_ms, kind, json, received_unix_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                        params![
                            e.event_id,
                            e.drone_id.as_str(),
                            e.t_unix_ms,
                            e.kind.name(),
                            serde_json::to_string(e).expect("serialisable"),
                            now_unix_ms
                        ],
                    )?;
                    touch_drone(tx, e.drone_id.as_str(), now_unix_ms)?;
                    out.stored.push((e.drone_id.to_string(), e.event_id));
                    if n == 0 {
                        out.duplicates += 1;
                    }
                }
                Record::CommandResult(c) => {
                    let id = c.spool_id();
                    let n = tx.execute(
                        "INSERT INTO command_results (result_id, command_id, drone_id, t_unix_ms, status, json)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                        params![
                            id,
                            c.command_id,
                            c.drone_id.as_str(),
                            c.t_unix_ms,
                            serde_json::to_value(c.status)
                                .expect("serialisable")
                                .as_str()
                                .unwrap_or_default(),
                            serde_json::to_string(c).expect("serialisable"),
                        ],
                    )?;
                    touch_drone(tx, c.drone_id.as_str(), now_unix_ms)?;
                    out.stored.push((c.drone_id.to_string(), id));
                    if n == 0 {
                        out.duplicates += 1;
                    }
                }
                Record::Status(s) => {
                    touch_drone(tx, s.drone_id.as_str(), now_unix_ms)?;
                    tx.execute(
                        "UPDATE drones SET online = ?2, status_json = ?3 WHERE drone_id = ?1",
                        params![
                            s.drone_id.as_str(),
                            s.online,
                            serde_json::to_string(s).expect("serialisable")
                        ],
                    )?;
                }
                Record::Telemetry(t) => {
                    touch_drone(tx, t.drone_id.as_str(), now_unix_ms)?;
                    let json = serde_json::to_string(t).expect("serialisable");
                    let last: i64 = tx
                        .query_opt(
                            "SELECT last_telemetry_kept_ms FROM drones WHERE drone_id = ?1",
                            params![t.drone_id.as_str()],
                        )?
                        .ok_or_else(|| StoreError::Decode("drone row missing".into()))?
                        .get(0)?;
                    tx.execute(
                        "UPDATE drones SET telemetry_json = ?2 WHERE drone_id = ?1",
                        params![t.drone_id.as_str(), &json],
                    )?;
                    if t.t_unix_ms - last >= interval || t.t_unix_ms < last {
                        tx.execute(
                            "INSERT INTO telemetry (drone_id, t_unix_ms, lat_deg, lon_deg, alt_m, json)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            params![
                                t.drone_id.as_str(),
                                t.t_unix_ms,
                                t.position.lat_deg,
                                t.position.lon_deg,
                                t.position.alt_m,
                                json
                            ],
                        )?;
                        tx.execute(
                            "UPDATE drones SET last_telemetry_kept_ms = ?2 WHERE drone_id = ?1",
                            params![t.drone_id.as_str(), t.t_unix_ms],
                        )?;
                        out.telemetry_kept += 1;
                    } else {
                        out.telemetry_dropped += 1;
                    }
                }
                Record::Quarantine(q) => {
                    let head = &q.payload[..q.payload.len().min(QUARANTINE_KEEP_BYTES)];
                    tx.execute(
                        "INSERT INTO quarantine (received_unix_ms, topic, class, reason, payload_len, payload_sha256, payload_head)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            now_unix_ms,
                            &q.topic,
                            &q.class,
                            &q.reason,
                            q.payload.len() as i64,
                            hex::encode(Sha256::digest(&q.payload)),
                            head
                        ],
                    )?;
                    out.quarantined += 1;
                }
            }
        }
        txn.commit()?;
        Ok(out)
    }

    pub fn alert_count(&self) -> Result<u64, StoreError> {
        self.db
            .query_opt("SELECT count(*) FROM alerts", params![])?
            .map(|r| r.get::<u64>(0))
            .unwrap_or(Ok(0))
    }

    pub fn recent_alerts(&self, limit: u32) -> Result<Vec<AlertRow>, StoreError> {
        self.db
            .query(
                "SELECT a.alert_id, a.drone_id, a.category, a.confidence, a.t_unix_ms, a.lat_deg, a.lon_deg,
                    a.person_count, a.received_unix_ms, s.alert_id IS NOT NULL
             FROM alerts a LEFT JOIN snapshots s ON s.alert_id = a.alert_id
             ORDER BY a.t_unix_ms DESC, a.alert_id DESC LIMIT ?1",
                params![limit],
            )?
            .iter()
            .map(|r| {
                Ok(AlertRow {
                    alert_id: r.get(0)?,
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
            })
            .collect()
    }

    /// The full alert as the drone sent it (snapshot included).
    pub fn alert(&self, id: Uuid) -> Result<Option<Alert>, StoreError> {
        let Some(row) = self
            .db
            .query_opt("SELECT json FROM alerts WHERE alert_id = ?1", params![id])?
        else {
            return Ok(None);
        };
        let json: String = row.get(0)?;
        let mut a: Alert = serde_json::from_str(&json)?;
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
        self.db
            .query_opt(
                "SELECT width, height, jpeg FROM snapshots WHERE alert_id = ?1",
                params![id],
            )?
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .transpose()
    }

    pub fn quarantine(&self, limit: u32) -> Result<Vec<QuarantineRow>, StoreError> {
        self.db
            .query(
                "SELECT id, received_unix_ms, topic, class, reason, payload_len, payload_sha256
             FROM quarantine ORDER BY id DESC LIMIT ?1",
                params![limit],
            )?
            .iter()
            .map(|r| {
                Ok(QuarantineRow {
                    id: r.get(0)?,
                    received_unix_ms: r.get(1)?,
                    topic: r.get(2)?,
                    class: r.get(3)?,
                    reason: r.get(4)?,
                    payload_len: r.get(5)?,
                    payload_sha256: r.get(6)?,
                })
            })
            .collect()
    }
}

fn touch_drone(tx: &mut Tx<'_>, drone_id: &str, now: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO drones (drone_id, first_seen_unix_ms, last_seen_unix_ms) VALUES (?1, ?2, ?2)
         ON CONFLICT(drone_id) DO UPDATE SET last_seen_unix_ms = excluded.last_seen_unix_ms",
        params![drone_id, now],
    )?;
    Ok(())
}

/// Insert an alert and its snapshot; false if it was already there.
fn insert_alert(tx: &mut Tx<'_>, a: &Alert, now: i64) -> Result<bool, StoreError> {
    // The JSON column holds the alert without its snapshot (the JPEG lives
    // in `snapshots` as a BLOB, byte for byte as it arrived).
    let mut meta = a.clone();
    let snap = meta.snapshot.take();
    let (lat, lon) = match (&a.location_status, &a.location) {
        (LocationStatus::Geotagged, Some(g)) => (Some(g.lat_deg), Some(g.lon_deg)),
        _ => (None, None),
    };
    let n = tx.execute(
        "INSERT INTO alerts (alert_id, drone_id, category, confidence, t_first_unix_ms, t_unix_ms,
                location_status, lat_deg, lon_deg, person_count, json, received_unix_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT DO NOTHING",
        params![
            a.alert_id,
            a.drone_id.as_str(),
            a.category.as_str(),
            a.confidence,
            a.t_first_unix_ms,
            a.t_unix_ms,
            if lat.is_some() {
                "geotagged"
            } else {
                "unknown"
            },
            lat,
            lon,
            a.person_count,
            serde_json::to_string(&meta).expect("serialisable"),
            now
        ],
    )?;
    if n == 1 {
        if let Some(s) = snap {
            tx.execute(
                "INSERT INTO snapshots (alert_id, width, height, sha256, jpeg) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    a.alert_id,
                    s.width,
                    s.height,
                    hex::encode(Sha256::digest(&s.jpeg)),
                    s.jpeg
                ],
            )?;
        }
    }
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<crate::Config, String> {
        crate::Config::parse(toml, Path::new("gs.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn store_section_is_validated_with_clear_messages() {
        let c = parse("").unwrap();
        assert_eq!(c.store.backend, Backend::Sqlite);
        let c = parse(
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://gs:pw@db.example:5432/tiancha\"\n",
        )
        .unwrap();
        assert_eq!(c.store.backend, Backend::Postgres);

        let e = parse("[store]\nbackend = \"postgres\"\n").unwrap_err();
        assert!(
            e.contains("gs.toml") && e.contains("needs store.url"),
            "{e}"
        );
        let e = parse("[store]\nurl = \"postgres://x@h/db\"\n").unwrap_err();
        assert!(e.contains("only for backend = \"postgres\""), "{e}");
        let e = parse(
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://gs:hunter2@h:notaport/db\"\n",
        )
        .unwrap_err();
        assert!(e.contains("not a PostgreSQL connection string"), "{e}");
        assert!(!e.contains("hunter2"), "the password is not echoed: {e}");
        let e = parse("[store]\nbackend = \"mysql\"\n").unwrap_err();
        assert!(e.contains("mysql"), "{e}");
        let e = parse(
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://h/db\"\nlease_ms = 5000\n[dispatch]\nrequest_timeout_ms = 10000\n",
        )
        .unwrap_err();
        assert!(
            e.contains("lease_ms") && e.contains("request_timeout_ms"),
            "{e}"
        );
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://gs:secret@db:5432/t"),
            "postgres://gs:***@db:5432/t"
        );
        assert_eq!(redact_url("postgres://gs@db/t"), "postgres://gs@db/t");
        assert_eq!(redact_url("host=db user=gs"), "host=db user=gs");
    }

    #[test]
    fn an_older_sqlite_store_is_migrated_in_place() {
        // A store made before schema versioning (user_version 0, no lease
        // columns) opens, gains the columns, and keeps its rows.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("store.db");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c.execute(
                "INSERT INTO kv (key, value) VALUES ('evidence_key', 'abc')",
                [],
            )
            .unwrap();
        }
        let st = Store::open(&p, 1000).unwrap();
        assert_eq!(st.kv("evidence_key").unwrap().as_deref(), Some("abc"));
        drop(st);
        let c = Connection::open(&p).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS_SQLITE.len() as i64);
        c.prepare("SELECT lease_owner, lease_until_unix_ms FROM outbox")
            .expect("the lease columns exist");
        // Opening again runs nothing twice.
        drop(c);
        Store::open(&p, 1000).unwrap();
    }
}
