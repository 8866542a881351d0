//! The demo's role steps. A planned changeover from the Primary to secondary-1 and back while a
//! background publisher keeps publishing on whichever node is Active; then a forced changeover:
//! the fault proxy in front of the Primary cuts it off, secondary-1 is forced Active, both sides
//! publish while apart, and after the heal the old Active steps down, its collision branch is
//! diffed and merged, and every node converges on one head and state hash.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mgha_core::ChangeSet;

use super::nodes::{mgha_status, wait_synced, Node};
use super::{cluster_table, heading, last_log_line, shell, show, AUTHOR};
use crate::client::{Backend, Remote};
use crate::exit::ApiFailure;
use crate::output;
use mgha_tests::proxy::FaultProxy;

/// How long the demo waits for the old Active to step down and its branch to be kept.
const COLLISION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the publisher runs before, between and after the planned changeovers.
const LOAD_PAUSE: Duration = Duration::from_millis(150);

/// The demo's running cluster.
pub struct Cluster<'a> {
    pub primary: &'a Node,
    pub secondaries: &'a [Node],
    /// In front of the Primary's peer port.
    pub proxy: &'a FaultProxy,
}

impl Cluster<'_> {
    fn all(&self) -> Vec<&Node> {
        std::iter::once(self.primary).chain(self.secondaries).collect()
    }
}

/// A planned changeover from the Primary to secondary-1 and back, under load.
pub fn planned(step: usize, c: &Cluster) -> anyhow::Result<()> {
    heading(step, "Planned changeover under load: the Primary hands over to secondary-1, and back");
    let (p, s1, s2) = (c.primary.d(), &c.secondaries[0], &c.secondaries[1]);
    outln!("a background publisher adds one host at a time on whichever node is active,");
    outln!("retrying on the others when one answers read-only or busy");
    let publisher = Publisher::start(&c.all())?;
    std::thread::sleep(LOAD_PAUSE);
    show(&["changeover", "--data-dir", &p, "--to", &s1.name])?;
    following(&[c.primary, s2], s1)?;
    std::thread::sleep(LOAD_PAUSE);
    outln!("# asked on the Primary, a Standby now: it forwards the request to the Active");
    show(&["changeover", "--data-dir", &p, "--to", &c.primary.name])?;
    following(&[s1, s2], c.primary)?;
    std::thread::sleep(LOAD_PAUSE);
    let load = publisher.stop()?;
    let all = c.all();
    wait_synced(c.primary, &all[1..])?;
    let by_node: Vec<String> = load.by_node.iter().map(|(n, k)| format!("{k} on {n}")).collect();
    let refused: Vec<String> = load.refused.iter().map(|(code, k)| format!("{k} {code}")).collect();
    outln!(
        "the publisher got {} acknowledgements ({}); refusals retried elsewhere: {}",
        load.acked.len(),
        by_node.join(", "),
        if refused.is_empty() { "none".into() } else { refused.join(", ") }
    );
    outln!("longest pause between two acknowledged publishes: {} ms", load.longest_pause.as_millis());
    for node in &all {
        let hosts = host_names(node)?;
        let missing = load.acked.iter().filter(|h| !hosts.contains(*h)).count();
        if missing > 0 {
            bail!("{missing} acknowledged publishes are missing on {}", node.name);
        }
    }
    outln!("every acknowledged publish is on all three nodes:");
    cluster_table(c.primary, c.secondaries)
}

