//! Tests of placement and rebalance: fixed cases, invariants over seeded random inputs, the
//! optimum of small inputs found by brute force, and a seeded simulation of a cluster whose
//! servers fail and return while domains are created, moved and rebalanced.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::*;

fn servers(names: &[&str]) -> Vec<Server> {
    names.iter().map(|n| Server { name: n.to_string(), healthy: true }).collect()
}

fn domain(name: &str, replicas: &[&str], active: Option<&str>) -> DomainPlacement {
    DomainPlacement {
        name: name.to_string(),
        replicas: replicas.iter().map(|s| Replica { server: s.to_string(), eligible: true }).collect(),
        active: active.map(str::to_string),
    }
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn healthy(servers: &[Server], name: &str) -> bool {
    servers.iter().any(|s| s.name == name && s.healthy)
}

/// Where a domain may be Active, by the rule `rebalance` documents (written out again here so
/// the tests check the plan against the rule, not against the plan's own code).
fn allowed(servers: &[Server], d: &DomainPlacement) -> BTreeSet<String> {
    let mut out: BTreeSet<String> =
        d.replicas.iter().filter(|r| r.eligible && healthy(servers, &r.server)).map(|r| r.server.clone()).collect();
    if let Some(a) = d.active.as_ref().filter(|a| healthy(servers, a)) {
        out.insert(a.clone());
    }
    out
}

fn apply(domains: &[DomainPlacement], plan: &[Move]) -> Vec<DomainPlacement> {
    let mut out = domains.to_vec();
    for m in plan {
        let d = out.iter_mut().find(|d| d.name == m.domain).expect("a move names a known domain");
        d.active = Some(m.to.clone());
    }
    out
}

/// Actives per healthy server.
fn loads(servers: &[Server], domains: &[DomainPlacement]) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> = servers.iter().filter(|s| s.healthy).map(|s| (s.name.clone(), 0)).collect();
    for d in domains {
        if let Some(n) = d.active.as_ref().and_then(|a| out.get_mut(a)) {
            *n += 1;
        }
    }
    out
}

fn spread(l: &BTreeMap<String, usize>) -> usize {
    l.values().max().copied().unwrap_or(0) - l.values().min().copied().unwrap_or(0)
}

/// Checks every promise of `rebalance` about `plan`, made for `domains` on `servers`.
fn check_plan(servers: &[Server], domains: &[DomainPlacement], plan: &[Move]) {
    let named: BTreeSet<&str> = plan.iter().map(|m| m.domain.as_str()).collect();
    assert_eq!(named.len(), plan.len(), "a domain moved twice: {plan:?}");
    let forced_end = plan.iter().position(|m| m.from.is_some()).unwrap_or(plan.len());
    assert!(plan[forced_end..].iter().all(|m| m.from.is_some()), "forced moves come first: {plan:?}");
    for m in plan {
        let d = domains.iter().find(|d| d.name == m.domain).expect("known domain");
        assert!(allowed(servers, d).contains(&m.to), "{m:?} goes where the domain may not be Active");
        let fine = d.active.as_ref().filter(|a| healthy(servers, a));
        assert_eq!(m.from.as_ref(), fine, "{m:?}: from is not the domain's Active on a healthy server");
        assert_ne!(m.from.as_ref(), Some(&m.to), "{m:?} moves nowhere");
    }
    let after = apply(domains, plan);
    for d in &after {
        let can = !allowed(servers, domains.iter().find(|o| o.name == d.name).expect("known")).is_empty();
        let has = d.active.as_ref().is_some_and(|a| healthy(servers, a));
        assert_eq!(can, has, "domain {} can have an Active on a healthy server: {can}, has one: {has}", d.name);
    }
    check_even(servers, domains, &after);
    assert_eq!(rebalance(servers, &after), vec![], "a plan carried out needs no further moves");
}

