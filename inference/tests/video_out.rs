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

/// Bright (ball) pixels' bounding box of a packed BGR picture.
fn bright_box(bgr: &[u8], w: u32, min: u8) -> Option<(f32, f32, f32, f32)> {
    let (mut x1, mut y1, mut x2, mut y2) = (u32::MAX, u32::MAX, 0, 0);
    for (i, p) in bgr.chunks_exact(3).enumerate() {
        if p[0] >= min && p[1] >= min && p[2] >= min {
            let (x, y) = (i as u32 % w, i as u32 / w);
            (x1, y1, x2, y2) = (x1.min(x), y1.min(y), x2.max(x), y2.max(y));
        }
    }
    (x1 <= x2).then_some((x1 as f32, y1 as f32, x2 as f32, y2 as f32))
}

/// Each outgoing frame gets the overlay of that same camera frame, not
/// the newest one the eye has finished: the camera is videotestsrc's
/// moving ball (≈13 px a frame at 640×480, 30 fps), the "eye" sees every
/// decoded frame (the source's frame hook), finds the ball and publishes a
/// box around it tagged with the frame's PTS, a few ms later on a thread
/// of its own; the viewer's decoded 320×240 pictures must show each box
/// centred on the ball drawn in the same picture (a frame off would be
/// ≈6.5 px off).
#[test]
fn each_outgoing_frame_gets_the_overlay_of_that_same_frame() {
    let out = VideoOut::start(&VideoConfig {
        width: 320,
        height: 240,
        fps: 10,
        ..video_cfg()
    })
    .unwrap();
    let mut scfg = SourceConfig::new("test://ball?width=640&height=480&fps=30");
    scfg.video = Some(out.tap());
    let src = FrameSource::open(scfg).unwrap();
    let board = src.video_overlay().unwrap();
    board.set_per_frame(true);
    let (tx, rx) = std::sync::mpsc::sync_channel::<tiancha_inference::Frame>(8);
    src.on_every_frame(Box::new(move |f| {
        let _ = tx.try_send(f.clone());
    }));
    let published = Arc::new(AtomicU64::new(0));
    let eye = {
        let published = published.clone();
        std::thread::spawn(move || {
            while let Ok(f) = rx.recv() {
                let Some((x1, y1, x2, y2)) = bright_box(&f.bgr, f.width, 200) else {
                    continue;
                };
                // A margin, so that the box's red does not cover the ball.
                let m = 12.0;
                board.publish(OverlayState {
                    frame_width: f.width,
                    frame_height: f.height,
                    seq: f.seq,
                    capture_unix_ms: f.capture_unix_ms,
                    pts_ms: f.pts_ms,
                    shapes: vec![OverlayShape {
                        bbox: BBox::new(x1 - m, y1 - m, x2 + m, y2 + m),
                        colour: EVENT_COLOUR,
                        thickness: 2,
                        label: None,
                    }],
                    banner: vec![],
                });
                published.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let client = watch(out.url());
    let t0 = Instant::now();
    while client.frames.lock().unwrap().len() < 40 && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let frames = client.frames.lock().unwrap().clone();
    drop(client);
    drop(src);
    eye.join().unwrap();
    assert!(frames.len() >= 20, "{} frames", frames.len());
    assert!(published.load(Ordering::Relaxed) > 40);

    let mut offsets = Vec::new();
    for f in &frames {
        // The red box's extent, and the ball's (white, not red).
        let (mut rx1, mut ry1, mut rx2, mut ry2) = (u32::MAX, u32::MAX, 0, 0);
        for (i, p) in f.3.chunks_exact(3).enumerate() {
            if p[2] > 150 && p[1] < 110 && p[0] < 110 {
                let (x, y) = (i as u32 % f.1, i as u32 / f.1);
                (rx1, ry1, rx2, ry2) = (rx1.min(x), ry1.min(y), rx2.max(x), ry2.max(y));
            }
        }
        let (Some(ball), true) = (bright_box(&f.3, f.1, 170), rx1 <= rx2) else {
            continue;
        };
        let bc = ((ball.0 + ball.2) / 2.0, (ball.1 + ball.3) / 2.0);
        let rc = ((rx1 + rx2) as f32 / 2.0, (ry1 + ry2) as f32 / 2.0);
        offsets.push((bc.0 - rc.0).hypot(bc.1 - rc.1));
    }
    assert!(
        offsets.len() >= 15,
        "{} frames with a box and a ball",
        offsets.len()
    );
    let on = offsets.iter().filter(|d| **d <= 3.0).count();
    assert!(
        on * 10 >= offsets.len() * 9,
        "{on} of {} boxes centred on the ball of their own frame: {offsets:?}",
        offsets.len()
    );
}

/// A live source through the whole [`Pipeline`]: every decoded frame
/// moves the tracks (camera-paced), whatever the detector does, and each
/// overlay carries its frame's stream position for the video branch. The
/// detector is a tiny generated model that always sees one person.
#[test]
fn a_live_pipeline_tracks_every_camera_frame_and_tags_each_overlay_with_its_frame() {
    use tiancha_inference::pipeline::{EyeOutput, PipelineOptions};
    use tiancha_inference::{Detector, DetectorOptions, Eye, EyeConfig, Pipeline};
    let dir = tempfile::tempdir().unwrap();
    // YOLOv5 rows [1, 1, 6]: cx, cy, w, h, objectness, person (48×32 input).
    let model = common::mean_gain_model(
        32,
        48,
        &[1, 1, 6],
        vec![24.0, 16.0, 8.0, 12.0, 1.0, 0.9],
        vec![0.0; 6],
    );
    std::fs::write(dir.path().join("tiny.onnx"), model).unwrap();
    let manifest = dir.path().join("tiny.toml");
    std::fs::write(
        &manifest,
        r#"
name = "tiny_person"
model = "tiny.onnx"
[input]
name = "images"
shape = [1, 3, 32, 48]
layout = "nchw"
color = "rgb"
resize = "stretch"
scale = 0.00392156862745098
[output]
decoder = "yolov5"
name = "output0"
[classes]
names = ["person"]
threshold = 0.5
[nms]
iou = 0.5
[events]
people = ["person"]
"#,
    )
    .unwrap();
    let det = Arc::new(
        Detector::from_manifest_path(
            &manifest,
            &DetectorOptions {
                threads: 1,
                ..DetectorOptions::default()
            },
        )
        .unwrap(),
    );
    let eye = Eye::new(det.manifest().clone(), EyeConfig::default(), None).unwrap();
    let out = VideoOut::start(&video_cfg()).unwrap();
    let mut scfg = SourceConfig::new("test://black?width=640&height=480&fps=30");
    scfg.video = Some(out.tap());
    let src = FrameSource::open(scfg).unwrap();
    let p = Pipeline::start(
        src,
        det,
        eye,
        PipelineOptions {
            report_frames: true,
        },
    )
    .unwrap();
    let board = out.overlay();
    assert!(board.per_frame(), "a live source runs camera-paced");
    let t0 = Instant::now();
    let mut reports = 0;
    let mut summary = None;
    while summary.is_none() {
        if p.health().tracked_frames >= 60 || t0.elapsed() > Duration::from_secs(30) {
            p.request_stop();
        }
        match p.recv(Duration::from_millis(100)) {
            Some(EyeOutput::Frame(r)) => {
                reports += 1;
                // The person (640×480 frame: the model's 48×32 × 13.33/15).
                let person: Vec<_> = r.tracks.iter().filter(|t| t.confirmed).collect();
                if r.frame.seq > 2 {
                    assert_eq!(person.len(), 1, "{:?}", r.tracks);
                    let (cx, cy) = person[0].bbox.center();
                    assert!((cx - 320.0).abs() < 1.0 && (cy - 240.0).abs() < 1.0);
                }
            }
            Some(EyeOutput::End(s)) => summary = Some(*s),
            Some(EyeOutput::FrameError(e)) => panic!("{e}"),
            _ => {}
        }
    }
    let s = summary.unwrap();
    assert!(s.tracked_frames >= 60, "{s:?}");
    // Every decoded frame reached the tracker (or was counted as not).
    assert!(
        s.tracked_frames + s.tracked_frames_dropped >= s.source.decoded,
        "{s:?}"
    );
    assert!(s.frames >= 1 && reports as u64 == s.frames, "{s:?}");
    assert_eq!(s.track_ids, 1, "one person, one id: {s:?}");
    // The overlay of the newest camera frame: its stream position, the
    // person's box.
    let st = board.latest(Duration::from_secs(60)).unwrap();
    assert!(st.pts_ms.is_some(), "{st:?}");
    assert_eq!(st.shapes.len(), 1, "{st:?}");
}
