"""Reading a block-shuffled epoch's windows ahead of it, from a thread of its own: the
thread announces each window's blocks to the kernel (madvise MADV_WILLNEED, through X's
np.memmap) as the epoch, which publishes its position (EpochPlan.progress), comes within
WINDOWS_AHEAD windows of it.

The compiled epoch can announce them itself (fastgd/_order.pxi: advise_window), and does
where X is not an np.memmap (an mmap view). But there thread 0 makes the calls, and on a
file larger than memory each one waits for the kernel to reclaim pages for the new ones,
while the other threads wait for thread 0 at the batch's barrier. Measured on the
29.8 GiB file of benchmarks/larger_than_memory.py (one shuffled epoch): 42-45 s from
thread 0, 36-41 s from this thread, against 28-30 s for one plain read of the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import mmap
import threading

import numpy as np

WINDOWS_AHEAD = 2      # as the epoch's own readahead: 512 MB in flight
PIECE_BYTES = 128 << 10  # an madvise's run: Linux reads at most its read-ahead of one call
POLL_SECONDS = 0.002   # how often the thread looks at the epoch's position


@dataclasses.dataclass
class Mapped:
    """One array of X in its memory map: `where` is the map's offset of its first byte."""

    map: mmap.mmap
    where: int
    unit: int                       # bytes a row (dense) or a stored entry (CSR)
    indptr: np.ndarray | None       # CSR's row pointers: rows to entries

    @classmethod
    def of(cls, array: np.ndarray, unit: int, indptr=None) -> Mapped | None:
        """The array's memory map, if it is a view of an np.memmap's (else None)."""
        owner = array
        while isinstance(getattr(owner, "base", None), np.ndarray):
            owner = owner.base
        if not (isinstance(owner, np.memmap) and isinstance(owner.base, mmap.mmap)):
            return None
        # np.memmap maps from the offset rounded down to the allocation granularity
        start = owner.offset % mmap.ALLOCATIONGRANULARITY
        return cls(owner.base, start + (array.ctypes.data - owner.ctypes.data), unit, indptr)

    def announce(self, first: int, last: int) -> None:
        """Rows first to last, asked of the kernel in PIECE_BYTES runs."""
        lo, hi = ((first, last) if self.indptr is None
                  else (int(self.indptr[first]), int(self.indptr[last])))
        end = self.where + hi * self.unit
        position = (self.where + lo * self.unit) // mmap.PAGESIZE * mmap.PAGESIZE
        while position < end:
            self.map.madvise(mmap.MADV_WILLNEED, position, min(PIECE_BYTES, end - position))
            position += PIECE_BYTES


def mapped(X) -> list | None:
    """X's arrays as Mapped (dense X of contiguous rows; CSR's values and indices), or None
    if not all of them are views of memory maps."""
    if getattr(X, "format", None) == "csr":
        parts = [Mapped.of(X.data, X.data.itemsize, X.indptr),
                 Mapped.of(X.indices, X.indices.itemsize, X.indptr)]
    elif isinstance(X, np.ndarray) and X.ndim == 2 and X.flags.c_contiguous:
        parts = [Mapped.of(X, X.strides[0])]
    else:
        return None
    return None if None in parts else parts


class Prefetcher(threading.Thread):
    """Announces the windows of an epoch's block order (the compiled window_blocks) to the
    kernel, WINDOWS_AHEAD windows ahead of `progress[0]`, the epoch's position."""

    def __init__(self, parts, keys, n, blocks, window_blocks):
        super().__init__(daemon=True, name="fastgd-prefetch")
        self.parts, self.keys, self.n, self.blocks = parts, keys, n, blocks
        self.window_blocks = window_blocks
        self.window_rows = blocks[0] * blocks[1]
        self.progress = np.zeros(1, dtype=np.int64)
        self.done = threading.Event()

    def run(self):
        try:
            for window in range(-(-self.n // self.window_rows)):
                while (window - WINDOWS_AHEAD) * self.window_rows > self.progress[0]:
                    if self.done.wait(POLL_SECONDS):
                        return
                for start, size in self.window_blocks(self.keys, self.n, self.blocks, window):
                    past = max(0, start + size - self.n)  # wrapped around to the first rows
                    for part in self.parts:
                        part.announce(start, start + size - past)
                        if past:
                            part.announce(0, past)
                    if self.done.is_set():
                        return
        except (OSError, ValueError):
            pass  # advice only: the epoch reads what was not announced


@contextlib.contextmanager
def ahead(problem, plan, module):
    """The epoch's plan, with a Prefetcher announcing its windows (its `progress` in the
    plan, for the compiled epoch to publish its position) for a block-shuffled epoch over
    X's own rows memory-mapped from files; the plan as it is otherwise."""
    window_blocks = getattr(module, "window_blocks", None)
    parts = (mapped(problem.X) if plan.shuffle_blocks and plan.shuffle_keys is not None
             and problem.rows is None and window_blocks is not None
             and hasattr(mmap, "MADV_WILLNEED") else None)
    if not parts:
        yield plan
        return
    prefetcher = Prefetcher(parts, plan.shuffle_keys, problem.X.shape[0],
                            plan.shuffle_blocks, window_blocks)
    prefetcher.start()
    try:
        yield dataclasses.replace(plan, progress=prefetcher.progress)
    finally:
        prefetcher.done.set()
        prefetcher.join()
