//! Cases, their alerts, timeline and notes; alert triage state.

use serde::Serialize;
use tiancha_protocol::{Alert, CaseStatus, Category, GeoPoint, GridCell, Priority};
use uuid::Uuid;

use super::db::{params, Row};
use super::{Store, StoreError, Tx};
use crate::cases::OpenCase;

/// How far along its life a status is (a callback never moves a case back).
pub fn status_rank(s: CaseStatus) -> u8 {
    match s {
        CaseStatus::Raised => 0,
        CaseStatus::Confirmed => 1,
        CaseStatus::Dispatched => 2,
        CaseStatus::Received => 3,
        CaseStatus::Mediating => 4,
        CaseStatus::Resolved => 5,
        CaseStatus::Closed | CaseStatus::Rejected => 6,
    }
}

pub fn parse_status(s: &str) -> Option<CaseStatus> {
    serde_json::from_value(serde_json::Value::String(s.into())).ok()
}

pub fn priority_str(p: Priority) -> &'static str {
    match p {
        Priority::Low => "low",
        Priority::Normal => "normal",
        Priority::High => "high",
        Priority::Urgent => "urgent",
    }
}

pub fn parse_priority(s: &str) -> Option<Priority> {
    serde_json::from_value(serde_json::Value::String(s.into())).ok()
}

/// A case as the desk shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseRow {
    pub case_id: Uuid,
    pub category: Category,
    pub priority: Priority,
    pub priority_reasons: Vec<String>,
    pub status: CaseStatus,
    pub location: GeoPoint,
    pub grid: Option<GridCell>,
    pub t_start_unix_ms: i64,
    pub t_end_unix_ms: i64,
    pub title: String,
    pub description: String,
    pub confirmed_by: Option<String>,
    pub route: Option<String>,
    pub max_person_count: Option<u32>,
    pub created_unix_ms: i64,
    pub updated_unix_ms: i64,
    pub alert_count: u32,
    /// Delivery state of the outbox entry, if any.
    pub delivery: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub id: i64,
    pub t_unix_ms: i64,
    /// `status` (the case moved), `note`, `alert_merged`, `dispatch`.
    pub kind: String,
    pub status: Option<String>,
    pub actor: String,
    pub note: String,
}

/// A new case, ready to insert.
#[derive(Debug, Clone)]
pub struct NewCase {
    pub case_id: Uuid,
    pub category: Category,
    pub priority: Priority,
    pub priority_reasons: Vec<String>,
    pub status: CaseStatus,
    pub location: GeoPoint,
    pub grid: Option<GridCell>,
    pub t_start_unix_ms: i64,
    pub t_end_unix_ms: i64,
    pub title: String,
    pub description: String,
    pub confirmed_by: Option<String>,
    pub route: Option<String>,
    pub max_person_count: Option<u32>,
}

/// Filters of the case list.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub status: Option<CaseStatus>,
    pub priority: Option<Priority>,
    pub category: Option<Category>,
    pub village: Option<String>,
    pub limit: u32,
}

/// An alert in the triage list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertListRow {
    pub alert_id: Uuid,
    pub drone_id: String,
    pub category: String,
    pub confidence: f64,
    pub t_unix_ms: i64,
    pub received_unix_ms: i64,
    pub lat_deg: Option<f64>,
    pub lon_deg: Option<f64>,
    pub person_count: Option<i64>,
    pub has_snapshot: bool,
    /// `new`, `case` or `dismissed`.
    pub triage: String,
    pub case_id: Option<Uuid>,
    pub reason: String,
}

const CASE_COLS: &str = "c.case_id, c.category, c.priority, c.priority_reasons, c.status, c.lat_deg, c.lon_deg,
    c.grid_id, c.county, c.township, c.village, c.t_start_unix_ms, c.t_end_unix_ms, c.title, c.description,
    c.confirmed_by, c.route, c.max_person_count, c.created_unix_ms, c.updated_unix_ms,
    (SELECT count(*) FROM alert_triage t WHERE t.case_id = c.case_id AND t.state = 'case'),
    (SELECT state FROM outbox o WHERE o.case_id = c.case_id)";

