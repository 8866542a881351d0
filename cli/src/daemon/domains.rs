//! The cluster's domains over the API: list, create, delete, move a replica, rebalance (the
//! node library's rules, `mgha_node::Node`), and every `/v1/…` route of one domain under
//! `/v1/domains/{domain}/…`, served by the same handlers on that domain's engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use mgha_core::{Engine, ErrorCode};
use mgha_node::domains::GLOBAL_DOMAIN;
use mgha_node::Node;
use serde::Deserialize;
use tower::ServiceExt;
use utoipa::IntoParams;

use super::errors::{ApiError, ApiJson, ApiPath, ApiQuery};
use super::server::{on_blocking_pool, AppState};
use crate::api::*;

/// The node behind the state, or the refusal of a daemon serving an engine alone (the handler
/// tests), which has no domains but the one it serves.
fn node_of(state: &AppState) -> Result<Arc<Node>, ApiError> {
    state
        .node
        .clone()
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidArgument, "this daemon serves one engine, without domains"))
}

/// Every domain of the cluster, the global one first, as this server sees it.
#[utoipa::path(get, path = "/v1/domains", operation_id = "listDomains", tag = "domains",
    responses((status = 200, body = DomainList), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<DomainList>, ApiError> {
    let node = node_of(&state)?;
    Ok(Json(on_blocking_pool(move || node.domains()).await?))
}

/// Creates a domain, on the global domain's Active.
#[utoipa::path(post, path = "/v1/domains", operation_id = "createDomain", tag = "domains", request_body = DomainCreateBody,
    responses(
        (status = 201, description = "The new domain", body = DomainBody),
        (status = 400, description = "A bad name, or replicas that cannot be placed", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "A server named in `on` is not a member of the cluster", body = ErrorBody),
        (status = 409, description = "A domain of that name exists, or the servers cannot take it (too few \
            healthy, the first not connected)", body = ErrorBody),
        (status = 503, description = "This server is not the global domain's Active", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<DomainCreateBody>,
) -> Result<(StatusCode, Json<DomainBody>), ApiError> {
    let node = node_of(&state)?;
    let author = super::routes::author(&headers)?;
    let created = node.create_domain(body, Some(&author)).await?;
    tracing::info!(domain = %created.name, replicas = ?created.replicas, "domain created");
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Delete a domain that holds objects (a backup of this server's replica is written first).
    #[serde(default)]
    pub force: bool,
}

/// Deletes a domain, on the global domain's Active. Every server archives its replica's store.
#[utoipa::path(delete, path = "/v1/domains/{domain}", operation_id = "deleteDomain", tag = "domains",
    params(("domain" = String, Path, description = "The domain's name"), DeleteQuery),
    responses(
        (status = 200, description = "Deleted", body = DomainDeletedBody),
        (status = 400, description = "The global domain", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such domain", body = ErrorBody),
        (status = 409, description = "It holds objects, or this server cannot tell, and `force` was not given", body = ErrorBody),
        (status = 503, description = "This server is not the global domain's Active", body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<Json<DomainDeletedBody>, ApiError> {
    let node = node_of(&state)?;
    let deleted = node.delete_domain(&name, q.force).await?;
    tracing::warn!(domain = %name, backup = ?deleted.backup, "domain deleted");
    Ok(Json(deleted))
}

/// Moves a domain's replica from one server to another, on the global domain's Active: the new
/// server gets a full sync of that domain only.
#[utoipa::path(post, path = "/v1/domains/{domain}/move", operation_id = "moveDomainReplica", tag = "domains",
    params(("domain" = String, Path, description = "The domain's name")), request_body = DomainMoveBody,
    responses(
        (status = 200, description = "The domain, with its new replicas", body = DomainBody),
        (status = 400, description = "A server that is not a member, holds a replica already, holds none, or \
            holds the domain's Active", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such domain", body = ErrorBody),
        (status = 503, description = "This server is not the global domain's Active", body = ErrorBody)))]
pub async fn move_replica(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<DomainMoveBody>,
) -> Result<Json<DomainBody>, ApiError> {
    let node = node_of(&state)?;
    Ok(Json(node.move_replica(&name, &body.from, &body.to).await?))
}

/// Sets how many of its newest revisions a domain keeps, on the global domain's Active. Every
/// server applies it to its replica; an Active keeping fewer than before purges at once.
#[utoipa::path(post, path = "/v1/domains/{domain}/retention", operation_id = "setDomainRetention", tag = "domains",
    params(("domain" = String, Path, description = "The domain's name")), request_body = DomainRetentionBody,
    responses(
        (status = 200, description = "The domain, with its retention", body = DomainBody),
        (status = 400, description = "The global domain, or a retention of 0", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such domain", body = ErrorBody),
        (status = 503, description = "This server is not the global domain's Active", body = ErrorBody)))]
pub async fn set_retention(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<DomainRetentionBody>,
) -> Result<Json<DomainBody>, ApiError> {
    let node = node_of(&state)?;
    Ok(Json(node.set_domain_retention(&name, body).await?))
}

/// Spreads the domains' Actives evenly over the healthy servers by planned changeovers.
#[utoipa::path(post, path = "/v1/rebalance", operation_id = "rebalanceDomains", tag = "domains",
    responses((status = 200, description = "Each planned changeover and how it went", body = RebalanceBody),
        (status = 401, body = ErrorBody)))]
pub async fn rebalance(State(state): State<AppState>) -> Result<Json<RebalanceBody>, ApiError> {
    let node = node_of(&state)?;
    Ok(Json(node.rebalance().await?))
}

/// The routers of the domains served so far, each with the engine it was built for: a domain
/// deleted and created again gets a router of its own.
#[derive(Default)]
pub struct Scoped {
    routers: Mutex<HashMap<String, (Arc<Engine>, Router)>>,
}

/// `/v1/domains/{domain}/{*rest}`: the route `/v1/{rest}` (or `/metrics`) of that domain.
pub async fn scoped(
    State(state): State<AppState>,
    axum::extract::Path((domain, _)): axum::extract::Path<(String, String)>,
    req: Request,
) -> Response {
    match route_scoped(state, domain, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route_scoped(state: AppState, domain: String, req: Request) -> Result<Response, ApiError> {
    let node = node_of(&state)?;
    let (mut parts, body) = req.into_parts();
    // The rest of the path as sent (still percent-encoded): `/v1/domains/{domain}/` is four
    // slashes deep.
    let path = parts.uri.path().to_string();
    let rest = path.splitn(5, '/').nth(4).unwrap_or_default();
    let target = if rest == "metrics" { "/metrics".to_string() } else { format!("/v1/{rest}") };
    let uri = match parts.uri.query() {
        Some(q) => format!("{target}?{q}"),
        None => target,
    };
    parts.uri = uri.parse::<Uri>().map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("{path}: {e}")))?;
    let router = if domain == GLOBAL_DOMAIN {
        super::server::api_router(state.clone())
    } else {
        let n = node.clone();
        let name = domain.clone();
        let engine = on_blocking_pool(move || n.domain(&name)).await?;
        let mut routers = state.scoped.routers.lock().unwrap_or_else(|p| p.into_inner());
        match routers.get(&domain).filter(|(e, _)| Arc::ptr_eq(e, &engine)) {
            Some((_, r)) => r.clone(),
            None => {
                let r = super::server::api_router(state.for_domain(&domain, engine.clone()));
                routers.insert(domain.clone(), (engine, r.clone()));
                r
            }
        }
    };
    // A request of its own: the outer route's path parameters (in its extensions) must not
    // reach the domain's handlers, which read their own.
    let mut inner = Request::new(body);
    *inner.method_mut() = parts.method;
    *inner.uri_mut() = parts.uri;
    *inner.version_mut() = parts.version;
    *inner.headers_mut() = parts.headers;
    Ok(router.oneshot(inner).await.unwrap_or_else(|e| match e {}))
}
