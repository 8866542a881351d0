//! Prometheus metrics of the daemon, in the text exposition format, written by hand: a handful
//! of counters and one histogram do not need a metrics framework. Label sets are bounded: routes
//! are axum's matched patterns (a fixed set, plus one `unmatched` for everything else), error
//! codes are the engine's fixed list, and peers are the cluster's members. Names follow the
//! Prometheus conventions that `promtool check metrics` enforces: base units (`_seconds`,
//! `_bytes`), `_total` on counters only; the standard `process_*` series come from
//! `process.rs`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use mgha_sync::SyncStatus;

use crate::api::StatusBody;

/// Upper bounds of the publish latency histogram, in seconds. A durable publish costs at least
/// one fsync (around a millisecond on SSDs), so the buckets start there.
const LATENCY_BUCKETS_S: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The route label for requests that matched no route, so that probing random paths cannot grow
/// the label set.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Counters of one daemon.
#[derive(Debug, Default)]
pub struct Metrics {
    publishes: AtomicU64,
    publish_errors: Mutex<BTreeMap<&'static str, u64>>,
    latency: Histogram,
    http: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Changeovers asked of this daemon, by kind (`planned`, `forced`) and outcome.
    changeovers: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Role changes of this node (changeovers, failovers, fencing), by the role taken.
    role_changes: Mutex<BTreeMap<String, u64>>,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// Values read from the engine at scrape time.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    pub head_seq: u64,
    pub objects: u64,
    pub sessions: usize,
    pub epoch: u64,
    pub active: bool,
    /// Collision branches kept on this node and not resolved yet.
    pub collisions_open: usize,
    /// Whether the last full check or scrub found the store damaged.
    pub damaged: bool,
    /// Whether the store cannot write (a failed commit, until one succeeds again).
    pub write_failing: bool,
    pub peers: Vec<PeerGauges>,
    /// With automatic failover only.
    pub arbiter: Option<ArbiterGauges>,
}

/// The arbiter of automatic failover as this node last saw it.
#[derive(Clone, Debug, Default)]
pub struct ArbiterGauges {
    pub has_quorum: bool,
    /// The name of the node holding the Active's lease (a uid when the node is unknown here).
    pub holder: Option<String>,
    /// Whether this node is the holder.
    pub holder_self: bool,
    /// An Active: how long its lease still lets it publish.
    pub lease_left_ms: Option<u64>,
    /// Each member (a Raft voter or an etcd endpoint) and whether it answers.
    pub members: Vec<(String, bool)>,
}

