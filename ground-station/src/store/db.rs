//! The two engines behind one small interface: SQLite (rusqlite, the
//! default) and PostgreSQL (the sync `postgres` crate, for several
//! ground-station instances sharing one store).
//!
//! The store's SQL is written once, in the common subset of both
//! dialects (`INSERT ... ON CONFLICT DO NOTHING`, `RETURNING`,
//! `CAST(?1 AS TEXT) IS NULL` for optional filters), with `?N`
//! placeholders; for PostgreSQL they become `$N`. Values cross the seam
//! as [`Value`] (NULL, integer, real, text, blob), rows as [`Row`]. Where
//! the dialects truly differ (row ids, schema) the caller asks
//! [`Dialect`].

use std::cell::RefCell;
use std::collections::HashMap;

use postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use rusqlite::types::{ToSqlOutput, ValueRef};
use uuid::Uuid;

use super::StoreError;

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to or read from SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Int(v as i64)
            }
        }
    )*};
}
from_int!(i64, i32, u32, u16, u8, usize);

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(v as i64)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Real(v as f64)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Uuid> for Value {
    fn from(v: Uuid) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(v.to_vec())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}
impl<T: Clone + Into<Value>> From<&Option<T>> for Value {
    fn from(v: &Option<T>) -> Self {
        v.clone().map(Into::into).unwrap_or(Value::Null)
    }
}

/// `params![a, b, ...]`: a slice of [`Value`]s.
macro_rules! params {
    () => { &[][..] as &[$crate::store::db::Value] };
    ($($x:expr),+ $(,)?) => { &[$($crate::store::db::Value::from($x)),+][..] };
}
pub(crate) use params;

/// Reading a column.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Result<Self, String>;
}

impl FromValue for Value {
    fn from_value(v: &Value) -> Result<Self, String> {
        Ok(v.clone())
    }
}
impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(*i),
            o => Err(format!("expected an integer, found {o:?}")),
        }
    }
}
macro_rules! from_value_int {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> Result<Self, String> {
                let i = i64::from_value(v)?;
                <$t>::try_from(i).map_err(|_| format!("integer {i} out of range"))
            }
        }
    )*};
}
from_value_int!(i32, u32, u64);
impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Real(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            o => Err(format!("expected a real, found {o:?}")),
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            o => Err(format!("expected text, found {o:?}")),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.clone().into_bytes()),
            o => Err(format!("expected a blob, found {o:?}")),
        }
    }
}
impl FromValue for Uuid {
    fn from_value(v: &Value) -> Result<Self, String> {
        // Ids are stored as text; a malformed one reads as nil (as before).
        Ok(String::from_value(v)?
            .parse()
            .unwrap_or_else(|_| Uuid::nil()))
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

impl Row {
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, StoreError> {
        let v = self
            .0
            .get(i)
            .ok_or_else(|| StoreError::Decode(format!("column {i} missing")))?;
        T::from_value(v).map_err(|e| StoreError::Decode(format!("column {i}: {e}")))
    }
}

// ------------------------------------------------------------ SQLite

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn from_sqlite(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn sqlite_query(
    c: &rusqlite::Connection,
    sql: &str,
    params: &[Value],
) -> Result<Vec<Row>, StoreError> {
    let mut st = c.prepare_cached(sql)?;
    let n = st.column_count();
    let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
    let mut out = vec![];
    while let Some(r) = rows.next()? {
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            v.push(from_sqlite(r.get_ref(i)?));
        }
        out.push(Row(v));
    }
    Ok(out)
}

fn sqlite_execute(
    c: &rusqlite::Connection,
    sql: &str,
    params: &[Value],
) -> Result<u64, StoreError> {
    Ok(c.prepare_cached(sql)?
        .execute(rusqlite::params_from_iter(params.iter()))? as u64)
}

// ------------------------------------------------------------ PostgreSQL

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let bad = || -> Box<dyn std::error::Error + Sync + Send> {
            format!("cannot bind {self:?} to a {ty} parameter").into()
        };
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i).map_err(|_| bad())?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i).map_err(|_| bad())?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(bad()),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => Err(bad()),
            },
            Value::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    s.as_str().to_sql(ty, out)
                }
                _ => Err(bad()),
            },
            Value::Blob(b) => match *ty {
                Type::BYTEA => b.as_slice().to_sql(ty, out),
                _ => Err(bad()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)? as i64),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)? as i64),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)? as i64),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)? as f64),
            Type::BYTEA => Value::Blob(<Vec<u8>>::from_sql(ty, raw)?),
            _ => Value::Text(<String>::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Value::Null)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::BYTEA
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
        )
    }
}

