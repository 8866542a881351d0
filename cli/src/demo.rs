//! `mgha demo`: a guided single-node tour in a temporary directory. It runs the real daemon as a
//! child process and talks to it over the admin API, exactly as an operator's CLI would: init,
//! run, publish a sample policy, history, diff, revert, backup, verify, restore, stop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::client::{Backend, Remote};
use crate::config::NodeConfig;
use crate::output::{self, Table};
use crate::{commands, sample, DemoArgs};

/// Hosts in the sample policy; about 340 objects in all.
const DEMO_HOSTS: usize = 120;
/// How long the daemon may take to answer after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the daemon may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const AUTHOR: &str = "demo-admin";

/// `mgha demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let base = tempfile::Builder::new().prefix("mgha-demo-").tempdir().context("creating a temporary directory")?;
    let result = tour(base.path());
    if args.keep {
        let kept = base.keep();
        outln!("\nthe demo's directories are kept in {}", kept.display());
    }
    result
}

fn heading(step: usize, title: &str) {
    outln!("\n== {step}. {title} ==");
}

fn shell(line: &str) {
    outln!("$ {line}");
}

fn tour(base: &Path) -> anyhow::Result<()> {
    let dir = base.join("primary");
    let d = dir.display().to_string();

    heading(1, "Initialize a node: Primary, Active, epoch 1");
    shell(&format!("mgha init --data-dir {d} --name demo-primary"));
    let config = NodeConfig::new("demo-primary", commands::init::free_loopback_addr()?);
    let node = commands::init::create_node(&dir, &config)?;
    outln!("node '{}' (id {}) in cluster {}", node.name, node.node_id, node.cluster_id);
    outln!("admin API http://{}, token in {}", config.admin, crate::token::path(&dir).display());

    heading(2, "Start the daemon");
    shell(&format!("mgha run --data-dir {d} &"));
    let log = base.join("daemon.log");
    let mut daemon = Daemon::start(&dir, &log)?;
    let api = daemon.wait_ready(&dir, &config)?;
    outln!("daemon pid {} answers at {} (its log: {})", daemon.pid(), config.admin, log.display());
    out!("{}", output::status(&api.status()?, &api.describe()));

    heading(3, "Publish a sample security policy over the admin API");
    let mut t = Table::new(&["REV", "OBJECTS", "STATE", "MESSAGE"]);
    for cs in sample::policy(DEMO_HOSTS) {
        let started = Instant::now();
        let rev = api.publish(AUTHOR, &cs).with_context(|| format!("publishing '{}'", cs.message))?;
        let ms = started.elapsed().as_millis();
        t.row(vec![
            rev.seq.to_string(),
            rev.changes.to_string(),
            output::short(&rev.state_hash).into(),
            format!("{} ({ms} ms)", rev.message),
        ]);
    }
    t.print();
    let status = api.status()?;
    outln!("{} objects of {} types", status.objects, mgha_core::model::BUILTIN_TYPES.len());
    shell(&format!("mgha list --data-dir {d} --type service-group"));
    out!("{}", output::objects(&api.list(Some("service-group"), None)?));

    heading(4, "Change the web tier, then diff it field by field");
    shell(&format!("mgha apply --data-dir {d} web-tier.json"));
    let before = api.status()?.head;
    let edited = api.publish(AUTHOR, &sample::edit(DEMO_HOSTS))?;
    outln!("{}", output::published(&edited));
    shell(&format!("mgha diff --data-dir {d} {} {}", before.seq, edited.seq));
    out!("{}", output::diff(&api.diff(before.seq, edited.seq)?));

    heading(5, "Revert to the state before the change");
    shell(&format!("mgha revert --data-dir {d} {}", before.seq));
    let reverted = api.revert(AUTHOR, before.seq)?;
    outln!("{} (the state of revision {})", output::published(&reverted), before.seq);
    let same = reverted.state_hash == before.state_hash;
    outln!(
        "state hash after revision {}: {}\nstate hash after revision {}: {}  {}",
        before.seq,
        output::short(&before.state_hash),
        reverted.seq,
        output::short(&reverted.state_hash),
        if same { "(identical: the revert restored every object)" } else { "(DIFFERENT)" }
    );
    if !same {
        bail!("the revert to revision {} did not restore its state", before.seq);
    }
    shell(&format!("mgha revisions --data-dir {d}"));
    out!("{}", output::revisions(&api.revisions(None, 10)?));

    heading(6, "Online backup, verify, restore into a new node");
    let file = base.join("demo.backup");
    shell(&format!("mgha backup --data-dir {d} --out {}", file.display()));
    let summary = commands::backup::write_verified(&api, &file)?;
    outln!("{} bytes written while the daemon kept serving", summary.bytes);
    shell(&format!("mgha verify {}", file.display()));
    out!("{}", commands::backup::summary_table(&commands::backup::verify_file(&file)?));
    let restored_dir = base.join("restored");
    shell(&format!("mgha restore --in {} --data-dir {}", file.display(), restored_dir.display()));
    let restored = commands::backup::restore_node(&file, &restored_dir, None)?;
    let original = api.status()?;
    let mut t = Table::new(&["NODE", "DATA DIR", "REVISION", "STATE HASH", "OBJECTS"]);
    for (label, path, s) in [("original", &dir, &original), ("restored", &restored_dir, &restored.status)] {
        t.row(vec![
            label.into(),
            path.display().to_string(),
            s.head.seq.to_string(),
            s.head.state_hash.clone(),
            s.objects.to_string(),
        ]);
    }
    t.print();
    if restored.status.head != original.head {
        bail!("the restored node is at revision {}, the original at {}", restored.status.head.seq, original.head.seq);
    }
    outln!("the restored node has the same revision and state hash");

    heading(7, "Stop the daemon");
    shell(&format!("kill -TERM {}", daemon.pid()));
    drop(api);
    let status = daemon.stop()?;
    outln!("daemon exited: {status}");
    if !status.success() {
        bail!("the daemon did not stop cleanly: {status}; see {}", log.display());
    }
    outln!("\ndemo complete");
    Ok(())
}

/// The daemon child process; killed on drop if still running, so a failed demo leaves nothing.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, log: &Path) -> anyhow::Result<Daemon> {
        let exe = std::env::current_exe().context("finding the mgha executable")?;
        let log_file = std::fs::File::create(log).with_context(|| format!("{}: cannot create", log.display()))?;
        let child = Command::new(exe)
            .arg("run")
            .arg("--data-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context("starting the daemon")?;
        Ok(Daemon { child, log: log.to_path_buf() })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the daemon answers on its admin API. Talks to it only over HTTP: opening
    /// the store directly while it starts would take the store's lock from under it.
    fn wait_ready(&mut self, dir: &Path, config: &NodeConfig) -> anyhow::Result<Backend> {
        let token = crate::token::read(dir)?;
        let remote = Backend::Remote(Remote::new(config.admin, token));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("watching the daemon")? {
                bail!("the daemon exited with {status} while starting:\n{}", self.log_tail());
            }
            match remote.status() {
                Ok(_) => return Ok(remote),
                Err(e) if Instant::now() > deadline => {
                    bail!("the daemon did not answer within {START_TIMEOUT:?}: {e:#}\n{}", self.log_tail())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        signal_term(self.child.id())?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for the daemon")? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("the daemon did not stop within {STOP_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends SIGTERM to a process.
pub fn signal_term(pid: u32) -> anyhow::Result<()> {
    let pid = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw).context("invalid process id")?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).context("sending SIGTERM")
}
