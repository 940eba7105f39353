//! Block references: the five kinds and their binary encoding (FORMAT-csvt §2).

use crate::codec::{put_bsdata, put_bsuint, Reader};
use crate::error::{Error, Result};
use crate::hash::HashCode;
use std::sync::Arc;

/// Flag: the referenced stored block is a sequence of child references.
pub const F_INDIRECT: u64 = 0x01;
/// Flag: a type code follows the span.
pub const F_TYPED: u64 = 0x02;
/// Flag: type flags follow the type (never written).
pub const F_TYPE_FLAGS: u64 = 0x04;

/// Type code: stored block referenced by hashcode.
pub const T_HASHCODE: u64 = 0;
/// Type code: run-length block.
pub const T_RLE: u64 = 1;
/// Type code: literal bytes inline.
pub const T_LITERAL: u64 = 2;
/// Type code: a byte range of another block.
pub const T_SUBBLOCK: u64 = 3;

/// Deepest nesting of sub-block references a decoder accepts.
pub const MAX_SUBBLOCK_DEPTH: usize = 16;

/// A reference to a block of content. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum BlockRef {
    /// Stored data, by hashcode; `span` is its length.
    Hash {
        /// The stored block's hashcode.
        hash: HashCode,
        /// Content length.
        span: u64,
    },
    /// A stored block holding child references; the content is the children's concatenation.
    Indirect {
        /// Hashcode of the stored block of encoded child references.
        hash: HashCode,
        /// Total content length of the tree.
        span: u64,
    },
    /// `span` copies of one octet (holes, runs of zeros).
    Rle {
        /// Content length.
        span: u64,
        /// The repeated octet.
        octet: u8,
    },
    /// Short content carried inside the reference.
    Literal(Arc<[u8]>),
    /// `span` bytes of `block` starting at `offset`.
    Sub {
        /// The super-block.
        block: Arc<BlockRef>,
        /// Start offset within the super-block.
        offset: u64,
        /// Content length.
        span: u64,
    },
}

impl BlockRef {
    /// The empty content: a literal of length 0.
    pub fn empty() -> Self {
        BlockRef::Literal(Arc::from(&[][..]))
    }

    /// A literal reference to `data`.
    pub fn literal(data: &[u8]) -> Self {
        BlockRef::Literal(Arc::from(data))
    }

    /// Length of the content this reference stands for.
    pub fn span(&self) -> u64 {
        match self {
            BlockRef::Hash { span, .. }
            | BlockRef::Indirect { span, .. }
            | BlockRef::Rle { span, .. }
            | BlockRef::Sub { span, .. } => *span,
            BlockRef::Literal(d) => d.len() as u64,
        }
    }

    /// The stored hashcode, for hash and indirect references.
    pub fn hashcode(&self) -> Option<HashCode> {
        match self {
            BlockRef::Hash { hash, .. } | BlockRef::Indirect { hash, .. } => Some(*hash),
            _ => None,
        }
    }

    /// True for indirect references.
    pub fn is_indirect(&self) -> bool {
        matches!(self, BlockRef::Indirect { .. })
    }

    /// True when `[offset, offset + span)` lies within `sup`'s content, as every
    /// sub-block's range must: the decoders refuse any other, and the readers refuse a
    /// [`BlockRef::Sub`] built around one.
    pub fn sub_fits(sup: &BlockRef, offset: u64, span: u64) -> bool {
        offset.checked_add(span).is_some_and(|e| e <= sup.span())
    }

    /// [`BlockRef::sub_fits`], failing with a bad-input error naming the range.
    pub fn check_sub(sup: &BlockRef, offset: u64, span: u64) -> Result<()> {
        if !Self::sub_fits(sup, offset, span) {
            return Err(Error::bad(format!(
                "sub-block {offset}+{span} exceeds super-block span {}",
                sup.span()
            )));
        }
        Ok(())
    }

    /// A sub-range of this reference's content; flattens nested sub-blocks.
    ///
    /// Fails when the range lies outside the content.
    pub fn sub(&self, offset: u64, span: u64) -> Result<BlockRef> {
        Self::check_sub(self, offset, span)?;
        if let BlockRef::Sub {
            block,
            offset: o,
            span: s,
        } = self
        {
            // Flattening reaches through to `block`: a sub-block that does not fit its
            // own block (built by hand, never decoded) must not become one that does.
            Self::check_sub(block, *o, *s)?;
        }
        if offset == 0 && span == self.span() {
            return Ok(self.clone());
        }
        Ok(match self {
            BlockRef::Rle { octet, .. } => BlockRef::Rle {
                span,
                octet: *octet,
            },
            BlockRef::Literal(d) => {
                BlockRef::literal(&d[offset as usize..(offset + span) as usize])
            }
            _ => Self::sub_of(self.clone(), offset, span),
        })
    }

