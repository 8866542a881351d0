//! The etcd arbiter against a real etcd: every test starts its own single-member etcd
//! (`etcd` from Debian's etcd-server, which scripts/test installs) on free loopback ports in a
//! temporary directory, and kills it when done.
#![cfg(feature = "etcd")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mgha_core::roles::machine::epoch;
use mgha_core::{Role, Uid};
use mgha_failover::etcd::{EtcdArbiter, EtcdBackend, EtcdConfig};
use mgha_sync::failover::{Arbiter, FailoverTiming, Holder, HolderState, Report};
use mgha_tests::etcd::Etcd;

/// Short enough for tests: the leases last 2 s, calls time out after 250 ms.
const TIMING: FailoverTiming = FailoverTiming { heartbeat_ms: 500, failover_after_ms: 2000, max_lag_revisions: 100 };
const CALL_TIMEOUT_MS: u64 = 250;

/// One node of the test: its arbiter and its report.
struct Node {
    arbiter: EtcdArbiter,
    report: Report,
}

impl Node {
    async fn connect(etcd: &Etcd, name: &str, tag: u16) -> Node {
        let node_id = Uid::new_random();
        let cfg = EtcdConfig {
            endpoints: vec![etcd.client.clone()],
            prefix: "/mgha/test-cluster".into(),
            timing: TIMING,
            node_id,
        };
        let arbiter = EtcdArbiter::connect(cfg).await.expect("connect to etcd");
        let report = standby_report(node_id, name, tag);
        Node { arbiter, report }
    }

    async fn observe(&self) -> HolderState {
        self.arbiter.observe(&self.report).await.expect("observe")
    }

    async fn acquire(&self, expected: Option<Holder>, highest_known: u64) -> Option<u64> {
        self.arbiter.acquire(&self.report, expected, highest_known).await.expect("acquire")
    }

    fn holder(&self, epoch: u64) -> Holder {
        Holder { node_id: self.report.node_id, epoch }
    }
}

