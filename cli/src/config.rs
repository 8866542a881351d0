//! The node configuration file `DIR/mgha.toml`, written by `init`, `join` and `restore`, read by
//! `run` and by every CLI command (to find the daemon). docs/config.md documents each key. Parsing
//! is strict: an unknown key or an invalid value is an error that names the key, because a typo in
//! a config file that is silently ignored is found only in an outage.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mgha_core::engine::EngineOptions;
use mgha_core::failover::{FailoverMode, FailoverTiming};
use mgha_core::sync::SyncConfig;
use serde::{Deserialize, Serialize};

/// File name of the node configuration inside a data directory.
pub const CONFIG_FILE: &str = "mgha.toml";

/// Largest configuration file we read; a config is a handful of lines.
const CONFIG_BYTES_MAX: u64 = 64 * 1024;

/// Default of `sync_timeout_ms`: long enough for a standby on a slow disk, short enough that an
/// administrator is told within seconds that a publish is not replicated.
pub const SYNC_TIMEOUT_MS_DEFAULT: u64 = 5000;
/// Default of `heartbeat_ms`.
pub const HEARTBEAT_MS_DEFAULT: u64 = 1000;
/// Default of `peer_timeout_ms`: five missed heartbeats.
pub const PEER_TIMEOUT_MS_DEFAULT: u64 = 5000;
/// Default of `changeover_timeout_ms`: publishes are fenced for at most this long while the
/// target catches up, so it is also the longest pause a planned changeover can cause.
pub const CHANGEOVER_TIMEOUT_MS_DEFAULT: u64 = 5000;
/// Most standbys a synchronous publish may wait for; a cluster larger than this is not a
/// management HA cluster.
pub const SYNC_STANDBYS_MAX: usize = 64;
/// Shortest heartbeat: below this the pings are the traffic.
const HEARTBEAT_MS_MIN: u64 = 10;
/// Longest heartbeat or timeout of any kind: a day. Beyond that a value is a typo.
const TIMEOUT_MS_MAX: u64 = 86_400_000;

fn default_sync_timeout_ms() -> u64 {
    SYNC_TIMEOUT_MS_DEFAULT
}
fn default_heartbeat_ms() -> u64 {
    HEARTBEAT_MS_DEFAULT
}
fn default_peer_timeout_ms() -> u64 {
    PEER_TIMEOUT_MS_DEFAULT
}
fn default_changeover_timeout_ms() -> u64 {
    CHANGEOVER_TIMEOUT_MS_DEFAULT
}

/// A node's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name, shown in status and logs.
    pub name: String,
    /// Where the admin HTTP API listens. Loopback only.
    pub admin: SocketAddr,
    /// Where the node listens for its peers (`HOST:PORT`). Absent: the node runs alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// The address peers are told to dial, when it differs from `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// Keep at most this many revisions; older ones are purged. Absent: keep all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_revisions: Option<u64>,
    /// A publish returns only after this many standbys durably applied it.
    #[serde(default)]
    pub sync_standbys: usize,
    /// How long a synchronous publish waits for its standbys.
    #[serde(default = "default_sync_timeout_ms")]
    pub sync_timeout_ms: u64,
    /// The Active pings each Standby this often.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A peer connection silent for this long is dropped.
    #[serde(default = "default_peer_timeout_ms")]
    pub peer_timeout_ms: u64,
    /// How long a planned changeover may take before it is called off.
    #[serde(default = "default_changeover_timeout_ms")]
    pub changeover_timeout_ms: u64,
    /// The daemon's log level.
    #[serde(default)]
    pub log: LogLevel,
    /// How the Active role moves when the Active fails: "manual" (an administrator), "quorum"
    /// (a Raft group of the nodes and a witness) or "etcd" (a leader key in an etcd cluster).
    #[serde(default)]
    pub failover: FailoverMode,
    /// Automatic failover: a Standby takes over once the Active has not renewed its hold for
    /// this long.
    #[serde(default = "default_failover_after_ms")]
    pub failover_after_ms: u64,
    /// Automatic failover: a Standby more than this many revisions behind is never chosen.
    #[serde(default = "default_max_lag_revisions")]
    pub max_lag_revisions: u64,
    /// Quorum mode: where this node's arbiter (Raft) listens, `HOST:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_listen: Option<String>,
    /// Quorum mode: every voter as `NAME=HOST:PORT`, this node and the witnesses included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quorum_members: Vec<String>,
    /// etcd mode: the etcd cluster's client URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub etcd_endpoints: Vec<String>,
    /// etcd mode: the key prefix; absent: `/mgha/<cluster id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_prefix: Option<String>,
}

