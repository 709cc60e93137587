"""Passes over data held by a real Dask cluster (worker processes on 127.0.0.1, started and
stopped here) equal the in-memory passes."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import LOSSES, OPTIMIZERS, loss_id, make_problem, targets_for

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from fastgd import _dask, _training, kernels, losses, optimizers  # noqa: E402
from fastgd._engines import InMemory  # noqa: E402
from fastgd._problem import Problem  # noqa: E402
from fastgd.solvers.first_order import FirstOrder  # noqa: E402

ON_SHARDS = _dask.DaskEngine(None)
IN_MEMORY = InMemory(kernels, 1)

pytestmark = pytest.mark.timeout(120)


def sharded(X, y, sw, client, rows=(700, 1300, 1000), cols=None):
    chunks = (rows, cols or X.shape[1])
    Xd = da.from_array(X, chunks=chunks)
    yd = da.from_array(y, chunks=(rows,) + y.shape[1:])
    swd = None if sw is None else da.from_array(sw, chunks=(rows,))
    return _dask.Shards.of(Xd, yd, swd, client=client)


def on_shards(shards, loss, k=1) -> Problem:
    """The problem of data held in shards: Y and the sample weights are in them."""
    return Problem(shards, shards, None, losses.get(loss) if isinstance(loss, str) else loss,
                   k)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-9), (np.float32, 1e-5)])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("loss", ["squared", "huber"])
def test_grad_pass_equals_in_memory(client, dtype, rtol, weights, loss):
    X, y, sw = make_problem(3000, 7, dtype=dtype, weights=weights)
    shards = sharded(X, y, sw, client, cols=(3, 4))  # rechunked to one column block
    coef, intercept = np.linspace(-1, 1, 7)[None, :], np.array([0.3])
    Y = y.reshape(-1, 1)
    expected = IN_MEMORY.loss_and_grad(Problem(X, Y, sw, losses.get(loss)), coef, intercept)
    got = ON_SHARDS.loss_and_grad(on_shards(shards, loss), coef, intercept)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol)
    # the same sum, the same bits
    again = ON_SHARDS.loss_and_grad(on_shards(shards, loss), coef, intercept)
    assert all(np.array_equal(a, b) for a, b in zip(again, got, strict=True))
    shards.release()


def test_column_stats_equal_in_memory(client):
    X, y, sw = make_problem(3000, 5, weights=True)
    sw[:700] = 0.0  # a shard with no weight is left out
    shards = sharded(X, y, sw, client)
    got = ON_SHARDS.column_stats(on_shards(shards, "squared"))
    for a, b in zip(got, IN_MEMORY.column_stats(Problem(X, None, sw, None)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9)
    shards.release()


def test_unknown_row_counts_and_one_shard(client):
    X, y, _ = make_problem(1000, 4)
    Xd = da.from_array(X, chunks=(300, 4))
    keep = da.from_array(np.arange(1000) % 3 != 0, chunks=300)
    Xd, yd = Xd[keep], da.from_array(y, chunks=300)[keep]  # row counts unknown
    shards = _dask.Shards.of(Xd, yd, client=client)
    mask = np.arange(1000) % 3 != 0
    assert shards.shape == (mask.sum(), 4)
    coef, intercept = np.ones((1, 4)), np.zeros(1)
    expected = IN_MEMORY.loss_and_grad(Problem(X[mask], y[mask].reshape(-1, 1), None,
                                               losses.Squared()), coef, intercept)
    got = ON_SHARDS.loss_and_grad(on_shards(shards, "squared"), coef, intercept)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9)
    shards.release()


def test_no_client_is_a_clear_error():
    code = ("import dask.array as da\n"
            "from fastgd import _dask\n"
            "_dask.Shards.of(da.zeros((10, 2), chunks=5), da.zeros(10, chunks=5))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ValueError: X is a Dask array but there is no Dask client: start one "
        "(distributed.Client(...)) or pass client=")


@pytest.mark.parametrize("loss, k", [("log", 1), ("multinomial", 3)])
def test_classification_losses_equal_in_memory(client, loss, k):
    X, _, sw = make_problem(3000, 6, weights=True)
    rng = np.random.default_rng(1)
    Y = rng.integers(0, 2 if loss == "log" else k, size=(3000, 1)).astype(np.float64)
    coef, intercept = rng.standard_normal((k, 6)), rng.standard_normal(k)
    shards = sharded(X, Y, sw, client)
    expected = IN_MEMORY.loss_and_grad(Problem(X, Y, sw, losses.get(loss), k), coef, intercept)
    got = ON_SHARDS.loss_and_grad(on_shards(shards, loss, k), coef, intercept)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9)
    shards.release()


def test_rows_of_y_must_match(client):
    X, y, _ = make_problem(100, 3)
    with pytest.raises(ValueError, match=r"y must have shape \(100,\) .* got \(99,\)"):
        _dask.Shards.of(da.from_array(X, chunks=50), da.from_array(y[:99], chunks=50),
                        client=client)


def train(engine, problem, optimizer, learning_rate="auto", tol=1e-6, max_epochs=25,
          **options):
    """The training loop on `engine`, with an elastic-net penalty, full batch unless the
    options say otherwise."""
    solver = FirstOrder(optimizers.get(optimizer), learning_rate, l1=0.001, l2=0.01,
                        **options)
    k, d = problem.k, problem.n_features
    return _training.train(engine, problem, solver, coef=np.zeros((k, d)),
                           intercept=np.zeros(k), standardize=True, max_epochs=max_epochs,
                           tol=tol)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("loss", LOSSES, ids=loss_id)
def test_full_batch_training_equals_in_memory(client, optimizer, loss):
    """The training loop on shards (standardization, the automatic step, tol's scale, the
    updates) ends where the in-memory fit does, for every loss and optimizer."""
    X, y, sw = make_problem(3000, 6, weights=True)
    k = 3 if loss.class_indices else 1
    Z = (X - X.mean(axis=0)) @ np.random.default_rng(2).standard_normal((6, k)) / 3
    Y = targets_for(loss, Z)
    automatic = optimizer in ("sgd", "momentum", "nesterov") and loss.curvature is not None
    rate = "auto" if automatic else 0.05
    expected = train(IN_MEMORY, Problem(X, Y, sw, loss, k), optimizer, rate)
    shards = sharded(X, Y, sw, client)
    got = train(ON_SHARDS, on_shards(shards, loss, k), optimizer, rate)
    shards.release()
    assert got.n_iter == expected.n_iter
    np.testing.assert_allclose(got.coef, expected.coef, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.intercept, expected.intercept, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.history["loss"], expected.history["loss"], rtol=1e-9)
    assert got.learning_rate == pytest.approx(expected.learning_rate, rel=1e-9)


@pytest.mark.parametrize("optimizer", ["lbfgs", "newton"])
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_full_batch_solvers_on_shards_equal_in_memory(client, kind, optimizer):
    """optimizer="lbfgs" or "newton" on a Dask array: every pass (the Hessian too) summed
    over the shards in shard order, the iterations those of the fit in memory."""
    from fastgd import GDClassifier, GDRegressor

    X, y, sw = make_problem(3000, 5, weights=True)
    estimator = GDRegressor
    if kind == "classifier":
        estimator, y = GDClassifier, np.digitize(y, np.quantile(y, [0.3, 0.6]))
    settings = dict(optimizer=optimizer, alpha=0.01, max_epochs=40)
    in_memory = estimator(**settings).fit(X, y, sample_weight=sw)
    model = estimator(**settings).fit(da.from_array(X, chunks=(700, 5)),
                                      da.from_array(y, chunks=700),
                                      sample_weight=da.from_array(sw, chunks=700))
    assert model.n_iter_ == in_memory.n_iter_
    np.testing.assert_allclose(model.coef_, in_memory.coef_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(model.history_["objective"], in_memory.history_["objective"],
                               rtol=1e-9)
    assert model.history_["passes"] == in_memory.history_["passes"]


def test_newton_cg_on_shards_equals_in_memory(client, monkeypatch):
    """Newton-CG's Hessian-vector passes summed over the shards in shard order: the
    iterations of the fit in memory."""
    from fastgd import GDClassifier
    from fastgd.solvers import newton

    monkeypatch.setattr(newton, "HESSIAN_BYTES", 0)
    X, y, sw = make_problem(3000, 5, weights=True)
    y = np.digitize(y, np.quantile(y, [0.3, 0.6]))
    settings = dict(optimizer="newton", alpha=0.01, max_epochs=40)
    in_memory = GDClassifier(**settings).fit(X, y, sample_weight=sw)
    model = GDClassifier(**settings).fit(da.from_array(X, chunks=(700, 5)),
                                         da.from_array(y, chunks=700),
                                         sample_weight=da.from_array(sw, chunks=700))
    assert model.n_iter_ == in_memory.n_iter_
    np.testing.assert_allclose(model.coef_, in_memory.coef_, rtol=1e-7, atol=1e-10)
    assert model.history_["passes"] == in_memory.history_["passes"]


def test_nonfinite_data_is_reported_with_its_row(client):
    X, y, _ = make_problem(3000, 4)
    X[2100, 3] = np.nan
    shards = sharded(X, y, None, client)
    with pytest.raises(ValueError, match="first at row 2100, column 3"):
        train(ON_SHARDS, on_shards(shards, "squared"), "sgd", learning_rate=0.1)
    shards.release()


def _tasks_on_scheduler(client, wait=10.0):
    """The tasks the scheduler still holds, once it has had `wait` seconds to forget the
    released ones (releasing is asynchronous)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        held = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
        if held == 0 or time.monotonic() > deadline:
            return held
        time.sleep(0.05)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("outputs", [1, 2])
