//! Users, roles and the pieces of login: argon2id password hashes, random
//! session / CSRF / API tokens (stored only as SHA-256), and a login rate
//! limiter (sans-IO: fed with the time).
//!
//! Roles: `operator` (map, triage, missions, commands), `dispute_centre`
//! (case desk: sees cases and their evidence, moves them along, adds
//! notes; cannot command drones), `admin` (everything, users, dead
//! letters, audit log).

use std::collections::HashMap;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    DisputeCentre,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::DisputeCentre => "dispute_centre",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operator" => Some(Role::Operator),
            "dispute_centre" => Some(Role::DisputeCentre),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Launch, pause, RTL ... and triage alerts.
    pub fn may_command(self) -> bool {
        matches!(self, Role::Operator | Role::Admin)
    }

    /// Move cases along at the desk (status, notes).
    pub fn may_work_cases(self) -> bool {
        true
    }

    pub fn is_admin(self) -> bool {
        self == Role::Admin
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("a password must be 10 to 1024 characters")]
    Length,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Hash a password (argon2id, random salt, PHC string).
pub fn hash_password(pw: &str) -> Result<String, PasswordError> {
    if !(10..=1024).contains(&pw.chars().count()) {
        return Err(PasswordError::Length);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Check a password against a stored PHC string (constant time inside).
pub fn verify_password(pw: &str, phc: &str) -> bool {
    if pw.len() > 4096 {
        return false;
    }
    PasswordHash::new(phc)
        .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A hash that never matches, for timing parity when the user is unknown.
pub fn dummy_verify(pw: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let h = DUMMY.get_or_init(|| hash_password("not-a-real-password").expect("hash"));
    let _ = verify_password(pw, h);
}

/// 32 random bytes, URL-safe base64.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Failed-login limiter per key (user name, client address). Sans-IO.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window_ms: i64,
    lockout_ms: i64,
    keys: HashMap<String, KeyState>,
}

#[derive(Debug, Default)]
struct KeyState {
    failures: Vec<i64>,
    locked_until: i64,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window_s: i64, lockout_s: i64) -> Self {
        Self {
            max_failures,
            window_ms: window_s * 1000,
            lockout_ms: lockout_s * 1000,
            keys: HashMap::new(),
        }
    }

    /// None if an attempt may go ahead; Some(seconds to wait) otherwise.
    pub fn check(&mut self, keys: &[&str], now: i64) -> Option<i64> {
        keys.iter()
            .filter_map(|k| self.keys.get(*k))
            .map(|s| s.locked_until - now)
            .filter(|w| *w > 0)
            .max()
            .map(|ms| (ms + 999) / 1000)
    }

    pub fn failure(&mut self, keys: &[&str], now: i64) {
        for k in keys {
            let s = self.keys.entry((*k).to_string()).or_default();
            s.failures.retain(|t| now - t < self.window_ms);
            s.failures.push(now);
            if s.failures.len() as u32 >= self.max_failures {
                s.locked_until = now + self.lockout_ms;
                s.failures.clear();
            }
        }
        if self.keys.len() > 100_000 {
            let w = self.window_ms;
            self.keys
                .retain(|_, s| s.locked_until > now || s.failures.iter().any(|t| now - t < w));
        }
    }

    pub fn success(&mut self, keys: &[&str]) {
        for k in keys {
            if let Some(s) = self.keys.get_mut(*k) {
                s.failures.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a phc string"));
        assert!(matches!(hash_password("short"), Err(PasswordError::Length)));
    }

    #[test]
    fn limiter_locks_after_failures_and_releases() {
        let mut l = LoginLimiter::new(3, 60, 120);
        let k = ["user:op", "ip:1.2.3.4"];
        assert_eq!(l.check(&k, 0), None);
        l.failure(&k, 0);
        l.failure(&k, 1000);
        assert_eq!(l.check(&k, 1500), None);
        l.failure(&k, 2000);
        assert_eq!(l.check(&k, 2000), Some(120));
        // Another user from the same address is locked too (address key).
        assert!(l.check(&["user:other", "ip:1.2.3.4"], 3000).is_some());
        assert_eq!(l.check(&k, 122_001), None);
        // Failures outside the window do not add up.
        l.failure(&k, 200_000);
        l.failure(&k, 300_000);
        l.failure(&k, 400_000);
        assert_eq!(l.check(&k, 400_001), None);
        l.success(&k);
    }

    #[test]
    fn tokens_are_random_and_compare_in_constant_time() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(ct_eq(&a, &a.clone()));
        assert!(!ct_eq(&a, &b));
        assert!(!ct_eq(&a, "short"));
        assert_eq!(token_hash(&a).len(), 64);
    }
}
