//! End-to-end command authentication across real processes: `tiancha
//! ground-station` (embedded broker, its key from `tiancha command-key
//! generate`), `tiancha sim`, and two `tiancha companion`s: `sr-01`
//! trusting the station's public key, `sr-02` with no key at all.
//!
//! A genuine command sent through the station's HTTP API is executed. An
//! attacker with access to the broker publishes straight onto the drone's
//! command topic (mosquitto_pub): unsigned, signed with its own key,
//! signed with its own key under the station's key id, a captured genuine
//! command altered, and the captured command replayed verbatim. Each is
//! refused with the right reason and never executed; the replay gets no
//! result (it would land on the genuine command) but is logged.
//! Expired and future-dated commands signed with the real key are refused
//! too, and the drone without a key refuses even the station's commands.

mod support;

use std::time::Duration;

use support::*;
use tiancha_protocol::command_auth::CommandSigner;
use tiancha_protocol::{self as proto, Command, CommandKind, DroneId};
use uuid::Uuid;

const TOPIC: &str = "tiancha/v1/drones/sr-01/commands";

fn zones_body() -> String {
    serde_json::json!({"command": "set_detection_zones", "zones": [{
        "name": "reservoir edge",
        "polygon": {"exterior": [
            {"lat_deg": 28.4500, "lon_deg": 117.9400},
            {"lat_deg": 28.4510, "lon_deg": 117.9400},
            {"lat_deg": 28.4510, "lon_deg": 117.9410}
        ]},
        "rule": {"rule": "intrusion", "classes": ["person"], "min_duration_s": 5.0}
    }]})
    .to_string()
}

fn forged(kind: CommandKind, t_unix_ms: i64, expires_unix_ms: i64) -> Command {
    Command {
        schema: proto::SCHEMA_VERSION,
        command_id: Uuid::now_v7(),
        drone_id: DroneId::new("sr-01").unwrap(),
        issued_by: "op1".into(),
        t_unix_ms,
        expires_unix_ms,
        kind,
        auth: None,
    }
}

fn now_ms() -> i64 {
    proto::unix_ms(std::time::SystemTime::now())
}

