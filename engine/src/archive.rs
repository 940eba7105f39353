//! Archive files (`*.vt`): one saved revision per line, append-only (FORMAT-csvt §7).
//!
//! Line format: `<ISO-8601 time> <unix time> <dirent transcription> [# <name>]`.
//! Blank lines and lines starting with `#` are skipped. Appends hold an exclusive
//! lock file `<path>.lock` created with `O_EXCL`; a lock left by a dead process is removed.

use crate::error::{Error, IoContext, Result};
use crate::timefmt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long an append waits for another process's lock before failing.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// One revision recorded in an archive.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveEntry {
    /// Unix time of the revision (authoritative).
    pub when: f64,
    /// The dirent transcription of the revision's root.
    pub transcription: String,
    /// Optional name after `#`.
    pub name: Option<String>,
}

impl ArchiveEntry {
    /// Formats the entry as one archive line, without the trailing newline.
    ///
    /// Fails when the transcription contains whitespace or the name a newline.
    pub fn to_line(&self) -> Result<String> {
        if self.transcription.is_empty() || self.transcription.contains(char::is_whitespace) {
            return Err(Error::bad(
                "archive transcription is empty or contains whitespace",
            ));
        }
        if !self.when.is_finite() {
            return Err(Error::bad("archive time is not finite"));
        }
        let mut line = format!(
            "{} {} {}",
            timefmt::iso_utc(self.when),
            crate::codec::python_float_repr(self.when),
            self.transcription
        );
        if let Some(n) = &self.name {
            if n.contains(['\n', '\r']) {
                return Err(Error::bad("archive entry name contains a newline"));
            }
            line.push_str(" # ");
            line.push_str(n);
        }
        Ok(line)
    }

    /// Parses one non-blank, non-comment archive line.
    pub fn parse_line(line: &str) -> Result<Self> {
        let mut parts = line.trim_end_matches(['\n', '\r']).splitn(4, [' ', '\t']);
        let _iso = parts.next().filter(|s| !s.is_empty());
        let when = parts.next().and_then(|s| s.parse::<f64>().ok());
        let transcription = parts.next().filter(|s| !s.is_empty());
        let (Some(_), Some(when), Some(transcription)) = (_iso, when, transcription) else {
            return Err(Error::bad(
                "expected '<iso-time> <unix-time> <transcription> [# name]'",
            ));
        };
        if !when.is_finite() {
            return Err(Error::bad("unix time is not finite"));
        }
        let name = match parts.next() {
            None => None,
            Some(rest) if rest.trim().is_empty() => None,
            Some(rest) => {
                let n = rest.trim_start().strip_prefix('#').ok_or_else(|| {
                    Error::bad(format!("unexpected text after transcription: {rest:?}"))
                })?;
                // Exactly one space separates '#' from the name, which is kept verbatim.
                Some(n.strip_prefix(' ').unwrap_or(n).to_string())
            }
        };
        Ok(ArchiveEntry {
            when,
            transcription: transcription.to_string(),
            name,
        })
    }
}

/// An archive file on disk.
#[derive(Debug, Clone)]
pub struct Archive {
    path: PathBuf,
}

impl Archive {
    /// Refers to the archive at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Archive { path: path.into() }
    }

    /// The archive's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every revision in file order (oldest first). A missing file has none.
    ///
    /// Fails on I/O errors or a malformed line, naming the line number.
    pub fn entries(&self) -> Result<Vec<ArchiveEntry>> {
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("open {}", self.path.display()), e)),
        };
        let mut out = Vec::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line.ctx(|| format!("read {}", self.path.display()))?;
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let e = ArchiveEntry::parse_line(t)
                .map_err(|e| Error::bad(format!("{}: line {}: {e}", self.path.display(), i + 1)))?;
            out.push(e);
        }
        Ok(out)
    }

    /// The latest revision (the last line), if any.
    pub fn latest(&self) -> Result<Option<ArchiveEntry>> {
        Ok(self.entries()?.pop())
    }

    /// The latest revision made at or before unix time `at`.
    pub fn at(&self, at: f64) -> Result<Option<ArchiveEntry>> {
        Ok(self.entries()?.into_iter().rev().find(|e| e.when <= at))
    }

    /// Appends a revision durably (write + fsync) under the lock-file protocol.
    pub fn append(&self, entry: &ArchiveEntry) -> Result<()> {
        let line = entry.to_line()? + "\n";
        let _lock = ArchiveLock::acquire(&self.path, LOCK_TIMEOUT)?;
        let created = !self.path.exists();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ctx(|| format!("open {} for append", self.path.display()))?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .ctx(|| format!("append to {}", self.path.display()))?;
        if created {
            sync_parent(&self.path)?;
        }
        Ok(())
    }

    /// Replaces the whole archive with `entries` atomically (temp file, rename, directory fsync).
    pub fn rewrite(&self, entries: &[ArchiveEntry]) -> Result<()> {
        let _lock = ArchiveLock::acquire(&self.path, LOCK_TIMEOUT)?;
        self.replace_locked(entries)
    }

    /// Reads the entries and, when `f` returns new ones, rewrites the archive with them
    /// atomically — all under the lock, so no concurrent append is lost in between.
    /// Fails when `f` does, or as [`Archive::entries`] and [`Archive::rewrite`] do.
    pub fn update(
        &self,
        f: impl FnOnce(Vec<ArchiveEntry>) -> Result<Option<Vec<ArchiveEntry>>>,
    ) -> Result<()> {
        let _lock = ArchiveLock::acquire(&self.path, LOCK_TIMEOUT)?;
        match f(self.entries()?)? {
            Some(entries) => self.replace_locked(&entries),
            None => Ok(()),
        }
    }

    fn replace_locked(&self, entries: &[ArchiveEntry]) -> Result<()> {
        let mut text = String::new();
        for e in entries {
            text.push_str(&e.to_line()?);
            text.push('\n');
        }
        let tmp = self.path.with_extension("vt.tmp");
        let mut f = File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .ctx(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).ctx(|| format!("rename onto {}", self.path.display()))?;
        sync_parent(&self.path)
    }
}

