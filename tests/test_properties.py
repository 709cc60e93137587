"""Property tests (hypothesis): over random shapes (1 row, 1 feature, row counts at chunk
boundaries), dtypes, layouts, strides, weights, thread counts, batch sizes and optimizers,
the compiled engine equals the NumPy reference, gives the same bits on any thread count,
and training has the invariances its mathematics has.

The number of examples is the profile's (tests/conftest.py): a few dozen in `make test`,
thousands under `make fuzz`.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from conftest import LOSSES, OPTIMIZERS, targets_for
from numpy.testing import assert_allclose, assert_array_equal

import fastgd
from fastgd import GDClassifier, GDRegressor, losses, reference
from fastgd._compiled import kernels

RTOL = {np.float64: 1e-10, np.float32: 1e-5}
SQUARED = losses.Squared()


@st.composite
def shapes(draw, max_rows=3000, max_features=40):
    """(n, d): small, large, or a row or two either side of a chunk boundary."""
    d = draw(st.integers(1, max_features))
    n = draw(st.one_of(st.integers(1, 8), st.integers(1, 40), st.integers(1, max_rows)))
    if draw(st.booleans()):  # at a boundary of the chunks the kernel cuts n rows into
        rows = kernels.chunk_rows(max(n, 64), d)
        n = max(1, draw(st.integers(1, max(1, max_rows // rows))) * rows
                + draw(st.integers(-1, 1)))
    return n, d


@st.composite
def arrays(draw, n, d, k=1, loss=SQUARED):
    """X in a random dtype and layout (C, F, or strided, a view that is neither), targets
    the loss takes (conftest.targets_for) of k outputs, maybe sample weights (some zero),
    from one random seed."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    layout = draw(st.sampled_from(["C", "F", "strided"]))
    scale = rng.uniform(0.1, 10, d) * 10.0 ** rng.integers(-3, 4)
    strided = layout == "strided"  # every other column of a wider array: neither C nor F
    X = (rng.standard_normal((n, 2 * d if strided else d)) * np.tile(scale, 2 if strided else 1)
         + rng.uniform(-2, 2)).astype(dtype)
    X = X[:, ::2] if strided else np.asarray(X, order=layout)
    Z = X.astype(np.float64) @ rng.standard_normal((d, k)) + rng.standard_normal((n, k))
    y = targets_for(loss, Z.astype(dtype))
    y = y[:, 0] if y.shape[1] == 1 else y
    weights = None
    if draw(st.booleans()):
        weights = rng.uniform(0, 2, n).astype(dtype)
        weights[rng.random(n) < 0.2] = 0.0
        weights[0] = 1.0  # not all zero
    return X, y, weights, rng


# Every loss of the registry: one output and three (regression), one logit (a binary
# classification loss), four classes (a loss of class indices).
CASES = [(loss, k) for loss in LOSSES for k in (
    (4,) if loss.class_indices else (1,) if loss.task == "classification" else (1, 3))]


@given(shape=shapes(), case=st.sampled_from(CASES), data=st.data())
def test_compiled_equals_reference_and_threads_give_the_same_bits(shape, case, data):
    (n, d), (loss, k) = shape, case
    X, y, weights, rng = data.draw(arrays(n, d, k, loss))
    coef = rng.standard_normal((k, d) if k > 1 else d) / np.sqrt(d) / (1 + np.abs(X).max())
    intercept = rng.standard_normal(k) if k > 1 else float(rng.standard_normal())
    args = (X, y, coef, intercept)
    kw = dict(loss=loss.name, sample_weight=weights, **{p: getattr(loss, p) for p in loss.params})
    one = fastgd.loss_and_grad(*args, **kw, n_threads=1)
    two = fastgd.loss_and_grad(*args, **kw, n_threads=2)
    for a, b in zip(one, two, strict=True):
        assert_array_equal(a, b)
    expected = reference.loss_and_grad(*args, **kw)
    rtol = RTOL[X.dtype.type]
    for got, want, scale in zip(one, expected, sum_scales(*args, loss, weights), strict=True):
        error = np.abs(np.asarray(got) - want)
        bound = rtol * (np.abs(want) + scale)
        assert np.all(error <= bound), (got, want, error / np.maximum(bound / rtol, 1e-300))


def sum_scales(X, y, coef, intercept, loss, weights):
    """The size of what each result sums: the loss sum_i w_i |l_i| / sum w, the gradient
    sum_i w_i |l'_i x_ij| / sum w, the intercept's sum_i w_i |l'_i| / sum w. Rounding
    errors of a sum are relative to the sum of its terms' sizes, not to its result (a
    gradient entry near 0 is a sum of terms that cancel): these, times rtol, are the
    tolerances, and no looser."""
    X64 = X.astype(np.float64)
    k = np.atleast_2d(coef).shape[0]
    Y = np.asarray(y, dtype=np.float64).reshape(len(X), -1)
    Z = X64 @ np.atleast_2d(coef).T + intercept
    value, derivative = loss.value_and_gradient(Z, Y)
    w = np.ones(len(X)) if weights is None else weights.astype(np.float64)
    R = np.abs(w[:, None] * derivative) / w.sum()
    grad_scale = R.T @ np.abs(X64)
    return ((np.abs(w * value)).sum() / w.sum(),
            grad_scale if k > 1 else grad_scale[0],
            R.sum(axis=0) if k > 1 else R.sum())


