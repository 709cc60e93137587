"""The weighted moments of the columns of [X, Y] (Engine.moments: one read of X): all a
quadratic loss's objective needs at any parameters, and the standardization's statistics
and the best constant's loss besides. Least squares by Newton is then one read of X and a
(d + 1) x (d + 1) solve (fastgd/solvers/newton.py; the objective is Loss.from_moments).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Moments:
    """weight: the rows' total weight; mean (q,): the weighted mean of each column of
    [X, Y] (q = d + Y's columns); comoment (q, q): sum_r w_r (v_r - mean) (v_r - mean)^T."""

    weight: float
    mean: np.ndarray
    comoment: np.ndarray
    n_features: int

    @classmethod
    def of(cls, result, n_features: int) -> Moments:
        """From a moments pass's (weight, mean, comoment)."""
        weight, mean, comoment = result
        return cls(float(weight), mean, comoment, n_features)

    def merged(self, other: Moments) -> Moments:
        """The moments of both sets of rows (Chan et al.'s pairwise update): the sum of the
        two comoments plus the spread of the two means."""
        if other.weight == 0.0:
            return self
        if self.weight == 0.0:
            return other
        total = self.weight + other.weight
        delta = other.mean - self.mean
        return Moments(total, self.mean + delta * (other.weight / total),
                       self.comoment + other.comoment
                       + np.outer(delta, delta) * (self.weight * other.weight / total),
                       self.n_features)

    def covariance(self) -> np.ndarray:
        """The weighted (population) covariance of the columns of [X, Y]."""
        return self.comoment / self.weight

    def column_stats(self) -> tuple:
        """(mean, variance) of each column of X, as Engine.column_stats gives them."""
        d = self.n_features
        return self.mean[:d], np.diag(self.comoment)[:d] / self.weight
