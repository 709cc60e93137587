"""scipy.sparse X: checked up front, read in place as CSR, the same results as X.toarray().

The compiled CSR passes against fastgd.reference's and against the dense passes on the
same data; any thread count the same bits; malformed matrices refused by name; the
estimators, pipelines and files with sparse X.
"""

import warnings
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import BUILDS, LOSSES, OPTIMIZERS, loss_id, targets_for

import fastgd
from fastgd import _sparse, optimizers, reference
from fastgd._engines import Sparse, engine_for
from fastgd._problem import EpochPlan, Problem
from fastgd._state import Standardization

RTOL = {np.float64: 1e-10, np.float32: 1e-5}


def sparse_problem(n=300, d=40, density=0.1, *, seed=0, dtype=np.float64, index=np.int32,
                   fmt="csr", k=1, loss=None, weights=False):
    """A random sparse X (some rows empty), parameters and targets from the loss's link."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, format="csr", random_state=seed, dtype=np.float64)
    X.data = (X.data * 4 - 2).astype(dtype)
    X = X.astype(dtype)
    X.indices, X.indptr = X.indices.astype(index), X.indptr.astype(index)
    coef = rng.normal(size=(k, d))
    intercept = rng.normal(size=k)
    Y = targets_for(loss, np.asarray(X @ coef.T + intercept)) if loss else None
    sw = rng.uniform(0, 2, n) if weights else None
    return X.asformat(fmt), Y, coef, intercept, sw


def public_targets(loss, Y):
    return Y[:, 0] if Y.shape[1] == 1 or loss.class_indices else Y


@pytest.mark.parametrize("loss", LOSSES, ids=loss_id)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("index", [np.int32, np.int64])
def test_loss_and_grad_equals_dense_and_reference(loss, dtype, index):
    k = max(loss.min_outputs, 3 if loss.class_indices else 1)
    X, Y, coef, intercept, sw = sparse_problem(dtype=dtype, index=index, k=k, loss=loss,
                                               weights=True)
    y = public_targets(loss, Y)
    params = {name: loss.param for name in loss.params}
    args = (y, coef, intercept)
    kwargs = dict(loss=loss.name, sample_weight=sw, **params)
    sparse = fastgd.loss_and_grad(X, *args, **kwargs)
    dense = fastgd.loss_and_grad(X.toarray(), *args, **kwargs)
    ref = reference.loss_and_grad(X, *args, **kwargs)
    for a, b, c in zip(sparse, dense, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=1e-12)
        np.testing.assert_allclose(a, c, rtol=RTOL[dtype], atol=1e-12)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dok", "bsr"])
@pytest.mark.parametrize("array", [False, True])
def test_every_format_gives_the_same_result(fmt, array):
    X, _, coef, intercept, _ = sparse_problem(fmt=fmt)
    y = np.arange(X.shape[0]) % 3 - 1.0
    if array:
        X = sp.csr_array(X).asformat(fmt)
    expected = fastgd.loss_and_grad(X.toarray(), y, coef[0], 0.5)
    for a, b in zip(fastgd.loss_and_grad(X, y, coef[0], 0.5), expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_csr_is_read_in_place_and_never_changed():
    X, *_ = sparse_problem()
    assert _sparse.as_csr(X) is X
    before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    fastgd.GDRegressor(max_epochs=5, tol=None).fit(X, np.ones(X.shape[0]))
    for a, b in zip(before, (X.data, X.indices, X.indptr), strict=True):
        np.testing.assert_array_equal(a, b)


def test_unsorted_and_duplicate_indices_give_the_canonical_result():
    """Each row's entries reversed and split in two duplicates: the same loss, gradient and
    column statistics as the canonical matrix; the user's arrays are left as they were."""
    X, _, coef, intercept, _ = sparse_problem(n=200, d=30)
    rows = []
    for i in range(X.shape[0]):
        lo, hi = X.indptr[i], X.indptr[i + 1]
        columns, values = X.indices[lo:hi][::-1], X.data[lo:hi][::-1]
        rows.append((np.concatenate([columns, columns]),
                     np.concatenate([0.25 * values, 0.75 * values])))
    indptr = np.concatenate([[0], np.cumsum([len(c) for c, _ in rows])]).astype(np.int32)
    messy = sp.csr_matrix((np.concatenate([v for _, v in rows]),
                           np.concatenate([c for c, _ in rows]).astype(np.int32), indptr),
                          shape=X.shape)
    kept = messy.indices.copy()
    y = np.linspace(-1, 1, X.shape[0])
    for a, b in zip(fastgd.loss_and_grad(messy, y, coef[0], 0.1),
                    fastgd.loss_and_grad(X, y, coef[0], 0.1), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(messy.indices, kept)
    a = fastgd.GDRegressor().fit(messy, y)
    b = fastgd.GDRegressor().fit(X, y)
    np.testing.assert_allclose(a.mean_, b.mean_, rtol=1e-12)
    np.testing.assert_allclose(a.scale_, b.scale_, rtol=1e-12)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-9, atol=1e-12)


