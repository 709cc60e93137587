"""The margin losses of GDClassifier (hinge, squared_hinge, modified_huber): their
definitions against scikit-learn's SGDClassifier losses and torch's MultiMarginLoss, the
optimum against LinearSVC and the KKT conditions, one-vs-rest for more classes, modified
Huber's probabilities against SGDClassifier's, and every entry point that takes them."""

import json
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastgd
from fastgd import losses, reference

sgd_fast = pytest.importorskip("sklearn.linear_model._sgd_fast")
linear_model = pytest.importorskip("sklearn.linear_model")
svm = pytest.importorskip("sklearn.svm")
MARGIN = ("hinge", "squared_hinge", "modified_huber")
SKLEARN = {"hinge": sgd_fast.Hinge(1.0), "squared_hinge": sgd_fast.SquaredHinge(1.0),
           "modified_huber": sgd_fast.ModifiedHuber()}


def labelled(n=1500, d=5, seed=0, classes=2, flip=0.1):
    """Overlapping classes (some labels flipped): support vectors on both sides."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 2, d)
    scores = X @ rng.standard_normal((d, classes))
    y = scores.argmax(axis=1) if classes > 2 else (scores[:, 0] > 0.3).astype(int)
    flipped = rng.random(n) < flip
    y[flipped] = rng.integers(0, classes, flipped.sum())
    return X, y, rng.uniform(0.2, 3, n)


def symmetric(X, y):
    """(X, -X) with the labels swapped: the optimal intercept is 0, so that a fit with an
    intercept has LinearSVC(fit_intercept=False)'s optimum (which penalizes none)."""
    return np.vstack([X, -X]), np.concatenate([y, 1 - y])


def objective(name, X, y, coef, intercept, alpha, w=None):
    """The mean loss by scikit-learn's own formulas + alpha |coef|^2 / 2."""
    z = X @ np.ravel(coef) + np.ravel(intercept)[0]
    loss = SKLEARN[name]
    values = [loss.py_loss(p, 2.0 * t - 1.0) for p, t in zip(z, y)]
    return np.average(values, weights=w) + 0.5 * alpha * np.sum(np.square(coef))


@pytest.mark.parametrize("name", MARGIN)
def test_value_and_gradient_are_sgd_classifiers(name):
    rng = np.random.default_rng(0)
    z, y = rng.uniform(-3, 3, 400), rng.integers(0, 2, 400).astype(float)
    z[:40] = np.where(y[:40] == 1, 1.0, -1.0)  # at the margin (the hinge's kink): its
    z[40:60] = np.where(y[40:60] == 1, -1.0, 1.0)  # subgradient; modified Huber's joint
    t = 2 * y - 1
    expected = np.array([SKLEARN[name].py_loss(a, b) for a, b in zip(z, t)])
    gradient = np.array([SKLEARN[name].py_dloss(a, b) for a, b in zip(z, t)])
    loss = losses.get(name)
    value, derivative = loss.value_and_gradient(z[:, None], y[:, None])
    assert_allclose(value, expected, rtol=1e-15, atol=0)
    assert_allclose(derivative[:, 0], gradient, rtol=0, atol=0)
    X = np.eye(400)  # the compiled and reference passes: z = X w + b at X = I
    for loss_and_grad in (fastgd.loss_and_grad, reference.loss_and_grad):
        mean, grad_coef, _ = loss_and_grad(X, y, z, 0.0, loss=name)
        assert_allclose(mean, expected.mean(), rtol=1e-13)
        assert_allclose(grad_coef, gradient / 400, rtol=1e-13, atol=1e-17)


