/* The inner loop of the Hessian pass (fastgd/_hessian.pxi): one 4 x 8 tile of a weighted
   Gram matrix,

       G[jj][ll] += sum over the rows i of c[i][jj] * panel[i][ll]    (jj < 4, ll < 8),

   where panel holds 8 columns of a block of rows (8 doubles a row, contiguous) and c the
   block's weights times 4 other columns (4 doubles a row). Each entry is summed over the
   rows in order, one multiply-add a row, whatever the build: its rounding depends on the
   shape of the block only. The AVX2 build keeps the tile in eight registers (two loads and
   four broadcasts for eight fused multiply-adds a row); any other build runs the same
   loop in plain C. */
#ifndef FASTGD_GRAM_H
#define FASTGD_GRAM_H

#include <Python.h>  /* Py_ssize_t */

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

static inline void fastgd_gram_tile(const double *panel, const double *c, Py_ssize_t rows,
                                    double *G, Py_ssize_t ldg) {
    __m256d a00 = _mm256_setzero_pd(), a01 = a00, a10 = a00, a11 = a00,
            a20 = a00, a21 = a00, a30 = a00, a31 = a00, p0, p1, v;
    Py_ssize_t i;
    for (i = 0; i < rows; i++) {
        p0 = _mm256_loadu_pd(panel + 8 * i);
        p1 = _mm256_loadu_pd(panel + 8 * i + 4);
        v = _mm256_broadcast_sd(c + 4 * i);
        a00 = _mm256_fmadd_pd(v, p0, a00);
        a01 = _mm256_fmadd_pd(v, p1, a01);
        v = _mm256_broadcast_sd(c + 4 * i + 1);
        a10 = _mm256_fmadd_pd(v, p0, a10);
        a11 = _mm256_fmadd_pd(v, p1, a11);
        v = _mm256_broadcast_sd(c + 4 * i + 2);
        a20 = _mm256_fmadd_pd(v, p0, a20);
        a21 = _mm256_fmadd_pd(v, p1, a21);
        v = _mm256_broadcast_sd(c + 4 * i + 3);
        a30 = _mm256_fmadd_pd(v, p0, a30);
        a31 = _mm256_fmadd_pd(v, p1, a31);
    }
    _mm256_storeu_pd(G, _mm256_add_pd(_mm256_loadu_pd(G), a00));
    _mm256_storeu_pd(G + 4, _mm256_add_pd(_mm256_loadu_pd(G + 4), a01));
    G += ldg;
    _mm256_storeu_pd(G, _mm256_add_pd(_mm256_loadu_pd(G), a10));
    _mm256_storeu_pd(G + 4, _mm256_add_pd(_mm256_loadu_pd(G + 4), a11));
    G += ldg;
    _mm256_storeu_pd(G, _mm256_add_pd(_mm256_loadu_pd(G), a20));
    _mm256_storeu_pd(G + 4, _mm256_add_pd(_mm256_loadu_pd(G + 4), a21));
    G += ldg;
    _mm256_storeu_pd(G, _mm256_add_pd(_mm256_loadu_pd(G), a30));
    _mm256_storeu_pd(G + 4, _mm256_add_pd(_mm256_loadu_pd(G + 4), a31));
}

/* The sum over panels of theta[8p + ll] * panel_p[row][ll]: a row of a packed block (its
   panels `stride` doubles apart) against theta (zero-padded to the panels' width), in two
   vectors of partial sums added at the end. */
static inline double fastgd_panel_dot(const double *row, Py_ssize_t stride,
                                      const double *theta, Py_ssize_t panels) {
    __m256d lo = _mm256_setzero_pd(), hi = lo;
    double t[4];
    Py_ssize_t p;
    for (p = 0; p < panels; p++) {
        lo = _mm256_fmadd_pd(_mm256_loadu_pd(theta + 8 * p), _mm256_loadu_pd(row + p * stride), lo);
        hi = _mm256_fmadd_pd(_mm256_loadu_pd(theta + 8 * p + 4),
                             _mm256_loadu_pd(row + p * stride + 4), hi);
    }
    _mm256_storeu_pd(t, _mm256_add_pd(lo, hi));
    return (t[0] + t[1]) + (t[2] + t[3]);
}

/* out[0:4] += the sum over rows i of r[i * r_stride] * cols[8 i : 8 i + 4]: four columns of
   a panel against one weight a row, even and odd rows in two vectors added at the end. */
