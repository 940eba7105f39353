//! Filesystem metadata as the operating system gives it, and applying it back on restore.

use crate::error::{Error, IoContext, Result};
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Group, Uid, User};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Mode bits vt records: permissions plus setuid, setgid and sticky.
pub const MODE_MASK: u32 = 0o7777;

/// Metadata of one filesystem entry as read from the OS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsMeta {
    /// Permission bits incl. setuid (0o4000), setgid (0o2000), sticky (0o1000).
    pub mode: u32,
    /// Numeric owner, when known.
    pub uid: Option<u32>,
    /// Numeric group, when known.
    pub gid: Option<u32>,
    /// Owner name, when the system knows one.
    pub user: Option<String>,
    /// Group name, when the system knows one.
    pub group: Option<String>,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Extended attributes, name → value.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Caches uid/gid ↔ name lookups, which are slow and repeat across a tree.
#[derive(Debug, Default)]
pub struct NameCache {
    users: Mutex<HashMap<u32, Option<String>>>,
    groups: Mutex<HashMap<u32, Option<String>>>,
    uids: Mutex<HashMap<String, Option<u32>>>,
    gids: Mutex<HashMap<String, Option<u32>>>,
}

impl NameCache {
    /// The user name of `uid`, if any.
    pub fn user(&self, uid: u32) -> Option<String> {
        self.users
            .lock()
            .entry(uid)
            .or_insert_with(|| {
                User::from_uid(Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }

    /// The group name of `gid`, if any.
    pub fn group(&self, gid: u32) -> Option<String> {
        self.groups
            .lock()
            .entry(gid)
            .or_insert_with(|| {
                Group::from_gid(Gid::from_raw(gid))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }

    /// The uid of user `name` on this system, if any.
    pub fn uid(&self, name: &str) -> Option<u32> {
        *self
            .uids
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| User::from_name(name).ok().flatten().map(|u| u.uid.as_raw()))
    }

    /// The gid of group `name` on this system, if any.
    pub fn gid(&self, name: &str) -> Option<u32> {
        *self.gids.lock().entry(name.to_string()).or_insert_with(|| {
            Group::from_name(name)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
        })
    }
}

impl OsMeta {
    /// Reads the metadata of `path` (already `lstat`ed into `m`), with xattrs when asked.
    pub fn read(
        path: &Path,
        m: &std::fs::Metadata,
        names: &NameCache,
        with_xattrs: bool,
    ) -> Result<Self> {
        let xattrs = if with_xattrs {
            read_xattrs(path)?
        } else {
            BTreeMap::new()
        };
        Ok(OsMeta {
            mode: m.mode() & MODE_MASK,
            uid: Some(m.uid()),
            gid: Some(m.gid()),
            user: names.user(m.uid()),
            group: names.group(m.gid()),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            xattrs,
        })
    }
}

/// Reads every extended attribute of `path` (not following a final symlink).
pub fn read_xattrs(path: &Path) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = BTreeMap::new();
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if is_unsupported(&e) => return Ok(out),
        Err(e) => return Err(Error::io(format!("list xattrs of {}", path.display()), e)),
    };
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(v)) => {
                out.insert(name.as_bytes().to_vec(), v);
            }
            Ok(None) => {}
            Err(e) if is_unsupported(&e) => {}
            Err(e) => return Err(Error::io(format!("read xattr of {}", path.display()), e)),
        }
    }
    Ok(out)
}

fn is_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTSUP) | Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::ENODATA)
    ) || e.kind() == std::io::ErrorKind::NotFound
}

/// What to restore besides content and mode.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// Set owner and group (meaningful when running as root).
    pub owner: bool,
    /// Set extended attributes.
    pub xattrs: bool,
}

/// Where [`apply`] and [`apply_file`] set metadata: a path (not following a final
/// symlink) or a file this process has open.
enum Target<'a> {
    Path { is_symlink: bool },
    File(&'a std::fs::File),
}

impl Target<'_> {
    fn chown(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> std::io::Result<()> {
        match self {
            Target::Path { .. } => std::os::unix::fs::lchown(path, uid, gid),
            Target::File(f) => std::os::unix::fs::fchown(f, uid, gid),
        }
    }

    fn set_xattr(&self, path: &Path, name: &[u8], value: &[u8]) -> std::io::Result<()> {
        let name = std::ffi::OsStr::from_bytes_compat(name);
        match self {
            Target::Path { .. } => xattr::set(path, name, value),
            Target::File(f) => xattr::FileExt::set_xattr(*f, name, value),
        }
    }

    fn chmod(&self, path: &Path, mode: u32) -> Result<()> {
        let perm = std::fs::Permissions::from_mode(mode);
        match self {
            // A symlink's own mode cannot be set on Linux (and chmod would follow it).
            Target::Path { is_symlink: true } => Ok(()),
            Target::Path { .. } => std::fs::set_permissions(path, perm),
            Target::File(f) => f.set_permissions(perm),
        }
        .ctx(|| format!("chmod {}", path.display()))
    }

    fn set_mtime(&self, path: &Path, mtime_ns: i64) -> Result<()> {
        match self {
            Target::Path { .. } => set_mtime(path, mtime_ns),
            Target::File(f) => {
                let ts = timespec(mtime_ns);
                nix::sys::stat::futimens(f, &ts, &ts)
                    .map_err(|e| Error::io(format!("set times of {}", path.display()), e.into()))
            }
        }
    }
}

