//! Deletes asked of the databases held elsewhere (core's `Users` seam) before any lock is
//! taken: a publish's deletes, a revert's and a collision resolution's.

use super::Engine;
use crate::changeset::ChangeInput;
use crate::error::{Error, Result};
use crate::model::Uid;

impl Engine {
    /// Asks the databases held elsewhere ([`crate::store::Users::users_elsewhere`]) whether
    /// they use an object these changes delete, before any lock is taken: the answer may come
    /// over the network. (Inside the commit, the databases held here are asked again.)
    pub(super) fn check_users_elsewhere(&self, changes: &[ChangeInput]) -> Result<()> {
        let store = self.store();
        if store.globals().1.is_none() {
            return Ok(());
        }
        let mut deleted: Vec<(Uid, &str, String)> = Vec::new();
        for change in changes {
            let ChangeInput::Delete { type_name, name, uid } = change else { continue };
            if crate::model::schema::MANAGED_TYPES.contains(&type_name.as_str()) {
                continue;
            }
            let found = match (uid, name) {
                (Some(u), _) => Uid::parse(u).and_then(|u| store.get_by_uid(&u).ok().flatten()),
                (None, Some(n)) => store.uid_of(type_name, n)?.and_then(|u| store.get_by_uid(&u).ok().flatten()),
                (None, None) => None,
            };
            if let Some(o) = found.filter(|o| &o.type_name == type_name) {
                deleted.push((o.uid, type_name.as_str(), o.name));
            }
        }
        self.check_deleted_elsewhere(deleted)
    }

    /// Refuses the deletion of objects (uid, type, name) that a database held elsewhere uses,
    /// naming the first and who uses it. Registry objects are the node's own: not asked about.
    pub(crate) fn check_deleted_elsewhere(&self, mut deleted: Vec<(Uid, &str, String)>) -> Result<()> {
        deleted.retain(|(_, t, _)| !crate::model::schema::MANAGED_TYPES.contains(t));
        let Some(users) = self.store().globals().1 else {
            return Ok(());
        };
        if deleted.is_empty() {
            return Ok(());
        }
        let uids: Vec<Uid> = deleted.iter().map(|(u, _, _)| *u).collect();
        let used = users.users_elsewhere(&uids)?;
        let Some((uid, _)) = used.first() else {
            return Ok(());
        };
        let (_, type_name, name) = deleted.iter().find(|(u, _, _)| u == uid).unwrap_or(&deleted[0]);
        let who: Vec<&str> = used.iter().filter(|(u, _)| u == uid).map(|(_, w)| w.as_str()).collect();
        Err(Error::StillReferenced { type_name: type_name.to_string(), name: name.clone(), used_by: who.join(", ") })
    }
}
