//! MQTT security with real parts (issue 8): TLS, per-drone identities and
//! the topic ACL, on the embedded broker (rumqttd behind the tiancha ACL
//! front) and on a real mosquitto started with the shipped
//! `deploy/mosquitto/` configuration. The ground station's ingest (real,
//! on a SQLite store on disk) is the judge of what got through.
//!
//! One CA, server certificate, client certificates (CN = identity) and one
//! password file (mosquitto_passwd format, read by both brokers) are made
//! per test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, QoS};
use tiancha_ground_station::broker::passwd::PasswordFile;
use tiancha_ground_station::broker::{pki, BrokerAuth, BrokerConfig, BrokerTls};
use tiancha_ground_station::ingest::{self, IngestConfig, IngestStats};
use tiancha_ground_station::store::Store;
use tiancha_protocol::mqtt::{ClientTls, Endpoint};
use tiancha_protocol::{self as proto, Channel, DroneId, Topic};
use uuid::Uuid;

// ---------------------------------------------------------------- logs

#[derive(Clone)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything this process logged (tracing), as text.
fn logs() -> String {
    static LOG: OnceLock<LogBuf> = OnceLock::new();
    let buf = LOG.get_or_init(|| {
        let b = LogBuf(Arc::new(Mutex::new(Vec::new())));
        let w = b.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter("info")
            .with_writer(move || w.clone())
            .try_init();
        b
    });
    String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned()
}

// ---------------------------------------------------------------- set-up

const GS_PASSWORD: &str = "gs-secret-pw";

fn password(who: &str) -> String {
    format!("{who}-pw")
}

/// CA, server and client certificates and the password file in `dir`.
fn make_pki(dir: &Path) {
    let ca = pki::Ca::generate(2).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    let s = ca
        .issue_server(&["localhost".into(), "127.0.0.1".into()], 2)
        .unwrap();
    std::fs::write(dir.join("server.pem"), s.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), s.key_pem).unwrap();
    for who in ["drone-1", "drone-2", "ground-station"] {
        let c = ca.issue_client(who, 2).unwrap();
        std::fs::write(dir.join(format!("{who}.pem")), c.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{who}.key")), c.key_pem).unwrap();
    }
    // A certificate from another CA, for the same drone name.
    let rogue = pki::Ca::generate(2).unwrap();
    let c = rogue.issue_client("drone-1", 2).unwrap();
    std::fs::write(dir.join("rogue-drone-1.pem"), c.cert_pem).unwrap();
    std::fs::write(dir.join("rogue-drone-1.key"), c.key_pem).unwrap();
    let mut pw = String::new();
    for (i, who) in ["drone-1", "drone-2"].iter().enumerate() {
        let salt = format!("salt-{i:07}");
        pw += &format!(
            "{who}:{}\n",
            PasswordFile::hash(&password(who), salt.as_bytes())
        );
    }
    pw += &format!(
        "ground-station:{}\n",
        PasswordFile::hash(GS_PASSWORD, b"salt-gs-0000")
    );
    std::fs::write(dir.join("passwd"), pw).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Ports of a broker under test: plain (loopback, passwords) and TLS
/// (client certificates).
#[derive(Clone, Copy)]
struct Ports {
    plain: u16,
    tls: u16,
}

fn plain(ports: Ports, login: Option<(&str, &str)>) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port: ports.plain,
        username: login.map(|l| l.0.to_string()),
        password: login.map(|l| l.1.to_string()),
        keep_alive_s: 5,
        tls: None,
    }
}

/// TLS endpoint presenting `cert` (`dir/{cert}.pem` and `.key`), or none.
fn tls(ports: Ports, dir: &Path, cert: Option<&str>) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port: ports.tls,
        username: None,
        password: None,
        keep_alive_s: 5,
        tls: Some(ClientTls {
            ca_file: dir.join("ca.pem"),
            client_cert_file: cert.map(|c| dir.join(format!("{c}.pem"))),
            client_key_file: cert.map(|c| dir.join(format!("{c}.key"))),
        }),
    }
}

