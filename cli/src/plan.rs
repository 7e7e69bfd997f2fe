//! `tiancha plan`: read an area, no-fly zones and points of interest (files
//! and flags, or a TOML config), plan the patrol, and write QGroundControl
//! `.plan` files (one per sortie), the route as GeoJSON and KML, and a
//! picture (SVG and PNG), then print a summary.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tiancha_mission_planner::config::PlanConfig;
use tiancha_mission_planner::formats::{geojson, kml, qgc, Inputs, Role};
use tiancha_mission_planner::{plan_patrol, Autopilot, LatLon, LatLonAlt, PlanRequest};

/// Arguments of `tiancha plan`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// TOML configuration (inputs, camera, vehicle, options); flags override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Area file(s): GeoJSON, KML or QGroundControl .plan (survey polygon / inclusion fence).
    #[arg(long)]
    pub area: Vec<PathBuf>,
    /// No-fly zone file(s): GeoJSON or KML (polygons, or points with radius_m), buffer_m per zone.
    #[arg(long = "no-fly")]
    pub no_fly: Vec<PathBuf>,
    /// Points of interest file(s): GeoJSON or KML points (name, dwell_s, priority).
    #[arg(long)]
    pub poi: Vec<PathBuf>,
    /// Files whose features each carry a `kind` (area, no_fly_zone, point_of_interest, home, rally).
    #[arg(long)]
    pub input: Vec<PathBuf>,
    /// Home / launch point as LAT,LON.
    #[arg(long, value_parser = parse_latlon)]
    pub home: Option<LatLon>,
    /// Flight altitude above home, metres.
    #[arg(long)]
    pub alt: Option<f64>,
    /// Target ground sample distance, cm/px (instead of --alt).
    #[arg(long)]
    pub gsd: Option<f64>,
    /// Cruise speed, m/s.
    #[arg(long)]
    pub speed: Option<f64>,
    /// Battery endurance, minutes.
    #[arg(long)]
    pub endurance_min: Option<f64>,
    /// Battery reserve, minutes.
    #[arg(long)]
    pub reserve_min: Option<f64>,
    /// Default safety buffer for no-fly zones that have none, metres.
    #[arg(long)]
    pub buffer: Option<f64>,
    /// ardupilot (home at seq 0) or px4.
    #[arg(long, value_parser = ["ardupilot", "px4"])]
    pub autopilot: Option<String>,
    /// Force the sweep heading (degrees from north) instead of choosing the fastest.
    #[arg(long)]
    pub sweep_angle: Option<f64>,
    /// Plan name (file names and picture title).
    #[arg(long)]
    pub name: Option<String>,
    /// Output directory.
    #[arg(long, short, default_value = ".")]
    pub out: PathBuf,
    /// Picture width in pixels.
    #[arg(long, default_value_t = 1200)]
    pub width: u32,
}

fn parse_latlon(s: &str) -> Result<LatLon, String> {
    let mut it = s.split(',');
    let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) else {
        return Err(format!("'{s}' is not LAT,LON"));
    };
    let q = LatLon::new(
        a.trim()
            .parse()
            .map_err(|_| format!("'{a}' is not a latitude"))?,
        b.trim()
            .parse()
            .map_err(|_| format!("'{b}' is not a longitude"))?,
    );
    if !q.is_valid() {
        return Err(format!("{s} is not a valid WGS84 position"));
    }
    Ok(q)
}

