//! `mgha join-key` (on the Primary: a one-time key for one more node) and `mgha join` (on the
//! new node: redeem the key with the Primary and become a Secondary, Standby). A join that fails
//! for any reason (a used or expired key, another cluster, no answer) removes what it made.

use anyhow::Context;
use mgha_sync::cluster::join_secondary;
use mgha_sync::membership::members;

use super::init::{node_addrs, write_node_files, Scaffold};
use crate::client::Backend;
use crate::config::NodeConfig;
use crate::daemon::cluster::JOIN_KEY_TTL_MS_MAX;
use crate::output;
use crate::{JoinArgs, JoinKeyArgs};

/// `mgha join-key [--expires TTL]`: the key alone on stdout, so `KEY=$(mgha join-key ...)`
/// works; how to use it on stderr.
pub fn join_key(args: &JoinKeyArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.read.node)?;
    let key = backend.join_key(args.expires).context("cannot issue a join key")?;
    if args.read.json {
        return output::json(&key);
    }
    outln!("{}", key.key);
    // The peer address is in the node's config; through --endpoint alone it is not known here.
    let config = args.read.node.data_dir.as_deref().map(NodeConfig::load).transpose()?;
    let peer = config.and_then(|c| c.advertise.or(c.listen)).unwrap_or_else(|| "HOST:PORT".into());
    eprintln!(
        "one-time join key, valid for {} (until {} UTC). On the new node:\n  mgha join --data-dir DIR --name NAME \
         --peer {peer} --key <the key>",
        output::duration_ms(key.expires_ms),
        output::time(key.expires_at_ms)
    );
    Ok(())
}

/// `mgha join --data-dir DIR --name NAME --peer HOST:PORT --key KEY`.
pub fn join(args: &JoinArgs) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    let (admin, listen) = node_addrs(args.admin, args.listen.as_deref())?;
    let mut config = NodeConfig::new(&args.name, admin);
    config.listen = Some(listen.clone());
    config.advertise = args.advertise.clone();
    config.retain_revisions = args.retain_revisions;
    config.check().context("the node configuration")?;
    // The members learn this node's address from the join: the one they should dial.
    let advertised = config.advertise.clone().unwrap_or_else(|| listen.clone());
    let scaffold = Scaffold::prepare(dir, true)?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let engine = runtime
        .block_on(join_secondary(dir, &args.name, &args.peer, &args.key, &advertised, config.engine_options()))
        .with_context(|| format!("cannot join the cluster through {}", args.peer))?;
    let node = engine.node()?;
    let cluster = members(&engine.store())?;
    drop(engine);
    write_node_files(dir, &config)?;
    scaffold.keep();

    outln!("node '{}' joined cluster {} in {}", node.name, node.cluster_id, dir.display());
    outln!("  node id      {}", node.node_id);
    outln!("  role         {} {}", node.designation, node.role);
    outln!("  admin API    http://{admin} (token in {})", crate::token::path(dir).display());
    outln!("  peers        {listen} (key 'listen')");
    if let Some(advertise) = &config.advertise {
        outln!("  advertised   {advertise} (key 'advertise': where the peers dial this node)");
    }
    let others: Vec<String> =
        cluster.iter().filter(|m| m.node_id != node.node_id).map(|m| format!("{} ({})", m.name, m.listen)).collect();
    outln!("  members      {}", others.join(", "));
    outln!("start it with: mgha run --data-dir {}", dir.display());
    Ok(())
}

/// Parses a key validity such as `30s`, `10m`, `1h` or `2d` into milliseconds (for clap).
pub fn parse_ttl_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_ms: u64 = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(format!("{text:?} has no unit; write it as 30s, 10m, 1h or 2d")),
        _ => return Err(format!("unknown unit {unit:?} in {text:?}; use s, m, h or d (30s, 10m, 1h, 2d)")),
    };
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a number and a unit (30s, 10m, 1h, 2d)"))?;
    let ms = n.checked_mul(unit_ms).filter(|ms| (1..=JOIN_KEY_TTL_MS_MAX).contains(ms));
    ms.ok_or_else(|| format!("{text:?} is outside 1s..=30d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_take_the_documented_units() {
        assert_eq!(parse_ttl_ms("30s"), Ok(30_000));
        assert_eq!(parse_ttl_ms("10m"), Ok(600_000));
        assert_eq!(parse_ttl_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_ttl_ms("2d"), Ok(172_800_000));
        for bad in ["", "1", "h", "1.5h", "-1h", "0s", "31d", "1w", "99999999999999999999d"] {
            assert!(parse_ttl_ms(bad).is_err(), "{bad:?} is refused");
        }
    }
}
