//! How to reach the broker: one config shape for the companion and the
//! ground station (feature `mqtt`), plain TCP or TLS (rustls).
//!
//! Plain TCP is for a broker on the same host (loopback: the demo, the
//! embedded broker). Any other deployment must use TLS
//! ([`ClientTls`]): the channel carries police alerts, positions and the
//! broker password (docs/security.md, "MQTT").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::tokio_rustls::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
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
///
/// [mqtt.tls]                  # optional; required off loopback
/// ca_file = "/etc/tiancha/mqtt-ca.pem"        # verifies the broker
/// client_cert_file = "/etc/tiancha/sr-01.pem" # optional: client certificate
/// client_key_file = "/etc/tiancha/sr-01.key"  #   and its key (PKCS#8/PKCS#1/SEC1 PEM)
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
    /// TLS to the broker. `None`: plain TCP (loopback only, see the module
    /// doc).
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

/// `[mqtt.tls]`: verify the broker against `ca_file` (the broker's
/// certificate must name `host`), optionally authenticating with a client
/// certificate (its CN is the identity the broker's ACL uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// PEM file with the CA certificate(s) the broker's certificate must
    /// chain to. The system's roots are not used: the fleet's broker has
    /// its own CA.
    pub ca_file: PathBuf,
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

impl ClientTls {
    /// Make relative paths relative to `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [
            Some(&mut self.ca_file),
            self.client_cert_file.as_mut(),
            self.client_key_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Read the files and build the rustls client configuration. Errors
    /// name the file and what is wrong with it.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in load_certs(&self.ca_file, "mqtt.tls.ca_file")? {
            roots.add(c).map_err(|e| {
                format!(
                    "mqtt.tls.ca_file {}: not a usable CA certificate: {e}",
                    self.ca_file.display()
                )
            })?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("mqtt.tls: {e}"))?
            .with_root_certificates(roots);
        let config = match (&self.client_cert_file, &self.client_key_file) {
            (Some(cert), Some(key)) => {
                let chain = load_certs(cert, "mqtt.tls.client_cert_file")?;
                let key = load_key(key, "mqtt.tls.client_key_file")?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    format!(
                        "mqtt.tls: client certificate {} and key do not go together: {e}",
                        cert.display()
                    )
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(
                    "mqtt.tls.client_cert_file and mqtt.tls.client_key_file go together".into(),
                )
            }
        };
        Ok(Arc::new(config))
    }
}

/// The rustls crypto provider every TLS endpoint of tiancha uses
/// (aws-lc-rs, what rumqttc's `use-rustls` enables). Named explicitly so a
/// build that also links `ring` does not have to pick a process default.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: cannot read: {e}", path.display()))
}

