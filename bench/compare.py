#!/usr/bin/env python3
"""Helpers of bench/compare.sh (standard library only).

  compare.py extract STEP LOG      print the metrics of one step's output as JSON lines
  compare.py fail STEP MESSAGE     print a failure record for a step
  compare.py node-manifest KIND ...  write a tributary manifest for the source -> sink workloads
  compare.py dora-df ...           write a dora-rs dataflow for the same workloads
  compare.py report METRICS OUT.jsonl [HEADER]   the Markdown table on stdout, rows as JSON lines

A metric is {"key": ..., "value": ..., "unit": ...}; a failure is {"step": ..., "error": ...}.
"""
import json
import re
import statistics
import sys

# ------------------------------------------------------------------ extraction

UNITS = {"elem/s": 1.0, "Kelem/s": 1e3, "Melem/s": 1e6, "Gelem/s": 1e9,
         "ps": 1e-12, "ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def criterion(text, bench_id):
    """(median time in s, median throughput in elements/s or None) of one criterion benchmark."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(bench_id):
            t = thr = None
            for l2 in lines[i:i + 6]:
                m = re.search(r"(time|thrpt):\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", l2)
                if m and m.group(1) == "time" and t is None:
                    t = float(m.group(2)) * UNITS[m.group(3)]
                elif m and m.group(1) == "thrpt" and thr is None:
                    thr = float(m.group(2)) * UNITS[m.group(3)]
                if "change:" in l2:
                    break
            if t is not None:
                return t, thr
    raise ValueError(f"no criterion result for {bench_id!r}")


def med(values):
    if not values:
        raise ValueError("no values")
    return statistics.median(values)


def rss_kb(text):
    """Peak RSS lines: GNU time -v, or the fallback's `peak_rss_kb=`."""
    v = [int(x) for x in re.findall(r"Maximum resident set size \(kbytes\): (\d+)", text)]
    v += [int(x) for x in re.findall(r"peak_rss_kb=(\d+)", text)]
    return v


def summaries(text):
    """The end-of-run summaries of `tributary run --log-format json`."""
    out = []
    for line in text.splitlines():
        if line.startswith("{") and '"event":"summary"' in line.replace(" ", ""):
            out.append(json.loads(line))
    return out


def extract(step, text):
    m = []

    def put(key, value, unit, **kw):
        m.append(dict(key=key, value=value, unit=unit, **kw))

    if step == "trib_core":
        _, t = criterion(text, "p1_map_map_filter_10M/tributary actors")
        _, b = criterion(text, "p1_map_map_filter_10M/plain loop (baseline)")
        put("trib.p1_native.eps", t, "el/s", n=10_000_000)
        put("trib.p1_loop.eps", b, "el/s", n=10_000_000)
    elif step == "trib_window":
        _, a = criterion(text, "sliding_sum_w100_s1/map_window_agg (incremental)")
        _, c = criterion(text, "sliding_sum_w100_s1/map_window closure over slice")
        put("trib.p2.eps", a, "el/s", n=1_000_000)
        put("trib.p2_closure.eps", c, "el/s", n=1_000_000)
    elif step == "trib_shm":
        _, r64 = criterion(text, "shm_ring_throughput/f64_batch1024_ring64k")
        _, r1m = criterion(text, "shm_ring_throughput/f64_batch1024_ring1024k")
        spin, _ = criterion(text, "shm_ring_round_trip_16B/spin_then_futex")
        futex, _ = criterion(text, "shm_ring_round_trip_16B/futex_only")
        put("raw.ring_threads_64k.eps", r64, "el/s")
        put("raw.ring_threads_1m.eps", r1m, "el/s")
        put("raw.rtt_spin.us", spin * 1e6, "us")
        put("raw.rtt_futex.us", futex * 1e6, "us")
    elif step == "trib_process":
        raw = re.search(r"raw ring, batches of \d+:\s+([\d.]+) elements/s", text)
        trib = re.search(r"tributary link stack:\s+([\d.]+) elements/s", text)
        put("raw.ring_proc.eps", float(raw.group(1)), "el/s", n=10_000_000)
        put("trib.p3_link.eps", float(trib.group(1)), "el/s", n=10_000_000)
        for who, key in (("raw futex ring            ", "raw.lat_futex"),
                         ("tributary, source in graph", "trib.lat_link")):
            g = re.search(re.escape(who) + r": p50\s+([\d.]+)\s+p99\s+([\d.]+)\s+max\s+([\d.]+)", text)
            put(key + ".p50", float(g.group(1)), "us")
            put(key + ".p99", float(g.group(2)), "us")
        for pl in ("process", "thread"):
            g = re.search(r"placement " + pl + r"\s*: first output\s+([\d.]+)\s+completion\s+([\d.]+)", text)
            if g:
                put(f"trib.four_groups_{pl}.first_ms", float(g.group(1)), "ms")
                put(f"trib.four_groups_{pl}.done_ms", float(g.group(2)), "ms")
    elif step in ("trib_p1_rhai", "trib_p3_manifest"):
        n = 10_000_000
        rates = []
        for s in summaries(text):
            if s.get("status") != "ok":
                raise ValueError(f"run ended with status {s.get('status')}")
            last = "c" if step == "trib_p1_rhai" else "z"   # the stream into the sink
            if s["streams"].get(last) != n:
                raise ValueError(f"stream {last} carried {s['streams'].get(last)} elements, expected {n}")
            rates.append(n / s["wall_s"])
        key = "trib.p1_rhai.eps" if step == "trib_p1_rhai" else "trib.p3_manifest.eps"
        put(key, med(rates), "el/s", n=n, runs=len(rates))
    elif step == "trib_p1_rss":
        put("trib.p1_native.rss_kb", med(rss_kb(text)), "KiB", n=1_000_000)
    elif step == "trib_p1_rhai_rss":
        put("trib.p1_rhai.rss_kb", med(rss_kb(text)), "KiB", n=1_000_000)
    elif step == "iotpy_p1":
        r = [float(x.replace(",", "")) for x in re.findall(r"bench_a .*elements_per_sec=([\d,]+)", text)]
        put("iotpy.p1.eps", med(r), "el/s", n=1_000_000, runs=len(r))
        put("iotpy.p1.rss_kb", med(rss_kb(text)), "KiB", n=1_000_000)
    elif step == "iotpy_p2":
        r = [float(x.replace(",", "")) for x in re.findall(r"input_elements_per_sec=([\d,]+)", text)]
        put("iotpy.p2.eps", med(r), "el/s", n=1_000_000, runs=len(r))
    elif step == "iotpy_p3":
        runs = re.findall(r"bench_c .*elements_per_sec=([\d,]+) .*correct=(\w+)", text)
        if any(ok != "True" for _, ok in runs):
            raise ValueError("IoTPy P3 reported a wrong count or sum")
        r = [float(x.replace(",", "")) for x, _ in runs]
        put("iotpy.p3.eps", med(r), "el/s", n=100_000, runs=len(r))
    elif step == "bytewax_p1":
        r = [float(x) for x in re.findall(r"bytewax_p1 .*elements_per_sec=([\d.]+)", text)]
        put("bytewax.p1.eps", med(r), "el/s", n=1_000_000, runs=len(r))
    elif step == "bytewax_p2":
        r = [float(x) for x in re.findall(r"bytewax_p2 .*input_elements_per_sec=([\d.]+)", text)]
        put("bytewax.p2.eps", med(r), "el/s", n=1_000_000, runs=len(r))
    elif step.startswith("nodes_"):
        # nodes_<system>_<case>: the log holds each run's sink summary (a JSON line) and peak RSS
        _, system, case = step.split("_", 2)
        runs = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        if not runs:
            raise ValueError("no sink summary")
        k = f"{system}.{case}"
        put(k + ".count", sum(r["count"] for r in runs), "msgs", runs=len(runs))
        put(k + ".received", sum(r["received"] for r in runs), "msgs", runs=len(runs))
        put(k + ".lost", sum(r["lost"] for r in runs), "msgs", runs=len(runs))
        for f in ("lat_p50_us", "lat_p99_us", "lat_max_us", "msgs_per_s", "mbytes_per_s"):
            v = [r[f] for r in runs if f in r]
            if v:
                put(f"{k}.{f}", med(v), f.rsplit("_", 1)[-1], runs=len(v))
        rss = rss_kb(text)
        if rss:
            put(k + ".rss_kb", max(rss), "KiB", runs=len(rss))
    else:
        raise ValueError(f"unknown step {step}")
    return m


# ------------------------------------------------------------------ manifests and dataflows

def node_manifest(kind, path, count, size, rate, warmup, result, capacity="", py=None, src=None, sink=None):
    """A source -> sink manifest: kind `native` (this repository's compare_nodes kinds, source and
    sink in two process groups) or `exec` (source.exec and sink.exec Python nodes). `capacity`
    (elements), if not empty, is the link capacity of the stream between them."""
    stream = f'\n[[stream]]\nname = "m"\ncapacity = {capacity}\n' if capacity else ""
    if kind == "native":
        pace = f'interval = "1us"\nrate = {rate}\n' if float(rate) > 0 else ""
        text = f'''# generated by bench/compare.sh: native source -> sink, {count} messages of {size} B
name = "compare-native"
{stream}
[[group]]
name = "a"
placement = "process"

[[group]]
name = "b"
placement = "process"

[[operator]]
name = "src"
op = "bench_source"
out = "m"
group = "a"
count = {count}
size = {size}
{pace}
[[operator]]
name = "sink"
op = "bench_sink"
in = "m"
group = "b"
count = {count}
size = {size}
warmup = {warmup}
path = {json.dumps(result)}
'''
    else:
        text = f'''# generated by bench/compare.sh: exec (Python) source -> sink, {count} messages of {size} B
name = "compare-exec"
{stream}
[[operator]]
name = "src"
op = "source.exec"
out = "m"
command = {json.dumps([py, src, str(count), str(size), str(rate)])}

[[operator]]
name = "sink"
op = "sink.exec"
in = "m"
command = {json.dumps([py, sink, str(count), str(size), str(warmup), result])}
'''
    with open(path, "w") as f:
        f.write(text)


def dora_df(path, py, src, sink, count, size, rate, warmup, result):
    env_src = {"COUNT": str(count), "SIZE": str(size), "RATE": str(rate)}
    env_sink = {"COUNT": str(count), "SIZE": str(size), "WARMUP": str(warmup), "OUT": result}
    q = json.dumps  # JSON strings are valid YAML scalars
    text = f"""# generated by bench/compare.sh: dora-rs source -> sink, {count} messages of {size} B
nodes:
  - id: source
    path: {q(py)}
    args: {q(src)}
    outputs: [data]
    env: {q(env_src)}
  - id: sink
    path: {q(py)}
    args: {q(sink)}
    inputs:
      data: source/data
    env: {q(env_sink)}
"""
    with open(path, "w") as f:
        f.write(text)


# ------------------------------------------------------------------ report

def fmt_rate(v):
    if v >= 1e9:
        return f"{v / 1e9:.2f} G/s"
    if v >= 1e6:
        return f"{v / 1e6:.3g} M/s"
    if v >= 1e3:
        return f"{v / 1e3:.3g} K/s"
    return f"{v:.3g} /s"


def fmt_us(v):
    if v >= 1e6:
        return f"{v / 1e6:.3g} s"
    return f"{v / 1e3:.3g} ms" if v >= 1e3 else f"{v:.3g} us"


def fmt_kb(v):
    if v >= 1024 * 1024:
        return f"{v / 1024 / 1024:.3g} GiB"
    return f"{v / 1024:.0f} MiB" if v >= 100 * 1024 else f"{v / 1024:.3g} MiB"


def fmt_msgs(v):
    return fmt_rate(v).replace("/s", "msg/s")


FMT = {"rate": fmt_rate, "us": fmt_us, "kb": fmt_kb, "msgs": fmt_msgs, "n": lambda v: f"{v:g}"}

# (workload, tributary key, peer name, peer key, format, target kind, target value)
#   target kind: ">=" ratio at least, "<=" ratio at most, "pct" ratio at least (shown in %),
#   "zero" tributary figure must be 0, None: no target (shown for reference)
N16, N1M = "16 B", "1 MB"
ROWS = [
    ("P1 map/map/filter, native Rust graph (10 M ints; peers 1 M)", "trib.p1_native.eps", "IoTPy", "iotpy.p1.eps", "rate", ">=", 150),
    ("P1 native", "trib.p1_native.eps", "bytewax", "bytewax.p1.eps", "rate", ">=", 20),
    ("P1 as a Rhai manifest, `tributary run` (10 M)", "trib.p1_rhai.eps", "IoTPy", "iotpy.p1.eps", "rate", ">=", 15),
    ("P1 Rhai manifest", "trib.p1_rhai.eps", "bytewax", "bytewax.p1.eps", "rate", ">=", 2),
    ("P2 sliding sum w100, 1 M floats (`map_window_agg`)", "trib.p2.eps", "IoTPy", "iotpy.p2.eps", "rate", ">=", 100),
    ("P2 sliding sum w100", "trib.p2.eps", "bytewax", "bytewax.p2.eps", "rate", ">=", 100),
    ("P2 with a closure summing each window slice", "trib.p2_closure.eps", "IoTPy", "iotpy.p2.eps", "rate", None, None),
    ("P3 f64 between 2 processes, link stack (10 M; IoTPy 100 K, 'd' streams)", "trib.p3_link.eps", "IoTPy", "iotpy.p3.eps", "rate", ">=", 1000),
    ("P3 link stack vs the raw shm ring between 2 processes (same bench run)", "trib.p3_link.eps", "raw ring", "raw.ring_proc.eps", "rate", "pct", 0.25),
    ("P3 as a manifest: 2 process groups, typed f64, `tributary run` (10 M)", "trib.p3_manifest.eps", "IoTPy", "iotpy.p3.eps", "rate", ">=", 1000),
    ("P3 manifest vs the raw shm ring between 2 processes", "trib.p3_manifest.eps", "raw ring", "raw.ring_proc.eps", "rate", "pct", 0.25),
    ("16 B at 1 kHz, one-way p50: native nodes, 2 process groups", "native.lat16.lat_p50_us", "dora-rs", "dora.lat16.lat_p50_us", "us", "<=", 0.25),
    ("16 B at 1 kHz, one-way p99: native nodes", "native.lat16.lat_p99_us", "dora-rs", "dora.lat16.lat_p99_us", "us", "<=", 0.1),
    ("8 B at 1 kHz, one-way p50: link stack (`bench process` (b))", "trib.lat_link.p50", "dora-rs", "dora.lat16.lat_p50_us", "us", "<=", 0.25),
    ("8 B at 1 kHz, one-way p99: link stack", "trib.lat_link.p99", "dora-rs", "dora.lat16.lat_p99_us", "us", "<=", 0.1),
    ("16 B at 1 kHz, one-way p50: Python exec nodes (JSON lines)", "exec.lat16.lat_p50_us", "dora-rs", "dora.lat16.lat_p50_us", "us", "<=", 0.25),
    ("16 B at 1 kHz, one-way p99: Python exec nodes", "exec.lat16.lat_p99_us", "dora-rs", "dora.lat16.lat_p99_us", "us", "<=", 0.1),
    ("1 MB at 100 Hz, one-way p50: native nodes", "native.lat1m.lat_p50_us", "dora-rs", "dora.lat1m.lat_p50_us", "us", None, None),
    ("1 MB at 100 Hz, one-way p99: native nodes", "native.lat1m.lat_p99_us", "dora-rs", "dora.lat1m.lat_p99_us", "us", None, None),
    ("1 MB at 100 Hz, one-way p50: Python exec nodes", "exec.lat1m.lat_p50_us", "dora-rs", "dora.lat1m.lat_p50_us", "us", None, None),
    ("1 MB at 100 Hz, one-way p99: Python exec nodes", "exec.lat1m.lat_p99_us", "dora-rs", "dora.lat1m.lat_p99_us", "us", None, None),
    ("16 B full speed, throughput: native nodes", "native.tput16.msgs_per_s", "dora-rs", "dora.tput16.msgs_per_s", "msgs", None, None),
    ("16 B full speed, throughput: Python exec nodes", "exec.tput16.msgs_per_s", "dora-rs", "dora.tput16.msgs_per_s", "msgs", None, None),
    ("1 MB full speed, throughput: native nodes", "native.tput1m.msgs_per_s", "dora-rs", "dora.tput1m.msgs_per_s", "msgs", None, None),
    ("1 MB full speed, throughput: native nodes, stream `capacity = 8`", "native.tput1mcap8.msgs_per_s", "dora-rs", "dora.tput1m.msgs_per_s", "msgs", None, None),
    ("1 MB full speed, throughput: Python exec nodes", "exec.tput1m.msgs_per_s", "dora-rs", "dora.tput1m.msgs_per_s", "msgs", None, None),
    ("1 MB full speed, peak RSS of the largest process: native nodes", "native.tput1m.rss_kb", "dora-rs", "dora.tput1m.rss_kb", "kb", None, None),
    ("1 MB full speed, peak RSS of the largest process: native, `capacity = 8`", "native.tput1mcap8.rss_kb", "dora-rs", "dora.tput1m.rss_kb", "kb", None, None),
    ("1 MB full speed, peak RSS of the largest process: Python exec nodes", "exec.tput1m.rss_kb", "dora-rs", "dora.tput1m.rss_kb", "kb", None, None),
    ("messages lost, all source -> sink runs", "lost.tributary", "dora-rs", "lost.dora", "n", "zero", 0),
    ("peak RSS of P1, 1 M ints, native Rust graph", "trib.p1_native.rss_kb", "IoTPy", "iotpy.p1.rss_kb", "kb", "<=", 0.2),
    ("peak RSS of P1, 1 M ints, Rhai manifest", "trib.p1_rhai.rss_kb", "IoTPy", "iotpy.p1.rss_kb", "kb", "<=", 0.2),
    ("hardware: 8 B at 1 kHz one-way p50, link stack vs raw futex ring", "trib.lat_link.p50", "raw ring", "raw.lat_futex.p50", "us", None, None),
    ("hardware: f64 batches of 1024, raw ring between 2 threads, 1 MiB / 64 KiB ring", "raw.ring_threads_1m.eps", "(64 KiB)", "raw.ring_threads_64k.eps", "rate", None, None),
    ("hardware: 16 B round trip between 2 threads, spin then futex / futex only", "raw.rtt_spin.us", "(futex)", "raw.rtt_futex.us", "us", None, None),
]

# which step produces a metric (to print the failure of a missing one)
STEP_OF = [
    ("trib.p1_native.", "trib_core"), ("trib.p1_loop", "trib_core"), ("trib.p2", "trib_window"),
    ("raw.ring_threads", "trib_shm"), ("raw.rtt", "trib_shm"), ("raw.ring_proc", "trib_process"),
    ("trib.p3_link", "trib_process"), ("trib.lat_link", "trib_process"), ("raw.lat_futex", "trib_process"),
    ("trib.p1_rhai.eps", "trib_p1_rhai"), ("trib.p3_manifest", "trib_p3_manifest"),
    ("trib.p1_native.rss_kb", "trib_p1_rss"), ("trib.p1_rhai.rss_kb", "trib_p1_rhai_rss"),
    ("iotpy.p1", "iotpy_p1"), ("iotpy.p2", "iotpy_p2"), ("iotpy.p3", "iotpy_p3"),
    ("bytewax.p1", "bytewax_p1"), ("bytewax.p2", "bytewax_p2"),
]


def step_of(key):
    if key.split(".")[0] in ("native", "exec", "dora"):
        system, case = key.split(".")[:2]
        return f"nodes_{system}_{case}"
    if key.startswith("lost."):
        return None
    for prefix, step in STEP_OF:
        if key.startswith(prefix):
            return step
    return None


def report(metrics_path, out_path, header=""):
    metrics, fails = {}, {}
    with open(metrics_path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if "error" in r:
                fails[r["step"]] = r["error"]
            else:
                metrics[r["key"]] = r
    # lost messages over every source -> sink run of a system
    for system, who in (("tributary", ("native", "exec")), ("dora", ("dora",))):
        runs = [metrics[f"{s}.{c}.lost"]["value"] for s in who
                for c in ("lat16", "lat1m", "tput16", "tput1m", "tput1mcap8") if f"{s}.{c}.lost" in metrics]
        if runs:
            metrics[f"lost.{system}"] = {"value": sum(runs), "unit": "msgs", "runs": len(runs)}

    def why(key):
        st = step_of(key)
        if key.startswith("lost."):
            return "no run finished"
        if st and st in fails:
            return fails[st] if fails[st].startswith("skipped") else f"FAILED ({st}, below)"
        return "no result"

    def cell(key, fmt):
        if key in metrics:
            v = metrics[key]["value"]
            s = FMT[fmt](v)
            lost = None
            parts = key.split(".")
            if fmt in ("us", "msgs") and parts[0] in ("native", "exec", "dora") \
                    and f"{parts[0]}.{parts[1]}.lost" in metrics:
                lost = metrics[f"{parts[0]}.{parts[1]}.lost"]["value"]
            if lost:
                s += f" ({lost:g} of {metrics[parts[0] + '.' + parts[1] + '.count']['value']:g} lost)"
            return s, v
        return why(key), None

    print(header)
    print("| workload | tributary | peer | peer figure | tributary / peer | target | met? |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    n_met = n_missed = 0
    for (name, tkey, peer, pkey, fmt, kind, tv) in ROWS:
        tcell, t = cell(tkey, fmt)
        pcell, p = cell(pkey, fmt)
        ratio = None
        if t is not None and p is not None and p != 0:
            ratio = t / p
        if kind == "zero":
            ratio = None
            target = "0 lost"
            met = None if t is None else (t == 0)
        elif kind is None:
            target, met = "—", None
        elif kind == "pct":
            target = f">= {tv * 100:.0f} %"
            met = None if ratio is None else ratio >= tv
        elif kind == ">=":
            target = f">= {tv:g}x"
            met = None if ratio is None else ratio >= tv
        else:
            target = f"<= {tv:g}x ({1 / tv:g}x below)"
            met = None if ratio is None else ratio <= tv
        if ratio is None:
            rcell = "—"
        elif kind == "pct":
            rcell = f"{ratio * 100:.1f} %"
        elif ratio >= 10:
            rcell = f"{ratio:.0f}x"
        else:
            rcell = f"{ratio:.2g}x"
        mcell = "—" if kind is None else ("n/a" if met is None else ("yes" if met else "**no**"))
        if met is True:
            n_met += 1
        elif met is False:
            n_missed += 1
        print(f"| {name} | {tcell} | {peer} | {pcell} | {rcell} | {target} | {mcell} |")
        rows.append({"workload": name, "tributary_key": tkey, "tributary": t, "peer": peer,
                     "peer_key": pkey, "peer_value": p, "unit": fmt, "ratio": ratio,
                     "target": None if kind is None else f"{kind} {tv}", "met": met,
                     "tributary_text": tcell, "peer_text": pcell})
    print()
    failed = sorted(k for k, v in fails.items() if not v.startswith("skipped"))
    skipped = sorted(k for k, v in fails.items() if v.startswith("skipped"))
    print(f"Targets met: {n_met}; missed: {n_missed}; failed steps: {', '.join(failed) or 'none'}"
          + (f"; skipped: {', '.join(skipped)}." if skipped else "."))
    for st in failed:
        print(f"- `{st}`: {fails[st]}")
    with open(out_path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        for st, err in sorted(fails.items()):
            f.write(json.dumps({"failed_step": st, "error": err}) + "\n")


def main(argv):
    cmd = argv[1]
    if cmd == "extract":
        step, log = argv[2], argv[3]
        with open(log, errors="replace") as f:
            text = f.read()
        try:
            for m in extract(step, text):
                print(json.dumps(m))
        except Exception as e:  # the step ran but its output was not what we expected
            print(json.dumps({"step": step, "error": f"unparsable output ({type(e).__name__}: {e}); see {log}"}))
    elif cmd == "fail":
        print(json.dumps({"step": argv[2], "error": argv[3]}))
    elif cmd == "node-manifest":
        kind, path, count, size, rate, warmup, result = argv[2:9]
        node_manifest(kind, path, count, size, rate, warmup, result, *argv[9:13])
    elif cmd == "dora-df":
        dora_df(*argv[2:11])
    elif cmd == "report":
        report(argv[2], argv[3], argv[4] if len(argv) > 4 else "")
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
