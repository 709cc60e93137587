"""Speed ratios of fastgd's core, measured in one process (medians of blocks of runs).

    make bench            # or: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
                          #         .venv/bin/python benchmarks/run.py [--rows N] [--repeats R]

Prints a Markdown table for benchmarks/README.md. Every time is compared with one
`X @ coef` (OpenBLAS GEMV: a single read of X, the memory floor) and with the NumPy
reference (fastgd.reference, the textbook code). Never run as a timed test.
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np

import fastgd
from fastgd import _compiled, losses, reference
from fastgd._problem import Problem
from fastgd._threads import effective_n_threads
from fastgd._timing import block_medians as block_medians_of
from fastgd.bench import describe, fastgd_epoch, machine, problem, torch_epoch


ROUNDS = 7  # this shared VM has slow phases lasting seconds: 3 rounds left ratios +-15 %
block_medians = partial(block_medians_of, rounds=ROUNDS, warmup=0.3)


def one_epoch(engine, X, y, optimizer, batch_size, shuffled=False, n_threads=None):
    return fastgd_epoch(X, y, optimizer, batch_size, engine, shuffled, n_threads)


def fit(X, y, epochs):
    return lambda: fastgd.GDRegressor(optimizer="sgd", learning_rate=0.1, max_epochs=epochs,
                                      tol=None).fit(X, y)


def sklearn_sgd_epoch(X, y):
    from sklearn.linear_model import SGDRegressor

    model = SGDRegressor(max_iter=1, tol=None, learning_rate="constant", eta0=1e-6,
                         shuffle=False)
    return lambda: model.fit(X, y)


def epoch_rows(X, y, repeats):
    """Issue 3: one epoch of mini-batch training, against one GEMV."""
    compiled = _compiled.kernels
    t = block_medians({
        "gemv": lambda: X @ np.zeros(X.shape[1]),
        "sgd32": one_epoch(compiled, X, y, "sgd", 32),
        "sgd32_shuffled": one_epoch(compiled, X, y, "sgd", 32, shuffled=True),
        "sgd32_shuffled_1t": one_epoch(compiled, X, y, "sgd", 32, shuffled=True, n_threads=1),
        "sgd256": one_epoch(compiled, X, y, "sgd", 256),
        "adam32": one_epoch(compiled, X, y, "adam", 32),
    }, repeats)
    slow = {"numpy32": one_epoch(reference, X, y, "sgd", 32),
            "sklearn": sklearn_sgd_epoch(X, y)}
    try:
        import torch

        slow["torch32"] = torch_epoch(torch, X, y, 32, "SGD", shuffled=False)
    except ImportError:
        pass
    t.update(block_medians(slow, 1, rounds=2, warmup=0.0))
    rows = [
        ("epoch, sgd, batch 32 / GEMV", "sgd32", "gemv", "<= 2.0"),
        ("epoch, sgd, batch 32, shuffled / GEMV", "sgd32_shuffled", "gemv", "<= 2.5"),
        ("epoch, sgd, batch 32, shuffled, 1 thread / GEMV", "sgd32_shuffled_1t", "gemv", ""),
        ("epoch, sgd, batch 256 / GEMV", "sgd256", "gemv", "<= 1.5"),
        ("NumPy engine epoch, batch 32 / fastgd (speed-up)", "numpy32", "sgd32", ">= 10"),
        ("scikit-learn SGDRegressor, 1 epoch / fastgd batch 32 (speed-up)", "sklearn", "sgd32",
         ">= 4"),
        ("epoch, adam / sgd, batch 32", "adam32", "sgd32", "<= 1.15"),
    ]
    if "torch32" in t.rounds:
        rows.append(("PyTorch nn.Linear + SGD, batch 32 / fastgd (speed-up)", "torch32", "sgd32",
                     ""))
    return [(label, t[a], t.ratio(a, b), t.best_ratio(a, b), target)
            for label, a, b, target in rows]


def core_rows(X, y, repeats):
    """Issue 2: one fused gradient pass, against one GEMV and the NumPy reference."""
    coef = np.zeros(X.shape[1])
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    XF = np.asfortranarray(X)
    t = block_medians({
        "gemv": lambda: X @ coef,
        "fastgd": lambda: fastgd.loss_and_grad(X, y, coef, 0.0),
        "fastgd_1t": lambda: fastgd.loss_and_grad(X, y, coef, 0.0, n_threads=1),
        "reference": lambda: reference.loss_and_grad(X, y, coef, 0.0),
        "gemv32": lambda: X32 @ coef.astype(np.float32),
        "fastgd32": lambda: fastgd.loss_and_grad(X32, y32, coef, 0.0),
        "fastgd_F": lambda: fastgd.loss_and_grad(XF, y, coef, 0.0),
    }, repeats)
    fits = block_medians({"fit1": fit(X, y, 1), "fit21": fit(X, y, 21)}, 2)
    t.rounds["epoch"] = [(b - a) / 20 for a, b in
                         zip(fits.rounds["fit1"], fits.rounds["fit21"], strict=True)]
    rows = [
        ("one `X @ coef` (GEMV, float64): the memory floor", "gemv", "gemv", ""),
        ("`loss_and_grad` float64 / GEMV", "fastgd", "gemv", "<= 1.25"),
        ("`reference.loss_and_grad` / `loss_and_grad` (speed-up)", "reference", "fastgd",
         ">= 1.8"),
        ("`loss_and_grad` float32 / float64", "fastgd32", "fastgd", "<= 0.65"),
        ("`loss_and_grad` float32 / float32 GEMV", "fastgd32", "gemv32", ""),
        ("GDRegressor cost per epoch ((21 - 1 epochs) / 20) / GEMV", "epoch", "gemv", "<= 1.3"),
        ("`loss_and_grad` 1 thread / all threads (speed-up)", "fastgd_1t", "fastgd", ""),
        ("`loss_and_grad` F order / GEMV", "fastgd_F", "gemv", ""),
    ]
    return [(label, t[a], t.ratio(a, b), t.best_ratio(a, b), target)
            for label, a, b, target in rows]


def output_rows(X, y, repeats):
    """Issue 4: models of k outputs (softmax classes, several targets), one pass over X."""
    engine = _compiled.kernels
    n, d = X.shape
    threads = effective_n_threads(None)
    classes = (np.abs(y) * 3).astype(np.intp).clip(max=9)[:, None].astype(X.dtype)  # 10
    Y3 = np.column_stack([y, -y, 2 * y])

    def pass_of(module, Y, k, loss):
        coef, intercept, data = np.zeros((k, d)), np.zeros(k), Problem(X, Y, None, loss, k)
        return lambda: module.grad_pass(data, coef, intercept, n_threads=threads)

    t = block_medians({
        "gemv": lambda: X @ np.zeros(d),
        "gemm10": lambda: X @ np.zeros((d, 10)),
        "softmax10": pass_of(engine, classes, 10, losses.Multinomial()),
        "squared1": pass_of(engine, y[:, None], 1, losses.Squared()),
        "squared3": pass_of(engine, Y3, 3, losses.Squared()),
    }, repeats)
    t.update(block_medians({"softmax10_numpy": pass_of(reference, classes, 10,
                                                       losses.Multinomial())}, 1, rounds=3))
    rows = [
        ("softmax, 10 classes, gradient pass / GEMM `X @ W` (10 columns)", "softmax10",
         "gemm10", ""),
        ("softmax, 10 classes, gradient pass / GEMV", "softmax10", "gemv", ""),
        ("NumPy reference softmax pass / fastgd (speed-up)", "softmax10_numpy", "softmax10",
         ""),
        ("3 regression targets / 1 target, gradient pass", "squared3", "squared1", ""),
    ]
    return [(label, t[a], t.ratio(a, b), t.best_ratio(a, b), target)
            for label, a, b, target in rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5, help="runs per block")
    parser.add_argument("--only", choices=["core", "epochs", "outputs"], help="one table only")
    args = parser.parse_args()
    X, y = problem(args.rows, args.features, np.float64)
    print(f"Machine: {describe(machine())}\n")
    print(f"Problem: {args.rows:,} x {args.features} float64, C order unless noted; "
          f"{ROUNDS} rounds of {args.repeats} runs (2 rounds of 1 run for the slow peers); "
          f"time: median of the rounds' medians; ratio: median of the rounds' ratios; best "
          f"round: ratio of the two fastest rounds.\n")
    print("| measurement | time | ratio | best round | target |")
    print("|---|---|---|---|---|")
    tables = {"core": core_rows, "epochs": epoch_rows, "outputs": output_rows}
    for name, rows in tables.items():
        if args.only in (None, name):
            for label, seconds, ratio, best, target in rows(X, y, args.repeats):
                digits = 1 if "speed-up" in label else 2
                print(f"| {label} | {seconds * 1e3:.1f} ms | {ratio:.{digits}f} | "
                      f"{best:.{digits}f} | {target} |", flush=True)


if __name__ == "__main__":
    main()
