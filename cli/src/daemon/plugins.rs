//! WebAssembly plugins over the API (docs/plugin-abi.md): check a module without installing it,
//! install or upgrade one as a revision, list what is installed and whether this node runs it,
//! remove one as a revision. The bodies and functions here serve the routes and `mgha plugin` on
//! a stopped node (or, for `check`, without any node) alike, so every way answers the same.
//!
//! Modules travel as the raw request body (`application/wasm`), not as JSON: a module of the
//! size limit would be a third larger in base64, and the engine wants the bytes anyway.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use mgha_core::model::TypeSchema;
use mgha_core::plugin::limits::PLUGIN_MODULE_BYTES_MAX;
use mgha_core::plugin::{Plugin, PluginInfo, PluginLimits};
use mgha_core::{Engine, Error, ErrorCode, Revision};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::errors::{ApiError, ApiPath, RawBody};
use super::routes::author;
use super::server::AppState;
use crate::api::{ErrorBody, RevisionInfoBody};

/// What a plugin declares, and whether this node runs it: the mirror of the core's
/// `PluginInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginBody {
    #[schema(example = "vpn")]
    pub name: String,
    #[schema(example = "1.0.0")]
    pub version: String,
    /// blake3 of the module, 64 hex digits.
    pub hash: String,
    /// Size of the module in bytes; 0 when this node could not load it.
    pub module_bytes: usize,
    /// The names of the types it declares, sorted.
    #[schema(example = json!(["vpn.community"]))]
    pub type_names: Vec<String>,
    /// Their schemas (`TypeSchema` of docs/plugin-abi.md); empty when this node could not load it.
    #[schema(value_type = Vec<Object>)]
    pub types: Vec<TypeSchema>,
    /// The types it merges itself; the others merge field by field.
    pub merge: Vec<String>,
    /// The uid of the `plugin` object that installs it; absent for a module that was only checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Why this node could not load it; absent when it runs it (or the module was only checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/plugins`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginBody>,
}

impl From<&PluginInfo> for PluginBody {
    fn from(p: &PluginInfo) -> Self {
        PluginBody {
            name: p.name.clone(),
            version: p.version.clone(),
            hash: p.hash.to_hex(),
            module_bytes: p.module_bytes,
            type_names: p.type_names.clone(),
            types: p.types.clone(),
            merge: p.merge.clone(),
            uid: p.uid.map(|u| u.to_string()),
            error: p.error.clone(),
        }
    }
}

/// Refuses a module over the size limit before anything compiles it, as too large rather than
/// as a failed check: the answer is the same whatever the bytes are.
pub fn check_size(len: usize) -> mgha_core::Result<()> {
    if len > PLUGIN_MODULE_BYTES_MAX {
        return Err(Error::TooLarge { what: "plugin module".into(), size: len, max: PLUGIN_MODULE_BYTES_MAX });
    }
    Ok(())
}

/// Checks a module in this process, without any node, as install would: every node runs plugins
/// under the default limits, so the verdict is the one an install would get.
pub fn check_offline(wasm: &[u8]) -> mgha_core::Result<PluginBody> {
    check_size(wasm.len())?;
    let plugin = Plugin::load(wasm, PluginLimits::default())?;
    Ok(PluginBody::from(&PluginInfo::of(&plugin, None)))
}

/// Checks a module with the node's limits, installing nothing.
pub fn check(engine: &Engine, wasm: &[u8]) -> mgha_core::Result<PluginBody> {
    check_size(wasm.len())?;
    Ok(PluginBody::from(&engine.plugin_check(wasm)?))
}

/// Installs (or upgrades) a plugin as one revision.
pub fn install(engine: &Engine, author: &str, wasm: &[u8]) -> mgha_core::Result<Revision> {
    check_size(wasm.len())?;
    engine.plugin_install(author, wasm)
}