/// Applies `meta` to the entry at `path`. Returns warnings for what could not be applied
/// but does not endanger the data (xattrs refused by the filesystem, unknown owners).
///
/// Fails on I/O errors setting mode or times.
pub fn apply(
    path: &Path,
    meta: &OsMeta,
    is_symlink: bool,
    names: &NameCache,
    opts: ApplyOptions,
) -> Result<Vec<String>> {
    apply_to(&Target::Path { is_symlink }, path, meta, names, opts)
}

/// [`apply`] for a regular file this process just created and still has open as `file`
/// (`path` names it in messages): the calls go through the descriptor, with no path
/// lookups.
///
/// Fails on I/O errors setting mode or times.
pub fn apply_file(
    file: &std::fs::File,
    path: &Path,
    meta: &OsMeta,
    names: &NameCache,
    opts: ApplyOptions,
) -> Result<Vec<String>> {
    apply_to(&Target::File(file), path, meta, names, opts)
}

fn apply_to(
    target: &Target<'_>,
    path: &Path,
    meta: &OsMeta,
    names: &NameCache,
    opts: ApplyOptions,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    if opts.owner {
        // A name known here wins; else the recorded number; else leave it unchanged.
        let uid = meta.user.as_deref().and_then(|n| names.uid(n)).or(meta.uid);
        let gid = meta
            .group
            .as_deref()
            .and_then(|n| names.gid(n))
            .or(meta.gid);
        if uid.is_some() || gid.is_some() {
            if let Err(e) = target.chown(path, uid, gid) {
                warnings.push(format!(
                    "{}: cannot set owner {uid:?}:{gid:?}: {e}",
                    path.display()
                ));
            }
        }
    }
    if opts.xattrs {
        for (k, v) in &meta.xattrs {
            if let Err(e) = target.set_xattr(path, k, v) {
                warnings.push(format!(
                    "{}: cannot set xattr {}: {e}",
                    path.display(),
                    String::from_utf8_lossy(k)
                ));
            }
        }
    }
    // chmod after chown: chown clears setuid/setgid bits.
    target.chmod(path, meta.mode & MODE_MASK)?;
    target.set_mtime(path, meta.mtime_ns)?;
    Ok(warnings)
}

fn timespec(ns: i64) -> TimeSpec {
    TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

/// Sets the modification (and access) time of `path` without following a final symlink.
pub fn set_mtime(path: &Path, mtime_ns: i64) -> Result<()> {
    let ts = timespec(mtime_ns);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &ts,
        &ts,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| Error::io(format!("set times of {}", path.display()), e.into()))
}

trait OsStrCompat {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr;
}

impl OsStrCompat for std::ffi::OsStr {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_apply_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"x").unwrap();
        std::fs::write(&b, b"y").unwrap();
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o4751)).unwrap();
        set_mtime(&a, 1_600_000_000_123_456_789).unwrap();
        let names = NameCache::default();
        let _ = xattr::set(&a, "user.k", b"v\x00\xff");
        let m = OsMeta::read(&a, &std::fs::symlink_metadata(&a).unwrap(), &names, true).unwrap();
        assert_eq!(m.mode, 0o4751);
        assert_eq!(m.mtime_ns, 1_600_000_000_123_456_789);
        let opts = ApplyOptions {
            owner: false,
            xattrs: true,
        };
        let w = apply(&b, &m, false, &names, opts).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let m2 = OsMeta::read(&b, &std::fs::symlink_metadata(&b).unwrap(), &names, true).unwrap();
        assert_eq!(m, m2);
        // The same through an open descriptor, owner included (a no-op unless root).
        let c = dir.path().join("c");
        let f = std::fs::File::create_new(&c).unwrap();
        let opts = ApplyOptions {
            owner: true,
            xattrs: true,
        };
        let w = apply_file(&f, &c, &m, &names, opts).unwrap();
        drop(f);
        let m3 = OsMeta::read(&c, &std::fs::symlink_metadata(&c).unwrap(), &names, true).unwrap();
        assert_eq!(
            (m3.mode, m3.mtime_ns, &m3.xattrs),
            (m.mode, m.mtime_ns, &m.xattrs),
            "{w:?}"
        );
    }
}
