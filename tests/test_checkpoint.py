"""Checkpoints: fit(checkpoint=PATH) saves the whole training state, fit(resume=PATH) goes
on bit for bit, and a process killed with SIGKILL always leaves a loadable checkpoint."""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import OPTIMIZERS, REGRESSION_LOSSES, assert_same_fit, make_problem, targets_for

import fastgd
from fastgd import GDClassifier, GDRegressor, losses

V1_CHECKPOINTS = pathlib.Path(__file__).parent / "data" / "checkpoints_v1"


def interrupted_then_resumed(make, X, y, path, stop_at, sample_weight=None, **resume_kw):
    """Fit with checkpoints until a callback stops the fit after epoch `stop_at`, then
    resume from the checkpoint in a new estimator; returns the resumed one, after checking
    that it ran only the epochs after `stop_at` and kept the first ones' records."""
    first = make(checkpoint=path, callbacks=lambda e: e["epoch"] == stop_at).fit(
        X, y, sample_weight=sample_weight)
    assert fastgd.load(path).n_iter_ == stop_at  # a stop asked for is checkpointed
    ran = []
    resumed = make(checkpoint=path, callbacks=lambda e: ran.append(e["epoch"]),
                   **resume_kw).fit(X, y, sample_weight=sample_weight, resume=path)
    assert ran == list(range(stop_at + 1, resumed.n_iter_ + 1))
    assert resumed.history_["seconds"][:stop_at] == first.history_["seconds"]
    return resumed


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("batch_size", [None, 50])
def test_resume_is_bit_identical(tmp_path, optimizer, batch_size):
    X, y, sw = make_problem(600, 7, weights=True)
    settings = dict(optimizer=optimizer, batch_size=batch_size, learning_rate=0.01,
                    max_epochs=9, tol=None, random_state=3, alpha=0.01,
                    schedule="cosine", warmup_epochs=2)
    uninterrupted = GDRegressor(**settings).fit(X, y, sample_weight=sw)
    # stopped by a callback after epoch 5 (checkpoints every 2, and where it stopped);
    # resumed on 1 thread
    resumed = interrupted_then_resumed(
        lambda **kw: GDRegressor(**settings, checkpoint_every=2, **kw), X, y,
        tmp_path / "fit.ckpt", stop_at=5, sample_weight=sw, n_threads=1)
    assert_same_fit(resumed, uninterrupted)


CASES = {  # estimator, data and settings the resume tests above do not reach
    "unstandardized": (GDRegressor, {}, dict(standardize=False)),
    "float32": (GDRegressor, dict(dtype=np.float32), {}),
    "F order": (GDRegressor, dict(order="F"), {}),
    "several outputs": (GDRegressor, dict(outputs=3), dict(clip_norm=1.0)),
    "binary classifier": (GDClassifier, dict(classes=2), {}),
    "multiclass float32": (GDClassifier, dict(classes=4, dtype=np.float32), {}),
    **{f"loss {name}": (GDRegressor, dict(loss=name), dict(loss=name))
       for name in REGRESSION_LOSSES},
}


@pytest.mark.parametrize("case", list(CASES))
def test_resume_is_bit_identical_for(tmp_path, case):
    estimator, data, extra = CASES[case]
    X, y, sw = make_problem(500, 6, weights=True, dtype=data.get("dtype", np.float64),
                            order=data.get("order", "C"))
    if data.get("loss"):  # targets in the loss's domain
        y = targets_for(losses.get(data["loss"]), (y / np.abs(y).max())[:, None])[:, 0]
    if data.get("outputs"):
        y = np.column_stack([y * (o + 1) for o in range(data["outputs"])])
    if data.get("classes"):
        y = np.digitize(y, np.quantile(y, np.linspace(0, 1, data["classes"] + 1)[1:-1]))
    settings = dict(optimizer="adam", learning_rate=0.02, batch_size=40, max_epochs=8,
                    tol=None, random_state=1, alpha=0.01, l1_ratio=0.3, **extra)
    uninterrupted = estimator(**settings).fit(X, y, sample_weight=sw)
    resumed = interrupted_then_resumed(lambda **kw: estimator(**settings, **kw), X, y,
                                       tmp_path / "fit.ckpt", stop_at=3, sample_weight=sw)
    assert_same_fit(resumed, uninterrupted)


