//! `vt reindex`: rebuild the index from the segments.

use super::Context;

/// Arguments of `vt reindex`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Rebuilds the index; reports records that could not be indexed.
pub fn run(ctx: &Context, _args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let store = ctx.spec.open_datadir(ctx.hash, false)?;
    let report = store.reindex()?;
    for c in &report.skipped {
        println!("SKIPPED {} offset {}: {}", c.segment, c.offset, c.what);
    }
    if !ctx.quiet {
        println!(
            "indexed {} blocks; {} records skipped",
            report.blocks,
            report.skipped.len()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
