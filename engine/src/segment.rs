//! Segment files (`data/*.vtd`): framing, checksums, compression, scanning.
//!
//! A segment is append-only. Our format (version 1) starts with a [`SEGMENT_HEADER_LEN`]-byte
//! header and holds self-describing records, each with a crc32 and the block's hashcode, so the
//! index can be rebuilt from segments alone. Legacy cs.vt segments have no header; their records
//! are `BSUInt flags + BSData payload` and the hashcode is recomputed from the payload.
//! The layout is documented in `docs/format.md`; the constants below are the same layout.

use crate::codec::Reader;
use crate::error::{Error, Result};
use crate::hash::{HashAlg, HashCode};
use crate::io::FileIo;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::io::Read;

/// The first 8 bytes of a version-1 segment. 0x89 cannot start a legacy record
/// (its BSUInt flags would exceed 1), so the format is detected from the first bytes.
pub const SEGMENT_MAGIC: [u8; 8] = *b"\x89VTSEG\r\n";
/// The segment format this code writes: version 2 adds group records (see [`RecordKind`]).
pub const SEGMENT_VERSION: u16 = 2;
/// Segment format versions this code reads (version 1 has no group records).
pub const SEGMENT_VERSIONS_READ: [u16; 2] = [1, 2];
/// Length of the segment header: magic, version (u16 LE), flags (u16 LE, 0), crc32 (u32 LE) of bytes 0..12.
pub const SEGMENT_HEADER_LEN: u64 = 16;
/// Offset of the version field in the segment header.
pub const HDR_VERSION_AT: usize = 8;
/// Offset of the crc32 field in the segment header.
pub const HDR_CRC_AT: usize = 12;

/// Offset of the record's crc32 (u32 LE) over bytes `REC_CRC_COVERS_FROM..` of the record.
pub const REC_CRC_AT: usize = 0;
/// The crc covers the record from here to its end.
pub const REC_CRC_COVERS_FROM: usize = 4;
/// Offset of the stored (on-disk) payload length, u32 LE.
pub const REC_STORED_LEN_AT: usize = 4;
/// Offset of the raw (uncompressed) block length, u32 LE.
pub const REC_RAW_LEN_AT: usize = 8;
/// Offset of the codec byte (see [`Codec`]).
pub const REC_CODEC_AT: usize = 12;
/// Offset of the hashenum byte (cs.vt numbering).
pub const REC_HASHENUM_AT: usize = 13;
/// Offset of the record kind byte (see [`RecordKind`]; zero in format version 1).
pub const REC_KIND_AT: usize = 14;
/// Offset of a reserved byte, zero.
pub const REC_RESERVED_AT: usize = 15;
/// Length of the fixed part of a record; the digest follows, then the payload.
pub const REC_FIXED_LEN: usize = 16;

/// Largest block a record may hold; larger adds are refused.
pub const MAX_BLOCK_LEN: usize = 256 << 20;
/// Blocks shorter than this are stored raw: compression cannot pay for its framing.
pub const MIN_COMPRESS_LEN: usize = 64;

/// Most members a group record may hold (the index entry keeps the member's number in 9 bits).
pub const MAX_GROUP_MEMBERS: usize = 512;
/// Largest raw group payload a reader accepts (writers stay far below it).
pub const MAX_GROUP_LEN: usize = 16 << 20;

/// What a version-1/2 record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// One block; the digest is the block's hashcode.
    Block = 0,
    /// Several small blocks compressed together (see [`encode_group_record`]); the
    /// digest is the hashcode of the raw group payload.
    Group = 1,
}

/// Legacy record flag: the payload is zlib-compressed.
pub const LEGACY_FLAG_ZLIB: u64 = 0x01;

/// How a record's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Stored as is.
    None = 0,
    /// zlib (legacy cs.vt records only).
    Zlib = 1,
    /// zstd.
    Zstd = 2,
}

impl Codec {
    /// The codec with numeric code `n`.
    pub fn from_u8(n: u8) -> Option<Codec> {
        match n {
            0 => Some(Codec::None),
            1 => Some(Codec::Zlib),
            2 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// The on-disk format of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFormat {
    /// Our format, version [`SEGMENT_VERSION`].
    V1,
    /// cs.vt's headerless format.
    Legacy,
}

impl SegmentFormat {
    /// Numeric code used in the index's segment table.
    pub fn code(self) -> u8 {
        match self {
            SegmentFormat::V1 => 1,
            SegmentFormat::Legacy => 0,
        }
    }
    /// The format with code `n`.
    pub fn from_code(n: u8) -> Option<Self> {
        match n {
            1 => Some(SegmentFormat::V1),
            0 => Some(SegmentFormat::Legacy),
            _ => None,
        }
    }
}

/// The bytes of a fresh segment header.
pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[HDR_VERSION_AT..HDR_VERSION_AT + 2].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&h[..HDR_CRC_AT]);
    h[HDR_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What the first bytes of a segment file say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCheck {
    /// A valid header of a known format.
    Format(SegmentFormat),
    /// A torn or partial version-1 header (a crash while creating the file).
    Torn,
}

/// Detects the format from the first bytes of a file (`head` may be shorter than a header).
/// Fails for a complete header with a bad checksum or an unknown version.
pub fn check_header(head: &[u8], name: &str) -> Result<HeaderCheck> {
    let n = head.len().min(SEGMENT_MAGIC.len());
    if head.is_empty()
        || head[..n] == SEGMENT_MAGIC[..n] && head.len() < SEGMENT_HEADER_LEN as usize
    {
        return Ok(HeaderCheck::Torn);
    }
    if head[..n] != SEGMENT_MAGIC[..n] {
        return Ok(HeaderCheck::Format(SegmentFormat::Legacy));
    }
    let crc = u32::from_le_bytes(
        head[HDR_CRC_AT..HDR_CRC_AT + 4]
            .try_into()
            .unwrap_or_default(),
    );
    if crc != crc32fast::hash(&head[..HDR_CRC_AT]) {
        return Err(Error::corrupt(name, 0, "segment header checksum mismatch"));
    }
    let version = u16::from_le_bytes([head[HDR_VERSION_AT], head[HDR_VERSION_AT + 1]]);
    if !SEGMENT_VERSIONS_READ.contains(&version) {
        return Err(Error::Unsupported(format!(
            "{name}: segment format version {version}"
        )));
    }
    Ok(HeaderCheck::Format(SegmentFormat::V1))
}

/// The version field of a segment file's header, when it has one of our format.
pub fn header_version(file: &dyn FileIo) -> Option<u16> {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    file.read_at(&mut h, 0).ok()?;
    match check_header(&h, "") {
        Ok(HeaderCheck::Format(SegmentFormat::V1)) => Some(u16::from_le_bytes([
            h[HDR_VERSION_AT],
            h[HDR_VERSION_AT + 1],
        ])),
        _ => None,
    }
}

/// A record ready to append: built (and compressed) outside the writer lock.
#[derive(Debug)]
pub struct EncodedRecord {
    /// The complete record bytes.
    pub bytes: Vec<u8>,
    /// The payload codec.
    pub codec: Codec,
    /// Payload bytes on disk.
    pub stored_len: u32,
    /// Block length.
    pub raw_len: u32,
}

thread_local! {
    // One zstd context per thread: creating one per block costs more than compressing 4 KiB.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    /// Long blocks in a row on this thread whose samples did not compress (or that
    /// were stored raw unsampled because of such a run).
    static INCOMPRESSIBLE_RUN: Cell<u32> = const { Cell::new(0) };
}

/// After this many incompressible long blocks in a row, only every
/// [`PROBE_EVERY`]-th long block is sampled; the others are stored raw.
const RUN_BEFORE_SKIPPING: u32 = 16;
/// In a run of incompressible blocks, one long block in this many is sampled; one
/// that compresses ends the run, so a switch to compressible data stores at most
/// `PROBE_EVERY - 1` blocks per thread raw that could have been compressed.
const PROBE_EVERY: u32 = 8;

/// Blocks at least this long are test-compressed on samples before the full pass.
pub const SAMPLE_MIN_LEN: usize = 16 << 10;
/// Length of each sample (one from the start, one from the middle).
const SAMPLE_LEN: usize = 1 << 10;

/// zstd-compresses `data` at `level`; `None` when compression fails or does not save space.
///
/// A long block whose samples save less than 1/16 of their size is taken as
/// incompressible (already compressed or random) and skips the full pass, which
/// would cost as much as hashing it.
fn compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    if data.len() < MIN_COMPRESS_LEN || level <= 0 {
        return None;
    }
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
        }
        let (_, c) = slot.as_mut()?;
        if data.len() >= SAMPLE_MIN_LEN && !probe(c, data) {
            return None;
        }
        let out = c.compress(data).ok()?;
        (out.len() < data.len()).then_some(out)
    })
}

