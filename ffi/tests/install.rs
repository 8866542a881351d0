//! libmgha installed as a C or C++ project would use it: `scripts/install-lib` into a temp
//! prefix, then the examples (`examples/c/cluster.c`, `examples/cpp/cluster.cpp`) built against
//! that prefix alone, once with `pkg-config mgha` and once with CMake (`find_package(mgha)`,
//! `examples/CMakeLists.txt`), run, and checked with `readelf -d` to ask the loader for
//! `libmgha.so.0` (the SONAME), not `libmgha.so`. Fails, never skips, without cc, c++,
//! pkg-config, cmake or readelf (scripts/test installs cmake).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::cc::{compiler, repo_root};
use common::{profile_dir, SONAME};

/// The prefix, installed once per test run from the library cargo built for it. It lives in
/// cargo's scratch dir for integration tests and is replaced by the next run: a temporary dir
/// held in a static is never dropped, so each run left a few hundred MB in the system temp dir.
fn prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-prefix");
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot remove the last run's {}: {e}", dir.display()),
        }
        std::fs::create_dir_all(&dir).expect("the prefix dir");
        let profile = profile_dir();
        let mut cmd = Command::new(repo_root().join("scripts/install-lib"));
        cmd.env("CARGO_TARGET_DIR", profile.parent().expect("the target dir"));
        if profile.file_name().is_some_and(|name| name == "debug") {
            cmd.arg("--debug");
        }
        succeed(cmd.arg(&dir));
        dir
    })
}

/// Runs `cmd`, failing the test with its output unless it exits 0; returns its stdout.
fn succeed(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

/// The shared libraries `elf` asks the loader for, and its SONAME, from `readelf -d`.
fn dynamic(elf: &Path, tag: &str) -> Vec<String> {
    succeed(Command::new("readelf").arg("-d").arg(elf))
        .lines()
        .filter(|line| line.contains(&format!("({tag})")))
        .filter_map(|line| Some(line.split_once('[')?.1.split_once(']')?.0.to_string()))
        .collect()
}

/// Runs an example with a fresh work dir and no `LD_LIBRARY_PATH`: the library is found
/// through the run path the build recorded, in the prefix. Returns its stdout.
fn run_example(exe: &Path) -> String {
    let work = tempfile::tempdir().expect("tempdir");
    let stdout = succeed(Command::new(exe).arg(work.path()).env_remove("LD_LIBRARY_PATH"));
    assert!(stdout.contains("changed over: b is the Active") || stdout.contains("refused a publish"), "{stdout}");
    assert!(stdout.contains("\nok\n"), "{stdout}");
    stdout
}

fn assert_needs_the_soname(exe: &Path) {
    let needed = dynamic(exe, "NEEDED");
    assert!(needed.iter().any(|n| n == SONAME), "{} needs {needed:?}", exe.display());
    assert!(!needed.iter().any(|n| n == "libmgha.so"), "{} needs the unversioned name: {needed:?}", exe.display());
}

#[test]
fn the_install_holds_the_versioned_library_its_links_headers_and_package_files() {
    let lib = prefix().join("lib");
    let version = env!("CARGO_PKG_VERSION");
    let real = lib.join(format!("libmgha.so.{version}"));
    assert!(real.is_file(), "{}", real.display());
    assert_eq!(dynamic(&real, "SONAME"), vec![SONAME.to_string()]);
    let resolve = |name: &str| std::fs::canonicalize(lib.join(name)).expect("the link resolves");
    assert_eq!(resolve(SONAME), resolve(&format!("libmgha.so.{version}")));
    assert_eq!(resolve("libmgha.so"), resolve(&format!("libmgha.so.{version}")));
    for file in ["lib/libmgha.a", "include/mgha.h", "include/mgha.hpp", "lib/cmake/mgha/mghaConfigVersion.cmake"] {
        assert!(prefix().join(file).is_file(), "{file} is installed");
    }
    let pc = std::fs::read_to_string(lib.join("pkgconfig/mgha.pc")).expect("mgha.pc");
    assert!(pc.contains(&format!("prefix={}\n", prefix().display())), "{pc}");
    assert!(pc.contains(&format!("Version: {version}\n")), "{pc}");
    let config = std::fs::read_to_string(lib.join("cmake/mgha/mghaConfig.cmake")).expect("mghaConfig.cmake");
    assert!(config.contains("mgha::mgha") && !config.contains('@'), "{config}");
}

#[test]
fn examples_build_with_pkg_config_against_the_prefix_and_run() {
    let flags = succeed(
        Command::new("pkg-config")
            .env("PKG_CONFIG_PATH", prefix().join("lib/pkgconfig"))
            .env_remove("PKG_CONFIG_LIBDIR")
            .args(["--cflags", "--libs", "mgha"]),
    );
    let flags: Vec<&str> = flags.split_whitespace().collect();
    assert!(flags.contains(&format!("-I{}/include", prefix().display()).as_str()), "{flags:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let rpath = format!("-Wl,-rpath,{}", prefix().join("lib").display());
    for (cc, std, source, exe) in [
        (compiler("CC", "cc"), "-std=c99", "examples/c/cluster.c", "cluster-c"),
        (compiler("CXX", "c++"), "-std=c++17", "examples/cpp/cluster.cpp", "cluster-cpp"),
    ] {
        let exe: PathBuf = dir.path().join(exe);
        succeed(
            Command::new(&cc)
                .args([std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-o"])
                .arg(&exe)
                .arg(repo_root().join(source))
                .args(&flags)
                .args([rpath.as_str(), "-pthread"]),
        );
        assert_needs_the_soname(&exe);
        run_example(&exe);
    }
}

#[test]
fn examples_build_with_cmake_against_the_prefix_and_run() {
    let build = tempfile::tempdir().expect("tempdir");
    succeed(
        Command::new("cmake")
            .arg("-S")
            .arg(repo_root().join("examples"))
            .arg("-B")
            .arg(build.path())
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix().display()))
            .env("CC", compiler("CC", "cc"))
            .env("CXX", compiler("CXX", "c++")),
    );
    succeed(Command::new("cmake").arg("--build").arg(build.path()).args(["--target", "cluster-c", "cluster-cpp"]));
    for exe in ["cluster-c", "cluster-cpp"] {
        let exe = build.path().join(exe);
        assert_needs_the_soname(&exe);
        run_example(&exe);
    }
}