fn companion_config(
    dir: &std::path::Path,
    drone: &str,
    mqtt: u16,
    mav: u16,
    extra: &str,
) -> String {
    let path = dir.join(format!("{drone}.toml"));
    std::fs::write(
        &path,
        format!(
            "drone_id = \"{drone}\"\n[mqtt]\nport = {mqtt}\n\
             [spool]\npath = \"{}\"\nreceipt_timeout_s = 5\n\
             [autopilot]\naddress = \"udpout:127.0.0.1:{mav}\"\n{extra}",
            dir.join(format!("{drone}-spool.db")).display()
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn only_commands_signed_by_the_ground_station_are_executed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mqtt, http_port, mav, mav2) = (free_port(), free_port(), free_port(), free_port());
    let conf = ground_station_config(dir, mqtt, http_port, true);
    let (key, public_key) = command_key(dir);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "private key file mode");
    }
    let mut gs_toml = std::fs::read_to_string(&conf).unwrap();
    gs_toml += &format!("[commands]\nsigning_key_file = \"{}\"\n", key.display());
    std::fs::write(&conf, gs_toml).unwrap();
    let operator = api_token(dir, &conf, "operator");
    let mut gs = Proc::tiancha(
        "ground-station",
        dir,
        &["ground-station", "--config", conf.to_str().unwrap()],
    );
    wait_port(mqtt, Duration::from_secs(20));
    wait_port(http_port, Duration::from_secs(20));
    let _sim = Proc::tiancha(
        "sim",
        dir,
        &[
            "sim",
            "--listen",
            &format!("udpin:127.0.0.1:{mav}"),
            "--speed",
            "4",
        ],
    );
    let c1 = companion_config(
        dir,
        "sr-01",
        mqtt,
        mav,
        &format!("[commands]\nground_station_public_keys = [\"{public_key}\"]\n"),
    );
    let mut companion = Proc::tiancha("companion", dir, &["companion", "--config", &c1]);
    let c2 = companion_config(dir, "sr-02", mqtt, mav2, "");
    let mut keyless = Proc::tiancha("companion-keyless", dir, &["companion", "--config", &c2]);
    wait_for(
        "both drones online at the ground",
        Duration::from_secs(60),
        || (count(dir, "SELECT count(*) FROM drones WHERE online") >= 2).then_some(()),
    );
    // Start-up logs: what the station signs with, what each drone trusts.
    let gs_log = std::fs::read_to_string(&gs.log).unwrap();
    let key_id = command_signer(&key).key_id().to_string();
    assert!(
        gs_log.contains("commands to drones are signed with this key") && gs_log.contains(&key_id),
        "{}",
        gs.log_tail(20)
    );
    assert!(
        std::fs::read_to_string(&keyless.log)
            .unwrap()
            .contains("no ground-station command key configured"),
        "{}",
        keyless.log_tail(20)
    );

    let api = format!("http://127.0.0.1:{http_port}/api/drones");
    let bearer = format!("Bearer {operator}");
    let send = |drone: &str, body: &str| -> Command {
        let (s, text) = http(
            "POST",
            &format!("{api}/{drone}/commands"),
            &[("authorization", &bearer)],
            Some(body),
        );
        assert_eq!(s, 201, "{text}");
        serde_json::from_str(&text).unwrap()
    };

    // 1. A genuine command through the station's API is executed.
    let genuine = send("sr-01", &zones_body());
    assert!(genuine.auth.is_some(), "the station signs: {genuine:?}");
    let (status, reason) = final_command_result(dir, genuine.command_id, Duration::from_secs(30));
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("succeeded", "1 detection zone(s) in force"),
        "{}",
        companion.log_tail(20)
    );

    // 2. The attacker publishes straight to the broker.
    let attacker = CommandSigner::from_seed(&[0xA5; 32]);
    let now = now_ms();
    let mut cases: Vec<(Command, &str, &str)> = vec![];
    // Unsigned.
    cases.push((
        forged(CommandKind::ReturnToLaunch, now, now + 30_000),
        "unauthorized",
        "not signed",
    ));
    // Signed with the attacker's own key.
    let mut c = forged(CommandKind::Land, now, now + 30_000);
    attacker.sign(&mut c, &[1; 16]);
    cases.push((c, "unauthorized", "does not trust"));
    // The attacker's signature under the station's key id.
    let mut c = forged(CommandKind::Land, now, now + 30_000);
    attacker.sign(&mut c, &[2; 16]);
    c.auth.as_mut().unwrap().key_id = key_id.clone();
    cases.push((c, "unauthorized", "bad signature"));
    // A captured genuine command, altered (new id, other command).
    let mut c = genuine.clone();
    c.command_id = Uuid::now_v7();
    c.kind = CommandKind::ReturnToLaunch;
    cases.push((c, "unauthorized", "bad signature"));
    // Signed with the real key (as a stale or mis-clocked station would):
    // expired, and issued a minute in the future.
    let station = command_signer(&key);
    let mut c = forged(CommandKind::Pause, now - 120_000, now - 60_000);
    station.sign(&mut c, &[3; 16]);
    cases.push((c, "expired", "expired"));
    let mut c = forged(CommandKind::Pause, now + 60_000, now + 90_000);
    station.sign(&mut c, &[4; 16]);
    cases.push((c, "refused", "in the future"));
    for (c, _, _) in &cases {
        mosquitto_pub(dir, mqtt, TOPIC, &proto::encode(c).unwrap());
    }
    for (c, want_status, want_reason) in &cases {
        let (status, reason) = final_command_result(dir, c.command_id, Duration::from_secs(30));
        assert_eq!(status, *want_status, "{}: {reason}", c.kind.name());
        assert!(reason.contains(want_reason), "{}: {reason}", c.kind.name());
    }

    // 3. The captured genuine command replayed verbatim: not executed again,
    // not answered (an answer would attach to the genuine command), logged.
    mosquitto_pub(dir, mqtt, TOPIC, &proto::encode(&genuine).unwrap());
    let id = genuine.command_id.to_string();
    wait_for(
        "the replay logged as rejected",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&companion.log)
                .unwrap()
                .lines()
                .any(|l| l.contains("REJECTED") && l.contains(&id) && l.contains("replayed"))
                .then_some(())
        },
    );
    let log = std::fs::read_to_string(&companion.log).unwrap();
    let verified = log
        .lines()
        .filter(|l| l.contains("command signature verified") && l.contains(&id))
        .count();
    assert_eq!(verified, 1, "the genuine command ran once");
    // Nothing forged ran: the only verified command is the genuine one.
    assert_eq!(
        log.matches("command signature verified").count(),
        1,
        "{log}"
    );
    let db = open_store(dir).unwrap();
    let results: Vec<String> = db
        .prepare("SELECT status FROM command_results WHERE command_id = ?1")
        .unwrap()
        .query_map([&id], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(results, ["succeeded"], "the genuine command's results");
    drop(db);

    // 4. The drone with no key refuses even the station's own command.
    let c = send("sr-02", r#"{"command":"pause"}"#);
    let (status, reason) = final_command_result(dir, c.command_id, Duration::from_secs(30));
    assert_eq!(status, "unauthorized", "{reason}");
    assert!(
        reason.contains("no ground-station command key configured"),
        "{reason}"
    );

    assert!(gs.is_running() && companion.is_running() && keyless.is_running());
}
