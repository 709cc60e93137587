"""GDClassifier (logistic and softmax regression) and multi-output GDRegressor."""

import numpy as np
import pytest
from conftest import assert_same_fit, make_problem
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import fastgd
from fastgd import GDClassifier, GDRegressor
from fastgd._problem import Problem


def blobs(n=600, d=5, k=3, seed=0, labels=None):
    """k overlapping classes: X (n, d) and labels y (classes 0..k-1, or `labels`)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 1.5
    index = rng.integers(0, k, n)
    X = centers[index] + rng.standard_normal((n, d))
    return X, (index if labels is None else np.asarray(labels)[index])


@pytest.mark.parametrize("load", [load_breast_cancer, load_iris, load_wine],
                         ids=["breast_cancer", "iris", "wine"])
def test_converges_to_logistic_regressions_solution(load):
    """The same penalized objective as LogisticRegression on standardized features
    (C = 1 / (n alpha)): the same coefficients, in original units."""
    X, y = load(return_X_y=True)
    C = 0.5
    alpha = 1 / (C * len(y))
    scaler = StandardScaler().fit(X)
    exact = LogisticRegression(C=C, tol=1e-12, max_iter=100_000).fit(scaler.transform(X), y)
    # tol=0: until an epoch leaves the objective where it was (its relative changes of
    # 1e-12 are still coefficient changes of 1e-6: the objective is flat at its optimum)
    model = GDClassifier(alpha=alpha, tol=0.0, tolerance_grad=0.0, max_epochs=20_000).fit(X, y)
    assert model.n_iter_ < 20_000
    coef = exact.coef_ / scaler.scale_
    assert_allclose(model.coef_, coef, rtol=1e-5, atol=1e-7 * np.abs(coef).max())
    assert_allclose(model.intercept_, exact.intercept_ - coef @ scaler.mean_, rtol=1e-5,
                    atol=1e-6)
    assert_allclose(model.predict_proba(X), exact.predict_proba(scaler.transform(X)),
                    atol=1e-6)


def test_defaults_match_logistic_regression_without_warnings():
    X, y = load_breast_cancer(return_X_y=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = GDClassifier().fit(X, y)
    exact = LogisticRegression(max_iter=10_000).fit(StandardScaler().fit_transform(X), y)
    assert model.score(X, y) >= exact.score(StandardScaler().fit_transform(X), y) - 0.01


@pytest.mark.parametrize("labels", [None, ["cat", "dog"], ["b", "a", "c"], [10, -3, 7],
                                    [True, False]])
def test_labels_of_any_type(labels):
    k = 2 if labels is None else len(labels)
    X, y = blobs(k=k, labels=labels)
    model = GDClassifier().fit(X, y)
    assert_array_equal(model.classes_, np.unique(y))
    predicted = model.predict(X)
    assert predicted.dtype == model.classes_.dtype
    assert set(predicted) <= set(y)
    assert model.score(X, y) > 0.7
    proba = model.predict_proba(X)
    assert proba.shape == (len(y), k)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert_array_equal(model.classes_[proba.argmax(axis=1)], predicted)
    assert_allclose(np.exp(model.predict_log_proba(X)), proba, rtol=1e-12)
    assert model.coef_.shape == ((1 if k == 2 else k), X.shape[1])
    decision = model.decision_function(X)
    assert decision.shape == ((len(y),) if k == 2 else (len(y), k))


def test_binary_probabilities_are_the_sigmoid_of_the_logit():
    X, y = blobs(k=2)
    model = GDClassifier().fit(X, y)
    z = X @ model.coef_[0] + model.intercept_[0]
    assert_allclose(model.decision_function(X), z, rtol=1e-12)
    assert_allclose(model.predict_proba(X)[:, 1], 1 / (1 + np.exp(-z)), rtol=1e-12)


@pytest.mark.parametrize("k", [2, 4])
def test_huge_logits_give_finite_probabilities(k):
    X, y = blobs(k=k)
    model = GDClassifier(max_epochs=5, tol=None).fit(X, y)
    model.coef_ = model.coef_ * 1e6  # logits of millions
    log_proba = model.predict_log_proba(X)
    assert np.isfinite(log_proba).all() and (log_proba <= 0).all()
    assert_allclose(model.predict_proba(X).sum(axis=1), 1.0)


def test_training_with_huge_logits_has_no_overflow():
    """Logits of millions: the loss is huge but finite (log-sum-exp), so the run is
    caught as an explosion, not as a NaN."""
    X, y = blobs(k=3)
    with pytest.raises(fastgd.DivergenceError, match="exploded from 1.099 to"):
        GDClassifier(max_epochs=3, tol=None, standardize=False, learning_rate=1e4,
                     optimizer="sgd").fit(X * 1e3, y)


@pytest.mark.parametrize("k", [2, 3])
def test_class_weight_is_a_sample_weight_per_class(k):
    X, y = blobs(k=k)
    weights = {c: 1.0 + c for c in range(k)}
    a = GDClassifier(class_weight=weights, random_state=0).fit(X, y)
    b = GDClassifier(random_state=0).fit(X, y, sample_weight=np.array([weights[c] for c in y]))
    assert_same_fit(a, b)
    sw = np.random.default_rng(1).uniform(0.5, 2, len(y))
    c = GDClassifier(class_weight="balanced").fit(X, y, sample_weight=sw)
    balanced = len(y) / (k * np.bincount(y))
    d = GDClassifier().fit(X, y, sample_weight=sw * balanced[y])
    assert_same_fit(c, d)


def test_engines_and_threads_agree():
    X, y = blobs(n=3000, d=20, k=4)
    kw = dict(batch_size=64, max_epochs=5, tol=None, random_state=0, optimizer="adam",
              learning_rate=0.01)
    one = GDClassifier(n_threads=1, **kw).fit(X, y)
    assert_same_fit(one, GDClassifier(n_threads=2, **kw).fit(X, y))
    numpy = GDClassifier(engine="numpy", **kw).fit(X, y)
    assert_allclose(numpy.coef_, one.coef_, rtol=1e-9)
    assert_allclose(numpy.history_["loss"], one.history_["loss"], rtol=1e-10)


def test_partial_fit_learns_the_classes_first():
    X, y = blobs(labels=["x", "y", "z"])
    model = GDClassifier()
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        model.partial_fit(X, y)
    model.partial_fit(X[:100], y[:100], classes=["z", "y", "x"])
    assert_array_equal(model.classes_, ["x", "y", "z"])
    for _ in range(30):
        model.partial_fit(X, y)
    assert model.n_iter_ == 31 == len(model.history_["loss"])
    assert model.score(X, y) > 0.8
    with pytest.raises(ValueError, match="not among classes_"):
        model.partial_fit(X[:2], np.array(["x", "w"]))
    with pytest.raises(ValueError, match="differs from the classes"):
        model.partial_fit(X, y, classes=["x", "y"])
    with pytest.raises(ValueError, match="balanced"):
        GDClassifier(class_weight="balanced").partial_fit(X, y, classes=["x", "y", "z"])


@pytest.mark.parametrize("k", [2, 3])
def test_partial_fit_epochs_equal_fit_epochs(k):
    """fit(max_epochs=4) then three partial_fit calls are the very epochs of
    fit(max_epochs=7): the optimizer state, the step count and the row orders carry on."""
    X, y = blobs(k=k)
    kw = dict(tol=None, random_state=3, batch_size=50, optimizer="adam", learning_rate=0.05)
    parts = GDClassifier(max_epochs=4, **kw)
    parts.fit(X, y)  # fixes learning rate and standardization as fit does; then go on
    for _ in range(3):
        parts.partial_fit(X, y)
    assert parts.n_iter_ == 7
    assert_same_fit(parts, GDClassifier(max_epochs=7, **kw).fit(X, y))


def test_stratified_early_stopping():
    X, y = blobs(n=1000, k=3, seed=4)
    y[:100] = 2  # unequal classes
    model = GDClassifier(early_stopping=True, validation_fraction=0.2, random_state=0,
                         alpha=0.0, max_epochs=3000).fit(X, y)
    assert len(model.history_["val_loss"]) == model.n_iter_
    rng = np.random.RandomState(0)
    rng.randint(2**62)  # the shuffle seed's draw comes first
    held = model._holdout(Problem(X, y[:, None].astype(float), None, None), rng).val_rows
    assert len(held) == 200
    assert_allclose(np.bincount(y[held]) / 200, np.bincount(y) / 1000, atol=0.01)


def test_early_stopping_with_a_class_too_rare_to_stratify_says_so():
    X, _ = blobs(n=100)
    y = np.r_[np.zeros(99, dtype=int), 1]
    with pytest.raises(ValueError, match="early_stopping=True draws validation rows"):
        GDClassifier(early_stopping=True).fit(X, y)


def test_one_class_and_continuous_targets_are_refused():
    X, _ = blobs()
    with pytest.raises(ValueError, match="at least 2 classes"):
        GDClassifier().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="Unknown label type"):
        GDClassifier().fit(X, np.linspace(0, 1, len(X)))


def test_warm_start_and_init():
    X, y = blobs(k=3)
    model = GDClassifier(warm_start=True, max_epochs=3, tol=None).fit(X, y)
    first = model.history_["loss"][-1]
    model.fit(X, y)
    assert model.history_["loss"][0] < first  # went on from the previous coefficients
    with pytest.raises(ValueError, match=r"coef_init must have shape \(3, 5\)"):
        GDClassifier().fit(X, y, coef_init=np.zeros((1, 5)))
    with pytest.raises(ValueError, match="model of 1 output"):
        model.fit(X, np.where(y == 2, 1, y))  # two classes now: a different shape
    assert model.coef_.shape == (3, 5) and len(model.classes_) == 3  # still usable
    start = GDClassifier(max_epochs=1, tol=None, optimizer="sgd", standardize=False,
                         learning_rate=0.1)
    start.fit(X, y, coef_init=np.ones((3, 5)), intercept_init=np.array([1.0, 2.0, 3.0]))
    Z = X @ np.ones((3, 5)).T + [1.0, 2.0, 3.0]
    assert_allclose(start.history_["loss"][0],
                    np.mean(np.log(np.exp(Z).sum(axis=1)) - Z[np.arange(len(y)), y]))


def test_save_and_load(tmp_path):
    X, y = blobs(labels=["low", "mid", "high"])
    model = GDClassifier(max_epochs=50, tol=None).fit(X, y)
    model.save(tmp_path / "m.fastgd")
    loaded = fastgd.load(tmp_path / "m.fastgd")
    assert type(loaded) is GDClassifier
    assert_array_equal(loaded.classes_, model.classes_)
    assert_array_equal(loaded.predict(X), model.predict(X))
    assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    loaded.partial_fit(X, y)  # goes on (afresh) from the loaded model
    assert loaded.n_iter_ == 1


def test_pipeline_grid_search_and_dataframes():
    import pandas as pd
    from sklearn.model_selection import GridSearchCV

    X, y = blobs(n=300, d=3, labels=["a", "b", "c"])
    frame = pd.DataFrame(X, columns=["u", "v", "w"])
    search = GridSearchCV(GDClassifier(), {"alpha": [1e-3, 1e-1]}, cv=3).fit(frame, y)
    assert list(search.best_estimator_.feature_names_in_) == ["u", "v", "w"]
    assert search.best_score_ > 0.7  # overlapping classes


def test_multi_output_regression_is_each_output_alone():
    X, y, _ = make_problem(800, 6)
    Y = np.column_stack([y, 3 - 2 * y, X[:, 0]])
    kw = dict(optimizer="adam", learning_rate=0.05, batch_size=64, max_epochs=10, tol=None,
              random_state=0)
    both = GDRegressor(**kw).fit(X, Y)
    assert both.coef_.shape == (3, 6) and both.intercept_.shape == (3,)
    assert both.predict(X).shape == (800, 3)
    for o in range(3):
        alone = GDRegressor(**kw).fit(X, Y[:, o])
        assert_allclose(both.coef_[o], alone.coef_, rtol=1e-10)
        assert_allclose(both.intercept_[o], alone.intercept_, rtol=1e-10)
    column = GDRegressor(**kw).fit(X, Y[:, :1])  # y of shape (n, 1): 2-D attributes
    assert column.coef_.shape == (1, 6) and column.predict(X).shape == (800, 1)
    assert GDRegressor().fit(X, Y).score(X, Y) > 0.99


def test_multi_output_save_load_and_partial_fit(tmp_path):
    X, y, _ = make_problem(200, 3)
    Y = np.column_stack([y, -y])
    model = GDRegressor(max_epochs=5, tol=None).fit(X, Y)
    model.save(tmp_path / "m.fastgd")
    loaded = fastgd.load(tmp_path / "m.fastgd")
    assert_array_equal(loaded.predict(X), model.predict(X))
    model.partial_fit(X, Y)
    with pytest.raises(ValueError, match="fitted to y of shape"):
        model.partial_fit(X, y)


def test_class_weight_survives_save_and_load(tmp_path):
    X, y = blobs(k=3)
    for weights in ({0: 1.0, 1: 3.0, 2: 0.5}, {np.int64(1): 2.0}, "balanced"):
        model = GDClassifier(class_weight=weights, max_epochs=5, tol=None).fit(X, y)
        model.save(tmp_path / "m")
        loaded = fastgd.load(tmp_path / "m")
        assert loaded.class_weight == weights
        assert_same_fit(loaded.fit(X, y), model)  # the same weights refit the same model
    labels = np.array([True, False])[y % 2]
    model = GDClassifier(class_weight={True: 2.0}, max_epochs=2, tol=None).fit(X, labels)
    model.save(tmp_path / "b")
    assert fastgd.load(tmp_path / "b").class_weight == {True: 2.0}


@pytest.mark.parametrize("weights,message", [
    ("bogus", "class_weight must be None, 'balanced' or a dict"),
    ({0: -1.0}, r"class_weight\[0\] must be a finite number >= 0"),
    ({0: "heavy"}, r"class_weight\[0\] must be a number"),
])
def test_bad_class_weights_are_refused(weights, message):
    X, y = blobs()
    with pytest.raises((ValueError, TypeError), match=message):
        GDClassifier(class_weight=weights).fit(X, y)


def test_a_refused_warm_start_keeps_the_fitted_model_whole():
    import pandas as pd

    X, y = blobs(d=2, k=3)
    before = pd.DataFrame(X, columns=["a", "b"])
    model = GDClassifier(warm_start=True, max_epochs=3, tol=None).fit(before, y)
    with pytest.raises(ValueError, match="warm_start=True"):
        model.fit(pd.DataFrame(X, columns=["c", "d"]), y % 2)
    assert list(model.feature_names_in_) == ["a", "b"]
    assert model.predict(before).shape == (len(y),)
    plain = GDClassifier(warm_start=True, max_epochs=3, tol=None).fit(X, y)
    with pytest.raises(ValueError, match="warm_start=True"):
        plain.fit(pd.DataFrame(X, columns=["c", "d"]), y % 2)
    assert not hasattr(plain, "feature_names_in_")


def test_a_new_optimizer_in_partial_fit_gets_its_own_auto_rate():
    X, y = blobs()
    model = GDClassifier().partial_fit(X, y, classes=[0, 1, 2])
    assert model.learning_rate_ > 0.1  # 1 / L on standardized features
    nesterov_rate = model.learning_rate_
    model.set_params(optimizer="adam").partial_fit(X, y)
    assert 0 < model.learning_rate_ < np.inf  # Adam's, sized by the step from here
    assert model.learning_rate_ not in (nesterov_rate, 0.001)
    model.set_params(optimizer="sgd").partial_fit(X, y)
    assert model.learning_rate_ == GDClassifier(optimizer="sgd").partial_fit(
        X, y, classes=[0, 1, 2]).learning_rate_
