//! The bench's inputs and primitive measurements: realistic host objects, changesets of them,
//! the disk's fsync floor, and percentiles.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use mgha_core::model::Fields;
use mgha_core::{ChangeInput, ChangeSet};
use serde_json::Value;

/// A host as an administrator would write it: name, address, a comment and two tags, about
/// 140 bytes of JSON. `generation` changes the comment, so a later put really modifies it.
pub fn host(index: u64, generation: u64) -> ChangeInput {
    let mut fields = Fields::new();
    let address = format!("10.{}.{}.{}", (index >> 16) & 0xff, (index >> 8) & 0xff, index & 0xff);
    fields.insert("ipv4-address".into(), Value::String(address));
    let comment = format!("app server {index}, rack {}, revision {generation}", index % 48);
    fields.insert("comments".into(), Value::String(comment));
    let tags = vec![Value::String("bench".into()), Value::String(format!("dc-{}", index % 4))];
    fields.insert("tags".into(), Value::Array(tags));
    ChangeInput::Put { type_name: "host".into(), name: format!("host-{index:08}"), uid: None, fields }
}

/// A changeset putting hosts `indexes` at `generation`.
pub fn hosts(indexes: impl IntoIterator<Item = u64>, generation: u64) -> ChangeSet {
    ChangeSet {
        message: format!("bench generation {generation}"),
        changes: indexes.into_iter().map(|i| host(i, generation)).collect(),
    }
}

/// Mean size of the JSON form of a sample of hosts (as `mgha apply` would receive them).
pub fn host_json_bytes() -> f64 {
    let sample = 1_000u64;
    let total: usize = (0..sample)
        .map(|i| match host(500_000 + i, 1) {
            ChangeInput::Put { type_name, name, fields, .. } => {
                serde_json::json!({"type": type_name, "name": name, "fields": fields}).to_string().len()
            }
            ChangeInput::Delete { .. } => 0,
        })
        .sum();
    total as f64 / sample as f64
}

/// Times `rounds` 4 KiB appends to a file in `dir`, each followed by fdatasync (or fsync when
/// `full_sync`): the least a durable commit can cost on this disk.
pub fn fsync_floor(dir: &Path, rounds: usize, full_sync: bool) -> std::io::Result<Vec<Duration>> {
    let path = dir.join(if full_sync { "fsync-floor.fsync" } else { "fsync-floor.fdatasync" });
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
    let block = [0x5au8; 4096];
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        file.write_all(&block)?;
        if full_sync {
            file.sync_all()?;
        } else {
            file.sync_data()?;
        }
        samples.push(t.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(samples)
}

/// The `p`-th percentile (nearest rank) of `samples`, in milliseconds.
pub fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

/// The median of a few timings, in milliseconds.
pub fn median_ms(samples: &[Duration]) -> f64 {
    percentile_ms(samples, 50.0)
}
