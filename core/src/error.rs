//! Errors of the engine. One enum, each variant naming the object, field, revision or file at
//! fault, and a stable [`ErrorCode`] that the admin API, the CLI and the C ABI map from.

use std::path::PathBuf;

/// A stable classification of [`Error`], shared by every front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    InvalidArgument,
    Validation,
    NotFound,
    Conflict,
    ReadOnly,
    TooLarge,
    Corrupt,
    Io,
    Busy,
    Peer,
}

impl ErrorCode {
    /// The kebab-case name used on the wire and in JSON error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid-argument",
            ErrorCode::Validation => "validation",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::ReadOnly => "read-only",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::Corrupt => "corrupt",
            ErrorCode::Io => "io",
            ErrorCode::Busy => "busy",
            ErrorCode::Peer => "peer",
        }
    }
}

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid changeset: {0}")]
    InvalidChangeset(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("unknown object type '{0}'")]
    UnknownType(String),
    #[error("{type_name} '{name}': field '{field}': {reason}")]
    InvalidField { type_name: String, name: String, field: String, reason: String },
    #[error("{type_name} '{name}': {reason}")]
    InvalidObject { type_name: String, name: String, reason: String },
    #[error("{type_name} '{name}': field '{field}' refers to '{reference}', which does not exist")]
    DanglingReference { type_name: String, name: String, field: String, reference: String },
    #[error("{type_name} '{name}': field '{field}': reference '{reference}' is ambiguous ({candidates}); use the uid")]
    AmbiguousReference { type_name: String, name: String, field: String, reference: String, candidates: String },
    /// Objects whose set-valued references (group members and the like) run in a circle: a
    /// group would contain itself. `cycle` lists them, the first again at the end.
    #[error("reference cycle: {}", cycle.join(" -> "))]
    ReferenceCycle { cycle: Vec<String> },
    /// An author, a revision message or another line of audit text holds a control or
    /// invisible character.
    #[error("{what} {reason}")]
    InvalidText { what: String, reason: String },
    #[error("cannot delete {type_name} '{name}': it is used by {used_by}")]
    StillReferenced { type_name: String, name: String, used_by: String },
    #[error("{type_name} named '{name}' already exists (uid {uid})")]
    DuplicateName { type_name: String, name: String, uid: String },
    #[error("{type_name} uid {uid} cannot change its type to {new_type}")]
    TypeChange { type_name: String, uid: String, new_type: String },
    #[error("no {0}")]
    NotFound(String),
    #[error("no revision {0}")]
    UnknownRevision(u64),
    #[error("revision {seq} was purged; history starts at revision {oldest}")]
    RevisionPurged { seq: u64, oldest: u64 },
    #[error("{what} is {size} bytes, over the limit of {max}")]
    TooLarge { what: String, size: usize, max: usize },
    /// More items than a named limit allows: changes in a changeset or a session.
    #[error("{count} {what}, over the limit of {max}")]
    TooMany { what: String, count: usize, max: usize },
    #[error("nothing to publish: the changes leave every object as it was")]
    EmptyChangeset,
    #[error("this node is a read-only standby; publish on the active node{}", active.as_deref().map(|a| format!(" '{a}'")).unwrap_or_default())]
    ReadOnly { active: Option<String> },
    #[error(
        "this node is not confirmed as the active by the arbiter (lost the quorum or its lease); it takes no \
         publishes until a renewal succeeds or another node takes over"
    )]
    Fenced,
    #[error("a changeover to '{target}' is in progress; retry on '{target}' in a moment")]
    ChangeoverInProgress { target: String },
    #[error("changeover: {0}")]
    Changeover(#[from] ChangeoverError),
    #[error("member: {0}")]
    Member(#[from] MemberError),
    #[error("{object} is locked by session {session} of '{owner}'")]
    Locked { object: String, session: u64, owner: String },
    /// A session publish found an object it staged changed since it was staged (by a publish
    /// from elsewhere, or on another Active): publishing would overwrite that change unseen.
    #[error("{object} changed since session {session} staged it; discard the session and stage the change again")]
    Stale { object: String, session: u64 },
    #[error("no open session {0}")]
    NoSession(u64),
    #[error("too many open sessions (limit {0})")]
    TooManySessions(usize),
    #[error("data directory {} is in use by another mgha process", .0.display())]
    InUse(PathBuf),
    /// A listener could not be bound: the address is taken or not permitted ([`ErrorCode::Io`]),
    /// or is not an address at all ([`ErrorCode::InvalidArgument`]).
    #[error("cannot listen for {what} on {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A replicated revision that does not fit this node's history (another parent, objects in
    /// another state, another id or state hash): the histories differ, which the Active resolves
    /// (a branch kept, a full sync). Not damage of this node's store.
    #[error("not this node's history: {0}")]
    Diverged(String),
    #[error("backup {}: {reason}", path.display())]
    Backup { path: PathBuf, reason: String },
    /// A store file whose format version this build does not read: written by a newer mgha
    /// (or not a store at all). Nothing was read from it or written to it.
    #[error(
        "{}: storage format {found}, this build reads formats {} to {reads}; open it with the mgha that wrote it or a newer one",
        path.display(),
        crate::store::tables::FORMAT_VERSION_OLDEST
    )]
    StoreFormat { path: PathBuf, found: u32, reads: u32 },
    #[error("revision {seq} is committed here but only {acked} of the {needed} required standbys applied it in time")]
    NotReplicated { seq: u64, acked: usize, needed: usize },
    #[error("peer: {0}")]
    Peer(String),
    /// A plugin refused at check, or one of its calls failed (trap, fuel, deadline, memory,
    /// malformed answer), or a plugin operation was refused. Only that call fails.
    #[error("plugin '{plugin}' {call}: {reason}")]
    Plugin { plugin: String, call: String, reason: String },
    #[error("storage: {0}")]
    Storage(#[from] redb::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidChangeset(_) | Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::UnknownType(_)
            | Error::InvalidField { .. }
            | Error::InvalidObject { .. }
            | Error::DanglingReference { .. }
            | Error::AmbiguousReference { .. }
            | Error::StillReferenced { .. }
            | Error::ReferenceCycle { .. }
            | Error::InvalidText { .. }
            | Error::DuplicateName { .. }
            | Error::TypeChange { .. }
            | Error::EmptyChangeset
            | Error::Plugin { .. } => ErrorCode::Validation,
            Error::NotFound(_) | Error::UnknownRevision(_) | Error::RevisionPurged { .. } | Error::NoSession(_) => {
                ErrorCode::NotFound
            }
            Error::TooLarge { .. } | Error::TooMany { .. } => ErrorCode::TooLarge,
            Error::ReadOnly { .. } | Error::Fenced => ErrorCode::ReadOnly,
            Error::Locked { .. } | Error::Stale { .. } => ErrorCode::Conflict,
            Error::TooManySessions(_) | Error::InUse(_) | Error::ChangeoverInProgress { .. } => ErrorCode::Busy,
            Error::Changeover(e) => e.code(),
            Error::Member(e) => e.code(),
            Error::Corrupt(_) | Error::Diverged(_) | Error::Backup { .. } => ErrorCode::Corrupt,
            // Not damage, but a file this build cannot serve either: the front ends refuse it as
            // they refuse a damaged one (exit 9), and a caller that must tell the two apart
            // matches the variant.
            Error::StoreFormat { .. } => ErrorCode::Corrupt,
            // redb's own finding of a damaged page is damage too, not an I/O failure; so is a
            // read past the end of the file or of data that is not a database, which only a
            // damaged page or header can point redb at.
            Error::Storage(redb::Error::Corrupted(_)) => ErrorCode::Corrupt,
            Error::Storage(redb::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData) =>
            {
                ErrorCode::Corrupt
            }
            Error::Storage(_) | Error::Io(_) => ErrorCode::Io,
            // An address that does not parse is the caller's mistake; a port in use, a denied
            // bind, an address this host does not have are the system's answer.
            Error::Listen { source, .. } if source.kind() == std::io::ErrorKind::InvalidInput => {
                ErrorCode::InvalidArgument
            }
            Error::Listen { .. } => ErrorCode::Io,
            Error::NotReplicated { .. } | Error::Peer(_) => ErrorCode::Peer,
        }
    }
}

