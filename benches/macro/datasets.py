"""Datasets for the macro benchmark.

Every dataset is a list of version trees (directories) on disk, built once into the cache
directory and reused, so a second run works offline:

* ``kernel-headers``: successive ``linux-headers-6.1.0-N-common`` Debian packages, fetched
  with ``apt-get download`` and unpacked with ``dpkg -x``. The highest N that the package
  index offers are used, oldest first; the exact package versions go into the report.
* ``synthetic``: a seeded generator (``random.Random(seed)``): random (incompressible) and
  text-like (compressible) files; each later version is an edited copy of the one before,
  so the ideal deduplicated size (every distinct byte stored once) is known exactly.
* a single incompressible file for the single-file case.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

KH_PATTERN = re.compile(r"^linux-headers-6\.1\.0-(\d+)-common$")


@dataclass
class Dataset:
    """A named series of version trees, oldest first."""

    name: str
    versions: list[Path]
    labels: list[str]
    description: str
    # Ideal deduplicated size in bytes (each distinct byte once, before compression),
    # when the generator knows it.
    ideal_bytes: int | None = None
    notes: list[str] = field(default_factory=list)


def tree_stats(root: Path) -> tuple[int, int]:
    """Return (regular files, bytes of regular files) under root, without following links."""
    files = size = 0
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            st = os.lstat(os.path.join(dirpath, n))
            if os.path.isfile(os.path.join(dirpath, n)) and not os.path.islink(
                os.path.join(dirpath, n)
            ):
                files += 1
                size += st.st_size
    return files, size


# --------------------------------------------------------------------------------------
# Kernel headers from Debian
# --------------------------------------------------------------------------------------


def _search_kernel_headers() -> list[int]:
    out = subprocess.run(
        ["apt-cache", "search", "--names-only", r"^linux-headers-6\.1\.0-[0-9]+-common$"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    ns = []
    for line in out.splitlines():
        m = KH_PATTERN.match(line.split(" ", 1)[0])
        if m:
            ns.append(int(m.group(1)))
    return sorted(set(ns))


def available_kernel_header_ns(log) -> list[int]:
    """The N of every linux-headers-6.1.0-N-common package the apt index offers, sorted."""
    ns = _search_kernel_headers()
    if not ns:
        log("apt-cache found no linux-headers-6.1.0-N-common; running apt-get update")
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
        ns = _search_kernel_headers()
    return ns


def cached_kernel_header_ns(cache: Path) -> list[int]:
    """The N already unpacked in the cache (usable without network or apt)."""
    root = cache / "kernel-headers"
    if not root.is_dir():
        return []
    ns = []
    for d in root.iterdir():
        m = re.match(r"^(\d+)$", d.name)
        if m and (d / ".complete").exists():
            ns.append(int(m.group(1)))
    return sorted(ns)


def fetch_kernel_headers(cache: Path, count: int, offline: bool, log) -> Dataset | None:
    """Fetch and unpack the newest `count` header packages (reusing the cache)."""
    root = cache / "kernel-headers"
    root.mkdir(parents=True, exist_ok=True)
    have = cached_kernel_header_ns(cache)
    if offline:
        ns = have[-count:]
    else:
        avail = available_kernel_header_ns(log)
        ns = avail[-count:] if len(avail) >= count else sorted(set(avail) | set(have))[-count:]
    if len(ns) < min(count, 2):
        log(f"kernel-headers: only {len(ns)} versions available; skipped")
        return None
    versions, labels, debs = [], [], []
    for n in ns:
        d = root / str(n)
        pkg = f"linux-headers-6.1.0-{n}-common"
        if not (d / ".complete").exists():
            if offline:
                log(f"kernel-headers: {pkg} not cached and offline; skipped")
                return None
            log(f"fetching {pkg}")
            shutil.rmtree(d, ignore_errors=True)
            (d / "deb").mkdir(parents=True)
            r = subprocess.run(
                ["apt-get", "download", pkg], cwd=d / "deb", capture_output=True, text=True
            )
            if r.returncode != 0:
                log(f"apt-get download {pkg} failed: {r.stderr.strip()[-300:]}")
                return None
            deb = next((d / "deb").glob("*.deb"))
            subprocess.run(["dpkg", "-x", str(deb), str(d / "x")], check=True)
            (d / ".complete").write_text(deb.name + "\n")
        debs.append((d / ".complete").read_text().strip())
        tree = d / "x" / "usr" / "src" / pkg
        versions.append(tree)
        labels.append(f"6.1.0-{n}")
    files, size = tree_stats(versions[-1])
    return Dataset(
        name="kernel-headers",
        versions=versions,
        labels=labels,
        description=(
            f"{len(ns)} successive linux-headers-6.1.0-N-common trees "
            f"(last: {files} files, {size / 1e6:.1f} MB); packages: {', '.join(debs)}"
        ),
    )


# --------------------------------------------------------------------------------------
# Seeded synthetic data
# --------------------------------------------------------------------------------------

# Random bytes map to lowercase letters, spaces and newlines: text-like, compressible
# (about 4.4 bits per byte), with no long repeats, so it does not dedup by accident.
_TEXT_TABLE = bytes(
    (ord(" ") if b % 7 == 0 else ord("\n") if b % 61 == 1 else ord("a") + (b % 26))
    for b in range(256)
)


def _content(rng: random.Random, n: int, text: bool) -> bytes:
    data = rng.randbytes(n)
    return data.translate(_TEXT_TABLE) if text else data


def _file_size(rng: random.Random, lo: int, hi: int) -> int:
    # Log-uniform: many small files, a few large ones, like real trees.
    return int(lo * (hi / lo) ** rng.random())


@dataclass
class SynthSpec:
    """Parameters of the synthetic series."""

    seed: int
    versions: int
    bytes_per_version: int
    min_file: int = 512
    max_file: int = 2 << 20
    edit_fraction: float = 0.1
    edit_bytes: int = 256
    new_files: int = 2


def generate_synthetic(cache: Path, spec: SynthSpec, log) -> Dataset:
    """Build (or reuse) the series: v1 is fresh; each later version edits a copy."""
    key = f"s{spec.seed}-v{spec.versions}-b{spec.bytes_per_version}-e{spec.edit_fraction}"
    root = cache / "synthetic" / key
    meta_path = root / "meta.json"
    if not meta_path.exists():
        log(f"generating synthetic dataset {key}")
        shutil.rmtree(root, ignore_errors=True)
        meta = _generate(root, spec)
        meta_path.write_text(json.dumps(meta, indent=1))
    meta = json.loads(meta_path.read_text())
    versions = [root / f"v{i + 1}" for i in range(spec.versions)]
    labels = [f"v{i + 1}" for i in range(spec.versions)]
    logical = sum(meta["version_bytes"])
    return Dataset(
        name="synthetic",
        versions=versions,
        labels=labels,
        description=(
            f"seed {spec.seed}: {spec.versions} versions of ~{spec.bytes_per_version / 1e6:.0f} MB "
            f"(half random, half text-like files); each version edits "
            f"{spec.edit_fraction:.0%} of files ({spec.edit_bytes}-byte insert or overwrite), "
            f"adds {spec.new_files} and deletes 1; logical {logical / 1e6:.1f} MB, ideal "
            f"deduplicated {meta['ideal_bytes'] / 1e6:.1f} MB (ratio "
            f"{logical / meta['ideal_bytes']:.2f})"
        ),
        ideal_bytes=meta["ideal_bytes"],
    )


def _generate(root: Path, spec: SynthSpec) -> dict:
    rng = random.Random(spec.seed)
    files: dict[str, tuple[bytes, bool]] = {}
    total = 0
    counter = 0
    while total < spec.bytes_per_version:
        n = _file_size(rng, spec.min_file, spec.max_file)
        text = rng.random() < 0.5
        name = f"d{counter % 16:02d}/f{counter:05d}.{'txt' if text else 'bin'}"
        files[name] = (_content(rng, n, text), text)
        total += n
        counter += 1
    ideal = total
    version_bytes = []
    for v in range(spec.versions):
        if v > 0:
            ideal += _edit(rng, files, spec, counter + v * spec.new_files)
        d = root / f"v{v + 1}"
        for name, (data, _text) in files.items():
            p = d / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        version_bytes.append(sum(len(x) for x, _ in files.values()))
    return {"ideal_bytes": ideal, "version_bytes": version_bytes, "files": len(files)}


def _edit(rng: random.Random, files: dict, spec: SynthSpec, first_new: int) -> int:
    """Edit the file set in place; return the number of new distinct bytes."""
    new = 0
    names = sorted(files)
    for name in rng.sample(names, max(1, int(len(names) * spec.edit_fraction))):
        data, text = files[name]
        k = spec.edit_bytes
        off = rng.randrange(0, max(1, len(data) - k))
        patch = _content(rng, k, text)
        if rng.random() < 0.5:
            data = data[:off] + patch + data[off:]  # insert: shifts the rest
        else:
            data = data[:off] + patch + data[off + k :]  # overwrite in place
        files[name] = (data, text)
        new += k
    del files[rng.choice(sorted(files))]
    for i in range(spec.new_files):
        n = _file_size(rng, spec.min_file, spec.max_file)
        text = rng.random() < 0.5
        name = f"d{(first_new + i) % 16:02d}/n{first_new + i:05d}.{'txt' if text else 'bin'}"
        files[name] = (_content(rng, n, text), text)
        new += n
    return new


def single_file(cache: Path, size: int, seed: int, log) -> Path:
    """An incompressible file of `size` bytes, generated once from `seed`."""
    p = cache / "single" / f"random-{seed}-{size}.bin"
    if p.exists() and p.stat().st_size == size:
        return p
    log(f"generating {size >> 20} MiB incompressible file")
    p.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    tmp = p.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        left = size
        while left:
            n = min(left, 16 << 20)
            f.write(rng.randbytes(n))
            left -= n
    tmp.rename(p)
    return p
