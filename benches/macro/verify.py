"""Restore verification: a restored tree must match the source byte for byte.

The manifest records, per relative path, the entry type and either the SHA-256 of a
regular file's content or a symlink's target. Permission bits are compared separately
and only reported: a content mismatch invalidates a result, a mode mismatch is a note.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def manifest(root: Path) -> tuple[dict[str, str], dict[str, int]]:
    """({path: 'f <sha256>' | 'l <target>' | 'd'}, {path: permission bits})."""
    entries, modes = {}, {}
    for dirpath, dirs, names in os.walk(root):
        for n in dirs + names:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = "l " + os.readlink(p)
                continue
            modes[rel] = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                entries[rel] = "d"
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    entries[rel] = "f " + hashlib.file_digest(f, "sha256").hexdigest()
            else:
                entries[rel] = f"other {stat.S_IFMT(st.st_mode)}"
    return entries, modes


def compare(source: Path, restored: Path) -> str:
    """'ok' (maybe with a note on modes), or 'FAIL: ...' naming the first differences."""
    if not restored.is_dir():
        return f"FAIL: restored tree missing ({restored.name})"
    want, want_modes = manifest(source)
    got, got_modes = manifest(restored)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    if missing or extra or differ:
        parts = []
        for what, keys in (("missing", missing), ("extra", extra), ("differ", differ)):
            if keys:
                parts.append(f"{len(keys)} {what} (e.g. {keys[0]})")
        return "FAIL: " + ", ".join(parts)
    modes = sum(1 for k in want_modes if want_modes[k] != got_modes.get(k))
    return "ok" if not modes else f"ok ({modes} modes differ)"
