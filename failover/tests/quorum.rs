//! The quorum arbiter for real: three voters in this process (data nodes, or two and a witness)
//! running openraft over mutual TLS on loopback, with certificates of a cluster CA made here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mgha_core::roles::machine::epoch;
use mgha_core::{Role, Uid};
use mgha_failover::quorum::{run_witness, QuorumArbiter, QuorumConfig, QuorumPeer};
use mgha_sync::failover::{Arbiter, FailoverTiming, Holder, Report};
use mgha_sync::pki::{new_cluster_ca, new_node_key_and_csr, sign_node_csr, TlsFiles};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The tests time failovers: they run one at a time so that they do not slow each other down.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TIMING: FailoverTiming = FailoverTiming { heartbeat_ms: 300, failover_after_ms: 1500, max_lag_revisions: 100 };
/// The arbiter bounds every call by this (half a heartbeat, at least 200 ms).
const CALL_MS: u64 = 200;

struct Member {
    name: String,
    address: String,
    dir: TempDir,
    tag: u16,
    node_id: Uid,
    report: Report,
}

impl Member {
    fn report(&self) -> &Report {
        &self.report
    }
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    listener.local_addr().expect("address").to_string()
}

/// A cluster CA: (certificate PEM, key PEM).
fn ca() -> (String, String) {
    new_cluster_ca(Uid::new_random()).expect("CA")
}

/// Members with certificates of `ca`, each in its own directory.
fn members(ca: &(String, String), names: &[&str]) -> Vec<Member> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let (tag, node_id) = (i as u16 + 1, Uid::new_random());
            let report = Report {
                node_id,
                name: name.to_string(),
                tag,
                role: Role::Standby,
                epoch: 0,
                head_seq: 0,
                writable: true,
                ranks_per_domain: true,
            };
            let m = Member {
                name: name.to_string(),
                address: free_address(),
                dir: tempfile::tempdir().expect("temp dir"),
                tag,
                node_id,
                report,
            };
            enroll(&m, ca);
            m
        })
        .collect()
}

fn enroll(m: &Member, ca: &(String, String)) {
    let files = TlsFiles::new(m.dir.path());
    let (key, csr) = new_node_key_and_csr(&m.name).expect("CSR");
    let cert = sign_node_csr(&ca.0, &ca.1, &csr, m.node_id).expect("signs");
    files.write(&files.ca_cert(), &ca.0, false).expect("writes");
    files.write(&files.node_key(), &key, true).expect("writes");
    files.write(&files.node_cert(), &cert, false).expect("writes");
}

fn config(me: &Member, all: &[Member]) -> QuorumConfig {
    QuorumConfig {
        name: me.name.clone(),
        listen: me.address.clone(),
        members: all.iter().map(|m| QuorumPeer { name: m.name.clone(), address: m.address.clone() }).collect(),
        data_dir: me.dir.path().join("arbiter"),
        timing: TIMING,
        tls: TlsFiles::new(me.dir.path()),
    }
}

async fn start(me: &Member, all: &[Member]) -> QuorumArbiter {
    QuorumArbiter::start(config(me, all), all.len()).await.expect("starts")
}

async fn start_all(all: &[Member]) -> Vec<QuorumArbiter> {
    let mut arbiters = Vec::new();
    for m in all {
        arbiters.push(start(m, all).await);
    }
    arbiters
}

/// Retries `f` until it succeeds, for at most `within` (a fresh group elects its leader first).
async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = mgha_core::Result<T>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if start.elapsed() < within => {
                eprintln!("retrying: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("still failing after {within:?}: {e}"),
        }
    }
}