    /// A sub-block reference to `span` bytes of `sup` at `offset`, flattening a nested
    /// sub-block as cs.vt does. The caller has checked the range against `sup.span()`.
    pub(crate) fn sub_of(sup: BlockRef, offset: u64, span: u64) -> BlockRef {
        match sup {
            BlockRef::Sub {
                block, offset: o, ..
            } => BlockRef::Sub {
                block,
                offset: o + offset,
                span,
            },
            other => BlockRef::Sub {
                block: Arc::new(other),
                offset,
                span,
            },
        }
    }

    /// Appends the inner encoding (without the outer BSData length).
    fn encode_inner(&self, out: &mut Vec<u8>) {
        match self {
            BlockRef::Hash { hash, span } | BlockRef::Indirect { hash, span } => {
                let flags = if self.is_indirect() { F_INDIRECT } else { 0 };
                put_bsuint(out, flags);
                put_bsuint(out, *span);
                hash.encode_into(out);
            }
            BlockRef::Rle { span, octet } => {
                put_bsuint(out, F_TYPED);
                put_bsuint(out, *span);
                put_bsuint(out, T_RLE);
                out.push(*octet);
            }
            BlockRef::Literal(d) => {
                put_bsuint(out, F_TYPED);
                put_bsuint(out, d.len() as u64);
                put_bsuint(out, T_LITERAL);
                out.extend_from_slice(d);
            }
            BlockRef::Sub {
                block,
                offset,
                span,
            } => {
                put_bsuint(out, F_TYPED);
                put_bsuint(out, *span);
                put_bsuint(out, T_SUBBLOCK);
                put_bsuint(out, *offset);
                block.encode_into(out);
            }
        }
    }

    /// Appends the binary block record: BSData of the inner encoding.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut inner = Vec::with_capacity(40);
        self.encode_inner(&mut inner);
        put_bsdata(out, &inner);
    }

    /// The binary block record.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(40);
        self.encode_into(&mut v);
        v
    }

    /// Decodes one block record from `r`.
    ///
    /// Fails on truncation, unknown flags or types, or a sub-block range outside its super-block.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        Self::decode_depth(r, 0)
    }

    /// Decodes a buffer holding exactly one block record.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        let b = Self::decode_from(&mut r)?;
        if !r.is_empty() {
            return Err(Error::bad(format!(
                "{} trailing bytes after block record",
                r.remaining()
            )));
        }
        Ok(b)
    }

    /// Decodes a concatenation of block records (an indirect block's stored data).
    pub fn decode_all(buf: &[u8]) -> Result<Vec<Self>> {
        let mut r = Reader::new(buf);
        let mut v = Vec::new();
        while !r.is_empty() {
            v.push(Self::decode_from(&mut r)?);
        }
        Ok(v)
    }

    fn decode_depth(r: &mut Reader<'_>, depth: usize) -> Result<Self> {
        if depth > MAX_SUBBLOCK_DEPTH {
            return Err(Error::bad("block record nests sub-blocks too deeply"));
        }
        let body = r.bsdata()?;
        let mut b = Reader::new(body);
        let flags = b.bsuint()?;
        if flags & !(F_INDIRECT | F_TYPED | F_TYPE_FLAGS) != 0 {
            return Err(Error::bad(format!(
                "block record has unknown flags {flags:#x}"
            )));
        }
        let span = b.bsuint()?;
        let typ = if flags & F_TYPED != 0 {
            b.bsuint()?
        } else {
            T_HASHCODE
        };
        if flags & F_TYPE_FLAGS != 0 && b.bsuint()? != 0 {
            return Err(Error::bad("block record has non-zero type flags"));
        }
        let indirect = flags & F_INDIRECT != 0;
        if indirect && typ != T_HASHCODE {
            return Err(Error::bad(format!("indirect block record of type {typ}")));
        }
        // Trailing bytes inside the record are ignored (forward compatibility).
        match typ {
            T_HASHCODE => {
                let hash = HashCode::decode_from(&mut b)?;
                Ok(if indirect {
                    BlockRef::Indirect { hash, span }
                } else {
                    BlockRef::Hash { hash, span }
                })
            }
            T_RLE => Ok(BlockRef::Rle {
                span,
                octet: b.u8()?,
            }),
            T_LITERAL => {
                let n = usize::try_from(span).map_err(|_| Error::bad("literal span too large"))?;
                Ok(BlockRef::literal(b.take(n)?))
            }
            T_SUBBLOCK => {
                let offset = b.bsuint()?;
                let sup = Self::decode_depth(&mut b, depth + 1)?;
                Self::check_sub(&sup, offset, span)?;
                Ok(Self::sub_of(sup, offset, span))
            }
            _ => Err(Error::bad(format!("unknown block type {typ}"))),
        }
    }
}

impl std::fmt::Debug for BlockRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}
