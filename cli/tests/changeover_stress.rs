//! Planned changeovers back to back among three real `mgha` daemons while two publishers keep
//! publishing: each changeover goes to the next node in turn through `POST /v1/changeover`,
//! asked of a node that rotates on its own cycle (the Active, the target, the third node). Every
//! request must be answered, done or refused, within `changeover_timeout_ms` plus the forwarding
//! margin; after each one exactly one node must be Active within a heartbeat; at the end every
//! acknowledged publish must be on every node and the nodes at one head. The temp dir, ports
//! and processes are the test's own, and a guard kills every daemon it started.
//!
//! `MGHA_STRESS_CHANGEOVERS=N` changes the number of changeovers (300 by default, about 110 s on
//! two cores).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::publisher::*;
use support::*;

const HEARTBEAT_MS: u64 = 250;
const CHANGEOVER_TIMEOUT_MS: u64 = 3000;
/// `FORWARD_MARGIN_MS` of the core: how much longer a changeover asked on a Standby may take.
const FORWARD_MARGIN_MS: u64 = mgha_sync::FORWARD_MARGIN_MS;
/// Scheduling and HTTP slack on top of a request's bound (two cores, three daemons, two
/// publishers and the other tests).
const SLACK_MS: u64 = 1000;

fn tuned(node: &Node) {
    node.set_config("heartbeat_ms", &HEARTBEAT_MS.to_string());
    node.set_config("peer_timeout_ms", "2000");
    node.set_config("changeover_timeout_ms", &CHANGEOVER_TIMEOUT_MS.to_string());
}

/// `POST /v1/changeover {"to": target}` on `node`: the status and the JSON answer.
fn changeover(node: &Api, target: &str) -> (u16, Value) {
    let agent = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent();
    let mut resp = agent
        .post(format!("http://{}/v1/changeover", node.admin))
        .header("authorization", format!("Bearer {}", node.token))
        .send_json(serde_json::json!({ "to": target }))
        .expect("the daemon answers");
    (resp.status().as_u16(), resp.body_mut().read_json().unwrap_or(Value::Null))
}

/// The nodes whose daemon says it is Active.
fn actives(nodes: &[&Node]) -> Vec<usize> {
    (0..nodes.len()).filter(|&i| nodes[i].http_status().is_some_and(|s| s["node"]["role"] == "active")).collect()
}

#[test]
fn back_to_back_changeovers_between_daemons_keep_one_active_and_lose_nothing() {
    let rounds: usize = std::env::var("MGHA_STRESS_CHANGEOVERS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let scratch = Scratch::new();
    let mut a = scratch.init("a");
    tuned(&a);
    a.start();
    let mut b = scratch.join(&a, "b");
    tuned(&b);
    b.start();
    let mut c = scratch.join(&a, "c");
    tuned(&c);
    c.start();
    wait_peers_synchronized(&a, &["b", "c"]);
    let nodes = [&a, &b, &c];
    let apis: Vec<Api> = nodes.iter().map(|n| Api::of(n)).collect();
    let loads = [Publisher::start("p1", apis.clone()), Publisher::start("p2", apis.iter().rev().cloned().collect())];

    let bound = Duration::from_millis(CHANGEOVER_TIMEOUT_MS + FORWARD_MARGIN_MS + SLACK_MS);
    let one_active_within = Duration::from_millis(HEARTBEAT_MS);
    let mut refused = BTreeMap::<String, usize>::new();
    let (mut done, mut longest) = (0, Duration::ZERO);
    let started = Instant::now();
    for k in 0..rounds {
        let target = (k + 1) % 3;
        let ask = (k + k / 3) % 3;
        let asked = Instant::now();
        let (status, body) = changeover(&apis[ask], &nodes[target].name);
        let took = asked.elapsed();
        longest = longest.max(took);
        assert!(took <= bound, "round {k}: answered after {took:?}, over its bound {bound:?}: {status} {body}");
        match status {
            200 => {
                assert_eq!(body["active"], nodes[target].name.as_str(), "round {k}: {body}");
                done += 1;
            }
            409 | 503 => {
                eprintln!("round {k}: {} asked for {}: {status} {body}", nodes[ask].name, nodes[target].name);
                *refused.entry(body["error"]["code"].as_str().unwrap_or("?").to_string()).or_default() += 1;
            }
            other => panic!("round {k}: unexpected answer {other} {body}"),
        }
        let settling = Instant::now();
        loop {
            let now = actives(&nodes);
            if now.len() == 1 {
                break;
            }
            assert!(settling.elapsed() <= one_active_within, "round {k}: {status} {body}, then actives {now:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let elapsed = started.elapsed();
    let acked: Vec<String> = loads.into_iter().flat_map(Publisher::stop).collect();
    let last = actives(&nodes);
    assert_eq!(last.len(), 1, "one active at the end: {last:?}");
    let leader = nodes[last[0]];
    let others: Vec<&Node> = nodes.iter().copied().filter(|n| !std::ptr::eq(*n, leader)).collect();
    wait_converged(leader, &others);
    assert_all_present(&acked, &nodes);
    eprintln!(
        "{rounds} changeovers in {elapsed:?}: {done} done, refused {refused:?}; longest answer {longest:?}; \
         {} publishes acknowledged",
        acked.len()
    );
    assert!(acked.len() > rounds, "publishing went on between the changeovers: {} acknowledged", acked.len());
    assert!(done * 10 >= rounds * 9, "most changeovers complete: {done} of {rounds}, refused {refused:?}");
    for n in [&mut a, &mut b, &mut c] {
        assert_eq!(n.terminate(), Some(0), "{} stops cleanly", n.name);
    }
}
