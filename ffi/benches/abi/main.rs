//! What a call costs through the C ABI next to the same call on the Rust API, in one run:
//! reading one object by type and name, and a 1-object publish through an admin session.
//!
//! One engine, a Primary made by `mgha_engine_init` in a temp dir (as examples/c/cluster.c
//! does), is driven two ways: through the Rust API (`mgha_core::Engine`, reached with
//! `core_of`) and through the exported `extern "C"` functions as a program linked against
//! libmgha calls them (every call behind the panic boundary, handles looked up in the registry,
//! C strings checked, results copied into buffers the caller frees). A third column calls the
//! real `libmgha.so` loaded with `dlopen` (libloading), as a C host that loads the library does:
//! a cdylib carries its own copy of the engine code, so that column drives a second engine, of
//! that copy, seeded with the same object.
//!
//! The paths run in alternating batches, so drift of a shared machine (load, disk) reaches each
//! alike; every call is timed on its own, its inputs made before the clock starts, and the table
//! gives p50 / mean per call. `cargo bench -p mgha-ffi --bench abi` measures (`-- publish`
//! measures only the rows whose name holds "publish"); run any other way (`cargo test
//! --all-targets`, a debug build) it is a smoke run of a few calls per way in that only checks
//! they work. docs/BENCHMARKS.md ("The C ABI") has a measured table.

mod paths;

use std::ffi::CString;
use std::path::Path;
use std::time::Instant;

use mgha::engine::core_of;
use paths::{Linked, Loaded, RustApi, Staged, C};

/// The object every get reads: a host as an administrator writes one (as `mgha bench` does).
const HOST_JSON: &str = r#"{"type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.1", "comments": "app server 1, rack 1, revision 1", "tags": ["bench", "dc-0"]}}"#;

/// How many calls: `rounds` alternating batches of `batch` calls per path, after one batch of
/// warm-up per path.
#[derive(Clone, Copy)]
struct Counts {
    rounds: usize,
    batch: usize,
}

impl Counts {
    fn calls(self) -> usize {
        self.rounds * self.batch
    }
}

/// The ways in; each makes the same calls, each call complete (its result freed).
pub trait Way {
    fn label(&self) -> &'static str;
    /// Reads `web1` as JSON and frees it (the Rust API: the `Object`, dropped).
    fn get_json(&self);
    /// The same as MessagePack.
    fn get_msgpack(&self);
    /// Session begin, put the staged object, publish (or discard), free.
    fn session(&self, staged: &mut Staged, publish: bool);
}

fn config(dir: &Path, name: &str) -> CString {
    let text = format!("data_dir = {:?}\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\n", dir.display().to_string());
    CString::new(text).expect("no NUL in a temp path")
}

/// Per-call times of one row, one list per way in, in nanoseconds.
struct Row {
    call: &'static str,
    samples: Vec<Vec<u64>>,
}

/// Times `call` on every way in: a warm-up batch each, then `rounds` batches each, the order of
/// the ways rotating from round to round. `prepare(way, n)` makes the input of the `n`th call
/// before the clock starts; the input is dropped after it stopped.
fn measure<I>(
    call: &'static str,
    ways: &[&dyn Way],
    counts: Counts,
    mut prepare: impl FnMut(usize, u64) -> I,
    mut f: impl FnMut(&dyn Way, &mut I),
) -> Row {
    let mut samples = vec![Vec::with_capacity(counts.calls()); ways.len()];
    let warm_up = (0..ways.len()).map(|w| (false, w));
    let rounds = (0..counts.rounds).flat_map(|r| (0..ways.len()).map(move |k| (true, (r + k) % ways.len())));
    let mut n = 0u64;
    for (timed, w) in warm_up.chain(rounds) {
        for _ in 0..counts.batch {
            n += 1;
            let mut input = prepare(w, n);
            let start = Instant::now();
            f(ways[w], &mut input);
            let elapsed = start.elapsed().as_nanos() as u64;
            if timed {
                samples[w].push(elapsed);
            }
        }
    }
    Row { call, samples }
}

/// (p50, mean) in nanoseconds.
fn stats(samples: &[u64]) -> (f64, f64) {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or(0) as f64;
    let mean = sorted.iter().sum::<u64>() as f64 / sorted.len().max(1) as f64;
    (p50, mean)
}

fn time(ns: f64) -> String {
    match ns {
        ns if ns >= 1e6 => format!("{:.3} ms", ns / 1e6),
        ns if ns >= 1e3 => format!("{:.2} µs", ns / 1e3),
        ns => format!("{ns:.0} ns"),
    }
}

