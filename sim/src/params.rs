//! ArduCopter's parameters, sans-IO: a table of names, `MAV_PARAM_TYPE`s
//! and values, and the parameter protocol as ArduPilot answers it
//! (`libraries/GCS_MAVLink/GCS_Param.cpp`, `AP_Param::set_float`):
//!
//! - `PARAM_REQUEST_READ` by name (`param_index` -1) is answered with one
//!   `PARAM_VALUE` whose `param_index` is the request's -1 (65535 on the
//!   wire); by index, with that index. An unknown name or index gets no
//!   answer at all.
//! - `PARAM_REQUEST_LIST` is answered with every parameter in index order.
//! - `PARAM_SET` stores the value in the parameter's own type, whatever
//!   `param_type` the sender claimed: integers get ArduPilot's rounding
//!   (0.01 added away from zero, then truncated, clamped to the type's
//!   range); NaN and infinities are ignored. The answer is a `PARAM_VALUE`
//!   echo (`param_index` 65535, as ArduPilot's `send_parameter_value`) of
//!   the value now held. An unknown name gets no answer; a read-only one
//!   gets `Param write denied (NAME)` and the value it kept.
//! - Values travel as plain floats: ArduPilot's "cast" encoding. A PX4
//!   table ([`crate::px4::params`], [`Params::with_encoding`]) sends and
//!   reads integers byte-wise instead (the int's bits in the float field).
//!
//! Only parameters the simulator honours (or reports as fixed facts) are
//! in the table ([`Params::arducopter`]); the vehicle reads them by name.

use std::collections::HashMap;

use tiancha_firmware_bridge::codec::{dialect, Msg};
use tiancha_firmware_bridge::params::ParamEncoding;

use crate::vehicle::Airframe;

pub use dialect::MavParamType as ParamType;

/// One parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: &'static str,
    pub ty: ParamType,
    pub value: f32,
    /// PARAM_SET is refused ("Param write denied").
    pub read_only: bool,
}

/// What a parameter-protocol message asks of the autopilot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamReply {
    /// `PARAM_VALUE`s to send (not addressed: ArduPilot broadcasts them).
    pub send: Vec<Msg>,
    /// A STATUSTEXT to send (severity, text).
    pub text: Option<(u8, String)>,
    /// A parameter whose value changed (the vehicle may have to act on it).
    pub changed: Option<&'static str>,
}

/// The parameter table. See the module docs.
#[derive(Debug, Clone)]
pub struct Params {
    list: Vec<Param>,
    index: HashMap<&'static str, usize>,
    encoding: ParamEncoding,
}

/// `MAV_SEVERITY_WARNING`.
const WARNING: u8 = 4;

impl Params {
    /// A table from a list (sorted by name: that order is the index).
    pub fn new(mut list: Vec<Param>) -> Self {
        list.sort_by(|a, b| a.name.cmp(b.name));
        list.dedup_by(|a, b| a.name == b.name);
        for p in &mut list {
            p.value = store_as(p.ty, p.value).unwrap_or(0.0);
        }
        let index = list.iter().enumerate().map(|(i, p)| (p.name, i)).collect();
        Self {
            list,
            index,
            encoding: ParamEncoding::Cast,
        }
    }

