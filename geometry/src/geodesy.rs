//! WGS84 geodesy and local tangent planes.
//!
//! The local frame is exact, not a flat-earth approximation: a point goes
//! geodetic → ECEF → rotated into the tangent plane at the reference point.
//! Round trips over 10 km stay far below a millimetre (see the tests).

use nalgebra::{Matrix3, Vector3};
use serde::{Deserialize, Serialize};

/// WGS84 semi-major axis (m).
pub const WGS84_A: f64 = 6_378_137.0;
/// WGS84 flattening.
pub const WGS84_F: f64 = 1.0 / 298.257_223_563;
/// First eccentricity squared.
pub const WGS84_E2: f64 = WGS84_F * (2.0 - WGS84_F);
/// Mean earth radius used for great-circle helpers (m).
pub const EARTH_MEAN_RADIUS_M: f64 = 6_371_008.8;

/// A horizontal position in WGS84 degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatLon {
    pub lat_deg: f64,
    pub lon_deg: f64,
}

impl LatLon {
    pub const fn new(lat_deg: f64, lon_deg: f64) -> Self {
        Self { lat_deg, lon_deg }
    }

    /// True when both are finite and within the WGS84 ranges.
    pub fn is_valid(&self) -> bool {
        self.lat_deg.is_finite()
            && self.lon_deg.is_finite()
            && (-90.0..=90.0).contains(&self.lat_deg)
            && (-180.0..=180.0).contains(&self.lon_deg)
    }

    pub fn with_alt(self, alt_m: f64) -> LatLonAlt {
        LatLonAlt {
            lat_deg: self.lat_deg,
            lon_deg: self.lon_deg,
            alt_m,
        }
    }
}

/// A position in WGS84 degrees with altitude in metres (AMSL/ellipsoid, as
/// the caller's convention says; the transforms treat it as height above the
/// ellipsoid, which is consistent as long as one convention is used
/// throughout a computation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatLonAlt {
    pub lat_deg: f64,
    pub lon_deg: f64,
    pub alt_m: f64,
}

impl LatLonAlt {
    pub const fn new(lat_deg: f64, lon_deg: f64, alt_m: f64) -> Self {
        Self {
            lat_deg,
            lon_deg,
            alt_m,
        }
    }

    pub fn horizontal(&self) -> LatLon {
        LatLon::new(self.lat_deg, self.lon_deg)
    }
}

/// Geodetic → Earth-centred Earth-fixed (m).
pub fn geodetic_to_ecef(p: LatLonAlt) -> Vector3<f64> {
    let lat = p.lat_deg.to_radians();
    let lon = p.lon_deg.to_radians();
    let (slat, clat) = lat.sin_cos();
    let (slon, clon) = lon.sin_cos();
    let n = WGS84_A / (1.0 - WGS84_E2 * slat * slat).sqrt();
    Vector3::new(
        (n + p.alt_m) * clat * clon,
        (n + p.alt_m) * clat * slon,
        (n * (1.0 - WGS84_E2) + p.alt_m) * slat,
    )
}

/// ECEF → geodetic, by fixed-point iteration on latitude (converges to
/// machine precision within a few steps anywhere near the surface).
pub fn ecef_to_geodetic(e: Vector3<f64>) -> LatLonAlt {
    let (x, y, z) = (e.x, e.y, e.z);
    let lon = y.atan2(x);
    let p = (x * x + y * y).sqrt();
    if p < 1e-9 {
        // On the polar axis.
        let b = WGS84_A * (1.0 - WGS84_F);
        let lat = if z >= 0.0 { 90.0 } else { -90.0 };
        return LatLonAlt::new(lat, lon.to_degrees(), z.abs() - b);
    }
    let mut lat = (z / (p * (1.0 - WGS84_E2))).atan();
    let mut alt = 0.0;
    for _ in 0..10 {
        let slat = lat.sin();
        let n = WGS84_A / (1.0 - WGS84_E2 * slat * slat).sqrt();
        alt = p / lat.cos() - n;
        let next = (z / (p * (1.0 - WGS84_E2 * n / (n + alt)))).atan();
        let done = (next - lat).abs() < 1e-15;
        lat = next;
        if done {
            break;
        }
    }
    let slat = lat.sin();
    let n = WGS84_A / (1.0 - WGS84_E2 * slat * slat).sqrt();
    alt = if lat.cos().abs() > 1e-10 {
        p / lat.cos() - n
    } else {
        alt
    };
    LatLonAlt::new(lat.to_degrees(), lon.to_degrees(), alt)
}

