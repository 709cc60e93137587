# The Hessian pass: the mean loss, its gradient and its Hessian in the trained parameters, in
# one read of X. Included by fastgd/_kernels.pxi.
#
# A row of the design in trained units is a = ((x - mean) / divisor, 1), dp = d + 1 values.
# For each pair of outputs a <= b with a row Hessian h_ab(z) (one pair an output for an
# elementwise loss, k (k + 1) / 2 for the softmax), the pass sums w h_ab a a^T into a
# dp x dp matrix, the gradient w dloss/dz_a a, and the loss.
#
# Rows are read in blocks of GRAM_BLOCK_BYTES (a shape-only size); each block is widened,
# standardized and packed into panels of 8 columns (contiguous, zero-padded to a multiple of
# 8: no masked loads), its outputs z, derivatives and h computed, and each 4 x 8 tile of the
# Gram matrices summed over the block's rows in order (fastgd/_gram.h), then added into the
# matrix in block order. Two ways to share the work, both fixed by the shape alone, so that
# every entry sees the same operations in the same order whatever the thread count:
# - narrow models (their sums fit GRAM_CHUNKS_BYTES, and 1/32 of the rows' bytes, at least
#   GRAM_MIN_CHUNKS times): the rows in chunks, each chunk's sums apart, added in chunk
#   order after;
# - wide ones: the threads split the matrices by tiles of 4 rows (tile t to thread t mod
#   T); every thread packs every block (cheap next to the d^2 / 2 multiply-adds a row).
# Extra memory: a block per thread, and the chunks' sums (16 MB and 1/32 of X at most).

cdef extern from "_gram.h":
    void fastgd_gram_tile(const double* panel, const double* c, Py_ssize_t rows, double* G,
                          Py_ssize_t ldg) noexcept nogil
    double fastgd_panel_dot(const double* row, Py_ssize_t stride, const double* theta,
                            Py_ssize_t panels) noexcept nogil
    void fastgd_panel_axpy4(const double* cols, const double* r, Py_ssize_t r_stride,
                            Py_ssize_t rows, double* out) noexcept nogil
    void fastgd_pack_row_f64(const double* x, Py_ssize_t d, const double* mean,
                             const double* inverse, double* out, Py_ssize_t stride) noexcept nogil
    void fastgd_pack_row_f32(const float* x, Py_ssize_t d, const double* mean,
                             const double* inverse, double* out, Py_ssize_t stride) noexcept nogil
    void fastgd_weigh4(const double* cols, const double* h, Py_ssize_t h_stride,
                       Py_ssize_t rows, double* c) noexcept nogil
    void fastgd_panel_wsum(const double* panel, const double* w, Py_ssize_t rows,
                           double* sums) noexcept nogil
    void fastgd_panel_center(double* panel, const double* mean, Py_ssize_t rows) noexcept nogil

from libc.math cimport NAN
from libc.stdlib cimport calloc, free, malloc

from fastgd._design import assemble, design_parameters, flatten_gradient

cdef enum:
    GRAM_BLOCK_BYTES = 32768  # of a block of packed rows: the block stays in L1
    GRAM_MAX_BLOCK = 512       # rows per block at most
    GRAM_MIN_BLOCK = 64        # and at least
    GRAM_CHUNKS_BYTES = 16777216  # the chunks' sums of a narrow model at most (16 MB, and
                                  # 1/32 of the rows' bytes)
    GRAM_MIN_CHUNKS = 16       # a model with fewer chunks in that budget is wide: by tiles


def trained_units(std, Py_ssize_t d):
    """(mean, 1 / divisor) of the standardization std (0 and 1 without one), as the packed
    rows (x - mean) * inverse read them."""
    if not std:
        return np.zeros(d), np.ones(d)
    return (np.ascontiguousarray(std.mean, dtype=np.float64),
            1.0 / np.asarray(std.divisor, dtype=np.float64))


def row_numbers(problem):
    """The problem's rows as the passes read them: None (all) or intp row numbers."""
    return None if problem.rows is None else np.ascontiguousarray(problem.rows, dtype=np.intp)


