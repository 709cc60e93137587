"""How much the objective curves: the safe step size of gradient descent is 1 / L.

L is the largest eigenvalue of the Hessian of the loss plus the ridge penalty in the trained
parameters. For the squared loss it comes exactly from a power iteration of fused passes;
every other loss bounds its curvature relative to the squared loss's (Loss.curvature).
"""

from __future__ import annotations

import math

import numpy as np

from fastgd import _shuffling
from fastgd.solvers import loss_and_gradient

POWER_ITERATIONS = 12


def largest_curvature(engine, problem, std, l2, iterations: int = POWER_ITERATIONS) -> float:
    """An estimate of L in the trained parameters (w, b), standardized when `std` is given:
    that of the squared loss, times the loss's curvature bound (exact for the squared
    loss). A model of several outputs has the same L: its Hessian repeats one output's block
    (or, for the softmax, is bounded by it).

    Power iteration with the fused kernel: with zero targets the squared loss is the
    quadratic form of its Hessian H, so its gradient at v is H v: one pass over X per step.
    The estimate approaches the eigenvalue from below (for data whose top eigenvector is
    nearly orthogonal to the start, possibly to a smaller one). For X that streams from
    disk it is made on a sample of its rows (sampled).
    """
    problem = sampled(problem)
    d = problem.n_features
    zeros = problem.zero_targets()
    factor = curvature_bound(problem.loss)
    v = np.random.default_rng(0).standard_normal(d + 1)  # a generic, reproducible start
    v /= np.linalg.norm(v)
    curvature = 0.0
    for _ in range(iterations):
        _, gradient = loss_and_gradient(engine, zeros, v, std)
        hv = factor * gradient
        hv[:d] += l2 * v[:d]
        with np.errstate(over="ignore"):
            curvature = float(np.linalg.norm(hv))
        if not math.isfinite(curvature):  # no step size is meaningful
            raise_overflow(engine, problem, gradient, l2)
        if curvature == 0.0:
            break
        v = hv / curvature
    return curvature


def sampled(problem):
    """The problem on a sample of X's rows (whole blocks spread over the file:
    _shuffling.sample) when X streams from disk, where each of the power iteration's
    passes would read the whole file again (12 reads, minutes for tens of GB); the sample
    is read once, then from the page cache."""
    if not _shuffling.streams(problem.X):
        return problem
    rows = _shuffling.sample(problem.X, problem.rows)
    return problem if rows is None else problem.restricted(rows)


def raise_overflow(engine, problem, gradient, l2):
    engine.raise_if_nonfinite(problem)  # a NaN or inf in X: say where
    if np.isfinite(gradient).all():
        raise ValueError(f"alpha is too large for float64 arithmetic: the loss's curvature "
                         f"(its L2 part) overflows; lower alpha (now {l2:g} in the L2 part).")
    raise ValueError("X holds values too large for float64 arithmetic: the loss's curvature "
                     "(X^T X) overflows; rescale X.")


def curvature_bound(loss) -> float:
    if loss.curvature is None:
        kink = ("" if loss.smooth else " (a kink: subgradient steps, which converge with a "
                "decaying schedule such as \"invscaling\")")
        raise ValueError(f"the {loss.name} loss has no bounded curvature{kink}: give a "
                         f"numeric learning_rate")
    return loss.curvature


def largest_row_curvature(engine, problem, std, l2) -> float:
    """L_max: the largest curvature of one row's loss (plus the ridge penalty), the
    smoothness of a batch of one: the curvature bound x 2 (|x_i|^2 + 1) for the
    (standardized) row and the intercept, times the row's weight relative to the mean
    weight."""
    largest = engine.largest_row_norm(problem, std)
    return 2.0 * curvature_bound(problem.loss) * largest + l2


def batch_curvature(L: float, L_max: float, n: int, batch_size: int) -> float:
    """The expected smoothness of a batch of b rows drawn without replacement from n
    (Gower et al., "SGD: General Analysis and Improved Rates", 2019): L for the full
    batch, L_max for single rows, in between as n (b - 1) / (b (n - 1)) L +
    (n - b) / (b (n - 1)) L_max. A batch's loss curves more than the whole data's, so its
    safe step is smaller (with 1 / L, batch 32 diverged on Gaussian data)."""
    if batch_size >= n:
        return L
    b = batch_size
    return (n * (b - 1) * L + (n - b) * L_max) / (b * (n - 1))
