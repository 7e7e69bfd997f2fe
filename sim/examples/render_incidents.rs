//! Render each incident of a scenario with the simulator's own renderer
//! from several altitudes, headings and offsets, and write the pictures
//! (PNG) with their ground truth (JSON): the frames the eye's models are
//! calibrated on and scored against (`scripts/models/`).
//!
//! ```text
//! cargo run --release --workspace --example render_incidents -- \
//!     --out var/renders/eval [--scenario examples/shangrao/scenario.toml] \
//!     [--altitudes 55,60,65,70] [--headings 0,90,180,270] \
//!     [--offsets 0:0,8:-12,-8:12] [--pitch -45] [--hfov 30] [--sim-time 60]
//! ```
//!
//! For each incident (its `at`, or a walker's first point), altitude `h`
//! (metres above the ground), heading and offset `along:right` (metres),
//! the camera stands `h` metres behind the incident (so that a −45° gimbal
//! looks at it), moved by the offset along and across the heading, at
//! `h` above the scenario's ground; 1280×720, 30° HFOV, no distortion.
//! Everything is a fixed function of the arguments and the scenario (its
//! seed picks who stands where and which vtest.avi pedestrian each one
//! is), so the same command writes the same pictures.
//!
//! With `--survey N [--survey-seed S]` it renders N more frames from
//! random poses over the whole ground instead of around the incidents
//! (files `survey_NNNN.png`, incident id `survey`): a uniformly random
//! point of the ground, heading, altitude (one of `--altitudes`) and
//! gimbal pitch in [−90°, −25°]; one frame in eight stands on the ground
//! (2 m up) and looks at the horizon (pitch 0° to −10°), as the camera
//! does before take-off. The seed fixes the poses.
//!
//! With `--osd-every N` every Nth frame (the 1st, the N+1th, …) gets the
//! sim camera stream's burnt-in capture-time panel in its top-left corner
//! (`timestamp::burn_timestamp`, as a gimbal camera's OSD), with a time
//! that is a fixed function of the frame's index; `osd` in its truth.
//!
//! `truth.json` lists every frame: its file, the incident it looks at, the
//! pose, each person whose feet are in the image
//! (`RenderedFrame::visible`) with their incident id and pixel box
//! (x1, y1, x2, y2, unclipped), and each fire whose flames or smoke
//! reach into the image (`FireInView`: the flames' and the smoke's boxes,
//! unclipped).

use std::path::PathBuf;

use opencv::core::Vector;
use opencv::imgcodecs;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tiancha_geometry::camera::{Attitude, CameraPose, GimbalAngles, GimbalMount};
use tiancha_geometry::geodesy::{LatLon, LocalFrame};
use tiancha_sim::camera::timestamp::burn_timestamp;
use tiancha_sim::camera::{CameraSpec, FireInView, IncidentKind, Renderer, Scenario};

struct Args {
    scenario: PathBuf,
    out: PathBuf,
    altitudes: Vec<f64>,
    headings: Vec<f64>,
    offsets: Vec<(f64, f64)>,
    pitch: f64,
    hfov: f64,
    sim_time: f64,
    survey: usize,
    survey_seed: u64,
    osd_every: usize,
}

