"""The `fastgd` command line: the demo, train / predict / evaluate on real files, errors."""

import importlib.util
import io
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_cli as run

import fastgd
from fastgd import _plots
from fastgd._demo import seed_walkthrough
from fastgd.cli import main

pd = pytest.importorskip("pandas")
metrics = pytest.importorskip("sklearn.metrics")


def houses(n=2000, seed=1):
    """A small table: three numeric features, a text column, a price and a text label."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"size": rng.uniform(30, 200, n), "rooms": rng.integers(1, 6, n),
                          "age": rng.uniform(0, 80, n), "city": rng.choice(["a", "b"], n)})
    table["price"] = (3 * table["size"] + 10 * table["rooms"] - 0.5 * table["age"]
                      + rng.normal(0, 5, n))
    table["expensive"] = np.where(table["price"] > table["price"].median(), "yes", "no")
    return table


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    houses().to_csv("houses.csv", index=False)
    return tmp_path


# ---- fastgd demo ------------------------------------------------------------------------

def test_seed_walkthrough_is_plain_gradient_descent():
    """Every number of the 10-iteration table, against the loop written out in NumPy."""
    x, y, w, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0]), 0.0, 0.0
    for iteration, loss, gw, gb, w_after, b_after in seed_walkthrough():  # noqa: B007
        error = w * x + b - y
        grad_w, grad_b = 2 * np.mean(error * x), 2 * np.mean(error)
        w, b = w - 0.1 * grad_w, b - 0.1 * grad_b
        np.testing.assert_allclose([loss, gw, gb, w_after, b_after],
                                   [np.mean(error**2), grad_w, grad_b, w, b], rtol=1e-12)
    assert iteration == 10
    (_, loss2, gw2, gb2, w2, b2) = seed_walkthrough(epochs=2)[1]
    assert [round(v, 4) for v in (loss2, gw2, gb2, w2, b2)] == [0.2963, 1.9556, 1.0667, 1.6711,
                                                                0.6933]


def test_demo(tmp_path, capsys):
    from PIL import Image

    status, out, _ = run(capsys, "demo", "--rows", 20000, "--features", 10, "--out", tmp_path)
    assert status == 0
    # iteration 2 by hand: the forward pass at w = 1.8667, b = 0.8, then the update
    assert "Iteration 2, from w = 1.8667, b = 0.8000" in out
    assert "   1    2         2.6667         0.6667" in out
    assert "w ← w − η·∂L/∂w = 1.8667 − 0.1·(1.9556) = 1.6711" in out
    assert "        2     0.2963     1.9556     1.0667    1.6711    0.6933" in out
    assert "       10     0.0503    -0.0626     0.1424    1.7458    0.5779" in out
    assert "arithmetic slips" in out and "0.34" in out
    # the learning-rate lesson: slow, and a divergence reported by fastgd itself
    assert "loss is still 2.3139" in out
    assert "DivergenceError: Training diverged at epoch 15" in out
    assert "stable below η = 2/λ = 0.180" in out
    # the throughput case: both engines, the same coefficients
    assert "20,000 rows × 10 features" in out and "fastgd is" in out
    gaps = out.split("coefficients differ by at most ")[1:]
    assert len(gaps) == 2 and all(float(gap.split()[0]) < 1e-9 for gap in gaps)
    # the pictures
    with Image.open(tmp_path / "seed_walkthrough.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 11
        frames = []
        for k in range(gif.n_frames):
            gif.seek(k)
            frames.append(np.asarray(gif.convert("RGB")))
        assert all(not np.array_equal(a, b) for a, b in zip(frames[:-1], frames[1:], strict=True))
    with Image.open(tmp_path / "loss_curves.png") as png:
        assert png.format == "PNG" and png.size[0] > 300


def test_demo_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_plots, "available", lambda: False)
    status, out, _ = run(capsys, "demo", "--rows", 1000, "--features", 3, "--out",
                         tmp_path / "pictures")
    assert status == 0
    assert "No pictures: they need matplotlib. pip install 'fastgd[cli]'" in out
    assert not (tmp_path / "pictures").exists()
    assert "fastgd is" in out  # the rest of the demo ran


# ---- fastgd train / predict / evaluate ----------------------------------------------------

def test_train_regression_reports_true_test_metrics(data, capsys):
    status, out, err = run(capsys, "train", "houses.csv", "--target", "price", "--features",
                           "size,rooms,age", "-o", "price.fastgd", "--json", "metrics.json",
                           "--plot", "loss.png")
    assert status == 0, err
    assert "task: regression" in out and "rows: 1,600 to train on, 400 to test on" in out
    model = fastgd.load("price.fastgd")
    assert list(model.feature_names_in_) == ["size", "rooms", "age"]
    # the same split by hand, and the metrics of the saved model on it
    from sklearn.model_selection import train_test_split

    table = houses()
    X = table[["size", "rooms", "age"]].to_numpy(float)
    _, X_test, _, y_test = train_test_split(X, table["price"].to_numpy(), test_size=0.2,
                                            random_state=0)
    predicted = model.predict(pd.DataFrame(X_test, columns=model.feature_names_in_))
    reported = json.loads(open("metrics.json").read())
    assert reported["rows_test"] == 400 and reported["epochs"] == model.n_iter_
    np.testing.assert_allclose(
        [reported["metrics"][k] for k in ("rmse", "mae", "r2")],
        [metrics.root_mean_squared_error(y_test, predicted),
         metrics.mean_absolute_error(y_test, predicted), metrics.r2_score(y_test, predicted)],
        rtol=1e-12)
    assert reported["metrics"]["r2"] > 0.99
    assert f"  R²          {reported['metrics']['r2']:.6g}" in out
    # the same fit as the estimator's on the same rows
    X_train, _, y_train, _ = train_test_split(X, table["price"].to_numpy(), test_size=0.2,
                                              random_state=0)
    direct = fastgd.GDRegressor(random_state=0).fit(X_train, y_train)
    np.testing.assert_array_equal(model.coef_, direct.coef_)
    from PIL import Image

    with Image.open("loss.png") as png:
        assert png.format == "PNG"


def test_train_shows_progress_unless_quiet(data, capsys):
    _, _, err = run(capsys, "train", "houses.csv", "--target", "price", "--features", "size")
    assert "fastgd" in err and "epoch" in err and "loss=" in err  # tqdm's bar
    _, out, err = run(capsys, "train", "houses.csv", "--target", "price", "--features",
                      "size", "-q")
    assert err == "" and "model not saved (give -o MODEL to keep it)" in out


def test_train_classification_predict_and_evaluate(data, capsys):
    status, out, err = run(capsys, "train", "houses.csv", "--target", "expensive",
                           "--features", "size,rooms,age", "-o", "cls.fastgd", "-q",
                           "--optimizer", "adam", "--batch-size", "64", "--epochs", "30",
                           "--learning-rate", "0.01", "--early-stopping")
    assert status == 0, err
    assert "task: classification (target 'expensive' holds labels" in out
    model = fastgd.load("cls.fastgd")
    assert list(model.classes_) == ["no", "yes"] and model.early_stopping
    assert (model.optimizer, model.batch_size, model.learning_rate) == ("adam", 64, 0.01)
    assert "  accuracy    " in out and "  F1 (macro)  " in out and "  log-loss    " in out

    status, _, err = run(capsys, "predict", "cls.fastgd", "houses.csv", "-o", "out.csv",
                         "--proba", "--keep", "city")
    assert status == 0 and "2,000 predictions written to out.csv" in err
    written = pd.read_csv("out.csv")
    assert list(written.columns) == ["city", "prediction", "proba_no", "proba_yes"]
    table = houses()
    features = table[["size", "rooms", "age"]].astype(float)
    assert (written["prediction"] == model.predict(features)).all()
    np.testing.assert_allclose(written[["proba_no", "proba_yes"]],
                               model.predict_proba(features), rtol=1e-15)
    assert (written["city"] == table["city"]).all()

    status, out, _ = run(capsys, "evaluate", "cls.fastgd", "houses.csv", "--target",
                         "expensive", "--json", "eval.json")
    assert status == 0
    reported = json.loads(open("eval.json").read())["metrics"]
    assert reported["accuracy"] == metrics.accuracy_score(table["expensive"],
                                                          model.predict(features))
    assert reported["log_loss"] == pytest.approx(
        metrics.log_loss(table["expensive"], model.predict_proba(features)), rel=1e-12)
    assert f"  accuracy    {reported['accuracy']:.6g}" in out


@pytest.mark.parametrize("optimizer", ["lbfgs", "newton"])
def test_train_with_a_full_batch_solver(data, capsys, optimizer):
    """--optimizer lbfgs or newton: the estimator's fit, saved and reloaded."""
    status, out, err = run(capsys, "train", "houses.csv", "--target", "expensive",
                           "--features", "size,rooms,age", "-o", "cls.fastgd", "-q",
                           "--optimizer", optimizer)
    assert status == 0, err
    assert f"GDClassifier({optimizer}, full batch)" in out
    model = fastgd.load("cls.fastgd")
    assert model.optimizer == optimizer and model.n_iter_ < 100


