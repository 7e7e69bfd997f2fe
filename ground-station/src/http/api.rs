//! The JSON API handlers.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rumqttc::QoS;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use tiancha_protocol::{
    self as proto, CaseStatus, CaseStatusUpdate, Category, Channel, Command, CommandKind, DroneId,
    GeoPoint, PatrolSpec, Topic, Validate,
};
use uuid::Uuid;

use super::{audit, blocking, cookie, ApiError, AppState, User, SESSION_COOKIE};
use crate::auth::{self, Role};
use crate::dispatch::sign;
use crate::store::cases::CaseFilter;

type ApiResult<T> = Result<T, ApiError>;

fn now_ms() -> i64 {
    proto::unix_ms(std::time::SystemTime::now())
}

fn parse_id(id: &str) -> ApiResult<Uuid> {
    id.parse()
        .map_err(|_| ApiError::bad(format!("`{}` is not a UUID", truncate(id, 80))))
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Parse a JSON body with an error that says what and where.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("request body: {e}"),
        )
    })
}

// ------------------------------------------------------------ public

pub async fn health(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    let alerts = blocking(&s, |st| st.alert_count()).await?;
    Ok(Json(json!({
        "status": "ok",
        "alerts": alerts,
        "mqtt_connects": s.stats.connects.load(Ordering::Relaxed),
        "instance": s.cfg.instance,
    })))
}

#[derive(Deserialize)]
pub struct LoginReq {
    name: String,
    password: String,
}

pub async fn login(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    if !super::same_origin(&headers) {
        return Err(ApiError::forbidden("cross-site login refused"));
    }
    let req: LoginReq = parse(&body)?;
    let now = now_ms();
    let ip = addr.ip().to_string();
    let keys = [
        format!("user:{}", truncate(&req.name, 64)),
        format!("ip:{ip}"),
    ];
    let kr: Vec<&str> = keys.iter().map(String::as_str).collect();
    if let Some(wait) = s.limiter.lock().unwrap().check(&kr, now) {
        return Ok((
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, wait.to_string())],
            Json(json!({"error": format!("too many failed logins; try again in {wait} s")})),
        )
            .into_response());
    }
    let name = req.name.clone();
    let creds = blocking(&s, move |st| st.user_credentials(&name)).await?;
    let pw = req.password.clone();
    let ok = tokio::task::spawn_blocking(move || match &creds {
        Some((role, hash)) => auth::verify_password(&pw, hash).then_some(*role),
        None => {
            auth::dummy_verify(&pw);
            None
        }
    })
    .await
    .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "worker failed".into()))?;
    let Some(role) = ok else {
        s.limiter.lock().unwrap().failure(&kr, now);
        let (n, i) = (truncate(&req.name, 64), ip.clone());
        let _ = blocking(&s, move |st| {
            st.audit(now, &n, "login_failed", "session", "", &i)
        })
        .await;
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password".into(),
        ));
    };
    s.limiter.lock().unwrap().success(&kr);
    let token = auth::new_token();
    let csrf = auth::new_token();
    let ttl_ms = s.cfg.auth.session_ttl_min * 60_000;
    let (h, n, c, i) = (
        auth::token_hash(&token),
        req.name.clone(),
        csrf.clone(),
        ip.clone(),
    );
    blocking(&s, move |st| {
        st.create_session(&h, &n, &c, now, now + ttl_ms)?;
        st.audit(now, &n, "login", "session", "", &i)
    })
    .await?;
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        ttl_ms / 1000,
        if s.cfg.http.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    );
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(json!({"user": req.name, "role": role, "csrf": csrf})),
    )
        .into_response())
}

