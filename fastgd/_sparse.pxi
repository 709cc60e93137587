# Sparse rows: the fused pass and the column statistics over a CSR matrix (values, column
# indices, row offsets), checked by fastgd/_sparse.py (canonical, indices within [0, d)).
# Included by fastgd/_kernels.pxi.
#
# A row's prediction gathers the parameters at its columns, its gradient scatters into a
# dense vector of d: per-row work O(stored entries). The scatter is what makes sparse sums
# hard to share: each chunk of rows has its own dense partial sums (k (d + 1) doubles),
# added in chunk order (columns shared by the threads: the same bits for any count). With
# 2^20 features a chunk's sums take 8 MB, so the chunks are few: cut by the rows' stored
# entries (the work, not the row count), as many as keep all partial sums within a
# CSR_SUMS_SHARE-th of X's stored entries (in doubles), but two at least (for two threads
# to share) and MAX_CHUNKS at most. Extra memory of a pass: max(nnz / CSR_SUMS_SHARE,
# 2 k (d + 1)) doubles, and as many additions to combine them.

from libc.stdint cimport int32_t, int64_t

ctypedef fused index_t:
    int32_t
    int64_t

CSR_ROW_COST = 4          # a row's own work (its loss, residual, weight) in stored entries
CSR_SUMS_SHARE = 4        # chunks' partial sums: at most nnz / 4 doubles (2 bytes a non-zero,
                          # against X's 12 for float64 values and int32 indices), but
CSR_MIN_CHUNK = 16384     # a chunk has this much work at least
cdef enum:
    CSR_COLUMN_BLOCK = 2048   # columns of the partial sums a thread adds up at a time


