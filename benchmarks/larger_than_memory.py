"""A shuffled epoch over a file larger than memory (issue 21), against one plain read of it.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python \\
        benchmarks/larger_than_memory.py [--rows 80000000] [--features 100] [--dir DIR]

Makes X, rows x features float32 standard normal (80M x 100: 29.8 GiB, beyond this
machine's 24 GB), as a .npy file in DIR, and y = X w + noise; deletes the file at the end.
Before each measurement the file's pages are dropped from the page cache
(posix_fadvise DONTNEED), so each starts cold. Then, each in a fresh process:

- `read`: one plain read of the file (readinto a 64 MB buffer): the floor;
- `in order`: GDRegressor(optimizer="sgd", batch_size=4096, max_epochs=1,
  shuffle=False) on np.load(path, mmap_mode="r"), a numeric learning rate and
  standardize=False (one read of X: the epoch alone);
- `shuffled`: the same with the default shuffle=True (blocks, as X is larger than the
  memory available);
- `rows`: shuffle="rows", the full permutation (what shuffle=True did before issue 21),
  cut off after --rows-budget seconds (the others after 900 s);
- the shuffled epoch with standardize=True and learning_rate="auto" (the defaults it
  skipped), and GDRegressor() with all its defaults (FITS says what each reads).

For each: seconds, GB read from the disk (the process's read_bytes in /proc/self/io) and
the peak of anonymous memory (RssAnon, sampled every 10 ms: heap and arrays, not the
mapped file). The streamed model's R^2 on 1,000,000 held-out rows is compared with an
in-memory fit (default settings) of a 10 % sample of the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHUNK_ROWS = 1 << 20

FIT = """
import json, os, sys, threading, time
import numpy as np
from fastgd import GDRegressor

def status_kb(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))

def read_bytes():
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("read_bytes:"))

path, y_path, settings, budget = json.loads(sys.argv[1])
if os.path.isdir(path):  # CSR: its three arrays, memory-mapped from .npy files
    import scipy.sparse
    parts = {name: np.load(os.path.join(path, name + ".npy"), mmap_mode="r")
             for name in ("data", "indices", "indptr")}
    with open(os.path.join(path, "shape.json")) as f:
        X = scipy.sparse.csr_matrix(tuple(json.load(f)), dtype=parts["data"].dtype)
    X.data, X.indices, X.indptr = parts["data"], parts["indices"], parts["indptr"]
else:
    X = np.load(path, mmap_mode="r")
y = np.load(y_path)
peak, done = [status_kb("RssAnon:")], threading.Event()

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], status_kb("RssAnon:"))
        time.sleep(0.01)

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
start, io = time.perf_counter(), read_bytes()
model = GDRegressor(**settings)

def cut_off():  # the epoch is one call into the kernel: the process ends it
    print(json.dumps({"seconds": time.perf_counter() - start, "cut_off": True,
                      "read_gb": (read_bytes() - io) / 1e9, "anon_mb": peak[0] / 1024}),
          flush=True)
    os._exit(0)

threading.Timer(budget, cut_off).start()
model.fit(X, y)
seconds = time.perf_counter() - start
done.set()
np.save(sys.argv[2], np.concatenate([model.coef_, [model.intercept_]]))
print(json.dumps({"seconds": seconds, "read_gb": (read_bytes() - io) / 1e9,
                  "anon_mb": peak[0] / 1024, "cut_off": False}), flush=True)
