"""The house: no import cycles, light imports, prediction without scikit-learn, short
functions, and registries whose C and NumPy halves agree."""

import ast
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import BUILDS, LOSSES, loss_id, targets_for
from numpy.testing import assert_allclose

from fastgd import losses, optimizers

PACKAGE = pathlib.Path(__file__).parents[1] / "fastgd"
IMPORT_LINE = re.compile(r"^\s*(?:from\s+(fastgd[\w.]*)\s+(?:c?import)\s+\(?([\w, ]+)|"
                         r"(?:c?import)\s+(fastgd[\w.]*))", re.M)


def modules() -> dict:
    """fastgd's modules by dotted name: its .py files, and each compiled module's sources
    (a .pyx with the .pxi files it includes)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = [path]
    for path in PACKAGE.glob("*.pyx"):
        found[f"fastgd.{path.stem}"] = [path, *PACKAGE.glob("*.pxi")]
    return found


def imports_of(name: str, paths: list, known: dict) -> set:
    """Every fastgd module that `name` imports, at the top or inside functions."""
    found = set()
    for path in paths:
        text = path.read_text()
        if path.suffix == ".py":
            names = []
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.Import):
                    names += [(alias.name, None) for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names += [(node.module, alias.name) for alias in node.names]
        else:  # Cython: its Python and C imports, read off the lines
            names = [(m[0], n.strip()) if m[0] else (m[2], None)
                     for m in IMPORT_LINE.findall(text) for n in (m[1] or "").split(",")]
        for module, member in names:
            if not module.startswith("fastgd"):
                continue
            target = f"{module}.{member}" if f"{module}.{member}" in known else module
            if target != name and target in known:
                found.add(target)
    return found


def test_no_import_cycles():
    """Counting imports inside functions: a cycle would make the import order matter, and
    a module that needs another's caller is in the wrong place."""
    known = modules()
    graph = {name: imports_of(name, paths, known) for name, paths in known.items()}
    assert "fastgd._api" in graph["fastgd.reference"]  # the walk sees imports
    assert "fastgd.estimators" in graph["fastgd"]  # inside functions too

    def cycle_from(start, path, on_path):
        for nxt in sorted(graph[start]):
            if nxt in on_path:
                return path[path.index(nxt):] + [nxt]
            found = cycle_from(nxt, path + [nxt], on_path | {nxt})
            if found:
                return found
        return None

    for name in sorted(graph):
        cycle = cycle_from(name, [name], {name})
        assert cycle is None, " -> ".join(cycle)


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return done


HEAVY = "sklearn scipy pandas matplotlib dask distributed torch pyarrow".split()


@pytest.mark.parametrize("what", ["import fastgd", "fastgd --help"])
def test_light_imports(what):
    """`import fastgd` and `fastgd --help` load NumPy only (scikit-learn alone took about
    1.5 s of the 1.6 s import before)."""
    code = ("import sys\n" + ("import fastgd\n" if what == "import fastgd" else
                              "from fastgd.cli import main\ntry:\n    main(['--help'])\n"
                              "except SystemExit:\n    pass\n")
            + "print(sorted({m.split('.')[0] for m in sys.modules}))")
    loaded = run_python(code).stdout.strip().splitlines()[-1]
    assert not [name for name in HEAVY if f"'{name}'" in loaded], loaded


# A Python where scikit-learn (and SciPy, which it needs) cannot be imported.
WITHOUT_SKLEARN = """
import sys

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("sklearn", "scipy"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Missing())
"""


@pytest.mark.parametrize("kind", ["regressor", "multi-output", "binary", "multiclass"])
def test_load_and_predict_without_scikit_learn(tmp_path, kind):
    """fastgd.load gives a LinearModel where scikit-learn is missing: the same predictions,
    probabilities and logits as the estimator that saved it."""
    from fastgd import GDClassifier, GDRegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4))
    y = X @ [1.0, -2.0, 0.5, 0.0] + 0.3
    targets = {"regressor": y, "multi-output": np.column_stack([y, -y]),
               "binary": np.where(y > 0, "yes", "no"), "multiclass": np.digitize(y, [-1, 1])}
    model = (GDClassifier if kind in ("binary", "multiclass") else GDRegressor)(
        max_epochs=50, tol=None).fit(X, targets[kind])
    model.save(tmp_path / "m.fastgd")
    np.save(tmp_path / "X.npy", X)
    code = WITHOUT_SKLEARN + f"""
import numpy as np
import fastgd
model = fastgd.load({str(tmp_path / "m.fastgd")!r})
assert type(model) is fastgd.LinearModel, type(model)
X = np.load({str(tmp_path / "X.npy")!r})
np.save({str(tmp_path / "predictions.npy")!r}, model.predict(X))
if model.classes_ is not None:
    np.save({str(tmp_path / "proba.npy")!r}, model.predict_proba(X))
    np.save({str(tmp_path / "logits.npy")!r}, model.decision_function(X))
assert "sklearn" not in sys.modules and "scipy" not in sys.modules
"""
    run_python(code)
    assert np.array_equal(np.load(tmp_path / "predictions.npy", allow_pickle=False),
                          model.predict(X))
    if kind in ("binary", "multiclass"):
        assert np.array_equal(np.load(tmp_path / "proba.npy"), model.predict_proba(X))
        assert np.array_equal(np.load(tmp_path / "logits.npy"), model.decision_function(X))


