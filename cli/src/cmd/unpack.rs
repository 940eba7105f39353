//! `vt unpack`: restore a revision of an archive into a new directory.

use super::Context;
use crate::output::{self, TreeProgressBar};
use anyhow::{anyhow, bail, Context as _};
use std::path::PathBuf;
use std::sync::Arc;
use vt_engine::archive::Archive;
use vt_engine::tree::{self, Progress};
use vt_engine::Dirent;

/// Arguments of `vt unpack`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive (`PATH.vt`).
    pub archive: PathBuf,
    /// Where to restore (must not exist). Default: the archive path without `.vt`.
    pub target: Option<PathBuf>,
    /// Revision number as listed by `vt log` (1 = oldest; negative counts from the latest).
    #[arg(long, allow_hyphen_values = true, conflicts_with = "at")]
    pub rev: Option<i64>,
    /// The latest revision made at or before this time (ISO-8601 or unix seconds).
    #[arg(long)]
    pub at: Option<String>,
    /// Refuse symlinks that point outside the restored tree (for untrusted archives).
    /// Symlinks are never followed while restoring, whatever their target.
    #[arg(long)]
    pub refuse_outside_symlinks: bool,
}

/// Restores the chosen revision; refuses an existing target.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let target = match &args.target {
        Some(t) => t.clone(),
        None => default_target(&args.archive)?,
    };
    if std::fs::symlink_metadata(&target).is_ok() {
        bail!(
            "{} already exists; refusing to overwrite it",
            target.display()
        );
    }
    let entries = Archive::new(&args.archive).entries()?;
    if entries.is_empty() {
        bail!(
            "{}: no revisions (or no such archive)",
            args.archive.display()
        );
    }
    let entry = if let Some(at) = &args.at {
        let t = vt_engine::timefmt::parse_time(at)?;
        entries
            .iter()
            .rev()
            .find(|e| e.when <= t)
            .ok_or_else(|| anyhow!("no revision at or before {at}"))?
    } else {
        pick_rev(&entries, args.rev)?
    };
    let root = Dirent::parse(&entry.transcription).context("bad transcription in archive")?;
    let store = ctx.open_store_readonly()?;
    let mut opts = ctx.tree_options();
    opts.refuse_outside_symlinks = args.refuse_outside_symlinks;
    let progress = Arc::new(Progress::default());
    {
        let _bar = TreeProgressBar::start(ctx.quiet, progress.clone(), "unpack");
        tree::restore(store.as_ref(), &root, &target, &opts, &progress)
            .with_context(|| format!("unpack into {}", target.display()))?;
    }
    output::print_warnings(&progress);
    Ok(std::process::ExitCode::SUCCESS)
}

fn pick_rev(
    entries: &[vt_engine::archive::ArchiveEntry],
    rev: Option<i64>,
) -> anyhow::Result<&vt_engine::archive::ArchiveEntry> {
    let n = entries.len() as i64;
    let i = match rev {
        None => n - 1,
        Some(r) if r > 0 && r <= n => r - 1,
        Some(r) if r < 0 && -r <= n => n + r,
        Some(r) => bail!("no revision {r}: the archive has revisions 1..{n}"),
    };
    Ok(&entries[i as usize])
}

fn default_target(archive: &std::path::Path) -> anyhow::Result<PathBuf> {
    let s = archive.as_os_str().to_string_lossy();
    match s.strip_suffix(".vt") {
        Some(base) if !base.is_empty() => Ok(PathBuf::from(base)),
        _ => bail!("give a TARGET: {} does not end in .vt", archive.display()),
    }
}
