"""Seconds per full-batch gradient step on a Dask cluster against the same step in process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/dask_step.py \\
        [--rows N] [--features D] [--blocks B] [--workers W] [--repeats R]

The data (2M x 50 float64 by default, in 8 row blocks) lies on a LocalCluster of W worker
processes (one thread each) on 127.0.0.1. A step is what the optimizer needs: the loss and
its gradient at given parameters. In process it is one fastgd.loss_and_grad; on the
cluster it is fastgd._dask.grad_pass, which sends the parameters to every shard, runs the
kernel there and adds the partial sums in shard order. Issue 7's bound: the cluster step
<= 1.5 x the in-process step + 15 ms.

Then, where dask-ml is installed (--no-peers to skip), whole fits on the same cluster:
fastgd's GDRegressor epoch (a step with the update, from the estimator; (21 - 1 epochs) /
20), dask-ml's LinearRegression(solver="gradient_descent") iteration ((3 - 1) / 2), each
the median of 3 such differences, and
the time and final MSE (relative to the least-squares optimum's) of fastgd's default fit
and of dask-ml's lbfgs. Prints Markdown tables for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

import fastgd
from fastgd import GDRegressor, _dask, losses
from fastgd._problem import Problem
from fastgd._timing import median_seconds
from fastgd.bench import machine


def main(argv=None):
    import dask.array as da
    from distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--no-peers", action="store_true", help="skip the whole fits")
    args = parser.parse_args(argv)
    n, d = args.rows, args.features
    rows = -(-n // args.blocks)
    coef, intercept = np.linspace(-1, 1, d), 0.5
    # The in-process step first, with no cluster sharing the cores.
    local = np.random.default_rng(0)
    X_local = local.standard_normal((n, d))
    y_local = X_local @ np.ones(d) + 0.1 * local.standard_normal(n)
    in_process = median_seconds(lambda: fastgd.loss_and_grad(
        X_local, y_local, coef, intercept, n_threads=1), args.repeats)
    X_local = y_local = None  # free the memory for the workers
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        # The same kind of data, made on the workers as a user's would be loaded there.
        rng = da.random.default_rng(0)
        X = rng.standard_normal((n, d), chunks=(rows, d))
        y = X @ np.ones(d) + 0.1 * rng.standard_normal(n, chunks=rows)
        shards = _dask.Shards.of(X, y, client=client)
        W, b = coef[None, :], np.array([intercept])
        problem, engine = Problem(shards, shards, None, losses.Squared()), _dask.DaskEngine()
        on_cluster = median_seconds(lambda: engine.loss_and_grad(problem, W, b), args.repeats)
        shards.release()
        fits = None if args.no_peers else whole_fits(X, y)
    bound = 1.5 * in_process + 0.015
    print(f"Machine: {machine()['cpu']}; {args.workers} workers of 1 thread on 127.0.0.1\n")
    print(f"{n:,} x {d} float64 in {args.blocks} row blocks; median of {args.repeats} steps\n")
    print("| step | seconds | / in process |")
    print("|---|---|---|")
    print(f"| in process, 1 thread (fastgd.loss_and_grad) | {in_process:.4f} | 1.00 |")
    print(f"| on the cluster (fastgd._dask.grad_pass) | {on_cluster:.4f} | "
          f"{on_cluster / in_process:.2f} |")
    print(f"\nBound 1.5 x in process + 15 ms = {bound:.4f} s: "
          f"{'met' if on_cluster <= bound else 'MISSED'}")
    if fits:
        epoch, gd_iteration, timed = fits
        print("\n| per step | seconds | / fastgd |")
        print("|---|---|---|")
        print(f"| fastgd GDRegressor epoch (full batch) | {epoch:.3f} | 1.0 |")
        print(f"| dask-ml LinearRegression gradient_descent iteration | {gd_iteration:.3f} | "
              f"{gd_iteration / epoch:.1f} |")
        print("\n| whole fit | seconds | MSE / optimum's MSE - 1 |")
        print("|---|---|---|")
        for name, (seconds, gap) in timed.items():
            print(f"| {name} | {seconds:.2f} | {gap:.1e} |")


def seconds_of(fit):
    started = time.perf_counter()
    result = fit()
    return time.perf_counter() - started, result


def whole_fits(X, y):
    """fastgd and dask-ml on the cluster's X and y (see the module's docstring)."""
    import warnings

    try:
        from dask_ml.linear_model import LinearRegression
    except ImportError:
        return None
    X, y = X.persist(), y.persist()
    X_local, y_local = X.compute(), y.compute()
    ones = np.ones((len(X_local), 1))
    optimum = np.linalg.lstsq(np.hstack([X_local, ones]), y_local, rcond=None)[0]
    best = float(np.mean((X_local @ optimum[:-1] + optimum[-1] - y_local) ** 2))

    def gap(coef, intercept):
        return float(np.mean((X_local @ coef + intercept - y_local) ** 2)) / best - 1

    def per_step(fit, few, many, rounds=3):
        """Seconds per step: the median over rounds of (many steps - few) / (many - few)."""
        return float(np.median([(seconds_of(lambda: fit(many))[0]
                                 - seconds_of(lambda: fit(few))[0]) / (many - few)
                                for _ in range(rounds)]))

    warnings.simplefilter("ignore")
    epoch = per_step(lambda k: GDRegressor(optimizer="nesterov", max_epochs=k, tol=None).fit(
        X, y), 1, 21)
    gd_iteration = per_step(lambda k: LinearRegression(solver="gradient_descent",
                                                       max_iter=k).fit(X, y), 1, 3)
    timed = {}
    seconds, model = seconds_of(lambda: GDRegressor().fit(X, y))
    timed["fastgd GDRegressor() (defaults)"] = (seconds, gap(model.coef_, model.intercept_))
    seconds, model = seconds_of(lambda: LinearRegression(solver="lbfgs").fit(X, y))
    timed["dask-ml LinearRegression(solver='lbfgs')"] = (seconds,
                                                         gap(model.coef_, model.intercept_))
    return epoch, gd_iteration, timed


if __name__ == "__main__":
    main()
