//! Named limits. Every object, changeset, session and read has a ceiling here, so that a
//! hostile or mistaken input is refused with a clear error instead of exhausting the node.

/// Largest canonical encoding of one object (type, uid, name and fields).
pub const OBJECT_BYTES_MAX: usize = 1024 * 1024;
/// Longest object name, in bytes.
pub const NAME_BYTES_MAX: usize = 256;
/// Longest type name, in bytes.
pub const TYPE_BYTES_MAX: usize = 64;
/// Deepest nesting of maps and lists inside an object's fields.
pub const FIELD_DEPTH_MAX: usize = 32;
/// Most changes in one changeset (one revision).
pub const CHANGESET_CHANGES_MAX: usize = 100_000;
/// Largest JSON changeset body accepted by the admin API and `mgha apply`.
pub const CHANGESET_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Longest revision message, in bytes.
pub const MESSAGE_BYTES_MAX: usize = 4096;
/// Longest author name, in bytes.
pub const AUTHOR_BYTES_MAX: usize = 256;
/// Most connections open at once on a node's peer port (links from member servers, joiners,
/// and whoever else connects): a cluster has a handful of members, each with one link.
pub const PEER_CONNECTIONS_MAX: usize = 256;
/// Most domains in a cluster (the global one included): the registry, the replicas a server
/// holds, and the domain sessions multiplexed over one peer connection are bounded by it.
pub const DOMAINS_MAX: usize = 4096;
/// Most streams open at once on one link between two servers: each domain they both replicate
/// has a session dialed by either side, and the link has its beat stream.
pub const STREAMS_PER_LINK_MAX: usize = 2 * DOMAINS_MAX + 1;
const _: () = assert!(STREAMS_PER_LINK_MAX >= 2 * DOMAINS_MAX);
/// Most source addresses whose join attempts are counted at once (`joins_per_minute` applies
/// per source); when all are within their minute, a new source is refused until one ends.
pub const JOIN_SOURCES_MAX: usize = 4096;
/// Most admin sessions open at once on one node.
pub const SESSIONS_MAX: usize = 1024;
/// Most staged changes in one admin session.
pub const SESSION_CHANGES_MAX: usize = CHANGESET_CHANGES_MAX;
/// Most bytes of objects staged in one admin session, each counted as its canonical encoding
/// as staged (references as written). A session publishes as one revision, which crosses to
/// each Standby in one frame of the peer protocol: half a frame leaves room for what publish
/// adds (references resolved to uids, before-hashes, headers).
pub const SESSION_BYTES_MAX: usize = 32 * 1024 * 1024;
const _: () = assert!(SESSION_BYTES_MAX <= FRAME_BYTES_MAX / 2);
/// Largest revision a publish (or a replicated apply) commits: its stored encoding plus its undo
/// record (the objects it replaces). A revision crosses to each Standby in one peer frame and
/// is written to a backup in one backup frame, so a larger one could publish but never
/// replicate nor back up: it is refused at publish instead (`TooLarge`, nothing committed).
/// A changeset body may be larger ([`CHANGESET_BYTES_MAX`]): JSON is looser than the stored
/// encoding, but the revision it makes must fit here.
pub const REVISION_BYTES_MAX: usize = FRAME_BYTES_MAX - REVISION_FRAMING_BYTES_MAX;
/// Room for what a frame adds around a revision: message and changes headers on the wire, the
/// entry and chunk headers in a backup.
const REVISION_FRAMING_BYTES_MAX: usize = 64 * 1024;
const _: () = assert!(REVISION_BYTES_MAX + REVISION_FRAMING_BYTES_MAX <= FRAME_BYTES_MAX);
const _: () = assert!(REVISION_BYTES_MAX + REVISION_FRAMING_BYTES_MAX <= BACKUP_FRAME_BYTES_MAX);
const _: () = assert!(SESSION_BYTES_MAX <= REVISION_BYTES_MAX);
const _: () = assert!(OBJECT_BYTES_MAX <= REVISION_BYTES_MAX / 2);
/// Most objects returned by one list call.
pub const LIST_OBJECTS_MAX: usize = 100_000;
/// Most revisions returned by one revisions listing.
pub const LIST_REVISIONS_MAX: usize = 10_000;
/// Most object changes a diff or revert may span.
pub const DIFF_CHANGES_MAX: usize = 1_000_000;
/// Objects per chunk of a backup file.
pub const BACKUP_CHUNK_OBJECTS: usize = 4096;
/// Largest frame in a backup file.
pub const BACKUP_FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest frame of the peer protocol, accepted or sent.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Most MessagePack values (array items, map keys and values, at every depth) in one frame of
/// the peer protocol, counted before the frame is decoded (`msgpack_shape`). Bytes alone do not
/// bound memory: a value of one byte decodes to tens, so 64 MiB of empty strings would take a
/// gigabyte. With this bound a decoded frame stays within a few hundred MiB at worst, and an
/// honest one is far smaller.
pub const FRAME_VALUES_MAX: usize = 4 * 1024 * 1024;
/// Deepest nesting of a frame of the peer protocol: an object's fields plus the message around
/// them. Decoders recurse, so depth is bounded before decoding too.
pub const FRAME_DEPTH_MAX: usize = FIELD_DEPTH_MAX + 16;
/// Values a change adds on the wire beyond its object's canonical encoding (the change's own
/// array, operation, before-hash, the revision around it), counted generously.
pub const CHANGE_WIRE_VALUES: usize = 16;
/// Most values in one revision: the canonical encodings of the objects it writes, plus
/// [`CHANGE_WIRE_VALUES`] per change. A publish over it is refused, so that every revision
/// crosses to a Standby in a frame within [`FRAME_VALUES_MAX`] (a thousand spare values hold the
/// message around it).
pub const REVISION_VALUES_MAX: usize = FRAME_VALUES_MAX - 1024;
const _: () = assert!(REVISION_VALUES_MAX + 1024 <= FRAME_VALUES_MAX);
const _: () = assert!(SNAPSHOT_CHUNK_OBJECTS + 64 <= FRAME_VALUES_MAX);
/// A changeset of the most changes, each a small object of a dozen values, stays a publishable
/// revision.
const _: () = assert!(CHANGESET_CHANGES_MAX * (CHANGE_WIRE_VALUES + 16) <= REVISION_VALUES_MAX);
/// Objects per full-sync chunk; with [`OBJECT_BYTES_MAX`] objects a chunk still fits a frame
/// only if most are small, so chunks are also cut by bytes.
pub const SNAPSHOT_CHUNK_OBJECTS: usize = 4096;
/// Bytes per full-sync chunk (before framing). A chunk is cut after the object that crosses
/// this, so it may exceed it by one object; the frame must still hold it.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 * 1024 * 1024;
const _: () = assert!(SNAPSHOT_CHUNK_BYTES + OBJECT_BYTES_MAX <= FRAME_BYTES_MAX / 2);
/// A full sync's history chunk is cut before the record that would cross
/// [`SNAPSHOT_CHUNK_BYTES`], so it holds either at most that many bytes or one revision with its
/// undo record alone, which [`REVISION_BYTES_MAX`] keeps within a frame; its values are a few per
/// record (the records cross as bytes).
const _: () = assert!(SNAPSHOT_CHUNK_BYTES <= REVISION_BYTES_MAX);
const _: () = assert!(SNAPSHOT_CHUNK_OBJECTS * 4 + 64 <= FRAME_VALUES_MAX);
/// Full-sync chunks verified and waiting for the receiver's loader thread (`store/snapshot.rs`):
/// with the chunk being verified and the one being inserted, what a receiver holds beyond its
/// inbox and the store's cache.
pub const SNAPSHOT_LOAD_QUEUE_CHUNKS: usize = 2;
/// Bytes of name-index entries a full sync's receiver gathers and sorts before it inserts them
/// (`store/snapshot.rs`): about 400,000 names of twenty-odd bytes. The first batch is appended
/// to the empty index, later ones are merged into it in key order; larger batches would cost a
/// receiver more memory than the 256 MiB it is allowed for a million objects.
pub const SNAPSHOT_NAMES_SORT_BYTES: usize = 16 * 1024 * 1024;
/// Full-sync frames encoded by the sender's reading thread and waiting for the socket.
pub const SNAPSHOT_FRAMES_AHEAD: usize = 2;
/// redb page cache of a store, at most; bounded so resident memory does not follow database
/// size. The first domain's store (a single-domain server's only one) has all of it.
pub const STORE_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// The page caches of a server's other domain stores, together: each gets its share, between
/// [`DOMAIN_STORE_CACHE_BYTES_MIN`] and [`STORE_CACHE_BYTES`], so that a server's memory does not
/// grow with domains times their size (redb keeps every page it wrote in its cache, up to the
/// cache's size).
pub const DOMAIN_STORES_CACHE_BYTES: usize = 128 * 1024 * 1024;
/// The smallest page cache of a domain store.
pub const DOMAIN_STORE_CACHE_BYTES_MIN: usize = 64 * 1024;