@pytest.mark.parametrize("output", ["out.csv", "out.tsv", "out.csv.gz", "out.parquet",
                                    "out.npy", "-"])
def test_predict_writes_every_format(data, capsys, output):
    if output.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    run(capsys, "train", "houses.csv", "--target", "price", "--features", "size,age",
        "-o", "m.fastgd", "-q")
    status, out, _ = run(capsys, "predict", "m.fastgd", "houses.csv", "-o", output)
    assert status == 0
    if output == "-":
        written = pd.read_csv(io.StringIO(out))["prediction"]
    elif output.endswith(".npy"):
        written = np.load(output, allow_pickle=False)["prediction"]
    else:
        from fastgd._tables import read_table

        written = read_table(output)["prediction"]
    expected = fastgd.load("m.fastgd").predict(houses()[["size", "age"]])
    np.testing.assert_array_equal(np.asarray(written), expected)  # the digits round-trip


def test_multi_output_regression(data, capsys):
    table = houses()
    table["tax"] = 0.01 * table["price"] + 1
    table.to_csv("houses.csv", index=False)
    assert run(capsys, "train", "houses.csv", "--target", "price,tax", "--features",
               "size,rooms,age", "-o", "two.fastgd", "-q")[0] == 0
    model = fastgd.load("two.fastgd")
    assert model.coef_.shape == (2, 3)
    status, out, _ = run(capsys, "predict", "two.fastgd", "houses.csv")
    assert status == 0
    written = pd.read_csv(io.StringIO(out))
    np.testing.assert_array_equal(written[["prediction_0", "prediction_1"]],
                                  model.predict(table[["size", "rooms", "age"]]))
    status, out, _ = run(capsys, "evaluate", "two.fastgd", "houses.csv", "--target",
                         "price,tax", "--json", "two.json")
    assert status == 0
    r2 = metrics.r2_score(table[["price", "tax"]], written.to_numpy())
    assert json.loads(open("two.json").read())["metrics"]["r2"] == pytest.approx(r2, rel=1e-12)


