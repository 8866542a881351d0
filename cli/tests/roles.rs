//! Roles with real `mgha` processes: planned changeover back and forth under continuous
//! publishing, forced changeover while the old Active keeps publishing behind a partition (its
//! every unsynced revision kept as a collision branch, then resolved each way), and SIGKILL of
//! either node in the middle of a changeover (never two Actives at one epoch, nothing
//! acknowledged lost: an old Active that restarts at its old epoch may take a publish before it
//! meets the new one, and that publish is kept as a branch and merged). Each test has its own
//! temp dir, free ports, fault proxies where it partitions, and guards that kill every process
//! it started.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mgha_tests::process::ChildGuard;
use rand::Rng;
use serde_json::Value;
use support::publisher::*;
use support::*;

const ROUNDS: usize = 20;
const EXIT_CONFLICT: i32 = 6;

/// (role, epoch) of each node that answers.
fn roles(nodes: &[&Node]) -> Vec<Option<(String, u64)>> {
    nodes
        .iter()
        .map(|n| {
            n.http_status().map(|s| {
                (s["node"]["role"].as_str().unwrap_or("").to_string(), s["node"]["epoch"].as_u64().unwrap_or(0))
            })
        })
        .collect()
}

/// Fails if two nodes claim to be Active at one epoch; returns the Actives.
fn actives(nodes: &[&Node]) -> Vec<usize> {
    let seen = roles(nodes);
    let active: Vec<usize> =
        (0..nodes.len()).filter(|&i| seen[i].as_ref().is_some_and(|(r, _)| r == "active")).collect();
    for w in active.windows(2) {
        assert_ne!(seen[w[0]].as_ref().map(|r| r.1), seen[w[1]].as_ref().map(|r| r.1), "two actives at one epoch");
    }
    active
}

#[test]
fn planned_changeover_under_load_loses_nothing() {
    let scratch = Scratch::new();
    let (a, b) = start_pair(&scratch);
    let nodes = [&a, &b];
    let load = Publisher::start("load", vec![Api::of(&a), Api::of(&b)]);
    let mut last_epoch = 0;
    for round in 0..ROUNDS {
        let (from, to) = (round % 2, 1 - round % 2);
        // Asked on the Active, or on the Standby, which forwards it.
        let ask = if round % 4 < 2 { from } else { to };
        let done = ok_json(&["changeover", "-d", nodes[ask].d(), "--to", &nodes[to].name, "--json"]);
        assert_eq!(done["active"], nodes[to].name.as_str(), "{done}");
        assert_eq!(done["forced"], false);
        let epoch = done["epoch"].as_u64().expect("epoch");
        assert!(epoch > last_epoch, "epochs only grow: {epoch} after {last_epoch}");
        last_epoch = epoch;
        assert_eq!(roles(&nodes)[to], Some(("active".to_string(), epoch)), "round {round}");
        // Asked on the target, the answer can come before the old Active has read the target's
        // confirmation; it is fenced meanwhile, and steps down as soon as it has.
        wait_until("the old active to step down", || {
            roles(&nodes)[from].as_ref().is_some_and(|r| r.0 == "standby" && r.1 == epoch)
        });
        std::thread::sleep(Duration::from_millis(30));
    }
    let acked = load.stop();
    assert!(acked.len() > ROUNDS, "publishing went on between changeovers: {} acknowledged", acked.len());
    wait_converged(&a, &[&b]);
    assert_all_present(&acked, &nodes);
    assert_eq!(actives(&nodes), vec![0], "after an even number of changeovers, a is the only active");
    let table = ok(&["status", "-d", a.d()]);
    assert!(table.contains(&format!("{}.0", ROUNDS + 1)), "status shows the epoch as round.tag: {table}");

    // b, a Secondary that followed an Active, holds the cluster CA key: it can be promoted.
    let promoted = ok_json(&["promote", "-d", b.d(), "--json"]);
    assert_eq!(promoted["designation"], "primary", "{promoted}");
    assert!(ok(&["join-key", "-d", b.d()]).starts_with("mgha1."), "the promoted node issues join keys");
    assert!(fails(&["promote", "-d", b.d()], 3).contains("already the primary"));
}

