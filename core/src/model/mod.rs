//! The data model: objects, schemas, validation and the state hash.

pub mod object;
pub mod schema;
pub mod state_hash;
pub mod validate;

pub use object::{Fields, Hash, Object, Uid};
pub use schema::{Constraint, FieldKind, FieldSpec, MergeStrategy, Schemas, TypeSchema, BUILTIN_TYPES};
pub use state_hash::StateHash;
