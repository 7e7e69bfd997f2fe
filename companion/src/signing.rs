//! MAVLink signing on the companion ↔ autopilot link, from the config.
//! Provisioning the key to the autopilot is documented in
//! `docs/security.md` ("MAVLink", "Key provisioning").

use tiancha_firmware_bridge::signing::SigningKey;
use tiancha_firmware_bridge::SigningConfig;

use crate::config::AutopilotSection;

/// The bridge's signing settings, or `None` when no key is configured.
pub fn signing_config(a: &AutopilotSection) -> Result<Option<SigningConfig>, String> {
    let text = match (&a.signing_key, &a.signing_key_file) {
        (Some(k), _) => k.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => return Ok(None),
    };
    let key = SigningKey::parse(&text).map_err(|e| e.to_string())?;
    Ok(Some(SigningConfig {
        key,
        link_id: 1,
        require: a.require_signing,
    }))
}