pub async fn logout(State(s): State<AppState>, u: User, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(tok) = cookie(&headers, SESSION_COOKIE) {
        let h = auth::token_hash(&tok);
        blocking(&s, move |st| st.delete_session(&h)).await?;
    }
    audit(&s, &u, "logout", "session".into(), String::new()).await;
    Ok((
        [(
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Json(json!({"ok": true})),
    )
        .into_response())
}

pub async fn session(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let tok = cookie(&headers, SESSION_COOKIE)
        .ok_or(ApiError(StatusCode::UNAUTHORIZED, "log in first".into()))?;
    let h = auth::token_hash(&tok);
    let now = now_ms();
    let p = blocking(&s, move |st| st.session(&h, now))
        .await?
        .ok_or(ApiError(StatusCode::UNAUTHORIZED, "session expired".into()))?;
    Ok(Json(
        json!({"user": p.user, "role": p.role, "csrf": p.csrf, "instance": s.cfg.instance}),
    ))
}

pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let st = &s.stats;
    let d = &s.dispatch_stats;
    let l = &s.live_stats;
    let mut out = String::new();
    let mut put = |name: &str, kind: &str, help: &str, v: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        ));
    };
    for (name, help, v) in [
        (
            "tiancha_ingest_received_total",
            "MQTT messages received",
            &st.received,
        ),
        (
            "tiancha_ingest_alerts_new_total",
            "New alerts stored",
            &st.alerts_new,
        ),
        (
            "tiancha_ingest_duplicates_total",
            "Messages already stored (de-duplicated by id)",
            &st.duplicates,
        ),
        (
            "tiancha_ingest_quarantined_total",
            "Payloads quarantined",
            &st.quarantined,
        ),
        (
            "tiancha_ingest_telemetry_kept_total",
            "Telemetry samples stored",
            &st.telemetry_kept,
        ),
        (
            "tiancha_ingest_telemetry_dropped_total",
            "Telemetry samples down-sampled away",
            &st.telemetry_dropped,
        ),
        (
            "tiancha_ingest_batches_total",
            "Store transactions",
            &st.batches,
        ),
        (
            "tiancha_ingest_receipts_sent_total",
            "Receipts sent to drones",
            &st.receipts_sent,
        ),
        (
            "tiancha_ingest_connects_total",
            "Connections to the broker",
            &st.connects,
        ),
        (
            "tiancha_ingest_store_errors_total",
            "Failed store transactions",
            &st.store_errors,
        ),
        (
            "tiancha_dispatch_attempts_total",
            "HTTP delivery attempts to dispute systems",
            &d.attempts,
        ),
        (
            "tiancha_dispatch_delivered_total",
            "Cases delivered (2xx)",
            &d.delivered,
        ),
        (
            "tiancha_dispatch_retries_total",
            "Failed attempts that will be retried",
            &d.retries,
        ),
        (
            "tiancha_dispatch_dead_letters_total",
            "Deliveries moved to dead letters",
            &d.dead,
        ),
        (
            "tiancha_live_messages_sent_total",
            "Messages pushed to live UI clients",
            &l.sent,
        ),
        (
            "tiancha_live_lagged_total",
            "Live clients that fell behind and resynchronised",
            &l.lagged,
        ),
    ] {
        put(name, "counter", help, v.load(Ordering::Relaxed));
    }
    put(
        "tiancha_live_clients",
        "gauge",
        "Connected live UI clients",
        l.clients.load(Ordering::Relaxed),
    );
    out.push_str(&super::video::metrics(&s));
    if let Ok(counts) = blocking(&s, |st| st.outbox_counts()).await {
        out.push_str("# HELP tiancha_outbox_entries Outbox entries by state\n# TYPE tiancha_outbox_entries gauge\n");
        for (state, n) in counts {
            out.push_str(&format!(
                "tiancha_outbox_entries{{state=\"{state}\"}} {n}\n"
            ));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

// ------------------------------------------------------------ map, drones

pub async fn map(State(s): State<AppState>, _u: User) -> ApiResult<impl IntoResponse> {
    let m = &s.cfg.map;
    let tiles = m.tiles.as_ref().map(|t| {
        json!({
            "url": t.url.clone().unwrap_or_else(|| "/tiles/{z}/{x}/{y}".into()),
            "attribution": t.attribution,
            "max_zoom": t.max_zoom,
        })
    });
    Ok(Json(json!({
        "center": m.center,
        "zoom": m.zoom,
        "tiles": tiles,
        "layers": *s.layers,
    })))
}

pub async fn tile(
    State(s): State<AppState>,
    _u: User,
    Path((z, x, y)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let Some(path) = s.cfg.map.tiles.as_ref().and_then(|t| t.mbtiles.clone()) else {
        return Err(ApiError::not_found("no MBTiles source configured"));
    };
    let y = y.split('.').next().unwrap_or("");
    let (z, x, y): (u32, u32, u32) = match (z.parse(), x.parse(), y.parse()) {
        (Ok(z), Ok(x), Ok(y)) if z <= 30 && x < (1u32 << z) && y < (1u32 << z) => (z, x, y),
        _ => {
            return Err(ApiError::bad(
                "tile coordinates must be integers z/x/y within the zoom level",
            ))
        }
    };
    let r = tokio::task::spawn_blocking(move || -> rusqlite::Result<Option<(Vec<u8>, String)>> {
        let c = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let fmt: String = c
            .query_row("SELECT value FROM metadata WHERE name = 'format'", [], |r| r.get(0))
            .unwrap_or_else(|_| "png".into());
        let row = (1u32 << z) - 1 - y; // MBTiles rows are TMS (south up)
        use rusqlite::OptionalExtension;
        let t: Option<Vec<u8>> = c
            .query_row(
                "SELECT tile_data FROM tiles WHERE zoom_level = ?1 AND tile_column = ?2 AND tile_row = ?3",
                [z, x, row],
                |r| r.get(0),
            )
            .optional()?;
        Ok(t.map(|t| (t, fmt)))
    })
    .await
    .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "worker failed".into()))?;
    match r {
        Ok(Some((data, fmt))) => {
            let ct = match fmt.as_str() {
                "jpg" | "jpeg" => "image/jpeg",
                "webp" => "image/webp",
                "pbf" => "application/x-protobuf",
                _ => "image/png",
            };
            Ok((
                [
                    (header::CONTENT_TYPE, ct),
                    (header::CACHE_CONTROL, "private, max-age=3600"),
                ],
                data,
            )
                .into_response())
        }
        Ok(None) => Err(ApiError::not_found("no such tile")),
        Err(e) => {
            tracing::warn!(error = %e, "MBTiles read failed");
            Err(ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "tile source unreadable".into(),
            ))
        }
    }
}

