//! What differs between flight stacks, behind one interface the command
//! executor calls: enforcing the fence, arming and taking off, starting
//! the patrol, and where a return-to-launch goes.
//!
//! | | ArduPilot (Copter) | PX4 |
//! |---|---|---|
//! | fence on | `FENCE_ENABLE=1`, `FENCE_TYPE` with the polygon bit (4), `FENCE_ACTION` ≠ 0 | `GF_ACTION` ≥ 2 (hold, return, terminate, land) |
//! | its own limits | `FENCE_RADIUS` (circle round home, bit 2), `FENCE_ALT_MAX` (bit 1) | `GF_MAX_HOR_DIST`, `GF_MAX_VER_DIST` (0 = off) |
//! | launch | GUIDED, arm, `NAV_TAKEOFF`, climb, AUTO | AUTO.MISSION, arm (it takes off by itself; it disarms 10 s after arming on the ground) |
//! | RTL goes to | nearest rally point, or home if `RALLY_INCL_HOME` and home is nearer, or home if every rally point is beyond `RALLY_LIMIT_KM` | nearest of home and the rally points (`RTL_TYPE` 0) |
//!
//! The decisions are pure functions ([`fence_changes`], [`rtl_target`]);
//! [`Stack`]'s async methods only read and write what they decided.
//! When the plan reaches beyond the autopilot's own limits, tiancha widens
//! them only with the operator's consent (`[safety] widen_autopilot_fence`),
//! and otherwise refuses to launch, naming the parameter and the value the
//! plan needs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tiancha_firmware_bridge::command::CommandError;
use tiancha_firmware_bridge::state::AutopilotKind;
use tiancha_firmware_bridge::{Bridge, FlightMode, VehicleState};
use tiancha_geometry::geodesy::{LatLon, LocalFrame};
use tiancha_protocol::mission::{MissionItem, MissionSet};

use crate::config::SafetySection;
use crate::vehicle::not_ready;

/// Horizontal room (m) the autopilot's own circle must leave beyond the
/// farthest point of the plan (ArduPilot's FENCE_MARGIN is 2 m; corners
/// overshoot).
pub const FENCE_MARGIN_H_M: f64 = 20.0;
/// Vertical room (m) above the highest point of the plan.
pub const FENCE_MARGIN_V_M: f64 = 10.0;

/// The flight stack, from the autopilot's heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stack {
    ArduPilot,
    Px4,
}

impl Stack {
    pub fn of(kind: AutopilotKind) -> Result<Stack, String> {
        match kind {
            AutopilotKind::ArduPilot => Ok(Stack::ArduPilot),
            AutopilotKind::Px4 => Ok(Stack::Px4),
            other => Err(format!(
                "autopilot {other:?} is not supported (ArduPilot and PX4 are)"
            )),
        }
    }

    /// The parameters [`fence_changes`] needs.
    fn fence_params(self) -> &'static [&'static str] {
        match self {
            Stack::ArduPilot => &[
                "FENCE_ENABLE",
                "FENCE_TYPE",
                "FENCE_ACTION",
                "FENCE_RADIUS",
                "FENCE_ALT_MAX",
            ],
            Stack::Px4 => &["GF_ACTION", "GF_MAX_HOR_DIST", "GF_MAX_VER_DIST"],
        }
    }

    /// The parameters [`rtl_target`] needs (read after [`Self::enforce_fence`]).
    fn rtl_params(self) -> &'static [&'static str] {
        match self {
            Stack::ArduPilot => &["RALLY_INCL_HOME", "RALLY_LIMIT_KM"],
            Stack::Px4 => &[],
        }
    }
}

/// How far the plan reaches from home, and how high.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FenceNeeds {
    pub max_distance_m: f64,
    pub max_alt_rel_m: f64,
}

