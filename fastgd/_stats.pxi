# Column statistics (weighted mean and variance) in one parallel pass, for the implicit
# standardization. Included by fastgd/_kernels.pxi.

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


def column_stats(problem, int n_threads):
    """Weighted per-column mean and (population) variance of problem.X (all its rows) in
    one parallel pass, weighted by problem.sample_weight.

    Returns (mean, var), float64 arrays of length d.
    """
    return _column_stats(problem.X, problem.sample_weight, n_threads)


def _column_stats(const floating[:, :] X, const floating[::1] sample_weight, int n_threads):
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
    if n * d < SHARED_MIN_WORK:  # a small pass: one thread
        threads = 1
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