/// True when the long block `data` is worth a full compression pass: its samples
/// compress. In a run of incompressible blocks (random or already compressed data,
/// where sampling costs ~5% of a save's CPU) most blocks skip the samples.
fn probe(c: &mut zstd::bulk::Compressor<'static>, data: &[u8]) -> bool {
    INCOMPRESSIBLE_RUN.with(|run| {
        let n = run.get();
        let sample =
            n < RUN_BEFORE_SKIPPING || (n - RUN_BEFORE_SKIPPING).is_multiple_of(PROBE_EVERY);
        let compresses = sample && samples_compress(c, data);
        run.set(if compresses { 0 } else { n.saturating_add(1) });
        compresses
    })
}

/// True when a sample of `data` (at least [`SAMPLE_MIN_LEN`] long) saves at least 1/16.
fn samples_compress(c: &mut zstd::bulk::Compressor<'static>, data: &[u8]) -> bool {
    let mid = data.len() / 2;
    [&data[..SAMPLE_LEN], &data[mid..mid + SAMPLE_LEN]]
        .iter()
        .any(|s| {
            c.compress(s)
                .is_ok_and(|out| out.len() < s.len() - s.len() / 16)
        })
}

/// Builds the record for `data` with hashcode `hash`, compressing with zstd at `level`
/// (0 disables compression). Fails when the block exceeds [`MAX_BLOCK_LEN`].
pub fn encode_record(hash: &HashCode, data: &[u8], level: i32) -> Result<EncodedRecord> {
    Ok(encode_record_parts(hash, data, level)?.joined())
}

/// Like [`encode_record`], but the record comes as header and payload, so that a raw
/// payload is not copied on the way to the segment.
/// Fails when the block exceeds [`MAX_BLOCK_LEN`].
pub fn encode_record_parts<'a>(
    hash: &HashCode,
    data: &'a [u8],
    level: i32,
) -> Result<RecordParts<'a>> {
    if data.len() > MAX_BLOCK_LEN {
        return Err(Error::bad(format!(
            "block of {} bytes exceeds the {MAX_BLOCK_LEN}-byte limit",
            data.len()
        )));
    }
    Ok(frame_parts(RecordKind::Block, hash, data, level))
}

/// A record as its header (fixed fields and digest) and its payload.
#[derive(Debug)]
pub struct RecordParts<'a> {
    /// The record's fixed fields and digest.
    pub header: Vec<u8>,
    /// The stored payload: the block itself, or its compressed form.
    pub payload: Cow<'a, [u8]>,
    /// The payload codec.
    pub codec: Codec,
    /// Block length.
    pub raw_len: u32,
}

impl RecordParts<'_> {
    /// Payload bytes on disk.
    pub fn stored_len(&self) -> u32 {
        self.payload.len() as u32
    }

    /// The record as one buffer.
    fn joined(self) -> EncodedRecord {
        let stored_len = self.stored_len();
        let mut bytes = self.header;
        bytes.reserve_exact(self.payload.len());
        bytes.extend_from_slice(&self.payload);
        EncodedRecord {
            stored_len,
            raw_len: self.raw_len,
            codec: self.codec,
            bytes,
        }
    }
}

/// Frames `data` as a record of `kind` with digest `hash`, compressed when it pays.
fn frame(kind: RecordKind, hash: &HashCode, data: &[u8], level: i32) -> EncodedRecord {
    frame_parts(kind, hash, data, level).joined()
}

/// [`frame`] as header and payload.
fn frame_parts<'a>(
    kind: RecordKind,
    hash: &HashCode,
    data: &'a [u8],
    level: i32,
) -> RecordParts<'a> {
    let (codec, payload) = match compress(data, level) {
        Some(c) => (Codec::Zstd, Cow::Owned(c)),
        None => (Codec::None, Cow::Borrowed(data)),
    };
    let digest = hash.digest();
    let mut header = Vec::with_capacity(REC_FIXED_LEN + digest.len());
    header.extend_from_slice(&[0; 4]);
    header.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    header.extend_from_slice(&(data.len() as u32).to_le_bytes());
    header.push(codec as u8);
    header.push(hash.alg().hashenum() as u8);
    header.extend_from_slice(&[kind as u8, 0]);
    header.extend_from_slice(digest);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[REC_CRC_COVERS_FROM..]);
    crc.update(&payload);
    header[REC_CRC_AT..REC_CRC_AT + 4].copy_from_slice(&crc.finalize().to_le_bytes());
    RecordParts {
        header,
        payload,
        codec,
        raw_len: data.len() as u32,
    }
}

/// The fixed fields of a version-1/2 record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// What the record holds.
    pub kind: RecordKind,
    /// The block's hashcode (for a group: of the raw group payload).
    pub hash: HashCode,
    /// Payload codec.
    pub codec: Codec,
    /// Payload bytes on disk.
    pub stored_len: u32,
    /// Block length.
    pub raw_len: u32,
}

