"""optimizer="auto", the default: which solver it stands for, and that it is reported."""

import numpy as np
import pytest
from conftest import assert_same_fit, make_problem

import fastgd
from fastgd import GDClassifier, GDRegressor, losses
from fastgd.solvers import auto


def test_the_default_is_auto_and_reported():
    X, y, _ = make_problem(500, 6)
    model = GDRegressor().fit(X, y)
    assert model.optimizer == "auto"
    assert model.solver_ == "newton" and model.n_iter_ == 1  # least squares: exact, once
    labels = (y > np.median(y)).astype(int)
    assert GDClassifier().fit(X, labels).solver_ == "newton"


@pytest.mark.parametrize("settings", [dict(batch_size=32), dict(alpha=0.1, l1_ratio=0.5),
                                      dict(schedule="cosine"), dict(clip_norm=1.0)],
                         ids=["batches", "l1", "schedule", "clipping"])
def test_first_order_settings_choose_nesterov(settings):
    X, y, _ = make_problem(300, 4)
    model = GDRegressor(random_state=0, **settings).fit(X, y)
    assert model.solver_ == "nesterov"
    explicit = GDRegressor(optimizer="nesterov", random_state=0, **settings).fit(X, y)
    np.testing.assert_array_equal(model.coef_, explicit.coef_)


def test_the_rule():
    """Newton where its Hessian is small and cheap next to L-BFGS's passes, L-BFGS where
    the Hessian is large (in bytes, or against X) or costly to form."""
    squared, log, softmax = (losses.get(name) for name in ("squared", "log", "multinomial"))
    rule = dict(l1=0.0, first_order=False, itemsize=8)
    assert auto.choose(2000, 20, 1, squared, **rule) == "newton"
    assert auto.choose(1_000_000, 100, 1, squared, **rule) == "newton"  # 1 Hessian pass
    assert auto.choose(100_000, 1000, 1, squared, **rule) == "lbfgs"  # its Hessian: 50 passes
    assert auto.choose(1000, 6000, 1, squared, **rule) == "lbfgs"  # H: 288 MB, X: 48 MB
    # sparse X whose Hessian is too large: Newton-CG (measured faster on wide sparse data)
    assert auto.choose(200_000, 1 << 20, 1, log, **rule, sparse=True) == "newton"
    assert auto.choose(2000, 20, 1, log, **rule, sparse=True) == "newton"
    assert auto.choose(1_000_000, 100, 1, log, **rule, sparse=True) == "lbfgs"
    assert auto.choose(2000, 20, 1, log, **rule) == "newton"
    assert auto.choose(1_000_000, 100, 1, log, **rule) == "lbfgs"  # 8 Hessians: 48 passes
    assert auto.choose(200_000, 200, 10, softmax, **rule) == "lbfgs"  # 55 blocks a row
    assert auto.choose(178, 13, 3, softmax, **rule) == "newton"  # wine: a Hessian in 0.2 ms
    assert auto.choose(2000, 20, 1, log, **{**rule, "first_order": True}) == "nesterov"
    assert auto.choose(2000, 20, 1, log, **{**rule, "l1": 0.1}) == "nesterov"


def test_partial_fit_is_first_order():
    X, y, _ = make_problem(400, 5)
    model = GDRegressor()
    for _ in range(3):
        model.partial_fit(X, y)
    assert model.solver_ == "nesterov" and model.n_iter_ == 3
    model.fit(X, y)
    assert model.solver_ == "newton"
    model.partial_fit(X, y)  # goes on from the fit's parameters, first-order
    assert model.solver_ == "nesterov" and model.score(X, y) > 0.99


def test_solver_is_saved_and_a_resumed_auto_fit_ends_the_same(tmp_path):
    X, y, _ = make_problem(600, 5)
    labels = (y > 0).astype(int)
    settings = dict(alpha=1e-4, tol=None, tolerance_grad=0.0, max_epochs=5)
    uninterrupted = GDClassifier(**settings).fit(X, labels)
    path = tmp_path / "fit.ckpt"
    GDClassifier(**settings, checkpoint=path, callbacks=lambda e: e["epoch"] == 2).fit(
        X, labels)
    assert fastgd.load(path).solver_ == "newton"
    resumed = GDClassifier(**settings, checkpoint=path).fit(X, labels, resume=path)
    assert_same_fit(resumed, uninterrupted)
    uninterrupted.save(tmp_path / "model")
    assert fastgd.load(tmp_path / "model").solver_ == "newton"