fn default_failover_after_ms() -> u64 {
    FailoverTiming::default().failover_after_ms
}
fn default_max_lag_revisions() -> u64 {
    FailoverTiming::default().max_lag_revisions
}

/// One voter of the quorum arbiter, from `quorum_members`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumMember {
    pub name: String,
    pub address: String,
}

/// Log levels of the daemon, from quietest to loudest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        })
    }
}

impl NodeConfig {
    /// A configuration with defaults for everything but the name and the admin address; without
    /// a `listen` address, so a node that runs alone (a restored one, say).
    pub fn new(name: &str, admin: SocketAddr) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            admin,
            listen: None,
            advertise: None,
            retain_revisions: None,
            sync_standbys: 0,
            sync_timeout_ms: SYNC_TIMEOUT_MS_DEFAULT,
            heartbeat_ms: HEARTBEAT_MS_DEFAULT,
            peer_timeout_ms: PEER_TIMEOUT_MS_DEFAULT,
            changeover_timeout_ms: CHANGEOVER_TIMEOUT_MS_DEFAULT,
            log: LogLevel::default(),
            failover: FailoverMode::Manual,
            failover_after_ms: default_failover_after_ms(),
            max_lag_revisions: default_max_lag_revisions(),
            quorum_listen: None,
            quorum_members: Vec::new(),
            etcd_endpoints: Vec::new(),
            etcd_prefix: None,
        }
    }

    /// The path of the config file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(CONFIG_FILE)
    }

    /// Reads and checks `DIR/mgha.toml`.
    pub fn load(dir: &Path) -> anyhow::Result<NodeConfig> {
        let path = NodeConfig::path(dir);
        let meta = std::fs::metadata(&path).with_context(|| {
            format!(
                "{}: cannot read the node configuration (is {} a data directory made by `mgha init`?)",
                path.display(),
                dir.display()
            )
        })?;
        if meta.len() > CONFIG_BYTES_MAX {
            bail!("{}: {} bytes, over the limit of {CONFIG_BYTES_MAX} for a config file", path.display(), meta.len());
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        NodeConfig::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// Parses and checks the text of a config file; errors name the key at fault.
    pub fn parse(text: &str) -> anyhow::Result<NodeConfig> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| describe_toml_error(text, &e))?;
        config.check()?;
        Ok(config)
    }

    /// Checks what the types alone do not.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.name.trim().is_empty() {
            bail!("key 'name': the node name is empty");
        }
        if self.name.len() > mgha_core::limits::NAME_BYTES_MAX || self.name.chars().any(char::is_control) {
            bail!(
                "key 'name': {:?} is not a valid node name (at most {} bytes, no control characters)",
                self.name,
                mgha_core::limits::NAME_BYTES_MAX
            );
        }
        if !self.admin.ip().is_loopback() {
            bail!("key 'admin': {} is not a loopback address; the admin API listens on loopback only", self.admin);
        }
        if self.admin.port() == 0 {
            bail!("key 'admin': port 0 is not a fixed port; the CLI could not find the daemon");
        }
        if self.retain_revisions == Some(0) {
            bail!("key 'retain_revisions': must be at least 1 (omit the key to keep every revision)");
        }
        if let Some(listen) = &self.listen {
            check_host_port("listen", listen)?;
        }
        if let Some(advertise) = &self.advertise {
            check_host_port("advertise", advertise)?;
            if self.listen.is_none() {
                bail!("key 'advertise': set only with 'listen' (a node without 'listen' has no peers)");
            }
        }
        if self.sync_standbys > SYNC_STANDBYS_MAX {
            bail!("key 'sync_standbys': {} is over the limit of {SYNC_STANDBYS_MAX}", self.sync_standbys);
        }
        if self.sync_standbys > 0 && self.listen.is_none() {
            bail!("key 'sync_standbys': a synchronous publish needs standbys, and so the key 'listen'");
        }
        check_ms("sync_timeout_ms", self.sync_timeout_ms, 1)?;
        check_ms("heartbeat_ms", self.heartbeat_ms, HEARTBEAT_MS_MIN)?;
        check_ms("peer_timeout_ms", self.peer_timeout_ms, 1)?;
        check_ms("changeover_timeout_ms", self.changeover_timeout_ms, 1)?;
        // A connection is dropped after `peer_timeout_ms` of silence, and a heartbeat is the only
        // traffic of an idle one: a timeout under two heartbeats drops healthy connections.
        if self.peer_timeout_ms < 2 * self.heartbeat_ms {
            bail!(
                "key 'peer_timeout_ms': {} ms is under two heartbeats ('heartbeat_ms' = {}); idle peers would be \
                 dropped",
                self.peer_timeout_ms,
                self.heartbeat_ms
            );
        }
        self.check_failover()
    }

    /// The failover keys: each mode's own keys are present, and only with it.
    fn check_failover(&self) -> anyhow::Result<()> {
        check_ms("failover_after_ms", self.failover_after_ms, 1)?;
        if self.failover != FailoverMode::Quorum && (self.quorum_listen.is_some() || !self.quorum_members.is_empty()) {
            bail!(
                "keys 'quorum_listen' and 'quorum_members' are for failover = \"quorum\" (failover is \"{}\")",
                self.failover
            );
        }
        if self.failover != FailoverMode::Etcd && (!self.etcd_endpoints.is_empty() || self.etcd_prefix.is_some()) {
            bail!(
                "keys 'etcd_endpoints' and 'etcd_prefix' are for failover = \"etcd\" (failover is \"{}\")",
                self.failover
            );
        }
        if self.failover == FailoverMode::Manual {
            return Ok(());
        }
        if self.listen.is_none() {
            bail!("key 'failover': automatic failover needs peers, and so the key 'listen'");
        }
        self.failover_timing().validate().map_err(|e| anyhow::anyhow!("key 'failover_after_ms': {e}"))?;
        match self.failover {
            FailoverMode::Quorum => {
                let Some(listen) = &self.quorum_listen else {
                    bail!(
                        "key 'quorum_listen': failover = \"quorum\" needs the address this node's arbiter listens on"
                    );
                };
                check_host_port("quorum_listen", listen)?;
                let members = self.quorum_members()?;
                if !members.iter().any(|m| m.name == self.name) {
                    bail!("key 'quorum_members': this node ('{}') is not among the voters", self.name);
                }
                if members.len() < 3 {
                    bail!(
                        "key 'quorum_members': {} voters cannot decide safely; automatic failover needs three: add a \
                         witness (`mgha witness`) or a third node",
                        members.len()
                    );
                }
            }
            FailoverMode::Etcd => {
                if self.etcd_endpoints.is_empty() {
                    bail!("key 'etcd_endpoints': failover = \"etcd\" needs the etcd cluster's client URLs");
                }
            }
            FailoverMode::Manual => {}
        }
        Ok(())
    }

    /// The voters of `quorum_members`.
    pub fn quorum_members(&self) -> anyhow::Result<Vec<QuorumMember>> {
        let mut out: Vec<QuorumMember> = Vec::new();
        for m in &self.quorum_members {
            let Some((name, address)) = m.split_once('=') else {
                bail!("key 'quorum_members': {m:?} is not NAME=HOST:PORT");
            };
            check_host_port("quorum_members", address)?;
            if out.iter().any(|o| o.name == name || o.address == address) {
                bail!("key 'quorum_members': {m:?} repeats a name or an address");
            }
            out.push(QuorumMember { name: name.trim().into(), address: address.trim().into() });
        }
        Ok(out)
    }

    /// The timing of automatic failover.
    pub fn failover_timing(&self) -> FailoverTiming {
        FailoverTiming {
            heartbeat_ms: self.heartbeat_ms,
            failover_after_ms: self.failover_after_ms,
            max_lag_revisions: self.max_lag_revisions,
        }
    }

    /// The engine options this configuration asks for.
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            retain_revisions: self.retain_revisions,
            sync_standbys: self.sync_standbys,
            sync_timeout_ms: self.sync_timeout_ms,
        }
    }

    /// The sync runtime's configuration, or `None` when the node has no `listen` address.
    pub fn sync_config(&self) -> Option<SyncConfig> {
        Some(SyncConfig {
            listen: self.listen.clone()?,
            advertise: self.advertise.clone(),
            heartbeat_ms: self.heartbeat_ms,
            peer_timeout_ms: self.peer_timeout_ms,
            changeover_timeout_ms: self.changeover_timeout_ms,
            ..SyncConfig::default()
        })
    }

    /// The file's text: a pointer to the documentation, then the keys.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let body = toml::to_string(self).context("encoding the node configuration")?;
        Ok(format!("# mgha node configuration. Every key is described in docs/config.md.\n{body}"))
    }

    /// Writes `DIR/mgha.toml`, refusing to replace an existing one.
    pub fn write_new(&self, dir: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        let path = NodeConfig::path(dir);
        let text = self.to_toml()?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .with_context(|| format!("{}: cannot write", path.display()))
    }
}

