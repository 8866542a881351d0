//! Roles: who may publish, and how that moves between nodes. The decisions are the pure
//! [`machine::RoleMachine`]; the sync runtime feeds it events and carries out its actions.

pub mod machine;

pub use machine::{Action, ChangeoverFailure, Event, Handover, PlannedChangeover, Refusal, RoleMachine};
