"""Tables larger than memory on the command line: read by chunks and written, encoded, into
memory-mapped arrays on disk, which train as any memory map (block-shuffled epochs that
stream, fastgd/_shuffling.py).

One read of the file (pyarrow's CSV and Parquet batch readers, a .npy's own memory map, or
scikit-learn's svmlight parser a block of lines at a time) turns its feature columns into
rows of numbers, checked chunk by chunk as a table in memory is (`_tables.numeric`), and
splits them at random (seeded: the same split every run) into a training file and a test
file. The targets are read whole first (one column of n values), for the task and its
labels, and so is an --offset column (split by the same mask as the rows). This is vowpal
wabbit's cache file: every epoch then reads plain rows at the disk's speed instead of
parsing the file again.

Text and categorical columns are encoded as in memory (fastgd/_encoding.py), one
indicator column a level: a first read of those columns finds their levels in the whole
file, then the rows are written as CSR (its three arrays, each a file), as are the rows
of an svmlight file.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from fastgd import _shuffling, _tables

CHUNK_ROWS = 1 << 18   # rows parsed and written at a time: tens of MB
CSV_BLOCK_BYTES = 1 << 20  # CSV parsed at a time; its types inferred from the first block,
                           # as pandas' pyarrow engine does reading the whole file
INT32_MAX = np.iinfo(np.int32).max
SVMLIGHT_BYTES = 64 << 20  # svmlight text parsed at a time
# What a CSV file's missing values look like: pandas' default na_values, as in memory
NA_VALUES = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
             "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
MEMORY_SHARE = 4       # a file over 1/4 of the memory available streams: parsing a table
                       # in memory takes a few times its bytes


def streams(path) -> bool:
    """Whether a table file is too large to read into memory."""
    return os.path.getsize(path) * MEMORY_SHARE > _shuffling.available_memory()


@dataclass
class Spilled:
    """The training and test rows of a table, memory-mapped from files in `directory`
    (dense rows, or CSR's three arrays for encoded tables and svmlight files)."""

    X_train: object
    X_test: object
    mask_test: np.ndarray  # which of the file's rows are test rows
    directory: str
    targets: np.ndarray | None = None  # an svmlight file's (a table's are read apart)

    def remove(self) -> None:
        del self.X_train, self.X_test
        shutil.rmtree(self.directory, ignore_errors=True)


def spill(path, features, fraction: float, seed: int, missing: str, directory=None,
          log=sys.stderr, encoding=None) -> Spilled:
    """The feature columns of the table at `path` (or an svmlight file's rows) on disk, in
    `directory` (by default the data file's own, else the temporary one), `fraction` of
    them (drawn with `seed`) in the test file: float rows, or for an `encoding` of text
    columns (fastgd/_encoding.py) and svmlight files, CSR rows."""
    kind = _tables._kind(path)
    if _tables.is_sparse_file(path):
        source, n_columns = svmlight_chunks(path), None
    else:
        source = (_encoded(chunk, features, missing, encoding)
                  for chunk in chunks(path, features, list(encoding.levels) if encoding else ()))
        n_columns = len(features) if encoding is None else encoding.n_columns
    directory = tempfile.mkdtemp(prefix="fastgd-spill-", dir=_writable(directory, path))
    parts = {part: _Part(os.path.join(directory, part)) for part in ("train", "test")}
    rng = np.random.default_rng(seed)
    masks, targets, rows = [], [], 0
    start, read_at_start = time.perf_counter(), bytes_read()
    try:
        for values, y in source:
            test = rng.random(values.shape[0]) < fraction
            for part, rows_of_part in (("train", ~test), ("test", test)):
                parts[part].append(values[rows_of_part])
            masks.append(test)
            targets.append(y)
            rows += values.shape[0]
            read = (parts["train"].bytes + parts["test"].bytes if kind == "npy"  # mapped
                    else None if read_at_start is None else bytes_read() - read_at_start)
            report(log, rows, read, time.perf_counter() - start)
    except BaseException:
        for part in parts.values():
            part.close()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    if log is not None:
        print(file=log)  # the end of the progress line
    n_columns = n_columns or max(part.columns for part in parts.values())
    return Spilled(parts["train"].mapped(n_columns), parts["test"].mapped(n_columns),
                   np.concatenate(masks), directory,
                   np.concatenate(targets) if any(y is not None for y in targets) else None)


def _encoded(chunk, features, missing, encoding):
    """A chunk of a table as rows of numbers (dense, or CSR for an encoding), checked."""
    return (_tables.numeric(chunk, features, "feature", missing == "zero") if encoding is None
            else encoding.encode(chunk, missing)), None


class _Part:
    """The rows of one part of the file (training or test), appended chunk by chunk to
    files: `stem`.rows (dense), or `stem`.data, .indices and .indptr (CSR)."""

    def __init__(self, stem: str):
        self.stem, self.files, self.rows, self.columns, self.dtype = stem, {}, 0, 0, None
        self.nnz, self.bytes = 0, 0

    def append(self, values) -> None:
        if not self.files:
            self.dtype = values.dtype
            names = ("data", "indices", "indptr") if _is_csr(values) else ("rows",)
            self.files = {name: open(f"{self.stem}.{name}", "wb") for name in names}
            if "indptr" in self.files:
                self._write("indptr", np.zeros(1, np.int64))
        if _is_csr(values):
            if values.shape[1] > INT32_MAX:
                raise ValueError(f"a row has a column index over {INT32_MAX:,}")
            self._write("data", values.data.astype(self.dtype, copy=False))
            self._write("indices", values.indices.astype(np.int32, copy=False))
            self._write("indptr", values.indptr[1:].astype(np.int64) + self.nnz)
            self.nnz += values.nnz
        else:
            self._write("rows", np.ascontiguousarray(values, self.dtype))
        self.rows += values.shape[0]
        self.columns = max(self.columns, values.shape[1])

    def _write(self, name, array) -> None:
        self.files[name].write(array.data)
        self.bytes += array.nbytes

    def close(self) -> None:
        for file in self.files.values():
            file.close()

    def mapped(self, n_columns: int):
        """The rows written, memory-mapped from their files."""
        self.close()
        if "rows" in self.files:
            return _map(f"{self.stem}.rows", self.dtype, (self.rows, n_columns))
        import scipy.sparse

        X = scipy.sparse.csr_matrix((self.rows, n_columns), dtype=self.dtype or np.float64)
        if self.files:
            # The index dtype scipy gives the same matrix in memory (int32 while nnz fits):
            # the same model to the last bit, as the kernels' rounding may differ by dtype.
            index = np.int32 if self.nnz <= INT32_MAX else np.int64
            _convert(f"{self.stem}.indptr", np.int64, index)
            _convert(f"{self.stem}.indices", np.int32, index)
            # Set, not passed to csr_matrix, which would copy the files into memory.
            X.data = _map(f"{self.stem}.data", self.dtype, (self.nnz,))
            X.indices = _map(f"{self.stem}.indices", index, (self.nnz,))
            X.indptr = _map(f"{self.stem}.indptr", index, (self.rows + 1,))
        return X


def _convert(path, dtype, to, step=1 << 22) -> None:
    """Rewrite a file of `dtype` values as `to` values, `step` of them at a time."""
    if dtype == to or os.path.getsize(path) == 0:
        return
    values = np.memmap(path, dtype=dtype, mode="r")
    with open(path + ".new", "wb") as out:
        for lo in range(0, len(values), step):
            out.write(values[lo:lo + step].astype(to).data)
    del values
    os.replace(path + ".new", path)


def _map(path, dtype, shape):
    """A file's values, memory-mapped (an empty file: an empty array, which mmap refuses)."""
    if np.prod(shape) == 0:
        return np.empty(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


def _is_csr(values) -> bool:
    return getattr(values, "format", None) == "csr"


def target_table(path, targets):
    """The target columns (and --offset's) of the table at `path`, read whole (n values
    each)."""
    if _tables._kind(path) != "npy":
        return _tables.read_table(path, "data", targets)
    X = np.load(path, mmap_mode="r")
    table = _tables.pandas().DataFrame({name: np.asarray(X[:, int(name)]) for name in targets})
    table.attrs["name"] = f"data file {os.fspath(path)!r}"
    return table


def column_names(path) -> list:
    """The names of the table's columns, from its header or schema (a .npy's: "0", ...)."""
    kind = _tables._kind(path)
    if kind == "npy":
        X = np.load(path, mmap_mode="r")
        if X.ndim != 2 or X.dtype.names is not None:
            raise ValueError(f"data file {os.fspath(path)!r} streams as a 2-D array of "
                             f"numbers only")
        return [str(j) for j in range(X.shape[1])]
    if kind not in ("csv", "parquet"):
        raise ValueError(f"data file {os.fspath(path)!r} is too large to read into memory, "
                         f"and streams only from CSV, Parquet or .npy")
    return _tables._column_names(path, kind, _tables.pandas())


def chunks(path, columns, text=(), numbers=None):
    """The table's `columns`, CHUNK_ROWS rows at a time (CSV: a block of the file), as
    DataFrames that know their first row in the file (attrs["first_row"], for errors to
    name it). CSV's `text` columns hold the text they hold, its `numbers` columns (by
    default all others) are read as float64, any other's type is inferred."""
    name, first_row = f"data file {os.fspath(path)!r}", 0
    for chunk in _frames(path, columns, text, numbers):
        chunk.attrs.update(name=name, first_row=first_row)
        first_row += len(chunk)
        yield chunk


def _frames(path, columns, text, numbers):
    kind = _tables._kind(path)
    if kind == "parquet":
        for batch in _parquet(path).iter_batches(CHUNK_ROWS, columns=columns):
            yield batch.to_pandas()
    elif kind == "csv":
        yield from _csv_frames(path, columns, text, numbers)
    else:  # .npy (column_names checked it)
        X = np.load(path, mmap_mode="r")
        pd = _tables.pandas()
        indices = [int(name) for name in columns]
        for lo in range(0, len(X), CHUNK_ROWS):
            yield pd.DataFrame(X[lo:lo + CHUNK_ROWS, indices], columns=columns)


def _parquet(path):
    import pyarrow.parquet

    # Without pre_buffer: with it (pyarrow's default), every row group read stays
    # allocated until the file is closed (measured: 1.8 GB after 4M rows of 100
    # floats, and the 34 GB file of benchmarks/train_parquet.py killed for memory).
    return pyarrow.parquet.ParquetFile(path, pre_buffer=False)


def _csv_frames(path, columns, text, numbers):
    import pyarrow as pa
    import pyarrow.csv as csv

    types = {name: pa.string() for name in text}
    types.update((name, pa.float64()) for name in (
        [c for c in columns if c not in text] if numbers is None else numbers))
    # Missing values as pandas reads them in memory: its na_values, "" included.
    options = csv.ConvertOptions(include_columns=columns, column_types=types,
                                 null_values=NA_VALUES, strings_can_be_null=True)
    try:
        with csv.open_csv(path, read_options=_csv_blocks(), parse_options=csv.ParseOptions(
                delimiter=_tables._separator(path)), convert_options=options) as reader:
            for batch in reader:
                yield batch.to_pandas()
    except pa.ArrowInvalid as error:  # a value that is not a number, a ragged line
        raise ValueError(f"data file {os.fspath(path)!r} cannot be streamed: "
                         f"{_tables._first_line(error)}; a column streams as text when its "
                         f"first rows are text, as numbers when they are numbers") from None


def _csv_blocks():
    import pyarrow.csv as csv

    return csv.ReadOptions(block_size=CSV_BLOCK_BYTES)


def text_columns(path, features) -> list:
    """The feature columns to one-hot encode (fastgd/_encoding.py), by the file's types:
    Parquet's schema, or what pyarrow infers from a CSV file's first block (as it does
    reading the file whole): all but numbers (and, in CSV, columns with no value)."""
    import pyarrow as pa

    kind = _tables._kind(path)
    if kind == "parquet":
        schema = _parquet(path).schema_arrow
    elif kind == "csv":
        import pyarrow.csv as csv

        with csv.open_csv(path, read_options=_csv_blocks(), parse_options=csv.ParseOptions(
                delimiter=_tables._separator(path)), convert_options=csv.ConvertOptions(
                    include_columns=features, null_values=NA_VALUES,
                    strings_can_be_null=True)) as reader:
            schema = reader.schema
    else:
        return []
    numbers = (pa.types.is_integer, pa.types.is_floating) + (
        (pa.types.is_null,) if kind == "csv" else ())
    return [name for name in features
            if not any(is_type(schema.field(name).type) for is_type in numbers)]


def levels(path, features, text, log=sys.stderr) -> dict:
    """The `text` columns' distinct values (strings) in the whole table: one read of the
    file, of those columns only where the format allows (Parquet)."""
    from fastgd._encoding import levels_in

    found = {column: set() for column in text}
    rows, start = 0, time.perf_counter()
    for chunk in chunks(path, list(text), text):
        for column, values in levels_in(chunk, text).items():
            found[column] |= values
        rows += len(chunk)
        report(log, rows, None, time.perf_counter() - start, "read the levels of")
    if log is not None:
        print(file=log)
    return found


def svmlight_chunks(path, n_features=None):
    """(X, y) of an svmlight file, SVMLIGHT_BYTES of whole lines at a time, each parsed by
    scikit-learn's parser as the file is in memory (indices from 0); X of `n_features`
    columns if given (a model's), else of its own largest index + 1."""
    import bz2
    import gzip

    from sklearn.datasets import load_svmlight_file

    name = f"data file {os.fspath(path)!r}"
    opener = {"gz": gzip.open, "bz2": bz2.open}.get(os.fspath(path).rsplit(".", 1)[-1], open)
    with opener(path, "rb") as file:
        rest = b""
        while True:
            block = file.read(SVMLIGHT_BYTES)
            lines = rest + block
            end = lines.rfind(b"\n") + 1 if block else len(lines)
            lines, rest = lines[:end], lines[end:]
            if lines.strip():
                try:
                    X, y = load_svmlight_file(io.BytesIO(lines), dtype=np.float64,
                                              zero_based=True, n_features=n_features)
                except ValueError as error:
                    raise ValueError(f"{name} cannot be read as sparse data: "
                                     f"{_tables._first_line(error)}") from None
                if X.shape[0]:
                    yield X, y
            if not block:
                return


def bytes_read() -> int | None:
    """The bytes this process has read so far (Linux's /proc/self/io rchar), or None."""
    try:
        with open("/proc/self/io") as lines:
            return next(int(line.split()[1]) for line in lines if line.startswith("rchar:"))
    except (OSError, StopIteration, ValueError):
        return None


def report(log, rows: int, read, seconds: float, what="streamed") -> None:
    if log is None:
        return
    volume = "" if read is None else f", {read / 1e9:.2f} GB read"
    print(f"\r{what} {rows:,} rows{volume} ({rows / max(seconds, 1e-9) / 1e6:.3g} M rows/s)",
          end="", file=log, flush=True)


def _writable(directory, path) -> str:
    """`directory`, or the data file's, or else the temporary directory."""
    if directory is not None:
        return directory
    beside = os.path.dirname(os.path.abspath(path))
    return beside if os.access(beside, os.W_OK) else tempfile.gettempdir()