impl RecordHeader {
    /// Length of the header part (fixed fields plus digest).
    pub fn header_len(&self) -> usize {
        REC_FIXED_LEN + self.hash.alg().digest_len()
    }
    /// Length of the whole record.
    pub fn record_len(&self) -> u64 {
        self.header_len() as u64 + u64::from(self.stored_len)
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses the fixed fields and digest at the start of `buf` (no checksum check).
/// Returns a description of the problem when they are not plausible.
pub fn parse_record_header(buf: &[u8]) -> std::result::Result<RecordHeader, String> {
    if buf.len() < REC_FIXED_LEN {
        return Err("truncated record header".into());
    }
    let codec = Codec::from_u8(buf[REC_CODEC_AT])
        .ok_or_else(|| format!("unknown codec {}", buf[REC_CODEC_AT]))?;
    let alg = HashAlg::from_hashenum(u64::from(buf[REC_HASHENUM_AT])).map_err(|e| e.to_string())?;
    if buf[REC_RESERVED_AT] != 0 {
        return Err("reserved byte is not zero".into());
    }
    let (kind, max) = match buf[REC_KIND_AT] {
        0 => (RecordKind::Block, MAX_BLOCK_LEN),
        1 => (RecordKind::Group, MAX_GROUP_LEN),
        k => return Err(format!("unknown record kind {k}")),
    };
    let (stored_len, raw_len) = (le32(buf, REC_STORED_LEN_AT), le32(buf, REC_RAW_LEN_AT));
    if raw_len as usize > max || stored_len as usize > max + 1024 {
        return Err(format!("absurd lengths stored={stored_len} raw={raw_len}"));
    }
    if codec == Codec::None && stored_len != raw_len {
        return Err("uncompressed record with stored length != raw length".into());
    }
    let dlen = alg.digest_len();
    let digest = buf
        .get(REC_FIXED_LEN..REC_FIXED_LEN + dlen)
        .ok_or("truncated digest")?;
    let hash = HashCode::from_digest(alg, digest).map_err(|e| e.to_string())?;
    Ok(RecordHeader {
        kind,
        hash,
        codec,
        stored_len,
        raw_len,
    })
}

/// Checks a whole record's crc; `rec` must be exactly the record's bytes.
pub fn check_record_crc(rec: &[u8]) -> bool {
    rec.len() >= REC_FIXED_LEN
        && le32(rec, REC_CRC_AT) == crc32fast::hash(&rec[REC_CRC_COVERS_FROM..])
}

/// Decodes a payload to the block's bytes, checking the resulting length.
pub fn decompress(
    codec: Codec,
    payload: &[u8],
    raw_len: u32,
) -> std::result::Result<Vec<u8>, String> {
    let data = match codec {
        Codec::None => payload.to_vec(),
        Codec::Zstd => {
            zstd::bulk::decompress(payload, raw_len as usize).map_err(|e| format!("zstd: {e}"))?
        }
        Codec::Zlib => {
            let mut out = Vec::with_capacity(raw_len as usize);
            // Read one byte past the expected length so an overlong stream is detected.
            flate2::read::ZlibDecoder::new(payload)
                .take(u64::from(raw_len) + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("zlib: {e}"))?;
            out
        }
    };
    if data.len() != raw_len as usize {
        return Err(format!("decoded {} bytes, expected {raw_len}", data.len()));
    }
    Ok(data)
}

/// Reads and checks the version-1 record of `expect` at `offset` of `file`, returning the block.
/// `name` labels errors. Fails with [`Error::Corrupt`] on any mismatch.
pub fn read_record(
    file: &dyn FileIo,
    name: &str,
    offset: u64,
    expect: &HashCode,
    stored_len: u32,
) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let n = read_record_into(file, name, offset, expect, stored_len, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

thread_local! {
    // Compressed payloads land here before decoding into the caller's buffer.
    static PAYLOAD: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// [`read_record`] into the front of `buf` (grown when shorter; bytes past the block are
/// left as they were, so a reused buffer is not zeroed again). Returns the block length.
pub fn read_record_into(
    file: &dyn FileIo,
    name: &str,
    offset: u64,
    expect: &HashCode,
    stored_len: u32,
    buf: &mut Vec<u8>,
) -> Result<usize> {
    let bad = |what: String| Error::corrupt(name, offset, what);
    let unreadable = |e: std::io::Error| bad(format!("cannot read record: {e}"));
    // Header and payload are read separately so a stored payload lands in `buf` directly.
    let mut head = [0u8; REC_FIXED_LEN + 64];
    let head = &mut head[..REC_FIXED_LEN + expect.alg().digest_len()];
    file.read_at(head, offset).map_err(unreadable)?;
    let hdr = parse_record_header(head).map_err(bad)?;
    if hdr.kind != RecordKind::Block || hdr.hash != *expect || hdr.stored_len != stored_len {
        return Err(bad(format!(
            "record holds {} ({} bytes), index expects {expect}",
            hdr.hash, hdr.stored_len
        )));
    }
    let at = offset + head.len() as u64;
    let check = |payload: &[u8]| {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head[REC_CRC_COVERS_FROM..]);
        crc.update(payload);
        if le32(head, REC_CRC_AT) == crc.finalize() {
            Ok(())
        } else {
            Err(bad("record checksum mismatch".into()))
        }
    };
    let n = stored_len as usize;
    if hdr.codec == Codec::None {
        // parse_record_header checked stored_len == raw_len.
        grow(buf, n);
        file.read_at(&mut buf[..n], at).map_err(unreadable)?;
        check(&buf[..n])?;
        return Ok(n);
    }
    PAYLOAD.with(|cell| {
        let mut payload = cell.borrow_mut();
        grow(&mut payload, n);
        file.read_at(&mut payload[..n], at).map_err(unreadable)?;
        check(&payload[..n])?;
        decompress_into(hdr.codec, &payload[..n], hdr.raw_len, buf).map_err(bad)
    })
}

/// Checks the version-1 record of `expect` that fills `rec` exactly (read from `offset` of
/// segment `name`, whose index entry says `stored_len`): header fields, hashcode, length
/// and crc. Returns the header and the payload's range within `rec`.
/// Fails with [`Error::Corrupt`] on any mismatch.
pub fn check_record(
    rec: &[u8],
    name: &str,
    offset: u64,
    expect: &HashCode,
    stored_len: u32,
) -> Result<(RecordHeader, std::ops::Range<usize>)> {
    let bad = |what: String| Error::corrupt(name, offset, what);
    let hdr = parse_record_header(rec).map_err(bad)?;
    if hdr.kind != RecordKind::Block || hdr.hash != *expect || hdr.stored_len != stored_len {
        return Err(bad(format!(
            "record holds {} ({} bytes), index expects {expect}",
            hdr.hash, hdr.stored_len
        )));
    }
    if rec.len() as u64 != hdr.record_len() {
        return Err(bad(format!(
            "record is {} bytes, its header says {}",
            rec.len(),
            hdr.record_len()
        )));
    }
    if !check_record_crc(rec) {
        return Err(bad("record checksum mismatch".into()));
    }
    Ok((hdr, hdr.header_len()..rec.len()))
}

/// Decodes a compressed `payload` into `out`, which must be exactly `raw_len` bytes.
pub fn decompress_to_slice(
    codec: Codec,
    payload: &[u8],
    raw_len: u32,
    out: &mut [u8],
) -> std::result::Result<(), String> {
    if out.len() != raw_len as usize {
        return Err(format!("output of {} bytes for {raw_len}", out.len()));
    }
    if codec != Codec::Zstd {
        out.copy_from_slice(&decompress(codec, payload, raw_len)?);
        return Ok(());
    }
    let got = DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
        }
        let d = slot.as_mut().ok_or("zstd: no decompressor")?;
        // A destination of exactly raw_len bytes makes an overlong stream an error.
        d.decompress_to_buffer(payload, out)
            .map_err(|e| format!("zstd: {e}"))
    })?;
    if got != out.len() {
        return Err(format!("decoded {got} bytes, expected {raw_len}"));
    }
    Ok(())
}

/// Makes `buf` at least `n` bytes long.
pub fn grow(buf: &mut Vec<u8>, n: usize) {
    if buf.len() < n {
        buf.resize(n, 0);
    }
}

