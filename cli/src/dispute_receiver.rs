//! `tiancha dispute-receiver`: a local dispute-system endpoint for the
//! demo and tests. Verifies HMAC signatures, honours `Idempotency-Key`,
//! records cases in `<data-dir>/receiver.db`, and sends signed status
//! callbacks back (automatically, or via `POST /admin/callback`).
//!
//! ```text
//! tiancha dispute-receiver --listen 127.0.0.1:9100 --data-dir var/receiver \
//!     --route governance=env:TIANCHA_GOV_SECRET --route hotline=env:TIANCHA_HOTLINE_SECRET \
//!     --callback-url http://127.0.0.1:8080/api/callbacks/ \
//!     --auto-callback received --auto-callback mediating
//! ```
//! The ground station's route URLs are then `http://127.0.0.1:9100/<route>/cases`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use tiancha_ground_station::receiver::{self, Fault, ReceiverConfig};
use tiancha_protocol::CaseStatus;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    #[arg(long, default_value = "var/dispute-receiver")]
    data_dir: PathBuf,
    /// `NAME=SECRET` or `NAME=env:VAR`; repeat per route.
    #[arg(long = "route", required = true)]
    routes: Vec<String>,
    /// The ground station's callback base, e.g. http://127.0.0.1:8080/api/callbacks/
    #[arg(long)]
    callback_url: Option<String>,
    /// Statuses to send back after each new case, in order (received, mediating, resolved, closed, rejected).
    #[arg(long = "auto-callback")]
    auto_callbacks: Vec<String>,
    #[arg(long, default_value_t = 1000)]
    auto_callback_delay_ms: u64,
    /// Scripted faults from the first request on, in order: `500:30s`, `hang:10s`.
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// Accept signatures up to this many seconds from our clock.
    #[arg(long, default_value_t = 300)]
    tolerance_s: i64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut secrets = HashMap::new();
    for r in &args.routes {
        let (name, secret) = r
            .split_once('=')
            .with_context(|| format!("--route `{r}`: expected NAME=SECRET or NAME=env:VAR"))?;
        let secret = match secret.strip_prefix("env:") {
            Some(var) => {
                std::env::var(var).with_context(|| format!("--route {name}: {var} is not set"))?
            }
            None => secret.to_string(),
        };
        if secret.len() < 16 {
            bail!("--route {name}: the secret must be at least 16 bytes");
        }
        secrets.insert(name.to_string(), secret.into_bytes());
    }
    let mut auto = vec![];
    for s in &args.auto_callbacks {
        let st: CaseStatus = serde_json::from_value(serde_json::Value::String(s.clone()))
            .with_context(|| format!("--auto-callback `{s}` is not a case status"))?;
        auto.push(st);
    }
    let faults = args
        .faults
        .iter()
        .map(|f| f.parse::<Fault>().map_err(|e| anyhow::anyhow!(e)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cfg = ReceiverConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        secrets,
        callback_base: args
            .callback_url
            .map(|u| if u.ends_with('/') { u } else { u + "/" }),
        faults,
        auto_callbacks: auto,
        auto_callback_delay: Duration::from_millis(args.auto_callback_delay_ms),
        tolerance_s: args.tolerance_s,
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(receiver::run(cfg))?;
    Ok(())
}
