//! Fuzzes backup verification: a damaged or hostile backup file is an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let _ = mgha_core::backup::verify_backup(std::path::Path::new("fuzz"), &mut input, &mut |_| {});
});
