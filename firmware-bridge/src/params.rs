//! The parameter microservice, ground side, sans-IO: read and set named
//! parameters (<https://mavlink.io/en/services/parameter.html>).
//!
//! [`ParamClient`] is fed with received messages and the time
//! ([`handle`](ParamClient::handle), [`handle_timeout`](ParamClient::handle_timeout));
//! it says what to send ([`poll_transmit`](ParamClient::poll_transmit)), when
//! to wake ([`poll_timeout`](ParamClient::poll_timeout)) and what finished
//! ([`poll_result`](ParamClient::poll_result)).
//!
//! - A read sends `PARAM_REQUEST_READ` by name and completes with the
//!   first `PARAM_VALUE` of that name.
//! - A set needs the parameter's type. When it is not known from an
//!   earlier `PARAM_VALUE`, the client reads the parameter first. It then
//!   sends `PARAM_SET` and completes when the autopilot echoes a
//!   `PARAM_VALUE` of that name. An echo with another value means the
//!   autopilot kept its own (read-only, out of range): that is an error
//!   that names both values, never a silent success.
//! - Requests and sets are resent after `retry_interval`, up to
//!   `attempts` times. A lost `PARAM_VALUE` is indistinguishable from a
//!   lost request, and both are idempotent.
//!
//! Value encoding differs per autopilot ([`ParamEncoding`]): ArduPilot
//! casts integers to the float field; PX4 copies an integer's bytes into
//! it (`MAV_PROTOCOL_CAPABILITY_PARAM_ENCODE_BYTEWISE`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::codec::{dialect, Msg};

/// How integer parameter values travel in the float field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum ParamEncoding {
    /// The integer's value as a float (ArduPilot).
    #[default]
    Cast,
    /// The integer's bytes in the float's place (PX4).
    Bytewise,
}

impl ParamEncoding {
    /// The number a `PARAM_VALUE` carries.
    pub fn decode(self, raw: f32, ty: dialect::MavParamType) -> f64 {
        use dialect::MavParamType::*;
        match (self, ty) {
            (ParamEncoding::Bytewise, MAV_PARAM_TYPE_INT32) => raw.to_bits() as i32 as f64,
            (ParamEncoding::Bytewise, MAV_PARAM_TYPE_UINT32) => raw.to_bits() as f64,
            (ParamEncoding::Bytewise, MAV_PARAM_TYPE_INT16) => raw.to_bits() as i16 as f64,
            (ParamEncoding::Bytewise, MAV_PARAM_TYPE_UINT16) => raw.to_bits() as u16 as f64,
            (ParamEncoding::Bytewise, MAV_PARAM_TYPE_INT8) => raw.to_bits() as i8 as f64,
            (ParamEncoding::Bytewise, MAV_PARAM_TYPE_UINT8) => raw.to_bits() as u8 as f64,
            _ => raw as f64,
        }
    }

    /// The float field that carries `value` as a `ty`.
    pub fn encode(self, value: f64, ty: dialect::MavParamType) -> f32 {
        use dialect::MavParamType::*;
        let int = value.round();
        match (self, ty) {
            (ParamEncoding::Bytewise, MAV_PARAM_TYPE_INT32) => f32::from_bits(int as i32 as u32),
            (ParamEncoding::Bytewise, MAV_PARAM_TYPE_UINT32) => f32::from_bits(int as u32),
            (ParamEncoding::Bytewise, MAV_PARAM_TYPE_INT16) => {
                f32::from_bits(int as i16 as u16 as u32)
            }
            (ParamEncoding::Bytewise, MAV_PARAM_TYPE_UINT16) => f32::from_bits(int as u16 as u32),
            (ParamEncoding::Bytewise, MAV_PARAM_TYPE_INT8) => {
                f32::from_bits(int as i8 as u8 as u32)
            }
            (ParamEncoding::Bytewise, MAV_PARAM_TYPE_UINT8) => f32::from_bits(int as u8 as u32),
            _ => value as f32,
        }
    }
}

/// A parameter as the autopilot reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamValue {
    pub name: String,
    pub value: f64,
    /// `MAV_PARAM_TYPE` as a number.
    pub ty: u8,
}

