//! The eye on real pedestrians: Debian opencv-doc's vtest.avi (768×576,
//! 10 fps, 795 frames, an elevated camera over a campus crossing).
//!
//! Ground truth was made by looking: the six pedestrians of frame 300 were
//! boxed by hand; "people who appear" and the gatherings were counted on
//! contact sheets of every 20th frame with track ids drawn (see
//! docs/benchmarks/inference.md, "vtest.avi audit").

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tiancha_inference::alert::{self, Outgoing};
use tiancha_inference::geometry::camera::{
    Attitude, CameraModel, CameraPose, FixedPose, GimbalAngles, GimbalMount, PoseSigma,
};
use tiancha_inference::geometry::LatLonAlt;
use tiancha_inference::geotag::Ground;
use tiancha_inference::pipeline::{EyeOutput, PipelineOptions};
use tiancha_inference::protocol::{DroneId, LocationStatus, Validate, ZoneRule};
use tiancha_inference::source::SourceConfig;
use tiancha_inference::tracker::TrackState;
use tiancha_inference::*;

/// The six pedestrians of frame 300, boxed by hand (x1, y1, x2, y2).
const FRAME_300: [(f32, f32, f32, f32); 6] = [
    (188.0, 160.0, 214.0, 235.0),
    (243.0, 155.0, 264.0, 222.0),
    (296.0, 156.0, 325.0, 228.0),
    (313.0, 214.0, 345.0, 293.0),
    (580.0, 160.0, 609.0, 234.0),
    (618.0, 161.0, 644.0, 233.0),
];

#[test]
fn frame_300_yields_at_least_5_of_its_6_pedestrians() {
    let det = Detector::from_manifest_path(
        common::default_manifest(),
        &DetectorOptions {
            threads: 2,
            low_score_floor: None,
            ..DetectorOptions::default()
        },
    )
    .unwrap();
    let f = common::frames_at(&common::vtest(), &[300]);
    let people: Vec<Detection> = det
        .detect(&f[0])
        .unwrap()
        .into_iter()
        .filter(|d| det.manifest().class_name(d.class_id) == "person")
        .collect();
    let found = FRAME_300
        .iter()
        .filter(|(x1, y1, x2, y2)| {
            let truth = BBox::new(*x1, *y1, *x2, *y2);
            people.iter().any(|d| d.bbox.iou(&truth) >= 0.5)
        })
        .count();
    assert!(found >= 5, "found {found} of 6: {people:?}");
    // And not a spray of extra "people" (stones, posts) around them.
    assert!(
        people.len() <= 7,
        "{} person detections: {people:?}",
        people.len()
    );
}

/// People who appear in the clip, counted on the contact sheets: 30
/// appearances (a person who leaves and comes back counts again); taken
/// as 28 to allow for the two least certain.
const PEOPLE_WHO_APPEAR: usize = 28;

/// The gatherings of at least 3 people within 2.5 m for 3 s, from the
/// contact sheets: (from s, to s) of the clip when the group was together.
const GATHERINGS: [(f64, f64); 6] = [
    (5.0, 19.0),  // a pair and a third walking up to the top right
    (15.0, 21.0), // three people by the sign
    (29.0, 37.0), // four in a row left of the lamp post
    (46.0, 55.0), // three walking together on the right
    (65.0, 77.0), // three in a row by the sign
    (71.0, 79.5), // three on the left, near the end
];