@given(shape=shapes(max_rows=1500, max_features=12), data=st.data(),
       optimizer=st.sampled_from(OPTIMIZERS),
       batch_size=st.one_of(st.none(), st.integers(1, 300)),
       shuffle=st.booleans(), standardize=st.booleans())
def test_training_engines_agree(shape, data, optimizer, batch_size, shuffle, standardize):
    n, d = shape
    X, y, weights, _ = data.draw(arrays(n, d))
    settings = dict(optimizer=optimizer, batch_size=batch_size, shuffle=shuffle,
                    standardize=standardize, max_epochs=3, tol=None,
                    random_state=0)
    compiled = GDRegressor(**settings).fit(X, y, sample_weight=weights)
    numpy = GDRegressor(**settings, engine="numpy").fit(X, y, sample_weight=weights)
    rtol = 1e-9 if X.dtype == np.float64 else 1e-4
    scale = max(np.max(np.abs(numpy.coef_)), abs(numpy.intercept_))  # the parameters' size
    assert_allclose(compiled.coef_, numpy.coef_, rtol=rtol, atol=rtol * scale)
    assert_allclose(compiled.intercept_, numpy.intercept_, rtol=rtol, atol=rtol * scale)
    assert_allclose(compiled.history_["loss"], numpy.history_["loss"], rtol=rtol,
                    atol=rtol * numpy.history_["loss"][0])  # a loss of 1e-31 against 0
    again = GDRegressor(**settings, n_threads=1).fit(X, y, sample_weight=weights)
    assert_array_equal(again.coef_, compiled.coef_)  # any thread count: the same bits


FULL_BATCH = dict(optimizer="nesterov", max_epochs=15, tol=None, shuffle=False)


def close(a, b):
    scale = max(np.max(np.abs(b)), 1.0)
    assert_allclose(a, b, rtol=1e-9, atol=1e-9 * scale)


@given(shape=shapes(max_rows=800, max_features=10), seed=st.integers(0, 2**32 - 1))
def test_row_order_does_not_matter_to_a_full_batch(shape, seed):
    n, d = shape
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 3, d)
    y = X @ rng.standard_normal(d) + rng.standard_normal(n)
    order = rng.permutation(n)
    a = GDRegressor(**FULL_BATCH).fit(X, y)
    b = GDRegressor(**FULL_BATCH).fit(X[order], y[order])
    close(b.coef_, a.coef_)
    close(b.intercept_, a.intercept_)


@given(shape=shapes(max_rows=800, max_features=10), seed=st.integers(0, 2**32 - 1),
       classifier=st.booleans())
def test_a_duplicated_row_is_a_row_of_weight_two(shape, seed, classifier):
    n, d = shape
    assume(n >= 2 or not classifier)  # two classes need two rows
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = X @ rng.standard_normal(d) + rng.standard_normal(n)
    if classifier:
        y = (y > np.median(y)).astype(int)
        if len(set(y)) < 2:
            y[0] = 1 - y[0]
    twice = rng.random(n) < 0.3
    weights = np.where(twice, 2.0, 1.0)
    estimator = GDClassifier if classifier else GDRegressor
    weighted = estimator(**FULL_BATCH).fit(X, y, sample_weight=weights)
    duplicated = estimator(**FULL_BATCH).fit(np.vstack([X, X[twice]]),
                                             np.concatenate([y, y[twice]]))
    close(duplicated.coef_, weighted.coef_)
    close(duplicated.intercept_, weighted.intercept_)


@given(shape=shapes(max_rows=800, max_features=10), seed=st.integers(0, 2**32 - 1),
       factor=st.floats(1e-3, 1e3), optimizer=st.sampled_from(["sgd", "momentum",
                                                               "nesterov"]))
def test_scaling_y_scales_the_solution(shape, seed, factor, optimizer):
    """Gradient descent on the squared loss is linear in y (the learning rate comes from X
    alone). Fixed epochs: a stop by tol could fall on the other side of its threshold by a
    rounding error."""
    n, d = shape
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) + rng.uniform(-1, 1, d)
    y = X @ rng.standard_normal(d) + 2.0 + rng.standard_normal(n)
    settings = dict(FULL_BATCH, optimizer=optimizer, max_epochs=30)
    a = GDRegressor(**settings).fit(X, y)
    b = GDRegressor(**settings).fit(X, factor * y)
    close(b.coef_, factor * a.coef_)
    close(b.intercept_, factor * a.intercept_)


