"""Solvers: what one step of training does.

The training loop (fastgd/_training.py) owns everything around the steps: the history,
callbacks, progress, divergence, Ctrl-C, checkpoints, early stopping and tol. It drives a
`Solver`, whose `step` may take any number of passes over the data and keep any state, in
the named slots of the TrainState (fastgd/_state.py), which partial_fit carries on and
checkpoints save by name. A solver is one file of this package:

    first_order.py   epochs of mini-batch (or full-batch) updates by a first-order optimizer
                     (fastgd/optimizers.py), one engine.run_epoch a step
    lbfgs.py         L-BFGS as torch.optim.LBFGS, with its strong-Wolfe line search: an
                     iteration a step, a fused loss-and-gradient pass per evaluation
    newton.py        Newton's method: a Hessian pass (Engine.hessian) and a solve a step,
                     with a backtracking line search

Adding a solver: docs/architecture.md.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from fastgd._moments import Moments
from fastgd._problem import Engine, Problem
from fastgd._state import TrainState, in_original_units
from fastgd.optimizers import OPTIMIZERS


# The optimizer names that are solvers of their own, stepping on the whole data (every other
# name is a first-order optimizer of fastgd/optimizers.py, which first_order.py runs).
FULL_BATCH_SOLVERS = ("lbfgs", "newton")


def solver_names() -> tuple:
    """The solvers by name: the first-order optimizers and the full-batch solvers."""
    return (*OPTIMIZERS, *FULL_BATCH_SOLVERS)


def optimizer_names() -> tuple:
    """What an estimator's `optimizer` (and the command line's --optimizer) may be: "auto"
    (fastgd/solvers/auto.py) or a solver's name."""
    return ("auto", *solver_names())


class Step(NamedTuple):
    """What a step did: the weighted sum of the training losses its first pass saw (at the
    parameters before its updates; for mini-batches, each batch's before its update) and
    the sum of their weights, the updates made (0: it stopped before any, at a non-finite
    loss), and the learning rate (or step length) it used. `converged`: the solver's own
    test says the step reached the optimum (training stops there); `exhausted`: it ran out
    of its budget of evaluations (training stops there, not converged)."""

    loss_sum: float
    weight: float
    updates: int
    learning_rate: float
    converged: bool = False
    exhausted: bool = False


class Solver(Protocol):
    """One step of training at a time, on theta and the slots of a TrainState, for the
    objective mean loss + l1 |w|_1 + l2 |w|^2 / 2 (w: the trained weights, not the
    intercepts)."""

    l1: float
    l2: float

    def new_state(self, theta, std) -> TrainState:
        """The state to start from at parameters theta (trained units; standardized by std)."""

    def go_on_from(self, state: TrainState) -> TrainState:
        """The state to go on from (partial_fit) under this solver's settings, which may
        differ from those state was reached with."""

    def reads_moments(self, problem: Problem) -> bool:
        """Whether the solver takes the problem's objective from Engine.moments (a quadratic
        loss's), which start then gets."""

    def centers(self, problem: Problem) -> bool:
        """Whether standardize=True centers X's columns for this solver, or only scales
        them (scikit-learn's with_mean=False): a centered feature's gradient is dense, so
        mini-batches over sparse X would cost O(d) a step, not O(the batch's entries).
        Both reach the same optimum: the penalty is on the scaled weights, and the
        unpenalized intercept absorbs the means."""

    def start(self, engine: Engine, problem: Problem, state: TrainState, n_rows: int,
              threshold: float | None = None, moments: Moments | None = None) -> TrainState:
        """Before the first step of a fit or a partial_fit call: the state to step from,
        with what depends on the data resolved (the automatic learning rate). `problem` has
        all the rows; n_rows are those trained on. `threshold` is the decrease of the
        objective the loop judges converged (tol times its scale; None: not judged so), for
        a solver that can predict its own decrease (Newton). `moments`: the moments of all
        the rows trained on, for a solver that reads_moments and a quadratic loss."""

    def step(self, engine: Engine, problem: Problem, state: TrainState, epoch: int) -> Step:
        """Step number `epoch` (0-based, counted over partial_fit calls) on the rows trained
        on: state.theta and state.slots are updated in place (state.steps is the loop's)."""


def penalty(theta, d: int, l1: float, l2: float) -> float:
    """l1 |w|_1 + l2 |w|^2 / 2 of trained parameters theta = (w of k outputs, intercepts)
    for d features: the objective is the mean loss plus this."""
    w = weights_of(theta, d)
    return float(l1 * np.abs(w).sum() + 0.5 * l2 * (w @ w)) if (l1 or l2) else 0.0


def weights_of(theta, d: int):
    """The penalized part of theta: the k outputs' weights (a view), not the intercepts."""
    return theta[:len(theta) // (d + 1) * d]


def smooth_objective(engine, problem, theta, std, l2: float, hessian: bool = False,
                     moments: Moments | None = None):
    """(mean loss, objective, its gradient[, its Hessian]) at trained parameters theta, the
    objective the mean loss + l2 |w|^2 / 2: one pass (a Hessian pass if asked), or none
    with a quadratic loss's moments (then with the Hessian)."""
    if moments is not None:
        hessian = True
        loss, gradient, H = problem.loss.from_moments(moments, theta, std, problem.k)
    elif hessian:
        loss, gradient, H = engine.hessian(problem, theta, std)
    else:
        loss, gradient = loss_and_gradient(engine, problem, theta, std)
    objective = loss
    if l2:
        w = weights_of(theta, problem.n_features)
        with np.errstate(over="ignore"):  # an objective of inf: the step is refused
            objective = loss + 0.5 * l2 * float(w @ w)
        gradient[:len(w)] += l2 * w
        if hessian:
            H[np.diag_indices(len(w))] += l2
    return (loss, objective, gradient, H) if hessian else (loss, objective, gradient)


def loss_and_gradient(engine: Engine, problem: Problem, theta, std) -> tuple:
    """(the mean loss, its gradient in theta) at trained parameters theta (standardized by
    std, laid out as theta) in one pass: what a solver that steps on the whole data asks."""
    w, b = in_original_units(std, theta, problem.n_features)
    loss, grad_w, grad_b = engine.loss_and_grad(problem, w, b)
    if std:  # the gradient in the standardized parameters
        grad_w = std.gradient_to_trained(grad_w, grad_b)
    return loss, np.append(grad_w.ravel(), grad_b)
