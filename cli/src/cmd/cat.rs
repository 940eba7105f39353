//! `vt cat`: write a reference's content, or a stored file's, to standard output.

use super::Context;
use crate::treearg;
use anyhow::{bail, Context as _};
use std::io::Write;
use std::os::fd::AsFd;
use vt_engine::{BlockRef, DirentKind};

/// Arguments of `vt cat`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A block reference (`B{...}`, `I{...}`, ...), or `ARCHIVE:path` / `D{...}:path`
    /// naming a file inside a stored tree.
    pub reference: String,
}

/// Streams the content to standard output.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let store = ctx.open_store_readonly()?;
    let block = match args.reference.parse::<BlockRef>() {
        Ok(b) => b,
        Err(_) => {
            let d = treearg::resolve(store.as_ref(), &args.reference).with_context(|| {
                format!(
                    "{:?} is neither a block reference nor a stored file",
                    args.reference
                )
            })?;
            if d.kind != DirentKind::File {
                bail!("{}: not a regular file", args.reference);
            }
            d.block.unwrap_or_else(BlockRef::empty)
        }
    };
    // Leaves are written straight to the descriptor: std's stdout is line-buffered, and a
    // large buffer would copy every leaf once more. Only small pieces are buffered.
    let stdout = std::io::stdout().lock();
    let fd = stdout
        .as_fd()
        .try_clone_to_owned()
        .context("standard output")?;
    let mut out = std::io::BufWriter::with_capacity(16 << 10, std::fs::File::from(fd));
    vt_engine::read::write_to(store.as_ref(), &block, &mut out).context("read content")?;
    out.flush().context("write to standard output")?;
    Ok(std::process::ExitCode::SUCCESS)
}
