//! Byte transports: serial ports, UDP and TCP, as tokio tasks that keep
//! reconnecting. They move bytes only; framing is [`crate::codec`].
//!
//! Address syntax (as MAVProxy/pymavlink, so operators can reuse theirs):
//!
//! | address | meaning |
//! |---|---|
//! | `serial:/dev/ttyUSB0:921600` | serial port at a baud rate (reopened if it goes away) |
//! | `udpin:0.0.0.0:14550` | listen; reply to whoever sent to us (peers expire after 30 s of silence) |
//! | `udpout:192.168.1.10:14550` | send to a fixed address; accept replies |
//! | `tcp:127.0.0.1:5760` | TCP client (reconnects with back-off) |
//! | `tcpin:0.0.0.0:5760` | TCP server; every client is a peer |

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Where to reach the other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Serial { path: String, baud: u32 },
    UdpIn(SocketAddr),
    UdpOut(SocketAddr),
    TcpOut(String),
    TcpIn(SocketAddr),
}

/// A malformed address, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad MAVLink address {input:?}: {reason} (expected serial:/dev/X:BAUD, udpin:IP:PORT, udpout:HOST:PORT, tcp:HOST:PORT or tcpin:IP:PORT)")]
pub struct AddressError {
    pub input: String,
    pub reason: String,
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| AddressError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = s.split_once(':').ok_or_else(|| err("missing scheme"))?;
        let sock = |r: &str| -> Result<SocketAddr, AddressError> {
            use std::net::ToSocketAddrs;
            r.to_socket_addrs()
                .map_err(|e| err(&format!("cannot resolve {r:?}: {e}")))?
                .next()
                .ok_or_else(|| err(&format!("{r:?} resolves to nothing")))
        };
        match scheme {
            "serial" => {
                let (path, baud) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| err("serial needs a path and a baud rate"))?;
                if path.is_empty() {
                    return Err(err("empty serial device path"));
                }
                let baud: u32 = baud
                    .parse()
                    .map_err(|_| err(&format!("baud rate {baud:?} is not a number")))?;
                if baud == 0 {
                    return Err(err("baud rate must be positive"));
                }
                Ok(Address::Serial {
                    path: path.to_string(),
                    baud,
                })
            }
            "udpin" | "udp" => Ok(Address::UdpIn(sock(rest)?)),
            "udpout" => Ok(Address::UdpOut(sock(rest)?)),
            "tcp" | "tcpout" => {
                let (host, port) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| err("tcp needs host:port"))?;
                if host.is_empty() || port.parse::<u16>().is_err() {
                    return Err(err("tcp needs host:port with a numeric port"));
                }
                Ok(Address::TcpOut(rest.to_string()))
            }
            "tcpin" => Ok(Address::TcpIn(sock(rest)?)),
            other => Err(err(&format!("unknown scheme {other:?}"))),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Serial { path, baud } => write!(f, "serial:{path}:{baud}"),
            Address::UdpIn(a) => write!(f, "udpin:{a}"),
            Address::UdpOut(a) => write!(f, "udpout:{a}"),
            Address::TcpOut(a) => write!(f, "tcp:{a}"),
            Address::TcpIn(a) => write!(f, "tcpin:{a}"),
        }
    }
}

/// Identifies one peer of a transport (a UDP source address, a TCP client,
/// the serial port).
pub type PeerId = u64;

/// Bytes from a peer. Datagrams hold whole frames; stream chunks may split
/// frames anywhere.
#[derive(Debug, Clone)]
pub enum Packet {
    Datagram(Vec<u8>),
    Stream(Vec<u8>),
}

/// Whether a connection-oriented transport is currently connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportStatus {
    Connecting,
    Up,
    Down,
}

/// An open transport: a background task, a channel of incoming packets and
/// a channel for outgoing bytes (sent to every current peer).
pub struct Transport {
    pub incoming: mpsc::Receiver<(PeerId, Packet)>,
    outgoing: mpsc::Sender<Vec<u8>>,
    pub status: watch::Receiver<TransportStatus>,
    /// The local address of a socket transport (useful with port 0).
    pub local_addr: Option<SocketAddr>,
    task: JoinHandle<()>,
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A handle to send through a transport from anywhere.
#[derive(Clone)]
pub struct TransportSender(mpsc::Sender<Vec<u8>>);

impl TransportSender {
    /// Queue bytes; drops them (returns false) if the queue is full, as a
    /// radio would.
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        self.0.try_send(bytes).is_ok()
    }
}

const QUEUE: usize = 4096;
const PEER_EXPIRY: Duration = Duration::from_secs(30);

