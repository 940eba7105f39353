//! Space reclamation: retention, garbage collection and compaction.
//!
//! A GC run ([`run`]): resolve the roots (refusing when a registered archive is missing
//! or unreadable), start a session on the store (touch tracking on), [`mark`] everything
//! reachable, measure live bytes per segment, [`plan`](plan::plan) which segments to
//! rewrite or delete, and — unless it is a dry run — [`exec`]ute the plan. Blocks newer
//! than the grace period, or committed after the GC started, or re-referenced while it
//! runs, are live. See `docs/gc.md` for the crash points.

pub mod exec;
pub mod mark;
pub mod plan;
pub mod retention;
pub mod roots;
pub mod sched;

use crate::error::{Error, Result};
use crate::hash::HashAlg;
use crate::index::{IndexKey, SegmentId};
use crate::segment::{SegmentFormat, REC_FIXED_LEN};
use crate::store::datadir::DataDir;
use crate::store::datadir_gc::{GcSession, Seal, META_GC_LAST};
use plan::{Exempt, Plan, SegmentUsage};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Default grace period: blocks committed within it are never collected.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// Default rewrite threshold of `vt gc`: segments less than half live are rewritten.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// How a GC runs.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Rewrite segments whose live share is below this (0..=1; 1 rewrites any dead space).
    pub threshold: f64,
    /// Blocks committed less than this long ago are kept (see `docs/gc.md`: the age of a
    /// block is known through clock checkpoints).
    pub grace: Duration,
    /// Drop registered archives that no longer exist instead of refusing to run.
    pub forget_missing: bool,
    /// Plan only.
    pub dry_run: bool,
    /// Cap on bytes copied per second.
    pub rate_limit: Option<u64>,
    /// Execute only when dead bytes reach this share of all segment bytes (0 = always).
    pub min_dead_fraction: f64,
    /// Pause copying while the writer is busy (for background runs).
    pub yield_to_writers: bool,
    /// The current unix time (tests; `None` = the clock).
    pub now: Option<u64>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            threshold: DEFAULT_THRESHOLD,
            grace: DEFAULT_GRACE,
            forget_missing: false,
            dry_run: false,
            rate_limit: None,
            min_dead_fraction: 0.0,
            yield_to_writers: false,
            now: None,
        }
    }
}

/// What a GC run did.
#[derive(Debug, Clone)]
pub struct GcReport {
    /// The plan.
    pub plan: Plan,
    /// Mark counters.
    pub mark: mark::MarkStats,
    /// Memory held by the mark set.
    pub mark_memory_bytes: usize,
    /// Entries committed after this generation were protected by the grace period.
    pub cutoff_generation: u64,
    /// Archives dropped from the registry because they were missing.
    pub forgotten_roots: Vec<roots::Root>,
    /// What execution did (`None` for a dry run or when nothing was worth doing).
    pub executed: Option<exec::ExecStats>,
}

/// Flags a caller can use to stop a running GC (the scheduler, on close).
pub type StopFlag = AtomicBool;

