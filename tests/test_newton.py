"""optimizer="newton" and the Hessian pass it stands on (Engine.hessian)."""

import numpy as np
import scipy.sparse as sp
import pytest
from conftest import LOSSES, assert_same_fit, loss_id, make_problem, targets_for
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from fastgd import GDClassifier, GDRegressor
from fastgd._engines import engine_for
from fastgd._problem import Problem
from fastgd._state import Standardization
from fastgd.losses import Squared
from fastgd.solvers import loss_and_gradient, newton


def hessian_problem(loss, dtype=np.float64, n=3000, d=5, rows=None, seed=0):
    """Mixed units and offsets, weights, and targets in the loss's domain near the model
    theta (returned with a standardization of X)."""
    X, _, sw = make_problem(n, d, weights=True, dtype=dtype, seed=seed)
    X = X * np.resize(np.array([1.0, 10.0, 0.01, 3.0, 1.0], dtype=dtype), d) + dtype(5)
    k = 3 if loss.class_indices else 2
    Z = (X - X.mean(axis=0)) / X.std(axis=0) @ np.random.default_rng(seed).standard_normal(
        (d, k)) / 2
    problem = Problem(X, targets_for(loss, Z.astype(dtype)), sw, loss, k, rows)
    mean, var = engine_for(X).column_stats(problem)
    std = Standardization(mean, np.sqrt(var), np.sqrt(var))
    theta = np.random.default_rng(seed + 1).standard_normal(k * (d + 1)) / 4
    return problem, theta, std


@pytest.mark.parametrize("loss", LOSSES, ids=loss_id)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hessian_pass_is_the_gradients_derivative(loss, dtype):
    """The compiled engine's pass (by blocks) equals the reference's (whole X) and the
    fused pass's loss and gradient; its Hessian is the central difference of that
    gradient (in the trained, standardized parameters)."""
    rows = np.arange(0, 3000, 3)  # read in place, as early stopping's rows
    problem, theta, std = hessian_problem(loss, dtype, rows=rows)
    compiled, reference = engine_for(problem.X), engine_for(problem.X, "numpy")
    loss_value, gradient, H = compiled.hessian(problem, theta, std)
    want = reference.hessian(problem, theta, std)
    assert_allclose(loss_value, want[0], rtol=1e-12)
    assert_allclose(gradient, want[1], rtol=1e-10, atol=1e-13)
    assert_allclose(H, want[2], rtol=1e-10, atol=1e-13)
    fused = loss_and_gradient(compiled, problem, theta, std)
    assert_allclose(loss_value, fused[0], rtol=1e-12)
    assert_allclose(gradient, fused[1], rtol=1e-9, atol=1e-13)
    assert_array_equal(H, H.T)
    step = 1e-5
    central = np.array([(loss_and_gradient(compiled, problem, theta + step * e, std)[1]
                         - loss_and_gradient(compiled, problem, theta - step * e, std)[1])
                        / (2 * step) for e in np.eye(len(theta))])
    if loss.name != "huber":  # Huber's l'' jumps at +-delta: no central difference there
        assert_allclose(H, central, rtol=1e-5, atol=1e-6 * np.abs(H).max())


