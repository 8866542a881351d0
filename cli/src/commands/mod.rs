//! The CLI's commands, one module per area. Each takes its parsed arguments (defined with the
//! command line in main.rs), reaches the node through [`crate::client::Backend`], and prints
//! through [`crate::output`].

pub mod backup;
pub mod init;
pub mod join;
pub mod plugin;
pub mod read;
pub mod roles;
pub mod run;
pub mod witness;
pub mod write;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Environment variable that overrides the log level (any `tracing` filter directive).
pub const LOG_ENV: &str = "MGHA_LOG";

/// Sends logs to stderr at `default_level`, unless `MGHA_LOG` says otherwise.
pub fn init_logging(default_level: &str) {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new(default_level));
    // A second initialization (the demo runs commands in-process) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
