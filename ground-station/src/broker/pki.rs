//! A small certificate authority for the MQTT channel (rcgen): the CA,
//! the broker's server certificate and one client certificate per drone
//! (CN = drone id) and per ground station (CN = its broker user). Used by
//! `tiancha mqtt-pki` and by the tests; any other CA (openssl, a vault)
//! works as well, the broker only reads PEM files.
//!
//! Revocation: there is no CRL here. To take a drone's certificate away,
//! re-issue the CA and every certificate, or use password logins for that
//! fleet (removing a user from the password file takes effect on the next
//! connection). mosquitto can also read a CRL (`crlfile`).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// The CA's subject. Fixed, so [`Ca::load`] can rebuild the issuer from
/// the key alone.
const CA_CN: &str = "tiancha MQTT CA";
const ORG: &str = "tiancha";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

/// A PEM certificate and its PEM private key (PKCS#8).
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The CA: its key and a certificate to sign with.
pub struct Ca {
    key: KeyPair,
    cert: rcgen::Certificate,
}

fn validity(p: &mut CertificateParams, now_unix_s: i64, days: u32) {
    let day = |unix_s: i64| {
        let (y, m, d) = civil_from_days(unix_s.div_euclid(86_400));
        rcgen::date_time_ymd(y, m, d)
    };
    // A day of slack for clocks behind ours.
    p.not_before = day(now_unix_s - 86_400);
    p.not_after = day(now_unix_s + i64::from(days) * 86_400);
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
}

fn ca_params(now_unix_s: i64, days: u32) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    dn.push(DnType::OrganizationName, ORG);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut p, now_unix_s, days);
    Ok(p)
}

fn now_unix_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Ca {
    /// A new CA valid for `days`.
    pub fn generate(days: u32) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let cert = ca_params(now_unix_s(), days)?.self_signed(&key)?;
        Ok(Self { key, cert })
    }

    /// The CA from its private key (made by [`Ca::generate`]), to issue
    /// more certificates. Its certificate file stays as it was.
    pub fn load(key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert = ca_params(now_unix_s(), 1)?.self_signed(&key)?;
        Ok(Self { key, cert })
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The broker's certificate for these DNS names and/or IP addresses
    /// (what clients put in `[mqtt] host`).
    pub fn issue_server(&self, names: &[String], days: u32) -> Result<Issued, PkiError> {
        if names.is_empty() {
            return Err(PkiError::Invalid(
                "a server certificate needs at least one name".into(),
            ));
        }
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        for n in names {
            p.subject_alt_names
                .push(match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(n.clone().try_into()?),
                });
        }
        p.distinguished_name
            .push(DnType::CommonName, names[0].clone());
        p.distinguished_name.push(DnType::OrganizationName, ORG);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut p, now_unix_s(), days);
        self.sign(p)
    }

    /// A client certificate whose CN is `identity` (a drone id, or a
    /// ground-station user).
    pub fn issue_client(&self, identity: &str, days: u32) -> Result<Issued, PkiError> {
        tiancha_protocol::DroneId::new(identity)
            .map_err(|e| PkiError::Invalid(format!("client identity `{identity}`: {e}")))?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, identity);
        p.distinguished_name.push(DnType::OrganizationName, ORG);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut p, now_unix_s(), days);
        self.sign(p)
    }

    fn sign(&self, p: CertificateParams) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn client_certificates_carry_the_identity_and_chain_to_a_reloaded_ca() {
        let ca = Ca::generate(30).unwrap();
        let again = Ca::load(&ca.key_pem()).unwrap();
        let c = again.issue_client("drone-7", 30).unwrap();
        let der =
            rumqttc::tokio_rustls::rustls::pki_types::CertificateDer::from(pem_der(&c.cert_pem));
        assert_eq!(
            super::super::front::common_name(&der).as_deref(),
            Some("drone-7")
        );
        // Signed by the original CA certificate's key and name.
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        let ca_der = pem_der(&ca.cert_pem());
        let (_, ca_parsed) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert_eq!(parsed.issuer(), ca_parsed.subject());
        parsed
            .verify_signature(Some(ca_parsed.public_key()))
            .expect("signed by the CA");
        assert!(again.issue_client("drone 7/#", 30).is_err());
        assert!(ca.issue_server(&[], 30).is_err());
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        use rumqttc::tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }
}
