"""The training loop, shared by both engines.

An engine is a module with three functions on validated arrays (fastgd/_kernels.pxi and
fastgd/reference.py), for a linear model of k outputs (one per target, or per class of a
softmax):

    grad_pass(X, Y, sample_weight, coef, intercept, loss, n_threads, rows=None)
        -> (mean loss, gradient in coef (k, d), gradient in intercept (k,))
    column_stats(X, sample_weight, n_threads) -> (mean, variance) per column
    run_epoch(X, Y, sample_weight, theta, m, v, step, mean, scale, optimizer, hyper,
              learning_rate, batch_size, shuffle_keys, loss, n_threads, rows=None)
        -> (sum of weighted losses, sum of weights, updates made); theta, m, v in place

coef is (k, d) and intercept (k,); theta = (coef row by row, intercept), k (d + 1) values.
Y is (n, k), or (n, 1) class indices for the multinomial loss. A row's loss is the sum of
its outputs' losses (or the softmax cross-entropy over its k logits). `loss` is a
fastgd._validation.Loss (name, Huber's delta); `rows`, row indices into X, restricts a
pass or an epoch to those rows (read in place, never copied).

The driver reads the data itself in four places, through the engine too, so that data
held elsewhere (fastgd/_dask.py: row shards on a Dask cluster) trains with the same loop:

    zero_targets(X)                    Y of zeros (n, 1): the curvature's passes
    raise_if_nonfinite(X)              after a non-finite loss: NaN/inf in X is an error
    largest_row_curvature(X, sample_weight, std, loss, l2)     (mini-batch step sizes)
    constant_loss(Y, sample_weight, loss, k)                   (the scale of tol)

`InMemory(module)` makes an engine of NumPy arrays from a module of the three functions.

Everything else (standardization, batches, the update, stopping, divergence, history)
lives here once, so `engine="numpy"` checks the compiled engine step for step.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np
try:  # scikit-learn's, so that its users' warning filters apply; it is optional here
    from sklearn.exceptions import ConvergenceWarning
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    class ConvergenceWarning(UserWarning):
        """Training stopped at max_epochs before it converged."""

from fastgd import reference
from fastgd._progress import Progress
from fastgd._validation import Loss, raise_if_nonfinite

SQUARED = Loss("squared")
# A loss this many times the first epoch's is treated as divergence, like a non-finite one.
EXPLODE_FACTOR = 1e10


class DivergenceError(ValueError):
    """Training diverged: the loss became non-finite or exploded.

    The estimator keeps the parameters of the last epoch whose loss was finite; `epoch`
    (1-based) is the epoch whose forward pass saw the bad loss.
    """

    def __init__(self, message: str, epoch: int):
        super().__init__(message)
        self.epoch = epoch


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
    def fit(cls, engine, X, sample_weight, n_threads) -> Standardization:
        mean, var = engine.column_stats(X, sample_weight, n_threads)
        if not (np.isfinite(mean).all() and np.isfinite(var).all()):
            engine.raise_if_nonfinite(X)
            raise ValueError("X has values too large to standardize (the variance overflows)")
        constant = constant_features(mean, var, X.shape[0])
        scale = np.sqrt(var)
        return cls(mean, np.where(constant, 1.0, scale), np.where(constant, np.inf, scale))

    def to_original(self, w_s, b_s):
        w = w_s / self.divisor
        return w, b_s - w @ self.mean

    def from_original(self, w, b):
        return w * self.scale, b + w @ self.mean


def as_theta(coef, intercept):
    """Parameters coef (k, d), intercept (k,) as one vector theta = (coef row by row, b)."""
    return np.append(coef.ravel(), intercept)


def in_original_units(std: Standardization | None, theta, d: int):
    """(coef (k, d), intercept (k,)) in original units from trained parameters theta."""
    k = len(theta) // (d + 1)
    coef, intercept = theta[:k * d].reshape(k, d), theta[k * d:]
    return std.to_original(coef, intercept) if std else (coef, intercept)


def constant_features(mean, var, n_samples):
    """Which features are constant: a variance within rounding error of zero."""
    eps = np.finfo(np.float64).eps
    return var <= n_samples * eps * var + (n_samples * mean * eps) ** 2


POWER_ITERATIONS = 12
# Each loss's curvature in z at most, relative to the squared loss's (2): Huber's is 1 or
# 0, the log loss's sigmoid' <= 1/4, the softmax cross-entropy's Hessian diag(p) - p p^T
# has eigenvalues <= 1/2. So their Hessians in (W, b) are at most this times the squared's.
CURVATURE_FACTOR = {"squared": 1.0, "huber": 0.5, "log": 0.125, "multinomial": 0.25}


def largest_curvature(engine, X, sample_weight, std, loss, l2, n_threads,
                      iterations: int = POWER_ITERATIONS) -> float:
    """An estimate of L, the largest eigenvalue of the Hessian of the loss plus the ridge
    penalty (l2 |w|^2 / 2) in the trained parameters (w, b), standardized when `std` is
    given: that of the squared loss, times the loss's CURVATURE_FACTOR (a bound, exact for
    the squared loss). A model of several outputs has the same L: its Hessian repeats one
    output's block (or, for the softmax, is bounded by it).

    Power iteration with the fused kernel: with zero targets the squared loss is the
    quadratic form of its Hessian H, so its gradient at v is H v: one pass over X per step.
    The estimate approaches the eigenvalue from below (for data whose top eigenvector is
    nearly orthogonal to the start, possibly to a smaller one).
    """
    n, d = X.shape
    zeros = engine.zero_targets(X)
    factor = CURVATURE_FACTOR[loss.name]
    v = np.random.default_rng(0).standard_normal(d + 1)  # a generic, reproducible start
    v /= np.linalg.norm(v)
    curvature = 0.0
    for _ in range(iterations):
        w, b = in_original_units(std, v, d)
        _, grad_w, grad_b = engine.grad_pass(X, zeros, sample_weight, w, b, SQUARED,
                                             n_threads)
        if std:  # the gradient in the standardized parameters
            grad_w = (grad_w - std.mean * grad_b) / std.divisor
        hv = np.append(factor * grad_w + l2 * v[:d], factor * grad_b)
        with np.errstate(over="ignore"):
            curvature = float(np.linalg.norm(hv))
        if not math.isfinite(curvature):  # no step size is meaningful
            engine.raise_if_nonfinite(X)  # a NaN or inf in X: say where
            if np.isfinite(grad_w).all() and np.isfinite(grad_b):
                raise ValueError(f"alpha is too large for float64 arithmetic: the loss's "
                                 f"curvature (its L2 part) overflows; lower alpha (now {l2:g} "
                                 f"in the L2 part).")
            raise ValueError("X holds values too large for float64 arithmetic: the loss's "
                             "curvature (X^T X) overflows; rescale X.")
        if curvature == 0.0:
            break
        v = hv / curvature
    return curvature


BLOCK_ELEMENTS = 1 << 15  # of X per NumPy block when measuring row norms (256 KB temporaries)
ROWS_PER_BLOCK = 1 << 15  # of Y per NumPy block for constant_loss


def largest_row_curvature(X, sample_weight, std, loss, l2) -> float:
    """L_max: the largest curvature of one row's loss (plus the ridge penalty), the
    smoothness of a batch of one: CURVATURE_FACTOR x 2 (|x_i|^2 + 1) for the (standardized)
    row and the intercept, times the row's weight relative to the mean weight. One pass
    over X in NumPy, by blocks of rows."""
    mean_weight = 1.0 if sample_weight is None else float(sample_weight.mean(dtype=np.float64))
    largest = largest_row_norm(X, sample_weight, std, mean_weight)
    return 2.0 * CURVATURE_FACTOR[loss.name] * largest + l2


def largest_row_norm(X, sample_weight, std, mean_weight) -> float:
    """max over rows of (|x_i|^2 + 1) x weight_i / mean_weight (standardized x_i)."""
    largest = 0.0
    block = max(1, BLOCK_ELEMENTS // X.shape[1])
    for lo in range(0, X.shape[0], block):
        rows = X[lo:lo + block].astype(np.float64)
        if std:
            rows -= std.mean
            rows /= std.divisor
        norms = np.einsum("ij,ij->i", rows, rows) + 1.0
        if sample_weight is not None:
            norms *= sample_weight[lo:lo + block] / mean_weight
        largest = max(largest, float(norms.max()))
    return largest


def batch_curvature(L: float, L_max: float, n: int, batch_size: int) -> float:
    """The expected smoothness of a batch of b rows drawn without replacement from n
    (Gower et al., "SGD: General Analysis and Improved Rates", 2019): L for the full
    batch, L_max for single rows, in between as n (b - 1) / (b (n - 1)) L +
    (n - b) / (b (n - 1)) L_max. A batch's loss curves more than the whole data's, so its
    safe step is smaller (with 1 / L, batch 32 diverged on Gaussian data)."""
    if batch_size >= n:
        return L
    b = batch_size
    return (n * (b - 1) * L + (n - b) * L_max) / (b * (n - 1))


def auto_learning_rate(engine, X, sample_weight, std, loss, optimizer, hyper, batch_size, n,
                       n_threads) -> float:
    """learning_rate="auto": 1 / L, L the curvature of the objective, the classic safe step
    of gradient descent. For mini-batches, L is batch_curvature, and with momentum the
    step is (1 - momentum) / L: momentum sums the steps of a gradient that keeps its
    direction, noise included, into 1 / (1 - momentum) of them (with 1 / L, batch 32
    diverged)."""
    l2 = hyper["l2"]
    L = largest_curvature(engine, X, sample_weight, std, loss, l2, n_threads)
    if batch_size >= n:
        return 1.0 / max(L, 1e-300)
    L = batch_curvature(L, engine.largest_row_curvature(X, sample_weight, std, loss, l2), n,
                        batch_size)
    damping = 1.0 - hyper["momentum"] if optimizer in ("momentum", "nesterov") else 1.0
    return damping / max(L, 1e-300)


def constant_loss(Y, sample_weight, loss, k: int) -> float:
    """The mean loss of the best constant prediction, which ignores X: the weighted mean
    of each target (squared loss; Huber's is then close to its best), the logit of each
    label's frequency (log loss), the log of each class's frequency (multinomial). It is
    the scale of tol: for the squared loss, tol is a fraction of y's variance, the R^2 an
    epoch must add; whatever the units or offset of y. Y is read by blocks of rows
    (bounded temporaries); X not at all."""
    total, sums = target_sums(Y, sample_weight, loss, k)
    z = best_constant(total, sums, loss)
    if loss.name == "multinomial":
        return z
    return float(constant_loss_sum(Y, sample_weight, z, loss) / total)


def _row_blocks(Y, sample_weight):
    """(rows, their weights as float64 or None), a block of rows at a time."""
    for lo in range(0, len(Y), ROWS_PER_BLOCK):
        rows = slice(lo, lo + ROWS_PER_BLOCK)
        yield rows, None if sample_weight is None else sample_weight[rows].astype(float)


def target_sums(Y, sample_weight, loss, k: int):
    """(the weight of the rows, the weighted sum of each target; for the multinomial loss,
    the weight of each class): what the best constant prediction needs. Sums of shards add."""
    total = len(Y) if sample_weight is None else float(sample_weight.sum(dtype=np.float64))
    if loss.name == "multinomial":
        return total, sum(np.bincount(Y[rows, 0].astype(np.intp), weights=w, minlength=k)
                          for rows, w in _row_blocks(Y, sample_weight))
    return total, _weighted_row_sum(Y, sample_weight, lambda block: block)


def _weighted_row_sum(Y, sample_weight, values_of):
    """The weighted sum over rows of values_of(a block of Y, as float64)."""
    result = 0.0
    with np.errstate(all="ignore"):
        for rows, w in _row_blocks(Y, sample_weight):
            values = values_of(Y[rows].astype(np.float64))
            result = result + (values.sum(axis=0) if w is None else w @ values)
    return result


def best_constant(total, sums, loss):
    """From target_sums: the best constant prediction z, or for the multinomial loss
    directly its mean loss (the entropy of the class frequencies)."""
    with np.errstate(all="ignore"):
        if loss.name == "multinomial":
            p = sums / total
            p = p[p > 0]
            return float(-(p * np.log(p)).sum())
        z = sums / total
        if loss.name == "log":
            p = np.clip(z, 1e-300, 1 - 1e-16)
            z = np.log(p) - np.log1p(-p)
        return z


def constant_loss_sum(Y, sample_weight, z, loss):
    """The weighted sum over rows of the loss of predicting z (sums of shards add)."""
    row_loss = reference.LOSSES[loss.name]
    with np.errstate(all="ignore"):
        return _weighted_row_sum(
            Y, sample_weight,
            lambda block: row_loss(np.broadcast_to(z, block.shape), block, loss.delta)[0])


class InMemory:
    """An engine over NumPy arrays: a module's grad_pass, column_stats and run_epoch (the
    compiled kernels or fastgd.reference), with the driver's own reads of the data."""

    def __init__(self, module):
        self.grad_pass = module.grad_pass
        self.column_stats = module.column_stats
        self.run_epoch = module.run_epoch

    @staticmethod
    def zero_targets(X):
        return np.zeros((X.shape[0], 1), dtype=X.dtype)

    raise_if_nonfinite = staticmethod(raise_if_nonfinite)
    largest_row_curvature = staticmethod(largest_row_curvature)
    constant_loss = staticmethod(constant_loss)


