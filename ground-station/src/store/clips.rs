//! Alert clips: one row per alert whose drone was recording, naming the
//! MP4 under `{data_dir}` and its SHA-256 (the file's bytes), so a case's
//! record, its evidence links and its delivery to the dispute centre all
//! carry the same hash. Writing the same alert's clip again replaces the
//! row (the file on disk was replaced too); it never adds a second one.

use serde::Serialize;
use uuid::Uuid;

use super::db::params;
use super::{Store, StoreError, Tx};

/// A recorded clip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClipRow {
    pub alert_id: Uuid,
    pub drone_id: String,
    /// Relative to `data_dir` (e.g. `clips/<alert id>.mp4`).
    pub path: String,
    /// SHA-256 of the MP4 file, hex.
    pub sha256: String,
    pub bytes: i64,
    pub frames: i64,
    /// Arrival times of its first and last access unit (Unix ms).
    pub start_unix_ms: i64,
    pub end_unix_ms: i64,
    /// The window asked for: alert time − pre_alert_s .. + post_alert_s.
    pub window_start_unix_ms: i64,
    pub window_end_unix_ms: i64,
    pub created_unix_ms: i64,
}

const COLS: &str = "alert_id, drone_id, path, sha256, bytes, frames, start_unix_ms, end_unix_ms,
    window_start_unix_ms, window_end_unix_ms, created_unix_ms";

fn row(r: &super::db::Row) -> Result<ClipRow, StoreError> {
    Ok(ClipRow {
        alert_id: r.get(0)?,
        drone_id: r.get(1)?,
        path: r.get(2)?,
        sha256: r.get(3)?,
        bytes: r.get(4)?,
        frames: r.get(5)?,
        start_unix_ms: r.get(6)?,
        end_unix_ms: r.get(7)?,
        window_start_unix_ms: r.get(8)?,
        window_end_unix_ms: r.get(9)?,
        created_unix_ms: r.get(10)?,
    })
}

/// Record a clip (insert, or replace the alert's previous one). True when
/// the alert had no clip or one with another hash: its case's evidence
/// changed.
pub fn put_clip(tx: &mut Tx<'_>, c: &ClipRow) -> Result<bool, StoreError> {
    let old: Option<String> = tx
        .query_opt(
            "SELECT sha256 FROM clips WHERE alert_id = ?1",
            params![c.alert_id],
        )?
        .map(|r| r.get(0))
        .transpose()?;
    tx.execute(
        &format!(
            "INSERT INTO clips ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (alert_id) DO UPDATE SET drone_id = excluded.drone_id, path = excluded.path,
                sha256 = excluded.sha256, bytes = excluded.bytes, frames = excluded.frames,
                start_unix_ms = excluded.start_unix_ms, end_unix_ms = excluded.end_unix_ms,
                window_start_unix_ms = excluded.window_start_unix_ms,
                window_end_unix_ms = excluded.window_end_unix_ms,
                created_unix_ms = excluded.created_unix_ms"
        ),
        params![
            c.alert_id,
            c.drone_id.as_str(),
            c.path.as_str(),
            c.sha256.as_str(),
            c.bytes,
            c.frames,
            c.start_unix_ms,
            c.end_unix_ms,
            c.window_start_unix_ms,
            c.window_end_unix_ms,
            c.created_unix_ms
        ],
    )?;
    Ok(old.as_deref() != Some(c.sha256.as_str()))
}

impl Store {
    /// The clip of an alert, if it has one.
    pub fn clip(&self, alert_id: Uuid) -> Result<Option<ClipRow>, StoreError> {
        self.db
            .query_opt(
                &format!("SELECT {COLS} FROM clips WHERE alert_id = ?1"),
                params![alert_id],
            )?
            .map(|r| row(&r))
            .transpose()
    }

