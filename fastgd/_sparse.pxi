# Sparse rows: the fused pass and the column statistics over a CSR matrix (values, column
# indices, row offsets), checked by fastgd/_sparse.py (canonical, indices within [0, d)).
# Included by fastgd/_kernels.pxi.
#
# A row's prediction gathers the parameters at its columns, its gradient scatters into a
# dense vector of d: per-row work O(stored entries). The scatter is what makes sparse sums
# hard to share: each chunk of rows has its own dense partial sums, added in chunk order
# (columns shared by the threads: the same bits for any count). A chunk keeps them beside
# a copy of the parameters, in (parameter, gradient) pairs: the line a row's gather brings
# in is the one its scatter writes (with separate vectors, every column missed twice:
# 2.7 x slower at 2^20 features), and the gathers of the entries PREFETCH_ENTRIES ahead
# are requested meanwhile (a further 1.4 x). With 2^20 features a chunk's pairs take
# 16 MB, so the chunks are few: cut by the rows' stored entries (the work, not the row
# count), as many as keep all pairs within nnz / CSR_SUMS_SHARE doubles, but two at least
# (for two threads to share) and MAX_CHUNKS at most. Extra memory of a pass:
# max(nnz / CSR_SUMS_SHARE, 4 k d) doubles (16 k d bytes a chunk).

from libc.stdint cimport int32_t, int64_t

ctypedef fused index_t:
    int32_t
    int64_t

CSR_ROW_COST = 4          # a row's own work (its loss, residual, weight) in stored entries
CSR_SUMS_SHARE = 16       # chunks' pairs: at most nnz / 16 doubles (half a byte a non-zero,
                          # against X's 12 for float64 values and int32 indices: setting
                          # them up and adding them streams 8 % of X's bytes; a quarter
                          # measured 1.2 x slower on one-hot rows), but
CSR_MIN_CHUNK = 16384     # a chunk has this much work at least
cdef enum:
    CSR_COLUMN_BLOCK = 2048   # columns of the partial sums a thread adds up at a time
    PREFETCH_ENTRIES = 256    # stored entries ahead whose parameters are requested (measured
                              # at 2^20 features: 64 ahead 1.1 x slower, 512 the same),
    PREFETCH_MIN_BYTES = 1048576  # where the pairs outgrow L2 (one-hot rows of 32k features:
                                  # the requests cost 1.1 x, and hid nothing)


