"""optimizer="lbfgs": torch.optim.LBFGS's iterations on the fused pass, through every entry
point (both engines, weights, outputs, classes, checkpoints, early stopping)."""

import warnings

import numpy as np
import pytest
from conftest import assert_same_fit, make_problem
from numpy.testing import assert_allclose
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

import fastgd
from fastgd import GDClassifier, GDRegressor, losses
from fastgd._engines import engine_for
from fastgd._problem import Problem
from fastgd._training import train
from fastgd.solvers.lbfgs import LBFGS

ITERATIONS = 20


def mixed_problem(loss: str, n=300, d=5, seed=0):
    """X in mixed units and offsets, and targets for `loss` (k outputs: 3 classes for the
    multinomial loss)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * [1.0, 2.0, 3.0, 0.5, 1.0][:d] + 0.3
    Z = X @ rng.standard_normal((d, 3)) + 0.5
    if loss == "squared":
        return X, Z[:, :1] + rng.standard_normal((n, 1)), 1
    if loss == "log":
        return X, (Z[:, :1] + rng.logistic(size=(n, 1)) > 0).astype(float), 1
    return X, (Z + rng.gumbel(size=Z.shape)).argmax(axis=1)[:, None].astype(float), 3


def torch_lbfgs(X, Y, loss, k, l2, **settings):
    """torch.optim.LBFGS on the same objective from zeros: the parameters (W, b) at every
    evaluation, in order, and the final ones."""
    torch = pytest.importorskip("torch")
    W = torch.zeros(k, X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([W, b], max_iter=ITERATIONS, **settings)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    points = []

    def closure():
        optimizer.zero_grad()
        points.append(np.append(W.detach().numpy().ravel(), b.detach().numpy()))
        Z = Xt @ W.T + b
        if loss == "squared":
            value = torch.nn.functional.mse_loss(Z, Yt)
        elif loss == "log":
            value = torch.nn.functional.binary_cross_entropy_with_logits(Z, Yt)
        else:
            value = torch.nn.functional.cross_entropy(Z, Yt[:, 0].long())
        value = value + 0.5 * l2 * (W ** 2).sum()
        value.backward()
        return value

    optimizer.step(closure)
    return points, np.append(W.detach().numpy().ravel(), b.detach().numpy())


class Recording:
    """An engine that records the parameters of every loss-and-gradient pass."""

    def __init__(self, engine):
        self.engine, self.points = engine, []

    def loss_and_grad(self, problem, coef, intercept):
        self.points.append(np.append(coef.ravel(), intercept))
        return self.engine.loss_and_grad(problem, coef, intercept)

    def __getattr__(self, name):
        return getattr(self.engine, name)


@pytest.mark.parametrize("loss", ["squared", "log", "multinomial"])
@pytest.mark.parametrize("l2", [0.0, 0.1])
@pytest.mark.parametrize("line_search_fn", ["strong_wolfe", None])
def test_iterates_follow_torch(loss, l2, line_search_fn):
    """Every point fastgd evaluates is the one torch evaluates, over 20 iterations. Without
    a line search fastgd also evaluates the last iterate (torch skips it)."""
    X, Y, k = mixed_problem(loss)
    lr = 1.0 if line_search_fn else 0.1
    settings = dict(lr=lr, history_size=5, line_search_fn=line_search_fn)
    want_points, want = torch_lbfgs(X, Y, loss, k, l2, **settings)
    engine = Recording(engine_for(X))
    solver = LBFGS(lr, history_size=5, line_search_fn=line_search_fn, l2=l2,
                   max_eval=ITERATIONS * 5 // 4)
    result = train(engine, Problem(X, Y, None, losses.get(loss), k), solver,
                   coef=np.zeros((k, X.shape[1])), intercept=np.zeros(k), standardize=False,
                   max_epochs=ITERATIONS, tol=None)
    extra = 0 if line_search_fn else 1
    assert len(engine.points) == len(want_points) + extra
    assert_allclose(engine.points[:len(want_points)], want_points, rtol=1e-6, atol=1e-10)
    assert_allclose(np.append(result.coef.ravel(), result.intercept), want, rtol=1e-6,
                    atol=1e-10)


def test_the_estimators_follow_torch():
    """max_epochs is torch's max_iter, learning_rate its lr, alpha its L2 (l1_ratio 0)."""
    for estimator, loss in ((GDRegressor, "squared"), (GDClassifier, "log")):
        X, Y, k = mixed_problem(loss, seed=3)
        y = Y[:, 0]
        model = estimator(optimizer="lbfgs", learning_rate=1.0, history_size=7,
                          max_epochs=ITERATIONS, tol=None, standardize=False, alpha=0.01,
                          tolerance_grad=1e-7, tolerance_change=1e-9).fit(X, y)
        _, want = torch_lbfgs(X, Y, loss, k, 0.01, history_size=7,
                              line_search_fn="strong_wolfe")
        assert_allclose(np.append(model.coef_, model.intercept_), want, rtol=1e-6,
                        atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ["squared", "huber", "outputs", "binary", "multiclass"])