@pytest.mark.parametrize("name", ["houses.tsv", "houses.csv.gz", "houses.parquet",
                                  "houses.npz"])
def test_every_input_format_trains_the_same_model(data, capsys, name):
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    table = houses()[["size", "rooms", "age", "price"]]
    if name.endswith(".npz"):
        np.savez(name, X=table[["size", "rooms", "age"]].to_numpy(float),
                 y=table["price"].to_numpy())
        target, features = "y", "X.0,X.1,X.2"
    else:
        from fastgd._tables import write_table

        write_table(name, table)
        target, features = "price", "size,rooms,age"
    run(capsys, "train", "houses.csv", "--target", "price", "--features", "size,rooms,age",
        "-o", "csv.fastgd", "-q")
    status, _, err = run(capsys, "train", name, "--target", target, "--features", features,
                         "-o", "other.fastgd", "-q")
    assert status == 0, err
    np.testing.assert_array_equal(fastgd.load("other.fastgd").coef_,
                                  fastgd.load("csv.fastgd").coef_)


def test_npy_columns_are_numbered_and_unnamed_models_take_all_columns(data, capsys):
    """A model fitted in Python on an unnamed array predicts from a file's columns in order."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    np.save("X.npy", X)
    np.save("Xy.npy", np.column_stack([X, X @ [1.0, 2.0, 3.0]]))
    model = fastgd.GDRegressor().fit(X, X @ [1.0, 2.0, 3.0])
    model.save("plain.fastgd")
    status, out, _ = run(capsys, "predict", "plain.fastgd", "X.npy")
    assert status == 0
    np.testing.assert_allclose(pd.read_csv(io.StringIO(out))["prediction"], model.predict(X),
                               rtol=1e-12)
    status, out, _ = run(capsys, "evaluate", "plain.fastgd", "Xy.npy", "--target", "3")
    assert status == 0
    assert f"R²          {metrics.r2_score(X @ [1.0, 2.0, 3.0], model.predict(X)):.6g}" in out
    status, _, err = run(capsys, "predict", "plain.fastgd", "Xy.npy")
    assert status == 2 and "the model takes 3 features" in err and "has 4 columns" in err


@pytest.mark.parametrize("values, task", [
    (["x", "y", "z"], "classification (target 't' holds labels"),
    ([True, False, True], "classification (target 't' holds labels"),
    ([0, 1, 1], "classification (target 't' has 2 distinct values"),
    ([0.5, 1.5, 7.0], "regression (target 't' is numeric"),
])
def test_task_follows_the_target(data, capsys, values, task):
    pd.DataFrame({"a": np.arange(60.0), "t": values * 20}).to_csv("t.csv", index=False)
    status, out, err = run(capsys, "train", "t.csv", "--target", "t", "-q", "--epochs", "5")
    assert status == 0, err
    assert f"task: {task}" in out


def test_help_of_every_command_has_an_example(capsys):
    for command in ("demo", "train", "predict", "evaluate", "info", "bench"):
        with pytest.raises(SystemExit) as exit:
            main([command, "--help"])
        assert exit.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: fastgd {command}" in out and f"example:\n  fastgd {command}" in out


# ---- errors: one sentence on stderr, exit status 2 ------------------------------------

ERRORS = [
    (["train", "missing.csv", "--target", "price"],
     "data file 'missing.csv' does not exist"),
    (["train", "houses.csv", "--target", "cost"],
     "data file 'houses.csv' has no column 'cost' (its columns: 'size', 'rooms'"),
    (["train", "houses.csv", "--target", "price", "--features", "size,colour"],
     "data file 'houses.csv' has no column 'colour'"),
    (["train", "houses.csv", "--target", "expensive", "--task", "regression",
      "--features", "size"],
     "target column 'expensive' of data file 'houses.csv' is not numeric"),
    (["train", "empty.csv", "--target", "price"], "data file 'empty.csv' is empty"),
    (["train", "header.csv", "--target", "price"], "data file 'header.csv' has no rows"),
    (["train", "holes.csv", "--target", "price"],
     "column 'size' of data file 'holes.csv' has 2 missing or infinite values (the first in "
     "data row 3)"),
    (["train", "infinite.csv", "--target", "price"],
     "column 'size' of data file 'infinite.csv' has 1 missing or infinite value (the first in "
     "data row 2)"),
    (["train", "infinite.csv", "--target", "size", "--features", "price"],
     "column 'size' of data file 'infinite.csv' has 1 missing or infinite value"),
    (["train", "houses.csv", "--target", "price", "-o", "houses.csv"],
     "cannot write 'houses.csv': it is the input file 'houses.csv'"),
    (["train", "houses.csv", "--target", "price", "-o", "same", "--json", "same"],
     "-o and --json name the same file"),
    (["predict", "m.fastgd", "houses.csv", "-o", "houses.csv"],
     "cannot write 'houses.csv': it is the input file 'houses.csv'"),
    (["predict", "m.fastgd", "houses.csv", "--keep", "colour"],
     "data file 'houses.csv' has no column 'colour'"),
    (["predict", "plain.fastgd", "X.npy", "--keep", "colour"],
     "data file 'X.npy' has no column 'colour'"),
    (["predict", "plain.fastgd", "wide.npy"],
     "the model takes 3 features (it was trained without column names) but wide.npy has 4 "
     "columns"),
    (["predict", ".", "houses.csv"], "model file '.' is a directory"),
    (["train", "model.npz", "--target", "x"], "holds entries that are not NumPy arrays"),
    (["train", "houses.parquet", "--target", "price", "--features", "colour"],
     "data file 'houses.parquet' has no column 'colour' (its columns: 'size'"),
    (["train", "binary.csv", "--target", "x"], "data file 'binary.csv' "),  # and printable
    (["demo", "--out", "houses.csv"], "--out 'houses.csv' is a file; give a directory"),
    (["bench", "--plot", "chart.gif"], "picture file 'chart.gif': give it one of the "
     "suffixes .png, .svg, .pdf"),
    (["bench", "--json", "nowhere/b.json"], "cannot write 'nowhere/b.json': directory"),
    (["train", "houses.txt", "--target", "price"], "has an unknown format"),
    (["train", ".", "--target", "price"], "data file '.' is a directory"),
    (["train", "houses.csv", "--target", "price", "--features", "size,price"],
     "column 'price' is both a feature and the target"),
    (["train", "houses.csv", "--target", "price", "--features", "size", "--optimizer", "sgd",
      "--learning-rate", "100"], "Try a smaller --learning-rate (now 100)."),
    (["train", "houses.csv", "--target", "price", "--features", "size", "--plot", "c.gif"],
     "picture file 'c.gif': give it one of the suffixes .png"),
    (["train", "houses.csv", "--target", "price", "--features", "size", "-o",
      "nowhere/m.fastgd"], "cannot write 'nowhere/m.fastgd': directory"),
    (["predict", "houses.csv", "houses.csv"],
     "houses.csv is not a fastgd model this version can read"),
    (["predict", "missing.fastgd", "houses.csv"], "model file 'missing.fastgd' does not exist"),
    (["predict", "m.fastgd", "houses.csv", "-o", "out.json"],
     "output file 'out.json' has an unknown format"),
    (["predict", "m.fastgd", "houses.csv", "--proba"],
     "--proba needs a classifier; this model is a regressor"),
    (["predict", "m.fastgd", "other.csv"], "data file 'other.csv' has no column 'size'"),
    (["evaluate", "m.fastgd", "houses.csv", "--target", "city"],
     "target column 'city' of data file 'houses.csv' is not numeric"),
    (["evaluate", "m.fastgd", "houses.csv", "--target", "price,age"],
     "the model predicts 1 target; --target names 2"),
    (["evaluate", "c.fastgd", "houses.csv", "--target", "city"],
     "target column 'city' holds labels the model was not trained on: a, b"),
    (["train", "objects.npy", "--target", "0"],
     "holds Python objects, which fastgd does not unpickle"),
]


@pytest.fixture
def bad_files(data, capsys):
    open("empty.csv", "w").close()
    open("houses.txt", "w").write("size,price\n1,2\n")
    open("header.csv", "w").write("size,price\n")
    open("holes.csv", "w").write("size,price\n1,2\n2,3\n,4\n5,6\n,7\n")
    open("other.csv", "w").write("width,price\n1,2\n")
    np.save("objects.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    open("infinite.csv", "w").write("size,price\n1,2\ninf,3\n2,4\n")
    open("binary.csv", "wb").write(bytes(range(256)) * 4)
    X = np.random.default_rng(0).standard_normal((50, 3))
    np.save("X.npy", X)
    np.save("wide.npy", np.column_stack([X, X[:, 0]]))
    fastgd.GDRegressor().fit(X, X[:, 0]).save("plain.fastgd")
    pathlib.Path("model.npz").write_bytes(pathlib.Path("plain.fastgd").read_bytes())
    if importlib.util.find_spec("pyarrow"):
        houses().to_parquet("houses.parquet")
    assert run(capsys, "train", "houses.csv", "--target", "price", "--features", "size,age",
               "-o", "m.fastgd", "-q")[0] == 0
    assert run(capsys, "train", "houses.csv", "--target", "expensive", "--features",
               "size,age", "-o", "c.fastgd", "-q")[0] == 0


@pytest.mark.parametrize("argv, message", ERRORS, ids=[m[:40] for _, m in ERRORS])
def test_errors_are_one_sentence_and_exit_2(bad_files, capsys, argv, message):
    if "parquet" in " ".join(argv):
        pytest.importorskip("pyarrow")
    before = files()
    status, _, err = run(capsys, *argv, *(["-q"] if argv[0] == "train" else []))
    assert status == 2
    lines = [line for line in err.splitlines() if not line.startswith("read ")]
    assert lines == [lines[0]] and lines[0].startswith(f"fastgd {argv[0]}: error: ")
    assert message in lines[0] and lines[0].isprintable()
    assert files() == before  # a failed command writes nothing and changes nothing


def files():
    return {p.name: p.read_bytes() for p in pathlib.Path().iterdir() if p.is_file()}


@pytest.mark.parametrize("argv, message", [
    (["train", "houses.csv", "--target", "price", "--epochs", "0"],
     "argument --epochs: takes a whole number > 0, got '0'"),
    (["train", "houses.csv", "--target", "price", "--batch-size", "many"],
     "argument --batch-size: takes a whole number > 0 or full, got 'many'"),
    (["train", "houses.csv", "--target", "price", "--learning-rate", "-1"],
     "argument --learning-rate: takes a number > 0 or auto, got '-1'"),
    (["train", "houses.csv", "--target", "price", "--test-fraction", "1"],
     "argument --test-fraction: takes a number in [0, 1), got '1'"),
    (["train", "houses.csv", "--target", "price", "--seed", "-1"],
     "argument --seed: takes a whole number from 0 to 2**32 - 1, got '-1'"),
    (["train", "houses.csv", "--target", "price", "--alpha", "nan"],
     "argument --alpha: takes a number >= 0, got 'nan'"),
    (["train", "houses.csv", "--target", "price", "--loss", "svm"],
     "argument --loss: invalid choice: 'svm'"),
    (["bench", "--repeats", "0"], "argument --repeats: takes a whole number > 0, got '0'"),
    (["fit"], "invalid choice: 'fit'"),
])
def test_bad_options_are_usage_errors(data, capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: fastgd") and message in err and "Traceback" not in err


def test_a_real_process(data):
    """`python -m fastgd` end to end: exit statuses, no traceback, a closed pipe."""
    def fastgd_(*argv, **kw):
        return subprocess.run([sys.executable, "-m", "fastgd", *argv], capture_output=True,
                              text=True, **kw)

    assert fastgd_("--version").stdout.startswith("fastgd ")
    done = fastgd_("train", "houses.csv", "--target", "cost", "-q")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("fastgd train: error: data file 'houses.csv' has no column")
    houses(40_000).to_csv("big.csv", index=False)
    assert fastgd_("train", "big.csv", "--target", "price", "--features", "size", "-q",
                   "-o", "m.fastgd").returncode == 0
    # `fastgd predict ... | head -1`: the reader goes away; exit 1 quietly, as Python advises
    reader = subprocess.Popen([sys.executable, "-m", "fastgd", "predict", "m.fastgd",
                               "big.csv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reader.stdout.readline() == b"prediction\n"
    reader.stdout.close()
    assert reader.wait(timeout=60) == 1
    assert b"Traceback" not in reader.stderr.read()


def test_a_class_of_one_row_still_trains_and_saves(data, capsys):
    """Stratifying is impossible: the split says so, the model is saved, and a log-loss
    over test rows of a class never trained on is undefined, not an error."""
    labels = ["x", "y"] * 10 + ["z"]
    pd.DataFrame({"a": np.arange(21.0), "t": labels}).to_csv("rare.csv", index=False)
    for seed in range(10):  # some seed puts the one "z" row among the test rows
        status, out, err = run(capsys, "train", "rare.csv", "--target", "t", "--seed", seed,
                               "--test-fraction", 0.25, "-o", "rare.fastgd", "-q")
        assert status == 0, err
        assert "class 'z' has a single row, so the test rows are drawn without" in err
        assert pathlib.Path("rare.fastgd").exists()
        if "z" not in fastgd.load("rare.fastgd").classes_:
            assert "  log-loss    undefined" in out
            break
    else:
        pytest.fail("no seed put the rare class in the test rows")


def test_tsv_is_the_file_suffix_not_a_directory_name(data, capsys):
    pathlib.Path("old.tsv").mkdir()
    houses().to_csv("old.tsv/houses.csv", index=False)
    status, _, err = run(capsys, "train", "old.tsv/houses.csv", "--target", "price",
                         "--features", "size", "-o", "m.fastgd", "-q")
    assert status == 0, err
    run(capsys, "predict", "m.fastgd", "houses.csv", "-o", "old.tsv/p.csv")
    assert pathlib.Path("old.tsv/p.csv").read_text().startswith("prediction\n")
    run(capsys, "predict", "m.fastgd", "houses.csv", "--keep", "city", "-o", "p.tsv.gz")
    assert pd.read_csv("p.tsv.gz", sep="\t").columns.tolist() == ["city", "prediction"]


def test_predict_npy_keeps_text_columns(data, capsys):
    run(capsys, "train", "houses.csv", "--target", "expensive", "--features", "size",
        "-o", "c.fastgd", "-q")
    assert run(capsys, "predict", "c.fastgd", "houses.csv", "--keep", "city", "-o",
               "p.npy")[0] == 0
    written = np.load("p.npy", allow_pickle=False)
    assert written.dtype.names == ("city", "prediction")
    assert written["city"].tolist() == houses()["city"].tolist()
    assert set(written["prediction"].tolist()) <= {"no", "yes"}


def test_missing_extras_are_named(data, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.model_selection", None)
    status, _, err = run(capsys, "train", "houses.csv", "--target", "price", "--features",
                         "size", "-q")
    assert status == 2
    assert err.splitlines()[-1].endswith("the command line needs pip install 'fastgd[cli]'")


def test_train_checkpoints_and_resumes(data, capsys):
    """A run stopped after its epoch-4 checkpoint, resumed with the same command line plus
    --resume, ends with the model of a run never stopped."""
    houses(3000).to_csv("houses.csv", index=False)
    common = ["train", "houses.csv", "--target", "price", "--features", "size,rooms,age",
              "--optimizer", "adam", "--batch-size", "64", "--learning-rate", "0.01",
              "--epochs", "12", "-q"]
    assert run(capsys, *common, "-o", "whole.fastgd")[0] == 0
    assert run(capsys, *common, "--epochs", "4", "--checkpoint", "run.ckpt",
               "--checkpoint-every", "2")[0] == 0
    assert fastgd.load("run.ckpt").n_iter_ == 4
    status, out, err = run(capsys, *common, "--checkpoint", "run.ckpt", "--resume", "-o",
                           "resumed.fastgd")
    assert status == 0, err
    resumed, whole = fastgd.load("resumed.fastgd"), fastgd.load("whole.fastgd")
    np.testing.assert_array_equal(resumed.coef_, whole.coef_)
    assert resumed.n_iter_ == 12
    status, _, err = run(capsys, *common, "--resume")
    assert status == 2 and "--resume goes on from --checkpoint FILE, which must exist" in err


# ---- sparse data files --------------------------------------------------------------------

def sparse_data(n=600, d=300, seed=0):
    sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(seed)
    X = sparse.random(n, d, density=0.05, format="csr", random_state=seed)
    y = (X @ rng.normal(size=d) > 0).astype(np.float64)
    return X, y


def test_svmlight_train_predict_evaluate(data, capsys):
    """An svmlight file as dump_svmlight_file writes it trains the model X and y in memory
    train, never densified; predict and evaluate read the same format."""
    from sklearn.datasets import dump_svmlight_file
    X, y = sparse_data()
    dump_svmlight_file(X, y, "train.svm")
    status, out, err = run(capsys, "train", "train.svm", "-o", "m.fastgd", "--test-fraction",
                           "0", "-q")
    assert status == 0, err
    assert "300 sparse columns" in out and "stored entries (sparse)" in out
    model = fastgd.load("m.fastgd")
    expected = fastgd.GDClassifier(random_state=0).fit(X, y)
    np.testing.assert_allclose(model.coef_, expected.coef_, rtol=1e-10)
    status, _, err = run(capsys, "predict", "m.fastgd", "train.svm", "-o", "p.csv", "--proba")
    assert status == 0, err
    written = pd.read_csv("p.csv")
    np.testing.assert_array_equal(written["prediction"], expected.predict(X))
    np.testing.assert_allclose(written["proba_1.0"], expected.predict_proba(X)[:, 1],
                               rtol=1e-12)
    status, out, err = run(capsys, "evaluate", "m.fastgd", "train.svm", "--json", "e.json")
    assert status == 0, err
    scores = json.loads(pathlib.Path("e.json").read_text())["metrics"]
    assert scores["accuracy"] == pytest.approx(expected.score(X, y))


def test_sparse_npz_with_a_target_file(data, capsys):
    sparse = pytest.importorskip("scipy.sparse")
    X, y = sparse_data()
    sparse.save_npz("X.npz", X)
    np.save("y.npy", y)
    status, out, err = run(capsys, "train", "X.npz", "--target-file", "y.npy", "-o",
                           "m.fastgd", "--test-fraction", "0.25", "-q")
    assert status == 0, err
    assert "task: classification" in out
    status, _, err = run(capsys, "predict", "m.fastgd", "X.npz", "-o", "p.npy")
    assert status == 0, err
    assert len(np.load("p.npy")) == X.shape[0]
    pd.DataFrame({"a": y, "b": y}).to_csv("two.csv", index=False)
    for argv, message in [
            (["train", "X.npz", "-q"], "give its targets with --target-file"),
            (["train", "X.npz", "--target", "y"], "--target names a column of a table"),
            (["train", "X.npz", "--target-file", "two.csv"], "must hold one column"),
            (["predict", "m.fastgd", "X.npz", "--keep", "id"], "--keep copies columns"),
            (["train", "houses.csv"], "--target COL names the column to predict")]:
        status, _, err = run(capsys, *argv)
        assert status == 2 and message in err, (argv, err)
    pathlib.Path("bad.svm").write_text("1 0:1.5 7:x\n")
    status, _, err = run(capsys, "train", "bad.svm")
    assert status == 2 and "cannot be read as sparse data" in err
    # files whose indices scipy would trust: checked before any split or conversion
    bad = sparse.csc_matrix((np.ones(2), np.array([0, 1]), np.array([0, 2])), shape=(3, 1))
    bad.indices = np.array([0, 10**6], dtype=np.int32)
    sparse.save_npz("bad_csc.npz", bad, compressed=False)
    bad = sparse.csr_matrix((np.ones(3), np.array([0, 0, 0]), np.array([0, 1, 2, 3])),
                            shape=(3, 1))
    bad.indptr = np.array([0, 3, 1, 3], dtype=np.int32)
    sparse.save_npz("bad_csr.npz", bad, compressed=False)
    np.save("y3.npy", np.arange(3.0))
    for name, message in (("bad_csc.npz", "(CSC) is malformed"),
                          ("bad_csr.npz", "indptr decreases")):
        status, _, err = run(capsys, "train", name, "--target-file", "y3.npy")
        assert status == 2 and "cannot be read as sparse data" in err and message in err, err
    pathlib.Path("broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    status, _, err = run(capsys, "train", "broken.npz", "--target", "x")
    assert status == 2 and "broken.npz" in err, err
    # labels with a missing value, targets of a table, a target file overwritten
    pd.DataFrame({"label": ["a", None] * 300}).to_csv("labels.csv", index=False)
    for argv, message in [
            (["train", "X.npz", "--target-file", "labels.csv"], "missing"),
            (["train", "houses.csv", "--target", "price", "--target-file", "y.npy"],
             "--target-file gives the targets of sparse data"),
            (["train", "X.npz", "--target-file", "y.npy", "--json", "y.npy"], "y.npy")]:
        status, _, err = run(capsys, *argv)
        assert status == 2 and message in err, (argv, err)


# ---- tables with text and categorical columns: one-hot encoded, sparse ------------------

def shops(n=3000, seed=2):
    """Numbers, a text column (one level missing), a category, a boolean and a label."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"size": rng.normal(size=n),
                          "city": rng.choice(["paris", "lyon", "nice"], n),
                          "brand": pd.Categorical(rng.choice([f"b{i}" for i in range(30)], n)),
                          "open": rng.random(n) < 0.5})
    score = (table["size"] + 2 * (table["city"] == "lyon") - 3 * (table["brand"] == "b7")
             + table["open"] + rng.normal(0, 0.3, n))
    table["busy"] = np.where(score > 0.8, "yes", "no")
    return table


