//! "Where was the camera at time t?" — the pose history and the clock
//! mapping between the autopilot's boot time and the companion's clock.
//!
//! Telemetry is stamped with the autopilot's `time_boot_ms`; camera frames
//! with the companion's wall clock (Unix ms). [`ClockSync`] fits
//! `boot_ms = offset + rate × unix_ms` from TIMESYNC exchanges (round trip
//! halved, the fastest exchanges trusted most); the rate is 1 on real
//! hardware and the time scale when flying the simulator in fast time.
//! Until a TIMESYNC answer arrives, SYSTEM_TIME (the autopilot's GPS time)
//! stands in, assuming the companion's clock is synchronised too.
//!
//! [`PoseHistory`] keeps the last minute of position, attitude and gimbal
//! samples and interpolates them (linear for position, slerp for
//! rotations) at any time, extrapolating a little past the newest sample.

use std::collections::VecDeque;

use nalgebra::{Matrix3, Rotation3, UnitQuaternion, Vector3};
use serde::Serialize;
use tiancha_geometry::geodesy::LatLonAlt;

use crate::state::YawFrame;

/// How the mapping was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ClockSource {
    Timesync,
    SystemTime,
}

/// `boot_ms = offset_ms + rate × unix_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClockMap {
    pub offset_ms: f64,
    pub rate: f64,
    pub source: ClockSource,
    /// Round trip of the best TIMESYNC exchange (uncertainty ≈ half).
    pub best_rtt_ms: Option<f64>,
}

impl ClockMap {
    pub fn boot_ms(&self, unix_ms: f64) -> f64 {
        self.offset_ms + self.rate * unix_ms
    }

    pub fn unix_ms(&self, boot_ms: f64) -> f64 {
        (boot_ms - self.offset_ms) / self.rate
    }
}

#[derive(Debug, Clone, Copy)]
struct SyncSample {
    unix_ms: f64,
    boot_ms: f64,
    rtt_ms: f64,
}

/// Estimates the boot-time ↔ companion-clock mapping.
#[derive(Debug, Clone, Default)]
pub struct ClockSync {
    samples: VecDeque<SyncSample>,
    system_time: Option<(f64, f64)>,
    map: Option<ClockMap>,
}

const SYNC_WINDOW: usize = 32;
/// Below this span of samples the rate is assumed to be 1.
const MIN_RATE_SPAN_MS: f64 = 900.0;
/// Real clocks agree to far better than this; a rate further from 1 is a
/// simulator in fast (or slow) time. Jitter cannot fake it over a second.
const SIM_RATE_THRESHOLD: f64 = 0.2;

impl ClockSync {
    /// A TIMESYNC round trip: we sent at `sent_unix_ms`, the autopilot
    /// stamped `remote_boot_ms`, we received at `recv_unix_ms`.
    pub fn add_timesync(&mut self, sent_unix_ms: f64, recv_unix_ms: f64, remote_boot_ms: f64) {
        let rtt = recv_unix_ms - sent_unix_ms;
        if !(0.0..10_000.0).contains(&rtt) || !remote_boot_ms.is_finite() {
            return;
        }
        self.samples.push_back(SyncSample {
            unix_ms: sent_unix_ms + rtt / 2.0,
            boot_ms: remote_boot_ms,
            rtt_ms: rtt,
        });
        while self.samples.len() > SYNC_WINDOW {
            self.samples.pop_front();
        }
        self.refit();
    }

    /// SYSTEM_TIME: the autopilot's Unix time (from GPS) at a boot time.
    pub fn add_system_time(&mut self, autopilot_unix_ms: f64, boot_ms: f64) {
        if autopilot_unix_ms <= 0.0 {
            return; // no GPS time yet
        }
        self.system_time = Some((autopilot_unix_ms, boot_ms));
        if self.samples.is_empty() {
            self.map = Some(ClockMap {
                offset_ms: boot_ms - autopilot_unix_ms,
                rate: 1.0,
                source: ClockSource::SystemTime,
                best_rtt_ms: None,
            });
        }
    }

