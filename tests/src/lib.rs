//! The shared test kit: a fault-injecting TCP proxy (`proxy`, which the demo uses too), a real
//! etcd for the arbiter's tests (`etcd`), child-process guards (`process`) and in-process
//! clusters (`inproc`), and a small filesystem that fills up on demand (`smallfs`). The
//! multi-process tests themselves live in `tests/tests/`.

pub mod etcd;
pub mod inproc;
pub mod process;
pub mod proxy;
pub mod seeded;
pub mod smallfs;
