//! Cluster administration over the API: issuing one-time join keys. It lives in the daemon
//! because a running daemon holds the store's lock; `mgha join-key` on a stopped node calls
//! [`issue`] directly, so both ways share the checks.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use mgha_core::engine::Engine;

use super::errors::{ApiError, ApiJson};
use super::server::AppState;
use crate::api::*;

/// Validity of a join key when the request names none.
pub const JOIN_KEY_TTL_MS_DEFAULT: u64 = 3_600_000;
/// Longest validity of a join key: whoever holds an unused key can join, so keys are short-lived.
pub const JOIN_KEY_TTL_MS_MAX: u64 = 30 * 86_400_000;

/// Issues a join key valid for `ttl_ms` on the node of `engine` (it must hold the cluster CA).
pub fn issue(engine: &Engine, ttl_ms: u64) -> mgha_core::Result<JoinKeyBody> {
    if ttl_ms == 0 || ttl_ms > JOIN_KEY_TTL_MS_MAX {
        return Err(mgha_core::Error::InvalidArgument(format!(
            "expires_ms: {ttl_ms} is outside 1..={JOIN_KEY_TTL_MS_MAX} (30 days)"
        )));
    }
    let issued_ms = mgha_core::now_ms();
    let key = mgha_core::cluster::issue_join_key(engine, ttl_ms)?;
    Ok(JoinKeyBody { key: key.to_string(), expires_ms: ttl_ms, expires_at_ms: issued_ms.saturating_add(ttl_ms) })
}

/// Issues a one-time join key. Only a node holding the cluster CA key (the Primary) can.
#[utoipa::path(post, path = "/v1/join-keys", tag = "cluster", request_body = JoinKeyRequest,
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

#[cfg(test)]
mod tests {
    use super::*;
    use mgha_core::engine::EngineOptions;

    #[test]
    fn keys_are_issued_on_the_primary_only_and_within_limits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine =
            mgha_core::cluster::init_primary(dir.path(), "a", "127.0.0.1:1", EngineOptions::default()).expect("init");
        let body = issue(&engine, 60_000).expect("issued");
        assert!(body.key.starts_with("mgha1."), "{}", body.key);
        assert_eq!(body.expires_ms, 60_000);
        assert!(body.expires_at_ms > mgha_core::now_ms());
        assert!(issue(&engine, 0).is_err());
        assert!(issue(&engine, JOIN_KEY_TTL_MS_MAX + 1).is_err());

        let plain = tempfile::tempdir().expect("tempdir");
        let node = mgha_core::NodeState::new_primary("p");
        let engine = Engine::create(plain.path(), &node, EngineOptions::default()).expect("create");
        let e = issue(&engine, 60_000).expect_err("no CA here");
        assert!(e.to_string().contains("cluster CA"), "{e}");
    }
}
