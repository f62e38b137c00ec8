#!/usr/bin/env bash
# bench/compare.sh: tributary side by side with its peers, in one run on this machine.
#
#   bench/compare.sh     # about 4-5 min on 2 cores; the first run adds the peer installs and builds (~10 min)
#
# Runs the same workloads in tributary and in IoTPy 1.1.0, dora-rs 1.1.0 and bytewax 0.21.1
# (installed by this script into venvs under $TRIBUTARY_BENCH_CACHE, default
# ~/.cache/tributary-bench, once), and against the raw shared-memory ring (tributary's own
# `cargo bench --bench shm_ring` and `--bench process`, whose output is parsed). Prints a Markdown
# table (workload, tributary figure, peer figure, ratio tributary/peer, target, met?) on stdout;
# progress goes to stderr. Files (in $TRIBUTARY_COMPARE_OUT, default target/compare/):
#   results.jsonl   one JSON object per table row (for programs)
#   metrics.jsonl   every measured figure, and {"step", "error"} for each step that failed
#   table.md        the table; logs/ each step's output; work/ generated manifests and dataflows
# A peer that fails to install or run shows as FAILED in its rows; the other rows still run.
# Environment: TRIBUTARY_BENCH_CACHE, TRIBUTARY_COMPARE_OUT, CARGO_TARGET_DIR (honoured),
#   COMPARE_REPEAT (runs of each short workload, median taken; default 3),
#   COMPARE_SKIP (space-separated: iotpy dora bytewax benches nodes), COMPARE_TIMEOUT (s per run).
# Not part of CI.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
CACHE=${TRIBUTARY_BENCH_CACHE:-$HOME/.cache/tributary-bench}
OUT=${TRIBUTARY_COMPARE_OUT:-$ROOT/target/compare}
TGT=${CARGO_TARGET_DIR:-$ROOT/target}
REPEAT=${COMPARE_REPEAT:-3}
SKIP=" ${COMPARE_SKIP:-} "
TMO=${COMPARE_TIMEOUT:-300}
METRICS=$OUT/metrics.jsonl
LOGS=$OUT/logs
WORK=$OUT/work

IOTPY_VERSION=1.1.0
DORA_VERSION=1.1.0
BYTEWAX_VERSION=0.21.1

log() { printf '[compare %s] %s\n' "$(date +%T)" "$*" >&2; }
skipped() { [[ "$SKIP" == *" $1 "* ]]; }

command -v python3 >/dev/null || { echo "compare.sh: python3 is required" >&2; exit 2; }
command -v cargo >/dev/null || { echo "compare.sh: cargo is required" >&2; exit 2; }
PY3=$(python3 -c 'import sys; print(sys.executable)')   # the real interpreter, not a shim
LIB=$HERE/compare.py

mkdir -p "$OUT" "$LOGS" "$WORK" "$CACHE"
: > "$METRICS"
START=$(date +%s)

# record_fail STEP MESSAGE
record_fail() {
  log "FAILED $1: $2"
  "$PY3" "$LIB" fail "$1" "$2" >> "$METRICS"
}

# extract STEP: parse logs/STEP.log into metrics
extract() {
  local m
  m=$("$PY3" "$LIB" extract "$1" "$LOGS/$1.log")
  printf '%s\n' "$m" >> "$METRICS"
  if [[ "$m" == *'"error"'* ]]; then log "  $1: output not understood, see $LOGS/$1.log"; fi
}

# step NAME CMD...: runs CMD (with a timeout) into logs/NAME.log, then extracts its metrics.
# CMD may run several times (REPEAT); everything it prints is kept.
step() {
  local name=$1; shift
  log "$name"
  # bash -c so that CMD may be one of the exported functions below (repeat, rss)
  if timeout "$TMO" bash -c '"$@"' _ "$@" > "$LOGS/$name.log" 2>&1; then
    extract "$name"
  else
    local rc=$?
    record_fail "$name" "exit status $rc$( [ $rc = 124 ] && echo " (timeout ${TMO}s)"); last lines: $(tail -n 3 "$LOGS/$name.log" | tr '\n' ' ' | cut -c1-300)"
  fi
}

