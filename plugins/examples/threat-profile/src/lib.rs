//! Example plugin `threat`: threat-prevention profiles, type `threat.profile`.
//!
//! It has no merge of its own: its schema's per-field strategies do it. The thresholds merge by
//! `min`, so a collision keeps the stricter profile (protections act on threats at or above the
//! severity threshold, and on signatures at or above the confidence threshold), and protections
//! merge as a set. Its validation adds what a schema cannot say: a profile name is a lowercase
//! slug, and a profile that prevents (blocks) does not act on low-confidence signatures.

use mgha_plugin::{Description, FieldError, FieldKind, FieldSpec, MergeStrategy, Object, Plugin, TypeSchema, Value};

const PROFILE: &str = "threat.profile";
/// Below this confidence, blocking costs more in false positives than it saves.
const PREVENT_CONFIDENCE_MIN: i64 = 30;

struct Threat;

impl Plugin for Threat {
    fn describe() -> Description {
        Description {
            name: "threat".into(),
            version: "1.0.0".into(),
            types: vec![TypeSchema::new(
                PROFILE,
                vec![
                    // 1 low, 2 medium, 3 high, 4 critical.
                    FieldSpec::new("severity-threshold", FieldKind::int(1, 4)).required().merge(MergeStrategy::Min),
                    FieldSpec::new("confidence-threshold", FieldKind::int(0, 100)).merge(MergeStrategy::Min),
                    FieldSpec::new("action", FieldKind::one_of(&["detect", "prevent"])).required(),
                    FieldSpec::new("protections", FieldKind::list(FieldKind::String)).merge(MergeStrategy::SetUnion),
                    FieldSpec::new("comments", FieldKind::String),
                ],
            )],
            merge: vec![],
        }
    }

    fn validate(o: &Object) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let slug = o.name.len() >= 3
            && o.name.len() <= 64
            && o.name.starts_with(|c: char| c.is_ascii_lowercase())
            && o.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !slug {
            errors.push(FieldError::new("", "a profile name is 3 to 64 lowercase letters, digits and dashes"));
        }
        let prevents = o.get("action").and_then(Value::as_str) == Some("prevent");
        let confidence = o.get("confidence-threshold").and_then(Value::as_i64).unwrap_or(0);
        if prevents && confidence < PREVENT_CONFIDENCE_MIN {
            errors.push(FieldError::new(
                "confidence-threshold",
                format!("a profile that prevents acts on confidence {PREVENT_CONFIDENCE_MIN} or more"),
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

mgha_plugin::export!(Threat);
