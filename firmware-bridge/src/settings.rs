//! The bridge's settings as they appear in a TOML config file (the
//! companion's `[autopilot]` section, say), validated into a
//! [`BridgeConfig`] with errors that name the field.
//!
//! ```toml
//! address = "serial:/dev/ttyAMA0:921600"
//! signing_key = "…64 hex digits or a passphrase…"
//! require_signing = true
//! command_timeout_ms = 1500
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::command::CommandConfig;
use crate::core::{default_streams, BridgeConfig, SigningConfig};
use crate::mission::MissionConfig;
use crate::signing::SigningKey;
use crate::transport::Address;

/// File form of [`BridgeConfig`] plus the address. Every field has a
/// default; unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeSettings {
    /// `serial:/dev/X:BAUD`, `udpin:IP:PORT`, `udpout:HOST:PORT`,
    /// `tcp:HOST:PORT` or `tcpin:IP:PORT`.
    pub address: String,
    pub system_id: u8,
    pub component_id: u8,
    /// Talk only to this autopilot system id (default: the first heard).
    pub target_system: Option<u8>,
    pub heartbeat_interval_ms: u64,
    pub link_timeout_ms: u64,
    pub command_timeout_ms: u64,
    pub command_retries: u32,
    pub mission_initial_timeout_ms: u64,
    pub mission_min_timeout_ms: u64,
    pub mission_max_timeout_ms: u64,
    pub mission_max_stalled_retries: u32,
    pub transfer_attempts: u32,
    /// 64 hex digits, `hex:…`, or a passphrase (SHA-256, as MAVProxy).
    pub signing_key: Option<String>,
    pub signing_link_id: u8,
    /// Reject unsigned frames (needs `signing_key`).
    pub require_signing: bool,
    pub pose_history_s: f64,
}

impl Default for BridgeSettings {
    fn default() -> Self {
        let c = BridgeConfig::default();
        Self {
            address: "udpin:0.0.0.0:14550".into(),
            system_id: c.system_id,
            component_id: c.component_id,
            target_system: None,
            heartbeat_interval_ms: c.heartbeat_interval.as_millis() as u64,
            link_timeout_ms: c.link_timeout.as_millis() as u64,
            command_timeout_ms: c.command.timeout.as_millis() as u64,
            command_retries: c.command.retries,
            mission_initial_timeout_ms: c.mission.initial_timeout.as_millis() as u64,
            mission_min_timeout_ms: c.mission.min_timeout.as_millis() as u64,
            mission_max_timeout_ms: c.mission.max_timeout.as_millis() as u64,
            mission_max_stalled_retries: c.mission.max_stalled_retries,
            transfer_attempts: c.transfer_attempts,
            signing_key: None,
            signing_link_id: 0,
            require_signing: false,
            pose_history_s: c.pose_keep.as_secs_f64(),
        }
    }
}

/// A setting that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bridge setting `{field}`: {reason}")]
pub struct SettingsError {
    pub field: &'static str,
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError {
        field,
        reason: reason.into(),
    }
}

fn ms(field: &'static str, v: u64, lo: u64, hi: u64) -> Result<Duration, SettingsError> {
    if !(lo..=hi).contains(&v) {
        return Err(bad(field, format!("{v} ms is not in [{lo}, {hi}]")));
    }
    Ok(Duration::from_millis(v))
}

impl BridgeSettings {
    /// Check everything; the address and the config to connect with.
    pub fn validate(&self) -> Result<(Address, BridgeConfig), SettingsError> {
        let address: Address = self
            .address
            .parse()
            .map_err(|e: crate::transport::AddressError| bad("address", e.reason))?;
        if self.system_id == 0 {
            return Err(bad("system_id", "0 is the broadcast id"));
        }
        if self.component_id == 0 {
            return Err(bad("component_id", "0 is the broadcast id"));
        }
        let heartbeat_interval = ms(
            "heartbeat_interval_ms",
            self.heartbeat_interval_ms,
            100,
            10_000,
        )?;
        let link_timeout = ms("link_timeout_ms", self.link_timeout_ms, 500, 60_000)?;
        let timeout = ms("command_timeout_ms", self.command_timeout_ms, 20, 60_000)?;
        if self.command_retries > 20 {
            return Err(bad(
                "command_retries",
                format!("{} is more than 20", self.command_retries),
            ));
        }
        let initial = ms(
            "mission_initial_timeout_ms",
            self.mission_initial_timeout_ms,
            20,
            60_000,
        )?;
        let min = ms(
            "mission_min_timeout_ms",
            self.mission_min_timeout_ms,
            10,
            60_000,
        )?;
        let max = ms(
            "mission_max_timeout_ms",
            self.mission_max_timeout_ms,
            10,
            60_000,
        )?;
        if min > max {
            return Err(bad(
                "mission_min_timeout_ms",
                "larger than mission_max_timeout_ms",
            ));
        }
        if self.mission_max_stalled_retries == 0 {
            return Err(bad("mission_max_stalled_retries", "must be at least 1"));
        }
        if self.transfer_attempts == 0 {
            return Err(bad("transfer_attempts", "must be at least 1"));
        }
        if !(self.pose_history_s.is_finite() && (1.0..=3600.0).contains(&self.pose_history_s)) {
            return Err(bad(
                "pose_history_s",
                format!("{} is not in [1, 3600]", self.pose_history_s),
            ));
        }
        let signing = match &self.signing_key {
            Some(k) => Some(SigningConfig {
                key: SigningKey::parse(k).map_err(|e| bad("signing_key", e.to_string()))?,
                link_id: self.signing_link_id,
                require: self.require_signing,
            }),
            None if self.require_signing => {
                return Err(bad("require_signing", "needs a signing_key"));
            }
            None => None,
        };
        Ok((
            address,
            BridgeConfig {
                system_id: self.system_id,
                component_id: self.component_id,
                target_system: self.target_system,
                heartbeat_interval,
                link_timeout,
                timesync_interval: Duration::from_secs(1),
                streams: default_streams(),
                mission: MissionConfig {
                    initial_timeout: initial,
                    min_timeout: min,
                    max_timeout: max,
                    max_stalled_retries: self.mission_max_stalled_retries,
                    download_window: 1,
                },
                command: CommandConfig {
                    timeout,
                    retries: self.command_retries,
                    ..CommandConfig::default()
                },
                signing,
                pose_keep: Duration::from_secs_f64(self.pose_history_s),
                transfer_attempts: self.transfer_attempts,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_field() {
        let (a, c) = BridgeSettings::default().validate().unwrap();
        assert_eq!(a.to_string(), "udpin:0.0.0.0:14550");
        assert_eq!(c.component_id, 191);
        let e = BridgeSettings {
            require_signing: true,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "require_signing");
        let e = BridgeSettings {
            address: "serial:/dev/ttyS0".into(),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "address");
        let e = BridgeSettings {
            link_timeout_ms: 5,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "link_timeout_ms");
    }

    #[test]
    fn parses_toml_and_refuses_unknown_fields() {
        let s: BridgeSettings = toml::from_str(
            "address = \"serial:/dev/ttyAMA0:921600\"\nsigning_key = \"fleet\"\nrequire_signing = true\n",
        )
        .unwrap();
        let (_, c) = s.validate().unwrap();
        assert!(c.signing.unwrap().require);
        assert!(toml::from_str::<BridgeSettings>("adress = \"x\"").is_err());
    }
}
