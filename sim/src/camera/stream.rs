//! The streamer: frames → H.264 → RTP over UDP (what a drone camera or
//! gimbal sends), and optionally an RTSP server, through GStreamer.
//!
//! ```text
//! appsrc (BGR, live, leaky) ! video_out::h264_encoder (x264enc zerolatency,
//!   ultrafast, bitrate, key-int-max; h264parse config-interval=-1) ! tee
//!     ├ rtph264pay pt=96 ! udpsink HOST:PORT
//!     └ rtph264pay ! udpsink 127.0.0.1:RELAY   (only with RTSP)
//! RTSP server (`tiancha_inference::video_out::RtspRelay`, shared with the
//! companion's video out; gst-rtsp-server, shared media):
//!   udpsrc 127.0.0.1:RELAY ! rtph264depay ! h264parse ! rtph264pay name=pay0
//! ```
//!
//! The RTP caps are the eye's (`udp://…?codec=h264&pt=96`, clock rate
//! 90 kHz); SPS/PPS are repeated with every key frame so a receiver can
//! join at any time. Each frame's PTS is the pipeline's running time when
//! it was pushed.

use std::net::{SocketAddr, ToSocketAddrs};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use opencv::core::Mat;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};
use tiancha_inference::video_out;
use tiancha_inference::video_out::rtsp::{free_udp_port, RtspRelay};

use super::CameraError;

/// Where and how to stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// RTP/H.264 over UDP to this `host:port` (e.g. `127.0.0.1:5600`).
    pub udp: Option<String>,
    /// Serve RTSP on this port (`rtsp://HOST:PORT/<rtsp_path>`).
    pub rtsp_port: Option<u16>,
    /// Address the RTSP server binds (default 127.0.0.1).
    pub rtsp_address: String,
    pub rtsp_path: String,
    pub bitrate_kbps: u32,
    /// A key frame every this many frames.
    pub keyframe_interval: u32,
    /// RTP payload type.
    pub payload_type: u8,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            udp: None,
            rtsp_port: None,
            rtsp_address: "127.0.0.1".into(),
            rtsp_path: "/camera".into(),
            bitrate_kbps: 2_000,
            keyframe_interval: 10,
            payload_type: 96,
        }
    }
}

fn bad(field: &'static str, reason: impl Into<String>) -> CameraError {
    CameraError::Config {
        field,
        reason: reason.into(),
    }
}

impl StreamConfig {
    /// Check the fields; resolves the UDP target.
    pub fn validate(&self) -> Result<Option<SocketAddr>, CameraError> {
        if !(100..=100_000).contains(&self.bitrate_kbps) {
            return Err(bad(
                "bitrate_kbps",
                format!("{} is not in [100, 100000]", self.bitrate_kbps),
            ));
        }
        if !(1..=1_000).contains(&self.keyframe_interval) {
            return Err(bad(
                "keyframe_interval",
                format!("{} frames is not in [1, 1000]", self.keyframe_interval),
            ));
        }
        if !(96..=127).contains(&self.payload_type) {
            return Err(bad(
                "payload_type",
                format!(
                    "{} is not a dynamic RTP payload type (96..127)",
                    self.payload_type
                ),
            ));
        }
        if !self.rtsp_path.starts_with('/') {
            return Err(bad(
                "rtsp_path",
                format!("{:?} must start with /", self.rtsp_path),
            ));
        }
        match &self.udp {
            None => Ok(None),
            Some(s) => {
                let addr = s
                    .to_socket_addrs()
                    .map_err(|e| bad("udp", format!("{s:?} is not a host:port ({e})")))?
                    .next()
                    .ok_or_else(|| bad("udp", format!("{s:?} resolves to no address")))?;
                if addr.port() == 0 {
                    return Err(bad("udp", format!("{s:?}: port 0")));
                }
                Ok(Some(addr))
            }
        }
    }
}

/// A running encoder and its outputs. Dropping it stops them.
pub struct Streamer {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    width: i32,
    height: i32,
    pushed: u64,
    rtsp: Option<RtspRelay>,
}

fn gst_err(what: &str, e: impl std::fmt::Display) -> CameraError {
    CameraError::Stream(format!("{what}: {e}"))
}

fn make(name: &str) -> Result<gst::Element, CameraError> {
    gst::ElementFactory::make(name).build().map_err(|_| {
        CameraError::Stream(format!(
            "GStreamer element {name:?} is missing (install gstreamer1.0-plugins-base/good/ugly)"
        ))
    })
}