SCHEDULES = ("constant", "step", "exponential", "invscaling", "cosine")


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


@dataclass
class TrainState:
    """Where training stands, to go on from there (partial_fit): the trained parameters
    theta = (w, b) and the optimizer state m, v (in the units trained in), the updates and
    epochs made so far, and what the first call fixed: the standardization and the
    learning rate ("auto": to be computed by the next call, for a new optimizer)."""
    theta: np.ndarray
    m: np.ndarray
    v: np.ndarray
    steps: int
    epochs: int
    std: Standardization | None
    learning_rate: float
    optimizer: str


@dataclass
class Checkpoint:
    """Everything the epoch loop carries from one epoch to the next: the TrainState, the
    history, and the bookkeeping of divergence (last_good), Ctrl-C (best, best_loss) and
    early stopping (best_val, best_val_params, stale). Training resumed from it goes on bit
    for bit as if it had never stopped."""
    state: TrainState
    history: dict
    last_good: np.ndarray
    best: np.ndarray
    best_loss: float
    best_val: float = math.inf
    best_val_params: np.ndarray | None = None
    stale: int = 0


def go_on_with(state: TrainState, optimizer: str, learning_rate) -> TrainState:
    """The state to go on from under (possibly changed) settings: a new optimizer starts
    with a fresh state of its own (and, under "auto", its own learning rate), a new
    numeric learning rate is used from now on."""
    if optimizer != state.optimizer:
        d1 = len(state.theta)
        state = replace(state, m=np.zeros(d1), v=np.zeros(d1), steps=0, optimizer=optimizer,
                        learning_rate=learning_rate)
    elif learning_rate != "auto":
        state = replace(state, learning_rate=float(learning_rate))
    return state


