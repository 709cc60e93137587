"""Row subsets in the engines, and early stopping on held-out rows."""

import tracemalloc

import numpy as np
import pytest
from conftest import make_problem, trajectory
from numpy.testing import assert_allclose, assert_array_equal

import fastgd
from fastgd import GDRegressor, losses, optimizers, reference
from fastgd._compiled import kernels
from fastgd._problem import EpochPlan, Problem, shuffle_keys

@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_grad_pass_over_rows_is_the_pass_over_those_rows(order, dtype):
    X, y, sw = make_problem(3000, 7, order=order, dtype=dtype, weights=True)
    rows = np.sort(np.random.default_rng(1).choice(3000, 700, replace=False))
    coef, b, Y = np.linspace(-1, 1, 7)[None], np.array([0.3]), y[:, None]
    huber = losses.Huber(delta=0.5)
    got = kernels.grad_pass(Problem(X, Y, sw, huber, rows=rows), coef, b, n_threads=2)
    want = reference.grad_pass(Problem(X[rows], Y[rows], sw[rows], huber), coef, b)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    assert_allclose(got[0], want[0], rtol=rtol)
    assert_allclose(got[1], want[1], rtol=rtol, atol=rtol * np.abs(want[1]).max())


@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize("order", ["C", "F"])
def test_epochs_over_rows_agree_across_engines_and_threads(shuffled, order):
    X, y, _ = make_problem(2000, 64, order=order)
    rows = np.flatnonzero(np.random.default_rng(2).uniform(size=2000) < 0.8)
    adam = optimizers.get("adam")
    plan = EpochPlan(adam, 0.01, 32, shuffle_keys=shuffle_keys(7, 0) if shuffled else None)
    problem = Problem(X, y[:, None], None, losses.Squared(), rows=rows)
    results = []
    for engine, threads in ((kernels, 1), (kernels, 2), (kernels, 3), (reference, 1)):
        theta = np.zeros(65)
        out = engine.run_epoch(problem, theta, adam.new_state(65), plan, n_threads=threads)
        results.append((out, theta))
    for out, theta in results[1:3]:  # the compiled engine: the same bits for any threads
        assert out == results[0][0]
        assert_array_equal(theta, results[0][1])
    assert_allclose(results[3][1], results[0][1], rtol=1e-10)
    assert results[0][0][2] == -(-len(rows) // 32)  # updates: batches of the rows only


def test_rows_outside_x_are_refused():
    X, y, _ = make_problem(50, 2)
    with pytest.raises(ValueError, match="rows must index X's 50 rows"):
        kernels.grad_pass(Problem(X, y[:, None], None, losses.Squared(),
                                  rows=np.array([0, 50])), np.zeros((1, 2)), np.zeros(1),
                          n_threads=1)


def held_out_rows(model, n):
    """The validation rows fit drew with random_state=0 (after the shuffle seed's draw)."""
    rng = np.random.RandomState(0)
    rng.randint(2**62)
    return model._holdout(Problem(None, np.zeros((n, 1)), None, None), rng).val_rows


KW = dict(optimizer="adam", learning_rate=0.05, batch_size=32, max_epochs=200,
          early_stopping=True, random_state=0)


def test_early_stopping_keeps_the_best_validation_parameters():
    X, y, _ = make_problem(2000, 30, noise=3.0)
    X, y = X[:300], y[:300]  # few rows, many features, noisy: it overfits and stops
    model = GDRegressor(n_iter_no_change=3, **KW).fit(X, y)
    val = model.history_["val_loss"]
    assert model.n_iter_ == len(val) < 200
    best = int(np.argmin(val))
    assert len(val) - 1 - best == 3  # stopped 3 epochs after the best
    held = held_out_rows(model, 300)
    assert_allclose(np.mean((model.predict(X[held]) - y[held]) ** 2), val[best], rtol=1e-9)


def test_validation_rows_are_never_trained_on():
    """Changing the targets of the held-out rows changes the validation losses only."""
    X, y, _ = make_problem(1000, 5, noise=0.5)
    a = GDRegressor(n_iter_no_change=1000, tol=None, **{**KW, "max_epochs": 5}).fit(X, y)
    held = held_out_rows(a, 1000)
    y2 = y.copy()
    y2[held] += 100.0
    b = GDRegressor(n_iter_no_change=1000, tol=None, **{**KW, "max_epochs": 5}).fit(X, y2)
    assert a.history_["loss"] == b.history_["loss"]
    assert a.history_["val_loss"] != b.history_["val_loss"]


def test_early_stopping_engines_agree():
    X, y, _ = make_problem(600, 8, noise=1.0)
    a = GDRegressor(**KW).fit(X, y)
    b = GDRegressor(engine="numpy", **KW).fit(X, y)
    assert a.n_iter_ == b.n_iter_
    assert_allclose(a.history_["val_loss"], b.history_["val_loss"], rtol=1e-9)
    assert_allclose(a.coef_, b.coef_, rtol=1e-9)


def test_early_stopping_does_not_copy_x():
    X, y, _ = make_problem(100_000, 20)  # 16 MB
    tracemalloc.start()
    try:
        GDRegressor(max_epochs=3, tol=None, early_stopping=True, batch_size=256,
                    random_state=0).fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.2 * X.nbytes  # row indices (1.6 MB) and small buffers, not X's rows


def test_early_stopping_history_survives_save_and_load(tmp_path):
    X, y, _ = make_problem(300, 4, noise=1.0)
    model = GDRegressor(**KW).fit(X, y)
    model.save(tmp_path / "m")
    loaded = fastgd.load(tmp_path / "m")
    assert trajectory(loaded) == trajectory(model)


@pytest.mark.parametrize("kw,error,message", [
    (dict(validation_fraction=0.0), ValueError, "validation_fraction must be"),
    (dict(validation_fraction=1.0), ValueError, "validation_fraction must be in"),
    (dict(n_iter_no_change=0), ValueError, "n_iter_no_change must be"),
    (dict(early_stopping="yes"), TypeError, "early_stopping must be True or False"),
])
def test_bad_early_stopping_parameters(kw, error, message):
    X, y, _ = make_problem(50, 2)
    with pytest.raises(error, match=message):
        GDRegressor(**{"early_stopping": True, **kw}).fit(X, y)


def test_too_few_rows_to_hold_out():
    X, y, _ = make_problem(1, 2)
    with pytest.raises(ValueError, match="early_stopping=True needs rows to train on"):
        GDRegressor(early_stopping=True).fit(X, y)
