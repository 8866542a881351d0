//! The engine configuration that `mgha_engine_init`, `_join`, `_open`, `_open_path` and
//! `mgha_backup_restore` take: a TOML document, parsed strictly (an unknown key or a bad value is
//! an error naming the key). docs/c-api.md lists the keys.
//!
//! This is not the daemon's `DIR/mgha.toml` (docs/config.md): an embedding process has no admin
//! API; it names its data directory and peer address here instead.

use std::path::{Path, PathBuf};

use mgha_core::engine::EngineOptions;
use mgha_core::sync::SyncConfig;
use serde::Deserialize;

use crate::error::{FfiError, FfiResult};

/// Largest configuration text accepted; a config is a handful of lines.
pub const CONFIG_BYTES_MAX: usize = 64 * 1024;

/// A parsed engine configuration.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// The node's data directory.
    pub data_dir: PathBuf,
    /// The node's name: required to create a node, checked against the store when opening one.
    #[serde(default)]
    pub name: Option<String>,
    /// Where the node listens for peers (`HOST:PORT`; port 0 picks a free port).
    #[serde(default)]
    pub listen: Option<String>,
    /// The address other members are told to dial, when it differs from `listen` (a NAT, a
    /// proxy in front of the node, as the Python test harness puts).
    #[serde(default)]
    pub advertise: Option<String>,
    /// A publish returns only after this many standbys applied it.
    #[serde(default)]
    pub sync_standbys: usize,
    /// How long a synchronous publish waits for its standbys.
    #[serde(default = "default_sync_timeout_ms")]
    pub sync_timeout_ms: u64,
    /// Keep at least this many revisions; absent keeps all.
    #[serde(default)]
    pub retain_revisions: Option<u64>,
    /// The Active pings each Standby this often.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A peer connection silent for this long is dead.
    #[serde(default = "default_peer_timeout_ms")]
    pub peer_timeout_ms: u64,
    /// How long a planned changeover may take before it is called off.
    #[serde(default = "default_changeover_timeout_ms")]
    pub changeover_timeout_ms: u64,
}

fn default_sync_timeout_ms() -> u64 {
    10_000
}

fn default_heartbeat_ms() -> u64 {
    SyncConfig::default().heartbeat_ms
}

fn default_peer_timeout_ms() -> u64 {
    SyncConfig::default().peer_timeout_ms
}

fn default_changeover_timeout_ms() -> u64 {
    SyncConfig::default().changeover_timeout_ms
}

impl EngineConfig {
    /// Parses configuration text; a relative `data_dir` is taken relative to `base` when given
    /// (the directory of a config file) and to the working directory otherwise.
    pub fn parse(text: &str, base: Option<&Path>) -> FfiResult<EngineConfig> {
        if text.len() > CONFIG_BYTES_MAX {
            return Err(FfiError::new(
                crate::error::mgha_status::MGHA_TOO_LARGE,
                format!("config is {} bytes, over the limit of {CONFIG_BYTES_MAX}", text.len()),
            ));
        }
        let mut config: EngineConfig = toml::from_str(text).map_err(|e| describe(text, &e))?;
        if let Some(base) = base.filter(|_| config.data_dir.is_relative()) {
            config.data_dir = base.join(&config.data_dir);
        }
        config.check()?;
        Ok(config)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> FfiResult<EngineConfig> {
        let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
        if meta.len() > CONFIG_BYTES_MAX as u64 {
            return Err(FfiError::new(
                crate::error::mgha_status::MGHA_TOO_LARGE,
                format!("{}: {} bytes, over the limit of {CONFIG_BYTES_MAX} for a config", path.display(), meta.len()),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
        EngineConfig::parse(&text, path.parent())
            .map_err(|e| FfiError::new(e.status, format!("{}: {}", path.display(), e.message)))
    }

    /// What the types alone do not check.
    fn check(&self) -> FfiResult<()> {
        let bad = |key: &str, why: &str| Err(FfiError::invalid(format!("config: key '{key}': {why}")));
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "is empty");
        }
        if let Some(name) = &self.name {
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                return bad("name", "must be non-empty, without control characters");
            }
        }
        if self.listen.as_deref().is_some_and(|l| l.trim().is_empty()) {
            return bad("listen", "is empty");
        }
        match self.advertise.as_deref() {
            Some(a) if a.trim().is_empty() => return bad("advertise", "is empty"),
            Some(_) if self.listen.is_none() => return bad("advertise", "needs 'listen'"),
            _ => {}
        }
        if self.retain_revisions == Some(0) {
            return bad("retain_revisions", "must be at least 1 (omit the key to keep every revision)");
        }
        if self.heartbeat_ms < 10 {
            return bad("heartbeat_ms", "must be at least 10");
        }
        if self.peer_timeout_ms <= self.heartbeat_ms {
            return bad("peer_timeout_ms", "must be longer than heartbeat_ms");
        }
        if self.sync_timeout_ms == 0 {
            return bad("sync_timeout_ms", "must be at least 1");
        }
        if self.changeover_timeout_ms == 0 {
            return bad("changeover_timeout_ms", "must be at least 1");
        }
        Ok(())
    }

    /// The node name, which creating a node requires.
    pub fn require_name(&self) -> FfiResult<&str> {
        self.name.as_deref().ok_or_else(|| FfiError::invalid("config: key 'name' is required to create a node"))
    }

    /// The peer listen address, which running a node requires.
    pub fn require_listen(&self) -> FfiResult<&str> {
        self.listen.as_deref().ok_or_else(|| FfiError::invalid("config: key 'listen' is required to run a node"))
    }

    /// The address members dial: `advertise`, else `listen`.
    pub fn member_address<'a>(&'a self, listen: &'a str) -> &'a str {
        self.advertise.as_deref().unwrap_or(listen)
    }

    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            retain_revisions: self.retain_revisions,
            sync_standbys: self.sync_standbys,
            sync_timeout_ms: self.sync_timeout_ms,
        }
    }

    pub fn sync_config(&self, listen: &str) -> SyncConfig {
        SyncConfig {
            listen: listen.into(),
            advertise: self.advertise.clone(),
            heartbeat_ms: self.heartbeat_ms,
            peer_timeout_ms: self.peer_timeout_ms,
            changeover_timeout_ms: self.changeover_timeout_ms,
            ..SyncConfig::default()
        }
    }
}

