//! `mgha run`: the daemon. Opens the node (redb's lock makes a second daemon on the same
//! directory fail at once with a clear error), then synchronizes with the cluster's peers and
//! serves the admin API until a stop signal, and stops every task of the node before it exits.

use std::sync::Arc;

use anyhow::Context;
use mgha_node::{Node, NodeConfig, RuntimeOptions};

use crate::NodeArgs;

/// `mgha run`.
pub fn run(args: &NodeArgs) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    let config = NodeConfig::load(dir)?;
    super::init_logging(&config.log.to_string(), config.log_format);
    config.require_admin()?;
    // The admin TLS files are checked before the node opens: a daemon that could not serve its
    // admin API must not start synchronizing first.
    if let Some(pem) = config.read_admin_tls()? {
        crate::daemon::connections::tls_acceptor(&pem)?;
    }
    let token = crate::token::read(dir)?;
    let node = Node::open(config, RuntimeOptions::default())
        .with_context(|| format!("cannot start the daemon on {}", dir.display()))?;
    let node = Arc::new(node);
    let status = node.engine()?.status().context("reading the node's state")?;
    tracing::info!(
        node = %status.node.name,
        designation = %status.node.designation,
        role = %status.node.role,
        epoch = %crate::output::epoch(status.node.epoch),
        head = status.head.seq,
        objects = status.objects,
        "store opened"
    );
    let served = node.handle().clone().block_on(crate::daemon::server::serve(node.clone(), &token));
    // Back on a plain thread: stop the node's tasks (arbiter, peers) and wait for them.
    node.shutdown();
    served?;
    tracing::info!("stopped");
    Ok(())
}
