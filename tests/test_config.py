"""fastgd.show_config() and `fastgd info`: the build and threading configuration, true to
the build that is running."""

import os

import numpy as np
import pytest

import fastgd
from fastgd import _compiled
from fastgd.cli import main


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def test_dicts_describe_the_running_build():
    config = fastgd.show_config("dicts")
    build = config["build"]
    assert build["openmp"] == _compiled.kernels.openmp_enabled()
    assert build["simd"] == _compiled.SIMD
    assert build["bounds_checking"] == _compiled.kernels.bounds_checked()
    assert (build["openmp_library"] is not None) == build["openmp"]
    if build["openmp"]:
        assert os.path.exists(build["openmp_library"])
        name = os.path.basename(build["openmp_library"]).lower()
        assert name.startswith(("libgomp", "libomp", "libiomp", "vcomp"))
    assert config["threads"]["default"] >= 1
    assert config["numpy"]["version"] == np.__version__
    assert config["fastgd"]["version"] == fastgd.__version__
    assert os.path.samefile(config["fastgd"]["path"], os.path.dirname(fastgd.__file__))


def test_the_build_is_the_one_asked_for():
    """make test-serial and make test-debug set these for the build and for the tests. A
    build that was not asked to be serial has OpenMP: setup.py only warns when it finds no
    OpenMP, and a silent serial fallback would turn every thread-count test into one thread
    against one thread (and skip those that need OpenMP)."""
    assert _compiled.kernels.openmp_enabled() == (not _flag("FASTGD_NO_OPENMP")), (
        "this fastgd was built without OpenMP: install an OpenMP runtime (libgomp; libomp on "
        "macOS) and rebuild, or set FASTGD_NO_OPENMP=1 for a serial build and its tests")
    assert _compiled.kernels.bounds_checked() == _flag("FASTGD_DEBUG")
    # Both SIMD builds are the same kind of build.
    assert _compiled.baseline.openmp_enabled() == _compiled.kernels.openmp_enabled()
    assert _compiled.baseline.bounds_checked() == _compiled.kernels.bounds_checked()


def test_printed_and_fastgd_info(capsys):
    fastgd.show_config()
    printed = capsys.readouterr().out
    assert main(["info"]) == 0
    assert capsys.readouterr().out == printed
    openmp = "on (" if _compiled.kernels.openmp_enabled() else "off: a serial build"
    for expected in (f"fastgd {fastgd.__version__}", f"OpenMP          {openmp}",
                     f"SIMD build      {_compiled.SIMD}", f"NumPy           {np.__version__}"):
        assert expected in printed


def test_serial_build_uses_one_thread():
    if _compiled.kernels.openmp_enabled():
        pytest.skip("an OpenMP build: make test-serial runs this")
    assert fastgd.show_config("dicts")["threads"]["default"] == 1


def test_bad_mode():
    with pytest.raises(ValueError, match="mode must be"):
        fastgd.show_config("json")
