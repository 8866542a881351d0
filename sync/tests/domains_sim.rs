//! Deterministic, seeded simulation of many domains over few servers: 3 or 4 servers, 20 to 40
//! domains each replicated on 2 or 3 of them, every replica running the real [`RoleMachine`]
//! and the real sync decision ([`decide`]), over one link per pair of servers that carries
//! every domain. Whole servers crash (all their replicas at once) and return, links are cut
//! (every domain's messages between two servers) and heal, a link or a single domain's stream
//! closes with what was in flight on it, and domains publish, change over (planned, one
//! domain), are forced over, and are rebalanced (planned changeovers of many domains at once,
//! each from the server with the most Actives to the one with the fewest).
//!
//! Invariants, checked after every step of every seed:
//! - at most one Active per domain per epoch;
//! - a domain's epoch on a replica never goes back, crashes included;
//! - domains are independent: an event handled by one domain's replica changes no other
//!   domain's role or epoch;
//! - no acknowledged revision of a domain is lost: it is in some replica's log or in a
//!   collision branch that a replica of that domain keeps;
//! - a planned changeover loses nothing: the new Active's log holds the old Active's whole log.
//!
//! Once healed and settled, each domain has at most one Active and its replicas converge on its
//! history. `MGHA_SIM_SEEDS=1000 cargo test --release --test domains_sim` searches longer; a
//! failure prints its seed, and `MGHA_SIM_SEED=N` replays one.

use std::collections::{BTreeMap, BTreeSet};

use mgha_core::model::{Hash, Uid};
use mgha_core::node::Role;
use mgha_core::revision::Head;
use mgha_core::roles::machine::epoch;
use mgha_core::roles::{Action, Event, PlannedChangeover, RoleMachine};
use mgha_sync::plan::{decide, Facts, OurIdAt, Plan};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

type Rev = u64;

#[derive(Clone, Debug)]
enum Msg {
    Hello { role: Role, epoch: u64 },
    Replicate { epoch: u64, log: Vec<Rev>, kept: BTreeSet<Rev> },
    Ack { log: Vec<Rev> },
    Branch { revs: Vec<Rev> },
    Promote { epoch: u64, log: Vec<Rev> },
    Promoted { epoch: u64 },
}

/// A message of one domain's stream, on the link between two servers.
struct InFlight {
    due: u64,
    domain: usize,
    from: usize,
    to: usize,
    msg: Msg,
}

/// A server: one identity (node id and tag) shared by all the replicas it holds.
struct Server {
    id: Uid,
    tag: u16,
    up: bool,
}

/// One domain's replica on one server.
struct Replica {
    server: usize,
    machine: RoleMachine,
    log: Vec<Rev>,
    branches: BTreeSet<Rev>,
    /// What this replica last heard each peer server acknowledge, as the Active.
    peer_logs: BTreeMap<usize, Vec<Rev>>,
    seen_epoch: u64,
    /// The planned changeover this replica leads, and when its promote request last went out.
    call: Option<(PlannedChangeover, Option<u64>)>,
}

struct Domain {
    replicas: Vec<Replica>,
    acked: BTreeSet<Rev>,
    active_at: BTreeMap<u64, usize>,
    /// Highest epoch each replica has held (crashes included).
    epochs: Vec<u64>,
}

impl Domain {
    fn replica_on(&self, server: usize) -> Option<usize> {
        self.replicas.iter().position(|r| r.server == server)
    }
}

const RESEND_EVERY: u64 = 2;
const CHANGEOVER_TIMEOUT: u64 = 30;

#[derive(Default, Debug, Clone, Copy)]
struct Stats {
    publishes: u64,
    planned: u64,
    forced: u64,
    stepped_down: u64,
    branch_revisions: u64,
    rebalance_changeovers: u64,
    crashes: u64,
    links_closed: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.publishes += o.publishes;
        self.planned += o.planned;
        self.forced += o.forced;
        self.stepped_down += o.stepped_down;
        self.branch_revisions += o.branch_revisions;
        self.rebalance_changeovers += o.rebalance_changeovers;
        self.crashes += o.crashes;
        self.links_closed += o.links_closed;
    }
}

