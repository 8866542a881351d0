//! `mgha witness`: the third vote of the quorum arbiter for a cluster of two data nodes. A
//! witness holds no configuration: it votes in the arbiter's Raft group and keeps its log, so
//! either data node with the witness is a majority. On its first start it enrolls with a
//! one-time join key (a certificate of the cluster CA, no membership); then it runs until
//! SIGTERM or SIGINT.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use mgha_failover::quorum::{parse_members, run_witness, QuorumConfig};
use mgha_sync::cluster::enroll_witness;
use mgha_sync::failover::FailoverTiming;
use mgha_sync::pki::TlsFiles;

/// Where the witness keeps the arbiter's Raft state, inside its data directory (as a data node
/// does).
const QUORUM_DIR: &str = "quorum";

#[derive(Args, Debug, Clone)]
pub struct WitnessArgs {
    /// The witness's data directory: its certificate (tls/) and the arbiter's Raft state (quorum/).
    #[arg(short = 'd', long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The witness's name among the arbiter's voters.
    #[arg(long, default_value = "witness")]
    pub name: String,
    /// Where the witness listens for the other voters, HOST:PORT (its entry in --members).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Every voter of the arbiter, this witness included, as on the nodes (key 'quorum_members').
    #[arg(long, value_name = "NAME=HOST:PORT,...")]
    pub members: String,
    /// First start only: the peer address (HOST:PORT) of the node that issued --key.
    #[arg(long, value_name = "HOST:PORT", requires = "key")]
    pub join: Option<String>,
    /// First start only: a one-time key from `mgha join-key` on the Primary.
    #[arg(long, value_name = "KEY", requires = "join")]
    pub key: Option<String>,
    /// The failover heartbeat of the cluster, in milliseconds (as on the nodes).
    #[arg(long, value_name = "MS", default_value_t = FailoverTiming::default().heartbeat_ms)]
    pub heartbeat_ms: u64,
    /// The failover timeout of the cluster, in milliseconds (as on the nodes).
    #[arg(long, value_name = "MS", default_value_t = FailoverTiming::default().failover_after_ms)]
    pub failover_after_ms: u64,
}

/// `mgha witness --data-dir DIR --listen ADDR --members a=H:P,b=H:P,witness=H:P [--join PEER --key KEY]`.
pub fn witness(args: &WitnessArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: &WitnessArgs) -> anyhow::Result<()> {
    let timing = FailoverTiming {
        heartbeat_ms: args.heartbeat_ms,
        failover_after_ms: args.failover_after_ms,
        ..FailoverTiming::default()
    };
    let members = parse_members(&args.members).context("--members")?;
    let files = TlsFiles::new(&args.data_dir);
    if !files.node_cert().exists() {
        let (Some(peer), Some(key)) = (&args.join, &args.key) else {
            bail!(
                "{} holds no witness yet: enroll it with --join HOST:PORT --key KEY (a key from `mgha join-key` on \
                 the primary)",
                args.data_dir.display()
            );
        };
        enroll_witness(&args.data_dir, &args.name, peer, key)
            .await
            .with_context(|| format!("cannot enroll the witness through {peer}"))?;
        outln!("witness '{}' enrolled through {peer} in {}", args.name, args.data_dir.display());
    } else if args.join.is_some() {
        eprintln!("{} is already enrolled: --join and --key are not needed", args.data_dir.display());
    }
    let cfg = QuorumConfig {
        name: args.name.clone(),
        listen: args.listen.clone(),
        members,
        data_dir: args.data_dir.join(QUORUM_DIR),
        timing,
        tls: files,
    };
    // Handlers go in before the listener opens, so an early signal stops the witness cleanly.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let voters: Vec<String> = cfg.members.iter().map(|m| format!("{} ({})", m.name, m.address)).collect();
    outln!("witness '{}' votes on {}; voters: {}", cfg.name, cfg.listen, voters.join(", "));
    run_witness(cfg, async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
    .await
    .context("the witness stopped")?;
    outln!("witness '{}' stopped", args.name);
    Ok(())
}
