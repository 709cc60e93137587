"""Learning-rate schedules, elastic-net regularization and gradient clipping."""

import math

import numpy as np
import pytest
from conftest import make_problem
from numpy.testing import assert_allclose
from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, Ridge

from fastgd import GDRegressor
from fastgd.optimizers import OPTIMIZERS

X, Y, SW = make_problem(400, 6, weights=True, seed=7)


def rates(**kw):
    model = GDRegressor(optimizer=kw.pop("optimizer", "nesterov"), learning_rate=0.1,
                        max_epochs=12, tol=None, **kw).fit(X, Y)
    return np.array(model.history_["learning_rate"])


def test_schedules_follow_their_definitions():
    e = np.arange(12)
    assert_allclose(rates(), 0.1)
    assert_allclose(rates(schedule="step", step_size=5, gamma=0.5), 0.1 * 0.5 ** (e // 5))
    assert_allclose(rates(schedule="exponential", gamma=0.9), 0.1 * 0.9 ** e)
    assert_allclose(rates(schedule="invscaling", power_t=0.5), 0.1 / np.sqrt(e + 1))
    cosine = 0.01 + (0.1 - 0.01) * (1 + np.cos(math.pi * e / 12)) / 2
    assert_allclose(rates(schedule="cosine", eta_min=0.01), cosine)
    warm = rates(schedule="exponential", gamma=0.9, warmup_epochs=3)
    assert_allclose(warm[:3], 0.1 * 0.9 ** e[:3] * (e[:3] + 1) / 4)
    assert_allclose(warm[3:], 0.1 * 0.9 ** e[3:])


def test_schedules_match_torch_lr_scheduler():
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.zeros(1))
    schedulers = torch.optim.lr_scheduler
    cases = [
        ("step", dict(step_size=4, gamma=0.3), lambda o: schedulers.StepLR(o, 4, gamma=0.3)),
        ("exponential", dict(gamma=0.8), lambda o: schedulers.ExponentialLR(o, gamma=0.8)),
        ("cosine", dict(eta_min=0.001),
         lambda o: schedulers.CosineAnnealingLR(o, T_max=12, eta_min=0.001)),
    ]
    for name, kw, make in cases:
        opt = torch.optim.SGD([param], lr=0.1)
        sched, seen = make(opt), []
        for _ in range(12):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert_allclose(rates(schedule=name, **kw), seen, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("batch_size", [1, 7, 32, None, 1000])
@pytest.mark.parametrize("penalty", [(0.0, 0.0), (0.1, 0.0), (0.05, 1.0), (0.1, 0.5)])
def test_engines_equal_with_schedules_and_penalties(schedule, optimizer, batch_size, penalty):
    alpha, l1_ratio = penalty
    kw = dict(optimizer=optimizer, learning_rate=0.01, schedule=schedule, step_size=2,
              alpha=alpha, l1_ratio=l1_ratio, batch_size=batch_size, max_epochs=5, tol=None,
              clip_norm=5.0, random_state=3)
    a = GDRegressor(engine="cython", **kw).fit(X, Y, sample_weight=SW)
    b = GDRegressor(engine="numpy", **kw).fit(X, Y, sample_weight=SW)
    assert_allclose(a.history_["loss"], b.history_["loss"], rtol=1e-10)
    assert_allclose(a.coef_, b.coef_, rtol=1e-9, atol=1e-12)
    assert_allclose(a.intercept_, b.intercept_, rtol=1e-9, atol=1e-12)


def fit_full_batch(**kw):
    X, y, _ = make_problem(300, 5, seed=11)
    model = GDRegressor(learning_rate=0.05, max_epochs=20000, tol=1e-15, standardize=False,
                        **kw).fit(X, y)
    return X, y, model


def test_ridge_solution():
    X, y, model = fit_full_batch(alpha=0.2)
    exact = Ridge(alpha=len(y) * 0.2 / 2).fit(X, y)
    assert_allclose(model.coef_, exact.coef_, rtol=1e-6)
    assert_allclose(model.intercept_, exact.intercept_, rtol=1e-6)


def test_lasso_solution_has_exact_zeros():
    X, y, model = fit_full_batch(alpha=0.6, l1_ratio=1.0)
    exact = Lasso(alpha=0.3, tol=1e-12, max_iter=100000).fit(X, y)
    assert_allclose(model.coef_, exact.coef_, rtol=1e-5, atol=1e-8)
    assert (model.coef_ == 0).sum() == (exact.coef_ == 0).sum() > 0


def test_elastic_net_solution():
    X, y, model = fit_full_batch(alpha=0.4, l1_ratio=0.5)
    exact = ElasticNet(alpha=0.2, l1_ratio=0.5, tol=1e-12, max_iter=100000).fit(X, y)
    assert_allclose(model.coef_, exact.coef_, rtol=1e-5, atol=1e-8)
    assert_allclose(model.intercept_, exact.intercept_, rtol=1e-5)


def test_clipping_bounds_the_first_step():
    X, y, _ = make_problem(100, 3, seed=2)
    y = y * 1000  # a huge first gradient
    model = GDRegressor(optimizer="sgd", learning_rate=0.1, max_epochs=1, tol=None,
                        standardize=False, clip_norm=1.0).fit(X, y)
    step = np.append(model.coef_, model.intercept_)
    assert np.linalg.norm(step) == pytest.approx(0.1, rel=1e-5)


@pytest.mark.parametrize("param,value,message", [
    ("schedule", "onecycle", "schedule must be one of"), ("gamma", 0.0, "gamma must be"),
    ("step_size", 0, "step_size must be"), ("l1_ratio", 1.5, "l1_ratio must be in"),
    ("alpha", -1.0, "alpha must be"), ("clip_norm", 0.0, "clip_norm must be"),
    ("warmup_epochs", -1, "warmup_epochs must be"),
])
def test_bad_schedule_and_penalty_parameters(param, value, message):
    with pytest.raises(ValueError, match=message):
        GDRegressor(**{param: value}).fit(X, Y)


@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize("engine", ["cython", "numpy"])
def test_auto_learning_rate_is_a_safe_gradient_descent_step(standardize, engine):
    X, y, sw = make_problem(2000, 8, weights=True, seed=12)
    model = GDRegressor(optimizer="nesterov", learning_rate="auto", standardize=standardize,
                        alpha=0.1, max_epochs=20000, tol=1e-13, engine=engine).fit(
        X, y, sample_weight=sw)
    Z = (X - model.mean_) / model.scale_ if standardize else X
    Zb = np.c_[Z, np.ones(len(y))]
    hessian = 2 * (Zb * sw[:, None]).T @ Zb / sw.sum()
    hessian[:-1, :-1] += 0.1 * np.eye(8)  # the ridge penalty (l1_ratio=0)
    top = np.linalg.eigvalsh(hessian).max()
    assert 0.95 / top <= model.learning_rate_ < 1.5 / top  # about 1/L; divergence is 2/L
    assert model.n_iter_ < 20000
    assert model.history_["learning_rate"][0] == model.learning_rate_


@pytest.mark.parametrize("optimizer", ["adagrad", "rmsprop", "adam", "adamw"])
def test_auto_learning_rate_of_adaptive_optimizers_is_the_datas(optimizer):
    """An adaptive optimizer moves each coordinate by about its rate a step, so "auto" is in
    the problem's units (y x 1000: a rate 1000 times larger; torch's fixed 0.001 or 0.01
    left full-batch Adam at R^2 -3.8 on diabetes), smaller by sqrt(batch / n) for
    mini-batches, and full-batch fits reach the optimum's R^2."""
    X, y = load_diabetes(return_X_y=True)
    settings = dict(optimizer=optimizer, weight_decay=0.0, random_state=0)
    model = GDRegressor(**settings).fit(X, y)
    assert LinearRegression().fit(X, y).score(X, y) - model.score(X, y) < 1e-3
    scaled = GDRegressor(**settings, max_epochs=1, tol=None).fit(X, 1000 * y)
    assert scaled.learning_rate_ == pytest.approx(1000 * model.learning_rate_, rel=1e-9)
    batches = GDRegressor(**settings, max_epochs=1, tol=None, batch_size=64).fit(X, y)
    assert batches.learning_rate_ == pytest.approx(model.learning_rate_ * np.sqrt(64 / len(y)),
                                                   rel=1e-9)


@pytest.mark.parametrize("optimizer,rate", [("sgd", 0.05), ("momentum", 0.02),
                                            ("nesterov", 0.02), ("adagrad", 0.5),
                                            ("rmsprop", 0.01), ("adam", 0.01),
                                            ("adamw", 0.01)])
def test_every_optimizer_settles_at_the_lasso_solution(optimizer, rate):
    """The proximal step's threshold follows the optimizer's settled step: with lr l1
    alone, momentum 0.9 settled where the penalty is ten times weaker."""
    X, y, _ = make_problem(300, 5, seed=11)
    model = GDRegressor(optimizer=optimizer, learning_rate=rate, alpha=0.6, l1_ratio=1.0,
                        weight_decay=0.0, schedule="cosine", max_epochs=3000, tol=None,
                        standardize=False).fit(X, y)
    exact = Lasso(alpha=0.3, tol=1e-12, max_iter=100000).fit(X, y)
    assert_allclose(model.coef_, exact.coef_, rtol=1e-6, atol=1e-9)
    assert (model.coef_ == 0).sum() == (exact.coef_ == 0).sum() > 0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kw", [
    {"schedule": "invscaling", "power_t": 2000.0},
    {"schedule": "cosine", "max_epochs": 10**400, "tol": 1.0},
    {"warmup_epochs": 10**400},
])
def test_extreme_schedules_stay_finite(kw):
    model = GDRegressor(**{"max_epochs": 3, "tol": None, **kw}).fit(X, Y)
    assert all(np.isfinite(model.history_["learning_rate"]))
    assert np.isfinite(model.coef_).all()


