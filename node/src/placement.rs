//! Where a cluster's domains live and where their Actives sit: pure plans, no I/O. The node
//! gathers the facts (servers and their health, each domain's replicas, Active and sync
//! statuses) and carries out what these functions return: a replica list to publish in the
//! domain registry, or planned changeovers to run.
//!
//! [`rebalance`] spreads Actives over healthy servers as evenly as the replicas allow and moves
//! as few domains as it can. It is a convex-cost flow: each domain is one unit on one server,
//! the cost of a plan is first the sum of the squared Active counts of the healthy servers (so
//! the spread is the most even the replicas allow: lowest maximum and highest minimum at once),
//! then the number of domains moved. The plan starts from where the Actives are and applies
//! improving chains of moves (one domain from server A to B, another from B to C, ...) until
//! none is left; a plan with no improving chain and no cycle of moves that saves a move is
//! optimal for that cost, so the result is both as even as possible and minimal in moves.

use std::collections::{BTreeMap, BTreeSet};

use mgha_core::ErrorCode;

/// A server of the cluster as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    /// Up and reachable: it may hold Actives.
    pub healthy: bool,
}

/// One replica of a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// The server that holds it.
    pub server: String,
    /// It can take the Active role: synchronized with the domain's Active and not damaged.
    pub eligible: bool,
}

/// A domain as placement sees it. Names of domains and servers are unique (the registry and
/// the member list key them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainPlacement {
    pub name: String,
    /// Its replicas in registry order (the first is where it was created Active).
    pub replicas: Vec<Replica>,
    /// The server where it is Active now, if one is known.
    pub active: Option<String>,
}

/// One planned change of a domain's Active.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Move {
    pub domain: String,
    /// Where it is Active now; `None` when it has no Active on a healthy server, so the move
    /// is a forced changeover to `to` rather than a planned one.
    pub from: Option<String>,
    pub to: String,
}

/// Why a placement was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    #[error("no server named '{0}' in the cluster")]
    UnknownServer(String),
    #[error("{wanted} replicas wanted but only {healthy} healthy servers")]
    NotEnoughServers { wanted: usize, healthy: usize },
    #[error("server '{0}' is named twice")]
    Duplicate(String),
    #[error("a domain needs at least one replica")]
    ZeroReplicas,
    #[error("{count} replicas asked for but {on} servers named")]
    CountMismatch { count: usize, on: usize },
    /// The server that would take the role is down or unreachable.
    #[error("server '{0}' is not healthy")]
    Unhealthy(String),
    #[error("domain '{domain}' has no replica on server '{server}'")]
    NotAReplica { domain: String, server: String },
    #[error("domain '{domain}' already has a replica on server '{server}'")]
    AlreadyAReplica { domain: String, server: String },
    /// Moving the replica that is Active would leave the domain without one: change over first.
    #[error("domain '{domain}' is Active on server '{server}': change it over before moving that replica")]
    ActiveReplica { domain: String, server: String },
}

impl PlacementError {
    /// The stable code front ends map this error to.
    pub fn code(&self) -> ErrorCode {
        match self {
            PlacementError::UnknownServer(_) | PlacementError::NotAReplica { .. } => ErrorCode::NotFound,
            PlacementError::Duplicate(_) | PlacementError::ZeroReplicas | PlacementError::CountMismatch { .. } => {
                ErrorCode::InvalidArgument
            }
            PlacementError::NotEnoughServers { .. }
            | PlacementError::Unhealthy(_)
            | PlacementError::AlreadyAReplica { .. }
            | PlacementError::ActiveReplica { .. } => ErrorCode::Conflict,
        }
    }
}

/// How many replicas and Actives each server holds now.
fn holdings(domains: &[DomainPlacement]) -> BTreeMap<&str, (usize, usize)> {
    let mut held: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for d in domains {
        for r in &d.replicas {
            held.entry(r.server.as_str()).or_default().0 += 1;
        }
        if let Some(a) = &d.active {
            held.entry(a.as_str()).or_default().1 += 1;
        }
    }
    held
}

