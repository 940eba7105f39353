//! Dirent metadata, `Meta` (FORMAT-csvt §5): owner, group, ACL, mtime,
//! setuid/setgid/sticky, symlink target, xattrs, and any other keys.
//!
//! Three text forms:
//! * compact `k:v;k:v` (keys sorted), written when every key is one of
//!   `u g a m su sg` and every value is safe in that form — as cs.vt does;
//! * compact JSON `{"k":v,...}` (keys sorted, Python `json.dumps` escaping), otherwise;
//! * the transcription `M{k:v,...}` used inside dirent transcriptions.
//!
//! Our choices, all readable by cs.vt:
//! * **mtime** is kept as exact nanoseconds ([`Meta::mtime_ns`]). It is written
//!   with six decimals (`%f`, as cs.vt) when it is a whole number of
//!   microseconds and with nine decimals otherwise; in the JSON form a value
//!   that Python's float `repr` represents exactly is written that way (as cs.vt
//!   does). Readers parse the decimal text exactly, never through a float.
//! * **setuid/setgid** are `su`/`sg` (`True` in the compact form, `true` in JSON,
//!   `1` in transcriptions). cs.vt maps `sg` to the setuid bit when it computes a
//!   mode; that quirk is in its reader only — the stored keys are right — so we
//!   read `sg` as setgid.
//! * **sticky** has no cs.vt key; we write `st` (which, not being a compact key,
//!   selects the JSON form). cs.vt keeps it as an unknown key.
//! * **xattrs** (`x`) are bytes; names and values are written as ISO-8859-1
//!   strings like cs.vt, in their stored order (cs.vt keeps insertion order).
//! * **pathref** (symlink target) is bytes; non-UTF-8 bytes use the
//!   surrogate-escape scheme of [`JStr`].
//! * A `u`/`g` value made only of digits is a numeric id (cs.vt's compact form
//!   reads every value as a string, so the two cannot be told apart).

use crate::codec::python_float_repr;
use crate::error::{Error, Result};
use crate::transcribe::json::{JStr, Json};
use crate::transcribe::Cursor;
use std::collections::BTreeMap;
use std::fmt;

/// The ACL cs.vt gives a new directory (owner rwx).
pub const DEFAULT_DIR_ACL: &str = "o:rwx-";
/// The ACL cs.vt gives a new file (owner rw).
pub const DEFAULT_FILE_ACL: &str = "o:rw-x";

/// Key: owner.
pub const K_USER: &str = "u";
/// Key: group.
pub const K_GROUP: &str = "g";
/// Key: ACL.
pub const K_ACL: &str = "a";
/// Key: modification time.
pub const K_MTIME: &str = "m";
/// Key: setuid.
pub const K_SETUID: &str = "su";
/// Key: setgid.
pub const K_SETGID: &str = "sg";
/// Key: sticky (ours; cs.vt has none).
pub const K_STICKY: &str = "st";
/// Key: symlink target.
pub const K_PATHREF: &str = "pathref";
/// Key: extended attributes.
pub const K_XATTRS: &str = "x";

/// Keys the compact `k:v;k:v` form may hold.
const COMPACT_KEYS: [&str; 6] = [K_ACL, K_GROUP, K_MTIME, K_SETGID, K_SETUID, K_USER];

/// setuid, setgid and sticky mode bits.
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;

/// Largest |mtime| accepted, in seconds.
const MAX_MTIME_SECS: i128 = 100_000_000_000_000_000_000;
const NS: i128 = 1_000_000_000;

/// A file owner or group: a name, or a numeric id when the name is unknown.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A user or group name.
    Name(String),
    /// A numeric uid or gid.
    Id(u32),
}

impl Owner {
    /// The owner to store for id `id` whose name (if the system knows one) is
    /// `name`: the name, else the number — cs.vt's "name with numeric fallback".
    /// A name that is empty or all digits would read back as a number, so the
    /// number is stored instead.
    pub fn from_id(id: u32, name: Option<&str>) -> Owner {
        match name {
            Some(n) if !n.is_empty() && !n.bytes().all(|b| b.is_ascii_digit()) => {
                Owner::Name(n.to_owned())
            }
            _ => Owner::Id(id),
        }
    }

