//! `tiancha ground-station`: ingest, store, web UI, dispatch, HTTP API
//! (and, by default, the embedded broker) in one process; with a
//! subcommand, manage users and API tokens in its store (works while the
//! station runs: SQLite WAL).
//!
//! First run, scripted:
//!
//! ```text
//! export TIANCHA_PW_ADMIN=... TIANCHA_PW_OP=... TIANCHA_PW_DC=...
//! tiancha ground-station --config gs.toml user add admin --role admin --password-env TIANCHA_PW_ADMIN
//! tiancha ground-station --config gs.toml user add op1 --role operator --password-env TIANCHA_PW_OP
//! tiancha ground-station --config gs.toml user add centre1 --role dispute-centre --password-env TIANCHA_PW_DC
//! tiancha ground-station --config gs.toml token create --user op1 --label wall-display   # prints the token once
//! tiancha ground-station --config gs.toml
//! ```

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use tiancha_ground_station::auth::{hash_password, new_token, token_hash, Role};
use tiancha_ground_station::Config;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// TOML config file (see examples/ground-station/ground-station.toml);
    /// defaults apply without one.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override `data_dir` (where store.db lives).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Override `http.listen`.
    #[arg(long)]
    http: Option<SocketAddr>,
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Manage users.
    #[command(subcommand)]
    User(UserAction),
    /// Manage API tokens for machine clients.
    #[command(subcommand)]
    Token(TokenAction),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum RoleArg {
    Operator,
    DisputeCentre,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Operator => Role::Operator,
            RoleArg::DisputeCentre => Role::DisputeCentre,
            RoleArg::Admin => Role::Admin,
        }
    }
}

#[derive(clap::Subcommand, Debug)]
enum UserAction {
    /// Create a user, or replace its role and password (ends its sessions).
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Read the password from this environment variable ...
        #[arg(long, conflicts_with = "password_stdin")]
        password_env: Option<String>,
        /// ... or from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Disable a user (ends its sessions).
    Disable { name: String },
}

#[derive(clap::Subcommand, Debug)]
enum TokenAction {
    /// Create an API token for a user; printed once, stored only as a hash.
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        label: String,
    },
}

fn now_ms() -> i64 {
    tiancha_protocol::unix_ms(std::time::SystemTime::now())
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
    match args.action {
        None => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(tiancha_ground_station::run(cfg))?;
        }
        Some(Action::User(a)) => {
            let mut store = tiancha_ground_station::open_store(&cfg)?;
            match a {
                UserAction::Add {
                    name,
                    role,
                    password_env,
                    password_stdin,
                } => {
                    tiancha_ground_station::http::api::check_user_name(&name)
                        .map_err(|e| anyhow::anyhow!(e))?;
                    let pw = match (password_env, password_stdin) {
                        (Some(var), false) => std::env::var(&var)
                            .with_context(|| format!("environment variable {var} is not set"))?,
                        (None, true) => {
                            let mut s = String::new();
                            std::io::stdin().read_to_string(&mut s)?;
                            s.lines().next().unwrap_or("").to_string()
                        }
                        _ => bail!("give --password-env VAR or --password-stdin"),
                    };
                    let hash = hash_password(&pw)?;
                    let role = Role::from(role);
                    store.put_user(&name, role, &hash, now_ms())?;
                    store.audit(
                        now_ms(),
                        "cli",
                        "put_user",
                        &format!("user:{name}"),
                        role.as_str(),
                        "",
                    )?;
                    println!("user {name} ({}) saved", role.as_str());
                }
                UserAction::List => {
                    for u in store.users()? {
                        println!(
                            "{}\t{}{}",
                            u.name,
                            u.role.as_str(),
                            if u.disabled { "\tdisabled" } else { "" }
                        );
                    }
                }
                UserAction::Disable { name } => {
                    store.set_user_disabled(&name, true)?;
                    store.audit(
                        now_ms(),
                        "cli",
                        "disable_user",
                        &format!("user:{name}"),
                        "",
                        "",
                    )?;
                    println!("user {name} disabled");
                }
            }
        }
        Some(Action::Token(TokenAction::Create { user, label })) => {
            let mut store = tiancha_ground_station::open_store(&cfg)?;
            let token = new_token();
            store.create_api_token(&token_hash(&token), &label, &user, now_ms())?;
            store.audit(
                now_ms(),
                "cli",
                "create_token",
                &format!("user:{user}"),
                &label,
                "",
            )?;
            println!("{token}");
        }
    }
    Ok(())
}
