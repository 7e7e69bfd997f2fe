//! Alerts → cases: merging, "四优先" priority, "2+N" routing and
//! auto-dispatch, as pure functions over plain data (the store and the
//! triage worker do the I/O).
//!
//! - **Merging**: an alert joins an open case of the same category whose
//!   location is within `merge_radius_m` and whose latest alert is within
//!   `merge_window_min` of the alert's time ([`CaseRules::merges_into`]).
//! - **Priority**: the category's base priority, raised by the first rules
//!   that match: near a sensitive site, inside a named zone, a large crowd,
//!   a crowd growing fast ([`CaseRules::priority`]).
//! - **Auto-dispatch**: categories (with a confidence floor) that skip the
//!   operator ([`CaseRules::auto_dispatch`]).

use geo::{Contains, MultiPolygon, Point};
use tiancha_geometry::geodesy::{distance_m, LatLon};
use tiancha_protocol::{Alert, Category, GeoPoint, GridCell, LocationStatus, Priority};

use crate::config::CasesConfig;

/// The rules, with zone names resolved to polygons from the map layers.
#[derive(Debug, Clone)]
pub struct CaseRules {
    pub cfg: CasesConfig,
    /// Named zones (sensitive sites, danger zones) from the map layers.
    pub zones: Vec<(String, MultiPolygon<f64>)>,
}

/// What merging needs to know about an open case.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenCase {
    pub case_id: uuid::Uuid,
    pub category: Category,
    pub location: GeoPoint,
    pub t_end_unix_ms: i64,
}

/// The ground position of an alert (geotag), if it has one.
pub fn alert_point(a: &Alert) -> Option<GeoPoint> {
    match (&a.location_status, &a.location) {
        (LocationStatus::Geotagged, Some(g)) => Some(GeoPoint::new(g.lat_deg, g.lon_deg)),
        _ => None,
    }
}

/// Where to put a case for an alert without a geotag: where the drone was.
pub fn alert_place(a: &Alert) -> Option<GeoPoint> {
    alert_point(a).or_else(|| a.observer.map(|o| GeoPoint::new(o.lat_deg, o.lon_deg)))
}

pub fn dist(a: GeoPoint, b: GeoPoint) -> f64 {
    distance_m(
        LatLon::new(a.lat_deg, a.lon_deg),
        LatLon::new(b.lat_deg, b.lon_deg),
    )
}

impl CaseRules {
    pub fn new(cfg: CasesConfig, zones: Vec<(String, MultiPolygon<f64>)>) -> Self {
        Self { cfg, zones }
    }

