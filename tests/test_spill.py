"""`fastgd train` on a table too large for memory: read by chunks into memory-mapped rows
on disk (fastgd/_spill.py), then trained as any memory map."""

import gzip
import re

import numpy as np
import pytest

import fastgd
from fastgd import _shuffling, _spill
from fastgd.cli import _frame, main

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")


def table(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    frame["y"] = X @ [1.0, 2.0, 3.0, 4.0] + 0.5 + 0.1 * rng.standard_normal(n)
    frame["label"] = np.where(frame["y"] > 0.5, "high", "low")
    return frame


def write(frame, name):
    if name.endswith(".npy"):
        np.save(name, frame[["a", "b", "c", "d", "y"]].to_numpy())
    elif name.endswith(".parquet"):
        frame.to_parquet(name)
    else:
        frame.to_csv(name, index=False)
    return name


@pytest.fixture
def small_chunks(tmp_path, monkeypatch):
    """Chunks of 256 rows: a file of several."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_spill, "CHUNK_ROWS", 256)
    return tmp_path


def train(capsys, *argv):
    status = main(["train", *map(str, argv), "-q"])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out, err


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "t.npy"])
def test_streamed_rows_train_the_model_the_table_in_memory_trains(small_chunks, capsys,
                                                                   name):
    write(table(), name)
    target, features = ("4", "0,1,2,3") if name.endswith(".npy") else ("y", "a,b,c,d")
    settings = ["--features", features, "--optimizer", "sgd", "--learning-rate", "0.02", "--batch-size", "32",
                "--epochs", "3", "--test-fraction", "0"]
    out, _ = train(capsys, name, "--target", target, "--stream", *settings, "-o", "s.fastgd")
    assert "streaming" in out and "last epoch's training loss" in out
    train(capsys, name, "--target", target, "--no-stream", *settings, "-o", "m.fastgd")
    streamed, in_memory = fastgd.load("s.fastgd"), fastgd.load("m.fastgd")
    np.testing.assert_array_equal(streamed.coef_, in_memory.coef_)
    np.testing.assert_array_equal(streamed.intercept_, in_memory.intercept_)
    assert not list(small_chunks.glob("fastgd-spill-*"))  # the rows on disk are removed


def test_streamed_split_holds_out_the_same_rows_every_run(small_chunks, capsys):
    write(table(), "t.csv")
    scores = [train(capsys, "t.csv", "--target", "label", "--features", "a,b,c,d",
                    "--stream", "--seed", "3")[0] for _ in range(2)]
    varies = re.compile(r"in [\d.]+ s \([\d.]+ M rows/s\)|fastgd-spill-\S+")  # times, dirs
    assert varies.sub("", scores[0]) == varies.sub("", scores[1])
    assert "task: classification" in scores[0]
    held_out = int(scores[0].split(" to train on, ")[1].split(" to test")[0].replace(",", ""))
    assert 450 < held_out < 750  # 20 % of 3,000 rows, drawn at random


def test_a_file_larger_than_a_quarter_of_memory_streams_by_itself(small_chunks, capsys,
                                                                   monkeypatch):
    write(table(), "t.parquet")
    monkeypatch.setattr(_shuffling, "available_memory",
                        lambda: 2 * (small_chunks / "t.parquet").stat().st_size)
    out, _ = train(capsys, "t.parquet", "--target", "y", "--features", "a,b,c,d")
    assert "over a quarter of the memory available" in out
    out, _ = train(capsys, "t.parquet", "--target", "y", "--features", "a,b,c,d",
                   "--no-stream")
    assert "streaming" not in out


def test_spilled_rows_are_memory_mapped_and_block_shuffled_when_large(small_chunks,
                                                                      monkeypatch):
    write(table(), "t.csv")
    spilled = _spill.spill("t.csv", ["a", "b", "c", "d"], 0.25, 0, "error", log=None)
    try:
        assert _shuffling.is_mapped(spilled.X_train) and _shuffling.is_mapped(spilled.X_test)
        assert len(spilled.X_train) + len(spilled.X_test) == 3000
        assert spilled.mask_test.sum() == len(spilled.X_test)
        rows = table()[["a", "b", "c", "d"]].to_numpy()
        np.testing.assert_array_equal(spilled.X_test, rows[spilled.mask_test])
        np.testing.assert_array_equal(spilled.X_train, rows[~spilled.mask_test])
        monkeypatch.setattr(_shuffling, "available_memory", lambda: 1000)
        assert _shuffling.shuffle_blocks(spilled.X_train, True) is not None
        # As the command line fits it: a DataFrame over the memory map, still block-shuffled.
        y = np.arange(len(spilled.X_train), dtype=float)
        kw = dict(batch_size=32, max_epochs=1, tol=None, learning_rate=1e-4, random_state=0)
        framed = fastgd.GDRegressor(**kw).fit(_frame(spilled.X_train, list("abcd")), y)
        by_blocks = fastgd.GDRegressor(shuffle="blocks", **kw).fit(spilled.X_train, y)
        by_rows = fastgd.GDRegressor(shuffle="rows", **kw).fit(spilled.X_train, y)
        np.testing.assert_array_equal(framed.coef_, by_blocks.coef_)
        assert not np.array_equal(framed.coef_, by_rows.coef_)
    finally:
        spilled.remove()
    assert not list(small_chunks.glob("fastgd-spill-*"))


def test_bad_values_in_a_late_chunk_name_their_row_in_the_file(small_chunks, capsys):
    frame = table()
    frame.loc[1000, "c"] = np.nan
    write(frame, "t.parquet")
    status = main(["train", "t.parquet", "--target", "y", "--features", "a,b,c,d",
                   "--stream", "-q"])
    err = capsys.readouterr().err
    assert status == 2
    assert "column 'c'" in err and "missing or infinite" in err and "data row 1001" in err
    assert not list(small_chunks.glob("fastgd-spill-*"))
    status = main(["train", "t.parquet", "--target", "y", "--features", "a,b,c,d",
                   "--stream", "-q", "--missing", "zero"])
    assert status == 0


def with_text(n=3000):
    """table() with a text column whose last level first appears in a late chunk, a
    number-like level ("007" stays text), a boolean column and a missing category."""
    frame = table(n)
    frame["city"] = np.where(frame["a"] > 0, "north", "007")
    frame.loc[2900:, "city"] = "late"
    frame["flag"] = frame["b"] > 1
    frame.loc[7, "city"] = None
    frame["y"] += np.where(frame["city"] == "north", 2.0, 0.0)
    return frame


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_text_columns_stream_one_hot_encoded_as_in_memory(small_chunks, capsys, name):
    write(with_text(), name)
    settings = ["--features", "a,b,city,flag", "--optimizer", "sgd", "--learning-rate", "0.02",
                "--batch-size", "32", "--epochs", "3", "--test-fraction", "0", "--missing",
                "zero"]
    out, _ = train(capsys, name, "--target", "y", "--stream", *settings, "-o", "s.fastgd")
    assert "encoded 2 text or categorical columns (city, flag)" in out
    train(capsys, name, "--target", "y", "--no-stream", *settings, "-o", "m.fastgd")
    streamed, in_memory = fastgd.load("s.fastgd"), fastgd.load("m.fastgd")
    assert list(streamed.categories_) == ["007", "late", "north", "False", "True"]
    np.testing.assert_array_equal(streamed.categories_, in_memory.categories_)
    np.testing.assert_array_equal(streamed.coef_, in_memory.coef_)
    np.testing.assert_array_equal(streamed.intercept_, in_memory.intercept_)
    # The streamed model keeps its encoding: predict encodes a table's rows the same way.
    assert main(["predict", "s.fastgd", name, "-o", "p.csv", "--missing", "zero"]) == 0
    assert main(["predict", "m.fastgd", name, "-o", "q.csv", "--missing", "zero"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv("p.csv"), pd.read_csv("q.csv"))
    assert not list(small_chunks.glob("fastgd-spill-*"))


def test_encoded_rows_spill_as_memory_mapped_csr_that_fit_without_a_copy(small_chunks,
                                                                          monkeypatch):
    from fastgd._encoding import Encoding
    from fastgd._sparse import as_csr

    frame = with_text()
    write(frame, "t.parquet")
    features = ["a", "city", "flag"]
    text = _spill.text_columns("t.parquet", features)
    assert text == ["city", "flag"]
    encoding = Encoding.of_levels(features, _spill.levels("t.parquet", features, text, None))
    spilled = _spill.spill("t.parquet", features, 0.25, 0, "zero", log=None, encoding=encoding)
    try:
        X = spilled.X_train
        assert X.format == "csr" and X.indices.dtype == X.indptr.dtype == np.int32
        assert all(_shuffling.is_mapped(a) for a in (X.data, X.indices, X.indptr))
        assert as_csr(X) is X  # fitted as it is on disk, not copied into memory
        whole = Encoding.learn(frame, features).encode(frame, "zero")
        np.testing.assert_array_equal(X.toarray(), whole[~spilled.mask_test].toarray())
        np.testing.assert_array_equal(spilled.X_test.toarray(),
                                      whole[spilled.mask_test].toarray())
        monkeypatch.setattr(_shuffling, "available_memory", lambda: 1000)
        assert _shuffling.shuffle_blocks(X, True) is not None
    finally:
        spilled.remove()


def test_a_missing_category_in_a_late_chunk_names_its_row_in_the_file(small_chunks, capsys):
    frame = with_text()
    frame.loc[7, "city"] = "north"
    frame.loc[1500, "city"] = None
    write(frame, "t.parquet")
    status = main(["train", "t.parquet", "--target", "y", "--features", "a,city",
                   "--stream", "-q"])
    err = capsys.readouterr().err
    assert status == 2 and "column 'city'" in err and "data row 1501" in err
    assert not list(small_chunks.glob("fastgd-spill-*"))


def test_a_csv_column_of_numbers_that_turns_to_text_stops_with_a_reason(small_chunks, capsys,
                                                                         monkeypatch):
    monkeypatch.setattr(_spill, "CSV_BLOCK_BYTES", 64)  # types inferred from 64 bytes
    with open("t.csv", "w") as f:
        f.write("y,a\n" + "1.5,2\n" * 50 + "3,x\n")
    status = main(["train", "t.csv", "--target", "y", "--stream", "-q"])
    err = capsys.readouterr().err
    assert status == 2 and "cannot be streamed" in err and "as numbers when they are" in err
    assert not list(small_chunks.glob("fastgd-spill-*"))


def test_missing_values_in_csv_are_what_pandas_reads_as_missing():
    pytest.importorskip("pandas._libs.parsers")
    from pandas._libs.parsers import STR_NA_VALUES

    assert set(_spill.NA_VALUES) == set(STR_NA_VALUES)


@pytest.mark.parametrize("name", ["t.svm", "t.svm.gz"])
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_svmlight_files_stream_to_the_model_read_in_memory_gives(small_chunks, capsys,
                                                                   monkeypatch, name, task):
    from sklearn.datasets import dump_svmlight_file

    pytest.importorskip("scipy")
    monkeypatch.setattr(_spill, "SVMLIGHT_BYTES", 1000)  # blocks that cut lines in two
    frame = table()
    X = frame[["a", "b", "c", "d"]].to_numpy(copy=True)
    X[np.abs(X) < 0.7] = 0.0  # sparse rows, some empty
    y = frame["y"].to_numpy() if task == "regression" else (frame["y"] > 0.5).astype(float)
    dump_svmlight_file(X, y, "t.svm", zero_based=True)
    if name.endswith(".gz"):
        with open("t.svm", "rb") as plain, gzip.open(name, "wb") as packed:
            packed.write(plain.read())
    settings = ["--optimizer", "sgd", "--learning-rate", "0.02", "--batch-size", "32",
                "--epochs", "3", "--test-fraction", "0"]
    out, _ = train(capsys, name, "--stream", *settings, "-o", "s.fastgd")
    assert "streaming" in out and f"task: {task}" in out
    train(capsys, name, "--no-stream", *settings, "-o", "m.fastgd")
    streamed, in_memory = fastgd.load("s.fastgd"), fastgd.load("m.fastgd")
    np.testing.assert_array_equal(streamed.coef_, in_memory.coef_)
    np.testing.assert_array_equal(streamed.intercept_, in_memory.intercept_)
    assert not list(small_chunks.glob("fastgd-spill-*"))


def test_a_bad_svmlight_line_or_a_table_option_stops_the_stream(small_chunks, capsys):
    with open("t.svm", "w") as f:
        f.write("1 0:1.5 2:3\n" * 100 + "0 1:x\n")
    assert main(["train", "t.svm", "--stream", "-q"]) == 2
    err = capsys.readouterr().err
    assert "'t.svm' cannot be read as sparse data" in err
    assert not list(small_chunks.glob("fastgd-spill-*"))
    assert main(["train", "t.svm", "--stream", "--target", "y", "-q"]) == 2
    assert "holds its targets" in capsys.readouterr().err
    for command in (["train", "missing.csv", "--target", "y"], ["train", "missing.svm"]):
        assert main([*command, "--stream"]) == 2
        assert "data file 'missing." in capsys.readouterr().err


def test_spill_dir_is_used_and_cleared(small_chunks, capsys, tmp_path):
    write(table(), "t.csv")
    spill_dir = tmp_path / "rows"
    spill_dir.mkdir()
    out, err = train(capsys, "t.csv", "--target", "y", "--features", "a,b,c,d", "--stream",
                     "--spill-dir", spill_dir)
    assert list(spill_dir.iterdir()) == []


def test_reading_a_parquet_file_by_chunks_keeps_one_row_group_at_a_time(tmp_path,
                                                                       monkeypatch):
    """pyarrow's pre-buffering kept every row group read until the file closed: a file
    larger than memory was killed for it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = [f"x{j}" for j in range(10)]
    path = tmp_path / "groups.parquet"
    rng = np.random.default_rng(0)
    with pq.ParquetWriter(path, pa.schema([(c, pa.float64()) for c in columns])) as writer:
        for _ in range(24):  # row groups of 8 MB
            writer.write_table(pa.table(list(rng.standard_normal((10, 100_000))),
                                        names=columns))
    group_bytes = 100_000 * 10 * 8
    monkeypatch.setattr(_spill, "CHUNK_ROWS", 50_000)
    held = []
    for chunk in _spill.chunks(path, columns):
        held.append(pa.total_allocated_bytes())
        del chunk
    # Measured: 30 MB throughout; pre-buffered, 52 MB growing to 250 MB.
    assert len(held) == 48 and max(held) < 5 * group_bytes


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "t.npy", "t.svm"])
def test_predict_and_evaluate_stream_what_they_read_whole(small_chunks, capsys, name):
    frame = with_text()
    if name.endswith(".svm"):
        from sklearn.datasets import dump_svmlight_file

        dump_svmlight_file(frame[["a", "b", "c"]].to_numpy(), frame["y"].to_numpy(), name,
                           zero_based=True)
        data, target, keep = [], [], []
    elif name.endswith(".npy"):  # unnamed columns: all but the target's
        write(frame, name)
        data, target, keep = ["--target", "4"], ["--target", "4"], ["--keep", "4"]
    else:  # a classifier of labels, with an encoded text column
        write(frame, name)
        data, target, keep = (["--target", "label", "--features", "a,b,city"],
                              ["--target", "label"], ["--keep", "label,city"])
    train(capsys, name, *data, "--epochs", "5", "--missing", "zero", "-o", "m.fastgd")
    for stream in ("--stream", "--no-stream"):
        assert main(["predict", "m.fastgd", name, *keep, "--missing", "zero", stream,
                     "-o", f"p{stream}.csv"]
                    + (["--proba"] if "label" in keep[1:2] else [])) == 0
        assert main(["evaluate", "m.fastgd", name, *target, "--missing", "zero", stream,
                     "--json", f"e{stream}.json"]) == 0
    err = capsys.readouterr().err
    assert "streaming" in err
    streamed, whole = pd.read_csv("p--stream.csv"), pd.read_csv("p--no-stream.csv")
    assert len(streamed) == 3000 and "prediction" in streamed
    assert "proba_high" in streamed if "label" in keep[1:2] else True
    pd.testing.assert_frame_equal(streamed, whole)
    with open("e--stream.json") as a, open("e--no-stream.json") as b:
        assert a.read() == b.read()


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_a_column_missing_from_a_stream_is_named_as_in_memory(small_chunks, capsys, name):
    """predict and evaluate by chunks check the columns they read before pyarrow does (its
    own error for a missing column is a traceback): the message of a file read whole."""
    write(table(), name)
    train(capsys, name, "--target", "y", "--features", "a,b,c,d", "-o", "m.fastgd")
    write(table().drop(columns="d"), "lacking" + name[1:])
    for argv in (["predict", "m.fastgd", "lacking" + name[1:]],
                 ["predict", "m.fastgd", name, "--keep", "id"],
                 ["evaluate", "m.fastgd", "lacking" + name[1:], "--target", "y"]):
        for stream in ("--stream", "--no-stream"):
            assert main([*argv, stream]) == 2
            err = capsys.readouterr().err.splitlines()[-1]
            assert err.startswith(f"fastgd {argv[0]}: error: data file ") and "has no column" in err
            assert ("'id'" if "--keep" in argv else "'d'") in err
