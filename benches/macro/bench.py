#!/usr/bin/env python3
"""Side-by-side macro benchmark: vt against restic, borg, casync and bup.

Usage: benches/macro/run.sh [--quick | --full | --smoke] [--out FILE.md] [options]

Modes:
  --quick  kernel-headers (3 versions) and a 256 MiB single file, 1 run (default)
  --full   kernel-headers (6 versions), synthetic (6 x 256 MB), a 1 GiB single file, 5 runs
  --smoke  tiny synthetic data, 1 run, no apt and no network: tools not installed are
           skipped (used by tests/tests/bench_smoke.rs so the harness cannot rot)

See benches/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets  # noqa: E402
import report  # noqa: E402
import tools as T  # noqa: E402
import verify  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TIME_BIN = "/usr/bin/time"


# --------------------------------------------------------------------------------------
# Running and measuring one operation
# --------------------------------------------------------------------------------------


@dataclass
class Measure:
    """Wall time, CPU time and peak RSS of an operation (summed / maxed over its commands)."""

    wall: float = 0.0
    cpu: float = 0.0
    rss_kib: int = 0
    ok: bool = True
    error: str = ""
    captured: str = ""


class Runner:
    """Runs commands with /usr/bin/time -v (or os.wait4 when it is missing)."""

    def __init__(self, log_path: Path, verbose: bool):
        self.log_path = log_path
        self.verbose = verbose
        self.use_time = os.access(TIME_BIN, os.X_OK)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = open(log_path, "a", buffering=1)

    def log(self, msg: str) -> None:
        self.log_file.write(msg + "\n")
        if self.verbose:
            print(msg, file=sys.stderr, flush=True)

    def run(self, cmds: list[T.Cmd], env: dict) -> Measure:
        m = Measure()
        full_env = {**os.environ, **env}
        for c in cmds:
            self.run_one(c, full_env, m)
            if not m.ok:
                break
        return m

    def run_one(self, c: T.Cmd, env: dict, m: Measure) -> None:
        self.log(f"$ (cd {c.cwd or os.getcwd()}) {c.shown()}")
        tfile = self.log_path.with_suffix(".time")
        argv = [TIME_BIN, "-v", "-o", str(tfile)] + c.argv if self.use_time else c.argv
        cap = self.log_path.with_suffix(".out")
        out = {"log": self.log_file, "null": subprocess.DEVNULL}.get(c.stdout)
        with open(cap, "wb") as capf:
            start = time.monotonic()
            try:
                p = subprocess.Popen(argv, cwd=c.cwd, env=env, stdout=out or capf,
                                     stderr=self.log_file, stdin=subprocess.DEVNULL)
            except OSError as e:
                m.ok, m.error = False, str(e)
                return
            _pid, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            wall = time.monotonic() - start
        m.wall += wall
        if self.use_time:
            rss, cpu = parse_time_v(tfile.read_text(errors="replace"))
        else:
            rss, cpu = ru.ru_maxrss, ru.ru_utime + ru.ru_stime
        m.cpu += cpu
        m.rss_kib = max(m.rss_kib, rss)
        if c.stdout == "capture":
            m.captured += cap.read_text(errors="replace")
            self.log(m.captured[-2000:])
        self.log(f"  -> exit {p.returncode}, {wall:.3f} s, cpu {cpu:.2f} s, rss {rss} KiB")
        if p.returncode != 0:
            m.ok, m.error = False, f"`{c.shown()}` exited {p.returncode}"


def parse_time_v(text: str) -> tuple[int, float]:
    """(peak RSS KiB, user+system seconds) from GNU time -v output."""
    rss, cpu = 0, 0.0
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Maximum resident set size (kbytes):"):
            rss = int(line.rsplit(":", 1)[1])
        elif line.startswith(("User time (seconds):", "System time (seconds):")):
            cpu += float(line.rsplit(":", 1)[1])
    return rss, cpu


def dir_bytes(root: Path) -> int:
    """Apparent size of every regular file under root (a store's size)."""
    total = 0
    if root.is_file():
        return root.stat().st_size
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                total += os.lstat(p).st_size
    return total


# --------------------------------------------------------------------------------------
# Tree workload: ingest each version, restore the last, re-ingest it
# --------------------------------------------------------------------------------------


@dataclass
class TreeRun:
    """One run of the tree workload for one tool."""

    ingest: list[Measure] = field(default_factory=list)
    store_after: list[int] = field(default_factory=list)
    restore: Measure | None = None
    restore_check: str = "not run"
    reingest: Measure | None = None
    store_after_reingest: int = 0
    gc: Measure | None = None
    gc_note: str = ""  # why there is no GC measure (tool without GC)
    store_after_gc: int = 0
    gc_check: str = "not run"
    # Store size of a fresh store that only ever held the last version (what a perfect
    # GC would leave), measured when the GC ran.
    store_last_alone: int = 0
    error: str = ""


def stage_version(src: Path, stage: Path) -> None:
    """Put a hard-linked copy of src at stage/tree (every tool reads the same path)."""
    tree = stage / "tree"
    if tree.exists():
        shutil.rmtree(tree)
    stage.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(src), str(tree)], check=True)


