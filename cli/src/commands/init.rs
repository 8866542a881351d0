//! `mgha init`: creates a cluster and its first node (Primary, Active, first epoch) with the cluster
//! CA, the node's certificate, its store, its admin token and its config. The config is written
//! last, so a data directory with a config is a complete node; a failed init removes what it
//! made, and an interrupted one is refused again by name.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mgha_core::engine::SNAPSHOT_FILE;
use mgha_core::store::STORE_FILE;
use mgha_core::NodeState;
use mgha_sync::cluster::init_primary;

use crate::config::NodeConfig;
use crate::InitArgs;

/// The directory of a node's TLS material (`mgha_sync::pki::TlsFiles`).
pub const TLS_DIR: &str = "tls";

/// `mgha init`.
pub fn init(args: &InitArgs) -> anyhow::Result<()> {
    let dir = &args.node.data_dir;
    let (admin, listen) = node_addrs(args.admin, args.listen.as_deref())?;
    let mut config = NodeConfig::new(&args.name, admin);
    config.listen = Some(listen);
    config.advertise = args.advertise.clone();
    config.retain_revisions = args.retain_revisions;
    let node = create_node(dir, &config)?;
    outln!("initialized node '{}' in {}: a new cluster, and this node its Primary", node.name, dir.display());
    outln!("  node id      {}", node.node_id);
    outln!("  cluster id   {}", node.cluster_id);
    outln!("  role         {} {}, epoch {}", node.designation, node.role, crate::output::epoch(node.epoch));
    outln!("  admin API    http://{admin} (token in {})", crate::token::path(dir).display());
    outln!("  peers        {} (key 'listen')", config.listen.as_deref().unwrap_or_default());
    if let Some(advertise) = &config.advertise {
        outln!("  advertised   {advertise} (key 'advertise': where the peers dial this node)");
    }
    outln!("  cluster CA   {} (its key: ca.key, mode 0600)", dir.join(TLS_DIR).join("ca.pem").display());
    outln!("start it with: mgha run --data-dir {}", dir.display());
    outln!("add a node:    mgha join-key --data-dir {}, then `mgha join` on the new node", dir.display());
    Ok(())
}

/// The admin and peer addresses of a new node: as given, else free loopback ports.
pub fn node_addrs(admin: Option<SocketAddr>, listen: Option<&str>) -> anyhow::Result<(SocketAddr, String)> {
    let free = free_loopback_addrs(2)?;
    Ok((admin.unwrap_or(free[0]), listen.map_or_else(|| free[1].to_string(), str::to_string)))
}

/// Creates a Primary node of a new cluster in `dir` with `config`, which must have `listen`;
/// refuses a directory that holds a node, and leaves nothing behind on failure.
pub fn create_node(dir: &Path, config: &NodeConfig) -> anyhow::Result<NodeState> {
    config.check().context("the node configuration")?;
    let Some(listen) = config.listen.as_deref() else {
        bail!("key 'listen': a cluster's first node needs a peer address");
    };
    let scaffold = Scaffold::prepare(dir, false)?;
    let advertised = config.advertise.as_deref().unwrap_or(listen);
    let engine = init_primary(dir, config.require_name()?, advertised, config.engine_options())
        .with_context(|| format!("{}: cannot create the node", dir.display()))?;
    let node = engine.node()?;
    drop(engine);
    write_node_files(dir, config)?;
    scaffold.keep();
    Ok(node)
}

/// Refuses a data directory that already holds a node (or part of one).
pub fn refuse_existing(dir: &Path) -> anyhow::Result<()> {
    for file in [crate::config::CONFIG_FILE, STORE_FILE, crate::token::TOKEN_FILE, TLS_DIR] {
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
    config.write_new(dir).with_context(|| format!("{}: cannot write", NodeConfig::path(dir).display()))
}

/// A loopback address with a port that is free now. Another process could take it before the
/// daemon starts; `run` then fails naming the address, and `admin` in mgha.toml can be changed.
pub fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    Ok(free_loopback_addrs(1)?[0])
}

/// `count` distinct free loopback addresses: every port is held until all are chosen, so two
/// of them are never the same.
pub fn free_loopback_addrs(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .context("looking for a free loopback port")?;
    listeners.iter().map(|l| l.local_addr().context("looking for a free loopback port")).collect()
}

/// The files of a node being created, removed again unless [`Scaffold::keep`] is called: a
/// failed `init` or `join` leaves no half-made node. Only what this command made is removed:
/// the node's own files (refused up front if present), or the whole directory tree when this
/// command created it.
#[derive(Debug)]
pub struct Scaffold {
    dir: PathBuf,
    /// The topmost directory that did not exist before, if any.
    created: Option<PathBuf>,
    kept: bool,
}

