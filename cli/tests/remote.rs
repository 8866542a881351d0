//! How the CLI reaches a node: by `--endpoint` and a token file (or their `MGHA_*` variables)
//! from anywhere, and through a data directory without ever racing a starting daemon for its
//! store. Real daemons on loopback; every daemon is killed when its test ends.

mod support;

use std::process::{Command, Stdio};

use support::*;

/// `mgha` with extra environment variables; (exit code, stdout, stderr).
fn mgha_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mgha"))
        .args(args)
        .envs(env.iter().copied())
        .env("MGHA_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("mgha runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const EXIT_UNAUTHORIZED: i32 = 12;
const EXIT_NO_DAEMON: i32 = 14;

#[test]
fn cli_reaches_a_node_by_endpoint_and_token_file() {
    let scratch = Scratch::new();
    let mut a = scratch.init("a");
    a.start();
    // The operator's copy of the token, away from the data directory.
    let token = std::fs::read_to_string(a.dir.join("admin.token")).expect("token");
    let token_file = scratch.file("a.token", &token);
    let endpoint = format!("http://{}", a.admin());
    let remote = ["--endpoint", endpoint.as_str(), "--token-file", s(&token_file)];

    let web = scratch.file("web.json", &hosts("web", 3));
    let mut apply = vec!["apply"];
    apply.extend(remote);
    apply.push(s(&web));
    assert!(ok(&apply).contains("revision 1 published"));
    let mut get = vec!["get", "--json"];
    get.extend(remote);
    get.extend(["host", "web-2"]);
    assert_eq!(ok_json(&get)["fields"]["ipv4-address"], "10.0.0.2");

    // The same through the environment, with no option at all.
    let env = [("MGHA_ENDPOINT", endpoint.as_str()), ("MGHA_TOKEN_FILE", s(&token_file))];
    let (code, out, err) = mgha_env(&["status", "--json"], &env);
    assert_eq!(code, Some(0), "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!((status["node"]["name"].as_str(), status["head"]["seq"].as_u64()), (Some("a"), Some(1)));

    // A wrong token is refused by the daemon; no token, or no daemon, is said clearly.
    let wrong = scratch.file("wrong.token", "0000\n");
    let (code, _, err) = mgha_env(&["status", "--endpoint", &endpoint, "--token-file", s(&wrong)], &[]);
    assert_eq!(code, Some(EXIT_UNAUTHORIZED), "{err}");
    let (code, _, err) = mgha_env(&["status", "--endpoint", &endpoint], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--token-file"), "{err}");
    let nobody = format!("http://{}", free_addrs(1)[0]);
    let (code, _, err) = mgha_env(&["status", "--endpoint", &nobody, "--token-file", s(&token_file)], &[]);
    assert_eq!(code, Some(EXIT_NO_DAEMON), "{err}");
    assert!(err.contains("no daemon answers at"), "{err}");
}

/// `mgha run -d D &` at once followed by `mgha status -d D`, a hundred times: the command never
/// takes the store from the starting daemon. It either waits for the daemon and answers, or
/// (when it looked before the daemon opened its store) says that no daemon answers.
#[test]
fn status_during_daemon_start_never_fails_the_daemon() {
    const TRIES: usize = 100;
    let scratch = Scratch::new();
    let node = scratch.init("n");
    let (mut answered, mut refused) = (0, 0);
    for round in 0..TRIES {
        let mut daemon = Command::new(env!("CARGO_BIN_EXE_mgha"))
            .args(["run", "-d", node.d()])
            .env("MGHA_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("daemon starts");
        let out = mgha(&["status", "-d", node.d(), "--json"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(0) => answered += 1,
            Some(EXIT_NO_DAEMON) if stderr.contains("no daemon answers at") => refused += 1,
            other => panic!("round {round}: status exited {other:?}: {stderr}"),
        }
        let exited = daemon.try_wait().expect("wait");
        let _ = daemon.kill();
        let finished = daemon.wait_with_output().expect("daemon ends");
        assert!(
            exited.is_none(),
            "round {round}: the daemon failed ({exited:?}): {}",
            String::from_utf8_lossy(&finished.stderr)
        );
    }
    eprintln!("{TRIES} starts: status answered {answered} times, found no daemon yet {refused} times");
    assert_eq!(answered + refused, TRIES);
    assert!(answered > 0, "status never waited for a starting daemon");
}
