"""Markdown report: machine, commit, tools, one summary table per dataset, per-version
detail, vt/peer ratios, the single-file case, and the exact commands."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from pathlib import Path

import tools as T

SUMMARY_COLUMNS = [
    "tool",
    "ingest total s",
    "ingest MB/s",
    "ingest CPU s",
    "ingest peak RSS MiB",
    "store MB",
    "logical/store",
    "restore s",
    "restore MB/s",
    "restore peak RSS MiB",
    "restore check",
    "re-ingest s",
    "re-ingest growth MB",
    "prune/GC s",
    "prune/GC peak RSS MiB",
    "store after GC MB",
    "restore after GC",
]

RATIO_METRICS = [
    ("ingest total", "ingest_s"),
    ("store size", "store"),
    ("restore", "restore_s"),
    ("re-ingest", "reingest_s"),
    ("ingest peak RSS", "ingest_rss"),
    ("restore peak RSS", "restore_rss"),
    ("prune/GC", "gc_s"),
    ("prune/GC peak RSS", "gc_rss"),
    ("store after GC", "gc_store"),
]

# The project's targets for vt's prune/GC time over a peer's (vt / peer at most this).
GC_TARGETS = {"restic": 0.3, "borg": 0.5}
# After forgetting all but the last version and GC, vt's store at most this times the size
# of a store that only ever held the last version.
GC_SPACE_TARGET = 1.1


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=2):
    if x is None:
        return "—"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def sh(argv) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine(data_dir: Path) -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = next(int(line.split()[1]) for line in open("/proc/meminfo")
                       if line.startswith("MemTotal:"))
        mem = f"{mem_kib / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        mem = "?"
    df = sh(["df", "-hT", str(data_dir)]).splitlines()
    disk = " ".join(df[-1].split()[:3]) if len(df) > 1 else "?"
    return (f"nproc {os.cpu_count()}, memory {mem}, CPU {cpu}, kernel {platform.release()}, "
            f"disk (filesystem, type, size) {disk}")


def commit(repo: Path) -> str:
    h = sh(["git", "-C", str(repo), "rev-parse", "HEAD"]) or "unknown"
    subj = sh(["git", "-C", str(repo), "log", "-1", "--format=%s"])
    dirty = sh(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"])
    return f"`{h}` ({subj}){' with uncommitted changes' if dirty else ''}"


def summarize(runs, logical_total: int, last_bytes: int) -> dict:
    """Medians over runs of one tool's TreeRun list."""
    s = {}
    s["ingest_s"] = med([sum(m.wall for m in r.ingest) for r in runs if not r.error])
    s["ingest_cpu"] = med([sum(m.cpu for m in r.ingest) for r in runs if not r.error])
    s["ingest_rss"] = med([max(m.rss_kib for m in r.ingest) / 1024 for r in runs if r.ingest])
    s["store"] = med([r.store_after[-1] for r in runs if r.store_after and not r.error])
    s["restore_s"] = med([r.restore.wall for r in runs if r.restore and r.restore.ok])
    s["restore_rss"] = med([r.restore.rss_kib / 1024 for r in runs if r.restore])
    s["reingest_s"] = med([r.reingest.wall for r in runs if r.reingest and r.reingest.ok])
    s["growth"] = med([r.store_after_reingest - r.store_after[-1]
                       for r in runs if r.reingest and r.store_after])
    checks = [r.error or r.restore_check for r in runs]
    bad = [c for c in checks if not c.startswith("ok")]
    s["check"] = bad[0] if bad else checks[0]
    s["valid"] = not bad
    summarize_gc(runs, s)
    s["ingest_mbs"] = logical_total / 1e6 / s["ingest_s"] if s["ingest_s"] else None
    s["restore_mbs"] = last_bytes / 1e6 / s["restore_s"] if s["restore_s"] else None
    s["ratio"] = logical_total / s["store"] if s["store"] else None
    s["per_version"] = [
        (med([r.ingest[i].wall for r in runs if len(r.ingest) > i]),
         med([r.store_after[i] for r in runs if len(r.store_after) > i]))
        for i in range(max((len(r.ingest) for r in runs), default=0))
    ]
    return s