def test_regressor_fit_and_predict_on_dask_arrays(client, outputs):
    from fastgd import GDRegressor

    X, y, sw = make_problem(3000, 5, weights=True)
    if outputs == 2:
        y = np.column_stack([y, 2 * y - 1])
    Xd = da.from_array(X, chunks=(700, 5))
    yd = da.from_array(y, chunks=700)
    swd = da.from_array(sw, chunks=700)
    model = GDRegressor(optimizer="adam", learning_rate=0.05, max_epochs=30)
    in_memory = GDRegressor(optimizer="adam", learning_rate=0.05, max_epochs=30)
    model.fit(Xd, yd, sample_weight=swd)
    in_memory.fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(model.coef_, in_memory.coef_, rtol=1e-9)
    np.testing.assert_allclose(model.intercept_, in_memory.intercept_, rtol=1e-9)
    assert model.n_iter_ == in_memory.n_iter_ and model.n_features_in_ == 5
    assert _tasks_on_scheduler(client) == 0  # the shards were released
    predicted = model.predict(Xd)
    assert isinstance(predicted, da.Array) and predicted.shape == y.shape
    np.testing.assert_allclose(predicted.compute(), model.predict(X), rtol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("labels", [np.array(["no", "yes"]), np.array([3, 5, 7])])
def test_classifier_fit_and_predict_on_dask_arrays(client, labels):
    from fastgd import GDClassifier

    X, y, _ = make_problem(3000, 4)
    classes = labels[np.digitize(y, np.quantile(y, np.linspace(0, 1, len(labels) + 1)[1:-1]))]
    Xd, yd = da.from_array(X, chunks=(1000, 4)), da.from_array(classes, chunks=1000)
    model = GDClassifier(max_epochs=20).fit(Xd, yd)
    in_memory = GDClassifier(max_epochs=20).fit(X, classes)
    assert model.classes_.tolist() == in_memory.classes_.tolist() == sorted(labels.tolist())
    np.testing.assert_allclose(model.coef_, in_memory.coef_, rtol=1e-9)
    for method in ("predict", "predict_proba", "decision_function", "predict_log_proba"):
        lazy = getattr(model, method)(Xd)
        assert isinstance(lazy, da.Array)
        expected = getattr(model, method)(X)
        if method == "predict":
            assert lazy.compute().tolist() == expected.tolist()
        else:
            np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-12)


