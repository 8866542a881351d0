//! `mgha run`: the daemon. Opens the node (redb's lock makes a second daemon on the same
//! directory fail at once with a clear error), then synchronizes with the cluster's peers and
//! serves the admin API until a stop signal, and stops every task of the node before it exits.

use std::sync::Arc;

use anyhow::Context;
use mgha_node::{Node, NodeConfig, RuntimeOptions};

use crate::NodeArgs;

/// `mgha run`.
pub fn run(args: &NodeArgs) -> anyhow::Result<()> {
    fixed_mmap_threshold();
    let dir = &args.data_dir;
    let config = NodeConfig::load(dir)?;
    super::init_logging(&config.log.to_string(), config.log_format);
    raise_open_files_limit();
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

/// Allocations of this size and larger get pages of their own, returned to the system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: libc::c_int = 256 * 1024;

/// Raises the soft limit of open files to the hard one. Each domain a server holds keeps two
/// files open (its store and its publish log), besides the peer and admin sockets: the usual soft
/// limit of 1,024 does not hold a server of 1,000 domains, while the hard limit (systemd's is
/// 524,288) does. A limit that cannot be raised stays as it is.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum) {
        if current < maximum {
            if let Err(e) = setrlimit(Resource::Nofile, Rlimit { current: Some(maximum), maximum: Some(maximum) }) {
                tracing::debug!(error = %e, current, maximum, "the open files limit stays as it is");
            }
        }
    }
}

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD_BYTES`]. By default it starts at 128 KiB and
/// each large buffer freed raises it (up to 32 MiB), after which large buffers (stream and snapshot buffers, a full sync's
/// chunks) come from the heap and stay in the process when freed: a server holding 1,000
/// domains peaked about 30 MiB higher that way (docs/BENCHMARKS.md). The daemon owns its
/// process; the C library and the Python module leave their host's allocator alone.
#[allow(unsafe_code)]
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter; it is called once, before the
        // daemon starts any thread of its own. Should glibc refuse it, its default stays.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
    }
}
