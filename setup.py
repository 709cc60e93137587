"""Build the compiled engine.

Metadata lives in pyproject.toml; this file only declares the Cython extension and picks
OpenMP flags for the compiler at hand. A compiler without OpenMP (or FASTGD_NO_OPENMP=1)
gives a serial build with a warning, never a failed build. FASTGD_DEBUG=1 turns Cython's
bounds checking back on (fastgd.show_config() reports both). FASTGD_SANITIZE=1 instruments
the C with AddressSanitizer and UndefinedBehaviorSanitizer (gcc or clang; `make sanitize`
preloads gcc's runtime).
"""

import glob
import os
import platform
import sys
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }
    """
)


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def openmp_flag_candidates(compiler_type):
    """(compile args, link args) to try, best first, for this compiler."""
    if compiler_type == "msvc":
        return [(["/openmp"], [])]
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        # Apple clang has no -fopenmp driver flag: it needs libomp (Homebrew or conda).
        for prefix in filter(None, [os.environ.get("LIBOMP_PREFIX"), "/opt/homebrew/opt/libomp",
                                    "/usr/local/opt/libomp", os.environ.get("CONDA_PREFIX")]):
            candidates.append((
                ["-Xpreprocessor", "-fopenmp", f"-I{prefix}/include"],
                [f"-L{prefix}/lib", "-lomp", f"-Wl,-rpath,{prefix}/lib"],
            ))
    return candidates


def compiles_and_links(compiler, compile_args, link_args):
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(OPENMP_PROBE)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_args)
            compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=link_args)
        except Exception:
            return False
    return True


class BuildExt(build_ext):
    """Adds the OpenMP flags that work with this compiler, or builds serially."""

    def finalize_options(self):
        super().finalize_options()
        # Always compile: a .so left by another kind of build (serial, debug) is newer than
        # the sources, and setuptools would keep it.
        self.force = True

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        openmp = None
        if _flag("FASTGD_NO_OPENMP"):
            warnings.warn("FASTGD_NO_OPENMP is set: building fastgd without OpenMP (serial).",
                          stacklevel=1)
        else:
            for compile_args, link_args in openmp_flag_candidates(ctype):
                if compiles_and_links(self.compiler, compile_args, link_args):
                    openmp = (compile_args, link_args)
                    break
            if openmp is None:
                warnings.warn(
                    "No OpenMP support found for this compiler: building fastgd serially. "
                    "Install an OpenMP runtime (libgomp, or libomp on macOS) for multi-threading.",
                    stacklevel=1,
                )
        # -fno-math-errno lets sqrt vectorize (the optimizer updates); it changes no result.
        base = ["/O2"] if ctype == "msvc" else ["-O3", "-fno-math-errno"]
        if not (ctype == "unix" and platform.machine().lower() in ("x86_64", "amd64")):
            # The AVX2 build needs gcc/clang target flags on x86-64; elsewhere only the
            # portable build is made, and fastgd/_compiled.py uses it.
            self.extensions = [e for e in self.extensions if e.name not in SIMD_FLAGS]
        # Any sanitizer finding aborts (-fno-sanitize-recover): a test cannot pass over it.
        sanitize = (["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                     "-fno-omit-frame-pointer", "-g"] if _flag("FASTGD_SANITIZE") else [])
        for ext in self.extensions:
            simd = SIMD_FLAGS.get(ext.name, [])
            ext.extra_compile_args = base + simd + sanitize + (openmp[0] if openmp else [])
            ext.extra_link_args = sanitize[:1] + (openmp[1] if openmp else [])
            if openmp and sys.platform.startswith("linux"):
                ext.libraries = ["dl"]  # dladdr (fastgd.show_config) before glibc 2.34
        super().build_extensions()


debug = _flag("FASTGD_DEBUG")
directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": debug,
    "freethreading_compatible": True,
}

# Runtime-dispatched variants of the kernels (fastgd/_compiled.py picks one at import).
SIMD_FLAGS = {"fastgd._kernels_avx2": ["-mavx2", "-mfma"]}

extensions = [
    Extension(
        name,
        [name.replace(".", "/") + ".pyx"],
        depends=sorted(glob.glob("fastgd/*.pxi") + glob.glob("fastgd/*.pxd")
                       + glob.glob("fastgd/*.h")),
        include_dirs=[np.get_include(), "fastgd"],
        # The oldest NumPy the built module runs with (pyproject.toml: numpy>=1.25).
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION"),
                       ("NPY_TARGET_VERSION", "NPY_1_25_API_VERSION")],
    )
    for name in ["fastgd._kernels", *SIMD_FLAGS]
]

setup(
    # The debug build generates its C elsewhere: Cython regenerates only for newer sources,
    # never for other directives.
    ext_modules=cythonize(extensions, compiler_directives=directives,
                          build_dir="build/cython-debug" if debug else None),
    cmdclass={"build_ext": BuildExt},
)
