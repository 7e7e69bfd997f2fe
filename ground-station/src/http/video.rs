//! Live video routes: the list of drones with video, the MJPEG fallback,
//! WebRTC signalling (a WebSocket per viewer), and alert clips.
//!
//! Watching live video needs a role that may watch ([`may_watch`]:
//! operator, admin); clips are case evidence (any role). Every viewing's
//! start and stop is in the audit log (`video_watch_start`,
//! `video_watch_stop` with the transport and the seconds watched).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{audit, ApiError, AppState, User};
use crate::auth::Role;
use crate::video::{webrtc, VideoError, VideoHub, ViewerSlot};

type ApiResult<T> = Result<T, ApiError>;

/// Live video is for the people who fly: operators and admins.
pub fn may_watch(r: Role) -> bool {
    matches!(r, Role::Operator | Role::Admin)
}

fn require_watch(u: &User) -> ApiResult<()> {
    if may_watch(u.role) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "role {} may not watch live video (operator or admin only)",
            u.role.as_str()
        )))
    }
}

impl From<VideoError> for ApiError {
    fn from(e: VideoError) -> Self {
        match e {
            VideoError::NoSuchDrone(_) => ApiError::not_found(e.to_string()),
            VideoError::TooManyViewers(_) => {
                ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            e => {
                tracing::error!(error = %e, "video");
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

/// Writes `video_watch_stop` when the viewing ends, however it ends.
struct Watching {
    s: AppState,
    u: User,
    drone: String,
    how: &'static str,
    since: Instant,
    _slot: ViewerSlot,
}

impl Watching {
    async fn start(
        s: &AppState,
        u: &User,
        drone: &str,
        how: &'static str,
        slot: ViewerSlot,
    ) -> Self {
        audit(
            s,
            u,
            "video_watch_start",
            format!("drone:{drone}"),
            how.to_string(),
        )
        .await;
        Watching {
            s: s.clone(),
            u: u.clone(),
            drone: drone.to_string(),
            how,
            since: Instant::now(),
            _slot: slot,
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let (s, u, d) = (self.s.clone(), self.u.clone(), self.drone.clone());
        let detail = format!("{} {:.1} s", self.how, self.since.elapsed().as_secs_f64());
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                audit(&s, &u, "video_watch_stop", format!("drone:{d}"), detail).await;
            });
        }
    }
}

fn hub(s: &AppState) -> &Arc<VideoHub> {
    &s.video
}

/// `GET /api/video`: the drones with video and how they are doing.
pub async fn list(State(s): State<AppState>, u: User) -> ApiResult<impl IntoResponse> {
    require_watch(&u)?;
    let h = hub(&s);
    let drones: Vec<_> = h
        .drones
        .values()
        .map(|d| {
            use std::sync::atomic::Ordering::Relaxed;
            json!({
                "drone_id": d.id,
                "recording": d.ring.is_some(),
                "source_running": d.source_running(),
                "consumers": d.consumers(),
                "access_units": d.stats.access_units.load(Relaxed),
                "last_frame_unix_ms": d.stats.last_au_unix_ms.load(Relaxed),
                "mjpeg_url": format!("/api/drones/{}/video.mjpeg", d.id),
                "webrtc_url": format!("/api/drones/{}/video/webrtc", d.id),
            })
        })
        .collect();
    Ok(Json(json!({"drones": drones, "viewers": h.viewers()})))
}

/// `GET /api/drones/{id}/video.mjpeg`: `multipart/x-mixed-replace` JPEGs.
pub async fn mjpeg(
    State(s): State<AppState>,
    u: User,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    require_watch(&u)?;
    let h = hub(&s).clone();
    h.drone(&id)?;
    let slot = h.viewer_slot()?;
    let id2 = id.clone();
    let m = tokio::task::spawn_blocking(move || h.mjpeg(&id2))
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "worker failed".into()))??;
    let watching = Watching::start(&s, &u, &id, "mjpeg", slot).await;
    let rx = m.frames.clone();
    let stream = futures::stream::unfold((rx, m, watching), |(mut rx, m, w)| async move {
        // The newest frame each time (a slow client skips frames).
        loop {
            if rx.changed().await.is_err() {
                return None;
            }
            let f = rx.borrow_and_update().clone();
            if let Some(jpeg) = f {
                let mut part = Vec::with_capacity(jpeg.len() + 100);
                part.extend_from_slice(
                    format!(
                        "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                        jpeg.len()
                    )
                    .as_bytes(),
                );
                part.extend_from_slice(&jpeg);
                part.extend_from_slice(b"\r\n");
                return Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from(part)),
                    (rx, m, w),
                ));
            }
        }
    });
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "multipart/x-mixed-replace; boundary=frame",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `GET /api/drones/{id}/video/webrtc`: a WebSocket carrying JSON
/// `{"type":"offer"|"answer"|"candidate"|"error", ...}`. The station
/// sends the offer; the viewer lasts as long as the socket.
pub async fn webrtc_ws(
    State(s): State<AppState>,
    u: User,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    require_watch(&u)?;
    let h = hub(&s).clone();
    h.drone(&id)?;
    if !super::same_origin(&headers) {
        return Err(ApiError::forbidden("cross-site WebSocket refused"));
    }
    let ws = ws.map_err(|e| ApiError(e.status(), e.body_text()))?;
    let slot = h.viewer_slot()?;
    let watching = Watching::start(&s, &u, &id, "webrtc", slot).await;
    Ok(ws
        .max_message_size(64 * 1024)
        .on_upgrade(move |sock| serve_webrtc(sock, h, id, watching)))
}

