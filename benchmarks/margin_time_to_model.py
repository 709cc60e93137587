"""Seconds to a trained margin-loss classifier (issue 23: hinge, squared hinge, modified
Huber), fastgd against scikit-learn's LinearSVC (liblinear) and SGDClassifier, in one
process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python \\
        benchmarks/margin_time_to_model.py [--rows 100000,1000000] [--budget 300]

Two classes, 20 features in their own units, labels from a linear score plus logistic
noise (classes that overlap: many rows inside the margin). The objective is
SGDClassifier's: the mean loss + alpha |w|^2 / 2, the intercept unpenalized, alpha = 1e-3
(GDClassifier's default), on the features as they are (fastgd with standardize=False, so
that every method minimizes the same function). Its optimum f* is fastgd's at tol 1e-14
(the hinge's from the active-set polish); a method reaches the model when
f - f* <= 1e-6 (f_constant - f*), trying tighter tolerances as time_to_model.py does.
LinearSVC penalizes its intercept: it fits it as the weight of a constant column of
intercept_scaling = 100, whose penalty (b / 100)^2 / 2 is then small against the rest.
scikit-learn-intelex accelerates the kernel SVC, whose linear kernel solves the hinge's
problem itself (C = 1 / (n alpha), the intercept free); it has no LinearSVC or
SGDClassifier of its own. Each peer runs in a forked child stopped after --budget
seconds (quantile_time_to_model.within_budget).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from quantile_time_to_model import within_budget
from time_to_model import TABLE_HEADER, table_row, time_to_model

from fastgd import GDClassifier, losses
from fastgd.bench import machine

ACCURACY = 1e-6
FEATURES = 20
ALPHA = 1e-3
SCALING = 100.0  # LinearSVC's intercept_scaling


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, FEATURES)) * rng.uniform(0.5, 3, FEATURES) + rng.uniform(
        -1, 1, FEATURES)
    score = (X - X.mean(axis=0)) @ (rng.standard_normal(FEATURES) / X.std(axis=0)) + 0.3
    return X, (score + rng.logistic(size=n) > 0).astype(np.int64)


def fastgd_fit(loss, X, y, tol):
    model = GDClassifier(loss=loss, alpha=ALPHA, standardize=False, tol=tol,
                         max_epochs=10_000).fit(X, y)
    return model.coef_, model.intercept_


def linear_svc_fit(loss, X, y, tol):
    from sklearn.svm import LinearSVC

    peer = LinearSVC(loss=loss, C=1 / (len(X) * ALPHA), intercept_scaling=SCALING, tol=tol,
                     max_iter=100_000, dual=loss == "hinge").fit(X, y)
    return peer.coef_, peer.intercept_


def intelex_svc_fit(loss, X, y, tol):
    from sklearnex.svm import SVC  # the same objective: the intercept unpenalized

    peer = SVC(kernel="linear", C=1 / (len(X) * ALPHA), tol=tol).fit(X, y)
    return peer.coef_, peer.intercept_


def sgd_fit(loss, X, y, tol):
    from sklearn.linear_model import SGDClassifier

    peer = SGDClassifier(loss=loss, alpha=ALPHA, tol=tol, max_iter=1000,
                         random_state=0).fit(X, y)
    return peer.coef_, peer.intercept_


def methods(loss, budget):
    found = [("fastgd default", fastgd_fit, [1e-6] + [10.0 ** -e for e in range(7, 15)])]
    if loss != "modified_huber":
        found.append(("scikit-learn LinearSVC (liblinear)", within_budget(
            linear_svc_fit, budget), [10.0 ** -e for e in range(3, 13)]))
    if loss == "hinge":
        found.append(("scikit-learn-intelex SVC (linear kernel)", within_budget(
            intelex_svc_fit, budget), [10.0 ** -e for e in range(3, 9, 2)]))
    found.append(("scikit-learn SGDClassifier", within_budget(sgd_fit, budget),
                  [10.0 ** -e for e in range(3, 9)]))
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--losses", default="hinge,squared_hinge,modified_huber")
    parser.add_argument("--budget", type=float, default=300.0)
    args = parser.parse_args()
    print(machine())
    print(TABLE_HEADER)
    for n in map(int, args.rows.split(",")):
        X, y = data(n)
        for name in args.losses.split(","):
            loss = losses.get(name)

            def objective(coef, intercept, loss=loss):
                z = X @ np.ravel(coef) + float(np.ravel(intercept)[0])
                return float(loss.row_values(z[:, None], y[:, None].astype(float)).mean()
                             + 0.5 * ALPHA * np.sum(np.square(coef)))

            started = time.perf_counter()
            best = objective(*fastgd_fit(name, X, y, 1e-14))
            print(f"<!-- f* by fastgd at tol 1e-14 in {time.perf_counter() - started:.2f} s"
                  f" -->", flush=True)
            share = y.mean()
            constant = objective(np.zeros(X.shape[1]), loss.best_constant(1.0, share))
            target = best + ACCURACY * (constant - best)
            times = {}
            for method, fit, tols in methods(name, args.budget):
                try:
                    seconds, tol = time_to_model(lambda t, f=fit: f(name, X, y, t),
                                                 objective, target, tols, 1)
                except RuntimeError as error:
                    seconds, detail = None, str(error)
                else:
                    detail = (f"{tol:g}" if seconds is not None else
                              f"f - f* = {tol - best:.2g}")
                print(table_row(f"{name} {n:,} x {FEATURES}", method, seconds, detail,
                                times), flush=True)


if __name__ == "__main__":
    main()
