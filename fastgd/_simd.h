/* Hand-written AVX2+FMA loops for what the compiler cannot find on its own, with
   FASTGD_AVX2 0 (and the generic Cython loops used instead) in any other build.

   fastgd_rows4_*: the dot products of four narrow rows with w at once. Each row has one
   vector of LANES partial sums (its last, partial vector read through a mask), and the
   four rows' vectors are added across in one go (two hadd, two permutes, one add) rather
   than by a horizontal sum of each: for rows of a few dozen entries those sums cost more
   than the products. Lane l of row r sums x[r][j] w[j] for j = l mod 4 in order, and the
   lanes are added (l0 + l1) + (l2 + l3). (The last 1-3 rows of a run of rows go through
   dot1 instead: a row's rounding depends on its place in its chunk, which depends on the
   shape only, never on the thread count.) */
#ifndef FASTGD_SIMD_H
#define FASTGD_SIMD_H

#include <Python.h>  /* Py_ssize_t */

#if defined(_MSC_VER)
#define FASTGD_FORCEINLINE static __forceinline
#else
#define FASTGD_FORCEINLINE static inline __attribute__((always_inline))
#endif

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FASTGD_AVX2 1

/* The first `count` (0..4) of four 64-bit lanes. */
static inline __m256i fastgd_mask4(Py_ssize_t count) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)count),
                              _mm256_set_epi64x(3, 2, 1, 0));
}

/* z[0..3] = bias + the sums of the lanes of a, b, c and e. */
static inline void fastgd_rows4_store(__m256d a, __m256d b, __m256d c, __m256d e,
                                      double bias, double *z) {
    __m256d ab = _mm256_hadd_pd(a, b), ce = _mm256_hadd_pd(c, e);
    __m256d sums = _mm256_add_pd(_mm256_permute2f128_pd(ab, ce, 0x20),
                                 _mm256_permute2f128_pd(ab, ce, 0x31));
    _mm256_storeu_pd(z, _mm256_add_pd(sums, _mm256_set1_pd(bias)));
}

/* The first `count` (0..4) of four 32-bit lanes. */
static inline __m128i fastgd_mask4f(Py_ssize_t count) {
    return _mm_cmpgt_epi32(_mm_set1_epi32((int)count), _mm_set_epi32(3, 2, 1, 0));
}

/* Four entries of x widened to float64 (float32 as they are read); partial: only the
   first `count` read, the others 0. */
static inline __m256d fastgd_load_d(const double *x, int partial, Py_ssize_t count) {
    return partial ? _mm256_maskload_pd(x, fastgd_mask4(count)) : _mm256_loadu_pd(x);
}

static inline __m256d fastgd_load_f(const float *x, int partial, Py_ssize_t count) {
    return _mm256_cvtps_pd(partial ? _mm_maskload_ps(x, fastgd_mask4f(count))
                                   : _mm_loadu_ps(x));
}

/* fastgd_rows4_d, fastgd_rows4_f: z[0..3] = bias + w . x0, ..., w . x3 (see the top). */
#define FASTGD_ROWS4(NAME, T, LOAD)                                                       \
static inline void NAME(const T *x0, const T *x1, const T *x2, const T *x3,              \
                        const double *w, Py_ssize_t d, double bias, double *z) {         \
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0, v;                      \
    Py_ssize_t j = 0;                                                                    \
    for (; j + 4 <= d; j += 4) {                                                         \
        v = _mm256_loadu_pd(w + j);                                                      \
        s0 = _mm256_fmadd_pd(LOAD(x0 + j, 0, 4), v, s0);                                 \
        s1 = _mm256_fmadd_pd(LOAD(x1 + j, 0, 4), v, s1);                                 \
        s2 = _mm256_fmadd_pd(LOAD(x2 + j, 0, 4), v, s2);                                 \
        s3 = _mm256_fmadd_pd(LOAD(x3 + j, 0, 4), v, s3);                                 \
    }                                                                                    \
    if (j < d) {                                                                         \
        v = fastgd_load_d(w + j, 1, d - j);                                              \
        s0 = _mm256_fmadd_pd(LOAD(x0 + j, 1, d - j), v, s0);                             \
        s1 = _mm256_fmadd_pd(LOAD(x1 + j, 1, d - j), v, s1);                             \
        s2 = _mm256_fmadd_pd(LOAD(x2 + j, 1, d - j), v, s2);                             \
        s3 = _mm256_fmadd_pd(LOAD(x3 + j, 1, d - j), v, s3);                             \
    }                                                                                    \
    fastgd_rows4_store(s0, s1, s2, s3, bias, z);                                         \
}

