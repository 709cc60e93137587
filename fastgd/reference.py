"""The same mathematics as the compiled engine, in plain NumPy: the definition of correct.

This module is the other half of the in-memory engine (fastgd/_engines.py): `grad_pass`,
`column_stats` and `run_epoch` have the signatures of their compiled twins in
fastgd/_kernels.pxi, so `engine="numpy"` runs the very same training loop on them. It is the
textbook code (X read twice per gradient, temporaries allocated), computed in float64
whatever the data's dtype, with the losses' and optimizers' NumPy formulas of
fastgd/losses.py and fastgd/optimizers.py, and the baseline of every benchmark.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np

from fastgd import _design
from fastgd._api import make_loss_and_grad
from fastgd._problem import Problem
from fastgd._sparse import is_sparse, row_squared_norms
from fastgd._state import Standardization
from fastgd.optimizers import soft_threshold


def _weights(sample_weight, n):
    return np.ones(n) if sample_weight is None else sample_weight.astype(np.float64)


def grad_pass(problem, coef, intercept, n_threads=1):
    """(mean loss, gradient in coef (k, d), gradient in intercept (k,)) of a validated
    problem (of its rows only, if given), for a model of k outputs: coef (k, d),
    intercept (k,)."""
    X, Y, sample_weight = problem.X, problem.Y, problem.sample_weight
    if problem.rows is not None:
        X, Y = X[problem.rows], Y[problem.rows]
        sample_weight = None if sample_weight is None else sample_weight[problem.rows]
    X = X.astype(np.float64, copy=False)
    Y = Y.astype(np.float64, copy=False)
    w = _weights(sample_weight, len(Y))
    with np.errstate(all="ignore"):  # non-finite results are reported by the caller
        Z = X @ coef.T + intercept                          # forward pass
        value, derivative = problem.loss.value_and_gradient(Z, Y)
        R = w[:, None] * derivative / w.sum()               # dL/dz_io
        return (w * value).sum() / w.sum(), (X.T @ R).T, R.sum(axis=0)


def csr_grad_pass(problem, coef, intercept, n_threads=1, workspace=None):
    """grad_pass for CSR X (fastgd/_sparse.py): the same products, X @ W^T and X^T R,
    by scipy on the stored entries, never densified (`workspace`: the compiled pass's)."""
    return grad_pass(problem, coef, intercept)


def design(problem, std):
    """(A, Y, w): the problem's rows of the design in trained units, A = ((X - mean) /
    divisor, 1) as float64, their targets (zeros if Y is None) and weights."""
    X, Y, sample_weight = problem.X, problem.Y, problem.sample_weight
    if Y is None:
        Y = np.zeros((X.shape[0], 1))
    if problem.rows is not None:
        X, Y = X[problem.rows], Y[problem.rows]
        sample_weight = None if sample_weight is None else sample_weight[problem.rows]
    X = (X.toarray() if is_sparse(X) else X).astype(np.float64)  # sparse: small, tests
    if std:
        X = (X - std.mean) / std.divisor
    return (np.hstack([X, np.ones((len(X), 1))]), Y.astype(np.float64),
            _weights(sample_weight, len(X)))


def hessian_pass(problem, theta, std, n_threads=1):
    """(mean loss, gradient (p,), Hessian (p, p)) at trained parameters theta, as
    fastgd/_hessian.pxi's pass, on the whole standardized design at once."""
    loss, k, d = problem.loss, problem.k, problem.n_features
    A, Y, w = design(problem, std)
    with np.errstate(all="ignore"):
        Z = A @ _design.design_parameters(theta, k, d).T
        value, derivative = loss.value_and_gradient(Z, Y)
        blocks = {(a, b): A.T @ ((w * h)[:, None] * A) for a, b, h in loss.hessian_blocks(Z, Y)}
        return ((w * value).sum() / w.sum(),
                _design.flatten_gradient((w[:, None] * derivative).T @ A / w.sum()),
                _design.assemble(blocks, k, d, w.sum()))


def csr_hessian_pass(problem, theta, std, n_threads=1):
    """hessian_pass for CSR X: the same, on its rows densified (the definition)."""
    return hessian_pass(problem, theta, std)


def csr_hessian_vector_pass(problem, theta, std, vector, n_threads=1, workspace=None):
    """hessian_vector_pass for CSR X: the same, on its rows densified (the definition)."""
    return hessian_vector_pass(problem, theta, std, vector)


def hessian_vector_pass(problem, theta, std, vector, n_threads=1):
    """(mean loss, gradient (p,), H vector (p,)) at trained parameters theta, as
    fastgd/_hessian.pxi's Hessian-vector pass: with U = A V^T (each row's a . v_a),
    H v = A^T Q / W, Q_a = sum_b w h_ab U_b."""
    loss, k, d = problem.loss, problem.k, problem.n_features
    A, Y, w = design(problem, std)
    with np.errstate(all="ignore"):
        Z = A @ _design.design_parameters(theta, k, d).T
        U = A @ _design.design_parameters(vector, k, d).T
        value, derivative = loss.value_and_gradient(Z, Y)
        Q = np.zeros_like(U)
        for a, b, h in loss.hessian_blocks(Z, Y):
            Q[:, a] += w * h * U[:, b]
            if a != b:
                Q[:, b] += w * h * U[:, a]
        return ((w * value).sum() / w.sum(),
                _design.flatten_gradient((w[:, None] * derivative).T @ A / w.sum()),
                _design.flatten_gradient(Q.T @ A / w.sum()))


def moments_pass(problem, n_threads=1):
    """(weight, mean, comoment) of the columns [X, Y] over the problem's rows, weighted, as
    fastgd/_moments.pxi's pass: the mean first, then the centered cross-products."""
    X, Y, sample_weight = problem.X, problem.Y, problem.sample_weight
    if problem.rows is not None:
        X, Y = X[problem.rows], Y[problem.rows]
        sample_weight = None if sample_weight is None else sample_weight[problem.rows]
    V = np.hstack([X.astype(np.float64), Y.astype(np.float64)])
    w = _weights(sample_weight, len(V))
    mean = w @ V / w.sum()
    V -= mean
    return float(w.sum()), mean, V.T @ (w[:, None] * V)


def column_stats(problem, n_threads=1):
    """Weighted per-column mean and population variance of validated X (all its rows)."""
    X = problem.X.astype(np.float64, copy=False)
    w = _weights(problem.sample_weight, X.shape[0])
    mean = np.average(X, axis=0, weights=w)
    var = np.average((X - mean) ** 2, axis=0, weights=w)
    return mean, var


def csr_column_stats(problem, n_threads=1):
    """column_stats for CSR X: the mean from the stored entries, the variance from their
    deviations from it plus the zeros' share, (W - the stored entries' weight) mean^2."""
    X = problem.X.tocoo()
    w = _weights(problem.sample_weight, X.shape[0])
    d, weight = X.shape[1], w.sum()
    entry_weight = w[X.row]
    mean = np.bincount(X.col, weights=entry_weight * X.data, minlength=d) / weight
    stored_weight = np.bincount(X.col, weights=entry_weight, minlength=d)
    deviations = np.bincount(X.col, weights=entry_weight * (X.data - mean[X.col]) ** 2,
                             minlength=d)
    return mean, (deviations + np.maximum(weight - stored_weight, 0.0) * mean ** 2) / weight


BLOCK_ELEMENTS = 1 << 15  # of X per NumPy block when measuring row norms (256 KB temporaries)


def largest_row_norm(X, sample_weight, std, mean_weight) -> float:
    """max over rows of (|x_i|^2 + 1) x weight_i / mean_weight (x_i standardized by std),
    in NumPy by blocks of rows: the smoothness of a batch of one (fastgd.solvers.curvature).
    CSR X: from its stored entries (fastgd/_sparse.py: row_squared_norms)."""
    if is_sparse(X):
        norms = row_squared_norms(X, std) + 1.0
        if sample_weight is not None:
            norms *= sample_weight / mean_weight
        return float(norms.max())
    largest = 0.0
    block = max(1, BLOCK_ELEMENTS // X.shape[1])
    for lo in range(0, X.shape[0], block):
        rows = X[lo:lo + block].astype(np.float64)
        if std:
            rows -= std.mean
            rows /= std.divisor
        norms = np.einsum("ij,ij->i", rows, rows) + 1.0
        if sample_weight is not None:
            norms *= sample_weight[lo:lo + block] / mean_weight
        largest = max(largest, float(norms.max()))
    return largest


NEAREST_BLOCK_ELEMENTS = 1 << 18  # of X per block for nearest_rows (2 MB temporaries): at
                                  # 1M x 10, 19 ms a pass; 33 ms at 1 << 15, 25 at 1 << 20


def nearest_rows(X, Y, sample_weight, coef, intercept, count: int, rows=None,
                 direction=None, on=0.0, output=0, kink=None) -> tuple:
    """(distance (m,), X's rows (m, d) float64, their Y (m, ky), weights (m,), the weight
    of all the rows looked at): the m = min(count, such rows) rows with weight nearest
    the model (coef (k, d), intercept (k,), original units) in `output`, nearest first, by
    blocks of rows in NumPy: by |r|, r = kink(y) - z the distance to the loss's kink
    (Loss.kink; None: y, the residual); or, given a `direction`
    (coef (d,), intercept) to move the model along, by the step r / (x direction) at
    which the row's residual reaches 0 ahead (> 0: the rows it reaches; the others, and
    those on the model already, |r| <= on, are left out). What the smoothing's crossover
    asks (fastgd/solvers/smoothing.py)."""
    n = X.shape[0] if rows is None else len(rows)
    block = max(1, NEAREST_BLOCK_ELEMENTS // max(X.shape[1], 1))
    kept_distance, kept_index = np.empty(0), np.empty(0, dtype=np.intp)
    total = 0.0
    for lo in range(0, n, block):
        index = np.arange(lo, min(lo + block, n)) if rows is None else np.asarray(
            rows[lo:lo + block], dtype=np.intp)
        part = X[index] if rows is not None or is_sparse(X) else X[lo:lo + block]
        y = Y[index, output].astype(np.float64)
        residual = (y if kink is None else kink(y)) - _product(part, coef[output],
                                                                intercept[output])
        if direction is None:
            distance = np.abs(residual)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                distance = residual / _product(part, *direction)
            distance[~(distance > 0) | (np.abs(residual) <= on)] = np.inf
        weights = np.ones(len(index)) if sample_weight is None else sample_weight[index]
        distance[weights <= 0] = np.inf
        total += float(weights.sum(dtype=np.float64))
        kept_distance = np.concatenate([kept_distance, distance])
        kept_index = np.concatenate([kept_index, index])
        if len(kept_distance) > count:
            nearest = np.argpartition(kept_distance, count)[:count]
            kept_distance, kept_index = kept_distance[nearest], kept_index[nearest]
    order = np.argsort(kept_distance, kind="stable")
    order = order[np.isfinite(kept_distance[order])]
    chosen = kept_index[order]
    part = X[chosen]
    part = part.toarray() if is_sparse(part) else part
    return (kept_distance[order], np.asarray(part, dtype=np.float64),
            np.asarray(Y[chosen], dtype=np.float64),
            np.ones(len(chosen)) if sample_weight is None
            else np.asarray(sample_weight[chosen], dtype=np.float64), total)


def _product(part, coef, intercept):
    """x coef + intercept for each row of a block (dense or CSR), in float64 whatever X's
    dtype (as the kernels' products: the crossover tells residuals of 0 from rounding)."""
    return np.asarray(part @ np.asarray(coef, dtype=np.float64), dtype=np.float64).ravel() + (
        intercept)


FEISTEL_MULT = np.uint64(0x9E3779B97F4A7C15)
WINDOW_SALT = np.uint64(0xD1B54A32D192ED03)


def half_bits(n: int) -> int:
    """Bits of each half of a Feistel block that covers [0, n)."""
    return (max(1, int(n - 1).bit_length()) + 1) // 2


def permuted(keys, salt, half, n, x):
    """x's image in a keyed permutation of [0, n) (elementwise): a 3-round Feistel network
    on [0, 4^half), cycle-walked into [0, n)."""
    salt, half, n = (np.broadcast_to(np.asarray(a, dtype=np.uint64), x.shape)
                     for a in (salt, half, n))
    mask = (np.uint64(1) << half) - np.uint64(1)
    shift = np.uint64(64) - half

    def feistel(x, salt, half, mask, shift):
        left, right = x >> half, x & mask
        for key in keys:
            left, right = right, left ^ ((((right ^ np.uint64(key) ^ salt) * FEISTEL_MULT)
                                          >> shift) & mask)
        return (left << half) | right

    x = feistel(x.astype(np.uint64), salt, half, mask, shift)
    outside = x >= n
    while outside.any():  # cycle-walking: apply again until the image is in range
        x[outside] = feistel(x[outside], salt[outside], half[outside], mask[outside],
                             shift[outside])
        outside = x >= n
    return x


def shuffled_rows(keys, n, blocks=None):
    """The row read at each position of a shuffled epoch, as the compiled engine's
    shuffled_row (fastgd/_order.pxi, which says how), position by position: a permutation
    of range(n), of rows one by one, or by blocks = (rows a block, blocks a window)."""
    positions = np.arange(n, dtype=np.uint64)
    if blocks is None:
        return permuted(keys, 0, half_bits(n), n, positions).astype(np.intp)
    block_shift = np.uint64(int(blocks[0]).bit_length() - 1)
    window_shift = block_shift + np.uint64(int(blocks[1]).bit_length() - 1)
    whole_blocks = n >> int(block_shift)
    start = (positions >> window_shift) << window_shift
    size = np.minimum(np.uint64(n) - start, np.uint64(1) << window_shift)
    halves = np.where(start + size < n, half_bits(1 << int(window_shift)),
                      half_bits(n - ((n - 1) >> int(window_shift) << int(window_shift))))
    x = start + permuted(keys, ((positions >> window_shift) + np.uint64(1)) * WINDOW_SALT,
                         halves, size, positions - start)
    block = x >> block_shift
    whole = block < whole_blocks
    x[whole] = (permuted(keys, 0, half_bits(whole_blocks), whole_blocks, block[whole])
                << block_shift) | (x[whole] & ((np.uint64(1) << block_shift) - np.uint64(1)))
    x = (x + np.uint64((int(keys[0]) ^ int(keys[2])) % n)) % np.uint64(n)
    return x.astype(np.intp)


def run_epoch(problem, theta, state, plan, n_threads=1, workspace=None):
    """One epoch of batches; see fastgd/_kernels.pxi (run_epoch) for the contract.

    Each batch is a model over the columns it updates: all of X's, or for sparse X with a
    catch-up table (EpochPlan.catch_up_table), only those its rows store entries in. The
    others wait, each since its last update, and take their steps at once
    (Optimizer.catch_up) when a batch next touches them or the epoch ends, as
    fastgd/_sparse_epoch.pxi does."""
    X, Y, sample_weight = problem.X, problem.Y, problem.sample_weight
    d = X.shape[1]
    k = len(theta) // (d + 1)
    n = X.shape[0] if problem.rows is None else len(problem.rows)  # the rows trained on
    order = None if plan.shuffle_keys is None else shuffled_rows(plan.shuffle_keys, n,
                                                                    plan.shuffle_blocks)
    if problem.rows is not None:
        order = problem.rows if order is None else problem.rows[order]
    size = plan.batch_size
    table = plan.catch_up_table(-(-n // size)) if is_sparse(X) else None
    waiting = Waiting(theta, state, plan.optimizer, table, k, d)
    loss_total = weight_total = 0.0
    steps = 0
    for lo in range(0, n, size):
        rows = slice(lo, lo + size) if order is None else order[lo:lo + size]
        sw = None if sample_weight is None else sample_weight[rows]
        weight = len(Y[rows]) if sw is None else float(sw.sum(dtype=np.float64))
        columns = waiting.all if table is None else waiting.touched(X[rows], steps)
        if weight == 0.0:
            continue  # zero-weight rows carry no gradient
        sub_theta, sub_state = waiting.gather(columns)
        sub_plan = plan if table is None or plan.std is None else replace(
            plan, std=Standardization(*(part[columns] for part in (
                plan.std.mean, plan.std.scale, plan.std.divisor))))
        W, b = original_parameters(sub_theta, k, len(columns), sub_plan.std)
        batch = X[rows][:, columns] if table is not None else X[rows]
        value, grad_W, grad_b = grad_pass(Problem(batch, Y[rows], sw, problem.loss, k), W, b)
        loss_total += weight * value
        weight_total += weight
        if not np.isfinite(value):
            break
        steps += 1
        take_step(sub_theta, sub_state, grad_W, grad_b, sub_plan, plan.step + steps)
        waiting.scatter(columns, sub_theta, sub_state, steps)
    waiting.touched(None, steps)
    return loss_total, weight_total, steps


csr_run_epoch = run_epoch  # for CSR X too (its batches' columns, their catch-ups)


class Waiting:
    """The weights of an epoch and when each was last updated: with a catch-up table,
    those of columns no batch touched since wait (fastgd.optimizers: catch_up)."""

    def __init__(self, theta, state, optimizer, table, k, d):
        self.theta, self.state, self.optimizer, self.table = theta, state, optimizer, table
        self.k, self.d = k, d
        self.last = np.zeros(d, dtype=np.intp)  # the step each column's weights are at
        self.all = np.arange(d)

    def touched(self, batch, steps):
        """The columns a batch (None: the epoch's end) updates, brought up to `steps`."""
        if self.table is None:
            return self.all
        columns = self.all if batch is None else np.unique(batch.indices)
        behind = columns[self.last[columns] < steps]
        if len(behind):
            sub_theta, sub_state = self.gather(behind, intercepts=False)
            self.optimizer.catch_up(sub_theta, sub_state, np.tile(
                steps - self.last[behind], self.k), self.table)
            self.scatter(behind, sub_theta, sub_state, steps, intercepts=False)
        return columns

    def gather(self, columns, intercepts=True):
        """theta and the state's vectors of a model over these columns (copies; without a
        table, theta and the state themselves: every column, updated in place)."""
        if self.table is None:
            return self.theta, self.state
        index = self.index(columns, intercepts)
        return self.theta[index], {name: v[index] for name, v in self.state.items()}

    def scatter(self, columns, sub_theta, sub_state, steps, intercepts=True):
        if self.table is None:
            return  # updated in place
        index = self.index(columns, intercepts)
        self.theta[index] = sub_theta
        for name, v in self.state.items():
            v[index] = sub_state[name]
        self.last[columns] = steps

    def index(self, columns, intercepts):
        """Where the weights (output by output) and intercepts of these columns are."""
        weights = (np.arange(self.k)[:, None] * self.d + columns).ravel()
        if intercepts:
            weights = np.append(weights, self.k * self.d + np.arange(self.k))
        return weights


def original_parameters(theta, k, d, std):
    """(W (k, d), b (k,)) of theta, in original units if the training is standardized."""
    nw = k * d
    W, b = theta[:nw].reshape(k, d), theta[nw:]
    if std is not None:  # parameters in original units
        W = W * (1.0 / std.divisor)
        b = b - W @ std.mean
    return W, b


def take_step(theta, state, grad_W, grad_b, plan, t):
    """Update theta and the optimizer's state in place by its t-th step (1-based) from the
    gradient in original units: standardized, penalized, clipped, then the update rule and
    the lasso's proximal step."""
    nw = grad_W.size
    std = plan.std
    if std is not None:  # gradient in the standardized parameters
        grad_W = (grad_W - np.outer(grad_b, std.mean)) * (1.0 / std.divisor)
    with np.errstate(all="ignore"):  # overflow shows up as divergence in the driver
        # the ridge part of the penalty (on the weights reached only, for on_support)
        g = np.append(grad_W.ravel() + plan.l2 * theta[:nw], grad_b)
        if plan.optimizer.on_support:
            g[:nw][grad_W.ravel() == 0] = 0.0
        if plan.clip_norm > 0:  # as torch.nn.utils.clip_grad_norm_
            g *= min(1.0, plan.clip_norm / (np.sqrt(g @ g) + 1e-6))
        plan.optimizer.step(theta, g, state, t, plan.learning_rate, nw)
        if plan.l1 > 0:  # the proximal step of the lasso part
            shrink = plan.learning_rate * plan.l1 * plan.optimizer.l1_scale(state, t, nw)
            if plan.optimizer.on_support:
                shrink = np.where(g[:nw] != 0, shrink, 0.0)
            theta[:nw] = soft_threshold(theta[:nw], shrink)


loss_and_grad = make_loss_and_grad(sys.modules[__name__], "fastgd.reference")
