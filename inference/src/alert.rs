//! From the eye's incidents to the wire contract: an opened incident
//! becomes a [`tiancha_protocol::Alert`], a change or the end of one an
//! [`EventKind::IncidentUpdate`].

use tiancha_geometry::LatLonAlt;
use tiancha_protocol::{
    Alert, DroneEvent, DroneId, Ellipse, EventKind, GeoPoint, Geotag, LocationStatus, Position,
    RuleInfo, Snapshot, TrackRef, SCHEMA_VERSION,
};
use uuid::Uuid;

use crate::annotate::Jpeg;
use crate::events::{Incident, IncidentChange, IncidentEvent, IncidentLocation, RuleKind};

/// A track behind an incident, with its class name and recent ground path.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackPath {
    pub track_id: u64,
    pub class: String,
    /// Oldest first.
    pub path: Vec<GeoPoint>,
}

/// An incident event with what an alert needs beyond the rule engine:
/// track paths, the annotated snapshot, the drone's position.
#[derive(Debug, Clone, PartialEq)]
pub struct EyeIncident {
    pub event: IncidentEvent,
    pub tracks: Vec<TrackPath>,
    /// The annotated frame (on open; optional on updates).
    pub snapshot: Option<Jpeg>,
    /// Camera position when it was seen.
    pub observer: Option<LatLonAlt>,
}

/// Limits of the wire contract.
const MAX_TRACKS: usize = 1_000;
const MAX_PATH: usize = 512;
const MAX_SIGMA_M: f64 = 100_000.0;

fn geotag(l: &IncidentLocation) -> Geotag {
    let major = l.sigma.semi_major_m.clamp(0.0, MAX_SIGMA_M);
    let minor = l.sigma.semi_minor_m.clamp(0.0, major);
    Geotag {
        lat_deg: l.lat_deg,
        lon_deg: l.lon_deg,
        alt_m: Some(l.alt_m),
        sigma: Ellipse {
            semi_major_m: major,
            semi_minor_m: minor,
            orientation_deg: l.sigma.orientation_deg.rem_euclid(180.0),
        },
    }
}

fn person_count(inc: &Incident) -> Option<u32> {
    match inc.rule_kind {
        RuleKind::Gathering | RuleKind::Intrusion => inc.count,
        RuleKind::Hazard => None,
    }
}

/// The alert for an opened incident.
pub fn to_alert(e: &EyeIncident, drone_id: &DroneId, mission_id: Option<Uuid>) -> Alert {
    let inc = &e.event.incident;
    let location = inc.location.as_ref().map(geotag);
    Alert {
        schema: SCHEMA_VERSION,
        alert_id: inc.id,
        drone_id: drone_id.clone(),
        category: inc.category,
        confidence: if inc.confidence.is_finite() {
            inc.confidence.clamp(0.0, 1.0)
        } else {
            0.0
        },
        t_first_unix_ms: inc.t_first_unix_ms.min(inc.t_opened_unix_ms),
        t_unix_ms: inc.t_opened_unix_ms,
        location_status: if location.is_some() {
            LocationStatus::Geotagged
        } else {
            LocationStatus::Unknown
        },
        location,
        observer: e.observer.map(|p| Position {
            lat_deg: p.lat_deg,
            lon_deg: p.lon_deg,
            alt_m: p.alt_m,
            alt_rel_m: None,
        }),
        person_count: person_count(inc),
        extent_m: inc.extent_m.map(|x| x.clamp(0.0, MAX_SIGMA_M)),
        tracks: e
            .tracks
            .iter()
            .take(MAX_TRACKS)
            .map(|t| TrackRef {
                track_id: t.track_id,
                class: t.class.chars().take(64).collect(),
                path: t.path[t.path.len().saturating_sub(MAX_PATH)..].to_vec(),
            })
            .collect(),
        rule: RuleInfo {
            name: inc.rule_name.chars().take(64).collect(),
            detail: inc.detail.chars().take(2_000).collect(),
        },
        zone: inc.zone.clone(),
        mission_id,
        snapshot: e.snapshot.as_ref().map(|j| Snapshot {
            width: j.width,
            height: j.height,
            jpeg: j.bytes.clone(),
        }),
    }
}

/// The incident-update event for a change or the end of an incident.
pub fn to_update(e: &EyeIncident, drone_id: &DroneId) -> DroneEvent {
    let inc = &e.event.incident;
    DroneEvent {
        schema: SCHEMA_VERSION,
        event_id: Uuid::now_v7(),
        drone_id: drone_id.clone(),
        t_unix_ms: e.event.t_unix_ms,
        kind: EventKind::IncidentUpdate {
            alert_id: inc.id,
            person_count: person_count(inc),
            location: inc.location.as_ref().map(geotag),
            closed: e.event.change == IncidentChange::Closed,
        },
    }
}