    /// The clips of these alerts, in the alerts' order.
    pub fn clips_of(&self, alerts: &[Uuid]) -> Result<Vec<ClipRow>, StoreError> {
        let mut out = vec![];
        for a in alerts {
            if let Some(c) = self.clip(*a)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// [`put_clip`] in its own transaction.
    pub fn put_clip(&mut self, c: &ClipRow) -> Result<bool, StoreError> {
        self.with_tx(|tx| put_clip(tx, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(id: Uuid, sha: &str) -> ClipRow {
        ClipRow {
            alert_id: id,
            drone_id: "d1".into(),
            path: format!("clips/{id}.mp4"),
            sha256: sha.into(),
            bytes: 12_345,
            frames: 40,
            start_unix_ms: 1_000,
            end_unix_ms: 5_100,
            window_start_unix_ms: 1_050,
            window_end_unix_ms: 5_050,
            created_unix_ms: 6_000,
        }
    }

    #[test]
    fn a_clip_is_recorded_once_per_alert_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = Store::open(&dir.path().join("store.db"), 1000).unwrap();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(st.clip(a).unwrap(), None);
        let c = clip(a, &"ab".repeat(32));
        assert!(st.put_clip(&c).unwrap(), "a new clip changes the evidence");
        assert!(
            !st.put_clip(&c).unwrap(),
            "the same clip again changes nothing"
        );
        assert_eq!(st.clip(a).unwrap(), Some(c.clone()));
        let n: i64 = st
            .db
            .query_opt("SELECT count(*) FROM clips", params![])
            .unwrap()
            .unwrap()
            .get(0)
            .unwrap();
        assert_eq!(n, 1, "recording an alert twice keeps one row");
        // Re-recorded with other bytes: the row follows the file.
        let c2 = ClipRow {
            frames: 41,
            ..clip(a, &"cd".repeat(32))
        };
        assert!(st.put_clip(&c2).unwrap());
        assert_eq!(st.clip(a).unwrap(), Some(c2.clone()));
        // In the order asked for; alerts without a clip are left out.
        let cb = clip(b, &"ef".repeat(32));
        st.put_clip(&cb).unwrap();
        let got = st.clips_of(&[b, Uuid::now_v7(), a]).unwrap();
        assert_eq!(got, vec![cb, c2]);
    }

    #[test]
    fn retention_purges_clips_of_alerts_that_are_not_evidence() {
        const T0: i64 = 1_800_000_000_000;
        let dir = tempfile::tempdir().unwrap();
        let mut st = Store::open(&dir.path().join("store.db"), 1000).unwrap();
        let alert = |id: Uuid| {
            let v = serde_json::json!({
                "schema": 1, "alert_id": id, "drone_id": "d1", "category": "fire",
                "confidence": 0.9, "t_first_unix_ms": T0, "t_unix_ms": T0 + 1_000,
                "location_status": "unknown", "tracks": [],
                "rule": {"name": "fire", "detail": ""}
            });
            let r =
                crate::ingest::classify("tiancha/v1/drones/d1/alerts", v.to_string().as_bytes());
            assert!(matches!(r, crate::store::Record::Alert(_)), "{r:?}");
            r
        };
        let (kept, gone) = (Uuid::now_v7(), Uuid::now_v7());
        st.ingest_batch(&[alert(kept), alert(gone)], T0 + 5_000)
            .unwrap();
        st.put_clip(&clip(kept, &"ab".repeat(32))).unwrap();
        st.put_clip(&clip(gone, &"cd".repeat(32))).unwrap();
        st.with_tx(|tx| {
            crate::store::cases::set_triage(
                tx,
                kept,
                "case",
                Some(Uuid::now_v7()),
                "",
                "op1",
                6_000,
            )
        })
        .unwrap();
        let p = st.purge(Some(T0 + 10_000), None, T0 + 10_000).unwrap();
        assert_eq!(p.clip_paths, vec![format!("clips/{gone}.mp4")]);
        assert!(st.clip(gone).unwrap().is_none());
        assert!(st.clip(kept).unwrap().is_some(), "case evidence is kept");
    }
}
