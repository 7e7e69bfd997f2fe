//! Connections and liveness: link lost / regained within 3 s over UDP and
//! TCP (reconnecting), a real serial line over a pseudo-terminal pair
//! (socat), and bad input that is counted, never fatal.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tiancha_firmware_bridge::codec::{dialect, Encoder, Msg};
use tiancha_firmware_bridge::{Bridge, BridgeConfig, Event};
use tiancha_protocol::mission::MissionType;
use tiancha_sim::{Sim, SimConfig};
use tokio::net::UdpSocket;

async fn lost_and_regained(listen: String) {
    let cfg = SimConfig {
        listen: listen.clone(),
        gps_fix_delay_s: 0.5,
        ..Default::default()
    };
    let sim = Sim::start(cfg.clone()).await.unwrap();
    let b = bridge_to(&sim, BridgeConfig::default()).await;
    let mut ev = b.events();
    let t_stop = Instant::now();
    sim.stop().await;
    let lost = wait_event(&mut ev, Duration::from_secs(5), |e| {
        matches!(e, Event::LinkLost).then(Instant::now)
    })
    .await
    .expect("link lost reported");
    let dt = lost - t_stop;
    assert!(dt <= Duration::from_secs(3), "link lost after {dt:?}");
    assert!(!b.snapshot().link_up);
    let t_start = Instant::now();
    let sim = Sim::start(cfg).await.unwrap();
    let back = wait_event(&mut ev, Duration::from_secs(5), |e| {
        matches!(e, Event::LinkRegained).then(Instant::now)
    })
    .await
    .expect("link regained reported");
    let dt = back - t_start;
    assert!(dt <= Duration::from_secs(3), "link regained after {dt:?}");
    // And it works again.
    b.wait_for("telemetry", Duration::from_secs(5), |s| {
        s.position.is_some()
    })
    .await
    .unwrap();
    drop(sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_link_lost_and_regained_within_3_s() {
    lost_and_regained(format!("udpin:127.0.0.1:{}", free_udp_port())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_reconnects_and_link_regained_within_3_s() {
    lost_and_regained(format!("tcpin:127.0.0.1:{}", free_tcp_port())).await;
}

struct Socat {
    child: Child,
}

impl Socat {
    fn start(a: &std::path::Path, b: &std::path::Path) -> Socat {
        let _ = std::fs::remove_file(a);
        let _ = std::fs::remove_file(b);
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is installed (apt-get install socat)");
        let t0 = Instant::now();
        while !(a.exists() && b.exists()) {
            assert!(t0.elapsed() < Duration::from_secs(5), "socat made no ptys");
            std::thread::sleep(Duration::from_millis(20));
        }
        Socat { child }
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_line_over_a_pty_pair_with_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b_path) = (dir.path().join("fc"), dir.path().join("companion"));
    let socat = Socat::start(&a, &b_path);
    let sim = Sim::start(SimConfig {
        listen: format!("serial:{}:115200", a.display()),
        speed: 5.0,
        gps_fix_delay_s: 0.5,
        ..Default::default()
    })
    .await
    .unwrap();
    let b = Bridge::connect(
        &format!("serial:{}:115200", b_path.display()),
        BridgeConfig::default(),
    )
    .await
    .unwrap();
    b.wait_for_autopilot(Duration::from_secs(10)).await.unwrap();
    let mission = waypoint_loop(60, 100.0);
    let rep = b.upload(MissionType::Mission, &mission).await.unwrap();
    assert_eq!(rep.items, 61);
    assert_eq!(sim.truth().borrow().mission_len, 61);
    let st = b.stats();
    assert_eq!(
        st.link.crc_errors, 0,
        "a clean line has no CRC errors: {st:?}"
    );
    // Unplug: the line goes away, then comes back under the same names.
    let mut ev = b.events();
    drop(socat);
    wait_event(&mut ev, Duration::from_secs(5), |e| {
        matches!(e, Event::LinkLost).then_some(())
    })
    .await
    .expect("link lost after unplugging");
    let _socat = Socat::start(&a, &b_path);
    wait_event(&mut ev, Duration::from_secs(10), |e| {
        matches!(e, Event::LinkRegained).then_some(())
    })
    .await
    .expect("both ends reopen the line");
    b.download(MissionType::Mission).await.unwrap();
}

/// A fake autopilot on a raw socket sends garbage, truncated and corrupted
/// frames, a foreign system's telemetry and acks nobody asked for: all
/// counted, none changes the state, and the link keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_counted_never_fatal() {
    let port = free_udp_port();
    let b = Bridge::connect(&format!("udpin:127.0.0.1:{port}"), BridgeConfig::default())
        .await
        .unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = format!("127.0.0.1:{port}");
    let mut ap = Encoder::new(1, 1, None);
    let mut foreign = Encoder::new(42, 1, None);
    let hb = Msg::HEARTBEAT(dialect::HEARTBEAT_DATA {
        custom_mode: 4,
        mavtype: dialect::MavType::MAV_TYPE_QUADROTOR,
        autopilot: dialect::MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA,
        base_mode: dialect::MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
        system_status: dialect::MavState::MAV_STATE_STANDBY,
        mavlink_version: 3,
    });
    let pos = |lat: i32| {
        Msg::GLOBAL_POSITION_INT(dialect::GLOBAL_POSITION_INT_DATA {
            time_boot_ms: 1000,
            lat,
            lon: 1_179_400_000,
            alt: 100_000,
            relative_alt: 30_000,
            vx: 0,
            vy: 0,
            vz: 0,
            hdg: 0,
        })
    };
    sock.send_to(&ap.encode(&hb, 0), &to).await.unwrap();
    sock.send_to(&ap.encode(&pos(284_500_000), 0), &to)
        .await
        .unwrap();
    b.wait_for_autopilot(Duration::from_secs(5)).await.unwrap();
    b.wait_for("position", Duration::from_secs(2), |s| s.position.is_some())
        .await
        .unwrap();

    // Noise.
    sock.send_to(&[0x55; 300], &to).await.unwrap();
    // Truncated frame.
    let f = ap.encode(&pos(284_500_000), 0);
    sock.send_to(&f[..f.len() - 5], &to).await.unwrap();
    // Corrupted CRC.
    let mut f = ap.encode(&pos(1), 0);
    let n = f.len();
    f[n - 4] ^= 0x5A;
    sock.send_to(&f, &to).await.unwrap();
    // A stream of random bytes with MAVLink start markers sprinkled in.
    let mut junk = Vec::new();
    let mut x: u32 = 12345;
    for i in 0..4000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        junk.push(if i % 97 == 0 { 0xFD } else { (x >> 16) as u8 });
    }
    for chunk in junk.chunks(250) {
        sock.send_to(chunk, &to).await.unwrap();
    }
    // Another system's telemetry and acks.
    sock.send_to(&foreign.encode(&hb, 0), &to).await.unwrap();
    sock.send_to(&foreign.encode(&pos(10), 0), &to)
        .await
        .unwrap();
    // An ack for a command never sent, and a mission ack out of the blue.
    let ack = Msg::COMMAND_ACK(dialect::COMMAND_ACK_DATA {
        command: dialect::MavCmd::MAV_CMD_NAV_LAND,
        result: dialect::MavResult::MAV_RESULT_ACCEPTED,
        progress: 0,
        result_param2: 0,
        target_system: 1,
        target_component: 191,
    });
    sock.send_to(&ap.encode(&ack, 0), &to).await.unwrap();
    let mack = Msg::MISSION_ACK(dialect::MISSION_ACK_DATA {
        target_system: 1,
        target_component: 191,
        mavtype: dialect::MavMissionResult::MAV_MISSION_ACCEPTED,
        mission_type: dialect::MavMissionType::MAV_MISSION_TYPE_MISSION,
        opaque_id: 0,
    });
    sock.send_to(&ap.encode(&mack, 0), &to).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;

    let st = b.stats();
    assert!(st.link.truncated >= 1, "{st:?}");
    assert!(st.link.crc_errors >= 1, "{st:?}");
    assert!(st.link.garbage_bytes >= 300, "{st:?}");
    assert!(st.link.foreign_frames >= 2, "{st:?}");
    assert_eq!(st.link.unexpected_acks, 1, "{st:?}");
    assert_eq!(st.link.unexpected_mission_messages, 1, "{st:?}");
    let s = b.snapshot();
    assert_eq!(s.system_id, Some(1), "still talking to system 1");
    assert_eq!(
        s.position.unwrap().lat_deg,
        28.45,
        "foreign/corrupt positions ignored"
    );

    // Still works: a command round trip.
    let bb = b.clone();
    let cmd = tokio::spawn(async move { bb.arm().await });
    let mut buf = [0u8; 512];
    let (n, from) = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            let mut d = tiancha_firmware_bridge::codec::Decoder::new(None);
            if d.push_datagram(&buf[..n], 0).iter().any(|r| {
                // Only the arm command: the bridge's own stream requests
                // (SET_MESSAGE_INTERVAL) are COMMAND_LONGs too, and
                // acking too early would make the arm's ack unexpected.
                matches!(&r.msg, Msg::COMMAND_LONG(c)
                        if c.command == dialect::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM)
            }) {
                return (n, from);
            }
        }
    })
    .await
    .expect("the bridge sends the arm command");
    let _ = n;
    let ok = Msg::COMMAND_ACK(dialect::COMMAND_ACK_DATA {
        command: dialect::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
        result: dialect::MavResult::MAV_RESULT_ACCEPTED,
        progress: 0,
        result_param2: 0,
        target_system: 1,
        target_component: 191,
    });
    sock.send_to(&ap.encode(&ok, 0), from).await.unwrap();
    cmd.await
        .unwrap()
        .expect("command acknowledged after all that");
}

