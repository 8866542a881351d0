//! Clusters of real `mgha` processes on loopback: a Primary and Secondaries made with `init`,
//! `join-key` and `join`, run as daemons, driven through the CLI, stopped with SIGTERM and
//! killed with SIGKILL. Each test has its own temp dir and free ports; guards kill every daemon
//! when a test ends or fails.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const EXIT_READ_ONLY: i32 = 7;
const EXIT_PEER: i32 = 13;

fn head(v: &Value) -> (u64, String, String) {
    let h = &v["head"];
    (h["seq"].as_u64().expect("seq"), h["id"].to_string(), h["state_hash"].to_string())
}

#[test]
fn three_secondaries_follow_twenty_publishes() {
    let scratch = Scratch::new();
    let mut p = scratch.init("p");
    p.start();
    let mut secondaries: Vec<Node> = ["s1", "s2", "s3"].iter().map(|n| scratch.join(&p, n)).collect();
    for s in &mut secondaries {
        s.start();
    }
    for i in 0..20 {
        let file = scratch.file(&format!("c{i}.json"), &hosts(&format!("batch{i}"), 5));
        let out = ok(&["apply", "-d", p.d(), s(&file)]);
        assert!(out.contains(&format!("revision {} published", i + 1)), "{out}");
    }
    let followers: Vec<&Node> = secondaries.iter().collect();
    wait_converged(&p, &followers);
    wait_peers_synchronized(&p, &["s1", "s2", "s3"]);

    let primary = p.status();
    assert_eq!(head(&primary).0, 20);
    for node in &secondaries {
        let st = node.status();
        assert_eq!(head(&st), head(&primary), "{} has the primary's head and state hash", node.name);
        assert_eq!(st["node"]["role"], "standby");
        assert_eq!(st["active"], "p", "{} names the active it follows", node.name);
        assert_eq!(st["objects"], 100);
    }
    let peers = primary["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 3, "{primary}");
    for peer in peers {
        assert_eq!(peer["status"], "synchronized", "{peer}");
        assert_eq!(peer["lag_revisions"], 0, "{peer}");
        assert_eq!(peer["connected"], true, "{peer}");
        assert_eq!(peer["head"], primary["head"], "{peer}");
    }
    let table = ok(&["status", "-d", p.d()]);
    for name in ["s1", "s2", "s3"] {
        let line = table.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {table}"));
        assert!(line.contains("synchronized") && line.contains("ago"), "{line}");
    }
    let standby = ok(&["status", "-d", secondaries[0].d()]);
    assert!(standby.contains("follows") && standby.contains("'p'"), "{standby}");

    let token = std::fs::read_to_string(p.dir.join("admin.token")).expect("token");
    let agent = ureq::Agent::config_builder().proxy(None).build().new_agent();
    let metrics = agent
        .get(format!("http://{}/metrics", p.admin()))
        .header("authorization", format!("Bearer {}", token.trim()))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    for line in [
        "mgha_role{role=\"active\"} 1",
        "mgha_peer_lag_revisions{peer=\"s2\"} 0",
        "mgha_peer_connected{peer=\"s3\"} 1",
        "mgha_peer_status{peer=\"s1\",status=\"synchronized\"} 1",
        "mgha_peer_status{peer=\"s1\",status=\"lagging\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    for node in secondaries.iter_mut().chain(std::iter::once(&mut p)) {
        assert_eq!(node.terminate(), Some(0), "{} stops cleanly on SIGTERM", node.name);
    }
}

#[test]
fn join_key_works_once_and_expires() {
    let scratch = Scratch::new();
    let mut p = scratch.init("p");
    // Issued through the store: no daemon runs yet.
    let offline_key = p.join_key("10m");
    p.start();
    ok(&["join", "-d", s(&scratch.path("a")), "--name", "a", "--peer", &p.listen(), "--key", &offline_key]);

    let again = scratch.path("again");
    let err =
        fails(&["join", "-d", s(&again), "--name", "again", "--peer", &p.listen(), "--key", &offline_key], EXIT_PEER);
    assert!(err.contains("already used"), "{err}");
    assert!(!again.exists(), "a failed join leaves nothing behind");

    let short = p.join_key("1s");
    std::thread::sleep(Duration::from_secs(2));
    let late = scratch.path("late");
    let err = fails(&["join", "-d", s(&late), "--name", "late", "--peer", &p.listen(), "--key", &short], EXIT_PEER);
    assert!(err.contains("expired"), "{err}");
    assert!(!late.exists());

    // A key of another cluster: the joiner refuses this primary's certificate before it sends
    // the secret.
    let other = scratch.init("other");
    let foreign = other.join_key("10m");
    let stray = scratch.path("stray");
    let err = fails(&["join", "-d", s(&stray), "--name", "stray", "--peer", &p.listen(), "--key", &foreign], EXIT_PEER);
    assert!(err.contains("cluster"), "{err}");
    assert!(!stray.exists());

    // An unreachable peer, and a directory with the user's files in it, which is never touched.
    let mine = scratch.path("mine");
    std::fs::create_dir_all(&mine).expect("mkdir");
    std::fs::write(mine.join("notes.txt"), "mine").expect("write");
    let err = fails(&["join", "-d", s(&mine), "--name", "m", "--peer", &p.listen(), "--key", &p.join_key("1m")], 1);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&mine).expect("dir").count(), 1);
    let dead = free_addrs(1)[0].to_string();
    let err = fails(
        &["join", "-d", s(&scratch.path("d")), "--name", "d", "--peer", &dead, "--key", &p.join_key("1m")],
        EXIT_PEER,
    );
    assert!(err.contains(&dead), "{err}");
    assert!(!scratch.path("d").exists());

    let json = ok_json(&["join-key", "-d", p.d(), "--json", "--expires", "2d"]);
    assert_eq!(json["expires_ms"], 172_800_000);
    assert!(json["key"].as_str().is_some_and(|k| k.starts_with("mgha1.")), "{json}");
    fails(&["join-key", "-d", p.d(), "--expires", "2w"], 2);
    assert_eq!(p.terminate(), Some(0));
}

