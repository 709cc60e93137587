"""The engine interface: what a pass over the data is asked, and by whom.

Training reads the data only through an `Engine`: the passes (loss and gradient, column
statistics, the mini-batch epoch) and the few other reads the training loop makes (where a
non-finite value is, the largest row, the best constant's loss, a fingerprint). A `Problem`
is the data and the loss a pass is over; an `EpochPlan`, how an epoch updates the
parameters. fastgd/_engines.py implements the interface for NumPy arrays in memory (the
compiled kernels, or fastgd.reference), fastgd/_dask.py for row shards on a Dask cluster;
fastgd/_engines.engine_for picks one for an X.

A model has k outputs (one per target, or per class of a softmax): coef (k, d), intercept
(k,), and theta = (coef row by row, intercept), k (d + 1) values: the parameters as trained
(on standardized features when the plan has a standardization).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from fastgd._sparse import is_sparse
from fastgd.losses import Loss, Squared

if TYPE_CHECKING:
    from fastgd._moments import Moments
    from fastgd._state import Standardization
    from fastgd.optimizers import Optimizer


@dataclass(frozen=True)
class Problem:
    """The data and the loss of a pass.

    X (n, d) and Y (n, loss.targets_per_row(k)) are as the engine holds them: NumPy arrays
    the kernels read in place, or the engine's own (a Dask engine's shards hold Y and the
    sample weights with X: Y is then the same object as X, sample_weight None). For an
    engine, Y None means targets of zero (the curvature's passes); the engine makes them
    for its kernels, which take arrays. `rows`, if given, restricts the problem to
    those rows (row indices into X; a Dask engine's shard numbers), read in place.
    """

    X: Any
    Y: Any
    sample_weight: np.ndarray | None
    loss: Loss
    k: int = 1
    rows: Any = None

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def sparse(self) -> bool:
        """Whether X is a scipy.sparse matrix (or shards of them: a Dask engine's)."""
        return is_sparse(self.X) or bool(getattr(self.X, "sparse", False))

    def restricted(self, rows) -> Problem:
        return replace(self, rows=rows)

    def zero_targets(self) -> Problem:
        """The squared loss of one output against zero targets: its gradient at v is H v,
        H the Hessian of the squared loss (the power iteration's pass)."""
        return replace(self, Y=None, loss=Squared(), k=1)


@dataclass(frozen=True)
class EpochPlan:
    """How an epoch updates the parameters: batches of `batch_size` positions, each batch's
    mean gradient (standardized by `std`, plus l2 w, clipped to clip_norm) stepped by the
    optimizer at `learning_rate`, then the proximal step of l1 |w|_1. `step` is the number
    of updates made before this epoch (Adam's t); shuffle_keys, three 64-bit keys, give the
    epoch's row order (None: in order), rows one by one or, with shuffle_blocks = (rows a
    block, blocks a window), by blocks (fastgd/_shuffling.py). `progress`, a one-element
    int64 array or None, is where the compiled epoch publishes its position for the
    thread that reads its windows ahead (fastgd/_prefetch.py), and then leaves the reading
    ahead to it."""

    optimizer: Optimizer
    learning_rate: float
    batch_size: int
    step: int = 0
    shuffle_keys: tuple | None = None
    std: Standardization | None = None
    l1: float = 0.0
    l2: float = 0.0
    clip_norm: float = 0.0
    shuffle_blocks: tuple | None = None
    progress: Any = None

    def catch_up_table(self, n_steps: int):
        """The optimizer's table for weights that wait while batches do not touch their
        column (sparse X; fastgd.optimizers: catch_up), for an epoch of n_steps updates;
        None where every weight must be updated at every step: the optimizer has no
        closed form for these settings, or the step reads every weight (clipping, by the
        norm of all of them; a centered standardization, whose gradient is dense)."""
        if self.clip_norm > 0 or (self.std is not None and self.std.mean.any()) or not (
                self.optimizer.catches_up(self.learning_rate, self.l1, self.l2)):
            return None
        return self.optimizer.catch_up_table(self.learning_rate, self.l1, self.l2, n_steps)

    def global_scale(self) -> bool:
        """Whether a weight's steps without a data gradient are all one factor, 1 - lr l2,
        the same for every weight (plain SGD without L1, where it catches up): the compiled
        sparse epoch then holds the weights as one scale times a vector (csr_sgd_epoch),
        without per-column step counts."""
        return (self.optimizer.name == "sgd" and self.l1 == 0
                and self.catch_up_table(0) is not None)


class Engine(Protocol):
    """The passes over a Problem's data, and the reads of it that training makes."""

    def n_rows(self, problem: Problem) -> int:
        """The rows of the problem (of its `rows` if given)."""

    def loss_and_grad(self, problem: Problem, coef, intercept) -> tuple:
        """(mean loss, gradient in coef (k, d), gradient in intercept (k,)), weighted by the
        sample weights, in one pass; coef and intercept in original units."""

    def hessian(self, problem: Problem, theta, std: Standardization | None) -> tuple:
        """(mean loss, gradient (p,), Hessian (p, p)) in the trained parameters theta
        (standardized by std; p = k (d + 1), laid out as theta), weighted, in one pass."""

    def hessian_vector(self, problem: Problem, theta, std: Standardization | None,
                       vector) -> tuple:
        """(mean loss, gradient (p,), Hessian times vector (p,)) in the trained parameters
        theta, the vector laid out as theta, weighted, in one pass (X theta, X v and
        X^T (h X v) a row at a time): Newton-CG's product, where H is too large to form."""

    def moments(self, problem: Problem) -> Moments:
        """The weighted mean and centered cross-products of the columns of [X, Y] over the
        problem's rows (fastgd/_moments.py), in one pass."""

    def column_stats(self, problem: Problem) -> tuple:
        """(mean, variance) of each column of X, weighted, over all its rows."""

    def run_epoch(self, problem: Problem, theta, state: dict, plan: EpochPlan) -> tuple:
        """One epoch of mini-batch updates of theta and the optimizer's state (named
        vectors), in place: (sum of w_i loss_i over the batches run, sum of their weights,
        updates made). A batch with a non-finite loss stops the epoch before its update."""

    def raise_if_nonfinite(self, problem: Problem) -> None:
        """After a non-finite result: a ValueError saying where X holds NaN or infinity."""

    def largest_row_norm(self, problem: Problem, std: Standardization | None) -> float:
        """max over rows of (|x_i|^2 + 1) w_i / mean(w) (x_i standardized by std)."""

    def best_constant(self, problem: Problem) -> tuple:
        """(the best constant raw output (k,), its mean loss): the prediction that ignores X
        (Loss.best_constant_and_loss)."""

    def nearest_rows(self, problem: Problem, coef, intercept, count: int,
                     direction=None, on: float = 0.0, output: int = 0) -> tuple:
        """(X's rows (m, d) float64, their Y (m, ky), weights (m,), the weight of all the
        problem's rows): the m = min(count, such rows) rows with weight nearest the model
        (coef (k, d), intercept (k,), original units) in `output`, nearest first: by the
        distance to the loss's kink (Loss.kink: the residual's size for the pinball loss),
        or along a direction (coef (d,), intercept) by the step at which that distance
        reaches 0, leaving out the rows within `on` of 0 already
        (fastgd.reference.nearest_rows). The smoothing's crossover and polish read them
        (solvers/smoothing.py)."""

    def fingerprint(self, problem: Problem, digest) -> dict:
        """What tells this data from other data, beyond its statistics: the engine's own
        entries (dtype, blocks), and a sample of rows hashed into `digest` (hashlib)."""


MASK64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """A 64-bit mixing function (SplitMix64's finalizer), for the per-epoch shuffle keys."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def shuffle_keys(seed: int, epoch: int) -> tuple:
    """The three Feistel keys of an epoch's row order: new each epoch, fixed by the seed."""
    return tuple(splitmix64(splitmix64(seed) ^ (3 * epoch + r)) for r in range(3))