@pytest.mark.parametrize("kw", [{"schedule": "exponential", "gamma": 1e300},
                                {"schedule": "step", "step_size": 1, "gamma": 1e200}])
def test_exploding_schedules_are_divergence(kw):
    from fastgd import DivergenceError

    with pytest.raises(DivergenceError):
        GDRegressor(max_epochs=5, tol=None, **kw).fit(X, Y)


def test_huge_thread_count_allocates_nothing_per_thread():
    Xf = np.asfortranarray(X)
    model = GDRegressor(batch_size=10, n_threads=32768, max_epochs=2, tol=None,
                        random_state=0).fit(Xf, Y)
    same = GDRegressor(batch_size=10, n_threads=1, max_epochs=2, tol=None,
                       random_state=0).fit(Xf, Y)
    np.testing.assert_array_equal(model.coef_, same.coef_)


def test_batch_curvature_goes_from_the_full_batch_to_one_row():
    from fastgd.solvers.curvature import batch_curvature

    assert batch_curvature(2.0, 50.0, 1000, 1000) == 2.0
    assert batch_curvature(2.0, 50.0, 1000, 1) == pytest.approx(50.0)
    assert 2.0 < batch_curvature(2.0, 50.0, 1000, 32) < 50.0 / 32 + 2.0


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
@pytest.mark.parametrize("batch_size", [1, 32, 256])
def test_auto_learning_rate_is_safe_for_mini_batches(optimizer, batch_size):
    """1 / L of the whole data diverged at batch 32; the batch's curvature does not."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 50))
    y = X @ rng.standard_normal(50) + rng.standard_normal(3000)
    model = GDRegressor(optimizer=optimizer, batch_size=batch_size, max_epochs=30, tol=None,
                        random_state=0).fit(X, y)
    exact = LinearRegression().fit(X, y).score(X, y)
    assert model.score(X, y) > exact - 0.02
