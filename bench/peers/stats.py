"""Summary of one source -> sink run, the same for every system (dora-rs and tributary's exec
nodes use this file; tributary's native sink computes the same in Rust)."""


def summarize(count, size, warmup, seqs, sent, recv):
    received = len(set(seqs))
    out = {"count": count, "size": size, "received": received, "lost": count - received}
    lat = sorted((r - s) / 1e3 for q, s, r in zip(seqs, sent, recv) if q >= warmup)
    if lat:
        pct = lambda p: lat[round((len(lat) - 1) * p)]
        out.update(lat_p50_us=pct(0.50), lat_p99_us=pct(0.99), lat_max_us=lat[-1])
    if recv:
        dt = (max(recv) - min(sent)) / 1e9
        out.update(seconds=dt, msgs_per_s=received / dt, mbytes_per_s=received * size / dt / 1e6)
    return out
