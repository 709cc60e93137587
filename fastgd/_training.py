"""The training loop, the same for every engine and every solver.

`train` drives a solver (fastgd/solvers) one step at a time on an engine's data
(fastgd/_problem.py) and owns everything around the steps: the history, callbacks, progress,
divergence, Ctrl-C, checkpoints, early stopping and tol. The engines compute; the solver
decides what a step does; the loop decides when to stop and what to keep.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np

from fastgd._errors import DivergenceError, convergence_warning, user_stacklevel
from fastgd._progress import Progress
from fastgd._state import Standardization, TrainState, as_theta, in_original_units
from fastgd._threads import one_blas_thread
from fastgd.solvers import penalty

# A loss this many times the first epoch's is treated as divergence, like a non-finite one.
EXPLODE_FACTOR = 1e10


@dataclass
class LoopState:
    """Everything the loop carries from one epoch to the next: the TrainState, the history,
    and the bookkeeping of divergence (last_good: the parameters at the start of the last
    epoch with a finite loss), Ctrl-C (best, best_loss: where the lowest training loss was
    seen) and early stopping (best_val, best_val_params, stale). Training resumed from it
    (a checkpoint) goes on bit for bit as if it had never stopped."""

    state: TrainState
    history: dict
    last_good: np.ndarray
    best: np.ndarray
    best_loss: float
    best_val: float = math.inf
    best_val_params: np.ndarray | None = None
    stale: int = 0

    @classmethod
    def fresh(cls, state: TrainState, validating: bool) -> LoopState:
        history = {name: [] for name in HISTORY + (("val_loss",) if validating else ())}
        theta = state.theta
        return cls(state=state, history=history, last_good=theta, best=theta,
                   best_loss=math.inf, best_val_params=theta if validating else None)

    def copy(self, state: bool = True) -> LoopState:
        """A copy the loop may update in place (its arrays and lists its own; state=False:
        the TrainState is the loop's already, and is not copied: a solver's state can be
        many vectors of the parameters' size, L-BFGS's 20 + 5)."""
        return replace(self, state=self.state.copy() if state else self.state,
                       history={key: list(values) for key, values in self.history.items()},
                       last_good=self.last_good.copy(), best=self.best.copy(),
                       best_val_params=None if self.best_val_params is None
                       else self.best_val_params.copy())

    def snapshot(self) -> LoopState:
        """As of now, for a checkpoint written at once."""
        return replace(self, state=replace(self.state))


# What the history records of each step: the mean training loss its first pass saw, the
# objective there (the loss plus the penalty), the learning rate or step length, the wall
# time, and the passes over the data (the first step's count includes the set-up's: the
# column statistics, the curvature).
HISTORY = ("loss", "objective", "learning_rate", "seconds", "passes")


class Counted:
    """An engine that counts the passes over the data made through it."""

    PASSES = frozenset({"loss_and_grad", "hessian", "hessian_vector", "moments",
                        "column_stats", "run_epoch",
                        "largest_row_norm", "nearest_rows"})

    def __init__(self, engine):
        self.engine, self.passes = engine, 0

    def __getattr__(self, name):
        method = getattr(self.engine, name)
        if name not in self.PASSES:
            return method

        def counted(*args, **kwargs):
            self.passes += 1
            return method(*args, **kwargs)
        return counted


@dataclass
class EarlyStopping:
    """Train on `train_rows` only; after each epoch score `val_rows` (the validation loss),
    stop once `patience` epochs in a row did not improve on the best by more than tol, and
    keep the parameters that scored best. Both are the engine's `rows` (Problem.rows): row
    indices into X, read in place (fastgd/_dask.py: numbers of shards)."""

    train_rows: np.ndarray
    val_rows: np.ndarray
    patience: int


@dataclass
class FitResult:
    coef: np.ndarray        # (k, d)
    intercept: np.ndarray   # (k,)
    n_iter: int
    history: dict
    standardization: Standardization | None
    learning_rate: float
    error: DivergenceError | None = None  # set when training diverged
    state: TrainState | None = None       # to go on from (None after a divergence)


def stops(answer) -> bool:
    """A callback's answer asks training to stop: True (Python's or NumPy's), nothing else."""
    return answer is True or answer is np.True_


