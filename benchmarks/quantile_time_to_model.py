"""Seconds to a trained quantile (pinball loss) model (issue 23), fastgd against
scikit-learn's QuantileRegressor and statsmodels' QuantReg, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python \\
        benchmarks/quantile_time_to_model.py [--rows 100000,1000000,5000000] \\
        [--quantiles 0.5,0.9] [--budget 300]

A heteroscedastic problem: 20 features in their own units, y = x beta + (1 + |x_0|) e with
e Student-t (3 degrees of freedom), so that the quantiles of y given x are linear with
slopes in x_0 that differ. The objective is the mean pinball loss, unpenalized; its
optimum f* is fastgd's vertex at tol 1e-14 (the linear program's solution: the crossover
checks its duality), and a method reaches the model when f - f* <= 1e-6 (f_constant - f*),
trying tighter tolerances as time_to_model.py does. QuantileRegressor(solver="highs")
solves the linear program exactly and statsmodels' QuantReg runs iteratively reweighted
least squares; each peer runs in a child process stopped after --budget seconds (a fit
that is still running is reported as such, not waited for).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
import warnings

import numpy as np
from time_to_model import TABLE_HEADER, table_row, time_to_model

from fastgd import GDRegressor, losses
from fastgd.bench import machine

ACCURACY = 1e-6
FEATURES = 20


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, FEATURES)) * rng.uniform(0.5, 20, FEATURES) + rng.uniform(
        -5, 5, FEATURES)
    beta = rng.standard_normal(FEATURES) / X.std(axis=0)
    noise = (1 + np.abs(X[:, 0] - X[:, 0].mean()) / X[:, 0].std()) * rng.standard_t(3, n)
    return X, X @ beta + 3.0 + noise


def fastgd_fit(q, X, y, tol):
    model = GDRegressor(loss="quantile", quantile=q, tol=tol, max_epochs=10_000).fit(X, y)
    return model.coef_, model.intercept_


def sklearn_fit(q, X, y, tol):
    from sklearn.linear_model import QuantileRegressor

    peer = QuantileRegressor(quantile=q, alpha=0.0, solver="highs").fit(X, y)
    return peer.coef_, peer.intercept_


def statsmodels_fit(q, X, y, tol):
    from statsmodels.regression.quantile_regression import QuantReg

    design = np.column_stack([np.ones(len(X)), X])
    params = QuantReg(y, design).fit(q=q, p_tol=tol, max_iter=100_000).params
    return params[1:], params[0]


def _child(fit, q, X, y, tol, pipe):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pipe.send(fit(q, X, y, tol))
        except Exception as error:  # noqa: BLE001 - reported, as the peer's own failure
            pipe.send(error)


def within_budget(fit, budget):
    """fit(q, X, y, tol) in a forked child stopped after `budget` seconds: its result, or
    a RuntimeError saying how it ended (time, memory, its own error)."""
    def run(q, X, y, tol):
        receive, send = multiprocessing.Pipe(duplex=False)
        child = multiprocessing.get_context("fork").Process(
            target=_child, args=(fit, q, X, y, tol, send))
        child.start()
        ready = receive.poll(budget)
        result = receive.recv() if ready else None
        child.kill()
        child.join()
        if not ready:
            raise RuntimeError(f"still running after {budget:g} s (stopped)"
                               if child.exitcode in (-9, None) else
                               f"died (exit code {child.exitcode}: out of memory?)")
        if isinstance(result, Exception):
            raise RuntimeError(f"{type(result).__name__}: {result}")
        return result
    return run


def methods(budget):
    return [("fastgd default", fastgd_fit, [1e-6] + [10.0 ** -e for e in range(7, 15)]),
            ("scikit-learn QuantileRegressor (highs)", within_budget(sklearn_fit, budget),
             [None]),
            ("statsmodels QuantReg (IRLS)", within_budget(statsmodels_fit, budget),
             [10.0 ** -e for e in range(6, 13, 2)])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000,5000000")
    parser.add_argument("--quantiles", default="0.5,0.9")
    parser.add_argument("--budget", type=float, default=300.0)
    args = parser.parse_args()
    print(machine())
    print(TABLE_HEADER)
    for n in map(int, args.rows.split(",")):
        X, y = data(n)
        for q in map(float, args.quantiles.split(",")):
            loss = losses.get("quantile", quantile=q)

            def objective(coef, intercept, loss=loss):
                z = X @ np.ravel(coef) + float(np.ravel(intercept)[0])
                return float(loss.row_values(z[:, None], y[:, None]).mean())

            started = time.perf_counter()
            best = objective(*fastgd_fit(q, X, y, 1e-14))
            print(f"<!-- f* by fastgd at tol 1e-14 in {time.perf_counter() - started:.2f} s"
                  f" -->", flush=True)
            constant = objective(np.zeros(X.shape[1]), np.quantile(y, q))
            target = best + ACCURACY * (constant - best)
            times = {}
            for method, fit, tols in methods(args.budget):
                try:
                    seconds, tol = time_to_model(lambda t, f=fit: f(q, X, y, t), objective,
                                                 target, tols, 1)
                except RuntimeError as error:
                    seconds, detail = None, str(error)
                else:
                    detail = (f"{tol:g}" if seconds is not None and tol is not None else
                              "exact" if seconds is not None else f"f - f* = {tol - best:.2g}")
                print(table_row(f"q={q:g} {n:,} x {FEATURES}", method, seconds, detail,
                                times), flush=True)


if __name__ == "__main__":
    main()
