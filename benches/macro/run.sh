#!/usr/bin/env bash
# Side-by-side macro benchmark: vt against restic, borg, casync and bup.
# See benches/README.md. All options are passed to bench.py (python3, stdlib only).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec python3 "$here/bench.py" "$@"