/// `c` against `rust`, both p50s: the difference and its share of `rust`.
fn overhead(rust: f64, c: f64) -> String {
    let sign = if c >= rust { "+" } else { "-" };
    let share = if rust > 0.0 { (c - rust).abs() / rust * 100.0 } else { 0.0 };
    format!("{sign}{} ({sign}{share:.0}%)", time((c - rust).abs()))
}

/// The markdown table: "p50 / mean" for each way in, and each C way's overhead (p50 against
/// the Rust API's p50).
fn print_table(labels: &[&str], rows: &[Row]) {
    let mut header = format!("| call | {} |", labels[0]);
    let mut rule = String::from("|---|---|");
    for label in &labels[1..] {
        header += &format!(" {label} | overhead |");
        rule += "---|---|";
    }
    println!("{header}\n{rule}");
    for row in rows {
        let (rust_p50, rust_mean) = stats(&row.samples[0]);
        let mut line = format!("| {} | {} / {} |", row.call, time(rust_p50), time(rust_mean));
        for samples in &row.samples[1..] {
            let (p50, mean) = stats(samples);
            line += &format!(" {} / {} | {} |", time(p50), time(mean), overhead(rust_p50, p50));
        }
        println!("{line}");
    }
}

fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().unwrap_or("?").to_string()
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench") && !cfg!(debug_assertions);
    let [gets, sessions, publishes] = match measuring {
        true => [
            Counts { rounds: 20, batch: 10_000 },
            Counts { rounds: 20, batch: 2_000 },
            Counts { rounds: 10, batch: 50 },
        ],
        false => [Counts { rounds: 2, batch: 20 }, Counts { rounds: 2, batch: 5 }, Counts { rounds: 1, batch: 2 }],
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let dir = tempfile::tempdir().expect("temp dir");
    println!("mgha-ffi bench abi: {cpus} CPUs, engines in {}", dir.path().display());
    println!("load average (1 min) at start: {}", load_average());
    if !measuring {
        println!("note: a smoke run (no --bench, or a debug build): a few calls per way in, no measurement");
    }

    let linked = C::new(Linked::init(&config(&dir.path().join("a"), "a")), "C ABI");
    let rust = RustApi { core: core_of(linked.abi.engine()).expect("a live engine") };
    let loaded =
        Loaded::open(&config(&dir.path().join("b"), "b")).map(|abi| C::new(abi, "C ABI, libmgha.so via dlopen"));
    let mut ways: Vec<&dyn Way> = vec![&rust, &linked];
    if let Some(loaded) = &loaded {
        ways.push(loaded);
    }
    // The object every get reads, on each engine.
    let web1 = CString::new(HOST_JSON).expect("no NUL");
    linked.run_session(&web1, true);
    if let Some(loaded) = &loaded {
        loaded.run_session(&web1, true);
    }

    // Each way in updates its own host, so that every publish changes something.
    let names = ["pub-rust", "pub-c", "pub-dl"];
    let staged = |w: usize, n: u64| Staged::new(names[w], n);
    // Arguments that are not options pick the rows whose name holds one of them.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |call: &str| filters.is_empty() || filters.iter().any(|f| call.contains(f.as_str()));
    let mut rows = Vec::new();
    for call in ["get one object: JSON (C), `Object` (Rust)", "get one object: MessagePack (C), `Object` (Rust)"] {
        if wanted(call) {
            let json = call.contains("JSON");
            rows.push(measure(call, &ways, gets, |_, _| (), |w, _| if json { w.get_json() } else { w.get_msgpack() }));
        }
    }
    for call in ["1-object session, discarded (no commit)", "1-object publish (session, durable commit)"] {
        if wanted(call) {
            let publish = call.contains("publish");
            let counts = if publish { publishes } else { sessions };
            rows.push(measure(call, &ways, counts, staged, |w, s| w.session(s, publish)));
        }
    }
    let labels: Vec<&str> = ways.iter().map(|w| w.label()).collect();
    println!();
    print_table(&labels, &rows);
    println!();
    println!(
        "p50 / mean per call; overhead: the C way's p50 minus the Rust API's. Calls per way in: {} per get row, \
         {} discarded sessions, {} publishes.",
        gets.calls(),
        sessions.calls(),
        publishes.calls()
    );
    println!("load average (1 min) at end: {}", load_average());

    drop(ways);
    drop(loaded);
    drop(rust);
    linked.abi.close();
}
