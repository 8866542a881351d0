//! Creating nodes: `init` (a Primary with a new cluster and its CA) and `join` (a Secondary,
//! through a one-time key). The CLI, the C ABI and the tests all go through here.

use std::path::{Path, PathBuf};

use crate::join::{enroll_witness as enroll_witness_through, join_cluster};
use crate::membership::{self, JoinKey};
use crate::pki::{ca_fingerprint, TlsFiles};
use crate::wire::Member;
use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::error::{Error, Result};
use mgha_core::node::{Designation, NodeState, Role};

/// Creates a Primary: Active at epoch 1, a new cluster id, the cluster CA and its own
/// certificate under `dir/tls/`.
pub fn init_primary(dir: &Path, name: &str, listen: &str, options: EngineOptions) -> Result<Engine> {
    mgha_core::model::validate::validate_name("node", name)?;
    if dir.join(mgha_core::store::STORE_FILE).exists() {
        return Err(Error::InvalidArgument(format!("{} already holds a node", dir.display())));
    }
    let node = NodeState::new_primary(name);
    mgha_core::private::create_dir(dir)?;
    let files = TlsFiles::new(dir);
    files.create_primary(node.cluster_id, node.node_id, name)?;
    let engine = crate::create_engine(dir, &node, options)?;
    membership::set_own_record(&engine.store(), Member::new(node.node_id, name, listen, Designation::Primary, 0))?;
    Ok(engine)
}

/// Issues a one-time join key valid for `ttl_ms`. Only a node holding the cluster CA can.
pub fn issue_join_key(engine: &Engine, ttl_ms: u64) -> Result<JoinKey> {
    let files = TlsFiles::new(engine.dir());
    if !files.has_ca_key() {
        return Err(Error::InvalidArgument(
            "this node does not hold the cluster CA; issue join keys on the primary".into(),
        ));
    }
    // A Secondary holds the CA key only to be promoted when the Primary is lost: members are
    // admitted by one node, so that every member list is the Primary's.
    if engine.node()?.designation != Designation::Primary {
        return Err(Error::InvalidArgument(
            "this node is a secondary; issue join keys on the primary (or promote this node once the primary is lost)"
                .into(),
        ));
    }
    let fp = ca_fingerprint(&files.read(&files.ca_cert())?)?;
    membership::issue_join_key(&engine.store(), fp, ttl_ms, mgha_core::now_ms())
}

/// Joins the cluster through `peer` and creates a Secondary, Standby, in `dir`. A malformed key
/// is refused before anything is created or sent. A join that fails leaves no trace in `dir`:
/// what it wrote is removed, and so are the directories it created, when they hold nothing else.
pub async fn join_secondary(
    dir: &Path,
    name: &str,
    peer: &str,
    key: &str,
    listen: &str,
    options: EngineOptions,
) -> Result<Engine> {
    mgha_core::model::validate::validate_name("node", name)?;
    if dir.join(mgha_core::store::STORE_FILE).exists() {
        return Err(Error::InvalidArgument(format!("{} already holds a node", dir.display())));
    }
    let key = JoinKey::parse(key)?;
    let files = TlsFiles::new(dir);
    let written = JoinOutput::before(dir, &files);
    mgha_core::private::create_dir(dir)?;
    let joined = join_into(dir, name, peer, &key, listen, options, &files).await;
    if joined.is_err() {
        written.remove();
    }
    joined
}

async fn join_into(
    dir: &Path,
    name: &str,
    peer: &str,
    key: &JoinKey,
    listen: &str,
    options: EngineOptions,
    files: &TlsFiles,
) -> Result<Engine> {
    let joined = join_cluster(peer, key, name, listen, files).await?;
    let node = NodeState {
        node_id: joined.node_id,
        name: name.into(),
        cluster_id: joined.cluster_id,
        designation: Designation::Secondary,
        role: Role::Standby,
        epoch: 0,
        tag: joined.tag,
    };
    let engine = crate::create_engine(dir, &node, options)?;
    membership::merge_members(&engine.store(), &joined.members)?;
    Ok(engine)
}

/// What a join may write into a data directory that did not exist before it, to be removed
/// when the join fails: the files (TLS keys and certificates, the store) and the directories,
/// deepest first. Only what was absent before the join is listed; a directory is removed only
/// when it is empty once the files are gone, so nothing the join did not write is touched.
struct JoinOutput {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

/// Nothing at `path`, not even a symbolic link (which `exists` would follow).
fn absent(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

impl JoinOutput {
    fn before(dir: &Path, tls: &TlsFiles) -> JoinOutput {
        let files = [tls.node_key(), tls.node_cert(), tls.ca_cert(), dir.join(mgha_core::store::STORE_FILE)]
            .into_iter()
            .filter(|f| absent(f))
            .collect();
        // `create_dir_all` creates the data directory and whichever of its ancestors are
        // missing; the TLS directory comes later, inside it.
        let mut dirs: Vec<PathBuf> = vec![tls.dir().to_path_buf()];
        dirs.extend(dir.ancestors().take_while(|d| !d.as_os_str().is_empty()).map(Path::to_path_buf));
        dirs.retain(|d| absent(d));
        JoinOutput { files, dirs }
    }

    /// Removes what the join wrote.
    fn remove(self) {
        for f in &self.files {
            if let Err(e) = std::fs::remove_file(f) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %f.display(), error = %e, "cannot remove what a failed join wrote");
                }
            }
        }
        // Deepest first; `remove_dir` refuses a directory that is not empty, and then its
        // ancestors are not empty either. One the join never got to create is skipped.
        for d in &self.dirs {
            match std::fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => break,
            }
        }
    }
}

/// Enrolls an arbiter witness in `dir` (`mgha witness`): redeems the one-time join key with
/// `peer` for a certificate of the cluster CA, written under `dir/tls/`. The witness does not
/// become a member: it votes in the arbiter's Raft group and holds no data.
pub async fn enroll_witness(dir: &Path, name: &str, peer: &str, key: &str) -> Result<()> {
    mgha_core::model::validate::validate_name("node", name)?;
    let files = TlsFiles::new(dir);
    if files.node_cert().exists() {
        return Err(Error::InvalidArgument(format!("{} already holds an enrolled member", dir.display())));
    }
    let key = JoinKey::parse(key)?;
    mgha_core::private::create_dir(dir)?;
    let enrolled = enroll_witness_through(peer, &key, name, &files).await?;
    tracing::info!(witness = %enrolled.node_id, cluster = %enrolled.cluster_id, "enrolled as an arbiter witness");
    Ok(())
}

/// Makes this Secondary the Primary, when the Primary is lost for good: it must hold the cluster
/// CA key (every member receives it from the Active over the member channel). It can then issue
/// join keys and sign new members.
pub fn promote_to_primary(engine: &Engine) -> Result<()> {
    let files = TlsFiles::new(engine.dir());
    if !files.has_ca_key() {
        return Err(Error::InvalidArgument(
            "this node has not received the cluster CA key yet (it arrives once the node has followed an active)"
                .into(),
        ));
    }
    let node = engine.set_designation(Designation::Primary)?;
    let store = engine.store();
    let me = membership::members(&store)?.into_iter().find(|m| m.node_id == node.node_id);
    if let Some(me) = me {
        membership::set_own_record(&store, Member { designation: Designation::Primary, ..me })?;
    }
    tracing::warn!(node = %node.name, "promoted to primary");
    Ok(())
}
