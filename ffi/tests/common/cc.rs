//! Compiling and running C and C++ programs against libmgha, for the tests that check what a C
//! host sees: the examples (`c_examples.rs`) and the test programs of `ffi/tests/c/`
//! (`c_programs.rs`).
//!
//! Compilers: `$CC` (default `cc`) and `$CXX` (default `c++`), with `-Wall -Wextra -Werror
//! -pedantic`. Flags come from `pkg-config mgha` when pkg-config is installed, through the
//! `mgha.pc` rendered from `ffi/mgha.pc.in` into the target directory; otherwise from the same
//! paths directly. The library is the one cargo built for this test run (`target/<profile>/deps`,
//! see [`super::lib_dir`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use super::{lib_dir, profile_dir};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Writes `target/<profile>/mgha.pc` for the build tree and returns its directory.
fn render_pc() -> PathBuf {
    let template = std::fs::read_to_string(repo_root().join("ffi/mgha.pc.in")).expect("ffi/mgha.pc.in");
    let root = repo_root().canonicalize().expect("repo root");
    let pc = template
        .replace("@PREFIX@", &root.display().to_string())
        .replace("@INCLUDEDIR@", "${prefix}/include")
        .replace("@LIBDIR@", &lib_dir().display().to_string())
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"));
    std::fs::write(profile_dir().join("mgha.pc"), pc).expect("writes mgha.pc");
    profile_dir()
}

/// Whether `program` runs (`program --version`).
pub fn installed(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Compiler and linker flags for libmgha: from pkg-config when it is installed.
fn flags(static_link: bool) -> Vec<String> {
    static PC_DIR: OnceLock<PathBuf> = OnceLock::new();
    let pc_dir = PC_DIR.get_or_init(render_pc);
    if installed("pkg-config") {
        let mut cmd = Command::new("pkg-config");
        cmd.env("PKG_CONFIG_PATH", pc_dir).args(["--cflags", "--libs"]);
        if static_link {
            cmd.arg("--static");
        }
        let out = cmd.arg("mgha").output().expect("runs pkg-config");
        assert!(out.status.success(), "pkg-config mgha: {}", String::from_utf8_lossy(&out.stderr));
        let mut flags: Vec<String> =
            String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
        if static_link {
            // Pick the archive over the shared library of the same name.
            flags.retain(|f| f != "-lmgha");
            flags.insert(0, lib_dir().join("libmgha.a").display().to_string());
        }
        return flags;
    }
    println!("note: pkg-config is not installed; using the build tree's paths directly");
    let include = format!("-I{}", repo_root().join("include").display());
    match static_link {
        true => [include, lib_dir().join("libmgha.a").display().to_string()]
            .into_iter()
            .chain(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"].map(String::from))
            .collect(),
        false => vec![include, format!("-L{}", lib_dir().display()), "-lmgha".into()],
    }
}

/// `$var`, or `default` when it is unset or blank.
pub fn compiler(var: &str, default: &str) -> String {
    std::env::var(var).ok().filter(|c| !c.trim().is_empty()).unwrap_or_else(|| default.into())
}

/// Compiles `source` (relative to the repository root) into `out`, failing the test with the
/// compiler's output.
pub fn compile(compiler: &str, std: &str, source: &str, out: &Path, static_link: bool) {
    let mut cmd = Command::new(compiler);
    cmd.args([std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-g", "-o"]).arg(out);
    cmd.arg(repo_root().join(source)).args(flags(static_link)).arg("-pthread");
    let result = cmd.output().unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(result.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&result.stderr));
}

/// Compiles the C99 program `source` against the shared library into `dir`.
pub fn compile_c(source: &str, dir: &Path) -> PathBuf {
    let stem = Path::new(source).file_stem().expect("a file name").to_string_lossy().into_owned();
    let exe = dir.join(stem);
    compile(&compiler("CC", "cc"), "-std=c99", source, &exe, false);
    exe
}

/// Runs a compiled program (optionally under `wrapper`) with a fresh, empty work dir as its one
/// argument; fails the test unless it exits 0 and prints a line "ok".
pub fn run(wrapper: &[&str], program: &Path) -> Output {
    run_with(wrapper, program, &[])
}

/// As [`run`], with more environment variables.
pub fn run_with(wrapper: &[&str], program: &Path, env: &[(&str, &str)]) -> Output {
    let work = tempfile::tempdir().expect("tempdir");
    let (exe, args): (&std::ffi::OsStr, Vec<&std::ffi::OsStr>) = match wrapper.split_first() {
        Some((first, rest)) => (first.as_ref(), rest.iter().map(|a| a.as_ref()).chain([program.as_os_str()]).collect()),
        None => (program.as_os_str(), Vec::new()),
    };
    let out = Command::new(exe)
        .args(args)
        .arg(work.path())
        .env("LD_LIBRARY_PATH", lib_dir())
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(out.status.success() && stdout.contains("\nok\n"), "{} failed:\n{stdout}\n{stderr}", program.display());
    out
}