/// The extent of a mission set: its positional mission items and rally
/// points (the legs between them are straight, and a disc round home is
/// convex, so the points bound the legs too).
pub fn fence_needs(set: &MissionSet, home: LatLon, home_alt_amsl_m: f64) -> FenceNeeds {
    let frame = LocalFrame::at(home);
    let mut out = FenceNeeds {
        max_distance_m: 0.0,
        max_alt_rel_m: 0.0,
    };
    let is_home_item =
        |i: usize, it: &MissionItem| i == 0 && it.frame == tiancha_protocol::mission::frame::GLOBAL;
    for (i, it) in set
        .mission
        .iter()
        .enumerate()
        .chain(set.rally.iter().enumerate())
    {
        if !it.has_position() || is_home_item(i, it) {
            continue;
        }
        let (e, n) = frame.to_en(LatLon::new(it.lat_deg(), it.lon_deg()));
        out.max_distance_m = out.max_distance_m.max(e.hypot(n));
        let alt_rel = match it.frame {
            0 | 5 => it.z as f64 - home_alt_amsl_m,
            _ => it.z as f64,
        };
        out.max_alt_rel_m = out.max_alt_rel_m.max(alt_rel);
    }
    out
}

/// One parameter to write, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamChange {
    pub name: &'static str,
    pub value: f64,
    pub why: String,
}

fn ceil_to(v: f64, step: f64) -> f64 {
    (v / step).ceil() * step
}

/// What to write so that the autopilot enforces the uploaded fence and
/// its own limits leave room for the plan; or why not to launch.
/// `params` holds the values read from the autopilot ([`Stack::fence_params`]).
pub fn fence_changes(
    stack: Stack,
    params: &BTreeMap<String, f64>,
    needs: FenceNeeds,
    widen: bool,
) -> Result<Vec<ParamChange>, String> {
    let get = |n: &str| {
        params
            .get(n)
            .copied()
            .ok_or_else(|| format!("the autopilot did not report {n}"))
    };
    let radius_needed = ceil_to(needs.max_distance_m + FENCE_MARGIN_H_M, 10.0);
    let alt_needed = ceil_to(needs.max_alt_rel_m + FENCE_MARGIN_V_M, 5.0);
    let consent = "or let tiancha widen it: [safety] widen_autopilot_fence = true";
    let mut out = Vec::new();
    let limit = |out: &mut Vec<ParamChange>,
                 name: &'static str,
                 have: f64,
                 need: f64,
                 what: &str|
     -> Result<(), String> {
        if have >= need {
            return Ok(());
        }
        if !widen {
            return Err(format!(
                "the autopilot's own {what} ({name} = {have} m) is smaller than the plan needs \
                 ({need} m): set {name} to at least {need}, {consent}"
            ));
        }
        out.push(ParamChange {
            name,
            value: need,
            why: format!("{what} widened from {have} m to {need} m (operator's consent)"),
        });
        Ok(())
    };
    match stack {
        Stack::ArduPilot => {
            let ty = get("FENCE_TYPE")? as u32;
            if ty & 2 != 0 {
                limit(
                    &mut out,
                    "FENCE_RADIUS",
                    get("FENCE_RADIUS")?,
                    radius_needed,
                    "circular fence round home",
                )?;
            }
            if ty & 1 != 0 {
                limit(
                    &mut out,
                    "FENCE_ALT_MAX",
                    get("FENCE_ALT_MAX")?,
                    alt_needed,
                    "altitude fence",
                )?;
            }
            if ty & 4 == 0 {
                out.push(ParamChange {
                    name: "FENCE_TYPE",
                    value: (ty | 4) as f64,
                    why: format!("FENCE_TYPE {ty} did not include the uploaded polygons (4)"),
                });
            }
            if get("FENCE_ACTION")? == 0.0 {
                out.push(ParamChange {
                    name: "FENCE_ACTION",
                    value: 1.0,
                    why: "FENCE_ACTION 0 only reports a breach: set to 1 (RTL or land)".into(),
                });
            }
            if get("FENCE_ENABLE")? != 1.0 {
                out.push(ParamChange {
                    name: "FENCE_ENABLE",
                    value: 1.0,
                    why: "fence enabled".into(),
                });
            }
        }
        Stack::Px4 => {
            let h = get("GF_MAX_HOR_DIST")?;
            if h > 0.0 {
                limit(
                    &mut out,
                    "GF_MAX_HOR_DIST",
                    h,
                    radius_needed,
                    "horizontal distance limit",
                )?;
            }
            let v = get("GF_MAX_VER_DIST")?;
            if v > 0.0 {
                limit(
                    &mut out,
                    "GF_MAX_VER_DIST",
                    v,
                    alt_needed,
                    "vertical distance limit",
                )?;
            }
            let action = get("GF_ACTION")?;
            if action < 2.0 {
                out.push(ParamChange {
                    name: "GF_ACTION",
                    value: 3.0,
                    why: format!("GF_ACTION {action} does not act on a breach: set to 3 (return)"),
                });
            }
        }
    }
    Ok(out)
}