fn case_row(r: &Row) -> Result<CaseRow, StoreError> {
    let grid_id: String = r.get(7)?;
    Ok(CaseRow {
        case_id: r.get(0)?,
        category: Category::parse(&r.get::<String>(1)?).unwrap_or(Category::OtherHazard),
        priority: parse_priority(&r.get::<String>(2)?).unwrap_or(Priority::Normal),
        priority_reasons: serde_json::from_str(&r.get::<String>(3)?).unwrap_or_default(),
        status: parse_status(&r.get::<String>(4)?).unwrap_or(CaseStatus::Raised),
        location: GeoPoint::new(r.get(5)?, r.get(6)?),
        grid: if grid_id.is_empty() {
            None
        } else {
            Some(GridCell {
                grid_id: grid_id.clone(),
                county: r.get(8)?,
                township: r.get(9)?,
                village: r.get(10)?,
            })
        },
        t_start_unix_ms: r.get(11)?,
        t_end_unix_ms: r.get(12)?,
        title: r.get(13)?,
        description: r.get(14)?,
        confirmed_by: r.get(15)?,
        route: r.get(16)?,
        max_person_count: r.get(17)?,
        created_unix_ms: r.get(18)?,
        updated_unix_ms: r.get(19)?,
        alert_count: r.get(20)?,
        delivery: r.get(21)?,
    })
}

fn parse_alerts(rows: Vec<Row>) -> Result<Vec<Alert>, StoreError> {
    rows.iter()
        .map(|r| Ok(serde_json::from_str(&r.get::<String>(0)?)?))
        .collect()
}

impl Store {
    pub fn cases(&self, f: &CaseFilter) -> Result<Vec<CaseRow>, StoreError> {
        // Every filter is a bound parameter; NULL means "any".
        let sql = format!(
            "SELECT {CASE_COLS} FROM cases c
             WHERE (CAST(?1 AS TEXT) IS NULL OR c.status = CAST(?1 AS TEXT))
               AND (CAST(?2 AS TEXT) IS NULL OR c.priority = CAST(?2 AS TEXT))
               AND (CAST(?3 AS TEXT) IS NULL OR c.category = CAST(?3 AS TEXT))
               AND (CAST(?4 AS TEXT) IS NULL OR c.village = CAST(?4 AS TEXT))
             ORDER BY c.updated_unix_ms DESC, c.case_id DESC LIMIT ?5"
        );
        self.db
            .query(
                &sql,
                params![
                    f.status.map(|s| s.as_str()),
                    f.priority.map(priority_str),
                    f.category.map(|c| c.as_str()),
                    &f.village,
                    f.limit.clamp(1, 10_000)
                ],
            )?
            .iter()
            .map(case_row)
            .collect()
    }

    pub fn case(&self, id: Uuid) -> Result<Option<CaseRow>, StoreError> {
        let sql = format!("SELECT {CASE_COLS} FROM cases c WHERE c.case_id = ?1");
        self.db
            .query_opt(&sql, params![id])?
            .as_ref()
            .map(case_row)
            .transpose()
    }

