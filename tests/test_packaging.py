"""What `pip install fastgd` relies on: the sdist, the repaired wheel, the wheel matrix that
cibuildwheel builds on CI, and valid workflow files.

These tests build sdists and wheels themselves, so they carry the `packaging` mark and do
not run inside cibuildwheel's own test step (pyproject.toml: test-command).
"""

import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What .github/workflows/wheels.yml must build: CPython 3.10 and newer on each platform.
PLATFORMS = {
    "linux": ("x86_64,aarch64", {"manylinux_x86_64", "manylinux_aarch64"}),
    "macos": ("x86_64,arm64", {"macosx_x86_64", "macosx_arm64"}),
    "windows": ("AMD64", {"win_amd64"}),
}


def tool(name):
    """A command installed with this Python's packages (the test extra installs them)."""
    path = shutil.which(name, path=sysconfig.get_path("scripts"))
    assert path, f"{name} is not installed: pip install 'fastgd[test]'"
    return path


def numpy_floor():
    """The oldest NumPy pyproject.toml admits, as a pip specifier (1.25 -> 1.25.*)."""
    (spec,) = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("numpy")]
    return re.fullmatch(r"numpy>=([\d.]+)", spec).group(1) + ".*"


def test_sdist_carries_cython_sources(tmp_path):
    """The sdist must build elsewhere: it needs the .pyx/.pxd and no generated C."""
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation",
                    "--outdir", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (sdist,) = tmp_path.glob("fastgd-*.tar.gz")
    names = {Path(n).name for n in tarfile.open(sdist).getnames()}
    sources = {path.name for path in (ROOT / "fastgd").glob("*") if path.suffix in (
        ".pyx", ".pxd", ".pxi", ".h", ".py")}
    assert len(sources) > 30
    assert {*sources, "first_order.py", "setup.py", "pyproject.toml", "MANIFEST.in",
            "README.md", "check_wheel.py", "smoke_test.py", "adam_minibatch.fastgd"} <= names
    assert not {n for n in names if n.endswith(".c")}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="auditwheel repairs Linux wheels")
def test_wheel_from_sdist_repaired_installed_and_run(tmp_path):
    """`make wheel`: the wheel built from the sdist, with libgomp vendored by auditwheel,
    installs in a fresh venv beside the oldest NumPy it declares and passes the smoke test
    from outside the source tree."""
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "check_wheel.py"),
                           "--no-isolation", "--out", str(tmp_path), "--numpy", numpy_floor()],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = tmp_path.glob("fastgd-*.whl")
    assert re.search(r"-manylinux_2_\d+_(x86_64|aarch64)\.whl$", wheel.name)
    assert "vendored: fastgd.libs/libgomp" in done.stdout
    assert "smoke test passed" in done.stdout
    assert f"NumPy {numpy_floor()[:-1]}" in done.stdout
    assert list(tmp_path.glob("fastgd-*.tar.gz"))


def test_each_architecture_builds_on_its_own_runner():
    """archs = native: the workflow's runners, one per architecture, make the wheel matrix."""
    assert PYPROJECT["tool"]["cibuildwheel"]["archs"] == ["native"]
    workflow = (ROOT / ".github" / "workflows" / "wheels.yml").read_text()
    runners = set(re.findall(r"\{ os: ([\w.-]+), name: [\w-]+ \}", workflow))
    assert runners == {"ubuntu-latest", "ubuntu-24.04-arm", "macos-15-intel", "macos-15",
                       "windows-latest"}


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_cibuildwheel_builds_cpython_310_and_newer(platform):
    archs, expected_tags = PLATFORMS[platform]
    out = subprocess.run([tool("cibuildwheel"), "--print-build-identifiers", "--platform",
                          platform, "--archs", archs], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()
    builds = {}
    for identifier in out:
        python, tag = identifier.split("-", 1)
        assert re.fullmatch(r"cp3\d+", python), f"not a (GIL) CPython build: {identifier}"
        builds.setdefault(tag, set()).add(int(python[3:]))
    assert set(builds) == expected_tags
    versions = builds.popitem()[1]
    assert all(v == versions for v in builds.values()), "every platform gets every version"
    assert min(versions) == 10 and versions == set(range(10, max(versions) + 1))
    assert max(versions) >= 14


def test_workflows_are_valid_github_actions():
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    assert {Path(p).name for p in workflows} >= {"ci.yml", "wheels.yml"}
    done = subprocess.run([tool("check-jsonschema"), "--builtin-schema",
                           "vendor.github-workflows", *workflows], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