/// SETUP_SIGNING over a trusted link: the simulator takes the key, signs
/// from then on and requires it; the bridge confirms and keeps working; an
/// unsigned client is then ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_signing_provisions_the_key_then_requires_it() {
    use tiancha_firmware_bridge::command::{CommandConfig, CommandError};
    use tiancha_firmware_bridge::signing::SigningKey;
    let sim = sim(2.0, |_| {}).await;
    let b = bridge_to(&sim, BridgeConfig::default()).await;
    assert!(!sim.truth().borrow().signing);
    b.setup_signing(SigningKey::from_passphrase("fleet key 7"), true)
        .await
        .expect("provisioned and confirmed");
    assert!(b.snapshot().signing);
    assert!(
        sim.truth().borrow().signing,
        "the simulator now requires signing"
    );
    b.request_message(242).await.expect("signed commands work");
    let st = b.stats();
    assert_eq!(
        st.link.bad_signatures + st.link.unsigned_rejected,
        0,
        "{st:?}"
    );

    let quick = BridgeConfig {
        command: CommandConfig {
            timeout: Duration::from_millis(300),
            retries: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let intruder = Bridge::connect(&sim.client_address(), quick).await.unwrap();
    intruder
        .wait_for_autopilot(Duration::from_secs(5))
        .await
        .expect("it can still listen");
    assert!(matches!(
        intruder.arm().await,
        Err(CommandError::Timeout { .. })
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sim.stats().link.unsigned_rejected > 0);
    assert!(!sim.truth().borrow().armed);
}
