"""Shuffling: a new seeded row order every epoch, the same in both engines."""

import numpy as np
import pytest
from conftest import make_problem
from numpy.testing import assert_array_equal

from fastgd import GDRegressor, reference
from fastgd._compiled import kernels
from fastgd._problem import shuffle_keys


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000, 65_537])
def test_orders_are_permutations_equal_in_both_engines(n):
    for epoch in range(3):
        keys = shuffle_keys(42, epoch)
        compiled = kernels.shuffled_rows(keys, n)
        assert_array_equal(compiled, reference.shuffled_rows(keys, n))
        assert_array_equal(np.sort(compiled), np.arange(n))


def test_new_order_every_epoch_fixed_by_the_seed():
    n = 10_000
    orders = [reference.shuffled_rows(shuffle_keys(7, e), n) for e in range(4)]
    for a, b in zip(orders[:-1], orders[1:], strict=True):
        assert (a != b).mean() > 0.99
    assert_array_equal(orders[2], reference.shuffled_rows(shuffle_keys(7, 2), n))
    other_seed = reference.shuffled_rows(shuffle_keys(8, 2), n)
    assert (orders[2] != other_seed).mean() > 0.99
    # Looks random: no memory of the position (rank correlation near 0).
    assert abs(np.corrcoef(np.arange(n), orders[0])[0, 1]) < 0.05


def test_random_state_reproduces_and_none_varies():
    X, y, _ = make_problem(500, 4)
    kw = dict(batch_size=16, max_epochs=3, tol=None, learning_rate=0.01)
    a = GDRegressor(random_state=0, **kw).fit(X, y)
    b = GDRegressor(random_state=0, **kw).fit(X, y)
    c = GDRegressor(random_state=1, **kw).fit(X, y)
    assert_array_equal(a.coef_, b.coef_)
    assert not np.array_equal(a.coef_, c.coef_)
    ordered = GDRegressor(shuffle=False, **kw).fit(X, y)
    assert not np.array_equal(a.coef_, ordered.coef_)


def test_shuffled_mini_batches_converge():
    X, y, _ = make_problem(3000, 5, noise=0.0)
    model = GDRegressor(batch_size=8, learning_rate=0.01, max_epochs=30, tol=None,
                        random_state=0).fit(X, y)
    assert model.score(X, y) > 1 - 1e-8


def test_full_batch_ignores_shuffle():
    X, y, _ = make_problem(300, 4)
    a = GDRegressor(max_epochs=5, tol=None, random_state=0).fit(X, y)
    b = GDRegressor(max_epochs=5, tol=None, shuffle=False).fit(X, y)
    assert_array_equal(a.coef_, b.coef_)