# ------------------------------------------------------------------ peak RSS
# rss CMD...: runs CMD and prints its peak RSS (GNU time -v if present, else getrusage).
TIME_BIN=""
if [ -x /usr/bin/time ] && /usr/bin/time -v true >/dev/null 2>&1; then
  TIME_BIN=/usr/bin/time
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing GNU time (apt-get install time)"
  if { apt-get install -y -qq time || { apt-get update -qq && apt-get install -y -qq time; }; } >/dev/null 2>&1; then
    TIME_BIN=/usr/bin/time
  else
    log "GNU time not installable; peak RSS from getrusage instead"
  fi
fi
rss() {
  if [ -n "$TIME_BIN" ]; then
    "$TIME_BIN" -v "$@"
  else
    "$PY3" -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:]).returncode
print(f"peak_rss_kb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
sys.exit(r)' "$@"
  fi
}
export -f rss
export TIME_BIN PY3

# repeat N CMD...: runs CMD N times, stopping at the first failure
repeat() {
  local n=$1; shift
  for _ in $(seq "$n"); do "$@" || return $?; done
}
export -f repeat

# ------------------------------------------------------------------ peers: install (idempotent)
VENVS=$CACHE/venv
# install NAME MARKER PIP-ARGS...: a venv per peer; skipped when MARKER exists
install_peer() {
  local name=$1 marker=$2; shift 2
  local venv=$VENVS/$name
  if [ -e "$venv/$marker" ]; then log "$name: already installed ($venv)"; return 0; fi
  log "$name: installing into $venv"
  rm -rf "$venv"
  {
    python3 -m venv "$venv" &&
    "$venv/bin/pip" install -q --upgrade pip &&
    "$@" &&
    touch "$venv/$marker"
  } > "$LOGS/install_$name.log" 2>&1
}

PEER_OK_iotpy=0 PEER_OK_dora=0 PEER_OK_bytewax=0
# note_skip STEP...: rows of skipped steps say so
note_skip() { for s in "$@"; do "$PY3" "$LIB" fail "$s" "skipped (COMPARE_SKIP)" >> "$METRICS"; done; }
skipped iotpy && note_skip iotpy_p1 iotpy_p2 iotpy_p3
skipped bytewax && note_skip bytewax_p1 bytewax_p2
skipped dora && note_skip nodes_dora_lat16 nodes_dora_lat1m nodes_dora_tput16 nodes_dora_tput1m
skipped benches && note_skip trib_core trib_window trib_shm trib_process
skipped nodes && note_skip nodes_native_lat16 nodes_native_lat1m nodes_native_tput16 nodes_native_tput1m \
  nodes_native_tput1mcap8 nodes_exec_lat16 nodes_exec_lat1m nodes_exec_tput16 nodes_exec_tput1m \
  nodes_dora_lat16 nodes_dora_lat1m nodes_dora_tput16 nodes_dora_tput1m
if ! skipped iotpy; then
  # iotpy 1.1.0 pins numpy==1.18.1, which does not build on Python >= 3.10: --no-deps, then numpy.
  if install_peer iotpy ".installed-$IOTPY_VERSION" \
      sh -c "'$VENVS/iotpy/bin/pip' install -q --no-deps iotpy==$IOTPY_VERSION && '$VENVS/iotpy/bin/pip' install -q numpy"; then
    PEER_OK_iotpy=1
  else
    for s in iotpy_p1 iotpy_p2 iotpy_p3; do record_fail $s "IoTPy install failed: $(tail -n 2 "$LOGS/install_iotpy.log" | tr '\n' ' ' | cut -c1-200)"; done
  fi
fi
if ! skipped dora; then
  if install_peer dora ".installed-$DORA_VERSION" \
      "$VENVS/dora/bin/pip" install -q "dora-rs-cli==$DORA_VERSION" "dora-rs==$DORA_VERSION" pyarrow numpy; then
    PEER_OK_dora=1
  else
    for c in lat16 lat1m tput16 tput1m; do record_fail "nodes_dora_$c" "dora-rs install failed: $(tail -n 2 "$LOGS/install_dora.log" | tr '\n' ' ' | cut -c1-200)"; done
  fi
fi
if ! skipped bytewax; then
  if install_peer bytewax ".installed-$BYTEWAX_VERSION" \
      "$VENVS/bytewax/bin/pip" install -q "bytewax==$BYTEWAX_VERSION"; then
    PEER_OK_bytewax=1
  else
    for s in bytewax_p1 bytewax_p2; do record_fail $s "bytewax install failed: $(tail -n 2 "$LOGS/install_bytewax.log" | tr '\n' ' ' | cut -c1-200)"; done
  fi
