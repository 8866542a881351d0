//! `GET /v1/backup`: an online backup streamed to the client. A blocking task writes the backup
//! from one MVCC snapshot into a bounded channel that the response body drains, so publishes go
//! on meanwhile, memory stays at a few chunks whatever the database size, and a slow client
//! slows the writer instead of filling memory.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::errors::ApiError;
use super::server::AppState;
use crate::api::ErrorBody;

/// Bytes gathered before a chunk goes to the client.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks in flight between the writer and the client: the memory bound of one download.
const CHANNEL_CHUNKS: usize = 8;

/// Streams a consistent backup of the node (format: docs/storage.md).
#[utoipa::path(get, path = "/v1/backup", operation_id = "downloadBackup", tag = "operations",
    responses((status = 200, description = "The backup file, streamed", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 401, body = ErrorBody), (status = 500, description = "The backup could not start", body = ErrorBody)))]
pub async fn download(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (tx, mut rx) = mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        let store = engine.store();
        let mut out = ChannelWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK_BYTES), started: false };
        match mgha_core::backup::write_backup(&store, &mut out, &mut |_| {}) {
            Ok(summary) => tracing::info!(
                seq = summary.header.head.seq,
                objects = summary.header.objects,
                bytes = summary.bytes,
                "backup streamed"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "backup stopped");
                // Before the first bytes this becomes an error answer; after them, a failed body,
                // so the client sees a broken transfer instead of a short file that looks whole.
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    // The writer sends its first bytes only after it opened its snapshot: waiting for them makes
    // the backup the state as of this request, and lets a failure to start be a proper error.
    let first = match rx.recv().await {
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => return Err(e.into()),
        None => return Err(ApiError::internal("the backup writer stopped before writing anything")),
    };
    let rest = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let stream = futures_util::stream::iter([Ok(first)]).chain(rest);
    Ok((
        [(CONTENT_TYPE, "application/octet-stream"), (CONTENT_DISPOSITION, "attachment; filename=\"mgha.backup\"")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// What the writer hands to the response: bytes, or the error that stopped the backup.
type Chunk = Result<Bytes, mgha_core::Error>;

/// A `Write` that hands full chunks to the response body. When the client goes away the
/// channel closes and the next write fails, which stops the backup.
struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
    /// Whether the first bytes went out; they go at once, as the signal that the snapshot is open.
    started: bool,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client closed the backup download"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES || !self.started {
            self.started = true;
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::super::server::{router, AppState};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use mgha_core::engine::EngineOptions;
    use mgha_core::{ChangeSet, NodeState};
    use std::sync::Arc;
    use tower::ServiceExt;

    fn changeset(ip: &str) -> ChangeSet {
        let text = format!(
            r#"{{"changes": [{{"op": "put", "type": "host", "name": "web1", "fields": {{"ipv4-address": "{ip}"}}}}]}}"#
        );
        ChangeSet::from_json(text.as_bytes()).expect("changeset")
    }

    #[tokio::test]
    async fn backup_is_the_state_at_request_time_while_publishes_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(
            mgha_sync::create_engine(dir.path(), &NodeState::new_primary("n"), EngineOptions::default())
                .expect("create"),
        );
        let before = engine.publish("t", &changeset("10.0.0.1")).expect("publish").head();
        let app = router(AppState::new(engine.clone(), "tok"));
        let req = Request::builder()
            .uri("/v1/backup")
            .header("authorization", "Bearer tok")
            .body(Body::empty())
            .expect("request");
        let resp = app.oneshot(req).await.expect("response");
        assert_eq!(resp.status(), StatusCode::OK);

        // The download has started but not been read: the node keeps publishing meanwhile.
        let after = engine.publish("t", &changeset("10.0.0.2")).expect("publish during backup").head();
        assert_ne!(after, before);

        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        let summary =
            mgha_core::backup::verify_backup(std::path::Path::new("download"), &mut bytes.as_ref(), &mut |_| {})
                .expect("the streamed backup verifies");
        assert_eq!(summary.header.head, before);
    }
}