fn id_of(log: &[Rev]) -> Hash {
    let mut h = blake3::Hasher::new();
    for r in log {
        h.update(&r.to_le_bytes());
    }
    Hash(*h.finalize().as_bytes())
}

fn head_of(log: &[Rev]) -> Head {
    Head { seq: log.len() as u64, id: id_of(log), state_hash: id_of(log) }
}

struct Sim {
    rng: StdRng,
    servers: Vec<Server>,
    domains: Vec<Domain>,
    now: u64,
    net: Vec<InFlight>,
    cut: BTreeSet<(usize, usize)>,
    next_rev: Rev,
    stats: Stats,
    /// Each replica's role and epoch as last recorded, for the independence check.
    recorded: Vec<Vec<(Role, u64)>>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(3..=4);
        let servers: Vec<Server> = (0..n)
            .map(|i| Server { id: Uid(uuid::Uuid::from_u128(rng.gen::<u128>())), tag: i as u16, up: true })
            .collect();
        let domains: Vec<Domain> = (0..rng.gen_range(20..=40))
            .map(|_| {
                let mut on: Vec<usize> = (0..n).collect();
                on.shuffle(&mut rng);
                on.truncate(rng.gen_range(2..=3));
                // The first server is where the domain was created: Active at its first epoch.
                let first = epoch::first(servers[on[0]].tag);
                let replicas: Vec<Replica> = on
                    .iter()
                    .enumerate()
                    .map(|(k, &s)| Replica {
                        server: s,
                        machine: RoleMachine::new(
                            servers[s].id,
                            servers[s].tag,
                            if k == 0 { Role::Active } else { Role::Standby },
                            first,
                        ),
                        log: vec![],
                        branches: BTreeSet::new(),
                        peer_logs: BTreeMap::new(),
                        seen_epoch: first,
                        call: None,
                    })
                    .collect();
                let epochs = vec![first; replicas.len()];
                Domain { replicas, acked: BTreeSet::new(), active_at: BTreeMap::from([(first, on[0])]), epochs }
            })
            .collect();
        let recorded = domains
            .iter()
            .map(|d: &Domain| d.replicas.iter().map(|r| (r.machine.role, r.machine.epoch)).collect())
            .collect();
        let stats = Stats::default();
        Sim { rng, servers, domains, now: 0, net: vec![], cut: BTreeSet::new(), next_rev: 1, stats, recorded }
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.servers[a].up && self.servers[b].up && !self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn send(&mut self, domain: usize, from: usize, to: usize, msg: Msg) {
        let delay = self.rng.gen_range(1..=4);
        self.send_after(domain, from, to, msg, delay);
    }

    fn send_after(&mut self, domain: usize, from: usize, to: usize, msg: Msg, delay: u64) {
        if self.linked(from, to) && self.rng.gen_ratio(19, 20) {
            self.net.push(InFlight { due: self.now + delay, domain, from, to, msg });
        }
    }

    fn server_of(&self, id: Uid) -> usize {
        self.servers.iter().position(|s| s.id == id).expect("known server")
    }

    /// Checks that every domain but `d` still has the roles and epochs last recorded, then
    /// records `d`'s.
    fn check_independent(&mut self, d: usize) {
        for (other, dom) in self.domains.iter().enumerate() {
            if other == d {
                continue;
            }
            for (r, rep) in dom.replicas.iter().enumerate() {
                let now = (rep.machine.role, rep.machine.epoch);
                assert_eq!(now, self.recorded[other][r], "an event of domain {d} changed domain {other}, replica {r}");
            }
        }
        for (r, rep) in self.domains[d].replicas.iter().enumerate() {
            self.recorded[d][r] = (rep.machine.role, rep.machine.epoch);
        }
    }

