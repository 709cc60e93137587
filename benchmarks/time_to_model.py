"""Seconds to a trained model: until the objective is within 1e-6 of the best constant model's
objective from the optimum, for fastgd's optimizers and its peers, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/time_to_model.py \\
        [--problems NAME,...] [--repeat N] [--float64-only] [--methods PART,...]

The problems (issue 19): least squares 2,000 x 20, 1M x 10, 1M x 100, 100k x 1,000; binary
logistic 2,000 x 20 and 1M x 100; softmax 200k x 200 with 10 classes. Features are in mixed
units (scales 0.1 to 10, offsets) and neighbouring features are correlated. The objective is
the mean loss (squared error; log-loss) plus alpha/2 |w|^2 on the standardized coefficients
(alpha = 0 for least squares, 1e-4 for classification: every peer is given the same
objective, scikit-learn's C = 1 / (n alpha) after StandardScaler). The optimum f* is
fastgd's Newton solve to rounding (L-BFGS's for the softmax); the
accuracy asked is f - f* <= 1e-6 (f_constant - f*), in R^2 units for least squares.

A fit's time is measured whole (a peer's StandardScaler included where it needs one: to
converge and to penalize the standardized coefficients; the exact least-squares solvers
get X as it is). Each
method is first run at its default tolerance; if it misses the accuracy, its tolerance is
tightened tenfold until it reaches it (up to 1e-14), and the time reported is that of the
first run that reached it: what a user who knew the right setting would wait. Each time
is the best of --repeat runs (of more, up to 30, for a method that takes less than half a
second in all: this machine's noise is milliseconds). Prints a Markdown table for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from fastgd import GDClassifier, GDRegressor
from fastgd.bench import machine
from fastgd.solvers import newton

ACCURACY = 1e-6
ALPHA = {"squared": 0.0, "log": 1e-4, "multinomial": 1e-4}
PROBLEMS = {  # name: (loss, rows, features, classes)
    "squared-2k-20": ("squared", 2_000, 20, 0),
    "squared-1M-10": ("squared", 1_000_000, 10, 0),
    "squared-1M-100": ("squared", 1_000_000, 100, 0),
    "squared-100k-1000": ("squared", 100_000, 1_000, 0),
    "logistic-2k-20": ("log", 2_000, 20, 2),
    "logistic-1M-100": ("log", 1_000_000, 100, 2),
    "softmax-200k-200-10": ("multinomial", 200_000, 200, 10),
}
FASTGD = ("default", "nesterov", "adam", "lbfgs", "newton", "newton-cg")
SMALL = 0.5  # seconds: a fast method is run again until it has taken this long (30 runs at most)


def data(loss, n, d, classes, seed=0):
    """Correlated features in mixed units; a linear target (noisy) or labels from one."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d))
    Z[:, 1:] += 0.5 * Z[:, :-1]  # neighbouring features correlated
    X = Z * rng.uniform(0.1, 10, d) + rng.uniform(-5, 5, d)
    W = rng.standard_normal((d, max(classes, 1))) / np.sqrt(d)
    S = (X - X.mean(axis=0)) / X.std(axis=0) @ W
    if loss == "squared":
        return X, S[:, 0] * 3 + 1 + rng.standard_normal(n)
    if loss == "log":
        return X, (S[:, 0] * 2 + rng.logistic(size=n) > 0).astype(np.int64)
    return X, (S * 2 + rng.gumbel(size=S.shape)).argmax(axis=1)


class Objective:
    """The objective of a model (coef (k, d), intercept (k,)) in original units: the mean
    loss plus alpha/2 |coef * scale|^2, scale the features' standard deviations."""

    def __init__(self, loss, X, y, alpha):
        self.loss, self.X, self.y, self.alpha = loss, X, y, alpha
        self.scale = X.std(axis=0)

    def __call__(self, coef, intercept) -> float:
        coef = np.atleast_2d(coef)
        Z = self.X @ coef.T + intercept
        if self.loss == "squared":
            value = np.mean((Z[:, 0] - self.y) ** 2)
        elif self.loss == "log":
            z = Z[:, 0]
            value = np.mean(np.logaddexp(0, z) - self.y * z)
        else:
            top = Z.max(axis=1, keepdims=True)
            log_total = np.log(np.exp(Z - top).sum(axis=1)) + top[:, 0]
            value = np.mean(log_total - Z[np.arange(len(Z)), self.y])
        return float(value + self.alpha / 2 * np.sum((coef * self.scale) ** 2))

    def constant(self) -> float:
        if self.loss == "squared":
            return float(np.var(self.y))
        p = np.bincount(self.y) / len(self.y)
        return float(-(p[p > 0] * np.log(p[p > 0])).sum())


BUDGET = 30.0  # seconds a fastgd fit may run (a callback stops it): no endless first-order runs


