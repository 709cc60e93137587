"""Speed ratios of fastgd's core, measured in one process (medians of blocks of runs).

    make bench            # or: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
                          #         .venv/bin/python benchmarks/run.py [--rows N] [--repeats R]

Prints a Markdown table for benchmarks/README.md. Every time is compared with one
`X @ coef` (OpenBLAS GEMV: a single read of X, the memory floor) and with the NumPy
reference (fastgd.reference, the textbook code). Never run as a timed test.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from threadpoolctl import threadpool_info

import fastgd
from fastgd import _compiled, reference
from fastgd._validation import effective_n_threads


def block_medians(candidates: dict, repeats: int, rounds: int = 3, warmup: float = 0.3) -> dict:
    """Median seconds of each callable over `rounds` rounds of `repeats` runs.

    Each candidate runs in a block after `warmup` seconds of untimed calls: right after an
    OpenBLAS call its threads keep spinning on the cores for a while (and OpenMP's after
    ours), and an idle virtual CPU comes back slowly; both slowed the first calls of a
    block by up to 2 x here, which a training loop never sees. Rounds spread machine drift
    over all candidates alike.
    """
    times = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            while time.perf_counter() - start < warmup:
                fn()
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def problem(n, d, dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d), dtype=np.float32).astype(dtype, copy=False)
    y = (X @ rng.standard_normal(d).astype(dtype)).astype(dtype)
    return X, y


def fit(X, y, epochs):
    return lambda: fastgd.GDRegressor(learning_rate=0.1, max_epochs=epochs, tol=None).fit(X, y)


def machine() -> str:
    blas = next((f"{i['internal_api']} {i['version']} ({i.get('architecture')}, "
                 f"{i['num_threads']} threads)" for i in threadpool_info()
                 if i["user_api"] == "blas"), "unknown BLAS")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs; fastgd {fastgd.__version__} ({_compiled.SIMD}, "
            f"{effective_n_threads(None)} threads); NumPy {np.__version__}; {blas}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5, help="runs per block")
    args = parser.parse_args()
    n, d, r = args.rows, args.features, args.repeats
    coef = np.zeros(d)

    X, y = problem(n, d, np.float64)
    X32, y32 = problem(n, d, np.float32)
    XF = np.asfortranarray(X)
    t = block_medians({
        "gemv": lambda: X @ coef,
        "fastgd": lambda: fastgd.loss_and_grad(X, y, coef, 0.0),
        "fastgd_1t": lambda: fastgd.loss_and_grad(X, y, coef, 0.0, n_threads=1),
        "reference": lambda: reference.loss_and_grad(X, y, coef, 0.0),
        "gemv32": lambda: X32 @ coef.astype(np.float32),
        "fastgd32": lambda: fastgd.loss_and_grad(X32, y32, coef, 0.0),
        "fastgd_F": lambda: fastgd.loss_and_grad(XF, y, coef, 0.0),
    }, r)
    fits = block_medians({"fit1": fit(X, y, 1), "fit21": fit(X, y, 21)}, 2)
    epoch = (fits["fit21"] - fits["fit1"]) / 20

    print(f"Machine: {machine()}\n")
    print(f"Problem: {n:,} x {d}, C order unless noted; medians of 3 rounds of {r} runs.\n")
    print("| measurement | time | ratio | target |")
    print("|---|---|---|---|")
    rows = [
        ("one `X @ coef` (GEMV, float64): the memory floor", t["gemv"], "1.00", ""),
        ("`loss_and_grad` float64 / GEMV", t["fastgd"], f"{t['fastgd'] / t['gemv']:.2f}",
         "<= 1.25"),
        ("`reference.loss_and_grad` / `loss_and_grad` (speed-up)", t["reference"],
         f"{t['reference'] / t['fastgd']:.2f}", ">= 1.8"),
        ("`loss_and_grad` float32 / float64", t["fastgd32"],
         f"{t['fastgd32'] / t['fastgd']:.2f}", "<= 0.65"),
        ("`loss_and_grad` float32 / float32 GEMV", t["fastgd32"],
         f"{t['fastgd32'] / t['gemv32']:.2f}", ""),
        ("GDRegressor cost per epoch ((21 - 1 epochs) / 20) / GEMV", epoch,
         f"{epoch / t['gemv']:.2f}", "<= 1.3"),
        ("`loss_and_grad` 1 thread / all threads (speed-up)", t["fastgd_1t"],
         f"{t['fastgd_1t'] / t['fastgd']:.2f}", ""),
        ("`loss_and_grad` F order / GEMV", t["fastgd_F"], f"{t['fastgd_F'] / t['gemv']:.2f}", ""),
    ]
    for name, seconds, ratio, target in rows:
        print(f"| {name} | {seconds * 1e3:.1f} ms | {ratio} | {target} |")


if __name__ == "__main__":
    main()