/// A local tangent plane at a reference point. `ned` vectors are metres
/// north, east, down of the reference; `enu` east, north, up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalFrame {
    origin: LatLonAlt,
    origin_ecef: Vector3<f64>,
    /// Rotation ECEF → NED.
    r_ned_from_ecef: Matrix3<f64>,
}

impl LocalFrame {
    pub fn new(origin: LatLonAlt) -> Self {
        let lat = origin.lat_deg.to_radians();
        let lon = origin.lon_deg.to_radians();
        let (slat, clat) = lat.sin_cos();
        let (slon, clon) = lon.sin_cos();
        #[rustfmt::skip]
        let r = Matrix3::new(
            -slat * clon, -slat * slon,  clat,
            -slon,         clon,         0.0,
            -clat * clon, -clat * slon, -slat,
        );
        Self {
            origin,
            origin_ecef: geodetic_to_ecef(origin),
            r_ned_from_ecef: r,
        }
    }

    /// A frame at a horizontal point with zero altitude.
    pub fn at(origin: LatLon) -> Self {
        Self::new(origin.with_alt(0.0))
    }

    pub fn origin(&self) -> LatLonAlt {
        self.origin
    }

    pub fn to_ned(&self, p: LatLonAlt) -> Vector3<f64> {
        self.r_ned_from_ecef * (geodetic_to_ecef(p) - self.origin_ecef)
    }

    pub fn from_ned(&self, ned: Vector3<f64>) -> LatLonAlt {
        ecef_to_geodetic(self.origin_ecef + self.r_ned_from_ecef.transpose() * ned)
    }

    /// East/north (x, y) metres of a horizontal point at the origin's
    /// altitude: the 2-D plane the planner works in.
    pub fn to_en(&self, p: LatLon) -> (f64, f64) {
        let ned = self.to_ned(p.with_alt(self.origin.alt_m));
        (ned.y, ned.x)
    }

    /// Inverse of [`LocalFrame::to_en`]: the point `east`, `north` metres
    /// from the origin on the tangent plane, projected back along the local
    /// vertical to the origin's altitude.
    pub fn from_en(&self, east: f64, north: f64) -> LatLon {
        // A point on the tangent plane sits slightly above the ellipsoid
        // surface at distance; iterate so that the returned lat/lon maps
        // back onto exactly (east, north) via `to_en`.
        let mut guess = self.from_ned(Vector3::new(north, east, 0.0)).horizontal();
        for _ in 0..6 {
            let ned = self.to_ned(guess.with_alt(self.origin.alt_m));
            let (de, dn) = (east - ned.y, north - ned.x);
            if de.abs() < 1e-9 && dn.abs() < 1e-9 {
                break;
            }
            guess = self
                .from_ned(Vector3::new(ned.x + dn, ned.y + de, ned.z))
                .horizontal();
        }
        guess
    }

    pub fn to_enu(&self, p: LatLonAlt) -> Vector3<f64> {
        let ned = self.to_ned(p);
        Vector3::new(ned.y, ned.x, -ned.z)
    }

    pub fn from_enu(&self, enu: Vector3<f64>) -> LatLonAlt {
        self.from_ned(Vector3::new(enu.y, enu.x, -enu.z))
    }
}

