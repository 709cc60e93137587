"""history_, callbacks, verbose progress and Ctrl-C during fit."""

import os
import signal
import sys
import threading
import warnings

import numpy as np
import pytest
from conftest import make_problem
from numpy.testing import assert_array_equal

from fastgd import GDClassifier, GDRegressor
from fastgd.solvers.curvature import POWER_ITERATIONS

X, Y, _ = make_problem(500, 4)
KW = dict(learning_rate=0.05, batch_size=50, random_state=0)


def test_history_has_one_entry_per_epoch():
    model = GDRegressor(max_epochs=7, tol=None, **KW).fit(X, Y)
    assert set(model.history_) == {"loss", "objective", "learning_rate", "seconds", "passes"}
    assert all(len(v) == 7 for v in model.history_.values())
    assert all(s > 0 for s in model.history_["seconds"])
    assert model.history_["objective"] == model.history_["loss"]  # no penalty


def test_history_counts_the_passes_over_the_data():
    """One pass an epoch; the first epoch's count holds the set-up's: the column statistics
    and, for learning_rate="auto", the power iteration's passes."""
    settings = dict(optimizer="nesterov", max_epochs=4, tol=None)
    fixed = GDRegressor(**settings, learning_rate=0.05, standardize=False).fit(X, Y)
    assert fixed.history_["passes"] == [1, 1, 1, 1]
    auto = GDRegressor(**settings).fit(X, Y)
    assert auto.history_["passes"] == [1 + POWER_ITERATIONS + 1, 1, 1, 1]
    newton = GDRegressor(optimizer="newton").fit(X, Y)  # the moments of [X, y], no more
    assert newton.history_["passes"] == [1]


def test_history_objective_is_the_loss_plus_the_penalty():
    """At each epoch's starting parameters, those the loss was measured at; in the trained
    (standardized) coefficients."""
    alpha, l1_ratio = 0.3, 0.25
    settings = dict(optimizer="sgd", alpha=alpha, l1_ratio=l1_ratio, tol=None)
    model = GDRegressor(max_epochs=5, **settings).fit(X, Y)
    starts = [np.zeros(X.shape[1])] + [  # full batch: each epoch's start is a shorter fit
        (lambda m: m.coef_ * m.scale_)(GDRegressor(max_epochs=e, **settings).fit(X, Y))
        for e in range(1, 5)]
    want = [loss + alpha * (l1_ratio * np.abs(w).sum() + (1 - l1_ratio) / 2 * w @ w)
            for loss, w in zip(model.history_["loss"], starts)]
    np.testing.assert_allclose(model.history_["objective"], want, rtol=1e-12)
    assert all(o > loss for o, loss in zip(model.history_["objective"][1:],
                                           model.history_["loss"][1:]))


def test_callbacks_see_every_epoch_and_can_stop():
    seen = []

    def record(figures):
        seen.append(figures)

    def stop_at_3(figures):
        return figures["epoch"] == 3

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stopping early is not a convergence failure
        model = GDRegressor(max_epochs=50, callbacks=[record, stop_at_3], **KW).fit(X, Y)
    assert model.n_iter_ == 3
    assert [f["epoch"] for f in seen] == [1, 2, 3]
    assert [f["loss"] for f in seen] == model.history_["loss"]
    assert [f["seconds"] for f in seen] == model.history_["seconds"]
    one = GDRegressor(max_epochs=4, tol=None, callbacks=record, **KW).fit(X, Y)
    assert one.n_iter_ == 4 and len(seen) == 7  # a single callable works too


@pytest.mark.parametrize("value,error", [("print", TypeError), ([print, 3], TypeError)])
def test_bad_callbacks(value, error):
    with pytest.raises(error, match="callbacks must be a callable or a list of callables"):
        GDRegressor(callbacks=value).fit(X, Y)


@pytest.mark.parametrize("value,error", [(3, ValueError), (-1, ValueError), (1.5, TypeError)])
def test_bad_verbose(value, error):
    with pytest.raises(error, match="verbose must be"):
        GDRegressor(verbose=value).fit(X, Y)


