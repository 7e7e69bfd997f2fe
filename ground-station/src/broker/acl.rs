//! Who may connect, publish and subscribe on the embedded broker: pure
//! functions, no I/O (the [`super::front`] applies them to live
//! connections).
//!
//! Identity is the certificate's CN (TLS listener with client
//! certificates) or the MQTT username with its password. The role follows
//! from the identity: a name in `ground_station_users` is the ground
//! station, anything else must be a valid drone id and is that drone.
//!
//! | role | may publish | may subscribe |
//! |---|---|---|
//! | drone `D` | `tiancha/v1/drones/D/{status,telemetry,alerts,events,command-results}` (and its will) | exactly `tiancha/v1/drones/D/commands` and `.../D/receipts` |
//! | ground station | `tiancha/v1/drones/{id}/{commands,receipts}` | `[$share/{group}/]tiancha/v1/drones/{+ or id}/{uplink channel}` |
//!
//! The same table is written for mosquitto in `deploy/mosquitto/acl`.

use std::collections::BTreeSet;

use tiancha_protocol::topic::TOPIC_PREFIX;
use tiancha_protocol::{Channel, DroneId, Topic};

use super::passwd::PasswordFile;

/// What an authenticated client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    GroundStation,
    Drone(DroneId),
}

/// An authenticated client: its name (as logged) and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

/// Why a CONNECT was refused; `BadCredentials` maps to CONNACK return code
/// 4, `NotAuthorized` to 5.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("bad username or password: {0}")]
    BadCredentials(String),
    #[error("not authorised: {0}")]
    NotAuthorized(String),
}

/// Who may log in, and as what.
#[derive(Debug, Clone, Default)]
pub struct AuthPolicy {
    /// Password logins (mosquitto_passwd format). `None`: passwords are
    /// not accepted, only client certificates.
    pub passwords: Option<PasswordFile>,
    /// Identities that get the ground-station role.
    pub ground_station_users: BTreeSet<String>,
}

impl AuthPolicy {
    /// Decide a CONNECT. `cert_cn` is the verified client certificate's
    /// common name (`None` on plain TCP or TLS without client
    /// certificates); `login` the CONNECT's username and password.
    pub fn authenticate(
        &self,
        cert_cn: Option<&str>,
        login: Option<(&str, &str)>,
    ) -> Result<Identity, AuthError> {
        let name = match (cert_cn, login) {
            (Some(cn), Some((user, _))) if user != cn => {
                return Err(AuthError::NotAuthorized(format!(
                    "username `{user}` does not match the client certificate's CN `{cn}`"
                )))
            }
            (Some(cn), _) => cn.to_string(),
            (None, None) => {
                return Err(AuthError::NotAuthorized(
                    "no username/password and no client certificate".into(),
                ))
            }
            (None, Some((user, pass))) => {
                let Some(pw) = &self.passwords else {
                    return Err(AuthError::NotAuthorized(
                        "password logins are not enabled on this broker (client certificates only)"
                            .into(),
                    ));
                };
                if !pw.verify(user, pass) {
                    return Err(AuthError::BadCredentials(format!(
                        "user `{user}` unknown or wrong password"
                    )));
                }
                user.to_string()
            }
        };
        let role = if self.ground_station_users.contains(&name) {
            Role::GroundStation
        } else {
            Role::Drone(DroneId::new(name.clone()).map_err(|e| {
                AuthError::NotAuthorized(format!(
                    "identity `{name}` is neither a ground-station user nor a drone id ({e})"
                ))
            })?)
        };
        Ok(Identity { name, role })
    }
}

/// May `who` publish on `topic` (also used for a CONNECT's will)?
pub fn check_publish(who: &Role, topic: &str) -> Result<(), String> {
    let t = Topic::parse(topic).map_err(|e| format!("publish on `{topic}` refused: {e}"))?;
    match who {
        Role::Drone(me) if t.drone_id != *me => Err(format!(
            "publish on `{topic}` refused: drone `{me}` may publish only under {TOPIC_PREFIX}/{me}/"
        )),
        Role::Drone(_) if !t.channel.is_uplink() => Err(format!(
            "publish on `{topic}` refused: `{}` is written by the ground station, not by drones",
            t.channel.as_str()
        )),
        Role::Drone(_) => Ok(()),
        Role::GroundStation if t.channel.is_uplink() => Err(format!(
            "publish on `{topic}` refused: `{}` is written by drones, not by the ground station",
            t.channel.as_str()
        )),
        Role::GroundStation => Ok(()),
    }
}

