//! The planner: from live and dead bytes per segment to what to rewrite or delete.
//! Pure: [`plan`] takes measured usage and a threshold and touches no store.

use crate::index::SegmentId;
use crate::segment::SEGMENT_HEADER_LEN;
use std::fmt;

/// Why a segment is not compacted by this GC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exempt {
    /// The writer appends to it.
    Active,
    /// Created after the GC started.
    New,
    /// A legacy cs.vt segment (read in place, never rewritten).
    Legacy,
}

/// Measured usage of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentUsage {
    /// The segment.
    pub id: SegmentId,
    /// Its file name.
    pub name: String,
    /// File length.
    pub file_bytes: u64,
    /// Bytes of records that must be kept.
    pub live_bytes: u64,
    /// Records that must be kept.
    pub live_blocks: u64,
    /// Indexed records that are garbage.
    pub dead_blocks: u64,
    /// Set when the segment is not a candidate.
    pub exempt: Option<Exempt>,
}

impl SegmentUsage {
    /// Bytes that are neither the header nor live records (dead records, duplicates, torn appends).
    pub fn dead_bytes(&self) -> u64 {
        self.file_bytes
            .saturating_sub(SEGMENT_HEADER_LEN)
            .saturating_sub(self.live_bytes)
    }

    /// Live share of the record bytes (1 for an empty segment).
    pub fn live_fraction(&self) -> f64 {
        let records = self.file_bytes.saturating_sub(SEGMENT_HEADER_LEN);
        if records == 0 {
            1.0
        } else {
            self.live_bytes as f64 / records as f64
        }
    }
}

/// What happens to a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Left alone.
    Keep,
    /// Live records copied into a new segment, then the file deleted.
    Rewrite,
    /// Nothing live: the file deleted.
    Delete,
}

/// One segment's line of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentPlan {
    /// Its usage.
    pub usage: SegmentUsage,
    /// The decision.
    pub action: Action,
}

/// A GC plan: a decision per segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Every segment, in id order.
    pub segments: Vec<SegmentPlan>,
    /// Segments whose live share is below this are rewritten.
    pub threshold: f64,
}

/// Totals of a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanTotals {
    /// All segment bytes.
    pub total_bytes: u64,
    /// Live record bytes.
    pub live_bytes: u64,
    /// Dead bytes anywhere.
    pub dead_bytes: u64,
    /// Bytes freed by executing the plan (before the new segments' headers).
    pub reclaim_bytes: u64,
    /// Bytes the executor copies.
    pub copy_bytes: u64,
    /// Dead records whose index entries go.
    pub dead_blocks: u64,
    /// Segments rewritten.
    pub rewrite: u64,
    /// Segments deleted.
    pub delete: u64,
}

/// Decides per segment: delete when nothing is live, rewrite when the live share is below
/// `threshold` (0..=1), else keep. Exempt segments are kept.
pub fn plan(usage: Vec<SegmentUsage>, threshold: f64) -> Plan {
    let mut segments: Vec<SegmentPlan> = usage
        .into_iter()
        .map(|u| {
            let action = if u.exempt.is_some() || u.dead_bytes() == 0 {
                Action::Keep
            } else if u.live_blocks == 0 {
                Action::Delete
            } else if u.live_fraction() < threshold {
                Action::Rewrite
            } else {
                Action::Keep
            };
            SegmentPlan { usage: u, action }
        })
        .collect();
    segments.sort_by_key(|s| s.usage.id);
    Plan {
        segments,
        threshold,
    }
}

impl Plan {
    /// The totals.
    pub fn totals(&self) -> PlanTotals {
        let mut t = PlanTotals::default();
        for s in &self.segments {
            let u = &s.usage;
            t.total_bytes += u.file_bytes;
            t.live_bytes += u.live_bytes;
            t.dead_bytes += u.dead_bytes();
            match s.action {
                Action::Keep => {}
                Action::Rewrite => {
                    t.rewrite += 1;
                    t.copy_bytes += u.live_bytes;
                    t.reclaim_bytes += u.file_bytes - u.live_bytes.min(u.file_bytes);
                    t.dead_blocks += u.dead_blocks;
                }
                Action::Delete => {
                    t.delete += 1;
                    t.reclaim_bytes += u.file_bytes;
                    t.dead_blocks += u.dead_blocks;
                }
            }
        }
        t
    }