pub async fn drones(State(s): State<AppState>, _u: User) -> ApiResult<impl IntoResponse> {
    Ok(Json(blocking(&s, |st| st.drones()).await?))
}

#[derive(Deserialize)]
pub struct Since {
    since: Option<i64>,
}

pub async fn track(
    State(s): State<AppState>,
    _u: User,
    Path(id): Path<String>,
    Query(q): Query<Since>,
) -> ApiResult<impl IntoResponse> {
    let id = DroneId::new(id).map_err(|e| ApiError::bad(e.to_string()))?;
    let since = q.since.unwrap_or(now_ms() - 15 * 60_000);
    let t = blocking(&s, move |st| st.track(id.as_str(), since)).await?;
    Ok(Json(
        t.into_iter()
            .map(|(t, lat, lon)| json!([t, lat, lon]))
            .collect::<Vec<_>>(),
    ))
}

// ------------------------------------------------------------ commands, missions

async fn send_command(
    s: &AppState,
    u: &User,
    drone: DroneId,
    kind: CommandKind,
) -> ApiResult<Command> {
    u.require_command()?;
    let Some(mqtt) = s.mqtt.clone() else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no MQTT connection for commands".into(),
        ));
    };
    let now = now_ms();
    let expiry = match kind {
        CommandKind::LaunchPatrol { .. } | CommandKind::Investigate { .. } => {
            s.cfg.commands.launch_expiry_s
        }
        _ => s.cfg.commands.expiry_s,
    };
    let mut cmd = Command {
        schema: proto::SCHEMA_VERSION,
        command_id: Uuid::now_v7(),
        drone_id: drone.clone(),
        issued_by: u.name.clone(),
        t_unix_ms: now,
        expires_unix_ms: now + expiry * 1000,
        kind,
        auth: None,
    };
    // Signed end to end: the companion executes nothing else.
    s.command_signer.sign(&mut cmd, &rand::random());
    let payload = proto::encode(&cmd)
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, format!("command: {e}")))?;
    let c2 = cmd.clone();
    blocking(s, move |st| st.insert_command(&c2)).await?;
    let topic = Topic::new(drone, Channel::Commands).to_string();
    mqtt.publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("MQTT publish failed: {e}"),
            )
        })?;
    audit(
        s,
        u,
        "command",
        format!("drone:{}", cmd.drone_id),
        format!("{} {}", cmd.kind.name(), cmd.command_id),
    )
    .await;
    let _ = s.live.send(super::live::msg("command", &cmd));
    Ok(cmd)
}

