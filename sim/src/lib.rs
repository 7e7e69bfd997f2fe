//! A simulated ArduPilot-like multicopter and camera, for tests and the demo.
//!
//! Will own (issue 3, camera in issue 6): a MAVLink 2 autopilot emulator
//! (heartbeat, ArduPilot mode numbers, arming checks, takeoff, mission
//! execution, mission/fence/rally transfer sending MISSION_REQUEST as
//! ArduPilot does, geofence breach → RTL, battery drain and failsafe,
//! telemetry streams, gimbal, signing), point-mass kinematics, a time-scale
//! option, a link-impairment layer (loss, duplication, reordering, delay),
//! and a camera that renders the ground scene from the true pose.
//!
//! It is a test double; independent MAVLink peers (pymavlink, MAVProxy) are
//! the referees that keep it honest.
