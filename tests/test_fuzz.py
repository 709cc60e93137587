"""Hostile input on every public entry point (hypothesis): the kernel functions, the
estimators' constructors, fit and predict, fastgd.load, and the command line. Whatever
comes in (NaN, inf, huge values, wrong shapes and dtypes, empty and object arrays,
mismatched lengths, bad hyperparameters, random bytes for a model file, random command
lines), the answer is a result that is finite, or a ValueError / TypeError with a message
(the command line: exit status 0 or 2, no traceback); never a crash, a hang or a NaN model.

`make test` runs a fixed few dozen examples per test; `make fuzz` (CI) thousands.
"""

import contextlib
import io
import math
import os
import shutil
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import fastgd
from fastgd import GDClassifier, GDRegressor, reference
from fastgd.cli import main

pytestmark = pytest.mark.timeout(900)

SPECIAL = [0.0, -0.0, 1.0, -1.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 1e-308,
           5e-324, 1e154, 1e200, 2.0**63, -(2.0**63)]
DTYPES = [np.float64, np.float32, np.int64, np.int8, np.uint8, np.bool_, np.complex128,
          object, "U3", "M8[s]", np.float16]


@st.composite
def hostile_arrays(draw, max_dims=3):
    """An array of a random shape (empty ones too) and dtype, of random and special
    values; sometimes non-contiguous."""
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=max_dims)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = np.asarray(rng.standard_normal(shape) * 10.0 ** rng.integers(-5, 6, shape))
    if values.size and draw(st.booleans()):
        flat = values.reshape(-1)
        picks = rng.integers(0, flat.size, draw(st.integers(1, 3)))
        flat[picks] = [SPECIAL[i] for i in rng.integers(0, len(SPECIAL), len(picks))]
    dtype = draw(st.sampled_from(DTYPES))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            array = values.astype(dtype)
        except (ValueError, TypeError, OverflowError):
            array = values
    if array.ndim == 2 and array.shape[0] > 1 and draw(st.booleans()):
        array = array[::2]
    return array


anything = st.one_of(hostile_arrays(), st.none(), st.text(max_size=4), st.integers(),
                     st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                     st.lists(st.floats(), max_size=4), st.dictionaries(st.text(max_size=2),
                                                                         st.integers()))


@st.composite
def near_valid_problems(draw):
    """X (n, d), y, coef, intercept of right shapes, with hostile values and dtypes in one
    of them, or one of them replaced by anything."""
    n, d = draw(st.integers(1, 30)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    parts = {"X": rng.standard_normal((n, d)), "y": rng.standard_normal(n),
             "coef": rng.standard_normal(d), "intercept": float(rng.standard_normal())}
    target = draw(st.sampled_from(list(parts)))
    if draw(st.booleans()):
        parts[target] = draw(anything)
    else:  # right shape, hostile values
        value = np.array(parts[target], dtype=float)
        flat = value.reshape(-1)
        flat[rng.integers(0, flat.size)] = draw(st.sampled_from(SPECIAL))
        parts[target] = value if value.ndim else float(value)
    return parts


def finite(*values) -> bool:
    return all(np.all(np.isfinite(np.asarray(v, dtype=float))) for v in values)


ERRORS = (ValueError, TypeError)
KERNEL_ARGUMENTS = ("X", "y", "coef", "intercept", "sample_weight", "n_threads", "loss",
                    "delta")


def names_one(message: str, names) -> bool:
    """The message names one of the arguments (as a word: "X has 0 rows", "alpha must")."""
    import re

    return any(re.search(rf"(^|\W){re.escape(name)}(\W|$)", message) for name in names)


@given(parts=near_valid_problems(), loss=st.sampled_from(["squared", "huber", "log"]),
       weights=st.one_of(st.none(), hostile_arrays(max_dims=1)),
       n_threads=st.one_of(st.none(), st.integers(-3, 3), st.just("2"), st.just(1.5)),
       delta=st.sampled_from([1.0, 0.0, -1.0, math.nan, math.inf, "1"]))
@pytest.mark.parametrize("fn", [fastgd.loss_and_grad, reference.loss_and_grad],
                         ids=["compiled", "reference"])
def test_kernel_functions(fn, parts, loss, weights, n_threads, delta):
    try:
        result = fn(parts["X"], parts["y"], parts["coef"], parts["intercept"], loss=loss,
                    sample_weight=weights, n_threads=n_threads, delta=delta)
    except ERRORS as error:
        assert names_one(str(error), KERNEL_ARGUMENTS), str(error)
        event(f"refused: {type(error).__name__}")
        return
    event("computed")
    assert finite(*result), "a result with NaN or inf instead of an error"


PARAMS = ["learning_rate", "batch_size", "max_epochs", "tol", "momentum", "beta1", "beta2",
          "rho", "epsilon", "weight_decay", "alpha", "l1_ratio", "clip_norm", "step_size",
          "gamma", "power_t", "eta_min", "warmup_epochs", "validation_fraction",
          "n_iter_no_change", "n_threads", "optimizer", "schedule", "loss", "delta",
          "standardize", "shuffle", "early_stopping", "random_state", "verbose",
          "callbacks", "checkpoint_every", "engine", "class_weight"]
VALUES = st.one_of(st.sampled_from([0, -1, 1, 2, 0.5, 1.5, -0.5, math.nan, math.inf, None,
                                    True, False, "auto", "adam", "cosine", "", "x", 10**30,
                                    2**31, [1], {"a": 1}, np.float32(0.1), np.int64(3)]),
                   st.floats(allow_nan=True, allow_infinity=True))


@given(classifier=st.booleans(), settings=st.dictionaries(st.sampled_from(PARAMS), VALUES,
                                                           max_size=3),
       parts=near_valid_problems(), weights=st.one_of(st.none(), hostile_arrays(1)))
def test_estimators(classifier, settings, parts, weights):
    estimator = GDClassifier if classifier else GDRegressor
    if not classifier:
        settings.pop("class_weight", None)
    settings = {"max_epochs": 5, **settings}
    if isinstance(settings["max_epochs"], int) and settings["max_epochs"] > 50:
        settings["max_epochs"] = 50  # a valid budget, not a slow test
    X, y = parts["X"], parts["y"]
    if classifier and isinstance(y, np.ndarray) and y.dtype.kind == "f":
        y = np.where(np.isfinite(y), np.sign(y), y)
    try:
        model = estimator(**settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y, sample_weight=weights)
            predicted = model.predict(X)
    except ERRORS as error:
        assert names_one(str(error), [*PARAMS, "X", "y", "sample_weight", "learning rate",
                                      "Training diverged"]), str(error)
        event(f"refused: {type(error).__name__}")
        return
    event("fitted")
    assert finite(model.coef_, model.intercept_), "a model with NaN or inf parameters"
    assert len(predicted) == len(X)


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.fastgd"
    X = np.random.default_rng(0).standard_normal((40, 3))
    GDClassifier(max_epochs=3, tol=None).fit(X, np.where(X[:, 0] > 0, "b", "a")).save(path)
    return path.read_bytes()


@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      max_size=4),
       cut=st.one_of(st.none(), st.floats(0, 1)), noise=st.booleans(),
       junk=st.binary(max_size=300))
