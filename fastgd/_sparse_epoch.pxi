# The mini-batch epoch over CSR X (fastgd/_sparse.py's), in O(stored entries of a batch) a
# step where the optimizer allows it. Included by fastgd/_kernels.pxi.
#
# A batch's data gradient is zero outside the columns its rows store entries in. Where the
# optimizer has a closed form for a weight's steps without data gradient (the penalty's
# alone; EpochPlan.catch_up_table, fastgd.optimizers: catch_up), each batch is a model over
# its own columns: their weights, caught up to now (optim_catch_up), are gathered into
# compact vectors, updated by the same code as a dense batch's (batch_update) and scattered
# back; the others wait. At the epoch's end every weight is brought up to date. Plain SGD
# (L2 at most) needs no waiting: every weight decays by the same factor a step, so its
# weights are one global scale times a vector, updated in place (csr_sgd_epoch). Elsewhere
# (Adam, clipping, a centered standardization: every weight moves at every step) the
# compact vectors are the whole ones and every step is O(d), as fastgd.reference defines.
#
# One thread: a batch of hundreds of sparse rows is tens of microseconds of work, under
# the price of a barrier per batch once the team shares cores (fastgd/_epoch.pxi measured
# 13-40 x slower then); the fused full-batch pass is where the threads pay.

cdef enum:
    CATCH_UP_AHEAD = 16    # entries ahead whose column's lines a batch's gather requests
    OFFSETS_AHEAD = 16     # rows ahead whose offsets plain SGD's epoch requests,
    ENTRIES_AHEAD = 8      # whose entries' lines (their offsets read by then), and 1 row
                           # ahead its weights (its columns read by then): shuffled rows
                           # are a chain of misses (offsets, entries, weights) otherwise
                           # (one-hot-1M: 0.49 s an epoch shuffled, 0.10 s in order)


cdef inline void request_row_lines(const floating* values, const index_t* columns,
                                   const index_t* indptr, const Order* order, Py_ssize_t p,
                                   Py_ssize_t n, const double* theta) noexcept nogil:
    """Requests, while position p is worked on, the lines later rows will read: the
    offsets of the row OFFSETS_AHEAD ahead, the entries of the row ENTRIES_AHEAD ahead,
    the weights of the next row."""
    cdef Py_ssize_t i, q, lo, hi
    if p + OFFSETS_AHEAD < n:
        fastgd_prefetch_l1(indptr + row_at(order, p + OFFSETS_AHEAD))
    if p + ENTRIES_AHEAD < n:
        i = row_at(order, p + ENTRIES_AHEAD)
        lo = indptr[i]
        hi = indptr[i + 1]
        q = lo
        while q < hi:  # a line holds 16 int32 columns at least, 8 float64 values at most
            fastgd_prefetch_l1(columns + q)
            fastgd_prefetch_l1(values + q)
            q = q + 8
        if hi > lo:
            fastgd_prefetch_l1(columns + hi - 1)
            fastgd_prefetch_l1(values + hi - 1)
    if p + 1 < n:
        i = row_at(order, p + 1)
        for q in range(indptr[i], indptr[i + 1]):
            fastgd_prefetch_l1(theta + columns[q])


cdef struct Compact:
    # A batch's model over t columns: weights output by output (o t + q), then the k
    # intercepts, in vectors of `stride` doubles
    Py_ssize_t t, t_max, stride, slots   # slots: the optimizer's state vectors
    double* theta
    double* state            # OPTIM_SLOTS vectors, stride apart
    double* params           # in original units, for the forward pass
    double* grad
    double* sums             # the gradient's sums, then N_SCALARS
    double* mean             # of the t columns (NULL: not standardized)
    double* inv_scale
    int32_t* column_of       # place q -> its column
    int32_t* entry_place     # the batch's stored entries' places, in order
    # per column j, its place q in the batch (-1: not in it) at 2 j and the step its weights
    # are at at 2 j + 1: one cache line for both (d pairs; lazy only)
    int32_t* place_step


cdef inline void catch_up_column(const OptimConfig* c, const double* table, int32_t* step,
                                 Py_ssize_t j, long now, double* theta, double* state,
                                 Py_ssize_t d, Py_ssize_t k) noexcept nogil:
    """Column j's weights (all outputs), at step *step, brought to `now`."""
    cdef long m = now - step[0]
    cdef Py_ssize_t o
    if m > 0:
        for o in range(k):
            optim_catch_up(c, table + 4 * m, theta + o * d + j, state + o * d + j)
        step[0] = <int32_t>now


