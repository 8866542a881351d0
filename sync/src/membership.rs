//! Cluster membership and join keys, persisted in the store's meta table.
//!
//! A join key is `mgha1.<secret: 32 hex>.<CA fingerprint: 64 hex>`. Only blake3 of the secret is
//! stored, with its expiry; redeeming marks it used in the same durable transaction that checks
//! it, so a key is never valid twice, even across a crash.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::wire::Member;
use mgha_core::error::{Error, MemberError, Result};
use mgha_core::model::{Hash, Uid};
use mgha_core::store::Store;

const META_MEMBERS: &str = "members";
const META_JOIN_KEYS: &str = "join_keys";
const META_NEXT_TAG: &str = "next_tag";
const KEY_PREFIX: &str = "mgha1";
/// Most unexpired join keys outstanding at once.
pub const JOIN_KEYS_MAX: usize = 64;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct KeyRecord {
    expires_ms: u64,
    used_ms: Option<u64>,
}

/// A parsed join key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinKey {
    pub secret: String,
    pub ca_fingerprint: Hash,
}

impl JoinKey {
    pub fn parse(text: &str) -> Result<JoinKey> {
        let bad = || Error::InvalidArgument("malformed join key (expected mgha1.<32 hex>.<64 hex>)".into());
        let mut parts = text.trim().split('.');
        if parts.next() != Some(KEY_PREFIX) {
            return Err(bad());
        }
        let secret =
            parts.next().filter(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())).ok_or_else(bad)?;
        let fp = parts.next().and_then(Hash::from_hex).ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(JoinKey { secret: secret.to_ascii_lowercase(), ca_fingerprint: fp })
    }
}

impl std::fmt::Display for JoinKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{KEY_PREFIX}.{}.{}", self.secret, self.ca_fingerprint)
    }
}

fn secret_id(secret: &str) -> String {
    Hash::of(secret.as_bytes()).to_hex()
}

