//! `tiancha plan` (issue 4).

/// Arguments of `tiancha plan`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`tiancha plan` is not built yet (issue 4)")
}
