//! Bad payloads end in quarantine with a readable reason, and the good ones
//! around them are all stored. The ground station runs as one process with
//! its embedded broker; an independent client (mosquitto_pub) publishes.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

fn publish(port: u16, topic: &str, payload_file: &Path) {
    let st = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-f",
            payload_file.to_str().unwrap(),
        ])
        .status()
        .expect("mosquitto_pub (package mosquitto-clients) is needed");
    assert!(st.success(), "mosquitto_pub failed for {topic}");
}

fn good_alert(drone: &str, n: u32) -> serde_json::Value {
    serde_json::json!({
        "schema": 1,
        "alert_id": uuid::Uuid::now_v7(),
        "drone_id": drone,
        "category": "gathering",
        "confidence": 0.9,
        "t_first_unix_ms": 1_795_000_000_000i64,
        "t_unix_ms": 1_795_000_060_000i64 + n as i64,
        "location_status": "geotagged",
        "location": {"lat_deg": 28.45, "lon_deg": 117.94,
                     "sigma": {"semi_major_m": 3.0, "semi_minor_m": 2.0, "orientation_deg": 0.0}},
        "person_count": 9,
        "tracks": [],
        "rule": {"name": "gathering", "detail": "test"},
        "snapshot": {"width": 8, "height": 8, "jpeg": "/9j/4AAQSkZJRg=="}
    })
}

#[test]
fn bad_payloads_are_quarantined_with_reasons_and_good_ones_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mqtt = free_port();
    let http = free_port();
    let conf = ground_station_config(dir, mqtt, http, true);
    let mut gs = Proc::tiancha(
        "ground-station",
        dir,
        &["ground-station", "--config", conf.to_str().unwrap()],
    );
    wait_port(http, Duration::from_secs(20));
    wait_port(mqtt, Duration::from_secs(20));
    // Give ingest a moment to subscribe.
    wait_for("ingest connected", Duration::from_secs(10), || {
        std::fs::read_to_string(&gs.log)
            .ok()
            .filter(|l| l.contains("ingest connected"))
    });

    let topic = "tiancha/v1/drones/sr-01/alerts";
    let file = dir.join("payload.json");
    let mut good_ids = vec![];
    let mut put = |bytes: Vec<u8>, topic: &str| {
        std::fs::write(&file, bytes).unwrap();
        publish(mqtt, topic, &file);
    };
    let mut good = |n: u32, put: &mut dyn FnMut(Vec<u8>, &str)| {
        let a = good_alert("sr-01", n);
        good_ids.push(a["alert_id"].as_str().unwrap().to_string());
        put(serde_json::to_vec(&a).unwrap(), topic);
    };

    good(0, &mut put);
    put(b"{\"schema\": 1, \"alert_id\": ".to_vec(), topic); // malformed JSON
    good(1, &mut put);
    let mut v = good_alert("sr-01", 2);
    v["schema"] = 9.into();
    put(serde_json::to_vec(&v).unwrap(), topic); // wrong schema version
    good(3, &mut put);
    let text = serde_json::to_string(&good_alert("sr-01", 4))
        .unwrap()
        .replace("28.45", "NaN");
    put(text.into_bytes(), topic); // NaN coordinates (not JSON)
    let mut v = good_alert("sr-01", 5);
    v["location"]["lat_deg"] = "NaN".into();
    put(serde_json::to_vec(&v).unwrap(), topic); // NaN as a string
    let mut v = good_alert("sr-01", 6);
    v["location"]["lat_deg"] = 123.0.into();
    put(serde_json::to_vec(&v).unwrap(), topic); // out of range
    good(7, &mut put);
    let mut v = good_alert("sr-01", 8);
    use base64::Engine;
    let mut big = vec![0xFFu8, 0xD8, 0xFF, 0xE0];
    big.resize(10 * 1024 * 1024, 7);
    v["snapshot"]["jpeg"] = base64::engine::general_purpose::STANDARD
        .encode(&big)
        .into();
    put(serde_json::to_vec(&v).unwrap(), topic); // 10 MB snapshot
    good(9, &mut put);
    let v = good_alert("sr-02", 10);
    put(serde_json::to_vec(&v).unwrap(), topic); // drone id mismatch
    good(11, &mut put);
    let mut v = good_alert("sr-01", 12);
    v["category"] = "ufo".into();
    put(serde_json::to_vec(&v).unwrap(), topic); // unknown category
    good(13, &mut put);

    wait_for("quarantine to fill", Duration::from_secs(30), || {
        (count(dir, "SELECT count(*) FROM quarantine") >= 8
            && count(dir, "SELECT count(*) FROM alerts") >= 7)
            .then_some(())
    });
    let db = open_store(dir).unwrap();
    let reasons: Vec<(String, String, i64)> = db
        .prepare("SELECT class, reason, payload_len FROM quarantine ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let classes: Vec<&str> = reasons.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        classes,
        [
            "malformed_json",
            "unknown_schema",
            "malformed_json",
            "bad_field",
            "invalid",
            "too_large",
            "drone_id_mismatch",
            "bad_field"
        ],
        "{reasons:#?}"
    );
    let r = |i: usize| reasons[i].1.as_str();
    assert!(r(1).contains("unknown schema version 9"), "{}", r(1));
    assert!(r(3).contains("location.lat_deg"), "{}", r(3));
    assert!(
        r(4).contains("`location.lat_deg`: 123 is out of range"),
        "{}",
        r(4)
    );
    assert!(r(5).contains("larger than the limit"), "{}", r(5));
    assert!(
        reasons[5].2 > 10_000_000,
        "the oversize payload's length is recorded"
    );
    assert!(
        r(6).contains("payload drone_id `sr-02` differs from the topic's drone `sr-01`"),
        "{}",
        r(6)
    );
    assert!(r(7).contains("unknown variant `ufo`"), "{}", r(7));

    let stored: Vec<String> = db
        .prepare("SELECT alert_id FROM alerts ORDER BY t_unix_ms")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored, good_ids, "every good alert stored, none of the bad");
    assert!(
        gs.is_running(),
        "ground station survived:\n{}",
        gs.log_tail(20)
    );

    // The HTTP API shows the quarantine too.
    let token = api_token(dir, &conf, "admin");
    let body = http_get(http, "/api/quarantine", &token);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("drone_id_mismatch"), "{body}");
}

fn http_get(port: u16, path: &str, token: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