    /// Feeds an event to domain `d`'s replica `r` and carries out its actions; checks that no
    /// other domain changed.
    fn event(&mut self, d: usize, r: usize, ev: Event) -> Vec<Action> {
        let before_log = self.domains[d].replicas[r].log.clone();
        let forced = matches!(ev, Event::Force { .. });
        let me = self.domains[d].replicas[r].server;
        let actions = self.domains[d].replicas[r].machine.handle(ev);
        for a in &actions {
            match a {
                Action::ChangeoverDone { .. } if forced => self.stats.forced += 1,
                Action::SteppedDown { .. } => self.stats.stepped_down += 1,
                Action::HandoverStarted(planned) => self.domains[d].replicas[r].call = Some((*planned, None)),
                Action::SendPromote { target, epoch } => {
                    let t = self.server_of(*target);
                    self.send(d, me, t, Msg::Promote { epoch: *epoch, log: before_log.clone() });
                    if let Some(call) = &mut self.domains[d].replicas[r].call {
                        call.1 = Some(self.now);
                    }
                }
                Action::ReplyPromoted { to, epoch } => {
                    let t = self.server_of(*to);
                    self.send(d, me, t, Msg::Promoted { epoch: *epoch });
                }
                Action::ChangeoverFailed { .. } => self.domains[d].replicas[r].call = None,
                _ => {}
            }
        }
        self.check_replica(d, r);
        self.check_independent(d);
        actions
    }

    fn check_replica(&mut self, d: usize, r: usize) {
        let dom = &mut self.domains[d];
        let rep = &mut dom.replicas[r];
        let (role, e) = (rep.machine.role, rep.machine.epoch);
        assert!(e >= dom.epochs[r], "domain {d}, replica {r}: epoch went back from {} to {e}", dom.epochs[r]);
        dom.epochs[r] = e;
        rep.seen_epoch = rep.seen_epoch.max(e);
        if role == Role::Active {
            let holder = *dom.active_at.entry(e).or_insert(rep.server);
            assert_eq!(holder, rep.server, "domain {d}: two Actives at epoch {e}: servers {holder} and {}", rep.server);
        }
    }

    fn deliver(&mut self, f: InFlight) {
        let (d, from, to) = (f.domain, f.from, f.to);
        if !self.linked(from, to) {
            return;
        }
        // A stream of a domain not hosted there is refused.
        let (Some(rf), Some(rt)) = (self.domains[d].replica_on(from), self.domains[d].replica_on(to)) else {
            return;
        };
        let from_id = self.servers[from].id;
        match f.msg {
            Msg::Hello { role, epoch } => {
                let me = &mut self.domains[d].replicas[rt];
                me.seen_epoch = me.seen_epoch.max(epoch);
                self.event(d, rt, Event::PeerSeen { peer: from_id, role, epoch });
            }
            Msg::Replicate { epoch, log, kept } => {
                let me = &self.domains[d].replicas[rt];
                if me.machine.role != Role::Standby || epoch < me.machine.epoch {
                    return; // fencing: never follow a lower epoch
                }
                let ours = head_of(&log);
                let peer = head_of(&me.log);
                let our_id_at_peer = (peer.seq <= ours.seq).then(|| OurIdAt::Known(id_of(&log[..peer.seq as usize])));
                let peer_id_at_ours = (peer.seq > ours.seq).then(|| id_of(&me.log[..ours.seq as usize]));
                let (_, plan) = decide(&Facts { ours, floor: Head::default(), peer, our_id_at_peer, peer_id_at_ours });
                match plan {
                    Plan::Stream | Plan::SendRevisions { .. } | Plan::FullSync => {
                        self.domains[d].replicas[rt].log = log.clone()
                    }
                    Plan::Hold => {
                        let common = me.log.iter().zip(&log).take_while(|(a, b)| a == b).count();
                        let mine: Vec<Rev> = me.log[common..].to_vec();
                        if mine.iter().all(|r| kept.contains(r)) {
                            self.domains[d].replicas[rt].log = log.clone();
                        } else {
                            self.send(d, to, from, Msg::Branch { revs: mine });
                            return;
                        }
                    }
                }
                let l = self.domains[d].replicas[rt].log.clone();
                self.send(d, to, from, Msg::Ack { log: l });
            }
            Msg::Ack { log } => {
                let me = &mut self.domains[d].replicas[rt];
                me.peer_logs.insert(from, log.clone());
                if me.machine.handover.is_some_and(|h| h.target == from_id) && log == me.log {
                    self.event(d, rt, Event::TargetCaughtUp { target: from_id });
                }
            }
            Msg::Branch { revs } => {
                let me = &mut self.domains[d].replicas[rt];
                self.stats.branch_revisions += revs.iter().filter(|r| !me.branches.contains(r)).count() as u64;
                me.branches.extend(revs);
            }
            Msg::Promote { epoch, log } => {
                let head_matches = self.domains[d].replicas[rt].log == log;
                self.event(d, rt, Event::PromoteRequest { from: from_id, epoch, head_matches });
            }
            Msg::Promoted { epoch } => {
                let old_log = self.domains[d].replicas[rt].log.clone();
                let out = self.event(d, rt, Event::Promoted { from: from_id, epoch });
                if out.iter().any(|a| matches!(a, Action::ChangeoverDone { .. })) {
                    self.stats.planned += 1;
                    let new_log = &self.domains[d].replicas[rf].log;
                    assert!(new_log.starts_with(&old_log), "domain {d}: planned changeover lost revisions");
                }
            }
        }
    }

