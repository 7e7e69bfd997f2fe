//! End-to-end command authentication on the drone: whatever arrives on
//! the commands topic is decoded and checked against the trusted ground
//! station key. Must never panic; a command that verifies must still
//! verify after the JSON round trip (the signature covers the command's
//! meaning, not its formatting), and must have been signed by the trusted
//! key (its key id).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tiancha_protocol::command_auth::{CommandSigner, TrustedKeys};
use tiancha_protocol::{decode, encode, Command};

/// The seed the committed corpus's signed commands were made with.
pub const SEED: [u8; 32] = [7; 32];

fn trusted() -> &'static (TrustedKeys, String) {
    static T: OnceLock<(TrustedKeys, String)> = OnceLock::new();
    T.get_or_init(|| {
        let s = CommandSigner::from_seed(&SEED);
        (
            TrustedKeys::new(vec![s.public_key().clone()]),
            s.key_id().to_string(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = decode::<Command>(data) else {
        return;
    };
    let (keys, id) = trusted();
    if let Ok(k) = keys.verify(&cmd) {
        assert_eq!(k, id.as_str());
        let again: Command = decode(&encode(&cmd).expect("decoded commands encode"))
            .expect("encoded commands decode");
        assert!(
            keys.verify(&again).is_ok(),
            "a verified command no longer verifies after a JSON round trip"
        );
    }
});
