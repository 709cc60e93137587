"""The one place that picks an engine for an X: in this process (fastgd/_memory.py: NumPy
arrays, sparse CSR, over the compiled kernels or fastgd.reference) or on a Dask cluster
(fastgd/_dask.py)."""

from __future__ import annotations

from fastgd import _compiled, _dask, reference
from fastgd._memory import InMemory, Sparse, in_memory
from fastgd._threads import effective_n_threads

__all__ = ["ENGINES", "InMemory", "Sparse", "engine_for"]

ENGINES = {"cython": None, "numpy": reference}  # None: the compiled build this CPU runs


def engine_for(X, engine: str = "cython", n_threads=None):
    """The engine for X: for a Dask engine's shards the Dask engine (n_threads resolved on
    each worker, for its cores), else `engine`'s in-memory one (dense or sparse X) on the
    threads n_threads resolves to (fastgd._threads)."""
    if isinstance(X, _dask.Shards):
        return _dask.DaskEngine(n_threads)
    return in_memory(X, ENGINES[engine] or _compiled.kernels, effective_n_threads(n_threads))
