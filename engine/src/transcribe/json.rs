//! The small subset of JSON that meta text and transcriptions use.
//!
//! We do not use a general JSON library here because we need three things it
//! does not give: numbers kept as their exact decimal text (mtimes carry
//! nanoseconds), strings that may hold unpaired UTF-16 surrogates (the
//! surrogate-escape scheme for non-UTF-8 names, see [`JStr`]), and objects that
//! keep their key order (cs.vt writes xattrs in insertion order).

use super::Cursor;
use crate::error::Result;

/// Deepest nesting of JSON arrays and objects a parser accepts.
pub const MAX_JSON_DEPTH: usize = 32;

/// A JSON string as a sequence of code points, where an unpaired UTF-16
/// surrogate (`\udcff`) is kept as its own value.
///
/// Two byte mappings are defined on it:
/// * surrogate-escape (Python's `surrogateescape`, used for names and symlink
///   targets): valid UTF-8 maps to its characters, every other byte `b`
///   (always ≥ 0x80) maps to the lone surrogate `U+DC00 + b`. Valid UTF-8 never
///   contains surrogates, so the mapping is reversible and names that are valid
///   UTF-8 look exactly as cs.vt writes them.
/// * ISO-8859-1 (cs.vt's xattr names and values): byte `b` maps to `U+00bb`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JStr(Vec<u32>);

impl JStr {
    /// The code points of `s`.
    pub fn from_text(s: &str) -> Self {
        JStr(s.chars().map(u32::from).collect())
    }

    /// The string as Rust text; fails when it holds a lone surrogate.
    pub fn to_text(&self) -> Result<String> {
        self.0
            .iter()
            .map(|&c| char::from_u32(c))
            .collect::<Option<String>>()
            .ok_or_else(|| crate::Error::bad("string holds an unpaired surrogate"))
    }

    /// Surrogate-escape mapping of arbitrary bytes (see the type's doc).
    pub fn from_bytes_escaped(b: &[u8]) -> Self {
        let mut v = Vec::with_capacity(b.len());
        for chunk in b.utf8_chunks() {
            v.extend(chunk.valid().chars().map(u32::from));
            v.extend(chunk.invalid().iter().map(|&x| 0xdc00 + u32::from(x)));
        }
        JStr(v)
    }

    /// Inverse of [`JStr::from_bytes_escaped`]; fails on a surrogate outside `U+DC80..=U+DCFF`.
    pub fn to_bytes_escaped(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.0.len());
        for &c in &self.0 {
            if (0xdc80..=0xdcff).contains(&c) {
                out.push((c - 0xdc00) as u8);
            } else {
                let ch = char::from_u32(c).ok_or_else(|| {
                    crate::Error::bad(format!("string holds the unpaired surrogate U+{c:04X}"))
                })?;
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
            }
        }
        Ok(out)
    }

    /// ISO-8859-1 mapping of bytes.
    pub fn from_latin1(b: &[u8]) -> Self {
        JStr(b.iter().map(|&x| u32::from(x)).collect())
    }

    /// Inverse of [`JStr::from_latin1`]. A string with a code point above U+00FF
    /// (not written by cs.vt or by us) is taken as text and yields its
    /// surrogate-escaped bytes instead, so nothing is lost.
    pub fn to_latin1(&self) -> Result<Vec<u8>> {
        if self.0.iter().all(|&c| c <= 0xff) {
            Ok(self.0.iter().map(|&c| c as u8).collect())
        } else {
            self.to_bytes_escaped()
        }
    }

    /// Appends the quoted JSON form. ASCII only, as Python's `json.dumps`
    /// writes it; with `no_space` a space is escaped as well, so the result
    /// holds no whitespace (transcriptions).
    pub fn write(&self, out: &mut String, no_space: bool) {
        out.push('"');
        for &c in &self.0 {
            match c {
                0x22 => out.push_str("\\\""),
                0x5c => out.push_str("\\\\"),
                0x0a => out.push_str("\\n"),
                0x0d => out.push_str("\\r"),
                0x09 => out.push_str("\\t"),
                0x08 => out.push_str("\\b"),
                0x0c => out.push_str("\\f"),
                0x20 if no_space => push_u(out, c),
                0x20..=0x7e => out.push(c as u8 as char),
                0x10000.. => {
                    let v = c - 0x10000;
                    push_u(out, 0xd800 + (v >> 10));
                    push_u(out, 0xdc00 + (v & 0x3ff));
                }
                _ => push_u(out, c),
            }
        }
        out.push('"');
    }
}

