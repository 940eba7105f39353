#!/usr/bin/env bash
# Same-run comparison of `vt save` / `vt cat` of one big incompressible file against
# their hardware peers, `b3sum --num-threads 2` (hashing) and `cat FILE > /dev/null`.
#
#   benches/savecat/run.sh [-n ROUNDS] [-s MIB] [-d DIR] [-f FILE] VT [VT...]
#
# -f measures an existing FILE (read only) instead of making a random one in DIR.
# Each round runs every tool once, interleaved, on a warm page cache; the table gives
# medians of wall, user and sys seconds (GNU time), and each vt's ratio to its peer
# in throughput terms (peer wall / vt wall). Several VT binaries (e.g. before/after)
# are measured in the same rounds, in reversed order every other round (the first
# save after a peer runs against a fuller page cache). A third peer, `dd ... conv=fdatasync`,
# copies FILE into DIR and syncs it through the page cache; a fourth, the same with
# `oflag=direct` (8 MiB writes, one at a time), is the reference for a save that writes around
# the page cache as vt does. A fifth, when fio is installed, writes as many bytes directly
# with 256 KiB requests, 8 in flight (among the fastest patterns measured on these virtio disks), then
# fsyncs: how fast this disk can take the bytes at all.
# `vt cat` is timed on a warm cache: the store's segments are read once (untimed) after
# the save, since a save that writes around the page cache (O_DIRECT) leaves them cold.
# Needs b3sum and /usr/bin/time.
set -euo pipefail
rounds=5 mib=1024 dir=${TMPDIR:-/tmp}/vt-savecat file=
while getopts "n:s:d:f:" o; do
  case $o in n) rounds=$OPTARG ;; s) mib=$OPTARG ;; d) dir=$OPTARG ;; f) file=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n 2,17p "$0"; exit 2; }
mkdir -p "$dir"
if [ -n "$file" ]; then
  mib=$(($(stat -L -c %s "$file") >> 20))
else
  file=$dir/input
  if [ "$(stat -c %s "$file" 2>/dev/null || echo 0)" != $((mib << 20)) ]; then
    head -c $((mib << 20)) /dev/urandom >"$file"
  fi
fi
log=$dir/times
: >"$log"
t() { # label command...
  local label=$1; shift
  /usr/bin/time -f "$label %e %U %S" -a -o "$log" "$@"
}
for r in $(seq "$rounds"); do
  cat "$file" >/dev/null
  t b3sum b3sum --num-threads 2 "$file" >/dev/null
  t cat cat "$file" >/dev/null
  rm -f "$dir/ddcopy"
  sync
  t ddsync dd if="$file" of="$dir/ddcopy" bs=4M conv=fdatasync status=none
  rm -f "$dir/ddcopy"
  sync
  t dddirect dd if="$file" of="$dir/ddcopy" bs=8M oflag=direct conv=fdatasync status=none
  rm -f "$dir/ddcopy"
  if command -v fio >/dev/null; then
    sync
    t fio fio --name=floor --filename="$dir/fiocopy" --size="${mib}M" --bs=256k --rw=write \
      --direct=1 --ioengine=libaio --iodepth=8 --end_fsync=1 --output=/dev/null
    rm -f "$dir/fiocopy"
  fi
  order=$(seq $#)
  if [ $((r % 2)) = 0 ]; then order=$(seq $# -1 1); fi
  for i in $order; do
    vt=${!i}
    st=$dir/store$i
    rm -rf "$st"
    "$vt" -S "$st" init >/dev/null
    sync
    t "save$i" "$vt" -S "$st" save "$file" >"$dir/ref$i"
    cat "$st"/data/* >/dev/null # warm cache for cat, as the target says
    t "vtcat$i" "$vt" -S "$st" cat "$(cat "$dir/ref$i")" >/dev/null
  done
done
python3 - "$log" "$mib" "$@" <<'PY'
import statistics, sys
log, mib, vts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rows = {}
for line in open(log):
    parts = line.split()
    if len(parts) == 4 and parts[0].isidentifier():
        rows.setdefault(parts[0], []).append([float(x) for x in parts[1:]])
med = {k: [statistics.median(c) for c in zip(*v)] for k, v in rows.items()}
print(f"| command | runs | wall s | user s | sys s | MiB/s | vs peer |")
print("| --- | --- | --- | --- | --- | --- | --- |")
def row(name, key, peer=None):
    w, u, s = med[key]
    ratio = f"{med[peer][0] / w:.2f}" if peer else ""
    print(f"| {name} | {len(rows[key])} | {w:.2f} | {u:.2f} | {s:.2f} | {mib / w:.0f} | {ratio} |")
row("b3sum --num-threads 2", "b3sum")
row("cat > /dev/null", "cat")
row("dd conv=fdatasync (disk floor)", "ddsync")
row("dd oflag=direct conv=fdatasync", "dddirect")
if "fio" in med:
    row("fio 256 KiB direct writes, 8 in flight, fsync", "fio")
for i, vt in enumerate(vts, 1):
    row(f"vt save ({vt})", f"save{i}", "b3sum")
    row(f"vt cat ({vt})", f"vtcat{i}", "cat")
print()
print(f"- load average at the end: {open('/proc/loadavg').read().split()[:3]}")
print("- vt cat runs after the store's segments were read once (warm cache)")
for i, vt in enumerate(vts, 1):
    print(f"- vt save ({vt}) / disk floor: dd wall / save wall = {med['ddsync'][0] / med[f'save{i}'][0]:.2f}, "
          f"direct dd wall / save wall = {med['dddirect'][0] / med[f'save{i}'][0]:.2f}"
          + (f", fio wall / save wall = {med['fio'][0] / med[f'save{i}'][0]:.2f}; "
             f"b3sum wall / fio wall (the best save ratio this disk allows) = {med['b3sum'][0] / med['fio'][0]:.2f}"
             if "fio" in med else ""))
PY
