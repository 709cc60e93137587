"""The same mathematics as the compiled engine, in plain NumPy: the definition of correct.

This module is also an engine: `grad_pass` and `column_stats` have the signatures of their
compiled twins in fastgd/_kernels.pxi, so `engine="numpy"` runs the very same training
driver on them. It is the textbook code (X read twice per gradient, temporaries allocated),
computed in float64 whatever the data's dtype, and the baseline of every benchmark.
"""

from __future__ import annotations

import numpy as np

from fastgd._api import make_loss_and_grad


def squared_loss(z, y):
    return (z - y) ** 2


def squared_dloss(z, y):
    return 2.0 * (z - y)


LOSSES = {"squared": (squared_loss, squared_dloss)}


def _weights(sample_weight, n):
    return np.ones(n) if sample_weight is None else sample_weight.astype(np.float64)


def grad_pass(X, y, sample_weight, coef, intercept, loss, n_threads):
    """(mean loss, gradient in coef, gradient in intercept) of validated inputs."""
    X = X.astype(np.float64, copy=False)
    y = y.astype(np.float64, copy=False)
    w = _weights(sample_weight, len(y))
    value, derivative = LOSSES[loss]
    with np.errstate(all="ignore"):  # non-finite results are reported by the caller
        z = X @ coef + intercept                  # forward pass
        r = w * derivative(z, y) / w.sum()        # dL/dz_i
        return (w * value(z, y)).sum() / w.sum(), X.T @ r, r.sum()


def column_stats(X, sample_weight, n_threads):
    """Weighted per-column mean and population variance of validated X."""
    X = X.astype(np.float64, copy=False)
    w = _weights(sample_weight, X.shape[0])
    mean = np.average(X, axis=0, weights=w)
    var = np.average((X - mean) ** 2, axis=0, weights=w)
    return mean, var


loss_and_grad = make_loss_and_grad(grad_pass, "fastgd.reference")
