//! The daemon's HTTP server: the router with its middleware (bearer token, request metrics, body
//! limit), the shared state (with the peer synchronization runtime, which changeovers go
//! through), the event log, and a graceful shutdown on SIGTERM or SIGINT. Engine calls are
//! synchronous redb work, so they run on tokio's blocking pool, never on the async workers.

use mgha_sync::EngineExt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use mgha_core::{Engine, ErrorCode};
use mgha_node::contract::StatusBody;
use mgha_node::{Node, NodeConfig};
use tokio::sync::watch;

use super::errors::ApiError;
use super::metrics::{Metrics, UNMATCHED_ROUTE};
use super::{events, routes, ui};

/// How long open connections (a backup download, say) may run on after a stop signal before the
/// daemon closes them and exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// The running node: its changeovers and shutdown. `None` in the handler tests, which serve
    /// an engine without a node around it.
    pub node: Option<Arc<Node>>,
    token: Arc<str>,
    pub metrics: Arc<Metrics>,
    /// The `/v1/events` streams' places and their shared sampler.
    pub events: Arc<events::Hub>,
    /// Turns true when the daemon stops, which ends the event streams.
    pub stopping: Arc<watch::Sender<bool>>,
    /// The domain `engine` is of (`global`: the node's own).
    pub domain: Arc<str>,
    /// The routers of the other domains, `/v1/domains/{domain}/…`.
    pub scoped: Arc<super::domains::Scoped>,
}

impl AppState {
    /// The state of a daemon serving `engine` alone, for the handler tests.
    #[cfg(test)]
    pub fn new(engine: Arc<Engine>, token: &str) -> AppState {
        AppState::with(engine, None, token)
    }

    fn with(engine: Arc<Engine>, node: Option<Arc<Node>>, token: &str) -> AppState {
        AppState {
            engine,
            node,
            token: token.into(),
            metrics: Arc::default(),
            events: Arc::default(),
            stopping: Arc::new(watch::channel(false).0),
            domain: mgha_node::domains::GLOBAL_DOMAIN.into(),
            scoped: Arc::default(),
        }
    }

    /// The state of domain `name`, whose engine on this server is `engine`: the same node,
    /// token, metrics and stop signal, its own event streams.
    pub fn for_domain(&self, name: &str, engine: Arc<Engine>) -> AppState {
        AppState { engine, domain: name.into(), events: Arc::default(), ..self.clone() }
    }

    /// Ends every event stream, open or opened later: the daemon is stopping.
    pub fn stop_streams(&self) {
        self.stopping.send_replace(true);
    }

    /// The state of the daemon of `node`.
    pub fn of(node: Arc<Node>, token: &str) -> mgha_node::Result<AppState> {
        Ok(AppState::with(node.engine()?, Some(node), token))
    }

    /// Runs synchronous engine work on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> mgha_core::Result<T> + Send + 'static,
    {
        let engine = self.engine.clone();
        on_blocking_pool(move || f(&engine)).await
    }

    /// The status document: the node's own (its settings included) when there is a node, else
    /// the engine's.
    pub async fn status(&self) -> Result<StatusBody, ApiError> {
        match &self.node {
            // The node's own status, as libmgha gives it.
            Some(node) => {
                let node = node.clone();
                let domain = self.domain.clone();
                on_blocking_pool(move || node.domain_status(&domain)).await
            }
            None => self.run(StatusBody::of).await,
        }
    }

    /// Runs a publish (plain, session or revert) and records its outcome and latency.
    pub async fn run_publish<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> mgha_core::Result<T> + Send + 'static,
    {
        let started = std::time::Instant::now();
        let result = self.run(f).await;
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(e) => Err(serde_json::from_value(serde_json::Value::String(e.code.clone())).unwrap_or(ErrorCode::Io)),
        };
        self.metrics.publish(outcome, started.elapsed());
        result
    }
}

/// The admin API router, with the status page's static files beside it: the token guards every
/// route but the public health probes and the page's files.
pub fn router(state: AppState) -> Router {
    let mut guarded = Router::new();
    let mut public = Router::new();
    for route in routes::table() {
        tracing::debug!(method = route.method, path = route.path, public = route.public, "route");
        if route.public {
            public = public.route(route.path, route.handler);
        } else {
            guarded = guarded.route(route.path, route.handler);
        }
    }
    let guarded = guarded
        .route("/v1/domains/{domain}/{*rest}", axum::routing::any(super::domains::scoped))
        .fallback(no_route)
        // Inside the token check: only an authenticated client makes the daemon read a body.
        .layer(middleware::from_fn(super::connections::body_deadline))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    // The page's files hold no data and no secret, and a browser cannot send a bearer token when
    // it navigates: they are served without it. Everything the page shows comes from the API
    // above, with the token.
    ui::router()
        .merge(public)
        .merge(guarded)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(mgha_core::limits::CHANGESET_BYTES_MAX))
        .with_state(state)
}