/// The spread is as even as the replicas allow: no server holds two Actives more than another
/// that a chain of allowed moves reaches from it (each move shifts one Active along, so such a
/// chain would even them out).
fn check_even(servers: &[Server], before: &[DomainPlacement], after: &[DomainPlacement]) {
    let l = loads(servers, after);
    let mut next: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (d, was) in after.iter().zip(before) {
        if let Some(a) = d.active.as_ref().filter(|a| healthy(servers, a)) {
            next.entry(a.as_str()).or_default().extend(allowed(servers, was));
        }
    }
    for (s, ls) in &l {
        let mut seen = BTreeSet::from([s.clone()]);
        let mut queue = VecDeque::from([s.clone()]);
        while let Some(x) = queue.pop_front() {
            for y in next.get(x.as_str()).into_iter().flatten() {
                if seen.insert(y.clone()) {
                    queue.push_back(y.clone());
                }
            }
        }
        for t in &seen {
            assert!(l[t] + 1 >= *ls, "{s} holds {ls} Actives and reaches {t} with {}: not even, {l:?}", l[t]);
        }
    }
}

fn random_input(rng: &mut StdRng, servers_max: usize, domains_max: usize) -> (Vec<Server>, Vec<DomainPlacement>) {
    let n = rng.gen_range(1..=servers_max);
    let servers: Vec<Server> = (0..n).map(|i| Server { name: format!("s{i}"), healthy: rng.gen_bool(0.8) }).collect();
    let domains = (0..rng.gen_range(0..=domains_max))
        .map(|i| {
            let mut names: Vec<&Server> = servers.iter().collect();
            names.shuffle(rng);
            let replicas: Vec<Replica> = names[..rng.gen_range(1..=n.min(3))]
                .iter()
                .map(|s| Replica { server: s.name.clone(), eligible: rng.gen_bool(0.8) })
                .collect();
            let active = match rng.gen_range(0..10) {
                0 => None,
                1 => Some(format!("gone{i}")),
                _ => Some(replicas[0].server.clone()),
            };
            DomainPlacement { name: format!("d{i:03}"), replicas, active }
        })
        .collect();
    (servers, domains)
}

#[test]
fn spreads_300_domains_evenly_over_3_servers() {
    let s = servers(&["a", "b", "c"]);
    let names = ["a", "b", "c"];
    let mut rng = StdRng::seed_from_u64(7);
    let domains: Vec<DomainPlacement> = (0..300)
        .map(|i| {
            let mut r = names.to_vec();
            r.shuffle(&mut rng);
            let count = if i % 2 == 0 { 2 } else { 3 };
            // Every Active on one server, as after the others were down.
            let mut replicas = r[..count].to_vec();
            if !replicas.contains(&"a") {
                replicas[0] = "a";
            }
            domain(&format!("d{i:03}"), &replicas, Some("a"))
        })
        .collect();
    let plan = rebalance(&s, &domains);
    check_plan(&s, &domains, &plan);
    let after = loads(&s, &apply(&domains, &plan));
    assert_eq!(after.values().copied().collect::<Vec<_>>(), vec![100, 100, 100]);
    // Each move takes one Active off a; 200 of them must leave it.
    assert_eq!(plan.len(), 200);
}

#[test]
fn balanced_input_needs_no_moves() {
    let s = servers(&["a", "b", "c"]);
    let domains: Vec<DomainPlacement> = (0..31)
        .map(|i| {
            let names = ["a", "b", "c"];
            let (x, y) = (names[i % 3], names[(i + 1) % 3]);
            domain(&format!("d{i}"), &[x, y], Some(x))
        })
        .collect();
    assert_eq!(spread(&loads(&s, &domains)), 1);
    assert_eq!(rebalance(&s, &domains), vec![]);
}

#[test]
fn moves_as_few_as_possible_and_through_chains() {
    let s = servers(&["a", "b", "c"]);
    // a holds 3, c none; no domain on a has a replica on c, but one on b does: the plan moves
    // one from a to b and one from b to c (two moves, the fewest that even them out).
    let domains = vec![
        domain("d1", &["a", "b"], Some("a")),
        domain("d2", &["a", "b"], Some("a")),
        domain("d3", &["a", "b"], Some("a")),
        domain("d4", &["b", "c"], Some("b")),
    ];
    let plan = rebalance(&s, &domains);
    check_plan(&s, &domains, &plan);
    assert_eq!(plan.len(), 2, "{plan:?}");
    assert_eq!(loads(&s, &apply(&domains, &plan)).values().copied().collect::<Vec<_>>(), vec![2, 1, 1]);
    assert!(plan.contains(&Move { domain: "d4".into(), from: Some("b".into()), to: "c".into() }));
}

