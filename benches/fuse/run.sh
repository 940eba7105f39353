#!/usr/bin/env bash
# Same-run comparison of `vt mount` against vt's own commands and the local filesystem.
#
#   benches/fuse/run.sh [-n ROUNDS] [-s MIB] [-f FILE] [-t TREE] [-d DIR] VT [VT...]
#
#   read   `dd if=MNT/file of=/dev/null bs=1M` on a fresh mount of an archive holding
#          FILE, vs `vt cat REF > /dev/null` of the same reference (store page cache warm)
#   write  `cp FILE MNT/` into a fresh mount of an empty archive, then `fusermount3 -u`
#          and wait for `vt mount` to exit (the revision is recorded), vs `vt save FILE`
#          into a fresh store
#   ls     `ls -lR` of TREE packed into an archive, on a fresh mount, vs `ls -lR TREE`
#          (warm); skipped without -t
#
# FILE defaults to MIB (1024) MiB of random bytes made in DIR. Rounds interleave the
# commands; the table gives median wall seconds and each mount figure's ratio to its
# peer in throughput terms (peer wall / mount wall; for ls, mount wall / ext4 wall).
# Several VT binaries (e.g. before/after) are measured in the same rounds, each
# against its own vt cat / vt save. Needs fusermount3 and /dev/fuse (root, as in CI).
set -euo pipefail
rounds=5 mib=1024 file="" tree="" dir=${TMPDIR:-/tmp}/vt-fusebench
while getopts "n:s:f:t:d:" o; do
  case $o in
  n) rounds=$OPTARG ;; s) mib=$OPTARG ;; f) file=$OPTARG ;; t) tree=$OPTARG ;;
  d) dir=$OPTARG ;; *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n 2,18p "$0"; exit 2; }
vts=()
for v in "$@"; do vts+=("$(realpath "$v")"); done
vt=${vts[0]}
mkdir -p "$dir"
dir=$(realpath "$dir")
if [ -z "$file" ]; then
  file=$dir/input
  if [ "$(stat -c %s "$file" 2>/dev/null || echo 0)" != $((mib << 20)) ]; then
    head -c $((mib << 20)) /dev/urandom >"$file"
  fi
fi
file=$(realpath "$file")
mib=$(($(stat -c %s "$file") >> 20))
mnt=$dir/mnt
log=$dir/times
: >"$log"
pid=""

cleanup() {
  if [ -n "$pid" ]; then
    fusermount3 -u -z "$mnt" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

now() { echo "$EPOCHREALTIME"; }
record() { # label start
  echo "$1 $(python3 -c "print(f'{$(now) - $2:.3f}')")" >>"$log"
}
t() { # label command...: times a command whose output goes to /dev/null
  local label=$1 s
  shift
  s=$(now)
  "$@" >/dev/null
  record "$label" "$s"
}
mount_bg() { # store archive
  "$vt" -q -S "$1" mount "$2" "$mnt" --sync-interval 0 &
  pid=$!
  local i=0
  until mountpoint -q "$mnt"; do
    i=$((i + 1))
    [ $i -lt 600 ] || { echo "mount did not appear" >&2; exit 1; }
    sleep 0.05
  done
}
unmount_wait() {
  fusermount3 -u "$mnt"
  wait "$pid"
  pid=""
}
fresh_store() { rm -rf "$1"; "$vt" -q -S "$1" init; }

# Read setup: one store holding FILE as a reference and inside an archive.
fresh_store "$dir/rstore"
mkdir -p "$dir/rsrc" "$mnt"
rm -f "$dir/rsrc/file" "$dir/r.vt"
ln "$file" "$dir/rsrc/file" 2>/dev/null || cp "$file" "$dir/rsrc/file"
"$vt" -q -S "$dir/rstore" save -a "$dir/r.vt" "$dir/rsrc" >/dev/null
ref=$("$vt" -q -S "$dir/rstore" save "$file")
if [ -n "$tree" ]; then
  fresh_store "$dir/lstore"
  rm -f "$dir/l.vt"
  "$vt" -q -S "$dir/lstore" save -a "$dir/l.vt" "$tree" >/dev/null
  ls -lR "$tree" >/dev/null
fi
"$vt" -q -S "$dir/rstore" cat "$ref" >/dev/null

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  i=0
  for vt in "${vts[@]}"; do
    i=$((i + 1))
    # read
    t "vtcat$i" "$vt" -q -S "$dir/rstore" cat "$ref"
    mount_bg "$dir/rstore" "$dir/r.vt"
    t "mntread$i" dd if="$mnt/file" of=/dev/null bs=1M status=none
    unmount_wait
    # write
    cat "$file" >/dev/null
    fresh_store "$dir/wstore"
    sync
    t "vtsave$i" "$vt" -q -S "$dir/wstore" save --no-cache "$file"
    fresh_store "$dir/wstore"
    rm -f "$dir/w.vt"
    sync
    mount_bg "$dir/wstore" "$dir/w.vt"
    s=$(now)
    cp "$file" "$mnt/file"
    unmount_wait
    record "mntwrite$i" "$s"
    [ "$(wc -l <"$dir/w.vt")" -ge 1 ] || { echo "no revision recorded" >&2; exit 1; }
    # ls -lR
    if [ -n "$tree" ]; then
      t "ext4ls$i" ls -lR "$tree"
      mount_bg "$dir/lstore" "$dir/l.vt"
      t "mntls$i" ls -lR "$mnt"
      unmount_wait
    fi
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$dir/wstore" "$dir/rsrc"

python3 - "$log" "$mib" "$@" <<'PY'
import statistics, sys
log, mib, vts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rows = {}
for line in open(log):
    k, v = line.split()
    rows.setdefault(k, []).append(float(v))
med = {k: statistics.median(v) for k, v in rows.items()}
print("| vt | operation | runs | median wall s | MiB/s | ratio | target |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for i, vt in enumerate(vts, 1):
    def row(name, key, size=True, ratio="", target=""):
        key = f"{key}{i}"
        rate = f"{mib / med[key]:.0f}" if size else ""
        print(f"| {vt} | {name} | {len(rows[key])} | {med[key]:.3f} | {rate} | {ratio} | {target} |")
    def r(a, b):
        return med[f"{a}{i}"] / med[f"{b}{i}"]
    row("vt cat REF > /dev/null", "vtcat")
    row("dd bs=1M from the mount", "mntread", ratio=f"{r('vtcat', 'mntread'):.2f}× vt cat", target="≥ 0.5×")
    row("vt save FILE (fresh store)", "vtsave")
    row("cp FILE into the mount + unmount", "mntwrite", ratio=f"{r('vtsave', 'mntwrite'):.2f}× vt save", target="≥ 0.5×")
    if f"mntls{i}" in med:
        row("ls -lR TREE (ext4, warm)", "ext4ls", size=False)
        row("ls -lR of a fresh mount", "mntls", size=False, ratio=f"{r('mntls', 'ext4ls'):.2f}× ext4 time", target="≤ 2×")
PY
