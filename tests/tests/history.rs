//! No history is lost to a full sync: after a collision and its resolution, and on a member that
//! joins, every node answers for the Active's revisions exactly as the Active does (the list,
//! one revision, a diff), from the Active's floor; only retention moves a floor.

use std::time::Duration;

use mgha_core::collision::ResolveHow;
use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::node::Role;
use mgha_core::revision::RevisionInfo;
use mgha_core::ChangeSet;
use mgha_tests::inproc::{hosts, Cluster};

async fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every revision an engine lists, newest first, paging through the whole log.
fn all_revisions(e: &Engine) -> Vec<RevisionInfo> {
    let mut out: Vec<RevisionInfo> = Vec::new();
    loop {
        let page = e.store().revisions(out.last().map(|r| r.seq), 1000).expect("revisions");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// `node` answers for history as `active` does: same floor, same list, and every revision and
/// every diff of consecutive revisions (and from the oldest to the head) the same.
fn same_history(active: &Engine, node: &Engine) {
    let (a, n) = (active.store(), node.store());
    assert_eq!(n.floor().expect("floor"), a.floor().expect("floor"), "the floor is the active's");
    let list = all_revisions(active);
    assert_eq!(all_revisions(node), list, "the revision list is the active's");
    let floor = a.floor().expect("floor").seq;
    for r in &list {
        assert_eq!(n.revision(r.seq).expect("revision"), a.revision(r.seq).expect("revision"));
        if r.seq > floor + 1 {
            assert_eq!(n.diff(r.seq - 1, r.seq).expect("diff"), a.diff(r.seq - 1, r.seq).expect("diff"));
        }
    }
    let head = a.head().expect("head").seq;
    assert_eq!(n.diff(floor + 1, head).expect("diff"), a.diff(floor + 1, head).expect("diff"));
    n.check().expect("the full check passes on the synced store");
}

fn group(members: &[&str]) -> ChangeSet {
    serde_json::from_value(serde_json::json!({"changes": [
        {"op": "put", "type": "group", "name": "web", "fields": {"members": members}}]}))
    .expect("changeset")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_after_a_collision_keeps_the_history_on_the_diverged_node() {
    let mut c = Cluster::start(1, true, EngineOptions::default()).await;
    let proxy = c.proxy.take().expect("proxy");
    c.engine(0).publish("admin", &hosts("h", 4, 0)).expect("publish");
    c.engine(0).publish("admin", &group(&["h0"])).expect("publish");
    c.engine(0).publish("admin", &hosts("more", 2, 0)).expect("publish");
    c.converged(Duration::from_secs(10)).await;
    let before = c.engine(0).store().revision(1).expect("revision 1");

    // Both sides publish while apart: when they meet again, the old Active's history diverged.
    proxy.partition();
    c.nodes[1].runtime.as_ref().expect("running").force_changeover().expect("forced");
    c.engine(1).publish("admin", &group(&["h0", "h1"])).expect("new active publishes");
    c.engine(0).publish("admin", &hosts("cut", 2, 0)).expect("old active publishes while cut off");
    proxy.heal();
    wait_for("the branch to be kept", Duration::from_secs(20), || {
        c.engine(1).collisions().map(|b| !b.is_empty()).unwrap_or(false)
    })
    .await;
    let branch = c.engine(1).collisions().expect("branches").remove(0);
    c.engine(1).resolve_collision(branch.id, ResolveHow::KeepActive, "admin").expect("resolved");
    c.converged(Duration::from_secs(20)).await;
    assert_eq!(c.engine(0).role().0, Role::Standby);

    // The old Active's store was replaced by a full sync (its own store archived first)...
    let archive = c.nodes[0].dir.path().join("archive");
    let archived = std::fs::read_dir(&archive).expect("archive dir").count();
    assert!(archived >= 1, "the diverged store is archived");
    // ...and still answers for revision 1 onwards, as the Active does.
    assert_eq!(c.engine(0).store().floor().expect("floor").seq, 0, "no retention: the floor stays at 0");
    assert_eq!(c.engine(0).store().revision(1).expect("revision 1 is still there"), before);
    c.engine(0).store().diff(1, 2).expect("diff 1 2");
    same_history(c.engine(1), c.engine(0));

    // A revert to revision 1 after a changeover back works on the healed node.
    let epoch = c.nodes[1].runtime.as_ref().expect("running").changeover("a").await.expect("changeover");
    assert_eq!(c.engine(0).role(), (Role::Active, epoch));
    c.engine(0).revert("admin", 1).expect("revert to revision 1");
    c.converged(Duration::from_secs(20)).await;
    assert!(c.engine(1).store().get("group", "web").is_err(), "the group did not exist at revision 1");
    same_history(c.engine(0), c.engine(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_keeps_only_the_history_its_retention_says() {
    let options = EngineOptions { retain_revisions: Some(10), ..EngineOptions::default() };
    let mut c = Cluster::start(0, false, options.clone()).await;
    c.join_with("s1", options).await;
    for i in 0..80 {
        c.engine(0).publish("admin", &hosts(&format!("r{i}-"), 1, 0)).expect("publish");
    }
    c.converged(Duration::from_secs(20)).await;
    let (active, standby) = (c.engine(0).store().floor().expect("floor"), c.engine(1).store().floor().expect("floor"));
    assert_eq!(active.seq, 64 - 10, "the active purged at revision 64");
    assert!(standby.seq >= 64 - 10, "the standby purged too (floor {})", standby.seq);
    assert_eq!(all_revisions(c.engine(1)).len() as u64, 80 - standby.seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_gets_the_actives_history_and_floor() {
    let options = EngineOptions { retain_revisions: Some(10), ..EngineOptions::default() };
    let mut c = Cluster::start(0, false, options).await;
    for i in 0..80 {
        c.engine(0).publish("admin", &hosts(&format!("r{i}-"), 1 + i % 3, 0)).expect("publish");
    }
    let floor = c.engine(0).store().floor().expect("floor");
    assert!(floor.seq > 0, "retention moved the active's floor");
    let joined = c.join("s1").await;
    c.converged(Duration::from_secs(20)).await;
    same_history(c.engine(0), c.engine(joined));
    assert_eq!(all_revisions(c.engine(joined)).len() as u64, 80 - floor.seq);

    // Without retention, a new member has every revision from 1.
    let mut c = Cluster::start(0, false, EngineOptions::default()).await;
    for i in 0..30 {
        c.engine(0).publish("admin", &hosts(&format!("r{i}-"), 1 + i % 3, 0)).expect("publish");
    }
    let joined = c.join("s1").await;
    c.converged(Duration::from_secs(20)).await;
    same_history(c.engine(0), c.engine(joined));
    assert_eq!(all_revisions(c.engine(joined)).len(), 30);
    c.engine(joined).store().diff(1, 2).expect("diff 1 2 on the new member");
}

/// Databases held on other servers, as the node asks them: `uid` is used by a group there.
struct UsedElsewhere(mgha_core::Uid);

impl mgha_core::store::Users for UsedElsewhere {
    fn users(&self, _: &[mgha_core::Uid]) -> mgha_core::Result<Vec<(mgha_core::Uid, String)>> {
        Ok(Vec::new())
    }

    fn users_elsewhere(&self, uids: &[mgha_core::Uid]) -> mgha_core::Result<Vec<(mgha_core::Uid, String)>> {
        Ok(uids.iter().filter(|u| **u == self.0).map(|u| (*u, "domain 'x' (group 'g')".to_string())).collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolving_a_collision_does_not_delete_what_a_database_elsewhere_uses() {
    let mut c = Cluster::start(1, true, EngineOptions::default()).await;
    let proxy = c.proxy.take().expect("proxy");
    c.engine(0).publish("admin", &hosts("h", 2, 0)).expect("publish");
    c.converged(Duration::from_secs(10)).await;
    proxy.partition();
    c.nodes[1].runtime.as_ref().expect("running").force_changeover().expect("forced");
    // Only the new Active has `fresh`: taking the old Active's branch deletes it.
    c.engine(1).publish("admin", &hosts("fresh", 1, 0)).expect("new active publishes");
    c.engine(0).publish("admin", &hosts("cut", 1, 0)).expect("old active publishes while cut off");
    proxy.heal();
    wait_for("the branch to be kept", Duration::from_secs(20), || {
        c.engine(1).collisions().map(|b| !b.is_empty()).unwrap_or(false)
    })
    .await;
    let branch = c.engine(1).collisions().expect("branches").remove(0);
    let fresh = c.engine(1).store().uid_of("host", "fresh0").expect("read").expect("fresh0");
    c.engine(1).store().set_globals(None, Some(std::sync::Arc::new(UsedElsewhere(fresh))));

    let err = c.engine(1).resolve_collision(branch.id, ResolveHow::KeepBranch, "admin").expect_err("fresh0 is used");
    assert!(
        matches!(&err, mgha_core::Error::StillReferenced { name, used_by, .. } if name == "fresh0" && used_by.contains("domain 'x'")),
        "{err}"
    );
    assert!(c.engine(1).store().get("host", "fresh0").is_ok(), "nothing was deleted");
    c.engine(1).store().set_globals(None, None);
    c.engine(1).resolve_collision(branch.id, ResolveHow::KeepBranch, "admin").expect("once no one uses it");
    assert!(c.engine(1).store().get("host", "fresh0").is_err());
}
