/* Telling the kernel how a memory-mapped X will be read (fastgd/_order.pxi: the block
 * shuffle's windows). Advice only: where madvise is missing, or refuses (memory that is
 * not a file), the reads are the same, just not announced. */
#ifndef FASTGD_READAHEAD_H
#define FASTGD_READAHEAD_H

#include <stddef.h>
#include <stdint.h>

enum { FASTGD_WILL_NEED, FASTGD_RANDOM, FASTGD_NORMAL };

/* Linux reads at most max(the device's read-ahead, its largest request) of one
 * MADV_WILLNEED (force_page_cache_ra): 128 KB on many machines. The rest of a larger run
 * would then fault in page by page under MADV_RANDOM (measured: a 16 MB block, past this
 * VM's 8 MB read-ahead, made an epoch 9 x slower). So a run is announced in pieces of
 * 128 KB, the kernel's default read-ahead. */
#define FASTGD_ADVISE_PIECE ((size_t)128 << 10)

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>

static inline void fastgd_advise(const void* start, size_t length, int how) {
    long size = sysconf(_SC_PAGESIZE);
    uintptr_t page = size > 0 ? (uintptr_t)size : 4096;
    uintptr_t first = (uintptr_t)start & ~(page - 1);  /* madvise takes whole pages */
    uintptr_t end = (uintptr_t)start + length;
    int advice = how == FASTGD_WILL_NEED ? MADV_WILLNEED
                 : how == FASTGD_RANDOM ? MADV_RANDOM : MADV_NORMAL;
    size_t piece = how == FASTGD_WILL_NEED ? FASTGD_ADVISE_PIECE : end - first;
    if (length == 0)
        return;
    for (; first < end; first += piece)
        (void)madvise((void*)first, end - first < piece ? end - first : piece, advice);
}
#else
static inline void fastgd_advise(const void* start, size_t length, int how) {
    (void)start; (void)length; (void)how;
}
#endif

#endif
