//! The HTTP API in-process on a real socket with a real SQLite store:
//! login, roles, CSRF and origin checks, rate limiting, bad input
//! (oversize / malformed / unsigned callbacks, SQL and HTML injection,
//! path traversal), status callbacks along the timeline, CAP export, the
//! OpenAPI document against the router, and retention.

use std::net::SocketAddr;
use std::time::Duration;

use tiancha_ground_station::auth::{hash_password, Role};
use tiancha_ground_station::dispatch::sign;
use tiancha_ground_station::store::Record;
use tiancha_ground_station::{build_state, http, Config};
use tiancha_protocol::{self as proto, SCHEMA_VERSION};
use uuid::Uuid;

const SECRET: &str = "route-secret-0123456789";
const PW: &str = "a long password";

struct Gs {
    base: String,
    state: http::AppState,
    _dir: tempfile::TempDir,
}

fn now_ms() -> i64 {
    proto::unix_ms(std::time::SystemTime::now())
}

fn alert_json(lat: f64, lon: f64, cat: &str, n: u32) -> serde_json::Value {
    let t = now_ms();
    serde_json::json!({
        "schema": 1, "alert_id": Uuid::now_v7(), "drone_id": "sr-01", "category": cat,
        "confidence": 0.9, "t_first_unix_ms": t - 60_000, "t_unix_ms": t,
        "location_status": "geotagged",
        "location": {"lat_deg": lat, "lon_deg": lon, "sigma": {"semi_major_m": 4.0, "semi_minor_m": 2.0, "orientation_deg": 30.0}},
        "person_count": n, "tracks": [], "rule": {"name": "gathering", "detail": "9 people within 15 m for 120 s"},
        "snapshot": {"width": 8, "height": 8, "jpeg": "/9j/4AAQSkZJRg=="}
    })
}

async fn start(extra: &str) -> Gs {
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("grid.geojson");
    std::fs::write(
        &grid,
        serde_json::json!({"type": "FeatureCollection", "features": [{
            "type": "Feature",
            "properties": {"grid_id": "SR-1", "county": "Xinzhou", "township": "Shaxi", "village": "Xiajia"},
            "geometry": {"type": "Polygon", "coordinates": [[[117.93, 28.44], [117.95, 28.44], [117.95, 28.46], [117.93, 28.46], [117.93, 28.44]]]}
        }]})
        .to_string(),
    )
    .unwrap();
    let text = format!(
        "data_dir = \"{}\"\n[map]\ngrid = \"{}\"\n[auth]\nlogin_max_failures = 3\n\
         [[dispatch.routes]]\nname = \"governance\"\nurl = \"http://127.0.0.1:9/cases\"\nsecret = \"{SECRET}\"\ndefault = true\n{extra}",
        dir.path().join("data").display(),
        grid.display()
    );
    let cfg = Config::parse(&text, std::path::Path::new("test.toml")).unwrap();
    let mut store = tiancha_ground_station::open_store(&cfg).unwrap();
    for (name, role) in [
        ("op1", Role::Operator),
        ("centre1", Role::DisputeCentre),
        ("admin", Role::Admin),
    ] {
        store
            .put_user(name, role, &hash_password(PW).unwrap(), now_ms())
            .unwrap();
    }
    let state = build_state(cfg, store, None).unwrap();
    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    Gs {
        base,
        state,
        _dir: dir,
    }
}

impl Gs {
    fn store_alert(&self, a: &serde_json::Value) -> Uuid {
        let id: Uuid = a["alert_id"].as_str().unwrap().parse().unwrap();
        let rec = tiancha_ground_station::ingest::classify(
            "tiancha/v1/drones/sr-01/alerts",
            a.to_string().as_bytes(),
        );
        assert!(matches!(rec, Record::Alert(_)), "{rec:?}");
        self.state
            .store
            .lock()
            .unwrap()
            .ingest_batch(&[rec], now_ms())
            .unwrap();
        id
    }
}

/// A logged-in client: cookie jar + CSRF token.
struct Client {
    c: reqwest::Client,
    base: String,
    csrf: String,
}