/// The guarded routes alone (no status page, no probes, no request metrics), for the domains
/// served under `/v1/domains/{domain}/…` once the outer router checked the token and counted
/// the request.
pub fn api_router(state: AppState) -> Router {
    let mut guarded = Router::new();
    for route in routes::table().into_iter().filter(|r| !r.public) {
        guarded = guarded.route(route.path, route.handler);
    }
    guarded
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(DefaultBodyLimit::max(mgha_core::limits::CHANGESET_BYTES_MAX))
        .with_state(state)
}

/// The router of the `health_listen` listener: the public probes and nothing else, so that
/// exposing it to the network exposes nothing of the admin API.
pub fn health_router(state: AppState) -> Router {
    let mut app = Router::new();
    for route in routes::table().into_iter().filter(|r| r.public) {
        app = app.route(route.path, route.handler);
    }
    app.fallback(|| async { axum::http::StatusCode::NOT_FOUND })
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no route {method} {}; GET /openapi.json lists them", uri.path()))
}

/// Refuses every request without the node's bearer token, /metrics and /openapi.json included:
/// they reveal the configuration's size and shape.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let presented = req.headers().get(AUTHORIZATION).map(|v| v.to_str().unwrap_or("").trim());
    let Some(value) = presented else {
        return ApiError::unauthorized("missing 'Authorization: Bearer <token>'; the token is in DIR/admin.token")
            .into_response();
    };
    let token = value.strip_prefix("Bearer ").map(str::trim).unwrap_or("");
    if !crate::token::matches(&state.token, token) {
        return ApiError::unauthorized("wrong bearer token; the token is in DIR/admin.token").into_response();
    }
    next.run(req).await
}

/// Counts requests by route pattern, method and status.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or(UNMATCHED_ROUTE, |p| p.as_str()).to_string();
    // The method is a token the client chooses; keep the label set bounded.
    let method = match *req.method() {
        Method::GET | Method::POST | Method::PUT | Method::DELETE | Method::HEAD => req.method().as_str().to_string(),
        _ => "OTHER".to_string(),
    };
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    tracing::debug!(%route, %method, status, "request");
    state.metrics.request(&route, &method, status);
    resp
}

/// Serves the admin API of `node` on the configured address (HTTPS when it has TLS files), and synchronizes with
/// the peers when the node has a `listen` address, until SIGTERM or SIGINT.
pub async fn serve(node: Arc<Node>, token: &str) -> anyhow::Result<()> {
    // Handlers go in before any socket opens: a stop signal that arrives as soon as the daemon
    // answers must be a clean stop, not the default action of killing the process.
    let signals = StopSignals::install()?;
    let engine = node.engine()?;
    let state = AppState::of(node.clone(), token)?;
    // Subscribed before synchronization starts, so the first peer status changes are logged too.
    let events = tokio::spawn(super::roles::log_events(engine.sync().events(), state.metrics.clone()));
    node.start_async().await?;
    let served = serve_admin(state, node.config(), signals).await;
    events.abort();
    served
}

/// Serves the admin API until a stop signal, then lets open requests finish.
async fn serve_admin(state: AppState, config: &NodeConfig, signals: StopSignals) -> anyhow::Result<()> {
    let admin = config.require_admin()?;
    // Read before the port opens: a daemon with a bad certificate or key never answers at all.
    let tls = match config.read_admin_tls()? {
        Some(pem) => Some(super::connections::tls_acceptor(&pem)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(admin)
        .await
        .with_context(|| format!("cannot listen on {admin} (key 'admin' in mgha.toml)"))?;
    // Bound before the admin API, so a daemon that answers on `admin` answers probes too.
    let health = match config.health_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (key 'health_listen' in mgha.toml)"))?;
            tracing::info!(%addr, "health probes listening");
            Some(tokio::spawn(axum::serve(listener, health_router(state.clone())).into_future()))
        }
        None => None,
    };
    let app = router(state.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut server = tokio::spawn(super::connections::serve(listener, app, tls, stopped));
    tracing::info!(node = config.name.as_deref().unwrap_or_default(), %admin, scheme, "admin API listening");
    // Ready: the admin port is bound (connections queue until the server task accepts them).
    super::notify::notify("READY=1");

    tokio::select! {
        res = &mut server => {
            res.context("admin server task")?;
            anyhow::bail!("the admin server stopped by itself");
        }
        sig = signals.wait() => {
            tracing::info!(signal = sig, "stopping: finishing open requests");
            super::notify::notify("STOPPING=1");
        }
    }
    // Probes answer at once; nothing of theirs needs a grace period.
    if let Some(h) = health {
        h.abort();
    }
    // A watch keeps its value, so the server sees it even if it has not started waiting yet.
    let _ = stop.send(true);
    // Event streams never finish by themselves: end them, or they would hold the grace period.
    state.stop_streams();
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(res) => res.context("admin server task")?,
        Err(_) => {
            tracing::warn!(
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "requests still open after the grace period; closing them"
            );
            server.abort();
        }
    }
    Ok(())
}

