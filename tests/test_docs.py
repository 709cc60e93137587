"""The examples in the docstrings run and print what they say."""

import doctest

import pytest

import fastgd
import fastgd.estimators
import fastgd.reference


@pytest.mark.parametrize("module", [fastgd, fastgd.estimators, fastgd.reference])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0


def test_readme_examples_run(tmp_path, monkeypatch):
    """Every ```python block of README.md runs (in a scratch directory: it saves a file)."""
    import pathlib
    import re

    readme = pathlib.Path(__file__).parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(compile(block, str(readme), "exec"), namespace)
    assert namespace["clf"].classes_.tolist() == ["barbera", "barolo", "grignolino"]
    assert namespace["clf"].score(namespace["X_test"], namespace["y_test"]) > 0.9


def test_readme_command_line_session(tmp_path):
    """README's ```console session runs, and prints on stdout exactly what README shows
    (timings aside)."""
    import os
    import pathlib
    import re
    import subprocess
    import sys

    readme = pathlib.Path(__file__).parents[1] / "README.md"
    (session,) = re.findall(r"```console\n(.*?)```", readme.read_text(), flags=re.S)
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
        assert printed == [timing.sub("T", out) for out in shown], line