impl Transport {
    /// Open (bind/connect) the transport. Binding errors are returned;
    /// connection failures of `tcp:` and `serial:` are retried in the
    /// background with back-off.
    pub async fn open(addr: &Address) -> std::io::Result<Transport> {
        let (in_tx, incoming) = mpsc::channel(QUEUE);
        let (outgoing, out_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let (st_tx, status) = watch::channel(TransportStatus::Connecting);
        let (task, local_addr) = match addr.clone() {
            Address::UdpIn(a) => {
                let sock = UdpSocket::bind(a).await?;
                let local = sock.local_addr().ok();
                st_tx.send_replace(TransportStatus::Up);
                (tokio::spawn(udp_task(sock, None, in_tx, out_rx)), local)
            }
            Address::UdpOut(target) => {
                let bind: SocketAddr = if target.is_ipv4() {
                    "0.0.0.0:0".parse().expect("literal")
                } else {
                    "[::]:0".parse().expect("literal")
                };
                let sock = UdpSocket::bind(bind).await?;
                let local = sock.local_addr().ok();
                st_tx.send_replace(TransportStatus::Up);
                (
                    tokio::spawn(udp_task(sock, Some(target), in_tx, out_rx)),
                    local,
                )
            }
            Address::TcpIn(a) => {
                let l = TcpListener::bind(a).await?;
                let local = l.local_addr().ok();
                st_tx.send_replace(TransportStatus::Up);
                (tokio::spawn(tcp_server_task(l, in_tx, out_rx)), local)
            }
            Address::TcpOut(target) => (
                tokio::spawn(tcp_client_task(target, in_tx, out_rx, st_tx)),
                None,
            ),
            Address::Serial { path, baud } => (
                tokio::spawn(serial_task(path, baud, in_tx, out_rx, st_tx)),
                None,
            ),
        };
        Ok(Transport {
            incoming,
            outgoing,
            status,
            local_addr,
            task,
        })
    }

    pub fn sender(&self) -> TransportSender {
        TransportSender(self.outgoing.clone())
    }

    /// Queue bytes for every peer; waits if the queue is full.
    pub async fn send(&self, bytes: Vec<u8>) {
        let _ = self.outgoing.send(bytes).await;
    }
}

fn peer_id_of(a: &SocketAddr) -> PeerId {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    a.hash(&mut h);
    h.finish()
}

async fn udp_task(
    sock: UdpSocket,
    fixed: Option<SocketAddr>,
    in_tx: mpsc::Sender<(PeerId, Packet)>,
    mut out_rx: mpsc::Receiver<Vec<u8>>,
) {
    let mut peers: HashMap<SocketAddr, Instant> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    if fixed.is_none() {
                        peers.insert(from, Instant::now());
                    }
                    if in_tx.send((peer_id_of(&from), Packet::Datagram(buf[..n].to_vec()))).await.is_err() {
                        return;
                    }
                }
                // ICMP port unreachable and friends: the peer is not up yet.
                Err(e) => tracing::trace!(error = %e, "udp recv"),
            },
            m = out_rx.recv() => {
                let Some(bytes) = m else { return };
                match fixed {
                    Some(t) => { let _ = sock.send_to(&bytes, t).await; }
                    None => {
                        let now = Instant::now();
                        peers.retain(|_, seen| now.duration_since(*seen) < PEER_EXPIRY);
                        for p in peers.keys() {
                            let _ = sock.send_to(&bytes, p).await;
                        }
                    }
                }
            }
        }
    }
}

async fn tcp_server_task(
    listener: TcpListener,
    in_tx: mpsc::Sender<(PeerId, Packet)>,
    mut out_rx: mpsc::Receiver<Vec<u8>>,
) {
    let mut clients: HashMap<PeerId, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut next_id: PeerId = 1;
    let (gone_tx, mut gone_rx) = mpsc::channel::<PeerId>(16);
    loop {
        tokio::select! {
            a = listener.accept() => {
                let Ok((stream, from)) = a else { continue };
                let _ = stream.set_nodelay(true);
                let id = next_id;
                next_id += 1;
                tracing::info!(%from, "MAVLink TCP client connected");
                let (ctx, crx) = mpsc::channel(QUEUE);
                clients.insert(id, ctx);
                let in_tx = in_tx.clone();
                let gone = gone_tx.clone();
                tokio::spawn(async move {
                    let mut crx = crx;
                    let _ = pump_stream(stream, id, in_tx, &mut crx).await;
                    let _ = gone.send(id).await;
                });
            }
            g = gone_rx.recv() => { if let Some(id) = g { clients.remove(&id); } }
            m = out_rx.recv() => {
                let Some(bytes) = m else { return };
                for c in clients.values() {
                    let _ = c.try_send(bytes.clone());
                }
            }
        }
    }
}

