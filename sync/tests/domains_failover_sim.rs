//! Deterministic, seeded simulation of automatic failover of many domains: 3 servers hold 10
//! to 20 domains, each replicated on 2 or 3 of them; every replica runs the real arbitrated
//! [`RoleMachine`] and the real failover rules of [`mgha_sync::failover::plan`], as the
//! failover driver does, against one linearizable arbiter state per domain (as the quorum
//! backend keeps one per domain id). A server's crash, restart, cut from the arbiter and clock
//! (up to 5% fast or slow) hit all its replicas at once; every arbiter call takes a random
//! time, takes effect at a random instant inside it, or is lost.
//!
//! The arbiter grants an acquire only if neither the holder nor its renewal count changed since
//! the observation the acquire is based on. Comparing the holder alone is not enough: a
//! Standby that judged the hold stale (its Active was away for the failover timeout) would take
//! it just after that Active came back and renewed, while the Active's new lease still runs,
//! and both would accept publishes.
//!
//! Invariants:
//! - at no instant do two replicas of one domain accept publishes;
//! - each domain's granted epochs only go up, and a replica's epoch never goes back;
//! - liveness: once every server is up and reaches the arbiter (and calls are no longer lost),
//!   every domain settles on one replica that accepts publishes; when the server holding the
//!   most Actives then crashes, each of its domains gets a new Active on another server within
//!   the failover timeout plus a bounded detection delay, and every other domain keeps its
//!   Active where it is throughout.
//!
//! `MGHA_DOMAINS_FAILOVER_SIM_SEEDS=200 cargo test --release --test domains_failover_sim`
//! searches longer; `MGHA_DOMAINS_FAILOVER_SIM_SEED=N` replays one.

use std::collections::BTreeMap;

use mgha_core::model::Uid;
use mgha_core::node::Role;
use mgha_core::roles::{Action, Event, RoleMachine};
use mgha_sync::failover::plan::{self, ActiveDecision, StandbyDecision};
use mgha_sync::failover::{FailoverTiming, Holder, HolderState, Report};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const STEP_MS: u64 = 5;
const CALL_TIMEOUT_MS: u64 = 400;
const SERVERS: usize = 3;

#[derive(Clone, Debug)]
enum Call {
    Renew {
        holder: Holder,
        started_local: u64,
    },
    Observe,
    /// `renewals`: the hold's renewal count in the observation this acquire is based on.
    Acquire {
        expected: Option<Holder>,
        renewals: u64,
        highest: u64,
        started_local: u64,
    },
}

#[derive(Clone, Debug)]
enum Answer {
    Renewed(bool),
    Observed(ArbiterState),
    Acquired(Option<u64>),
}

struct InFlight {
    call: Call,
    effect_at: u64,
    answer_at: u64,
    answer: Option<Answer>,
}

/// One domain's state at the arbiter.
#[derive(Clone, Debug, Default)]
struct ArbiterState {
    holder: Option<Holder>,
    counter: u64,
    highest_epoch: u64,
    reports: BTreeMap<Uid, (Report, u64)>,
}

/// A server: identity, process, reach to the arbiter and clock, shared by its replicas.
struct Server {
    id: Uid,
    tag: u16,
    up: bool,
    connected: bool,
    rate: f64,
    offset: u64,
}

impl Server {
    fn local(&self, global: u64) -> u64 {
        (global as f64 * self.rate) as u64 + self.offset
    }
}

/// One domain's replica: its machine and its failover driver.
struct Replica {
    server: usize,
    machine: RoleMachine,
    next_tick_local: u64,
    started_local: u64,
    call: Option<InFlight>,
    queue: Vec<Call>,
    seen: Option<(Option<Holder>, u64)>,
    seen_changed_local: u64,
    persisted: (Role, u64),
}

struct Domain {
    replicas: Vec<Replica>,
    arbiter: ArbiterState,
    granted: Vec<u64>,
}

