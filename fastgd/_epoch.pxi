# The mini-batch epoch: every batch's pass and optimizer update in one nogil call, the
# threads working through the batches together. Included by fastgd/_kernels.pxi.

cdef enum:
    LONG_WAITS_TO_SOLO = 16   # long barrier waits before an epoch's threads go on as one,
                              # if also 1 % of its barriers or more (a busy partner makes
                              # nearly all waits long; this VM's hiccups, a few an epoch)


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


cdef struct Epoch:
    # What every thread of an epoch reads (set up by run_epoch)
    Py_ssize_t n, d, batch_size
    Layout lay
    Loss loss
    const Order* order         # NULL: positions are rows
    const char* readahead      # X (CSR: its values) when its block shuffle's windows are
    Py_ssize_t row_bytes       # announced (advise_window) WINDOWS_AHEAD ahead; else NULL
    int64_t* progress          # where thread 0 publishes the epoch's position for the
                               # thread reading ahead of it (fastgd/_prefetch.py), which
                               # then announces nothing itself; NULL: none
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


cdef inline void read_ahead(Epoch* e, Py_ssize_t lo, Py_ssize_t* advised) noexcept nogil:
    """Thread 0's part in reading a block shuffle's windows ahead of position lo: lo
    published for the thread that announces them (fastgd/_prefetch.py), or without one,
    the windows due announced itself (e.readahead set)."""
    if e.progress != NULL:
        e.progress[0] = lo
    elif e.readahead != NULL:
        while advised[0] < windows_due(&e.order.shuffle, lo):
            advise_window(&e.order.shuffle, advised[0], e.readahead, e.row_bytes)
            advised[0] += 1


cdef inline Py_ssize_t batch_chunks(Py_ssize_t lo, Py_ssize_t n, Py_ssize_t batch_size,
                                    Py_ssize_t d, Py_ssize_t k, bint by_columns,
                                    Py_ssize_t* rows) noexcept nogil:
    """Chunks of the batch starting at position lo (rows per chunk into `rows`)."""
    cdef Py_ssize_t size = min(batch_size, n - lo)
    rows[0] = chunk_rows(size, d, k, by_columns)
    return (size + rows[0] - 1) // rows[0]


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
    same update to its own copy of the parameters, `own` = (theta, the optimizer state,
    params, grad, sums, and its workspace for the passes): bit-identical copies for the
    price of one barrier per batch. Consecutive batches put their partial sums in
    alternate halves of e.partial, so a thread that has updated can fill in the next batch
    while the others still read this one.

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
    cdef double* state = own + slot          # the optimizer's: OPTIM_SLOTS vectors, slot apart
    cdef double* params = own + (1 + OPTIM_SLOTS) * slot  # in original units, per batch
    cdef double* grad = own + (2 + OPTIM_SLOTS) * slot
    cdef double* sums = own + (3 + OPTIM_SLOTS) * slot
    cdef double* work = own + (4 + OPTIM_SLOTS) * slot    # the passes' workspace (work_size)
    cdef double* partial
    cdef floating* my_scratch = (NULL if scratch == NULL
                                 else scratch + tid * scratch_size(d, e.loss.ky))
    cdef Py_ssize_t lo = 0, hi, rows, n_chunks
    cdef long batch = 0, steps = 0, long_waits = 0
    cdef double weight, loss_total = 0.0, weight_total = 0.0
    cdef double beta1_t = pow(e.config.beta1, e.step), beta2_t = pow(e.config.beta2, e.step)
    cdef Py_ssize_t advised = 0  # windows announced (thread 0)
    while lo < n:
        if tid == 0:
            read_ahead(e, lo, &advised)
        hi = min(lo + e.batch_size, n)
        n_chunks = batch_chunks(lo, n, e.batch_size, d, k, by_columns, &rows)
        partial = e.partial + (batch % 2) * e.max_chunks * slot
        batch += 1
        to_original(theta, e.mean, e.inv_scale, d, k, params)
        thread_chunks(X, y, sw, e, lo, hi, n_chunks, rows, tid, n_team, params,
                      partial, my_scratch, work)
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
        steps += 1
        beta1_t *= e.config.beta1
        beta2_t *= e.config.beta2
        batch_update(e, sums, weight, theta, state, slot, grad, beta1_t, beta2_t)
    if tid == 0:
        e.loss_total = loss_total
        e.weight_total = weight_total
        e.steps = steps