/// Run blocking PostgreSQL work: the sync client drives its own small
/// runtime, which may not start on a tokio worker thread, so there it
/// runs under `block_in_place` (elsewhere, e.g. in `spawn_blocking`, as is).
pub fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// `?N` → `$N` (the store's SQL has no `?` inside string literals).
pub fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// A PostgreSQL connection with its prepared statements.
pub struct Pg {
    /// Always Some until dropped (see the Drop impl).
    client: Option<postgres::Client>,
    pub stmts: HashMap<String, postgres::Statement>,
    /// Connection string (for reconnecting after the server went away).
    pub url: String,
}

impl Pg {
    pub fn connect(url: &str) -> Result<Self, postgres::Error> {
        Ok(Self {
            client: Some(postgres::Client::connect(url, postgres::NoTls)?),
            stmts: HashMap::new(),
            url: url.to_string(),
        })
    }

    pub fn client(&mut self) -> &mut postgres::Client {
        self.client.as_mut().expect("open until dropped")
    }

    /// Reconnect if the server closed the connection (restart, failover).
    pub fn ensure_open(&mut self) -> Result<(), StoreError> {
        if self.client().is_closed() {
            tracing::warn!("PostgreSQL connection lost; reconnecting");
            *self = Self::connect(&self.url)?;
        }
        Ok(())
    }
}

impl Drop for Pg {
    /// The sync client owns a small runtime, which may not be dropped on a
    /// tokio thread (a store dropped inside async code would panic): drop
    /// it on a thread of its own.
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = std::thread::spawn(move || drop(c)).join();
        }
    }
}

fn pg_stmt<C: postgres::GenericClient>(
    c: &mut C,
    stmts: &mut HashMap<String, postgres::Statement>,
    sql: &str,
) -> Result<postgres::Statement, StoreError> {
    if let Some(s) = stmts.get(sql) {
        return Ok(s.clone());
    }
    let s = c.prepare(&pg_sql(sql))?;
    stmts.insert(sql.to_string(), s.clone());
    Ok(s)
}

fn pg_refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn pg_rows(rows: Vec<postgres::Row>) -> Result<Vec<Row>, StoreError> {
    rows.into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.try_get::<_, Value>(i))
                .collect::<Result<Vec<_>, _>>()
                .map(Row)
                .map_err(StoreError::from)
        })
        .collect()
}

fn pg_query<C: postgres::GenericClient>(
    c: &mut C,
    stmts: &mut HashMap<String, postgres::Statement>,
    sql: &str,
    params: &[Value],
) -> Result<Vec<Row>, StoreError> {
    let st = pg_stmt(c, stmts, sql)?;
    pg_rows(c.query(&st, &pg_refs(params))?)
}

fn pg_execute<C: postgres::GenericClient>(
    c: &mut C,
    stmts: &mut HashMap<String, postgres::Statement>,
    sql: &str,
    params: &[Value],
) -> Result<u64, StoreError> {
    let st = pg_stmt(c, stmts, sql)?;
    Ok(c.execute(&st, &pg_refs(params))?)
}

// ------------------------------------------------------------ the seam

/// An open database.
pub enum Db {
    Sqlite(rusqlite::Connection),
    Pg(Box<RefCell<Pg>>),
}

