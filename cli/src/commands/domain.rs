//! `mgha domain create|list|delete|move|retain|rebalance`: the cluster's domains. Creating, deleting
//! and moving change the registry in the global domain, so they run on its Active; `list` and
//! `rebalance` run anywhere. Every data command reaches one domain with `--domain NAME`.

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::api::{DomainBody, DomainCreateBody, DomainMoveBody};
use crate::client::Remote;
use crate::output::{self, Table};
use crate::ReadArgs;

#[derive(Args, Debug, Clone)]
pub struct DomainArgs {
    #[command(subcommand)]
    pub command: DomainCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum DomainCommand {
    /// Create a domain: its own revisioned database, with its own Active, on some servers.
    Create(CreateArgs),
    /// List the cluster's domains, the global one first, as this server sees them.
    List(ReadArgs),
    /// Delete a domain (refused while it holds objects, unless --force). Every server keeps its
    /// replica's store in DIR/archive/domains/.
    Delete(DeleteArgs),
    /// Move a domain's replica from one server to another (a full sync of that domain only).
    Move(MoveArgs),
    /// Set how many of its newest revisions a domain keeps (older history is purged).
    Retain(RetainArgs),
    /// Spread the domains' Actives evenly over the healthy servers (planned changeovers).
    Rebalance(ReadArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The domain's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// How many servers hold a replica (default 2, or every server when there are fewer).
    #[arg(long, value_name = "N")]
    pub replicas: Option<usize>,
    /// The servers that hold a replica, by name; the first is where the domain starts Active.
    #[arg(long, value_name = "SERVER,...", value_delimiter = ',')]
    pub on: Option<Vec<String>>,
    /// How many of its newest revisions the domain keeps (default: each server's
    /// retain_revisions).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub retain_revisions: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct RetainArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The domain's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// How many of its newest revisions it keeps from now on.
    #[arg(value_name = "N", value_parser = clap::value_parser!(u64).range(1..), required_unless_present = "servers_setting")]
    pub revisions: Option<u64>,
    /// Follow each server's retain_revisions again.
    #[arg(long = "servers-setting", conflicts_with = "revisions")]
    pub servers_setting: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The domain's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Delete it even though it holds objects (a verified backup of this server's replica is
    /// written to DIR/backups/ first).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone)]
pub struct MoveArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The domain's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The server that holds the replica now.
    #[arg(long, value_name = "SERVER")]
    pub from: String,
    /// The server that gets it.
    #[arg(long, value_name = "SERVER")]
    pub to: String,
}

/// `mgha domain ...`.
pub fn domain(args: &DomainArgs) -> anyhow::Result<()> {
    match &args.command {
        DomainCommand::Create(a) => create(a),
        DomainCommand::List(a) => list(a),
        DomainCommand::Delete(a) => delete(a),
        DomainCommand::Move(a) => move_replica(a),
        DomainCommand::Retain(a) => retain(a),
        DomainCommand::Rebalance(a) => rebalance(a),
    }
}

/// The daemon of the server: domains live in the running node.
fn daemon(read: &ReadArgs) -> anyhow::Result<Remote> {
    crate::client::Backend::daemon(&read.node, "a domain command")
}

fn create(args: &CreateArgs) -> anyhow::Result<()> {
    let body = DomainCreateBody {
        name: args.name.clone(),
        replicas: args.replicas,
        on: args.on.clone(),
        retain_revisions: args.retain_revisions,
    };
    let created: DomainBody = daemon(&args.read)?
        .send("POST", "/v1/domains", None, Some(serde_json::to_vec(&body)?))
        .with_context(|| format!("cannot create domain '{}'", args.name))?;
    if args.read.json {
        return output::json(&created);
    }
    outln!("domain '{}' created on {}", created.name, created.replicas.join(", "));
    Ok(())
}

fn retain(args: &RetainArgs) -> anyhow::Result<()> {
    let body = crate::api::DomainRetentionBody { retain_revisions: args.revisions };
    let path = format!("/v1/domains/{}/retention", crate::client::encode(&args.name));
    let domain: DomainBody = daemon(&args.read)?
        .send("POST", &path, None, Some(serde_json::to_vec(&body)?))
        .with_context(|| format!("cannot set the retention of domain '{}'", args.name))?;
    if args.read.json {
        return output::json(&domain);
    }
    match domain.retain_revisions {
        Some(n) => outln!("domain '{}' keeps its newest {n} revisions", domain.name),
        None => outln!("domain '{}' keeps what each server's retain_revisions says", domain.name),
    }
    Ok(())
}

fn list(args: &ReadArgs) -> anyhow::Result<()> {
    let list: crate::api::DomainList = daemon(args)?.get_json("/v1/domains").context("cannot list the domains")?;
    if args.json {
        return output::json(&list);
    }
    let mut t = Table::new(&["domain", "replicas", "active", "here", "head", "objects"]);
    for d in list.domains {
        // This server's replica: its role, or none here.
        let here = d.role.clone().unwrap_or_else(|| "-".into());
        t.row(vec![
            d.name,
            d.replicas.join(","),
            d.active.unwrap_or_else(|| "?".into()),
            here,
            d.head_seq.map_or_else(|| "-".into(), |s| s.to_string()),
            d.objects.map_or_else(|| "-".into(), |n| n.to_string()),
        ]);
    }
    t.print();
    Ok(())
}

fn delete(args: &DeleteArgs) -> anyhow::Result<()> {
    let path =
        format!("/v1/domains/{}{}", crate::client::encode(&args.name), if args.force { "?force=true" } else { "" });
    let deleted: crate::api::DomainDeletedBody = daemon(&args.read)?
        .send("DELETE", &path, None, None)
        .with_context(|| format!("cannot delete domain '{}'", args.name))?;
    if args.read.json {
        return output::json(&deleted);
    }
    outln!("domain '{}' deleted; each server keeps its replica's store in DIR/archive/domains/", deleted.name);
    if let Some(backup) = deleted.backup {
        outln!("backup of this server's replica: {backup}");
    }
    Ok(())
}

fn move_replica(args: &MoveArgs) -> anyhow::Result<()> {
    let body = DomainMoveBody { from: args.from.clone(), to: args.to.clone() };
    let path = format!("/v1/domains/{}/move", crate::client::encode(&args.name));
    let moved: DomainBody = daemon(&args.read)?
        .send("POST", &path, None, Some(serde_json::to_vec(&body)?))
        .with_context(|| format!("cannot move domain '{}' from '{}' to '{}'", args.name, args.from, args.to))?;
    if args.read.json {
        return output::json(&moved);
    }
    outln!("domain '{}' now on {}; '{}' gets a full sync of it", moved.name, moved.replicas.join(", "), args.to);
    Ok(())
}

fn rebalance(args: &ReadArgs) -> anyhow::Result<()> {
    let done: crate::api::RebalanceBody =
        daemon(args)?.send("POST", "/v1/rebalance", None, None).context("cannot rebalance the domains")?;
    if args.json {
        return output::json(&done);
    }
    if done.moves.is_empty() {
        outln!("the domains' Actives are spread evenly already");
        return Ok(());
    }
    let mut t = Table::new(&["domain", "from", "to", "outcome"]);
    for m in done.moves {
        let outcome = match (m.epoch, m.error) {
            (Some(epoch), _) => format!("done, epoch {}", crate::output::epoch(epoch)),
            (None, Some(e)) => format!("refused: {e}"),
            (None, None) => "-".into(),
        };
        t.row(vec![m.domain, m.from.unwrap_or_else(|| "-".into()), m.to, outcome]);
    }
    t.print();
    Ok(())
}
