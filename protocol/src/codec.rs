//! JSON encoding and strict decoding of [`Message`]s.
//!
//! Decoding checks, in order: payload size, JSON well-formedness, the
//! `schema` version, the shape of every field (with the path of the field
//! that is wrong), then [`Validate`]. Each failure is a [`DecodeError`]
//! whose `Display` is fit to show an operator or store in quarantine.

use serde::Deserialize;

use crate::messages::Message;
use crate::validate::ValidationError;
use crate::{MAX_PAYLOAD_BYTES, SCHEMA_VERSION};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{kind}: payload of {size} bytes is larger than the limit of {MAX_PAYLOAD_BYTES}")]
    TooLarge { kind: &'static str, size: usize },
    #[error("{kind}: malformed JSON: {message}")]
    Malformed { kind: &'static str, message: String },
    #[error("{kind}: field `schema` is missing (every payload must carry its schema version)")]
    MissingSchema { kind: &'static str },
    #[error("{kind}: unknown schema version {found} (this build reads version {SCHEMA_VERSION})")]
    UnknownSchema { kind: &'static str, found: u64 },
    #[error("{kind}: field `{path}`: {message}")]
    Field {
        kind: &'static str,
        path: String,
        message: String,
    },
    #[error("{kind}: {error}")]
    Invalid {
        kind: &'static str,
        error: ValidationError,
    },
}

impl DecodeError {
    /// A short machine-readable class for counters and quarantine rows.
    pub fn class(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Malformed { .. } => "malformed_json",
            DecodeError::MissingSchema { .. } => "missing_schema",
            DecodeError::UnknownSchema { .. } => "unknown_schema",
            DecodeError::Field { .. } => "bad_field",
            DecodeError::Invalid { .. } => "invalid",
        }
    }
}

#[derive(Deserialize)]
struct SchemaOnly {
    schema: Option<serde_json::Value>,
}

/// Serialise a message to JSON. Messages are validated first so that a
/// producer never emits what a consumer would reject.
pub fn encode<M: Message>(msg: &M) -> Result<Vec<u8>, ValidationError> {
    msg.validate()?;
    Ok(serde_json::to_vec(msg).expect("messages always serialise"))
}

/// Parse and validate a message.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, DecodeError> {
    let kind = M::KIND;
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLarge {
            kind,
            size: bytes.len(),
        });
    }
    let head: SchemaOnly = serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed {
        kind,
        message: e.to_string(),
    })?;
    match head.schema {
        None => return Err(DecodeError::MissingSchema { kind }),
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(SCHEMA_VERSION as u64) => {}
        Some(serde_json::Value::Number(n)) => {
            return Err(DecodeError::UnknownSchema {
                kind,
                found: n.as_u64().unwrap_or(u64::MAX),
            })
        }
        Some(other) => {
            return Err(DecodeError::Field {
                kind,
                path: "schema".into(),
                message: format!("expected an integer version, got {other}"),
            })
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let msg: M = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json appends " at line L column C"; keep it, it helps.
        DecodeError::Field {
            kind,
            path: if path == "." { "(root)".into() } else { path },
            message: inner.to_string(),
        }
    })?;
    msg.validate()
        .map_err(|error| DecodeError::Invalid { kind, error })?;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::*;
    use crate::topic::DroneId;
    use proptest::prelude::*;
    use uuid::Uuid;

    const T0: i64 = 1_795_000_000_000;

    fn jpeg(n: usize) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0];
        v.resize(n.max(4), 0x42);
        v
    }

    pub(crate) fn alert() -> Alert {
        Alert {
            schema: SCHEMA_VERSION,
            alert_id: Uuid::now_v7(),
            drone_id: DroneId::new("sr-01").unwrap(),
            category: Category::Gathering,
            confidence: 0.87,
            t_first_unix_ms: T0,
            t_unix_ms: T0 + 180_000,
            location_status: LocationStatus::Geotagged,
            location: Some(Geotag {
                lat_deg: 28.451,
                lon_deg: 117.942,
                alt_m: Some(70.0),
                sigma: Ellipse {
                    semi_major_m: 3.1,
                    semi_minor_m: 1.2,
                    orientation_deg: 45.0,
                },
            }),
            observer: Some(Position {
                lat_deg: 28.4505,
                lon_deg: 117.9415,
                alt_m: 130.0,
                alt_rel_m: Some(60.0),
            }),
            person_count: Some(12),
            extent_m: Some(14.5),
            tracks: vec![TrackRef {
                track_id: 7,
                class: "person".into(),
                path: vec![GeoPoint::new(28.451, 117.942)],
            }],
            rule: RuleInfo {
                name: "gathering".into(),
                detail: "12 people within 15 m for 180 s".into(),
            },
            zone: Some("market".into()),
            mission_id: None,
            snapshot: Some(Snapshot {
                width: 640,
                height: 480,
                jpeg: jpeg(2_000),
            }),
        }
    }

    #[test]
    fn alert_round_trips() {
        let a = alert();
        let bytes = encode(&a).unwrap();
        let b: Alert = decode(&bytes).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn every_message_round_trips() {
        let id = DroneId::new("d1").unwrap();
        let cmd = Command {
            schema: SCHEMA_VERSION,
            command_id: Uuid::now_v7(),
            drone_id: id.clone(),
            issued_by: "op1".into(),
            t_unix_ms: T0,
            expires_unix_ms: T0 + 60_000,
            kind: CommandKind::Investigate {
                target: GeoPoint::new(28.45, 117.94),
                orbit_radius_m: 30.0,
                duration_s: 60.0,
                alert_id: None,
            },
            auth: None,
        };
        assert_eq!(decode::<Command>(&encode(&cmd).unwrap()).unwrap(), cmd);
        let ev = DroneEvent {
            schema: SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            drone_id: id.clone(),
            t_unix_ms: T0,
            kind: EventKind::MissionProgress {
                mission_id: None,
                current_seq: 3,
                total: 20,
                reached_seq: Some(2),
            },
        };
        let json = String::from_utf8(encode(&ev).unwrap()).unwrap();
        assert!(json.contains(r#""kind":"mission_progress""#), "{json}");
        assert_eq!(decode::<DroneEvent>(json.as_bytes()).unwrap(), ev);
        let res = CommandResult {
            schema: SCHEMA_VERSION,
            command_id: cmd.command_id,
            drone_id: id.clone(),
            t_unix_ms: T0,
            status: CommandStatus::Refused,
            progress_pct: None,
            reason: "battery at 15 % is below the 30 % needed to launch".into(),
            detail: None,
        };
        assert_eq!(
            decode::<CommandResult>(&encode(&res).unwrap()).unwrap(),
            res
        );
        let st = DroneStatus {
            schema: SCHEMA_VERSION,
            drone_id: id.clone(),
            t_unix_ms: T0,
            online: false,
            state: "offline (last will)".into(),
            mode: None,
            armed: false,
            battery_pct: None,
            links: LinkStates::default(),
            spool_depth: 0,
            software_version: "0.1.0".into(),
            readiness: None,
            rtl_target: None,
            fence: None,
        };
        assert_eq!(decode::<DroneStatus>(&encode(&st).unwrap()).unwrap(), st);
        let r = Receipt {
            schema: SCHEMA_VERSION,
            drone_id: id,
            ids: vec![Uuid::now_v7()],
        };
        assert_eq!(decode::<Receipt>(&encode(&r).unwrap()).unwrap(), r);
    }

    fn reject(json: &str) -> DecodeError {
        decode::<Alert>(json.as_bytes()).unwrap_err()
    }

    fn alert_json() -> serde_json::Value {
        serde_json::to_value(alert()).unwrap()
    }

    #[test]
    fn rejects_malformed_json() {
        let e = reject("{\"schema\": 1, ");
        assert_eq!(e.class(), "malformed_json");
        assert!(e.to_string().starts_with("alert: malformed JSON"), "{e}");
    }

    #[test]
    fn rejects_unknown_and_missing_schema() {
        let mut j = alert_json();
        j["schema"] = 7.into();
        let e = reject(&j.to_string());
        assert_eq!(
            e.to_string(),
            "alert: unknown schema version 7 (this build reads version 1)"
        );
        j.as_object_mut().unwrap().remove("schema");
        assert_eq!(reject(&j.to_string()).class(), "missing_schema");
    }

    #[test]
    fn rejects_out_of_range_and_nan_coordinates() {
        let mut j = alert_json();
        j["location"]["lat_deg"] = 91.5.into();
        let e = reject(&j.to_string());
        assert_eq!(
            e.to_string(),
            "alert: field `location.lat_deg`: 91.5 is out of range [-90, 90]"
        );
        // JSON has no NaN: a producer that writes one sends an invalid token
        // or a string; both are refused with the field named.
        let text = j.to_string().replace("91.5", "NaN");
        assert_eq!(reject(&text).class(), "malformed_json");
        j["location"]["lat_deg"] = "NaN".into();
        let e = reject(&j.to_string());
        assert!(e.to_string().contains("location.lat_deg"), "{e}");
        let mut a = alert();
        a.location.as_mut().unwrap().lon_deg = f64::NAN;
        let e = encode(&a).unwrap_err();
        assert_eq!(e.field, "location.lon_deg");
        assert!(e.reason.contains("not a finite number"));
    }

    #[test]
    fn rejects_unknown_category_naming_the_field() {
        let mut j = alert_json();
        j["category"] = "ufo".into();
        let e = reject(&j.to_string());
        let s = e.to_string();
        assert!(
            s.starts_with("alert: field `category`: unknown variant `ufo`"),
            "{s}"
        );
    }

    #[test]
    fn rejects_oversize_snapshots() {
        let mut a = alert();
        a.snapshot.as_mut().unwrap().jpeg = jpeg(crate::MAX_SNAPSHOT_BYTES + 1);
        let e = encode(&a).unwrap_err();
        assert_eq!(e.field, "snapshot.jpeg");
        // Written anyway by a broken producer: refused, naming the field.
        let json = serde_json::to_vec(&a).unwrap();
        let e = decode::<Alert>(&json).unwrap_err();
        assert_eq!(e.class(), "invalid");
        assert!(
            e.to_string()
                .contains("field `snapshot.jpeg`: 524289 bytes is larger"),
            "{e}"
        );
        // Far too large: refused before parsing.
        let mut big = alert();
        big.snapshot.as_mut().unwrap().jpeg = jpeg(10 * 1024 * 1024);
        let e = decode::<Alert>(&serde_json::to_vec(&big).unwrap()).unwrap_err();
        assert_eq!(e.class(), "too_large");
        assert!(e.to_string().contains("larger than the limit"), "{e}");
    }

    #[test]
    fn rejects_non_jpeg_snapshot_and_bad_base64() {
        let mut j = alert_json();
        j["snapshot"]["jpeg"] = "!!!".into();
        let e = reject(&j.to_string());
        assert!(
            e.to_string().contains("snapshot.jpeg") && e.to_string().contains("base64"),
            "{e}"
        );
        let mut a = alert();
        a.snapshot.as_mut().unwrap().jpeg = b"GIF89a".to_vec();
        assert!(encode(&a).unwrap_err().reason.contains("not a JPEG"));
    }

    #[test]
    fn rejects_inconsistent_location_status() {
        let mut a = alert();
        a.location_status = LocationStatus::Unknown;
        assert_eq!(encode(&a).unwrap_err().field, "location");
        a.location = None;
        assert!(encode(&a).is_ok());
    }

    #[test]
    fn rejects_bad_drone_id_in_payload() {
        let mut j = alert_json();
        j["drone_id"] = "a/b".into();
        let e = reject(&j.to_string());
        assert!(e.to_string().contains("drone_id"), "{e}");
    }

    #[test]
    fn refusal_must_give_reason() {
        let r = CommandResult {
            schema: SCHEMA_VERSION,
            command_id: Uuid::now_v7(),
            drone_id: DroneId::new("d").unwrap(),
            t_unix_ms: T0,
            status: CommandStatus::Refused,
            progress_pct: None,
            reason: " ".into(),
            detail: None,
        };
        assert_eq!(encode(&r).unwrap_err().field, "reason");
    }

    fn arb_alert() -> impl Strategy<Value = Alert> {
        (
            -90.0f64..=90.0,
            -180.0f64..=180.0,
            0.0f64..=1.0,
            0usize..10,
            proptest::option::of(0u32..500),
            0.0f64..50.0,
            1.0f64..2.0,
            "[a-z]{1,20}",
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(lat, lon, conf, cat, count, minor, ratio, rule, tail)| {
                let mut a = alert();
                a.alert_id = Uuid::now_v7();
                let g = a.location.as_mut().unwrap();
                g.lat_deg = lat;
                g.lon_deg = lon;
                g.sigma.semi_minor_m = minor;
                g.sigma.semi_major_m = minor * ratio;
                a.confidence = conf;
                a.category = Category::ALL[cat];
                a.person_count = count;
                a.rule.name = rule;
                let mut j = jpeg(4);
                j.extend(tail);
                a.snapshot.as_mut().unwrap().jpeg = j;
                a
            })
    }

    proptest! {
        #[test]
        fn valid_alerts_round_trip(a in arb_alert()) {
            let bytes = encode(&a).unwrap();
            prop_assert_eq!(decode::<Alert>(&bytes).unwrap(), a);
        }

        #[test]
        fn decode_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode::<Alert>(&bytes);
            let _ = decode::<Command>(&bytes);
            let _ = decode::<Telemetry>(&bytes);
        }

        #[test]
        fn decode_never_panics_on_mutated_alerts(a in arb_alert(), pos in 0usize..4096, byte in any::<u8>()) {
            let mut bytes = encode(&a).unwrap();
            let i = pos % bytes.len();
            bytes[i] = byte;
            if let Ok(b) = decode::<Alert>(&bytes) {
                // Whatever survives a mutation is still valid.
                prop_assert!(crate::Validate::validate(&b).is_ok());
            }
        }
    }
}
