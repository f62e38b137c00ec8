"""bytewax peer workload P1: map(v+1) -> map(2v) -> filter(even) -> sink(count, sum) over N ints,
one worker, the source handing over batches of CHUNK elements.
Usage: python p1_map_chain.py [N=1000000] [CHUNK=1000]"""
import sys, time
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main
from common import BatchSource, CountSink

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
CHUNK = int(sys.argv[2]) if len(sys.argv) > 2 else 1000

data = list(range(N))
acc = [0, 0]
flow = Dataflow("p1")
s = op.input("in", flow, BatchSource(data, CHUNK))
a = op.map("inc", s, lambda v: v + 1)
b = op.map("double", a, lambda v: v * 2)
c = op.filter("even", b, lambda v: v % 2 == 0)
op.output("out", c, CountSink(acc))

t0 = time.perf_counter()
run_main(flow)
dt = time.perf_counter() - t0
expected = sum(2 * (v + 1) for v in data)
assert acc == [N, expected], (acc, expected)
print(f"bytewax_p1 N={N} chunk={CHUNK} seconds={dt:.3f} elements_per_sec={N/dt:.0f}")