pub async fn command(
    State(s): State<AppState>,
    u: User,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    u.require_command()?;
    let drone = DroneId::new(id).map_err(|e| ApiError::bad(e.to_string()))?;
    let kind: CommandKind = parse(&body)?;
    if let CommandKind::SetDetectionZones { .. } = kind {
        if !u.role.is_admin() && u.role != Role::Operator {
            return Err(ApiError::forbidden("operator or admin only"));
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(send_command(&s, &u, drone, kind).await?),
    ))
}

#[derive(Deserialize)]
pub struct Limit {
    limit: Option<u32>,
    drone: Option<String>,
    state: Option<String>,
}

pub async fn commands(
    State(s): State<AppState>,
    _u: User,
    Query(q): Query<Limit>,
) -> ApiResult<impl IntoResponse> {
    let limit = q.limit.unwrap_or(50);
    let drone = q.drone;
    Ok(Json(
        blocking(&s, move |st| st.commands(drone.as_deref(), limit)).await?,
    ))
}

pub async fn commands_of(
    State(s): State<AppState>,
    _u: User,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = DroneId::new(id).map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(Json(
        blocking(&s, move |st| st.commands(Some(id.as_str()), 50)).await?,
    ))
}

#[derive(Deserialize)]
pub struct PreviewReq {
    patrol: PatrolSpec,
    #[serde(default)]
    home: Option<GeoPoint>,
}

pub async fn mission_preview(
    State(s): State<AppState>,
    u: User,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    u.require_command()?;
    let req: PreviewReq = parse(&body)?;
    req.patrol
        .validate()
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, format!("patrol: {e}")))?;
    let m = s.cfg.missions.clone();
    let plan = tokio::task::spawn_blocking(move || {
        let mut r = tiancha_mission_planner::PlanRequest::from_patrol_spec(
            &req.patrol,
            &m.vehicle,
            &m.camera,
        )?;
        if let Some(h) = req.home {
            r.vehicle.home = Some(tiancha_mission_planner::LatLon::new(h.lat_deg, h.lon_deg));
        }
        tiancha_mission_planner::plan_patrol(&r)
    })
    .await
    .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "planner failed".into()))?
    .map_err(|e| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("cannot plan this patrol: {e}"),
        )
    })?;
    let sorties: Vec<_> = plan
        .sorties
        .iter()
        .map(|so| {
            json!({
                "route": so.route.iter().map(|p| [p.lat_deg, p.lon_deg]).collect::<Vec<_>>(),
                "length_m": so.length_m,
                "time_s": so.time_s,
                "mission_items": so.mission.mission.len(),
            })
        })
        .collect();
    Ok(Json(json!({
        "summary": plan.summary,
        "sorties": sorties,
        "fence": plan.fence.inclusion.iter().map(|p| [p.lat_deg, p.lon_deg]).collect::<Vec<_>>(),
    })))
}

// ------------------------------------------------------------ alerts, triage

#[derive(Deserialize)]
pub struct AlertsQuery {
    state: Option<String>,
    limit: Option<u32>,
}

pub async fn alerts(
    State(s): State<AppState>,
    _u: User,
    Query(q): Query<AlertsQuery>,
) -> ApiResult<impl IntoResponse> {
    if let Some(st) = &q.state {
        if !matches!(st.as_str(), "new" | "case" | "dismissed") {
            return Err(ApiError::bad("state must be new, case or dismissed"));
        }
    }
    let limit = q.limit.unwrap_or(200);
    let rows = blocking(&s, move |st| st.alert_list(q.state.as_deref(), limit)).await?;
    let grid = s.desk.grid.clone();
    let out: Vec<_> = rows
        .into_iter()
        .map(|r| {
            let cell = match (r.lat_deg, r.lon_deg) {
                (Some(a), Some(b)) => grid.lookup(a, b).cloned(),
                _ => None,
            };
            let mut v = serde_json::to_value(&r).expect("serialisable");
            v["grid"] = serde_json::to_value(cell).expect("serialisable");
            if r.has_snapshot {
                v["snapshot_url"] = format!("/api/alerts/{}/snapshot.jpg", r.alert_id).into();
            }
            v
        })
        .collect();
    Ok(Json(out))
}

