//! The embedded MQTT broker (rumqttd), so one process is enough.
//!
//! rumqttd keeps sessions (and messages queued for disconnected persistent
//! clients) in memory: a broker restart loses what it held. That is why
//! the drone keeps alerts until the ground's receipt, not just until
//! PUBACK (see ARCHITECTURE.md, "The channel").
//!
//! Security (docs/security.md, "MQTT"): with `[broker.auth]` every
//! listener goes through the ACL [`front`], which authenticates each
//! client (password in mosquitto_passwd format, or client certificate CN)
//! and checks every PUBLISH and SUBSCRIBE against [`acl`]; rumqttd then
//! listens only on an internal loopback port that refuses anyone without
//! the front's per-process secret. `[broker.tls]` adds a TLS listener
//! (rustls). Without `[broker.auth]` rumqttd serves `listen` directly,
//! unauthenticated: accepted only on a loopback address (the demo).

pub mod acl;
mod front;
pub mod passwd;
pub mod pki;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::tokio_rustls::rustls;
use serde::{Deserialize, Serialize};
use tiancha_protocol::mqtt::{crypto_provider, load_certs, load_key, MAX_PACKET_BYTES};

/// The `[broker]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Run rumqttd inside this process. `false` to use an external broker
    /// (mosquitto, EMQX) at `[mqtt]` host/port.
    pub embedded: bool,
    /// Where the embedded broker listens, plain TCP (MQTT 3.1.1). Must be
    /// a loopback address: off this host use `[broker.tls]`.
    pub listen: SocketAddr,
    /// `[broker.tls]`: a TLS listener as well.
    pub tls: Option<BrokerTls>,
    /// `[broker.auth]`: authenticate every client and enforce the ACL.
    pub auth: Option<BrokerAuth>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            embedded: true,
            listen: "127.0.0.1:1883".parse().expect("valid address"),
            tls: None,
            auth: None,
        }
    }
}

/// `[broker.tls]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerTls {
    /// Where the TLS listener listens (e.g. `0.0.0.0:8883`).
    pub listen: SocketAddr,
    /// The broker's certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// Require a client certificate signed by this CA (PEM); its CN is the
    /// client's identity. Without it the TLS listener takes passwords.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// `[broker.auth]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerAuth {
    /// mosquitto_passwd file (`$7$` PBKDF2-SHA512). Without it, only client
    /// certificates authenticate.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Identities with the ground-station role; every other identity must
    /// be a drone id and is that drone.
    #[serde(default = "default_gs_users")]
    pub ground_station_users: Vec<String>,
}

fn default_gs_users() -> Vec<String> {
    vec!["ground-station".into()]
}

impl BrokerConfig {
    /// Structural checks (no file access).
    pub fn check(&self) -> Result<(), String> {
        if !self.embedded {
            return Ok(());
        }
        if self.auth.is_none() && !self.listen.ip().is_loopback() {
            return Err(format!(
                "broker.listen = {} is not a loopback address: an unauthenticated plain broker off this host would let anyone publish alerts and read commands; listen on 127.0.0.1 and add [broker.auth] and [broker.tls] for remote drones",
                self.listen
            ));
        }
        if self.auth.is_some() && !self.listen.ip().is_loopback() {
            return Err(format!(
                "broker.listen = {} is not a loopback address: plain MQTT sends passwords, alerts and commands in clear; remote clients use [broker.tls]",
                self.listen
            ));
        }
        if let Some(t) = &self.tls {
            if t.listen == self.listen {
                return Err("broker.tls.listen must differ from broker.listen".into());
            }
            if self.auth.is_none() {
                return Err("[broker.tls] needs [broker.auth]: TLS without authentication would let any client publish alerts and read commands".into());
            }
        }
        if let Some(a) = &self.auth {
            if a.password_file.is_none()
                && self.tls.as_ref().is_none_or(|t| t.client_ca_file.is_none())
            {
                return Err("[broker.auth] needs password_file or [broker.tls] client_ca_file: otherwise nobody can log in".into());
            }
            if a.ground_station_users.is_empty() {
                return Err(
                    "broker.auth.ground_station_users must name at least one identity".into(),
                );
            }
            for u in &a.ground_station_users {
                if tiancha_protocol::DroneId::new(u.clone()).is_err() {
                    return Err(format!("broker.auth.ground_station_users: `{u}` must use only A-Z a-z 0-9 _ - (1-64 characters)"));
                }
            }
        }
        Ok(())
    }

    /// Make relative paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(t) = &mut self.tls {
            fix(&mut t.cert_file);
            fix(&mut t.key_file);
            if let Some(c) = &mut t.client_ca_file {
                fix(c);
            }
        }
        if let Some(p) = self.auth.as_mut().and_then(|a| a.password_file.as_mut()) {
            fix(p);
        }
    }

    /// Read and check every file (certificates, key, password file).
    pub fn check_files(&self) -> Result<(), String> {
        if !self.embedded {
            return Ok(());
        }
        if let Some(t) = &self.tls {
            t.server_config()?;
        }
        self.policy()?;
        Ok(())
    }

    fn policy(&self) -> Result<Option<acl::AuthPolicy>, String> {
        let Some(a) = &self.auth else { return Ok(None) };
        let passwords = match &a.password_file {
            Some(p) => Some(passwd::PasswordFile::load(p)?),
            None => None,
        };
        Ok(Some(acl::AuthPolicy {
            passwords,
            ground_station_users: a
                .ground_station_users
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>(),
        }))
    }
}

