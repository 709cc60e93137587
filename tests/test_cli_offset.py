"""`fastgd train --offset COLUMN`: a column of the table added to each row's raw output (the
log of its exposure, for the log-link losses), neither a feature nor a target, split with
the rows, kept in the model file (`offset_column_`, format version 3) so that `predict`
and `evaluate` add it too; in memory and streamed."""

import json
import zipfile

import numpy as np
import pytest
from conftest import run_cli as run
from numpy.testing import assert_allclose, assert_array_equal

import fastgd
from fastgd import _persist, _spill

pd = pytest.importorskip("pandas")
metrics = pytest.importorskip("sklearn.metrics")
FEATURES = ["a", "b", "c"]


def claims(n=3000, seed=0):
    """Claim counts over exposures of 0.1 to 3 years: Poisson with mean exposure e^(x w + b).
    """
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(rng.standard_normal((n, 3)), columns=FEATURES)
    exposure = rng.uniform(0.1, 3.0, n)
    table["log_exposure"] = np.log(exposure)
    table["claims"] = rng.poisson(exposure * np.exp(table[FEATURES] @ [0.3, -0.2, 0.1] - 1.0))
    return table


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    claims().to_csv("claims.csv", index=False)
    return tmp_path


def ok(capsys, *argv):
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    return out, err


def regression_metrics(y, predicted):
    """The metrics the command line reports for --loss poisson."""
    return {"rmse": np.sqrt(metrics.mean_squared_error(y, predicted)),
            "mae": metrics.mean_absolute_error(y, predicted),
            "r2": metrics.r2_score(y, predicted),
            "deviance": metrics.mean_tweedie_deviance(y, predicted, power=1),
            "d2": metrics.d2_tweedie_score(y, predicted, power=1)}


def assert_metrics(reported: dict, y, predicted):
    expected = regression_metrics(y, predicted)
    assert set(reported) == set(expected)
    for key, value in expected.items():
        assert_allclose(reported[key], value, rtol=1e-9, err_msg=key)


@pytest.mark.parametrize("fraction", [0, 0.25])
def test_train_fits_what_python_fits_with_the_offset_and_tests_with_it(data, capsys,
                                                                         fraction):
    """The model is GDRegressor(loss="poisson").fit(X, y, offset=...) on the training rows,
    and the metrics are those of predict(X_test, offset_test) on the held-out rows."""
    from sklearn.model_selection import train_test_split

    out, _ = ok(capsys, "train", "claims.csv", "--target", "claims", "--loss", "poisson",
                "--offset", "log_exposure", "--test-fraction", fraction, "--seed", 3,
                "-o", "m.fastgd", "--json", "m.json", "-q")
    assert "features: 3 columns (a, b, c)" in out
    assert "offset: column 'log_exposure', added to each row's raw output" in out
    table = claims()
    X, y, offset = table[FEATURES], table["claims"].to_numpy(), table["log_exposure"]
    if fraction:
        X, X_test, y, y_test, offset, offset_test = train_test_split(
            X, y, offset.to_numpy(), test_size=fraction, random_state=3)
    else:
        X_test, y_test, offset_test = X, y, offset.to_numpy()
    python = fastgd.GDRegressor(loss="poisson", random_state=3).fit(X, y, offset=offset)
    model = fastgd.load("m.fastgd")
    assert model.offset_column_ == "log_exposure"
    assert list(model.feature_names_in_) == FEATURES  # the offset is no feature
    assert_allclose(model.coef_, python.coef_, rtol=1e-12)
    assert_allclose(model.intercept_, python.intercept_, rtol=1e-12)
    assert abs(model.intercept_ + 1.0) < 0.1  # the rate a year, not the count
    assert_metrics(json.load(open("m.json"))["metrics"], y_test,
                   python.predict(X_test, offset=offset_test))


