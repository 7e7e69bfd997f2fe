//! Shared test fixtures: missions, fences, rally points, comparisons.
#![allow(dead_code)]

use tiancha_protocol::mission::{cmd, frame, MissionItem};

pub const HOME: (f64, f64, f64) = (28.45, 117.94, 70.0);

/// A `n`-item ArduPilot mission: home placeholder, takeoff, then a mix of
/// waypoints, loiters, speed changes and ROIs with awkward parameters
/// (NaN yaw, negative values, fractions).
pub fn mission(n: usize) -> Vec<MissionItem> {
    let (lat0, lon0, alt0) = HOME;
    let mut v = vec![MissionItem::nav(cmd::NAV_WAYPOINT, lat0, lon0, alt0 as f32)];
    v[0].frame = frame::GLOBAL;
    v.push(MissionItem::nav(cmd::NAV_TAKEOFF, lat0, lon0, 30.0));
    let mut i = 0usize;
    while v.len() < n {
        let a = i as f64 * 0.37;
        let lat = lat0 + 0.004 * a.sin() + (i % 7) as f64 * 1e-5;
        let lon = lon0 + 0.004 * a.cos() - (i % 5) as f64 * 1e-5;
        let it = match i % 10 {
            3 => MissionItem::command(cmd::DO_CHANGE_SPEED, [1.0, 4.0 + (i % 4) as f32, -1.0, 0.0]),
            6 => {
                let mut it = MissionItem::nav(cmd::NAV_LOITER_TIME, lat, lon, 35.5);
                it.param1 = 2.5;
                it.param3 = -12.25;
                it
            }
            8 => MissionItem::nav(cmd::DO_SET_ROI_LOCATION, lat + 1e-4, lon, 0.0),
            _ => {
                let mut it =
                    MissionItem::nav(cmd::NAV_WAYPOINT, lat, lon, 30.0 + (i % 13) as f32 * 0.75);
                it.param2 = 2.0;
                it.param4 = f32::NAN;
                it
            }
        };
        v.push(it);
        i += 1;
    }
    v.truncate(n);
    v
}

fn vertex(command: u16, n: usize, lat: f64, lon: f64) -> MissionItem {
    let mut it = MissionItem::nav(command, lat, lon, 0.0);
    it.param1 = n as f32;
    it
}

/// An inclusion polygon around home and five exclusion zones inside it.
pub fn fence() -> Vec<MissionItem> {
    let (lat0, lon0, _) = HOME;
    let mut v = Vec::new();
    let n = 8;
    for k in 0..n {
        let a = k as f64 / n as f64 * std::f64::consts::TAU;
        v.push(vertex(
            cmd::NAV_FENCE_POLYGON_VERTEX_INCLUSION,
            n,
            lat0 + 0.01 * a.sin(),
            lon0 + 0.01 * a.cos(),
        ));
    }
    for z in 0..5 {
        let (clat, clon) = (lat0 + 0.005 * (z as f64 - 2.0) / 2.0, lon0 + 0.006);
        let m = 4 + z % 3;
        for k in 0..m {
            let a = k as f64 / m as f64 * std::f64::consts::TAU;
            v.push(vertex(
                cmd::NAV_FENCE_POLYGON_VERTEX_EXCLUSION,
                m,
                clat + 0.0008 * a.sin(),
                clon + 0.0008 * a.cos(),
            ));
        }
    }
    let mut rp = MissionItem::nav(cmd::NAV_FENCE_RETURN_POINT, lat0, lon0, 20.0);
    rp.param1 = 0.0;
    v.push(rp);
    v
}

pub fn rally(n: usize) -> Vec<MissionItem> {
    let (lat0, lon0, _) = HOME;
    (0..n)
        .map(|k| {
            MissionItem::nav(
                cmd::NAV_RALLY_POINT,
                lat0 + 0.001 * k as f64,
                lon0 - 0.001 * k as f64,
                25.0,
            )
        })
        .collect()
}

fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Bit-exact equality (NaN equals NaN), frames as stored.
pub fn same_item(a: &MissionItem, b: &MissionItem) -> bool {
    a.command == b.command
        && a.frame == b.frame
        && a.autocontinue == b.autocontinue
        && a.x == b.x
        && a.y == b.y
        && same_f32(a.param1, b.param1)
        && same_f32(a.param2, b.param2)
        && same_f32(a.param3, b.param3)
        && same_f32(a.param4, b.param4)
        && same_f32(a.z, b.z)
}

/// Where the two lists first differ, if they do.
pub fn first_difference(a: &[MissionItem], b: &[MissionItem]) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("lengths {} vs {}", a.len(), b.len()));
    }
    a.iter()
        .zip(b)
        .position(|(x, y)| !same_item(x, y))
        .map(|i| format!("item {i}: {:?} vs {:?}", a[i], b[i]))
}

/// The Python with pymavlink: `$TIANCHA_PYTHON`, else `<workspace>/.venv/bin/python`.
/// Fails (never skips) when missing.
pub fn python() -> std::path::PathBuf {
    let p = match std::env::var_os("TIANCHA_PYTHON") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("crate in workspace")
            .join(".venv/bin/python"),
    };
    assert!(
        p.exists(),
        "the pymavlink referee needs Python at {} — set TIANCHA_PYTHON or run `scripts/dev setup`",
        p.display()
    );
    let ok = std::process::Command::new(&p)
        .args(["-c", "import pymavlink"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{} cannot import pymavlink — run `scripts/dev setup`",
        p.display()
    );
    p
}

pub fn referee(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/referees")
        .join(name)
}

/// Write items as a QGC WPL 110 file (what pymavlink's loaders read).
pub fn write_wpl(path: &std::path::Path, items: &[MissionItem]) {
    use std::fmt::Write;
    let mut s = String::from("QGC WPL 110\n");
    for (i, it) in items.iter().enumerate() {
        let (x, y) = if it.frame == frame::MISSION {
            (it.x as f64, it.y as f64)
        } else {
            (it.lat_deg(), it.lon_deg())
        };
        writeln!(
            s,
            "{i}\t0\t{}\t{}\t{}\t{}\t{}\t{}\t{:.8}\t{:.8}\t{}\t{}",
            it.frame,
            it.command,
            it.param1,
            it.param2,
            it.param3,
            it.param4,
            x,
            y,
            it.z,
            it.autocontinue as u8
        )
        .unwrap();
    }
    std::fs::write(path, s).unwrap();
}

/// A verified upload (upload, read back, compare) through the bridge's
/// core in virtual time; its result.
pub fn upload(
    l: &mut tiancha_sim::harness::VirtualLink,
    ty: tiancha_protocol::mission::MissionType,
    items: Vec<MissionItem>,
) -> tiancha_firmware_bridge::core::MissionJobResult {
    let at = l.instant();
    l.core
        .start_mission_job(
            tiancha_firmware_bridge::core::MissionJob::VerifiedUpload { ty, items },
            at,
        )
        .unwrap();
    l.run_until(std::time::Duration::from_secs(600), |l| {
        l.core.poll_mission_result()
    })
    .expect("finished")
}