pub async fn alert(
    State(s): State<AppState>,
    _u: User,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id)?;
    let (alert, triage) = blocking(&s, move |st| {
        Ok::<_, crate::store::StoreError>((st.alert(id)?, st.triage_of(id)?))
    })
    .await?;
    let mut alert = alert.ok_or_else(|| ApiError::not_found(format!("no alert {id}")))?;
    let has_snapshot = alert.snapshot.take().is_some();
    let mut v = serde_json::to_value(&alert).expect("serialisable");
    if has_snapshot {
        v["snapshot_url"] = format!("/api/alerts/{id}/snapshot.jpg").into();
    }
    if let Some(g) = &alert.location {
        v["grid"] =
            serde_json::to_value(s.desk.grid.lookup(g.lat_deg, g.lon_deg)).expect("serialisable");
    }
    let (state, case_id) = triage.unwrap_or(("new".into(), None));
    v["triage"] = state.into();
    v["case_id"] = serde_json::to_value(case_id).expect("serialisable");
    Ok(Json(v))
}

pub async fn snapshot(
    State(s): State<AppState>,
    _u: User,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let (_, _, jpeg) = blocking(&s, move |st| st.snapshot(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no snapshot for {id}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "private, max-age=86400"),
        ],
        jpeg,
    )
        .into_response())
}

fn after_change(s: &AppState, ch: &crate::desk::Changed) {
    if ch.enqueued {
        s.dispatch_wake.notify_one();
    }
    super::live::announce(s, ch);
}

pub async fn confirm(
    State(s): State<AppState>,
    u: User,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    u.require_command()?;
    let id = parse_id(&id)?;
    let desk = s.desk.clone();
    let actor = u.name.clone();
    let (case_id, ch) = blocking(&s, move |st| desk.confirm(st, id, &actor, now_ms())).await?;
    after_change(&s, &ch);
    audit(
        &s,
        &u,
        "confirm_alert",
        format!("alert:{id}"),
        format!("case {case_id}"),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({"case_id": case_id, "alerts": ch.alerts})),
    ))
}

#[derive(Deserialize)]
pub struct DismissReq {
    reason: String,
}

pub async fn dismiss(
    State(s): State<AppState>,
    u: User,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    u.require_command()?;
    let id = parse_id(&id)?;
    let req: DismissReq = parse(&body)?;
    let desk = s.desk.clone();
    let actor = u.name.clone();
    let reason = req.reason.clone();
    let ch = blocking(&s, move |st| {
        desk.dismiss(st, id, &reason, &actor, now_ms())
    })
    .await?;
    after_change(&s, &ch);
    audit(
        &s,
        &u,
        "dismiss_alert",
        format!("alert:{id}"),
        truncate(&req.reason, 500),
    )
    .await;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
pub struct MergeReq {
    case_id: Uuid,
}

pub async fn merge(
    State(s): State<AppState>,
    u: User,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    u.require_command()?;
    let id = parse_id(&id)?;
    let req: MergeReq = parse(&body)?;
    let desk = s.desk.clone();
    let actor = u.name.clone();
    let ch = blocking(&s, move |st| {
        desk.merge(st, id, req.case_id, &actor, now_ms())
    })
    .await?;
    after_change(&s, &ch);
    audit(
        &s,
        &u,
        "merge_alert",
        format!("alert:{id}"),
        format!("case {}", req.case_id),
    )
    .await;
    Ok(Json(json!({"ok": true, "case_id": req.case_id})))
}

#[derive(Deserialize, Default)]
pub struct InvestigateReq {
    #[serde(default)]
    drone_id: Option<String>,
    #[serde(default)]
    orbit_radius_m: Option<f64>,
    #[serde(default)]
    duration_s: Option<f64>,
}

pub async fn investigate(
    State(s): State<AppState>,
    u: User,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    u.require_command()?;
    let id = parse_id(&id)?;
    let req: InvestigateReq = if body.is_empty() {
        InvestigateReq::default()
    } else {
        parse(&body)?
    };
    let alert = blocking(&s, move |st| st.alert(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no alert {id}")))?;
    let target = crate::cases::alert_point(&alert).ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            "the alert has no geotag to investigate".into(),
        )
    })?;
    let drone = match req.drone_id {
        Some(d) => DroneId::new(d).map_err(|e| ApiError::bad(e.to_string()))?,
        None => alert.drone_id.clone(),
    };
    let kind = CommandKind::Investigate {
        target,
        orbit_radius_m: req.orbit_radius_m.unwrap_or(30.0),
        duration_s: req.duration_s.unwrap_or(60.0),
        alert_id: Some(id),
    };
    Ok((
        StatusCode::CREATED,
        Json(send_command(&s, &u, drone, kind).await?),
    ))
}

