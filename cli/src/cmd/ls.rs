//! `vt ls`: list a stored directory.

use super::Context;
use crate::treearg;
use std::io::Write;
use vt_engine::{Dirent, DirentKind, Store};

/// Arguments of `vt ls`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `ARCHIVE[:subpath]`, a dirent transcription `D{...}[:subpath]`, or a Dir block reference.
    pub tree: String,
    /// List subdirectories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

/// Prints one line per entry: mode, size, mtime, name.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let store = ctx.open_store_readonly()?;
    let d = treearg::resolve(store.as_ref(), &args.tree)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if d.kind != DirentKind::Dir {
        writeln!(out, "{}", line(&d))?;
    } else {
        list(store.as_ref(), &d, "", args.recursive, &mut out)?;
    }
    out.flush()?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn list(
    store: &dyn Store,
    d: &Dirent,
    prefix: &str,
    recursive: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let entries = vt_engine::tree::read_dir_entries(store, d)?;
    for e in &entries {
        let name = format!("{prefix}{}", String::from_utf8_lossy(&e.name));
        writeln!(out, "{}", line_named(e, &name))?;
    }
    if recursive {
        for e in entries.iter().filter(|e| e.kind == DirentKind::Dir) {
            let p = format!("{prefix}{}/", String::from_utf8_lossy(&e.name));
            list(store, e, &p, true, out)?;
        }
    }
    Ok(())
}

fn line(d: &Dirent) -> String {
    line_named(d, &String::from_utf8_lossy(&d.name))
}

/// `drwxr-xr-x  1234  2024-01-01T00:00:00  name [-> target]`
fn line_named(d: &Dirent, name: &str) -> String {
    let kind = match d.kind {
        DirentKind::Dir => 'd',
        DirentKind::Symlink => 'l',
        DirentKind::Indirect => 'h',
        DirentKind::File => '-',
    };
    let size = d.block.as_ref().map_or(0, |b| b.span());
    let when = d
        .meta
        .mtime()
        .map(|(s, _)| vt_engine::timefmt::iso_utc(s as f64)[..19].to_string())
        .unwrap_or_else(|| "-".repeat(19));
    let mut s = format!(
        "{kind}{} {size:>12} {when} {}",
        mode_string(d.meta.mode()),
        escape(name)
    );
    if let Some(t) = d.symlink_target() {
        s.push_str(" -> ");
        s.push_str(&escape(&String::from_utf8_lossy(t)));
    }
    s
}

fn mode_string(m: u32) -> String {
    let mut s = String::with_capacity(9);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if m & (0o400 >> i) != 0 { c } else { '-' });
    }
    s
}

/// Makes control characters visible so one entry is one line.
fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}