fn push_u(out: &mut String, unit: u32) {
    out.push_str(&format!("\\u{unit:04x}"));
}

/// A JSON value. Numbers keep their text; objects keep their key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number, as written.
    Num(String),
    /// A string.
    Str(JStr),
    /// An array.
    Arr(Vec<Json>),
    /// An object, in source order.
    Obj(Vec<(JStr, Json)>),
}

impl Json {
    /// Appends the compact JSON form (see [`JStr::write`] for `no_space`).
    pub fn write(&self, out: &mut String, no_space: bool) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(n),
            Json::Str(s) => s.write(out, no_space),
            Json::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out, no_space);
                }
                out.push(']');
            }
            Json::Obj(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    k.write(out, no_space);
                    out.push(':');
                    v.write(out, no_space);
                }
                out.push('}');
            }
        }
    }

    /// Parses a whole text as one JSON value.
    pub fn parse(s: &str) -> Result<Json> {
        let mut c = Cursor::new(s);
        let v = c.json_value(0)?;
        c.finish()?;
        Ok(v)
    }
}

impl Cursor<'_> {
    /// Parses a JSON value; `depth` is the current nesting.
    pub fn json_value(&mut self, depth: usize) -> Result<Json> {
        if depth > MAX_JSON_DEPTH {
            return Err(self.err("JSON nests too deeply"));
        }
        match self.peek() {
            Some(b'"') | Some(b'\'') => Ok(Json::Str(self.quoted()?)),
            Some(b'{') => self.json_object(depth),
            Some(b'[') => self.json_array(depth),
            Some(b'-' | b'0'..=b'9') => Ok(Json::Num(self.number_text()?.to_owned())),
            Some(b'a'..=b'z') => match self.ident() {
                "true" => Ok(Json::Bool(true)),
                "false" => Ok(Json::Bool(false)),
                "null" => Ok(Json::Null),
                _ => Err(self.err("expected a JSON value")),
            },
            _ => Err(self.err("expected a JSON value")),
        }
    }

    fn json_object(&mut self, depth: usize) -> Result<Json> {
        self.expect(b'{')?;
        let mut v = Vec::new();
        if self.eat(b'}') {
            return Ok(Json::Obj(v));
        }
        loop {
            let k = self.quoted()?;
            self.expect(b':')?;
            v.push((k, self.json_value(depth + 1)?));
            if self.eat(b'}') {
                return Ok(Json::Obj(v));
            }
            self.expect(b',')?;
        }
    }

    fn json_array(&mut self, depth: usize) -> Result<Json> {
        self.expect(b'[')?;
        let mut v = Vec::new();
        if self.eat(b']') {
            return Ok(Json::Arr(v));
        }
        loop {
            v.push(self.json_value(depth + 1)?);
            if self.eat(b']') {
                return Ok(Json::Arr(v));
            }
            self.expect(b',')?;
        }
    }

    /// Parses a quoted string: JSON double quotes, or single quotes with the
    /// same escapes (cs.vt's readers accept both).
    pub fn quoted(&mut self) -> Result<JStr> {
        let q = match self.peek() {
            Some(q @ (b'"' | b'\'')) => q,
            _ => return Err(self.err("expected a quoted string")),
        };
        self.bump();
        let mut units: Vec<u32> = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(c) if c == q => {
                    self.bump();
                    return Ok(JStr(join_surrogates(units)));
                }
                Some(b'\\') => {
                    self.bump();
                    units.push(self.escape()?);
                }
                Some(_) => {
                    let ch = self.next_char()?;
                    units.push(u32::from(ch));
                }
            }
        }
    }

    /// One escape after the backslash; `\uXXXX` yields a UTF-16 unit.
    fn escape(&mut self) -> Result<u32> {
        let c = self.peek().ok_or_else(|| self.err("unterminated escape"))?;
        self.bump();
        Ok(match c {
            b'"' | b'\\' | b'/' | b'\'' => u32::from(c),
            b'n' => 0x0a,
            b'r' => 0x0d,
            b't' => 0x09,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'u' => {
                let hx = self.take_n(4)?;
                u32::from_str_radix(hx, 16)
                    .ok()
                    .filter(|_| hx.bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or_else(|| self.err("bad \\u escape"))?
            }
            _ => return Err(self.err("unknown string escape")),
        })
    }

    /// A number's text: `-?digits[.digits][e[+-]digits]`.
    pub fn number_text(&mut self) -> Result<&str> {
        let start = self.pos();
        self.eat(b'-');
        if self.digits() == 0 {
            return Err(self.err("expected digits"));
        }
        if self.eat(b'.') {
            self.digits();
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return Err(self.err("expected exponent digits"));
            }
        }
        Ok(self.slice(start))
    }
}

