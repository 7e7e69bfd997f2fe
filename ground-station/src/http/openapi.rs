//! The OpenAPI 3.1 description of the HTTP API, served at
//! `/api/openapi.json`. [`ENDPOINTS`] is the table it is built from; a
//! test checks that every entry is routed (no documented path 404s or
//! 405s) so the document cannot drift from the router.

use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Map, Value};

/// (method, path, summary, who may call it, request body schema).
pub const ENDPOINTS: &[(&str, &str, &str, &str, Option<&str>)] = &[
    ("get", "/api/health", "Liveness and counts", "anyone", None),
    ("get", "/metrics", "Prometheus metrics", "anyone", None),
    ("get", "/api/openapi.json", "This document", "anyone", None),
    ("post", "/api/login", "Log in; sets the session cookie, returns the CSRF token", "anyone", Some("Login")),
    ("post", "/api/logout", "End the session", "any role", None),
    ("get", "/api/session", "Who is logged in, and the CSRF token", "any role", None),
    ("get", "/api/map", "Map centre, tile source and vector layers (GeoJSON)", "any role", None),
    ("get", "/tiles/{z}/{x}/{y}", "A tile from the configured MBTiles file", "any role", None),
    ("get", "/api/drones", "Drones with their latest status and telemetry", "any role", None),
    ("get", "/api/drones/{id}/track", "A drone's recent track [[t, lat, lon]]", "any role", None),
    ("post", "/api/drones/{id}/commands", "Send a command (launch_patrol, pause, resume, return_to_launch, land, investigate, set_detection_zones)", "operator, admin", Some("CommandKind")),
    ("get", "/api/drones/{id}/commands", "A drone's recent commands with their results", "any role", None),
    ("get", "/api/commands", "Recent commands with results", "any role", None),
    ("post", "/api/missions/preview", "Plan a patrol without flying it: route, sorties, time", "operator, admin", Some("PreviewRequest")),
    ("get", "/api/alerts", "Alerts, newest first, with triage state (?state=new|case|dismissed)", "any role", None),
    ("get", "/api/alerts/{id}", "One alert: rule, tracks, position and ellipse, triage", "any role", None),
    ("get", "/api/alerts/{id}/snapshot.jpg", "The alert's snapshot", "any role", None),
    ("post", "/api/alerts/{id}/confirm", "Confirm: make or join a case (dispatched to its route)", "operator, admin", None),
    ("post", "/api/alerts/{id}/dismiss", "Dismiss with a reason (kept)", "operator, admin", Some("Dismiss")),
    ("post", "/api/alerts/{id}/merge", "Merge into an existing case", "operator, admin", Some("Merge")),
    ("post", "/api/alerts/{id}/investigate", "Ask a drone to investigate the alert's position", "operator, admin", None),
    ("get", "/api/cases", "Cases (?status, priority, category, village)", "any role", None),
    ("get", "/api/cases/{id}", "A case with its alerts, timeline and delivery", "any role", None),
    ("get", "/api/cases/{id}/cap.xml", "The case as CAP 1.2 XML", "any role", None),
    ("post", "/api/cases/{id}/notes", "Add a note and/or move the case along", "any role", Some("Note")),
    ("get", "/api/dispatch/outbox", "Deliveries (?state=pending|delivered|dead): the dead-letter view", "operator, admin", None),
    ("post", "/api/dispatch/outbox/{id}/retry", "Put a dead letter back in the queue", "operator, admin", None),
    ("post", "/api/callbacks/{route}", "Signed status callback from a dispute system (X-Tiancha-Signature)", "the route's dispute system", Some("CaseStatusUpdate")),
    ("get", "/evidence/{case}/{file}", "A case's evidence through a signed link (?exp, sig): {alert}.jpg snapshot or {alert}.mp4 clip", "holders of the link", None),
    ("get", "/api/quarantine", "Payloads that failed validation", "operator, admin", None),
    ("get", "/api/admin/users", "Users", "admin", None),
    ("post", "/api/admin/users", "Create or replace a user", "admin", Some("User")),
    ("post", "/api/admin/users/{name}/disable", "Disable a user (ends their sessions)", "admin", None),
    ("post", "/api/admin/tokens", "Create an API token (shown once)", "admin", Some("Token")),
    ("get", "/api/admin/audit", "The audit log", "admin", None),
    ("get", "/api/live", "WebSocket: live alerts, telemetry, command results, case changes", "any role", None),
    ("get", "/api/video", "Drones with live video and their sources' state", "operator, admin", None),
    ("get", "/api/drones/{id}/video.mjpeg", "Live video as MJPEG (multipart/x-mixed-replace), the fallback", "operator, admin", None),
    ("get", "/api/drones/{id}/video/webrtc", "WebSocket: WebRTC signalling for live H.264 video (station offers, browser answers, ICE trickles)", "operator, admin", None),
    ("get", "/api/alerts/{id}/clip.mp4", "The MP4 clip recorded around the alert (X-Content-SHA256)", "any role", None),
];

