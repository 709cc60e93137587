"""The losses (squared, huber, log): both engines, torch's definitions, extreme logits."""

import numpy as np
import pytest
from conftest import make_problem
from numpy.testing import assert_allclose

import fastgd
from fastgd import reference

RNG = np.random.default_rng(7)


def targets(loss, y):
    if loss == "log":  # labels, and soft labels in between
        return np.where(RNG.uniform(size=len(y)) < 0.2, RNG.uniform(size=len(y)),
                        (y > np.median(y)).astype(float)).astype(y.dtype)
    return y


@pytest.mark.parametrize("loss,delta", [("squared", 1.0), ("huber", 0.3), ("huber", 50.0),
                                        ("log", 1.0)])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_engines_agree(loss, delta, order, dtype):
    X, y, sw = make_problem(3000, 9, order=order, dtype=dtype, weights=True)
    y = targets(loss, y)
    coef = RNG.standard_normal(9) * 0.3
    a = fastgd.loss_and_grad(X, y, coef, 0.2, loss=loss, delta=delta, sample_weight=sw)
    b = reference.loss_and_grad(X, y, coef, 0.2, loss=loss, delta=delta, sample_weight=sw)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    assert_allclose(a[0], b[0], rtol=rtol)
    assert_allclose(a[1], b[1], rtol=rtol, atol=rtol * np.abs(b[1]).max())
    assert_allclose(a[2], b[2], rtol=rtol, atol=rtol * abs(b[2]))


def test_huber_is_squared_inside_delta_and_linear_outside():
    X = np.array([[1.0], [1.0], [1.0]])
    y = np.array([0.5, 3.0, -4.0])  # residuals at z = 1: 0.5, -2, 5
    loss, g, gb = fastgd.loss_and_grad(X, y, np.zeros(1), 1.0, loss="huber", delta=1.0)
    assert_allclose(loss, (0.125 + 1.5 + 4.5) / 3)
    assert_allclose(gb, (0.5 - 1.0 + 1.0) / 3)


@pytest.mark.parametrize("z", [-800.0, -40.0, 0.0, 40.0, 800.0])
def test_log_loss_is_stable_at_extreme_logits(z):
    X = np.ones((2, 1))
    y = np.array([0.0, 1.0])
    for engine in (fastgd, reference):
        loss, g, gb = engine.loss_and_grad(X, y, np.array([z]), 0.0, loss="log")
        # log(1 + e^z) - y z: (softplus(z) + softplus(-z)) / 2 over the two rows
        assert_allclose(loss, (np.logaddexp(0, z) + np.logaddexp(0, -z)) / 2, rtol=1e-12)
        sigmoid = 0.5 * (1 + np.tanh(z / 2))
        assert_allclose(gb, (sigmoid - 0 + sigmoid - 1) / 2, atol=1e-15)


@pytest.mark.parametrize("kw,error,message", [
    (dict(loss="cauchy"), ValueError, "loss must be one of 'squared', 'huber', 'poisson', "
     "'gamma', 'tweedie', 'quantile', 'log'"),
    (dict(loss="quantile", quantile=1.5), ValueError, r"quantile must be in \(0, 1\)"),
    (dict(loss="quantile", quantile=0.0), ValueError, "quantile must be"),
    (dict(loss="tweedie", power=0.5), ValueError, r"power must be 0 or >= 1"),
    (dict(loss="poisson"), ValueError, r"y must hold values >= 0 for loss='poisson', got -"),
    (dict(loss="gamma"), ValueError, r"y must hold values > 0 for loss='gamma'"),
    (dict(loss="tweedie", power=3), ValueError, r"> 0 for loss='tweedie' with power=3"),
    (dict(loss="huber", delta=0.0), ValueError, "delta must be"),
    (dict(loss="huber", delta="1"), TypeError, "delta must be a number"),
    (dict(loss="log"), ValueError, r"y must hold targets in \[0, 1\] for loss='log'"),
])
def test_bad_loss_arguments(kw, error, message):
    X, y, _ = make_problem(20, 2)
    with pytest.raises(error, match=message):
        fastgd.loss_and_grad(X, y, np.zeros(2), 0.0, **kw)


def huber_objective(X, y, delta):
    def f(params):
        r = X @ params[:-1] + params[-1] - y
        a = np.abs(r)
        value = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta)).mean()
        g = np.clip(r, -delta, delta) / len(y)
        return value, np.append(X.T @ g, g.sum())
    return f


def test_huber_regression_reaches_the_minimizer_and_shrugs_off_outliers():
    from scipy.optimize import minimize

    X, y, _ = make_problem(400, 3, noise=0.3, seed=2)
    y = y.copy()
    y[:20] += 60.0  # outliers
    exact = minimize(huber_objective(X, y, 1.0), np.zeros(4), jac=True, method="L-BFGS-B",
                     options={"gtol": 1e-13, "ftol": 1e-15, "maxiter": 10000}).x
    model = fastgd.GDRegressor(loss="huber", delta=1.0, learning_rate="auto",
                               max_epochs=20000, tol=1e-14).fit(X, y)
    assert_allclose(model.coef_, exact[:-1], rtol=1e-6)
    assert_allclose(model.intercept_, exact[-1], rtol=1e-6)
    squared = fastgd.GDRegressor(learning_rate="auto", max_epochs=5000, tol=1e-14).fit(X, y)
    clean = slice(20, None)
    assert (np.abs(model.predict(X[clean]) - y[clean]).mean()
            < 0.5 * np.abs(squared.predict(X[clean]) - y[clean]).mean())


@pytest.mark.parametrize("batch_size", [None, 32])
def test_huber_training_engines_agree(batch_size):
    X, y, _ = make_problem(500, 6, noise=2.0)
    kw = dict(loss="huber", delta=0.5, optimizer="adam", learning_rate=0.05,
              batch_size=batch_size, max_epochs=4, tol=None, random_state=0)
    a = fastgd.GDRegressor(**kw).fit(X, y)
    b = fastgd.GDRegressor(engine="numpy", **kw).fit(X, y)
    assert_allclose(a.history_["loss"], b.history_["loss"], rtol=1e-10)
    assert_allclose(a.coef_, b.coef_, rtol=1e-10)


def test_the_regressor_takes_no_log_loss():
    X, y, _ = make_problem(20, 2)
    with pytest.raises(ValueError, match="loss must be one of 'squared', 'huber'"):
        fastgd.GDRegressor(loss="log").fit(X, y)
