//! Cluster membership with real `mgha` daemons on loopback: `mgha member remove` on the Active,
//! a removed member's certificate refused, a lost member joining again under its old name with
//! a new key, and member lists that diverged (a node stopped while members left and joined)
//! converging to one list on every node.

mod support;

use serde_json::Value;
use support::*;

const EXIT_NOT_FOUND: i32 = 5;
const EXIT_CONFLICT: i32 = 6;
const EXIT_READ_ONLY: i32 = 7;
const EXIT_PEER: i32 = 13;

/// `mgha member list --json` of a running node: (name, node id) pairs, sorted by name.
fn members(node: &Node) -> Vec<(String, String)> {
    let list = ok_json(&["member", "list", "-d", node.d(), "--json"]);
    list["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (m["name"].as_str().expect("name").to_string(), m["node_id"].as_str().expect("id").to_string()))
        .collect()
}

fn node_id(node: &Node) -> String {
    node.status()["node"]["node_id"].as_str().expect("node id").to_string()
}

fn peer_names(status: &Value) -> Vec<String> {
    let mut names: Vec<String> = status["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn removed_member_is_refused_and_joins_again_under_its_name_and_lists_converge() {
    let scratch = Scratch::new();
    let mut p = scratch.init("p");
    p.fast_timers();
    p.start();
    let mut b = scratch.join(&p, "b");
    let mut c = scratch.join(&p, "c");
    for n in [&mut b, &mut c] {
        n.fast_timers();
        n.start();
    }
    ok(&["apply", "-d", p.d(), s(&scratch.file("one.json", &hosts("one", 3)))]);
    wait_converged(&p, &[&b, &c]);
    let old_b = node_id(&b);
    let names = |list: &[(String, String)]| list.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    wait_until("every node to list the three members", || {
        [&p, &b, &c].iter().all(|n| names(&members(n)) == ["b", "c", "p"])
    });

    // What the node refuses, with nothing changed: the Active itself, a name that is no member,
    // and a removal asked of a Standby.
    let err = fails(&["member", "remove", "p", "-d", p.d()], EXIT_CONFLICT);
    assert!(err.contains("is the active"), "{err}");
    fails(&["member", "remove", "nobody", "-d", p.d()], EXIT_NOT_FOUND);
    let err = fails(&["member", "remove", "c", "-d", b.d()], EXIT_READ_ONLY);
    assert!(err.contains("on the active 'p'"), "{err}");
    // b's name is taken while b is a member: a join under it says how to free it.
    let again = scratch.path("b-again");
    let key = p.join_key("10m");
    let err = fails(&["join", "-d", s(&again), "--name", "b", "--peer", &p.listen(), "--key", &key], EXIT_PEER);
    assert!(err.contains("mgha member remove b"), "{err}");

    // c stops and misses what follows: its list diverges from the others'.
    c.terminate();
    // b is lost (its disk, say): it is removed on the Active.
    b.kill();
    let out = ok(&["member", "remove", "b", "-d", p.d()]);
    assert!(out.contains("member 'b'") && out.contains(&old_b), "{out}");
    assert_eq!(names(&members(&p)), ["c", "p"]);
    wait_until("the active to drop the removed member from its peers", || {
        p.http_status().is_some_and(|s| !peer_names(&s).contains(&"b".to_string()))
    });

    // A new b joins under the old name, with a new key and a new identity.
    let key = p.join_key("10m");
    ok(&["join", "-d", s(&again), "--name", "b", "--peer", &p.listen(), "--key", &key]);
    let mut new_b = Node::new(again, "b");
    new_b.fast_timers();
    new_b.start();
    let new_id = node_id(&new_b);
    assert_ne!(new_id, old_b, "a member that joins again is a new node");
    ok(&["apply", "-d", p.d(), s(&scratch.file("two.json", &hosts("two", 3)))]);
    wait_converged(&p, &[&new_b]);

    // c comes back with the old b in its list and without the new one: every list converges
    // to the Active's, and c follows the Active.
    c.start();
    wait_converged(&p, &[&new_b, &c]);
    wait_until("every node to list p, c and the new b", || {
        let lists = [members(&p), members(&new_b), members(&c)];
        lists.iter().all(|l| *l == lists[0]) && lists[0].iter().any(|(n, id)| n == "b" && *id == new_id)
    });
    assert!(!members(&c).iter().any(|(_, id)| *id == old_b), "the removed b is gone from c's list");

    // The old b comes back from the dead with its old certificate: every node refuses it, and it
    // gets no revision.
    let before = b.status()["head"]["seq"].as_u64().expect("seq");
    b.start();
    wait_until("the active to refuse the removed member's certificate", || {
        p.log().contains("was removed from the cluster; its certificate is refused")
    });
    wait_until("the removed member to learn that it was removed", || {
        b.log().contains("this node was removed from the cluster")
    });
    ok(&["apply", "-d", p.d(), s(&scratch.file("three.json", &hosts("three", 3)))]);
    wait_converged(&p, &[&new_b, &c]);
    let old = b.http_status().expect("the old b answers");
    assert_eq!(old["head"]["seq"].as_u64(), Some(before), "the removed member received nothing: {old}");
    let status = p.http_status().expect("p answers");
    assert_eq!(peer_names(&status), ["b", "c"], "{status}");
    assert!(
        status["peers"].as_array().expect("peers").iter().all(|peer| peer["node_id"] != old_b.as_str()),
        "{status}"
    );
    b.kill();
}
