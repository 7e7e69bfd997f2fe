//! Several models on one camera, each within its own frame-rate budget.
//!
//! A patrol drone's eye runs its people detector as fast as it can and a
//! hazard model (fire, smoke) beside it, on the same frames, but only as
//! often as the hazard model's budget allows: fire does not move at
//! walking pace, and every run of it costs the people detector frames.
//!
//! - [`merge_manifests`]: the class table the eye sees is the primary
//!   model's classes followed by each extra model's, ids offset; people,
//!   intruders, hazards and thresholds come with their classes (an extra
//!   model's people count as people too: give extras hazard-only
//!   manifests, or `people = []`, so that no one is counted twice).
//! - [`ModelSchedule`]: the extra models, each with its fps budget. On a
//!   frame the primary detector has just run on, [`ModelSchedule::run_due`]
//!   runs the extras whose time has come on the same frame and returns
//!   their detections in the merged class space, and whether any model
//!   that looked at this frame looks for hazards (the hazard rule counts
//!   a miss only on frames that were looked at for hazards).
//!
//! The pipeline's inference thread calls it after the primary detector
//! ([`crate::pipeline::Pipeline::start_with`]); with no extras nothing
//! changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::decode::Detection;
use crate::detector::Detector;
use crate::error::{InferenceError, Result};
use crate::frame::Frame;
use crate::manifest::Manifest;
use crate::preprocess::Preprocessor;

/// An extra model and its budget.
#[derive(Clone)]
pub struct ExtraModel {
    pub detector: Arc<Detector>,
    /// At most this many frames a second (> 0).
    pub fps: f64,
}

/// The class table of `primary` followed by each of `extras`' (their
/// class ids offset by the classes before them). Returns the merged
/// manifest (the primary's file, model and input; only the class table
/// and the event classes change) and each extra's offset.
pub fn merge_manifests(primary: &Manifest, extras: &[&Manifest]) -> (Manifest, Vec<usize>) {
    let mut m = primary.clone();
    let mut offsets = Vec::with_capacity(extras.len());
    for e in extras {
        let off = m.class_names.len();
        offsets.push(off);
        m.class_names.extend(e.class_names.iter().cloned());
        m.thresholds.extend(e.thresholds.iter().copied());
        m.people.extend(e.people.iter().map(|c| c + off));
        m.intruders.extend(e.intruders.iter().map(|c| c + off));
        m.hazards
            .extend(e.hazards.iter().map(|(c, cat)| (c + off, *cat)));
    }
    (m, offsets)
}

struct Scheduled {
    detector: Arc<Detector>,
    every: Duration,
    next_due: Option<Instant>,
    offset: usize,
    pre: Preprocessor,
    runs: u64,
}

/// The extra models of a camera and when each may run next.
pub struct ModelSchedule {
    extras: Vec<Scheduled>,
    merged: Arc<Manifest>,
    primary_hazards: bool,
}

impl ModelSchedule {
    /// No extras: the primary model alone.
    pub fn none(primary: &Arc<Manifest>) -> Self {
        Self {
            extras: Vec::new(),
            merged: primary.clone(),
            primary_hazards: !primary.hazards.is_empty(),
        }
    }

    /// `extras` beside the `primary` model. A budget that is not a
    /// positive number of frames a second is an error naming the model.
    pub fn new(primary: &Arc<Manifest>, extras: Vec<ExtraModel>) -> Result<Self> {
        for e in &extras {
            if !(e.fps.is_finite() && e.fps > 0.0) {
                return Err(InferenceError::Config(format!(
                    "model {}: fps budget {} must be a positive number",
                    e.detector.manifest().path.display(),
                    e.fps
                )));
            }
        }
        let manifests: Vec<&Manifest> = extras.iter().map(|e| &**e.detector.manifest()).collect();
        let (merged, offsets) = merge_manifests(primary, &manifests);
        Ok(Self {
            extras: extras
                .into_iter()
                .zip(offsets)
                .map(|(e, offset)| Scheduled {
                    pre: e.detector.preprocessor(),
                    every: Duration::from_secs_f64(1.0 / e.fps),
                    detector: e.detector,
                    next_due: None,
                    offset,
                    runs: 0,
                })
                .collect(),
            merged: Arc::new(merged),
            primary_hazards: !primary.hazards.is_empty(),
        })
    }

    /// The class table the eye sees (the primary's when there are no
    /// extras).
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.merged
    }

    pub fn is_empty(&self) -> bool {
        self.extras.is_empty()
    }

    /// Runs of each extra model so far.
    pub fn runs(&self) -> Vec<(String, u64)> {
        self.extras
            .iter()
            .map(|e| (e.detector.manifest().file.name.clone(), e.runs))
            .collect()
    }

    /// Run the extra models that are due at `now` on `frame`: their
    /// detections (merged class ids), and whether this frame was looked
    /// at for hazards (by the primary model or an extra that ran). An
    /// extra that fails is logged with its name and counts as not run;
    /// its next run waits for its budget as after a success.
    pub fn run_due(&mut self, frame: &Frame, now: Instant) -> (Vec<Detection>, bool) {
        let mut out = Vec::new();
        let mut hazards = self.primary_hazards;
        for e in &mut self.extras {
            if e.next_due.is_some_and(|d| now < d) {
                continue;
            }
            e.next_due = Some(now + e.every);
            let dets = match e
                .detector
                .prepare(&mut e.pre, frame)
                .and_then(|p| e.detector.infer(p))
            {
                Ok(d) => d,
                Err(err) => {
                    tracing::warn!(
                        "model {} on frame {}: {err}",
                        e.detector.manifest().file.name,
                        frame.seq
                    );
                    continue;
                }
            };
            e.runs += 1;
            hazards |= !e.detector.manifest().hazards.is_empty();
            out.extend(dets.into_iter().map(|mut d| {
                d.class_id += e.offset;
                d
            }));
        }
        (out, hazards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use tiancha_protocol::Category;

    fn manifest(names: &str, extra: &str) -> Manifest {
        let text = format!(
            "name = \"m\"\nmodel = \"m.onnx\"\n[input]\nname = \"i\"\nshape = [1, 3, 64, 64]\n\
             layout = \"nchw\"\ncolor = \"rgb\"\nresize = \"letterbox\"\nscale = 1.0\n\
             [output]\ndecoder = \"yolov8\"\nname = \"o\"\n[classes]\nnames = {names}\n\
             threshold = 0.4\n{extra}\n"
        );
        Manifest::parse(&text, Path::new("m.toml"), |_| Err("none".into())).unwrap()
    }

    #[test]
    fn the_merged_class_table_offsets_the_extra_models_classes() {
        let people = manifest(
            "[\"person\", \"car\"]",
            "[events]\nintruders = [\"person\", \"car\"]",
        );
        let hazards = manifest(
            "[\"smoke\", \"fire\"]",
            "thresholds = { fire = 0.3 }\n[events]\nhazards = [\"smoke\", \"fire\"]",
        );
        let (m, off) = merge_manifests(&people, &[&hazards]);
        assert_eq!(off, vec![2]);
        assert_eq!(m.class_names, ["person", "car", "smoke", "fire"]);
        assert_eq!(m.thresholds, [0.4, 0.4, 0.4, 0.3]);
        assert_eq!(m.people, [0]);
        assert_eq!(m.intruders, [0, 1]);
        assert_eq!(m.hazards, [(2, Category::Smoke), (3, Category::Fire)]);
        assert_eq!(m.hazard_category(3), Some(Category::Fire));
    }
}
