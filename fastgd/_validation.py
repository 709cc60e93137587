"""Input checks shared by every entry point and both engines.

Every check names the argument and the problem. X is never scanned for NaN/inf up front
(that would be a second pass over the data): the engines notice a non-finite loss or
statistic, and `raise_if_nonfinite` then finds and reports the cause.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from fastgd import _sparse


def check_number(name: str, value, *, integer: bool = False, allow_none: bool = False,
                 allow_zero: bool = False):
    """A finite number > 0 (>= 0 with `allow_zero`; an int when `integer`), or None when
    `allow_none`. NumPy scalars count as numbers; bools do not."""
    if value is None and allow_none:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kind):
        expected = "an integer" if integer else "a number"
        none = " or None" if allow_none else ""
        raise TypeError(f"{name} must be {expected}{none}, got {value!r} of type "
                        f"{type(value).__name__}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float: fine as a count, not as a real
        finite = integer
    if not finite or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def check_choice(name: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def as_data(X, name: str = "X"):
    """X as the engines read it: a checked canonical CSR matrix for a scipy.sparse X
    (fastgd/_sparse.py), else a dense array (as_matrix)."""
    if _sparse.is_sparse(X):
        return _sparse.as_csr(X, name)
    return as_matrix(X, name)


def as_matrix(X, name: str = "X") -> np.ndarray:
    """X as a 2-D float32/float64 array the kernels read in place.

    Float arrays with contiguous rows (C order, row slices) or contiguous columns (F order)
    are used as they are, read-only and memory-mapped ones included; anything else is
    converted once, up front.
    """
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise TypeError(f"{name} is a sparse matrix, where a dense array is needed")
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got {X.ndim} dimension(s)")
    n, d = X.shape
    if n == 0:
        raise ValueError(f"{name} has 0 rows: at least one sample is required")
    if d == 0:
        raise ValueError(f"{name} has 0 columns: at least one feature is required")
    if X.dtype not in (np.float32, np.float64):
        return kernel_array(X, np.float64)
    if not X.dtype.isnative:
        return kernel_array(X, X.dtype.newbyteorder("="))
    item = X.itemsize
    whole = X.flags.aligned and all(s % item == 0 for s in X.strides)  # e.g. not a record field
    rows_ok = X.strides[1] == item and X.strides[0] >= d * item
    cols_ok = X.strides[0] == item and X.strides[1] >= n * item
    if whole and (rows_ok or cols_ok or (n == 1 and X.strides[1] == item)
                  or (d == 1 and X.strides[0] == item)):
        return X
    return kernel_array(X, X.dtype)


def kernel_array(a, dtype) -> np.ndarray:
    """a as a C-contiguous, aligned array of dtype (a copy only if it is not one already).
    Aligned: a float read at an address that is not a multiple of its size is undefined
    behaviour in C (vectorized loops may assume it); np.frombuffer at an offset, record
    fields and some unpickled buffers (Dask's) are unaligned."""
    return np.require(a, dtype=dtype, requirements=("C", "A"))


def real_array(value, name: str) -> np.ndarray:
    """value as an array of real numbers (bools and integers included), else TypeError."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array


def finite(array: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return array


def as_vector(v, name: str, n: int, dtype) -> np.ndarray:
    """A finite 1-D array of length n, in the data's dtype."""
    v = real_array(v, name)
    if v.ndim == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {v.shape}")
    if v.shape[0] != n:
        raise ValueError(f"{name} has {v.shape[0]} entries but X has {n} rows")
    return finite(kernel_array(v, dtype), name)


def as_sample_weight(sample_weight, n: int, dtype, shard=False) -> np.ndarray | None:
    """Finite, non-negative weights, not all zero (but for a shard of the rows)."""
    if sample_weight is None:
        return None
    sw = as_vector(sample_weight, "sample_weight", n, dtype)
    if (sw < 0).any():
        raise ValueError("sample_weight must be >= 0, got negative weights")
    with np.errstate(over="ignore"):
        total = sw.sum(dtype=np.float64)
    if not (total > 0 or shard):
        raise ValueError("sample_weight must not be all zero")
    if not np.isfinite(total):
        raise ValueError("sample_weight values are too large: their sum overflows; rescale them")
    return sw


def as_targets(y, n: int, k: int, dtype, name: str = "y") -> np.ndarray:
    """Finite targets as an (n, k) C-contiguous array in the data's dtype: y of shape (n,)
    (k = 1) or (n, k)."""
    y = real_array(y, name)
    if y.ndim == 1 and k == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != k:
        want = f"({n},)" if k == 1 else f"({n}, {k})"
        raise ValueError(f"{name} must have shape {want} for {k} output(s), got {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries but X has {n} rows")
    return finite(kernel_array(y, dtype), name)


def as_coef(coef, shape: tuple, name: str = "coef") -> np.ndarray:
    """Finite float64 coefficients of the given shape: (d,), or (k, d) for k outputs."""
    coef = real_array(coef, name)
    if coef.shape != shape:
        raise ValueError(f"{name} must have shape {shape} to match X's {shape[-1]} columns"
                         f"{'' if len(shape) == 1 else f' and {shape[0]} outputs'}, got "
                         f"{coef.shape}")
    return finite(kernel_array(coef, np.float64), name)


def as_intercept(intercept, k: int | None = None, name: str = "intercept"):
    """A finite real number (k = None), or k of them as a float64 array (a number is
    repeated; one array must have shape (k,))."""
    if k is not None and np.ndim(intercept) == 1:
        values = real_array(intercept, name)
        if values.shape != (k,):
            raise ValueError(f"{name} must have shape ({k},), got {values.shape}")
        return finite(values.astype(np.float64), name)
    if isinstance(intercept, (bool, np.bool_)) or not isinstance(intercept, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {intercept!r}")
    if not np.isfinite(intercept):
        raise ValueError(f"{name} must be finite, got {intercept!r}")
    return float(intercept) if k is None else np.full(k, float(intercept))


def raise_if_nonfinite(X, name: str = "X", row_offset: int = 0) -> None:
    """Called only after an engine saw a non-finite result: find the cause in X and report it.

    y, sample_weight and the parameters are checked up front, so if X is finite too the
    caller is looking at an overflow and reports that itself.
    """
    if _sparse.is_sparse(X):
        return _sparse.raise_if_nonfinite(X, name, row_offset)
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} contains NaN or infinity (the first at row {row + row_offset}, "
            f"column {col}); remove or impute such values before training"
        )