    /// Forget everything (the autopilot rebooted).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    pub fn map(&self) -> Option<ClockMap> {
        self.map
    }

    /// TIMESYNC samples in the window.
    pub fn samples(&self) -> usize {
        self.samples.len()
    }

    fn refit(&mut self) {
        let best = self
            .samples
            .iter()
            .map(|s| s.rtt_ms)
            .fold(f64::INFINITY, f64::min);
        // Trust the fast exchanges: slow ones carry queueing delay.
        let good: Vec<SyncSample> = self
            .samples
            .iter()
            .copied()
            .filter(|s| s.rtt_ms <= best * 2.0 + 2.0)
            .collect();
        let n = good.len() as f64;
        let mx = good.iter().map(|s| s.unix_ms).sum::<f64>() / n;
        let my = good.iter().map(|s| s.boot_ms).sum::<f64>() / n;
        let span = good
            .iter()
            .map(|s| s.unix_ms)
            .fold(f64::NEG_INFINITY, f64::max)
            - good.iter().map(|s| s.unix_ms).fold(f64::INFINITY, f64::min);
        let mut rate = 1.0;
        if good.len() >= 4 && span >= MIN_RATE_SPAN_MS {
            let sxx: f64 = good.iter().map(|s| (s.unix_ms - mx).powi(2)).sum();
            let sxy: f64 = good
                .iter()
                .map(|s| (s.unix_ms - mx) * (s.boot_ms - my))
                .sum();
            let r = sxy / sxx;
            // Real clocks agree to well under 1 %: anything within the
            // threshold is jitter, and the rate stays exactly 1.
            if r.is_finite() && r > 0.0 && (r - 1.0).abs() >= SIM_RATE_THRESHOLD {
                rate = r;
            }
        }
        self.map = Some(ClockMap {
            offset_ms: my - rate * mx,
            rate,
            source: ClockSource::Timesync,
            best_rtt_ms: Some(best),
        });
    }
}

/// One position sample (GLOBAL_POSITION_INT).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PositionSample {
    pub boot_ms: f64,
    pub lat_deg: f64,
    pub lon_deg: f64,
    pub alt_m: f64,
    pub velocity_ned_mps: [f64; 3],
}

/// One attitude sample, NED ← body (FRD).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttitudeSample {
    pub boot_ms: f64,
    pub q: UnitQuaternion<f64>,
}

/// One gimbal sample: roll/pitch relative to the horizon; yaw relative to
/// `yaw_frame`. `q` is that rotation (the gimbal's FRD axes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GimbalSample {
    pub boot_ms: f64,
    pub q: UnitQuaternion<f64>,
    pub yaw_frame: YawFrame,
}

/// Where the camera was, and how it was pointed, at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CameraPose {
    pub t_unix_ms: f64,
    /// The same instant on the autopilot's clock.
    pub boot_ms: f64,
    /// Vehicle (camera) position, altitude AMSL.
    pub position: LatLonAlt,
    pub velocity_ned_mps: [f64; 3],
    /// NED ← body (FRD).
    #[serde(skip)]
    pub vehicle_attitude: UnitQuaternion<f64>,
    /// NED ← gimbal (FRD), when a gimbal reports its attitude.
    #[serde(skip)]
    pub gimbal_attitude: Option<UnitQuaternion<f64>>,
    /// NED ← camera (x right, y down, z forward: the OpenCV convention).
    #[serde(skip)]
    pub camera_orientation: UnitQuaternion<f64>,
    /// How far past the newest sample the pose was extrapolated (0 when
    /// interpolated).
    pub extrapolated_ms: f64,
}

/// Why a pose could not be given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoseError {
    #[error("no clock mapping yet (no TIMESYNC answer or SYSTEM_TIME with GPS time)")]
    NoClock,
    #[error("no position/attitude telemetry yet")]
    NoData,
    #[error("time {t_boot_ms:.0} ms (autopilot clock) is outside the history [{oldest_ms:.0}, {newest_ms:.0}] (+{max_extrapolation_ms} ms)")]
    OutOfRange {
        t_boot_ms: f64,
        oldest_ms: f64,
        newest_ms: f64,
        max_extrapolation_ms: f64,
    },
}

/// NED ← camera for a camera looking along the gimbal's (or body's) x axis.
pub fn camera_from_frd() -> UnitQuaternion<f64> {
    // Columns: camera x (right) = FRD y; camera y (down) = FRD z; camera z
    // (forward) = FRD x.
    let m = Matrix3::new(0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0);
    UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(m))
}

/// Rotation NED ← FRD from aerospace Euler angles (radians).
pub fn from_euler(roll: f64, pitch: f64, yaw: f64) -> UnitQuaternion<f64> {
    UnitQuaternion::from_euler_angles(roll, pitch, yaw)
}

