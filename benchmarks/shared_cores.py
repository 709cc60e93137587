"""A fit's time on a quiet machine against its time while another process keeps a core busy
(a spinning loop) or fits its own model with fastgd (issue 19: at most 2.5 x), in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/shared_cores.py

Each fit's median of N runs after one to warm up (fastgd._timing.median_seconds), for the default n_threads (all cores) and
n_threads=1; prints a Markdown table for benchmarks/README.md.
"""

from __future__ import annotations

import subprocess
import sys
import time
import warnings

from sklearn.datasets import load_digits

from fastgd import GDClassifier, GDRegressor
from fastgd._timing import median_seconds
from fastgd.bench import machine
from time_to_model import data

NEIGHBOURS = {
    "a spinning loop": "while True: pass",
    "another fastgd fit": ("from sklearn.datasets import load_digits\n"
                           "from fastgd import GDClassifier\n"
                           "X, y = load_digits(return_X_y=True)\n"
                           "while True: GDClassifier().fit(X, y)"),
}


def cases():
    """(name, fit(n_threads), runs) of each fit measured."""
    Xl, yl = data("log", 2_000, 20, 2)
    Xs, ys = data("squared", 2_000, 20, 0)
    Xd, yd = load_digits(return_X_y=True)
    Xb, yb = data("log", 200_000, 50, 2)
    return [("logistic 2,000 x 20", lambda t: GDClassifier(alpha=1e-4, n_threads=t).fit(Xl, yl), 20),
            ("least squares 2,000 x 20", lambda t: GDRegressor(n_threads=t).fit(Xs, ys), 20),
            ("digits (softmax, 10 classes)", lambda t: GDClassifier(n_threads=t).fit(Xd, yd), 20),
            ("logistic 200,000 x 50", lambda t: GDClassifier(alpha=1e-4, n_threads=t).fit(Xb, yb),
             5)]


def main():
    warnings.simplefilter("ignore")
    print(machine())
    measured = cases()
    results = {}
    for neighbour in (None, *NEIGHBOURS):
        other = (None if neighbour is None
                 else subprocess.Popen([sys.executable, "-c", NEIGHBOURS[neighbour]]))
        time.sleep(1.0)  # the neighbour under way
        try:
            for name, fit, runs in measured:
                for threads in (None, 1):
                    results[name, threads, neighbour] = median_seconds(lambda: fit(threads), runs)
        finally:
            if other is not None:
                other.kill()
                other.wait()
    print("\n| fit | n_threads | quiet ms | " + " | ".join(
        f"beside {n} ms (x quiet)" for n in NEIGHBOURS) + " |")
    print("|---|---|---|" + "---|" * len(NEIGHBOURS))
    for name, _, _ in measured:
        for threads in (None, 1):
            quiet = results[name, threads, None]
            cells = [f"{results[name, threads, n] * 1e3:.1f} "
                     f"({results[name, threads, n] / quiet:.2f}x)" for n in NEIGHBOURS]
            print(f"| {name} | {threads or 'all'} | {quiet * 1e3:.1f} | " + " | ".join(cells)
                  + " |")


if __name__ == "__main__":
    main()
