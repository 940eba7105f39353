use super::*;
use crate::dir::meta::tests::arb_meta;
use crate::hash::{HashAlg, HashCode};
use crate::transcribe::tests::arb_blockref;
use proptest::prelude::*;

fn hb(n: u8, span: u64) -> BlockRef {
    BlockRef::Hash {
        hash: HashCode::from_digest(HashAlg::Blake3, &[n; 32]).unwrap(),
        span,
    }
}

const AWKWARD: &[&[u8]] = &[
    b"a b",
    b"tab\there",
    b"line\nbreak",
    b"\"quoted\"",
    b"back\\slash",
    b"caf\xc3\xa9",
    b"not\xffutf8\xc3",
    b"\xed\xb3\xbf",
    b"{brace}:,",
    b"\x01\x7f",
    b"...",
    b"\xe2\x80\xa8sep",
];

#[test]
fn awkward_names_roundtrip_exactly() {
    for &name in AWKWARD {
        let e = Dirent::file(name, hb(1, 10));
        let t = e.transcribe();
        assert!(t.is_ascii() && !t.contains(char::is_whitespace), "{t}");
        assert_eq!(Dirent::parse(&t).unwrap(), e, "{t}");
        assert_eq!(Dirent::decode(&e.encode()).unwrap(), e);
    }
}

#[test]
fn non_utf8_name_is_raw_bytes_in_binary() {
    let e = Dirent::file(b"x\xff", BlockRef::empty());
    let enc = e.encode();
    assert_eq!(&enc[..5], b"\x00\x02\x02x\xff");
    assert_eq!(e.transcribe(), r#"F{"x\udcff":}"#);
}

#[test]
fn validate_name_rejects_bad_names() {
    for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0b"] {
        let err = validate_name(bad).unwrap_err().to_string();
        assert!(err.contains("entry name"), "{err}");
    }
    for good in [&b"..."[..], b".a", b"a..", b"\xff"] {
        validate_name(good).unwrap();
    }
}

