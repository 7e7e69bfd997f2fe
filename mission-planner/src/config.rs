//! The `tiancha plan` configuration file (TOML), parsed and validated here
//! so the library owns its format; the CLI reads the files it names.
//!
//! ```toml
//! name = "Shangrao demo"
//! [inputs]                 # paths relative to this file
//! area = ["area.geojson"]  # GeoJSON, KML or QGroundControl .plan
//! no_fly = ["no_fly.geojson"]
//! points_of_interest = ["poi.geojson"]
//! [camera]                 # see `Camera`
//! altitude_agl_m = 60.0
//! [vehicle]                # see `Vehicle`
//! home = { lat_deg = 28.45, lon_deg = 117.94 }
//! endurance_min = 25.0
//! reserve_min = 5.0
//! [options]                # see `PlanOptions`
//! ```

use serde::{Deserialize, Serialize};

use crate::error::PlanError;
use crate::request::{Camera, PlanOptions, Vehicle};

/// Which files hold which inputs. Files may also mark each feature's role
/// with a `kind` property; these lists give the default role.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputFiles {
    pub area: Vec<String>,
    pub no_fly: Vec<String>,
    pub points_of_interest: Vec<String>,
    /// Files whose features all carry a `kind`.
    pub mixed: Vec<String>,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanConfig {
    pub name: Option<String>,
    pub inputs: InputFiles,
    pub camera: Camera,
    pub vehicle: Vehicle,
    pub options: PlanOptions,
}

impl PlanConfig {
    /// Parse and validate. Errors say which key is wrong, with line and
    /// column.
    pub fn from_toml(text: &str) -> Result<Self, PlanError> {
        let cfg: PlanConfig = toml::from_str(text)
            .map_err(|e| PlanError::format("TOML", "config", e.to_string().trim()))?;
        cfg.vehicle.validate()?;
        cfg.options.validate()?;
        cfg.camera.geometry()?;
        Ok(cfg)
    }
}
