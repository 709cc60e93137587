"""pytest-benchmark cases: fastgd beside its baselines, one group per case.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m pytest benchmarks/ \\
        --benchmark-only [--benchmark-columns=min,median,rounds]

(`make bench` installs pytest-benchmark.) Each group holds fastgd and what it is compared
with, so the table pytest-benchmark prints reads as ratios: the gradient pass against the
NumPy reference and one `X @ w` (the memory floor), on shapes in and out of cache; one
epoch at batch 32 against the NumPy engine, scikit-learn's SGDRegressor and PyTorch.
These are timings, not tests: the tests live in tests/ and never time anything.
"""

import numpy as np
import pytest

import fastgd
from fastgd import bench, reference

pytest.importorskip("pytest_benchmark")

SHAPES = {"in cache, 20k x 100": (20_000, 100), "out of cache, 1M x 100": (1_000_000, 100),
          "narrow, 100k x 3": (100_000, 3), "wide, 5k x 1000": (5_000, 1000)}


@pytest.fixture(scope="module", params=list(SHAPES))
def shape(request):
    return request.param


@pytest.fixture(scope="module", params=["float64", "float32"])
def data(request, shape):
    X, y = bench.problem(*SHAPES[shape], np.dtype(request.param))
    return f"{shape} {request.param}", X, y


CANDIDATES = {
    "fastgd": lambda X, y, c: fastgd.loss_and_grad(X, y, c, 0.0),
    "numpy reference": lambda X, y, c: reference.loss_and_grad(X, y, c, 0.0),
    "X @ w (memory floor)": lambda X, y, c: X @ c.astype(X.dtype),
}


@pytest.mark.parametrize("candidate", list(CANDIDATES))
def test_gradient_pass(benchmark, data, candidate):
    name, X, y = data
    benchmark.group = f"gradient pass, {name}"
    benchmark(CANDIDATES[candidate], X, y, np.zeros(X.shape[1]))


@pytest.fixture(scope="module")
def epoch_data():
    return bench.problem(200_000, 20, np.float64)


@pytest.mark.parametrize("candidate", ["fastgd sgd", "fastgd adam", "numpy engine",
                                       "scikit-learn SGDRegressor (batch 1)",
                                       "PyTorch nn.Linear + Adam"])
def test_epoch_batch_32(benchmark, epoch_data, candidate):
    X, y = epoch_data
    benchmark.group = "one epoch, batch 32, 200k x 20 float64"
    if candidate.startswith("fastgd"):
        run = bench.fastgd_epoch(X, y, candidate.split()[1], 32)
    elif candidate == "numpy engine":
        run = bench.fastgd_epoch(X, y, "sgd", 32, engine=reference)
    elif candidate.startswith("scikit-learn"):
        from sklearn.linear_model import SGDRegressor

        model = SGDRegressor(max_iter=1, tol=None, learning_rate="constant", eta0=1e-4)
        run = lambda: model.fit(X, y)  # noqa: E731
    else:
        torch = pytest.importorskip("torch")
        run = bench.torch_epoch(torch, X, y, 32)
    benchmark.pedantic(run, rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("epochs", [1, 21])
def test_regressor_fit(benchmark, epochs):
    """GDRegressor's cost per epoch: (fit of 21 epochs - fit of 1) / 20."""
    X, y = bench.problem(1_000_000, 100, np.float64)
    benchmark.group = "GDRegressor fit, 1M x 100 float64"
    model = fastgd.GDRegressor(optimizer="nesterov", max_epochs=epochs, tol=None)
    benchmark.pedantic(model.fit, (X, y), rounds=3)
