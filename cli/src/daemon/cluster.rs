//! Cluster administration over the API: issuing one-time join keys and removing members. It
//! lives in the daemon because a running daemon holds the store's lock; `mgha join-key` and
//! `mgha member remove` on a stopped node call the node's rules directly, so both ways share
//! the checks.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::errors::{ApiError, ApiJson, ApiPath};
use super::server::AppState;
use crate::api::*;

pub use mgha_node::node::{issue_join_key as issue, JOIN_KEY_TTL_MS_DEFAULT, JOIN_KEY_TTL_MS_MAX};

/// Issues a one-time join key. Only a node holding the cluster CA key (the Primary) can.
#[utoipa::path(post, path = "/v1/join-keys", operation_id = "createJoinKey", tag = "cluster", request_body = JoinKeyRequest,
    responses(
        (status = 201, description = "The key; it is shown once and valid once", body = JoinKeyBody),
        (status = 400, description = "This node does not hold the cluster CA key, a bad expiry, or too many keys outstanding", body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn create_join_key(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<JoinKeyRequest>,
) -> Result<(StatusCode, Json<JoinKeyBody>), ApiError> {
    let ttl_ms = req.expires_ms.unwrap_or(JOIN_KEY_TTL_MS_DEFAULT);
    let body = state.run(move |e| issue(e, ttl_ms)).await?;
    // The key itself is a secret: it is never logged.
    tracing::info!(expires_ms = ttl_ms, "join key issued");
    Ok((StatusCode::CREATED, Json(body)))
}

/// The current members this node knows (removed members are not), by name: every node ends
/// with the same list.
#[utoipa::path(get, path = "/v1/members", operation_id = "listMembers", tag = "cluster",
    responses((status = 200, body = MemberList), (status = 401, body = ErrorBody)))]
pub async fn list_members(State(state): State<AppState>) -> Result<Json<MemberList>, ApiError> {
    Ok(Json(state.run(MemberList::of).await?))
}

/// Removes a member from the cluster, on the Active: its certificate is refused from then on by
/// every node, and its name is free for a node that joins with a new key.
#[utoipa::path(delete, path = "/v1/members/{name}", operation_id = "removeMember", tag = "cluster",
    params(("name" = String, Path, description = "The member's name")),
    responses(
        (status = 200, description = "The member that was removed", body = MemberRemovedBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No current member has that name", body = ErrorBody),
        (status = 409, description = "The member named is this Active itself", body = ErrorBody),
        (status = 503, description = "This node is not the Active; remove members there", body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<MemberRemovedBody>, ApiError> {
    let body = match state.node.clone() {
        Some(node) => node.remove_member(&name).await?,
        // Without a node around the engine (the handler tests), the node's rule on the store.
        None => {
            let removed = state.run(move |e| mgha_node::node::remove_member(e, &name)).await?;
            MemberRemovedBody { name: removed.name, node_id: removed.node_id.to_string() }
        }
    };
    tracing::warn!(member = %body.name, node = %body.node_id, "member removed");
    Ok(Json(body))
}