    /// What each leading replica's runtime does every step: judge its changeover, and ask the
    /// target again while it waits.
    fn drive_calls(&mut self) {
        for d in 0..self.domains.len() {
            for r in 0..self.domains[d].replicas.len() {
                let rep = &self.domains[d].replicas[r];
                let Some((planned, sent_at)) = rep.call else { continue };
                if !self.servers[rep.server].up {
                    self.domains[d].replicas[r].call = None;
                    continue;
                }
                if rep.machine.planned_outcome(&planned, sent_at.is_some(), self.now).is_some() {
                    assert!(self.now <= planned.deadline_ms + 1, "domain {d}: a changeover ended after its deadline");
                    self.domains[d].replicas[r].call = None;
                    continue;
                }
                let t = self.server_of(planned.target);
                let caught_up = rep.peer_logs.get(&t) == Some(&rep.log);
                let ours = rep.machine.handover.is_some_and(|h| h.promote_sent);
                if let Some(at) = sent_at {
                    if ours && caught_up && self.now >= at + RESEND_EVERY {
                        let (me, log) = (rep.server, rep.log.clone());
                        self.send(d, me, t, Msg::Promote { epoch: planned.epoch, log });
                        self.domains[d].replicas[r].call = Some((planned, Some(self.now)));
                    }
                }
            }
        }
    }

    fn step(&mut self, quiet: bool) {
        self.now += 1;
        let now = self.now;
        let (due, rest): (Vec<InFlight>, Vec<InFlight>) = self.net.drain(..).partition(|m| m.due <= now);
        self.net = rest;
        for f in due {
            self.deliver(f);
        }
        for d in 0..self.domains.len() {
            for r in 0..self.domains[d].replicas.len() {
                let me = self.domains[d].replicas[r].server;
                if !self.servers[me].up {
                    continue;
                }
                self.event(d, r, Event::Tick { now_ms: now });
                if now % 3 != me as u64 % 3 {
                    continue;
                }
                for p in 0..self.domains[d].replicas.len() {
                    let rep = &self.domains[d].replicas[r];
                    let peer = self.domains[d].replicas[p].server;
                    if peer == me {
                        continue;
                    }
                    let (role, epoch) = (rep.machine.role, rep.machine.epoch);
                    let replicate = (role == Role::Active).then(|| Msg::Replicate {
                        epoch,
                        log: rep.log.clone(),
                        kept: rep.branches.clone(),
                    });
                    self.send(d, me, peer, Msg::Hello { role, epoch });
                    if let Some(msg) = replicate {
                        self.send(d, me, peer, msg);
                    }
                }
            }
        }
        self.drive_calls();
        if !quiet {
            for _ in 0..3 {
                self.chaos();
            }
        }
        self.check_no_loss();
    }

