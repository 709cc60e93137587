"""The public kernel functions, built once for each engine so both check inputs alike."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fastgd._validation import check_loss_and_grad_args, raise_if_nonfinite

LOSS_AND_GRAD_DOC = """Mean loss of a linear model and its gradient, in one pass over X.

    The model predicts ``z = X @ coef + intercept`` (``X @ coef.T + intercept`` for k
    outputs, coef of shape (k, n_features)). With weights w (all 1 without sample_weight)
    and a per-row loss l(z, y)::

        L      = sum_i w_i l(z_i, y_i) / sum_i w_i
        dL/dw  = sum_i w_i l'(z_i, y_i) x_i / sum_i w_i
        dL/db  = sum_i w_i l'(z_i, y_i) / sum_i w_i

    ``loss="squared"`` (torch's ``MSELoss``): l = (z - y)^2, l' = 2 (z - y).
    ``loss="huber"`` (torch's ``HuberLoss``): with r = z - y, l = r^2 / 2 where
    ``|r| <= delta``, else delta (|r| - delta / 2); l' = r clipped to [-delta, delta].
    ``loss="log"`` (torch's ``BCEWithLogitsLoss``; z is a logit, y in [0, 1]):
    l = log(1 + e^z) - y z, l' = sigmoid(z) - y, computed without overflow.
    With k outputs these are summed over a row's outputs (y of shape (n_samples, k)).
    ``loss="multinomial"`` (torch's ``CrossEntropyLoss``; k >= 2 logits per row, y the
    class index 0..k-1): l = log(sum_o e^z_o) - z_y, l' = softmax(z) - onehot(y),
    computed with the largest logit subtracted, so no exp overflows.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        float32 or float64 arrays with contiguous rows or columns (C or F order, read-only
        and memory-mapped ones included) are read in place; anything else is converted once.
    y : array of shape (n_samples,) or (n_samples, k)
    coef : array of shape (n_features,) or (k, n_features)
    intercept : float, or array of shape (k,)
    loss : {"squared", "huber", "log", "multinomial"}
    delta : float, default=1.0
        Huber's threshold (scikit-learn's SGDRegressor calls it epsilon).
    sample_weight : array of shape (n_samples,), optional
        Non-negative, not all zero.
    n_threads : int, optional
        None: as many threads as OpenMP allows (OMP_NUM_THREADS, threadpoolctl limits),
        at most the physical cores; -1: all of those; the result is the same for any value.

    Returns
    -------
    loss : float
    grad_coef : ndarray of coef's shape, float64
    grad_intercept : float, or ndarray of shape (k,) for 2-D coef

    Examples
    --------
    >>> import numpy as np, {module}
    >>> X = np.array([[1.0], [2.0], [3.0]]); y = np.array([2.0, 4.0, 6.0])
    >>> loss, g, gb = {module}.loss_and_grad(X, y, np.zeros(1), 0.0)
    >>> round(loss, 4), round(float(g[0]), 4), round(gb, 4)
    (18.6667, -18.6667, -8.0)
    """


def make_loss_and_grad(grad_pass: Callable, module: str) -> Callable:
    """The public ``loss_and_grad`` on top of an engine's ``grad_pass``."""

    def loss_and_grad(X, y, coef, intercept, *, loss: str = "squared", delta: float = 1.0,
                      sample_weight=None, n_threads: int | None = None):
        args = check_loss_and_grad_args(X, y, coef, intercept, loss, delta, sample_weight,
                                        n_threads)
        value, grad_coef, grad_intercept = grad_pass(*args)
        if not (np.isfinite(value) and np.isfinite(grad_intercept).all()
                and np.isfinite(grad_coef).all()):
            raise_if_nonfinite(args[0])
            raise ValueError("The loss or its gradient overflows float64 at these parameters: "
                             "X, y or coef hold values too large; rescale them.")
        if np.ndim(coef) == 1:  # one output: shapes as given
            return float(value), grad_coef[0], float(grad_intercept[0])
        return float(value), grad_coef, grad_intercept

    loss_and_grad.__module__ = module
    loss_and_grad.__doc__ = LOSS_AND_GRAD_DOC.replace("{module}", module)
    return loss_and_grad