// ------------------------------------------------------------ cases

#[derive(Deserialize)]
pub struct CasesQuery {
    status: Option<String>,
    priority: Option<String>,
    category: Option<String>,
    village: Option<String>,
    limit: Option<u32>,
}

pub async fn cases(
    State(s): State<AppState>,
    _u: User,
    Query(q): Query<CasesQuery>,
) -> ApiResult<impl IntoResponse> {
    let empty = |o: Option<String>| o.filter(|v| !v.is_empty());
    let f =
        CaseFilter {
            status: match empty(q.status) {
                Some(v) => Some(crate::store::cases::parse_status(&v).ok_or_else(|| {
                    ApiError::bad(format!("unknown status `{}`", truncate(&v, 40)))
                })?),
                None => None,
            },
            priority: match empty(q.priority) {
                Some(v) => Some(crate::store::cases::parse_priority(&v).ok_or_else(|| {
                    ApiError::bad(format!("unknown priority `{}`", truncate(&v, 40)))
                })?),
                None => None,
            },
            category: match empty(q.category) {
                Some(v) => Some(Category::parse(&v).ok_or_else(|| {
                    ApiError::bad(format!("unknown category `{}`", truncate(&v, 40)))
                })?),
                None => None,
            },
            village: empty(q.village),
            limit: q.limit.unwrap_or(500),
        };
    Ok(Json(blocking(&s, move |st| st.cases(&f)).await?))
}

pub async fn case(
    State(s): State<AppState>,
    u: User,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id)?;
    let (row, alerts, timeline, delivery, clips) = blocking(&s, move |st| {
        let row = st.case(id)?;
        let ids = st.case_alert_ids(id)?;
        let mut alerts = vec![];
        for a in &ids {
            if let Some(mut al) = st.alert(*a)? {
                let has = al.snapshot.take().is_some();
                let mut v = serde_json::to_value(&al).expect("serialisable");
                if has {
                    v["snapshot_url"] = format!("/api/alerts/{a}/snapshot.jpg").into();
                }
                alerts.push(v);
            }
        }
        let delivery = st
            .outbox_rows(None, 10_000)?
            .into_iter()
            .find(|r| r.case_id == id);
        let clips = st.clips_of(&ids)?;
        Ok::<_, crate::store::StoreError>((row, alerts, st.timeline(id)?, delivery, clips))
    })
    .await?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("no case {id}")))?;
    audit(&s, &u, "view_case", format!("case:{id}"), String::new()).await;
    let clips = super::video::clips_of(clips);
    Ok(Json(
        json!({"case": row, "alerts": alerts, "timeline": timeline, "delivery": delivery, "clips": clips}),
    ))
}

