//! Shared helpers of mgha's multi-process and cross-language integration tests (the tests
//! themselves live in `tests/tests/`).

pub mod etcd;
pub mod inproc;
pub mod process;
pub mod proxy;
