//! Telemetry noise: what the autopilot *reports* differs from the truth the
//! way real sensors do. The truth (see [`crate::Truth`]) stays exact.
//!
//! - GPS position error: first-order Gauss–Markov (random walk pulled back
//!   to zero with time constant `gps_tau_s`), so consecutive fixes are
//!   correlated as real GNSS errors are;
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
    pub gps_horizontal_m: f64,
    pub gps_vertical_m: f64,
    pub gps_tau_s: f64,
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
            gps_vertical_m: 0.0,
            gps_tau_s: 5.0,
            attitude_deg: 0.0,
            gimbal_deg: 0.0,
            timestamp_jitter_ms: 0.0,
            latency_ms: 0.0,
            seed: 7,
        }
    }
}

impl NoiseConfig {
    /// Typical of a hobby GNSS/IMU stack: 1.5 m horizontal, 3 m vertical,
    /// 0.5° attitude, 0.3° gimbal, 2 ms stamp jitter.
    pub fn realistic(seed: u64) -> Self {
        Self {
            gps_horizontal_m: 1.5,
            gps_vertical_m: 3.0,
            gps_tau_s: 5.0,
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
            ("gps_vertical_m", self.gps_vertical_m),
            ("attitude_deg", self.attitude_deg),
            ("gimbal_deg", self.gimbal_deg),
            ("timestamp_jitter_ms", self.timestamp_jitter_ms),
            ("latency_ms", self.latency_ms),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("noise `{name}`: {v} must be a non-negative number"));
            }
        }
        if self.gps_tau_s.is_nan() || self.gps_tau_s <= 0.0 {
            return Err(format!(
                "noise `gps_tau_s`: {} must be positive",
                self.gps_tau_s
            ));
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

    /// The GPS error (north, east, down metres) at sim time `t`.
    pub fn gps_error(&mut self, t: f64) -> [f64; 3] {
        let (h, v) = (self.cfg.gps_horizontal_m, self.cfg.gps_vertical_m);
        if h == 0.0 && v == 0.0 {
            return [0.0; 3];
        }
        let dt = self.last_t.map_or(1e9, |l| (t - l).max(0.0));
        self.last_t = Some(t);
        let a = (-dt / self.cfg.gps_tau_s).exp();
        let k = (1.0 - a * a).sqrt();
        for (i, s) in [h, h, v].into_iter().enumerate() {
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
