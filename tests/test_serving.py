"""`fastgd serve` as users run it: a real server process on 127.0.0.1 (a free port), started
and stopped by each test, and a real HTTP client (httpx). Predictions equal the model's,
bad requests get a 4xx JSON error and leave the server serving, the model file replaced
under load is served with no failed request, and /metrics counts what happened."""

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fastgd

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

FEATURES = ["rooms", "area", "age"]
# The models are fitted on DataFrames (named features) and checked against rows as arrays.
pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")


@contextlib.contextmanager
def server(model_path, *options, cwd=None, stop=signal.SIGINT):
    """`fastgd serve MODEL --port 0` (a free port of 127.0.0.1, which it prints): an httpx
    client of it, once /health answers; then stopped with Ctrl-C (or `stop`, SIGTERM as a
    container's orchestrator sends), which must end it cleanly."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fastgd", "serve", os.fspath(model_path), "--port", "0",
         *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)
    first = process.stdout.readline()
    found = re.search(r"at (http://127\.0\.0\.1:\d+)/", first)
    if found is None:
        process.kill()
        raise AssertionError(first + process.communicate()[0])
    client = httpx.Client(base_url=found.group(1), timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read()
            with contextlib.suppress(httpx.TransportError):
                if client.get("/health").status_code == 200:
                    break
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield client
    finally:
        client.close()
        process.send_signal(stop)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, output
    assert "Traceback" not in output, output


def problem(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, len(FEATURES)))
    return X, X @ rng.uniform(-2, 2, len(FEATURES)) + rng.normal(0, 0.1, n) + 1.0


@pytest.fixture
def regressor(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = problem()
    model = fastgd.GDRegressor().fit(pd.DataFrame(X, columns=FEATURES), y)
    model.save(tmp_path / "houses.fastgd")
    return model, tmp_path / "houses.fastgd", X


def predictions(client, instances, url="/v1/models/houses:predict", **kwargs):
    response = client.post(url, json={"instances": instances}, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def test_predictions_by_rows_by_name_and_csv_equal_predict(regressor):
    model, path, X = regressor
    expected = model.predict(X).tolist()
    with server(path) as client:
        assert predictions(client, X.tolist())["predictions"] == expected
        named = [dict(zip(FEATURES, row, strict=True)) for row in X.tolist()]
        named[1::2] = [dict(reversed(row.items())) for row in named[1::2]]  # any key order
        assert predictions(client, named)["predictions"] == expected
        assert predictions(client, X.tolist(), url="/predict")["predictions"] == expected
        shuffled = FEATURES[::-1]  # a CSV header may order the features any way
        csv = ",".join(shuffled) + "\n" + "\n".join(
            ",".join(repr(row[FEATURES.index(f)]) for f in shuffled) for row in X.tolist())
        for body in (csv, "\ufeff" + csv,  # a byte-order mark, as Excel writes "CSV UTF-8"
                     "\n".join(",".join(map(repr, row)) for row in X.tolist())):
            response = client.post("/predict", content=body,
                                   headers={"content-type": "text/csv"})
            assert response.status_code == 200, response.text
            assert response.json()["predictions"] == expected


def test_metadata_and_health_name_the_model_and_its_file(regressor):
    model, path, _ = regressor
    with server(path, stop=signal.SIGTERM) as client:
        metadata = client.get("/v1/models/houses").json()
        health = client.get("/health").json()
    assert health["status"] == "ready" and health["model"] == metadata
    assert metadata["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert metadata["features"] == FEATURES and metadata["kind"] == "regressor"
    assert metadata["fastgd_version"] == fastgd.__version__
    assert metadata["classes"] is None and metadata["n_features"] == 3


def test_classifier_labels_and_probabilities(tmp_path):
    X, y = problem()
    labels = np.array(["cheap", "fair", "dear"])[np.digitize(y, np.quantile(y, [0.3, 0.7]))]
    model = fastgd.GDClassifier().fit(X, labels)
    model.save(tmp_path / "price.fastgd")
    with server(tmp_path / "price.fastgd") as client:
        url = "/v1/models/price:predict"
        answer = predictions(client, X.tolist(), url=url)
        assert answer == {"predictions": model.predict(X).tolist()}
        for asked in ({"params": {"proba": "true"}}, {}):
            body = {"instances": X.tolist(), **({} if asked else {"proba": True})}
            answer = client.post(url, json=body, **asked).json()
            assert answer["predictions"] == model.predict(X).tolist()
            np.testing.assert_allclose(answer["probabilities"], model.predict_proba(X),
                                       rtol=1e-15)
        assert client.get("/v1/models/price").json()["classes"] == ["cheap", "dear", "fair"]
        huge = (np.sign(model.coef_[0]) * 1e308).tolist()  # logits of +-inf: no answer
        overflow = client.post(url, json={"instances": [huge]})
        assert overflow.status_code == 422 and "overflow" in overflow.json()["error"]


def test_a_model_with_an_offset_column_takes_it_by_name_in_each_row(tmp_path):
    """A model `fastgd train --offset COLUMN` made adds that column of each request row to
    its raw output, as `fastgd predict` does: rows by name (JSON objects, CSV with a header)
    with it; rows as lists, or by name without it, are a 400 naming the column."""
    pd = pytest.importorskip("pandas")
    X, _ = problem()
    rng = np.random.default_rng(1)
    offset = np.log(rng.uniform(0.1, 3.0, len(X)))  # of each row's exposure
    counts = rng.poisson(np.exp(X @ [0.2, -0.1, 0.3] + offset))
    frame = pd.DataFrame(X, columns=FEATURES)
    model = fastgd.GDRegressor(loss="poisson").fit(frame, counts, offset=offset)
    model.offset_column_ = "log_exposure"  # as fastgd train --offset log_exposure leaves it
    model.save(tmp_path / "claims.fastgd")
    expected = model.predict(frame, offset=offset)
    columns = ["log_exposure", *FEATURES]
    rows = np.column_stack([offset, X]).tolist()
    named = [dict(zip(columns, row, strict=True)) for row in rows]
    csv = ",".join(columns) + "\n" + "\n".join(",".join(map(repr, row)) for row in rows)
    with server(tmp_path / "claims.fastgd") as client:
        assert client.get("/v1/models/claims").json()["offset"] == "log_exposure"
        np.testing.assert_allclose(predictions(client, named, url="/predict")["predictions"],
                                   expected, rtol=1e-12)
        answer = client.post("/predict", content=csv, headers={"content-type": "text/csv"})
        np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=1e-12)
        for instances in (X.tolist(), [dict(zip(FEATURES, row, strict=True))
                                       for row in X.tolist()]):
            answer = client.post("/predict", json={"instances": instances})
            assert answer.status_code == 400
            assert "the model adds column 'log_exposure'" in answer.json()["error"]
        answer = client.post("/predict", json={"instances": [{**named[0],
                                                              "log_exposure": "one"}]})
        assert answer.status_code == 400
        assert answer.json()["error"] == ("instance 0, feature 'log_exposure': 'one' is not a "
                                          "number")


def test_a_model_trained_on_text_columns_encodes_them_as_predict_does(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    n = 400
    table = pd.DataFrame({"area": rng.uniform(20, 200, n),
                          "town": rng.choice(["Lyon", "Nice", "Paris"], n),
                          "code": rng.choice(["007", "42", "x"], n)})
    table["price"] = (table.area * 3 + table.town.map({"Lyon": 10, "Nice": 20, "Paris": 90})
                      + rng.normal(0, 1, n))
    table.to_csv(tmp_path / "houses.csv", index=False)
    train = subprocess.run([sys.executable, "-m", "fastgd", "train", "houses.csv", "--target",
                            "price", "-o", "houses.fastgd", "-q"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert train.returncode == 0, train.stderr
    rows = table.drop(columns="price").head(50)
    rows.to_csv(tmp_path / "new.csv", index=False)
    subprocess.run([sys.executable, "-m", "fastgd", "predict", "houses.fastgd", "new.csv",
                    "-o", "predicted.csv"], cwd=tmp_path, check=True, capture_output=True)
    expected = pd.read_csv(tmp_path / "predicted.csv").iloc[:, -1].to_numpy()
    with server(tmp_path / "houses.fastgd") as client:
        answer = predictions(client, rows.to_dict("records"))["predictions"]
        np.testing.assert_allclose(answer, expected, rtol=1e-12)
        csv = client.post("/predict", content=(tmp_path / "new.csv").read_text(),
                          headers={"content-type": "text/csv"})
        np.testing.assert_allclose(csv.json()["predictions"], expected, rtol=1e-12)
        unseen = dict(rows.iloc[0], town="Brest")  # a level never seen encodes as none
        assert client.post("/predict", json={"instances": [unseen]}).status_code == 200
        missing = client.post("/predict", json={"instances": [dict(rows.iloc[0], town=None)]})
        assert missing.status_code == 400 and "town" in missing.json()["error"]
        row = rows.iloc[0].tolist()
        for bad, words in (([dict(rows.iloc[0], town=["Lyon"])], "is not a level"),
                           ([row[:2]], "instance 0 has 2 values; the model takes 3"),
                           ([row, row[:2]], "instance 1 has 2 values"),
                           ([[True, row[1], row[2]]], "true is not a number")):
            answer = client.post("/predict", json={"instances": bad})
            assert answer.status_code == 400 and words in answer.json()["error"], answer.text
        empty = client.post("/predict", content=f"area,town,code\n{row[0]},,{row[2]}\n",
                            headers={"content-type": "text/csv"})  # as predict: missing
        assert empty.status_code == 400 and "column 'town'" in empty.json()["error"]
        assert client.get("/health").json()["model"]["features"] == ["area", "town", "code"]


ROWS = [[1.0, 2.0, 3.0]]
BAD_REQUESTS = [  # (what, body, content type, status, words of the error)
    ("malformed JSON", b'{"instances": [[1, 2, 3]', "application/json", 400, "not valid JSON"),
    ("not UTF-8", b"\xff\xfe{}", "application/json", 400, "UTF-8"),
    ("a JSON list", b"[[1, 2, 3]]", "application/json", 400, "JSON object"),
    ("deep nesting", b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json",
     400, "nested too deeply"),
    ("no instances", b'{"rows": [[1, 2, 3]]}', "application/json", 400, "unknown field 'rows'"),
    ("empty instances", b'{"instances": []}', "application/json", 400, "non-empty list"),
    ("instances not a list", b'{"instances": 3}', "application/json", 400, "non-empty list"),
    ("too few features", b'{"instances": [[1, 2]]}', "application/json", 400,
     "the model takes 3"),
    ("ragged rows", b'{"instances": [[1, 2, 3], [1, 2]]}', "application/json", 400,
     "lengths 2, 3"),
    ("nested values", b'{"instances": [[1, 2, [3]]]}', "application/json", 400, "single values"),
    ("a string", b'{"instances": [[1, 2, "3"]]}', "application/json", 400, "is not a number"),
    ("null", b'{"instances": [[1, null, 3]]}', "application/json", 400,
     "feature 'area': null"),
    ("a boolean", b'{"instances": [[true, true, true]]}', "application/json", 400,
     "not a number"),
    ("a boolean among numbers", b'{"instances": [[1, 2, 3], [1, false, 3]]}',
     "application/json", 400, "instance 1, feature 'area': false is not a number"),
    ("a 5,000-digit integer", b'{"instances": [[1, ' + b"9" * 5000 + b', 3]]}',
     "application/json", 400, "not valid JSON"),
    ("NaN", b'{"instances": [[1, NaN, 3]]}', "application/json", 400, "NaN"),
    ("Infinity", b'{"instances": [[1, -Infinity, 3]]}', "application/json", 400, "Infinity"),
    ("overflowing number", b'{"instances": [[1, 1e999, 3]]}', "application/json", 400,
     "not a finite number"),
    ("huge integer", b'{"instances": [[1, ' + b"9" * 400 + b', 3]]}', "application/json", 400,
     "float64's range"),
    ("unknown feature", b'{"instances": [{"rooms": 1, "area": 2, "age": 3, "pool": 1}]}',
     "application/json", 400, "unknown feature 'pool'"),
    ("missing feature", b'{"instances": [{"rooms": 1, "area": 2}]}', "application/json", 400,
     "lacks feature 'age'"),
    ("features unlike the first", b'{"instances": [{"rooms": 1, "area": 2, "age": 3}, '
     b'{"rooms": 1, "area": 2, "pool": 3}]}', "application/json", 400, "unlike instance 0"),
    ("rows and objects mixed", b'{"instances": [[1, 2, 3], {"rooms": 1}]}',
     "application/json", 400, "all be lists"),
    ("proba not a boolean", b'{"instances": [[1, 2, 3]], "proba": "yes"}', "application/json",
     400, "true or false"),
    ("proba of a regressor", b'{"instances": [[1, 2, 3]], "proba": true}', "application/json",
     400, "regressor"),
    ("a form", b"rooms=1", "application/x-www-form-urlencoded", 415, "Content-Type"),
    ("plain text", b"1,2,3", "text/plain", 415, "text/csv"),
    ("a CSV cell not a number", b"1,2,x\n", "text/csv", 400, "'x' is not a number"),
    ("an empty CSV cell", b"rooms,area,age\n1,,3\n", "text/csv", 400, "feature 'area'"),
    ("a ragged CSV", b"1,2,3\n1,2\n", "text/csv", 400, "CSV row 1 has 2 cells"),
    ("a CSV header only", b"rooms,area,age\n", "text/csv", 400, "no rows"),
    ("an empty CSV", b"", "text/csv", 400, "no rows"),
    ("a CSV header naming others", b"rooms,area,pool\n1,2,3\n", "text/csv", 400,
     "lacks feature 'age'"),
    ("a CSV header naming one twice", b"rooms,area,age,age\n1,2,3,4\n", "text/csv", 400,
     "twice"),
    ("a CSV with NaN", b"1,nan,3\n", "text/csv", 400, "not a finite number"),
    ("a CSV of old Mac lines", b"1,2,3\r4,5,6\r", "text/csv", 400, "does not parse"),
    ("a CSV number as Python writes it", b"1_000,2,3\n", "text/csv", 400,
     "'1_000' is not a number"),
    ("a CSV number in other digits", "1,\u0662,3\n".encode(), "text/csv", 400,
     "is not a number"),
]


def test_every_bad_request_gets_a_4xx_naming_the_problem(regressor):
    model, path, _ = regressor
    with server(path, "--max-body-mb", "0.01") as client:
        for what, body, content_type, status, words in BAD_REQUESTS:
            response = client.post("/predict", content=body,
                                   headers={"content-type": content_type})
            assert response.status_code == status, (what, response.text)
            assert words in response.json()["error"], (what, response.json())
        for method, url, status in (("POST", "/v1/models/other:predict", 404),
                                    ("GET", "/v1/models/other", 404), ("GET", "/nowhere", 404),
                                    ("GET", "/predict", 405), ("DELETE", "/health", 405),
                                    ("GET", "/v1/models/houses:predict", 405)):
            response = client.request(method, url, json={"instances": ROWS})
            assert response.status_code == status, (method, url, response.text)
            assert "error" in response.json()
        big = {"instances": ROWS * 2000}  # about 30 KB, over the 10 KB limit
        assert client.post("/predict", json=big).status_code == 413
        chunks = (json.dumps(big)[i:i + 1000].encode() for i in range(0, 30_000, 1000))
        streamed = client.post("/predict", content=chunks,  # no Content-Length: streamed
                               headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and "limit" in streamed.json()["error"]
        with socket.create_connection((client.base_url.host, client.base_url.port)) as gone:
            gone.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: 1000\r\n\r\n{\"instances\"")
        assert client.get("/v1/models").json() == {"models": ["houses"]}
        huge = (np.sign(model.coef_) * 1e308).tolist()  # finite rows, predictions that are not
        overflow = client.post("/predict", json={"instances": [huge]})
        assert overflow.status_code == 422 and "overflow" in overflow.json()["error"]
        assert predictions(client, ROWS, url="/predict")["predictions"] == \
            model.predict(np.array(ROWS)).tolist()  # still serving
        deadline = time.monotonic() + 10  # the client that left is counted once it has
        while ("fastgd_requests_total", frozenset({("route", "predict"), ("status", "499")})
               ) not in (counts := metric_values(client.get("/metrics").text)):
            assert time.monotonic() < deadline, "the client that left was not counted"
            time.sleep(0.05)
    errors = sum(v for (name, labels), v in counts.items()
                 if name == "fastgd_request_errors_total" and ("route", "predict") in labels)
    assert errors == len(BAD_REQUESTS) + 1 + 2 + 1 + 1  # the 404, the 413s, the 422, the 499
    assert not [key for key in counts if ("status", "500") in key[1]]


@pytest.mark.parametrize("parser", ["orjson", "json"])
def test_both_json_parsers_give_the_same_answers_and_errors(regressor, parser, monkeypatch):
    """The server reads and writes JSON with orjson where installed, else with the standard
    library: the same predictions and the same errors either way (in process)."""
    from fastgd.serving import app, inputs, models

    if parser == "json":
        monkeypatch.setattr(inputs, "orjson", None)
    else:
        pytest.importorskip("orjson")
    model, path, X = regressor
    served = models.load(path, "houses")
    for what, body, content_type, status, words in BAD_REQUESTS:
        if status == 415:
            continue
        with pytest.raises(inputs.BadRequest) as problem:
            app._predict(served, body, inputs.media_type(content_type), False)
        assert problem.value.status == status and words in str(problem.value), what
    answer, rows = app._predict(served, json.dumps({"instances": X.tolist()}).encode(),
                                "json", False)
    assert rows == len(X) and json.loads(answer) == {"predictions": model.predict(X).tolist()}


@pytest.mark.parametrize("kind", ["several targets", "integer labels", "boolean labels"])
def test_answers_of_every_kind_of_model(tmp_path, kind):
    """In process: what a multi-output regressor or a classifier of numbers or booleans
    answers is predict's (and predict_proba's) values, as JSON numbers and booleans."""
    from fastgd.serving import app, models

    X, y = problem()
    if kind == "several targets":
        model = fastgd.GDRegressor().fit(X, np.column_stack([y, -y, 2 * y]))
    else:
        labels = np.array([7, 3] if kind == "integer labels" else [True, False])
        model = fastgd.GDClassifier().fit(X, labels[(y > np.median(y)).astype(int)])
    model.save(tmp_path / "m.fastgd")
    served = models.load(tmp_path / "m.fastgd", "m")
    proba = kind != "several targets"
    answer = json.loads(app._predict(served, json.dumps({"instances": X.tolist(),
                                                         "proba": proba}).encode(),
                                     "json", False)[0])
    assert answer["predictions"] == model.predict(X).tolist()
    if proba:
        np.testing.assert_allclose(answer["probabilities"], model.predict_proba(X),
                                   rtol=1e-15)
    assert served.metadata(tmp_path)["n_outputs"] == (3 if not proba else None)


def test_a_csv_header_of_the_feature_names_is_a_header_even_when_they_are_numbers(tmp_path):
    pd = pytest.importorskip("pandas")
    from fastgd.serving import app, models

    X, y = problem()
    model = fastgd.GDRegressor().fit(pd.DataFrame(X, columns=["1", "2", "3"]), y)
    model.save(tmp_path / "m.fastgd")
    served = models.load(tmp_path / "m.fastgd", "m")
    answer, rows = app._predict(served, b"3,2,1\n7,8,9\n", "csv", False)
    assert rows == 1 and json.loads(answer)["predictions"] == model.predict(
        pd.DataFrame([[9.0, 8.0, 7.0]], columns=["1", "2", "3"])).tolist()


def test_a_reload_that_failed_in_passing_is_tried_again(regressor, monkeypatch):
    """No file descriptor left, say: the next look loads the file, though it has not
    changed since; a file whose contents do not load waits for the next change."""
    from fastgd.serving import models

    model, path, X = regressor
    served = models.ModelFile(path, "houses")
    newer = fastgd.GDRegressor(alpha=1.0).fit(X, model.predict(X) + 1)
    newer.save(path)
    real_load = models.load

    def exhausted(*args):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(models, "load", exhausted)
    with pytest.raises(OSError):
        served.reload()
    monkeypatch.setattr(models, "load", real_load)
    assert served.changed() and served.reload() is True
    assert served.current.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(b"not a model")
    with pytest.raises(ValueError):
        served.reload()
    assert not served.changed()  # tried again when the file changes, not at every look


def metric_values(text) -> dict:
    """{(sample name, frozenset of its labels' items): value} of Prometheus' text format."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def metric(samples, name, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_count_requests_rows_latency_and_reloads(regressor):
    model, path, X = regressor
    with server(path) as client:
        for size in (1, 10, 100):
            predictions(client, X[:size].tolist())
        client.post("/predict", json={"instances": []})
        client.get("/health")
        samples = metric_values(client.get("/metrics").text)
    assert metric(samples, "fastgd_rows_predicted_total") == 111
    assert metric(samples, "fastgd_requests_total", route="predict", status="200") == 3
    assert metric(samples, "fastgd_requests_total", route="predict", status="400") == 1
    assert metric(samples, "fastgd_request_errors_total", route="predict", status="400") == 1
    assert metric(samples, "fastgd_request_duration_seconds_count", route="predict") == 4
    assert metric(samples, "fastgd_model_reloads_total", result="success") == 0
    assert metric(samples, "fastgd_model_loaded_timestamp_seconds") > time.time() - 600


def test_the_model_swapped_under_load_fails_no_request(tmp_path):
    """8 clients predict without pause while the model file is replaced (model.save, as
    `fastgd train -o` does) three times: every answer is one model's predictions, none
    fails, and each new model answers within seconds."""
    X, y = problem()
    models = [fastgd.GDRegressor().fit(X, y * (k + 1)) for k in range(4)]
    answers = {tuple(m.predict(X[:20]).tolist()): k for k, m in enumerate(models)}
    path = tmp_path / "houses.fastgd"
    models[0].save(path)
    seen, failures, stop = [], [], threading.Event()

    def client_loop(base_url):
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post("/predict", json={"instances": X[:20].tolist()})
                    assert response.status_code == 200, response.text
                    seen.append((time.monotonic(),
                                 answers[tuple(response.json()["predictions"])]))
                except Exception as error:  # noqa: BLE001: every failure is counted
                    failures.append(repr(error))

    with server(path, "--poll-seconds", "0.2") as client:
        threads = [threading.Thread(target=client_loop, args=(str(client.base_url),))
                   for _ in range(8)]
        for thread in threads:
            thread.start()
        swaps = []
        try:
            for k in range(1, 4):
                time.sleep(1.0)
                models[k].save(path)
                swaps.append(time.monotonic())
                deadline = time.monotonic() + 10
                while client.get("/health").json()["model"]["sha256"] != hashlib.sha256(
                        path.read_bytes()).hexdigest():
                    assert time.monotonic() < deadline, f"model {k} not served in 10 s"
                    time.sleep(0.05)
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        samples = metric_values(client.get("/metrics").text)
    assert failures == []
    assert len(seen) > 100
    kinds = [k for _, k in sorted(seen)]
    assert set(kinds) == {0, 1, 2, 3}
    # no model answered before its file was saved
    firsts = [min(t for t, k in seen if k == m) for m in (1, 2, 3)]
    assert all(first >= swap for first, swap in zip(firsts, swaps, strict=True))
    assert metric(samples, "fastgd_model_reloads_total", result="success") == 3
    assert metric(samples, "fastgd_model_reloads_total", result="failure") == 0


def test_a_replacement_that_does_not_load_keeps_the_old_model(regressor):
    model, path, X = regressor
    with server(path, "--poll-seconds", "0.1") as client:
        before = client.get("/health").json()["model"]["sha256"]
        broken = path.with_suffix(".tmp")
        broken.write_bytes(b"PK\x03\x04 not a model")
        os.replace(broken, path)  # atomically, as a save would
        deadline = time.monotonic() + 10
        while metric(metric_values(client.get("/metrics").text), "fastgd_model_reloads_total",
                        result="failure") < 1:
            assert time.monotonic() < deadline, "the failed reload was not counted"
            time.sleep(0.05)
        assert client.get("/health").json()["model"]["sha256"] == before
        assert predictions(client, X[:5].tolist())["predictions"] == \
            model.predict(X[:5]).tolist()
        reload = client.post("/v1/models/houses/reload")
        assert reload.status_code == 409 and "did not load" in reload.json()["error"]
        newer = fastgd.GDRegressor(alpha=1.0).fit(X, model.predict(X) * 2)
        newer.save(path)  # a good file again: served
        deadline = time.monotonic() + 10
        while client.get("/health").json()["model"]["sha256"] == before:
            assert time.monotonic() < deadline, "the good file was not loaded"
            time.sleep(0.05)
        assert predictions(client, X[:5].tolist())["predictions"] == \
            newer.predict(X[:5]).tolist()


def test_reload_on_request_guarded_by_a_token(regressor):
    model, path, X = regressor
    with server(path, "--poll-seconds", "3600", "--reload-token", "s3cret") as client:
        newer = fastgd.GDRegressor().fit(X, model.predict(X) + 5)
        newer.save(path)
        url = "/v1/models/houses/reload"
        assert client.post(url).status_code == 401
        assert client.post(url, headers={"authorization": "Bearer wrong"}).status_code == 403
        assert predictions(client, ROWS)["predictions"] == model.predict(ROWS).tolist()
        done = client.post(url, headers={"authorization": "Bearer s3cret"})
        assert done.status_code == 200 and done.json()["reloaded"] is True
        assert predictions(client, ROWS)["predictions"] == newer.predict(ROWS).tolist()
        again = client.post(url, headers={"authorization": "Bearer s3cret"})
        assert again.json()["reloaded"] is False  # the same bytes


def test_health_answers_while_a_large_batch_is_predicted(regressor):
    model, path, _ = regressor
    X = np.random.default_rng(2).standard_normal((300_000, 3))
    body = json.dumps({"instances": X.tolist()}).encode()
    with server(path, "--max-body-mb", "100") as client:
        result = {}

        def big():
            result["response"] = client.post("/predict", content=body,
                                             headers={"content-type": "application/json"})

        thread = threading.Thread(target=big)
        thread.start()
        answered_during = []
        with httpx.Client(base_url=client.base_url, timeout=30) as other:
            while thread.is_alive():
                start = time.monotonic()
                assert other.get("/health").status_code == 200
                answered_during.append(time.monotonic() - start)
                time.sleep(0.02)
        thread.join()
    assert result["response"].status_code == 200
    np.testing.assert_allclose(result["response"].json()["predictions"], model.predict(X),
                               rtol=1e-15)
    assert len(answered_during) >= 3, "the batch was too quick to test anything"
    assert max(answered_during) < 1.0


@pytest.mark.parametrize("setup, words", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_bytes(b"not a model"), "is not a fastgd model"),
    (lambda p: p.mkdir(), "is a directory"),
])
def test_a_missing_or_corrupt_model_file_stops_the_server_with_a_reason(tmp_path, setup,
                                                                         words):
    path = tmp_path / "m.fastgd"
    setup(path)
    done = subprocess.run([sys.executable, "-m", "fastgd", "serve", os.fspath(path), "--port",
                           "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert words in done.stderr and "Traceback" not in done.stderr


def test_a_port_in_use_stops_the_server_with_a_reason(regressor):
    _, path, _ = regressor
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "fastgd", "serve", os.fspath(path),
                               "--port", str(port)], capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
