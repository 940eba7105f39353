//! The files cache: (path, size, mtime, ctime, inode) → content reference, so re-packing an
//! unchanged tree reads only metadata.
//!
//! The cache is advisory: a missing, stale or damaged cache file only costs re-reading
//! files. Layout (all integers little-endian):
//! `MAGIC`, then records `BSData(path) u64 size i64 mtime_ns i64 ctime_ns u64 ino u64 dev
//! BSData(block record)`, then a crc32 of everything before it.

use crate::block::BlockRef;
use crate::codec::{put_bsdata, Reader};
use crate::error::{IoContext, Result};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// First bytes of a files-cache file (format version 1).
pub const MAGIC: &[u8; 8] = b"VTFCACH1";

/// The file attributes that must all match for a cached reference to be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// File size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Inode change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Device number.
    pub dev: u64,
}

impl FileStamp {
    /// The stamp of a file's metadata.
    pub fn of(m: &std::fs::Metadata) -> Self {
        FileStamp {
            size: m.len(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            ino: m.ino(),
            dev: m.dev(),
        }
    }
}

/// A files cache loaded from disk, collecting the entries seen in this run.
#[derive(Debug)]
pub struct FileCache {
    path: PathBuf,
    old: HashMap<Vec<u8>, (FileStamp, BlockRef)>,
    seen: Mutex<HashMap<Vec<u8>, (FileStamp, BlockRef)>>,
}

impl FileCache {
    /// Loads the cache at `path`; a missing or damaged file gives an empty cache.
    pub fn load(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let old = std::fs::read(&path)
            .ok()
            .and_then(|b| decode(&b))
            .unwrap_or_default();
        FileCache {
            path,
            old,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// A cache that remembers nothing from earlier runs.
    pub fn empty(path: impl Into<PathBuf>) -> Self {
        FileCache {
            path: path.into(),
            old: HashMap::new(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Number of entries loaded from disk.
    pub fn loaded_len(&self) -> usize {
        self.old.len()
    }

    /// The cached reference for `file` if its stamp is unchanged.
    pub fn lookup(&self, file: &Path, stamp: &FileStamp) -> Option<BlockRef> {
        let key = file.as_os_str().as_bytes();
        match self.old.get(key) {
            Some((s, b)) if s == stamp && b.span() == stamp.size => Some(b.clone()),
            _ => None,
        }
    }

    /// Records the reference stored for `file` in this run.
    pub fn insert(&self, file: &Path, stamp: FileStamp, block: BlockRef) {
        let key = file.as_os_str().as_bytes().to_vec();
        self.seen.lock().insert(key, (stamp, block));
    }

    /// Writes the entries seen in this run, atomically replacing the old file.
    ///
    /// Call only after the blocks they reference are committed.
    pub fn save(&self) -> Result<()> {
        let seen = self.seen.lock();
        let mut buf = Vec::with_capacity(64 * seen.len() + 16);
        buf.extend_from_slice(MAGIC);
        for (k, (s, b)) in seen.iter() {
            put_bsdata(&mut buf, k);
            for v in [s.size, s.mtime_ns as u64, s.ctime_ns as u64, s.ino, s.dev] {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            b.encode_into(&mut buf);
        }
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
        f.write_all(&buf)
            .and_then(|_| f.sync_data())
            .ctx(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).ctx(|| format!("rename {}", self.path.display()))
    }
}

fn decode(b: &[u8]) -> Option<HashMap<Vec<u8>, (FileStamp, BlockRef)>> {
    let body_len = b.len().checked_sub(4)?;
    let (body, crc) = b.split_at(body_len);
    if !body.starts_with(MAGIC) || crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    let mut r = Reader::new(&body[MAGIC.len()..]);
    let mut out = HashMap::new();
    while !r.is_empty() {
        let key = r.bsdata().ok()?.to_vec();
        let mut n = [0u64; 5];
        for v in &mut n {
            *v = u64::from_le_bytes(r.take(8).ok()?.try_into().ok()?);
        }
        let block = BlockRef::decode_from(&mut r).ok()?;
        let stamp = FileStamp {
            size: n[0],
            mtime_ns: n[1] as i64,
            ctime_ns: n[2] as i64,
            ino: n[3],
            dev: n[4],
        };
        out.insert(key, (stamp, block));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, b"hello").unwrap();
        let stamp = FileStamp::of(&std::fs::metadata(&f).unwrap());
        let cache_path = dir.path().join("c/files.cache");
        let c = FileCache::load(&cache_path);
        assert!(c.lookup(&f, &stamp).is_none());
        c.insert(&f, stamp, BlockRef::literal(b"hello"));
        c.save().unwrap();
        let c2 = FileCache::load(&cache_path);
        assert_eq!(c2.lookup(&f, &stamp), Some(BlockRef::literal(b"hello")));
        let mut changed = stamp;
        changed.mtime_ns += 1;
        assert!(c2.lookup(&f, &changed).is_none());
    }

    #[test]
    fn damaged_cache_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("files.cache");
        let c = FileCache::load(&p);
        c.insert(
            Path::new("/x"),
            FileStamp {
                size: 1,
                mtime_ns: 2,
                ctime_ns: 3,
                ino: 4,
                dev: 5,
            },
            BlockRef::literal(b"x"),
        );
        c.save().unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(FileCache::load(&p).loaded_len(), 0);
        std::fs::write(&p, &bytes[..n / 3]).unwrap();
        assert_eq!(FileCache::load(&p).loaded_len(), 0);
    }
}
