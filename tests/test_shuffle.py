"""Shuffling: a new seeded row order every epoch, the same in both engines."""

import numpy as np
import pytest
import scipy.sparse
from conftest import make_problem
from numpy.testing import assert_allclose, assert_array_equal

from fastgd import GDRegressor, _shuffling, reference
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


# Shuffling by blocks (fastgd/_shuffling.py, fastgd/_order.pxi): X that streams from disk.

BLOCKS = [(1, 1), (2, 1), (4, 8), (16, 4), (64, 2)]


@pytest.mark.parametrize("blocks", BLOCKS)
@pytest.mark.parametrize("n", [1, 2, 7, 64, 100, 1000, 4099])
def test_block_orders_are_permutations_equal_in_both_engines(n, blocks):
    for epoch in range(3):
        keys = shuffle_keys(5, epoch)
        compiled = kernels.shuffled_rows(keys, n, blocks=blocks)
        assert_array_equal(compiled, reference.shuffled_rows(keys, n, blocks))
        assert_array_equal(np.sort(compiled), np.arange(n))


@pytest.mark.parametrize("blocks", [(16, 4), (64, 8)])
def test_a_window_reads_runs_of_whole_blocks_in_a_mixed_order(blocks):
    block_rows, window_blocks = blocks
    n = 50_000
    window = block_rows * window_blocks
    orders = [kernels.shuffled_rows(shuffle_keys(3, epoch), n, blocks=blocks)
              for epoch in range(3)]
    for order in orders:
        for start in range(0, n, window):
            rows = np.sort(order[start:start + window])
            # Its blocks, each a run of consecutive rows; one more run where the rotated
            # rows wrap around from n - 1 to 0, one for the tail past the last whole block.
            assert np.count_nonzero(np.diff(rows) != 1) + 1 <= window_blocks + 2
        inside = order[:window]
        assert abs(np.corrcoef(np.arange(window), inside)[0, 1]) < 0.2  # mixed
    for a, b in zip(orders[:-1], orders[1:], strict=True):
        assert (a != b).mean() > 0.99
        # The blocks' boundaries move from epoch to epoch (the rotation).
        assert not np.array_equal(np.sort(a[:block_rows]) % block_rows,
                                  np.sort(b[:block_rows]) % block_rows)


