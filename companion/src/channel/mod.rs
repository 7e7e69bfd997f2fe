//! The drone side of the MQTT channel: a thin tokio driver around the
//! sans-IO [`Spool`] and [`PkidTracker`].
//!
//! Two tasks:
//! - the *pump* polls rumqttc's `EventLoop` (and only that: its `poll` is
//!   not cancel-safe) and forwards every event, reconnecting with back-off;
//! - the *driver* owns the spool core, the spool database and the packet-id
//!   tracker. It admits entries in batches (one fsync per batch: group
//!   commit), publishes what the core says to publish, resolves PUBACKs and
//!   ground receipts, deletes what may be deleted, keeps the newest
//!   telemetry sample and the retained status, and hands incoming commands
//!   to the companion.
//!
//! [`ChannelHandle::submit`] returns only once the entry is durably on disk
//! (or refused: spool full, disk full), so "accepted" always means "will be
//! delivered".

pub mod pkid;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, LastWill, Outgoing, QoS};
use tiancha_protocol::{
    self as proto, mqtt::Endpoint, Alert, Channel, Command, CommandResult, DroneEvent, DroneId,
    DroneStatus, EventKind, Receipt, Telemetry, Topic,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::spool::store::{NewEntry, SpoolStore, StoreError};
use crate::spool::{Priority, Spool, SpoolConfig, SpoolFull, SpoolStats};
use pkid::{PkidTracker, Tracked};

/// Channel configuration (the `[channel]` part of the companion config).
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub drone_id: DroneId,
    pub mqtt: Endpoint,
    /// The spool database file.
    pub spool_path: PathBuf,
    pub spool: SpoolConfig,
    pub software_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Full(#[from] SpoolFull),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "spool disk is full; the alert was refused and everything already spooled is kept: {0}"
    )]
    DiskFull(String),
    #[error("spool write failed; the alert was refused: {0}")]
    Write(String),
    #[error("refused to spool an invalid message: {0}")]
    Invalid(#[from] proto::ValidationError),
    #[error("the channel has shut down")]
    Closed,
}

/// How a submission ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Durably in the spool.
    Accepted { seq: u64 },
    /// The same id was already in the spool.
    Duplicate,
}

/// What the channel reports about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelStats {
    pub connected: bool,
    pub spool: SpoolStats,
    pub connects: u64,
    pub disconnects: u64,
    pub published: u64,
    pub telemetry_sent: u64,
    pub telemetry_skipped: u64,
    pub bad_incoming: u64,
    pub pkid_anomalies: u64,
}

struct Admit {
    entry: NewEntry,
    reply: oneshot::Sender<Result<Submitted, ChannelError>>,
}

/// A cheap, cloneable handle used by the rest of the companion.
#[derive(Clone)]
pub struct ChannelHandle {
    drone_id: DroneId,
    admit_tx: mpsc::Sender<Admit>,
    telemetry_tx: watch::Sender<Option<Telemetry>>,
    status_tx: watch::Sender<Option<DroneStatus>>,
    stats_rx: watch::Receiver<ChannelStats>,
    shutdown_tx: watch::Sender<bool>,
}

impl ChannelHandle {
    pub fn drone_id(&self) -> &DroneId {
        &self.drone_id
    }

    /// Spool an alert. Returns once it is on disk.
    pub async fn submit_alert(&self, a: &Alert) -> Result<Submitted, ChannelError> {
        self.submit(Channel::Alerts, a.alert_id, Priority::High, a)
            .await
    }

    pub async fn submit_event(&self, e: &DroneEvent) -> Result<Submitted, ChannelError> {
        self.submit(Channel::Events, e.event_id, Priority::Normal, e)
            .await
    }

    pub async fn submit_command_result(
        &self,
        r: &CommandResult,
    ) -> Result<Submitted, ChannelError> {
        self.submit(Channel::CommandResults, r.spool_id(), Priority::High, r)
            .await
    }

    async fn submit<M: proto::messages::Message>(
        &self,
        channel: Channel,
        id: Uuid,
        priority: Priority,
        msg: &M,
    ) -> Result<Submitted, ChannelError> {
        let payload = proto::encode(msg)?;
        let entry = NewEntry {
            seq: 0, // assigned by the driver
            id,
            priority,
            topic: Topic::new(self.drone_id.clone(), channel).to_string(),
            payload,
            created_unix_ms: now_unix_ms(),
        };
        let (reply, rx) = oneshot::channel();
        self.admit_tx
            .send(Admit { entry, reply })
            .await
            .map_err(|_| ChannelError::Closed)?;
        rx.await.map_err(|_| ChannelError::Closed)?
    }