def test_predict_and_evaluate_add_the_column_the_model_was_trained_with(data, capsys):
    """No option needed: the model file names its offset column; predictions scale with
    the exposure; evaluate's metrics are those of the predictions with the offset."""
    ok(capsys, "train", "claims.csv", "--target", "claims", "--loss", "poisson", "--offset",
       "log_exposure", "-o", "m.fastgd", "-q")
    model, table = fastgd.load("m.fastgd"), claims(500, seed=1)
    table.to_csv("new.csv", index=False)
    table.assign(log_exposure=table["log_exposure"] + np.log(2)).to_csv("twice.csv",
                                                                       index=False)
    _, err = ok(capsys, "predict", "m.fastgd", "new.csv", "-o", "p.csv")
    assert "offset: column 'log_exposure' (the model's), added to each row's raw output" in err
    ok(capsys, "predict", "m.fastgd", "twice.csv", "-o", "twice_p.csv")
    predicted = pd.read_csv("p.csv")["prediction"].to_numpy()
    expected = model.predict(table[FEATURES], offset=table["log_exposure"])
    assert_allclose(predicted, expected, rtol=1e-12)
    assert_allclose(pd.read_csv("twice_p.csv")["prediction"], 2 * predicted, rtol=1e-12)
    assert not np.allclose(predicted, model.predict(table[FEATURES]))  # without: another

    ok(capsys, "evaluate", "m.fastgd", "new.csv", "--target", "claims", "--json", "e.json")
    assert_metrics(json.load(open("e.json"))["metrics"], table["claims"], expected)


def test_the_offset_option_of_predict_and_evaluate_names_the_column(data, capsys):
    """--offset COL names the column where DATA calls it otherwise, and gives one to a
    model fitted in Python with offset= (whose file cannot know it)."""
    ok(capsys, "train", "claims.csv", "--target", "claims", "--loss", "poisson", "--offset",
       "log_exposure", "-o", "m.fastgd", "-q")
    table = claims(500, seed=1)
    table.rename(columns={"log_exposure": "years"}).to_csv("renamed.csv", index=False)
    status, _, err = run(capsys, "predict", "m.fastgd", "renamed.csv")
    assert status == 2 and "data file 'renamed.csv' has no column 'log_exposure'" in err
    _, err = ok(capsys, "predict", "m.fastgd", "renamed.csv", "--offset", "years", "-o",
                "p.csv")
    assert "column 'years' (--offset)" in err and "trained with 'log_exposure'" in err
    model = fastgd.load("m.fastgd")
    expected = model.predict(table[FEATURES], offset=table["log_exposure"])
    assert_allclose(pd.read_csv("p.csv")["prediction"], expected, rtol=1e-12)

    python = fastgd.GDRegressor(loss="poisson").fit(table[FEATURES], table["claims"],
                                                    offset=table["log_exposure"])
    python.save("python.fastgd")
    ok(capsys, "evaluate", "python.fastgd", "renamed.csv", "--target", "claims", "--offset",
       "years", "--json", "e.json")
    assert_metrics(json.load(open("e.json"))["metrics"], table["claims"],
                   python.predict(table[FEATURES], offset=table["log_exposure"]))


@pytest.mark.parametrize("name", ["claims.csv", "claims.parquet"])
def test_streamed_rows_carry_the_offset_as_in_memory(data, capsys, monkeypatch, name):
    """--stream reads the offset column whole beside the targets and splits it by the same
    mask as the rows: with --test-fraction 0 the in-memory model to the last bit; held-out
    metrics of the rows spill drew, with their offsets; predict and evaluate by chunks."""
    pytest.importorskip("pyarrow")
    monkeypatch.setattr(_spill, "CHUNK_ROWS", 256)  # a file of several chunks
    table = claims()
    table.to_parquet("claims.parquet")
    train = ["train", name, "--target", "claims", "--loss", "poisson", "--offset",
             "log_exposure", "-q"]
    ok(capsys, *train, "--stream", "--test-fraction", 0, "-o", "s.fastgd")
    ok(capsys, *train, "--no-stream", "--test-fraction", 0, "-o", "m.fastgd")
    streamed, in_memory = fastgd.load("s.fastgd"), fastgd.load("m.fastgd")
    assert_array_equal(streamed.coef_, in_memory.coef_)
    assert_array_equal(streamed.intercept_, in_memory.intercept_)
    assert streamed.offset_column_ == "log_exposure"

    ok(capsys, *train, "--stream", "--test-fraction", 0.25, "--seed", 5, "--json", "s.json",
       "-o", "s.fastgd")
    test = np.random.default_rng(5).random(len(table)) < 0.25  # spill's draw, chunk by chunk
    model = fastgd.load("s.fastgd")
    assert_metrics(json.load(open("s.json"))["metrics"], table["claims"][test],
                   model.predict(table[FEATURES][test], offset=table["log_exposure"][test]))

    for stream in ("--stream", "--no-stream"):
        ok(capsys, "predict", "s.fastgd", name, stream, "-o", f"p{stream}.csv")
        ok(capsys, "evaluate", "s.fastgd", name, "--target", "claims", stream, "--json",
           f"e{stream}.json")
    assert_array_equal(pd.read_csv("p--stream.csv"), pd.read_csv("p--no-stream.csv"))
    assert_allclose(pd.read_csv("p--stream.csv")["prediction"],
                    model.predict(table[FEATURES], offset=table["log_exposure"]), rtol=1e-12)
    assert json.load(open("e--stream.json")) == json.load(open("e--no-stream.json"))


