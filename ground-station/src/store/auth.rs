//! Users, sessions, API tokens and the audit log. Secrets are never
//! stored: passwords as argon2 PHC strings, session and API tokens as
//! their SHA-256.

use serde::Serialize;

use super::db::params;
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
        self.db.execute(
            "INSERT INTO users (name, role, password_hash, created_unix_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash, disabled = 0",
            params![name, role.as_str(), password_hash, now],
        )?;
        // A changed password or role ends the user's sessions.
        self.db
            .execute("DELETE FROM sessions WHERE user_name = ?1", params![name])?;
        Ok(())
    }

    pub fn set_user_disabled(&mut self, name: &str, disabled: bool) -> Result<(), StoreError> {
        let n = self.db.execute(
            "UPDATE users SET disabled = ?2 WHERE name = ?1",
            params![name, disabled],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("no user `{name}`")));
        }
        self.db
            .execute("DELETE FROM sessions WHERE user_name = ?1", params![name])?;
        Ok(())
    }

    /// (role, password hash) of an enabled user.
    pub fn user_credentials(&self, name: &str) -> Result<Option<(Role, String)>, StoreError> {
        let Some(r) = self.db.query_opt(
            "SELECT role, password_hash FROM users WHERE name = ?1 AND disabled = 0",
            params![name],
        )?
        else {
            return Ok(None);
        };
        let (role, hash): (String, String) = (r.get(0)?, r.get(1)?);
        Ok(Role::parse(&role).map(|r| (r, hash)))
    }

    pub fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let mut out = vec![];
        for r in self.db.query(
            "SELECT name, role, created_unix_ms, disabled FROM users ORDER BY name",
            params![],
        )? {
            if let Some(role) = Role::parse(&r.get::<String>(1)?) {
                out.push(UserRow {
                    name: r.get(0)?,
                    role,
                    created_unix_ms: r.get(2)?,
                    disabled: r.get(3)?,
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
        self.db.execute(
            "INSERT INTO sessions (token_sha256, user_name, csrf, created_unix_ms, expires_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            params![token_sha256, user, csrf, now, expires],
        )?;
        Ok(())
    }

    pub fn session(&self, token_sha256: &str, now: i64) -> Result<Option<Principal>, StoreError> {
        let Some(r) = self.db.query_opt(
            "SELECT s.user_name, u.role, s.csrf FROM sessions s JOIN users u ON u.name = s.user_name
                 WHERE s.token_sha256 = ?1 AND s.expires_unix_ms > ?2 AND u.disabled = 0",
            params![token_sha256, now],
        )?
        else {
            return Ok(None);
        };
        let (user, role, csrf): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        Ok(Role::parse(&role).map(|role| Principal {
            user,
            role,
            csrf: Some(csrf),
        }))
    }

    pub fn delete_session(&mut self, token_sha256: &str) -> Result<(), StoreError> {
        self.db.execute(
            "DELETE FROM sessions WHERE token_sha256 = ?1",
            params![token_sha256],
        )?;
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
        self.db.execute(
            "INSERT INTO api_tokens (token_sha256, label, user_name, created_unix_ms) VALUES (?1, ?2, ?3, ?4)",
            params![token_sha256, label, user, now],
        )?;
        Ok(())
    }

    pub fn api_token(
        &mut self,
        token_sha256: &str,
        now: i64,
    ) -> Result<Option<Principal>, StoreError> {
        let Some(r) = self.db.query_opt(
            "SELECT t.user_name, u.role FROM api_tokens t JOIN users u ON u.name = t.user_name
                 WHERE t.token_sha256 = ?1 AND t.revoked = 0 AND u.disabled = 0",
            params![token_sha256],
        )?
        else {
            return Ok(None);
        };
        let (user, role): (String, String) = (r.get(0)?, r.get(1)?);
        let p = Role::parse(&role).map(|role| Principal {
            user,
            role,
            csrf: None,
        });
        if p.is_some() {
            self.db.execute(
                "UPDATE api_tokens SET last_used_unix_ms = ?2 WHERE token_sha256 = ?1",
                params![token_sha256, now],
            )?;
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
        self.db.execute(
            "INSERT INTO audit (t_unix_ms, actor, action, object, detail, client) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![now, actor, action, object, detail, client],
        )?;
        Ok(())
    }

    pub fn audit_log(&self, limit: u32) -> Result<Vec<AuditRow>, StoreError> {
        self.db
            .query(
                "SELECT id, t_unix_ms, actor, action, object, detail, client FROM audit ORDER BY id DESC LIMIT ?1",
                params![limit.clamp(1, 10_000)],
            )?
            .iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.get(0)?,
                    t_unix_ms: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    object: r.get(4)?,
                    detail: r.get(5)?,
                    client: r.get(6)?,
                })
            })
            .collect()
    }
}