/// Whether the parameters read back say the fence is enforced.
pub fn fence_enforced(stack: Stack, params: &BTreeMap<String, f64>) -> Result<(), String> {
    let v = |n: &str| params.get(n).copied().unwrap_or(f64::NAN);
    match stack {
        Stack::ArduPilot => {
            if v("FENCE_ENABLE") != 1.0 {
                return Err(format!("FENCE_ENABLE reads {}", v("FENCE_ENABLE")));
            }
            if (v("FENCE_TYPE") as u32) & 4 == 0 {
                return Err(format!("FENCE_TYPE {} lacks the polygons", v("FENCE_TYPE")));
            }
            if v("FENCE_ACTION") == 0.0 {
                return Err("FENCE_ACTION reads 0 (report only)".into());
            }
        }
        Stack::Px4 => {
            if v("GF_ACTION").is_nan() || v("GF_ACTION") < 2.0 {
                return Err(format!("GF_ACTION reads {}", v("GF_ACTION")));
            }
        }
    }
    Ok(())
}

/// Where a return-to-launch goes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RtlTarget {
    /// `None`: home; `Some(i)`: rally point i (0-based, as uploaded).
    pub rally_index: Option<usize>,
    pub at: LatLon,
    pub distance_from_home_m: f64,
}

impl RtlTarget {
    pub fn describe(&self) -> String {
        match self.rally_index {
            None => format!("home ({:.6}, {:.6})", self.at.lat_deg, self.at.lon_deg),
            Some(i) => format!(
                "rally point {} ({:.6}, {:.6}), {:.0} m from home",
                i + 1,
                self.at.lat_deg,
                self.at.lon_deg,
                self.distance_from_home_m
            ),
        }
    }
}

/// How the autopilot chooses between home and the rally points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RtlRule {
    /// Home counts as a candidate (ArduPilot `RALLY_INCL_HOME`; PX4
    /// `RTL_TYPE` 0).
    pub include_home: bool,
    /// Rally points farther than this are ignored in favour of home
    /// (ArduPilot `RALLY_LIMIT_KM`; 0 = no limit).
    pub limit_m: f64,
}