/// One peer's replication as this node sees it.
#[derive(Clone, Debug)]
pub struct PeerGauges {
    pub name: String,
    /// The API's name of the peer's sync status (`never-synchronized`, ...).
    pub status: String,
    pub lag_revisions: u64,
    pub lag_ms: u64,
    pub connected: bool,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// Every sync status, so each peer has a full set of `mgha_peer_status` series (one at 1).
const SYNC_STATUSES: [SyncStatus; 7] = [
    SyncStatus::NeverSynchronized,
    SyncStatus::Synchronized,
    SyncStatus::Lagging,
    SyncStatus::Advanced,
    SyncStatus::Collision,
    SyncStatus::Unreachable,
    SyncStatus::ApplyFailing,
];

impl Gauges {
    /// The gauges of a node's status.
    pub fn of(s: &StatusBody) -> Gauges {
        Gauges {
            head_seq: s.head.seq,
            objects: s.objects,
            sessions: s.sessions,
            epoch: s.node.epoch,
            active: s.node.role == mgha_core::Role::Active.to_string(),
            collisions_open: s.collisions_open,
            damaged: s.damage.is_some(),
            write_failing: s.store_fault.is_some(),
            peers: s
                .peers
                .iter()
                .map(|p| PeerGauges {
                    name: p.name.clone(),
                    status: p.status.clone(),
                    lag_revisions: p.lag_revisions,
                    lag_ms: p.lag_ms,
                    connected: p.connected,
                    bytes_sent: p.bytes_sent,
                    bytes_received: p.bytes_received,
                })
                .collect(),
            arbiter: s.failover.as_ref().map(|f| ArbiterGauges::of(s, f)),
        }
    }
}

impl ArbiterGauges {
    fn of(s: &StatusBody, f: &mgha_sync::failover::FailoverStatus) -> ArbiterGauges {
        let arbiter = f.arbiter.as_ref();
        let holder_id = arbiter.and_then(|a| a.holder.as_ref()).map(|h| h.node_id.to_string());
        let name_of = |id: &str| {
            if id == s.node.node_id {
                s.node.name.clone()
            } else {
                s.peers.iter().find(|p| p.node_id == id).map_or_else(|| id.to_string(), |p| p.name.clone())
            }
        };
        ArbiterGauges {
            has_quorum: arbiter.is_some_and(|a| a.has_quorum),
            holder_self: holder_id.as_deref() == Some(s.node.node_id.as_str()),
            holder: holder_id.as_deref().map(name_of),
            lease_left_ms: f.lease_left_ms,
            members: arbiter
                .map(|a| a.members.iter().map(|m| (m.name.clone(), m.healthy)).collect())
                .unwrap_or_default(),
        }
    }
}

impl Metrics {
    /// Records the outcome of one publish (plain, session or revert) and how long it took.
    pub fn publish(&self, outcome: Result<(), mgha_core::ErrorCode>, took: Duration) {
        match outcome {
            Ok(()) => {
                self.publishes.fetch_add(1, Ordering::Relaxed);
                self.latency.observe(took);
            }
            Err(code) => {
                let mut errors = self.publish_errors.lock().unwrap_or_else(|p| p.into_inner());
                *errors.entry(code.as_str()).or_default() += 1;
            }
        }
    }

    /// Records a changeover asked of this daemon: `forced` or planned, and whether it was done.
    pub fn changeover(&self, forced: bool, done: bool) {
        let kind = if forced { "forced" } else { "planned" };
        let outcome = if done { "done" } else { "refused" };
        *self.changeovers.lock().unwrap_or_else(|p| p.into_inner()).entry((kind, outcome)).or_default() += 1;
    }

    /// Records that this node took `role` (from the engine's role events).
    pub fn role_change(&self, role: &str) {
        *self.role_changes.lock().unwrap_or_else(|p| p.into_inner()).entry(role.to_string()).or_default() += 1;
    }

    /// Records one HTTP request by route pattern, method and status.
    pub fn request(&self, route: &str, method: &str, status: u16) {
        let mut http = self.http.lock().unwrap_or_else(|p| p.into_inner());
        *http.entry((route.to_string(), method.to_string(), status)).or_default() += 1;
    }

    /// The exposition text.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = self.render_into(&mut out, g);
        out
    }

    fn render_into(&self, out: &mut String, g: &Gauges) -> std::fmt::Result {
        writeln!(out, "# HELP mgha_build_info The version of the running mgha; the value is always 1.")?;
        writeln!(out, "# TYPE mgha_build_info gauge")?;
        writeln!(out, "mgha_build_info{{version=\"{}\"}} 1", escape(env!("CARGO_PKG_VERSION")))?;
        super::process::ProcessStats::read().render_into(out)?;

        writeln!(out, "# HELP mgha_publish_total Revisions published by this node (changesets, sessions, reverts).")?;
        writeln!(out, "# TYPE mgha_publish_total counter")?;
        writeln!(out, "mgha_publish_total {}", self.publishes.load(Ordering::Relaxed))?;

        writeln!(out, "# HELP mgha_publish_errors_total Publishes refused, by error code.")?;
        writeln!(out, "# TYPE mgha_publish_errors_total counter")?;
        for (code, n) in self.publish_errors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            writeln!(out, "mgha_publish_errors_total{{code=\"{code}\"}} {n}")?;
        }