@pytest.mark.parametrize("order", ["C", "F"])
def test_hessian_pass_is_the_same_bits_on_any_number_of_threads(order):
    """The threads split the matrix by tiles of rows, each entry summed in row order."""
    problem, theta, std = hessian_problem(LOSSES[-1], n=20_000, d=37)
    problem = Problem(np.asarray(problem.X, order=order), problem.Y, problem.sample_weight,
                      problem.loss, problem.k)
    results = [engine_for(problem.X, n_threads=threads).hessian(problem, theta, std)
               for threads in (1, 2, 3)]
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("shape", [(3000, 5), (500, 300)])  # by chunks; by tiles
def test_moments_pass_is_the_references_on_any_number_of_threads(dtype, order, shape):
    """The compiled moments of [X, Y] (blocks centered on their own means, merged in row
    order) equal the reference's two passes, with weights and rows, and are the same bits
    on 1, 2 and 3 threads; the offsets of 1e6 cost no digits."""
    n, d = shape
    X, _, sw = make_problem(n, d, weights=True, dtype=dtype)
    X = np.asarray(X * dtype(3) + dtype(1e6), order=order)
    Y = np.random.default_rng(1).standard_normal((n, 2)).astype(dtype) - dtype(50)
    problem = Problem(X, Y, sw, Squared(), 2, np.arange(0, n, 2))
    want = engine_for(X, "numpy").moments(problem)
    results = [engine_for(X, n_threads=threads).moments(problem) for threads in (1, 2, 3)]
    spread = np.sqrt(np.outer(np.diag(want.comoment), np.diag(want.comoment)))

    def assert_close(comoment):  # in correlation units: the offsets' digits are not data
        assert np.abs((comoment - want.comoment) / spread).max() < 1e-10

    assert_allclose(results[0].weight, want.weight, rtol=1e-12)
    assert_allclose(results[0].mean, want.mean, rtol=1e-13)
    assert_close(results[0].comoment)
    assert_array_equal(results[0].comoment, results[0].comoment.T)
    exact = np.cov(np.hstack([X[::2], Y[::2]]).astype(np.float64).T, aweights=sw[::2],
                   bias=True)
    assert_close(exact * want.weight)
    for other in results[1:]:
        assert_array_equal(other.mean, results[0].mean)
        assert_array_equal(other.comoment, results[0].comoment)
    halves = [engine_for(X).moments(Problem(X, Y, sw, Squared(), 2, rows))
              for rows in (np.arange(0, n, 4), np.arange(2, n, 4))]
    assert_close(halves[0].merged(halves[1]).comoment)


@pytest.mark.parametrize("standardized", [True, False])
def test_squared_objective_from_moments_is_the_hessian_pass(standardized):
    """Least squares needs no pass after the moments: its loss, gradient and Hessian at any
    parameters (two outputs, weights, rows, standardized or not) are the Hessian pass's."""
    problem, theta, std = hessian_problem(Squared(), rows=np.arange(0, 3000, 3))
    std = std if standardized else None
    engine = engine_for(problem.X)
    from_moments = Squared().from_moments(engine.moments(problem), theta, std, problem.k)
    for got, want in zip(from_moments, engine.hessian(problem, theta, std), strict=True):
        assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("loss", LOSSES, ids=loss_id)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hessian_vector_pass_is_the_hessian_times_the_vector(loss, dtype):
    """Newton-CG's pass: the compiled one equals the reference's and the Hessian pass's
    H v (with its loss and gradient), the same bits on any number of threads."""
    problem, theta, std = hessian_problem(loss, dtype, rows=np.arange(0, 3000, 3))
    vector = np.random.default_rng(5).standard_normal(len(theta))
    results = [engine_for(problem.X, n_threads=threads).hessian_vector(problem, theta, std,
                                                                      vector)
               for threads in (1, 2, 3)]
    want = engine_for(problem.X, "numpy").hessian_vector(problem, theta, std, vector)
    loss_value, gradient, H = engine_for(problem.X).hessian(problem, theta, std)
    for got, expected in zip(results[0], want, strict=True):
        assert_allclose(got, expected, rtol=1e-10, atol=1e-13)
    assert_allclose(results[0][0], loss_value, rtol=1e-12)
    assert_allclose(results[0][1], gradient, rtol=1e-10, atol=1e-13)
    assert_allclose(results[0][2], H @ vector, rtol=1e-9, atol=1e-12 * np.abs(H).sum())
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert_array_equal(a, b)


