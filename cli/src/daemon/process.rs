//! The standard `process_*` metrics of Prometheus client libraries, read from `/proc/self` at
//! scrape time: CPU seconds, resident and virtual memory, open and maximum file descriptors,
//! and the start time. Dashboards and alerts written for any other exporter work unchanged.

use std::fmt::Write;

/// One reading of the process's own counters. A field is `None` where `/proc` could not be read
/// (another operating system, a restricted mount): its series is left out, never made up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads this process's counters.
    pub fn read() -> ProcessStats {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().and_then(stat_fields);
        // Fields counted from 1 as proc(5) numbers them; `fields[0]` is field 3 (state).
        let field = |n: usize| fields.as_ref().and_then(|f| f.get(n - 3)).and_then(|v| v.parse::<u64>().ok());
        let ticks = clock_ticks_per_second();
        let cpu_seconds = match (field(14), field(15), ticks) {
            (Some(user), Some(system), Some(t)) => Some((user + system) as f64 / t),
            _ => None,
        };
        let start_time_seconds = match (field(22), ticks, boot_time_seconds()) {
            (Some(start), Some(t), Some(boot)) => Some(boot as f64 + start as f64 / t),
            _ => None,
        };
        let resident_bytes = field(24).zip(page_size()).map(|(pages, size)| pages * size);
        ProcessStats {
            cpu_seconds,
            resident_bytes,
            virtual_bytes: field(23),
            open_fds: std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
            max_fds: max_open_files(),
            start_time_seconds,
        }
    }

    /// Writes the series that could be read, each with its HELP and TYPE.
    pub fn render_into(&self, out: &mut String) -> std::fmt::Result {
        let families: [(&str, &str, &str, Option<f64>); 6] = [
            ("process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.", self.cpu_seconds),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                self.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                self.virtual_bytes.map(|v| v as f64),
            ),
            ("process_open_fds", "gauge", "Number of open file descriptors.", self.open_fds.map(|v| v as f64)),
            ("process_max_fds", "gauge", "Maximum number of open file descriptors.", self.max_fds.map(|v| v as f64)),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since the Unix epoch, in seconds.",
                self.start_time_seconds,
            ),
        ];
        for (name, kind, help, value) in families {
            if let Some(v) = value {
                writeln!(out, "# HELP {name} {help}")?;
                writeln!(out, "# TYPE {name} {kind}")?;
                writeln!(out, "{name} {v}")?;
            }
        }
        Ok(())
    }
}

/// The fields of `/proc/self/stat` after the command name, which is in parentheses and may
/// itself hold spaces and parentheses: everything after the last `)`.
fn stat_fields(stat: &str) -> Option<Vec<String>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The boot time (`btime` of `/proc/stat`), in seconds since the Unix epoch.
fn boot_time_seconds() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// The soft limit on open files (`Max open files` of `/proc/self/limits`); `None` when
/// unlimited or unreadable.
fn max_open_files() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

fn clock_ticks_per_second() -> Option<f64> {
    let t = rustix::param::clock_ticks_per_second();
    (t > 0).then_some(t as f64)
}

fn page_size() -> Option<u64> {
    Some(rustix::param::page_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = ProcessStats::read();
        assert!(s.resident_bytes.is_some_and(|b| b > 0), "{s:?}");
        assert!(s.open_fds.is_some_and(|n| n >= 3), "{s:?}");
        assert!(s.cpu_seconds.is_some(), "{s:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
        // Started within the last day and not in the future (with a little rounding).
        assert!(s.start_time_seconds.is_some_and(|t| t <= now + 2.0 && t > now - 86_400.0), "{s:?}");
        let mut text = String::new();
        s.render_into(&mut text).expect("render");
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }

    #[test]
    fn command_names_with_parentheses_do_not_shift_fields() {
        let f = stat_fields("42 (a) b (c)) S 1 2 3").expect("fields");
        assert_eq!(f, ["S", "1", "2", "3"]);
    }
}
