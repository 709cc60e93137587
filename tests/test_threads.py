"""n_threads resolves as scikit-learn's does; OpenMP limits are honoured."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_same_fit, make_problem, trajectory
from numpy.testing import assert_array_equal
from threadpoolctl import threadpool_info, threadpool_limits

from fastgd import DivergenceError, GDRegressor, _kernels
from fastgd._threads import effective_n_threads

needs_openmp = pytest.mark.skipif(not _kernels.openmp_enabled(), reason="serial build")


def test_resolution_rules():
    default = effective_n_threads(None)
    assert 1 <= default <= (os.cpu_count() or 1)
    assert effective_n_threads(-1) == default
    assert effective_n_threads(-default - 5) == 1
    assert effective_n_threads(3) == (3 if _kernels.openmp_enabled() else 1)
    with pytest.raises(ValueError, match="got 0"):
        effective_n_threads(0)
    for bad in (1.0, "2", True):
        with pytest.raises(TypeError):
            effective_n_threads(bad)


@needs_openmp
def test_threadpoolctl_sees_and_limits_fastgd_openmp():
    """threadpoolctl lists the very runtime the kernels call, and its limit is what they use."""
    ours = os.path.realpath(_kernels.openmp_library())
    listed = {os.path.realpath(info["filepath"]) for info in threadpool_info()
              if info["user_api"] == "openmp"}
    assert ours in listed
    with threadpool_limits(limits=1, user_api="openmp"):
        assert _kernels.openmp_max_threads() == 1
        assert effective_n_threads(None) == 1
    assert _kernels.openmp_max_threads() >= 1


@needs_openmp
def test_omp_num_threads_respected():
    code = "from fastgd._threads import effective_n_threads as e; print(e(None), e(-1))"
    env = dict(os.environ, OMP_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["3", "3"]  # as scikit-learn: an explicit OMP_NUM_THREADS wins over cores


# The threads of a mini-batch epoch share each batch's chunks (16 rows at least; see
# epoch_worker): 2 chunks at batch 32, 3 at 33 (the last of one row), many in a large batch.
@pytest.mark.parametrize("batch_size", [7, 32, 33, 1100])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("order,dtype", [("C", np.float64), ("F", np.float64),
                                         ("C", np.float32), ("F", np.float32)])
def test_mini_batch_epochs_bit_identical_across_threads(batch_size, shuffle, order, dtype):
    X, y, sw = make_problem(3000, 64, order=order, dtype=dtype, weights=True)
    fits = [GDRegressor(optimizer="adam", learning_rate=0.01, batch_size=batch_size,
                        shuffle=shuffle, random_state=3, max_epochs=3, tol=None,
                        n_threads=t).fit(X, y, sample_weight=sw) for t in (1, 2, 3, 4)]
    for f in fits[1:]:
        assert_same_fit(f, fits[0])


def test_divergence_stops_every_thread_at_the_same_batch():
    X, y, _ = make_problem(3000, 64)
    errors = []
    for t in (1, 2):
        model = GDRegressor(learning_rate=1e4, batch_size=32, standardize=False,
                            max_epochs=50, tol=None, random_state=0, n_threads=t)
        with pytest.raises(DivergenceError) as info:
            model.fit(X, y)
        errors.append((info.value.epoch, model.coef_.copy(), model.intercept_))
    assert errors[0][0] == errors[1][0]
    assert_array_equal(errors[0][1], errors[1][1])
    assert errors[0][2] == errors[1][2]


def test_epochs_under_cpu_contention_give_the_same_bits():
    """With every core busy elsewhere, a team of threads that meets after every batch waits
    for partners that are not running; the team then goes on as one thread (epoch_worker).
    Whichever happens, and wherever in the epoch, the result is the same."""
    X, y, _ = make_problem(20_000, 64)
    kw = dict(optimizer="adam", learning_rate=0.01, batch_size=32, max_epochs=2, tol=None,
              random_state=0)
    alone = GDRegressor(n_threads=1, **kw).fit(X, y)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(os.cpu_count() or 2)]
    try:
        busy = [GDRegressor(n_threads=t, **kw).fit(X, y) for t in (2, 3)]
    finally:
        for p in burners:
            p.kill()
            p.wait()
    for model in busy:
        assert_array_equal(model.coef_, alone.coef_)
        assert trajectory(model) == trajectory(alone)


@pytest.mark.parametrize("n", [8193, 12290])
def test_last_batch_with_more_chunks_than_the_first(n):
    """Batch 4097 at d = 64 is 241 chunks of 17 rows; the last batch (4096 or 4 rows at
    n = 8193 or 12290) is 256 chunks of 16: the partial sums must have room for it."""
    X, y, _ = make_problem(n, 64)
    kw = dict(batch_size=4097, max_epochs=2, tol=None, shuffle=False, learning_rate=0.01)
    fits = [GDRegressor(n_threads=t, **kw).fit(X, y) for t in (1, 2, 3)]
    for f in fits[1:]:
        assert_array_equal(f.coef_, fits[0].coef_)
    ref = GDRegressor(engine="numpy", **kw).fit(X, y)
    np.testing.assert_allclose(fits[0].coef_, ref.coef_, rtol=1e-9)


def test_beside_scikit_learn_openmp_in_one_process():
    """fastgd's OpenMP runtime and scikit-learn's (each wheel carries its own copy) share a
    process: two libomp copies can abort one on macOS ("OMP: Error #15"), so this runs in a
    child process, which must fit with both, list both and exit cleanly."""
    code = (
        "import numpy as np\n"
        "from sklearn.cluster import KMeans\n"
        "from threadpoolctl import threadpool_info\n"
        "from fastgd import GDRegressor\n"
        "X = np.random.default_rng(0).standard_normal((4000, 8))\n"
        "KMeans(3, n_init=1, random_state=0).fit(X)\n"
        "model = GDRegressor(max_epochs=5, n_threads=2).fit(X, X @ np.ones(8))\n"
        "apis = sorted({info['user_api'] for info in threadpool_info()})\n"
        "KMeans(3, n_init=1, random_state=0).fit(X)\n"
        "print(apis, bool(np.isfinite(model.coef_).all()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'openmp'" in done.stdout and done.stdout.strip().endswith("True")


def test_python_threads_fit_at_once_as_one_after_another():
    """Fits in several Python threads at once give the bits of the same fits in turn."""
    from concurrent.futures import ThreadPoolExecutor

    problems = [make_problem(3000, 8, seed=s, weights=s % 2 == 1) for s in range(6)]
    settings = [dict(optimizer=o, batch_size=b, max_epochs=6, tol=None, random_state=0)
                for o, b in zip(("sgd", "adam", "nesterov", "adagrad", "adamw", "rmsprop"),
                                (None, 32, 64, None, 17, 256), strict=True)]

    def fit(i):
        X, y, sw = problems[i]
        return GDRegressor(**settings[i]).fit(X, y, sample_weight=sw)

    in_turn = [fit(i) for i in range(6)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        at_once = list(pool.map(fit, range(6)))
    for a, b in zip(at_once, in_turn, strict=True):
        assert_same_fit(a, b)


def test_the_gil_is_released_while_an_epoch_runs():
    """While a fit's epoch runs in one thread, Python code runs in another: a thread that
    counts gets to count in the middle of the epochs (it could not, were the GIL held)."""
    import threading
    import time

    X, y, _ = make_problem(400_000, 20)
    ends, ticks, done = [], [], threading.Event()

    def count():
        while not done.is_set():
            ticks.append(time.perf_counter())

    counter = threading.Thread(target=count)
    counter.start()
    try:
        ends.append(time.perf_counter())
        GDRegressor(batch_size=64, max_epochs=4, tol=None, n_threads=1,
                    callbacks=lambda e: ends.append(time.perf_counter())).fit(X, y)
    finally:
        done.set()
        counter.join()
    ticks = np.array(ticks)
    for start, end in zip(ends[1:-1], ends[2:], strict=True):  # whole epochs, no set-up
        middle = (ticks > start + 0.25 * (end - start)) & (ticks < end - 0.25 * (end - start))
        assert middle.sum() > 100, "the other thread did not run during the epoch"


def test_joblib_workers_get_a_share_of_the_cores():
    """Under joblib's process workers (loky), each worker's fastgd uses the threads joblib
    leaves it (cores / workers), not every core: no oversubscription."""
    from joblib import Parallel, delayed

    cores = effective_n_threads(None)
    seen = Parallel(n_jobs=2, backend="loky")(
        delayed(effective_n_threads)(None) for _ in range(4))
    assert all(threads == max(1, cores // 2) for threads in seen)


def blas_threads_seen(**settings):
    """The BLAS threads a fit's steps run under (seen by a callback), and NumPy's after."""
    seen = []

    def callback(figures):
        seen.append(max(pool["num_threads"] for pool in threadpool_info()
                        if pool["user_api"] == "blas"))
    X, y, _ = make_problem(200, 1, seed=1)
    X = np.repeat(X, 12_000, axis=1) * np.linspace(1, 2, 12_000)  # 12,001 parameters
    with threadpool_limits(2, user_api="blas"):
        GDRegressor(optimizer="lbfgs", max_epochs=2, tol=None, callbacks=callback,
                    **settings).fit(X, y)
        after = max(pool["num_threads"] for pool in threadpool_info()
                    if pool["user_api"] == "blas")
    return set(seen), after


@needs_openmp
def test_one_blas_thread_while_the_passes_share_the_cores():
    """A solver's vector work on more parameters than BLAS threads alone (a dot of 12,001)
    runs on one BLAS thread when the compiled passes run on several (else each side's
    threads spin on the cores the other needs); the reference's passes, BLAS's own, and
    one-thread passes keep BLAS's threads; the limit ends with the fit."""
    assert blas_threads_seen(n_threads=2) == ({1}, 2)
    assert blas_threads_seen(n_threads=1) == ({2}, 2)
    assert blas_threads_seen(n_threads=2, engine="numpy") == ({2}, 2)