def test_linear_model_refuses_wrong_features(tmp_path):
    from fastgd import GDRegressor, LinearModel

    X = np.random.default_rng(0).standard_normal((50, 3))
    GDRegressor(max_epochs=3, tol=None).fit(X, X[:, 0]).save(tmp_path / "m")
    model = LinearModel.load(tmp_path / "m")
    with pytest.raises(ValueError, match="X has 2 features, but the model is expecting 3"):
        model.predict(X[:, :2])
    with pytest.raises(AttributeError, match="no class probabilities"):
        model.predict_proba(X)


MAX_LINES = 80


def long_functions() -> list:
    """(file, function, lines) of fastgd's functions longer than MAX_LINES whose docstring
    does not say why ("Long ... because")."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                reason = re.search(r"Long\b.*because", ast.get_docstring(node) or "", re.S)
                if length > MAX_LINES and not reason:
                    found.append((path.name, node.name, length))
    for path in [*PACKAGE.glob("*.pxi"), *PACKAGE.glob("*.pxd")]:
        lines = path.read_text().split("\n")
        tops = [i for i, line in enumerate(lines) if line[:1].strip() and line[0] != "#"]
        for i, line in enumerate(lines):
            if re.match(r"(cdef|cpdef|def) .*\(", line):
                end = next((t for t in tops if t > i and not lines[t].startswith(")")),
                           len(lines))
                body = "\n".join(lines[i:end]).rstrip()
                if body.count("\n") + 1 > MAX_LINES and not re.search(r"Long\b.*because",
                                                                       body, re.S):
                    found.append((path.name, line.split("(")[0], body.count("\n") + 1))
    return found


def test_functions_are_short_or_say_why():
    assert long_functions() == []


@pytest.mark.parametrize("build", list(BUILDS))
@pytest.mark.parametrize("loss", LOSSES, ids=loss_id)
def test_each_loss_has_the_same_formulas_in_c_and_numpy(build, loss):
    """Value, first and second derivative of every registered loss: the C functions of
    fastgd/_losses.pxd (through kernels.loss_terms) against the registry's NumPy ones."""
    rng = np.random.default_rng(3)
    k = max(loss.min_outputs, 3)
    Z = rng.standard_normal((500, k)) * 4
    Z[:5] = [[40.0] * k, [-40.0] * k, [0.0] * k, [700.0] * k, [-700.0] * k]  # far tails
    Y = targets_for(loss, rng.standard_normal((500, k)))
    value, first, second = BUILDS[build].loss_terms(loss, Z, np.ascontiguousarray(Y))
    want_value, want_first = loss.value_and_gradient(Z, Y)
    assert_allclose(value, want_value, rtol=1e-12, atol=1e-300)
    assert_allclose(first, want_first, rtol=1e-12, atol=1e-15)
    assert_allclose(second, loss.hessian(Z, Y), rtol=1e-12, atol=1e-300)
    assert np.isfinite(value).all() and np.isfinite(first).all()


@pytest.mark.parametrize("loss", LOSSES, ids=loss_id)
def test_each_loss_is_never_negative(loss):
    """tol and the divergence check compare losses by ratio: a loss is >= 0 (a half
    deviance rather than a negative log-likelihood)."""
    rng = np.random.default_rng(5)
    k = max(loss.min_outputs, 2)
    for scale in (0.1, 1.0, 30.0):
        Z = rng.standard_normal((300, k)) * scale
        Y = targets_for(loss, rng.standard_normal((300, k)) * scale)
        assert (loss.value_and_gradient(Z, Y)[0] >= 0).all()


@pytest.mark.parametrize("loss", LOSSES, ids=loss_id)
def test_each_loss_knows_its_best_constant(loss):
    """Loss.best_constant minimizes the mean loss over constant predictions: nudging it
    either way along each output raises the loss (or leaves it, where flat)."""
    rng = np.random.default_rng(4)
    k = max(loss.min_outputs, 2)
    Y = targets_for(loss, rng.standard_normal((400, k)) + 0.3)
    w = rng.uniform(0.5, 2, 400)
    total, sums = loss.target_sums(Y, w, k)
    z = np.broadcast_to(loss.best_constant(total, sums), (k,)).astype(float)

    def at(c):
        return float(w @ loss.value_and_gradient(np.tile(c, (400, 1)), Y)[0]) / total

    assert loss.constant_loss(total, sums, lambda c: at(c) * total) == pytest.approx(at(z))
    if loss.name not in ("huber", "quantile"):  # theirs are near the best only
        for o in range(k):
            for step in (-1e-3, 1e-3):
                nudged = z.copy()
                nudged[o] += step
                assert at(nudged) >= at(z) - 1e-12


