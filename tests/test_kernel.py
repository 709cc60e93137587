"""The compiled loss_and_grad against the NumPy reference, and its invariants."""

import os

import numpy as np
import pytest
from conftest import make_problem
from numpy.testing import assert_allclose, assert_array_equal

import fastgd
from fastgd import _compiled, _kernels, reference
from fastgd._api import make_loss_and_grad
from fastgd import losses
from fastgd._problem import Problem

# Every build of the compiled engine this CPU runs (the portable one and, where supported,
# the AVX2 one), each behind the public argument checks.
BUILDS = {"baseline": _kernels}
if _kernels.cpu_supports_avx2_fma():
    from fastgd import _kernels_avx2

    BUILDS["avx2"] = _kernels_avx2


@pytest.fixture(params=list(BUILDS))
def build(request):
    return BUILDS[request.param]


@pytest.fixture
def compiled(build):
    return make_loss_and_grad(build, "fastgd")


def test_import_picks_the_fastest_build():
    assert fastgd.loss_and_grad is not None
    forced = os.environ.get("FASTGD_SIMD", "").lower() == "baseline"
    expected = "avx2+fma" if "avx2" in BUILDS and not forced else "baseline"
    assert _compiled.SIMD == expected


RTOL = {np.float64: 1e-10, np.float32: 1e-5}

# n = 1, d = 1, n around the chunk size and the 4-row unroll, d around the 4-column unroll.
SHAPES = [(1, 1), (1, 7), (3, 1), (5, 3), (129, 4), (1000, 33), (4099, 5), (10007, 37),
          (_kernels.chunk_rows(70000, 3) * 3 + 1, 3), (300, 257)]


def check_equal(X, y, coef, b, *, rtol, compiled=fastgd.loss_and_grad, **kw):
    got = compiled(X, y, coef, b, **kw)
    want = reference.loss_and_grad(X, y, coef, b, **kw)
    assert_allclose(got[0], want[0], rtol=rtol)
    scale = np.abs(want[1]).max()  # entries near 0 are compared on the gradient's scale
    assert_allclose(got[1], want[1], rtol=rtol, atol=rtol * scale)
    assert_allclose(got[2], want[2], rtol=rtol, atol=rtol * scale)
    return got


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("weights", [False, True])
def test_matches_reference(compiled, n, d, dtype, order, weights):
    X, y, sw = make_problem(n, d, dtype=dtype, order=order, weights=weights)
    if sw is not None:
        sw[0] = 1.0  # never all zero, even for n = 1
    coef = np.random.default_rng(1).standard_normal(d)
    check_equal(X, y, coef, 0.3, sample_weight=sw, rtol=RTOL[dtype], compiled=compiled)


@pytest.mark.parametrize("d", range(1, 19))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", ["squared", "log"])
def test_narrow_rows_every_width(build, compiled, d, dtype, loss):
    """Rows of up to 16 entries are summed four at a time in registers (_simd.h): every
    partial last vector (d mod 4), 1-4 vectors a row, groups of 64 rows and the last rows;
    rows a stride apart, and rows read through an index (C order in place, F order
    gathered)."""
    X, y, sw = make_problem(64 * 4 + 7, d, dtype=dtype, weights=True)
    if loss == "log":
        y = (y > np.median(y)).astype(dtype)
    coef = np.random.default_rng(d).standard_normal(d) / np.sqrt(d)
    check_equal(X, y, coef, 0.3, loss=loss, sample_weight=sw, rtol=RTOL[dtype],
                compiled=compiled)
    strided = np.s_[3::2]
    check_equal(X[strided], y[strided], coef, 0.3, loss=loss, rtol=RTOL[dtype],
                compiled=compiled)
    index = np.random.default_rng(0).permutation(len(X))[:200]
    want = reference.loss_and_grad(X[index], y[index], coef, 0.3, loss=loss,
                                   sample_weight=sw[index])
    for order in ("C", "F"):
        problem = Problem(np.asarray(X, order=order), y.reshape(-1, 1), sw, losses.get(loss),
                          rows=index)
        got = build.grad_pass(problem, coef[None], np.array([0.3]), n_threads=2)
        assert_allclose(got[0], want[0], rtol=RTOL[dtype])
        assert_allclose(got[1][0], want[1], rtol=RTOL[dtype],
                        atol=RTOL[dtype] * np.abs(want[1]).max())


