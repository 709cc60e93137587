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
# This module implements the engine interface shared with fastgd/reference.py (see
# fastgd/_driver.py). Arguments are validated by the caller (fastgd/_validation.py); what
# memory safety needs (shapes, class indices) is checked here too.

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport isfinite, pow
from libc.string cimport memcpy, memset

import numpy as np

from fastgd._openmp cimport (FASTGD_OPENMP, FASTGD_LINE, fastgd_openmp_library, fastgd_team_wait,
                             omp_get_max_threads, omp_get_num_threads, omp_get_thread_num)
from fastgd._losses cimport (HUBER, LOG, Loss, LossKind, MULTINOMIAL, SQUARED, elementwise_loss,
                             row_loss)
from fastgd._optim cimport (OptimConfig, optim_step, add_l2, clip_norm, prox_l1, SGD,
                            MOMENTUM, NESTEROV, ADAGRAD, RMSPROP, ADAM, ADAMW)

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


# The rest, by concern (textual includes: one module, compiled twice).
include "_chunks.pxi"
include "_simd.pxi"
include "_order.pxi"
include "_passes.pxi"
include "_epoch.pxi"
include "_stats.pxi"
