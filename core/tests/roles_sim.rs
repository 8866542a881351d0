//! Deterministic, seeded simulation of roles and replication: nodes running the real
//! [`RoleMachine`] and the real sync decision ([`decide`]) over a network that delays, drops,
//! partitions and crashes, with publishes, planned and forced changeovers at random.
//!
//! Invariants, checked after every step of every seed:
//! - at most one Active per epoch;
//! - a node's epoch never goes back, crashes included;
//! - no acknowledged revision is ever lost: each is in some node's log or in a collision branch
//!   that some node keeps (branches are only dropped by an explicit resolution, which the
//!   simulation never makes);
//! - a planned changeover loses nothing: when the old Active hands over, its whole log is in the
//!   new Active's log.
//!
//! `MGHA_SIM_SEEDS=100000 cargo test --release -p mgha-core --test roles_sim` runs a longer
//! search; a failure prints its seed, and `MGHA_SIM_SEED=N` replays one.

use std::collections::{BTreeMap, BTreeSet};

use mgha_core::model::{Hash, Uid};
use mgha_core::node::Role;
use mgha_core::revision::Head;
use mgha_core::roles::machine::epoch;
use mgha_core::roles::{Action, Event, RoleMachine};
use mgha_core::sync::plan::{decide, Facts, OurIdAt, Plan};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Rev = u64;

#[derive(Clone, Debug)]
enum Msg {
    /// Role and epoch, as in a hello.
    Hello {
        role: Role,
        epoch: u64,
    },
    /// The Active's history; `kept` lists branch revisions the sender keeps for us.
    Replicate {
        epoch: u64,
        log: Vec<Rev>,
        kept: BTreeSet<Rev>,
    },
    Ack {
        log: Vec<Rev>,
    },
    /// Revisions this node published after the fork point with the Active's history.
    Branch {
        revs: Vec<Rev>,
    },
    Promote {
        epoch: u64,
        log: Vec<Rev>,
    },
    Promoted {
        epoch: u64,
    },
}

struct Node {
    id: Uid,
    machine: RoleMachine,
    log: Vec<Rev>,
    branches: BTreeSet<Rev>,
    up: bool,
    /// What the Active last heard each peer acknowledge.
    peer_logs: BTreeMap<usize, Vec<Rev>>,
    /// Highest epoch this node has seen (for a forced changeover).
    seen_epoch: u64,
}

struct Sim {
    rng: StdRng,
    nodes: Vec<Node>,
    now: u64,
    net: Vec<(u64, usize, usize, Msg)>,
    cut: BTreeSet<(usize, usize)>,
    next_rev: Rev,
    acked: BTreeSet<Rev>,
    active_at: BTreeMap<u64, usize>,
    epochs: Vec<u64>,
    stats: Stats,
}

/// What a run exercised, so that a passing simulation is known not to be vacuous.
#[derive(Default, Debug, Clone, Copy)]
struct Stats {
    planned: u64,
    forced: u64,
    stepped_down: u64,
    branch_revisions: u64,
    publishes: u64,
}

fn head_of(log: &[Rev]) -> Head {
    Head { seq: log.len() as u64, id: id_of(log), state_hash: id_of(log) }
}

