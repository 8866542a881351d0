//! `mgha demo`: a guided tour of a three-node cluster on loopback, in a temporary directory. Every
//! node is made and run by real `mgha` child processes (init, join-key, join, run), and the tour
//! talks to them over their admin APIs, exactly as an operator's CLI would: replication of a
//! sample policy, a Standby refusing a publish, a Secondary that misses revisions and catches
//! up, then history, diff, revert, a backup taken from a Standby, verified and restored, and the
//! roles: planned changeover under load, and a forced one that leaves a collision branch, merged.

mod nodes;
mod roles;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use self::nodes::{mgha, mgha_status, wait_synced, Node};
use crate::api::StatusBody;
use crate::output::{self, Table};
use crate::{commands, sample, DemoArgs};
use mgha_tests::proxy::FaultProxy;

/// Hosts in the sample policy; about 340 objects in all.
const DEMO_HOSTS: usize = 120;
/// The Secondaries' names.
const SECONDARIES: [&str; 2] = ["secondary-1", "secondary-2"];
const AUTHOR: &str = "demo-admin";
/// How long the demo watches a restarted Secondary catch up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// `mgha demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let base = tempfile::Builder::new().prefix("mgha-demo-").tempdir().context("creating a temporary directory")?;
    let result = tour(base.path());
    if args.keep {
        let kept = base.keep();
        outln!("\nthe demo's directories and daemon logs are kept in {}", kept.display());
    }
    result?;
    outln!("\ndemo complete in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn heading(step: usize, title: &str) {
    outln!("\n== {step}. {title} ==");
}

fn shell(line: &str) {
    outln!("$ {line}");
}

/// Runs an `mgha` command as the operator would, showing the command line and its output.
fn show(args: &[&str]) -> anyhow::Result<String> {
    shell(&format!("mgha {}", args.join(" ")));
    let out = mgha(args)?;
    out!("{out}");
    Ok(out)
}