fn embedded_broker(dir: &Path) -> Ports {
    let ports = Ports {
        plain: free_port(),
        tls: free_port(),
    };
    let cfg = BrokerConfig {
        embedded: true,
        listen: SocketAddr::from(([127, 0, 0, 1], ports.plain)),
        tls: Some(BrokerTls {
            listen: SocketAddr::from(([127, 0, 0, 1], ports.tls)),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            client_ca_file: Some(dir.join("ca.pem")),
        }),
        auth: Some(BrokerAuth {
            password_file: Some(dir.join("passwd")),
            ground_station_users: vec!["ground-station".into()],
        }),
    };
    cfg.check_files().expect("broker files");
    tiancha_ground_station::broker::start(&cfg).expect("embedded broker starts");
    ports
}

/// mosquitto with `deploy/mosquitto/mosquitto.conf`, only paths, ports and
/// the run-as user substituted. Killed on drop.
struct Mosquitto {
    child: Child,
    log: PathBuf,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mosquitto {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn mosquitto(dir: &Path) -> (Mosquitto, Ports) {
    let which = Command::new("mosquitto").arg("-h").output();
    assert!(
        which.is_ok(),
        "mosquitto is not installed (apt-get install mosquitto; scripts/dev setup does it): {:?}",
        which.err()
    );
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mosquitto");
    let conf = std::fs::read_to_string(deploy.join("mosquitto.conf")).unwrap();
    std::fs::copy(deploy.join("acl"), dir.join("acl")).unwrap();
    let ports = Ports {
        plain: free_port(),
        tls: free_port(),
    };
    let d = dir.display().to_string();
    let mut substituted = conf
        .replace("/etc/mosquitto/tiancha", &d)
        .replace("/var/lib/mosquitto/", &format!("{d}/"))
        .replace(
            "listener 1883 127.0.0.1",
            &format!("listener {} 127.0.0.1", ports.plain),
        )
        .replace("\nlistener 8883\n", &format!("\nlistener {}\n", ports.tls));
    assert!(
        substituted.contains(&format!("listener {}\n", ports.tls))
            && substituted.contains(&format!("listener {} 127.0.0.1", ports.plain))
            && !substituted.contains("/etc/mosquitto"),
        "the shipped mosquitto.conf changed shape; update this test's substitutions"
    );
    // mosquitto started as root drops to user `mosquitto`, who cannot read
    // the test's files; as anyone else `user` is ignored.
    let me = Command::new("id").arg("-un").output().unwrap();
    substituted += &format!("\nuser {}\n", String::from_utf8_lossy(&me.stdout).trim());
    std::fs::write(dir.join("mosquitto.conf"), substituted).unwrap();
    let log = dir.join("mosquitto.log");
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(&log).unwrap(),
        ))
        .spawn()
        .expect("start mosquitto");
    let m = Mosquitto { child, log };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.log().contains("running") {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not start:\n{}",
            m.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (m, ports)
}

// ---------------------------------------------------------------- clients

/// Connect and wait for CONNACK; `Err` with the reason if refused.
async fn connect(ep: &Endpoint, client_id: &str) -> Result<(AsyncClient, EventLoop), String> {
    let opts = ep.try_options(client_id)?;
    let (c, mut ev) = AsyncClient::new(opts, 64);
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(describe(&e)),
            }
        }
    })
    .await
    .map_err(|_| "no CONNACK within 10 s".to_string())?;
    r.map(|()| (c, ev))
}

fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => format!("refused: {code:?}"),
        other => format!("{other}"),
    }
}

/// Publish QoS 1 and wait for the PUBACK; `Err` if the connection ends.
async fn publish(
    c: &AsyncClient,
    ev: &mut EventLoop,
    topic: &str,
    payload: Vec<u8>,
) -> Result<(), String> {
    c.publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Incoming::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(describe(&e)),
            }
        }
    })
    .await
    .map_err(|_| "no PUBACK within 10 s".to_string())?
}