# Size in MiB of the fresh ext4 image (made and loop-mounted for each restore) that
# restores go into; 0 restores into the work directory. Set by --restore-fs.
RESTORE_FS_MIB = 0


@contextlib.contextmanager
def restore_target(work: Path):
    """An empty directory to restore into, removed afterwards. With --restore-fs it is
    on a freshly made ext4 file system, so every tool's restore starts from the same
    state: on a long-used file system, inode allocation depends on what was deleted in
    the last minutes (see BENCHMARKS.md, "Restore")."""
    if not RESTORE_FS_MIB:
        target = work / "restore"
        target.mkdir()
        try:
            yield target
        finally:
            shutil.rmtree(target, ignore_errors=True)
        return
    image, mnt = work / "restore.img", work / "restore-fs"
    with open(image, "wb") as f:
        f.truncate(RESTORE_FS_MIB << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        target = mnt / "restore"
        target.mkdir()
        yield target
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        mnt.rmdir()
        image.unlink()


def tree_run(tool: T.Tool, ds: datasets.Dataset, work: Path, runner: Runner) -> TreeRun:
    shutil.rmtree(work, ignore_errors=True)
    store, stage = work / "store", work / "stage"
    work.mkdir(parents=True)
    env = tool.setup_env(work)
    r = TreeRun()
    m = runner.run(tool.init(store), env)
    if not m.ok:
        r.error = "init failed: " + m.error
        return r
    for path, label in zip(ds.versions, ds.labels):
        stage_version(path, stage)
        m = runner.run(tool.ingest(store, stage, label), env)
        r.ingest.append(m)
        r.store_after.append(store_size(tool, store, stage))
        if not m.ok:
            r.error = f"ingest {label} failed: {m.error}"
            return r
    with restore_target(work) as target:
        cmds, restored = tool.restore(store, stage, ds.labels[-1], target)
        r.restore = runner.run(cmds, env)
        if r.restore.ok:
            r.restore_check = verify.compare(stage / "tree", restored)
        else:
            r.restore_check = "FAIL: " + r.restore.error
    runner.log(f"{tool.name} restore check: {r.restore_check}")
    r.reingest = runner.run(tool.ingest(store, stage, ds.labels[-1] + "-again"), env)
    r.store_after_reingest = store_size(tool, store, stage)
    if r.reingest.ok:
        gc_run(tool, store, stage, ds.labels[-1] + "-again", env, runner, r)
    if r.gc is not None and r.gc.ok:
        r.store_last_alone = last_alone_size(tool, work, ds.labels[-1], runner)
    if isinstance(tool, T.Vt):
        runner.log(runner.run(T.vt_info(tool.path, store), env).captured)
    shutil.rmtree(work, ignore_errors=True)
    return r


def gc_run(tool: T.Tool, store: Path, stage: Path, last: str, env: dict,
           runner: Runner, r: TreeRun) -> None:
    """Forget every backup but the newest (the re-ingest, LAST), reclaim the space, then
    restore the newest again: a GC that loses live data fails that check."""
    cmds = tool.gc(store, stage)
    if cmds is None:
        r.gc_note = tool.gc_unsupported()
        return
    r.gc = runner.run(cmds, env)
    r.store_after_gc = store_size(tool, store, stage)
    if not r.gc.ok:
        r.gc_check = "FAIL: " + r.gc.error
        return
    with restore_target(store.parent) as target:
        cmds, restored = tool.restore(store, stage, last, target)
        m = runner.run(cmds, env)
        r.gc_check = verify.compare(stage / "tree", restored) if m.ok else "FAIL: " + m.error
    runner.log(f"{tool.name} restore check after GC: {r.gc_check}")


def last_alone_size(tool: T.Tool, work: Path, label: str, runner: Runner) -> int:
    """Size of a fresh store into which only the last version (still staged at
    WORK/stage/tree) was ingested; 0 when that fails. Not timed."""
    base = work / "alone"
    store, stage = base / "store", base / "stage"
    stage.mkdir(parents=True)
    os.rename(work / "stage" / "tree", stage / "tree")
    env = tool.setup_env(base)
    try:
        ok = runner.run(tool.init(store), env).ok and runner.run(
            tool.ingest(store, stage, label), env).ok
        return store_size(tool, store, stage) if ok else 0
    finally:
        os.rename(stage / "tree", work / "stage" / "tree")
        shutil.rmtree(base, ignore_errors=True)


def store_size(tool: T.Tool, store: Path, stage: Path) -> int:
    # vt's archive file (the list of revisions) lives beside the tree; count it too.
    extra = dir_bytes(stage / "tree.vt") if (stage / "tree.vt").exists() else 0
    return dir_bytes(store) + extra


# --------------------------------------------------------------------------------------
# Single-file workload
# --------------------------------------------------------------------------------------


def single_runs(vt_path, vt_ok, file: Path, work: Path, runner: Runner) -> dict:
    """{operation label: Measure} for one run."""
    out = {}
    if shutil.which("b3sum"):
        out["hash: b3sum --num-threads 2"] = runner.run(T.b3sum_cmd(file), {})
    out["read: cat FILE > /dev/null"] = runner.run(T.cat_cmd(file), {})
    if vt_ok:
        store = work / "vt-single"
        shutil.rmtree(store, ignore_errors=True)
        runner.run(T.vt_init(vt_path, store), {})
        save = runner.run(T.vt_save(vt_path, store, file), {})
        out["hash: vt save"] = save
        ref = (save.captured.strip().splitlines() or [""])[-1].strip()
        if save.ok and ref:
            out["read: vt cat REF > /dev/null"] = runner.run(T.vt_cat(vt_path, store, ref), {})
        shutil.rmtree(store, ignore_errors=True)
    return out


# --------------------------------------------------------------------------------------
# Setup: peers, datasets
# --------------------------------------------------------------------------------------


def install_missing(tools: list[T.Tool], runner: Runner) -> None:
    pkgs = [t.package for t in tools if t.package and not t.available()[0]]
    if not shutil.which("b3sum"):
        pkgs.append("b3sum")
    if not os.access(TIME_BIN, os.X_OK):
        pkgs.append("time")
    if not pkgs:
        return
    runner.log(f"installing with apt-get: {' '.join(pkgs)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], env=env, stdout=runner.log_file,
                   stderr=runner.log_file)
    for p in pkgs:  # one at a time: one missing package must not block the others
        subprocess.run(["apt-get", "install", "-y", "-q", p], env=env,
                       stdout=runner.log_file, stderr=runner.log_file)
    runner.use_time = os.access(TIME_BIN, os.X_OK)


def build_vt(runner: Runner) -> bool:
    """Build the release vt of this checkout, so the measured commit is the one reported."""
    print("building vt (cargo build --release -p vt-cli)", file=sys.stderr, flush=True)
    r = subprocess.run(["cargo", "build", "--release", "-p", "vt-cli"], cwd=REPO,
                       stdout=runner.log_file, stderr=runner.log_file)
    if r.returncode != 0:
        runner.log("cargo build --release -p vt-cli failed; target/release/vt is not used")
    return r.returncode == 0


MODES = {
    #         runs, kernel versions, synthetic (versions, bytes), single file bytes
    "smoke": (1, 0, (3, 2 << 20), 8 << 20),
    "quick": (1, 3, None, 256 << 20),
    "full": (5, 6, (6, 256 << 20), 1 << 30),
}


def build_datasets(args, cache: Path, runner: Runner) -> list[datasets.Dataset]:
    runs_, kh, synth, _single = MODES[args.mode]
    if args.kernel_versions is not None:
        kh = args.kernel_versions
    out = []
    if kh:
        ds = datasets.fetch_kernel_headers(cache, kh, args.offline, runner.log)
        if ds:
            out.append(ds)
    if (synth or args.synthetic) and not args.no_synthetic:
        nv, nbytes = synth or (3, 64 << 20)
        spec = datasets.SynthSpec(seed=args.seed, versions=nv, bytes_per_version=nbytes)
        if args.mode == "smoke":
            spec.max_file = 256 << 10
        out.append(datasets.generate_synthetic(cache, spec, runner.log))
    return out


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    for m in MODES:
        g.add_argument(f"--{m}", dest="mode", action="store_const", const=m)
    ap.set_defaults(mode="quick")
    ap.add_argument("--out", type=Path, help="write the markdown section here (else stdout)")
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("VT_BENCH_DATA", REPO / "target" / "bench-data")),
                    help="dataset cache (default $VT_BENCH_DATA or target/bench-data)")
    ap.add_argument("--work", type=Path, help="scratch directory (default DATA/work)")
    ap.add_argument("--vt", help="vt binary (default $VT_BIN, target/release/vt, PATH)")
    ap.add_argument("--no-build", action="store_true",
                    help="do not build vt (quick/full build `cargo build --release -p vt-cli` "
                    "unless --vt or $VT_BIN names a binary)")
    ap.add_argument("--tools", help="comma-separated subset of vt,restic,borg,casync,bup")
    ap.add_argument("--runs", type=int, help="override the number of runs")
    ap.add_argument("--seed", type=int, default=1, help="synthetic data seed")
    ap.add_argument("--synthetic", action="store_true", help="add the synthetic dataset")
    ap.add_argument("--kernel-versions", type=int,
                    help="number of kernel-headers versions (0 skips the dataset; "
                    "overrides the mode's count)")
    ap.add_argument("--single-mib", type=int, help="size of the single file in MiB")
    ap.add_argument("--no-single", action="store_true", help="skip the single-file case")
    ap.add_argument("--no-synthetic", action="store_true",
                    help="skip the synthetic dataset (e.g. --full on kernel headers only)")
    ap.add_argument("--restore-fs", type=int, default=0, metavar="MIB",
                    help="restore into a fresh ext4 image of MIB MiB, loop-mounted (needs root)")
    ap.add_argument("--no-install", action="store_true", help="never run apt-get install")
    ap.add_argument("--offline", action="store_true", help="use only cached datasets")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo the log to stderr")
    args = ap.parse_args(argv)
    if args.mode == "smoke":
        args.no_install = args.offline = args.no_build = True
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    global RESTORE_FS_MIB
    RESTORE_FS_MIB = args.restore_fs
    cache = args.data.resolve()
    work = (args.work or cache / "work").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    runner = Runner(work / "bench.log", args.verbose)
    print(f"log: {runner.log_path}", file=sys.stderr)

    build = not (args.no_build or args.vt or os.environ.get("VT_BIN"))
    if build and not build_vt(runner):
        vt_path = shutil.which("vt")  # never measure a stale target/release/vt
    else:
        vt_path = T.find_vt(args.vt, REPO)
    tools = T.all_tools(vt_path)
    if args.tools:
        keep = set(args.tools.split(","))
        tools = [t for t in tools if t.name in keep]
    if not args.no_install:
        install_missing(tools, runner)
    status = {t.name: t.available() for t in tools}
    active = [t for t in tools if status[t.name][0]]
    for t in tools:
        runner.log(f"{t.name}: {'available' if status[t.name][0] else status[t.name][1]}")

    runs = args.runs or MODES[args.mode][0]
    results = {}
    for ds in build_datasets(args, cache, runner):
        per_tool: dict[str, list[TreeRun]] = {t.name: [] for t in active}
        for i in range(runs):
            # Rotate the order so no tool always runs first (cold cache) or last.
            order = active[i % max(1, len(active)):] + active[: i % max(1, len(active))]
            for t in order:
                print(f"[{ds.name}] run {i + 1}/{runs}: {t.name}", file=sys.stderr, flush=True)
                per_tool[t.name].append(tree_run(t, ds, work / t.name, runner))
        results[ds.name] = (ds, per_tool)

    single = None
    single_bytes = args.single_mib << 20 if args.single_mib else MODES[args.mode][3]
    if not args.no_single:
        vt = next((t for t in tools if isinstance(t, T.Vt)), None)
        if vt and vt.path:
            subs = T.vt_subcommands(vt.path)
            missing = [s for s in T.VT_FILE_SUBCOMMANDS if s not in subs]
            vt_why = f"binary lacks: {', '.join(missing)}" if missing else ""
        else:
            vt_why = "not among --tools" if vt is None else "no vt binary"
        vt_ok = not vt_why
        file = datasets.single_file(cache, single_bytes, args.seed, runner.log)
        samples = [single_runs(vt.path if vt else None, vt_ok, file, work, runner)
                   for _ in range(runs)]
        single = (file, single_bytes, samples, vt_why)

    text = report.render(args, runs, tools, status, results, single, REPO)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    bad = [n for _ds, pt in results.values() for n, rs in pt.items()
           if any(not r.restore_check.startswith("ok")
                  or (r.gc and not r.gc_check.startswith("ok")) for r in rs)]
    if bad:
        print(f"restore check failed for: {', '.join(sorted(set(bad)))}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