def test_resume_with_early_stopping_and_unseeded_shuffles(tmp_path):
    """random_state=None: the checkpoint holds the random state the row orders and the
    validation rows were drawn from."""
    X, y, _ = make_problem(800, 5)
    path, copy = tmp_path / "fit.ckpt", tmp_path / "epoch4.ckpt"

    def keep_epoch_4(e):  # epoch 5's callback runs before epoch 5's checkpoint
        if e["epoch"] == 5:
            shutil.copy(path, copy)

    settings = dict(batch_size=32, learning_rate=1e-3, early_stopping=True, max_epochs=30,
                    n_iter_no_change=3, tol=1e-4)
    uninterrupted = GDRegressor(**settings, checkpoint=path, callbacks=keep_epoch_4).fit(X, y)
    assert uninterrupted.n_iter_ > 5
    resumed = GDRegressor(**settings).fit(X, y, resume=copy)
    assert_same_fit(resumed, uninterrupted)


def test_classifier_resume(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((900, 4))
    y = np.array(["ant", "bee", "cat"])[np.argmax(X[:, :3] + 0.5 * rng.standard_normal(
        (900, 3)), axis=1)]
    settings = dict(optimizer="adam", batch_size=64, learning_rate=0.01, max_epochs=8,
                    tol=None, random_state=0, class_weight="balanced")
    uninterrupted = GDClassifier(**settings).fit(X, y)
    resumed = interrupted_then_resumed(lambda **kw: GDClassifier(**settings, **kw), X, y,
                                       tmp_path / "c.ckpt", stop_at=3)
    assert_same_fit(resumed, uninterrupted)
    assert list(resumed.classes_) == ["ant", "bee", "cat"]


def test_a_checkpoint_is_the_model_at_its_epoch(tmp_path):
    X, y, _ = make_problem(500, 6)
    GDRegressor(optimizer="nesterov", max_epochs=10, tol=None, checkpoint=tmp_path / "m.ckpt",
                checkpoint_every=4).fit(X, y)
    at_8 = fastgd.load(tmp_path / "m.ckpt")  # epochs 4 and 8 were written; 8 is left
    eight = GDRegressor(optimizer="nesterov", max_epochs=8, tol=None).fit(X, y)
    assert at_8.n_iter_ == 8
    np.testing.assert_array_equal(at_8.coef_, eight.coef_)
    np.testing.assert_array_equal(at_8.predict(X), eight.predict(X))


def test_resume_may_train_longer(tmp_path):
    X, y, _ = make_problem(400, 3)
    path = tmp_path / "m.ckpt"
    GDRegressor(max_epochs=6, tol=None, optimizer="adam", learning_rate=0.01,
                checkpoint=path).fit(X, y)
    longer = GDRegressor(max_epochs=15, tol=None, optimizer="adam", learning_rate=0.01)
    longer.fit(X, y, resume=path)
    assert_same_fit(longer, GDRegressor(max_epochs=15, tol=None, optimizer="adam",
                                        learning_rate=0.01).fit(X, y))


def test_partial_fit_after_a_resumed_fit(tmp_path):
    """The state a resumed fit leaves counts its epochs once: partial_fit then goes on
    with the schedule and row orders of a fit that never stopped."""
    X, y, _ = make_problem(400, 3)
    settings = dict(optimizer="momentum", learning_rate=0.01, batch_size=40, max_epochs=6,
                    tol=None, random_state=0, schedule="exponential", gamma=0.8)
    whole = GDRegressor(**settings).fit(X, y)
    resumed = interrupted_then_resumed(lambda **kw: GDRegressor(**settings, **kw), X, y,
                                       tmp_path / "p.ckpt", stop_at=2)
    for _ in range(3):
        whole.partial_fit(X, y)
        resumed.partial_fit(X, y)
    assert_same_fit(resumed, whole)


def test_resume_refuses_other_data_settings_and_files(tmp_path):
    X, y, _ = make_problem(300, 4)
    path = tmp_path / "m.ckpt"
    GDRegressor(optimizer="nesterov", max_epochs=3, tol=None, checkpoint=path).fit(X, y)
    for row in (0, 1, 150):  # sampled or not, a changed value is other data
        other = X.copy()
        other[row, 2] += 1e-3
        with pytest.raises(ValueError, match="was written for other data"):
            GDRegressor(optimizer="nesterov", max_epochs=3, tol=None).fit(other, y, resume=path)
    with pytest.raises(ValueError, match="was written for other data"):
        GDRegressor(optimizer="nesterov", max_epochs=3, tol=None).fit(X, y + 1e-6, resume=path)
    with pytest.raises(ValueError, match="300 rows x 4 features.*this fit has 299 rows"):
        GDRegressor(optimizer="nesterov", max_epochs=3, tol=None).fit(X[1:], y[1:], resume=path)
    with pytest.raises(ValueError, match="written by a fit with optimizer='nesterov'; this "
                                         "estimator has optimizer='adam'"):
        GDRegressor(max_epochs=3, tol=None, optimizer="adam").fit(X, y, resume=path)
    with pytest.raises(ValueError, match="written by a GDRegressor fit, not a GDClassifier"):
        GDClassifier(optimizer="nesterov", max_epochs=3, tol=None).fit(X, y > 0, resume=path)
    GDRegressor(optimizer="nesterov", max_epochs=3, tol=None).fit(X, y).save(tmp_path / "plain.fastgd")
    with pytest.raises(ValueError, match="is a model file without training state"):
        GDRegressor(optimizer="nesterov", max_epochs=3).fit(X, y, resume=tmp_path / "plain.fastgd")
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="is not a fastgd model"):
        GDRegressor(optimizer="nesterov").fit(X, y, resume=tmp_path / "junk")
    with pytest.raises(FileNotFoundError):
        GDRegressor(optimizer="nesterov").fit(X, y, resume=tmp_path / "missing")
    with pytest.raises(ValueError, match="is at epoch 3, past this estimator's max_epochs=2"):
        GDRegressor(optimizer="nesterov", max_epochs=2, tol=None).fit(X, y, resume=path)
    cosine = tmp_path / "cosine.ckpt"
    GDRegressor(optimizer="nesterov", max_epochs=3, tol=None, schedule="cosine", checkpoint=cosine).fit(X, y)
    with pytest.raises(ValueError, match="max_epochs=3; this estimator has max_epochs=9"):
        GDRegressor(optimizer="nesterov", max_epochs=9, tol=None, schedule="cosine").fit(X, y, resume=cosine)
    with pytest.raises(ValueError, match="coef_init and intercept_init cannot be given"):
        GDRegressor(optimizer="nesterov", max_epochs=3, tol=None).fit(X, y, resume=path, coef_init=np.zeros(4))


