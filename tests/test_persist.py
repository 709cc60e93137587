"""model.save / fastgd.load: round trips, atomic writes, and refusal of anything else."""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
from conftest import make_problem
from numpy.testing import assert_array_equal
from sklearn.exceptions import NotFittedError

import fastgd
from fastgd import GDRegressor, _persist


def fitted(**kw):
    X, y, _ = make_problem(300, 4)
    return GDRegressor(max_epochs=20, tol=None, random_state=0, **kw).fit(X, y), X


def same_model(a, b, X):
    assert type(a) is type(b)
    assert a.get_params() == b.get_params()
    assert_array_equal(a.predict(X), b.predict(X))
    for name in ("coef_", "mean_", "scale_"):
        assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("intercept_", "n_iter_", "learning_rate_", "history_", "n_features_in_"):
        assert getattr(a, name) == getattr(b, name)


@pytest.mark.parametrize("kw", [{}, {"standardize": False},
                                {"optimizer": "adam", "learning_rate": 0.05,
                                 "batch_size": 32, "alpha": 0.01, "l1_ratio": 0.5}])
def test_round_trip(tmp_path, kw):
    model, X = fitted(**kw)
    path = tmp_path / "model.fastgd"  # a pathlib.Path; str works too
    model.save(path)
    loaded = fastgd.load(path)
    same_model(model, loaded, X)
    assert not hasattr(loaded, "feature_names_in_")
    assert loaded.score(X, X @ model.coef_ + model.intercept_) == 1.0
    loaded.fit(X, X[:, 0])  # a loaded model is an ordinary estimator


def test_round_trip_keeps_feature_names(tmp_path):
    X, y, _ = make_problem(100, 3)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = GDRegressor(max_epochs=5, tol=None).fit(frame, y)
    model.save(str(tmp_path / "m"))
    loaded = fastgd.load(str(tmp_path / "m"))
    assert_array_equal(loaded.feature_names_in_, ["a", "b", "c"])
    assert_array_equal(loaded.predict(frame), model.predict(frame))


def test_the_file_is_json_and_npy_only(tmp_path):
    model, _ = fitted()
    model.save(tmp_path / "m")
    with zipfile.ZipFile(tmp_path / "m") as archive:
        meta = json.loads(archive.read("fastgd.json"))
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
        assert sorted(archive.namelist()) == ["coef_.npy", "fastgd.json", "mean_.npy",
                                              "scale_.npy"]
    assert meta["format"] == "fastgd-model"
    assert meta["version"] == 1  # a plain model: what earlier versions read too
    assert meta["estimator"] == "GDRegressor"
    assert meta["arrays"]["coef_"] == {"dtype": "<f8", "shape": [4], "strings": False}


def test_saving_over_a_model_replaces_it(tmp_path):
    first, X = fitted()
    second, _ = fitted(optimizer="adam")
    path = tmp_path / "m"
    first.save(path)
    second.save(path)
    same_model(second, fastgd.load(path), X)
    assert os.listdir(tmp_path) == ["m"]


@pytest.mark.parametrize("fail_at", ["write", "rename"])
def test_an_interrupted_save_leaves_the_old_file(tmp_path, monkeypatch, fail_at):
    old, X = fitted()
    path = tmp_path / "m"
    old.save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    target = (np.lib.format, "write_array") if fail_at == "write" else (os, "replace")
    monkeypatch.setattr(*target, boom)
    new, _ = fitted(optimizer="adam")
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m"]  # no temporary file left behind
    same_model(old, fastgd.load(path), X)


def test_unfitted_or_unsavable_models_are_refused(tmp_path):
    with pytest.raises(NotFittedError):
        GDRegressor().save(tmp_path / "m")
    model, _ = fitted()
    model.set_params(random_state=np.random.RandomState(0))
    with pytest.raises(ValueError, match="must be None, numbers or strings .*set random_state"):
        model.save(tmp_path / "m")
    assert os.listdir(tmp_path) == []


def test_a_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastgd.load(tmp_path / "nothing")


