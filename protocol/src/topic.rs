//! MQTT topic names: the only place that builds or parses them.
//!
//! Layout: `tiancha/v1/drones/{drone_id}/{channel}`, where channel is one of
//! [`Channel`]. Status is retained with a last-will "offline"; alerts,
//! events, commands, command results and receipts use QoS 1; telemetry QoS 0.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Topic prefix, carrying the topic-layout version (independent of the
/// payload [`crate::SCHEMA_VERSION`]).
pub const TOPIC_PREFIX: &str = "tiancha/v1/drones";

/// The longest drone id accepted.
pub const MAX_DRONE_ID_LEN: usize = 64;

/// A drone's identity: 1–64 characters of `A-Z a-z 0-9 _ -`. MQTT wildcard
/// and separator characters can never appear, so an id is always one topic
/// level.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DroneId(String);

impl DroneId {
    pub fn new(id: impl Into<String>) -> Result<Self, TopicError> {
        let id = id.into();
        if id.is_empty() || id.len() > MAX_DRONE_ID_LEN {
            return Err(TopicError::BadDroneId {
                id,
                reason: "must be 1 to 64 characters",
            });
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(TopicError::BadDroneId {
                id,
                reason: "may contain only A-Z, a-z, 0-9, '_' and '-'",
            });
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DroneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DroneId {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for DroneId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DroneId::new(s).map_err(serde::de::Error::custom)
    }
}

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// [`crate::DroneStatus`], retained; last will says offline.
    Status,
    /// [`crate::Telemetry`], QoS 0, never spooled.
    Telemetry,
    /// [`crate::Alert`], QoS 1, spooled until acknowledged.
    Alerts,
    /// [`crate::DroneEvent`], QoS 1, spooled until acknowledged.
    Events,
    /// [`crate::Command`], ground → drone, QoS 1.
    Commands,
    /// [`crate::CommandResult`], drone → ground, QoS 1.
    CommandResults,
    /// [`crate::Receipt`], ground → drone, QoS 1: ids the ground has stored.
    Receipts,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Status,
        Channel::Telemetry,
        Channel::Alerts,
        Channel::Events,
        Channel::Commands,
        Channel::CommandResults,
        Channel::Receipts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Status => "status",
            Channel::Telemetry => "telemetry",
            Channel::Alerts => "alerts",
            Channel::Events => "events",
            Channel::Commands => "commands",
            Channel::CommandResults => "command-results",
            Channel::Receipts => "receipts",
        }
    }

    /// True for channels the drone publishes (as opposed to those the
    /// ground publishes to the drone).
    pub fn is_uplink(self) -> bool {
        !matches!(self, Channel::Commands | Channel::Receipts)
    }

    /// The MQTT topic filter matching this channel for every drone.
    pub fn filter_all(self) -> String {
        format!("{TOPIC_PREFIX}/+/{}", self.as_str())
    }

    /// The same filter as an MQTT v5 shared subscription, so several ground
    /// station instances split the stream (`$share/{group}/...`).
    pub fn shared_filter_all(self, group: &str) -> String {
        format!("$share/{group}/{}", self.filter_all())
    }
}

impl FromStr for Channel {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| TopicError::UnknownChannel(s.to_string()))
    }
}

/// A parsed topic: whose, and what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    pub drone_id: DroneId,
    pub channel: Channel,
}

impl Topic {
    pub fn new(drone_id: DroneId, channel: Channel) -> Self {
        Self { drone_id, channel }
    }

    pub fn parse(s: &str) -> Result<Self, TopicError> {
        let rest = s
            .strip_prefix(TOPIC_PREFIX)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| TopicError::NotTiancha(s.to_string()))?;
        let mut parts = rest.split('/');
        let (Some(id), Some(channel), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(TopicError::Shape(s.to_string()));
        };
        Ok(Self {
            drone_id: DroneId::new(id)?,
            channel: channel.parse()?,
        })
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TOPIC_PREFIX}/{}/{}",
            self.drone_id,
            self.channel.as_str()
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic `{0}` is not under `{TOPIC_PREFIX}/`")]
    NotTiancha(String),
    #[error("topic `{0}` must be `{TOPIC_PREFIX}/{{drone_id}}/{{channel}}`")]
    Shape(String),
    #[error("unknown channel `{0}` (expected status, telemetry, alerts, events, commands, command-results or receipts)")]
    UnknownChannel(String),
    #[error("bad drone id `{id}`: {reason}")]
    BadDroneId { id: String, reason: &'static str },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builds_and_parses() {
        let t = Topic::new(DroneId::new("sr-01").unwrap(), Channel::CommandResults);
        assert_eq!(t.to_string(), "tiancha/v1/drones/sr-01/command-results");
        assert_eq!(Topic::parse(&t.to_string()).unwrap(), t);
        assert_eq!(Channel::Alerts.filter_all(), "tiancha/v1/drones/+/alerts");
        assert_eq!(
            Channel::Alerts.shared_filter_all("gs"),
            "$share/gs/tiancha/v1/drones/+/alerts"
        );
    }

    #[test]
    fn rejects_with_reasons() {
        assert!(matches!(
            Topic::parse("other/v1/drones/a/alerts"),
            Err(TopicError::NotTiancha(_))
        ));
        assert!(matches!(
            Topic::parse("tiancha/v1/drones/a/alerts/x"),
            Err(TopicError::Shape(_))
        ));
        assert!(matches!(
            Topic::parse("tiancha/v1/drones/a/video"),
            Err(TopicError::UnknownChannel(_))
        ));
        let e = Topic::parse("tiancha/v1/drones/a+b/alerts").unwrap_err();
        assert!(e.to_string().contains("may contain only"), "{e}");
        assert!(DroneId::new("").is_err());
        assert!(DroneId::new("x".repeat(65)).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(id in "[A-Za-z0-9_-]{1,64}", ch in 0usize..7) {
            let t = Topic::new(DroneId::new(id).unwrap(), Channel::ALL[ch]);
            prop_assert_eq!(Topic::parse(&t.to_string()).unwrap(), t);
        }

        #[test]
        fn never_panics(s in ".*") {
            let _ = Topic::parse(&s);
        }

        #[test]
        fn parsed_ids_are_single_levels(s in "tiancha/v1/drones/[^/]{0,70}/alerts") {
            if let Ok(t) = Topic::parse(&s) {
                prop_assert!(!t.drone_id.as_str().contains(['/', '+', '#']));
            }
        }
    }
}