    fn changeover(&mut self, d: usize, r: usize, t: usize) {
        let (me, target) = (self.domains[d].replicas[r].server, self.domains[d].replicas[t].server);
        if !self.servers[me].up || me == target {
            return;
        }
        let ev = Event::ChangeoverTo {
            target: self.servers[target].id,
            target_tag: self.servers[target].tag,
            target_connected: self.linked(me, target),
            now_ms: self.now,
            timeout_ms: CHANGEOVER_TIMEOUT,
        };
        self.event(d, r, ev);
    }

    /// Planned changeovers of many domains at once, each from the up server with the most
    /// Actives to a replica on the one with the fewest, as a rebalance plans them.
    fn rebalance(&mut self) {
        let up: Vec<usize> = (0..self.servers.len()).filter(|&s| self.servers[s].up).collect();
        let mut load: BTreeMap<usize, usize> = up.iter().map(|&s| (s, 0)).collect();
        let mut actives = Vec::new();
        for (d, dom) in self.domains.iter().enumerate() {
            for (r, rep) in dom.replicas.iter().enumerate() {
                if rep.machine.role == Role::Active && rep.machine.handover.is_none() {
                    if let Some(n) = load.get_mut(&rep.server) {
                        *n += 1;
                        actives.push((d, r));
                    }
                }
            }
        }
        for (d, r) in actives {
            let from = self.domains[d].replicas[r].server;
            let fewest = (0..self.domains[d].replicas.len())
                .filter(|&t| load.contains_key(&self.domains[d].replicas[t].server))
                .min_by_key(|&t| load[&self.domains[d].replicas[t].server]);
            let Some(t) = fewest else { continue };
            let to = self.domains[d].replicas[t].server;
            if load[&from] >= load[&to] + 2 {
                *load.get_mut(&from).expect("up") -= 1;
                *load.get_mut(&to).expect("up") += 1;
                self.stats.rebalance_changeovers += 1;
                self.changeover(d, r, t);
            }
        }
    }

    #[allow(clippy::collapsible_match)] // one arm per kind of chaos reads better than guards
    fn chaos(&mut self) {
        let n = self.servers.len();
        let s = self.rng.gen_range(0..n);
        let d = self.rng.gen_range(0..self.domains.len());
        let r = self.rng.gen_range(0..self.domains[d].replicas.len());
        match self.rng.gen_range(0..200) {
            0..=99 => {
                let up = self.servers[self.domains[d].replicas[r].server].up;
                if up && self.event(d, r, Event::Publish { now_ms: 0 }) == vec![Action::Accept] {
                    let rev = self.next_rev;
                    self.next_rev += 1;
                    self.domains[d].replicas[r].log.push(rev);
                    self.domains[d].acked.insert(rev);
                    self.stats.publishes += 1;
                }
            }
            100..=119 => {
                let t = self.rng.gen_range(0..self.domains[d].replicas.len());
                self.changeover(d, r, t);
            }
            120..=123 => {
                let rep = &self.domains[d].replicas[r];
                if self.servers[rep.server].up && rep.machine.role == Role::Standby {
                    let highest = rep.seen_epoch;
                    self.event(d, r, Event::Force { highest_epoch: highest });
                }
            }
            124..=128 => {
                let t = self.rng.gen_range(0..n);
                if s != t {
                    self.cut.insert((s.min(t), s.max(t)));
                }
            }
            129..=138 => self.cut.clear(),
            139..=140 => {
                // A crash takes every replica of the server; roles and epochs are durable.
                if self.servers[s].up {
                    self.servers[s].up = false;
                    self.stats.crashes += 1;
                }
            }
            141..=150 => self.restart(s),
            151..=153 => {
                // The link between two servers closes: every domain's stream on it loses what
                // was in flight.
                let t = self.rng.gen_range(0..n);
                let before = self.net.len();
                self.net.retain(|m| !((m.from == s && m.to == t) || (m.from == t && m.to == s)));
                self.stats.links_closed += u64::from(self.net.len() < before);
            }
            154..=157 => {
                // One domain's stream closes; the link and the other domains go on.
                let t = self.rng.gen_range(0..n);
                self.net.retain(|m| !(m.domain == d && ((m.from == s && m.to == t) || (m.from == t && m.to == s))));
            }
            158 => self.rebalance(),
            _ => {}
        }
    }

