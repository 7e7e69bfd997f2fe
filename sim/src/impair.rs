//! Link impairment: seeded loss, duplication, reordering, delay and
//! jitter, per direction.
//!
//! [`Impairment`] is the sans-IO policy: for each packet it says when (if
//! ever, and how many times) it arrives. [`UdpProxy`] puts it between any
//! two UDP peers (e.g. the bridge and the simulator); the simulator's own
//! socket can apply it too; virtual-time tests use it directly.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What to do to packets in one direction. Probabilities in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImpairmentConfig {
    /// Drop probability.
    pub loss: f64,
    /// Probability a delivered packet is delivered twice.
    pub duplicate: f64,
    /// Probability a packet is held back by `reorder_delay_ms` so that
    /// later packets overtake it.
    pub reorder: f64,
    pub reorder_delay_ms: f64,
    /// Base one-way delay.
    pub delay_ms: f64,
    /// Uniform extra delay in [0, jitter_ms].
    pub jitter_ms: f64,
    pub seed: u64,
}

impl Default for ImpairmentConfig {
    fn default() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay_ms: 20.0,
            delay_ms: 0.0,
            jitter_ms: 0.0,
            seed: 1,
        }
    }
}

/// A bad-config error naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("impairment `{field}`: {reason}")]
pub struct ImpairmentError {
    pub field: &'static str,
    pub reason: String,
}

impl ImpairmentConfig {
    /// The same impairment with another seed (for the other direction).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn is_clean(&self) -> bool {
        self.loss == 0.0
            && self.duplicate == 0.0
            && self.reorder == 0.0
            && self.delay_ms == 0.0
            && self.jitter_ms == 0.0
    }

    pub fn validate(&self) -> Result<(), ImpairmentError> {
        for (field, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(ImpairmentError {
                    field,
                    reason: format!("{p} is not a probability in [0, 1]"),
                });
            }
        }
        for (field, v) in [
            ("delay_ms", self.delay_ms),
            ("jitter_ms", self.jitter_ms),
            ("reorder_delay_ms", self.reorder_delay_ms),
        ] {
            if !(0.0..=60_000.0).contains(&v) {
                return Err(ImpairmentError {
                    field,
                    reason: format!("{v} ms is not in [0, 60000]"),
                });
            }
        }
        Ok(())
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImpairmentStats {
    pub packets: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

/// The policy. Deterministic for a seed and a packet sequence.
#[derive(Debug, Clone)]
pub struct Impairment {
    cfg: ImpairmentConfig,
    rng: StdRng,
    pub stats: ImpairmentStats,
}

impl Impairment {
    pub fn new(cfg: ImpairmentConfig) -> Self {
        Self {
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            stats: ImpairmentStats::default(),
        }
    }

    pub fn config(&self) -> &ImpairmentConfig {
        &self.cfg
    }

    fn one_delay(&mut self) -> Duration {
        let mut ms = self.cfg.delay_ms;
        if self.cfg.jitter_ms > 0.0 {
            ms += self.rng.random_range(0.0..=self.cfg.jitter_ms);
        }
        if self.cfg.reorder > 0.0 && self.rng.random_bool(self.cfg.reorder) {
            self.stats.reordered += 1;
            ms += self.cfg.reorder_delay_ms;
        }
        Duration::from_secs_f64(ms / 1000.0)
    }

    /// Delivery delays for one packet: empty = lost; two = duplicated.
    pub fn schedule(&mut self) -> Vec<Duration> {
        self.stats.packets += 1;
        if self.cfg.loss > 0.0 && self.rng.random_bool(self.cfg.loss) {
            self.stats.dropped += 1;
            return vec![];
        }
        let mut v = vec![self.one_delay()];
        if self.cfg.duplicate > 0.0 && self.rng.random_bool(self.cfg.duplicate) {
            self.stats.duplicated += 1;
            v.push(self.one_delay());
        }
        v
    }
}

/// A UDP proxy with an impairment per direction. Clients send to
/// [`local_addr`](Self::local_addr); the proxy forwards to `upstream`
/// (e.g. the simulator's `udpin` port) from its own socket, and sends what
/// comes back to the most recent client.
pub struct UdpProxy {
    local: SocketAddr,
    stats: Arc<Mutex<(ImpairmentStats, ImpairmentStats)>>,
    task: JoinHandle<()>,
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UdpProxy {
    /// `to_upstream` impairs client → upstream, `to_client` the way back.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        to_upstream: ImpairmentConfig,
        to_client: ImpairmentConfig,
    ) -> std::io::Result<UdpProxy> {
        to_upstream
            .validate()
            .and(to_client.validate())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let front = UdpSocket::bind(listen).await?;
        let back_bind: SocketAddr = if upstream.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let back = UdpSocket::bind(back_bind).await?;
        let local = front.local_addr()?;
        let stats: Arc<Mutex<(ImpairmentStats, ImpairmentStats)>> =
            Arc::new(Mutex::new(Default::default()));
        let st = stats.clone();
        let task = tokio::spawn(async move {
            let front = Arc::new(front);
            let back = Arc::new(back);
            let mut up = Impairment::new(to_upstream);
            let mut down = Impairment::new(to_client);
            let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
            let mut b1 = vec![0u8; 65536];
            let mut b2 = vec![0u8; 65536];
            loop {
                tokio::select! {
                    r = front.recv_from(&mut b1) => {
                        let Ok((n, from)) = r else { continue };
                        *client.lock().expect("lock") = Some(from);
                        let data = b1[..n].to_vec();
                        for d in up.schedule() {
                            send_later(back.clone(), data.clone(), upstream, d);
                        }
                        st.lock().expect("lock").0 = up.stats;
                    }
                    r = back.recv_from(&mut b2) => {
                        let Ok((n, _)) = r else { continue };
                        let Some(to) = *client.lock().expect("lock") else { continue };
                        let data = b2[..n].to_vec();
                        for d in down.schedule() {
                            send_later(front.clone(), data.clone(), to, d);
                        }
                        st.lock().expect("lock").1 = down.stats;
                    }
                }
            }
        });
        Ok(UdpProxy { local, stats, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// (client → upstream, upstream → client) counters.
    pub fn stats(&self) -> (ImpairmentStats, ImpairmentStats) {
        *self.stats.lock().expect("lock")
    }
}

fn send_later(sock: Arc<UdpSocket>, data: Vec<u8>, to: SocketAddr, d: Duration) {
    if d.is_zero() {
        // Keep order for undelayed packets: send now.
        let _ = sock.try_send_to(&data, to);
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(d).await;
        let _ = sock.send_to(&data, to).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_match_the_config_and_are_reproducible() {
        let cfg = ImpairmentConfig {
            loss: 0.2,
            duplicate: 0.05,
            reorder: 0.05,
            seed: 42,
            ..Default::default()
        };
        let mut a = Impairment::new(cfg);
        let mut b = Impairment::new(cfg);
        let mut lost = 0;
        let mut dup = 0;
        for _ in 0..100_000 {
            let x = a.schedule();
            assert_eq!(x, b.schedule());
            match x.len() {
                0 => lost += 1,
                2 => dup += 1,
                _ => {}
            }
        }
        assert!((lost as f64 / 1e5 - 0.2).abs() < 0.01, "{lost}");
        assert!((dup as f64 / 8e4 - 0.05).abs() < 0.005, "{dup}");
        assert!(ImpairmentConfig { loss: 1.5, ..cfg }.validate().is_err());
    }
}
