# Which rows a pass or an epoch reads, and in which order: a subset of X's rows, shuffled
# by a keyed permutation computed row by row. Included by fastgd/_kernels.pxi.

# Shuffling without a permutation array: position p of an epoch reads row
# shuffled_row(p), a keyed 3-round Feistel network on [0, 4^half) with cycle-walking into
# [0, n) (a bijection on [0, n)). A few integer operations per row, no memory, the same in
# fastgd/reference.py (shuffled_rows), so both engines see the same batches.

ctypedef unsigned long long u64

cdef struct Shuffle:
    u64 key[3]
    int half          # bits in each half of the Feistel block
    Py_ssize_t n

cdef u64 FEISTEL_MULT = 0x9E3779B97F4A7C15ULL


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
