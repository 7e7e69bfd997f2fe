//! The MJPEG fallback: one transcoder per drone, shared by all its MJPEG
//! viewers (`appsrc ! h264parse ! avdec_h264 ! videorate max-rate !
//! videoconvert ! jpegenc ! appsink`), fed from the drone's fan-out and
//! started by the first viewer; the last viewer to leave stops it.

use std::sync::Arc;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::watch;

use super::{make, DroneVideo, Subscription, VideoError};

/// A running transcoder. Viewers hold an `Arc`; dropping the last one
/// stops the pipeline and leaves the drone's fan-out.
pub struct Mjpeg {
    pipeline: gst::Pipeline,
    /// The newest JPEG (a slow viewer skips frames, never queues them).
    pub frames: watch::Receiver<Option<bytes::Bytes>>,
    _sub: Subscription,
}

impl Drop for Mjpeg {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

pub(super) fn start(drone: &Arc<DroneVideo>, fps: u32, quality: u32) -> Result<Mjpeg, VideoError> {
    let p = gst::Pipeline::new();
    let src = super::live_h264_src();
    let parse = make("h264parse")?;
    let dec = make("avdec_h264")?;
    // Frame threading delays output by one frame per thread.
    dec.set_property("max-threads", 1i32);
    let rate = make("videorate")?;
    rate.set_property("drop-only", true);
    rate.set_property("max-rate", fps as i32);
    let conv = make("videoconvert")?;
    let enc = make("jpegenc")?;
    enc.set_property("quality", quality as i32);
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(2)
        .drop(true)
        .build();
    super::track(sink.upcast_ref());
    p.add_many([
        src.upcast_ref(),
        &parse,
        &dec,
        &rate,
        &conv,
        &enc,
        sink.upcast_ref(),
    ])
    .map_err(|e| VideoError::Gst(format!("MJPEG pipeline: {e}")))?;
    gst::Element::link_many([
        src.upcast_ref(),
        &parse,
        &dec,
        &rate,
        &conv,
        &enc,
        sink.upcast_ref(),
    ])
    .map_err(|e| VideoError::Gst(format!("MJPEG pipeline: {e}")))?;
    let (tx, rx) = watch::channel(None);
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(buf) = sample.buffer() {
                    let map = buf.map_readable().map_err(|_| gst::FlowError::Error)?;
                    tx.send_replace(Some(bytes::Bytes::copy_from_slice(map.as_slice())));
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    p.set_state(gst::State::Playing)
        .map_err(|e| VideoError::Gst(format!("MJPEG pipeline cannot play: {e}")))?;
    let src_w = src.downgrade();
    let sub = drone.subscribe(Box::new(move |au| {
        if let Some(src) = src_w.upgrade() {
            let _ = src.push_buffer(gst::Buffer::from_slice(au.data.clone()));
        }
    }));
    Ok(Mjpeg {
        pipeline: p,
        frames: rx,
        _sub: sub,
    })
}
