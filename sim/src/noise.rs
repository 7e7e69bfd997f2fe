//! Telemetry noise: what the autopilot *reports* differs from the truth the
//! way real sensors do. The truth (see [`crate::Truth`]) stays exact.
//!
//! - horizontal position error (GNSS): first-order Gauss–Markov (random
//!   walk pulled back to zero with time constant `gps_tau_s`), so
//!   consecutive fixes are correlated as real GNSS errors are;
//! - height error: its own Gauss–Markov process (`height_m`,
//!   `height_tau_s`) on both `alt` and `relative_alt`. ArduPilot's EKF3
//!   takes its height from the barometer by default (`EK3_SRC1_POSZ` = 1,
//!   Baro; GNSS height only when set to 3), so the height a real
//!   ArduCopter reports drifts slowly by tenths of a metre; it does not
//!   carry the receiver's ~3 m vertical error. The realistic level is a
//!   baro's: 0.5 m over 30 s. A vehicle that flies on GNSS height
//!   (`EK3_SRC1_POSZ` = 3) is modelled by raising `height_m` to ~3 m and
//!   `height_tau_s` to the GNSS's;
//! - attitude and gimbal: white noise on each angle;
//! - timing: each report's `time_boot_ms` is off by white jitter, and
//!   samples can be reported `latency_ms` late (the stamp says when the
//!   sample was taken, the packet leaves later).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Noise levels (1-sigma). All zero = perfect telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseConfig {
    /// Horizontal GNSS error per axis.
    pub gps_horizontal_m: f64,
    pub gps_tau_s: f64,
    /// Error of the reported height (the EKF's: baro by default).
    pub height_m: f64,
    pub height_tau_s: f64,
    pub attitude_deg: f64,
    pub gimbal_deg: f64,
    /// Jitter of `time_boot_ms` stamps.
    pub timestamp_jitter_ms: f64,
    /// Delay between a sample and its report.
    pub latency_ms: f64,
    pub seed: u64,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            gps_horizontal_m: 0.0,
            gps_tau_s: 5.0,
            height_m: 0.0,
            height_tau_s: 30.0,
            attitude_deg: 0.0,
            gimbal_deg: 0.0,
            timestamp_jitter_ms: 0.0,
            latency_ms: 0.0,
            seed: 7,
        }
    }
}

impl NoiseConfig {
    /// Typical of a hobby GNSS/IMU stack on ArduPilot's defaults: 1.5 m
    /// horizontal (GNSS), 0.5 m height (baro, over 30 s), 0.5° attitude,
    /// 0.3° gimbal, 2 ms stamp jitter.
    pub fn realistic(seed: u64) -> Self {
        Self {
            gps_horizontal_m: 1.5,
            gps_tau_s: 5.0,
            height_m: 0.5,
            height_tau_s: 30.0,
            attitude_deg: 0.5,
            gimbal_deg: 0.3,
            timestamp_jitter_ms: 2.0,
            latency_ms: 0.0,
            seed,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("gps_horizontal_m", self.gps_horizontal_m),
            ("height_m", self.height_m),
            ("attitude_deg", self.attitude_deg),
            ("gimbal_deg", self.gimbal_deg),
            ("timestamp_jitter_ms", self.timestamp_jitter_ms),
            ("latency_ms", self.latency_ms),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("noise `{name}`: {v} must be a non-negative number"));
            }
        }
        for (name, v) in [
            ("gps_tau_s", self.gps_tau_s),
            ("height_tau_s", self.height_tau_s),
        ] {
            if v.is_nan() || v <= 0.0 {
                return Err(format!("noise `{name}`: {v} must be positive"));
            }
        }
        Ok(())
    }
}

/// The noise generators' state.
#[derive(Debug, Clone)]
pub struct Noise {
    pub cfg: NoiseConfig,
    rng: StdRng,
    /// GPS error, metres north/east/down.
    gps: [f64; 3],
    last_t: Option<f64>,
}

impl Noise {
    pub fn new(cfg: NoiseConfig) -> Self {
        Self {
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            gps: [0.0; 3],
            last_t: None,
        }
    }

    /// A standard normal sample (Box–Muller).
    pub fn gauss(&mut self) -> f64 {
        let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// The position error (north, east, down metres) at sim time `t`:
    /// the GNSS's horizontally, the height source's vertically.
    pub fn gps_error(&mut self, t: f64) -> [f64; 3] {
        let (h, v) = (self.cfg.gps_horizontal_m, self.cfg.height_m);
        if h == 0.0 && v == 0.0 {
            return [0.0; 3];
        }
        let dt = self.last_t.map_or(1e9, |l| (t - l).max(0.0));
        self.last_t = Some(t);
        for (i, (s, tau)) in [
            (h, self.cfg.gps_tau_s),
            (h, self.cfg.gps_tau_s),
            (v, self.cfg.height_tau_s),
        ]
        .into_iter()
        .enumerate()
        {
            let a = (-dt / tau).exp();
            let k = (1.0 - a * a).sqrt();
            let g = self.gauss();
            self.gps[i] = a * self.gps[i] + k * s * g;
        }
        self.gps
    }

    pub fn attitude_rad(&mut self) -> f64 {
        let s = self.cfg.attitude_deg;
        if s == 0.0 {
            return 0.0;
        }
        self.gauss() * s.to_radians()
    }

    pub fn gimbal_deg(&mut self) -> f64 {
        let s = self.cfg.gimbal_deg;
        if s == 0.0 {
            return 0.0;
        }
        self.gauss() * s
    }

    pub fn stamp_ms(&mut self) -> f64 {
        let s = self.cfg.timestamp_jitter_ms;
        if s == 0.0 {
            return 0.0;
        }
        self.gauss() * s
    }
}