fn id_of(log: &[Rev]) -> Hash {
    let mut h = blake3::Hasher::new();
    for r in log {
        h.update(&r.to_le_bytes());
    }
    Hash(*h.finalize().as_bytes())
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(2..=4);
        let nodes: Vec<Node> = (0..n)
            .map(|i| {
                let id = Uid(uuid::Uuid::from_u128(rng.gen::<u128>()));
                let role = if i == 0 { Role::Active } else { Role::Standby };
                Node {
                    id,
                    machine: RoleMachine::new(id, i as u16, role, epoch::first(0)),
                    log: vec![],
                    branches: BTreeSet::new(),
                    up: true,
                    peer_logs: BTreeMap::new(),
                    seen_epoch: epoch::first(0),
                }
            })
            .collect();
        let epochs = vec![epoch::first(0); n];
        let mut active_at = BTreeMap::new();
        active_at.insert(epoch::first(0), 0);
        Sim {
            rng,
            nodes,
            now: 0,
            net: vec![],
            cut: BTreeSet::new(),
            next_rev: 1,
            acked: BTreeSet::new(),
            active_at,
            epochs,
            stats: Stats::default(),
        }
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.nodes[a].up && self.nodes[b].up && !self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if self.linked(from, to) && self.rng.gen_ratio(19, 20) {
            let at = self.now + self.rng.gen_range(1..=4);
            self.net.push((at, from, to, msg));
        }
    }

    fn index_of(&self, id: Uid) -> usize {
        self.nodes.iter().position(|n| n.id == id).expect("known node")
    }

    /// Feeds an event to node `i`'s machine and carries out the actions.
    fn event(&mut self, i: usize, ev: Event) -> Vec<Action> {
        let before_log = self.nodes[i].log.clone();
        let forced = matches!(ev, Event::Force { .. });
        let actions = self.nodes[i].machine.handle(ev);
        for a in &actions {
            match a {
                Action::ChangeoverDone { .. } if forced => self.stats.forced += 1,
                Action::SteppedDown { .. } => self.stats.stepped_down += 1,
                Action::SendPromote { target, epoch } => {
                    let t = self.index_of(*target);
                    self.send(i, t, Msg::Promote { epoch: *epoch, log: before_log.clone() });
                }
                Action::ReplyPromoted { to, epoch } => {
                    let t = self.index_of(*to);
                    self.send(i, t, Msg::Promoted { epoch: *epoch });
                }
                _ => {}
            }
        }
        self.check_node(i);
        actions
    }

    fn check_node(&mut self, i: usize) {
        let (role, epoch) = (self.nodes[i].machine.role, self.nodes[i].machine.epoch);
        assert!(epoch >= self.epochs[i], "node {i}: epoch went back from {} to {epoch}", self.epochs[i]);
        self.epochs[i] = epoch;
        self.nodes[i].seen_epoch = self.nodes[i].seen_epoch.max(epoch);
        if role == Role::Active {
            let holder = *self.active_at.entry(epoch).or_insert(i);
            assert_eq!(holder, i, "two actives at epoch {epoch}: nodes {holder} and {i}");
        }
    }

    fn deliver(&mut self, from: usize, to: usize, msg: Msg) {
        if !self.linked(from, to) {
            return;
        }
        match msg {
            Msg::Hello { role, epoch } => {
                let peer = self.nodes[from].id;
                self.nodes[to].seen_epoch = self.nodes[to].seen_epoch.max(epoch);
                self.event(to, Event::PeerSeen { peer, role, epoch });
            }
            Msg::Replicate { epoch, log, kept } => {
                let me = &self.nodes[to];
                if me.machine.role != Role::Standby || epoch < me.machine.epoch {
                    return; // fencing: never follow a lower epoch
                }
                // The real decision, taken from the Active's side with the facts it would gather.
                let ours = head_of(&log);
                let peer = head_of(&me.log);
                let our_id_at_peer = (peer.seq <= ours.seq).then(|| OurIdAt::Known(id_of(&log[..peer.seq as usize])));
                let peer_id_at_ours = (peer.seq > ours.seq).then(|| id_of(&me.log[..ours.seq as usize]));
                let (_, plan) = decide(&Facts { ours, floor: Head::default(), peer, our_id_at_peer, peer_id_at_ours });
                match plan {
                    Plan::Stream | Plan::SendRevisions { .. } | Plan::FullSync => self.nodes[to].log = log.clone(),
                    Plan::Hold => {
                        let common = me.log.iter().zip(&log).take_while(|(a, b)| a == b).count();
                        let mine: Vec<Rev> = me.log[common..].to_vec();
                        if mine.iter().all(|r| kept.contains(r)) {
                            // The Active keeps our branch: now a full sync may replace our history.
                            self.nodes[to].log = log.clone();
                        } else {
                            self.send(to, from, Msg::Branch { revs: mine });
                            return;
                        }
                    }
                }
                let l = self.nodes[to].log.clone();
                self.send(to, from, Msg::Ack { log: l });
            }
            Msg::Ack { log } => {
                self.nodes[to].peer_logs.insert(from, log.clone());
                let target = self.nodes[from].id;
                if self.nodes[to].machine.handover.is_some_and(|h| h.target == target) && log == self.nodes[to].log {
                    self.event(to, Event::TargetCaughtUp { target });
                }
            }
            Msg::Branch { revs } => {
                // Kept durably by whoever receives it, Active or not.
                self.stats.branch_revisions +=
                    revs.iter().filter(|r| !self.nodes[to].branches.contains(r)).count() as u64;
                self.nodes[to].branches.extend(revs);
            }
            Msg::Promote { epoch, log } => {
                let head_matches = self.nodes[to].log == log;
                let from_id = self.nodes[from].id;
                self.event(to, Event::PromoteRequest { from: from_id, epoch, head_matches });
            }
            Msg::Promoted { epoch } => {
                let from_id = self.nodes[from].id;
                let old_log = self.nodes[to].log.clone();
                let out = self.event(to, Event::Promoted { from: from_id, epoch });
                if out.iter().any(|a| matches!(a, Action::ChangeoverDone { .. })) {
                    self.stats.planned += 1;
                    let new_log = &self.nodes[from].log;
                    assert!(
                        new_log.starts_with(&old_log),
                        "planned changeover lost revisions: old {old_log:?}, new {new_log:?}"
                    );
                }
            }
        }
    }

    fn step(&mut self, quiet: bool) {
        self.now += 1;
        // Deliver what is due.
        let due: Vec<_> = {
            let now = self.now;
            let (due, rest): (Vec<_>, Vec<_>) = self.net.drain(..).partition(|m| m.0 <= now);
            self.net = rest;
            due
        };
        for (_, from, to, msg) in due {
            self.deliver(from, to, msg);
        }
        // Every node says who it is; the Active replicates.
        let n = self.nodes.len();
        for i in 0..n {
            if !self.nodes[i].up {
                continue;
            }
            self.event(i, Event::Tick { now_ms: self.now });
            for j in 0..n {
                if i != j && self.now % 3 == (i as u64) % 3 {
                    let (role, epoch) = (self.nodes[i].machine.role, self.nodes[i].machine.epoch);
                    self.send(i, j, Msg::Hello { role, epoch });
                    if role == Role::Active {
                        let msg = Msg::Replicate {
                            epoch,
                            log: self.nodes[i].log.clone(),
                            kept: self.nodes[i].branches.clone(),
                        };
                        self.send(i, j, msg);
                    }
                }
            }
        }
        if !quiet {
            self.chaos();
        }
        self.check_no_loss();
    }

    #[allow(clippy::collapsible_match)] // one arm per kind of chaos reads better than guards
    fn chaos(&mut self) {
        let n = self.nodes.len();
        let i = self.rng.gen_range(0..n);
        match self.rng.gen_range(0..100) {
            0..=39 => {
                if self.nodes[i].up && self.event(i, Event::Publish { now_ms: 0 }) == vec![Action::Accept] {
                    let r = self.next_rev;
                    self.next_rev += 1;
                    self.nodes[i].log.push(r);
                    self.acked.insert(r);
                    self.stats.publishes += 1;
                }
            }
            40..=47 => {
                let t = self.rng.gen_range(0..n);
                if self.nodes[i].up && t != i {
                    let target = self.nodes[t].id;
                    let connected = self.linked(i, t);
                    let now = self.now;
                    let ev = Event::ChangeoverTo {
                        target,
                        target_tag: t as u16,
                        target_connected: connected,
                        now_ms: now,
                        timeout_ms: 30,
                    };
                    self.event(i, ev);
                }
            }
            48..=49 => {
                // A forced changeover, with only what this node has seen: epochs stay unique anyway.
                if self.nodes[i].up && self.nodes[i].machine.role == Role::Standby {
                    let highest = self.nodes[i].seen_epoch;
                    self.event(i, Event::Force { highest_epoch: highest });
                }
            }
            50..=55 => {
                let j = self.rng.gen_range(0..n);
                if i != j {
                    self.cut.insert((i.min(j), i.max(j)));
                }
            }
            56..=63 => {
                self.cut.clear();
            }
            64..=66 => {
                // Crash: role and epoch are durable, a handover in progress is not.
                self.nodes[i].up = false;
            }
            67..=74 => {
                if !self.nodes[i].up {
                    let m = &self.nodes[i].machine;
                    let (id, tag, role, epoch) = (m.node_id, m.tag, m.role, m.epoch);
                    self.nodes[i].machine = RoleMachine::new(id, tag, role, epoch);
                    self.nodes[i].up = true;
                }
            }
            _ => {}
        }
    }

    fn check_no_loss(&self) {
        for r in &self.acked {
            let kept = self.nodes.iter().any(|n| n.log.contains(r) || n.branches.contains(r));
            assert!(kept, "acknowledged revision {r} is in no log and no branch");
        }
    }
}

