//! Failsafes (sans-IO): fed the links, the battery and the time, answers
//! what to do. Each failsafe fires once per episode and re-arms when the
//! cause clears.
//!
//! - ground link lost → keep patrolling (alerts wait in the spool); after
//!   `ground_link_rtl_s` (0 = never) return to launch;
//! - low battery → return to launch with an event;
//! - every link change is reported as an event (spooled, so a ground-link
//!   event arrives when the link is back).

use std::time::{Duration, Instant};

use tiancha_protocol::{EventKind, LinkName, LinkState};

use crate::config::SafetySection;

/// What the failsafe logic sees each tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inputs {
    pub ground_up: bool,
    pub autopilot_up: bool,
    pub camera_up: Option<bool>,
    pub in_air: bool,
    pub battery_pct: Option<f64>,
    /// Already returning or landing (no point commanding RTL again).
    pub returning: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Command return-to-launch, saying why.
    ReturnToLaunch { reason: String },
    /// Publish this event.
    Event(EventKind),
}

#[derive(Debug)]
pub struct Failsafe {
    ground_rtl_after: Option<Duration>,
    low_battery_pct: f64,
    ground_down_since: Option<Instant>,
    ground_rtl_done: bool,
    low_battery_done: bool,
    last: Option<Inputs>,
}

impl Failsafe {
    pub fn new(cfg: &SafetySection) -> Self {
        Self {
            ground_rtl_after: (cfg.ground_link_rtl_s > 0)
                .then(|| Duration::from_secs(cfg.ground_link_rtl_s)),
            low_battery_pct: cfg.low_battery_rtl_pct,
            ground_down_since: None,
            ground_rtl_done: false,
            low_battery_done: false,
            last: None,
        }
    }

    pub fn update(&mut self, now: Instant, i: Inputs) -> Vec<Action> {
        let mut out = vec![];
        let prev = self.last.replace(i);
        let link = |name, up: bool| {
            Action::Event(EventKind::Link {
                link: name,
                state: if up { LinkState::Up } else { LinkState::Down },
            })
        };
        if let Some(p) = prev {
            if p.ground_up != i.ground_up {
                out.push(link(LinkName::Ground, i.ground_up));
            }
            if p.autopilot_up != i.autopilot_up {
                out.push(link(LinkName::Autopilot, i.autopilot_up));
            }
            if let (Some(a), Some(b)) = (p.camera_up, i.camera_up) {
                if a != b {
                    out.push(link(LinkName::Camera, b));
                }
            }
        }

        // Ground link.
        if i.ground_up {
            self.ground_down_since = None;
            self.ground_rtl_done = false;
        } else {
            let since = *self.ground_down_since.get_or_insert(now);
            if let Some(after) = self.ground_rtl_after {
                if i.in_air && !i.returning && !self.ground_rtl_done && now - since >= after {
                    self.ground_rtl_done = true;
                    let reason = format!(
                        "ground link lost for {} s (limit {} s)",
                        (now - since).as_secs(),
                        after.as_secs()
                    );
                    out.push(Action::Event(EventKind::Failsafe {
                        reason: reason.clone(),
                        action: "return_to_launch".into(),
                    }));
                    out.push(Action::ReturnToLaunch { reason });
                }
            }
        }

        // Battery.
        match i.battery_pct {
            Some(b)
                if b <= self.low_battery_pct
                    && i.in_air
                    && !i.returning
                    && !self.low_battery_done =>
            {
                self.low_battery_done = true;
                let reason = format!(
                    "battery at {b:.0} % (failsafe at {:.0} %)",
                    self.low_battery_pct
                );
                out.push(Action::Event(EventKind::Failsafe {
                    reason: reason.clone(),
                    action: "return_to_launch".into(),
                }));
                out.push(Action::ReturnToLaunch { reason });
            }
            Some(_) if !i.in_air => self.low_battery_done = false,
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ground_s: u64) -> SafetySection {
        SafetySection {
            ground_link_rtl_s: ground_s,
            ..SafetySection::default()
        }
    }

    fn flying() -> Inputs {
        Inputs {
            ground_up: true,
            autopilot_up: true,
            camera_up: Some(true),
            in_air: true,
            battery_pct: Some(80.0),
            returning: false,
        }
    }

    fn rtls(a: &[Action]) -> usize {
        a.iter()
            .filter(|a| matches!(a, Action::ReturnToLaunch { .. }))
            .count()
    }

    #[test]
    fn ground_link_loss_keeps_patrolling_then_returns_once() {
        let t0 = Instant::now();
        let mut f = Failsafe::new(&cfg(120));
        assert!(f.update(t0, flying()).is_empty());
        let down = Inputs {
            ground_up: false,
            ..flying()
        };
        let a = f.update(t0 + Duration::from_secs(1), down);
        assert_eq!(
            a,
            vec![Action::Event(EventKind::Link {
                link: LinkName::Ground,
                state: LinkState::Down
            })]
        );
        assert_eq!(rtls(&f.update(t0 + Duration::from_secs(100), down)), 0);
        let a = f.update(t0 + Duration::from_secs(121), down);
        assert_eq!(rtls(&a), 1);
        assert_eq!(rtls(&f.update(t0 + Duration::from_secs(200), down)), 0);
    }

    #[test]
    fn ground_link_rtl_can_be_disabled() {
        let t0 = Instant::now();
        let mut f = Failsafe::new(&cfg(0));
        let down = Inputs {
            ground_up: false,
            ..flying()
        };
        f.update(t0, down);
        assert_eq!(rtls(&f.update(t0 + Duration::from_secs(100_000), down)), 0);
    }

    #[test]
    fn low_battery_returns_once_and_not_when_already_returning() {
        let t0 = Instant::now();
        let mut f = Failsafe::new(&cfg(0));
        let low = Inputs {
            battery_pct: Some(19.0),
            ..flying()
        };
        let a = f.update(t0, low);
        assert_eq!(rtls(&a), 1);
        assert!(
            matches!(&a[0], Action::Event(EventKind::Failsafe { reason, .. }) if reason.contains("19 %"))
        );
        assert_eq!(rtls(&f.update(t0, low)), 0);
        let mut g = Failsafe::new(&cfg(0));
        assert_eq!(
            rtls(&g.update(
                t0,
                Inputs {
                    returning: true,
                    ..low
                }
            )),
            0
        );
    }
}
