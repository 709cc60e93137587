"""How well the estimators' defaults do, untuned, against exact solvers (issue 4, item 9).

    .venv/bin/python benchmarks/defaults.py [--set key=value ...] [--only regressor|classifier]

Regression: R^2 of GDRegressor(**settings).fit(X, y) against LinearRegression's, on the
training rows (both minimize the same squared error). Data: what scikit-learn ships
(diabetes; linnerud, three targets at once) and synthetic sets with features in mixed
units and targets at very different scales and offsets (a default that works must not
depend on the units of y).

Classification: GDClassifier(**settings) against LogisticRegression() on standardized
features (its default C=1), accuracy and log loss on a stratified held-out quarter. Data:
breast cancer (2 classes), iris (3), wine (3), digits (10).

Each row also gives the epochs run, the warnings raised and the seconds of the fit.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import (load_breast_cancer, load_diabetes, load_digits, load_iris,
                              load_linnerud, load_wine, make_regression)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastgd import GDClassifier, GDRegressor


def regression_sets():
    yield "diabetes (442 x 10)", *load_diabetes(return_X_y=True)
    yield "linnerud (20 x 3, 3 targets)", *load_linnerud(return_X_y=True)
    X, y = make_regression(n_samples=20_000, n_features=50, noise=10.0, random_state=0)
    X = X * np.random.default_rng(0).uniform(0.01, 100, 50)  # features in mixed units
    for scale, offset in ((1e-3, 0.0), (1.0, 0.0), (1e3, 0.0), (1.0, 1e4)):
        yield f"synthetic 20000 x 50, y x {scale:g} + {offset:g}", X, y * scale + offset


def classification_sets():
    for name, load in (("breast cancer", load_breast_cancer), ("iris", load_iris),
                       ("wine", load_wine), ("digits", load_digits)):
        X, y = load(return_X_y=True)
        yield f"{name} ({X.shape[0]} x {X.shape[1]}, {len(np.unique(y))} classes)", X, y


def parse(pairs):
    settings = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        try:
            settings[key] = int(value)
        except ValueError:
            try:
                settings[key] = float(value)
            except ValueError:
                settings[key] = None if value == "None" else value
    return settings


def timed_fit(model, X, y):
    """(fitted model, seconds, names of the warnings raised)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - start
    return model, seconds, ", ".join(sorted({w.category.__name__ for w in caught})) or "none"


def regression(settings):
    print("| data | R^2 exact | R^2 fastgd | gap | epochs | warnings | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, X, y in regression_sets():
        exact = LinearRegression().fit(X, y).score(X, y)
        model, seconds, kinds = timed_fit(GDRegressor(**settings), X, y)
        score = model.score(X, y)
        print(f"| {name} | {exact:.6f} | {score:.6f} | {exact - score:.1e} | {model.n_iter_} "
              f"| {kinds} | {seconds:.2f} |", flush=True)


def classification(settings):
    print("| data | accuracy LR | accuracy fastgd | log loss LR | log loss fastgd | epochs "
          "| warnings | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name, X, y in classification_sets():
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25,
                                                            stratify=y, random_state=0)
        exact = make_pipeline(StandardScaler(), LogisticRegression(max_iter=10_000))
        exact.fit(X_train, y_train)
        model, seconds, kinds = timed_fit(GDClassifier(**settings), X_train, y_train)
        scores = [(accuracy_score(y_test, m.predict(X_test)),
                   log_loss(y_test, m.predict_proba(X_test))) for m in (exact, model)]
        print(f"| {name} | {scores[0][0]:.4f} | {scores[1][0]:.4f} | {scores[0][1]:.4f} | "
              f"{scores[1][1]:.4f} | {model.n_iter_} | {kinds} | {seconds:.2f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", nargs="*", default=[], help="estimator settings, key=value")
    parser.add_argument("--only", choices=("regressor", "classifier"))
    args = parser.parse_args()
    settings = parse(args.set)
    shown = ", ".join(f"{k}={v!r}" for k, v in settings.items())
    if args.only != "classifier":
        print(f"GDRegressor({shown})\n")
        regression(settings)
    if args.only != "regressor":
        print(f"\nGDClassifier({shown})\n")
        classification(settings)


if __name__ == "__main__":
    main()
