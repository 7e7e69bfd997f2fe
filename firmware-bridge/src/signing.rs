//! MAVLink 2 message signing (<https://mavlink.io/en/guide/message_signing.html>).
//!
//! A 32-byte secret key is shared by the companion and the autopilot. Every
//! frame we send carries a signature (link id, 48-bit timestamp in 10 µs
//! units since 2015-01-01, first 6 bytes of SHA-256 over key + frame +
//! link id + timestamp). When signing is required, a received frame must be
//! signed with the key, and its timestamp must be newer than the last one
//! of the same stream (link id, system, component) and, for a new stream, no
//! more than a minute behind our clock; otherwise it is dropped and counted.
//!
//! The key is provisioned to the autopilot with `SETUP_SIGNING`
//! ([`setup_signing_message`]), which must only be sent over a trusted link
//! (e.g. USB on the bench): it carries the key in clear.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::codec::{dialect, Msg, RawFrame};

/// 1 January 2015 00:00:00 UTC in Unix microseconds.
const EPOCH_2015_UNIX_US: u64 = 1_420_070_400_000_000;
/// A new stream may be at most one minute behind our clock (10 µs units).
const NEW_STREAM_WINDOW: u64 = 60 * 100_000;

/// Convert Unix microseconds to the signing timestamp (10 µs since 2015).
pub fn signing_timestamp(unix_us: u64) -> u64 {
    unix_us.saturating_sub(EPOCH_2015_UNIX_US) / 10
}

/// A 32-byte signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(pub [u8; 32]);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "SigningKey(sha256 prefix {})", &self.fingerprint())
    }
}

/// Why a key string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("signing key: expected 64 hex digits (32 bytes), got {0} characters")]
    BadLength(usize),
    #[error("signing key: not hexadecimal: {0}")]
    NotHex(String),
    #[error("signing key: must not be all zeros (that disables signing on ArduPilot)")]
    AllZero,
}

impl SigningKey {
    /// Parse 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(KeyError::BadLength(s.len()));
        }
        let v = hex::decode(s).map_err(|e| KeyError::NotHex(e.to_string()))?;
        let mut k = [0u8; 32];
        k.copy_from_slice(&v);
        if k == [0u8; 32] {
            return Err(KeyError::AllZero);
        }
        Ok(Self(k))
    }

    /// The key MAVProxy (`signing setup <passphrase>`) and pymavlink users
    /// derive from a passphrase: SHA-256 of its UTF-8 bytes.
    pub fn from_passphrase(passphrase: &str) -> Self {
        let d = Sha256::digest(passphrase.as_bytes());
        let mut k = [0u8; 32];
        k.copy_from_slice(&d);
        Self(k)
    }

    /// `hex:<64 digits>` or a 64-digit hex string is a key; anything else
    /// is a passphrase.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if let Some(h) = s.strip_prefix("hex:") {
            return Self::from_hex(h);
        }
        if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
            return Self::from_hex(s);
        }
        Ok(Self::from_passphrase(s))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A short, non-secret identifier of the key (for logs).
    pub fn fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..4])
    }

    fn signature(&self, signed_part: &[u8]) -> [u8; 6] {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(signed_part);
        let d = h.finalize();
        let mut out = [0u8; 6];
        out.copy_from_slice(&d[..6]);
        out
    }
}

/// Signs outgoing frames.
#[derive(Debug, Clone)]
pub struct Signer {
    key: SigningKey,
    link_id: u8,
    last_timestamp: u64,
}

impl Signer {
    pub fn new(key: SigningKey, link_id: u8) -> Self {
        Self {
            key,
            link_id,
            last_timestamp: 0,
        }
    }

    /// Append the signature trailer to an unsigned-but-flagged frame
    /// (incompat flag 0x01 already set, CRC in place).
    pub fn sign(&mut self, frame: &mut Vec<u8>, now_unix_us: u64) {
        // Strictly increasing timestamps, even when called twice in one tick.
        let ts = signing_timestamp(now_unix_us).max(self.last_timestamp + 1);
        self.last_timestamp = ts;
        frame.push(self.link_id);
        frame.extend_from_slice(&ts.to_le_bytes()[..6]);
        let sig = self.key.signature(frame);
        frame.extend_from_slice(&sig);
    }
}

/// Why a received frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("unsigned frame while signing is required")]
    Unsigned,
    #[error("signature does not match the key")]
    BadSignature,
    #[error("signature timestamp replayed or too old")]
    Stale,
}

/// Checks received frames against the key and the replay rules.
///
/// Clones share the replay state (the last timestamp of every stream):
/// a decoder per peer holds a clone, and a frame captured from one peer
/// and replayed from another address must still be stale.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: SigningKey,
    /// Accept unsigned frames (signing configured but not required).
    allow_unsigned: bool,
    /// Message ids accepted unsigned even when signing is required
    /// (ArduPilot accepts RADIO_STATUS from SiK radios that cannot sign).
    unsigned_allowed_ids: Vec<u32>,
    replay: Arc<Mutex<ReplayState>>,
}

#[derive(Debug, Default)]
struct ReplayState {
    streams: HashMap<(u8, u8, u8), u64>,
    last_timestamp: u64,
}

