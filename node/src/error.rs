//! Errors of the node: a configuration refused, or an engine, sync or arbiter error with what
//! the node was doing. [`Error::code`] gives the stable [`ErrorCode`] every front end maps from
//! (an HTTP status, a C status, a Python exception class, a CLI exit code).

use mgha_core::ErrorCode;

use crate::config::ConfigError;

/// Everything a node operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration was refused (it names the key and line).
    #[error(transparent)]
    Config(Box<ConfigError>),
    /// The engine, the store, synchronization or a peer refused or failed.
    #[error(transparent)]
    Core(#[from] mgha_core::Error),
    /// A part of the node could not start; `key` is the configuration key that set it up.
    #[error("cannot start {what} (key '{key}'): {source}")]
    Start {
        what: String,
        key: &'static str,
        #[source]
        source: Box<mgha_core::Error>,
    },
    /// The call was made where it cannot run: inside an async runtime or from a forked child
    /// process.
    #[error("{0}")]
    Unusable(String),
    /// The node was shut down; nothing more can be asked of it.
    #[error("the node was shut down")]
    Closed,
    /// A domain operation was refused (an unknown domain, one not held here, a delete of one
    /// that holds objects, replicas that cannot be placed).
    #[error(transparent)]
    Domain(#[from] crate::domains::DomainError),
    /// Replicas that cannot be placed as asked.
    #[error(transparent)]
    Placement(#[from] crate::placement::PlacementError),
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Config(e) => e.code(),
            Error::Core(e) => e.code(),
            Error::Start { source, .. } => source.code(),
            Error::Unusable(_) => ErrorCode::Busy,
            Error::Closed => ErrorCode::InvalidArgument,
            Error::Domain(e) => e.code(),
            Error::Placement(e) => e.code(),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(Box::new(e))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Core(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
