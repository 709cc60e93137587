"""Data files for the command line: read as named columns, checked, written back atomically.

CSV (.csv, .tsv, also compressed: .csv.gz, .csv.zst, ...) and Parquet are read by pandas,
with pyarrow's multithreaded reader when pyarrow is installed; .npy and .npz by NumPy,
never unpickling. Sparse data: svmlight / libsvm files (.svm, .svmlight, .libsvm, also
.gz or .bz2, as scikit-learn's dump_svmlight_file writes them: indices from 0) and .npz
files of scipy.sparse.save_npz are read as a scipy.sparse matrix (read_sparse), never
densified. Every problem with a file is a ValueError whose message names the file and
says what is wrong, for the command line to print as one line.
"""

from __future__ import annotations

import os
import sys
import zipfile

import numpy as np

from fastgd._files import atomic_write
from fastgd._sparse import as_csr

COMPRESSIONS = {"gz": "gzip", "bz2": "bz2", "xz": "xz", "zst": "zstd", "zip": "zip"}
READS = (".csv, .tsv (also compressed: .csv.gz, ...), .parquet, .npy, .npz; sparse: .svm, "
         ".svmlight, .libsvm (also .gz, .bz2), .npz of scipy.sparse.save_npz")
SVMLIGHT = (".svm", ".svmlight", ".libsvm")
SPARSE_NPZ_KEYS = {"format", "shape", "data"}  # what scipy.sparse.save_npz always writes
WRITES = ".csv, .tsv (also compressed), .parquet, .npy"


def read_table(path, role: str = "data", columns=None, text=()):
    """The file at `path` as a pandas DataFrame; for CSV and Parquet only `columns`, if
    given, are parsed; CSV's `text` columns as the text they hold (one-hot encoded
    columns, fastgd/_encoding.py: "007" stays "007", "1" is not 1.0).

    .npy: a 2-D array's columns are named "0", "1", ...; a structured array's fields keep
    their names. .npz: a 1-D entry is one column named by its key, a 2-D entry "X" of m
    columns becomes columns "X.0" ... "X.<m-1>".
    """
    pd = pandas()
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
        if kind == "parquet" and not _has_pyarrow():
            raise _Problem("is Parquet, which needs pyarrow: pip install pyarrow")
        if columns is not None and kind in ("csv", "parquet"):  # a clear message up front
            check_present(_column_names(path, kind, pd), columns, name)
        if kind == "csv":
            table = pd.read_csv(path, sep=_separator(path), usecols=columns,
                                dtype={column: str for column in text} or None,
                                engine="pyarrow" if _has_pyarrow() else "c")
        elif kind == "parquet":
            table = pd.read_parquet(path, columns=columns)
        else:
            table = _read_numpy(path, pd)
        if table.shape[0] == 0:
            raise _Problem("has no rows")
    except _Problem as problem:
        raise ValueError(f"{name} {problem}") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{name} is empty") from None
    except ColumnError:
        raise
    except (ValueError, pd.errors.ParserError, OSError, EOFError, KeyError,
            zipfile.BadZipFile) as error:
        raise ValueError(f"{name} cannot be read as {kind}: {_first_line(error)}") from None
    table.attrs["name"] = name
    return table


def is_sparse_file(path) -> bool:
    """Whether `path` holds a sparse matrix: an svmlight file, or a .npz of save_npz."""
    lower = os.fspath(path).lower()
    stem = lower.rsplit(".", 1)[0] if lower.endswith((".gz", ".bz2")) else lower
    if stem.endswith(SVMLIGHT):
        return True
    if _kind(path) != "npz" or not os.path.isfile(path):
        return False
    try:
        with np.load(path, allow_pickle=False) as loaded:
            return SPARSE_NPZ_KEYS <= set(loaded.files)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return False  # read_table says what is wrong with it


def read_sparse(path, role: str = "data", n_features: int | None = None):
    """(X, y) of a sparse data file: X a scipy.sparse CSR matrix (of n_features columns if
    given: a model's), y the svmlight file's targets (None for a .npz, which holds X only)."""
    name = f"{role} file {os.fspath(path)!r}"
    if not os.path.isfile(path):
        raise ValueError(f"{name} does not exist")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{name} is empty")
    try:
        if _kind(path) == "npz":
            import scipy.sparse

            X, y = scipy.sparse.load_npz(path), None
            if len(X.shape) != 2:
                raise ValueError(f"it holds a matrix of {len(X.shape)} dimensions, not 2")
            if n_features is not None and X.shape[1] != n_features:
                raise ValueError(f"it has {X.shape[1]} columns; the model takes {n_features}")
        else:
            from sklearn.datasets import load_svmlight_file

            X, y = load_svmlight_file(os.fspath(path), n_features=n_features,
                                      dtype=np.float64, zero_based=True)
        X = as_csr(X)  # checked before anything (a split, a conversion) reads its indices
    except (ValueError, TypeError, AttributeError, IndexError, NotImplementedError, OSError,
            EOFError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"{name} cannot be read as sparse data: {_first_line(error)}") from None
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    return X, y


