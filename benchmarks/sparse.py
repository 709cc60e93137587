"""Sparse X (issue 20): the fused CSR pass against scipy's products, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/sparse.py \\
        [--problems text-200k,text-1M,one-hot-1M] [--repeats 5] [--rounds 5]
        [--fits | --epochs | --memory]

The problems:

- text-200k, text-1M: text-like rows (200,000 or 1,000,000) hashed into 2^20 features,
  as HashingVectorizer makes them: 50 words a row drawn from a Zipf law (numpy's zipf,
  a = 1.1, a heavy head of common words and a long tail), hashed to columns; a word
  repeated in a row adds up (about 42 stored entries a row), values log(1 + count),
  rows scaled to unit norm (TF-IDF's l2 normalization); labels from a sparse linear model.
- one-hot-1M: 1,000,000 rows of 20 categorical columns with 10 to 10,000 levels (log
  spaced, 35,000 levels in all; levels drawn from a Zipf law) one-hot encoded, beside
  10 dense standard-normal columns: 30 stored entries a row.

Per problem, the median seconds of a pass (median over rounds of blocks of runs, after a
warm-up; fastgd._timing), and the ratios against scipy's `X @ w` on one thread (scipy's
products have one thread; the floor: one read of X) and against `X @ w` then
`X.T @ (X @ w - y)` (the textbook gradient, two reads):

- `fastgd 1 thread` / `2 threads`: the compiled kernel's pass (loss, gradient; X checked
  already, as in training, where it is checked once);
- `loss_and_grad`: the public function, which checks X's structure on every call.

With --fits, seconds to a trained model instead (--no-peers: fastgd's alone): L2
logistic regression, the objective
mean log-loss + alpha/2 |w|^2 in X's own units (alpha = 1/n: scikit-learn's C = 1; no
standardization, as scikit-learn leaves sparse X), until within 1e-6 of the optimum
(f - f* <= 1e-6 (f_constant - f*); f* from fastgd's L-BFGS to rounding), each method's
tolerance tightened until it gets there (benchmarks/time_to_model.py's rule), a fit cut
off after BUDGET seconds. fastgd's default solver (optimizer="auto", judged by tol alone:
tolerance_grad and tolerance_change 0) with standardize=False (the same objective)
against LogisticRegression's liblinear, saga and lbfgs, and glum where its d x d Hessian
takes at most half the machine's memory (the one-hot problem's 32,797 features: 8.6 GB;
2^20: 8 TiB), in a forked process cut off after BUDGET seconds.

With --epochs, seconds of one mini-batch epoch (the median of --rounds fits of one epoch
each, set-up included, as a user runs it): GDClassifier(optimizer="sgd", batch_size=1
and 32, learning_rate=0.01, alpha=1e-6, standardize=False, shuffled) against
SGDClassifier(max_iter=1, the same constant rate and alpha, shuffled; its batches are
single rows), and fastgd's other optimizers at batch 32; beside them scipy's
X.T @ (X @ w - y), one read of every entry's weight and one write: the memory traffic
below which no epoch goes on one thread.

With --memory, the peak of the memory a fit allocates beyond X (tracemalloc, which sees
NumPy's buffers and the kernels' aligned arrays), against X's own bytes (values, indices,
offsets): the fused pass, the default fit (L-BFGS here, 5 iterations) and an epoch of
mini-batches (nesterov, batch 32).
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.sparse as sp

import os
import sys
import time
import warnings
from pathlib import Path

from fastgd import _compiled, _sparse, losses
from fastgd._problem import Problem
from fastgd._timing import block_medians
from fastgd.bench import machine

import fastgd


def text_like(n, d=1 << 20, words=50, seed=0):
    """Hashed Zipf words, counts log-scaled, rows of unit norm (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    ranks = (rng.zipf(1.1, size=n * words) % (1 << 40)).astype(np.uint64)
    columns = ((ranks * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(20)) % np.uint64(d)
    X = sp.csr_matrix((np.ones(n * words), columns.astype(np.int32),
                       np.arange(0, n * words + 1, words)), shape=(n, d))
    X.sum_duplicates()
    X.data = np.log1p(X.data)
    norms = np.sqrt(np.add.reduceat(X.data ** 2, X.indptr[:-1]))
    X.data /= np.repeat(norms, np.diff(X.indptr))
    return X, labels(X, rng)


def one_hot(n, seed=0):
    """20 one-hot categorical columns (10 to 10,000 levels) and 10 dense ones."""
    rng = np.random.default_rng(seed)
    levels = np.geomspace(10, 10_000, 20).round().astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(levels)])
    dense = 10
    codes = [(rng.zipf(1.3, size=n) - 1) % size for size in levels]
    columns = np.column_stack([offsets[c] + code for c, code in enumerate(codes)]
                              + [np.broadcast_to(offsets[-1] + np.arange(dense), (n, dense))])
    values = np.column_stack([np.ones((n, len(levels))), rng.standard_normal((n, dense))])
    width = columns.shape[1]
    X = sp.csr_matrix((values.ravel(), columns.ravel().astype(np.int32),
                       np.arange(0, n * width + 1, width)), shape=(n, offsets[-1] + dense))
    return X, labels(X, rng)