/// The servers a new domain goes on, the first being where it is created Active.
///
/// With `on`, exactly those servers in that order: each must exist, none twice, the first
/// healthy, and `count` must equal their number (a caller given only `on` passes its length).
/// Without, the `count` healthy servers holding the fewest replicas (ties: fewest Actives, then
/// name), the one with the fewest Actives first.
pub fn choose_replicas(
    servers: &[Server],
    domains: &[DomainPlacement],
    count: usize,
    on: Option<&[String]>,
) -> Result<Vec<String>, PlacementError> {
    if count == 0 {
        return Err(PlacementError::ZeroReplicas);
    }
    if let Some(on) = on {
        return chosen_by_hand(servers, count, on);
    }
    let held = holdings(domains);
    let of = |name: &str| held.get(name).copied().unwrap_or_default();
    let mut healthy: Vec<&str> = servers.iter().filter(|s| s.healthy).map(|s| s.name.as_str()).collect();
    healthy.sort_unstable();
    healthy.dedup();
    if healthy.len() < count {
        return Err(PlacementError::NotEnoughServers { wanted: count, healthy: healthy.len() });
    }
    healthy.sort_by_key(|&name| (of(name).0, of(name).1, name));
    let mut chosen: Vec<String> = healthy[..count].iter().map(|s| s.to_string()).collect();
    // The Active goes where the fewest Actives are; the sort kept ties by replicas, then name.
    let first = (0..count).min_by_key(|&i| (of(&chosen[i]).1, i)).unwrap_or(0);
    let active = chosen.remove(first);
    chosen.insert(0, active);
    Ok(chosen)
}

fn chosen_by_hand(servers: &[Server], count: usize, on: &[String]) -> Result<Vec<String>, PlacementError> {
    if on.is_empty() {
        return Err(PlacementError::ZeroReplicas);
    }
    if on.len() != count {
        return Err(PlacementError::CountMismatch { count, on: on.len() });
    }
    let mut seen = BTreeSet::new();
    for name in on {
        if !servers.iter().any(|s| &s.name == name) {
            return Err(PlacementError::UnknownServer(name.clone()));
        }
        if !seen.insert(name) {
            return Err(PlacementError::Duplicate(name.clone()));
        }
    }
    // Only the first must be up: it takes the role at once, the others sync when they return.
    if !servers.iter().any(|s| s.name == on[0] && s.healthy) {
        return Err(PlacementError::Unhealthy(on[0].clone()));
    }
    Ok(on.to_vec())
}

/// The replica list of `domain` once its replica on `from` moved to `to` (in `from`'s place,
/// so the order of the others is kept). `to` must be a healthy server without a replica of it,
/// and `from` must not be where the domain is Active (change it over first).
pub fn move_replica(
    domain: &DomainPlacement,
    from: &str,
    to: &str,
    servers: &[Server],
) -> Result<Vec<String>, PlacementError> {
    let target = servers.iter().find(|s| s.name == to).ok_or_else(|| PlacementError::UnknownServer(to.to_string()))?;
    let names: Vec<String> = domain.replicas.iter().map(|r| r.server.clone()).collect();
    let Some(at) = names.iter().position(|n| n == from) else {
        return Err(PlacementError::NotAReplica { domain: domain.name.clone(), server: from.to_string() });
    };
    if names.iter().any(|n| n == to) {
        return Err(PlacementError::AlreadyAReplica { domain: domain.name.clone(), server: to.to_string() });
    }
    if domain.active.as_deref() == Some(from) {
        return Err(PlacementError::ActiveReplica { domain: domain.name.clone(), server: from.to_string() });
    }
    // The new replica needs a full sync from the Active: it must be there to take it.
    if !target.healthy {
        return Err(PlacementError::Unhealthy(to.to_string()));
    }
    let mut moved = names;
    moved[at] = to.to_string();
    Ok(moved)
}

/// The planned changeovers that spread the Actives of `domains` as evenly as their replicas
/// allow over the healthy `servers`, moving as few as possible.
///
/// A domain may be Active only on a healthy server where its replica is eligible, or stay where
/// it is Active now if that server is healthy. A domain without an Active on a healthy server
/// is given one when it has an eligible replica on one (`Move { from: None, .. }`, first in the
/// list); one without is left out. The plan depends only on the facts, not on their order:
/// forced moves first, then planned ones, each by domain name.
pub fn rebalance(servers: &[Server], domains: &[DomainPlacement]) -> Vec<Move> {
    let healthy = healthy_servers(servers);
    let index: BTreeMap<&str, usize> = healthy.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let mut sorted: Vec<&DomainPlacement> = domains.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));

    let mut flow = Flow::new(healthy.len());
    let mut placed = Vec::new();
    for d in &sorted {
        let orig = d.active.as_deref().and_then(|a| index.get(a).copied());
        let allowed = allowed_on(d, &index);
        if !allowed.is_empty() {
            placed.push((*d, flow.domains.len()));
            flow.domains.push(Unit { orig, allowed, at: usize::MAX });
        }
    }
    // Domains that stay where they are count first, so forced ones start on the emptiest.
    for u in 0..flow.domains.len() {
        if let Some(o) = flow.domains[u].orig {
            flow.place(u, o);
        }
    }
    for u in 0..flow.domains.len() {
        if flow.domains[u].orig.is_none() {
            let at = flow.domains[u].allowed.iter().copied().min_by_key(|&s| (flow.loads[s], s)).unwrap_or(0);
            flow.place(u, at);
        }
    }
    flow.optimize();

    let mut forced = Vec::new();
    let mut planned = Vec::new();
    for (d, u) in placed {
        let unit = &flow.domains[u];
        let to = healthy[unit.at].to_string();
        match unit.orig {
            None => forced.push(Move { domain: d.name.clone(), from: None, to }),
            Some(o) if o != unit.at => {
                planned.push(Move { domain: d.name.clone(), from: Some(healthy[o].to_string()), to })
            }
            Some(_) => {}
        }
    }
    forced.extend(planned);
    forced
}

