//! Arguments naming a stored tree: an archive file, a dirent transcription, or a Dir
//! content reference, optionally followed by `:subpath`.

use anyhow::{anyhow, bail, Context as _};
use std::path::{Path, PathBuf};
use vt_engine::archive::{Archive, ArchiveEntry};
use vt_engine::{BlockRef, Dirent, Store};

/// Parses `ARCHIVE[:subpath]`, `D{...}[:subpath]` or `B{...}`/`I{...}` into a dirent.
pub fn resolve(store: &dyn Store, arg: &str) -> anyhow::Result<Dirent> {
    let (base, sub) = split_subpath(arg);
    let root = root_dirent(base)?;
    match sub {
        Some(s) => vt_engine::tree::resolve(store, &root, s)
            .with_context(|| format!("find {s:?} in {base}")),
        None => Ok(root),
    }
}

/// The root dirent named by `base` (no subpath).
pub fn root_dirent(base: &str) -> anyhow::Result<Dirent> {
    if base.ends_with('}') {
        if let Ok(d) = Dirent::parse(base) {
            return Ok(d);
        }
        if let Ok(b) = base.parse::<BlockRef>() {
            return Ok(Dirent::dir(b"", b));
        }
        bail!("cannot parse {base:?} as a dirent or block reference");
    }
    let entry = latest(Path::new(base))?;
    Dirent::parse(&entry.transcription)
        .with_context(|| format!("{base}: bad transcription in archive"))
}

/// The latest revision of an archive; fails when it has none.
pub fn latest(path: &Path) -> anyhow::Result<ArchiveEntry> {
    if !path.exists() {
        bail!("no such archive: {}", path.display());
    }
    Archive::new(path)
        .latest()?
        .ok_or_else(|| anyhow!("{}: archive has no revisions", path.display()))
}

/// Splits `X:subpath` where X is an archive path (`*.vt`) or a transcription (`...}`).
fn split_subpath(arg: &str) -> (&str, Option<&str>) {
    if let Some(i) = arg.rfind("}:") {
        return (&arg[..=i], Some(&arg[i + 2..]));
    }
    if let Some(i) = arg.find(".vt:") {
        return (&arg[..i + 3], Some(&arg[i + 4..]));
    }
    (arg, None)
}

/// `PATH.vt` for a path.
pub fn archive_for(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".vt");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::split_subpath;

    #[test]
    fn splits() {
        assert_eq!(split_subpath("a.vt:x/y"), ("a.vt", Some("x/y")));
        assert_eq!(split_subpath("D{\"a\"}:x"), ("D{\"a\"}", Some("x")));
        assert_eq!(split_subpath("a.vt"), ("a.vt", None));
    }
}