    /// Ids of the alerts a case merges, oldest first.
    pub fn case_alert_ids(&self, id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let rows = self.db.query(
            "SELECT t.alert_id FROM alert_triage t JOIN alerts a USING (alert_id)
             WHERE t.case_id = ?1 AND t.state = 'case' ORDER BY a.t_unix_ms, a.alert_id",
            params![id],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<String>(0).ok().and_then(|s| s.parse().ok()))
            .collect())
    }

    pub fn timeline(&self, id: Uuid) -> Result<Vec<TimelineEntry>, StoreError> {
        self.db
            .query(
                "SELECT id, t_unix_ms, kind, status, actor, note FROM case_timeline
             WHERE case_id = ?1 ORDER BY t_unix_ms, id",
                params![id],
            )?
            .iter()
            .map(|r| {
                Ok(TimelineEntry {
                    id: r.get(0)?,
                    t_unix_ms: r.get(1)?,
                    kind: r.get(2)?,
                    status: r.get(3)?,
                    actor: r.get(4)?,
                    note: r.get(5)?,
                })
            })
            .collect()
    }

    /// Open cases (not resolved, closed or rejected) whose latest alert is
    /// at or after `since_unix_ms`.
    pub fn open_cases(&self, since_unix_ms: i64) -> Result<Vec<OpenCase>, StoreError> {
        self.db
            .query(
                "SELECT case_id, category, lat_deg, lon_deg, t_end_unix_ms FROM cases
             WHERE t_end_unix_ms >= ?1 AND status NOT IN ('resolved', 'closed', 'rejected')",
                params![since_unix_ms],
            )?
            .iter()
            .map(|r| {
                Ok(OpenCase {
                    case_id: r.get(0)?,
                    category: Category::parse(&r.get::<String>(1)?)
                        .unwrap_or(Category::OtherHazard),
                    location: GeoPoint::new(r.get(2)?, r.get(3)?),
                    t_end_unix_ms: r.get(4)?,
                })
            })
            .collect()
    }

    /// (state, case id) of an alert's triage; None while untriaged.
    pub fn triage_of(&self, alert_id: Uuid) -> Result<Option<(String, Option<Uuid>)>, StoreError> {
        self.db
            .query_opt(
                "SELECT state, case_id FROM alert_triage WHERE alert_id = ?1",
                params![alert_id],
            )?
            .map(|r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<Option<String>>(1)?.and_then(|s| s.parse().ok()),
                ))
            })
            .transpose()
    }

    /// Untriaged alerts of a category whose time is within [from, to].
    pub fn untriaged_alerts(
        &self,
        category: Category,
        from_unix_ms: i64,
        to_unix_ms: i64,
    ) -> Result<Vec<Alert>, StoreError> {
        parse_alerts(self.db.query(
            "SELECT a.json FROM alerts a LEFT JOIN alert_triage t USING (alert_id)
             WHERE a.category = ?1 AND a.t_unix_ms BETWEEN ?2 AND ?3 AND t.alert_id IS NULL
             ORDER BY a.t_unix_ms LIMIT 1000",
            params![category.as_str(), from_unix_ms, to_unix_ms],
        )?)
    }

    /// Alerts stored after `cursor` (a rowid; `seq` on PostgreSQL), oldest
    /// first, at most `limit`, with their row numbers (the triage worker's
    /// durable cursor, the live feed's poll).
    pub fn alerts_after(&self, cursor: i64, limit: u32) -> Result<Vec<(i64, Alert)>, StoreError> {
        let seq = self.seq_col();
        self.db
            .query(
                &format!("SELECT {seq}, json FROM alerts WHERE {seq} > ?1 ORDER BY {seq} LIMIT ?2"),
                params![cursor, limit],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, serde_json::from_str(&r.get::<String>(1)?)?)))
            .collect()
    }

    /// The row number of the newest alert (0 when there is none).
    pub fn last_alert_seq(&self) -> Result<i64, StoreError> {
        let seq = self.seq_col();
        self.db
            .query_opt(
                &format!("SELECT coalesce(max({seq}), 0) FROM alerts"),
                params![],
            )?
            .map(|r| r.get(0))
            .unwrap_or(Ok(0))
    }

    pub fn kv(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.db
            .query_opt("SELECT value FROM kv WHERE key = ?1", params![key])?
            .map(|r| r.get(0))
            .transpose()
    }

    /// The alert list with triage state (newest first). `state`: `new`,
    /// `case`, `dismissed` or None for all.
    pub fn alert_list(
        &self,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AlertListRow>, StoreError> {
        self.db
            .query(
                "SELECT a.alert_id, a.drone_id, a.category, a.confidence, a.t_unix_ms, a.received_unix_ms,
                    a.lat_deg, a.lon_deg, a.person_count,
                    EXISTS (SELECT 1 FROM snapshots s WHERE s.alert_id = a.alert_id),
                    coalesce(t.state, 'new'), t.case_id, coalesce(t.reason, '')
             FROM alerts a LEFT JOIN alert_triage t USING (alert_id)
             WHERE (CAST(?1 AS TEXT) IS NULL OR coalesce(t.state, 'new') = CAST(?1 AS TEXT))
             ORDER BY a.t_unix_ms DESC, a.alert_id DESC LIMIT ?2",
                params![state, limit.clamp(1, 10_000)],
            )?
            .iter()
            .map(|r| {
                Ok(AlertListRow {
                    alert_id: r.get(0)?,
                    drone_id: r.get(1)?,
                    category: r.get(2)?,
                    confidence: r.get(3)?,
                    t_unix_ms: r.get(4)?,
                    received_unix_ms: r.get(5)?,
                    lat_deg: r.get(6)?,
                    lon_deg: r.get(7)?,
                    person_count: r.get(8)?,
                    has_snapshot: r.get(9)?,
                    triage: r.get(10)?,
                    case_id: r.get::<Option<String>>(11)?.and_then(|s| s.parse().ok()),
                    reason: r.get(12)?,
                })
            })
            .collect()
    }

    /// SHA-256 (hex) of an alert's snapshot, if it has one.
    pub fn snapshot_sha256(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        self.db
            .query_opt(
                "SELECT sha256 FROM snapshots WHERE alert_id = ?1",
                params![id],
            )?
            .map(|r| r.get(0))
            .transpose()
    }
}

// ------------------------------------------------------------ writes (in a transaction)

