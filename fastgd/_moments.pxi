# The moments pass: the weighted mean and the centered cross-products of the columns of
# [X, Y] in one read, what a quadratic loss's whole objective (and the standardization, and
# the best constant's loss) is made of. Included by fastgd/_kernels.pxi, after
# _hessian.pxi, whose blocks, panels, tiles and plan (gram_plan) it shares.
#
# Sums of products of raw values would cancel catastrophically for features far from zero
# (an offset of 1e6 and a spread of 1 leave no digits of the variance), so each block of
# rows is centered on its own mean (a first read of the block, in cache) and its
# cross-products added to the running ones with Chan et al.'s pairwise update,
#
#     M = M_a + M_b + W_a W_b / (W_a + W_b) (mean_b - mean_a) (mean_b - mean_a)^T,
#
# block after block in row order within a chunk, and chunk after chunk in chunk order: the
# same operations in the same order for any thread count. By tiles (wide), every thread
# keeps its own copy of the running weight and mean (the same numbers) and updates the
# tiles it owns.


def moments_pass(problem, int n_threads):
    """(weight, mean (q,), comoment (q, q)) of the columns [X, Y] (q = d + Y's columns),
    weighted by problem.sample_weight, over the problem's rows (all, or problem.rows):
    comoment[i, j] = sum_r w_r (v_ri - mean_i) (v_rj - mean_j). fastgd.reference.moments's
    mathematics."""
    X, Y = problem.X, problem.Y
    q = X.shape[1] + Y.shape[1]
    padded = (q + 7) // 8 * 8
    rows = row_numbers(problem)
    sums = np.zeros(1 + padded + padded * padded)  # weight, mean, comoment
    as_is = np.append(np.ones(X.shape[1]), np.zeros(X.shape[1]))
    _moments_pass(X, Y, problem.sample_weight, rows, as_is, sums, n_threads)
    if np.isnan(sums[0]):
        raise MemoryError("the moments pass could not allocate its blocks of rows")
    M = sums[1 + padded:].reshape(1, padded, padded)
    mirror_upper(M, q)
    return float(sums[0]), sums[1:1 + q].copy(), M[0, :q, :q].copy()


def _moments_pass(const floating[:, :] X, const floating[:, ::1] Y,
                  const floating[::1] sample_weight, const Py_ssize_t[::1] rows,
                  const double[::1] as_is, double[::1] sums, int n_threads):
    # as_is: d ones, then d zeros: pack_row's inverse divisor and shift for a row as it is
    cdef Py_ssize_t n = X.shape[0] if rows is None else rows.shape[0], i, c
    cdef Py_ssize_t d = X.shape[1], ky = Y.shape[1]
    cdef Py_ssize_t padded = (d + ky + 7) // 8 * 8
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have {X.shape[0]} rows, got {Y.shape[0]}")
    if sample_weight is not None and sample_weight.shape[0] != X.shape[0]:
        raise ValueError(f"sample_weight must have {X.shape[0]} entries, got "
                         f"{sample_weight.shape[0]}")
    check_rows(rows, X.shape[0])
    if n == 0:
        raise ValueError("the moments pass needs at least one row")
    cdef Py_ssize_t width = sums.shape[0]
    cdef GramPlan plan = gram_plan(n, padded, width, (d + ky) * sizeof(floating), n_threads)
    cdef double[:, ::1] partial = np.zeros((plan.n_chunks, width)) if plan.chunk else None
    cdef char[::1] failed = np.zeros(max(plan.threads, 1), dtype=np.int8)
    cdef Layout lay = layout_of(X)
    cdef const floating* swp = sample_weight_ptr(sample_weight)
    cdef const Py_ssize_t* rowp = NULL if rows is None else &rows[0]
    with nogil:
        if plan.chunk:
            moments_chunks(&X[0, 0], lay, d, &Y[0, 0], ky, swp, rowp, &as_is[0], n, padded,
                           plan, &partial[0, 0], width)
            for c in range(plan.n_chunks):  # in chunk order
                merge_moments(&sums[0], &partial[c, 0], padded, 0, 1, NULL)
        else:
            moments_tiles(&X[0, 0], lay, d, &Y[0, 0], ky, swp, rowp, &as_is[0], n, padded, plan,
                          &sums[0], &failed[0])
    if np.any(np.asarray(failed)):  # a thread without its buffers: no sums to trust
        sums[0] = NAN


