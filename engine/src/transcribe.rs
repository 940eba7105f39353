//! Text transcriptions of block references (FORMAT-csvt §6).

use crate::block::BlockRef;
use std::fmt;

impl fmt::Display for BlockRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockRef::Hash { hash, span } => write!(f, "B{{hash:{hash},span:{span}}}"),
            BlockRef::Indirect { hash, span } => write!(f, "I{{hash:{hash},span:{span}}}"),
            BlockRef::Rle { span, octet } => write!(f, "RLE{{span:{span},octet:{octet}}}"),
            BlockRef::Literal(d) => write!(f, "LB{{{}}}", crate::hash::hex(d)),
            BlockRef::Sub {
                block,
                offset,
                span,
            } => {
                write!(f, "SubB{{block:{block},offset:{offset},span:{span}}}")
            }
        }
    }
}
