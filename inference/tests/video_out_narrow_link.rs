//! Video out over a link that cannot carry it: the test runs itself again
//! in a fresh network namespace (`unshare -n`, needs root, as in CI)
//! whose loopback is a 300 kbit/s token bucket (`tc qdisc … tbf`), so the
//! kernel really drops what does not fit. The companion's video out
//! streams incompressible video (videotestsrc snow) at 1000 kbit/s and
//! 10 fps to a real RTSP viewer (`rtspsrc` over UDP) through that link.
//! The viewer's RTCP receiver reports say so, and the encoder steps its
//! bitrate and frame rate down (`video_out::rate`) while the viewer keeps
//! getting pictures: the stream degrades, it does not break.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use tiancha_inference::video_out::{VideoConfig, VideoOut};
use tiancha_inference::{FrameSource, SourceConfig};

const INNER: &str = "TIANCHA_NARROW_LINK_INNER";
const LINK_KBIT: u32 = 300;

#[test]
fn a_narrow_link_lowers_bitrate_and_frame_rate_and_the_picture_keeps_coming() {
    if std::env::var_os(INNER).is_none() {
        // Outside: the same test binary, in its own network namespace
        // with a narrow loopback.
        let exe = std::env::current_exe().unwrap();
        let script = format!(
            "ip link set lo up && tc qdisc add dev lo root tbf rate {LINK_KBIT}kbit burst 4kb latency 50ms && exec \"$0\" --exact a_narrow_link_lowers_bitrate_and_frame_rate_and_the_picture_keeps_coming --nocapture"
        );
        let out = Command::new("unshare")
            .args(["-n", "sh", "-c", &script])
            .arg(&exe)
            .env(INNER, "1")
            .output()
            .expect("unshare (util-linux)");
        let (so, se) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        println!("{so}");
        assert!(
            out.status.success(),
            "the run in a narrow-link namespace failed (it needs root for `unshare -n` and `tc`, and iproute2):\n{so}\n{se}"
        );
        assert!(so.contains("narrow link: ok"), "{so}\n{se}");
        return;
    }

    gst::init().unwrap();
    let cfg = VideoConfig {
        enabled: true,
        rtsp_port: 0,
        width: 640,
        height: 360,
        fps: 10,
        bitrate_kbps: 1000,
        min_bitrate_kbps: 100,
        min_fps: 2,
        ..VideoConfig::default()
    };
    let out = VideoOut::start(&cfg).unwrap();
    let mut scfg = SourceConfig::new("test://snow?width=640&height=360&fps=10");
    scfg.video = Some(out.tap());
    let _src = FrameSource::open(scfg).unwrap();

    // The viewer: a real RTSP client over UDP, counting access units.
    let viewer = gst::parse::launch(&format!(
        "rtspsrc location={} latency=200 protocols=udp ! rtph264depay ! h264parse ! \
         video/x-h264,alignment=au ! fakesink name=sink sync=false",
        out.url()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let got = Arc::new(AtomicU64::new(0));
    {
        let got = got.clone();
        viewer
            .by_name("sink")
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                got.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
    }
    viewer.set_state(gst::State::Playing).unwrap();

    // 45 s, a sample every second: (t, bitrate, fps, loss, units).
    let t0 = Instant::now();
    let mut rows = vec![];
    while t0.elapsed() < Duration::from_secs(45) {
        std::thread::sleep(Duration::from_secs(1));
        let s = out.stats();
        rows.push((
            t0.elapsed().as_secs_f64(),
            s.bitrate_kbps,
            s.fps,
            s.last_report.map(|r| r.loss_fraction),
            got.load(Ordering::Relaxed),
            s.reports,
        ));
    }
    let _ = viewer.set_state(gst::State::Null);
    println!("   t s  bitrate kbit/s  fps  last loss  units  reports");
    for (t, b, f, l, n, r) in &rows {
        println!(
            "{t:6.1} {b:15} {f:4} {:>10} {n:6} {r:8}",
            l.map_or("-".into(), |l| format!("{:.0} %", l * 100.0))
        );
    }

    // The link was narrow: reports said packets were lost.
    let worst = rows.iter().filter_map(|r| r.3).fold(0.0, f64::max);
    assert!(worst >= 0.02, "no report showed loss: {rows:?}");
    // The encoder stepped down, to what fits in the link.
    let low_bitrate = rows.iter().map(|r| r.1).min().unwrap();
    let low_fps = rows.iter().map(|r| r.2).min().unwrap();
    assert!(
        low_bitrate <= LINK_KBIT,
        "bitrate never below {LINK_KBIT}: {rows:?}"
    );
    assert!(low_fps < 10, "frame rate never lowered: {rows:?}");
    // The picture kept coming: after the first unit, units arrived in
    // every 5 s stretch.
    let first = rows
        .iter()
        .position(|r| r.4 > 0)
        .expect("the viewer got video");
    for w in rows[first..].windows(5) {
        assert!(
            w[4].4 > w[0].4,
            "no video from {:.0} s to {:.0} s: {rows:?}",
            w[0].0,
            w[4].0
        );
    }
    println!(
        "narrow link: ok (link {LINK_KBIT} kbit/s; worst loss {:.0} %; bitrate 1000 → {low_bitrate} kbit/s, fps 10 → {low_fps}; {} units)",
        worst * 100.0,
        rows.last().unwrap().4
    );
}