    /// Check that every zone a rule names exists in the layers.
    pub fn check_zones(&self) -> Result<(), String> {
        for r in &self.cfg.priority_rules {
            for z in &r.zones {
                if !self.zones.iter().any(|(n, _)| n == z) {
                    return Err(format!(
                        "cases.priority_rules `{}`: zone `{z}` is not in any map layer (kind sensitive_site or danger_zone)",
                        r.name
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn merge_window_ms(&self) -> i64 {
        (self.cfg.merge_window_min * 60_000.0) as i64
    }

    /// The open case (if any) this alert belongs to: same category, close
    /// in space and time; the nearest wins.
    pub fn merges_into<'a>(&self, alert: &Alert, open: &'a [OpenCase]) -> Option<&'a OpenCase> {
        let p = alert_place(alert)?;
        let w = self.merge_window_ms();
        open.iter()
            .filter(|c| c.category == alert.category)
            .filter(|c| (alert.t_unix_ms - c.t_end_unix_ms).abs() <= w)
            .map(|c| (dist(p, c.location), c))
            .filter(|(d, _)| *d <= self.cfg.merge_radius_m)
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, c)| c)
    }

    /// Whether two alerts would merge into one case.
    pub fn alerts_merge(&self, a: &Alert, b: &Alert) -> bool {
        a.category == b.category
            && (a.t_unix_ms - b.t_unix_ms).abs() <= self.merge_window_ms()
            && match (alert_place(a), alert_place(b)) {
                (Some(p), Some(q)) => dist(p, q) <= self.cfg.merge_radius_m,
                _ => false,
            }
    }

    /// Priority of a case and the reasons it was raised above the base.
    /// `counts` are the person counts of its alerts in time order.
    pub fn priority(
        &self,
        category: Category,
        location: GeoPoint,
        counts: &[u32],
    ) -> (Priority, Vec<String>) {
        let mut p = *self
            .cfg
            .category_priority
            .get(&category)
            .unwrap_or(&self.cfg.default_priority);
        let mut why = vec![];
        let max = counts.iter().copied().max();
        let growth = match (counts.first(), counts.last()) {
            (Some(&a), Some(&b)) if a > 0 && counts.len() > 1 => {
                Some((b as f64 - a as f64) / a as f64 * 100.0)
            }
            _ => None,
        };
        let pt = Point::new(location.lon_deg, location.lat_deg);
        for r in &self.cfg.priority_rules {
            if !r.categories.is_empty() && !r.categories.contains(&category) {
                continue;
            }
            if !r.near.is_empty()
                && !r
                    .near
                    .iter()
                    .any(|s| dist(location, GeoPoint::new(s.lat_deg, s.lon_deg)) <= s.radius_m)
            {
                continue;
            }
            if !r.zones.is_empty()
                && !self
                    .zones
                    .iter()
                    .any(|(n, poly)| r.zones.contains(n) && poly.contains(&pt))
            {
                continue;
            }
            if let Some(n) = r.min_person_count {
                if max.is_none_or(|m| m < n) {
                    continue;
                }
            }
            if let Some(g) = r.min_growth_pct {
                if growth.is_none_or(|x| x < g) {
                    continue;
                }
            }
            if r.priority > p {
                p = r.priority;
                why.push(r.name.clone());
            }
        }
        (p, why)
    }

    /// Whether an alert is dispatched without an operator.
    pub fn auto_dispatch(&self, a: &Alert) -> bool {
        self.cfg
            .auto_dispatch
            .iter()
            .any(|r| r.categories.contains(&a.category) && a.confidence >= r.min_confidence)
    }
}

/// A human title for a case.
pub fn title(category: Category, person_count: Option<u32>, grid: Option<&GridCell>) -> String {
    let what = match (category, person_count) {
        (Category::Gathering, Some(n)) => format!("Gathering of {n} people"),
        (c, _) => {
            let s = c.as_str().replace('_', " ");
            let mut ch = s.chars();
            match ch.next() {
                Some(f) => f.to_uppercase().collect::<String>() + ch.as_str(),
                None => s,
            }
        }
    };
    match grid {
        Some(g) if !g.village.is_empty() => format!("{what} at {} ({})", g.village, g.grid_id),
        Some(g) => format!("{what} in grid cell {}", g.grid_id),
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AutoDispatchRule, NearSite, PriorityRule};
    use tiancha_protocol::*;
    use uuid::Uuid;

    const T0: i64 = 1_800_000_000_000;

    fn alert(cat: Category, lat: f64, lon: f64, t: i64, n: Option<u32>) -> Alert {
        Alert {
            schema: SCHEMA_VERSION,
            alert_id: Uuid::now_v7(),
            drone_id: DroneId::new("sr-01").unwrap(),
            category: cat,
            confidence: 0.8,
            t_first_unix_ms: t,
            t_unix_ms: t,
            location_status: LocationStatus::Geotagged,
            location: Some(Geotag {
                lat_deg: lat,
                lon_deg: lon,
                alt_m: None,
                sigma: Ellipse {
                    semi_major_m: 3.0,
                    semi_minor_m: 2.0,
                    orientation_deg: 0.0,
                },
            }),
            observer: None,
            person_count: n,
            extent_m: None,
            tracks: vec![],
            rule: RuleInfo {
                name: "r".into(),
                detail: String::new(),
            },
            zone: None,
            mission_id: None,
            snapshot: None,
        }
    }

    fn rules() -> CaseRules {
        let mut cfg = CasesConfig {
            merge_radius_m: 100.0,
            merge_window_min: 10.0,
            ..Default::default()
        };
        cfg.category_priority.insert(Category::Fire, Priority::High);
        cfg.priority_rules.push(PriorityRule {
            name: "gathering near the town hall".into(),
            categories: vec![Category::Gathering],
            near: vec![NearSite {
                name: "town hall".into(),
                lat_deg: 28.45,
                lon_deg: 117.94,
                radius_m: 300.0,
            }],
            zones: vec![],
            min_person_count: None,
            min_growth_pct: None,
            priority: Priority::High,
        });
        cfg.priority_rules.push(PriorityRule {
            name: "crowd growing fast".into(),
            categories: vec![Category::Gathering],
            near: vec![],
            zones: vec![],
            min_person_count: Some(10),
            min_growth_pct: Some(50.0),
            priority: Priority::Urgent,
        });
        cfg.auto_dispatch.push(AutoDispatchRule {
            categories: vec![Category::Fire],
            min_confidence: 0.7,
        });
        CaseRules::new(cfg, vec![])
    }

    #[test]
    fn merge_needs_same_category_near_and_recent() {
        let r = rules();
        let open = vec![OpenCase {
            case_id: Uuid::now_v7(),
            category: Category::Gathering,
            location: GeoPoint::new(28.45, 117.94),
            t_end_unix_ms: T0,
        }];
        // ~55 m north, 5 minutes later: merges.
        let a = alert(Category::Gathering, 28.4505, 117.94, T0 + 300_000, Some(9));
        assert!(r.merges_into(&a, &open).is_some());
        // Too far (~220 m).
        let a = alert(Category::Gathering, 28.452, 117.94, T0 + 300_000, Some(9));
        assert!(r.merges_into(&a, &open).is_none());
        // Too late (11 min).
        let a = alert(Category::Gathering, 28.4501, 117.94, T0 + 660_000, Some(9));
        assert!(r.merges_into(&a, &open).is_none());
        // Other category.
        let a = alert(Category::Fire, 28.4501, 117.94, T0, None);
        assert!(r.merges_into(&a, &open).is_none());
        let b = alert(Category::Fire, 28.4502, 117.9401, T0 + 1000, None);
        assert!(r.alerts_merge(&a, &b));
    }

    #[test]
    fn four_priorities() {
        let r = rules();
        let far = GeoPoint::new(28.47, 117.94);
        let near = GeoPoint::new(28.451, 117.94);
        assert_eq!(
            r.priority(Category::Gathering, far, &[8]).0,
            Priority::Normal
        );
        let (p, why) = r.priority(Category::Gathering, near, &[8]);
        assert_eq!(p, Priority::High);
        assert_eq!(why, vec!["gathering near the town hall".to_string()]);
        assert_eq!(r.priority(Category::Fire, far, &[]).0, Priority::High);
        // 8 → 14 people: +75 %, at least 10: urgent.
        assert_eq!(
            r.priority(Category::Gathering, far, &[8, 14]).0,
            Priority::Urgent
        );
        assert_eq!(
            r.priority(Category::Gathering, far, &[8, 9]).0,
            Priority::Normal
        );
    }

    #[test]
    fn auto_dispatch_and_titles() {
        let r = rules();
        assert!(r.auto_dispatch(&alert(Category::Fire, 28.4, 117.9, T0, None)));
        let mut a = alert(Category::Fire, 28.4, 117.9, T0, None);
        a.confidence = 0.5;
        assert!(!r.auto_dispatch(&a));
        assert!(!r.auto_dispatch(&alert(Category::Gathering, 28.4, 117.9, T0, None)));
        let g = GridCell {
            grid_id: "SR-1".into(),
            county: "c".into(),
            township: "t".into(),
            village: "Xiajia".into(),
        };
        assert_eq!(
            title(Category::Gathering, Some(12), Some(&g)),
            "Gathering of 12 people at Xiajia (SR-1)"
        );
        assert_eq!(
            title(Category::IllegalDumping, None, None),
            "Illegal dumping"
        );
    }
}
