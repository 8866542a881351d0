//! The node configuration file `DIR/mgha.toml`, written by `init` and `restore`, read by `run`
//! and by every CLI command (to find the daemon). docs/config.md documents each key. Parsing is
//! strict: an unknown key or an invalid value is an error that names the key, because a typo in
//! a config file that is silently ignored is found only in an outage.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mgha_core::engine::EngineOptions;
use serde::{Deserialize, Serialize};

/// File name of the node configuration inside a data directory.
pub const CONFIG_FILE: &str = "mgha.toml";

/// Largest configuration file we read; a config is a handful of lines.
const CONFIG_BYTES_MAX: u64 = 64 * 1024;

/// A node's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name, shown in status and logs.
    pub name: String,
    /// Where the admin HTTP API listens. Loopback only.
    pub admin: SocketAddr,
    /// Keep at most this many revisions; older ones are purged. Absent: keep all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_revisions: Option<u64>,
    /// The daemon's log level.
    #[serde(default)]
    pub log: LogLevel,
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
    /// A configuration with defaults for everything but the name and the admin address.
    pub fn new(name: &str, admin: SocketAddr) -> NodeConfig {
        NodeConfig { name: name.into(), admin, retain_revisions: None, log: LogLevel::default() }
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
        Ok(())
    }

    /// The engine options this configuration asks for.
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions { retain_revisions: self.retain_revisions, ..EngineOptions::default() }
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

    const GOOD: &str = "name = \"n1\"\nadmin = \"127.0.0.1:7420\"\nretain_revisions = 100\nlog = \"debug\"\n";

    #[test]
    fn parses_every_key() {
        let c = NodeConfig::parse(GOOD).expect("parses");
        assert_eq!(c.name, "n1");
        assert_eq!(c.admin, "127.0.0.1:7420".parse().expect("addr"));
        assert_eq!(c.retain_revisions, Some(100));
        assert_eq!(c.log, LogLevel::Debug);
    }

    #[test]
    fn optional_keys_have_defaults() {
        let c = NodeConfig::parse("name = \"n1\"\nadmin = \"[::1]:7420\"\n").expect("parses");
        assert_eq!(c.retain_revisions, None);
        assert_eq!(c.log, LogLevel::Info);
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
        c.write_new(dir.path()).expect("writes");
        assert_eq!(NodeConfig::load(dir.path()).expect("loads"), c);
        assert!(c.write_new(dir.path()).is_err(), "an existing config is never replaced");
    }
}