    /// The numeric id: the stored number, or `lookup(name)` for a name.
    pub fn resolve(&self, lookup: impl FnOnce(&str) -> Option<u32>) -> Option<u32> {
        match self {
            Owner::Id(n) => Some(*n),
            Owner::Name(s) => lookup(s),
        }
    }
}

/// Metadata of a dirent. Every field is optional; [`Meta::default`] is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Owner (`u`).
    pub user: Option<Owner>,
    /// Group (`g`).
    pub group: Option<Owner>,
    /// ACL text (`a`), e.g. `o:rw-x,g:r-wx,*:r-wx`; see [`Meta::mode`].
    pub acl: Option<String>,
    /// Modification time in nanoseconds since the epoch (`m`).
    pub mtime_ns: Option<i128>,
    /// Set-user-id (`su`).
    pub setuid: bool,
    /// Set-group-id (`sg`).
    pub setgid: bool,
    /// Sticky (`st`).
    pub sticky: bool,
    /// Symlink target (`pathref`).
    pub pathref: Option<Vec<u8>>,
    /// Extended attributes (`x`), name → value, in stored order; names are unique.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Other keys, kept as read.
    pub other: BTreeMap<String, Json>,
}

/// A value about to be written, before the form is chosen.
enum Item<'a> {
    Str(JStr),
    Id(u32),
    Time(i128),
    Flag,
    Json(Json),
    Other(&'a Json),
}