os._exit(0)  # the cut-off's timer thread would keep the process
"""


EPOCH = dict(optimizer="sgd", learning_rate=0.05, batch_size=4096, max_epochs=1, tol=None,
             standardize=False, random_state=0)
FITS = {  # GDRegressor's settings for each row of the table
    "in order": {**EPOCH, "shuffle": False},
    "shuffled": {**EPOCH, "shuffle": True},
    "rows": {**EPOCH, "shuffle": "rows"},
    # The same epoch with the defaults it skipped: standardized (a read for the column
    # statistics) and learning_rate="auto" (a read for the largest row, the power
    # iteration on a sample of blocks).
    "shuffled, auto rate, standardized": {**EPOCH, "learning_rate": "auto",
                                          "standardize": True},
    # GDRegressor() as it comes: optimizer="auto" (least squares: Newton, whose one
    # iteration reads X once for its moments), to convergence.
    "GDRegressor() defaults": {},
}


def make(path: Path, n: int, d: int, w: np.ndarray):
    """X by chunks into a .npy file (never whole in memory), and its targets."""
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    y = np.empty(n, dtype=np.float32)
    for lo in range(0, n, CHUNK_ROWS):
        rng = np.random.default_rng(lo)
        chunk = rng.standard_normal((min(CHUNK_ROWS, n - lo), d), dtype=np.float32)
        X[lo:lo + len(chunk)] = chunk
        y[lo:lo + len(chunk)] = chunk @ w + rng.standard_normal(len(chunk)).astype(
            np.float32)
    X.flush()
    del X
    return y


def files(path: Path) -> list:
    """The file, or a directory's files (CSR's arrays)."""
    return sorted(path.iterdir()) if path.is_dir() else [path]


def drop_cache(path: Path) -> None:
    for name in files(path):
        with open(name, "rb") as f:
            os.fsync(f.fileno())
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def plain_read(path: Path) -> float:
    buffer = bytearray(64 << 20)
    start = time.perf_counter()
    for name in files(path):
        with open(name, "rb", buffering=0) as f:
            while f.readinto(buffer):
                pass
    return time.perf_counter() - start


def fit(path, y_path, settings, budget, coef_path) -> dict:
    out = subprocess.run([sys.executable, "-c", FIT, json.dumps(
        [str(path), str(y_path), settings, budget]), str(coef_path)], capture_output=True,
        text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def anonymous(result: dict, size: int) -> str:
    """A fit's peak anonymous memory, and its share of X's `size` bytes ("" for a read)."""
    if "anon_mb" not in result:
        return ""
    return f"{result['anon_mb']:.0f} MB ({result['anon_mb'] * 2**20 / size:.2%} of X)"


def r2(coef, X, y) -> float:
    residual = y - (X @ coef[:-1] + coef[-1])
    return 1 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=80_000_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--dir", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--rows-budget", type=float, default=120.0)
    args = parser.parse_args()
    from fastgd import GDRegressor
    from fastgd.bench import machine

    print(machine())
    n, d = args.rows, args.features
    w = np.random.default_rng(12345).standard_normal(d).astype(np.float32)
    path = Path(args.dir) / "fastgd-larger-than-memory.npy"
    y_path, coef_path = path.with_suffix(".y.npy"), path.with_suffix(".coef.npy")
    try:
        start = time.perf_counter()
        np.save(y_path, make(path, n, d, w))
        print(f"made {path} ({path.stat().st_size / 2**30:.1f} GiB) in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        drop_cache(path)
        read = plain_read(path)
        rows = [("read", {"seconds": read, "read_gb": path.stat().st_size / 1e9})]
        models = {}
        for name, settings in FITS.items():
            drop_cache(path)
            coef_path.unlink(missing_ok=True)
            budget = args.rows_budget if name == "rows" else 900.0
            rows.append((name, fit(path, y_path, settings, budget, coef_path)))
            if not rows[-1][1]["cut_off"]:
                models[name] = np.load(coef_path)
            print(name, rows[-1][1], flush=True)
        test_rng = np.random.default_rng(1)
        X_test = test_rng.standard_normal((1_000_000, d), dtype=np.float32)
        y_test = X_test @ w + test_rng.standard_normal(1_000_000).astype(np.float32)
        X = np.load(path, mmap_mode="r")
        sample = np.sort(np.random.default_rng(2).choice(n, n // 10, replace=False))
        start = time.perf_counter()
        X_sample, y_sample = X[sample], np.load(y_path)[sample]
        sampled = GDRegressor().fit(X_sample, y_sample)
        sample_seconds = time.perf_counter() - start
        accuracy = {name: r2(coef, X_test, y_test) for name, coef in models.items()}
        accuracy["10 % sample"] = r2(np.concatenate([sampled.coef_, [sampled.intercept_]]),
                                     X_test, y_test)
    finally:
        for p in (path, y_path, coef_path):
            p.unlink(missing_ok=True)
    print(f"\nX: {n:,} x {d} float32, {n * d * 4 / 2**30:.1f} GiB; one SGD epoch, batch "
          f"4,096\n")
    print("| epoch | seconds | x one read | GB read | anonymous memory | R^2 (held out) |")
    print("|---|---|---|---|---|---|")
    for name, result in rows:
        cut = " (cut off)" if result.get("cut_off") else ""
        print(f"| {name} | {result['seconds']:.1f}{cut} | {result['seconds'] / read:.2f} | "
              f"{result['read_gb']:.1f} | {anonymous(result, n * d * 4)} | "
              f"{accuracy.get(name, float('nan')):.5f} |")
    print(f"| 10 % sample in memory (default fit, {sample_seconds:.0f} s with its read) | "
          f"| | | | {accuracy['10 % sample']:.5f} |")


if __name__ == "__main__":
    main()
