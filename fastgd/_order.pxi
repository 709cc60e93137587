# Which rows a pass or an epoch reads, and in which order: a subset of X's rows, shuffled
# by a keyed permutation computed row by row. Included by fastgd/_kernels.pxi.

# Shuffling without a permutation array: position p of an epoch reads row
# shuffled_row(p), a keyed 3-round Feistel network on [0, 4^half) with cycle-walking into
# [0, n) (a bijection on [0, n)). A few integer operations per row, no memory, the same in
# fastgd/reference.py (shuffled_rows), so both engines see the same batches.
#
# Rows by blocks (X that streams from disk, fastgd/_shuffling.py): the rows, rotated by an
# offset drawn each epoch, are cut into blocks of 2^block_shift rows (the rows past the
# last whole block form a short tail); the whole blocks are permuted, and taken by windows
# of 2^window_shift rows, whose rows are permuted among themselves (a Feistel network
# keyed per window). An epoch then reads a window's blocks, each a run of consecutive
# rows, and nothing else until it moves on: what a file can serve at its sequential speed,
# through a page cache that holds one window.

ctypedef unsigned long long u64

cdef struct Shuffle:
    u64 key[3]
    int half          # bits in each half of the Feistel block: over rows, or over blocks
    Py_ssize_t n
    int block_shift   # log2 of a block's rows; -1: rows permuted one by one
    int window_shift  # log2 of a window's rows
    int window_half   # the Feistel halves over a whole window's rows, and over the last's
    int last_half
    Py_ssize_t whole_blocks  # n >> block_shift
    Py_ssize_t offset        # the rotation of the rows, in [0, n)

cdef u64 FEISTEL_MULT = 0x9E3779B97F4A7C15ULL
cdef u64 WINDOW_SALT = 0xD1B54A32D192ED03ULL  # window w's keys: key ^ (w + 1) WINDOW_SALT


cdef inline u64 feistel(const u64* key, u64 salt, int half, u64 x) noexcept nogil:
    cdef u64 mask = (<u64>1 << half) - 1
    cdef u64 left = x >> half, right = x & mask, t
    cdef int r
    for r in range(3):  # (L, R) -> (R, L ^ F(R)), F a multiply-shift hash of R and the key
        t = right
        right = left ^ ((((right ^ key[r] ^ salt) * FEISTEL_MULT) >> (64 - half)) & mask)
        left = t
    return (left << half) | right


cdef inline u64 permuted(const u64* key, u64 salt, int half, u64 n, u64 x) noexcept nogil:
    """x's image in a permutation of [0, n): the Feistel network, cycle-walked."""
    x = feistel(key, salt, half, x)
    while x >= n:
        x = feistel(key, salt, half, x)
    return x


cdef inline Py_ssize_t block_start(const Shuffle* s, Py_ssize_t x) noexcept nogil:
    """The first row of the block at slot x (a multiple of its rows) of a block shuffle:
    a whole block, moved, or the tail, which stays; then rotated."""
    cdef Py_ssize_t start = x
    if (x >> s.block_shift) < s.whole_blocks:
        start = <Py_ssize_t>permuted(s.key, 0, s.half, <u64>s.whole_blocks,
                                     <u64>(x >> s.block_shift)) << s.block_shift
    start = start + s.offset
    return start - s.n if start >= s.n else start


cdef Py_ssize_t block_shuffled_row(const Shuffle* s, Py_ssize_t position) noexcept nogil:
    """shuffled_row of a block shuffle: the window's rows permuted, then their blocks."""
    cdef Py_ssize_t window = position >> s.window_shift
    cdef Py_ssize_t start = window << s.window_shift
    cdef Py_ssize_t size = min(s.n - start, (<Py_ssize_t>1) << s.window_shift)
    cdef Py_ssize_t x = start + <Py_ssize_t>permuted(
        s.key, <u64>(window + 1) * WINDOW_SALT,
        s.window_half if start + size < s.n else s.last_half, <u64>size,
        <u64>(position - start))
    cdef Py_ssize_t within = x & (((<Py_ssize_t>1) << s.block_shift) - 1)
    x = block_start(s, x - within) + within
    return x - s.n if x >= s.n else x


cdef inline Py_ssize_t shuffled_row(const Shuffle* s, Py_ssize_t position) noexcept nogil:
    # Small enough to inline into every pass's row loop (the rows' permutation, in memory);
    # the block shuffle (a file's epoch, bound by the disk) is a call.
    if s.block_shift >= 0:
        return block_shuffled_row(s, position)
    return <Py_ssize_t>permuted(s.key, 0, s.half, <u64>s.n, <u64>position)


cdef int half_bits(Py_ssize_t n):
    """Bits of each half of a Feistel block that covers [0, n)."""
    cdef int bits = 1
    while (<u64>1 << bits) < <u64>n:
        bits += 1
    return (bits + 1) // 2