def test_a_refused_resume_leaves_a_fitted_model_as_it_was(tmp_path):
    X, y, _ = make_problem(300, 4)
    path = tmp_path / "m.ckpt"
    GDRegressor(optimizer="nesterov", max_epochs=3, tol=None, checkpoint=path).fit(X, y)
    model = GDRegressor(optimizer="nesterov", max_epochs=3, tol=None).fit(X, y)
    before = model.predict(X)
    with pytest.raises(ValueError, match="other data"):
        model.fit(np.hstack([X, X]), y, resume=path)
    assert model.n_features_in_ == 4
    np.testing.assert_array_equal(model.predict(X), before)


def test_a_checkpoint_is_never_overwritten_by_another_fit(tmp_path):
    """A fit that is not resuming from a checkpoint does not replace it: a long run's
    checkpoint is not lost to a clone, a rerun, or a loaded model's refit."""
    X, y, _ = make_problem(200, 3)
    path = tmp_path / "long.ckpt"
    GDRegressor(optimizer="nesterov", max_epochs=4, tol=None, checkpoint=path).fit(X, y)
    saved = path.read_bytes()
    for fit in (lambda: GDRegressor(optimizer="nesterov", max_epochs=4, tol=None, checkpoint=path).fit(X, y),
                lambda: fastgd.load(path).fit(X[:100], y[:100])):
        with pytest.raises(ValueError, match="exists: a new fit would overwrite it. Go on "
                                             "from it with fit"):
            fit()
    assert path.read_bytes() == saved


def test_checkpoints_load_and_resume_from_anywhere(tmp_path, monkeypatch):
    """A checkpoint names its own path among its settings; loading or resuming it from
    another directory (where that path means nothing) still works."""
    X, y, _ = make_problem(200, 3)
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    settings = dict(max_epochs=6, tol=None, optimizer="adam", learning_rate=0.01)
    GDRegressor(**settings, checkpoint="runs/a.ckpt",
                callbacks=lambda e: e["epoch"] == 3).fit(X, y)
    monkeypatch.chdir(tmp_path / "runs")
    assert fastgd.load("a.ckpt").n_iter_ == 3
    resumed = GDRegressor(**settings).fit(X, y, resume="a.ckpt")
    assert_same_fit(resumed, GDRegressor(**settings).fit(X, y))


