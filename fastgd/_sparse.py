"""scipy.sparse X: checked once, up front, into the canonical CSR form the kernels read.

The kernels walk X's rows through `indptr` and `indices` with raw pointers: a malformed
matrix (an index out of [0, d), an indptr that goes backwards or past the end) would read
outside its arrays. So every sparse X is checked here, before any pass, in one compiled
read of its indices (fastgd/_sparse.pxi: csr_structure), and the check's answer is a
ValueError that names the problem. What is read in place and what is converted, and what
that costs:

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
  (unsigned, 16-bit): to int64 (an unsigned index of 2^63 or more becomes negative, and
  is refused as outside [0, d)).

scipy is imported only when X is one of its matrices: `import fastgd` needs NumPy alone.
"""

from __future__ import annotations

import sys

import numpy as np

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
    if len(X.shape) != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {X.shape}")
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
            _check_compressed(X, d, n, f"{name} (CSC)")
        elif X.format == "bsr":  # rows of blocks: checked as CSR of its blocks
            _check_compressed(X, n // X.blocksize[0], d // X.blocksize[1], f"{name} (BSR)",
                              n_values=X.data.shape[0])
        X = X.tocsr()
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    canonical = _check_compressed(X, n, d, name)
    index = X.indices.dtype
    if not (index == X.indptr.dtype and index in (np.int32, np.int64)):
        index = np.int64
    nnz = int(X.indptr[-1])
    if (dtype == X.data.dtype and index == X.indices.dtype and index == X.indptr.dtype
            and canonical and len(X.data) == nnz and len(X.indices) == nnz and all(
                a.flags.c_contiguous and a.dtype.isnative
                for a in (X.data, X.indices, X.indptr))):
        return X
    copy = type(X)((np.require(X.data[:nnz], dtype=dtype.newbyteorder("="),
                               requirements="C"),
                    np.require(X.indices[:nnz], dtype=index, requirements="C"),
                    np.require(X.indptr, dtype=index, requirements="C")), shape=(n, d),
                   copy=False)
    if not canonical:
        copy = copy.copy()  # sum_duplicates works in place: never on the user's arrays
        copy.sum_duplicates()
    copy.has_canonical_format = True
    return copy


def _check_compressed(X, n_rows: int, n_indices: int, name: str,
                      n_values: int | None = None) -> bool:
    """That a compressed matrix's offsets and indices describe it: n_rows + 1 offsets from
    0, never decreasing, within its arrays (n_values: its values, or blocks of them), and
    indices in [0, n_indices), in one read of them (fastgd/_sparse.pxi). Whether each
    row's indices are strictly increasing."""
    from fastgd._compiled import kernels
    indptr, indices, data = X.indptr, X.indices, X.data
    if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
        raise TypeError(f"{name}'s indptr and indices must be integers, got "
                        f"{indptr.dtype} and {indices.dtype}")
    if indptr.ndim != 1 or indices.ndim != 1 or (n_values is None and data.ndim != 1):
        raise ValueError(f"{name} is malformed: its indptr, indices and data must be 1-D")
    if len(indptr) != n_rows + 1:
        raise ValueError(f"{name} is malformed: its indptr has {len(indptr)} entries, "
                         f"expected {n_rows + 1}")
    both = np.result_type(indptr, indices)
    index = both if both in (np.int32, np.int64) else np.int64  # unsigned: checked as signed
    verdict, where = kernels.csr_structure(
        np.require(indptr, dtype=index, requirements="C"),
        np.require(indices, dtype=index, requirements="C"),
        len(data) if n_values is None else n_values, n_indices)
    if verdict == kernels.CSR_BAD_START:
        raise ValueError(f"{name} is malformed: its indptr starts at {indptr[0]}, not 0")
    if verdict == kernels.CSR_DECREASING:
        raise ValueError(f"{name} is malformed: its indptr decreases after entry {where}")
    if verdict == kernels.CSR_PAST_END:
        raise ValueError(f"{name} is malformed: its indptr ends at {where} but it holds "
                         f"{len(indices)} indices and {len(data)} values")
    if verdict == kernels.CSR_BAD_INDEX:
        raise ValueError(f"{name} is malformed: index {indices[where]} (entry {where}) is "
                         f"outside [0, {n_indices})")
    return verdict == kernels.CSR_CANONICAL


def _check_coordinates(X, name: str) -> None:
    n, d = X.shape
    if not (len(X.row) == len(X.col) == len(X.data)):
        raise ValueError(f"{name} is malformed: its row, col and data differ in length")
    for what, coords, size in (("row", X.row, n), ("column", X.col, d)):
        if len(coords) and (coords.min() < 0 or coords.max() >= size):
            raise ValueError(f"{name} is malformed: a {what} index is outside [0, {size})")


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