cdef void compact_batch(const index_t* columns, const index_t* indptr, const Order* order,
                        Py_ssize_t lo, Py_ssize_t hi, const Epoch* e, const double* table,
                        long now, double* theta, double* state, Py_ssize_t stride,
                        Compact* b) noexcept nogil:
    """The batch [lo, hi)'s columns, caught up to step `now`, gathered into b, and the
    places of its entries."""
    cdef Py_ssize_t d = e.d, k = e.loss.k, p, q, i, j, o, v, entry = 0, entries
    cdef Py_ssize_t t = 0
    cdef int32_t* place
    # The entries' columns first, then each in turn, its lines requested ahead in two
    # stages: a column's place and step and its weight 2 CATCH_UP_AHEAD entries ahead, its
    # row of the table (at the step count just read) CATCH_UP_AHEAD ahead. (Without, the
    # misses were most of an epoch.)
    for p in range(lo, hi):
        i = row_at(order, p)
        for q in range(indptr[i], indptr[i + 1]):
            j = columns[q]
            b.entry_place[entry] = <int32_t>j
            if entry < 2 * CATCH_UP_AHEAD:
                fastgd_prefetch_l1(b.place_step + 2 * j)
                fastgd_prefetch_l1(theta + j)
            entry = entry + 1
    entries = entry
    for entry in range(entries):
        if entry + 2 * CATCH_UP_AHEAD < entries:
            j = b.entry_place[entry + 2 * CATCH_UP_AHEAD]
            fastgd_prefetch_l1(b.place_step + 2 * j)
            fastgd_prefetch_l1(theta + j)
        if entry + CATCH_UP_AHEAD < entries:
            j = b.entry_place[entry + CATCH_UP_AHEAD]
            fastgd_prefetch_l1(table + 4 * (now - b.place_step[2 * j + 1]))
        j = b.entry_place[entry]
        place = b.place_step + 2 * j
        if place[0] < 0:
            place[0] = <int32_t>t
            b.column_of[t] = <int32_t>j
            catch_up_column(&e.config, table, place + 1, j, now, theta, state, d, k)
            for o in range(k):
                b.theta[o * b.t_max + t] = theta[o * d + j]
                for v in range(b.slots):
                    b.state[v * b.stride + o * b.t_max + t] = state[v * stride + o * d + j]
            if e.inv_scale != NULL:
                b.mean[t] = 0.0  # no centering here (EpochPlan.catch_up_table)
                b.inv_scale[t] = e.inv_scale[j]
            t = t + 1
        b.entry_place[entry] = place[0]
    b.t = t
    if k > 1:  # outputs o t + q: close up the gaps of t_max - t after each
        for o in range(1, k):
            memmove(b.theta + o * t, b.theta + o * b.t_max, t * sizeof(double))
            for v in range(b.slots):
                memmove(b.state + v * b.stride + o * t, b.state + v * b.stride + o * b.t_max,
                        t * sizeof(double))
    for o in range(k):
        b.theta[k * t + o] = theta[k * d + o]
        for v in range(b.slots):
            b.state[v * b.stride + k * t + o] = state[v * stride + k * d + o]


cdef void scatter_batch(const Epoch* e, long now, double* theta, double* state,
                        Py_ssize_t stride, Compact* b) noexcept nogil:
    """b's updated weights back into theta and the state, at step `now`."""
    cdef Py_ssize_t d = e.d, k = e.loss.k, t = b.t, q, j, o, v
    for q in range(t):
        j = b.column_of[q]
        for o in range(k):
            theta[o * d + j] = b.theta[o * t + q]
            for v in range(b.slots):
                state[v * stride + o * d + j] = b.state[v * b.stride + o * t + q]
        b.place_step[2 * j + 1] = <int32_t>now
    for o in range(k):
        theta[k * d + o] = b.theta[k * t + o]
        for v in range(b.slots):
            state[v * stride + k * d + o] = b.state[v * b.stride + k * t + o]