@pytest.mark.parametrize("damage, message", [
    (lambda meta: meta["training"]["arrays"].pop("best_val_params"), "malformed"),
    (lambda meta: meta["values"]["history_"].pop("val_loss"), "history_ is malformed|no "
                                                              "validation losses"),
    (lambda meta: meta["training"]["values"].update(epochs=-1), "malformed"),
    (lambda meta: meta["training"]["values"].update(learning_rate="fast"), "malformed"),
    (lambda meta: meta["training"]["values"].update(random_state=[1, 2]), "malformed"),
    (lambda meta: meta["training"]["values"].pop("steps"), "malformed"),
    (lambda meta: meta["training"]["values"].update(slots=["exp_avg"]), "malformed.*not the "
                                                                        "solver's"),
    (lambda meta: meta["training"]["arrays"].pop("state.momentum_buffer"), "malformed"),
    (lambda meta: meta["training"]["arrays"]["state.momentum_buffer"].update(shape=[2]),
     "not a fastgd model"),  # the array's description against its data
])
def test_damaged_training_state_is_a_value_error(tmp_path, damage, message):
    import json
    import zipfile

    X, y, _ = make_problem(200, 3)
    settings = dict(max_epochs=6, tol=None, early_stopping=True, random_state=0)
    path = tmp_path / "es.ckpt"
    GDRegressor(optimizer="nesterov", **settings, checkpoint=path, callbacks=lambda e: e["epoch"] == 3).fit(X, y)
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(entries["fastgd.json"])
    damage(meta)
    entries["fastgd.json"] = json.dumps(meta).encode()
    for name in list(entries):  # an array the table no longer lists goes too
        if name.startswith("training.") and name[9:-4] not in meta["training"]["arrays"]:
            del entries[name]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match=message):
        GDRegressor(optimizer="nesterov", **settings).fit(X, y, resume=path)


@pytest.mark.parametrize("params, error, message", [
    (dict(checkpoint=5), TypeError, "checkpoint must be a path or None, got 5"),
    (dict(checkpoint="no/such/dir/m.ckpt"), ValueError, "directory .* does not exist"),
    (dict(checkpoint="m.ckpt", checkpoint_every=0), ValueError, "checkpoint_every must be"),
    (dict(checkpoint="m.ckpt", random_state=np.random.RandomState(0)), ValueError,
     "checkpoint= needs random_state to be None or an int"),
])
def test_bad_checkpoint_settings(tmp_path, monkeypatch, params, error, message):
    monkeypatch.chdir(tmp_path)
    X, y, _ = make_problem(50, 2)
    with pytest.raises(error, match=message):
        GDRegressor(**params).fit(X, y)
    assert not os.path.exists("m.ckpt")


CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from fastgd import GDRegressor
    sys.path.insert(0, {tests!r})
    from conftest import make_problem

    X, y, _ = make_problem(200, 20_000, seed=1)  # a 1 MB state: kills land mid-write too
    def say(e):
        print(e["epoch"], flush=True)
    GDRegressor(**{settings!r}, checkpoint={path!r}, callbacks=say).fit(X, y,
        **({{"resume": {path!r}}} if {resume!r} else {{}}))
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX's")
def test_sigkill_leaves_a_loadable_checkpoint_and_resume_ends_the_same(tmp_path):
    """A training process killed with SIGKILL at random moments, several times over: each
    time the checkpoint loads and lost at most checkpoint_every (1) epochs, and resuming
    after the last kill ends with the bits of a run that was never killed."""
    from conftest import make_problem as problem

    tests = os.path.dirname(os.path.abspath(__file__))
    settings = dict(optimizer="adam", learning_rate=1e-3, batch_size=50, max_epochs=400,
                    tol=None, random_state=0)
    path = str(tmp_path / "run.ckpt")
    rng = np.random.default_rng(0)
    for kill in range(4):
        code = CHILD.format(tests=tests, settings=settings, path=path, resume=kill > 0)
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                 text=True)
        seen = int(child.stdout.readline())  # training runs
        while not os.path.exists(path):  # and has written its first checkpoint
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        for line in child.stdout:
            seen = int(line)  # the last epoch the child reported before it died
        child.wait(timeout=60)
        assert child.returncode == -signal.SIGKILL, "the run ended before it was killed"
        saved = fastgd.load(path)  # never a broken file
        assert seen - 1 <= saved.n_iter_ <= seen
    X, y, _ = problem(200, 20_000, seed=1)
    resumed = GDRegressor(**settings).fit(X, y, resume=path)
    assert_same_fit(resumed, GDRegressor(**settings).fit(X, y))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("path", sorted(V1_CHECKPOINTS.glob("*.fastgd")), ids=lambda p: p.stem)