#[test]
fn unhealthy_servers_get_no_actives() {
    let mut s = servers(&["a", "b", "c"]);
    s[1].healthy = false;
    let domains: Vec<DomainPlacement> =
        (0..12).map(|i| domain(&format!("d{i:02}"), &["a", "b", "c"], Some(if i < 6 { "b" } else { "a" }))).collect();
    let plan = rebalance(&s, &domains);
    check_plan(&s, &domains, &plan);
    assert!(plan.iter().all(|m| m.to != "b"));
    // The six on b have no Active on a healthy server: each is given one, forced.
    assert_eq!(plan.iter().filter(|m| m.from.is_none()).count(), 6);
    assert_eq!(loads(&s, &apply(&domains, &plan)), BTreeMap::from([("a".into(), 6), ("c".into(), 6)]));
}

#[test]
fn ineligible_replicas_are_never_chosen() {
    let s = servers(&["a", "b", "c"]);
    let mut domains: Vec<DomainPlacement> =
        (0..9).map(|i| domain(&format!("d{i}"), &["a", "b", "c"], Some("a"))).collect();
    for d in &mut domains {
        d.replicas[2].eligible = false; // c is not synchronized anywhere
    }
    let plan = rebalance(&s, &domains);
    check_plan(&s, &domains, &plan);
    assert!(plan.iter().all(|m| m.to == "b"), "{plan:?}");
    assert_eq!(plan.len(), 4);
    // A domain with no eligible replica on a healthy server is left without a plan.
    let mut lost = domain("lost", &["a", "b"], None);
    lost.replicas[1].eligible = false;
    let mut down = servers(&["a", "b"]);
    down[0].healthy = false;
    let fine = domain("fine", &["a", "b"], None);
    assert_eq!(
        rebalance(&down, &[lost.clone(), fine.clone()]),
        vec![Move { domain: "fine".into(), from: None, to: "b".into() }]
    );
    assert_eq!(stranded(&down, &[fine, lost]), strings(&["lost"]));
}

#[test]
fn domains_without_an_active_are_given_one_first() {
    let s = servers(&["a", "b"]);
    let domains = vec![
        domain("z", &["a", "b"], Some("a")),
        domain("y", &["a", "b"], Some("a")),
        domain("x", &["a", "b"], None),
        domain("w", &["b"], Some("gone")),
    ];
    let plan = rebalance(&s, &domains);
    check_plan(&s, &domains, &plan);
    assert_eq!(plan[0], Move { domain: "w".into(), from: None, to: "b".into() });
    assert_eq!(plan[1], Move { domain: "x".into(), from: None, to: "b".into() });
    assert_eq!(plan.len(), 2, "a and b hold two each once w and x are on b: {plan:?}");
}

#[test]
fn plan_does_not_depend_on_input_order() {
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..100 {
        let (mut s, mut d) = random_input(&mut rng, 6, 40);
        let plan = rebalance(&s, &d);
        s.shuffle(&mut rng);
        d.shuffle(&mut rng);
        assert_eq!(rebalance(&s, &d), plan);
    }
}

#[test]
fn random_plans_keep_their_invariants() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut moved = 0;
    for _ in 0..1000 {
        let (s, d) = random_input(&mut rng, 6, 60);
        let plan = rebalance(&s, &d);
        check_plan(&s, &d, &plan);
        moved += plan.len();
        let mut left_out: Vec<String> =
            d.iter().filter(|x| allowed(&s, x).is_empty()).map(|x| x.name.clone()).collect();
        left_out.sort();
        assert_eq!(stranded(&s, &d), left_out);
    }
    assert!(moved > 1000, "the inputs hardly needed moves: {moved}");
}

/// The best (sum of squared Actives per healthy server, planned moves) over every way to place
/// the Actives, by trying them all.
fn brute_force(servers: &[Server], domains: &[DomainPlacement]) -> (usize, usize) {
    let choices: Vec<Vec<String>> = domains.iter().map(|d| allowed(servers, d).into_iter().collect()).collect();
    let mut best = (usize::MAX, usize::MAX);
    let mut pick = vec![0usize; domains.len()];
    loop {
        let mut l = loads(servers, &[]);
        let mut moves = 0;
        for (i, d) in domains.iter().enumerate() {
            if let Some(to) = choices[i].get(pick[i]) {
                *l.get_mut(to).expect("healthy") += 1;
                let fine = d.active.as_ref().filter(|a| healthy(servers, a));
                moves += usize::from(fine.is_some_and(|a| a != to));
            }
        }
        best = best.min((l.values().map(|n| n * n).sum(), moves));
        // The next combination, as an odometer.
        let mut i = 0;
        while i < pick.len() {
            pick[i] += 1;
            if pick[i] < choices[i].len() {
                break;
            }
            pick[i] = 0;
            i += 1;
        }
        if i == pick.len() {
            return best;
        }
    }
}