/// Issues a new single-use join key valid for `ttl_ms`.
pub fn issue_join_key(store: &Store, ca_fingerprint: Hash, ttl_ms: u64, now_ms: u64) -> Result<JoinKey> {
    let mut bytes = [0u8; 16];
    rand::Rng::fill(&mut rand::thread_rng(), &mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let id = secret_id(&secret);
    store.meta_update(META_JOIN_KEYS, |keys: &mut BTreeMap<String, KeyRecord>| {
        keys.retain(|_, k| k.expires_ms > now_ms && k.used_ms.is_none());
        if keys.len() >= JOIN_KEYS_MAX {
            return Err(Error::InvalidArgument(format!("{JOIN_KEYS_MAX} join keys are already outstanding")));
        }
        keys.insert(id, KeyRecord { expires_ms: now_ms.saturating_add(ttl_ms), used_ms: None });
        Ok(())
    })?;
    Ok(JoinKey { secret, ca_fingerprint })
}

/// Redeems a join key's secret: it must exist, be unused and unexpired; it is then used.
pub fn redeem_join_key(store: &Store, secret: &str, now_ms: u64) -> Result<()> {
    let id = secret_id(&secret.to_ascii_lowercase());
    store.meta_update(META_JOIN_KEYS, |keys: &mut BTreeMap<String, KeyRecord>| {
        let record = keys.get_mut(&id).ok_or_else(|| Error::Peer("unknown join key".into()))?;
        usable(record, now_ms)?;
        record.used_ms = Some(now_ms);
        Ok(())
    })
}

/// Whether `secret` is a join key that could be redeemed now, without redeeming it: a join
/// checks the key first, so that a caller without a valid key learns nothing else (member
/// names above all), and a valid key is spent only by a join that succeeds.
pub fn check_join_key(store: &Store, secret: &str, now_ms: u64) -> Result<()> {
    let id = secret_id(&secret.to_ascii_lowercase());
    let keys = store.meta_get::<BTreeMap<String, KeyRecord>>(META_JOIN_KEYS)?.unwrap_or_default();
    usable(keys.get(&id).ok_or_else(|| Error::Peer("unknown join key".into()))?, now_ms)
}

fn usable(record: &KeyRecord, now_ms: u64) -> Result<()> {
    if record.used_ms.is_some() {
        return Err(Error::Peer("join key was already used".into()));
    }
    if record.expires_ms <= now_ms {
        return Err(Error::Peer("join key has expired".into()));
    }
    Ok(())
}

/// Takes the next unused epoch tag (the Primary has 0), durably.
pub fn next_tag(store: &Store) -> Result<u16> {
    let used: u16 = members(store)?.iter().map(|m| m.tag).max().unwrap_or(0);
    store.meta_update(META_NEXT_TAG, |next: &mut u16| {
        let tag = (*next).max(used.saturating_add(1));
        if tag == u16::MAX {
            return Err(Error::InvalidArgument("the cluster has used every node tag".into()));
        }
        *next = tag + 1;
        Ok(tag)
    })
}

/// The current members this node knows, itself included (removed members are not).
pub fn members(store: &Store) -> Result<Vec<Member>> {
    Ok(member_records(store)?.into_iter().filter(|m| !m.removed).collect())
}

/// Every member record this node holds, removed members' included: what a hello carries, so
/// that a removal reaches every node.
pub fn member_records(store: &Store) -> Result<Vec<Member>> {
    Ok(store.meta_get::<Vec<Member>>(META_MEMBERS)?.unwrap_or_default())
}

/// Sets the member list of a domain other than the first: exactly the servers that hold a
/// replica of it, as the node library places them (no merge: the registry decides). Returns
/// whether the list changed.
pub fn set_domain_members(store: &Store, list: &[Member]) -> Result<bool> {
    // Asked at every move of the global head: an unchanged list costs a read, not a commit.
    if member_records(store)? == list {
        return Ok(false);
    }
    store.meta_update(META_MEMBERS, |held: &mut Vec<Member>| {
        if held.as_slice() == list {
            return Ok(false);
        }
        *held = list.to_vec();
        Ok(true)
    })
}

/// Whether `node_id` was a member and was removed: its certificate is refused from then on.
pub fn is_removed(store: &Store, node_id: Uid) -> Result<bool> {
    Ok(member_records(store)?.iter().any(|m| m.node_id == node_id && m.removed))
}

/// Whether record `b` of a node supersedes record `a` of the same node. A total order on the
/// records, so that merging lists in any order, any number of times, gives every node the same
/// list: a removal is final (a removed node id never comes back: a member that joins again gets
/// a new one), then the higher version (a node bumps its own when its record changes), then, for
/// records that diverged at the same version, the greater content.
fn supersedes(b: &Member, a: &Member) -> bool {
    let key = |m: &Member| (m.removed, m.version, m.listen.clone(), m.name.clone(), m.tag, m.designation_rank());
    key(b) > key(a)
}

/// Merges member records (by node id, see [`supersedes`]); returns whether anything changed.
pub fn merge_members(store: &Store, incoming: &[Member]) -> Result<bool> {
    let current = member_records(store)?;
    let mut merged: BTreeMap<Uid, Member> = current.iter().map(|m| (m.node_id, m.clone())).collect();
    for m in incoming {
        match merged.get(&m.node_id) {
            Some(known) if !supersedes(m, known) => {}
            _ => {
                merged.insert(m.node_id, m.clone());
            }
        }
    }
    let merged: Vec<Member> = merged.into_values().collect();
    if merged == current {
        return Ok(false);
    }
    store.meta_update(META_MEMBERS, |m: &mut Vec<Member>| {
        *m = merged;
        Ok(())
    })?;
    Ok(true)
}

/// Records this node's own member record as `me` says (address, designation), with a version
/// above the one stored when anything changed, so that it supersedes the old record on every
/// node. A node that was removed stays removed. Returns whether anything changed.
pub fn set_own_record(store: &Store, me: Member) -> Result<bool> {
    let known = member_records(store)?.into_iter().find(|m| m.node_id == me.node_id);
    let record = match known {
        Some(k) if k.removed => return Ok(false),
        Some(k) if k.same_as(&me) => return Ok(false),
        Some(k) => Member { version: k.version.max(me.version) + 1, removed: false, ..me },
        None => me,
    };
    merge_members(store, &[record])
}

/// Marks the current member `name` removed on this node, the Active (the node policy: one node
/// decides, and not about itself). Returns its record as it was. The removal then travels to
/// every node with the member lists of the hellos.
pub fn remove_member(engine: &mgha_core::engine::Engine, name: &str) -> Result<Member> {
    let node = engine.node()?;
    if node.role != mgha_core::node::Role::Active {
        return Err(MemberError::NotActive {
            active: crate::EngineExt::try_sync(engine).and_then(|s| s.active_hint()),
        }
        .into());
    }
    let store = engine.store();
    let member = members(&store)?
        .into_iter()
        .find(|m| m.name == name)
        .ok_or_else(|| MemberError::NoSuchMember { name: name.into() })?;
    if member.node_id == node.node_id {
        return Err(MemberError::IsActive { name: name.into() }.into());
    }
    merge_members(&store, &[Member { removed: true, ..member.clone() }])?;
    Ok(member)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgha_core::node::{Designation, NodeState};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::create(&dir.path().join("s.redb"), &NodeState::new_primary("a")).expect("store");
        (dir, s)
    }

    #[test]
    fn join_key_is_single_use() {
        let (_d, s) = store();
        let key = issue_join_key(&s, Hash([1; 32]), 60_000, 1_000).expect("issued");
        let parsed = JoinKey::parse(&key.to_string()).expect("parses");
        assert_eq!(parsed, key);
        redeem_join_key(&s, &key.secret, 2_000).expect("first use");
        let e = redeem_join_key(&s, &key.secret, 3_000).expect_err("second use");
        assert!(e.to_string().contains("already used"), "{e}");
    }

    #[test]
    fn expired_or_unknown_keys_are_refused() {
        let (_d, s) = store();
        let key = issue_join_key(&s, Hash([1; 32]), 10, 1_000).expect("issued");
        assert!(redeem_join_key(&s, &key.secret, 2_000).expect_err("expired").to_string().contains("expired"));
        assert!(redeem_join_key(&s, "00", 0).is_err());
        assert!(JoinKey::parse("mgha1.zz.00").is_err());
    }

    #[test]
    fn malformed_keys_are_invalid_arguments() {
        let good = JoinKey { secret: "0".repeat(32), ca_fingerprint: Hash([0x1f; 32]) }.to_string();
        assert!(JoinKey::parse(&good).is_ok());
        // u8::from_str_radix takes "+f" as 15: a sign must not pass for a hex digit.
        let signed = good.replace("1f", "+f");
        for bad in
            ["", "mgha1", "mgha1.not-a-key", "mgha2.x.y", &signed, &format!("{good}.extra"), &good[..good.len() - 1]]
        {
            let e = JoinKey::parse(bad).expect_err(bad);
            assert_eq!(e.code(), mgha_core::ErrorCode::InvalidArgument, "{bad}: {e}");
        }
    }

    #[test]
    fn members_merge_by_node_id() {
        let (_d, s) = store();
        let m = |name: &str, id: Uid| Member::new(id, name, "x", Designation::Secondary, 1);
        let id = Uid::new_random();
        assert!(merge_members(&s, &[m("b", id)]).expect("merge"));
        assert!(!merge_members(&s, &[m("b", id)]).expect("merge"));
        assert!(merge_members(&s, &[m("b2", id)]).expect("merge"));
        assert_eq!(members(&s).expect("members").len(), 1);
    }

    #[test]
    fn member_lists_converge_whatever_the_order_of_merges() {
        let (b, c) = (Uid::new_random(), Uid::new_random());
        let rec = |id: Uid, name: &str, listen: &str, version: u64, removed: bool| Member {
            version,
            removed,
            ..Member::new(id, name, listen, Designation::Secondary, 1)
        };
        // Diverged records: two views of b at the same version, b's own newer record, c removed
        // on one node only.
        let records = [
            rec(b, "b", "h1:1", 0, false),
            rec(b, "b", "h2:1", 0, false),
            rec(b, "b", "h3:1", 1, false),
            rec(c, "c", "h4:1", 0, false),
            rec(c, "c", "h4:1", 0, true),
        ];
        let mut lists = Vec::new();
        for rotation in 0..records.len() {
            let (_d, s) = store();
            let mut order = records.to_vec();
            order.rotate_left(rotation);
            if rotation % 2 == 1 {
                order.reverse();
            }
            for r in &order {
                merge_members(&s, std::slice::from_ref(r)).expect("merge");
            }
            lists.push(member_records(&s).expect("records"));
        }
        assert!(lists.windows(2).all(|w| w[0] == w[1]), "{lists:?}");
        let (_d, s) = store();
        merge_members(&s, &lists[0]).expect("merge");
        assert_eq!(members(&s).expect("members").iter().map(|m| m.listen.as_str()).collect::<Vec<_>>(), ["h3:1"]);
        assert!(is_removed(&s, c).expect("removed") && !is_removed(&s, b).expect("not removed"));
    }

    #[test]
    fn a_removed_member_stays_removed_and_its_own_record_cannot_undo_it() {
        let (_d, s) = store();
        let b = Member::new(Uid::new_random(), "b", "h:1", Designation::Secondary, 1);
        merge_members(&s, std::slice::from_ref(&b)).expect("merge");
        merge_members(&s, &[Member { removed: true, ..b.clone() }]).expect("remove");
        // b, not yet aware, restarts elsewhere and bumps its own record: the removal holds.
        assert!(!merge_members(&s, &[Member { listen: "h:2".into(), version: 9, ..b.clone() }]).expect("merge"));
        assert!(!set_own_record(&s, Member { listen: "h:3".into(), ..b.clone() }).expect("own record"));
        assert!(members(&s).expect("members").is_empty());
    }

    #[test]
    fn own_record_changes_raise_its_version() {
        let (_d, s) = store();
        let me = Member::new(Uid::new_random(), "a", "h:1", Designation::Secondary, 0);
        assert!(set_own_record(&s, me.clone()).expect("first"));
        assert!(!set_own_record(&s, me.clone()).expect("same"));
        assert!(set_own_record(&s, Member { listen: "h:2".into(), ..me.clone() }).expect("moved"));
        let now = members(&s).expect("members");
        assert_eq!((now[0].listen.as_str(), now[0].version), ("h:2", 1));
        // A peer's stale view of this node, at the old version, does not win.
        assert!(!merge_members(&s, &[me]).expect("stale"));
    }
}
