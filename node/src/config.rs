//! `NodeConfig`: the one configuration of a node, parsed here for every front end. The daemon
//! reads it from `DIR/mgha.toml` (written by `init`, `join` and `restore`), libmgha and Python
//! take the same text (or a path to it). docs/config.md documents each key. Parsing is strict: an
//! unknown key or an invalid value is an error that names the key and its line, because a typo in
//! a config file that is silently ignored is found only in an outage.

use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mgha_core::engine::EngineOptions;
use mgha_core::session::SESSION_IDLE_TIMEOUT_MS_DEFAULT;
use mgha_sync::failover::{FailoverMode, FailoverTiming};
use mgha_sync::SyncConfig;
use serde::{Deserialize, Serialize};

/// File name of the node configuration inside a data directory.
pub const CONFIG_FILE: &str = "mgha.toml";

/// Largest configuration text we read; a config is a handful of lines.
pub const CONFIG_BYTES_MAX: usize = 64 * 1024;

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
/// Default of `scrub_interval_ms`: the background scrub walks the whole store once a day.
pub const SCRUB_INTERVAL_MS_DEFAULT: u64 = 86_400_000;
/// Shortest pause between two scrub passes (0 turns the scrub off).
pub const SCRUB_INTERVAL_MS_MIN: u64 = 1000;
/// Most standbys a synchronous publish may wait for; a cluster larger than this is not a
/// management HA cluster.
pub const SYNC_STANDBYS_MAX: usize = 64;
/// Shortest heartbeat: below this the pings are the traffic.
pub const HEARTBEAT_MS_MIN: u64 = 10;
/// Longest heartbeat or timeout of any kind: a day. Beyond that a value is a typo.
pub const TIMEOUT_MS_MAX: u64 = 86_400_000;

mod check;
mod error;

use error::describe_toml_error;
pub use error::ConfigError;

type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// A node's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's data directory. In `DIR/mgha.toml` it is that directory and may be left out; a
    /// config read from a file elsewhere defaults to the file's directory, and a relative path is
    /// taken relative to the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// The node's name, shown in status and logs: required to create a node, checked against the
    /// store when opening one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the daemon's admin HTTP API listens. The daemon needs it; an embedded engine has no
    /// admin API and ignores it. Beyond loopback only with `admin_tls_cert` and `admin_tls_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<SocketAddr>,
    /// The admin API's TLS certificate (PEM: the server's certificate, then its chain). With it
    /// and `admin_tls_key` the admin API serves HTTPS only. Relative to the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_tls_cert: Option<PathBuf>,
    /// The private key of `admin_tls_cert` (PEM), a file only its owner may read. Relative to the
    /// data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_tls_key: Option<PathBuf>,
    /// A second, unauthenticated listener of the daemon serving only the health probes
    /// (`/health`, `/active`, `/standby`), for load balancers and monitors on other hosts; any
    /// address. The probes answer on `admin` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_listen: Option<SocketAddr>,
    /// Where the node listens for its peers (`HOST:PORT`; port 0 picks a free port). Absent: the
    /// node runs alone.
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
    /// An admin session unused for this long expires and releases its locks.
    #[serde(default = "default_session_idle_timeout_ms")]
    pub session_idle_timeout_ms: u64,
    /// The Active pings each Standby this often.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A peer connection silent for this long is dropped.
    #[serde(default = "default_peer_timeout_ms")]
    pub peer_timeout_ms: u64,
    /// How long a planned changeover may take before it is called off.
    #[serde(default = "default_changeover_timeout_ms")]
    pub changeover_timeout_ms: u64,
    /// The pause between two passes of the background scrub, which verifies every stored record
    /// at a bounded rate; 0 turns it off. The first pass starts with the node.
    #[serde(default = "default_scrub_interval_ms", skip_serializing_if = "is_default_scrub_interval")]
    pub scrub_interval_ms: u64,
    /// The daemon's log level (an embedded engine logs through its host's `tracing` subscriber).
    #[serde(default)]
    pub log: LogLevel,
    /// How the daemon writes its log lines: `text` for people, `json` (one object a line) for
    /// log collectors.
    #[serde(default)]
    pub log_format: LogFormat,
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

fn default_sync_timeout_ms() -> u64 {
    SYNC_TIMEOUT_MS_DEFAULT
}
fn default_session_idle_timeout_ms() -> u64 {
    SESSION_IDLE_TIMEOUT_MS_DEFAULT
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
fn default_scrub_interval_ms() -> u64 {
    SCRUB_INTERVAL_MS_DEFAULT
}
fn is_default_scrub_interval(ms: &u64) -> bool {
    *ms == SCRUB_INTERVAL_MS_DEFAULT
}
fn default_failover_after_ms() -> u64 {
    FailoverTiming::default().failover_after_ms
}
fn default_max_lag_revisions() -> u64 {
    FailoverTiming::default().max_lag_revisions
}

/// Largest admin TLS certificate or key file read: a chain of a few certificates is a few KiB.
pub const ADMIN_TLS_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// The admin API's TLS material as read from its files.
#[derive(Clone)]
pub struct AdminTlsPem {
    /// The certificate chain, PEM: the server's certificate first.
    pub cert: String,
    /// The private key, PEM.
    pub key: String,
    /// Where the certificate was read, for messages.
    pub cert_path: PathBuf,
}

impl fmt::Debug for AdminTlsPem {
    // The key stays out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdminTlsPem({})", self.cert_path.display())
    }
}

