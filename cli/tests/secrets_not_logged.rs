//! Secrets never reach the logs. The real ground station runs at
//! `RUST_LOG=trace` (every crate, the most it can ever log) through a
//! login + command flow: an admin logs in, creates an operator and an API
//! token over the API, the operator logs in and commands a drone with the
//! session and with the token, someone mistypes a password, everyone logs
//! out. Then its whole log is searched for every secret that passed
//! through it: passwords (right and wrong), session ids, CSRF tokens, the
//! API token and the command-signing private key (PEM body, raw seed in
//! base64 and hex).

mod support;

use std::time::Duration;

use base64::Engine;
use support::*;

const ADMIN_PW: &str = "admin-Pw-7c1e5e0b9d";
const OP_PW: &str = "operator-Pw-4f2a9b31c8";
const WRONG_PW: &str = "mistyped-Pw-8d3e2c1a07";

#[test]
fn no_secret_appears_in_the_ground_station_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mqtt, http_port) = (free_port(), free_port());
    let conf = ground_station_config(dir, mqtt, http_port, true);
    // Secure cookies off: the test talks plain HTTP to 127.0.0.1.
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text = text.replace("[http]\n", "[http]\nsecure_cookies = false\n");
    std::fs::write(&conf, text).unwrap();
    let out = std::process::Command::new(tiancha_bin())
        .env("ADMIN_PW", ADMIN_PW)
        .args(["ground-station", "--config", conf.to_str().unwrap()])
        .args([
            "user",
            "add",
            "chief",
            "--role",
            "admin",
            "--password-env",
            "ADMIN_PW",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut gs = Proc::spawn_env(
        "ground-station",
        dir,
        tiancha_bin(),
        &["ground-station", "--config", conf.to_str().unwrap()],
        &[("RUST_LOG", "trace"), ("NO_COLOR", "1")],
    );
    wait_port(http_port, Duration::from_secs(30));
    let base = format!("http://127.0.0.1:{http_port}");
    let mut secrets: Vec<(String, String)> = vec![
        ("admin password".into(), ADMIN_PW.into()),
        ("operator password".into(), OP_PW.into()),
        ("mistyped password".into(), WRONG_PW.into()),
    ];

    // A raw client that shows Set-Cookie.
    let session = |name: &str, pw: &str| -> (String, String) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = reqwest::Client::new()
                .post(format!("{base}/api/login"))
                .json(&serde_json::json!({"name": name, "password": pw}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "login {name}");
            let cookie = r.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string();
            let v: serde_json::Value = r.json().await.unwrap();
            (cookie, v["csrf"].as_str().unwrap().to_string())
        })
    };
    let (admin_cookie, admin_csrf) = session("chief", ADMIN_PW);
    let admin = [
        ("cookie", admin_cookie.as_str()),
        ("x-csrf-token", admin_csrf.as_str()),
    ];
    let (s, body) = http(
        "POST",
        &format!("{base}/api/admin/users"),
        &admin,
        Some(
            &serde_json::json!({"name": "op7", "role": "operator", "password": OP_PW}).to_string(),
        ),
    );
    assert_eq!(s, 201, "{body}");
    let (s, body) = http(
        "POST",
        &format!("{base}/api/admin/tokens"),
        &admin,
        Some(r#"{"user":"op7","label":"wall display"}"#),
    );
    assert_eq!(s, 201, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (op_cookie, op_csrf) = session("op7", OP_PW);
    let op = [
        ("cookie", op_cookie.as_str()),
        ("x-csrf-token", op_csrf.as_str()),
    ];
    let (s, body) = http(
        "POST",
        &format!("{base}/api/drones/sr-01/commands"),
        &op,
        Some(r#"{"command":"return_to_launch"}"#),
    );
    assert_eq!(s, 201, "{body}");
    let bearer = format!("Bearer {token}");
    let (s, body) = http(
        "POST",
        &format!("{base}/api/drones/sr-01/commands"),
        &[("authorization", bearer.as_str())],
        Some(r#"{"command":"pause"}"#),
    );
    assert_eq!(s, 201, "{body}");
    let (s, _) = http(
        "POST",
        &format!("{base}/api/login"),
        &[],
        Some(&serde_json::json!({"name": "op7", "password": WRONG_PW}).to_string()),
    );
    assert_eq!(s, 401);
    for h in [&op, &admin] {
        assert_eq!(http("POST", &format!("{base}/api/logout"), h, None).0, 200);
    }

    for (what, cookie) in [
        ("admin session id", &admin_cookie),
        ("operator session id", &op_cookie),
    ] {
        secrets.push((what.into(), cookie.split_once('=').unwrap().1.to_string()));
    }
    secrets.push(("admin CSRF token".into(), admin_csrf.clone()));
    secrets.push(("operator CSRF token".into(), op_csrf.clone()));
    secrets.push(("API token".into(), token.clone()));
    // The command-signing key the station created in its data directory.
    let key = dir.join("gs-data").join("command-signing-key.pem");
    let pem = std::fs::read_to_string(&key).expect("the station created its key");
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        secrets.push(("private key PEM".into(), line.to_string()));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    // PrivateKey ::= OCTET STRING { OCTET STRING (32 bytes) } (RFC 8410);
    // the file may carry the public key after it (PKCS#8 v2).
    let at = der
        .windows(4)
        .position(|w| w == [0x04, 0x22, 0x04, 0x20])
        .expect("an RFC 8410 private key")
        + 4;
    let seed = &der[at..at + 32];
    assert_eq!(
        tiancha_protocol::command_auth::CommandSigner::from_seed(seed.try_into().unwrap())
            .public_key(),
        command_signer(&key).public_key(),
        "the seed found is the key's"
    );
    secrets.push((
        "private key seed (base64)".into(),
        base64::engine::general_purpose::STANDARD.encode(seed),
    ));
    secrets.push((
        "private key seed (hex)".into(),
        seed.iter().map(|b| format!("{b:02x}")).collect(),
    ));
    let public = command_signer(&key).public_key().to_string();

    // Let the last lines reach the file, then read everything it logged.
    std::thread::sleep(Duration::from_millis(500));
    gs.kill();
    let log = std::fs::read_to_string(&gs.log).unwrap();
    assert!(
        log.lines().count() > 50 && log.contains("TRACE"),
        "the station logged at trace level: {} lines",
        log.lines().count()
    );
    // It did log what is not secret: the public key, the commands.
    assert!(log.contains(&public), "the public key is logged");
    for (what, secret) in &secrets {
        assert!(secret.len() >= 16, "{what} is too short to search for");
        if let Some(line) = log.lines().find(|l| l.contains(secret.as_str())) {
            panic!("{what} appears in the ground-station log:\n{line}");
        }
    }
}