    /// The same table with integers on the wire as `encoding` says
    /// (ArduPilot: cast, the default; PX4: byte-wise).
    pub fn with_encoding(mut self, encoding: ParamEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    pub fn encoding(&self) -> ParamEncoding {
        self.encoding
    }

    /// ArduCopter's parameters that the simulator has, with ArduCopter's
    /// defaults (upstream 90700977c553, as read back from its SITL with
    /// `copter.parm`) unless the simulated airframe says otherwise:
    ///
    /// | name | type | value | source |
    /// |---|---|---|---|
    /// | `FENCE_ENABLE` | INT8 | 0 | ArduCopter default: the fence is not enforced |
    /// | `FENCE_TYPE` | INT8 | 7 | ArduCopter default: alt max 1, circle 2, polygon 4 |
    /// | `FENCE_ACTION` | INT8 | 1 | ArduCopter default: RTL or land |
    /// | `FENCE_RADIUS` | REAL32 | 150 m | copter.parm (ArduCopter default 300) |
    /// | `FENCE_ALT_MAX` | REAL32 | 100 m | ArduCopter default |
    /// | `FENCE_MARGIN` | REAL32 | 2 m | ArduCopter default (not used for breaches) |
    /// | `FENCE_TOTAL` | INT8 | fence items on board | kept in step with uploads; read-only here |
    /// | `RALLY_INCL_HOME` | INT8 | 1 | ArduCopter default |
    /// | `RALLY_LIMIT_KM` | REAL32 | 0.3 | ArduCopter default |
    /// | `RALLY_TOTAL` | INT8 | rally points on board | kept in step with uploads; read-only here |
    /// | `RTL_ALT` | INT32 | 1500 cm | ArduCopter default (`Airframe::rtl_alt_m`) |
    /// | `WPNAV_SPEED` | REAL32 | `Airframe::wp_speed_mps` × 100 | ArduCopter default 1000 cm/s; the simulated airframe's default is 500 |
    /// | `DISARM_DELAY` | INT8 | 10 s | ArduCopter default (`Airframe::disarm_delay_s`) |
    /// | `BATT_CAPACITY` | INT32 | `Airframe::capacity_mah` | SITL's default is 3300 mAh; this is the simulated battery |
    /// | `BATT_FS_LOW_ACT` | INT8 | 0 | ArduCopter default (none). Reported only: the simulator's own battery failsafe (`Airframe::battery_low_pct`) does not follow it |
    /// | `BATT_LOW_MAH` | REAL32 | 0 | ArduCopter default; reported only |
    /// | `BATT_LOW_VOLT` | REAL32 | 10.5 V | ArduCopter default; reported only |
    /// | `MAV_SYSID` | INT16 | `system_id` | this firmware's name for the old `SYSID_THISMAV` (which it no longer answers to); a change takes effect at reboot, never here |
    pub fn arducopter(system_id: u8, af: &Airframe) -> Self {
        use ParamType::*;
        let p = |name: &'static str, ty: ParamType, value: f64| Param {
            name,
            ty,
            value: value as f32,
            read_only: false,
        };
        let ro = |name: &'static str, ty: ParamType, value: f64| Param {
            read_only: true,
            ..p(name, ty, value)
        };
        Self::new(vec![
            p("FENCE_ENABLE", MAV_PARAM_TYPE_INT8, 0.0),
            p("FENCE_TYPE", MAV_PARAM_TYPE_INT8, 7.0),
            p("FENCE_ACTION", MAV_PARAM_TYPE_INT8, 1.0),
            p("FENCE_RADIUS", MAV_PARAM_TYPE_REAL32, 150.0),
            p("FENCE_ALT_MAX", MAV_PARAM_TYPE_REAL32, 100.0),
            p("FENCE_MARGIN", MAV_PARAM_TYPE_REAL32, 2.0),
            ro("FENCE_TOTAL", MAV_PARAM_TYPE_INT8, 0.0),
            p("RALLY_INCL_HOME", MAV_PARAM_TYPE_INT8, 1.0),
            p("RALLY_LIMIT_KM", MAV_PARAM_TYPE_REAL32, 0.3),
            ro("RALLY_TOTAL", MAV_PARAM_TYPE_INT8, 0.0),
            p("RTL_ALT", MAV_PARAM_TYPE_INT32, af.rtl_alt_m * 100.0),
            p(
                "WPNAV_SPEED",
                MAV_PARAM_TYPE_REAL32,
                af.wp_speed_mps * 100.0,
            ),
            p("DISARM_DELAY", MAV_PARAM_TYPE_INT8, af.disarm_delay_s),
            p("BATT_CAPACITY", MAV_PARAM_TYPE_INT32, af.capacity_mah),
            p("BATT_FS_LOW_ACT", MAV_PARAM_TYPE_INT8, 0.0),
            p("BATT_LOW_MAH", MAV_PARAM_TYPE_REAL32, 0.0),
            p("BATT_LOW_VOLT", MAV_PARAM_TYPE_REAL32, 10.5),
            p("MAV_SYSID", MAV_PARAM_TYPE_INT16, system_id as f64),
        ])
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The value of `name`, if there is such a parameter.
    pub fn get(&self, name: &str) -> Option<f32> {
        self.index.get(name).map(|&i| self.list[i].value)
    }

    /// The value of `name` as f64; panics on a name not in the table (a
    /// bug in the simulator, not a runtime condition).
    pub fn value(&self, name: &str) -> f64 {
        self.get(name)
            .unwrap_or_else(|| panic!("no parameter {name} in the table")) as f64
    }

    pub fn by_index(&self, i: usize) -> Option<&Param> {
        self.list.get(i)
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.index.get(name).map(|&i| &self.list[i])
    }

