//! `tiancha sim` (issue 3).

/// Arguments of `tiancha sim`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`tiancha sim` is not built yet (issue 3)")
}