@pytest.mark.parametrize("d", [23, 10])  # 10: narrow rows (_simd.h)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])
def test_bit_identical_for_any_thread_count(build, compiled, d, dtype, order):
    X, y, sw = make_problem(50_001, d, dtype=dtype, order=order, weights=True)
    coef = np.linspace(-1, 1, d)
    results = [compiled(X, y, coef, 0.1, sample_weight=sw, n_threads=t)
               for t in (1, 2, 3, 4, 7, -1)]
    for r in results[1:]:
        assert r[0] == results[0][0]
        assert_array_equal(r[1], results[0][1])
        assert r[2] == results[0][2]
    stats = [build.column_stats(Problem(X, None, sw, None), n_threads=t) for t in (1, 2, 5)]
    for mean, var in stats[1:]:
        assert_array_equal(mean, stats[0][0])
        assert_array_equal(var, stats[0][1])


def test_chunks_depend_on_shape_only():
    assert _kernels.chunk_rows(1_000_000, 100) == 3907  # 256 chunks
    assert _kernels.chunk_rows(32, 100) == 16  # at least 16 rows a chunk
    assert _kernels.chunk_rows(32, 10) == 103  # and 1024 elements
    assert _kernels.chunk_rows(1, 1) >= 1


@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_chunk_boundaries_thread_independent(compiled, extra):
    """n just below, at and above a multiple of the chunk size."""
    rows = _kernels.chunk_rows(9000, 7)
    X, y, _ = make_problem(rows * 5 + extra, 7)
    coef = np.ones(7)
    first = compiled(X, y, coef, 0.0, n_threads=1)
    for t in (2, 3):
        again = compiled(X, y, coef, 0.0, n_threads=t)
        assert again[0] == first[0] and again[2] == first[2]
        assert_array_equal(again[1], first[1])
    check_equal(X, y, coef, 0.0, rtol=1e-10, compiled=compiled)


def test_seed_gradient():
    X = np.array([[1.0], [2.0], [3.0]])
    loss, g, gb = fastgd.loss_and_grad(X, np.array([2.0, 4.0, 6.0]), np.zeros(1), 0.0)
    assert_allclose([loss, g[0], gb], [56 / 3, -56 / 3, -8.0], rtol=1e-15)


