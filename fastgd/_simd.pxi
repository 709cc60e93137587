# The arithmetic primitives of the passes: dot products and axpy loops written for the
# compiler to vectorize (independent partial sums, restrict), the AVX2 intrinsics of
# fastgd/_simd.h, and prefetching. Included by fastgd/_kernels.pxi.

cdef extern from "_simd.h":
    bint FASTGD_AVX2
    void fastgd_rows4_d(const double* x0, const double* x1, const double* x2,
                        const double* x3, const double* w, Py_ssize_t d, double bias,
                        double* z) noexcept nogil
    void fastgd_rows4_f(const float* x0, const float* x1, const float* x2, const float* x3,
                        const double* w, Py_ssize_t d, double bias, double* z) noexcept nogil
    void fastgd_axpy4_f(const float* a0, const float* a1, const float* a2, const float* a3,
                        double c0, double c1, double c2, double c3, Py_ssize_t m,
                        double* out) noexcept nogil
    double fastgd_dot_f(const float* a, const double* v, Py_ssize_t m) noexcept nogil
    void fastgd_rows_axpy_d(const double* const* x, const double* c, Py_ssize_t g,
                            Py_ssize_t d, double* acc) noexcept nogil
    void fastgd_rows_axpy_f(const float* const* x, const double* c, Py_ssize_t g,
                            Py_ssize_t d, double* acc) noexcept nogil


cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
        #define fastgd_prefetch(p) __builtin_prefetch((const void *)(p), 0, 2)
        #define fastgd_prefetch_l1(p) __builtin_prefetch((const void *)(p), 0, 3)
    #else
        #define fastgd_prefetch(p) ((void)(p))
        #define fastgd_prefetch_l1(p) ((void)(p))
    #endif
    """
    void fastgd_prefetch(const void* p) noexcept nogil
    void fastgd_prefetch_l1(const void* p) noexcept nogil


cdef inline void prefetch_l1(const floating* start, Py_ssize_t count) noexcept nogil:
    cdef const char* p = <const char*>start
    cdef const char* last = <const char*>(start + count - 1)
    while p <= last:
        fastgd_prefetch_l1(p)
        p = p + 64
    fastgd_prefetch_l1(last)


cdef inline void prefetch_ahead(const floating* start, Py_ssize_t count) noexcept nogil:
    """Ask for every cache line of start[0:count] (count > 0 elements inside the array)."""
    cdef const char* p = <const char*>start
    cdef const char* last = <const char*>(start + count - 1)
    while p <= last:
        fastgd_prefetch(p)
        p = p + 64
    fastgd_prefetch(last)  # the line of the last element, if the stride skipped it


cdef inline void prefetch_rows(const floating* X, Py_ssize_t ld, Py_ssize_t d,
                               const floating* y, Py_ssize_t ky, const floating* sw,
                               Py_ssize_t row) noexcept nogil:
    """Ask for row `row` of row-contiguous X, its targets and its weight."""
    prefetch_ahead(X + row * ld, d)
    fastgd_prefetch(y + row * ky)
    if sw != NULL:
        fastgd_prefetch(sw + row)


cdef inline void add_lanes(double* s, const double* a, Py_ssize_t m) noexcept nogil:
    """s[l] += a[j] for j = l mod LANES (a run's last few entries into s[0])."""
    cdef Py_ssize_t j = 0, l
    while j + LANES <= m:
        for l in range(LANES):
            s[l] += a[j + l]
        j = j + LANES
    while j < m:
        s[0] += a[j]
        j = j + 1


# Two primitives make up both layouts' passes: X·w and Xᵀr swap roles between C and F order.

cdef inline double lanes_sum(const double* s) noexcept nogil:
    """The LANES (4) partial sums, added in a fixed order. More lanes measured slower."""
    return (s[0] + s[1]) + (s[2] + s[3])


cdef inline double dot1(const floating* a, const double* v, Py_ssize_t m) noexcept nogil:
    """a · v over m entries: four groups of LANES partial sums (four independent vector
    chains once vectorized: an FMA's latency is four cycles, and two units issue one each
    cycle), added in a fixed order."""
    cdef double s0[LANES]
    cdef double s1[LANES]
    cdef double s2[LANES]
    cdef double s3[LANES]
    cdef Py_ssize_t j = 0, l
    cdef double short = 0.0
    if floating is float:
        if FASTGD_AVX2 and m >= 4 * LANES:
            return fastgd_dot_f(a, v, m)
    if m < LANES:  # a few entries (narrow X): one sum, not 16 partial sums to set and add
        for j in range(m):
            short += a[j] * v[j]
        return short
    if m < 4 * LANES:  # narrow X: one group (the same sums as below, without the zeros)
        for l in range(LANES):
            s0[l] = a[l] * v[l]
        j = LANES
        while j + LANES <= m:
            for l in range(LANES):
                s0[l] += a[j + l] * v[j + l]
            j = j + LANES
        while j < m:
            short += a[j] * v[j]
            j = j + 1
        return lanes_sum(s0) + short
    for l in range(LANES):
        s0[l] = 0.0
        s1[l] = 0.0
        s2[l] = 0.0
        s3[l] = 0.0
    while j + 4 * LANES <= m:
        for l in range(LANES):
            s0[l] += a[j + l] * v[j + l]
        for l in range(LANES):
            s1[l] += a[j + LANES + l] * v[j + LANES + l]
        for l in range(LANES):
            s2[l] += a[j + 2 * LANES + l] * v[j + 2 * LANES + l]
        for l in range(LANES):
            s3[l] += a[j + 3 * LANES + l] * v[j + 3 * LANES + l]
        j = j + 4 * LANES
    while j + LANES <= m:
        for l in range(LANES):
            s0[l] += a[j + l] * v[j + l]
        j = j + LANES
    while j < m:
        s1[0] += a[j] * v[j]
        j = j + 1
    return (lanes_sum(s0) + lanes_sum(s1)) + (lanes_sum(s2) + lanes_sum(s3))


cdef enum:
    PREFETCH_SEGMENT = 256    # rows summed between requests for the next block's rows


cdef inline double dot1_prefetching(const floating* a, const double* v, Py_ssize_t m,
                                    const floating* ahead, Py_ssize_t m_ahead) noexcept nogil:
    """a · v, PREFETCH_SEGMENT rows at a time (the segments' dot1 added in order), while
    ahead[0:m_ahead] is requested into L2 a segment at a time (a burst of all the requests
    measured slower). The sum does not depend on m_ahead, which depends on where the
    thread goes on."""
    cdef Py_ssize_t i = 0, seg
    cdef double total = 0.0
    while i < m:
        seg = min(<Py_ssize_t>PREFETCH_SEGMENT, m - i)
        if i < m_ahead:
            prefetch_ahead(ahead + i, min(seg, m_ahead - i))
        total += dot1(a + i, v + i, seg)
        i = i + seg
    if i < m_ahead:  # the next block can be the longer one
        prefetch_ahead(ahead + i, m_ahead - i)
    return total


cdef inline double dot1_widen(const float* a, const double* v, Py_ssize_t m,
                              double* wide) noexcept nogil:
    """dot1 for float32 a, also storing a widened to float64 in `wide`."""
    cdef double s[LANES]
    cdef double t[LANES]
    cdef Py_ssize_t j = 0, l
    for l in range(LANES):
        s[l] = 0.0
        t[l] = 0.0
    while j + 2 * LANES <= m:
        for l in range(LANES):
            wide[j + l] = a[j + l]
            s[l] += wide[j + l] * v[j + l]
        for l in range(LANES):
            wide[j + LANES + l] = a[j + LANES + l]
            t[l] += wide[j + LANES + l] * v[j + LANES + l]
        j = j + 2 * LANES
    while j < m:
        wide[j] = a[j]
        s[0] += wide[j] * v[j]
        j = j + 1
    return lanes_sum(s) + lanes_sum(t)


# `out` of the axpy loops is declared restrict (it never overlaps their inputs): for
# float64 data both are double pointers, and without it the compiler must assume a store
# to out can change a0..a3, which kept the F-order loops from vectorizing (float64 F order
# ran 2 x slower than float32).
cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
        typedef double * __restrict__ fastgd_out;
    #elif defined(_MSC_VER)
        typedef double * __restrict fastgd_out;
    #else
        typedef double * fastgd_out;
    #endif
    """
    ctypedef double* fastgd_out


cdef inline void axpy1(const floating* a, double c, Py_ssize_t m, fastgd_out out) noexcept nogil:
    """out += c a over m entries."""
    cdef Py_ssize_t j
    for j in range(m):
        out[j] = out[j] + c * a[j]


cdef inline void set_axpy(const floating* a, Py_ssize_t lda, const double* c, Py_ssize_t count,
                          double b, Py_ssize_t m, fastgd_out out) noexcept nogil:
    """out = b + c[0] a + c[1] a[lda:] + ... over m entries, for count < 4 vectors lda
    apart: the columns left over by axpy4, summed while out is first written rather than
    in a read-modify-write of out each."""
    cdef Py_ssize_t j
    if count == 0:
        for j in range(m):
            out[j] = b
    elif count == 1:
        for j in range(m):
            out[j] = b + c[0] * a[j]
    elif count == 2:
        for j in range(m):
            out[j] = b + (c[0] * a[j] + c[1] * a[lda + j])
    else:
        for j in range(m):
            out[j] = b + ((c[0] * a[j] + c[1] * a[lda + j]) + c[2] * a[2 * lda + j])


cdef inline void axpy4(const floating* a0, const floating* a1, const floating* a2,
                       const floating* a3, double c0, double c1, double c2, double c3,
                       Py_ssize_t m, fastgd_out out) noexcept nogil:
    """out += c0 a0 + c1 a1 + c2 a2 + c3 a3: one read-modify-write of out for four vectors."""
    cdef Py_ssize_t j
    if floating is float:
        if FASTGD_AVX2:
            fastgd_axpy4_f(a0, a1, a2, a3, c0, c1, c2, c3, m, out)
            return
    for j in range(m):
        out[j] = out[j] + (((c0 * a0[j] + c1 * a1[j]) + c2 * a2[j]) + c3 * a3[j])


cdef inline void axpy8(const double* a, Py_ssize_t lda, Py_ssize_t d, const double* c,
                       Py_ssize_t cs, fastgd_out out) noexcept nogil:
    """out += c[0] a + c[cs] a[lda:] + ... + c[7 cs] a[7 lda:] over d entries."""
    cdef Py_ssize_t j
    cdef double c0 = c[0], c1 = c[cs], c2 = c[2 * cs], c3 = c[3 * cs]
    cdef double c4 = c[4 * cs], c5 = c[5 * cs], c6 = c[6 * cs], c7 = c[7 * cs]
    for j in range(d):
        out[j] = out[j] + ((((c0 * a[j] + c1 * a[lda + j]) + c2 * a[2 * lda + j])
                            + c3 * a[3 * lda + j]) + (((c4 * a[4 * lda + j]
                            + c5 * a[5 * lda + j]) + c6 * a[6 * lda + j]) + c7 * a[7 * lda + j]))
