"""pytest-benchmark groups for the core (one process; compare within a group):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m pytest \\
        benchmarks/bench_core.py --benchmark-group-by=group --benchmark-columns=median,iqr,rounds

benchmarks/run.py prints the ratios table kept in benchmarks/README.md.
"""

import numpy as np
import pytest

import fastgd
from fastgd import reference

N, D = 1_000_000, 100


@pytest.fixture(scope="module", params=[np.float64, np.float32], ids=["float64", "float32"])
def data(request):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D), dtype=np.float32).astype(request.param, copy=False)
    return X, (X @ np.ones(D, dtype=X.dtype)).astype(X.dtype), np.zeros(D)


def test_gemv_memory_floor(benchmark, data):
    X, _, coef = data
    benchmark.group = f"pass-{X.dtype}"
    benchmark(lambda: X @ coef.astype(X.dtype))


def test_fastgd_loss_and_grad(benchmark, data):
    X, y, coef = data
    benchmark.group = f"pass-{X.dtype}"
    benchmark(fastgd.loss_and_grad, X, y, coef, 0.0)


def test_reference_loss_and_grad(benchmark, data):
    X, y, coef = data
    benchmark.group = f"pass-{X.dtype}"
    benchmark.pedantic(reference.loss_and_grad, (X, y, coef, 0.0), rounds=5)


@pytest.mark.parametrize("epochs", [1, 21])
def test_regressor_fit(benchmark, data, epochs):
    X, y, _ = data
    benchmark.group = f"fit-{X.dtype}"
    model = fastgd.GDRegressor(learning_rate=0.1, max_epochs=epochs, tol=None)
    benchmark.pedantic(model.fit, (X, y), rounds=3)