def summarize_gc(runs, s: dict) -> None:
    """The prune/GC medians; all None unless every run's GC ran and its restore passed."""
    s["gc_s"] = s["gc_rss"] = s["gc_store"] = s["gc_before"] = s["gc_alone"] = None
    done = [r for r in runs if not r.error and r.reingest and r.reingest.ok]
    notes = [r.gc_note for r in done if r.gc is None]
    if not done:
        s["gc_check"] = "not run"
    elif notes:
        s["gc_check"] = notes[0]
    else:
        bad = [r.gc_check for r in done if not r.gc_check.startswith("ok")]
        s["gc_check"] = bad[0] if bad else done[0].gc_check
        if not bad:
            s["gc_s"] = med([r.gc.wall for r in done])
            s["gc_rss"] = med([r.gc.rss_kib / 1024 for r in done])
            s["gc_store"] = med([r.store_after_gc for r in done])
            s["gc_before"] = med([r.store_after_reingest for r in done])
            s["gc_alone"] = med([r.store_last_alone for r in done if r.store_last_alone])


def gc_cells(s) -> list[str]:
    if s["gc_s"] is None and not s["gc_check"].startswith("FAIL"):
        return [s["gc_check"], "", "", ""]  # no GC: n/a, not supported, not run
    if s["gc_s"] is None:
        return ["INVALID", "", "", s["gc_check"]]
    return [fmt(s["gc_s"]), fmt(s["gc_rss"], 0), fmt(s["gc_store"] / 1e6, 1), s["gc_check"]]


def row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"


def table(header, rows) -> list[str]:
    return [row(header), row(["---"] * len(header))] + [row(r) for r in rows]


def render(args, runs, tools, status, results, single, repo: Path) -> str:
    out = ["## Macro benchmark: vt side by side with restic, borg, casync and bup", ""]
    out += [
        f"- Mode: `{args.mode}`, {runs} run(s) per tool; every number is the median over runs.",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Commit measured: {commit(repo)}",
        f"- Machine: {machine(args.data.resolve())}",
        "- Peak RSS: `/usr/bin/time -v` (largest over an operation's commands); "
        "CPU = user + system seconds. The page cache is not dropped: reads are warm.",
        "- Sizes are apparent bytes of every file in the store (1 MB = 10^6 bytes); "
        "logical/store = bytes of all versions ingested / store size.",
        "- Restores go into " + (
            f"a freshly made {args.restore_fs} MiB ext4 image (loop-mounted, journaled) each time."
            if getattr(args, "restore_fs", 0) else "the work directory on the disk above."),
        "",
        "### Tools",
        "",
    ]
    out += table(["tool", "version", "status"], [
        [t.name, t.version() if status[t.name][0] else "—",
         "measured" if status[t.name][0] else f"{t.name}: not available ({status[t.name][1]})"]
        for t in tools])
    vt_status = status.get("vt")
    if vt_status and not vt_status[0]:
        out += ["", f"vt: not available ({vt_status[1]})"]
    for name, (ds, per_tool) in results.items():
        out += render_dataset(ds, per_tool, vt_status)
    if single:
        out += render_single(*single)
    out += render_commands(tools, status)
    return "\n".join(out) + "\n"


