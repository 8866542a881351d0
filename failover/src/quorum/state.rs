//! The replicated state of the quorum arbiter and the commands that change it: who holds the
//! Active role at which epoch, how often it renewed, and the nodes' latest reports. `apply` is a
//! pure function of the state and one committed command, so every voter reaches the same state.

use std::collections::{BTreeMap, VecDeque};

use mgha_core::roles::machine::epoch;
use mgha_core::Uid;
use mgha_sync::failover::{Holder, Report};
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// The Raft types of the arbiter: node ids are `u64` (from the member names), nodes carry
    /// their address, snapshots are bytes in memory (the state is a few kilobytes).
    pub TypeConfig:
        D = Cmd,
        R = CmdResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// How many recent command ids the state remembers, so a write retried after a lost answer is
/// answered as the first attempt was instead of being applied twice.
pub const RECENT_OPS_MAX: usize = 256;

/// A client write: a random id (for retries) and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cmd {
    pub op: u64,
    pub kind: CmdKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmdKind {
    /// The Active confirms it still holds the role; accepted only if `holder` is the holder.
    Renew { holder: Holder },
    /// A node's heartbeat report.
    Report { report: Report },
    /// `me` becomes the holder at the next epoch, if the holder is still `expected`.
    Acquire { me: Report, expected: Option<Holder>, highest_known: u64 },
    /// A planned changeover: `to` holds the role at `epoch`, if `from` still holds it.
    Transfer { from: Holder, to: Uid, epoch: u64 },
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
}

/// A node's latest report and the log index it arrived at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    pub report: Report,
    pub index: u64,
}

/// What the arbiter knows; identical on every voter at the same log index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArbiterState {
    pub holder: Option<Holder>,
    pub highest_epoch: u64,
    /// Bumped by every accepted renewal: observers time the holder by when this last changed.
    pub renewals: u64,
    pub reports: BTreeMap<Uid, Reported>,
    /// The answers to the last [`RECENT_OPS_MAX`] commands, by id.
    recent: VecDeque<(u64, CmdResponse)>,
}

impl ArbiterState {
    /// Applies one committed command at log `index`.
    pub fn apply(&mut self, cmd: &Cmd, index: u64) -> CmdResponse {
        if let Some((_, answer)) = self.recent.iter().find(|(op, _)| *op == cmd.op) {
            return answer.clone();
        }
        let answer = self.apply_kind(&cmd.kind, index);
        if self.recent.len() >= RECENT_OPS_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back((cmd.op, answer.clone()));
        answer
    }

    fn apply_kind(&mut self, kind: &CmdKind, index: u64) -> CmdResponse {
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
            CmdKind::Acquire { me, expected, highest_known } => {
                self.record(me, index);
                if self.holder != *expected {
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
        }
    }

    fn cmd(kind: CmdKind) -> Cmd {
        Cmd { op: rand::random(), kind }
    }

    #[test]
    fn only_the_expected_holder_is_replaced() {
        let mut s = ArbiterState::default();
        let (a, b) = (report(1), report(2));
        let first = s.apply(&cmd(CmdKind::Acquire { me: a.clone(), expected: None, highest_known: 0 }), 1);
        let CmdResponse::Acquired(Some(e1)) = first else { panic!("a acquires: {first:?}") };
        assert_eq!(e1, epoch::next(0, 1));
        let lost = s.apply(&cmd(CmdKind::Acquire { me: b.clone(), expected: None, highest_known: 0 }), 2);
        assert_eq!(lost, CmdResponse::Acquired(None));
        let held = Holder { node_id: a.node_id, epoch: e1 };
        let took = s.apply(&cmd(CmdKind::Acquire { me: b, expected: Some(held), highest_known: 9 << 16 }), 3);
        assert_eq!(took, CmdResponse::Acquired(Some(epoch::next(9 << 16, 2))));
        assert_eq!(s.apply(&cmd(CmdKind::Renew { holder: held }), 4), CmdResponse::Renewed(false));
    }

    #[test]
    fn a_retried_command_gets_the_first_answer() {
        let mut s = ArbiterState::default();
        let a = report(1);
        let c = cmd(CmdKind::Acquire { me: a, expected: None, highest_known: 0 });
        let first = s.apply(&c, 1);
        assert!(matches!(first, CmdResponse::Acquired(Some(_))));
        assert_eq!(s.apply(&c, 2), first);
    }

    #[test]
    fn transfer_needs_the_holder_and_a_higher_epoch() {
        let mut s = ArbiterState::default();
        let a = report(1);
        let CmdResponse::Acquired(Some(e1)) =
            s.apply(&cmd(CmdKind::Acquire { me: a.clone(), expected: None, highest_known: 0 }), 1)
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
}