impl Scaffold {
    /// Checks that `dir` can take a new node: it holds none, and with `require_empty` nothing
    /// at all (so that cleaning up can never touch a user's files).
    pub fn prepare(dir: &Path, require_empty: bool) -> anyhow::Result<Scaffold> {
        refuse_existing(dir)?;
        if require_empty && dir.exists() {
            let mut entries = std::fs::read_dir(dir).with_context(|| format!("{}: cannot read", dir.display()))?;
            if entries.next().is_some() {
                bail!("{} is not empty; a new node needs an empty or new directory", dir.display());
            }
        }
        let mut created = None;
        let mut probe = Some(dir);
        while let Some(p) = probe.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            created = Some(p.to_path_buf());
            probe = p.parent();
        }
        Ok(Scaffold { dir: dir.to_path_buf(), created, kept: false })
    }

    /// The node is complete: keep it.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Scaffold {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if let Some(top) = &self.created {
            let _ = std::fs::remove_dir_all(top);
            return;
        }
        for file in [crate::config::CONFIG_FILE, crate::token::TOKEN_FILE, STORE_FILE, SNAPSHOT_FILE] {
            let _ = std::fs::remove_file(self.dir.join(file));
        }
        let _ = std::fs::remove_dir_all(self.dir.join(TLS_DIR));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> NodeConfig {
        let (admin, listen) = node_addrs(None, None).expect("ports");
        let mut c = NodeConfig::new(name, admin);
        c.listen = Some(listen);
        c
    }

    #[test]
    fn init_creates_a_complete_node_and_refuses_a_second_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config("n1");
        let node = create_node(dir.path(), &config).expect("creates");
        assert_eq!((node.designation, node.role), (mgha_core::Designation::Primary, mgha_core::Role::Active));
        // Loaded from its data directory, a config knows that directory.
        let loaded = NodeConfig::load(dir.path()).expect("config");
        assert_eq!(loaded, NodeConfig { data_dir: Some(dir.path().to_path_buf()), ..config.clone() });
        assert!(crate::token::read(dir.path()).is_ok());
        assert!(dir.path().join("tls/ca.key").exists() && dir.path().join("tls/node.pem").exists());
        let status = mgha_sync::open_engine(dir.path(), Default::default()).expect("opens").status().expect("status");
        assert_eq!(status.node, node);
        let e = create_node(dir.path(), &config).expect_err("second init");
        assert!(format!("{e:#}").contains("already holds a node"), "{e:#}");
    }

    #[test]
    fn init_refuses_a_non_loopback_admin_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = config("n1");
        config.admin = Some("192.0.2.1:7000".parse().expect("addr"));
        let e = create_node(&dir.path().join("n"), &config).expect_err("not loopback");
        assert!(format!("{e:#}").contains("'admin'"), "{e:#}");
        assert!(!dir.path().join("n").exists(), "nothing is created");
    }

    #[test]
    fn an_unkept_scaffold_removes_only_what_it_made() {
        let dir = tempfile::tempdir().expect("tempdir");
        let make = |d: &Path| {
            std::fs::create_dir_all(d.join(TLS_DIR)).expect("mkdir");
            for f in [crate::config::CONFIG_FILE, STORE_FILE, "tls/node.key"] {
                std::fs::write(d.join(f), "x").expect("write");
            }
        };
        let nested = dir.path().join("a/b");
        let scaffold = Scaffold::prepare(&nested, true).expect("prepares");
        make(&nested);
        drop(scaffold);
        assert!(!dir.path().join("a").exists(), "the tree it created is removed");

        std::fs::write(dir.path().join("keep.txt"), "user file").expect("write");
        let e = Scaffold::prepare(dir.path(), true).expect_err("not empty");
        assert!(format!("{e:#}").contains("not empty"), "{e:#}");
        let scaffold = Scaffold::prepare(dir.path(), false).expect("prepares");
        make(dir.path());
        drop(scaffold);
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("keep.txt")], "only the user's file stays");

        let kept = Scaffold::prepare(&nested, true).expect("prepares");
        make(&nested);
        kept.keep();
        assert!(nested.join(STORE_FILE).exists(), "a kept node stays");
    }

    #[test]
    fn free_addresses_are_distinct() {
        let addrs = free_loopback_addrs(8).expect("ports");
        let unique: std::collections::BTreeSet<_> = addrs.iter().collect();
        assert_eq!(unique.len(), 8);
    }
}
