//! `vt log`: list an archive's revisions.

use super::Context;
use crate::output::human_bytes;
use anyhow::Context as _;
use std::path::PathBuf;
use vt_engine::archive::Archive;
use vt_engine::Dirent;

/// Arguments of `vt log`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive file.
    pub archive: PathBuf,
    /// Skip counting files and bytes (no store access).
    #[arg(long)]
    pub short: bool,
}

/// Prints `N  time  files  size  [name]` per revision, oldest first.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let entries = Archive::new(&args.archive).entries()?;
    if !args.archive.exists() {
        anyhow::bail!("no such archive: {}", args.archive.display());
    }
    let store = if args.short {
        None
    } else {
        Some(ctx.open_store_readonly()?)
    };
    for (i, e) in entries.iter().enumerate() {
        let iso = vt_engine::timefmt::iso_utc(e.when);
        let counts = match &store {
            Some(s) => {
                let d = Dirent::parse(&e.transcription)
                    .with_context(|| format!("revision {}", i + 1))?;
                match vt_engine::tree::stats(s.as_ref(), &d) {
                    Ok(st) => format!("{:>8} files {:>10}", st.files, human_bytes(st.bytes)),
                    Err(err) => format!("(unreadable: {err})"),
                }
            }
            None => String::new(),
        };
        let name = e
            .name
            .as_deref()
            .map(|n| format!("  # {n}"))
            .unwrap_or_default();
        println!("{:>4}  {}  {counts}{name}", i + 1, &iso[..26]);
    }
    Ok(std::process::ExitCode::SUCCESS)
}
