# The dense fused pass: forward pass, loss, residuals and gradient sums of a chunk of rows
# (rows or columns contiguous), the chunks run by the threads, and grad_pass. Included by
# fastgd/_kernels.pxi.

cdef enum:
    SCRATCH_ROWS = 64    # shuffled rows indexed (and, for F order, gathered) at a time
    PREFETCH_AHEAD = 16     # rows requested from memory into L2 ahead of the one summed
    PREFETCH_L1_AHEAD = 4   # scattered rows: also from L2 into L1 (measured: 8 and 24 ahead
                            # slower than 16 into L2; 2 and 6 slower than 4 into L1)

cdef inline Py_ssize_t scratch_size(Py_ssize_t d, Py_ssize_t ky) noexcept nogil:
    return SCRATCH_ROWS * (d + ky + 1)


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
    1). RESIDUAL_RUN rows at a time, their residuals and losses by the loss's vectorized
    loop (elementwise_run, fastgd/_losses.pxd), then the residuals, losses and weights
    summed in LANES partial sums, added in a fixed order into sums[0], sums[1 + SUM_LOSS]
    and sums[1 + SUM_W]."""
    cdef double r[LANES]
    cdef double a[LANES]
    cdef double w[LANES]
    cdef double losses[RESIDUAL_RUN]
    cdef double weights[RESIDUAL_RUN]
    cdef Py_ssize_t i = 0, l, run
    for l in range(LANES):
        r[l] = 0.0
        a[l] = 0.0
        w[l] = 0.0
    while i < m:
        run = min(<Py_ssize_t>RESIDUAL_RUN, m - i)
        elementwise_run(loss, z + i, y + i, NULL if sw == NULL else sw + i, run, losses,
                        weights)
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
    it, twice, which measured 1.2 x faster at 100 features and 1.6 x at 1000.

    Long (about 80 lines of code) because it is the hot loop of every pass over rows: its
    steps share the group's row pointers, predictions and widened rows, and its speed was
    tuned as one piece (the measurements above). Split it only with a side-by-side
    benchmark of the builds (benchmarks/compare_builds.py)."""
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


def grad_pass(problem, coef, intercept, int n_threads):
    """Mean loss, its gradient in coef and in intercept, in one pass over problem.X (over
    X[rows] only, given problem.rows: read in place, not copied), for a model of k outputs:
    coef (k, d), intercept (k,); problem.Y (n, ky) as problem.loss.targets_per_row(k).

    Returns (loss, grad_coef (k, d), grad_intercept (k,)), all means weighted by
    problem.sample_weight.
    """
    return _grad_pass(problem.X, problem.Y, problem.sample_weight, coef, intercept,
                      problem.loss, n_threads, problem.rows)


cdef Loss checked_loss(loss, Py_ssize_t k, Py_ssize_t n, const floating[:, ::1] Y,
                       const floating[::1] sample_weight) except *:
    """The kernels' Loss for k outputs, once the shapes agree: Y is (n, ky), sample_weight
    (n,), and class indices are within [0, k) (one outside would write outside the
    buffers)."""
    cdef Loss spec = loss_of(loss, k)
    cdef Py_ssize_t i
    if k < 1 or Y.shape[0] != n or Y.shape[1] != spec.ky:
        raise ValueError(f"y must have shape ({n}, {spec.ky}) for {k} outputs, got "
                         f"{tuple(Y.shape)[:2]}")
    if sample_weight is not None and sample_weight.shape[0] != n:
        raise ValueError(f"sample_weight must have {n} entries, got {sample_weight.shape[0]}")
    if loss.class_indices:
        for i in range(n):
            if not (0 <= Y[i, 0] < k and <double><Py_ssize_t>Y[i, 0] == Y[i, 0]):
                raise ValueError(f"y must hold class indices 0 to {k - 1} for "
                                 f"loss={loss.name!r}")
    return spec


def _grad_pass(const floating[:, :] X, const floating[:, ::1] Y,
               const floating[::1] sample_weight, const double[:, ::1] coef,
               const double[::1] intercept, loss, int n_threads,
               const Py_ssize_t[::1] rows=None):
    cdef Py_ssize_t d = X.shape[1], k = coef.shape[0]
    if coef.shape[1] != d or intercept.shape[0] != k:
        raise ValueError(f"coef must have shape ({k}, {d}) and intercept ({k},)")
    cdef Layout lay = layout_of(X)
    cdef Loss spec = checked_loss(loss, k, X.shape[0], Y, sample_weight)
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
    if order.n * d * k < SHARED_MIN_WORK:  # a small pass: one thread
        threads = 1
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
                   order.n, <int>threads, &partial[0, 0], scratch_ptr, &work[0], &total[0])
    sums = np.asarray(total)
    nw = k * d
    weight = sums[nw + k + SUM_W]
    return (sums[nw + k + SUM_LOSS] / weight, sums[:nw].reshape(k, d) / weight,
            sums[nw:nw + k] / weight)
