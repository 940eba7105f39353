//! Text transcriptions (FORMAT-csvt §6): the one-line, whitespace-free forms of
//! hashcodes, block references, meta and dirents, and the parser shared by them.
//!
//! Block references are written as
//!
//! | kind | written form | also accepted when reading |
//! |---|---|---|
//! | hash | `B{hash:H{blake3:hex},span:N}` | `B{hash:..}` without span (needs a [`SpanResolver`]) |
//! | indirect | `I{hash:H{..},span:N}` (`span` is the total content length) | cs.vt's `I{N:B{..}}`; `I{span:N,block:B{..}}`; cs.vt's `str()` form `I{B{..}}` (needs a [`SpanResolver`]) |
//! | run-length | `RLE{span:N,octet:xx}` (two hex digits, as cs.vt writes it) | `octet:0xNN`, a quoted one-character string, or a 1- or 3-digit decimal |
//! | literal | `LB{texthex}` | hex in either case, any `[text]` run not holding `]` |
//! | sub-block | `SubB{block:REF,offset:N,span:N}` | keys in any order |
//!
//! "texthex" is cs.vt's `texthexify`: hex pairs, with runs of three or more
//! characters from `[A-Za-z0-9_+-.,=:;*]` written as `[text]`. cs.vt also
//! counts `{`, `}` and `"` as text; we never write them inside `[...]` so a
//! literal holding braces stays parseable by brace-counting readers, and we
//! read cs.vt's `[a}b{c]` fine.
//!
//! The parser never panics, checks every length, and bounds its recursion:
//! sub-block nesting by [`crate::block::MAX_SUBBLOCK_DEPTH`], JSON by
//! [`json::MAX_JSON_DEPTH`].

pub mod json;

use crate::block::{BlockRef, MAX_SUBBLOCK_DEPTH};
use crate::error::{Error, Result};
use crate::hash::{unhex, HashAlg, HashCode};
use std::fmt::{self, Write as _};
use std::str::FromStr;

/// Answers span questions for transcriptions that leave the span out.
///
/// cs.vt writes indirect references as `I{B{hash:..,span:<superblock length>}}`,
/// which does not carry the total span; recovering it needs the superblock's
/// content. Implementations usually fetch from a store.
pub trait SpanResolver {
    /// The length of the stored block `hash`.
    fn block_span(&self, hash: &HashCode) -> Result<u64>;
    /// The total content span of the indirect tree whose top stored block is `hash`.
    fn indirect_span(&self, hash: &HashCode) -> Result<u64>;
}

/// A cursor over transcription text.
pub struct Cursor<'a> {
    src: &'a str,
    pos: usize,
    resolver: Option<&'a dyn SpanResolver>,
}

impl fmt::Debug for Cursor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor(offset {} of {:?})", self.pos, self.src)
    }
}

impl<'a> Cursor<'a> {
    /// Starts at the beginning of `src`, with no span resolver.
    pub fn new(src: &'a str) -> Self {
        Cursor {
            src,
            pos: 0,
            resolver: None,
        }
    }

    /// Starts at the beginning of `src`, resolving missing spans with `r`.
    pub fn with_resolver(src: &'a str, r: Option<&'a dyn SpanResolver>) -> Self {
        Cursor {
            src,
            pos: 0,
            resolver: r,
        }
    }