        writeln!(out, "# HELP mgha_publish_duration_seconds Time to validate and durably commit a publish.")?;
        writeln!(out, "# TYPE mgha_publish_duration_seconds histogram")?;
        let mut cumulative = 0u64;
        for (bound, bucket) in LATENCY_BUCKETS_S.iter().zip(&self.latency.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            writeln!(out, "mgha_publish_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}")?;
        }
        let count = self.latency.count.load(Ordering::Relaxed);
        writeln!(out, "mgha_publish_duration_seconds_bucket{{le=\"+Inf\"}} {count}")?;
        let sum_s = self.latency.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        writeln!(out, "mgha_publish_duration_seconds_sum {sum_s}")?;
        writeln!(out, "mgha_publish_duration_seconds_count {count}")?;

        let round = mgha_core::roles::machine::epoch::round(g.epoch);
        let collisions = g.collisions_open as u64;
        let gauges = [
            ("mgha_head_seq", "The newest revision number.", g.head_seq),
            ("mgha_objects", "Objects in the configuration database.", g.objects),
            ("mgha_sessions_open", "Open admin sessions.", g.sessions as u64),
            ("mgha_epoch", "The node's epoch (a ballot number: round << 16 | tag).", g.epoch),
            ("mgha_epoch_round", "The round of the node's epoch; every changeover starts a new one.", round),
            ("mgha_active", "1 when this node is the Active, 0 on a Standby.", u64::from(g.active)),
            ("mgha_collisions_open", "Collision branches kept on this node and not resolved yet.", collisions),
            (
                "mgha_store_damaged",
                "1 when the last full check or scrub found a damaged record in the store.",
                u64::from(g.damaged),
            ),
            (
                "mgha_store_write_failing",
                "1 while the store cannot write (a full disk, an I/O error), until a commit succeeds again.",
                u64::from(g.write_failing),
            ),
        ];
        for (name, help, value) in gauges {
            writeln!(out, "# HELP {name} {help}")?;
            writeln!(out, "# TYPE {name} gauge")?;
            writeln!(out, "{name} {value}")?;
        }
        writeln!(out, "# HELP mgha_role The node's role: 1 for the current one.")?;
        writeln!(out, "# TYPE mgha_role gauge")?;
        writeln!(out, "mgha_role{{role=\"active\"}} {}", u64::from(g.active))?;
        writeln!(out, "mgha_role{{role=\"standby\"}} {}", u64::from(!g.active))?;
        render_peers(out, &g.peers)?;
        if let Some(a) = &g.arbiter {
            render_arbiter(out, a)?;
        }

        writeln!(out, "# HELP mgha_changeovers_total Changeovers asked of this node, by kind and outcome.")?;
        writeln!(out, "# TYPE mgha_changeovers_total counter")?;
        for ((kind, outcome), n) in self.changeovers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            writeln!(out, "mgha_changeovers_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}")?;
        }
        writeln!(out, "# HELP mgha_role_changes_total Roles this node took (changeover, failover, fencing).")?;
        writeln!(out, "# TYPE mgha_role_changes_total counter")?;
        for (role, n) in self.role_changes.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            writeln!(out, "mgha_role_changes_total{{role=\"{}\"}} {n}", escape(role))?;
        }

        writeln!(out, "# HELP mgha_http_requests_total Admin API requests, by route, method and status.")?;
        writeln!(out, "# TYPE mgha_http_requests_total counter")?;
        for ((route, method, status), n) in self.http.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            writeln!(
                out,
                "mgha_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            )?;
        }
        Ok(())
    }
}

/// The per-peer series, one family at a time as the exposition format wants.
/// One series per domain replica this server holds: its role, head and objects.
pub fn render_domains(out: &mut String, list: &mgha_node::contract::DomainList) {
    let held: Vec<_> = list.domains.iter().filter(|d| d.here).collect();
    type Value = fn(&mgha_node::contract::DomainBody) -> f64;
    let families: [(&str, &str, Value); 3] = [
        ("mgha_domain_active", "1 while this server's replica of the domain is its Active.", |d| {
            f64::from(u8::from(d.role.as_deref() == Some("active")))
        }),
        ("mgha_domain_head_revision", "The head revision of this server's replica of the domain.", |d| {
            d.head_seq.unwrap_or(0) as f64
        }),
        ("mgha_domain_objects", "Objects in this server's replica of the domain.", |d| d.objects.unwrap_or(0) as f64),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for d in &held {
            let _ = writeln!(out, "{name}{{domain=\"{}\"}} {}", escape(&d.name), value(d));
        }
    }
}