fn tour(base: &Path) -> anyhow::Result<()> {
    let primary_dir = base.join("primary");
    let p = primary_dir.display().to_string();

    heading(1, "Create the cluster: its Primary holds the cluster CA");
    // The peers reach the Primary through a fault proxy (and it them, by return routes), so
    // that step 10 can cut it off.
    let listen = commands::init::free_loopback_addr()?;
    let proxy = FaultProxy::start(listen).context("starting the fault proxy")?;
    let (listen, advertise) = (listen.to_string(), proxy.addr().to_string());
    outln!("# the peers will reach the Primary through a fault proxy at {advertise} (used in step 10)");
    show(&["init", "--data-dir", &p, "--name", "primary", "--listen", &listen, "--advertise", &advertise])?;
    let mut primary = Node::load(&primary_dir)?;
    shell(&format!("mgha run --data-dir {p} &"));
    primary.start()?;
    outln!("daemon pid {} (log {})", primary.pid(), primary.log().display());

    heading(2, "Join two Secondaries with one-time keys, and start them");
    let mut secondaries = Vec::new();
    let mut key = String::new();
    for name in SECONDARIES {
        let dir = base.join(name);
        let d = dir.display().to_string();
        shell(&format!("KEY=$(mgha join-key --data-dir {p} --expires 10m)"));
        key = mgha(&["join-key", "--data-dir", &p, "--expires", "10m"])?.trim().to_string();
        outln!("# {}… (valid once, for 10 minutes)", key.get(..16).unwrap_or(&key));
        // Two servers share one link, which either may dial: the Primary reaches this one
        // through a return route of the same proxy, so that step 10 cuts it off both ways.
        let own = commands::init::free_loopback_addr()?;
        let route = proxy.add_return_route(own).context("a return route of the fault proxy")?;
        let (own, route) = (own.to_string(), route.to_string());
        shell(&format!(
            "mgha join --data-dir {d} --name {name} --peer {} --key $KEY --listen {own} --advertise {route}",
            primary.listen()
        ));
        out!(
            "{}",
            mgha(&[
                "join",
                "--data-dir",
                &d,
                "--name",
                name,
                "--peer",
                primary.listen(),
                "--key",
                &key,
                "--listen",
                &own,
                "--advertise",
                &route
            ])?
        );
        let mut node = Node::load(&dir)?;
        shell(&format!("mgha run --data-dir {d} &"));
        node.start()?;
        outln!("daemon pid {} (log {})", node.pid(), node.log().display());
        secondaries.push(node);
    }
    outln!("\nthe key secondary-2 joined with is spent:");
    let again = base.join("secondary-3").display().to_string();
    shell(&format!("mgha join --data-dir {again} --name secondary-3 --peer {} --key $KEY", primary.listen()));
    let (code, _, err) = mgha_status(&[
        "join",
        "--data-dir",
        &again,
        "--name",
        "secondary-3",
        "--peer",
        primary.listen(),
        "--key",
        &key,
    ])?;
    out!("{err}");
    outln!("(exit code {}: peer; nothing is left in {again})", code.unwrap_or(-1));
    if code == Some(0) || Path::new(&again).exists() {
        bail!("a join key worked twice, or a failed join left files behind");
    }

    heading(3, "Publish a sample security policy on the Primary; the Standbys follow");
    let t0 = Instant::now();
    let mut t = Table::new(&["REV", "OBJECTS", "STATE", "MESSAGE"]);
    for cs in sample::policy(DEMO_HOSTS) {
        let rev = primary.api.publish(AUTHOR, &cs).with_context(|| format!("publishing '{}'", cs.message))?;
        t.row(vec![rev.seq.to_string(), rev.changes.to_string(), output::short(&rev.state_hash).into(), rev.message]);
    }
    t.print();
    let followers: Vec<&Node> = secondaries.iter().collect();
    wait_synced(&primary, &followers)?;
    outln!("published and replicated to both Secondaries in {} ms", t0.elapsed().as_millis());
    cluster_table(&primary, &secondaries)?;
    shell(&format!("mgha status --data-dir {p}"));
    out!("{}", output::status(&primary.status()?, &primary.api.describe()));

    heading(4, "A Standby refuses to publish, and names the Active");
    let change = base.join("on-standby.json");
    std::fs::write(&change, STANDBY_CHANGE).with_context(|| format!("{}: cannot write", change.display()))?;
    let s1 = secondaries[0].d();
    shell(&format!("mgha apply --data-dir {s1} {}", change.display()));
    let (code, _, err) = mgha_status(&["apply", "--data-dir", &s1, &change.display().to_string()])?;
    out!("{err}");
    outln!("(exit code {}: read-only)", code.unwrap_or(-1));
    if code != Some(7) || !err.contains("'primary'") {
        bail!("the standby did not refuse the publish naming the active: {err}");
    }

    heading(5, "Stop secondary-2, change the web tier on the Primary, diff it");
    let mut s2 = secondaries.pop().context("two secondaries")?;
    shell(&format!("kill -TERM {}", s2.pid()));
    let stopped = s2.stop()?;
    outln!("secondary-2 exited: {stopped}");
    let before = primary.status()?.head;
    shell(&format!("mgha apply --data-dir {p} web-tier.json"));
    let edited = primary.api.publish(AUTHOR, &sample::edit(DEMO_HOSTS))?;
    outln!("{}", output::published(&edited));
    shell(&format!("mgha apply --data-dir {p} banner.json"));
    let banner = primary.api.publish(AUTHOR, &mgha_core::ChangeSet::from_json(BANNER_CHANGE.as_bytes())?)?;
    outln!("{}", output::published(&banner));
    shell(&format!("mgha diff --data-dir {p} {} {}", before.seq, banner.seq));
    out!("{}", output::diff(&primary.api.diff(before.seq, banner.seq)?, false));
    wait_synced(&primary, &[&secondaries[0]])?;
    shell(&format!("mgha status --data-dir {p}   # its peers"));
    out!("{}", output::peers(&primary.status()?.peers, mgha_core::now_ms()));

    heading(6, "Restart secondary-2: it catches up by revisions");
    shell(&format!("mgha run --data-dir {} &", s2.d()));
    let (seen, head, ms) = catch_up(&primary, &mut s2)?;
    outln!("the Primary saw secondary-2: {}", seen.join(" → "));
    outln!("secondary-2 reached revision {head} {ms} ms after it was started");
    if let Some(line) = last_log_line(primary.log(), "standby connected", "secondary-2") {
        outln!("the Primary's log: {line}");
    }
    shell(&format!("mgha revisions --data-dir {} -n 3", s2.d()));
    out!("{}", output::revisions(&s2.api.revisions(None, 3)?));
    secondaries.push(s2);

    heading(7, "Revert to the state before the change; the Standbys follow");
    shell(&format!("mgha revert --data-dir {p} {}", before.seq));
    let reverted = primary.api.revert(AUTHOR, before.seq)?;
    outln!("{} (the state of revision {})", output::published(&reverted), before.seq);
    let followers: Vec<&Node> = secondaries.iter().collect();
    let lead = wait_synced(&primary, &followers)?;
    if lead.head.state_hash != before.state_hash {
        bail!("the revert to revision {} did not restore its state", before.seq);
    }
    outln!("state hash {} on every node: the state of revision {}", output::short(&before.state_hash), before.seq);
    shell(&format!("mgha revisions --data-dir {p}"));
    out!("{}", output::revisions(&primary.api.revisions(None, 10)?));

    heading(8, "Online backup of a Standby, verify, restore into a new node");
    let file = base.join("demo.backup");
    shell(&format!("mgha backup --data-dir {s1} --out {}", file.display()));
    let summary = commands::backup::write_verified(&secondaries[0].api, &file)?;
    outln!("{} bytes written while the daemon kept serving", summary.bytes);
    shell(&format!("mgha verify {}", file.display()));
    out!("{}", commands::backup::summary_table(&commands::backup::verify_file(&file)?));
    let restored_dir = base.join("restored");
    shell(&format!("mgha restore --in {} --data-dir {}", file.display(), restored_dir.display()));
    let restored = commands::backup::restore_node(&file, &restored_dir, None)?;
    let original = primary.status()?;
    let mut t = Table::new(&["NODE", "REVISION", "STATE HASH", "OBJECTS"]);
    for (label, s) in [("primary", &original), ("restored", &restored.status)] {
        t.row(vec![label.into(), s.head.seq.to_string(), s.head.state_hash.clone(), s.objects.to_string()]);
    }
    t.print();
    if restored.status.head != original.head {
        bail!("the restored node is at revision {}, the primary at {}", restored.status.head.seq, original.head.seq);
    }
    outln!("the restored node has the Primary's revision and state hash");

    let cluster = roles::Cluster { primary: &primary, secondaries: &secondaries, proxy: &proxy };
    roles::planned(9, &cluster)?;
    roles::forced(10, &cluster)?;

    heading(12, "Stop the cluster");
    for node in secondaries.iter_mut().chain(std::iter::once(&mut primary)) {
        shell(&format!("kill -TERM {}", node.pid()));
        let status = node.stop()?;
        outln!("{} exited: {status}", node.name);
        if !status.success() {
            bail!("{} did not stop cleanly: {status}; see {}", node.name, node.log().display());
        }
    }
    Ok(())
}

