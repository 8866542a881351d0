//! Running under a service manager: the daemon tells systemd it is ready through
//! `$NOTIFY_SOCKET` (sd_notify, as `Type=notify` in dist/mgha.service expects) once its admin
//! API answers, and that it stops on SIGTERM; with `log_format = "json"` every log line is one
//! JSON object. Real daemons, a real Unix datagram socket.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};

use support::*;

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a notification within the deadline");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn daemon_notifies_ready_and_stopping_and_logs_json() {
    let scratch = Scratch::new();
    let node = scratch.init("n");
    node.put_config("log_format", "\"json\"");
    let path = scratch.path("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");

    let child = Command::new(env!("CARGO_BIN_EXE_mgha"))
        .args(["run", "-d", node.d()])
        .env("NOTIFY_SOCKET", &path)
        .env_remove("MGHA_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("daemon starts");
    let mut daemon = Daemon { child };
    assert_eq!(recv(&socket), "READY=1");
    // Ready means ready: the admin API answers at once.
    assert!(node.http_status().is_some(), "READY=1 came before the admin API answered");

    let stderr = daemon.child.stderr.take().expect("stderr");
    assert_eq!(daemon.terminate(), Some(0));
    assert_eq!(recv(&socket), "STOPPING=1");

    let lines: Vec<String> = BufReader::new(stderr).lines().map(|l| l.expect("log line")).collect();
    assert!(lines.len() >= 3, "{lines:?}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string() && v["time_ms"].is_u64(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("\"message\":\"admin API listening\"")), "{lines:?}");
}