fn render_peers(out: &mut String, peers: &[PeerGauges]) -> std::fmt::Result {
    type Value = fn(&PeerGauges) -> f64;
    let families: [(&str, &str, &str, Value); 5] = [
        ("mgha_peer_lag_revisions", "gauge", "Revisions the peer is behind this node.", |p| p.lag_revisions as f64),
        ("mgha_peer_lag_seconds", "gauge", "Age of the oldest revision the peer has not applied.", |p| {
            p.lag_ms as f64 / 1000.0
        }),
        ("mgha_peer_connected", "gauge", "1 while a sync connection to the peer is open.", |p| {
            f64::from(u8::from(p.connected))
        }),
        ("mgha_peer_sent_bytes_total", "counter", "Bytes of sync traffic sent to the peer.", |p| p.bytes_sent as f64),
        ("mgha_peer_received_bytes_total", "counter", "Bytes of sync traffic received from the peer.", |p| {
            p.bytes_received as f64
        }),
    ];
    for (name, kind, help, value) in families {
        writeln!(out, "# HELP {name} {help}")?;
        writeln!(out, "# TYPE {name} {kind}")?;
        for p in peers {
            writeln!(out, "{name}{{peer=\"{}\"}} {}", escape(&p.name), value(p))?;
        }
    }
    writeln!(out, "# HELP mgha_peer_status The peer's sync status: 1 for the current one.")?;
    writeln!(out, "# TYPE mgha_peer_status gauge")?;
    for p in peers {
        for status in SYNC_STATUSES {
            let label = crate::api::sync_status_name(status);
            writeln!(
                out,
                "mgha_peer_status{{peer=\"{}\",status=\"{label}\"}} {}",
                escape(&p.name),
                u64::from(p.status == label)
            )?;
        }
    }
    Ok(())
}