def test_load_of_damaged_and_random_files(model_bytes, tmp_path_factory, edits, cut, noise,
                                          junk):
    data = bytearray(junk if noise else model_bytes)
    for where, byte in edits:
        if data:
            data[int(where * len(data))] = byte
    if cut is not None:
        data = data[:int(cut * len(data))]
    path = tmp_path_factory.mktemp("damaged") / "m.fastgd"
    path.write_bytes(bytes(data))
    try:
        model = fastgd.load(path)
    except ValueError as error:
        assert str(path) in str(error)
        event("refused")
        return
    event("loaded")
    # a change the format does not care about (a timestamp, unused bytes): still a model
    assert list(model.predict(np.zeros((2, 3)))) in (["a", "a"], ["a", "b"], ["b", "a"],
                                                      ["b", "b"])


WORDS = ["train", "predict", "evaluate", "info", "data.csv", "bad.csv", "empty.csv",
         "m.fastgd", "data.csv", "x.npy", "--target", "y", "x1", "x2", "--features",
         "x1,x2", "x1,,", "--task", "regression", "classification", "--optimizer", "adam",
         "--learning-rate", "auto", "-1", "1e400", "nan", "--batch-size", "full", "0",
         "3", "--epochs", "2", "--test-fraction", "0.5", "1", "--seed", "-o", "out.csv",
         "out.npy", "--json", "m.json", "--plot", "p.png", "--proba", "--keep", "-q",
         "--early-stopping", "--alpha", "--loss", "huber", "log", "-", "--threads",
         "--checkpoint", "run.ckpt", "--checkpoint-every", "--resume"]


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    with open(directory / "data.csv", "w") as f:
        f.write("x1,x2,y\n" + "".join(f"{a},{b},{int(a > 0)}\n"
                                       for a, b in rng.standard_normal((40, 2))))
    (directory / "bad.csv").write_text("x1,x2,y\n1,a,2\n,,\n")
    (directory / "empty.csv").write_text("")
    np.save(directory / "x.npy", rng.standard_normal((10, 2)))
    return directory


@given(command=st.sampled_from(["train", "predict", "evaluate", "info"]),
       words=st.lists(st.sampled_from(WORDS), max_size=10))
def test_command_line(cli_files, command, words):
    argv = [command, *words]
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:  # each example on fresh copies
        for name in os.listdir(cli_files):
            shutil.copy(cli_files / name, scratch)
        os.chdir(scratch)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    status = main(argv + (["-q"] if argv[0] == "train" else []))
                except SystemExit as exit:  # argparse: usage errors and --help
                    status = exit.code
        finally:
            os.chdir(cwd)
    event(f"exit status {status}")
    assert status in (0, 2), err.getvalue()
    assert "Traceback" not in err.getvalue()
    if status == 2 and not err.getvalue().startswith("usage:"):
        lines = [line for line in err.getvalue().splitlines() if ": error: " in line]
        assert len(lines) == 1