@pytest.mark.parametrize("standardize", [True, False, "scale"])
@pytest.mark.parametrize("kind", ["least squares", "binary", "softmax"])
def test_newton_cg_reaches_newtons_optimum(monkeypatch, kind, standardize):
    """Where the Hessian would be too large, Newton-CG (Hessian-vector passes, no p x p
    matrix in its state, preconditioned in each kind of units) reaches the optimum of
    Newton with the Hessian."""
    X, y, sw = make_problem(1500, 6, weights=True)
    X = X * np.arange(1, 7) + 3.0
    if kind == "least squares":
        estimator, settings = GDRegressor, {"alpha": 0.01}
    else:
        estimator, settings = GDClassifier, {"alpha": 1e-3}
        y = np.digitize(y, np.quantile(y, [0.5] if kind == "binary" else [0.3, 0.6]))
    settings.update(tol=1e-12, tolerance_grad=1e-11, standardize=standardize)
    formed = estimator(optimizer="newton", **settings).fit(X, y, sample_weight=sw)
    monkeypatch.setattr(newton, "HESSIAN_BYTES", 0)
    cg = estimator(optimizer="newton", **settings).fit(X, y, sample_weight=sw)
    assert "hessian" not in cg._state.slots and "hessian" in formed._state.slots
    assert sum(cg.history_["passes"]) > sum(formed.history_["passes"])  # a pass a CG step
    assert_allclose(cg.coef_, formed.coef_, rtol=1e-6, atol=1e-8)
    assert_allclose(cg.intercept_, formed.intercept_, rtol=1e-6, atol=1e-8)


def test_newton_cg_preconditioned_by_the_columns_scales(monkeypatch):
    """On one-hot rows, whose columns' scales span orders of magnitude (levels of Zipf
    frequencies beside dense columns), the Jacobi preconditioner (the Hessian diagonal's
    bound) reaches the same L2 logistic optimum in far fewer Hessian-vector passes than
    plain conjugate gradients (measured: 63 against 237)."""
    rng = np.random.default_rng(0)
    n, levels, dense = 20_000, np.array([10, 100, 1000]), 3
    codes = (rng.zipf(1.3, size=(n, len(levels))) - 1) % levels + np.cumsum(levels) - levels
    columns = np.column_stack([codes, np.broadcast_to(levels.sum() + np.arange(dense),
                                                      (n, dense))])
    values = np.column_stack([np.ones((n, len(levels))), rng.standard_normal((n, dense))])
    X = sp.csr_matrix((values.ravel(), columns.ravel(),
                       np.arange(0, columns.size + 1, columns.shape[1])),
                      shape=(n, levels.sum() + dense))
    z = X @ (rng.standard_normal(X.shape[1]) * (rng.random(X.shape[1]) < 0.1))
    y = rng.random(n) < 1 / (1 + np.exp(-2 * (z - z.mean()) / z.std()))
    monkeypatch.setattr(newton, "HESSIAN_BYTES", 0)
    settings = dict(optimizer="newton", alpha=1 / n, standardize=False, tol=1e-10,
                    tolerance_grad=1e-9)
    preconditioned = GDClassifier(**settings).fit(X, y)
    monkeypatch.setattr(newton, "hessian_diagonal_bound",
                        lambda engine, problem, std, l2: np.ones(problem.k * (X.shape[1] + 1)))
    plain = GDClassifier(**settings).fit(X, y)
    assert sum(preconditioned.history_["passes"]) < sum(plain.history_["passes"]) / 2
    assert_allclose(preconditioned.coef_, plain.coef_, rtol=1e-5, atol=1e-5)


def test_least_squares_is_one_step_and_exact():
    """One Hessian pass and a solve: scikit-learn's Ridge and LinearRegression on the same
    (standardized) problem, to rounding."""
    X, y, sw = make_problem(2000, 8, weights=True)
    X = X * np.arange(1, 9) + 100.0  # mixed units, offsets far from zero
    model = GDRegressor(optimizer="newton").fit(X, y, sample_weight=sw)
    assert model.n_iter_ == 1 and model.history_["passes"] == [1]  # the moments of [X, y]
    exact = LinearRegression().fit(X, y, sample_weight=sw)
    assert_allclose(model.coef_, exact.coef_, rtol=1e-10)
    assert_allclose(model.intercept_, exact.intercept_, rtol=1e-10)
    alpha = 0.3
    ridge = GDRegressor(optimizer="newton", alpha=alpha, standardize=False).fit(X, y)
    exact = Ridge(alpha=alpha * len(y) / 2).fit(X, y)
    assert_allclose(ridge.coef_, exact.coef_, rtol=1e-9)


