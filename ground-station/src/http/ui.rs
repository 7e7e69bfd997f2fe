//! The web UI: plain HTML, CSS and JavaScript embedded in the binary (no
//! CDN, no build step), with Leaflet vendored under `ui/vendor/leaflet`
//! (BSD-2-Clause, its LICENSE beside it). Only the files listed here are
//! served: a request for anything else (`../`, encoded traversal, other
//! paths) is a 404 without touching the file system.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const CSP: &str = "default-src 'self'; img-src 'self' data: blob: *; connect-src 'self'; \
    style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

macro_rules! asset {
    ($path:literal, $mime:literal) => {
        (
            $path,
            $mime,
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path)) as &'static [u8],
        )
    };
}

static ASSETS: &[(&str, &str, &[u8])] = &[
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("video.js", "text/javascript; charset=utf-8"),
    asset!(
        "vendor/leaflet/leaflet.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("vendor/leaflet/leaflet.css", "text/css; charset=utf-8"),
    asset!("vendor/leaflet/LICENSE", "text/plain; charset=utf-8"),
    asset!("vendor/leaflet/images/layers.png", "image/png"),
    asset!("vendor/leaflet/images/layers-2x.png", "image/png"),
    asset!("vendor/leaflet/images/marker-icon.png", "image/png"),
    asset!("vendor/leaflet/images/marker-icon-2x.png", "image/png"),
    asset!("vendor/leaflet/images/marker-shadow.png", "image/png"),
];

static INDEX: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/index.html"));

pub async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        INDEX,
    )
        .into_response()
}

pub async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, mime, bytes)) => (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
