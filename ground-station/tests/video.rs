//! Live video end to end, in process: a test camera (frames with the
//! capture time burned in as `sim::camera::timestamp`'s block code,
//! x264 → RTP → an RTSP server, like the simulator's camera) and the real
//! ground station (router, video hub, clip recorder) on real sockets with
//! a SQLite store on disk. Browser checks run in headless Chromium
//! (`tests/ui/video.test.mjs`, `tests/ui/video-leak.mjs`).

mod video_camera;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::Digest;
use tiancha_ground_station::auth::{hash_password, new_token, token_hash, Role};
use tiancha_ground_station::ingest::Notice;
use tiancha_ground_station::store::Record;
use tiancha_ground_station::{build_state, http, video, Config};
use video_camera::{TestCamera, FPS};

const PW: &str = "video test password 1";
const DRONE: &str = "cam-1";

fn now_ms() -> i64 {
    tiancha_protocol::unix_ms(std::time::SystemTime::now())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Gs {
    base: String,
    state: http::AppState,
    notices: tokio::sync::broadcast::Sender<Notice>,
    dir: tempfile::TempDir,
    _cam: TestCamera,
}

async fn start(video_extra: &str, record: bool) -> Gs {
    let cam = TestCamera::start();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = \"{}\"\n[broker]\nembedded = false\n[video]\n{video_extra}\n[video.drones.\"{DRONE}\"]\nurl = \"{}\"\nrecord = {record}\n",
        dir.path().join("data").display(),
        cam.url
    );
    let cfg = Config::parse(&text, Path::new("test.toml")).unwrap();
    let mut store = tiancha_ground_station::open_store(&cfg).unwrap();
    for (name, role) in [
        ("op1", Role::Operator),
        ("centre1", Role::DisputeCentre),
        ("admin1", Role::Admin),
    ] {
        store
            .put_user(name, role, &hash_password(PW).unwrap(), now_ms())
            .unwrap();
    }
    let data_dir = cfg.data_dir.clone();
    let state = tokio::task::spawn_blocking(move || build_state(cfg, store, None))
        .await
        .unwrap()
        .unwrap();
    let (notices, _) = tokio::sync::broadcast::channel(64);
    tokio::spawn(video::clip::run_recorder(
        state.video.clone(),
        data_dir,
        notices.subscribe(),
    ));
    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://localhost:{}", l.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    Gs {
        base,
        state,
        notices,
        dir,
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
            .create_api_token(&token_hash(&tok), "video test", user, now_ms())
            .unwrap();
        tok
    }

    /// Run a script from tests/ui with node (playwright-core + Debian's
    /// chromium) off the async threads: (success, stdout, stderr).
    async fn node(&self, script: &str, env: Vec<(&'static str, String)>) -> (bool, String, String) {
        let ui = workspace().join("tests/ui");
        assert!(
            ui.join("node_modules/playwright-core").exists(),
            "tests/ui/node_modules is missing: run `scripts/dev setup` (npm ci in tests/ui)"
        );
        assert!(
            Path::new("/usr/bin/chromium").exists(),
            "Debian's chromium is not installed (scripts/dev setup)"
        );
        let base = self.base.clone();
        let script = ui.join(script);
        tokio::task::spawn_blocking(move || {
            let out = Command::new("node")
                .arg(&script)
                .current_dir(script.parent().unwrap())
                .env("GS_URL", base)
                .env("PASSWORD", PW)
                .env("DRONE_ID", DRONE)
                .env("GS_PID", std::process::id().to_string())
                .envs(env)
                .output()
                .expect("node is needed (scripts/dev setup installs nodejs)");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .await
        .unwrap()
    }

    fn audit(&self) -> Vec<(String, String, String, String)> {
        self.state
            .store
            .lock()
            .unwrap()
            .audit_log(1000)
            .unwrap()
            .into_iter()
            .map(|r| (r.actor, r.action, r.object, r.detail))
            .collect()
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_live_video_in_chromium_others_get_nothing() {
    let gs = start("", false).await;
    let shots = std::env::var("TIANCHA_SCREENSHOT_DIR")
        .map(|d| workspace().join(d))
        .unwrap_or_else(|_| gs.dir.path().join("shots"));
    std::fs::create_dir_all(&shots).unwrap();
    let (ok, stdout, stderr) = gs
        .node(
            "video.test.mjs",
            vec![("SCREENSHOT_DIR", shots.display().to_string())],
        )
        .await;
    println!("{stdout}");
    assert!(ok, "browser test failed:\n{stdout}\n{stderr}");
    assert!(
        std::fs::metadata(shots.join("video.png"))
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "video.png written"
    );
    // Both viewings started and stopped in the audit log; nothing for the
    // dispute centre.
    let rows = wait_for(
        "both viewings ended in the audit log",
        Duration::from_secs(15),
        || {
            let rows = gs.audit();
            let n = |action: &str, how: &str| {
                rows.iter()
                    .filter(|r| {
                        r.0 == "op1"
                            && r.1 == action
                            && r.2 == format!("drone:{DRONE}")
                            && r.3.starts_with(how)
                    })
                    .count()
            };
            (n("video_watch_start", "webrtc") >= 1
                && n("video_watch_stop", "webrtc") >= 1
                && n("video_watch_start", "mjpeg") >= 1
                && n("video_watch_stop", "mjpeg") >= 1)
                .then_some(rows)
        },
    )
    .await;
    assert!(
        !rows
            .iter()
            .any(|r| r.0 == "centre1" && r.1.starts_with("video_watch")),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_gets_a_clip_covering_its_window_with_its_hash_in_the_case() {
    const PRE_S: f64 = 2.0;
    const POST_S: f64 = 2.0;
    let gs = start(
        &format!("pre_alert_s = {PRE_S}\npost_alert_s = {POST_S}"),
        true,
    )
    .await;
    let d = gs.state.video.drone(DRONE).unwrap().clone();
    wait_for("the ring fills", Duration::from_secs(60), || {
        let r = d.ring.as_ref().unwrap().lock().unwrap();
        r.oldest_ms()
            .filter(|o| now_ms() - o > ((PRE_S + 1.0) * 1000.0) as i64)
    })
    .await;
    let t = now_ms();
    let id = uuid::Uuid::now_v7();
    let alert = serde_json::json!({
        "schema": 1, "alert_id": id, "drone_id": DRONE, "category": "gathering",
        "confidence": 0.9, "t_first_unix_ms": t - 60_000, "t_unix_ms": t,
        "location_status": "geotagged",
        "location": {"lat_deg": 28.45, "lon_deg": 117.94, "sigma": {"semi_major_m": 4.0, "semi_minor_m": 2.0, "orientation_deg": 30.0}},
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
    gs.state
        .store
        .lock()
        .unwrap()
        .ingest_batch(&[rec], now_ms())
        .unwrap();
    gs.notices.send(Notice::NewAlert(a)).unwrap();
    let op = gs.token("op1");
    let centre = gs.token("centre1");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/alerts/{id}/confirm", gs.base))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let case = r.json::<serde_json::Value>().await.unwrap()["case_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The clip, as the dispute centre fetches it.
    let until = Instant::now() + Duration::from_secs(30);
    let (bytes, header) = loop {
        let r = http
            .get(format!("{}/api/alerts/{id}/clip.mp4", gs.base))
            .bearer_auth(&centre)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let h = r.headers()["x-content-sha256"]
                .to_str()
                .unwrap()
                .to_string();
            break (r.bytes().await.unwrap().to_vec(), h);
        }
        assert_eq!(r.status(), 404);
        assert!(Instant::now() < until, "no clip");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    assert_eq!(header, sha);
    // Anonymous: nothing.
    let r = http
        .get(format!("{}/api/alerts/{id}/clip.mp4", gs.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The case record carries it with its hash.
    let v: serde_json::Value = http
        .get(format!("{}/api/cases/{case}", gs.base))
        .bearer_auth(&centre)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let clips = v["clips"].as_array().expect("clips in the case record");
    assert_eq!(clips.len(), 1, "{v}");
    let c = &clips[0];
    assert_eq!(c["sha256"], sha.as_str());
    assert_eq!(c["bytes"], bytes.len() as u64);
    let (start, end) = (
        c["start_unix_ms"].as_i64().unwrap(),
        c["end_unix_ms"].as_i64().unwrap(),
    );
    let (w0, w1) = (t - (PRE_S * 1000.0) as i64, t + (POST_S * 1000.0) as i64);
    assert!(start <= w0, "clip starts {} ms into the window", start - w0);
    assert!(
        end >= w1 - 250,
        "clip ends {} ms before the window does",
        w1 - end
    );

    // Playable: the discoverer's duration, then a full decode.
    let path = gs.dir.path().join("clip.mp4");
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
    let frames = c["frames"].as_u64().unwrap() as usize;
    assert!(
        decoded + 1 >= frames && decoded as f64 >= want * FPS as f64 * 0.8,
        "decoded {decoded} of {frames} frames"
    );
    println!(
        "clip {secs:.2} s for a {want} s window, {frames} frames, {decoded} decoded, sha256 {sha}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_viewers_come_and_go_without_leaking() {
    let gs = start("", false).await;
    let (ok, stdout, stderr) = gs.node("video-leak.mjs", vec![]).await;
    println!("{stdout}");
    assert!(ok, "leak run failed:\n{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("LEAK "))
        .expect("a LEAK line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let (b, a) = (&v["before"], &v["after"]);
    let n = |x: &serde_json::Value, k: &str| x[k].as_f64().unwrap_or(f64::NAN);
    assert_eq!(n(a, "viewers"), 0.0, "{v}");
    assert_eq!(n(a, "running"), 0.0, "the source stopped: {v}");
    assert_eq!(n(b, "elements"), 0.0, "{v}");
    assert_eq!(
        n(a, "elements"),
        0.0,
        "every viewer's elements are gone: {v}"
    );
    assert_eq!(video::live_elements(), 0);
    let grew_mb = (n(a, "rss_kb") - n(b, "rss_kb")) / 1024.0;
    // Generous: allocator high-water marks and GLib caches, not ~200
    // leaked pipelines (one leaked decoder alone holds several MB).
    assert!(grew_mb < 40.0, "RSS grew {grew_mb:.1} MB: {v}");
    assert!(
        n(a, "threads") <= n(b, "threads") + 4.0,
        "threads {} -> {}: {v}",
        n(b, "threads"),
        n(a, "threads")
    );
}
