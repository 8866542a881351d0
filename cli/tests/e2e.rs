//! End to end: the built `mgha` binary through init, run, apply, get, list, revisions, diff,
//! revert, backup, verify and restore, as an operator would use it. Each test has its own temp
//! dir and free loopback port; daemons are killed by a guard even when an assertion fails.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const WEB_TIER: &str = r#"{"message": "web tier", "changes": [
    {"op": "put", "type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.1"}},
    {"op": "put", "type": "host", "name": "web2", "fields": {"ipv4-address": "10.0.0.2"}},
    {"op": "put", "type": "group", "name": "web", "fields": {"members": ["web1", "web2"]}}]}"#;

const MOVE_WEB1: &str = r#"{"changes": [
    {"op": "put", "type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.9.1", "comments": "moved"}},
    {"op": "put", "type": "host", "name": "web3", "fields": {"ipv4-address": "10.0.0.3"}}]}"#;

fn mgha(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mgha"))
        .args(args)
        .env("MGHA_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("mgha runs")
}

fn ok(args: &[&str]) -> String {
    let out = mgha(args);
    assert!(out.status.success(), "mgha {args:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok_json(args: &[&str]) -> Value {
    let text = ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("mgha {args:?} printed no JSON ({e}): {text}"))
}

/// Runs a command that must fail with `code`; returns its stderr.
fn fails(args: &[&str], code: i32) -> String {
    let out = mgha(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "mgha {args:?}: {stderr}");
    stderr
}

/// An HTTP client that ignores proxy settings from the environment: the daemon is on loopback.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().proxy(None).http_status_as_error(false).build().new_agent()
}

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    l.local_addr().expect("addr")
}

/// A node in a temp dir, initialized with a fixed free port.
struct Node {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Node {
    fn init() -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("node");
        let addr = free_addr();
        ok(&["init", "--data-dir", s(&dir), "--name", "e2e", "--admin", &addr.to_string()]);
        Node { _tmp: tmp, dir, addr }
    }

    fn d(&self) -> &str {
        s(&self.dir)
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("admin.token")).expect("token").trim().to_string()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.parent().expect("parent").join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn head(&self) -> u64 {
        ok_json(&["status", "--data-dir", self.d(), "--json"])["head"]["seq"].as_u64().expect("seq")
    }

    /// GET with an optional token; returns status and body.
    fn http(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = agent().get(format!("http://{}{path}", self.addr));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let mut resp = req.call().expect("daemon answers");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }

    fn start(&self) -> Daemon {
        // The log goes to a file: a pipe nobody reads would stall a chatty daemon.
        let log = std::fs::File::create(self.dir.parent().expect("parent").join("daemon.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_mgha"))
            .args(["run", "--data-dir", self.d()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("daemon starts");
        let mut daemon = Daemon { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        let token = self.token();
        // Poll over HTTP only: opening the store here would race the daemon for its lock.
        loop {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("daemon exited while starting: {status}");
            }
            let answered = agent()
                .get(format!("http://{}/v1/status", self.addr))
                .header("authorization", format!("Bearer {token}"))
                .call()
                .is_ok_and(|r| r.status() == 200);
            if answered {
                return daemon;
            }
            assert!(Instant::now() < deadline, "daemon did not answer in time");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A running daemon, killed on drop unless it was stopped.
struct Daemon {
    child: Child,
}

impl Daemon {
    /// SIGTERM, then the exit code.
    fn terminate(&mut self) -> Option<i32> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "daemon ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn cli_round_trip_through_a_running_daemon() {
    let node = Node::init();
    let d = node.d();
    let mode = std::fs::metadata(node.dir.join("admin.token")).expect("token").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut daemon = node.start();

    let web = node.write("web.json", WEB_TIER);
    let out = ok(&["apply", "--data-dir", d, "--author", "alice", s(&web)]);
    assert!(out.contains("revision 1 published"), "{out}");
    let moved = node.write("move.json", MOVE_WEB1);
    let rev = ok_json(&["apply", "--data-dir", d, "--json", "--message", "move web1", s(&moved)]);
    assert_eq!(rev["seq"], 2);
    assert_eq!(rev["message"], "move web1");

    let web1 = ok_json(&["get", "--data-dir", d, "--json", "host", "web1"]);
    assert_eq!(web1["fields"]["ipv4-address"], "10.0.9.1");
    let by_uid = ok_json(&["get", "--data-dir", d, "--json", "host", web1["uid"].as_str().expect("uid")]);
    assert_eq!(by_uid["name"], "web1");
    assert!(ok(&["get", "--data-dir", d, "group", "web"]).contains("members"));
    fails(&["get", "--data-dir", d, "host", "nope"], 5);

    let hosts = ok_json(&["list", "--data-dir", d, "--json", "--type", "host"]);
    assert_eq!(hosts["objects"].as_array().map(Vec::len), Some(3));
    let table = ok(&["list", "--data-dir", d]);
    assert!(table.starts_with("TYPE") && table.contains("web3"), "{table}");

    let revs = ok_json(&["revisions", "--data-dir", d, "--json"]);
    let revs = revs["revisions"].as_array().expect("revisions");
    assert_eq!(revs.iter().map(|r| r["seq"].as_u64()).collect::<Vec<_>>(), vec![Some(2), Some(1)]);
    assert_eq!(revs[1]["author"], "alice");
    assert!(ok(&["revisions", "--data-dir", d]).contains("move web1"));

    let diff = ok_json(&["diff", "--data-dir", d, "--json", "1", "2"]);
    let objects = diff["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 2, "{diff}");
    let web1_diff = objects.iter().find(|o| o["name"] == "web1").expect("web1 in diff");
    assert_eq!(web1_diff["kind"], "modified");
    let human = ok(&["diff", "--data-dir", d, "1", "2"]);
    assert!(human.contains("ipv4-address") && human.contains("10.0.9.1"), "{human}");

    let reverted = ok_json(&["revert", "--data-dir", d, "--json", "1"]);
    assert_eq!(reverted["seq"], 3);
    assert_eq!(reverted["state_hash"], revs[1]["state_hash"]);
    let web1 = ok_json(&["get", "--data-dir", d, "--json", "host", "web1"]);
    assert_eq!(web1["fields"]["ipv4-address"], "10.0.0.1");
    fails(&["get", "--data-dir", d, "host", "web3"], 5);

    let status = ok_json(&["status", "--data-dir", d, "--json"]);
    assert_eq!(status["head"]["seq"], 3);
    assert_eq!(status["node"]["role"], "active");
    assert!(ok(&["status", "--data-dir", d]).contains("daemon at"));

    let (code, metrics) = node.http("/metrics", Some(&node.token()));
    assert_eq!(code, 200);
    assert!(metrics.contains("mgha_publish_total 3\n"), "{metrics}");
    assert!(metrics.contains("mgha_head_seq 3\n"), "{metrics}");
    let (code, doc) = node.http("/openapi.json", Some(&node.token()));
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_str(&doc).expect("openapi JSON");
    assert!(doc["paths"]["/v1/publish"]["post"].is_object());

    let backup = node.dir.parent().expect("parent").join("node.backup");
    ok(&["backup", "--data-dir", d, "--out", s(&backup)]);
    fails(&["backup", "--data-dir", d, "--out", s(&backup)], 1);
    let verified = ok_json(&["verify", "--json", s(&backup)]);
    assert_eq!(verified["header"]["head"]["seq"], 3);
    assert_eq!(verified["header"]["head"]["state_hash"], status["head"]["state_hash"]);
    assert!(ok(&["verify", s(&backup)]).contains("complete and consistent"));

    let restored_dir = node.dir.parent().expect("parent").join("restored");
    let restored = ok_json(&["restore", "--json", "--in", s(&backup), "--data-dir", s(&restored_dir)]);
    assert_eq!(restored["status"]["head"], status["head"]);
    assert!(restored_dir.join("mgha.toml").exists() && restored_dir.join("admin.token").exists());
    let restored_status = ok_json(&["status", "--offline", "--data-dir", s(&restored_dir), "--json"]);
    assert_eq!(restored_status["head"], status["head"]);
    assert_ne!(std::fs::read_to_string(restored_dir.join("admin.token")).expect("token").trim(), node.token());

    assert_eq!(daemon.terminate(), Some(0), "SIGTERM stops the daemon cleanly");
}

#[test]
fn bad_changesets_exit_nonzero_and_publish_nothing() {
    let node = Node::init();
    let d = node.d();
    let _daemon = node.start();
    let web = node.write("web.json", WEB_TIER);
    ok(&["apply", "--data-dir", d, s(&web)]);

    let malformed = node.write("malformed.json", r#"{"changes": [{"op": "put", "type": "host", "name": "x",]}"#);
    let err = fails(&["apply", "--data-dir", d, s(&malformed)], 3);
    assert!(err.contains("malformed.json") && err.contains("line 1"), "{err}");

    let dangling = node.write(
        "dangling.json",
        r#"{"changes": [
            {"op": "put", "type": "host", "name": "web4", "fields": {"ipv4-address": "10.0.0.4"}},
            {"op": "put", "type": "group", "name": "web", "fields": {"members": ["web1", "web9"]}}]}"#,
    );
    let err = fails(&["apply", "--data-dir", d, s(&dangling)], 4);
    assert!(err.contains("web9") && err.contains("members") && err.contains("dangling.json"), "{err}");
    fails(&["get", "--data-dir", d, "host", "web4"], 5);

    let bad_field = node.write(
        "bad.json",
        r#"{"changes": [{"op": "put", "type": "host", "name": "web5", "fields": {"ipv4-address": "10.0.0.300"}}]}"#,
    );
    let err = fails(&["apply", "--data-dir", d, s(&bad_field)], 4);
    assert!(err.contains("ipv4-address"), "{err}");
    fails(&["apply", "--data-dir", d, "/nonexistent/changes.json"], 1);

    assert_eq!(node.head(), 1, "nothing was published");
    let (_, metrics) = node.http("/metrics", Some(&node.token()));
    assert!(metrics.contains("mgha_publish_errors_total{code=\"validation\"} 2\n"), "{metrics}");
}

#[test]
fn api_refuses_a_missing_or_wrong_token_and_a_second_daemon() {
    let node = Node::init();
    let mut daemon = node.start();
    for path in ["/v1/status", "/v1/objects", "/metrics", "/openapi.json", "/v1/backup"] {
        for token in [None, Some("not-the-token")] {
            let (code, body) = node.http(path, token);
            assert_eq!(code, 401, "{path} with {token:?}");
            let body: Value = serde_json::from_str(&body).expect("JSON error body");
            assert_eq!(body["error"]["code"], "unauthorized", "{path}");
        }
    }
    let (code, body) = node.http("/v1/revisions/99", Some(&node.token()));
    assert_eq!(code, 404);
    assert!(body.contains("not-found") && body.contains("99"), "{body}");

    let second = mgha(&["run", "--data-dir", node.d()]);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use"), "{err}");

    // The token file is the only credential: a CLI whose token is wrong is refused too.
    let token_path = node.dir.join("admin.token");
    let good = std::fs::read_to_string(&token_path).expect("token");
    std::fs::write(&token_path, "0000").expect("overwrite token");
    fails(&["status", "--data-dir", node.d()], 12);
    std::fs::write(&token_path, good).expect("restore token");

    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn commands_need_the_daemon_unless_asked_to_work_offline() {
    let node = Node::init();
    let d = node.d();
    let web = node.write("web.json", WEB_TIER);
    // Without a daemon a command refuses, naming the way out; it never opens the store itself.
    let err = fails(&["apply", "--data-dir", d, s(&web)], 14);
    assert!(err.contains("no daemon answers at") && err.contains("--offline"), "{err}");
    fails(&["status", "--data-dir", d], 14);
    let out = ok(&["apply", "--offline", "--data-dir", d, s(&web)]);
    assert!(out.contains("revision 1"), "{out}");
    assert!(ok(&["status", "--offline", "--data-dir", d]).contains("offline"));
    assert_eq!(ok_json(&["get", "--offline", "--data-dir", d, "--json", "group", "web"])["name"], "web");
    let backup = node.dir.parent().expect("parent").join("offline.backup");
    ok(&["backup", "--offline", "--data-dir", d, "--out", s(&backup)]);
    assert_eq!(ok_json(&["verify", "--json", s(&backup)])["header"]["objects"], 3);

    // What was published offline is served by the daemon once it starts; --offline is then
    // refused, since the daemon holds the store.
    let mut daemon = node.start();
    assert_eq!(node.head(), 1);
    let err = fails(&["status", "--offline", "--data-dir", d], 11);
    assert!(err.contains("drop --offline"), "{err}");
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn init_refuses_an_existing_node_and_a_bad_config_is_named() {
    let node = Node::init();
    let err = fails(&["init", "--data-dir", node.d(), "--name", "again"], 1);
    assert!(err.contains("already holds a node"), "{err}");
    let config = node.dir.join("mgha.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, format!("{text}colour = \"blue\"\n")).expect("write");
    let err = fails(&["status", "--data-dir", node.d()], 1);
    assert!(err.contains("colour"), "{err}");
    let err = fails(&["run", "--data-dir", node.d()], 1);
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn completions_and_man_pages_are_generated_from_the_command_line() {
    let bash = ok(&["completions", "bash"]);
    for word in ["_mgha()", "changeover", "--endpoint", "--offline", "--token-file"] {
        assert!(bash.contains(word), "{word} missing from the bash completion");
    }
    // The script is valid bash.
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("mgha.bash");
    std::fs::write(&script, &bash).expect("write");
    let checked = std::process::Command::new("bash").arg("-n").arg(&script).output().expect("bash runs");
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    for shell in ["zsh", "fish"] {
        assert!(ok(&["completions", shell]).contains("changeover"), "{shell}");
    }
    fails(&["completions", "tcsh"], 2);

    let page = ok(&["man"]);
    assert!(page.starts_with(".ie") || page.contains(".TH mgha 1"), "{page}");
    assert!(page.contains("changeover"), "{page}");
    let pages = dir.path().join("man");
    ok(&["man", "--out", s(&pages)]);
    for name in ["mgha.1", "mgha-status.1", "mgha-collision-resolve.1"] {
        let text = std::fs::read_to_string(pages.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name}: {text}");
    }
    let status = std::fs::read_to_string(pages.join("mgha-status.1")).expect("status page");
    assert!(status.contains("endpoint"), "{status}");
}

/// An access rule as Check Point's management API writes it, `"source": ["Any"]`, publishes,
/// and is stored as the string `"Any"`: the same object as the other spelling.
#[test]
fn any_written_as_a_list_publishes_and_is_stored_as_the_string() {
    let node = Node::init();
    let mut daemon = node.start();
    let d = node.d();
    let rules = node.write(
        "rules.json",
        r#"{"message": "rules", "changes": [
        {"op": "put", "type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.1"}},
        {"op": "put", "type": "access-layer", "name": "Network"},
        {"op": "put", "type": "access-rule", "name": "web in", "fields": {"layer": "Network", "position": 1,
            "source": ["Any"], "destination": ["web1"], "service": ["Any"], "action": "accept"}}]}"#,
    );
    ok(&["apply", "--data-dir", d, s(&rules)]);
    let rule = ok_json(&["get", "--data-dir", d, "--json", "access-rule", "web in"]);
    assert_eq!((&rule["fields"]["source"], &rule["fields"]["service"]), (&Value::from("Any"), &Value::from("Any")));
    // The string spelling is the same object: nothing to publish.
    let same = node.write(
        "same.json",
        r#"{"changes": [{"op": "put", "type": "access-rule", "name": "web in", "fields": {"layer": "Network",
            "position": 1, "source": "Any", "destination": ["web1"], "service": "Any", "action": "accept"}}]}"#,
    );
    let err = fails(&["apply", "--data-dir", d, s(&same)], 4);
    assert!(err.contains("nothing to publish"), "{err}");
    // "Any" among references is refused, naming the field: it is no object's name.
    let mixed = node.write(
        "mixed.json",
        r#"{"changes": [{"op": "put", "type": "access-rule", "name": "mixed", "fields": {"layer": "Network",
            "position": 2, "source": ["Any", "web1"], "action": "accept"}}]}"#,
    );
    let err = fails(&["apply", "--data-dir", d, s(&mixed)], 4);
    assert!(err.contains("'source'") && err.contains("'Any'"), "{err}");
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn diffs_and_revisions_name_referenced_objects_and_show_uids_on_request() {
    let node = Node::init();
    let mut daemon = node.start();
    let d = node.d();
    ok(&["apply", "--data-dir", d, s(&node.write("web.json", WEB_TIER))]);
    let regroup = node.write(
        "regroup.json",
        r#"{"changes": [
        {"op": "put", "type": "host", "name": "web4", "fields": {"ipv4-address": "10.0.0.4"}},
        {"op": "put", "type": "group", "name": "web", "fields": {"members": ["web1", "web4"]}}]}"#,
    );
    ok(&["apply", "--data-dir", d, s(&regroup)]);
    let uid = |name: &str| ok_json(&["get", "--data-dir", d, "--json", "host", name])["uid"].as_str().map(String::from);
    let (web2, web4) = (uid("web2").expect("web2's uid"), uid("web4").expect("web4's uid"));

    let human = ok(&["diff", "--data-dir", d, "1", "2"]);
    assert!(human.contains("members  + host web4  - host web2"), "{human}");
    let by_uid = ok(&["diff", "--data-dir", d, "--uids", "1", "2"]);
    assert!(by_uid.contains(&format!("members  + {web4}  - {web2}")), "{by_uid}");

    // The document keeps the values as stored and names each referenced object beside them.
    let doc = ok_json(&["diff", "--data-dir", d, "--json", "1", "2"]);
    assert_eq!(doc["refs"][&web4], serde_json::json!({"type": "host", "name": "web4"}), "{doc}");
    assert_eq!(doc["refs"][&web2], serde_json::json!({"type": "host", "name": "web2"}), "{doc}");

    let rev = ok(&["revision", "--data-dir", d, "2"]);
    assert!(rev.contains(r#"members=["host web1","host web4"]"#), "{rev}");
    let rev_uids = ok(&["revision", "--data-dir", d, "--uids", "2"]);
    assert!(rev_uids.contains(&web4) && !rev_uids.contains("host web4"), "{rev_uids}");
    let rev_doc = ok_json(&["revision", "--data-dir", d, "--json", "2"]);
    assert_eq!(rev_doc["refs"][&web4]["name"], "web4", "{rev_doc}");
    assert_eq!(daemon.terminate(), Some(0));
}
