//! The CLI's one way to reach a node: a [`Backend`] that is either the running daemon, over the
//! admin API (found through the data directory or `--endpoint`), or, only when asked with
//! `--offline`, the store of a stopped node (redb's file lock makes that safe: it only succeeds
//! when no daemon holds the store). Every command goes through these methods and gets the same
//! API bodies back, so output code never knows which it was.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::ChangeSet;
use mgha_node::archive::Archive;
use serde::de::DeserializeOwned;

use crate::api::*;
use crate::config::NodeConfig;
use crate::daemon::errors::ApiError;
use crate::daemon::plugins::{self, PluginBody, PluginList};
use crate::daemon::routes::{AUTHOR_HEADER, LIST_OBJECTS_DEFAULT};
use crate::exit::{ApiFailure, NoDaemon};
use crate::TargetArgs;

/// How long the CLI waits for the daemon's port to accept a connection before deciding that no
/// daemon runs. Loopback answers in microseconds; this only bounds a wedged one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the CLI waits for a starting daemon (the store locked, the port not open yet) to
/// answer. Opening a large store and starting synchronization takes seconds.
const STARTING_WAIT: Duration = Duration::from_secs(30);
/// How often it looks meanwhile.
const STARTING_POLL: Duration = Duration::from_millis(20);
/// How long one API call may take. Large publishes and diffs take seconds; the backup download
/// is exempt (it streams for as long as it has data).
const CALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest JSON answer the CLI reads: a full object listing at its limit fits.
const RESPONSE_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// The content type of JSON request bodies.
const JSON: &str = "application/json";
/// The content type of WebAssembly modules sent to the plugin routes.
const WASM: &str = "application/wasm";

/// A node, reached through its daemon or its store.
pub enum Backend {
    Remote(Remote),
    Local(Local),
}

/// The daemon's admin API.
pub struct Remote {
    base: String,
    token: String,
    agent: ureq::Agent,
    /// Where the trusted roots of an `https` base came from, for the message of a failed
    /// handshake; `None` for the public web roots.
    roots_from: Option<String>,
    /// The domain a `--domain` names (percent-encoded), other than the global one: its routes
    /// are the same under `/v1/domains/{domain}/`.
    scope: Option<String>,
}

/// The certificates an `https` client trusts: from a file, or the public web roots.
enum Roots {
    File { certs: Vec<ureq::tls::Certificate<'static>>, from: String },
    Public,
}

impl Roots {
    /// The certificates in the PEM file `path`; `what` names the file's role in messages.
    fn read(path: &Path, what: &str) -> anyhow::Result<Roots> {
        let meta = std::fs::metadata(path).with_context(|| format!("{what} {}", path.display()))?;
        if !meta.is_file() || meta.len() > mgha_node::config::ADMIN_TLS_FILE_BYTES_MAX {
            bail!("{what} {}: not a regular file of at most 1 MiB", path.display());
        }
        let pem = std::fs::read(path).with_context(|| format!("{what} {}", path.display()))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            if let ureq::tls::PemItem::Certificate(c) =
                item.with_context(|| format!("{what} {}: unreadable PEM", path.display()))?
            {
                certs.push(c);
            }
        }
        if certs.is_empty() {
            bail!("{what} {}: no PEM certificate in it", path.display());
        }
        Ok(Roots::File { certs, from: format!("{what} {}", path.display()) })
    }
}

/// The store, opened in this process.
pub struct Local {
    /// Boxed: an engine is several times the size of a [`Remote`].
    engine: Box<Engine>,
    /// `sync_standbys` of the config: a publish that must reach standbys needs the daemon.
    sync_standbys: usize,
}

/// Progress of a backup download or write, for the progress bar.
#[derive(Clone, Copy, Debug)]
pub enum BackupProgress {
    /// Bytes received so far (the daemon does not announce a total).
    Bytes(u64),
    /// Objects and revisions written, of how many.
    Items { done: u64, total: u64 },
}

impl Backend {
    /// Reaches the node `target` names: its daemon (through `--endpoint`, or the address in its
    /// data directory), or with `--offline` its store. Never the store otherwise: a command
    /// means one thing whether or not the daemon runs (docs/cli.md, "Reaching a node").
    pub fn connect(target: &TargetArgs) -> anyhow::Result<Backend> {
        match (&target.data_dir, target.offline) {
            (Some(dir), true) => Local::open(dir, target.domain.as_deref()).map(Backend::Local),
            _ => Remote::reach(target, "this command").map(Backend::Remote),
        }
    }

