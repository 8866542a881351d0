//! The admin API's route table and its read, publish and revert handlers. The table is the one
//! list of routes: the router is built from it and the OpenAPI test checks every entry against
//! the generated document, so a route without documentation (or the reverse) fails the build.

use axum::extract::State;
use axum::handler::Handler;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::MethodRouter;
use axum::Json;
use mgha_core::limits::{LIST_OBJECTS_MAX, LIST_REVISIONS_MAX};
use mgha_core::{ChangeSet, ErrorCode};
use serde::Deserialize;
use utoipa::IntoParams;

use super::errors::{ApiError, ApiJson, ApiPath, ApiQuery, RawBody};
use super::metrics::Gauges;
use super::server::AppState;
use super::{archive, backup, cluster, collisions, domains, events, health, openapi, plugins, roles, sessions};
use crate::api::*;

/// The header that names who publishes; without it the author is [`DEFAULT_AUTHOR`].
pub const AUTHOR_HEADER: &str = "x-mgha-author";
/// The author of publishes that do not name one.
pub const DEFAULT_AUTHOR: &str = "admin";
/// Objects returned by `GET /v1/objects` without `limit`.
pub const LIST_OBJECTS_DEFAULT: usize = 1000;
/// Revisions returned by `GET /v1/revisions` without `limit`.
pub const LIST_REVISIONS_DEFAULT: usize = 100;

/// One route: its method and path as the OpenAPI document spells them, its handler, and
/// whether it answers without the bearer token (the health probes only).
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub handler: MethodRouter<AppState>,
    pub public: bool,
}

fn get<H: Handler<T, AppState>, T: 'static>(path: &'static str, h: H) -> Route {
    Route { method: "get", path, handler: axum::routing::get(h), public: false }
}
fn post<H: Handler<T, AppState>, T: 'static>(path: &'static str, h: H) -> Route {
    Route { method: "post", path, handler: axum::routing::post(h), public: false }
}
fn delete<H: Handler<T, AppState>, T: 'static>(path: &'static str, h: H) -> Route {
    Route { method: "delete", path, handler: axum::routing::delete(h), public: false }
}
/// A route without the token: what it answers must be safe for anyone who can reach the port.
fn public_get<H: Handler<T, AppState>, T: 'static>(path: &'static str, h: H) -> Route {
    Route { method: "get", path, handler: axum::routing::get(h), public: true }
}

/// Every route of the admin API.
pub fn table() -> Vec<Route> {
    vec![
        get("/v1/status", status),
        get("/v1/events", events::stream),
        get("/v1/check", check),
        post("/v1/publish", publish),
        get("/v1/objects", list_objects),
        get("/v1/objects/{type}/{key}", get_object),
        get("/v1/revisions", list_revisions),
        get("/v1/revisions/{seq}", get_revision),
        get("/v1/diff", diff),
        post("/v1/revert", revert),
        post("/v1/sessions", sessions::open),
        get("/v1/sessions/{id}", sessions::show),
        delete("/v1/sessions/{id}", sessions::discard),
        post("/v1/sessions/{id}/changes", sessions::stage),
        post("/v1/sessions/{id}/publish", sessions::publish),
        post("/v1/join-keys", cluster::create_join_key),
        get("/v1/members", cluster::list_members),
        delete("/v1/members/{name}", cluster::remove_member),
        post("/v1/changeover", roles::changeover),
        post("/v1/promote", roles::promote),
        get("/v1/domains", domains::list),
        post("/v1/domains", domains::create),
        delete("/v1/domains/{domain}", domains::delete),
        post("/v1/domains/{domain}/move", domains::move_replica),
        post("/v1/domains/{domain}/retention", domains::set_retention),
        post("/v1/rebalance", domains::rebalance),
        get("/v1/collisions", collisions::list_collisions),
        get("/v1/collisions/{id}/diff", collisions::diff_collision),
        post("/v1/collisions/{id}/resolve", collisions::resolve_collision),
        // Not under /v1/plugins/: that path would shadow the removal of a plugin named "check".
        post("/v1/plugin-check", plugins::check_plugin),
        post("/v1/plugins", plugins::install_plugin),
        get("/v1/plugins", plugins::list_plugins),
        delete("/v1/plugins/{name}", plugins::remove_plugin),
        get("/v1/backup", backup::download),
        get("/v1/archive", archive::list_archives),
        get("/v1/archive/{name}/revisions", archive::list_revisions),
        get("/v1/archive/{name}/revisions/{seq}", archive::get_revision),
        get("/v1/archive/{name}/diff", archive::diff),
        get("/metrics", metrics),
        get("/openapi.json", openapi::document),
        public_get("/health", health::health),
        public_get("/active", health::active),
        public_get("/standby", health::standby),
    ]
}