cdef void moments_chunks(const floating* X, Layout lay, Py_ssize_t d, const floating* Y,
                         Py_ssize_t ky, const floating* sw, const Py_ssize_t* rows,
                         const double* as_is,
                         Py_ssize_t n, Py_ssize_t padded, GramPlan plan, double* partial,
                         Py_ssize_t width) noexcept nogil:
    """Chunk c's moments into partial[c] (zeroed), whole on one thread."""
    cdef Py_ssize_t c, start, stop, m
    cdef double* out
    cdef double* panels
    cdef double* block_sums
    cdef double* weighted
    with parallel(num_threads=plan.threads):
        panels = <double*>calloc(plan.block * padded, sizeof(double))  # padding stays 0
        block_sums = <double*>malloc((1 + padded + plan.block) * sizeof(double))
        weighted = <double*>malloc(plan.block * 4 * sizeof(double))
        for c in prange(plan.n_chunks, schedule="dynamic"):
            out = partial + c * width
            if panels == NULL or block_sums == NULL or weighted == NULL:
                out[0] = NAN  # out of memory: the weight says so
                continue
            start = c * plan.chunk
            stop = min(start + plan.chunk, n)
            while start < stop:
                m = min(plan.block, stop - start)
                if pack_centered(X, lay, d, Y, ky, sw, rows, as_is, start, m, padded,
                                 plan.block, panels, block_sums):
                    add_centered(panels, plan.block, block_sums, weighted, m, padded, 0, 1,
                                 out)
                start = start + m
        free(panels)
        free(block_sums)
        free(weighted)


cdef void moments_tiles(const floating* X, Layout lay, Py_ssize_t d, const floating* Y,
                         Py_ssize_t ky, const floating* sw, const Py_ssize_t* rows,
                         const double* as_is,
                        Py_ssize_t n, Py_ssize_t padded, GramPlan plan, double* sums,
                        char* failed) noexcept nogil:
    """Every thread centers every block and updates the tiles it owns (tile t: thread t mod
    threads), with its own running weight and mean; thread 0's are the result's. A thread
    that cannot allocate its buffers sets its own failed[thread] (zeroed)."""
    cdef Py_ssize_t start, m
    cdef double* panels
    cdef double* block_sums
    cdef double* weighted
    cdef double* running
    cdef int me, team
    with parallel(num_threads=plan.threads):
        me = omp_get_thread_num()
        team = omp_get_num_threads()
        panels = <double*>calloc(plan.block * padded, sizeof(double))
        block_sums = <double*>malloc((1 + padded + plan.block) * sizeof(double))
        weighted = <double*>malloc(plan.block * 4 * sizeof(double))
        running = <double*>calloc(1 + padded, sizeof(double))  # weight, mean: this thread's
        if panels != NULL and block_sums != NULL and weighted != NULL and running != NULL:
            start = 0
            while start < n:
                m = min(plan.block, n - start)
                if pack_centered(X, lay, d, Y, ky, sw, rows, as_is, start, m, padded,
                                 plan.block, panels, block_sums):
                    add_tiles(panels, plan.block, block_sums, weighted, m, padded, me, team,
                              running, sums + 1 + padded)
                start = start + m
            if me == 0:
                memcpy(sums, running, (1 + padded) * sizeof(double))
        else:  # out of memory: this thread's flag says so, the caller reports it
            failed[me] = 1
        free(panels)
        free(block_sums)
        free(weighted)
        free(running)


