import logging
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from fastgd import _kernels, losses, optimizers

# Property and fuzz tests: a fixed, quick set of examples in `make test`; `make fuzz` runs
# the same tests with --hypothesis-profile=fuzz, many random examples, for a bounded time.
QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("default", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=QUIET, print_blob=True)
settings.register_profile("fuzz", max_examples=1500, deadline=None,
                          suppress_health_check=QUIET, print_blob=True)
settings.load_profile("default")


def make_problem(n, d, *, dtype=np.float64, order="C", seed=0, noise=0.1, weights=False):
    """A random linear regression problem: X (n, d), y, and optionally sample weights."""
    rng = np.random.default_rng(seed)
    X = np.asarray(rng.standard_normal((n, d)) * rng.uniform(0.5, 3, d) + rng.uniform(-2, 2, d),
                   dtype=dtype, order=order)
    y = (X @ rng.standard_normal(d) + 0.5 + noise * rng.standard_normal(n)).astype(dtype)
    sw = rng.uniform(0, 2, n).astype(dtype) if weights else None
    return X, y, sw


# The registries, as the tests cover them: every loss (with a parameter away from its default
# where it has one) and every optimizer; a new entry is covered without editing the tests.
LOSS_PARAMS = {"delta": 0.5, "power": 1.7}
LOSSES = [cls(**{key: LOSS_PARAMS.get(key, default) for key, default in cls.params.items()})
          for cls in losses.LOSSES.values()]
ONE_OUTPUT_LOSSES = [loss for loss in LOSSES if loss.min_outputs == 1]
REGRESSION_LOSSES = losses.names("regression")
OPTIMIZERS = tuple(optimizers.OPTIMIZERS)

# Every compiled build this CPU runs: the portable one and, where supported, the AVX2 one.
BUILDS = {"baseline": _kernels}
if _kernels.cpu_supports_avx2_fma():
    from fastgd import _kernels_avx2

    BUILDS["avx2"] = _kernels_avx2


def loss_id(loss) -> str:
    return loss.name


def targets_for(loss, Z):
    """Targets a loss takes, from raw outputs Z (n, k) in X's dtype: class indices of the
    largest output, labels 0/1 for a classification loss, else the predictions the loss's
    inverse link makes of Z (within its domain; where the link is not the identity, of Z
    scaled to within +-3, so that an exponential stays finite and moderate; for a loss
    with a kink, of Z moved by 0.5 up and down, alternately, off the kink)."""
    if loss.class_indices:
        return Z.argmax(axis=1)[:, None].astype(Z.dtype)
    if loss.task == "classification":
        return (Z > 0).astype(Z.dtype)
    Z64 = Z.astype(np.float64)
    if not np.array_equal(loss.inverse_link(Z64), Z64):
        Z64 = Z64 * (3.0 / max(np.abs(Z64).max(), 3.0))
    if not loss.smooth:  # off its kink, on both sides: there the derivative jumps, and which
        # side a residual of 0 falls on is the rounding's (of z in a different order)
        Z64 = Z64 + np.where(np.arange(len(Z64)) % 2, 0.5, -0.5)[:, None]
    return loss.inverse_link(Z64).astype(Z.dtype)


def run_cli(capsys, *argv):
    """The command line's main(argv) in this process: (exit status, stdout, stderr)."""
    from fastgd.cli import main

    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def trajectory(model) -> dict:
    """A fitted model's history without the wall times (which no two runs share)."""
    return {k: v for k, v in model.history_.items() if k != "seconds"}


def assert_same_fit(a, b):
    """Two fitted models are the same bits: parameters and trajectory (not wall times)."""
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    assert trajectory(a) == trajectory(b)
    assert a.n_iter_ == b.n_iter_


@pytest.fixture
def problem():
    return make_problem


@pytest.fixture(scope="session")
def client():
    """A real Dask cluster for the session: two worker processes of one thread each, bound
    to 127.0.0.1, started on first use and closed at the end; no worker may outlive it."""
    distributed = pytest.importorskip("distributed")
    psutil = pytest.importorskip("psutil")
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
