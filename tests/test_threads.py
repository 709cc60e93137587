"""n_threads resolves as scikit-learn's does; OpenMP limits are honoured."""

import os
import subprocess
import sys

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from fastgd import _kernels
from fastgd._validation import effective_n_threads

needs_openmp = pytest.mark.skipif(not _kernels.openmp_enabled(), reason="serial build")


def test_resolution_rules():
    default = effective_n_threads(None)
    assert 1 <= default <= (os.cpu_count() or 1)
    assert effective_n_threads(-1) == default
    assert effective_n_threads(-default - 5) == 1
    assert effective_n_threads(3) == (3 if _kernels.openmp_enabled() else 1)
    with pytest.raises(ValueError, match="got 0"):
        effective_n_threads(0)
    for bad in (1.0, "2", True):
        with pytest.raises(TypeError):
            effective_n_threads(bad)


@needs_openmp
def test_threadpoolctl_sees_and_limits_fastgd_openmp():
    assert any(info["user_api"] == "openmp" for info in threadpool_info())
    with threadpool_limits(limits=1, user_api="openmp"):
        assert effective_n_threads(None) == 1


@needs_openmp
def test_omp_num_threads_respected():
    code = "from fastgd._validation import effective_n_threads as e; print(e(None), e(-1))"
    env = dict(os.environ, OMP_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["3", "3"]  # as scikit-learn: an explicit OMP_NUM_THREADS wins over cores
