//! `mgha-bench`: the engine's performance figures, measured in one run on the disk under test
//! and printed next to their goals. A program of its own, as pgbench and redis-benchmark are, so
//! the `mgha` binary keeps only what an operator runs. It measures durable publish throughput and latency (with the disk's own
//! fsync floor beside them), diff cost at two database sizes, open time and resident memory of a
//! large store, backup, verify and restore throughput, the cluster figures, and the cost of plugin
//! calls next to the built-in merge. docs/BENCHMARKS.md explains each row.

mod api;
mod cluster;
mod domains;
mod failover;
mod machine;
mod pg;
mod plugins;
mod probe;
mod report;
mod scenario;
mod wan;
mod workload;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;

/// Options of `mgha-bench`.
#[derive(clap::Parser, Debug, Clone, Default)]
#[command(
    name = "mgha-bench",
    version,
    about = "Measures mgha's performance figures on this machine and prints them next to their goals"
)]
pub struct BenchArgs {
    /// Run every measurement at 1/100 scale: a smoke run of a few seconds, not a measurement.
    #[arg(long)]
    pub quick: bool,
    /// Directory on the disk to measure. A scratch directory is made inside it and removed at
    /// the end. Default: the system temp dir, or the current directory when that is a tmpfs.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// PostgreSQL's figures from this machine: the JSON line bench/pg_anchor.sh prints last (run
    /// it minutes before or after this bench). Without it the PostgreSQL column says
    /// "not measured".
    #[arg(long, value_name = "FILE")]
    pub pg: Option<PathBuf>,
    /// Print a JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Keep the scratch directory (stores and backup file) instead of removing it.
    #[arg(long)]
    pub keep: bool,
    /// Internal: open the store in DIR, print open time and memory as JSON, and exit. The bench
    /// runs itself with this flag so that memory is measured in a fresh process.
    #[arg(long, hide = true, value_name = "DIR")]
    pub probe_open: Option<PathBuf>,
    /// Internal: serve DIR as the Active (full-sync measurement) until stdin closes.
    #[arg(long, hide = true, value_name = "DIR")]
    pub probe_serve: Option<PathBuf>,
    /// Internal: follow the Active from DIR until revision --probe-until.
    #[arg(long, hide = true, value_name = "DIR")]
    pub probe_follow: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub probe_addr: Option<String>,
    /// Internal: with --probe-serve, the address the Active gives its members (a proxy's).
    #[arg(long, hide = true)]
    pub probe_advertise: Option<String>,
    #[arg(long, hide = true)]
    pub probe_until: Option<u64>,
    /// Skip the cluster figures (replication, full sync, changeover, merge).
    #[arg(long)]
    pub no_cluster: bool,
    /// What to measure: everything, only the plugin figures, or only automatic failover.
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    pub scenario: Scenario,
    /// --scenario failover: SIGKILLs of the Active per measurement and mode.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub failover_runs: u64,
    /// --scenario failover: the etcd executable for the etcd mode (skipped when it does not run).
    #[arg(long, value_name = "PATH", default_value = "etcd")]
    pub etcd_bin: PathBuf,
    /// --scenario domains: how many domains (default 1,000; 12 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=4095))]
    pub domains: Option<u64>,
    /// --scenario domains: the servers' failover heartbeat (default 1,000 ms); the failover
    /// timeout is five heartbeats, as by default.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub heartbeat_ms: Option<u64>,
    /// Directory of the example plugins' .wasm files, which scripts/build-plugins builds and
    /// prints. Without it a full run skips the plugin figures.
    #[arg(long, value_name = "DIR", env = plugins::PLUGINS_DIR_ENV)]
    pub plugins_dir: Option<PathBuf>,
}

/// The measurements `--scenario` selects.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scenario {
    /// The single-node figures, the cluster figures (unless --no-cluster) and the plugin figures
    /// (when the example plugins are found).
    #[default]
    All,
    /// Plugin call overhead and merge throughput against the built-in merge.
    Plugins,
    /// Only the disk floor and the publishes through a daemon's admin API (1 and 16 clients,
    /// group commit, CPU per publish).
    Api,
    /// Only the full sync of the cluster figures: a store of 1,000,000 objects built in
    /// revisions of 10,000, sent to a new member, each side in its own process.
    FullSync,
    /// A Standby behind a 40 ms round trip (the fault proxy delaying each way): catch-up,
    /// replication lag and full sync, each beside the loopback figure of the same run.
    Wan,
    /// Only what the store's size and its publish path decide: the disk floor, the publish
    /// figures, the large store built as in `all` with its size by table, its open and diff in a
    /// fresh process, and gets by name over it.
    Store,
    /// Automatic failover with real processes, in quorum and etcd mode: SIGKILL of the Active to
    /// the first publish on the other node, and acknowledged publishes lost. Minutes, so never
    /// part of `all`.
    Failover,
    /// Many domains on three servers with real processes: memory and idle CPU with 1,000 domains,
    /// a server's start, publishes spread over domains against one, the SIGKILL of a server with
    /// a third of the Actives, and a rebalance. Minutes, so never part of `all`.
    Domains,
}

