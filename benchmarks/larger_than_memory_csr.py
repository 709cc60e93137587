"""A shuffled epoch over a CSR matrix larger than memory (issue 21), against one plain read
of its files: what `fastgd train --stream` makes of a table with text columns.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python \\
        benchmarks/larger_than_memory_csr.py [--rows 64000000] [--per-row 32] [--dir DIR]
        [--keep]

Makes X, rows x 65,536 CSR with --per-row stored float64 values a row (one in each of
--per-row equal ranges of columns: canonical rows), int64 indices (its entries exceed
2^31 at the default size: 2,048,000,000, 30.5 GiB with the row pointers), as .npy files
in DIR/fastgd-larger-than-memory-csr/ and y = X w + noise; deletes them at the end
unless --keep (then a second run reuses them). As benchmarks/larger_than_memory.py, each
from a cold page cache and in a fresh process: one plain read of the three files; one
SGD epoch at batch 4,096 (standardize=False, a numeric rate) in file order and
shuffled (blocks, as X is larger than the memory available): seconds, GB read, peak
anonymous memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from larger_than_memory import EPOCH, anonymous, drop_cache, fit, plain_read  # noqa: E402

D = 1 << 16
CHUNK_ROWS = 1 << 20


def make(directory: Path, n: int, per_row: int, w: np.ndarray) -> np.ndarray:
    """X's arrays by chunks into .npy files (never whole in memory), and its targets."""
    directory.mkdir()
    nnz = n * per_row
    data = np.lib.format.open_memmap(directory / "data.npy", "w+", np.float64, (nnz,))
    indices = np.lib.format.open_memmap(directory / "indices.npy", "w+", np.int64, (nnz,))
    np.save(directory / "indptr.npy", np.arange(n + 1, dtype=np.int64) * per_row)
    (directory / "shape.json").write_text(json.dumps([n, D]))
    width = D // per_row
    y = np.empty(n)
    for lo in range(0, n, CHUNK_ROWS):
        rng = np.random.default_rng(lo)
        m = min(CHUNK_ROWS, n - lo)
        columns = rng.integers(0, width, (m, per_row)) + np.arange(per_row) * width
        values = rng.standard_normal((m, per_row))
        data[lo * per_row:(lo + m) * per_row] = values.ravel()
        indices[lo * per_row:(lo + m) * per_row] = columns.ravel()
        y[lo:lo + m] = (values * w[columns]).sum(axis=1) + 0.1 * rng.standard_normal(m)
    data.flush()
    indices.flush()
    return y


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=64_000_000)
    parser.add_argument("--per-row", type=int, default=32)
    parser.add_argument("--dir", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    from fastgd.bench import machine

    print(machine())
    n = args.rows
    w = np.random.default_rng(12345).standard_normal(D)
    path = Path(args.dir) / "fastgd-larger-than-memory-csr"
    y_path, coef_path = path.with_suffix(".y.npy"), path.with_suffix(".coef.npy")
    try:
        if not (path.exists() and y_path.exists()):
            shutil.rmtree(path, ignore_errors=True)
            start = time.perf_counter()
            np.save(y_path, make(path, n, args.per_row, w))
            print(f"made {path} in {time.perf_counter() - start:.0f} s", flush=True)
        size = sum(f.stat().st_size for f in path.iterdir())
        drop_cache(path)
        read = plain_read(path)
        rows = [("read", {"seconds": read, "read_gb": size / 1e9})]
        for name, shuffle in (("in order", False), ("shuffled", True)):
            drop_cache(path)
            rows.append((name, fit(path, y_path, {**EPOCH, "learning_rate": 0.01,
                                                  "shuffle": shuffle}, 900.0, coef_path)))
            print(name, rows[-1][1], flush=True)
    finally:
        coef_path.unlink(missing_ok=True)
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)
            y_path.unlink(missing_ok=True)
    print(f"\nX: {n:,} x {D:,} CSR, {n * args.per_row:,} stored float64 values, int64 "
          f"indices: {size / 2**30:.1f} GiB; one SGD epoch, batch 4,096\n")
    print("| epoch | seconds | x one read | GB read | anonymous memory |")
    print("|---|---|---|---|---|")
    for name, result in rows:
        print(f"| {name} | {result['seconds']:.1f} | {result['seconds'] / read:.2f} | "
              f"{result['read_gb']:.1f} | {anonymous(result, size)} |")


if __name__ == "__main__":
    main()
