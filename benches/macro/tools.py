"""The tools under test and the exact commands the benchmark runs for each.

Each tool turns an operation (init, ingest, restore, ...) into a list of commands; the
harness (bench.py) runs and times them. The vt commands are all in the first section,
one function per operation, so the CLI can change without touching the harness.

Conventions for tree workloads: the version being ingested is always at ``STAGE/tree``
(a hard-linked copy made by the harness), commands run with ``cwd=STAGE`` and name the
tree by the relative path ``tree``; a restore goes into a fresh, empty ``TARGET``
directory and the tool returns the directory where the tree's content lands.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Cmd:
    """One command line. stdout: 'log' (to the run log), 'null', or 'capture'."""

    argv: list[str]
    cwd: Path | None = None
    stdout: str = "log"
    # How the report shows it (e.g. with a shell redirection); argv joined by default.
    display: str | None = None

    def shown(self) -> str:
        return self.display or " ".join(self.argv)


# ======================================================================================
# vt: every vt command line used by the benchmark is here, one function per operation.
# ======================================================================================

VT_TREE_SUBCOMMANDS = ("init", "pack", "unpack")
VT_FILE_SUBCOMMANDS = ("init", "save", "cat")
VT_GC_SUBCOMMANDS = ("forget", "compact")


def vt_init(vt: str, store: Path) -> list[Cmd]:
    """Create an empty store."""
    return [Cmd([vt, "-S", str(store), "init"])]


def vt_pack(vt: str, store: Path, stage: Path) -> list[Cmd]:
    """Store the tree at STAGE/tree and append a revision to STAGE/tree.vt."""
    return [Cmd([vt, "-S", str(store), "pack", "tree", "--keep"], cwd=stage)]


def vt_unpack(vt: str, store: Path, stage: Path, target: Path) -> tuple[list[Cmd], Path]:
    """Restore the last revision recorded in STAGE/tree.vt into TARGET/tree."""
    out = target / "tree"
    return [Cmd([vt, "-S", str(store), "unpack", str(stage / "tree.vt"), str(out)])], out


def vt_forget(vt: str, store: Path, stage: Path, keep: int) -> list[Cmd]:
    """Drop all but the newest KEEP revisions from STAGE/tree.vt (blocks stay until gc)."""
    return [Cmd([vt, "-S", str(store), "forget", str(stage / "tree.vt"), "--keep-last", str(keep)])]


def vt_gc(vt: str, store: Path) -> list[Cmd]:
    """Reclaim the space of blocks no root reaches, as restic's prune and borg's compact
    do: `compact` rewrites every segment holding any dead space (`gc` only rewrites
    segments less than half live, and leaves the writer's active segment alone while it
    is under a quarter full: on a small store that is everything). --grace 0: the default
    grace period keeps blocks written in the last hour, which would be every block here."""
    return [Cmd([vt, "-S", str(store), "compact", "--grace", "0"])]


def vt_save(vt: str, store: Path, file: Path) -> list[Cmd]:
    """Store one file; its stdout (last line) is the reference."""
    return [Cmd([vt, "-S", str(store), "save", str(file)], stdout="capture")]


def vt_cat(vt: str, store: Path, ref: str) -> list[Cmd]:
    """Write a stored reference's content to /dev/null."""
    return [
        Cmd(
            [vt, "-S", str(store), "cat", ref],
            stdout="null",
            display=f"{vt} -S {store} cat REF > /dev/null",
        )
    ]


def vt_info(vt: str, store: Path) -> list[Cmd]:
    """Store statistics (recorded in the log, not timed)."""
    return [Cmd([vt, "-S", str(store), "info"], stdout="capture")]


