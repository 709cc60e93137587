"""Numerical robustness: features from 1e-8 to 1e8, collinear and constant columns, float32
data with large values (sums in float64), logits of +-1000 (no overflow in the log loss)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastgd
from fastgd import GDClassifier, GDRegressor, reference

pytestmark = pytest.mark.filterwarnings("error")  # no overflow or invalid-value warnings


def least_squares(X, y):
    A = np.column_stack([X, np.ones(len(X))])
    return np.linalg.lstsq(A, y, rcond=None)[0]


def test_features_on_scales_from_1e_minus_8_to_1e8():
    rng = np.random.default_rng(0)
    scales = 10.0 ** np.arange(-8, 9)  # 17 features, 16 orders of magnitude apart
    X = rng.standard_normal((5000, len(scales))) * scales
    w = rng.standard_normal(len(scales)) / scales  # every feature matters alike
    y = X @ w + 3.0 + 0.01 * rng.standard_normal(5000)
    model = GDRegressor(tol=1e-12, max_epochs=5000).fit(X, y)
    exact = least_squares(X / scales, y)  # solved on unit scales: lstsq would drop the tiny
    assert_allclose(model.coef_ * scales, exact[:-1], rtol=1e-5, atol=1e-7)
    assert_allclose(model.intercept_, exact[-1], rtol=1e-7)


def test_collinear_and_constant_columns():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((2000, 3))
    X = np.column_stack([base, base[:, 0],                      # a duplicate
                         base[:, 1] - 2 * base[:, 2],            # a combination
                         np.full(2000, 7.0), np.zeros(2000)])    # constants
    y = base @ [1.0, -2.0, 0.5] + 1.0 + 0.1 * rng.standard_normal(2000)
    for standardize in (True, False):
        model = GDRegressor(standardize=standardize, tol=1e-12, max_epochs=3000).fit(X, y)
        assert np.isfinite(model.coef_).all()
        A = np.column_stack([X, np.ones(len(X))])
        best = A @ least_squares(X, y)  # the predictions are unique, the weights are not
        assert np.mean((model.predict(X) - y) ** 2) <= np.mean((best - y) ** 2) * (1 + 1e-8)
        assert model.coef_[-1] == 0.0  # an all-zero column gets no weight
    for optimizer in ("nesterov", "adam", "adagrad"):  # nor, standardized, a constant one
        fitted = GDRegressor(optimizer=optimizer, max_epochs=50, tol=None).fit(X, y)
        assert fitted.coef_[-2] == 0.0 and fitted.scale_[-2] == 1.0


@pytest.mark.parametrize("magnitude", [1e15, 1e19])
def test_float32_data_with_large_values(magnitude):
    """X and y in float32 near 1e19: their squares (1e38) and sums overflow float32, not
    the float64 sums fastgd keeps."""
    rng = np.random.default_rng(2)
    X = (rng.uniform(0.5, 1.0, (3000, 4)) * magnitude).astype(np.float32)
    y = (X.astype(np.float64) @ [0.5, -1.0, 0.25, 1.0]).astype(np.float32)
    coef = np.array([1.0, 1.0, 1.0, 1.0])
    got = fastgd.loss_and_grad(X, y, coef, 0.0)
    want = reference.loss_and_grad(X.astype(np.float64), y.astype(np.float64), coef, 0.0)
    for a, b in zip(got, want, strict=True):
        assert np.all(np.isfinite(a))
        assert_allclose(a, b, rtol=1e-5)
    settings = dict(tol=1e-10, max_epochs=2000)
    model = GDRegressor(**settings).fit(X, y)
    assert np.isfinite(model.coef_).all()
    # the NumPy reference engine (float64 arithmetic) on the same float32 data
    reference_fit = GDRegressor(**settings, engine="numpy").fit(X, y)
    assert_allclose(model.coef_, reference_fit.coef_, rtol=1e-4)
    # and the compiled engine on the data in float64: float32 storage loses nothing more
    float64_fit = GDRegressor(**settings).fit(X.astype(np.float64), y)
    assert_allclose(model.predict(X[:50]), float64_fit.predict(X[:50]).astype(np.float32),
                    rtol=1e-4)


@pytest.mark.parametrize("logit", [1000.0, -1000.0, 1e300, -1e300])
def test_log_loss_of_huge_logits(logit):
    """z = +-1000 (e^1000 overflows): the loss is |z| for the wrong label, 0 for the right
    one, and the gradient sigmoid(z) - y exactly 0 or +-1."""
    X = np.ones((2, 1))
    y = np.array([0.0, 1.0])
    for fn in (fastgd.loss_and_grad, reference.loss_and_grad):
        loss, grad, grad_b = fn(X, y, np.array([logit]), 0.0, loss="log")
        assert loss == pytest.approx(abs(logit) / 2, rel=1e-12)  # one row right, one wrong
        assert grad[0] == grad_b == 0.5 * np.sign(logit)  # the mean of 0 and +-1, exactly


def test_softmax_of_huge_logits():
    X = np.ones((3, 1))
    y = np.array([0.0, 1.0, 2.0])
    coef = np.array([[1000.0], [-1000.0], [0.0]])
    for fn in (fastgd.loss_and_grad, reference.loss_and_grad):
        loss, grad, grad_b = fn(X, y, coef, np.zeros(3), loss="multinomial")
        # rows of class 1 and 2 are 2000 and 1000 below the winning logit
        assert loss == pytest.approx((0 + 2000 + 1000) / 3, rel=1e-12)
        assert np.isfinite(grad).all() and np.isfinite(grad_b).all()


def test_a_classifier_with_huge_logits_predicts_probabilities():
    X = np.array([[-1.0], [1.0], [-2.0], [2.0]])
    y = np.array([0, 1, 0, 1])
    model = GDClassifier(alpha=0.0, max_epochs=50, tol=None).fit(X, y)
    model.coef_ = np.array([[1e4]])  # logits of +-1e4 and +-2e4
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all()
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_allclose(proba[:, 1], [0.0, 1.0, 0.0, 1.0])
    log_proba = model.predict_log_proba(X)  # -1e4 and so on: finite, never NaN
    assert np.isfinite(log_proba).all() and (log_proba <= 0).all()
    multi = GDClassifier(max_epochs=20, tol=None).fit(np.arange(9.0)[:, None],
                                                      np.repeat([0, 1, 2], 3))
    multi.coef_ = multi.coef_ * 1e6
    proba = multi.predict_proba(np.arange(9.0)[:, None])
    assert np.isfinite(proba).all()
    assert_allclose(proba.sum(axis=1), 1.0)


def test_separable_data_never_gives_a_nan_model():
    """No penalty, separable classes, a large learning rate: the logits grow without end,
    yet every loss and parameter stays finite."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((500, 3))
    y = (X[:, 0] > 0).astype(int)
    model = GDClassifier(alpha=0.0, learning_rate=100.0, max_epochs=300, tol=None,
                         optimizer="sgd").fit(X, y)
    assert np.isfinite(model.coef_).all() and np.isfinite(model.history_["loss"]).all()
    assert model.score(X, y) == 1.0