impl BrokerTls {
    /// The rustls server configuration (files read now).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let chain = load_certs(&self.cert_file, "broker.tls.cert_file")?;
        let key = load_key(&self.key_file, "broker.tls.key_file")?;
        let provider = crypto_provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("broker.tls: {e}"))?;
        let builder = match &self.client_ca_file {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in load_certs(ca, "broker.tls.client_ca_file")? {
                    roots.add(c).map_err(|e| {
                        format!(
                            "broker.tls.client_ca_file {}: not a usable CA certificate: {e}",
                            ca.display()
                        )
                    })?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| format!("broker.tls.client_ca_file {}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| {
            format!(
                "broker.tls: certificate {} and key {} do not go together: {e}",
                self.cert_file.display(),
                self.key_file.display()
            )
        })?;
        Ok(Arc::new(config))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded broker configuration: {0}")]
    Config(String),
    #[error("embedded broker did not start listening on {0} within 10 s (is the port in use?)")]
    NotListening(SocketAddr),
    #[error("embedded broker cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
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

/// Start the embedded broker as configured (plain, or behind the ACL
/// front with optional TLS) and wait until it accepts connections. It
/// runs until the process ends. Reads the TLS and password files now.
pub fn start(cfg: &BrokerConfig) -> Result<(), BrokerError> {
    cfg.check().map_err(BrokerError::Config)?;
    let Some(policy) = cfg.policy().map_err(BrokerError::Config)? else {
        return start_embedded(cfg.listen);
    };
    let tls = match &cfg.tls {
        Some(t) => Some((
            t.listen,
            rumqttc::tokio_rustls::TlsAcceptor::from(
                t.server_config().map_err(BrokerError::Config)?,
            ),
        )),
        None => None,
    };
    // Bind the public listeners first: a port in use is an error now.
    let bind = |addr: SocketAddr| {
        std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| BrokerError::Bind { addr, source })
    };
    let plain = bind(cfg.listen)?;
    let tls = match tls {
        Some((addr, acceptor)) => Some((bind(addr)?, acceptor)),
        None => None,
    };
    // rumqttd on an internal loopback port, accepting only the front.
    let internal = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| BrokerError::Bind {
            addr: "127.0.0.1:0".parse().expect("addr"),
            source,
        })?;
        l.local_addr()
            .map_err(|e| BrokerError::Config(e.to_string()))?
    };
    let secret = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        hex::encode(bytes)
    };
    let mut config = rumqttd_config(internal)?;
    let expected = secret.clone();
    if let Some(v4) = config.v4.as_mut() {
        for s in v4.values_mut() {
            let expected = expected.clone();
            s.set_auth_handler(move |_client: String, _user: String, pass: String| {
                use subtle::ConstantTimeEq;
                let ok: bool = pass.as_bytes().ct_eq(expected.as_bytes()).into();
                async move { ok }
            });
        }
    }
    spawn_rumqttd(config, internal)?;
    let front = Arc::new(front::Front {
        policy,
        upstream: internal,
        secret,
    });
    let plain_addr = cfg.listen;
    let tls_addr = cfg.tls.as_ref().map(|t| t.listen);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mqtt-front")
        .enable_all()
        .build()
        .map_err(|e| BrokerError::Config(format!("MQTT front runtime: {e}")))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("mqtt-front".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                let r = (|| {
                    let p = tokio::net::TcpListener::from_std(plain)?;
                    tasks.push(tokio::spawn(front::accept_loop(p, None, front.clone())));
                    if let Some((l, acceptor)) = tls {
                        let l = tokio::net::TcpListener::from_std(l)?;
                        tasks.push(tokio::spawn(front::accept_loop(
                            l,
                            Some(acceptor),
                            front.clone(),
                        )));
                    }
                    Ok::<(), std::io::Error>(())
                })();
                let _ = ready_tx.send(r);
                for t in tasks {
                    let _ = t.await;
                }
            })
        })
        .map_err(|e| BrokerError::Config(e.to_string()))?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(BrokerError::Config(format!("MQTT front: {e}"))),
        Err(_) => return Err(BrokerError::Config("MQTT front thread died".into())),
    }
    tracing::info!(
        listen = %plain_addr,
        tls_listen = ?tls_addr,
        "embedded MQTT broker listening with authentication and ACL (rumqttd behind the tiancha front)"
    );
    Ok(())
}

/// Start rumqttd, unauthenticated, on `listen` (a loopback address: the
/// demo and tests) and wait until it accepts connections. It runs until
/// the process ends.
pub fn start_embedded(listen: SocketAddr) -> Result<(), BrokerError> {
    let config = rumqttd_config(listen)?;
    spawn_rumqttd(config, listen)?;
    tracing::info!(%listen, "embedded MQTT broker (rumqttd) listening");
    Ok(())
}

fn spawn_rumqttd(config: rumqttd::Config, listen: SocketAddr) -> Result<(), BrokerError> {
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