    /// The running daemon of `target`, for what only it can do: `what` needs the peer
    /// connections, and only the daemon holds them.
    pub fn daemon(target: &TargetArgs, what: &str) -> anyhow::Result<Remote> {
        if target.offline {
            bail!("{what} needs the running daemon (its peer connections); it cannot be done --offline");
        }
        Remote::reach(target, what)
    }

    /// Says which way the node is reached, for `status`.
    pub fn describe(&self) -> String {
        match self {
            Backend::Remote(r) => format!("daemon at {}", r.base),
            Backend::Local(l) => {
                format!("store in {} (offline: no daemon asked)", l.engine.dir().display())
            }
        }
    }

    pub fn status(&self) -> anyhow::Result<StatusBody> {
        match self {
            Backend::Remote(r) => r.get_json("/v1/status"),
            Backend::Local(l) => Ok(StatusBody::of(&l.engine)?),
        }
    }

    /// A full integrity check of the node's store.
    pub fn check(&self) -> anyhow::Result<CheckBody> {
        match self {
            Backend::Remote(r) => r.get_json("/v1/check"),
            Backend::Local(l) => Ok(CheckBody::from(&l.engine.check()?)),
        }
    }

    /// Publishes a changeset as one revision.
    pub fn publish(&self, author: &str, cs: &ChangeSet) -> anyhow::Result<RevisionInfoBody> {
        match self {
            Backend::Remote(r) => {
                let body = serde_json::to_vec(cs).context("encoding the changeset")?;
                r.send("POST", "/v1/publish", Some(author), Some(body))
            }
            Backend::Local(l) => {
                l.check_replicable()?;
                Ok(RevisionInfoBody::from(&l.engine.publish(author, cs)?.info()))
            }
        }
    }

    pub fn get(&self, type_name: &str, key: &str) -> anyhow::Result<ObjectBody> {
        match self {
            Backend::Remote(r) => r.get_json(&format!("/v1/objects/{}/{}", encode(type_name), encode(key))),
            Backend::Local(l) => Ok(ObjectBody::from(&l.engine.store().get(type_name, key)?)),
        }
    }

    pub fn list(&self, type_name: Option<&str>, limit: Option<usize>) -> anyhow::Result<Vec<ObjectBody>> {
        let limit = limit.unwrap_or(LIST_OBJECTS_DEFAULT);
        match self {
            Backend::Remote(r) => {
                let mut path = format!("/v1/objects?limit={limit}");
                if let Some(t) = type_name {
                    path.push_str(&format!("&type={}", encode(t)));
                }
                Ok(r.get_json::<ObjectList>(&path)?.objects)
            }
            Backend::Local(l) => Ok(l.engine.store().list(type_name, limit)?.iter().map(ObjectBody::from).collect()),
        }
    }

    pub fn revisions(&self, before: Option<u64>, limit: usize) -> anyhow::Result<Vec<RevisionInfoBody>> {
        match self {
            Backend::Remote(r) => {
                let mut path = format!("/v1/revisions?limit={limit}");
                if let Some(b) = before {
                    path.push_str(&format!("&before={b}"));
                }
                Ok(r.get_json::<RevisionList>(&path)?.revisions)
            }
            Backend::Local(l) => {
                Ok(l.engine.store().revisions(before, limit)?.iter().map(RevisionInfoBody::from).collect())
            }
        }
    }

    pub fn revision(&self, seq: u64) -> anyhow::Result<RevisionBody> {
        match self {
            Backend::Remote(r) => r.get_json(&format!("/v1/revisions/{seq}")),
            Backend::Local(l) => Ok(mgha_node::refs::revision(&l.engine, seq)?),
        }
    }

    pub fn diff(&self, from: u64, to: u64) -> anyhow::Result<DiffBody> {
        match self {
            Backend::Remote(r) => r.get_json(&format!("/v1/diff?from={from}&to={to}")),
            Backend::Local(l) => Ok(mgha_node::refs::diff(&l.engine, from, to)?),
        }
    }