#[test]
fn standby_refuses_publish_naming_the_active() {
    let scratch = Scratch::new();
    let mut p = scratch.init("primary-a");
    p.start();
    let mut b = scratch.join(&p, "b");
    b.start();
    wait_peers_synchronized(&p, &["b"]);
    let file = scratch.file("web.json", &hosts("web", 3));
    let err = fails(&["apply", "-d", b.d(), s(&file)], EXIT_READ_ONLY);
    assert!(err.contains("read-only") && err.contains("'primary-a'"), "{err}");
    ok(&["apply", "-d", p.d(), s(&file)]);
    wait_converged(&p, &[&b]);
    let err = fails(&["revert", "-d", b.d(), "0"], EXIT_READ_ONLY);
    assert!(err.contains("'primary-a'"), "{err}");

    // An admin session could never publish there: the standby refuses to open one, the same way.
    let token = std::fs::read_to_string(b.dir.join("admin.token")).expect("token");
    let agent = ureq::Agent::config_builder().proxy(None).http_status_as_error(false).build().new_agent();
    let url = |path: &str| format!("http://{}{path}", b.admin());
    let auth = format!("Bearer {}", token.trim());
    let mut opened = agent
        .post(url("/v1/sessions"))
        .header("authorization", &auth)
        .send_json(serde_json::json!({"author": "eve"}))
        .expect("open answers");
    assert_eq!(opened.status(), 503);
    let body: Value = opened.body_mut().read_json().expect("json");
    assert_eq!(body["error"]["code"], "read-only");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("'primary-a'")), "{body}");
    assert_eq!(b.status()["sessions"], 0, "no session was opened");
    assert_eq!(b.status()["head"]["seq"], 1, "the standby kept the active's history only");
}