@dataclass
class EarlyStopping:
    """Train on `train_rows` only; after each epoch score `val_rows` (the validation loss),
    stop once `patience` epochs in a row did not improve on the best by more than tol, and
    keep the parameters that scored best. Both are the engine's `rows`: row indices into X,
    read in place (fastgd/_dask.py: numbers of shards, so n_train counts their rows)."""
    train_rows: np.ndarray
    val_rows: np.ndarray
    patience: int
    n_train: int | None = None  # the rows trained on; None: len(train_rows)

    def __post_init__(self):
        if self.n_train is None:
            self.n_train = len(self.train_rows)


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


def stops(answer) -> bool:
    """A callback's answer asks training to stop: True (Python's or NumPy's), nothing else."""
    return answer is True or answer is np.True_


def train(engine, X, Y, sample_weight, *, coef, intercept, loss, optimizer, hyper,
          learning_rate, schedule, batch_size, shuffle_seed, max_epochs, tol, standardize,
          n_threads, callbacks=(), verbose=0, state=None, horizon=None,
          early_stopping: EarlyStopping | None = None, resume: Checkpoint | None = None,
          checkpoint=None, checkpoint_every: int = 1) -> FitResult:
    """Gradient descent from (coef (k, d), intercept (k,)) on X and Y (see the engine
    interface above); parameters in and out in original units.

    Each epoch is one call of the engine's run_epoch. With a shuffle_seed (an int) and more
    than one batch, each epoch visits the rows in a new order fixed by the seed.
    history["loss"][k] is the mean training loss seen by epoch k's forward pass (for
    mini-batches, each batch's loss before its update, weighted by the batch's weight),
    history["seconds"][k] the epoch's wall time. After each epoch every callback gets
    {"epoch", "loss", "learning_rate", "seconds"}; one returning True stops training.

    KeyboardInterrupt (Ctrl-C) is seen when the epoch under way returns: training stops
    there with a warning, keeping the parameters with the lowest training loss so far.

    With a `state` (a previous result's), training goes on from it: (coef, intercept),
    standardize and learning_rate are then ignored, and epochs are numbered on, for the
    schedule (whose horizon, the cosine's T_max, is `horizon`, by default max_epochs) and
    the row orders. With `resume` (a Checkpoint), training goes on from it with its history
    and bookkeeping too, for max_epochs more epochs. Every `checkpoint_every` epochs (at
    epoch numbers that are multiples of it) `checkpoint` gets a Checkpoint of the epoch's
    end.

    tol is relative: training has converged when an epoch improves the loss by at most
    tol times constant_loss (or, if that is 0, the first epoch's loss). With
    `early_stopping`, history["val_loss"][k] is the validation loss after epoch k, tol
    applies to it (see EarlyStopping), and the result has the best parameters on it.
    """
    d = X.shape[1]
    if resume is not None:
        state = resume.state
    train_rows = early_stopping.train_rows if early_stopping else None
    n = early_stopping.n_train if early_stopping else X.shape[0]  # rows trained on
    batch_size = n if batch_size is None else min(batch_size, n)
    shuffled = shuffle_seed is not None and batch_size < n  # one batch: order is moot
    if state is None:
        std = Standardization.fit(engine, X, sample_weight, n_threads) if standardize else None
        w, b = std.from_original(coef, intercept) if std else (coef, intercept)
        theta = as_theta(w, b)
        state = TrainState(theta, np.zeros_like(theta), np.zeros_like(theta), 0, 0, std,
                           learning_rate, optimizer)
    if isinstance(state.learning_rate, str):  # "auto"
        state = replace(state, learning_rate=auto_learning_rate(
            engine, X, sample_weight, state.std, loss, optimizer, hyper, batch_size, n,
            n_threads))
    std, learning_rate = state.std, state.learning_rate
    theta, m, v = state.theta.copy(), state.m.copy(), state.v.copy()  # updated in place
    steps, first_epoch = state.steps, state.epochs
    horizon = max_epochs if horizon is None else horizon
    tol_scale = None if tol is None else engine.constant_loss(Y, sample_weight, loss,
                                                              len(theta) // (d + 1))
    start = resume or Checkpoint(state, {"loss": [], "learning_rate": [], "seconds": [],
                                         **({"val_loss": []} if early_stopping else {})},
                                 last_good=theta, best=theta, best_loss=math.inf,
                                 best_val_params=theta if early_stopping else None)
    history = {key: list(values) for key, values in start.history.items()}
    # last_good: the parameters at the start of the last epoch with a finite loss; best,
    # best_loss: where the lowest training loss was seen
    last_good, best, best_loss = start.last_good.copy(), start.best.copy(), start.best_loss
    if early_stopping:
        best_val, best_val_params, stale = (start.best_val, start.best_val_params.copy(),
                                            start.stale)
    progress = Progress(verbose, max_epochs, n)

    def result(params, error=None, resumable=True):
        coef_o, intercept_o = in_original_units(std, params, d)
        done = len(history["loss"])  # the restored epochs of a resumed fit included
        after = TrainState(params, m, v, steps, first_epoch + done - len(start.history["loss"]),
                           std, learning_rate, optimizer) if resumable and error is None else None
        return FitResult(coef_o.copy(), intercept_o.copy(), done, history, std,
                         learning_rate, error, after)

    try:
        for epoch in range(first_epoch, first_epoch + max_epochs):
            epoch_start = theta.copy()
            rate = scheduled_rate(epoch, learning_rate, schedule, horizon)
            started = time.perf_counter()
            total, weight, epoch_steps = engine.run_epoch(
                X, Y, sample_weight, theta, m, v, steps,
                *((std.mean, std.divisor) if std else (None, None)),
                optimizer, hyper, rate, batch_size,
                shuffle_keys(shuffle_seed, epoch) if shuffled else None, loss, n_threads,
                train_rows)
            seconds = time.perf_counter() - started
            steps += epoch_steps
            epoch_loss = total / weight
            if not np.isfinite(epoch_loss):
                engine.raise_if_nonfinite(X)  # bad data, or else divergence
                if steps == 0:  # at the starting parameters: the data are too large
                    raise ValueError("The loss overflows at the initial parameters: X or y "
                                     "holds values too large for float64 arithmetic; rescale "
                                     "them.")

            first = history["loss"][0] if history["loss"] else epoch_loss
            if not np.isfinite(epoch_loss) or epoch_loss > EXPLODE_FACTOR * first:
                what = ("became non-finite" if not np.isfinite(epoch_loss)
                        else f"exploded from {first:.4g} to {epoch_loss:.4g}")
                return result(last_good, DivergenceError(
                    f"Training diverged at epoch {epoch + 1}: the training loss {what}. The "
                    f"parameters of the last epoch with a finite loss were kept. Try a smaller "
                    f"learning_rate (now {learning_rate:g})"
                    f"{'' if std else ' or standardize=True'}.", epoch + 1))
            figures = {"loss": float(epoch_loss), "learning_rate": rate, "seconds": seconds}
            if early_stopping:
                w, b = in_original_units(std, theta, d)
                figures["val_loss"] = float(engine.grad_pass(
                    X, Y, sample_weight, w, b, loss, n_threads, early_stopping.val_rows)[0])
            for key, value in figures.items():
                history[key].append(value)
            last_good = epoch_start
            if epoch_loss < best_loss:
                best, best_loss = epoch_start, epoch_loss
            progress.update(epoch - first_epoch, epoch_loss, rate, seconds)
            asked_to_stop = any([stops(callback({"epoch": epoch + 1, **figures}))
                                 for callback in callbacks])
            threshold = (tol or 0.0) * (tol_scale or history["loss"][0])
            if early_stopping:  # improved on the best by more than tol, or not (a NaN: not)
                if figures["val_loss"] < best_val - threshold:
                    best_val, best_val_params, stale = figures["val_loss"], theta.copy(), 0
                else:
                    stale += 1
                finished = stale >= early_stopping.patience
            else:
                # Converged: the loss went down by tol or less. A rising loss is not
                # convergence: training goes on, and a run that keeps rising is caught as
                # divergence.
                finished = (tol is not None and len(history["loss"]) > 1
                            and 0 <= history["loss"][-2] - epoch_loss <= threshold)
            # A run stopped by a callback (a time budget, say) is checkpointed where it
            # stopped, to go on from there; a finished one has nothing left to resume.
            if checkpoint is not None and not finished and (
                    asked_to_stop or (epoch + 1) % checkpoint_every == 0):
                checkpoint(Checkpoint(
                    TrainState(theta, m, v, steps, epoch + 1, std, learning_rate, optimizer),
                    history, last_good, best, best_loss,
                    *((best_val, best_val_params, stale) if early_stopping else ())))
            if asked_to_stop or finished:
                break
        else:
            if tol is not None:
                warnings.warn(
                    f"fastgd stopped after max_epochs={first_epoch + max_epochs} epochs without "
                    f"converging (the loss still improved by more than tol={tol} relative per "
                    f"epoch); raise max_epochs or learning_rate.", ConvergenceWarning, stacklevel=5)
    except KeyboardInterrupt:
        done = min(len(values) for values in history.values())
        for values in history.values():
            del values[done:]  # an epoch interrupted while being recorded is dropped
        # The lowest loss: at the start of the best epoch, or after the last update (one
        # more pass to measure it). The optimizer state is not kept: a partial_fit after
        # this starts afresh from the parameters kept.
        if early_stopping:
            best, which = best_val_params, "validation"
        else:
            w, b = in_original_units(std, theta, d)
            last = engine.grad_pass(X, Y, sample_weight, w, b, loss, n_threads)[0]
            if np.isfinite(last) and last <= best_loss:
                best = theta
            which = "training"
        warnings.warn(f"fit interrupted (KeyboardInterrupt) after {done} epochs; the model "
                      f"keeps the parameters with the lowest {which} loss so far.",
                      UserWarning, stacklevel=5)
        return result(best, resumable=False)
    finally:
        progress.close()
    if not np.isfinite(theta).all():  # the last update overflowed
        return result(last_good, DivergenceError(
            f"Training diverged at epoch {len(history['loss'])}: its update made the "
            f"parameters non-finite. The parameters of the last epoch with a finite loss were "
            f"kept. Try a smaller learning_rate (now {learning_rate:g}).",
            len(history["loss"])))
    if early_stopping:  # the best on the validation rows (the optimizer state went past it)
        return result(best_val_params, resumable=False)
    return result(theta)