#[test]
fn small_random_plans_are_optimal() {
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..1000 {
        let (s, d) = random_input(&mut rng, 4, 7);
        let plan = rebalance(&s, &d);
        check_plan(&s, &d, &plan);
        let l = loads(&s, &apply(&d, &plan));
        let planned = plan.iter().filter(|m| m.from.is_some()).count();
        let got = (l.values().map(|n| n * n).sum::<usize>(), planned);
        assert_eq!(got, brute_force(&s, &d), "servers {s:?}, domains {d:?}, plan {plan:?}");
    }
}

#[test]
fn choose_replicas_takes_the_least_loaded_healthy_servers() {
    let mut s = servers(&["a", "b", "c", "d"]);
    s[3].healthy = false;
    let domains = vec![
        domain("x", &["a", "b"], Some("a")),
        domain("y", &["a", "c"], Some("c")),
        domain("z", &["b", "c"], Some("c")),
    ];
    // Replicas: a 2, b 2, c 2; Actives: a 1, b 0, c 2. Fewest replicas tie, so fewest Actives:
    // b then a; b leads (fewest Actives).
    assert_eq!(choose_replicas(&s, &domains, 2, None), Ok(strings(&["b", "a"])));
    assert_eq!(choose_replicas(&s, &domains, 3, None), Ok(strings(&["b", "a", "c"])));
    assert_eq!(choose_replicas(&s, &domains, 4, None), Err(PlacementError::NotEnoughServers { wanted: 4, healthy: 3 }));
    assert_eq!(choose_replicas(&s, &domains, 0, None), Err(PlacementError::ZeroReplicas));
    // Replicas: a 1, b 0, c 1; Actives: a 1, c 0.
    let domains = vec![domain("x", &["a"], Some("a")), domain("y", &["c"], None)];
    assert_eq!(choose_replicas(&s, &domains, 2, None), Ok(strings(&["b", "c"])));
    assert_eq!(choose_replicas(&s, &domains, 3, None), Ok(strings(&["b", "c", "a"])));
    // Fewest replicas picks the servers, fewest Actives the one that leads: a (1 replica, 1
    // Active) is picked before b (2 replicas, none Active), but b leads.
    let two = servers(&["a", "b"]);
    let domains = vec![domain("x", &["a", "b"], Some("a")), domain("y", &["b"], None)];
    assert_eq!(choose_replicas(&two, &domains, 2, None), Ok(strings(&["b", "a"])));
    assert_eq!(choose_replicas(&s, &[], 1, None), Ok(strings(&["a"])));
}

#[test]
fn choose_replicas_takes_named_servers_as_given() {
    let mut s = servers(&["a", "b", "c"]);
    s[2].healthy = false;
    let on = strings(&["b", "c"]);
    assert_eq!(choose_replicas(&s, &[], 2, Some(&on)), Ok(on.clone()));
    assert_eq!(choose_replicas(&s, &[], 3, Some(&on)), Err(PlacementError::CountMismatch { count: 3, on: 2 }));
    let twice = strings(&["a", "a"]);
    assert_eq!(choose_replicas(&s, &[], 2, Some(&twice)), Err(PlacementError::Duplicate("a".into())));
    let unknown = strings(&["a", "q"]);
    assert_eq!(choose_replicas(&s, &[], 2, Some(&unknown)), Err(PlacementError::UnknownServer("q".into())));
    let down_first = strings(&["c", "a"]);
    assert_eq!(choose_replicas(&s, &[], 2, Some(&down_first)), Err(PlacementError::Unhealthy("c".into())));
    assert_eq!(choose_replicas(&s, &[], 0, Some(&[])), Err(PlacementError::ZeroReplicas));
    assert_eq!(PlacementError::UnknownServer("q".into()).code(), ErrorCode::NotFound);
}