impl Meta {
    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        *self == Meta::default()
    }

    /// Permission bits (`0o7777` range) from the ACL and the setuid/setgid/sticky keys.
    ///
    /// Audiences `o`, `g`, `*` give the owner, group and other bits from their
    /// allow lists; absent audiences and unknown entries give no bits.
    pub fn mode(&self) -> u32 {
        let mut m = 0;
        for ac in self.acl.as_deref().unwrap_or("").split(',') {
            let Some((aud, rest)) = ac.split_once(':') else {
                continue;
            };
            let shift = match aud {
                "o" => 6,
                "g" => 3,
                "*" => 0,
                _ => continue,
            };
            let allow = rest.split_once('-').map_or(rest, |(a, _)| a);
            m |= perm_bits(allow) << shift;
        }
        m | flag_bits(self.setuid, S_ISUID)
            | flag_bits(self.setgid, S_ISGID)
            | flag_bits(self.sticky, S_ISVTX)
    }

    /// Sets the ACL's owner/group/other entries and the setuid/setgid/sticky
    /// keys from `mode`, keeping ACL entries for other audiences.
    pub fn set_mode(&mut self, mode: u32) {
        let mut acl: Vec<String> = [6, 3, 0]
            .iter()
            .zip(["o", "g", "*"])
            .map(|(&shift, aud)| format!("{aud}:{}", allow_deny((mode >> shift) & 7)))
            .collect();
        let keep = self.acl.as_deref().unwrap_or("").split(',').filter(|ac| {
            !ac.is_empty() && !matches!(ac.split_once(':'), Some(("o" | "g" | "*", _)))
        });
        acl.extend(keep.map(str::to_owned));
        self.acl = Some(acl.join(","));
        self.setuid = mode & S_ISUID != 0;
        self.setgid = mode & S_ISGID != 0;
        self.sticky = mode & S_ISVTX != 0;
    }

    /// The mtime as whole seconds and nanoseconds (0..1e9), if set.
    pub fn mtime(&self) -> Option<(i64, u32)> {
        let ns = self.mtime_ns?;
        let secs = i64::try_from(ns.div_euclid(NS)).ok()?;
        Some((secs, ns.rem_euclid(NS) as u32))
    }

    /// Sets the mtime from seconds and nanoseconds.
    pub fn set_mtime(&mut self, secs: i64, nanos: u32) {
        self.mtime_ns = Some(i128::from(secs) * NS + i128::from(nanos));
    }

    /// The numeric owner, when stored as a number.
    pub fn uid(&self) -> Option<u32> {
        match self.user {
            Some(Owner::Id(n)) => Some(n),
            _ => None,
        }
    }

    /// The numeric group, when stored as a number.
    pub fn gid(&self) -> Option<u32> {
        match self.group {
            Some(Owner::Id(n)) => Some(n),
            _ => None,
        }
    }

    /// The value of xattr `name`.
    pub fn xattr(&self, name: &[u8]) -> Option<&[u8]> {
        self.xattrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &v[..])
    }

    /// Sets xattr `name`, in place if present, else appended.
    pub fn set_xattr(&mut self, name: &[u8], value: &[u8]) {
        match self.xattrs.iter_mut().find(|(k, _)| k == name) {
            Some(kv) => kv.1 = value.to_vec(),
            None => self.xattrs.push((name.to_vec(), value.to_vec())),
        }
    }

    /// Removes xattr `name`, returning its value.
    pub fn remove_xattr(&mut self, name: &[u8]) -> Option<Vec<u8>> {
        let i = self.xattrs.iter().position(|(k, _)| k == name)?;
        Some(self.xattrs.remove(i).1)
    }

    /// Parses meta text: JSON if it starts with `{`, else the compact form.
    ///
    /// Fails on malformed JSON, or a value of the wrong type for its key
    /// (e.g. an owner that is neither a name nor a u32, an mtime that is not a
    /// number within ±1e20 seconds). Compact fields without a colon are skipped,
    /// as cs.vt does.
    pub fn from_text(text: &str) -> Result<Meta> {
        let mut m = Meta::default();
        if text.starts_with('{') {
            let Json::Obj(kvs) = Json::parse(text)? else {
                return Err(Error::bad("meta JSON is not an object"));
            };
            for (k, v) in kvs {
                m.set_key(&k.to_text()?, v)?;
            }
        } else {
            for field in text.split(';').map(str::trim) {
                if let Some((k, v)) = field.split_once(':') {
                    m.set_key(k, Json::Str(JStr::from_text(v)))?;
                }
            }
        }
        Ok(m)
    }

    /// The meta text stored in binary dirents (see the module doc for the form).
    pub fn to_text(&self) -> String {
        let items = self.items();
        let mut out = String::new();
        if items.iter().all(|(k, v)| compact_ok(k, v)) {
            for (i, (k, v)) in items.iter().enumerate() {
                if i > 0 {
                    out.push(';');
                }
                out.push_str(k);
                out.push(':');
                write_compact(&mut out, v);
            }
            return out;
        }
        out.push('{');
        for (i, (k, v)) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            JStr::from_text(k).write(&mut out, false);
            out.push(':');
            write_json_item(&mut out, v);
        }
        out.push('}');
        out
    }

    /// Appends the transcription `M{k:v,...}`.
    pub fn transcribe_into(&self, out: &mut String) {
        out.push_str("M{");
        for (i, (k, v)) in self.items().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if is_ident(k) {
                out.push_str(k);
            } else {
                JStr::from_text(k).write(out, true);
            }
            out.push(':');
            match v {
                Item::Str(s) => s.write(out, true),
                Item::Id(n) => out.push_str(&n.to_string()),
                Item::Time(ns) => out.push_str(&fixed_time(*ns)),
                Item::Flag => out.push('1'),
                Item::Json(j) => j.write(out, true),
                Item::Other(j) => j.write(out, true),
            }
        }
        out.push('}');
    }

    /// Parses a transcription `M{...}` at the cursor.
    pub fn parse_from(c: &mut Cursor<'_>) -> Result<Meta> {
        if c.ident() != "M" {
            return Err(c.err("expected M{...}"));
        }
        c.expect(b'{')?;
        let mut m = Meta::default();
        c.fields(|c, k| {
            let v = c.json_value(0)?;
            m.set_key(k, v)
        })?;
        c.expect(b'}')?;
        Ok(m)
    }

    /// Parses a whole transcription `M{...}`.
    pub fn parse_transcription(s: &str) -> Result<Meta> {
        let mut c = Cursor::new(s);
        let m = Meta::parse_from(&mut c)?;
        c.finish()?;
        Ok(m)
    }

    /// The keys to write, sorted, with their values.
    fn items(&self) -> Vec<(&str, Item<'_>)> {
        let mut v: Vec<(&str, Item<'_>)> = Vec::new();
        let owner = |o: &Owner| match o {
            Owner::Name(s) => Item::Str(JStr::from_text(s)),
            Owner::Id(n) => Item::Id(*n),
        };
        if let Some(a) = &self.acl {
            v.push((K_ACL, Item::Str(JStr::from_text(a))));
        }
        if let Some(g) = &self.group {
            v.push((K_GROUP, owner(g)));
        }
        if let Some(ns) = self.mtime_ns {
            v.push((K_MTIME, Item::Time(ns)));
        }
        if let Some(p) = &self.pathref {
            v.push((K_PATHREF, Item::Str(JStr::from_bytes_escaped(p))));
        }
        for (flag, key) in [
            (self.setgid, K_SETGID),
            (self.sticky, K_STICKY),
            (self.setuid, K_SETUID),
        ] {
            if flag {
                v.push((key, Item::Flag));
            }
        }
        if let Some(u) = &self.user {
            v.push((K_USER, owner(u)));
        }
        if !self.xattrs.is_empty() {
            let x = self
                .xattrs
                .iter()
                .map(|(k, val)| (JStr::from_latin1(k), Json::Str(JStr::from_latin1(val))));
            v.push((K_XATTRS, Item::Json(Json::Obj(x.collect()))));
        }
        v.extend(self.other.iter().map(|(k, j)| (k.as_str(), Item::Other(j))));
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Applies one key read from any of the three forms.
    fn set_key(&mut self, k: &str, v: Json) -> Result<()> {
        let bad = |what: &str| Error::bad(format!("meta key {k:?}: {what}"));
        match k {
            K_USER => self.user = Some(owner_of(v).map_err(|e| bad(&e.to_string()))?),
            K_GROUP => self.group = Some(owner_of(v).map_err(|e| bad(&e.to_string()))?),
            K_ACL => match v {
                Json::Str(s) => self.acl = Some(s.to_text()?),
                _ => return Err(bad("ACL is not a string")),
            },
            K_MTIME => match v {
                Json::Num(t) => self.mtime_ns = Some(parse_time(&t)?),
                Json::Str(s) => self.mtime_ns = Some(parse_time(&s.to_text()?)?),
                _ => return Err(bad("mtime is not a number")),
            },
            K_SETUID => self.setuid = truthy(&v),
            K_SETGID => self.setgid = truthy(&v),
            K_STICKY => self.sticky = truthy(&v),
            K_PATHREF => match v {
                Json::Str(s) => self.pathref = Some(s.to_bytes_escaped()?),
                _ => return Err(bad("pathref is not a string")),
            },
            K_XATTRS => self.set_xattrs(v).map_err(|e| bad(&e.to_string()))?,
            _ => {
                self.other.insert(k.to_owned(), v);
            }
        }
        Ok(())
    }

    fn set_xattrs(&mut self, v: Json) -> Result<()> {
        let Json::Obj(kvs) = v else {
            return Err(Error::bad("xattrs are not an object"));
        };
        for (k, v) in kvs {
            let value = match v {
                Json::Str(s) => s.to_latin1()?,
                Json::Num(t) => t.into_bytes(),
                _ => return Err(Error::bad("xattr value is not a string")),
            };
            self.set_xattr(&k.to_latin1()?, &value);
        }
        Ok(())
    }
}

impl fmt::Display for Meta {
    /// The transcription `M{...}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.transcribe_into(&mut s);
        f.write_str(&s)
    }
}

