//! `vt gc`: collect garbage — mark from every root, plan, rewrite or delete segments.

use super::Context;
use crate::output::human_bytes;
use anyhow::Context as _;
use vt_engine::gc::{self, retention::parse_duration, GcOptions, GcReport};

/// redb page cache of a GC run. GC reads the index in sequential scans and sorted
/// updates, which a big cache barely helps; the default (512 MiB) would fill up during
/// the scans of a large store and dominate the memory of the run (BENCHMARKS.md: 661 MiB
/// peak for a mark over 10M blocks with it, 199 MiB with 64 MiB).
const GC_INDEX_CACHE: usize = 64 << 20;

/// Arguments of `vt gc` (and, with another default threshold, `vt compact`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the plan and totals; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Rewrite segments whose live share is below this (0 to 1).
    #[arg(long, default_value_t = gc::DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Keep blocks committed within this long (e.g. 1h, 30m, 0).
    #[arg(long, default_value = "1h")]
    pub grace: String,
    /// Drop registered archives that no longer exist instead of refusing to run.
    #[arg(long)]
    pub forget_missing: bool,
    /// Copy at most this many MB per second.
    #[arg(long, value_name = "MB/s")]
    pub limit_rate: Option<f64>,
    /// Also compact the index file afterwards (`vt compact` does).
    #[arg(skip)]
    pub compact_index: bool,
}

/// Runs a GC with `args` and prints the plan (always for a dry run, else when verbose)
/// and a summary.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    if !(0.0..=1.0).contains(&args.threshold) {
        anyhow::bail!("--threshold must be between 0 and 1");
    }
    let mut store = ctx
        .spec
        .open_datadir_cache(ctx.hash, false, GC_INDEX_CACHE)?;
    let opts = GcOptions {
        threshold: args.threshold,
        grace: parse_duration(&args.grace)?,
        forget_missing: args.forget_missing,
        dry_run: args.dry_run,
        rate_limit: args.limit_rate.map(|r| (r * 1e6) as u64),
        ..GcOptions::default()
    };
    let report = gc::run(&store, &opts, None).context("gc")?;
    print_report(ctx, args.dry_run, &report);
    if args.compact_index && !args.dry_run {
        let store = std::sync::Arc::get_mut(&mut store)
            .context("the store handle is shared: cannot compact the index")?;
        let (before, after) = store.compact_index().context("compacting the index")?;
        if !ctx.quiet {
            println!(
                "index file {} -> {}",
                human_bytes(before),
                human_bytes(after)
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_report(ctx: &Context, dry_run: bool, r: &GcReport) {
    for root in &r.forgotten_roots {
        eprintln!("vt: forgot missing root: {root}");
    }
    if dry_run || ctx.verbose > 0 {
        println!("{}", r.plan);
    }
    if ctx.quiet {
        return;
    }
    let m = &r.mark;
    println!(
        "marked {} of {} blocks ({} interior blocks read, mark set {})",
        m.marked,
        m.indexed,
        m.interiors_read,
        human_bytes(r.mark_memory_bytes as u64)
    );
    let t = r.plan.totals();
    match &r.executed {
        Some(x) => println!(
            "removed {} blocks; rewrote {} and deleted {} segments, copying {}; freed {}",
            x.blocks_removed,
            x.segments_rewritten,
            x.segments_deleted,
            human_bytes(x.bytes_copied),
            human_bytes(x.freed_bytes)
        ),
        None if dry_run => println!(
            "dry run: would free {} ({} dead in all)",
            human_bytes(t.reclaim_bytes),
            human_bytes(t.dead_bytes)
        ),
        None => println!("nothing to do ({} dead)", human_bytes(t.dead_bytes)),
    }
}