/// The signals that stop the daemon.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// Waits for SIGTERM or SIGINT and names it.
    async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Runs synchronous engine or node work (which may wait for an fsync) on the blocking pool, off
/// the async workers; a task that panicked is an internal error.
pub async fn on_blocking_pool<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("a blocking task failed: {e}")))?
        .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use mgha_core::engine::EngineOptions;
    use mgha_core::NodeState;
    use tower::ServiceExt;

    async fn get(app: &Router, uri: &str, auth: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut req = axum::http::Request::builder().uri(uri);
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        let resp = app.clone().oneshot(req.body(Body::empty()).expect("request")).await.expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    fn engine(dir: &std::path::Path) -> Arc<Engine> {
        Arc::new(mgha_sync::create_engine(dir, &NodeState::new_primary("n"), EngineOptions::default()).expect("create"))
    }

    fn app(dir: &std::path::Path) -> Router {
        router(AppState::new(engine(dir), "secret"))
    }

    #[tokio::test]
    async fn every_route_needs_the_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app(dir.path());
        for uri in ["/v1/status", "/metrics", "/openapi.json", "/no/such/route"] {
            for auth in [None, Some("Bearer wrong"), Some("secret"), Some("Basic secret")] {
                let (status, body) = get(&app, uri, auth).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} {auth:?}");
                assert_eq!(body["error"]["code"], "unauthorized", "{uri} {auth:?}");
            }
            let (status, _) = get(&app, uri, Some("Bearer secret")).await;
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{uri}");
        }
    }

    #[tokio::test]
    async fn probes_answer_without_the_token_and_say_only_role_and_health() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = AppState::new(engine(dir.path()), "secret");
        let app = router(state.clone());
        for (uri, expected) in
            [("/health", StatusCode::OK), ("/active", StatusCode::OK), ("/standby", StatusCode::SERVICE_UNAVAILABLE)]
        {
            let (status, body) = get(&app, uri, None).await;
            assert_eq!(status, expected, "{uri}: {body}");
            assert_eq!(body, serde_json::json!({"role": "active", "healthy": true}), "{uri}");
        }
        // The probes' own router serves nothing else, token or not.
        let probes = health_router(state);
        let (status, _) = get(&probes, "/v1/status", Some("Bearer secret")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = get(&probes, "/active", None).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn request_errors_are_json_with_mapped_statuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app(dir.path());
        let auth = Some("Bearer secret");
        let (status, body) = get(&app, "/no/such/route", auth).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::NOT_FOUND, &"not-found".into()));
        let (status, body) = get(&app, "/v1/diff?from=1", auth).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &"invalid-argument".into()));
        let (status, body) = get(&app, "/v1/revisions/abc", auth).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &"invalid-argument".into()));
        let (status, body) = get(&app, "/v1/objects?type=hots", auth).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::UNPROCESSABLE_ENTITY, &"validation".into()));
        let (status, body) = get(&app, "/v1/objects/host/web1", auth).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("web1")), "{body}");
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_pattern() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app(dir.path());
        get(&app, "/v1/objects/host/a", Some("Bearer secret")).await;
        get(&app, "/v1/objects/host/b", Some("Bearer secret")).await;
        get(&app, "/random/path", None).await;
        let req = axum::http::Request::builder()
            .uri("/metrics")
            .header(AUTHORIZATION, "Bearer secret")
            .body(Body::empty())
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("response");
        let text = String::from_utf8(axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body").to_vec())
            .expect("utf-8");
        assert!(text.contains(r#"route="/v1/objects/{type}/{key}",method="GET",status="404"} 2"#), "{text}");
        assert!(text.contains(r#"route="unmatched",method="GET",status="401"} 1"#), "{text}");
    }
}