fn run(seed: u64) -> Stats {
    let mut sim = Sim::new(seed);
    for _ in 0..300 {
        sim.step(false);
    }
    // Heal everything and let it settle: one Active, everyone following it.
    sim.cut.clear();
    for n in &mut sim.nodes {
        if !n.up {
            n.machine = RoleMachine::new(n.id, n.machine.tag, n.machine.role, n.machine.epoch);
            n.up = true;
        }
    }
    for _ in 0..100 {
        sim.step(true);
    }
    let actives: Vec<usize> = (0..sim.nodes.len()).filter(|&i| sim.nodes[i].machine.role == Role::Active).collect();
    assert!(actives.len() <= 1, "seed {seed}: several actives after healing: {actives:?}");
    if let [a] = actives.as_slice() {
        let log = &sim.nodes[*a].log;
        for (i, n) in sim.nodes.iter().enumerate() {
            assert_eq!(&n.log, log, "seed {seed}: node {i} did not converge on the active's history");
        }
    }
    sim.stats
}

#[test]
fn roles_hold_their_invariants_over_many_seeds() {
    if let Some(seed) = std::env::var("MGHA_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        println!("{:?}", run(seed));
        return;
    }
    let seeds: u64 = std::env::var("MGHA_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let mut total = Stats::default();
    for seed in 0..seeds {
        match std::panic::catch_unwind(|| run(seed)) {
            Ok(s) => {
                total.planned += s.planned;
                total.forced += s.forced;
                total.stepped_down += s.stepped_down;
                total.branch_revisions += s.branch_revisions;
                total.publishes += s.publishes;
            }
            Err(e) => {
                let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
                panic!("seed {seed} failed (replay with MGHA_SIM_SEED={seed}): {msg}");
            }
        }
    }
    println!("{seeds} seeds: {total:?}");
    assert!(
        total.planned > 0 && total.forced > 0 && total.stepped_down > 0 && total.branch_revisions > 0,
        "the simulation did not exercise every path: {total:?}"
    );
}
