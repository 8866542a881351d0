//! Prometheus metrics of the daemon, in the text exposition format, written by hand: a handful
//! of counters and one histogram do not need a metrics framework. Label sets are bounded: routes
//! are axum's matched patterns (a fixed set, plus one `unmatched` for everything else), error
//! codes are the engine's fixed list, and peers are the cluster's members.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use mgha_core::sync::SyncStatus;

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
    pub peers: Vec<PeerGauges>,
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
}

/// Every sync status, so each peer has a full set of `mgha_peer_status` series (one at 1).
const SYNC_STATUSES: [SyncStatus; 6] = [
    SyncStatus::NeverSynchronized,
    SyncStatus::Synchronized,
    SyncStatus::Lagging,
    SyncStatus::Advanced,
    SyncStatus::Collision,
    SyncStatus::Unreachable,
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
            peers: s
                .peers
                .iter()
                .map(|p| PeerGauges {
                    name: p.name.clone(),
                    status: p.status.clone(),
                    lag_revisions: p.lag_revisions,
                    lag_ms: p.lag_ms,
                    connected: p.connected,
                })
                .collect(),
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
fn render_peers(out: &mut String, peers: &[PeerGauges]) -> std::fmt::Result {
    type Value = fn(&PeerGauges) -> u64;
    let families: [(&str, &str, Value); 3] = [
        ("mgha_peer_lag_revisions", "Revisions the peer is behind this node.", |p| p.lag_revisions),
        ("mgha_peer_lag_ms", "Age of the oldest revision the peer has not applied.", |p| p.lag_ms),
        ("mgha_peer_connected", "1 while a sync connection to the peer is open.", |p| u64::from(p.connected)),
    ];
    for (name, help, value) in families {
        writeln!(out, "# HELP {name} {help}")?;
        writeln!(out, "# TYPE {name} gauge")?;
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
        };
        let text = m.render(&Gauges {
            head_seq: 7,
            objects: 42,
            sessions: 1,
            epoch: (3 << 16) | 2,
            active: true,
            collisions_open: 2,
            damaged: true,
            peers: vec![peer("b", SyncStatus::Lagging), peer("c\"q", SyncStatus::Unreachable)],
        });
        assert!(text.contains("mgha_publish_total 2\n"), "{text}");
        assert!(text.contains("mgha_store_damaged 1\n"), "{text}");
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
            "mgha_peer_lag_ms{peer=\"b\"} 250\n",
            "mgha_peer_connected{peer=\"b\"} 1\n",
            "mgha_peer_connected{peer=\"c\\\"q\"} 0\n",
            "mgha_peer_status{peer=\"b\",status=\"lagging\"} 1\n",
            "mgha_peer_status{peer=\"b\",status=\"synchronized\"} 0\n",
            "mgha_peer_status{peer=\"c\\\"q\",status=\"unreachable\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert_eq!(text.matches("mgha_peer_status{peer=\"b\"").count(), 6, "one series per status");
    }
}