    /// Set `name` as a `PARAM_SET` would (type cast and range, read-only
    /// refused). `None`: no such parameter. `Some(Err(kept))`: refused.
    /// `Some(Ok(stored))`: the value now held.
    pub fn set(&mut self, name: &str, value: f32) -> Option<Result<f32, f32>> {
        let &i = self.index.get(name)?;
        let p = &mut self.list[i];
        if p.read_only {
            return Some(Err(p.value));
        }
        if let Some(v) = store_as(p.ty, value) {
            p.value = v;
        }
        Some(Ok(p.value))
    }

    /// Set a parameter the autopilot itself maintains (e.g. `FENCE_TOTAL`),
    /// read-only or not. Returns false for an unknown name.
    pub fn set_internal(&mut self, name: &str, value: f32) -> bool {
        let Some(&i) = self.index.get(name) else {
            return false;
        };
        let p = &mut self.list[i];
        if let Some(v) = store_as(p.ty, value) {
            p.value = v;
        }
        true
    }

    fn value_msg(&self, i: usize, param_index: u16) -> Msg {
        let p = &self.list[i];
        Msg::PARAM_VALUE(dialect::PARAM_VALUE_DATA {
            param_value: self.encoding.encode(p.value as f64, p.ty),
            param_count: self.list.len() as u16,
            param_index,
            param_id: p.name.into(),
            param_type: p.ty,
        })
    }

    /// Answer a parameter-protocol message; `None` if `msg` is not one.
    pub fn handle(&mut self, msg: &Msg) -> Option<ParamReply> {
        let mut r = ParamReply::default();
        match msg {
            Msg::PARAM_REQUEST_READ(q) => {
                if q.param_index >= 0 {
                    let i = q.param_index as usize;
                    if i < self.list.len() {
                        r.send.push(self.value_msg(i, i as u16));
                    }
                } else if let Some(&i) = name_of(&q.param_id).and_then(|n| self.index.get(n)) {
                    // ArduPilot copies the request's index (-1).
                    r.send.push(self.value_msg(i, u16::MAX));
                }
            }
            Msg::PARAM_REQUEST_LIST(_) => {
                for i in 0..self.list.len() {
                    r.send.push(self.value_msg(i, i as u16));
                }
            }
            Msg::PARAM_SET(s) => {
                let Some(name) = name_of(&s.param_id) else {
                    return Some(r);
                };
                let Some(&i) = self.index.get(name) else {
                    return Some(r);
                };
                let before = self.list[i].value;
                // Decoded as the parameter's own type, whatever the sender
                // claimed.
                let value = self.encoding.decode(s.param_value, self.list[i].ty) as f32;
                match self.set(name, value) {
                    Some(Ok(v)) => {
                        if v.to_bits() != before.to_bits() {
                            r.changed = Some(self.list[i].name);
                        }
                    }
                    Some(Err(_)) => {
                        r.text = Some((WARNING, format!("Param write denied ({name})")));
                    }
                    None => return Some(r),
                }
                r.send.push(self.value_msg(i, u16::MAX));
            }
            _ => return None,
        }
        Some(r)
    }
}

fn name_of(id: &[u8; 16]) -> Option<&str> {
    let n = id.iter().position(|&c| c == 0).unwrap_or(16);
    std::str::from_utf8(&id[..n]).ok()
}

