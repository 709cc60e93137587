"""The public kernel functions, built once for each engine so both check inputs alike."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import numpy as np

from fastgd import losses
from fastgd._problem import Problem
from fastgd._sparse import is_sparse
from fastgd._threads import effective_n_threads
from fastgd._validation import (as_coef, as_data, as_intercept, as_sample_weight, as_targets,
                                as_vector, check_number, raise_if_nonfinite)

LOSS_AND_GRAD_DOC = """Mean loss of a linear model and its gradient, in one pass over X.

    The model predicts ``z = X @ coef + intercept`` (``X @ coef.T + intercept`` for k
    outputs, coef of shape (k, n_features)). With weights w (all 1 without sample_weight)
    and a per-row loss l(z, y)::

        L      = sum_i w_i l(z_i, y_i) / sum_i w_i
        dL/dw  = sum_i w_i l'(z_i, y_i) x_i / sum_i w_i
        dL/db  = sum_i w_i l'(z_i, y_i) / sum_i w_i

{losses}

    Parameters
    ----------
    X : array or scipy.sparse matrix of shape (n_samples, n_features)
        float32 or float64 arrays with contiguous rows or columns (C or F order, read-only
        and memory-mapped ones included) are read in place; anything else is converted once.
        Sparse X: CSR with sorted indices is read in place (its stored entries only), other
        formats are converted to CSR once.
    y : array of shape (n_samples,) or (n_samples, k)
    coef : array of shape (n_features,) or (k, n_features)
    intercept : float, or array of shape (k,)
    loss : {loss_names}
{loss_params}    sample_weight : array of shape (n_samples,), optional
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


def loss_doc(indent: str = "    ") -> str:
    """Each loss of the registry and its formula, for docstrings."""
    lines = [f'``loss="{name}"``: {cls.summary}' for name, cls in losses.LOSSES.items()]
    lines.append("With k outputs the per-output losses (all but the multinomial) are summed "
                 "over a row's outputs (y of shape (n_samples, k)).")
    return "\n".join(textwrap.fill(line, 88, initial_indent=indent, subsequent_indent=indent)
                     for line in lines)


def loss_params_doc(indent: str = "    ") -> str:
    """The losses' parameters, for docstrings."""
    return "".join(f"{indent}{key} : float, default={default}\n"
                   f"{indent}    {cls.params_doc[key]}\n"
                   for cls in losses.LOSSES.values() for key, default in cls.params.items())


def make_loss_and_grad(passes, module: str) -> Callable:
    """The public ``loss_and_grad`` on top of a module of passes (the compiled kernels or
    fastgd.reference): its ``grad_pass``, or ``csr_grad_pass`` for sparse X (functions of
    (problem, coef, intercept, n_threads)), with the same checks for every engine."""

    def loss_and_grad(X, y, coef, intercept, *, loss: str = "squared", sample_weight=None,
                      n_threads: int | None = None, **loss_params):
        one_output = np.ndim(coef) == 1
        problem, coef, intercept = checked_problem(X, y, coef, intercept, loss, loss_params,
                                                   sample_weight)
        grad_pass = passes.csr_grad_pass if is_sparse(problem.X) else passes.grad_pass
        value, grad_coef, grad_intercept = grad_pass(problem, coef, intercept,
                                                     n_threads=effective_n_threads(n_threads))
        if not (np.isfinite(value) and np.isfinite(grad_intercept).all()
                and np.isfinite(grad_coef).all()):
            raise_if_nonfinite(problem.X)
            raise ValueError("The loss or its gradient overflows float64 at these parameters: "
                             "X, y or coef hold values too large; rescale them.")
        if one_output:  # shapes as given
            return float(value), grad_coef[0], float(grad_intercept[0])
        return float(value), grad_coef, grad_intercept

    loss_and_grad.__module__ = module
    loss_and_grad.__doc__ = LOSS_AND_GRAD_DOC.replace("{module}", module).format(
        losses=loss_doc(), loss_names="{" + ", ".join(f'"{n}"' for n in losses.LOSSES) + "}",
        loss_params=loss_params_doc())
    return loss_and_grad


def checked_problem(X, y, coef, intercept, loss, loss_params, sample_weight):
    """The public loss_and_grad's arguments, validated, as (Problem, coef (k, d),
    intercept (k,))."""
    X = as_data(X)
    n, d = X.shape
    known = losses.parameter_names()
    for key, value in loss_params.items():
        if key not in known:
            raise TypeError(f"loss_and_grad() got an unexpected keyword argument {key!r}")
        losses.check_parameter(key, value)
    spec = losses.get(loss, **loss_params)
    coef = np.asarray(coef)
    k = max(coef.shape[0], 1) if coef.ndim == 2 else 1  # (0, d) is refused: no outputs
    coef = as_coef(coef, (k, d) if coef.ndim == 2 else (d,))
    if spec.class_indices:
        if coef.ndim != 2 or k < spec.min_outputs:
            raise ValueError(f"coef must have shape (n_classes, {d}) with "
                             f"{spec.min_outputs} classes or more for loss={loss!r}, got "
                             f"{coef.shape}")
        Y = as_vector(y, "y", n, X.dtype)[:, None]
    else:
        Y = as_targets(y, n, k, X.dtype)
    spec.check_targets(Y, k)
    problem = Problem(X, Y, as_sample_weight(sample_weight, n, X.dtype), spec, k)
    return problem, coef.reshape(k, d), as_intercept(intercept, k)
