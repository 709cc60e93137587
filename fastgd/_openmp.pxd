# The OpenMP shim: every OpenMP runtime call goes through here, so a build without
# OpenMP still compiles, imports and runs serially (prange then runs as a plain loop).

cdef extern from *:
    """
    #ifdef _OPENMP
        #include <omp.h>
        #define FASTGD_OPENMP 1
    #else
        #define FASTGD_OPENMP 0
        static int omp_get_max_threads(void) { return 1; }
        static int omp_get_thread_num(void) { return 0; }
        static int omp_get_num_threads(void) { return 1; }
    #endif
    /* A barrier of the enclosing parallel region, callable from a function the region runs
       (an orphaned barrier); without OpenMP there is one thread and nothing to wait for. */
    static void fastgd_barrier(void) {
    #ifdef _OPENMP
        #pragma omp barrier
    #endif
    }
    """
    bint FASTGD_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
    void fastgd_barrier() noexcept nogil