FASTGD_ROWS4(fastgd_rows4_d, double, fastgd_load_d)
FASTGD_ROWS4(fastgd_rows4_f, float, fastgd_load_f)

/* dot1 (fastgd/_kernels.pxi) of float32 a with float64 v, in the same order: the compiler
   loaded eight floats and split them (vextractf128) before widening, a third more work
   in the loop that F-order float32 gradients spend their time in. */
static inline double fastgd_lanes_sum(__m256d s) {
    __m128d lo = _mm256_castpd256_pd128(s), hi = _mm256_extractf128_pd(s, 1);
    return (_mm_cvtsd_f64(lo) + _mm_cvtsd_f64(_mm_unpackhi_pd(lo, lo)))
         + (_mm_cvtsd_f64(hi) + _mm_cvtsd_f64(_mm_unpackhi_pd(hi, hi)));
}

static inline double fastgd_dot_f(const float *a, const double *v, Py_ssize_t m) {
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
    double t[4];
    Py_ssize_t j = 0;
    for (; j + 16 <= m; j += 16) {
        s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + j)), _mm256_loadu_pd(v + j), s0);
        s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + j + 4)),
                             _mm256_loadu_pd(v + j + 4), s1);
        s2 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + j + 8)),
                             _mm256_loadu_pd(v + j + 8), s2);
        s3 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + j + 12)),
                             _mm256_loadu_pd(v + j + 12), s3);
    }
    for (; j + 4 <= m; j += 4)
        s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + j)), _mm256_loadu_pd(v + j), s0);
    _mm256_storeu_pd(t, s1);
    for (; j < m; j++)
        t[0] += (double)a[j] * v[j];
    return (fastgd_lanes_sum(s0) + ((t[0] + t[1]) + (t[2] + t[3])))
         + (fastgd_lanes_sum(s2) + fastgd_lanes_sum(s3));
}

/* axpy4 (fastgd/_kernels.pxi) for float32 columns: out += c0 a0 + c1 a1 + c2 a2 + c3 a3,
   each float widened straight from memory (see fastgd_dot_f). */
static inline void fastgd_axpy4_f(const float *a0, const float *a1, const float *a2,
                                  const float *a3, double c0, double c1, double c2, double c3,
                                  Py_ssize_t m, double *out) {
    __m256d v0 = _mm256_set1_pd(c0), v1 = _mm256_set1_pd(c1), v2 = _mm256_set1_pd(c2),
            v3 = _mm256_set1_pd(c3), t;
    Py_ssize_t j = 0;
    for (; j + 4 <= m; j += 4) {
        t = _mm256_mul_pd(v0, _mm256_cvtps_pd(_mm_loadu_ps(a0 + j)));
        t = _mm256_fmadd_pd(v1, _mm256_cvtps_pd(_mm_loadu_ps(a1 + j)), t);
        t = _mm256_fmadd_pd(v2, _mm256_cvtps_pd(_mm_loadu_ps(a2 + j)), t);
        t = _mm256_fmadd_pd(v3, _mm256_cvtps_pd(_mm_loadu_ps(a3 + j)), t);
        _mm256_storeu_pd(out + j, _mm256_add_pd(_mm256_loadu_pd(out + j), t));
    }
    for (; j < m; j++)
        out[j] = out[j] + (((c0 * a0[j] + c1 * a1[j]) + c2 * a2[j]) + c3 * a3[j]);
}

