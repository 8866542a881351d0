//! Roles across real sync runtimes in one process: planned changeover under load, typed
//! refusals (the target cannot take over, is the Active already, another changeover runs), a
//! changeover whose caller stopped waiting, forced changeover with the old Active publishing
//! while cut off, its collision branch kept and merged, and promotion of a Secondary to Primary.

use mgha_sync::EngineExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mgha_core::collision::ResolveHow;
use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::merge::{Resolution, Side};
use mgha_core::node::Role;
use mgha_core::{ChangeSet, ChangeoverError, Error, ErrorCode};
use mgha_sync::{SyncConfig, SyncStatus};
use mgha_tests::inproc::{hosts, Cluster};

fn active_of(c: &Cluster) -> Option<usize> {
    (0..c.nodes.len()).find(|&i| c.engine(i).role().0 == Role::Active)
}

async fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes one host at a time on whichever node is Active, remembering what was acknowledged.
fn publisher(
    engines: Vec<Arc<Engine>>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut refused = 0;
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let name = format!("load{i}");
            let cs: ChangeSet = serde_json::from_value(serde_json::json!({"changes": [
                {"op": "put", "type": "host", "name": name, "fields": {"ipv4-address": "10.9.0.1"}}]}))
            .expect("changeset");
            let mut done = false;
            for e in &engines {
                match e.publish("load", &cs) {
                    Ok(_) => {
                        acked.lock().expect("lock").push(name.clone());
                        done = true;
                        break;
                    }
                    Err(Error::ReadOnly { .. } | Error::ChangeoverInProgress { .. }) => refused += 1,
                    Err(e) => panic!("unexpected publish error: {e}"),
                }
            }
            if done {
                i += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        refused
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_changeover_under_load_loses_nothing() {
    let c = Cluster::start(2, false, EngineOptions::default()).await;
    c.converged(Duration::from_secs(10)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let engines: Vec<_> = c.nodes.iter().map(|n| n.engine.clone()).collect();
    let load = publisher(engines, stop.clone(), acked.clone());
    let names = ["s1", "s2", "a"];
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let from = active_of(&c).expect("an active");
        let target = names[round % 3];
        if c.engine(from).node().expect("node").name == target {
            continue;
        }
        let epoch_before = c.engine(from).role().1;
        let runtime = c.nodes[from].runtime.as_ref().expect("running");
        let epoch = runtime.changeover(target).await.expect("changeover");
        assert!(epoch > epoch_before);
        let to = (0..c.nodes.len()).find(|&i| c.engine(i).node().expect("node").name == target).expect("target");
        assert_eq!(c.engine(to).role(), (Role::Active, epoch));
        assert_eq!(c.engine(from).role().0, Role::Standby);
    }
    stop.store(true, Ordering::SeqCst);
    let _ = load.join();
    c.converged(Duration::from_secs(15)).await;
    let acked = acked.lock().expect("lock").clone();
    assert!(!acked.is_empty());
    for n in &c.nodes {
        for name in &acked {
            n.engine.store().get("host", name).expect("every acknowledged publish is on every node");
        }
    }
    let actives = (0..c.nodes.len()).filter(|&i| c.engine(i).role().0 == Role::Active).count();
    assert_eq!(actives, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changeover_to_an_unreachable_target_changes_nothing() {
    let mut c = Cluster::start(1, false, EngineOptions::default()).await;
    c.converged(Duration::from_secs(10)).await;
    c.nodes[1].runtime.take().expect("running").shutdown().await;
    wait_for("the primary to notice", Duration::from_secs(5), || {
        c.engine(0).sync().peers().iter().all(|p| !p.connected)
    })
    .await;
    let before = c.engine(0).role();
    let e = c.nodes[0].runtime.as_ref().expect("running").changeover("s1").await.expect_err("refused");
    assert!(matches!(&e, Error::Changeover(ChangeoverError::TargetNotConnected { target }) if target == "s1"), "{e}");
    assert_eq!(e.code(), ErrorCode::Conflict);
    assert_eq!(c.engine(0).role(), before);
    c.engine(0).publish("admin", &hosts("after", 1, 0)).expect("the active still publishes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_changeover_keeps_the_old_actives_branch_and_merges_it() {
    let mut c = Cluster::start(1, true, EngineOptions::default()).await;
    let proxy = c.proxy.take().expect("proxy");
    let group = |members: &[&str]| -> ChangeSet {
        serde_json::from_value(serde_json::json!({"changes": [
            {"op": "put", "type": "group", "name": "web", "fields": {"members": members}}]}))
        .expect("changeset")
    };
    c.engine(0).publish("admin", &hosts("h", 4, 0)).expect("publish");
    c.engine(0).publish("admin", &group(&["h0"])).expect("publish");
    c.converged(Duration::from_secs(10)).await;
    // Cut the primary off; force the secondary; both publish while apart.
    proxy.partition();
    let epoch = c.nodes[1].runtime.as_ref().expect("running").force_changeover().expect("forced");
    assert_eq!(c.engine(1).role(), (Role::Active, epoch));
    c.engine(1).publish("admin", &group(&["h0", "h1"])).expect("new active publishes");
    for i in 0..3 {
        c.engine(0).publish("admin", &hosts(&format!("cut{i}-"), 1, 0)).expect("old active publishes while cut off");
    }
    c.engine(0).publish("admin", &group(&["h0", "h2"])).expect("old active edits the group too");
    let branch_head = c.engine(0).store().head().expect("head");
    proxy.heal();
    // The old Active meets the higher epoch, steps down, and its branch is kept on the new one.
    wait_for("the branch to be kept", Duration::from_secs(20), || {
        c.engine(1).collisions().map(|b| !b.is_empty()).unwrap_or(false)
    })
    .await;
    assert_eq!(c.engine(0).role().0, Role::Standby);
    let branch = c.engine(1).collisions().expect("branches").remove(0);
    assert_eq!(branch.revisions.len(), 4, "every unsynced revision of the old active is in the branch");
    assert_eq!(branch.head(), branch_head);
    let status = c.engine(1).status().expect("status");
    assert!(status.peers.iter().any(|p| p.status == SyncStatus::Collision), "{:?}", status.peers);
    let diff = c.engine(1).collision_diff(branch.id).expect("diff");
    assert_eq!(diff.branch_changes.len(), 4);
    assert!(diff.conflicts.is_empty(), "set-union members merge without conflict: {:?}", diff.conflicts);
    let resolved = c
        .engine(1)
        .resolve_collision(branch.id, ResolveHow::Merge(Resolution::Prefer(Side::Active)), "admin")
        .expect("merge");
    assert!(resolved.seq.is_some());
    c.converged(Duration::from_secs(20)).await;
    for n in &c.nodes {
        let web = n.engine.store().get("group", "web").expect("group");
        let members = web.fields["members"].as_array().expect("list").len();
        assert_eq!(members, 3, "both sides' members are kept");
        for i in 0..3 {
            n.engine.store().get("host", &format!("cut{i}-0")).expect("the branch's hosts are merged in");
        }
    }
    assert!(c.engine(1).collisions().expect("branches")[0].resolved.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_during_handover_names_the_new_active() {
    let c = Cluster::start(1, false, EngineOptions::default()).await;
    c.converged(Duration::from_secs(10)).await;
    let done = c.nodes[0].runtime.as_ref().expect("running").changeover("s1").await.expect("changeover");
    assert!(done > 0);
    let e = c.engine(0).publish("admin", &hosts("x", 1, 0)).expect_err("old active is read-only");
    assert!(e.to_string().contains("'s1'"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoted_secondary_can_admit_new_members() {
    let mut c = Cluster::start(1, false, EngineOptions::default()).await;
    c.converged(Duration::from_secs(10)).await;
    wait_for("the CA key to reach the secondary", Duration::from_secs(10), || c.nodes[1].files().has_ca_key()).await;
    let refused = mgha_sync::cluster::issue_join_key(c.engine(1), 60_000).expect_err("a secondary issues no keys");
    assert_eq!(refused.code(), mgha_core::ErrorCode::InvalidArgument, "{refused}");
    let epoch = c.nodes[1].runtime.as_ref().expect("running").force_changeover().expect("forced");
    assert!(epoch > 0);
    c.nodes[0].runtime.take().expect("running").shutdown().await;
    mgha_sync::cluster::promote_to_primary(c.engine(1)).expect("promote");
    let key = mgha_sync::cluster::issue_join_key(c.engine(1), 60_000).expect("the new primary issues keys");
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = c.nodes[1].runtime.as_ref().expect("running").local_addr().to_string();
    mgha_sync::cluster::join_secondary(
        dir.path(),
        "late",
        &peer,
        &key.to_string(),
        &mgha_tests::inproc::free_addr(),
        EngineOptions::default(),
    )
    .await
    .expect("a new secondary joins the promoted primary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changeover_back_and_forth_between_two_nodes() {
    let c = Cluster::start(1, false, EngineOptions::default()).await;
    c.converged(Duration::from_secs(10)).await;
    for round in 0..6 {
        let (from, to) = if round % 2 == 0 { (0, "s1") } else { (1, "a") };
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.nodes[from].runtime.as_ref().expect("running").changeover(to).await.expect("changeover");
        assert_eq!(c.engine(from).role().0, Role::Standby, "round {round}");
    }
}

/// A changeover timeout far longer than any test waits: a call that waited for it would fail.
fn long_timeout(cfg: &mut SyncConfig) {
    cfg.changeover_timeout_ms = 120_000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changeover_to_the_active_is_refused_at_once() {
    let c = Cluster::start_tuned(1, false, EngineOptions::default(), long_timeout).await;
    c.converged(Duration::from_secs(10)).await;
    wait_for("s1 to follow a", Duration::from_secs(10), || c.engine(0).sync().peers().iter().any(|p| p.connected))
        .await;
    // Asked on the Active itself, and on the Standby (forwarded to the Active).
    for ask in [0, 1] {
        let runtime = c.nodes[ask].runtime.as_ref().expect("running");
        let answer = tokio::time::timeout(Duration::from_secs(20), runtime.changeover("a"))
            .await
            .expect("answered long before the changeover timeout");
        let e = answer.expect_err("a is the active");
        assert!(matches!(&e, Error::Changeover(ChangeoverError::AlreadyActive { name }) if name == "a"), "{e}");
    }
    assert_eq!(c.engine(0).role_machine().handover, None, "publishes were never fenced");
    c.engine(0).publish("admin", &hosts("after", 1, 0)).expect("the active still publishes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_changeover_on_a_node_is_busy_while_one_runs() {
    let c = Cluster::start(2, false, EngineOptions::default()).await;
    c.converged(Duration::from_secs(10)).await;
    let runtime = c.nodes[0].runtime.as_ref().expect("running");
    let (one, two) = tokio::join!(runtime.changeover("s1"), runtime.changeover("s2"));
    let (done, busy) = if one.is_ok() { (one, two) } else { (two, one) };
    done.expect("the first changeover is done");
    let busy = busy.expect_err("the second is refused");
    assert!(matches!(busy, Error::Changeover(ChangeoverError::InProgress { .. })), "{busy}");
    assert_eq!(busy.code(), ErrorCode::Busy);
    assert_eq!(actives(&c).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changeover_whose_caller_stopped_waiting_still_ends_and_frees_the_node() {
    let c = Cluster::start(1, false, EngineOptions::default()).await;
    c.converged(Duration::from_secs(10)).await;
    let runtime = c.nodes[0].runtime.as_ref().expect("running");
    // The caller gives up almost at once (an HTTP client that disconnected, say).
    let _ = tokio::time::timeout(Duration::from_millis(1), runtime.changeover("s1")).await;
    wait_for("the changeover to end on its own", Duration::from_secs(20), || {
        c.engine(1).role().0 == Role::Active && c.engine(0).role().0 == Role::Standby
    })
    .await;
    assert_eq!(c.engine(0).role_machine().handover, None);
    // Neither node is left busy: the way back works (once the first task has seen the outcome
    // it ends and frees the node; until then the answer is busy), and the new Active publishes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let epoch = loop {
        match runtime.changeover("a").await {
            Err(Error::Changeover(ChangeoverError::InProgress { .. })) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            other => break other.expect("the way back, asked on the old active"),
        }
    };
    assert_eq!(c.engine(0).role(), (Role::Active, epoch));
    c.engine(0).publish("admin", &hosts("back", 1, 0)).expect("publishes");
}

fn actives(c: &Cluster) -> Vec<usize> {
    (0..c.nodes.len()).filter(|&i| c.engine(i).role().0 == Role::Active).collect()
}