    /// The archived stores and backups of the node (`DIR/archive/`).
    pub fn archives(&self) -> anyhow::Result<ArchiveList> {
        match self {
            Backend::Remote(r) => r.get_json("/v1/archive"),
            Backend::Local(l) => Ok(mgha_node::archive::list(l.engine.dir())?),
        }
    }

    /// Revision headers of archive `name`, newest first.
    pub fn archive_revisions(
        &self,
        name: &str,
        before: Option<u64>,
        limit: usize,
    ) -> anyhow::Result<Vec<RevisionInfoBody>> {
        match self {
            Backend::Remote(r) => {
                let mut path = format!("/v1/archive/{}/revisions?limit={limit}", encode(name));
                if let Some(b) = before {
                    path.push_str(&format!("&before={b}"));
                }
                Ok(r.get_json::<RevisionList>(&path)?.revisions)
            }
            Backend::Local(l) => Ok(Archive::open(l.engine.dir(), name)?.revisions(before, limit)?.revisions),
        }
    }

    /// Revision `seq` of archive `name`.
    pub fn archive_revision(&self, name: &str, seq: u64) -> anyhow::Result<RevisionBody> {
        match self {
            Backend::Remote(r) => r.get_json(&format!("/v1/archive/{}/revisions/{seq}", encode(name))),
            Backend::Local(l) => Ok(Archive::open(l.engine.dir(), name)?.revision(seq)?),
        }
    }

    /// The diff of revisions `from` and `to` of archive `name`.
    pub fn archive_diff(&self, name: &str, from: u64, to: u64) -> anyhow::Result<DiffBody> {
        match self {
            Backend::Remote(r) => r.get_json(&format!("/v1/archive/{}/diff?from={from}&to={to}", encode(name))),
            Backend::Local(l) => Ok(Archive::open(l.engine.dir(), name)?.diff(from, to)?),
        }
    }

    /// Publishes a revision that restores the state after revision `to`.
    pub fn revert(&self, author: &str, to: u64) -> anyhow::Result<RevisionInfoBody> {
        match self {
            Backend::Remote(r) => {
                let body = serde_json::to_vec(&RevertRequest { to }).context("encoding the request")?;
                r.send("POST", "/v1/revert", Some(author), Some(body))
            }
            Backend::Local(l) => {
                l.check_replicable()?;
                Ok(RevisionInfoBody::from(&l.engine.revert(author, to)?.info()))
            }
        }
    }

    /// Issues a one-time join key valid for `ttl_ms` (on the node holding the cluster CA).
    pub fn join_key(&self, ttl_ms: u64) -> anyhow::Result<JoinKeyBody> {
        match self {
            Backend::Remote(r) => {
                let body =
                    serde_json::to_vec(&JoinKeyRequest { expires_ms: Some(ttl_ms) }).context("encoding the request")?;
                r.send("POST", "/v1/join-keys", None, Some(body))
            }
            Backend::Local(l) => Ok(crate::daemon::cluster::issue(&l.engine, ttl_ms)?),
        }
    }

    /// The current members the node knows.
    pub fn members(&self) -> anyhow::Result<MemberList> {
        match self {
            Backend::Remote(r) => r.get_json("/v1/members"),
            Backend::Local(l) => Ok(MemberList::of(&l.engine)?),
        }
    }

    /// Removes a member from the cluster (on the Active).
    pub fn remove_member(&self, name: &str) -> anyhow::Result<MemberRemovedBody> {
        match self {
            Backend::Remote(r) => r.send("DELETE", &format!("/v1/members/{}", encode(name)), None, None),
            Backend::Local(l) => {
                let removed = mgha_node::node::remove_member(&l.engine, name)?;
                Ok(MemberRemovedBody { name: removed.name, node_id: removed.node_id.to_string() })
            }
        }
    }

    /// Makes this Secondary the Primary.
    pub fn promote(&self) -> anyhow::Result<NodeBody> {
        match self {
            Backend::Remote(r) => r.send("POST", "/v1/promote", None, None),
            Backend::Local(l) => Ok(crate::daemon::roles::promote_node(&l.engine)?),
        }
    }

    /// The collision branches kept on this node, resolved ones included.
    pub fn collisions(&self) -> anyhow::Result<Vec<CollisionBody>> {
        match self {
            Backend::Remote(r) => Ok(r.get_json::<CollisionList>("/v1/collisions")?.collisions),
            Backend::Local(l) => Ok(crate::daemon::collisions::list(&l.engine)?.collisions),
        }
    }

