//! `tiancha companion`: the daemon on the drone.

use std::path::PathBuf;

use anyhow::Context;
use tiancha_companion::config::CompanionConfig;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The companion's TOML config (see examples/companion.toml).
    #[arg(long)]
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = CompanionConfig::load(&args.config)?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(tiancha_companion::daemon::run(cfg))?;
    Ok(())
}
