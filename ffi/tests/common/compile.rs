//! Compiling the C and C++ examples against `include/mgha.h` and the library built for this
//! test run: flags from `pkg-config mgha` (through the `mgha.pc` rendered here from
//! `ffi/mgha.pc.in`) when pkg-config is installed, else the same paths directly.

use std::path::{Path, PathBuf};
use std::process::Command;
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

pub fn compiler(var: &str, default: &str) -> String {
    std::env::var(var).ok().filter(|c| !c.trim().is_empty()).unwrap_or_else(|| default.into())
}

/// Compiles `source` into `out`, failing the test with the compiler's output.
pub fn compile(compiler: &str, std: &str, source: &str, out: &Path, static_link: bool) {
    let mut cmd = Command::new(compiler);
    cmd.args([std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-g", "-o"]).arg(out);
    cmd.arg(repo_root().join(source)).args(flags(static_link)).arg("-pthread");
    let result = cmd.output().unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(result.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&result.stderr));
}
