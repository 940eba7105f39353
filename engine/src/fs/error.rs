//! Filesystem errors, each mapping to the errno a POSIX caller expects.

use crate::error::Error;
use std::fmt;

/// Why a filesystem operation failed.
#[derive(Debug)]
pub enum FsError {
    /// No such entry or inode (`ENOENT`).
    NotFound,
    /// The name is taken (`EEXIST`).
    Exists,
    /// A path component or target is not a directory (`ENOTDIR`).
    NotDir,
    /// A directory where a non-directory is needed (`EISDIR`).
    IsDir,
    /// The directory is not empty (`ENOTEMPTY`).
    NotEmpty,
    /// Forbidden by the mount mode, e.g. append-only (`EPERM`).
    Perm,
    /// The mount is read-only (`EROFS`).
    ReadOnly,
    /// An invalid argument, e.g. moving a directory into itself (`EINVAL`).
    Invalid,
    /// A name longer than [`super::NAME_MAX`] (`ENAMETOOLONG`).
    NameTooLong,
    /// No such extended attribute (`ENODATA`).
    NoAttr,
    /// Not supported by this filesystem (`EOPNOTSUPP`).
    NotSupported,
    /// An unknown file handle (`EBADF`).
    BadHandle,
    /// Too large (`EFBIG`).
    TooBig,
    /// The store failed (`EIO`).
    Store(Error),
}

/// Result of filesystem operations.
pub type FsResult<T> = std::result::Result<T, FsError>;

impl FsError {
    /// The errno value for this error.
    pub fn errno(&self) -> i32 {
        use FsError::*;
        match self {
            NotFound => libc::ENOENT,
            Exists => libc::EEXIST,
            NotDir => libc::ENOTDIR,
            IsDir => libc::EISDIR,
            NotEmpty => libc::ENOTEMPTY,
            Perm => libc::EPERM,
            ReadOnly => libc::EROFS,
            Invalid => libc::EINVAL,
            NameTooLong => libc::ENAMETOOLONG,
            NoAttr => libc::ENODATA,
            NotSupported => libc::EOPNOTSUPP,
            BadHandle => libc::EBADF,
            TooBig => libc::EFBIG,
            Store(_) => libc::EIO,
        }
    }
}

impl From<Error> for FsError {
    fn from(e: Error) -> Self {
        FsError::Store(e)
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::Store(e) => write!(f, "store error: {e}"),
            other => write!(f, "{}", std::io::Error::from_raw_os_error(other.errno())),
        }
    }
}

impl std::error::Error for FsError {}
