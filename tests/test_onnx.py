"""ONNX export: the graph's predictions in ONNX Runtime equal fastgd's, for every loss, both
dtypes, any labels, from an estimator, a loaded model file, skl2onnx and `fastgd export`."""

import json
import subprocess
import sys

import numpy as np
import pytest

import fastgd
from fastgd import losses

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TOLERANCE = {np.float32: 1e-5, np.float64: 1e-10}
CLASSIFICATION = [name for name in losses.names("classification")]


def run(proto, X):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})


def problem(n=400, d=6, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * scale
    return X, X @ rng.standard_normal(d) + 0.3 * rng.standard_normal(n) + 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", losses.names("regression"))
@pytest.mark.parametrize("targets", [1, 3])
def test_regressor_graph_equals_predict(loss, dtype, targets):
    X, y = problem()
    Y = y if targets == 1 else np.column_stack([y * (k + 1) - k for k in range(targets)])
    if losses.LOSSES[loss].link == "exp":  # the log-link losses: positive targets
        Y = np.exp(Y / np.abs(Y).max())
    model = fastgd.GDRegressor(loss=loss).fit(X, Y)
    Xd = X.astype(dtype)
    (variable,) = run(model.to_onnx(dtype), Xd)
    assert variable.dtype == dtype and variable.shape == (len(X), targets)
    expected = model.predict(Xd).reshape(len(X), targets)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(variable, expected, rtol=TOLERANCE[dtype],
                               atol=TOLERANCE[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("labels", [["no", "yes"], ["a", "b", "c", "d"], [3, 7],
                                    [10, 20, 30], [False, True]], ids=repr)
def test_classifier_graph_equals_predict_and_proba(labels, dtype):
    X, y = problem(scale=4.0)  # large logits: small probabilities keep their precision
    labels = np.array(labels)
    bins = np.quantile(y, np.linspace(0, 1, len(labels) + 1)[1:-1])
    model = fastgd.GDClassifier(alpha=0.0).fit(X, labels[np.digitize(y, bins)])
    Xd = X.astype(dtype)
    label, probabilities = run(model.to_onnx(dtype), Xd)
    np.testing.assert_array_equal(label, model.predict(Xd))
    expected = model.predict_proba(Xd)
    assert probabilities.dtype == dtype
    if dtype == np.float64:  # relative precision, small probabilities included
        assert expected.min() < 1e-8
        np.testing.assert_allclose(probabilities, expected, rtol=1e-10, atol=1e-300)
    else:
        np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)


def test_labels_of_every_integer_width_and_infinite_logits():
    X, y = problem()
    labels = np.array([2**63 + 5, 2**63 + 9], dtype=np.uint64)  # beyond int64
    model = fastgd.GDClassifier().fit(X, labels[(y > np.median(y)).astype(int)])
    label, _ = run(model.to_onnx(), X.astype(np.float32))
    assert label.dtype == np.uint64
    np.testing.assert_array_equal(label, model.predict(X.astype(np.float32)))
    # float32 rows whose logits overflow: +-inf picks as predict does
    huge = np.sign(model.coef_[0]) * 3e38 * np.array([[1.0], [-1.0]])
    with np.errstate(over="ignore"):
        expected = model._model().predict(huge.astype(np.float32))
    label, _ = run(model.to_onnx(), huge.astype(np.float32))
    np.testing.assert_array_equal(label, expected)


def test_a_loaded_model_file_exports_the_same_graph(tmp_path):
    X, y = problem()
    model = fastgd.GDClassifier().fit(X, y > np.median(y))
    model.save(tmp_path / "m.fastgd")
    loaded = fastgd.LinearModel.load(tmp_path / "m.fastgd")
    assert (loaded.to_onnx().SerializeToString() == model.to_onnx().SerializeToString())


def test_a_model_fitted_on_a_table_names_its_columns_in_the_metadata():
    pd = pytest.importorskip("pandas")
    X, y = problem()
    columns = [f"x{j}" for j in range(X.shape[1])]
    proto = fastgd.GDRegressor().fit(pd.DataFrame(X, columns=columns), y).to_onnx()
    assert {p.key: p.value for p in proto.metadata_props} == {
        "feature_names": json.dumps(columns)}
    assert not fastgd.GDRegressor().fit(X, y).to_onnx().metadata_props


def test_bad_dtype_and_unfitted_model():
    X, y = problem()
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        fastgd.GDRegressor().fit(X, y).to_onnx(np.int32)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        fastgd.GDRegressor().to_onnx()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_skl2onnx_converts_a_pipeline_ending_with_fastgd(dtype):
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fastgd.register_skl2onnx()
    X, y = problem()
    Xd = X.astype(dtype)
    regressor = make_pipeline(StandardScaler(), fastgd.GDRegressor()).fit(X, y)
    (variable,) = run(skl2onnx.to_onnx(regressor, Xd[:1]), Xd)
    np.testing.assert_allclose(variable[:, 0], regressor.predict(Xd), rtol=TOLERANCE[dtype],
                               atol=TOLERANCE[dtype] * np.abs(y).max())

    labels = np.array(["low", "mid", "high"])[np.digitize(y, np.quantile(y, [0.3, 0.7]))]
    classifier = make_pipeline(StandardScaler(), fastgd.GDClassifier()).fit(X, labels)
    label, probabilities = run(skl2onnx.to_onnx(classifier, Xd[:1],
                                                options={"zipmap": False}), Xd)
    np.testing.assert_array_equal(label, classifier.predict(Xd))
    np.testing.assert_allclose(probabilities, classifier.predict_proba(Xd),
                               rtol=TOLERANCE[dtype], atol=1e-6)
    for labels, nocl in ((y > 0, False), ((y > 0).astype(float), False),
                         (np.array(["no", "yes"])[(y > 0).astype(int)], True)):
        pipeline = make_pipeline(StandardScaler(), fastgd.GDClassifier()).fit(X, labels)
        options = {id(pipeline.steps[-1][1]): {"zipmap": False, "nocl": nocl}}
        label, _ = run(skl2onnx.to_onnx(pipeline, Xd[:1], options=options), Xd)
        expected = pipeline.predict(Xd)  # int64 labels, as skl2onnx declares them
        expected = np.searchsorted(pipeline.classes_, expected) if nocl else expected
        np.testing.assert_array_equal(label, expected.astype(np.int64))
    if dtype == np.float64:
        return  # skl2onnx's ZipMap (its default for classifiers) takes float32 only
    label, mapped = run(skl2onnx.to_onnx(classifier, Xd[:1]), Xd)  # ZipMap: a dict a row
    assert mapped[0].keys() == set(classifier.classes_)
    np.testing.assert_allclose([row["mid"] for row in mapped],
                               classifier.predict_proba(Xd)[:, 2], rtol=1e-5, atol=1e-6)


def fastgd_cli(*argv, cwd):
    return subprocess.run([sys.executable, "-m", "fastgd", *argv], capture_output=True,
                          text=True, cwd=cwd)


def test_fastgd_export(tmp_path):
    X, y = problem()
    model = fastgd.GDRegressor().fit(X, y)
    model.save(tmp_path / "m.fastgd")
    done = fastgd_cli("export", "m.fastgd", "-o", "m.onnx", "--dtype", "float64",
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "m.onnx" in done.stdout
    import onnx

    (variable,) = run(onnx.load(tmp_path / "m.onnx"), X)
    np.testing.assert_allclose(variable[:, 0], model.predict(X), rtol=1e-10)

    missing = fastgd_cli("export", "none.fastgd", "-o", "x.onnx", cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    same = fastgd_cli("export", "m.fastgd", "-o", "m.fastgd", cwd=tmp_path)
    assert same.returncode == 2 and "Traceback" not in same.stderr
    assert fastgd.load(tmp_path / "m.fastgd").coef_.tolist() == model.coef_.tolist()