/// One voter of the quorum arbiter, from `quorum_members`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumMember {
    pub name: String,
    pub address: String,
}

/// The daemon's log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
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

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: None,
            name: None,
            admin: None,
            admin_tls_cert: None,
            admin_tls_key: None,
            health_listen: None,
            listen: None,
            advertise: None,
            retain_revisions: None,
            sync_standbys: 0,
            sync_timeout_ms: SYNC_TIMEOUT_MS_DEFAULT,
            session_idle_timeout_ms: SESSION_IDLE_TIMEOUT_MS_DEFAULT,
            heartbeat_ms: HEARTBEAT_MS_DEFAULT,
            peer_timeout_ms: PEER_TIMEOUT_MS_DEFAULT,
            changeover_timeout_ms: CHANGEOVER_TIMEOUT_MS_DEFAULT,
            scrub_interval_ms: SCRUB_INTERVAL_MS_DEFAULT,
            log: LogLevel::default(),
            log_format: LogFormat::default(),
            failover: FailoverMode::Manual,
            failover_after_ms: default_failover_after_ms(),
            max_lag_revisions: default_max_lag_revisions(),
            quorum_listen: None,
            quorum_members: Vec::new(),
            etcd_endpoints: Vec::new(),
            etcd_prefix: None,
        }
    }
}

impl NodeConfig {
    /// A daemon's configuration with defaults for everything but the name and the admin address;
    /// without a `listen` address, so a node that runs alone (a restored one, say).
    pub fn new(name: &str, admin: SocketAddr) -> NodeConfig {
        NodeConfig { name: Some(name.into()), admin: Some(admin), ..NodeConfig::default() }
    }

