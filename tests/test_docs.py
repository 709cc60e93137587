"""The examples in the docstrings and README run and print what they say."""

import doctest
import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

import fastgd
import fastgd.estimators
import fastgd.reference


@pytest.mark.parametrize("module", [fastgd, fastgd.estimators, fastgd.reference])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0


README = pathlib.Path(__file__).parents[1] / "README.md"
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


# What each block's comments say it gives, checked after it runs (by a name it defines).
CHECKS = {
    "clf = fastgd.GDClassifier()": "assert clf.classes_.tolist() == ['barbera', 'barolo', "
                                   "'grignolino']\nassert clf.score(X_test, y_test) > 0.9\n"
                                   "assert (fastgd.load('wine.fastgd').predict(X_test) == "
                                   "clf.predict(X_test)).all()",
    "Y = np.column_stack": "assert fastgd.GDRegressor().fit(X, Y).coef_.shape == (2, 20)\n"
                           "assert model.score(X, y) > 0.999",
    "text = make_pipeline": "assert text.score(docs[2000:], labels[2000:]) > 0.95\n"
                            "assert text[-1].solver_ == 'newton'",
    "encode = make_column_transformer": "import scipy.sparse\n"
                                        "assert scipy.sparse.issparse(encode.transform(rides))\n"
                                        "assert model.score(rides, fare) > 0.98",
}


@pytest.mark.parametrize("number", range(len(PYTHON_BLOCKS)))
def test_readme_example_runs_alone(number, tmp_path):
    """Each ```python block of README.md runs on its own, as a script a reader pastes into a
    file (a fresh process, its own imports; in a scratch directory: one saves a file), and
    gives what its comments say."""
    block = PYTHON_BLOCKS[number]
    checks = [check for marker, check in CHECKS.items() if marker in block]
    script = tmp_path / f"example_{number}.py"
    script.write_text(block + "\n" + "\n".join(checks) + "\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr


def test_readme_has_examples():
    assert len(PYTHON_BLOCKS) >= 3
    for marker in CHECKS:  # each check finds its block
        assert sum(marker in block for block in PYTHON_BLOCKS) == 1, marker


NUMBER = re.compile(r"-?\d+\.\d+(?:e[-+]?\d+)?")


def same_up_to_rounding(printed: str, shown: str) -> bool:
    """The same line but for the last bits of long decimals: BLAS kernels picked by the CPU
    round X @ coef differently (here a probability printed to 16 digits moved by 1e-16)."""
    if NUMBER.sub("N", printed) != NUMBER.sub("N", shown):
        return False
    return all(math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)
               for a, b in zip(NUMBER.findall(printed), NUMBER.findall(shown), strict=True))


def test_readme_command_line_session(tmp_path):
    """README's ```console session runs, and prints on stdout exactly what README shows
    (timings aside; long decimals up to rounding)."""
    (session,) = re.findall(r"```console\n(.*?)```", README.read_text(), flags=re.S)
    timing = re.compile(r"\d+(\.\d+)? s\b|[\d.]+ M rows/s")
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}"
           f"{os.environ['PATH']}"}  # `python` and `fastgd` of this environment
    commands = re.split(r"^\$ ", session, flags=re.M)[1:]
    assert len(commands) >= 6
    for command in commands:
        line, *shown = command.splitlines()
        done = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True,
                              text=True)
        assert done.returncode == 0, (line, done.stderr)
        printed = [timing.sub("T", out) for out in done.stdout.splitlines()]
        expected = [timing.sub("T", out) for out in shown]
        assert len(printed) == len(expected), (line, printed)
        for got, want in zip(printed, expected, strict=True):
            assert same_up_to_rounding(got, want), (line, got, want)
