//! The JSON changeset that `mgha apply` and the admin API accept: one changeset is one revision.
//!
//! ```json
//! {"message": "web tier",
//!  "changes": [
//!    {"op": "put", "type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.1"}},
//!    {"op": "delete", "type": "host", "name": "old-host"}]}
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limits::{CHANGESET_BYTES_MAX, CHANGESET_CHANGES_MAX, MESSAGE_BYTES_MAX};
use crate::model::Fields;

/// One revision's worth of changes, as an administrator writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSet {
    #[serde(default)]
    pub message: String,
    pub changes: Vec<ChangeInput>,
}

/// A put (create or replace) or a delete of one object, named by `name` or `uid`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChangeInput {
    Put {
        #[serde(rename = "type")]
        type_name: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<String>,
        #[serde(default)]
        fields: Fields,
    },
    Delete {
        #[serde(rename = "type")]
        type_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<String>,
    },
}

impl ChangeInput {
    pub fn type_name(&self) -> &str {
        match self {
            ChangeInput::Put { type_name, .. } | ChangeInput::Delete { type_name, .. } => type_name,
        }
    }

    /// How the change names its object, for messages and locks.
    pub fn label(&self) -> String {
        match self {
            ChangeInput::Put { type_name, name, .. } => format!("{type_name} '{name}'"),
            ChangeInput::Delete { type_name, name: Some(name), .. } => format!("{type_name} '{name}'"),
            ChangeInput::Delete { type_name, uid, .. } => {
                format!("{type_name} {}", uid.as_deref().unwrap_or("?"))
            }
        }
    }
}

impl ChangeInput {
    /// Parses one JSON change (`{"op": "put", ...}`), refusing a key written twice anywhere.
    pub fn from_json(bytes: &[u8]) -> Result<ChangeInput> {
        if bytes.len() > CHANGESET_BYTES_MAX {
            return Err(Error::TooLarge { what: "change".into(), size: bytes.len(), max: CHANGESET_BYTES_MAX });
        }
        crate::json_scan::scan_document(bytes)?;
        serde_json::from_slice(bytes).map_err(|e| Error::InvalidChangeset(e.to_string()))
    }
}

impl ChangeSet {
    /// Parses and bounds a JSON changeset; errors give the line and column.
    pub fn from_json(bytes: &[u8]) -> Result<ChangeSet> {
        if bytes.len() > CHANGESET_BYTES_MAX {
            return Err(Error::TooLarge { what: "changeset".into(), size: bytes.len(), max: CHANGESET_BYTES_MAX });
        }
        // Duplicate keys and the change count are checked before anything is built.
        crate::json_scan::scan_changeset(bytes)?;
        let cs: ChangeSet = serde_json::from_slice(bytes).map_err(|e| Error::InvalidChangeset(e.to_string()))?;
        cs.check()?;
        Ok(cs)
    }

    /// Checks the limits and the form of every change.
    pub fn check(&self) -> Result<()> {
        if self.message.len() > MESSAGE_BYTES_MAX {
            return Err(Error::TooLarge { what: "message".into(), size: self.message.len(), max: MESSAGE_BYTES_MAX });
        }
        if self.changes.len() > CHANGESET_CHANGES_MAX {
            return Err(Error::TooMany {
                what: "changes in one changeset".into(),
                count: self.changes.len(),
                max: CHANGESET_CHANGES_MAX,
            });
        }
        if self.changes.is_empty() {
            return Err(Error::InvalidChangeset("no changes".into()));
        }
        for (i, c) in self.changes.iter().enumerate() {
            if let ChangeInput::Delete { name: None, uid: None, .. } = c {
                return Err(Error::InvalidChangeset(format!("change {i}: a delete needs a name or a uid")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let cs = ChangeSet::from_json(
            br#"{"message": "web tier", "changes": [
                {"op": "put", "type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.1"}},
                {"op": "put", "type": "group", "name": "web", "fields": {"members": ["web1"]}},
                {"op": "delete", "type": "host", "name": "old-host"}]}"#,
        )
        .expect("parses");
        assert_eq!(cs.changes.len(), 3);
        assert_eq!(cs.changes[2].label(), "host 'old-host'");
    }

    #[test]
    fn malformed_json_names_the_place() {
        let e = ChangeSet::from_json(b"{\"changes\": [}").expect_err("malformed");
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn a_changeset_over_the_change_limit_is_too_large() {
        let delete = ChangeInput::Delete { type_name: "host".into(), name: Some("h".into()), uid: None };
        let cs = ChangeSet { message: String::new(), changes: vec![delete; CHANGESET_CHANGES_MAX + 1] };
        let e = cs.check().expect_err("over the limit");
        assert_eq!(e.code(), crate::ErrorCode::TooLarge, "{e}");
    }

    #[test]
    fn unknown_keys_and_ops_are_refused() {
        assert!(ChangeSet::from_json(br#"{"changes": [{"op": "upsert", "type": "host", "name": "a"}]}"#).is_err());
        assert!(ChangeSet::from_json(br#"{"changes": [{"op": "put", "type": "host", "name": "a", "feilds": {}}]}"#)
            .is_err());
        assert!(ChangeSet::from_json(br#"{"changes": [{"op": "delete", "type": "host"}]}"#).is_err());
    }
}