/// Every installed plugin, by name, with whether this node runs it.
pub fn list(engine: &Engine) -> mgha_core::Result<PluginList> {
    Ok(PluginList { plugins: engine.plugin_list()?.iter().map(PluginBody::from).collect() })
}

/// The answer to a refused removal. Deleting a `plugin` object fails validation only because of
/// what the store still holds (objects of its types, or references to it), so the request is
/// not wrong but in conflict with the current state: it succeeds once those are deleted.
pub fn removal_refused(e: ApiError) -> ApiError {
    if e.code == ErrorCode::Validation.as_str() {
        ApiError::new(ErrorCode::Conflict, e.message)
    } else {
        e
    }
}

/// Checks a module as install would, installing nothing: what it declares, or why it is refused.
#[utoipa::path(post, path = "/v1/plugin-check", operation_id = "checkPlugin", tag = "plugins",
    request_body(description = "The WebAssembly module, as raw bytes",
        content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 200, description = "The module passes every check; what it declares", body = PluginBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "Over the module size limit", body = ErrorBody),
        (status = 422, description = "Refused, with the reason (docs/plugin-abi.md, Checks at install)",
            body = ErrorBody)))]
pub async fn check_plugin(State(state): State<AppState>, RawBody(wasm): RawBody) -> Result<Json<PluginBody>, ApiError> {
    // Compiling and instantiating is CPU work: it runs on the blocking pool like engine calls.
    Ok(Json(state.run(move |e| check(e, &wasm)).await?))
}

/// Installs a plugin, or upgrades the installed plugin of the same name, as one revision that
/// carries the module to every node.
#[utoipa::path(post, path = "/v1/plugins", operation_id = "installPlugin", tag = "plugins",
    request_body(description = "The WebAssembly module, as raw bytes",
        content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream"))),
    params(("x-mgha-author" = Option<String>, Header, description = "Who installs (default: admin)")),
    responses(
        (status = 201, description = "The new revision", body = RevisionInfoBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "Over the module size limit", body = ErrorBody),
        (status = 422, description = "Refused at check, an upgrade that existing objects do not pass, the module \
            already installed, or too many plugins; nothing was published", body = ErrorBody),
        (status = 503, description = "This node is a read-only standby", body = ErrorBody)))]
pub async fn install_plugin(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(wasm): RawBody,
) -> Result<(StatusCode, Json<RevisionInfoBody>), ApiError> {
    let author = author(&headers)?;
    let rev = state.run_publish(move |e| install(e, &author, &wasm)).await?;
    tracing::info!(seq = rev.seq, message = %rev.message, author = %rev.author, "plugin installed");
    Ok((StatusCode::CREATED, Json(RevisionInfoBody::from(&rev.info()))))
}

/// Every installed plugin, with what it declares; one this node could not load carries the
/// reason in `error`.
#[utoipa::path(get, path = "/v1/plugins", operation_id = "listPlugins", tag = "plugins",
    responses((status = 200, body = PluginList), (status = 401, body = ErrorBody)))]
pub async fn list_plugins(State(state): State<AppState>) -> Result<Json<PluginList>, ApiError> {
    Ok(Json(state.run(list).await?))
}

/// Removes a plugin as one revision.
#[utoipa::path(delete, path = "/v1/plugins/{name}", operation_id = "removePlugin", tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name"),
        ("x-mgha-author" = Option<String>, Header, description = "Who removes (default: admin)")),
    responses(
        (status = 200, description = "The new revision", body = RevisionInfoBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such plugin is installed", body = ErrorBody),
        (status = 409, description = "Objects of its types remain (the message names a few); delete them first",
            body = ErrorBody),
        (status = 503, description = "This node is a read-only standby", body = ErrorBody)))]