    /// What branch `id` and the Active each changed since the fork, and a merge's conflicts.
    pub fn collision_diff(&self, id: u64) -> anyhow::Result<CollisionDiffBody> {
        match self {
            Backend::Remote(r) => r.get_json(&format!("/v1/collisions/{id}/diff")),
            Backend::Local(l) => Ok(crate::daemon::collisions::diff(&l.engine, id)?),
        }
    }

    /// Resolves branch `id`.
    pub fn resolve_collision(&self, id: u64, req: &ResolveRequest, author: &str) -> anyhow::Result<ResolvedBody> {
        match self {
            Backend::Remote(r) => {
                let body = serde_json::to_vec(req).context("encoding the request")?;
                r.send("POST", &format!("/v1/collisions/{id}/resolve"), Some(author), Some(body))
            }
            Backend::Local(l) => {
                if crate::daemon::collisions::may_publish(req) {
                    l.check_replicable()?;
                }
                Ok(crate::daemon::collisions::resolve(&l.engine, id, req, author)?)
            }
        }
    }

    /// Checks a WebAssembly module as install would, with the node's limits; installs nothing.
    pub fn plugin_check(&self, wasm: Vec<u8>) -> anyhow::Result<PluginBody> {
        match self {
            Backend::Remote(r) => r.send_as("POST", "/v1/plugin-check", None, Some((wasm, WASM))),
            Backend::Local(l) => Ok(plugins::check(&l.engine, &wasm)?),
        }
    }

    /// Installs (or upgrades) a plugin as one revision.
    pub fn plugin_install(&self, author: &str, wasm: Vec<u8>) -> anyhow::Result<RevisionInfoBody> {
        match self {
            Backend::Remote(r) => r.send_as("POST", "/v1/plugins", Some(author), Some((wasm, WASM))),
            Backend::Local(l) => {
                l.check_replicable()?;
                Ok(RevisionInfoBody::from(&plugins::install(&l.engine, author, &wasm)?.info()))
            }
        }
    }

    /// The installed plugins, and whether this node runs each.
    pub fn plugins(&self) -> anyhow::Result<Vec<PluginBody>> {
        match self {
            Backend::Remote(r) => Ok(r.get_json::<PluginList>("/v1/plugins")?.plugins),
            Backend::Local(l) => Ok(plugins::list(&l.engine)?.plugins),
        }
    }

    /// Removes a plugin as one revision; refused as a conflict while objects of its types remain.
    pub fn plugin_remove(&self, author: &str, name: &str) -> anyhow::Result<RevisionInfoBody> {
        match self {
            Backend::Remote(r) => r.send("DELETE", &format!("/v1/plugins/{}", encode(name)), Some(author), None),
            Backend::Local(l) => {
                l.check_replicable()?;
                let rev =
                    l.engine.plugin_remove(author, name).map_err(|e| failure(plugins::removal_refused(e.into())))?;
                Ok(RevisionInfoBody::from(&rev.info()))
            }
        }
    }

    /// Writes a consistent backup to `out`; returns the bytes written.
    pub fn backup(&self, out: &mut dyn Write, progress: &mut dyn FnMut(BackupProgress)) -> anyhow::Result<u64> {
        match self {
            Backend::Remote(r) => r.download("/v1/backup", out, progress),
            Backend::Local(l) => {
                let summary = mgha_core::backup::write_backup(&l.engine.store(), out, &mut |p| {
                    progress(BackupProgress::Items { done: p.done, total: p.total })
                })?;
                Ok(summary.bytes)
            }
        }
    }
}