def labels(X, rng):
    w = rng.standard_normal(X.shape[1]) * (rng.random(X.shape[1]) < 0.1)
    z = X @ w
    z = (z - z.mean()) / (z.std() + 1e-12)
    return (rng.random(X.shape[0]) < 1 / (1 + np.exp(-2 * z))).astype(np.float64)


PROBLEMS = {"text-200k": lambda: text_like(200_000), "text-1M": lambda: text_like(1_000_000),
            "one-hot-1M": lambda: one_hot(1_000_000)}


def pass_timings(X, y, repeats, rounds):
    kernels = _compiled.kernels
    rng = np.random.default_rng(1)
    w = rng.standard_normal(X.shape[1]) * 0.1
    problem = Problem(X, y[:, None].copy(), None, losses.get("log"), 1)
    coef, intercept = w[None].copy(), np.zeros(1)
    workspace = {}  # the engine's: buffers kept from one pass to the next
    candidates = {
        "X @ w": lambda: X @ w,
        "X @ w, X.T @ r": lambda: X.T @ (X @ w - y),
        "fastgd 1 thread": lambda: kernels.csr_grad_pass(problem, coef, intercept, 1,
                                                         workspace),
        "fastgd 2 threads": lambda: kernels.csr_grad_pass(problem, coef, intercept, 2,
                                                          workspace),
        "loss_and_grad": lambda: fastgd.loss_and_grad(X, y, w, 0.0, loss="log"),
    }
    return block_medians(candidates, repeats, rounds)


BUDGET = 300.0  # seconds a fit may take: the slowest peers' runs are cut off there
OPTIMUM_BUDGET = 120.0  # seconds of L-BFGS to rounding for f*


def log_objective(X, y, alpha):
    def objective(coef, intercept):
        z = X @ np.ravel(coef) + float(np.ravel(intercept)[0])
        return float(np.mean(np.logaddexp(0, z) - y * z) + alpha / 2 * np.sum(
            np.square(coef)))
    return objective


def fastgd_fit(X, y, alpha, tol, budget=BUDGET):
    """optimizer="auto" (L-BFGS here) judged by tol alone: L-BFGS's own tests (torch's
    absolute tolerance_grad=1e-7) stop it short of 1e-6 of the optimum on these
    ill-conditioned problems (alpha = 1/n), whatever tol asks."""
    start = time.perf_counter()
    model = fastgd.GDClassifier(alpha=alpha, tol=tol, standardize=False, max_epochs=100_000,
                                callbacks=lambda figures: time.perf_counter() - start > budget,
                                tolerance_grad=0.0, tolerance_change=0.0).fit(X, y)
    return model.coef_, model.intercept_, model.solver_


