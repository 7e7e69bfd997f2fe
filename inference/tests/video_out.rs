//! Video out against real GStreamer peers: a live camera (videotestsrc)
//! teed to inference and to the RTSP server, watched by a real RTSP client
//! (`rtspsrc ! rtph264depay ! h264parse ! avdec_h264 ! appsink`): the
//! frames arrive at the configured size and rate, constrained-baseline
//! with a key frame at least every second, with the overlay's box drawn
//! where the overlay state puts it; the viewer's RTCP receiver reports
//! reach the adaptation loop; the RTP sockets carry the DSCP. And the
//! inference branch is unchanged: a file still delivers every frame.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video::prelude::*;
use tiancha_inference::source::{SourceConfig, SourceItem};
use tiancha_inference::video_out::overlay::{OverlayShape, OverlayState, EVENT_COLOUR};
use tiancha_inference::video_out::{VideoConfig, VideoOut, KEYFRAME_INTERVAL};
use tiancha_inference::{BBox, FrameSource};

/// A decoded frame: arrival, width, height, packed BGR.
type Decoded = (Instant, u32, u32, Vec<u8>);

struct Client {
    pipeline: gst::Pipeline,
    frames: Arc<Mutex<Vec<Decoded>>>,
    keyframes: Arc<Mutex<Vec<Instant>>>,
    parse: gst::Element,
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A real RTSP viewer decoding to BGR.
fn watch(url: &str) -> Client {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "rtspsrc name=src location={url} latency=100 protocols=udp ! rtph264depay name=depay ! \
         h264parse name=parse ! avdec_h264 ! videoconvert ! video/x-raw,format=BGR ! \
         appsink name=sink sync=false max-buffers=4 drop=true"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let keyframes: Arc<Mutex<Vec<Instant>>> = Arc::default();
    {
        let k = keyframes.clone();
        let depay = pipeline.by_name("depay").unwrap();
        depay
            .static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(b) = info.buffer() {
                    if !b.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                        k.lock().unwrap().push(Instant::now());
                    }
                }
                gst::PadProbeReturn::Ok
            });
    }
    let frames: Arc<Mutex<Vec<Decoded>>> = Arc::default();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    {
        let frames = frames.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let info =
                        gstreamer_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
                    let buf = sample.buffer().unwrap();
                    let vf = gstreamer_video::VideoFrameRef::from_buffer_ref_readable(buf, &info)
                        .unwrap();
                    let (w, h) = (info.width() as usize, info.height() as usize);
                    let stride = vf.plane_stride()[0] as usize;
                    let data = vf.plane_data(0).unwrap();
                    let mut out = Vec::with_capacity(w * h * 3);
                    for y in 0..h {
                        out.extend_from_slice(&data[y * stride..y * stride + w * 3]);
                    }
                    frames
                        .lock()
                        .unwrap()
                        .push((Instant::now(), w as u32, h as u32, out));
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    let parse = pipeline.by_name("parse").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    Client {
        pipeline,
        frames,
        keyframes,
        parse,
    }
}

fn video_cfg() -> VideoConfig {
    VideoConfig {
        enabled: true,
        rtsp_port: 0,
        width: 320,
        height: 240,
        fps: 5,
        bitrate_kbps: 1000,
        ..VideoConfig::default()
    }
}

fn pixel(frame: &Decoded, x: u32, y: u32) -> [u8; 3] {
    let i = ((y * frame.1 + x) * 3) as usize;
    [frame.3[i], frame.3[i + 1], frame.3[i + 2]]
}

fn near(a: [u8; 3], b: [u8; 3], tol: i32) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (*x as i32 - y as i32).abs() <= tol)
}