impl Local {
    /// Opens the store of the stopped node in `dir`. While its daemon runs, the store is locked
    /// and the daemon is the way in.
    fn open(data_dir: &Path, domain: Option<&str>) -> anyhow::Result<Local> {
        let config = NodeConfig::load(data_dir)?;
        // A domain's replica is a store of its own, under DIR/domains/NAME.
        let domain_dir;
        let dir = match domain.filter(|d| *d != mgha_node::domains::GLOBAL_DOMAIN) {
            Some(name) => {
                mgha_node::domains::check_name(name)?;
                domain_dir = data_dir.join(mgha_node::domains::DOMAINS_DIR).join(name);
                if !domain_dir.join(mgha_core::store::STORE_FILE).exists() {
                    bail!("this server holds no replica of domain '{name}' ({} holds no store)", domain_dir.display());
                }
                domain_dir.as_path()
            }
            None => data_dir,
        };
        // Without the daemon no standby is connected: publishes are refused up front when the
        // config wants them replicated (see `Local::check_replicable`), never left waiting.
        let options = EngineOptions { sync_standbys: 0, ..config.engine_options() };
        let engine = mgha_sync::open_engine(dir, options).map_err(|e| match e {
            mgha_core::Error::InUse(_) => anyhow::Error::new(e).context(format!(
                "--offline works on a stopped node's store, and a process (its daemon?) holds the one in {}; \
                 drop --offline to go through the daemon",
                dir.display()
            )),
            other => anyhow::Error::new(other).context(format!("opening the store in {}", dir.display())),
        })?;
        Ok(Local { engine: Box::new(engine), sync_standbys: config.sync_standbys })
    }

    /// Refuses a publish the config wants acknowledged by standbys: only the running daemon
    /// talks to them, so it could never be, and nothing should be committed that way.
    fn check_replicable(&self) -> anyhow::Result<()> {
        if self.sync_standbys > 0 {
            anyhow::bail!(
                "'sync_standbys = {}' in {} wants every publish applied by a standby, and only the running daemon \
                 replicates; start it with `mgha run --data-dir {}`",
                self.sync_standbys,
                crate::config::CONFIG_FILE,
                self.engine.dir().display()
            );
        }
        Ok(())
    }
}

/// An API error made on this side (the store opened locally) as the daemon would have sent it, so
/// that the exit code and message are the same either way.
fn failure(e: ApiError) -> anyhow::Error {
    ApiFailure { code: e.code, message: e.message }.into()
}

/// Whether something accepts connections at the daemon's address.
fn daemon_listens(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).is_ok()
}

/// Waits for the daemon of `dir` to answer at `admin`. A daemon that is starting holds the
/// store's lock before its admin port opens: while the lock is held the CLI waits (up to
/// [`STARTING_WAIT`]) instead of deciding that no daemon runs. Returns whether it answers.
fn wait_for_daemon(dir: &Path, admin: SocketAddr) -> bool {
    let deadline = Instant::now() + STARTING_WAIT;
    loop {
        if daemon_listens(admin) {
            return true;
        }
        if !store_locked(dir) || Instant::now() >= deadline {
            // The lock may have been released by a daemon that just started listening.
            return daemon_listens(admin);
        }
        std::thread::sleep(STARTING_POLL);
    }
}

/// Whether a process holds the lock of the store in `dir`, read from `/proc/locks` without
/// touching the file: taking the lock even for a moment could make a starting daemon fail.
fn store_locked(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir.join(mgha_core::store::STORE_FILE)) else { return false };
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else { return false };
    let dev = meta.dev();
    // The kernel's encoding of a device number (major and minor, as glibc's gnu_dev_major/minor).
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let wanted = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    locks.lines().any(|l| l.split_whitespace().any(|field| field == wanted))
}