fn schemas() -> Value {
    let obj = |props: Value, req: &[&str]| json!({"type": "object", "properties": props, "required": req});
    json!({
        "Login": obj(json!({"name": {"type": "string"}, "password": {"type": "string"}}), &["name", "password"]),
        "Dismiss": obj(json!({"reason": {"type": "string", "maxLength": 500}}), &["reason"]),
        "Merge": obj(json!({"case_id": {"type": "string", "format": "uuid"}}), &["case_id"]),
        "Note": obj(json!({"status": {"$ref": "#/components/schemas/CaseStatus"}, "note": {"type": "string", "maxLength": 10000}}), &[]),
        "User": obj(json!({"name": {"type": "string", "pattern": "^[\\w.-]{1,64}$"}, "role": {"enum": ["operator", "dispute_centre", "admin"]}, "password": {"type": "string", "minLength": 10}}), &["name", "role", "password"]),
        "Token": obj(json!({"user": {"type": "string"}, "label": {"type": "string"}}), &["user", "label"]),
        "CaseStatus": {"enum": ["raised", "confirmed", "dispatched", "received", "mediating", "resolved", "closed", "rejected"]},
        "CommandKind": {"type": "object", "properties": {"command": {"enum": ["launch_patrol", "pause", "resume", "return_to_launch", "land", "investigate", "set_detection_zones"]}}, "required": ["command"], "description": "tiancha_protocol::CommandKind (tagged by `command`)"},
        "PreviewRequest": obj(json!({"patrol": {"type": "object", "description": "tiancha_protocol::PatrolSpec"}, "home": {"type": "object", "properties": {"lat_deg": {"type": "number"}, "lon_deg": {"type": "number"}}}}), &["patrol"]),
        "CaseStatusUpdate": obj(json!({"schema": {"const": 1}, "case_id": {"type": "string", "format": "uuid"}, "status": {"$ref": "#/components/schemas/CaseStatus"}, "t_unix_ms": {"type": "integer"}, "handler": {"type": "string"}, "note": {"type": "string"}}), &["schema", "case_id", "status", "t_unix_ms"]),
    })
}

pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, summary, who, body) in ENDPOINTS {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|n| json!({"name": n, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": summary,
            "description": format!("Who: {who}."),
            "parameters": params,
            "responses": {
                "200": {"description": "OK"},
                "400": {"description": "Bad request: the message says what and where"},
                "401": {"description": "Not logged in / bad signature"},
                "403": {"description": "Role not allowed, CSRF token missing or cross-site"},
                "404": {"description": "Not found"}
            }
        });
        if let Some(b) = body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
        }
        if *who != "anyone" {
            op["security"] = json!([{"session": [], "csrf": []}, {"token": []}]);
        }
        paths
            .entry(path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("object")
            .insert(method.to_string(), op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tiancha ground station",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Live operations picture, case desk and dispute-system dispatch. Cookie sessions need X-CSRF-Token on changes; machine clients use Bearer API tokens."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": super::SESSION_COOKIE},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
                "token": {"type": "http", "scheme": "bearer"}
            }
        }
    })
}

/// The route handler (named for the router).
pub async fn document_get() -> impl IntoResponse {
    Json(document())
}