def test_both_engines_take_the_same_steps(dtype, case):
    X, y, sw = make_problem(400, 6, weights=True, dtype=dtype)
    if case == "outputs":
        y = np.column_stack([y, -2 * y + 1])
    estimator, settings = GDRegressor, dict(loss="huber" if case == "huber" else "squared")
    if case in ("binary", "multiclass"):  # the log loss, the multinomial for 3 classes
        estimator, settings = GDClassifier, {}
        y = np.digitize(y, np.quantile(y, [0.5] if case == "binary" else [0.3, 0.6]))
    fits = [estimator(optimizer="lbfgs", engine=engine, alpha=0.01, max_epochs=30,
                      **settings).fit(X, y, sample_weight=sw)
            for engine in ("cython", "numpy")]
    rtol = 1e-9 if dtype == np.float64 else 1e-5
    assert fits[0].n_iter_ == fits[1].n_iter_
    assert_allclose(fits[0].coef_, fits[1].coef_, rtol=rtol, atol=rtol * 1e-3)
    assert_allclose(fits[0].history_["objective"], fits[1].history_["objective"], rtol=rtol)


def test_reaches_logistic_regressions_and_ridges_optimum():
    """The penalized optimum of scikit-learn's exact solvers on standardized features (to
    the precision the objective allows: its changes are rounding error at 1e-15, and the
    problem ill-conditioned), in a few
    dozen passes."""
    X, y = load_breast_cancer(return_X_y=True)
    C = 0.5
    scaler = StandardScaler().fit(X)
    exact = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12).fit(
        scaler.transform(X), y)
    model = GDClassifier(optimizer="lbfgs", alpha=1 / (C * len(y)), tol=0.0,
                         tolerance_change=1e-15, tolerance_grad=1e-10).fit(X, y)
    coef = exact.coef_ / scaler.scale_
    assert_allclose(model.coef_, coef, rtol=1e-5, atol=1e-8 * np.abs(coef).max())
    assert sum(model.history_["passes"]) < 200
    X, y = load_diabetes(return_X_y=True)
    scaler = StandardScaler().fit(X)
    alpha = 0.1
    exact = Ridge(alpha=alpha * len(y) / 2).fit(scaler.transform(X), y)
    model = GDRegressor(optimizer="lbfgs", alpha=alpha, tol=0.0, tolerance_change=1e-15,
                        tolerance_grad=1e-9).fit(X, y)
    assert_allclose(model.coef_, exact.coef_ / scaler.scale_, rtol=1e-5)


