# The compiled engine: one pass over X per call, GIL released, OpenMP over row chunks.
# This file is compiled twice (see fastgd/_compiled.py): _kernels.pyx for any CPU of the
# platform, _kernels_avx2.pyx with AVX2 and FMA enabled; the import picks what the CPU runs.
#
# Determinism: rows are cut into chunks whose boundaries depend on the shape only, never on
# the thread count. Each chunk writes its partial sums to its own row of a buffer, and the
# rows are added in chunk order, so the result is bit-identical for any number of threads.
#
# Layouts: X is read in place when its rows are contiguous (C order, or a row slice of it)
# or its columns are (F order). Both paths stream each block of rows from memory once.
# float32 X stays float32; every sum is accumulated in float64.
#
# A model has k outputs (k = 1: one regression target, or binary logistic regression;
# k > 1: several targets, or the classes of a softmax): its parameters are laid out
# (W, b), W of shape (k, d) row by row, then b (k), and so are the gradient sums.
#
# This module is the compiled half of the in-memory engine (fastgd/_engines.py): grad_pass,
# column_stats and run_epoch take a fastgd._problem.Problem, as fastgd/reference.py's
# twins do. Arguments are validated by the caller (fastgd/_validation.py); what memory
# safety needs (shapes, class indices) is checked here too. Losses and optimizers are
# those of fastgd/_losses.pxd and fastgd/_optim.pxd, read from the registries' objects.

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport isfinite, pow
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memmove, memset

import numpy as np

from fastgd._openmp cimport (FASTGD_OPENMP, FASTGD_LINE, fastgd_openmp_library, fastgd_team_wait,
                             omp_get_max_threads, omp_get_num_threads, omp_get_thread_num)
from fastgd._losses cimport (MULTINOMIAL, Loss, elementwise_d2loss, elementwise_loss,
                             elementwise_run, loss_of, row_loss, softmax_d2loss)
from fastgd._optim cimport (OPTIM_SLOTS, OptimConfig, add_l2, clip_norm, config_of,
                            optim_catch_up, optim_step, prox_l1)

cdef extern from *:
    """
    #if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    static int fastgd_cpu_avx2_fma(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    #else
    static int fastgd_cpu_avx2_fma(void) { return 0; }
    #endif
    """
    int fastgd_cpu_avx2_fma() noexcept nogil


def cpu_supports_avx2_fma():
    """Whether this CPU (and OS) runs AVX2 and FMA instructions."""
    return bool(fastgd_cpu_avx2_fma())


def openmp_enabled():
    return bool(FASTGD_OPENMP)


def openmp_library():
    """The path of the OpenMP runtime the kernels call; "" in a serial build."""
    return fastgd_openmp_library()


def bounds_checked():
    """Whether Cython checks indices here (the FASTGD_DEBUG=1 build): asked of the compiled
    code itself, by reading one past the end of a view that has memory there."""
    cdef double[::1] view = np.zeros(2)[:1]
    cdef Py_ssize_t past_end = 1
    cdef double value
    try:
        value = view[past_end]
    except IndexError:
        return True
    return False


def openmp_max_threads():
    """omp_get_max_threads(): honours OMP_NUM_THREADS and threadpoolctl limits."""
    return omp_get_max_threads()


def loss_terms(loss, const double[:, ::1] Z, const double[:, ::1] Y):
    """Each row's loss (n,) and its first and second derivatives in z (n, k) at predictions
    Z (n, k), by the C formulas of fastgd/_losses.pxd (for the multinomial loss, the
    diagonal of each row's Hessian diag(p) - p p^T): what tests compare with the registry's
    NumPy formulas."""
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], i, o
    cdef Loss spec = loss_of(loss, k)
    if Y.shape[0] != n or Y.shape[1] != spec.ky:
        raise ValueError(f"Y must have shape ({n}, {spec.ky})")
    values, first, second = np.empty(n), np.array(Z), np.empty((n, k))
    cdef double[::1] value = values
    cdef double[:, ::1] dz = first
    cdef double[:, ::1] d2z = second
    for i in range(n):
        if spec.kind == MULTINOMIAL and not (0 <= Y[i, 0] < k):
            raise ValueError(f"y must hold class indices 0 to {k - 1}")
        value[i] = row_loss(&spec, k, &dz[i, 0], &Y[i, 0])
        if spec.kind == MULTINOMIAL:
            softmax_d2loss(&Z[i, 0], k, &d2z[i, 0])
        else:
            for o in range(k):
                d2z[i, o] = elementwise_d2loss(&spec, Z[i, o], Y[i, o])
    return values, first, second


# The rest, by concern (textual includes: one module, compiled twice).
include "_chunks.pxi"
include "_simd.pxi"
include "_order.pxi"
include "_passes.pxi"
include "_epoch.pxi"
include "_stats.pxi"
include "_hessian.pxi"
include "_moments.pxi"
include "_sparse.pxi"
include "_sparse_epoch.pxi"
