//! `vt save`: store files, trees or standard input without removing anything.

use super::pack::store_tree;
use super::Context;
use crate::output;
use anyhow::{bail, Context as _};
use std::io::Read;
use std::path::PathBuf;
use vt_engine::blockify::{blockify_reader, BlockifyOptions};
use vt_engine::store::StoreSink;
use vt_engine::BlockRef;

/// Arguments of `vt save`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories to store; `-` for standard input.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Record the stored tree as a new revision in this archive (one PATH only).
    #[arg(short = 'a', long)]
    pub archive: Option<PathBuf>,
    /// Chunk with cs.vt's rolling hash, so a file's reference matches the Python system's.
    #[arg(long)]
    pub csvt: bool,
    /// Do not use the files cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// Stores each PATH and prints its reference: a block reference for a file or standard
/// input, a dirent transcription for a directory (or for anything saved with `-a`).
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    if args.archive.is_some() && args.paths.len() != 1 {
        bail!("-a records one tree: give exactly one PATH");
    }
    for path in &args.paths {
        let is_dir =
            path.as_os_str() != "-" && std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
        if is_dir || args.archive.is_some() {
            if path.as_os_str() == "-" {
                bail!("-a needs a file or directory, not standard input");
            }
            let root = store_tree(ctx, path, args.archive.as_deref(), !args.no_cache)?;
            println!("{}", root.transcribe());
        } else {
            println!("{}", save_stream(ctx, path, args.csvt)?);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Blockifies one file (or standard input), commits, and returns the top reference.
fn save_stream(ctx: &Context, path: &PathBuf, csvt: bool) -> anyhow::Result<BlockRef> {
    let store = ctx.open_store()?;
    let opts = if csvt {
        BlockifyOptions::csvt(ctx.hash)
    } else {
        BlockifyOptions {
            chunker: ctx.chunker,
            ..BlockifyOptions::with_hash_alg(ctx.hash)
        }
    };
    let (reader, total): (Box<dyn Read + Send>, Option<u64>) = if path.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let pb = output::byte_progress(ctx.quiet, total, "save");
    let reader = pb.wrap_read(reader);
    let top = blockify_reader(reader, &StoreSink(store.as_ref()), &opts)
        .with_context(|| format!("save {}", path.display()))?;
    store.flush().context("commit")?;
    pb.finish_and_clear();
    Ok(top)
}