/// The arbiter's series (automatic failover only).
fn render_arbiter(out: &mut String, a: &ArbiterGauges) -> std::fmt::Result {
    writeln!(out, "# HELP mgha_arbiter_quorum 1 while the arbiter can decide (a Raft majority, a reachable etcd).")?;
    writeln!(out, "# TYPE mgha_arbiter_quorum gauge")?;
    writeln!(out, "mgha_arbiter_quorum {}", u8::from(a.has_quorum))?;
    writeln!(out, "# HELP mgha_arbiter_holder The node holding the Active's lease at the arbiter (one series, at 1).")?;
    writeln!(out, "# TYPE mgha_arbiter_holder gauge")?;
    if let Some(h) = &a.holder {
        writeln!(out, "mgha_arbiter_holder{{node=\"{}\"}} 1", escape(h))?;
    }
    writeln!(out, "# HELP mgha_arbiter_holder_self 1 when this node holds the Active's lease.")?;
    writeln!(out, "# TYPE mgha_arbiter_holder_self gauge")?;
    writeln!(out, "mgha_arbiter_holder_self {}", u8::from(a.holder_self))?;
    writeln!(out, "# HELP mgha_arbiter_lease_left_seconds How long this Active's lease still lets it publish.")?;
    writeln!(out, "# TYPE mgha_arbiter_lease_left_seconds gauge")?;
    if let Some(ms) = a.lease_left_ms {
        writeln!(out, "mgha_arbiter_lease_left_seconds {}", ms as f64 / 1000.0)?;
    }
    writeln!(out, "# HELP mgha_arbiter_member_up 1 while the arbiter member (Raft voter, etcd endpoint) answers.")?;
    writeln!(out, "# TYPE mgha_arbiter_member_up gauge")?;
    for (name, healthy) in &a.members {
        writeln!(out, "mgha_arbiter_member_up{{member=\"{}\"}} {}", escape(name), u8::from(*healthy))?;
    }
    Ok(())
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let s = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Escapes a label value as the exposition format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let m = Metrics::default();
        m.publish(Ok(()), Duration::from_millis(3));
        m.publish(Ok(()), Duration::from_secs(20));
        m.publish(Err(mgha_core::ErrorCode::Validation), Duration::from_millis(1));
        m.request("/v1/status", "GET", 200);
        m.request("/v1/status", "GET", 200);
        let peer = |name: &str, status| PeerGauges {
            name: name.into(),
            status: crate::api::sync_status_name(status),
            lag_revisions: 3,
            lag_ms: 250,
            connected: status != SyncStatus::Unreachable,
            bytes_sent: 1234,
            bytes_received: 56,
        };
        m.changeover(false, true);
        m.changeover(true, false);
        m.role_change("active");
        let text = m.render(&Gauges {
            head_seq: 7,
            objects: 42,
            sessions: 1,
            epoch: (3 << 16) | 2,
            active: true,
            collisions_open: 2,
            damaged: true,
            write_failing: true,
            peers: vec![peer("b", SyncStatus::Lagging), peer("c\"q", SyncStatus::Unreachable)],
            arbiter: Some(ArbiterGauges {
                has_quorum: true,
                holder: Some("a".into()),
                holder_self: true,
                lease_left_ms: Some(1500),
                members: vec![("a".into(), true), ("witness".into(), false)],
            }),
        });
        assert!(text.contains("mgha_publish_total 2\n"), "{text}");
        assert!(text.contains("mgha_store_damaged 1\n"), "{text}");
        assert!(text.contains("mgha_store_write_failing 1\n"), "{text}");
        assert!(text.contains("mgha_publish_errors_total{code=\"validation\"} 1\n"), "{text}");
        assert!(text.contains("mgha_publish_duration_seconds_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("mgha_publish_duration_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("mgha_head_seq 7\n"), "{text}");
        assert!(text.contains("mgha_objects 42\n"), "{text}");
        assert!(
            text.contains("mgha_http_requests_total{route=\"/v1/status\",method=\"GET\",status=\"200\"} 2\n"),
            "{text}"
        );
        for line in [
            "mgha_role{role=\"active\"} 1\n",
            "mgha_role{role=\"standby\"} 0\n",
            "mgha_epoch 196610\n",
            "mgha_epoch_round 3\n",
            "mgha_collisions_open 2\n",
            "mgha_peer_lag_revisions{peer=\"b\"} 3\n",
            "mgha_peer_lag_seconds{peer=\"b\"} 0.25\n",
            "mgha_peer_sent_bytes_total{peer=\"b\"} 1234\n",
            "mgha_peer_received_bytes_total{peer=\"b\"} 56\n",
            "mgha_arbiter_quorum 1\n",
            "mgha_arbiter_holder{node=\"a\"} 1\n",
            "mgha_arbiter_holder_self 1\n",
            "mgha_arbiter_lease_left_seconds 1.5\n",
            "mgha_arbiter_member_up{member=\"witness\"} 0\n",
            "mgha_changeovers_total{kind=\"planned\",outcome=\"done\"} 1\n",
            "mgha_changeovers_total{kind=\"forced\",outcome=\"refused\"} 1\n",
            "mgha_role_changes_total{role=\"active\"} 1\n",
            "mgha_peer_connected{peer=\"b\"} 1\n",
            "mgha_peer_connected{peer=\"c\\\"q\"} 0\n",
            "mgha_peer_status{peer=\"b\",status=\"lagging\"} 1\n",
            "mgha_peer_status{peer=\"b\",status=\"synchronized\"} 0\n",
            "mgha_peer_status{peer=\"c\\\"q\",status=\"unreachable\"} 1\n",
            "mgha_peer_status{peer=\"b\",status=\"apply-failing\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert_eq!(text.matches("mgha_peer_status{peer=\"b\"").count(), SYNC_STATUSES.len(), "one series per status");
        let build = format!("mgha_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION"));
        assert!(text.contains(&build), "{text}");
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"), "{text}");
    }
}
