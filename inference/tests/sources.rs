//! Video sources against real GStreamer peers: a live test pattern, RTP
//! over UDP (H.264 and H.265) from a real encoder pipeline, an RTSP server
//! (gst-rtsp-server), reconnection after a stall, newest-frame dropping,
//! image folders — and the failures: an RTSP server that never answers, a
//! truncated file, a file that is not a video.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use tiancha_inference::source::{
    Backoff, Delivery, SourceConfig, SourceError, SourceEvent, SourceItem,
};
use tiancha_inference::{Frame, FrameSource};

/// Collect until `n` frames or `timeout`; returns frames, events, end.
fn collect(
    src: &FrameSource,
    n: usize,
    timeout: Duration,
) -> (
    Vec<Frame>,
    Vec<SourceEvent>,
    Option<Result<(), SourceError>>,
) {
    let deadline = Instant::now() + timeout;
    let (mut frames, mut events) = (vec![], vec![]);
    while Instant::now() < deadline && frames.len() < n {
        match src.recv(Duration::from_millis(200)) {
            Some(SourceItem::Frame(f)) => frames.push(f),
            Some(SourceItem::Event(e)) => events.push(e),
            Some(SourceItem::End(r)) => return (frames, events, Some(r)),
            None => {}
        }
    }
    (frames, events, None)
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real sender: test pattern → encoder → RTP → UDP.
fn udp_sender(port: u16, codec: &str) -> gst::Element {
    gst::init().unwrap();
    let (enc, pay) = match codec {
        "h264" => (
            "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10",
            "rtph264pay config-interval=1 pt=96",
        ),
        _ => (
            "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=10",
            "rtph265pay config-interval=1 pt=96",
        ),
    };
    let p = gst::parse::launch(&format!(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 ! \
         videoconvert ! {enc} ! {pay} ! udpsink host=127.0.0.1 port={port} sync=false"
    ))
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    p
}

#[test]
fn live_test_pattern_carries_wall_clock_capture_times() {
    let src =
        FrameSource::open(SourceConfig::new("test://ball?width=320&height=240&fps=20")).unwrap();
    assert_eq!(src.delivery(), Delivery::Newest);
    let (frames, events, end) = collect(&src, 15, Duration::from_secs(20));
    assert!(end.is_none(), "{end:?}");
    assert_eq!(frames.len(), 15);
    assert!(
        matches!(
            events.first(),
            Some(SourceEvent::Connected {
                width: 320,
                height: 240,
                ..
            })
        ),
        "{events:?}"
    );
    let now = tiancha_inference::frame::unix_ms_now();
    for w in frames.windows(2) {
        assert!(w[1].seq > w[0].seq);
        assert!(w[1].capture_unix_ms >= w[0].capture_unix_ms);
        assert!(w[1].capture_mono >= w[0].capture_mono);
    }
    let last = frames.last().unwrap();
    assert!(
        (now - last.capture_unix_ms).abs() < 2_000,
        "capture {} vs now {now}",
        last.capture_unix_ms
    );
    assert!(last.capture_mono <= last.received_mono);
    assert_eq!(last.bgr.len(), 320 * 240 * 3);
}

#[test]
fn a_slow_consumer_gets_the_newest_frame_and_drops_are_counted() {
    let src = FrameSource::open(SourceConfig::new(
        "test://smpte?width=320&height=240&fps=50",
    ))
    .unwrap();
    // Let the source run, then take a frame every 150 ms (far slower than 50 fps).
    let (first, _, _) = collect(&src, 1, Duration::from_secs(20));
    assert_eq!(first.len(), 1);
    let mut ages = vec![];
    let mut seqs = vec![];
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(150));
        let (f, _, end) = collect(&src, 1, Duration::from_secs(5));
        assert!(end.is_none());
        // Age at hand-over: at most about one frame interval, never the 150 ms backlog.
        ages.push(f[0].received_mono.elapsed());
        seqs.push(f[0].seq);
    }
    let stats = src.stats();
    assert!(stats.dropped >= 20, "{stats:?}");
    assert!(
        stats.decoded >= stats.delivered + stats.dropped,
        "{stats:?}"
    );
    // Each take skipped ahead: sequence numbers jump.
    assert!(seqs.windows(2).all(|w| w[1] - w[0] >= 3), "{seqs:?}");
    let worst = ages.iter().max().unwrap();
    assert!(
        *worst < Duration::from_millis(100),
        "stale frame handed over: {ages:?}"
    );
}

#[test]
fn rtp_h264_over_udp() {
    let port = free_udp_port();
    let src = FrameSource::open(SourceConfig::new(format!(
        "udp://127.0.0.1:{port}?codec=h264"
    )))
    .unwrap();
    let sender = udp_sender(port, "h264");
    let (frames, _, end) = collect(&src, 10, Duration::from_secs(30));
    sender.set_state(gst::State::Null).unwrap();
    assert!(end.is_none(), "{end:?}");
    assert_eq!(frames.len(), 10);
    assert_eq!((frames[0].width, frames[0].height), (320, 240));
}

