//! `vt cat`: write a reference's content to standard output.

use super::Context;
use anyhow::Context as _;
use std::io::Write;
use vt_engine::BlockRef;

/// Arguments of `vt cat`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A block reference transcription, e.g. `B{hash:H{blake3:...},span:N}`.
    pub reference: String,
}

/// Streams the content to standard output.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let block: BlockRef = args
        .reference
        .parse()
        .with_context(|| format!("parse reference {:?}", args.reference))?;
    let store = ctx.open_store_readonly()?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match vt_engine::read::write_to(store.as_ref(), &block, &mut out) {
        Err(vt_engine::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            return Ok(std::process::ExitCode::SUCCESS)
        }
        r => {
            r.context("read content")?;
        }
    }
    out.flush().ok();
    Ok(std::process::ExitCode::SUCCESS)
}
