//! Open time, resident memory and diff time of a store, measured in a fresh process: the bench
//! runs its own executable with `--probe-open DIR`, so neither the memory nor the heap
//! fragmentation left by building the store counts.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use mgha_core::engine::EngineOptions;
use serde::{Deserialize, Serialize};

use super::machine::status_kib;
use super::workload::median_ms;

/// Diffs timed in the probe; the first reads the revision from disk, the median is reported.
const DIFF_RUNS: usize = 7;

/// What the child process reports, as one JSON line on stdout.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeResult {
    /// `Engine::open` of the cleanly closed store.
    pub open_ms: f64,
    pub objects: u64,
    /// Resident memory right after open (and a status read).
    pub rss_open_kib: u64,
    /// Median time to diff the last revision against its parent.
    pub diff_ms: f64,
    /// Objects that diff lists.
    pub diff_objects: usize,
    /// Peak resident memory after a full integrity check that reads every object and revision:
    /// bounded by the page cache limit, not by the database size.
    pub hwm_check_kib: u64,
    pub check_ms: f64,
}

/// The child side: opens, measures, prints, exits.
pub fn child(dir: &Path) -> anyhow::Result<()> {
    let t = Instant::now();
    let engine =
        mgha_sync::open_engine(dir, EngineOptions::default()).with_context(|| format!("opening {}", dir.display()))?;
    let open_ms = ms(t);
    let objects = engine.status()?.objects;
    let rss_open_kib = self_status_kib("VmRSS")?;
    let head = engine.status()?.head.seq;
    let mut samples = Vec::with_capacity(DIFF_RUNS);
    let mut diff_objects = 0;
    for _ in 0..DIFF_RUNS {
        let t = Instant::now();
        diff_objects = engine.store().diff(head.saturating_sub(1), head)?.objects.len();
        samples.push(t.elapsed());
    }
    let diff_ms = median_ms(&samples);
    let t = Instant::now();
    let report = engine.store().check()?;
    let check_ms = ms(t);
    if report.objects != objects {
        bail!("check saw {} objects, status {objects}", report.objects);
    }
    let hwm_check_kib = self_status_kib("VmHWM")?;
    let result = ProbeResult { open_ms, objects, rss_open_kib, diff_ms, diff_objects, hwm_check_kib, check_ms };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// The parent side: runs the child on `dir` (whose store must be closed) and reads its report.
pub fn measure(dir: &Path) -> anyhow::Result<ProbeResult> {
    let exe = std::env::current_exe().context("locating the mgha-bench executable")?;
    let out = Command::new(&exe)
        .arg("--probe-open")
        .arg(dir)
        .output()
        .with_context(|| format!("running {} --probe-open", exe.display()))?;
    if !out.status.success() {
        bail!("the probe process failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).context("the probe process printed no report")?;
    serde_json::from_str(line).context("reading the probe report")
}

fn self_status_kib(key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status_kib(&status, key).with_context(|| format!("no {key} in /proc/self/status"))
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
