//! Commands sent to drones, drones' state, and the retention purge.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use tiancha_protocol::{Command, CommandResult};

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
}

impl Store {
    pub fn insert_command(&mut self, c: &Command) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO commands (command_id, drone_id, kind, json, issued_by, t_unix_ms, expires_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                c.command_id.to_string(),
                c.drone_id.as_str(),
                c.kind.name(),
                serde_json::to_string(c)?,
                c.issued_by,
                c.t_unix_ms,
                c.expires_unix_ms
            ])?;
        Ok(())
    }

    /// Recent commands (of one drone, or all) with their results.
    pub fn commands(&self, drone: Option<&str>, limit: u32) -> Result<Vec<CommandRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT json FROM commands WHERE (?1 IS NULL OR drone_id = ?1) ORDER BY t_unix_ms DESC LIMIT ?2",
        )?;
        let cmds: Vec<String> = st
            .query_map(params![drone, limit.clamp(1, 1000)], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut res = self.conn.prepare_cached(
            "SELECT json FROM command_results WHERE command_id = ?1 ORDER BY t_unix_ms, rowid",
        )?;
        let mut out = vec![];
        for j in cmds {
            let command: Command = serde_json::from_str(&j)?;
            let results = res
                .query_map([command.command_id.to_string()], |r| r.get::<_, String>(0))?
                .filter_map(|r| r.ok().and_then(|j| serde_json::from_str(&j).ok()))
                .collect();
            out.push(CommandRow { command, results });
        }
        Ok(out)
    }

    pub fn command_exists(&self, id: uuid::Uuid) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM commands WHERE command_id = ?1")?
            .query_row([id.to_string()], |_| Ok(()))
            .optional()?
            .is_some())
    }

    pub fn drones(&self) -> Result<Vec<DroneRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT drone_id, online, last_seen_unix_ms, status_json, telemetry_json FROM drones ORDER BY drone_id",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut out = vec![];
        for r in rows {
            let (drone_id, online, last_seen_unix_ms, s, t) = r?;
            out.push(DroneRow {
                drone_id,
                online,
                last_seen_unix_ms,
                status: s.and_then(|s| serde_json::from_str(&s).ok()),
                telemetry: t.and_then(|s| serde_json::from_str(&s).ok()),
            });
        }
        Ok(out)
    }

    /// A drone's recent track: (t, lat, lon) since `since_unix_ms`.
    pub fn track(
        &self,
        drone: &str,
        since_unix_ms: i64,
    ) -> Result<Vec<(i64, f64, f64)>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT t_unix_ms, lat_deg, lon_deg FROM telemetry WHERE drone_id = ?1 AND t_unix_ms >= ?2
             ORDER BY t_unix_ms LIMIT 5000",
        )?;
        let rows = st.query_map(params![drone, since_unix_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Delete snapshots of alerts older than `snapshot_before` that are not
    /// evidence of a case, telemetry older than `telemetry_before`, and
    /// expired sessions. Cases, their alerts and evidence are kept.
    pub fn purge(
        &mut self,
        snapshot_before: Option<i64>,
        telemetry_before: Option<i64>,
        now: i64,
    ) -> Result<Purged, StoreError> {
        let tx = self.conn.transaction()?;
        let mut p = Purged::default();
        if let Some(t) = snapshot_before {
            p.snapshots = tx.execute(
                "DELETE FROM snapshots WHERE alert_id IN (
                    SELECT a.alert_id FROM alerts a LEFT JOIN alert_triage t USING (alert_id)
                    WHERE a.received_unix_ms < ?1 AND (t.state IS NULL OR t.state != 'case'))",
                [t],
            )? as u64;
        }
        if let Some(t) = telemetry_before {
            p.telemetry = tx.execute("DELETE FROM telemetry WHERE t_unix_ms < ?1", [t])? as u64;
        }
        p.sessions = tx.execute("DELETE FROM sessions WHERE expires_unix_ms <= ?1", [now])? as u64;
        tx.commit()?;
        Ok(p)
    }
}
