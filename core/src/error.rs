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
    Changeover(String),
    #[error("{object} is locked by session {session} of '{owner}'")]
    Locked { object: String, session: u64, owner: String },
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
    #[error("backup {}: {reason}", path.display())]
    Backup { path: PathBuf, reason: String },
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
            | Error::DuplicateName { .. }
            | Error::TypeChange { .. }
            | Error::EmptyChangeset
            | Error::Plugin { .. } => ErrorCode::Validation,
            Error::NotFound(_) | Error::UnknownRevision(_) | Error::RevisionPurged { .. } | Error::NoSession(_) => {
                ErrorCode::NotFound
            }
            Error::TooLarge { .. } | Error::TooMany { .. } => ErrorCode::TooLarge,
            Error::ReadOnly { .. } | Error::Fenced => ErrorCode::ReadOnly,
            Error::Locked { .. } => ErrorCode::Conflict,
            Error::TooManySessions(_) | Error::InUse(_) | Error::ChangeoverInProgress { .. } => ErrorCode::Busy,
            Error::Changeover(_) => ErrorCode::Conflict,
            Error::Corrupt(_) | Error::Backup { .. } => ErrorCode::Corrupt,
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