/* acc[0:d] += c[0] x[0] + c[1] x[1] + ... + c[g-1] x[g-1] for g (even) rows of d <= 16
   entries (NARROW_ROWS: four vectors at most), the sums of the even and of the odd rows
   kept in registers (NV vectors each) and added at the end. */
#define FASTGD_ROWS_AXPY(NAME, T, LOAD)                                                   \
FASTGD_FORCEINLINE void NAME##_nv(                                                       \
        const T *const *x, const double *c, Py_ssize_t g, Py_ssize_t d, double *acc,     \
        const int nv) {                                                                  \
    __m256d e[4], o[4], ce, co;                                                          \
    Py_ssize_t tail = d - 4 * (nv - 1), q;                                               \
    int v;                                                                               \
    for (v = 0; v < nv; v++) e[v] = o[v] = _mm256_setzero_pd();                          \
    for (q = 0; q < g; q += 2) {                                                         \
        ce = _mm256_set1_pd(c[q]);                                                       \
        co = _mm256_set1_pd(c[q + 1]);                                                   \
        for (v = 0; v < nv; v++) {                                                       \
            e[v] = _mm256_fmadd_pd(ce, LOAD(x[q] + 4 * v, v == nv - 1, tail), e[v]);     \
            o[v] = _mm256_fmadd_pd(co, LOAD(x[q + 1] + 4 * v, v == nv - 1, tail), o[v]); \
        }                                                                                \
    }                                                                                    \
    for (v = 0; v < nv; v++) {                                                           \
        double sum[4];                                                                   \
        int l;                                                                           \
        _mm256_storeu_pd(sum, _mm256_add_pd(e[v], o[v]));                                \
        for (l = 0; l < 4 && 4 * v + l < d; l++) acc[4 * v + l] += sum[l];              \
    }                                                                                    \
}                                                                                        \
static inline void NAME(const T *const *x, const double *c, Py_ssize_t g, Py_ssize_t d,  \
                        double *acc) {                                                   \
    switch ((d + 3) / 4) {                                                               \
        case 1: NAME##_nv(x, c, g, d, acc, 1); break;                                    \
        case 2: NAME##_nv(x, c, g, d, acc, 2); break;                                    \
        case 3: NAME##_nv(x, c, g, d, acc, 3); break;                                    \
        default: NAME##_nv(x, c, g, d, acc, 4); break;                                   \
    }                                                                                    \
}

FASTGD_ROWS_AXPY(fastgd_rows_axpy_d, double, fastgd_load_d)
FASTGD_ROWS_AXPY(fastgd_rows_axpy_f, float, fastgd_load_f)

#else
#define FASTGD_AVX2 0
static inline void fastgd_rows4_d(const double *x0, const double *x1, const double *x2,
                                  const double *x3, const double *w, Py_ssize_t d,
                                  double bias, double *z) {}
static inline void fastgd_rows4_f(const float *x0, const float *x1, const float *x2,
                                  const float *x3, const double *w, Py_ssize_t d,
                                  double bias, double *z) {}
static inline double fastgd_dot_f(const float *a, const double *v, Py_ssize_t m) {
    return 0.0;
}
static inline void fastgd_axpy4_f(const float *a0, const float *a1, const float *a2,
                                  const float *a3, double c0, double c1, double c2, double c3,
                                  Py_ssize_t m, double *out) {}
static inline void fastgd_rows_axpy_d(const double *const *x, const double *c,
                                      Py_ssize_t g, Py_ssize_t d, double *acc) {}
static inline void fastgd_rows_axpy_f(const float *const *x, const double *c,
                                      Py_ssize_t g, Py_ssize_t d, double *acc) {}
#endif

#endif