cdef void batch_sums(const floating* values, const index_t* columns, const index_t* indptr,
                     const floating* y, const floating* sw, const Order* order, Py_ssize_t lo,
                     Py_ssize_t hi, const Loss* loss, const Compact* b,
                     double* z) noexcept nogil:
    """The gradient sums of the batch [lo, hi) at b.params into b.sums (the entries'
    places in b: b.entry_place, or their columns without), its loss and weight after
    them."""
    cdef Py_ssize_t k = loss.k, t = b.t, p, i, o, m, n_params = k * (b.t + 1)
    cdef double loss_sum = 0.0, weight_sum = 0.0
    cdef const int32_t* place = b.entry_place
    memset(b.sums, 0, (n_params + N_SCALARS) * sizeof(double))
    for p in range(lo, hi):
        i = row_at(order, p)
        m = indptr[i + 1] - indptr[i]
        for o in range(k):
            if place == NULL:
                z[o] = csr_dot(values + indptr[i], columns + indptr[i], m, b.params + o * t,
                               1, <index_t*>NULL)
            else:
                z[o] = csr_dot(values + indptr[i], place, m, b.params + o * t, 1,
                               <int32_t*>NULL)
            z[o] += b.params[k * t + o]
        row_residuals(loss, k, z, y, sw, i, &loss_sum, &weight_sum)
        for o in range(k):
            b.sums[k * t + o] += z[o]
            if place == NULL:
                csr_axpy(values + indptr[i], columns + indptr[i], m, z[o], b.sums + o * t, 1)
            else:
                csr_axpy(values + indptr[i], place, m, z[o], b.sums + o * t, 1)
        if place != NULL:
            place = place + m
    b.sums[n_params + SUM_LOSS] = loss_sum
    b.sums[n_params + SUM_W] = weight_sum


cdef inline void advise_entries(const floating* values, const index_t* columns,
                                Py_ssize_t lo, Py_ssize_t hi, int how) noexcept nogil:
    """madvise `how` for the stored values and column indices lo to hi of CSR X."""
    fastgd_advise(values + lo, (hi - lo) * sizeof(floating), how)
    fastgd_advise(columns + lo, (hi - lo) * sizeof(index_t), how)


cdef void advise_csr_window(const Shuffle* s, Py_ssize_t window, const floating* values,
                            const index_t* columns, const index_t* indptr) noexcept nogil:
    """advise_window for CSR X: the stored entries of each block's rows, a run of each
    array (two where the rotation wraps around)."""
    cdef Py_ssize_t x = window << s.window_shift, stop = window_stop(s, window), start, past
    cdef Py_ssize_t size
    while x < stop:
        size = window_block(s, x, stop, &start, &past)
        advise_entries(values, columns, indptr[start], indptr[start + size - past],
                       FASTGD_WILL_NEED)
        if past > 0:
            advise_entries(values, columns, indptr[0], indptr[past], FASTGD_WILL_NEED)
        x = x + size


cdef inline void csr_read_ahead(const Epoch* e, Py_ssize_t lo, Py_ssize_t* advised,
                                  const floating* values, const index_t* columns,
                                  const index_t* indptr) noexcept nogil:
    """read_ahead for CSR X: lo published for the thread that announces the windows, or
    without one, the windows due at lo announced (e.readahead set)."""
    if e.progress != NULL:
        e.progress[0] = lo
        return
    if e.readahead == NULL:
        return
    while advised[0] < windows_due(&e.order.shuffle, lo):
        advise_csr_window(&e.order.shuffle, advised[0], values, columns, indptr)
        advised[0] += 1


