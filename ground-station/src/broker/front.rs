//! The ACL front of the embedded broker: rumqttd authenticates but has no
//! per-topic ACL hook, so every client connection ends here first.
//!
//! For each connection the front (1) terminates TLS (rustls; the client
//! certificate's CN is the identity when the listener asks for one),
//! (2) reads the CONNECT and authenticates it ([`AuthPolicy`]), checking
//! its will topic, (3) connects to rumqttd on an internal loopback port,
//! rewriting the CONNECT: the client id becomes `{identity}:{client id}`
//! (no client can take over another identity's session) and the login
//! becomes the identity with a per-process secret (rumqttd refuses
//! anyone who reaches the internal port without going through the front),
//! then (4) forwards bytes both ways, parsing every client → broker
//! packet with rumqttc's MQTT 3.1.1 parser and checking each PUBLISH and
//! SUBSCRIBE ([`acl::check_publish`], [`acl::check_subscribe`]). A
//! violation closes the connection and is logged with its reason. Broker
//! → client bytes pass unchanged (the broker sends only what the checked
//! subscriptions match).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Login, Publish, Subscribe};
use rumqttc::mqttbytes::{check, Error as MqttError, FixedHeader, PacketType};
use rumqttc::tokio_rustls::TlsAcceptor;
use tiancha_protocol::mqtt::MAX_PACKET_BYTES;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use super::acl::{self, AuthError, AuthPolicy, Identity};

/// How long a new connection may take to finish TLS and send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Front {
    pub policy: AuthPolicy,
    /// rumqttd's internal listener.
    pub upstream: SocketAddr,
    /// The password the front presents to rumqttd.
    pub secret: String,
}

/// Accept on `listener` forever; `tls` terminates TLS first.
pub(crate) async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, f: Arc<Front>) {
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "MQTT front: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let f = f.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(sock, peer, None, f).await,
                Some(acceptor) => {
                    let hs = tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(sock)).await;
                    match hs {
                        Ok(Ok(stream)) => {
                            let cn = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|c| common_name(c.as_ref()));
                            serve(stream, peer, cn, f).await
                        }
                        Ok(Err(e)) => {
                            warn!(%peer, reason = %e, "MQTT connection refused: TLS handshake failed")
                        }
                        Err(_) => {
                            warn!(%peer, "MQTT connection refused: TLS handshake timed out")
                        }
                    }
                }
            }
        });
    }
}