def test_the_numpy_engine_is_for_memory(client):
    from fastgd import GDRegressor

    X, y, _ = make_problem(100, 3)
    with pytest.raises(ValueError, match="engine must be 'cython'"):
        GDRegressor(engine="numpy").fit(da.from_array(X, chunks=50),
                                        da.from_array(y, chunks=50))


def test_bad_targets_are_refused_on_the_workers(client):
    from fastgd import GDClassifier, GDRegressor

    X, y, sw = make_problem(1000, 3, weights=True)
    y[900] = np.nan
    Xd = da.from_array(X, chunks=500)
    with pytest.raises(ValueError, match="y contains NaN"):
        GDRegressor().fit(Xd, da.from_array(y, chunks=500))
    sw[10] = -1.0
    with pytest.raises(ValueError, match="sample_weight"):
        GDRegressor().fit(Xd, da.from_array(np.nan_to_num(y), chunks=500),
                          sample_weight=da.from_array(sw, chunks=500))
    with pytest.raises(ValueError, match="class_weight on Dask arrays"):
        GDClassifier(class_weight="balanced").fit(Xd, da.from_array(y > 0, chunks=500))
    assert _tasks_on_scheduler(client) == 0


def test_threads_are_resolved_on_each_worker(client):
    """n_threads=None: every thread the worker has (1 here), not the client's count."""
    for asked, expected in ((None, 1), (-1, 1), (-5, 1), (3, 3)):
        assert client.submit(_dask._worker_threads, asked, pure=False).result() == expected