def csr_chunks(indptr, rows, Py_ssize_t width):
    """The positions where the chunks of a pass start (and the end): cut by the work of
    the rows (stored entries + CSR_ROW_COST each), into as many chunks as the memory of
    their partial sums (`width` doubles each) allows. Depends on X's structure only."""
    lengths = np.diff(indptr) if rows is None else (
        np.asarray(indptr)[np.asarray(rows) + 1] - np.asarray(indptr)[rows])
    cost = np.cumsum(lengths.astype(np.int64) + CSR_ROW_COST)
    total = int(cost[-1]) if len(cost) else 0
    chunks = max(1, min(MAX_CHUNKS, total // CSR_MIN_CHUNK,
                        max(2, total // (CSR_SUMS_SHARE * width))))
    cuts = np.searchsorted(cost, total * np.arange(1, chunks, dtype=np.int64) // chunks,
                           side="right")
    return np.unique(np.concatenate(([0], cuts, [len(lengths)]))).astype(np.intp), total


cdef inline double csr_dot(const floating* values, const index_t* columns, Py_ssize_t m,
                           const double* w) noexcept nogil:
    """sum_q values[q] w[columns[q]]: four independent sums (the gathers overlap)."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t q = 0
    while q + 4 <= m:
        s0 += values[q] * w[columns[q]]
        s1 += values[q + 1] * w[columns[q + 1]]
        s2 += values[q + 2] * w[columns[q + 2]]
        s3 += values[q + 3] * w[columns[q + 3]]
        q = q + 4
    while q < m:
        s0 += values[q] * w[columns[q]]
        q = q + 1
    return (s0 + s1) + (s2 + s3)


cdef inline void csr_axpy(const floating* values, const index_t* columns, Py_ssize_t m,
                          double a, double* out) noexcept nogil:
    """out[columns[q]] += a values[q] (a row's columns are distinct: canonical CSR)."""
    cdef Py_ssize_t q
    for q in range(m):
        out[columns[q]] += a * values[q]


cdef inline void csr_rows_sums(const floating* values, const index_t* columns,
                               const index_t* indptr, Py_ssize_t d, const floating* y,
                               const floating* sw, const double* params, const Loss* loss,
                               Py_ssize_t k, const Py_ssize_t* rows, Py_ssize_t start,
                               Py_ssize_t stop, double* acc, double* z) noexcept nogil:
    """Gradient sums of positions [start, stop) (rows[p], or p without rows) into
    acc[0 : sums_width(d, k)] (zeroed first): per row, its predictions gathered, its
    residuals, and its gradient scattered while its entries are in L1. z: k doubles."""
    cdef Py_ssize_t nw = k * d, p, i, o, lo, m
    cdef double* sums = acc + nw
    cdef double loss_sum = 0.0, weight_sum = 0.0
    memset(acc, 0, (nw + k + N_SCALARS) * sizeof(double))
    for p in range(start, stop):
        i = p if rows == NULL else rows[p]
        lo = indptr[i]
        m = indptr[i + 1] - lo
        for o in range(k):
            z[o] = csr_dot(values + lo, columns + lo, m, params + o * d) + params[nw + o]
        row_residuals(loss, k, z, y, sw, i, &loss_sum, &weight_sum)
        for o in range(k):
            sums[o] += z[o]
            csr_axpy(values + lo, columns + lo, m, z[o], acc + o * d)
    sums[k + SUM_LOSS] += loss_sum
    sums[k + SUM_W] += weight_sum


cdef void csr_chunk_sums(const floating* values, const index_t* columns,
                         const index_t* indptr, Py_ssize_t d, const floating* y,
                         const floating* sw, const double* params, const Loss* loss,
                         const Py_ssize_t* rows, Py_ssize_t start, Py_ssize_t stop,
                         double* acc, double* z) noexcept nogil:
    """csr_rows_sums with k = 1 known to the compiler for one output."""
    if loss.k == 1:
        csr_rows_sums(values, columns, indptr, d, y, sw, params, loss, 1, rows, start, stop,
                      acc, z)
    else:
        csr_rows_sums(values, columns, indptr, d, y, sw, params, loss, loss.k, rows, start,
                      stop, acc, z)


cdef void add_chunk_columns(const double* partial, Py_ssize_t n_chunks, Py_ssize_t stride,
                            Py_ssize_t width, double* out, int threads) noexcept nogil:
    """out[j] = the chunks' partial sums of column j added in chunk order, blocks of
    columns shared by the threads: the same bits for any number of threads."""
    cdef Py_ssize_t b, c, j, lo, hi
    cdef Py_ssize_t n_blocks = (width + CSR_COLUMN_BLOCK - 1) // CSR_COLUMN_BLOCK
    for b in prange(n_blocks, num_threads=threads, schedule="static"):
        lo = b * CSR_COLUMN_BLOCK
        hi = min(lo + CSR_COLUMN_BLOCK, width)
        memcpy(out + lo, partial + lo, (hi - lo) * sizeof(double))
        for c in range(1, n_chunks):
            for j in range(lo, hi):
                out[j] += partial[c * stride + j]


cdef int csr_threads(int n_threads, Py_ssize_t n_chunks, Py_ssize_t work) noexcept nogil:
    """Threads for a sparse pass of this much work (SHARED_MIN_WORK: small passes, one)."""
    if work < SHARED_MIN_WORK:
        return 1
    return <int>max(1, min(n_threads, n_chunks))


def csr_grad_pass(problem, coef, intercept, int n_threads):
    """grad_pass (fastgd/_passes.pxi) for CSR problem.X (fastgd/_sparse.py's): mean loss,
    its gradient in coef (k, d) and in intercept (k,), in one pass over the stored entries
    of the problem's rows."""
    X = problem.X
    return _csr_grad_pass(X.data, X.indices, X.indptr, X.shape[1], problem.Y,
                          problem.sample_weight, coef, intercept, problem.loss, n_threads,
                          problem.rows)


cdef Py_ssize_t csr_rows(const floating[::1] values, const index_t[::1] columns,
                         const index_t[::1] indptr) except -1:
    """X's rows, once what memory safety needs of a CSR matrix here holds, in O(1): its
    offsets start at 0 and end within its arrays (the rest, O(nnz), is fastgd/_sparse.py's
    check, made once, up front)."""
    cdef Py_ssize_t n = indptr.shape[0] - 1
    if n < 1 or indptr[0] != 0 or not (0 <= indptr[n] <= min(values.shape[0],
                                                              columns.shape[0])):
        raise ValueError("X is not a checked CSR matrix (fastgd._sparse.as_csr)")
    return n


def _csr_grad_pass(const floating[::1] values, const index_t[::1] columns,
                   const index_t[::1] indptr, Py_ssize_t d, const floating[:, ::1] Y,
                   const floating[::1] sample_weight, const double[:, ::1] coef,
                   const double[::1] intercept, loss, int n_threads,
                   const Py_ssize_t[::1] rows=None):
    cdef Py_ssize_t k = coef.shape[0], n = csr_rows(values, columns, indptr)
    if coef.shape[1] != d or intercept.shape[0] != k:
        raise ValueError(f"coef must have shape ({k}, {d}) and intercept ({k},)")
    cdef Loss spec = checked_loss(loss, k, n, Y, sample_weight)
    cdef Order order = make_order(None, rows, n)
    if order.n == 0:
        raise ValueError("no rows to sum")
    cdef Py_ssize_t width = sums_width(d, k), stride = whole_lines(width)
    starts_array, work = csr_chunks(indptr, None if rows is None else np.asarray(rows), width)
    cdef const Py_ssize_t[::1] starts = starts_array
    cdef Py_ssize_t n_chunks = starts.shape[0] - 1, c
    cdef double[::1] params = np.append(coef, intercept)
    cdef double[:, ::1] partial = aligned_array((n_chunks, stride), np.empty)
    cdef double[::1] total = np.empty(width)
    cdef int threads = csr_threads(n_threads, n_chunks, work * k)
    cdef double[:, ::1] z = aligned_array((threads, whole_lines(k)))
    cdef const floating* swp = sample_weight_ptr(sample_weight)
    cdef const Py_ssize_t* rows_ptr = order.rows
    cdef const floating* values_ptr = &values[0] if values.shape[0] else NULL  # nnz may be 0
    cdef const index_t* columns_ptr = &columns[0] if columns.shape[0] else NULL
    with nogil:
        for c in prange(n_chunks, num_threads=threads, schedule="dynamic"):
            csr_chunk_sums(values_ptr, columns_ptr, &indptr[0], d, &Y[0, 0], swp, &params[0],
                           &spec, rows_ptr, starts[c], starts[c + 1], &partial[c, 0],
                           &z[omp_get_thread_num(), 0])
        add_chunk_columns(&partial[0, 0], n_chunks, stride, width, &total[0], threads)
    sums = np.asarray(total)
    nw = k * d
    weight = sums[nw + k + SUM_W]
    return (sums[nw + k + SUM_LOSS] / weight, sums[:nw].reshape(k, d) / weight,
            sums[nw:nw + k] / weight)


# Column statistics of CSR X, in two passes (X's columns are mostly zeros: a mean from the
# stored entries alone would leave the variance to E[x^2] - mean^2, which cancels):
# first the weight, the weighted sums and each column's weight of stored entries, then
# the squared deviations of the stored entries from the mean; the zeros' share is
# (W - W_stored) mean^2.

cdef void csr_stats_sums(const floating* values, const index_t* columns,
                         const index_t* indptr, Py_ssize_t d, const floating* sw,
                         const double* mean, Py_ssize_t start, Py_ssize_t stop,
                         double* acc) noexcept nogil:
    """Rows [start, stop): without `mean`, acc = [W, sum w x (d), sum of w over the stored
    entries (d)]; with it, acc = [sum w (x - mean)^2 over the stored entries (d)]."""
    cdef Py_ssize_t i, q, j
    cdef double wi, diff
    memset(acc, 0, ((1 + 2 * d) if mean == NULL else d) * sizeof(double))
    for i in range(start, stop):
        wi = 1.0 if sw == NULL else <double>sw[i]
        if mean == NULL:
            acc[0] += wi
        for q in range(indptr[i], indptr[i + 1]):
            j = columns[q]
            if mean == NULL:
                acc[1 + j] += wi * values[q]
                acc[1 + d + j] += wi
            else:
                diff = values[q] - mean[j]
                acc[j] += wi * diff * diff


def csr_column_stats(problem, int n_threads):
    """column_stats (fastgd/_stats.pxi) for CSR problem.X: weighted per-column mean and
    population variance over all its rows."""
    X = problem.X
    return _csr_column_stats(X.data, X.indices, X.indptr, X.shape[1], problem.sample_weight,
                             n_threads)


def _csr_column_stats(const floating[::1] values, const index_t[::1] columns,
                      const index_t[::1] indptr, Py_ssize_t d,
                      const floating[::1] sample_weight, int n_threads):
    cdef Py_ssize_t n = csr_rows(values, columns, indptr), c
    if sample_weight is not None and sample_weight.shape[0] != n:
        raise ValueError(f"sample_weight must have {n} entries, got {sample_weight.shape[0]}")
    cdef Py_ssize_t width = 1 + 2 * d, stride = whole_lines(width)
    starts_array, work = csr_chunks(indptr, None, width)
    cdef const Py_ssize_t[::1] starts = starts_array
    cdef Py_ssize_t n_chunks = starts.shape[0] - 1
    cdef double[:, ::1] partial = aligned_array((n_chunks, stride), np.empty)
    cdef double[::1] total = np.empty(width)
    cdef int threads = csr_threads(n_threads, n_chunks, work)
    cdef const floating* swp = sample_weight_ptr(sample_weight)
    cdef const floating* values_ptr = &values[0] if values.shape[0] else NULL  # nnz may be 0
    cdef const index_t* columns_ptr = &columns[0] if columns.shape[0] else NULL
    with nogil:
        for c in prange(n_chunks, num_threads=threads, schedule="dynamic"):
            csr_stats_sums(values_ptr, columns_ptr, &indptr[0], d, swp, NULL, starts[c],
                           starts[c + 1], &partial[c, 0])
        add_chunk_columns(&partial[0, 0], n_chunks, stride, width, &total[0], threads)
    weight = total[0]
    sums = np.asarray(total)
    mean_array = sums[1:1 + d] / weight
    stored_weight = sums[1 + d:].copy()
    cdef const double[::1] mean = mean_array
    with nogil:
        for c in prange(n_chunks, num_threads=threads, schedule="dynamic"):
            csr_stats_sums(values_ptr, columns_ptr, &indptr[0], d, swp, &mean[0], starts[c],
                           starts[c + 1], &partial[c, 0])
        add_chunk_columns(&partial[0, 0], n_chunks, stride, d, &total[0], threads)
    deviations = np.asarray(total)[:d]
    zeros_weight = np.maximum(weight - stored_weight, 0.0)
    return mean_array, (deviations + zeros_weight * mean_array ** 2) / weight
