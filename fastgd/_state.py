"""Where training stands: the trained parameters, the solver's named state, the standardization.

Everything here is small (vectors of the parameters' size) and is what partial_fit carries
from call to call and a checkpoint saves.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class Standardization:
    """Implicit standardization: train on (X - mean) / scale without materializing it.

    The trained parameters (w_s, b_s) act on standardized features; in original units
    w = w_s / divisor and b = b_s - mean . w, and the gradient for w_s is
    (X^T r - mean * sum(r)) / divisor (the engines' run_epoch applies it per batch). All
    O(d): the pass over X is unchanged.

    `scale` is the features' standard deviation, 1 for a constant feature (as scikit-learn's
    StandardScaler reports it); `divisor` is the scale but inf for a constant feature. A
    constant feature standardizes to 0 everywhere: with the divisor its weight has no effect
    and its gradient is exactly 0, not the rounding error of X^T r - mean * sum(r), which
    Adagrad or Adam would divide by its own tiny size and blow up to 1e-8.
    """

    mean: np.ndarray
    scale: np.ndarray
    divisor: np.ndarray

    @classmethod
    def fit(cls, engine, problem, moments=None, center=True) -> Standardization:
        """From the column statistics of all the problem's rows (or their moments, which
        hold them); center=False: scaled only, a mean of zero (scikit-learn's
        StandardScaler(with_mean=False): still by the standard deviation)."""
        mean, var = moments.column_stats() if moments else engine.column_stats(problem)
        if not (np.isfinite(mean).all() and np.isfinite(var).all()):
            engine.raise_if_nonfinite(problem)
            raise ValueError("X has values too large to standardize (the variance overflows)")
        constant = constant_features(mean, var, engine.n_rows(problem))
        scale = np.sqrt(var)
        return cls(mean if center else np.zeros_like(mean), np.where(constant, 1.0, scale),
                   np.where(constant, np.inf, scale))

    def to_original(self, w_s, b_s):
        w = w_s / self.divisor
        return w, b_s - w @ self.mean

    def from_original(self, w, b):
        return w * self.scale, b + w @ self.mean

    def gradient_to_trained(self, grad_w, grad_b):
        """The gradient in the standardized weights from the one in original units."""
        return (grad_w - self.mean * grad_b[:, None]) / self.divisor


def constant_features(mean, var, n_samples):
    """Which features are constant: a variance within rounding error of zero."""
    eps = np.finfo(np.float64).eps
    return var <= n_samples * eps * var + (n_samples * mean * eps) ** 2


def as_theta(coef, intercept):
    """Parameters coef (k, d), intercept (k,) as one vector theta = (coef row by row, b)."""
    return np.append(coef.ravel(), intercept)


def in_original_units(std: Standardization | None, theta, d: int):
    """(coef (k, d), intercept (k,)) in original units from trained parameters theta."""
    k = len(theta) // (d + 1)
    coef, intercept = theta[:k * d].reshape(k, d), theta[k * d:]
    return std.to_original(coef, intercept) if std else (coef, intercept)


@dataclass
class TrainState:
    """Where training stands, to go on from there (partial_fit, a checkpoint): the trained
    parameters theta = (w, b) and the solver's named state (`slots`; a first-order
    optimizer's are its own: Adam's exp_avg and exp_avg_sq), in the units trained in; the
    updates and epochs made so far; and what the first call fixed: the standardization and
    the learning rate ("auto": to be computed by the next call, for a new optimizer)."""

    theta: np.ndarray
    slots: dict = field(default_factory=dict)
    steps: int = 0
    epochs: int = 0
    std: Standardization | None = None
    learning_rate: float | str = "auto"
    optimizer: str = ""

    def copy(self) -> TrainState:
        """A copy whose arrays training may update in place."""
        return replace(self, theta=self.theta.copy(),
                       slots={name: value.copy() for name, value in self.slots.items()})