    /// The path of the config file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(CONFIG_FILE)
    }

    /// Reads and checks `DIR/mgha.toml`, the configuration of the node in `dir`.
    pub fn load(dir: &Path) -> Result<NodeConfig> {
        let config = NodeConfig::load_file(&NodeConfig::path(dir))?;
        match &config.data_dir {
            Some(d) if !same_dir(d, dir) => Err(ConfigError::bad(
                "data_dir",
                format!(
                    "names {} but the file sits in the data directory {}; the key is for a config kept elsewhere",
                    d.display(),
                    dir.display()
                ),
            )
            .located(Some(&read_back(&NodeConfig::path(dir))), Some(&NodeConfig::path(dir)))),
            _ => Ok(NodeConfig { data_dir: Some(dir.to_path_buf()), ..config }),
        }
    }

    /// Reads and checks a config file. Only a regular file is read (a FIFO or a device could
    /// block or never end), and at most [`CONFIG_BYTES_MAX`] of it. `data_dir` defaults to the
    /// file's directory; a relative one is relative to it.
    pub fn load_file(path: &Path) -> Result<NodeConfig> {
        let text = read_config_file(path)?;
        let base = path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p });
        let mut config = NodeConfig::parse_text(&text).map_err(|e| e.located(Some(&text), Some(path)))?;
        if let Some(base) = base {
            config.data_dir = Some(match config.data_dir.take() {
                Some(d) if d.is_relative() => base.join(d),
                Some(d) => d,
                None => base.to_path_buf(),
            });
        }
        Ok(config)
    }

    /// Parses and checks configuration text given directly (through the C ABI, say); a relative
    /// `data_dir` is relative to the working directory.
    pub fn parse(text: &str) -> Result<NodeConfig> {
        NodeConfig::parse_text(text).map_err(|e| e.located(Some(text), None))
    }

    fn parse_text(text: &str) -> Result<NodeConfig> {
        if text.len() > CONFIG_BYTES_MAX {
            return Err(ConfigError::TooLarge {
                path: PathBuf::from("config"),
                size: text.len() as u64,
                max: CONFIG_BYTES_MAX,
            });
        }
        let config: NodeConfig = toml::from_str(text).map_err(|e| describe_toml_error(text, &e))?;
        config.check()?;
        Ok(config)
    }

    /// The data directory; a config without one (given as text) cannot name a node.
    pub fn data_dir(&self) -> Result<&Path> {
        self.data_dir.as_deref().ok_or_else(|| ConfigError::bad("data_dir", "is required but missing"))
    }

    /// The node name, which creating a node requires.
    pub fn require_name(&self) -> Result<&str> {
        self.name.as_deref().ok_or_else(|| ConfigError::bad("name", "is required to create a node"))
    }

    /// The admin API's address, which the daemon requires.
    pub fn require_admin(&self) -> Result<SocketAddr> {
        self.admin.ok_or_else(|| ConfigError::bad("admin", "is required to serve the admin API"))
    }

    /// The admin API's TLS files (certificate, key), relative paths taken in the data directory;
    /// `None` when the admin API speaks plain HTTP.
    pub fn admin_tls_files(&self) -> Option<(PathBuf, PathBuf)> {
        let (cert, key) = (self.admin_tls_cert.as_ref()?, self.admin_tls_key.as_ref()?);
        let resolve = |p: &PathBuf| match &self.data_dir {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.clone(),
        };
        Some((resolve(cert), resolve(key)))
    }

    /// Reads the admin API's TLS files: `None` without TLS. The key file is refused when other
    /// users may read it (whoever holds it can pose as this node's admin API), and either file
    /// when it is not a regular file of at most [`ADMIN_TLS_FILE_BYTES_MAX`] bytes.
    pub fn read_admin_tls(&self) -> Result<Option<AdminTlsPem>> {
        use std::os::unix::fs::PermissionsExt;
        let Some((cert_path, key_path)) = self.admin_tls_files() else { return Ok(None) };
        let read = |key: &str, path: &Path, private: bool| -> Result<String> {
            let meta =
                std::fs::metadata(path).map_err(|e| ConfigError::bad(key, format!("{}: {e}", path.display())))?;
            if !meta.is_file() || meta.len() > ADMIN_TLS_FILE_BYTES_MAX {
                return Err(ConfigError::bad(
                    key,
                    format!("{}: not a regular file of at most {ADMIN_TLS_FILE_BYTES_MAX} bytes", path.display()),
                ));
            }
            if private && meta.permissions().mode() & 0o077 != 0 {
                return Err(ConfigError::bad(
                    key,
                    format!("{}: other users may read this private key; chmod 600 it", path.display()),
                ));
            }
            std::fs::read_to_string(path).map_err(|e| ConfigError::bad(key, format!("{}: {e}", path.display())))
        };
        Ok(Some(AdminTlsPem {
            cert: read("admin_tls_cert", &cert_path, false)?,
            key: read("admin_tls_key", &key_path, true)?,
            cert_path,
        }))
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
            session_idle_timeout_ms: self.session_idle_timeout_ms,
            ..EngineOptions::default()
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

    /// The address members dial for a node listening on `listen`: `advertise`, else `listen`.
    pub fn member_address<'a>(&'a self, listen: &'a str) -> &'a str {
        self.advertise.as_deref().unwrap_or(listen)
    }

    /// The file's text: a pointer to the documentation, then the keys. A config written into its
    /// own data directory leaves `data_dir` out.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let mut copy = self.clone();
        copy.data_dir = None;
        let body = toml::to_string(&copy)?;
        Ok(format!("# mgha node configuration. Every key is described in docs/config.md.\n{body}"))
    }

    /// Writes `DIR/mgha.toml` (mode 0600), refusing to replace an existing one.
    pub fn write_new(&self, dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = NodeConfig::path(dir);
        let text = self.to_toml().map_err(std::io::Error::other)?;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    }
}

/// The same directory, whether or not the paths are spelled alike.
fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// The text of a config file already read once, for locating a key in an error.
fn read_back(path: &Path) -> String {
    read_config_file(path).unwrap_or_default()
}

/// Reads a config file: only a regular file, at most [`CONFIG_BYTES_MAX`] bytes. The file is
/// opened without blocking (a FIFO with no writer would block `open` itself) and checked with
/// `fstat` on the open descriptor, so a file swapped after the check is never read.
fn read_config_file(path: &Path) -> Result<String> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let read_err = |source| ConfigError::Read { path: path.to_path_buf(), source };
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    let t = meta.file_type();
    let kind = if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    };
    if let Some(kind) = kind {
        return Err(ConfigError::NotAFile { path: path.to_path_buf(), kind });
    }
    if meta.len() > CONFIG_BYTES_MAX as u64 {
        return Err(ConfigError::TooLarge { path: path.to_path_buf(), size: meta.len(), max: CONFIG_BYTES_MAX });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file that grows while it is read is still cut at the limit.
    file.take(CONFIG_BYTES_MAX as u64 + 1).read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() > CONFIG_BYTES_MAX {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            max: CONFIG_BYTES_MAX,
        });
    }
    String::from_utf8(bytes).map_err(|e| ConfigError::Invalid {
        path: Some(path.to_path_buf()),
        key: None,
        line: None,
        message: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
    })
}

#[cfg(test)]
mod tests;
