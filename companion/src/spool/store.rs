//! The spool's on-disk half: one SQLite file in WAL mode with
//! `synchronous=FULL`, so an accepted entry survives a killed process and a
//! power cut. Entries are written in batches (group commit: one fsync for
//! many entries) and deleted in batches.
//!
//! A full disk (ENOSPC, SQLite's `SQLITE_FULL`) refuses the batch being
//! written ([`StoreError::DiskFull`]) and nothing else: the transaction
//! rolls back and every entry accepted before stays. The WAL is truncated
//! to 256 KB after each checkpoint (`journal_size_limit`), so the spool
//! gives back disk it no longer needs and a full disk is felt (and
//! reported) within a few entries rather than after the WAL's high-water
//! mark.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::{EntryMeta, Priority};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("spool database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("spool disk is full: {0}")]
    DiskFull(rusqlite::Error),
    #[error("spool database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

fn classify(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => StoreError::DiskFull(e),
        _ => StoreError::Sqlite(e),
    }
}

/// An entry on its way to disk.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub seq: u64,
    pub id: Uuid,
    pub priority: Priority,
    pub topic: String,
    pub payload: Vec<u8>,
    pub created_unix_ms: i64,
}

impl NewEntry {
    pub fn meta(&self) -> EntryMeta {
        EntryMeta {
            seq: self.seq,
            id: self.id,
            priority: self.priority,
            bytes: (self.payload.len() + self.topic.len()) as u64,
        }
    }
}

pub struct SpoolStore {
    conn: Connection,
}

impl SpoolStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             PRAGMA busy_timeout=5000;
             PRAGMA journal_size_limit=262144;
             CREATE TABLE IF NOT EXISTS entries (
                 seq INTEGER PRIMARY KEY,
                 id BLOB NOT NULL UNIQUE,
                 priority INTEGER NOT NULL,
                 topic TEXT NOT NULL,
                 payload BLOB NOT NULL,
                 created_unix_ms INTEGER NOT NULL
             );",
        )
        .map_err(open_err)?;
        Ok(Self { conn })
    }

    /// Everything a previous run left, in acceptance order.
    pub fn recover(&self) -> Result<Vec<EntryMeta>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT seq, id, priority, length(payload) + length(topic) FROM entries ORDER BY seq",
        )?;
        let rows = st.query_map([], |r| {
            let id: Vec<u8> = r.get(1)?;
            Ok(EntryMeta {
                seq: r.get::<_, i64>(0)? as u64,
                id: Uuid::from_slice(&id).unwrap_or_default(),
                priority: Priority::from_i64(r.get(2)?),
                bytes: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Write a batch durably (one transaction, one fsync). All or nothing.
    pub fn insert_batch(&mut self, entries: &[NewEntry]) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(classify)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO entries (seq, id, priority, topic, payload, created_unix_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(classify)?;
            for e in entries {
                st.execute(params![
                    e.seq as i64,
                    e.id.as_bytes().as_slice(),
                    e.priority as i64,
                    e.topic,
                    e.payload,
                    e.created_unix_ms
                ])
                .map_err(classify)?;
            }
        }
        tx.commit().map_err(classify)
    }

    /// Topic and payload of an entry, if still held.
    pub fn load(&self, seq: u64) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT topic, payload FROM entries WHERE seq = ?1")?
            .query_row([seq as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    pub fn delete_batch(&mut self, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction().map_err(classify)?;
        {
            let mut st = tx
                .prepare_cached("DELETE FROM entries WHERE seq = ?1")
                .map_err(classify)?;
            for s in seqs {
                st.execute([*s as i64]).map_err(classify)?;
            }
        }
        tx.commit().map_err(classify)
    }

    pub fn count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get::<_, i64>(0))?
            as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> NewEntry {
        NewEntry {
            seq,
            id: Uuid::now_v7(),
            priority: if seq.is_multiple_of(2) {
                Priority::High
            } else {
                Priority::Normal
            },
            topic: "tiancha/v1/drones/d/alerts".into(),
            payload: vec![seq as u8; 10],
            created_unix_ms: 0,
        }
    }

    /// A full disk (SQLite's SQLITE_FULL, here from a page limit, as
    /// ENOSPC gives on a real full disk): the batch is refused as
    /// `DiskFull`, everything accepted before stays readable, and writes
    /// work again once there is room.
    #[test]
    fn full_disk_refuses_the_batch_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let mut s = SpoolStore::open(&path).unwrap();
        let big = |seq: u64| NewEntry {
            payload: vec![seq as u8; 3000],
            ..entry(seq)
        };
        let pages: i64 = s
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        s.conn
            .execute_batch(&format!("PRAGMA max_page_count = {}", pages + 8))
            .unwrap();
        let mut seq = 1;
        let err = loop {
            match s.insert_batch(&[big(seq)]) {
                Ok(()) => seq += 1,
                Err(e) => break e,
            }
            assert!(seq < 1000, "the page limit never bit");
        };
        assert!(matches!(err, StoreError::DiskFull(_)), "{err}");
        let kept = seq - 1;
        assert!(kept >= 1);
        assert_eq!(s.count().unwrap(), kept);
        // Deleting still works on a full disk here, or fails as DiskFull:
        // never anything else.
        match s.delete_batch(&[1]) {
            Ok(()) => assert_eq!(s.count().unwrap(), kept - 1),
            Err(e) => assert!(matches!(e, StoreError::DiskFull(_)), "{e}"),
        }
        let before = s.count().unwrap();
        s.conn
            .execute_batch("PRAGMA max_page_count = 1000000")
            .unwrap();
        s.insert_batch(&[big(seq)]).unwrap();
        drop(s);
        let s = SpoolStore::open(&path).unwrap();
        assert_eq!(s.count().unwrap(), before + 1);
        assert_eq!(s.load(seq).unwrap().unwrap().1, vec![seq as u8; 3000]);
    }

    #[test]
    fn survives_reopen_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let batch: Vec<_> = (1..=5).map(entry).collect();
        {
            let mut s = SpoolStore::open(&path).unwrap();
            s.insert_batch(&batch).unwrap();
            s.delete_batch(&[2, 4]).unwrap();
        }
        let s = SpoolStore::open(&path).unwrap();
        let metas = s.recover().unwrap();
        assert_eq!(
            metas.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![1, 3, 5]
        );
        assert_eq!(metas[0], batch[0].meta());
        assert_eq!(s.load(3).unwrap().unwrap().1, vec![3u8; 10]);
        assert_eq!(s.load(2).unwrap(), None);
    }
}