async fn serve_webrtc(mut sock: WebSocket, h: Arc<VideoHub>, id: String, w: Watching) {
    let d = match h.drone(&id) {
        Ok(d) => d.clone(),
        Err(_) => return,
    };
    let started = tokio::task::spawn_blocking(move || webrtc::Viewer::start(&d)).await;
    let (viewer, mut signals) = match started {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let _ = sock
                .send(Message::Text(
                    json!({"type": "error", "error": e.to_string()})
                        .to_string()
                        .into(),
                ))
                .await;
            return;
        }
        Err(_) => return,
    };
    loop {
        tokio::select! {
            sig = signals.recv() => {
                let m = match sig {
                    Some(webrtc::Signal::Offer(sdp)) => json!({"type": "offer", "sdp": sdp}),
                    Some(webrtc::Signal::Candidate { mline, candidate }) => {
                        json!({"type": "candidate", "sdpMLineIndex": mline, "candidate": candidate})
                    }
                    Some(webrtc::Signal::Connected) => json!({"type": "connected"}),
                    Some(webrtc::Signal::Failed(e)) => {
                        let _ = sock.send(Message::Text(json!({"type": "error", "error": e}).to_string().into())).await;
                        break;
                    }
                    None => break,
                };
                if sock.send(Message::Text(m.to_string().into())).await.is_err() {
                    break;
                }
            }
            msg = sock.recv() => {
                let Some(Ok(msg)) = msg else { break };
                let text = match msg {
                    Message::Text(t) => t,
                    Message::Close(_) => break,
                    _ => continue,
                };
                let v: serde_json::Value = match serde_json::from_str(text.as_str()) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = sock.send(Message::Text(json!({"type": "error", "error": format!("not JSON: {e}")}).to_string().into())).await;
                        continue;
                    }
                };
                match v["type"].as_str() {
                    Some("answer") => {
                        if let Err(e) = viewer.answer(v["sdp"].as_str().unwrap_or("")) {
                            let _ = sock.send(Message::Text(json!({"type": "error", "error": e.to_string()}).to_string().into())).await;
                            break;
                        }
                    }
                    Some("candidate") => {
                        let c = v["candidate"].as_str().unwrap_or("");
                        if !c.is_empty() {
                            viewer.candidate(v["sdpMLineIndex"].as_u64().unwrap_or(0) as u32, c);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    // Stop the pipeline off the async threads, then end the viewing.
    let _ = tokio::task::spawn_blocking(move || drop(viewer)).await;
    drop(w);
}

/// `GET /api/alerts/{id}/clip.mp4`: the clip recorded around an alert
/// (its record in the store names the file and its SHA-256, sent as
/// `X-Content-SHA256`).
pub async fn clip_mp4(
    State(s): State<AppState>,
    u: User,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: uuid::Uuid = id.parse().map_err(|_| {
        ApiError::bad(format!(
            "`{}` is not a UUID",
            id.chars().take(80).collect::<String>()
        ))
    })?;
    let c = super::blocking(&s, move |st| st.clip(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no clip for alert {id}")))?;
    let data = read_clip(&s, &c).await?;
    audit(&s, &u, "view_clip", format!("alert:{id}"), c.sha256.clone()).await;
    Ok(mp4_response(data, c.sha256))
}

/// The MP4 bytes of a recorded clip.
pub async fn read_clip(s: &AppState, c: &crate::store::clips::ClipRow) -> ApiResult<Vec<u8>> {
    tokio::fs::read(s.cfg.data_dir.join(&c.path))
        .await
        .map_err(|e| {
            tracing::warn!(alert_id = %c.alert_id, path = %c.path, error = %e, "recorded clip unreadable");
            ApiError::not_found(format!("the clip of alert {} is gone from disk", c.alert_id))
        })
}

/// A clip as a response, with its recorded hash.
pub fn mp4_response(data: Vec<u8>, sha256: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "video/mp4".to_string()),
            (header::CACHE_CONTROL, "private, max-age=86400".to_string()),
            (header::HeaderName::from_static("x-content-sha256"), sha256),
        ],
        data,
    )
        .into_response()
}

/// The clips of a case's alerts, for its record: each with its hash and
/// where to fetch it.
pub fn clips_of(clips: Vec<crate::store::clips::ClipRow>) -> Vec<serde_json::Value> {
    clips
        .into_iter()
        .map(|c| {
            let url = format!("/api/alerts/{}/clip.mp4", c.alert_id);
            let mut v = serde_json::to_value(&c).expect("serialisable");
            v["url"] = url.into();
            v
        })
        .collect()
}

/// Prometheus lines of the video side.
pub fn metrics(s: &AppState) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let h = hub(s);
    let mut out = String::new();
    out.push_str(&format!(
        "# HELP tiancha_video_viewers Live video viewers\n# TYPE tiancha_video_viewers gauge\ntiancha_video_viewers {}\n",
        h.viewers()
    ));
    out.push_str(&format!(
        "# HELP tiancha_video_gst_elements GStreamer elements made by the video side still alive\n# TYPE tiancha_video_gst_elements gauge\ntiancha_video_gst_elements {}\n",
        crate::video::live_elements()
    ));
    out.push_str("# HELP tiancha_video_access_units_total H.264 access units received per drone\n# TYPE tiancha_video_access_units_total counter\n");
    for d in h.drones.values() {
        out.push_str(&format!(
            "tiancha_video_access_units_total{{drone=\"{}\"}} {}\n",
            d.id,
            d.stats.access_units.load(Relaxed)
        ));
    }
    out.push_str("# HELP tiancha_video_source_running Source pipeline running per drone\n# TYPE tiancha_video_source_running gauge\n");
    for d in h.drones.values() {
        out.push_str(&format!(
            "tiancha_video_source_running{{drone=\"{}\"}} {}\n",
            d.id,
            d.source_running() as u8
        ));
    }
    out
}