    /// Segments with `action`.
    pub fn with(&self, action: Action) -> impl Iterator<Item = &SegmentUsage> {
        self.segments
            .iter()
            .filter(move |s| s.action == action)
            .map(|s| &s.usage)
    }

    /// True when executing the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| s.action == Action::Keep)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<14} {:>8} {:>12} {:>12} {:>6}  action",
            "segment", "records", "bytes", "live", "live%"
        )?;
        for s in &self.segments {
            let u = &s.usage;
            let action = match (s.action, u.exempt) {
                (_, Some(Exempt::Active)) => "keep (active)",
                (_, Some(Exempt::New)) => "keep (new)",
                (_, Some(Exempt::Legacy)) => "keep (legacy)",
                (Action::Keep, None) => "keep",
                (Action::Rewrite, None) => "rewrite",
                (Action::Delete, None) => "delete",
            };
            writeln!(
                f,
                "{:<14} {:>8} {:>12} {:>12} {:>5.1}%  {action}",
                u.name,
                u.live_blocks + u.dead_blocks,
                u.file_bytes,
                u.live_bytes,
                100.0 * u.live_fraction()
            )?;
        }
        let t = self.totals();
        write!(
            f,
            "total {} bytes, live {}, dead {}; rewrite {} segment(s) copying {} bytes, \
             delete {}; frees {} bytes and {} dead block(s)",
            t.total_bytes,
            t.live_bytes,
            t.dead_bytes,
            t.rewrite,
            t.copy_bytes,
            t.delete,
            t.reclaim_bytes,
            t.dead_blocks
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usage(id: u32, file: u64, live: u64, live_blocks: u64) -> SegmentUsage {
        SegmentUsage {
            id: SegmentId(id),
            name: format!("{id:08x}.vtd"),
            file_bytes: file,
            live_bytes: live,
            live_blocks,
            dead_blocks: 3,
            exempt: None,
        }
    }

    #[test]
    fn decisions_follow_the_threshold() {
        let h = SEGMENT_HEADER_LEN;
        let p = plan(
            vec![
                usage(1, h + 1000, 0, 0),
                usage(2, h + 1000, 400, 4),
                usage(3, h + 1000, 600, 6),
                usage(4, h + 1000, 1000, 10),
                SegmentUsage {
                    exempt: Some(Exempt::Active),
                    ..usage(5, h + 1000, 0, 0)
                },
            ],
            0.5,
        );
        let acts: Vec<Action> = p.segments.iter().map(|s| s.action).collect();
        use Action::*;
        assert_eq!(acts, vec![Delete, Rewrite, Keep, Keep, Keep]);
        let t = p.totals();
        assert_eq!((t.rewrite, t.delete, t.copy_bytes), (1, 1, 400));
        assert_eq!(t.reclaim_bytes, (h + 1000) + (h + 600));
        assert!(p.to_string().contains("keep (active)"));
    }

    proptest! {
        #[test]
        fn plans_never_lose_live_bytes(segs in proptest::collection::vec((0u64..10_000, 0u64..10_000, any::<bool>()), 0..30), th in 0.0f64..=1.0) {
            let usage: Vec<SegmentUsage> = segs.iter().enumerate().map(|(i, &(a, b, ex))| {
                let file = SEGMENT_HEADER_LEN + a.max(b);
                let live = a.min(b);
                SegmentUsage { exempt: ex.then_some(Exempt::New), ..usage(i as u32, file, live, if live > 0 { live / 10 + 1 } else { 0 }) }
            }).collect();
            let p = plan(usage, th);
            for s in &p.segments {
                if s.action == Action::Delete { prop_assert_eq!(s.usage.live_blocks, 0); }
                if s.usage.exempt.is_some() { prop_assert_eq!(s.action, Action::Keep); }
            }
            let t = p.totals();
            prop_assert!(t.reclaim_bytes <= t.total_bytes);
            prop_assert_eq!(t.total_bytes - t.reclaim_bytes + t.copy_bytes >= t.live_bytes, true);
        }
    }
}
