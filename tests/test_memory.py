"""Fitting reads X in place: C or F order, float32 or float64, read-only, memory-mapped."""

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
@pytest.mark.parametrize("batch_size", [None, 256])
def test_fit_allocates_a_small_fraction_of_x(order, dtype, batch_size):
    X, y, _ = make_problem(40_000, 80, order=order, dtype=dtype)  # 12.8 or 25.6 MB
    X.flags.writeable = False
    peak = peak_allocation(lambda: GDRegressor(max_epochs=3, tol=None, batch_size=batch_size,
                                               random_state=0).fit(X, y))
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
