//! `GET /v1/events`: the node's status as a server-sent event stream, for the status page and
//! for any client that would rather be told than poll. A sample goes out at once, then on every
//! head change, peer sync status change, role change or collision, and at least every
//! [`SAMPLE_INTERVAL`] (at most every [`SAMPLE_GAP_MIN`]), so a client can draw lag and publish
//! rate over time from the stream alone.
//! One sampler task takes each sample for every open stream, and runs only while a stream is open.
//! Streams are bounded in number ([`EVENT_STREAMS_MAX`]) and end when the daemon stops, so an open
//! page never holds a shutdown up.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use mgha_core::{ErrorCode, Head};
use mgha_sync::state::NodeEvent;
use mgha_sync::EngineExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};
use utoipa::ToSchema;

use super::errors::ApiError;
use super::server::AppState;
use crate::api::*;

/// Event streams one daemon serves at once; one more is refused with `busy`.
pub const EVENT_STREAMS_MAX: usize = 16;
/// The longest time between two samples of a stream, changes or not.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(500);
/// The shortest time between two samples: under a burst of publishes a stream sends ten samples
/// a second, not one per revision, so each stream costs the node a bounded amount of reads.
pub const SAMPLE_GAP_MIN: Duration = Duration::from_millis(100);
/// The name of the stream's events.
pub const STATUS_EVENT: &str = "status";

/// One `status` event: the node's status, where its peers reach it, and when it was taken.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusEventBody {
    /// What `GET /v1/status` answers.
    pub status: StatusBody,
    /// The address members dial for this node; null when it runs without peers.
    pub address: Option<String>,
    /// When the sample was taken, in Unix milliseconds (the node's clock, like `last_contact_ms`).
    pub time_ms: u64,
}

/// What every open stream shares: the places for streams, and one sampler that takes the
/// status for all of them. Sixteen open pages cost the node one status document per sample, not
/// sixteen.
pub struct Hub {
    places: Arc<Semaphore>,
    samples: watch::Sender<Option<Arc<Sample>>>,
    // True while a sampler task runs. Streams subscribe and the sampler decides to end under this
    // lock, so a stream that opens as the last one closes never waits for a sampler that is gone.
    sampling: Mutex<bool>,
    // Samples taken since the daemon started, for the tests that hold the sharing to its word.
    taken: std::sync::atomic::AtomicU64,
}

/// One sample, encoded once for every stream.
enum Sample {
    Status(String),
    Error(String),
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            places: Arc::new(Semaphore::new(EVENT_STREAMS_MAX)),
            samples: watch::channel(None).0,
            sampling: Mutex::new(false),
            taken: Default::default(),
        }
    }
}

impl Hub {
    /// A receiver of the shared samples, with a sampler running for it. The receiver sees the
    /// latest sample at once, when there is one.
    fn subscribe(&self, state: &AppState) -> watch::Receiver<Option<Arc<Sample>>> {
        let mut sampling = self.sampling.lock().unwrap_or_else(|p| p.into_inner());
        let mut rx = self.samples.subscribe();
        if rx.borrow().is_some() {
            rx.mark_changed();
        }
        if !*sampling {
            *sampling = true;
            tokio::spawn(Sampler::new(state.clone()).run());
        }
        rx
    }

    /// The sampler ended because the daemon stops.
    fn ended(&self) {
        *self.sampling.lock().unwrap_or_else(|p| p.into_inner()) = false;
    }

    /// Whether the sampler should end: no stream listens any more. Clears the running flag when
    /// it answers yes.
    fn idle(&self) -> bool {
        let mut sampling = self.sampling.lock().unwrap_or_else(|p| p.into_inner());
        if self.samples.receiver_count() == 0 {
            *sampling = false;
            // The next sampler starts from a fresh sample, not one taken before a long pause.
            self.samples.send_replace(None);
            return true;
        }
        false
    }
}

/// Why the sampler wakes up.
enum Wake {
    Changed,
    Tick,
    Stop,
}

/// The one task that takes samples while streams are open.
struct Sampler {
    state: AppState,
    address: Option<String>,
    heads: watch::Receiver<Head>,
    events: broadcast::Receiver<NodeEvent>,
    stopping: watch::Receiver<bool>,
    tick: tokio::time::Interval,
    first: bool,
    last_sample: Option<tokio::time::Instant>,
}

impl Sampler {
    fn new(state: AppState) -> Sampler {
        let sync = state.engine.sync();
        let address = state.node.as_ref().and_then(|n| {
            let config = n.config();
            config.listen.as_deref().map(|l| config.member_address(l).to_string())
        });
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Sampler {
            stopping: state.stopping.subscribe(),
            heads: sync.subscribe(),
            events: sync.events(),
            state,
            address,
            tick,
            first: true,
            last_sample: None,
        }
    }

