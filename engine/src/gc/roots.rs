//! The roots registry: every archive that wrote into a store, plus explicit pins.
//!
//! Stored in the index's `meta` table as text, one root per line: `archive <absolute path>`
//! or `pin <transcription>` (transcriptions hold no whitespace, paths may).

use crate::archive::Archive;
use crate::block::BlockRef;
use crate::dir::Dirent;
use crate::error::{Error, Result};
use crate::hash::HashCode;
use crate::transcribe::SpanResolver;
use std::path::{Path, PathBuf};

/// One root of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// An archive file whose every revision is live.
    Archive(PathBuf),
    /// A pinned dirent or block reference transcription.
    Pin(String),
}

impl std::fmt::Display for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Root::Archive(p) => write!(f, "archive {}", p.display()),
            Root::Pin(r) => write!(f, "pin {r}"),
        }
    }
}

/// A parsed root reference: what marking starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootRef {
    /// A dirent (an archive revision or a pinned dirent): its whole tree.
    Dirent(Box<Dirent>),
    /// A pinned block reference: its block tree (not interpreted as a directory).
    Block(BlockRef),
}

/// Encodes the registry value.
pub fn encode(roots: &[Root]) -> Vec<u8> {
    let mut s = String::new();
    for r in roots {
        s.push_str(&r.to_string());
        s.push('\n');
    }
    s.into_bytes()
}

/// Decodes the registry value. Fails on a line that is neither `archive` nor `pin`.
pub fn decode(v: &[u8]) -> Result<Vec<Root>> {
    let text = std::str::from_utf8(v).map_err(|_| Error::Index("gc_roots is not UTF-8".into()))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(' ') {
            Some(("archive", p)) => Ok(Root::Archive(PathBuf::from(p))),
            Some(("pin", r)) => Ok(Root::Pin(r.to_string())),
            _ => Err(Error::Index(format!("malformed gc_roots line {l:?}"))),
        })
        .collect()
}

/// `path` made absolute (relative to the current directory) without resolving symlinks.
/// Fails when the current directory cannot be read.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io(format!("resolving {}", path.display()), e))
}

/// Spans do not matter to GC: left-out spans in cs.vt transcriptions resolve to 0.
struct AnySpan;

impl SpanResolver for AnySpan {
    fn block_span(&self, _hash: &HashCode) -> Result<u64> {
        Ok(0)
    }
    fn indirect_span(&self, _hash: &HashCode) -> Result<u64> {
        Ok(0)
    }
}

/// Parses a pin: a dirent transcription, else a block reference transcription.
/// Fails when it is neither.
pub fn parse_ref(s: &str) -> Result<RootRef> {
    if s.is_empty() || s.contains(char::is_whitespace) {
        return Err(Error::bad(format!("{s:?} is not a reference")));
    }
    if let Ok(d) = Dirent::parse_with(s, Some(&AnySpan)) {
        return Ok(RootRef::Dirent(Box::new(d)));
    }
    BlockRef::parse_with(s, Some(&AnySpan))
        .map(RootRef::Block)
        .map_err(|e| {
            Error::bad(format!(
                "{s:?} is neither a dirent nor a block reference: {e}"
            ))
        })
}

/// Why a registered root could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootProblem {
    /// The root.
    pub root: Root,
    /// True when the archive file does not exist.
    pub missing: bool,
    /// What is wrong.
    pub what: String,
}

/// The references of every root, plus the problems found. An archive contributes all
/// its revisions.
pub fn resolve(roots: &[Root]) -> (Vec<RootRef>, Vec<RootProblem>) {
    let mut refs = Vec::new();
    let mut problems = Vec::new();
    for root in roots {
        match load(root) {
            Ok(mut r) => refs.append(&mut r),
            Err((missing, what)) => problems.push(RootProblem {
                root: root.clone(),
                missing,
                what,
            }),
        }
    }
    (refs, problems)
}

fn load(root: &Root) -> std::result::Result<Vec<RootRef>, (bool, String)> {
    match root {
        Root::Pin(s) => parse_ref(s)
            .map(|r| vec![r])
            .map_err(|e| (false, e.to_string())),
        Root::Archive(p) => {
            match std::fs::metadata(p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err((true, "archive file is missing".into()))
                }
                Err(e) => return Err((false, e.to_string())),
                Ok(_) => {}
            }
            let entries = Archive::new(p)
                .entries()
                .map_err(|e| (false, e.to_string()))?;
            entries
                .iter()
                .map(|e| {
                    Dirent::parse_with(&e.transcription, Some(&AnySpan))
                        .map(|d| RootRef::Dirent(Box::new(d)))
                        .map_err(|err| (false, format!("revision at {}: {err}", e.when)))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn registry_roundtrip() {
        let roots = vec![
            Root::Archive(PathBuf::from("/a b/c.vt")),
            Root::Pin("LB{}".into()),
        ];
        assert_eq!(decode(&encode(&roots)).unwrap(), roots);
        assert!(decode(b"bogus line\n").is_err());
    }

    #[test]
    fn pins_parse_dirents_and_blockrefs() {
        let h = crate::hash::HashAlg::Blake3.hash(b"x");
        let b = BlockRef::Hash { hash: h, span: 1 };
        assert!(matches!(
            parse_ref(&b.to_string()).unwrap(),
            RootRef::Block(_)
        ));
        let d = Dirent::file(b"f", b);
        assert!(matches!(
            parse_ref(&d.to_string()).unwrap(),
            RootRef::Dirent(_)
        ));
        assert!(parse_ref("nonsense").is_err());
        assert!(parse_ref("").is_err());
    }

    proptest! {
        #[test]
        fn garbage_registry_never_panics(v in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&v);
        }
    }
}