/// Decodes a payload into a new buffer of exactly `raw_len` bytes (not zeroed first).
fn decompress_fresh(
    codec: Codec,
    payload: &[u8],
    raw_len: u32,
) -> std::result::Result<Vec<u8>, String> {
    if codec != Codec::Zstd {
        return decompress(codec, payload, raw_len);
    }
    let mut out = Vec::with_capacity(raw_len as usize);
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
        }
        let d = slot.as_mut().ok_or("zstd: no decompressor")?;
        // Decodes into the spare capacity: an overlong stream is an error.
        d.decompress_to_buffer(payload, &mut out)
            .map_err(|e| format!("zstd: {e}"))
    })?;
    if out.len() != raw_len as usize {
        return Err(format!("decoded {} bytes, expected {raw_len}", out.len()));
    }
    Ok(out)
}

/// Decodes a payload into the front of `buf`, checking the length; returns it.
fn decompress_into(
    codec: Codec,
    payload: &[u8],
    raw_len: u32,
    buf: &mut Vec<u8>,
) -> std::result::Result<usize, String> {
    let n = raw_len as usize;
    grow(buf, n);
    decompress_to_slice(codec, payload, raw_len, &mut buf[..n])?;
    Ok(n)
}

// ---- group records --------------------------------------------------------

/// Appends `n` as an unsigned LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads an unsigned LEB128 varint of at most 32 bits at `*pos`.
fn get_varint(buf: &[u8], pos: &mut usize) -> std::result::Result<u32, String> {
    let mut n: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated group table")?;
        *pos += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(n).map_err(|_| "group table length overflows".to_string());
        }
    }
    Err("overlong varint in group table".into())
}

/// The raw payload of a group record: the member count and each member's length as
/// LEB128 varints, then the members' bytes back to back (`data`, split by `lens`).
pub fn group_payload(lens: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 2 * lens.len() + 3);
    put_varint(&mut out, lens.len() as u64);
    for &l in lens {
        put_varint(&mut out, u64::from(l));
    }
    out.extend_from_slice(data);
    out
}

/// Splits a raw group payload into its members' ranges. Checks that the count is in
/// `1..=MAX_GROUP_MEMBERS` and that the lengths cover the rest of `raw` exactly, so it
/// never allocates more than the count allows and never panics on garbage.
pub fn group_members(raw: &[u8]) -> std::result::Result<Vec<std::ops::Range<usize>>, String> {
    let mut pos = 0;
    let n = get_varint(raw, &mut pos)? as usize;
    if n == 0 || n > MAX_GROUP_MEMBERS {
        return Err(format!("group of {n} members"));
    }
    let mut lens = Vec::with_capacity(n);
    let mut total: usize = 0;
    for _ in 0..n {
        let l = get_varint(raw, &mut pos)? as usize;
        total = total
            .checked_add(l)
            .filter(|t| *t <= raw.len())
            .ok_or("group members overrun the payload")?;
        lens.push(l);
    }
    if pos + total != raw.len() {
        return Err(format!(
            "group members hold {total} bytes, payload has {}",
            raw.len() - pos.min(raw.len())
        ));
    }
    Ok(lens
        .into_iter()
        .map(|l| {
            pos += l;
            pos - l..pos
        })
        .collect())
}

/// Each member's share of a group's `stored_len` payload bytes, proportional to its
/// length (the last takes the rounding remainder), so shares sum to `stored_len`.
/// Index entries of members carry their share: the store's stored-byte counter and GC's
/// dead-space accounting then need no special case.
pub fn member_shares(stored_len: u32, lens: &[u32]) -> Vec<u32> {
    let total: u64 = lens.iter().map(|&l| u64::from(l)).sum();
    let mut left = stored_len;
    let mut out: Vec<u32> = lens
        .iter()
        .map(|&l| {
            let s = (u64::from(stored_len) * u64::from(l))
                .checked_div(total)
                .unwrap_or(0) as u32;
            let s = s.min(left);
            left -= s;
            s
        })
        .collect();
    if let Some(last) = out.last_mut() {
        *last += left;
    }
    out
}

/// The digest of a group record: the hash (with `members[0]`'s algorithm) of its members'
/// digests in order. Cheap to compute (the members are hashed anyway), and a scan that
/// re-hashes the members checks it.
pub fn group_digest(members: &[HashCode]) -> HashCode {
    let alg = members.first().map_or(HashAlg::DEFAULT, |h| h.alg());
    let cat: Vec<u8> = members
        .iter()
        .flat_map(|h| h.digest().iter().copied())
        .collect();
    alg.hash(&cat)
}

/// Builds the group record of the blocks `data` (back to back, split by `lens`; at most
/// [`MAX_GROUP_MEMBERS`]) whose hashcodes are `hashes`, compressed together at `level`.
/// Fails on an empty, inconsistent or oversized group.
pub fn encode_group_record(
    hashes: &[HashCode],
    lens: &[u32],
    data: &[u8],
    level: i32,
) -> Result<EncodedRecord> {
    let sum: u64 = lens.iter().map(|&l| u64::from(l)).sum();
    if lens.is_empty()
        || lens.len() > MAX_GROUP_MEMBERS
        || hashes.len() != lens.len()
        || sum != data.len() as u64
    {
        return Err(Error::bad(format!(
            "bad group: {} members, {} hashes, {sum} of {} bytes",
            lens.len(),
            hashes.len(),
            data.len()
        )));
    }
    let raw = group_payload(lens, data);
    if raw.len() > MAX_GROUP_LEN {
        return Err(Error::bad(format!(
            "group of {} bytes is too long",
            raw.len()
        )));
    }
    Ok(frame(RecordKind::Group, &group_digest(hashes), &raw, level))
}

/// A decoded group record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedGroup {
    /// The raw group payload.
    pub raw: Vec<u8>,
    /// Each member's range within `raw`.
    pub members: Vec<std::ops::Range<usize>>,
    /// The record's payload bytes on disk.
    pub stored_len: u32,
    /// The record's codec.
    pub codec: Codec,
}

impl DecodedGroup {
    /// Member `i`'s bytes, if there is such a member.
    pub fn member(&self, i: usize) -> Option<&[u8]> {
        self.members.get(i).map(|r| &self.raw[r.clone()])
    }

    /// Member `i`, checked to be `len` bytes that hash to `expect`; `name`/`offset`
    /// label the error ([`Error::Corrupt`] naming the member).
    pub fn checked_member(
        &self,
        i: usize,
        expect: &HashCode,
        len: u32,
        name: &str,
        offset: u64,
    ) -> Result<&[u8]> {
        let bad = |what: String| Error::corrupt(name, offset, format!("group member {i}: {what}"));
        let data = self
            .member(i)
            .ok_or_else(|| bad(format!("group has only {} members", self.members.len())))?;
        if data.len() != len as usize {
            return Err(bad(format!("is {} bytes, index says {len}", data.len())));
        }
        if !expect.matches(data) {
            return Err(bad(format!("does not hash to {expect}")));
        }
        Ok(data)
    }
}

/// Decodes a group record whose header is `hdr` and payload `payload` (crc already checked):
/// decompresses and splits the members. The members are not hashed here: a read checks
/// the member it returns ([`DecodedGroup::checked_member`]), a scan all of them.
pub fn decode_group(
    hdr: &RecordHeader,
    payload: &[u8],
) -> std::result::Result<DecodedGroup, String> {
    if hdr.kind != RecordKind::Group {
        return Err("not a group record".into());
    }
    // Through the thread's reused zstd context: creating one per group costs as much as
    // decoding a small group.
    let raw = decompress_fresh(hdr.codec, payload, hdr.raw_len)?;
    let members = group_members(&raw)?;
    Ok(DecodedGroup {
        raw,
        members,
        stored_len: hdr.stored_len,
        codec: hdr.codec,
    })
}