/// A forced changeover while the Primary is cut off, both sides publishing, then the heal, the
/// collision branch and its merge.
pub fn forced(step: usize, c: &Cluster) -> anyhow::Result<()> {
    let (primary, s1, s2) = (c.primary, &c.secondaries[0], &c.secondaries[1]);
    heading(step, "Forced changeover: the Primary is cut off, secondary-1 takes over, both sides publish");
    let dmz = primary.api.publish(AUTHOR, &changeset(DMZ)?)?;
    outln!("{} (a dmz group with one host, on every node)", output::published(&dmz));
    wait_synced(primary, &[s1, s2])?;
    outln!(
        "every peer reaches the Primary through a fault proxy at {} (its 'advertise'); partition it:",
        c.proxy.addr()
    );
    c.proxy.partition();
    wait_for("the Secondaries to lose the Primary", || {
        Ok(s1.status()?.peers.iter().chain(&s2.status()?.peers).all(|p| p.name != primary.name || !p.connected))
    })?;
    let alone = primary.status()?;
    outln!(
        "the Primary does not know it is alone: it is still {} at epoch {}, and takes publishes",
        alone.node.role,
        output::epoch(alone.node.epoch)
    );
    for (file, text) in [("dmz-mail.json", PRIMARY_MAIL), ("vpn.json", PRIMARY_VPN)] {
        shell(&format!("mgha apply --data-dir {} {file}", primary.d()));
        outln!("{}", output::published(&primary.api.publish(AUTHOR, &changeset(text)?)?));
    }
    let forced = ["changeover", "--data-dir", &s1.d(), "--force", "--yes"];
    shell(&format!("mgha {}", forced.join(" ")));
    let (code, stdout, stderr) = mgha_status(&forced)?;
    out!("{stdout}{stderr}");
    if code != Some(0) {
        bail!("the forced changeover failed ({code:?})");
    }
    shell(&format!("mgha apply --data-dir {} dmz-dns.json", s1.d()));
    outln!("{}", output::published(&s1.api.publish(AUTHOR, &changeset(SECONDARY_DNS)?)?));

    heading(step + 1, "Heal: the old Active steps down, its branch is kept, merged, and every node converges");
    outln!("heal the partition");
    c.proxy.heal();
    wait_for("the old Primary to step down and its branch to be kept", || {
        Ok(primary.status()?.node.role == "standby" && s1.status()?.collisions_open > 0)
    })?;
    let was = primary.status()?;
    outln!("the Primary met a higher epoch: it is a {} at epoch {} now", was.node.role, output::epoch(was.node.epoch));
    if let Some(line) = last_log_line(primary.log(), "stepped down", "") {
        outln!("its log: {line}");
    }
    show(&["status", "--data-dir", &s1.d()])?;
    show(&["collision", "show", "--data-dir", &s1.d()])?;
    let branch = s1.api.collisions()?.into_iter().find(|b| b.status == "open").context("an open branch")?;
    if branch.revisions != 2 {
        bail!("the branch holds {} revisions; the Primary published 2 while cut off", branch.revisions);
    }
    let id = branch.id.to_string();
    show(&["collision", "diff", "--data-dir", &s1.d(), &id])?;
    show(&["collision", "resolve", "--data-dir", &s1.d(), &id, "--merge"])?;
    let lead = wait_synced(s1, &[primary, s2])?;
    outln!("every node converged on revision {} (state {}):", lead.head.seq, output::short(&lead.head.state_hash));
    cluster_table(primary, c.secondaries)?;
    check_merged(&[primary, s1, s2])
}

/// Waits until every one of `standbys` follows `active`, and says how long that took.
fn following(standbys: &[&Node], active: &Node) -> anyhow::Result<()> {
    let t0 = Instant::now();
    for node in standbys {
        wait_for(&format!("{} to follow {}", node.name, active.name), || {
            Ok(node.status()?.active.as_deref() == Some(active.name.as_str()))
        })?;
    }
    let names: Vec<&str> = standbys.iter().map(|n| n.name.as_str()).collect();
    outln!("{} follow {} ({} ms later)", names.join(" and "), active.name, t0.elapsed().as_millis());
    Ok(())
}

/// Checks on every node that the merge kept both sides' work: both hosts, and a group whose
/// members are the union of both sides' members.
fn check_merged(nodes: &[&Node]) -> anyhow::Result<()> {
    let expected = ["dmz-dns", "dmz-mail", "dmz-web"];
    for node in nodes {
        let group = node.api.get("group", "dmz")?;
        let members: BTreeSet<String> = group.fields["members"]
            .as_array()
            .context("members is a list")?
            .iter()
            .filter_map(|uid| uid.as_str())
            .map(|uid| node.api.get("host", uid).map(|h| h.name))
            .collect::<anyhow::Result<_>>()?;
        if members.iter().map(String::as_str).ne(expected) {
            bail!("group 'dmz' on {} holds {members:?}, not both sides' hosts", node.name);
        }
        node.api.get("host", "vpn-gw").with_context(|| format!("the branch's vpn-gw is missing on {}", node.name))?;
    }
    outln!("group 'dmz' on every node: {} (set union of both sides), and vpn-gw from the branch", expected.join(", "));
    Ok(())
}

/// The names of every host on a node.
fn host_names(node: &Node) -> anyhow::Result<BTreeSet<String>> {
    let hosts = node.api.list(Some("host"), Some(mgha_core::limits::LIST_OBJECTS_MAX))?;
    Ok(hosts.into_iter().map(|o| o.name).collect())
}

