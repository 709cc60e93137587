"""First-order training: each step is one epoch of updates by an optimizer of
fastgd/optimizers.py, in batches (the whole data for full-batch gradient descent), run by the
engine in one call (engine.run_epoch: for the compiled engine, one nogil call for all the
batches of an epoch). The learning rate follows a per-epoch schedule.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

from fastgd._errors import PerformanceWarning, user_stacklevel
from fastgd._problem import EpochPlan, shuffle_keys
from fastgd._state import TrainState
from fastgd.optimizers import Optimizer
from fastgd.solvers import Step, smooth_objective
from fastgd.solvers.curvature import batch_curvature, largest_curvature, largest_row_curvature

SCHEDULES = ("constant", "step", "exponential", "invscaling", "cosine")
DENSE_STEPS_HINT = ("a batch costs its own entries with 'sgd', or 'momentum' and "
                    "'nesterov' without L1, 'adagrad' without L2 (alpha with l1_ratio=1), "
                    "'rmsprop' without a penalty, or 'sparse_adam'; and without clip_norm")


@dataclass
class FirstOrder:
    """Epochs of `optimizer` updates at `learning_rate` ("auto": the optimizer's
    auto_learning_rate) on batches of `batch_size` rows (None: all), in a new
    order each epoch when `shuffle_seed` (an int) is given and there is more than one batch:
    rows one by one, or by blocks when `shuffle_blocks` = (rows a block, blocks a window)
    is given (fastgd/_shuffling.py).
    The penalty is l1 |w|_1 + l2 |w|^2 / 2; clip_norm > 0 clips each batch's gradient.
    `schedule` holds the estimators' schedule settings; `horizon` is the cosine's T_max
    (its epochs in all)."""

    optimizer: Optimizer
    learning_rate: float | str = "auto"
    schedule: dict = field(default_factory=lambda: {"schedule": "constant",
                                                    "warmup_epochs": 0})
    batch_size: int | None = None
    shuffle_seed: int | None = None
    shuffle_blocks: tuple | None = None
    horizon: int | None = None
    l1: float = 0.0
    l2: float = 0.0
    clip_norm: float = 0.0
    n_rows: int = field(default=0, init=False)  # trained on, set by start

    def new_state(self, theta, std) -> TrainState:
        return TrainState(theta, self.optimizer.new_state(len(theta)), std=std,
                          learning_rate=self.learning_rate, optimizer=self.optimizer.name)

    def go_on_from(self, state: TrainState) -> TrainState:
        """The state to go on from under these (possibly changed) settings: a new optimizer
        starts with a fresh state of its own (and, under "auto", its own learning rate), a
        new numeric learning rate is used from now on."""
        if self.optimizer.name != state.optimizer:
            return replace(self.new_state(state.theta, state.std), epochs=state.epochs)
        if self.learning_rate != "auto":
            return replace(state, learning_rate=float(self.learning_rate))
        return state

    def reads_moments(self, problem) -> bool:
        return False

    def centers(self, problem) -> bool:
        return not (problem.sparse and self.batch_size is not None)

    def start(self, engine, problem, state, n_rows, threshold=None, moments=None):
        self.n_rows = n_rows
        if state.learning_rate == "auto":
            state = replace(state, learning_rate=self.optimizer.auto_learning_rate(
                lambda: self.curvature(engine, problem, state.std),
                batch_fraction=self.rows_per_batch / n_rows,
                first_step=lambda: self.first_step(engine, problem, state)))
        self.warn_if_dense_steps(problem, state)
        return state

    def warn_if_dense_steps(self, problem, state) -> None:
        """Mini-batches over sparse X whose every step updates every weight (no closed
        form to catch up with: EpochPlan.catch_up_table) cost O(n_features) a batch, which
        on wide data is orders of magnitude beyond the batch's own entries (measured:
        Adagrad with L2 on 2^20 hashed features, 25 s an epoch, against 0.5 s for SGD):
        a warning that says what would not."""
        if not problem.sparse or self.rows_per_batch >= self.n_rows:
            return
        plan = EpochPlan(self.optimizer, state.learning_rate, self.rows_per_batch,
                         std=state.std, l1=self.l1, l2=self.l2, clip_norm=self.clip_norm)
        if plan.catch_up_table(0) is None:
            warnings.warn(
                f"optimizer={self.optimizer.name!r} with these settings updates every "
                f"weight at every batch of sparse X (O(n_features) a step): "
                f"{DENSE_STEPS_HINT}", PerformanceWarning, stacklevel=user_stacklevel())

    def first_step(self, engine, problem, state):
        """Full-batch gradient descent's step g / L from state.theta, on the objective."""
        gradient = smooth_objective(engine, problem, state.theta, state.std, self.l2)[2]
        return gradient / max(largest_curvature(engine, problem, state.std, self.l2), 1e-300)

    @property
    def rows_per_batch(self) -> int:
        return self.n_rows if self.batch_size is None else min(self.batch_size, self.n_rows)

    def curvature(self, engine, problem, std) -> float:
        """The (expected, for a mini-batch) largest curvature of the objective, from all
        the rows."""
        L = largest_curvature(engine, problem, std, self.l2)
        if self.rows_per_batch >= self.n_rows:
            return L
        return batch_curvature(L, largest_row_curvature(engine, problem, std, self.l2),
                               self.n_rows, self.rows_per_batch)

    def step(self, engine, problem, state, epoch):
        rate = scheduled_rate(epoch, state.learning_rate, self.schedule, self.horizon)
        shuffled = self.shuffle_seed is not None and self.rows_per_batch < self.n_rows
        plan = EpochPlan(optimizer=self.optimizer, learning_rate=rate,
                         batch_size=self.rows_per_batch, step=state.steps,
                         shuffle_keys=shuffle_keys(self.shuffle_seed, epoch) if shuffled
                         else None, shuffle_blocks=self.shuffle_blocks, std=state.std,
                         l1=self.l1, l2=self.l2, clip_norm=self.clip_norm)
        return Step(*engine.run_epoch(problem, state.theta, state.slots, plan), rate)


