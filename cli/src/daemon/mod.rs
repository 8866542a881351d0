//! The daemon: the admin HTTP/JSON API of one node, served on loopback by `mgha run`.
//!
//! `server` holds the router, middleware, the sync runtime beside it and shutdown; `routes` the
//! route table and the read/publish handlers; `sessions`, `backup` and `cluster` (join keys)
//! their own endpoints; `errors` the JSON error
//! shape and its HTTP statuses; `metrics` the Prometheus counters; `openapi` the document
//! generated from the handlers.

pub mod backup;
pub mod cluster;
pub mod errors;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod sessions;
