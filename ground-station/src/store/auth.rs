//! Users, sessions, API tokens and the audit log. Secrets are never
//! stored: passwords as argon2 PHC strings, session and API tokens as
//! their SHA-256.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{Store, StoreError};
use crate::auth::Role;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserRow {
    pub name: String,
    pub role: Role,
    pub created_unix_ms: i64,
    pub disabled: bool,
}

/// Who a session or token belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    /// The session's CSRF token; None for API tokens (no cookie, no CSRF).
    pub csrf: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub t_unix_ms: i64,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub detail: String,
    pub client: String,
}

impl Store {
    /// Create or replace a user.
    pub fn put_user(
        &mut self,
        name: &str,
        role: Role,
        password_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO users (name, role, password_hash, created_unix_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash, disabled = 0",
            )?
            .execute(params![name, role.as_str(), password_hash, now])?;
        // A changed password or role ends the user's sessions.
        self.conn
            .prepare_cached("DELETE FROM sessions WHERE user_name = ?1")?
            .execute([name])?;
        Ok(())
    }

    pub fn set_user_disabled(&mut self, name: &str, disabled: bool) -> Result<(), StoreError> {
        let n = self
            .conn
            .prepare_cached("UPDATE users SET disabled = ?2 WHERE name = ?1")?
            .execute(params![name, disabled])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("no user `{name}`")));
        }
        self.conn
            .prepare_cached("DELETE FROM sessions WHERE user_name = ?1")?
            .execute([name])?;
        Ok(())
    }

    /// (role, password hash) of an enabled user.
    pub fn user_credentials(&self, name: &str) -> Result<Option<(Role, String)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT role, password_hash FROM users WHERE name = ?1 AND disabled = 0",
            )?
            .query_row([name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?
            .and_then(|(r, h)| Role::parse(&r).map(|r| (r, h))))
    }

    pub fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT name, role, created_unix_ms, disabled FROM users ORDER BY name",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
            ))
        })?;
        let mut out = vec![];
        for r in rows {
            let (name, role, created_unix_ms, disabled) = r?;
            if let Some(role) = Role::parse(&role) {
                out.push(UserRow {
                    name,
                    role,
                    created_unix_ms,
                    disabled,
                });
            }
        }
        Ok(out)
    }

    pub fn create_session(
        &mut self,
        token_sha256: &str,
        user: &str,
        csrf: &str,
        now: i64,
        expires: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO sessions (token_sha256, user_name, csrf, created_unix_ms, expires_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![token_sha256, user, csrf, now, expires])?;
        Ok(())
    }

    pub fn session(&self, token_sha256: &str, now: i64) -> Result<Option<Principal>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT s.user_name, u.role, s.csrf FROM sessions s JOIN users u ON u.name = s.user_name
                 WHERE s.token_sha256 = ?1 AND s.expires_unix_ms > ?2 AND u.disabled = 0",
            )?
            .query_row(params![token_sha256, now], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })
            .optional()?
            .and_then(|(user, role, csrf)| {
                Role::parse(&role).map(|role| Principal {
                    user,
                    role,
                    csrf: Some(csrf),
                })
            }))
    }

    pub fn delete_session(&mut self, token_sha256: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM sessions WHERE token_sha256 = ?1")?
            .execute([token_sha256])?;
        Ok(())
    }

    pub fn create_api_token(
        &mut self,
        token_sha256: &str,
        label: &str,
        user: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        if self.user_credentials(user)?.is_none() {
            return Err(StoreError::NotFound(format!("no enabled user `{user}`")));
        }
        self.conn
            .prepare_cached(
                "INSERT INTO api_tokens (token_sha256, label, user_name, created_unix_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![token_sha256, label, user, now])?;
        Ok(())
    }

    pub fn api_token(
        &mut self,
        token_sha256: &str,
        now: i64,
    ) -> Result<Option<Principal>, StoreError> {
        let p = self
            .conn
            .prepare_cached(
                "SELECT t.user_name, u.role FROM api_tokens t JOIN users u ON u.name = t.user_name
                 WHERE t.token_sha256 = ?1 AND t.revoked = 0 AND u.disabled = 0",
            )?
            .query_row([token_sha256], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?
            .and_then(|(user, role)| {
                Role::parse(&role).map(|role| Principal {
                    user,
                    role,
                    csrf: None,
                })
            });
        if p.is_some() {
            self.conn
                .prepare_cached(
                    "UPDATE api_tokens SET last_used_unix_ms = ?2 WHERE token_sha256 = ?1",
                )?
                .execute(params![token_sha256, now])?;
        }
        Ok(p)
    }

    pub fn audit(
        &mut self,
        now: i64,
        actor: &str,
        action: &str,
        object: &str,
        detail: &str,
        client: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO audit (t_unix_ms, actor, action, object, detail, client) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![now, actor, action, object, detail, client])?;
        Ok(())
    }

    pub fn audit_log(&self, limit: u32) -> Result<Vec<AuditRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, t_unix_ms, actor, action, object, detail, client FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit.clamp(1, 10_000)], |r| {
            Ok(AuditRow {
                id: r.get(0)?,
                t_unix_ms: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                object: r.get(4)?,
                detail: r.get(5)?,
                client: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
