//! `tiancha broker`: the embedded MQTT broker (rumqttd) on its own, for
//! set-ups where the broker runs apart from the ground station (and for the
//! tests that restart it); `tiancha broker pki`: a CA and certificates for
//! the broker's TLS listener and its clients.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tiancha_ground_station::broker::{pki, BrokerConfig};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Address of the plain listener (MQTT 3.1.1; loopback only). Overrides
    /// `listen` in --config.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// TOML file with the keys of the ground station's `[broker]` section:
    /// `listen`, `[tls]` (listen, cert_file, key_file, client_ca_file) and
    /// `[auth]` (password_file, ground_station_users). Relative paths are
    /// relative to this file. See docs/security.md.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Sub>,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Make a CA, the broker's certificate and client certificates (CN =
    /// drone id or ground-station user) as PEM files in --out. With
    /// --ca-key, issue more client certificates from an existing CA.
    Pki(PkiArgs),
}

#[derive(clap::Args, Debug)]
struct PkiArgs {
    /// Directory for the files (created; keys are written mode 0600).
    #[arg(long)]
    out: PathBuf,
    /// Names clients use to reach the broker (DNS names or IP addresses);
    /// the first is the certificate's CN. Repeatable.
    #[arg(long = "server-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    server_names: Vec<String>,
    /// A client certificate for this identity (repeatable), e.g.
    /// `--client ground-station --client sr-01`.
    #[arg(long = "client")]
    clients: Vec<String>,
    /// Validity of every certificate made, in days.
    #[arg(long, default_value_t = 825)]
    days: u32,
    /// Use this existing CA key (made by an earlier run) instead of making
    /// a new CA; no server certificate is made.
    #[arg(long)]
    ca_key: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Sub::Pki(p)) = args.cmd {
        return run_pki(p);
    }
    let mut cfg = match &args.config {
        Some(path) => load_config(path)?,
        None => BrokerConfig::default(),
    };
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    cfg.embedded = true;
    tiancha_ground_station::broker::start(&cfg)?;
    loop {
        std::thread::park();
    }
}

fn load_config(path: &Path) -> anyhow::Result<BrokerConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut cfg: BrokerConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    cfg.resolve_paths(path.parent().unwrap_or(Path::new(".")));
    cfg.check()
        .and_then(|()| cfg.check_files())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(cfg)
}

fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    println!("{}", path.display());
    Ok(())
}

fn run_pki(p: PkiArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&p.out).with_context(|| format!("creating {}", p.out.display()))?;
    let ca = match &p.ca_key {
        Some(k) => pki::Ca::load(
            &std::fs::read_to_string(k).with_context(|| format!("reading {}", k.display()))?,
        )?,
        None => {
            let ca = pki::Ca::generate(p.days)?;
            write(&p.out.join("ca.pem"), &ca.cert_pem(), false)?;
            write(&p.out.join("ca.key"), &ca.key_pem(), true)?;
            let s = ca.issue_server(&p.server_names, p.days)?;
            write(&p.out.join("server.pem"), &s.cert_pem, false)?;
            write(&p.out.join("server.key"), &s.key_pem, true)?;
            ca
        }
    };
    for c in &p.clients {
        let i = ca.issue_client(c, p.days)?;
        write(&p.out.join(format!("{c}.pem")), &i.cert_pem, false)?;
        write(&p.out.join(format!("{c}.key")), &i.key_pem, true)?;
    }
    Ok(())
}
