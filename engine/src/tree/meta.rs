//! Converting between OS metadata and dirent [`Meta`], including special files.

use crate::dir::{Meta, Owner};
use crate::osmeta::OsMeta;
use crate::transcribe::json::{JStr, Json};
use std::fs::FileType;
use std::os::unix::fs::FileTypeExt;

/// Meta key naming a special file's type (`fifo`, `chr`, `blk`, `sock`); such entries are
/// stored as empty files carrying this key, which cs.vt readers ignore.
pub const K_FTYPE: &str = "ftype";
/// Meta key holding a device's number.
pub const K_RDEV: &str = "rdev";

/// Kinds of special file vt records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialKind {
    /// A named pipe.
    Fifo,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A socket node, as made by `bind` on a mounted filesystem. Packing a
    /// directory skips sockets (they mean nothing without the process that
    /// listens), so only `engine::fs` creates these.
    Socket,
}

impl SpecialKind {
    /// The kind of `ft`, if it is a special file vt records when packing
    /// (sockets are not).
    pub fn of(ft: &FileType) -> Option<Self> {
        if ft.is_fifo() {
            Some(SpecialKind::Fifo)
        } else if ft.is_char_device() {
            Some(SpecialKind::Char)
        } else if ft.is_block_device() {
            Some(SpecialKind::Block)
        } else {
            None
        }
    }

    /// The name stored under [`K_FTYPE`].
    pub fn name(self) -> &'static str {
        match self {
            SpecialKind::Fifo => "fifo",
            SpecialKind::Char => "chr",
            SpecialKind::Block => "blk",
            SpecialKind::Socket => "sock",
        }
    }
}

/// The dirent meta for OS metadata.
pub fn dirent_meta(os: &OsMeta) -> Meta {
    let mut m = Meta::default();
    m.set_mode(os.mode);
    m.user = os.uid.map(|u| Owner::from_id(u, os.user.as_deref()));
    m.group = os.gid.map(|g| Owner::from_id(g, os.group.as_deref()));
    m.mtime_ns = Some(i128::from(os.mtime_ns));
    m.xattrs = os
        .xattrs
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    m
}

/// The dirent meta of a special file.
pub fn special_meta(os: &OsMeta, kind: SpecialKind, rdev: u64) -> Meta {
    let mut m = dirent_meta(os);
    m.other
        .insert(K_FTYPE.into(), Json::Str(JStr::from_text(kind.name())));
    if matches!(kind, SpecialKind::Char | SpecialKind::Block) {
        m.other.insert(K_RDEV.into(), Json::Num(rdev.to_string()));
    }
    m
}

/// The special-file kind and device number recorded in `m`, if any.
pub fn special_of(m: &Meta) -> Option<(SpecialKind, u64)> {
    let kind = match m.other.get(K_FTYPE)? {
        Json::Str(s) => match s.to_text().ok()?.as_str() {
            "fifo" => SpecialKind::Fifo,
            "chr" => SpecialKind::Char,
            "blk" => SpecialKind::Block,
            "sock" => SpecialKind::Socket,
            _ => return None,
        },
        _ => return None,
    };
    let rdev = match m.other.get(K_RDEV) {
        Some(Json::Num(n)) => n.parse().ok()?,
        _ => 0,
    };
    Some((kind, rdev))
}

/// OS metadata to apply for a dirent's meta. Entries with no ACL get `default_mode`.
pub fn os_meta(m: &Meta, default_mode: u32) -> OsMeta {
    let mode = if m.acl.is_some() {
        m.mode()
    } else {
        default_mode
    };
    let (user, uid) = split_owner(m.user.as_ref());
    let (group, gid) = split_owner(m.group.as_ref());
    OsMeta {
        mode,
        uid,
        gid,
        user,
        group,
        mtime_ns: m.mtime_ns.and_then(|n| i64::try_from(n).ok()).unwrap_or(0),
        xattrs: m.xattrs.iter().cloned().collect(),
    }
}

fn split_owner(o: Option<&Owner>) -> (Option<String>, Option<u32>) {
    match o {
        Some(Owner::Name(n)) => (Some(n.clone()), None),
        Some(Owner::Id(i)) => (None, Some(*i)),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_meta_roundtrip() {
        let os = OsMeta {
            mode: 0o6755,
            uid: Some(0),
            gid: Some(0),
            user: Some("root".into()),
            group: Some("root".into()),
            mtime_ns: 1_700_000_000_123_456_789,
            xattrs: [(b"user.a".to_vec(), b"\x00\xff".to_vec())]
                .into_iter()
                .collect(),
        };
        let m = dirent_meta(&os);
        let back = os_meta(&Meta::from_text(&m.to_text()).unwrap(), 0o644);
        assert_eq!(back.mode, 0o6755);
        assert_eq!(back.mtime_ns, os.mtime_ns);
        assert_eq!(back.user.as_deref(), Some("root"));
        assert_eq!(back.xattrs, os.xattrs);
    }

    #[test]
    fn special_roundtrip() {
        let m = special_meta(&OsMeta::default(), SpecialKind::Char, 0x0103);
        let m = Meta::from_text(&m.to_text()).unwrap();
        assert_eq!(special_of(&m), Some((SpecialKind::Char, 0x0103)));
        assert_eq!(special_of(&Meta::default()), None);
    }
}
