//! Bandwidth adaptation, sans-IO: RTCP receiver reports in (loss fraction,
//! round-trip time), encoder bitrate and frame rate out.
//!
//! The rule is AIMD-like and deliberately simple, so that an operator can
//! predict it:
//!
//! | report | bitrate | frame rate |
//! |---|---|---|
//! | congested: loss ≥ 10 % or RTT ≥ 1000 ms | × 0.5 | × 0.5 |
//! | degraded: loss ≥ 2 % or RTT ≥ 400 ms | × 0.75 | × 0.8 |
//! | clean: loss < 1 % and RTT < 250 ms (or unknown), 3 reports in a row | × 1.15 (at least +50 kbit/s) | + 1 |
//! | otherwise | hold | hold |
//!
//! Both stay within `[min, max]`; a step down resets the clean streak, so
//! the stream climbs back only after the link has been clean for three
//! reports (RTCP sends one every few seconds).

use serde::{Deserialize, Serialize};

/// What a receiver report says about the link (the worst of them when
/// several viewers report).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinkReport {
    /// Fraction of RTP packets lost since the previous report, 0..=1.
    pub loss_fraction: f64,
    /// Round-trip time from the report's LSR/DLSR, when it has one.
    pub rtt_ms: Option<f64>,
    /// Interarrival jitter, ms.
    pub jitter_ms: f64,
}

/// Bounds of the adaptation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    pub max_bitrate_kbps: u32,
    pub min_bitrate_kbps: u32,
    pub max_fps: u32,
    pub min_fps: u32,
}

/// What the encoder should run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateTarget {
    pub bitrate_kbps: u32,
    pub fps: u32,
}

/// How a report reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkVerdict {
    Congested,
    Degraded,
    Clean,
    Fair,
}

/// Reports in a row that must be clean before stepping up.
pub const CLEAN_REPORTS_TO_STEP_UP: u32 = 3;