/// Great-circle distance (haversine on the mean sphere), metres. Good to
/// ~0.5 % — use a [`LocalFrame`] where millimetres matter.
pub fn haversine_m(a: LatLon, b: LatLon) -> f64 {
    let (la1, la2) = (a.lat_deg.to_radians(), b.lat_deg.to_radians());
    let dla = la2 - la1;
    let dlo = (b.lon_deg - a.lon_deg).to_radians();
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * EARTH_MEAN_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Initial bearing from `a` to `b`, degrees clockwise from north in [0, 360).
pub fn bearing_deg(a: LatLon, b: LatLon) -> f64 {
    let (la1, la2) = (a.lat_deg.to_radians(), b.lat_deg.to_radians());
    let dlo = (b.lon_deg - a.lon_deg).to_radians();
    let y = dlo.sin() * la2.cos();
    let x = la1.cos() * la2.sin() - la1.sin() * la2.cos() * dlo.cos();
    (y.atan2(x).to_degrees() + 360.0) % 360.0
}

/// Distance in metres between two points using a local tangent plane at
/// the first: exact enough (sub-mm) for anything a drone flies.
pub fn distance_m(a: LatLon, b: LatLon) -> f64 {
    let f = LocalFrame::at(a);
    let (e, n) = f.to_en(b);
    (e * e + n * n).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHANGRAO: LatLonAlt = LatLonAlt::new(28.45, 117.94, 70.0);

    #[test]
    fn ecef_of_equator_prime_meridian() {
        let e = geodetic_to_ecef(LatLonAlt::new(0.0, 0.0, 0.0));
        assert!((e.x - WGS84_A).abs() < 1e-6);
        assert!(e.y.abs() < 1e-6 && e.z.abs() < 1e-6);
    }

    #[test]
    fn ned_axes_point_the_right_way() {
        let f = LocalFrame::new(SHANGRAO);
        let north = f.to_ned(LatLonAlt::new(28.451, 117.94, 70.0));
        assert!(north.x > 110.0 && north.x < 112.0, "{north}");
        assert!(north.y.abs() < 1e-6);
        let east = f.to_ned(LatLonAlt::new(28.45, 117.941, 70.0));
        assert!(east.y > 97.0 && east.y < 99.0, "{east}");
        let up = f.to_ned(LatLonAlt::new(28.45, 117.94, 170.0));
        assert!((up.z + 100.0).abs() < 1e-6);
    }

    #[test]
    fn haversine_matches_local_frame_at_short_range() {
        let a = SHANGRAO.horizontal();
        let b = LatLon::new(28.46, 117.95);
        let d1 = haversine_m(a, b);
        let d2 = distance_m(a, b);
        assert!((d1 - d2).abs() / d2 < 0.005, "{d1} vs {d2}");
        let brg = bearing_deg(a, LatLon::new(28.46, 117.94));
        assert!(brg.abs() < 1e-6 || (brg - 360.0).abs() < 1e-6);
    }

    proptest! {
        #[test]
        fn ten_km_round_trip_within_a_millimetre(
            n in -10_000.0f64..10_000.0,
            e in -10_000.0f64..10_000.0,
            d in -500.0f64..100.0,
            lat in -80.0f64..80.0,
            lon in -179.0f64..179.0,
        ) {
            let f = LocalFrame::new(LatLonAlt::new(lat, lon, 50.0));
            let p = f.from_ned(Vector3::new(n, e, d));
            let back = f.to_ned(p);
            prop_assert!((back - Vector3::new(n, e, d)).norm() < 1e-3);
            let q = f.from_en(e, n);
            let (e2, n2) = f.to_en(q);
            prop_assert!((e2 - e).abs() < 1e-3 && (n2 - n).abs() < 1e-3);
        }

        #[test]
        fn geodetic_ecef_round_trip(lat in -89.9f64..89.9, lon in -180.0f64..180.0, alt in -400.0f64..10_000.0) {
            let p = LatLonAlt::new(lat, lon, alt);
            let q = ecef_to_geodetic(geodetic_to_ecef(p));
            prop_assert!((q.lat_deg - lat).abs() < 1e-10);
            prop_assert!((q.lon_deg - lon).abs() < 1e-10);
            prop_assert!((q.alt_m - alt).abs() < 1e-6);
        }
    }
}