def sklearn_fit(solver, X, y, alpha, tol):
    from sklearn.linear_model import LogisticRegression
    model = LogisticRegression(C=1 / (len(y) * alpha), solver=solver, tol=tol,
                               max_iter=100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    return model.coef_, model.intercept_


def glum_fit(X, y, alpha, tol, budget=BUDGET):
    """glum's GeneralizedLinearRegressor (binomial, the same L2 objective; its default IRLS
    solver forms the d x d Hessian) in a forked process, cut off after `budget` seconds:
    then the constant model (which reaches no target)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)

    def run():
        from glum import GeneralizedLinearRegressor
        model = GeneralizedLinearRegressor(family="binomial", alpha=alpha, l1_ratio=0.0,
                                           gradient_tol=tol, max_iter=1000).fit(X, y)
        sender.send((np.asarray(model.coef_), np.atleast_1d(model.intercept_)))

    process = context.Process(target=run)
    process.start()
    sender.close()  # the child's alone: its end (a result, or its exit) wakes the poll
    constant = (np.zeros(X.shape[1]), [0.0])
    try:
        result = receiver.recv() if receiver.poll(budget) else constant
    except EOFError:  # it died (one-hot-1M: killed by the kernel at 24 GB, out of memory)
        process.join()
        print(f"  glum's process died: exit code {process.exitcode}", flush=True)
        return constant
    process.kill()
    process.join()
    return result


def glum_fits(X) -> bool:
    """Whether glum's d x d Hessian takes at most half of this machine's memory (one-hot-1M's
    8.6 GB does, and glum died there at 24 GB: its solver holds more than one)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 8 * X.shape[1] ** 2 <= memory / 2


PEERS = ("liblinear", "saga", "lbfgs", "glum")


def fit_timings(X, y, peers=PEERS):
    """Seconds to within 1e-6 of the optimum, per method (time_to_model.py's rule)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import time_to_model as ttm

    ttm.BUDGET = BUDGET
    alpha = 1.0 / len(y)
    objective = log_objective(X, y, alpha)
    coef, intercept, _ = fastgd_fit(X, y, alpha, 0.0, OPTIMUM_BUDGET)
    best = objective(coef, intercept)
    p = y.mean()
    constant = float(-(p * np.log(p) + (1 - p) * np.log(1 - p)))
    target = best + ttm.ACCURACY * (constant - best)
    tols = [1e-4, 1e-6, 1e-8]
    rows = {}
    solver = fastgd_fit(X, y, alpha, 1e-2, 1.0)[2]
    methods = {f"fastgd auto ({solver})": lambda t: fastgd_fit(X, y, alpha, t)[:2]}
    for name in ("liblinear", "saga", "lbfgs"):
        if name in peers:
            methods[f"LogisticRegression({name})"] = (
                lambda t, name=name: sklearn_fit(name, X, y, alpha, t))
    if "glum" in peers and glum_fits(X):
        methods["glum"] = lambda t: glum_fit(X, y, alpha, t)
    for name, fit in methods.items():
        seconds, how = ttm.time_to_model(fit, objective, target,
                                         [1e-6, 1e-8, 1e-10] if "fastgd" in name else tols, 1)
        rows[name] = (seconds, how)
        shown = "not reached" if seconds is None else f"{seconds:.2f} s (tol {how:g})"
        print(f"  {name}: {shown}", flush=True)
    return rows


EPOCH_ALPHA, EPOCH_RATE = 1e-6, 0.01


def epoch_timings(X, y, rounds):
    """Median seconds of a fit of one epoch, per method."""
    from sklearn.linear_model import SGDClassifier

    def fastgd_epoch(optimizer, batch_size):
        return lambda: fastgd.GDClassifier(
            optimizer=optimizer, batch_size=batch_size, learning_rate=EPOCH_RATE,
            alpha=EPOCH_ALPHA, standardize=False, max_epochs=1, tol=None,
            random_state=0).fit(X, y)

    w = np.zeros(X.shape[1])
    methods = {"SGDClassifier": lambda: SGDClassifier(
        loss="log_loss", alpha=EPOCH_ALPHA, learning_rate="constant", eta0=EPOCH_RATE,
        max_iter=1, tol=None, random_state=0).fit(X, y),
        # what any epoch reads and writes: every entry's weight read, then written
        "X @ w, X.T @ r (the floor)": lambda: X.T @ (X @ w - y)}
    for batch_size in (1, 32):
        methods[f"sgd, batch {batch_size}"] = fastgd_epoch("sgd", batch_size)
    for optimizer in ("nesterov", "adagrad", "sparse_adam"):
        methods[f"{optimizer}, batch 32"] = fastgd_epoch(optimizer, 32)
    seconds = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one epoch: not converged
        for name, fit in methods.items():
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                fit()
                times.append(time.perf_counter() - start)
            seconds[name] = float(np.median(times))
    return seconds


def memory_peaks(X, y):
    """Peak bytes allocated during each, beyond what was allocated before."""
    import tracemalloc

    problem = Problem(X, y[:, None].copy(), None, losses.get("log"), 1)
    coef, intercept = np.zeros((1, X.shape[1])), np.zeros(1)
    runs = {
        "fused pass": lambda: _compiled.kernels.csr_grad_pass(problem, coef, intercept, 2),
        "default fit (5 iterations)": lambda: fastgd.GDClassifier(max_epochs=5).fit(X, y),
        "nesterov, batch 32 (1 epoch)": lambda: fastgd.GDClassifier(
            optimizer="nesterov", batch_size=32, max_epochs=1).fit(X, y)}
    peaks = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, run in runs.items():
            tracemalloc.start()
            run()
            peaks[name] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    return peaks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fits", action="store_true", help="seconds to a trained model")
    parser.add_argument("--no-peers", action="store_true", help="--fits: fastgd's only")
    parser.add_argument("--peers", default=",".join(PEERS), help="--fits: which peers")
    parser.add_argument("--epochs", action="store_true", help="one mini-batch epoch")
    parser.add_argument("--memory", action="store_true", help="peak memory beyond X")
    args = parser.parse_args()
    print(machine())
    print()
    if args.memory:
        print("| problem | X's bytes | fused pass | default fit | nesterov, batch 32 |")
        print("|---|---|---|---|---|")
        for name in args.problems.split(","):
            X, y = PROBLEMS[name]()
            X = _sparse.as_csr(X)
            size = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
            cells = [f"{peak / 2**20:.0f} MB ({peak / size:.2f} x)"
                     for peak in memory_peaks(X, y).values()]
            print(f"| {name} | {size / 2**20:.0f} MB | " + " | ".join(cells) + " |",
                  flush=True)
        return
    if args.epochs:
        print("| problem | SGDClassifier | scipy X @ w, X.T @ r | fastgd sgd, batch 1 "
              "| sgd, batch 32 | nesterov, 32 | adagrad, 32 | sparse_adam, 32 |")
        print("|---|---|---|---|---|---|---|---|")
        for name in args.problems.split(","):
            X, y = PROBLEMS[name]()
            t = epoch_timings(X, y, args.rounds)
            base = t.pop("SGDClassifier")
            cells = [f"{s:.2f} s ({base / s:.2f} x)" for s in t.values()]
            print(f"| {name} | {base:.2f} s | " + " | ".join(cells) + " |", flush=True)
        return
    if args.fits:
        for name in args.problems.split(","):
            X, y = PROBLEMS[name]()
            print(f"{name} ({X.shape[0]:,} x {X.shape[1]:,}, {X.nnz:,} stored):")
            rows = fit_timings(_sparse.as_csr(X), y,
                               peers=() if args.no_peers else args.peers.split(","))
            peers = [s for n, (s, _) in rows.items() if s is not None and "fastgd" not in n]
            ours = [s for n, (s, _) in rows.items() if s is not None and "fastgd" in n]
            if peers and ours:
                print(f"  default vs fastest peer: {min(peers) / ours[0]:.2f} x faster")
        return
    print("| problem | nnz | X @ w | X @ w, X.T @ r | fastgd 1 thread | fastgd 2 threads "
          "| loss_and_grad |")
    print("|---|---|---|---|---|---|---|")
    for name in args.problems.split(","):
        X, y = PROBLEMS[name]()
        X = _sparse.as_csr(X)
        t = pass_timings(X, y, args.repeats, args.rounds)
        cells = [f"{t[c] * 1e3:.1f} ms ({t.ratio(c, 'X @ w'):.2f} x)"
                 for c in ("X @ w, X.T @ r", "fastgd 1 thread", "fastgd 2 threads",
                           "loss_and_grad")]
        print(f"| {name} ({X.shape[0]:,} x {X.shape[1]:,}) | {X.nnz:,} "
              f"| {t['X @ w'] * 1e3:.1f} ms | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