def render_dataset(ds, per_tool, vt_status) -> list[str]:
    from datasets import tree_stats

    sizes = [tree_stats(v)[1] for v in ds.versions]
    logical, last = sum(sizes), sizes[-1]
    out = ["", f"### Dataset: {ds.name}", "", ds.description + ".", ""]
    sums = {name: summarize(runs, logical, last) for name, runs in per_tool.items()}
    rows = []
    for name, s in sums.items():
        rows.append([
            name + ("" if s["valid"] else " (INVALID)"), fmt(s["ingest_s"]),
            fmt(s["ingest_mbs"], 1), fmt(s["ingest_cpu"]), fmt(s["ingest_rss"], 0),
            fmt(s["store"] / 1e6 if s["store"] else None, 1), fmt(s["ratio"]),
            fmt(s["restore_s"]), fmt(s["restore_mbs"], 1), fmt(s["restore_rss"], 0),
            s["check"], fmt(s["reingest_s"]),
            fmt(s["growth"] / 1e6 if s["growth"] is not None else None, 3),
        ] + gc_cells(s))
    if ds.ideal_bytes:
        rows.append(["ideal (each distinct byte once, uncompressed)", "", "", "", "",
                     fmt(ds.ideal_bytes / 1e6, 1), fmt(logical / ds.ideal_bytes), "", "", "",
                     "", "", "", "", "", "", ""])
    out += ["#### Summary", ""] + table(SUMMARY_COLUMNS, rows)
    out += ["", f"Logical bytes ingested: {logical / 1e6:.1f} MB over {len(sizes)} versions; "
            f"the restored (last) version is {last / 1e6:.1f} MB.", ""]
    out += ["#### Per version: ingest seconds / store MB after it", ""]
    out += table(["tool"] + ds.labels, [
        [name] + [f"{fmt(t)} / {fmt(b / 1e6 if b is not None else None, 1)}"
                  for t, b in s["per_version"]]
        for name, s in sums.items()])
    out += render_gc_space(sums)
    out += ["", "#### vt / peer ratios", ""]
    vt = sums.get("vt")
    if vt_status is None:
        out.append("vt: not measured (not among --tools).")
        return out
    if not vt_status[0]:
        out.append(f"vt: not available ({vt_status[1]}).")
        return out
    if not vt or not vt["valid"]:
        out.append("vt: result invalid (see its restore check): no ratios.")
        return out
    out.append("vt's value divided by the peer's: below 1 means vt is faster, smaller or leaner.")
    out.append("")
    peers = [(n, s) for n, s in sums.items() if n != "vt" and s["valid"]]
    out += table(["peer"] + [m for m, _ in RATIO_METRICS], [
        [n] + [fmt(vt[k] / s[k] if vt[k] is not None and s[k] else None) for _, k in RATIO_METRICS]
        for n, s in peers])
    out += gc_targets(vt, dict(peers))
    return out


def mb(x):
    return fmt(x / 1e6 if x is not None else None, 1)


def render_gc_space(sums: dict) -> list[str]:
    """Store sizes around prune/GC, against a fresh store of the last version alone (what
    a GC that left no dead space would come to)."""
    rows = [[name, mb(s["gc_before"]), mb(s["gc_store"]), mb(s["gc_alone"]),
             fmt(s["gc_store"] / s["gc_alone"] if s["gc_store"] and s["gc_alone"] else None)]
            for name, s in sums.items() if s["gc_s"] is not None]
    if not rows:
        return []
    out = ["", "#### Space after prune/GC", "",
           "Before: after the re-ingest. Last alone: a fresh store into which only the last "
           "version was ingested.", ""]
    out += table(["tool", "store before GC MB", "store after GC MB", "last alone MB",
                  "after GC / last alone"], rows)
    vt = sums.get("vt")
    if vt and vt["gc_store"] and vt["gc_alone"]:
        ratio = vt["gc_store"] / vt["gc_alone"]
        verdict = "met" if ratio <= GC_SPACE_TARGET else "missed"
        out += ["", f"- vt store after GC / last version alone ≤ {GC_SPACE_TARGET}: "
                f"{ratio:.2f}, {verdict}"]
    return out