fn flag_bits(on: bool, bit: u32) -> u32 {
    if on {
        bit
    } else {
        0
    }
}

fn perm_bits(allow: &str) -> u32 {
    allow.chars().fold(0, |m, c| match c {
        'r' => m | 4,
        'w' => m | 2,
        'x' => m | 1,
        _ => m,
    })
}

/// cs.vt's `allow-deny` text for three permission bits: 6 → `rw-x`.
fn allow_deny(bits: u32) -> String {
    let (mut allow, mut deny) = (String::new(), String::new());
    for (c, bit) in [('r', 4), ('w', 2), ('x', 1)] {
        if bits & bit != 0 {
            allow.push(c);
        } else {
            deny.push(c);
        }
    }
    format!("{allow}-{deny}")
}

fn owner_of(v: Json) -> Result<Owner> {
    let text = match v {
        Json::Num(t) => t,
        Json::Str(s) => s.to_text()?,
        _ => return Err(Error::bad("owner is not a name or number")),
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let n = text
            .parse()
            .map_err(|_| Error::bad("owner id does not fit 32 bits"))?;
        return Ok(Owner::Id(n));
    }
    if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) && text.parse::<f64>().is_ok() {
        return Err(Error::bad(format!("owner id {text} is not a u32")));
    }
    Ok(Owner::Name(text))
}