/// Where RTL goes from `pos`: ArduPilot's
/// `AP_Rally::calc_best_rally_or_home_location`, which PX4's `RTL_TYPE` 0
/// matches with home included and no limit.
pub fn rtl_target(pos: LatLon, home: LatLon, rally: &[MissionItem], rule: RtlRule) -> RtlTarget {
    let frame = LocalFrame::at(pos);
    let dist = |q: LatLon| {
        let (e, n) = frame.to_en(q);
        e.hypot(n)
    };
    let home_frame = LocalFrame::at(home);
    let from_home = |q: LatLon| {
        let (e, n) = home_frame.to_en(q);
        e.hypot(n)
    };
    let home_target = RtlTarget {
        rally_index: None,
        at: home,
        distance_from_home_m: 0.0,
    };
    let nearest = rally
        .iter()
        .enumerate()
        .map(|(i, it)| (i, LatLon::new(it.lat_deg(), it.lon_deg())))
        .map(|(i, q)| (i, q, dist(q)))
        .min_by(|a, b| a.2.total_cmp(&b.2));
    let Some((i, q, d)) = nearest else {
        return home_target;
    };
    if rule.limit_m > 0.0 && d > rule.limit_m {
        return home_target;
    }
    if rule.include_home && d >= dist(home) {
        return home_target;
    }
    RtlTarget {
        rally_index: Some(i),
        at: q,
        distance_from_home_m: from_home(q),
    }
}

/// What [`Stack::enforce_fence`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FenceReport {
    pub changes: Vec<ParamChange>,
    /// The fence parameters as read back after the changes.
    pub params: BTreeMap<String, f64>,
    pub rtl_rule: RtlRule,
}

impl FenceReport {
    pub fn summary(&self) -> String {
        let ps: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut s = format!("fence enforced ({})", ps.join(", "));
        for c in &self.changes {
            s.push_str(&format!("; {}", c.why));
        }
        s
    }
}

async fn read_params(bridge: &Bridge, names: &[&str]) -> Result<BTreeMap<String, f64>, String> {
    let mut out = BTreeMap::new();
    for n in names {
        let v = bridge
            .param_get(n)
            .await
            .map_err(|e| format!("reading {n}: {e}"))?;
        out.insert(n.to_string(), v.value);
    }
    Ok(out)
}

impl Stack {
    /// After a verified fence upload: make the autopilot enforce it, and
    /// check by reading the parameters back. `Err` is a refusal reason.
    pub async fn enforce_fence(
        self,
        bridge: &Bridge,
        set: &MissionSet,
        home: LatLon,
        home_alt_amsl_m: f64,
        safety: &SafetySection,
    ) -> Result<FenceReport, String> {
        let before = read_params(bridge, self.fence_params()).await?;
        let needs = fence_needs(set, home, home_alt_amsl_m);
        let changes = fence_changes(self, &before, needs, safety.widen_autopilot_fence)?;
        for c in &changes {
            bridge
                .param_set(c.name, c.value)
                .await
                .map_err(|e| format!("the fence cannot be enabled: {e}"))?;
        }
        if self == Stack::ArduPilot {
            // The runtime switch as well as the stored parameter.
            match bridge
                .command(tiancha_firmware_bridge::command::Command::long(
                    tiancha_firmware_bridge::codec::dialect::MavCmd::MAV_CMD_DO_FENCE_ENABLE,
                    [1., 0., 0., 0., 0., 0., 0.],
                ))
                .await
            {
                Ok(_) | Err(CommandError::Unsupported { .. }) => {}
                Err(e) => return Err(format!("the fence cannot be enabled: DO_FENCE_ENABLE: {e}")),
            }
            // Home is a landing site: RTL goes to the nearest of home and
            // the rally points, never to a far rally point past home.
            bridge
                .param_set("RALLY_INCL_HOME", 1.0)
                .await
                .map_err(|e| format!("setting where RTL goes: {e}"))?;
        }
        let params = read_params(bridge, self.fence_params()).await?;
        fence_enforced(self, &params)
            .map_err(|e| format!("the fence is not enforced after enabling it: {e}"))?;
        let rtl = read_params(bridge, self.rtl_params()).await?;
        let rtl_rule = self.rtl_rule(&rtl);
        Ok(FenceReport {
            changes,
            params,
            rtl_rule,
        })
    }