struct Sim {
    rng: StdRng,
    now: u64,
    timing: FailoverTiming,
    servers: Vec<Server>,
    domains: Vec<Domain>,
    /// Arbiter calls may be lost (while faults are injected).
    lossy: bool,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let timing = FailoverTiming { heartbeat_ms: 1000, failover_after_ms: 5000, max_lag_revisions: 100 };
        let servers: Vec<Server> = (0..SERVERS)
            .map(|i| Server {
                id: Uid(uuid::Uuid::from_u128(rng.gen::<u128>())),
                tag: i as u16,
                up: true,
                connected: true,
                rate: rng.gen_range(0.95..1.05),
                offset: rng.gen_range(0..10_000),
            })
            .collect();
        let domains = (0..rng.gen_range(10..=20))
            .map(|_| {
                let mut on: Vec<usize> = (0..SERVERS).collect();
                on.shuffle(&mut rng);
                on.truncate(rng.gen_range(2..=3));
                let e = mgha_core::roles::machine::epoch::first(servers[on[0]].tag);
                let replicas: Vec<Replica> = on
                    .iter()
                    .enumerate()
                    .map(|(k, &s)| {
                        let role = if k == 0 { Role::Active } else { Role::Standby };
                        let local = servers[s].local(0);
                        Replica {
                            server: s,
                            machine: RoleMachine::arbitrated(servers[s].id, servers[s].tag, role, e),
                            next_tick_local: local,
                            started_local: local,
                            call: None,
                            queue: Vec::new(),
                            seen: None,
                            seen_changed_local: 0,
                            persisted: (role, e),
                        }
                    })
                    .collect();
                // Half the domains start with a fresh arbiter state their Active must claim.
                let first = Holder { node_id: servers[on[0]].id, epoch: e };
                let arbiter = if rng.gen_bool(0.5) {
                    ArbiterState { holder: Some(first), counter: 1, highest_epoch: e, reports: BTreeMap::new() }
                } else {
                    ArbiterState::default()
                };
                let granted = vec![arbiter.highest_epoch];
                Domain { replicas, arbiter, granted }
            })
            .collect();
        Sim { rng, now: 0, timing, servers, domains, lossy: true }
    }

    fn local(&self, d: usize, r: usize) -> u64 {
        self.servers[self.domains[d].replicas[r].server].local(self.now)
    }

    fn report(&self, d: usize, r: usize) -> Report {
        let rep = &self.domains[d].replicas[r];
        let s = &self.servers[rep.server];
        Report {
            node_id: s.id,
            name: format!("s{}", rep.server),
            tag: s.tag,
            role: rep.machine.role,
            epoch: rep.machine.epoch,
            head_seq: 0,
            writable: true,
            ranks_per_domain: true,
        }
    }

    fn event(&mut self, d: usize, r: usize, e: Event) {
        let rep = &mut self.domains[d].replicas[r];
        let before = rep.machine.epoch;
        for a in rep.machine.handle(e) {
            if let Action::Persist { role, epoch } = a {
                rep.persisted = (role, epoch);
            }
        }
        assert!(rep.machine.epoch >= before, "domain {d}, replica {r}: epoch went back");
    }

    /// Applies a call at domain `d`'s arbiter state (its linearization point).
    fn apply(&mut self, d: usize, r: usize, call: &Call) -> Answer {
        let me = self.report(d, r);
        let now = self.now;
        let dom = &mut self.domains[d];
        dom.arbiter.reports.insert(me.node_id, (me.clone(), now));
        let a = &mut dom.arbiter;
        match call {
            Call::Renew { holder, .. } => {
                let ok = a.holder == Some(*holder);
                a.counter += u64::from(ok);
                Answer::Renewed(ok)
            }
            Call::Observe => Answer::Observed(a.clone()),
            Call::Acquire { expected, renewals, highest, .. } => {
                if a.holder != *expected || a.counter != *renewals {
                    return Answer::Acquired(None);
                }
                let e = mgha_core::roles::machine::epoch::next((*highest).max(a.highest_epoch), me.tag);
                assert!(e > a.highest_epoch, "domain {d}: the arbiter granted a lower epoch");
                a.highest_epoch = e;
                a.holder = Some(Holder { node_id: me.node_id, epoch: e });
                a.counter += 1;
                dom.granted.push(e);
                Answer::Acquired(Some(e))
            }
        }
    }

    fn holder_state(&mut self, d: usize, r: usize, s: &ArbiterState) -> HolderState {
        let local = self.local(d, r);
        let rep = &mut self.domains[d].replicas[r];
        let key = (s.holder, s.counter);
        if rep.seen != Some(key) {
            rep.seen = Some(key);
            rep.seen_changed_local = local;
        }
        let stale = s.holder.is_none() || local.saturating_sub(rep.seen_changed_local) >= self.timing.failover_after_ms;
        let reports = s
            .reports
            .values()
            .filter(|(_, at)| self.now.saturating_sub(*at) < self.timing.failover_after_ms)
            .map(|(r, _)| r.clone())
            .collect();
        HolderState { holder: s.holder, stale, highest_epoch: s.highest_epoch, reports, stale_in_ms: None }
    }

    fn start_call(&mut self, d: usize, r: usize, call: Call) {
        let there = self.rng.gen_range(0..=CALL_TIMEOUT_MS / 2);
        let back = self.rng.gen_range(0..=CALL_TIMEOUT_MS / 2);
        let lost = self.lossy && self.rng.gen_bool(0.03);
        self.domains[d].replicas[r].call = Some(InFlight {
            call,
            effect_at: if lost { u64::MAX } else { self.now + there },
            answer_at: if lost { self.now + CALL_TIMEOUT_MS } else { self.now + there + back },
            answer: None,
        });
    }

    fn on_answer(&mut self, d: usize, r: usize, call: Call, answer: Option<Answer>) {
        let local = self.local(d, r);
        match (call, answer) {
            (Call::Renew { holder, started_local }, Some(Answer::Renewed(true))) => {
                let until = plan::lease_until(started_local, &self.timing);
                self.event(d, r, Event::Renewed { epoch: holder.epoch, until_ms: until });
            }
            (Call::Renew { .. }, _) => {}
            (Call::Observe, Some(Answer::Observed(s))) => {
                let state = self.holder_state(d, r, &s);
                let me = self.report(d, r);
                if me.role == Role::Active {
                    let holder = Holder { node_id: me.node_id, epoch: me.epoch };
                    match plan::active_decision(holder, &state) {
                        ActiveDecision::StepDown { .. } => self.event(d, r, Event::Fence),
                        ActiveDecision::Claim => self.domains[d].replicas[r].queue.push(Call::Acquire {
                            expected: None,
                            renewals: s.counter,
                            highest: state.highest_epoch.max(me.epoch),
                            started_local: local,
                        }),
                        ActiveDecision::Renew => self.fence_if_lease_ran_out(d, r, local),
                    }
                } else {
                    let observed_for = local.saturating_sub(self.domains[d].replicas[r].started_local);
                    if let StandbyDecision::Campaign { expected } = plan::standby_decision(
                        Uid(uuid::Uuid::from_u128(d as u128 + 1)),
                        &me,
                        &state,
                        observed_for,
                        0,
                        &self.timing,
                    ) {
                        let highest = state.highest_epoch.max(me.epoch);
                        let renewals = s.counter;
                        let call = Call::Acquire { expected, renewals, highest, started_local: local };
                        self.domains[d].replicas[r].queue.push(call);
                    }
                }
            }
            (Call::Observe, None) => self.fence_if_lease_ran_out(d, r, local),
            (Call::Acquire { started_local, .. }, Some(Answer::Acquired(Some(epoch)))) => {
                let until = plan::lease_until(started_local, &self.timing);
                self.event(d, r, Event::Fence);
                self.event(d, r, Event::Elected { epoch, until_ms: until });
            }
            _ => {}
        }
    }

    fn fence_if_lease_ran_out(&mut self, d: usize, r: usize, local: u64) {
        let m = &self.domains[d].replicas[r].machine;
        if m.role == Role::Active && local >= m.lease_until_ms.unwrap_or(0) {
            self.event(d, r, Event::Fence);
        }
    }

    /// One step of one replica's failover driver.
    fn drive(&mut self, d: usize, r: usize) {
        let server = self.domains[d].replicas[r].server;
        let connected = self.servers[server].connected;
        if let Some(f) = &self.domains[d].replicas[r].call {
            if f.answer.is_none() && self.now >= f.effect_at {
                let call = f.call.clone();
                let answer = if connected { Some(self.apply(d, r, &call)) } else { None };
                if let Some(f) = &mut self.domains[d].replicas[r].call {
                    f.answer = answer;
                    if f.answer.is_none() {
                        f.answer_at = f.answer_at.max(self.now);
                    }
                }
            }
        }
        let done = self.domains[d].replicas[r].call.as_ref().is_some_and(|f| self.now >= f.answer_at);
        if done {
            let f = self.domains[d].replicas[r].call.take().expect("in flight");
            let answer = if connected { f.answer } else { None };
            self.on_answer(d, r, f.call, answer);
        }
        if self.domains[d].replicas[r].call.is_some() {
            return;
        }
        if !self.domains[d].replicas[r].queue.is_empty() {
            let c = self.domains[d].replicas[r].queue.remove(0);
            self.start_call(d, r, c);
            return;
        }
        let local = self.local(d, r);
        if local >= self.domains[d].replicas[r].next_tick_local {
            let pause = match self.domains[d].replicas[r].machine.role {
                Role::Active => self.timing.heartbeat_ms,
                Role::Standby => self.timing.heartbeat_ms / 2,
            };
            self.domains[d].replicas[r].next_tick_local = local + pause;
            let me = self.report(d, r);
            if me.role == Role::Active {
                let holder = Holder { node_id: me.node_id, epoch: me.epoch };
                self.domains[d].replicas[r].queue.push(Call::Observe);
                self.start_call(d, r, Call::Renew { holder, started_local: local });
            } else {
                self.start_call(d, r, Call::Observe);
            }
        }
    }

    fn step(&mut self, faults: bool) {
        self.now += STEP_MS;
        self.lossy = faults;
        if faults {
            let roll = self.rng.gen_range(0..10_000);
            let s = self.rng.gen_range(0..SERVERS);
            match roll {
                0..=5 => self.crash(s),
                6..=30 if !self.servers[s].up => self.restart(s),
                31..=40 => self.servers[s].connected = !self.servers[s].connected,
                _ => {}
            }
        }
        for d in 0..self.domains.len() {
            for r in 0..self.domains[d].replicas.len() {
                if self.servers[self.domains[d].replicas[r].server].up {
                    self.drive(d, r);
                }
            }
        }
        self.check();
    }

    /// A crash takes every replica of the server, with its calls.
    fn crash(&mut self, s: usize) {
        self.servers[s].up = false;
        for dom in &mut self.domains {
            for rep in dom.replicas.iter_mut().filter(|rep| rep.server == s) {
                rep.call = None;
                rep.queue.clear();
            }
        }
    }

    fn restart(&mut self, s: usize) {
        let local = self.servers[s].local(self.now);
        let (id, tag) = (self.servers[s].id, self.servers[s].tag);
        self.servers[s].up = true;
        for dom in &mut self.domains {
            for rep in dom.replicas.iter_mut().filter(|rep| rep.server == s) {
                let (role, epoch) = rep.persisted;
                rep.machine = RoleMachine::arbitrated(id, tag, role, epoch);
                rep.started_local = local;
                rep.next_tick_local = local;
                rep.seen = None;
            }
        }
    }

    /// The servers whose replica of domain `d` accepts publishes now.
    fn publishers(&self, d: usize) -> Vec<usize> {
        self.domains[d]
            .replicas
            .iter()
            .filter(|rep| {
                let s = &self.servers[rep.server];
                s.up && rep.machine.may_publish(s.local(self.now)).is_ok()
            })
            .map(|rep| rep.server)
            .collect()
    }

    fn check(&self) {
        for (d, dom) in self.domains.iter().enumerate() {
            let p = self.publishers(d);
            assert!(p.len() <= 1, "at {} ms servers {p:?} both accept publishes in domain {d}", self.now);
            let up = dom.granted.windows(2).all(|w| w[0] < w[1]);
            assert!(up, "domain {d}: granted epochs not increasing: {:?}", dom.granted);
        }
    }

    fn every_domain_has_a_publisher(&self) -> bool {
        (0..self.domains.len()).all(|d| self.publishers(d).len() == 1)
    }
}