def test_verbose_lines_without_tqdm(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm fails: the plain lines
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    GDRegressor(max_epochs=3, tol=None, verbose=2, **KW).fit(X, Y)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("fastgd: epoch 1/3  loss ")
    assert lines[2].endswith("rows/s")


def test_verbose_1_stays_quiet_for_quick_fits(capsys):
    GDRegressor(max_epochs=3, tol=None, verbose=1, **KW).fit(X, Y)
    assert capsys.readouterr().err == ""


def test_interrupt_keeps_the_best_parameters():
    """A KeyboardInterrupt at an epoch boundary (here from a callback at epoch 5) stops
    training with a warning; the loss falls every epoch, so the best parameters are the
    ones the fifth epoch's updates reached (measured with one more pass)."""
    def interrupt(figures):
        if figures["epoch"] == 5:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="interrupted .* after 5 epochs"):
        model = GDRegressor(max_epochs=50, tol=None, callbacks=interrupt, **KW).fit(X, Y)
    assert model.n_iter_ == 5
    assert np.all(np.diff(model.history_["loss"]) < 0)
    five = GDRegressor(max_epochs=5, tol=None, **KW).fit(X, Y)
    assert_array_equal(model.coef_, five.coef_)
    assert model.intercept_ == five.intercept_
    assert model.predict(X[:3]).shape == (3,)


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name == "nt",
                    reason="sends SIGINT to its own process (POSIX)")
def test_ctrl_c_stops_a_long_fit():
    Xl, yl, _ = make_problem(2000, 8)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.warns(UserWarning, match="interrupted"):
            model = GDRegressor(max_epochs=10**7, tol=None, batch_size=64,
                                random_state=0).fit(Xl, yl)
    finally:
        timer.cancel()
    assert 0 < model.n_iter_ < 10**7
    assert np.isfinite(model.coef_).all()
    assert model.score(Xl, yl) > 0.99


def test_verbose_bar_with_tqdm(capsys):
    """tqdm's bar while the fit runs; then the bar is cleared and one line says how it
    ended (no frozen "120/1000" when tol stopped it early)."""
    pytest.importorskip("tqdm")  # in the test extra; optional for users
    model = GDRegressor(max_epochs=500, verbose=2, **KW).fit(X, Y)
    assert model.n_iter_ < 500  # tol stopped it
    err = capsys.readouterr().err
    assert "fastgd" in err and "rows_per_s" in err and "/500" in err
    assert err.endswith("\n")
    summary = err.rstrip("\n").split("\n")[-1].split("\r")[-1]  # what the screen shows
    assert "/500" not in summary and "rows_per_s" not in summary  # the bar was cleared
    assert summary.startswith(f"fastgd: {model.n_iter_} epochs in ")
    assert summary.endswith(f"final loss {model.history_['loss'][-1]:.6g}")


def test_warnings_point_at_the_callers_line():
    with pytest.warns(Warning) as record:
        GDRegressor(max_epochs=2, **KW).fit(X, Y)  # not converged: ConvergenceWarning
    assert record[0].filename == __file__


def test_callbacks_may_answer_with_numpy_booleans():
    model = GDRegressor(max_epochs=50, callbacks=lambda f: np.float64(f["epoch"]) >= 2,
                        **KW).fit(X, Y)
    assert model.n_iter_ == 2
    model = GDRegressor(max_epochs=4, tol=None, callbacks=lambda f: 1, **KW).fit(X, Y)
    assert model.n_iter_ == 4  # only True stops


def test_tol_judges_the_objective_not_the_loss():
    """With an L2 penalty the training loss of wine's classifier rises in most epochs while
    the objective falls: tol, judging the objective, stops the fit without a warning."""
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = GDClassifier(optimizer="nesterov", alpha=1e-3, max_epochs=2000).fit(X, y)
    assert model.n_iter_ < 2000
    loss, objective = np.array(model.history_["loss"]), np.array(model.history_["objective"])
    assert (np.diff(loss) > 0).mean() > 0.5
    assert (np.diff(objective) > 0).mean() < 0.1