pub async fn case_cap(
    State(s): State<AppState>,
    u: User,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let desk = s.desk.clone();
    let now = now_ms();
    let case = blocking(&s, move |st| {
        let row = st
            .case(id)?
            .ok_or_else(|| crate::store::StoreError::NotFound(format!("no case {id}")))?;
        desk.wire_case(st, &row, now)
    })
    .await?;
    audit(&s, &u, "export_cap", format!("case:{id}"), String::new()).await;
    let xml = crate::dispatch::cap::render(&case, &format!("tiancha@{}", s.cfg.instance), now);
    Ok((
        [(header::CONTENT_TYPE, "application/cap+xml; charset=utf-8")],
        xml,
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct NoteReq {
    #[serde(default)]
    status: Option<CaseStatus>,
    #[serde(default)]
    note: String,
}

pub async fn case_note(
    State(s): State<AppState>,
    u: User,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    if !u.role.may_work_cases() {
        return Err(ApiError::forbidden("your role may not change cases"));
    }
    let id = parse_id(&id)?;
    let req: NoteReq = parse(&body)?;
    let desk = s.desk.clone();
    let actor = u.name.clone();
    let note = req.note.clone();
    let status = blocking(&s, move |st| {
        desk.desk_update(st, id, req.status, &note, &actor, now_ms())
    })
    .await?;
    super::live::announce(
        &s,
        &crate::desk::Changed {
            cases: vec![id],
            ..Default::default()
        },
    );
    audit(
        &s,
        &u,
        "update_case",
        format!("case:{id}"),
        format!(
            "status {:?}; note {} chars",
            req.status,
            req.note.chars().count()
        ),
    )
    .await;
    Ok(Json(json!({"status": status})))
}

// ------------------------------------------------------------ dispatch

pub async fn outbox(
    State(s): State<AppState>,
    u: User,
    Query(q): Query<Limit>,
) -> ApiResult<impl IntoResponse> {
    u.require_command().or_else(|_| u.require_admin())?;
    if let Some(st) = &q.state {
        if !matches!(st.as_str(), "pending" | "delivered" | "dead") {
            return Err(ApiError::bad("state must be pending, delivered or dead"));
        }
    }
    let limit = q.limit.unwrap_or(200);
    Ok(Json(
        blocking(&s, move |st| st.outbox_rows(q.state.as_deref(), limit)).await?,
    ))
}

pub async fn outbox_retry(
    State(s): State<AppState>,
    u: User,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    u.require_command()?;
    let id = parse_id(&id)?;
    let route = blocking(&s, move |st| st.outbox_requeue(id, now_ms())).await?;
    s.dispatch_wake.notify_one();
    audit(&s, &u, "retry_delivery", format!("case:{id}"), route).await;
    Ok(Json(json!({"ok": true})))
}

/// A signed status callback from a dispute system.
pub async fn callback(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let Some(secret) = s.route_secrets.get(&route) else {
        return Err(ApiError::not_found(format!(
            "no dispatch route `{}`",
            truncate(&route, 64)
        )));
    };
    if body.len() > s.cfg.dispatch.callback_max_bytes {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "callback body over {} bytes",
                s.cfg.dispatch.callback_max_bytes
            ),
        ));
    }
    let sig = headers
        .get(sign::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    sign::verify(
        secret,
        sig,
        &body,
        now_ms() / 1000,
        s.cfg.dispatch.signature_tolerance_s,
    )
    .map_err(|e| ApiError(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let update: CaseStatusUpdate =
        proto::decode(&body).map_err(|e| ApiError::bad(e.to_string()))?;
    let desk = s.desk.clone();
    let r2 = route.clone();
    let u2 = update.clone();
    let (status, new) = blocking(&s, move |st| desk.apply_callback(st, &r2, &u2, now_ms())).await?;
    super::live::announce(
        &s,
        &crate::desk::Changed {
            cases: vec![update.case_id],
            ..Default::default()
        },
    );
    let (ip, cid, st_s) = (
        addr.ip().to_string(),
        update.case_id,
        update.status.as_str(),
    );
    let actor = format!("route:{route}");
    let now = now_ms();
    let _ = blocking(&s, move |st| {
        st.audit(
            now,
            &actor,
            "status_callback",
            &format!("case:{cid}"),
            st_s,
            &ip,
        )
    })
    .await;
    Ok(Json(json!({"status": status, "duplicate": !new})))
}

#[derive(Deserialize)]
pub struct EvidenceQuery {
    exp: Option<i64>,
    sig: Option<String>,
}

/// A signed evidence link (dispute systems fetch snapshots and clips
/// without a session): `/evidence/{case}/{alert}.jpg` or `.mp4`.
pub async fn evidence(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    Path((case, file)): Path<(String, String)>,
    Query(q): Query<EvidenceQuery>,
) -> ApiResult<Response> {
    let case_id = parse_id(&case)?;
    let (alert_id, clip) = match (file.strip_suffix(".jpg"), file.strip_suffix(".mp4")) {
        (Some(a), _) => (parse_id(a)?, false),
        (_, Some(a)) => (parse_id(a)?, true),
        _ => {
            return Err(ApiError::bad(
                "evidence files are <alert id>.jpg or <alert id>.mp4",
            ))
        }
    };
    let (Some(exp), Some(sig)) = (q.exp, q.sig) else {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "evidence links need exp and sig".into(),
        ));
    };
    let kind = if clip {
        crate::desk::EvidenceFile::Clip
    } else {
        crate::desk::EvidenceFile::Snapshot
    };
    let ok = s
        .desk
        .evidence_ok(kind, case_id, alert_id, exp, &sig, now_ms());
    if !ok {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "evidence link invalid or expired".into(),
        ));
    }
    let (ids, snap, clip_row) = blocking(&s, move |st| {
        Ok::<_, crate::store::StoreError>((
            st.case_alert_ids(case_id)?,
            if clip { None } else { st.snapshot(alert_id)? },
            if clip { st.clip(alert_id)? } else { None },
        ))
    })
    .await?;
    if !ids.contains(&alert_id) {
        return Err(ApiError::not_found(
            "that alert is not evidence of that case",
        ));
    }
    let resp = if clip {
        let c = clip_row.ok_or_else(|| ApiError::not_found("no clip of that alert"))?;
        let data = super::video::read_clip(&s, &c).await?;
        super::video::mp4_response(data, c.sha256)
    } else {
        let (_, _, jpeg) = snap.ok_or_else(|| ApiError::not_found("snapshot purged"))?;
        ([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response()
    };
    let ip = addr.ip().to_string();
    let now = now_ms();
    let _ = blocking(&s, move |st| {
        st.audit(
            now,
            "evidence link",
            "view_evidence",
            &format!("case:{case_id}"),
            &format!("{alert_id}{}", if clip { " clip" } else { "" }),
            &ip,
        )
    })
    .await;
    Ok(resp)
}

pub async fn quarantine(
    State(s): State<AppState>,
    u: User,
    Query(q): Query<Limit>,
) -> ApiResult<impl IntoResponse> {
    u.require_command()?;
    let limit = q.limit.unwrap_or(100).min(10_000);
    Ok(Json(blocking(&s, move |st| st.quarantine(limit)).await?))
}

// ------------------------------------------------------------ admin

/// User names: 1-64 of letters, digits, `_ - .` (refused otherwise, so a
/// name can never carry markup or SQL).
pub fn check_user_name(n: &str) -> Result<(), String> {
    if n.is_empty()
        || n.len() > 64
        || !n
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "user name `{}` must be 1-64 letters, digits, _ - or .",
            truncate(n, 80)
        ));
    }
    Ok(())
}