/// Why a parameter operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("parameter name {0:?} is not 1 to 16 ASCII characters")]
    BadName(String),
    #[error("parameter {name}: value {value} is not a finite number")]
    BadValue { name: String, value: f64 },
    #[error("parameter {name}: no answer after {attempts} attempts (does the autopilot have it?)")]
    Timeout { name: String, attempts: u32 },
    #[error("parameter {name}: set to {wanted}, but the autopilot kept {kept}")]
    NotTaken {
        name: String,
        wanted: f64,
        kept: f64,
    },
    #[error("no autopilot found yet")]
    NoAutopilot,
}

/// Retry policy.
#[derive(Debug, Clone, Serialize)]
pub struct ParamConfig {
    pub retry_interval: Duration,
    pub attempts: u32,
}

impl Default for ParamConfig {
    fn default() -> Self {
        Self {
            retry_interval: Duration::from_millis(700),
            attempts: 6,
        }
    }
}

/// Identifies one operation's result.
pub type ParamOpId = u64;

#[derive(Debug, Clone)]
enum Stage {
    Read,
    /// Reading the type before setting.
    LearnType {
        value: f64,
    },
    Set {
        value: f64,
        ty: dialect::MavParamType,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    id: ParamOpId,
    name: String,
    stage: Stage,
    attempts: u32,
    deadline: Instant,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ParamStats {
    pub reads: u64,
    pub sets: u64,
    pub retries: u64,
    pub failures: u64,
}

/// The parameter client. See the module docs.
#[derive(Debug)]
pub struct ParamClient {
    cfg: ParamConfig,
    target: Option<(u8, u8)>,
    encoding: ParamEncoding,
    types: HashMap<String, dialect::MavParamType>,
    pending: Vec<Pending>,
    out: VecDeque<Msg>,
    results: VecDeque<(ParamOpId, Result<ParamValue, ParamError>)>,
    pub stats: ParamStats,
}

fn name_bytes(name: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b
}

impl ParamClient {
    pub fn new(cfg: ParamConfig) -> Self {
        Self {
            cfg,
            target: None,
            encoding: ParamEncoding::Cast,
            types: HashMap::new(),
            pending: Vec::new(),
            out: VecDeque::new(),
            results: VecDeque::new(),
            stats: ParamStats::default(),
        }
    }

    pub fn set_target(&mut self, system: u8, component: u8, encoding: ParamEncoding) {
        self.target = Some((system, component));
        self.encoding = encoding;
    }

    /// Read `name`.
    pub fn read(&mut self, id: ParamOpId, name: &str, now: Instant) {
        self.start(id, name, Stage::Read, now);
    }

    /// Set `name` to `value` and wait for the echo.
    pub fn set(&mut self, id: ParamOpId, name: &str, value: f64, now: Instant) {
        if !value.is_finite() {
            self.results.push_back((
                id,
                Err(ParamError::BadValue {
                    name: name.into(),
                    value,
                }),
            ));
            return;
        }
        let stage = match self.types.get(name) {
            Some(ty) => Stage::Set { value, ty: *ty },
            None => Stage::LearnType { value },
        };
        self.start(id, name, stage, now);
    }

    fn start(&mut self, id: ParamOpId, name: &str, stage: Stage, now: Instant) {
        if name.is_empty() || name.len() > 16 || !name.is_ascii() {
            self.results
                .push_back((id, Err(ParamError::BadName(name.into()))));
            return;
        }
        if self.target.is_none() {
            self.results.push_back((id, Err(ParamError::NoAutopilot)));
            return;
        }
        let p = Pending {
            id,
            name: name.into(),
            stage,
            attempts: 1,
            deadline: now + self.cfg.retry_interval,
        };
        self.transmit(&p);
        self.pending.push(p);
    }

    fn transmit(&mut self, p: &Pending) {
        let Some((sys, comp)) = self.target else {
            return;
        };
        let msg = match p.stage {
            Stage::Read | Stage::LearnType { .. } => {
                self.stats.reads += 1;
                Msg::PARAM_REQUEST_READ(dialect::PARAM_REQUEST_READ_DATA {
                    param_index: -1,
                    target_system: sys,
                    target_component: comp,
                    param_id: name_bytes(&p.name).into(),
                })
            }
            Stage::Set { value, ty } => {
                self.stats.sets += 1;
                Msg::PARAM_SET(dialect::PARAM_SET_DATA {
                    param_value: self.encoding.encode(value, ty),
                    target_system: sys,
                    target_component: comp,
                    param_id: name_bytes(&p.name).into(),
                    param_type: ty,
                })
            }
        };
        self.out.push_back(msg);
    }

    pub fn poll_transmit(&mut self) -> Option<Msg> {
        self.out.pop_front()
    }

    pub fn poll_result(&mut self) -> Option<(ParamOpId, Result<ParamValue, ParamError>)> {
        self.results.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    pub fn is_busy(&self) -> bool {
        !self.pending.is_empty()
    }

    /// A message from the autopilot. True if it was a `PARAM_VALUE`.
    pub fn handle(&mut self, msg: &Msg, now: Instant) -> bool {
        let Msg::PARAM_VALUE(v) = msg else {
            return false;
        };
        let Ok(name) = v.param_id.to_str() else {
            return true;
        };
        let name = name.to_string();
        self.types.insert(name.clone(), v.param_type);
        let value = self.encoding.decode(v.param_value, v.param_type);
        let got = ParamValue {
            name: name.clone(),
            value,
            ty: v.param_type as u8,
        };
        let mut resend = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].name != name {
                i += 1;
                continue;
            }
            let stage = self.pending[i].stage.clone();
            match stage {
                Stage::Read => {
                    let p = self.pending.remove(i);
                    self.results.push_back((p.id, Ok(got.clone())));
                }
                Stage::LearnType { value: want } => {
                    let p = &mut self.pending[i];
                    p.stage = Stage::Set {
                        value: want,
                        ty: v.param_type,
                    };
                    p.attempts = 1;
                    p.deadline = now + self.cfg.retry_interval;
                    resend.push(p.clone());
                    i += 1;
                }
                Stage::Set { value: want, ty } => {
                    let p = self.pending.remove(i);
                    // Compare as the wire carries it: the autopilot stores
                    // a float (or an integer), not our f64.
                    let same = self.encoding.encode(want, ty).to_bits()
                        == self.encoding.encode(value, ty).to_bits();
                    let r = if same {
                        Ok(got.clone())
                    } else {
                        self.stats.failures += 1;
                        Err(ParamError::NotTaken {
                            name: name.clone(),
                            wanted: want,
                            kept: value,
                        })
                    };
                    self.results.push_back((p.id, r));
                }
            }
        }
        for p in resend {
            self.transmit(&p);
        }
        true
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].deadline > now {
                i += 1;
                continue;
            }
            if self.pending[i].attempts >= self.cfg.attempts {
                let p = self.pending.remove(i);
                self.stats.failures += 1;
                self.results.push_back((
                    p.id,
                    Err(ParamError::Timeout {
                        name: p.name,
                        attempts: p.attempts,
                    }),
                ));
                continue;
            }
            let p = &mut self.pending[i];
            p.attempts += 1;
            p.deadline = now + self.cfg.retry_interval;
            self.stats.retries += 1;
            due.push(p.clone());
            i += 1;
        }
        for p in due {
            self.transmit(&p);
        }
    }

    /// Fail everything pending (the link task is stopping).
    pub fn fail_all(&mut self) {
        for p in self.pending.drain(..) {
            self.results.push_back((
                p.id,
                Err(ParamError::Timeout {
                    name: p.name,
                    attempts: p.attempts,
                }),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialect::MavParamType::*;

    fn value(name: &str, raw: f32, ty: dialect::MavParamType) -> Msg {
        Msg::PARAM_VALUE(dialect::PARAM_VALUE_DATA {
            param_value: raw,
            param_count: 1,
            param_index: 0,
            param_id: name_bytes(name).into(),
            param_type: ty,
        })
    }

    fn client(enc: ParamEncoding) -> ParamClient {
        let mut c = ParamClient::new(ParamConfig::default());
        c.set_target(1, 1, enc);
        c
    }

    #[test]
    fn read_resends_until_answered() {
        let t0 = Instant::now();
        let mut c = client(ParamEncoding::Cast);
        c.read(7, "FENCE_RADIUS", t0);
        assert!(matches!(
            c.poll_transmit(),
            Some(Msg::PARAM_REQUEST_READ(r)) if r.param_id.to_str() == Ok("FENCE_RADIUS") && r.param_index == -1
        ));
        c.handle_timeout(t0 + Duration::from_secs(1));
        assert!(matches!(
            c.poll_transmit(),
            Some(Msg::PARAM_REQUEST_READ(_))
        ));
        assert!(c.handle(&value("FENCE_RADIUS", 150.0, MAV_PARAM_TYPE_REAL32), t0));
        let (id, r) = c.poll_result().unwrap();
        assert_eq!(id, 7);
        assert_eq!(r.unwrap().value, 150.0);
        assert!(!c.is_busy());
    }

    #[test]
    fn set_learns_the_type_then_checks_the_echo() {
        let t0 = Instant::now();
        let mut c = client(ParamEncoding::Cast);
        c.set(1, "FENCE_ENABLE", 1.0, t0);
        assert!(matches!(
            c.poll_transmit(),
            Some(Msg::PARAM_REQUEST_READ(_))
        ));
        c.handle(&value("FENCE_ENABLE", 0.0, MAV_PARAM_TYPE_INT8), t0);
        match c.poll_transmit() {
            Some(Msg::PARAM_SET(s)) => {
                assert_eq!(s.param_value, 1.0);
                assert_eq!(s.param_type, MAV_PARAM_TYPE_INT8);
            }
            other => panic!("expected PARAM_SET, got {other:?}"),
        }
        assert!(c.poll_result().is_none());
        c.handle(&value("FENCE_ENABLE", 1.0, MAV_PARAM_TYPE_INT8), t0);
        assert_eq!(c.poll_result().unwrap().1.unwrap().value, 1.0);
    }

    #[test]
    fn an_echo_of_another_value_is_an_error() {
        let t0 = Instant::now();
        let mut c = client(ParamEncoding::Cast);
        c.handle(&value("FENCE_RADIUS", 150.0, MAV_PARAM_TYPE_REAL32), t0);
        c.set(2, "FENCE_RADIUS", 20000.0, t0);
        assert!(matches!(c.poll_transmit(), Some(Msg::PARAM_SET(_))));
        c.handle(&value("FENCE_RADIUS", 10000.0, MAV_PARAM_TYPE_REAL32), t0);
        let e = c.poll_result().unwrap().1.unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter FENCE_RADIUS: set to 20000, but the autopilot kept 10000"
        );
    }

    #[test]
    fn unanswered_requests_time_out_with_the_name() {
        let t0 = Instant::now();
        let mut c = client(ParamEncoding::Cast);
        c.read(3, "NO_SUCH_PARAM", t0);
        let mut t = t0;
        for _ in 0..10 {
            t += Duration::from_secs(1);
            c.handle_timeout(t);
        }
        let e = c.poll_result().unwrap().1.unwrap_err();
        assert!(
            matches!(e, ParamError::Timeout { ref name, attempts: 6 } if name == "NO_SUCH_PARAM")
        );
        assert!(!c.is_busy());
    }

    #[test]
    fn px4_integers_travel_bytewise() {
        let enc = ParamEncoding::Bytewise;
        let raw = f32::from_bits(3u32);
        assert_eq!(enc.decode(raw, MAV_PARAM_TYPE_INT32), 3.0);
        assert_eq!(enc.encode(3.0, MAV_PARAM_TYPE_INT32).to_bits(), 3);
        assert_eq!(enc.encode(-1.0, MAV_PARAM_TYPE_INT32).to_bits(), u32::MAX);
        assert_eq!(enc.decode(2.5, MAV_PARAM_TYPE_REAL32), 2.5);
        assert_eq!(ParamEncoding::Cast.decode(3.0, MAV_PARAM_TYPE_INT32), 3.0);
    }

    #[test]
    fn bad_names_and_values_fail_at_once() {
        let t0 = Instant::now();
        let mut c = client(ParamEncoding::Cast);
        c.read(1, "A_NAME_LONGER_THAN_16", t0);
        assert!(matches!(
            c.poll_result(),
            Some((1, Err(ParamError::BadName(_))))
        ));
        c.set(2, "FENCE_RADIUS", f64::NAN, t0);
        assert!(matches!(
            c.poll_result(),
            Some((2, Err(ParamError::BadValue { .. })))
        ));
        assert!(c.poll_transmit().is_none());
    }
}
