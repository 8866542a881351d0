//! The archive of the node's data directory over the API: the stores a full sync replaced (a
//! diverged history's backup, a damaged store set aside), listed and browsed read-only. The
//! rules are the node library's (`mgha_node::archive`), which the CLI's `--offline` path calls too.

use axum::extract::State;
use axum::Json;
use mgha_core::limits::LIST_REVISIONS_MAX;
use mgha_node::archive::{self, Archive};

use super::errors::{ApiError, ApiPath, ApiQuery};
use super::routes::{DiffQuery, RevisionsQuery, LIST_REVISIONS_DEFAULT};
use super::server::AppState;
use crate::api::*;

/// Every archived store and backup of this node, oldest first: why it was kept, when, and its
/// head, floor and revision count.
#[utoipa::path(get, path = "/v1/archive", operation_id = "listArchives", tag = "archive",
    responses((status = 200, body = ArchiveList), (status = 401, body = ErrorBody)))]
pub async fn list_archives(State(state): State<AppState>) -> Result<Json<ArchiveList>, ApiError> {
    Ok(Json(state.run(|e| archive::list(e.dir())).await?))
}

/// An archive's revision headers, newest first. The archive is verified as it is opened (a
/// backup end to end; a damaged store record by record as it is read).
#[utoipa::path(get, path = "/v1/archive/{name}/revisions", operation_id = "listArchiveRevisions", tag = "archive",
    params(("name" = String, Path, description = "The archive's file name, as listed"), RevisionsQuery),
    responses((status = 200, body = RevisionList), (status = 401, body = ErrorBody),
        (status = 404, description = "No such archive", body = ErrorBody),
        (status = 500, description = "The archive is damaged (code `corrupt`, naming the record)", body = ErrorBody)))]
pub async fn list_revisions(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<RevisionsQuery>,
) -> Result<Json<RevisionList>, ApiError> {
    let limit = q.limit.unwrap_or(LIST_REVISIONS_DEFAULT).min(LIST_REVISIONS_MAX);
    Ok(Json(state.run(move |e| Archive::open(e.dir(), &name)?.revisions(q.before, limit)).await?))
}

/// One revision of an archive, with its changes.
#[utoipa::path(get, path = "/v1/archive/{name}/revisions/{seq}", operation_id = "getArchiveRevision", tag = "archive",
    params(("name" = String, Path, description = "The archive's file name, as listed"),
        ("seq" = u64, Path, description = "Revision number")),
    responses((status = 200, body = RevisionBody), (status = 401, body = ErrorBody),
        (status = 404, description = "No such archive, or a revision it does not hold", body = ErrorBody),
        (status = 500, description = "The archive is damaged (code `corrupt`, naming the record)", body = ErrorBody)))]
pub async fn get_revision(
    State(state): State<AppState>,
    ApiPath((name, seq)): ApiPath<(String, u64)>,
) -> Result<Json<RevisionBody>, ApiError> {
    Ok(Json(state.run(move |e| Archive::open(e.dir(), &name)?.revision(seq)).await?))
}

/// Field-level differences between two revisions of an archive.
#[utoipa::path(get, path = "/v1/archive/{name}/diff", operation_id = "diffArchiveRevisions", tag = "archive",
    params(("name" = String, Path, description = "The archive's file name, as listed"), DiffQuery),
    responses((status = 200, body = DiffBody), (status = 401, body = ErrorBody),
        (status = 404, description = "No such archive, or a revision it does not hold", body = ErrorBody),
        (status = 500, description = "The archive is damaged (code `corrupt`, naming the record)", body = ErrorBody)))]
pub async fn diff(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> Result<Json<DiffBody>, ApiError> {
    Ok(Json(state.run(move |e| Archive::open(e.dir(), &name)?.diff(q.from, q.to)).await?))
}