def test_text_and_categorical_columns_are_one_hot_encoded(tmp_path, capsys, monkeypatch):
    """train one-hot encodes the text, category and boolean columns (levels sorted, saved
    with the model); predict and evaluate encode new rows the same way, an unseen level
    as none; the model is what GDClassifier fits on OneHotEncoder's matrix."""
    from sklearn.preprocessing import OneHotEncoder
    import scipy.sparse as sp

    monkeypatch.chdir(tmp_path)
    table = shops()
    table.to_parquet("shops.parquet")
    status, out, err = run(capsys, "train", "shops.parquet", "--target", "busy",
                           "--test-fraction", "0", "-o", "busy.fastgd")
    assert status == 0, err
    assert ("encoded 3 text or categorical columns (city, brand, open) as 35 indicator "
            "columns, one a level: 36 sparse features") in out
    model = fastgd.load("busy.fastgd")
    assert list(model.input_features_) == ["size", "city", "brand", "open"]
    assert list(model.categories_[:3]) == ["lyon", "nice", "paris"]
    # scikit-learn's encoding of the same columns, in the same order
    encoder = OneHotEncoder(categories=[sorted(table[c].astype(str).unique())
                                        for c in ("city", "brand", "open")],
                            handle_unknown="ignore")
    def encoded(frame):
        return sp.hstack([frame[["size"]].to_numpy(), encoder.fit_transform(
            frame[["city", "brand", "open"]].astype(str))]).tocsr()
    X = encoded(table)
    want = fastgd.GDClassifier(random_state=0).fit(X, table["busy"])
    np.testing.assert_allclose(model.coef_, want.coef_, rtol=1e-6, atol=1e-9)
    # new rows: an unseen level, a missing number
    new = table.head(50).copy()
    new.loc[0, "city"] = "brest"
    new["city"] = new["city"].astype(object)
    new.loc[1, "size"] = np.nan
    new.to_csv("new.csv", index=False)
    status, _, err = run(capsys, "predict", "busy.fastgd", "new.csv", "-o", "p.csv")
    assert status == 2 and "column 'size' of data file 'new.csv' has 1 missing" in err
    assert "give --missing zero" in err
    status, _, err = run(capsys, "predict", "busy.fastgd", "new.csv", "-o", "p.csv",
                         "--proba", "--missing", "zero")
    assert status == 0, err
    assert "column 'city': 1 row holds a level not seen in training (encoded as none)" in err
    filled = new.assign(size=new["size"].fillna(0.0))
    X_new = encoded(filled)  # brest: no city (handle_unknown="ignore")
    assert X_new[0, 1:4].nnz == 0
    got = pd.read_csv("p.csv")
    np.testing.assert_allclose(got["proba_yes"], model.predict_proba(X_new)[:, 1],
                               rtol=1e-12)
    status, out, err = run(capsys, "evaluate", "busy.fastgd", "shops.parquet", "--target",
                           "busy")
    assert status == 0, err
    accuracy = float(out.split("accuracy")[1].split()[0])
    assert accuracy == pytest.approx((want.predict(X) == table["busy"]).mean(), abs=1e-6)


