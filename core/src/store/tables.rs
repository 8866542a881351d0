//! The redb tables and the byte layout of their keys. docs/storage.md describes the same layout.

use redb::TableDefinition;

/// uid (16 bytes) → canonical object encoding, sealed (`record.rs`: followed by its blake3).
pub const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
/// "type\0name" → uid (16 bytes). Names are unique within a type.
pub const NAMES: TableDefinition<&str, &[u8]> = TableDefinition::new("names");
/// target uid (16) ++ source uid (16) → (). Who refers to whom, for delete checks.
pub const REFS: TableDefinition<&[u8], ()> = TableDefinition::new("refs");
/// seq → encoded [`crate::revision::Revision`], sealed.
pub const REVISIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("revisions");
/// seq → the objects as they were before that revision (one entry per change, in order), sealed.
pub const UNDO: TableDefinition<u64, &[u8]> = TableDefinition::new("undo");
/// Small records: head, purge floor, node state, format version.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub const META_HEAD: &str = "head";
pub const META_FLOOR: &str = "floor";
pub const META_NODE: &str = "node";
pub const META_FORMAT: &str = "format";

/// Version of the on-disk layout; bumped on any incompatible change (2: sealed records; 3:
/// history records may be deflated, `record::seal_history`). A store is written at this version.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest version this build still reads. A format 2 store opens as it is, and its first
/// commit records version 3, so that a build reading only version 2 refuses it instead of
/// taking its first deflated record for damage.
pub const FORMAT_VERSION_OLDEST: u32 = 2;

pub fn name_key(type_name: &str, name: &str) -> String {
    let mut k = String::with_capacity(type_name.len() + name.len() + 1);
    k.push_str(type_name);
    k.push('\0');
    k.push_str(name);
    k
}

/// The bounds of every name key of one type.
pub fn type_range(type_name: &str) -> (String, String) {
    (format!("{type_name}\0"), format!("{type_name}\u{1}"))
}

pub fn ref_key(target: &[u8; 16], source: &[u8; 16]) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(target);
    k[16..].copy_from_slice(source);
    k
}

/// The bounds of every ref key whose target is `target`.
pub fn ref_range(target: &[u8; 16]) -> ([u8; 32], [u8; 32]) {
    (ref_key(target, &[0; 16]), ref_key(target, &[0xff; 16]))
}
