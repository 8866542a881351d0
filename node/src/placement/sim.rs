//! Rebalance plans carried out by the real role machines: a seeded simulation of servers that
//! fail and return while every domain's replicas run [`RoleMachine`], and the node rebalances
//! after each event, running each planned move as a planned changeover (change over, target
//! caught up, promote, promoted) and each forced one as a forced changeover on the target.
//!
//! Checked after every step of every seed: at most one Active per domain per epoch; a replica's
//! epoch never goes back; once a plan is carried out and hellos exchanged, each domain that can
//! have an Active on a healthy server has exactly one, where the plan put it; and no move of one
//! domain changes another's role or epoch.

use std::collections::{BTreeMap, VecDeque};

use mgha_core::model::Uid;
use mgha_core::node::Role;
use mgha_core::roles::machine::epoch;
use mgha_core::roles::{Action, Event, RoleMachine};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

struct Srv {
    name: String,
    id: Uid,
    tag: u16,
    healthy: bool,
}

struct Rep {
    server: usize,
    machine: RoleMachine,
    eligible: bool,
}

struct Dom {
    name: String,
    reps: Vec<Rep>,
    /// Which server was Active at each epoch, and the highest epoch each replica held.
    active_at: BTreeMap<u64, usize>,
    epochs: Vec<u64>,
}