/// The pose history. Samples must arrive roughly in time order (older
/// out-of-order samples are inserted in place; duplicates are ignored).
#[derive(Debug, Clone)]
pub struct PoseHistory {
    pub clock: ClockSync,
    positions: VecDeque<PositionSample>,
    attitudes: VecDeque<AttitudeSample>,
    gimbals: VecDeque<GimbalSample>,
    /// How much history to keep (ms of autopilot time).
    pub keep_ms: f64,
    /// How far past the newest sample to extrapolate.
    pub max_extrapolation_ms: f64,
    /// Camera orientation relative to the body when no gimbal reports
    /// (default: looking straight down).
    pub fixed_camera_pitch_deg: f64,
}

impl Default for PoseHistory {
    fn default() -> Self {
        Self {
            clock: ClockSync::default(),
            positions: VecDeque::new(),
            attitudes: VecDeque::new(),
            gimbals: VecDeque::new(),
            keep_ms: 60_000.0,
            max_extrapolation_ms: 250.0,
            fixed_camera_pitch_deg: -90.0,
        }
    }
}

trait Stamped {
    fn t(&self) -> f64;
}
impl Stamped for PositionSample {
    fn t(&self) -> f64 {
        self.boot_ms
    }
}
impl Stamped for AttitudeSample {
    fn t(&self) -> f64 {
        self.boot_ms
    }
}
impl Stamped for GimbalSample {
    fn t(&self) -> f64 {
        self.boot_ms
    }
}

fn insert<T: Stamped>(q: &mut VecDeque<T>, s: T, keep_ms: f64) {
    let t = s.t();
    if !t.is_finite() {
        return;
    }
    match q.back() {
        Some(last) if last.t() == t => return,
        Some(last) if last.t() > t => {
            let pos = q.partition_point(|x| x.t() < t);
            if q.get(pos).is_some_and(|x| x.t() == t) {
                return;
            }
            q.insert(pos, s);
        }
        _ => q.push_back(s),
    }
    let newest = q.back().map(|x| x.t()).unwrap_or(t);
    while q.front().is_some_and(|x| x.t() < newest - keep_ms) {
        q.pop_front();
    }
}

/// Index pair around t, and the fraction; or the last index and how far
/// past it.
enum Bracket {
    Between(usize, usize, f64),
    After(usize, f64),
    Before,
}

fn bracket<T: Stamped>(q: &VecDeque<T>, t: f64) -> Option<Bracket> {
    if q.is_empty() {
        return None;
    }
    let i = q.partition_point(|x| x.t() <= t);
    if i == 0 {
        // Before the oldest sample: allow exact equality only.
        return Some(Bracket::Before);
    }
    if i == q.len() {
        let last = q.len() - 1;
        return Some(Bracket::After(last, t - q[last].t()));
    }
    let (a, b) = (i - 1, i);
    let span = q[b].t() - q[a].t();
    let f = if span > 0.0 {
        (t - q[a].t()) / span
    } else {
        0.0
    };
    Some(Bracket::Between(a, b, f))
}

impl PoseHistory {
    pub fn push_position(&mut self, s: PositionSample) {
        insert(&mut self.positions, s, self.keep_ms);
    }

    pub fn push_attitude(&mut self, s: AttitudeSample) {
        insert(&mut self.attitudes, s, self.keep_ms);
    }

    pub fn push_gimbal(&mut self, s: GimbalSample) {
        insert(&mut self.gimbals, s, self.keep_ms);
    }

    /// Forget all samples and the clock (the autopilot rebooted).
    pub fn reset(&mut self) {
        self.positions.clear();
        self.attitudes.clear();
        self.gimbals.clear();
        self.clock.reset();
    }

    /// Newest sample time (autopilot ms), if any.
    pub fn newest_boot_ms(&self) -> Option<f64> {
        match (self.positions.back(), self.attitudes.back()) {
            (Some(p), Some(a)) => Some(p.boot_ms.min(a.boot_ms)),
            _ => None,
        }
    }

    /// The camera pose at companion wall-clock time `t_unix_ms`.
    pub fn pose_at(&self, t_unix_ms: f64) -> Result<CameraPose, PoseError> {
        let map = self.clock.map().ok_or(PoseError::NoClock)?;
        let t = map.boot_ms(t_unix_ms);
        let mut pose = self.pose_at_boot_ms(t)?;
        pose.t_unix_ms = t_unix_ms;
        Ok(pose)
    }