#[test]
fn forced_changeover_keeps_every_cut_off_revision_in_the_branch() {
    let started = Instant::now();
    let scratch = Scratch::new();
    let (mut a, pa, mut b, pb) = scratch.pair_behind_proxies();
    let nodes = [&a, &b];
    let mut active = 0;
    for round in 0..ROUNDS {
        let (x, y) = (nodes[active], nodes[1 - active]);
        wait_converged(x, &[y]);
        wait_peers_synchronized(x, &[&y.name]);
        pa.partition();
        pb.partition();
        // The old Active keeps publishing: it cannot know it was replaced.
        let cut_off = Publisher::start(&format!("r{round}-{}", x.name), vec![Api::of(x)]);
        wait_until("the cut-off active to publish", || cut_off.count() >= 2);
        let forced = ok_json(&["changeover", "-d", y.d(), "--force", "--yes", "--json"]);
        assert_eq!((forced["active"].as_str(), forced["forced"].as_bool()), (Some(y.name.as_str()), Some(true)));
        let mine = format!("r{round}-{}", y.name);
        ok(&["apply", "-d", y.d(), s(&scratch.file(&format!("{mine}.json"), &hosts(&mine, 1)))]);
        wait_until("the cut-off active to publish more", || cut_off.count() >= 4);
        let published = cut_off.stop();
        assert_eq!(roles(&[x])[0].as_ref().map(|r| r.0.as_str()), Some("active"), "x never learned while apart");
        pa.heal();
        pb.heal();

        let open = |n: &Node| -> Vec<Value> {
            let list = ok_json(&["collision", "show", "-d", n.d(), "--json"]);
            list["collisions"].as_array().expect("list").iter().filter(|c| c["status"] == "open").cloned().collect()
        };
        wait_until("the old active to step down and its branch to be kept", || {
            roles(&[x])[0].as_ref().is_some_and(|r| r.0 == "standby") && !open(y).is_empty()
        });
        let branch = open(y).remove(0);
        assert_eq!(branch["node"], x.name.as_str(), "{branch}");
        assert_eq!(branch["revisions"].as_u64(), Some(published.len() as u64), "every unsynced revision: {branch}");
        assert_eq!(y.status()["collisions_open"], 1);
        let id = branch["id"].to_string();
        if round == 0 {
            let metrics = y.metrics();
            assert!(metrics.contains("mgha_collisions_open 1\n"), "{metrics}");
            assert!(metrics.contains("mgha_epoch_round 2\n"), "{metrics}");
            let diff = ok_json(&["collision", "diff", "-d", y.d(), &id, "--json"]);
            assert_eq!(diff["branch_changes"].as_array().map(Vec::len), Some(published.len()), "{diff}");
            assert_eq!(diff["active_changes"].as_array().map(Vec::len), Some(1), "{diff}");
            assert_eq!(diff["conflicts"], serde_json::json!([]), "new hosts on both sides do not conflict");
        }
        let how = ["active", "branch", "merge"][round % 3];
        let resolved = match how {
            "merge" => ok_json(&["collision", "resolve", "-d", y.d(), &id, "--merge", "--json"]),
            side => ok_json(&["collision", "resolve", "-d", y.d(), &id, "--keep", side, "--json"]),
        };
        assert_eq!(resolved["revision"].is_null(), how == "active", "{resolved}");
        wait_converged(y, &[x]);
        let theirs = hosts_on(y);
        let (kept_x, kept_y) = (published.iter().all(|h| theirs.contains(h)), theirs.contains(&format!("{mine}-0")));
        match how {
            "active" => assert!(!kept_x && kept_y, "keep active: only y's work"),
            "branch" => assert!(kept_x && !kept_y, "keep branch: only x's work"),
            _ => assert!(kept_x && kept_y, "merge: both sides' work"),
        }
        assert_eq!(hosts_on(x), theirs, "round {round}: both nodes hold the same hosts");
        assert_eq!(actives(&nodes), vec![1 - active]);
        active = 1 - active;
    }
    assert!(started.elapsed() < Duration::from_secs(90), "took {:?}", started.elapsed());

    // The last branch stays on record on the node that detected it (the Active now), and reads
    // the same from its store once the daemon is stopped.
    let last = nodes[active].name.clone();
    let holder = if a.name == last { &mut a } else { &mut b };
    assert_eq!(holder.terminate(), Some(0));
    let list = ok_json(&["collision", "show", "--offline", "-d", holder.d(), "--json"]);
    let branches = list["collisions"].as_array().expect("list");
    let newest = branches.last().expect("the last round's branch is on record");
    assert_eq!(newest["status"], "resolved", "{list}");
    let id = newest["id"].to_string();
    ok_json(&["collision", "diff", "--offline", "-d", holder.d(), &id, "--json"]);
    let again = fails(&["collision", "resolve", "--offline", "-d", holder.d(), &id, "--merge"], 3);
    assert!(again.contains("already resolved"), "{again}");
}