def test_collinear_and_constant_features_give_the_least_norm_solution():
    """A feature that is the sum of two others and a constant one: the singular Hessian
    gives lstsq's least-norm coefficients (on centered features, where the intercept is
    apart from them, as scikit-learn's LinearRegression centers), and, standardized, the
    constant feature's coefficient is 0."""
    X, y, _ = make_problem(500, 4)
    X -= X.mean(axis=0)
    X = np.column_stack([X, X[:, 0] + X[:, 1], np.zeros(500)])
    model = GDRegressor(optimizer="newton", standardize=False).fit(X, y)
    exact = LinearRegression().fit(X, y)
    assert_allclose(model.predict(X), exact.predict(X), rtol=1e-9)
    assert_allclose(model.coef_, exact.coef_, atol=1e-9)
    X[:, -1] = 3.0
    model = GDRegressor(optimizer="newton").fit(X, y)
    assert model.coef_[-1] == 0.0
    assert_allclose(model.predict(X), exact.predict(X), rtol=1e-9)


@pytest.mark.parametrize("load", [load_breast_cancer, load_iris])
def test_reaches_logistic_regressions_optimum_in_few_passes(load):
    X, y = load(return_X_y=True)
    C = 0.5
    scaler = StandardScaler().fit(X)
    exact = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12).fit(
        scaler.transform(X), y)
    model = GDClassifier(optimizer="newton", alpha=1 / (C * len(y)), tol=1e-12,
                         tolerance_grad=0.0).fit(X, y)
    coef = exact.coef_ / scaler.scale_
    assert_allclose(model.coef_, coef, rtol=1e-7, atol=1e-9 * np.abs(coef).max())
    assert sum(model.history_["passes"]) <= 15
    assert np.all(np.diff(model.history_["objective"]) < 0)


@pytest.mark.parametrize("case", ["squared", "huber", "outputs", "binary", "multiclass"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_both_engines_take_the_same_steps(dtype, case):
    X, y, sw = make_problem(400, 6, weights=True, dtype=dtype)
    if case == "outputs":
        y = np.column_stack([y, -2 * y + 1])
    estimator, settings = GDRegressor, dict(loss="huber" if case == "huber" else "squared")
    if case in ("binary", "multiclass"):
        estimator, settings = GDClassifier, {}
        y = np.digitize(y, np.quantile(y, [0.5] if case == "binary" else [0.3, 0.6]))
    fits = [estimator(optimizer="newton", engine=engine, alpha=0.01, **settings).fit(
        X, y, sample_weight=sw) for engine in ("cython", "numpy")]
    rtol = 1e-9 if dtype == np.float64 else 1e-5
    assert fits[0].n_iter_ == fits[1].n_iter_
    assert_allclose(fits[0].coef_, fits[1].coef_, rtol=rtol, atol=rtol * 1e-3)
    assert_allclose(fits[0].history_["objective"], fits[1].history_["objective"], rtol=rtol)


def test_resume_is_bit_identical(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    settings = dict(optimizer="newton", alpha=1e-4, tol=None, tolerance_grad=0.0,
                    max_epochs=6, learning_rate=0.5)
    uninterrupted = GDClassifier(**settings).fit(X, y)
    path = tmp_path / "fit.ckpt"
    GDClassifier(**settings, checkpoint=path, callbacks=lambda e: e["epoch"] == 3).fit(X, y)
    resumed = GDClassifier(**settings, checkpoint=path).fit(X, y, resume=path)
    assert_same_fit(resumed, uninterrupted)


def test_a_line_search_from_a_long_step():
    """learning_rate is the first step length tried: from 8, the backtracking halves it."""
    X, y = load_breast_cancer(return_X_y=True)
    settings = dict(optimizer="newton", tol=1e-12, tolerance_grad=0.0)
    model = GDClassifier(learning_rate=8.0, **settings).fit(X, y)
    assert min(model.history_["learning_rate"]) < 8.0
    want = GDClassifier(**settings).fit(X, y)
    assert_allclose(model.predict_proba(X), want.predict_proba(X), atol=1e-5)


def test_refuses_l1_and_partial_fit():
    X, y, _ = make_problem(50, 3)
    with pytest.raises(ValueError, match="l1_ratio is for the first-order optimizers"):
        GDRegressor(optimizer="newton", alpha=0.1, l1_ratio=1.0).fit(X, y)
    with pytest.raises(ValueError, match="partial_fit trains one epoch of a first-order"):
        GDRegressor(optimizer="newton").partial_fit(X, y)
