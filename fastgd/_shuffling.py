"""How an epoch's rows are shuffled: one by one for X in memory, by blocks for X that
streams from disk (the orders themselves: fastgd/_order.pxi, and fastgd/reference.py's
shuffled_rows).

A memory-mapped X larger than the memory available is read from its file at every epoch:
the page cache cannot keep it. A permutation of its rows then faults in a page for each
row, and the kernel reads ahead a hundred more around it that are evicted before the
epoch comes back to them (issue 21 measured over 577 GB read for a 30 GB file, the epoch
unfinished). By blocks, an epoch reads runs of BLOCK_BYTES of consecutive rows, a window
of WINDOW_BYTES of them at a time, its rows mixed within the window: every byte of the
file is read once an epoch, in runs the disk serves at its sequential speed.

`shuffle=True` (the estimators' default) picks blocks for X whose memory-mapped bytes
exceed the memory available, rows one by one otherwise; "rows" and "blocks" ask for one.
"""

from __future__ import annotations

import mmap
import os

import numpy as np

BLOCK_BYTES = 4 << 20     # a run of rows read at once: at least a few MB for the disk
WINDOW_BYTES = 256 << 20  # the rows mixed together: what the page cache holds meanwhile
SAMPLE_BYTES = WINDOW_BYTES  # what the automatic learning rate's power iteration reads
KINDS = ("rows", "blocks")


def check_shuffle(shuffle) -> None:
    if not (isinstance(shuffle, (bool, np.bool_)) or (isinstance(shuffle, str)
                                                      and shuffle in KINDS)):
        raise TypeError(f"shuffle must be True, False, 'rows' or 'blocks', got {shuffle!r}")


def shuffle_blocks(X, shuffle) -> tuple | None:
    """(rows a block, blocks a window), powers of two, when X's epochs are shuffled by
    blocks under `shuffle`; None when its rows are shuffled one by one, or not at all."""
    if not shuffle or shuffle == "rows":
        return None
    if shuffle == "blocks" or streams(X):
        return block_shape(row_bytes(X))
    return None


def block_shape(bytes_a_row: float) -> tuple:
    """The most rows (a power of two) within BLOCK_BYTES, and WINDOW_BYTES of blocks."""
    rows = max(1, int(BLOCK_BYTES // max(bytes_a_row, 1.0)))
    return 1 << (rows.bit_length() - 1), WINDOW_BYTES // BLOCK_BYTES


def sample(X, rows=None) -> np.ndarray | None:
    """Rows of X (or of its `rows`): SAMPLE_BYTES of whole blocks spread evenly over it,
    each a sequential read; None if that would be half of them or more."""
    n = X.shape[0] if rows is None else len(rows)
    block = block_shape(row_bytes(X))[0]
    n_blocks = -(-n // block)
    taken = SAMPLE_BYTES // BLOCK_BYTES
    if 2 * taken >= n_blocks:
        return None
    starts = np.arange(taken) * n_blocks // taken * block
    picked = (starts[:, None] + np.arange(block)).ravel()
    picked = picked[picked < n]
    return picked if rows is None else np.asarray(rows)[picked]


def row_bytes(X) -> float:
    """The mean bytes of a row of X (a CSR row's stored values and indices)."""
    if getattr(X, "format", None) == "csr":
        return (X.data.nbytes + X.indices.nbytes) / max(X.shape[0], 1)
    return X.shape[1] * np.dtype(X.dtype).itemsize


def streams(X) -> bool:
    """Whether X is read from a file that the page cache cannot hold: its memory-mapped
    bytes exceed the memory available."""
    mapped = mapped_bytes(X)
    return mapped > 0 and mapped > available_memory()


def mapped_bytes(X) -> int:
    """The bytes of X (a NumPy array, or CSR's three) that are views of a memory map."""
    parts = (X.data, X.indices, X.indptr) if getattr(X, "format", None) == "csr" else (X,)
    return sum(part.nbytes for part in parts
               if isinstance(part, np.ndarray) and is_mapped(part))


def is_mapped(array: np.ndarray) -> bool:
    """Whether the array's memory is a memory map (np.memmap, np.load(mmap_mode=...), or
    a view of an mmap.mmap)."""
    while array is not None:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = getattr(array, "base", None)
    return False


def available_memory() -> int:
    """The memory available to new data without swapping: Linux's MemAvailable (free
    memory plus the page cache it can reclaim), or the free pages elsewhere."""
    try:
        with open("/proc/meminfo") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: X counts as resident
