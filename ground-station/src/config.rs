//! The ground station's configuration (TOML), validated at start-up.
//!
//! ```toml
//! data_dir = "var/ground-station"   # store.db lives here
//! instance = "gs-1"                 # unique per instance (MQTT client id)
//!
//! [http]
//! listen = "127.0.0.1:8080"
//!
//! [mqtt]                            # where ingest connects
//! host = "127.0.0.1"
//! port = 1883
//!
//! [broker]
//! embedded = true                   # false: use an external broker (mosquitto) at [mqtt]
//! listen = "127.0.0.1:1883"
//!
//! [ingest]
//! shared_group = ""                 # e.g. "gs" for several instances
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiancha_protocol::mqtt::Endpoint;

use crate::broker::BrokerConfig;
use crate::ingest::IngestConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_instance")]
    pub instance: String,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub mqtt: Endpoint,
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("var/ground-station")
}

fn default_instance() -> String {
    "gs-1".into()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            instance: default_instance(),
            http: HttpConfig::default(),
            mqtt: Endpoint::default(),
            broker: BrokerConfig::default(),
            ingest: IngestConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.into(),
            message: e.to_string(),
        })?;
        cfg.check().map_err(|message| ConfigError::Invalid {
            path: origin.into(),
            message,
        })?;
        Ok(cfg)
    }

    pub fn check(&self) -> Result<(), String> {
        if self.instance.is_empty()
            || !self
                .instance
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "instance `{}` must be non-empty and use only A-Z a-z 0-9 _ -",
                self.instance
            ));
        }
        self.mqtt.check()?;
        self.ingest.check()?;
        if self.broker.embedded && self.broker.listen.port() != self.mqtt.port {
            return Err(format!(
                "broker.listen port {} differs from mqtt.port {}: ingest would not reach the embedded broker",
                self.broker.listen.port(),
                self.mqtt.port
            ));
        }
        Ok(())
    }

    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("store.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_one_line_switches_to_external() {
        let c = Config::parse("", Path::new("gs.toml")).unwrap();
        assert!(c.broker.embedded);
        let c = Config::parse("[broker]\nembedded = false\n", Path::new("gs.toml")).unwrap();
        assert!(!c.broker.embedded);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = Config::parse("[mqtt]\nport = 0\n", Path::new("gs.toml")).unwrap_err();
        assert_eq!(e.to_string(), "config gs.toml: mqtt.port must not be 0");
        let e = Config::parse("bogus = 1\n", Path::new("gs.toml")).unwrap_err();
        assert!(e.to_string().contains("unknown field `bogus`"), "{e}");
        let e =
            Config::parse("[ingest]\nshared_group = \"a/b\"\n", Path::new("gs.toml")).unwrap_err();
        assert!(e.to_string().contains("shared_group"), "{e}");
        let e = Config::parse("[mqtt]\nport = 1884\n", Path::new("gs.toml")).unwrap_err();
        assert!(e.to_string().contains("differs from mqtt.port"), "{e}");
    }
}
