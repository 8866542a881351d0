//! Fuzzes the object decoder: whatever decodes re-encodes canonically and decodes equal.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(o) = mgha_core::Object::decode(data) {
        let canonical = o.encode();
        let back = mgha_core::Object::decode(&canonical).expect("canonical encoding decodes");
        assert_eq!(back.encode(), canonical);
    }
});
