//! A full disk under real daemons: each node whose disk fills has its data directory on a small
//! tmpfs that the test mounts itself (and unmounts in a guard, also when a test fails; without
//! root the tests print why and skip). A publish on a full disk is HTTP 500 `io` and leaves
//! nothing behind, the store is never latched, and publishing resumes once space is freed, in
//! the same process. Under quorum failover (three daemons), the Active whose disk is full stops
//! renewing its lease and a Standby takes over; the old Active, now a Standby that cannot apply,
//! shows *apply failing* with the cause on the new Active, and catches up once space is freed.

mod support;

use mgha_tests::smallfs::{SmallFs, BIG_COMMENT_BYTES};
use serde_json::Value;
use support::*;

/// The small filesystem: a fresh node takes about 2 MiB of it.
const FS_BYTES: u64 = 16 * 1024 * 1024;
const HEARTBEAT_MS: u64 = 250;
const FAILOVER_AFTER_MS: u64 = 2000;

/// Mounts the small filesystem on `path` (the node's data directory), or prints why the test
/// cannot run here.
fn mount_or_skip(path: &std::path::Path) -> Option<SmallFs> {
    match SmallFs::mount_at(path, FS_BYTES) {
        Ok(fs) => Some(fs),
        Err(why) => {
            eprintln!("SKIPPED: the disk-full tests mount a tmpfs, which needs root: {why}");
            None
        }
    }
}

/// A changeset of `n` hosts with `comment_bytes` of comments each.
fn big_hosts(prefix: &str, n: usize, comment_bytes: usize) -> String {
    let changes: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({"op": "put", "type": "host", "name": format!("{prefix}-{i}"),
                "fields": {"ipv4-address": format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256),
                           "comments": "c".repeat(comment_bytes)}})
        })
        .collect();
    serde_json::json!({"message": prefix, "changes": changes}).to_string()
}

/// `POST /v1/publish`: the HTTP status and the JSON answer.
fn publish(node: &Node, changeset: &str) -> (u16, Value) {
    let token = std::fs::read_to_string(node.dir.join("admin.token")).expect("token");
    let agent = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .new_agent();
    let mut resp = agent
        .post(format!("http://{}/v1/publish", node.admin()))
        .header("authorization", format!("Bearer {}", token.trim()))
        .header("content-type", "application/json")
        .send(changeset)
        .expect("the daemon answers");
    (resp.status().as_u16(), resp.body_mut().read_json().unwrap_or(Value::Null))
}

fn status(node: &Node) -> Value {
    node.http_status().unwrap_or(Value::Null)
}

fn peer<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    s["peers"].as_array().into_iter().flatten().find(|p| p["name"] == name)
}

#[test]
fn a_full_disk_fails_publishes_with_io_and_publishing_resumes_without_a_restart() {
    let scratch = Scratch::new();
    let Some(fs) = mount_or_skip(&scratch.path("a")) else {
        return;
    };
    let mut a = scratch.init("a");
    a.start();
    let (code, first) = publish(&a, &hosts("before", 20));
    assert_eq!(code, 201, "{first}");
    let head = status(&a)["head"].clone();
    let pid = a.daemon.as_ref().map(|d| d.child.id());

    fs.fill(0).expect("fill the disk");
    let big = big_hosts("big", 400, BIG_COMMENT_BYTES);
    for attempt in 0..3 {
        let (code, body) = publish(&a, &big);
        assert_eq!(code, 500, "attempt {attempt}: {body}");
        assert_eq!(body["error"]["code"], "io", "attempt {attempt}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.contains("Previous I/O"), "the store stayed latched: {message}");
    }
    let s = status(&a);
    assert_eq!(s["head"], head, "nothing of the failed publishes is visible: {s}");
    assert_eq!(s["store_fault"]["kind"], "disk-full", "{s}");
    assert_eq!(s["store_fault"]["reopened"], true, "{s}");
    assert!(a.metrics().contains("mgha_store_write_failing 1\n"));
    assert!(ok(&["get", "-d", a.d(), "host", "before-7"]).contains("10.0.0.7"), "reads go on");
    assert!(ok(&["status", "-d", a.d()]).contains("CANNOT WRITE"), "the CLI shows it");
    fails(&["get", "-d", a.d(), "host", "big-0"], 5);
    let big_file = scratch.file("big.json", &big);
    fails(&["apply", "-d", a.d(), support::s(&big_file)], 10);

    fs.free().expect("free the disk");
    let (code, body) = publish(&a, &big);
    assert_eq!(code, 201, "publishing resumes once space is free: {body}");
    let s = status(&a);
    assert_eq!(s["head"]["seq"].as_u64(), head["seq"].as_u64().map(|n| n + 1), "{s}");
    assert!(s["store_fault"].is_null(), "the fault is gone after a commit: {s}");
    assert!(a.metrics().contains("mgha_store_write_failing 0\n"));
    assert_eq!(a.daemon.as_ref().map(|d| d.child.id()), pid, "the same process, no restart");
    ok(&["check", "-d", a.d()]);
    assert_eq!(a.terminate(), Some(0));
}

/// [`wait_until`], with the nodes' statuses and the tails of their logs when it times out.
fn wait_logged(what: &str, nodes: &[&Node], mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !done() {
        if std::time::Instant::now() > deadline {
            for n in nodes {
                let log = n.log();
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| {
                        !l.contains("a write to the store failed")
                            && !l.contains("reopened the store")
                            && !l.contains("RaftMsg")
                            && !l.contains("RPCError")
                            && !l.contains("peer connection refused")
                    })
                    .collect();
                eprintln!("--- {}: {}\n{}", n.name, status(n), lines[lines.len().saturating_sub(30)..].join("\n"));
            }
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn toml_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", "))
}