def test_early_stopping_on_validation_shards_equals_in_memory(client):
    """Validation by whole shards: the same as in memory with those shards' rows."""
    X, y, sw = make_problem(3000, 5, weights=True)
    shards = sharded(X, y, sw, client)  # rows 0-699, 700-1999, 2000-2999
    val_rows = np.arange(700, 2000)
    train_rows = np.setdiff1d(np.arange(3000), val_rows)
    solver = FirstOrder(optimizers.get("adam"), 0.05, l1=0.001, l2=0.01)
    kwargs = dict(coef=np.zeros((1, 5)), intercept=np.zeros(1), max_epochs=200, tol=1e-3,
                  standardize=True)
    expected = _training.train(IN_MEMORY, Problem(X, y.reshape(-1, 1), sw, losses.Squared()),
                               solver, early_stopping=_training.EarlyStopping(
                                   train_rows, val_rows, 3), **kwargs)
    got = _training.train(ON_SHARDS, on_shards(shards, "squared"), solver,
                          early_stopping=_training.EarlyStopping([0, 2], [1], 3), **kwargs)
    shards.release()
    assert got.n_iter == expected.n_iter < 200  # it stopped early, at the same epoch
    np.testing.assert_allclose(got.history["val_loss"], expected.history["val_loss"],
                               rtol=1e-9)
    np.testing.assert_allclose(got.coef, expected.coef, rtol=1e-9)


def test_estimator_early_stopping_by_blocks(client):
    from fastgd import GDRegressor

    X, y, _ = make_problem(3000, 4)
    model = GDRegressor(early_stopping=True, validation_fraction=0.2, random_state=0,
                        optimizer="adam", learning_rate=0.05)
    model.fit(da.from_array(X, chunks=(300, 4)), da.from_array(y, chunks=300))
    assert len(model.history_["val_loss"]) == model.n_iter_ >= 1
    assert model.score(X, y) > 0.9
    with pytest.raises(ValueError, match="validates on whole row blocks"):
        model.fit(da.from_array(X, chunks=(3000, 4)), da.from_array(y, chunks=3000))


def test_a_fit_that_fails_leaves_nothing_on_the_cluster(client):
    from fastgd import GDRegressor

    X, y, _ = make_problem(300, 3)
    with pytest.raises(ValueError, match="coef_init"):
        GDRegressor().fit(da.from_array(X, chunks=100), da.from_array(y, chunks=100),
                          coef_init=np.zeros(7))
    assert _tasks_on_scheduler(client) == 0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind,dtype", [("regressor", np.float64), ("regressor", np.float32),
                                        ("binary", np.float64), ("multiclass", np.float32)])