/// The names of the healthy servers, sorted, once each.
fn healthy_servers(servers: &[Server]) -> Vec<&str> {
    let mut healthy: Vec<&str> = servers.iter().filter(|s| s.healthy).map(|s| s.name.as_str()).collect();
    healthy.sort_unstable();
    healthy.dedup();
    healthy
}

/// Where `d` may be Active, as indexes of healthy servers (`index`): where it is Active now,
/// and its eligible replicas.
fn allowed_on(d: &DomainPlacement, index: &BTreeMap<&str, usize>) -> Vec<usize> {
    let orig = d.active.as_deref().and_then(|a| index.get(a).copied());
    let mut allowed: Vec<usize> = d
        .replicas
        .iter()
        .filter(|r| r.eligible)
        .filter_map(|r| index.get(r.server.as_str()).copied())
        .chain(orig)
        .collect();
    allowed.sort_unstable();
    allowed.dedup();
    allowed
}

/// The domains that can have no Active now, by name: not Active on a healthy server and no
/// eligible replica on one. [`rebalance`] leaves them out; they wait for a server to return or
/// a replica to catch up (or for a forced changeover an administrator decides on).
pub fn stranded(servers: &[Server], domains: &[DomainPlacement]) -> Vec<String> {
    let healthy = healthy_servers(servers);
    let index: BTreeMap<&str, usize> = healthy.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let mut out: Vec<String> =
        domains.iter().filter(|d| allowed_on(d, &index).is_empty()).map(|d| d.name.clone()).collect();
    out.sort_unstable();
    out
}

/// One domain in the flow: where it is Active now (a healthy server), where it may be, and
/// where the plan puts it.
struct Unit {
    orig: Option<usize>,
    allowed: Vec<usize>,
    at: usize,
}

/// The domains on the healthy servers, with, for each ordered pair of servers, the domains that
/// could move from the first to the second, by what the move costs in moves made.
struct Flow {
    servers: usize,
    loads: Vec<i64>,
    domains: Vec<Unit>,
    /// `edges[x * servers + y]`: (cost, domain) for each domain on x allowed on y.
    edges: Vec<BTreeSet<(i64, usize)>>,
}

impl Flow {
    fn new(servers: usize) -> Flow {
        Flow { servers, loads: vec![0; servers], domains: Vec::new(), edges: vec![BTreeSet::new(); servers * servers] }
    }

    /// What moving domain `u` from `x` to `y` changes in the count of domains moved: leaving
    /// its Active's server costs one, returning there gives it back, and a forced domain is
    /// moved whatever the plan, so its moves are free.
    fn cost(&self, u: usize, x: usize, y: usize) -> i64 {
        match self.domains[u].orig {
            None => 0,
            Some(o) => i64::from(y != o) - i64::from(x != o),
        }
    }

    fn link(&mut self, u: usize, add: bool) {
        let x = self.domains[u].at;
        for i in 0..self.domains[u].allowed.len() {
            let y = self.domains[u].allowed[i];
            if y != x {
                let key = (self.cost(u, x, y), u);
                let edge = &mut self.edges[x * self.servers + y];
                if add {
                    edge.insert(key);
                } else {
                    edge.remove(&key);
                }
            }
        }
    }

    fn place(&mut self, u: usize, at: usize) {
        if self.domains[u].at != usize::MAX {
            self.link(u, false);
            self.loads[self.domains[u].at] -= 1;
        }
        self.domains[u].at = at;
        self.loads[at] += 1;
        self.link(u, true);
    }