#[test]
fn under_quorum_failover_a_full_active_hands_over_and_catches_up_as_a_standby_once_space_is_freed() {
    let scratch = Scratch::new();
    let Some(fs) = mount_or_skip(&scratch.path("a")) else {
        return;
    };
    let mut a = scratch.init("a");
    a.start();
    let b = scratch.join(&a, "b");
    let c = scratch.join(&a, "c");
    a.terminate();
    let q = free_addrs(3);
    let members: Vec<String> = ["a", "b", "c"].iter().zip(&q).map(|(n, addr)| format!("{n}={addr}")).collect();
    let mut nodes = [a, b, c];
    for (n, addr) in nodes.iter().zip(&q) {
        n.set_config("heartbeat_ms", &HEARTBEAT_MS.to_string());
        n.set_config("peer_timeout_ms", "1000");
        n.put_config("failover", "\"quorum\"");
        n.put_config("failover_after_ms", &FAILOVER_AFTER_MS.to_string());
        n.put_config("quorum_listen", &format!("\"{addr}\""));
        n.put_config("quorum_members", &toml_list(&members));
    }
    for n in nodes.iter_mut() {
        n.start();
    }
    let [a, b, c] = &nodes;
    wait_until("a to hold the arbiter's lease", || {
        status(a)["failover"]["lease_left_ms"].as_u64().is_some_and(|l| l > 0)
    });
    let (code, body) = publish(a, &hosts("before", 10));
    assert_eq!(code, 201, "{body}");
    wait_peers_synchronized(a, &["b", "c"]);

    // a's disk fills: its next publish fails, and it stops renewing its lease.
    fs.fill(0).expect("fill a's disk");
    let (code, body) = publish(a, &big_hosts("big", 400, BIG_COMMENT_BYTES));
    assert_eq!((code, &body["error"]["code"]), (500, &Value::from("io")), "{body}");
    wait_until("b or c to take over", || [b, c].iter().any(|n| status(n)["node"]["role"] == "active"));
    let new_active = if status(b)["node"]["role"] == "active" { b } else { c };
    wait_logged("a to step down", &[a, b, c], || status(a)["node"]["role"] == "standby");
    assert!(
        a.log().contains("not renewing the lease: the store cannot write"),
        "a says why it let its lease go:\n{}",
        a.log()
    );

    // The new Active publishes what a cannot store: a shows apply-failing with the cause.
    let (code, body) = publish(new_active, &big_hosts("after", 400, BIG_COMMENT_BYTES));
    assert_eq!(code, 201, "{body}");
    wait_logged("the new active to show a apply-failing, disk full", &[a, b, c], || {
        let s = status(new_active);
        peer(&s, "a").is_some_and(|p| {
            p["status"] == "apply-failing" && p["apply_error"].as_str().is_some_and(|e| e.contains("disk full"))
        })
    });
    let own = status(a);
    assert_eq!(own["store_fault"]["kind"], "disk-full", "{own}");
    assert!(
        own["peers"].as_array().into_iter().flatten().any(|p| p["status"] == "apply-failing"),
        "a shows it in its own status too: {own}"
    );
    wait_logged("the metrics to show a apply-failing", &[a, b, c], || {
        new_active.metrics().contains("mgha_peer_status{peer=\"a\",status=\"apply-failing\"} 1\n")
    });

    // Space freed: a catches up by itself, in the same process.
    fs.free().expect("free a's disk");
    wait_logged("a to catch up", &[a, b, c], || status(a)["head"] == status(new_active)["head"]);
    wait_until("the new active to show a synchronized", || {
        let s = status(new_active);
        peer(&s, "a").is_some_and(|p| p["status"] == "synchronized" && p["apply_error"].is_null())
    });
    wait_until("a's fault to clear", || status(a)["store_fault"].is_null());
    assert!(a.http_status().is_some_and(|s| s["objects"] == status(new_active)["objects"]));
    drop(nodes);
    drop(fs);
}