    /// Samples until no stream listens or the daemon stops.
    async fn run(mut self) {
        loop {
            let wake = match self.wake().await {
                Wake::Stop => Wake::Stop,
                Wake::Changed | Wake::Tick => self.pace().await,
            };
            if matches!(wake, Wake::Stop) {
                // Streams see the stop on their own watch of `stopping`; nothing more to send.
                self.state.events.ended();
                return;
            }
            if self.state.events.idle() {
                return;
            }
            let sample = self.sample().await;
            self.state.events.taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.state.events.samples.send_replace(Some(Arc::new(sample)));
        }
    }

    /// Waits for the next reason to take a sample.
    async fn wake(&mut self) -> Wake {
        if *self.stopping.borrow() {
            return Wake::Stop;
        }
        if std::mem::take(&mut self.first) {
            return Wake::Changed;
        }
        tokio::select! {
            _ = self.stopping.changed() => Wake::Stop,
            changed = self.heads.changed() => if changed.is_ok() { Wake::Changed } else { Wake::Stop },
            event = self.events.recv() => match event {
                // A lagged receiver missed events, not the state: the sample below is current.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Wake::Changed,
                Err(broadcast::error::RecvError::Closed) => Wake::Stop,
            },
            _ = self.tick.tick() => Wake::Tick,
        }
    }

    /// Waits until [`SAMPLE_GAP_MIN`] has passed since the last sample, or the daemon stops.
    async fn pace(&mut self) -> Wake {
        if let Some(last) = self.last_sample {
            tokio::select! {
                _ = self.stopping.changed() => return Wake::Stop,
                _ = tokio::time::sleep_until(last + SAMPLE_GAP_MIN) => {}
            }
        }
        Wake::Changed
    }

    /// The sample to send now.
    async fn sample(&mut self) -> Sample {
        // Whatever woke the sampler, the next tick counts from this sample.
        self.tick.reset();
        self.last_sample = Some(tokio::time::Instant::now());
        let body = match self.state.status().await {
            Ok(status) => StatusEventBody { status, address: self.address.clone(), time_ms: now_ms() },
            Err(e) => return Sample::Error(e.message),
        };
        match serde_json::to_string(&body) {
            Ok(json) => Sample::Status(json),
            Err(e) => Sample::Error(format!("status not encodable: {e}")),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What a stream keeps between two events.
struct Feed {
    samples: watch::Receiver<Option<Arc<Sample>>>,
    stopping: watch::Receiver<bool>,
    // Held for the stream's life: dropping the stream frees its place.
    _permit: OwnedSemaphorePermit,
}

impl Feed {
    /// The next event, or `None` when the daemon stops.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if *self.stopping.borrow() {
                return None;
            }
            tokio::select! {
                _ = self.stopping.changed() => return None,
                changed = self.samples.changed() => changed.ok()?,
            }
            let sample = self.samples.borrow_and_update().clone();
            let Some(sample) = sample else { continue };
            return Some(match &*sample {
                Sample::Status(json) => Event::default().event(STATUS_EVENT).data(json),
                Sample::Error(message) => Event::default().event("error").data(message),
            });
        }
    }
}