def malformed(kind):
    X = sp.random(20, 10, density=0.3, format="csr", random_state=0)
    indices, indptr = X.indices.copy(), X.indptr.copy()
    if kind == "index too large":
        indices[3] = 10
    elif kind == "negative index":
        indices[0] = -1
    elif kind == "indptr decreasing":
        indptr[5] = indptr[6] + 1
    elif kind == "indptr past the end":
        indptr[-1] = len(indices) + 5
    elif kind == "indptr not from 0":
        indptr[0] = 1
    bad = X.copy()  # scipy's constructor checks some of this; a later edit bypasses it
    bad.indices = indices
    bad.indptr = indptr[:-1] if kind == "indptr too short" else indptr
    return bad


MALFORMED = {"index too large": "index 10", "negative index": "index -1",
             "indptr decreasing": "decreases", "indptr past the end": "ends at",
             "indptr not from 0": "starts at", "indptr too short": "indptr has"}


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_matrices_are_refused_by_name(kind):
    bad = malformed(kind)
    y = np.zeros(bad.shape[0])
    with pytest.raises(ValueError, match=f"X is malformed: .*{MALFORMED[kind]}"):
        fastgd.loss_and_grad(bad, y, np.zeros(10), 0.0)
    with pytest.raises(ValueError, match="malformed"):
        fastgd.GDRegressor().fit(bad, y)
    model = fastgd.GDRegressor().fit(np.ones((20, 10)) + np.eye(20, 10), np.arange(20.0))
    with pytest.raises(ValueError, match="malformed"):
        model.predict(bad)


def test_malformed_coordinates_and_columns_are_refused():
    coo = sp.coo_matrix((np.ones(3), (np.array([0, 1, 2]), np.array([0, 1, 2]))),
                        shape=(20, 10))
    coo.row[2] = 25  # past the rows: tocsr() would write outside its arrays
    with pytest.raises(ValueError, match="row index is outside"):
        fastgd.loss_and_grad(coo, np.zeros(20), np.zeros(10), 0.0)
    csc = sp.random(20, 10, density=0.3, format="csc", random_state=0)
    csc.indices[2] = 99
    with pytest.raises(ValueError, match=r"X \(CSC\) is malformed"):
        fastgd.loss_and_grad(csc, np.zeros(20), np.zeros(10), 0.0)


def test_malformed_blocks_and_shapes_are_refused():
    """BSR's block offsets are checked before scipy converts it (its conversion trusts
    them); a sparse array of one dimension is refused by name."""
    bsr = sp.bsr_matrix((np.ones((3, 1, 1)), np.zeros(3, dtype=np.int32),
                         np.array([0, 3, 3], dtype=np.int32)), shape=(2, 1))
    bsr.indptr = np.array([0, 10, 3], dtype=np.int32)
    with pytest.raises(ValueError, match=r"X \(BSR\) is malformed"):
        fastgd.loss_and_grad(bsr, np.zeros(2), np.zeros(1), 0.0)
    with pytest.raises(ValueError, match="must be a 2-D matrix"):
        fastgd.loss_and_grad(sp.coo_array(np.ones(4)), np.zeros(4), np.zeros(1), 0.0)


def test_kernel_refuses_an_unchecked_matrix():
    X, *_ = sparse_problem()
    problem = fastgd._problem.Problem(X, np.zeros((X.shape[0], 1)), None,
                                      fastgd.losses.get("squared"), 1)
    broken = X.copy()
    broken.indptr = broken.indptr.copy()
    broken.indptr[-1] = len(broken.data) + 1
    for build in BUILDS.values():
        with pytest.raises(ValueError, match="not a checked CSR"):
            build.csr_grad_pass(problem.__class__(broken, problem.Y, None, problem.loss, 1),
                                np.zeros((1, X.shape[1])), np.zeros(1), 1)


def test_non_finite_values_are_reported_by_row_and_column():
    X, *_ = sparse_problem(n=50, d=8, density=0.5)
    X.data[7] = np.nan
    row = int(np.searchsorted(X.indptr, 7, side="right")) - 1
    with pytest.raises(ValueError, match=f"row {row}, column {X.indices[7]}"):
        fastgd.GDRegressor().fit(X, np.zeros(50))


