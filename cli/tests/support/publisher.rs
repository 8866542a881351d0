//! Continuous publishing against a cluster whose Active moves: a thread that publishes on
//! whichever node takes it and remembers every acknowledged publish, and the checks that none
//! was lost.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::{ok_json, Node};

/// A node's daemon, for the publisher thread: its admin address and token.
#[derive(Clone)]
pub struct Api {
    pub name: String,
    pub admin: String,
    pub token: String,
}

impl Api {
    pub fn of(node: &Node) -> Api {
        let token = std::fs::read_to_string(node.dir.join("admin.token")).expect("token");
        Api { name: node.name.clone(), admin: node.admin(), token: token.trim().to_string() }
    }

    /// Publishes one host; `Ok` once acknowledged, else the error code (or "unreachable").
    pub fn publish_host(&self, name: &str, i: usize) -> Result<(), String> {
        self.publish_host_in(None, name, i)
    }

    /// Publishes one host in `domain` (the global domain when `None`); as [`Api::publish_host`].
    pub fn publish_host_in(&self, domain: Option<&str>, name: &str, i: usize) -> Result<(), String> {
        let agent = super::http_agent();
        let body = serde_json::json!({"changes": [{"op": "put", "type": "host", "name": name,
            "fields": {"ipv4-address": format!("10.60.{}.{}", i / 256 % 256, i % 256)}}]});
        let mut resp = match agent
            .post(match domain {
                Some(d) => format!("http://{}/v1/domains/{d}/publish", self.admin),
                None => format!("http://{}/v1/publish", self.admin),
            })
            .header("authorization", format!("Bearer {}", self.token))
            .send_json(body)
        {
            Ok(r) => r,
            Err(_) => return Err("unreachable".into()),
        };
        if resp.status() == 201 {
            return Ok(());
        }
        let err: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        Err(err["error"]["code"].as_str().unwrap_or("unreadable").to_string())
    }
}

/// Publishes one host at a time on whichever node takes it, retrying on the others when one is
/// read-only, busy or down; remembers every acknowledged name.
pub struct Publisher {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    thread: JoinHandle<()>,
}

impl Publisher {
    pub fn start(prefix: &str, nodes: Vec<Api>) -> Publisher {
        Publisher::start_in(None, prefix, nodes)
    }

    /// A publisher into `domain` (the global domain when `None`).
    pub fn start_in(domain: Option<&str>, prefix: &str, nodes: Vec<Api>) -> Publisher {
        let domain = domain.map(String::from);
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (stopped, acks, prefix) = (stop.clone(), acked.clone(), prefix.to_string());
        let thread = std::thread::spawn(move || {
            // A fresh name for every attempt: an attempt cut off by a kill may have committed
            // without an answer, and must not turn the retry into a publish of nothing.
            let mut i = 0;
            while !stopped.load(Ordering::SeqCst) {
                let mut done = false;
                for n in &nodes {
                    let name = format!("{prefix}-{i}");
                    i += 1;
                    match n.publish_host_in(domain.as_deref(), &name, i) {
                        Ok(()) => {
                            acks.lock().expect("lock").push(name);
                            done = true;
                            break;
                        }
                        // "peer": a synchronous publish that no standby acknowledged in time.
                        Err(code) if ["read-only", "busy", "unreachable", "peer"].contains(&code.as_str()) => {}
                        Err(code) => panic!("publishing {name} on {}: unexpected error {code}", n.name),
                    }
                }
                if !done {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Publisher { stop, acked, thread }
    }

    pub fn count(&self) -> usize {
        self.acked.lock().expect("lock").len()
    }

    /// Stops publishing; the acknowledged names.
    pub fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("publisher");
        let acked = self.acked.lock().expect("lock").clone();
        acked
    }
}

/// The names of every host on a node.
pub fn hosts_on(node: &Node) -> BTreeSet<String> {
    let list = ok_json(&["list", "-d", node.d(), "--type", "host", "--limit", "100000", "--json"]);
    list["objects"].as_array().expect("objects").iter().filter_map(|o| o["name"].as_str().map(String::from)).collect()
}

/// Every acknowledged publish is on every node.
pub fn assert_all_present(acked: &[String], nodes: &[&Node]) {
    for node in nodes {
        let hosts = hosts_on(node);
        let missing: Vec<&String> = acked.iter().filter(|h| !hosts.contains(*h)).collect();
        assert!(missing.is_empty(), "{} lacks acknowledged publishes {missing:?}", node.name);
    }
}
