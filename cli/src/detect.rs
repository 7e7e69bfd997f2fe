//! `tiancha detect` (issue 5).

/// Arguments of `tiancha detect`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`tiancha detect` is not built yet (issue 5)")
}