def fastgd_fit(optimizer, loss, X, y, alpha, tol):
    if optimizer == "newton-cg":  # Newton on Hessian-vector passes, as where H is too large
        formed, newton.HESSIAN_BYTES = newton.HESSIAN_BYTES, 0
        try:
            return fastgd_fit("newton", loss, X, y, alpha, tol)
        finally:
            newton.HESSIAN_BYTES = formed
    estimator = GDRegressor if loss == "squared" else GDClassifier
    settings = {} if optimizer == "default" else {"optimizer": optimizer}
    if optimizer in ("lbfgs", "newton"):
        settings.update(tolerance_grad=0.0, tolerance_change=0.0)
    start = time.perf_counter()
    model = estimator(alpha=alpha, tol=tol, max_epochs=100_000, callbacks=lambda figures: (
        time.perf_counter() - start > BUDGET), **settings).fit(X, y)
    return model.coef_, model.intercept_


def sklearn_fit(name, loss, X, y, alpha, tol):
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler

    if name == "LinearRegression":  # exact solvers need no scaling: none timed
        model = LinearRegression().fit(X, y)
        return model.coef_, np.atleast_1d(model.intercept_)
    if name == "Ridge(cholesky)":
        model = Ridge(alpha=1e-12, solver="cholesky").fit(X, y)
        return model.coef_, np.atleast_1d(model.intercept_)
    scaler = StandardScaler()
    Xs = scaler.fit_transform(X)
    solver = name.split("(")[1][:-1]
    model = LogisticRegression(C=1 / (len(y) * alpha), solver=solver, tol=tol,
                               max_iter=100_000).fit(Xs, y)
    return unscaled(model.coef_, model.intercept_, scaler.mean_, scaler.scale_)


def intelex_fit(loss, X, y, alpha, tol):
    from sklearn.preprocessing import StandardScaler
    from sklearnex.linear_model import LinearRegression, LogisticRegression

    if loss == "squared":  # exact: no scaling needed, none timed
        model = LinearRegression().fit(X, y)
        return model.coef_, np.atleast_1d(model.intercept_)
    scaler = StandardScaler()
    Xs = scaler.fit_transform(X)
    model = LogisticRegression(C=1 / (len(y) * alpha), tol=tol, max_iter=100_000).fit(Xs, y)
    return unscaled(model.coef_, model.intercept_, scaler.mean_, scaler.scale_)


def glum_fit(loss, X, y, alpha, tol):
    from glum import GeneralizedLinearRegressor

    family = {"squared": "normal", "log": "binomial"}[loss]
    # glum's normal objective is half the mean squared error: the same optimum
    model = GeneralizedLinearRegressor(family=family, alpha=alpha, l1_ratio=0.0,
                                       scale_predictors=True, gradient_tol=tol,
                                       max_iter=100_000).fit(X, y)
    return np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_)


