"""fastgd.show_config(): how this fastgd was built and how it will run here.

The first thing to read when a number looks wrong: whether OpenMP is on (and which runtime
threadpoolctl must limit), which SIMD build the CPU got, how many threads a fit will use,
and which BLAS the NumPy baselines run on.
"""

import os
import platform
from importlib import metadata

import numpy as np

from fastgd import _compiled
from fastgd._threads import effective_n_threads, physical_cores
from fastgd._version import __version__

OPTIONAL = ("scikit-learn", "scipy", "threadpoolctl", "tqdm", "matplotlib", "pandas", "torch",
            "dask", "distributed")


def blas() -> dict | None:
    """NumPy's BLAS as threadpoolctl sees it loaded (library, version, kernel, threads)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return next(({key: info.get(key) for key in ("internal_api", "version", "architecture",
                                                  "num_threads", "filepath")}
                 for info in threadpool_info() if info["user_api"] == "blas"), None)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def config() -> dict:
    kernels = _compiled.kernels
    library = kernels.openmp_library()
    return {
        "fastgd": {"version": __version__, "path": os.path.dirname(__file__)},
        "build": {"openmp": kernels.openmp_enabled(),
                  "openmp_library": os.path.normpath(library) if library else None,
                  "simd": _compiled.SIMD,
                  "cpu_avx2_fma": _compiled.baseline.cpu_supports_avx2_fma(),
                  "bounds_checking": kernels.bounds_checked()},
        "threads": {"default": effective_n_threads(None),
                    "openmp_max": kernels.openmp_max_threads(),
                    "physical_cores": physical_cores(), "cpus": os.cpu_count(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "platform": platform.platform()},
        "numpy": {"version": np.__version__, "blas": blas()},
        "optional": {name: _version(name) for name in OPTIONAL},
    }


def describe_blas(info: dict | None) -> str:
    if info is None:
        return "unknown (pip install threadpoolctl to see it)"
    return (f"{info['internal_api']} {info['version']} ({info['architecture']} kernel, "
            f"{info['num_threads']} threads)")


def show_config(mode: str = "stdout"):
    """Print the build and threading configuration, or return it with mode="dicts".

    Like numpy.show_config: OpenMP on/off and its runtime, the SIMD build in use, bounds
    checking (the FASTGD_DEBUG build), the threads a fit uses by default, NumPy's BLAS,
    and the versions of Python and of fastgd's optional dependencies.
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    c = config()
    if mode == "dicts":
        return c
    build, threads = c["build"], c["threads"]
    openmp = (f"on ({build['openmp_library'] or 'runtime file unknown'})" if build["openmp"]
              else "off: a serial build (FASTGD_NO_OPENMP=1 or no OpenMP in the compiler)")
    installed = ", ".join(f"{name} {version}" for name, version in c["optional"].items()
                          if version) or "none"
    missing = ", ".join(name for name, version in c["optional"].items() if not version)
    lines = [
        f"fastgd {c['fastgd']['version']} ({c['fastgd']['path']})",
        f"  OpenMP          {openmp}",
        f"  SIMD build      {build['simd']} (this CPU runs AVX2+FMA: "
        f"{'yes' if build['cpu_avx2_fma'] else 'no'})",
        f"  bounds checks   {'on (debug build)' if build['bounds_checking'] else 'off'}",
        f"  threads         {threads['default']} by default (OpenMP maximum "
        f"{threads['openmp_max']}, {threads['physical_cores']} physical cores, "
        f"{threads['cpus']} CPUs, OMP_NUM_THREADS={threads['OMP_NUM_THREADS'] or 'unset'})",
        f"  Python          {c['python']['version']} ({c['python']['implementation']}) on "
        f"{c['python']['platform']}",
        f"  NumPy           {c['numpy']['version']}, BLAS {describe_blas(c['numpy']['blas'])}",
        f"  optional        {installed}" + (f"; not installed: {missing}" if missing else ""),
    ]
    print("\n".join(lines))
