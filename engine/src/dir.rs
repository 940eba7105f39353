//! Dirents and directory content (FORMAT-csvt §4, §6).
//!
//! Binary dirent:
//! ```text
//! BSUInt type   BSUInt flags   [BSData name]   [BSString meta text]   [16-byte UUID]
//! [block record unless NOBLOCK]   [block record if HASPREVDIRENT]   [BSData if EXTENDED]
//! ```
//! Transcription: `F{"name":uuid:U{..},meta:M{..},block:REF,prev_dirent_blockref:REF}`
//! (prefixes `F`, `D`, `SymLink`, `Indirect`; the name is left out when empty).
//!
//! **Names** are bytes: anything but `/` and NUL. cs.vt writes them as BSString
//! (UTF-8). A name that is not valid UTF-8 — which cs.vt cannot store at all —
//! is written as its raw bytes in the same BSData, exactly what Python's
//! `surrogateescape` encoding would give; cs.vt readers fail on such a dirent
//! rather than misread it, and data written by cs.vt is unaffected. In
//! transcriptions the name is a JSON string, ASCII only and without whitespace:
//! non-ASCII characters and the space are `\uXXXX` escapes, and each byte
//! that is not part of valid UTF-8 is the lone surrogate `\udcXX` (see
//! [`crate::transcribe::json::JStr`]).
//!
//! **Blocks in text**: a `F`/`D` transcription without `block` means the empty
//! literal (cs.vt leaves out empty blocks); we leave it out only for `LB{}`.
//! A `F`/`D` dirent with no block at all (NOBLOCK, never written by cs.vt) is
//! written with `noblock:1`. A `SymLink`/`Indirect` has no block unless `block`
//! is given. Readers also accept cs.vt's older key `prevblock`.

pub mod meta;

pub use meta::{Meta, Owner};

use crate::block::BlockRef;
use crate::codec::{put_bsdata, put_bsstring, put_bsuint, Reader};
use crate::error::{Error, Result};
use crate::hash::{hex, unhex};
use crate::transcribe::json::JStr;
use crate::transcribe::{write_blockref, Cursor, SpanResolver};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Flag: a meta text follows.
pub const F_HASMETA: u64 = 0x01;
/// Flag: a name follows.
pub const F_HASNAME: u64 = 0x02;
/// Flag: no content block reference.
pub const F_NOBLOCK: u64 = 0x04;
/// Flag: a 16-byte UUID follows.
pub const F_HASUUID: u64 = 0x08;
/// Flag: a reference to the previous revision's binary dirent follows.
pub const F_HASPREVDIRENT: u64 = 0x10;
/// Flag: a BSData of extended data ends the record.
pub const F_EXTENDED: u64 = 0x20;
const F_ALL: u64 = 0x3f;

/// The kind of a dirent, with cs.vt's type codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DirentKind {
    /// A regular file (type 0); its block is the content.
    File,
    /// A directory (type 1); its block holds the entries' binary dirents.
    Dir,
    /// A symbolic link (type 2); the target is `meta.pathref`.
    Symlink,
    /// A hard link (type 3) to the dirent with the same UUID.
    Indirect,
}

impl DirentKind {
    /// cs.vt's type code.
    pub fn code(self) -> u64 {
        match self {
            DirentKind::File => 0,
            DirentKind::Dir => 1,
            DirentKind::Symlink => 2,
            DirentKind::Indirect => 3,
        }
    }

    /// The kind with type code `n`; fails for unknown codes.
    pub fn from_code(n: u64) -> Result<Self> {
        Ok(match n {
            0 => DirentKind::File,
            1 => DirentKind::Dir,
            2 => DirentKind::Symlink,
            3 => DirentKind::Indirect,
            _ => return Err(Error::bad(format!("unknown dirent type {n}"))),
        })
    }

