"""partial_fit, warm_start, coef_init / intercept_init."""

import numpy as np
import pytest
from conftest import assert_same_fit, make_problem
from numpy.testing import assert_allclose

import fastgd
from fastgd import GDRegressor

X, Y, _ = make_problem(600, 5, noise=0.05)


@pytest.mark.parametrize("kw", [
    dict(optimizer="adam", learning_rate=0.05, batch_size=40),
    dict(optimizer="momentum", learning_rate=0.02, batch_size=64, schedule="cosine",
         warmup_epochs=2),
    dict(optimizer="sgd", learning_rate="auto", alpha=0.01, l1_ratio=0.5),
])
def test_partial_fits_are_the_epochs_of_a_fit(kw):
    """k calls of partial_fit make the very same epochs as fit(max_epochs=k): optimizer
    state, schedule, row orders and standardization all carry over."""
    whole = GDRegressor(max_epochs=6, tol=None, random_state=4, **kw).fit(X, Y)
    steps = GDRegressor(max_epochs=6, tol=None, random_state=4, **kw)
    for _ in range(6):
        steps.partial_fit(X, Y)
    assert_same_fit(steps, whole)


def test_partial_fit_goes_on_after_fit():
    kw = dict(optimizer="adam", learning_rate=0.05, batch_size=40, tol=None, random_state=1)
    model = GDRegressor(max_epochs=3, **kw).fit(X, Y)
    model.partial_fit(X, Y).partial_fit(X, Y)
    assert_same_fit(model, GDRegressor(max_epochs=5, **kw).fit(X, Y))


def test_partial_fit_learns_from_a_stream_of_chunks():
    model = GDRegressor(optimizer="adam", learning_rate=0.05, batch_size=32, random_state=0)
    for _ in range(10):
        for chunk in np.array_split(np.arange(len(Y)), 6):
            model.partial_fit(X[chunk], Y[chunk])
    assert model.score(X, Y) > 0.999
    assert model.n_iter_ == 60 == len(model.history_["loss"])


def test_partial_fit_checks_the_features():
    """The wrong number of features is X's fault, and the message says so (it said y)."""
    model = GDRegressor().partial_fit(X, Y)
    with pytest.raises(ValueError, match=r"^X: X has 3 features, but GDRegressor is "
                                         r"expecting \d+ features"):
        model.partial_fit(X[:, :3], Y)
    classifier = fastgd.GDClassifier().partial_fit(X, Y > 0, classes=[False, True])
    with pytest.raises(ValueError, match="^X: X has 3 features"):
        classifier.partial_fit(X[:, :3], Y > 0)


def test_partial_fit_after_load_goes_on_from_the_saved_coefficients(tmp_path):
    model = GDRegressor(max_epochs=20, tol=None, random_state=0).fit(X, Y)
    model.save(tmp_path / "m")
    loaded = fastgd.load(tmp_path / "m")
    before = np.mean((loaded.predict(X) - Y) ** 2)
    loaded.partial_fit(X, Y)
    assert_allclose(loaded.history_["loss"][-1], before, rtol=1e-9)  # the first loss seen
    assert loaded.n_iter_ == 1


def test_warm_start_starts_from_the_previous_fit():
    model = GDRegressor(max_epochs=5, tol=None, random_state=0).fit(X, Y)
    previous_loss = np.mean((model.predict(X) - Y) ** 2)
    model.set_params(warm_start=True, max_epochs=1)
    model.fit(X, Y)
    assert_allclose(model.history_["loss"][0], previous_loss, rtol=1e-9)
    cold = GDRegressor(max_epochs=1, tol=None, random_state=0).fit(X, Y)
    assert_allclose(cold.history_["loss"][0], np.mean(Y ** 2), rtol=1e-9)  # from zeros
    with pytest.raises(ValueError, match=r"warm_start=True: .* 1 output\(s\) and 3 features"):
        model.fit(X[:, :3], Y)


def test_coef_init_and_intercept_init():
    exact, *_ = np.linalg.lstsq(np.c_[X, np.ones(len(Y))], Y, rcond=None)
    model = GDRegressor(max_epochs=1, tol=None).fit(X, Y, coef_init=exact[:-1],
                                                       intercept_init=float(exact[-1]))
    residual = np.c_[X, np.ones(len(Y))] @ exact - Y
    assert_allclose(model.history_["loss"][0], np.mean(residual ** 2), rtol=1e-9)


@pytest.mark.parametrize("kw,error,message", [
    (dict(coef_init=np.zeros(3)), ValueError, r"coef_init must have shape \(5,\)"),
    (dict(coef_init=[np.nan] * 5), ValueError, "coef_init contains NaN"),
    (dict(coef_init=["a"] * 5), TypeError, "coef_init must hold real numbers"),
    (dict(intercept_init="1"), TypeError, "intercept_init must be a real number"),
    (dict(intercept_init=np.inf), ValueError, "intercept_init must be finite"),
])
def test_bad_initial_parameters(kw, error, message):
    with pytest.raises(error, match=message):
        GDRegressor().fit(X, Y, **kw)


def test_bad_warm_start():
    with pytest.raises(TypeError, match="warm_start must be True or False"):
        GDRegressor(warm_start="yes").fit(X, Y)


def test_partial_fit_follows_changed_settings():
    model = GDRegressor(optimizer="momentum", learning_rate=0.01, batch_size=50,
                        random_state=0)
    for _ in range(3):
        model.partial_fit(X, Y)
    model.set_params(learning_rate=1e-12)  # a new rate is used from the next call on
    before = model.coef_.copy()
    model.partial_fit(X, Y)
    assert np.abs(model.coef_ - before).max() > 0  # the momentum carries on a little...
    model.set_params(optimizer="adam")  # ...but a new optimizer starts with its own state
    before = model.coef_.copy()
    model.partial_fit(X, Y)
    assert np.abs(model.coef_ - before).max() < 1e-9  # Adam's steps are ~ lr long


def test_warm_start_with_coef_init_for_new_features():
    model = GDRegressor(max_epochs=3, tol=None, warm_start=True).fit(X, Y)
    model.fit(X[:, :3], Y, coef_init=np.zeros(3))  # coef_init wins over warm_start
    assert model.coef_.shape == (3,)
    with pytest.raises(ValueError, match=r"warm_start=True: .* 1 output\(s\) and 5 features"):
        model.fit(X, Y)
    assert model.predict(X[:, :3]).shape == (len(Y),)  # still the usable 3-feature model
