//! `tiancha`: one command for every part of the system. Each subcommand
//! lives in its own module with a clap `Args` struct and a `run` function;
//! this file only wires them.

use clap::{Parser, Subcommand};

mod broker;
mod chaos;
mod command_key;
mod companion;
mod demo;
mod detect;
mod dispute_receiver;
mod ground_station;
mod link_cut;
mod loadgen;
mod plan;
mod sim;

#[derive(Parser)]
#[command(
    name = "tiancha",
    version,
    about = "天查 tiancha — police patrol drones that find hazards and gatherings early and hand them to the people who resolve them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole mission on one machine: ground station, dispute receiver, sim with camera, companion; flies the Shangrao patrol and prints a summary.
    Demo(demo::Args),
    /// Plan a patrol: area + no-fly zones + points of interest → mission, fences, picture.
    Plan(plan::Args),
    /// Run the detector on a video, stream or images and write events.
    Detect(detect::Args),
    /// Run the simulated autopilot (and camera) on an address.
    Sim(sim::Args),
    /// Run the companion daemon on the drone.
    Companion(companion::Args),
    /// Run the ground station: ingest, store, HTTP API, embedded broker.
    GroundStation(ground_station::Args),
    /// A local dispute-system endpoint (signatures, idempotency, status callbacks) for the demo and tests.
    DisputeReceiver(dispute_receiver::Args),
    /// Run the MQTT broker (rumqttd) on its own.
    Broker(broker::Args),
    /// Publish synthetic alerts through a real spool and MQTT channel (tests, benchmarks).
    Loadgen(loadgen::Args),
    /// The whole system as processes under faults (kills, link cut, full disk); counts every alert by id.
    Chaos(chaos::Args),
    /// The ground station's command-signing key pair (generate, print the public key).
    #[command(name = "command-key")]
    SigningKey(command_key::Args),
}

fn main() -> anyhow::Result<()> {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Detect(a) => detect::run(a),
        Command::Sim(a) => sim::run(a),
        Command::Companion(a) => companion::run(a),
        Command::GroundStation(a) => ground_station::run(a),
        Command::DisputeReceiver(a) => dispute_receiver::run(a),
        Command::Broker(a) => broker::run(a),
        Command::Loadgen(a) => loadgen::run(a),
        Command::Chaos(a) => chaos::run(a),
        Command::SigningKey(a) => command_key::run(a),
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`).
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
