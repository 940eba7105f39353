//! `vt roots`: list (or change) what GC keeps alive: registered archives and pins.

use super::Context;
use std::path::PathBuf;
use vt_engine::gc::roots::{self, Root};

/// Arguments of `vt roots`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Register an archive as a root.
    #[arg(long, value_name = "ARCHIVE")]
    pub add: Option<PathBuf>,
    /// Unregister an archive (its revisions stop protecting blocks).
    #[arg(long, value_name = "ARCHIVE")]
    pub remove: Option<PathBuf>,
}

/// Applies `--add`/`--remove`, then lists every root with its state; exits 1 when a
/// root is missing or unreadable (GC would refuse to run).
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let writing = args.add.is_some() || args.remove.is_some();
    let store = ctx.spec.open_datadir(ctx.hash, !writing)?;
    if let Some(a) = &args.add {
        store.register_root(a)?;
    }
    if let Some(a) = &args.remove {
        if !store.unregister_root(a)? {
            anyhow::bail!("{} is not a registered root", a.display());
        }
    }
    let mut healthy = true;
    for root in store.roots()? {
        let (refs, problems) = roots::resolve(std::slice::from_ref(&root));
        let state = match (problems.first(), &root) {
            (Some(p), _) => {
                healthy = false;
                format!("PROBLEM: {}", p.what)
            }
            (None, Root::Archive(_)) => format!("{} revisions", refs.len()),
            (None, Root::Pin(_)) => "ok".to_string(),
        };
        println!("{root}\t{state}");
    }
    Ok(if healthy {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}