/// The page cache of each domain store of a server holding `domains` of them.
pub fn domain_store_cache_bytes(domains: usize) -> usize {
    (DOMAIN_STORES_CACHE_BYTES / domains.max(1)).clamp(DOMAIN_STORE_CACHE_BYTES_MIN, STORE_CACHE_BYTES)
}
/// Records the background scrub verifies per read snapshot; short snapshots keep old pages
/// reclaimable while it walks a large store.
pub const SCRUB_BATCH_RECORDS: usize = 1024;
/// Bytes per second the background scrub reads at most, so it never competes with publishes.
pub const SCRUB_BYTES_PER_SEC_MAX: u64 = 32 * 1024 * 1024;
/// Bytes a write probe commits (and removes) to find out whether a store that failed to write
/// can write again: more than a nearly full filesystem has left, less than a publish may need.
pub const STORE_WRITE_PROBE_BYTES: usize = 1024 * 1024;
/// How long a store that a failed write closed, and that could not be reopened, waits before it
/// tries to reopen again: each attempt runs redb's recovery over the whole file.
pub const STORE_REOPEN_RETRY_MS: u64 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_stores_share_one_cache_budget_within_bounds() {
        assert_eq!(domain_store_cache_bytes(0), STORE_CACHE_BYTES, "no domain is one domain");
        assert_eq!(domain_store_cache_bytes(1), STORE_CACHE_BYTES, "one domain gets the most a store may have");
        assert_eq!(domain_store_cache_bytes(16), DOMAIN_STORES_CACHE_BYTES / 16);
        assert!(domain_store_cache_bytes(100) * 100 <= DOMAIN_STORES_CACHE_BYTES);
        assert_eq!(domain_store_cache_bytes(4096), DOMAIN_STORE_CACHE_BYTES_MIN, "never below the floor");
    }
}