#[test]
fn a_viewer_gets_the_live_stream_with_the_overlay_at_the_configured_size_and_rate() {
    let cfg = video_cfg();
    let out = VideoOut::start(&cfg).unwrap();
    assert!(out.url().starts_with("rtsp://127.0.0.1:"), "{}", out.url());
    assert!(out.url().ends_with("/live"), "{}", out.url());
    let mut scfg = SourceConfig::new("test://black?width=640&height=480&fps=30");
    scfg.video = Some(out.tap());
    let src = FrameSource::open(scfg).unwrap();
    let board = src.video_overlay().expect("the source carries video out");

    // Inference side: take frames as the eye would, publish an overlay
    // after each (a box in the 640×480 frame's pixels).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let taken = Arc::new(AtomicU64::new(0));
    let eye = {
        let (stop, taken) = (stop.clone(), taken.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(SourceItem::Frame(f)) = src.recv(Duration::from_millis(100)) {
                    taken.fetch_add(1, Ordering::Relaxed);
                    board.publish(OverlayState {
                        frame_width: f.width,
                        frame_height: f.height,
                        seq: f.seq,
                        capture_unix_ms: f.capture_unix_ms,
                        pts_ms: f.pts_ms,
                        shapes: vec![OverlayShape {
                            bbox: BBox::new(160.0, 120.0, 480.0, 360.0),
                            colour: EVENT_COLOUR,
                            thickness: 3,
                            label: None,
                        }],
                        banner: vec![],
                    });
                }
            }
        })
    };

    // Without a viewer nothing is encoded.
    std::thread::sleep(Duration::from_millis(1500));
    let idle = out.stats();
    assert!(idle.frames_in > 0, "the video branch gets frames: {idle:?}");
    assert_eq!(idle.frames_sent, 0, "nobody watches: {idle:?}");

    let client = watch(out.url());
    let t0 = Instant::now();
    // Wait for the first receiver report (RTCP every ~5 s) or 15 s.
    while Instant::now() - t0 < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(250));
        let n = client.frames.lock().unwrap().len();
        if out.stats().reports >= 1 && n >= 30 {
            break;
        }
    }
    let stats = out.stats();
    let frames = client.frames.lock().unwrap().clone();
    let keys = client.keyframes.lock().unwrap().clone();
    let caps = client.parse.static_pad("src").unwrap().current_caps();
    drop(client);
    stop.store(true, Ordering::Relaxed);
    eye.join().unwrap();

    assert!(
        frames.len() >= 15,
        "{} frames arrived; {stats:?}",
        frames.len()
    );
    // Size.
    assert!(frames.iter().all(|f| (f.1, f.2) == (320, 240)));
    // Rate: at most the configured 5 fps (from a 30 fps camera), and not
    // far below it. Measured over the steady part (after the first frame).
    let span = (frames.last().unwrap().0 - frames[0].0).as_secs_f64();
    let fps = (frames.len() - 1) as f64 / span;
    assert!((3.5..=6.0).contains(&fps), "{fps:.2} fps over {span:.1} s");
    // Constrained baseline (no B-frames), key frames at least every second.
    let caps = caps.expect("negotiated H.264 caps");
    let s = caps.structure(0).unwrap();
    assert_eq!(
        s.get::<&str>("profile").unwrap(),
        "constrained-baseline",
        "{caps}"
    );
    assert!(keys.len() >= 2, "{} key frames", keys.len());
    let worst = keys
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    // One frame interval (200 ms) of jitter on top of the interval.
    assert!(
        worst <= KEYFRAME_INTERVAL + Duration::from_millis(350),
        "key frames {worst:?} apart"
    );
    // The overlay: the box (160,120)-(480,360) in the 640×480 frame is
    // (80,60)-(240,180) in the 320×240 output; red edges, black elsewhere.
    let last = frames.last().unwrap();
    for (x, y) in [(81, 120), (239, 120), (160, 61), (160, 179)] {
        let p = pixel(last, x, y);
        assert!(near(p, EVENT_COLOUR, 70), "box edge at ({x},{y}) is {p:?}");
    }
    for (x, y) in [(160, 120), (20, 20), (300, 220)] {
        let p = pixel(last, x, y);
        assert!(near(p, [0, 0, 0], 40), "({x},{y}) should be black: {p:?}");
    }
    // The inference branch kept running.
    assert!(taken.load(Ordering::Relaxed) > 30);
    // The viewer's receiver report reached the adaptation loop: a clean
    // loopback link keeps the maximum.
    assert!(stats.reports >= 1, "{stats:?}");
    let r = stats.last_report.unwrap();
    assert!(r.loss_fraction < 0.02, "{r:?}");
    assert_eq!((stats.bitrate_kbps, stats.fps), (1000, 5), "{stats:?}");
    // DSCP on the stream's RTP/RTCP sockets.
    assert!(stats.dscp_sockets >= 1, "{stats:?}");
    assert!(stats.viewers >= 1, "{stats:?}");
}

#[test]
fn with_video_out_and_a_viewer_a_file_still_delivers_every_frame() {
    let out = VideoOut::start(&video_cfg()).unwrap();
    let client = watch(out.url());
    let mut scfg = SourceConfig::new(common::vtest().to_string_lossy());
    scfg.video = Some(out.tap());
    let src = FrameSource::open(scfg).unwrap();
    let mut n = 0u64;
    let end = loop {
        match src.recv(Duration::from_secs(20)) {
            Some(SourceItem::Frame(f)) => {
                assert_eq!(f.seq, n, "no frame skipped");
                assert_eq!((f.width, f.height), (768, 576));
                n += 1;
            }
            Some(SourceItem::Event(_)) => {}
            Some(SourceItem::End(r)) => break r,
            None => panic!("stalled after {n} frames"),
        }
    };
    end.unwrap();
    assert_eq!(n, 795, "vtest.avi has 795 frames");
    assert_eq!(src.stats().dropped, 0);
    let s = out.stats();
    assert!(s.frames_in > 0, "{s:?}");
    drop(client);
}

#[test]
fn a_bad_config_is_refused_with_the_field_and_a_taken_port_is_a_clear_error() {
    let mut cfg = video_cfg();
    cfg.min_fps = 9;
    let e = VideoOut::start(&cfg).err().unwrap();
    assert!(e.to_string().contains("video.min_fps"), "{e}");
    // Another server on the port: the second start says which address.
    let first = VideoOut::start(&video_cfg()).unwrap();
    let port: u16 = first
        .url()
        .trim_start_matches("rtsp://127.0.0.1:")
        .trim_end_matches("/live")
        .parse()
        .unwrap();
    let cfg = VideoConfig {
        rtsp_port: port,
        ..video_cfg()
    };
    let e = VideoOut::start(&cfg).err().unwrap();
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}