    /// Byte offset of the cursor.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The text from `start` to the cursor.
    pub fn slice(&self, start: usize) -> &'a str {
        self.src.get(start..self.pos).unwrap_or("")
    }

    /// The next byte, if any.
    pub fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    /// The byte `n` places ahead, if any.
    pub fn peek_at(&self, n: usize) -> Option<u8> {
        self.src.as_bytes().get(self.pos + n).copied()
    }

    /// Skips one ASCII byte (only after [`Cursor::peek`] saw one).
    fn bump(&mut self) {
        self.pos += 1;
    }

    /// Consumes `c` if it is next.
    pub fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.bump();
        }
        hit
    }

    /// Consumes `c`; fails if something else is next.
    pub fn expect(&mut self, c: u8) -> Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.err(&format!("expected {:?}", c as char)))
        }
    }

    /// Consumes `[A-Za-z_][A-Za-z0-9_]*`; empty if none.
    pub fn ident(&mut self) -> &'a str {
        let start = self.pos;
        if matches!(self.peek(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_')) {
            while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
                self.bump();
            }
        }
        self.slice(start)
    }

    /// Consumes ASCII digits and returns how many.
    pub fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.bump();
        }
        self.pos - start
    }

    /// Consumes a decimal unsigned integer.
    pub fn uint(&mut self) -> Result<u64> {
        let start = self.pos;
        if self.digits() == 0 {
            return Err(self.err("expected a decimal number"));
        }
        self.slice(start)
            .parse()
            .map_err(|_| self.err("number does not fit 64 bits"))
    }

    /// Consumes exactly `n` bytes of text.
    fn take_n(&mut self, n: usize) -> Result<&'a str> {
        let s = self
            .src
            .get(self.pos..self.pos + n)
            .ok_or_else(|| self.err("truncated"))?;
        self.pos += n;
        Ok(s)
    }

    /// Consumes one character.
    fn next_char(&mut self) -> Result<char> {
        let ch = self
            .src
            .get(self.pos..)
            .and_then(|s| s.chars().next())
            .ok_or_else(|| self.err("unexpected end"))?;
        self.pos += ch.len_utf8();
        Ok(ch)
    }

    /// Fails unless the whole text has been consumed.
    pub fn finish(&self) -> Result<()> {
        if self.pos == self.src.len() {
            Ok(())
        } else {
            Err(self.err("unexpected trailing text"))
        }
    }

    /// A bad-input error naming the offset and a little of the text there.
    pub fn err(&self, what: &str) -> Error {
        let near: String = self
            .src
            .get(self.pos..)
            .unwrap_or("")
            .chars()
            .take(40)
            .collect();
        Error::bad(format!(
            "transcription offset {}: {what} at {near:?}",
            self.pos
        ))
    }

    /// Parses `key:value` pairs up to (not including) `}`; `f` parses each
    /// value given its key. A key may be an identifier or a quoted string.
    pub fn fields(&mut self, mut f: impl FnMut(&mut Self, &str) -> Result<()>) -> Result<()> {
        let mut seen: Vec<String> = Vec::new();
        if self.peek() == Some(b'}') {
            return Ok(());
        }
        loop {
            // A quoted key may be empty (metadata keeps whatever keys a record had).
            let key = if matches!(self.peek(), Some(b'"' | b'\'')) {
                self.quoted()?.to_text()?
            } else {
                let key = self.ident().to_owned();
                if key.is_empty() {
                    return Err(self.err("expected a key"));
                }
                key
            };
            if seen.contains(&key) {
                return Err(self.err(&format!("repeated key {key:?}")));
            }
            self.expect(b':')?;
            f(self, &key)?;
            seen.push(key);
            if self.peek() == Some(b'}') {
                return Ok(());
            }
            self.expect(b',')?;
        }
    }

    /// Parses `H{alg:hex}`.
    pub fn hashcode(&mut self) -> Result<HashCode> {
        if self.ident() != "H" {
            return Err(self.err("expected H{alg:hex}"));
        }
        self.expect(b'{')?;
        let alg = HashAlg::from_name(self.ident())?;
        self.expect(b':')?;
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_hexdigit()) {
            self.bump();
        }
        let digest = unhex(self.slice(start))?;
        self.expect(b'}')?;
        HashCode::from_digest(alg, &digest)
    }

    /// Parses a block reference transcription.
    pub fn blockref(&mut self) -> Result<BlockRef> {
        self.blockref_depth(0)
    }

    fn blockref_depth(&mut self, depth: usize) -> Result<BlockRef> {
        if depth > MAX_SUBBLOCK_DEPTH {
            return Err(self.err("block reference nests too deeply"));
        }
        let prefix = self.ident();
        self.expect(b'{')?;
        let b = match prefix {
            "B" => self.hash_block_inner()?,
            "I" => self.indirect_inner(depth)?,
            "RLE" => self.rle_inner()?,
            "LB" => BlockRef::literal(&self.texthex()?),
            "SubB" => self.subblock_inner(depth)?,
            _ => return Err(self.err(&format!("unknown block prefix {prefix:?}"))),
        };
        self.expect(b'}')?;
        Ok(b)
    }

    fn hash_block_inner(&mut self) -> Result<BlockRef> {
        let (mut hash, mut span) = (None, None);
        self.fields(|c, k| {
            match k {
                "hash" => hash = Some(c.hashcode()?),
                "span" => span = Some(c.uint()?),
                _ => return Err(c.err(&format!("unknown key {k:?} in B{{}}"))),
            }
            Ok(())
        })?;
        let hash = hash.ok_or_else(|| self.err("B{} lacks hash"))?;
        let span = match span {
            Some(s) => s,
            None => self.resolver()?.block_span(&hash)?,
        };
        Ok(BlockRef::Hash { hash, span })
    }

    fn resolver(&self) -> Result<&'a dyn SpanResolver> {
        self.resolver
            .ok_or_else(|| self.err("span left out and no store to resolve it"))
    }

    fn indirect_inner(&mut self, depth: usize) -> Result<BlockRef> {
        if matches!(self.peek(), Some(b'0'..=b'9')) {
            // cs.vt's parse form: I{<total span>:<superblock>}
            let span = self.uint()?;
            self.expect(b':')?;
            let hash = self.superblock_hash(depth)?;
            return Ok(BlockRef::Indirect { hash, span });
        }
        let save = self.pos;
        let word = self.ident();
        let next = self.peek();
        self.pos = save;
        if !word.is_empty() && next == Some(b'{') {
            // cs.vt's str() form I{B{..}}: the total span must be looked up.
            let hash = self.superblock_hash(depth)?;
            let span = self.resolver()?.indirect_span(&hash)?;
            return Ok(BlockRef::Indirect { hash, span });
        }
        let (mut hash, mut span) = (None, None);
        self.fields(|c, k| {
            match k {
                "hash" if hash.is_none() => hash = Some(c.hashcode()?),
                "block" if hash.is_none() => hash = Some(c.superblock_hash(depth)?),
                "span" => span = Some(c.uint()?),
                _ => return Err(c.err(&format!("unexpected key {k:?} in I{{}}"))),
            }
            Ok(())
        })?;
        match (hash, span) {
            (Some(hash), Some(span)) => Ok(BlockRef::Indirect { hash, span }),
            _ => Err(self.err("I{} needs hash and span")),
        }
    }

    /// A superblock reference inside `I{}`: must be a plain hash block.
    fn superblock_hash(&mut self, depth: usize) -> Result<HashCode> {
        match self.blockref_depth(depth + 1)? {
            BlockRef::Hash { hash, .. } => Ok(hash),
            _ => Err(self.err("an indirect block's superblock must be a B{} reference")),
        }
    }

    fn rle_inner(&mut self) -> Result<BlockRef> {
        let (mut span, mut octet) = (None, None);
        self.fields(|c, k| {
            match k {
                "span" => span = Some(c.uint()?),
                "octet" => octet = Some(c.octet()?),
                _ => return Err(c.err(&format!("unknown key {k:?} in RLE{{}}"))),
            }
            Ok(())
        })?;
        match (span, octet) {
            (Some(span), Some(octet)) => Ok(BlockRef::Rle { span, octet }),
            _ => Err(self.err("RLE{} needs span and octet")),
        }
    }

    /// An RLE octet: `0xNN`, two hex digits (cs.vt), a quoted byte, or decimal.
    fn octet(&mut self) -> Result<u8> {
        if matches!(self.peek(), Some(b'"' | b'\'')) {
            let b = self.quoted()?.to_latin1()?;
            return match b[..] {
                [x] => Ok(x),
                _ => Err(self.err("quoted octet must be one character")),
            };
        }
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric()) {
            self.bump();
        }
        let tok = self.slice(start);
        let v = if let Some(h) = tok.strip_prefix("0x") {
            u8::from_str_radix(h, 16).ok()
        } else if tok.len() == 2 {
            u8::from_str_radix(tok, 16).ok()
        } else {
            tok.parse().ok()
        };
        v.ok_or_else(|| self.err(&format!("bad octet {tok:?}")))
    }

    fn subblock_inner(&mut self, depth: usize) -> Result<BlockRef> {
        let (mut block, mut offset, mut span) = (None, None, None);
        self.fields(|c, k| {
            match k {
                "block" => block = Some(c.blockref_depth(depth + 1)?),
                "offset" => offset = Some(c.uint()?),
                "span" => span = Some(c.uint()?),
                _ => return Err(c.err(&format!("unknown key {k:?} in SubB{{}}"))),
            }
            Ok(())
        })?;
        let (Some(sup), Some(offset), Some(span)) = (block, offset, span) else {
            return Err(self.err("SubB{} needs block, offset and span"));
        };
        if !BlockRef::sub_fits(&sup, offset, span) {
            return Err(self.err("sub-block range exceeds its super-block"));
        }
        // Flatten as the binary decoder does, so text and binary agree.
        Ok(BlockRef::sub_of(sup, offset, span))
    }

    /// Parses texthex up to (not including) the closing `}`.
    pub fn texthex(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(b'}') | None => return Ok(out),
                Some(b'[') => {
                    self.bump();
                    let start = self.pos;
                    while !matches!(self.peek(), Some(b']') | None) {
                        self.bump();
                    }
                    out.extend_from_slice(self.slice(start).as_bytes());
                    self.expect(b']')?;
                }
                Some(_) => {
                    let pair = self.take_n(2)?;
                    let b = unhex(pair).map_err(|_| self.err("bad hex pair"))?;
                    out.extend_from_slice(&b);
                }
            }
        }
    }
}