OFFSET_ERRORS = [
    (["train", "claims.csv", "--target", "claims", "--offset", "exposure"],
     "data file 'claims.csv' has no column 'exposure'"),
    (["train", "claims.csv", "--target", "claims", "--offset", "exposure", "--stream"],
     "data file 'claims.csv' has no column 'exposure'"),
    (["train", "claims.csv", "--target", "many", "--offset", "log_exposure",
      "--features", "a,b"], "--offset is for regression: a classifier's loss takes no offset"),
    (["train", "claims.csv", "--target", "many", "--offset", "log_exposure",
      "--features", "a,b", "--stream"], "--offset is for regression"),
    (["train", "holes.csv", "--target", "claims", "--offset", "log_exposure"],
     "column 'log_exposure' of data file 'holes.csv' has 1 missing or infinite value (the "
     "first in data row 3)"),
    (["train", "holes.csv", "--target", "claims", "--offset", "log_exposure", "--stream",
      "--missing", "zero"],  # --missing is the features' policy: an offset has no default
     "column 'log_exposure' of data file 'holes.csv' has 1 missing or infinite value"),
    (["train", "text.csv", "--target", "claims", "--offset", "log_exposure"],
     "offset column 'log_exposure' of data file 'text.csv' is not numeric"),
    (["train", "claims.csv", "--target", "claims", "--offset", "a", "--features", "a,b"],
     "column 'a' is both a feature and the offset"),
    (["train", "claims.csv", "--target", "claims", "--offset", "claims"],
     "column 'claims' is both the target and the offset"),
    (["train", "claims.svm", "--offset", "log_exposure"],
     "--offset names a column of a table; claims.svm is sparse data"),
    (["train", "claims.svm", "--offset", "log_exposure", "--stream"],
     "--offset names a column of a table; claims.svm is sparse data"),
    (["predict", "m.fastgd", "lacking.csv"],
     "data file 'lacking.csv' has no column 'log_exposure'"),
    (["predict", "m.fastgd", "lacking.csv", "--stream"],
     "data file 'lacking.csv' has no column 'log_exposure'"),
    (["evaluate", "m.fastgd", "holes.csv", "--target", "claims"],
     "column 'log_exposure' of data file 'holes.csv' has 1 missing or infinite value"),
    (["predict", "m.fastgd", "claims.svm"], "the model adds column 'log_exposure' (fastgd "
     "train --offset), a column of a table; claims.svm is sparse data"),
    (["predict", "m.fastgd", "claims.csv", "--offset", "b"],
     "--offset 'b' is one of the model's features"),
    (["predict", "c.fastgd", "claims.csv", "--offset", "log_exposure"],
     "--offset is for regressors; this model is a classifier"),
]


@pytest.fixture
def bad_files(data, capsys):
    from sklearn.datasets import dump_svmlight_file

    table = claims(200)
    table["many"] = table["claims"] > 0
    table.to_csv("claims.csv", index=False)
    table.loc[2, "log_exposure"] = np.nan
    table.to_csv("holes.csv", index=False)
    table.assign(log_exposure="one year").to_csv("text.csv", index=False)
    table.drop(columns="log_exposure").to_csv("lacking.csv", index=False)
    dump_svmlight_file(table[FEATURES].to_numpy(), table["claims"].to_numpy(), "claims.svm")
    ok(capsys, "train", "claims.csv", "--target", "claims", "--features", "a,b,c",
       "--loss", "poisson", "--offset", "log_exposure", "-o", "m.fastgd", "-q")
    ok(capsys, "train", "claims.csv", "--target", "many", "--features", "a,b,c", "-o",
       "c.fastgd", "-q")


@pytest.mark.parametrize("argv, message", OFFSET_ERRORS,
                         ids=[" ".join(a[:1] + a[3:6]) for a, _ in OFFSET_ERRORS])
