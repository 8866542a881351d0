//! `mgha init`: creates a node (Primary, Active, epoch 1 of a new cluster) with its store, its
//! admin token and its config. The config is written last, so a data directory with a config
//! is a complete node; an interrupted init leaves no config and is refused again by name.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

use anyhow::{bail, Context};
use mgha_core::engine::Engine;
use mgha_core::store::STORE_FILE;
use mgha_core::NodeState;

use crate::config::NodeConfig;
use crate::InitArgs;

/// `mgha init`.
pub fn init(args: &InitArgs) -> anyhow::Result<()> {
    let dir = &args.node.data_dir;
    let mut config = NodeConfig::new(
        &args.name,
        match args.admin {
            Some(a) => a,
            None => free_loopback_addr()?,
        },
    );
    config.retain_revisions = args.retain_revisions;
    let node = create_node(dir, &config)?;
    outln!("initialized node '{}' in {}", node.name, dir.display());
    outln!("  node id      {}", node.node_id);
    outln!("  cluster id   {}", node.cluster_id);
    outln!("  role         {} {}, epoch {}", node.designation, node.role, node.epoch);
    outln!("  admin API    http://{} (token in {})", config.admin, crate::token::path(dir).display());
    outln!("start it with: mgha run --data-dir {}", dir.display());
    Ok(())
}

/// Creates a Primary node in `dir` with `config`; refuses a directory that holds a node.
pub fn create_node(dir: &Path, config: &NodeConfig) -> anyhow::Result<NodeState> {
    config.check().context("the node configuration")?;
    refuse_existing(dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the data directory", dir.display()))?;
    let node = NodeState::new_primary(&config.name);
    let engine = Engine::create(dir, &node, config.engine_options())
        .with_context(|| format!("{}: cannot create the store", dir.display()))?;
    drop(engine);
    write_node_files(dir, config)?;
    Ok(node)
}

/// Refuses a data directory that already holds a node (or part of one).
pub fn refuse_existing(dir: &Path) -> anyhow::Result<()> {
    for file in [crate::config::CONFIG_FILE, STORE_FILE, crate::token::TOKEN_FILE] {
        let path = dir.join(file);
        if path.exists() {
            bail!(
                "{} already exists: {} already holds a node; choose an empty directory",
                path.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// Writes the admin token and then the config of a node whose store exists.
pub fn write_node_files(dir: &Path, config: &NodeConfig) -> anyhow::Result<()> {
    crate::token::write_new(dir)?;
    config.write_new(dir)
}

/// A loopback address with a port that is free now. Another process could take it before the
/// daemon starts; `run` then fails naming the address, and `admin` in mgha.toml can be changed.
pub fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("looking for a free loopback port")?;
    listener.local_addr().context("looking for a free loopback port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_a_complete_node_and_refuses_a_second_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = NodeConfig::new("n1", free_loopback_addr().expect("port"));
        let node = create_node(dir.path(), &config).expect("creates");
        assert_eq!(node.epoch, 1);
        assert_eq!(NodeConfig::load(dir.path()).expect("config"), config);
        assert!(crate::token::read(dir.path()).is_ok());
        let status = Engine::open(dir.path(), Default::default()).expect("opens").status().expect("status");
        assert_eq!(status.node, node);
        let e = create_node(dir.path(), &config).expect_err("second init");
        assert!(format!("{e:#}").contains("already holds a node"), "{e:#}");
    }

    #[test]
    fn init_refuses_a_non_loopback_admin_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = NodeConfig::new("n1", "192.0.2.1:7000".parse().expect("addr"));
        let e = create_node(&dir.path().join("n"), &config).expect_err("not loopback");
        assert!(format!("{e:#}").contains("'admin'"), "{e:#}");
        assert!(!dir.path().join("n").exists(), "nothing is created");
    }
}