/// Shuttle bytes between a stream and the channels until either side ends.
async fn pump_stream<S>(
    stream: S,
    id: PeerId,
    in_tx: mpsc::Sender<(PeerId, Packet)>,
    out_rx: &mut mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut r, mut w) = tokio::io::split(stream);
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            n = r.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                if in_tx.send((id, Packet::Stream(buf[..n].to_vec()))).await.is_err() {
                    return Ok(());
                }
            }
            m = out_rx.recv() => {
                let Some(bytes) = m else { return Ok(()) };
                w.write_all(&bytes).await?;
            }
        }
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

async fn tcp_client_task(
    target: String,
    in_tx: mpsc::Sender<(PeerId, Packet)>,
    mut out_rx: mpsc::Receiver<Vec<u8>>,
    st: watch::Sender<TransportStatus>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut generation: PeerId = 0;
    loop {
        match TcpStream::connect(&target).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                tracing::info!(%target, "MAVLink TCP connected");
                st.send_replace(TransportStatus::Up);
                backoff = BACKOFF_MIN;
                generation += 1;
                let r = pump_stream(s, generation, in_tx.clone(), &mut out_rx).await;
                if in_tx.is_closed() {
                    return;
                }
                tracing::warn!(%target, result = ?r, "MAVLink TCP connection lost; reconnecting");
                st.send_replace(TransportStatus::Down);
            }
            Err(e) => {
                tracing::debug!(%target, error = %e, "MAVLink TCP connect failed");
                st.send_replace(TransportStatus::Down);
            }
        }
        // Drop what was queued while down: stale commands must not fire
        // seconds later (the services retry what still matters).
        while out_rx.try_recv().is_ok() {}
        if in_tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn serial_task(
    path: String,
    baud: u32,
    in_tx: mpsc::Sender<(PeerId, Packet)>,
    out_rx: mpsc::Receiver<Vec<u8>>,
    st: watch::Sender<TransportStatus>,
) {
    use tokio_serial::SerialPortBuilderExt;
    let mut backoff = BACKOFF_MIN;
    let mut out_rx = Some(out_rx);
    loop {
        match tokio_serial::new(&path, baud).open_native_async() {
            Ok(port) => {
                tracing::info!(%path, baud, "serial port open");
                st.send_replace(TransportStatus::Up);
                backoff = BACKOFF_MIN;
                let rx = out_rx.take().expect("receiver kept between attempts");
                let (ret_tx, mut ret_rx) = mpsc::channel(1);
                // Run the pump and get the receiver back afterwards.
                let in_tx2 = in_tx.clone();
                let h = tokio::spawn(async move {
                    let mut rx = rx;
                    let r = pump_stream(port, 0, in_tx2, &mut rx).await;
                    let _ = ret_tx.send(rx).await;
                    r
                });
                let r = h.await;
                out_rx = ret_rx.recv().await;
                if out_rx.is_none() || in_tx.is_closed() {
                    return;
                }
                tracing::warn!(%path, result = ?r, "serial port lost; reopening");
                st.send_replace(TransportStatus::Down);
            }
            Err(e) => {
                tracing::debug!(%path, error = %e, "cannot open serial port");
                st.send_replace(TransportStatus::Down);
            }
        }
        if let Some(rx) = out_rx.as_mut() {
            while rx.try_recv().is_ok() {}
        }
        if in_tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            "serial:/dev/ttyUSB0:921600".parse::<Address>().unwrap(),
            Address::Serial {
                path: "/dev/ttyUSB0".into(),
                baud: 921600
            }
        );
        assert_eq!(
            "udpin:127.0.0.1:14550".parse::<Address>().unwrap(),
            Address::UdpIn("127.0.0.1:14550".parse().unwrap())
        );
        assert_eq!(
            "tcp:localhost:5760".parse::<Address>().unwrap(),
            Address::TcpOut("localhost:5760".into())
        );
        for bad in [
            "serial:/dev/ttyUSB0",
            "serial:/dev/x:fast",
            "udpin:nohost",
            "carrier-pigeon:x",
            "tcp:host",
            "",
        ] {
            let e = bad.parse::<Address>().unwrap_err();
            assert!(e.to_string().contains("bad MAVLink address"), "{bad}: {e}");
        }
    }
}
