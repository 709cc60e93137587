"""Models of k outputs in the kernel: several regression targets, or the classes of a
softmax, from one pass over X. The compiled engine against the NumPy reference and torch."""

import numpy as np
import pytest
from conftest import (BUILDS, LOSSES, ONE_OUTPUT_LOSSES, OPTIMIZERS, loss_id, make_problem,
                      targets_for)
from numpy.testing import assert_allclose, assert_array_equal

import fastgd
from fastgd import _compiled, losses, optimizers, reference
from fastgd._problem import EpochPlan, Problem, shuffle_keys
from fastgd._state import Standardization

kernels = _compiled.kernels
RTOL = {np.float64: 1e-10, np.float32: 1e-5}
SQUARED = losses.Squared()


def targets(loss, X, k, seed=0):
    """Targets for a k-output model under `loss` (conftest.targets_for)."""
    rng = np.random.default_rng(seed)
    return targets_for(loss, (X @ rng.standard_normal((X.shape[1], k))).astype(X.dtype))


def close(got, want, rtol):
    """Finite and equal up to rtol, entries near 0 compared on the scale of the largest."""
    for g, w in zip(got, want, strict=True):
        assert np.isfinite(w).all()
        assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max())


@pytest.mark.parametrize("loss", LOSSES, ids=loss_id)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("n,d,k", [(1, 1, 2), (7, 3, 3), (1000, 17, 5), (5003, 40, 10),
                                   (2003, 100, 3), (300, 5, 4100)])
def test_grad_pass_equals_the_reference(loss, dtype, order, n, d, k):
    X, _, sw = make_problem(n, d, dtype=dtype, order=order, weights=True)
    Y = targets(loss, X, k)
    rng = np.random.default_rng(1)
    coef, intercept = rng.standard_normal((k, d)) * 0.3, rng.standard_normal(k)
    rows = np.flatnonzero(rng.uniform(size=n) < 0.7) if n > 1 else None
    for r in (None, rows):
        problem = Problem(X, Y, sw, loss, k, r)
        got = kernels.grad_pass(problem, coef, intercept, n_threads=2)
        want = reference.grad_pass(problem, coef, intercept)
        close(got, want, RTOL[dtype])
        assert got[1].shape == (k, d) and got[2].shape == (k,)


@pytest.mark.parametrize("build", list(BUILDS))
@pytest.mark.parametrize("loss", ONE_OUTPUT_LOSSES, ids=loss_id)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("n,d", [(5, 1), (37, 3), (1003, 10), (4101, 17), (20011, 2),
                                 (3001, 80), (6007, 100)])
def test_one_output_grad_pass_equals_the_reference(build, loss, dtype, order, n, d):
    """One output has loops of its own (groups of 16, 12 and 8 rows, vectorized residuals,
    narrow rows in registers in the AVX2 build): all rows or a subset, weighted, equal to
    the reference and the same bits on 1 or 2 threads (the larger shapes are split among
    them, subsets too), in both compiled builds."""
    kernels = BUILDS[build]
    X, _, sw = make_problem(n, d, dtype=dtype, order=order, weights=True)
    Y = targets(loss, X, 1)
    rng = np.random.default_rng(2)
    coef, intercept = rng.standard_normal((1, d)) * 0.3, rng.standard_normal(1)
    rows = np.flatnonzero(rng.uniform(size=n) < 0.7)
    for r in (None, rows):
        for weights in (None, sw):
            problem = Problem(X, Y, weights, loss, 1, r)
            got = kernels.grad_pass(problem, coef, intercept, n_threads=2)
            want = reference.grad_pass(problem, coef, intercept)
            close(got, want, RTOL[dtype])
            alone = kernels.grad_pass(problem, coef, intercept, n_threads=1)
            for a, b in zip(got, alone, strict=True):
                assert_array_equal(a, b)


def test_multinomial_needs_two_outputs():
    X, _, _ = make_problem(20, 3)
    with pytest.raises(ValueError, match="2 outputs or more"):
        kernels.grad_pass(Problem(X, np.zeros((20, 1)), None, losses.Multinomial()),
                          np.zeros((1, 3)), np.zeros(1), n_threads=1)