/// Read one input file by its extension.
fn read_inputs(path: &Path, role: Role) -> anyhow::Result<Inputs> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let what = path.display().to_string();
    Ok(match ext.as_str() {
        "kml" => kml::read_kml(&text, role).with_context(|| what.clone())?,
        "plan" => {
            let p = qgc::read_plan(&text).with_context(|| what.clone())?;
            Inputs {
                areas: p.areas,
                no_fly_zones: p.no_fly_zones,
                points_of_interest: vec![],
                home: p.home.map(|h| h.horizontal()),
                rally_points: p.rally_points,
            }
        }
        "geojson" | "json" => geojson::read_geojson(&text, role).with_context(|| what.clone())?,
        other => bail!("{what}: unknown file type '.{other}' (use .geojson, .json, .kml or .plan)"),
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // Configuration: file first, then flags.
    let (mut cfg, base) = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let cfg = PlanConfig::from_toml(&text).with_context(|| p.display().to_string())?;
            (cfg, p.parent().map(Path::to_path_buf).unwrap_or_default())
        }
        None => (PlanConfig::default(), PathBuf::new()),
    };
    let mut inputs = Inputs::default();
    let rel = |s: &String| base.join(s);
    let mut files: Vec<(PathBuf, Role)> = Vec::new();
    files.extend(cfg.inputs.area.iter().map(|s| (rel(s), Role::Area)));
    files.extend(cfg.inputs.no_fly.iter().map(|s| (rel(s), Role::NoFlyZone)));
    files.extend(
        cfg.inputs
            .points_of_interest
            .iter()
            .map(|s| (rel(s), Role::PointOfInterest)),
    );
    files.extend(cfg.inputs.mixed.iter().map(|s| (rel(s), Role::Area)));
    files.extend(args.area.iter().map(|p| (p.clone(), Role::Area)));
    files.extend(args.no_fly.iter().map(|p| (p.clone(), Role::NoFlyZone)));
    files.extend(args.poi.iter().map(|p| (p.clone(), Role::PointOfInterest)));
    files.extend(args.input.iter().map(|p| (p.clone(), Role::Area)));
    for (p, role) in &files {
        inputs.extend(read_inputs(p, *role)?);
    }
    if let Some(b) = args.buffer {
        for z in &mut inputs.no_fly_zones {
            if z.buffer_m == 0.0 {
                z.buffer_m = b;
            }
        }
    }
    if let Some(h) = args.home.or(inputs.home) {
        cfg.vehicle.home = Some(h);
    }
    if let Some(a) = args.alt {
        cfg.camera.altitude_agl_m = Some(a);
        cfg.camera.gsd_cm_per_px = None;
    }
    if let Some(g) = args.gsd {
        cfg.camera.gsd_cm_per_px = Some(g);
        cfg.camera.altitude_agl_m = None;
    }
    if let Some(s) = args.speed {
        cfg.vehicle.cruise_speed_mps = s;
    }
    if let Some(e) = args.endurance_min {
        cfg.vehicle.endurance_min = Some(e);
        cfg.vehicle.capacity_wh = None;
    }
    if let Some(r) = args.reserve_min {
        cfg.vehicle.reserve_min = Some(r);
    }
    if let Some(a) = &args.autopilot {
        cfg.vehicle.autopilot = if a == "px4" {
            Autopilot::Px4
        } else {
            Autopilot::Ardupilot
        };
    }
    if let Some(a) = args.sweep_angle {
        cfg.options.sweep_angle_deg = Some(a);
    }
    let name = args
        .name
        .clone()
        .or(cfg.name.clone())
        .unwrap_or_else(|| "patrol".into());
    let req = PlanRequest {
        name: Some(name.clone()),
        areas: inputs.areas.clone(),
        no_fly_zones: inputs.no_fly_zones.clone(),
        points_of_interest: inputs.points_of_interest.clone(),
        rally_points: inputs.rally_points.clone(),
        camera: cfg.camera.clone(),
        vehicle: cfg.vehicle.clone(),
        options: cfg.options.clone(),
    };
    if files.is_empty() {
        bail!("no inputs: give --area/--no-fly/--poi/--input files or a --config with [inputs]");
    }
    let plan = plan_patrol(&req).context("cannot plan this patrol")?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut written = Vec::new();
    let write = |file: String, data: &[u8], written: &mut Vec<PathBuf>| -> anyhow::Result<()> {
        let p = args.out.join(file);
        std::fs::write(&p, data).with_context(|| format!("cannot write {}", p.display()))?;
        written.push(p);
        Ok(())
    };
    let home = LatLonAlt::new(
        plan.summary.home.lat_deg,
        plan.summary.home.lon_deg,
        req.vehicle.home_alt_amsl_m,
    );
    for (i, s) in plan.sorties.iter().enumerate() {
        let text = qgc::write_plan(
            &s.mission,
            plan.autopilot,
            Some(home),
            req.vehicle.cruise_speed_mps,
            req.vehicle.cruise_speed_mps,
        );
        let file = if plan.sorties.len() == 1 {
            format!("{stem}.plan")
        } else {
            format!("{stem}-sortie-{}.plan", i + 1)
        };
        write(file, text.as_bytes(), &mut written)?;
    }
    let mut inputs_out = inputs.clone();
    inputs_out.home = Some(plan.summary.home);
    write(
        format!("{stem}.geojson"),
        geojson::write_plan_geojson(&plan, &inputs_out).as_bytes(),
        &mut written,
    )?;
    let routes: Vec<Vec<LatLon>> = plan.sorties.iter().map(|s| s.route.clone()).collect();
    write(
        format!("{stem}.kml"),
        kml::write_kml(&inputs_out, &routes).as_bytes(),
        &mut written,
    )?;
    let svg = tiancha_mission_planner::render::svg(&plan, &req, args.width);
    write(format!("{stem}.svg"), svg.as_bytes(), &mut written)?;
    write(format!("{stem}.png"), &rasterise(&svg)?, &mut written)?;

    println!("{}", plan.summary);
    for (i, s) in plan.sorties.iter().enumerate() {
        println!(
            "sortie {:<3} {:.2} km, {:.1} min, battery {:.1} {} of {:.1}, {} mission items, {} point(s) of interest",
            i + 1,
            s.length_m / 1000.0,
            s.time_s / 60.0,
            s.battery_used,
            plan.summary.battery_unit,
            plan.summary.battery_usable,
            s.mission.mission.len(),
            s.points_of_interest.len()
        );
    }
    println!(
        "fence      1 inclusion polygon ({} vertices), {} exclusion polygon(s), {} exclusion circle(s); {} rally point(s)",
        plan.fence.inclusion.len(),
        plan.fence.exclusion_polygons.len(),
        plan.fence.exclusion_circles.len(),
        plan.rally.len()
    );
    for p in written {
        println!("wrote      {}", p.display());
    }
    Ok(())
}

/// SVG → PNG with resvg, using the system's fonts for labels.
fn rasterise(svg: &str) -> anyhow::Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    let tree = usvg::Tree::from_str(svg, &opt).context("cannot parse the SVG picture")?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .context("picture too large to rasterise")?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().context("cannot encode PNG")
}