fn list(s: &str) -> Result<Vec<f64>, String> {
    s.split(',')
        .map(|v| v.trim().parse::<f64>().map_err(|e| format!("{v:?}: {e}")))
        .collect()
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        scenario: PathBuf::from("examples/shangrao/scenario.toml"),
        out: PathBuf::new(),
        altitudes: vec![55.0, 60.0, 65.0, 70.0],
        headings: vec![0.0, 90.0, 180.0, 270.0],
        offsets: vec![(0.0, 0.0), (8.0, -12.0), (-8.0, 12.0)],
        pitch: -45.0,
        hfov: 30.0,
        sim_time: 60.0,
        survey: 0,
        survey_seed: 1,
        osd_every: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--scenario" => a.scenario = v()?.into(),
            "--out" => a.out = v()?.into(),
            "--altitudes" => a.altitudes = list(&v()?)?,
            "--headings" => a.headings = list(&v()?)?,
            "--offsets" => {
                a.offsets = v()?
                    .split(',')
                    .map(|o| {
                        let (x, y) = o
                            .split_once(':')
                            .ok_or_else(|| format!("offset {o:?} is not along:right"))?;
                        Ok((
                            x.trim().parse().map_err(|e| format!("{o:?}: {e}"))?,
                            y.trim().parse().map_err(|e| format!("{o:?}: {e}"))?,
                        ))
                    })
                    .collect::<Result<_, String>>()?
            }
            "--pitch" => a.pitch = v()?.parse().map_err(|e| format!("--pitch: {e}"))?,
            "--hfov" => a.hfov = v()?.parse().map_err(|e| format!("--hfov: {e}"))?,
            "--sim-time" => a.sim_time = v()?.parse().map_err(|e| format!("--sim-time: {e}"))?,
            "--osd-every" => a.osd_every = v()?.parse().map_err(|e| format!("--osd-every: {e}"))?,
            "--survey" => a.survey = v()?.parse().map_err(|e| format!("--survey: {e}"))?,
            "--survey-seed" => {
                a.survey_seed = v()?.parse().map_err(|e| format!("--survey-seed: {e}"))?
            }
            "-h" | "--help" => {
                println!("see the doc comment of sim/examples/render_incidents.rs");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.out.as_os_str().is_empty() {
        return Err("--out DIR is required".into());
    }
    if !(-89.0..=-1.0).contains(&a.pitch) {
        return Err(format!("--pitch {} must be in [-89, -1]", a.pitch));
    }
    Ok(a)
}

#[derive(Serialize)]
struct Person {
    incident_id: String,
    member: usize,
    bbox_px: [f64; 4],
    foot_px: [f64; 2],
    range_m: f64,
}

#[derive(Serialize)]
struct Shot {
    file: String,
    incident_id: String,
    altitude_m: f64,
    heading_deg: f64,
    offset_along_m: f64,
    offset_right_m: f64,
    lat_deg: f64,
    lon_deg: f64,
    alt_m: f64,
    gimbal_pitch_deg: f64,
    people: Vec<Person>,
    fires: Vec<FireInView>,
    /// The capture-time panel is burnt in.
    osd: bool,
}

/// Where a shot was taken from, relative to what it looks at.
struct ShotPose {
    altitude_m: f64,
    heading_deg: f64,
    along_m: f64,
    right_m: f64,
    pitch_deg: f64,
}

#[derive(Serialize)]
struct Truth {
    scenario: String,
    width_px: u32,
    height_px: u32,
    hfov_deg: f64,
    sim_time_s: f64,
    frames: Vec<Shot>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("render_incidents: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let a = parse_args()?;
    let scenario = Scenario::load(&a.scenario).map_err(|e| e.to_string())?;
    let spec = CameraSpec {
        hfov_deg: a.hfov,
        ..CameraSpec::default()
    };
    let renderer = Renderer::new(&scenario, spec).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let ground = scenario.ground_alt_m;
    let mut frames = Vec::new();
    // Renders one pose and records its truth.
    let (w, h) = (spec.width_px as f64, spec.height_px as f64);
    let mut shoot = |file: String, incident_id: &str, pose: &CameraPose, shot: ShotPose| {
        let mut frame = renderer
            .render(pose, a.sim_time)
            .map_err(|e| e.to_string())?;
        let osd = a.osd_every > 0 && frames.len() % a.osd_every == 0;
        if osd {
            // 2026-01-01 plus a second per frame.
            let unix_ms = 1_767_225_600_000 + 1_000 * frames.len() as i64;
            burn_timestamp(&mut frame.image, unix_ms).map_err(|e| e.to_string())?;
        }
        let path = a.out.join(&file);
        let ok = imgcodecs::imwrite(&path, &frame.image, &Vector::new())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !ok {
            return Err(format!("{}: could not write", path.display()));
        }
        let people: Vec<Person> = frame
            .visible()
            .map(|p| Person {
                incident_id: p.incident_id.clone(),
                member: p.member,
                bbox_px: p.bbox_px,
                foot_px: p.foot_px,
                range_m: p.range_m,
            })
            .collect();
        let overlaps = |b: &[f64; 4]| b[0] < w && b[2] > 0.0 && b[1] < h && b[3] > 0.0;
        let fires: Vec<FireInView> = frame
            .fires
            .into_iter()
            .filter(|f| overlaps(&f.flames_px) || f.smoke_px.as_ref().is_some_and(overlaps))
            .collect();
        frames.push(Shot {
            file,
            incident_id: incident_id.to_string(),
            altitude_m: shot.altitude_m,
            heading_deg: shot.heading_deg,
            offset_along_m: shot.along_m,
            offset_right_m: shot.right_m,
            lat_deg: pose.position.lat_deg,
            lon_deg: pose.position.lon_deg,
            alt_m: pose.position.alt_m,
            gimbal_pitch_deg: shot.pitch_deg,
            people,
            fires,
            osd,
        });
        Ok::<(), String>(())
    };
    for inc in &scenario.incidents {
        let at = match &inc.kind {
            IncidentKind::Gathering { at, .. }
            | IncidentKind::Person { at }
            | IncidentKind::Fire { at, .. } => at,
            IncidentKind::Walker { path, .. } => &path[0],
        };
        let target = LocalFrame::new(LatLon::new(at.lat_deg, at.lon_deg).with_alt(ground));
        for &h in &a.altitudes {
            // Horizontal distance at which the optical axis meets the ground.
            let back = h / (-a.pitch).to_radians().tan();
            for &heading in &a.headings {
                let (s, c) = heading.to_radians().sin_cos();
                for (k, &(along, right)) in a.offsets.iter().enumerate() {
                    // Forward = (north c, east s), right = (north −s, east c).
                    let n = -back * c + along * c - right * s;
                    let e = -back * s + along * s + right * c;
                    let position = target.from_ned(nalgebra::Vector3::new(n, e, -h));
                    let pose = CameraPose::new(
                        0,
                        position,
                        Attitude::new(0.0, 0.0, heading),
                        GimbalAngles::new(0.0, a.pitch, 0.0, GimbalMount::Stabilized),
                    );
                    let file = format!("{}_a{h:.0}_h{heading:03.0}_o{k}.png", inc.id);
                    let shot = ShotPose {
                        altitude_m: h,
                        heading_deg: heading,
                        along_m: along,
                        right_m: right,
                        pitch_deg: a.pitch,
                    };
                    shoot(file, &inc.id, &pose, shot)?;
                }
            }
        }
    }
    // The survey: random poses over the whole ground.
    let origin = LocalFrame::new(
        LatLon::new(scenario.origin.lat_deg, scenario.origin.lon_deg).with_alt(ground),
    );
    let g = &scenario.ground;
    let mut rng = StdRng::seed_from_u64(a.survey_seed);
    for i in 0..a.survey {
        let n = rng.random_range(g.south_m..g.north_m);
        let e = rng.random_range(g.west_m..g.east_m);
        let heading = rng.random_range(0.0..360.0_f64).round();
        let on_ground = rng.random_range(0..8) == 0;
        let (h, pitch) = if on_ground {
            (2.0, rng.random_range(-10.0..=0.0_f64).round())
        } else {
            let k = rng.random_range(0..a.altitudes.len());
            (a.altitudes[k], rng.random_range(-90.0..=-25.0_f64).round())
        };
        let position = origin.from_ned(nalgebra::Vector3::new(n, e, -h));
        let pose = CameraPose::new(
            0,
            position,
            Attitude::new(0.0, 0.0, heading),
            GimbalAngles::new(0.0, pitch, 0.0, GimbalMount::Stabilized),
        );
        let shot = ShotPose {
            altitude_m: h,
            heading_deg: heading,
            along_m: 0.0,
            right_m: 0.0,
            pitch_deg: pitch,
        };
        shoot(format!("survey_{i:04}.png"), "survey", &pose, shot)?;
    }
    let truth = Truth {
        scenario: a.scenario.display().to_string(),
        width_px: spec.width_px,
        height_px: spec.height_px,
        hfov_deg: spec.hfov_deg,
        sim_time_s: a.sim_time,
        frames,
    };
    let n = truth.frames.len();
    let people: usize = truth.frames.iter().map(|f| f.people.len()).sum();
    let text = serde_json::to_string_pretty(&truth).map_err(|e| e.to_string())?;
    let path = a.out.join("truth.json");
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "{n} frames, {people} people in view, written to {}",
        a.out.display()
    );
    Ok(())
}