def test_offset_errors_are_one_sentence_and_exit_2(bad_files, capsys, argv, message):
    if "--stream" in argv or argv[0] != "train":
        pytest.importorskip("pyarrow")
    status, _, err = run(capsys, *argv, *(["-q"] if argv[0] == "train" else []))
    assert status == 2
    lines = [line for line in err.splitlines() if not line.startswith(("read ", "offset: ",
                                                                       "streaming "))]
    assert lines == [lines[0]] and lines[0].startswith(f"fastgd {argv[0]}: error: ")
    assert message in lines[0], lines[0]


def model_file(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("fastgd.json"))


def rewrite(path, edit) -> None:
    """The model file at `path` with its table of contents edited by edit(meta)."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(entries["fastgd.json"])
    edit(meta)
    entries["fastgd.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def test_the_model_file_keeps_the_offset_column_in_format_version_3(tmp_path, monkeypatch):
    """A model with an offset column is format version 3, which an earlier fastgd refuses
    (its LinearModel, which `fastgd serve` loads, would predict without the offset); a
    model without one stays version 1 and loads as before. LinearModel adds the offset."""
    table = claims(500)
    model = fastgd.GDRegressor(loss="poisson").fit(table[FEATURES], table["claims"],
                                                   offset=table["log_exposure"])
    model.save(tmp_path / "plain.fastgd")
    model.offset_column_ = "log_exposure"
    model.save(tmp_path / "offset.fastgd")
    assert model_file(tmp_path / "plain.fastgd")["version"] == 1
    assert model_file(tmp_path / "offset.fastgd")["version"] == 3
    assert not hasattr(fastgd.load(tmp_path / "plain.fastgd"), "offset_column_")
    assert fastgd.LinearModel.load(tmp_path / "plain.fastgd").offset_column_ is None
    linear = fastgd.LinearModel.load(tmp_path / "offset.fastgd")
    assert linear.offset_column_ == fastgd.load(tmp_path / "offset.fastgd").offset_column_
    X, offset = table[FEATURES].to_numpy(), table["log_exposure"].to_numpy()
    assert_allclose(linear.predict(X, offset=offset),
                    model.predict(table[FEATURES], offset=offset), rtol=1e-12)
    with pytest.raises(ValueError, match="offset must be 500 finite numbers"):
        linear.predict(X, offset=offset[:10])

    monkeypatch.setattr(_persist, "VERSION", 2)  # as the fastgd before offsets reads
    with pytest.raises(ValueError, match="format version 3, written by a newer fastgd"):
        fastgd.LinearModel.load(tmp_path / "offset.fastgd")
    fastgd.LinearModel.load(tmp_path / "plain.fastgd")


@pytest.mark.parametrize("edit, message", [
    (lambda meta: meta["values"].update(offset_column_="a"), "offset_column_ is not"),
    (lambda meta: meta["values"].update(offset_column_=7), "offset_column_ is not"),
    (lambda meta: meta["values"].update(offset_column_=""), "offset_column_ is not"),
])
def test_a_malformed_offset_column_is_refused(tmp_path, edit, message):
    table = claims(300)
    fastgd.GDRegressor(loss="poisson").fit(table[FEATURES], table["claims"]).save(
        tmp_path / "m.fastgd")
    rewrite(tmp_path / "m.fastgd", edit)
    for load in (fastgd.load, fastgd.LinearModel.load):
        with pytest.raises(ValueError, match=message):
            load(tmp_path / "m.fastgd")


def test_a_classifier_file_with_an_offset_column_is_refused(tmp_path):
    table = claims(300)
    fastgd.GDClassifier().fit(table[FEATURES], table["claims"] > 0).save(tmp_path / "c.fastgd")
    rewrite(tmp_path / "c.fastgd", lambda meta: meta["values"].update(
        offset_column_="log_exposure"))
    with pytest.raises(ValueError, match="unexpected attribute 'offset_column_'"):
        fastgd.load(tmp_path / "c.fastgd")
    with pytest.raises(ValueError, match="offset_column_ is not a regressor's column"):
        fastgd.LinearModel.load(tmp_path / "c.fastgd")


def test_export_says_the_graph_leaves_the_offset_out(data, capsys):
    pytest.importorskip("onnx")
    ok(capsys, "train", "claims.csv", "--target", "claims", "--loss", "poisson", "--offset",
       "log_exposure", "-o", "m.fastgd", "-q")
    out, _ = ok(capsys, "export", "m.fastgd", "-o", "m.onnx")
    assert "the graph leaves out the offset, column 'log_exposure'" in out