/// Checks a `HOST:PORT` address: a host, and a fixed port, because peers remember the address
/// and dial it again after a restart.
fn check_host_port(key: &str, value: &str) -> anyhow::Result<()> {
    let Some((host, port)) = value.rsplit_once(':') else {
        bail!("key '{key}': {value:?} is not HOST:PORT");
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("key '{key}': {value:?} is not HOST:PORT (no host)");
    }
    match port.parse::<u16>() {
        Ok(0) => bail!("key '{key}': port 0 is not a fixed port; peers could not find this node again"),
        Ok(_) => Ok(()),
        Err(_) => bail!("key '{key}': {value:?} is not HOST:PORT (bad port {port:?})"),
    }
}

/// Checks a duration in milliseconds against a floor and [`TIMEOUT_MS_MAX`].
fn check_ms(key: &str, value: u64, min: u64) -> anyhow::Result<()> {
    if value < min || value > TIMEOUT_MS_MAX {
        bail!("key '{key}': {value} ms is outside {min}..={TIMEOUT_MS_MAX}");
    }
    Ok(())
}

/// Turns a toml error into one that names the key: toml points at the offending span, and the
/// key is what stands before `=` on that line.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> anyhow::Error {
    let message = e.message().trim();
    if let Some(rest) = message.strip_prefix("missing field ") {
        // toml points a missing key at the whole table, which names no key; say which is missing.
        return anyhow::anyhow!("key {} is required but missing", rest.replace('`', "'"));
    }
    let Some(span) = e.span() else {
        return anyhow::anyhow!("{message}");
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"')).filter(|k| !k.is_empty());
    match key {
        Some(key) => anyhow::anyhow!("key '{key}' (line {line_no}): {message}"),
        None => anyhow::anyhow!("line {line_no}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nlisten = \"127.0.0.1:7430\"\n\
        advertise = \"mgmt1.example:7430\"\nretain_revisions = 100\nsync_standbys = 1\nsync_timeout_ms = 2000\n\
        heartbeat_ms = 200\npeer_timeout_ms = 1000\nchangeover_timeout_ms = 3000\nlog = \"debug\"\n";

    #[test]
    fn parses_every_key() {
        let c = NodeConfig::parse(GOOD).expect("parses");
        assert_eq!(c.name, "n1");
        assert_eq!(c.admin, "127.0.0.1:7420".parse().expect("addr"));
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1:7430"));
        assert_eq!(c.advertise.as_deref(), Some("mgmt1.example:7430"));
        assert_eq!(c.retain_revisions, Some(100));
        assert_eq!((c.sync_standbys, c.sync_timeout_ms, c.heartbeat_ms, c.peer_timeout_ms), (1, 2000, 200, 1000));
        assert_eq!(c.log, LogLevel::Debug);
    }

    #[test]
    fn optional_keys_have_defaults() {
        let c = NodeConfig::parse("name = \"n1\"\nadmin = \"[::1]:7420\"\n").expect("parses");
        assert_eq!(c.retain_revisions, None);
        assert_eq!(c.log, LogLevel::Info);
        assert_eq!((c.listen, c.advertise), (None, None));
        assert_eq!(c.sync_standbys, 0);
        assert_eq!(
            (c.sync_timeout_ms, c.heartbeat_ms, c.peer_timeout_ms),
            (SYNC_TIMEOUT_MS_DEFAULT, HEARTBEAT_MS_DEFAULT, PEER_TIMEOUT_MS_DEFAULT)
        );
    }

    #[test]
    fn keys_map_to_engine_and_sync_options() {
        let c = NodeConfig::parse(GOOD).expect("parses");
        let e = c.engine_options();
        assert_eq!((e.retain_revisions, e.sync_standbys, e.sync_timeout_ms), (Some(100), 1, 2000));
        let s = c.sync_config().expect("listen is set");
        assert_eq!(s.listen, "127.0.0.1:7430");
        assert_eq!(s.advertise.as_deref(), Some("mgmt1.example:7430"));
        assert_eq!((s.heartbeat_ms, s.peer_timeout_ms, s.changeover_timeout_ms), (200, 1000, 3000));
        assert!(NodeConfig::new("n", "127.0.0.1:1".parse().expect("addr")).sync_config().is_none());
    }

    #[test]
    fn unknown_key_is_refused_naming_it() {
        let e = NodeConfig::parse(&format!("{GOOD}colour = \"blue\"\n")).expect_err("unknown key");
        let msg = format!("{e:#}");
        assert!(msg.contains("colour"), "{msg}");
    }

    #[test]
    fn invalid_values_are_refused_naming_the_key() {
        for (text, key) in [
            ("name = \"n1\"\nadmin = 7420\n", "admin"),
            ("name = \"n1\"\nadmin = \"localhost\"\n", "admin"),
            ("name = \"n1\"\nadmin = \"10.1.2.3:7420\"\n", "admin"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nlog = \"verbose\"\n", "log"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nretain_revisions = -1\n", "retain_revisions"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nretain_revisions = 0\n", "retain_revisions"),
            ("name = \"\"\nadmin = \"127.0.0.1:7420\"\n", "name"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nlisten = \"127.0.0.1\"\n", "listen"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nlisten = \"127.0.0.1:0\"\n", "listen"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nlisten = \":7430\"\n", "listen"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nlisten = 7430\n", "listen"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nadvertise = \"h:1\"\n", "advertise"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nsync_standbys = 1\n", "sync_standbys"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nsync_standbys = -1\n", "sync_standbys"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nsync_timeout_ms = 0\n", "sync_timeout_ms"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nheartbeat_ms = 1\n", "heartbeat_ms"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\npeer_timeout_ms = 1500\n", "peer_timeout_ms"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nheartbeat_ms = \"1s\"\n", "heartbeat_ms"),
            ("name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nchangeover_timeout_ms = 0\n", "changeover_timeout_ms"),
        ] {
            let e = NodeConfig::parse(text).expect_err(text);
            let msg = format!("{e:#}");
            assert!(msg.contains(&format!("'{key}'")), "{text:?} gave {msg}");
        }
    }

    #[test]
    fn missing_key_is_named() {
        let e = NodeConfig::parse("name = \"n1\"\n").expect_err("no admin");
        assert!(format!("{e:#}").contains("admin"), "{e:#}");
    }

    #[test]
    fn written_config_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = NodeConfig::new("n1", "127.0.0.1:7421".parse().expect("addr"));
        c.retain_revisions = Some(5);
        c.listen = Some("127.0.0.1:7431".into());
        c.write_new(dir.path()).expect("writes");
        assert_eq!(NodeConfig::load(dir.path()).expect("loads"), c);
        assert!(c.write_new(dir.path()).is_err(), "an existing config is never replaced");
    }
}
