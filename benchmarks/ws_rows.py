"""The 64 KiB rows of test_bench_websocket.py, as its _table() measures them (min of 7).

Usage: PYTHONPATH=ROOT python benchmarks/ws_rows.py ROOT  (ROOT: a checkout, e.g. an old one)
"""
import sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[1] + "/benchmarks")
import test_bench_websocket as b
for size, text, d in b.CASES:
    if size < 1024:
        continue
    fc = d == "client->backend"
    reads = b._frames(size, text, masked=fc)
    r = {n: b.COUNTS[size] / min(b._timed(f, reads, fc) for _ in range(7))
         for n, f in b.CONTENDERS.items()}
    print(f"{sys.argv[1].split('/')[-1]:14} | 64 KiB {'text' if text else 'binary'} | {d} | "
          f"{r['wsproto']:,.0f} | {r['relay']:,.0f} | {r['relay'] / r['wsproto']:.2f}x", flush=True)