/// Reads, checks (crc, digest, table) and decodes the group record at `offset` of `file`,
/// whose digest is of algorithm `alg`. Fails with [`Error::Corrupt`] naming `name`/`offset`.
pub fn read_group(
    file: &dyn FileIo,
    name: &str,
    offset: u64,
    alg: HashAlg,
) -> Result<DecodedGroup> {
    let bad = |what: String| Error::corrupt(name, offset, what);
    let unreadable = |e: std::io::Error| bad(format!("cannot read record: {e}"));
    let mut head = [0u8; REC_FIXED_LEN + 64];
    let head = &mut head[..REC_FIXED_LEN + alg.digest_len()];
    file.read_at(head, offset).map_err(unreadable)?;
    let hdr = parse_record_header(head).map_err(bad)?;
    if hdr.kind != RecordKind::Group {
        return Err(bad("index expects a group record here".into()));
    }
    let mut rec = vec![0u8; hdr.record_len() as usize];
    rec[..head.len()].copy_from_slice(head);
    file.read_at(&mut rec[head.len()..], offset + head.len() as u64)
        .map_err(unreadable)?;
    if !check_record_crc(&rec) {
        return Err(bad("record checksum mismatch".into()));
    }
    decode_group(&hdr, &rec[head.len()..]).map_err(bad)
}

/// Reads the legacy payload at `offset` (its start, after the record's flags and length),
/// decodes it and re-hashes it, since legacy records carry no checksum.
pub fn read_legacy(
    file: &dyn FileIo,
    name: &str,
    offset: u64,
    expect: &HashCode,
    codec: Codec,
    stored_len: u32,
    raw_len: u32,
) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; stored_len as usize];
    file.read_at(&mut buf, offset)
        .map_err(|e| Error::corrupt(name, offset, format!("cannot read record: {e}")))?;
    let data = decompress(codec, &buf, raw_len).map_err(|w| Error::corrupt(name, offset, w))?;
    if !expect.matches(&data) {
        return Err(Error::corrupt(
            name,
            offset,
            format!("legacy record does not hash to {expect}"),
        ));
    }
    Ok(data)
}

/// A member of a group record found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedMember {
    /// The member block's hashcode (computed by the scan).
    pub hash: HashCode,
    /// Its length.
    pub len: u32,
    /// Its share of the record's payload bytes (see [`member_shares`]).
    pub share: u32,
}

/// A record found by a scan.
#[derive(Debug, Clone)]
pub struct ScannedRecord {
    /// What the record holds.
    pub kind: RecordKind,
    /// The members of a group record (empty for a block record).
    pub members: Vec<ScannedMember>,
    /// Where the index should point: the record start (V1) or the payload start (legacy).
    pub offset: u64,
    /// The block's hashcode (for a group: of the raw group payload).
    pub hash: HashCode,
    /// Payload codec.
    pub codec: Codec,
    /// Payload bytes on disk.
    pub stored_len: u32,
    /// Block length (for a group: of the raw group payload).
    pub raw_len: u32,
    /// Offset just past the record.
    pub end: u64,
}

/// How a scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte up to the end of the file was valid records.
    Clean(u64),
    /// A bad or truncated record starts at `offset`.
    Bad {
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

/// Reads a file through a large window so scans cost one syscall per few MiB.
struct Window<'a> {
    file: &'a dyn FileIo,
    len: u64,
    start: u64,
    buf: Vec<u8>,
}

const WINDOW: usize = 4 << 20;

impl<'a> Window<'a> {
    fn new(file: &'a dyn FileIo, len: u64) -> Self {
        Window {
            file,
            len,
            start: 0,
            buf: Vec::new(),
        }
    }

    /// The bytes `offset..offset+n`, or `None` when the file ends first.
    fn get(&mut self, offset: u64, n: usize) -> std::io::Result<Option<&[u8]>> {
        let end = offset + n as u64;
        if end > self.len {
            return Ok(None);
        }
        if offset < self.start || end > self.start + self.buf.len() as u64 {
            let want = (self.len - offset).min(WINDOW.max(n) as u64) as usize;
            self.buf.resize(want, 0);
            self.file.read_at(&mut self.buf, offset)?;
            self.start = offset;
        }
        let at = (offset - self.start) as usize;
        Ok(Some(&self.buf[at..at + n]))
    }
}

/// Scans version-1 records from `from` to the end of `file`, calling `f` for each valid one.
/// When `verify` is set each payload is also decoded and re-hashed.
pub fn scan_v1(
    file: &dyn FileIo,
    from: u64,
    verify: bool,
    mut f: impl FnMut(ScannedRecord) -> Result<()>,
) -> Result<ScanEnd> {
    let len = file.len().map_err(|e| Error::io("segment length", e))?;
    let mut w = Window::new(file, len);
    let mut off = from;
    loop {
        if off >= len {
            // Past the end: a file shorter than its indexed end has nothing more to scan;
            // verify reports the records it lost.
            return Ok(ScanEnd::Clean(off));
        }
        match next_v1(&mut w, off, verify)? {
            Ok(rec) => {
                off = rec.end;
                f(rec)?;
            }
            Err(what) => return Ok(ScanEnd::Bad { offset: off, what }),
        }
    }
}