def csr_chunks(indptr, rows, Py_ssize_t width):
    """The positions where the chunks of a pass start (and the end), and the pass's work:
    cut by the work of the rows (stored entries + CSR_ROW_COST each), into as many chunks
    as the memory of their buffers (`width` doubles each) allows. Depends on X's structure
    only."""
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
                           const double* w, Py_ssize_t stride,
                           const index_t* ahead) noexcept nogil:
    """sum_q values[q] w[stride columns[q]]: four independent sums (the gathers overlap);
    meanwhile the lines of w at the columns ahead[0:m] are requested (NULL: none)."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t q = 0
    while q + 4 <= m:
        if ahead != NULL:
            fastgd_prefetch_l1(w + stride * ahead[q])
            fastgd_prefetch_l1(w + stride * ahead[q + 1])
            fastgd_prefetch_l1(w + stride * ahead[q + 2])
            fastgd_prefetch_l1(w + stride * ahead[q + 3])
        s0 += values[q] * w[stride * columns[q]]
        s1 += values[q + 1] * w[stride * columns[q + 1]]
        s2 += values[q + 2] * w[stride * columns[q + 2]]
        s3 += values[q + 3] * w[stride * columns[q + 3]]
        q = q + 4
    while q < m:
        if ahead != NULL:
            fastgd_prefetch_l1(w + stride * ahead[q])
        s0 += values[q] * w[stride * columns[q]]
        q = q + 1
    return (s0 + s1) + (s2 + s3)


cdef inline void csr_axpy(const floating* values, const index_t* columns, Py_ssize_t m,
                          double a, double* out, Py_ssize_t stride) noexcept nogil:
    """out[stride columns[q]] += a values[q] (a row's columns are distinct: canonical)."""
    cdef Py_ssize_t q
    for q in range(m):
        out[stride * columns[q]] += a * values[q]


cdef inline void csr_rows_sums(const floating* values, const index_t* columns,
                               const index_t* indptr, Py_ssize_t d, const floating* y,
                               const floating* sw, const double* coef,
                               const double* intercept, const Loss* loss, Py_ssize_t k,
                               const Py_ssize_t* rows, Py_ssize_t start, Py_ssize_t stop,
                               Py_ssize_t nnz, double* pairs, double* sums, double* z,
                               Py_ssize_t hv_pairs) noexcept nogil:
    """Gradient sums of positions [start, stop) (rows[p], or p without rows): pairs
    (2 k d doubles) become (parameter, gradient sum) of each coefficient, column by column
    (the k outputs of column j at 2 k j: a row's gathers and scatters of all outputs, and
    of the Hessian-vector pass's vector, in one line), sums (k +
    N_SCALARS) those of the intercepts, the loss and the weight. RESIDUAL_RUN rows at a
    time: their predictions gathered from the pairs (where they outgrow L2, the
    parameters of X's entries, nnz in all, PREFETCH_ENTRIES ahead requested meanwhile),
    their residuals (one output: the
    loss's vectorized loop, run_residuals; measured 1.3 x faster than a row at a time on
    one-hot rows), then their gradients scattered into the pairs while the rows' entries
    are in L1. z: RESIDUAL_RUN k doubles, and 2 + k + hv_pairs more.

    hv_pairs >= 0: the Hessian-vector pass of a loss of k / 2 outputs and hv_pairs pairs
    of them (hessian_vector_residuals): coef and intercept are the model's, then the
    vector's, and the sums their gradient's, then H v's."""
    cdef Py_ssize_t nw = k * d, p, i, o, j, q, g, lo, m
    cdef bint ahead = 16 * nw > PREFETCH_MIN_BYTES
    cdef double loss_sum = 0.0, weight_sum = 0.0
    cdef floating y_at[RESIDUAL_RUN]   # one output's targets and weights of rows
    cdef floating sw_at[RESIDUAL_RUN]  # read through `rows`
    for o in range(k):  # column j's outputs side by side: one line for a row's gathers
        for j in range(d):
            pairs[2 * (j * k + o)] = coef[o * d + j]
            pairs[2 * (j * k + o) + 1] = 0.0
    memset(sums, 0, (k + N_SCALARS) * sizeof(double))
    p = start
    while p < stop:
        g = min(<Py_ssize_t>RESIDUAL_RUN, stop - p)
        for q in range(g):
            i = p + q if rows == NULL else rows[p + q]
            lo = indptr[i]
            m = indptr[i + 1] - lo
            for o in range(k):
                z[q * k + o] = csr_dot(values + lo, columns + lo, m, pairs + 2 * o, 2 * k,
                                       columns + min(lo + PREFETCH_ENTRIES, nnz - m)
                                       if o == 0 and ahead else NULL) + intercept[o]
        if hv_pairs >= 0:
            for q in range(g):
                i = p + q if rows == NULL else rows[p + q]
                hessian_vector_residuals(loss, k // 2, hv_pairs, z + q * k, y + i * loss.ky,
                                         1.0 if sw == NULL else <double>sw[i],
                                         z + RESIDUAL_RUN * k, &loss_sum, &weight_sum)
            add_residuals(z, k, g, k, sums)
        elif k == 1 and rows == NULL:
            run_residuals(loss, z, y + p, NULL if sw == NULL else sw + p, g, sums)
        elif k == 1:
            for q in range(g):
                y_at[q] = y[rows[p + q]]
                sw_at[q] = 1 if sw == NULL else sw[rows[p + q]]
            run_residuals(loss, z, y_at, NULL if sw == NULL else sw_at, g, sums)
        else:
            for q in range(g):
                row_residuals(loss, k, z + q * k, y, sw, p + q if rows == NULL else
                              rows[p + q], &loss_sum, &weight_sum)
            add_residuals(z, k, g, k, sums)
        for q in range(g):
            i = p + q if rows == NULL else rows[p + q]
            lo = indptr[i]
            m = indptr[i + 1] - lo
            for o in range(k):
                csr_axpy(values + lo, columns + lo, m, z[q * k + o], pairs + 2 * o + 1, 2 * k)
        p = p + g
    sums[k + SUM_LOSS] += loss_sum
    sums[k + SUM_W] += weight_sum


cdef inline void hessian_vector_residuals(const Loss* loss, Py_ssize_t k, Py_ssize_t pairs,
                                         double* z, const floating* y, double w, double* t,
                                         double* loss_sum, double* weight_sum) noexcept nogil:
    """A row's outputs z (k) and u = a . v (k) become w dloss/dz (k) and q_a = sum_b
    w h_ab u_b (k): the residuals of the gradient and of H v (t: the row's terms,
    row_terms)."""
    cdef Py_ssize_t a, b, q = 0
    cdef double* u = z + k
    cdef double* h = t + 2 + 2 * k
    for a in range(k):
        t[2 + k + a] = z[a]
    row_terms(loss, k, y, w, t)
    loss_sum[0] += t[0]
    weight_sum[0] += t[1]
    for a in range(k):
        z[a] = t[2 + a]
    if pairs == k and loss.kind != MULTINOMIAL:  # the diagonal: each output alone
        for a in range(k):
            u[a] = h[a] * u[a]
        return
    for a in range(k):  # h_ab for a <= b, in hessian_pairs' order: q = H_row u
        t[2 + k + a] = 0.0
    for a in range(k):
        for b in range(a, k):
            t[2 + k + a] += h[q] * u[b]
            if a != b:
                t[2 + k + b] += h[q] * u[a]
            q = q + 1
    for a in range(k):
        u[a] = t[2 + k + a]


cdef void csr_chunk_sums(const floating* values, const index_t* columns,
                         const index_t* indptr, Py_ssize_t d, const floating* y,
                         const floating* sw, const double* coef, const double* intercept,
                         const Loss* loss, const Py_ssize_t* rows, Py_ssize_t start,
                         Py_ssize_t stop, Py_ssize_t nnz, double* pairs, double* sums,
                         double* z, Py_ssize_t outputs, Py_ssize_t hv_pairs) noexcept nogil:
    """csr_rows_sums with k = 1 known to the compiler for one output."""
    if outputs == 1:
        csr_rows_sums(values, columns, indptr, d, y, sw, coef, intercept, loss, 1, rows,
                      start, stop, nnz, pairs, sums, z, hv_pairs)
    else:
        csr_rows_sums(values, columns, indptr, d, y, sw, coef, intercept, loss, outputs, rows,
                      start, stop, nnz, pairs, sums, z, hv_pairs)


cdef void add_chunk_columns(const double* partial, Py_ssize_t n_chunks, Py_ssize_t stride,
                            Py_ssize_t width, Py_ssize_t step, double divisor, double* out,
                            int threads) noexcept nogil:
    """out[j] = the chunks' partial sums partial[c stride + step j] of column j added in
    chunk order, divided by `divisor`; blocks of columns shared by the threads: the same
    bits for any number of threads."""
    cdef Py_ssize_t b, c, j, lo, hi
    cdef Py_ssize_t n_blocks = (width + CSR_COLUMN_BLOCK - 1) // CSR_COLUMN_BLOCK
    for b in prange(n_blocks, num_threads=threads, schedule="static"):
        lo = b * CSR_COLUMN_BLOCK
        hi = min(lo + CSR_COLUMN_BLOCK, width)
        for j in range(lo, hi):
            out[j] = partial[step * j]
        for c in range(1, n_chunks):
            for j in range(lo, hi):
                out[j] += partial[c * stride + step * j]
        if divisor != 1.0:
            for j in range(lo, hi):
                out[j] = out[j] / divisor


cdef int csr_threads(int n_threads, Py_ssize_t n_chunks, Py_ssize_t work) noexcept nogil:
    """Threads for a sparse pass of this much work (SHARED_MIN_WORK: small passes, one)."""
    if work < SHARED_MIN_WORK:
        return 1
    return <int>max(1, min(n_threads, n_chunks))


def csr_grad_pass(problem, coef, intercept, int n_threads, workspace=None):
    """grad_pass (fastgd/_passes.pxi) for CSR problem.X (fastgd/_sparse.py's): mean loss,
    its gradient in coef (k, d) and in intercept (k,), in one pass over the stored entries
    of the problem's rows. `workspace`, a dict, keeps the chunks' buffers from one pass to
    the next (the engine's: a fresh buffer of 16 MB a chunk costs its pages every pass)."""
    X = problem.X
    return _csr_grad_pass(X.data, X.indices, X.indptr, X.shape[1], problem.Y,
                          problem.sample_weight, coef, intercept, problem.loss, n_threads,
                          {} if workspace is None else workspace, problem.rows)


def buffer(dict workspace, str name, shape):
    """An aligned buffer of doubles (not set) of this shape, kept in `workspace` for the
    next pass that asks for as much or less."""
    kept = workspace.get(name)
    size = int(np.prod(shape))
    if kept is None or kept.size < size:
        kept = workspace[name] = aligned_array((size,), np.empty)
    return kept[:size].reshape(shape)


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
                   const double[::1] intercept, loss, int n_threads, dict workspace,
                   const Py_ssize_t[::1] rows=None, bint hessian_vector=False):
    """The pass; with hessian_vector, coef and intercept stack the model's and the
    vector's (2 k rows) and the result is the sums of both (csr_rows_sums)."""
    cdef Py_ssize_t outputs = coef.shape[0], n = csr_rows(values, columns, indptr)
    cdef Py_ssize_t k = outputs // 2 if hessian_vector else outputs
    if coef.shape[1] != d or intercept.shape[0] != outputs or (hessian_vector
                                                                and outputs % 2):
        raise ValueError(f"coef must have shape ({outputs}, {d}) and intercept ({outputs},)")
    cdef Loss spec = checked_loss(loss, k, n, Y, sample_weight)
    cdef Py_ssize_t hv_pairs = len(loss.hessian_pairs(k)) if hessian_vector else -1
    cdef Order order = make_order(None, rows, n)
    if order.n == 0:
        raise ValueError("no rows to sum")
    cdef Py_ssize_t nw = outputs * d, width = outputs + N_SCALARS
    cdef Py_ssize_t pair_stride = whole_lines(2 * nw)
    starts_array, work = csr_chunks(indptr, None if rows is None else np.asarray(rows), 2 * nw)
    cdef const Py_ssize_t[::1] starts = starts_array
    cdef Py_ssize_t n_chunks = starts.shape[0] - 1, c
    cdef double[:, ::1] pairs = buffer(workspace, "pairs", (n_chunks, pair_stride))
    cdef double[:, ::1] sums = aligned_array((n_chunks, whole_lines(width)), np.empty)
    cdef double[::1] total = np.empty(width)
    cdef double[:, ::1] gradient = np.empty((d, outputs))  # as the pairs hold it
    cdef int threads = csr_threads(n_threads, n_chunks, work * outputs)
    cdef double[:, ::1] z = aligned_array(
        (threads, whole_lines(RESIDUAL_RUN * outputs + 2 + outputs + max(hv_pairs, 0))))
    cdef const floating* swp = sample_weight_ptr(sample_weight)
    cdef const Py_ssize_t* rows_ptr = order.rows
    cdef const floating* values_ptr = &values[0] if values.shape[0] else NULL  # nnz may be 0
    cdef const index_t* columns_ptr = &columns[0] if columns.shape[0] else NULL
    cdef Py_ssize_t nnz = indptr[n]
    cdef double weight
    with nogil:
        for c in prange(n_chunks, num_threads=threads, schedule="dynamic"):
            csr_chunk_sums(values_ptr, columns_ptr, &indptr[0], d, &Y[0, 0], swp, &coef[0, 0],
                           &intercept[0], &spec, rows_ptr, starts[c], starts[c + 1], nnz,
                           &pairs[c, 0], &sums[c, 0], &z[omp_get_thread_num(), 0], outputs,
                           hv_pairs)
        add_chunks(&sums[0, 0], n_chunks, width, &total[0])
        weight = total[outputs + SUM_W]
        add_chunk_columns(&pairs[0, 1], n_chunks, pair_stride, nw, 2, weight, &gradient[0, 0],
                          threads)
    result = np.asarray(total)
    return (result[outputs + SUM_LOSS] / weight, np.ascontiguousarray(np.asarray(gradient).T),
            result[:outputs] / weight)


