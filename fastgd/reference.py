"""The same mathematics as the compiled engine, in plain NumPy: the definition of correct.

This module is also an engine: `grad_pass` and `column_stats` have the signatures of their
compiled twins in fastgd/_kernels.pxi, so `engine="numpy"` runs the very same training
driver on them. It is the textbook code (X read twice per gradient, temporaries allocated),
computed in float64 whatever the data's dtype, and the baseline of every benchmark.
"""

from __future__ import annotations

import numpy as np

from fastgd._api import make_loss_and_grad


# Per-row losses of a prediction z against a target y, and their derivatives in z (delta:
# Huber's threshold, unused by the others). The same formulas as fastgd/_losses.pxd.

def squared_loss(z, y, delta):            # torch's MSELoss
    return (z - y) ** 2


def squared_dloss(z, y, delta):
    return 2.0 * (z - y)


def huber_loss(z, y, delta):              # torch's HuberLoss
    r = np.abs(z - y)
    return np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta))


def huber_dloss(z, y, delta):
    return np.clip(z - y, -delta, delta)


def log_loss(z, y, delta):                # torch's BCEWithLogitsLoss, y in [0, 1]
    return np.logaddexp(0.0, z) - y * z


def log_dloss(z, y, delta):               # sigmoid(z) - y, without overflow
    return np.exp(-np.logaddexp(0.0, -z)) - y


def elementwise(value, derivative):
    """A row's loss as the sum over its k outputs of a per-output loss."""
    def row_loss(Z, Y, delta):
        return value(Z, Y, delta).sum(axis=1), derivative(Z, Y, delta)
    return row_loss


def multinomial_loss(Z, Y, delta):        # torch's CrossEntropyLoss, Y[:, 0] class indices
    """log(sum_o e^z_o) - z_c with the largest logit subtracted; d/dz = softmax - one-hot."""
    rows, c = np.arange(len(Z)), Y[:, 0].astype(np.intp)
    shifted = Z - Z.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1)
    derivative = exp / total[:, None]
    derivative[rows, c] -= 1.0
    return np.log(total) - shifted[rows, c], derivative


# (Z, Y, delta) -> (each row's loss, its derivative in Z), for predictions Z (n, k).
LOSSES = {"squared": elementwise(squared_loss, squared_dloss),
          "huber": elementwise(huber_loss, huber_dloss),
          "log": elementwise(log_loss, log_dloss),
          "multinomial": multinomial_loss}


def _weights(sample_weight, n):
    return np.ones(n) if sample_weight is None else sample_weight.astype(np.float64)


def grad_pass(X, Y, sample_weight, coef, intercept, loss, n_threads, rows=None):
    """(mean loss, gradient in coef (k, d), gradient in intercept (k,)) of validated inputs
    (of the rows `rows` only, if given), for a model of k outputs: coef (k, d),
    intercept (k,), Y (n, k) or, for the multinomial loss, (n, 1) class indices."""
    if rows is not None:
        X, Y = X[rows], Y[rows]
        sample_weight = None if sample_weight is None else sample_weight[rows]
    X = X.astype(np.float64, copy=False)
    Y = Y.astype(np.float64, copy=False)
    w = _weights(sample_weight, len(Y))
    with np.errstate(all="ignore"):  # non-finite results are reported by the caller
        Z = X @ coef.T + intercept                          # forward pass
        value, derivative = LOSSES[loss.name](Z, Y, loss.delta)
        R = w[:, None] * derivative / w.sum()               # dL/dz_io
        return (w * value).sum() / w.sum(), R.T @ X, R.sum(axis=0)


def column_stats(X, sample_weight, n_threads):
    """Weighted per-column mean and population variance of validated X."""
    X = X.astype(np.float64, copy=False)
    w = _weights(sample_weight, X.shape[0])
    mean = np.average(X, axis=0, weights=w)
    var = np.average((X - mean) ** 2, axis=0, weights=w)
    return mean, var


# Optimizer update rules, as in torch.optim, on theta = (W, b) with gradient g, state m and v
# (zero at start), 1-based step t and learning rate lr. Each updates theta, m, v in place;
# the intercepts theta[n_weights:] are parameters like the weights, except for AdamW's
# weight decay.

def sgd(theta, g, m, v, t, lr, h, n_weights):
    theta -= lr * g


def momentum(theta, g, m, v, t, lr, h, n_weights):
    m *= h["momentum"]
    m += g
    theta -= lr * m


def nesterov(theta, g, m, v, t, lr, h, n_weights):
    m *= h["momentum"]
    m += g
    theta -= lr * (g + h["momentum"] * m)


def adagrad(theta, g, m, v, t, lr, h, n_weights):
    v += g * g
    theta -= lr * g / (np.sqrt(v) + h["eps"])


def rmsprop(theta, g, m, v, t, lr, h, n_weights):
    v *= h["rho"]
    v += (1 - h["rho"]) * g * g
    theta -= lr * g / (np.sqrt(v) + h["eps"])


def adam(theta, g, m, v, t, lr, h, n_weights):
    m += (1 - h["beta1"]) * (g - m)
    v *= h["beta2"]
    v += (1 - h["beta2"]) * g * g
    bias1, bias2 = 1 - h["beta1"] ** t, 1 - h["beta2"] ** t
    theta -= (lr / bias1) * m / (np.sqrt(v) * (1 / np.sqrt(bias2)) + h["eps"])


