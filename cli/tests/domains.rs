//! Many domains per cluster with real `mgha` processes: three servers, domains on subsets of
//! them, each its own database with its own Active; publishes in several at once; one
//! connection per pair of servers whatever the number of domains; a planned changeover of one
//! domain while another keeps publishing on another server; a replica moved to another server
//! (a full sync of that domain only); per-domain backup and restore; deletion refused while a
//! domain holds objects; a collision in one domain (a forced changeover while its Active is cut
//! off) merged there while another domain on the same servers keeps publishing, untouched; a
//! rebalance asked on a server that is a Standby of every domain, which plans from the Actives'
//! view and so gives every server its share. Each
//! test has its own temp dir and free ports, and guards that kill every process it started.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use support::publisher::{Api, Publisher};
use support::*;

const EXIT_INVALID: i32 = 3;
const EXIT_NOT_FOUND: i32 = 5;
const EXIT_CONFLICT: i32 = 6;
const EXIT_READ_ONLY: i32 = 7;

/// Three servers: a (Primary), b and c, started, the global domain synchronized.
fn three(scratch: &Scratch) -> (Node, Node, Node) {
    let a = start_one(scratch, "a");
    let mut b = scratch.join(&a, "b");
    b.fast_timers();
    b.start();
    let mut c = scratch.join(&a, "c");
    c.fast_timers();
    c.start();
    wait_peers_synchronized(&a, &["b", "c"]);
    (a, b, c)
}

/// `mgha status --domain` of one server, over the API.
fn status_in(node: &Node, domain: &str) -> Value {
    ok_json(&["status", "-d", node.d(), "--domain", domain, "--json"])
}

/// `mgha status --domain` of one server, or None while it holds no replica of `domain` yet (a
/// domain just created reaches a server with the registry change).
fn status_once_hosted(node: &Node, domain: &str) -> Option<Value> {
    let out = mgha(&["status", "-d", node.d(), "--domain", domain, "--json"]);
    if out.status.code() == Some(EXIT_NOT_FOUND) {
        return None;
    }
    assert!(out.status.success(), "status of {domain} on {}: {}", node.name, String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).expect("status JSON"))
}

/// Waits until every replica of `domain` has the head of its Active on `active`.
fn wait_domain_converged(domain: &str, active: &Node, replicas: &[&Node]) {
    wait_until(&format!("the replicas of {domain} to converge"), || {
        let Some(lead) = status_once_hosted(active, domain) else { return false };
        lead["node"]["role"] == "active"
            && replicas.iter().all(|r| status_once_hosted(r, domain).is_some_and(|s| s["head"] == lead["head"]))
    });
}

/// Publishes `n` hosts named `{prefix}-{i}` in `domain` through `node`, one revision.
fn publish(scratch: &Scratch, node: &Node, domain: &str, prefix: &str, n: usize) {
    let file = scratch.file(&format!("{prefix}.json"), &hosts(prefix, n));
    ok(&["apply", "-d", node.d(), "--domain", domain, support::s(&file)]);
}

/// The host names in `domain` on `node`.
fn host_names(node: &Node, domain: &str) -> BTreeSet<String> {
    let list = ok_json(&["list", "-d", node.d(), "--domain", domain, "--type", "host", "--limit", "100000", "--json"]);
    list["objects"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|o| o["name"].as_str().expect("a name").to_string())
        .collect()
}

/// Established TCP connections between the daemons of `x` and `y` on their peer ports, counted
/// once each from the side that dialed (its socket's remote port is the other's peer port).
fn peer_connections(x: &Node, y: &Node) -> usize {
    dialed(x, y) + dialed(y, x)
}

/// Sockets of `from`'s daemon connected to `to`'s peer port.
fn dialed(from: &Node, to: &Node) -> usize {
    let pid = from.daemon.as_ref().expect("running").child.id();
    let port: u16 = to.listen().rsplit_once(':').expect("host:port").1.parse().expect("port");
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).expect("tcp table");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote_port =
                f.get(2).and_then(|r| r.rsplit_once(':')).and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            // State 01 is ESTABLISHED; field 9 is the socket's inode.
            f.get(3) == Some(&"01") && remote_port == Some(port) && f.get(9).is_some_and(|i| inodes.contains(*i))
        })
        .count()
}