/// The subject CN of a DER certificate (already verified by rustls).
pub(crate) fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Read one whole MQTT frame into `buf`'s front.
async fn read_frame<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<(FixedHeader, Bytes), String> {
    loop {
        match check(buf.iter(), MAX_PACKET_BYTES) {
            Ok(fh) => return Ok((fh, buf.split_to(fh.frame_length()).freeze())),
            Err(MqttError::InsufficientBytes(_)) => {}
            Err(e) => return Err(format!("malformed packet: {e}")),
        }
        match s.read_buf(buf).await {
            Ok(0) => return Err("closed before CONNECT".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
}

async fn refuse<S: AsyncWrite + Unpin>(s: &mut S, code: ConnectReturnCode) {
    let mut out = BytesMut::new();
    if ConnAck::new(code, false).write(&mut out).is_ok() {
        let _ = s.write_all(&out).await;
        let _ = s.flush().await;
    }
    let _ = s.shutdown().await;
}

async fn serve<S>(mut client: S, peer: SocketAddr, cert_cn: Option<String>, f: Arc<Front>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut buf = BytesMut::with_capacity(4096);
    let first = tokio::time::timeout(CONNECT_TIMEOUT, read_frame(&mut client, &mut buf)).await;
    let (fh, frame) = match first {
        Ok(Ok(x)) => x,
        Ok(Err(reason)) => {
            debug!(%peer, %reason, "MQTT connection ended before CONNECT");
            return;
        }
        Err(_) => {
            warn!(%peer, "MQTT connection refused: no CONNECT within 10 s");
            return;
        }
    };
    if !matches!(fh.packet_type(), Ok(PacketType::Connect)) {
        warn!(%peer, "MQTT connection refused: first packet is not CONNECT");
        return;
    }
    let connect = match Connect::read(fh, frame) {
        Ok(c) => c,
        Err(e) => {
            warn!(%peer, reason = %e, "MQTT connection refused: unreadable CONNECT (only MQTT 3.1.1 is served)");
            refuse(&mut client, ConnectReturnCode::RefusedProtocolVersion).await;
            return;
        }
    };
    let login = connect
        .login
        .as_ref()
        .map(|l| (l.username.as_str(), l.password.as_str()));
    let identity = match f.policy.authenticate(cert_cn.as_deref(), login) {
        Ok(i) => i,
        Err(e) => {
            warn!(%peer, client_id = %connect.client_id, certificate_cn = ?cert_cn, reason = %e, "MQTT connection refused");
            let code = match e {
                AuthError::BadCredentials(_) => ConnectReturnCode::BadUserNamePassword,
                AuthError::NotAuthorized(_) => ConnectReturnCode::NotAuthorized,
            };
            refuse(&mut client, code).await;
            return;
        }
    };
    if let Some(will) = &connect.last_will {
        if let Err(reason) = acl::check_publish(&identity.role, &will.topic) {
            warn!(%peer, identity = %identity.name, reason = %format!("last will: {reason}"), "MQTT connection refused");
            refuse(&mut client, ConnectReturnCode::NotAuthorized).await;
            return;
        }
    }
    let mut up_connect = connect.clone();
    up_connect.client_id = format!("{}:{}", identity.name, connect.client_id);
    up_connect.login = Some(Login::new(identity.name.clone(), f.secret.clone()));
    let mut out = BytesMut::new();
    if up_connect.write(&mut out).is_err() {
        warn!(%peer, "MQTT connection refused: CONNECT too large to forward");
        return;
    }
    let mut upstream = match TcpStream::connect(f.upstream).await {
        Ok(u) => u,
        Err(e) => {
            warn!(%peer, error = %e, "MQTT front: embedded broker unreachable");
            refuse(&mut client, ConnectReturnCode::ServiceUnavailable).await;
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    if upstream.write_all(&out).await.is_err() {
        return;
    }
    info!(%peer, identity = %identity.name, client_id = %connect.client_id, tls = cert_cn.is_some(), "MQTT client authenticated");
    let (cr, mut cw) = tokio::io::split(client);
    let (mut ur, uw) = upstream.into_split();
    let down = async move {
        let _ = tokio::io::copy(&mut ur, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::select! {
        r = forward_checked(cr, uw, buf, &identity) => {
            if let Err(reason) = r {
                warn!(%peer, identity = %identity.name, %reason, "MQTT client DISCONNECTED: ACL violation");
            }
        }
        _ = down => {}
    }
}

/// Client → broker: forward whole frames, checking PUBLISH and SUBSCRIBE.
/// `Ok` when the client closes; `Err(reason)` on a violation.
async fn forward_checked<R, W>(
    mut cr: R,
    mut uw: W,
    mut buf: BytesMut,
    who: &Identity,
) -> Result<(), String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = BytesMut::with_capacity(8192);
    loop {
        let mut verdict = Ok(());
        loop {
            let fh = match check(buf.iter(), MAX_PACKET_BYTES) {
                Ok(fh) => fh,
                Err(MqttError::InsufficientBytes(_)) => break,
                Err(e) => {
                    verdict = Err(format!("malformed packet: {e}"));
                    break;
                }
            };
            let frame = buf.split_to(fh.frame_length()).freeze();
            let v = match fh.packet_type() {
                Ok(PacketType::Publish) => Publish::read(fh, frame.clone())
                    .map_err(|e| format!("malformed PUBLISH: {e}"))
                    .and_then(|p| acl::check_publish(&who.role, &p.topic)),
                Ok(PacketType::Subscribe) => Subscribe::read(fh, frame.clone())
                    .map_err(|e| format!("malformed SUBSCRIBE: {e}"))
                    .and_then(|s| {
                        s.filters
                            .iter()
                            .try_for_each(|f| acl::check_subscribe(&who.role, &f.path))
                    }),
                Ok(PacketType::Connect) => Err("second CONNECT".into()),
                Ok(_) => Ok(()),
                Err(e) => Err(format!("malformed packet: {e}")),
            };
            if v.is_err() {
                verdict = v;
                break;
            }
            out.extend_from_slice(&frame);
        }
        if !out.is_empty() {
            if uw.write_all(&out).await.is_err() {
                return Ok(());
            }
            out.clear();
        }
        verdict?;
        match cr.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = uw.shutdown().await;
                return Ok(());
            }
            Ok(_) => {}
        }
    }
}
