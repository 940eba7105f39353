//! The engine's one error type.

use crate::hash::HashCode;
use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the engine reports, by category a caller can act on.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O failure, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What the engine was doing (usually names a path).
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes failed a check (checksum, hash, framing).
    #[error("corrupt data in {location} at offset {offset}: {what}")]
    Corrupt {
        /// The file (usually a segment) holding the bad bytes.
        location: String,
        /// Byte offset of the bad record inside `location`.
        offset: u64,
        /// What check failed.
        what: String,
    },
    /// A block that should be in the store is not.
    #[error("block not found: {0}")]
    NotFound(HashCode),
    /// Malformed input handed to a decoder or an API call.
    #[error("bad input: {0}")]
    BadInput(String),
    /// Another process holds the store's writer lock.
    #[error("store {path} is locked for writing by another process ({holder})")]
    Locked {
        /// The store directory.
        path: PathBuf,
        /// Who holds the lock, as recorded in the lock file.
        holder: String,
    },
    /// The store or handle was closed.
    #[error("store is closed")]
    Closed,
    /// The redb index reported an error.
    #[error("index: {0}")]
    Index(String),
    /// The operation is not supported by this store or object.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    /// Wraps an I/O error with a description of the operation.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A decoding or argument error.
    pub fn bad(what: impl Into<String>) -> Self {
        Error::BadInput(what.into())
    }

    /// A corruption error at a location.
    pub fn corrupt(location: impl Into<String>, offset: u64, what: impl Into<String>) -> Self {
        Error::Corrupt {
            location: location.into(),
            offset,
            what: what.into(),
        }
    }
}

/// Adds path context to `std::io::Result`s.
pub trait IoContext<T> {
    /// Converts an I/O error into [`Error::Io`] with `context`.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

macro_rules! index_err {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Index(e.to_string())
            }
        }
    )*};
}
index_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
