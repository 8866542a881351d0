//! The daemon: the admin HTTP/JSON API of one node, served on loopback by `mgha run`.
//!
//! `server` holds the router, middleware and the node it serves, and shutdown; `connections`
//! the accept loop with its connection caps and read deadlines; `routes` the
//! route table and the read/publish handlers; `sessions`, `backup`, `cluster` (join keys),
//! `roles` (changeover, promotion, the event log), `collisions`, `plugins` and `archive` (the stores a
//! full sync replaced) their own endpoints; `errors`
//! the JSON error shape and its HTTP statuses; `metrics` the Prometheus counters; `openapi` the
//! document generated from the handlers; `events` the server-sent status stream and `ui` the
//! status page built on it (its files in `ui/`).

pub mod archive;
pub mod backup;
pub mod cluster;
pub mod collisions;
pub mod connections;
pub mod domains;
pub mod errors;
pub mod events;
pub mod health;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod plugins;
pub mod process;
pub mod roles;
pub mod routes;
pub mod server;
pub mod sessions;
pub mod ui;
