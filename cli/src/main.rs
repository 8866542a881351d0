//! `mgha`: the daemon, admin CLI and demo of a Management High Availability node (the benchmark
//! is its own program, `mgha-bench`).
//! This file holds the command line (clap derive) and the dispatch only; docs/cli.md describes
//! every command and exit code.

// First: its print macros are used by the modules below.
#[macro_use]
mod output;

mod client;
mod commands;
mod daemon;
mod demo;
mod exit;
mod sample;

// The JSON contract and the configuration are the node library's, the same for every front end.
use mgha_node::{config, contract as api, token};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "mgha", version, about = "Management High Availability engine: daemon, admin CLI and demo")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a cluster: its first node, Primary and Active, with the cluster CA.
    Init(InitArgs),
    /// Print a one-time key with which one more node can join the cluster (on the Primary).
    JoinKey(JoinKeyArgs),
    /// Create a Secondary (Standby) node that joins a cluster through a one-time key.
    Join(JoinArgs),
    /// Run the daemon: admin API and peer synchronization, until SIGTERM or SIGINT.
    Run(NodeArgs),
    /// Show the node's identity, role, head and size, and its peers.
    Status(ReadArgs),
    /// Verify the whole store: every record, the indexes, the state hash, the revision chain.
    Check(ReadArgs),
    /// Publish a JSON changeset as one revision (all or nothing).
    Apply(ApplyArgs),
    /// Show one object, by type and uid or name.
    Get(GetArgs),
    /// List objects, of one type or of all.
    List(ListArgs),
    /// List revisions, newest first.
    Revisions(RevisionsArgs),
    /// Show one revision and its changes.
    Revision(RevisionArgs),
    /// Field-level differences between two revisions.
    Diff(DiffArgs),
    /// Publish a revision that restores the state after revision REV.
    Revert(RevertArgs),
    /// Hand the Active role to another node (planned), or take it on a Standby (forced).
    Changeover(ChangeoverArgs),
    /// Collision branches: what an old Active published while it was cut off.
    Collision(CollisionArgs),
    /// Make this Secondary the Primary, when the Primary is lost for good.
    Promote(ReadArgs),
    /// Cluster members: list them, remove a lost or retired one (on the Active).
    Member(commands::member::MemberArgs),
    /// The cluster's domains: create, list, delete, move a replica, rebalance the Actives.
    Domain(commands::domain::DomainArgs),
    /// Write an online, consistent backup of the node to a file.
    Backup(BackupArgs),
    /// Check a backup file end to end and show what it holds.
    Verify(VerifyArgs),
    /// Build a new node from a backup file.
    Restore(RestoreArgs),
    /// The stores a full sync replaced (a diverged history, a damaged store): list, browse.
    Archive(commands::archive::ArchiveArgs),
    /// WebAssembly plugins: check a module, install, list, remove.
    Plugin(commands::plugin::PluginArgs),
    /// Run an arbiter witness: the third vote of automatic failover for two data nodes.
    Witness(commands::witness::WitnessArgs),
    /// Run a three-node cluster demonstration in a temporary directory.
    Demo(DemoArgs),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    Completions(commands::shell::CompletionsArgs),
    /// Print the manual page mgha(1), or write every page into a directory.
    Man(commands::shell::ManArgs),
}

/// The node's data directory.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// The node's data directory (holds mgha.toml, admin.token and the store).
    #[arg(short = 'd', long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// The node's name.
    #[arg(long)]
    pub name: String,
    /// Loopback address of the admin API (default: a free port on 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Where to listen for peers, HOST:PORT (default: a free port on 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The address peers are told to dial, when it is not --listen (a NAT, a proxy, a DNS name).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Keep at most this many revisions (default: keep all).
    #[arg(long, value_name = "N")]
    pub retain_revisions: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct JoinKeyArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// How long the key stays valid: a number and a unit, s, m, h or d (30s, 10m, 1h, 2d).
    #[arg(long, value_name = "TTL", default_value = "1h", value_parser = commands::join::parse_ttl_ms)]
    pub expires: u64,
}

