/* Telling the kernel how a memory-mapped X will be read (fastgd/_order.pxi: the block
 * shuffle's windows). Advice only: where madvise is missing, or refuses (memory that is
 * not a file), the reads are the same, just not announced. */
#ifndef FASTGD_READAHEAD_H
#define FASTGD_READAHEAD_H

#include <stddef.h>
#include <stdint.h>

enum { FASTGD_WILL_NEED, FASTGD_RANDOM, FASTGD_NORMAL };

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>

static inline void fastgd_advise(const void* start, size_t length, int how) {
    long size = sysconf(_SC_PAGESIZE);
    uintptr_t page = size > 0 ? (uintptr_t)size : 4096;
    uintptr_t first = (uintptr_t)start & ~(page - 1);  /* madvise takes whole pages */
    int advice = how == FASTGD_WILL_NEED ? MADV_WILLNEED
                 : how == FASTGD_RANDOM ? MADV_RANDOM : MADV_NORMAL;
    if (length > 0)
        (void)madvise((void*)first, length + ((uintptr_t)start - first), advice);
}
#else
static inline void fastgd_advise(const void* start, size_t length, int how) {
    (void)start; (void)length; (void)how;
}
#endif

#endif
