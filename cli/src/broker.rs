//! `tiancha broker`: the embedded MQTT broker (rumqttd) on its own, for
//! set-ups where the broker runs apart from the ground station (and for the
//! tests that restart it).

use std::net::SocketAddr;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (MQTT 3.1.1).
    #[arg(long, default_value = "127.0.0.1:1883")]
    listen: SocketAddr,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    tiancha_ground_station::broker::start_embedded(args.listen)?;
    loop {
        std::thread::park();
    }
}