#[derive(Args, Debug, Clone)]
pub struct JoinArgs {
    /// The new node's data directory; it must be empty or not exist yet.
    #[arg(short = 'd', long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The new node's name, unique in the cluster.
    #[arg(long)]
    pub name: String,
    /// The peer address (HOST:PORT, its 'listen') of the node that issued the key.
    #[arg(long, value_name = "HOST:PORT")]
    pub peer: String,
    /// The one-time join key printed by `mgha join-key`.
    #[arg(long, value_name = "KEY")]
    pub key: String,
    /// Where to listen for peers, HOST:PORT (default: a free port on 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The address peers are told to dial, when it is not --listen (a NAT, a proxy, a DNS name).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Loopback address of the admin API (default: a free port on 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Keep at most this many revisions (default: keep all).
    #[arg(long, value_name = "N")]
    pub retain_revisions: Option<u64>,
}

/// Which node a command talks to: its daemon, found through the data directory or named by
/// `--endpoint`, or with `--offline` the store of a stopped node (docs/cli.md, "Reaching a node").
#[derive(Args, Debug, Clone, Default)]
pub struct TargetArgs {
    /// The node's data directory: the daemon's address (`admin` in mgha.toml) and token are read
    /// there.
    #[arg(short = 'd', long, value_name = "DIR", required_unless_present = "endpoint")]
    pub data_dir: Option<PathBuf>,
    /// The daemon's admin API, as http://HOST:PORT (loopback) or https://HOST:PORT; no data
    /// directory needed.
    #[arg(long, value_name = "URL", env = "MGHA_ENDPOINT", conflicts_with = "offline")]
    pub endpoint: Option<String>,
    /// The CA certificate(s) (PEM) that signed the daemon's HTTPS certificate. Default: the node's
    /// own certificate file with --data-dir, the public web roots with --endpoint.
    #[arg(long, value_name = "FILE", env = "MGHA_CA", conflicts_with = "offline")]
    pub ca: Option<PathBuf>,
    /// A file holding the admin token (default: DIR/admin.token).
    #[arg(long, value_name = "PATH", env = "MGHA_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Work on the store of a stopped node (its data directory) instead of asking its daemon.
    #[arg(long, requires = "data_dir")]
    pub offline: bool,
    /// The domain to work on (default: the cluster's first domain, `global`).
    #[arg(long, value_name = "NAME", env = "MGHA_DOMAIN")]
    pub domain: Option<String>,
}

