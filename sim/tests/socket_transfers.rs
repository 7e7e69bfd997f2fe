//! The same lossy link as `lossy_transfers.rs`, over real UDP sockets: the
//! async bridge → seeded UDP impairment proxy → the simulator in fast time
//! (20×, so ArduPilot's 1 s re-request is 50 ms). One seed (about 40 s in
//! a debug build): this checks that the tokio drivers and the sockets add
//! nothing wrong; the 50 seeds run in `lossy_transfers.rs`.

mod common;

use std::time::Duration;

use common::*;
use tiancha_firmware_bridge::mission::MissionConfig;
use tiancha_firmware_bridge::{Bridge, BridgeConfig};
use tiancha_protocol::mission::MissionType;
use tiancha_sim::{ImpairmentConfig, Sim, SimConfig, UdpProxy};

fn radio(seed: u64) -> ImpairmentConfig {
    ImpairmentConfig {
        loss: 0.2,
        duplicate: 0.05,
        reorder: 0.05,
        reorder_delay_ms: 8.0,
        delay_ms: 1.0,
        jitter_ms: 2.0,
        seed,
    }
}

async fn run(seed: u64) {
    let sim = Sim::start(SimConfig {
        listen: "udpin:127.0.0.1:0".into(),
        speed: 20.0,
        gps_fix_delay_s: 0.5,
        ..Default::default()
    })
    .await
    .unwrap();
    let proxy = UdpProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        sim.local_addr().unwrap(),
        radio(seed * 2 + 1),
        radio(seed * 2 + 2),
    )
    .await
    .unwrap();
    let cfg = BridgeConfig {
        mission: MissionConfig {
            initial_timeout: Duration::from_millis(200),
            min_timeout: Duration::from_millis(40),
            ..Default::default()
        },
        ..Default::default()
    };
    let b = Bridge::connect(&format!("udpout:{}", proxy.local_addr()), cfg)
        .await
        .unwrap();
    b.wait_for_autopilot(Duration::from_secs(10)).await.unwrap();
    let t0 = std::time::Instant::now();
    let m = mission(700);
    let f = fence();
    let r = rally(10);
    for (ty, items) in [
        (MissionType::Mission, &m),
        (MissionType::Fence, &f),
        (MissionType::Rally, &r),
    ] {
        b.upload(ty, items)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {ty:?}: {e}"));
    }
    let t = sim.truth().borrow().clone();
    assert_eq!(t.mission_len, 700);
    assert_eq!(t.fence_zones, 6);
    assert_eq!(t.rally_points, 10);
    // And an independent read-back through the same bad link.
    let back = b.download(MissionType::Mission).await.unwrap();
    assert_eq!(back.len(), 700);
    for (a, b) in back.iter().zip(&m).skip(1) {
        assert!(
            a.x == b.x && a.y == b.y && a.command == b.command,
            "seed {seed}: {a:?} vs {b:?}"
        );
    }
    let (up, down) = proxy.stats();
    assert!(up.dropped > 0 && down.dropped > 0 && up.duplicated > 0 && down.reordered > 0);
    println!(
        "seed {seed}: 700 + {} + {} items in {:.1} s; proxy up {up:?} down {down:?}; bridge {:?}",
        f.len(),
        r.len(),
        t0.elapsed().as_secs_f64(),
        b.stats().mission
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_1_700_items_over_udp_through_the_impairment_proxy() {
    run(1).await;
}
