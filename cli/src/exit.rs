//! Exit codes of the `mgha` command. Each engine [`ErrorCode`] has its own code, so that a script
//! can tell "your changeset is invalid" from "the node is a standby" from "the disk failed"
//! without parsing messages. docs/cli.md lists them; the test below keeps them distinct.

use std::fmt;

use mgha_core::ErrorCode;

/// Success.
pub const OK: u8 = 0;
/// Any error without a more specific code: configuration, files, the network.
pub const FAILURE: u8 = 1;
/// The command line was wrong (clap uses this code too).
pub const USAGE: u8 = 2;
/// The admin API refused the token.
pub const UNAUTHORIZED: u8 = 12;
/// No daemon answers for the node, and the command was not asked to work `--offline`.
pub const NO_DAEMON: u8 = 14;

/// No daemon answers at the node's admin address (or at `--endpoint`).
#[derive(Debug)]
pub struct NoDaemon(pub String);

impl fmt::Display for NoDaemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoDaemon {}

/// The exit code of an engine error code.
pub fn for_code(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::InvalidArgument => 3,
        ErrorCode::Validation => 4,
        ErrorCode::NotFound => 5,
        ErrorCode::Conflict => 6,
        ErrorCode::ReadOnly => 7,
        ErrorCode::TooLarge => 8,
        ErrorCode::Corrupt => 9,
        ErrorCode::Io => 10,
        ErrorCode::Busy => 11,
        ErrorCode::Peer => 13,
    }
}

/// An error reported by the daemon: its code as sent (an [`ErrorCode`] or `unauthorized`) and
/// its message.
#[derive(Debug)]
pub struct ApiFailure {
    pub code: String,
    pub message: String,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiFailure {}

impl ApiFailure {
    /// The engine code, when the daemon sent one.
    pub fn error_code(&self) -> Option<ErrorCode> {
        serde_json::from_value(serde_json::Value::String(self.code.clone())).ok()
    }
}

/// The exit code for an error: the first engine or API error in its chain decides.
pub fn for_error(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.downcast_ref::<NoDaemon>().is_some() {
            return NO_DAEMON;
        }
        if let Some(core) = cause.downcast_ref::<mgha_core::Error>() {
            return for_code(core.code());
        }
        // The node's wrapper is transparent: its own source is the engine error's source, so
        // the engine error itself is reached only through it (a damaged store at start: 9).
        if let Some(mgha_node::Error::Core(core)) = cause.downcast_ref::<mgha_node::Error>() {
            return for_code(core.code());
        }
        if let Some(api) = cause.downcast_ref::<ApiFailure>() {
            if api.code == "unauthorized" {
                return UNAUTHORIZED;
            }
            return api.error_code().map_or(FAILURE, for_code);
        }
    }
    FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorCode; 10] = [
        ErrorCode::InvalidArgument,
        ErrorCode::Validation,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::ReadOnly,
        ErrorCode::TooLarge,
        ErrorCode::Corrupt,
        ErrorCode::Io,
        ErrorCode::Busy,
        ErrorCode::Peer,
    ];

    #[test]
    fn every_code_has_its_own_exit_code() {
        let mut seen = vec![OK, FAILURE, USAGE, UNAUTHORIZED, NO_DAEMON];
        for c in ALL {
            let x = for_code(c);
            assert!(!seen.contains(&x), "{c:?} reuses exit code {x}");
            seen.push(x);
        }
    }

    #[test]
    fn errors_map_through_their_chain() {
        let e = anyhow::Error::new(mgha_core::Error::UnknownRevision(9)).context("revert");
        assert_eq!(for_error(&e), 5);
        let e = anyhow::Error::new(ApiFailure { code: "read-only".into(), message: "standby".into() });
        assert_eq!(for_error(&e), 7);
        let e = anyhow::Error::new(ApiFailure { code: "unauthorized".into(), message: "no".into() });
        assert_eq!(for_error(&e), UNAUTHORIZED);
        assert_eq!(for_error(&anyhow::anyhow!("plain")), FAILURE);
    }
}