/// The author named by the request, checked against the core's limit before any work.
pub fn author(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get(AUTHOR_HEADER) {
        None => Ok(DEFAULT_AUTHOR.into()),
        Some(v) => {
            let a = v
                .to_str()
                .map_err(|_| {
                    ApiError::new(ErrorCode::InvalidArgument, format!("header {AUTHOR_HEADER}: not visible ASCII"))
                })?
                .trim();
            if a.is_empty() {
                return Err(ApiError::new(ErrorCode::InvalidArgument, format!("header {AUTHOR_HEADER}: empty")));
            }
            Ok(a.to_string())
        }
    }
}

/// The node's identity, role, head and size.
#[utoipa::path(get, path = "/v1/status", operation_id = "getStatus", tag = "node",
    responses((status = 200, body = StatusBody), (status = 401, body = ErrorBody)))]
pub async fn status(State(state): State<AppState>) -> Result<Json<StatusBody>, ApiError> {
    let s = state.status().await?;
    Ok(Json(s))
}

/// Verifies the whole store: every record against its seal, the indexes, the state hash
/// recomputed from the objects, the hash chain of the revisions. Reads every object.
#[utoipa::path(get, path = "/v1/check", operation_id = "checkStore", tag = "node",
    responses((status = 200, body = CheckBody), (status = 401, body = ErrorBody),
        (status = 500, description = "The store is damaged (code `corrupt`, naming the record)", body = ErrorBody)))]
pub async fn check(State(state): State<AppState>) -> Result<Json<CheckBody>, ApiError> {
    let report = state.run(|e| e.check()).await?;
    Ok(Json(CheckBody::from(&report)))
}

/// Publishes a changeset as one revision, all or nothing.
#[utoipa::path(post, path = "/v1/publish", operation_id = "publishChangeset", tag = "revisions",
    request_body(content = ChangeSetBody, description = "The changeset (docs/changeset.md)"),
    params(("x-mgha-author" = Option<String>, Header, description = "Who publishes (default: admin)")),
    responses(
        (status = 201, description = "The new revision", body = RevisionInfoBody),
        (status = 400, description = "Malformed changeset", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "An object is locked by an admin session", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "Validation failed; nothing was published", body = ErrorBody),
        (status = 503, description = "This node is a read-only standby", body = ErrorBody)))]
pub async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<RevisionInfoBody>), ApiError> {
    let author = author(&headers)?;
    // Parsing a large changeset is CPU work too: it runs on the blocking pool with the publish.
    let rev = state
        .run_publish(move |e| {
            let cs = ChangeSet::from_json(&body)?;
            e.publish_owned(&author, cs)
        })
        .await?;
    tracing::info!(seq = rev.seq, changes = rev.changes.len(), author = %rev.author, "published");
    Ok((StatusCode::CREATED, Json(RevisionInfoBody::from(&rev.info()))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ObjectsQuery {
    /// Only objects of this type.
    #[serde(rename = "type")]
    pub type_name: Option<String>,
    /// At most this many objects (default 1000, at most 100000).
    pub limit: Option<usize>,
    /// Paging: only objects after the one of this type and `after_name` in (type, name)
    /// order, i.e. the `type` of the last object of the previous page (with `after_name`).
    pub after_type: Option<String>,
    /// Paging: the `name` of the last object of the previous page (with `after_type`).
    pub after_name: Option<String>,
}

/// Objects in (type, name) order.
#[utoipa::path(get, path = "/v1/objects", operation_id = "listObjects", tag = "objects", params(ObjectsQuery),
    responses((status = 200, body = ObjectList), (status = 401, body = ErrorBody), (status = 422, description = "Unknown type", body = ErrorBody)))]
pub async fn list_objects(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ObjectsQuery>,
) -> Result<Json<ObjectList>, ApiError> {
    let limit = q.limit.unwrap_or(LIST_OBJECTS_DEFAULT).min(LIST_OBJECTS_MAX);
    let after = match (q.after_type, q.after_name) {
        (Some(t), Some(n)) => Some((t, n)),
        (None, None) => None,
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "after_type and after_name go together (the last object of the previous page)",
            ));
        }
    };
    let objects = state
        .run(move |e| {
            let after = after.as_ref().map(|(t, n)| (t.as_str(), n.as_str()));
            e.store().list_after(q.type_name.as_deref(), after, limit)
        })
        .await?;
    Ok(Json(ObjectList { objects: objects.iter().map(ObjectBody::from).collect() }))
}