pub fn verdict(r: &LinkReport) -> LinkVerdict {
    let loss = if r.loss_fraction.is_finite() {
        r.loss_fraction.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let rtt = r.rtt_ms.filter(|x| x.is_finite() && *x >= 0.0);
    if loss >= 0.10 || rtt.is_some_and(|x| x >= 1000.0) {
        LinkVerdict::Congested
    } else if loss >= 0.02 || rtt.is_some_and(|x| x >= 400.0) {
        LinkVerdict::Degraded
    } else if loss < 0.01 && rtt.is_none_or(|x| x < 250.0) {
        LinkVerdict::Clean
    } else {
        LinkVerdict::Fair
    }
}

/// The decision: from the current target, a report and the number of
/// clean reports before it, the new target and clean streak.
pub fn decide(
    limits: &RateLimits,
    current: RateTarget,
    report: &LinkReport,
    clean_streak: u32,
) -> (RateTarget, u32) {
    let clamp = |t: RateTarget| RateTarget {
        bitrate_kbps: t
            .bitrate_kbps
            .clamp(limits.min_bitrate_kbps, limits.max_bitrate_kbps),
        fps: t.fps.clamp(limits.min_fps, limits.max_fps),
    };
    let scale = |v: u32, f: f64| (v as f64 * f).floor() as u32;
    match verdict(report) {
        LinkVerdict::Congested => (
            clamp(RateTarget {
                bitrate_kbps: scale(current.bitrate_kbps, 0.5),
                fps: scale(current.fps, 0.5),
            }),
            0,
        ),
        LinkVerdict::Degraded => (
            clamp(RateTarget {
                bitrate_kbps: scale(current.bitrate_kbps, 0.75),
                fps: scale(current.fps, 0.8),
            }),
            0,
        ),
        LinkVerdict::Fair => (clamp(current), 0),
        LinkVerdict::Clean => {
            let streak = clean_streak + 1;
            if streak >= CLEAN_REPORTS_TO_STEP_UP {
                let up = scale(current.bitrate_kbps, 1.15).max(current.bitrate_kbps + 50);
                (
                    clamp(RateTarget {
                        bitrate_kbps: up,
                        fps: current.fps + 1,
                    }),
                    0,
                )
            } else {
                (clamp(current), streak)
            }
        }
    }
}

/// The controller: [`decide`] with its state.
#[derive(Debug, Clone)]
pub struct RateController {
    limits: RateLimits,
    target: RateTarget,
    clean_streak: u32,
}

impl RateController {
    /// Starts at the maximum (the link is assumed good until a report
    /// says otherwise).
    pub fn new(limits: RateLimits) -> Self {
        Self {
            target: RateTarget {
                bitrate_kbps: limits.max_bitrate_kbps,
                fps: limits.max_fps,
            },
            limits,
            clean_streak: 0,
        }
    }

    pub fn target(&self) -> RateTarget {
        self.target
    }

    /// Take one report; returns the (possibly unchanged) target.
    pub fn on_report(&mut self, r: &LinkReport) -> RateTarget {
        let (t, s) = decide(&self.limits, self.target, r, self.clean_streak);
        self.target = t;
        self.clean_streak = s;
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RateLimits = RateLimits {
        max_bitrate_kbps: 1000,
        min_bitrate_kbps: 200,
        max_fps: 10,
        min_fps: 2,
    };

    fn report(loss: f64, rtt: Option<f64>) -> LinkReport {
        LinkReport {
            loss_fraction: loss,
            rtt_ms: rtt,
            jitter_ms: 1.0,
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&report(0.0, None)), LinkVerdict::Clean);
        assert_eq!(verdict(&report(0.005, Some(100.0))), LinkVerdict::Clean);
        assert_eq!(verdict(&report(0.015, Some(100.0))), LinkVerdict::Fair);
        assert_eq!(verdict(&report(0.0, Some(300.0))), LinkVerdict::Fair);
        assert_eq!(verdict(&report(0.03, None)), LinkVerdict::Degraded);
        assert_eq!(verdict(&report(0.0, Some(500.0))), LinkVerdict::Degraded);
        assert_eq!(verdict(&report(0.2, Some(10.0))), LinkVerdict::Congested);
        assert_eq!(verdict(&report(0.0, Some(1500.0))), LinkVerdict::Congested);
        // Garbage reads as the worst, not as clean.
        assert_eq!(verdict(&report(f64::NAN, None)), LinkVerdict::Congested);
        // A negative or NaN RTT is no RTT.
        assert_eq!(verdict(&report(0.0, Some(f64::NAN))), LinkVerdict::Clean);
    }

    #[test]
    fn a_degrading_link_lowers_bitrate_and_fps_to_the_floor_and_no_further() {
        let mut c = RateController::new(LIMITS);
        assert_eq!(
            c.target(),
            RateTarget {
                bitrate_kbps: 1000,
                fps: 10
            }
        );
        assert_eq!(
            c.on_report(&report(0.05, None)),
            RateTarget {
                bitrate_kbps: 750,
                fps: 8
            }
        );
        assert_eq!(
            c.on_report(&report(0.25, None)),
            RateTarget {
                bitrate_kbps: 375,
                fps: 4
            }
        );
        for _ in 0..10 {
            c.on_report(&report(0.5, Some(2000.0)));
        }
        assert_eq!(
            c.target(),
            RateTarget {
                bitrate_kbps: 200,
                fps: 2
            }
        );
    }

    #[test]
    fn recovery_needs_three_clean_reports_per_step_and_stops_at_the_max() {
        let mut c = RateController::new(LIMITS);
        for _ in 0..10 {
            c.on_report(&report(0.5, None));
        }
        let floor = c.target();
        c.on_report(&report(0.0, Some(20.0)));
        c.on_report(&report(0.0, Some(20.0)));
        assert_eq!(c.target(), floor, "two clean reports: hold");
        let up = c.on_report(&report(0.0, Some(20.0)));
        assert_eq!(
            up,
            RateTarget {
                bitrate_kbps: 250,
                fps: 3
            }
        );
        // A fair report in between resets the streak.
        c.on_report(&report(0.0, None));
        c.on_report(&report(0.0, None));
        c.on_report(&report(0.015, None));
        c.on_report(&report(0.0, None));
        assert_eq!(c.target(), up);
        for _ in 0..200 {
            c.on_report(&report(0.0, None));
        }
        assert_eq!(
            c.target(),
            RateTarget {
                bitrate_kbps: 1000,
                fps: 10
            }
        );
    }

    #[test]
    fn decide_never_leaves_the_limits() {
        let mut rng = 7u64;
        let mut next = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) as f64 / (1u64 << 31) as f64
        };
        let mut t = RateTarget {
            bitrate_kbps: 600,
            fps: 6,
        };
        let mut s = 0;
        for _ in 0..5_000 {
            let r = report(next() * 0.3, Some(next() * 1500.0));
            (t, s) = decide(&LIMITS, t, &r, s);
            assert!((200..=1000).contains(&t.bitrate_kbps), "{t:?}");
            assert!((2..=10).contains(&t.fps), "{t:?}");
        }
    }
}