def vt_subcommands(vt: str) -> set[str]:
    """Subcommands the binary's --help lists (clap's 'Commands:' section)."""
    try:
        r = subprocess.run([vt, "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    subs, in_cmds = set(), False
    for line in r.stdout.splitlines():
        if re.match(r"^(Commands|Subcommands|SUBCOMMANDS):", line):
            in_cmds = True
        elif in_cmds and re.match(r"^\S", line):
            in_cmds = False
        elif in_cmds:
            m = re.match(r"^\s+([a-z][\w-]*)", line)
            if m:
                subs.add(m.group(1))
    return subs


def find_vt(explicit: str | None, repo: Path) -> str | None:
    """--vt, then $VT_BIN, then the workspace's release build, then `vt` on PATH."""
    for c in (explicit, os.environ.get("VT_BIN"), str(repo / "target" / "release" / "vt")):
        if c and os.access(c, os.X_OK) and os.path.isfile(c):
            return os.path.abspath(c)
    return shutil.which("vt")


# ======================================================================================
# Tools for tree workloads
# ======================================================================================


def version_of(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (r.stdout or r.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


@dataclass
class Tool:
    """A tree-backup tool: name, Debian package, and how to drive it."""

    name: str
    package: str | None = None
    env: dict = field(default_factory=dict)

    def binary(self) -> str:
        return self.name

    def available(self) -> tuple[bool, str]:
        ok = shutil.which(self.binary()) is not None
        return ok, "" if ok else f"{self.binary()} not installed"

    def version(self) -> str:
        return version_of([self.binary(), "--version"])

    def setup_env(self, work: Path) -> dict:
        """Extra environment; caches live under WORK so each run starts cold."""
        return dict(self.env)

    def init(self, store: Path) -> list[Cmd]:
        raise NotImplementedError

    def ingest(self, store: Path, stage: Path, label: str) -> list[Cmd]:
        raise NotImplementedError

    def restore(self, store: Path, stage: Path, label: str, target: Path):
        raise NotImplementedError

    def gc(self, store: Path, stage: Path) -> list[Cmd] | None:
        """Prune/GC: forget every backup but the newest, then reclaim the space.
        None when the tool cannot (gc_unsupported says why)."""
        return None

    def gc_unsupported(self) -> str:
        """How the report shows a tool without prune/GC."""
        return "not supported"


class Vt(Tool):
    """vt, through the functions at the top of this file."""

    def __init__(self, path: str | None):
        super().__init__("vt")
        self.path = path

    def binary(self) -> str:
        return self.path or "vt"

    def available(self) -> tuple[bool, str]:
        if not self.path:
            return False, "no vt binary (build with cargo build --release -p vt-cli)"
        missing = [s for s in VT_TREE_SUBCOMMANDS if s not in vt_subcommands(self.path)]
        if missing:
            return False, f"binary lacks: {', '.join(missing)}"
        return True, ""

    def init(self, store):
        return vt_init(self.path, store)

    def ingest(self, store, stage, label):
        return vt_pack(self.path, store, stage)

    def restore(self, store, stage, label, target):
        return vt_unpack(self.path, store, stage, target)

    def gc(self, store, stage):
        if self.gc_unsupported():
            return None
        return vt_forget(self.path, store, stage, 1) + vt_gc(self.path, store)

    def gc_unsupported(self):
        subs = vt_subcommands(self.path) if self.path else set()
        missing = [s for s in VT_GC_SUBCOMMANDS if s not in subs]
        return f"not supported (binary lacks: {', '.join(missing)})" if missing else ""


class Restic(Tool):
    def __init__(self):
        super().__init__("restic", "restic", {"RESTIC_PASSWORD": "bench"})

    def version(self):
        return version_of(["restic", "version"])

    def setup_env(self, work):
        return {**self.env, "XDG_CACHE_HOME": str(work / "cache")}

    def init(self, store):
        return [Cmd(["restic", "-r", str(store), "init"])]

    def ingest(self, store, stage, label):
        return [
            Cmd(
                ["restic", "-r", str(store), "backup", "--compression", "auto",
                 "--host", "bench", "--tag", label, "tree"],
                cwd=stage,
            )
        ]

    def restore(self, store, stage, label, target):
        # restic (0.14) restores a snapshot of `tree` as TARGET/tree.
        cmd = Cmd(["restic", "-r", str(store), "restore", "latest", "--target", str(target)])
        return [cmd], target / "tree"

    def gc(self, store, stage):
        # Every snapshot has host `bench` and path `tree`: one group, so one survivor.
        return [Cmd(["restic", "-r", str(store), "forget", "--keep-last", "1", "--prune"])]


class Borg(Tool):
    def __init__(self):
        super().__init__(
            "borg",
            "borgbackup",
            {
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
                "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
            },
        )

    def setup_env(self, work):
        return {**self.env, "BORG_BASE_DIR": str(work / "borgbase")}

    def init(self, store):
        return [Cmd(["borg", "init", "-e", "none", str(store)])]

    def ingest(self, store, stage, label):
        return [
            Cmd(["borg", "create", "--compression", "zstd,3", f"{store}::{label}", "tree"],
                cwd=stage)
        ]

    def restore(self, store, stage, label, target):
        return [Cmd(["borg", "extract", f"{store}::{label}"], cwd=target)], target / "tree"

    def gc(self, store, stage):
        # borg 1.2: prune only marks; compact frees the segments' space.
        return [Cmd(["borg", "prune", "--keep-last", "1", str(store)]),
                Cmd(["borg", "compact", str(store)])]


class Casync(Tool):
    def __init__(self):
        super().__init__("casync", "casync")

    def init(self, store):
        return [Cmd(["mkdir", "-p", str(store / "default.castr")])]

    def ingest(self, store, stage, label):
        return [
            Cmd(
                ["casync", "make", "--compression=zstd", f"--store={store}/default.castr",
                 f"{store}/{label}.caidx", "tree"],
                cwd=stage,
            )
        ]

    def restore(self, store, stage, label, target):
        out = target / "tree"
        return [
            Cmd(["casync", "extract", f"--store={store}/default.castr",
                 f"{store}/{label}.caidx", str(out)])
        ], out

    def gc_unsupported(self):
        return "n/a (casync has no GC)"


class Bup(Tool):
    def __init__(self):
        super().__init__("bup", "bup")

    def version(self):
        return "bup " + version_of(["bup", "--version"])

    def _env(self, store):
        return ["env", f"BUP_DIR={store}"]

    def init(self, store):
        return [Cmd(self._env(store) + ["bup", "init"])]

    def ingest(self, store, stage, label):
        return [
            Cmd(self._env(store) + ["bup", "index", "tree"], cwd=stage),
            Cmd(self._env(store) + ["bup", "save", "-n", "bench", "--strip", "tree"], cwd=stage),
        ]

    def restore(self, store, stage, label, target):
        out = target / "tree"
        return [Cmd(self._env(store) + ["bup", "restore", "-C", str(out), "/bench/latest/."])], out

    def gc(self, store, stage):
        if self.gc_unsupported():
            return None
        # Saves are named by time, oldest first; `latest` is an alias of the newest.
        d = shlex.quote(str(store))
        drop = (f"BUP_DIR={d} bup ls /bench | grep -v '^latest$' | head -n -1 "
                f"| sed 's|^|/bench/|' | BUP_DIR={d} xargs -r bup rm --unsafe")
        return [
            Cmd(["sh", "-c", drop], display=f"sh -c \"{drop}\""),
            Cmd(self._env(store) + ["bup", "gc", "--unsafe"]),
        ]

    def gc_unsupported(self):
        try:
            r = subprocess.run(["bup", "help"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return "not supported (bup help failed)"
        subs = set(re.findall(r"\b(rm|gc)\b", r.stdout + r.stderr))
        return "" if {"rm", "gc"} <= subs else "not supported (this bup has no rm/gc)"


def all_tools(vt_path: str | None) -> list[Tool]:
    return [Vt(vt_path), Restic(), Borg(), Casync(), Bup()]


# ======================================================================================
# Single-file case: vt save/cat against b3sum and cat
# ======================================================================================


def b3sum_cmd(file: Path) -> list[Cmd]:
    return [Cmd(["b3sum", "--num-threads", "2", str(file)], stdout="null")]


def cat_cmd(file: Path) -> list[Cmd]:
    return [Cmd(["cat", str(file)], stdout="null", display=f"cat {file} > /dev/null")]