fn next_v1(
    w: &mut Window<'_>,
    off: u64,
    verify: bool,
) -> Result<std::result::Result<ScannedRecord, String>> {
    let io = |e| Error::io("reading segment", e);
    let avail = (w.len - off).min(REC_FIXED_LEN as u64 + 32) as usize;
    let fixed = w.get(off, avail).map_err(io)?.unwrap_or_default();
    let hdr = match parse_record_header(fixed) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    let Some(rec) = w.get(off, hdr.record_len() as usize).map_err(io)? else {
        return Ok(Err("truncated record".into()));
    };
    if !check_record_crc(rec) {
        return Ok(Err("record checksum mismatch".into()));
    }
    let mut members = Vec::new();
    if hdr.kind == RecordKind::Group {
        // Members are indexed by their own hashcodes: decode and hash them.
        let g = match decode_group(&hdr, &rec[hdr.header_len()..]) {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        let lens: Vec<u32> = g.members.iter().map(|r| r.len() as u32).collect();
        let shares = member_shares(hdr.stored_len, &lens);
        let hashes: Vec<HashCode> = g
            .members
            .iter()
            .map(|r| hdr.hash.alg().hash(&g.raw[r.clone()]))
            .collect();
        if group_digest(&hashes) != hdr.hash {
            return Ok(Err("group members do not hash to the group digest".into()));
        }
        members = hashes
            .into_iter()
            .zip(lens.iter().zip(shares))
            .map(|(hash, (&len, share))| ScannedMember { hash, len, share })
            .collect();
    } else if verify {
        match decompress(hdr.codec, &rec[hdr.header_len()..], hdr.raw_len) {
            Ok(data) if hdr.hash.matches(&data) => {}
            Ok(_) => return Ok(Err(format!("payload does not hash to {}", hdr.hash))),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(ScannedRecord {
        kind: hdr.kind,
        members,
        offset: off,
        hash: hdr.hash,
        codec: hdr.codec,
        stored_len: hdr.stored_len,
        raw_len: hdr.raw_len,
        end: off + hdr.record_len(),
    }))
}

/// Finds the next offset after `from` where a record with a valid checksum starts,
/// so a scan can skip over a corrupt record in the middle of a segment.
pub fn resync_v1(file: &dyn FileIo, from: u64) -> Result<Option<u64>> {
    let len = file.len().map_err(|e| Error::io("segment length", e))?;
    let mut w = Window::new(file, len);
    let mut off = from + 1;
    while off + (REC_FIXED_LEN as u64) < len {
        if let Ok(_rec) = next_v1(&mut w, off, false)? {
            return Ok(Some(off));
        }
        off += 1;
    }
    Ok(None)
}

/// Scans a legacy cs.vt segment from `from`, hashing each decompressed payload with `alg`.
pub fn scan_legacy(
    file: &dyn FileIo,
    from: u64,
    alg: HashAlg,
    mut f: impl FnMut(ScannedRecord) -> Result<()>,
) -> Result<ScanEnd> {
    let len = file.len().map_err(|e| Error::io("segment length", e))?;
    let mut w = Window::new(file, len);
    let mut off = from;
    while off < len {
        match next_legacy(&mut w, off, alg)? {
            Ok(rec) => {
                off = rec.end;
                f(rec)?;
            }
            Err(what) => return Ok(ScanEnd::Bad { offset: off, what }),
        }
    }
    Ok(ScanEnd::Clean(off))
}

fn next_legacy(
    w: &mut Window<'_>,
    off: u64,
    alg: HashAlg,
) -> Result<std::result::Result<ScannedRecord, String>> {
    let io = |e| Error::io("reading segment", e);
    // flags and length are two BSUInts of at most 10 bytes each.
    let avail = (w.len - off).min(20) as usize;
    let head = w.get(off, avail).map_err(io)?.unwrap_or_default().to_vec();
    let mut r = Reader::new(&head);
    let (flags, n) = match (r.bsuint(), r.bsuint()) {
        (Ok(f), Ok(n)) => (f, n),
        _ => return Ok(Err("truncated legacy record header".into())),
    };
    if flags & !LEGACY_FLAG_ZLIB != 0 {
        return Ok(Err(format!("unknown legacy record flags {flags:#x}")));
    }
    if n > MAX_BLOCK_LEN as u64 {
        return Ok(Err(format!("absurd legacy payload length {n}")));
    }
    let payload_at = off + r.position() as u64;
    let Some(payload) = w.get(payload_at, n as usize).map_err(io)? else {
        return Ok(Err("truncated legacy record".into()));
    };
    let codec = if flags & LEGACY_FLAG_ZLIB != 0 {
        Codec::Zlib
    } else {
        Codec::None
    };
    let data = match codec {
        Codec::Zlib => match inflate_unbounded(payload) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        },
        _ => payload.to_vec(),
    };
    Ok(Ok(ScannedRecord {
        kind: RecordKind::Block,
        members: Vec::new(),
        offset: payload_at,
        hash: alg.hash(&data),
        codec,
        stored_len: n as u32,
        raw_len: data.len() as u32,
        end: payload_at + n,
    }))
}

/// Inflates a legacy zlib payload of unknown raw length, refusing more than [`MAX_BLOCK_LEN`].
fn inflate_unbounded(payload: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(payload)
        .take(MAX_BLOCK_LEN as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zlib: {e}"))?;
    if out.len() > MAX_BLOCK_LEN {
        return Err("legacy payload inflates beyond the block limit".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{Fs, OpenMode, SimFs};
    use proptest::prelude::*;
    use std::path::Path;

    fn file_with(bytes: &[u8]) -> std::sync::Arc<dyn FileIo> {
        let fs = SimFs::new();
        let f = fs.open(Path::new("/f"), OpenMode::CreateNew).unwrap();
        f.write_at(bytes, 0).unwrap();
        f
    }

    #[test]
    fn header_detects_formats() {
        let h = segment_header();
        assert_eq!(
            check_header(&h, "x").unwrap(),
            HeaderCheck::Format(SegmentFormat::V1)
        );
        assert_eq!(check_header(&h[..5], "x").unwrap(), HeaderCheck::Torn);
        assert_eq!(
            check_header(&[1, 0x83, 0x1d], "x").unwrap(),
            HeaderCheck::Format(SegmentFormat::Legacy)
        );
        let mut bad = h;
        bad[9] ^= 1;
        assert!(check_header(&bad, "x").is_err());
    }

    #[test]
    fn records_roundtrip_and_compress_only_when_it_pays() {
        let text = b"abcabcabc".repeat(100);
        let random: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut seg = segment_header().to_vec();
        let mut offs = Vec::new();
        for data in [&text[..], &random[..], b"tiny"] {
            let h = HashAlg::Blake3.hash(data);
            let rec = encode_record(&h, data, 3).unwrap();
            offs.push((seg.len() as u64, h, rec.stored_len, rec.codec));
            seg.extend_from_slice(&rec.bytes);
        }
        assert_eq!(offs[0].3, Codec::Zstd);
        assert_eq!(offs[2].3, Codec::None);
        let f = file_with(&seg);
        for (off, h, sl, _) in &offs {
            let data = read_record(&*f, "seg", *off, h, *sl).unwrap();
            assert!(h.matches(&data));
        }
        let mut n = 0;
        let end = scan_v1(&*f, SEGMENT_HEADER_LEN, true, |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((n, end), (3, ScanEnd::Clean(seg.len() as u64)));
    }

    #[test]
    fn record_parts_concatenate_to_the_record() {
        let text = b"abcabcabc".repeat(100);
        let random: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for data in [&text[..], &random[..], b"tiny"] {
            let h = HashAlg::Blake3.hash(data);
            let parts = encode_record_parts(&h, data, 3).unwrap();
            let joined = [&parts.header[..], &parts.payload].concat();
            // What the parts make is a whole, checksummed record of this block.
            assert!(check_record_crc(&joined));
            let hdr = parse_record_header(&joined).unwrap();
            assert_eq!((hdr.kind, hdr.hash), (RecordKind::Block, h));
            assert_eq!((hdr.codec, hdr.raw_len), (parts.codec, data.len() as u32));
            assert_eq!(hdr.stored_len, parts.stored_len());
            assert_eq!(hdr.record_len(), joined.len() as u64);
            let raw =
                decompress_fresh(hdr.codec, &joined[hdr.header_len()..], hdr.raw_len).unwrap();
            assert_eq!(raw, data);
            // And the same bytes as the one-buffer encoding.
            assert_eq!(joined, encode_record(&h, data, 3).unwrap().bytes);
        }
        let big = vec![0u8; MAX_BLOCK_LEN + 1];
        assert!(encode_record_parts(&HashAlg::Blake3.hash(&big), &big, 3).is_err());
    }

    #[test]
    fn long_blocks_skip_compression_only_when_their_samples_do_not_compress() {
        use rand::{RngCore, SeedableRng};
        let mut random = vec![0u8; 64 << 10];
        rand::rngs::StdRng::seed_from_u64(7).fill_bytes(&mut random);
        let text: Vec<u8> = (0..random.len())
            .map(|i| b"the quick brown fox jumps over the lazy dog "[i % 44])
            .collect();
        let codec = |d: &[u8]| encode_record(&HashAlg::Blake3.hash(d), d, 1).unwrap().codec;
        assert_eq!(codec(&random), Codec::None);
        assert_eq!(codec(&text), Codec::Zstd);
        // Random at the start, text from the middle on: the middle sample finds it.
        let mut mixed = random.clone();
        mixed[32 << 10..].copy_from_slice(&text[32 << 10..]);
        assert_eq!(codec(&mixed), Codec::Zstd);
        let rec = encode_record(&HashAlg::Blake3.hash(&mixed), &mixed, 1).unwrap();
        assert!(rec.stored_len < 40 << 10);
    }

    #[test]
    fn a_run_of_incompressible_blocks_samples_sparsely_and_ends_at_compressible_data() {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let text: Vec<u8> = (0..64 << 10)
            .map(|i| b"the quick brown fox jumps over the lazy dog "[i % 44])
            .collect();
        let codec = |d: &[u8]| encode_record(&HashAlg::Blake3.hash(d), d, 3).unwrap().codec;
        // Runs live per thread: start from a fresh one.
        std::thread::spawn(move || {
            let mut random = vec![0u8; 64 << 10];
            for _ in 0..RUN_BEFORE_SKIPPING + 3 {
                rng.fill_bytes(&mut random);
                assert_eq!(codec(&random), Codec::None);
            }
            // Deep in the run most blocks go unsampled, so compressible ones are
            // stored raw, but fewer than PROBE_EVERY before one is sampled.
            let raw = (0..PROBE_EVERY)
                .take_while(|_| codec(&text) == Codec::None)
                .count();
            assert!((1..PROBE_EVERY as usize).contains(&raw), "{raw} raw");
            // The run is over: the next ones compress at once, and stay readable.
            for _ in 0..3 {
                assert_eq!(codec(&text), Codec::Zstd);
            }
            // Short blocks are never part of a run.
            assert_eq!(codec(&text[..4096]), Codec::Zstd);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn torn_tail_ends_the_scan_and_resync_skips_a_bad_record() {
        let mut seg = segment_header().to_vec();
        let mut starts = Vec::new();
        for i in 0..3u8 {
            let data = vec![i; 200];
            starts.push(seg.len() as u64);
            seg.extend_from_slice(
                &encode_record(&HashAlg::Sha1.hash(&data), &data, 1)
                    .unwrap()
                    .bytes,
            );
        }
        let f = file_with(&seg[..seg.len() - 3]);
        let end = scan_v1(&*f, SEGMENT_HEADER_LEN, false, |_| Ok(())).unwrap();
        assert!(matches!(end, ScanEnd::Bad { offset, .. } if offset == starts[2]));
        let mut broken = seg.clone();
        broken[starts[1] as usize + 30] ^= 0xff;
        let f = file_with(&broken);
        assert_eq!(resync_v1(&*f, starts[1]).unwrap(), Some(starts[2]));
    }

    #[test]
    fn legacy_records_rehash() {
        use flate2::write::ZlibEncoder;
        use std::io::Write;
        let data = b"hello legacy world ".repeat(20);
        let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&data).unwrap();
        let zdata = z.finish().unwrap();
        let mut seg = Vec::new();
        for (flags, payload) in [(0u64, &data[..]), (1, &zdata[..])] {
            crate::codec::put_bsuint(&mut seg, flags);
            crate::codec::put_bsdata(&mut seg, payload);
        }
        let f = file_with(&seg);
        let mut recs = Vec::new();
        let end = scan_legacy(&*f, 0, HashAlg::Blake3, |r| {
            recs.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(end, ScanEnd::Clean(seg.len() as u64));
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].hash, recs[1].hash);
        let r = &recs[1];
        let got = read_legacy(
            &*f,
            "l",
            r.offset,
            &r.hash,
            r.codec,
            r.stored_len,
            r.raw_len,
        )
        .unwrap();
        assert_eq!(got, data);
    }

    /// A header of format `version` with a valid crc.
    fn header_of(version: u16) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut h = segment_header();
        h[HDR_VERSION_AT..HDR_VERSION_AT + 2].copy_from_slice(&version.to_le_bytes());
        let crc = crc32fast::hash(&h[..HDR_CRC_AT]);
        h[HDR_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        h
    }

    #[test]
    fn version_1_segments_stay_readable_and_unknown_versions_are_refused() {
        let v1 = HeaderCheck::Format(SegmentFormat::V1);
        assert_eq!(check_header(&header_of(1), "x").unwrap(), v1);
        assert_eq!(check_header(&header_of(2), "x").unwrap(), v1);
        assert!(matches!(
            check_header(&header_of(3), "x"),
            Err(Error::Unsupported(_))
        ));
        // A version-1 segment: records with byte 14 zero, as version 1 wrote them.
        let data = b"written by version 1 ".repeat(10);
        let h = HashAlg::Blake3.hash(&data);
        let rec = encode_record(&h, &data, 3).unwrap();
        assert_eq!(rec.bytes[REC_KIND_AT], 0);
        let mut seg = header_of(1).to_vec();
        seg.extend_from_slice(&rec.bytes);
        let f = file_with(&seg);
        assert_eq!(read_record(&*f, "s", 16, &h, rec.stored_len).unwrap(), data);
        let mut n = 0;
        scan_v1(&*f, 16, true, |r| {
            assert_eq!((r.kind, r.hash), (RecordKind::Block, h));
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    fn group_of(blocks: &[Vec<u8>], level: i32) -> (EncodedRecord, Vec<HashCode>) {
        let hashes: Vec<HashCode> = blocks.iter().map(|b| HashAlg::Blake3.hash(b)).collect();
        let lens: Vec<u32> = blocks.iter().map(|b| b.len() as u32).collect();
        let data = blocks.concat();
        (
            encode_group_record(&hashes, &lens, &data, level).unwrap(),
            hashes,
        )
    }

    #[test]
    fn group_records_roundtrip_scan_and_check_members() {
        let blocks: Vec<Vec<u8>> = (0..20u32)
            .map(|i| {
                format!("file {i} of the group; ")
                    .repeat(i as usize * 3 + 1)
                    .into_bytes()
            })
            .collect();
        let (rec, hashes) = group_of(&blocks, 3);
        assert_eq!(rec.codec, Codec::Zstd);
        let mut seg = segment_header().to_vec();
        seg.extend_from_slice(&rec.bytes);
        let f = file_with(&seg);
        let g = read_group(&*f, "s", SEGMENT_HEADER_LEN, HashAlg::Blake3).unwrap();
        for (i, b) in blocks.iter().enumerate() {
            let m = g
                .checked_member(i, &hashes[i], b.len() as u32, "s", 16)
                .unwrap();
            assert_eq!(m, &b[..]);
        }
        // A wrong hashcode or length is a corrupt-data error naming the member.
        let e = g.checked_member(3, &hashes[4], blocks[3].len() as u32, "s", 16);
        assert!(matches!(e, Err(Error::Corrupt { what, .. }) if what.contains("member 3")));
        assert!(g.checked_member(20, &hashes[0], 1, "s", 16).is_err());
        // A block read of the group record's place fails.
        assert!(read_record(&*f, "s", SEGMENT_HEADER_LEN, &hashes[0], rec.stored_len).is_err());
        let mut found = Vec::new();
        let end = scan_v1(&*f, SEGMENT_HEADER_LEN, true, |r| {
            found.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(end, ScanEnd::Clean(seg.len() as u64));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, RecordKind::Group);
        let scanned: Vec<HashCode> = found[0].members.iter().map(|m| m.hash).collect();
        assert_eq!(scanned, hashes);
        let shares: u32 = found[0].members.iter().map(|m| m.share).sum();
        assert_eq!(shares, rec.stored_len);
    }

    #[test]
    fn corrupt_group_payload_fails_the_read_and_the_scan() {
        let blocks = vec![b"one one one one".to_vec(), b"two two two two".to_vec()];
        let (rec, _) = group_of(&blocks, 0);
        let mut seg = segment_header().to_vec();
        seg.extend_from_slice(&rec.bytes);
        let last = seg.len() - 1;
        seg[last] ^= 0x40;
        let f = file_with(&seg);
        let e = read_group(&*f, "s", SEGMENT_HEADER_LEN, HashAlg::Blake3);
        assert!(matches!(e, Err(Error::Corrupt { what, .. }) if what.contains("checksum")));
        let end = scan_v1(&*f, SEGMENT_HEADER_LEN, false, |_| Ok(())).unwrap();
        assert!(matches!(end, ScanEnd::Bad { offset: 16, .. }));
    }

    #[test]
    fn group_members_rejects_bad_tables() {
        assert!(group_members(&[]).is_err());
        assert!(group_members(&[0]).is_err());
        // 513 members.
        assert!(group_members(&[0x81, 0x04]).is_err());
        // One member of 5 bytes, but 4 follow; then 6.
        assert!(group_members(&[1, 5, 1, 2, 3, 4]).is_err());
        assert!(group_members(&[1, 5, 1, 2, 3, 4, 5, 6]).is_err());
        assert_eq!(group_members(&[2, 1, 0, 9]).unwrap(), vec![3..4, 4..4]);
        // Overlong varint, huge lengths.
        assert!(group_members(&[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert!(
            group_members(&[2, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0xff, 0x0f])
                .is_err()
        );
    }

    #[test]
    fn member_shares_sum_to_the_stored_length() {
        assert_eq!(member_shares(10, &[1, 1, 1]), vec![3, 3, 4]);
        assert_eq!(member_shares(0, &[5, 7]), vec![0, 0]);
        assert_eq!(member_shares(9, &[0, 0]), vec![0, 9]);
        assert!(member_shares(5, &[]).is_empty());
    }

    #[test]
    fn bad_groups_are_refused_when_encoding() {
        let h = HashAlg::Blake3.hash(b"x");
        assert!(encode_group_record(&[], &[], &[], 1).is_err());
        assert!(encode_group_record(&[h], &[2], b"x", 1).is_err());
        assert!(encode_group_record(&[h, h], &[1], b"x", 1).is_err());
        let many = vec![h; MAX_GROUP_MEMBERS + 1];
        let lens = vec![0; MAX_GROUP_MEMBERS + 1];
        assert!(encode_group_record(&many, &lens, &[], 1).is_err());
    }

    proptest! {
        #[test]
        fn garbage_segments_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let f = file_with(&bytes);
            let _ = scan_v1(&*f, 0, true, |_| Ok(()));
            let _ = scan_legacy(&*f, 0, HashAlg::Blake3, |_| Ok(()));
            let _ = check_header(&bytes, "x");
            let _ = parse_record_header(&bytes);
        }

        #[test]
        fn record_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..3000), level in 0i32..4) {
            let h = HashAlg::Blake3.hash(&data);
            let rec = encode_record(&h, &data, level).unwrap();
            let f = file_with(&rec.bytes);
            prop_assert_eq!(read_record(&*f, "s", 0, &h, rec.stored_len).unwrap(), data);
        }

        #[test]
        fn group_payload_roundtrip(blocks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 1..40)) {
            let lens: Vec<u32> = blocks.iter().map(|b| b.len() as u32).collect();
            let data = blocks.concat();
            let raw = group_payload(&lens, &data);
            let members = group_members(&raw).unwrap();
            let got: Vec<Vec<u8>> = members.iter().map(|r| raw[r.clone()].to_vec()).collect();
            prop_assert_eq!(got, blocks);
        }

        #[test]
        fn group_record_roundtrip(blocks in proptest::collection::vec(
            proptest::collection::vec(0u8..4, 0..500), 1..30), level in 0i32..4) {
            let (rec, hashes) = group_of(&blocks, level);
            let f = file_with(&rec.bytes);
            let g = read_group(&*f, "s", 0, HashAlg::Blake3).unwrap();
            for (i, b) in blocks.iter().enumerate() {
                prop_assert_eq!(g.checked_member(i, &hashes[i], b.len() as u32, "s", 0).unwrap(), &b[..]);
            }
            let shares: u64 = member_shares(rec.stored_len, &g.members.iter().map(|r| r.len() as u32).collect::<Vec<_>>())
                .iter().map(|&s| u64::from(s)).sum();
            prop_assert_eq!(shares, u64::from(rec.stored_len));
        }

        #[test]
        fn garbage_group_tables_error_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(members) = group_members(&bytes) {
                // Whatever parses covers the payload exactly.
                prop_assert!(members.len() <= MAX_GROUP_MEMBERS);
                prop_assert_eq!(members.last().map_or(0, |r| r.end), bytes.len());
            }
        }

        #[test]
        fn truncated_or_flipped_group_records_error(
            blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..10),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let (rec, _) = group_of(&blocks, 1);
            let n = rec.bytes.len();
            let f = file_with(&rec.bytes[..cut.index(n)]);
            prop_assert!(read_group(&*f, "s", 0, HashAlg::Blake3).is_err());
            let mut bad = rec.bytes.clone();
            bad[flip.index(n)] ^= 0x10;
            let f = file_with(&bad);
            prop_assert!(read_group(&*f, "s", 0, HashAlg::Blake3).is_err());
            let end = scan_v1(&*f, 0, false, |_| Ok(())).unwrap();
            let bad = matches!(end, ScanEnd::Bad { offset: 0, .. });
            prop_assert!(bad);
        }

        #[test]
        fn garbage_payloads_behind_a_valid_group_header_error(
            payload in proptest::collection::vec(any::<u8>(), 0..400),
            raw_len in 0u32..1_000_000,
            codec in 0u8..3,
        ) {
            // A record whose crc is right but whose payload is garbage: decoding must
            // fail cleanly (bounded allocation: raw_len is checked against the limit).
            let h = HashAlg::Blake3.hash(b"g");
            let mut bytes = vec![0u8; 4];
            bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            let raw_len = if codec == 0 { payload.len() as u32 } else { raw_len };
            bytes.extend_from_slice(&raw_len.to_le_bytes());
            bytes.extend_from_slice(&[codec, 2, RecordKind::Group as u8, 0]);
            bytes.extend_from_slice(h.digest());
            bytes.extend_from_slice(&payload);
            let crc = crc32fast::hash(&bytes[REC_CRC_COVERS_FROM..]);
            bytes[..4].copy_from_slice(&crc.to_le_bytes());
            let f = file_with(&bytes);
            if let Ok(g) = read_group(&*f, "s", 0, HashAlg::Blake3) {
                prop_assert_eq!(g.members.last().map_or(0, |r| r.end), g.raw.len());
            }
            let _ = scan_v1(&*f, 0, true, |_| Ok(()));
        }
    }
}
