"""dora-rs peer: source node. Sends COUNT messages of SIZE bytes (uint8 arrays; the first 16
bytes carry the sequence number and the CLOCK_MONOTONIC send time in ns as two int64), one per
1/RATE s (RATE = 0: as fast as send_output returns), after a START_DELAY_S pause.
Configured by environment: COUNT, SIZE, RATE, START_DELAY_S."""
import os, time
import numpy as np
import pyarrow as pa
from dora import Node

COUNT = int(os.environ["COUNT"])
SIZE = max(16, int(os.environ["SIZE"]))
RATE = float(os.environ.get("RATE", "0"))
DELAY = float(os.environ.get("START_DELAY_S", "0.5"))

node = Node()
buf = np.zeros(SIZE, dtype=np.uint8)
buf[16:] = ord("x")
hdr = buf[:16].view(np.int64)
time.sleep(DELAY)
period = 1.0 / RATE if RATE > 0 else 0.0
t0 = time.monotonic() + period
for seq in range(COUNT):
    if period:
        d = t0 + seq * period - time.monotonic()
        if d > 0:
            time.sleep(d)
    hdr[0] = seq
    hdr[1] = time.monotonic_ns()
    node.send_output("data", pa.array(buf))
