"""tributary exec-node sink (`sink.exec`): reads the JSON lines `[seq, t_ns, payload]` written
by tributary, stamps each on arrival (before parsing; only the two leading integers are parsed,
as the dora-rs sink reads only the 16-byte header), and at end of input writes the summary
(bench/peers/stats.py) as JSON to OUT.
Usage: python exec_sink.py COUNT SIZE WARMUP OUT"""
import fcntl, json, os, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "peers"))
from stats import summarize  # noqa: E402

try:  # a 1 MiB pipe (the default 64 KiB makes a 1 MB line cost many wake-ups on both sides)
    fcntl.fcntl(0, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
except OSError:
    pass
COUNT, SIZE, WARMUP, OUT = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
inp = open(0, "rb", buffering=1 << 21, closefd=False)
seqs, sent, recv = [], [], []
while True:
    line = inp.readline()
    if not line:
        break
    now = time.monotonic_ns()
    head = line[1:64].split(b",", 2)
    seqs.append(int(head[0])); sent.append(int(head[1].rstrip(b"]\n ")))
    recv.append(now)
with open(OUT, "w") as f:
    json.dump(summarize(COUNT, SIZE, WARMUP, seqs, sent, recv), f)