def test_missing_values_follow_the_policy(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = shops(400)
    table["city"] = table["city"].astype(object)
    table.loc[3, "city"] = None
    table.loc[7, "size"] = np.nan
    table.to_csv("holes.csv", index=False)
    status, _, err = run(capsys, "train", "holes.csv", "--target", "busy")
    assert status == 2
    assert ("column 'size' of data file 'holes.csv' has 1 missing or infinite value (the "
            "first in data row 8); fill or drop them first, or give --missing zero") in err
    status, _, err = run(capsys, "train", "holes.csv", "--target", "busy", "--features",
                         "city,open")
    assert status == 2 and "column 'city' of data file 'holes.csv' has 1 missing value" in err
    status, out, err = run(capsys, "train", "holes.csv", "--target", "busy", "--missing",
                           "zero", "-o", "m.fastgd")
    assert status == 0, err
    table.loc[9, "size"] = np.inf
    table.to_csv("inf.csv", index=False)
    status, _, err = run(capsys, "train", "inf.csv", "--target", "busy", "--missing", "zero")
    assert status == 2 and "has 1 infinite value (the first in data row 10)" in err
    # numbers only: --missing zero fills them too
    status, _, err = run(capsys, "train", "holes.csv", "--target", "busy", "--features",
                         "size", "--missing", "zero")
    assert status == 0, err


def test_a_model_file_with_a_broken_encoding_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shops(300).to_csv("shops.csv", index=False)
    assert run(capsys, "train", "shops.csv", "--target", "busy", "-o", "m.fastgd")[0] == 0
    model = fastgd.load("m.fastgd")
    model.category_of_ = model.category_of_ + 7
    model.save("bad.fastgd")
    with pytest.raises(ValueError, match="the table's encoding .* does not make the model's "
                       "features"):
        fastgd.load("bad.fastgd")


def test_levels_are_the_text_of_the_file(tmp_path, capsys, monkeypatch):
    """A level is the text in the file, whatever type pandas would guess for the column
    of another file: "007" is not 7, "1" is not 1.0; a column with no value at all
    (--missing zero) encodes as nothing, and the model still loads."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    n = 600
    table = pd.DataFrame({"zip": rng.choice(["007", "012", "x9"], n),
                          "grade": rng.choice(["1", "2", "x"], n),
                          "note": [None] * n, "size": rng.normal(size=n)})
    table["y"] = (3 * (table["zip"] == "007") - 2 * (table["grade"] == "2") + table["size"]
                  + rng.normal(0, 0.1, n))
    table.to_csv("train.csv", index=False)
    status, out, err = run(capsys, "train", "train.csv", "--target", "y", "--missing",
                           "zero", "-o", "m.fastgd", "--test-fraction", "0")
    assert status == 0, err
    model = fastgd.load("m.fastgd")  # note: read as numbers (NaN), zeros with --missing zero
    assert list(model.input_features_) == ["zip", "grade", "note", "size"]
    new = pd.DataFrame({"zip": ["007", "012"], "grade": ["1", None], "note": [None, None],
                        "size": [0.0, 0.0]})
    new.to_csv("new.csv", index=False)  # as numbers alone, pandas reads 7, 12 and 1.0
    status, _, err = run(capsys, "predict", "m.fastgd", "new.csv", "-o", "p.csv",
                         "--missing", "zero")
    assert status == 0 and "not seen in training" not in err, err
    got = pd.read_csv("p.csv")["prediction"].to_numpy()
    rows = table.groupby(["zip", "grade"])["y"].mean()
    assert got[0] == pytest.approx(rows[("007", "1")], abs=0.3)
    # a text column without a single value (Parquet keeps it text): encoded as nothing
    table.astype({"note": "string"}).to_parquet("train.parquet")
    status, _, err = run(capsys, "train", "train.parquet", "--target", "y", "--missing",
                         "zero", "-o", "m2.fastgd")
    assert status == 0, err
    assert list(fastgd.load("m2.fastgd").input_features_) == ["zip", "grade", "size"]


def test_a_malformed_encoding_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shops(300).to_csv("shops.csv", index=False)
    assert run(capsys, "train", "shops.csv", "--target", "busy", "-o", "m.fastgd")[0] == 0
    for name, broken in [("categories_", lambda m: np.where(m.categories_ == "nice", "lyon",
                                                            m.categories_).astype(object)),
                         ("category_of_", lambda m: m.category_of_[::-1].copy()),
                         ("input_features_", lambda m: np.array(
                             ["size", "size", "brand", "open"], dtype=object))]:
        model = fastgd.load("m.fastgd")
        setattr(model, name, broken(model))
        model.save("bad.fastgd")
        with pytest.raises(ValueError, match="does not make the model's features"):
            fastgd.load("bad.fastgd")
