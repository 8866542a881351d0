//! `mgha member list|remove`: the cluster's members as this node knows them, and the removal of
//! a lost or retired member on the Active, after which its name is free for a node that joins
//! with a new key.

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::client::Backend;
use crate::output::{self, Table};
use crate::ReadArgs;

#[derive(Args, Debug, Clone)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub command: MemberCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum MemberCommand {
    /// List the current members this node knows, itself included.
    List(ReadArgs),
    /// Remove a member, on the Active: its certificate is refused by every node from then on,
    /// and its name is free for a node that joins with a new key.
    Remove(RemoveArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The member's name (`mgha member list`).
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `mgha member ...`.
pub fn member(args: &MemberArgs) -> anyhow::Result<()> {
    match &args.command {
        MemberCommand::List(a) => list(a),
        MemberCommand::Remove(a) => remove(a),
    }
}

fn list(args: &ReadArgs) -> anyhow::Result<()> {
    let list = Backend::connect(&args.node)?.members().context("cannot list the members")?;
    if args.json {
        return output::json(&list);
    }
    let mut t = Table::new(&["name", "designation", "address", "node id"]);
    for m in list.members {
        t.row(vec![m.name, m.designation, m.listen, m.node_id]);
    }
    t.print();
    Ok(())
}

fn remove(args: &RemoveArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.read.node)?;
    let removed = backend.remove_member(&args.name).with_context(|| format!("cannot remove member '{}'", args.name))?;
    if args.read.json {
        return output::json(&removed);
    }
    outln!("member '{}' (node {}) removed; its certificate is refused from now on", removed.name, removed.node_id);
    outln!(
        "to bring it back: `mgha join-key` on the primary, then `mgha join --name {}` on an empty data directory",
        removed.name
    );
    Ok(())
}
