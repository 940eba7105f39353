#!/usr/bin/env bash
# Runs vt's libFuzzer targets with the stable toolchain.
#
#   fuzz/run.sh [-t SECONDS] [TARGET...]      (default: 60 s each, every target)
#
# Targets: codec block_ref dirent text segment tree fs (see fuzz/src/lib.rs). Builds the
# `fuzz_<target>` binaries with SanitizerCoverage instrumentation (the flags cargo-fuzz
# passes, without a sanitizer, so no nightly compiler is needed), seeds a corpus under
# target/fuzz/corpus/<target> from the engine's encoders, and runs each target with a
# memory limit, so that an allocation sized by a hostile length is a crash. A crash
# leaves its input in target/fuzz/artifacts/<target>/; once fixed, copy it to
# fuzz/regressions/<target>/ so `cargo test -p vt-fuzz` replays it forever.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=60
while getopts "t:" o; do
  case $o in t) secs=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(codec block_ref dirent text segment tree fs)
out=target/fuzz
flags="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" -Cdebug-assertions -Coverflow-checks"
# With an explicit --target, RUSTFLAGS reach only the fuzzed code, not build scripts.
host=$(rustc -vV | sed -n 's/^host: //p')
bins=()
for t in "${targets[@]}"; do bins+=(--bin "fuzz_$t"); done
CARGO_TARGET_DIR=$out/build RUSTFLAGS="$flags" \
  cargo build --release --target "$host" -p vt-fuzz --features libfuzzer "${bins[@]}"
cargo run -q --release -p vt-fuzz --bin fuzz_seeds -- "$out/corpus"
for t in "${targets[@]}"; do
  mkdir -p "$out/artifacts/$t"
  echo "== $t (${secs} s)"
  "$out/build/$host/release/fuzz_$t" "$out/corpus/$t" -max_total_time="$secs" \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
    -artifact_prefix="$out/artifacts/$t/" -print_final_stats=1
done
