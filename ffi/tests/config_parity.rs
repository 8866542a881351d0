//! One config file, two front ends: a node made by `mgha init`, its `mgha.toml` given a value
//! other than the default for every key, is served by the daemon (`mgha run`) and then opened by
//! a C program through libmgha (`examples/c/failover.c`, `mgha_engine_open_path`). Both report
//! the settings they run with in their status document (`settings`); the test compares them key
//! by key, with each other and with the file. The file asks for automatic failover through a
//! real etcd, so both front ends also start the same arbiter from it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cc::{compile, compiler};
use common::{lib_dir, profile_dir};
use mgha_tests::etcd::Etcd;
use mgha_tests::process::ChildGuard;
use serde_json::{json, Value};

/// Every key of the effective settings, each away from its default; automatic failover through
/// a real etcd (`ETCD_URL` is replaced by its client URL).
const EXTRA_KEYS: &str = r#"
retain_revisions = 500
sync_standbys = 1
sync_timeout_ms = 1234
heartbeat_ms = 250
peer_timeout_ms = 900
changeover_timeout_ms = 4321
failover = "etcd"
failover_after_ms = 3000
max_lag_revisions = 77
etcd_endpoints = ["ETCD_URL"]
etcd_prefix = "/parity"
"#;

fn mgha_bin() -> PathBuf {
    let path = std::env::var_os("MGHA_BIN").map(PathBuf::from).unwrap_or_else(|| profile_dir().join("mgha"));
    assert!(path.is_file(), "no mgha binary at {}: build the workspace or set MGHA_BIN", path.display());
    path
}

/// `settings` of the daemon's `GET /v1/status`, once it answers.
fn daemon_settings(dir: &Path) -> Value {
    let config: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.join("mgha.toml")).expect("config")).expect("toml");
    let admin = config["admin"].as_str().expect("admin").to_string();
    let token = std::fs::read_to_string(dir.join("admin.token")).expect("token");
    let child = Command::new(mgha_bin())
        .args(["run", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mgha run");
    let mut daemon = ChildGuard::new(child);
    let agent = ureq::Agent::config_builder().proxy(None).build().new_agent();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status: Value = loop {
        let answer = agent
            .get(&format!("http://{admin}/v1/status"))
            .header("Authorization", &format!("Bearer {}", token.trim()))
            .call();
        if let Ok(mut resp) = answer {
            break resp.body_mut().read_json().expect("status JSON");
        }
        assert!(daemon.try_wait().expect("wait").is_none(), "mgha run exited");
        assert!(Instant::now() < deadline, "the daemon did not answer in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    daemon.kill().expect("kill the daemon");
    status["settings"].clone()
}

/// `settings` of `mgha_engine_status_json`, from a C program that opened `config`.
fn engine_settings(config: &Path, work: &Path) -> Value {
    let exe = work.join("failover-c");
    compile(&compiler("CC", "cc"), "-std=c11", "examples/c/failover.c", &exe, false);
    let child = Command::new(&exe)
        .arg("run")
        .arg(config)
        .env("LD_LIBRARY_PATH", lib_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the C program");
    let mut guard = ChildGuard::new(child);
    let mut stdin = guard.child().stdin.take().expect("stdin");
    let mut stdout = BufReader::new(guard.child().stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    assert_eq!(line.trim_end(), "ready", "the C program did not open the node");
    writeln!(stdin, "status").expect("ask for status");
    line.clear();
    stdout.read_line(&mut line).expect("status line");
    let json = line.trim_end().strip_prefix("ok ").unwrap_or_else(|| panic!("status failed: {line}"));
    let status: Value = serde_json::from_str(json).expect("status JSON");
    writeln!(stdin, "quit").expect("quit");
    drop(stdin);
    let exit = guard.child().wait().expect("wait");
    assert!(exit.success(), "the C program exited {exit}");
    status["settings"].clone()
}

#[test]
fn the_daemon_and_libmgha_run_one_config_file_with_the_same_settings() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("node");
    let init = Command::new(mgha_bin())
        .args(["init", "--name", "parity", "--data-dir"])
        .arg(&dir)
        .output()
        .expect("mgha init");
    assert!(init.status.success(), "mgha init: {}", String::from_utf8_lossy(&init.stderr));
    // The node's identity and addresses as init chose them; every other key as written here.
    let config = dir.join("mgha.toml");
    let written: toml::Value = toml::from_str(&std::fs::read_to_string(&config).expect("config")).expect("toml");
    let mut text = String::new();
    for key in ["name", "admin", "listen"] {
        text.push_str(&format!("{key} = {}\n", written[key]));
    }
    let etcd = Etcd::start();
    text.push_str(&EXTRA_KEYS.replace("ETCD_URL", &etcd.url()));
    std::fs::write(&config, &text).expect("write config");
    let file: toml::Value = toml::from_str(&text).expect("toml");

    let daemon = daemon_settings(&dir);
    let engine = engine_settings(&config, work.path());
    let (Some(d), Some(e)) = (daemon.as_object(), engine.as_object()) else {
        panic!("a status without settings: daemon {daemon}, engine {engine}");
    };
    let keys: Vec<&String> = d.keys().collect();
    assert_eq!(keys, e.keys().collect::<Vec<_>>(), "the two front ends report different keys");
    for key in keys {
        assert_eq!(d[key], e[key], "key '{key}': the daemon runs {}, libmgha {}", d[key], e[key]);
        // Every key the file sets is what both run with (`listen` as written: port fixed by init).
        if let Some(v) = file.get(key.as_str()) {
            let expected = serde_json::to_value(v).expect("toml value as JSON");
            assert_eq!(d[key], expected, "key '{key}': the file says {expected}, the node runs {}", d[key]);
        }
    }
    for key in ["retain_revisions", "sync_timeout_ms", "heartbeat_ms", "changeover_timeout_ms", "etcd_prefix"] {
        assert!(d.contains_key(key), "settings lack '{key}'");
    }
    assert_eq!(d["max_lag_revisions"], json!(77));
    assert_eq!(d["failover"], json!("etcd"));
}