static inline void fastgd_panel_axpy4(const double *cols, const double *r, Py_ssize_t r_stride,
                                      Py_ssize_t rows, double *out) {
    __m256d even = _mm256_setzero_pd(), odd = even;
    Py_ssize_t i = 0;
    for (; i + 2 <= rows; i += 2) {
        even = _mm256_fmadd_pd(_mm256_set1_pd(r[i * r_stride]), _mm256_loadu_pd(cols + 8 * i),
                               even);
        odd = _mm256_fmadd_pd(_mm256_set1_pd(r[(i + 1) * r_stride]),
                              _mm256_loadu_pd(cols + 8 * i + 8), odd);
    }
    if (i < rows)
        even = _mm256_fmadd_pd(_mm256_set1_pd(r[i * r_stride]), _mm256_loadu_pd(cols + 8 * i),
                               even);
    _mm256_storeu_pd(out, _mm256_add_pd(_mm256_loadu_pd(out), _mm256_add_pd(even, odd)));
}


/* A row of X in trained units, (x - mean) * inverse, into its place in a block's panels of
   8 columns (out: the row in the first panel, the panels `stride` doubles apart): four
   columns a vector, the rest one by one. Vector stores, so that the vector loads that read
   the row back are not held up waiting for eight scalar stores. */
static inline void fastgd_pack_row_f64(const double *x, Py_ssize_t d, const double *mean,
                                       const double *inverse, double *out, Py_ssize_t stride) {
    Py_ssize_t j = 0;
    for (; j + 4 <= d; j += 4)
        _mm256_storeu_pd(out + (j / 8) * stride + j % 8,
                         _mm256_mul_pd(_mm256_sub_pd(_mm256_loadu_pd(x + j),
                                                     _mm256_loadu_pd(mean + j)),
                                       _mm256_loadu_pd(inverse + j)));
    for (; j < d; j++)
        out[(j / 8) * stride + j % 8] = (x[j] - mean[j]) * inverse[j];
}

static inline void fastgd_pack_row_f32(const float *x, Py_ssize_t d, const double *mean,
                                       const double *inverse, double *out, Py_ssize_t stride) {
    Py_ssize_t j = 0;
    for (; j + 4 <= d; j += 4)
        _mm256_storeu_pd(out + (j / 8) * stride + j % 8,
                         _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + j)),
                                                     _mm256_loadu_pd(mean + j)),
                                       _mm256_loadu_pd(inverse + j)));
    for (; j < d; j++)
        out[(j / 8) * stride + j % 8] = ((double)x[j] - mean[j]) * inverse[j];
}

/* c[4 i : 4 i + 4] = h[i * h_stride] * cols[8 i : 8 i + 4] for each row i: four columns of
   a panel, each row's weighted by its h. */
static inline void fastgd_weigh4(const double *cols, const double *h, Py_ssize_t h_stride,
                                 Py_ssize_t rows, double *c) {
    Py_ssize_t i;
    for (i = 0; i < rows; i++)
        _mm256_storeu_pd(c + 4 * i, _mm256_mul_pd(_mm256_set1_pd(h[i * h_stride]),
                                                  _mm256_loadu_pd(cols + 8 * i)));
}


/* sums[0:8] = the sum over rows i of w[i] * panel[8 i : 8 i + 8], in two vectors of partial
   sums a half (even and odd rows) added at the end; and, after it, each row minus mean. */
static inline void fastgd_panel_wsum(const double *panel, const double *w, Py_ssize_t rows,
                                     double *sums) {
    __m256d lo0 = _mm256_setzero_pd(), hi0 = lo0, lo1 = lo0, hi1 = lo0, v;
    Py_ssize_t i = 0;
    for (; i + 2 <= rows; i += 2) {
        v = _mm256_set1_pd(w[i]);
        lo0 = _mm256_fmadd_pd(v, _mm256_loadu_pd(panel + 8 * i), lo0);
        hi0 = _mm256_fmadd_pd(v, _mm256_loadu_pd(panel + 8 * i + 4), hi0);
        v = _mm256_set1_pd(w[i + 1]);
        lo1 = _mm256_fmadd_pd(v, _mm256_loadu_pd(panel + 8 * i + 8), lo1);
        hi1 = _mm256_fmadd_pd(v, _mm256_loadu_pd(panel + 8 * i + 12), hi1);
    }
    if (i < rows) {
        v = _mm256_set1_pd(w[i]);
        lo0 = _mm256_fmadd_pd(v, _mm256_loadu_pd(panel + 8 * i), lo0);
        hi0 = _mm256_fmadd_pd(v, _mm256_loadu_pd(panel + 8 * i + 4), hi0);
    }
    _mm256_storeu_pd(sums, _mm256_add_pd(lo0, lo1));
    _mm256_storeu_pd(sums + 4, _mm256_add_pd(hi0, hi1));
}

