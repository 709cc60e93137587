"""The offset column a model file keeps (`offset_column_`, which `fastgd train --offset`
sets): format version 3, checked on load, read by LinearModel, which adds the offset."""

import json
import zipfile

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastgd
from fastgd import _persist

pd = pytest.importorskip("pandas")
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