pub async fn remove_plugin(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<RevisionInfoBody>, ApiError> {
    let author = author(&headers)?;
    let rev = state.run_publish(move |e| e.plugin_remove(&author, &name)).await.map_err(removal_refused)?;
    tracing::info!(seq = rev.seq, message = %rev.message, author = %rev.author, "plugin removed");
    Ok(Json(RevisionInfoBody::from(&rev.info())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use mgha_core::engine::EngineOptions;
    use mgha_core::NodeState;
    use tower::ServiceExt;

    use crate::daemon::server::router;

    /// A module that is valid WebAssembly but imports a function outside the host table.
    const IMPORTS_ENV: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
        0x02, 0x09, 0x01, 0x03, b'e', b'n', b'v', 0x01, b'f', 0x00, 0x00, // import env.f
    ];

    async fn call(app: &axum::Router, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", "Bearer tok")
            .header("content-type", "application/wasm")
            .body(Body::from(body))
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn refused_modules_answer_the_reason_and_nothing_is_published() {
        mgha_plugin_host::install();
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(
            mgha_sync::create_engine(dir.path(), &NodeState::new_primary("n"), EngineOptions::default())
                .expect("create"),
        );
        let app = router(AppState::new(engine.clone(), "tok"));
        for (uri, body) in [("/v1/plugin-check", b"not wasm".to_vec()), ("/v1/plugins", IMPORTS_ENV.to_vec())] {
            let (status, err) = call(&app, "POST", uri, body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {err}");
            assert_eq!(err["error"]["code"], "validation", "{err}");
            assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains(" check: ")), "{err}");
        }
        let (status, err) = call(&app, "POST", "/v1/plugins", vec![0; PLUGIN_MODULE_BYTES_MAX + 1]).await;
        assert_eq!((status, &err["error"]["code"]), (StatusCode::PAYLOAD_TOO_LARGE, &"too-large".into()));
        let (status, err) = call(&app, "DELETE", "/v1/plugins/vpn", Vec::new()).await;
        assert_eq!((status, &err["error"]["code"]), (StatusCode::NOT_FOUND, &"not-found".into()));
        let (status, list) = call(&app, "GET", "/v1/plugins", Vec::new()).await;
        assert_eq!((status, list), (StatusCode::OK, serde_json::json!({"plugins": []})));
        assert_eq!(engine.store().head().expect("head").seq, 0, "nothing was published");
    }

    #[test]
    fn a_removal_refused_for_what_remains_is_a_conflict() {
        let refused = ApiError::from(Error::Plugin {
            plugin: "vpn".into(),
            call: "remove".into(),
            reason: "objects of type 'vpn.community' remain: vpn.community 'corp'; delete them first".into(),
        });
        let e = removal_refused(refused);
        assert_eq!((e.status, e.code.as_str()), (StatusCode::CONFLICT, "conflict"));
        assert!(e.message.contains("vpn.community 'corp'"), "{}", e.message);
        let e = removal_refused(ApiError::from(Error::ReadOnly { active: Some("a".into()) }));
        assert_eq!(e.code, "read-only");
    }

    #[test]
    fn the_mirror_matches_the_core_json() {
        let info = PluginInfo {
            name: "vpn".into(),
            version: "1.0.0".into(),
            hash: mgha_core::Hash::of(b"module"),
            module_bytes: 6,
            type_names: vec!["vpn.community".into()],
            types: vec![serde_json::from_value(serde_json::json!({"name": "vpn.community", "fields": [
                {"name": "gateways", "kind": "list", "item": {"kind": "ref", "types": ["host"]}, "required": true,
                 "merge": "set-union"}]}))
            .expect("schema")],
            merge: vec!["vpn.community".into()],
            uid: Some(mgha_core::Uid(uuid::Uuid::from_u128(7))),
            error: Some("not loaded yet".into()),
        };
        let core = serde_json::to_value(&info).expect("core serializes");
        let parsed: PluginBody = serde_json::from_value(core.clone()).expect("core JSON parses as the mirror");
        assert_eq!(parsed, PluginBody::from(&info));
        assert_eq!(serde_json::to_value(&parsed).expect("mirror serializes"), core);
    }
}
