//! `[video]`: where each drone's video comes from, how viewers get it and
//! how much is kept around alerts.
//!
//! ```toml
//! [video]
//! pre_alert_s = 10      # a clip starts this long before the alert
//! post_alert_s = 10     # ... and ends this long after it
//! mjpeg_fps = 10        # cap of the MJPEG fallback
//! mjpeg_quality = 70
//! [video.drones."sr-01"]
//! url = "rtsp://127.0.0.1:8554/live"
//! latency_ms = 0        # rtspsrc jitter buffer; 0 = as low as it goes
//! record = true         # keep a ring buffer (the source runs always)
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoConfig {
    /// Per drone id.
    pub drones: BTreeMap<String, DroneVideoConfig>,
    pub pre_alert_s: f64,
    pub post_alert_s: f64,
    /// Frame-rate cap of the MJPEG fallback (frames/s).
    pub mjpeg_fps: u32,
    /// JPEG quality of the MJPEG fallback (1-100).
    pub mjpeg_quality: u32,
    /// Most WebRTC / MJPEG viewers at once, all drones together.
    pub max_viewers: usize,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            drones: BTreeMap::new(),
            pre_alert_s: 10.0,
            post_alert_s: 10.0,
            mjpeg_fps: 10,
            mjpeg_quality: 70,
            max_viewers: 32,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DroneVideoConfig {
    /// `rtsp://` or `rtsps://` URL of the drone's H.264 stream.
    pub url: String,
    /// rtspsrc jitter-buffer latency, ms.
    #[serde(default)]
    pub latency_ms: u32,
    /// Keep the last `pre_alert_s + post_alert_s` seconds so alerts get a
    /// clip (the source then runs even when nobody watches).
    #[serde(default = "yes")]
    pub record: bool,
    /// Pull the RTSP stream over TCP (interleaved) instead of UDP.
    #[serde(default)]
    pub tcp: bool,
}

fn yes() -> bool {
    true
}

impl VideoConfig {
    /// What is wrong, naming the field.
    pub fn check(&self) -> Result<(), String> {
        for (name, v, lo, hi) in [
            ("video.pre_alert_s", self.pre_alert_s, 0.0, 300.0),
            ("video.post_alert_s", self.post_alert_s, 0.0, 300.0),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(format!("{name} = {v} is not in [{lo}, {hi}] seconds"));
            }
        }
        if !(1..=30).contains(&self.mjpeg_fps) {
            return Err(format!(
                "video.mjpeg_fps = {} is not in [1, 30]",
                self.mjpeg_fps
            ));
        }
        if !(1..=100).contains(&self.mjpeg_quality) {
            return Err(format!(
                "video.mjpeg_quality = {} is not in [1, 100]",
                self.mjpeg_quality
            ));
        }
        if !(1..=1000).contains(&self.max_viewers) {
            return Err(format!(
                "video.max_viewers = {} is not in [1, 1000]",
                self.max_viewers
            ));
        }
        for (id, d) in &self.drones {
            if id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            {
                return Err(format!(
                    "video.drones.\"{id}\": a drone id is 1-64 of A-Z a-z 0-9 _ - ."
                ));
            }
            let rest = d
                .url
                .strip_prefix("rtsp://")
                .or_else(|| d.url.strip_prefix("rtsps://"));
            match rest {
                Some(r) if !r.is_empty() && !r.starts_with('/') => {}
                _ => {
                    return Err(format!(
                    "video.drones.\"{id}\".url `{}` must be rtsp://HOST[:PORT]/PATH or rtsps://...",
                    d.url
                ))
                }
            }
            if d.url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "video.drones.\"{id}\".url contains whitespace or control characters"
                ));
            }
            if d.latency_ms > 10_000 {
                return Err(format!(
                    "video.drones.\"{id}\".latency_ms = {} is over 10000",
                    d.latency_ms
                ));
            }
        }
        Ok(())
    }

    /// How long the ring buffer keeps (s): the whole clip window plus a
    /// margin for the alert's trip to the station.
    pub fn ring_s(&self) -> f64 {
        self.pre_alert_s + self.post_alert_s + 5.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<VideoConfig, String> {
        let c: VideoConfig = toml::from_str(t).map_err(|e| e.to_string())?;
        c.check().map(|_| c)
    }

    #[test]
    fn a_drone_with_a_url_parses() {
        let c =
            parse("pre_alert_s = 5\n[drones.\"sr-01\"]\nurl = \"rtsp://127.0.0.1:8554/live\"\n")
                .unwrap();
        assert_eq!(c.pre_alert_s, 5.0);
        let d = &c.drones["sr-01"];
        assert!(d.record && !d.tcp);
        assert_eq!(d.latency_ms, 0);
    }

    #[test]
    fn bad_values_name_the_field() {
        for (t, want) in [
            (
                "[drones.a]\nurl = \"http://x/y\"\n",
                "video.drones.\"a\".url",
            ),
            (
                "[drones.a]\nurl = \"rtsp:///y\"\n",
                "video.drones.\"a\".url",
            ),
            ("[drones.\"a b\"]\nurl = \"rtsp://h/y\"\n", "drone id"),
            ("pre_alert_s = -1\n", "video.pre_alert_s"),
            ("post_alert_s = 1000\n", "video.post_alert_s"),
            ("mjpeg_fps = 0\n", "video.mjpeg_fps"),
            (
                "[drones.a]\nurl = \"rtsp://h/y\"\nlatency_ms = 99999\n",
                "latency_ms",
            ),
        ] {
            let e = parse(t).unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
        assert!(parse("[drones.a]\nuri = \"rtsp://h/y\"\n")
            .unwrap_err()
            .contains("unknown field"));
    }
}
