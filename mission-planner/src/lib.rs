//! Patrol planning as pure functions over plain data: no I/O, no clock.
//!
//! Will own (issue 4): area/no-fly-zone/point-of-interest/camera/vehicle
//! inputs; coverage of non-convex areas with holes (boustrophedon
//! decomposition, sweep-angle choice), shortest paths around buffered no-fly
//! zones, tour ordering (2-opt / Or-opt), battery-aware sorties, the
//! "investigate this point" re-plan, and MAVLink mission items, fences and
//! rally points as output; readers/writers for GeoJSON, KML and
//! QGroundControl `.plan` files live here too (as pure text ↔ data
//! functions).