/// Python-ish truthiness, except that the strings `False` and `0` are false.
fn truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Num(t) => t.parse::<f64>() != Ok(0.0),
        Json::Str(s) => !matches!(s.to_text().as_deref(), Ok("" | "False" | "false" | "0")),
        Json::Arr(a) => !a.is_empty(),
        Json::Obj(o) => !o.is_empty(),
    }
}

fn is_ident(k: &str) -> bool {
    let mut b = k.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Whether a key/value may go in the compact form and read back the same.
fn compact_ok(k: &str, v: &Item<'_>) -> bool {
    if !COMPACT_KEYS.contains(&k) {
        return false;
    }
    match v {
        Item::Str(s) => match s.to_text() {
            Ok(t) => {
                let digits = t.bytes().all(|b| b.is_ascii_digit());
                !t.is_empty()
                    && !t.contains(|c: char| c == ';' || c.is_whitespace() || c.is_control())
                    && !(digits && (k == K_USER || k == K_GROUP))
            }
            Err(_) => false,
        },
        _ => true,
    }
}

fn write_compact(out: &mut String, v: &Item<'_>) {
    match v {
        Item::Str(s) => out.push_str(&s.to_text().unwrap_or_default()),
        Item::Id(n) => out.push_str(&n.to_string()),
        Item::Time(ns) => out.push_str(&fixed_time(*ns)),
        Item::Flag => out.push_str("True"),
        Item::Json(j) => j.write(out, false),
        Item::Other(j) => j.write(out, false),
    }
}

fn write_json_item(out: &mut String, v: &Item<'_>) {
    match v {
        Item::Str(s) => s.write(out, false),
        Item::Id(n) => out.push_str(&n.to_string()),
        Item::Time(ns) => out.push_str(&json_time(*ns)),
        Item::Flag => out.push_str("true"),
        Item::Json(j) => j.write(out, false),
        Item::Other(j) => j.write(out, false),
    }
}

/// Seconds with 6 decimals (cs.vt's `%f`) when exact, else 9.
pub fn fixed_time(ns: i128) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let a = ns.unsigned_abs();
    let (secs, frac) = (a / NS as u128, a % NS as u128);
    if frac % 1000 == 0 {
        format!("{sign}{secs}.{:06}", frac / 1000)
    } else {
        format!("{sign}{secs}.{frac:09}")
    }
}

/// Python's float repr when it is exact (as cs.vt's JSON has it), else [`fixed_time`].
fn json_time(ns: i128) -> String {
    let fixed = fixed_time(ns);
    if let Ok(f) = fixed.parse::<f64>() {
        let repr = python_float_repr(f);
        if parse_time(&repr).ok() == Some(ns) {
            return repr;
        }
    }
    fixed
}