static inline void fastgd_panel_center(double *panel, const double *mean, Py_ssize_t rows) {
    __m256d lo = _mm256_loadu_pd(mean), hi = _mm256_loadu_pd(mean + 4);
    Py_ssize_t i;
    for (i = 0; i < rows; i++) {
        _mm256_storeu_pd(panel + 8 * i, _mm256_sub_pd(_mm256_loadu_pd(panel + 8 * i), lo));
        _mm256_storeu_pd(panel + 8 * i + 4, _mm256_sub_pd(_mm256_loadu_pd(panel + 8 * i + 4), hi));
    }
}

#else

static inline double fastgd_panel_dot(const double *row, Py_ssize_t stride,
                                      const double *theta, Py_ssize_t panels) {
    double acc[8] = {0.0};
    Py_ssize_t p, ll;
    for (p = 0; p < panels; p++)
        for (ll = 0; ll < 8; ll++)
            acc[ll] += theta[8 * p + ll] * row[p * stride + ll];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static inline void fastgd_panel_axpy4(const double *cols, const double *r, Py_ssize_t r_stride,
                                      Py_ssize_t rows, double *out) {
    double even[4] = {0.0}, odd[4] = {0.0};
    Py_ssize_t i = 0, jj;
    for (; i + 2 <= rows; i += 2)
        for (jj = 0; jj < 4; jj++) {
            even[jj] += r[i * r_stride] * cols[8 * i + jj];
            odd[jj] += r[(i + 1) * r_stride] * cols[8 * i + 8 + jj];
        }
    if (i < rows)
        for (jj = 0; jj < 4; jj++)
            even[jj] += r[i * r_stride] * cols[8 * i + jj];
    for (jj = 0; jj < 4; jj++)
        out[jj] += even[jj] + odd[jj];
}

static inline void fastgd_gram_tile(const double *panel, const double *c, Py_ssize_t rows,
                                    double *G, Py_ssize_t ldg) {
    double acc[4][8] = {{0.0}};
    Py_ssize_t i, jj, ll;
    for (i = 0; i < rows; i++)
        for (jj = 0; jj < 4; jj++)
            for (ll = 0; ll < 8; ll++)
                acc[jj][ll] += c[4 * i + jj] * panel[8 * i + ll];
    for (jj = 0; jj < 4; jj++)
        for (ll = 0; ll < 8; ll++)
            G[jj * ldg + ll] += acc[jj][ll];
}

static inline void fastgd_pack_row_f64(const double *x, Py_ssize_t d, const double *mean,
                                       const double *inverse, double *out, Py_ssize_t stride) {
    Py_ssize_t j;
    for (j = 0; j < d; j++)
        out[(j / 8) * stride + j % 8] = (x[j] - mean[j]) * inverse[j];
}

static inline void fastgd_pack_row_f32(const float *x, Py_ssize_t d, const double *mean,
                                       const double *inverse, double *out, Py_ssize_t stride) {
    Py_ssize_t j;
    for (j = 0; j < d; j++)
        out[(j / 8) * stride + j % 8] = ((double)x[j] - mean[j]) * inverse[j];
}

static inline void fastgd_weigh4(const double *cols, const double *h, Py_ssize_t h_stride,
                                 Py_ssize_t rows, double *c) {
    Py_ssize_t i, jj;
    for (i = 0; i < rows; i++)
        for (jj = 0; jj < 4; jj++)
            c[4 * i + jj] = h[i * h_stride] * cols[8 * i + jj];
}

static inline void fastgd_panel_wsum(const double *panel, const double *w, Py_ssize_t rows,
                                     double *sums) {
    double even[8] = {0.0}, odd[8] = {0.0};
    Py_ssize_t i = 0, ll;
    for (; i + 2 <= rows; i += 2)
        for (ll = 0; ll < 8; ll++) {
            even[ll] += w[i] * panel[8 * i + ll];
            odd[ll] += w[i + 1] * panel[8 * i + 8 + ll];
        }
    if (i < rows)
        for (ll = 0; ll < 8; ll++)
            even[ll] += w[i] * panel[8 * i + ll];
    for (ll = 0; ll < 8; ll++)
        sums[ll] = even[ll] + odd[ll];
}

static inline void fastgd_panel_center(double *panel, const double *mean, Py_ssize_t rows) {
    Py_ssize_t i, ll;
    for (i = 0; i < rows; i++)
        for (ll = 0; ll < 8; ll++)
            panel[8 * i + ll] -= mean[ll];
}

#endif
#endif
