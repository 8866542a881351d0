//! Roles over the API: planned and forced changeover (through the sync runtime, which holds the
//! peer connections a changeover needs), promotion of a Secondary to Primary, and the daemon's
//! log of role, sync status and collision events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use mgha_core::{ChangeoverError, Engine, Error, ErrorCode, Uid};
use mgha_sync::state::NodeEvent;
use mgha_sync::SyncStatus;
use tokio::sync::broadcast;

use super::errors::{ApiError, ApiJson};
use super::metrics::Metrics;
use super::server::AppState;
use crate::api::*;
use crate::output::epoch;

/// Hands the Active role over: to the member `to` (planned: asked on any node, a Standby
/// forwards it to the Active), or to this Standby at once (`force`).
#[utoipa::path(post, path = "/v1/changeover", operation_id = "runChangeover", tag = "roles", request_body = ChangeoverRequest,
    responses(
        (status = 200, description = "Done: the new Active and its epoch", body = ChangeoverBody),
        (status = 400, description = "Neither or both of `to` and `force`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "Refused (the message says which): no such member, the target already \
            active, not connected or not caught up in time, its takeover not confirmed in time, superseded by \
            another node, refused by the arbiter, or this node runs without peers", body = ErrorBody),
        (status = 503, description = "A changeover is already running on this daemon or on the Active",
            body = ErrorBody)))]
pub async fn changeover(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ChangeoverRequest>,
) -> Result<Json<ChangeoverBody>, ApiError> {
    let target = match (req.to, req.force) {
        (Some(to), false) => Some(to),
        (None, true) => None,
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "give either {\"to\": NAME} (planned) or {\"force\": true} (forced)",
            ))
        }
    };
    // Without a node around the engine (the handler tests), there are no peers to change over with.
    let Some(node) = state.node.clone() else {
        return Err(mgha_node::Error::from(Error::Changeover(ChangeoverError::NoPeers)).into());
    };
    let me = state.run(|e| e.node()).await?.name;
    let started = Instant::now();
    let done = match target {
        Some(to) => node.changeover_in(&state.domain, &to).await.map(|e| (to, e)),
        None => node.force_changeover_in(&state.domain).await.map(|e| (me, e)),
    };
    state.metrics.changeover(req.force, done.is_ok());
    let (active, epoch_now) = done?;
    let took_ms = started.elapsed().as_millis() as u64;
    tracing::info!(active = %active, epoch = %epoch(epoch_now), forced = req.force, took_ms, "changeover done");
    Ok(Json(ChangeoverBody { active, epoch: epoch_now, forced: req.force, took_ms }))
}

/// Makes this Secondary the Primary, when the Primary is lost for good (docs/roles.md). It
/// needs the cluster CA key, which members receive from the Active.
#[utoipa::path(post, path = "/v1/promote", operation_id = "promoteToPrimary", tag = "roles",
    responses(
        (status = 200, description = "The node, now Primary", body = NodeBody),
        (status = 400, description = "Already the Primary, or the CA key has not arrived yet", body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn promote(State(state): State<AppState>) -> Result<Json<NodeBody>, ApiError> {
    Ok(Json(state.run(promote_node).await?))
}

/// Promotes the node of `engine` and returns it; the daemon's route and `mgha promote` on a
/// stopped node share it.
pub fn promote_node(engine: &Engine) -> mgha_core::Result<NodeBody> {
    mgha_sync::cluster::promote_to_primary(engine)?;
    Ok(NodeBody::from(&engine.node()?))
}

/// Logs what the engine reports, until the channel closes: peer sync status changes (warn for
/// a collision), and new collision branches at warn with what to do about them. Role changes
/// are logged by the core itself ("role changed", "stepped down"), so not again here.
/// Role changes are also counted in `metrics`.
pub async fn log_events(mut events: broadcast::Receiver<NodeEvent>, metrics: Arc<Metrics>) {
    let mut last: BTreeMap<Uid, SyncStatus> = BTreeMap::new();
    loop {
        match events.recv().await {
            Ok(event) => {
                if let NodeEvent::RoleChanged { role, .. } = &event {
                    metrics.role_change(&role.to_string());
                }
                log_event(&event, &mut last)
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "the event log fell behind; some peer status changes were not logged");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Whether a status change is routine: a connected peer going from synchronized to lagging and
/// back happens with every publish, so it is logged at debug only.
fn routine(before: Option<SyncStatus>, after: SyncStatus) -> bool {
    let streaming = |s: SyncStatus| matches!(s, SyncStatus::Synchronized | SyncStatus::Lagging);
    before.is_some_and(streaming) && streaming(after)
}

fn log_event(event: &NodeEvent, last: &mut BTreeMap<Uid, SyncStatus>) {
    match event {
        NodeEvent::SyncStatusChanged { peer, name, status } => {
            let before = last.insert(*peer, *status);
            match status {
                SyncStatus::Collision => {
                    tracing::warn!(peer = %name, status = %status, "peer sync status changed: histories diverged")
                }
                s if routine(before, *s) => tracing::debug!(peer = %name, status = %s, "peer sync status changed"),
                s => tracing::info!(peer = %name, status = %s, "peer sync status changed"),
            }
        }
        NodeEvent::Collision { branch, peer, revisions } => {
            tracing::warn!(
                branch,
                peer = %peer,
                revisions,
                "collision branch open: review it with `mgha collision show` and `mgha collision diff {branch}`, \
                 settle it with `mgha collision resolve {branch}`"
            );
        }
        NodeEvent::RoleChanged { role, epoch: e } => {
            tracing::debug!(role = %role, epoch = %epoch(*e), "role event");
        }
    }
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

    async fn post(app: &axum::Router, uri: &str, body: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method("POST")
            .uri(uri)
            .header("authorization", "Bearer t")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[test]
    fn only_synchronized_and_lagging_flips_are_routine() {
        use mgha_sync::SyncStatus::*;
        assert!(super::routine(Some(Synchronized), Lagging));
        assert!(super::routine(Some(Lagging), Synchronized));
        assert!(!super::routine(None, Synchronized), "the first status of a peer is news");
        assert!(!super::routine(Some(Unreachable), Lagging));
        assert!(!super::routine(Some(Synchronized), Unreachable));
        assert!(!super::routine(Some(Lagging), Collision));
    }

    #[tokio::test]
    async fn changeover_needs_one_way_and_a_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = mgha_sync::create_engine(dir.path(), &NodeState::new_primary("n"), EngineOptions::default())
            .expect("create");
        let app = router(AppState::new(Arc::new(engine), "t"));
        for body in [r#"{}"#, r#"{"to": "b", "force": true}"#, r#"{"to": "b", "extra": 1}"#] {
            let (s, e) = post(&app, "/v1/changeover", body).await;
            assert_eq!((s, &e["error"]["code"]), (StatusCode::BAD_REQUEST, &"invalid-argument".into()), "{body}");
        }
        let (s, e) = post(&app, "/v1/changeover", r#"{"to": "b"}"#).await;
        assert_eq!(s, StatusCode::CONFLICT, "{e}");
        assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("without peers")), "{e}");
        let (s, e) = post(&app, "/v1/promote", "").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    }
}
