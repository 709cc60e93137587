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

LOSSES = {"squared": SQUARED, "huber": HUBER, "log": LOG, "multinomial": MULTINOMIAL}


cdef Loss loss_of(loss, Py_ssize_t k, X, Y, sample_weight) except *:
    """The kernel's view of a fastgd._validation.Loss (name, delta) for a model of k
    outputs, once the shapes agree: Y is (n, k), or (n, 1) class indices in [0, k) for the
    multinomial loss (k >= 2, as the public functions require); sample_weight (n,)."""
    cdef Loss spec
    spec.kind = LOSSES[loss.name]
    spec.delta = loss.delta
    spec.k = k
    spec.ky = 1 if spec.kind == MULTINOMIAL else k
    n = X.shape[0]
    if spec.kind == MULTINOMIAL and k < 2:  # (one output has loops for elementwise losses)
        raise ValueError(f"the multinomial loss needs 2 outputs or more, got {k}")
    if k < 1 or Y.shape[0] != n or Y.shape[1] != spec.ky:
        raise ValueError(f"y must have shape ({n}, {spec.ky}) for {k} outputs, got {Y.shape}")
    if sample_weight is not None and sample_weight.shape[0] != n:
        raise ValueError(f"sample_weight must have {n} entries, got {sample_weight.shape[0]}")
    if spec.kind == MULTINOMIAL:  # an index out of range would write outside the buffers
        from fastgd._validation import check_class_indices  # (imports this module)
        check_class_indices(np.asarray(Y), k)
    return spec

cdef enum:
    MAX_CHUNKS = 256          # chunks per pass at most: the partial-sum buffer stays small
    MIN_CHUNK_ROWS = 16       # but a chunk has at least this many rows
    COLUMN_RUN = 512          # rows of a chunk read by columns at least (4 KB of float64)
    MIN_CHUNK_ELEMS = 1024    # and this many elements of X (chunks of a mini-batch go to the
                              # threads: each chunk costs one more row of partial sums to add)
    BLOCK_BYTES = 524288      # a block of rows (F order / stats), read twice: sized for L2
    L1_BLOCK_BYTES = 16384    # a block of narrow column-contiguous rows: sized for L1
    MAX_BLOCK = 4096          # rows per block at most (outputs of a block in `work`)
    LANES = 4                 # independent partial sums per dot product
    GROUP_ROWS = 64           # rows of row-contiguous X summed as a group at most
    GROUP_BYTES = 8192        # (and 4 at least: their widened copies in this many bytes)
    NARROW_ROWS = 16          # rows of at most this many entries: kept in registers
    LONG_WAITS_TO_SOLO = 16   # long barrier waits before an epoch's threads go on as one,
                              # if also 1 % of its barriers or more (a busy partner makes
                              # nearly all waits long; this VM's hiccups, a few an epoch)
    PARALLEL_MIN_ELEMS = 65536  # batches smaller run on one thread (also: 2 chunks at least);
                                # measured: 2 threads 1.1-1.3 x faster from there on, 1 x below

# A chunk's partial sums: the gradient sums in W (k d: sum of r_io x_i), in b (k: sum of
# r_io, where r_io = w_i dloss_i / dz_o), then two scalars at these offsets after them.
cdef enum:
    SUM_LOSS = 0              # sum of w_i * loss_i
    SUM_W = 1                 # sum of w_i
    N_SCALARS = 2
    PARTIAL_BUDGET = 65536    # doubles of partial sums per pass (512 KB: in L2): a model with
                              # many outputs and features gets fewer, larger chunks,
    CHUNKS_FLOOR = 32         # but never fewer than 32 (for the threads to share)


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


cdef inline Py_ssize_t sums_width(Py_ssize_t d, Py_ssize_t k) noexcept nogil:
    """Doubles in a chunk's partial sums for k outputs and d features."""
    return k * (d + 1) + N_SCALARS


