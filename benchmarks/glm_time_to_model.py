"""Seconds to a trained Poisson, Gamma or Tweedie model (issue 23), fastgd against
scikit-learn's GLMs and glum, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python \\
        benchmarks/glm_time_to_model.py [--rows 100000,1000000] [--repeat 1]

An insurance-like table: 4 numeric columns in their own units (driver's age, vehicle's
age, bonus-malus, log density) and 4 categorical ones one-hot encoded with their first
level dropped (region 22 levels, brand 11, area 6, fuel 2): 41 columns. Targets from a
log-linear mean: claim counts (Poisson, mean about 0.3), costs (Gamma, shape 2) and pure
premiums (Tweedie 1.5: a Poisson count of Gamma costs, zeros included). The objective is
the mean half deviance, unpenalized (alpha = 0 for every method); its optimum f* is
fastgd's Newton solve to rounding; a method reaches the model when f - f* <= 1e-6
(f_constant - f*). As in time_to_model.py (whose timing loop this reuses), each method
runs at its default tolerance first and tighter ones until it reaches that accuracy, and
the time is the whole fit's (a peer's StandardScaler included: scikit-learn's lbfgs needs
it on these units; newton-cholesky and glum get X as it is).
"""

from __future__ import annotations

import argparse

import numpy as np
from time_to_model import TABLE_HEADER, table_row, time_to_model, unscaled

from fastgd import GDRegressor, losses
from fastgd.bench import machine

ACCURACY = 1e-6
LOSSES = {"poisson": 1.0, "gamma": 2.0, "tweedie": 1.5}  # name: Tweedie power
LEVELS = {"region": 22, "brand": 11, "area": 6, "fuel": 2}


def data(n, seed=0):
    """X (n, 41) and the targets of each loss."""
    rng = np.random.default_rng(seed)
    numeric = np.column_stack([rng.uniform(18, 90, n), rng.exponential(6, n),
                               rng.uniform(50, 230, n), rng.normal(6, 2, n)])
    columns = [numeric]
    for levels in LEVELS.values():
        codes = rng.integers(0, levels, n)
        columns.append((codes[:, None] == np.arange(1, levels)).astype(float))
    X = np.hstack(columns)
    beta = np.concatenate([[-0.01, -0.03, 0.006, 0.05],
                           rng.normal(0, 0.2, X.shape[1] - 4)])
    mu = np.exp(X @ beta - 2.0)
    counts = rng.poisson(mu)
    return X, {"poisson": counts.astype(float),
               "gamma": rng.gamma(2.0, 1000 * mu / 2.0),
               "tweedie": np.array([rng.gamma(2.0, 500.0, c).sum() for c in counts])}


def fastgd_fit(optimizer, name, X, y, tol):
    settings = {} if optimizer == "default" else {"optimizer": optimizer}
    if optimizer in ("lbfgs", "newton"):
        settings.update(tolerance_grad=0.0, tolerance_change=0.0)
    model = GDRegressor(loss=name, power=LOSSES[name], tol=tol, max_epochs=10_000,
                        **settings).fit(X, y)
    return model.coef_, model.intercept_


def sklearn_fit(solver, name, X, y, tol):
    from sklearn.linear_model import TweedieRegressor
    from sklearn.preprocessing import StandardScaler

    peer = TweedieRegressor(power=LOSSES[name], link="log", alpha=0.0, solver=solver,
                            tol=tol, max_iter=100_000)
    if solver == "newton-cholesky":
        peer.fit(X, y)
        return peer.coef_, peer.intercept_
    scaler = StandardScaler()
    peer.fit(scaler.fit_transform(X), y)
    coef, intercept = unscaled(peer.coef_, peer.intercept_, scaler.mean_, scaler.scale_)
    return coef[0], intercept[0]


def glum_fit(name, X, y, tol):
    from glum import GeneralizedLinearRegressor, TweedieDistribution

    family = {"poisson": "poisson", "gamma": "gamma"}.get(name, TweedieDistribution(1.5))
    peer = GeneralizedLinearRegressor(family=family, link="log", alpha=0.0,
                                      gradient_tol=tol, max_iter=100_000).fit(X, y)
    return peer.coef_, peer.intercept_


def methods():
    tols = [10.0 ** -e for e in range(4, 15)]
    found = [(f"fastgd {o}", lambda N, X, y, t, o=o: fastgd_fit(o, N, X, y, t),
              [1e-6] + [10.0 ** -e for e in range(7, 15)])
             for o in ("default", "newton", "lbfgs")]
    found += [(f"scikit-learn ({s})", lambda N, X, y, t, s=s: sklearn_fit(s, N, X, y, t), tols)
              for s in ("newton-cholesky", "lbfgs")]
    try:
        import glum  # noqa: F401
        found.append(("glum", glum_fit, tols))
    except ImportError:
        pass
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print(machine())
    print(TABLE_HEADER)
    for n in map(int, args.rows.split(",")):
        X, targets = data(n)
        for name, y in targets.items():
            loss = losses.get(name, power=LOSSES[name])

            def objective(coef, intercept, loss=loss, y=y):
                z = X @ np.ravel(coef) + float(np.ravel(intercept)[0])
                return float(loss.row_values(z[:, None], y[:, None]).mean())

            best = objective(*fastgd_fit("newton", name, X, y, 1e-14))
            constant = objective(np.zeros(X.shape[1]), np.log(y.mean()))
            target = best + ACCURACY * (constant - best)
            times = {}
            for method, fit, tols in methods():
                seconds, tol = time_to_model(lambda t, f=fit: f(name, X, y, t), objective,
                                             target, tols, args.repeat)
                detail = f"{tol:g}" if seconds is not None else f"f - f* = {tol - best:.2g}"
                print(table_row(f"{name} {n:,} x {X.shape[1]}", method, seconds, detail,
                                times), flush=True)


if __name__ == "__main__":
    main()
