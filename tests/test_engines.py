"""The compiled engine, in both SIMD builds, equals the NumPy reference step for step over
whole training runs: every loss and optimizer of the registries, float64 and float32, C and
F order, full batch and shuffled mini-batches, sample weights, the elastic net, clipping,
several outputs; and through the estimators, early stopping and partial_fit with weights."""

import numpy as np
import pytest
from conftest import BUILDS, LOSSES, OPTIMIZERS, loss_id, make_problem, targets_for
from numpy.testing import assert_allclose

from fastgd import GDClassifier, GDRegressor, _training, optimizers, reference
from fastgd._engines import InMemory
from fastgd._problem import Problem
from fastgd.solvers.first_order import FirstOrder

RTOL = {np.float64: 1e-9, np.float32: 1e-4}


def outputs(loss) -> int:
    """Several outputs wherever the loss takes them: 3 classes for a softmax, 2 targets for
    a regression loss, one logit for a binary classification loss."""
    return 3 if loss.class_indices else 1 if loss.task == "classification" else 2


def run(engine, problem, optimizer, batch_size):
    learning_rate = "auto" if problem.loss.curvature is not None else 0.01
    if optimizer not in ("sgd", "momentum", "nesterov"):
        learning_rate = 0.01
    solver = FirstOrder(optimizers.get(optimizer), learning_rate, batch_size=batch_size,
                        shuffle_seed=5, l1=0.001, l2=0.01, clip_norm=1.0)
    k, d = problem.k, problem.n_features
    return _training.train(engine, problem, solver, coef=np.full((k, d), 0.01),
                           intercept=np.zeros(k), standardize=True, max_epochs=5, tol=None)


@pytest.mark.parametrize("build", list(BUILDS))
@pytest.mark.parametrize("loss", LOSSES, ids=loss_id)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("order,batch_size", [("C", None), ("C", 32), ("F", 32)])
def test_training_runs_equal_the_reference(build, loss, optimizer, dtype, order, batch_size):
    X, _, sw = make_problem(300, 6, dtype=dtype, order=order, weights=True)
    k = outputs(loss)
    Z = X.astype(np.float64) @ np.random.default_rng(1).standard_normal((6, k)) / 4
    problem = Problem(X, targets_for(loss, Z.astype(dtype)), sw, loss, k)
    got = run(InMemory(BUILDS[build], 2), problem, optimizer, batch_size)
    want = run(InMemory(reference, 1), problem, optimizer, batch_size)
    assert got.error is None and want.error is None
    rtol = RTOL[dtype]
    assert got.learning_rate == pytest.approx(want.learning_rate, rel=rtol)
    assert_allclose(got.history["loss"], want.history["loss"], rtol=rtol)
    for a, b in ((got.coef, want.coef), (got.intercept, want.intercept)):
        assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_early_stopping_with_sample_weights_equal_in_both_engines(dtype):
    X, y, sw = make_problem(800, 5, dtype=dtype, weights=True)
    fits = [GDRegressor(engine=engine, early_stopping=True, batch_size=32, random_state=2,
                        optimizer="adam", learning_rate=0.02, max_epochs=200, tol=1e-3,
                        n_iter_no_change=3).fit(X, y, sample_weight=sw)
            for engine in ("cython", "numpy")]
    assert fits[0].n_iter_ == fits[1].n_iter_ < 200
    assert_allclose(fits[0].history_["val_loss"], fits[1].history_["val_loss"],
                    rtol=RTOL[dtype])
    assert_allclose(fits[0].coef_, fits[1].coef_, rtol=RTOL[dtype])


@pytest.mark.parametrize("estimator", ["regressor", "binary", "multiclass"])
def test_partial_fit_with_sample_weights_equal_in_both_engines(estimator):
    X, y, sw = make_problem(600, 4, weights=True)
    if estimator == "regressor":
        model, target, first = GDRegressor, y, {}
    else:
        labels = np.digitize(y, [0.5] if estimator == "binary" else [-1, 2])
        model, target, first = GDClassifier, labels, {"classes": np.unique(labels)}
    fits = []
    for engine in ("cython", "numpy"):
        fit = model(engine=engine, batch_size=50, random_state=1, learning_rate=0.05)
        fit.partial_fit(X, target, sample_weight=sw, **first)
        for _ in range(3):
            fit.partial_fit(X, target, sample_weight=sw)
        fits.append(fit)
    assert fits[0].n_iter_ == fits[1].n_iter_ == 4
    assert_allclose(fits[0].history_["loss"], fits[1].history_["loss"], rtol=1e-9)
    assert_allclose(fits[0].coef_, fits[1].coef_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("classes", [2, 4])
def test_float32_classifiers_equal_in_both_engines(classes):
    X, y, sw = make_problem(700, 5, dtype=np.float32, weights=True)
    labels = np.digitize(y, np.quantile(y, np.linspace(0, 1, classes + 1)[1:-1]))
    fits = [GDClassifier(engine=engine, max_epochs=30, tol=None, batch_size=64,
                         random_state=0).fit(X, labels, sample_weight=sw)
            for engine in ("cython", "numpy")]
    assert_allclose(fits[0].history_["loss"], fits[1].history_["loss"], rtol=1e-4)
    assert_allclose(fits[0].coef_, fits[1].coef_, rtol=1e-4, atol=1e-5)