def gc_targets(vt: dict, peers: dict) -> list[str]:
    """One line per peer with a prune/GC time target: the ratio and whether it is met."""
    out = []
    for name, limit in GC_TARGETS.items():
        peer = peers.get(name)
        if peer is None:
            continue
        if vt["gc_s"] is None or not peer["gc_s"]:
            why = vt["gc_check"] if vt["gc_s"] is None else peer["gc_check"]
            out.append(f"- prune/GC target vt / {name} ≤ {limit}: not measured ({why})")
            continue
        ratio = vt["gc_s"] / peer["gc_s"]
        verdict = "met" if ratio <= limit else "missed"
        out.append(f"- prune/GC target vt / {name} ≤ {limit}: {ratio:.2f}, {verdict}")
    return [""] + out if out else []


def render_single(file: Path, size: int, samples, vt_why: str) -> list[str]:
    out = ["", f"### Single file: {size >> 20} MiB incompressible", ""]
    ops = {}
    for sample in samples:
        for label, m in sample.items():
            ops.setdefault(label, []).append(m)
    rows = []
    meds = {}
    for label, ms in ops.items():
        ok = [m for m in ms if m.ok]
        t = med([m.wall for m in ok])
        meds[label] = t
        rows.append([label, fmt(t, 3), fmt(size / 1e6 / t if t else None, 0),
                     fmt(med([m.cpu for m in ok])), fmt(med([m.rss_kib / 1024 for m in ok]), 0),
                     "ok" if len(ok) == len(ms) else ms[0].error])
    out += table(["operation", "median s", "MB/s", "CPU s", "peak RSS MiB", "status"], rows)
    out.append("")
    if vt_why:
        out.append(f"vt: not available ({vt_why}).")
        return out
    pairs = [("vt save / b3sum", "hash: vt save", "hash: b3sum --num-threads 2"),
             ("vt cat / cat", "read: vt cat REF > /dev/null", "read: cat FILE > /dev/null")]
    for name, a, b in pairs:
        if meds.get(a) and meds.get(b):
            out.append(f"- {name} (time): {meds[a] / meds[b]:.2f}")
    return out


def render_commands(tools, status) -> list[str]:
    store, stage, target = Path("/STORE"), Path("/STAGE"), Path("/TARGET")
    out = ["", "### Exact commands", "",
           "The version being ingested is a hard-linked copy at STAGE/tree (the same path for "
           "every version and tool); commands run in STAGE unless a `cd` is shown; each "
           "restore goes into an empty TARGET and is compared with the source by SHA-256 "
           "of every file, symlink targets and the set of paths (a mismatch invalidates "
           "the tool's result). Re-ingest runs the ingest command again on the unchanged "
           "last tree. Prune/GC then forgets every backup but that newest one and reclaims "
           "the space; the newest is restored and checked again (a mismatch invalidates the "
           "GC result). LABEL is the version label.", ""]
    for t in tools:
        if t.name == "vt" and not status["vt"][0]:
            t = T.Vt("vt")
        env = " ".join(f"{k}=…" for k in t.env)
        if status[t.name][0]:
            gc = t.gc(store, stage)
        elif t.name == "vt":
            gc = T.vt_forget("vt", store, stage, 1) + T.vt_gc("vt", store)
        else:
            gc = None
        cmds = [("init", t.init(store)), ("ingest", t.ingest(store, stage, "LABEL")),
                ("restore", t.restore(store, stage, "LABEL", target)[0])]
        if gc:
            cmds.append(("prune/GC", gc))
        out.append(f"- **{t.name}**" + (f" (environment: {env})" if env else ""))
        for what, cs in cmds:
            shown = " && ".join(
                (f"cd {c.cwd} && " if c.cwd and c.cwd != stage else "") + c.shown() for c in cs)
            out.append(f"  - {what}: `{shown}`")
        if not gc:
            out.append(f"  - prune/GC: {t.gc_unsupported() if status[t.name][0] else '—'}")
    out += ["- **single file**: `vt -S STORE save FILE` (prints REF), "
            "`vt -S STORE cat REF > /dev/null`, `b3sum --num-threads 2 FILE`, "
            "`cat FILE > /dev/null`"]
    return out
