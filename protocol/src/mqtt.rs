//! How to reach the broker: one config shape for the companion and the
//! ground station (feature `mqtt`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest MQTT packet either side accepts. Above the payload limit so an
/// oversize payload arrives and is *quarantined with a reason* instead of
/// silently killing the connection.
pub const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024;

/// A broker endpoint, as written in TOML:
///
/// ```toml
/// [mqtt]
/// host = "127.0.0.1"
/// port = 1883
/// username = "sr-01"          # optional
/// password = "..."            # optional
/// keep_alive_s = 10
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    1883
}
fn default_keep_alive() -> u64 {
    10
}

impl Default for Endpoint {
    fn default() -> Self {
        Self {
            host: default_host(),
            port: default_port(),
            username: None,
            password: None,
            keep_alive_s: default_keep_alive(),
        }
    }
}

impl Endpoint {
    /// Check the endpoint makes sense before anything connects.
    pub fn check(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("mqtt.host must not be empty".into());
        }
        if self.port == 0 {
            return Err("mqtt.port must not be 0".into());
        }
        if !(2..=3600).contains(&self.keep_alive_s) {
            return Err(format!(
                "mqtt.keep_alive_s = {} is outside 2..=3600",
                self.keep_alive_s
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err("mqtt.username and mqtt.password go together".into());
        }
        Ok(())
    }

    /// rumqttc options for a persistent session with this client id.
    pub fn options(&self, client_id: &str) -> rumqttc::MqttOptions {
        let mut o = rumqttc::MqttOptions::new(client_id, self.host.clone(), self.port);
        o.set_keep_alive(Duration::from_secs(self.keep_alive_s))
            .set_clean_session(false)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            o.set_credentials(u.clone(), p.clone());
        }
        o
    }
}
