//! `include/mgha.h` is generated from this crate by cbindgen and committed. This test
//! regenerates it in memory and fails when the committed file differs, so the header never
//! drifts from the exports. `MGHA_BLESS=1` writes the new header instead.

use std::path::PathBuf;

#[test]
fn committed_header_matches_the_exports() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("ffi/cbindgen.toml parses");
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
