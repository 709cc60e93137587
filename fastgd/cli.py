"""The `fastgd` command line (also `python -m fastgd`)."""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastgd
from fastgd import reference
from fastgd._validation import effective_n_threads

SEED_X = np.array([[1.0], [2.0], [3.0]])
SEED_Y = np.array([2.0, 4.0, 6.0])


def seed_walkthrough(epochs: int = 10, learning_rate: float = 0.1):
    """The seed articles' loop by hand: forward pass, loss, gradient, update.

    Returns one row per epoch: (epoch, loss, dL/dw, dL/db, w, b), the loss and gradients
    at the parameters before the update and w, b after it.
    """
    w, b = np.zeros(1), 0.0
    rows = []
    for epoch in range(1, epochs + 1):
        loss, grad_w, grad_b = fastgd.loss_and_grad(SEED_X, SEED_Y, w, b)
        w, b = w - learning_rate * grad_w, b - learning_rate * grad_b
        rows.append((epoch, loss, float(grad_w[0]), grad_b, float(w[0]), b))
    return rows


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm up: page in X, start the thread pools
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def speed_comparison(n_rows: int, n_features: int, repeats: int = 5) -> dict:
    """Seconds for one gradient pass: fastgd, the NumPy reference, and one X @ w."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_rows, n_features))
    y = X @ rng.standard_normal(n_features) + rng.standard_normal(n_rows)
    coef = np.zeros(n_features)
    return {
        "fastgd": median_seconds(lambda: fastgd.loss_and_grad(X, y, coef, 0.0), repeats),
        "reference": median_seconds(lambda: reference.loss_and_grad(X, y, coef, 0.0), repeats),
        "gemv": median_seconds(lambda: X @ coef, repeats),
    }


def demo(args) -> int:
    print("fastgd demo: training is a loop of four steps, repeated: forward pass")
    print("(y_hat = w x + b), loss (mean squared error), gradient, update")
    print("(parameter -= learning rate * gradient).")
    print("Seed data: x = 1, 2, 3; y = 2, 4, 6; start at w = b = 0; learning rate 0.1.\n")
    print(f"{'epoch':>5} {'loss':>10} {'dL/dw':>10} {'dL/db':>10} {'w':>9} {'b':>9}")
    for epoch, loss, gw, gb, w, b in seed_walkthrough():
        print(f"{epoch:>5} {loss:>10.4f} {gw:>10.4f} {gb:>10.4f} {w:>9.4f} {b:>9.4f}")
    print("\n(loss and gradients at the parameters before each update; w and b after it.)")
    print("The source article prints loss 0.34, w 1.681 and b 0.627 for epoch 2: arithmetic")
    print("slips. The correct values are loss 0.2963, w 1.6711, b 0.6933, as above.\n")

    n, d = args.rows, args.features
    t = speed_comparison(n, d)
    print(f"One gradient pass on {n:,} x {d} float64 ({effective_n_threads(None)} thread(s)): "
          f"fastgd {t['fastgd'] * 1e3:.1f} ms, NumPy reference {t['reference'] * 1e3:.1f} ms "
          f"-> {t['reference'] / t['fastgd']:.1f}x faster "
          f"({n / t['fastgd'] / 1e6:.0f}M rows/s; one X @ w alone takes {t['gemv'] * 1e3:.1f} ms).")
    return 0


def info(args) -> int:
    fastgd.show_config()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastgd", description=fastgd.__doc__)
    parser.add_argument("--version", action="version", version=f"fastgd {fastgd.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("demo", help="the seed walkthrough and a speed comparison")
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the speed problem")
    p.add_argument("--features", type=int, default=100, help="features of the speed problem")
    p.set_defaults(run=demo)
    from fastgd import bench

    p = commands.add_parser("bench", help="fastgd's speed on this machine, against NumPy",
                            description=bench.__doc__.splitlines()[0])
    bench.add_arguments(p)
    p.set_defaults(run=bench.bench)
    p = commands.add_parser("info", help="how fastgd was built and how it runs here",
                            description="OpenMP on or off and its runtime, the SIMD build, "
                            "bounds checking, default threads, NumPy's BLAS, versions. "
                            "Example: fastgd info")
    p.set_defaults(run=info)
    args = parser.parse_args(argv)
    return args.run(args)
