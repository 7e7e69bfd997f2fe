//! The ground station's configuration (TOML), validated at start-up.
//! Relative paths are relative to the config file's directory. A complete,
//! commented example is `examples/ground-station/ground-station.toml`.
//!
//! ```toml
//! data_dir = "var/ground-station"   # store.db lives here
//! instance = "gs-1"                 # unique per instance (MQTT client id)
//!
//! [http]
//! listen = "127.0.0.1:8080"
//! public_url = "https://gs.example/"  # base of evidence links sent to dispute systems
//! secure_cookies = true               # false only for plain-HTTP labs
//!
//! [mqtt]                            # where ingest connects
//! host = "127.0.0.1"
//! port = 1883
//!
//! [broker]
//! embedded = true                   # false: use an external broker (mosquitto) at [mqtt]
//! listen = "127.0.0.1:1883"
//!
//! [map]                             # layers, grid cells, tiles
//! [cases]                           # merging, priority rules, auto-dispatch
//! [dispatch]                        # routes ("2+N"), retry policy
//! [retention]                       # purge snapshots / telemetry after N days
//! [video]                           # live video per drone, clips around alerts
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiancha_protocol::mqtt::Endpoint;
use tiancha_protocol::{Category, Priority};

use crate::broker::BrokerConfig;
use crate::dispatch::outbox::RetryPolicy;
use crate::ingest::IngestConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_instance")]
    pub instance: String,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub mqtt: Endpoint,
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub map: MapConfig,
    #[serde(default)]
    pub cases: CasesConfig,
    #[serde(default)]
    pub dispatch: DispatchConfig,
    #[serde(default)]
    pub commands: CommandsConfig,
    #[serde(default)]
    pub missions: MissionsConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Where the store lives: SQLite (default) or a shared PostgreSQL.
    #[serde(default)]
    pub store: crate::store::StoreConfig,
    /// Live video and alert clips (`[video]`, see [`crate::video::config`]).
    #[serde(default)]
    pub video: crate::video::config::VideoConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The URL people and dispute systems reach this station at; evidence
    /// links in cases start with it. Default: `http://{listen}/`.
    pub public_url: Option<String>,
    /// Mark the session cookie `Secure` (sent over HTTPS only; browsers
    /// also accept it on http://localhost). Turn off only for a plain-HTTP
    /// lab network.
    pub secure_cookies: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            public_url: None,
            secure_cookies: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A session ends this long after login.
    pub session_ttl_min: i64,
    /// Failed logins per user name or per client address within the window
    /// before further attempts are refused for `login_lockout_s`.
    pub login_max_failures: u32,
    pub login_window_s: i64,
    pub login_lockout_s: i64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_ttl_min: 12 * 60,
            login_max_failures: 5,
            login_window_s: 300,
            login_lockout_s: 300,
        }
    }
}

/// Map layers and tiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MapConfig {
    /// Initial view [lat, lon].
    pub center: [f64; 2],
    pub zoom: u8,
    /// GeoJSON FeatureCollections drawn on the map. Each feature's
    /// `properties.kind` says what it is: `area` (a saved patrol area),
    /// `no_fly_zone`, `danger_zone`, `sensitive_site`, `poi`.
    pub layers: Vec<PathBuf>,
    /// The grid-cell layer (features with `grid_id`, `county`, `township`,
    /// `village`); cases take the cell containing them.
    pub grid: Option<PathBuf>,
    /// Background tiles; without them the vector layers alone are the map.
    pub tiles: Option<TileSource>,
}