cdef inline void thread_chunks(const floating* X, const floating* y, const floating* sw,
                               Epoch* e, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t n_chunks,
                               Py_ssize_t rows, int tid, int n_team, const double* params,
                               double* partial, floating* scratch, double* work) noexcept nogil:
    """Thread tid's share of the batch [lo, hi) of n_chunks chunks of `rows` positions: the
    partial sums of chunks first_chunk(tid) to first_chunk(tid + 1) - 1 into `partial`, the
    last requesting where the thread goes on in the next batch."""
    cdef Py_ssize_t k = e.loss.k, c, start, stop, next_start
    cdef Py_ssize_t slot = whole_lines(sums_width(e.d, k))
    cdef bint by_columns = not e.lay.rows and e.order == NULL
    cdef Py_ssize_t first = first_chunk(n_chunks, tid, n_team)
    cdef Py_ssize_t last = first_chunk(n_chunks, tid + 1, n_team)
    for c in range(first, last):
        start = lo + c * rows
        stop = min(start + rows, hi)
        if c + 1 < last:
            next_start = stop
        else:  # this thread's first position in the next batch (for prefetching)
            next_start = thread_start(hi, e.n, e.batch_size, e.d, k, by_columns, tid, n_team)
        chunk_sums(X, e.lay, e.d, y, sw, params, &e.loss, e.order, start, stop, next_start,
                   partial + c * slot, scratch, work)


cdef inline void batch_update(const Epoch* e, const double* sums, double weight,
                              double* theta, double* state, Py_ssize_t slot, double* grad,
                              double beta1_t, double beta2_t) noexcept nogil:
    """A batch's update from its gradient sums (weight: the sum of its weights, > 0): the
    mean gradient in the trained parameters ((X^T r - mean sum r) / scale, and sum r), the
    ridge part of the penalty, clipping, the optimizer's step, the lasso's proximal step."""
    cdef Py_ssize_t d = e.d, k = e.loss.k, nw = e.loss.k * e.d, o, j
    cdef const double* mu = e.mean
    cdef const double* inv_sd = e.inv_scale
    for o in range(k):
        grad[nw + o] = sums[nw + o] / weight
        for j in range(d):
            grad[o * d + j] = sums[o * d + j] / weight
            if mu != NULL:
                grad[o * d + j] = (grad[o * d + j] - mu[j] * grad[nw + o]) * inv_sd[j]
    if e.l2 > 0.0:
        add_l2(&e.config, grad, theta, nw, e.l2)
    if e.max_norm > 0.0:
        clip_norm(grad, nw + k, e.max_norm)
    optim_step(&e.config, theta, grad, state, slot, nw + k, nw, beta1_t, beta2_t,
               e.learning_rate)
    if e.l1 > 0.0:
        prox_l1(&e.config, theta, state, slot, nw, e.learning_rate, e.l1, beta2_t, grad)


def run_epoch(problem, double[::1] theta, dict state, plan, int n_threads):
    """One epoch, every batch in one nogil call: forward pass, loss, gradient, update.

    theta = (W, b) are the trained parameters of a model of k outputs (k (d + 1) values:
    W (k, d) row by row, then b; acting on standardized features when plan.std is given);
    theta and `state` (the optimizer's named state vectors) are updated in place. `plan`
    (fastgd._problem.EpochPlan) holds the optimizer, the learning rate, the penalty,
    clipping, batch size, the number of updates made before this epoch and the epoch's
    shuffle keys. problem.Y is (n, ky) as problem.loss.targets_per_row(k). Batches are
    consecutive positions, the last one partial; with shuffle keys (three 64-bit keys, new
    each epoch) position p reads row shuffled_row(p); with problem.rows, only those rows are
    trained on (positions index them; see Order). A batch with a non-finite loss stops the
    epoch before its update. The threads work through the epoch together (see
    epoch_worker).

    Returns (sum of w_i * loss_i over the batches run, sum of their weights, updates made).
    """
    return _run_epoch(problem.X, problem.Y, problem.sample_weight, problem.rows, problem.loss,
                      theta, state, plan, n_threads)


cdef Py_ssize_t checked_parameters(Py_ssize_t d, double[::1] theta, dict state,
                                   plan) except -1:
    """The outputs k of theta, once theta, the optimizer's state and the standardization
    fit d features."""
    cdef Py_ssize_t n_params = theta.shape[0], k = n_params // (d + 1)
    slots = plan.optimizer.slots
    if n_params != k * (d + 1) or set(state) != set(slots) or any(
            state[name].shape != (n_params,) for name in slots):
        raise ValueError(f"theta and the optimizer state {tuple(slots)} must have k ({d} + 1) "
                         f"entries for {d} features")
    if len(slots) > OPTIM_SLOTS:
        raise ValueError(f"the kernels keep {OPTIM_SLOTS} state vectors at most")
    std = plan.std
    if std is not None and (len(std.mean) != d or len(std.divisor) != d):
        raise ValueError(f"mean and scale must have {d} entries")
    return k


cdef int plan_into(Epoch* e, plan) except -1:
    """An EpochPlan's settings into e: the optimizer, penalty, clipping, rate, batch size
    and the updates made before."""
    e.config = config_of(plan.optimizer)
    e.batch_size = plan.batch_size
    e.l2 = plan.l2
    e.l1 = plan.l1
    e.max_norm = plan.clip_norm
    e.learning_rate = plan.learning_rate
    e.step = plan.step
    e.progress = NULL
    cdef int64_t[::1] progress
    if plan.progress is not None:
        progress = plan.progress
        e.progress = &progress[0]  # the plan keeps the array alive through the epoch
    return 0


