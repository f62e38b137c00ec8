#!/usr/bin/env bash
# bench/regress.sh: a criterion baseline of the core benches, to see a regression of more than 10 %.
#
#   bench/regress.sh save  [CARGO_ARGS...]   # run the benches, save them as baseline "main"
#   bench/regress.sh check [CARGO_ARGS...]   # run them against "main"; exit 1 listing every
#                                            # benchmark whose mean time grew by more than 10 %
#
# Benches: core, window, script, shm_ring (criterion; benches/process.rs has its own harness and
# is not covered). CARGO_ARGS go to `cargo bench` (e.g. `--profile NAME`). Environment:
# CARGO_TARGET_DIR (honoured; results are read from its criterion/), REGRESS_BASELINE (default
# main), REGRESS_THRESHOLD (relative change of the mean, default 0.10). Not run by CI: timings on
# shared machines are too noisy; save and check on the same quiet machine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TGT=${CARGO_TARGET_DIR:-$ROOT/target}
BASE=${REGRESS_BASELINE:-main}
THRESHOLD=${REGRESS_THRESHOLD:-0.10}
BENCHES=(--bench core --bench window --bench script --bench shm_ring)
MODE=${1:-}
[ $# -gt 0 ] && shift
cd "$ROOT"

case "$MODE" in
save)
    cargo bench "${BENCHES[@]}" "$@" -- --save-baseline "$BASE"
    echo "saved criterion baseline \"$BASE\" under $TGT/criterion" >&2
    ;;
check)
    MARK=$(mktemp)
    trap 'rm -f "$MARK"' EXIT
    cargo bench "${BENCHES[@]}" "$@" -- --baseline "$BASE"
    # Every comparison this run wrote: <bench>/change/estimates.json, newer than $MARK.
    python3 - "$TGT/criterion" "$MARK" "$THRESHOLD" "$BASE" <<'PY'
import json, os, sys

root, mark, threshold, base = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
since = os.path.getmtime(mark)
rows = []
for d, _, files in os.walk(root):
    if os.path.basename(d) != "change" or "estimates.json" not in files:
        continue
    est = os.path.join(d, "estimates.json")
    if os.path.getmtime(est) < since:
        continue
    bench_dir = os.path.dirname(d)
    name = os.path.relpath(bench_dir, root)
    try:
        with open(os.path.join(bench_dir, "new", "benchmark.json")) as f:
            name = json.load(f).get("full_id", name)
    except (OSError, ValueError):
        pass
    with open(est) as f:
        rows.append((json.load(f)["mean"]["point_estimate"], name))
if not rows:
    print(f"no comparison was written: save a baseline first (bench/regress.sh save)", file=sys.stderr)
    sys.exit(2)
rows.sort(reverse=True)
bad = [(c, n) for c, n in rows if c > threshold]
print(f"\nmean time against baseline \"{base}\" ({len(rows)} benchmarks):")
for c, n in rows:
    print(f"  {c * 100:+7.1f} %  {n}{'   REGRESSED' if c > threshold else ''}")
if bad:
    print(f"\n{len(bad)} benchmark(s) regressed by more than {threshold * 100:.0f} %:", file=sys.stderr)
    for c, n in bad:
        print(f"  {n}: {c * 100:+.1f} %", file=sys.stderr)
    sys.exit(1)
print(f"no regression above {threshold * 100:.0f} %")
PY
    ;;
*)
    echo "usage: $0 save|check [CARGO_ARGS...]" >&2
    exit 2
    ;;
esac
