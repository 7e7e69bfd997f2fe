//! The authorisation matrix: every route the router serves × every kind
//! of caller (anonymous, operator, dispute centre, admin, an operator's API
//! token), real HTTP against a real ground station on a temporary SQLite
//! store with the embedded MQTT broker, so commands are really published
//! (and checked to carry the station's signature).
//!
//! The route list is read from the router's source
//! (`src/http/mod.rs`): a route added there without a row here fails
//! [`the_matrix_covers_every_route`]. Also here: CSRF and cross-site
//! checks on every state-changing route, and session life (a new id per
//! login, logout and disabling end sessions, disabling ends API tokens).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tiancha_ground_station::auth::{hash_password, new_token, token_hash, Role};
use tiancha_ground_station::store::Record;
use tiancha_ground_station::{build_state, http, Config};
use tiancha_protocol::command_auth::TrustedKeys;
use tiancha_protocol::{self as proto, Command};
use uuid::Uuid;

const PW: &str = "a long password";
const ROUTER_SRC: &str = include_str!("../src/http/mod.rs");

fn now_ms() -> i64 {
    proto::unix_ms(std::time::SystemTime::now())
}

/// (method, path) of every `.route(...)` in the router source.
fn routes_in_router() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut rest = ROUTER_SRC;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        // The call runs to its matching parenthesis.
        let mut depth = 1;
        let mut end = 0;
        for (j, ch) in rest.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let call = &rest[..end];
        let q1 = call.find('"').expect("a route path literal");
        let q2 = q1 + 1 + call[q1 + 1..].find('"').unwrap();
        let path = call[q1 + 1..q2].to_string();
        let handlers = &call[q2 + 1..];
        for m in ["get", "post", "put", "patch", "delete"] {
            let n = handlers
                .match_indices(&format!("{m}("))
                .filter(|(k, _)| {
                    let before = handlers[..*k].chars().last().unwrap_or(' ');
                    !before.is_alphanumeric() && before != '_'
                })
                .count();
            if n > 0 {
                out.insert((m.to_string(), path.clone()));
            }
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Anon,
    Operator,
    Centre,
    Admin,
    Token,
}
const WHO: [Who; 5] = [
    Who::Anon,
    Who::Operator,
    Who::Centre,
    Who::Admin,
    Who::Token,
];

/// One row: the route as the router names it, the request to make (path
/// placeholders: `{alert}` a fresh geotagged alert, `{case}` an existing
/// case, `{alert_of_case}` its alert), the body, and the expected status
/// for anonymous, operator, dispute centre, admin, operator's API token.
struct Row {
    method: &'static str,
    route: &'static str,
    request: &'static str,
    body: &'static str,
    expect: [u16; 5],
}

const fn row(
    method: &'static str,
    route: &'static str,
    request: &'static str,
    body: &'static str,
    expect: [u16; 5],
) -> Row {
    Row {
        method,
        route,
        request,
        body,
        expect,
    }
}

