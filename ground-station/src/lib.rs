//! The ground station: MQTT ingest into a store, the web UI and dispatch of
//! cases into dispute systems.
