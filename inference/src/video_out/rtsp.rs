//! An RTSP server (gst-rtsp-server) that re-serves an RTP/H.264 stream
//! sent to a local UDP relay port. Shared by the companion's video out
//! and the simulator's camera.
//!
//! ```text
//! encoder … ! rtph264pay ! udpsink 127.0.0.1:RELAY
//! RTSP media (shared by all viewers):
//!   udpsrc 127.0.0.1:RELAY ! rtph264depay ! h264parse !
//!   rtph264pay name=pay0 (SPS/PPS from h264parse config-interval=-1)
//! ```
//!
//! The encoder keeps running whether or not anyone watches (and across
//! viewers coming and going); the RTSP media is built for the first
//! viewer and torn down after the last. Each media's RTP session (with
//! the viewers' RTCP receiver reports) is reachable through
//! [`RtspRelay::streams`].

use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

/// A running RTSP server. Dropping it stops serving.
pub struct RtspRelay {
    ctx: glib::MainContext,
    main: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
    source: Option<glib::SourceId>,
    url: String,
    port: u16,
    medias: Arc<Mutex<Vec<glib::WeakRef<rtsp::RTSPMedia>>>>,
}

impl std::fmt::Debug for RtspRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspRelay").field("url", &self.url).finish()
    }
}

/// A free local UDP port for the relay.
pub fn free_udp_port() -> Result<u16, String> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free local UDP port for the RTSP relay: {e}"))
}

impl RtspRelay {
    /// Serve `rtsp://address:port/path` from RTP/H.264 (payload type
    /// `pt`) arriving on `127.0.0.1:relay_port`. Port 0 picks a free
    /// port ([`RtspRelay::port`] tells which).
    pub fn start(
        address: &str,
        port: u16,
        path: &str,
        relay_port: u16,
        pt: u8,
    ) -> Result<Self, String> {
        gst::init().map_err(|e| format!("GStreamer did not initialise: {e}"))?;
        // Its own main context: several servers in one process (the
        // simulator's camera and the companion in a test) do not share a
        // loop.
        let ctx = glib::MainContext::new();
        let main = glib::MainLoop::new(Some(&ctx), false);
        let server = rtsp::RTSPServer::new();
        server.set_address(address);
        server.set_service(&port.to_string());
        let factory = rtsp::RTSPMediaFactory::new();
        factory.set_launch(&format!(
            "( udpsrc address=127.0.0.1 port={relay_port} caps=\"application/x-rtp,media=video,\
             clock-rate=90000,encoding-name=H264,payload={pt}\" ! rtph264depay ! h264parse config-interval=-1 ! \
             rtph264pay name=pay0 pt={pt} )"
        ));
        factory.set_shared(true);
        let medias: Arc<Mutex<Vec<glib::WeakRef<rtsp::RTSPMedia>>>> = Arc::default();
        {
            let medias = medias.clone();
            factory.connect_media_configure(move |_, media| {
                let mut m = medias.lock().expect("medias lock");
                m.retain(|w| w.upgrade().is_some());
                m.push(media.downgrade());
                // The last viewer gone (or preparing failed): not served.
                let medias = medias.clone();
                media.connect_unprepared(move |media| {
                    medias
                        .lock()
                        .expect("medias lock")
                        .retain(|w| w.upgrade().is_some_and(|x| &x != media));
                });
            });
        }
        server
            .mount_points()
            .ok_or("the RTSP server has no mount points")?
            .add_factory(path, factory);
        let source = server
            .attach(Some(&ctx))
            .map_err(|e| format!("cannot serve RTSP on {address}:{port}: {e}"))?;
        let bound = u16::try_from(server.bound_port()).unwrap_or(port);
        let (ml, c) = (main.clone(), ctx.clone());
        let thread = std::thread::Builder::new()
            .name("tiancha-rtsp".into())
            // Thread-default: the server hands its clients this context.
            .spawn(move || {
                if let Err(e) = c.with_thread_default(|| ml.run()) {
                    tracing::error!("RTSP server: cannot own its main context: {e}");
                }
            })
            .map_err(|e| format!("cannot start the RTSP thread: {e}"))?;
        Ok(Self {
            ctx,
            main,
            thread: Some(thread),
            source: Some(source),
            url: format!("rtsp://{address}:{bound}{path}"),
            port: bound,
            medias,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The streams of the media being prepared or served now (none
    /// without viewers). Never waits on a media being prepared.
    pub fn streams(&self) -> Vec<rtsp::RTSPStream> {
        let medias: Vec<rtsp::RTSPMedia> = {
            let mut m = self.medias.lock().expect("medias lock");
            m.retain(|w| w.upgrade().is_some());
            m.iter().filter_map(|w| w.upgrade()).collect()
        };
        medias
            .iter()
            .flat_map(|media| (0..media.n_streams()).filter_map(move |i| media.stream(i)))
            .collect()
    }
}

impl Drop for RtspRelay {
    fn drop(&mut self) {
        if let Some(id) = self.source.take() {
            if let Some(s) = self.ctx.find_source_by_id(&id) {
                s.destroy();
            }
        }
        self.main.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
