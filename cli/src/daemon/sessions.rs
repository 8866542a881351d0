//! Admin sessions over the API: open, stage changes one by one (each locks its object against
//! other sessions), look at what is staged, publish as one revision, or discard. Sessions live in
//! the daemon's memory: a restart discards them, as closing a management console would.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use mgha_core::{ChangeInput, ErrorCode};

use super::errors::{ApiError, ApiJson, ApiPath, RawBody};
use super::server::AppState;
use crate::api::*;

/// Opens a session for an author.
#[utoipa::path(post, path = "/v1/sessions", operation_id = "openSession", tag = "sessions", request_body = SessionOpenRequest,
    responses((status = 201, body = SessionCreated), (status = 401, body = ErrorBody),
        (status = 413, description = "Author name too long", body = ErrorBody),
        (status = 422, description = "Author holds a control or invisible character", body = ErrorBody),
        (status = 503, description = "Too many open sessions, or a read-only standby", body = ErrorBody)))]
pub async fn open(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SessionOpenRequest>,
) -> Result<(StatusCode, Json<SessionCreated>), ApiError> {
    if req.author.trim().is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidArgument, "author: empty"));
    }
    let id = state.run(move |e| e.session_open(&req.author)).await?;
    Ok((StatusCode::CREATED, Json(SessionCreated { id })))
}

/// The changes staged in a session.
#[utoipa::path(get, path = "/v1/sessions/{id}", operation_id = "getSession", tag = "sessions",
    params(("id" = u64, Path, description = "Session id")),
    responses((status = 200, body = SessionBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(State(state): State<AppState>, ApiPath(id): ApiPath<u64>) -> Result<Json<SessionBody>, ApiError> {
    let changes = state.run(move |e| e.session_changes(id)).await?;
    Ok(Json(SessionBody { id, changes: changes.iter().map(change_input_body).collect() }))
}

/// Stages one put or delete, locking its object.
#[utoipa::path(post, path = "/v1/sessions/{id}/changes", operation_id = "stageSessionChange", tag = "sessions",
    params(("id" = u64, Path, description = "Session id")),
    request_body = ChangeInputBody,
    responses((status = 204, description = "Staged"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Locked by another session", body = ErrorBody),
        (status = 413, description = "The object, or the session's staged objects or changes, over a limit", body = ErrorBody),
        (status = 422, description = "Unknown type", body = ErrorBody)))]
pub async fn stage(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    // The core's own type parses the change, so its strictness (unknown keys refused) holds here.
    let change = ChangeInput::from_json(&body)?;
    state.run(move |e| e.session_stage(id, change)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Publishes a session's changes as one revision and closes it. On a validation error the
/// session stays open so it can be fixed.
#[utoipa::path(post, path = "/v1/sessions/{id}/publish", operation_id = "publishSession", tag = "sessions",
    params(("id" = u64, Path, description = "Session id")),
    request_body(content = Option<SessionPublishRequest>, description = "The revision message (optional body)"),
    responses((status = 201, body = RevisionInfoBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "An object the session staged changed since it was staged", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, description = "This node is a read-only standby", body = ErrorBody)))]
pub async fn publish(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<RevisionInfoBody>), ApiError> {
    let req: SessionPublishRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SessionPublishRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("request body: {e}")))?
    };
    let rev = state.run_publish(move |e| e.session_publish(id, &req.message)).await?;
    tracing::info!(seq = rev.seq, session = id, author = %rev.author, "session published");
    Ok((StatusCode::CREATED, Json(RevisionInfoBody::from(&rev.info()))))
}

/// Discards a session's changes and releases its locks.
#[utoipa::path(delete, path = "/v1/sessions/{id}", operation_id = "discardSession", tag = "sessions",
    params(("id" = u64, Path, description = "Session id")),
    responses((status = 204, description = "Discarded"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn discard(State(state): State<AppState>, ApiPath(id): ApiPath<u64>) -> Result<StatusCode, ApiError> {
    state.run(move |e| e.session_discard(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::super::server::{router, AppState};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use mgha_core::engine::EngineOptions;
    use mgha_core::NodeState;
    use std::sync::Arc;
    use tower::ServiceExt;

    async fn call(app: &axum::Router, method: &str, uri: &str, body: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", "Bearer t0k")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn session_stages_locks_and_publishes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = mgha_sync::create_engine(dir.path(), &NodeState::new_primary("n"), EngineOptions::default())
            .expect("create");
        let app = router(AppState::new(Arc::new(engine), "t0k"));

        let (s, a) = call(&app, "POST", "/v1/sessions", r#"{"author": "alice"}"#).await;
        assert_eq!(s, StatusCode::CREATED, "{a}");
        let (_, b) = call(&app, "POST", "/v1/sessions", r#"{"author": "bob"}"#).await;
        let (a, b) = (a["id"].as_u64().expect("id"), b["id"].as_u64().expect("id"));

        let put = r#"{"op": "put", "type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.1"}}"#;
        let (s, _) = call(&app, "POST", &format!("/v1/sessions/{a}/changes"), put).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, e) = call(&app, "POST", &format!("/v1/sessions/{b}/changes"), put).await;
        assert_eq!(s, StatusCode::CONFLICT, "{e}");
        assert!(e["error"]["message"].as_str().unwrap_or("").contains("alice"), "{e}");

        let (s, shown) = call(&app, "GET", &format!("/v1/sessions/{a}"), "").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(shown["changes"][0]["name"], "web1");

        let (s, rev) = call(&app, "POST", &format!("/v1/sessions/{a}/publish"), r#"{"message": "web"}"#).await;
        assert_eq!(s, StatusCode::CREATED, "{rev}");
        assert_eq!(rev["seq"], 1);
        assert_eq!(rev["author"], "alice");

        let (s, _) = call(&app, "DELETE", &format!("/v1/sessions/{b}"), "").await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, e) = call(&app, "GET", &format!("/v1/sessions/{b}"), "").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(e["error"]["code"], "not-found");
    }
}
