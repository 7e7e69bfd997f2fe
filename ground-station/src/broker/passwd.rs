//! Password files in mosquitto's format, so one file (made with
//! `mosquitto_passwd`) serves the embedded broker and mosquitto alike.
//!
//! A line is `username:$7${iterations}${salt base64}${hash base64}`
//! (PBKDF2-HMAC-SHA512, 64-byte hash; mosquitto 2.x) or
//! `username:$6${salt base64}${hash base64}` (one round of SHA-512 over
//! password ‖ salt; mosquitto 1.x). Empty lines and `#` comments are
//! skipped. Plain-text passwords are refused.

use std::collections::HashMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hash {
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Sha512 {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

/// The users and their password hashes.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, Hash>,
}

/// Iterations mosquitto_passwd 2.0 uses (its default).
pub const MOSQUITTO_ITERATIONS: u32 = 101;

impl PasswordFile {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("password file {}: cannot read: {e}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse; `origin` names the file in errors (with the line number).
    pub fn parse(text: &str, origin: &str) -> Result<Self, String> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let at = |why: &str| format!("password file {origin} line {}: {why}", n + 1);
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| at("expected `username:hash`"))?;
            if user.is_empty() {
                return Err(at("empty username"));
            }
            let h = parse_hash(hash).map_err(|why| at(&format!("user `{user}`: {why}")))?;
            if users.insert(user.to_string(), h).is_some() {
                return Err(at(&format!("user `{user}` appears twice")));
            }
        }
        Ok(Self { users })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// True when `user` exists and `password` is theirs (constant-time
    /// comparison of the hashes).
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Some(h) = self.users.get(user) else {
            return false;
        };
        let (expected, got) = match h {
            Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => (hash, pbkdf2_sha512(password, salt, *iterations, hash.len())),
            Hash::Sha512 { salt, hash } => {
                let mut d = Sha512::new();
                d.update(password.as_bytes());
                d.update(salt);
                (hash, d.finalize().to_vec())
            }
        };
        expected.ct_eq(&got).into()
    }

    /// A `$7$` entry as mosquitto_passwd writes it (for tests and
    /// provisioning without mosquitto installed).
    pub fn hash(password: &str, salt: &[u8]) -> String {
        let h = pbkdf2_sha512(password, salt, MOSQUITTO_ITERATIONS, 64);
        format!(
            "$7${MOSQUITTO_ITERATIONS}${}${}",
            B64.encode(salt),
            B64.encode(h)
        )
    }
}

fn pbkdf2_sha512(password: &str, salt: &[u8], iterations: u32, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut out);
    out
}

fn parse_hash(s: &str) -> Result<Hash, String> {
    let b64 = |what: &str, v: &str| {
        B64.decode(v)
            .map_err(|e| format!("{what} is not base64: {e}"))
    };
    if let Some(rest) = s.strip_prefix("$7$") {
        let parts: Vec<&str> = rest.split('$').collect();
        let [it, salt, hash] = parts[..] else {
            return Err("expected `$7$iterations$salt$hash`".into());
        };
        let iterations: u32 = it
            .parse()
            .ok()
            .filter(|i| *i >= 1)
            .ok_or_else(|| format!("iterations `{it}` is not a positive number"))?;
        let hash = b64("hash", hash)?;
        if hash.is_empty() {
            return Err("empty hash".into());
        }
        Ok(Hash::Pbkdf2 {
            iterations,
            salt: b64("salt", salt)?,
            hash,
        })
    } else if let Some(rest) = s.strip_prefix("$6$") {
        let Some((salt, hash)) = rest.split_once('$') else {
            return Err("expected `$6$salt$hash`".into());
        };
        let hash = b64("hash", hash)?;
        if hash.len() != 64 {
            return Err("a `$6$` hash must be 64 bytes".into());
        }
        Ok(Hash::Sha512 {
            salt: b64("salt", salt)?,
            hash,
        })
    } else {
        Err("not a mosquitto_passwd hash (`$7$...` or `$6$...`); plain-text passwords are refused: run `mosquitto_passwd -U <file>`".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by `mosquitto_passwd -c -b pw drone-1 secret1` (mosquitto 2.0.11).
    const MOSQUITTO_LINE: &str = "drone-1:$7$101$1fCgZRQUaVaaHSEG$btWEDERcg6Y2GcqCr4KF2kq3J0CABTbLaQig9XZsEGRIn3Q6ZCZtpnNSIxcZ19JG0uplelxzISeUQwyOAMNqUw==";

    #[test]
    fn verifies_a_line_made_by_mosquitto_passwd() {
        let f = PasswordFile::parse(MOSQUITTO_LINE, "t").unwrap();
        assert!(f.verify("drone-1", "secret1"));
        assert!(!f.verify("drone-1", "secret2"));
        assert!(!f.verify("drone-1", ""));
        assert!(!f.verify("drone-2", "secret1"));
    }

    #[test]
    fn own_hash_round_trips_and_sha512_entries_work() {
        let line = format!("gs:{}", PasswordFile::hash("pw", b"0123456789ab"));
        let f = PasswordFile::parse(&format!("# comment\n\n{line}\n"), "t").unwrap();
        assert_eq!(f.len(), 1);
        assert!(f.verify("gs", "pw") && !f.verify("gs", "pW"));
        let mut d = Sha512::new();
        d.update(b"old");
        d.update(b"salt");
        let six = format!("u:$6${}${}", B64.encode(b"salt"), B64.encode(d.finalize()));
        let f = PasswordFile::parse(&six, "t").unwrap();
        assert!(f.verify("u", "old") && !f.verify("u", "new"));
    }

    #[test]
    fn bad_files_name_the_line_and_the_problem() {
        for (text, want) in [
            ("drone-1:secret", "plain-text passwords are refused"),
            ("justaname", "expected `username:hash`"),
            (":$7$101$AA==$AA==", "empty username"),
            ("a:$7$x$AA==$AA==", "iterations"),
            ("a:$7$101$AA==", "expected `$7$iterations$salt$hash`"),
            ("a:$7$101$AA==$!!", "not base64"),
            ("a:$6$AA==$AA==", "64 bytes"),
        ] {
            let e = PasswordFile::parse(&format!("# c\n{text}\n"), "pw.txt").unwrap_err();
            assert!(
                e.contains("pw.txt line 2") && e.contains(want),
                "{text}: {e}"
            );
        }
        let twice = format!("{MOSQUITTO_LINE}\n{MOSQUITTO_LINE}\n");
        let e = PasswordFile::parse(&twice, "pw").unwrap_err();
        assert!(e.contains("appears twice"), "{e}");
    }
}
