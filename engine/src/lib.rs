//! vt-engine: a content-addressed, deduplicating block store with a filesystem layer.
//!
//! Layers, bottom up: [`codec`] and [`hash`] (primitive encodings), [`block`]
//! (block references) and [`transcribe`] (their text forms), [`chunk`] and
//! [`blockify`] (content-defined chunking into indirect trees), [`segment`] and
//! [`index`] (on-disk records and the redb index), [`store`] (the `Store` trait,
//! DataDir and Memory stores).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod archive;
pub mod block;
pub mod blockify;
pub mod chunk;
pub mod codec;
pub mod dir;
pub mod error;
pub mod filecache;
pub mod fs;
pub mod gc;
pub mod hash;
pub mod index;
pub mod io;
pub mod osmeta;
pub mod read;
pub mod segment;
pub mod store;
pub mod timefmt;
pub mod transcribe;
pub mod tree;

pub use block::BlockRef;
pub use dir::{Dirent, DirentKind, Meta};
pub use error::{Error, Result};
pub use hash::{HashAlg, HashCode};
pub use store::Store;
