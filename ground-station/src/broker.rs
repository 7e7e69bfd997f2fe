//! The embedded MQTT broker (rumqttd), so one process is enough.
//!
//! rumqttd keeps sessions (and messages queued for disconnected persistent
//! clients) in memory: a broker restart loses what it held. That is why
//! the drone keeps alerts until the ground's receipt, not just until
//! PUBACK (see ARCHITECTURE.md, "The channel").

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tiancha_protocol::mqtt::MAX_PACKET_BYTES;

/// The `[broker]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Run rumqttd inside this process. `false` to use an external broker
    /// (mosquitto, EMQX) at `[mqtt]` host/port.
    pub embedded: bool,
    /// Where the embedded broker listens (MQTT 3.1.1).
    pub listen: SocketAddr,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            embedded: true,
            listen: "127.0.0.1:1883".parse().expect("valid address"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded broker configuration: {0}")]
    Config(String),
    #[error("embedded broker did not start listening on {0} within 10 s (is the port in use?)")]
    NotListening(SocketAddr),
}

/// rumqttd's configuration for one v4 listener, with limits that let
/// oversize payloads through to our quarantine instead of dropping the
/// connection.
fn rumqttd_config(listen: SocketAddr) -> Result<rumqttd::Config, BrokerError> {
    let toml = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 67108864
max_segment_count = 4

[v4.1]
name = "v4-1"
listen = "{listen}"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {MAX_PACKET_BYTES}
    max_inflight_count = 1000
    dynamic_filters = true
"#
    );
    toml::from_str(&toml).map_err(|e| BrokerError::Config(e.to_string()))
}

/// Start rumqttd on its own threads and wait until it accepts connections.
/// It runs until the process ends.
pub fn start_embedded(listen: SocketAddr) -> Result<(), BrokerError> {
    let config = rumqttd_config(listen)?;
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|e| BrokerError::Config(e.to_string()))?;
    let mut probe = listen;
    if probe.ip().is_unspecified() {
        probe.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok() {
            tracing::info!(%listen, "embedded MQTT broker (rumqttd) listening");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(BrokerError::NotListening(listen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses() {
        let c = rumqttd_config("127.0.0.1:1999".parse().unwrap()).unwrap();
        let v4 = c.v4.unwrap();
        assert_eq!(v4["1"].connections.max_payload_size, MAX_PACKET_BYTES);
    }
}