/// Characters we write inside `[...]` runs of texthex.
fn texthex_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_+-.,=:;*".contains(&b)
}

/// Appends cs.vt's texthex form of `data` (hex pairs, runs of 3+ safe characters as `[text]`).
pub fn write_texthex(out: &mut String, data: &[u8]) {
    let mut i = 0;
    while i < data.len() {
        let run = data[i..].iter().take_while(|&&b| texthex_safe(b)).count();
        if run >= 3 {
            out.push('[');
            out.extend(data[i..i + run].iter().map(|&b| b as char));
            out.push(']');
            i += run;
        } else {
            for &b in &data[i..i + run.max(1)] {
                let _ = write!(out, "{b:02x}");
            }
            i += run.max(1);
        }
    }
}

/// Appends the transcription of `b`.
pub fn write_blockref(out: &mut String, b: &BlockRef) {
    // Writing to a String cannot fail.
    let _ = match b {
        BlockRef::Hash { hash, span } => write!(out, "B{{hash:{hash},span:{span}}}"),
        BlockRef::Indirect { hash, span } => write!(out, "I{{hash:{hash},span:{span}}}"),
        BlockRef::Rle { span, octet } => write!(out, "RLE{{span:{span},octet:{octet:02x}}}"),
        BlockRef::Literal(d) => {
            out.push_str("LB{");
            write_texthex(out, d);
            out.push('}');
            Ok(())
        }
        BlockRef::Sub {
            block,
            offset,
            span,
        } => {
            out.push_str("SubB{block:");
            write_blockref(out, block);
            write!(out, ",offset:{offset},span:{span}}}")
        }
    };
}