/// Pairs UTF-16 surrogates into code points; unpaired ones stay as they are.
fn join_surrogates(units: Vec<u32>) -> Vec<u32> {
    let mut out = Vec::with_capacity(units.len());
    let mut i = 0;
    while i < units.len() {
        let u = units[i];
        if (0xd800..0xdc00).contains(&u) {
            if let Some(&l) = units.get(i + 1).filter(|l| (0xdc00..0xe000).contains(*l)) {
                out.push(0x10000 + ((u - 0xd800) << 10) + (l - 0xdc00));
                i += 2;
                continue;
            }
        }
        out.push(u);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn python_style_escapes() {
        let mut s = String::new();
        JStr::from_latin1(b"\0\xff\x80abc").write(&mut s, false);
        assert_eq!(s, r#""\u0000\u00ff\u0080abc""#);
        let mut s = String::new();
        JStr::from_text("a b\"\u{1F600}").write(&mut s, true);
        assert_eq!(s, r#""a\u0020b\"\ud83d\ude00""#);
    }

    #[test]
    fn non_utf8_bytes_use_lone_surrogates() {
        let j = JStr::from_bytes_escaped(b"caf\xe9 \xff");
        let mut s = String::new();
        j.write(&mut s, true);
        assert_eq!(s, r#""caf\udce9\u0020\udcff""#);
        let back = Cursor::new(&s).quoted().unwrap();
        assert_eq!(back.to_bytes_escaped().unwrap(), b"caf\xe9 \xff");
    }

    #[test]
    fn lone_surrogate_below_0x80_is_rejected() {
        let j = Cursor::new(r#""\udc41""#).quoted().unwrap();
        assert!(j.to_bytes_escaped().is_err());
        assert!(j.to_text().is_err());
    }

    #[test]
    fn numbers_keep_their_text() {
        let v = Json::parse(r#"{"m":1700000000.123456789,"k":[1,-2e+3,true,null,'x']}"#).unwrap();
        let mut s = String::new();
        v.write(&mut s, false);
        assert_eq!(
            s,
            r#"{"m":1700000000.123456789,"k":[1,-2e+3,true,null,"x"]}"#
        );
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let s = "[".repeat(10_000);
        assert!(Json::parse(&s).is_err());
    }

    proptest! {
        #[test]
        fn escaped_bytes_roundtrip(b in proptest::collection::vec(any::<u8>(), 0..64), sp in any::<bool>()) {
            let mut s = String::new();
            JStr::from_bytes_escaped(&b).write(&mut s, sp);
            prop_assert!(s.is_ascii());
            prop_assert!(!sp || !s.contains(char::is_whitespace));
            let back = Cursor::new(&s).quoted().unwrap();
            prop_assert_eq!(back.to_bytes_escaped().unwrap(), b);
        }

        #[test]
        fn latin1_roundtrip(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut s = String::new();
            JStr::from_latin1(&b).write(&mut s, false);
            let back = Cursor::new(&s).quoted().unwrap();
            prop_assert_eq!(back.to_latin1().unwrap(), b);
        }

        #[test]
        fn text_roundtrip(t in "\\PC*") {
            let mut s = String::new();
            JStr::from_text(&t).write(&mut s, true);
            prop_assert_eq!(Cursor::new(&s).quoted().unwrap().to_text().unwrap(), t);
        }

        #[test]
        fn garbage_json_never_panics(s in "[\\[\\]{}\":,0-9a-z\\\\u.eE+-]{0,60}") {
            let _ = Json::parse(&s);
        }
    }
}