fn changeset(text: &str) -> anyhow::Result<ChangeSet> {
    Ok(ChangeSet::from_json(text.as_bytes())?)
}

/// Polls `done` until it holds, failing after [`COLLISION_TIMEOUT`].
fn wait_for(what: &str, mut done: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + COLLISION_TIMEOUT;
    while !done()? {
        if Instant::now() > deadline {
            bail!("timed out after {COLLISION_TIMEOUT:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

const DMZ: &str = r#"{"message": "dmz", "changes": [
    {"op": "put", "type": "host", "name": "dmz-web", "fields": {"ipv4-address": "10.30.0.1"}},
    {"op": "put", "type": "group", "name": "dmz", "fields": {"members": ["dmz-web"]}}]}"#;

/// Published on the Primary while it is cut off.
const PRIMARY_MAIL: &str = r#"{"message": "dmz mail relay", "changes": [
    {"op": "put", "type": "host", "name": "dmz-mail", "fields": {"ipv4-address": "10.30.0.2"}},
    {"op": "put", "type": "group", "name": "dmz", "fields": {"members": ["dmz-web", "dmz-mail"]}}]}"#;
const PRIMARY_VPN: &str = r#"{"message": "vpn gateway", "changes": [
    {"op": "put", "type": "host", "name": "vpn-gw", "fields": {"ipv4-address": "10.40.0.1"}}]}"#;

/// Published on secondary-1 after it was forced Active.
const SECONDARY_DNS: &str = r#"{"message": "dmz resolver", "changes": [
    {"op": "put", "type": "host", "name": "dmz-dns", "fields": {"ipv4-address": "10.30.0.3"}},
    {"op": "put", "type": "group", "name": "dmz", "fields": {"members": ["dmz-web", "dmz-dns"]}}]}"#;

/// Publishes one host at a time on whichever node is Active, from a thread; stopped when
/// dropped (a failed step), so it never outlives the demo's daemons for long.
struct Publisher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<Load>>>,
}

/// What the publisher did.
#[derive(Default)]
struct Load {
    /// The hosts whose publish was acknowledged.
    acked: Vec<String>,
    /// Acknowledgements per node.
    by_node: BTreeMap<String, usize>,
    /// Refusals per error code (read-only, busy), each retried on another node.
    refused: BTreeMap<String, usize>,
    longest_pause: Duration,
}

impl Publisher {
    fn start(nodes: &[&Node]) -> anyhow::Result<Publisher> {
        let targets = nodes
            .iter()
            .map(|n| {
                Ok((
                    n.name.clone(),
                    Backend::Remote(Remote::new(n.config.require_admin()?, crate::token::read(&n.dir)?)),
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || publish_until(&targets, &stopped));
        Ok(Publisher { stop, thread: Some(thread) })
    }

    fn stop(mut self) -> anyhow::Result<Load> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().context("the publisher was stopped already")?;
        thread.join().map_err(|_| anyhow::anyhow!("the publisher panicked"))?
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn publish_until(targets: &[(String, Backend)], stop: &AtomicBool) -> anyhow::Result<Load> {
    let mut load = Load::default();
    let (mut at, mut last_ack) = (0, Instant::now());
    while !stop.load(Ordering::SeqCst) {
        let name = format!("load-{:04}", load.acked.len());
        let cs = changeset(&format!(
            r#"{{"message": "load", "changes": [{{"op": "put", "type": "host", "name": "{name}",
                "fields": {{"ipv4-address": "10.50.{}.{}"}}}}]}}"#,
            load.acked.len() / 256 % 256,
            load.acked.len() % 256
        ))?;
        let mut done = false;
        for k in 0..targets.len() {
            let (node, api) = &targets[(at + k) % targets.len()];
            match api.publish(AUTHOR, &cs) {
                Ok(_) => {
                    at = (at + k) % targets.len();
                    *load.by_node.entry(node.clone()).or_default() += 1;
                    load.longest_pause = load.longest_pause.max(last_ack.elapsed());
                    last_ack = Instant::now();
                    done = true;
                    break;
                }
                Err(e) => match e.downcast_ref::<ApiFailure>().map(|f| f.code.as_str()) {
                    Some(code @ ("read-only" | "busy")) => *load.refused.entry(code.to_string()).or_default() += 1,
                    _ => return Err(e.context(format!("publishing {name} on {node}"))),
                },
            }
        }
        if done {
            load.acked.push(name);
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(load)
}
