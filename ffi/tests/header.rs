//! `include/mgha.h` is generated from this crate by cbindgen and committed. This test
//! regenerates it in memory and fails when the committed file differs, so the header never
//! drifts from the exports. `MGHA_BLESS=1` writes the new header instead. The version macros
//! (`MGHA_VERSION_MAJOR` ...) come from the crate version here, so a version bump shows up as
//! a stale header until it is regenerated.

use std::path::PathBuf;

#[test]
fn committed_header_matches_the_exports() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("ffi/cbindgen.toml parses");
    config.after_includes = Some(version_macros());
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");

    let path = crate_dir.join("../include/mgha.h");
    if std::env::var_os("MGHA_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("writes include/mgha.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| committed.lines().count().min(generated.lines().count()) + 1, |i| i + 1);
        panic!(
            "include/mgha.h is stale (first difference at line {line}).\n\
             Regenerate it with:\n    MGHA_BLESS=1 cargo test -p mgha-ffi --test header\n\
             and commit the result."
        );
    }
}

/// The version of the crate as preprocessor macros, in the manner of sqlite's
/// `SQLITE_VERSION_NUMBER`: what a program was compiled against, beside `mgha_version()` and
/// `mgha_version_number()`, which say what it runs against.
fn version_macros() -> String {
    let (major, minor, patch) =
        (env!("CARGO_PKG_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MINOR"), env!("CARGO_PKG_VERSION_PATCH"));
    format!(
        "\n/* The version of this header: MGHA_VERSION_NUMBER is major * 1000000 + minor * 1000 + patch,\n \
         * as mgha_version_number() returns for the library a program runs against. */\n\
         #define MGHA_VERSION \"{}\"\n\
         #define MGHA_VERSION_MAJOR {major}\n\
         #define MGHA_VERSION_MINOR {minor}\n\
         #define MGHA_VERSION_PATCH {patch}\n\
         #define MGHA_VERSION_NUMBER ({major} * 1000000 + {minor} * 1000 + {patch})",
        env!("CARGO_PKG_VERSION")
    )
}
