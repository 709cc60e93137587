"""scipy.sparse X: checked once, up front, into the canonical CSR form the kernels read.

The kernels walk X's rows through `indptr` and `indices` with raw pointers: a malformed
matrix (an index out of [0, d), an indptr that goes backwards or past the end) would read
outside its arrays. So every sparse X is checked here, in O(nnz) and by blocks (bounded
temporaries), before any pass, and the check's answer is a ValueError that names the
problem. What is read in place and what is converted, and what that costs:

- CSR (scipy's csr_matrix or csr_array) of float32/float64 values and int32/int64 indices,
  its indices sorted within each row and without duplicates (the canonical form, what
  scikit-learn's vectorizers and encoders produce): read in place, never copied.
- CSR with unsorted or duplicate indices: a copy, sorted, duplicates summed (the same
  model as the canonical form: a duplicate counts as the sum of its entries, as in
  `toarray()`). One copy of X's arrays.
- CSC, COO and the other formats: converted once to CSR (`tocsr()`), a copy of X (its
  values and indices, 12 bytes a non-zero for float64 and int32, plus n + 1 row offsets).
  A CSR pass streams X's rows once; a CSC X would have to be read by columns twice or
  transposed anyway.
- other value types (integers, bools, float16): converted to float64; other index types
  (unsigned, 16-bit): to int64.

scipy is imported only when X is one of its matrices: `import fastgd` needs NumPy alone.
"""

from __future__ import annotations

import sys

import numpy as np

CHECK_BLOCK = 1 << 20  # indices checked per block (bounded temporaries: a few MB)


