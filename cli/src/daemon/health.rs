//! Health probes for load balancers and monitors, as Patroni has them: `GET /health` (the node
//! runs and its store answers), `GET /active` and `GET /standby` (it does, in that role). They
//! answer 200 or 503 without a token, so their body holds nothing but the role and the health:
//! no name, head, peer or configuration detail. They are served on the admin address and, with
//! `health_listen` in mgha.toml, on a listener of their own that may face the network.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use mgha_core::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::server::AppState;

/// What a probe answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthBody {
    /// `active` or `standby`.
    pub role: String,
    /// The store answered a read just now.
    pub healthy: bool,
}

/// The role, and whether the store answers a read (on the blocking pool, as every engine call).
async fn probe(state: &AppState) -> (Role, bool) {
    let (role, _) = state.engine.role();
    let healthy = state.run(|e| e.node()).await.is_ok();
    (role, healthy)
}

fn answer(ok: bool, role: Role, healthy: bool) -> (StatusCode, Json<HealthBody>) {
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(HealthBody { role: role.to_string(), healthy }))
}

/// 200 while the node runs and its store answers, whatever its role.
#[utoipa::path(get, path = "/health", operation_id = "probeHealth", tag = "operations",
    responses((status = 200, description = "Running", body = HealthBody),
        (status = 503, description = "The store does not answer", body = HealthBody)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthBody>) {
    let (role, healthy) = probe(&state).await;
    answer(healthy, role, healthy)
}

/// 200 on the healthy Active (where publishes go), 503 elsewhere.
#[utoipa::path(get, path = "/active", operation_id = "probeActive", tag = "operations",
    responses((status = 200, description = "This node is the Active", body = HealthBody),
        (status = 503, description = "A Standby, or unhealthy", body = HealthBody)))]
pub async fn active(State(state): State<AppState>) -> (StatusCode, Json<HealthBody>) {
    let (role, healthy) = probe(&state).await;
    answer(healthy && role == Role::Active, role, healthy)
}

/// 200 on a healthy Standby (for read-only traffic), 503 elsewhere.
#[utoipa::path(get, path = "/standby", operation_id = "probeStandby", tag = "operations",
    responses((status = 200, description = "This node is a Standby", body = HealthBody),
        (status = 503, description = "The Active, or unhealthy", body = HealthBody)))]
pub async fn standby(State(state): State<AppState>) -> (StatusCode, Json<HealthBody>) {
    let (role, healthy) = probe(&state).await;
    answer(healthy && role == Role::Standby, role, healthy)
}
