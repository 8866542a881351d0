//! What the bench ran on: CPU, cores, memory, kernel and the filesystem under the scratch
//! directory, read from /proc so that a published table always says where it was measured.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// The machine and the disk a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// Device, filesystem type and mount point holding the scratch directory.
    pub device: String,
    pub filesystem: String,
    pub mount_point: String,
    /// 1-minute load average when the run started and when it ended: other work on the machine
    /// skews every figure, so a published table says how busy the machine was.
    pub load_start: f64,
    pub load_end: f64,
}

impl Machine {
    pub fn probe(dir: &Path) -> Machine {
        let mount = mount_of(dir).unwrap_or_default();
        Machine {
            cpu: cpu_model().unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_gib: meminfo_kib("MemTotal").map_or(0.0, |kib| kib as f64 / (1024.0 * 1024.0)),
            kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
            device: mount.device,
            filesystem: mount.fstype,
            mount_point: mount.point,
            load_start: load_average().unwrap_or(0.0),
            load_end: 0.0,
        }
    }

    /// Records the load average at the end of the run.
    pub fn finish(&mut self) {
        self.load_end = load_average().unwrap_or(0.0);
    }

    /// True when the scratch directory lives in memory, where fsync measures nothing.
    pub fn in_memory(&self) -> bool {
        is_memory_fs(&self.filesystem)
    }
}

/// Where the scratch directory goes without `--dir`: the temp dir when it is on a disk, else the
/// current directory (a tmpfs /tmp would make every durability figure meaningless).
pub fn default_base_dir() -> anyhow::Result<PathBuf> {
    let tmp = std::env::temp_dir();
    let on_disk = mount_of(&tmp).is_some_and(|m| !is_memory_fs(&m.fstype));
    if on_disk {
        Ok(tmp)
    } else {
        Ok(std::env::current_dir()?)
    }
}

fn is_memory_fs(fstype: &str) -> bool {
    matches!(fstype, "tmpfs" | "ramfs" | "devtmpfs")
}

#[derive(Default)]
struct Mount {
    device: String,
    point: String,
    fstype: String,
}

/// The mount with the longest mount point that contains `dir`.
fn mount_of(dir: &Path) -> Option<Mount> {
    let dir = dir.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let mut best: Option<Mount> = None;
    for line in mounts.lines() {
        let mut parts = line.split_whitespace();
        let (Some(device), Some(point), Some(fstype)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        // /proc/self/mounts escapes spaces in paths as \040.
        let point = point.replace("\\040", " ");
        let longer = best.as_ref().is_none_or(|b| point.len() >= b.point.len());
        if dir.starts_with(&point) && longer {
            best = Some(Mount { device: device.into(), point, fstype: fstype.into() });
        }
    }
    best
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// A field of /proc/meminfo, in KiB.
fn meminfo_kib(key: &str) -> Option<u64> {
    status_kib(&std::fs::read_to_string("/proc/meminfo").ok()?, key)
}

/// A "Key:   1234 kB" field of a /proc status-style text, in KiB.
pub fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The 1-minute load average.
fn load_average() -> Option<f64> {
    read_trimmed("/proc/loadavg")?.split_whitespace().next()?.parse().ok()
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}