def test_an_all_zero_matrix_trains_on_the_intercept():
    X = sp.csr_matrix((100, 7))
    y = np.full(100, 3.0)
    model = fastgd.GDRegressor().fit(X, y)
    np.testing.assert_allclose(model.intercept_, 3.0)
    np.testing.assert_array_equal(model.coef_, 0.0)
    np.testing.assert_allclose(model.predict(X), 3.0)


def wide_problem(n=40_000, d=50_000, per_row=60, seed=1, dtype=np.float64):
    """Rows of `per_row` entries at Zipf-distributed columns: enough work for the threads
    (the passes' small-pass rule runs less on one), several chunks."""
    rng = np.random.default_rng(seed)
    columns = (rng.zipf(1.3, size=n * per_row) * 7919) % d
    X = sp.csr_matrix((rng.normal(size=n * per_row).astype(dtype), columns,
                       np.arange(0, n * per_row + 1, per_row)), shape=(n, d))
    X.sum_duplicates()
    return X


@pytest.mark.parametrize("build", BUILDS.values(), ids=BUILDS.keys())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_passes_are_bit_identical_for_any_thread_count(build, dtype):
    from fastgd import losses
    from fastgd._problem import Problem
    X = wide_problem(d=5_000, dtype=dtype)
    rng = np.random.default_rng(0)
    n, d = X.shape
    assert len(build.csr_chunks(X.indptr, None, d + 3)[0]) > 3  # several chunks
    Y = rng.integers(0, 2, size=(n, 1)).astype(dtype)
    sw = rng.uniform(0, 2, n).astype(dtype)
    rows = np.sort(rng.choice(n, n // 2, replace=False)).astype(np.intp)
    coef, intercept = rng.normal(size=(1, d)) * 0.1, np.array([0.2])
    for subset in (None, rows):
        problem = Problem(X, Y, sw, losses.get("log"), 1, rows=subset)
        results = [build.csr_grad_pass(problem, coef, intercept, t) for t in (1, 2, 3)]
        for other in results[1:]:
            for a, b in zip(results[0], other, strict=True):
                np.testing.assert_array_equal(a, b)
        expected = reference.csr_grad_pass(problem, coef, intercept)
        for a, b in zip(results[0], expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=1e-12)
    problem = Problem(X, Y, sw, losses.get("log"), 1)
    stats = [build.csr_column_stats(problem, t) for t in (1, 2, 3)]
    for other in stats[1:]:
        np.testing.assert_array_equal(stats[0][0], other[0])
        np.testing.assert_array_equal(stats[0][1], other[1])
    expected = reference.csr_column_stats(problem)
    np.testing.assert_allclose(stats[0][0], expected[0], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(stats[0][1], expected[1], rtol=1e-10, atol=1e-15)
    dense = reference.column_stats(Problem(X[:2000].toarray(), None, sw[:2000],
                                           losses.get("log")))
    head = reference.csr_column_stats(Problem(X[:2000], None, sw[:2000], losses.get("log")))
    np.testing.assert_allclose(head[0], dense[0], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(head[1], dense[1], rtol=1e-10, atol=1e-15)


def test_chunks_keep_partial_sums_within_a_share_of_the_data():
    """The chunks' partial sums take at most a CSR_SUMS_SHARE-th of X's stored entries (in
    doubles), or two gradients, whichever is larger."""
    build = BUILDS["baseline"]
    for d in (100, 50_000, 1 << 20):
        X = wide_problem(d=d)
        width = d + 3
        starts, work = build.csr_chunks(X.indptr, None, width)
        chunks = len(starts) - 1
        assert chunks * width <= max(work / build.CSR_SUMS_SHARE, 2 * width)
        assert starts[0] == 0 and starts[-1] == X.shape[0] and (np.diff(starts) > 0).all()


def test_the_engine_for_sparse_x():
    X, *_ = sparse_problem()
    assert isinstance(engine_for(_sparse.as_csr(X)), Sparse)
    assert isinstance(engine_for(_sparse.as_csr(X), "numpy"), Sparse)


def test_largest_row_norm_equals_the_dense_rows():
    from fastgd import losses
    from fastgd._engines import InMemory
    from fastgd._problem import Problem
    from fastgd._state import Standardization
    X, _, _, _, sw = sparse_problem(weights=True)
    X = _sparse.as_csr(sp.hstack([X, sp.csr_matrix((X.shape[0], 1))], format="csr"))
    squared = losses.get("squared")
    sparse, dense = Problem(X, None, sw, squared), Problem(X.toarray(), None, sw, squared)
    std = Standardization.fit(InMemory(reference, 1), dense)
    assert np.isinf(std.divisor[-1])  # a constant feature
    for s in (None, std):
        np.testing.assert_allclose(Sparse(reference, 1).largest_row_norm(sparse, s),
                                   InMemory(reference, 1).largest_row_norm(dense, s),
                                   rtol=1e-12)


REGRESSORS = [dict(optimizer="lbfgs", alpha=1e-3, tol=1e-10),
              dict(optimizer="sgd", batch_size=16, learning_rate=0.01, max_epochs=3),
              dict(optimizer="nesterov", batch_size=16, max_epochs=3, alpha=1e-2),
              dict(optimizer="adagrad", batch_size=7, max_epochs=2, alpha=1e-2, l1_ratio=1.0),
              dict(optimizer="adam", batch_size=50, max_epochs=3, alpha=1e-2, l1_ratio=0.5),
              dict(optimizer="nesterov", max_epochs=20, tol=None),
              dict(optimizer="lbfgs", early_stopping=True)]


@pytest.mark.parametrize("settings", REGRESSORS, ids=lambda s: s["optimizer"])
@pytest.mark.parametrize("engine", ["cython", "numpy"])
def test_regressor_on_sparse_equals_dense(settings, engine):
    X, _, coef, _, sw = sparse_problem(n=400, d=30, weights=True)
    y = X @ coef[0] + 0.3 + 0.1 * np.random.default_rng(3).normal(size=400)
    kwargs = dict(random_state=0, engine=engine, **settings)
    # mini-batches over sparse X standardize by scaling only (Solver.centers)
    dense = dict(kwargs, standardize="scale" if "batch_size" in settings else True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = fastgd.GDRegressor(**kwargs).fit(X, y, sample_weight=sw)
        b = fastgd.GDRegressor(**dense).fit(X.toarray(), y, sample_weight=sw)
    if "batch_size" in settings:
        assert not a.mean_.any() and not b.mean_.any()
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.intercept_, b.intercept_, rtol=1e-9)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.history_["loss"], b.history_["loss"], rtol=1e-9)
    np.testing.assert_allclose(a.predict(X), b.predict(X.toarray()), rtol=1e-9, atol=1e-12)


@pytest.mark.filterwarnings("ignore::fastgd.PerformanceWarning")  # dense steps on purpose
def test_classifier_partial_fit_on_sparse_equals_dense():
    X, _, coef, _, _ = sparse_problem(n=300, d=25)
    y = np.asarray(X @ coef[0] > 0).astype(int) + (np.arange(300) % 7 == 0)
    models = [fastgd.GDClassifier(optimizer="adagrad", batch_size=20, random_state=0,
                                  standardize=standardize)
              for standardize in (True, "scale")]
    for lo in range(0, 300, 100):
        models[0].partial_fit(X[lo:lo + 100], y[lo:lo + 100], classes=[0, 1, 2])
        models[1].partial_fit(X[lo:lo + 100].toarray(), y[lo:lo + 100], classes=[0, 1, 2])
    np.testing.assert_allclose(models[0].coef_, models[1].coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(models[0].predict_proba(X), models[1].predict_proba(
        X.toarray()), rtol=1e-9, atol=1e-12)


def test_saved_model_predicts_sparse(tmp_path):
    X, _, coef, _, _ = sparse_problem()
    y = X @ coef[0]
    model = fastgd.GDRegressor().fit(X, y)
    model.save(tmp_path / "m.fastgd")
    loaded = fastgd.load(tmp_path / "m.fastgd")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.predict(X), model.predict(X.toarray()), rtol=1e-12)


def test_text_and_one_hot_pipelines():
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    rng = np.random.default_rng(0)
    words = np.array(["red", "green", "blue", "cat", "dog", "bird", "fast", "slow"])
    docs = [" ".join(rng.choice(words, 5)) for _ in range(300)]
    labels = np.array(["cat" in doc.split() for doc in docs])
    for vectorizer in (TfidfVectorizer(), HashingVectorizer(n_features=2**12)):
        pipe = make_pipeline(vectorizer, fastgd.GDClassifier()).fit(docs, labels)
        assert pipe.score(docs, labels) == 1.0
    table = np.column_stack([rng.choice(["a", "b", "c"], 300), rng.choice(["x", "y"], 300)])
    target = (table[:, 0] == "a") * 2.0 + (table[:, 1] == "y") * 1.0
    pipe = make_pipeline(OneHotEncoder(), fastgd.GDRegressor()).fit(table, target)
    np.testing.assert_allclose(pipe.predict(table), target, atol=1e-4)


@pytest.mark.parametrize("loss", LOSSES, ids=loss_id)
def test_hessian_pass_equals_dense_and_reference(loss):
    """The CSR Hessian pass: the dense pass's loss, gradient and Hessian in the trained
    (standardized) parameters, all rows or a subset, the same bits for any thread count."""
    from fastgd._memory import InMemory
    from fastgd._problem import Problem
    from fastgd._state import Standardization
    k = 3 if loss.class_indices else 2 if loss.task == "regression" else 1
    X, Y, *_ = sparse_problem(n=2000, d=30, density=0.15, k=k, loss=loss)
    X = _sparse.as_csr(X)
    rng = np.random.default_rng(1)
    sw = rng.uniform(0.5, 2, X.shape[0])
    theta = rng.normal(size=k * 31) * 0.3
    for rows in (None, np.sort(rng.choice(X.shape[0], 700, replace=False))):
        dense = Problem(X.toarray(), Y, sw, loss, k, rows=rows)
        sparse = Problem(X, Y, sw, loss, k, rows=rows)
        std = Standardization.fit(InMemory(reference, 1), dense)
        expected = InMemory(BUILDS["baseline"], 1).hessian(dense, theta, std)
        for build in BUILDS.values():
            got = [Sparse(build, t).hessian(sparse, theta, std) for t in (1, 2, 3)]
            for other in got[1:]:
                for a, b in zip(got[0], other, strict=True):
                    np.testing.assert_array_equal(a, b)
            for a, b in zip(got[0], expected, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        for a, b in zip(Sparse(reference, 1).hessian(sparse, theta, std), expected,
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("estimator", ["regressor", "classifier", "softmax"])
def test_the_defaults_fit_the_same_model_as_dense(estimator):
    """optimizer="auto" judges sparse X by its shape, so X and X.toarray() get the same
    solver (Newton here) and the same model."""
    X, _, coef, _, sw = sparse_problem(n=1500, d=40, weights=True)
    z = X @ coef[0]
    if estimator == "regressor":
        model, y = fastgd.GDRegressor, z + 0.1 * np.random.default_rng(2).normal(size=1500)
    else:
        model = fastgd.GDClassifier
        y = np.digitize(z, np.quantile(z, [0.5] if estimator == "classifier" else [0.3, 0.6]))
    a = model().fit(X, y, sample_weight=sw)
    b = model().fit(X.toarray(), y, sample_weight=sw)
    assert a.solver_ == b.solver_ == "newton"
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(a.intercept_, b.intercept_, rtol=1e-6, atol=1e-10)
    assert a.n_iter_ == b.n_iter_


@pytest.mark.parametrize("loss", LOSSES, ids=loss_id)
def test_hessian_vector_pass_equals_dense_and_h_v(loss):
    """The CSR Hessian-vector pass (the fused pass over the model's and the vector's
    outputs): the dense pass's loss, gradient and H v, H v the Hessian pass's H times v;
    the same bits for any thread count."""
    from fastgd._memory import InMemory
    from fastgd._problem import Problem
    from fastgd._state import Standardization
    k = 3 if loss.class_indices else 2 if loss.task == "regression" else 1
    X, Y, *_ = sparse_problem(n=2000, d=30, density=0.15, k=k, loss=loss)
    X = _sparse.as_csr(X)
    rng = np.random.default_rng(2)
    sw = rng.uniform(0.5, 2, X.shape[0])
    theta, vector = rng.normal(size=k * 31) * 0.3, rng.normal(size=k * 31)
    for rows in (None, np.sort(rng.choice(X.shape[0], 700, replace=False))):
        dense = Problem(X.toarray(), Y, sw, loss, k, rows=rows)
        sparse = Problem(X, Y, sw, loss, k, rows=rows)
        std = Standardization.fit(InMemory(reference, 1), dense)
        expected = InMemory(BUILDS["baseline"], 1).hessian_vector(dense, theta, std, vector)
        hessian = InMemory(BUILDS["baseline"], 1).hessian(dense, theta, std)[2]
        np.testing.assert_allclose(expected[2], hessian @ vector, rtol=1e-9, atol=1e-12)
        for build in list(BUILDS.values()) + [reference]:
            got = [Sparse(build, t).hessian_vector(sparse, theta, std, vector)
                   for t in (1, 2, 3)]
            for other in got[1:]:
                for a, b in zip(got[0], other, strict=True):
                    np.testing.assert_array_equal(a, b)
            for a, b in zip(got[0], expected, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_newton_cg_on_sparse_equals_dense(monkeypatch):
    """Where the Hessian is not formed (here: none is), Newton-CG on the CSR
    Hessian-vector pass takes the dense fit's steps."""
    from fastgd.solvers import newton
    monkeypatch.setattr(newton, "HESSIAN_BYTES", 0)
    X, _, coef, _, _ = sparse_problem(n=1000, d=30)
    y = (X @ coef[0] > 0).astype(int)
    a = fastgd.GDClassifier(optimizer="newton", alpha=1e-3).fit(X, y)
    b = fastgd.GDClassifier(optimizer="newton", alpha=1e-3).fit(X.toarray(), y)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-8, atol=1e-12)
    assert a.n_iter_ == b.n_iter_


@pytest.mark.filterwarnings("ignore::fastgd.PerformanceWarning")  # dense steps on purpose
@pytest.mark.parametrize("batch_size", [None, 40])
def test_checkpoints_resume_on_sparse_x(tmp_path, batch_size):
    """A fit on sparse X stopped after epoch 3 and resumed from its checkpoint ends with
    the uninterrupted fit's bits; the checkpoint's fingerprint is of the stored entries,
    so other data (here: other values in the same places) is refused."""
    X, _, coef, _, _ = sparse_problem(n=500, d=25)
    y = X @ coef[0] + 0.2
    settings = dict(optimizer="adam", batch_size=batch_size, learning_rate=0.01,
                    max_epochs=6, tol=None, random_state=1)
    whole = fastgd.GDRegressor(**settings).fit(X, y)
    path = tmp_path / "fit.ckpt"
    fastgd.GDRegressor(**settings, checkpoint=path,
                       callbacks=lambda e: e["epoch"] == 3).fit(X, y)
    resumed = fastgd.GDRegressor(**settings, checkpoint=path).fit(X, y, resume=path)
    np.testing.assert_array_equal(resumed.coef_, whole.coef_)
    other = X.copy()
    other.data = other.data * 1.5
    with pytest.raises(ValueError, match="fingerprint|other data|not the data"):
        fastgd.GDRegressor(**settings, checkpoint=path).fit(other, y, resume=path)


# The mini-batch epoch over CSR X: each batch updates the weights of its own columns, the
# others catch up in closed form where the optimizer has one (fastgd.optimizers:
# catch_up; fastgd/_sparse_epoch.pxi), else every weight at every step.

EPOCH_PENALTIES = {"none": (0.0, 0.0, 0.0), "l2": (0.0, 0.1, 0.0), "l1": (0.01, 0.0, 0.0),
                   "elastic": (0.01, 0.1, 0.0), "clipped": (0.0, 0.1, 0.5)}


def run_epochs(engine_run, X, Y, sw, loss, k, plan, theta, state, rows=None, epochs=2):
    theta, state = theta.copy(), {name: v.copy() for name, v in state.items()}
    results = [engine_run(Problem(X, Y, sw, loss, k, rows), theta, state, replace(
        plan, step=plan.step + 20 * epoch, shuffle_keys=(epoch, 2, 3)), n_threads=2)
        for epoch in range(epochs)]
    return results, theta, state


@pytest.mark.parametrize("loss", LOSSES, ids=loss_id)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("penalty", EPOCH_PENALTIES, ids=EPOCH_PENALTIES.keys())
def test_sparse_epoch_equals_reference_and_dense(loss, optimizer, penalty):
    """Compiled CSR epochs (both builds) = the reference's = the dense engine's on
    X.toarray(), for every standardization (the centered one updates every weight)."""
    k = max(loss.min_outputs, 3 if loss.class_indices else 1)
    X, Y, coef, intercept, sw = sparse_problem(n=230, d=60, density=0.04, k=k, loss=loss,
                                               weights=True, seed=4)
    sw[40:56] = 0.0  # a batch that carries no gradient
    rng = np.random.default_rng(1)
    l1, l2, clip = EPOCH_PENALTIES[penalty]
    rule = optimizers.get(optimizer)
    theta = rng.normal(size=k * 61)
    state = {name: np.abs(rng.normal(size=k * 61)) for name in rule.slots}
    for centered, rows in [(None, None), (False, None), (True, np.arange(5, 220, 2))]:
        std = None if centered is None else Standardization(
            rng.normal(size=60) * centered, np.ones(60), rng.uniform(0.5, 2, 60))
        rate = 0.05 if loss.curvature is not None else 0.005  # e^z: steps that stay small
        plan = EpochPlan(rule, rate, 16, step=3, std=std, l1=l1, l2=l2, clip_norm=clip)
        want, want_theta, want_state = run_epochs(reference.run_epoch, X, Y, sw, loss, k,
                                                  plan, theta, state, rows)
        runs = [run_epochs(build.csr_run_epoch, X, Y, sw, loss, k, plan, theta, state, rows)
                for build in BUILDS.values()]
        runs.append(run_epochs(BUILDS["baseline"].run_epoch, X.toarray(), Y, sw, loss, k,
                               plan, theta, state, rows))
        for results, got_theta, got_state in runs:
            np.testing.assert_allclose(got_theta, want_theta, rtol=1e-10, atol=1e-12)
            for name in rule.slots:
                np.testing.assert_allclose(got_state[name], want_state[name], rtol=1e-10,
                                           atol=1e-12)
            for got, expected in zip(results, want, strict=True):
                np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("loss", [loss for loss in LOSSES if loss.name in ("squared", "log",
                                                                          "multinomial")],
                         ids=loss_id)
def test_sgd_global_scale_hands_itself_to_the_weights(loss):
    """Plain SGD with L2 holds the weights as a global scale times a vector
    (csr_sgd_epoch). A strong decay (lr l2 = 0.8 a step: the scale passes 1e-100 every 143
    steps) makes it hand the scale to the weights and start again, several times an epoch
    of 400 steps: still the reference's run and the dense engine's."""
    k = max(loss.min_outputs, 3 if loss.class_indices else 1)
    X, Y, coef, intercept, sw = sparse_problem(n=400, d=40, density=0.1, k=k, loss=loss,
                                               weights=True, seed=7)
    plan = EpochPlan(optimizers.get("sgd"), 0.5, 1, l2=1.6)
    assert plan.global_scale()
    theta = np.random.default_rng(2).normal(size=k * 41)
    want, want_theta, _ = run_epochs(reference.run_epoch, X, Y, sw, loss, k, plan, theta, {})
    for run in [build.csr_run_epoch for build in BUILDS.values()]:
        results, got_theta, _ = run_epochs(run, X, Y, sw, loss, k, plan, theta, {})
        np.testing.assert_allclose(got_theta, want_theta, rtol=1e-10, atol=1e-12)
        for got, expected in zip(results, want, strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-10)
    dense = run_epochs(BUILDS["baseline"].run_epoch, X.toarray(), Y, sw, loss, k, plan,
                       theta, {})[1]
    np.testing.assert_allclose(dense, want_theta, rtol=1e-10, atol=1e-12)
    assert not EpochPlan(optimizers.get("sgd"), 0.5, 1, l1=0.1).global_scale()
    assert not EpochPlan(optimizers.get("momentum"), 0.5, 1).global_scale()

def test_the_epoch_waits_where_the_optimizer_catches_up():
    """Which settings update only a batch's columns: the closed forms' (and not with
    clipping or centering, whose steps read every weight)."""
    lazy = {name: [penalty for penalty, (l1, l2, clip) in EPOCH_PENALTIES.items()
                   if EpochPlan(optimizers.get(name), 0.05, 16, l1=l1, l2=l2, clip_norm=clip,
                                std=None).catch_up_table(10) is not None]
            for name in OPTIMIZERS}
    assert lazy == {"sgd": ["none", "l2", "l1", "elastic"], "momentum": ["none", "l2"],
                    "nesterov": ["none", "l2"], "adagrad": ["none", "l1"],
                    "rmsprop": ["none"], "adam": [], "adamw": [],
                    "sparse_adam": ["none", "l2", "l1", "elastic"]}
    centered = Standardization(np.ones(3), np.ones(3), np.ones(3))
    assert EpochPlan(optimizers.get("sgd"), 0.1, 4, std=centered).catch_up_table(5) is None
    # a step that would flip a weight's sign has no closed form
    assert EpochPlan(optimizers.get("sgd"), 1.0, 4, l2=1.5).catch_up_table(5) is None


CATCH_UPS = [(name, settings) for name in OPTIMIZERS  # (lr, l1, l2) with a closed form
             for settings in [(0.1, 0.0, 0.0), (0.1, 0.0, 0.3), (0.05, 0.2, 0.0),
                              (0.05, 0.2, 0.4), (0.5, 0.01, 1.0)]
             if optimizers.get(name).catches_up(*settings)]


@pytest.mark.parametrize(("optimizer", "settings"), CATCH_UPS)
def test_catch_up_equals_the_steps_it_stands_for(optimizer, settings):
    """m steps at once = m steps of the penalty alone (zero data gradient), taken one by
    one by the reference (take_step), for every m up to 40."""
    lr, l1, l2 = settings
    rule = optimizers.get(optimizer)
    rng = np.random.default_rng(0)
    d, steps = 30, 40
    theta = np.append(rng.normal(size=d) * 3, 0.0)
    state = {name: np.append(np.abs(rng.normal(size=d)), 0.0) for name in rule.slots}
    table = rule.catch_up_table(lr, l1, l2, steps)
    plan = EpochPlan(rule, lr, 1, l1=l1, l2=l2)
    eager_theta, eager_state = theta.copy(), {name: v.copy() for name, v in state.items()}
    for m in range(steps + 1):
        lazy_theta = theta[:d].copy()
        lazy_state = {name: v[:d].copy() for name, v in state.items()}
        rule.catch_up(lazy_theta, lazy_state, np.full(d, m), table)
        np.testing.assert_allclose(lazy_theta, eager_theta[:d], rtol=1e-12, atol=1e-14)
        for name in rule.slots:
            np.testing.assert_allclose(lazy_state[name], eager_state[name][:d], rtol=1e-12,
                                       atol=1e-14)
        reference.take_step(eager_theta, eager_state, np.zeros((1, d)), np.zeros(1), plan,
                            m + 1)


def test_minibatches_over_sparse_x_scale_without_centering():
    """standardize=True on sparse mini-batches is standardize="scale": the same model as
    dense X with "scale", and by the same optimum as centering at convergence."""
    X, _, coef, _, _ = sparse_problem(n=600, d=30, seed=5)
    y = np.asarray(X @ coef[0] > 0.2).astype(int)
    sparse = fastgd.GDClassifier(optimizer="sgd", batch_size=25, max_epochs=4,
                                 random_state=0).fit(X, y)
    dense = fastgd.GDClassifier(optimizer="sgd", batch_size=25, max_epochs=4, random_state=0,
                                standardize="scale").fit(X.toarray(), y)
    assert not sparse.mean_.any()
    np.testing.assert_allclose(sparse.scale_, X.toarray().std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sparse.history_["loss"], dense.history_["loss"], rtol=1e-9)
    # full batch to the optimum: centering or not, the same model
    scaled, centered = (fastgd.GDClassifier(optimizer="newton", standardize=standardize,
                                            tol=1e-12).fit(X.toarray(), y)
                        for standardize in ("scale", True))
    np.testing.assert_allclose(scaled.coef_, centered.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(scaled.intercept_, centered.intercept_, rtol=1e-6)


def test_standardize_takes_true_false_or_scale():
    X, y = np.ones((10, 2)), np.arange(10.0)
    with pytest.raises(TypeError, match="standardize must be True, False or 'scale'"):
        fastgd.GDRegressor(standardize="center").fit(X, y)


@pytest.mark.parametrize(("settings", "warns"), [
    (dict(optimizer="adagrad", alpha=1e-3), True),
    (dict(optimizer="adagrad", alpha=1e-3, l1_ratio=1.0), False),
    (dict(optimizer="adam"), True),
    (dict(optimizer="sparse_adam", alpha=1e-3), False),
    (dict(optimizer="sgd", clip_norm=1.0), True),
    (dict(optimizer="nesterov", alpha=1e-3), False)])
def test_dense_steps_over_sparse_x_warn(settings, warns):
    """Mini-batches over sparse X that update every weight at every step say so, and
    what would not; those that wait do not warn (nor full batches, nor dense X)."""
    X, _, coef, _, _ = sparse_problem(n=200, d=30, seed=6)
    y = X @ coef[0]
    model = fastgd.GDRegressor(batch_size=20, max_epochs=1, tol=None, **settings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, y)
        fastgd.GDRegressor(max_epochs=1, tol=None, **settings).fit(X, y)
        model.fit(X.toarray(), y)
    messages = [str(w.message) for w in caught if w.category is fastgd.PerformanceWarning]
    assert len(messages) == warns
    if warns:
        assert "O(n_features) a step" in messages[0] and "sparse_adam" in messages[0]


def test_an_epoch_over_repeated_rows_equals_the_reference():
    """`rows` may repeat a row (the engine interface allows it): a batch then holds more
    entries than X stores, and the epoch's buffers hold them (a review found them sized
    by X's entries)."""
    X = sp.csr_matrix(np.vstack([np.r_[np.ones(50), np.zeros(50)], np.zeros(100)]))
    Y = np.ones((2, 1))
    rows = np.zeros(300, dtype=np.intp)
    for batch_size in (3, 300):
        plan = EpochPlan(optimizers.get("sgd"), 0.01, batch_size, l2=0.1)
        results = []
        for run in (BUILDS["baseline"].csr_run_epoch, reference.run_epoch):
            theta = np.zeros(101)
            results.append((run(Problem(X, Y, None, LOSSES[0], 1, rows), theta, {}, plan,
                                n_threads=1), theta))
        np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-10)
        np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-10)