/// Global ms within which a Standby takes over from a crashed Active: its clock (up to 5%
/// slow) must see the hold unchanged for the failover timeout, then observe (every half
/// heartbeat) and acquire (two calls of at most the call timeout each), then renew.
fn takeover_bound(t: &FailoverTiming) -> u64 {
    t.failover_after_ms * 106 / 100 + t.heartbeat_ms + 4 * CALL_TIMEOUT_MS
}

/// Returns the slowest takeover (global ms) after the final crash.
fn run(seed: u64) -> u64 {
    let mut sim = Sim::new(seed);
    for _ in 0..(30_000 / STEP_MS) {
        sim.step(true);
    }
    for s in 0..SERVERS {
        if !sim.servers[s].up {
            sim.restart(s);
        }
        sim.servers[s].connected = true;
    }
    // Settled: every domain has had its Active for longer than any lease taken before the
    // heal could still run out.
    let settled_after = sim.timing.failover_after_ms + 2 * sim.timing.heartbeat_ms;
    let deadline = sim.now + 3 * sim.timing.failover_after_ms + 6 * sim.timing.heartbeat_ms;
    let mut since = sim.now;
    while sim.now < since + settled_after {
        sim.step(false);
        if !sim.every_domain_has_a_publisher() {
            since = sim.now;
        }
        assert!(sim.now < deadline, "seed {seed}: the domains did not settle on one Active each after healing");
    }

    // The server with the most Actives crashes: each of its domains moves elsewhere.
    let held = |s: usize| (0..sim.domains.len()).filter(|&d| sim.publishers(d) == [s]).count();
    let victim = (0..SERVERS).max_by_key(|&s| (held(s), s)).expect("servers");
    let moving: Vec<usize> = (0..sim.domains.len()).filter(|&d| sim.publishers(d) == [victim]).collect();
    let unmoved: Vec<usize> = (0..sim.domains.len()).filter(|d| !moving.contains(d)).collect();
    let owners: Vec<Vec<usize>> = unmoved.iter().map(|&d| sim.publishers(d)).collect();
    sim.crash(victim);
    let crashed_at = sim.now;
    let bound = takeover_bound(&sim.timing);
    let mut slowest = 0;
    let mut waiting = moving.clone();
    while !waiting.is_empty() {
        sim.step(false);
        waiting.retain(|&d| sim.publishers(d).len() != 1);
        let took = sim.now - crashed_at;
        slowest = took;
        assert!(took <= bound, "seed {seed}: domains {waiting:?} had no new Active {took} ms after the crash");
        // The other domains keep their Active throughout.
        for (d, owner) in unmoved.iter().zip(&owners) {
            assert_eq!(&sim.publishers(*d), owner, "seed {seed}: domain {d} lost its Active to another server's crash");
        }
    }
    slowest
}

#[test]
fn each_domain_fails_over_on_its_own() {
    if let Some(seed) = std::env::var("MGHA_DOMAINS_FAILOVER_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        println!("slowest takeover {} ms", run(seed));
        return;
    }
    let seeds: u64 = std::env::var("MGHA_DOMAINS_FAILOVER_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let mut slowest = 0;
    for seed in 0..seeds {
        match std::panic::catch_unwind(|| run(seed)) {
            Ok(took) => slowest = slowest.max(took),
            Err(e) => {
                let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
                panic!("seed {seed} failed (replay with MGHA_DOMAINS_FAILOVER_SIM_SEED={seed}): {msg}");
            }
        }
    }
    println!("{seeds} seeds: slowest takeover {slowest} ms");
    assert!(slowest > 0, "no domain ever failed over");
}