// 401: not logged in. 403: role may not. 2xx: done. 4xx with a body the
// handler refuses (422 bad body, 404 no such thing, 409 wrong state) means
// the caller got past authorisation.
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //    method  route                                   request                                        body                                                     anon  op   dc   admin token
    row("get",  "/",                                      "/",                                           "", [200, 200, 200, 200, 200]),
    row("get",  "/ui/{*path}",                            "/ui/app.js",                                  "", [200, 200, 200, 200, 200]),
    row("get",  "/api/health",                            "/api/health",                                 "", [200, 200, 200, 200, 200]),
    row("get",  "/api/openapi.json",                      "/api/openapi.json",                           "", [200, 200, 200, 200, 200]),
    row("get",  "/metrics",                               "/metrics",                                    "", [200, 200, 200, 200, 200]),
    row("post", "/api/login",                             "/api/login",                                  r#"{"name":"op1"}"#, [422, 422, 422, 422, 422]),
    row("post", "/api/logout",                            "/api/logout",                                 "", [401, 200, 200, 200, 200]),
    row("get",  "/api/session",                           "/api/session",                                "", [401, 200, 200, 200, 401]),
    row("get",  "/api/map",                               "/api/map",                                    "", [401, 200, 200, 200, 200]),
    row("get",  "/tiles/{z}/{x}/{y}",                     "/tiles/1/0/0",                                "", [401, 404, 404, 404, 404]),
    row("get",  "/api/drones",                            "/api/drones",                                 "", [401, 200, 200, 200, 200]),
    row("get",  "/api/drones/{id}/track",                 "/api/drones/sr-01/track",                     "", [401, 200, 200, 200, 200]),
    row("post", "/api/drones/{id}/commands",              "/api/drones/sr-01/commands",                  r#"{"command":"pause"}"#, [401, 201, 403, 201, 201]),
    row("get",  "/api/drones/{id}/commands",              "/api/drones/sr-01/commands",                  "", [401, 200, 200, 200, 200]),
    row("get",  "/api/commands",                          "/api/commands",                               "", [401, 200, 200, 200, 200]),
    row("post", "/api/missions/preview",                  "/api/missions/preview",                       r#"{"patrol":{}}"#, [401, 422, 403, 422, 422]),
    row("get",  "/api/alerts",                            "/api/alerts",                                 "", [401, 200, 200, 200, 200]),
    row("get",  "/api/alerts/{id}",                       "/api/alerts/{alert}",                         "", [401, 200, 200, 200, 200]),
    row("get",  "/api/alerts/{id}/snapshot.jpg",          "/api/alerts/{alert}/snapshot.jpg",            "", [401, 200, 200, 200, 200]),
    row("post", "/api/alerts/{id}/confirm",               "/api/alerts/{alert}/confirm",                 "", [401, 201, 403, 201, 201]),
    row("post", "/api/alerts/{id}/dismiss",               "/api/alerts/{alert}/dismiss",                 r#"{"reason":"a kite festival"}"#, [401, 200, 403, 200, 200]),
    row("post", "/api/alerts/{id}/merge",                 "/api/alerts/{alert}/merge",                   r#"{"case_id":"{case}"}"#, [401, 200, 403, 200, 200]),
    row("post", "/api/alerts/{id}/investigate",           "/api/alerts/{alert}/investigate",             "", [401, 201, 403, 201, 201]),
    row("get",  "/api/cases",                             "/api/cases",                                  "", [401, 200, 200, 200, 200]),
    row("get",  "/api/cases/{id}",                        "/api/cases/{case}",                           "", [401, 200, 200, 200, 200]),
    row("get",  "/api/cases/{id}/cap.xml",                "/api/cases/{case}/cap.xml",                   "", [401, 200, 200, 200, 200]),
    row("post", "/api/cases/{id}/notes",                  "/api/cases/{case}/notes",                     r#"{"note":"called the village head"}"#, [401, 200, 200, 200, 200]),
    row("get",  "/api/dispatch/outbox",                   "/api/dispatch/outbox",                        "", [401, 200, 403, 200, 200]),
    row("post", "/api/dispatch/outbox/{id}/retry",        "/api/dispatch/outbox/{case}/retry",           "", [401, 409, 403, 409, 409]),
    row("post", "/api/callbacks/{route}",                 "/api/callbacks/governance",                   r#"{"case_id":"{case}","status":"received"}"#, [401, 401, 401, 401, 401]),
    row("get",  "/evidence/{case}/{file}",                "/evidence/{case}/{alert_of_case}.jpg",        "", [401, 401, 401, 401, 401]),
    row("get",  "/api/quarantine",                        "/api/quarantine",                             "", [401, 200, 403, 200, 200]),
    row("get",  "/api/admin/users",                       "/api/admin/users",                            "", [401, 403, 403, 200, 403]),
    row("post", "/api/admin/users",                       "/api/admin/users",                            r#"{"name":"newcomer","role":"operator","password":"another long password"}"#, [401, 403, 403, 201, 403]),
    row("post", "/api/admin/users/{name}/disable",        "/api/admin/users/spare/disable",              "", [401, 403, 403, 200, 403]),
    row("post", "/api/admin/tokens",                      "/api/admin/tokens",                           r#"{"user":"op1","label":"wall display"}"#, [401, 403, 403, 201, 403]),
    row("get",  "/api/admin/audit",                       "/api/admin/audit",                            "", [401, 403, 403, 200, 403]),
    // A plain GET (no WebSocket upgrade) gets past authentication, then
    // 400 "Connection header did not include 'upgrade'".
    row("get",  "/api/live",                              "/api/live",                                   "", [401, 400, 400, 400, 400]),
    // Live video: operators and admins watch; the dispute centre sees
    // clips (case evidence) but not live video. No drone has video in
    // this station's config, so watching gets past authorisation to 404.
    row("get",  "/api/video",                             "/api/video",                                  "", [401, 200, 403, 200, 200]),
    row("get",  "/api/drones/{id}/video.mjpeg",           "/api/drones/sr-01/video.mjpeg",               "", [401, 404, 403, 404, 404]),
    row("get",  "/api/drones/{id}/video/webrtc",          "/api/drones/sr-01/video/webrtc",              "", [401, 404, 403, 404, 404]),
    row("get",  "/api/alerts/{id}/clip.mp4",              "/api/alerts/{alert}/clip.mp4",                "", [401, 404, 404, 404, 404]),
];

struct Gs {
    base: String,
    state: http::AppState,
    published: Arc<Mutex<Vec<Vec<u8>>>>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start() -> Gs {
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
    let mqtt = free_port();
    let text = format!(
        "data_dir = \"{}\"\n[mqtt]\nport = {mqtt}\n[broker]\nlisten = \"127.0.0.1:{mqtt}\"\n[map]\ngrid = \"{}\"\n\
         [[dispatch.routes]]\nname = \"governance\"\nurl = \"http://127.0.0.1:9/cases\"\nsecret = \"route-secret-0123456789\"\ndefault = true\n",
        dir.path().join("data").display(),
        grid.display()
    );
    let cfg = Config::parse(&text, std::path::Path::new("test.toml")).unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{mqtt}").parse().unwrap();
    tokio::task::spawn_blocking(move || tiancha_ground_station::broker::start_embedded(listen))
        .await
        .unwrap()
        .unwrap();
    // Whatever the station publishes on any drone's command topic.
    let published = Arc::new(Mutex::new(vec![]));
    let (sub, mut sub_loop) = rumqttc::AsyncClient::new(
        rumqttc::MqttOptions::new("matrix-listener", "127.0.0.1", mqtt),
        100,
    );
    sub.subscribe("tiancha/v1/drones/+/commands", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    {
        let published = published.clone();
        let mut subscribed_tx = Some(subscribed_tx);
        tokio::spawn(async move {
            let _keep = sub;
            loop {
                match sub_loop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        if let Some(t) = subscribed_tx.take() {
                            let _ = t.send(());
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        published.lock().unwrap().push(p.payload.to_vec())
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("listener subscribed")
        .unwrap();
    let (client, mut el) = tiancha_ground_station::ingest::client(&cfg.mqtt, "matrix-gs");
    tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let mut store = tiancha_ground_station::open_store(&cfg).unwrap();
    for (name, role) in [
        ("op1", Role::Operator),
        ("centre1", Role::DisputeCentre),
        ("admin", Role::Admin),
        ("spare", Role::Operator),
    ] {
        store
            .put_user(name, role, &hash_password(PW).unwrap(), now_ms())
            .unwrap();
    }
    let state = build_state(cfg, store, Some(client)).unwrap();
    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    Gs {
        base,
        state,
        published,
        _dir: dir,
    }
}

impl Gs {
    fn store_alert(&self) -> Uuid {
        let t = now_ms();
        let id = Uuid::now_v7();
        let a = serde_json::json!({
            "schema": 1, "alert_id": id, "drone_id": "sr-01", "category": "gathering",
            "confidence": 0.9, "t_first_unix_ms": t - 60_000, "t_unix_ms": t,
            "location_status": "geotagged",
            "location": {"lat_deg": 28.45, "lon_deg": 117.94, "sigma": {"semi_major_m": 4.0, "semi_minor_m": 2.0, "orientation_deg": 30.0}},
            "person_count": 9, "tracks": [], "rule": {"name": "gathering", "detail": "9 people within 15 m for 120 s"},
            "snapshot": {"width": 8, "height": 8, "jpeg": "/9j/4AAQSkZJRg=="}
        });
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

    fn token_for(&self, user: &str) -> String {
        let tok = new_token();
        self.state
            .store
            .lock()
            .unwrap()
            .create_api_token(&token_hash(&tok), "matrix", user, now_ms())
            .unwrap();
        tok
    }
}

/// A caller: a session (cookie + CSRF token), an API token, or nobody.
#[derive(Clone)]
struct Caller {
    cookie: Option<String>,
    csrf: Option<String>,
    bearer: Option<String>,
}

async fn login(gs: &Gs, name: &str) -> Caller {
    let r = reqwest::Client::new()
        .post(format!("{}/api/login", gs.base))
        .json(&serde_json::json!({"name": name, "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "login {name}");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let v: serde_json::Value = r.json().await.unwrap();
    Caller {
        cookie: Some(cookie),
        csrf: Some(v["csrf"].as_str().unwrap().to_string()),
        bearer: None,
    }
}

async fn call(
    gs: &Gs,
    c: &Caller,
    method: &str,
    path: &str,
    body: &str,
    csrf: bool,
    origin: Option<&str>,
) -> (u16, String) {
    let url = format!("{}{path}", gs.base);
    let http = reqwest::Client::new();
    let mut req = match method {
        "get" => http.get(url),
        "post" => http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string()),
        m => panic!("no requests for method {m}"),
    };
    if let Some(k) = &c.cookie {
        req = req.header("cookie", k);
    }
    if let (true, Some(t)) = (csrf, &c.csrf) {
        req = req.header("x-csrf-token", t);
    }
    if let Some(b) = &c.bearer {
        req = req.bearer_auth(b);
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[test]
fn the_matrix_covers_every_route() {
    let routed = routes_in_router();
    assert!(routed.len() >= 38, "parsed only {routed:?}");
    let matrix: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|r| (r.method.to_string(), r.route.to_string()))
        .collect();
    assert_eq!(
        matrix.len(),
        MATRIX.len(),
        "a route appears twice in MATRIX"
    );
    let missing: Vec<_> = routed.difference(&matrix).collect();
    let stale: Vec<_> = matrix.difference(&routed).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "routes without a matrix row: {missing:?}; rows for routes that do not exist: {stale:?}"
    );
    // Every API route is also in the OpenAPI table (the UI assets are not API).
    let documented: BTreeSet<(String, String)> = http::openapi::ENDPOINTS
        .iter()
        .map(|e| (e.0.to_string(), e.1.to_string()))
        .collect();
    let undocumented: Vec<_> = routed
        .iter()
        .filter(|(_, p)| p != "/" && !p.starts_with("/ui/"))
        .filter(|r| !documented.contains(*r))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in the OpenAPI table: {undocumented:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_role_gets_the_expected_status() {
    let gs = start().await;
    // A case with an alert, for the case routes.
    let admin0 = login(&gs, "admin").await;
    let case_alert = gs.store_alert();
    let (s, v) = call(
        &gs,
        &admin0,
        "post",
        &format!("/api/alerts/{case_alert}/confirm"),
        "",
        true,
        None,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    let case = v["case_id"]
        .as_str()
        .expect("confirm names the case")
        .to_string();

    let mut failures = vec![];
    let mut table = String::new();
    for r in MATRIX {
        let mut got = [0u16; 5];
        for (i, who) in WHO.iter().enumerate() {
            // Fresh sessions each time: logout ends one, and a row must
            // not depend on another.
            let caller = match who {
                Who::Anon => Caller {
                    cookie: None,
                    csrf: None,
                    bearer: None,
                },
                Who::Operator => login(&gs, "op1").await,
                Who::Centre => login(&gs, "centre1").await,
                Who::Admin => login(&gs, "admin").await,
                Who::Token => Caller {
                    cookie: None,
                    csrf: None,
                    bearer: Some(gs.token_for("op1")),
                },
            };
            let path = r
                .request
                .replace("{alert}", &gs.store_alert().to_string())
                .replace("{case}", &case)
                .replace("{alert_of_case}", &case_alert.to_string());
            let body = r.body.replace("{case}", &case);
            let (status, text) = call(&gs, &caller, r.method, &path, &body, true, None).await;
            got[i] = status;
            if status != r.expect[i] {
                failures.push(format!(
                    "{} {} as {who:?}: expected {}, got {status}: {}",
                    r.method,
                    r.route,
                    r.expect[i],
                    text.chars().take(200).collect::<String>()
                ));
            }
        }
        table.push_str(&format!("{:5} {:40} {got:?}\n", r.method, r.route));
    }
    assert!(
        failures.is_empty(),
        "{} cells differ:\n{}\n\nactual matrix:\n{table}",
        failures.len(),
        failures.join("\n")
    );

    // Every command the API published carries the station's signature
    // and the caller's name; none from the dispute centre.
    let trusted = TrustedKeys::new(vec![gs.state.command_signer.public_key().clone()]);
    let published = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = gs.published.lock().unwrap().len();
            // pause × 3 roles and investigate × 3 roles.
            if n >= 6 {
                return gs.published.lock().unwrap().clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("six commands published");
    assert_eq!(published.len(), 6);
    for p in &published {
        let c: Command = proto::decode(p).unwrap();
        assert_eq!(
            trusted.verify(&c),
            Ok(gs.state.command_signer.key_id()),
            "{c:?}"
        );
        assert!(matches!(c.issued_by.as_str(), "op1" | "admin"), "{c:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_changing_route_needs_csrf_and_same_origin_with_a_session() {
    let gs = start().await;
    let admin = login(&gs, "admin").await;
    // Login and signed callbacks carry no ambient credential; all other
    // POSTs act for a session and need its CSRF token and a same-site
    // origin, whoever the user is (admin can do everything, so a 403
    // here is the CSRF check, not the role).
    let mut checked = 0;
    for r in MATRIX.iter().filter(|r| {
        r.method == "post" && !matches!(r.route, "/api/login" | "/api/callbacks/{route}")
    }) {
        let path = r
            .request
            .replace("{alert}", &gs.store_alert().to_string())
            .replace("{case}", &Uuid::now_v7().to_string());
        let (s, body) = call(&gs, &admin, "post", &path, r.body, false, None).await;
        assert_eq!(s, 403, "{}: no CSRF token: {body}", r.route);
        assert!(body.contains("X-CSRF-Token"), "{}: {body}", r.route);
        let (s, body) = call(
            &gs,
            &admin,
            "post",
            &path,
            r.body,
            true,
            Some("http://evil.example"),
        )
        .await;
        assert_eq!(s, 403, "{}: cross-site origin: {body}", r.route);
        assert!(body.contains("cross-site"), "{}: {body}", r.route);
        // A token from another session does not do either.
        let other = login(&gs, "op1").await;
        let forged = Caller {
            csrf: other.csrf.clone(),
            ..admin.clone()
        };
        let (s, _) = call(&gs, &forged, "post", &path, r.body, true, None).await;
        assert_eq!(s, 403, "{}: another session's CSRF token", r.route);
        checked += 1;
    }
    assert_eq!(
        checked,
        MATRIX.iter().filter(|r| r.method == "post").count() - 2
    );
    // The admin session still works (none of the refused requests did
    // anything to it).
    assert_eq!(
        call(&gs, &admin, "get", "/api/session", "", true, None)
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_new_per_login_and_end_on_logout_and_disable() {
    let gs = start().await;
    let a = login(&gs, "spare").await;
    let b = login(&gs, "spare").await;
    assert_ne!(a.cookie, b.cookie, "each login gets a fresh session id");
    assert_ne!(a.csrf, b.csrf);
    // A session id the server never issued is refused.
    let forged = Caller {
        cookie: Some(format!("tiancha_session={}", new_token())),
        csrf: a.csrf.clone(),
        bearer: None,
    };
    assert_eq!(
        call(&gs, &forged, "get", "/api/alerts", "", true, None)
            .await
            .0,
        401
    );
    // Logout ends that session only; its cookie replayed afterwards is refused.
    assert_eq!(
        call(&gs, &a, "post", "/api/logout", "", true, None).await.0,
        200
    );
    assert_eq!(
        call(&gs, &a, "get", "/api/alerts", "", true, None).await.0,
        401
    );
    assert_eq!(
        call(&gs, &b, "get", "/api/alerts", "", true, None).await.0,
        200
    );
    // Disabling the user ends its other sessions and its API tokens.
    let tok = Caller {
        cookie: None,
        csrf: None,
        bearer: Some(gs.token_for("spare")),
    };
    assert_eq!(
        call(&gs, &tok, "get", "/api/alerts", "", true, None)
            .await
            .0,
        200
    );
    let admin = login(&gs, "admin").await;
    assert_eq!(
        call(
            &gs,
            &admin,
            "post",
            "/api/admin/users/spare/disable",
            "",
            true,
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&gs, &b, "get", "/api/alerts", "", true, None).await.0,
        401
    );
    assert_eq!(
        call(&gs, &tok, "get", "/api/alerts", "", true, None)
            .await
            .0,
        401
    );
    // And the disabled user cannot log in again.
    let r = reqwest::Client::new()
        .post(format!("{}/api/login", gs.base))
        .json(&serde_json::json!({"name": "spare", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