cdef inline Py_ssize_t max_chunks(Py_ssize_t d, Py_ssize_t k) noexcept nogil:
    """Chunks of a pass at most."""
    return min(<Py_ssize_t>MAX_CHUNKS,
               max(PARTIAL_BUDGET // sums_width(d, k), <Py_ssize_t>CHUNKS_FLOOR))


cpdef Py_ssize_t chunk_rows(Py_ssize_t n, Py_ssize_t d, Py_ssize_t k=1,
                            bint by_columns=False) noexcept nogil:
    """Rows per chunk of n rows, d features and k outputs, read by rows or (by_columns) a
    run of each column at a time: a function of the shape and layout only, never of the
    thread count. A chunk read by columns has COLUMN_RUN rows at least: with the 79-row
    chunks of 20,000 x 100, a pass read 100 runs of 632 bytes, too short for the
    prefetcher, and ran 2-3 x slower than NumPy's."""
    if by_columns:
        return max(chunk_rows(n, d, k), <Py_ssize_t>COLUMN_RUN)
    cdef Py_ssize_t chunks = max_chunks(d, k)
    cdef Py_ssize_t by_count = (n + chunks - 1) // chunks
    cdef Py_ssize_t by_size = (MIN_CHUNK_ELEMS + d - 1) // d
    return max(by_count, by_size, <Py_ssize_t>MIN_CHUNK_ROWS)


cdef Py_ssize_t block_rows(Py_ssize_t d, Py_ssize_t itemsize) noexcept nogil:
    cdef Py_ssize_t m = BLOCK_BYTES // (d * itemsize)
    return min(max(m, 8), MAX_BLOCK)


cdef inline Py_ssize_t col_block_rows(Py_ssize_t d, Py_ssize_t k,
                                      Py_ssize_t itemsize) noexcept nogil:
    """Rows per block of column-contiguous X, whose k outputs fit in MAX_BLOCK doubles:
    narrow X (128 rows or more in L1_BLOCK_BYTES) in L1, each column a stream the next
    block goes on with; wider X in L2 (the next block is requested while the gradient of
    one is summed: cols_sums)."""
    cdef Py_ssize_t in_l1 = L1_BLOCK_BYTES // (d * itemsize)
    return min(in_l1 if in_l1 >= 128 else block_rows(d, itemsize), max(MAX_BLOCK // k, 1))


cdef inline Py_ssize_t whole_lines(Py_ssize_t count) noexcept nogil:
    """count doubles rounded up to whole cache lines (64 bytes)."""
    return (count + 7) // 8 * 8


def aligned_array(shape, fill=np.zeros):
    """An array of doubles starting a cache line (zeros, or fill=np.empty: not set): with
    rows of whole lines, each thread's buffers do too (vector loads then never straddle
    two lines; measured up to 1.4 x slower when they did), and no two threads' share a
    line."""
    size = int(np.prod(shape))
    raw = fill(size + 8)
    skip = (-raw.ctypes.data % 64) // 8
    return raw[skip:skip + size].reshape(shape)


cdef inline Py_ssize_t wide_width(Py_ssize_t d) noexcept nogil:
    """Doubles from one widened float32 row to the next: d rounded up to whole vectors."""
    return (d + LANES - 1) // LANES * LANES


cdef inline Py_ssize_t group_rows(Py_ssize_t d) noexcept nogil:
    """Rows of row-contiguous X summed as a group (rows_sums): a multiple of 4 up to
    GROUP_ROWS, whose widened copies (the portable build's float32) stay within
    GROUP_BYTES (in L1) unless 4 rows do not fit (more than 256 features)."""
    return min(<Py_ssize_t>GROUP_ROWS, max(4, GROUP_BYTES // (wide_width(d) * 8) // 4 * 4))


cdef extern from "_simd.h":
    bint FASTGD_AVX2
    void fastgd_rows4_d(const double* x0, const double* x1, const double* x2,
                        const double* x3, const double* w, Py_ssize_t d, double bias,
                        double* z) noexcept nogil
    void fastgd_rows4_f(const float* x0, const float* x1, const float* x2, const float* x3,
                        const double* w, Py_ssize_t d, double bias, double* z) noexcept nogil
    void fastgd_axpy4_f(const float* a0, const float* a1, const float* a2, const float* a3,
                        double c0, double c1, double c2, double c3, Py_ssize_t m,
                        double* out) noexcept nogil
    double fastgd_dot_f(const float* a, const double* v, Py_ssize_t m) noexcept nogil
    void fastgd_rows_axpy_d(const double* const* x, const double* c, Py_ssize_t g,
                            Py_ssize_t d, double* acc) noexcept nogil
    void fastgd_rows_axpy_f(const float* const* x, const double* c, Py_ssize_t g,
                            Py_ssize_t d, double* acc) noexcept nogil


cdef inline Py_ssize_t work_size(Py_ssize_t d, Py_ssize_t k) noexcept nogil:
    """Doubles of a thread's workspace in a pass: room for a group of rows widened from
    float32, then for the outputs of the group (rows_sums), or for the outputs of a block
    of rows and of one more row (cols_sums)."""
    return max(group_rows(d) * wide_width(d) + GROUP_ROWS * k,
               max(<Py_ssize_t>MAX_BLOCK, k) + k)


cdef struct Layout:
    Py_ssize_t n   # rows of X
    bint rows      # True: rows are contiguous (X[i, j] at i*ld + j); False: columns are
    Py_ssize_t ld  # distance between consecutive rows (or columns), in elements
    Py_ssize_t rs  # X[i, j] is at i*rs + j*cs: (ld, 1) for rows, (1, ld) for columns
    Py_ssize_t cs


cdef Layout layout_of(const floating[:, :] X) except *:
    cdef Layout lay
    cdef Py_ssize_t item = sizeof(floating)
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    lay.n = n
    if n < 1 or d < 1:
        raise ValueError(f"X must have rows and columns, got shape ({n}, {d})")
    if X.strides[0] % item or X.strides[1] % item:
        raise ValueError("X's strides must be whole multiples of its item size")
    if X.strides[0] == item and (d == 1 or X.strides[1] != item):
        lay.rows = False
        lay.ld = X.strides[1] // item if d > 1 else n
    elif X.strides[1] == item:
        lay.rows = True
        lay.ld = X.strides[0] // item if n > 1 else d
    else:
        raise ValueError("X must have contiguous rows or contiguous columns")
    lay.rs = lay.ld if lay.rows else 1
    lay.cs = 1 if lay.rows else lay.ld
    return lay


# Shuffling without a permutation array: position p of an epoch reads row
# shuffled_row(p), a keyed 3-round Feistel network on [0, 4^half) with cycle-walking into
# [0, n) (a bijection on [0, n)). A few integer operations per row, no memory, the same in
# fastgd/reference.py (shuffled_rows), so both engines see the same batches.

ctypedef unsigned long long u64

cdef struct Shuffle:
    u64 key[3]
    int half          # bits in each half of the Feistel block
    Py_ssize_t n

cdef enum:
    SCRATCH_ROWS = 64    # shuffled rows indexed (and, for F order, gathered) at a time
    PREFETCH_AHEAD = 16     # rows requested from memory into L2 ahead of the one summed
    PREFETCH_L1_AHEAD = 4   # scattered rows: also from L2 into L1 (measured: 8 and 24 ahead
                            # slower than 16 into L2; 2 and 6 slower than 4 into L1)

cdef u64 FEISTEL_MULT = 0x9E3779B97F4A7C15ULL


cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
        #define fastgd_prefetch(p) __builtin_prefetch((const void *)(p), 0, 2)
        #define fastgd_prefetch_l1(p) __builtin_prefetch((const void *)(p), 0, 3)
    #else
        #define fastgd_prefetch(p) ((void)(p))
        #define fastgd_prefetch_l1(p) ((void)(p))
    #endif
    """
    void fastgd_prefetch(const void* p) noexcept nogil
    void fastgd_prefetch_l1(const void* p) noexcept nogil


cdef inline void prefetch_l1(const floating* start, Py_ssize_t count) noexcept nogil:
    cdef const char* p = <const char*>start
    cdef const char* last = <const char*>(start + count - 1)
    while p <= last:
        fastgd_prefetch_l1(p)
        p = p + 64
    fastgd_prefetch_l1(last)


cdef inline void prefetch_ahead(const floating* start, Py_ssize_t count) noexcept nogil:
    """Ask for every cache line of start[0:count] (count > 0 elements inside the array)."""
    cdef const char* p = <const char*>start
    cdef const char* last = <const char*>(start + count - 1)
    while p <= last:
        fastgd_prefetch(p)
        p = p + 64
    fastgd_prefetch(last)  # the line of the last element, if the stride skipped it


cdef inline void prefetch_rows(const floating* X, Py_ssize_t ld, Py_ssize_t d,
                               const floating* y, Py_ssize_t ky, const floating* sw,
                               Py_ssize_t row) noexcept nogil:
    """Ask for row `row` of row-contiguous X, its targets and its weight."""
    prefetch_ahead(X + row * ld, d)
    fastgd_prefetch(y + row * ky)
    if sw != NULL:
        fastgd_prefetch(sw + row)


cdef inline Py_ssize_t scratch_size(Py_ssize_t d, Py_ssize_t ky) noexcept nogil:
    return SCRATCH_ROWS * (d + ky + 1)


cdef inline u64 feistel(const Shuffle* s, u64 x) noexcept nogil:
    cdef u64 mask = (<u64>1 << s.half) - 1
    cdef u64 left = x >> s.half, right = x & mask, t
    cdef int r
    for r in range(3):  # (L, R) -> (R, L ^ F(R)), F a multiply-shift hash of R and the key
        t = right
        right = left ^ ((((right ^ s.key[r]) * FEISTEL_MULT) >> (64 - s.half)) & mask)
        left = t
    return (left << s.half) | right


cdef inline Py_ssize_t shuffled_row(const Shuffle* s, Py_ssize_t position) noexcept nogil:
    cdef u64 x = feistel(s, <u64>position)
    while x >= <u64>s.n:
        x = feistel(s, x)
    return <Py_ssize_t>x


cdef Shuffle make_shuffle(tuple keys, Py_ssize_t n) except *:
    cdef Shuffle s
    cdef int bits = 1
    if len(keys) != 3:
        raise ValueError(f"shuffle keys must be three 64-bit integers, got {keys!r}")
    while (<u64>1 << bits) < <u64>n:
        bits += 1
    s.half = (bits + 1) // 2
    s.n = n
    for r in range(3):
        s.key[r] = <u64>keys[r]
    return s


# The order of an epoch or pass: position p (0 <= p < n) reads row row_at(order, p): the
# p-th of `rows` (a subset of X's rows, e.g. the training rows when some are held out for
# validation; NULL: all rows), taken in shuffled order when shuffled. A NULL order means
# position p reads row p.

cdef struct Order:
    Py_ssize_t n                # positions
    bint shuffled
    Shuffle shuffle             # over [0, n), when shuffled
    const Py_ssize_t* rows      # NULL: all of X's rows


cdef inline Py_ssize_t row_at(const Order* order, Py_ssize_t p) noexcept nogil:
    if order.shuffled:
        p = shuffled_row(&order.shuffle, p)
    return p if order.rows == NULL else order.rows[p]


cdef Order make_order(tuple shuffle_keys, const Py_ssize_t[::1] rows, Py_ssize_t n_rows):
    """The order of positions over `rows` (None: all n_rows rows), shuffled with keys."""
    cdef Order order
    if rows is not None and rows.shape[0] and not (
            0 <= np.min(rows) and np.max(rows) < n_rows):
        raise ValueError(f"rows must index X's {n_rows} rows")
    order.n = n_rows if rows is None else rows.shape[0]
    order.shuffled = shuffle_keys is not None
    if order.shuffled:
        order.shuffle = make_shuffle(shuffle_keys, order.n)
    order.rows = NULL if rows is None or rows.shape[0] == 0 else &rows[0]
    return order


def shuffled_rows(tuple keys, Py_ssize_t n, Py_ssize_t start=0, Py_ssize_t stop=-1):
    """The rows read at positions start..stop-1 of a shuffled epoch (for tests)."""
    cdef Shuffle s = make_shuffle(keys, n)
    stop = n if stop < 0 else min(stop, n)  # positions outside [0, n) have no row
    start = min(max(start, 0), stop)
    return np.array([shuffled_row(&s, p) for p in range(start, stop)], dtype=np.intp)


cdef inline void row_residuals(const Loss* loss, Py_ssize_t k, double* z, const floating* y,
                               const floating* sw, Py_ssize_t i, double* loss_sum,
                               double* weight_sum) noexcept nogil:
    """Loss of row i at predictions z[0:k], weighted, added to *loss_sum and its weight to
    *weight_sum (the caller's locals: sums kept in memory made a chain of loads and stores
    through every row, half the time of a pass at d = 3); z becomes the residuals
    r_io = w_i dloss / dz_o, whose sums the caller adds (add_residuals)."""
    cdef double wi = 1.0 if sw == NULL else <double>sw[i]
    cdef Py_ssize_t o
    loss_sum[0] += wi * row_loss(loss, k, z, y + i * loss.ky)
    weight_sum[0] += wi
    for o in range(k):
        z[o] = wi * z[o]


cdef enum:
    RESIDUAL_RUN = 64         # rows whose losses wait in a buffer to be summed (run_residuals)


cdef inline void run_residuals(const Loss* loss, double* z, const floating* y,
                               const floating* sw, Py_ssize_t m, double* sums) noexcept nogil:
    """row_residuals and add_residuals for a run of m consecutive rows of a one-output
    model (an elementwise loss): predictions z[0:m], targets y[0:m], weights sw[0:m] (NULL:
    1). RESIDUAL_RUN rows at a time, an elementwise loop for each loss kind and weighting
    (residuals_of, which the compiler vectorizes), then the residuals, losses and weights
    summed in LANES partial sums, added in a fixed order into sums[0], sums[1 + SUM_LOSS]
    and sums[1 + SUM_W]. (A call per row cost more than the pass over X at d = 10.)"""
    cdef double r[LANES]
    cdef double a[LANES]
    cdef double w[LANES]
    cdef double losses[RESIDUAL_RUN]
    cdef double weights[RESIDUAL_RUN]
    cdef Py_ssize_t i = 0, l, run
    cdef const floating* no_sw = NULL
    for l in range(LANES):
        r[l] = 0.0
        a[l] = 0.0
        w[l] = 0.0
    while i < m:
        run = min(<Py_ssize_t>RESIDUAL_RUN, m - i)
        if sw == NULL:
            if loss.kind == SQUARED:
                residuals_of(SQUARED, 0.0, z + i, y + i, no_sw, run, losses, weights)
            elif loss.kind == HUBER:
                residuals_of(HUBER, loss.delta, z + i, y + i, no_sw, run, losses, weights)
            else:
                residuals_of(LOG, 0.0, z + i, y + i, no_sw, run, losses, weights)
        elif loss.kind == SQUARED:
            residuals_of(SQUARED, 0.0, z + i, y + i, sw + i, run, losses, weights)
        elif loss.kind == HUBER:
            residuals_of(HUBER, loss.delta, z + i, y + i, sw + i, run, losses, weights)
        else:
            residuals_of(LOG, 0.0, z + i, y + i, sw + i, run, losses, weights)
        add_lanes(r, z + i, run)
        add_lanes(a, losses, run)
        if sw == NULL:  # unit weights: their sum is exact in any order
            w[0] += run
        else:
            add_lanes(w, weights, run)
        i = i + run
    sums[0] += lanes_sum(r)
    sums[1 + SUM_LOSS] += lanes_sum(a)
    sums[1 + SUM_W] += lanes_sum(w)


cdef inline void residuals_of(LossKind kind, double delta, double* z, const floating* y,
                              const floating* sw, Py_ssize_t m, double* losses,
                              double* weights) noexcept nogil:
    """For one loss kind (a constant where it is inlined): z[i] becomes the residual of
    row i, losses[i] its weighted loss and weights[i] its weight (given sw), for i < m."""
    cdef Loss spec
    cdef double wi, dz
    cdef Py_ssize_t i
    spec.kind = kind
    spec.delta = delta
    spec.k = 1
    spec.ky = 1
    for i in range(m):
        wi = 1.0 if sw == NULL else <double>sw[i]
        losses[i] = wi * elementwise_loss(&spec, z[i], <double>y[i], &dz)
        z[i] = wi * dz
        if sw != NULL:
            weights[i] = wi


cdef inline void add_lanes(double* s, const double* a, Py_ssize_t m) noexcept nogil:
    """s[l] += a[j] for j = l mod LANES (a run's last few entries into s[0])."""
    cdef Py_ssize_t j = 0, l
    while j + LANES <= m:
        for l in range(LANES):
            s[l] += a[j + l]
        j = j + LANES
    while j < m:
        s[0] += a[j]
        j = j + 1


cdef inline void add_residuals(const double* z, Py_ssize_t k, Py_ssize_t rows,
                               Py_ssize_t stride, double* sums) noexcept nogil:
    """sums[o] += the residuals z[r stride + o] of `rows` rows, for each output o."""
    cdef Py_ssize_t o, q
    cdef double total
    for o in range(k):
        total = 0.0
        for q in range(rows):
            total += z[q * stride + o]
        sums[o] += total


cdef inline void predict_row(const floating* x, const double* params, Py_ssize_t d,
                             Py_ssize_t k, Py_ssize_t first, double* z) noexcept nogil:
    """z[o] = W[o] . x + b[o] for outputs o = first..k-1 of one row x (params = W row by
    row, then b). One output after the other: four at a time, sharing each load of x,
    measured 1.7 x slower for 10 classes."""
    cdef Py_ssize_t o
    for o in range(first, k):
        z[o] = dot1(x, params + o * d, d) + params[k * d + o]


# Two primitives make up both layouts' passes: X·w and Xᵀr swap roles between C and F order.

cdef inline double lanes_sum(const double* s) noexcept nogil:
    """The LANES (4) partial sums, added in a fixed order. More lanes measured slower."""
    return (s[0] + s[1]) + (s[2] + s[3])


cdef inline double dot1(const floating* a, const double* v, Py_ssize_t m) noexcept nogil:
    """a · v over m entries: four groups of LANES partial sums (four independent vector
    chains once vectorized: an FMA's latency is four cycles, and two units issue one each
    cycle), added in a fixed order."""
    cdef double s0[LANES]
    cdef double s1[LANES]
    cdef double s2[LANES]
    cdef double s3[LANES]
    cdef Py_ssize_t j = 0, l
    cdef double short = 0.0
    if floating is float:
        if FASTGD_AVX2 and m >= 4 * LANES:
            return fastgd_dot_f(a, v, m)
    if m < LANES:  # a few entries (narrow X): one sum, not 16 partial sums to set and add
        for j in range(m):
            short += a[j] * v[j]
        return short
    if m < 4 * LANES:  # narrow X: one group (the same sums as below, without the zeros)
        for l in range(LANES):
            s0[l] = a[l] * v[l]
        j = LANES
        while j + LANES <= m:
            for l in range(LANES):
                s0[l] += a[j + l] * v[j + l]
            j = j + LANES
        while j < m:
            short += a[j] * v[j]
            j = j + 1
        return lanes_sum(s0) + short
    for l in range(LANES):
        s0[l] = 0.0
        s1[l] = 0.0
        s2[l] = 0.0
        s3[l] = 0.0
    while j + 4 * LANES <= m:
        for l in range(LANES):
            s0[l] += a[j + l] * v[j + l]
        for l in range(LANES):
            s1[l] += a[j + LANES + l] * v[j + LANES + l]
        for l in range(LANES):
            s2[l] += a[j + 2 * LANES + l] * v[j + 2 * LANES + l]
        for l in range(LANES):
            s3[l] += a[j + 3 * LANES + l] * v[j + 3 * LANES + l]
        j = j + 4 * LANES
    while j + LANES <= m:
        for l in range(LANES):
            s0[l] += a[j + l] * v[j + l]
        j = j + LANES
    while j < m:
        s1[0] += a[j] * v[j]
        j = j + 1
    return (lanes_sum(s0) + lanes_sum(s1)) + (lanes_sum(s2) + lanes_sum(s3))


cdef enum:
    PREFETCH_SEGMENT = 256    # rows summed between requests for the next block's rows


cdef inline double dot1_prefetching(const floating* a, const double* v, Py_ssize_t m,
                                    const floating* ahead, Py_ssize_t m_ahead) noexcept nogil:
    """a · v, PREFETCH_SEGMENT rows at a time (the segments' dot1 added in order), while
    ahead[0:m_ahead] is requested into L2 a segment at a time (a burst of all the requests
    measured slower). The sum does not depend on m_ahead, which depends on where the
    thread goes on."""
    cdef Py_ssize_t i = 0, seg
    cdef double total = 0.0
    while i < m:
        seg = min(<Py_ssize_t>PREFETCH_SEGMENT, m - i)
        if i < m_ahead:
            prefetch_ahead(ahead + i, min(seg, m_ahead - i))
        total += dot1(a + i, v + i, seg)
        i = i + seg
    if i < m_ahead:  # the next block can be the longer one
        prefetch_ahead(ahead + i, m_ahead - i)
    return total


cdef inline double dot1_widen(const float* a, const double* v, Py_ssize_t m,
                              double* wide) noexcept nogil:
    """dot1 for float32 a, also storing a widened to float64 in `wide`."""
    cdef double s[LANES]
    cdef double t[LANES]
    cdef Py_ssize_t j = 0, l
    for l in range(LANES):
        s[l] = 0.0
        t[l] = 0.0
    while j + 2 * LANES <= m:
        for l in range(LANES):
            wide[j + l] = a[j + l]
            s[l] += wide[j + l] * v[j + l]
        for l in range(LANES):
            wide[j + LANES + l] = a[j + LANES + l]
            t[l] += wide[j + LANES + l] * v[j + LANES + l]
        j = j + 2 * LANES
    while j < m:
        wide[j] = a[j]
        s[0] += wide[j] * v[j]
        j = j + 1
    return lanes_sum(s) + lanes_sum(t)


# `out` of the axpy loops is declared restrict (it never overlaps their inputs): for
# float64 data both are double pointers, and without it the compiler must assume a store
# to out can change a0..a3, which kept the F-order loops from vectorizing (float64 F order
# ran 2 x slower than float32).
cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
        typedef double * __restrict__ fastgd_out;
    #elif defined(_MSC_VER)
        typedef double * __restrict fastgd_out;
    #else
        typedef double * fastgd_out;
    #endif
    """
    ctypedef double* fastgd_out


cdef inline void axpy1(const floating* a, double c, Py_ssize_t m, fastgd_out out) noexcept nogil:
    """out += c a over m entries."""
    cdef Py_ssize_t j
    for j in range(m):
        out[j] = out[j] + c * a[j]


cdef inline void set_axpy(const floating* a, Py_ssize_t lda, const double* c, Py_ssize_t count,
                          double b, Py_ssize_t m, fastgd_out out) noexcept nogil:
    """out = b + c[0] a + c[1] a[lda:] + ... over m entries, for count < 4 vectors lda
    apart: the columns left over by axpy4, summed while out is first written rather than
    in a read-modify-write of out each."""
    cdef Py_ssize_t j
    if count == 0:
        for j in range(m):
            out[j] = b
    elif count == 1:
        for j in range(m):
            out[j] = b + c[0] * a[j]
    elif count == 2:
        for j in range(m):
            out[j] = b + (c[0] * a[j] + c[1] * a[lda + j])
    else:
        for j in range(m):
            out[j] = b + ((c[0] * a[j] + c[1] * a[lda + j]) + c[2] * a[2 * lda + j])


cdef inline void axpy4(const floating* a0, const floating* a1, const floating* a2,
                       const floating* a3, double c0, double c1, double c2, double c3,
                       Py_ssize_t m, fastgd_out out) noexcept nogil:
    """out += c0 a0 + c1 a1 + c2 a2 + c3 a3: one read-modify-write of out for four vectors."""
    cdef Py_ssize_t j
    if floating is float:
        if FASTGD_AVX2:
            fastgd_axpy4_f(a0, a1, a2, a3, c0, c1, c2, c3, m, out)
            return
    for j in range(m):
        out[j] = out[j] + (((c0 * a0[j] + c1 * a1[j]) + c2 * a2[j]) + c3 * a3[j])


cdef inline void axpy8(const double* a, Py_ssize_t lda, Py_ssize_t d, const double* c,
                       Py_ssize_t cs, fastgd_out out) noexcept nogil:
    """out += c[0] a + c[cs] a[lda:] + ... + c[7 cs] a[7 lda:] over d entries."""
    cdef Py_ssize_t j
    cdef double c0 = c[0], c1 = c[cs], c2 = c[2 * cs], c3 = c[3 * cs]
    cdef double c4 = c[4 * cs], c5 = c[5 * cs], c6 = c[6 * cs], c7 = c[7 * cs]
    for j in range(d):
        out[j] = out[j] + ((((c0 * a[j] + c1 * a[lda + j]) + c2 * a[2 * lda + j])
                            + c3 * a[3 * lda + j]) + (((c4 * a[4 * lda + j]
                            + c5 * a[5 * lda + j]) + c6 * a[6 * lda + j]) + c7 * a[7 * lda + j]))


cdef void grad_chunk_rows(const floating* X, Py_ssize_t ld, Py_ssize_t d,
                          const floating* y, const floating* sw, const double* params,
                          const Loss* loss, Py_ssize_t start, Py_ssize_t stop, double* acc,
                          const Py_ssize_t* index, Py_ssize_t n_ahead,
                          double* work) noexcept nogil:
    """Rows [start, stop) of row-contiguous X: see rows_sums. A single output gets its own
    copy of the loop, with k = 1 known to the compiler (measured: 10 % faster at batch 32)."""
    if loss.k == 1:
        rows_sums(X, ld, d, y, sw, params, loss, 1, start, stop, acc, index, n_ahead, work)
    else:
        rows_sums(X, ld, d, y, sw, params, loss, loss.k, start, stop, acc, index, n_ahead,
                  work)


cdef inline void rows_sums(const floating* X, Py_ssize_t ld, Py_ssize_t d,
                           const floating* y, const floating* sw, const double* params,
                           const Loss* loss, Py_ssize_t k, Py_ssize_t start, Py_ssize_t stop,
                           double* acc, const Py_ssize_t* index, Py_ssize_t n_ahead,
                           double* work) noexcept nogil:
    """Rows [start, stop) of row-contiguous X (rows index[start..stop-1] with an index), a
    group of rows at a time (group_rows): their predictions, one row after the other (one
    stream the prefetcher can follow: reading four rows in lockstep measured 3 x slower
    out of cache), their residuals (for one output, in a loop the compiler vectorizes:
    run_residuals), then their share of the gradient while the rows are still in L1, with
    one read-modify-write of it per output for each four rows (eight widened float32 rows
    in the portable build).
    Narrow rows of one output in the AVX2 build (NARROW_ROWS entries at most): four dot
    products at once, and the group's gradient summed in registers (fastgd/_simd.h).

    Before a group of rows i.. is summed, rows i + PREFETCH_AHEAD.. (through the index, if
    any) below n_ahead are requested into L2: the hardware prefetcher alone left the
    stream stalled at every update of a mini-batch epoch, and cannot guess scattered rows
    at all (those are also moved into L1, PREFETCH_L1_AHEAD rows ahead). Into L1 directly,
    the requests stalled on its few miss buffers.

    `work` is the calling thread's (work_size): room to widen a group of float32 rows to
    float64 once, during their first dot product, then the group's predictions. Only the
    portable build stores the widened rows (widening each element twice cost more than
    the whole float32 stream saves); the AVX2 build's loops widen each float as they read
    it, twice, which measured 1.2 x faster at 100 features and 1.6 x at 1000."""
    cdef Py_ssize_t nw = k * d, g_max = group_rows(d), dw = wide_width(d)
    cdef double* sums = acc + nw
    cdef double* wide = work                     # float32 rows widened, dw doubles apart
    cdef double* z = work + g_max * dw           # z[q k + o]: output o of row q of the group
    cdef bint rows4 = FASTGD_AVX2 and k == 1 and d <= NARROW_ROWS
    cdef const floating* x[GROUP_ROWS]
    cdef Py_ssize_t r[GROUP_ROWS]
    cdef floating y_at[GROUP_ROWS]               # one output's targets and weights of
    cdef floating sw_at[GROUP_ROWS]              # rows read through an index
    cdef Py_ssize_t i = start, g, q, o
    cdef double loss_sum = 0.0, weight_sum = 0.0
    while i < stop:
        if i + 4 > stop:  # the last rows, one at a time
            r[0] = i if index == NULL else index[i]
            x[0] = X + r[0] * ld
            predict_row(x[0], params, d, k, 0, z)
            row_residuals(loss, k, z, y, sw, r[0], &loss_sum, &weight_sum)
            add_residuals(z, k, 1, k, sums)
            for o in range(k):
                axpy1(x[0], z[o], d, acc + o * d)
            i = i + 1
            continue
        g = min(g_max, (stop - i) // 4 * 4)
        for q in range(g if i + PREFETCH_L1_AHEAD < n_ahead else 0):
            # all the group's requests first: interleaved with the dot products, shuffled
            # epochs measured 1.1-1.2 x slower
            if i + q + PREFETCH_AHEAD < n_ahead:
                prefetch_rows(X, ld, d, y, loss.ky, sw, i + q + PREFETCH_AHEAD if index == NULL
                              else index[i + q + PREFETCH_AHEAD])
            if index != NULL and i + q + PREFETCH_L1_AHEAD < n_ahead:
                prefetch_l1(X + index[i + q + PREFETCH_L1_AHEAD] * ld, d)
        for q in range(g):
            r[q] = i + q if index == NULL else index[i + q]
            x[q] = X + r[q] * ld
        for q in range(0 if rows4 else g):
            if floating is float and not FASTGD_AVX2:
                z[q * k] = dot1_widen(x[q], params, d, wide + q * dw) + params[nw]
                if k > 1:  # the other outputs from the widened row
                    predict_row[double](wide + q * dw, params, d, k, 1, z + q * k)
            else:
                predict_row(x[q], params, d, k, 0, z + q * k)
        if rows4:  # narrow rows: four dot products at once
            for q in range(0, g, 4):
                if floating is float:
                    fastgd_rows4_f(x[q], x[q + 1], x[q + 2], x[q + 3], params, d, params[nw],
                                   z + q)
                else:
                    fastgd_rows4_d(x[q], x[q + 1], x[q + 2], x[q + 3], params, d, params[nw],
                                   z + q)
        if k == 1 and index == NULL:
            run_residuals(loss, z, y + i, NULL if sw == NULL else sw + i, g, sums)
        elif k == 1:
            for q in range(g):
                y_at[q] = y[r[q]]
                sw_at[q] = 1 if sw == NULL else sw[r[q]]
            run_residuals(loss, z, y_at, NULL if sw == NULL else sw_at, g, sums)
        else:
            for q in range(g):
                row_residuals(loss, k, z + q * k, y, sw, r[q], &loss_sum, &weight_sum)
            add_residuals(z, k, g, k, sums)
        if rows4:
            if floating is float:
                fastgd_rows_axpy_f(x, z, g, d, acc)
            else:
                fastgd_rows_axpy_d(x, z, g, d, acc)
            i = i + g
            continue
        q = 0
        if floating is float and not FASTGD_AVX2:  # eight widened rows to each update of
            while q + 8 <= g:  # the sums (compute-bound: 1.1-1.15 x faster than four)
                for o in range(k):
                    axpy8(wide + q * dw, dw, d, z + q * k + o, k, acc + o * d)
                q = q + 8
        for q in range(q, g, 4):
            for o in range(k):
                if floating is float and not FASTGD_AVX2:
                    axpy4[double](wide + q * dw, wide + (q + 1) * dw, wide + (q + 2) * dw,
                                  wide + (q + 3) * dw, z[q * k + o], z[(q + 1) * k + o],
                                  z[(q + 2) * k + o], z[(q + 3) * k + o], d, acc + o * d)
                else:
                    axpy4(x[q], x[q + 1], x[q + 2], x[q + 3], z[q * k + o],
                          z[(q + 1) * k + o], z[(q + 2) * k + o], z[(q + 3) * k + o], d,
                          acc + o * d)
        i = i + g
    sums[k + SUM_LOSS] += loss_sum
    sums[k + SUM_W] += weight_sum


cdef void grad_chunk_cols(const floating* X, Py_ssize_t ld, Py_ssize_t d,
                          const floating* y, const floating* sw, const double* params,
                          const Loss* loss, Py_ssize_t start, Py_ssize_t stop,
                          Py_ssize_t ahead_stop, double* acc, double* work) noexcept nogil:
    """Rows [start, stop) of column-contiguous X: see cols_sums; a single output gets
    its own copy of the loop, as in grad_chunk_rows (measured 1.5 x faster at d = 3)."""
    if loss.k == 1:
        cols_sums(X, ld, d, y, sw, params, loss, 1, start, stop, ahead_stop, acc, work)
    else:
        cols_sums(X, ld, d, y, sw, params, loss, loss.k, start, stop, ahead_stop, acc, work)


cdef inline void cols_sums(const floating* X, Py_ssize_t ld, Py_ssize_t d,
                           const floating* y, const floating* sw, const double* params,
                           const Loss* loss, Py_ssize_t k, Py_ssize_t start, Py_ssize_t stop,
                           Py_ssize_t ahead_stop, double* acc, double* work) noexcept nogil:
    """Rows [start, stop) of column-contiguous X, a block of rows at a time (col_block_rows):
    the block is read from memory for the predictions, four columns to each pass over
    them, and again from cache for the gradient, a column at a time; meanwhile the next
    block is requested into L2 (the hardware prefetcher restarts on every short run of a
    column: 1.2-1.3 x faster with the requests at 100 features), up to row ahead_stop
    (stop, or further where the thread goes on with the next chunk). `work` (work_size)
    holds the block's predictions, output by output, and one row's."""
    cdef Py_ssize_t nw = k * d
    cdef double* sums = acc + nw
    cdef Py_ssize_t m_max = col_block_rows(d, k, sizeof(floating))
    cdef double* z = work                   # z[o m_max + i]: output o of row i of the block
    cdef double* row = z + m_max * k        # one row's outputs
    cdef Py_ssize_t i0 = start, m, m_next, i, j, o
    cdef const floating* col
    cdef const double* w
    cdef double* zo
    cdef double loss_sum = 0.0, weight_sum = 0.0
    while i0 < stop:
        m = min(m_max, stop - i0)
        m_next = min(m_max, ahead_stop - i0 - m)
        for o in range(k):
            w = params + o * d
            zo = z + o * m_max
            j = d % 4
            set_axpy(X + i0, ld, w, j, params[nw + o], m, zo)
            while j < d:
                col = X + j * ld + i0
                axpy4(col, col + ld, col + 2 * ld, col + 3 * ld,
                      w[j], w[j + 1], w[j + 2], w[j + 3], m, zo)
                j = j + 4
        if k == 1:
            run_residuals(loss, z, y + i0, NULL if sw == NULL else sw + i0, m, sums)
        else:
            for i in range(m):
                for o in range(k):
                    row[o] = z[o * m_max + i]
                row_residuals(loss, k, row, y, sw, i0 + i, &loss_sum, &weight_sum)
                for o in range(k):
                    z[o * m_max + i] = row[o]
            for o in range(k):
                add_residuals(z + o * m_max, 1, m, 1, sums + o)
        for o in range(k):
            zo = z + o * m_max
            for j in range(d):  # a column at a time (four columns sharing each load of z
                col = X + j * ld + i0  # compiled to shuffles or scalar code: 1.5-1.8 x slower)
                acc[o * d + j] += dot1_prefetching(col, zo, m, col + m,
                                                   m_next if o == 0 else 0)
        i0 = i0 + m
    sums[k + SUM_LOSS] += loss_sum
    sums[k + SUM_W] += weight_sum


cdef void range_sums(const floating* X, Layout lay, Py_ssize_t d, const floating* y,
                     const floating* sw, const double* params, const Loss* loss,
                     const Order* order, Py_ssize_t n, int n_threads, double* partial,
                     floating* scratch, double* work, double* out) noexcept nogil:
    """Gradient sums of n positions (rows, or an order's) into out[0 : sums_width]; the
    sums do not depend on which thread ran a chunk. X read in place goes to the threads in
    whole runs of chunks, each thread streaming its own part of X (column-contiguous X:
    its requests for the next block go on into its next chunk, see chunk_run; C order on
    two threads took 0.82-1.0 x the time of chunks handed out as threads free up, which
    is how rows through an order still go). F-ordered X with an order gathers rows
    through `scratch` (a block per thread, see chunk_sums); `work` is
    whole_lines(work_size) doubles a thread. Both hold room for min(n_threads, max_chunks)
    threads."""
    cdef Py_ssize_t k = loss.k, n_chunks
    cdef bint by_columns = not lay.rows and order == NULL
    cdef Py_ssize_t rows = chunk_rows(n, d, k, by_columns)
    n_chunks = (n + rows - 1) // rows
    cdef Py_ssize_t width = sums_width(d, k), c, start
    cdef int threads = <int>min(n_threads, n_chunks), tid, team
    if threads < 2 or n * d * k < PARALLEL_MIN_ELEMS:
        chunk_run(X, lay, d, y, sw, params, loss, order, n, rows, 0, n_chunks, partial,
                  scratch, work)
    elif order == NULL:  # X in place
        with parallel(num_threads=threads):
            tid = omp_get_thread_num()
            team = omp_get_num_threads()
            chunk_run(X, lay, d, y, sw, params, loss, NULL, n, rows,
                      first_chunk(n_chunks, tid, team), first_chunk(n_chunks, tid + 1, team),
                      partial, NULL, work + tid * whole_lines(work_size(d, k)))
    else:
        for c in prange(n_chunks, num_threads=threads, schedule="dynamic"):
            start = c * rows
            chunk_sums(X, lay, d, y, sw, params, loss, order, start, min(start + rows, n), -1,
                       partial + c * whole_lines(width),
                       scratch + omp_get_thread_num() * scratch_size(d, loss.ky)
                       if scratch else NULL,
                       work + omp_get_thread_num() * whole_lines(work_size(d, k)))
    add_chunks(partial, n_chunks, width, out)


cdef void chunk_run(const floating* X, Layout lay, Py_ssize_t d, const floating* y,
                    const floating* sw, const double* params, const Loss* loss,
                    const Order* order, Py_ssize_t n, Py_ssize_t rows, Py_ssize_t first,
                    Py_ssize_t last, double* partial, floating* scratch,
                    double* work) noexcept nogil:
    """Chunks first..last-1 of `rows` positions, in order on this thread. Column-contiguous
    X read in place goes on from one chunk to the next: each chunk's last block requests
    the first of the next (a chunk of 300k x 100 has two blocks, and half of them had
    started cold: 1.1-1.35 x slower on one thread). Rows do not (in a full pass the
    hardware prefetcher keeps up: see chunk_sums)."""
    cdef Py_ssize_t c, start, stop
    cdef Py_ssize_t stride = whole_lines(sums_width(d, loss.k))
    cdef bint goes_on = not lay.rows and order == NULL
    for c in range(first, last):
        start = c * rows
        stop = min(start + rows, n)
        chunk_sums(X, lay, d, y, sw, params, loss, order, start, stop,
                   stop if goes_on and c + 1 < last else -1, partial + c * stride, scratch,
                   work)


cdef inline void add_chunks(const double* partial, Py_ssize_t n_chunks, Py_ssize_t width,
                            double* out) noexcept nogil:
    """out = the chunks' partial sums (rows whole_lines(width) apart: a thread summing a
    chunk writes no cache line of another's) added in chunk order: the same bits for any
    number of threads."""
    cdef Py_ssize_t c, j, stride = whole_lines(width)
    memcpy(out, partial, width * sizeof(double))
    for c in range(1, n_chunks):
        for j in range(width):
            out[j] += partial[c * stride + j]


cdef inline Py_ssize_t continue_at(Py_ssize_t position, Py_ssize_t stop,
                                   Py_ssize_t next_start) noexcept nogil:
    """Where a thread's sequence of positions goes on: past `stop`, from `next_start`."""
    return position if position < stop else next_start + (position - stop)


cdef void chunk_sums(const floating* X, Layout lay, Py_ssize_t d, const floating* y,
                     const floating* sw, const double* params, const Loss* loss,
                     const Order* order, Py_ssize_t start, Py_ssize_t stop,
                     Py_ssize_t next_start, double* acc, floating* scratch,
                     double* work) noexcept nogil:
    """Gradient sums of positions [start, stop) into acc[0 : sums_width] (zeroed first).

    With an `order`, position p reads row row_at(order, p), SCRATCH_ROWS rows at a time,
    and the rows PREFETCH_AHEAD positions ahead are requested from memory meanwhile;
    past `stop` that means this thread's next positions, from `next_start` (-1: none), so
    the next chunk does not start cold. F-ordered X gathers the rows through `scratch`
    (SCRATCH_ROWS rows of X, y and sample_weight; NULL for C order, whose rows are summed
    where they are).
    """
    cdef Py_ssize_t i, q, m, ahead, j, p, ky = loss.ky
    cdef Py_ssize_t index[SCRATCH_ROWS + PREFETCH_AHEAD]
    cdef floating* xs
    cdef floating* ys
    cdef floating* ws
    memset(acc, 0, sums_width(d, loss.k) * sizeof(double))
    if order == NULL:
        if lay.rows:  # prefetched only where the thread goes on from stop (a mini-batch
                      # epoch on one thread): in a full pass the hardware prefetcher keeps
                      # up, and float32 passes measured 1.5 x slower with the requests
            grad_chunk_rows(X, lay.ld, d, y, sw, params, loss, start, stop, acc, NULL,
                            min(stop + PREFETCH_AHEAD, lay.n) if next_start == stop else 0,
                            work)
        else:
            grad_chunk_cols(X, lay.ld, d, y, sw, params, loss, start, stop,
                            lay.n if next_start == stop else stop, acc, work)
        return
    xs = scratch
    ys = xs + SCRATCH_ROWS * d
    ws = ys + SCRATCH_ROWS * ky
    i = start
    while i < stop:
        m = min(<Py_ssize_t>SCRATCH_ROWS, stop - i)
        ahead = m
        for q in range(m + (PREFETCH_AHEAD if lay.rows else 0)):  # F order: no prefetch
            p = continue_at(i + q, stop, next_start)
            if p < 0 or p >= order.n:
                break
            index[q] = row_at(order, p)
            ahead = q + 1
        if lay.rows:  # sum the rows where they are
            grad_chunk_rows(X, lay.ld, d, y, sw, params, loss, 0, m, acc, index, ahead, work)
        else:  # F order: gather the rows into scratch first
            for q in range(m):
                for j in range(d):
                    xs[q * d + j] = X[index[q] + j * lay.ld]
                for j in range(ky):
                    ys[q * ky + j] = y[index[q] * ky + j]
                if sw != NULL:
                    ws[q] = sw[index[q]]
            grad_chunk_rows(xs, d, d, ys, ws if sw != NULL else NULL, params, loss, 0, m,
                            acc, NULL, 0, work)
        i = i + m


def grad_pass(const floating[:, :] X, const floating[:, ::1] Y,
              const floating[::1] sample_weight, const double[:, ::1] coef,
              const double[::1] intercept, loss, int n_threads,
              const Py_ssize_t[::1] rows=None):
    """Mean loss, its gradient in coef and in intercept, in one pass over X (over X[rows]
    only, given row indices: read in place, not copied), for a model of k outputs:
    coef (k, d), intercept (k,), Y (n, k) or, for the multinomial loss, (n, 1).

    Returns (loss, grad_coef (k, d), grad_intercept (k,)), all means weighted by
    sample_weight.
    """
    cdef Py_ssize_t d = X.shape[1], k = coef.shape[0]
    if coef.shape[1] != d or intercept.shape[0] != k:
        raise ValueError(f"coef must have shape ({k}, {d}) and intercept ({k},)")
    cdef Layout lay = layout_of(X)
    cdef Loss spec = loss_of(loss, k, X, Y, sample_weight)
    cdef Order order = make_order(None, rows, X.shape[0])
    cdef const Order* order_ptr = NULL if rows is None else &order
    cdef Py_ssize_t width = sums_width(d, k)
    cdef double[::1] params = np.append(coef, intercept)
    # each chunk zeroes its own partial sums: at 5k x 1000 zeroing all 2 MB of them in
    # advance took a tenth of the pass
    cdef double[:, ::1] partial = aligned_array((max_chunks(d, k), whole_lines(width)),
                                                np.empty)
    cdef double[::1] total = np.empty(width)
    cdef const floating* swp = sample_weight_ptr(sample_weight)
    cdef Py_ssize_t threads = min(max(n_threads, 1), max_chunks(d, k))
    cdef floating[::1] scratch = None
    cdef floating* scratch_ptr = NULL
    if rows is not None and not lay.rows:  # F order gathers the rows: a block per thread
        scratch = np.empty(threads * scratch_size(d, spec.ky),
                           dtype=np.float32 if floating is float else np.float64)
        scratch_ptr = &scratch[0]
    cdef double[::1] work = aligned_array(threads * whole_lines(work_size(d, k)))
    if order.n == 0:
        raise ValueError("no rows to sum")
    with nogil:
        range_sums(&X[0, 0], lay, d, &Y[0, 0], swp, &params[0], &spec, order_ptr,
                   order.n, n_threads, &partial[0, 0], scratch_ptr, &work[0], &total[0])
    sums = np.asarray(total)
    nw = k * d
    weight = sums[nw + k + SUM_W]
    return (sums[nw + k + SUM_LOSS] / weight, sums[:nw].reshape(k, d) / weight,
            sums[nw:nw + k] / weight)


cdef const floating* sample_weight_ptr(const floating[::1] sample_weight) noexcept:
    return NULL if sample_weight is None else &sample_weight[0]


cdef inline void to_original(const double* theta, const double* mean, const double* inv_scale,
                             Py_ssize_t d, Py_ssize_t k, double* params) noexcept nogil:
    """Trained parameters (W_s, b_s) in original units into `params`: W = W_s / scale (per
    column), b = b_s - W mean (a copy of theta without standardization, mean = NULL)."""
    cdef Py_ssize_t j, o
    if mean == NULL:
        memcpy(params, theta, k * (d + 1) * sizeof(double))
        return
    for o in range(k):
        for j in range(d):
            params[o * d + j] = theta[o * d + j] * inv_scale[j]
        params[k * d + o] = theta[k * d + o] - dot1[double](mean, params + o * d, d)


OPTIMIZERS = {"sgd": SGD, "momentum": MOMENTUM, "nesterov": NESTEROV, "adagrad": ADAGRAD,
              "rmsprop": RMSPROP, "adam": ADAM, "adamw": ADAMW}


cdef struct Epoch:
    # What every thread of an epoch reads (set up by run_epoch)
    Py_ssize_t n, d, batch_size
    Layout lay
    Loss loss
    const Order* order         # NULL: positions are rows
    OptimConfig config
    double l2, l1, max_norm, learning_rate
    long step                  # updates made before this epoch
    const double* mean         # NULL: no standardization
    const double* inv_scale
    Py_ssize_t max_chunks      # chunks of a batch at most (the first or the last batch)
    double* partial            # 2 x max_chunks rows of partial sums (whole_lines(width) apart):
                               # batches alternate halves
    unsigned* arrived          # the batch each thread has summed (fastgd_team_wait)
    long long* solo            # votes to go on on one thread, by batch parity (epoch_worker)
    # What the epoch did (written by thread 0)
    double loss_total, weight_total
    long steps


cdef inline Py_ssize_t batch_chunks(Py_ssize_t lo, Py_ssize_t n, Py_ssize_t batch_size,
                                    Py_ssize_t d, Py_ssize_t k, bint by_columns,
                                    Py_ssize_t* rows) noexcept nogil:
    """Chunks of the batch starting at position lo (rows per chunk into `rows`)."""
    cdef Py_ssize_t size = min(batch_size, n - lo)
    rows[0] = chunk_rows(size, d, k, by_columns)
    return (size + rows[0] - 1) // rows[0]


cdef inline Py_ssize_t first_chunk(Py_ssize_t n_chunks, int tid, int n_team) noexcept nogil:
    """Thread tid's share of a batch: chunks first_chunk(tid) to first_chunk(tid + 1) - 1,
    whole runs of positions (in order, a thread's rows are one stream for the prefetcher)."""
    return tid * n_chunks // n_team


cdef inline Py_ssize_t thread_start(Py_ssize_t lo, Py_ssize_t n, Py_ssize_t batch_size,
                                    Py_ssize_t d, Py_ssize_t k, bint by_columns, int tid,
                                    int n_team) noexcept nogil:
    """Thread tid's first position in the batch starting at lo (-1: none)."""
    cdef Py_ssize_t rows, n_chunks
    if lo >= n:
        return -1
    n_chunks = batch_chunks(lo, n, batch_size, d, k, by_columns, &rows)
    if first_chunk(n_chunks, tid, n_team) == first_chunk(n_chunks, tid + 1, n_team):
        return -1
    return lo + first_chunk(n_chunks, tid, n_team) * rows


cdef void epoch_worker(const floating* X, const floating* y, const floating* sw,
                       floating* scratch, Epoch* e, double* own, int tid,
                       int n_team) noexcept nogil:
    """Thread `tid` of `n_team` running a whole epoch.

    Each batch's chunks are shared out in runs (first_chunk). After a barrier
    (fastgd_team_wait), every thread adds all the partial sums in chunk order and makes the
    same update to its own copy of the parameters, `own` = (theta, m, v, params, grad,
    sums, and its workspace for the passes): bit-identical copies for the price of one
    barrier per batch. Consecutive batches put their partial sums in alternate halves of
    e.partial, so a thread that has updated can fill in the next batch while the others
    still read this one.

    A barrier per batch is only cheap while every thread has a core. When the cores are
    shared with other work, a thread waits a whole time slice for a partner that is not
    running, at every batch (measured: 13-40 x slower than one thread). So a thread whose
    waits were long LONG_WAITS_TO_SOLO times, and at 1 % of the barriers or more, votes, and
    at the next barrier every thread reads the vote and thread 0 goes on alone: the chunks,
    and so the result, stay the same. (Three long waits were enough at first: on this VM
    that dissolved the team in about half of the uncontended epochs.)
    Votes are written for barrier k + 1 into the other parity's slot of e.solo than the
    one read at barrier k, so all threads read the same value.
    """
    cdef Py_ssize_t n = e.n, d = e.d, k = e.loss.k, nw = e.loss.k * e.d
    cdef Py_ssize_t n_params = nw + k, width = sums_width(d, k), slot = whole_lines(width)
    cdef bint by_columns = not e.lay.rows and e.order == NULL
    cdef double* theta = own
    cdef double* m = own + slot
    cdef double* v = own + 2 * slot
    cdef double* params = own + 3 * slot     # the parameters in original units, per batch
    cdef double* grad = own + 4 * slot
    cdef double* sums = own + 5 * slot
    cdef double* work = own + 6 * slot       # the passes' workspace (work_size)
    cdef const double* mu = e.mean
    cdef const double* inv_sd = e.inv_scale
    cdef double* partial
    cdef floating* my_scratch = (NULL if scratch == NULL
                                 else scratch + tid * scratch_size(d, e.loss.ky))
    cdef Py_ssize_t lo = 0, hi, rows, n_chunks, first, last, c, start, stop, next_start, j, o
    cdef long batch = 0, steps = 0, long_waits = 0
    cdef double weight, loss_total = 0.0, weight_total = 0.0
    cdef double beta1_t = pow(e.config.beta1, e.step), beta2_t = pow(e.config.beta2, e.step)
    while lo < n:
        hi = min(lo + e.batch_size, n)
        n_chunks = batch_chunks(lo, n, e.batch_size, d, k, by_columns, &rows)
        partial = e.partial + (batch % 2) * e.max_chunks * slot
        batch += 1
        to_original(theta, mu, inv_sd, d, k, params)
        first = first_chunk(n_chunks, tid, n_team)
        last = first_chunk(n_chunks, tid + 1, n_team)
        for c in range(first, last):
            start = lo + c * rows
            stop = min(start + rows, hi)
            if c + 1 < last:
                next_start = stop
            else:  # this thread's first position in the next batch (for prefetching)
                next_start = thread_start(hi, n, e.batch_size, d, k, by_columns, tid, n_team)
            chunk_sums(X, e.lay, d, y, sw, params, &e.loss, e.order, start, stop, next_start,
                       partial + c * slot, my_scratch, work)
        if n_team > 1:
            if fastgd_team_wait(e.arrived, n_team, tid, <unsigned>batch):
                long_waits += 1
                if long_waits >= LONG_WAITS_TO_SOLO and long_waits * 100 >= batch:  # a vote
                    # for after the next barrier
                    e.solo[(batch + 1) % 2 * FASTGD_LINE] = 1
            if e.solo[batch % 2 * FASTGD_LINE]:  # every thread reads the same vote here
                if tid != 0:
                    break
                n_team = 1
        add_chunks(partial, n_chunks, width, sums)
        lo = hi
        weight = sums[n_params + SUM_W]
        if weight == 0.0:
            continue  # zero-weight rows carry no gradient
        loss_total += sums[n_params + SUM_LOSS]
        weight_total += weight
        if not isfinite(sums[n_params + SUM_LOSS]):
            break
        # Gradient in the trained parameters: (X^T r - mean sum r) / scale, and sum r.
        for o in range(k):
            grad[nw + o] = sums[nw + o] / weight
            for j in range(d):
                grad[o * d + j] = sums[o * d + j] / weight
                if mu != NULL:
                    grad[o * d + j] = (grad[o * d + j] - mu[j] * grad[nw + o]) * inv_sd[j]
        steps += 1
        if e.l2 > 0.0:
            add_l2(grad, theta, nw, e.l2)
        if e.max_norm > 0.0:
            clip_norm(grad, n_params, e.max_norm)
        beta1_t *= e.config.beta1
        beta2_t *= e.config.beta2
        optim_step(&e.config, theta, grad, m, v, n_params, nw, beta1_t, beta2_t,
                   e.learning_rate)
        if e.l1 > 0.0:
            prox_l1(&e.config, theta, v, nw, e.learning_rate, e.l1, beta2_t)
    if tid == 0:
        e.loss_total = loss_total
        e.weight_total = weight_total
        e.steps = steps


def run_epoch(const floating[:, :] X, const floating[:, ::1] Y,
              const floating[::1] sample_weight, double[::1] theta, double[::1] m,
              double[::1] v, long step, const double[::1] mean, const double[::1] scale,
              str optimizer, dict hyper, double learning_rate, Py_ssize_t batch_size,
              tuple shuffle_keys, loss, int n_threads, const Py_ssize_t[::1] rows=None):
    """One epoch, every batch in one nogil call: forward pass, loss, gradient, update.

    theta = (W, b) are the trained parameters of a model of k outputs (k (d + 1) values:
    W (k, d) row by row, then b; acting on standardized features when mean and scale are
    given); theta, m and v (the optimizer state) are updated in place; `step` is the number
    of updates made before this epoch. Y is (n, k), or (n, 1) class indices for the
    multinomial loss. Batches are consecutive positions, the last one partial; with
    shuffle_keys (three 64-bit keys, new each epoch) position p reads row shuffled_row(p);
    with `rows`, only those rows are trained on (positions index them; see Order). A batch
    with a non-finite loss stops the epoch before its update. The threads work through the
    epoch together (see epoch_worker).

    Returns (sum of w_i * loss_i over the batches run, sum of their weights, updates made).
    """
    cdef Py_ssize_t d = X.shape[1], k = theta.shape[0] // (d + 1), n_params = theta.shape[0]
    if n_params != k * (d + 1) or m.shape[0] != n_params or v.shape[0] != n_params:
        raise ValueError(f"theta, m and v must have k ({d} + 1) entries for {d} features")
    if mean is not None and (mean.shape[0] != d or scale is None or scale.shape[0] != d):
        raise ValueError(f"mean and scale must have {d} entries")
    cdef Py_ssize_t width = sums_width(d, k)
    cdef Epoch e
    cdef Order order = make_order(shuffle_keys, rows, X.shape[0])
    cdef Py_ssize_t n = order.n, chunk
    if n == 0:
        raise ValueError("no rows to train on")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    e.n = n
    e.d = d
    e.batch_size = batch_size
    e.lay = layout_of(X)
    e.loss = loss_of(loss, k, X, Y, sample_weight)
    e.config.kind = OPTIMIZERS[optimizer]
    e.config.momentum = hyper["momentum"]
    e.config.beta1 = hyper["beta1"]
    e.config.beta2 = hyper["beta2"]
    e.config.rho = hyper["rho"]
    e.config.eps = hyper["eps"]
    e.config.weight_decay = hyper["weight_decay"]
    e.l2 = hyper["l2"]
    e.l1 = hyper["l1"]
    e.max_norm = hyper["clip_norm"]
    e.learning_rate = learning_rate
    e.step = step
    e.order = NULL if shuffle_keys is None and rows is None else &order
    # Threads share each batch when its rows are scattered (shuffled: each thread keeps its
    # own rows in flight) or when it is large; a small batch in order runs fastest on one
    # (measured, batch 32 and 256 at d = 100: two threads 1.1-1.3 x slower).
    # Full batches all have the same chunks, but the last partial batch can have more:
    # chunk_rows caps the chunk count, so smaller batches can get smaller chunks.
    cdef bint by_columns = not e.lay.rows and e.order == NULL
    e.max_chunks = max(batch_chunks(0, n, batch_size, d, k, by_columns, &chunk),
                       batch_chunks((n - 1) // batch_size * batch_size, n, batch_size, d, k,
                                    by_columns, &chunk))
    cdef int threads = <int>min(max(n_threads, 1), e.max_chunks)
    if not order.shuffled and min(batch_size, n) * d * k < PARALLEL_MIN_ELEMS:
        threads = 1
    cdef floating[::1] scratch = None
    cdef floating* scratch_ptr = NULL
    if e.order != NULL and not e.lay.rows:  # F order gathers ordered rows: a block each
        scratch = np.empty(threads * scratch_size(d, e.loss.ky),
                           dtype=np.float32 if floating is float else np.float64)
        scratch_ptr = &scratch[0]
    cdef double[:, :, ::1] partial = aligned_array((2, e.max_chunks, whole_lines(width)))
    e.partial = &partial[0, 0, 0]
    cdef unsigned[:, ::1] arrived = np.zeros((threads, FASTGD_LINE), dtype=np.uintc)
    cdef long long[:, ::1] solo = np.zeros((2, FASTGD_LINE), dtype=np.longlong)
    e.arrived = &arrived[0, 0]
    e.solo = &solo[0, 0]
    # Multiplying by 1/scale: a division per entry and batch cost more than the batch itself.
    cdef double[::1] inv_scale = None if scale is None else 1.0 / np.asarray(scale)
    e.mean = NULL if mean is None else &mean[0]
    e.inv_scale = NULL if scale is None else &inv_scale[0]
    # Each thread's parameters, optimizer state and per-batch buffers (6 slots of `width`),
    # and its workspace, each starting a cache line.
    cdef Py_ssize_t slot = whole_lines(width)
    cdef Py_ssize_t own_size = 6 * slot + whole_lines(work_size(d, k))
    cdef double[:, ::1] own = aligned_array((threads, own_size))
    for j, state in enumerate((theta, m, v)):
        own.base[:, j * slot:j * slot + n_params] = state
    cdef double* own_ptr = &own[0, 0]
    cdef const floating* Xp = &X[0, 0]
    cdef const floating* yp = &Y[0, 0]
    cdef const floating* swp = sample_weight_ptr(sample_weight)
    cdef int tid
    with nogil:
        if threads > 1:
            with parallel(num_threads=threads):
                tid = omp_get_thread_num()
                epoch_worker(Xp, yp, swp, scratch_ptr, &e, own_ptr + tid * own_size, tid,
                             omp_get_num_threads())
        else:
            epoch_worker(Xp, yp, swp, scratch_ptr, &e, own_ptr, 0, 1)
    theta[:] = own[0, :n_params]
    m[:] = own[0, slot:slot + n_params]
    v[:] = own[0, 2 * slot:2 * slot + n_params]
    return e.loss_total, e.weight_total, e.steps


# Running statistics are kept as [W, mean (d), m2 (d)]: the weight sum, the weighted mean
# and the weighted sum of squared deviations from it.

cdef void combine_stats(double* acc, const double* part, Py_ssize_t d) noexcept nogil:
    """Chan et al.'s pairwise update: merge the statistics `part` into `acc`."""
    cdef Py_ssize_t j
    cdef double Wa = acc[0], Wb = part[0], total, delta
    cdef double* mean = acc + 1
    cdef double* m2 = acc + 1 + d
    if Wb == 0.0:
        return
    total = Wa + Wb
    for j in range(d):
        delta = part[1 + j] - mean[j]
        mean[j] = mean[j] + delta * (Wb / total)
        m2[j] = m2[j] + part[1 + d + j] + delta * delta * (Wa * Wb / total)
    acc[0] = total


cdef void stats_block(const floating* X, Layout lay, Py_ssize_t d, const floating* sw,
                      Py_ssize_t i0, Py_ssize_t m, double* out) noexcept nogil:
    """Statistics of rows [i0, i0+m) into `out`, in two passes over the block (in cache)."""
    cdef Py_ssize_t i, j
    cdef double wi, diff, W = 0.0
    cdef double* mean = out + 1
    cdef double* m2 = out + 1 + d
    cdef const floating* x
    memset(out, 0, (1 + 2 * d) * sizeof(double))
    for i in range(i0, i0 + m):
        wi = 1.0 if sw == NULL else <double>sw[i]
        W += wi
        x = X + i * lay.rs
        for j in range(d):
            mean[j] += wi * x[j * lay.cs]
    out[0] = W
    if W == 0.0:
        return
    for j in range(d):
        mean[j] /= W
    for i in range(i0, i0 + m):
        wi = 1.0 if sw == NULL else <double>sw[i]
        x = X + i * lay.rs
        for j in range(d):
            diff = x[j * lay.cs] - mean[j]
            m2[j] += wi * diff * diff


def column_stats(const floating[:, :] X, const floating[::1] sample_weight, int n_threads):
    """Weighted per-column mean and (population) variance of X in one parallel pass.

    Returns (mean, var), float64 arrays of length d.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    cdef Layout lay = layout_of(X)
    if sample_weight is not None and sample_weight.shape[0] != n:
        raise ValueError(f"sample_weight must have {n} entries, got {sample_weight.shape[0]}")
    cdef Py_ssize_t rows = chunk_rows(n, d)
    cdef Py_ssize_t n_chunks = (n + rows - 1) // rows
    cdef Py_ssize_t m_max = block_rows(d, sizeof(floating))
    cdef Py_ssize_t width = 1 + 2 * d
    cdef double[:, ::1] partial = np.zeros((n_chunks, width))
    # One block buffer per chunk (a thread-private malloc would need a parallel block).
    cdef double[:, ::1] blocks = np.empty((n_chunks, width))
    cdef const floating* Xp = &X[0, 0]
    cdef const floating* swp = sample_weight_ptr(sample_weight)
    cdef Py_ssize_t c, i0, stop
    cdef int threads = <int>min(max(n_threads, 1), n_chunks)
    with nogil:
        for c in prange(n_chunks, num_threads=threads, schedule="dynamic"):
            i0 = c * rows
            stop = min(i0 + rows, n)
            while i0 < stop:
                stats_block(Xp, lay, d, swp, i0, min(m_max, stop - i0), &blocks[c, 0])
                combine_stats(&partial[c, 0], &blocks[c, 0], d)
                i0 = i0 + m_max
        for c in range(1, n_chunks):
            combine_stats(&partial[0, 0], &partial[c, 0], d)
    total = np.asarray(partial[0])
    return total[1:1 + d].copy(), total[1 + d:] / total[0]