/// Parses decimal seconds (`-12.5`, `1.7e+09`) exactly into nanoseconds,
/// rounding down beyond nine decimals.
///
/// Fails on anything but a finite decimal number within ±1e20 seconds.
pub fn parse_time(t: &str) -> Result<i128> {
    let bad = || Error::bad(format!("mtime {t:?} is not a decimal number within range"));
    let body = t.trim();
    let (neg, body) = match body.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, body.strip_prefix('+').unwrap_or(body)),
    };
    let (mant, exp) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().map_err(|_| bad())?),
        None => (body, 0),
    };
    let (ip, fp) = mant.split_once('.').unwrap_or((mant, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (ip.is_empty() && fp.is_empty()) || !all_digits(ip) || !all_digits(fp) {
        return Err(bad());
    }
    let digits = format!("{ip}{fp}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    // value in ns = digits × 10^shift
    let shift = i64::from(exp) + 9 - fp.len() as i64;
    let (kept, dropped_nonzero) = if shift >= 0 {
        if digits.len() as i64 + shift > 32 {
            return Err(bad());
        }
        (format!("{digits}{}", "0".repeat(shift as usize)), false)
    } else {
        let cut = (digits.len() as i64 + shift).max(0) as usize;
        let (k, d) = digits.split_at(cut);
        (k.to_owned(), d.bytes().any(|b| b != b'0'))
    };
    if kept.len() > 32 {
        return Err(bad());
    }
    let mut v: i128 = if kept.is_empty() {
        0
    } else {
        kept.parse().map_err(|_| bad())?
    };
    if neg {
        v = -v - i128::from(dropped_nonzero);
    }
    if v.abs() > MAX_MTIME_SECS * NS {
        return Err(bad());
    }
    Ok(v)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compact_form_as_csvt_writes_it() {
        let mut m = Meta::default();
        m.set_mode(0o644);
        m.user = Some(Owner::Name("alice".into()));
        m.group = Some(Owner::Name("staff".into()));
        m.mtime_ns = Some(1_700_000_000_250_000_000);
        let t = "a:o:rw-x,g:r-wx,*:r-wx;g:staff;m:1700000000.250000;u:alice";
        assert_eq!(m.to_text(), t);
        assert_eq!(Meta::from_text(t).unwrap(), m);
        assert_eq!(
            m.to_string(),
            r#"M{a:"o:rw-x,g:r-wx,*:r-wx",g:"staff",m:1700000000.250000,u:"alice"}"#
        );
    }

    #[test]
    fn mode_mapping() {
        let mut m = Meta::default();
        m.set_mode(0o4755);
        assert_eq!(m.acl.as_deref(), Some("o:rwx-,g:rx-w,*:rx-w"));
        assert!(m.setuid && !m.setgid && !m.sticky);
        assert_eq!(m.mode(), 0o4755);
        m.set_mode(0o3570);
        assert_eq!(m.mode(), 0o3570);
        assert!(m.to_text().contains("\"st\":true"), "{}", m.to_text());
        let m = Meta::from_text("a:o:rwx-;sg:True").unwrap();
        assert_eq!(m.mode(), 0o2700, "sg is setgid, not cs.vt's setuid quirk");
    }

    #[test]
    fn set_mode_keeps_other_audiences() {
        let mut m = Meta {
            acl: Some("o:r-wx,u:bob:rw-x".into()),
            ..Meta::default()
        };
        m.set_mode(0o640);
        assert_eq!(m.acl.as_deref(), Some("o:rw-x,g:r-wx,*:-rwx,u:bob:rw-x"));
    }

    #[test]
    fn nanoseconds_survive_every_form() {
        let mut m = Meta::default();
        m.set_mtime(1_700_000_000, 123_456_789);
        assert!(m.to_text().contains("m:1700000000.123456789"));
        assert_eq!(Meta::from_text(&m.to_text()).unwrap(), m);
        m.pathref = Some(b"x".to_vec());
        assert!(m.to_text().contains("\"m\":1700000000.123456789"));
        assert_eq!(Meta::from_text(&m.to_text()).unwrap(), m);
        assert_eq!(Meta::parse_transcription(&m.to_string()).unwrap(), m);
        assert_eq!(m.mtime(), Some((1_700_000_000, 123_456_789)));
    }

    #[test]
    fn json_mtime_uses_python_repr_when_exact() {
        let m = Meta {
            mtime_ns: Some(1_700_000_030_500_000_000),
            pathref: Some(b"t".to_vec()),
            ..Meta::default()
        };
        assert_eq!(m.to_text(), r#"{"m":1700000030.5,"pathref":"t"}"#);
    }

    #[test]
    fn times_parse_exactly() {
        assert_eq!(parse_time("1.7e+09").unwrap(), 1_700_000_000 * NS);
        assert_eq!(parse_time("-1.5").unwrap(), -1_500_000_000);
        assert_eq!(parse_time("0.0000000015").unwrap(), 1);
        assert_eq!(parse_time("-0.0000000015").unwrap(), -2);
        assert_eq!(fixed_time(-1_500_000_000), "-1.500000");
        assert_eq!(parse_time("0e999999").unwrap(), 0);
        assert_eq!(parse_time("-0.0").unwrap(), 0);
        for t in [
            "nan",
            "inf",
            "1e300",
            "",
            ".",
            "1.2.3",
            "0x10",
            "1e99999999999",
        ] {
            assert!(parse_time(t).is_err(), "{t}");
        }
    }

    #[test]
    fn owners() {
        let m = Meta::from_text("g:54321;u:12345").unwrap();
        assert_eq!((m.uid(), m.gid()), (Some(12345), Some(54321)));
        assert!(Meta::from_text(r#"{"u":-1}"#).is_err());
        assert!(Meta::from_text("u:99999999999").is_err());
        let m = Meta {
            user: Some(Owner::Name("a b".into())),
            ..Meta::default()
        };
        assert_eq!(m.to_text(), r#"{"u":"a b"}"#);
        assert_eq!(m.to_string(), r#"M{u:"a\u0020b"}"#);
    }

    #[test]
    fn owner_from_id_falls_back_to_number() {
        assert_eq!(Owner::from_id(5, Some("bob")), Owner::Name("bob".into()));
        assert_eq!(Owner::from_id(5, None), Owner::Id(5));
        assert_eq!(Owner::from_id(5, Some("123")), Owner::Id(5));
        assert_eq!(
            Owner::Name("bob".into()).resolve(|n| (n == "bob").then_some(7)),
            Some(7)
        );
    }

    fn arb_owner() -> impl Strategy<Value = Owner> {
        prop_oneof![
            any::<u32>().prop_map(Owner::Id),
            "[a-z_][a-z0-9 ;_.-]{0,12}".prop_map(Owner::Name),
        ]
    }

    fn arb_json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(|n| Json::Num(n.to_string())),
            "\\PC{0,8}".prop_map(|s| Json::Str(JStr::from_text(&s))),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::Arr),
                proptest::collection::vec(("[a-z]{1,4}", inner), 0..4).prop_map(|v| {
                    Json::Obj(
                        v.into_iter()
                            .map(|(k, j)| (JStr::from_text(&k), j))
                            .collect(),
                    )
                }),
            ]
        })
    }

    fn arb_xattrs() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
        proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 1..8),
            proptest::collection::vec(any::<u8>(), 0..8),
            0..3,
        )
        .prop_map(|m| m.into_iter().rev().collect())
    }

    pub(crate) fn arb_meta() -> impl Strategy<Value = Meta> {
        (
            (
                proptest::option::of(arb_owner()),
                proptest::option::of(arb_owner()),
                any::<Option<u16>>(),
            ),
            (
                proptest::option::of(-(1i128 << 70)..(1i128 << 70)),
                any::<(bool, bool, bool)>(),
            ),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
            arb_xattrs(),
            proptest::collection::btree_map("[a-z]{3,6}|[A-Z -]{1,4}", arb_json(), 0..2),
        )
            .prop_map(
                |((user, group, mode), (mtime_ns, (su, sg, st)), pathref, xattrs, other)| {
                    let mut m = Meta {
                        user,
                        group,
                        mtime_ns,
                        pathref,
                        xattrs,
                        other,
                        ..Meta::default()
                    };
                    if let Some(mode) = mode {
                        m.set_mode(u32::from(mode & 0o777));
                    }
                    (m.setuid, m.setgid, m.sticky) = (su, sg, st);
                    m
                },
            )
    }

    proptest! {
        #[test]
        fn text_and_transcription_roundtrip(m in arb_meta()) {
            prop_assert_eq!(&Meta::from_text(&m.to_text()).unwrap(), &m);
            let t = m.to_string();
            prop_assert!(!t.contains(char::is_whitespace), "{}", t);
            prop_assert_eq!(&Meta::parse_transcription(&t).unwrap(), &m);
        }

        #[test]
        fn mode_roundtrip(mode in 0u32..0o10000) {
            let mut m = Meta::default();
            m.set_mode(mode);
            prop_assert_eq!(m.mode(), mode);
        }

        #[test]
        fn garbage_never_panics(s in "\\PC{0,60}", j in "[{}\\[\\]\":,a-z0-9.;e-]{0,60}") {
            let _ = Meta::from_text(&s);
            let _ = Meta::from_text(&j);
            let _ = Meta::parse_transcription(&format!("M{{{j}}}"));
        }
    }
}
