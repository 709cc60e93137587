"""The compiled engine, picked at import among the builds this CPU can run.

fastgd/_kernels.pxi is compiled twice: `_kernels` for any CPU of the platform (x86-64
baseline: SSE2) and, on x86-64 with gcc or clang, `_kernels_avx2` with AVX2 and FMA enabled,
which streams float32 and in-cache data faster. No -march=native: the wheel runs anywhere.
FASTGD_SIMD=baseline forces the portable build.
"""

import os

from fastgd import _kernels as baseline

kernels = baseline
SIMD = "baseline"
if os.environ.get("FASTGD_SIMD", "").lower() != "baseline" and baseline.cpu_supports_avx2_fma():
    try:
        from fastgd import _kernels_avx2 as kernels  # noqa: F401 (re-exported)

        SIMD = "avx2+fma"
    except ImportError:  # built without the AVX2 variant (another compiler or platform)
        pass