    /// The transcription prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            DirentKind::File => "F",
            DirentKind::Dir => "D",
            DirentKind::Symlink => "SymLink",
            DirentKind::Indirect => "Indirect",
        }
    }

    fn from_prefix(p: &str) -> Option<Self> {
        [
            DirentKind::File,
            DirentKind::Dir,
            DirentKind::Symlink,
            DirentKind::Indirect,
        ]
        .into_iter()
        .find(|k| k.prefix() == p)
    }

    fn has_default_block(self) -> bool {
        matches!(self, DirentKind::File | DirentKind::Dir)
    }
}

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirent {
    /// What it is.
    pub kind: DirentKind,
    /// The name; empty for an unnamed (top-level) dirent.
    pub name: Vec<u8>,
    /// Metadata; written only when not empty.
    pub meta: Meta,
    /// Identity for hard links: the target's UUID on an `Indirect`, its own otherwise.
    pub uuid: Option<Uuid>,
    /// Content: file data, or the Dir's encoded entries. `None` for symlinks and hard links.
    pub block: Option<BlockRef>,
    /// A block holding the binary dirent of the previous revision.
    pub prev: Option<BlockRef>,
    /// Extended data (never written by cs.vt); kept so records round-trip.
    pub extended: Option<Vec<u8>>,
}

/// Checks a directory entry name: non-empty, not `.` or `..`, no `/` or NUL.
///
/// Fails with a message naming the problem and the name.
pub fn validate_name(name: &[u8]) -> Result<()> {
    let why = if name.is_empty() {
        "is empty"
    } else if name == b"." || name == b".." {
        "is reserved"
    } else if name.contains(&b'/') {
        "contains '/'"
    } else if name.contains(&0) {
        "contains NUL"
    } else {
        return Ok(());
    };
    Err(Error::bad(format!(
        "entry name {:?} {why}",
        String::from_utf8_lossy(name)
    )))
}

/// Checks a dirent's own name: empty is allowed (unnamed), `/` and NUL are not.
fn check_own_name(name: &[u8]) -> Result<()> {
    if name.is_empty() {
        Ok(())
    } else if name.contains(&b'/') || name.contains(&0) {
        validate_name(name)
    } else {
        Ok(())
    }
}

impl Dirent {
    /// A dirent of `kind` named `name` with empty meta and nothing else.
    pub fn new(kind: DirentKind, name: &[u8]) -> Self {
        Dirent {
            kind,
            name: name.to_vec(),
            meta: Meta::default(),
            uuid: None,
            block: None,
            prev: None,
            extended: None,
        }
    }

    /// A file with content `block`.
    pub fn file(name: &[u8], block: BlockRef) -> Self {
        Dirent {
            block: Some(block),
            ..Dirent::new(DirentKind::File, name)
        }
    }

    /// A directory whose encoded entries are `block`.
    pub fn dir(name: &[u8], block: BlockRef) -> Self {
        Dirent {
            block: Some(block),
            ..Dirent::new(DirentKind::Dir, name)
        }
    }

    /// A symbolic link to `target`.
    pub fn symlink(name: &[u8], target: &[u8]) -> Self {
        let mut e = Dirent::new(DirentKind::Symlink, name);
        e.meta.pathref = Some(target.to_vec());
        e
    }

    /// A hard link to the dirent with UUID `uuid`.
    pub fn indirect(name: &[u8], uuid: Uuid) -> Self {
        Dirent {
            uuid: Some(uuid),
            ..Dirent::new(DirentKind::Indirect, name)
        }
    }

    /// The symlink target, for symlinks.
    pub fn symlink_target(&self) -> Option<&[u8]> {
        match self.kind {
            DirentKind::Symlink => self.meta.pathref.as_deref(),
            _ => None,
        }
    }

    /// The flags word of the binary form.
    fn flags(&self) -> u64 {
        let mut f = 0;
        let set = |f: &mut u64, on: bool, bit: u64| *f |= if on { bit } else { 0 };
        set(&mut f, !self.meta.is_empty(), F_HASMETA);
        set(&mut f, !self.name.is_empty(), F_HASNAME);
        set(&mut f, self.block.is_none(), F_NOBLOCK);
        set(&mut f, self.uuid.is_some(), F_HASUUID);
        set(&mut f, self.prev.is_some(), F_HASPREVDIRENT);
        set(&mut f, self.extended.is_some(), F_EXTENDED);
        f
    }