/// One object by type and uid or name.
#[utoipa::path(get, path = "/v1/objects/{type}/{key}", operation_id = "getObject", tag = "objects",
    params(("type" = String, Path, description = "Object type"), ("key" = String, Path, description = "Uid or name")),
    responses((status = 200, body = ObjectBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "Unknown object type", body = ErrorBody)))]
pub async fn get_object(
    State(state): State<AppState>,
    ApiPath((type_name, key)): ApiPath<(String, String)>,
) -> Result<Json<ObjectBody>, ApiError> {
    let o = state.run(move |e| e.store().get(&type_name, &key)).await?;
    Ok(Json(ObjectBody::from(&o)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RevisionsQuery {
    /// Only revisions older than this one.
    pub before: Option<u64>,
    /// At most this many (default 100, at most 10000).
    pub limit: Option<usize>,
}

/// Revision headers, newest first.
#[utoipa::path(get, path = "/v1/revisions", operation_id = "listRevisions", tag = "revisions", params(RevisionsQuery),
    responses((status = 200, body = RevisionList), (status = 401, body = ErrorBody)))]
pub async fn list_revisions(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RevisionsQuery>,
) -> Result<Json<RevisionList>, ApiError> {
    let limit = q.limit.unwrap_or(LIST_REVISIONS_DEFAULT).min(LIST_REVISIONS_MAX);
    let revs = state.run(move |e| e.store().revisions(q.before, limit)).await?;
    Ok(Json(RevisionList { revisions: revs.iter().map(RevisionInfoBody::from).collect() }))
}

/// One revision with its changes.
#[utoipa::path(get, path = "/v1/revisions/{seq}", operation_id = "getRevision", tag = "revisions",
    params(("seq" = u64, Path, description = "Revision number")),
    responses((status = 200, body = RevisionBody), (status = 401, body = ErrorBody), (status = 404, description = "Unknown or purged", body = ErrorBody)))]
pub async fn get_revision(
    State(state): State<AppState>,
    ApiPath(seq): ApiPath<u64>,
) -> Result<Json<RevisionBody>, ApiError> {
    Ok(Json(state.run(move |e| mgha_node::refs::revision(e, seq)).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    /// The revision to compare from (0 is the empty state).
    pub from: u64,
    /// The revision to compare to.
    pub to: u64,
}

/// Field-level differences between two revisions.
#[utoipa::path(get, path = "/v1/diff", operation_id = "diffRevisions", tag = "revisions", params(DiffQuery),
    responses((status = 200, body = DiffBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn diff(State(state): State<AppState>, ApiQuery(q): ApiQuery<DiffQuery>) -> Result<Json<DiffBody>, ApiError> {
    Ok(Json(state.run(move |e| mgha_node::refs::diff(e, q.from, q.to)).await?))
}

/// Publishes a revision that restores the state after revision `to`.
#[utoipa::path(post, path = "/v1/revert", operation_id = "revertToRevision", tag = "revisions", request_body = RevertRequest,
    params(("x-mgha-author" = Option<String>, Header, description = "Who reverts (default: admin)")),
    responses(
        (status = 201, description = "The new revision", body = RevisionInfoBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "Unknown or purged revision", body = ErrorBody),
        (status = 409, description = "An object the revert restores is locked by an admin session", body = ErrorBody),
        (status = 422, description = "Nothing to revert", body = ErrorBody),
        (status = 503, description = "This node is a read-only standby", body = ErrorBody)))]
pub async fn revert(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RevertRequest>,
) -> Result<(StatusCode, Json<RevisionInfoBody>), ApiError> {
    let author = author(&headers)?;
    let rev = state.run_publish(move |e| e.revert(&author, req.to)).await?;
    tracing::info!(seq = rev.seq, to = req.to, author = %rev.author, "reverted");
    Ok((StatusCode::CREATED, Json(RevisionInfoBody::from(&rev.info()))))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", operation_id = "getMetrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, body = ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), ApiError> {
    let s = state.status().await?;
    let mut text = state.metrics.render(&Gauges::of(&s));
    // The server's own metrics (not a domain's, `/v1/domains/{domain}/metrics`) add a row per
    // domain replica it holds.
    if let (Some(node), true) = (state.node.clone(), &*state.domain == mgha_node::domains::GLOBAL_DOMAIN) {
        let list = super::server::on_blocking_pool(move || Ok::<_, ApiError>(node.domains())).await?;
        // A store that serves no data (a damaged Standby's, quarantined until it heals) still
        // has its metrics, which say so; its domain rows come back once it reads again.
        if let Ok(list) = list {
            super::metrics::render_domains(&mut text, &list);
        }
    }
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text))
}
