//! Roles over the API: planned and forced changeover (through the sync runtime, which holds the
//! peer connections a changeover needs), promotion of a Secondary to Primary, and the daemon's
//! log of role, sync status and collision events.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use mgha_core::sync::state::NodeEvent;
use mgha_core::sync::{SyncRuntime, SyncStatus};
use mgha_core::{Engine, Error, ErrorCode, Role, Uid};
use tokio::sync::broadcast;

use super::errors::{ApiError, ApiJson};
use super::server::AppState;
use crate::api::*;
use crate::output::epoch;

/// Hands the Active role over: to the member `to` (planned: asked on any node, a Standby
/// forwards it to the Active), or to this Standby at once (`force`).
#[utoipa::path(post, path = "/v1/changeover", tag = "roles", request_body = ChangeoverRequest,
    responses(
        (status = 200, description = "Done: the new Active and its epoch", body = ChangeoverBody),
        (status = 400, description = "Neither or both of `to` and `force`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "Refused: no such member, target not connected or not caught up in time, \
            already the active, or this node runs without peers", body = ErrorBody),
        (status = 503, description = "This daemon is already running a changeover", body = ErrorBody)))]
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
    // Owned, so that a forced changeover (a durable write) can take it to the blocking pool.
    let runtime = state.sync.clone().read_owned().await;
    if runtime.is_none() {
        return Err(Error::Changeover(
            "this node runs without peers (no 'listen' in mgha.toml): there is no other node to change over to".into(),
        )
        .into());
    }
    let _slot = state.changeover_slot(target.as_deref().unwrap_or("this node"))?;
    let me = state.run(|e| e.node()).await?.name;
    let started = Instant::now();
    let (active, epoch_now) = match target {
        Some(to) => {
            let Some(rt) = runtime.as_ref() else { return Err(ApiError::internal("the sync runtime stopped")) };
            let e = planned(&state, rt, &me, &to).await?;
            (to, e)
        }
        None => {
            let forced = tokio::task::spawn_blocking(move || runtime.as_ref().map(SyncRuntime::force_changeover));
            let e = forced.await.map_err(|e| ApiError::internal(format!("changeover task failed: {e}")))?;
            (me, e.ok_or_else(|| ApiError::internal("the sync runtime stopped"))??)
        }
    };
    let took_ms = started.elapsed().as_millis() as u64;
    tracing::info!(active = %active, epoch = %epoch(epoch_now), forced = req.force, took_ms, "changeover done");
    Ok(Json(ChangeoverBody { active, epoch: epoch_now, forced: req.force, took_ms }))
}

/// The core's messages when a Standby cannot forward a changeover: it follows no Active at the
/// moment (nothing was sent), or the connection closed before the answer came.
const FORWARD_UNCONNECTED: &str = "this standby is not connected to an active";
const FORWARD_CLOSED: &str = "the connection to the active closed";

/// A planned changeover to `target`. Asked on a Standby, the core forwards it to the Active it
/// follows, which fails in two ways that say nothing about the changeover itself:
/// - right after an earlier changeover the Standby follows no Active for a moment (until it
///   has dialed the new one): nothing was sent, so it is tried again until the timeout;
/// - the Active closes the forwarding connection as soon as it has handed its role away, before
///   its answer goes out (to the target itself, or to a third node): so a forward that lost
///   its connection is checked against what happened, and if the target took over at a
///   higher epoch, the changeover is done.
async fn planned(state: &AppState, runtime: &SyncRuntime, me: &str, target: &str) -> mgha_core::Result<u64> {
    let (role, before) = state.engine.role();
    let deadline = Instant::now() + state.changeover_timeout;
    loop {
        match runtime.changeover(target).await {
            Err(Error::Changeover(reason))
                if role == Role::Standby && reason.contains(FORWARD_UNCONNECTED) && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(Error::Changeover(reason)) if role == Role::Standby && reason.contains(FORWARD_CLOSED) => {
                return match took_over(&state.engine, me == target, target, before, state.changeover_timeout).await {
                    Some(epoch) => Ok(epoch),
                    None => Err(Error::Changeover(reason)),
                };
            }
            done => return done,
        }
    }
}

/// The epoch at which `target` became Active after `before`, as this node sees it within
/// `within`: it is the target (`is_target`) and Active, or it follows the target at a higher
/// epoch. Role and followed Active are in memory: no store access on the async workers.
async fn took_over(engine: &Engine, is_target: bool, target: &str, before: u64, within: Duration) -> Option<u64> {
    let deadline = Instant::now() + within;
    loop {
        let (role, epoch) = engine.role();
        let followed = engine.sync().active_hint();
        if epoch > before
            && ((role == Role::Active && is_target) || (role == Role::Standby && followed.as_deref() == Some(target)))
        {
            return Some(epoch);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Makes this Secondary the Primary, when the Primary is lost for good (docs/roles.md). It
/// needs the cluster CA key, which members receive from the Active.
#[utoipa::path(post, path = "/v1/promote", tag = "roles",
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
    mgha_core::cluster::promote_to_primary(engine)?;
    Ok(NodeBody::from(&engine.node()?))
}

/// Logs what the engine reports, until the channel closes: peer sync status changes (warn for
/// a collision), and new collision branches at warn with what to do about them. Role changes
/// are logged by the core itself ("role changed", "stepped down"), so not again here.
pub async fn log_events(mut events: broadcast::Receiver<NodeEvent>) {
    let mut last: BTreeMap<Uid, SyncStatus> = BTreeMap::new();
    loop {
        match events.recv().await {
            Ok(event) => log_event(&event, &mut last),
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
    use mgha_core::engine::{Engine, EngineOptions};
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
        use mgha_core::sync::SyncStatus::*;
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
        let engine =
            Engine::create(dir.path(), &NodeState::new_primary("n"), EngineOptions::default()).expect("create");
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
