//! Writing annotated video: BGR frames → GStreamer `appsrc` → encoder →
//! container → file. `.mp4` and `.mkv` get H.264 (x264), `.avi` MJPEG.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use opencv::core::Mat;
use opencv::prelude::*;

use crate::error::{InferenceError, Result};

/// An open video file being written.
pub struct VideoWriter {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    width: u32,
    height: u32,
    fps: u32,
    frames: u64,
    path: PathBuf,
}

fn err(path: &Path, e: impl std::fmt::Display) -> InferenceError {
    InferenceError::Io {
        what: format!("writing video {}", path.display()),
        source: std::io::Error::other(e.to_string()),
    }
}

impl VideoWriter {
    /// Start a file of `width × height` at `fps`.
    pub fn create(path: impl AsRef<Path>, width: u32, height: u32, fps: u32) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        gst::init().map_err(|e| err(&path, e))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let (enc, mux): (&[&str], &str) = match ext.as_str() {
            "mp4" | "mov" => (&["x264enc", "h264parse"], "mp4mux"),
            "mkv" => (&["x264enc", "h264parse"], "matroskamux"),
            "avi" => (&["jpegenc"], "avimux"),
            other => {
                return Err(err(
                    &path,
                    format!("unknown container {other:?} (use .mp4, .mkv or .avi)"),
                ))
            }
        };
        let make = |n: &str| {
            gst::ElementFactory::make(n)
                .build()
                .map_err(|_| err(&path, format!("GStreamer element {n:?} is missing")))
        };
        let pipeline = gst::Pipeline::default();
        let caps = gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::Bgr)
            .width(width as i32)
            .height(height as i32)
            .framerate(gst::Fraction::new(fps.max(1) as i32, 1))
            .build();
        let src = gst_app::AppSrc::builder()
            .caps(&caps)
            .format(gst::Format::Time)
            .is_live(false)
            .block(true)
            .max_bytes((width * height * 3 * 4) as u64)
            .build();
        let convert = make("videoconvert")?;
        let mut chain: Vec<gst::Element> = vec![src.clone().upcast(), convert];
        for e in enc {
            let el = make(e)?;
            if *e == "x264enc" {
                el.set_property_from_str("speed-preset", "veryfast");
                el.set_property_from_str("tune", "zerolatency");
            }
            chain.push(el);
        }
        chain.push(make(mux)?);
        let sink = make("filesink")?;
        sink.set_property("location", path.to_string_lossy().as_ref());
        chain.push(sink);
        pipeline.add_many(&chain).map_err(|e| err(&path, e))?;
        gst::Element::link_many(&chain).map_err(|e| err(&path, e))?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| err(&path, e))?;
        Ok(Self {
            pipeline,
            src,
            width,
            height,
            fps: fps.max(1),
            frames: 0,
            path,
        })
    }

    /// Append a BGR frame of the writer's size.
    pub fn write(&mut self, img: &Mat) -> Result<()> {
        if img.cols() as u32 != self.width || img.rows() as u32 != self.height {
            return Err(err(
                &self.path,
                format!(
                    "frame is {}x{}, the video {}x{}",
                    img.cols(),
                    img.rows(),
                    self.width,
                    self.height
                ),
            ));
        }
        let img = if img.is_continuous() {
            img.clone()
        } else {
            img.try_clone().map_err(|e| err(&self.path, e))?
        };
        let bytes = img.data_bytes().map_err(|e| err(&self.path, e))?;
        let mut buf = gst::Buffer::from_slice(bytes.to_vec());
        {
            let b = buf.get_mut().expect("a new buffer is writable");
            let dur = 1_000_000_000 / self.fps as u64;
            b.set_pts(gst::ClockTime::from_nseconds(self.frames * dur));
            b.set_duration(gst::ClockTime::from_nseconds(dur));
        }
        self.src
            .push_buffer(buf)
            .map_err(|e| err(&self.path, format!("encoder refused a frame: {e:?}")))?;
        self.frames += 1;
        Ok(())
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flush and close the file.
    pub fn finish(self) -> Result<()> {
        let _ = self.src.end_of_stream();
        let bus = self.pipeline.bus().expect("a pipeline has a bus");
        let result = match bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            Some(m) => match m.view() {
                gst::MessageView::Error(e) => Err(err(&self.path, e.error())),
                _ => Ok(()),
            },
            None => Err(err(&self.path, "the encoder did not finish within 60 s")),
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        std::thread::sleep(Duration::from_millis(1));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Scalar, CV_8UC3};

    #[test]
    fn writes_a_playable_mp4_and_mkv() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.mp4", "a.mkv"] {
            written_and_read_back(&dir.path().join(name));
        }
        assert!(VideoWriter::create(dir.path().join("a.gif"), 16, 16, 1).is_err());
    }

    fn written_and_read_back(p: &std::path::Path) {
        let mut w = VideoWriter::create(p, 160, 120, 10).unwrap();
        for i in 0..12 {
            let img =
                Mat::new_rows_cols_with_default(120, 160, CV_8UC3, Scalar::all(i as f64 * 20.0))
                    .unwrap();
            w.write(&img).unwrap();
        }
        assert!(w
            .write(&Mat::new_rows_cols_with_default(10, 10, CV_8UC3, Scalar::all(0.0)).unwrap())
            .is_err());
        w.finish().unwrap();
        // Read it back with the eye's own source.
        let src =
            crate::source::FrameSource::open(crate::source::SourceConfig::new(p.to_string_lossy()))
                .unwrap();
        let mut n = 0;
        loop {
            match src.recv(Duration::from_secs(10)).expect("no hang") {
                crate::source::SourceItem::Frame(f) => {
                    assert_eq!((f.width, f.height), (160, 120));
                    n += 1;
                }
                crate::source::SourceItem::End(r) => {
                    r.unwrap();
                    break;
                }
                crate::source::SourceItem::Event(_) => {}
            }
        }
        assert_eq!(n, 12, "{}", p.display());
    }
}