/// The node's status as server-sent events: a `status` event (`StatusEventBody` as JSON) at once,
/// on every change of head, peer status or role, and at least every 500 ms.
#[utoipa::path(get, path = "/v1/events", operation_id = "streamStatusEvents", tag = "node",
    responses(
        (status = 200, description = "`text/event-stream` of `status` events, each a StatusEventBody",
            body = StatusEventBody, content_type = "text/event-stream"),
        (status = 401, body = ErrorBody),
        (status = 503, description = "Too many event streams open on this daemon", body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = state.events.places.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(ErrorCode::Busy, format!("{EVENT_STREAMS_MAX} event streams are open on this daemon already"))
    })?;
    let feed = Feed { samples: state.events.subscribe(&state), stopping: state.stopping.subscribe(), _permit: permit };
    let events = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::super::server::{router, AppState};
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use futures_util::StreamExt;
    use mgha_core::engine::EngineOptions;
    use mgha_core::{ChangeSet, NodeState};
    use std::sync::Arc;
    use tower::ServiceExt;

    async fn open(app: &axum::Router) -> axum::response::Response {
        let req = Request::builder().uri("/v1/events").header("authorization", "Bearer t").body(Body::empty());
        app.clone().oneshot(req.expect("request")).await.expect("response")
    }

    /// Reads the body until `n` complete `status` events arrived; returns their JSON.
    async fn statuses(resp: axum::response::Response, n: usize) -> Vec<StatusEventBody> {
        let mut body = resp.into_body().into_data_stream();
        let mut text = String::new();
        let mut out = Vec::new();
        while out.len() < n {
            let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
                .await
                .expect("an event within 10 s")
                .expect("the stream goes on")
                .expect("chunk");
            text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                if block.lines().any(|l| l == "event: status") {
                    let data: String = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                    out.push(serde_json::from_str(&data).expect("a StatusEventBody"));
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn the_stream_sends_the_status_at_once_and_after_a_publish() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(
            mgha_sync::create_engine(dir.path(), &NodeState::new_primary("n"), EngineOptions::default())
                .expect("create"),
        );
        let app = router(AppState::new(engine.clone(), "t"));
        let resp = open(&app).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()["content-type"].to_str().is_ok_and(|c| c.starts_with("text/event-stream")));
        let publisher = engine.clone();
        tokio::task::spawn_blocking(move || {
            let cs = ChangeSet::from_json(
                br#"{"changes": [{"op": "put", "type": "host", "name": "h", "fields": {"ipv4-address": "10.0.0.1"}}]}"#,
            )
            .expect("changeset");
            publisher.publish("admin", &cs).expect("publish")
        })
        .await
        .expect("publisher");
        // The first sample may come before or after the publish; the head change wakes the
        // sampler, so the second shows it in either case.
        let seen = statuses(resp, 2).await;
        assert_eq!(seen[0].status.node.name, "n");
        assert_eq!(seen[1].status.head.seq, 1);
        assert!(seen[1].time_ms > 0);
    }

    #[tokio::test]
    async fn streams_are_bounded_and_need_the_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = mgha_sync::create_engine(dir.path(), &NodeState::new_primary("n"), EngineOptions::default())
            .expect("create");
        let app = router(AppState::new(Arc::new(engine), "t"));
        let unauthorized = Request::builder().uri("/v1/events").body(Body::empty()).expect("request");
        let resp = app.clone().oneshot(unauthorized).await.expect("response");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let mut open_streams = Vec::new();
        for _ in 0..EVENT_STREAMS_MAX {
            let resp = open(&app).await;
            assert_eq!(resp.status(), StatusCode::OK);
            open_streams.push(resp);
        }
        assert_eq!(open(&app).await.status(), StatusCode::SERVICE_UNAVAILABLE);
        open_streams.pop();
        assert_eq!(open(&app).await.status(), StatusCode::OK, "a closed stream frees its place");
    }

    #[tokio::test]
    async fn open_streams_share_one_sampler_that_ends_with_the_last_stream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = mgha_sync::create_engine(dir.path(), &NodeState::new_primary("n"), EngineOptions::default())
            .expect("create");
        let state = AppState::new(Arc::new(engine), "t");
        let app = router(state.clone());
        let mut streams = Vec::new();
        for _ in 0..8 {
            streams.push(open(&app).await);
        }
        let taken_before = state.events.taken.load(std::sync::atomic::Ordering::Relaxed);
        let mut readers = Vec::new();
        for resp in streams {
            readers.push(tokio::spawn(statuses(resp, 3)));
        }
        for reader in readers {
            let seen = reader.await.expect("reader");
            assert!(seen.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
        }
        let taken = state.events.taken.load(std::sync::atomic::Ordering::Relaxed) - taken_before;
        // Eight streams that each read three samples: one sampler takes about three (one more
        // may land between two reads), where one per stream would have taken twenty-four.
        assert!(taken <= 6, "{taken} samples taken for 8 streams of 3 events");
        // Every stream is dropped: the sampler ends at its next wake, and a new stream starts a
        // new one that sends a sample at once.
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while *state.events.sampling.lock().expect("lock") {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(ended.is_ok(), "the sampler ended with the last stream");
        let seen = statuses(open(&app).await, 1).await;
        assert_eq!(seen[0].status.node.name, "n");
    }

    #[tokio::test]
    async fn streams_end_when_the_daemon_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = mgha_sync::create_engine(dir.path(), &NodeState::new_primary("n"), EngineOptions::default())
            .expect("create");
        let state = AppState::new(Arc::new(engine), "t");
        let app = router(state.clone());
        let resp = open(&app).await;
        state.stop_streams();
        let mut body = resp.into_body().into_data_stream();
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(chunk) = body.next().await {
                chunk.expect("chunk");
            }
        })
        .await;
        assert!(ended.is_ok(), "the stream ended after the stop");
    }
}