struct Sim {
    rng: StdRng,
    servers: Vec<Srv>,
    domains: Vec<Dom>,
    now: u64,
    changeovers: (usize, usize),
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(3..=5);
        let servers: Vec<Srv> = (0..n)
            .map(|i| Srv {
                name: format!("s{i}"),
                id: Uid::from_slice(&rng.gen::<u128>().to_le_bytes()).expect("16 bytes"),
                tag: i as u16,
                healthy: true,
            })
            .collect();
        let mut sim = Sim { rng, servers, domains: Vec::new(), now: 0, changeovers: (0, 0) };
        for i in 0..sim.rng.gen_range(20..=50) {
            let count = sim.rng.gen_range(1..=3);
            let on = choose_replicas(&sim.facts().0, &sim.facts().1, count, None).expect("all healthy");
            let first = sim.index(&on[0]);
            let e = epoch::first(sim.servers[first].tag);
            let reps = on
                .iter()
                .enumerate()
                .map(|(k, name)| {
                    let s = sim.index(name);
                    let role = if k == 0 { Role::Active } else { Role::Standby };
                    let srv = &sim.servers[s];
                    Rep { server: s, machine: RoleMachine::new(srv.id, srv.tag, role, e), eligible: true }
                })
                .collect::<Vec<_>>();
            let epochs = vec![e; reps.len()];
            sim.domains.push(Dom { name: format!("d{i:02}"), reps, active_at: BTreeMap::from([(e, first)]), epochs });
        }
        sim
    }

    fn index(&self, name: &str) -> usize {
        self.servers.iter().position(|s| s.name == name).expect("known server")
    }

    /// What the node would gather for placement: servers and their health, each domain's
    /// replicas and eligibility, and where it is Active: on a healthy server if it is Active on
    /// one (the highest epoch there: a returned server's old Active steps down only when it
    /// hears of a newer one), else wherever it was last Active.
    fn facts(&self) -> (Vec<Server>, Vec<DomainPlacement>) {
        let servers = self.servers.iter().map(|s| Server { name: s.name.clone(), healthy: s.healthy }).collect();
        let domains = self
            .domains
            .iter()
            .map(|d| DomainPlacement {
                name: d.name.clone(),
                replicas: d
                    .reps
                    .iter()
                    .map(|r| Replica { server: self.servers[r.server].name.clone(), eligible: r.eligible })
                    .collect(),
                active: d
                    .reps
                    .iter()
                    .filter(|r| r.machine.role == Role::Active)
                    .max_by_key(|r| (self.servers[r.server].healthy, r.machine.epoch))
                    .map(|r| self.servers[r.server].name.clone()),
            })
            .collect();
        (servers, domains)
    }

    fn rep_on(&self, d: usize, server: usize) -> usize {
        self.domains[d].reps.iter().position(|r| r.server == server).expect("a replica there")
    }

    /// Feeds events to domain `d`'s replicas, carrying out what they ask of each other as the
    /// runtime would (messages arrive in order, at once).
    fn run(&mut self, d: usize, first: (usize, Event)) {
        let mut queue = VecDeque::from([first]);
        while let Some((r, ev)) = queue.pop_front() {
            let me = self.servers[self.domains[d].reps[r].server].id;
            for action in self.domains[d].reps[r].machine.handle(ev) {
                match action {
                    Action::HandoverStarted(p) => queue.push_back((r, Event::TargetCaughtUp { target: p.target })),
                    Action::SendPromote { target, epoch } => {
                        let t = self.rep_on(d, self.index_of(target));
                        queue.push_back((t, Event::PromoteRequest { from: me, epoch, head_matches: true }));
                    }
                    Action::ReplyPromoted { to, epoch } => {
                        let t = self.rep_on(d, self.index_of(to));
                        queue.push_back((t, Event::Promoted { from: me, epoch }));
                    }
                    Action::ChangeoverFailed { failure } => panic!("domain {d}: a planned move failed: {failure:?}"),
                    _ => {}
                }
            }
            self.check(d, r);
        }
    }

    fn index_of(&self, id: Uid) -> usize {
        self.servers.iter().position(|s| s.id == id).expect("known server")
    }

    fn roles(&self) -> Vec<Vec<(Role, u64)>> {
        self.domains.iter().map(|d| d.reps.iter().map(|r| (r.machine.role, r.machine.epoch)).collect()).collect()
    }

    fn check(&mut self, d: usize, r: usize) {
        let dom = &mut self.domains[d];
        let (role, e, server) = (dom.reps[r].machine.role, dom.reps[r].machine.epoch, dom.reps[r].server);
        assert!(e >= dom.epochs[r], "domain {d}: replica on s{server} went back to epoch {e}");
        dom.epochs[r] = e;
        if role == Role::Active {
            let holder = *dom.active_at.entry(e).or_insert(server);
            assert_eq!(holder, server, "domain {d}: two Actives at epoch {e}");
        }
    }

    /// Every healthy replica of every domain hears every other's hello.
    fn hellos(&mut self) {
        for d in 0..self.domains.len() {
            for a in 0..self.domains[d].reps.len() {
                for b in 0..self.domains[d].reps.len() {
                    let (ra, rb) = (&self.domains[d].reps[a], &self.domains[d].reps[b]);
                    if a == b || !self.servers[ra.server].healthy || !self.servers[rb.server].healthy {
                        continue;
                    }
                    let ev = Event::PeerSeen {
                        peer: self.servers[ra.server].id,
                        role: ra.machine.role,
                        epoch: ra.machine.epoch,
                    };
                    self.run(d, (b, ev));
                }
            }
        }
    }

    fn carry_out(&mut self, plan: &[Move]) {
        for m in plan {
            let d = self.domains.iter().position(|x| x.name == m.domain).expect("known domain");
            let before = self.roles();
            let to = self.index(&m.to);
            let t = self.rep_on(d, to);
            match &m.from {
                Some(from) => {
                    let f = self.rep_on(d, self.index(from));
                    let srv = &self.servers[to];
                    let ev = Event::ChangeoverTo {
                        target: srv.id,
                        target_tag: srv.tag,
                        target_connected: true,
                        now_ms: self.now,
                        timeout_ms: 30_000,
                    };
                    self.run(d, (f, ev));
                    self.changeovers.0 += 1;
                }
                None => {
                    let highest = self.domains[d].reps.iter().map(|r| r.machine.epoch).max().unwrap_or(0);
                    self.run(d, (t, Event::Force { highest_epoch: highest }));
                    self.changeovers.1 += 1;
                }
            }
            let after = self.roles();
            for (other, (b, a)) in before.iter().zip(&after).enumerate() {
                assert!(other == d || b == a, "a move of domain {d} changed domain {other}");
            }
        }
    }

    fn step(&mut self) {
        self.now += 1000;
        let s = self.rng.gen_range(0..self.servers.len());
        match self.rng.gen_range(0..10) {
            0 | 1 => self.servers[s].healthy = false,
            2..=4 if !self.servers[s].healthy => {
                // Back, behind on every domain it holds until it catches up.
                self.servers[s].healthy = true;
                for dom in &mut self.domains {
                    for r in dom.reps.iter_mut().filter(|r| r.server == s) {
                        r.eligible = false;
                    }
                }
            }
            _ => {
                for dom in &mut self.domains {
                    for r in dom.reps.iter_mut().filter(|r| r.server == s) {
                        r.eligible = true;
                    }
                }
            }
        }
        self.hellos();
        let (servers, domains) = self.facts();
        let plan = rebalance(&servers, &domains);
        self.carry_out(&plan);
        self.hellos();
        // Where the plan put each domain, it is Active, and nowhere else on a healthy server.
        let after = apply(&domains, &plan);
        for (d, want) in after.iter().enumerate() {
            let healthy_actives: Vec<&str> = self.domains[d]
                .reps
                .iter()
                .filter(|r| r.machine.role == Role::Active && self.servers[r.server].healthy)
                .map(|r| self.servers[r.server].name.as_str())
                .collect();
            let can = !allowed(&servers, &domains[d]).is_empty();
            let expected: Vec<&str> = want.active.as_deref().filter(|_| can).into_iter().collect();
            assert_eq!(healthy_actives, expected, "domain {d} after the plan {plan:?}");
        }
    }
}

fn allowed(servers: &[Server], d: &DomainPlacement) -> Vec<String> {
    let up = |name: &str| servers.iter().any(|s| s.name == name && s.healthy);
    let mut out: Vec<String> =
        d.replicas.iter().filter(|r| r.eligible && up(&r.server)).map(|r| r.server.clone()).collect();
    out.extend(d.active.iter().filter(|a| up(a)).cloned());
    out
}

fn apply(domains: &[DomainPlacement], plan: &[Move]) -> Vec<DomainPlacement> {
    let mut out = domains.to_vec();
    for m in plan {
        if let Some(d) = out.iter_mut().find(|d| d.name == m.domain) {
            d.active = Some(m.to.clone());
        }
    }
    out
}

#[test]
fn rebalance_plans_carried_out_by_role_machines_keep_one_active_per_domain() {
    let (mut planned, mut forced) = (0, 0);
    for seed in 0..60 {
        let mut sim = Sim::new(seed);
        for _ in 0..60 {
            sim.step();
        }
        planned += sim.changeovers.0;
        forced += sim.changeovers.1;
    }
    assert!(planned > 100 && forced > 100, "too few changeovers: {planned} planned, {forced} forced");
}