fn now(opts: &GcOptions) -> u64 {
    opts.now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// Runs a GC on `store` (a writable handle): see the module documentation.
///
/// Fails when a registered archive is missing (unless `forget_missing`) or unreadable,
/// when a root's tree could not be walked completely (a missing or damaged interior
/// block: collecting below it could destroy data), on I/O and index errors, and with
/// [`Error::Closed`] when `stop` was raised (the store stays valid).
pub fn run(store: &DataDir, opts: &GcOptions, stop: Option<&StopFlag>) -> Result<GcReport> {
    let seal = if opts.dry_run {
        Seal::Never
    } else if opts.threshold >= 1.0 {
        Seal::Always
    } else {
        Seal::WhenFilled
    };
    let session = store.gc_begin(seal)?;
    let at = now(opts);
    store.record_clock(at)?;
    let (refs, forgotten) = resolve_roots(store, opts)?;
    let cutoff = cutoff_generation(store, &session, at, opts.grace)?;
    let mut marks = mark::mark(store, &refs)?;
    if marks.stats.missing + marks.stats.damaged > 0 {
        return Err(Error::Unsupported(format!(
            "refusing to collect: {} interior block(s) of the roots are missing and {} damaged; \
             run verify, repair or unregister the damaged roots",
            marks.stats.missing, marks.stats.damaged
        )));
    }
    let usage = measure(store, &session, &marks, cutoff)?;
    let plan = plan::plan(usage, opts.threshold);
    let mut report = GcReport {
        mark: marks.stats,
        mark_memory_bytes: marks.memory_bytes(),
        cutoff_generation: cutoff,
        forgotten_roots: forgotten,
        executed: None,
        plan,
    };
    let t = report.plan.totals();
    let worth =
        t.total_bytes > 0 && t.dead_bytes as f64 >= opts.min_dead_fraction * t.total_bytes as f64;
    if opts.dry_run {
        return Ok(report);
    }
    if report.plan.is_empty() || !worth {
        drop(session);
        record_last(store, at, 0, t.dead_bytes)?;
        return Ok(report);
    }
    let ctl = exec::Control {
        rate_limit: opts.rate_limit,
        yield_to_writers: opts.yield_to_writers,
        stop,
    };
    let stats = exec::execute(store, &session, &report.plan, &mut marks, cutoff, &ctl)?;
    drop(session);
    record_last(
        store,
        at,
        stats.freed_bytes,
        t.dead_bytes.saturating_sub(t.reclaim_bytes),
    )?;
    report.executed = Some(stats);
    Ok(report)
}

fn record_last(store: &DataDir, at: u64, freed: u64, dead_left: u64) -> Result<()> {
    let last = format!("time={at}\nfreed={freed}\ndead_left={dead_left}\n");
    store.gc_meta(vec![(META_GC_LAST, last.into_bytes())])
}

/// The roots' references; refuses on problems (dropping missing archives when allowed).
fn resolve_roots(
    store: &DataDir,
    opts: &GcOptions,
) -> Result<(Vec<roots::RootRef>, Vec<roots::Root>)> {
    let (refs, problems) = roots::resolve(&store.roots()?);
    let mut forgotten = Vec::new();
    let mut refuse = Vec::new();
    for p in problems {
        if p.missing && opts.forget_missing {
            forgotten.push(p.root);
        } else {
            refuse.push(format!("{}: {}", p.root, p.what));
        }
    }
    if !refuse.is_empty() {
        return Err(Error::Unsupported(format!(
            "refusing to collect while roots cannot be read (use --forget-missing for \
             archives that are gone for good): {}",
            refuse.join("; ")
        )));
    }
    if !opts.dry_run {
        for r in &forgotten {
            if let roots::Root::Archive(p) = r {
                store.unregister_root(p)?;
            }
        }
    }
    Ok((refs, forgotten))
}

/// The newest generation old enough to collect: the latest clock checkpoint at least
/// `grace` old (0 when there is none), never past the GC's start.
fn cutoff_generation(
    store: &DataDir,
    session: &GcSession<'_>,
    now: u64,
    grace: Duration,
) -> Result<u64> {
    if grace.is_zero() {
        return Ok(session.start_generation);
    }
    let limit = now.saturating_sub(grace.as_secs());
    let gen = store
        .clock_checkpoints()?
        .into_iter()
        .filter(|(t, _)| *t <= limit)
        .map(|(_, g)| g)
        .max()
        .unwrap_or(0);
    Ok(gen.min(session.start_generation))
}

/// Bytes a version-1 record of `key` takes for `stored_len` payload bytes.
pub(crate) fn record_len(key: &IndexKey, stored_len: u32) -> u64 {
    let digest = HashAlg::from_hashenum(u64::from(key[32])).map_or(32, |a| a.digest_len());
    (REC_FIXED_LEN + digest) as u64 + u64::from(stored_len)
}

/// Live bytes and blocks per segment: marked, or too young to collect.
fn measure(
    store: &DataDir,
    session: &GcSession<'_>,
    marks: &mark::Marks,
    cutoff: u64,
) -> Result<Vec<SegmentUsage>> {
    let mut usage: HashMap<SegmentId, SegmentUsage> = HashMap::new();
    for (id, info, len) in store.gc_segments()? {
        let exempt = if info.format == SegmentFormat::Legacy {
            Some(Exempt::Legacy)
        } else if Some(id) == session.active_segment {
            Some(Exempt::Active)
        } else if id.0 >= session.first_new_segment {
            Some(Exempt::New)
        } else {
            None
        };
        usage.insert(
            id,
            SegmentUsage {
                id,
                name: info.name,
                file_bytes: len,
                live_bytes: 0,
                live_blocks: 0,
                dead_blocks: 0,
                exempt,
            },
        );
    }
    // Group records with a live member: their header counts once; each member's share
    // of the payload counts when it is live, so dead members are dead space.
    let mut groups: HashSet<(SegmentId, u64)> = HashSet::new();
    store.index.for_each(|k, loc| {
        let Some(u) = usage.get_mut(&loc.segment) else {
            return Ok(());
        };
        if marks.is_marked(&k) || u64::from(loc.generation) > cutoff {
            let first_of_record =
                loc.group_member().is_none() || groups.insert((loc.segment, loc.offset));
            u.live_bytes += if first_of_record {
                record_len(&k, loc.stored_len)
            } else {
                u64::from(loc.stored_len)
            };
            u.live_blocks += 1;
        } else {
            u.dead_blocks += 1;
        }
        Ok(())
    })?;
    Ok(usage.into_values().collect())
}
