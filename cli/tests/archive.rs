//! No history is lost to a collision, with real `mgha` daemons: an old Active publishes while
//! cut off, a Standby is forced to take over, the branch is resolved, and the old Active, whose
//! store a full sync replaced, still answers `revisions`, `revision 1` and `diff 1 2` as the
//! Active does. Its diverged store is browsable with `mgha archive list|show`, through the
//! daemon and `--offline` alike, and a damaged archive is reported, never a crash.

mod support;

use serde_json::Value;
use support::*;

const EXIT_INVALID: i32 = 3;
const EXIT_NOT_FOUND: i32 = 5;
const EXIT_CORRUPT: i32 = 9;

fn revisions(n: &Node) -> Value {
    ok_json(&["revisions", "-d", n.d(), "-n", "1000", "--json"])
}

#[test]
fn a_diverged_node_keeps_the_history_and_its_archive_is_browsable() {
    let scratch = Scratch::new();
    let (mut a, pa, b, pb) = scratch.pair_behind_proxies();
    for i in 0..3 {
        ok(&["apply", "-d", a.d(), s(&scratch.file(&format!("h{i}.json"), &hosts(&format!("h{i}"), 2)))]);
    }
    wait_converged(&a, &[&b]);
    wait_peers_synchronized(&a, &["b"]);

    // Apart, both publish: a does not know it was replaced.
    pa.partition();
    pb.partition();
    for i in 0..2 {
        ok(&["apply", "-d", a.d(), s(&scratch.file(&format!("cut{i}.json"), &hosts(&format!("cut{i}"), 1)))]);
    }
    ok(&["changeover", "-d", b.d(), "--force", "--yes"]);
    ok(&["apply", "-d", b.d(), s(&scratch.file("new.json", &hosts("new", 1)))]);
    pa.heal();
    pb.heal();
    let open = || -> Vec<Value> {
        let list = ok_json(&["collision", "show", "-d", b.d(), "--json"]);
        list["collisions"].as_array().expect("list").iter().filter(|c| c["status"] == "open").cloned().collect()
    };
    wait_until("the branch to be kept", || !open().is_empty());
    let id = open()[0]["id"].to_string();
    ok(&["collision", "resolve", "-d", b.d(), &id, "--keep", "active"]);
    wait_converged(&b, &[&a]);

    // The node a full sync brought back answers for the whole history, as the Active does.
    assert_eq!(a.status()["node"]["role"], "standby");
    assert_eq!(a.status()["floor"]["seq"], 0, "no retention: the floor stays at 0");
    let listed = revisions(&a);
    assert_eq!(listed, revisions(&b));
    assert_eq!(listed["revisions"].as_array().map(Vec::len), Some(4), "{listed}");
    for args in [vec!["revision", "1"], vec!["diff", "1", "2"], vec!["diff", "0", "4"]] {
        let on = |n: &Node| {
            let mut full = args.clone();
            full.extend(["-d", n.d(), "--json"]);
            ok_json(&full)
        };
        assert_eq!(on(&a), on(&b), "{args:?}");
    }
    ok(&["check", "-d", a.d()]);

    // The diverged store is in the archive: listed with why, its head, floor and revisions.
    let list = ok_json(&["archive", "list", "-d", a.d(), "--json"]);
    let archives = list["archives"].as_array().expect("archives");
    assert_eq!(archives.len(), 1, "{list}");
    let entry = &archives[0];
    assert_eq!(entry["reason"], "diverged", "{entry}");
    assert_eq!((entry["head"]["seq"].as_u64(), entry["floor"]["seq"].as_u64()), (Some(5), Some(0)), "{entry}");
    assert_eq!(entry["revisions"], 5, "{entry}");
    assert!(entry.get("damage").is_none(), "{entry}");
    let name = entry["name"].as_str().expect("name").to_string();
    let table = ok(&["archive", "list", "-d", a.d()]);
    assert!(table.contains(&name) && table.contains("diverged"), "{table}");

    // Browsed through the daemon, then offline: the branch's revisions are all there.
    browse(&a, &b, &name, false);
    let shown = ok(&["archive", "show", "-d", a.d(), &name, "--revision", "4"]);
    assert!(shown.contains("cut0-0"), "{shown}");
    assert_eq!(a.terminate(), Some(0));
    browse(&a, &b, &name, true);

    // Wrong names are refused; a damaged archive is reported, never a crash.
    fails(&["archive", "show", "--offline", "-d", a.d(), "../mgha.redb"], EXIT_INVALID);
    fails(&["archive", "show", "--offline", "-d", a.d(), "1-rev9.mghabak"], EXIT_NOT_FOUND);
    let dir = a.dir.join("archive");
    let mut bytes = std::fs::read(dir.join(&name)).expect("read the archive");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(dir.join("2-rev5.mghabak"), &bytes).expect("write");
    std::fs::write(dir.join("3-damaged.redb"), b"not a store at all, just some bytes").expect("write");
    let err = fails(&["archive", "show", "--offline", "-d", a.d(), "2-rev5.mghabak"], EXIT_CORRUPT);
    assert!(err.contains("2-rev5.mghabak"), "the damage names the file: {err}");
    let out = mgha(&["archive", "show", "--offline", "-d", a.d(), "3-damaged.redb"]);
    assert!(!out.status.success() && out.status.code() != Some(101), "{out:?}");
    a.start();
    let list = ok_json(&["archive", "list", "-d", a.d(), "--json"]);
    let archives = list["archives"].as_array().expect("archives");
    assert_eq!(archives.len(), 3, "{list}");
    let damaged = archives.iter().find(|e| e["name"] == "3-damaged.redb").expect("listed");
    assert_eq!(damaged["reason"], "damaged");
    assert!(damaged["damage"].is_string() && damaged["head"].is_null(), "{damaged}");
    fails(&["archive", "show", "-d", a.d(), "2-rev5.mghabak"], EXIT_CORRUPT);
    ok(&["archive", "list", "-d", a.d()]);
    // No view of an archive is left behind in the data directory.
    let views = std::fs::read_dir(&a.dir)
        .expect("data dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".archive-view-"))
        .count();
    assert_eq!(views, 0);
}

/// Archive `name` of `a` shows the diverged branch (revisions 1 to 5, the last two published
/// while cut off), and its shared history reads as the live history of `b`.
fn browse(a: &Node, b: &Node, name: &str, offline: bool) {
    let with = |args: &[&str]| {
        let mut full = args.to_vec();
        if offline {
            full.push("--offline");
        }
        full.extend(["-d", a.d(), "--json"]);
        ok_json(&full)
    };
    let revs = with(&["archive", "show", name]);
    let seqs: Vec<u64> = revs["revisions"].as_array().expect("list").iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert_eq!(seqs, vec![5, 4, 3, 2, 1], "{revs}");
    let cut = with(&["archive", "show", name, "--revision", "5"]);
    assert_eq!(cut["changes"][0]["after"]["name"], "cut1-0", "{cut}");
    let diff = with(&["archive", "show", name, "--diff", "3", "5"]);
    let names: Vec<&str> =
        diff["objects"].as_array().expect("objects").iter().filter_map(|o| o["name"].as_str()).collect();
    assert_eq!(names, vec!["cut0-0", "cut1-0"], "{diff}");
    let live = ok_json(&["revision", "1", "-d", b.d(), "--json"]);
    assert_eq!(with(&["archive", "show", name, "--revision", "1"]), live);
}
