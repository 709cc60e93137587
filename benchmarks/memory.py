"""Peak memory of a fit against the size of X: fastgd reads X in place.

    .venv/bin/python benchmarks/memory.py [--rows N] [--features D]

Each case runs in a fresh Python process: it makes X (C or F order, float64 or float32,
or a memory-mapped .npy file), then fits GDRegressor for 5 epochs (full batch, then
batches of 256) while a thread samples the process's anonymous resident memory (RssAnon:
heap and arrays, not mapped files) every 2 ms. The growth is what the fit added at its
worst moment: vectors of n, buffers, never a copy of X.
Prints a Markdown table for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CASE = """
import json, sys, threading, time
import numpy as np
from fastgd import GDRegressor

def anonymous_kb():  # resident memory that is not a mapped file: heap, arrays
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))

n, d, dtype, order, batch, path = json.loads(sys.argv[1])
if path:
    X = np.load(path, mmap_mode="r")
else:  # filled by blocks: no temporary as large as X
    X = np.empty((n, d), dtype=dtype, order=order)
    for lo in range(0, n, 50_000):
        X[lo:lo + 50_000] = np.random.default_rng(lo).standard_normal((min(50_000, n - lo), d))
y = np.random.default_rng(1).standard_normal(n)
before, peak, done = anonymous_kb(), [0], threading.Event()

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], anonymous_kb())
        time.sleep(0.002)

sampler = threading.Thread(target=sample)
sampler.start()
GDRegressor(max_epochs=5, tol=None, batch_size=batch, random_state=0).fit(X, y)
done.set()
sampler.join()
print(json.dumps({"before_kb": before, "after_kb": max(peak[0], anonymous_kb()),
                  "x_bytes": X.nbytes}))
"""


def measure(n, d, dtype, order, batch, path=None) -> dict:
    out = subprocess.run([sys.executable, "-c", CASE,
                          json.dumps([n, d, dtype, order, batch, path])],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=100)
    args = parser.parse_args()
    n, d = args.rows, args.features
    print(f"{n:,} x {d}; peak growth of anonymous resident memory during "
          f"GDRegressor(max_epochs=5).fit, against X.nbytes\n")
    print("| X | batch | X MB | peak growth MB | growth / X |")
    print("|---|---|---|---|---|")
    cases = [(dtype, order, batch) for dtype in ("float64", "float32")
             for order in ("C", "F") for batch in (None, 256)]
    for dtype, order, batch in cases:
        r = measure(n, d, dtype, order, batch)
        growth = (r["after_kb"] - r["before_kb"]) * 1024
        print(f"| {dtype}, {order} order | {batch or 'full'} | {r['x_bytes'] / 1e6:.0f} | "
              f"{growth / 1e6:.1f} | {growth / r['x_bytes']:.3f} |", flush=True)
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/X.npy"
        X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, d))
        for lo in range(0, n, 100_000):
            X[lo:lo + 100_000] = np.random.default_rng(lo).standard_normal(
                (min(100_000, n - lo), d))
        X.flush()
        del X
        for batch in (None, 256):
            r = measure(n, d, "float64", "C", batch, path)
            growth = (r["after_kb"] - r["before_kb"]) * 1024
            print(f"| float64, memory-mapped file | {batch or 'full'} | "
                  f"{r['x_bytes'] / 1e6:.0f} | {growth / 1e6:.1f} | "
                  f"{growth / r['x_bytes']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