def test_outputs_train_as_they_would_alone():
    """The sum of the outputs' losses: each output's gradient is its own model's."""
    X, y, _ = make_problem(2000, 6)
    Y = np.column_stack([y, -2 * y + 1, np.sin(y)])
    coef, intercept = np.ones((3, 6)) * 0.1, np.arange(3.0)
    huber = losses.Huber(delta=0.3)
    loss, grad, grad_b = kernels.grad_pass(Problem(X, Y, None, huber, 3), coef, intercept,
                                           n_threads=2)
    parts = [kernels.grad_pass(Problem(X, Y[:, [o]], None, huber), coef[[o]], intercept[[o]],
                               n_threads=2) for o in range(3)]
    assert_allclose(loss, sum(p[0] for p in parts), rtol=1e-12)
    assert_allclose(grad, np.vstack([p[1] for p in parts]), rtol=1e-12)
    assert_allclose(grad_b, np.concatenate([p[2] for p in parts]), rtol=1e-12)


@pytest.mark.parametrize("build", list(BUILDS))
@pytest.mark.parametrize("loss", LOSSES, ids=loss_id)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("shuffled,order", [(False, "C"), (True, "C"), (True, "F")])
def test_epochs_equal_the_reference_and_any_thread_count(build, loss, optimizer, shuffled,
                                                         order):
    """Epochs of k = 4 outputs in both compiled builds: the same bits on 1, 2 and 3
    threads, and the reference's numbers."""
    kernels = BUILDS[build]
    X, _, sw = make_problem(3000, 24, order=order, weights=True)
    k = 4
    problem = Problem(X, targets(loss, X, k), sw, loss, k)
    mean, var = kernels.column_stats(problem, n_threads=2)
    rule = optimizers.get(optimizer)
    plan = EpochPlan(rule, 0.01, 64, 0, shuffle_keys(3, 1) if shuffled else None,
                     Standardization(mean, np.sqrt(var), np.sqrt(var)), l1=0.001, l2=0.01)
    results = []
    for engine, threads in ((kernels, 1), (kernels, 2), (kernels, 3), (reference, 1)):
        theta, state = np.linspace(-0.1, 0.1, k * 25), rule.new_state(k * 25)
        out = engine.run_epoch(problem, theta, state, plan, n_threads=threads)
        results.append((out, theta, *state.values()))
    for out, *state in results[1:3]:  # the compiled engine: the same bits for any threads
        assert out == results[0][0]
        for a, b in zip(state, results[0][1:], strict=True):
            assert_array_equal(a, b)
    assert_allclose(results[3][0], results[0][0], rtol=1e-10)
    for a, b in zip(results[3][1:], results[0][1:], strict=True):
        assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_softmax_takes_logits_of_any_size():
    """No overflow: log-sum-exp with the largest logit subtracted."""
    X = np.array([[1.0], [-1.0], [2.0]])
    Y = np.array([[0.0], [1.0], [2.0]])
    coef = np.array([[1000.0], [-1000.0], [0.0]])
    for engine in (kernels, reference):
        loss, grad, grad_b = engine.grad_pass(Problem(X, Y, None, losses.Multinomial(), 3),
                                              coef, np.zeros(3), n_threads=1)
        assert np.isfinite(loss) and np.isfinite(grad).all() and np.isfinite(grad_b).all()
        # row 0: class 0 wins by 1000 (loss ~0); row 1: class 1 by 1000; row 2: 2000 short
        assert_allclose(loss, 2000.0 / 3, rtol=1e-12)


@pytest.mark.parametrize("Y", [[[0.0], [3.0]], [[0.5], [1.0]], [[-1.0], [0.0]]])
def test_class_indices_outside_the_classes_are_refused(Y):
    X = np.ones((2, 2))
    with pytest.raises(ValueError, match="class indices 0 to 2"):
        kernels.grad_pass(Problem(X, np.array(Y), None, losses.Multinomial(), 3),
                          np.zeros((3, 2)), np.zeros(3), n_threads=1)
    with pytest.raises(ValueError, match="class indices 0 to 2"):
        fastgd.loss_and_grad(X, np.array(Y)[:, 0], np.zeros((3, 2)), 0.0, loss="multinomial")


