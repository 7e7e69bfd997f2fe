//! MQTT → store: subscribe, validate, de-duplicate, store, then acknowledge.
//!
//! Order of operations for every batch (what makes it lossless):
//! 1. messages arrive from the broker (QoS 1, persistent session, manual
//!    acks: the broker keeps them until we acknowledge);
//! 2. each is classified ([`classify`]): valid → a [`Record`], invalid →
//!    a quarantine record with the reason (never dropped);
//! 3. the batch is committed to SQLite in one transaction;
//! 4. only then are the messages acknowledged to the broker, and receipts
//!    with the stored ids are published to each drone.
//!
//! A crash between 3 and 4 means the broker (or the drone) sends them again;
//! ids are primary keys, so they are stored once.
//!
//! Identity: the broker authenticates each drone and its ACL lets it
//! publish only under its own `tiancha/v1/drones/{id}/` (see
//! [`crate::broker::acl`], `deploy/mosquitto/acl`); [`classify`]
//! quarantines a payload whose `drone_id` differs from its topic's. With
//! both, an alert stored as drone D's was published with D's credentials
//! (tested in `tests/mqtt_security.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, QoS};
use serde::{Deserialize, Serialize};
use tiancha_protocol::{
    self as proto, mqtt::Endpoint, Alert, Channel, CommandResult, DecodeError, DroneEvent, DroneId,
    DroneStatus, Receipt, Telemetry, Topic,
};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, error, info, warn};

use crate::store::{BatchOutcome, Quarantined, Record, Store};

/// The `[ingest]` section of the ground-station config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Subscribe through `$share/{group}/...` so several ground-station
    /// instances split the stream (MQTT v5 shared subscriptions; mosquitto
    /// and rumqttd accept them from v3.1.1 clients too). Empty: plain
    /// subscriptions.
    pub shared_group: String,
    /// Keep at most one telemetry row per drone per this many ms (the
    /// newest sample is always kept in `drones.telemetry_json`).
    pub telemetry_interval_ms: i64,
    /// Most messages per store transaction.
    pub batch_max: usize,
    /// How long to wait for more messages before committing a batch.
    pub batch_wait_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            shared_group: String::new(),
            telemetry_interval_ms: 1000,
            batch_max: 1000,
            batch_wait_ms: 5,
        }
    }
}

impl IngestConfig {
    pub fn check(&self) -> Result<(), String> {
        if !self.shared_group.is_empty()
            && !self
                .shared_group
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "ingest.shared_group `{}` may contain only A-Z a-z 0-9 _ -",
                self.shared_group
            ));
        }
        if !(1..=100_000).contains(&self.batch_max) {
            return Err("ingest.batch_max must be 1..=100000".into());
        }
        if self.batch_wait_ms > 10_000 {
            return Err("ingest.batch_wait_ms must be at most 10000".into());
        }
        if self.telemetry_interval_ms < 0 {
            return Err("ingest.telemetry_interval_ms must not be negative".into());
        }
        Ok(())
    }

    /// The filters to subscribe to.
    pub fn filters(&self) -> Vec<String> {
        [
            Channel::Alerts,
            Channel::Events,
            Channel::CommandResults,
            Channel::Status,
            Channel::Telemetry,
        ]
        .into_iter()
        .map(|c| {
            if self.shared_group.is_empty() {
                c.filter_all()
            } else {
                c.shared_filter_all(&self.shared_group)
            }
        })
        .collect()
    }
}

/// Counters, exported on `/metrics`.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub received: AtomicU64,
    pub alerts_new: AtomicU64,
    pub duplicates: AtomicU64,
    pub quarantined: AtomicU64,
    pub telemetry_kept: AtomicU64,
    pub telemetry_dropped: AtomicU64,
    pub batches: AtomicU64,
    pub receipts_sent: AtomicU64,
    pub connects: AtomicU64,
    pub store_errors: AtomicU64,
}