@pytest.mark.parametrize("n", [5, 1000, 4099, 50_000])
def test_the_blocks_a_window_announces_are_the_rows_it_reads(n):
    """advise_window asks the kernel to read in each window's blocks ahead of the epoch:
    exactly the rows the window's positions read."""
    blocks = (16, 4)
    window = blocks[0] * blocks[1]
    keys = shuffle_keys(9, 1)
    order = kernels.shuffled_rows(keys, n, blocks=blocks)
    for w in range(-(-n // window)):
        announced = np.concatenate([np.arange(start, start + size) % n for start, size in
                                    kernels.window_blocks(keys, n, blocks, w)])
        assert_array_equal(np.sort(announced), np.sort(order[w * window:(w + 1) * window]))


def test_block_shuffle_arguments_are_checked():
    with pytest.raises(ValueError, match="powers of two"):
        kernels.shuffled_rows((1, 2, 3), 10, blocks=(3, 2))
    with pytest.raises(TypeError, match="shuffle must be True, False, 'rows' or 'blocks'"):
        GDRegressor(shuffle="sometimes").fit(np.ones((4, 2)), np.ones(4))


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 256 bytes and windows of four of them: several of each on test data."""
    monkeypatch.setattr(_shuffling, "BLOCK_BYTES", 256)
    monkeypatch.setattr(_shuffling, "WINDOW_BYTES", 1024)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_block_shuffled_training_is_the_same_in_both_engines(small_blocks, sparse, optimizer):
    X, y, _ = make_problem(700, 4)
    if sparse:
        X = scipy.sparse.csr_matrix(np.where(np.abs(X) > 0.5, X, 0.0))
    kw = dict(optimizer=optimizer, batch_size=8, max_epochs=3, tol=None,
              learning_rate=0.01, random_state=0, shuffle="blocks")
    compiled = GDRegressor(**kw).fit(X, y)
    numpy = GDRegressor(engine="numpy", **kw).fit(X, y)
    assert_allclose(compiled.coef_, numpy.coef_, rtol=1e-9, atol=1e-12)
    rows = GDRegressor(**{**kw, "shuffle": "rows"}).fit(X, y)
    assert not np.allclose(compiled.coef_, rows.coef_, rtol=1e-6)


def test_shuffle_true_picks_blocks_for_a_memory_map_larger_than_memory(
        small_blocks, tmp_path, monkeypatch):
    X, y, _ = make_problem(600, 4)
    path = tmp_path / "X.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")
    assert _shuffling.mapped_bytes(mapped) == X.nbytes and _shuffling.mapped_bytes(X) == 0
    kw = dict(batch_size=8, max_epochs=2, tol=None, learning_rate=0.01, random_state=0)
    by_rows = GDRegressor(shuffle="rows", **kw).fit(X, y).coef_
    by_blocks = GDRegressor(shuffle="blocks", **kw).fit(X, y).coef_
    assert _shuffling.shuffle_blocks(mapped, True) is None  # fits in memory: rows
    assert_array_equal(GDRegressor(**kw).fit(mapped, y).coef_, by_rows)
    monkeypatch.setattr(_shuffling, "available_memory", lambda: X.nbytes - 1)
    assert _shuffling.shuffle_blocks(mapped, True) == (8, 4)  # 32-byte rows
    assert _shuffling.shuffle_blocks(X, True) is None  # in memory whatever its size
    assert_array_equal(GDRegressor(**kw).fit(mapped, y).coef_, by_blocks)
    assert_array_equal(GDRegressor(shuffle="rows", **kw).fit(mapped, y).coef_, by_rows)


def test_block_shuffle_undoes_an_order_by_target(small_blocks):
    """Rows sorted by y: in order, each epoch ends on the largest targets and the model
    leans to them; blocks mixed by windows land near the row shuffle's model."""
    X, y, _ = make_problem(4000, 5, noise=0.5)
    order = np.argsort(y)
    X, y = X[order], y[order]
    kw = dict(optimizer="sgd", batch_size=1, max_epochs=3, tol=None, learning_rate=0.001,
              random_state=0, standardize=False)
    scores = {shuffle: GDRegressor(shuffle=shuffle, **kw).fit(X, y).score(X, y)
              for shuffle in (False, "rows", "blocks")}
    assert scores["blocks"] > scores[False] + 0.5  # measured: R^2 0.86 against -0.32
    assert abs(scores["blocks"] - scores["rows"]) < 0.01


@pytest.mark.parametrize("sparse", [False, True])
def test_the_automatic_rate_of_x_that_streams_comes_from_a_sample_of_its_blocks(
        small_blocks, tmp_path, monkeypatch, sparse):
    """A dozen power-iteration passes over a file larger than memory would read it a dozen
    times: they read whole blocks spread over it, the same rows in both engines."""
    X, y, _ = make_problem(40_000, 4)
    X[20_000:] *= 1.5  # the second half of the file curves more: a sample must see both
    if sparse:
        X = scipy.sparse.csr_matrix(np.where(np.abs(X) > 0.3, X, 0.0))
        scipy.sparse.save_npz(tmp_path / "X.npz", X, compressed=False)
        parts = {name: np.load(tmp_path / f"{name}.npy", mmap_mode="r")
                 for name in ("data", "indices", "indptr")
                 if np.save(tmp_path / f"{name}.npy", getattr(X, name)) is None}
        mapped = scipy.sparse.csr_matrix(X.shape)
        mapped.data, mapped.indices, mapped.indptr = (parts[name] for name in parts)
    else:
        np.save(tmp_path / "X.npy", X)
        mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    monkeypatch.setattr(_shuffling, "BLOCK_BYTES", 2048)
    monkeypatch.setattr(_shuffling, "SAMPLE_BYTES", 64 * 2048)  # 64 blocks of many
    kw = dict(optimizer="sgd", batch_size=None, max_epochs=1, tol=None, random_state=0)
    whole = GDRegressor(**kw).fit(mapped, y).learning_rate_
    monkeypatch.setattr(_shuffling, "available_memory", lambda: 1000)
    rows = _shuffling.sample(mapped)
    assert 0 < len(rows) < len(y) / 4 and rows[0] == 0 and rows[-1] > len(y) * 3 / 4
    assert np.all(np.diff(rows) > 0)  # read in file order
    streamed = GDRegressor(**kw).fit(mapped, y).learning_rate_
    assert streamed != whole and abs(streamed / whole - 1) < 0.05  # measured: 2.7 %, 0.9 %
    assert GDRegressor(engine="numpy", **kw).fit(mapped, y).learning_rate_ == pytest.approx(
        streamed, rel=1e-10)


@pytest.mark.parametrize("sparse", [False, True])
def test_a_thread_announces_each_window_of_a_memory_map_ahead_of_the_epoch(
        small_blocks, tmp_path, monkeypatch, sparse):
    """fastgd/_prefetch.py: for a block-shuffled epoch over a memory map, a thread asks
    the kernel for the rows of each window WINDOWS_AHEAD windows before the epoch, which
    publishes its position; every row once an epoch; the model is the one the same rows
    in memory give, and the thread ends with the epoch."""
    import threading
    import time

    from fastgd import _compiled, _prefetch
    from fastgd._problem import shuffle_keys

    n = 3000
    X, y, _ = make_problem(n, 4)
    if sparse:
        X = scipy.sparse.csr_matrix(np.where(np.abs(X) > 0.5, X, 0.0))
        names = ("data", "indices", "indptr")
        for name in names:
            np.save(tmp_path / f"{name}.npy", getattr(X, name))
        mapped = scipy.sparse.csr_matrix(X.shape)
        mapped.data, mapped.indices, mapped.indptr = (
            np.load(tmp_path / f"{name}.npy", mmap_mode="r") for name in names)
    else:
        np.save(tmp_path / "X.npy", X)
        mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    assert _prefetch.mapped(X) is None and len(_prefetch.mapped(mapped)) == 1 + sparse

    progress = []
    start = _prefetch.Prefetcher.start
    monkeypatch.setattr(_prefetch.Prefetcher, "start",
                        lambda thread: (progress.append(thread.progress), start(thread)))
    kw = dict(optimizer="sgd", batch_size=8, max_epochs=2, tol=None, learning_rate=0.01,
              random_state=0, shuffle="blocks")
    threads = threading.active_count()
    from_file = GDRegressor(**kw).fit(mapped, y)
    assert threading.active_count() == threads  # each epoch's thread ended with it
    assert_array_equal(from_file.coef_, GDRegressor(**kw).fit(X, y).coef_)
    assert len(progress) == 2 and all(p[0] > 0 for p in progress)  # positions published
    progress.clear()
    GDRegressor(**{**kw, "shuffle": "rows"}).fit(mapped, y)
    assert not progress  # rows one by one: no windows to announce

    announced = []
    monkeypatch.setattr(_prefetch.Mapped, "announce",
                        lambda part, first, last: announced.append((part.unit, first, last)))
    blocks = _shuffling.shuffle_blocks(mapped, "blocks")
    thread = _prefetch.Prefetcher(_prefetch.mapped(mapped), shuffle_keys(0, 1), n, blocks,
                                  _compiled.kernels.window_blocks)
    thread.start()  # the epoch at position 0: the first windows only
    expected = (1 + sparse) * (1 + _prefetch.WINDOWS_AHEAD) * blocks[0] * blocks[1]
    deadline = time.monotonic() + 10
    while sum(last - first for _, first, last in announced) < expected and (
            time.monotonic() < deadline):
        time.sleep(0.01)
    time.sleep(0.05)  # and no further
    assert sum(last - first for _, first, last in announced) == expected
    thread.progress[0] = n  # the epoch at its end: the thread announces the rest and ends
    thread.join(5)
    assert not thread.is_alive()
    for unit in {unit for unit, *_ in announced}:
        rows = np.concatenate([np.arange(first, last) for u, first, last in announced
                               if u == unit])
        assert_array_equal(np.sort(rows), np.arange(n))  # every row, once
