//! `vt import`: copy every block of a cs.vt DataDir store into this store.

use super::Context;
use anyhow::Context as _;
use std::path::PathBuf;

/// Arguments of `vt import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cs.vt store directory (holding `data/*.vtd`). It is only read.
    pub source: PathBuf,
}

/// Imports the blocks and commits.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let dest = ctx.spec.open_datadir(ctx.hash, false)?;
    let n = vt_engine::store::datadir::import_legacy(&args.source, &dest)
        .with_context(|| format!("import {}", args.source.display()))?;
    vt_engine::Store::flush(dest.as_ref()).context("commit")?;
    if !ctx.quiet {
        println!("imported {n} new blocks from {}", args.source.display());
    }
    Ok(std::process::ExitCode::SUCCESS)
}