def test_sample_weight_matches_repeated_rows():
    X, y, _ = make_problem(200, 5)
    reps = np.arange(200) % 3
    coef = np.ones(5)
    weighted = fastgd.loss_and_grad(X, y, coef, 0.2, sample_weight=reps)
    repeated = fastgd.loss_and_grad(np.repeat(X, reps, axis=0), np.repeat(y, reps), coef, 0.2)
    assert_allclose(weighted[0], repeated[0], rtol=1e-12)
    assert_allclose(weighted[1], repeated[1], rtol=1e-12)
    assert_allclose(weighted[2], repeated[2], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layouts_read_in_place(tmp_path, dtype):
    """C, F, row slices, read-only and memory-mapped arrays all give the same answer."""
    X, y, _ = make_problem(3001, 11, dtype=dtype)
    coef = np.arange(11.0) / 10
    want = fastgd.loss_and_grad(X, y, coef, 0.0)
    ro = X.copy()
    ro.flags.writeable = False
    path = tmp_path / "X.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    wide = np.hstack([X, np.ones((3001, 5), dtype=dtype)])
    for variant in (np.asfortranarray(X), ro, mm, wide[:, :11], X[::2], X.astype(">f8")):
        rows = variant.shape[0]
        got = fastgd.loss_and_grad(variant, y[:rows], coef, 0.0)
        if rows == 3001:
            assert_allclose(got[0], want[0], rtol=RTOL[dtype])
            assert_allclose(got[1], want[1], rtol=RTOL[dtype], atol=1e-9)
        else:
            check_equal(variant, y[:rows], coef, 0.0, rtol=RTOL[dtype])


def test_row_slice_and_fortran_not_copied():
    from fastgd._validation import as_matrix

    X = np.zeros((100, 10))
    for view in (X, X[:, :4], np.asfortranarray(X), np.asfortranarray(X)[:50]):
        assert np.shares_memory(as_matrix(view), view)
    f32 = np.zeros((10, 3), dtype=np.float32)
    assert as_matrix(f32).dtype == np.float32 and np.shares_memory(as_matrix(f32), f32)


def test_float32_accumulates_in_float64(compiled):
    """1e6 rows of float32: a float32 accumulator would lose ~3 digits; ours matches float64."""
    X, y, _ = make_problem(1_000_000, 2, dtype=np.float32, noise=0.0)
    coef = np.array([0.3, -0.2])
    got = compiled(X, y, coef, 0.5)
    want = reference.loss_and_grad(X.astype(np.float64), y.astype(np.float64), coef, 0.5)
    assert_allclose(got[0], want[0], rtol=1e-12)
    assert_allclose(got[1], want[1], rtol=1e-11)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("weights", [False, True])
def test_column_stats_match_reference(build, order, weights):
    X, _, sw = make_problem(20_011, 13, order=order, weights=weights)
    X[:, 3] = 7.25  # a constant column
    X[:, 4] += 1e8  # a large offset: the stats must not cancel catastrophically
    problem = Problem(X, None, sw, None)
    mean, var = build.column_stats(problem, n_threads=2)
    want_mean, want_var = reference.column_stats(problem)
    assert_allclose(mean, want_mean, rtol=1e-12)
    assert_allclose(var, want_var, rtol=1e-8, atol=1e-20)
    assert var[3] < 1e-20


@pytest.mark.parametrize("fn", [fastgd.loss_and_grad, reference.loss_and_grad])
def test_overflow_from_finite_inputs_is_an_error_not_nan(fn):
    with pytest.raises(ValueError, match="overflows float64"):
        fn(np.full((4, 2), 1e200), np.zeros(4), np.ones(2), 0.0)
    with pytest.raises(ValueError, match="overflows float64"):
        fn([[1e300, 1e300]], [0.0], [1e300, -1e300], 0.0)


def test_strides_not_a_multiple_of_the_item_size():
    """A record field: rows 20 bytes apart. Read in place it would be garbage; it is copied."""
    rec = np.zeros(300, dtype=[("x", "f8", (3,)), ("t", "i4")])
    rec["x"] = np.random.default_rng(0).standard_normal((300, 3))
    X = rec["x"]
    assert X.strides[0] % X.itemsize
    y = np.arange(300.0)
    for fn in (fastgd.loss_and_grad, reference.loss_and_grad):
        got = fn(X, y, np.ones(3), 0.0)
        want = reference.loss_and_grad(np.array(X), y, np.ones(3), 0.0)
        assert_allclose(got[0], want[0], rtol=1e-12)
        assert_allclose(got[1], want[1], rtol=1e-12)
    with pytest.raises(ValueError, match="strides"):
        _kernels.grad_pass(Problem(X, y[:, None], None, losses.Squared()), np.ones((1, 3)),
                           np.zeros(1), n_threads=1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unaligned_inputs_are_read_through_aligned_copies(dtype):
    """An array at an odd address (np.frombuffer at an offset, a record field, some
    unpickled buffers) is copied once: reading floats there is undefined behaviour in C
    (UBSan reported it from a Dask worker under make sanitize)."""
    from fastgd._validation import as_matrix, as_targets, as_vector

    def unaligned(a):
        raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
        out = np.frombuffer(raw[1:].data, dtype=a.dtype).reshape(a.shape)
        out[...] = a
        assert not out.flags.aligned
        return out

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 7)).astype(dtype)
    y, sw = rng.standard_normal(300).astype(dtype), rng.uniform(0, 2, 300).astype(dtype)
    coef = rng.standard_normal(7)
    assert as_matrix(unaligned(X)).flags.aligned
    assert as_targets(unaligned(y), 300, 1, dtype).flags.aligned
    assert as_vector(unaligned(sw), "sample_weight", 300, dtype).flags.aligned
    expected = fastgd.loss_and_grad(X, y, coef, 0.5, sample_weight=sw)
    got = fastgd.loss_and_grad(unaligned(X), unaligned(y), unaligned(coef), 0.5,
                               sample_weight=unaligned(sw))
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
