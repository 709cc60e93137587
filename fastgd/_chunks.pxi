# Chunking and layouts: how rows are cut into chunks (by the shape only, never by the
# thread count), how a chunk's partial sums are laid out and added in chunk order, and how X
# is addressed (rows or columns contiguous). Included by fastgd/_kernels.pxi.

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
    PARALLEL_MIN_ELEMS = 65536  # batches smaller run on one thread (also: 2 chunks at least);
                                # measured: 2 threads 1.1-1.3 x faster from there on, 1 x below
    SHARED_MIN_WORK = 2097152   # multiply-adds of a whole pass under which it runs on one
                                # thread: a second gains 1.1-1.2 x there on a quiet machine,
                                # and it cost 3.4 x when another process kept a core busy
                                # (digits: a thread waiting on the busy core, every pass)

# A chunk's partial sums: the gradient sums in W (k d: sum of r_io x_i), in b (k: sum of
# r_io, where r_io = w_i dloss_i / dz_o), then two scalars at these offsets after them.
cdef enum:
    SUM_LOSS = 0              # sum of w_i * loss_i
    SUM_W = 1                 # sum of w_i
    N_SCALARS = 2
    PARTIAL_BUDGET = 65536    # doubles of partial sums per pass (512 KB: in L2): a model with
                              # many outputs and features gets fewer, larger chunks,
    CHUNKS_FLOOR = 32         # but never fewer than 32 (for the threads to share)


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


cdef const floating* sample_weight_ptr(const floating[::1] sample_weight) noexcept:
    return NULL if sample_weight is None else &sample_weight[0]


cdef inline Py_ssize_t first_chunk(Py_ssize_t n_chunks, int tid, int n_team) noexcept nogil:
    """Thread tid's share of a batch: chunks first_chunk(tid) to first_chunk(tid + 1) - 1,
    whole runs of positions (in order, a thread's rows are one stream for the prefetcher)."""
    return tid * n_chunks // n_team
