//! Operating a node with the tools operators already run: a real two-node cluster's `/metrics`
//! piped to `promtool check metrics`, and the alert rules and Grafana dashboard of `docs/ops/`
//! checked by `promtool check rules` and against the series a node really exposes.
//! `promtool` comes from Debian's `prometheus` package, which scripts/test installs.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use support::*;

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `promtool` ({e}); scripts/test installs it (apt-get install prometheus)")
        });
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or_default().as_bytes()).expect("write to promtool");
    drop(input);
    let out = child.wait_with_output().expect("promtool ends");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn ops_doc(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/ops").join(name)
}

/// Metric names a rule or panel expression refers to: identifiers followed by `{`, `[`, or a
/// space and an operator, that start with one of our prefixes.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic() || bytes[i] == '_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_') {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            if word.starts_with("mgha_") || word.starts_with("process_") {
                out.insert(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The metric families of an exposition text (histogram series under their family name).
fn families(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split_whitespace().skip(2);
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
        out.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{suffix}"));
            }
        }
    }
    out
}

#[test]
fn two_node_cluster_metrics_pass_promtool_and_cover_the_ops_docs() {
    let scratch = Scratch::new();
    let mut a = scratch.init("a");
    a.start();
    let mut b = scratch.join(&a, "b");
    b.start();
    let file = scratch.file("c.json", &hosts("web", 20));
    ok(&["apply", "-d", a.d(), s(&file)]);
    wait_converged(&a, &[&b]);
    wait_peers_synchronized(&a, &["b"]);

    let mut exposed = BTreeSet::new();
    for node in [&a, &b] {
        let text = node.metrics();
        let (passed, report) = promtool(&["check", "metrics"], Some(&text));
        assert!(passed, "promtool check metrics on {}: {report}\n{text}", node.name);
        for needed in [
            "mgha_build_info{version=",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
            "mgha_peer_lag_seconds{peer=",
            "mgha_peer_sent_bytes_total{peer=",
            "mgha_peer_received_bytes_total{peer=",
        ] {
            assert!(text.contains(needed), "{} lacks {needed}:\n{text}", node.name);
        }
        exposed.extend(families(&text));
    }
    // The Active sent the revision to b: its traffic to b is counted both ways.
    let status = a.http_status().expect("status");
    let peer_b = status["peers"].as_array().into_iter().flatten().find(|p| p["name"] == "b").expect("peer b");
    assert!(peer_b["bytes_sent"].as_u64().is_some_and(|n| n > 0), "{peer_b}");
    assert!(peer_b["bytes_received"].as_u64().is_some_and(|n| n > 0), "{peer_b}");

    // Every series the rules and the dashboard use is one a node exposes (the arbiter's only
    // with automatic failover, the changeover counters once one ran: those are checked by name
    // against the renderer's families in the unit tests).
    let optional: BTreeSet<&str> = [
        "mgha_arbiter_quorum",
        "mgha_arbiter_lease_left_seconds",
        "mgha_arbiter_holder",
        "mgha_arbiter_member_up",
        "mgha_arbiter_holder_self",
    ]
    .into();
    let rules = std::fs::read_to_string(ops_doc("alerts.yml")).expect("alerts.yml");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ops_doc("grafana-dashboard.json")).expect("dashboard"))
            .expect("the dashboard is JSON");
    let mut used = metric_names(&rules);
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            used.extend(metric_names(target["expr"].as_str().expect("expr")));
        }
    }
    assert!(used.len() > 10, "{used:?}");
    for name in &used {
        assert!(
            exposed.contains(name) || optional.contains(name.as_str()),
            "{name} is used in docs/ops but not exposed"
        );
    }
}

#[test]
fn alert_rules_pass_promtool() {
    let path = ops_doc("alerts.yml");
    let (passed, report) = promtool(&["check", "rules", path.to_str().expect("utf-8")], None);
    assert!(passed, "{report}");
    assert!(report.contains("SUCCESS"), "{report}");
    let rules = std::fs::read_to_string(&path).expect("alerts.yml");
    for alert in ["MghaPeerNotSynchronized", "MghaNoActive", "MghaCollisionOpen", "MghaArbiterWithoutQuorum"] {
        assert!(rules.contains(&format!("alert: {alert}")), "{alert} missing");
    }
}

/// A GET without any token: (status, body).
fn probe(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let agent = ureq::Agent::config_builder().proxy(None).http_status_as_error(false).build().new_agent();
    let mut resp = agent.get(format!("http://{addr}{path}")).call().expect("the probe answers");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_json().unwrap_or(serde_json::Value::Null);
    (status, body)
}

#[test]
fn health_probes_answer_by_role_without_a_token() {
    let scratch = Scratch::new();
    let mut a = scratch.init("a");
    a.start();
    let mut b = scratch.join(&a, "b");
    let health = free_addrs(1)[0];
    let probes = format!("0.0.0.0:{}", health.port());
    b.put_config("health_listen", &format!("\"{probes}\""));
    b.start();
    wait_peers_synchronized(&a, &["b"]);

    let b_probes = format!("127.0.0.1:{}", health.port());
    for (addr, role) in [(a.admin(), "active"), (b.admin(), "standby"), (b_probes.clone(), "standby")] {
        let expected = serde_json::json!({"role": role, "healthy": true});
        let (status, body) = probe(&addr, "/health");
        assert_eq!((status, &body), (200, &expected), "{addr} /health");
        let (status, body) = probe(&addr, "/active");
        assert_eq!((status, &body), (if role == "active" { 200 } else { 503 }, &expected), "{addr} /active");
        let (status, body) = probe(&addr, "/standby");
        assert_eq!((status, &body), (if role == "standby" { 200 } else { 503 }, &expected), "{addr} /standby");
    }
    // The probes' listener serves nothing else; the admin API still wants its token.
    assert_eq!(probe(&b_probes, "/v1/status").0, 404);
    assert_eq!(probe(&b_probes, "/metrics").0, 404);
    assert_eq!(probe(&b.admin(), "/v1/status").0, 401);
}