/// Fsyncs the directory holding `path`, making a create or rename durable.
pub fn sync_parent(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("fsync directory {}", dir.display()))
}

/// The `<archive>.lock` file, removed on drop.
#[derive(Debug)]
struct ArchiveLock {
    path: PathBuf,
}

impl ArchiveLock {
    fn acquire(archive: &Path, timeout: Duration) -> Result<Self> {
        let mut os = archive.as_os_str().to_owned();
        os.push(".lock");
        let path = PathBuf::from(os);
        let start = Instant::now();
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(ArchiveLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if Self::holder_is_dead(&path) {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    if start.elapsed() > timeout {
                        let holder = std::fs::read_to_string(&path).unwrap_or_default();
                        return Err(Error::Locked {
                            path: archive.to_path_buf(),
                            holder: format!(
                                "lock file {} held by pid {}",
                                path.display(),
                                holder.trim()
                            ),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(Error::io(format!("create {}", path.display()), e)),
            }
        }
    }

    /// A lock naming a pid that no longer runs on this host is stale.
    fn holder_is_dead(path: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        match text.trim().parse::<u32>() {
            Ok(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
            // Written by another implementation (or mid-write): respect it.
            Err(_) => false,
        }
    }
}

impl Drop for ArchiveLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The archive a store owns: `<storedir>.vt`, or `<storedir>-<name>.vt` when named.
pub fn store_archive_path(store_dir: &Path, name: Option<&str>) -> PathBuf {
    let mut os = store_dir.as_os_str().to_owned();
    if let Some(n) = name {
        os.push("-");
        os.push(n);
    }
    os.push(".vt");
    PathBuf::from(os)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(when: f64, t: &str, name: Option<&str>) -> ArchiveEntry {
        ArchiveEntry {
            when,
            transcription: t.into(),
            name: name.map(Into::into),
        }
    }

    #[test]
    fn parses_csvt_line() {
        let e = ArchiveEntry::parse_line(
            "2018-12-16T16:18:04.820552+11:00 1544937484.82 D{\"vt2\":meta:M{a:\"o:rwx-\"}} # vt2",
        )
        .unwrap();
        assert_eq!(e.when, 1544937484.82);
        assert_eq!(e.name.as_deref(), Some("vt2"));
        assert!(e.transcription.starts_with("D{"));
    }

    #[test]
    fn append_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::new(dir.path().join("x.vt"));
        assert!(a.latest().unwrap().is_none());
        a.append(&entry(100.5, "D{a}", None)).unwrap();
        a.append(&entry(200.25, "D{b}", Some("second one")))
            .unwrap();
        let es = a.entries().unwrap();
        assert_eq!(es.len(), 2);
        assert_eq!(es[1], entry(200.25, "D{b}", Some("second one")));
        assert_eq!(a.at(150.0).unwrap().unwrap().transcription, "D{a}");
        assert!(a.at(50.0).unwrap().is_none());
        assert!(!dir.path().join("x.vt.lock").exists());
    }

    #[test]
    fn malformed_line_names_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.vt");
        std::fs::write(
            &p,
            "# comment\n\n2020-01-01T00:00:00Z 1577836800.0 D{x}\nnot a line\n",
        )
        .unwrap();
        let err = Archive::new(&p).entries().unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn whitespace_in_transcription_refused() {
        assert!(entry(1.0, "D{a b}", None).to_line().is_err());
    }

    #[test]
    fn stale_lock_is_broken_live_lock_waits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.vt");
        // A pid that cannot exist.
        std::fs::write(dir.path().join("l.vt.lock"), "4294967295\n").unwrap();
        Archive::new(&p).append(&entry(1.0, "D{a}", None)).unwrap();
        std::fs::write(
            dir.path().join("l.vt.lock"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        let err = ArchiveLock::acquire(&p, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }));
    }

    #[test]
    fn rewrite_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::new(dir.path().join("r.vt"));
        for i in 0..5 {
            a.append(&entry(f64::from(i), &format!("D{{{i}}}"), None))
                .unwrap();
        }
        let keep: Vec<_> = a.entries().unwrap().into_iter().skip(3).collect();
        a.rewrite(&keep).unwrap();
        assert_eq!(a.entries().unwrap(), keep);
    }

    proptest! {
        #[test]
        fn line_roundtrip(when in 0.0f64..4e9, t in "[A-Za-z{}:,\"0-9]{1,40}", name in proptest::option::of("[a-z ]{0,10}[a-z]")) {
            let e = entry(when, &t, name.as_deref());
            let back = ArchiveEntry::parse_line(&e.to_line().unwrap()).unwrap();
            prop_assert_eq!(back, e);
        }

        #[test]
        fn garbage_line_never_panics(s in ".{0,80}") {
            let _ = ArchiveEntry::parse_line(&s);
        }
    }
}
