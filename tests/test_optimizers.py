"""Optimizers and the compiled mini-batch epoch: equal to the NumPy engine step for step."""

import numpy as np
import pytest
from conftest import make_problem, trajectory
from numpy.testing import assert_allclose, assert_array_equal

from fastgd import GDRegressor, optimizers
from fastgd.optimizers import OPTIMIZERS

@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("batch_size", [1, 7, 32, 300, 1000])
def test_compiled_equals_numpy_engine(optimizer, batch_size):
    X, y, sw = make_problem(300, 6, weights=True, seed=3)
    kw = dict(optimizer=optimizer, learning_rate="auto", batch_size=batch_size,
              max_epochs=4, tol=None, random_state=0)
    a = GDRegressor(engine="cython", **kw).fit(X, y, sample_weight=sw)
    b = GDRegressor(engine="numpy", **kw).fit(X, y, sample_weight=sw)
    assert_allclose(a.history_["loss"], b.history_["loss"], rtol=1e-10)
    assert_allclose(a.coef_, b.coef_, rtol=1e-9, atol=1e-12)
    assert_allclose(a.intercept_, b.intercept_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_engines_agree_layouts_dtypes(optimizer, standardize, dtype):
    X, y, _ = make_problem(500, 9, dtype=dtype, order="F", seed=4)
    kw = dict(optimizer=optimizer, learning_rate="auto", batch_size=64,
              max_epochs=3, tol=None, standardize=standardize, random_state=1)
    a = GDRegressor(engine="cython", **kw).fit(X, y)
    b = GDRegressor(engine="numpy", **kw).fit(X, y)
    rtol = 1e-9 if dtype == np.float64 else 1e-5
    assert_allclose(a.history_["loss"], b.history_["loss"], rtol=rtol)
    assert_allclose(a.coef_, b.coef_, rtol=rtol, atol=rtol * np.abs(b.coef_).max())


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_converges(optimizer):
    X, y, _ = make_problem(2000, 5, noise=0.0, seed=5)
    rate = {"sgd": 0.1, "momentum": 0.02, "nesterov": 0.02, "adagrad": 0.5, "rmsprop": 0.002}.get(
        optimizer, 0.01)
    # A decaying rate: at a constant one, RMSProp's steps stay about `rate` long and the
    # fit only hovers around the optimum (1 - R^2 from 1e-6 to 1e-11 over shuffle seeds).
    model = GDRegressor(optimizer=optimizer, learning_rate=rate, batch_size=50,
                        schedule="cosine", max_epochs=200, tol=None, weight_decay=0.0,
                        random_state=0).fit(X, y)
    assert model.score(X, y) > 1 - 1e-9



def test_adamw_auto_rate_keeps_its_decay_stable():
    """Targets of 1e4 give Adam a data-sized auto rate (hundreds): AdamW's decoupled decay
    multiplies the weights by 1 - lr weight_decay a step, so its auto rate stops where that
    takes a tenth off (at 299.5 it was -2 a step, and the fit overflowed; make fuzz)."""
    X, y, _ = make_problem(256, 4, seed=6)
    y = 1e4 * y
    adam = GDRegressor(optimizer="adam", batch_size=1, max_epochs=3, tol=None).fit(X, y)
    assert adam.learning_rate_ > 10
    model = GDRegressor(optimizer="adamw", batch_size=1, max_epochs=3, tol=None,
                        weight_decay=0.01).fit(X, y)
    assert model.learning_rate_ == pytest.approx(0.1 / 0.01)
    assert np.all(np.isfinite(model.history_["loss"]))
    assert model.history_["loss"][-1] < model.history_["loss"][0]

def test_update_rules_by_hand():
    """One step of each rule of the registry (its NumPy form, fastgd.reference's) against
    its formula written out."""
    g = np.array([0.5, -2.0, 1.0])
    h = dict(momentum=0.9, beta1=0.9, beta2=0.999, rho=0.99, epsilon=1e-8, weight_decay=0.01)
    lr = 0.1
    expected = {
        "sgd": -lr * g,
        "momentum": -lr * g,
        "nesterov": -lr * (g + 0.9 * g),
        "adagrad": -lr * g / (np.abs(g) + 1e-8),
        "rmsprop": -lr * g / (np.sqrt(0.01) * np.abs(g) + 1e-8),
        "adam": -lr * g / (np.abs(g) + 1e-8),
    }
    for name, delta in expected.items():
        rule, theta = optimizers.get(name, **h), np.ones(3)
        rule.step(theta, g, rule.new_state(3), 1, lr, 2)
        assert_allclose(theta - 1, delta, rtol=1e-6, err_msg=name)
    rule, theta = optimizers.get("adamw", **h), np.ones(3)
    rule.step(theta, g, rule.new_state(3), 1, lr, 2)
    decay = np.array([1 - lr * 0.01, 1 - lr * 0.01, 1.0])  # the intercept is not decayed
    assert_allclose(theta, decay - lr * g / (np.abs(g) + 1e-8), rtol=1e-6)


def test_mini_batch_fit_is_bit_identical_across_threads():
    X, y, _ = make_problem(70_000, 16)
    fits = [GDRegressor(optimizer="adam", batch_size=5000, max_epochs=2, tol=None,
                        random_state=5, n_threads=t).fit(X, y) for t in (1, 2, 3)]
    for f in fits[1:]:
        assert_array_equal(f.coef_, fits[0].coef_)
        assert trajectory(f) == trajectory(fits[0])


@pytest.mark.parametrize("param,value,message", [
    ("momentum", 1.0, "momentum must be in"), ("beta1", -0.1, "beta1 must be a finite"),
    ("beta2", 1.5, "beta2 must be in"), ("rho", np.nan, "rho must be a finite"),
    ("epsilon", 0.0, "epsilon must be a finite number > 0"),
    ("weight_decay", -1.0, "weight_decay must be a finite"),
    ("optimizer", "gradient ascent", "optimizer must be one of"),
])
def test_bad_optimizer_hyperparameters(param, value, message):
    X, y, _ = make_problem(20, 2)
    with pytest.raises(ValueError, match=message):
        GDRegressor(**{param: value}).fit(X, y)


@pytest.mark.parametrize("shuffle", [False, True])
def test_engines_agree_on_views_read_in_place(shuffle):
    """Column slices of a wide C array (rows 40 values apart) and row slices of F arrays."""
    wide, y, sw = make_problem(400, 40, weights=True, seed=8)
    for X in (wide[:, :7], np.asfortranarray(wide)[:300, :7]):
        kw = dict(optimizer="adam", learning_rate=0.01, batch_size=16, max_epochs=2, tol=None,
                  shuffle=shuffle, random_state=2)
        rows = X.shape[0]
        a = GDRegressor(engine="cython", **kw).fit(X, y[:rows], sample_weight=sw[:rows])
        b = GDRegressor(engine="numpy", **kw).fit(X, y[:rows], sample_weight=sw[:rows])
        assert_allclose(a.coef_, b.coef_, rtol=1e-9, atol=1e-12)
        assert_allclose(a.history_["loss"], b.history_["loss"], rtol=1e-10)