#[test]
fn kinds_and_blocks_in_text() {
    let u = Uuid::from_bytes([7; 16]);
    let cases = [
        Dirent::file(b"f", BlockRef::empty()),
        Dirent::new(DirentKind::File, b"noblock"),
        Dirent::dir(b"", hb(2, 0)),
        Dirent::symlink(b"l", b"../t\xff"),
        Dirent::indirect(b"h", u),
        Dirent {
            block: Some(hb(3, 4)),
            ..Dirent::indirect(b"h2", u)
        },
        Dirent {
            extended: Some(vec![1, 2]),
            prev: Some(hb(4, 9)),
            ..Dirent::dir(b"d", hb(5, 1))
        },
    ];
    for e in cases {
        let t = e.transcribe();
        assert_eq!(Dirent::parse(&t).unwrap(), e, "{t}");
        assert_eq!(Dirent::decode(&e.encode()).unwrap(), e, "{t}");
    }
    assert_eq!(
        Dirent::parse(r#"F{"x"}"#).unwrap().block,
        Some(BlockRef::empty())
    );
    assert_eq!(Dirent::parse(r#"SymLink{"x":}"#).unwrap().block, None);
}

#[test]
fn indirect_binary_matches_csvt_layout() {
    let u = Uuid::parse_str("0f1e2d3c-4b5a-4697-8877-665544332211").unwrap();
    let e = Dirent::indirect(b"hardlink", u);
    assert_eq!(
        hex(&e.encode()),
        "030e08686172646c696e6b0f1e2d3c4b5a46978877665544332211"
    );
    assert_eq!(
        e.transcribe(),
        r#"Indirect{"hardlink":uuid:U{0f1e2d3c-4b5a-4697-8877-665544332211}}"#
    );
}

#[test]
fn entries_sorted_and_checked() {
    let a = Dirent::file(b"b", BlockRef::empty());
    let b = Dirent::file(b"a", BlockRef::literal(b"x"));
    let data = encode_entries(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(decode_entries(&data).unwrap(), vec![b.clone(), a.clone()]);
    assert!(encode_entries(&[a.clone(), a.clone()]).is_err());
    assert!(encode_entries(&[Dirent::file(b"..", BlockRef::empty())]).is_err());
    // Out of order is accepted; a repeat is not, even when not adjacent.
    let mut raw = a.encode();
    raw.extend(b.encode());
    assert_eq!(decode_entries(&raw).unwrap().len(), 2);
    raw.extend(a.encode());
    assert!(decode_entries(&raw)
        .unwrap_err()
        .to_string()
        .contains("repeats"));
    let dot = Dirent::file(b".", BlockRef::empty()).encode();
    assert!(decode_entries(&dot).is_err());
    assert!(decode_entries(&Dirent::file(b"", BlockRef::empty()).encode()).is_err());
    assert_eq!(decode_entries(&[]).unwrap(), vec![]);
}

#[test]
fn bad_records_are_errors() {
    let e = Dirent::file(b"a", BlockRef::empty());
    let mut enc = e.encode();
    enc[1] |= 0x40;
    assert!(Dirent::decode(&enc).is_err(), "unknown flag");
    assert!(Dirent::decode(&[7, 0]).is_err(), "unknown type");
    assert!(
        Dirent::decode(&[0, 0x06, 0]).is_err(),
        "HASNAME with empty name"
    );
    assert!(
        Dirent::decode(&[0, 0x06, 3, b'a', b'/', b'b']).is_err(),
        "slash"
    );
    assert!(Dirent::parse(r#"F{"a/b":}"#).is_err());
    assert!(Dirent::parse(r#"F{"a":bogus:1}"#).is_err());
    assert!(Dirent::parse(r#"X{"a":}"#).is_err());
}

fn arb_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(
            any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
            1..24
        ),
        "[^/\\x00]{1,12}".prop_map(String::into_bytes),
    ]
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn arb_dirent() -> impl Strategy<Value = Dirent> {
    (
        (0u64..4, arb_name(), any::<bool>(), arb_meta()),
        (
            any::<Option<[u8; 16]>>(),
            proptest::option::of(arb_blockref()),
        ),
        (
            proptest::option::of(arb_blockref()),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)),
        ),
    )
        .prop_map(
            |((k, name, named, meta), (uuid, block), (prev, extended))| Dirent {
                kind: DirentKind::from_code(k).unwrap(),
                name: if named { name } else { Vec::new() },
                meta,
                uuid: uuid.map(Uuid::from_bytes),
                block,
                prev,
                extended,
            },
        )
}

proptest! {
    #[test]
    fn binary_roundtrip(e in arb_dirent()) {
        prop_assert_eq!(Dirent::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn text_roundtrip(e in arb_dirent()) {
        let t = e.transcribe();
        prop_assert!(t.is_ascii() && !t.contains(char::is_whitespace), "{}", t);
        prop_assert_eq!(&Dirent::parse(&t).unwrap(), &e);
        prop_assert_eq!(t.parse::<Dirent>().unwrap().encode(), e.encode());
    }

    #[test]
    fn entries_roundtrip(es in proptest::collection::btree_map(arb_name(), arb_dirent(), 0..6)) {
        let es: Vec<Dirent> = es.into_iter().map(|(n, e)| Dirent { name: n, ..e }).collect();
        let data = encode_entries(&es).unwrap();
        prop_assert_eq!(decode_entries(&data).unwrap(), es);
    }

    #[test]
    fn truncated_binary_is_error(e in arb_dirent(), cut in any::<prop::sample::Index>()) {
        let enc = e.encode();
        let n = cut.index(enc.len());
        prop_assert!(Dirent::decode(&enc[..n]).is_err());
    }

    #[test]
    fn truncated_text_is_error(e in arb_dirent(), cut in any::<prop::sample::Index>()) {
        let t = e.transcribe();
        prop_assert!(Dirent::parse(&t[..cut.index(t.len())]).is_err());
    }

    #[test]
    fn garbage_never_panics(d in proptest::collection::vec(any::<u8>(), 0..200), s in "\\PC{0,120}") {
        let _ = Dirent::decode(&d);
        let _ = decode_entries(&d);
        let _ = Dirent::parse(&s);
    }

    #[test]
    fn mutated_record_never_panics(e in arb_dirent(), at in any::<prop::sample::Index>(), x in any::<u8>()) {
        let mut enc = e.encode();
        let i = at.index(enc.len());
        enc[i] ^= x;
        let _ = Dirent::decode(&enc);
        let mut t = e.transcribe().into_bytes();
        let j = at.index(t.len());
        t[j] = b"{}:,\"[]0aM"[usize::from(x) % 10];
        let _ = Dirent::parse(&String::from_utf8_lossy(&t));
    }
}

#[test]
fn an_empty_meta_key_survives_the_transcription() {
    // Compact meta text ":v" has an empty key; the transcription quotes it as "".
    let m = Meta::from_text(":v;a:b").unwrap();
    let text = m.to_string();
    assert!(text.contains(r#""":"#), "{text}");
    assert_eq!(Meta::parse_transcription(&text).unwrap(), m);
    // An unquoted key still may not be empty.
    assert!(Meta::parse_transcription("M{:1}").is_err());
}
