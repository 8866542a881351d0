//! The CLI's one way to reach a node: a [`Backend`] that is either the running daemon, over the
//! admin API, or the store itself, opened directly when no daemon answers (redb's file lock
//! makes that safe: it only succeeds when no daemon holds the store). Every command goes through
//! these methods and gets the same API bodies back, so output code never knows which it was.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::ChangeSet;
use serde::de::DeserializeOwned;

use crate::api::*;
use crate::config::NodeConfig;
use crate::daemon::errors::ApiError;
use crate::daemon::plugins::{self, PluginBody, PluginList};
use crate::daemon::routes::{AUTHOR_HEADER, LIST_OBJECTS_DEFAULT};
use crate::exit::ApiFailure;

/// How long the CLI waits for the daemon's port to accept a connection before deciding that no
/// daemon runs. Loopback answers in microseconds; this only bounds a wedged one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
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
    /// Reaches the node of `dir`: its daemon if one answers at the configured address,
    /// otherwise its store.
    pub fn connect(dir: &Path) -> anyhow::Result<Backend> {
        let config = NodeConfig::load(dir)?;
        let admin = config.require_admin()?;
        if daemon_listens(admin) {
            let token = crate::token::read(dir)?;
            return Ok(Backend::Remote(Remote::new(admin, token)));
        }
        // Without the daemon no standby is connected: publishes are refused up front when the
        // config wants them replicated (see `Local::check_replicable`), never left waiting.
        let options = EngineOptions { sync_standbys: 0, ..config.engine_options() };
        let engine = Engine::open(dir, options).map_err(|e| match e {
            mgha_core::Error::InUse(_) => anyhow::Error::new(e).context(format!(
                "no daemon answers at {} (key 'admin' in {}), yet another process holds the store",
                admin,
                NodeConfig::path(dir).display()
            )),
            other => anyhow::Error::new(other).context(format!("opening the store in {}", dir.display())),
        })?;
        Ok(Backend::Local(Local { engine: Box::new(engine), sync_standbys: config.sync_standbys }))
    }

    /// The running daemon of `dir`, for what only it can do: `what` needs the peer connections,
    /// and only the daemon holds them. An error saying to start it when none answers.
    pub fn daemon(dir: &Path, what: &str) -> anyhow::Result<Remote> {
        let admin = NodeConfig::load(dir)?.require_admin()?;
        if !daemon_listens(admin) {
            bail!(
                "no daemon answers at {} (key 'admin' in {}); start the daemon (`mgha run --data-dir {}`): {what} \
                 needs the peer connections",
                admin,
                NodeConfig::path(dir).display(),
                dir.display()
            );
        }
        Ok(Remote::new(admin, crate::token::read(dir)?))
    }

    /// Says which way the node is reached, for `status`.
    pub fn describe(&self) -> String {
        match self {
            Backend::Remote(r) => format!("daemon at {}", r.base),
            Backend::Local(l) => {
                format!("store in {} (no daemon running)", l.engine.dir().display())
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
            Backend::Local(l) => Ok(RevisionBody::from(&l.engine.store().revision(seq)?)),
        }
    }

    pub fn diff(&self, from: u64, to: u64) -> anyhow::Result<DiffBody> {
        match self {
            Backend::Remote(r) => r.get_json(&format!("/v1/diff?from={from}&to={to}")),
            Backend::Local(l) => Ok(DiffBody::from(&l.engine.store().diff(from, to)?)),
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

/// Percent-encodes a path segment or query value: names may hold any character.
fn encode(s: &str) -> String {
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
    /// A client of the daemon at `addr` with `token`.
    pub fn new(addr: SocketAddr, token: String) -> Remote {
        // The API is on loopback and the token must never leave the host: no proxy from the
        // environment, no redirects.
        let agent = ureq::Agent::config_builder()
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build()
            .new_agent();
        Remote { base: format!("http://{addr}"), token, agent }
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
        let mut resp = sent.with_context(|| format!("{method} {url}: the daemon did not answer"))?;
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