fn io_error(path: &Path, e: std::io::Error) -> FfiError {
    let status = match e.kind() {
        std::io::ErrorKind::NotFound => crate::error::mgha_status::MGHA_NOT_FOUND,
        _ => crate::error::mgha_status::MGHA_IO,
    };
    FfiError::new(status, format!("{}: {e}", path.display()))
}

/// A TOML error as one line that names the key: toml points at the offending span, and the key
/// is what stands before `=` on that line.
fn describe(text: &str, e: &toml::de::Error) -> FfiError {
    let message = e.message().trim();
    if let Some(rest) = message.strip_prefix("missing field ") {
        return FfiError::invalid(format!("config: key {} is required but missing", rest.replace('`', "'")));
    }
    let Some(span) = e.span() else {
        return FfiError::invalid(format!("config: {message}"));
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    match line.split_once('=').map(|(k, _)| k.trim().trim_matches('"')).filter(|k| !k.is_empty()) {
        Some(key) => FfiError::invalid(format!("config: key '{key}' (line {line_no}): {message}")),
        None => FfiError::invalid(format!("config: line {line_no}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "data_dir = \"/tmp/a\"\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n";

    #[test]
    fn parses_every_key_with_defaults() {
        let c = EngineConfig::parse(GOOD, None).expect("parses");
        assert_eq!(c.name.as_deref(), Some("a"));
        assert_eq!(c.sync_standbys, 0);
        assert_eq!(c.heartbeat_ms, SyncConfig::default().heartbeat_ms);
        let full = format!(
            "{GOOD}sync_standbys = 1\nsync_timeout_ms = 500\nretain_revisions = 9\n\
             heartbeat_ms = 50\npeer_timeout_ms = 400\nadvertise = \"127.0.0.1:9\"\nchangeover_timeout_ms = 700\n"
        );
        let c = EngineConfig::parse(&full, None).expect("parses");
        assert_eq!((c.sync_standbys, c.sync_timeout_ms, c.retain_revisions), (1, 500, Some(9)));
        assert_eq!((c.heartbeat_ms, c.peer_timeout_ms), (50, 400));
        let sync = c.sync_config("127.0.0.1:0");
        assert_eq!((sync.advertise.as_deref(), sync.changeover_timeout_ms), (Some("127.0.0.1:9"), 700));
        assert_eq!(c.member_address("127.0.0.1:0"), "127.0.0.1:9");
    }

    #[test]
    fn unknown_or_bad_keys_are_named() {
        for (text, key) in [
            (format!("{GOOD}colour = \"blue\"\n"), "colour"),
            (format!("{GOOD}sync_standbys = \"two\"\n"), "sync_standbys"),
            (format!("{GOOD}retain_revisions = 0\n"), "retain_revisions"),
            (format!("{GOOD}heartbeat_ms = 100\npeer_timeout_ms = 50\n"), "peer_timeout_ms"),
            ("data_dir = \"/a\"\nadvertise = \"127.0.0.1:9\"\n".to_string(), "advertise"),
            (format!("{GOOD}changeover_timeout_ms = 0\n"), "changeover_timeout_ms"),
            ("name = \"a\"\n".to_string(), "data_dir"),
        ] {
            let e = EngineConfig::parse(&text, None).expect_err(&text);
            assert!(e.message.contains(key), "{text:?} gave {}", e.message);
        }
    }

    #[test]
    fn relative_data_dir_follows_the_config_file() {
        let c = EngineConfig::parse("data_dir = \"node\"\n", Some(Path::new("/etc/mgha"))).expect("parses");
        assert_eq!(c.data_dir, Path::new("/etc/mgha/node"));
        let c = EngineConfig::parse("data_dir = \"/abs\"\n", Some(Path::new("/etc/mgha"))).expect("parses");
        assert_eq!(c.data_dir, Path::new("/abs"));
    }
}
