# The OpenMP shim: every OpenMP runtime call goes through here, so a build without
# OpenMP still compiles, imports and runs serially (prange then runs as a plain loop).

cdef extern from *:
    """
    #if defined(_WIN32)
        #define WIN32_LEAN_AND_MEAN
        #define NOMINMAX
        #include <windows.h>
    #endif
    #ifdef _OPENMP
        #include <omp.h>
        #define FASTGD_OPENMP 1
    #else
        #define FASTGD_OPENMP 0
        static int omp_get_max_threads(void) { return 1; }
        static int omp_get_thread_num(void) { return 0; }
        static int omp_get_num_threads(void) { return 1; }
    #endif

    /* fastgd_openmp_library: the file of the OpenMP runtime this module calls (the one
       threadpoolctl must limit) as a str, or "" in a serial build or where the OS cannot
       tell. Called with the GIL. */
    #if FASTGD_OPENMP && defined(_WIN32)
        static PyObject *fastgd_openmp_library(void) {
            static wchar_t path[32768];  /* the longest path Windows has */
            HMODULE module;
            if (GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS
                                   | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                                   (LPCWSTR)&omp_get_max_threads, &module)
                    && GetModuleFileNameW(module, path, 32768))
                return PyUnicode_FromWideChar(path, -1);
            return PyUnicode_FromString("");
        }
    #elif FASTGD_OPENMP
        #include <dlfcn.h>
        static PyObject *fastgd_openmp_library(void) {
            Dl_info info;
            if (dladdr((void *)&omp_get_max_threads, &info) && info.dli_fname)
                return PyUnicode_DecodeFSDefault(info.dli_fname);
            return PyUnicode_FromString("");
        }
    #else
        static PyObject *fastgd_openmp_library(void) { return PyUnicode_FromString(""); }
    #endif

    /* fastgd_team_wait: a barrier for the threads of a parallel region, by flags. Thread
       `tid` announces that it reached barrier number `k` (1, 2, ...; 32-bit, wrapping) in
       its own cache line of `arrived` (FASTGD_LINE entries per thread), then waits until
       every thread has. A thread cannot pass barrier k before all have reached it, so a
       partner's flag is k - 1 (not there yet), k, or k + 1 (already past). One cache-line
       transfer each way: 45-50 ns here for two threads, against 240-300 ns for libgomp's
       `omp barrier`, which a mini-batch epoch pays every batch. Writes before the wait are
       visible to every thread after it (release/acquire).
       Returns 1 if the wait was long (a partner was probably not running: the cores are
       shared with other work), after which the thread yields its core while it waits. */
    #define FASTGD_LINE 16
    #if defined(_WIN32)
        #define fastgd_store_release(p, v) InterlockedExchange((volatile LONG *)(p), (LONG)(v))
        #define fastgd_load_acquire(p) \
            ((unsigned)InterlockedCompareExchange((volatile LONG *)(p), 0, 0))
        #define fastgd_pause() YieldProcessor()
        #define fastgd_yield() SwitchToThread()
    #else
        #include <sched.h>
        #define fastgd_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
        #define fastgd_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
        #if defined(__x86_64__) || defined(__i386__)
            #define fastgd_pause() __builtin_ia32_pause()
        #elif defined(__aarch64__) || defined(__arm__)
            #define fastgd_pause() __asm__ __volatile__("yield")
        #else
            #define fastgd_pause() ((void)0)
        #endif
        #define fastgd_yield() sched_yield()
    #endif
    #define FASTGD_LONG_WAIT (1u << 12)  /* spins: some 100 us, 100 x a batch's imbalance */
    static int fastgd_team_wait(unsigned *arrived, int n_team, int tid, unsigned k) {
        int j;
        unsigned spins = 0;
        fastgd_store_release(&arrived[tid * FASTGD_LINE], k);
        for (j = 0; j < n_team; j++) {
            while (fastgd_load_acquire(&arrived[j * FASTGD_LINE]) == k - 1u) {
                if (++spins < FASTGD_LONG_WAIT) fastgd_pause(); else fastgd_yield();
            }
        }
        return spins >= FASTGD_LONG_WAIT;
    }
    """
    bint FASTGD_OPENMP
    object fastgd_openmp_library()
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
    enum: FASTGD_LINE
    int fastgd_team_wait(unsigned* arrived, int n_team, int tid, unsigned k) noexcept nogil