async fn login(gs: &Gs, name: &str) -> Client {
    let c = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let r = c
        .post(format!("{}/api/login", gs.base))
        .json(&serde_json::json!({"name": name, "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure"),
        "{set}"
    );
    let v: serde_json::Value = r.json().await.unwrap();
    Client {
        c,
        base: gs.base.clone(),
        csrf: v["csrf"].as_str().unwrap().to_string(),
    }
}

impl Client {
    async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .c
            .post(format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(serde_json::Value::Null))
    }
    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .c
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

async fn callback(gs: &Gs, route: &str, body: &[u8], secret: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/callbacks/{route}", gs.base))
        .header("content-type", "application/json")
        .header(
            sign::SIGNATURE_HEADER,
            sign::sign(secret.as_bytes(), now_ms() / 1000, body),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn roles_csrf_origin_and_rate_limit() {
    let gs = start("").await;
    let anon = reqwest::Client::new();
    assert_eq!(
        anon.get(format!("{}/api/alerts", gs.base))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let op = login(&gs, "op1").await;
    // No CSRF token: refused.
    let r =
        op.c.post(format!("{}/api/drones/sr-01/commands", gs.base))
            .json(&serde_json::json!({"command": "pause"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("X-CSRF-Token"));
    // Cross-site origin: refused even with the token.
    let r =
        op.c.post(format!("{}/api/alerts/{}/confirm", gs.base, Uuid::now_v7()))
            .header("x-csrf-token", &op.csrf)
            .header("origin", "http://evil.example")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 403);
    // Dispute centre: sees cases, may not command or triage.
    let dc = login(&gs, "centre1").await;
    assert_eq!(dc.get("/api/cases").await.0, 200);
    let (s, v) = dc
        .post(
            "/api/drones/sr-01/commands",
            serde_json::json!({"command": "launch_patrol", "patrol": {"areas": []}}),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("may not command"));
    let (s, _) = dc
        .post("/api/missions/preview", serde_json::json!({"patrol": {}}))
        .await;
    assert_eq!(s, 403);
    let id = gs.store_alert(&alert_json(28.45, 117.94, "gathering", 9));
    assert_eq!(
        dc.post(&format!("/api/alerts/{id}/confirm"), serde_json::json!({}))
            .await
            .0,
        403
    );
    assert_eq!(dc.get("/api/admin/users").await.0, 403);
    // Operator: no MQTT in this test, so a well-formed command is 503, not 403.
    assert_eq!(
        op.post(
            "/api/drones/sr-01/commands",
            serde_json::json!({"command": "pause"})
        )
        .await
        .0,
        503
    );
    // Malformed command says what is wrong.
    let (s, v) = op
        .post(
            "/api/drones/sr-01/commands",
            serde_json::json!({"command": "fly_to_moon"}),
        )
        .await;
    assert_eq!(s, 422);
    assert!(v["error"].as_str().unwrap().contains("fly_to_moon"), "{v}");
    // Rate limit: 3 failures lock the user name out.
    let c = reqwest::Client::new();
    for _ in 0..3 {
        let r = c
            .post(format!("{}/api/login", gs.base))
            .json(&serde_json::json!({"name": "admin", "password": "wrong password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = c
        .post(format!("{}/api/login", gs.base))
        .json(&serde_json::json!({"name": "admin", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "right password refused while locked out");
    assert!(r.headers().contains_key("retry-after"));
    // The audit log has the failures (checked by an admin token, no cookie).
    let tok = tiancha_ground_station::auth::new_token();
    gs.state
        .store
        .lock()
        .unwrap()
        .create_api_token(
            &tiancha_ground_station::auth::token_hash(&tok),
            "t",
            "admin",
            now_ms(),
        )
        .unwrap();
    let r = c
        .get(format!("{}/api/admin/audit", gs.base))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let audit: serde_json::Value = r.json().await.unwrap();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["action"] == "login_failed")
            .count()
            >= 3
    );
    let r = c
        .get(format!("{}/api/admin/audit", gs.base))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn confirm_dispatch_queue_callbacks_and_bad_callbacks() {
    let gs = start("").await;
    let op = login(&gs, "op1").await;
    let a1 = gs.store_alert(&alert_json(28.45, 117.94, "gathering", 9));
    let a2 = gs.store_alert(&alert_json(28.4503, 117.9401, "gathering", 14)); // ~35 m away: merges
    let a3 = gs.store_alert(&alert_json(28.455, 117.94, "gathering", 5)); // ~550 m: does not
    let (s, v) = op
        .post(&format!("/api/alerts/{a1}/confirm"), serde_json::json!({}))
        .await;
    assert_eq!(s, 201, "{v}");
    let case_id: Uuid = v["case_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(v["alerts"].as_array().unwrap().len(), 2);
    assert!(v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == &serde_json::json!(a2)));
    // Confirming again is a conflict, not a second case.
    assert_eq!(
        op.post(&format!("/api/alerts/{a2}/confirm"), serde_json::json!({}))
            .await
            .0,
        409
    );
    let (s, case) = op.get(&format!("/api/cases/{case_id}")).await;
    assert_eq!(s, 200);
    let case: serde_json::Value = serde_json::from_str(&case).unwrap();
    assert_eq!(case["case"]["grid"]["village"], "Xiajia");
    assert_eq!(case["case"]["status"], "confirmed");
    assert_eq!(case["delivery"]["state"], "pending");
    assert_eq!(case["case"]["max_person_count"], 14);
    // The frozen body is a valid wire Case with signed evidence links.
    let (_, body) = gs
        .state
        .store
        .lock()
        .unwrap()
        .outbox_body(case_id)
        .unwrap()
        .unwrap();
    let wire: proto::Case = proto::decode(&body).unwrap();
    assert_eq!(wire.case_id, case_id);
    assert_eq!(wire.alert_ids.len(), 2);
    assert_eq!(wire.evidence.len(), 2);
    let url = &wire.evidence[0].url;
    let path = &url[url.find("/evidence/").unwrap()..];
    let anon = reqwest::Client::new();
    let r = anon.get(format!("{}{path}", gs.base)).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "signed evidence link works without a session"
    );
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'][..]
    );
    let tampered = path.replace("sig=", "sig=00");
    assert_eq!(
        anon.get(format!("{}{tampered}", gs.base))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Dismiss needs a reason; merge a3 by hand.
    assert_eq!(
        op.post(
            &format!("/api/alerts/{a3}/dismiss"),
            serde_json::json!({"reason": "  "})
        )
        .await
        .0,
        422
    );
    assert_eq!(
        op.post(
            &format!("/api/alerts/{a3}/merge"),
            serde_json::json!({"case_id": case_id})
        )
        .await
        .0,
        200
    );

    // Status callbacks: good, duplicate, bad signature, oversize, malformed, wrong route.
    let upd = |status: &str, note: &str| {
        serde_json::to_vec(
            &serde_json::json!({"schema": SCHEMA_VERSION, "case_id": case_id, "status": status,
            "t_unix_ms": now_ms(), "handler": "Zhang", "note": note}),
        )
        .unwrap()
    };
    let b = upd("received", "");
    assert_eq!(callback(&gs, "governance", &b, SECRET).await.0, 200);
    let (s, t) = callback(&gs, "governance", &b, SECRET).await;
    assert_eq!(s, 200);
    assert!(t.contains("\"duplicate\":true"), "{t}");
    let (s, t) = callback(
        &gs,
        "governance",
        &upd("mediating", ""),
        "another-secret-0123456",
    )
    .await;
    assert_eq!(
        (s, t.contains("signature does not match")),
        (401, true),
        "{t}"
    );
    let r = reqwest::Client::new()
        .post(format!("{}/api/callbacks/governance", gs.base))
        .body(upd("mediating", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let big = upd("mediating", &"x".repeat(70 * 1024));
    assert_eq!(callback(&gs, "governance", &big, SECRET).await.0, 413);
    let (s, t) = callback(&gs, "governance", b"{\"schema\":1,\"case_id\":", SECRET).await;
    assert_eq!(s, 400);
    assert!(t.contains("malformed JSON"), "{t}");
    let (s, t) = callback(&gs, "governance", &upd("bogus", ""), SECRET).await;
    assert_eq!(s, 400);
    assert!(t.contains("status"), "{t}");
    assert_eq!(callback(&gs, "nowhere", &b, SECRET).await.0, 404);
    let mut other = serde_json::from_slice::<serde_json::Value>(&b).unwrap();
    other["case_id"] = serde_json::json!(Uuid::now_v7());
    assert_eq!(
        callback(&gs, "governance", other.to_string().as_bytes(), SECRET)
            .await
            .0,
        404
    );
    // A note with SQL and HTML in it is stored verbatim (bound parameters) and
    // the case moves to resolved; a late "mediating" does not move it back.
    let evil = "'); DROP TABLE cases; -- <img src=x onerror=alert(1)> <script>alert(2)</script>";
    assert_eq!(
        callback(&gs, "governance", &upd("resolved", evil), SECRET)
            .await
            .0,
        200
    );
    assert_eq!(
        callback(&gs, "governance", &upd("mediating", "late"), SECRET)
            .await
            .0,
        200
    );
    let (_, case) = op.get(&format!("/api/cases/{case_id}")).await;
    let case: serde_json::Value = serde_json::from_str(&case).unwrap();
    assert_eq!(case["case"]["status"], "resolved");
    let tl = case["timeline"].as_array().unwrap();
    let statuses: Vec<&str> = tl.iter().filter_map(|e| e["status"].as_str()).collect();
    assert_eq!(
        statuses,
        ["raised", "confirmed", "received", "resolved", "mediating"]
    );
    assert!(tl.iter().any(|e| e["note"] == evil));
    // CAP export escapes it.
    let (s, cap) = op.get(&format!("/api/cases/{case_id}/cap.xml")).await;
    assert_eq!(s, 200);
    assert!(cap.contains("urn:oasis:names:tc:emergency:cap:1.2"));
    // Injection in filters and names.
    let (s, t) = op.get("/api/cases?village=%27%20OR%201%3D1%20--").await;
    assert_eq!((s, t.as_str()), (200, "[]"));
    assert_eq!(
        op.get("/api/cases?status=%27%3B%20DROP%20TABLE%20cases")
            .await
            .0,
        400
    );
    let admin = login(&gs, "admin").await;
    let (s, v) = admin.post("/api/admin/users", serde_json::json!({"name": "<script>alert(1)</script>", "role": "operator", "password": PW})).await;
    assert_eq!(s, 422, "{v}");
    let (s, _) = admin.post("/api/admin/users", serde_json::json!({"name": "x'; DROP TABLE users; --", "role": "operator", "password": PW})).await;
    assert_eq!(s, 422);
    let (s, _) = admin
        .post(
            "/api/admin/users",
            serde_json::json!({"name": "李雷", "role": "dispute_centre", "password": PW}),
        )
        .await;
    assert_eq!(s, 201, "non-ASCII letters are fine");
    let note = op
        .post(
            &format!("/api/cases/{case_id}/notes"),
            serde_json::json!({"note": evil}),
        )
        .await;
    assert_eq!(note.0, 200);
    assert_eq!(
        gs.state
            .store
            .lock()
            .unwrap()
            .cases(&Default::default())
            .unwrap()
            .len(),
        1,
        "tables intact"
    );
}

#[tokio::test]
async fn path_traversal_is_refused() {
    let gs = start("").await;
    let op = login(&gs, "op1").await;
    for (path, want) in [
        ("/api/alerts/..%2F..%2F..%2Fetc%2Fpasswd/snapshot.jpg", 400),
        ("/api/alerts/../../../etc/passwd/snapshot.jpg", 404),
        ("/ui/../../Cargo.toml", 404),
        ("/ui/%2e%2e/%2e%2e/Cargo.toml", 404),
        ("/ui/..%2f..%2fCargo.toml", 404),
        ("/ui/vendor/leaflet/../../../src/lib.rs", 404),
        (
            "/evidence/..%2F..%2Fstore.db/x.jpg?exp=9999999999&sig=00",
            400,
        ),
        ("/tiles/..%2F..%2F/1/1", 404),
    ] {
        let (s, body) = op.get(path).await;
        assert_eq!(s, want, "{path}: {body}");
        assert!(
            !body.contains("[package]") && !body.contains("root:"),
            "{path} leaked a file"
        );
    }
    let (s, js) = op.get("/ui/app.js").await;
    assert_eq!(s, 200);
    assert!(js.contains("textContent"));
    let r = reqwest::get(format!("{}/", gs.base)).await.unwrap();
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert_eq!(r.headers()["x-frame-options"], "DENY");
}

#[tokio::test]
async fn every_documented_endpoint_is_routed() {
    let gs = start("").await;
    let admin = login(&gs, "admin").await;
    let (s, doc) = admin.get("/api/openapi.json").await;
    assert_eq!(s, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 30);
    for (path, ops) in paths {
        let concrete = path
            .replace("{id}", &Uuid::now_v7().to_string())
            .replace("{case}", &Uuid::now_v7().to_string())
            .replace("{file}", "x.jpg")
            .replace("{route}", "governance")
            .replace("{name}", "nobody")
            .replace("{z}/{x}/{y}", "1/0/0");
        for method in ops.as_object().unwrap().keys() {
            let req = match method.as_str() {
                "get" => admin.c.get(format!("{}{concrete}", gs.base)),
                "post" => admin
                    .c
                    .post(format!("{}{concrete}", gs.base))
                    .header("x-csrf-token", &admin.csrf)
                    .body("{}"),
                m => panic!("unexpected method {m}"),
            };
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            // The router's own 404 has an empty body; handlers say what is missing.
            assert!(
                status != 405 && !(status == 404 && body.is_empty()),
                "{method} {path}: {status} {body}"
            );
        }
    }
}

#[tokio::test]
async fn retention_purges_old_snapshots_but_keeps_case_evidence() {
    let gs = start("").await;
    let kept = gs.store_alert(&alert_json(28.45, 117.94, "fire", 0));
    let gone = gs.store_alert(&alert_json(28.45, 117.94, "smoke", 0));
    let desk = gs.state.desk.clone();
    {
        let mut st = gs.state.store.lock().unwrap();
        desk.confirm(&mut st, kept, "op1", now_ms()).unwrap();
        st.with_tx(|tx| {
            tx.execute(
                "INSERT INTO telemetry (drone_id, t_unix_ms, lat_deg, lon_deg, alt_m, json) VALUES ('sr-01', 1, 0, 0, 0, '{}')",
                [],
            )?;
            Ok(())
        })
        .unwrap();
        let p = st
            .purge(Some(now_ms() + 1), Some(now_ms() - 86_400_000), now_ms())
            .unwrap();
        assert_eq!((p.snapshots, p.telemetry), (1, 1));
        assert!(st.snapshot(kept).unwrap().is_some());
        assert!(st.snapshot(gone).unwrap().is_none());
        assert!(
            st.alert(gone).unwrap().is_some(),
            "the alert itself is kept"
        );
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// The dead-letter view with retry, through the real dispatch driver and a
/// real HTTP receiver: the receiver refuses the first delivery with 422 (a
/// permanent error: dead-lettered at once, not retried), the operator sees
/// it under `/api/dispatch/outbox?state=dead`, fixes the receiver, presses
/// retry, and the case is delivered, validly signed and with its
/// idempotency key. `/metrics` counts all of it in Prometheus text format.
#[tokio::test]
async fn dead_letter_view_retry_and_metrics() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let refuse = Arc::new(AtomicBool::new(true));
    let seen: Arc<Mutex<Vec<(u16, String, bool)>>> = Arc::default();
    let (r2, s2) = (refuse.clone(), seen.clone());
    let receiver = axum::Router::new().route(
        "/cases",
        axum::routing::post(move |h: axum::http::HeaderMap, body: bytes::Bytes| {
            let (refuse, seen) = (r2.clone(), s2.clone());
            async move {
                let sig_ok = sign::verify(
                    SECRET.as_bytes(),
                    h.get(sign::SIGNATURE_HEADER).and_then(|v| v.to_str().ok()),
                    &body,
                    now_ms() / 1000,
                    300,
                )
                .is_ok();
                let key = h
                    .get(sign::IDEMPOTENCY_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let status = if refuse.load(Ordering::SeqCst) {
                    422
                } else {
                    201
                };
                seen.lock().unwrap().push((status, key, sig_ok));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rurl = format!("http://{}/cases", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, receiver).await.unwrap() });
    // `start`'s default route goes to port 9; gatherings go to "hotline" here.
    let gs = start(&format!(
        "[[dispatch.routes]]\nname = \"hotline\"\nurl = \"{rurl}\"\nsecret = \"{SECRET}\"\n\
         categories = [\"gathering\"]\n\
         [dispatch.retry]\ninitial_backoff_ms = 50\nmax_backoff_ms = 200\n"
    ))
    .await;
    tiancha_ground_station::spawn_dispatcher(&gs.state);
    let op = login(&gs, "op1").await;
    let a = gs.store_alert(&alert_json(28.45, 117.94, "gathering", 9));
    let (s, v) = op
        .post(&format!("/api/alerts/{a}/confirm"), serde_json::json!({}))
        .await;
    assert_eq!(s, 201, "{v}");
    let case_id = v["case_id"].as_str().unwrap().to_string();
    let until = |what: &'static str, state: &'static str| {
        let (op, id) = (&op, case_id.clone());
        async move {
            for _ in 0..200 {
                let (_, t) = op.get(&format!("/api/dispatch/outbox?state={state}")).await;
                let rows: serde_json::Value = serde_json::from_str(&t).unwrap();
                if let Some(r) = rows
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["case_id"] == id.as_str())
                {
                    return r.clone();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("timed out waiting for {what}");
        }
    };
    let dead = until("the dead letter", "dead").await;
    assert_eq!(dead["route"], "hotline");
    assert!(
        dead["last_error"].as_str().unwrap().contains("permanent"),
        "{dead}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.lock().unwrap().len(), 1, "a 422 is not retried");
    // The dispute centre may not press retry; an operator may.
    let centre = login(&gs, "centre1").await;
    assert_eq!(
        centre
            .post(
                &format!("/api/dispatch/outbox/{case_id}/retry"),
                serde_json::json!({})
            )
            .await
            .0,
        403
    );
    refuse.store(false, Ordering::SeqCst);
    let (s, v) = op
        .post(
            &format!("/api/dispatch/outbox/{case_id}/retry"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let done = until("the delivery after retry", "delivered").await;
    assert_eq!(done["attempts"], 1, "{done}");
    // Retrying what is not dead is a conflict.
    assert_eq!(
        op.post(
            &format!("/api/dispatch/outbox/{case_id}/retry"),
            serde_json::json!({})
        )
        .await
        .0,
        409
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter().all(|(_, key, ok)| *ok && key == &case_id),
        "{seen:?}"
    );
    let (_, case) = op.get(&format!("/api/cases/{case_id}")).await;
    let case: serde_json::Value = serde_json::from_str(&case).unwrap();
    assert_eq!(case["case"]["status"], "dispatched");
    // Prometheus text: every sample line is `name{labels} value`.
    let (s, m) = op.get("/metrics").await;
    assert_eq!(s, 200);
    let value = |name: &str| -> f64 {
        m.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{m}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("tiancha_dispatch_attempts_total"), 2.0);
    assert_eq!(value("tiancha_dispatch_delivered_total"), 1.0);
    assert_eq!(value("tiancha_dispatch_dead_letters_total"), 1.0);
    assert_eq!(value("tiancha_outbox_entries{state=\"delivered\"}"), 1.0);
    for l in m.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let mut it = l.split_whitespace();
        let (name, v) = (it.next().unwrap(), it.next().unwrap());
        assert!(v.parse::<f64>().is_ok() && it.next().is_none(), "{l}");
        assert!(name.starts_with("tiancha_"), "{l}");
    }
}

/// Offline map tiles from an MBTiles file: XYZ requests are flipped to the
/// file's TMS rows, the format comes from its metadata, a missing tile is
/// a 404 with a reason, and coordinates outside the zoom level are refused.
#[tokio::test]
async fn mbtiles_tiles_are_served_offline() {
    let dir = tempfile::tempdir().unwrap();
    let mb = dir.path().join("town.mbtiles");
    {
        let c = rusqlite::Connection::open(&mb).unwrap();
        c.execute_batch(
            "CREATE TABLE metadata (name TEXT, value TEXT);
             CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB);
             INSERT INTO metadata VALUES ('format', 'jpg');",
        )
        .unwrap();
        // z=2, x=3, XYZ y=0 is TMS row 3.
        c.execute(
            "INSERT INTO tiles VALUES (2, 3, 3, ?1)",
            [&[0xFFu8, 0xD8, 0xFF, 0xDB][..]],
        )
        .unwrap();
    }
    let gs = start(&format!("[map.tiles]\nmbtiles = \"{}\"\n", mb.display())).await;
    let op = login(&gs, "op1").await;
    let r =
        op.c.get(format!("{}/tiles/2/3/0.jpg", gs.base))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &[0xFF, 0xD8, 0xFF, 0xDB]);
    let (s, t) = op.get("/tiles/2/3/3").await;
    assert_eq!((s, t.contains("no such tile")), (404, true), "{t}");
    assert_eq!(op.get("/tiles/2/4/0").await.0, 400);
    assert_eq!(op.get("/tiles/40/0/0").await.0, 400);
    // Tiles need a session like the rest of the map.
    let r = reqwest::get(format!("{}/tiles/2/3/0", gs.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (_, map) = op.get("/api/map").await;
    assert!(
        map.contains("/tiles/"),
        "the UI is told to use the local tiles: {map}"
    );
}
