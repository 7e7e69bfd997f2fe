//! The companion computer's MAVLink 2 link to the autopilot (ArduPilot or PX4).
//!
//! Will own (issue 3): connections (`serial:`, `udpin:`, `udpout:`, `tcp:`),
//! identity and liveness (1 Hz heartbeat as MAV_TYPE_ONBOARD_CONTROLLER,
//! component 191; autopilot discovery; link lost/regained), telemetry streams
//! and the typed vehicle state with a pose history that answers "where was
//! the camera at time t", commands with retries and typed results, the
//! mission/fence/rally microservice as a sans-IO state machine, and MAVLink 2
//! signing. One module per microservice, the same shape each time (MAVSDK).
//!
//! It does not plan missions (`mission-planner`) or look at video
//! (`inference`).