pub async fn users(State(s): State<AppState>, u: User) -> ApiResult<impl IntoResponse> {
    u.require_admin()?;
    Ok(Json(blocking(&s, |st| st.users()).await?))
}

#[derive(Deserialize)]
pub struct UserReq {
    name: String,
    role: Role,
    password: String,
}

pub async fn put_user(
    State(s): State<AppState>,
    u: User,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    u.require_admin()?;
    let req: UserReq = parse(&body)?;
    check_user_name(&req.name).map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&req.password))
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "worker failed".into()))?
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let (n, r) = (req.name.clone(), req.role);
    blocking(&s, move |st| st.put_user(&n, r, &hash, now_ms())).await?;
    audit(
        &s,
        &u,
        "put_user",
        format!("user:{}", req.name),
        req.role.as_str().into(),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": req.name, "role": req.role})),
    ))
}

pub async fn disable_user(
    State(s): State<AppState>,
    u: User,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    u.require_admin()?;
    check_user_name(&name).map_err(ApiError::bad)?;
    let n = name.clone();
    blocking(&s, move |st| st.set_user_disabled(&n, true)).await?;
    audit(
        &s,
        &u,
        "disable_user",
        format!("user:{name}"),
        String::new(),
    )
    .await;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
pub struct TokenReq {
    user: String,
    label: String,
}

pub async fn create_token(
    State(s): State<AppState>,
    u: User,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    u.require_admin()?;
    let req: TokenReq = parse(&body)?;
    check_user_name(&req.user).map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    if req.label.trim().is_empty() || req.label.chars().count() > 100 {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "label must be 1-100 characters".into(),
        ));
    }
    let token = auth::new_token();
    let (h, l, us) = (
        auth::token_hash(&token),
        req.label.clone(),
        req.user.clone(),
    );
    blocking(&s, move |st| st.create_api_token(&h, &l, &us, now_ms())).await?;
    audit(
        &s,
        &u,
        "create_token",
        format!("user:{}", req.user),
        req.label.clone(),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "user": req.user, "label": req.label})),
    ))
}

pub async fn audit_log(
    State(s): State<AppState>,
    u: User,
    Query(q): Query<Limit>,
) -> ApiResult<impl IntoResponse> {
    u.require_admin()?;
    let limit = q.limit.unwrap_or(200);
    Ok(Json(blocking(&s, move |st| st.audit_log(limit)).await?))
}