cdef int epoch_team(Epoch* e, bint shuffled, int n_threads) noexcept nogil:
    """The threads of an epoch; sets e.max_chunks. Threads share each batch when its rows
    are scattered (shuffled: each thread keeps its own rows in flight) or when it is large;
    a small batch in order runs fastest on one (measured, batch 32 and 256 at d = 100: two
    threads 1.1-1.3 x slower). Full batches all have the same chunks, but the last partial
    batch can have more: chunk_rows caps the chunk count, so smaller batches can get
    smaller chunks."""
    cdef Py_ssize_t n = e.n, size = e.batch_size, d = e.d, k = e.loss.k, chunk
    cdef bint by_columns = not e.lay.rows and e.order == NULL
    e.max_chunks = max(batch_chunks(0, n, size, d, k, by_columns, &chunk),
                       batch_chunks((n - 1) // size * size, n, size, d, k, by_columns, &chunk))
    if not shuffled and min(size, n) * d * k < PARALLEL_MIN_ELEMS:
        return 1
    return <int>min(max(n_threads, 1), e.max_chunks)


def _run_epoch(const floating[:, :] X, const floating[:, ::1] Y,
               const floating[::1] sample_weight, const Py_ssize_t[::1] rows, loss,
               double[::1] theta, dict state, plan, int n_threads):
    cdef Py_ssize_t d = X.shape[1], n_params = theta.shape[0]
    cdef Py_ssize_t k = checked_parameters(d, theta, state, plan)
    slots = plan.optimizer.slots
    std = plan.std
    cdef const double[::1] mean = None if std is None else std.mean
    cdef const double[::1] scale = None if std is None else std.divisor
    cdef Py_ssize_t batch_size = plan.batch_size
    shuffle_keys = plan.shuffle_keys
    cdef Py_ssize_t width = sums_width(d, k)
    cdef Epoch e
    cdef Order order = make_order(shuffle_keys, rows, X.shape[0], plan.shuffle_blocks)
    cdef Py_ssize_t n = order.n
    if n == 0:
        raise ValueError("no rows to train on")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    e.n = n
    e.d = d
    e.lay = layout_of(X)
    e.loss = checked_loss(loss, k, X.shape[0], Y, sample_weight)
    plan_into(&e, plan)
    e.order = NULL if shuffle_keys is None and rows is None else &order
    # A block shuffle of X's own rows (a file that streams, usually): its windows are
    # announced ahead, and the rest of X read without the kernel's read-around, which would
    # fetch megabytes beside each block that the window does not use.
    e.readahead = NULL
    e.row_bytes = X.strides[0]
    if order.shuffled and order.shuffle.block_shift >= 0 and rows is None and e.lay.rows:
        e.readahead = <const char*>&X[0, 0]
    cdef int threads = epoch_team(&e, order.shuffled, n_threads)
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
    # Each thread's parameters, optimizer state (OPTIM_SLOTS vectors) and per-batch buffers
    # (6 slots of `width` in all), and its workspace, each starting a cache line.
    cdef Py_ssize_t slot = whole_lines(width)
    cdef Py_ssize_t own_size = (4 + OPTIM_SLOTS) * slot + whole_lines(work_size(d, k))
    cdef double[:, ::1] own = aligned_array((threads, own_size))
    own.base[:, :n_params] = theta
    for j, name in enumerate(slots):
        own.base[:, (1 + j) * slot:(1 + j) * slot + n_params] = state[name]
    cdef double* own_ptr = &own[0, 0]
    cdef const floating* Xp = &X[0, 0]
    cdef const floating* yp = &Y[0, 0]
    cdef const floating* swp = sample_weight_ptr(sample_weight)
    cdef int tid
    cdef size_t x_bytes = X.shape[0] * e.row_bytes
    with nogil:
        if e.readahead != NULL:
            fastgd_advise(e.readahead, x_bytes, FASTGD_RANDOM)
        if threads > 1:
            with parallel(num_threads=threads):
                tid = omp_get_thread_num()
                epoch_worker(Xp, yp, swp, scratch_ptr, &e, own_ptr + tid * own_size, tid,
                             omp_get_num_threads())
        else:
            epoch_worker(Xp, yp, swp, scratch_ptr, &e, own_ptr, 0, 1)
        if e.readahead != NULL:  # back to sequential reads' read-ahead for other passes
            fastgd_advise(e.readahead, x_bytes, FASTGD_NORMAL)
    theta[:] = own[0, :n_params]
    for j, name in enumerate(slots):
        state[name][:] = own.base[0, (1 + j) * slot:(1 + j) * slot + n_params]
    return e.loss_total, e.weight_total, e.steps
