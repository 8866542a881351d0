//! Cluster administration over the API: issuing one-time join keys. It lives in the daemon
//! because a running daemon holds the store's lock; `mgha join-key` on a stopped node calls
//! [`issue`] directly, so both ways share the checks.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::errors::{ApiError, ApiJson};
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
