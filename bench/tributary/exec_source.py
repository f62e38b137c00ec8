"""tributary exec-node source (`source.exec`): prints COUNT JSON lines `[seq, t_ns, payload]`
(payload: SIZE - 16 'x' characters, so 16 B messages carry just the two int64 stamps), one per
1/RATE s (RATE 0: as fast as the pipe takes them; paced lines are flushed one by one), after a
START_DELAY_S pause. t_ns is CLOCK_MONOTONIC, shared by every process of the machine.
Usage: python exec_source.py COUNT SIZE RATE [START_DELAY_S=0.5]"""
import fcntl, sys, time

try:  # a 1 MiB pipe (the default 64 KiB makes a 1 MB line cost many wake-ups on both sides)
    fcntl.fcntl(1, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
except OSError:
    pass
COUNT, SIZE, RATE = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
DELAY = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
tail = b',"' + b"x" * max(0, SIZE - 16) + b'"]\n'
out = open(1, "wb", buffering=1 << 16, closefd=False)  # buffered whatever PYTHONUNBUFFERED says
time.sleep(DELAY)
period = 1.0 / RATE if RATE > 0 else 0.0
t0 = time.monotonic() + period
for seq in range(COUNT):
    if period:
        d = t0 + seq * period - time.monotonic()
        if d > 0:
            time.sleep(d)
    out.write(b"[%d,%d%s" % (seq, time.monotonic_ns(), tail))
    if period:
        out.flush()
out.flush()