def scheduled_rate(epoch: int, learning_rate: float, schedule: dict, max_epochs: int) -> float:
    """The learning rate of epoch `epoch` (0-based), stepped once per epoch.

    As torch.optim.lr_scheduler: "step" is StepLR (lr gamma^(epoch // step_size)),
    "exponential" ExponentialLR (lr gamma^epoch), "cosine" CosineAnnealingLR with
    T_max = max_epochs (eta_min + (lr - eta_min)(1 + cos(pi epoch / T_max)) / 2);
    "invscaling" is scikit-learn's lr / (epoch + 1)^power_t. A linear warmup multiplies
    the first warmup_epochs epochs by (epoch + 1) / (warmup_epochs + 1).
    """
    kind = schedule["schedule"]
    if kind == "step":
        rate = learning_rate * power(schedule["gamma"], epoch // schedule["step_size"])
    elif kind == "exponential":
        rate = learning_rate * power(schedule["gamma"], epoch)
    elif kind == "invscaling":
        rate = learning_rate / power(epoch + 1, schedule["power_t"])
    elif kind == "cosine":
        eta_min = schedule["eta_min"]
        cosine = (1 + math.cos(math.pi * (epoch / max_epochs))) / 2
        rate = eta_min + (learning_rate - eta_min) * cosine
    else:
        rate = learning_rate
    warmup = schedule["warmup_epochs"]
    return rate * ((epoch + 1) / (warmup + 1)) if epoch < warmup else rate


def power(base: float, exponent: float) -> float:
    """base ** exponent, inf where that overflows a float (a growing schedule then diverges
    like any other too-large rate, and is reported as such)."""
    try:
        return float(base) ** exponent
    except OverflowError:
        return math.inf