fi

# ------------------------------------------------------------------ tributary: release build
export CARGO_TARGET_DIR=$TGT
REL=$TGT/release
BUILD_OK=1
log "building tributary (release: the binary, examples p1_quick and compare_nodes)"
if ! (cd "$ROOT" && cargo build --release --bin tributary --example p1_quick --example compare_nodes) > "$LOGS/build.log" 2>&1; then
  BUILD_OK=0
  log "release build failed, see $LOGS/build.log"
  for s in trib_core trib_window trib_shm trib_process trib_p1_rhai trib_p3_manifest trib_p1_rss trib_p1_rhai_rss \
           nodes_native_lat16 nodes_native_lat1m nodes_native_tput16 nodes_native_tput1m \
           nodes_exec_lat16 nodes_exec_lat1m nodes_exec_tput16 nodes_exec_tput1m; do
    record_fail $s "release build failed"
  done
fi

# ------------------------------------------------------------------ tributary workloads
if [ $BUILD_OK = 1 ]; then
  if ! skipped benches; then
    # criterion benches; their own baselines are measured in the same run
    step trib_core    bash -c "cd '$ROOT' && cargo bench --bench core"
    step trib_window  bash -c "cd '$ROOT' && cargo bench --bench window"
    step trib_shm     bash -c "cd '$ROOT' && cargo bench --bench shm_ring"
    step trib_process bash -c "cd '$ROOT' && cargo bench --bench process"
  fi
  # P1 as a Rhai manifest, 10 M integers, all in the supervisor process
  step trib_p1_rhai repeat "$REPEAT" "$REL/tributary" run --log-format json "$ROOT/examples/bench/p1.toml"
  # peak RSS of P1 over 1 M integers (IoTPy's size): the native graph and the manifest
  sed 's/^end = 10000000$/end = 1000000/' "$ROOT/examples/bench/p1.toml" > "$WORK/p1_1m.toml"
  step trib_p1_rss      repeat "$REPEAT" rss "$REL/examples/p1_quick" 1000000
  step trib_p1_rhai_rss repeat "$REPEAT" rss "$REL/tributary" run "$WORK/p1_1m.toml"
  # P3 as a manifest: typed f64 streams, two process groups, 10 M elements
  step trib_p3_manifest repeat "$REPEAT" "$REL/tributary" run --log-format json "$ROOT/examples/bench/p3.toml"
fi

# ------------------------------------------------------------------ IoTPy and bytewax
if [ $PEER_OK_iotpy = 1 ]; then
  P=$VENVS/iotpy/bin/python D=$HERE/peers/iotpy
  # run from $WORK so that the installed package (not a source checkout) is imported
  step iotpy_p1 bash -c "cd '$WORK' && for i in \$(seq $REPEAT); do rss '$P' '$D/bench_a_map_chain.py' 1000000 1000 || exit; done"
  step iotpy_p2 bash -c "cd '$WORK' && for i in \$(seq $REPEAT); do '$P' '$D/bench_b_sliding_window.py' list 1000000 1000 || exit; done"
  step iotpy_p3 bash -c "cd '$WORK' && for i in \$(seq $REPEAT); do '$P' '$D/bench_c_multicore.py' 100000 1000 d || exit; done"
fi
if [ $PEER_OK_bytewax = 1 ]; then
  P=$VENVS/bytewax/bin/python D=$HERE/peers/bytewax
  step bytewax_p1 bash -c "cd '$D' && for i in \$(seq $REPEAT); do '$P' p1_map_chain.py 1000000 1000 || exit; done"
  step bytewax_p2 bash -c "cd '$D' && for i in \$(seq $REPEAT); do '$P' p2_sliding_sum.py 1000000 1000 || exit; done"
fi

# ------------------------------------------------------------------ source -> sink nodes
# case: name count size rate(Hz, 0 = full speed) warmup [stream capacity, tributary only]
CASES=("lat16 2000 16 1000 50" "lat1m 300 1048576 100 10" "tput16 50000 16 0 0" "tput1m 500 1048576 0 0")
# the default link capacity counts elements (1024): 1 MB messages again with 8
NATIVE_EXTRA=("tput1mcap8 500 1048576 0 0 8")