#[test]
fn sigkill_during_changeover_never_makes_two_actives_at_one_epoch() {
    let scratch = Scratch::new();
    let (mut a, mut b) = start_pair(&scratch);
    let load = Publisher::start("kill", vec![Api::of(&a), Api::of(&b)]);
    let mut rng = rand::thread_rng();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    let mut merged = 0;
    for round in 0..ROUNDS {
        let from = settle(&mut a, &mut b, round, &mut merged);
        let names = [a.name.clone(), b.name.clone()];
        let dirs = [a.d().to_string(), b.d().to_string()];
        let mut changeover = ChildGuard::new(
            Command::new(env!("CARGO_BIN_EXE_mgha"))
                .args(["changeover", "-d", &dirs[from], "--to", &names[1 - from], "--json"])
                .env("MGHA_LOG", "error")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("changeover runs"),
        );
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..60)));
        let killed_active = rng.gen_bool(0.5);
        let victim = if killed_active == (from == 0) { &mut a } else { &mut b };
        victim.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        let code = loop {
            if let Some(status) = changeover.try_wait().expect("wait") {
                break status.code();
            }
            assert!(Instant::now() < deadline, "the changeover command hangs");
            std::thread::sleep(Duration::from_millis(10));
        };
        let who = if killed_active { "active" } else { "target" };
        *outcomes.entry(format!("{who} killed, changeover exit {code:?}")).or_default() += 1;
        victim.start();
        actives(&[&a, &b]);
    }
    settle(&mut a, &mut b, ROUNDS, &mut merged);
    let acked = load.stop();
    let leader = if actives(&[&a, &b]) == vec![0] { &a } else { &b };
    let other = if std::ptr::eq(leader, &a) { &b } else { &a };
    wait_converged(leader, &[other]);
    eprintln!("{} publishes acknowledged, {merged} collision branches merged; {outcomes:?}", acked.len());
    assert_all_present(&acked, &[&a, &b]);
    assert!(!acked.is_empty());
}

/// Waits until exactly one node is Active and the other follows it, synchronized; forces one
/// when a changeover cut short left none (the documented way out), and merges a collision
/// branch when an Active restarted at its old epoch took a publish before it met the newer one
/// (kept as a branch, never dropped; `merged` counts them). Returns the Active's index.
fn settle(a: &mut Node, b: &mut Node, round: usize, merged: &mut usize) -> usize {
    let started = Instant::now();
    let mut resolved = BTreeSet::new();
    loop {
        let nodes = [&*a, &*b];
        let elapsed = started.elapsed();
        match actives(&nodes).as_slice() {
            [one] => {
                let (x, y) = (nodes[*one], nodes[1 - one]);
                let status = x.http_status().unwrap_or(Value::Null);
                let peer = status["peers"].as_array().into_iter().flatten().find(|p| p["name"] == y.name.as_str());
                match peer.map(|p| (p["status"].as_str().unwrap_or(""), p["connected"] == true)) {
                    Some(("synchronized", true)) if peer.is_some_and(|p| p["head"] == status["head"]) => return *one,
                    Some(("collision", _)) => {
                        let list = ok_json(&["collision", "show", "-d", x.d(), "--json"]);
                        for c in list["collisions"].as_array().into_iter().flatten() {
                            let id = c["id"].to_string();
                            if c["status"] == "open" && resolved.insert(id.clone()) {
                                eprintln!("round {round}: merging collision branch {id} of {}", c["node"]);
                                ok(&["collision", "resolve", "-d", x.d(), &id, "--merge"]);
                                *merged += 1;
                            }
                        }
                    }
                    _ => {}
                }
            }
            [] if elapsed > Duration::from_secs(4) => {
                let heads: Vec<u64> = nodes.iter().map(|n| n.status()["head"]["seq"].as_u64().unwrap_or(0)).collect();
                let pick = usize::from(heads[1] > heads[0]);
                eprintln!("round {round}: no active after the kill; forcing {}", nodes[pick].name);
                let out = mgha(&["changeover", "-d", nodes[pick].d(), "--force", "--yes"]);
                let code = out.status.code();
                assert!(code == Some(0) || code == Some(EXIT_CONFLICT), "forcing: {out:?}");
            }
            _ => {}
        }
        if elapsed > WAIT {
            panic!(
                "round {round}: no single synchronized active after {WAIT:?}: {:?}\n--- a\n{}\n--- b\n{}",
                roles(&nodes),
                tail(&a.log()),
                tail(&b.log())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn demo_runs_its_changeover_and_collision_steps_to_the_end() {
    let out = mgha(&["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the demo failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "planned changeover done",
        "every acknowledged publish is on all three nodes",
        "forced changeover done",
        "1 open branch",
        "a merge leaves no conflicts",
        "resolved: merged both sides",
        "group 'dmz' on every node: dmz-dns, dmz-mail, dmz-web",
        "demo complete",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from the demo's output:\n{stdout}");
    }
}
