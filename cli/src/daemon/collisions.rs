//! Collision branches over the API: list them, diff one against the Active's history, resolve
//! one (keep the Active's state, take the branch's, or merge). The functions below do the work
//! for the routes and for `mgha collision` on a stopped node alike, so both answer the same.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use mgha_core::collision::ResolveHow;
use mgha_core::merge::{Resolution, ResolutionFile, Side};
use mgha_core::{Engine, Error};

use super::errors::{ApiError, ApiJson, ApiPath};
use super::server::AppState;
use crate::api::*;

/// Every collision branch of the node of `engine`, resolved ones included, oldest first.
pub fn list(engine: &Engine) -> mgha_core::Result<CollisionList> {
    Ok(CollisionList { collisions: engine.collisions()?.iter().map(CollisionBody::from).collect() })
}

/// What branch `id` and the Active each changed since the fork, and the conflicts of a merge.
pub fn diff(engine: &Engine, id: u64) -> mgha_core::Result<CollisionDiffBody> {
    mgha_node::refs::collision_diff(engine, id)
}

/// Resolves branch `id` as `req` asks; returns what was published.
pub fn resolve(engine: &Engine, id: u64, req: &ResolveRequest, author: &str) -> mgha_core::Result<ResolvedBody> {
    let (how, name) = resolve_how(req)?;
    let resolved = engine.resolve_collision(id, how, author)?;
    let revision = match resolved.seq {
        Some(seq) => Some(RevisionInfoBody::from(&engine.store().revision(seq)?.info())),
        None => None,
    };
    Ok(ResolvedBody::new(&resolved, name, revision))
}

/// Whether resolving as `req` asks may publish a revision (keeping the Active's state never does).
pub fn may_publish(req: &ResolveRequest) -> bool {
    req.keep != Some(SideBody::Active)
}

/// The core's resolution for a request, and its name: exactly one of `keep` and `merge`; a merge
/// settles conflicts by `prefer`, by a resolution file, or by both (`prefer` stands for the file's
/// default when it names none).
fn resolve_how(req: &ResolveRequest) -> mgha_core::Result<(ResolveHow, &'static str)> {
    match (req.keep, &req.merge) {
        (Some(SideBody::Active), None) => Ok((ResolveHow::KeepActive, "kept-active")),
        (Some(SideBody::Branch), None) => Ok((ResolveHow::KeepBranch, "took-branch")),
        (None, Some(m)) => Ok((ResolveHow::Merge(merge_resolution(m)?), "merged")),
        _ => {
            Err(Error::InvalidArgument("give either {\"keep\": \"active\" | \"branch\"} or {\"merge\": {...}}".into()))
        }
    }
}

fn merge_resolution(m: &MergeRequest) -> mgha_core::Result<Resolution> {
    let prefer = m.prefer.map(Side::from);
    let Some(text) = &m.resolutions else {
        // Without a file, a merge that leaves conflicts fails listing them.
        return Ok(prefer.map_or_else(|| Resolution::Explicit(ResolutionFile::default()), Resolution::Prefer));
    };
    let mut file = ResolutionFile::from_json(&text.to_string())
        .map_err(|e| Error::InvalidArgument(format!("resolutions: {e}")))?;
    match (file.default, prefer) {
        (None, p) => file.default = p,
        (Some(d), Some(p)) if d != p => {
            return Err(Error::InvalidArgument(format!(
                "the resolution file's default side is {}, but prefer says {}",
                side_name(d),
                side_name(p)
            )))
        }
        _ => {}
    }
    Ok(Resolution::Explicit(file))
}

fn side_name(s: Side) -> &'static str {
    match s {
        Side::Active => "active",
        Side::Branch => "branch",
    }
}

/// Every collision branch this node keeps, resolved ones included.
#[utoipa::path(get, path = "/v1/collisions", operation_id = "listCollisions", tag = "roles",
    responses((status = 200, body = CollisionList), (status = 401, body = ErrorBody)))]
pub async fn list_collisions(State(state): State<AppState>) -> Result<Json<CollisionList>, ApiError> {
    Ok(Json(state.run(list).await?))
}

/// Field-level changes of the branch and of the Active since the fork, and a merge's conflicts.
#[utoipa::path(get, path = "/v1/collisions/{id}/diff", operation_id = "diffCollision", tag = "roles",
    params(("id" = u64, Path, description = "Branch id")),
    responses((status = 200, body = CollisionDiffBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn diff_collision(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<CollisionDiffBody>, ApiError> {
    Ok(Json(state.run(move |e| diff(e, id)).await?))
}

/// Resolves a branch. Taking the branch or merging publishes one revision (on the Active only),
/// which replicates like any other; every way keeps the branch on record.
#[utoipa::path(post, path = "/v1/collisions/{id}/resolve", operation_id = "resolveCollision", tag = "roles",
    params(("id" = u64, Path, description = "Branch id"),
        ("x-mgha-author" = Option<String>, Header, description = "Who resolves (default: admin)")),
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "Resolved; the revision published, if any", body = ResolvedBody),
        (status = 400, description = "A malformed request or resolution file, an already resolved branch, \
            or conflicts left unresolved (listed)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "The result does not validate; nothing was published", body = ErrorBody),
        (status = 503, description = "This node is a read-only standby", body = ErrorBody)))]
pub async fn resolve_collision(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ResolveRequest>,
) -> Result<Json<ResolvedBody>, ApiError> {
    let author = super::routes::author(&headers)?;
    let body = if may_publish(&req) {
        state.run_publish(move |e| resolve(e, id, &req, &author)).await?
    } else {
        state.run(move |e| resolve(e, id, &req, &author)).await?
    };
    tracing::info!(branch = id, how = %body.how, seq = ?body.revision.as_ref().map(|r| r.seq), "collision resolved");
    Ok(Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> ResolveRequest {
        serde_json::from_str(json).expect("request")
    }

    #[test]
    fn requests_map_to_resolutions() {
        let how = |json: &str| resolve_how(&request(json)).map(|(h, n)| (format!("{h:?}"), n));
        assert_eq!(how(r#"{"keep": "active"}"#).expect("keep").1, "kept-active");
        assert_eq!(how(r#"{"keep": "branch"}"#).expect("keep").1, "took-branch");
        let (h, _) = how(r#"{"merge": {"prefer": "branch"}}"#).expect("merge");
        assert!(h.contains("Prefer(Branch)"), "{h}");
        let (h, _) = how(r#"{"merge": {}}"#).expect("merge");
        assert!(h.contains("Explicit"), "{h}");
        let (h, _) = how(r#"{"merge": {"prefer": "active", "resolutions": {"objects": []}}}"#).expect("merge");
        assert!(h.contains("default: Some(Active)"), "{h}");
        for bad in [
            r#"{}"#,
            r#"{"keep": "active", "merge": {}}"#,
            r#"{"merge": {"prefer": "active", "resolutions": {"default": "branch"}}}"#,
            r#"{"merge": {"resolutions": {"defaults": "branch"}}}"#,
        ] {
            assert!(resolve_how(&request(bad)).is_err(), "{bad}");
        }
        assert!(!may_publish(&request(r#"{"keep": "active"}"#)));
        assert!(may_publish(&request(r#"{"merge": {}}"#)));
    }
}