impl Db {
    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Pg(_) => Dialect::Postgres,
        }
    }

    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        match self {
            Db::Sqlite(c) => sqlite_query(c, sql, params),
            Db::Pg(p) => off_runtime(|| {
                let mut p = p.borrow_mut();
                p.ensure_open()?;
                let Pg { client, stmts, .. } = &mut *p;
                pg_query(client.as_mut().expect("open"), stmts, sql, params)
            }),
        }
    }

    pub fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        match self {
            Db::Sqlite(c) => sqlite_execute(c, sql, params),
            Db::Pg(p) => off_runtime(|| {
                let mut p = p.borrow_mut();
                p.ensure_open()?;
                let Pg { client, stmts, .. } = &mut *p;
                pg_execute(client.as_mut().expect("open"), stmts, sql, params)
            }),
        }
    }

    /// Begin a transaction.
    pub fn transaction(&mut self) -> Result<Tx<'_>, StoreError> {
        match self {
            Db::Sqlite(c) => Ok(Tx::Sqlite(c.transaction()?)),
            Db::Pg(p) => {
                let p = p.get_mut();
                p.ensure_open()?;
                let Pg { client, stmts, .. } = p;
                Ok(Tx::Pg(client.as_mut().expect("open").transaction()?, stmts))
            }
        }
    }
}

/// A transaction on either engine (rolled back if dropped uncommitted).
pub enum Tx<'a> {
    Sqlite(rusqlite::Transaction<'a>),
    Pg(
        postgres::Transaction<'a>,
        &'a mut HashMap<String, postgres::Statement>,
    ),
}

impl Tx<'_> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Pg(..) => Dialect::Postgres,
        }
    }

    /// `params`: `params![...]` (or `[]` for none).
    pub fn query(
        &mut self,
        sql: &str,
        params: impl AsRef<[Value]>,
    ) -> Result<Vec<Row>, StoreError> {
        let params = params.as_ref();
        match self {
            Tx::Sqlite(t) => sqlite_query(t, sql, params),
            Tx::Pg(t, stmts) => pg_query(t, stmts, sql, params),
        }
    }

    pub fn query_opt(
        &mut self,
        sql: &str,
        params: impl AsRef<[Value]>,
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// `params`: `params![...]` (or `[]` for none).
    pub fn execute(&mut self, sql: &str, params: impl AsRef<[Value]>) -> Result<u64, StoreError> {
        let params = params.as_ref();
        match self {
            Tx::Sqlite(t) => sqlite_execute(t, sql, params),
            Tx::Pg(t, stmts) => pg_execute(t, stmts, sql, params),
        }
    }

    /// PostgreSQL: take a transaction-scoped advisory lock (released at
    /// commit or rollback). SQLite: nothing (one writer at a time anyway).
    pub fn advisory_lock(&mut self, key: i64) -> Result<(), StoreError> {
        if let Tx::Pg(t, _) = self {
            t.execute("SELECT pg_advisory_xact_lock($1)", &[&key])?;
        }
        Ok(())
    }

    pub fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.commit()?,
            Tx::Pg(t, _) => t.commit()?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE x = ?1 AND (CAST(?2 AS TEXT) IS NULL OR y = ?12)"),
            "SELECT a FROM t WHERE x = $1 AND (CAST($2 AS TEXT) IS NULL OR y = $12)"
        );
        assert_eq!(pg_sql("SELECT '?' "), "SELECT '?' ");
    }

    #[test]
    fn values_read_back_as_rust_types() {
        let r = Row(vec![
            Value::Int(3),
            Value::Null,
            Value::Text(Uuid::nil().to_string()),
            Value::Int(1),
        ]);
        assert_eq!(r.get::<u32>(0).unwrap(), 3);
        assert_eq!(r.get::<Option<f64>>(1).unwrap(), None);
        assert_eq!(r.get::<Uuid>(2).unwrap(), Uuid::nil());
        assert!(r.get::<bool>(3).unwrap());
        assert!(r.get::<String>(0).is_err());
        assert!(r.get::<i64>(9).is_err());
    }
}
