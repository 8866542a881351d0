//! Link arguments of libmgha. On Linux the shared library records the SONAME
//! `libmgha.so.<major>` (`libmgha.so.0` today): a program linked against it then asks for
//! `libmgha.so.0` at run time (`NEEDED`), which an install (scripts/install-lib) provides as a
//! link to `libmgha.so.<version>`, so that a later, incompatible `libmgha.so.1` can be
//! installed beside it without breaking the programs built against this one.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        // Cargo always sets the version variables for build scripts.
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmgha.so.{major}");
    }
}
