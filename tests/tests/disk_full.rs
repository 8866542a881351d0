//! A full disk, in process: an engine whose store sits on a small tmpfs that the test fills.
//! A publish that runs out of space fails cleanly (code `io`, nothing of it visible), the store
//! reopens itself and keeps serving reads, every later publish is tried afresh (no "previous
//! I/O error" latch), and once space is freed publishing works again without a restart, with
//! every acknowledged revision still there. Needs root to mount; skips with a reason otherwise.

use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::status::WriteFaultKind;
use mgha_core::{ChangeInput, ChangeSet, ErrorCode, NodeState};
use mgha_tests::smallfs::{SmallFs, BIG_COMMENT_BYTES};

/// Size of the test's filesystem: a fresh store takes about 1.5 MiB of it.
const FS_BYTES: u64 = 8 * 1024 * 1024;

fn hosts(prefix: &str, count: usize, comment_bytes: usize) -> ChangeSet {
    let changes = (0..count)
        .map(|i| {
            let fields = serde_json::from_value(serde_json::json!({
                "ipv4-address": format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256),
                "comments": "x".repeat(comment_bytes),
            }))
            .expect("fields");
            ChangeInput::Put { type_name: "host".into(), name: format!("{prefix}-{i}"), uid: None, fields }
        })
        .collect();
    ChangeSet { message: format!("{count} hosts {prefix}"), changes }
}

fn mount_or_skip() -> Option<SmallFs> {
    match SmallFs::mount(FS_BYTES) {
        Ok(fs) => Some(fs),
        Err(why) => {
            eprintln!("SKIPPED: the disk-full tests mount a tmpfs, which needs root: {why}");
            None
        }
    }
}

#[test]
fn a_full_disk_fails_publishes_cleanly_and_publishing_resumes_once_space_is_freed() {
    let Some(fs) = mount_or_skip() else {
        return;
    };
    let dir = fs.path().join("node");
    let engine = Engine::create(&dir, &NodeState::new_primary("a"), EngineOptions::default()).expect("create");
    let first = engine.publish("admin", &hosts("before", 20, 100)).expect("publish with space");
    fs.fill(0).expect("fill the filesystem");

    // A publish larger than anything the file has free: the write runs out of space.
    let big = hosts("big", 400, BIG_COMMENT_BYTES);
    let err = engine.publish("admin", &big).expect_err("the disk is full");
    assert_eq!(err.code(), ErrorCode::Io, "{err}");
    let fault = engine.store_fault().expect("the store records why it cannot write");
    assert_eq!(fault.kind, WriteFaultKind::DiskFull, "{fault}");
    assert!(fault.reopened, "the store reopened itself after the failure: {fault:?}");
    assert_eq!(engine.status().expect("status").store_fault.as_ref(), Some(&fault));

    // Nothing of the failed publish is visible, and reads go on.
    assert_eq!(engine.store().head().expect("head"), first.head());
    assert!(engine.store().get("host", "big-0").is_err(), "a host of the failed publish is visible");
    assert!(engine.store().get("host", "before-3").is_ok(), "reads work after the failure");

    // Every later publish is tried afresh: the same clean out-of-space error, never redb's latch.
    for _ in 0..3 {
        let again = engine.publish("admin", &big).expect_err("still full");
        assert_eq!(again.code(), ErrorCode::Io, "{again}");
        assert!(!again.to_string().contains("Previous I/O"), "the store stayed latched: {again}");
        assert_eq!(engine.store_fault().map(|f| f.kind), Some(WriteFaultKind::DiskFull));
    }
    assert!(engine.probe_write().is_some(), "the probe cannot write on a full disk either");
    assert_eq!(engine.store().head().expect("head"), first.head());

    // Space freed: no restart, the probe clears the fault and the publish goes through.
    fs.free().expect("free the filler");
    assert_eq!(engine.probe_write(), None, "the probe writes once space is free");
    let after = engine.publish("admin", &big).expect("publish after space was freed");
    assert_eq!(after.seq, first.seq + 1);
    assert_eq!(engine.store_fault(), None);
    let small = engine.publish("admin", &hosts("small", 5, 10)).expect("and the next one");
    assert_eq!(small.seq, first.seq + 2);

    // Reopened from scratch, the store holds exactly the acknowledged revisions, intact.
    drop(engine);
    let engine = Engine::open(&dir, EngineOptions::default()).expect("reopen");
    let report = engine.check().expect("the store is intact");
    assert_eq!(report.head, small.head());
    assert!(engine.store().get("host", "big-399").is_ok());
}

#[test]
fn a_full_disk_during_a_small_publish_fails_it_cleanly_too() {
    let Some(fs) = mount_or_skip() else {
        return;
    };
    let dir = fs.path().join("node");
    let engine = Engine::create(&dir, &NodeState::new_primary("a"), EngineOptions::default()).expect("create");
    let mut head = engine.publish("admin", &hosts("h0", 1, 10)).expect("first").head();
    fs.fill(0).expect("fill");
    // Small publishes may still fit in pages the file has free; go on until one does not.
    let mut failed = None;
    for i in 1..2000 {
        match engine.publish("admin", &hosts(&format!("h{i}"), 10, 500)) {
            Ok(rev) => head = rev.head(),
            Err(e) => {
                failed = Some((i, e));
                break;
            }
        }
    }
    let (i, err) = failed.expect("the filesystem filled up");
    assert_eq!(err.code(), ErrorCode::Io, "{err}");
    assert_eq!(engine.store().head().expect("head"), head, "the failed publish left no trace");
    assert!(engine.store().get("host", &format!("h{i}-0")).is_err());
    fs.free().expect("free");
    let rev = engine.publish("admin", &hosts(&format!("h{i}"), 10, 500)).expect("publish after freeing space");
    assert_eq!(rev.seq, head.seq + 1);
    assert_eq!(engine.check().expect("intact").head, rev.head());
}
