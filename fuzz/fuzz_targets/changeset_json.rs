//! Fuzzes the JSON changeset parser and its checks.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mgha_core::ChangeSet::from_json(data);
});
