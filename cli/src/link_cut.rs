//! A TCP relay that can cut a link on command: the demo (and its test)
//! puts one between the companion and the broker to cut the drone↔ground
//! link mid-patrol, as a radio going out of range would.
//!
//! While cut, every relayed connection is shut down at once and new ones
//! are accepted and closed straight away (the client sees its broker
//! vanish and reconnects with back-off, as over a dead radio link); when
//! restored, connections are relayed again.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The relay's handle. Dropping it does not stop the relay threads (they
/// end with the process).
#[derive(Clone)]
pub struct LinkCut {
    port: u16,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    refused: Arc<AtomicU64>,
}

impl LinkCut {
    /// Listen on a free loopback port and relay to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let me = Self {
            port: listener.local_addr()?.port(),
            cut: Arc::new(AtomicBool::new(false)),
            live: Arc::new(Mutex::new(Vec::new())),
            refused: Arc::new(AtomicU64::new(0)),
        };
        let m = me.clone();
        std::thread::Builder::new()
            .name("link-cut".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(down) = conn else { continue };
                    if m.cut.load(Ordering::SeqCst) {
                        m.refused.fetch_add(1, Ordering::Relaxed);
                        let _ = down.shutdown(Shutdown::Both);
                        continue;
                    }
                    let Ok(up) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))
                    else {
                        let _ = down.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = down.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    if let Ok(mut live) = m.live.lock() {
                        for s in [&down, &up] {
                            if let Ok(c) = s.try_clone() {
                                live.push(c);
                            }
                        }
                    }
                    for (from, to) in [(&down, &up), (&up, &down)] {
                        if let (Ok(mut r), Ok(mut w)) = (from.try_clone(), to.try_clone()) {
                            std::thread::spawn(move || {
                                let mut buf = [0u8; 16 * 1024];
                                while let Ok(n) = r.read(&mut buf) {
                                    if n == 0 || w.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                let _ = r.shutdown(Shutdown::Both);
                                let _ = w.shutdown(Shutdown::Both);
                            });
                        }
                    }
                }
            })?;
        Ok(me)
    }

    /// The port clients connect to instead of the upstream's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cut (`true`) or restore (`false`) the link.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            if let Ok(mut live) = self.live.lock() {
                for s in live.drain(..) {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        }
    }

    /// Connection attempts turned away while cut.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_then_cuts_then_relays_again() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in echo.incoming() {
                let Ok(mut c) = c else { continue };
                std::thread::spawn(move || {
                    let mut b = [0u8; 64];
                    while let Ok(n) = c.read(&mut b) {
                        if n == 0 || c.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let relay = LinkCut::start(addr).unwrap();
        let to = ("127.0.0.1", relay.port());
        let mut c = TcpStream::connect(to).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 5];
        c.write_all(b"hello").unwrap();
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hello");

        relay.set_cut(true);
        // The live connection is gone…
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
        // …and a new one is closed at once.
        let mut c2 = TcpStream::connect(to).unwrap();
        c2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c2.write_all(b"x");
        assert!(matches!(c2.read(&mut b), Ok(0) | Err(_)));
        assert!(relay.refused() >= 1);

        relay.set_cut(false);
        let mut c3 = TcpStream::connect(to).unwrap();
        c3.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c3.write_all(b"again").unwrap();
        c3.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"again");
    }
}
