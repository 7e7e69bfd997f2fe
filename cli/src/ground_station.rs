//! `tiancha ground-station`: ingest, store, HTTP API (and, by default, the
//! embedded broker) in one process.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use tiancha_ground_station::Config;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// TOML config file (see ground-station/src/config.rs); defaults apply
    /// without one.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override `data_dir` (where store.db lives).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Override `http.listen`.
    #[arg(long)]
    http: Option<SocketAddr>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(h) = args.http {
        cfg.http.listen = h;
    }
    cfg.check()
        .map_err(|m| anyhow::anyhow!("invalid configuration: {m}"))?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(tiancha_ground_station::run(cfg))?;
    Ok(())
}