/// Subscribe and collect what arrives for `listen_for`; `Err` if the
/// connection ends (the embedded front closes it on a refused SUBSCRIBE).
async fn subscribe_and_listen(
    c: &AsyncClient,
    ev: &mut EventLoop,
    filter: &str,
    listen_for: Duration,
    mut during: impl FnMut(),
) -> Result<Vec<String>, String> {
    c.subscribe(filter, QoS::AtLeastOnce)
        .await
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut suback = false;
    let deadline = tokio::time::Instant::now() + listen_for;
    loop {
        match tokio::time::timeout_at(deadline, ev.poll()).await {
            Err(_) => return Ok(got),
            Ok(Ok(Event::Incoming(Incoming::SubAck(a)))) => {
                if a.return_codes
                    .iter()
                    .any(|r| matches!(r, rumqttc::SubscribeReasonCode::Failure))
                {
                    return Err("SUBACK failure".into());
                }
                suback = true;
                during();
            }
            Ok(Ok(Event::Incoming(Incoming::Publish(p)))) if suback => {
                got.push(String::from_utf8_lossy(&p.payload).into_owned())
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(describe(&e)),
        }
    }
}

fn alert(drone: &str) -> (Uuid, Vec<u8>) {
    let now = proto::unix_ms(std::time::SystemTime::now());
    let a = proto::Alert {
        schema: proto::SCHEMA_VERSION,
        alert_id: Uuid::now_v7(),
        drone_id: DroneId::new(drone).unwrap(),
        category: proto::Category::Fire,
        confidence: 0.9,
        t_first_unix_ms: now - 1000,
        t_unix_ms: now,
        location_status: proto::LocationStatus::Geotagged,
        location: Some(proto::Geotag {
            lat_deg: 28.45,
            lon_deg: 117.94,
            alt_m: None,
            sigma: proto::Ellipse {
                semi_major_m: 3.0,
                semi_minor_m: 2.0,
                orientation_deg: 0.0,
            },
        }),
        observer: None,
        person_count: None,
        extent_m: Some(4.0),
        tracks: vec![],
        rule: proto::RuleInfo {
            name: "fire".into(),
            detail: "flame seen".into(),
        },
        zone: None,
        mission_id: None,
        snapshot: None,
    };
    (a.alert_id, proto::encode(&a).unwrap())
}

fn topic(drone: &str, c: Channel) -> String {
    Topic::new(DroneId::new(drone).unwrap(), c).to_string()
}

/// The ground station's ingest on a store on disk, logged in as `gs`.
struct Ground {
    store: Arc<Mutex<Store>>,
    stats: Arc<IngestStats>,
    _dir: tempfile::TempDir,
}

impl Ground {
    fn start(ep: Endpoint) -> Ground {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Mutex::new(
            Store::open(&dir.path().join("gs.db"), 1000).unwrap(),
        ));
        let stats = Arc::new(IngestStats::default());
        let (notices, _) = tokio::sync::broadcast::channel(1024);
        tokio::spawn(ingest::run(
            ep,
            "tiancha-gs-test".into(),
            IngestConfig::default(),
            store.clone(),
            stats.clone(),
            notices,
        ));
        Ground {
            store,
            stats,
            _dir: dir,
        }
    }

    fn stored(&self, id: Uuid) -> bool {
        self.store.lock().unwrap().alert(id).unwrap().is_some()
    }

    fn quarantined(&self) -> Vec<(String, String, String)> {
        self.store
            .lock()
            .unwrap()
            .quarantine(100)
            .unwrap()
            .into_iter()
            .map(|q| (q.topic, q.class, q.reason))
            .collect()
    }

    /// Publish `payload` as `who` on `topic` until the ground has stored
    /// `id` (the ground may not have subscribed yet; ids de-duplicate).
    async fn deliver(
        &self,
        ep: &Endpoint,
        client_id: &str,
        topic: &str,
        id: Uuid,
        payload: Vec<u8>,
    ) {
        let (c, mut ev) = connect(ep, client_id)
            .await
            .expect("legitimate client connects");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            publish(&c, &mut ev, topic, payload.clone())
                .await
                .expect("legitimate publish acknowledged");
            let until = Instant::now() + Duration::from_millis(500);
            while Instant::now() < until {
                if self.stored(id) {
                    let _ = c.disconnect().await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                Instant::now() < deadline,
                "alert {id} on {topic} never stored (ground connects: {})",
                self.stats.connects.load(Ordering::Relaxed)
            );
        }
    }
}