/// May `who` subscribe to `filter`?
pub fn check_subscribe(who: &Role, filter: &str) -> Result<(), String> {
    let refuse = |why: String| Err(format!("subscribe to `{filter}` refused: {why}"));
    match who {
        Role::Drone(me) => {
            let own = [Channel::Commands, Channel::Receipts]
                .map(|c| Topic::new(me.clone(), c).to_string());
            if own.iter().any(|o| o == filter) {
                Ok(())
            } else {
                refuse(format!(
                    "drone `{me}` may subscribe only to `{}` and `{}`",
                    own[0], own[1]
                ))
            }
        }
        Role::GroundStation => {
            let f = match filter.strip_prefix("$share/") {
                Some(rest) => match rest.split_once('/') {
                    Some((group, f)) if !group.is_empty() && !group.contains(['+', '#']) => f,
                    _ => return refuse("malformed shared subscription".into()),
                },
                None => filter,
            };
            let Some(rest) = f
                .strip_prefix(TOPIC_PREFIX)
                .and_then(|r| r.strip_prefix('/'))
            else {
                return refuse(format!("not under `{TOPIC_PREFIX}/`"));
            };
            let mut parts = rest.split('/');
            let (Some(id), Some(ch), None) = (parts.next(), parts.next(), parts.next()) else {
                return refuse(format!(
                    "must be `{TOPIC_PREFIX}/{{+ or drone id}}/{{uplink channel}}`"
                ));
            };
            if id != "+" && DroneId::new(id).is_err() {
                return refuse(format!("`{id}` is neither `+` nor a drone id"));
            }
            match ch.parse::<Channel>() {
                Ok(c) if c.is_uplink() => Ok(()),
                _ => refuse(format!("`{ch}` is not an uplink channel")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drone(id: &str) -> Role {
        Role::Drone(DroneId::new(id).unwrap())
    }
    fn topic(id: &str, c: Channel) -> String {
        Topic::new(DroneId::new(id).unwrap(), c).to_string()
    }

    #[test]
    fn a_drone_publishes_only_its_own_uplinks() {
        let d1 = drone("drone-1");
        for c in Channel::ALL {
            let own = check_publish(&d1, &topic("drone-1", c));
            assert_eq!(own.is_ok(), c.is_uplink(), "{c:?}: {own:?}");
            let other = check_publish(&d1, &topic("drone-2", c)).unwrap_err();
            assert!(other.contains("refused"), "{other}");
        }
        let e = check_publish(&d1, &topic("drone-2", Channel::Alerts)).unwrap_err();
        assert!(e.contains("only under tiancha/v1/drones/drone-1/"), "{e}");
        let e = check_publish(&d1, &topic("drone-1", Channel::Commands)).unwrap_err();
        assert!(e.contains("written by the ground station"), "{e}");
        // Not a tiancha topic, wildcards, extra levels, prefix tricks.
        for t in [
            "other/topic",
            "tiancha/v1/drones/+/alerts",
            "tiancha/v1/drones/drone-1/alerts/x",
            "tiancha/v1/drones/drone-1",
            "tiancha/v1/drones/drone-1/#",
            "tiancha/v1/drones/drone-10/alerts",
            "tiancha/v1/drones/drone-1/alertsx",
            "$SYS/broker",
        ] {
            assert!(check_publish(&d1, t).is_err(), "{t}");
        }
    }

    #[test]
    fn the_ground_station_writes_commands_and_receipts_only() {
        let gs = Role::GroundStation;
        for c in Channel::ALL {
            assert_eq!(
                check_publish(&gs, &topic("drone-7", c)).is_ok(),
                !c.is_uplink(),
                "{c:?}"
            );
        }
        assert!(check_publish(&gs, "tiancha/v1/drones/+/commands").is_err());
    }

    #[test]
    fn a_drone_subscribes_only_to_its_own_commands_and_receipts() {
        let d1 = drone("drone-1");
        assert!(check_subscribe(&d1, &topic("drone-1", Channel::Commands)).is_ok());
        assert!(check_subscribe(&d1, &topic("drone-1", Channel::Receipts)).is_ok());
        for f in [
            topic("drone-2", Channel::Commands),
            topic("drone-1", Channel::Alerts),
            "tiancha/v1/drones/+/commands".into(),
            "tiancha/v1/drones/drone-1/#".into(),
            "tiancha/v1/drones/#".into(),
            "#".into(),
            "$share/g/tiancha/v1/drones/drone-1/commands".into(),
        ] {
            let e = check_subscribe(&d1, &f).unwrap_err();
            assert!(e.contains("may subscribe only to"), "{f}: {e}");
        }
    }

    #[test]
    fn the_ground_station_reads_uplinks_plain_or_shared() {
        let gs = Role::GroundStation;
        for c in Channel::ALL.into_iter().filter(|c| c.is_uplink()) {
            assert!(check_subscribe(&gs, &c.filter_all()).is_ok(), "{c:?}");
            assert!(check_subscribe(&gs, &c.shared_filter_all("gs")).is_ok());
            assert!(check_subscribe(&gs, &topic("drone-3", c)).is_ok());
        }
        for f in [
            Channel::Commands.filter_all(),
            Channel::Receipts.shared_filter_all("gs"),
            "tiancha/v1/drones/#".into(),
            "#".into(),
            "tiancha/v1/drones/+/+".into(),
            "$share//tiancha/v1/drones/+/alerts".into(),
            "$share/g+/tiancha/v1/drones/+/alerts".into(),
            "tiancha/v1/drones/a#/alerts".into(),
        ] {
            assert!(check_subscribe(&gs, &f).is_err(), "{f}");
        }
    }

    fn policy() -> AuthPolicy {
        AuthPolicy {
            passwords: Some(
                PasswordFile::parse(
                    &format!(
                        "drone-1:{}\nground-station:{}\n",
                        PasswordFile::hash("pw1", b"salt-1234567"),
                        PasswordFile::hash("gspw", b"salt-abcdefg")
                    ),
                    "test",
                )
                .unwrap(),
            ),
            ground_station_users: ["ground-station".to_string()].into(),
        }
    }

    #[test]
    fn authentication_by_password() {
        let p = policy();
        let id = p.authenticate(None, Some(("drone-1", "pw1"))).unwrap();
        assert_eq!(id.role, drone("drone-1"));
        let gs = p
            .authenticate(None, Some(("ground-station", "gspw")))
            .unwrap();
        assert_eq!(gs.role, Role::GroundStation);
        assert!(matches!(
            p.authenticate(None, Some(("drone-1", "pw2"))),
            Err(AuthError::BadCredentials(_))
        ));
        assert!(matches!(
            p.authenticate(None, Some(("drone-9", "pw1"))),
            Err(AuthError::BadCredentials(_))
        ));
        assert!(matches!(
            p.authenticate(None, None),
            Err(AuthError::NotAuthorized(_))
        ));
        let certs_only = AuthPolicy {
            passwords: None,
            ..policy()
        };
        assert!(matches!(
            certs_only.authenticate(None, Some(("drone-1", "pw1"))),
            Err(AuthError::NotAuthorized(_))
        ));
    }

    #[test]
    fn authentication_by_certificate() {
        let p = policy();
        let id = p.authenticate(Some("drone-5"), None).unwrap();
        assert_eq!(id.role, drone("drone-5"));
        // A username may repeat the CN, never contradict it.
        assert!(p
            .authenticate(Some("drone-5"), Some(("drone-5", "")))
            .is_ok());
        let e = p
            .authenticate(Some("drone-5"), Some(("drone-1", "pw1")))
            .unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        assert_eq!(
            p.authenticate(Some("ground-station"), None).unwrap().role,
            Role::GroundStation
        );
        // A CN that is no drone id and no ground-station user.
        let e = p.authenticate(Some("drone 5/#"), None).unwrap_err();
        assert!(e.to_string().contains("neither"), "{e}");
    }
}