def test_shapes_that_disagree_are_refused():
    X = np.ones((4, 2))
    with pytest.raises(ValueError, match=r"y must have shape \(4, 3\)"):
        kernels.grad_pass(Problem(X, np.ones((4, 2)), None, SQUARED, 3), np.zeros((3, 2)),
                          np.zeros(3), n_threads=1)
    with pytest.raises(ValueError, match="coef must have shape"):
        kernels.grad_pass(Problem(X, np.ones((4, 3)), None, SQUARED, 3), np.zeros((3, 2)),
                          np.zeros(2), n_threads=1)
    with pytest.raises(ValueError, match=r"k \(2 \+ 1\) entries"):
        kernels.run_epoch(Problem(X, np.ones((4, 1)), None, SQUARED), np.zeros(4), {},
                          EpochPlan(optimizers.get("sgd"), 0.1, 2), n_threads=1)
    with pytest.raises(ValueError, match=r"y must have shape \(4, 2\)"):
        fastgd.loss_and_grad(X, np.ones(4), np.zeros((2, 2)), 0.0)
    with pytest.raises(ValueError, match="2 classes or more"):
        fastgd.loss_and_grad(X, np.zeros(4), np.zeros(2), 0.0, loss="multinomial")


def test_public_loss_and_grad_keeps_the_shapes_given():
    X, y, _ = make_problem(50, 3)
    one = fastgd.loss_and_grad(X, y, np.ones(3), 0.5)
    two = fastgd.loss_and_grad(X, y[:, None], np.ones((1, 3)), np.array([0.5]))
    assert one[1].shape == (3,) and isinstance(one[2], float)
    assert two[1].shape == (1, 3) and two[2].shape == (1,)
    assert_allclose(two[1][0], one[1], rtol=1e-15)


def test_cross_entropy_and_multi_output_mse_are_torchs():
    torch = pytest.importorskip("torch")
    X, _, _ = make_problem(400, 5)
    rng = np.random.default_rng(3)
    coef, intercept = rng.standard_normal((4, 5)), rng.standard_normal(4)
    classes = rng.integers(0, 4, 400)
    W = torch.tensor(coef, requires_grad=True)
    b = torch.tensor(intercept, requires_grad=True)
    logits = torch.from_numpy(X) @ W.T + b
    value = torch.nn.CrossEntropyLoss()(logits, torch.from_numpy(classes))
    value.backward()
    got = fastgd.loss_and_grad(X, classes, coef, intercept, loss="multinomial")
    assert_allclose(got[0], value.item(), rtol=1e-12)
    assert_allclose(got[1], W.grad.numpy(), rtol=1e-10, atol=1e-14)
    assert_allclose(got[2], b.grad.numpy(), rtol=1e-10, atol=1e-14)
    # Several outputs: the sum of per-output MSEs (torch's MSELoss(reduction="sum") / n)
    Y = rng.standard_normal((400, 4))
    W.grad, b.grad = None, None
    out = torch.from_numpy(X) @ W.T + b
    value = torch.nn.MSELoss(reduction="sum")(out, torch.from_numpy(Y)) / 400
    value.backward()
    got = fastgd.loss_and_grad(X, Y, coef, intercept)
    assert_allclose(got[0], value.item(), rtol=1e-12)
    assert_allclose(got[1], W.grad.numpy(), rtol=1e-10)
    assert_allclose(got[2], b.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("call,message", [
    (lambda: kernels.column_stats(Problem(np.ones((1000, 1)), None, np.ones(1), None),
                                  n_threads=1),
     "sample_weight must have 1000 entries"),
    (lambda: kernels.shuffled_rows((1, 2), 5), "three 64-bit integers"),
    (lambda: kernels.run_epoch(Problem(np.ones((4, 2)), np.ones((4, 1)), None, SQUARED),
                               np.zeros(3), {}, EpochPlan(optimizers.get("sgd"), 0.1, 2,
                                                          shuffle_keys=(1,)), n_threads=1),
     "three 64-bit integers"),
    (lambda: kernels.grad_pass(Problem(np.ones((3, 0)), np.ones((3, 1)), None, SQUARED),
                               np.ones((1, 0)), np.zeros(1), n_threads=1), r"shape \(3, 0\)"),
    (lambda: kernels.column_stats(Problem(np.ones((0, 3)), None, None, None), n_threads=1),
     r"shape \(0, 3\)"),
], ids=["stats weights", "keys", "epoch keys", "no columns", "no rows"])
def test_kernel_entry_points_refuse_what_would_read_out_of_bounds(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_shuffled_rows_outside_the_positions_are_cut():
    assert_array_equal(kernels.shuffled_rows((1, 2, 3), 10, 5, 100),
                       kernels.shuffled_rows((1, 2, 3), 10)[5:])


def test_a_model_without_outputs_is_refused():
    with pytest.raises(ValueError, match="coef must have shape"):
        fastgd.loss_and_grad(np.ones((4, 2)), np.ones((4, 0)), np.zeros((0, 2)), 0.0)