/// The matrix both brokers must pass. `refusal_logged` checks the broker
/// logged why it refused `what`.
async fn security_matrix(
    ports: Ports,
    dir: &Path,
    embedded: bool,
    broker_log: &dyn Fn() -> String,
) {
    let gs = Ground::start(plain(ports, Some(("ground-station", GS_PASSWORD))));

    // 1. drone-1 with its certificate over TLS: its alert is stored.
    let d1 = tls(ports, dir, Some("drone-1"));
    let (id1, p1) = alert("drone-1");
    gs.deliver(
        &d1,
        "tiancha-drone-drone-1",
        &topic("drone-1", Channel::Alerts),
        id1,
        p1,
    )
    .await;

    // drone-1 with its password over the loopback listener: stored too.
    let d1pw = plain(ports, Some(("drone-1", &password("drone-1"))));
    let (id1b, p1b) = alert("drone-1");
    gs.deliver(
        &d1pw,
        "d1-pw",
        &topic("drone-1", Channel::Alerts),
        id1b,
        p1b,
    )
    .await;

    // 2. drone-2's certificate publishing on drone-1's alert topic (a
    //    forged drone-1 alert): refused, never stored.
    let d2 = tls(ports, dir, Some("drone-2"));
    let (forged, pf) = alert("drone-1");
    {
        let (c, mut ev) = connect(&d2, "tiancha-drone-drone-2")
            .await
            .expect("drone-2 connects");
        let r = publish(&c, &mut ev, &topic("drone-1", Channel::Alerts), pf.clone()).await;
        if embedded {
            let e = r.expect_err("the embedded front disconnects drone-2");
            assert!(!e.is_empty());
        }
        // mosquitto (MQTT 3.1.1) acknowledges and drops it.
    }
    // drone-2's password on drone-1's topic: the same.
    let d2pw = plain(ports, Some(("drone-2", &password("drone-2"))));
    {
        let (c, mut ev) = connect(&d2pw, "d2-pw").await.expect("drone-2 connects");
        let r = publish(&c, &mut ev, &topic("drone-1", Channel::Alerts), pf.clone()).await;
        assert_eq!(r.is_err(), embedded, "{r:?}");
    }
    // Control: drone-2's own alert, published after, is stored, so the
    // forged one had every chance to arrive first.
    let (id2, p2) = alert("drone-2");
    gs.deliver(
        &d2,
        "tiancha-drone-drone-2",
        &topic("drone-2", Channel::Alerts),
        id2,
        p2,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !gs.stored(forged),
        "a drone-1 alert forged by drone-2 was stored"
    );

    // 3. The chain's last link: drone-2 on its own topic with a payload
    //    claiming drone-1 is quarantined by the ground station.
    let (claimed, pc) = alert("drone-1");
    {
        let (c, mut ev) = connect(&d2, "tiancha-drone-drone-2").await.unwrap();
        publish(&c, &mut ev, &topic("drone-2", Channel::Alerts), pc)
            .await
            .expect("drone-2 may publish on its own topic");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let q = gs.quarantined();
        if let Some((t, class, reason)) = q.iter().find(|(t, _, _)| t.ends_with("drone-2/alerts")) {
            assert_eq!(class, "drone_id_mismatch", "{t}: {reason}");
            assert!(
                reason.contains("drone-1") && reason.contains("drone-2"),
                "{reason}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "payload/topic mismatch not quarantined: {q:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!gs.stored(claimed));

    // 4. Who may not connect at all.
    let refused = |r: Result<(AsyncClient, EventLoop), String>| r.err().expect("refused");
    let e = refused(connect(&plain(ports, None), "anon").await);
    assert!(e.contains("refused: NotAuthorized"), "no credentials: {e}");
    let e = refused(connect(&plain(ports, Some(("drone-1", "wrong"))), "bad-pw").await);
    assert!(
        e.contains("refused: BadUserNamePassword") || e.contains("refused: NotAuthorized"),
        "wrong password: {e}"
    );
    let e = refused(connect(&plain(ports, Some(("drone-9", "drone-9-pw"))), "nobody").await);
    assert!(e.contains("refused"), "unknown user: {e}");
    let e = refused(connect(&tls(ports, dir, None), "no-cert").await);
    assert!(!e.is_empty(), "TLS without a client certificate: {e}");
    let e = refused(connect(&tls(ports, dir, Some("rogue-drone-1")), "rogue").await);
    assert!(!e.is_empty(), "certificate from another CA: {e}");
    // A client that does not trust the broker's CA refuses the broker.
    std::fs::write(
        dir.join("other-ca.pem"),
        pki::Ca::generate(1).unwrap().cert_pem(),
    )
    .unwrap();
    let mut wrong_ca = tls(ports, dir, Some("drone-1"));
    wrong_ca.tls.as_mut().unwrap().ca_file = dir.join("other-ca.pem");
    let e = refused(connect(&wrong_ca, "wrong-ca").await);
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("Tls"),
        "{e}"
    );

    // 5. drone-2 cannot read drone-1's commands; drone-1 can.
    let gs_pub = plain(ports, Some(("ground-station", GS_PASSWORD)));
    let (gsc, mut gsev) = connect(&gs_pub, "gs-commander")
        .await
        .expect("ground station connects");
    let gs_driver = tokio::spawn(async move { while gsev.poll().await.is_ok() {} });
    let (c1, mut e1) = connect(&d1, "tiancha-drone-drone-1").await.unwrap();
    let (c2, mut e2) = connect(&d2, "tiancha-drone-drone-2").await.unwrap();
    let send = {
        let gsc = gsc.clone();
        move |tag: &'static str| {
            let gsc = gsc.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    let _ = gsc
                        .publish(
                            topic("drone-1", Channel::Commands),
                            QoS::AtLeastOnce,
                            false,
                            tag,
                        )
                        .await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    };
    let send2 = send.clone();
    let d1_commands = topic("drone-1", Channel::Commands);
    let (r1, r2) = tokio::join!(
        subscribe_and_listen(
            &c1,
            &mut e1,
            &d1_commands,
            Duration::from_secs(3),
            move || send("for-drone-1")
        ),
        subscribe_and_listen(
            &c2,
            &mut e2,
            &d1_commands,
            Duration::from_secs(3),
            move || send2("for-drone-1-seen-by-2")
        ),
    );
    let got1 = r1.expect("drone-1 reads its own commands");
    assert!(
        got1.iter().any(|p| p.starts_with("for-drone-1")),
        "control: drone-1 received its commands: {got1:?}"
    );
    match r2 {
        Ok(got) => assert!(
            got.is_empty() && !embedded,
            "drone-2 read drone-1's commands: {got:?}"
        ),
        Err(e) => assert!(embedded, "mosquitto keeps the connection: {e}"),
    }
    gs_driver.abort();

    // The reasons are in the broker's log.
    let log = broker_log();
    if embedded {
        for want in [
            "drone `drone-2` may publish only under tiancha/v1/drones/drone-2/",
            "drone `drone-2` may subscribe only to",
            "no username/password and no client certificate",
            "user `drone-1` unknown or wrong password",
            "TLS handshake failed",
        ] {
            assert!(
                log.contains(want),
                "embedded broker log lacks `{want}`:\n{log}"
            );
        }
        assert!(log.contains("ACL violation"), "{log}");
    } else {
        assert!(log.contains("not authorised"), "mosquitto log:\n{log}");
        assert!(
            log.contains("peer did not return a certificate"),
            "mosquitto log:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_tls_identities_and_acl() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let ports = embedded_broker(dir.path());
    security_matrix(ports, dir.path(), true, &logs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_with_the_shipped_config_tls_identities_and_acl() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let (m, ports) = mosquitto(dir.path());
    let log = || m.log();
    security_matrix(ports, dir.path(), false, &log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_refuses_a_will_on_another_drones_topic_and_session_takeover() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let ports = embedded_broker(dir.path());
    // A will on drone-1's status, set by drone-2: refused at CONNECT.
    let mut opts = tls(ports, dir.path(), Some("drone-2"))
        .try_options("tiancha-drone-drone-2")
        .unwrap();
    opts.set_last_will(rumqttc::LastWill::new(
        topic("drone-1", Channel::Status),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (_c, mut ev) = AsyncClient::new(opts, 8);
    let e = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => return None,
                Ok(_) => {}
                Err(e) => return Some(e),
            }
        }
    })
    .await
    .expect("an answer to CONNECT within 10 s")
    .expect("drone-2 with a will on drone-1's status must be refused");
    assert!(
        matches!(
            e,
            ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)
        ),
        "{e:?}"
    );
    assert!(logs().contains("last will"), "{}", logs());

    // drone-2 using the ground station's client id does not take over the
    // ground station's session: the ground station keeps receiving.
    let gs = Ground::start(plain(ports, Some(("ground-station", GS_PASSWORD))));
    let (id, p) = alert("drone-1");
    gs.deliver(
        &tls(ports, dir.path(), Some("drone-1")),
        "d1",
        &topic("drone-1", Channel::Alerts),
        id,
        p,
    )
    .await;
    let (thief, mut thief_ev) =
        connect(&tls(ports, dir.path(), Some("drone-2")), "tiancha-gs-test")
            .await
            .expect("drone-2 connects (under its own namespace)");
    let (id2, p2) = alert("drone-1");
    gs.deliver(
        &tls(ports, dir.path(), Some("drone-1")),
        "d1",
        &topic("drone-1", Channel::Alerts),
        id2,
        p2,
    )
    .await;
    // The thief got nothing of drone-1's.
    let got = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            if let Ok(Event::Incoming(Incoming::Publish(p))) = thief_ev.poll().await {
                return p.topic;
            }
        }
    })
    .await;
    assert!(
        got.is_err(),
        "drone-2 received {got:?} through the ground station's client id"
    );
    drop(thief);
}

