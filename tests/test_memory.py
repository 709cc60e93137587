"""Fitting reads X in place: C or F order, float32 or float64, read-only, memory-mapped."""

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from conftest import make_problem
from numpy.testing import assert_array_equal

from fastgd import GDClassifier, GDRegressor


def peak_allocation(fit) -> int:
    tracemalloc.start()
    try:
        fit()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", [dict(batch_size=None), dict(batch_size=256),
                                    dict(optimizer="lbfgs"), dict(optimizer="newton")],
                         ids=["full batch", "batch 256", "lbfgs", "newton"])
def test_fit_allocates_a_small_fraction_of_x(order, dtype, solver):
    X, y, _ = make_problem(40_000, 80, order=order, dtype=dtype)  # 12.8 or 25.6 MB
    X.flags.writeable = False
    peak = peak_allocation(lambda: GDRegressor(max_epochs=3, tol=None, random_state=0,
                                               **solver).fit(X, y))
    assert peak < 0.1 * X.nbytes  # vectors of n, blocks, buffers: never a copy of X


def test_a_memory_mapped_x_trains_in_place(tmp_path):
    X, y, _ = make_problem(40_000, 80)
    path = tmp_path / "X.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")
    kw = dict(max_epochs=3, tol=None, batch_size=512, random_state=0)
    peak = peak_allocation(lambda: GDRegressor(**kw).fit(mapped, y))
    assert peak < 0.1 * X.nbytes
    in_memory = GDRegressor(**kw).fit(X, y)
    assert_array_equal(GDRegressor(**kw).fit(mapped, y).coef_, in_memory.coef_)
    labels = (y > np.median(y)).astype(int)
    peak = peak_allocation(lambda: GDClassifier(**kw).fit(mapped, labels))
    assert peak < 0.1 * X.nbytes


@pytest.mark.process_memory
def test_a_thousand_fits_and_predicts_keep_memory_flat():
    """No leak: 1,000 fits and predicts (both estimators, both batch kinds, loss_and_grad)
    leave the process's memory where 100 of them left it."""
    import gc

    import psutil

    import fastgd

    X, y, _ = make_problem(1000, 20)
    labels = (y > np.median(y)).astype(int)

    def rounds(count):
        for i in range(count):
            GDRegressor(max_epochs=2, tol=None, batch_size=(None, 64)[i % 2],
                        random_state=0).fit(X, y).predict(X)
            GDClassifier(max_epochs=2, tol=None).fit(X, labels).predict_proba(X)
            fastgd.loss_and_grad(X, y, np.zeros(20), 0.0)
        gc.collect()

    process = psutil.Process()
    rounds(100)
    before = process.memory_info().rss
    rounds(1000)
    growth = process.memory_info().rss - before
    # 1 kB a round would show: a leaked row of X, or a chunk buffer. (tracemalloc's count
    # of Python objects swings by tens of kB with the free lists of floats and tuples: RSS,
    # which sees C allocations too, is the steadier measure here.)
    assert growth < 1_000_000


PEAK = """
import sys
import numpy as np
from fastgd import GDClassifier, GDRegressor

def status(field):  # kB, from the kernel's account of this process
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))

order, dtype, batch, kind = sys.argv[1:]
n, d = 120_000, 100
X = np.empty((n, d), dtype=dtype, order=order)
rng = np.random.default_rng(0)
for j in range(d):
    X[:, j] = rng.standard_normal(n)
y = X[:, 0] - X[:, 1] > 0 if kind == "classifier" else X[:, 0] + 0.5 * X[:, 1]
estimator = GDClassifier if kind == "classifier" else GDRegressor
estimator(max_epochs=1, tol=None).fit(X[:1000], y[:1000])  # imports, thread pools
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from the present size (VmRSS)
before = status("VmRSS:")
estimator(max_epochs=3, tol=None, batch_size=None if batch == "full" else int(batch),
          random_state=0).fit(X, y)
print((status("VmHWM:") - before) / X.nbytes)
"""


@pytest.mark.process_memory
@pytest.mark.skipif(sys.platform != "linux", reason="reads Linux's /proc/self/status")
@pytest.mark.parametrize("order, dtype, batch, kind", [
    ("C", "float64", "full", "regressor"), ("F", "float64", "256", "regressor"),
    ("C", "float32", "64", "regressor"), ("F", "float32", "full", "regressor"),
    ("C", "float64", "128", "classifier"), ("F", "float32", "full", "classifier")])
def test_peak_memory_of_a_fit_is_a_few_percent_of_x(order, dtype, batch, kind):
    """The whole process's peak, C allocations included, in a fresh process: fitting adds
    less than 5 % of X.nbytes to what X and y already take, at 100 features (what a fit
    allocates is vectors of n: the targets as float64, weights, labels; and of d)."""
    ratio = float(subprocess.run([sys.executable, "-c", PEAK, order, dtype, batch, kind],
                                 capture_output=True, text=True, check=True).stdout)
    assert ratio < 0.05


@pytest.mark.parametrize("solver", [dict(optimizer="lbfgs"), dict(optimizer="newton"),
                                    dict(optimizer="nesterov", batch_size=64),
                                    dict(optimizer="sgd", batch_size=1)],
                         ids=["lbfgs", "newton-cg", "nesterov, batch 64", "sgd, batch 1"])
def test_a_fit_on_sparse_x_allocates_vectors_of_d_and_a_share_of_x(solver):
    """Sparse X (2^18 features, far more than its rows' entries a batch): a fit allocates
    vectors of the parameters' size (a solver's state, the passes' buffers, the epoch's
    bookkeeping) and buffers bounded by X's stored entries, never a copy of X nor a
    d x d matrix. The most is L-BFGS's: its history of 10 pairs (20 vectors of d), its
    own 7, the passes' (parameter, gradient) pairs of two chunks (8), the loop's copies:
    44 vectors of d measured here, and at 2^20 features (benchmarks/sparse.py --memory)."""
    import scipy.sparse as sp

    n, d = 20_000, 1 << 18
    rng = np.random.default_rng(0)
    columns = np.sort(rng.choice(d, size=(n, 30)), axis=1)  # (a repeat sums: canonical)
    X = sp.csr_matrix((rng.random(n * 30), columns.ravel(), np.arange(0, n * 30 + 1, 30)),
                      shape=(n, d))
    X.sum_duplicates()
    y = (np.asarray(X.sum(axis=1)).ravel() > np.median(np.asarray(X.sum(axis=1)))).astype(int)
    GDClassifier(max_epochs=1, tol=None).fit(X[:500], y[:500])  # imports
    x_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    peak = peak_allocation(lambda: GDClassifier(max_epochs=3, tol=None, random_state=0,
                                                **solver).fit(X, y))
    assert peak < 48 * 8 * d + 0.5 * x_bytes