#[test]
fn rtp_h265_over_udp() {
    let port = free_udp_port();
    let src = FrameSource::open(SourceConfig::new(format!(
        "udp://127.0.0.1:{port}?codec=h265"
    )))
    .unwrap();
    let sender = udp_sender(port, "h265");
    let (frames, _, end) = collect(&src, 10, Duration::from_secs(30));
    sender.set_state(gst::State::Null).unwrap();
    assert!(end.is_none(), "{end:?}");
    assert_eq!(frames.len(), 10);
    assert_eq!((frames[0].width, frames[0].height), (320, 240));
}

#[test]
fn a_stalled_stream_is_reconnected_with_events() {
    let port = free_udp_port();
    let mut cfg = SourceConfig::new(format!("udp://127.0.0.1:{port}"));
    cfg.stall_timeout = Duration::from_millis(800);
    cfg.connect_timeout = Duration::from_secs(20);
    cfg.backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
        max_attempts: None,
    };
    let src = FrameSource::open(cfg).unwrap();
    let sender = udp_sender(port, "h264");
    let (f, _, _) = collect(&src, 5, Duration::from_secs(30));
    assert_eq!(f.len(), 5);
    // The camera goes quiet for 2 s, then comes back.
    sender.set_state(gst::State::Null).unwrap();
    let t_stop = Instant::now();
    let mut events = vec![];
    while t_stop.elapsed() < Duration::from_secs(2) {
        if let Some(SourceItem::Event(e)) = src.recv(Duration::from_millis(100)) {
            events.push(e);
        }
    }
    let sender = udp_sender(port, "h264");
    let (f2, more, end) = collect(&src, 5, Duration::from_secs(30));
    sender.set_state(gst::State::Null).unwrap();
    events.extend(more);
    assert!(end.is_none(), "{end:?}");
    assert_eq!(f2.len(), 5, "{events:?}");
    let stalled = events.iter().any(
        |e| matches!(e, SourceEvent::Disconnected { reason, .. } if reason.contains("stalled")),
    );
    let retried = events
        .iter()
        .any(|e| matches!(e, SourceEvent::Reconnecting { .. }));
    let back = events
        .iter()
        .any(|e| matches!(e, SourceEvent::Connected { attempt, .. } if *attempt >= 1));
    assert!(stalled && retried && back, "{events:#?}");
    assert!(src.stats().reconnects >= 1);
    // Sequence numbers keep counting across the reconnect.
    assert!(f2[0].seq > f.last().unwrap().seq);
}

#[test]
fn rtsp_from_a_real_rtsp_server() {
    gst::init().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let main = gst::glib::MainLoop::new(None, false);
    let server = rtsp::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&port.to_string());
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(
        "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 ! \
           x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! rtph264pay name=pay0 pt=96 )",
    );
    factory.set_shared(true);
    server.mount_points().unwrap().add_factory("/cam", factory);
    let id = server.attach(None).unwrap();
    let ml = main.clone();
    let loop_thread = std::thread::spawn(move || ml.run());

    let mut cfg = SourceConfig::new(format!("rtsp://127.0.0.1:{port}/cam"));
    cfg.latency_ms = 100;
    let src = FrameSource::open(cfg).unwrap();
    let (frames, _, end) = collect(&src, 10, Duration::from_secs(30));
    drop(src);
    main.quit();
    loop_thread.join().unwrap();
    id.remove();
    assert!(end.is_none(), "{end:?}");
    assert_eq!(frames.len(), 10);
    assert_eq!((frames[0].width, frames[0].height), (320, 240));
}

#[test]
fn an_rtsp_server_that_never_answers_ends_in_a_clear_error_not_a_hang() {
    // Accepts TCP connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _hold = std::thread::spawn(move || {
        let mut held = vec![];
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let uri = format!("rtsp://127.0.0.1:{port}/never");
    let mut cfg = SourceConfig::new(uri.clone());
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(100),
        max_attempts: Some(2),
    };
    let t0 = Instant::now();
    let src = FrameSource::open(cfg).unwrap();
    let (frames, events, end) = collect(&src, 1, Duration::from_secs(30));
    let took = t0.elapsed();
    assert!(frames.is_empty());
    let err = end.expect("the source must give up, not hang").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&uri), "{msg}");
    assert!(
        msg.contains("never answered") || msg.contains("gave up"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SourceEvent::Reconnecting { .. })),
        "{events:?}"
    );
    drop(src);
}