/// How big each measurement is. `--quick` divides every count by 100.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// Publishes of one object, timed one by one for the latency percentiles.
    pub latency_publishes: usize,
    /// Revisions of `batch_objects` objects for the batch throughput.
    pub batch_revisions: usize,
    pub batch_objects: usize,
    /// Revisions of `batch_objects` updates scattered over the large store.
    pub scattered_revisions: usize,
    /// 4 KiB append + fdatasync rounds for the disk floor.
    pub fsync_rounds: usize,
    /// The small and the large store, and the revision size used to build them.
    pub small_objects: usize,
    pub large_objects: usize,
    pub build_objects_per_revision: usize,
    /// Objects changed by the revision that is diffed.
    pub diff_changes: usize,
    /// Gets by name over the large store, for the read rate and the cost of verification.
    pub gets: usize,
}

impl Scale {
    pub fn full() -> Scale {
        Scale {
            latency_publishes: 2_000,
            batch_revisions: 300,
            batch_objects: 100,
            scattered_revisions: 100,
            fsync_rounds: 2_000,
            small_objects: 10_000,
            large_objects: 1_000_000,
            build_objects_per_revision: 10_000,
            diff_changes: 10_000,
            gets: 100_000,
        }
    }

    pub fn quick() -> Scale {
        Scale {
            latency_publishes: 20,
            batch_revisions: 3,
            batch_objects: 100,
            scattered_revisions: 3,
            fsync_rounds: 20,
            small_objects: 100,
            large_objects: 10_000,
            build_objects_per_revision: 1_000,
            diff_changes: 100,
            gets: 1_000,
        }
    }
}