/// Observes every 100 ms until `done` holds, for at most `limit`; returns the state and when.
async fn observe_until(node: &Node, limit: Duration, done: impl Fn(&HolderState) -> bool) -> (HolderState, Instant) {
    let deadline = Instant::now() + limit;
    loop {
        let state = node.observe().await;
        if done(&state) {
            return (state, Instant::now());
        }
        assert!(Instant::now() < deadline, "not reached within {limit:?}: {state:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn reported(state: &HolderState, node: &Node) -> bool {
    state.reports.iter().any(|r| r.node_id == node.report.node_id)
}

#[tokio::test]
async fn first_acquire_wins_and_the_second_gets_none() {
    let etcd = Etcd::start();
    let (a, b) = (Node::connect(&etcd, "a", 1).await, Node::connect(&etcd, "b", 2).await);

    let state = a.observe().await;
    assert!(state.stale && state.holder.is_none() && state.highest_epoch == 0, "{state:?}");

    let granted = a.acquire(None, 0).await.expect("the first acquire wins");
    assert_eq!(granted, epoch::first(1));
    assert_eq!(b.acquire(None, 0).await, None, "there is a holder now");
    assert_eq!(b.acquire(Some(b.holder(granted)), 0).await, None, "b is not the holder");

    for _ in 0..3 {
        a.arbiter.renew(a.holder(granted)).await.expect("renew while held");
        tokio::time::sleep(Duration::from_millis(TIMING.heartbeat_ms)).await;
    }
    let state = b.observe().await;
    assert_eq!(state.holder, Some(a.holder(granted)));
    assert!(!state.stale);
    assert_eq!(state.highest_epoch, granted);
    assert!(reported(&state, &a) && reported(&state, &b), "{state:?}");

    assert!(b.arbiter.renew(b.holder(granted)).await.is_err(), "only the holder renews");
    assert!(a.arbiter.renew(a.holder(granted + 1)).await.is_err(), "only at the granted epoch");
}

#[tokio::test]
async fn an_unrenewed_hold_lapses_and_the_other_node_takes_over_at_a_higher_epoch() {
    let etcd = Etcd::start();
    let (a, b) = (Node::connect(&etcd, "a", 1).await, Node::connect(&etcd, "b", 2).await);
    let first = a.acquire(None, 0).await.expect("a acquires");
    let last_renewal = Instant::now();
    a.arbiter.renew(a.holder(first)).await.expect("renew");

    // `a` stops renewing but keeps reporting: its reports must not keep its hold alive.
    let deadline = Instant::now() + Duration::from_secs(8);
    let state = loop {
        let _ = a.observe().await;
        let state = b.observe().await;
        if state.stale {
            break state;
        }
        assert!(Instant::now() < deadline, "the hold never lapsed: {state:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let held_for = last_renewal.elapsed();
    assert!(held_for >= Duration::from_millis(TIMING.failover_after_ms), "stale after only {held_for:?}");
    assert_eq!(state.holder, None);
    assert_eq!(state.highest_epoch, first, "the epoch key outlives the lease");

    let second = b.acquire(None, state.highest_epoch).await.expect("b takes over");
    assert!(second > first, "{} not above {}", epoch::display(second), epoch::display(first));
    assert_eq!(epoch::tag(second), 2);
    assert!(a.arbiter.renew(a.holder(first)).await.is_err(), "the old holder's renew fails");
    b.arbiter.renew(b.holder(second)).await.expect("the new holder renews");
    assert_eq!(a.observe().await.holder, Some(b.holder(second)));
}

#[tokio::test]
async fn transfer_moves_the_holder_and_the_new_holder_keeps_it_under_its_own_lease() {
    let etcd = Etcd::start();
    let (a, b) = (Node::connect(&etcd, "a", 1).await, Node::connect(&etcd, "b", 2).await);
    let first = a.acquire(None, 0).await.expect("a acquires");
    let second = epoch::next(first, 2);

    let refused = a.arbiter.transfer(a.holder(first), b.report.node_id, first).await;
    assert!(refused.is_err(), "a transfer must raise the epoch");
    assert!(a.arbiter.transfer(b.holder(first), b.report.node_id, second).await.is_err(), "b does not hold it");

    a.arbiter.transfer(a.holder(first), b.report.node_id, second).await.expect("transfer");
    assert!(a.arbiter.renew(a.holder(first)).await.is_err(), "a no longer holds it");
    let state = b.observe().await;
    assert_eq!(state.holder, Some(b.holder(second)));
    assert_eq!(state.highest_epoch, second);

    // The key was written under a's hold lease, which nobody renews any more; b's renewals move
    // it under b's own lease, so it outlives a's lease while a keeps reporting.
    let until = Instant::now() + Duration::from_millis(2 * TIMING.failover_after_ms);
    while Instant::now() < until {
        b.arbiter.renew(b.holder(second)).await.expect("the new holder renews");
        let _ = a.observe().await;
        tokio::time::sleep(Duration::from_millis(TIMING.heartbeat_ms)).await;
    }
    let state = a.observe().await;
    assert_eq!(state.holder, Some(b.holder(second)));
    assert!(!state.stale);
}

#[tokio::test]
async fn a_transfer_nobody_takes_up_lapses() {
    let etcd = Etcd::start();
    let (a, b) = (Node::connect(&etcd, "a", 1).await, Node::connect(&etcd, "b", 2).await);
    let first = a.acquire(None, 0).await.expect("a acquires");
    let second = epoch::next(first, 2);
    a.arbiter.transfer(a.holder(first), b.report.node_id, second).await.expect("transfer");
    // b never renews; a keeps reporting. The key lapses and an election may follow.
    let (state, _) = observe_until(&a, Duration::from_secs(8), |s| s.stale).await;
    assert_eq!(state.highest_epoch, second);
    let third = a.acquire(None, 0).await.expect("a acquires again");
    assert!(third > second);
}

#[tokio::test]
async fn reports_of_a_node_whose_lease_lapsed_vanish() {
    let etcd = Etcd::start();
    let (a, b, c) =
        (Node::connect(&etcd, "a", 1).await, Node::connect(&etcd, "b", 2).await, Node::connect(&etcd, "c", 3).await);
    let silent_since = Instant::now();
    let _ = b.observe().await;
    let _ = c.observe().await;
    let state = a.observe().await;
    assert!(reported(&state, &b) && reported(&state, &c), "{state:?}");
    assert_eq!(state.reports.iter().find(|r| r.name == "b").map(|r| r.head_seq), Some(7));

    // c shuts down cleanly: its report goes at once. b just stops (a crash): its report goes
    // with its lease.
    c.arbiter.close().await;
    let state = a.observe().await;
    assert!(!reported(&state, &c), "{state:?}");
    let (state, gone_at) = observe_until(&a, Duration::from_secs(8), |s| !reported(s, &b)).await;
    assert!(gone_at - silent_since >= Duration::from_millis(TIMING.failover_after_ms));
    assert!(reported(&state, &a), "the observer's own report stays");
}

#[tokio::test]
async fn epochs_strictly_increase_across_grants() {
    let etcd = Etcd::start();
    let (a, b) = (Node::connect(&etcd, "a", 1).await, Node::connect(&etcd, "b", 2).await);
    let mut holder = a.holder(a.acquire(None, 0).await.expect("a acquires"));
    let mut epochs = vec![holder.epoch];
    for round in 0..6 {
        let (node, highest_known) = if round % 2 == 0 { (&b, 0) } else { (&a, holder.epoch) };
        assert_eq!(node.acquire(None, 0).await, None, "the holder is alive");
        let granted = node.acquire(Some(holder), highest_known).await.expect("takes over from the expected holder");
        assert_eq!(epoch::tag(granted), node.report.tag);
        let stale_expected = node.acquire(Some(holder), 0).await;
        assert_eq!(stale_expected, None, "the expected holder changed");
        holder = node.holder(granted);
        epochs.push(granted);
    }
    // A transfer and a node that knows of a higher epoch elsewhere (a manual changeover).
    let transferred = epoch::next(holder.epoch, 1);
    b.arbiter.transfer(holder, a.report.node_id, transferred).await.expect("transfer");
    epochs.push(transferred);
    let above_known = b.acquire(Some(a.holder(transferred)), epoch::next(transferred, 9)).await.expect("b acquires");
    assert_eq!(epoch::round(above_known), epoch::round(transferred) + 2);
    epochs.push(above_known);
    assert!(
        epochs.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        epochs.iter().map(|e| epoch::display(*e)).collect::<Vec<_>>()
    );
    assert_eq!(a.observe().await.highest_epoch, above_known);
}

#[tokio::test]
async fn killing_etcd_makes_renew_fail_within_the_call_timeout() {
    let mut etcd = Etcd::start();
    let a = Node::connect(&etcd, "a", 1).await;
    let granted = a.acquire(None, 0).await.expect("a acquires");
    a.arbiter.renew(a.holder(granted)).await.expect("renew");
    let status = a.arbiter.status().await;
    assert!(status.has_quorum && status.members.iter().all(|m| m.healthy), "{status:?}");
    assert_eq!(status.holder, Some(a.holder(granted)));

    etcd.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let renewed = a.arbiter.renew(a.holder(granted)).await;
        let took = started.elapsed();
        assert!(renewed.is_err(), "renew without etcd");
        assert!(took < Duration::from_millis(CALL_TIMEOUT_MS + 150), "renew took {took:?}");
    }
    let started = Instant::now();
    assert!(a.arbiter.observe(&a.report).await.is_err());
    let status = a.arbiter.status().await;
    assert!(started.elapsed() < Duration::from_millis(2 * CALL_TIMEOUT_MS + 300));
    assert!(!status.has_quorum && status.members.iter().all(|m| !m.healthy && !m.leader), "{status:?}");
    assert_eq!(status.members.len(), 1);
    assert_eq!(status.members[0].address, etcd.client);
}

#[tokio::test]
async fn status_shows_each_endpoint_and_the_holder() {
    let etcd = Etcd::start();
    let a = Node::connect(&etcd, "a", 1).await;
    let status = a.arbiter.status().await;
    assert_eq!(status.kind, "etcd");
    assert!(status.has_quorum);
    assert_eq!(status.holder, None);
    let member = &status.members[0];
    assert!(member.healthy && member.detail.starts_with("etcd 3."), "{member:?}");
    assert!(member.leader, "a one-member etcd cluster leads itself: {member:?}");
    assert!(member.detail.contains("raft index"), "{member:?}");
}

#[tokio::test]
async fn connect_names_the_endpoints_when_none_answers() {
    // On 127.0.0.2: the other tests' servers (etcd among them) take free ports on 127.0.0.1, and
    // one of them could take this port between its release here and the connect.
    let endpoint =
        std::net::TcpListener::bind("127.0.0.2:0").and_then(|l| l.local_addr()).expect("a free port").to_string();
    let cfg = EtcdConfig {
        endpoints: vec![endpoint.clone()],
        prefix: "/mgha/x".into(),
        timing: TIMING,
        node_id: Uid::new_random(),
    };
    let started = Instant::now();
    let err = EtcdArbiter::connect(cfg).await.err().expect("nothing listens there");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.to_string().contains(&endpoint), "{err}");
}

#[tokio::test]
async fn a_hung_etcd_fails_every_call_within_the_call_timeout() {
    let etcd = Etcd::start();
    let a = Node::connect(&etcd, "a", 1).await;
    let granted = a.acquire(None, 0).await.expect("a acquires");
    a.arbiter.renew(a.holder(granted)).await.expect("renew");

    etcd.signal("-STOP");
    let bound = Duration::from_millis(CALL_TIMEOUT_MS + 150);
    let started = Instant::now();
    assert!(a.arbiter.renew(a.holder(granted)).await.is_err(), "renew against a hung etcd");
    assert!(started.elapsed() < bound, "renew took {:?}", started.elapsed());
    let started = Instant::now();
    assert!(a.arbiter.observe(&a.report).await.is_err(), "observe against a hung etcd");
    assert!(started.elapsed() < bound, "observe took {:?}", started.elapsed());
    let started = Instant::now();
    assert_eq!(a.arbiter.acquire(&a.report, None, 0).await.ok(), None, "acquire against a hung etcd");
    assert!(started.elapsed() < bound, "acquire took {:?}", started.elapsed());
    let started = Instant::now();
    let status = a.arbiter.status().await;
    assert!(started.elapsed() < bound, "status took {:?}", started.elapsed());
    assert!(!status.has_quorum, "{status:?}");

    // Resumed within the lease, the holder renews again.
    etcd.signal("-CONT");
    a.arbiter.renew(a.holder(granted)).await.expect("renew after etcd resumed");
}

/// One server's arbiters of the global domain and two others, over one backend.
struct Server {
    report: Report,
    backend: EtcdBackend,
    global: Arc<EtcdArbiter>,
    one: Arc<EtcdArbiter>,
    two: Arc<EtcdArbiter>,
}

/// What a Standby of `name` reports in these tests.
fn standby_report(node_id: Uid, name: &str, tag: u16) -> Report {
    Report {
        node_id,
        name: name.into(),
        tag,
        role: Role::Standby,
        epoch: 0,
        head_seq: 7,
        writable: true,
        ranks_per_domain: true,
    }
}

impl Server {
    async fn connect(etcd: &Etcd, name: &str, tag: u16, domains: (Uid, Uid)) -> Server {
        let node_id = Uid::new_random();
        let cfg = EtcdConfig { endpoints: vec![etcd.client.clone()], prefix: PREFIX.into(), timing: TIMING, node_id };
        let backend = EtcdBackend::connect(cfg).await.expect("connect to etcd");
        let report = standby_report(node_id, name, tag);
        let (global, one, two) = (backend.global(), backend.for_domain(domains.0), backend.for_domain(domains.1));
        Server { report, backend, global, one, two }
    }

    fn holder(&self, epoch: u64) -> Holder {
        Holder { node_id: self.report.node_id, epoch }
    }
}

const PREFIX: &str = "/mgha/domains-cluster";

#[tokio::test]
async fn domains_of_one_backend_hold_and_lapse_on_their_own() {
    let etcd = Etcd::start();
    let domains = (Uid::new_random(), Uid::new_random());
    let a = Server::connect(&etcd, "a", 1, domains).await;
    let b = Server::connect(&etcd, "b", 2, domains).await;

    // a holds one, b holds two: each domain starts its own epochs.
    let e1 = a.one.acquire(&a.report, None, 0).await.expect("acquire").expect("a takes one");
    let e2 = b.two.acquire(&b.report, None, 0).await.expect("acquire").expect("b takes two");
    assert_eq!((e1, e2), (epoch::first(1), epoch::first(2)));
    assert!(a.two.renew(a.holder(e1)).await.is_err(), "the holder of one does not hold two");
    let global = a.global.observe(&a.report).await.expect("observe");
    assert_eq!((global.holder, global.highest_epoch), (None, 0), "the global domain is untouched");

    // The keys of a domain sit under `<prefix>/domains/<id>`.
    let mut raw = etcd_client::Client::connect([etcd.client.as_str()], None).await.expect("connects");
    let key = format!("{PREFIX}/domains/{}/leader", domains.0);
    let leader = raw.get(key.as_str(), None).await.expect("reads");
    let stored: Holder = serde_json::from_slice(leader.kvs()[0].value()).expect("a holder");
    assert_eq!(stored, a.holder(e1));
    assert!(raw.get(format!("{PREFIX}/leader"), None).await.expect("reads").kvs().is_empty());

    // a renews one every heartbeat, b keeps reporting in two but stops renewing it: a renewal
    // in one must not keep two's hold alive, nor the other way round.
    let last_renewal_of_two = Instant::now();
    b.two.renew(b.holder(e2)).await.expect("b renews two once");
    let deadline = Instant::now() + Duration::from_secs(8);
    let lapsed = loop {
        a.one.renew(a.holder(e1)).await.expect("a renews one");
        b.two.observe(&b.report).await.expect("b reports in two");
        let one = b.one.observe(&b.report).await.expect("observe one");
        assert!(!one.stale && one.holder == Some(a.holder(e1)), "one lapsed: {one:?}");
        let two = a.two.observe(&a.report).await.expect("observe two");
        if two.stale {
            break two;
        }
        assert!(Instant::now() < deadline, "two never lapsed: {two:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let held_for = last_renewal_of_two.elapsed();
    assert!(held_for >= Duration::from_millis(TIMING.failover_after_ms), "stale after only {held_for:?}");
    assert_eq!(lapsed.highest_epoch, e2);
    assert!(lapsed.reports.iter().any(|r| r.node_id == b.report.node_id), "b reports in two: {lapsed:?}");

    // a takes two over above b's epoch; one keeps its holder and epoch.
    let e3 = a.two.acquire(&a.report, None, lapsed.highest_epoch).await.expect("acquire").expect("a takes two");
    assert!(e3 > e2);
    assert!(b.two.renew(b.holder(e2)).await.is_err(), "b's hold of two is over");
    let one = b.one.observe(&b.report).await.expect("observe one");
    assert_eq!((one.holder, one.highest_epoch), (Some(a.holder(e1)), e1));

    // A deleted domain is forgotten: every key under its prefix goes, the others' stay.
    b.backend.forget_domain(domains.1).await.expect("forgets two");
    let left = raw.get(format!("{PREFIX}/domains/{}/", domains.1), Some(etcd_client::GetOptions::new().with_prefix()));
    assert!(left.await.expect("reads").kvs().is_empty(), "two's keys are gone");
    let gone = a.two.observe(&a.report).await.expect("observe two");
    assert_eq!((gone.holder, gone.highest_epoch), (None, 0));
    a.one.renew(a.holder(e1)).await.expect("a still holds one");

    // Closing a domain's handle removes only that domain's report; the server's own handle
    // revokes the shared node lease, and with it the reports in every domain.
    a.one.observe(&a.report).await.expect("a reports in one");
    a.one.close().await;
    let one = b.one.observe(&b.report).await.expect("observe one");
    assert!(!one.reports.iter().any(|r| r.node_id == a.report.node_id), "a's report left one: {one:?}");
    let two = b.two.observe(&b.report).await.expect("observe two");
    assert!(two.reports.iter().any(|r| r.node_id == a.report.node_id), "a still reports in two: {two:?}");
    a.global.close().await;
    let two = b.two.observe(&b.report).await.expect("observe two");
    assert!(!two.reports.iter().any(|r| r.node_id == a.report.node_id), "a's reports went with its lease: {two:?}");
}
