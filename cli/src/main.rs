//! The `vt` command line tool.
#![forbid(unsafe_code)]

mod cmd;
mod fuse;
mod output;
mod storespec;
mod treearg;
mod wakelat;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc instead of the system allocator: the index's page cache and the mount's
/// request threads allocate and free many 4 KiB buffers from several threads, where
/// glibc's per-thread arenas keep growing and trimming their heaps (page faults that
/// zero fresh pages on every refill; BENCHMARKS.md, "Block index at scale").
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// vt: a content-addressed, deduplicating store for files and trees.
#[derive(Debug, Parser)]
#[command(name = "vt", version, about, max_term_width = 100)]
pub struct Cli {
    /// Store to use: a DataDir directory path. Default: $VT_STORE, else the embedded
    /// default store under the user's data directory (created on first use).
    #[arg(short = 'S', long = "store", global = true, env = "VT_STORE")]
    pub store: Option<String>,
    /// Hash algorithm for new blocks (blake3, sha256, sha1).
    #[arg(
        long = "hash",
        global = true,
        env = "VT_HASHNAME",
        default_value = "blake3"
    )]
    pub hash: String,
    /// Average chunk size in KiB for new data (min = avg/4, max = avg*4).
    #[arg(long = "chunk-kib", global = true, env = "VT_CHUNK_KIB")]
    pub chunk_kib: Option<usize>,
    /// Print less (no progress, no summaries).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more (each file as it is processed).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a store (the default store, or the one named by -S).
    Init(cmd::init::Args),
    /// Store files or standard input; print the reference (or record it in an archive).
    Save(cmd::save::Args),
    /// Write the content of a reference (or of a file inside a tree) to standard output.
    Cat(cmd::cat::Args),
    /// List the records of a segment file.
    Dump(cmd::dump::Args),
    /// Re-hash every stored block and report corrupt records.
    #[command(alias = "fsck")]
    Verify(cmd::verify::Args),
    /// Show store statistics.
    Info(cmd::info::Args),
    /// Rebuild the index from the segment files.
    Reindex(cmd::reindex::Args),
    /// Store a directory, record it in PATH.vt, then remove it (unless --keep).
    Pack(cmd::pack::Args),
    /// Restore a revision of an archive into a new directory.
    Unpack(cmd::unpack::Args),
    /// List a stored directory.
    Ls(cmd::ls::Args),
    /// List the revisions of an archive.
    Log(cmd::log::Args),
    /// Copy every block of a cs.vt DataDir store into this store.
    Import(cmd::import::Args),
    /// Drop revisions from an archive by retention rules (then `vt gc` reclaims space).
    Forget(cmd::forget::Args),
    /// Collect garbage: keep what the roots reach, rewrite or delete mostly dead segments.
    Gc(cmd::gc::Args),
    /// Compact now: a GC that rewrites every segment holding dead space, then compacts the
    /// index file.
    Compact(cmd::compact::Args),
    /// Pin a reference so GC keeps its tree.
    Pin(cmd::pin::Args),
    /// Remove a pin.
    Unpin(cmd::pin::UnpinArgs),
    /// List the roots GC keeps alive (registered archives and pins).
    Roots(cmd::roots::Args),
    /// Mount an archive (read-write) or a Dir transcription (read-only) through FUSE.
    Mount(cmd::mount::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            output::error_line(&e);
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = cmd::Context::new(&cli)?;
    match &cli.command {
        Command::Init(a) => cmd::init::run(&ctx, a),
        Command::Save(a) => cmd::save::run(&ctx, a),
        Command::Cat(a) => cmd::cat::run(&ctx, a),
        Command::Dump(a) => cmd::dump::run(&ctx, a),
        Command::Verify(a) => cmd::verify::run(&ctx, a),
        Command::Info(a) => cmd::info::run(&ctx, a),
        Command::Reindex(a) => cmd::reindex::run(&ctx, a),
        Command::Pack(a) => cmd::pack::run(&ctx, a),
        Command::Unpack(a) => cmd::unpack::run(&ctx, a),
        Command::Ls(a) => cmd::ls::run(&ctx, a),
        Command::Log(a) => cmd::log::run(&ctx, a),
        Command::Import(a) => cmd::import::run(&ctx, a),
        Command::Forget(a) => cmd::forget::run(&ctx, a),
        Command::Gc(a) => cmd::gc::run(&ctx, a),
        Command::Compact(a) => cmd::compact::run(&ctx, a),
        Command::Pin(a) => cmd::pin::run(&ctx, a),
        Command::Unpin(a) => cmd::pin::run_unpin(&ctx, a),
        Command::Roots(a) => cmd::roots::run(&ctx, a),
        Command::Mount(a) => cmd::mount::run(&ctx, a),
    }
}

/// The embedded default store location.
pub fn default_store_dir() -> PathBuf {
    let base = dirs::data_dir().unwrap_or_else(|| PathBuf::from(".local/share"));
    base.join("vt").join("trove")
}
