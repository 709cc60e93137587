/* What widening float32 to float64 costs on this CPU, alone: eight independent chains of
   vcvtps2pd (4 floats -> 4 doubles) from L1, each added to a sum.

       gcc -O2 -mavx2 -mfma benchmarks/widen.c -o /tmp/widen && /tmp/widen

   benchmarks/README.md uses it for the float32 floor: a fused pass widens each float
   twice (prediction and gradient), since its sums accumulate in float64. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static float buf[1024] __attribute__((aligned(64)));

int main(void) {
    long rounds = 200000, r;
    int i, c;
    __m256d s[8];
    double out[4], t;
    for (i = 0; i < 1024; i++) buf[i] = i * 0.5f;
    for (c = 0; c < 8; c++) s[c] = _mm256_setzero_pd();
#define STEP(c) s[c] = _mm256_add_pd(s[c], _mm256_cvtps_pd(_mm_load_ps(buf + i + 4 * c)))
    t = now();
    for (r = 0; r < rounds; r++)
        for (i = 0; i < 1024; i += 32) {  /* written out: the eight sums stay in registers */
            STEP(0); STEP(1); STEP(2); STEP(3); STEP(4); STEP(5); STEP(6); STEP(7);
        }
    t = now() - t;
    for (c = 1; c < 8; c++) s[0] = _mm256_add_pd(s[0], s[c]);
    _mm256_storeu_pd(out, s[0]);
    printf("%.3f ns per vcvtps2pd (4 floats), checksum %g\n", t / (rounds * 256.0) * 1e9, out[0]);
    return 0;
}
