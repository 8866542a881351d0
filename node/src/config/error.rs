//! Why a configuration was refused, and how an error finds the key and line it is about.

use std::path::{Path, PathBuf};

use mgha_core::ErrorCode;

/// Why a configuration was refused. Every front end maps it to its own error shape through
/// [`ConfigError::code`]; the text names the file (when there is one), the key and its line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key is unknown, missing, or holds an invalid value.
    #[error("{}", invalid_text(path.as_deref(), key.as_deref(), *line, message))]
    Invalid { path: Option<PathBuf>, key: Option<String>, line: Option<usize>, message: String },
    /// The text or file is over [`CONFIG_BYTES_MAX`].
    #[error("{}: {size} bytes, over the limit of {max} for a config", path.display())]
    TooLarge { path: PathBuf, size: u64, max: usize },
    /// The path is a FIFO, a device, a directory or a socket: reading it could block or never end.
    #[error("{}: a config is read only from a regular file, and this is {kind}", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn invalid_text(path: Option<&Path>, key: Option<&str>, line: Option<usize>, message: &str) -> String {
    let prefix = match path {
        Some(p) => format!("{}: ", p.display()),
        None => "config: ".into(),
    };
    match (key, line) {
        (Some(k), Some(n)) => format!("{prefix}key '{k}' (line {n}): {message}"),
        (Some(k), None) => format!("{prefix}key '{k}': {message}"),
        (None, Some(n)) => format!("{prefix}line {n}: {message}"),
        (None, None) => format!("{prefix}{message}"),
    }
}

impl ConfigError {
    /// The stable code of this error, as every front end reports it.
    pub fn code(&self) -> ErrorCode {
        match self {
            ConfigError::Invalid { .. } | ConfigError::NotAFile { .. } => ErrorCode::InvalidArgument,
            ConfigError::TooLarge { .. } => ErrorCode::TooLarge,
            ConfigError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => ErrorCode::NotFound,
            ConfigError::Read { .. } => ErrorCode::Io,
        }
    }

    /// The key at fault, when one is.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => key.as_deref(),
            _ => None,
        }
    }

    /// A refusal of `key`'s value, its line found in `text` when there is a text.
    pub(super) fn bad(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { path: None, key: Some(key.into()), line: None, message: message.into() }
    }

    pub(super) fn located(mut self, text: Option<&str>, file: Option<&Path>) -> ConfigError {
        if let ConfigError::Invalid { path, key, line, .. } = &mut self {
            if line.is_none() {
                *line = key.as_deref().zip(text).and_then(|(k, t)| line_of(t, k));
            }
            if path.is_none() {
                *path = file.map(Path::to_path_buf);
            }
        }
        self
    }
}

/// The line (1-based) on which `key` is set in `text`.
pub(super) fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix(key).or_else(|| l.strip_prefix(&format!("\"{key}\"")));
            rest.is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// Turns a toml error into one that names the key: toml points at the offending span, and the
/// key is what stands before `=` on that line.
pub(super) fn describe_toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim();
    if let Some(rest) = message.strip_prefix("missing field ") {
        // toml points a missing key at the whole table, which names no key; say which is missing.
        let key = rest.trim().trim_matches('`').to_string();
        return ConfigError::Invalid {
            path: None,
            key: Some(key),
            line: None,
            message: "is required but missing".into(),
        };
    }
    let Some(span) = e.span() else {
        return ConfigError::Invalid { path: None, key: None, line: None, message: message.into() };
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"')).filter(|k| !k.is_empty());
    ConfigError::Invalid { path: None, key: key.map(str::to_string), line: Some(line_no), message: message.into() }
}
