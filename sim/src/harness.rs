//! A deterministic, virtual-time link: the bridge's sans-IO [`Core`] and
//! the simulator's sans-IO [`SimNode`] exchanging real MAVLink bytes
//! through two seeded [`Impairment`]s, with no sockets and no clock.
//!
//! Minutes of lossy flight run in a fraction of a second, and a failing
//! seed replays exactly. Tests in any crate can use it; what it leaves out
//! (sockets, tokio) is covered by the socket tests.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tiancha_firmware_bridge::core::{BridgeConfig, Core};
use tiancha_firmware_bridge::pose::PoseHistory;
use tiancha_firmware_bridge::signing::SigningKey;
use tiancha_firmware_bridge::transport::Packet;

use crate::autopilot::{AutopilotConfig, SimNode};
use crate::impair::{Impairment, ImpairmentConfig};

const BRIDGE_PEER: u64 = 1;
const SIM_PEER: u64 = 2;

/// The two ends and the wire between them.
pub struct VirtualLink {
    base: Instant,
    base_unix_us: u64,
    /// Virtual time since the start.
    pub now: Duration,
    pub core: Core,
    pub node: SimNode,
    /// Bridge → simulator.
    pub up: Impairment,
    /// Simulator → bridge.
    pub down: Impairment,
    /// Simulated seconds per virtual second.
    pub speed: f64,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    packets: HashMap<u64, (bool, Vec<u8>)>,
    next_id: u64,
    /// Bytes delivered each way (for statistics).
    pub bytes_up: u64,
    pub bytes_down: u64,
    stuck: u32,
}

impl VirtualLink {
    pub fn new(
        bridge: BridgeConfig,
        autopilot: AutopilotConfig,
        key: Option<SigningKey>,
        up: ImpairmentConfig,
        down: ImpairmentConfig,
    ) -> Self {
        let base = Instant::now();
        let base_unix_us = autopilot.boot_unix_us;
        let poses = Arc::new(RwLock::new(PoseHistory::default()));
        Self {
            core: Core::new(bridge, base, base_unix_us, poses),
            node: SimNode::new(autopilot, key),
            up: Impairment::new(up),
            down: Impairment::new(down),
            speed: 1.0,
            base,
            base_unix_us,
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            packets: HashMap::new(),
            next_id: 0,
            bytes_up: 0,
            bytes_down: 0,
            stuck: 0,
        }
    }

    /// The bridge's monotonic clock now.
    pub fn instant(&self) -> Instant {
        self.base + self.now
    }

    fn unix_us(&self) -> u64 {
        self.base_unix_us + self.now.as_micros() as u64
    }

    fn sim_now(&self) -> f64 {
        self.now.as_secs_f64() * self.speed
    }

    fn enqueue(&mut self, to_node: bool, bytes: Vec<u8>) {
        let delays = if to_node {
            self.up.schedule()
        } else {
            self.down.schedule()
        };
        for d in delays {
            self.next_id += 1;
            self.packets.insert(self.next_id, (to_node, bytes.clone()));
            self.queue.push(Reverse((self.now + d, self.next_id)));
        }
    }

    fn pump(&mut self) {
        while let Some(b) = self.core.poll_transmit() {
            self.enqueue(true, b);
        }
        while let Some(b) = self.node.poll_transmit() {
            self.enqueue(false, b);
        }
    }

    /// Advance to the next event and process it.
    pub fn step(&mut self) {
        self.pump();
        let mut next = self.now + Duration::from_secs(1);
        if let Some(Reverse((t, _))) = self.queue.peek() {
            next = next.min(*t);
        }
        if let Some(t) = self.core.poll_timeout() {
            next = next.min(t.saturating_duration_since(self.base));
        }
        let sim_next = self.node.autopilot.next_wakeup() / self.speed;
        next = next.min(Duration::from_secs_f64(sim_next.max(0.0)));
        if next <= self.now {
            self.stuck += 1;
            if self.stuck > 1000 {
                // Something keeps reporting "due now" without progress
                // (float rounding): move on rather than spin.
                next = self.now + Duration::from_micros(100);
                self.stuck = 0;
            }
        } else {
            self.stuck = 0;
        }
        self.now = self.now.max(next);
        while let Some(Reverse((t, id))) = self.queue.peek().copied() {
            if t > self.now {
                break;
            }
            self.queue.pop();
            let Some((to_node, bytes)) = self.packets.remove(&id) else {
                continue;
            };
            if to_node {
                self.bytes_up += bytes.len() as u64;
                let (now, unix) = (self.sim_now(), self.unix_us());
                self.node
                    .handle_packet(BRIDGE_PEER, &Packet::Datagram(bytes), now, unix);
            } else {
                self.bytes_down += bytes.len() as u64;
                let at = self.instant();
                self.core
                    .handle_packet(SIM_PEER, &Packet::Datagram(bytes), at);
            }
        }
        if self
            .core
            .poll_timeout()
            .is_some_and(|t| t <= self.instant())
        {
            let at = self.instant();
            self.core.handle_timeout(at);
        }
        let (now, unix) = (self.sim_now(), self.unix_us());
        self.node.tick(now, unix);
        self.pump();
    }

    /// Step until `f` returns `Some` or `limit` of virtual time has passed
    /// (then `None`).
    pub fn run_until<T>(
        &mut self,
        limit: Duration,
        mut f: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<T> {
        let end = self.now + limit;
        while self.now < end {
            if let Some(t) = f(self) {
                return Some(t);
            }
            self.step();
        }
        f(self)
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let _ = self.run_until(d, |_| None::<()>);
    }
}