/// Reads an admin token from a file given by the user: the first line, trimmed; refused when
/// empty or not a regular file.
fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("token file {}", path.display()))?;
    if !meta.is_file() || meta.len() > 4096 {
        bail!("token file {}: not a regular file of at most 4096 bytes", path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("token file {}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim().to_string();
    if token.is_empty() {
        bail!("token file {}: empty", path.display());
    }
    Ok(token)
}

/// Percent-encodes a path segment or query value: names may hold any character.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Remote {
    /// The daemon `target` names: `--endpoint` with `--token-file` (or the data directory's
    /// token), or the `admin` address and token of the data directory. `what` is named when no
    /// daemon answers.
    fn reach(target: &TargetArgs, what: &str) -> anyhow::Result<Remote> {
        let mut remote = Remote::reach_node(target, what)?;
        remote.scope = target.domain.as_deref().filter(|d| *d != mgha_node::domains::GLOBAL_DOMAIN).map(encode);
        Ok(remote)
    }

    /// The daemon of [`Remote::reach`], before any domain is chosen.
    fn reach_node(target: &TargetArgs, what: &str) -> anyhow::Result<Remote> {
        let token_of = |dir: Option<&Path>| -> anyhow::Result<String> {
            match (&target.token_file, dir) {
                (Some(file), _) => read_token_file(file),
                (None, Some(dir)) => Ok(crate::token::read(dir)?),
                (None, None) => bail!("--endpoint needs the admin token: give --token-file PATH (or MGHA_TOKEN_FILE)"),
            }
        };
        let ca = match &target.ca {
            Some(file) => Some(Roots::read(file, "--ca")?),
            None => None,
        };
        if let Some(endpoint) = &target.endpoint {
            let base = endpoint.trim_end_matches('/');
            if !base.starts_with("http://") && !base.starts_with("https://") {
                bail!("--endpoint {endpoint}: give a URL, http://HOST:PORT or https://HOST:PORT");
            }
            let remote =
                Remote::at(base.to_string(), token_of(target.data_dir.as_deref())?, ca.unwrap_or(Roots::Public));
            if !remote.answers() {
                return Err(NoDaemon(format!("no daemon answers at {base} (--endpoint); {what} needs one")).into());
            }
            return Ok(remote);
        }
        let Some(dir) = &target.data_dir else { bail!("give the node: --data-dir DIR or --endpoint URL") };
        let config = NodeConfig::load(dir)?;
        let mut admin = config.require_admin()?;
        // A daemon listening on every address answers on loopback too.
        if admin.ip().is_unspecified() {
            admin.set_ip(if admin.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() });
        }
        let tls = match (config.admin_tls_files(), ca) {
            (None, _) => None,
            (Some(_), Some(ca)) => Some(ca),
            // The certificate file holds the server's certificate and its chain: its last one
            // is the CA (or the server's own, self-signed).
            (Some((cert, _)), None) => Some(Roots::read(&cert, "admin_tls_cert")?),
        };
        if !wait_for_daemon(dir, admin) {
            return Err(NoDaemon(format!(
                "no daemon answers at {admin} (key 'admin' in {}); {what} needs one: start it with \
                 `mgha run --data-dir {d}`, or add --offline to work on the stopped node's store",
                NodeConfig::path(dir).display(),
                d = dir.display()
            ))
            .into());
        }
        let token = token_of(Some(dir))?;
        Ok(match tls {
            Some(roots) => Remote::at(format!("https://{admin}"), token, roots),
            None => Remote::new(admin, token),
        })
    }

    /// Whether the daemon's port accepts a connection.
    fn answers(&self) -> bool {
        let authority = self.base.split_once("://").map_or(self.base.as_str(), |(_, rest)| rest);
        let authority = authority.split('/').next().unwrap_or_default();
        let default_port = if self.base.starts_with("https://") { 443 } else { 80 };
        let with_port =
            if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !authority.ends_with(']') {
                authority.to_string()
            } else {
                format!("{authority}:{default_port}")
            };
        use std::net::ToSocketAddrs;
        with_port.to_socket_addrs().map(|mut addrs| addrs.any(daemon_listens)).unwrap_or(false)
    }

    /// A client of the daemon at `addr` with `token`.
    pub fn new(addr: SocketAddr, token: String) -> Remote {
        Remote::at(format!("http://{addr}"), token, Roots::Public)
    }

    /// A client of the daemon at the URL `base` with `token`, trusting `roots` when it is https.
    fn at(base: String, token: String, roots: Roots) -> Remote {
        let (root_certs, roots_from) = match roots {
            Roots::File { certs, from } => (ureq::tls::RootCerts::new_with_certs(&certs), Some(from)),
            Roots::Public => (ureq::tls::RootCerts::WebPki, None),
        };
        let tls =
            ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls).root_certs(root_certs).build();
        // The token goes to the daemon and nowhere else: no proxy from the environment, no
        // redirects.
        let agent = ureq::Agent::config_builder()
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .tls_config(tls)
            .build()
            .new_agent();
        Remote { base, token, agent, roots_from, scope: None }
    }

    /// Says what a transport failure of `url` means: for https, which certificates were trusted
    /// and how to trust the right one.
    fn transport_failure(&self, method: &str, url: &str, e: ureq::Error) -> anyhow::Error {
        let tls = matches!(e, ureq::Error::Rustls(_) | ureq::Error::Tls(_));
        let mut message = format!("{method} {url}: the daemon did not answer");
        if matches!(e, ureq::Error::Protocol(_)) && self.base.starts_with("http://") {
            // A TLS port answers plain HTTP with a TLS alert, which does not parse as HTTP.
            message.push_str(" (an answer that is not HTTP: does the daemon serve HTTPS? then use https://)");
        } else if tls || self.base.starts_with("https://") {
            match &self.roots_from {
                Some(from) => message.push_str(&format!(
                    " (HTTPS, trusting the certificates in {from}; is that the CA that signed the daemon's \
                     certificate, for this host name?)"
                )),
                None => message.push_str(
                    " (HTTPS, trusting only the public web roots; give the CA that signed the daemon's \
                     certificate with --ca FILE or MGHA_CA)",
                ),
            }
        }
        anyhow::Error::new(e).context(message)
    }

    /// `path` in the domain `--domain` named: the cluster's own routes (domains, members, join
    /// keys, promotion) stay as they are.
    fn scoped(&self, path: &str) -> String {
        const CLUSTER: &[&str] = &["/v1/domains", "/v1/rebalance", "/v1/members", "/v1/join-keys", "/v1/promote"];
        match (&self.scope, path.strip_prefix("/v1/")) {
            (Some(domain), Some(rest)) if !CLUSTER.iter().any(|c| path.starts_with(c)) => {
                format!("/v1/domains/{domain}/{rest}")
            }
            _ => path.to_string(),
        }
    }

    /// Asks the daemon for a changeover.
    pub fn changeover(&self, req: &ChangeoverRequest) -> anyhow::Result<ChangeoverBody> {
        let body = serde_json::to_vec(req).context("encoding the request")?;
        self.send("POST", "/v1/changeover", None, Some(body))
    }

    /// GETs a JSON body.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send("GET", path, None, None)
    }

    /// Sends a request with a JSON body (or none) and reads a JSON answer; an error answer
    /// becomes an [`ApiFailure`].
    pub fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        author: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<T> {
        self.send_as(method, path, author, body.map(|b| (b, JSON)))
    }

    /// [`Remote::send`] with a body of the given content type.
    fn send_as<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        author: Option<&str>,
        body: Option<(Vec<u8>, &str)>,
    ) -> anyhow::Result<T> {
        let mut resp = self.call(method, path, author, body, Some(CALL_TIMEOUT))?;
        resp.body_mut()
            .with_config()
            .limit(RESPONSE_BYTES_MAX)
            .read_json::<T>()
            .with_context(|| format!("{method} {path}: unreadable answer from the daemon"))
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        author: Option<&str>,
        body: Option<(Vec<u8>, &str)>,
        timeout: Option<Duration>,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let scoped = self.scoped(path);
        let path = scoped.as_str();
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token));
        if let Some(a) = author {
            req = req.header(AUTHOR_HEADER, a);
        }
        // A GET carries no body at all (ureq refuses an empty one on GET), so the two kinds of
        // request have different body types.
        let sent = match body {
            Some((b, content_type)) => {
                let req = req.header("content-type", content_type);
                let req = req.body(b).with_context(|| format!("{method} {url}: bad request"))?;
                self.agent.run(self.agent.configure_request(req).timeout_global(timeout).build())
            }
            None => {
                let req = req.body(()).with_context(|| format!("{method} {url}: bad request"))?;
                self.agent.run(self.agent.configure_request(req).timeout_global(timeout).build())
            }
        };
        let mut resp = sent.map_err(|e| self.transport_failure(method, &url, e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let failure = match resp.body_mut().with_config().limit(1024 * 1024).read_json::<ErrorBody>() {
            Ok(b) => ApiFailure { code: b.error.code, message: b.error.message },
            Err(_) => {
                ApiFailure { code: String::new(), message: format!("{method} {path}: the daemon answered {status}") }
            }
        };
        Err(failure.into())
    }

    /// Streams a binary answer into `out`.
    fn download(
        &self,
        path: &str,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(BackupProgress),
    ) -> anyhow::Result<u64> {
        let resp = self.call("GET", path, None, None, None)?;
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buf).with_context(|| format!("GET {path}: the download broke off"))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).context("writing the backup")?;
            total += n as u64;
            progress(BackupProgress::Bytes(total));
        }
        out.flush().context("writing the backup")?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_percent_encoded() {
        assert_eq!(encode("web1"), "web1");
        assert_eq!(encode("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(encode("é"), "%C3%A9");
    }
}