impl Default for MapConfig {
    fn default() -> Self {
        Self {
            center: [28.45, 117.94],
            zoom: 14,
            layers: vec![],
            grid: None,
            tiles: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileSource {
    /// URL template of an internal tile server, `{z}/{x}/{y}` (XYZ).
    #[serde(default)]
    pub url: Option<String>,
    /// An MBTiles file the station serves itself at `/tiles/{z}/{x}/{y}`.
    #[serde(default)]
    pub mbtiles: Option<PathBuf>,
    #[serde(default)]
    pub attribution: String,
    #[serde(default = "default_max_zoom")]
    pub max_zoom: u8,
}

fn default_max_zoom() -> u8 {
    19
}

/// How alerts become cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CasesConfig {
    /// Alerts of the same category within this distance ...
    pub merge_radius_m: f64,
    /// ... and this many minutes of a case's latest alert join that case.
    pub merge_window_min: f64,
    pub default_priority: Priority,
    /// Priority by category, before the rules below.
    pub category_priority: BTreeMap<Category, Priority>,
    /// "四优先": rules that raise priority (first match that raises wins).
    pub priority_rules: Vec<PriorityRule>,
    /// Categories dispatched without waiting for an operator.
    pub auto_dispatch: Vec<AutoDispatchRule>,
}

impl Default for CasesConfig {
    fn default() -> Self {
        Self {
            merge_radius_m: 200.0,
            merge_window_min: 30.0,
            default_priority: Priority::Normal,
            category_priority: BTreeMap::new(),
            priority_rules: vec![],
            auto_dispatch: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityRule {
    pub name: String,
    /// Empty: any category.
    #[serde(default)]
    pub categories: Vec<Category>,
    /// Applies within `radius_m` of any of these points.
    #[serde(default)]
    pub near: Vec<NearSite>,
    /// Applies inside map-layer features (kind `sensitive_site` or
    /// `danger_zone`) with these names.
    #[serde(default)]
    pub zones: Vec<String>,
    /// Applies when the case counts at least this many people.
    #[serde(default)]
    pub min_person_count: Option<u32>,
    /// Applies when the count grew by this many percent across the case's
    /// alerts ("growing fast").
    #[serde(default)]
    pub min_growth_pct: Option<f64>,
    pub priority: Priority,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearSite {
    #[serde(default)]
    pub name: String,
    pub lat_deg: f64,
    pub lon_deg: f64,
    pub radius_m: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoDispatchRule {
    pub categories: Vec<Category>,
    #[serde(default)]
    pub min_confidence: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceMode {
    /// Evidence as signed links to this station (`public_url`).
    #[default]
    Url,
    /// Snapshots inline as `data:` URLs in the case JSON.
    Inline,
}

/// Delivery into dispute systems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    pub routes: Vec<RouteConfig>,
    pub retry: RetryPolicy,
    /// One HTTP attempt may take this long.
    pub request_timeout_ms: u64,
    /// Accept signed callbacks up to this far from our clock.
    pub signature_tolerance_s: i64,
    /// Larger callback bodies are refused (413).
    pub callback_max_bytes: usize,
    pub evidence: EvidenceMode,
    /// Evidence links stay valid this long.
    pub evidence_link_ttl_h: i64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            routes: vec![],
            retry: RetryPolicy::default(),
            request_timeout_ms: 10_000,
            signature_tolerance_s: 300,
            callback_max_bytes: 64 * 1024,
            evidence: EvidenceMode::Url,
            evidence_link_ttl_h: 24 * 30,
        }
    }
}

/// One dispute system ("2+N": governance centre, hotline, more).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Short name, used in callback URLs (`/api/callbacks/{name}`).
    pub name: String,
    /// Where cases are POSTed.
    pub url: String,
    /// The HMAC secret, inline ...
    #[serde(default)]
    pub secret: Option<String>,
    /// ... or from this environment variable (preferred).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Categories routed here.
    #[serde(default)]
    pub categories: Vec<Category>,
    /// Takes every category no other route names.
    #[serde(default)]
    pub default: bool,
    /// `json` (the `Case`) or `cap` (CAP 1.2 XML).
    #[serde(default)]
    pub format: RouteFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteFormat {
    #[default]
    Json,
    Cap,
}

impl RouteConfig {
    /// The secret bytes (inline or from the environment).
    pub fn secret_bytes(&self) -> Result<Vec<u8>, String> {
        let s = match (&self.secret, &self.secret_env) {
            (Some(s), None) => s.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                format!(
                    "dispatch.routes `{}`: environment variable {var} (secret_env) is not set",
                    self.name
                )
            })?,
            _ => {
                return Err(format!(
                    "dispatch.routes `{}`: give exactly one of secret or secret_env",
                    self.name
                ))
            }
        };
        if s.len() < 16 {
            return Err(format!(
                "dispatch.routes `{}`: the secret must be at least 16 bytes",
                self.name
            ));
        }
        Ok(s.into_bytes())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsConfig {
    /// A command not started within this many seconds is refused by the
    /// drone as expired.
    pub expiry_s: i64,
    /// Launch and investigate commands (planning and upload take longer).
    pub launch_expiry_s: i64,
    /// The Ed25519 private key (PKCS#8 PEM, mode 0600) that signs every
    /// command. Default: `{data_dir}/command-signing-key.pem`, created on
    /// first start; a file named here must exist. Companions trust its
    /// public key (`tiancha command-key public --key FILE`).
    pub signing_key_file: Option<PathBuf>,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self {
            expiry_s: 60,
            launch_expiry_s: 300,
            signing_key_file: None,
        }
    }
}

/// The fleet's vehicle and camera, for mission previews.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MissionsConfig {
    pub vehicle: tiancha_mission_planner::Vehicle,
    pub camera: tiancha_mission_planner::Camera,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Snapshots and clips of alerts that are not evidence of a case are
    /// deleted after this many days (0: keep). Cases and their evidence
    /// are kept.
    pub snapshot_days: u32,
    /// Telemetry history is deleted after this many days (0: keep).
    pub telemetry_days: u32,
    /// How often the purge runs.
    pub purge_interval_s: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            snapshot_days: 30,
            telemetry_days: 7,
            purge_interval_s: 3600,
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("var/ground-station")
}

fn default_instance() -> String {
    "gs-1".into()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            instance: default_instance(),
            http: HttpConfig::default(),
            mqtt: Endpoint::default(),
            broker: BrokerConfig::default(),
            ingest: IngestConfig::default(),
            auth: AuthConfig::default(),
            map: MapConfig::default(),
            cases: CasesConfig::default(),
            dispatch: DispatchConfig::default(),
            commands: CommandsConfig::default(),
            missions: MissionsConfig::default(),
            retention: RetentionConfig::default(),
            store: crate::store::StoreConfig::default(),
            video: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut cfg = Self::parse(&text, path)?;
        cfg.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        // TLS certificates, keys and the broker's password file: read now,
        // so a missing or unparsable file stops start-up with its name.
        let files = |message: String| ConfigError::Invalid {
            path: path.into(),
            message,
        };
        cfg.mqtt.check_files().map_err(files)?;
        cfg.broker.check_files().map_err(files)?;
        Ok(cfg)
    }

    /// Parse and validate; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.into(),
            message: e.to_string(),
        })?;
        cfg.check().map_err(|message| ConfigError::Invalid {
            path: origin.into(),
            message,
        })?;
        Ok(cfg)
    }

    /// Make relative paths relative to `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        self.map.layers.iter_mut().for_each(fix);
        if let Some(g) = &mut self.map.grid {
            fix(g);
        }
        if let Some(m) = self.map.tiles.as_mut().and_then(|t| t.mbtiles.as_mut()) {
            fix(m);
        }
        if let Some(k) = &mut self.commands.signing_key_file {
            fix(k);
        }
        if let Some(t) = &mut self.mqtt.tls {
            t.resolve_paths(base);
        }
        self.broker.resolve_paths(base);
    }

    pub fn check(&self) -> Result<(), String> {
        if self.instance.is_empty()
            || !self
                .instance
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "instance `{}` must be non-empty and use only A-Z a-z 0-9 _ -",
                self.instance
            ));
        }
        self.mqtt.check()?;
        self.ingest.check()?;
        self.video.check()?;
        self.store.check(self.dispatch.request_timeout_ms)?;
        if self.broker.embedded && self.broker.listen.port() != self.mqtt.port {
            return Err(format!(
                "broker.listen port {} differs from mqtt.port {}: ingest would not reach the embedded broker",
                self.broker.listen.port(),
                self.mqtt.port
            ));
        }
        if let Some(u) = &self.http.public_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!(
                    "http.public_url `{u}` must start with http:// or https://"
                ));
            }
        }
        self.broker.check()?;
        if self.broker.embedded && self.broker.auth.is_some() && self.mqtt.username.is_none() {
            let has_cert = self
                .mqtt
                .tls
                .as_ref()
                .is_some_and(|t| t.client_cert_file.is_some());
            if !has_cert {
                return Err("[broker.auth] is on: the ground station must log in too ([mqtt] username and password of a broker.auth.ground_station_users identity, or a client certificate)".into());
            }
        }
        let a = &self.auth;
        if a.session_ttl_min < 1
            || a.login_max_failures < 1
            || a.login_window_s < 1
            || a.login_lockout_s < 0
        {
            return Err(
                "auth: session_ttl_min, login_max_failures and login_window_s must be positive"
                    .into(),
            );
        }
        let m = &self.map;
        if !(-90.0..=90.0).contains(&m.center[0]) || !(-180.0..=180.0).contains(&m.center[1]) {
            return Err("map.center must be [lat, lon] in degrees".into());
        }
        if let Some(t) = &m.tiles {
            match (&t.url, &t.mbtiles) {
                (Some(u), None) => {
                    if !(u.contains("{z}") && u.contains("{x}") && u.contains("{y}")) {
                        return Err(format!("map.tiles.url `{u}` needs {{z}}, {{x}} and {{y}}"));
                    }
                }
                (None, Some(_)) => {}
                _ => return Err("map.tiles: give exactly one of url or mbtiles".into()),
            }
        }
        let c = &self.cases;
        if !(c.merge_radius_m >= 0.0 && c.merge_radius_m <= 100_000.0) {
            return Err("cases.merge_radius_m must be 0..=100000".into());
        }
        if !(c.merge_window_min >= 0.0 && c.merge_window_min <= 7.0 * 24.0 * 60.0) {
            return Err("cases.merge_window_min must be 0..=10080".into());
        }
        for r in &c.priority_rules {
            if r.name.trim().is_empty() {
                return Err("cases.priority_rules: every rule needs a name".into());
            }
            for s in &r.near {
                if s.radius_m.is_nan()
                    || s.radius_m <= 0.0
                    || !(-90.0..=90.0).contains(&s.lat_deg)
                    || !(-180.0..=180.0).contains(&s.lon_deg)
                {
                    return Err(format!(
                        "cases.priority_rules `{}`: near needs a WGS84 point and radius_m > 0",
                        r.name
                    ));
                }
            }
        }
        for r in &c.auto_dispatch {
            if r.categories.is_empty() || !(0.0..=1.0).contains(&r.min_confidence) {
                return Err(
                    "cases.auto_dispatch: each rule needs categories and min_confidence in 0..1"
                        .into(),
                );
            }
        }
        let d = &self.dispatch;
        d.retry.check()?;
        if !(100..=600_000).contains(&d.request_timeout_ms) {
            return Err("dispatch.request_timeout_ms must be 100..=600000".into());
        }
        if !(1_024..=16 * 1024 * 1024).contains(&d.callback_max_bytes) {
            return Err("dispatch.callback_max_bytes must be 1 KiB..=16 MiB".into());
        }
        let mut seen = std::collections::HashSet::new();
        let mut owner: BTreeMap<Category, &str> = BTreeMap::new();
        let mut defaults = 0;
        for r in &d.routes {
            if r.name.is_empty()
                || r.name.len() > 64
                || !r
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(format!(
                    "dispatch.routes: name `{}` must be 1-64 of A-Z a-z 0-9 _ -",
                    r.name
                ));
            }
            if !seen.insert(&r.name) {
                return Err(format!("dispatch.routes: `{}` is named twice", r.name));
            }
            if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
                return Err(format!(
                    "dispatch.routes `{}`: url must start with http:// or https://",
                    r.name
                ));
            }
            if r.secret.is_some() == r.secret_env.is_some() {
                return Err(format!(
                    "dispatch.routes `{}`: give exactly one of secret or secret_env",
                    r.name
                ));
            }
            if let Some(s) = &r.secret {
                if s.len() < 16 {
                    return Err(format!(
                        "dispatch.routes `{}`: the secret must be at least 16 bytes",
                        r.name
                    ));
                }
            }
            for cat in &r.categories {
                if let Some(o) = owner.insert(*cat, &r.name) {
                    return Err(format!(
                        "dispatch.routes: category `{cat}` is routed to both `{o}` and `{}`",
                        r.name
                    ));
                }
            }
            defaults += r.default as usize;
        }
        if defaults > 1 {
            return Err("dispatch.routes: at most one route may be the default".into());
        }
        if self.commands.expiry_s < 5 || self.commands.launch_expiry_s < 5 {
            return Err("commands: expiry_s and launch_expiry_s must be at least 5".into());
        }
        if self.commands.expiry_s > 900 || self.commands.launch_expiry_s > 900 {
            return Err("commands: expiry_s and launch_expiry_s must be at most 900 (companions refuse a longer validity by default: their [commands] max_lifetime_s)".into());
        }
        self.missions
            .vehicle
            .validate()
            .map_err(|e| format!("missions.vehicle: {e}"))?;
        if self.retention.purge_interval_s < 1 {
            return Err("retention.purge_interval_s must be at least 1".into());
        }
        Ok(())
    }

    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("store.db")
    }

    /// The base URL for links to this station, ending in `/`.
    pub fn public_url(&self) -> String {
        let mut u = self
            .http
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}/", self.http.listen));
        if !u.ends_with('/') {
            u.push('/');
        }
        u
    }

    /// The route a category goes to, if any.
    pub fn route_for(&self, category: Category) -> Option<&RouteConfig> {
        let r = &self.dispatch.routes;
        r.iter()
            .find(|r| r.categories.contains(&category))
            .or_else(|| r.iter().find(|r| r.default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_one_line_switches_to_external() {
        let c = Config::parse("", Path::new("gs.toml")).unwrap();
        assert!(c.broker.embedded);
        let c = Config::parse("[broker]\nembedded = false\n", Path::new("gs.toml")).unwrap();
        assert!(!c.broker.embedded);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = Config::parse("[mqtt]\nport = 0\n", Path::new("gs.toml")).unwrap_err();
        assert_eq!(e.to_string(), "config gs.toml: mqtt.port must not be 0");
        let e = Config::parse("bogus = 1\n", Path::new("gs.toml")).unwrap_err();
        assert!(e.to_string().contains("unknown field `bogus`"), "{e}");
        let e =
            Config::parse("[ingest]\nshared_group = \"a/b\"\n", Path::new("gs.toml")).unwrap_err();
        assert!(e.to_string().contains("shared_group"), "{e}");
        let e = Config::parse("[mqtt]\nport = 1884\n", Path::new("gs.toml")).unwrap_err();
        assert!(e.to_string().contains("differs from mqtt.port"), "{e}");
        let e = Config::parse("[commands]\nlaunch_expiry_s = 3600\n", Path::new("gs.toml"))
            .unwrap_err();
        assert!(e.to_string().contains("at most 900"), "{e}");
    }

    #[test]
    fn the_commented_example_is_valid_and_its_key_path_is_resolved() {
        let text = include_str!("../../examples/ground-station/ground-station.toml")
            .replace("# signing_key_file", "signing_key_file")
            .replace(
                "\"/etc/tiancha/command-signing-key.pem\"",
                "\"keys/gs.pem\"",
            );
        let mut c = Config::parse(&text, Path::new("ground-station.toml")).unwrap();
        c.resolve_paths(Path::new("/srv/tiancha"));
        assert_eq!(
            c.commands.signing_key_file.as_deref(),
            Some(Path::new("/srv/tiancha/keys/gs.pem"))
        );
    }

    #[test]
    fn routing_table_is_checked_and_used() {
        let ok = r#"
[[dispatch.routes]]
name = "governance"
url = "http://127.0.0.1:9/cases"
secret = "0123456789abcdef"
categories = ["gathering", "intrusion", "fire"]
[[dispatch.routes]]
name = "hotline"
url = "http://127.0.0.1:9/hotline"
secret = "0123456789abcdef"
default = true
"#;
        let c = Config::parse(ok, Path::new("gs.toml")).unwrap();
        assert_eq!(c.route_for(Category::Fire).unwrap().name, "governance");
        assert_eq!(c.route_for(Category::RoadDamage).unwrap().name, "hotline");
        let twice = ok.replace("default = true", "categories = [\"fire\"]");
        let e = Config::parse(&twice, Path::new("gs.toml")).unwrap_err();
        assert!(e.to_string().contains("`fire` is routed to both"), "{e}");
        let short = ok.replace(
            "secret = \"0123456789abcdef\"\ncategories",
            "secret = \"x\"\ncategories",
        );
        let e = Config::parse(&short, Path::new("gs.toml")).unwrap_err();
        assert!(e.to_string().contains("at least 16 bytes"), "{e}");
        let e = Config::parse(
            "[dispatch.retry]\ninitial_backoff_ms = 0\n",
            Path::new("gs.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("initial_backoff_ms"), "{e}");
        let e = Config::parse(
            "[map.tiles]\nurl = \"http://t/{z}/{x}.png\"\n",
            Path::new("gs.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("{y}"), "{e}");
    }
}