impl TargetArgs {
    /// The node as the user named it, for messages.
    pub fn describe(&self) -> String {
        match (&self.endpoint, &self.data_dir) {
            (Some(e), _) => e.clone(),
            (None, Some(d)) => d.display().to_string(),
            (None, None) => "the node".into(),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    #[command(flatten)]
    pub node: TargetArgs,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The revision message (replaces the changeset's own).
    #[arg(short, long)]
    pub message: Option<String>,
    /// Who publishes (default: $USER).
    #[arg(long)]
    pub author: Option<String>,
    /// The changeset file, or - for standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Object type, such as host or access-rule.
    #[arg(value_name = "TYPE")]
    pub type_name: String,
    /// The object's uid or name.
    #[arg(value_name = "UID-OR-NAME")]
    pub key: String,
}

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Only objects of this type.
    #[arg(short, long = "type", value_name = "TYPE")]
    pub type_name: Option<String>,
    /// At most this many objects.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}

#[derive(Args, Debug, Clone)]
pub struct RevisionsArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// At most this many revisions.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: usize,
    /// Only revisions older than this one.
    #[arg(long, value_name = "REV")]
    pub before: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct RevisionArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The revision number.
    #[arg(value_name = "REV")]
    pub seq: u64,
    /// Show referenced objects by uid, as stored, instead of by type and name.
    #[arg(long)]
    pub uids: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DiffArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The revision to compare from (0: the empty state).
    #[arg(value_name = "FROM")]
    pub from: u64,
    /// The revision to compare to.
    #[arg(value_name = "TO")]
    pub to: u64,
    /// Show referenced objects by uid, as stored, instead of by type and name.
    #[arg(long)]
    pub uids: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RevertArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The revision whose state to restore.
    #[arg(value_name = "REV")]
    pub to: u64,
    /// Who reverts (default: $USER).
    #[arg(long)]
    pub author: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ChangeoverArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The member that becomes the Active (a planned changeover, asked on any node).
    #[arg(long, value_name = "NAME", required_unless_present = "force", conflicts_with = "force")]
    pub to: Option<String>,
    /// Make this Standby the Active now, without the Active (use it only when that is unreachable).
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation of a forced changeover.
    #[arg(short = 'y', long, requires = "force")]
    pub yes: bool,
}

#[derive(Args, Debug, Clone)]
pub struct CollisionArgs {
    #[command(subcommand)]
    pub command: CollisionCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum CollisionCommand {
    /// List the collision branches kept on this node, open and resolved.
    Show(ReadArgs),
    /// What a branch and the Active each changed since the fork, and a merge's conflicts.
    Diff(CollisionDiffArgs),
    /// Resolve a branch: keep one side's state, or merge both.
    Resolve(CollisionResolveArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CollisionDiffArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The branch id (`mgha collision show`).
    #[arg(value_name = "ID")]
    pub id: u64,
    /// Show referenced objects by uid, as stored, instead of by type and name.
    #[arg(long)]
    pub uids: bool,
}

#[derive(Args, Debug, Clone)]
pub struct CollisionResolveArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The branch id (`mgha collision show`).
    #[arg(value_name = "ID")]
    pub id: u64,
    /// Keep one side whole: `active` (publishes nothing) or `branch` (publishes the branch's state).
    #[arg(long, value_enum, value_name = "SIDE", required_unless_present = "merge", conflicts_with = "merge")]
    pub keep: Option<Side>,
    /// Publish a three-way merge of both sides.
    #[arg(long)]
    pub merge: bool,
    /// With --merge: the side taken in every conflict (a resolution file's default).
    #[arg(long, value_enum, value_name = "SIDE", requires = "merge")]
    pub prefer: Option<Side>,
    /// With --merge: a resolution file choosing per conflict (docs/roles.md).
    #[arg(long, value_name = "FILE", requires = "merge")]
    pub resolutions: Option<PathBuf>,
    /// Who resolves (default: $USER).
    #[arg(long)]
    pub author: Option<String>,
}

/// A side of a collision.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Active,
    Branch,
}

impl From<Side> for api::SideBody {
    fn from(s: Side) -> api::SideBody {
        match s {
            Side::Active => api::SideBody::Active,
            Side::Branch => api::SideBody::Branch,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BackupArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The backup file to write; it must not exist yet.
    #[arg(short, long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// The backup file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// The new node's data directory; it must not hold a node yet.
    #[arg(short = 'd', long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Loopback address of the new node's admin API (default: a free port on 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Keep the demo's data directories instead of removing them.
    #[arg(long)]
    pub keep: bool,
}

fn main() -> ExitCode {
    // Before any store opens: stores load the plugins they hold.
    mgha_plugin_host::install();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version go to stdout and are not errors.
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    // The daemon logs at its configured level; commands log warnings and errors only.
    if !matches!(cli.command, Command::Run(_)) {
        commands::init_logging("warn", config::LogFormat::Text);
    }
    let result = match cli.command {
        Command::Init(a) => commands::init::init(&a),
        Command::JoinKey(a) => commands::join::join_key(&a),
        Command::Join(a) => commands::join::join(&a),
        Command::Run(a) => commands::run::run(&a),
        Command::Status(a) => commands::read::status(&a),
        Command::Check(a) => commands::read::check(&a),
        Command::Apply(a) => commands::write::apply(&a),
        Command::Get(a) => commands::read::get(&a),
        Command::List(a) => commands::read::list(&a),
        Command::Revisions(a) => commands::read::revisions(&a),
        Command::Revision(a) => commands::read::revision(&a),
        Command::Diff(a) => commands::read::diff(&a),
        Command::Revert(a) => commands::write::revert(&a),
        Command::Changeover(a) => commands::roles::changeover(&a),
        Command::Collision(a) => commands::roles::collision(&a),
        Command::Promote(a) => commands::roles::promote(&a),
        Command::Member(a) => commands::member::member(&a),
        Command::Domain(a) => commands::domain::domain(&a),
        Command::Backup(a) => commands::backup::backup(&a),
        Command::Verify(a) => commands::backup::verify(&a),
        Command::Restore(a) => commands::backup::restore(&a),
        Command::Archive(a) => commands::archive::archive(&a),
        Command::Plugin(a) => commands::plugin::plugin(&a),
        Command::Witness(a) => commands::witness::witness(&a),
        Command::Demo(a) => demo::run(&a),
        Command::Completions(a) => commands::shell::completions(&a),
        Command::Man(a) => commands::shell::man(&a),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            // An error may quote stored data (an author, a name): it is shown printable.
            eprintln!("error: {}", output::printable(&format!("{e:#}")));
            ExitCode::from(exit::for_error(&e))
        }
    }
}