cdef void csr_epoch(const floating* values, const index_t* columns, const index_t* indptr,
                    const floating* y, const floating* sw, Epoch* e, const double* table,
                    double* theta, double* state, Py_ssize_t stride, Compact* b,
                    double* z) noexcept nogil:
    """The epoch's batches (table NULL: b is the whole model, updated every step)."""
    cdef Py_ssize_t n = e.n, d = e.d, k = e.loss.k, lo = 0, hi, q, j
    cdef long steps = 0
    cdef double weight, loss_total = 0.0, weight_total = 0.0
    cdef double beta1_t = pow(e.config.beta1, e.step), beta2_t = pow(e.config.beta2, e.step)
    cdef Epoch sub = e[0]   # the batch's model: its t columns
    cdef Py_ssize_t advised = 0  # windows announced
    while lo < n:
        csr_read_ahead(e, lo, &advised, values, columns, indptr)
        hi = min(lo + e.batch_size, n)
        if table != NULL:
            compact_batch(columns, indptr, e.order, lo, hi, e, table, steps, theta, state,
                          stride, b)
            sub.d = b.t
            sub.mean = b.mean if e.inv_scale != NULL else NULL
            sub.inv_scale = b.inv_scale
        to_original(b.theta, sub.mean, sub.inv_scale, b.t, k, b.params)
        batch_sums(values, columns, indptr, y, sw, e.order, lo, hi, &e.loss, b, z)
        lo = hi
        weight = b.sums[k * (b.t + 1) + SUM_W]
        if weight != 0.0:  # zero-weight rows carry no gradient
            loss_total += b.sums[k * (b.t + 1) + SUM_LOSS]
            weight_total += weight
            if not isfinite(b.sums[k * (b.t + 1) + SUM_LOSS]):
                lo = n  # stop before the update
            else:
                steps += 1
                beta1_t *= e.config.beta1
                beta2_t *= e.config.beta2
                batch_update(&sub, b.sums, weight, b.theta, b.state, b.stride, b.grad,
                             beta1_t, beta2_t)
                if table != NULL:
                    scatter_batch(e, steps, theta, state, stride, b)
        if table != NULL:
            for q in range(b.t):
                b.place_step[2 * b.column_of[q]] = -1
    if table != NULL:
        for j in range(d):
            catch_up_column(&e.config, table, b.place_step + 2 * j + 1, j, steps, theta,
                            state, d, k)
    e.loss_total = loss_total
    e.weight_total = weight_total
    e.steps = steps


cdef inline double scaled_dot(const floating* values, const index_t* columns, Py_ssize_t m,
                              const double* w, const double* inv_scale) noexcept nogil:
    """sum_q values[q] (inv_scale[columns[q]]) w[columns[q]]: csr_dot's, scaled (inv_scale
    NULL: 1)."""
    cdef double s = 0.0
    cdef Py_ssize_t q
    if inv_scale == NULL:
        return csr_dot(values, columns, m, w, 1, <index_t*>NULL)
    for q in range(m):
        s += values[q] * inv_scale[columns[q]] * w[columns[q]]
    return s


cdef void csr_sgd_epoch(const floating* values, const index_t* columns,
                        const index_t* indptr, const floating* y, const floating* sw,
                        Epoch* e, double* theta, double* r) noexcept nogil:
    """The epoch of plain SGD (L2 at most: EpochPlan.global_scale), whose weights all decay
    alike between a column's data gradients: they are held as a global scale s times
    theta's, so a step's decay 1 - lr l2 is one multiplication of s and a batch costs its
    entries alone (no per-column step counts to catch up): each row's weights gathered
    (later rows' lines requested meanwhile: request_row_lines), then its gradient
    scattered into the lines just read, as scikit-learn's SGD does. The same steps as csr_epoch's, to rounding.
    r: batch_size k doubles, the batch's residuals."""
    cdef Py_ssize_t n = e.n, d = e.d, k = e.loss.k, nw = e.loss.k * e.d
    cdef Py_ssize_t lo = 0, hi, p, i, o, q, j, start, m
    cdef long steps = 0
    cdef double scale = 1.0, decay = 1.0 - e.learning_rate * e.l2, a, value, total
    cdef double loss_sum, weight_sum, loss_total = 0.0, weight_total = 0.0
    cdef const double* inv_scale = e.inv_scale
    cdef Py_ssize_t advised = 0  # windows announced
    while lo < n:
        csr_read_ahead(e, lo, &advised, values, columns, indptr)
        hi = min(lo + e.batch_size, n)
        loss_sum = 0.0
        weight_sum = 0.0
        for p in range(lo, hi):
            i = row_at(e.order, p)
            start = indptr[i]
            m = indptr[i + 1] - start
            request_row_lines(values, columns, indptr, e.order, p, n, theta)
            for o in range(k):
                r[(p - lo) * k + o] = scale * scaled_dot(values + start, columns + start, m,
                                                         theta + o * d, inv_scale) + theta[nw + o]
            row_residuals(&e.loss, k, r + (p - lo) * k, y, sw, i, &loss_sum, &weight_sum)
        if weight_sum == 0.0:  # zero-weight rows carry no gradient
            lo = hi
            continue
        loss_total += loss_sum
        weight_total += weight_sum
        if not isfinite(loss_sum):
            break  # stop before the update
        steps += 1
        scale *= decay
        a = e.learning_rate / (weight_sum * scale)
        for p in range(lo, hi):
            i = row_at(e.order, p)
            start = indptr[i]
            m = indptr[i + 1] - start
            for o in range(k):
                for q in range(start, start + m):
                    j = columns[q]
                    value = a * r[(p - lo) * k + o] * values[q]
                    if inv_scale != NULL:
                        value = value * inv_scale[j]
                    theta[o * d + j] -= value
        for o in range(k):  # the intercepts: no penalty, no scale
            total = 0.0
            for p in range(lo, hi):
                total += r[(p - lo) * k + o]
            theta[nw + o] -= e.learning_rate * (total / weight_sum)
        if scale < 1e-100:  # the weights take it (O(d): 2.3e6 steps at lr alpha = 1e-4)
            for j in range(nw):
                theta[j] *= scale
            scale = 1.0
        lo = hi
    for j in range(nw):
        theta[j] *= scale
    e.loss_total = loss_total
    e.weight_total = weight_total
    e.steps = steps


