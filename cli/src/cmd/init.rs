//! `vt init`: create a store.

use super::Context;
use anyhow::{bail, Context as _};
use vt_engine::store::datadir::{DataDir, DataDirOptions};

/// Arguments of `vt init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Segment file size before rolling over, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub segment_mib: u64,
}

/// Creates the store; fails if one already exists there.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let path = ctx.spec.datadir_path()?;
    if path.join("data").exists() {
        bail!("a store already exists at {}", path.display());
    }
    let opts = DataDirOptions {
        hash_alg: ctx.hash,
        segment_size: args.segment_mib << 20,
        ..DataDirOptions::default()
    };
    DataDir::create(path, opts).with_context(|| format!("create store {}", path.display()))?;
    if !ctx.quiet {
        println!("created store {}", path.display());
    }
    Ok(std::process::ExitCode::SUCCESS)
}