    /// Replace the telemetry sample waiting to go out (QoS 0, never
    /// spooled, sent only when no spooled entry is waiting).
    pub fn set_telemetry(&self, t: Telemetry) {
        let _ = self.telemetry_tx.send(Some(t));
    }

    /// Replace the retained status (published now and on every connect).
    pub fn set_status(&self, s: DroneStatus) {
        let _ = self.status_tx.send(Some(s));
    }

    pub fn stats(&self) -> ChannelStats {
        self.stats_rx.borrow().clone()
    }

    pub fn watch_stats(&self) -> watch::Receiver<ChannelStats> {
        self.stats_rx.clone()
    }

    /// Ask the driver to disconnect cleanly and stop.
    pub fn shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
    }
}

/// Start the channel. Returns the handle, the stream of commands from the
/// ground, and the driver task (it ends after [`ChannelHandle::shutdown`]).
pub fn start(
    cfg: ChannelConfig,
) -> Result<
    (
        ChannelHandle,
        mpsc::Receiver<Command>,
        tokio::task::JoinHandle<()>,
    ),
    ChannelError,
> {
    let store = SpoolStore::open(&cfg.spool_path)?;
    let recovered = store.recover()?;
    if !recovered.is_empty() {
        info!(entries = recovered.len(), path = %cfg.spool_path.display(), "spool recovered entries from a previous run");
    }
    let spool = Spool::new(cfg.spool, recovered);

    let client_id = format!("tiancha-drone-{}", cfg.drone_id);
    let mut opts = cfg.mqtt.options(&client_id);
    let will = DroneStatus {
        schema: proto::SCHEMA_VERSION,
        drone_id: cfg.drone_id.clone(),
        t_unix_ms: now_unix_ms(),
        online: false,
        state: "offline (last will)".into(),
        mode: None,
        armed: false,
        battery_pct: None,
        links: Default::default(),
        spool_depth: 0,
        software_version: cfg.software_version.clone(),
        readiness: None,
        rtl_target: None,
        fence: None,
    };
    opts.set_last_will(LastWill::new(
        Topic::new(cfg.drone_id.clone(), Channel::Status).to_string(),
        proto::encode(&will)?,
        QoS::AtLeastOnce,
        true,
    ));
    let window = cfg.spool.max_inflight.clamp(1, 1000) as u16;
    opts.set_inflight(window + 16);
    let (client, eventloop) = AsyncClient::new(opts, 256);

    let (admit_tx, admit_rx) = mpsc::channel(4096);
    let (telemetry_tx, telemetry_rx) = watch::channel(None);
    let (status_tx, status_rx) = watch::channel(None);
    let (stats_tx, stats_rx) = watch::channel(ChannelStats::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (net_tx, net_rx) = mpsc::channel(1024);

    let pump = tokio::spawn(pump(eventloop, net_tx));
    let driver = Driver {
        drone_id: cfg.drone_id.clone(),
        spool,
        store: Arc::new(Mutex::new(store)),
        tracker: PkidTracker::new(),
        client,
        stats: ChannelStats::default(),
        stats_tx,
        cmd_tx,
        telemetry_rx,
        status_rx,
        full_reported: false,
        telemetry_dirty: false,
    };
    let task = tokio::spawn(async move {
        driver.run(admit_rx, net_rx, shutdown_rx).await;
        pump.abort();
    });
    let handle = ChannelHandle {
        drone_id: cfg.drone_id,
        admit_tx,
        telemetry_tx,
        status_tx,
        stats_rx,
        shutdown_tx,
    };
    Ok((handle, cmd_rx, task))
}

enum Net {
    Event(Event),
    Down(String),
}

/// Poll the event loop forever, forwarding events; back off on errors.
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

struct Driver {
    drone_id: DroneId,
    spool: Spool,
    store: Arc<Mutex<SpoolStore>>,
    tracker: PkidTracker,
    client: AsyncClient,
    stats: ChannelStats,
    stats_tx: watch::Sender<ChannelStats>,
    cmd_tx: mpsc::Sender<Command>,
    telemetry_rx: watch::Receiver<Option<Telemetry>>,
    status_rx: watch::Receiver<Option<DroneStatus>>,
    full_reported: bool,
    telemetry_dirty: bool,
}

const ADMIT_BATCH: usize = 1024;

impl Driver {
    async fn run(
        mut self,
        mut admit_rx: mpsc::Receiver<Admit>,
        mut net_rx: mpsc::Receiver<Net>,
        mut shutdown_rx: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let timeout = self.spool.poll_timeout();
            tokio::select! {
                biased;
                Ok(()) = shutdown_rx.changed() => {
                    let _ = self.client.disconnect().await;
                    self.flush_deletions().await;
                    self.publish_stats();
                    return;
                }
                Some(net) = net_rx.recv() => {
                    self.on_net(net).await;
                    // Drain what else is already there before doing I/O.
                    while let Ok(net) = net_rx.try_recv() {
                        self.on_net(net).await;
                    }
                }
                Some(first) = admit_rx.recv() => {
                    let mut batch = vec![first];
                    while batch.len() < ADMIT_BATCH {
                        match admit_rx.try_recv() {
                            Ok(a) => batch.push(a),
                            Err(_) => break,
                        }
                    }
                    self.admit(batch).await;
                }
                _ = sleep_until(timeout) => {
                    self.spool.handle_timeout(Instant::now());
                }
                Ok(()) = self.telemetry_rx.changed() => {
                    self.telemetry_dirty = true;
                }
                Ok(()) = self.status_rx.changed() => {
                    self.publish_status().await;
                }
                _ = tick.tick() => {
                    self.publish_stats();
                }
            }
            self.transmit().await;
            self.flush_deletions().await;
        }
    }

    async fn on_net(&mut self, net: Net) {
        match net {
            Net::Down(reason) => {
                if self.spool.is_connected() {
                    warn!(%reason, "broker connection lost; alerts stay in the spool");
                    self.stats.disconnects += 1;
                } else {
                    debug!(%reason, "broker still unreachable");
                }
                self.spool.on_disconnected();
                for t in self.tracker.on_disconnect() {
                    self.requeue(t);
                }
                self.stats.connected = false;
            }
            Net::Event(Event::Incoming(Incoming::ConnAck(ack))) => {
                info!(session_present = ack.session_present, "connected to broker");
                self.stats.connects += 1;
                self.stats.connected = true;
                for t in self.tracker.on_connack(ack.session_present) {
                    self.requeue(t);
                }
                self.spool.on_connected();
                let subs = [Channel::Commands, Channel::Receipts].map(|c| {
                    rumqttc::SubscribeFilter::new(
                        Topic::new(self.drone_id.clone(), c).to_string(),
                        QoS::AtLeastOnce,
                    )
                });
                if let Err(e) = self.client.subscribe_many(subs).await {
                    error!(error = %e, "could not subscribe to commands and receipts");
                }
                self.publish_status().await;
            }
            Net::Event(Event::Outgoing(Outgoing::Publish(pkid))) => {
                self.tracker.on_outgoing_publish(pkid)
            }
            Net::Event(Event::Outgoing(Outgoing::AwaitAck(pkid))) => {
                self.tracker.on_await_ack(pkid)
            }
            Net::Event(Event::Incoming(Incoming::PubAck(ack))) => {
                if let Some(Tracked::Spool(seq)) = self.tracker.on_puback(ack.pkid) {
                    self.spool.on_puback(seq, Instant::now());
                }
                self.stats.pkid_anomalies = self.tracker.anomalies;
            }
            Net::Event(Event::Incoming(Incoming::Publish(p))) => self.on_incoming(p).await,
            Net::Event(_) => {}
        }
    }

    fn requeue(&mut self, t: Tracked) {
        if let Tracked::Spool(seq) = t {
            self.spool.requeue(seq);
        }
    }

    async fn on_incoming(&mut self, p: rumqttc::Publish) {
        let topic = match Topic::parse(&p.topic) {
            Ok(t) if t.drone_id == self.drone_id => t,
            Ok(t) => {
                warn!(topic = %p.topic, "message for another drone ({}) ignored", t.drone_id);
                self.stats.bad_incoming += 1;
                return;
            }
            Err(e) => {
                warn!(error = %e, "message on an unexpected topic ignored");
                self.stats.bad_incoming += 1;
                return;
            }
        };
        match topic.channel {
            Channel::Receipts => match proto::decode::<Receipt>(&p.payload) {
                Ok(r) if r.drone_id == self.drone_id => self.spool.on_receipt(&r.ids),
                Ok(r) => {
                    warn!(drone = %r.drone_id, "receipt names another drone; ignored");
                    self.stats.bad_incoming += 1;
                }
                Err(e) => {
                    warn!(error = %e, "bad receipt ignored");
                    self.stats.bad_incoming += 1;
                }
            },
            Channel::Commands => match proto::decode::<Command>(&p.payload) {
                Ok(c) if c.drone_id == self.drone_id => {
                    if self.cmd_tx.send(c).await.is_err() {
                        debug!("no one listens for commands");
                    }
                }
                Ok(c) => {
                    warn!(drone = %c.drone_id, "command names another drone; ignored");
                    self.stats.bad_incoming += 1;
                }
                Err(e) => {
                    warn!(error = %e, "bad command ignored");
                    self.stats.bad_incoming += 1;
                }
            },
            other => {
                debug!(channel = other.as_str(), "ignoring our own uplink channel");
            }
        }
    }

    /// Admit a batch: check capacity, write it in one transaction, then
    /// tell each submitter.
    async fn admit(&mut self, batch: Vec<Admit>) {
        let mut accepted: Vec<(NewEntry, oneshot::Sender<_>)> = Vec::with_capacity(batch.len());
        let mut full: Option<SpoolFull> = None;
        for Admit { mut entry, reply } in batch {
            if self.spool.contains(&entry.id) || accepted.iter().any(|(e, _)| e.id == entry.id) {
                let _ = reply.send(Ok(Submitted::Duplicate));
                continue;
            }
            let meta_bytes = (entry.payload.len() + entry.topic.len()) as u64;
            match self.spool.reserve(meta_bytes) {
                Ok(()) => {
                    entry.seq = self.spool.next_seq();
                    // Counted now so the next reservation sees it; not
                    // transmitted before the batch is durable (transmit
                    // runs only after this function returns).
                    self.spool.insert(entry.meta());
                    accepted.push((entry, reply));
                }
                Err(f) => {
                    full = Some(f);
                    let _ = reply.send(Err(ChannelError::Full(f)));
                }
            }
        }
        if let Some(f) = full {
            if !self.full_reported {
                error!(depth = f.depth, bytes = f.bytes, "SPOOL FULL: refusing new alerts until the broker takes some; nothing already accepted is dropped");
                self.full_reported = true;
                self.publish_best_effort_event(EventKind::SpoolFull {
                    depth: f.depth,
                    bytes: f.bytes,
                })
                .await;
            }
        } else if !accepted.is_empty() {
            self.full_reported = false;
        }
        if accepted.is_empty() {
            return;
        }
        let entries: Vec<NewEntry> = accepted.iter().map(|(e, _)| e.clone()).collect();
        let store = self.store.clone();
        let res = tokio::task::spawn_blocking(move || store.lock().unwrap().insert_batch(&entries))
            .await
            .expect("spool writer panicked");
        match res {
            Ok(()) => {
                if self.spool.on_write_ok() {
                    warn!("spool disk has room again: accepting alerts");
                }
                for (e, reply) in accepted {
                    let _ = reply.send(Ok(Submitted::Accepted { seq: e.seq }));
                }
            }
            Err(err) => {
                error!(error = %err, "SPOOL WRITE FAILED: {} entries refused", accepted.len());
                let disk_full = matches!(err, StoreError::DiskFull(_));
                if self.spool.on_write_failed(accepted.len() as u64, disk_full) {
                    let kept = self.spool.stats().depth - accepted.len() as u64;
                    let message = format!("SPOOL DISK FULL: new alerts are refused until there is room; the {kept} entries already spooled are kept");
                    error!("{message}");
                    self.publish_best_effort_event(EventKind::Log {
                        level: "error".into(),
                        message,
                    })
                    .await;
                }
                let msg = err.to_string();
                for (e, reply) in accepted {
                    self.spool.abandon(e.seq);
                    let _ = reply.send(Err(if disk_full {
                        ChannelError::DiskFull(msg.clone())
                    } else {
                        ChannelError::Write(msg.clone())
                    }));
                }
            }
        }
    }

    /// Publish what the core says, then the newest telemetry if nothing
    /// spooled is waiting.
    async fn transmit(&mut self) {
        let now = Instant::now();
        let metas: Vec<_> = std::iter::from_fn(|| self.spool.poll_transmit(now)).collect();
        if !metas.is_empty() {
            let store = self.store.clone();
            let seqs: Vec<u64> = metas.iter().map(|m| m.seq).collect();
            let loaded = tokio::task::spawn_blocking(move || {
                let s = store.lock().unwrap();
                seqs.into_iter()
                    .map(|seq| (seq, s.load(seq)))
                    .collect::<Vec<_>>()
            })
            .await
            .expect("spool reader panicked");
            for (seq, r) in loaded {
                match r {
                    Ok(Some((topic, payload))) => {
                        self.tracker.sent(Tracked::Spool(seq));
                        if self
                            .client
                            .publish(topic, QoS::AtLeastOnce, false, payload)
                            .await
                            .is_err()
                        {
                            return;
                        }
                        self.stats.published += 1;
                    }
                    Ok(None) => {
                        error!(seq, "spool entry vanished from disk; treating as lost");
                    }
                    Err(e) => {
                        error!(seq, error = %e, "cannot read spool entry; will retry");
                        self.spool.requeue(seq);
                    }
                }
            }
        }
        if self.spool.is_connected() && self.telemetry_dirty {
            self.telemetry_dirty = false;
            let sample = self.telemetry_rx.borrow_and_update().clone();
            if let Some(t) = sample {
                if self.spool.stats().queued > 0 {
                    // Alerts first: this sample is superseded by the next.
                    self.stats.telemetry_skipped += 1;
                } else if let Ok(payload) = proto::encode(&t) {
                    let topic = Topic::new(self.drone_id.clone(), Channel::Telemetry).to_string();
                    if self
                        .client
                        .try_publish(topic, QoS::AtMostOnce, false, payload)
                        .is_ok()
                    {
                        self.stats.telemetry_sent += 1;
                    } else {
                        self.stats.telemetry_skipped += 1;
                    }
                }
            }
        }
    }

    async fn publish_status(&mut self) {
        let Some(mut s) = self.status_rx.borrow_and_update().clone() else {
            return;
        };
        if !self.spool.is_connected() {
            return;
        }
        s.spool_depth = self.spool.stats().depth;
        if let Ok(payload) = proto::encode(&s) {
            let topic = Topic::new(self.drone_id.clone(), Channel::Status).to_string();
            self.tracker.sent(Tracked::Other);
            let _ = self
                .client
                .publish(topic, QoS::AtLeastOnce, true, payload)
                .await;
        }
    }

    /// An event that cannot go through the spool (it is full): QoS 1, not
    /// retried.
    async fn publish_best_effort_event(&mut self, kind: EventKind) {
        let ev = DroneEvent {
            schema: proto::SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            drone_id: self.drone_id.clone(),
            t_unix_ms: now_unix_ms(),
            kind,
        };
        if let Ok(payload) = proto::encode(&ev) {
            let topic = Topic::new(self.drone_id.clone(), Channel::Events).to_string();
            self.tracker.sent(Tracked::Other);
            let _ = self
                .client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await;
        }
    }

    async fn flush_deletions(&mut self) {
        let seqs = self.spool.drain_deletions();
        if seqs.is_empty() {
            return;
        }
        let store = self.store.clone();
        let res = tokio::task::spawn_blocking(move || store.lock().unwrap().delete_batch(&seqs))
            .await
            .expect("spool deleter panicked");
        if let Err(e) = res {
            // Harmless: they come back on restart and the ground
            // de-duplicates them.
            warn!(error = %e, "could not delete delivered entries from the spool");
        }
    }

    fn publish_stats(&mut self) {
        self.stats.spool = self.spool.stats();
        self.stats.connected = self.spool.is_connected();
        let _ = self.stats_tx.send(self.stats.clone());
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

fn now_unix_ms() -> i64 {
    proto::unix_ms(std::time::SystemTime::now())
}