/// The first acquire of a fresh group, retried until the group has elected its leader. A try
/// that timed out may still have committed: then this member holds the role already, at the
/// epoch the arbiter shows.
async fn acquire_first(arbiter: &dyn Arbiter, me: &Report) -> u64 {
    let start = Instant::now();
    loop {
        match arbiter.acquire(me, None, 0).await {
            Ok(Some(epoch)) => return epoch,
            Ok(None) => {
                let seen = eventually(Duration::from_secs(2), || arbiter.observe(me)).await;
                let holder = seen.holder.expect("someone holds the role");
                assert_eq!(holder.node_id, me.node_id, "an earlier try of {} won", me.name);
                return holder.epoch;
            }
            Err(e) if start.elapsed() < Duration::from_secs(5) => {
                eprintln!("retrying: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the first acquire still fails: {e}"),
        }
    }
}

async fn close_all(arbiters: &[QuorumArbiter]) {
    for a in arbiters {
        a.close().await;
    }
}

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_voters_or_a_bad_config_are_refused() {
    let _serial = serial().await;
    let ca = ca();
    let two = members(&ca, &["a", "b"]);
    let err = QuorumArbiter::start(config(&two[0], &two), 2).await.expect_err("two voters cannot decide");
    assert!(err.to_string().contains("add a witness (`mgha witness`)"), "{err}");

    let three = members(&ca, &["a", "b", "c"]);
    let mut dup = config(&three[0], &three);
    dup.members[2].name = "b".into();
    let err = QuorumArbiter::start(dup, 3).await.expect_err("duplicate names");
    assert!(err.to_string().contains("appears twice"), "{err}");

    let mut stranger = config(&three[0], &three);
    stranger.name = "z".into();
    let err = QuorumArbiter::start(stranger, 3).await.expect_err("not a member");
    assert!(err.to_string().contains("not among the members"), "{err}");

    let mut elsewhere = config(&three[0], &three);
    elsewhere.listen = free_address();
    let err = QuorumArbiter::start(elsewhere, 3).await.expect_err("listens elsewhere");
    assert!(err.to_string().contains("listens on"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_acquire_wins_and_only_the_holder_renews() {
    let _serial = serial().await;
    let ca = ca();
    let m = members(&ca, &["a", "b", "c"]);
    let arb = start_all(&m).await;

    let e1 = acquire_first(&arb[0], m[0].report()).await;
    assert_eq!(e1, epoch::next(0, m[0].tag));
    let lost = arb[1].acquire(m[1].report(), None, 0).await.expect("answers");
    assert_eq!(lost, None, "the second acquire finds a holder");

    let holder = Holder { node_id: m[0].node_id, epoch: e1 };
    arb[0].renew(holder).await.expect("the holder renews");
    let impostor = Holder { node_id: m[1].node_id, epoch: e1 };
    assert!(arb[1].renew(impostor).await.is_err(), "a non-holder's renewal is refused");

    let seen = arb[2].observe(m[2].report()).await.expect("observes");
    assert_eq!(seen.holder, Some(holder));
    assert!(!seen.stale);
    assert_eq!(seen.highest_epoch, e1);
    let mut reporters: Vec<&str> = seen.reports.iter().map(|r| r.name.as_str()).collect();
    reporters.sort();
    assert_eq!(reporters, ["a", "b", "c"]);

    let status = arb[1].status().await;
    assert_eq!(status.kind, "quorum");
    assert!(status.has_quorum);
    assert_eq!(status.holder, Some(holder));
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.healthy), "{:?}", status.members);
    // Every member's status names the same one leader, the one whose own view says it leads.
    let mut leaders = Vec::new();
    for a in &arb {
        let named: Vec<String> = a.status().await.members.into_iter().filter(|m| m.leader).map(|m| m.name).collect();
        assert_eq!(named.len(), 1, "{named:?}");
        leaders.extend(named);
    }
    leaders.dedup();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    close_all(&arb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_holder_goes_stale_and_is_replaced_at_a_higher_epoch() {
    let _serial = serial().await;
    let ca = ca();
    let m = members(&ca, &["a", "b", "c"]);
    let arb = start_all(&m).await;
    let e1 = acquire_first(&arb[0], m[0].report()).await;
    let old = Holder { node_id: m[0].node_id, epoch: e1 };
    let last_renewal = Instant::now();
    arb[0].renew(old).await.expect("renews");

    // a falls silent; b watches.
    let stale_at = loop {
        let seen = eventually(Duration::from_secs(2), || arb[1].observe(m[1].report())).await;
        assert_eq!(seen.holder, Some(old));
        if seen.stale {
            break Instant::now();
        }
        assert!(last_renewal.elapsed() < Duration::from_secs(5), "never went stale");
        tokio::time::sleep(Duration::from_millis(TIMING.heartbeat_ms)).await;
    };
    let silent = stale_at.duration_since(last_renewal);
    assert!(silent >= Duration::from_millis(TIMING.failover_after_ms), "stale after only {silent:?}");

    let e2 = arb[1]
        .acquire(m[1].report(), Some(old), e1)
        .await
        .expect("answers")
        .expect("b takes over from the stale holder");
    assert!(e2 > e1);
    assert_eq!(epoch::tag(e2), m[1].tag);
    assert!(arb[0].renew(old).await.is_err(), "the old holder's renewal is refused");
    let lost = arb[2].acquire(m[2].report(), Some(old), e1).await.expect("answers");
    assert_eq!(lost, None, "c expected the old holder: it lost the race");
    close_all(&arb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_of_one_group_have_their_own_holders_epochs_and_staleness() {
    let _serial = serial().await;
    let ca = ca();
    let m = members(&ca, &["a", "b", "c"]);
    let arb = start_all(&m).await;
    let (one, two) = (Uid::new_random(), Uid::new_random());
    let d1: Vec<Arc<dyn Arbiter>> = arb.iter().map(|a| a.for_domain(one)).collect();
    let d2: Vec<Arc<dyn Arbiter>> = arb.iter().map(|a| a.for_domain(two)).collect();

    // a holds domain one, b holds domain two: each at its own first epoch.
    let e1 = acquire_first(d1[0].as_ref(), m[0].report()).await;
    // The hold of two begins when its acquire does: staleness is timed from there.
    let hold_of_two_began = Instant::now();
    let e2 = acquire_first(d2[1].as_ref(), m[1].report()).await;
    assert_eq!(e1, epoch::next(0, m[0].tag));
    assert_eq!(e2, epoch::next(0, m[1].tag), "domain two's epochs do not follow domain one's");
    let (h1, h2) = (Holder { node_id: m[0].node_id, epoch: e1 }, Holder { node_id: m[1].node_id, epoch: e2 });
    assert_eq!(d1[1].acquire(m[1].report(), None, 0).await.expect("answers"), None, "one has a holder");
    assert!(d2[0].renew(h1).await.is_err(), "the holder of one does not hold two");
    assert!(arb[0].renew(h1).await.is_err(), "nor the global domain");
    let global = arb[2].observe(m[2].report()).await.expect("observes");
    assert_eq!((global.holder, global.highest_epoch), (None, 0), "the global domain is untouched");

    // a keeps renewing one; b falls silent in two. c sees two go stale and one stay fresh.
    let stale_at = loop {
        d1[0].renew(h1).await.expect("a renews one");
        let seen1 = d1[2].observe(m[2].report()).await.expect("observes one");
        assert_eq!(seen1.holder, Some(h1));
        assert!(!seen1.stale, "a renewing holder of one went stale");
        let seen2 = d2[2].observe(m[2].report()).await.expect("observes two");
        assert_eq!(seen2.holder, Some(h2));
        if seen2.stale {
            break Instant::now();
        }
        assert!(hold_of_two_began.elapsed() < Duration::from_secs(6), "two never went stale");
        tokio::time::sleep(Duration::from_millis(TIMING.heartbeat_ms)).await;
    };
    let silent = stale_at.duration_since(hold_of_two_began);
    assert!(silent >= Duration::from_millis(TIMING.failover_after_ms), "stale after only {silent:?}");

    // c takes two over; one keeps its holder and epoch.
    let e3 = d2[2].acquire(m[2].report(), Some(h2), e2).await.expect("answers").expect("c takes over two");
    assert!(e3 > e2);
    assert!(d2[1].renew(h2).await.is_err(), "b's hold of two is over");
    d1[0].renew(h1).await.expect("a still holds one");
    let seen1 = d1[1].observe(m[1].report()).await.expect("observes one");
    assert_eq!((seen1.holder, seen1.highest_epoch), (Some(h1), e1));
    let status = d2[0].status().await;
    assert_eq!(status.holder, Some(Holder { node_id: m[2].node_id, epoch: e3 }));

    // Reports stay in their domain: b reports in two, never in the global domain.
    d2[1].observe(m[1].report()).await.expect("b observes two");
    let global = arb[0].observe(m[0].report()).await.expect("observes");
    let reporters: Vec<&str> = global.reports.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(reporters, ["a"]);
    let seen2 = d2[0].observe(m[0].report()).await.expect("observes two");
    assert!(seen2.reports.iter().any(|r| r.name == "b"), "b's report in two: {:?}", seen2.reports);

    // A deleted domain is forgotten: its holder and epochs go, the others' stay.
    arb[1].forget_domain(two).await.expect("forgets two");
    let gone = d2[0].observe(m[0].report()).await.expect("observes two");
    assert_eq!((gone.holder, gone.highest_epoch), (None, 0));
    d1[0].renew(h1).await.expect("a still holds one");

    // Closing a domain's handle leaves the server's Raft node running.
    d1[0].close().await;
    arb[0].observe(m[0].report()).await.expect("the global domain still answers");
    d2[0].observe(m[0].report()).await.expect("so do the other domains");
    close_all(&arb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_voter_rebuilds_every_domain_from_its_log() {
    let _serial = serial().await;
    let ca = ca();
    let m = members(&ca, &["a", "b", "c"]);
    let mut arb = start_all(&m).await;
    let domain = Uid::new_random();
    let a_in_domain = arb[0].for_domain(domain);
    let e1 = acquire_first(a_in_domain.as_ref(), m[0].report()).await;
    let eg = acquire_first(&arb[1], m[1].report()).await;
    let (held, global) = (Holder { node_id: m[0].node_id, epoch: e1 }, Holder { node_id: m[1].node_id, epoch: eg });
    // Past the snapshot threshold (1000 entries): every voter snapshots its state, and keeps
    // applying entries after it. One at a time: writes made together share an entry.
    for _ in 0..1100 {
        eventually(Duration::from_secs(3), || a_in_domain.renew(held)).await;
    }

    // c restarts from its data dir: its applied state comes back from its snapshot and log.
    let c = arb.pop().expect("three");
    c.close().await;
    let c = start(&m[2], &m).await;
    let status = c.status().await;
    let me = status.members.iter().find(|s| s.name == "c").expect("listed");
    assert!(!me.detail.contains("snapshot -"), "c restarted from a snapshot: {}", me.detail);
    let c_in_domain = c.for_domain(domain);
    let seen = eventually(Duration::from_secs(3), || c_in_domain.observe(m[2].report())).await;
    assert_eq!((seen.holder, seen.highest_epoch), (Some(held), e1));
    let seen = eventually(Duration::from_secs(1), || c.observe(m[2].report())).await;
    assert_eq!(seen.holder, Some(global));

    // With b gone, a and the restarted c still decide in both domains.
    arb[1].close().await;
    eventually(Duration::from_secs(3), || a_in_domain.renew(held)).await;
    let seen = eventually(Duration::from_secs(1), || c.observe(m[2].report())).await;
    assert_eq!(seen.holder, Some(global));
    arb[0].close().await;
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_decides_without_one_member_and_not_without_two() {
    let _serial = serial().await;
    let ca = ca();
    let m = members(&ca, &["a", "b", "c"]);
    let arb = start_all(&m).await;
    let e1 = acquire_first(&arb[0], m[0].report()).await;
    let holder = Holder { node_id: m[0].node_id, epoch: e1 };

    arb[2].close().await;
    // If c led, a and b elect a new leader first.
    eventually(Duration::from_secs(3), || arb[0].renew(holder)).await;
    let seen = eventually(Duration::from_secs(1), || arb[1].observe(m[1].report())).await;
    assert_eq!(seen.holder, Some(holder));
    assert!(!seen.stale);

    arb[1].close().await;
    let begun = Instant::now();
    let err = arb[0].renew(holder).await.expect_err("one of three cannot decide");
    let took = begun.elapsed();
    assert!(took < Duration::from_millis(CALL_MS + 300), "the failure took {took:?}");
    eprintln!("renew without a majority: {err} after {took:?}");
    assert!(arb[0].observe(m[0].report()).await.is_err(), "observe without a majority fails too");
    let status = arb[0].status().await;
    assert!(status.members.iter().filter(|m| m.healthy).count() <= 2, "{:?}", status.members);
    arb[0].close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_moves_the_holder() {
    let _serial = serial().await;
    let ca = ca();
    let m = members(&ca, &["a", "b", "c"]);
    let arb = start_all(&m).await;
    let e1 = acquire_first(&arb[0], m[0].report()).await;
    let from = Holder { node_id: m[0].node_id, epoch: e1 };
    let e2 = epoch::next(e1, m[1].tag);
    arb[0].transfer(from, m[1].node_id, e2).await.expect("transfers");
    let to = Holder { node_id: m[1].node_id, epoch: e2 };
    arb[1].renew(to).await.expect("the new holder renews");
    assert!(arb[0].renew(from).await.is_err(), "the old holder does not");
    assert!(arb[0].transfer(from, m[2].node_id, epoch::next(e2, m[2].tag)).await.is_err(), "nor transfers again");
    let seen = arb[2].observe(m[2].report()).await.expect("observes");
    assert_eq!(seen.holder, Some(to));
    assert_eq!(seen.highest_epoch, e2);
    close_all(&arb).await;
}

fn spawn_witness(cfg: QuorumConfig) -> (oneshot::Sender<()>, JoinHandle<mgha_core::Result<()>>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run_witness(cfg, async move {
        let _ = stopped.await;
    }));
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_witness_rejoins_from_its_data_dir() {
    let _serial = serial().await;
    let ca = ca();
    let m = members(&ca, &["a", "b", "witness"]);
    let data = [&m[0], &m[1]];
    let a = start(data[0], &m).await;
    let b = start(data[1], &m).await;
    let (stop, task) = spawn_witness(config(&m[2], &m));

    let e1 = acquire_first(&a, m[0].report()).await;
    let holder = Holder { node_id: m[0].node_id, epoch: e1 };

    // The witness stops; a and b still decide, and the log moves on without it.
    let _ = stop.send(());
    task.await.expect("joins").expect("the witness stopped cleanly");
    for _ in 0..5 {
        eventually(Duration::from_secs(3), || a.renew(holder)).await;
    }
    assert!(m[2].dir.path().join("arbiter").join(mgha_failover::quorum::RAFT_FILE).exists());

    // Restarted from its data dir, it catches up; then it and a are the majority without b.
    let (stop, task) = spawn_witness(config(&m[2], &m));
    tokio::time::sleep(Duration::from_millis(TIMING.heartbeat_ms)).await;
    b.close().await;
    eventually(Duration::from_secs(3), || a.renew(holder)).await;
    let seen = eventually(Duration::from_secs(1), || a.observe(m[0].report())).await;
    assert_eq!(seen.holder, Some(holder));
    let status = a.status().await;
    let witness = status.members.iter().find(|s| s.name == "witness").expect("listed");
    assert!(witness.healthy, "{witness:?}");

    a.close().await;
    let _ = stop.send(());
    task.await.expect("joins").expect("the witness stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_a_certificate_of_another_ca_is_refused() {
    let _serial = serial().await;
    let (ours, theirs) = (ca(), ca());
    let mut m = members(&ours, &["a", "b"]);
    m.extend(members(&theirs, &["c"]));
    let arb = start_all(&m).await;

    let e1 = acquire_first(&arb[0], m[0].report()).await;
    assert!(e1 > 0);
    let err = arb[2].acquire(m[2].report(), None, 0).await.expect_err("c reaches nobody");
    eprintln!("the foreign member: {err}");
    assert!(arb[2].observe(m[2].report()).await.is_err());
    let status = arb[0].status().await;
    let c = status.members.iter().find(|s| s.name == "c").expect("listed");
    assert!(!c.healthy, "{c:?}");
    let seen = arb[1].observe(m[1].report()).await.expect("observes");
    assert!(seen.reports.iter().all(|r| r.name != "c"), "c's reports never arrive");

    // A dialer without any certificate completes TLS (the member configuration allows joiners)
    // but the arbiter closes the connection unanswered.
    use mgha_sync::tls::{joiner_client, member_server_name, MemberTls};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fp = MemberTls::load(&TlsFiles::new(m[0].dir.path())).expect("TLS").ca_fingerprint;
    let tcp = tokio::net::TcpStream::connect(&m[0].address).await.expect("connects");
    let connector = tokio_rustls::TlsConnector::from(joiner_client(fp).expect("config"));
    let mut tls = connector.connect(member_server_name(), tcp).await.expect("TLS without a client certificate");
    let _ = tls.write_all(&[0, 0, 0, 1, 0xc0]).await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await.expect("closed promptly");
    assert!(matches!(read, Ok(0) | Err(_)), "no answer without a certificate: {read:?}");
    close_all(&arb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_missed_a_compacted_log_catches_up_from_a_snapshot() {
    let _serial = serial().await;
    let ca = ca();
    let m = members(&ca, &["a", "b", "c"]);
    let mut arb = start_all(&m).await;
    let e1 = acquire_first(&arb[0], m[0].report()).await;
    let holder = Holder { node_id: m[0].node_id, epoch: e1 };
    arb[2].close().await;
    eventually(Duration::from_secs(3), || arb[0].renew(holder)).await;
    // Past the snapshot threshold (1000 entries): the leader compacts its log.
    let begun = Instant::now();
    for _ in 0..1100 {
        // One at a time: writes made together share an entry.
        eventually(Duration::from_secs(3), || arb[0].renew(holder)).await;
    }
    eprintln!("1100 renewals took {:?}", begun.elapsed());
    arb[2] = start(&m[2], &m).await;
    tokio::time::sleep(Duration::from_millis(TIMING.heartbeat_ms)).await;
    arb[1].close().await;
    // a and c decide: c holds the state, from the snapshot and the log after it.
    eventually(Duration::from_secs(3), || arb[0].renew(holder)).await;
    let seen = eventually(Duration::from_secs(2), || arb[2].observe(m[2].report())).await;
    assert_eq!(seen.holder, Some(holder));
    assert!(!seen.stale);
    let status = arb[2].status().await;
    let me = status.members.iter().find(|s| s.name == "c").expect("listed");
    assert!(!me.detail.contains("snapshot -"), "c installed a snapshot: {}", me.detail);
    arb[0].close().await;
    arb[2].close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_enrolls_with_a_join_key_and_votes_without_becoming_a_member() {
    use mgha_core::engine::EngineOptions;
    use mgha_sync::cluster::{enroll_witness, init_primary, issue_join_key};
    use mgha_sync::membership::members as cluster_members;
    use mgha_sync::pki::{node_id_of, pem_der};
    use mgha_sync::{SyncConfig, SyncRuntime};
    let _serial = serial().await;

    let primary_dir = tempfile::tempdir().expect("temp dir");
    let sync_listen = free_address();
    let engine = std::sync::Arc::new(
        init_primary(primary_dir.path(), "a", &sync_listen, EngineOptions::default()).expect("init"),
    );
    let sync = SyncRuntime::start(
        engine.clone(),
        TlsFiles::new(primary_dir.path()),
        SyncConfig { listen: sync_listen.clone(), ..Default::default() },
    )
    .await
    .expect("the primary serves joins");
    let key = issue_join_key(&engine, 60_000).expect("a join key").to_string();

    let witness_dir = tempfile::tempdir().expect("temp dir");
    enroll_witness(witness_dir.path(), "witness", &sync_listen, &key).await.expect("the witness enrolls");
    let again = enroll_witness(witness_dir.path(), "witness", &sync_listen, &key).await;
    assert!(again.is_err(), "an enrolled directory is not enrolled twice");
    let other = tempfile::tempdir().expect("temp dir");
    assert!(enroll_witness(other.path(), "w2", &sync_listen, &key).await.is_err(), "the key was used up");
    let names: Vec<String> = cluster_members(&engine.store()).expect("members").into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["a"], "the witness is no member");
    let files = TlsFiles::new(witness_dir.path());
    let cert = files.read(&files.node_cert()).expect("certificate");
    assert!(node_id_of(&pem_der(&cert).expect("DER")).is_err(), "the sync layer finds no node id in it");
    sync.shutdown().await;
    drop(engine);

    // The primary, a second node of the same CA, and the enrolled witness form the arbiter.
    let ca_files = TlsFiles::new(primary_dir.path());
    let ca = (
        ca_files.read(&ca_files.ca_cert()).expect("CA certificate"),
        ca_files.read(&ca_files.ca_key()).expect("CA key"),
    );
    let mut m = members(&ca, &["b"]);
    let report = |name: &str, tag: u16| Report {
        node_id: Uid::new_random(),
        name: name.into(),
        tag,
        role: Role::Standby,
        epoch: 0,
        head_seq: 0,
        writable: true,
        ranks_per_domain: true,
    };
    let a = report("a", 0);
    m.insert(
        0,
        Member { name: "a".into(), address: free_address(), dir: primary_dir, tag: 0, node_id: a.node_id, report: a },
    );
    let w = report("witness", 9);
    m.push(Member {
        name: "witness".into(),
        address: free_address(),
        dir: witness_dir,
        tag: 9,
        node_id: w.node_id,
        report: w,
    });
    let arb_a = start(&m[0], &m).await;
    let arb_b = start(&m[1], &m).await;
    let (stop, task) = spawn_witness(config(&m[2], &m));
    let e1 = acquire_first(&arb_a, m[0].report()).await;
    arb_b.close().await;
    let holder = Holder { node_id: m[0].node_id, epoch: e1 };
    eventually(Duration::from_secs(3), || arb_a.renew(holder)).await;
    arb_a.close().await;
    let _ = stop.send(());
    task.await.expect("joins").expect("the witness stopped cleanly");
}

/// How `arbiter` sees itself: healthy (its Raft runs), and the last log index it holds.
async fn own_view(arbiter: &QuorumArbiter, name: &str) -> (bool, Option<u64>) {
    let status = arbiter.status().await;
    let me = status.members.iter().find(|m| m.name == name).expect("listed");
    let last_log =
        me.detail.split(", ").find_map(|part| part.strip_prefix("last log ")).and_then(|index| index.parse().ok());
    (me.healthy, last_log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_whose_disk_filled_restarts_its_raft_once_it_can_write_again() {
    let _serial = serial().await;
    let ca = ca();
    let m = members(&ca, &["a", "b", "c"]);
    let fs = match mgha_tests::smallfs::SmallFs::mount_at(&config(&m[2], &m).data_dir, 8 * 1024 * 1024) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: the test mounts a tmpfs for a voter's storage, which needs root: {why}");
            return;
        }
    };
    let arb = start_all(&m).await;
    let e1 = acquire_first(&arb[0], m[0].report()).await;
    let holder = Holder { node_id: m[0].node_id, epoch: e1 };
    eventually(Duration::from_secs(3), || arb[2].observe(m[2].report())).await;
    let (healthy, log_before) = own_view(&arb[2], "c").await;
    assert!(healthy);
    let log_before = log_before.expect("c holds a log");

    // The majority goes on writing; c cannot store what it is sent, and its Raft stops.
    fs.fill(0).expect("fill c's disk");
    let deadline = Instant::now() + Duration::from_secs(20);
    while own_view(&arb[2], "c").await.0 {
        let _ = arb[0].renew(holder).await;
        assert!(Instant::now() < deadline, "c's Raft never stopped on its full disk");
    }
    eventually(Duration::from_secs(3), || arb[0].renew(holder)).await;

    // Space again: c's Raft comes back by itself, on its old log, and applies what the majority
    // decided meanwhile.
    fs.free().expect("free c's disk");
    let seen = eventually(Duration::from_secs(15), || async {
        match own_view(&arb[2], "c").await {
            (true, _) => arb[2].observe(m[2].report()).await,
            (false, _) => Err(mgha_core::Error::Peer("c's Raft is still down".into())),
        }
    })
    .await;
    assert_eq!(seen.holder, Some(holder));
    let (_, log_after) = own_view(&arb[2], "c").await;
    assert!(log_after.is_some_and(|after| after > log_before), "c's log: {log_before} then {log_after:?}");
    close_all(&arb).await;
    drop(fs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writes_of_many_domains_made_together_share_log_entries() {
    let _serial = serial().await;
    let ca = ca();
    let m = members(&ca, &["a", "b", "c"]);
    let arb = start_all(&m).await;
    eventually(Duration::from_secs(3), || arb[0].observe(m[0].report())).await;
    // The status is kept for a heartbeat: wait it out for a fresh index.
    tokio::time::sleep(Duration::from_millis(TIMING.heartbeat_ms)).await;
    let (_, before) = own_view(&arb[0], "a").await;
    let domains: Vec<(Uid, Arc<dyn Arbiter>)> = (0..64)
        .map(|_| {
            let d = Uid::new_random();
            (d, arb[0].for_domain(d))
        })
        .collect();
    let mut calls = tokio::task::JoinSet::new();
    for (d, arbiter) in &domains {
        let (d, arbiter, me) = (*d, arbiter.clone(), m[0].report().clone());
        calls.spawn(async move { (d, arbiter.acquire(&me, None, 0).await) });
    }
    let mut granted = std::collections::BTreeMap::new();
    while let Some(done) = calls.join_next().await {
        let (d, answer) = done.expect("the call ran");
        granted.insert(d, answer.expect("committed").expect("the first acquire of a domain wins"));
    }
    assert_eq!(granted.len(), 64);
    tokio::time::sleep(Duration::from_millis(TIMING.heartbeat_ms)).await;
    let (_, after) = own_view(&arb[0], "a").await;
    let entries = after.expect("a log") - before.expect("a log");
    assert!(entries < 16, "64 acquires took {entries} log entries");
    // Each domain got its own answer: its holder is a, at the epoch its caller was told.
    for (d, arbiter) in &domains {
        let seen = arbiter.observe(m[0].report()).await.expect("observes");
        assert_eq!(seen.holder, Some(Holder { node_id: m[0].node_id, epoch: granted[d] }));
    }
    close_all(&arb).await;
}