    fn restart(&mut self, s: usize) {
        if self.servers[s].up {
            return;
        }
        self.servers[s].up = true;
        for d in 0..self.domains.len() {
            if let Some(r) = self.domains[d].replica_on(s) {
                let m = &self.domains[d].replicas[r].machine;
                let machine = RoleMachine::new(m.node_id, m.tag, m.role, m.epoch);
                self.domains[d].replicas[r].machine = machine;
                self.domains[d].replicas[r].call = None;
                self.check_replica(d, r);
                self.check_independent(d);
            }
        }
    }

    fn check_no_loss(&self) {
        for (d, dom) in self.domains.iter().enumerate() {
            for rev in &dom.acked {
                let kept = dom.replicas.iter().any(|r| r.log.contains(rev) || r.branches.contains(rev));
                assert!(kept, "domain {d}: acknowledged revision {rev} is in no log and no branch");
            }
        }
    }
}

fn run(seed: u64) -> Stats {
    let mut sim = Sim::new(seed);
    for _ in 0..300 {
        sim.step(false);
    }
    sim.cut.clear();
    for s in 0..sim.servers.len() {
        sim.restart(s);
    }
    for _ in 0..100 {
        sim.step(true);
    }
    for (d, dom) in sim.domains.iter().enumerate() {
        let actives: Vec<&Replica> = dom.replicas.iter().filter(|r| r.machine.role == Role::Active).collect();
        assert!(actives.len() <= 1, "seed {seed}: domain {d} has {} Actives after healing", actives.len());
        if let [a] = actives.as_slice() {
            for r in &dom.replicas {
                assert_eq!(r.log, a.log, "seed {seed}: domain {d} did not converge on its Active's history");
            }
        }
    }
    sim.stats
}

/// Runs over `MGHA_SIM_SEEDS` seeds (`default_seeds` when unset), or the one `MGHA_SIM_SEED`
/// names; returns the summed stats, `None` for a replay.
fn over_seeds(default_seeds: u64) -> Option<Stats> {
    if let Some(seed) = std::env::var("MGHA_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        println!("{:?}", run(seed));
        return None;
    }
    let seeds: u64 = std::env::var("MGHA_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_seeds);
    let mut total = Stats::default();
    for seed in 0..seeds {
        match std::panic::catch_unwind(|| run(seed)) {
            Ok(s) => total.add(&s),
            Err(e) => {
                let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
                panic!("seed {seed} failed (replay with MGHA_SIM_SEED={seed}): {msg}");
            }
        }
    }
    println!("{seeds} seeds: {total:?}");
    Some(total)
}

#[test]
fn many_domains_keep_one_active_per_epoch_each() {
    let Some(total) = over_seeds(20) else {
        return;
    };
    assert!(
        total.planned > 0
            && total.forced > 0
            && total.stepped_down > 0
            && total.branch_revisions > 0
            && total.rebalance_changeovers > 0
            && total.crashes > 0
            && total.links_closed > 0,
        "the simulation did not exercise every path: {total:?}"
    );
}
