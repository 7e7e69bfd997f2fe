//! Glass-to-glass latency of live video (a bench: prints, asserts
//! nothing). A test camera burns the capture time into each frame
//! (`sim::camera::timestamp`'s block code) and serves it over RTSP/H.264;
//! the real ground station (in this process) pulls it and serves it to
//! headless Chromium, where `tests/ui/bench-video.mjs` reads the time back
//! from each new frame's pixels and compares it with `Date.now()`, over
//! WebRTC and over MJPEG side by side.
//!
//!     cargo bench -p tiancha-ground-station --bench video_latency
//!     (env SAMPLES, ROUNDS as for bench-video.mjs)

#[path = "../tests/video_camera/mod.rs"]
mod video_camera;

use std::net::SocketAddr;
use std::path::Path;

use tiancha_ground_station::auth::{hash_password, Role};
use tiancha_ground_station::{build_state, http, Config};

const PW: &str = "bench password 123";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cam = video_camera::TestCamera::start();
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "data_dir = \"{}\"\n[broker]\nembedded = false\n[video.drones.\"cam-1\"]\nurl = \"{}\"\nrecord = false\n",
            dir.path().join("data").display(),
            cam.url
        );
        let cfg = Config::parse(&text, Path::new("bench.toml")).unwrap();
        let mut store = tiancha_ground_station::open_store(&cfg).unwrap();
        store
            .put_user(
                "op1",
                Role::Operator,
                &hash_password(PW).unwrap(),
                tiancha_protocol::unix_ms(std::time::SystemTime::now()),
            )
            .unwrap();
        let state = build_state(cfg, store, None).unwrap();
        let app = http::router(state).into_make_service_with_connect_info::<SocketAddr>();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://localhost:{}", l.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui");
        let status = tokio::task::spawn_blocking(move || {
            std::process::Command::new("node")
                .arg("bench-video.mjs")
                .current_dir(ui)
                .env("GS_URL", base)
                .env("GS_USER", "op1")
                .env("GS_PASSWORD", PW)
                .status()
                .expect("node")
        })
        .await
        .unwrap();
        assert!(status.success(), "bench-video.mjs failed");
        drop(cam);
    });
}