#[test]
fn standby_killed_during_full_sync_converges_after_restart() {
    let scratch = Scratch::new();
    let mut p = scratch.init("p");
    p.start();
    // Enough objects that a full sync takes a while even on a fast machine.
    for i in 0..2 {
        let file = scratch.file(&format!("bulk{i}.json"), &hosts(&format!("bulk{i}"), 25_000));
        ok(&["apply", "-d", p.d(), s(&file)]);
    }
    let mut b = scratch.join(&p, "b");
    let partial = b.dir.join("mgha.redb.sync");
    let started = Instant::now();
    b.spawn();
    wait_until("the full sync to start", || partial.exists());
    // Into the transfer, yet early: the whole sync takes seconds at this size.
    let kill_at = (Instant::now() + Duration::from_millis(30)).max(started + Duration::from_millis(150));
    std::thread::sleep(kill_at.saturating_duration_since(Instant::now()));
    let killed_after = started.elapsed();
    b.kill();
    assert!(partial.exists(), "killed during the full sync");
    let offline = b.status();
    assert_eq!(offline["head"]["seq"], 0, "the interrupted full sync was not installed: {offline}");
    assert_eq!(offline["objects"], 0);
    eprintln!("standby killed {} ms after `run` started", killed_after.as_millis());

    b.start();
    wait_converged(&p, &[&b]);
    wait_peers_synchronized(&p, &["b"]);
    assert!(!partial.exists(), "the partial snapshot is gone");
    let (ps, bs) = (p.status(), b.status());
    assert_eq!(head(&bs), head(&ps));
    assert_eq!(bs["objects"], 50_000);
    ok_json(&["get", "-d", b.d(), "--json", "host", "bulk1-24999"]);
}

#[test]
fn stopped_secondary_catches_up_by_revisions() {
    let scratch = Scratch::new();
    let mut p = scratch.init("p");
    p.start();
    let mut b = scratch.join(&p, "b");
    b.start();
    for i in 0..3 {
        ok(&["apply", "-d", p.d(), s(&scratch.file(&format!("a{i}.json"), &hosts(&format!("a{i}"), 4)))]);
    }
    wait_converged(&p, &[&b]);
    assert_eq!(b.terminate(), Some(0));
    for i in 0..5 {
        ok(&["apply", "-d", p.d(), s(&scratch.file(&format!("m{i}.json"), &hosts(&format!("missed{i}"), 4)))]);
    }
    wait_until("the primary to see b unreachable and 5 behind", || {
        p.http_status().is_some_and(|s| {
            s["peers"].as_array().into_iter().flatten().any(|x| x["status"] == "unreachable" && x["lag_revisions"] == 5)
        })
    });
    assert_eq!(b.status()["head"]["seq"], 3, "the stopped secondary's own store is behind");

    b.start();
    wait_converged(&p, &[&b]);
    wait_peers_synchronized(&p, &["b"]);
    assert_eq!(head(&b.status()), head(&p.status()));
    let revs = ok_json(&["revisions", "-d", b.d(), "--json", "-n", "20"]);
    let seqs: Vec<u64> =
        revs["revisions"].as_array().expect("revisions").iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert_eq!(seqs, vec![8, 7, 6, 5, 4, 3, 2, 1], "the missed revisions arrived one by one, not as a snapshot");
}

#[test]
fn synchronous_publish_is_on_the_standby_when_apply_returns() {
    let scratch = Scratch::new();
    let mut p = scratch.init("p");
    p.set_config("sync_standbys", "1");
    p.set_config("sync_timeout_ms", "1500");
    p.start();
    let mut b = scratch.join(&p, "b");
    b.start();
    wait_peers_synchronized(&p, &["b"]);
    for i in 0..10 {
        let file = scratch.file(&format!("s{i}.json"), &hosts(&format!("sync{i}"), 2));
        ok(&["apply", "-d", p.d(), s(&file)]);
        // Right after apply returned, with no waiting: the standby has it.
        let host = ok_json(&["get", "-d", b.d(), "--json", "host", &format!("sync{i}-1")]);
        assert_eq!(host["name"], format!("sync{i}-1"));
    }

    assert_eq!(b.terminate(), Some(0));
    let file = scratch.file("alone.json", &hosts("alone", 1));
    let err = fails(&["apply", "-d", p.d(), s(&file)], EXIT_PEER);
    assert!(err.contains("0 of the 1") && err.contains("published on this node"), "{err}");
    assert_eq!(p.status()["head"]["seq"], 11, "the revision is committed on the active");

    // Offline nothing can reach a standby: the publish is refused, not committed.
    assert_eq!(p.terminate(), Some(0));
    let err = fails(&["apply", "--offline", "-d", p.d(), s(&scratch.file("off.json", &hosts("off", 1)))], 1);
    assert!(err.contains("sync_standbys") && err.contains("nothing was published"), "{err}");
    assert_eq!(p.status()["head"]["seq"], 11);
}
