//! vt-engine: a content-addressed, deduplicating block store with a filesystem layer.
//!
//! Layers, bottom up: [`codec`] and [`hash`] (primitive encodings), [`block`]
//! (block references) and [`transcribe`] (their text forms), [`chunk`] and
//! [`blockify`] (content-defined chunking into indirect trees), [`segment`] and
//! [`index`] (on-disk records and the redb index), [`store`] (the `Store` trait,
//! DataDir and Memory stores).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod block;
pub mod codec;
pub mod error;
pub mod hash;
pub mod index;
pub mod io;
pub mod segment;
pub mod store;
pub mod transcribe;

pub use block::BlockRef;
pub use error::{Error, Result};
pub use hash::{HashAlg, HashCode};
pub use store::Store;
