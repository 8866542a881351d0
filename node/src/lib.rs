//! mgha-node: the node every front end runs. The daemon (`mgha run`), libmgha (C and C++) and,
//! through libmgha, Python all use this library unchanged; they adapt (HTTP, C types, Python
//! objects) and never decide.
//!
//! - [`config`]: `NodeConfig`, the one parser of a node's configuration;
//! - [`node`]: `Node`, the lifecycle of engine, synchronization, failover and their runtime,
//!   and node-level policy (join keys, the changeover slot);
//! - [`placement`]: where a domain's replicas go and the rebalance of Actives, as pure plans;
//! - [`arbiter`]: the arbiter of automatic failover, built from the config;
//! - [`archive`]: the archived stores of a data directory, listed and browsed read-only;
//! - [`domains`]: the domains of a cluster as one server holds them: the registry in the global
//!   domain, and this server's replicas of the others, kept in line with it;
//! - [`contract`]: the JSON documents (status, revisions, collisions, errors) that the admin API
//!   and the C ABI return, typed once;
//! - [`error`]: the node's typed errors and their stable codes;
//! - [`refs`]: diffs, collision diffs and revisions with the names of what their fields
//!   reference;
//! - [`scrub`]: the background scrub that verifies every stored record at a bounded rate;
//! - [`token`]: the admin bearer token of a data directory.

pub mod arbiter;
pub mod archive;
pub mod backup;
pub mod config;
pub mod contract;
pub mod domains;
pub mod error;
pub mod node;
pub mod placement;
pub mod refs;
pub mod scrub;
pub mod token;

pub use config::{ConfigError, NodeConfig};
pub use error::{Error, Result};
pub use node::{Node, RuntimeOptions};
