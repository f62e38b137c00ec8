"""bytewax peer workload P2: sliding-window sum, window 100, step 1, over N floats, one worker,
source batches of CHUNK. bytewax's windowing operators are event-time windows, so a count window
is a keyed stateful_flat_map over a deque of the last 100 elements, summed like IoTPy's
map_window(func=sum).
Usage: python p2_sliding_sum.py [N=1000000] [CHUNK=1000]"""
import sys, time, random
from collections import deque
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main
from common import BatchSource, CountSink

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
CHUNK = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
W = 100

rng = random.Random(42)
data = [rng.random() for _ in range(N)]


def window_sum(d, x):
    if d is None:
        d = deque(maxlen=W)
    d.append(x)
    return d, ([sum(d)] if len(d) == W else [])


acc = [0, 0.0]
flow = Dataflow("p2")
s = op.input("in", flow, BatchSource(data, CHUNK))
k = op.key_on("key", s, lambda _x: "k")
w = op.stateful_flat_map("window", k, window_sum)
v = op.key_rm("unkey", w)
op.output("out", v, CountSink(acc))

t0 = time.perf_counter()
run_main(flow)
dt = time.perf_counter() - t0
assert acc[0] == N - W + 1, acc
print(f"bytewax_p2 N={N} window={W} chunk={CHUNK} seconds={dt:.3f} input_elements_per_sec={N/dt:.0f}")