/// A change that a Standby must refuse.
const STANDBY_CHANGE: &str = r#"{"message": "on a standby", "changes": [
    {"op": "put", "type": "host", "name": "rogue", "fields": {"ipv4-address": "10.9.9.9"}}]}"#;

/// A second revision published while secondary-2 is down.
const BANNER_CHANGE: &str = r#"{"message": "login banner", "changes": [
    {"op": "put", "type": "system-setting", "name": "login-banner", "fields": {"value": "Authorized use only. Activity is monitored."}}]}"#;

/// One line per node: role, head and state, to show that they agree.
fn cluster_table(primary: &Node, secondaries: &[Node]) -> anyhow::Result<()> {
    let mut t = Table::new(&["NODE", "ROLE", "EPOCH", "REVISION", "STATE", "OBJECTS"]);
    for node in std::iter::once(primary).chain(secondaries) {
        let s = node.status()?;
        t.row(vec![
            node.name.clone(),
            format!("{} {}", s.node.designation, s.node.role),
            output::epoch(s.node.epoch),
            s.head.seq.to_string(),
            output::short(&s.head.state_hash).into(),
            s.objects.to_string(),
        ]);
    }
    t.print();
    Ok(())
}

/// Restarts `node` and watches the Primary's view of it until it is synchronized at the
/// Primary's head: the statuses seen in order, the head reached and how long it took.
fn catch_up(primary: &Node, node: &mut Node) -> anyhow::Result<(Vec<String>, u64, u128)> {
    let name = node.name.clone();
    let peer_status = |s: &StatusBody| -> anyhow::Result<(String, u64)> {
        let p = s.peers.iter().find(|p| p.name == name).with_context(|| format!("the Primary does not list {name}"))?;
        Ok((output::sync_status(&p.status), p.lag_revisions))
    };
    let mut seen: Vec<(String, u64)> = vec![peer_status(&primary.status()?)?];
    let t0 = Instant::now();
    node.start()?;
    loop {
        let s = primary.status()?;
        let (status, lag) = peer_status(&s)?;
        if seen.last().is_some_and(|(last, _)| *last != status) {
            seen.push((status.clone(), lag));
        }
        if status == "synchronized" && node.status()?.head == s.head {
            let labels = seen
                .iter()
                .map(|(st, lag)| if *lag > 0 { format!("{st}, {lag} revisions behind") } else { st.clone() })
                .collect();
            return Ok((labels, s.head.seq, t0.elapsed().as_millis()));
        }
        if t0.elapsed() > CATCH_UP_TIMEOUT {
            bail!("{name} did not catch up within {CATCH_UP_TIMEOUT:?}:\n{}", node.log_tail());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The newest line of a daemon log holding both `what` and `about`, from `what` on.
fn last_log_line(log: &Path, what: &str, about: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rev().find(|l| l.contains(what) && l.contains(about))?;
    line.find(what).map(|i| line[i..].to_string())
}

/// Sends SIGTERM to a process.
pub fn signal_term(pid: u32) -> anyhow::Result<()> {
    let pid = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw).context("invalid process id")?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).context("sending SIGTERM")
}
