//! Commands sent to drones, drones' state, and the retention purge.

use serde::Serialize;
use tiancha_protocol::{Command, CommandResult};

use super::db::params;
use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandRow {
    pub command: Command,
    pub results: Vec<CommandResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DroneRow {
    pub drone_id: String,
    pub online: bool,
    pub last_seen_unix_ms: i64,
    pub status: Option<serde_json::Value>,
    pub telemetry: Option<serde_json::Value>,
}

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Purged {
    pub snapshots: u64,
    pub telemetry: u64,
    pub sessions: u64,
    /// Clip records removed with their alerts' snapshots; the caller
    /// deletes these files (paths relative to `data_dir`).
    pub clip_paths: Vec<String>,
}

impl Store {
    pub fn insert_command(&mut self, c: &Command) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO commands (command_id, drone_id, kind, json, issued_by, t_unix_ms, expires_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                c.command_id,
                c.drone_id.as_str(),
                c.kind.name(),
                serde_json::to_string(c)?,
                &c.issued_by,
                c.t_unix_ms,
                c.expires_unix_ms
            ],
        )?;
        Ok(())
    }

    /// Recent commands (of one drone, or all) with their results.
    pub fn commands(&self, drone: Option<&str>, limit: u32) -> Result<Vec<CommandRow>, StoreError> {
        let cmds = self.db.query(
            "SELECT json FROM commands WHERE (CAST(?1 AS TEXT) IS NULL OR drone_id = CAST(?1 AS TEXT))
             ORDER BY t_unix_ms DESC LIMIT ?2",
            params![drone, limit.clamp(1, 1000)],
        )?;
        let res_sql = format!(
            "SELECT json FROM command_results WHERE command_id = ?1 ORDER BY t_unix_ms, {}",
            self.seq_col()
        );
        let mut out = vec![];
        for r in cmds {
            let command: Command = serde_json::from_str(&r.get::<String>(0)?)?;
            let results = self
                .db
                .query(&res_sql, params![command.command_id])?
                .iter()
                .filter_map(|r| {
                    r.get::<String>(0)
                        .ok()
                        .and_then(|j| serde_json::from_str(&j).ok())
                })
                .collect();
            out.push(CommandRow { command, results });
        }
        Ok(out)
    }

    pub fn command_exists(&self, id: uuid::Uuid) -> Result<bool, StoreError> {
        Ok(self
            .db
            .query_opt("SELECT 1 FROM commands WHERE command_id = ?1", params![id])?
            .is_some())
    }

    pub fn drones(&self) -> Result<Vec<DroneRow>, StoreError> {
        self.db
            .query(
                "SELECT drone_id, online, last_seen_unix_ms, status_json, telemetry_json FROM drones ORDER BY drone_id",
                params![],
            )?
            .iter()
            .map(|r| {
                let s: Option<String> = r.get(3)?;
                let t: Option<String> = r.get(4)?;
                Ok(DroneRow {
                    drone_id: r.get(0)?,
                    online: r.get(1)?,
                    last_seen_unix_ms: r.get(2)?,
                    status: s.and_then(|s| serde_json::from_str(&s).ok()),
                    telemetry: t.and_then(|s| serde_json::from_str(&s).ok()),
                })
            })
            .collect()
    }

    /// A drone's recent track: (t, lat, lon) since `since_unix_ms`.
    pub fn track(
        &self,
        drone: &str,
        since_unix_ms: i64,
    ) -> Result<Vec<(i64, f64, f64)>, StoreError> {
        self.db
            .query(
                "SELECT t_unix_ms, lat_deg, lon_deg FROM telemetry WHERE drone_id = ?1 AND t_unix_ms >= ?2
             ORDER BY t_unix_ms LIMIT 5000",
                params![drone, since_unix_ms],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .collect()
    }

    /// Delete snapshots and clips of alerts older than `snapshot_before`
    /// that are not evidence of a case, telemetry older than
    /// `telemetry_before`, and expired sessions. Cases, their alerts and
    /// evidence are kept.
    pub fn purge(
        &mut self,
        snapshot_before: Option<i64>,
        telemetry_before: Option<i64>,
        now: i64,
    ) -> Result<Purged, StoreError> {
        self.with_tx(|tx| {
            let mut p = Purged::default();
            if let Some(t) = snapshot_before {
                const NOT_EVIDENCE: &str =
                    "SELECT a.alert_id FROM alerts a LEFT JOIN alert_triage t USING (alert_id)
                    WHERE a.received_unix_ms < ?1 AND (t.state IS NULL OR t.state != 'case')";
                p.snapshots = tx.execute(
                    &format!("DELETE FROM snapshots WHERE alert_id IN ({NOT_EVIDENCE})"),
                    params![t],
                )?;
                p.clip_paths = tx
                    .query(
                        &format!(
                            "DELETE FROM clips WHERE alert_id IN ({NOT_EVIDENCE}) RETURNING path"
                        ),
                        params![t],
                    )?
                    .iter()
                    .map(|r| r.get(0))
                    .collect::<Result<_, _>>()?;
            }
            if let Some(t) = telemetry_before {
                p.telemetry =
                    tx.execute("DELETE FROM telemetry WHERE t_unix_ms < ?1", params![t])?;
            }
            p.sessions = tx.execute(
                "DELETE FROM sessions WHERE expires_unix_ms <= ?1",
                params![now],
            )?;
            Ok(p)
        })
    }
}