def test_mini_batches_on_one_shard_are_the_in_memory_epochs(client, kind, dtype):
    """A local epoch is the compiled epoch on the shard: with one shard and the rows in
    order, mini-batch training on the cluster is the in-memory training, for regressors
    and classifiers, in float64 and float32."""
    from fastgd import GDClassifier, GDRegressor

    X, y, sw = make_problem(2000, 4, weights=True, dtype=dtype)
    if kind != "regressor":
        y = np.digitize(y, [0.0] if kind == "binary" else [-2.0, 0.0, 2.0])
    estimator = GDRegressor if kind == "regressor" else GDClassifier
    params = dict(batch_size=64, shuffle=False, optimizer="adam", learning_rate=0.01,
                  max_epochs=5)
    on_cluster = estimator(**params).fit(da.from_array(X, chunks=(2000, 4)),
                                         da.from_array(y, chunks=2000),
                                         sample_weight=da.from_array(sw, chunks=2000))
    in_memory = estimator(**params).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(on_cluster.coef_, in_memory.coef_, rtol=1e-12)
    np.testing.assert_allclose(on_cluster.history_["loss"], in_memory.history_["loss"],
                               rtol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mini_batches_across_shards_reach_the_optimum(client, optimizer):
    """Local epochs averaged over 4 shards converge to the least-squares optimum, as
    in-memory mini-batch training does, and run for run they are the same bits."""
    from fastgd import GDRegressor

    X, y, _ = make_problem(8000, 5, noise=0.01)
    optimum = np.linalg.lstsq(np.column_stack([X, np.ones(len(X))]), y, rcond=None)[0]
    Xd, yd = da.from_array(X, chunks=(2000, 5)), da.from_array(y, chunks=2000)
    params = dict(batch_size=32, optimizer=optimizer, max_epochs=60, tol=1e-9,
                  random_state=0, schedule="cosine",
                  learning_rate="auto" if optimizer == "sgd" else 0.01)
    model = GDRegressor(**params).fit(Xd, yd)
    again = GDRegressor(**params).fit(Xd, yd)
    np.testing.assert_array_equal(model.coef_, again.coef_)
    np.testing.assert_allclose(model.coef_, optimum[:-1], rtol=1e-3, atol=1e-4)
    assert model.intercept_ == pytest.approx(optimum[-1], rel=1e-3, abs=1e-4)


def test_partial_fit_and_progress_on_dask_arrays(client, capsys):
    from fastgd import GDRegressor

    X, y, _ = make_problem(2000, 3)
    Xd, yd = da.from_array(X, chunks=(500, 3)), da.from_array(y, chunks=500)
    on_cluster, in_memory = GDRegressor(verbose=2), GDRegressor()
    for _ in range(3):
        on_cluster.partial_fit(Xd, yd)
        in_memory.partial_fit(X, y)
    assert on_cluster.n_iter_ == in_memory.n_iter_ == 3
    np.testing.assert_allclose(on_cluster.coef_, in_memory.coef_, rtol=1e-9)
    assert "loss" in capsys.readouterr().err  # verbose progress, as in memory


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_early_stopping_with_shuffled_mini_batches(client):
    from fastgd import GDRegressor

    X, y, _ = make_problem(4000, 4)
    model = GDRegressor(early_stopping=True, batch_size=32, random_state=0, max_epochs=30,
                        optimizer="adam", learning_rate=0.01)
    model.fit(da.from_array(X, chunks=(500, 4)), da.from_array(y, chunks=500))
    assert len(model.history_["val_loss"]) == model.n_iter_ and model.score(X, y) > 0.99


def test_empty_blocks_are_left_out(client):
    from fastgd import GDRegressor

    X, y, _ = make_problem(3000, 3)
    Xd, yd = da.from_array(X, chunks=(1000, 3)), da.from_array(y, chunks=1000)
    keep = da.from_array(np.arange(3000) >= 1000, chunks=1000)  # the first block empties
    model = GDRegressor(max_epochs=40, tol=None).fit(Xd[keep], yd[keep])
    in_memory = GDRegressor(max_epochs=40, tol=None).fit(X[1000:], y[1000:])
    np.testing.assert_allclose(model.coef_, in_memory.coef_, rtol=1e-9)
    nothing = da.from_array(np.zeros(3000, dtype=bool), chunks=1000)
    with pytest.raises(ValueError, match="X has 0 rows"):
        GDRegressor().fit(Xd[nothing], yd[nothing])


def test_divergence_in_mini_batches_is_a_divergence_error(client):
    from fastgd import DivergenceError, GDRegressor

    X, y, _ = make_problem(2000, 3)
    params = dict(batch_size=32, learning_rate=1e30, standardize=False, max_epochs=3)
    with pytest.raises(DivergenceError, match="diverged at epoch 1"):
        GDRegressor(**params).fit(da.from_array(X, chunks=500), da.from_array(y, chunks=500))
    with pytest.raises(DivergenceError, match="diverged at epoch 1"):
        GDRegressor(**params).fit(X, y)


def test_float32_and_classifier_checks_on_dask(client):
    from fastgd import GDClassifier, GDRegressor

    X, y, _ = make_problem(2000, 3, dtype=np.float32)
    Xd = da.from_array(X, chunks=500)
    model = GDRegressor(max_epochs=10, tol=None).fit(Xd, da.from_array(y, chunks=500))
    in_memory = GDRegressor(max_epochs=10, tol=None).fit(X, y)
    np.testing.assert_allclose(model.coef_, in_memory.coef_, rtol=1e-5)
    assert model.predict(Xd).dtype == np.float32
    labels = np.where(y > 0, "a", "b")
    with pytest.raises(ValueError, match="y must be 1-D for GDClassifier"):
        GDClassifier().fit(Xd, da.from_array(np.column_stack([labels, labels]), chunks=500))
    clf = GDClassifier().partial_fit(Xd, da.from_array(labels, chunks=500), classes=["a", "b"])
    with pytest.raises(ValueError, match="not among classes_"):
        clf.partial_fit(Xd, da.from_array(np.where(y > 0, "a", "c"), chunks=500))


def test_checkpoint_and_resume_on_a_cluster(client, tmp_path):
    """Checkpoints are the driver's, so a fit on a cluster resumes bit for bit too."""
    from conftest import assert_same_fit

    from fastgd import GDRegressor

    X, y, _ = make_problem(3000, 5)
    Xd, yd = da.from_array(X, chunks=(1000, 5)), da.from_array(y, chunks=1000)
    settings = dict(optimizer="adam", learning_rate=0.05, max_epochs=8, tol=None,
                    n_threads=1)
    path = tmp_path / "cluster.ckpt"
    uninterrupted = GDRegressor(**settings).fit(Xd, yd, client=client)
    GDRegressor(**settings, checkpoint=path,
                callbacks=lambda e: e["epoch"] == 5).fit(Xd, yd, client=client)
    resumed = GDRegressor(**settings).fit(Xd, yd, client=client, resume=path)
    assert_same_fit(resumed, uninterrupted)
    with pytest.raises(ValueError, match="was written for other data"):
        GDRegressor(**settings).fit(Xd[:2000], yd[:2000], client=client, resume=path)


def test_sparse_blocks_train_as_in_memory(client):
    """A Dask array whose blocks are scipy.sparse CSR matrices: the passes run the CSR
    kernels on the workers; a fit equals the in-memory sparse fit (full batch: the same
    steps; mini-batches: local epochs, as for dense blocks) and predicts blocks lazily."""
    import scipy.sparse as sp

    from fastgd import GDRegressor
    X = sp.random(2000, 60, density=0.1, format="csr", random_state=0)
    rng = np.random.default_rng(0)
    y = X @ rng.normal(size=60) + 0.5
    sw = rng.uniform(0.5, 1.5, 2000)
    Xd = da.from_array(X, chunks=(700, 60), asarray=False)
    assert sp.issparse(Xd.blocks[0].compute())
    default = GDRegressor().fit(Xd, da.from_array(y, chunks=700))  # auto: newton
    assert default.solver_ == "newton"
    np.testing.assert_allclose(default.coef_, GDRegressor().fit(X, y).coef_, rtol=1e-8)
    settings = dict(optimizer="lbfgs", alpha=1e-3, tol=1e-10, max_epochs=50)
    in_memory = GDRegressor(**settings).fit(X, y, sample_weight=sw)
    model = GDRegressor(**settings).fit(Xd, da.from_array(y, chunks=700),
                                        sample_weight=da.from_array(sw, chunks=700))
    np.testing.assert_allclose(model.coef_, in_memory.coef_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model.mean_, in_memory.mean_, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(model.predict(Xd).compute(), in_memory.predict(X), rtol=1e-8)
    shards = _dask.Shards.of(Xd, da.from_array(y, chunks=700), client=client)
    problem = on_shards(shards, "squared")
    coef, intercept = rng.normal(size=(1, 60)), np.array([0.1])
    expected = IN_MEMORY.loss_and_grad(Problem(X.toarray(), y[:, None], None,
                                               losses.get("squared")), coef, intercept)
    for a, b in zip(ON_SHARDS.loss_and_grad(problem, coef, intercept), expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9)
    assert ON_SHARDS.largest_row_norm(problem, None) == pytest.approx(
        IN_MEMORY.largest_row_norm(Problem(X.toarray(), None, None, None), None), rel=1e-12)
    shards.release()
    sgd = GDRegressor(optimizer="sgd", batch_size=50, learning_rate=0.01, max_epochs=2,
                      tol=None, random_state=0)
    # (mini-batches over sparse X scale without centering: Solver.centers)
    dense = GDRegressor(**{**sgd.get_params(), "standardize": "scale"}).fit(
        da.from_array(X.toarray(), chunks=(700, 60)), da.from_array(y, chunks=700))
    sgd.fit(Xd, da.from_array(y, chunks=700))
    np.testing.assert_allclose(sgd.coef_, dense.coef_, rtol=1e-9, atol=1e-12)
