//! Errors of the eye. Each variant names the thing that is wrong (a file,
//! a manifest field, a stream URI) and why.

use std::path::PathBuf;

/// Everything that can go wrong in the eye.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The manifest file could not be read or parsed.
    #[error("model manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },

    /// A manifest field is invalid (`field` is a dotted path such as
    /// `input.shape`).
    #[error("model manifest {path}: field `{field}`: {reason}")]
    ManifestField {
        path: PathBuf,
        field: String,
        reason: String,
    },

    /// The manifest and the model disagree (names, shapes, class count).
    #[error("model {model} does not match its manifest {manifest}: {reason}")]
    ModelMismatch {
        model: PathBuf,
        manifest: PathBuf,
        reason: String,
    },

    /// The model file could not be read, parsed or optimised.
    #[error("model {path} could not be loaded: {reason}")]
    ModelLoad { path: PathBuf, reason: String },

    /// The model's sha256 is not the one the manifest promises.
    #[error("model {path} has sha256 {actual}, but its manifest expects {expected}")]
    ModelChecksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    /// The inference backend cannot be had (not in this build, not
    /// configured).
    #[error("inference backend: {0}")]
    Backend(String),

    /// The onnxruntime library is missing or cannot be loaded.
    #[error("onnxruntime library {path}: {reason}")]
    OrtLibrary { path: PathBuf, reason: String },

    /// An onnxruntime execution provider could not be registered or could
    /// not run the model (never a silent CPU fallback).
    #[error("execution provider `{provider}` (onnxruntime {library}): {reason}")]
    Provider {
        provider: String,
        library: PathBuf,
        reason: String,
    },

    /// Running the model failed.
    #[error("inference failed: {0}")]
    Run(String),

    /// The model produced outputs the decoder cannot read.
    #[error("decoding output `{output}`: {reason}")]
    Decode { output: String, reason: String },

    /// OpenCV failed (pre-processing, drawing, JPEG).
    #[error("image processing ({what}): {reason}")]
    Image { what: &'static str, reason: String },

    /// The video source failed for good (after any reconnects).
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),

    /// Configuration (rules, camera, pipeline) is invalid.
    #[error("configuration: {0}")]
    Config(String),

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl InferenceError {
    pub(crate) fn image(what: &'static str, e: impl std::fmt::Display) -> Self {
        InferenceError::Image {
            what,
            reason: e.to_string(),
        }
    }
}

pub type Result<T, E = InferenceError> = std::result::Result<T, E>;