@pytest.mark.parametrize("name,p", [("hinge", 1), ("squared_hinge", 2)])
def test_the_hinges_are_torchs_multi_margin_loss_of_the_logits_zero_and_z(name, p):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    z, y = rng.uniform(-3, 3, 300), rng.integers(0, 2, 300)
    logits = torch.tensor(np.c_[np.zeros(300), z], requires_grad=True)
    total = torch.nn.MultiMarginLoss(p=p, reduction="sum")(logits, torch.tensor(y))
    total.backward()
    value, derivative = losses.get(name).value_and_gradient(z[:, None], y[:, None] * 1.0)
    assert_allclose(value.sum(), 2 * total.item(), rtol=1e-13)  # torch's: over 2 classes
    assert_allclose(derivative[:, 0], 2 * logits.grad[:, 1].numpy(), rtol=1e-13, atol=1e-15)


def test_the_smoothed_hinge_is_differentiable_and_within_its_width_below():
    rng = np.random.default_rng(2)
    z, y, h = rng.uniform(-2, 3, 3000), rng.integers(0, 2, 3000) * 1.0, 0.4
    exact, smooth = losses.get("hinge"), losses.get("hinge").smoothed(h)
    assert not exact.smooth and smooth.smooth and smooth.smoothing == h
    e = 1e-6
    numeric = (smooth.value(z + e, y) - smooth.value(z - e, y)) / (2 * e)
    assert_allclose(smooth.derivative(z, y), numeric, atol=1e-8)
    gap = exact.value(z, y) - smooth.value(z, y)
    assert gap.min() >= 0 and gap.max() <= h / 2 + 1e-15
    curvature = smooth.second_derivative(z, y)
    assert (curvature > 0).all() and (curvature <= 1 / h).all()
    from fastgd._engines import engine_for
    from fastgd._problem import Problem

    X = rng.standard_normal((3000, 3))
    problem = Problem(X, y[:, None], rng.uniform(0.5, 2, 3000), smooth, 1)
    theta = np.array([0.3, -0.2, 0.5, 0.1])
    compiled = engine_for(X, "cython", 2).hessian(problem, theta, None)
    numpy = engine_for(X, "numpy", 1).hessian(problem, theta, None)
    for a, b in zip(compiled, numpy):
        assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("name", ["hinge", "squared_hinge"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("engine", ["cython", "numpy"])
def test_the_optimum_is_linear_svcs(name, weighted, engine):
    """LinearSVC minimizes |w|^2 / 2 + C sum w_i l_i: fastgd's objective times 1 / (C n)
    with C = 1 / (n alpha), on data whose optimal intercept is 0 (and whose rows are on
    the margin in pairs: degenerate, more rows there than parameters)."""
    X, y = symmetric(*labelled()[:2])
    w = np.tile(labelled()[2], 2) if weighted else None
    alpha = 1e-2
    model = fastgd.GDClassifier(loss=name, alpha=alpha, standardize=False,
                                engine=engine).fit(X, y, sample_weight=w)
    total = len(X) if w is None else w.sum()
    # (at tol=1e-12 liblinear's coordinate descent can cycle, to a worse objective)
    svc = svm.LinearSVC(loss=name, C=1 / (total * alpha), fit_intercept=False, tol=1e-10,
                        max_iter=1_000_000).fit(X, y, sample_weight=w)
    assert svc.n_iter_ < 1_000_000
    scale = np.abs(svc.coef_).max()
    assert_allclose(model.coef_, svc.coef_, rtol=1e-6, atol=1e-6 * scale)
    assert abs(model.intercept_[0]) <= 1e-6 * scale
    assert objective(name, X, y, model.coef_, model.intercept_, alpha, w) <= objective(
        name, X, y, svc.coef_, 0.0, alpha, w) + 1e-14


@pytest.mark.parametrize("weighted", [False, True])
def test_with_an_intercept_the_hinge_optimum_is_libsvms(weighted):
    """SVC(kernel="linear") solves the same problem, its intercept unpenalized: the same
    coefficients and intercept, from the default tol (the polish's exact optimum)."""
    X, y, w = labelled(n=2000, seed=12)
    w = w if weighted else None
    alpha = 3e-3
    model = fastgd.GDClassifier(loss="hinge", alpha=alpha, standardize=False).fit(
        X, y, sample_weight=w)
    total = len(X) if w is None else w.sum()
    peer = svm.SVC(kernel="linear", C=1 / (total * alpha), tol=1e-12).fit(
        X, y, sample_weight=w)
    scale = np.abs(peer.coef_).max()
    assert_allclose(model.coef_, peer.coef_, rtol=1e-6, atol=1e-6 * scale)
    assert_allclose(model.intercept_, peer.intercept_, rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize("seed", [3, 7, 11])
def test_rows_repeated_on_the_margin(seed):
    """Rows of a few distinct values (as one-hot data's), repeated across the margin: the
    polish reads some copies of a row and must count the others that cross (a set of
    the rows read by value took them for read, and ended at a worse objective)."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(-2, 3, (12, 2)).astype(float)
    X = grid[rng.integers(0, 12, 600)]
    y = ((X @ rng.standard_normal(2) + 0.3 * rng.standard_normal(600)) > 0).astype(int)
    alpha = 0.01
    model = fastgd.GDClassifier(loss="hinge", alpha=alpha, standardize=False).fit(X, y)
    peer = svm.SVC(kernel="linear", C=1 / (600 * alpha), tol=1e-12).fit(X, y)
    assert objective("hinge", X, y, model.coef_, model.intercept_, alpha) <= objective(
        "hinge", X, y, peer.coef_, peer.intercept_, alpha) + 1e-12
    rng = np.random.default_rng(13)
    X = rng.integers(0, 2, (800, 2)).astype(float)
    y = np.round(X @ [1.0, 2.0] + 0.5 * rng.standard_normal(800))
    quantile = fastgd.GDRegressor(loss="quantile", quantile=0.7, alpha=1e-2,
                                  standardize=False).fit(X, y)
    pinball = losses.get("quantile", quantile=0.7)

    def ridge_pinball(coef, intercept):
        residual = (X @ coef + intercept)[:, None]
        return pinball.value(residual, y[:, None]).mean() + 0.5e-2 * coef @ coef

    best = ridge_pinball(quantile.coef_, quantile.intercept_)
    assert best <= ridge_pinball(np.array([1.0, 2.0]), 0.0) + 1e-12
    for step in np.random.default_rng(0).standard_normal((100, 3)) * 1e-3:
        assert ridge_pinball(quantile.coef_ + step[:2], quantile.intercept_ + step[2]) >= (
            best - 1e-12)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("standardize", [False, True])
def test_the_hinge_optimum_meets_its_kkt_conditions(weighted, standardize):
    """With an intercept (unbalanced classes): at the optimum of the weighted mean hinge +
    alpha |w|^2 / 2 (w in trained units) there are multipliers beta in [0, 1], 1 for rows
    inside the margin and 0 beyond it, with alpha w = mean(v beta t x) (weights v) and
    sum(v beta t) = 0; those of the rows on the margin are solved for here, by least
    squares, from fastgd's model."""
    X, y, v = labelled(n=3000, seed=3)
    v = v if weighted else np.ones(len(X))
    alpha = 3e-3
    model = fastgd.GDClassifier(loss="hinge", alpha=alpha, standardize=standardize).fit(
        X, y, sample_weight=v if weighted else None)
    t = 2.0 * y - 1
    margin = t * (X @ model.coef_[0] + model.intercept_[0])
    on = np.abs(margin - 1) <= 1e-9
    inside = (margin < 1) & ~on
    assert 0 < on.sum() <= X.shape[1] + 1 and inside.sum() > 100
    mean = np.average(X, axis=0, weights=v)  # trained w = coef * (weighted) scale
    scale = np.sqrt(np.average((X - mean) ** 2, axis=0, weights=v)) if standardize else 1
    A = np.hstack([X, np.ones((len(X), 1))]) * (t * v)[:, None]
    target = np.append(alpha * v.sum() * model.coef_[0] * scale ** 2, 0.0) - A[
        inside].sum(axis=0)
    beta, *_ = np.linalg.lstsq(A[on].T, target, rcond=None)
    assert_allclose(A[on].T @ beta, target, atol=1e-9 * np.abs(target).max())
    assert (beta >= -1e-9).all() and (beta <= 1 + 1e-9).all()


@pytest.mark.parametrize("name", ["squared_hinge", "modified_huber"])
def test_the_smooth_margin_losses_reach_a_zero_gradient_on_every_solver(name):
    """The gradient of the objective by scikit-learn's derivatives is 0 at the optimum,
    from Newton, L-BFGS and Adam alike; SGDClassifier's own fit of the same objective
    (its alpha, its unpenalized intercept) gets no lower."""
    X, y, _ = labelled(seed=4)
    alpha = 1e-2
    t = 2.0 * y - 1
    # (L-BFGS stops on its own tests, torch's: a gradient of 1e-5 here)
    for optimizer, tol, within in (("newton", 1e-10, 1e-7), ("auto", 1e-10, 1e-7),
                                   ("lbfgs", 1e-12, 1e-4)):
        model = fastgd.GDClassifier(loss=name, alpha=alpha, standardize=False,
                                    optimizer=optimizer, tol=tol).fit(X, y)
        z = X @ model.coef_[0] + model.intercept_[0]
        dloss = np.array([SKLEARN[name].py_dloss(a, b) for a, b in zip(z, t)])
        gradient = np.append(X.T @ dloss / len(X) + alpha * model.coef_[0], dloss.mean())
        assert np.abs(gradient).max() <= within, optimizer
    peer = linear_model.SGDClassifier(loss=name, alpha=alpha, max_iter=2000, tol=1e-10,
                                      random_state=0).fit(X, y)
    assert objective(name, X, y, model.coef_, model.intercept_, alpha) <= objective(
        name, X, y, peer.coef_, peer.intercept_, alpha)
    assert (model.predict(X) == peer.predict(X)).mean() >= 0.97


@pytest.mark.parametrize("name", MARGIN)
def test_more_classes_are_one_binary_fit_each_against_the_rest(name):
    X, y, w = labelled(classes=3, seed=5)
    settings = dict(loss=name, alpha=1e-2, tol=1e-10, standardize=False)
    model = fastgd.GDClassifier(**settings).fit(X, y, w)
    assert model.coef_.shape == (3, X.shape[1])
    for c in range(3):
        alone = fastgd.GDClassifier(**settings).fit(X, (y == c).astype(int), w)
        assert_allclose(model.coef_[c], alone.coef_[0], rtol=1e-7, atol=1e-9)
        assert_allclose(model.intercept_[c], alone.intercept_[0], rtol=1e-7, atol=1e-9)
    assert (model.predict(X) == model.decision_function(X).argmax(axis=1)).all()
    assert model.score(X, y) > 0.7


@pytest.mark.parametrize("classes", [2, 4])
def test_modified_hubers_probabilities_are_sgd_classifiers(classes):
    """SGDClassifier.predict_proba of the same coefficients: clipped, normalized, uniform
    where every class's is 0."""
    X, y, _ = labelled(classes=classes, seed=6)
    model = fastgd.GDClassifier(loss="modified_huber").fit(X, y)
    peer = linear_model.SGDClassifier(loss="modified_huber", max_iter=5).fit(X, y)
    peer.coef_, peer.intercept_ = model.coef_.copy(), model.intercept_.copy()
    X_far = np.vstack([X, -50 * X[:20]])  # rows with every class's score below -1
    assert_allclose(model.predict_proba(X_far), peer.predict_proba(X_far), rtol=1e-15)
    with np.errstate(divide="ignore"):
        assert_allclose(model.predict_log_proba(X_far), np.log(peer.predict_proba(X_far)))
    assert (model.predict(X) == peer.predict(X)).all()
    linear = model._model()
    assert_allclose(linear.predict_proba(X_far), model.predict_proba(X_far), rtol=1e-15)


def test_the_hinges_have_no_probabilities():
    X, y, _ = labelled(n=300)
    for name in ("hinge", "squared_hinge"):
        model = fastgd.GDClassifier(loss=name).fit(X, y)
        assert not hasattr(model, "predict_proba")
        assert not hasattr(model, "predict_log_proba")
        with pytest.raises(AttributeError, match="has no attribute 'predict_proba'") as info:
            model.predict_proba(X)
        assert f"not available for loss='{name}'" in str(info.value.__cause__)
        with pytest.raises(AttributeError, match="gives no class probabilities"):
            model._model().predict_proba(X)
    assert hasattr(fastgd.GDClassifier(loss="modified_huber"), "predict_proba")


def test_solvers_and_bad_input():
    X, y, _ = labelled(n=400)
    with pytest.raises(ValueError, match="optimizer='lbfgs' needs a loss with a gradient "
                                         "everywhere; the hinge loss has a kink"):
        fastgd.GDClassifier(loss="hinge", optimizer="lbfgs").fit(X, y)
    assert fastgd.GDClassifier(loss="hinge").fit(X, y).solver_ == "newton"
    with pytest.raises(ValueError, match="y must hold labels 0 or 1 for loss='hinge'"):
        fastgd.loss_and_grad(X, np.full(400, 0.5), np.zeros(5), 0.0, loss="hinge")
    # subgradient steps with a decaying rate approach the optimum
    model = fastgd.GDClassifier(loss="hinge", optimizer="sgd", learning_rate=0.1,
                                schedule="invscaling", power_t=0.5, batch_size=32,
                                max_epochs=100, tol=None, random_state=0,
                                standardize=False).fit(X, y)
    best = fastgd.GDClassifier(loss="hinge", standardize=False).fit(X, y)
    assert objective("hinge", X, y, best.coef_, best.intercept_, 1e-3) <= objective(
        "hinge", X, y, model.coef_, model.intercept_, 1e-3) <= 1.1 * objective(
        "hinge", X, y, best.coef_, best.intercept_, 1e-3)


def test_sparse_x_early_stopping_partial_fit_and_save_load(tmp_path):
    sparse = pytest.importorskip("scipy.sparse")
    X, y, w = labelled(classes=3, seed=7)
    dense = fastgd.GDClassifier(loss="hinge", standardize=False).fit(X, y, w)
    on_sparse = fastgd.GDClassifier(loss="hinge", standardize=False).fit(
        sparse.csr_matrix(X), y, w)
    assert_allclose(on_sparse.coef_, dense.coef_, rtol=1e-9, atol=1e-12)
    for name in ("hinge", "modified_huber"):  # Newton's continuation, and Newton
        stopped = fastgd.GDClassifier(loss=name, early_stopping=True, random_state=0).fit(
            X, y)
        assert stopped.score(X, y) > 0.7 and "val_loss" in stopped.history_
    partial = fastgd.GDClassifier(loss="squared_hinge", learning_rate=0.01)
    partial.partial_fit(X[:700], y[:700], classes=[0, 1, 2])
    partial.partial_fit(X[700:], y[700:])
    assert partial.coef_.shape == (3, X.shape[1]) and partial.score(X, y) > 0.6
    dense.save(tmp_path / "m.fastgd")
    loaded = fastgd.load(tmp_path / "m.fastgd")
    assert (loaded.decision_function(X) == dense.decision_function(X)).all()
    assert not hasattr(loaded, "predict_proba")


def test_the_dask_engine_fits_the_same_one_vs_rest_model(client):
    da = pytest.importorskip("dask.array")
    X, y, w = labelled(classes=3, seed=8)
    expected = fastgd.GDClassifier(loss="hinge").fit(X, y, w)
    model = fastgd.GDClassifier(loss="hinge").fit(
        da.from_array(X, chunks=(500, -1)), da.from_array(y, chunks=500),
        sample_weight=da.from_array(w, chunks=500), client=client)
    assert_allclose(model.coef_, expected.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", MARGIN)
def test_onnx_graphs_give_the_labels_and_scores_or_probabilities(name):
    ort = pytest.importorskip("onnxruntime")
    for classes in (2, 3):
        X, y, _ = labelled(n=400, classes=classes, seed=9)
        model = fastgd.GDClassifier(loss=name).fit(X, y)
        session = ort.InferenceSession(model.to_onnx(np.float64).SerializeToString())
        label, second = session.run(None, {"X": X})
        assert (label == model.predict(X)).all()
        if name == "modified_huber":
            assert session.get_outputs()[1].name == "probabilities"
            assert_allclose(second, model.predict_proba(X), rtol=1e-12, atol=1e-15)
        else:
            z = model.decision_function(X)
            assert session.get_outputs()[1].name == "scores"
            assert_allclose(second, np.c_[-z, z] if classes == 2 else z, rtol=1e-12,
                            atol=1e-12)


def test_on_the_command_line(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y, _ = labelled(n=600, classes=3, seed=10)
    table = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])]).assign(
        label=np.array(["a", "b", "c"])[y])
    table.to_csv(tmp_path / "t.csv", index=False)

    def fastgd_cli(*args):
        return subprocess.run([sys.executable, "-m", "fastgd", *args], cwd=tmp_path,
                              capture_output=True, text=True)

    done = fastgd_cli("train", "t.csv", "--target", "label", "--loss", "hinge", "-q",
                      "-o", "h.fastgd", "--json", "scores.json")
    assert done.returncode == 0, done.stderr
    scores = json.loads((tmp_path / "scores.json").read_text())["metrics"]
    assert scores["accuracy"] > 0.7 and "log_loss" not in scores
    refused = fastgd_cli("predict", "h.fastgd", "t.csv", "--proba", "-o", "p.csv")
    assert refused.returncode == 2 and "hinge, gives no probabilities" in refused.stderr
    assert fastgd_cli("predict", "h.fastgd", "t.csv", "-o", "p.csv").returncode == 0
    evaluated = fastgd_cli("evaluate", "h.fastgd", "t.csv", "--target", "label")
    assert evaluated.returncode == 0 and "accuracy" in evaluated.stdout
    assert "log-loss" not in evaluated.stdout
    huber = fastgd_cli("train", "t.csv", "--target", "label", "--loss", "modified_huber",
                       "-q", "-o", "m.fastgd")
    assert huber.returncode == 0 and "log-loss" in huber.stdout


@pytest.mark.parametrize("name", MARGIN)
def test_a_checkpointed_fit_resumes_to_the_same_bits(tmp_path, name):
    """Newton's continuation (the hinge's widths, the polish at the end) and the smooth
    margin losses' Newton steps resume from a checkpoint to an uninterrupted fit's bits."""
    from conftest import assert_same_fit

    X, y, w = labelled(classes=3, seed=11)
    settings = dict(loss=name, tol=1e-10)
    uninterrupted = fastgd.GDClassifier(**settings).fit(X, y, w)
    path = tmp_path / "fit.ckpt"
    fastgd.GDClassifier(**settings, checkpoint=path,
                        callbacks=lambda e: e["epoch"] == 3).fit(X, y, w)
    resumed = fastgd.GDClassifier(**settings, checkpoint=path).fit(X, y, w, resume=path)
    assert uninterrupted.n_iter_ > 3
    assert_same_fit(resumed, uninterrupted)


@pytest.mark.parametrize("name", ["squared_hinge", "modified_huber"])
def test_adam_on_mini_batches_approaches_the_optimum(name):
    X, y, _ = labelled(seed=4)
    alpha = 1e-2
    best = fastgd.GDClassifier(loss=name, alpha=alpha, standardize=False, tol=1e-10).fit(X, y)
    model = fastgd.GDClassifier(loss=name, alpha=alpha, standardize=False, optimizer="adam",
                                learning_rate=0.01, schedule="invscaling", power_t=0.5,
                                batch_size=64, max_epochs=60, tol=None,
                                random_state=0).fit(X, y)
    optimum = objective(name, X, y, best.coef_, best.intercept_, alpha)
    reached = objective(name, X, y, model.coef_, model.intercept_, alpha)
    assert optimum <= reached <= optimum * (1 + 1e-4)
