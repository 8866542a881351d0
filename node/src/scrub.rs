//! The background scrub of a running node: passes over the whole store, in short batches each in
//! its own read snapshot, paced to [`SCRUB_BYTES_PER_SEC_MAX`], one pass every
//! `scrub_interval_ms`. It holds the engine only weakly, so shutdown closes the store at once.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use mgha_core::engine::Engine;
use mgha_core::limits::{SCRUB_BATCH_RECORDS, SCRUB_BYTES_PER_SEC_MAX};
use mgha_core::store::{ScrubBatch, ScrubCursor};

/// Runs scrub passes until the engine is gone: the first at once, then one every `interval_ms`.
pub async fn run(engine: Weak<Engine>, interval_ms: u64) {
    loop {
        if !pass(&engine).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(interval_ms)).await;
    }
}

/// One pass over the store; false once the engine is gone.
async fn pass(engine: &Weak<Engine>) -> bool {
    let started = Instant::now();
    let mut cursor = ScrubCursor::Start;
    let mut total = ScrubBatch::default();
    while cursor != ScrubCursor::Done {
        let Some(e) = engine.upgrade() else {
            return false;
        };
        let mut next = cursor.clone();
        let batch = tokio::task::spawn_blocking(move || {
            let r = e.store().scrub_batch(&mut next, SCRUB_BATCH_RECORDS);
            (r, next)
        })
        .await;
        match batch {
            Ok((Ok(b), next)) => {
                cursor = next;
                total.records += b.records;
                total.bytes += b.bytes;
                tokio::time::sleep(Duration::from_millis(b.bytes * 1000 / SCRUB_BYTES_PER_SEC_MAX)).await;
            }
            Ok((Err(err), _)) => {
                if let Some(e) = engine.upgrade() {
                    e.record_damage(Some(&err));
                }
                let e = err;
                tracing::error!(
                    code = e.code().as_str(),
                    error = %e,
                    "the scrub found a damaged record in the store: run `mgha check` to confirm; a Standby is \
                     rebuilt by moving its data directory aside and joining it again, an Active by restoring a \
                     backup or changing over to a healthy Standby"
                );
                return true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a scrub batch did not finish");
                return true;
            }
        }
    }
    if let Some(e) = engine.upgrade() {
        e.record_damage(None);
    }
    tracing::info!(
        records = total.records,
        bytes = total.bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "scrub pass complete: every record verified"
    );
    true
}

/// Starts the scrub of `engine` on `handle` unless `interval_ms` is 0.
pub fn start(handle: &tokio::runtime::Handle, engine: &Arc<Engine>, interval_ms: u64) {
    if interval_ms > 0 {
        handle.spawn(run(Arc::downgrade(engine), interval_ms));
    }
}