def train(engine, problem, solver, *, coef, intercept, standardize: bool | str, max_epochs: int,
          tol: float | None, callbacks=(), verbose: int = 0, state: TrainState | None = None,
          early_stopping: EarlyStopping | None = None, resume: LoopState | None = None,
          checkpoint=None, checkpoint_every: int = 1) -> FitResult:
    """Train from (coef (k, d), intercept (k,)) on `problem` (all its rows) by `solver`;
    parameters in and out in original units. intercept None: the best constant prediction's
    for a loss that starts there (Loss.starts_at_constant), else zeros.

    history["loss"][k] is the mean training loss seen by step k's first pass (for
    mini-batches, each batch's loss before its update, weighted by the batch's weight),
    history["objective"][k] that plus the penalty at the step's starting parameters,
    history["seconds"][k] the step's wall time, history["passes"][k] its passes over the
    data (HISTORY). After each step every callback gets {"epoch", and those}; one
    returning True stops training.

    KeyboardInterrupt (Ctrl-C) is seen when the step under way returns: training stops
    there with a warning, keeping the parameters with the lowest training loss so far.

    With a `state` (a previous result's, as the solver goes on from it), training goes on
    from it: (coef, intercept) and standardize are then ignored, and steps are numbered on
    (for the schedule and the row orders). With `resume` (a LoopState), training goes on
    from it with its history and bookkeeping too, for max_epochs more steps. Every
    `checkpoint_every` steps (at step numbers that are multiples of it) `checkpoint` gets a
    LoopState of the step's end.

    tol is relative: training has converged when a step improves the objective by at most
    tol times the best constant prediction's loss (or, if that is 0, the first step's
    objective), or when the solver's own test says so (Step.converged). With
    `early_stopping`, history["val_loss"][k] is the validation loss after step k, tol
    applies to it (see EarlyStopping), and the result has the best parameters on it.
    """
    engine = Counted(engine)
    if resume is not None:
        state = resume.state
    given = state is not None  # the caller's: the loop works on a copy
    training = problem.restricted(early_stopping.train_rows) if early_stopping else problem
    # A quadratic loss's objective is its moments: one pass for the standardization, tol's
    # scale and every step of a solver that reads them (Newton).
    moments = (engine.moments(problem) if state is None and not early_stopping
               and solver.reads_moments(problem) else None)
    from_constant = state is None and intercept is None and problem.loss.starts_at_constant
    constant = (engine.best_constant(problem) if from_constant or (
        tol is not None and not moments) else None)
    if state is None and intercept is None:  # the rows trained on say where to start
        intercept = ((engine.best_constant(training) if early_stopping else constant)[0]
                     if from_constant else np.zeros(problem.k))
    if state is None:
        std = Standardization.fit(engine, problem, moments, center=standardize != "scale"
                                  and solver.centers(problem)) if standardize else None
        state = solver.new_state(as_theta(*(std.from_original(coef, intercept) if std
                                            else (coef, intercept))), std)
    tol_scale = (None if tol is None else problem.loss.constant_from_moments(moments)
                 if moments else constant[1])
    state = solver.start(engine, problem, state, engine.n_rows(training),
                         threshold=tol * tol_scale if tol_scale and not early_stopping
                         else None, moments=moments)
    now = (replace(resume, state=state) if resume is not None
           else LoopState.fresh(state, early_stopping is not None))
    loop = Loop(engine, problem, training, solver, early_stopping, max_epochs, tol,
                tol_scale, tuple(callbacks), checkpoint, checkpoint_every,
                now.copy(state=given))
    progress = Progress(verbose, max_epochs, engine.n_rows(training))
    losses_seen = loop.now.history["loss"]
    already = len(losses_seen)
    try:
        with one_blas_thread(len(state.theta), getattr(engine, "shares_cores", False)):
            return loop.run(progress)
    except KeyboardInterrupt:
        return loop.interrupted()
    finally:
        progress.close(len(losses_seen) - already, losses_seen[-1] if losses_seen else None)