cdef bint pack_centered(const floating* X, Layout lay, Py_ssize_t d, const floating* Y,
                        Py_ssize_t ky, const floating* sw, const Py_ssize_t* rows,
                        const double* as_is, Py_ssize_t start, Py_ssize_t m, Py_ssize_t padded,
                        Py_ssize_t block, double* panels, double* block_sums) noexcept nogil:
    """Rows start..start+m-1 (of `rows` if given) as [x, y] minus the block's weighted mean,
    packed into panels; block_sums = [weight, mean (padded), each row's weight (m)]. False
    for a block of weight 0 (nothing to add). The rows are packed as they are, the means
    summed panel by panel (in registers), then subtracted."""
    cdef Py_ssize_t i, j, r, p
    cdef double w, total = 0.0
    cdef double* mean = block_sums + 1
    cdef double* weights = block_sums + 1 + padded
    cdef const floating* y
    for i in range(m):
        r = start + i if rows == NULL else rows[start + i]
        w = 1.0 if sw == NULL else <double>sw[r]
        weights[i] = w
        total = total + w
        pack_row(X + r * lay.rs, lay.cs, d, as_is + d, as_is, panels + i * 8, block * 8)
        y = Y + r * ky
        for j in range(ky):
            panel_at(panels, block, i, d + j)[0] = <double>y[j]
    block_sums[0] = total
    if total == 0.0:
        return False
    for p in range(padded // 8):
        fastgd_panel_wsum(panels + p * block * 8, weights, m, mean + p * 8)
    for j in range(padded):
        mean[j] = mean[j] / total
    for p in range(padded // 8):
        fastgd_panel_center(panels + p * block * 8, mean + p * 8, m)
    return True


cdef void add_centered(double* panels, Py_ssize_t block, const double* block_sums,
                       double* weighted, Py_ssize_t m, Py_ssize_t padded, Py_ssize_t first_tile,
                       Py_ssize_t tile_step, double* out) noexcept nogil:
    """A centered block's moments merged into out = [weight, mean, comoment] (its tiles
    first_tile, first_tile + tile_step, ...; the running weight and mean in out too)."""
    add_tiles(panels, block, block_sums, weighted, m, padded, first_tile, tile_step, out,
              out + 1 + padded)


cdef void add_tiles(double* panels, Py_ssize_t block, const double* block_sums,
                    double* weighted, Py_ssize_t m, Py_ssize_t padded, Py_ssize_t first_tile,
                    Py_ssize_t tile_step, double* running, double* M) noexcept nogil:
    """M's tiles first_tile, first_tile + tile_step, ... += the block's weighted
    cross-products and Chan's correction; running = [weight, mean] updated after."""
    cdef Py_ssize_t tile = first_tile, l0
    while tile < padded // 4:
        fastgd_weigh4(panel_at(panels, block, 0, tile * 4), block_sums + 1 + padded, 1, m,
                      weighted)
        l0 = (tile * 4) // 8 * 8
        while l0 < padded:
            fastgd_gram_tile(panels + (l0 // 8) * block * 8, weighted, m,
                             M + tile * 4 * padded + l0, padded)
            l0 = l0 + 8
        tile = tile + tile_step
    merge_moments(running, block_sums, padded, first_tile, tile_step, M)


cdef void merge_moments(double* acc, const double* part, Py_ssize_t padded,
                        Py_ssize_t first_tile, Py_ssize_t tile_step, double* M) noexcept nogil:
    """Chan et al.'s update of acc = [weight, mean (padded), comoment] by part = [weight,
    mean, ...]: the comoment's tiles first_tile, first_tile + tile_step, ... get part's
    comoment (unless M is given: part's cross-products are in M already, acc's comoment
    is M) and the spread of the two means; then acc's weight and mean."""
    cdef Py_ssize_t tile = first_tile, i, j, l0
    cdef double Wa = acc[0], Wb = part[0], total, f, fi
    cdef double* mean = acc + 1
    cdef const double* part_mean = part + 1
    cdef double* C = acc + 1 + padded if M == NULL else M
    cdef const double* part_C = part + 1 + padded
    cdef double* row
    if Wb == 0.0:
        return
    total = Wa + Wb
    f = Wa * Wb / total
    while tile < padded // 4:
        l0 = (tile * 4) // 8 * 8
        for i in range(tile * 4, tile * 4 + 4):
            row = C + i * padded
            if M == NULL:
                for j in range(l0, padded):
                    row[j] += part_C[i * padded + j]
            fi = f * (part_mean[i] - mean[i])
            for j in range(l0, padded):
                row[j] += fi * (part_mean[j] - mean[j])
        tile = tile + tile_step
    for j in range(padded):
        mean[j] = mean[j] + (part_mean[j] - mean[j]) * (Wb / total)
    acc[0] = total