impl IngestStats {
    fn add(&self, o: &BatchOutcome, received: u64) {
        self.received.fetch_add(received, Ordering::Relaxed);
        self.alerts_new
            .fetch_add(o.new_alerts.len() as u64, Ordering::Relaxed);
        self.duplicates.fetch_add(o.duplicates, Ordering::Relaxed);
        self.quarantined.fetch_add(o.quarantined, Ordering::Relaxed);
        self.telemetry_kept
            .fetch_add(o.telemetry_kept, Ordering::Relaxed);
        self.telemetry_dropped
            .fetch_add(o.telemetry_dropped, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the rest of the ground station hears from ingest (the UI's live
/// feed subscribes to this).
#[derive(Debug, Clone)]
pub enum Notice {
    NewAlert(Box<Alert>),
    Event(DroneEvent),
    Status(DroneStatus),
    Telemetry(Box<Telemetry>),
    CommandResult(CommandResult),
    Quarantined { topic: String, reason: String },
}

/// Turn one MQTT message into what the store keeps. Pure; never fails:
/// anything wrong becomes a quarantine record saying why.
pub fn classify(topic: &str, payload: &[u8]) -> Record {
    let quarantine = |class: &str, reason: String| {
        Record::Quarantine(Quarantined {
            topic: topic.to_string(),
            class: class.to_string(),
            reason,
            payload: payload.to_vec(),
        })
    };
    let t = match Topic::parse(topic) {
        Ok(t) => t,
        Err(e) => return quarantine("bad_topic", e.to_string()),
    };
    fn check_id<M>(
        t: &Topic,
        r: Result<M, DecodeError>,
        id: impl Fn(&M) -> &DroneId,
    ) -> Result<M, (String, String)> {
        let m = r.map_err(|e| (e.class().to_string(), e.to_string()))?;
        if id(&m) != &t.drone_id {
            return Err((
                "drone_id_mismatch".into(),
                format!(
                    "payload drone_id `{}` differs from the topic's drone `{}`",
                    id(&m),
                    t.drone_id
                ),
            ));
        }
        Ok(m)
    }
    let r = match t.channel {
        Channel::Alerts => check_id(&t, proto::decode::<Alert>(payload), |m| &m.drone_id)
            .map(|m| Record::Alert(Box::new(m))),
        Channel::Events => {
            check_id(&t, proto::decode::<DroneEvent>(payload), |m| &m.drone_id).map(Record::Event)
        }
        Channel::CommandResults => {
            check_id(&t, proto::decode::<CommandResult>(payload), |m| &m.drone_id)
                .map(Record::CommandResult)
        }
        Channel::Status => {
            check_id(&t, proto::decode::<DroneStatus>(payload), |m| &m.drone_id).map(Record::Status)
        }
        Channel::Telemetry => check_id(&t, proto::decode::<Telemetry>(payload), |m| &m.drone_id)
            .map(|m| Record::Telemetry(Box::new(m))),
        Channel::Commands | Channel::Receipts => Err((
            "unexpected_channel".into(),
            format!(
                "the ground station does not ingest `{}`",
                t.channel.as_str()
            ),
        )),
    };
    r.unwrap_or_else(|(class, reason)| quarantine(&class, reason))
}

enum Net {
    Event(Event),
    Down(String),
}

/// The MQTT client ingest runs on (manual acks, persistent session).
/// The same client publishes receipts and the operators' commands.
pub fn client(endpoint: &Endpoint, client_id: &str) -> (AsyncClient, EventLoop) {
    let mut opts = endpoint.options(client_id);
    opts.set_manual_acks(true).set_inflight(1000);
    AsyncClient::new(opts, 1024)
}

/// Run ingest until the process ends. Reconnects on its own.
pub async fn run(
    endpoint: Endpoint,
    client_id: String,
    cfg: IngestConfig,
    store: Arc<Mutex<Store>>,
    stats: Arc<IngestStats>,
    notices: broadcast::Sender<Notice>,
) {
    let (client, eventloop) = client(&endpoint, &client_id);
    run_with(client, eventloop, cfg, store, stats, notices).await
}

/// [`run`] on a client made by [`client`] (whose handle the caller keeps
/// to publish commands).
pub async fn run_with(
    client: AsyncClient,
    eventloop: EventLoop,
    cfg: IngestConfig,
    store: Arc<Mutex<Store>>,
    stats: Arc<IngestStats>,
    notices: broadcast::Sender<Notice>,
) {
    let (net_tx, mut net_rx) = mpsc::channel::<Net>(8192);
    let pump = tokio::spawn(pump(eventloop, net_tx));
    let filters = cfg.filters();
    let wait = Duration::from_millis(cfg.batch_wait_ms);
    let mut batch: Vec<rumqttc::Publish> = Vec::with_capacity(cfg.batch_max);
    let mut connected = false;
    loop {
        // Block for the first message of a batch; then take what arrives
        // within `batch_wait_ms`, up to `batch_max`.
        let next = if batch.is_empty() {
            net_rx.recv().await
        } else {
            match tokio::time::timeout(wait, net_rx.recv()).await {
                Ok(n) => n,
                Err(_) => {
                    let msgs = std::mem::take(&mut batch);
                    process(&msgs, true, &store, &stats, &notices, &client).await;
                    continue;
                }
            }
        };
        let Some(mut net) = next else { break };
        loop {
            match net {
                Net::Event(Event::Incoming(Incoming::ConnAck(ack))) => {
                    connected = true;
                    stats.connects.fetch_add(1, Ordering::Relaxed);
                    info!(
                        session_present = ack.session_present,
                        "ingest connected to broker"
                    );
                    let subs = filters
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                    if let Err(e) = client.subscribe_many(subs).await {
                        error!(error = %e, "subscribe failed");
                    }
                }
                Net::Event(Event::Incoming(Incoming::Publish(p))) => batch.push(p),
                Net::Event(_) => {}
                Net::Down(reason) => {
                    if connected {
                        warn!(%reason, "ingest lost the broker; it keeps our session");
                    }
                    connected = false;
                    // Store what we have (harmless: ids de-duplicate) but do
                    // not acknowledge: packet ids belong to the dead
                    // connection, and the broker will redeliver.
                    let msgs = std::mem::take(&mut batch);
                    process(&msgs, false, &store, &stats, &notices, &client).await;
                }
            }
            if batch.len() >= cfg.batch_max {
                break;
            }
            match net_rx.try_recv() {
                Ok(n) => net = n,
                Err(_) => break,
            }
        }
        if batch.len() >= cfg.batch_max {
            let msgs = std::mem::take(&mut batch);
            process(&msgs, true, &store, &stats, &notices, &client).await;
        }
    }
    pump.abort();
}

async fn pump(mut eventloop: EventLoop, tx: mpsc::Sender<Net>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match eventloop.poll().await {
            Ok(ev) => {
                if matches!(ev, Event::Incoming(Incoming::ConnAck(_))) {
                    backoff = Duration::from_millis(100);
                }
                if tx.send(Net::Event(ev)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if tx.send(Net::Down(e.to_string())).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn process(
    msgs: &[rumqttc::Publish],
    ack: bool,
    store: &Arc<Mutex<Store>>,
    stats: &Arc<IngestStats>,
    notices: &broadcast::Sender<Notice>,
    client: &AsyncClient,
) {
    if msgs.is_empty() {
        return;
    }
    let owned: Vec<(String, bytes::Bytes)> = msgs
        .iter()
        .map(|p| (p.topic.clone(), p.payload.clone()))
        .collect();
    let store2 = store.clone();
    let res = tokio::task::spawn_blocking(move || {
        let records: Vec<Record> = owned.iter().map(|(t, p)| classify(t, p)).collect();
        let now = proto::unix_ms(std::time::SystemTime::now());
        let out = store2.lock().unwrap().ingest_batch(&records, now);
        out.map(|o| (o, records))
    })
    .await
    .expect("ingest worker panicked");
    let (outcome, records) = match res {
        Ok(x) => x,
        Err(e) => {
            // Nothing acknowledged: the broker redelivers after reconnect.
            stats.store_errors.fetch_add(1, Ordering::Relaxed);
            error!(error = %e, "store write failed; {} messages left unacknowledged", msgs.len());
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
    };
    stats.add(&outcome, msgs.len() as u64);
    for p in msgs.iter().filter(|_| ack) {
        if p.qos != QoS::AtMostOnce {
            let _ = client.ack(p).await;
        }
    }
    // Receipts, grouped per drone.
    let mut per_drone: HashMap<String, Vec<uuid::Uuid>> = HashMap::new();
    for (drone, id) in &outcome.stored {
        per_drone.entry(drone.clone()).or_default().push(*id);
    }
    for (drone, ids) in per_drone {
        let Ok(drone_id) = DroneId::new(drone) else {
            continue;
        };
        for chunk in ids.chunks(5_000) {
            let r = Receipt {
                schema: proto::SCHEMA_VERSION,
                drone_id: drone_id.clone(),
                ids: chunk.to_vec(),
            };
            if let Ok(payload) = proto::encode(&r) {
                let topic = Topic::new(drone_id.clone(), Channel::Receipts).to_string();
                if client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .is_ok()
                {
                    stats.receipts_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    if outcome.quarantined > 0 {
        warn!(count = outcome.quarantined, "payloads quarantined");
    }
    debug!(
        n = msgs.len(),
        new_alerts = outcome.new_alerts.len(),
        "batch stored"
    );
    if notices.receiver_count() > 0 {
        let new: std::collections::HashSet<_> = outcome.new_alerts.iter().collect();
        for r in records {
            let n = match r {
                Record::Alert(a) if new.contains(&a.alert_id) => Notice::NewAlert(a),
                Record::Alert(_) => continue,
                Record::Event(e) => Notice::Event(e),
                Record::Status(s) => Notice::Status(s),
                Record::Telemetry(t) => Notice::Telemetry(t),
                Record::CommandResult(c) => Notice::CommandResult(c),
                Record::Quarantine(q) => Notice::Quarantined {
                    topic: q.topic,
                    reason: q.reason,
                },
            };
            let _ = notices.send(n);
        }
    }
}
