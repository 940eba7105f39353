//! `vt save`: store a file (or standard input) and print its reference.

use super::Context;
use crate::output;
use anyhow::Context as _;
use std::io::Read;
use std::path::PathBuf;
use vt_engine::blockify::{blockify_reader, BlockifyOptions};
use vt_engine::store::StoreSink;

/// Arguments of `vt save`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// File to store, or `-` for standard input.
    pub path: PathBuf,
    /// Chunk with cs.vt's rolling hash, so the reference matches the Python system's.
    #[arg(long)]
    pub csvt: bool,
}

/// Stores the content, commits, and prints the top reference's transcription.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let store = ctx.open_store()?;
    let opts = if args.csvt {
        BlockifyOptions::csvt(ctx.hash)
    } else {
        BlockifyOptions::with_hash_alg(ctx.hash)
    };
    let (reader, total): (Box<dyn Read + Send>, Option<u64>) = if args.path.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(&args.path)
            .with_context(|| format!("open {}", args.path.display()))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let pb = output::byte_progress(ctx.quiet, total, "save");
    let reader = pb.wrap_read(reader);
    let top = blockify_reader(reader, &StoreSink(store.as_ref()), &opts)
        .with_context(|| format!("save {}", args.path.display()))?;
    store.flush().context("commit")?;
    pb.finish_and_clear();
    println!("{top}");
    Ok(std::process::ExitCode::SUCCESS)
}
