//! The replicated state of the quorum arbiter and the commands that change it: per domain, who
//! holds the Active role at which epoch, how often it renewed, and the nodes' latest reports.
//! `apply` is a pure function of the state and one committed command, so every voter reaches the
//! same state.
//!
//! One Raft group serves every domain of a set of servers. A command names its domain; `None`
//! is the cluster's first (global) domain, whose state sits in the top-level fields exactly as
//! before domains existed, so a Raft log or snapshot written then still reads and applies.

use std::collections::{BTreeMap, VecDeque};

use mgha_core::roles::machine::epoch;
use mgha_core::Uid;
use mgha_sync::failover::{Holder, Report};
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// The Raft types of the arbiter: node ids are `u64` (from the member names), nodes carry
    /// their address, snapshots are bytes in memory (a few hundred bytes per domain).
    pub TypeConfig:
        D = Cmd,
        R = CmdResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// How many recent command ids the state remembers at least, so a write retried after a lost
/// answer is answered as the first attempt was instead of being applied twice.
pub const RECENT_OPS_MAX: usize = 256;
/// And this many more per domain besides the global one: a write is retried only within its
/// call timeout (half a heartbeat), in which each domain commits a renewal and one report per
/// replica, so the window stays wider than a retry whatever the number of domains.
pub const RECENT_OPS_PER_DOMAIN: usize = 8;

/// A client write: a random id (for retries), the domain it is about and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cmd {
    pub op: u64,
    /// The domain; `None` (and an entry written before domains existed) is the global domain.
    /// Left out of the encoding when `None`, so a global command is encoded as it always was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Uid>,
    pub kind: CmdKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmdKind {
    /// The Active confirms it still holds the role; accepted only if `holder` is the holder.
    Renew { holder: Holder },
    /// A node's heartbeat report.
    Report { report: Report },
    /// `me` becomes the holder at the next epoch, if the holder is still `expected` and, when
    /// `renewals` is given, has not renewed since the observation that found it stale: a holder
    /// that came back and renewed in between keeps the role (its new lease runs), so that two
    /// nodes never publish at once.
    Acquire {
        me: Report,
        expected: Option<Holder>,
        highest_known: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        renewals: Option<u64>,
    },
    /// A planned changeover: `to` holds the role at `epoch`, if `from` still holds it.
    Transfer { from: Holder, to: Uid, epoch: u64 },
    /// The domain was deleted from the cluster: its state goes (the global domain's never does).
    Forget,
    /// Several commands, of any domains, committed as one log entry and applied in order: how a
    /// server sends the renewals and reports of all its domains that fall due together (see
    /// `node::Batcher`). The entry's `op` answers a retry of the whole; the commands' own ops
    /// are not remembered. A batch inside a batch is refused.
    Batch { cmds: Vec<Cmd> },
}

impl CmdKind {
    /// The node whose report the command records, if it records one.
    pub fn reporter(&self) -> Option<Uid> {
        match self {
            CmdKind::Report { report } => Some(report.node_id),
            CmdKind::Acquire { me, .. } => Some(me.node_id),
            CmdKind::Renew { .. } | CmdKind::Transfer { .. } | CmdKind::Forget | CmdKind::Batch { .. } => None,
        }
    }
}

impl Cmd {
    /// The commands this entry applies: its own, or those of its batch.
    pub fn parts(&self) -> &[Cmd] {
        match &self.kind {
            CmdKind::Batch { cmds } => cmds,
            _ => std::slice::from_ref(self),
        }
    }
}

/// The answer to one applied log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmdResponse {
    /// A blank or membership entry.
    None,
    Renewed(bool),
    Reported,
    Acquired(Option<u64>),
    /// `Err` says why the transfer was refused.
    Transferred(Result<(), String>),
    /// Whether the domain had a state to forget.
    Forgotten(bool),
    /// The answers to a batch's commands, in its order.
    Batch(Vec<CmdResponse>),
    /// A command the state does not apply (a batch inside a batch).
    Refused(String),
}

/// A node's latest report and the log index it arrived at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    pub report: Report,
    pub index: u64,
}

/// What the arbiter knows of one domain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainState {
    pub holder: Option<Holder>,
    pub highest_epoch: u64,
    /// Bumped by every accepted renewal: observers time the holder by when this last changed.
    pub renewals: u64,
    pub reports: BTreeMap<Uid, Reported>,
}

