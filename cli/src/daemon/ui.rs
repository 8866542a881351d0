//! The HA status page (docs/status-page.md): its HTML, CSS and JavaScript, written by hand in
//! `ui/` and compiled into the binary, so the page needs nothing from the internet and matches
//! the daemon that serves it. The files are static and hold no data; the page reads everything
//! through the admin API with the token the administrator enters, like any other client.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::server::AppState;

/// Where the page is served.
pub const PATH: &str = "/ui/";

/// One embedded file: its path under the page and its content type.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset { path: "/ui/", content_type: "text/html; charset=utf-8", body: include_str!("ui/index.html") },
    Asset { path: "/ui/style.css", content_type: "text/css; charset=utf-8", body: include_str!("ui/style.css") },
    Asset { path: "/ui/api.js", content_type: "text/javascript; charset=utf-8", body: include_str!("ui/api.js") },
    Asset { path: "/ui/charts.js", content_type: "text/javascript; charset=utf-8", body: include_str!("ui/charts.js") },
    Asset { path: "/ui/views.js", content_type: "text/javascript; charset=utf-8", body: include_str!("ui/views.js") },
    Asset { path: "/ui/app.js", content_type: "text/javascript; charset=utf-8", body: include_str!("ui/app.js") },
    Asset { path: "/ui/favicon.svg", content_type: "image/svg+xml", body: include_str!("ui/favicon.svg") },
];

/// Only the page's own files run and only the daemon is reached: an injected script or a
/// framing page gets nowhere, and the token never leaves for another origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn serve(asset: &'static Asset) -> Response {
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
        // The files change with the binary; a browser must not keep an old page for a new daemon.
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (HeaderName::from_static("content-security-policy"), HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (HeaderName::from_static("referrer-policy"), HeaderValue::from_static("no-referrer")),
    ];
    (headers, asset.body).into_response()
}

/// The page's routes, served without the bearer token (see `server::router`).
pub fn router() -> Router<AppState> {
    let mut r = Router::new().route("/ui", get(|| async { Redirect::permanent(PATH) }));
    for asset in ASSETS {
        r = r.route(asset.path, get(move || async move { serve(asset) }));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::super::server::{router, AppState};
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use mgha_core::engine::EngineOptions;
    use mgha_core::NodeState;
    use std::sync::Arc;
    use tower::ServiceExt;

    #[tokio::test]
    async fn the_page_is_served_without_the_token_and_the_api_still_needs_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = mgha_sync::create_engine(dir.path(), &NodeState::new_primary("n"), EngineOptions::default())
            .expect("create");
        let app = router(AppState::new(Arc::new(engine), "t"));
        let get = |uri: &'static str| {
            let app = app.clone();
            async move {
                let resp = app.oneshot(Request::builder().uri(uri).body(Body::empty()).expect("request")).await;
                resp.expect("response")
            }
        };
        for asset in ASSETS {
            let resp = get(asset.path).await;
            assert_eq!(resp.status(), StatusCode::OK, "{}", asset.path);
            assert_eq!(resp.headers()[CONTENT_TYPE], asset.content_type, "{}", asset.path);
            assert!(resp.headers().contains_key("content-security-policy"), "{}", asset.path);
        }
        let resp = get("/ui").await;
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(resp.headers()["location"], PATH);
        for uri in ["/ui/secret.js", "/ui/../v1/status", "/v1/status", "/v1/events"] {
            assert_eq!(get(uri).await.status(), StatusCode::UNAUTHORIZED, "{uri}");
        }
    }

    #[test]
    fn the_page_loads_every_script_it_ships_and_nothing_else() {
        let html = ASSETS[0].body;
        for asset in &ASSETS[1..] {
            let name = asset.path.trim_start_matches(PATH);
            assert!(html.contains(&format!("\"{name}\"")), "index.html does not load {name}");
        }
        assert!(!html.contains("http://") && !html.contains("https://"), "the page loads nothing from elsewhere");
        assert!(!html.contains("<script>") && !html.contains(" style="), "inline code is refused by the policy");
    }
}