impl fmt::Display for BlockRef {
    /// The transcription, e.g. `B{hash:H{blake3:..},span:100}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        write_blockref(&mut s, self);
        f.write_str(&s)
    }
}

impl BlockRef {
    /// Parses a whole block reference transcription.
    ///
    /// Fails on malformed text, trailing text, a sub-block range outside its
    /// super-block, and forms that leave the span out (see [`BlockRef::parse_with`]).
    pub fn parse(s: &str) -> Result<Self> {
        Self::parse_with(s, None)
    }

    /// Like [`BlockRef::parse`], resolving left-out spans with `resolver`.
    pub fn parse_with(s: &str, resolver: Option<&dyn SpanResolver>) -> Result<Self> {
        let mut c = Cursor::with_resolver(s, resolver);
        let b = c.blockref()?;
        c.finish()?;
        Ok(b)
    }
}

impl FromStr for BlockRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        BlockRef::parse(s)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(n: u8) -> HashCode {
        HashCode::from_digest(HashAlg::Blake3, &[n; 32]).unwrap()
    }

    #[test]
    fn written_forms() {
        let b = BlockRef::Rle {
            span: 4096,
            octet: 0,
        };
        assert_eq!(b.to_string(), "RLE{span:4096,octet:00}");
        assert_eq!(
            BlockRef::literal(b"hello world\n").to_string(),
            "LB{[hello]20[world]0a}"
        );
        assert_eq!(BlockRef::literal(b"a}b{c").to_string(), "LB{617d627b63}");
        assert_eq!(BlockRef::empty().to_string(), "LB{}");
    }

    #[test]
    fn accepted_octets() {
        for (t, o) in [
            ("ff", 255),
            ("0x7", 7),
            ("\"x\"", b'x'),
            ("7", 7),
            ("200", 200),
            ("20", 0x20),
        ] {
            let b = BlockRef::parse(&format!("RLE{{span:1,octet:{t}}}")).unwrap();
            assert_eq!(b, BlockRef::Rle { span: 1, octet: o }, "{t}");
        }
        for t in ["256", "0x100", "\"xy\"", "", "g0"] {
            assert!(
                BlockRef::parse(&format!("RLE{{span:1,octet:{t}}}")).is_err(),
                "{t}"
            );
        }
    }

    #[test]
    fn csvt_literal_with_braces_parses() {
        assert_eq!(
            BlockRef::parse("LB{[a}b{c]}").unwrap(),
            BlockRef::literal(b"a}b{c")
        );
        assert_eq!(
            BlockRef::parse("LB{68656C6c6f}").unwrap(),
            BlockRef::literal(b"hello")
        );
    }

    #[test]
    fn indirect_forms() {
        let want = BlockRef::Indirect {
            hash: h(1),
            span: 303,
        };
        let inner = format!("B{{hash:{},span:108}}", h(1));
        for t in [
            want.to_string(),
            format!("I{{303:{inner}}}"),
            format!("I{{span:303,block:{inner}}}"),
            format!("I{{span:303,hash:{}}}", h(1)),
        ] {
            assert_eq!(BlockRef::parse(&t).unwrap(), want, "{t}");
        }
        let err = BlockRef::parse(&format!("I{{{inner}}}")).unwrap_err();
        assert!(err.to_string().contains("no store"), "{err}");
    }

    struct Fixed;
    impl SpanResolver for Fixed {
        fn block_span(&self, _: &HashCode) -> Result<u64> {
            Ok(7)
        }
        fn indirect_span(&self, _: &HashCode) -> Result<u64> {
            Ok(99)
        }
    }

    #[test]
    fn resolver_fills_missing_spans() {
        let t = format!("I{{B{{hash:{}}}}}", h(2));
        let b = BlockRef::parse_with(&t, Some(&Fixed)).unwrap();
        assert_eq!(
            b,
            BlockRef::Indirect {
                hash: h(2),
                span: 99
            }
        );
        let t = format!("B{{hash:{}}}", h(2));
        assert_eq!(BlockRef::parse_with(&t, Some(&Fixed)).unwrap().span(), 7);
    }

    #[test]
    fn subblock_range_is_checked_and_flattened() {
        let t = format!(
            "SubB{{block:SubB{{block:B{{hash:{},span:101}},offset:10,span:60}},offset:5,span:20}}",
            h(3)
        );
        let b = BlockRef::parse(&t).unwrap();
        let leaf = BlockRef::Hash {
            hash: h(3),
            span: 101,
        };
        assert_eq!(
            b,
            BlockRef::Sub {
                block: std::sync::Arc::new(leaf),
                offset: 15,
                span: 20
            }
        );
        assert!(BlockRef::parse("SubB{block:LB{[abc]},offset:2,span:2}").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let mut t = "LB{[abcdef]}".to_string();
        for _ in 0..100 {
            t = format!("SubB{{block:{t},offset:0,span:1}}");
        }
        assert!(BlockRef::parse(&t).is_err());
        let t = "I{".repeat(10_000);
        assert!(BlockRef::parse(&t).is_err());
    }

    fn arb_leaf() -> impl Strategy<Value = BlockRef> {
        prop_oneof![
            (any::<[u8; 32]>(), any::<u64>(), 0u64..3, any::<bool>()).prop_map(
                |(d, span, e, ind)| {
                    let alg = HashAlg::from_hashenum(e).unwrap();
                    let hash = HashCode::from_digest(alg, &d[..alg.digest_len()]).unwrap();
                    if ind {
                        BlockRef::Indirect { hash, span }
                    } else {
                        BlockRef::Hash { hash, span }
                    }
                }
            ),
            (any::<u64>(), any::<u8>()).prop_map(|(span, octet)| BlockRef::Rle { span, octet }),
            proptest::collection::vec(any::<u8>(), 0..48).prop_map(|d| BlockRef::literal(&d)),
            "[a-z{}\\[\\]\"_.,;:*=+-]{0,40}".prop_map(|s| BlockRef::literal(s.as_bytes())),
        ]
    }

    pub(crate) fn arb_blockref() -> impl Strategy<Value = BlockRef> {
        arb_leaf().prop_flat_map(|leaf| {
            let n = leaf.span();
            prop_oneof![
                Just(leaf.clone()),
                (0..=n, any::<u64>()).prop_map(move |(o, s)| leaf.sub(o, s % (n - o + 1)).unwrap()),
            ]
        })
    }

    proptest! {
        #[test]
        fn text_roundtrip(b in arb_blockref()) {
            let t = b.to_string();
            prop_assert!(!t.contains(char::is_whitespace));
            prop_assert_eq!(BlockRef::parse(&t).unwrap(), b.clone());
            prop_assert_eq!(t.parse::<BlockRef>().unwrap().encode(), b.encode());
        }

        #[test]
        fn truncated_text_is_error(b in arb_blockref(), cut in any::<prop::sample::Index>()) {
            let t = b.to_string();
            let n = cut.index(t.len());
            prop_assert!(BlockRef::parse(&t[..n]).is_err());
        }

        #[test]
        fn garbage_text_never_panics(s in "[BILRESubH{}:,0-9a-f\\[\\]\"x]{0,80}") {
            let _ = BlockRef::parse(&s);
        }

        #[test]
        fn random_text_never_panics(s in "\\PC{0,80}") {
            let _ = BlockRef::parse(&s);
        }
    }
}