/// What the arbiter knows; identical on every voter at the same log index. The global domain's
/// state is the top-level fields (the shape this state had before domains, kept so that existing
/// logs and snapshots stay valid); every other domain's is in `domains`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArbiterState {
    pub holder: Option<Holder>,
    pub highest_epoch: u64,
    /// Bumped by every accepted renewal: observers time the holder by when this last changed.
    pub renewals: u64,
    pub reports: BTreeMap<Uid, Reported>,
    /// The answers to the last commands, by id (see [`RECENT_OPS_PER_DOMAIN`]).
    recent: VecDeque<(u64, CmdResponse)>,
    /// Every domain but the global one, by domain id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub domains: BTreeMap<Uid, DomainState>,
}

impl ArbiterState {
    /// Applies one committed command at log `index`.
    pub fn apply(&mut self, cmd: &Cmd, index: u64) -> CmdResponse {
        if let Some((_, answer)) = self.recent.iter().find(|(op, _)| *op == cmd.op) {
            return answer.clone();
        }
        let answer = match &cmd.kind {
            CmdKind::Batch { cmds } => CmdResponse::Batch(cmds.iter().map(|c| self.apply_one(c, index)).collect()),
            _ => self.apply_one(cmd, index),
        };
        // Deterministic: the number of domains is part of the state.
        let recent_max = RECENT_OPS_MAX + RECENT_OPS_PER_DOMAIN * self.domains.len();
        while self.recent.len() >= recent_max {
            self.recent.pop_front();
        }
        self.recent.push_back((cmd.op, answer.clone()));
        answer
    }

    /// Applies one command that is not a batch, without remembering its answer.
    fn apply_one(&mut self, cmd: &Cmd, index: u64) -> CmdResponse {
        if matches!(cmd.kind, CmdKind::Batch { .. }) {
            return CmdResponse::Refused("a batch inside a batch".into());
        }
        match cmd.domain {
            Some(domain) if cmd.kind == CmdKind::Forget => {
                CmdResponse::Forgotten(self.domains.remove(&domain).is_some())
            }
            None if cmd.kind == CmdKind::Forget => CmdResponse::Forgotten(false),
            Some(domain) => match self.domains.get_mut(&domain) {
                Some(state) => state.apply(&cmd.kind, index),
                None => {
                    // A refused renewal or transfer of a domain never named leaves no entry.
                    let mut fresh = DomainState::default();
                    let answer = fresh.apply(&cmd.kind, index);
                    if fresh != DomainState::default() {
                        self.domains.insert(domain, fresh);
                    }
                    answer
                }
            },
            None => {
                let mut global = self.take_global();
                let answer = global.apply(&cmd.kind, index);
                self.put_global(global);
                answer
            }
        }
    }

    /// A copy of one domain's state (`None`: the global domain); empty for a domain never named.
    pub fn domain(&self, domain: Option<Uid>) -> DomainState {
        match domain {
            Some(d) => self.domains.get(&d).cloned().unwrap_or_default(),
            None => DomainState {
                holder: self.holder,
                highest_epoch: self.highest_epoch,
                renewals: self.renewals,
                reports: self.reports.clone(),
            },
        }
    }

    /// The holder of one domain.
    pub fn holder_of(&self, domain: Option<Uid>) -> Option<Holder> {
        match domain {
            Some(d) => self.domains.get(&d).and_then(|s| s.holder),
            None => self.holder,
        }
    }

    /// The accepted renewals of one domain.
    pub fn renewals_of(&self, domain: Option<Uid>) -> u64 {
        match domain {
            Some(d) => self.domains.get(&d).map_or(0, |s| s.renewals),
            None => self.renewals,
        }
    }

    /// The log index of `node`'s latest report in one domain.
    pub fn reported_index(&self, domain: Option<Uid>, node: Uid) -> Option<u64> {
        let reports = match domain {
            Some(d) => &self.domains.get(&d)?.reports,
            None => &self.reports,
        };
        reports.get(&node).map(|r| r.index)
    }

    /// Every domain's (holder, renewals) and reports, the global one first as `None`.
    pub fn each_domain(&self) -> impl Iterator<Item = (Option<Uid>, Option<Holder>, u64, &BTreeMap<Uid, Reported>)> {
        std::iter::once((None, self.holder, self.renewals, &self.reports))
            .chain(self.domains.iter().map(|(d, s)| (Some(*d), s.holder, s.renewals, &s.reports)))
    }

