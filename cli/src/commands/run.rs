//! `mgha run`: the daemon. Opens the store (redb's lock makes a second daemon on the same
//! directory fail at once with a clear error), then synchronizes with the cluster's peers and
//! serves the admin API until a stop signal.

use std::sync::Arc;

use anyhow::Context;
use mgha_core::engine::Engine;

use crate::config::NodeConfig;
use crate::NodeArgs;

/// `mgha run`.
pub fn run(args: &NodeArgs) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    let config = NodeConfig::load(dir)?;
    super::init_logging(&config.log.to_string());
    let token = crate::token::read(dir)?;
    let engine = Engine::open(dir, config.engine_options())
        .with_context(|| format!("cannot start the daemon on {}", dir.display()))?;
    let status = engine.status().context("reading the node's state")?;
    tracing::info!(
        node = %status.node.name,
        designation = %status.node.designation,
        role = %status.node.role,
        epoch = %crate::output::epoch(status.node.epoch),
        head = status.head.seq,
        objects = status.objects,
        "store opened"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mgha")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(crate::daemon::server::serve(Arc::new(engine), &config, &token))
}