# node_run SYSTEM CASE COUNT SIZE RATE WARMUP [CAPACITY]: one source -> sink run under `rss`;
# appends the sink's summary (a JSON line) and the run's peak RSS to logs/nodes_SYSTEM_CASE.log
node_run() {
  local system=$1 case=$2 count=$3 size=$4 rate=$5 warmup=$6 cap=${7:-}
  local name=nodes_${system}_$case res=$WORK/${system}_$case.json
  rm -f "$res"
  log "$name ($count messages of $size B, $( [ "$rate" = 0 ] && echo "full speed" || echo "$rate Hz"))"
  local cmd
  case $system in
    native)
      "$PY3" "$LIB" node-manifest native "$WORK/native_$case.toml" "$count" "$size" "$rate" "$warmup" "$res" "$cap"
      cmd=("$REL/examples/compare_nodes" run --log-format json "$WORK/native_$case.toml") ;;
    exec)
      "$PY3" "$LIB" node-manifest exec "$WORK/exec_$case.toml" "$count" "$size" "$rate" "$warmup" "$res" "$cap" \
        "$PY3" "$HERE/tributary/exec_source.py" "$HERE/tributary/exec_sink.py"
      cmd=("$REL/tributary" run --log-format json "$WORK/exec_$case.toml") ;;
    dora)
      mkdir -p "$WORK/dora"
      "$PY3" "$LIB" dora-df "$WORK/dora/df_$case.yml" "$VENVS/dora/bin/python" \
        "$HERE/peers/dora/source.py" "$HERE/peers/dora/sink.py" "$count" "$size" "$rate" "$warmup" "$res"
      cmd=(bash -c "cd '$WORK/dora' && '$VENVS/dora/bin/dora' run df_$case.yml") ;;
  esac
  local rc=0
  timeout "$TMO" bash -c '"$@"' _ rss "${cmd[@]}" > "$LOGS/$name.run.log" 2>&1 || rc=$?
  if [ -s "$res" ]; then
    { cat "$res"; echo; grep -E 'Maximum resident set size|peak_rss_kb=' "$LOGS/$name.run.log" || true; } >> "$LOGS/$name.log"
    # the sink wrote its summary but the run failed: its figures count, the failure is listed
    [ $rc = 0 ] || record_fail "$name" "a run exited with status $rc after the sink's summary, see $LOGS/$name.run.log"
  else
    record_fail "$name" "a run exited with status $rc, no sink summary; last lines: $(tail -n 3 "$LOGS/$name.run.log" | tr '\n' ' ' | cut -c1-300)"
  fi
}

if ! skipped nodes; then
  rm -f "$LOGS"/nodes_*.log
  # REPEAT rounds; in each, every case in every system (interleaved, so that a burst of load on
  # the shared machine hits all systems alike); medians of the runs, lost messages summed
  for round in $(seq "$REPEAT"); do
    log "source -> sink nodes: round $round of $REPEAT"
    for c in "${CASES[@]}"; do
      # shellcheck disable=SC2086
      set -- $c
      if [ $BUILD_OK = 1 ]; then
        node_run native "$@"
        node_run exec "$@"
      fi
      if [ $PEER_OK_dora = 1 ]; then node_run dora "$@"; fi
    done
    if [ $BUILD_OK = 1 ]; then
      for c in "${NATIVE_EXTRA[@]}"; do
        # shellcheck disable=SC2086
        set -- $c
        node_run native "$@"
      done
    fi
  done
  for f in "$LOGS"/nodes_*.log; do
    case $f in *.run.log) continue ;; esac
    [ -e "$f" ] && extract "$(basename "$f" .log)"
  done
fi

# ------------------------------------------------------------------ the table
CPU=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
HEADER="Machine: $(nproc) cores, ${CPU:-unknown CPU}, $(uname -sr); $(date -u +%Y-%m-%d); \`bench/compare.sh\` took $(( $(date +%s) - START )) s. Peers: IoTPy $IOTPY_VERSION, dora-rs $DORA_VERSION (Python nodes), bytewax $BYTEWAX_VERSION (1 worker); each short workload and each source -> sink run done $REPEAT times, median shown (lost messages: summed over the runs). Ratios are tributary / peer, both from this run.
"
"$PY3" "$LIB" report "$METRICS" "$OUT/results.jsonl" "$HEADER" | tee "$OUT/table.md"
log "done: $OUT/table.md, $OUT/results.jsonl, $OUT/metrics.jsonl"
