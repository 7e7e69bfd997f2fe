//! Map rumqttc's packet ids back to what we published (sans-IO).
//!
//! rumqttc assigns MQTT packet ids inside its event loop and reports them
//! as `Outgoing::Publish(pkid)` events, in the order requests were handed
//! to it; PUBACKs come back as `Incoming::PubAck(pkid)`. This tracker keeps
//! a FIFO of what we handed over and pairs each with its packet id, so a
//! PUBACK resolves to a spool entry.
//!
//! Cases handled (all from rumqttc 0.25's `MqttState`):
//! - QoS 0 publishes report packet id 0: ignored.
//! - After a reconnect with `session_present`, rumqttc retransmits pending
//!   publishes with their old ids: a known id is a retransmission.
//! - A packet-id collision (`Outgoing::AwaitAck(pkid)`) parks the next
//!   request until the old id is acked, then reports `Publish(pkid)` again.
//! - A reconnect *without* a session drops everything rumqttc held: all
//!   tracked publishes are handed back for re-queueing.

use std::collections::{HashMap, VecDeque};

/// What a tracked publish was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    /// A spool entry, by seq.
    Spool(u64),
    /// Something else sent with QoS 1 (e.g. retained status).
    Other,
}

#[derive(Debug, Default)]
pub struct PkidTracker {
    unassigned: VecDeque<Tracked>,
    by_pkid: HashMap<u16, Tracked>,
    collided: HashMap<u16, Tracked>,
    /// Events that made no sense (counted, never fatal).
    pub anomalies: u64,
}

impl PkidTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// We handed a QoS 1 publish to the client.
    pub fn sent(&mut self, what: Tracked) {
        self.unassigned.push_back(what);
    }

    /// rumqttc reported `Outgoing::Publish(pkid)`.
    pub fn on_outgoing_publish(&mut self, pkid: u16) {
        if pkid == 0 {
            return; // QoS 0
        }
        if !self.by_pkid.contains_key(&pkid) {
            if let Some(what) = self.collided.remove(&pkid) {
                self.by_pkid.insert(pkid, what);
                return;
            }
            match self.unassigned.pop_front() {
                Some(what) => {
                    self.by_pkid.insert(pkid, what);
                }
                None => self.anomalies += 1,
            }
        }
        // else: a retransmission of a publish we already track.
    }

    /// rumqttc reported `Outgoing::AwaitAck(pkid)`: the next request is
    /// parked until `pkid` is free.
    pub fn on_await_ack(&mut self, pkid: u16) {
        match self.unassigned.pop_front() {
            Some(what) => {
                self.collided.insert(pkid, what);
            }
            None => self.anomalies += 1,
        }
    }

    /// A PUBACK arrived; returns what it acknowledges.
    pub fn on_puback(&mut self, pkid: u16) -> Option<Tracked> {
        let r = self.by_pkid.remove(&pkid);
        if r.is_none() {
            self.anomalies += 1;
        }
        r
    }

    /// The connection dropped. Parked (collided) publishes are not kept by
    /// rumqttc across reconnects reliably: hand them back.
    pub fn on_disconnect(&mut self) -> Vec<Tracked> {
        self.collided.drain().map(|(_, w)| w).collect()
    }

    /// Connected again. Without a session, rumqttc dropped every pending
    /// publish: hand all back. With one, it retransmits them itself.
    pub fn on_connack(&mut self, session_present: bool) -> Vec<Tracked> {
        let mut lost: Vec<Tracked> = self.collided.drain().map(|(_, w)| w).collect();
        if !session_present {
            lost.extend(self.by_pkid.drain().map(|(_, w)| w));
            lost.extend(self.unassigned.drain(..));
        }
        lost
    }

    pub fn in_flight(&self) -> usize {
        self.by_pkid.len() + self.unassigned.len() + self.collided.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Tracked::*;

    #[test]
    fn pairs_in_order_and_ignores_qos0() {
        let mut t = PkidTracker::new();
        t.sent(Spool(1));
        t.sent(Other);
        t.sent(Spool(2));
        t.on_outgoing_publish(0);
        t.on_outgoing_publish(1);
        t.on_outgoing_publish(2);
        t.on_outgoing_publish(3);
        assert_eq!(t.on_puback(3), Some(Spool(2)));
        assert_eq!(t.on_puback(1), Some(Spool(1)));
        assert_eq!(t.on_puback(2), Some(Other));
        assert_eq!(t.on_puback(2), None);
        assert_eq!(t.anomalies, 1);
    }

    #[test]
    fn retransmission_keeps_mapping() {
        let mut t = PkidTracker::new();
        t.sent(Spool(1));
        t.on_outgoing_publish(5);
        assert!(t.on_connack(true).is_empty());
        t.sent(Spool(2));
        t.on_outgoing_publish(5); // retransmitted
        t.on_outgoing_publish(6); // new
        assert_eq!(t.on_puback(5), Some(Spool(1)));
        assert_eq!(t.on_puback(6), Some(Spool(2)));
    }

    #[test]
    fn collision_resolves_after_old_ack() {
        let mut t = PkidTracker::new();
        t.sent(Spool(1));
        t.on_outgoing_publish(1);
        t.sent(Spool(2));
        t.on_await_ack(1);
        assert_eq!(t.on_puback(1), Some(Spool(1)));
        t.on_outgoing_publish(1);
        assert_eq!(t.on_puback(1), Some(Spool(2)));
    }

    #[test]
    fn lost_session_returns_everything() {
        let mut t = PkidTracker::new();
        t.sent(Spool(1));
        t.on_outgoing_publish(1);
        t.sent(Spool(2));
        t.sent(Spool(3));
        t.on_await_ack(1);
        let mut lost = t.on_connack(false);
        lost.sort_by_key(|w| match w {
            Spool(s) => *s,
            Other => 0,
        });
        assert_eq!(lost, vec![Spool(1), Spool(2), Spool(3)]);
        assert_eq!(t.in_flight(), 0);
    }
}