#[test]
fn domains_live_on_subsets_with_their_own_actives_over_one_connection_per_pair() {
    let scratch = Scratch::new();
    let (a, b, c) = three(&scratch);

    // Creating domains is a registry change: on the global domain's Active only.
    fails(&["domain", "create", "-d", b.d(), "emea", "--on", "a,b"], EXIT_READ_ONLY);
    ok(&["domain", "create", "-d", a.d(), "emea", "--on", "a,b"]);
    ok(&["domain", "create", "-d", a.d(), "apac", "--on", "b,c"]);
    let amer = ok_json(&["domain", "create", "-d", a.d(), "amer", "--replicas", "2", "--json"]);
    assert_eq!(amer["replicas"].as_array().map(Vec::len), Some(2), "{amer}");
    fails(&["domain", "create", "-d", a.d(), "emea", "--on", "c"], EXIT_CONFLICT);
    fails(&["domain", "create", "-d", a.d(), "../x"], EXIT_INVALID);
    fails(&["domain", "create", "-d", a.d(), "x", "--on", "a,nobody"], EXIT_NOT_FOUND);

    // Each domain has its Active where it was created first, and its replicas follow.
    wait_domain_converged("emea", &a, &[&b]);
    wait_domain_converged("apac", &b, &[&c]);
    assert_eq!(status_in(&a, "emea")["node"]["role"], "active");
    assert_eq!(status_in(&b, "emea")["node"]["role"], "standby");
    assert_eq!(status_in(&b, "apac")["node"]["role"], "active");
    assert_eq!(status_in(&b, "emea")["domain"], "emea");
    // c holds no replica of emea: it says where the replicas are.
    let err = fails(&["list", "-d", c.d(), "--domain", "emea"], EXIT_NOT_FOUND);
    assert!(err.contains("a, b"), "{err}");

    // Publishes in two domains at once, on two servers, each only in its own database.
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..5 {
                publish(&scratch, &a, "emea", &format!("e{i}"), 20);
            }
        });
        s.spawn(|| {
            for i in 0..5 {
                publish(&scratch, &b, "apac", &format!("p{i}"), 20);
            }
        });
    });
    wait_domain_converged("emea", &a, &[&b]);
    wait_domain_converged("apac", &b, &[&c]);
    assert_eq!(host_names(&b, "emea").len(), 100);
    assert_eq!(host_names(&c, "apac").len(), 100);
    assert!(host_names(&b, "emea").iter().all(|n| n.starts_with('e')));
    assert!(host_names(&b, "apac").iter().all(|n| n.starts_with('p')));
    assert!(host_names(&a, "global").is_empty(), "the global domain holds none of them");
    // A Standby replica refuses a publish and names its domain's Active.
    let file = scratch.file("late.json", &hosts("late", 1));
    let err = fails(&["apply", "-d", b.d(), "--domain", "emea", support::s(&file)], EXIT_READ_ONLY);
    assert!(err.contains("'a'"), "{err}");

    // One connection per pair of servers carries every domain. (A dial that crossed another
    // is dropped by the tie-break, so a moment with two is allowed; staying at two is not.)
    let pairs = [(&a, &b), (&b, &c), (&a, &c)];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let counts: Vec<usize> = pairs.iter().map(|(x, y)| peer_connections(x, y)).collect();
        if counts.iter().all(|&n| n == 1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "connections per pair (a-b, b-c, a-c): {counts:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // A planned changeover of emea to b while apac keeps publishing on b.
    std::thread::scope(|s| {
        let load = s.spawn(|| {
            for i in 0..10 {
                publish(&scratch, &b, "apac", &format!("q{i}"), 5);
            }
        });
        let done = ok_json(&["changeover", "-d", a.d(), "--domain", "emea", "--to", "b", "--json"]);
        assert_eq!(done["active"], "b", "{done}");
        load.join().expect("apac kept publishing");
    });
    assert_eq!(status_in(&b, "emea")["node"]["role"], "active");
    assert_eq!(status_in(&b, "apac")["node"]["role"], "active", "apac's Active did not move");
    assert_eq!(status_in(&a, "global")["node"]["role"], "active", "nor did the global domain's");
    publish(&scratch, &b, "emea", "after", 3);
    wait_domain_converged("emea", &b, &[&a]);
    assert_eq!(host_names(&a, "emea").len(), 103);

    // A global object used by apac, which a (the global domain's Active) holds no replica of:
    // a asks a server that does before the object goes.
    let global = scratch.file(
        "global.json",
        r#"{"changes": [{"op": "put", "type": "host", "name": "g-ntp", "fields": {"ipv4-address": "10.0.0.123"}}]}"#,
    );
    ok(&["apply", "-d", a.d(), support::s(&global)]);
    wait_converged(&a, &[&b, &c]);
    let uses = scratch.file(
        "uses.json",
        r#"{"changes": [{"op": "put", "type": "group", "name": "time", "fields": {"members": ["g-ntp"]}}]}"#,
    );
    ok(&["apply", "-d", b.d(), "--domain", "apac", support::s(&uses)]);
    let delete = scratch.file("del.json", r#"{"changes": [{"op": "delete", "type": "host", "name": "g-ntp"}]}"#);
    let err = fails(&["apply", "-d", a.d(), support::s(&delete)], 4);
    assert!(err.contains("domain 'apac'") && err.contains("group 'time'"), "{err}");
    let unuse = scratch.file("unuse.json", r#"{"changes": [{"op": "delete", "type": "group", "name": "time"}]}"#);
    ok(&["apply", "-d", b.d(), "--domain", "apac", support::s(&unuse)]);
    ok(&["apply", "-d", a.d(), support::s(&delete)]);

    let list = ok_json(&["domain", "list", "-d", c.d(), "--json"]);
    let names: Vec<&str> =
        list["domains"].as_array().expect("domains").iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names[0], "global");
    assert!(names.contains(&"emea") && names.contains(&"apac") && names.contains(&"amer"), "{list}");
}

#[test]
fn a_replica_moves_backups_are_per_domain_and_deletion_keeps_the_data() {
    let scratch = Scratch::new();
    let (a, b, c) = three(&scratch);
    ok(&["domain", "create", "-d", a.d(), "emea", "--on", "a,b"]);
    ok(&["domain", "create", "-d", a.d(), "spare", "--on", "a"]);
    wait_domain_converged("emea", &a, &[&b]);
    publish(&scratch, &a, "emea", "h", 50);
    wait_domain_converged("emea", &a, &[&b]);

    // Move b's replica to c: c gets a full sync of emea only, b archives its store.
    fails(&["domain", "move", "-d", a.d(), "emea", "--from", "a", "--to", "c"], EXIT_CONFLICT);
    let moved = ok_json(&["domain", "move", "-d", a.d(), "emea", "--from", "b", "--to", "c", "--json"]);
    assert_eq!(moved["replicas"], serde_json::json!(["a", "c"]), "{moved}");
    wait_until("c to hold emea", || mgha(&["status", "-d", c.d(), "--domain", "emea", "--json"]).status.success());
    wait_domain_converged("emea", &a, &[&c]);
    assert_eq!(host_names(&c, "emea").len(), 50);
    wait_until("b to let go of emea", || {
        mgha(&["status", "-d", b.d(), "--domain", "emea"]).status.code() == Some(EXIT_NOT_FOUND)
    });
    assert!(b.dir.join("archive/domains").read_dir().expect("archive").next().is_some(), "b kept its store");

    // A backup of one domain holds that domain only, and restores into a node of its own.
    let file = scratch.path("emea.mghabak");
    ok(&["backup", "-d", c.d(), "--domain", "emea", "-o", support::s(&file)]);
    let verified = ok_json(&["verify", support::s(&file), "--json"]);
    assert_eq!(verified["header"]["objects"], 50, "{verified}");
    let restored = scratch.path("restored");
    ok(&["restore", "--in", support::s(&file), "-d", support::s(&restored)]);
    let objects = ok_json(&["list", "-d", support::s(&restored), "--offline", "--type", "host", "--json"]);
    assert_eq!(objects["objects"].as_array().map(Vec::len), Some(50));

    // Deleting a domain that holds objects needs --force, which writes a backup first; every
    // replica keeps its store in the archive.
    fails(&["domain", "delete", "-d", a.d(), "emea"], EXIT_CONFLICT);
    fails(&["domain", "delete", "-d", a.d(), "global", "--force"], EXIT_INVALID);
    ok(&["domain", "delete", "-d", a.d(), "spare"]);
    let deleted = ok_json(&["domain", "delete", "-d", a.d(), "emea", "--force", "--json"]);
    let backup = deleted["backup"].as_str().expect("a backup was written");
    assert_eq!(ok_json(&["verify", backup, "--json"])["header"]["objects"], 50);
    wait_until("c to let go of emea", || {
        mgha(&["status", "-d", c.d(), "--domain", "emea"]).status.code() == Some(EXIT_NOT_FOUND)
    });
    let list = ok_json(&["domain", "list", "-d", b.d(), "--json"]);
    assert_eq!(list["domains"].as_array().map(Vec::len), Some(1), "only the global domain is left: {list}");
}

#[test]
fn domains_reference_global_objects_which_cannot_go_while_used() {
    let scratch = Scratch::new();
    let a = start_one(&scratch, "a");
    ok(&["domain", "create", "-d", a.d(), "emea", "--on", "a"]);
    ok(&["domain", "create", "-d", a.d(), "apac", "--on", "a"]);
    // Global objects: a host and a service every domain may use.
    let global = scratch.file(
        "global.json",
        r#"{"message": "global objects", "changes": [
            {"op": "put", "type": "host", "name": "g-dns", "fields": {"ipv4-address": "10.0.0.53"}},
            {"op": "put", "type": "service-udp", "name": "g-dns-udp", "fields": {"port": "53"}}]}"#,
    );
    ok(&["apply", "-d", a.d(), support::s(&global)]);
    let dns = ok_json(&["get", "-d", a.d(), "host", "g-dns", "--json"]);
    let dns_uid = dns["uid"].as_str().expect("uid").to_string();

    // emea names it, apac gives its uid; a local object of the same name would come first.
    let emea = scratch.file(
        "emea.json",
        r#"{"changes": [{"op": "put", "type": "group", "name": "resolvers", "fields": {"members": ["g-dns"]}}]}"#,
    );
    ok(&["apply", "-d", a.d(), "--domain", "emea", support::s(&emea)]);
    let apac = scratch.file(
        "apac.json",
        &format!(
            r#"{{"changes": [{{"op": "put", "type": "access-layer", "name": "l"}},
                {{"op": "put", "type": "access-rule", "name": "dns", "fields": {{"layer": "l", "position": 1,
                  "destination": ["{dns_uid}"], "service": ["g-dns-udp"], "action": "accept"}}}}]}}"#
        ),
    );
    ok(&["apply", "-d", a.d(), "--domain", "apac", support::s(&apac)]);
    let group = ok_json(&["get", "-d", a.d(), "--domain", "emea", "group", "resolvers", "--json"]);
    assert_eq!(group["fields"]["members"], serde_json::json!([dns_uid]), "stored as the global object's uid");
    // The global objects stay in the global domain.
    assert!(host_names(&a, "emea").is_empty());

    // A reference to nothing, here or global, is refused as before.
    let bad = scratch.file(
        "bad.json",
        r#"{"changes": [{"op": "put", "type": "group", "name": "bad", "fields": {"members": ["nowhere"]}}]}"#,
    );
    fails(&["apply", "-d", a.d(), "--domain", "emea", support::s(&bad)], 4);

    // Deleting a global object a domain uses is refused, naming the domains.
    let delete = scratch.file("del.json", r#"{"changes": [{"op": "delete", "type": "host", "name": "g-dns"}]}"#);
    let err = fails(&["apply", "-d", a.d(), support::s(&delete)], 4);
    assert!(err.contains("domain 'emea'") && err.contains("group 'resolvers'"), "{err}");
    let delete_svc =
        scratch.file("del-svc.json", r#"{"changes": [{"op": "delete", "type": "service-udp", "name": "g-dns-udp"}]}"#);
    let err = fails(&["apply", "-d", a.d(), support::s(&delete_svc)], 4);
    assert!(err.contains("domain 'apac'"), "{err}");
    // Once no domain uses it, it goes.
    let drop_group =
        scratch.file("drop.json", r#"{"changes": [{"op": "delete", "type": "group", "name": "resolvers"}]}"#);
    ok(&["apply", "-d", a.d(), "--domain", "emea", support::s(&drop_group)]);
    let err = fails(&["apply", "-d", a.d(), support::s(&delete)], 4);
    assert!(err.contains("domain 'apac'") && !err.contains("emea"), "apac still uses it: {err}");
}

/// The collision branches of `domain` on `node` that are still open.
fn open_collisions(node: &Node, domain: &str) -> Vec<Value> {
    let list = ok_json(&["collision", "show", "-d", node.d(), "--domain", domain, "--json"]);
    list["collisions"].as_array().expect("a list").iter().filter(|c| c["status"] == "open").cloned().collect()
}

/// Every revision of `domain` on `node`, newest first.
fn revisions(node: &Node, domain: &str) -> Vec<Value> {
    let list = ok_json(&["revisions", "-d", node.d(), "--domain", domain, "-n", "100000", "--json"]);
    list["revisions"].as_array().expect("a list").clone()
}

#[test]
fn a_collision_in_one_domain_is_merged_there_while_the_others_are_unaffected() {
    let scratch = Scratch::new();
    let (a, pa, b, pb) = scratch.pair_behind_proxies();
    wait_peers_synchronized(&a, &["b"]);
    // emea led by a, apac by b, on the same two servers and over the same link.
    ok(&["domain", "create", "-d", a.d(), "emea", "--on", "a,b"]);
    ok(&["domain", "create", "-d", a.d(), "apac", "--on", "b,a"]);
    wait_domain_converged("emea", &a, &[&b]);
    wait_domain_converged("apac", &b, &[&a]);
    publish(&scratch, &a, "emea", "e-base", 3);
    publish(&scratch, &b, "apac", "p-base", 3);
    wait_domain_converged("emea", &a, &[&b]);
    wait_domain_converged("apac", &b, &[&a]);
    let apac_epoch = status_in(&b, "apac")["node"]["epoch"].clone();
    let apac_before = revisions(&b, "apac");

    // apac keeps publishing on b through everything below.
    let apac_load = Publisher::start_in(Some("apac"), "p", vec![Api::of(&b)]);
    wait_until("publishes into apac", || apac_load.count() >= 2);

    // a and b cut apart: emea's Active a keeps publishing, not knowing that b is forced to take
    // emea over and publishes there too. emea's history forks; apac's and the global domain's
    // do not, since neither changes its Active.
    pa.partition();
    pb.partition();
    let cut_off = Publisher::start_in(Some("emea"), "cut", vec![Api::of(&a)]);
    wait_until("the cut-off active of emea to publish", || cut_off.count() >= 2);
    let forced = ok_json(&["changeover", "-d", b.d(), "--domain", "emea", "--force", "--yes", "--json"]);
    assert_eq!((forced["active"].as_str(), forced["forced"].as_bool()), (Some("b"), Some(true)), "{forced}");
    publish(&scratch, &b, "emea", "e-new", 2);
    wait_until("the cut-off active of emea to publish more", || cut_off.count() >= 4);
    let cut_off = cut_off.stop();
    assert_eq!(status_in(&a, "emea")["node"]["role"], "active", "a never learned while apart");
    pa.heal();
    pb.heal();

    // The fork is a collision of emea only, kept on b, its Active.
    wait_until("a to step down in emea and its branch to be kept", || {
        status_in(&a, "emea")["node"]["role"] == "standby" && !open_collisions(&b, "emea").is_empty()
    });
    let branch = open_collisions(&b, "emea").remove(0);
    assert_eq!(branch["node"], "a", "{branch}");
    assert_eq!(branch["revisions"].as_u64(), Some(cut_off.len() as u64), "every unsynced revision: {branch}");
    assert_eq!(status_in(&b, "emea")["collisions_open"], 1);
    for n in [&a, &b] {
        for domain in ["apac", "global"] {
            let list = ok_json(&["collision", "show", "-d", n.d(), "--domain", domain, "--json"]);
            assert_eq!(list["collisions"], serde_json::json!([]), "{domain} on {}", n.name);
            assert_eq!(status_in(n, domain)["collisions_open"], 0, "{domain} on {}", n.name);
        }
    }
    assert_eq!(status_in(&b, "apac")["node"]["role"], "active");
    assert_eq!(status_in(&a, "global")["node"]["role"], "active");

    // Merged in emea: both sides' hosts there, on both servers, and the branch resolved.
    let id = branch["id"].to_string();
    let merged = ok_json(&["collision", "resolve", "-d", b.d(), "--domain", "emea", &id, "--merge", "--json"]);
    assert!(!merged["revision"].is_null(), "a merge publishes a revision: {merged}");
    let apac_acked = apac_load.stop();
    wait_domain_converged("emea", &b, &[&a]);
    wait_domain_converged("apac", &b, &[&a]);
    for n in [&a, &b] {
        let held = host_names(n, "emea");
        let want = cut_off
            .iter()
            .cloned()
            .chain((0..3).map(|i| format!("e-base-{i}")))
            .chain(["e-new-0".into(), "e-new-1".into()]);
        let missing: Vec<String> = want.filter(|h| !held.contains(h)).collect();
        assert!(missing.is_empty(), "emea on {} lacks {missing:?}", n.name);
        assert!(held.iter().all(|h| h.starts_with("e-") || h.starts_with("cut-")), "only emea's hosts: {held:?}");
    }
    assert!(open_collisions(&b, "emea").is_empty());
    let list = ok_json(&["collision", "show", "-d", b.d(), "--domain", "emea", "--json"]);
    let kept = list["collisions"].as_array().expect("a list").iter().find(|c| c["id"] == branch["id"]).cloned();
    assert_eq!(kept.map(|c| c["status"].clone()), Some(Value::from("resolved")), "{list}");
    assert_eq!(status_in(&b, "emea")["collisions_open"], 0);

    // apac: every acknowledged publish on both servers, no collision, and one unbroken chain at
    // the epoch it started with, the same on both, its older revisions as they were.
    for n in [&a, &b] {
        let held = host_names(n, "apac");
        let missing: Vec<&String> = apac_acked.iter().filter(|h| !held.contains(*h)).collect();
        assert!(missing.is_empty(), "apac on {} lacks acknowledged publishes {missing:?}", n.name);
        assert!(held.iter().all(|h| h.starts_with("p-")), "only apac's hosts: {held:?}");
        assert_eq!(status_in(n, "apac")["node"]["epoch"], apac_epoch, "apac's epoch did not move");
        assert!(open_collisions(n, "apac").is_empty());
    }
    let chain = revisions(&b, "apac");
    assert_eq!(chain, revisions(&a, "apac"), "the same history on both servers");
    assert!(chain.len() >= apac_before.len() + apac_acked.len(), "one revision per acknowledged publish");
    assert_eq!(chain[chain.len() - apac_before.len()..], apac_before[..], "the older revisions are unchanged");
    for pair in chain.windows(2) {
        assert_eq!(pair[0]["parent"], pair[1]["id"], "an unbroken chain");
        assert_eq!(pair[0]["seq"].as_u64(), pair[1]["seq"].as_u64().map(|s| s + 1));
    }
    let last = chain.last().expect("revisions");
    assert_eq!(last["seq"], 1);
    let epochs: BTreeSet<u64> = chain.iter().filter_map(|r| r["epoch"].as_u64()).collect();
    assert_eq!(epochs.len(), 1, "every revision of apac at one epoch: {epochs:?}");
}

#[test]
fn each_domain_keeps_the_revisions_it_is_given() {
    let scratch = Scratch::new();
    let a = start_one(&scratch, "a");
    ok(&["domain", "create", "-d", a.d(), "short", "--on", "a", "--retain-revisions", "50"]);
    ok(&["domain", "create", "-d", a.d(), "long", "--on", "a"]);
    let retention = |name: &str| {
        let list = ok_json(&["domain", "list", "-d", a.d(), "--json"]);
        list["domains"].as_array().expect("a list").iter().find(|d| d["name"] == name).expect(name)["retain_revisions"]
            .clone()
    };
    assert_eq!(retention("short"), 50);
    assert_eq!(retention("long"), Value::Null, "the servers' setting");
    wait_until("both domains to be active on a", || {
        ["short", "long"].iter().all(|d| status_in(&a, d)["node"]["role"] == "active")
    });
    for i in 0..10 {
        publish(&scratch, &a, "short", &format!("s{i}"), 1);
        publish(&scratch, &a, "long", &format!("l{i}"), 1);
    }

    // Fewer than before: the Active purges at once; the other domain keeps its history.
    let set = ok_json(&["domain", "retain", "-d", a.d(), "short", "3", "--json"]);
    assert_eq!(set["retain_revisions"], 3, "{set}");
    assert_eq!(revisions(&a, "short").len(), 3);
    assert_eq!(revisions(&a, "long").len(), 10);
    assert_eq!(host_names(&a, "short").len(), 10, "purging history keeps every object");

    ok(&["domain", "retain", "-d", a.d(), "short", "--servers-setting"]);
    assert_eq!(retention("short"), Value::Null);
    fails(&["domain", "retain", "-d", a.d(), "global", "3"], EXIT_INVALID);
    fails(&["domain", "retain", "-d", a.d(), "nowhere", "3"], EXIT_NOT_FOUND);
}

#[test]
fn a_revert_of_the_global_domain_keeps_what_a_domain_elsewhere_uses() {
    let scratch = Scratch::new();
    let (a, b) = start_pair(&scratch);
    // A domain held on b only: a cannot ask its own stores whether it uses a global object.
    ok(&["domain", "create", "-d", a.d(), "remote", "--on", "b"]);
    let before = status_in(&a, "global")["head"]["seq"].as_u64().expect("a head");
    let global = scratch.file(
        "g.json",
        r#"{"changes": [{"op": "put", "type": "host", "name": "g-ntp", "fields": {"ipv4-address": "10.0.0.123"}}]}"#,
    );
    ok(&["apply", "-d", a.d(), support::s(&global)]);
    wait_until("b to hold the global object and the domain", || {
        mgha(&["get", "-d", b.d(), "host", "g-ntp"]).status.success()
            && status_in(&b, "remote")["node"]["role"] == "active"
    });
    let uses = scratch.file(
        "uses.json",
        r#"{"changes": [{"op": "put", "type": "group", "name": "ntp", "fields": {"members": ["g-ntp"]}}]}"#,
    );
    ok(&["apply", "-d", b.d(), "--domain", "remote", support::s(&uses)]);

    // Reverting the global domain to before the object would delete it: refused, naming the user.
    let err = fails(&["revert", "-d", a.d(), &before.to_string()], 4);
    assert!(err.contains("domain 'remote'") && err.contains("group 'ntp'"), "{err}");
    assert!(mgha(&["get", "-d", a.d(), "host", "g-ntp"]).status.success(), "the global object stays");
}

/// Whether the Active of `domain` on `active` sees every one of `followers` connected and
/// synchronized.
fn sees_synchronized(domain: &str, active: &Node, followers: &[&Node]) -> bool {
    let lead = status_in(active, domain);
    let peers = lead["peers"].as_array().cloned().unwrap_or_default();
    lead["node"]["role"] == "active"
        && followers.iter().all(|f| {
            peers
                .iter()
                .any(|p| p["name"] == f.name.as_str() && p["status"] == "synchronized" && p["connected"] == true)
        })
}

#[test]
fn a_rebalance_asked_on_a_standby_spreads_the_actives_over_every_replica() {
    let scratch = Scratch::new();
    let (a, b, c) = three(&scratch);
    let names: Vec<String> = (1..=6).map(|i| format!("d{i}")).collect();
    for name in &names {
        ok(&["domain", "create", "-d", a.d(), name, "--on", "a,b,c"]);
    }
    for name in &names {
        wait_until(&format!("a to see b and c synchronized in {name}"), || sees_synchronized(name, &a, &[&b, &c]));
    }
    // Asked on b, a Standby of all six: only each domain's Active (a) sees c's replicas
    // synchronized, and the plan is made from its view, so c gets its share too.
    let plan = ok_json(&["domain", "rebalance", "-d", b.d(), "--json"]);
    let moves = plan["moves"].as_array().expect("moves");
    assert_eq!(moves.len(), 4, "{plan}\n{}", b.log());
    assert!(moves.iter().all(|m| m["error"].is_null() && m["epoch"].is_u64()), "{plan}");
    for (node, want) in [(&a, 2), (&b, 2), (&c, 2)] {
        wait_until(&format!("{} to hold {want} Actives", node.name), || {
            names.iter().filter(|d| status_in(node, d)["node"]["role"] == "active").count() == want
        });
    }
}