    fn take_global(&mut self) -> DomainState {
        DomainState {
            holder: self.holder.take(),
            highest_epoch: self.highest_epoch,
            renewals: self.renewals,
            reports: std::mem::take(&mut self.reports),
        }
    }

    fn put_global(&mut self, global: DomainState) {
        self.holder = global.holder;
        self.highest_epoch = global.highest_epoch;
        self.renewals = global.renewals;
        self.reports = global.reports;
    }
}

impl DomainState {
    fn apply(&mut self, kind: &CmdKind, index: u64) -> CmdResponse {
        match kind {
            CmdKind::Renew { holder } => {
                let accepted = self.holder == Some(*holder);
                if accepted {
                    self.renewals += 1;
                }
                CmdResponse::Renewed(accepted)
            }
            CmdKind::Report { report } => {
                self.record(report, index);
                CmdResponse::Reported
            }
            CmdKind::Acquire { me, expected, highest_known, renewals } => {
                self.record(me, index);
                if self.holder != *expected || renewals.is_some_and(|r| r != self.renewals) {
                    return CmdResponse::Acquired(None);
                }
                let granted = epoch::next((*highest_known).max(self.highest_epoch), me.tag);
                self.holder = Some(Holder { node_id: me.node_id, epoch: granted });
                self.highest_epoch = granted;
                CmdResponse::Acquired(Some(granted))
            }
            CmdKind::Transfer { from, to, epoch: new_epoch } => {
                if self.holder != Some(*from) {
                    return CmdResponse::Transferred(Err(format!(
                        "{} no longer holds the active role at epoch {} (the holder is {})",
                        from.node_id,
                        epoch::display(from.epoch),
                        describe(self.holder)
                    )));
                }
                if *new_epoch <= self.highest_epoch {
                    return CmdResponse::Transferred(Err(format!(
                        "epoch {} is not above the highest granted epoch {}",
                        epoch::display(*new_epoch),
                        epoch::display(self.highest_epoch)
                    )));
                }
                self.holder = Some(Holder { node_id: *to, epoch: *new_epoch });
                self.highest_epoch = *new_epoch;
                CmdResponse::Transferred(Ok(()))
            }
            // Handled by `ArbiterState::apply`, which owns the map of domains and unpacks batches.
            CmdKind::Forget => CmdResponse::Forgotten(false),
            CmdKind::Batch { .. } => CmdResponse::Refused("a batch inside a batch".into()),
        }
    }

    fn record(&mut self, report: &Report, index: u64) {
        self.reports.insert(report.node_id, Reported { report: report.clone(), index });
    }
}