def torch_fit(loss, X, y, alpha, tol):
    """torch.optim.LBFGS (strong Wolfe) on the standardized data, full batch, float64."""
    import torch

    mean, scale = X.mean(axis=0), X.std(axis=0)
    Xt = torch.from_numpy((X - mean) / scale)
    k = 1 if loss != "multinomial" else int(y.max()) + 1
    W = torch.zeros(k, X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    yt = torch.from_numpy(y.astype(np.float64 if loss != "multinomial" else np.int64))
    optimizer = torch.optim.LBFGS([W, b], max_iter=100_000, tolerance_grad=tol,
                                  tolerance_change=0.0, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        Z = Xt @ W.T + b
        if loss == "squared":
            value = torch.nn.functional.mse_loss(Z[:, 0], yt)
        elif loss == "log":
            value = torch.nn.functional.binary_cross_entropy_with_logits(Z[:, 0], yt)
        else:
            value = torch.nn.functional.cross_entropy(Z, yt)
        value = value + alpha / 2 * (W ** 2).sum()
        value.backward()
        return value

    optimizer.step(closure)
    return unscaled(W.detach().numpy(), b.detach().numpy(), mean, scale)


def unscaled(coef, intercept, mean, scale):
    coef = np.atleast_2d(coef) / scale
    return coef, np.atleast_1d(intercept) - coef @ mean


def time_to_model(fit, objective, target, tols, repeat):
    """(seconds, tol) of the first tolerance whose fit reaches the target objective (best of
    `repeat` runs), or (None, gap reached) if none does."""
    gap = None
    for tol in tols:
        best, spent, runs = np.inf, 0.0, 0
        while runs < repeat or (spent < SMALL and runs < 30):
            runs += 1
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                coef, intercept = fit(tol)
            seconds = time.perf_counter() - start
            best, spent = min(best, seconds), spent + seconds
            value = objective(coef, intercept)
            if value > target:
                break
        if value <= target:
            return best, tol
        gap = value
        if seconds > BUDGET:  # a tighter tol would only run longer
            break
    return None, gap


TABLE_HEADER = ("\n| problem | method | seconds | tol | x fastgd default |\n"
                "|---|---|---|---|---|")


def table_row(problem: str, method: str, seconds, detail: str, times: dict) -> str:
    """A row of TABLE_HEADER's table, recording `seconds` (None: not reached) in times by
    method, the ratio to times["fastgd default"] (measured first)."""
    times[method] = seconds
    shown = f"{seconds:.3f}" if seconds is not None else "-"
    ratio = (f"{seconds / times['fastgd default']:.2f}"
             if seconds is not None and times.get("fastgd default") else "")
    return f"| {problem} | {method} | {shown} | {detail} | {ratio} |"


def methods(loss):
    """(name, fit(loss, X, y, alpha, tol), tolerances to try) of every method for the loss."""
    tols = [10.0 ** -e for e in range(4, 15)]
    found = [(f"fastgd {o}", lambda L, X, y, a, t, o=o: fastgd_fit(o, L, X, y, a, t),
              [1e-6] + [10.0 ** -e for e in range(7, 15)]) for o in FASTGD]
    if loss == "squared":
        found += [(name, lambda L, X, y, a, t, n=name: sklearn_fit(n, L, X, y, a, t), [0.0])
                  for name in ("LinearRegression", "Ridge(cholesky)")]
    else:
        found += [(f"LogisticRegression({s})",
                   lambda L, X, y, a, t, s=s: sklearn_fit(f"LogisticRegression({s})", L, X, y,
                                                         a, t), tols)
                  for s in ("lbfgs", "newton-cholesky")]
    for name, fit, peer_tols in (("scikit-learn-intelex", intelex_fit,
                                  [0.0] if loss == "squared" else tols),
                                 ("glum", glum_fit, tols), ("torch LBFGS", torch_fit, tols)):
        if name == "glum" and loss == "multinomial":
            continue
        found.append((name, fit, peer_tols))
    return found


def available(name) -> bool:
    module = {"scikit-learn-intelex": "sklearnex", "glum": "glum", "torch LBFGS": "torch"}
    try:
        __import__(module.get(name, "numpy"))
        return True
    except ImportError:
        return False


def run(problem, repeat, dtypes, only=None):
    loss, n, d, classes = PROBLEMS[problem]
    X, y = data(loss, n, d, classes)
    alpha = ALPHA[loss]
    objective = Objective(loss, X, y, alpha)
    # the optimum: Newton's to rounding (for the softmax, whose Hessian has 55 blocks of
    # 201 x 201 a row, L-BFGS's to rounding)
    exact = fastgd_fit("lbfgs" if loss == "multinomial" else "newton", loss, X, y, alpha, 0.0)
    best = objective(*exact)
    target = best + ACCURACY * (objective.constant() - best)
    rows = []
    for name, fit, tols in methods(loss):
        if only and not any(part in name for part in only):
            continue
        if not available(name):
            rows.append((name, "not installed", ""))
            continue
        for dtype in dtypes if name.startswith("fastgd") else (np.float64,):
            Xd = X.astype(dtype)
            seconds, how = time_to_model(lambda t, f=fit, Xd=Xd: f(loss, Xd, y, alpha, t),
                                         objective, target, tols, repeat)
            label = name + (" float32" if dtype == np.float32 else "")
            if seconds is None:
                rows.append((label, "not reached",
                             f"gap {(how - best) / (objective.constant() - best):.1e}"))
            else:
                rows.append((label, seconds, f"tol {how:g}"))
            print(f"  {problem}: {label}: {rows[-1][1]} ({rows[-1][2]})", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS),
                        help="comma-separated names (default: all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--float64-only", action="store_true")
    parser.add_argument("--methods", help="comma-separated parts of method names to run "
                        "(default: all)")
    args = parser.parse_args()
    dtypes = (np.float64,) if args.float64_only else (np.float64, np.float32)
    print(machine())
    tables = []
    for problem in args.problems.split(","):
        rows = run(problem, args.repeat, dtypes,
                   args.methods.split(",") if args.methods else None)
        tables.append((problem, rows))
    for problem, rows in tables:
        times = [r[1] for r in rows if isinstance(r[1], float)]
        peers = [r[1] for r in rows if isinstance(r[1], float) and not r[0].startswith("fastgd")]
        print(f"\n### {problem}\n\n| method | seconds | vs fastest peer | setting |\n|---|---|---|---|")
        for name, seconds, how in rows:
            if isinstance(seconds, float):
                ratio = f"{min(peers) / seconds:.2f}x" if peers else ""
                print(f"| {name} | {seconds:.3g} | {ratio} | {how} |")
            else:
                print(f"| {name} | {seconds} | | {how} |")
        del times


if __name__ == "__main__":
    main()
