"""Tables larger than memory on the command line: read by chunks and written, encoded, into
memory-mapped arrays on disk, which train as any memory map (block-shuffled epochs that
stream, fastgd/_shuffling.py).

One read of the file (pyarrow's CSV and Parquet batch readers, or a .npy's own memory map)
turns its feature columns into float rows, checked chunk by chunk as a table in memory is
(`_tables.numeric`), and splits them at random (seeded: the same split every run) into a
training file and a test file. The targets are read whole first (one column of n values),
for the task and its labels. This is vowpal wabbit's cache file: every epoch then reads
plain rows at the disk's speed instead of parsing the file again.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from fastgd import _shuffling, _tables

CHUNK_ROWS = 1 << 18   # rows parsed and written at a time: tens of MB
MEMORY_SHARE = 4       # a file over 1/4 of the memory available streams: parsing a table
                       # in memory takes a few times its bytes


def streams(path) -> bool:
    """Whether a table file is too large to read into memory."""
    return os.path.getsize(path) * MEMORY_SHARE > _shuffling.available_memory()


@dataclass
class Spilled:
    """The training and test rows of a table, memory-mapped from files in `directory`."""

    X_train: np.ndarray
    X_test: np.ndarray
    mask_test: np.ndarray  # which of the file's rows are test rows
    directory: str

    def remove(self) -> None:
        del self.X_train, self.X_test
        shutil.rmtree(self.directory, ignore_errors=True)


def spill(path, features, fraction: float, seed: int, missing: str, directory=None,
          log=sys.stderr) -> Spilled:
    """The feature columns of the table at `path` as float rows on disk (in `directory`,
    by default the data file's own, else the temporary one), `fraction` of them (drawn
    with `seed`) in the test file."""
    directory = tempfile.mkdtemp(prefix="fastgd-spill-", dir=_writable(directory, path))
    rng = np.random.default_rng(seed)
    files = {part: open(os.path.join(directory, f"{part}.bin"), "wb")
             for part in ("train", "test")}
    counts, masks, dtype = {"train": 0, "test": 0}, [], None
    start, read_at_start, rows = time.perf_counter(), bytes_read(), 0
    mapped_source = _tables._kind(path) == "npy"  # read through a memory map, not read()
    try:
        for chunk in chunks(path, features):
            chunk.attrs.update(name=f"data file {os.fspath(path)!r}", first_row=rows)
            values = _tables.numeric(chunk, features, "feature", missing == "zero")
            dtype = dtype or values.dtype
            test = rng.random(len(values)) < fraction
            for part, rows_of_part in (("train", ~test), ("test", test)):
                files[part].write(np.ascontiguousarray(values[rows_of_part], dtype).data)
                counts[part] += int(rows_of_part.sum())
            masks.append(test)
            rows += len(values)
            read = (rows * values.shape[1] * values.itemsize if mapped_source
                    else None if read_at_start is None else bytes_read() - read_at_start)
            report(log, rows, read, time.perf_counter() - start)
    except BaseException:
        for file in files.values():
            file.close()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    for file in files.values():
        file.close()
    if log is not None:
        print(file=log)  # the end of the progress line
    mapped = {part: np.memmap(os.path.join(directory, f"{part}.bin"), dtype=dtype, mode="r",
                              shape=(counts[part], len(features))) if counts[part]
              else np.empty((0, len(features)), dtype) for part in counts}
    return Spilled(mapped["train"], mapped["test"], np.concatenate(masks), directory)


def target_table(path, targets):
    """The target columns of the table at `path`, read whole (n values each)."""
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


def chunks(path, features):
    """The table's feature columns, CHUNK_ROWS rows at a time, as DataFrames."""
    kind = _tables._kind(path)
    if kind == "parquet":
        import pyarrow.parquet

        # Without pre_buffer: with it (pyarrow's default), every row group read stays
        # allocated until the file is closed (measured: 1.8 GB after 4M rows of 100
        # floats, and the 34 GB file of benchmarks/train_parquet.py killed for memory).
        parquet = pyarrow.parquet.ParquetFile(path, pre_buffer=False)
        for batch in parquet.iter_batches(CHUNK_ROWS, columns=features):
            yield batch.to_pandas()
    elif kind == "csv":
        yield from _csv_chunks(path, features)
    else:  # .npy (column_names checked it)
        X = np.load(path, mmap_mode="r")
        pd = _tables.pandas()
        columns = [int(name) for name in features]
        for lo in range(0, len(X), CHUNK_ROWS):
            yield pd.DataFrame(X[lo:lo + CHUNK_ROWS, columns], columns=features)


def _csv_chunks(path, features):
    import pyarrow as pa
    import pyarrow.csv as csv

    options = csv.ConvertOptions(include_columns=features,
                                 column_types={name: pa.float64() for name in features})
    try:
        with csv.open_csv(path, parse_options=csv.ParseOptions(
                delimiter=_tables._separator(path)), convert_options=options) as reader:
            for batch in reader:
                yield batch.to_pandas()
    except pa.ArrowInvalid as error:  # a value that is not a number, a ragged line
        raise ValueError(f"data file {os.fspath(path)!r} cannot be streamed as numbers: "
                         f"{_tables._first_line(error)}; text columns are one-hot encoded "
                         f"only for a table read into memory") from None


def bytes_read() -> int | None:
    """The bytes this process has read so far (Linux's /proc/self/io rchar), or None."""
    try:
        with open("/proc/self/io") as lines:
            return next(int(line.split()[1]) for line in lines if line.startswith("rchar:"))
    except (OSError, StopIteration, ValueError):
        return None


def report(log, rows: int, read, seconds: float) -> None:
    if log is None:
        return
    volume = "" if read is None else f", {read / 1e9:.2f} GB read"
    print(f"\rstreamed {rows:,} rows{volume} ({rows / max(seconds, 1e-9) / 1e6:.3g} M rows/s)",
          end="", file=log, flush=True)


def _writable(directory, path) -> str:
    """`directory`, or the data file's, or else the temporary directory."""
    if directory is not None:
        return directory
    beside = os.path.dirname(os.path.abspath(path))
    return beside if os.access(beside, os.W_OK) else tempfile.gettempdir()
