//! The eye: camera stream → detections → tracks → events → geotagged alerts.
//!
//! Will own (issue 5): GStreamer sources with a newest-frame appsink and
//! reconnects, model manifests (`models/`), the tract-onnx detector with
//! CenterNet and YOLO-style decoders, OpenCV pre-processing, NMS and tiling,
//! a ByteTrack-style tracker, event rules (gathering, intrusion, hazard), and
//! geotagging with uncertainty via `tiancha_geometry::camera`.
//!
//! It does not talk MQTT or MAVLink: it consumes frames and poses and
//! produces events.
