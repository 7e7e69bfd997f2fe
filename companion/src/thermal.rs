//! The thermal camera of the gimbal (`[camera.thermal]`): a second stream
//! beside the RGB camera, and how its hotspots are found.
//!
//! The common MAVLink gimbals deliver thermal as a second video stream:
//! SIYI ZT6/ZT30 (RTSP, palette-rendered), a Gremsy with a FLIR Boson
//! (radiometric 16-bit over USB/v4l2 in TLinear mode, or palette over
//! analogue/HDMI), a FLIR Lepton on v4l2 (Y16). The stream is either
//!
//! - `radiometric`: GRAY16 counts, turned into °C by `calibration`
//!   (`°C = counts × gain_c_per_count + offset_c`; Boson and Lepton in
//!   TLinear at 0.01 K: gain 0.01, offset −273.15). Without a calibration
//!   the companion refuses to start: a threshold in °C means nothing on
//!   raw counts.
//! - `palette`: 8-bit pictures rendered by the camera (white-hot, ironbow,
//!   …); the detector reads their grey level 0–255, whose scale the
//!   camera's automatic gain sets frame by frame.
//!
//! The hotspot detector ([`tiancha_inference::hotspot`]) needs no model;
//! its bands default by format: a palette stream finds fire (grey ≥ 220),
//! a radiometric one fire (≥ 150 °C) and people (28–40 °C, for gatherings
//! at night). `[[camera.thermal.bands]]` replaces them.
//!
//! The thermal camera has its own intrinsics (`width`, `height`,
//! `hfov_deg`) and sits on the same gimbal as the RGB camera, turned by
//! the `boresight` angles from it; it geotags through the same camera
//! model with those.

use serde::{Deserialize, Serialize};
use tiancha_inference::hotspot::{Calibration, HotspotBand};

/// What the thermal stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThermalFormat {
    /// GRAY16 counts with a count → °C calibration.
    Radiometric,
    /// 8-bit palette-rendered pictures.
    Palette,
}

/// The thermal camera's angles from the RGB camera's optical axis,
/// degrees (a positive yaw looks right, a positive pitch up).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boresight {
    #[serde(default)]
    pub yaw_deg: f64,
    #[serde(default)]
    pub pitch_deg: f64,
    #[serde(default)]
    pub roll_deg: f64,
}

/// `[camera.thermal]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThermalSection {
    /// Source URI (rtsp://, udp://host:port RTP, v4l2:///dev/videoN, a file).
    pub uri: String,
    pub format: ThermalFormat,
    /// Image size the intrinsics refer to (Boson 640 × 512, Lepton 160 × 120).
    pub width: u32,
    pub height: u32,
    /// Horizontal field of view (ideal pinhole), degrees.
    pub hfov_deg: f64,
    #[serde(default)]
    pub boresight: Boresight,
    /// Counts → °C; required for `radiometric`, refused for `palette`.
    #[serde(default)]
    pub calibration: Option<Calibration>,
    /// The hotspot bands; the format's defaults when absent.
    #[serde(default)]
    pub bands: Option<Vec<HotspotBand>>,
}

impl ThermalSection {
    /// The bands in force: the configured ones, or the format's defaults.
    pub fn bands(&self) -> Vec<HotspotBand> {
        match (&self.bands, self.format) {
            (Some(b), _) => b.clone(),
            (None, ThermalFormat::Palette) => vec![HotspotBand::palette_fire()],
            (None, ThermalFormat::Radiometric) => vec![
                HotspotBand::radiometric_fire(),
                HotspotBand::radiometric_person(),
            ],
        }
    }

    /// Checks everything a start-up needs; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let at = "camera.thermal";
        if self.uri.trim().is_empty() {
            return Err(format!("{at}.uri must not be empty"));
        }
        if !(16..=8192).contains(&self.width) || !(16..=8192).contains(&self.height) {
            return Err(format!(
                "{at}: width = {} and height = {} must be within 16..=8192",
                self.width, self.height
            ));
        }
        if !(self.hfov_deg.is_finite() && self.hfov_deg > 1.0 && self.hfov_deg < 179.0) {
            return Err(format!(
                "{at}.hfov_deg = {} must be within (1, 179)",
                self.hfov_deg
            ));
        }
        let b = &self.boresight;
        for (name, v) in [
            ("yaw_deg", b.yaw_deg),
            ("pitch_deg", b.pitch_deg),
            ("roll_deg", b.roll_deg),
        ] {
            if !(v.is_finite() && v.abs() <= 45.0) {
                return Err(format!(
                    "{at}.boresight.{name} = {v} must be within ±45 degrees of the RGB camera"
                ));
            }
        }
        match (self.format, &self.calibration) {
            (ThermalFormat::Radiometric, None) => {
                return Err(format!(
                    "{at}: format = \"radiometric\" needs a calibration: \
                     calibration = {{ gain_c_per_count = …, offset_c = … }} \
                     (FLIR Boson/Lepton TLinear at 0.01 K: 0.01 and -273.15)"
                ))
            }
            (ThermalFormat::Radiometric, Some(c)) => {
                c.validate().map_err(|e| format!("{at}: {e}"))?
            }
            (ThermalFormat::Palette, Some(_)) => {
                return Err(format!(
                    "{at}: format = \"palette\" has no temperatures: remove the calibration, \
                     or set format = \"radiometric\" for a GRAY16 stream"
                ))
            }
            (ThermalFormat::Palette, None) => {}
        }
        let bands = self.bands();
        if bands.is_empty() {
            return Err(format!("{at}.bands must hold at least one band"));
        }
        for band in &bands {
            band.validate().map_err(|e| format!("{at}.bands: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ThermalSection {
        toml::from_str(text).unwrap()
    }

    const BOSON: &str = r#"
uri = "v4l2:///dev/video2"
format = "radiometric"
width = 640
height = 512
hfov_deg = 50.0
boresight = { yaw_deg = 0.4, pitch_deg = -0.2 }
calibration = { gain_c_per_count = 0.01, offset_c = -273.15 }
"#;

    #[test]
    fn a_radiometric_camera_gets_fire_and_people_bands() {
        let t = parse(BOSON);
        t.validate().unwrap();
        let classes: Vec<String> = t.bands().into_iter().map(|b| b.class).collect();
        assert_eq!(classes, ["fire", "person"]);
    }

    #[test]
    fn a_radiometric_camera_without_a_calibration_is_refused() {
        let t = parse(&BOSON.replace(
            "calibration = { gain_c_per_count = 0.01, offset_c = -273.15 }",
            "",
        ));
        let e = t.validate().unwrap_err();
        assert!(e.contains("needs a calibration"), "{e}");
    }

    #[test]
    fn a_palette_camera_with_a_calibration_or_a_bad_band_is_refused() {
        let t = parse(&BOSON.replace("radiometric", "palette"));
        assert!(t.validate().unwrap_err().contains("has no temperatures"));
        let t = parse(
            r#"
uri = "rtsp://192.168.144.25:8554/video2"
format = "palette"
width = 640
height = 512
hfov_deg = 32.0
[[bands]]
class = "fire"
hot = 220.0
grow = 1.5
"#,
        );
        let e = t.validate().unwrap_err();
        assert!(e.contains("grow = 1.5"), "{e}");
    }

    #[test]
    fn an_unknown_format_is_named() {
        let e = toml::from_str::<ThermalSection>(&BOSON.replace("radiometric", "gray8"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("gray8") && e.contains("radiometric"), "{e}");
    }
}
