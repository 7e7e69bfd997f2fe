//! Alert clips become case evidence, end to end in process: a test camera
//! (x264 → RTSP, like the simulator's), the real ground station (router,
//! video hub with a ring buffer, clip recorder, case desk, dispatch
//! outbox) with a SQLite store on disk, and the real dispute receiver
//! (`tiancha dispute-receiver`'s server) on real sockets.
//!
//! Two alerts of a recording drone:
//! 1. confirmed at once, so its case is sent before the clip exists; when
//!    the clip is done the case goes out again as revision 1
//!    (`Idempotency-Key: {case}.rev1`) carrying the clip;
//! 2. confirmed after its clip is recorded, so the first delivery carries it.
//!
//! For each: the case record (`GET /api/cases/{id}`) has a clip covering
//! [t − pre, t + post]; the MP4 the dispute centre fetches through its
//! evidence link decodes (gst-discoverer, then every frame through
//! avdec_h264), and its SHA-256 equals the case record's and the one in
//! the evidence the receiver got.

mod video_camera;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest;
use tiancha_ground_station::auth::{hash_password, new_token, token_hash, Role};
use tiancha_ground_station::ingest::Notice;
use tiancha_ground_station::receiver::{self, ReceiverConfig};
use tiancha_ground_station::store::Record;
use tiancha_ground_station::{build_state, http, spawn_dispatcher, video, Config};
use uuid::Uuid;
use video_camera::{TestCamera, FPS};

const PW: &str = "clip evidence test password";
const DRONE: &str = "cam-1";
const SECRET: &str = "clip-route-secret-0123456789";
const PRE_S: f64 = 2.0;
const POST_S: f64 = 2.0;