#[test]
fn broker_start_up_errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let base = |d: &Path| BrokerConfig {
        embedded: true,
        listen: "127.0.0.1:1".parse().unwrap(),
        tls: Some(BrokerTls {
            listen: "127.0.0.1:2".parse().unwrap(),
            cert_file: d.join("server.pem"),
            key_file: d.join("server.key"),
            client_ca_file: Some(d.join("ca.pem")),
        }),
        auth: Some(BrokerAuth {
            password_file: Some(d.join("passwd")),
            ground_station_users: vec!["ground-station".into()],
        }),
    };
    base(dir.path()).check_files().expect("the good set passes");
    let mut c = base(dir.path());
    c.tls.as_mut().unwrap().cert_file = dir.path().join("missing.pem");
    let e = c.check_files().unwrap_err();
    assert!(
        e.contains("broker.tls.cert_file") && e.contains("missing.pem"),
        "{e}"
    );
    let mut c = base(dir.path());
    c.tls.as_mut().unwrap().key_file = dir.path().join("drone-1.key");
    let e = c.check_files().unwrap_err();
    assert!(e.contains("do not go together"), "{e}");
    std::fs::write(dir.path().join("plain-passwd"), "drone-1:secret\n").unwrap();
    let mut c = base(dir.path());
    c.auth.as_mut().unwrap().password_file = Some(dir.path().join("plain-passwd"));
    let e = c.check_files().unwrap_err();
    assert!(
        e.contains("plain-passwd line 1") && e.contains("plain-text"),
        "{e}"
    );
    // No authentication off loopback, TLS without auth: refused.
    let mut c = base(dir.path());
    c.auth = None;
    assert!(c.check().unwrap_err().contains("needs [broker.auth]"));
    let c = BrokerConfig {
        listen: "0.0.0.0:1883".parse().unwrap(),
        ..BrokerConfig::default()
    };
    assert!(c.check().unwrap_err().contains("not a loopback address"));
    // Client side: a client key that does not match its certificate.
    let mut ep = tls(Ports { plain: 1, tls: 2 }, dir.path(), Some("drone-1"));
    ep.tls.as_mut().unwrap().client_key_file = Some(dir.path().join("drone-2.key"));
    let e = ep.check_files().unwrap_err();
    assert!(e.contains("do not go together"), "{e}");
}
