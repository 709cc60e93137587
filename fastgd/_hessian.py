"""The Hessian pass of the in-memory engine: the mean loss, its gradient and its Hessian in
the trained parameters, in one read of X by blocks of rows.

With A the design in the trained units, a row a = ((x - mean) / scale, 1) (standardized on
the fly, a block at a time: X is never copied whole), and h_ab(z) a row's Hessian of the
loss in its raw outputs (Loss.hessian_blocks), the Hessian block of outputs a and b is
A^T diag(w h_ab) A / sum(w). Each block of rows adds its products, made by BLAS (a
symmetric rank-k update where h >= 0), to one (d + 1) x (d + 1) sum per pair of outputs, in
the order of the blocks: extra memory is a block of rows and those sums, whatever n, and the
result does not depend on the thread count (BLAS splits the output matrix, not the rows).
fastgd.reference.hessian_pass is the same mathematics on the whole of X at once.
"""

from __future__ import annotations

import numpy as np

BLOCK_BYTES = 1 << 21  # of a block of the design in float64: it stays in cache


def hessian_pass(problem, theta, std, n_threads=None):
    """(mean loss, gradient (p,), Hessian (p, p)) at trained parameters theta (p = k (d + 1),
    laid out as theta: the k coefficient rows, then the k intercepts), weighted by the
    sample weights, over the problem's rows (all, or problem.rows)."""
    X, Y, weights, loss, k = (problem.X, problem.Y, problem.sample_weight, problem.loss,
                              problem.k)
    d = X.shape[1]
    Theta = design_parameters(theta, k, d)
    rows = problem.rows
    n = X.shape[0] if rows is None else len(rows)
    block = max(1, BLOCK_BYTES // (8 * (d + 1)))
    total = loss_sum = 0.0
    gradient = np.zeros((k, d + 1))
    sums = {}
    for lo in range(0, n, block):
        picked = slice(lo, min(lo + block, n)) if rows is None else rows[lo:lo + block]
        A = design(X[picked], std)
        Yb = Y[picked].astype(np.float64, copy=False)
        w = np.ones(len(A)) if weights is None else weights[picked].astype(np.float64)
        with np.errstate(all="ignore"):  # non-finite results are reported by the caller
            Z = A @ Theta.T
            value, derivative = loss.value_and_gradient(Z, Yb)
            total += w.sum()
            loss_sum += w @ value
            gradient += (w[:, None] * derivative).T @ A
            for a, b, h in loss.hessian_blocks(Z, Yb):
                product = weighted_gram(A, w * h)
                sums[a, b] = product if (a, b) not in sums else sums[a, b] + product
    return loss_sum / total, flatten_gradient(gradient / total), assemble(sums, k, d, total)


def design(X, std):
    """The rows of the design in trained units, float64: ((X - mean) / divisor, 1)."""
    A = np.empty((X.shape[0], X.shape[1] + 1))
    A[:, :-1] = X
    if std:
        A[:, :-1] -= std.mean
        A[:, :-1] /= std.divisor
    A[:, -1] = 1.0
    return A


def weighted_gram(A, h):
    """A^T diag(h) A: a symmetric rank-k update of sqrt(h) A where h >= 0 (BLAS's syrk,
    half the work of a product), else a product."""
    if (h >= 0).all():
        S = A * np.sqrt(h)[:, None]
        return S.T @ S
    return A.T @ (h[:, None] * A)


def design_parameters(theta, k: int, d: int):
    """theta (the k coefficient rows, then the k intercepts) as a (k, d + 1) matrix whose
    rows act on a row of the design."""
    return np.column_stack([theta[:k * d].reshape(k, d), theta[k * d:]])


def flatten_gradient(G):
    """A (k, d + 1) gradient of design_parameters, laid out as theta."""
    return np.append(G[:, :-1].ravel(), G[:, -1])


def assemble(sums: dict, k: int, d: int, total: float):
    """The Hessian (p, p) in theta's layout from the blocks {(a, b): A^T diag(h_ab) A} of
    outputs a <= b (the others zero), divided by the total weight."""
    H = np.zeros((k * (d + 1), k * (d + 1)))
    for (a, b), block in sums.items():
        ia = np.append(np.arange(a * d, (a + 1) * d), k * d + a)
        ib = np.append(np.arange(b * d, (b + 1) * d), k * d + b)
        H[np.ix_(ia, ib)] = block / total
        H[np.ix_(ib, ia)] = block.T / total
    return H
