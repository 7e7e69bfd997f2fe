//! Small text helpers shared by the CLI and the daemon: JSON-lines records
//! and config parsing with errors that say where.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{InferenceError, Result};

/// One JSON-lines record: `{"type": kind, "data": value}`.
pub fn jsonl<T: Serialize + ?Sized>(kind: &str, value: &T) -> String {
    serde_json::json!({ "type": kind, "data": value }).to_string()
}

/// Parse JSON, naming the line and column of an error.
pub fn parse_json<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| InferenceError::Config(format!("JSON: {e}")))
}

/// Parse TOML, naming the key and position of an error.
pub fn parse_toml<T: DeserializeOwned>(text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| InferenceError::Config(format!("TOML: {e}")))
}