#[test]
fn a_truncated_video_file_is_reported_as_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(common::vtest()).unwrap();
    let p = dir.path().join("cut.avi");
    std::fs::write(&p, &full[..full.len() * 2 / 5]).unwrap();
    let src = FrameSource::open(SourceConfig::new(p.to_string_lossy())).unwrap();
    let (frames, _, end) = collect(&src, usize::MAX, Duration::from_secs(120));
    let err = end.expect("no hang").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("cut.avi"), "{msg}");
    assert!(matches!(err, SourceError::Truncated { .. }), "{msg}");
    assert!(msg.contains("truncated"), "{msg}");
    // What was decodable was delivered first.
    assert!(frames.len() > 100, "{}", frames.len());
}

#[test]
fn a_file_that_is_not_a_video_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.mp4");
    std::fs::write(&p, b"these are meeting notes, not a video\n".repeat(100)).unwrap();
    let src = FrameSource::open(SourceConfig::new(p.to_string_lossy())).unwrap();
    let (frames, _, end) = collect(&src, 1, Duration::from_secs(30));
    assert!(frames.is_empty());
    let msg = end.expect("no hang").unwrap_err().to_string();
    assert!(msg.contains("notes.mp4"), "{msg}");
}

#[test]
fn an_image_folder_is_a_source_and_bad_images_are_skipped() {
    use opencv::core::{Mat, Scalar, Vector, CV_8UC3};
    let dir = tempfile::tempdir().unwrap();
    for (i, v) in [10.0, 120.0, 250.0].iter().enumerate() {
        let m = Mat::new_rows_cols_with_default(60, 80, CV_8UC3, Scalar::all(*v)).unwrap();
        opencv::imgcodecs::imwrite(dir.path().join(format!("img_{i}.png")), &m, &Vector::new())
            .unwrap();
    }
    std::fs::write(dir.path().join("img_1b.jpg"), b"not a jpeg").unwrap();
    std::fs::write(dir.path().join("readme.txt"), b"ignored").unwrap();
    let mut cfg = SourceConfig::new(dir.path().to_string_lossy());
    cfg.start_unix_ms = Some(1_000_000);
    cfg.folder_interval_ms = 500;
    let src = FrameSource::open(cfg).unwrap();
    assert_eq!(src.delivery(), Delivery::Every);
    let (frames, events, end) = collect(&src, usize::MAX, Duration::from_secs(30));
    end.unwrap().unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[2].bgr[0], 250);
    // img_0, img_1, img_1b (skipped), img_2: times follow the listing.
    assert_eq!(
        frames.iter().map(|f| f.capture_unix_ms).collect::<Vec<_>>(),
        [1_000_000, 1_000_500, 1_001_500]
    );
    assert!(
        events.iter().any(
            |e| matches!(e, SourceEvent::Skipped { item, .. } if item.ends_with("img_1b.jpg"))
        ),
        "{events:?}"
    );
}

#[test]
fn a_file_replayed_in_real_time_is_paced_at_its_frame_rate() {
    // vtest.avi is 10 fps: 15 frames replayed as a live camera would
    // deliver them take at least 1.4 s (as fast as possible, they take a
    // few tens of ms), and every frame comes through when the reader keeps
    // up, stamped with its own capture time (a frame dropped on a very
    // loaded machine shows as a gap of a whole frame interval).
    let mut cfg = SourceConfig::new(common::vtest().to_string_lossy());
    cfg.realtime = true;
    cfg.delivery = Some(Delivery::Newest);
    cfg.start_unix_ms = Some(1_700_000_000_000);
    let src = FrameSource::open(cfg).unwrap();
    let t0 = Instant::now();
    let (frames, _, end) = collect(&src, 15, Duration::from_secs(30));
    let took = t0.elapsed();
    assert!(end.is_none(), "{end:?}");
    assert_eq!(frames.len(), 15);
    let span = frames[14].received_mono - frames[0].received_mono;
    assert!(span >= Duration::from_millis(1300), "15 frames in {span:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    for w in frames.windows(2) {
        let gap = w[1].capture_unix_ms - w[0].capture_unix_ms;
        assert!(gap > 0 && gap % 100 == 0, "capture times step by {gap} ms");
    }
}

#[test]
fn frame_step_delivers_every_nth_frame_with_its_own_number_and_time() {
    let mut cfg = SourceConfig::new(common::vtest().to_string_lossy());
    cfg.frame_step = 3;
    cfg.start_unix_ms = Some(0);
    let src = FrameSource::open(cfg).unwrap();
    let (frames, _, end) = collect(&src, 10, Duration::from_secs(30));
    assert!(end.is_none(), "{end:?}");
    let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, (0..10).map(|k| 3 * k).collect::<Vec<_>>());
    assert!(frames
        .iter()
        .all(|f| f.capture_unix_ms == f.seq as i64 * 100));
    assert_eq!(src.stats().dropped, 0);
    drop(src);

    let mut bad = SourceConfig::new(common::vtest().to_string_lossy());
    bad.frame_step = 0;
    let msg = FrameSource::open(bad).err().expect("refused").to_string();
    assert!(msg.contains("frame_step"), "{msg}");
}