def archive_bytes(entries: dict, compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def saved_entries(tmp_path) -> dict:
    model, _ = fitted()
    model.save(tmp_path / "good")
    with zipfile.ZipFile(tmp_path / "good") as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def edit_meta(entries, **changes):
    meta = json.loads(entries["fastgd.json"])
    for key, value in changes.items():
        if callable(value):
            value(meta)
        else:
            meta[key] = value
    return {**entries, "fastgd.json": json.dumps(meta)}


HOSTILE = {
    "empty file": lambda e: b"",
    "random bytes": lambda e: os.urandom(4000),
    "a pickle": lambda e: pickle.dumps({"coef_": [1.0]}),
    "no table of contents": lambda e: archive_bytes({k: v for k, v in e.items()
                                                     if k != "fastgd.json"}),
    "contents not JSON": lambda e: archive_bytes({**e, "fastgd.json": b"{not json"}),
    "contents a list": lambda e: archive_bytes({**e, "fastgd.json": b"[1, 2]"}),
    "foreign format": lambda e: archive_bytes(edit_meta(e, format="other")),
    "no version": lambda e: archive_bytes(edit_meta(e, version=None)),
    "newer version": lambda e: archive_bytes(edit_meta(e, version=_persist.VERSION + 1)),
    "unknown estimator": lambda e: archive_bytes(edit_meta(e, estimator="os.system")),
    "unknown parameter": lambda e: archive_bytes(edit_meta(
        e, params=lambda m: m["params"].update(evil=1))),
    "bad parameter value": lambda e: archive_bytes(edit_meta(
        e, params=lambda m: m["params"].update(optimizer="bogus"))),
    "unknown attribute": lambda e: archive_bytes(edit_meta(
        e, values=lambda m: m["values"].update(__class__="x"))),
    "intercept a string": lambda e: archive_bytes(edit_meta(
        e, values=lambda m: m["values"].update(intercept_="1.0"))),
    "history malformed": lambda e: archive_bytes(edit_meta(
        e, values=lambda m: m["values"].update(history_={"loss": "x"}))),
    "extra entry": lambda e: archive_bytes({**e, "payload.npy": e["coef_.npy"]}),
    "missing array": lambda e: archive_bytes({k: v for k, v in e.items()
                                              if k != "coef_.npy"}),
    "object array": lambda e: archive_bytes(edit_meta(
        {**e, "coef_.npy": npy(np.array([object()] * 4))},
        arrays=lambda m: m["arrays"].update(coef_={"dtype": "|O", "shape": [4]}))),
    "object array under a float description": lambda e: archive_bytes(
        {**e, "coef_.npy": npy(np.array([1.5, "x", None, 2], dtype=object))}),
    "wrong shape": lambda e: archive_bytes(edit_meta(
        {**e, "coef_.npy": npy(np.zeros(5))},
        arrays=lambda m: m["arrays"].update(coef_={"dtype": "<f8", "shape": [5]}))),
    "huge declared shape": lambda e: archive_bytes(edit_meta(
        e, arrays=lambda m: m["arrays"].update(coef_={"dtype": "<f8",
                                                      "shape": [2**62, 2**62]}))),
    "non-finite coefficients": lambda e: archive_bytes(
        {**e, "coef_.npy": npy(np.array([1.0, np.nan, 0.0, 0.0]))}),
    "compressed entries": lambda e: archive_bytes(e, zipfile.ZIP_DEFLATED),
    "parameter of a sub-estimator": lambda e: archive_bytes(edit_meta(
        e, params=lambda m: m["params"].update({"loss__x": 1}))),
    "huge integer": lambda e: archive_bytes(edit_meta(
        e, values=lambda m: m["values"].update(intercept_=10**400))),
    "random_state junk": lambda e: archive_bytes(edit_meta(
        e, params=lambda m: m["params"].update(random_state=[1, 2]))),
    "history shorter than n_iter_": lambda e: archive_bytes(edit_meta(
        e, values=lambda m: m["values"]["history_"]["loss"].pop())),
    "n_features_in_ disagrees": lambda e: archive_bytes(edit_meta(
        e, values=lambda m: m["values"].update(n_features_in_=7))),
}


def assert_refused(tmp_path, data: bytes):
    path = tmp_path / "bad"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="is not a fastgd model this version can read"):
        fastgd.load(path)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_foreign_and_hostile_files_are_refused(tmp_path, case):
    assert_refused(tmp_path, HOSTILE[case](saved_entries(tmp_path)))


