"""`fastgd train` on a Parquet file larger than memory (issue 21).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/train_parquet.py \\
        [--rows 75000000] [--features 100] [--dir DIR]

Writes a Parquet file of --rows rows of --features float32 standard-normal columns and a
target y = X w + noise (75M x 100: 30 GB, beyond this machine's 24 GB; row groups of
1M rows, no compression: random floats do not compress), then runs, from a cold page
cache, the command a user types:

    fastgd train FILE --target y --optimizer sgd --learning-rate 0.05 --batch-size 4096
        --epochs 1 -q --json RESULT

which streams the file by itself (it is over a quarter of the memory available) into
memory-mapped rows on disk beside it, trains, tests on the held-out fifth, and removes
the rows. Reports the command's wall time, the peak of its anonymous memory (RssAnon,
sampled every 50 ms) and what it printed; deletes the file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROW_GROUP = 1 << 20


def make(path: Path, n: int, d: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    w = np.random.default_rng(12345).standard_normal(d).astype(np.float32)
    names = [f"x{j}" for j in range(d)]
    schema = pa.schema([(name, pa.float32()) for name in names + ["y"]])
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for lo in range(0, n, ROW_GROUP):
            rng = np.random.default_rng(lo)
            X = rng.standard_normal((min(ROW_GROUP, n - lo), d), dtype=np.float32)
            y = X @ w + rng.standard_normal(len(X), dtype=np.float32)
            writer.write_table(pa.table([*X.T, y], schema=schema))


def anonymous_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))
    except (OSError, StopIteration):
        return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=75_000_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--dir", default=str(Path(__file__).resolve().parents[1]))
    args = parser.parse_args()
    from fastgd.bench import machine

    print(machine())
    path = Path(args.dir) / "fastgd-larger-than-memory.parquet"
    result = path.with_suffix(".json")
    try:
        start = time.perf_counter()
        make(path, args.rows, args.features)
        size = path.stat().st_size
        print(f"made {path} ({size / 1e9:.1f} GB) in {time.perf_counter() - start:.0f} s",
              flush=True)
        with open(path, "rb") as f:
            os.fsync(f.fileno())
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        command = [str(Path(sys.executable).with_name("fastgd")), "train", str(path),
                   "--target", "y", "--optimizer", "sgd", "--learning-rate", "0.05",
                   "--batch-size", "4096", "--epochs", "1", "-q", "--json", str(result)]
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        peak = [0]

        def sample():
            while process.poll() is None:
                peak[0] = max(peak[0], anonymous_kb(process.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        out = process.communicate()[0]
        seconds = time.perf_counter() - start
        sampler.join()
        print(" ".join(command[1:]))
        print(out)
        if process.returncode:
            raise SystemExit(f"fastgd train failed with status {process.returncode}")
        metrics = json.loads(result.read_text())
    finally:
        path.unlink(missing_ok=True)
        result.unlink(missing_ok=True)
    print("| file | command | wall time | peak anonymous memory | test R^2 |")
    print("|---|---|---|---|---|")
    print(f"| {args.rows:,} x {args.features} float32 Parquet, {size / 1e9:.1f} GB | "
          f"`fastgd train` (streams by itself) | {seconds:.0f} s | {peak[0] / 1024:.0f} MB "
          f"({peak[0] * 1024 / size:.1%} of the file) | {metrics['metrics']['r2']:.5f} |")


if __name__ == "__main__":
    main()