    /// Appends the binary dirent.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let flags = self.flags();
        put_bsuint(out, self.kind.code());
        put_bsuint(out, flags);
        if flags & F_HASNAME != 0 {
            put_bsdata(out, &self.name);
        }
        if flags & F_HASMETA != 0 {
            put_bsstring(out, &self.meta.to_text());
        }
        if let Some(u) = &self.uuid {
            out.extend_from_slice(u.as_bytes());
        }
        if let Some(b) = &self.block {
            b.encode_into(out);
        }
        if let Some(p) = &self.prev {
            p.encode_into(out);
        }
        if let Some(x) = &self.extended {
            put_bsdata(out, x);
        }
    }

    /// The binary dirent.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + self.name.len());
        self.encode_into(&mut v);
        v
    }

    /// Decodes one binary dirent from `r`.
    ///
    /// Fails on truncation, unknown type or flags, a name holding `/` or NUL,
    /// an empty name with HASNAME, bad meta text, or a bad block record.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let kind = DirentKind::from_code(r.bsuint()?)?;
        let flags = r.bsuint()?;
        if flags & !F_ALL != 0 {
            return Err(Error::bad(format!("dirent has unknown flags {flags:#x}")));
        }
        let mut e = Dirent::new(kind, b"");
        if flags & F_HASNAME != 0 {
            e.name = r.bsdata()?.to_vec();
            if e.name.is_empty() {
                return Err(Error::bad("dirent has HASNAME and an empty name"));
            }
            check_own_name(&e.name)?;
        }
        if flags & F_HASMETA != 0 {
            e.meta = Meta::from_text(r.bsstring()?)?;
        }
        if flags & F_HASUUID != 0 {
            let b: [u8; 16] = r
                .take(16)?
                .try_into()
                .map_err(|_| Error::bad("short UUID"))?;
            e.uuid = Some(Uuid::from_bytes(b));
        }
        if flags & F_NOBLOCK == 0 {
            e.block = Some(BlockRef::decode_from(r)?);
        }
        if flags & F_HASPREVDIRENT != 0 {
            e.prev = Some(BlockRef::decode_from(r)?);
        }
        if flags & F_EXTENDED != 0 {
            e.extended = Some(r.bsdata()?.to_vec());
        }
        Ok(e)
    }

    /// Decodes a buffer holding exactly one binary dirent.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        let e = Self::decode_from(&mut r)?;
        if !r.is_empty() {
            return Err(Error::bad(format!(
                "{} trailing bytes after dirent",
                r.remaining()
            )));
        }
        Ok(e)
    }

    /// Appends the transcription.
    pub fn transcribe_into(&self, out: &mut String) {
        out.push_str(self.kind.prefix());
        out.push('{');
        let mut parts: Vec<String> = Vec::new();
        if let Some(u) = &self.uuid {
            parts.push(format!("uuid:U{{{}}}", u.hyphenated()));
        }
        if !self.meta.is_empty() {
            parts.push(format!("meta:{}", self.meta));
        }
        match &self.block {
            Some(b) if self.kind.has_default_block() && *b == BlockRef::empty() => {}
            Some(b) => {
                let mut s = String::from("block:");
                write_blockref(&mut s, b);
                parts.push(s);
            }
            None if self.kind.has_default_block() => parts.push("noblock:1".into()),
            None => {}
        }
        if let Some(p) = &self.prev {
            let mut s = String::from("prev_dirent_blockref:");
            write_blockref(&mut s, p);
            parts.push(s);
        }
        if let Some(x) = &self.extended {
            parts.push(format!("extended:\"{}\"", hex(x)));
        }
        if !self.name.is_empty() {
            JStr::from_bytes_escaped(&self.name).write(out, true);
            out.push(':');
        }
        out.push_str(&parts.join(","));
        out.push('}');
    }

    /// The transcription, e.g. `F{"a.txt":meta:M{..},block:B{..}}`.
    pub fn transcribe(&self) -> String {
        let mut s = String::new();
        self.transcribe_into(&mut s);
        s
    }

    /// Parses a whole dirent transcription.
    ///
    /// Fails on malformed text, an unknown prefix or key, a name holding `/`
    /// or NUL, and block forms that leave a span out (see [`Dirent::parse_with`]).
    pub fn parse(s: &str) -> Result<Self> {
        Self::parse_with(s, None)
    }

    /// Like [`Dirent::parse`], resolving left-out spans (cs.vt's `I{B{..}}`) with `resolver`.
    pub fn parse_with(s: &str, resolver: Option<&dyn SpanResolver>) -> Result<Self> {
        let mut c = Cursor::with_resolver(s, resolver);
        let e = Self::parse_from(&mut c)?;
        c.finish()?;
        Ok(e)
    }

    /// Parses a dirent transcription at the cursor.
    pub fn parse_from(c: &mut Cursor<'_>) -> Result<Self> {
        let prefix = c.ident();
        let kind = DirentKind::from_prefix(prefix)
            .ok_or_else(|| c.err(&format!("unknown dirent prefix {prefix:?}")))?;
        c.expect(b'{')?;
        let mut e = Dirent::new(kind, b"");
        if matches!(c.peek(), Some(b'"' | b'\'')) {
            e.name = c.quoted()?.to_bytes_escaped()?;
            check_own_name(&e.name)?;
            if c.peek() != Some(b'}') {
                c.expect(b':')?;
            }
        }
        let mut noblock = false;
        c.fields(|c, k| e.parse_field(c, k, &mut noblock))?;
        c.expect(b'}')?;
        if kind.has_default_block() && e.block.is_none() && !noblock {
            e.block = Some(BlockRef::empty());
        }
        Ok(e)
    }

    fn parse_field(&mut self, c: &mut Cursor<'_>, k: &str, noblock: &mut bool) -> Result<()> {
        match k {
            "uuid" => self.uuid = Some(parse_uuid(c)?),
            "meta" => self.meta = Meta::parse_from(c)?,
            "block" if !*noblock => self.block = Some(c.blockref()?),
            "noblock" if self.block.is_none() => *noblock = c.uint()? != 0,
            "prev_dirent_blockref" | "prevblock" if self.prev.is_none() => {
                self.prev = Some(c.blockref()?)
            }
            "extended" => self.extended = Some(unhex(&c.quoted()?.to_text()?)?),
            _ => return Err(c.err(&format!("unexpected dirent key {k:?}"))),
        }
        Ok(())
    }
}