def test_estimators_check_targets_against_their_loss(monkeypatch):
    """fit and partial_fit refuse targets outside the loss's domain (Loss.check_targets),
    as loss_and_grad does: a loss with a domain needs nothing more than its check."""
    from fastgd import GDRegressor

    def refuse(self, Y, k):
        raise ValueError(f"y is outside the {self.name} loss's domain")

    monkeypatch.setattr(losses.Squared, "check_targets", refuse)
    X = np.ones((10, 2))
    for call in (lambda: GDRegressor().fit(X, np.ones(10)),
                 lambda: GDRegressor().partial_fit(X, np.ones(10))):
        with pytest.raises(ValueError, match="outside the squared loss's domain"):
            call()


def test_registries_name_every_kernel_code_once():
    for registry in (losses.LOSSES, optimizers.OPTIMIZERS):
        codes = [cls.code for cls in registry.values()]
        assert sorted(codes) == list(range(len(codes)))
        assert all(cls.summary for cls in registry.values())


def test_readme_layout_names_every_file():
    """README's Layout section names every source file of the package, and nothing that
    is not there."""
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout"):].split("\n## ")[0]
    files = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*")
             if path.suffix in (".py", ".pyx", ".pxd", ".pxi", ".h")}
    named = set(re.findall(r"^ {4}(?:fastgd/)?([\w/]+\.(?:py|pyx|pxd|pxi|h))\b", layout, re.M))
    named |= set(re.findall(r"[ ;(]([\w]+\.(?:py|pyx|pxd|pxi|h))\b", layout))
    missing = {f for f in files if f not in named and f.split("/")[-1] not in named
               and not (f.startswith("solvers/") and "fastgd/solvers/" in layout)}
    assert not missing, f"README's Layout does not name {sorted(missing)}"
    places = [PACKAGE, *(PACKAGE.parent / d for d in ("benchmarks", "tests", "tools"))]
    unknown = {name for name in named
               if not any(list(place.rglob(name.split("/")[-1])) for place in places)}
    assert not unknown, f"README's Layout names files that do not exist: {sorted(unknown)}"


def test_linear_model_checks_what_the_estimator_checks(tmp_path):
    import pandas as pd

    from fastgd import GDRegressor, LinearModel

    X = pd.DataFrame(np.random.default_rng(0).standard_normal((50, 3)), columns=["a", "b", "c"])
    GDRegressor(max_epochs=3, tol=None).fit(X, X["a"]).save(tmp_path / "m")
    model = LinearModel.load(tmp_path / "m")
    assert np.array_equal(model.predict(X), fastgd_load(tmp_path / "m").predict(X))
    with pytest.raises(ValueError, match="columns .* are not the features"):
        model.predict(X[["c", "b", "a"]])
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.predict(X.to_numpy() * np.nan)


def fastgd_load(path):
    import fastgd

    return fastgd.load(path)


def test_every_engine_has_the_protocols_methods():
    """InMemory, Sparse and DaskEngine implement every method of the Engine protocol, with
    its parameters."""
    import inspect

    from fastgd._dask import DaskEngine
    from fastgd._memory import InMemory, Sparse
    from fastgd._problem import Engine

    wanted = {name: inspect.signature(f) for name, f in vars(Engine).items()
              if inspect.isfunction(f) and not name.startswith("_")}
    assert len(wanted) == 12
    for engine in (InMemory, Sparse, DaskEngine):
        for name, signature in wanted.items():
            assert list(inspect.signature(getattr(engine, name)).parameters) == list(
                signature.parameters), (engine.__name__, name)


def test_a_loss_whose_targets_disagree_with_its_kernel_code_is_refused():
    """The kernels size their reads by the loss's targets per row: a class-index loss
    must be the multinomial code, and an elementwise one must not (no out-of-bounds read
    for a registry entry that gets them wrong)."""
    from fastgd._problem import Problem
    from fastgd import _kernels

    class Wrong(losses.Squared):
        name, class_indices, min_outputs = "wrong", True, 2

    X = np.ones((4, 2))
    with pytest.raises(ValueError, match="disagree with its kernel code"):
        _kernels.grad_pass(Problem(X, np.zeros((4, 1)), None, Wrong(), 3), np.zeros((3, 2)),
                           np.zeros(3), n_threads=1)