impl Streamer {
    /// Build and start the pipeline for `width × height` frames at `fps`.
    pub fn start(
        cfg: &StreamConfig,
        width: u32,
        height: u32,
        fps: f64,
    ) -> Result<Self, CameraError> {
        let udp = cfg.validate()?;
        if udp.is_none() && cfg.rtsp_port.is_none() {
            return Err(bad(
                "stream",
                "neither a UDP target nor an RTSP port is set",
            ));
        }
        if !(fps.is_finite() && fps > 0.0 && fps <= 120.0) {
            return Err(bad("fps", format!("{fps} is not in (0, 120]")));
        }
        gst::init().map_err(|e| gst_err("GStreamer did not initialise", e))?;
        let pipeline = gst::Pipeline::new();
        let fps_frac = gst::Fraction::approximate_f64(fps)
            .ok_or_else(|| bad("fps", format!("{fps} is not a frame rate")))?;
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "BGR")
            .field("width", width as i32)
            .field("height", height as i32)
            .field("framerate", fps_frac)
            .build();
        let appsrc = gst_app::AppSrc::builder()
            .caps(&caps)
            .is_live(true)
            .format(gst::Format::Time)
            .stream_type(gst_app::AppStreamType::Stream)
            .max_buffers(2)
            .leaky_type(gst_app::AppLeakyType::Downstream)
            .build();
        let enc = video_out::h264_encoder(cfg.bitrate_kbps, cfg.keyframe_interval)
            .map_err(|e| CameraError::Stream(e.to_string()))?;
        let tee = make("tee")?;
        let chain: Vec<&gst::Element> = std::iter::once(appsrc.upcast_ref())
            .chain(&enc.elements)
            .chain([&tee])
            .collect();
        pipeline
            .add_many(chain.iter().copied())
            .map_err(|e| gst_err("pipeline", e))?;
        gst::Element::link_many(chain).map_err(|e| gst_err("linking the encoder", e))?;
        let add_branch = |host: String, port: u16| -> Result<(), CameraError> {
            let queue = make("queue")?;
            queue.set_property("max-size-buffers", 4u32);
            queue.set_property_from_str("leaky", "downstream");
            let pay = video_out::rtp_h264_pay(cfg.payload_type)
                .map_err(|e| CameraError::Stream(e.to_string()))?;
            let sink = make("udpsink")?;
            sink.set_property("host", host.as_str());
            sink.set_property("port", port as i32);
            sink.set_property("sync", false);
            sink.set_property("async", false);
            pipeline
                .add_many([&queue, &pay, &sink])
                .map_err(|e| gst_err("pipeline", e))?;
            gst::Element::link_many([&tee, &queue, &pay, &sink])
                .map_err(|e| gst_err("linking the RTP branch", e))?;
            Ok(())
        };
        if let Some(a) = udp {
            add_branch(a.ip().to_string(), a.port())?;
        }
        let rtsp = match cfg.rtsp_port {
            None => None,
            Some(port) => {
                let relay = free_udp_port().map_err(CameraError::Stream)?;
                add_branch("127.0.0.1".into(), relay)?;
                Some(
                    RtspRelay::start(
                        &cfg.rtsp_address,
                        port,
                        &cfg.rtsp_path,
                        relay,
                        cfg.payload_type,
                    )
                    .map_err(CameraError::Stream)?,
                )
            }
        };
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| gst_err("cannot start the encoder pipeline", e))?;
        Ok(Self {
            pipeline,
            appsrc,
            width: width as i32,
            height: height as i32,
            pushed: 0,
            rtsp,
        })
    }

    /// The RTSP URL, when serving RTSP.
    pub fn rtsp_url(&self) -> Option<&str> {
        self.rtsp.as_ref().map(|r| r.url())
    }

    /// Frames pushed so far.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Push one BGR frame of the configured size, stamped with the
    /// pipeline's running time now. Also reports a pipeline error.
    pub fn push(&mut self, image: &Mat) -> Result<(), CameraError> {
        if image.cols() != self.width || image.rows() != self.height || image.channels() != 3 {
            return Err(CameraError::Stream(format!(
                "frame is {}x{}x{}, the stream is {}x{}x3",
                image.cols(),
                image.rows(),
                image.channels(),
                self.width,
                self.height
            )));
        }
        if let Some(bus) = self.pipeline.bus() {
            while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
                if let gst::MessageView::Error(e) = msg.view() {
                    return Err(CameraError::Stream(format!(
                        "encoder pipeline failed: {} ({:?})",
                        e.error(),
                        e.debug()
                    )));
                }
            }
        }
        let bytes = if image.is_continuous() {
            image
                .data_bytes()
                .map_err(|e| gst_err("frame", e))?
                .to_vec()
        } else {
            image
                .try_clone()
                .and_then(|m| m.data_bytes().map(|b| b.to_vec()))
                .map_err(|e| gst_err("frame", e))?
        };
        let mut buf = gst::Buffer::from_mut_slice(bytes);
        {
            let b = buf.get_mut().expect("a new buffer is writable");
            b.set_pts(self.pipeline.current_running_time());
        }
        self.appsrc
            .push_buffer(buf)
            .map_err(|e| gst_err("the encoder refused a frame", e))?;
        self.pushed += 1;
        Ok(())
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        let _ = self.appsrc.end_of_stream();
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
