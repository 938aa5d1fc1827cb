//! Device drivers: the in-memory wire, Linux TAP, and the impairment wrapper for any of them.

pub mod impair;
pub mod tap;
pub mod wire;