fn now_ms() -> i64 {
    tiancha_protocol::unix_ms(std::time::SystemTime::now())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Gs {
    base: String,
    receiver: String,
    state: http::AppState,
    notices: tokio::sync::broadcast::Sender<Notice>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    _cam: TestCamera,
}

async fn start() -> Gs {
    let cam = TestCamera::start();
    let dir = tempfile::tempdir().unwrap();
    // The dispute centre: the real receiver.
    let rport = free_port();
    let receiver = format!("http://127.0.0.1:{rport}");
    tokio::spawn(receiver::run(ReceiverConfig {
        listen: format!("127.0.0.1:{rport}").parse().unwrap(),
        data_dir: dir.path().join("receiver"),
        secrets: HashMap::from([("governance".to_string(), SECRET.as_bytes().to_vec())]),
        callback_base: None,
        faults: vec![],
        auto_callbacks: vec![],
        auto_callback_delay: Duration::from_millis(100),
        tolerance_s: 300,
    }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let text = format!(
        "data_dir = \"{}\"\n[http]\npublic_url = \"http://127.0.0.1:{port}/\"\n[broker]\nembedded = false\n\
         [[dispatch.routes]]\nname = \"governance\"\nurl = \"{receiver}/governance/cases\"\nsecret = \"{SECRET}\"\ndefault = true\n\
         [dispatch.retry]\ninitial_backoff_ms = 200\nmax_backoff_ms = 1000\n\
         [video]\npre_alert_s = {PRE_S}\npost_alert_s = {POST_S}\n[video.drones.\"{DRONE}\"]\nurl = \"{}\"\nrecord = true\n",
        dir.path().join("data").display(),
        cam.url
    );
    let cfg = Config::parse(&text, Path::new("test.toml")).unwrap();
    let mut store = tiancha_ground_station::open_store(&cfg).unwrap();
    for (name, role) in [("op1", Role::Operator), ("centre1", Role::DisputeCentre)] {
        store
            .put_user(name, role, &hash_password(PW).unwrap(), now_ms())
            .unwrap();
    }
    let state = tokio::task::spawn_blocking(move || build_state(cfg, store, None))
        .await
        .unwrap()
        .unwrap();
    let (notices, _) = tokio::sync::broadcast::channel(64);
    tokio::spawn(video::clip::run_recorder(
        state.video.clone(),
        state.clone(),
        notices.subscribe(),
    ));
    spawn_dispatcher(&state);
    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    Gs {
        base: format!("http://127.0.0.1:{port}"),
        receiver,
        state,
        notices,
        dir,
        http: reqwest::Client::new(),
        _cam: cam,
    }
}

impl Gs {
    fn token(&self, user: &str) -> String {
        let tok = new_token();
        self.state
            .store
            .lock()
            .unwrap()
            .create_api_token(&token_hash(&tok), "clip test", user, now_ms())
            .unwrap();
        tok
    }

    /// An alert from the drone, now, stored and announced as ingest does.
    fn alert(&self, lat: f64) -> (Uuid, i64) {
        let t = now_ms();
        let id = Uuid::now_v7();
        let alert = serde_json::json!({
            "schema": 1, "alert_id": id, "drone_id": DRONE, "category": "gathering",
            "confidence": 0.9, "t_first_unix_ms": t - 60_000, "t_unix_ms": t,
            "location_status": "geotagged",
            "location": {"lat_deg": lat, "lon_deg": 117.94, "sigma": {"semi_major_m": 4.0, "semi_minor_m": 2.0, "orientation_deg": 30.0}},
            "person_count": 9, "tracks": [], "rule": {"name": "gathering", "detail": "9 people within 15 m for 120 s"},
            "snapshot": {"width": 8, "height": 8, "jpeg": "/9j/4AAQSkZJRg=="}
        });
        let rec = tiancha_ground_station::ingest::classify(
            &format!("tiancha/v1/drones/{DRONE}/alerts"),
            alert.to_string().as_bytes(),
        );
        let Record::Alert(a) = &rec else {
            panic!("{rec:?}")
        };
        let a = a.clone();
        self.state
            .store
            .lock()
            .unwrap()
            .ingest_batch(&[rec], now_ms())
            .unwrap();
        self.notices.send(Notice::NewAlert(a)).unwrap();
        (id, t)
    }

    async fn confirm(&self, op: &str, alert: Uuid) -> String {
        let r = self
            .http
            .post(format!("{}/api/alerts/{alert}/confirm", self.base))
            .bearer_auth(op)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["case_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn get(&self, url: String, token: Option<&str>) -> Value {
        let mut r = self.http.get(url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// The case as the receiver holds it (newest revision), once it has
    /// a clip among its evidence.
    async fn received_with_clip(&self, case: &str) -> Value {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let cases = self.get(format!("{}/cases", self.receiver), None).await;
            if let Some(c) = cases.as_array().unwrap().iter().find(|c| {
                c["case"]["case_id"] == case
                    && c["case"]["evidence"]
                        .as_array()
                        .is_some_and(|e| e.iter().any(|e| e["kind"] == "clip"))
            }) {
                return c.clone();
            }
            assert!(
                Instant::now() < until,
                "the receiver never got case {case} with a clip: {cases}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Check one case end to end; returns (seconds, frames, decoded,
    /// sha256). `clip_after_case`: the clip was recorded into a case that
    /// already existed (its timeline says so).
    async fn check(
        &self,
        centre: &str,
        case: &str,
        alert: Uuid,
        t: i64,
        clip_after_case: bool,
    ) -> (f64, u64, usize, String) {
        // The dispute centre's copy: the clip in the evidence, by link.
        let got = self.received_with_clip(case).await;
        let ev = got["case"]["evidence"].as_array().unwrap();
        let clip_ev = ev.iter().find(|e| e["kind"] == "clip").unwrap();
        assert_eq!(clip_ev["mime"], "video/mp4");
        assert_eq!(clip_ev["alert_id"], alert.to_string());
        assert!(
            ev.iter().any(|e| e["kind"] == "snapshot"),
            "the snapshot stays evidence: {got}"
        );
        let url = clip_ev["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/evidence/{case}/{alert}.mp4?", self.base)),
            "an absolute signed link on the public URL, not inline: {url}"
        );
        let r = self.http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200, "the evidence link opens without a session");
        let header = r.headers()["x-content-sha256"]
            .to_str()
            .unwrap()
            .to_string();
        let bytes = r.bytes().await.unwrap().to_vec();
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        assert_eq!(
            clip_ev["sha256"],
            sha.as_str(),
            "the receiver's hash is the file's"
        );
        assert_eq!(header, sha);
        // A snapshot link's signature does not open the clip.
        let jpg_sig = ev.iter().find(|e| e["kind"] == "snapshot").unwrap()["url"]
            .as_str()
            .unwrap()
            .split_once('?')
            .unwrap()
            .1
            .to_string();
        let r = self
            .http
            .get(format!(
                "{}/evidence/{case}/{alert}.mp4?{jpg_sig}",
                self.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);

        // The case record in the store carries it with the same hash.
        let v = self
            .get(format!("{}/api/cases/{case}", self.base), Some(centre))
            .await;
        let clips = v["clips"].as_array().expect("clips in the case record");
        assert_eq!(clips.len(), 1, "{v}");
        let c = &clips[0];
        assert_eq!(c["sha256"], sha.as_str());
        assert_eq!(c["bytes"], bytes.len() as u64);
        assert_eq!(c["alert_id"], alert.to_string());
        assert_eq!(c["url"], format!("/api/alerts/{alert}/clip.mp4"));
        let (w0, w1) = (t - (PRE_S * 1000.0) as i64, t + (POST_S * 1000.0) as i64);
        assert_eq!(
            (
                c["window_start_unix_ms"].as_i64(),
                c["window_end_unix_ms"].as_i64()
            ),
            (Some(w0), Some(w1)),
            "the configured window"
        );
        let (start, end) = (
            c["start_unix_ms"].as_i64().unwrap(),
            c["end_unix_ms"].as_i64().unwrap(),
        );
        assert!(start <= w0, "clip starts {} ms into the window", start - w0);
        assert!(
            end >= w1 - 250,
            "clip ends {} ms before the window does",
            w1 - end
        );
        let r = self
            .http
            .get(format!("{}/api/alerts/{alert}/clip.mp4", self.base))
            .bearer_auth(centre)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);
        let timeline = v["timeline"].as_array().unwrap();
        assert_eq!(
            timeline.iter().any(|e| e["kind"] == "evidence"
                && e["note"].as_str().unwrap_or("").contains(&sha)),
            clip_after_case,
            "the timeline says when a clip joined the case later: {v}"
        );

        // Playable: the discoverer's duration, then a full decode.
        let path = self.dir.path().join(format!("{alert}.mp4"));
        std::fs::write(&path, &bytes).unwrap();
        let out = Command::new("gst-discoverer-1.0")
            .arg(&path)
            .output()
            .expect("gst-discoverer-1.0 (gstreamer1.0-plugins-base-apps) is needed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("H.264"), "{text}");
        let dur = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Duration: "))
            .unwrap_or_else(|| panic!("no duration in {text}"));
        let p: Vec<f64> = dur.split(':').map(|x| x.parse().unwrap()).collect();
        let secs = p[0] * 3600.0 + p[1] * 60.0 + p[2];
        let want = PRE_S + POST_S;
        assert!(
            secs >= want - 0.3 && secs <= want + 2.0,
            "clip lasts {secs} s; the window is {want} s"
        );
        let out = Command::new("gst-launch-1.0")
            .arg("filesrc")
            .arg(format!("location={}", path.display()))
            .args(["!", "qtdemux", "!", "h264parse", "!", "avdec_h264", "!"])
            .args(["fakesink", "silent=false", "-v"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let decoded = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("chain"))
            .count();
        let frames = c["frames"].as_u64().unwrap();
        assert!(
            decoded as u64 + 1 >= frames && decoded as f64 >= want * FPS as f64 * 0.8,
            "decoded {decoded} of {frames} frames"
        );
        (secs, frames, decoded, sha)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_clips_reach_the_case_record_and_the_dispute_centre_with_their_hash() {
    let gs = start().await;
    let op = gs.token("op1");
    let centre = gs.token("centre1");
    let d = gs.state.video.drone(DRONE).unwrap().clone();
    wait_for("the ring fills", Duration::from_secs(60), || {
        let r = d.ring.as_ref().unwrap().lock().unwrap();
        r.oldest_ms()
            .filter(|o| now_ms() - o > ((PRE_S + 1.0) * 1000.0) as i64)
    })
    .await;

    // 1. The case is sent before its clip exists, then again with it.
    let (a1, t1) = gs.alert(28.45);
    let case1 = gs.confirm(&op, a1).await;
    let (secs, frames, decoded, sha) = gs.check(&centre, &case1, a1, t1, true).await;
    println!(
        "sent first, clip later: clip {secs:.2} s for a {} s window, {frames} frames, {decoded} decoded, sha256 {sha}",
        PRE_S + POST_S
    );
    let requests = gs.get(format!("{}/requests", gs.receiver), None).await;
    let outcomes: Vec<(String, String)> = requests
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["idempotency_key"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        outcomes.contains(&(case1.clone(), "created".into()))
            && outcomes.contains(&(format!("{case1}.rev1"), "created".into())),
        "the case, then its update under its own key: {outcomes:?}"
    );
    let got = gs.received_with_clip(&case1).await;
    assert_eq!(
        (got["revision"].as_i64(), got["revisions"].as_i64()),
        (Some(1), Some(2))
    );
    let delivery = wait_for("revision 1 delivered", Duration::from_secs(10), || {
        let rows = gs
            .state
            .store
            .lock()
            .unwrap()
            .outbox_rows(None, 100)
            .unwrap();
        rows.into_iter()
            .find(|r| r.case_id.to_string() == case1 && r.state == "delivered" && r.revision == 1)
    })
    .await;
    assert_eq!(delivery.revision, 1);

    // 2. Confirmed after the clip is recorded: the first delivery has it.
    let (a2, t2) = gs.alert(28.60);
    wait_for("the second clip", Duration::from_secs(30), || {
        gs.state.store.lock().unwrap().clip(a2).unwrap()
    })
    .await;
    let case2 = gs.confirm(&op, a2).await;
    assert_ne!(case1, case2, "far apart: two cases");
    let (secs, frames, decoded, sha) = gs.check(&centre, &case2, a2, t2, false).await;
    println!(
        "clip first, case later: clip {secs:.2} s, {frames} frames, {decoded} decoded, sha256 {sha}"
    );
    let got = gs.received_with_clip(&case2).await;
    assert_eq!(
        (got["idempotency_key"].as_str(), got["revisions"].as_i64()),
        (Some(case2.as_str()), Some(1)),
        "one delivery, already with the clip"
    );
}