def is_sparse(X) -> bool:
    """Whether X is a scipy.sparse matrix or array (without importing scipy)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


def is_csr(X) -> bool:
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X) and X.format == "csr"


def as_csr(X, name: str = "X"):
    """X (a scipy.sparse matrix or array) as canonical CSR of float32/float64 values and
    int32/int64 indices, checked (see the module's docstring for what is copied)."""
    n, d = X.shape
    if n == 0:
        raise ValueError(f"{name} has 0 rows: at least one sample is required")
    if d == 0:
        raise ValueError(f"{name} has 0 columns: at least one feature is required")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.format != "csr":
        if X.format == "coo":  # tocsr() trusts its coordinates: check them first
            _check_coordinates(X, name)
        elif X.format == "csc":
            _check_compressed(X.indptr, X.indices, X.data, d + 1, n, f"{name} (CSC)")
        X = X.tocsr()
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    index = X.indices.dtype if (X.indices.dtype == X.indptr.dtype
                                and X.indices.dtype in (np.int32, np.int64)) else np.int64
    indptr, indices, data = X.indptr, X.indices, X.data
    if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
        raise TypeError(f"{name}'s indptr and indices must be integers, got "
                        f"{indptr.dtype} and {indices.dtype}")
    nnz = _check_compressed(indptr, indices, data, n + 1, d, name)
    canonical = _canonical(indptr, indices, nnz)
    if (dtype == data.dtype and index == indices.dtype and index == indptr.dtype
            and canonical and len(data) == nnz and len(indices) == nnz
            and all(a.flags.c_contiguous and a.dtype.isnative for a in (data, indices, indptr))):
        return X
    copy = type(X)((np.require(data[:nnz], dtype=dtype.newbyteorder("="), requirements="C"),
                    np.require(indices[:nnz].astype(index), requirements="C"),
                    np.require(indptr.astype(index), requirements="C")), shape=(n, d),
                   copy=False)
    if not canonical:
        copy = copy.copy()  # sum_duplicates works in place: never on the user's arrays
        copy.sum_duplicates()
    copy.has_canonical_format = True
    return copy


def _check_compressed(indptr, indices, data, n_pointers: int, n_indices: int,
                      name: str) -> int:
    """That a compressed matrix's offsets and indices describe it: n_pointers offsets from
    0, never decreasing, within its arrays, and indices in [0, n_indices). Returns its
    number of non-zeros."""
    if indptr.ndim != 1 or len(indptr) != n_pointers:
        raise ValueError(f"{name} is malformed: its indptr has {len(indptr)} entries, "
                         f"expected {n_pointers}")
    if indices.ndim != 1 or data.ndim != 1:
        raise ValueError(f"{name} is malformed: its indices and data must be 1-D")
    if indptr[0] != 0:
        raise ValueError(f"{name} is malformed: its indptr starts at {indptr[0]}, not 0")
    for lo in range(0, len(indptr) - 1, CHECK_BLOCK):
        step = np.diff(indptr[lo:lo + CHECK_BLOCK + 1])
        if (step < 0).any():
            row = lo + int(np.argmax(step < 0))
            raise ValueError(f"{name} is malformed: its indptr decreases after entry {row}")
    nnz = int(indptr[-1])
    if nnz > len(indices) or nnz > len(data):
        raise ValueError(f"{name} is malformed: its indptr ends at {nnz} but it holds "
                         f"{len(indices)} indices and {len(data)} values")
    for lo in range(0, nnz, CHECK_BLOCK):
        block = indices[lo:min(lo + CHECK_BLOCK, nnz)]
        if block.min() < 0 or block.max() >= n_indices:
            bad = lo + int(np.argmax((block < 0) | (block >= n_indices)))
            raise ValueError(f"{name} is malformed: index {indices[bad]} (entry {bad}) is "
                             f"outside [0, {n_indices})")
    return nnz


def _check_coordinates(X, name: str) -> None:
    n, d = X.shape
    for what, coords, size in (("row", X.row, n), ("column", X.col, d)):
        if len(coords) and (coords.min() < 0 or coords.max() >= size):
            raise ValueError(f"{name} is malformed: a {what} index is outside [0, {size})")
    if not (len(X.row) == len(X.col) == len(X.data)):
        raise ValueError(f"{name} is malformed: its row, col and data differ in length")


def _canonical(indptr, indices, nnz: int) -> bool:
    """Whether each row's indices are strictly increasing (sorted, no duplicates)."""
    row_starts = indptr[1:-1]
    for lo in range(0, nnz - 1, CHECK_BLOCK):
        hi = min(lo + CHECK_BLOCK + 1, nnz)
        rising = np.diff(indices[lo:hi].astype(np.int64)) > 0
        # a fall from entry p to p + 1 is allowed where p + 1 starts a row
        starts = row_starts[(row_starts > lo) & (row_starts < hi)] - lo - 1
        rising[starts] = True
        if not rising.all():
            return False
    return True


def row_squared_norms(X, std, block_rows: int = 1 << 14) -> np.ndarray:
    """|x_i|^2 of every row of CSR X, standardized by std without densifying:
    sum_j ((x_j - m_j) / s_j)^2 = sum_j (m_j / s_j)^2 + the sum over the stored entries of
    ((x_j - m_j) / s_j)^2 - (m_j / s_j)^2. By blocks of rows (bounded temporaries)."""
    n = X.shape[0]
    norms = np.empty(n)
    shift = std.mean / std.divisor if std else None  # 0 for a constant feature
    for lo in range(0, n, block_rows):
        rows = X[lo:lo + block_rows]
        values = rows.data.astype(np.float64)
        if std:
            columns = rows.indices
            values = ((values - std.mean[columns]) / std.divisor[columns]) ** 2 - (
                shift[columns] ** 2)
        else:
            values = values * values
        m = rows.shape[0]
        row_of = np.repeat(np.arange(m), np.diff(rows.indptr))
        norms[lo:lo + m] = np.bincount(row_of, weights=values, minlength=m)
    if std:
        norms += shift @ shift
    return norms


def raise_if_nonfinite(X, name: str = "X", row_offset: int = 0) -> None:
    """After a non-finite result: where CSR X stores NaN or infinity, as for dense X."""
    bad = ~np.isfinite(X.data[:X.indptr[-1]])
    if bad.any():
        entry = int(np.argmax(bad))
        row = int(np.searchsorted(X.indptr, entry, side="right")) - 1
        raise ValueError(f"{name} contains NaN or infinity (the first at row "
                         f"{row + row_offset}, column {X.indices[entry]}); remove or impute "
                         f"such values before training")