#[test]
fn over_the_clip_tracks_stay_stable_and_each_gathering_fires_once() {
    let det = Arc::new(
        Detector::from_manifest_path(
            common::default_manifest(),
            &DetectorOptions {
                threads: 2,
                ..DetectorOptions::default()
            },
        )
        .unwrap(),
    );
    // The camera, estimated from the people's apparent heights at the top
    // and bottom of the frame: about 9.5 m up, 28° down, 46° wide.
    let t0 = 1_700_000_000_000;
    let pose = CameraPose::new(
        0,
        LatLonAlt::new(28.45, 117.94, 60.0 + 9.5),
        Attitude::new(0.0, 0.0, 0.0),
        GimbalAngles::new(0.0, -28.0, 0.0, GimbalMount::Stabilized),
    )
    .with_sigma(PoseSigma::typical());
    let geo = Geotagger::new(
        CameraModel::ideal(768, 576, 46.0),
        Ground::Flat(60.0),
        Arc::new(FixedPose(pose)),
    );
    let eye = Eye::new(
        det.manifest().clone(),
        EyeConfig {
            engine: EngineConfig {
                rules: vec![RuleConfig {
                    name: "gathering".into(),
                    zone: None,
                    rule: ZoneRule::Gathering {
                        min_people: 3,
                        radius_m: 2.5,
                        min_duration_s: 3.0,
                    },
                }],
                close_after_s: 3.0,
                update_interval_s: 5.0,
                ..EngineConfig::default()
            },
            ..EyeConfig::default()
        },
        Some(geo),
    )
    .unwrap();
    let mut cfg = SourceConfig::new(common::vtest().to_string_lossy());
    cfg.start_unix_ms = Some(t0);
    let src = FrameSource::open(cfg).unwrap();
    let pipeline = Pipeline::start(
        src,
        det.clone(),
        eye,
        PipelineOptions {
            report_frames: true,
        },
    )
    .unwrap();

    let person = det.manifest().class_id("person").unwrap();
    let mut person_tracks = BTreeSet::new();
    let mut incidents = Vec::new();
    let summary = pipeline.run_to_end(|o| match o {
        EyeOutput::Frame(r) => {
            for t in &r.tracks {
                if t.confirmed && t.class_id == person && t.state != TrackState::Tentative {
                    person_tracks.insert(t.id);
                }
            }
        }
        EyeOutput::Incident(i) => incidents.push((**i).clone()),
        EyeOutput::FrameError(e) => panic!("{e}"),
        _ => {}
    });

    // Every frame, nothing dropped (a file is processed frame by frame).
    assert_eq!(summary.frames, 795, "{summary:?}");
    assert_eq!((summary.source.dropped, summary.frame_errors), (0, 0));
    assert!(summary.source_error.is_none(), "{summary:?}");

    // Stable ids: distinct person tracks within 2× the people who appear
    // (and enough of them that people were in fact tracked).
    let n = person_tracks.len();
    eprintln!("{n} person tracks for {PEOPLE_WHO_APPEAR} people who appear");
    assert!(n <= 2 * PEOPLE_WHO_APPEAR, "{n} person tracks");
    assert!(n >= PEOPLE_WHO_APPEAR * 2 / 3, "only {n} person tracks");

    // Each gathering: exactly one incident, opened while it lasted.
    let opened: Vec<_> = incidents
        .iter()
        .filter(|i| i.event.change == IncidentChange::Opened)
        .collect();
    let at = |i: &alert::EyeIncident| (i.event.t_unix_ms - t0) as f64 / 1000.0;
    for o in &opened {
        eprintln!(
            "gathering opened at {:.1} s: {}",
            at(o),
            o.event.incident.detail
        );
    }
    assert_eq!(opened.len(), GATHERINGS.len(), "one incident per gathering");
    for (k, (from, to)) in GATHERINGS.iter().enumerate() {
        let inside: Vec<f64> = opened
            .iter()
            .map(|o| at(o))
            .filter(|t| t >= from && t <= to)
            .collect();
        assert!(
            !inside.is_empty(),
            "gathering {k} ({from}-{to} s) did not fire: {:?}",
            opened.iter().map(|o| at(o)).collect::<Vec<_>>()
        );
    }
    // No incident opened while another one was already open with any of
    // its members: no alert storm from one group.
    let mut open: BTreeMap<uuid::Uuid, BTreeSet<u64>> = BTreeMap::new();
    for i in &incidents {
        let members: BTreeSet<u64> = i.event.incident.track_ids.iter().copied().collect();
        match i.event.change {
            IncidentChange::Opened => {
                for (id, m) in &open {
                    assert!(
                        m.is_disjoint(&members),
                        "{} duplicates open incident {id}",
                        i.event.incident.id
                    );
                }
                open.insert(i.event.incident.id, members);
            }
            IncidentChange::Updated => {
                open.insert(i.event.incident.id, members);
            }
            IncidentChange::Closed => {
                assert!(
                    open.remove(&i.event.incident.id).is_some(),
                    "closed an incident that was not open"
                );
            }
        }
    }
    assert!(open.is_empty(), "incidents left open at the end: {open:?}");

    // What the companion would publish: valid, geotagged alerts with a
    // snapshot that fits, and valid updates referring to them.
    let drone = DroneId::new("vtest").unwrap();
    for i in &incidents {
        match alert::outgoing(i, &drone, None) {
            Outgoing::Alert(a) => {
                a.validate().unwrap();
                assert_eq!(a.location_status, LocationStatus::Geotagged);
                assert!(a.person_count.unwrap() >= 3);
                let s = a.snapshot.as_ref().expect("an alert carries its snapshot");
                assert!(s.jpeg.len() <= tiancha_inference::protocol::MAX_SNAPSHOT_BYTES);
                assert!(a.tracks.len() >= 3 && a.tracks.iter().all(|t| t.class == "person"));
                assert!(a.rule.detail.contains("people within"), "{}", a.rule.detail);
            }
            Outgoing::Update(u) => u.validate().unwrap(),
        }
    }
}
