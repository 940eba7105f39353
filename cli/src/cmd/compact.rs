//! `vt compact`: a GC that rewrites every segment holding any dead space, then compacts
//! the index file.

use super::Context;

/// Arguments of `vt compact`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the plan and totals; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Rewrite segments whose live share is below this (0 to 1; 1 = any dead space).
    #[arg(long, default_value_t = 1.0)]
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
}

/// Runs the compaction now.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    super::gc::run(
        ctx,
        &super::gc::Args {
            dry_run: args.dry_run,
            threshold: args.threshold,
            grace: args.grace.clone(),
            forget_missing: args.forget_missing,
            limit_rate: args.limit_rate,
            compact_index: true,
        },
    )
}