def csr_hessian_vector_pass(problem, theta, std, vector, int n_threads, workspace=None):
    """hessian_vector_pass (fastgd/_hessian.pxi) for CSR problem.X: (mean loss, gradient
    (p,), H vector (p,)) at trained parameters theta, in one pass of the fused kernel over
    2 k outputs: the model's z and the vector's u = a . v gathered a row at a time, the
    gradient's residuals and H v's (q_a = sum_b w h_ab u_b) scattered, then both
    standardized (as gradient_to_trained)."""
    X, k = problem.X, problem.k
    d = X.shape[1]
    theta, vector = np.asarray(theta), np.asarray(vector)
    coef = np.concatenate([theta[:k * d], vector[:k * d]]).reshape(2 * k, d)
    intercept = np.concatenate([theta[k * d:], vector[k * d:]])
    if std:  # in X's units (O(d) vectors of 2^20 features: none without a standardization)
        mean, inverse = trained_units(std, d)
        coef *= inverse
        intercept -= coef @ mean
    value, sums, totals = _csr_grad_pass(
        X.data, X.indices, X.indptr, d, problem.Y, problem.sample_weight, coef, intercept,
        problem.loss, n_threads, {} if workspace is None else workspace, problem.rows, True)
    if std:
        sums = (sums - np.outer(totals, mean)) * inverse
    return (value, np.concatenate([sums[:k].ravel(), totals[:k]]),
            np.concatenate([sums[k:].ravel(), totals[k:]]))


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
        add_chunk_columns(&partial[0, 0], n_chunks, stride, width, 1, 1.0, &total[0], threads)
    weight = total[0]
    sums = np.asarray(total)
    mean_array = sums[1:1 + d] / weight
    stored_weight = sums[1 + d:].copy()
    cdef const double[::1] mean = mean_array
    with nogil:
        for c in prange(n_chunks, num_threads=threads, schedule="dynamic"):
            csr_stats_sums(values_ptr, columns_ptr, &indptr[0], d, swp, &mean[0], starts[c],
                           starts[c + 1], &partial[c, 0])
        add_chunk_columns(&partial[0, 0], n_chunks, stride, d, 1, 1.0, &total[0], threads)
    deviations = np.asarray(total)[:d]
    zeros_weight = np.maximum(weight - stored_weight, 0.0)
    return mean_array, (deviations + zeros_weight * mean_array ** 2) / weight


