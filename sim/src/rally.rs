//! Where RTL goes: home or a rally point, as ArduPilot's
//! `AP_Rally::calc_best_rally_or_home_location` and
//! `find_nearest_rally_point` choose. Pure.

use tiancha_geometry::geodesy::{distance_m, LatLon};

/// RTL's destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtlTarget {
    Home,
    /// The rally point at this index of the list given.
    Rally(usize),
}

/// Choose RTL's destination from the vehicle's position `current`:
///
/// - no rally points: home;
/// - else the rally point nearest to `current` (the first of equals);
/// - if `rally_limit_km` > 0 (`RALLY_LIMIT_KM`) and that point is farther
///   than the limit: home;
/// - else with `rally_incl_home` false (`RALLY_INCL_HOME` = 0): the rally
///   point, however far home is;
/// - with `rally_incl_home` true: the rally point only if it is strictly
///   closer than home.
pub fn rtl_target(
    current: LatLon,
    home: LatLon,
    rally: &[LatLon],
    rally_limit_km: f64,
    rally_incl_home: bool,
) -> RtlTarget {
    let mut nearest: Option<(usize, f64)> = None;
    for (i, r) in rally.iter().enumerate() {
        let d = distance_m(current, *r);
        if nearest.is_none_or(|(_, best)| d < best) {
            nearest = Some((i, d));
        }
    }
    let Some((i, d)) = nearest else {
        return RtlTarget::Home;
    };
    if rally_limit_km > 0.0 && d > rally_limit_km * 1000.0 {
        return RtlTarget::Home;
    }
    if !rally_incl_home || d < distance_m(current, home) {
        RtlTarget::Rally(i)
    } else {
        RtlTarget::Home
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiancha_geometry::geodesy::LocalFrame;

    const HOME: LatLon = LatLon::new(28.45, 117.94);

    /// A point `n` m north and `e` m east of home.
    fn at(n: f64, e: f64) -> LatLon {
        LocalFrame::at(HOME).from_en(e, n)
    }

    #[test]
    fn home_without_rally_points() {
        assert_eq!(
            rtl_target(at(500.0, 0.0), HOME, &[], 0.3, true),
            RtlTarget::Home
        );
        assert_eq!(
            rtl_target(at(500.0, 0.0), HOME, &[], 0.0, false),
            RtlTarget::Home
        );
    }

    #[test]
    fn nearest_rally_point_when_it_is_closer_than_home() {
        let rally = [at(0.0, 400.0), at(450.0, 0.0), at(300.0, 0.0)];
        // At 500 m north: point 1 is 50 m away, home 500 m.
        assert_eq!(
            rtl_target(at(500.0, 0.0), HOME, &rally, 0.3, true),
            RtlTarget::Rally(1)
        );
        // At 320 m north: point 2 (20 m) beats point 1 (130 m).
        assert_eq!(
            rtl_target(at(320.0, 0.0), HOME, &rally, 0.3, true),
            RtlTarget::Rally(2)
        );
    }

    #[test]
    fn home_when_it_is_closer_and_counts() {
        let rally = [at(300.0, 0.0)];
        // 100 m north: the rally point is 200 m away, home 100 m.
        assert_eq!(
            rtl_target(at(100.0, 0.0), HOME, &rally, 0.3, true),
            RtlTarget::Home
        );
        // Equal distances: home (the rally point must be strictly closer).
        assert_eq!(
            rtl_target(at(150.0, 0.0), HOME, &rally, 0.3, true),
            RtlTarget::Home
        );
        // RALLY_INCL_HOME = 0: the rally point even though home is closer.
        assert_eq!(
            rtl_target(at(100.0, 0.0), HOME, &rally, 0.3, false),
            RtlTarget::Rally(0)
        );
    }

    #[test]
    fn rally_limit_sends_far_vehicles_home() {
        let rally = [at(1000.0, 0.0)];
        // 1500 m north: the rally point is 500 m away (> 0.3 km) → home,
        // even though home is 1500 m away and even without RALLY_INCL_HOME.
        assert_eq!(
            rtl_target(at(1500.0, 0.0), HOME, &rally, 0.3, true),
            RtlTarget::Home
        );
        assert_eq!(
            rtl_target(at(1500.0, 0.0), HOME, &rally, 0.3, false),
            RtlTarget::Home
        );
        // Within the limit: the rally point.
        assert_eq!(
            rtl_target(at(1200.0, 0.0), HOME, &rally, 0.3, true),
            RtlTarget::Rally(0)
        );
        // RALLY_LIMIT_KM = 0: no limit.
        assert_eq!(
            rtl_target(at(1500.0, 0.0), HOME, &rally, 0.0, true),
            RtlTarget::Rally(0)
        );
    }
}
