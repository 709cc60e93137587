"""GDRegressor: the seed walkthrough, engines equal, standardization, stopping, divergence."""

import warnings

import numpy as np
import pytest
from conftest import REGRESSION_LOSSES, assert_same_fit, make_problem, targets_for
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression

from fastgd import DivergenceError, GDRegressor

SEED_X = np.array([[1.0], [2.0], [3.0]])
SEED_Y = np.array([2.0, 4.0, 6.0])


def seed_model(epochs, engine="cython"):
    return GDRegressor(optimizer="sgd", learning_rate=0.1, max_epochs=epochs, tol=None,
                       standardize=False, engine=engine).fit(SEED_X, SEED_Y)


@pytest.mark.parametrize("engine", ["cython", "numpy"])
def test_seed_walkthrough(engine):
    """DESIGN.md's worked example; the article's epoch-2 figures 0.34/1.681/0.627 are slips."""
    one = seed_model(1, engine)
    assert_allclose(one.history_["loss"], [56 / 3], rtol=1e-12)
    assert_allclose([one.coef_[0], one.intercept_], [28 / 15, 0.8], rtol=1e-12)
    two = seed_model(2, engine)
    assert_allclose(two.history_["loss"], [18.6667, 0.2963], atol=5e-5)
    assert_allclose([two.coef_[0], two.intercept_], [1.6711, 0.6933], atol=5e-5)
    assert two.n_iter_ == 2
    assert not np.isclose(two.history_["loss"][1], 0.34, atol=0.01)


def test_engines_agree_step_for_step():
    X, y, sw = make_problem(3000, 17, weights=True)
    kw = dict(learning_rate=0.05, max_epochs=40, tol=None, random_state=0)
    for batch_size in (None, 256):
        a = GDRegressor(engine="cython", batch_size=batch_size, **kw).fit(X, y, sample_weight=sw)
        b = GDRegressor(engine="numpy", batch_size=batch_size, **kw).fit(X, y, sample_weight=sw)
        assert_allclose(a.history_["loss"], b.history_["loss"], rtol=1e-10)
        assert_allclose(a.coef_, b.coef_, rtol=1e-10)
        assert_allclose(a.intercept_, b.intercept_, rtol=1e-10)


def test_engines_agree_float32():
    X, y, _ = make_problem(2000, 9, dtype=np.float32)
    kw = dict(learning_rate=0.1, max_epochs=30, tol=None)
    a = GDRegressor(engine="cython", **kw).fit(X, y)
    b = GDRegressor(engine="numpy", **kw).fit(X, y)
    assert_allclose(a.coef_, b.coef_, rtol=1e-5)
    assert a.predict(X).dtype == np.float32


def test_converges_to_least_squares():
    X, y, sw = make_problem(5000, 8, weights=True)
    model = GDRegressor(max_epochs=5000, tol=1e-14).fit(X, y, sample_weight=sw)
    exact = LinearRegression().fit(X, y, sample_weight=sw)
    assert_allclose(model.coef_, exact.coef_, rtol=1e-6)
    assert_allclose(model.intercept_, exact.intercept_, rtol=1e-6)
    assert model.score(X, y) == pytest.approx(exact.score(X, y), rel=1e-9)
    assert model.n_iter_ < 5000


def test_mini_batches_converge():
    X, y, _ = make_problem(4000, 6, noise=0.0)
    model = GDRegressor(learning_rate=0.05, batch_size=32, max_epochs=50, tol=None,
                        random_state=0).fit(X, y)
    assert model.score(X, y) > 1 - 1e-8
    assert len(model.history_["loss"]) == 50


def test_last_partial_batch_is_used():
    """Batches of 4 over 10 rows: 4, 4, 2; a third step changes the result."""
    X, y, _ = make_problem(10, 2)
    kw = dict(learning_rate=0.1, max_epochs=1, tol=None, standardize=False, shuffle=False)
    got = GDRegressor(optimizer="sgd", batch_size=4, **kw).fit(X, y)
    from fastgd import reference
    w, b = np.zeros(2), 0.0
    for lo, hi in ((0, 4), (4, 8), (8, 10)):
        _, g, gb = reference.loss_and_grad(X[lo:hi], y[lo:hi], w, b)
        w, b = w - 0.1 * g, b - 0.1 * gb
    assert_allclose(got.coef_, w, rtol=1e-12)
    assert_allclose(got.intercept_, b, rtol=1e-12)


