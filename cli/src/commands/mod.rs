//! The CLI's commands, one module per area. Each takes its parsed arguments (defined with the
//! command line in main.rs), reaches the node through [`crate::client::Backend`], and prints
//! through [`crate::output`].

pub mod archive;
pub mod backup;
pub mod domain;
pub mod init;
pub mod join;
mod json_log;
pub mod member;
pub mod plugin;
pub mod read;
pub mod roles;
pub mod run;
pub mod shell;
pub mod witness;
pub mod write;

use std::io::IsTerminal;

use mgha_node::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Environment variable that overrides the log level (any `tracing` filter directive).
pub const LOG_ENV: &str = "MGHA_LOG";

/// Sends logs to stderr at `default_level`, unless `MGHA_LOG` says otherwise, as text lines or
/// (`log_format = "json"`) one JSON object a line.
pub fn init_logging(default_level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second initialization (the demo runs commands in-process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).with_target(false).try_init(),
        LogFormat::Json => builder.with_ansi(false).event_format(json_log::JsonLines).try_init(),
    };
}