/// Parses `U{hyphenated-uuid}`.
fn parse_uuid(c: &mut Cursor<'_>) -> Result<Uuid> {
    if c.ident() != "U" {
        return Err(c.err("expected U{uuid}"));
    }
    c.expect(b'{')?;
    let start = c.pos();
    while let Some(b) = c.peek().filter(|b| b.is_ascii_hexdigit() || *b == b'-') {
        c.eat(b);
    }
    let u = Uuid::parse_str(c.slice(start)).map_err(|e| c.err(&format!("bad UUID: {e}")))?;
    c.expect(b'}')?;
    Ok(u)
}

impl fmt::Display for Dirent {
    /// The transcription.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.transcribe())
    }
}

impl FromStr for Dirent {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Dirent::parse(s)
    }
}

/// Encodes a directory's entries: binary dirents sorted by name.
///
/// Fails when a name is invalid (see [`validate_name`]) or repeated.
pub fn encode_entries(entries: &[Dirent]) -> Result<Vec<u8>> {
    let mut sorted: Vec<&Dirent> = entries.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for (i, e) in sorted.iter().enumerate() {
        validate_name(&e.name)?;
        if i > 0 && sorted[i - 1].name == e.name {
            return Err(dup_name(&e.name));
        }
        e.encode_into(&mut out);
    }
    Ok(out)
}

/// Decodes a directory's content into its entries, in stored order.
///
/// Fails on any malformed dirent, an invalid name (see [`validate_name`]), or a
/// repeated name. Entries out of order are accepted.
pub fn decode_entries(data: &[u8]) -> Result<Vec<Dirent>> {
    let mut r = Reader::new(data);
    let mut v: Vec<Dirent> = Vec::new();
    let mut sorted = true;
    while !r.is_empty() {
        let at = r.position();
        let e = Dirent::decode_from(&mut r)
            .map_err(|err| Error::bad(format!("directory entry at offset {at}: {err}")))?;
        validate_name(&e.name)?;
        if let Some(last) = v.last() {
            sorted &= last.name < e.name;
        }
        v.push(e);
    }
    if !sorted {
        let mut names: Vec<&[u8]> = v.iter().map(|e| &e.name[..]).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(dup_name(w[0]));
        }
    }
    Ok(v)
}

fn dup_name(name: &[u8]) -> Error {
    Error::bad(format!(
        "directory repeats the name {:?}",
        String::from_utf8_lossy(name)
    ))
}

#[cfg(test)]
mod tests;