def test_checkpoints_of_format_version_1_resume(tmp_path, path):
    """Checkpoints written by fastgd before the state was kept by name (format version 1:
    two vectors m and v for every optimizer; tests/data/checkpoints_v1/make.py wrote them,
    stopped after epoch 10 of 30) still load and resume, and end where an uninterrupted
    fit today does, to rounding (the file's bits were another build's)."""
    data = np.load(V1_CHECKPOINTS / "data.npz")
    saved = fastgd.load(path)
    assert saved.n_iter_ == 10
    settings = {**saved.get_params(), "checkpoint": None}
    target = {"GDClassifier": "labels"}.get(type(saved).__name__)
    X, y = data["X"], data[target or ("Y2" if np.ndim(saved.coef_) == 2 else "y")]
    if saved.standardize is False:  # the float32 case
        X, y = X.astype(np.float32), y.astype(np.float32)
    copy = tmp_path / path.name  # resuming writes no checkpoint: the file stays as it was
    shutil.copy(path, copy)
    resumed = type(saved)(**settings).fit(X, y, resume=copy)
    assert resumed.n_iter_ > 10
    # The older history goes on with the figures it had (no objective or passes), and tol
    # with what it judged (the loss): the same steps as today's until it stops.
    assert not {"objective", "passes"} & set(resumed.history_)
    today = type(saved)(**{**settings, "max_epochs": resumed.n_iter_, "tol": None}).fit(X, y)
    today.history_ = {key: today.history_[key] for key in resumed.history_}
    # The first 10 epochs are the file's, computed by the build that wrote it, with the
    # NumPy of its day: another build or NumPy rounds some sums in another order (the
    # standardization's statistics, a loss; up to 130 ulps seen, NumPy 2.4 on an AVX-512
    # CPU, at the base commit 0a51b71 built here too),
    # so that the parameters go on from the file's bits to bits a few ulps from today's.
    for key in set(resumed.history_) - {"seconds"}:  # the losses, the (automatic) rates
        np.testing.assert_allclose(resumed.history_[key], today.history_[key], rtol=1e-12,
                                   err_msg=key)
    np.testing.assert_allclose(resumed.coef_, today.coef_, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(resumed.intercept_, today.intercept_, rtol=1e-12, atol=1e-15)
    assert resumed.n_iter_ == today.n_iter_


def test_model_files_stay_version_1_and_checkpoints_are_version_2(tmp_path):
    """A plain model reads in earlier fastgd (format version 1); a checkpoint, whose state
    is kept by name, is version 2."""
    import json
    import zipfile

    X, y, _ = make_problem(100, 3)
    model = GDRegressor(optimizer="nesterov", max_epochs=3, tol=None, checkpoint=tmp_path / "c").fit(X, y)
    model.save(tmp_path / "m")
    for name, version in (("m", 1), ("c", 2)):
        with zipfile.ZipFile(tmp_path / name) as archive:
            assert json.loads(archive.read("fastgd.json"))["version"] == version


def test_a_newton_checkpoint_of_an_earlier_fastgd_resumes(tmp_path):
    """Newton's state gained the continuation's slots (widths, optimum_before) after its
    checkpoints were first written: a checkpoint without them resumes, to the same bits
    as the fit that wrote it would have ended with."""
    import json
    import zipfile

    from fastgd import load  # noqa: F401 - the reader under test is the estimator's resume

    X, y, _ = make_problem(400, 4)
    y = np.exp(y / np.abs(y).max())  # counts-like, for a Poisson fit of several steps
    settings = dict(loss="poisson", optimizer="newton", tol=1e-12, max_epochs=50)
    whole = GDRegressor(**settings).fit(X, y)
    path = tmp_path / "c"
    GDRegressor(**settings, checkpoint=path, callbacks=lambda info: info["epoch"] == 2).fit(X, y)
    old = tmp_path / "old"
    with zipfile.ZipFile(path) as archive, zipfile.ZipFile(old, "w") as rewritten:
        for entry in archive.infolist():
            data = archive.read(entry)
            if entry.filename == "fastgd.json":
                document = json.loads(data)
                slots = document["training"]["values"]["slots"]
                slots[:] = [name for name in slots if name not in ("widths", "optimum_before")]
                for name in ("widths", "optimum_before"):
                    del document["training"]["arrays"][f"state.{name}"]
                data = json.dumps(document).encode()
            elif entry.filename.startswith(("training.state.widths",
                                            "training.state.optimum_before")):
                continue
            rewritten.writestr(entry, data)
    shutil.copy(old, path)
    resumed = GDRegressor(**settings, checkpoint=path).fit(X, y, resume=path)
    assert_same_fit(resumed, whole)