/// `node at round.tag`, or `nobody`, for messages.
pub fn describe(holder: Option<Holder>) -> String {
    match holder {
        Some(h) => format!("{} at epoch {}", h.node_id, epoch::display(h.epoch)),
        None => "nobody".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgha_core::Role;

    fn report(tag: u16) -> Report {
        Report {
            node_id: Uid::new_random(),
            name: format!("n{tag}"),
            tag,
            role: Role::Standby,
            epoch: 0,
            head_seq: 0,
            writable: true,
            ranks_per_domain: true,
        }
    }

    fn cmd(kind: CmdKind) -> Cmd {
        Cmd { op: rand::random(), domain: None, kind }
    }

    fn cmd_in(domain: Uid, kind: CmdKind) -> Cmd {
        Cmd { op: rand::random(), domain: Some(domain), kind }
    }

    #[test]
    fn a_holder_that_renewed_since_it_was_found_stale_keeps_the_role() {
        let mut s = ArbiterState::default();
        let (a, b) = (report(1), report(2));
        let a_id = a.node_id;
        let CmdResponse::Acquired(Some(e1)) =
            s.apply(&cmd(CmdKind::Acquire { me: a, expected: None, highest_known: 0, renewals: None }), 1)
        else {
            panic!("a acquires")
        };
        let held = Holder { node_id: a_id, epoch: e1 };
        // b observed the hold stale at renewal count 0; a came back and renewed before b's
        // acquire committed: b does not take over, and a's new lease stands alone.
        let seen = s.renewals;
        assert_eq!(s.apply(&cmd(CmdKind::Renew { holder: held }), 2), CmdResponse::Renewed(true));
        let late = CmdKind::Acquire { me: b.clone(), expected: Some(held), highest_known: e1, renewals: Some(seen) };
        assert_eq!(s.apply(&cmd(late), 3), CmdResponse::Acquired(None));
        assert_eq!(s.holder, Some(held));
        // Observed again, still stale and unrenewed: now b takes over.
        let now = CmdKind::Acquire { me: b, expected: Some(held), highest_known: e1, renewals: Some(s.renewals) };
        assert!(matches!(s.apply(&cmd(now), 4), CmdResponse::Acquired(Some(_))));
    }

    #[test]
    fn only_the_expected_holder_is_replaced() {
        let mut s = ArbiterState::default();
        let (a, b) = (report(1), report(2));
        let first =
            s.apply(&cmd(CmdKind::Acquire { me: a.clone(), expected: None, highest_known: 0, renewals: None }), 1);
        let CmdResponse::Acquired(Some(e1)) = first else { panic!("a acquires: {first:?}") };
        assert_eq!(e1, epoch::next(0, 1));
        let lost =
            s.apply(&cmd(CmdKind::Acquire { me: b.clone(), expected: None, highest_known: 0, renewals: None }), 2);
        assert_eq!(lost, CmdResponse::Acquired(None));
        let held = Holder { node_id: a.node_id, epoch: e1 };
        let took =
            s.apply(&cmd(CmdKind::Acquire { me: b, expected: Some(held), highest_known: 9 << 16, renewals: None }), 3);
        assert_eq!(took, CmdResponse::Acquired(Some(epoch::next(9 << 16, 2))));
        assert_eq!(s.apply(&cmd(CmdKind::Renew { holder: held }), 4), CmdResponse::Renewed(false));
    }

    #[test]
    fn a_retried_command_gets_the_first_answer() {
        let mut s = ArbiterState::default();
        let a = report(1);
        let c = cmd(CmdKind::Acquire { me: a, expected: None, highest_known: 0, renewals: None });
        let first = s.apply(&c, 1);
        assert!(matches!(first, CmdResponse::Acquired(Some(_))));
        assert_eq!(s.apply(&c, 2), first);
    }

    #[test]
    fn a_batch_applies_its_commands_in_order_across_domains_and_once() {
        let mut s = ArbiterState::default();
        let (a, b) = (report(1), report(2));
        let d = Uid::new_random();
        let acquire =
            |me: &Report| CmdKind::Acquire { me: me.clone(), expected: None, highest_known: 0, renewals: None };
        let batch = cmd(CmdKind::Batch {
            cmds: vec![
                cmd(acquire(&a)),
                cmd_in(d, acquire(&b)),
                // In order: b's acquire of d above is applied first, so a's finds a holder.
                cmd_in(d, acquire(&a)),
                cmd_in(d, CmdKind::Report { report: a.clone() }),
            ],
        });
        let CmdResponse::Batch(answers) = s.apply(&batch, 7) else { panic!("a batch answers with a batch") };
        assert!(matches!(answers[0], CmdResponse::Acquired(Some(_))));
        assert!(matches!(answers[1], CmdResponse::Acquired(Some(_))));
        assert_eq!(answers[2], CmdResponse::Acquired(None));
        assert_eq!(answers[3], CmdResponse::Reported);
        assert_eq!(s.holder_of(None).map(|h| h.node_id), Some(a.node_id));
        assert_eq!(s.holder_of(Some(d)).map(|h| h.node_id), Some(b.node_id));
        assert_eq!(s.reported_index(Some(d), a.node_id), Some(7));
        // A retry of the whole entry is answered as the first time and changes nothing.
        let before = s.clone();
        assert_eq!(s.apply(&batch, 8), CmdResponse::Batch(answers));
        assert_eq!(s, before);
        // A batch inside a batch is refused, and its commands are not applied.
        let nested = cmd(CmdKind::Batch { cmds: vec![cmd(CmdKind::Batch { cmds: vec![cmd(acquire(&b))] })] });
        let CmdResponse::Batch(answers) = s.apply(&nested, 9) else { panic!("a batch answers with a batch") };
        assert!(matches!(answers[0], CmdResponse::Refused(_)));
        assert_eq!(s.holder_of(None).map(|h| h.node_id), Some(a.node_id));
    }

    #[test]
    fn a_command_stays_under_its_bound_with_the_longest_name() {
        let mut me = report(1);
        me.name = "n".repeat(mgha_core::limits::NAME_BYTES_MAX);
        me.epoch = u64::MAX;
        me.head_seq = u64::MAX;
        let kind = CmdKind::Acquire {
            me,
            expected: Some(Holder { node_id: Uid::new_random(), epoch: u64::MAX }),
            highest_known: u64::MAX,
            renewals: Some(u64::MAX),
        };
        let one = cmd_in(Uid::new_random(), kind);
        let bytes = rmp_serde::to_vec_named(&one).expect("encodes").len();
        assert!(bytes <= crate::quorum::node::CMD_BYTES_MAX, "{bytes} bytes");
    }

    #[test]
    fn transfer_needs_the_holder_and_a_higher_epoch() {
        let mut s = ArbiterState::default();
        let a = report(1);
        let CmdResponse::Acquired(Some(e1)) =
            s.apply(&cmd(CmdKind::Acquire { me: a.clone(), expected: None, highest_known: 0, renewals: None }), 1)
        else {
            panic!("acquires")
        };
        let from = Holder { node_id: a.node_id, epoch: e1 };
        let to = Uid::new_random();
        let low = s.apply(&cmd(CmdKind::Transfer { from, to, epoch: e1 }), 2);
        assert!(matches!(low, CmdResponse::Transferred(Err(_))));
        let e2 = epoch::next(e1, 2);
        assert_eq!(s.apply(&cmd(CmdKind::Transfer { from, to, epoch: e2 }), 3), CmdResponse::Transferred(Ok(())));
        assert_eq!(s.holder, Some(Holder { node_id: to, epoch: e2 }));
        let again = s.apply(&cmd(CmdKind::Transfer { from, to, epoch: epoch::next(e2, 2) }), 4);
        assert!(matches!(again, CmdResponse::Transferred(Err(_))));
    }

    #[test]
    fn domains_have_their_own_holders_epochs_and_renewals() {
        let mut s = ArbiterState::default();
        let (a, b) = (report(1), report(2));
        let (d1, d2) = (Uid::new_random(), Uid::new_random());
        let CmdResponse::Acquired(Some(e1)) = s.apply(
            &cmd_in(d1, CmdKind::Acquire { me: a.clone(), expected: None, highest_known: 7 << 16, renewals: None }),
            1,
        ) else {
            panic!("a acquires in d1")
        };
        // d2 and the global domain have no holder yet: b acquires d2 at its first epoch.
        let in_d2 = s.apply(
            &cmd_in(d2, CmdKind::Acquire { me: b.clone(), expected: None, highest_known: 0, renewals: None }),
            2,
        );
        assert_eq!(in_d2, CmdResponse::Acquired(Some(epoch::next(0, 2))));
        assert_eq!(s.holder, None, "the global domain is untouched");
        assert_eq!(s.highest_epoch, 0);
        let held1 = Holder { node_id: a.node_id, epoch: e1 };
        assert_eq!(s.apply(&cmd_in(d1, CmdKind::Renew { holder: held1 }), 3), CmdResponse::Renewed(true));
        assert_eq!(s.domain(Some(d1)).renewals, 1);
        assert_eq!(s.domain(Some(d2)).renewals, 0, "a renewal in d1 is not one in d2");
        // The holder of d1 is not the holder of d2 nor of the global domain.
        assert_eq!(s.apply(&cmd_in(d2, CmdKind::Renew { holder: held1 }), 4), CmdResponse::Renewed(false));
        assert_eq!(s.apply(&cmd(CmdKind::Renew { holder: held1 }), 5), CmdResponse::Renewed(false));
        assert_eq!(s.domain(Some(d1)).reports.len(), 1);
        assert!(s.domain(None).reports.is_empty(), "reports stay in their domain");
        // A refused renewal of a domain never named leaves no state behind.
        let unknown = Uid::new_random();
        assert_eq!(s.apply(&cmd_in(unknown, CmdKind::Renew { holder: held1 }), 6), CmdResponse::Renewed(false));
        assert!(!s.domains.contains_key(&unknown));
    }

    /// The state and the commands exactly as they were encoded before domains existed.
    #[derive(Serialize)]
    struct StateBeforeDomains {
        holder: Option<Holder>,
        highest_epoch: u64,
        renewals: u64,
        reports: BTreeMap<Uid, Reported>,
        recent: VecDeque<(u64, CmdResponse)>,
    }

    #[derive(Serialize)]
    struct CmdBeforeDomains {
        op: u64,
        kind: CmdKind,
    }

    #[test]
    fn a_state_and_log_from_before_domains_are_the_global_domain() {
        let a = report(1);
        let holder = Holder { node_id: a.node_id, epoch: epoch::next(3 << 16, 1) };
        let old = StateBeforeDomains {
            holder: Some(holder),
            highest_epoch: holder.epoch,
            renewals: 41,
            reports: [(a.node_id, Reported { report: a.clone(), index: 9 })].into(),
            recent: [(5, CmdResponse::Renewed(true))].into(),
        };
        let bytes = rmp_serde::to_vec_named(&old).expect("encodes");
        let mut state: ArbiterState = rmp_serde::from_slice(&bytes).expect("today's state reads it");
        assert_eq!(state.holder, Some(holder));
        assert_eq!(state.domain(None).renewals, 41);
        assert_eq!(state.domain(None).reports[&a.node_id].index, 9);
        assert!(state.domains.is_empty());
        // Without other domains the state encodes exactly as it did.
        assert_eq!(rmp_serde::to_vec_named(&state).expect("encodes"), bytes);

        // An old log entry is a command of the global domain, and answers as it did.
        let old_cmd = CmdBeforeDomains { op: 77, kind: CmdKind::Renew { holder } };
        let old_bytes = rmp_serde::to_vec_named(&old_cmd).expect("encodes");
        let cmd: Cmd = rmp_serde::from_slice(&old_bytes).expect("reads");
        assert_eq!(cmd.domain, None);
        assert_eq!(rmp_serde::to_vec_named(&cmd).expect("encodes"), old_bytes, "a global command encodes as before");
        assert_eq!(state.apply(&cmd, 10), CmdResponse::Renewed(true));
        assert_eq!(state.renewals, 42);
        // A retried id from before still gets its first answer.
        assert_eq!(
            state.apply(&Cmd { op: 5, domain: None, kind: CmdKind::Renew { holder } }, 11),
            CmdResponse::Renewed(true)
        );
        assert_eq!(state.renewals, 42);
    }

    /// What one domain adds to the state at most, with three replicas reporting (docs/failover.md
    /// gives the cost of domains from it).
    const STATE_BYTES_PER_DOMAIN_MAX: usize = 1024;

    #[test]
    fn the_state_of_the_most_domains_stays_small() {
        let mut s = ArbiterState::default();
        let nodes = [report(1), report(2), report(3)];
        for i in 0..mgha_core::limits::DOMAINS_MAX as u64 {
            let domain = Uid::new_random();
            for (n, r) in nodes.iter().enumerate() {
                let mut r = r.clone();
                (r.epoch, r.head_seq) = (u64::MAX, u64::MAX);
                s.apply(&cmd_in(domain, CmdKind::Report { report: r }), 4 * i + n as u64);
            }
            s.apply(
                &cmd_in(
                    domain,
                    CmdKind::Acquire { me: nodes[0].clone(), expected: None, highest_known: 0, renewals: None },
                ),
                4 * i + 3,
            );
        }
        let bytes = rmp_serde::to_vec_named(&s).expect("encodes").len();
        let per_domain = bytes / mgha_core::limits::DOMAINS_MAX;
        eprintln!("{bytes} bytes, {per_domain} per domain");
        assert!(per_domain <= STATE_BYTES_PER_DOMAIN_MAX, "{per_domain} bytes per domain");
    }

    #[test]
    fn a_deleted_domain_is_forgotten_and_the_global_one_never() {
        let mut s = ArbiterState::default();
        let a = report(1);
        let domain = Uid::new_random();
        s.apply(
            &cmd_in(domain, CmdKind::Acquire { me: a.clone(), expected: None, highest_known: 0, renewals: None }),
            1,
        );
        s.apply(&cmd(CmdKind::Acquire { me: a, expected: None, highest_known: 0, renewals: None }), 2);
        assert_eq!(s.apply(&cmd_in(domain, CmdKind::Forget), 3), CmdResponse::Forgotten(true));
        assert!(s.domains.is_empty());
        assert_eq!(s.apply(&cmd_in(domain, CmdKind::Forget), 4), CmdResponse::Forgotten(false));
        assert_eq!(s.apply(&cmd(CmdKind::Forget), 5), CmdResponse::Forgotten(false));
        assert!(s.holder.is_some(), "the global domain keeps its holder");
    }
}
