//! Large revisions: what publishes replicates and backs up. A revision just under the revision
//! limit reaches two Standbys (same head and state hash) and round-trips through a backup and a
//! restore; one over it is refused at publish with nothing committed, rather than publishing
//! and then never replicating.

use std::time::Duration;

use mgha_core::backup::{restore_backup, write_backup};
use mgha_core::engine::EngineOptions;
use mgha_core::limits::REVISION_BYTES_MAX;
use mgha_core::store::{Store, STORE_FILE};
use mgha_core::{ChangeSet, Error};
use mgha_tests::inproc::Cluster;

/// Bytes of each setting's value: under the object limit (1 MiB).
const SETTING_BYTES: usize = 1_000_000;

/// `n` system settings of [`SETTING_BYTES`] each, as one changeset.
fn settings(prefix: &str, n: usize) -> ChangeSet {
    let changes: Vec<_> = (0..n)
        .map(|i| {
            let value = format!("{i:08}").repeat(SETTING_BYTES / 8);
            serde_json::json!({"op": "put", "type": "system-setting", "name": format!("{prefix}{i}"),
                "fields": {"value": value}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({"message": prefix, "changes": changes})).expect("changeset")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revision_near_the_limit_replicates_to_two_standbys_and_round_trips_through_a_backup() {
    let mut c = Cluster::start(2, false, EngineOptions::default()).await;
    // Both Standbys synchronized first, so the large one crosses as a revision, not in a full sync.
    c.engine(0).publish("admin", &settings("small", 1)).expect("publish");
    c.converged(Duration::from_secs(30)).await;
    let fits = REVISION_BYTES_MAX / SETTING_BYTES - 2;
    let active = c.engine(0).clone();
    let rev = tokio::task::spawn_blocking(move || active.publish("admin", &settings("big", fits)))
        .await
        .expect("publisher")
        .expect("a revision under the limit publishes");
    assert_eq!(rev.changes.len(), fits);
    c.converged(Duration::from_secs(120)).await;
    let head = c.engine(0).store().head().expect("head");
    for i in 1..3 {
        assert_eq!(c.engine(i).store().head().expect("head"), head, "standby {i} has the active's head and state hash");
    }

    // Backup of a Standby, then a restore into a fresh directory.
    let scratch = tempfile::tempdir().expect("tempdir");
    let path = scratch.path().join("big.mghabak");
    let standby = c.engine(2).store();
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("backup file"));
        write_backup(&standby, &mut file, &mut |_| {}).expect("backup of the large revision");
        std::io::Write::flush(&mut file).expect("flush");
    }
    let restored_dir = scratch.path().join("restored");
    let mut input = std::io::BufReader::new(std::fs::File::open(&path).expect("open backup"));
    restore_backup(&path, &mut input, &restored_dir, &mut |_| {}).expect("restore");
    let restored = Store::open(&restored_dir.join(STORE_FILE)).expect("restored store opens");
    assert_eq!(restored.head().expect("head"), head);
    restored.check().expect("the restored store verifies");
    assert_eq!(restored.revision(head.seq).expect("the large revision").changes.len(), fits);
    drop(restored);

    // Over the limit: refused at publish, nothing committed.
    let active = c.engine(0).clone();
    let over = REVISION_BYTES_MAX / SETTING_BYTES + 2;
    let refused =
        tokio::task::spawn_blocking(move || active.publish("admin", &settings("huge", over))).await.expect("publisher");
    assert!(matches!(refused, Err(Error::TooLarge { .. })), "{refused:?}");
    assert_eq!(c.engine(0).store().head().expect("head"), head);

    for node in &mut c.nodes {
        if let Some(r) = node.runtime.take() {
            r.shutdown().await;
        }
    }
}