/// Why a changeover (planned or forced) was refused, or ended without a confirmed outcome. One
/// variant per case a caller may act on differently; the message says what to do. It crosses the
/// peer protocol when a Standby forwards a changeover to the Active (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ChangeoverError {
    /// No member has that name; nothing changed.
    #[error("no member named '{name}'")]
    NoSuchMember { name: String },
    /// A planned changeover to the node that is the Active, or a forced one on it: nothing to do.
    #[error("'{name}' is already the active")]
    AlreadyActive { name: String },
    /// The target had no replication session with the Active within the timeout; nothing changed.
    #[error("'{target}' is not connected to the active; nothing changed")]
    TargetNotConnected { target: String },
    /// The target did not acknowledge the Active's head within the timeout; nothing changed.
    #[error("'{target}' did not catch up with the active's head in time; nothing changed")]
    TargetNotCaughtUp { target: String },
    /// The target was asked to take over but neither its confirmation nor its new epoch reached
    /// the Active in time. The Active stepped down without raising its epoch: it follows the
    /// target if the target took over; otherwise no node is Active until a forced changeover.
    #[error(
        "'{target}' did not confirm in time; the old active stepped down to standby and follows '{target}' if it \
         took over (check which node is active; a forced changeover settles it otherwise)"
    )]
    TargetDidNotConfirm { target: String },
    /// The target's store is damaged: it heals by a full sync from the Active first and cannot
    /// take the role meanwhile; nothing changed.
    #[error("'{target}' has a damaged store and heals by a full sync from the active; nothing changed")]
    TargetDamaged { target: String },
    /// Another planned changeover runs on the Active; retry once it ended.
    #[error("a changeover to '{target}' is already in progress; retry in a moment")]
    InProgress { target: String },
    /// With automatic failover: the arbiter refused what was asked of it (`reason` says what):
    /// in a changeover, to hand the role to the target, and nothing changed.
    #[error("the arbiter refused {reason}")]
    ArbiterRefused { reason: String },
    /// A forced changeover with automatic failover: the arbiter's holder changed meanwhile.
    #[error("the arbiter's holder changed meanwhile; nothing changed, ask again")]
    ArbiterHolderChanged,
    /// A forced changeover with automatic failover: the arbiter granted the role, but this node's
    /// role machine did not take it (it saw a higher epoch meanwhile).
    #[error("this node could not take the role the arbiter granted")]
    CouldNotTakeRole,
    /// While the changeover ran, a node other than the target became Active (at `epoch`).
    #[error(
        "another node became active at epoch {} meanwhile; check which node is active",
        crate::roles::machine::epoch::display(*epoch)
    )]
    Superseded { epoch: u64 },
    /// The Active stopped handing over before the target was asked to take over (the arbiter
    /// fenced it meanwhile): the role did not move to the target.
    #[error("the changeover was called off before the target was asked to take over: the arbiter fenced the active")]
    Cancelled,
    /// The node asked to lead a forwarded changeover is no longer the Active; the Standby that
    /// forwarded it tries the Active it follows next.
    #[error("this node is no longer the active")]
    NotActive,
    /// A Standby that follows no Active could not forward the request before the deadline.
    #[error("this standby follows no active to forward the request to")]
    NotFollowingAnActive,
    /// The forwarding connection closed before the Active answered, and the target was not seen
    /// taking over before the deadline: the outcome is unknown here.
    #[error(
        "the connection to the active closed before it answered, and '{target}' was not seen taking over; \
         check which node is active"
    )]
    ForwardingClosed { target: String },
    /// The Active that the request was forwarded to did not answer before the deadline.
    #[error("the active did not answer in time; check which node is active")]
    ActiveDidNotAnswer,
    /// This node has no peer runtime (no certificates or no listen address).
    #[error("this node runs without peers: there is no other node to change over to")]
    NoPeers,
    /// The Active failed for a reason outside the changeover (storage, say); `code` is that
    /// error's code.
    #[error("the active could not run the changeover: {message}")]
    ActiveFailed { code: ErrorCode, message: String },
}