#[test]
fn move_replica_replaces_one_server_in_place() {
    let mut s = servers(&["a", "b", "c", "d"]);
    let d = domain("x", &["a", "b", "c"], Some("a"));
    assert_eq!(move_replica(&d, "b", "d", &s), Ok(strings(&["a", "d", "c"])));
    let err = |server: &str| PlacementError::ActiveReplica { domain: "x".into(), server: server.into() };
    assert_eq!(move_replica(&d, "a", "d", &s), Err(err("a")));
    assert_eq!(
        move_replica(&d, "d", "b", &s),
        Err(PlacementError::NotAReplica { domain: "x".into(), server: "d".into() })
    );
    assert_eq!(
        move_replica(&d, "b", "c", &s),
        Err(PlacementError::AlreadyAReplica { domain: "x".into(), server: "c".into() })
    );
    assert_eq!(move_replica(&d, "b", "q", &s), Err(PlacementError::UnknownServer("q".into())));
    s[3].healthy = false;
    assert_eq!(move_replica(&d, "b", "d", &s), Err(PlacementError::Unhealthy("d".into())));
}

/// One seeded run of a cluster's placement: servers fail and return, replicas fall behind and
/// catch up, domains are created and their replicas moved, Actives fail over (forced moves of
/// the plan) and are rebalanced. After every step: each move obeys the rules, each domain that
/// can have an Active on a healthy server has one once the plan is carried out, and the spread
/// is as even as the replicas allow.
fn simulate(seed: u64) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = rng.gen_range(3..=6);
    let mut s: Vec<Server> = (0..n).map(|i| Server { name: format!("s{i}"), healthy: true }).collect();
    let mut domains: Vec<DomainPlacement> = Vec::new();
    let (mut forced, mut planned) = (0, 0);
    for step in 0..200 {
        let i = rng.gen_range(0..n);
        match rng.gen_range(0..10) {
            0 => s[i].healthy = false,
            1 | 2 if !s[i].healthy => {
                // A server that was away follows its domains again: it must catch up first.
                s[i].healthy = true;
                for d in &mut domains {
                    for r in d.replicas.iter_mut().filter(|r| r.server == s[i].name) {
                        r.eligible = false;
                    }
                }
            }
            3 | 4 if domains.len() < 60 => {
                let count = rng.gen_range(1..=3.min(n));
                if let Ok(replicas) = choose_replicas(&s, &domains, count, None) {
                    let active = Some(replicas[0].clone());
                    let replicas: Vec<Replica> = replicas
                        .into_iter()
                        .enumerate()
                        .map(|(k, server)| Replica { server, eligible: k == 0 })
                        .collect();
                    domains.push(DomainPlacement { name: format!("d{step:03}"), replicas, active });
                }
            }
            5 if !domains.is_empty() => {
                let d = rng.gen_range(0..domains.len());
                let k = rng.gen_range(0..domains[d].replicas.len());
                let from = domains[d].replicas[k].server.clone();
                if let Ok(list) = move_replica(&domains[d], &from, &format!("s{i}"), &s) {
                    assert_eq!(list.len(), domains[d].replicas.len());
                    assert!(list.contains(&format!("s{i}")) && !list.contains(&from));
                    // The new replica starts with a full sync: not eligible yet.
                    domains[d].replicas[k] = Replica { server: format!("s{i}"), eligible: false };
                }
            }
            6 | 7 if !domains.is_empty() => {
                // A replica catches up or falls behind.
                let d = rng.gen_range(0..domains.len());
                let k = rng.gen_range(0..domains[d].replicas.len());
                domains[d].replicas[k].eligible = rng.gen_bool(0.7);
            }
            _ => {}
        }
        // The node rebalances after every event (a failover would make the forced moves).
        let plan = rebalance(&s, &domains);
        check_plan(&s, &domains, &plan);
        forced += plan.iter().filter(|m| m.from.is_none()).count();
        planned += plan.iter().filter(|m| m.from.is_some()).count();
        domains = apply(&domains, &plan);
        // A domain's Active is synchronized with itself.
        for d in &mut domains {
            let active = d.active.clone();
            for r in &mut d.replicas {
                r.eligible |= Some(&r.server) == active.as_ref();
            }
        }
    }
    (forced, planned)
}

#[test]
fn placement_holds_over_a_seeded_simulation_of_failures() {
    let (mut forced, mut planned) = (0, 0);
    for seed in 0..100 {
        let (f, p) = simulate(seed);
        forced += f;
        planned += p;
    }
    assert!(forced > 100 && planned > 100, "the simulation hardly moved anything: {forced} forced, {planned} planned");
}