cdef Py_ssize_t batch_entries(rows, Py_ssize_t batch_size, Py_ssize_t longest,
                              Py_ssize_t nnz):
    """The most stored entries a batch reads (1 at least): batch_size of the longest
    rows, and no more than X stores unless `rows` repeats a row."""
    cdef Py_ssize_t entries = batch_size * longest
    if rows is None or len(np.unique(rows)) == len(rows):
        entries = min(nnz, entries)
    return max(1, entries)


def csr_run_epoch(problem, double[::1] theta, dict state, plan, int n_threads,
                  workspace=None):
    """run_epoch (fastgd/_epoch.pxi) for CSR problem.X, on one thread (see above): each
    batch in O(its stored entries) where plan.catch_up_table allows (with plain SGD, by a
    global scale: plan.global_scale), else in O(d)."""
    X = problem.X
    n = X.shape[0] if problem.rows is None else len(problem.rows)
    if plan.batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    table = (plan.catch_up_table(-(-n // plan.batch_size))
             if n and not plan.global_scale() else None)
    return _csr_run_epoch(X.data, X.indices, X.indptr, X.shape[1], problem.Y,
                          problem.sample_weight, problem.rows, problem.loss, theta, state,
                          plan, table)


def _csr_run_epoch(const floating[::1] values, const index_t[::1] columns,
                   const index_t[::1] indptr, Py_ssize_t d, const floating[:, ::1] Y,
                   const floating[::1] sample_weight, const Py_ssize_t[::1] rows, loss,
                   double[::1] theta, dict state, plan, const double[:, ::1] table):
    """csr_run_epoch's checks, buffers and nogil run. Long because every buffer the run
    reads is a typed local of this one scope (Cython types no locals in a branch), kept
    alive through it: the row order, the Epoch, the inverse scales, the compact model's
    vectors (or the global scale's residuals)."""
    cdef Py_ssize_t n_rows = csr_rows(values, columns, indptr)
    cdef Py_ssize_t k = checked_parameters(d, theta, state, plan), j
    cdef Py_ssize_t n_params = theta.shape[0], stride = whole_lines(n_params)
    cdef Order order = make_order(plan.shuffle_keys, rows, n_rows, plan.shuffle_blocks)
    if order.n == 0:
        raise ValueError("no rows to train on")
    if table is not None and (table.shape[0] < (order.n + plan.batch_size - 1)
                              // plan.batch_size + 1 or table.shape[1] != 4):
        raise ValueError("the catch-up table must have a row of 4 for each step count")
    if d >= 2 ** 31 or order.n >= 2 ** 31:
        raise ValueError("the sparse epoch counts features and steps in 32 bits")
    std = plan.std
    cdef const double[::1] mean = None if std is None else std.mean
    cdef double[::1] inv_scale = None if std is None else 1.0 / std.divisor
    cdef Epoch e
    e.n = order.n
    e.d = d
    e.loss = checked_loss(loss, k, n_rows, Y, sample_weight)
    e.order = &order
    plan_into(&e, plan)
    e.mean = NULL if std is None else &mean[0]
    e.inv_scale = NULL if std is None else &inv_scale[0]
    slots = plan.optimizer.slots
    cdef double[:, ::1] own = aligned_array((1 + OPTIM_SLOTS, stride))
    own.base[0, :n_params] = theta
    for v, name in enumerate(slots):
        own.base[1 + v, :n_params] = state[name]
    # the batch's model: the whole one (no table), or vectors for its columns at most
    # (none with a global scale, which updates theta in place)
    cdef bint global_scale = plan.global_scale()
    cdef Py_ssize_t longest = int(np.diff(indptr).max())
    cdef Py_ssize_t t_max = 1 if global_scale else d if table is None else min(
        d, <Py_ssize_t>indptr[n_rows], plan.batch_size * longest)
    cdef Py_ssize_t compact = whole_lines(k * (t_max + 1) + N_SCALARS)
    # params, grad, sums; with a table, the compact theta, state, mean and scale too
    cdef double[:, ::1] buffers = aligned_array((3 if table is None else 6 + OPTIM_SLOTS,
                                                 compact), np.empty)
    cdef int32_t[:, ::1] place_step = np.zeros((d if table is not None else 1, 2),
                                               dtype=np.int32)
    place_step.base[:, 0] = -1
    cdef int32_t[::1] column_of = np.empty(max(t_max, 1), dtype=np.int32)
    cdef int32_t[::1] entry_place = np.empty(
        batch_entries(rows, plan.batch_size, longest, indptr[n_rows])
        if table is not None else 1, dtype=np.int32)
    cdef double[::1] z = np.empty(whole_lines(k))
    cdef Compact b
    b.t = d
    b.t_max = t_max
    b.slots = len(slots)
    b.place_step = &place_step[0, 0]
    b.column_of = &column_of[0]
    b.entry_place = NULL if table is None else &entry_place[0]
    b.params = &buffers[0, 0]
    b.grad = &buffers[1, 0]
    b.sums = &buffers[2, 0]
    if table is None:  # the whole model, in place
        b.stride = stride
        b.theta = &own[0, 0]
        b.state = &own[1, 0]
        b.mean = <double*>e.mean
        b.inv_scale = <double*>e.inv_scale
    else:
        b.stride = compact
        b.theta = &buffers[3, 0]
        b.state = &buffers[4, 0]
        b.mean = &buffers[4 + OPTIM_SLOTS, 0]
        b.inv_scale = &buffers[5 + OPTIM_SLOTS, 0]
    cdef const floating* values_ptr = &values[0] if values.shape[0] else NULL
    cdef const index_t* columns_ptr = &columns[0] if columns.shape[0] else NULL
    cdef const floating* swp = sample_weight_ptr(sample_weight)
    cdef double[::1] residuals = np.empty(k * min(plan.batch_size, order.n)
                                          if global_scale else 1)
    # A block shuffle of X's own rows (a file that streams, usually): as the dense epoch,
    # its windows announced ahead, the rest of X read without the kernel's read-around.
    cdef Py_ssize_t nnz = indptr[n_rows]
    e.readahead = NULL
    if order.shuffled and order.shuffle.block_shift >= 0 and rows is None and nnz:
        e.readahead = <const char*>values_ptr
    with nogil:
        if e.readahead != NULL:
            advise_entries(values_ptr, columns_ptr, 0, nnz, FASTGD_RANDOM)
        if global_scale:
            csr_sgd_epoch(values_ptr, columns_ptr, &indptr[0], &Y[0, 0], swp, &e, &own[0, 0],
                          &residuals[0])
        else:
            csr_epoch(values_ptr, columns_ptr, &indptr[0], &Y[0, 0], swp, &e,
                      NULL if table is None else &table[0, 0], &own[0, 0], &own[1, 0],
                      stride, &b, &z[0])
        if e.readahead != NULL:  # back to sequential reads' read-ahead for other passes
            advise_entries(values_ptr, columns_ptr, 0, nnz, FASTGD_NORMAL)
    theta[:] = own[0, :n_params]
    for v, name in enumerate(slots):
        state[name][:] = own.base[1 + v, :n_params]
    return e.loss_total, e.weight_total, e.steps
