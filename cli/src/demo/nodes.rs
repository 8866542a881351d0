//! The demo's nodes: each is a data directory driven by real `mgha` child processes (`init`,
//! `join-key`, `join`, `run`), exactly as an operator would type them, and read over its admin
//! API. A running daemon is killed when its [`Node`] is dropped, so a failed demo leaves no
//! process behind.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::api::StatusBody;
use crate::client::{Backend, Remote};
use crate::config::NodeConfig;

/// How long a daemon may take to answer after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a daemon may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long replication may take to bring every node to the same head.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two polls of a daemon.
const POLL: Duration = Duration::from_millis(10);

/// Runs `mgha ARGS` to completion; its standard output, or an error with its standard error.
pub fn mgha<S: AsRef<OsStr>>(args: &[S]) -> anyhow::Result<String> {
    let (code, stdout, stderr) = mgha_status(args)?;
    if code != Some(0) {
        let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
        bail!("`mgha {}` failed ({code:?}):\n{stderr}", shown.join(" "));
    }
    Ok(stdout)
}

/// Runs `mgha ARGS` to completion: exit code, standard output and standard error.
pub fn mgha_status<S: AsRef<OsStr>>(args: &[S]) -> anyhow::Result<(Option<i32>, String, String)> {
    let out = Command::new(exe()?).args(args).stdin(Stdio::null()).output().context("running mgha")?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok((out.status.code(), text(&out.stdout), text(&out.stderr)))
}

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding the mgha executable")
}

/// A node of the demo, made by `init` or `join`, and its daemon when it runs.
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub config: NodeConfig,
    pub api: Backend,
    log: PathBuf,
    daemon: Option<Child>,
}

impl Node {
    /// The node that `init` or `join` made in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Node> {
        let config = NodeConfig::load(dir)?;
        let token = crate::token::read(dir)?;
        // Only ever over HTTP: opening the store here would take its lock from the daemon.
        let api = Backend::Remote(Remote::new(config.require_admin()?, token));
        let log = dir.with_extension("log");
        Ok(Node { name: config.require_name()?.to_string(), dir: dir.to_path_buf(), config, api, log, daemon: None })
    }

    pub fn d(&self) -> String {
        self.dir.display().to_string()
    }

    /// The peer address other nodes dial.
    pub fn listen(&self) -> &str {
        self.config.advertise.as_deref().or(self.config.listen.as_deref()).unwrap_or("")
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.daemon.as_ref().map_or(0, Child::id)
    }

    /// Starts `mgha run` and waits until it answers on its admin API.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("{}: cannot open", self.log.display()))?;
        let child = Command::new(exe()?)
            .arg("run")
            .arg("--data-dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting the daemon of {}", self.name))?;
        self.daemon = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.daemon.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("the daemon of {} exited with {status} while starting:\n{}", self.name, self.log_tail());
            }
            match self.api.status() {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    bail!("{} did not answer within {START_TIMEOUT:?}: {e:#}\n{}", self.name, self.log_tail())
                }
                Err(_) => std::thread::sleep(POLL),
            }
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.daemon.take() else {
            bail!("{} is not running", self.name);
        };
        super::signal_term(child.id())?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().context("waiting for the daemon")? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not stop within {STOP_TIMEOUT:?} of SIGTERM", self.name);
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn status(&self) -> anyhow::Result<StatusBody> {
        self.api.status().with_context(|| format!("status of {}", self.name))
    }

    /// The last lines of the daemon's log, for an error message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until every node in `followers` reports the head of `leader` (same revision, id and
/// state hash); returns that status of the leader.
pub fn wait_synced(leader: &Node, followers: &[&Node]) -> anyhow::Result<StatusBody> {
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        let lead = leader.status()?;
        let mut behind = Vec::new();
        for f in followers {
            let s = f.status()?;
            if s.head != lead.head {
                behind.push(format!("{} at revision {}", f.name, s.head.seq));
            }
        }
        if behind.is_empty() {
            return Ok(lead);
        }
        if Instant::now() > deadline {
            bail!(
                "after {SYNC_TIMEOUT:?} {} still differ from {} at revision {}",
                behind.join(", "),
                leader.name,
                lead.head.seq
            );
        }
        std::thread::sleep(POLL);
    }
}