# The structure check of fastgd/_sparse.py, in one read of the indices.
CSR_CANONICAL, CSR_UNSORTED, CSR_BAD_START, CSR_DECREASING, CSR_PAST_END, CSR_BAD_INDEX = range(6)


def csr_structure(const index_t[::1] indptr, const index_t[::1] indices,
                  Py_ssize_t n_values, Py_ssize_t n_indices):
    """(verdict, where) of a compressed matrix's offsets and indices: CSR_CANONICAL (each
    row's indices strictly increasing), CSR_UNSORTED (well formed, but some row unsorted or
    with duplicates), or what is wrong first: CSR_BAD_START (indptr[0] != 0),
    CSR_DECREASING (indptr decreases after entry `where`), CSR_PAST_END (indptr ends past
    the indices or the n_values values), CSR_BAD_INDEX (entry `where` outside
    [0, n_indices))."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, i, q, lo, hi
    cdef Py_ssize_t nnz
    cdef long long previous
    cdef bint sorted_rows = True
    if n < 0:
        return CSR_DECREASING, 0
    if indptr[0] != 0:
        return CSR_BAD_START, 0
    with nogil:
        for i in range(n):
            if indptr[i + 1] < indptr[i]:
                with gil:
                    return CSR_DECREASING, i
    nnz = indptr[n]
    if nnz > indices.shape[0] or nnz > n_values:
        return CSR_PAST_END, nnz
    with nogil:
        for i in range(n):
            lo, hi = indptr[i], indptr[i + 1]
            previous = -1
            for q in range(lo, hi):
                if indices[q] < 0 or indices[q] >= n_indices:
                    with gil:
                        return CSR_BAD_INDEX, q
                if indices[q] <= previous:
                    sorted_rows = False
                previous = indices[q]
    return (CSR_CANONICAL if sorted_rows else CSR_UNSORTED), 0


# The Hessian pass on CSR rows (Newton's method): the loss, its gradient and X^T diag(w h) X
# for each pair of outputs, from the stored entries, and their standardization applied
# after (the design a = ((x - mean) / divisor, 1) is dense where x is sparse: its Gram
# matrix is that of x, corrected by rank-one terms of the sums of w h x and w h). Two
# reads: first each row's terms (z from the parameters in original units, the loss, its
# derivatives, w h: row_terms) by chunks of rows; then the d x d sums by CSR_GRAM_BLOCKS
# blocks of the matrix's rows (columns j in the block's range), each block reading every
# row's entries from its first column in range on (a binary search: indices are sorted)
# and adding w h x_j x_q for the columns q >= j after it: every entry summed by one block
# in row order, the same bits for any thread count. Memory: the matrices (what the solver
# asks for: HESSIAN_BYTES at most) and the terms, 2 + 2 k + pairs doubles a row.

cdef enum:
    CSR_GRAM_BLOCKS = 16  # blocks of the Hessian's rows the threads share out


def csr_hessian_pass(problem, theta, std, int n_threads):
    """hessian_pass (fastgd/_hessian.pxi) for CSR problem.X: (mean loss, gradient (p,),
    Hessian (p, p)) at trained parameters theta, standardized by std, weighted, over the
    problem's rows."""
    X, k, loss = problem.X, problem.k, problem.loss
    d = X.shape[1]
    pairs = loss.hessian_pairs(k)
    W = design_parameters(theta, k, d)
    mean, inverse = trained_units(std, d)
    coef = W[:, :d] * inverse  # the parameters in X's units
    intercept = W[:, d] - coef @ mean
    terms = np.empty((problem.X.shape[0] if problem.rows is None else len(problem.rows),
                      2 + 2 * k + len(pairs)))
    gram = np.zeros((len(pairs), d, d))
    sums = np.zeros((k + len(pairs), d))  # sum of w dloss/dz_a x, of w h x (each pair)
    _csr_hessian_pass(X.data, X.indices, X.indptr, d, problem.Y, problem.sample_weight,
                      np.ascontiguousarray(coef), np.ascontiguousarray(intercept), loss, k,
                      len(pairs), row_numbers(problem), terms, gram, sums, n_threads)
    total = terms.sum(axis=0)  # in row order: [w loss, w, w dz (k), z (k), w h (pairs)]
    weight = total[1]
    dz_sums, h_sums = total[2:2 + k], total[2 + 2 * k:]
    gradient = np.column_stack([(sums[:k] - np.outer(dz_sums, mean)) * inverse, dz_sums])
    blocks = {}
    for number, pair in enumerate(pairs):
        M, v, s = gram[number], sums[k + number], h_sums[number]
        M += np.triu(M, 1).T  # the lower triangle from the upper
        cross = np.outer(mean, v)
        block = np.empty((d + 1, d + 1))
        block[:d, :d] = (M - cross - cross.T + s * np.outer(mean, mean)) * np.outer(inverse,
                                                                                   inverse)
        block[:d, d] = block[d, :d] = (v - s * mean) * inverse
        block[d, d] = s
        blocks[pair] = block
    return (total[0] / weight, flatten_gradient(gradient / weight),
            assemble(blocks, k, d, weight))