/// All certificates in a PEM file (at least one).
pub fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no `BEGIN CERTIFICATE` block found",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_file(path, what)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "{what} {}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}",
            path.display()
        )
    })
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
            tls: None,
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
        if let Some(t) = &self.tls {
            if t.client_cert_file.is_some() != t.client_key_file.is_some() {
                return Err(
                    "mqtt.tls.client_cert_file and mqtt.tls.client_key_file go together".into(),
                );
            }
        }
        Ok(())
    }

    /// Read and check the TLS files (missing, unreadable, not PEM, key not
    /// matching the certificate). Call at start-up, after relative paths
    /// are resolved.
    pub fn check_files(&self) -> Result<(), String> {
        if let Some(t) = &self.tls {
            t.client_config()?;
        }
        Ok(())
    }

    /// True when the broker is on this host (plain TCP is acceptable).
    pub fn is_loopback(&self) -> bool {
        let h = self.host.trim_start_matches('[').trim_end_matches(']');
        h.eq_ignore_ascii_case("localhost")
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// rumqttc options for a persistent session with this client id, TLS
    /// files read now.
    pub fn try_options(&self, client_id: &str) -> Result<rumqttc::MqttOptions, String> {
        let mut o = rumqttc::MqttOptions::new(client_id, self.host.clone(), self.port);
        o.set_keep_alive(Duration::from_secs(self.keep_alive_s))
            .set_clean_session(false)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            o.set_credentials(u.clone(), p.clone());
        }
        match &self.tls {
            Some(t) => {
                o.set_transport(rumqttc::Transport::tls_with_config(
                    rumqttc::TlsConfiguration::Rustls(t.client_config()?),
                ));
            }
            None if !self.is_loopback() => tracing::warn!(
                host = %self.host,
                "plain MQTT to a host that is not this one: alerts, commands and the password cross the network in clear; configure [mqtt.tls]"
            ),
            None => {}
        }
        Ok(o)
    }

    /// [`Self::try_options`] for callers that checked the files at
    /// start-up ([`Self::check_files`]). If they have become unreadable
    /// since, this fails *closed*: TLS trusting no certificate (every
    /// connection attempt fails and is logged), never plain TCP.
    pub fn options(&self, client_id: &str) -> rumqttc::MqttOptions {
        match self.try_options(client_id) {
            Ok(o) => o,
            Err(e) => {
                let mut o = rumqttc::MqttOptions::new(client_id, self.host.clone(), self.port);
                tracing::error!(error = %e, "mqtt TLS files unusable: no connection will succeed until this is fixed");
                let nothing = rustls::ClientConfig::builder_with_provider(crypto_provider())
                    .with_safe_default_protocol_versions()
                    .expect("default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                o.set_transport(rumqttc::Transport::tls_with_config(
                    rumqttc::TlsConfiguration::Rustls(Arc::new(nothing)),
                ));
                o
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_endpoint(dir: &Path, ca: &str) -> Endpoint {
        Endpoint {
            tls: Some(ClientTls {
                ca_file: dir.join(ca),
                client_cert_file: None,
                client_key_file: None,
            }),
            ..Endpoint::default()
        }
    }

    #[test]
    fn tls_section_parses_and_plain_is_the_default() {
        let e: Endpoint =
            toml::from_str("host = \"10.0.0.5\"\nport = 8883\n[tls]\nca_file = \"ca.pem\"\n")
                .unwrap();
        assert_eq!(e.tls.as_ref().unwrap().ca_file, PathBuf::from("ca.pem"));
        assert!(!e.is_loopback());
        let d: Endpoint = toml::from_str("").unwrap();
        assert!(d.tls.is_none());
        assert!(d.is_loopback());
        let bad = toml::from_str::<Endpoint>("[tls]\nca_file = \"a\"\ncafile = \"b\"\n");
        assert!(bad.is_err(), "unknown keys in [mqtt.tls] are refused");
    }

    #[test]
    fn cert_without_key_is_refused_before_any_io() {
        let mut e = tls_endpoint(Path::new("/nonexistent"), "ca.pem");
        e.tls.as_mut().unwrap().client_cert_file = Some("c.pem".into());
        let err = e.check().unwrap_err();
        assert!(err.contains("go together"), "{err}");
    }

    #[test]
    fn missing_and_unparsable_files_say_which_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let e = tls_endpoint(dir.path(), "missing.pem");
        let err = e.check_files().unwrap_err();
        assert!(
            err.contains("mqtt.tls.ca_file")
                && err.contains("missing.pem")
                && err.contains("cannot read"),
            "{err}"
        );
        std::fs::write(dir.path().join("junk.pem"), "hello, not a certificate\n").unwrap();
        let err = tls_endpoint(dir.path(), "junk.pem")
            .check_files()
            .unwrap_err();
        assert!(
            err.contains("junk.pem") && err.contains("no `BEGIN CERTIFICATE`"),
            "{err}"
        );
        std::fs::write(
            dir.path().join("broken.pem"),
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = tls_endpoint(dir.path(), "broken.pem")
            .check_files()
            .unwrap_err();
        assert!(
            err.contains("broken.pem") && err.contains("not valid PEM"),
            "{err}"
        );
        // try_options fails the same way; options fails closed (TLS, not plain).
        let e = tls_endpoint(dir.path(), "junk.pem");
        assert!(e.try_options("x").is_err());
        assert!(matches!(
            e.options("x").transport(),
            rumqttc::Transport::Tls(_)
        ));
    }
}
