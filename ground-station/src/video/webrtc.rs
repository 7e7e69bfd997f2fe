//! One WebRTC viewer: `appsrc ! h264parse ! rtph264pay ! webrtcbin`, the
//! drone's H.264 passed through untouched (no decode, no encode). The
//! station offers (sendonly H.264, packetization-mode 1), the browser
//! answers; ICE candidates trickle both ways over the signalling socket.
//! Dropping the [`Viewer`] stops its pipeline and leaves the fan-out.

use std::sync::Arc;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use tokio::sync::mpsc;

use super::{make, DroneVideo, Subscription, VideoError};

/// What the viewer's pipeline has to tell the browser.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    Offer(String),
    Candidate {
        mline: u32,
        candidate: String,
    },
    /// ICE or DTLS failed, or the pipeline stopped: close the socket.
    Failed(String),
    Connected,
}

pub struct Viewer {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    _sub: Subscription,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Viewer {
    /// Build and play the viewer's pipeline; its signals arrive on the
    /// returned receiver (the offer first).
    pub fn start(
        drone: &Arc<DroneVideo>,
    ) -> Result<(Viewer, mpsc::UnboundedReceiver<Signal>), VideoError> {
        let gerr = |what: &str, e: &dyn std::fmt::Display| VideoError::Gst(format!("{what}: {e}"));
        let p = gst::Pipeline::new();
        let src = super::live_h264_src();
        let parse = make("h264parse")?;
        parse.set_property("config-interval", -1i32);
        // SPS/PPS come from h264parse, once per key frame; the payloader's
        // own config-interval=-1 would repeat them before every IDR slice.
        let pay = make("rtph264pay")?;
        pay.set_property("pt", 96u32);
        pay.set_property_from_str("aggregate-mode", "zero-latency");
        let rtp_caps = gst::Caps::builder("application/x-rtp")
            .field("media", "video")
            .field("encoding-name", "H264")
            .field("payload", 96i32)
            .field("clock-rate", 90_000i32)
            .build();
        let filter = make("capsfilter")?;
        filter.set_property("caps", &rtp_caps);
        let webrtc = make("webrtcbin")?;
        webrtc.set_property_from_str("bundle-policy", "max-bundle");
        p.add_many([src.upcast_ref(), &parse, &pay, &filter, &webrtc])
            .map_err(|e| gerr("WebRTC pipeline", &e))?;
        gst::Element::link_many([src.upcast_ref(), &parse, &pay, &filter])
            .map_err(|e| gerr("WebRTC pipeline", &e))?;
        let sinkpad = webrtc
            .request_pad_simple("sink_%u")
            .ok_or_else(|| VideoError::Gst("webrtcbin gave no sink pad".into()))?;
        filter
            .static_pad("src")
            .expect("capsfilter has a src")
            .link(&sinkpad)
            .map_err(|e| gerr("linking webrtcbin", &e))?;
        if let Some(t) = sinkpad.property::<Option<gst_webrtc::WebRTCRTPTransceiver>>("transceiver")
        {
            t.set_property(
                "direction",
                gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly,
            );
        }

        let (tx, rx) = mpsc::unbounded_channel();
        let tx_ice = tx.clone();
        webrtc.connect("on-ice-candidate", false, move |v| {
            let mline = v[1].get::<u32>().unwrap_or(0);
            let candidate = v[2].get::<String>().unwrap_or_default();
            let _ = tx_ice.send(Signal::Candidate { mline, candidate });
            None
        });
        let tx_state = tx.clone();
        webrtc.connect_notify(Some("connection-state"), move |w, _| {
            let s = w.property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state");
            match s {
                gst_webrtc::WebRTCPeerConnectionState::Failed => {
                    let _ = tx_state.send(Signal::Failed("connection failed".into()));
                }
                gst_webrtc::WebRTCPeerConnectionState::Connected => {
                    let _ = tx_state.send(Signal::Connected);
                }
                _ => {}
            }
        });
        // The offer is made once the first RTP packet has left the
        // payloader: its caps then carry the stream's own profile-level-id
        // and sprop-parameter-sets (webrtcbin offers what its pad has).
        let tx_offer = tx.clone();
        let w_offer = webrtc.downgrade();
        let offered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        filter
            .static_pad("src")
            .expect("capsfilter has a src")
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                if offered.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    return gst::PadProbeReturn::Remove;
                }
                let (tx, w) = (tx_offer.clone(), w_offer.clone());
                // Off the streaming thread: the caps event travels with
                // this buffer.
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    if let Some(w) = w.upgrade() {
                        create_offer(&w, tx);
                    }
                });
                gst::PadProbeReturn::Remove
            });
        p.set_state(gst::State::Playing)
            .map_err(|e| gerr("WebRTC pipeline cannot play", &e))?;
        // Errors on the bus end the viewer.
        let bus = p.bus().expect("a pipeline has a bus");
        let tx_bus = tx.clone();
        bus.set_sync_handler(move |_, m| {
            if let gst::MessageView::Error(e) = m.view() {
                let _ = tx_bus.send(Signal::Failed(e.error().to_string()));
            }
            gst::BusSyncReply::Drop
        });
        let src_w = src.downgrade();
        let sub = drone.subscribe(Box::new(move |au| {
            if let Some(src) = src_w.upgrade() {
                let _ = src.push_buffer(gst::Buffer::from_slice(au.data.clone()));
            }
        }));
        Ok((
            Viewer {
                pipeline: p,
                webrtc,
                _sub: sub,
            },
            rx,
        ))
    }

    /// The browser's answer.
    pub fn answer(&self, sdp: &str) -> Result<(), VideoError> {
        let msg = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())
            .map_err(|e| VideoError::Gst(format!("the answer is not SDP: {e}")))?;
        let desc =
            gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, msg);
        self.webrtc
            .emit_by_name::<()>("set-remote-description", &[&desc, &None::<gst::Promise>]);
        Ok(())
    }

    /// One of the browser's ICE candidates.
    pub fn candidate(&self, mline: u32, candidate: &str) {
        self.webrtc
            .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
    }
}

fn create_offer(w: &gst::Element, tx: mpsc::UnboundedSender<Signal>) {
    let w2 = w.downgrade();
    let promise = gst::Promise::with_change_func(move |reply| {
        let offer = match reply {
            Ok(Some(r)) => r
                .value("offer")
                .ok()
                .and_then(|o| o.get::<gst_webrtc::WebRTCSessionDescription>().ok()),
            _ => None,
        };
        let (Some(offer), Some(w)) = (offer, w2.upgrade()) else {
            let _ = tx.send(Signal::Failed("webrtcbin made no offer".into()));
            return;
        };
        w.emit_by_name::<()>("set-local-description", &[&offer, &None::<gst::Promise>]);
        match offer.sdp().as_text() {
            Ok(t) => {
                let _ = tx.send(Signal::Offer(t));
            }
            Err(e) => {
                let _ = tx.send(Signal::Failed(format!("offer SDP: {e}")));
            }
        }
    });
    w.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
}
