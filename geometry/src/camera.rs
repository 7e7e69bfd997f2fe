//! Camera model: filled in by the inference work (issue 5).
