"""dora-rs peer: sink node. Stamps each message on arrival, and when its input closes writes
{received, lost, latency percentiles, throughput} as JSON to OUT.
Configured by environment: COUNT, SIZE, WARMUP, OUT."""
import json, os, sys, time
import numpy as np
from dora import Node

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from stats import summarize  # noqa: E402  (bench/peers/stats.py)

COUNT = int(os.environ["COUNT"])
SIZE = max(16, int(os.environ["SIZE"]))
WARMUP = int(os.environ.get("WARMUP", "0"))
OUT = os.environ["OUT"]

node = Node()
seqs, sent, recv = [], [], []
for event in node:
    if event["type"] == "INPUT":
        now = time.monotonic_ns()
        h = event["value"].slice(0, 16).to_numpy(zero_copy_only=False).view(np.int64)
        seqs.append(int(h[0])); sent.append(int(h[1])); recv.append(now)
    elif event["type"] == "STOP":
        break

with open(OUT, "w") as f:
    json.dump(summarize(COUNT, SIZE, WARMUP, seqs, sent, recv), f)
