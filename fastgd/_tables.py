"""Data files for the command line: read as named columns, checked, written back atomically.

CSV (.csv, .tsv, also compressed: .csv.gz, .csv.zst, ...) and Parquet are read by pandas,
with pyarrow's multithreaded reader when pyarrow is installed; .npy and .npz by NumPy,
never unpickling. Every problem with a file is a ValueError whose message names the file
and says what is wrong, for the command line to print as one line.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from fastgd._files import atomic_write

COMPRESSIONS = {"gz": "gzip", "bz2": "bz2", "xz": "xz", "zst": "zstd", "zip": "zip"}
READS = ".csv, .tsv (also compressed: .csv.gz, ...), .parquet, .npy, .npz"
WRITES = ".csv, .tsv (also compressed), .parquet, .npy"


def read_table(path, role: str = "data", columns=None):
    """The file at `path` as a pandas DataFrame; for CSV and Parquet only `columns`, if
    given, are parsed.

    .npy: a 2-D array's columns are named "0", "1", ...; a structured array's fields keep
    their names. .npz: a 1-D entry is one column named by its key, a 2-D entry "X" of m
    columns becomes columns "X.0" ... "X.<m-1>".
    """
    pd = _pandas()
    name = f"{role} file {os.fspath(path)!r}"
    kind = _kind(path)
    try:
        if not os.path.exists(path):
            raise _Problem("does not exist")
        if os.path.isdir(path):
            raise _Problem("is a directory, not a file")
        if kind is None:
            raise _Problem(f"has an unknown format (fastgd reads {READS})")
        if os.path.getsize(path) == 0:
            raise _Problem("is empty")
        if kind == "csv":
            if columns is not None:  # the header first: a clear message for a missing name
                header = pd.read_csv(path, sep=_separator(path), nrows=0)
                _check_present(header, columns, name)
            table = pd.read_csv(path, sep=_separator(path), usecols=columns,
                                engine="pyarrow" if _has_pyarrow() else "c")
        elif kind == "parquet":
            if not _has_pyarrow():
                raise _Problem("is Parquet, which needs pyarrow: pip install pyarrow")
            table = pd.read_parquet(path, columns=columns)
        else:
            table = _read_numpy(path, pd)
        if table.shape[0] == 0:
            raise _Problem("has no rows")
    except _Problem as problem:
        raise ValueError(f"{name} {problem}") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{name} is empty") from None
    except (ValueError, pd.errors.ParserError, OSError, EOFError, KeyError) as error:
        if str(error).startswith(name):  # _check_present's message
            raise
        raise ValueError(f"{name} cannot be read as {kind}: {_first_line(error)}") from None
    table.attrs["name"] = name
    return table


def numeric(table, columns, what: str) -> np.ndarray:
    """The named columns as one array of shape (n_rows, len(columns)), float32 if they all
    are, else float64; a ValueError for a column that is not numbers or misses values."""
    _check_present(table, columns)
    for column in columns:
        series = table[column]
        if not _is_numeric(series):
            example = series.dropna().iloc[0] if series.notna().any() else None
            raise ValueError(f"{what} column {column!r} of {table.attrs['name']} is not "
                             f"numeric (it holds values such as {example!r}); "
                             f"{_NON_NUMERIC_HINT[what]}")
    dtype = (np.float32 if all(table[c].dtype == np.float32 for c in columns)
             else np.float64)
    values = table[list(columns)].to_numpy(dtype=dtype)
    _check_complete(table, columns, np.isnan(values))
    return values


def labels(table, column) -> np.ndarray:
    """One column of class labels (numbers, strings or booleans), without missing values."""
    _check_present(table, [column])
    series = table[column]
    _check_complete(table, [column], series.isna().to_numpy()[:, None])
    values = series.to_numpy()
    return values.astype(object) if values.dtype.kind in "OUT" else values


def is_numeric(table, column) -> bool:
    _check_present(table, [column])
    return _is_numeric(table[column])


def write_table(path, table) -> None:
    """Write a DataFrame to `path` (.csv, .tsv, also compressed, .parquet or .npy, by its
    suffix; "-" is CSV on stdout) atomically: an interrupted write leaves an old file as it
    was."""
    if path == "-":
        table.to_csv(sys.stdout, index=False)
        return
    kind = _kind(path)
    if kind not in ("csv", "parquet", "npy"):
        raise ValueError(f"output file {os.fspath(path)!r} has an unknown format (fastgd "
                         f"writes {WRITES})")
    with atomic_write(path) as f:
        if kind == "csv":
            table.to_csv(f, index=False, sep=_separator(path), compression=_compression(path))
        elif kind == "parquet":
            table.to_parquet(f, index=False)
        else:  # a structured array: the column names survive
            np.save(f, table.to_records(index=False), allow_pickle=False)


def _read_numpy(path, pd):
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # .npy
            if loaded.dtype.names is not None:
                return pd.DataFrame(loaded)
            entries = {"": loaded}
        else:
            with loaded:
                entries = {key: loaded[key] for key in loaded.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise _Problem("holds Python objects, which fastgd does not unpickle") from None
        raise
    if not entries:
        raise _Problem("holds no arrays")
    columns = {}  # 1-D arrays are columns, 2-D arrays groups of columns
    for key, array in entries.items():
        if array.ndim not in (1, 2):
            raise _Problem(f"holds an array of {array.ndim} dimensions ({key or 'its one'}); "
                           f"columns (1-D) or tables (2-D) only")
        if array.ndim == 1:
            columns[key or "0"] = array
        else:
            for j in range(array.shape[1]):
                columns[f"{key}.{j}" if key else str(j)] = array[:, j]
    lengths = sorted({len(a) for a in columns.values()})
    if len(lengths) > 1:
        raise _Problem(f"holds arrays of different lengths {lengths}")
    return pd.DataFrame(columns, copy=False)


def _check_present(table, columns, name=None):
    missing = [c for c in columns if c not in table.columns]
    if missing:
        shown = ", ".join(repr(c) for c in list(table.columns)[:20])
        more = ", ..." if table.shape[1] > 20 else ""
        raise ValueError(f"{name or table.attrs['name']} has no column {missing[0]!r} (its "
                         f"columns: {shown}{more})")


def _check_complete(table, columns, missing):
    """A clear error for missing values: which column, how many, the first row."""
    if missing.any():
        rows, cols = np.nonzero(missing)
        j = cols[np.argmin(rows)]
        count = int(missing[:, j].sum())
        raise ValueError(f"column {columns[j]!r} of {table.attrs['name']} has {count} missing "
                         f"value{'s' if count > 1 else ''} (the first in data row "
                         f"{rows.min() + 1}); fill or drop them first")


def _is_numeric(series) -> bool:
    return getattr(series.dtype, "kind", "O") in "biuf"


def _kind(path):
    lower = os.fspath(path).lower()
    stem = lower.rsplit(".", 1)[0] if _compression(lower) else lower
    for suffix, kind in ((".csv", "csv"), (".tsv", "csv"), (".parquet", "parquet"),
                         (".pq", "parquet"), (".npy", "npy"), (".npz", "npz")):
        if stem.endswith(suffix) and (kind == "csv" or stem == lower):
            return kind
    return None


def _separator(path) -> str:
    return "\t" if _kind(path) == "csv" and ".tsv" in os.fspath(path).lower() else ","


def _compression(path):
    """pandas' name for the compression `path`'s suffix asks for, or None."""
    return COMPRESSIONS.get(os.fspath(path).lower().rsplit(".", 1)[-1])


def _first_line(error) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ValueError("reading and writing data files needs pandas: pip install "
                         "'fastgd[cli]'") from None
    return pandas


class _Problem(ValueError):
    """What is wrong with a file, to follow its name in the message."""


_NON_NUMERIC_HINT = {
    "feature": "choose numeric columns with --features, or encode this one as numbers first",
    "target": "for class labels use --task classification",
}