cdef int check_rows(const Py_ssize_t[::1] rows, Py_ssize_t n_x) except -1:
    """A ValueError unless each of rows (None: all) is a row number of X's n_x."""
    cdef Py_ssize_t i
    if rows is not None:
        for i in range(rows.shape[0]):
            if not 0 <= rows[i] < n_x:
                raise ValueError(f"rows must be row numbers of X, got {rows[i]}")
    return 0


cdef struct GramPlan:
    Py_ssize_t block     # rows a block
    Py_ssize_t chunk     # rows a chunk (a multiple of block), or 0: one set of sums, by tiles
    Py_ssize_t n_chunks
    int threads


cdef GramPlan gram_plan(Py_ssize_t n, Py_ssize_t padded, Py_ssize_t width,
                        Py_ssize_t row_bytes, int n_threads) noexcept:
    """How a pass of padded x padded Gram sums (width doubles of sums in all) shares n rows
    of row_bytes each: by the shape alone, except the threads. Narrow sums: the rows in
    chunks, each chunk's sums apart and added in chunk order after; wide ones: the tiles of
    one set of sums to the threads."""
    cdef GramPlan plan
    plan.block = min(max(GRAM_BLOCK_BYTES // (8 * padded), <Py_ssize_t>GRAM_MIN_BLOCK),
                     <Py_ssize_t>GRAM_MAX_BLOCK)
    cdef Py_ssize_t blocks = (n + plan.block - 1) // plan.block
    cdef Py_ssize_t budget = min(<Py_ssize_t>GRAM_CHUNKS_BYTES, n * row_bytes // 32)
    plan.n_chunks = min(<Py_ssize_t>MAX_CHUNKS, budget // (8 * width), blocks)
    plan.chunk = 0
    if plan.n_chunks >= GRAM_MIN_CHUNKS or plan.n_chunks == blocks:
        plan.chunk = ((n + plan.n_chunks - 1) // plan.n_chunks + plan.block - 1) \
            // plan.block * plan.block
        plan.n_chunks = (n + plan.chunk - 1) // plan.chunk
    plan.threads = <int>max(n_threads, 1)
    if n * padded * padded < SHARED_MIN_WORK:  # a small pass: one thread
        plan.threads = 1
    plan.threads = <int>min(plan.threads, plan.n_chunks if plan.chunk else padded // 4)
    return plan


def hessian_pass(problem, theta, std, int n_threads):
    """(mean loss, gradient (p,), Hessian (p, p)) at trained parameters theta (p = k (d + 1),
    laid out as theta), standardized by std, weighted by problem.sample_weight, over the
    problem's rows (all, or problem.rows): fastgd.reference.hessian_pass's mathematics."""
    X, k, loss = problem.X, problem.k, problem.loss
    d = X.shape[1]
    mean, inverse = trained_units(std, d)
    rows = row_numbers(problem)
    pairs = len(loss.hessian_pairs(k))
    padded = (d + 1 + 7) // 8 * 8
    G = np.zeros((pairs, padded, padded))
    gradient = np.zeros((k, padded))
    sums = np.zeros(2)  # the weighted loss, the weight
    Theta = np.zeros((k, padded))  # zero-padded as the packed rows are
    Theta[:, :d + 1] = design_parameters(theta, k, d)
    _hessian_pass(X, problem.Y, problem.sample_weight, rows, mean, inverse, Theta, loss, k,
                  pairs, G, gradient, sums, n_threads)
    if np.isnan(sums[1]):
        raise MemoryError("the Hessian pass could not allocate its blocks of rows")
    mirror_upper(G, d + 1)
    blocks = {pair: G[number, :d + 1, :d + 1]
              for number, pair in enumerate(loss.hessian_pairs(k))}
    return (sums[0] / sums[1], flatten_gradient(gradient[:, :d + 1] / sums[1]),
            assemble(blocks, k, d, sums[1]))


def _hessian_pass(const floating[:, :] X, const floating[:, ::1] Y,
                  const floating[::1] sample_weight, const Py_ssize_t[::1] rows,
                  const double[::1] mean, const double[::1] inverse,
                  const double[:, ::1] Theta, loss, Py_ssize_t k, Py_ssize_t pairs,
                  double[:, :, ::1] G, double[:, ::1] gradient, double[::1] sums,
                  int n_threads):
    cdef Loss spec = checked_loss(loss, k, X.shape[0], Y, sample_weight)
    cdef Py_ssize_t n = X.shape[0] if rows is None else rows.shape[0]
    cdef Py_ssize_t padded = G.shape[1], i
    check_rows(rows, X.shape[0])
    if n == 0:
        raise ValueError("the Hessian pass needs at least one row")
    cdef Py_ssize_t width = pairs * padded * padded + k * padded + 2
    cdef GramPlan plan = gram_plan(n, padded, width, X.shape[1] * sizeof(floating), n_threads)
    cdef Py_ssize_t block = plan.block, chunk = plan.chunk, n_chunks = plan.n_chunks
    cdef int threads = plan.threads
    cdef double[:, ::1] partial = np.zeros((n_chunks, width)) if chunk else None
    cdef Layout lay = layout_of(X)
    cdef const floating* swp = sample_weight_ptr(sample_weight)
    cdef const Py_ssize_t* rowp = NULL if rows is None else &rows[0]
    with nogil:
        if chunk:
            hessian_chunks(&X[0, 0], lay, X.shape[1], &Y[0, 0], swp, rowp, n, &mean[0],
                           &inverse[0], &Theta[0, 0], &spec, k, pairs, padded, block, chunk,
                           n_chunks, &partial[0, 0], width, threads)
        else:
            hessian_tiles(&X[0, 0], lay, X.shape[1], &Y[0, 0], swp, rowp, n, &mean[0],
                          &inverse[0], &Theta[0, 0], &spec, k, pairs, padded, block,
                          &G[0, 0, 0], &gradient[0, 0], &sums[0], threads)
    if chunk:  # the chunks' sums, in chunk order
        total = np.add.reduce(np.asarray(partial), axis=0)
        np.asarray(G)[...] = total[:pairs * padded * padded].reshape(pairs, padded, padded)
        np.asarray(gradient)[...] = total[pairs * padded * padded:-2].reshape(k, padded)
        np.asarray(sums)[...] = total[-2:]


cdef void mirror_upper(double[:, :, ::1] G, Py_ssize_t size) noexcept nogil:
    """Each matrix's upper triangle (of its first size x size entries) copied below."""
    cdef Py_ssize_t pair, i, j
    for pair in range(G.shape[0]):
        for i in range(size):
            for j in range(i):
                G[pair, i, j] = G[pair, j, i]


cdef void hessian_chunks(const floating* X, Layout lay, Py_ssize_t d, const floating* Y,
                         const floating* sw, const Py_ssize_t* rows, Py_ssize_t n,
                         const double* mean, const double* inverse, const double* Theta,
                         const Loss* loss, Py_ssize_t k, Py_ssize_t pairs, Py_ssize_t padded,
                         Py_ssize_t block, Py_ssize_t chunk, Py_ssize_t n_chunks,
                         double* partial, Py_ssize_t width, int threads) noexcept nogil:
    """The pass by chunks of rows: chunk c's Gram sums, gradient and [loss, weight] into
    partial[c] (zeroed), whole on one thread."""
    cdef Py_ssize_t c, start, stop, m
    cdef double* out
    cdef double* panels
    cdef double* weighted
    cdef double* terms
    with parallel(num_threads=threads):
        panels = <double*>calloc(block * padded, sizeof(double))  # padding stays 0
        weighted = <double*>malloc(block * 4 * sizeof(double))
        terms = <double*>malloc(block * (2 + 2 * k + pairs) * sizeof(double))
        for c in prange(n_chunks, schedule="dynamic"):
            out = partial + c * width
            if panels == NULL or weighted == NULL or terms == NULL:
                out[width - 1] = NAN  # out of memory: the weight says so
                continue
            start = c * chunk
            stop = min(start + chunk, n)
            while start < stop:
                m = min(block, stop - start)
                pack_block(X, lay, d, Y, sw, rows, start, m, mean, inverse, Theta, loss, k,
                           pairs, padded, block, panels, terms)
                add_loss(terms, m, k, pairs, out + width - 2)
                add_block(panels, block, terms, weighted, m, k, pairs, padded, 0, 1, out,
                          out + pairs * padded * padded)
                start = start + m
        free(panels)
        free(weighted)
        free(terms)


cdef void hessian_tiles(const floating* X, Layout lay, Py_ssize_t d, const floating* Y,
                        const floating* sw, const Py_ssize_t* rows, Py_ssize_t n,
                        const double* mean, const double* inverse, const double* Theta,
                        const Loss* loss, Py_ssize_t k, Py_ssize_t pairs, Py_ssize_t padded,
                        Py_ssize_t block, double* G, double* gradient, double* sums,
                        int threads) noexcept nogil:
    """The pass by tiles: every thread packs every block, and adds the tiles of rows it
    owns (tile t: thread t mod threads) of the one set of sums."""
    cdef Py_ssize_t start, m
    cdef double* panels
    cdef double* weighted
    cdef double* terms
    cdef int me, team
    with parallel(num_threads=threads):
        me = omp_get_thread_num()
        team = omp_get_num_threads()
        panels = <double*>calloc(block * padded, sizeof(double))  # padding stays 0
        weighted = <double*>malloc(block * 4 * sizeof(double))
        terms = <double*>malloc(block * (2 + 2 * k + pairs) * sizeof(double))
        if panels != NULL and weighted != NULL and terms != NULL:
            start = 0
            while start < n:
                m = min(block, n - start)
                pack_block(X, lay, d, Y, sw, rows, start, m, mean, inverse, Theta, loss, k,
                           pairs, padded, block, panels, terms)
                if me == 0:
                    add_loss(terms, m, k, pairs, sums)
                add_block(panels, block, terms, weighted, m, k, pairs, padded, me, team, G,
                          gradient)
                start = start + m
        else:  # out of memory: the weight says so (NaN), the caller reports it
            sums[1] = NAN
        free(panels)
        free(weighted)
        free(terms)


cdef void add_block(double* panels, Py_ssize_t block, const double* terms, double* weighted,
                    Py_ssize_t m, Py_ssize_t k, Py_ssize_t pairs, Py_ssize_t padded,
                    Py_ssize_t first_tile, Py_ssize_t tile_step, double* G,
                    double* gradient) noexcept nogil:
    """A packed block's gradient and Gram sums added into G (pairs, padded, padded) and
    gradient (k, padded), for the tiles of 4 rows first_tile, first_tile + tile_step, ..."""
    cdef Py_ssize_t tile = first_tile, pair, l0
    while tile < padded // 4:
        add_gradient(panels, block, terms, m, k, pairs, tile * 4, gradient, padded)
        for pair in range(pairs):
            weighted_columns(panels, block, terms, m, k, pairs, pair, tile * 4, weighted)
            l0 = (tile * 4) // 8 * 8
            while l0 < padded:
                fastgd_gram_tile(panels + (l0 // 8) * block * 8, weighted, m,
                                 G + pair * padded * padded + tile * 4 * padded + l0, padded)
                l0 = l0 + 8
        tile = tile + tile_step


cdef inline double* panel_at(double* panels, Py_ssize_t block, Py_ssize_t i,
                             Py_ssize_t j) noexcept nogil:
    """Where row i, column j of a packed block lives: panels of 8 columns, row by row."""
    return panels + (j // 8) * block * 8 + i * 8 + j % 8


cdef void pack_block(const floating* X, Layout lay, Py_ssize_t d, const floating* Y,
                     const floating* sw, const Py_ssize_t* rows, Py_ssize_t start,
                     Py_ssize_t m, const double* mean, const double* inverse,
                     const double* Theta, const Loss* loss, Py_ssize_t k, Py_ssize_t pairs,
                     Py_ssize_t padded, Py_ssize_t block, double* panels,
                     double* terms) noexcept nogil:
    """Rows start..start+m-1 (of `rows` if given) packed into panels in trained units, and
    for each its terms (row_terms). All the rows are packed before any is read back (a row
    read right after its stores waits for them)."""
    cdef Py_ssize_t i, a, r
    cdef double* t
    cdef double* z
    for i in range(m):
        r = start + i if rows == NULL else rows[start + i]
        pack_row(X + r * lay.rs, lay.cs, d, mean, inverse, panels + i * 8, block * 8)
        panel_at(panels, block, i, d)[0] = 1.0
    for i in range(m):
        r = start + i if rows == NULL else rows[start + i]
        t = terms + i * (2 + 2 * k + pairs)
        z = t + 2 + k
        for a in range(k):
            z[a] = fastgd_panel_dot(panels + i * 8, block * 8, Theta + a * padded,
                                    padded // 8)
        row_terms(loss, k, Y + r * loss.ky, 1.0 if sw == NULL else <double>sw[r], t)


cdef inline void row_terms(const Loss* loss, Py_ssize_t k, const floating* y, double w,
                           double* t) noexcept nogil:
    """A row's terms from its outputs z (in t[2 + k : 2 + 2 k]) and weight w: t becomes
    [w loss, w, w dloss/dz (k), z (k), w h (a pair of outputs each, hessian_pairs)]."""
    cdef Py_ssize_t a, b, q = 0
    cdef double zero_one
    cdef double* dz = t + 2
    cdef double* z = dz + k
    for a in range(k):
        dz[a] = z[a]
    t[0] = w * row_loss(loss, k, dz, y)
    t[1] = w
    if loss.kind == MULTINOMIAL:  # p = dloss/dz + onehot(y); h_ab = p_a ([a == b] - p_b)
        for a in range(k):
            for b in range(a, k):
                zero_one = 1.0 if a == b else 0.0
                t[2 + 2 * k + q] = w * ((dz[a] + (1.0 if a == <Py_ssize_t>y[0] else 0.0))
                                        * (zero_one - dz[b]
                                           - (1.0 if b == <Py_ssize_t>y[0] else 0.0)))
                q = q + 1
    else:
        for a in range(k):
            t[2 + 2 * k + a] = w * elementwise_d2loss(loss, z[a], y[a])
    for a in range(k):
        dz[a] = w * dz[a]


cdef inline void pack_row(const floating* x, Py_ssize_t cs, Py_ssize_t d, const double* mean,
                          const double* inverse, double* out, Py_ssize_t stride) noexcept nogil:
    """Row x (its columns cs apart) in trained units into its place in the panels (out: in
    the first panel; the panels stride doubles apart)."""
    cdef Py_ssize_t j
    if cs == 1:
        if floating is double:
            fastgd_pack_row_f64(x, d, mean, inverse, out, stride)
        else:
            fastgd_pack_row_f32(x, d, mean, inverse, out, stride)
        return
    for j in range(d):
        out[(j // 8) * stride + j % 8] = (x[j * cs] - mean[j]) * inverse[j]


cdef void add_loss(const double* terms, Py_ssize_t m, Py_ssize_t k, Py_ssize_t pairs,
                   double* sums) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(m):
        sums[0] += terms[i * (2 + 2 * k + pairs)]
        sums[1] += terms[i * (2 + 2 * k + pairs) + 1]


cdef void add_gradient(double* panels, Py_ssize_t block, const double* terms, Py_ssize_t m,
                       Py_ssize_t k, Py_ssize_t pairs, Py_ssize_t j0, double* gradient,
                       Py_ssize_t padded) noexcept nogil:
    """gradient[a, j0:j0+4] += the block's sums of w dloss/dz_a times columns j0..j0+3."""
    cdef Py_ssize_t a
    for a in range(k):
        fastgd_panel_axpy4(panel_at(panels, block, 0, j0), terms + 2 + a, 2 + 2 * k + pairs,
                           m, gradient + a * padded + j0)


cdef inline void weighted_columns(double* panels, Py_ssize_t block, const double* terms,
                                  Py_ssize_t m, Py_ssize_t k, Py_ssize_t pairs, Py_ssize_t pair,
                                  Py_ssize_t j0, double* c) noexcept nogil:
    """c[i, 0:4] = w_i h_i (of the pair) times row i's columns j0..j0+3."""
    fastgd_weigh4(panel_at(panels, block, 0, j0), terms + 2 + 2 * k + pair, 2 + 2 * k + pairs,
                  m, c)


# The Hessian-vector pass, for Newton-CG where a p x p Hessian is too large: the mean loss,
# its gradient and H v in the trained parameters, in one read of X. Each block of rows is
# packed as above (z, the derivatives and w h a row), then each row's u = a . v_a for every
# output, q_a = sum_b w h_ab u_b, and the gradient and H v summed as w dloss/dz_a a and
# q_a a, column group by column group, over the block's rows in order. Always by chunks of
# rows (the sums are two vectors of the parameters' size), added in chunk order.

def hessian_vector_pass(problem, theta, std, vector, int n_threads):
    """(mean loss, gradient (p,), H vector (p,)) at trained parameters theta, standardized
    by std, weighted, over the problem's rows: fastgd.reference.hessian_vector_pass's
    mathematics, with the vector laid out as theta."""
    X, k, loss = problem.X, problem.k, problem.loss
    d = X.shape[1]
    mean, inverse = trained_units(std, d)
    rows = row_numbers(problem)
    pairs = loss.hessian_pairs(k)
    padded = (d + 1 + 7) // 8 * 8
    Theta = np.zeros((2 * k, padded))  # theta's rows, then the vector's: zero-padded
    Theta[:k, :d + 1] = design_parameters(theta, k, d)
    Theta[k:, :d + 1] = design_parameters(np.asarray(vector, dtype=np.float64), k, d)
    pair_of = np.full((k, k), -1, dtype=np.intp)  # the number of pair (a, b), either order
    for number, (a, b) in enumerate(pairs):
        pair_of[a, b] = pair_of[b, a] = number
    sums = _hessian_vector_pass(X, problem.Y, problem.sample_weight, rows, mean, inverse, Theta, loss,
                                k, pair_of, n_threads)
    if np.isnan(sums[1]):
        raise MemoryError("the Hessian-vector pass could not allocate its blocks of rows")
    total = sums[1]
    out = sums[2:].reshape(2 * k, padded)[:, :d + 1] / total
    return (sums[0] / total, flatten_gradient(out[:k]), flatten_gradient(out[k:]))


def _hessian_vector_pass(const floating[:, :] X, const floating[:, ::1] Y,
                         const floating[::1] sample_weight, const Py_ssize_t[::1] rows,
                         const double[::1] mean, const double[::1] inverse,
                         const double[:, ::1] Theta, loss, Py_ssize_t k,
                         const Py_ssize_t[:, ::1] pair_of, int n_threads):
    cdef Loss spec = checked_loss(loss, k, X.shape[0], Y, sample_weight)
    cdef Py_ssize_t n = X.shape[0] if rows is None else rows.shape[0], i, c
    cdef Py_ssize_t padded = Theta.shape[1], pairs = 0
    for i in range(k * k):
        pairs = max(pairs, pair_of[i // k, i % k] + 1)
    check_rows(rows, X.shape[0])
    if n == 0:
        raise ValueError("the Hessian-vector pass needs at least one row")
    cdef Py_ssize_t width = 2 + 2 * k * padded  # loss, weight, gradient, H v
    cdef Py_ssize_t block = min(max(GRAM_BLOCK_BYTES // (8 * padded),
                                    <Py_ssize_t>GRAM_MIN_BLOCK), <Py_ssize_t>GRAM_MAX_BLOCK)
    cdef Py_ssize_t n_chunks = min(<Py_ssize_t>MAX_CHUNKS, (n + block - 1) // block,
                                   max(GRAM_CHUNKS_BYTES // (8 * width), <Py_ssize_t>1))
    cdef Py_ssize_t chunk = ((n + n_chunks - 1) // n_chunks + block - 1) // block * block
    n_chunks = (n + chunk - 1) // chunk
    cdef int threads = <int>min(max(n_threads, 1), n_chunks)
    if n * padded * k < SHARED_MIN_WORK:  # a small pass: one thread
        threads = 1
    cdef double[:, ::1] partial = np.zeros((n_chunks, width))
    cdef Layout lay = layout_of(X)
    cdef const floating* swp = sample_weight_ptr(sample_weight)
    cdef const Py_ssize_t* rowp = NULL if rows is None else &rows[0]
    with nogil:
        hessian_vector_chunks(&X[0, 0], lay, X.shape[1], &Y[0, 0], swp, rowp, n, &mean[0],
                              &inverse[0], &Theta[0, 0], &spec, k, pairs, &pair_of[0, 0],
                              padded, block, chunk, n_chunks, &partial[0, 0], width, threads)
    return np.add.reduce(np.asarray(partial), axis=0)  # in chunk order


cdef void hessian_vector_chunks(const floating* X, Layout lay, Py_ssize_t d,
                                const floating* Y, const floating* sw,
                                const Py_ssize_t* rows, Py_ssize_t n, const double* mean,
                                const double* inverse, const double* Theta, const Loss* loss,
                                Py_ssize_t k, Py_ssize_t pairs, const Py_ssize_t* pair_of,
                                Py_ssize_t padded, Py_ssize_t block, Py_ssize_t chunk,
                                Py_ssize_t n_chunks, double* partial, Py_ssize_t width,
                                int threads) noexcept nogil:
    """Chunk c's [loss, weight, gradient (k, padded), H v (k, padded)] into partial[c]."""
    cdef Py_ssize_t c, start, stop, m, i, a, b, j0, stride = 2 + 2 * k + pairs
    cdef double u
    cdef double* out
    cdef double* panels
    cdef double* terms
    cdef double* q
    with parallel(num_threads=threads):
        panels = <double*>calloc(block * padded, sizeof(double))  # padding stays 0
        terms = <double*>malloc(block * stride * sizeof(double))
        q = <double*>malloc(block * 2 * k * sizeof(double))  # a row's u (k), then q (k)
        for c in prange(n_chunks, schedule="dynamic"):
            out = partial + c * width
            if panels == NULL or terms == NULL or q == NULL:
                out[1] = NAN  # out of memory: the weight says so
                continue
            start = c * chunk
            stop = min(start + chunk, n)
            while start < stop:
                m = min(block, stop - start)
                pack_block(X, lay, d, Y, sw, rows, start, m, mean, inverse, Theta, loss, k,
                           pairs, padded, block, panels, terms)
                for i in range(m):
                    out[0] += terms[i * stride]
                    out[1] += terms[i * stride + 1]
                    for a in range(k):  # u_a = a . v_a
                        q[i * 2 * k + a] = fastgd_panel_dot(panels + i * 8, block * 8,
                                                            Theta + (k + a) * padded,
                                                            padded // 8)
                    for a in range(k):  # q_a = sum_b w h_ab u_b
                        u = 0.0
                        for b in range(k):
                            if pair_of[a * k + b] >= 0:
                                u = u + terms[i * stride + 2 + 2 * k + pair_of[a * k + b]] \
                                    * q[i * 2 * k + b]
                        q[i * 2 * k + k + a] = u
                j0 = 0
                while j0 < padded:
                    for a in range(k):
                        fastgd_panel_axpy4(panel_at(panels, block, 0, j0), terms + 2 + a,
                                           stride, m, out + 2 + a * padded + j0)
                        fastgd_panel_axpy4(panel_at(panels, block, 0, j0), q + k + a, 2 * k,
                                           m, out + 2 + (k + a) * padded + j0)
                    j0 = j0 + 4
                start = start + m
        free(panels)
        free(terms)
        free(q)
