//! `vt verify` (alias `fsck`): re-hash every stored record.

use super::Context;
use crate::output::human_bytes;

/// Arguments of `vt verify`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Prints each corrupt record by segment and offset; exits 1 if any.
pub fn run(ctx: &Context, _args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let store = ctx.spec.open_datadir(ctx.hash, true)?;
    let report = store.verify()?;
    for c in &report.corrupt {
        let hash = c.hash.map(|h| h.to_string()).unwrap_or_else(|| "?".into());
        println!(
            "CORRUPT {} offset {}: {} ({hash})",
            c.segment, c.offset, c.what
        );
    }
    if !ctx.quiet {
        println!(
            "checked {} blocks, {}: {} corrupt",
            report.blocks_checked,
            human_bytes(report.bytes_checked),
            report.corrupt.len()
        );
    }
    Ok(if report.is_ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}
