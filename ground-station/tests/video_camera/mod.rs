//! A camera like the simulator's, for the video tests and the latency
//! bench: rendered frames with the capture time burned in (the block code
//! of `sim::camera::timestamp`), x264 → RTP → an RTSP server.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

pub const W: usize = 640;
pub const H: usize = 360;
pub const FPS: u64 = 10;

fn now_ms() -> i64 {
    tiancha_protocol::unix_ms(std::time::SystemTime::now())
}

/// `sim::camera::timestamp::burn_timestamp`'s block code (not its digits)
/// on an RGB frame: a black panel, two rows of 24 cells, white = 1, MSB
/// first: 44 bits of Unix ms then a 4-bit check.
pub fn burn(rgb: &mut [u8], w: usize, unix_ms: i64) {
    let c = (w / 64).max(6);
    let v = (unix_ms as u64) & ((1 << 44) - 1);
    let check = (0..11).map(|i| (v >> (4 * i)) & 0xf).sum::<u64>() & 0xf;
    let word = (v << 4) | check;
    let fill = |rgb: &mut [u8], x0: usize, y0: usize, ww: usize, hh: usize, val: u8| {
        for y in y0..y0 + hh {
            for x in x0..x0 + ww {
                let k = (y * w + x) * 3;
                rgb[k..k + 3].fill(val);
            }
        }
    };
    fill(rgb, 0, 0, c * 26, c * 7, 0);
    for i in 0..48 {
        if (word >> (47 - i)) & 1 == 1 {
            let (row, col) = (i / 24, i % 24);
            fill(rgb, c * (1 + col), c * (1 + row), c, c, 255);
        }
    }
}

/// A camera like the simulator's: rendered frames with the capture time
/// burned in → x264 (zerolatency, a keyframe a second) → RTP on a local
/// UDP port → an RTSP server relaying it at `rtsp://127.0.0.1:PORT/camera`.
pub struct TestCamera {
    pub url: String,
    stop: Arc<AtomicBool>,
    pipeline: gst::Pipeline,
    main: glib::MainLoop,
    _source: glib::SourceId,
}

impl Drop for TestCamera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.pipeline.set_state(gst::State::Null);
        self.main.quit();
    }
}

impl TestCamera {
    /// SPS/PPS once per key frame, from `h264parse` (as tiancha's senders).
    pub fn start() -> TestCamera {
        Self::start_with(false)
    }

    /// A sender as many GStreamer pipelines are written:
    /// `rtph264pay config-interval=-1`, which repeats SPS/PPS before every
    /// slice of a key frame (x264 zerolatency cuts frames into slices).
    pub fn start_repeating_parameter_sets() -> TestCamera {
        Self::start_with(true)
    }

    fn start_with(repeat_per_slice: bool) -> TestCamera {
        let (parse, pay) = if repeat_per_slice {
            ("", " config-interval=-1")
        } else {
            ("h264parse config-interval=-1 ! ", "")
        };
        gst::init().unwrap();
        let relay = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = gst::parse::launch(&format!(
            "appsrc name=src is-live=true do-timestamp=true format=time \
             caps=video/x-raw,format=RGB,width={W},height={H},framerate={FPS}/1 ! videoconvert ! \
             x264enc tune=zerolatency speed-preset=ultrafast bitrate=1000 key-int-max={FPS} ! \
             video/x-h264,stream-format=byte-stream ! {parse}rtph264pay pt=96 mtu=1400{pay} ! \
             udpsink host=127.0.0.1 port={relay} sync=false async=false"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let src = p
            .by_name("src")
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        p.set_state(gst::State::Playing).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let mut rgb = vec![0u8; W * H * 3];
                    // A moving gradient, so consecutive frames differ.
                    for y in 0..H {
                        for x in 0..W {
                            let k = (y * W + x) * 3;
                            rgb[k] = ((x as u64 + n * 8) % 256) as u8;
                            rgb[k + 1] = ((y as u64 + n * 3) % 256) as u8;
                            rgb[k + 2] = 90;
                        }
                    }
                    burn(&mut rgb, W, now_ms());
                    if src.push_buffer(gst::Buffer::from_mut_slice(rgb)).is_err() {
                        return;
                    }
                    n += 1;
                    let next = t0 + Duration::from_millis(n * 1000 / FPS);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            });
        }
        let ctx = glib::MainContext::new();
        let main = glib::MainLoop::new(Some(&ctx), false);
        let server = rtsp::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service("0");
        let factory = rtsp::RTSPMediaFactory::new();
        factory.set_launch(&format!(
            "( udpsrc address=127.0.0.1 port={relay} caps=\"application/x-rtp,media=video,\
             clock-rate=90000,encoding-name=H264,payload=96\" ! rtph264depay ! {parse}\
             rtph264pay name=pay0 pt=96{pay} )"
        ));
        factory.set_shared(true);
        server
            .mount_points()
            .unwrap()
            .add_factory("/camera", factory);
        let source = server.attach(Some(&ctx)).unwrap();
        let port = server.bound_port();
        let ml = main.clone();
        std::thread::spawn(move || ml.run());
        TestCamera {
            url: format!("rtsp://127.0.0.1:{port}/camera"),
            stop,
            pipeline: p,
            main,
            _source: source,
        }
    }
}
