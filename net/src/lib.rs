//! quorate: the tokio adapter around [`quorate_core`] and the public API.
//!
//! The adapter (sockets, driver task, storage, discovery) lands with its own
//! issue; for now this crate re-exports the protocol core.

#![deny(missing_docs)]

pub use quorate_core as core;