def _csr_hessian_pass(const floating[::1] values, const index_t[::1] columns,
                      const index_t[::1] indptr, Py_ssize_t d, const floating[:, ::1] Y,
                      const floating[::1] sample_weight, const double[:, ::1] coef,
                      const double[::1] intercept, loss, Py_ssize_t k, Py_ssize_t pairs,
                      const Py_ssize_t[::1] rows, double[:, ::1] terms,
                      double[:, :, ::1] gram, double[:, ::1] sums, int n_threads):
    cdef Py_ssize_t n = csr_rows(values, columns, indptr)
    cdef Loss spec = checked_loss(loss, k, n, Y, sample_weight)
    cdef Order order = make_order(None, rows, n)
    if order.n == 0:
        raise ValueError("the Hessian pass needs at least one row")
    if coef.shape[0] != k or coef.shape[1] != d or terms.shape[0] != order.n:
        raise ValueError("the Hessian pass's buffers disagree with X")
    cdef Py_ssize_t width = 2 + 2 * k + pairs, c, b, p, i, a, lo, m
    cdef Py_ssize_t rows_per_chunk = max(1, (order.n + MAX_CHUNKS - 1) // MAX_CHUNKS)
    cdef Py_ssize_t n_chunks = (order.n + rows_per_chunk - 1) // rows_per_chunk
    cdef Py_ssize_t nnz = indptr[n]
    cdef int threads = csr_threads(n_threads, n_chunks, nnz * (k + pairs))
    cdef const floating* values_ptr = &values[0] if values.shape[0] else NULL
    cdef const index_t* columns_ptr = &columns[0] if columns.shape[0] else NULL
    cdef const floating* swp = sample_weight_ptr(sample_weight)
    cdef const Order* order_ptr = &order
    cdef Py_ssize_t positions = order.n, stop
    cdef double* t
    with nogil:
        for c in prange(n_chunks, num_threads=threads, schedule="static"):
            stop = min((c + 1) * rows_per_chunk, positions)
            for p in range(c * rows_per_chunk, stop):
                i = row_at(order_ptr, p)
                lo = indptr[i]
                m = indptr[i + 1] - lo
                t = &terms[p, 0]
                for a in range(k):
                    t[2 + k + a] = csr_dot(values_ptr + lo, columns_ptr + lo, m,
                                           &coef[a, 0], 1, NULL) + intercept[a]
                row_terms(&spec, k, &Y[0, 0] + i * spec.ky,
                          1.0 if swp == NULL else <double>swp[i], t)
        for b in prange(CSR_GRAM_BLOCKS, num_threads=threads, schedule="dynamic"):
            csr_gram_block(values_ptr, columns_ptr, &indptr[0], d, order_ptr, &terms[0, 0],
                           width, k, pairs, b * d // CSR_GRAM_BLOCKS,
                           (b + 1) * d // CSR_GRAM_BLOCKS, &gram[0, 0, 0], &sums[0, 0])


cdef void csr_gram_block(const floating* values, const index_t* columns,
                         const index_t* indptr, Py_ssize_t d, const Order* order,
                         const double* terms, Py_ssize_t width, Py_ssize_t k,
                         Py_ssize_t pairs, Py_ssize_t j_lo, Py_ssize_t j_hi, double* gram,
                         double* sums) noexcept nogil:
    """Rows j_lo..j_hi-1 of each pair's Gram matrix (the upper triangle: columns q >= j)
    and columns j_lo..j_hi-1 of the sums of w dz_a x and w h x, over the order's rows."""
    cdef Py_ssize_t p, i, q, r, hi, a, j
    cdef const double* t
    cdef double x, wh
    cdef double* row
    if j_lo >= j_hi:
        return
    for p in range(order.n):
        i = row_at(order, p)
        hi = indptr[i + 1]
        q = first_at_least(columns, indptr[i], hi, j_lo)
        t = terms + p * width
        while q < hi and columns[q] < j_hi:
            j = columns[q]
            x = values[q]
            for a in range(k):
                sums[a * d + j] += t[2 + a] * x
            for a in range(pairs):
                wh = t[2 + 2 * k + a] * x
                sums[(k + a) * d + j] += wh
                row = gram + (a * d + j) * d
                for r in range(q, hi):
                    row[columns[r]] += wh * values[r]
            q = q + 1


cdef inline Py_ssize_t first_at_least(const index_t* columns, Py_ssize_t lo, Py_ssize_t hi,
                                      Py_ssize_t column) noexcept nogil:
    """The first entry in [lo, hi) whose column is >= `column` (hi if none): sorted."""
    cdef Py_ssize_t mid
    while lo < hi:
        mid = (lo + hi) // 2
        if columns[mid] < column:
            lo = mid + 1
        else:
            hi = mid
    return lo
