"""Passes over data held by a real Dask cluster (worker processes on 127.0.0.1, started and
stopped here) equal the in-memory passes."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_problem

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")

from fastgd import _dask, kernels  # noqa: E402
from fastgd._validation import Loss  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client():
    """Two worker processes of one thread each, bound to 127.0.0.1; none may outlive it."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0", memory_limit="2GiB", silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    pids = list(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids
    yield client
    client.close()
    cluster.close()
    for pid in pids:
        try:
            psutil.Process(pid).wait(timeout=30)
        except psutil.NoSuchProcess:
            pass
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def sharded(X, y, sw, client, rows=(700, 1300, 1000), cols=None):
    chunks = (rows, cols or X.shape[1])
    Xd = da.from_array(X, chunks=chunks)
    yd = da.from_array(y, chunks=(rows,) + y.shape[1:])
    swd = None if sw is None else da.from_array(sw, chunks=(rows,))
    return _dask.Shards.of(Xd, yd, swd, client=client)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-9), (np.float32, 1e-5)])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("loss", ["squared", "huber"])
def test_grad_pass_equals_in_memory(client, dtype, rtol, weights, loss):
    X, y, sw = make_problem(3000, 7, dtype=dtype, weights=weights)
    shards = sharded(X, y, sw, client, cols=(3, 4))  # rechunked to one column block
    coef, intercept = np.linspace(-1, 1, 7)[None, :], np.array([0.3])
    Y = y.reshape(-1, 1)
    expected = kernels.grad_pass(X, Y, sw, coef, intercept, Loss(loss), 1)
    got = _dask.grad_pass(shards, None, None, coef, intercept, Loss(loss), None)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol)
    # the same sum, the same bits
    again = _dask.grad_pass(shards, None, None, coef, intercept, Loss(loss), None)
    assert all(np.array_equal(a, b) for a, b in zip(again, got, strict=True))
    shards.release()


def test_column_stats_equal_in_memory(client):
    X, y, sw = make_problem(3000, 5, weights=True)
    sw[:700] = 0.0  # a shard with no weight is left out
    shards = sharded(X, y, sw, client)
    got = _dask.column_stats(shards, None, None)
    for a, b in zip(got, kernels.column_stats(X, sw, 1), strict=True):
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
    expected = kernels.grad_pass(X[mask], y[mask].reshape(-1, 1), None, coef, intercept,
                                 Loss("squared"), 1)
    got = _dask.grad_pass(shards, None, None, coef, intercept, Loss("squared"), None)
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
    expected = kernels.grad_pass(X, Y, sw, coef, intercept, Loss(loss), 1)
    got = _dask.grad_pass(shards, None, None, coef, intercept, Loss(loss), None)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9)
    shards.release()


def test_rows_of_y_must_match(client):
    X, y, _ = make_problem(100, 3)
    with pytest.raises(ValueError, match="X has 100 rows but y has 99"):
        _dask.Shards.of(da.from_array(X, chunks=50), da.from_array(y[:99], chunks=50),
                        client=client)