def adamw(theta, g, m, v, t, lr, h, n_weights):
    theta[:n_weights] *= 1 - lr * h["weight_decay"]  # decoupled decay, not on the intercepts
    adam(theta, g, m, v, t, lr, h, n_weights)


OPTIMIZERS = {f.__name__: f for f in (sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw)}


def l1_step(optimizer, v, t, h):
    """The optimizer's step per unit of a settled gradient (the proximal step's threshold
    is l1 lr times it; see prox_l1 in fastgd/_optim.pxd): 1, 1 / (1 - momentum), or per
    weight 1 / (sqrt(v) + eps), with Adam's v unbiased by 1 - beta2^t."""
    if optimizer in ("sgd", "momentum", "nesterov"):
        return 1.0 if optimizer == "sgd" else 1.0 / (1.0 - h["momentum"])
    unbias = 1.0 / np.sqrt(1 - h["beta2"] ** t) if optimizer in ("adam", "adamw") else 1.0
    return 1.0 / (np.sqrt(v) * unbias + h["eps"])


FEISTEL_MULT = np.uint64(0x9E3779B97F4A7C15)


def shuffled_rows(keys, n):
    """The row read at each position of a shuffled epoch: a keyed 3-round Feistel network
    on [0, 4^half), cycle-walked into [0, n): a permutation of range(n) (as the compiled
    engine's shuffled_row, position by position)."""
    half = np.uint64((max(1, int(n - 1).bit_length()) + 1) // 2)
    mask = (np.uint64(1) << half) - np.uint64(1)
    shift = np.uint64(64) - half

    def feistel(x):
        left, right = x >> half, x & mask
        for key in keys:
            left, right = right, left ^ ((((right ^ np.uint64(key)) * FEISTEL_MULT) >> shift)
                                         & mask)
        return (left << half) | right

    rows = feistel(np.arange(n, dtype=np.uint64))
    outside = rows >= n
    while outside.any():  # cycle-walking: apply again until the row is in range
        rows[outside] = feistel(rows[outside])
        outside = rows >= n
    return rows.astype(np.intp)


def run_epoch(X, Y, sample_weight, theta, m, v, step, mean, scale, optimizer, hyper,
              learning_rate, batch_size, shuffle_keys, loss, n_threads, rows=None):
    """One epoch of batches; see fastgd/_kernels.pxi for the contract."""
    d = X.shape[1]
    k = len(theta) // (d + 1)
    n = X.shape[0] if rows is None else len(rows)  # positions: the rows trained on
    order = None if shuffle_keys is None else shuffled_rows(shuffle_keys, n)
    if rows is not None:
        order = rows if order is None else rows[order]
    inv_scale = None if scale is None else 1.0 / scale
    loss_total = weight_total = 0.0
    steps = 0
    for lo in range(0, n, batch_size):
        rows = slice(lo, lo + batch_size) if order is None else order[lo:lo + batch_size]
        sw = None if sample_weight is None else sample_weight[rows]
        weight = len(Y[rows]) if sw is None else float(sw.sum(dtype=np.float64))
        if weight == 0.0:
            continue  # zero-weight rows carry no gradient
        W, b = original_parameters(theta, k, d, mean, inv_scale)
        value, grad_W, grad_b = grad_pass(X[rows], Y[rows], sw, W, b, loss, n_threads)
        loss_total += weight * value
        weight_total += weight
        if not np.isfinite(value):
            break
        steps += 1
        take_step(theta, m, v, grad_W, grad_b, step + steps, mean, inv_scale, optimizer,
                  hyper, learning_rate)
    return loss_total, weight_total, steps


def original_parameters(theta, k, d, mean, inv_scale):
    """(W (k, d), b (k,)) of theta, in original units if the training is standardized."""
    nw = k * d
    W, b = theta[:nw].reshape(k, d), theta[nw:]
    if mean is not None:  # parameters in original units (inv_scale = 1 / scale)
        W = W * inv_scale
        b = b - W @ mean
    return W, b


def take_step(theta, m, v, grad_W, grad_b, t, mean, inv_scale, optimizer, hyper,
              learning_rate):
    """Update theta, m, v in place by the optimizer's t-th step (1-based) from the gradient
    in original units: standardized, penalized, clipped, then the update rule and the
    lasso's proximal step."""
    nw = grad_W.size
    if mean is not None:  # gradient in the standardized parameters
        grad_W = (grad_W - np.outer(grad_b, mean)) * inv_scale
    with np.errstate(all="ignore"):  # overflow shows up as divergence in the driver
        # the ridge part of the penalty
        g = np.append(grad_W.ravel() + hyper["l2"] * theta[:nw], grad_b)
        if hyper["clip_norm"] > 0:  # as torch.nn.utils.clip_grad_norm_
            g *= min(1.0, hyper["clip_norm"] / (np.sqrt(g @ g) + 1e-6))
        OPTIMIZERS[optimizer](theta, g, m, v, t, learning_rate, hyper, nw)
        if hyper["l1"] > 0:  # the proximal step of the lasso part
            shrink = learning_rate * hyper["l1"] * l1_step(optimizer, v[:nw], t, hyper)
            theta[:nw] = np.sign(theta[:nw]) * np.maximum(np.abs(theta[:nw]) - shrink, 0.0)


loss_and_grad = make_loss_and_grad(grad_pass, "fastgd.reference")