/// What to publish for an incident event: an alert when it opens, an
/// update otherwise.
pub enum Outgoing {
    Alert(Box<Alert>),
    Update(DroneEvent),
}

pub fn outgoing(e: &EyeIncident, drone_id: &DroneId, mission_id: Option<Uuid>) -> Outgoing {
    match e.event.change {
        IncidentChange::Opened => Outgoing::Alert(Box::new(to_alert(e, drone_id, mission_id))),
        _ => Outgoing::Update(to_update(e, drone_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::BBox;
    use tiancha_geometry::camera::GroundEllipse;
    use tiancha_protocol::{Category, Validate};

    fn incident(location: bool) -> Incident {
        Incident {
            id: Uuid::now_v7(),
            rule_name: "crowd".into(),
            rule_kind: RuleKind::Gathering,
            category: Category::Gathering,
            zone: None,
            t_first_unix_ms: 1_700_000_000_000,
            t_opened_unix_ms: 1_700_000_060_000,
            t_last_unix_ms: 1_700_000_060_000,
            frame_seq: 600,
            confidence: 0.62,
            track_ids: vec![3, 4, 9],
            boxes: vec![BBox::new(1.0, 2.0, 3.0, 4.0)],
            class_ids: vec![0, 0, 0],
            count: Some(3),
            count_at_open: Some(3),
            peak_count: Some(3),
            extent_m: Some(4.5),
            location: location.then_some(IncidentLocation {
                lat_deg: 28.45,
                lon_deg: 117.94,
                alt_m: 60.0,
                sigma: GroundEllipse {
                    semi_major_m: 3.0,
                    semi_minor_m: 1.0,
                    orientation_deg: 190.0,
                },
            }),
            detail: "3 people within 5 m for 60 s".into(),
        }
    }

    fn eye(change: IncidentChange, location: bool) -> EyeIncident {
        EyeIncident {
            event: IncidentEvent {
                change,
                t_unix_ms: 1_700_000_070_000,
                incident: incident(location),
            },
            tracks: vec![TrackPath {
                track_id: 3,
                class: "person".into(),
                path: vec![GeoPoint::new(28.45, 117.94); 600],
            }],
            snapshot: Some(Jpeg {
                width: 4,
                height: 4,
                bytes: vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0],
            }),
            observer: Some(LatLonAlt::new(28.4501, 117.9401, 160.0)),
        }
    }

    #[test]
    fn an_opened_incident_becomes_a_valid_alert() {
        let id = DroneId::new("d1").unwrap();
        let e = eye(IncidentChange::Opened, true);
        let a = to_alert(&e, &id, None);
        a.validate().unwrap();
        assert_eq!(a.alert_id, e.event.incident.id);
        assert_eq!(a.location_status, LocationStatus::Geotagged);
        assert_eq!(a.person_count, Some(3));
        assert_eq!(a.tracks[0].path.len(), 512);
        assert!((a.location.unwrap().sigma.orientation_deg - 10.0).abs() < 1e-9);
        assert_eq!(a.rule.detail, "3 people within 5 m for 60 s");
        // Position unknown is a valid alert too.
        let a = to_alert(&eye(IncidentChange::Opened, false), &id, None);
        a.validate().unwrap();
        assert_eq!(a.location_status, LocationStatus::Unknown);
        // JSON round trip through the codec.
        let bytes = tiancha_protocol::encode(&a).unwrap();
        let back: Alert = tiancha_protocol::decode(&bytes).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn updates_and_closes_become_incident_updates() {
        let id = DroneId::new("d1").unwrap();
        let e = eye(IncidentChange::Closed, true);
        let ev = to_update(&e, &id);
        ev.validate().unwrap();
        match ev.kind {
            EventKind::IncidentUpdate {
                alert_id,
                closed,
                person_count,
                ..
            } => {
                assert_eq!(alert_id, e.event.incident.id);
                assert!(closed);
                assert_eq!(person_count, Some(3));
            }
            k => panic!("{k:?}"),
        }
        assert!(matches!(
            outgoing(&eye(IncidentChange::Updated, true), &id, None),
            Outgoing::Update(_)
        ));
        assert!(matches!(
            outgoing(&eye(IncidentChange::Opened, true), &id, None),
            Outgoing::Alert(_)
        ));
    }
}