    /// The camera pose at autopilot time `t` (ms since boot).
    pub fn pose_at_boot_ms(&self, t: f64) -> Result<CameraPose, PoseError> {
        if self.positions.is_empty() || self.attitudes.is_empty() {
            return Err(PoseError::NoData);
        }
        let oldest = self.positions[0].boot_ms.max(self.attitudes[0].boot_ms);
        let newest = self.newest_boot_ms().expect("non-empty");
        let out_of_range = || PoseError::OutOfRange {
            t_boot_ms: t,
            oldest_ms: oldest,
            newest_ms: newest,
            max_extrapolation_ms: self.max_extrapolation_ms,
        };
        if t < oldest || t > newest + self.max_extrapolation_ms {
            return Err(out_of_range());
        }
        // Position.
        let (pos, vel, extra_p) = match bracket(&self.positions, t).ok_or(PoseError::NoData)? {
            Bracket::Between(a, b, f) => {
                let (a, b) = (&self.positions[a], &self.positions[b]);
                let lerp = |x: f64, y: f64| x + (y - x) * f;
                let v = [0, 1, 2].map(|i| lerp(a.velocity_ned_mps[i], b.velocity_ned_mps[i]));
                (
                    LatLonAlt::new(
                        lerp(a.lat_deg, b.lat_deg),
                        lerp(a.lon_deg, b.lon_deg),
                        lerp(a.alt_m, b.alt_m),
                    ),
                    v,
                    0.0,
                )
            }
            Bracket::After(i, dt) => {
                let s = &self.positions[i];
                let dt_s = dt / 1000.0;
                let [vn, ve, vd] = s.velocity_ned_mps;
                let m_per_deg_lat = 111_320.0;
                let m_per_deg_lon = 111_320.0 * s.lat_deg.to_radians().cos().max(1e-6);
                (
                    LatLonAlt::new(
                        s.lat_deg + vn * dt_s / m_per_deg_lat,
                        s.lon_deg + ve * dt_s / m_per_deg_lon,
                        s.alt_m - vd * dt_s,
                    ),
                    s.velocity_ned_mps,
                    dt,
                )
            }
            Bracket::Before => return Err(out_of_range()),
        };
        let slerp_at = |q: &VecDeque<AttitudeSample>| -> Option<(UnitQuaternion<f64>, f64)> {
            Some(match bracket(q, t)? {
                Bracket::Between(a, b, f) => (q[a].q.slerp(&q[b].q, f), 0.0),
                Bracket::After(i, dt) => (q[i].q, dt),
                Bracket::Before => return None,
            })
        };
        let (att, extra_a) = slerp_at(&self.attitudes).ok_or_else(out_of_range)?;
        let gimbal = match bracket(&self.gimbals, t) {
            Some(Bracket::Between(a, b, f)) => Some((
                self.gimbals[a].q.slerp(&self.gimbals[b].q, f),
                self.gimbals[a].yaw_frame,
            )),
            Some(Bracket::After(i, dt)) if dt <= 2000.0 => {
                // Gimbal status is slower; hold the last one for a while.
                Some((self.gimbals[i].q, self.gimbals[i].yaw_frame))
            }
            _ => None,
        };
        let gimbal_attitude = gimbal.map(|(q, frame)| match frame {
            YawFrame::Earth => q,
            YawFrame::Vehicle => {
                let (_, _, yaw) = att.euler_angles();
                UnitQuaternion::from_axis_angle(&Vector3::z_axis(), yaw) * q
            }
        });
        let camera_orientation = match gimbal_attitude {
            Some(g) => g * camera_from_frd(),
            None => {
                let mount = UnitQuaternion::from_euler_angles(
                    0.0,
                    self.fixed_camera_pitch_deg.to_radians(),
                    0.0,
                );
                att * mount * camera_from_frd()
            }
        };
        Ok(CameraPose {
            t_unix_ms: f64::NAN,
            boot_ms: t,
            position: pos,
            velocity_ned_mps: vel,
            vehicle_attitude: att,
            gimbal_attitude,
            camera_orientation,
            extrapolated_ms: extra_p.max(extra_a),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist() -> PoseHistory {
        let mut h = PoseHistory::default();
        for i in 0..=10 {
            let t = 1000.0 + i as f64 * 100.0;
            h.push_position(PositionSample {
                boot_ms: t,
                lat_deg: 28.45 + i as f64 * 1e-5,
                lon_deg: 117.94,
                alt_m: 100.0 + i as f64,
                velocity_ned_mps: [11.132, 0.0, -10.0],
            });
            h.push_attitude(AttitudeSample {
                boot_ms: t,
                q: from_euler(0.0, 0.0, (i as f64 * 9.0).to_radians()),
            });
        }
        h
    }

    #[test]
    fn interpolates_position_and_attitude() {
        let h = hist();
        let p = h.pose_at_boot_ms(1150.0).unwrap();
        assert!((p.position.lat_deg - (28.45 + 1.5e-5)).abs() < 1e-12);
        assert!((p.position.alt_m - 101.5).abs() < 1e-9);
        let (_, _, yaw) = p.vehicle_attitude.euler_angles();
        assert!((yaw.to_degrees() - 13.5).abs() < 1e-9);
        assert_eq!(p.extrapolated_ms, 0.0);
    }

    #[test]
    fn extrapolates_a_little_and_refuses_beyond() {
        let h = hist();
        let p = h.pose_at_boot_ms(2100.0).unwrap();
        assert!((p.extrapolated_ms - 100.0).abs() < 1e-9);
        // 11.132 m/s north for 0.1 s ≈ 1e-5 degrees.
        assert!((p.position.lat_deg - (28.45 + 10e-5 + 1e-5)).abs() < 2e-8);
        assert!((p.position.alt_m - 111.0).abs() < 1e-9);
        assert!(matches!(
            h.pose_at_boot_ms(2400.0),
            Err(PoseError::OutOfRange { .. })
        ));
        assert!(matches!(
            h.pose_at_boot_ms(900.0),
            Err(PoseError::OutOfRange { .. })
        ));
    }

    #[test]
    fn nadir_gimbal_points_the_optical_axis_down() {
        let mut h = hist();
        for t in [1000.0, 2000.0] {
            h.push_gimbal(GimbalSample {
                boot_ms: t,
                q: from_euler(0.0, -90f64.to_radians(), 0.0),
                yaw_frame: YawFrame::Vehicle,
            });
        }
        let p = h.pose_at_boot_ms(1000.0).unwrap();
        let axis = p.camera_orientation * Vector3::z();
        assert!((axis - Vector3::new(0.0, 0.0, 1.0)).norm() < 1e-9, "{axis}");
        // Image x (right) is east when the vehicle faces north.
        let right = p.camera_orientation * Vector3::x();
        assert!(
            (right - Vector3::new(0.0, 1.0, 0.0)).norm() < 1e-9,
            "{right}"
        );
    }

    #[test]
    fn level_gimbal_yaw_in_vehicle_frame_adds_the_heading() {
        let mut h = hist();
        h.push_gimbal(GimbalSample {
            boot_ms: 1500.0,
            q: from_euler(0.0, 0.0, 90f64.to_radians()),
            yaw_frame: YawFrame::Vehicle,
        });
        // At 1500 ms the vehicle yaw is 45°: camera looks at 135°.
        let p = h.pose_at_boot_ms(1500.0).unwrap();
        let axis = p.camera_orientation * Vector3::z();
        let bearing = axis.y.atan2(axis.x).to_degrees();
        assert!((bearing - 135.0).abs() < 1e-9, "{bearing}");
    }

    #[test]
    fn clock_fit_recovers_offset_and_rate() {
        let mut c = ClockSync::default();
        // Autopilot booted at unix 1_000_000 ms, running 10x fast.
        for i in 0..20 {
            let sent = 1_000_000.0 + i as f64 * 500.0;
            let rtt = if i % 3 == 0 { 40.0 } else { 4.0 };
            let mid = sent + rtt / 2.0;
            c.add_timesync(sent, sent + rtt, (mid - 1_000_000.0) * 10.0);
        }
        let m = c.map().unwrap();
        assert!((m.rate - 10.0).abs() < 1e-6, "{m:?}");
        assert!((m.boot_ms(1_005_000.0) - 50_000.0).abs() < 1e-3, "{m:?}");
        assert!((m.unix_ms(50_000.0) - 1_005_000.0).abs() < 1e-3);
    }

    #[test]
    fn clock_rate_one_when_real_time() {
        let mut c = ClockSync::default();
        c.add_system_time(1_700_000_000_000.0, 5000.0);
        let m = c.map().unwrap();
        assert_eq!(m.source, ClockSource::SystemTime);
        assert_eq!(m.boot_ms(1_700_000_001_000.0), 6000.0);
        for i in 0..10 {
            let sent = 1_700_000_000_000.0 + i as f64 * 1000.0;
            c.add_timesync(
                sent,
                sent + 3.0 + (i % 2) as f64,
                sent + 1.5 - 1_700_000_000_000.0 + 5000.0,
            );
        }
        let m = c.map().unwrap();
        assert_eq!(m.source, ClockSource::Timesync);
        assert_eq!(m.rate, 1.0);
        assert!((m.boot_ms(1_700_000_001_000.0) - 6000.0).abs() < 1.0);
    }
}