fn main() -> std::process::ExitCode {
    mgha_plugin_host::install();
    match run(BenchArgs::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The `mgha` binary the failover figures run as daemons and witnesses: `$MGHA_BIN`, else the one
/// beside this program (cargo builds both into one directory), else `mgha` on the `PATH`.
pub fn mgha_exe() -> PathBuf {
    if let Some(bin) = std::env::var_os("MGHA_BIN") {
        return bin.into();
    }
    let beside = cluster::own_exe().ok().and_then(|exe| exe.parent().map(|d| d.join("mgha")));
    beside.filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("mgha"))
}

/// Runs the benchmark.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.probe_open {
        return probe::child(dir);
    }
    if let Some(dir) = &args.probe_serve {
        let addr = args.probe_addr.as_deref().unwrap_or("127.0.0.1:0");
        return cluster::probe_serve(dir, addr, args.probe_advertise.clone());
    }
    if let Some(dir) = &args.probe_follow {
        return cluster::probe_follow(
            dir,
            args.probe_addr.as_deref().unwrap_or("127.0.0.1:0"),
            args.probe_until.unwrap_or(0),
        );
    }
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => machine::default_base_dir()?,
    };
    // Refuse a missing plugin directory before an hour of other measurements, not after.
    let plugins_dir = match (args.scenario, &args.plugins_dir) {
        (Scenario::All, None) => {
            eprintln!("plugin figures skipped: no --plugins-dir (build the examples with scripts/build-plugins)");
            None
        }
        (
            Scenario::Failover
            | Scenario::Api
            | Scenario::FullSync
            | Scenario::Wan
            | Scenario::Store
            | Scenario::Domains,
            _,
        ) => None,
        (_, dir) => Some(plugins::examples_dir(dir.as_deref())?),
    };
    if args.scenario == Scenario::All {
        eprintln!("failover figures skipped: they take minutes (`mgha-bench --scenario failover`)");
    }
    // Read the PostgreSQL figures first: a bad file should fail before the measurements, not after.
    let pg_anchor = args.pg.as_deref().map(pg::load).transpose()?;
    let scratch = Scratch::create(&base, args.keep)?;
    let scale = if args.quick { Scale::quick() } else { Scale::full() };
    let mut report = match args.scenario {
        Scenario::All => scenario::run(scratch.path(), scale, args.quick)?,
        Scenario::Api => scenario::disk_only(scratch.path(), scale, args.quick)?,
        Scenario::Store => scenario::store(scratch.path(), scale, args.quick)?,
        Scenario::Plugins | Scenario::Failover | Scenario::FullSync | Scenario::Wan | Scenario::Domains => {
            scenario::empty(scratch.path(), args.quick)
        }
    };
    if args.scenario == Scenario::FullSync {
        let cs = if args.quick { cluster::ClusterScale::quick() } else { cluster::ClusterScale::full() };
        let started = std::time::Instant::now();
        eprintln!("[cluster] full sync of {} objects", cs.full_sync_objects);
        cluster::full_sync(scratch.path(), cs, &mut report.rows)?;
        report.elapsed_s += started.elapsed().as_secs_f64();
    }
    if args.scenario == Scenario::Wan {
        let cs = if args.quick { cluster::ClusterScale::quick() } else { cluster::ClusterScale::full() };
        let started = std::time::Instant::now();
        wan::run(scratch.path(), cs, &mut report.rows)?;
        report.elapsed_s += started.elapsed().as_secs_f64();
    }
    if matches!(args.scenario, Scenario::All | Scenario::Api) {
        let started = std::time::Instant::now();
        eprintln!("[api] publishes through the admin API of a daemon, 1 and {} clients", api::CLIENTS);
        let scale = if args.quick { api::ApiScale::quick() } else { api::ApiScale::full() };
        let floor = report.rows.iter().find(|r| r.key == "disk.fdatasync.p50").map_or(0.0, |r| r.value);
        api::run(scratch.path(), &mgha_exe(), scale, floor, &mut report.rows)?;
        report.elapsed_s += started.elapsed().as_secs_f64();
    }
    if args.scenario == Scenario::All && !args.no_cluster {
        let cs = if args.quick { cluster::ClusterScale::quick() } else { cluster::ClusterScale::full() };
        let started = std::time::Instant::now();
        let log = |what: &str| eprintln!("[cluster {:>6.1} s] {what}", started.elapsed().as_secs_f64());
        log("replication lag and bytes on the wire");
        cluster::replication(scratch.path(), cs, &mut report.rows)?;
        log("catch-up of a stopped standby");
        cluster::catch_up(scratch.path(), cs, &mut report.rows)?;
        log("planned and forced changeover");
        cluster::changeover(scratch.path(), cs, &mut report.rows)?;
        log("merge");
        cluster::merge(cs, &mut report.rows)?;
        log(&format!("full sync of {} objects", cs.full_sync_objects));
        cluster::full_sync(scratch.path(), cs, &mut report.rows)?;
        report.elapsed_s += started.elapsed().as_secs_f64();
    }
    if let Some(dir) = plugins_dir {
        let ps = if args.quick { plugins::PluginScale::quick() } else { plugins::PluginScale::full() };
        let started = std::time::Instant::now();
        eprintln!("[plugins] call overhead and merge throughput of the examples in {}", dir.display());
        plugins::run(scratch.path(), &dir, ps, &mut report.rows)?;
        report.elapsed_s += started.elapsed().as_secs_f64();
    }
    if args.scenario == Scenario::Failover {
        // --quick: two runs per measurement, a smoke run.
        let runs = if args.quick { args.failover_runs.min(2) } else { args.failover_runs } as usize;
        let started = std::time::Instant::now();
        failover::run(scratch.path(), runs, &args.etcd_bin, &mut report.rows)?;
        report.elapsed_s += started.elapsed().as_secs_f64();
    }
    if args.scenario == Scenario::Domains {
        let mut ds = if args.quick { domains::DomainScale::quick() } else { domains::DomainScale::full() };
        if let Some(n) = args.domains {
            ds.domains = n as usize;
        }
        if let Some(ms) = args.heartbeat_ms {
            ds.heartbeat_ms = ms;
        }
        let started = std::time::Instant::now();
        domains::run(scratch.path(), &mgha_exe(), ds, &mut report.rows)?;
        report.elapsed_s += started.elapsed().as_secs_f64();
    }
    report.machine.finish();
    if let (Some(anchor), Some(file)) = (&pg_anchor, &args.pg) {
        report.fill_pg(anchor, &file.display().to_string());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.to_table());
    }
    if args.keep {
        eprintln!("scratch directory kept: {}", scratch.path().display());
    }
    Ok(())
}

/// The scratch directory of one run, removed on drop unless kept.
struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Scratch {
    fn create(base: &Path, keep: bool) -> anyhow::Result<Scratch> {
        std::fs::create_dir_all(base).with_context(|| format!("creating {}", base.display()))?;
        let path = base.join(format!("mgha-bench-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch { path, keep })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                eprintln!("warning: could not remove {}: {e}", self.path.display());
            }
        }
    }
}
