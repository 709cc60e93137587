"""How well the estimators' defaults do, untuned, against the exact solver (issue 4, item 9).

    .venv/bin/python benchmarks/defaults.py [--set key=value ...]

For each data set: R^2 of GDRegressor(**settings).fit(X, y) against LinearRegression's (on
the same rows), epochs run, warnings raised, and seconds. Data sets: the ones scikit-learn
ships for regression (diabetes), plus synthetic ones with targets of very different scales
(a default that works must not depend on the units of y).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_diabetes, make_regression
from sklearn.linear_model import LinearRegression

from fastgd import GDRegressor


def datasets():
    yield "diabetes (442 x 10)", *load_diabetes(return_X_y=True)
    for scale in (1e-3, 1.0, 1e3):
        X, y = make_regression(n_samples=20_000, n_features=50, noise=10.0, random_state=0)
        X = X * np.random.default_rng(0).uniform(0.01, 100, 50)  # features in mixed units
        yield f"synthetic 20000 x 50, y x {scale:g}", X, y * scale


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", nargs="*", default=[], help="estimator settings, key=value")
    settings = parse(parser.parse_args().set)
    print(f"GDRegressor({', '.join(f'{k}={v!r}' for k, v in settings.items())})\n")
    print("| data | R^2 exact | R^2 fastgd | gap | epochs | warnings | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, X, y in datasets():
        exact = LinearRegression().fit(X, y).score(X, y)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            model = GDRegressor(**settings).fit(X, y)
            seconds = time.perf_counter() - start
        score = model.score(X, y)
        kinds = ", ".join(sorted({w.category.__name__ for w in caught})) or "none"
        print(f"| {name} | {exact:.6f} | {score:.6f} | {exact - score:.2e} | {model.n_iter_} | "
              f"{kinds} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