@pytest.mark.parametrize("n", [1, 2])
def test_a_single_row(n):
    """One or two rows: trains, predicts finite values, both engines alike."""
    X, y = np.arange(1.0, 1.0 + 3 * n).reshape(n, 3), np.arange(n, dtype=float)
    for batch_size in (None, 1):
        settings = dict(batch_size=batch_size, max_epochs=5, tol=None, random_state=0)
        a = GDRegressor(**settings).fit(X, y)
        b = GDRegressor(**settings, engine="numpy").fit(X, y)
        assert np.isfinite(a.coef_).all()
        assert_allclose(a.coef_, b.coef_, rtol=1e-10, atol=1e-12)


@st.composite
def sparse_arrays(draw, n, d, k=1, loss=SQUARED):
    """A random CSR X (some rows and columns empty, float32 or float64, int32 or int64
    indices) and the loss's targets of k outputs, maybe sample weights (some zero)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    density = draw(st.sampled_from([0.0, 0.02, 0.2, 1.0]))
    X = sp.random(n, d, density=density, format="csr", random_state=rng, dtype=np.float64)
    X.data = (rng.standard_normal(X.nnz) * 10.0 ** rng.integers(-2, 3)).astype(dtype)
    X = X.astype(dtype)
    index = draw(st.sampled_from([np.int32, np.int64]))
    X.indices, X.indptr = X.indices.astype(index), X.indptr.astype(index)
    Z = X.astype(np.float64) @ rng.standard_normal((d, k)) + rng.standard_normal((n, k))
    y = targets_for(loss, np.asarray(Z).astype(dtype))
    y = y[:, 0] if y.shape[1] == 1 else y
    weights = None
    if draw(st.booleans()):
        weights = rng.uniform(0, 2, n).astype(dtype)
        weights[rng.random(n) < 0.2] = 0.0
        weights[0] = 1.0
    return X, y, weights


@pytest.mark.filterwarnings("ignore::fastgd.PerformanceWarning")  # dense steps on purpose
@given(shape=shapes(max_rows=600, max_features=30), data=st.data(),
       case=st.sampled_from(CASES), optimizer=st.sampled_from(OPTIMIZERS),
       batch_size=st.one_of(st.none(), st.integers(1, 120)), shuffle=st.booleans(),
       standardize=st.sampled_from([False, "scale"]), alpha=st.sampled_from([0.0, 1e-2]),
       l1_ratio=st.sampled_from([0.0, 0.5]), early_stopping=st.booleans())
def test_sparse_x_trains_as_its_dense_twin(shape, data, case, optimizer, batch_size,
                                          shuffle, standardize, alpha, l1_ratio,
                                          early_stopping):
    """Sparse X and X.toarray() under the same settings: the same run, epoch for epoch
    (the mini-batch epochs over CSR wait and catch up where they can; the dense ones step
    every weight), then the same partial_fit."""
    (n, d), (loss, k) = shape, case
    assume(not early_stopping or n >= 100)  # a validation share of every class
    X, y, weights = data.draw(sparse_arrays(n, d, k, loss))
    model = GDClassifier if loss.task == "classification" else GDRegressor
    if model is GDClassifier:
        counts = np.unique(y, return_counts=True)[1]
        assume(len(counts) >= 2 and (not early_stopping or counts.min() >= 5))
    settings = dict(optimizer=optimizer, batch_size=batch_size, shuffle=shuffle,
                    standardize=standardize, max_epochs=3, tol=None, random_state=0,
                    alpha=alpha, l1_ratio=l1_ratio, early_stopping=early_stopping,
                    loss="log" if model is GDClassifier else loss.name,  # (softmax: > 2 classes)
                    **{p: getattr(loss, p) for p in loss.params},
                    # no curvature bound for learning_rate="auto": a rate of its own
                    **({"learning_rate": 0.01} if loss.curvature is None else {}))

    # A log-link fit starts at the best constant, where the intercept's gradient is 0 but
    # for rounding, which an adaptive optimizer scales up to a step of lr (torch's too):
    # the two runs start from 0 instead, where their gradients agree.
    start = {"intercept_init": np.zeros(k)} if loss.starts_at_constant else {}

    def trained(data_):
        try:
            run = model(**settings).fit(data_, y, sample_weight=weights, **start)
            return run.partial_fit(data_, y, sample_weight=weights)
        except fastgd.DivergenceError as error:  # e^z may overflow at a rate of 0.01
            return str(error)

    sparse, dense = trained(X), trained(X.toarray())
    if isinstance(dense, str):  # the same divergence, at the same epoch, from the same loss
        assert sparse == dense
        return
    rtol = 1e-9 if X.dtype == np.float64 else 1e-4
    # the parameters' scale, at least 1e-6: log-link models of y near 1 sit near 0, where
    # the two runs' rounding (1e-17) is all that differs
    scale = max(np.max(np.abs(dense.coef_)), np.max(np.abs(dense.intercept_)),
                1e-6 if loss.link == "exp" else 1e-300)
    assert_allclose(sparse.coef_, dense.coef_, rtol=rtol, atol=rtol * scale)
    assert_allclose(sparse.intercept_, dense.intercept_, rtol=rtol, atol=rtol * scale)
    assert_allclose(sparse.history_["loss"], dense.history_["loss"], rtol=rtol,
                    atol=rtol * dense.history_["loss"][0])