cdef Shuffle make_shuffle(tuple keys, Py_ssize_t n, blocks=None) except *:
    """The shuffle of n rows by keys (three 64-bit integers); blocks: (rows a block,
    blocks a window), powers of two, or None (rows one by one)."""
    cdef Shuffle s
    if len(keys) != 3:
        raise ValueError(f"shuffle keys must be three 64-bit integers, got {keys!r}")
    for r in range(3):
        s.key[r] = <u64>keys[r]
    s.n = n
    s.block_shift = -1
    s.half = half_bits(n)
    if blocks is not None:
        block_rows, window_blocks = blocks
        if not (block_rows >= 1 and window_blocks >= 1 and block_rows & (block_rows - 1) == 0
                and window_blocks & (window_blocks - 1) == 0):
            raise ValueError(f"shuffle blocks must be two powers of two, got {blocks!r}")
        s.block_shift = int(block_rows).bit_length() - 1
        s.window_shift = s.block_shift + int(window_blocks).bit_length() - 1
        s.whole_blocks = n >> s.block_shift
        s.half = half_bits(s.whole_blocks)
        s.window_half = half_bits((<Py_ssize_t>1) << s.window_shift)
        s.last_half = half_bits(n - (((n - 1) >> s.window_shift) << s.window_shift))
        s.offset = <Py_ssize_t>((s.key[0] ^ s.key[2]) % <u64>n) if n > 0 else 0
    return s


cdef enum:
    WINDOWS_AHEAD = 2  # a block shuffle's windows read ahead of the epoch: the disk kept
                       # busy while a window is trained on


cdef extern from "_readahead.h":
    enum:
        FASTGD_WILL_NEED
        FASTGD_RANDOM
        FASTGD_NORMAL
    void fastgd_advise(const void* start, size_t length, int how) noexcept nogil


cdef inline Py_ssize_t window_stop(const Shuffle* s, Py_ssize_t window) noexcept nogil:
    """The position after the last of a window of a block shuffle."""
    return min(s.n, (window + 1) << s.window_shift)


cdef inline Py_ssize_t window_block(const Shuffle* s, Py_ssize_t x, Py_ssize_t stop,
                                    Py_ssize_t* start, Py_ssize_t* past) noexcept nogil:
    """The block at position x of a window ending at `stop`: its first row into start, the
    rows of it that wrap around to the first ones into past; returns its rows."""
    cdef Py_ssize_t size = min(stop - x, (<Py_ssize_t>1) << s.block_shift)
    start[0] = block_start(s, x)
    past[0] = max(0, start[0] + size - s.n)
    return size


cdef inline Py_ssize_t windows_due(const Shuffle* s, Py_ssize_t position) noexcept nogil:
    """The windows to have announced once the epoch is at `position`: WINDOWS_AHEAD past
    its own, within the epoch."""
    return min((position >> s.window_shift) + 1 + WINDOWS_AHEAD,
               (s.n + ((<Py_ssize_t>1) << s.window_shift) - 1) >> s.window_shift)


cdef void advise_window(const Shuffle* s, Py_ssize_t window, const char* base,
                        Py_ssize_t row_bytes) noexcept nogil:
    """Ask the kernel to read in the rows of a window of a block shuffle (rows contiguous,
    row_bytes apart from base): each of its blocks, a run of rows (two where the rotation
    wraps around), which the disk then reads ahead of the epoch."""
    cdef Py_ssize_t x = window << s.window_shift, stop = window_stop(s, window), start, past
    cdef Py_ssize_t size
    while x < stop:
        size = window_block(s, x, stop, &start, &past)
        fastgd_advise(base + start * row_bytes, (size - past) * row_bytes, FASTGD_WILL_NEED)
        if past > 0:
            fastgd_advise(base, past * row_bytes, FASTGD_WILL_NEED)
        x = x + size


def window_blocks(tuple keys, Py_ssize_t n, blocks, Py_ssize_t window):
    """The (first row, rows) of each block of a window of a block shuffle, as advise_window
    announces them before wrapping (for tests)."""
    cdef Shuffle s = make_shuffle(keys, n, blocks)
    cdef Py_ssize_t x = window << s.window_shift, stop = window_stop(&s, window), start, past
    cdef Py_ssize_t size
    found = []
    while x < stop:
        size = window_block(&s, x, stop, &start, &past)
        found.append((start, size))
        x = x + size
    return found


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


cdef Order make_order(tuple shuffle_keys, const Py_ssize_t[::1] rows, Py_ssize_t n_rows,
                      blocks=None):
    """The order of positions over `rows` (None: all n_rows rows), shuffled with keys (by
    blocks, when given: make_shuffle)."""
    cdef Order order
    if rows is not None and rows.shape[0] and not (
            0 <= np.min(rows) and np.max(rows) < n_rows):
        raise ValueError(f"rows must index X's {n_rows} rows")
    order.n = n_rows if rows is None else rows.shape[0]
    order.shuffled = shuffle_keys is not None
    if order.shuffled:
        order.shuffle = make_shuffle(shuffle_keys, order.n, blocks)
    order.rows = NULL if rows is None or rows.shape[0] == 0 else &rows[0]
    return order


def shuffled_rows(tuple keys, Py_ssize_t n, Py_ssize_t start=0, Py_ssize_t stop=-1,
                  blocks=None):
    """The rows read at positions start..stop-1 of a shuffled epoch (for tests)."""
    cdef Shuffle s = make_shuffle(keys, n, blocks)
    stop = n if stop < 0 else min(stop, n)  # positions outside [0, n) have no row
    start = min(max(start, 0), stop)
    return np.array([shuffled_row(&s, p) for p in range(start, stop)], dtype=np.intp)