def test_implicit_standardization_equals_explicit():
    X, y, sw = make_problem(3000, 7, weights=True)
    mean = np.average(X, axis=0, weights=sw)
    std = np.sqrt(np.average((X - mean) ** 2, axis=0, weights=sw))
    kw = dict(learning_rate=0.1, max_epochs=25, tol=None)
    implicit = GDRegressor(standardize=True, **kw).fit(X, y, sample_weight=sw)
    explicit = GDRegressor(standardize=False, **kw).fit((X - mean) / std, y, sample_weight=sw)
    assert_allclose(implicit.history_["loss"], explicit.history_["loss"], rtol=1e-10)
    assert_allclose(implicit.coef_, explicit.coef_ / std, rtol=1e-9)
    assert_allclose(implicit.intercept_, explicit.intercept_ - mean @ (explicit.coef_ / std),
                    rtol=1e-9)
    assert_allclose(implicit.mean_, mean, rtol=1e-12)
    assert_allclose(implicit.scale_, std, rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_constant_feature_standardizes_without_nan(dtype):
    X, y, _ = make_problem(500, 4, dtype=dtype)
    X[:, 2] = 3.3
    model = GDRegressor(learning_rate=0.1, max_epochs=200).fit(X, y)
    assert np.isfinite(model.coef_).all() and np.isfinite(model.intercept_)
    assert model.scale_[2] == 1.0
    assert abs(model.coef_[2]) < 1e-10  # no weight: the intercept covers a constant


def test_tol_stops_early_and_none_runs_all():
    """tol is relative to the loss of the best constant: for the squared loss, y's
    variance, so scaling or shifting y does not change when training stops."""
    X, y, _ = make_problem(1000, 3)
    kw = dict(optimizer="sgd", learning_rate=0.1, tol=1e-3, max_epochs=1000)
    early = GDRegressor(**kw).fit(X, y)
    assert 2 <= early.n_iter_ < 1000
    losses, threshold = early.history_["loss"], 1e-3 * np.var(y)
    assert 0 <= losses[-2] - losses[-1] <= threshold
    assert all(a - b > threshold for a, b in zip(losses[:-2], losses[1:-1], strict=True))
    for scale in (1e-4, 1e4):  # the same trajectory, scaled: the same stop
        assert GDRegressor(**kw).fit(X, y * scale).n_iter_ == early.n_iter_
    shifted = GDRegressor(**kw).fit(X, y + 1e4)  # a longer way for the intercept, but no
    assert shifted.score(X, y + 1e4) == pytest.approx(early.score(X, y), abs=1e-3)  # early stop
    full = GDRegressor(optimizer="sgd", learning_rate=0.1, tol=None, max_epochs=37).fit(X, y)
    assert full.n_iter_ == 37 == len(full.history_["loss"])


def test_convergence_warning_when_out_of_epochs():
    X, y, _ = make_problem(300, 3)
    with pytest.warns(ConvergenceWarning, match="max_epochs=3"):
        GDRegressor(optimizer="nesterov", learning_rate=0.001, max_epochs=3, tol=1e-12).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GDRegressor(optimizer="nesterov", learning_rate=0.001, max_epochs=3, tol=None).fit(X, y)


@pytest.mark.parametrize("batch_size", [None, 16])
def test_divergence_stops_keeps_finite_parameters(batch_size):
    X, y, _ = make_problem(400, 5)
    model = GDRegressor(optimizer="nesterov", learning_rate=50.0, standardize=False,
                        batch_size=batch_size, max_epochs=1000)
    with pytest.raises(DivergenceError, match=r"epoch \d+.*smaller learning_rate") as info:
        model.fit(X, y)
    assert isinstance(info.value, ValueError)
    assert 1 < info.value.epoch < 1000
    assert np.isfinite(model.coef_).all() and np.isfinite(model.intercept_)
    assert all(np.isfinite(model.history_["loss"]))
    assert model.predict(X).shape == (400,)


def test_fit_is_deterministic_across_threads():
    X, y, _ = make_problem(60_000, 12)
    fits = [GDRegressor(learning_rate=0.1, max_epochs=5, tol=None, n_threads=t).fit(X, y)
            for t in (1, 2, 4)]
    for f in fits[1:]:
        assert_same_fit(f, fits[0])


def test_refit_and_predict_shapes():
    X, y, _ = make_problem(100, 3)
    model = GDRegressor(max_epochs=5, tol=None).fit(X, y)
    assert model.predict(X[:7]).shape == (7,)
    assert model.n_features_in_ == 3
    model.fit(X[:, :2], y)
    assert model.coef_.shape == (2,)
    with pytest.raises(ValueError, match="features"):
        model.predict(X)


def test_overflowing_last_update_is_divergence_not_a_nan_model():
    X, y, _ = make_problem(50, 3)
    model = GDRegressor(optimizer="sgd", learning_rate=1e308, max_epochs=1, tol=None)
    with pytest.raises(DivergenceError, match="non-finite"):
        model.fit(X, y)
    assert np.isfinite(model.coef_).all() and np.isfinite(model.intercept_)


def test_tol_zero_stops_when_the_loss_stops_changing():
    model = GDRegressor(optimizer="sgd", learning_rate=0.1, tol=0.0, max_epochs=5000,
                        standardize=False)
    model.fit(SEED_X, SEED_Y)
    assert model.n_iter_ < 5000
    assert model.history_["loss"][-1] == model.history_["loss"][-2]


@pytest.mark.parametrize("name", REGRESSION_LOSSES)
def test_every_regression_loss_trains_end_to_end(tmp_path, name):
    """Each regression loss of the registry through the estimator: a fit that converges
    (tol, not max_epochs), both engines alike, warm start, partial_fit, predictions through
    the inverse link, and a saved model that predicts the same."""
    import fastgd
    from fastgd import losses

    loss = losses.get(name)
    X, _, sw = make_problem(600, 4, weights=True)
    Z = (X - X.mean(axis=0)) @ np.array([[0.3], [-0.2], [0.1], [0.05]]) + 0.5
    y = targets_for(loss, Z)[:, 0]
    # a kink: Newton's continuation (subgradient epochs converge only with a decaying rate)
    settings = dict(loss=name, optimizer="nesterov" if loss.smooth else "newton",
                    max_epochs=3000, learning_rate="auto" if loss.curvature is not None
                    or not loss.smooth else 0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = GDRegressor(**settings).fit(X, y, sample_weight=sw)
    numpy = GDRegressor(**settings, engine="numpy").fit(X, y, sample_weight=sw)
    assert model.n_iter_ == numpy.n_iter_ < 3000
    assert_allclose(model.coef_, numpy.coef_, rtol=1e-8)
    predictions = model.predict(X)
    assert_allclose(predictions, loss.inverse_link(X @ model.coef_[:, None]
                                                   + model.intercept_)[:, 0], rtol=1e-12)
    model.set_params(warm_start=True, max_epochs=5, tol=None).fit(X, y, sample_weight=sw)
    if not loss.smooth:  # partial_fit's first-order epochs: subgradient steps, a rate given
        model.set_params(optimizer="nesterov", learning_rate=0.01)
    model.partial_fit(X, y, sample_weight=sw)
    assert np.isfinite(model.coef_).all() and model.n_iter_ == 6
    model.save(tmp_path / "m")
    assert_allclose(fastgd.load(tmp_path / "m").predict(X), model.predict(X), rtol=0)


def test_the_convergence_warning_is_both_fastgds_and_scikit_learns():
    """Filters on fastgd.ConvergenceWarning or on scikit-learn's both catch it."""
    import fastgd

    X, y, _ = make_problem(100, 3)
    for cls in (fastgd.ConvergenceWarning, ConvergenceWarning):
        with pytest.warns(cls, match="max_epochs=2"):
            GDRegressor(optimizer="nesterov", max_epochs=2).fit(X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.simplefilter("ignore", cls)
            GDRegressor(optimizer="nesterov", max_epochs=2).fit(X, y)
