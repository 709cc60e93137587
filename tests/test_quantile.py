"""The quantile (pinball) loss: its definition against scikit-learn's PinballLoss, its
smoothed forms (Newton's), the optimum against QuantileRegressor(solver="highs") on every
solver and input kind that takes it, and the solvers that cannot take a kink refusing it
clearly."""

import json
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastgd
from fastgd import losses, reference

sk_loss = pytest.importorskip("sklearn._loss.loss")
linear_model = pytest.importorskip("sklearn.linear_model")
QUANTILES = (0.1, 0.5, 0.9)


@pytest.mark.parametrize("q", QUANTILES)
def test_value_and_gradient_are_scikit_learns_pinball_loss(q):
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal(500), rng.standard_normal(500)
    y[:20] = z[:20]  # at the kink: scikit-learn's subgradient, -q
    loss = losses.get("quantile", quantile=q)
    expected, gradient = sk_loss.PinballLoss(quantile=q).loss_gradient(y, z)
    value, derivative = loss.value_and_gradient(z[:, None], y[:, None])
    assert_allclose(value, expected, rtol=1e-14, atol=1e-15)
    assert_allclose(derivative[:, 0], gradient, rtol=0, atol=0)
    assert (loss.hessian(z[:, None], y[:, None]) == 0).all()
    X = np.eye(500)  # the compiled and reference passes: z = X w + b at X = I
    for loss_and_grad in (fastgd.loss_and_grad, reference.loss_and_grad):
        mean, grad_coef, _ = loss_and_grad(X, y, z, 0.0, loss="quantile", quantile=q)
        assert_allclose(mean, expected.mean(), rtol=1e-12)
        assert_allclose(grad_coef, gradient / 500, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("q", QUANTILES)
def test_each_smoothed_form_is_differentiable_and_within_its_width_below(q):
    """The smoothed form of width h: its derivative is its value's (numerically), it is
    below the pinball loss by at most max(q, 1 - q)^2 h / 2, it equals the pinball loss's
    slope off its band, and its Newton curvature is 1 / h on the band and positive off
    it; the compiled passes compute the same (value, gradient, Hessian)."""
    rng = np.random.default_rng(1)
    z, y, h = rng.uniform(-1, 1, 2000), rng.uniform(-1, 1, 2000), 0.3
    exact, smooth = losses.get("quantile", quantile=q), losses.get(
        "quantile", quantile=q).smoothed(h)
    assert not exact.smooth and smooth.smooth and smooth.smoothing == h
    e = 1e-6
    numeric = (smooth.value(z + e, y) - smooth.value(z - e, y)) / (2 * e)
    assert_allclose(smooth.derivative(z, y), numeric, atol=1e-8)
    gap = exact.value(z, y) - smooth.value(z, y)
    assert gap.min() >= 0 and gap.max() <= max(q, 1 - q) ** 2 * h / 2 + 1e-15
    r = y - z
    band = (-(1 - q) * h <= r) & (r <= q * h)
    assert_allclose(smooth.derivative(z, y)[~band], exact.derivative(z, y)[~band])
    curvature = smooth.second_derivative(z, y)
    assert (curvature[band] == 1 / h).all() and (curvature > 0).all()
    assert (curvature <= 1 / h).all()
    from fastgd._engines import engine_for
    from fastgd._problem import Problem

    X = rng.standard_normal((2000, 3))
    problem = Problem(X, y[:, None], rng.uniform(0.5, 2, 2000), smooth, 1)
    theta = np.array([0.1, -0.2, 0.3, 0.05])
    compiled = engine_for(X, "cython", 2).hessian(problem, theta, None)
    numpy = engine_for(X, "numpy", 1).hessian(problem, theta, None)
    for a, b in zip(compiled, numpy):
        assert_allclose(a, b, rtol=1e-12)


def heteroscedastic(n=3000, d=5, seed=0):
    """y = x beta + (1 + |x_0|) noise: the quantiles of y given x are linear, their slopes
    in x_0 apart."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 3, d) + rng.uniform(-2, 2, d)
    y = X @ rng.standard_normal(d) + 2 + (1 + np.abs(X[:, 0])) * rng.standard_normal(n)
    return X, y, rng.uniform(0.2, 3, n)


def peer(X, y, q, w=None):
    return linear_model.QuantileRegressor(quantile=q, alpha=0, solver="highs").fit(
        X, y, sample_weight=w)


def assert_same_model(model, expected, rtol=1e-6):
    scale = np.abs(expected.coef_).max()
    assert_allclose(model.coef_, expected.coef_, rtol=rtol, atol=rtol * scale)
    assert_allclose(model.intercept_, expected.intercept_, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("q", QUANTILES)
@pytest.mark.parametrize("optimizer", ["newton", "auto"])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_optimum_is_quantile_regressors(q, optimizer, weighted):
    """QuantileRegressor(solver="highs") solves the linear program exactly: the Newton
    continuation's crossover lands on the same vertex, to rounding."""
    X, y, w = heteroscedastic()
    w = w if weighted else None
    expected = peer(X, y, q, w)
    model = fastgd.GDRegressor(loss="quantile", quantile=q, optimizer=optimizer,
                               tol=1e-10).fit(X, y, sample_weight=w)
    assert model.solver_ == "newton"
    assert_same_model(model, expected, rtol=1e-9)


@pytest.mark.parametrize("engine", ["numpy", "cython"])
def test_the_same_optimum_unstandardized_on_sparse_x_and_from_the_reference_engine(engine):
    sparse = pytest.importorskip("scipy.sparse")
    X, y, w = heteroscedastic(seed=2)
    X[np.abs(X) < 0.8] = 0.0  # a sparse matrix with ~30 % of its entries stored
    expected = peer(X, y, 0.75, w)
    for data in (X, sparse.csr_matrix(X)):
        for standardize in (True, False):
            model = fastgd.GDRegressor(loss="quantile", quantile=0.75, engine=engine,
                                       standardize=standardize, tol=1e-10).fit(
                data, y, sample_weight=w)
            assert_same_model(model, expected, rtol=1e-9)


def test_float32_x_crosses_over_to_the_vertex_of_its_values():
    """X (and so y) in float32: the vertex of those values, found as for float64 (the
    crossover's residuals are computed in float64, as the kernels' products)."""
    X, y, w = heteroscedastic(seed=8)
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    expected = peer(X32.astype(float), y32.astype(float), 0.8, w)
    model = fastgd.GDRegressor(loss="quantile", quantile=0.8, tol=1e-10).fit(
        X32, y32, sample_weight=w)
    assert_same_model(model, expected, rtol=1e-9)
    assert sum(model.history_["passes"]) < 200  # pivots that converge, not MAX_PIVOTS


def test_two_targets_are_two_quantile_regressions():
    """Several outputs: one linear program each, each output's crossover its own vertex."""
    X, y, _ = heteroscedastic(seed=3)
    Y = np.column_stack([y, -2 * y + X[:, 1]])
    model = fastgd.GDRegressor(loss="quantile", quantile=0.3, tol=1e-10).fit(X, Y)
    for o in range(2):
        expected = peer(X, Y[:, o], 0.3)
        scale = np.abs(expected.coef_).max()
        assert_allclose(model.coef_[o], expected.coef_, rtol=1e-9, atol=1e-9 * scale)
        assert_allclose(model.intercept_[o], expected.intercept_, rtol=1e-9,
                        atol=1e-9 * scale)


def test_the_dask_engine_crosses_over_to_the_same_vertex(client):
    da = pytest.importorskip("dask.array")
    X, y, w = heteroscedastic(seed=4)
    expected = peer(X, y, 0.9, w)
    model = fastgd.GDRegressor(loss="quantile", quantile=0.9, tol=1e-10).fit(
        da.from_array(X, chunks=(700, -1)), da.from_array(y, chunks=700),
        sample_weight=da.from_array(w, chunks=700), client=client)
    assert_same_model(model, expected, rtol=1e-9)


def test_ridge_penalized_fits_reach_their_optimum():
    """With alpha > 0 the optimum is no vertex (no crossover): the continuation's own
    convergence, checked by the objective's subgradient condition."""
    X, y, _ = heteroscedastic(seed=5)
    alpha = 0.05
    model = fastgd.GDRegressor(loss="quantile", quantile=0.8, alpha=alpha, tol=1e-12,
                               standardize=False, max_epochs=200).fit(X, y)
    loss = losses.get("quantile", quantile=0.8)

    def objective(coef, intercept):
        return loss.value((X @ coef + intercept)[:, None], y[:, None]).mean() + (
            0.5 * alpha * coef @ coef)

    best = objective(model.coef_, model.intercept_)
    rng = np.random.default_rng(0)
    for _ in range(200):  # no nearby point is better, beyond rounding
        step = rng.standard_normal(X.shape[1] + 1) * 1e-4
        assert objective(model.coef_ + step[:-1], model.intercept_ + step[-1]) >= best - 1e-12


def test_solvers_that_need_a_gradient_everywhere_refuse_the_kink_clearly():
    X, y, _ = heteroscedastic(n=200)
    with pytest.raises(ValueError, match="optimizer='lbfgs' needs a loss with a gradient "
                                         "everywhere; the quantile loss has a kink"):
        fastgd.GDRegressor(loss="quantile", optimizer="lbfgs").fit(X, y)
    with pytest.raises(ValueError, match="a kink: subgradient steps.*give a numeric "
                                         "learning_rate"):
        fastgd.GDRegressor(loss="quantile", optimizer="sgd").fit(X, y)
    with pytest.raises(ValueError, match="quantile must be in \\(0, 1\\), got 1"):
        fastgd.GDRegressor(loss="quantile", quantile=1.0).fit(X, y)


def test_subgradient_steps_with_a_decaying_rate_approach_the_optimum():
    """First-order epochs take the pinball loss's subgradient; with scikit-learn's
    inverse-scaling rate (SGDRegressor's schedule) they approach the optimum."""
    X, y, _ = heteroscedastic(n=4000, seed=6)
    expected = peer(X, y, 0.5)
    model = fastgd.GDRegressor(loss="quantile", optimizer="sgd", learning_rate=0.05,
                               schedule="invscaling", power_t=0.5, batch_size=32,
                               max_epochs=40, tol=None, random_state=0).fit(X, y)
    loss = losses.get("quantile", quantile=0.5)
    reached = loss.value(model.predict(X)[:, None], y[:, None]).mean()
    optimum = loss.value(expected.predict(X)[:, None], y[:, None]).mean()
    assert optimum <= reached <= optimum * 1.002
    partial = fastgd.GDRegressor(loss="quantile", learning_rate=0.05, schedule="invscaling",
                                 random_state=0)
    for _ in range(3):
        partial.partial_fit(X, y)
    assert np.isfinite(partial.coef_).all()


def test_saved_loaded_exported_and_on_the_command_line(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y, _ = heteroscedastic()
    model = fastgd.GDRegressor(loss="quantile", quantile=0.9).fit(X, y)
    model.save(tmp_path / "m.fastgd")
    loaded = fastgd.load(tmp_path / "m.fastgd")
    assert loaded.quantile == 0.9 and (loaded.predict(X) == model.predict(X)).all()
    covered = (y <= model.predict(X)).mean()
    assert 0.88 <= covered <= 0.92  # a 0.9-quantile: 90 % of the rows at or below it
    table = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])]).assign(t=y)
    table.to_csv(tmp_path / "t.csv", index=False)
    done = subprocess.run([sys.executable, "-m", "fastgd", "train", "t.csv", "--target", "t",
                           "--loss", "quantile", "--quantile", "0.9", "-q", "-o", "q.fastgd",
                           "--json", "scores.json"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert "pinball" in done.stdout and "D²" in done.stdout
    scores = json.loads((tmp_path / "scores.json").read_text())["metrics"]
    assert scores["pinball"] > 0 and 0 < scores["d2"] < 1
    assert fastgd.load(tmp_path / "q.fastgd").quantile == 0.9
    wrong = subprocess.run([sys.executable, "-m", "fastgd", "train", "t.csv", "--target",
                            "t", "--quantile", "0.9"], cwd=tmp_path, capture_output=True,
                           text=True)
    assert wrong.returncode != 0 and "--quantile is the quantile of --loss quantile" in (
        wrong.stderr)