impl ChangeoverError {
    /// The stable code: busy while another changeover runs, the code of the Active's own
    /// failure, and conflict (refused, or not confirmed) for the rest.
    pub fn code(&self) -> ErrorCode {
        match self {
            ChangeoverError::InProgress { .. } => ErrorCode::Busy,
            ChangeoverError::ActiveFailed { code, .. } => *code,
            _ => ErrorCode::Conflict,
        }
    }

    /// The typed reason of any engine error that ends a changeover, for the peer protocol: a
    /// changeover error as is, anything else as the Active's own failure.
    pub fn of(e: Error) -> ChangeoverError {
        match e {
            Error::Changeover(c) => c,
            other => ChangeoverError::ActiveFailed { code: other.code(), message: other.to_string() },
        }
    }
}

/// Why a member could not be removed from the cluster. One variant per case a caller may act on
/// differently; nothing changed in any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    /// No current member has that name (a member removed earlier is no longer one).
    #[error("no member named '{name}'")]
    NoSuchMember { name: String },
    /// The member named is the Active this request reached: it would cut itself off. Change over
    /// to another member first, then remove it there.
    #[error("'{name}' is the active; change over to another member first, then remove '{name}' on the new active")]
    IsActive { name: String },
    /// Members are removed on the Active, so that one node decides; `active` names it when known.
    #[error("members are removed on the active{}", active.as_deref().map(|a| format!(" '{a}'")).unwrap_or_default())]
    NotActive { active: Option<String> },
}

impl MemberError {
    /// The stable code: not found, conflict (the Active itself), read-only (not the Active).
    pub fn code(&self) -> ErrorCode {
        match self {
            MemberError::NoSuchMember { .. } => ErrorCode::NotFound,
            MemberError::IsActive { .. } => ErrorCode::Conflict,
            MemberError::NotActive { .. } => ErrorCode::ReadOnly,
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Storage(e.into())
            }
        }
    )*};
}
from_redb!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_an_io_error_and_a_malformed_address_an_argument_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let addr = taken.local_addr().expect("address").to_string();
        let busy = std::net::TcpListener::bind(&addr).expect_err("the port is taken");
        let e = Error::Listen { what: "peers", addr: addr.clone(), source: busy };
        assert_eq!(e.code(), ErrorCode::Io);
        assert!(e.to_string().contains(&addr), "{e}");
        let malformed = std::net::TcpListener::bind("no port here").expect_err("not an address");
        let e = Error::Listen { what: "peers", addr: "no port here".into(), source: malformed };
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
    }

    #[test]
    fn too_many_items_is_too_large() {
        let e = Error::TooMany { what: "changes in one changeset".into(), count: 7, max: 6 };
        assert_eq!(e.code(), ErrorCode::TooLarge);
        assert_eq!(e.to_string(), "7 changes in one changeset, over the limit of 6");
    }
}