pub fn insert_case(tx: &mut Tx<'_>, c: &NewCase, now: i64) -> Result<(), StoreError> {
    let g = c.grid.clone().unwrap_or(GridCell {
        grid_id: String::new(),
        county: String::new(),
        township: String::new(),
        village: String::new(),
    });
    tx.execute(
        "INSERT INTO cases (case_id, category, priority, priority_reasons, status, lat_deg, lon_deg,
            grid_id, county, township, village, t_start_unix_ms, t_end_unix_ms, title, description,
            confirmed_by, route, max_person_count, created_unix_ms, updated_unix_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?19)",
        params![
        c.case_id,
        c.category.as_str(),
        priority_str(c.priority),
        serde_json::to_string(&c.priority_reasons)?,
        c.status.as_str(),
        c.location.lat_deg,
        c.location.lon_deg,
        g.grid_id,
        g.county,
        g.township,
        g.village,
        c.t_start_unix_ms,
        c.t_end_unix_ms,
        &c.title,
        &c.description,
        &c.confirmed_by,
        &c.route,
        c.max_person_count,
        now
    ])?;
    Ok(())
}

/// Record an alert's triage (`case`, `dismissed`), replacing any earlier one.
pub fn set_triage(
    tx: &mut Tx<'_>,
    alert_id: Uuid,
    state: &str,
    case_id: Option<Uuid>,
    reason: &str,
    actor: &str,
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO alert_triage (alert_id, state, case_id, reason, actor, t_unix_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(alert_id) DO UPDATE SET state = excluded.state, case_id = excluded.case_id,
            reason = excluded.reason, actor = excluded.actor, t_unix_ms = excluded.t_unix_ms",
        params![alert_id, state, case_id, reason, actor, now],
    )?;
    Ok(())
}

/// Update what merging changes: time window, priority, person count.
// One UPDATE's columns, named at the call site; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn update_case_merge(
    tx: &mut Tx<'_>,
    case_id: Uuid,
    t_start: i64,
    t_end: i64,
    priority: Priority,
    reasons: &[String],
    max_person_count: Option<u32>,
    title: &str,
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE cases SET t_start_unix_ms = ?2, t_end_unix_ms = ?3, priority = ?4, priority_reasons = ?5,
            max_person_count = ?6, title = ?7, updated_unix_ms = ?8 WHERE case_id = ?1",
    params![
        case_id,
        t_start,
        t_end,
        priority_str(priority),
        serde_json::to_string(reasons)?,
        max_person_count,
        title,
        now
    ])?;
    Ok(())
}

/// Add a timeline entry. `dedup`: entries with the same key are kept once
/// (a repeated callback). Returns false if it was a duplicate.
#[allow(clippy::too_many_arguments)]
pub fn add_timeline(
    tx: &mut Tx<'_>,
    case_id: Uuid,
    t_unix_ms: i64,
    kind: &str,
    status: Option<CaseStatus>,
    actor: &str,
    note: &str,
    dedup: Option<&str>,
) -> Result<bool, StoreError> {
    let n = tx.execute(
        "INSERT INTO case_timeline (case_id, t_unix_ms, kind, status, actor, note, dedup)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        params![
            case_id,
            t_unix_ms,
            kind,
            status.map(|s| s.as_str()),
            actor,
            note,
            dedup
        ],
    )?;
    tx.execute(
        "UPDATE cases SET updated_unix_ms = CASE WHEN updated_unix_ms > ?2 THEN updated_unix_ms ELSE ?2 END
         WHERE case_id = ?1",
        params![case_id, t_unix_ms],
    )?;
    Ok(n == 1)
}

/// Move a case to `status` if that is further along than where it is
/// (never backwards). Returns the status it has afterwards.
pub fn advance_status(
    tx: &mut Tx<'_>,
    case_id: Uuid,
    status: CaseStatus,
    now: i64,
) -> Result<CaseStatus, StoreError> {
    // FOR UPDATE: concurrent callbacks on one case (two instances) take turns.
    let sql = match tx.dialect() {
        super::Dialect::Sqlite => "SELECT status FROM cases WHERE case_id = ?1",
        super::Dialect::Postgres => "SELECT status FROM cases WHERE case_id = ?1 FOR UPDATE",
    };
    let cur: String = tx
        .query_opt(sql, params![case_id])?
        .ok_or_else(|| StoreError::NotFound(format!("no case {case_id}")))?
        .get(0)?;
    let cur = parse_status(&cur).unwrap_or(CaseStatus::Raised);
    if status_rank(status) > status_rank(cur) {
        tx.execute(
            "UPDATE cases SET status = ?2, updated_unix_ms = ?3 WHERE case_id = ?1",
            params![case_id, status.as_str(), now],
        )?;
        Ok(status)
    } else {
        Ok(cur)
    }
}

pub fn set_kv(tx: &mut Tx<'_>, key: &str, value: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}