def test_history_and_convergence():
    """One entry an iteration: its step length, its passes (one per evaluation, the first
    with the column statistics' and the start's), a falling objective; tol stops it."""
    X, y, _ = make_problem(500, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = GDRegressor(optimizer="lbfgs").fit(X, y)
    history = model.history_
    assert model.n_iter_ == len(history["loss"]) < 100
    assert history["passes"][0] >= 3 and all(p >= 1 for p in history["passes"])
    assert all(np.diff(history["objective"]) <= 0)
    assert model.learning_rate_ == 1.0
    with pytest.warns(fastgd.ConvergenceWarning, match="without converging"):
        GDRegressor(optimizer="lbfgs", max_epochs=2).fit(X, y)


def test_resume_is_bit_identical(tmp_path):
    X, y, sw = make_problem(500, 6, weights=True)
    settings = dict(optimizer="lbfgs", history_size=3, alpha=0.01, tol=None,
                    tolerance_change=0.0, tolerance_grad=0.0, max_epochs=12)
    uninterrupted = GDRegressor(**settings).fit(X, y, sample_weight=sw)
    path = tmp_path / "fit.ckpt"
    GDRegressor(**settings, checkpoint=path, checkpoint_every=2,
                callbacks=lambda e: e["epoch"] == 7).fit(X, y, sample_weight=sw)
    resumed = GDRegressor(**settings, checkpoint=path).fit(X, y, sample_weight=sw,
                                                           resume=path)
    assert_same_fit(resumed, uninterrupted)


@pytest.mark.parametrize("optimizer", ["lbfgs", "newton"])
def test_early_stopping_and_warm_start(optimizer):
    """The solvers on the whole data train on the rows early stopping leaves them (read in
    place), and a warm start goes on from the previous fit's parameters."""
    X, y, _ = make_problem(600, 5)
    y = y + np.random.default_rng(0).standard_normal(600)
    model = GDRegressor(optimizer=optimizer, loss="huber", early_stopping=True,
                        n_iter_no_change=2, random_state=0).fit(X, y)
    assert len(model.history_["val_loss"]) == model.n_iter_
    again = GDRegressor(optimizer=optimizer, loss="huber", warm_start=True)
    again.fit(X, y)
    first = again.n_iter_
    again.fit(X, y)
    assert again.n_iter_ < first


@pytest.mark.parametrize("settings,message", [
    (dict(batch_size=32), "batch_size is for the first-order optimizers"),
    (dict(alpha=0.1, l1_ratio=0.5), "l1_ratio is for the first-order optimizers"),
    (dict(schedule="cosine"), "schedule is for the first-order optimizers"),
    (dict(clip_norm=1.0), "clip_norm is for the first-order optimizers"),
    (dict(history_size=0), "history_size"),
    (dict(line_search_fn="backtracking"), "line_search_fn must be 'strong_wolfe' or None"),
    (dict(tolerance_grad=-1.0), "tolerance_grad"),
])
def test_refuses_what_it_has_no_use_for(settings, message):
    X, y, _ = make_problem(50, 3)
    with pytest.raises(ValueError, match=message):
        GDRegressor(optimizer="lbfgs", **settings).fit(X, y)


def test_partial_fit_is_first_order():
    X, y, _ = make_problem(50, 3)
    with pytest.raises(ValueError, match="partial_fit trains one epoch of a first-order"):
        GDRegressor(optimizer="lbfgs").partial_fit(X, y)


def test_a_line_search_ends_at_torchs_max_ls_with_no_tolerances():
    """tolerance_change=0 and tolerance_grad=0 leave nothing but max_ls to end a zoom that
    makes no progress at the optimum (here a step once took the rest of the budget, 450
    evaluations; a softmax fit of 200k rows zoomed for hours): a step makes at most
    25 evaluations, torch's max_ls (26 passes: the first step's evaluation too)."""
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((5000, 20))
    Z[:, 1:] += 0.5 * Z[:, :-1]
    X = Z * rng.uniform(0.1, 10, 20) + rng.uniform(-5, 5, 20)
    S = (X - X.mean(axis=0)) / X.std(axis=0) @ rng.standard_normal((20, 4)) / np.sqrt(20)
    y = (S * 2 + rng.gumbel(size=S.shape)).argmax(axis=1)
    model = GDClassifier(optimizer="lbfgs", alpha=1e-4, tol=0.0, tolerance_grad=0.0,
                         tolerance_change=0.0, max_epochs=400).fit(X, y)
    assert max(model.history_["passes"]) <= 26