impl Verifier {
    pub fn new(key: SigningKey, require: bool) -> Self {
        Self {
            key,
            allow_unsigned: !require,
            unsigned_allowed_ids: vec![109 /* RADIO_STATUS */, 166 /* RADIO */],
            replay: Arc::default(),
        }
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    pub fn verify(&mut self, frame: &RawFrame, now_unix_us: u64) -> Result<(), SignatureError> {
        let Some(sig) = frame.signature() else {
            if self.allow_unsigned || self.unsigned_allowed_ids.contains(&frame.message_id) {
                return Ok(());
            }
            return Err(SignatureError::Unsigned);
        };
        if self.key.signature(frame.signed_part()) != sig.value {
            return Err(SignatureError::BadSignature);
        }
        let mut r = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        r.last_timestamp = r.last_timestamp.max(signing_timestamp(now_unix_us));
        let stream = (sig.link_id, frame.system_id, frame.component_id);
        match r.streams.get(&stream) {
            Some(&last) if sig.timestamp <= last => return Err(SignatureError::Stale),
            None if sig.timestamp + NEW_STREAM_WINDOW < r.last_timestamp => {
                return Err(SignatureError::Stale)
            }
            _ => {}
        }
        r.streams.insert(stream, sig.timestamp);
        r.last_timestamp = r.last_timestamp.max(sig.timestamp);
        Ok(())
    }
}

/// The SETUP_SIGNING message that provisions `key` to the autopilot.
/// Send it only over a trusted link. `now_unix_us` sets the initial
/// timestamp the autopilot will use.
pub fn setup_signing_message(
    key: &SigningKey,
    target_system: u8,
    target_component: u8,
    now_unix_us: u64,
) -> Msg {
    Msg::SETUP_SIGNING(dialect::SETUP_SIGNING_DATA {
        initial_timestamp: signing_timestamp(now_unix_us),
        target_system,
        target_component,
        secret_key: key.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode, Decoder};

    const NOW: u64 = 1_750_000_000_000_000;

    fn ping() -> Msg {
        Msg::MISSION_ITEM_REACHED(dialect::MISSION_ITEM_REACHED_DATA { seq: 9 })
    }

    #[test]
    fn signed_frames_verify_and_replays_are_rejected() {
        let key = SigningKey::from_passphrase("tiancha");
        let mut signer = Signer::new(key.clone(), 0);
        let f1 = encode(1, 1, 0, &ping(), Some((&mut signer, NOW)));
        let f2 = encode(1, 1, 1, &ping(), Some((&mut signer, NOW)));
        let mut d = Decoder::new(Some(Verifier::new(key, true)));
        assert_eq!(d.push_datagram(&f1, NOW).len(), 1);
        assert_eq!(d.push_datagram(&f2, NOW).len(), 1);
        // Replay of f1.
        assert!(d.push_datagram(&f1, NOW).is_empty());
        assert_eq!(d.stats.stale_signatures, 1);
        // Unsigned.
        assert!(d
            .push_datagram(&encode(1, 1, 2, &ping(), None), NOW)
            .is_empty());
        assert_eq!(d.stats.unsigned_rejected, 1);
        // Wrong key.
        let mut other = Signer::new(SigningKey::from_passphrase("other"), 0);
        let f3 = encode(1, 1, 3, &ping(), Some((&mut other, NOW + 10)));
        assert!(d.push_datagram(&f3, NOW).is_empty());
        assert_eq!(d.stats.bad_signatures, 1);
    }

    #[test]
    fn a_new_stream_more_than_a_minute_old_is_stale() {
        let key = SigningKey::from_passphrase("k");
        let mut old = Signer::new(key.clone(), 3);
        let f = encode(1, 1, 0, &ping(), Some((&mut old, NOW - 61_000_000)));
        let mut v = Verifier::new(key, true);
        let mut d = Decoder::new(None);
        let raw = {
            let mut p = crate::codec::FrameParser::new();
            p.push_datagram(&f).remove(0).unwrap()
        };
        assert_eq!(v.verify(&raw, NOW), Err(SignatureError::Stale));
        // Within the minute it is fine.
        let mut recent = Signer::new(v.key().clone(), 4);
        let f = encode(1, 1, 0, &ping(), Some((&mut recent, NOW - 30_000_000)));
        d.set_verifier(Some(v));
        assert_eq!(d.push_datagram(&f, NOW).len(), 1);
    }

    #[test]
    fn a_replay_from_another_peer_is_stale_too() {
        let key = SigningKey::from_passphrase("k");
        let mut s = Signer::new(key.clone(), 0);
        let f = encode(1, 1, 0, &ping(), Some((&mut s, NOW)));
        let v = Verifier::new(key, true);
        // One decoder per peer, each with a clone of the link's verifier.
        let mut first = Decoder::new(Some(v.clone()));
        let mut second = Decoder::new(Some(v));
        assert_eq!(first.push_datagram(&f, NOW).len(), 1);
        assert!(
            second.push_datagram(&f, NOW).is_empty(),
            "replayed via another peer"
        );
        assert_eq!(second.stats.stale_signatures, 1);
    }

    #[test]
    fn key_parsing() {
        let k = SigningKey::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(k.0[0], 0xab);
        assert_eq!(SigningKey::from_hex("abc"), Err(KeyError::BadLength(3)));
        assert_eq!(
            SigningKey::from_hex(&"0".repeat(64)),
            Err(KeyError::AllZero)
        );
        assert!(matches!(
            SigningKey::from_hex(&"zz".repeat(32)),
            Err(KeyError::NotHex(_))
        ));
        let p = SigningKey::parse("secret words").unwrap();
        assert_eq!(p, SigningKey::from_passphrase("secret words"));
        assert!(!format!("{p:?}").contains(&p.to_hex()));
    }
}