def test_a_newer_format_says_so(tmp_path):
    (tmp_path / "new").write_bytes(HOSTILE["newer version"](saved_entries(tmp_path)))
    with pytest.raises(ValueError, match=f"format version {_persist.VERSION + 1}, written by "
                       f"a newer fastgd"):
        fastgd.load(tmp_path / "new")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_files_are_refused(tmp_path, keep):
    model, _ = fitted()
    model.save(tmp_path / "m")
    data = (tmp_path / "m").read_bytes()
    (tmp_path / "m").write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(ValueError, match="is not a fastgd model"):
        fastgd.load(tmp_path / "m")


def test_byte_flips_are_caught_or_harmless(tmp_path):
    """ZIP's CRC catches corrupted array data; a flip in a field nothing reads (a local
    header's timestamp, say) loads the very same model."""
    model, X = fitted()
    model.save(tmp_path / "m")
    data = bytearray((tmp_path / "m").read_bytes())
    caught = 0
    for offset in range(0, len(data), 5):
        flipped = bytearray(data)
        flipped[offset] ^= 0xFF
        (tmp_path / "f").write_bytes(bytes(flipped))
        try:
            loaded = fastgd.load(tmp_path / "f")
        except ValueError:
            caught += 1
        else:
            same_model(model, loaded, X)
    assert caught > 0.9 * len(range(0, len(data), 5))


def test_saving_through_a_symlink_keeps_the_link_and_the_permissions(tmp_path):
    model, X = fitted()
    target = tmp_path / "models" / "m"
    target.parent.mkdir()
    model.save(target)
    os.chmod(target, 0o600)
    link = tmp_path / "current"
    link.symlink_to(target)
    other, _ = fitted(optimizer="adam")
    other.save(link)
    assert link.is_symlink()
    same_model(other, fastgd.load(target), X)
    assert os.stat(target).st_mode & 0o777 == 0o600


def test_callbacks_are_not_saved(tmp_path):
    model, X = fitted()
    model.set_params(callbacks=print)
    model.save(tmp_path / "m")
    assert fastgd.load(tmp_path / "m").callbacks is None


def test_a_long_file_name_can_be_saved(tmp_path):
    model, _ = fitted()
    model.save(tmp_path / ("m" * 250))
    assert fastgd.load(tmp_path / ("m" * 250)).n_iter_ == model.n_iter_


def classifier_entries(tmp_path, k=3) -> dict:
    from fastgd import GDClassifier

    X, y, _ = make_problem(120, 4)
    labels = np.array(["a", "b", "c"][:k])[np.digitize(y, np.quantile(y, [0.33, 0.66]))
                                            .clip(max=k - 1)]
    GDClassifier(max_epochs=3, tol=None).fit(X, labels).save(tmp_path / "clf")
    with zipfile.ZipFile(tmp_path / "clf") as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def replace_array(entries, name, array):
    return archive_bytes(edit_meta(
        {**entries, f"{name}.npy": npy(array)},
        arrays=lambda m: m["arrays"].update({name: {"dtype": array.dtype.str,
                                                    "shape": list(array.shape)}})))


CLASSIFIER_HOSTILE = {
    "classes unsorted": lambda e: replace_array(e, "classes_", np.array(["c", "b", "a"])),
    "one class": lambda e: replace_array(e, "classes_", np.array(["a"])),
    "classes repeated": lambda e: replace_array(e, "classes_", np.array(["a", "a", "b"])),
    "fewer classes than coefficient rows": lambda e: replace_array(
        e, "classes_", np.array(["a", "b"])),
    "intercept of the wrong length": lambda e: replace_array(e, "intercept_", np.zeros(2)),
    "coefficients of one output": lambda e: replace_array(e, "coef_", np.zeros(4)),
    "classes missing": lambda e: archive_bytes(edit_meta(
        {k: v for k, v in e.items() if k != "classes_.npy"},
        arrays=lambda m: m["arrays"].pop("classes_"))),
}


@pytest.mark.parametrize("case", sorted(CLASSIFIER_HOSTILE))
def test_inconsistent_classifier_files_are_refused(tmp_path, case):
    assert_refused(tmp_path, CLASSIFIER_HOSTILE[case](classifier_entries(tmp_path)))


def test_multi_output_regressor_with_a_mismatched_intercept_is_refused(tmp_path):
    X, y, _ = make_problem(50, 3)
    GDRegressor(max_epochs=2, tol=None).fit(X, np.column_stack([y, y])).save(tmp_path / "m")
    with zipfile.ZipFile(tmp_path / "m") as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    assert_refused(tmp_path, replace_array(entries, "intercept_", np.zeros(3)))
