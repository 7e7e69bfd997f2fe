//! Validation with errors that name the field and say why.

use std::fmt::Display;

/// One thing wrong with a message: which field (a dotted path such as
/// `location.lat_deg` or `snapshot.jpeg`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A message (or part of one) that can check itself.
pub trait Validate {
    /// Check this value, naming fields relative to `at` (empty at the root).
    fn validate_at(&self, at: &str) -> Result<(), ValidationError>;

    fn validate(&self) -> Result<(), ValidationError> {
        self.validate_at("")
    }
}

/// `at.name`, or `name` at the root.
pub(crate) fn path(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

pub(crate) fn finite(at: &str, name: &str, v: f64) -> Result<(), ValidationError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(ValidationError::new(
            path(at, name),
            format!("{v} is not a finite number"),
        ))
    }
}

pub(crate) fn in_range(
    at: &str,
    name: &str,
    v: f64,
    lo: f64,
    hi: f64,
) -> Result<(), ValidationError> {
    finite(at, name, v)?;
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(ValidationError::new(
            path(at, name),
            format!("{v} is out of range [{lo}, {hi}]"),
        ))
    }
}

pub(crate) fn opt_in_range(
    at: &str,
    name: &str,
    v: Option<f64>,
    lo: f64,
    hi: f64,
) -> Result<(), ValidationError> {
    v.map_or(Ok(()), |v| in_range(at, name, v, lo, hi))
}

pub(crate) fn non_empty(at: &str, name: &str, s: &str, max: usize) -> Result<(), ValidationError> {
    if s.trim().is_empty() {
        return Err(ValidationError::new(path(at, name), "must not be empty"));
    }
    max_len(at, name, s, max)
}

pub(crate) fn max_len(at: &str, name: &str, s: &str, max: usize) -> Result<(), ValidationError> {
    if s.len() > max {
        return Err(ValidationError::new(
            path(at, name),
            format!("{} bytes is longer than the limit of {max}", s.len()),
        ));
    }
    Ok(())
}

pub(crate) fn timestamp(at: &str, name: &str, t_unix_ms: i64) -> Result<(), ValidationError> {
    // 2000-01-01 .. 2200-01-01: anything else is a clock that was never set
    // or a unit mix-up (seconds vs milliseconds).
    const LO: i64 = 946_684_800_000;
    const HI: i64 = 7_258_118_400_000;
    if (LO..HI).contains(&t_unix_ms) {
        Ok(())
    } else {
        Err(ValidationError::new(
            path(at, name),
            format!("{t_unix_ms} is not a plausible Unix time in milliseconds"),
        ))
    }
}

pub(crate) fn each<T: Validate>(at: &str, name: &str, items: &[T]) -> Result<(), ValidationError> {
    for (i, item) in items.iter().enumerate() {
        item.validate_at(&format!("{}[{i}]", path(at, name)))?;
    }
    Ok(())
}

pub(crate) fn max_items<T>(
    at: &str,
    name: &str,
    items: &[T],
    max: usize,
) -> Result<(), ValidationError> {
    if items.len() > max {
        return Err(ValidationError::new(
            path(at, name),
            format!("{} items is more than the limit of {max}", items.len()),
        ));
    }
    Ok(())
}

pub(crate) fn fail(at: &str, name: &str, reason: impl Display) -> ValidationError {
    ValidationError::new(path(at, name), reason.to_string())
}
