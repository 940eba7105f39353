//! `vt pack`: store a tree, record it in `PATH.vt`, then remove PATH.

use super::Context;
use crate::output::{self, TreeProgressBar};
use crate::treearg::archive_for;
use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vt_engine::archive::{Archive, ArchiveEntry};
use vt_engine::tree::{self, Progress};
use vt_engine::Dirent;

/// Arguments of `vt pack`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory (or file) to pack.
    pub path: PathBuf,
    /// Keep PATH after packing.
    #[arg(long)]
    pub keep: bool,
    /// Archive to append to (default PATH.vt).
    #[arg(short = 'a', long)]
    pub archive: Option<PathBuf>,
    /// Do not use the files cache (re-read every file).
    #[arg(long)]
    pub no_cache: bool,
}

/// Packs the tree. PATH is removed only after its revision and data are durable and
/// every block of the tree was checked present.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let path = args.path.as_path();
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
    if !meta.is_dir() && !args.keep {
        bail!(
            "{} is not a directory; use `vt save` for files (or --keep)",
            path.display()
        );
    }
    let archive = args
        .archive
        .clone()
        .unwrap_or_else(|| archive_for(path.trim_end_slash()));
    let root = store_tree(ctx, path, Some(&archive), !args.no_cache)?;
    if !ctx.quiet {
        println!("{}", root.transcribe());
    }
    if !args.keep {
        std::fs::remove_dir_all(path).with_context(|| format!("remove {}", path.display()))?;
        if !ctx.quiet {
            eprintln!(
                "vt: packed {} into {} and removed it",
                path.display(),
                archive.display()
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Stores the tree at `path`, commits, checks it, and appends a revision to `archive`.
pub fn store_tree(
    ctx: &Context,
    path: &Path,
    archive: Option<&Path>,
    use_cache: bool,
) -> anyhow::Result<Dirent> {
    let datadir = ctx.open_datadir_if_any()?;
    let store: Arc<dyn vt_engine::Store> = match &datadir {
        Some(d) => d.clone(),
        None => ctx.open_store()?,
    };
    // Held from the first add until the root is registered, so a concurrent GC cannot
    // collect blocks this pack deduplicated against.
    let _hold = datadir.as_ref().map(|d| d.write_hold());
    let opts = ctx.tree_options();
    let cache = match (use_cache, ctx.files_cache_path(path)) {
        (true, Some(p)) => Some(vt_engine::filecache::FileCache::load(p)),
        _ => None,
    };
    let progress = Arc::new(Progress::default());
    let root = {
        let _bar = TreeProgressBar::start(ctx.quiet, progress.clone(), "pack");
        tree::pack(store.as_ref(), path, cache.as_ref(), &opts, &progress)
            .with_context(|| format!("pack {}", path.display()))?
    };
    output::print_warnings(&progress);
    store.flush().context("commit the store")?;
    tree::check_present(store.as_ref(), &root).context("check the stored tree")?;
    if let Some(archive) = archive {
        let entry = ArchiveEntry {
            when: now(),
            transcription: root.transcribe(),
            name: None,
        };
        Archive::new(archive)
            .append(&entry)
            .with_context(|| format!("append to {}", archive.display()))?;
        if let Some(d) = &datadir {
            d.register_root(archive)
                .with_context(|| format!("register {} as a root", archive.display()))?;
        }
    }
    if let Some(c) = cache {
        if let Err(e) = c.save() {
            eprintln!("vt: warning: files cache not saved: {e}");
        }
    }
    if ctx.verbose > 0 {
        eprintln!(
            "vt: {} files ({} from the files cache), {} dirs, {}",
            Progress::get(&progress.files),
            Progress::get(&progress.cached_files),
            Progress::get(&progress.dirs),
            output::human_bytes(Progress::get(&progress.bytes_done))
        );
    }
    Ok(root)
}

/// Seconds since the epoch, now.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

trait TrimSlash {
    fn trim_end_slash(&self) -> &Path;
}

impl TrimSlash for Path {
    fn trim_end_slash(&self) -> &Path {
        // `dir/` and `dir` name the same archive `dir.vt`.
        self.components().as_path()
    }
}
