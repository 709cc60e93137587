"""How many threads a pass runs on: scikit-learn's rules, on the compiled engine's OpenMP."""

from __future__ import annotations

import numbers
import os
from contextlib import nullcontext
from functools import lru_cache

from fastgd._compiled import kernels

MAX_THREADS = 1 << 15  # more is pointless (a pass has at most 256 chunks) and overflows C int


@lru_cache(maxsize=1)
def physical_cores() -> int:
    try:
        from joblib import cpu_count

        return max(1, cpu_count(only_physical_cores=True))
    except Exception:  # joblib missing or unable to tell: fall back to logical CPUs
        return max(1, os.cpu_count() or 1)


def effective_n_threads(n_threads) -> int:
    """Resolve n_threads as scikit-learn does.

    None: the OpenMP maximum (which honours OMP_NUM_THREADS and threadpoolctl limits),
    capped at the physical cores unless OMP_NUM_THREADS is set; -1: all of those;
    -k: all but k-1; 0 is an error. A serial build always uses one thread.
    """
    if n_threads is not None and (isinstance(n_threads, bool)
                                  or not isinstance(n_threads, numbers.Integral)):
        raise TypeError(f"n_threads must be an integer or None, got {n_threads!r}")
    if n_threads == 0:
        raise ValueError("n_threads must be a positive integer, -1 (all cores) or None; got 0")
    if not kernels.openmp_enabled():
        return 1
    max_threads = kernels.openmp_max_threads()
    if not os.environ.get("OMP_NUM_THREADS"):
        max_threads = min(max_threads, physical_cores())
    if n_threads is None:
        return max_threads
    if n_threads < 0:
        return max(1, max_threads + int(n_threads) + 1)
    return min(int(n_threads), MAX_THREADS)


# OpenBLAS runs a vector operation (a dot, a norm) of more than this many elements on its
# threads, which then spin waiting for more work.
BLAS_THREADED_LENGTH = 10_000


def one_blas_thread(n_params: int, passes_share_cores: bool):
    """A context for a fit whose solver's NumPy vector work (the parameters', between the
    passes) is long enough for BLAS to thread it while the compiled passes' OpenMP threads
    use the cores: BLAS on one thread, so that neither spins on the cores the other needs
    (measured: a one-hot Newton-CG fit of 32,798 parameters on two cores, 29.8 s against
    20.8 s; its conjugate-gradient vector work 1.47 s against 0.06 s). Elsewhere (short
    vectors, the NumPy reference's passes, which are BLAS's, one thread) or without
    threadpoolctl, nothing."""
    if n_params <= BLAS_THREADED_LENGTH or not passes_share_cores:
        return nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(1, user_api="blas")