    /// Read the fence and RTL settings as they are, changing nothing (a
    /// flight adopted after a restart).
    pub async fn read_fence(self, bridge: &Bridge) -> Result<FenceReport, String> {
        let params = read_params(bridge, self.fence_params()).await?;
        let rtl = read_params(bridge, self.rtl_params()).await?;
        Ok(FenceReport {
            changes: vec![],
            rtl_rule: self.rtl_rule(&rtl),
            params,
        })
    }

    fn rtl_rule(self, rtl: &BTreeMap<String, f64>) -> RtlRule {
        match self {
            Stack::ArduPilot => RtlRule {
                include_home: rtl.get("RALLY_INCL_HOME").copied() == Some(1.0),
                limit_m: rtl.get("RALLY_LIMIT_KM").copied().unwrap_or(0.0) * 1000.0,
            },
            Stack::Px4 => RtlRule {
                include_home: true,
                limit_m: 0.0,
            },
        }
    }

    /// Arm and take off to `alt_rel_m` the way this stack expects,
    /// retrying an arming the autopilot refuses as not ready until
    /// `ready_by`. `progress` is told each step.
    pub async fn take_off(
        self,
        bridge: &Bridge,
        alt_rel_m: f64,
        ready_by: Instant,
        climb_timeout: Duration,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(), String> {
        let mode = match self {
            Stack::ArduPilot => FlightMode::Guided,
            // PX4 flies the uploaded mission from the ground: it takes off
            // by itself, and disarms 10 s after arming if it does not.
            Stack::Px4 => FlightMode::Auto,
        };
        loop {
            bridge
                .set_mode(mode)
                .await
                .map_err(|e| format!("set {mode:?}: {e}"))?;
            match bridge.arm().await {
                Ok(_) => break,
                Err(e) => {
                    let s = bridge.snapshot();
                    let why = s
                        .readiness
                        .prearm_reason
                        .clone()
                        .unwrap_or_else(|| e.to_string());
                    if Instant::now() >= ready_by {
                        return Err(format!("arming refused: {why}"));
                    }
                    progress(&format!("arming refused, retrying: {why}"));
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        // The ACK comes before the heartbeat says so.
        bridge
            .wait_for("armed", Duration::from_secs(10), |s| s.armed)
            .await
            .map_err(|e| format!("arming: {e}"))?;
        progress("armed");
        if self == Stack::ArduPilot {
            bridge
                .takeoff(alt_rel_m as f32)
                .await
                .map_err(|e| format!("takeoff refused: {e}"))?;
        }
        let climbed = bridge
            .wait_for("patrol altitude", climb_timeout, |s| {
                !s.armed || s.position.is_some_and(|p| p.alt_rel_m >= alt_rel_m * 0.9)
            })
            .await
            .map_err(|e| format!("takeoff: {e}"))?;
        if !climbed.armed {
            return Err("the autopilot disarmed before reaching patrol altitude".into());
        }
        Ok(())
    }

    /// Hold position where the drone is, keeping the mission's place.
    /// ArduPilot: `DO_PAUSE_CONTINUE`; PX4 1.15 does not support it (ACK
    /// UNSUPPORTED) and holds in AUTO.LOITER instead.
    pub async fn pause(self, bridge: &Bridge) -> Result<(), String> {
        match self {
            Stack::ArduPilot => bridge.pause().await.map(|_| ()).map_err(|e| e.to_string()),
            Stack::Px4 => bridge
                .set_mode(FlightMode::Loiter)
                .await
                .map(|_| ())
                .map_err(|e| format!("set AUTO.LOITER: {e}")),
        }
    }

    /// Go on with the mission from where it was paused.
    pub async fn resume(self, bridge: &Bridge) -> Result<(), String> {
        match self {
            Stack::ArduPilot => bridge.resume().await.map(|_| ()).map_err(|e| e.to_string()),
            Stack::Px4 => bridge
                .set_mode(FlightMode::Auto)
                .await
                .map(|_| ())
                .map_err(|e| format!("set AUTO.MISSION: {e}")),
        }
    }

    /// Start the uploaded patrol once at altitude.
    pub async fn start_patrol(self, bridge: &Bridge) -> Result<(), String> {
        match self {
            Stack::ArduPilot => bridge
                .set_mode(FlightMode::Auto)
                .await
                .map(|_| ())
                .map_err(|e| format!("set AUTO: {e}")),
            // Already flying it.
            Stack::Px4 => Ok(()),
        }
    }
}

/// Wait until the autopilot is ready to launch, or `ready_by`; `Err` is
/// the reason it is not, in the autopilot's words where it gave them.
pub async fn wait_ready(
    bridge: &Bridge,
    safety: &SafetySection,
    ready_by: Instant,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<VehicleState, String> {
    let mut told: Option<String> = None;
    loop {
        let s = bridge.snapshot();
        match not_ready(&s, safety) {
            None => return Ok(s),
            Some(why) => {
                if Instant::now() >= ready_by {
                    return Err(format!(
                        "the autopilot did not become ready within {} s: {why}",
                        safety.readiness_timeout_s
                    ));
                }
                if told.as_deref() != Some(why.as_str()) {
                    progress(&format!("waiting for the autopilot: {why}"));
                    told = Some(why);
                }
            }
        }
        let _ = bridge
            .wait_for("readiness", Duration::from_secs(1), |s| {
                not_ready(s, safety).is_none()
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiancha_protocol::mission::cmd;

    fn params(kv: &[(&str, f64)]) -> BTreeMap<String, f64> {
        kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    const HOME: LatLon = LatLon {
        lat_deg: 28.45,
        lon_deg: 117.94,
    };

    fn at(e: f64, n: f64) -> LatLon {
        LocalFrame::at(HOME).from_en(e, n)
    }

    fn rally(points: &[LatLon]) -> Vec<MissionItem> {
        points
            .iter()
            .map(|q| MissionItem::nav(cmd::NAV_RALLY_POINT, q.lat_deg, q.lon_deg, 50.0))
            .collect()
    }

    fn sitl_defaults() -> BTreeMap<String, f64> {
        // ArduCopter SITL with copter.parm.
        params(&[
            ("FENCE_ENABLE", 0.0),
            ("FENCE_TYPE", 7.0),
            ("FENCE_ACTION", 1.0),
            ("FENCE_RADIUS", 150.0),
            ("FENCE_ALT_MAX", 100.0),
        ])
    }

    const PATROL: FenceNeeds = FenceNeeds {
        max_distance_m: 352.0,
        max_alt_rel_m: 50.0,
    };

    #[test]
    fn a_patrol_beyond_ardupilots_circle_is_refused_without_consent() {
        let e = fence_changes(Stack::ArduPilot, &sitl_defaults(), PATROL, false).unwrap_err();
        assert!(e.contains("FENCE_RADIUS = 150"), "{e}");
        assert!(e.contains("at least 380"), "{e}");
        assert!(e.contains("widen_autopilot_fence"), "{e}");
    }

    #[test]
    fn with_consent_the_circle_is_widened_and_the_fence_enabled() {
        let c = fence_changes(Stack::ArduPilot, &sitl_defaults(), PATROL, true).unwrap();
        let names: Vec<_> = c.iter().map(|c| (c.name, c.value)).collect();
        assert_eq!(names, vec![("FENCE_RADIUS", 380.0), ("FENCE_ENABLE", 1.0)]);
    }

    #[test]
    fn polygons_and_an_action_are_added_when_missing() {
        let mut p = sitl_defaults();
        p.insert("FENCE_TYPE".into(), 3.0);
        p.insert("FENCE_ACTION".into(), 0.0);
        p.insert("FENCE_RADIUS".into(), 1000.0);
        let c = fence_changes(Stack::ArduPilot, &p, PATROL, false).unwrap();
        let names: Vec<_> = c.iter().map(|c| (c.name, c.value)).collect();
        assert_eq!(
            names,
            vec![
                ("FENCE_TYPE", 7.0),
                ("FENCE_ACTION", 1.0),
                ("FENCE_ENABLE", 1.0)
            ]
        );
        let mut after = p.clone();
        for c in &c {
            after.insert(c.name.into(), c.value);
        }
        assert!(fence_enforced(Stack::ArduPilot, &after).is_ok());
        assert!(fence_enforced(Stack::ArduPilot, &p).is_err());
    }

    #[test]
    fn px4_acts_on_a_breach_and_its_limits_are_respected() {
        let p = params(&[
            ("GF_ACTION", 1.0),
            ("GF_MAX_HOR_DIST", 0.0),
            ("GF_MAX_VER_DIST", 0.0),
        ]);
        let c = fence_changes(Stack::Px4, &p, PATROL, false).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].name, c[0].value), ("GF_ACTION", 3.0));
        let p = params(&[
            ("GF_ACTION", 2.0),
            ("GF_MAX_HOR_DIST", 200.0),
            ("GF_MAX_VER_DIST", 0.0),
        ]);
        let e = fence_changes(Stack::Px4, &p, PATROL, false).unwrap_err();
        assert!(e.contains("GF_MAX_HOR_DIST = 200"), "{e}");
        assert!(fence_enforced(Stack::Px4, &p).is_ok());
    }

    #[test]
    fn a_missing_parameter_is_a_clear_refusal() {
        let e = fence_changes(Stack::Px4, &params(&[]), PATROL, true).unwrap_err();
        assert!(e.contains("did not report GF_MAX_HOR_DIST"), "{e}");
    }

    #[test]
    fn rtl_goes_to_the_nearest_rally_point_unless_home_is_nearer() {
        let pts = rally(&[at(300.0, 0.0), at(0.0, 300.0)]);
        let incl = RtlRule {
            include_home: true,
            limit_m: 0.0,
        };
        // Near the first rally point.
        let t = rtl_target(at(280.0, 10.0), HOME, &pts, incl);
        assert_eq!(t.rally_index, Some(0));
        assert!((t.distance_from_home_m - 300.0).abs() < 0.5);
        // Near home: home.
        let t = rtl_target(at(20.0, 20.0), HOME, &pts, incl);
        assert_eq!(t.rally_index, None);
        // Without home as a candidate: the nearest rally point even so.
        let excl = RtlRule {
            include_home: false,
            limit_m: 0.0,
        };
        assert_eq!(
            rtl_target(at(20.0, 30.0), HOME, &pts, excl).rally_index,
            Some(1)
        );
        // Every rally point beyond the limit: home.
        let limited = RtlRule {
            include_home: false,
            limit_m: 100.0,
        };
        assert_eq!(
            rtl_target(at(0.0, 0.0), HOME, &pts, limited).rally_index,
            None
        );
        // No rally points: home.
        assert_eq!(
            rtl_target(at(280.0, 0.0), HOME, &[], excl).rally_index,
            None
        );
    }

    #[test]
    fn needs_cover_the_mission_and_the_rally_points() {
        let mut set = MissionSet::default();
        let mut home_item = MissionItem::nav(cmd::NAV_WAYPOINT, 0.0, 0.0, 100.0);
        home_item.frame = tiancha_protocol::mission::frame::GLOBAL;
        set.mission.push(home_item);
        let w = at(200.0, 0.0);
        set.mission.push(MissionItem::nav(
            cmd::NAV_WAYPOINT,
            w.lat_deg,
            w.lon_deg,
            50.0,
        ));
        set.rally = rally(&[at(0.0, -350.0)]);
        let n = fence_needs(&set, HOME, 100.0);
        assert!((n.max_distance_m - 350.0).abs() < 0.5, "{n:?}");
        assert_eq!(n.max_alt_rel_m, 50.0);
    }
}