/// A float stored as a parameter of type `ty`, as `AP_Param::set_float`
/// does it; `None` for NaN and infinities (ignored).
pub fn store_as(ty: ParamType, value: f32) -> Option<f32> {
    use ParamType::*;
    if !value.is_finite() {
        return None;
    }
    let (lo, hi) = match ty {
        MAV_PARAM_TYPE_INT8 => (i8::MIN as f64, i8::MAX as f64),
        MAV_PARAM_TYPE_UINT8 => (u8::MIN as f64, u8::MAX as f64),
        MAV_PARAM_TYPE_INT16 => (i16::MIN as f64, i16::MAX as f64),
        MAV_PARAM_TYPE_UINT16 => (u16::MIN as f64, u16::MAX as f64),
        MAV_PARAM_TYPE_INT32 => (i32::MIN as f64, i32::MAX as f64),
        MAV_PARAM_TYPE_UINT32 => (u32::MIN as f64, u32::MAX as f64),
        _ => return Some(value),
    };
    let v = value as f64;
    let v = v + if v < 0.0 { -0.01 } else { 0.01 };
    Some(v.clamp(lo, hi).trunc() as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ParamType::*;

    fn table() -> Params {
        Params::arducopter(1, &Airframe::default())
    }

    fn values(r: &ParamReply) -> Vec<(String, f32, ParamType, u16, u16)> {
        r.send
            .iter()
            .map(|m| match m {
                Msg::PARAM_VALUE(v) => (
                    v.param_id.to_str().unwrap().to_string(),
                    v.param_value,
                    v.param_type,
                    v.param_index,
                    v.param_count,
                ),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn read(p: &mut Params, name: &str, index: i16) -> ParamReply {
        p.handle(&Msg::PARAM_REQUEST_READ(dialect::PARAM_REQUEST_READ_DATA {
            param_index: index,
            target_system: 1,
            target_component: 1,
            param_id: name.into(),
        }))
        .expect("a parameter message")
    }

    fn set(p: &mut Params, name: &str, value: f32, ty: ParamType) -> ParamReply {
        p.handle(&Msg::PARAM_SET(dialect::PARAM_SET_DATA {
            param_value: value,
            target_system: 1,
            target_component: 1,
            param_id: name.into(),
            param_type: ty,
        }))
        .expect("a parameter message")
    }

    #[test]
    fn arducopter_defaults_and_types() {
        let p = table();
        for (name, value, ty) in [
            ("FENCE_ENABLE", 0.0, MAV_PARAM_TYPE_INT8),
            ("FENCE_TYPE", 7.0, MAV_PARAM_TYPE_INT8),
            ("FENCE_ACTION", 1.0, MAV_PARAM_TYPE_INT8),
            ("FENCE_RADIUS", 150.0, MAV_PARAM_TYPE_REAL32),
            ("FENCE_ALT_MAX", 100.0, MAV_PARAM_TYPE_REAL32),
            ("FENCE_MARGIN", 2.0, MAV_PARAM_TYPE_REAL32),
            ("FENCE_TOTAL", 0.0, MAV_PARAM_TYPE_INT8),
            ("RALLY_INCL_HOME", 1.0, MAV_PARAM_TYPE_INT8),
            ("RALLY_LIMIT_KM", 0.3, MAV_PARAM_TYPE_REAL32),
            ("RALLY_TOTAL", 0.0, MAV_PARAM_TYPE_INT8),
            ("RTL_ALT", 1500.0, MAV_PARAM_TYPE_INT32),
            ("WPNAV_SPEED", 500.0, MAV_PARAM_TYPE_REAL32),
            ("BATT_FS_LOW_ACT", 0.0, MAV_PARAM_TYPE_INT8),
            ("BATT_LOW_MAH", 0.0, MAV_PARAM_TYPE_REAL32),
            ("BATT_LOW_VOLT", 10.5, MAV_PARAM_TYPE_REAL32),
            ("MAV_SYSID", 1.0, MAV_PARAM_TYPE_INT16),
        ] {
            let q = p.param(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!((q.value, q.ty), (value as f32, ty), "{name}");
        }
        // This firmware renamed it; it does not answer to the old name.
        assert_eq!(p.get("SYSID_THISMAV"), None);
    }

    #[test]
    fn reads_by_name_and_by_index_and_ignores_unknown_ones() {
        let mut p = table();
        let n = p.len() as u16;
        let r = read(&mut p, "FENCE_RADIUS", -1);
        assert_eq!(
            values(&r),
            vec![(
                "FENCE_RADIUS".into(),
                150.0,
                MAV_PARAM_TYPE_REAL32,
                u16::MAX,
                n
            )]
        );
        let r = read(&mut p, "", 0);
        let first = p.by_index(0).unwrap().name;
        assert_eq!(values(&r)[0].0, first);
        assert_eq!(values(&r)[0].3, 0);
        // Unknown: no answer at all (ArduPilot is silent).
        assert!(read(&mut p, "NO_SUCH_PARAM", -1).send.is_empty());
        assert!(read(&mut p, "", n as i16).send.is_empty());
        // Not a parameter message.
        assert!(p
            .handle(&Msg::MISSION_ACK(dialect::MISSION_ACK_DATA::default()))
            .is_none());
    }

    #[test]
    fn list_sends_everything_in_index_order() {
        let mut p = table();
        let r = p
            .handle(&Msg::PARAM_REQUEST_LIST(
                dialect::PARAM_REQUEST_LIST_DATA::default(),
            ))
            .unwrap();
        let v = values(&r);
        assert_eq!(v.len(), p.len());
        for (i, x) in v.iter().enumerate() {
            assert_eq!(x.3 as usize, i);
            assert_eq!(x.4 as usize, p.len());
        }
        let mut names: Vec<_> = v.iter().map(|x| x.0.clone()).collect();
        let sorted = names.clone();
        names.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn set_echoes_in_the_parameters_own_type_with_ardupilots_rounding() {
        let mut p = table();
        // The sender's claimed type does not matter; INT8 rounds.
        let r = set(&mut p, "FENCE_ENABLE", 0.999, MAV_PARAM_TYPE_REAL32);
        assert_eq!(
            values(&r),
            vec![(
                "FENCE_ENABLE".into(),
                1.0,
                MAV_PARAM_TYPE_INT8,
                u16::MAX,
                p.len() as u16
            )]
        );
        assert_eq!(r.changed, Some("FENCE_ENABLE"));
        assert_eq!(p.get("FENCE_ENABLE"), Some(1.0));
        // Setting the same value again: echoed, nothing changed.
        let r = set(&mut p, "FENCE_ENABLE", 1.0, MAV_PARAM_TYPE_INT8);
        assert_eq!(r.changed, None);
        assert_eq!(r.send.len(), 1);
        // Clamped to the type's range, truncated toward zero.
        set(&mut p, "FENCE_TYPE", 1000.0, MAV_PARAM_TYPE_INT8);
        assert_eq!(p.get("FENCE_TYPE"), Some(127.0));
        set(&mut p, "RTL_ALT", -2.5, MAV_PARAM_TYPE_INT32);
        assert_eq!(p.get("RTL_ALT"), Some(-2.0));
        set(&mut p, "RTL_ALT", 2999.996, MAV_PARAM_TYPE_INT32);
        assert_eq!(p.get("RTL_ALT"), Some(3000.0));
        // Floats are stored as sent; NaN is ignored and the old value echoed.
        set(&mut p, "RALLY_LIMIT_KM", 1.25, MAV_PARAM_TYPE_REAL32);
        assert_eq!(p.get("RALLY_LIMIT_KM"), Some(1.25));
        let r = set(&mut p, "RALLY_LIMIT_KM", f32::NAN, MAV_PARAM_TYPE_REAL32);
        assert_eq!(values(&r)[0].1, 1.25);
        assert_eq!(r.changed, None);
    }

    #[test]
    fn unknown_sets_are_silent_and_read_only_ones_denied() {
        let mut p = table();
        let r = set(&mut p, "SYSID_THISMAV", 7.0, MAV_PARAM_TYPE_INT16);
        assert!(r.send.is_empty() && r.text.is_none() && r.changed.is_none());
        let r = set(&mut p, "FENCE_TOTAL", 5.0, MAV_PARAM_TYPE_INT8);
        assert_eq!(r.text, Some((4, "Param write denied (FENCE_TOTAL)".into())));
        assert_eq!(values(&r)[0].1, 0.0);
        assert!(p.set_internal("FENCE_TOTAL", 33.0));
        assert_eq!(p.get("FENCE_TOTAL"), Some(33.0));
    }

    #[test]
    fn px4_table_sends_and_reads_int32_bytewise() {
        let mut p = crate::px4::params(1, &Airframe::default());
        let r = read(&mut p, "GF_ACTION", -1);
        let v = &values(&r)[0];
        assert_eq!(v.2, MAV_PARAM_TYPE_INT32);
        assert_eq!(v.1.to_bits(), 2, "the int's bits in the float");
        assert_eq!(values(&read(&mut p, "RTL_RETURN_ALT", -1))[0].1, 30.0);
        // PARAM_SET of an INT32 carries its bits; the echo too.
        let r = set(&mut p, "GF_ACTION", f32::from_bits(3), MAV_PARAM_TYPE_INT32);
        assert_eq!(values(&r)[0].1.to_bits(), 3);
        assert_eq!(p.get("GF_ACTION"), Some(3.0));
        assert_eq!(r.changed, Some("GF_ACTION"));
        // REAL32: a plain float both ways.
        let r = set(&mut p, "GF_MAX_HOR_DIST", 250.0, MAV_PARAM_TYPE_REAL32);
        assert_eq!(values(&r)[0].1, 250.0);
        assert_eq!(p.get("GF_MAX_HOR_DIST"), Some(250.0));
    }
}