def numeric(table, columns, what: str, allow_missing=False) -> np.ndarray:
    """The named columns as one array of shape (n_rows, len(columns)), float32 if they all
    are, else float64; a ValueError for a column that is not numbers, or misses values
    (with allow_missing: 0), or holds infinities."""
    check_present(table, columns)
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
    if allow_missing:
        check_complete(table, columns, np.isinf(values), "infinite")
        return np.nan_to_num(values, nan=0.0)
    check_complete(table, columns, ~np.isfinite(values), "missing or infinite",
                   MISSING_HINT if what == "feature" else "fill or drop them first")
    return values


def labels(table, column) -> np.ndarray:
    """One column of class labels (numbers, strings or booleans), without missing values."""
    check_present(table, [column])
    series = table[column]
    check_complete(table, [column], series.isna().to_numpy()[:, None], "missing")
    values = series.to_numpy()
    return values.astype(object) if values.dtype.kind in "OUT" else values


def numeric_values(table, column, allow_missing=False) -> np.ndarray:
    """One numeric column as float64; missing values (NaN) an error, or 0 with
    allow_missing; infinities an error."""
    values = table[column].to_numpy(dtype=np.float64)
    bad = np.isinf(values) if allow_missing else ~np.isfinite(values)
    check_complete(table, [column], bad[:, None], "infinite" if allow_missing
                   else "missing or infinite", MISSING_HINT)
    return np.nan_to_num(values, nan=0.0) if allow_missing else values


def is_numeric(table, column) -> bool:
    check_present(table, [column])
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
        else:  # a structured array: the column names survive; text as fixed-width unicode
            np.save(f, np.rec.fromarrays(
                [np.asarray(table[c], dtype=str if table[c].dtype.kind in "OT" else None)
                 for c in table.columns], names=[str(c) for c in table.columns]),
                allow_pickle=False)


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
            if not all(isinstance(a, np.ndarray) for a in entries.values()):
                raise _Problem("holds entries that are not NumPy arrays")
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


def _column_names(path, kind, pd) -> list:
    if kind == "csv":
        return list(pd.read_csv(path, sep=_separator(path), nrows=0).columns)
    import pyarrow.parquet

    return pyarrow.parquet.read_schema(path).names


def check_present(table_or_names, columns, name=None):
    """A ColumnError naming the file (`name`, or the table's) and its columns if any of
    `columns` is not among them."""
    names = list(getattr(table_or_names, "columns", table_or_names))
    missing = [c for c in columns if c not in names]
    if missing:
        shown = ", ".join(repr(c) for c in names[:20]) + (", ..." if len(names) > 20 else "")
        raise ColumnError(f"{name or table_or_names.attrs['name']} has no column "
                          f"{missing[0]!r} (its columns: {shown})")


MISSING_HINT = "fill or drop them first, or give --missing zero"


def check_complete(table, columns, bad, what, hint="fill or drop them first"):
    """A clear error for bad values: which column, how many, the first data row."""
    if bad.any():
        rows, cols = np.nonzero(bad)
        j = cols[np.argmin(rows)]
        count = int(bad[:, j].sum())
        first = rows.min() + 1 + table.attrs.get("first_row", 0)  # a chunk's: in the file
        how_many = ("" if "first_row" in table.attrs  # a chunk of a file: its own count only
                    else f"{count} ")
        raise ValueError(f"column {columns[j]!r} of {table.attrs['name']} has {how_many}{what} "
                         f"value{'s' if count > 1 or not how_many else ''} (the first in data "
                         f"row {first}); {hint}")


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
    name = os.path.basename(os.fspath(path)).lower()
    if _compression(name):
        name = name.rsplit(".", 1)[0]
    return "\t" if name.endswith(".tsv") else ","


def _compression(path):
    """pandas' name for the compression `path`'s suffix asks for, or None."""
    return COMPRESSIONS.get(os.fspath(path).lower().rsplit(".", 1)[-1])


def _first_line(error, limit: int = 200) -> str:
    """The start of an error's message, printable (a binary file's bytes are not)."""
    text = (str(error).strip() or type(error).__name__).splitlines()[0]
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[:limit] + " ..."


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def pandas():
    try:
        import pandas
    except ImportError:
        raise ValueError("reading and writing data files needs pandas: pip install "
                         "'fastgd[cli]'") from None
    return pandas


class _Problem(ValueError):
    """What is wrong with a file, to follow its name in the message."""


class ColumnError(ValueError):
    """A column asked for is not in the file (the message names both)."""


_NON_NUMERIC_HINT = {
    "feature": "choose numeric columns with --features, or encode this one as numbers first",
    "target": "for class labels use --task classification",
    "offset": "an offset is a number added to each row's raw output (e.g. log exposure)",
}