@dataclass
class Loop:
    """One call of train: its settings and the LoopState it updates (see train)."""

    engine: object
    problem: object        # all the rows
    training: object       # the rows trained on
    solver: object
    early_stopping: EarlyStopping | None
    max_epochs: int
    tol: float | None
    tol_scale: float | None
    callbacks: tuple
    checkpoint: object
    checkpoint_every: int
    now: LoopState
    passes_seen: int = 0  # the engine's count of passes when the last step was recorded

    def run(self, progress) -> FitResult:
        state = self.now.state
        first_epoch = state.epochs
        for epoch in range(first_epoch, first_epoch + self.max_epochs):
            epoch_start = state.theta.copy()
            started = time.perf_counter()
            step = self.solver.step(self.engine, self.training, state, epoch)
            seconds = time.perf_counter() - started
            state.steps += step.updates
            state.epochs = epoch + 1
            epoch_loss = step.loss_sum / step.weight
            error = self.diverged(epoch, epoch_loss)
            if error is not None:
                return self.result(self.now.last_good, error)
            figures = {"loss": float(epoch_loss),
                       "objective": float(epoch_loss) + penalty(
                           epoch_start, self.problem.n_features, self.solver.l1,
                           self.solver.l2),
                       "learning_rate": step.learning_rate, "seconds": seconds,
                       "passes": self.engine.passes - self.passes_seen}
            if self.early_stopping:
                figures["val_loss"] = self.validation_loss(state.theta)
            self.passes_seen = self.engine.passes  # the validation's pass is not training's
            self.record(figures, epoch_start, epoch_loss)
            progress.update(epoch - first_epoch, figures)
            asked_to_stop = any([stops(callback({"epoch": epoch + 1, **figures}))
                                 for callback in self.callbacks])
            finished = step.converged or self.finished(figures, state.theta)
            # A run stopped by a callback (a time budget, say) is checkpointed where it
            # stopped, to go on from there; a finished one has nothing left to resume.
            if self.checkpoint is not None and not finished and (
                    asked_to_stop or (epoch + 1) % self.checkpoint_every == 0):
                self.checkpoint(self.now.snapshot())
            if step.exhausted and not (asked_to_stop or finished):
                self.warn_not_converged(first_epoch, "its budget of evaluations")
                break
            if asked_to_stop or finished:
                break
        else:
            self.warn_not_converged(first_epoch, f"max_epochs="
                                    f"{first_epoch + self.max_epochs} epochs")
        return self.ending()

    def diverged(self, epoch: int, epoch_loss: float) -> DivergenceError | None:
        """Bad data, or else divergence: a non-finite loss, or one that exploded."""
        history = self.now.history["loss"]
        if not np.isfinite(epoch_loss):
            self.engine.raise_if_nonfinite(self.problem)
            if self.now.state.steps == 0:  # at the starting parameters: the data are too large
                raise ValueError("The loss overflows at the initial parameters: X or y "
                                 "holds values too large for float64 arithmetic; rescale "
                                 "them.")
        first = history[0] if history else epoch_loss
        if np.isfinite(epoch_loss) and epoch_loss <= EXPLODE_FACTOR * first:
            return None
        what = ("became non-finite" if not np.isfinite(epoch_loss)
                else f"exploded from {first:.4g} to {epoch_loss:.4g}")
        return DivergenceError(
            f"Training diverged at epoch {epoch + 1}: the training loss {what}. The "
            f"parameters of the last epoch with a finite loss were kept. Try a smaller "
            f"learning_rate (now {self.now.state.learning_rate:g})"
            f"{'' if self.now.state.std else ' or standardize=True'}.", epoch + 1)

    def validation_loss(self, theta) -> float:
        w, b = in_original_units(self.now.state.std, theta, self.problem.n_features)
        validation = self.problem.restricted(self.early_stopping.val_rows)
        return float(self.engine.loss_and_grad(validation, w, b)[0])

    def record(self, figures: dict, epoch_start, epoch_loss: float) -> None:
        now = self.now
        for key, values in now.history.items():  # a resumed older history has fewer keys
            values.append(figures[key])
        now.last_good = epoch_start
        if epoch_loss < now.best_loss:
            now.best, now.best_loss = epoch_start, epoch_loss

    def finished(self, figures: dict, theta) -> bool:
        """Early stopping's patience ran out, or the objective went down by tol or less (a
        rising objective is not convergence: training goes on, and a run whose loss keeps
        rising is caught as divergence)."""
        judged = "objective" if "objective" in self.now.history else "loss"  # older: loss
        now, history = self.now, self.now.history[judged]
        threshold = (self.tol or 0.0) * (self.tol_scale or history[0])
        if self.early_stopping:  # improved on the best by more than tol, or not (NaN: not)
            if figures["val_loss"] < now.best_val - threshold:
                now.best_val, now.best_val_params, now.stale = figures["val_loss"], theta.copy(), 0
            else:
                now.stale += 1
            return now.stale >= self.early_stopping.patience
        return (self.tol is not None and len(history) > 1
                and 0 <= history[-2] - figures[judged] <= threshold)

    def warn_not_converged(self, first_epoch: int, spent: str) -> None:
        if self.tol is not None:
            warnings.warn(
                f"fastgd stopped after {spent} without converging (the objective still "
                f"improved by more than tol={self.tol} relative per epoch); raise "
                f"max_epochs or learning_rate.",
                convergence_warning(), stacklevel=user_stacklevel())

    def ending(self) -> FitResult:
        state = self.now.state
        if not np.isfinite(state.theta).all():  # the last update overflowed
            epochs = len(self.now.history["loss"])
            return self.result(self.now.last_good, DivergenceError(
                f"Training diverged at epoch {epochs}: its update made the parameters "
                f"non-finite. The parameters of the last epoch with a finite loss were kept. "
                f"Try a smaller learning_rate (now {state.learning_rate:g}).", epochs))
        if self.early_stopping:  # the best on the validation rows (the state went past it)
            return self.result(self.now.best_val_params, resumable=False)
        return self.result(state.theta)

    def interrupted(self) -> FitResult:
        """Ctrl-C: the parameters with the lowest loss so far, at the start of the best
        epoch or after the last update (one more pass to measure it). The solver's state is
        not kept: a partial_fit after this starts afresh from the parameters kept."""
        now = self.now
        done = min(len(values) for values in now.history.values())
        for values in now.history.values():
            del values[done:]  # an epoch interrupted while being recorded is dropped
        if self.early_stopping:
            best, which = now.best_val_params, "validation"
        else:
            w, b = in_original_units(now.state.std, now.state.theta, self.problem.n_features)
            last = self.engine.loss_and_grad(self.problem, w, b)[0]
            best = now.state.theta if np.isfinite(last) and last <= now.best_loss else now.best
            which = "training"
        warnings.warn(f"fit interrupted (KeyboardInterrupt) after {done} epochs; the model "
                      f"keeps the parameters with the lowest {which} loss so far.",
                      UserWarning, stacklevel=user_stacklevel())
        return self.result(best, resumable=False)

    def result(self, params, error=None, resumable=True) -> FitResult:
        state, history = self.now.state, self.now.history
        coef, intercept = in_original_units(state.std, params, self.problem.n_features)
        after = replace(state, theta=params) if resumable and error is None else None
        return FitResult(coef.copy(), intercept.copy(), len(history["loss"]), history,
                         state.std, state.learning_rate, error, after)
