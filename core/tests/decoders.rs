//! Every decoder that reads bytes from outside (peers, files, admins) meets random and mutated
//! input: it returns an error, never panics, and never accepts something it cannot re-encode.

use proptest::prelude::*;

use mgha_core::backup::{verify_backup, write_backup};
use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::node::NodeState;
use mgha_core::{ChangeSet, Object};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn object_decoder_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(o) = Object::decode(&bytes) {
            let canonical = o.encode();
            prop_assert_eq!(Object::decode(&canonical).expect("re-decodes").encode(), canonical);
        }
    }

    #[test]
    fn changeset_parser_survives_random_text(text in "\\PC{0,200}") {
        let _ = ChangeSet::from_json(text.as_bytes());
    }

    #[test]
    fn backup_verifier_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut input = bytes.as_slice();
        let verified = verify_backup(std::path::Path::new("random"), &mut input, &mut |_| {});
        prop_assert!(verified.is_err(), "random bytes verified as a backup");
    }
}

#[test]
fn backup_verifier_refuses_every_single_byte_flip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::create(dir.path(), &NodeState::new_primary("a"), EngineOptions::default()).expect("engine");
    let cs: ChangeSet = serde_json::from_value(serde_json::json!({"changes": [
        {"op": "put", "type": "host", "name": "h1", "fields": {"ipv4-address": "10.0.0.1"}},
        {"op": "put", "type": "group", "name": "g", "fields": {"members": ["h1"]}}]}))
    .expect("changeset");
    engine.publish("t", &cs).expect("publish");
    let mut file = Vec::new();
    write_backup(&engine.store(), &mut file, &mut |_| {}).expect("backup");
    for i in (0..file.len()).step_by(3) {
        let mut damaged = file.clone();
        damaged[i] ^= 0x5a;
        let mut input = damaged.as_slice();
        assert!(
            verify_backup(std::path::Path::new("d"), &mut input, &mut |_| {}).is_err(),
            "flip at byte {i} accepted"
        );
    }
}
