//! `tiancha command-key`: the ground station's command-signing key pair
//! (Ed25519; see docs/security.md).
//!
//! ```text
//! tiancha command-key generate --out /etc/tiancha/command-signing-key.pem
//! ed25519:...                    # the public key, for each companion's
//!                                # [commands] ground_station_public_keys
//! tiancha command-key public --key /etc/tiancha/command-signing-key.pem
//! ```
//!
//! The private key file is written with mode 0600 and never overwritten;
//! only the public key is printed.

use std::path::PathBuf;

use anyhow::Context;
use tiancha_ground_station::command_key;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Create a new key pair: the private key into --out (mode 0600, never
    /// overwritten), the public key on standard output.
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of a private key file.
    Public {
        #[arg(long)]
        key: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Generate { out } => {
            let s = command_key::generate(&out).context("generating the command signing key")?;
            tracing::info!(path = %out.display(), key_id = s.key_id(), "private key written (mode 0600); the public key follows on stdout");
            println!("{}", s.public_key());
        }
        Action::Public { key } => {
            let s = command_key::load(&key)?;
            println!("{}", s.public_key());
        }
    }
    Ok(())
}
