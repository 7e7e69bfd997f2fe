//! The ground station's command-signing key on disk (see
//! `docs/security.md`).
//!
//! The private key is a PKCS#8 PEM file readable by its owner only (mode
//! 0600, refused otherwise on Unix). `[commands] signing_key_file` names
//! it; without that setting the station uses `{data_dir}/command-signing-key.pem`
//! and creates it on first start (like an SSH host key), logging the
//! public key that companions must trust. A file named explicitly in the
//! config must already exist: a missing mount must not silently become a
//! new key that no drone trusts. The secret is never logged.

use std::io::Write;
use std::path::{Path, PathBuf};

use tiancha_protocol::command_auth::CommandSigner;

use crate::config::Config;

/// Name of the key file in `data_dir` when none is configured.
pub const DEFAULT_FILE: &str = "command-signing-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("command signing key {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("command signing key {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Create a new key at `path` (mode 0600; an existing file is never
/// overwritten) and return it.
pub fn generate(path: &Path) -> Result<CommandSigner, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let signer = CommandSigner::from_seed(&rand::random::<[u8; 32]>());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(signer.to_pkcs8_pem().as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(signer)
}

/// Read the key at `path`; refuses a file others can read.
pub fn load(path: &Path) -> Result<CommandSigner, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "mode {:o} lets others read the private key; run `chmod 600 {}`",
                    mode & 0o777,
                    path.display()
                ),
            });
        }
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
    CommandSigner::from_pkcs8_pem(&text).map_err(|e| KeyFileError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Where the station's key lives for `cfg`, and whether it may be created.
pub fn key_path(cfg: &Config) -> (PathBuf, bool) {
    match &cfg.commands.signing_key_file {
        Some(p) => (p.clone(), false),
        None => (cfg.data_dir.join(DEFAULT_FILE), true),
    }
}

/// The station's signing key: loaded, or created on first start when no
/// file is configured. Logs the key id and public key, never the secret.
pub fn load_or_create(cfg: &Config) -> Result<CommandSigner, KeyFileError> {
    let (path, may_create) = key_path(cfg);
    let signer = if may_create && !path.exists() {
        let s = generate(&path)?;
        tracing::warn!(
            path = %path.display(),
            key_id = s.key_id(),
            public_key = %s.public_key(),
            "created a new command signing key: add its public key to each companion's \
             [commands] ground_station_public_keys, or they will refuse every command"
        );
        s
    } else {
        load(&path)?
    };
    tracing::info!(
        path = %path.display(),
        key_id = signer.key_id(),
        public_key = %signer.public_key(),
        "commands to drones are signed with this key"
    );
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_writes_an_owner_only_file_and_load_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k").join("gs.pem");
        let s = generate(&p).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(load(&p).unwrap().public_key(), s.public_key());
        // Never overwritten.
        assert!(matches!(generate(&p), Err(KeyFileError::Io { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = load(&p).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
        std::fs::write(dir.path().join("bad.pem"), "not a key").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.path().join("bad.pem"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        let e = load(&dir.path().join("bad.pem")).unwrap_err().to_string();
        assert!(e.contains("PKCS#8"), "{e}");
    }

    #[test]
    fn default_key_is_created_once_configured_key_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let a = load_or_create(&cfg).unwrap();
        let b = load_or_create(&cfg).unwrap();
        assert_eq!(a.public_key(), b.public_key(), "the same key on restart");
        cfg.commands.signing_key_file = Some(dir.path().join("missing.pem"));
        let e = load_or_create(&cfg).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