    /// The cheapest move from `x` to `y`: its cost and domain.
    fn edge(&self, x: usize, y: usize) -> Option<(i64, usize)> {
        self.edges[x * self.servers + y].first().copied()
    }

    /// Applies improving chains and cycles of moves until none is left.
    fn optimize(&mut self) {
        // Each step lowers (sum of squared loads, moves), which is bounded below, so this ends;
        // the bound is a backstop against a defect, far above what a correct plan takes.
        let d = self.domains.len() + 1;
        let steps_max = d.saturating_mul(d).saturating_mul(self.servers + 2);
        for _ in 0..steps_max {
            let chain = self.negative_cycle().or_else(|| self.improving_path());
            let Some(chain) = chain else { return };
            let moves: Vec<(usize, usize)> =
                chain.windows(2).filter_map(|w| self.edge(w[0], w[1]).map(|(_, u)| (u, w[1]))).collect();
            for (u, to) in moves {
                self.place(u, to);
            }
        }
    }

    /// Relaxes every edge once from `dist`; returns the last server whose distance dropped.
    fn relax(&self, dist: &mut [Option<i64>], pred: &mut [usize]) -> Option<usize> {
        let mut last = None;
        for x in 0..self.servers {
            let Some(dx) = dist[x] else { continue };
            for y in 0..self.servers {
                if let Some((c, _)) = self.edge(x, y) {
                    if dist[y].is_none_or(|dy| dx + c < dy) {
                        dist[y] = Some(dx + c);
                        pred[y] = x;
                        last = Some(y);
                    }
                }
            }
        }
        last
    }

    /// A cycle of moves that saves moves without changing any load (servers in order, the
    /// first again at the end).
    fn negative_cycle(&self) -> Option<Vec<usize>> {
        let n = self.servers;
        let mut dist = vec![Some(0); n];
        let mut pred = vec![usize::MAX; n];
        let mut last = None;
        for _ in 0..n {
            last = self.relax(&mut dist, &mut pred);
            last?;
        }
        let mut v = last?;
        for _ in 0..n {
            v = pred[v];
        }
        let mut cycle = vec![v];
        let mut w = pred[v];
        while w != v && cycle.len() <= n {
            cycle.push(w);
            w = pred[w];
        }
        cycle.push(v);
        cycle.reverse();
        Some(cycle)
    }

    /// The cheapest chains of moves from `s` (no negative cycle exists): distance and
    /// predecessor of each server.
    fn shortest_from(&self, s: usize) -> (Vec<Option<i64>>, Vec<usize>) {
        let mut dist = vec![None; self.servers];
        let mut pred = vec![usize::MAX; self.servers];
        dist[s] = Some(0);
        for _ in 0..self.servers {
            if self.relax(&mut dist, &mut pred).is_none() {
                break;
            }
        }
        (dist, pred)
    }

    /// A chain of moves from a server to one with at least two Actives fewer (the spread
    /// improves), or else from a server to one with one fewer that saves moves.
    fn improving_path(&self) -> Option<Vec<usize>> {
        let mut sources: Vec<usize> = (0..self.servers).collect();
        sources.sort_by_key(|&s| (-self.loads[s], s));
        let mut saving = None;
        for s in sources {
            let (dist, pred) = self.shortest_from(s);
            let reach = |t: usize| if t == s { None } else { dist[t].map(|d| (t, d)) };
            let spread = (0..self.servers)
                .filter_map(reach)
                .filter(|&(t, _)| self.loads[t] <= self.loads[s] - 2)
                .min_by_key(|&(t, d)| (self.loads[t], d, t));
            if let Some((t, _)) = spread {
                return path(&pred, s, t, self.servers);
            }
            if saving.is_none() {
                let cheaper = (0..self.servers)
                    .filter_map(reach)
                    .filter(|&(t, d)| self.loads[t] == self.loads[s] - 1 && d < 0)
                    .min_by_key(|&(t, d)| (d, t));
                saving = cheaper.and_then(|(t, _)| path(&pred, s, t, self.servers));
            }
        }
        saving
    }
}

/// The servers from `s` to `t` along `pred`, or `None` if the walk does not reach `s`.
fn path(pred: &[usize], s: usize, t: usize, servers: usize) -> Option<Vec<usize>> {
    let mut out = vec![t];
    let mut v = t;
    while v != s {
        v = *pred.get(v)?;
        out.push(v);
        if out.len() > servers {
            return None;
        }
    }
    out.reverse();
    Some(out)
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
