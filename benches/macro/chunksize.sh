#!/usr/bin/env bash
# Chunk-size study: packs successive linux-headers trees into one store per average
# chunk size and reports ingest time, store size and block count.
#
# usage: benches/macro/chunksize.sh [DATA_DIR] [VT_BIN] [SIZES_KIB...]
#   DATA_DIR  a dataset cache made by run.sh: kernel-headers (default
#             target/bench-data/kernel-headers; versions N/x/usr/src/linux-headers-*)
#             or a synthetic set (versions v1, v2, ...)
#   VT_BIN    vt binary (default target/release/vt)
set -euo pipefail
data=${1:-target/bench-data/kernel-headers}
vt=${2:-target/release/vt}
shift $(( $# >= 2 ? 2 : $# ))
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(16 32 64 128)
versions=$(ls "$data" | grep -v '\.json$' | sort -V)
tree_of() {  # the tree of version $1
    local k=("$data/$1"/x/usr/src/linux-headers-*)
    if [ -d "${k[0]}" ]; then echo "${k[0]}"; else echo "$data/$1"; fi
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
logical=0
for n in $versions; do
    t=$(tree_of "$n")
    logical=$((logical + $(du -sb --apparent-size "$t" | cut -f1)))
done
echo "| avg chunk | versions | logical MB | ingest s (sum) | per version s | store MB | logical/store | blocks |"
echo "|---|---|---|---|---|---|---|---|"
for kib in "${sizes[@]}"; do
    s="$work/store-$kib"
    "$vt" -q -S "$s" init
    total=0
    per=()
    for n in $versions; do
        t=$(tree_of "$n")
        start=$(date +%s.%N)
        "$vt" -q -S "$s" --chunk-kib "$kib" save --no-cache -a "$work/kh-$kib.vt" "$t" >/dev/null
        end=$(date +%s.%N)
        dt=$(echo "$end - $start" | bc)
        per+=("$(printf %.2f "$dt")")
        total=$(echo "$total + $dt" | bc)
    done
    store=$(du -sb "$s/data" | cut -f1)
    blocks=$("$vt" -S "$s" info | awk '/^blocks:/ {print $2}')
    ratio=$(echo "scale=2; $logical / $store" | bc)
    printf "| %s KiB | %s | %.1f | %.2f | %s | %.1f | %s | %s |\n" "$kib" "$(echo $versions | wc -w)" \
        "$(echo "$logical / 1000000" | bc -l)" "$total" "${per[*]}" "$(echo "$store / 1000000" | bc -l)" "$ratio" "$blocks"
done
