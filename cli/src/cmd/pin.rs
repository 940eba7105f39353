//! `vt pin` / `vt unpin`: keep a reference's tree alive without an archive.

use super::Context;

/// Arguments of `vt pin`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A dirent or block reference transcription (as `vt save` prints).
    pub reference: String,
}

/// Arguments of `vt unpin`.
#[derive(Debug, clap::Args)]
pub struct UnpinArgs {
    /// The pinned transcription, exactly as `vt roots` lists it.
    pub reference: String,
}

/// Pins the reference.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let store = ctx.spec.open_datadir(ctx.hash, false)?;
    store.pin(&args.reference)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Removes the pin; exits 1 when it was not pinned.
pub fn run_unpin(ctx: &Context, args: &UnpinArgs) -> anyhow::Result<std::process::ExitCode> {
    let store = ctx.spec.open_datadir(ctx.hash, false)?;
    if store.unpin(&args.reference)? {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        eprintln!("vt: not pinned: {}", args.reference);
        Ok(std::process::ExitCode::from(1))
    }
}
