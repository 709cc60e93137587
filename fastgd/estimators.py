"""scikit-learn estimators on top of the shared training loop.

GDRegressor and GDClassifier share everything but their targets: _GDEstimator holds the
parameters' checks, fit, partial_fit, early stopping and saving; each subclass turns its
y into the engines' targets (_encode) and their result into its attributes (_set_fitted).
They train through fastgd/_training.py (the loop) with a solver of fastgd/solvers, on the
engine fastgd/_engines.engine_for picks for X, and predict through fastgd.LinearModel.
"""

from __future__ import annotations

import copy
import numbers
import os
import textwrap
from functools import partial

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from fastgd import _checkpoint, _dask, _persist, _shuffling, _training, losses, optimizers
from fastgd._encoding import ENCODING, check_encoding
from fastgd._engines import ENGINES, engine_for
from fastgd._sparse import as_csr, is_sparse
from fastgd._files import check_output_path
from fastgd._problem import Problem
from fastgd._state import in_original_units
from fastgd._threads import effective_n_threads
from fastgd._validation import (
    as_coef,
    as_intercept,
    as_matrix,
    as_sample_weight,
    as_targets,
    check_choice,
    check_number,
)
from fastgd.model import OFFSET, LinearModel, check_offset_column
from fastgd.solvers import FULL_BATCH_SOLVERS, auto, optimizer_names, solver_names
from fastgd.solvers.first_order import SCHEDULES, FirstOrder
from fastgd.solvers.lbfgs import LINE_SEARCHES, LBFGS
from fastgd.solvers.newton import Newton

SCHEDULE_PARAMS = ("schedule", "step_size", "gamma", "power_t", "eta_min", "warmup_epochs")

COMMON_PARAMETERS = '''
    optimizer : {optimizer_names}, default="auto"
        ``"auto"`` picks the solver that reaches the optimum soonest, from the shape, the
        loss and the penalty (reported as ``solver_``): ``"newton"`` for least squares
        and for models whose Hessian is cheap next to L-BFGS's passes, ``"lbfgs"``
        otherwise, and ``"nesterov"`` for mini-batches, a schedule, clip_norm, an L1
        penalty and partial_fit. The first-order rules, each as its namesake in
        ``torch.optim`` (same rule, same defaults), on theta = (coef, intercept) with
        gradient g, learning rate lr, step t = 1, 2, ... and its state (m, v, ...) zero at
        the start:

{optimizer_rules}
        - ``"lbfgs"``: L-BFGS as ``torch.optim.LBFGS`` (same iterations, line search and
          stopping tests; its ``lr`` is learning_rate, "auto" its default 1, and max_epochs
          its ``max_iter``, with ``max_eval`` = max_epochs * 5 // 4 evaluations): each
          iteration one fused pass over X per evaluation of the objective, usually one or
          two.
        - ``"newton"``: Newton's method: each iteration one pass over X for the loss, its
          gradient and its Hessian (X^T diag(h) X in the standardized units, by blocks of
          rows, with BLAS), a Cholesky solve of the (d + 1) x (d + 1) system (k (d + 1)
          for k outputs), and a backtracking line search from the step learning_rate
          ("auto": 1), whose full step's pass is the next iteration's. The squared loss is
          solved in one iteration. Memory grows with (k (d + 1))^2.

        ``"lbfgs"`` and ``"newton"`` step on the whole data: no batch_size, schedule,
        clip_norm or L1 penalty (l1_ratio), and no partial_fit.
    learning_rate : float or "auto", default="auto"
        The step size (before the schedule). ``"auto"``, for {curvature_optimizers}, is
        1 / L, L the largest curvature of the objective (the largest eigenvalue of the
        Hessian of the loss and ridge penalty in the trained, standardized parameters),
        estimated by 12 power-iteration passes of the fused kernel before training:
        exactly for the squared loss, through a bound for the others (relative to the
        squared loss's: {curvature_bounds}). The estimate comes from below, so the step
        is about 1 / L: under the 2 / L where full-batch SGD diverges, and the about
        1.36 / L where Nesterov
        with momentum 0.9 does. Data built so that the top eigenvector is orthogonal to
        the (fixed, random) start could fool it, and such a run stops with a
        DivergenceError. With mini-batches, L is the expected curvature of a batch (from
        L and the largest row's; Gower et al. 2019), and with momentum the step is
        (1 - momentum) / L: safe, but a constant step leaves mini-batch training
        hovering near the optimum (a decaying ``schedule``, or full batches, go all the
        way). The adaptive optimizers move each coefficient by about the rate a step:
        for them ``"auto"`` is the length of gradient descent's first step g / L at the
        start, per coefficient (|g / L| / sqrt(p)), times sqrt(batch_size / n) for
        mini-batches (torch.optim's fixed defaults, {fixed_rates}, are in no unit of
        the data: full-batch Adam ended at R^2 -3.8 on diabetes).
    momentum : float, default=0.9
        For {takes:momentum}.
    beta1, beta2 : float, default=0.9, 0.999
        For {takes:beta1}.
    rho : float, default=0.99
        For {takes:rho}: the decay of the average of g² (torch's ``alpha``).
    epsilon : float or None, default=None
        For {takes:epsilon}; None: torch's default of the optimizer ({epsilon_defaults}).
    weight_decay : float, default=0.01
        For {takes:weight_decay}: the decoupled weight decay.
    history_size : int, default=10
        For ``"lbfgs"``: the steps and gradient changes it remembers (torch's default is
        100; 10 is scipy's and scikit-learn's, and keeps 20 vectors of the parameters).
    line_search_fn : {"strong_wolfe", None}, default="strong_wolfe"
        For ``"lbfgs"``: the strong-Wolfe line search, or None for fixed steps of
        learning_rate (torch's default, which may diverge).
    tolerance_grad, tolerance_change : float, default=1e-7, 1e-9
        For ``"lbfgs"``, as torch's: stop when the largest gradient component is at most
        tolerance_grad, or a step, or the change of the objective, is below
        tolerance_change (tol applies too). ``"newton"`` stops at tolerance_grad too, and
        when the decrease its next step predicts is within tol.
    schedule : {"constant", "step", "exponential", "invscaling", "cosine"}, default="constant"
        Learning rate per epoch e = 0, 1, ... (as ``torch.optim.lr_scheduler``):
        ``"step"``: lr gamma^(e // step_size) (StepLR); ``"exponential"``: lr gamma^e
        (ExponentialLR); ``"invscaling"``: lr / (e + 1)^power_t (scikit-learn's, per
        epoch); ``"cosine"``: eta_min + (lr - eta_min)(1 + cos(pi e / max_epochs)) / 2
        (CosineAnnealingLR).
    step_size : int, default=10
    gamma : float, default=0.1
    power_t : float, default=0.25
    eta_min : float, default=0.0
    warmup_epochs : int, default=0
        Linear warmup: epoch e < warmup_epochs uses (e + 1) / (warmup_epochs + 1) of the
        scheduled rate.
    alpha : float, default=0.0 (GDClassifier: 1e-3)
        Strength of the elastic-net penalty. The objective is the mean loss (weighted by
        sample_weight) plus

            alpha (l1_ratio |coef|_1 + (1 - l1_ratio) / 2 |coef|_2^2),

        on the trained coefficients (those of the standardized features when
        ``standardize=True``); the intercept is not penalized. The squared part enters the
        gradient; the L1 part is a proximal soft-threshold step after each update, so
        coefficients become exactly zero. Its threshold is alpha l1_ratio times the step
        the optimizer settles into (learning_rate for SGD, learning_rate / (1 - momentum)
        with momentum, per coefficient for the adaptive ones), so every optimizer ends at
        the same penalized optimum (AdamW's decoupled weight decay shrinks on top).
    l1_ratio : float, default=0.0
        0 is ridge, 1 is lasso.
    clip_norm : float or None, default=None
        Clip each batch gradient (coef and intercept together) to this global L2 norm, as
        ``torch.nn.utils.clip_grad_norm_``.
    batch_size : int or None, default=None
        Rows per gradient step; None uses all rows (full batch). The last, partial batch
        of an epoch is used too (its gradient is the mean over its rows).
    shuffle : bool, "rows" or "blocks", default=True
        Visit the rows in a new random order every epoch (with more than one batch; a
        full batch has no order). The order is a keyed pseudo-random permutation computed
        row by row, with no permutation array: it costs a small fraction of an epoch, and
        ``engine="numpy"`` draws the very same batches. "rows" permutes the rows one by
        one; "blocks" permutes blocks of consecutive rows (4 MB each) and mixes the rows
        within windows of 64 blocks: an epoch then reads a file at its sequential speed.
        True picks "blocks" for a memory-mapped X larger than the memory available
        (which the page cache cannot hold), "rows" otherwise: give "rows" or "blocks"
        to pin the order's kind, with ``random_state``, across machines.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling; an int gives the same orders on every fit.
    max_epochs : int, default=1000
    tol : float or None, default=1e-6
        Stop when an epoch's objective (the training loss plus the penalty,
        ``history_["objective"]``) improves on the previous one by at most tol times the
        loss of the best constant prediction (for the squared loss, y's variance: tol is
        then the R^2 an epoch must add; for the log loss, the entropy of the labels).
        Relative, so it means the same whatever the units or offset of y. A rising
        objective is not convergence. None runs all max_epochs. With early stopping, tol
        applies to the validation loss instead.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows (drawn by ``random_state``), train on
        the others (read in place: X is not copied), measure the validation loss after
        every epoch (``history_["val_loss"]``), stop once ``n_iter_no_change`` epochs in a
        row did not improve on the best by more than tol, and keep the parameters with the
        best validation loss. ``partial_fit`` holds nothing out. The standardization is
        computed from all rows, as a scaler fitted beforehand would be.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=5
    standardize : bool or "scale", default=True
        Train on standardized features (zero mean, unit variance) without copying X;
        ``coef_`` and ``intercept_`` are reported in the original units. ``"scale"``
        divides by the standard deviation without centering (scikit-learn's
        ``StandardScaler(with_mean=False)``); so does True for mini-batches over sparse X,
        where centering would make every step O(n_features) instead of O(the batch's
        stored entries). Both reach the same optimum (the penalty is on the scaled
        weights, the intercept absorbs the means); only the path differs.
    warm_start : bool, default=False
        ``fit`` starts from the previous fit's ``coef_`` and ``intercept_`` (not from
        zeros). ``partial_fit`` always goes on from where training stopped.
    callbacks : callable, list of callables or None, default=None
        Called after every epoch with ``{"epoch": k (1-based), "loss", "learning_rate",
        "seconds"}`` (and ``"val_loss"`` with early stopping); a callback returning True
        stops training there (the model keeps the parameters reached).
    checkpoint : str, path or None, default=None
        Where ``fit`` saves the whole training state every ``checkpoint_every`` epochs
        (parameters, optimizer state, schedule position, random state, history), written
        atomically: a crash, even a SIGKILL, leaves the previous checkpoint or the new one.
        The file is also the model as of that epoch (``fastgd.load`` reads it). Resume with
        ``fit(X, y, resume=PATH)``; a fit that is not resuming from PATH refuses to
        overwrite it. A fit stopped by a callback writes one where it stopped. Checking the
        data (a fingerprint of every value) costs one more pass over X a fit.
        ``partial_fit`` writes none.
    checkpoint_every : int, default=1
        Epochs between checkpoints (at epochs k, 2k, ...): a resumed fit repeats at most
        this many. Each checkpoint writes a file of O(n_features) bytes and flushes it to
        disk: with epochs of milliseconds, checkpoint less often.
    verbose : {0, 1, 2}, default=0
        Progress on stderr (tqdm's bar if tqdm is installed, else a line an epoch) with
        the loss and rows per second: 1 once a fit has run for two seconds, 2 from the
        first epoch.
    n_threads : int or None, default=None
        None: what OpenMP allows (OMP_NUM_THREADS, threadpoolctl), at most the physical
        cores; -1: all of those. Results are identical for any value.
    engine : {"cython", "numpy"}, default="cython"
        ``"numpy"`` runs the same training loop on :mod:`fastgd.reference`, the plain
        NumPy definition of the mathematics: the baseline and the check.
'''


def _registry_doc(template: str) -> str:
    """The optimizers' and losses' names, rules and settings from their registries, into
    the docstrings (placeholders in braces; the docstrings' other braces are left)."""
    registry = optimizers.OPTIMIZERS

    def quoted(names):
        names = [f'``"{name}"``' for name in names]
        return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]

    rules = "\n".join(textwrap.fill(f'- ``"{name}"``: {cls.summary};', 88,
                                    initial_indent=" " * 8, subsequent_indent=" " * 10)
                      for name, cls in registry.items())
    adaptive = {name: cls for name, cls in registry.items()
                if issubclass(cls, optimizers.Adaptive)}
    values = {
        "optimizer_names": "{" + ", ".join(f'"{name}"' for name in registry) + "}",
        "optimizer_rules": rules,
        "curvature_optimizers": quoted([name for name in registry if name not in adaptive]),
        "curvature_bounds": ", ".join(f"{name}'s {cls.curvature:g}" for name, cls in
                                      losses.LOSSES.items() if cls.curvature is not None),
        "fixed_rates": ", ".join(f'{cls.default_learning_rate:g} for ``"{name}"``'
                                 for name, cls in adaptive.items()),
        "epsilon_defaults": ", ".join(f'{cls.hyperparameters["epsilon"]:g} for ``"{name}"``'
                                      for name, cls in registry.items()
                                      if "epsilon" in cls.hyperparameters)}
    for setting in ("momentum", "beta1", "rho", "epsilon", "weight_decay"):
        values[f"takes:{setting}"] = quoted([name for name, cls in registry.items()
                                             if setting in cls.hyperparameters])
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return _refilled(template)


def _refilled(text: str, width: int = 92) -> str:
    """Paragraphs of a parameter's description (8 spaces in) that a substitution made too
    long, filled again; the others as written."""
    paragraphs, current = [], []
    for line in text.split("\n") + [""]:
        if line.startswith(" " * 8) and not line.startswith(" " * 9) and not line[8:9] == "-":
            current.append(line)
            continue
        if current:
            if max(map(len, current)) > width:
                current = textwrap.wrap(" ".join(part.strip() for part in current), 88,
                                        initial_indent=" " * 8, subsequent_indent=" " * 8)
            paragraphs += current
            current = []
        paragraphs.append(line)
    return "\n".join(paragraphs[:-1])


COMMON_PARAMETERS = _registry_doc(COMMON_PARAMETERS)


def _loss_doc(task: str, default: str) -> str:
    """The `loss` parameter's entry: the task's losses of the registry and their formulas,
    averaged over rows (weighted by sample_weight)."""
    names = losses.names(task)
    choices = "{" + ", ".join(f'"{name}"' for name in names) + "}"
    lines = [f'    loss : {choices}, default="{default}"',
             "        The mean over rows (weighted by sample_weight) of the loss of a row's raw "
             "outputs z:", ""]
    for name in names:
        lines.append(textwrap.fill(f'- ``"{name}"``: {losses.LOSSES[name].summary}', 88,
                                   initial_indent=" " * 8, subsequent_indent=" " * 10))
    for name in names:  # the losses' parameters, which the estimator takes
        cls = losses.LOSSES[name]
        for key, default in cls.params.items():
            lines += [f"    {key} : float, default={default}",
                      textwrap.fill(cls.params_doc[key], 88, initial_indent=" " * 8,
                                    subsequent_indent=" " * 8)]
    return "\n".join(lines)

# How both estimators' fit take Dask arrays and resume from checkpoints.
FIT_DATA = '''
        X, y and sample_weight may be Dask arrays: the rows then stay on the cluster of
        `client` (default: the active ``distributed.Client``), each worker runs the kernel
        on its row blocks and the result equals the in-memory fit (README: "Scaling out
        with Dask").

        With ``resume=PATH`` (a file written by a fit with ``checkpoint=PATH``) training
        goes on from that checkpoint, up to ``max_epochs`` epochs in all, and ends with the
        very bits of the fit that wrote it had it not stopped. X, y, sample_weight and the
        estimator's settings must be those of that fit (checked: a ValueError otherwise),
        except n_threads, verbose, callbacks, warm_start, the checkpoint settings and
        max_epochs (to train longer; not with schedule="cosine", whose length it is).
        '''

COMMON_ATTRIBUTES = '''
    n_iter_ : int
        Epochs run.
    learning_rate_ : float
        The learning rate used (before the schedule): ``learning_rate``, or the one
        ``"auto"`` chose.
    history_ : dict of lists
        ``history_["loss"][k]`` is the mean training loss of epoch k's forward pass, at the
        parameters before that epoch's updates; ``history_["learning_rate"][k]`` the rate
        the schedule gave it; ``history_["seconds"][k]`` its wall time; with early
        stopping, ``history_["val_loss"][k]`` the validation loss after it.
    mean_, scale_ : ndarray of shape (n_features,) or None
        The standardization used (``standardize=True``).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features,)
        Only when X was a DataFrame with string column names.
    input_features_, categories_, category_of_ : ndarray
        Only in a model ``fastgd train`` made of a table with text or categorical
        columns: the table's feature columns, and for each indicator column its level and
        the feature it encodes (the command line encodes new rows by them).

    Raises
    ------
    fastgd.DivergenceError
        From ``fit``, when the loss becomes non-finite or explodes. The estimator is then
        fitted with the parameters of the last epoch with a finite loss.

    Notes
    -----
    Ctrl-C (KeyboardInterrupt) during ``fit`` stops training when the epoch under way
    returns, with a warning; the estimator is fitted with the parameters that had the
    lowest training loss so far (with early stopping: validation loss).
'''


# The command line's one-hot encoding of a table, kept in the model it trains
# (fastgd/_encoding.py: Encoding.attach); fit never sets them.

class _GDEstimator(BaseEstimator):
    """What both estimators share. Subclasses define __init__ (their parameters), the loss
    choices `_losses`, and `_encode` / `_store` / `_stratify` for their targets."""

    _losses: tuple = ()

    def _check_params(self):
        check_choice("loss", self.loss, self._losses)
        for name, value in self._loss_settings().items():  # those of other losses too
            losses.check_parameter(name, value)
        check_choice("optimizer", self.optimizer, optimizer_names())
        check_choice("engine", self.engine, tuple(ENGINES))
        if not (isinstance(self.learning_rate, str) and self.learning_rate == "auto"):
            check_number("learning_rate", self.learning_rate)
        check_number("batch_size", self.batch_size, integer=True, allow_none=True)
        check_number("max_epochs", self.max_epochs, integer=True)
        check_number("tol", self.tol, allow_none=True, allow_zero=True)
        for name in ("momentum", "beta1", "beta2", "rho", "weight_decay"):
            optimizers.check_setting(name, getattr(self, name))
        check_number("epsilon", self.epsilon, allow_none=True)
        check_number("history_size", self.history_size, integer=True)
        if not (self.line_search_fn is None or (isinstance(self.line_search_fn, str)
                                                and self.line_search_fn in LINE_SEARCHES)):
            raise ValueError(f"line_search_fn must be 'strong_wolfe' or None, got "
                             f"{self.line_search_fn!r}")
        check_number("tolerance_grad", self.tolerance_grad, allow_zero=True)
        check_number("tolerance_change", self.tolerance_change, allow_zero=True)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_number("step_size", self.step_size, integer=True)
        check_number("gamma", self.gamma)
        check_number("power_t", self.power_t, allow_zero=True)
        check_number("eta_min", self.eta_min, allow_zero=True)
        check_number("warmup_epochs", self.warmup_epochs, integer=True, allow_zero=True)
        check_number("alpha", self.alpha, allow_zero=True)
        if check_number("l1_ratio", self.l1_ratio, allow_zero=True) > 1:
            raise ValueError(f"l1_ratio must be in [0, 1], got {self.l1_ratio!r}")
        check_number("clip_norm", self.clip_norm, allow_none=True)
        if not 0 < check_number("validation_fraction", self.validation_fraction) < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got "
                             f"{self.validation_fraction!r}")
        check_number("n_iter_no_change", self.n_iter_no_change, integer=True)
        seed = self.random_state
        if not (seed is None or isinstance(seed, np.random.RandomState) or (
                isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_))
                and 0 <= seed < 2**32)):
            raise TypeError(f"random_state must be None, an int in [0, 2**32) or a "
                            f"numpy RandomState, got {seed!r}")
        if not (isinstance(self.standardize, (bool, np.bool_)) or self.standardize == "scale"):
            raise TypeError(f"standardize must be True, False or 'scale', got "
                            f"{self.standardize!r}")
        _shuffling.check_shuffle(self.shuffle)
        for name in ("warm_start", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not (self.checkpoint is None or isinstance(self.checkpoint, (str, os.PathLike))):
            raise TypeError(f"checkpoint must be a path or None, got {self.checkpoint!r}")
        check_number("checkpoint_every", self.checkpoint_every, integer=True)
        if check_number("verbose", self.verbose, integer=True, allow_zero=True) > 2:
            raise ValueError(f"verbose must be 0, 1 or 2, got {self.verbose!r}")
        self._callbacks()
        effective_n_threads(self.n_threads)
        if self.optimizer in FULL_BATCH_SOLVERS:
            self._check_full_batch()

    def _first_order_settings(self) -> dict:
        """The settings only first-order epochs take, and whether each is given."""
        return {"batch_size": self.batch_size is not None,
                "schedule": self.schedule != "constant" or self.warmup_epochs != 0,
                "clip_norm": self.clip_norm is not None,
                "l1_ratio": self.alpha * self.l1_ratio > 0}

    def _resolved_optimizer(self, problem=None, engine=None) -> str:
        """The solver's name: `optimizer`, or what "auto" stands for on this problem (for
        partial_fit, without one: the first-order default)."""
        if self.optimizer != "auto":
            return self.optimizer
        if problem is None:
            return auto.FIRST_ORDER
        X = problem.X
        return auto.choose(engine.n_rows(problem), problem.n_features, problem.k,
                           problem.loss, l1=float(self.alpha * self.l1_ratio),
                           first_order=any(self._first_order_settings().values()),
                           itemsize=np.dtype(getattr(X, "dtype", np.float64)).itemsize,
                           sparse=problem.sparse)

    def _check_full_batch(self):
        """Refuse the first-order settings a solver on the whole data has no use for."""
        first_order = ", ".join(optimizers.OPTIMIZERS)
        for name, given in self._first_order_settings().items():
            if given:
                raise ValueError(f"optimizer={self.optimizer!r} steps on the whole data "
                                 f"with a smooth objective: {name} is for the first-order "
                                 f"optimizers ({first_order}); got {name}="
                                 f"{getattr(self, name)!r}")

    def _loss_settings(self) -> dict:
        """The losses' parameters this estimator takes (get_params would inspect the
        signature on every fit: 0.4 ms of a 2 ms fit)."""
        return {name: getattr(self, name) for name in losses.parameter_names()
                if hasattr(self, name)}

    def _callbacks(self) -> tuple:
        callbacks = self.callbacks
        if callbacks is None:
            callbacks = ()
        elif callable(callbacks):
            callbacks = (callbacks,)
        elif isinstance(callbacks, (list, tuple)):
            callbacks = tuple(callbacks)
        if not (isinstance(callbacks, tuple) and all(callable(c) for c in callbacks)):
            raise TypeError(f"callbacks must be a callable or a list of callables, got "
                            f"{self.callbacks!r}")
        return callbacks

    def _fit(self, X, y, sample_weight, coef_init, intercept_init, client, resume=None,
             **encoding):
        self._check_params()
        self._check_checkpointing(resume, coef_init, intercept_init)
        warm = self.warm_start and coef_init is None and hasattr(self, "coef_")
        previous = self._parameters() if warm else None
        shaped_by_data = {name: getattr(self, name, None)
                          for name in ("n_features_in_", "feature_names_in_", "classes_")}

        def refuse(error):  # the fitted model stays usable, as it was before this fit
            for name, value in shaped_by_data.items():
                if value is not None:
                    setattr(self, name, value)
                elif hasattr(self, name):
                    delattr(self, name)
            raise error

        problem = self._validate(X, y, sample_weight, reset=True, client=client, **encoding)
        with _dask.released(problem.X):  # a cluster keeps nothing, however the fit ends
            shape = (problem.k, problem.n_features)
            if previous is not None and previous[0].shape != shape:
                refuse(ValueError(f"warm_start=True: X and y make a model of {shape[0]} "
                                  f"output(s) and {shape[1]} features, the previous fit had "
                                  f"{previous[0].shape[0]} and {previous[0].shape[1]}; pass "
                                  "coef_init or refit cold"))
            coef, intercept = self._start(shape, previous, coef_init, intercept_init)
            engine = engine_for(problem.X, self.engine, self.n_threads)
            self.solver_ = self._resolved_optimizer(problem, engine)
            random_state = check_random_state(self.random_state)
            data = (_checkpoint.fingerprint(engine, problem)
                    if self.checkpoint is not None or resume is not None else None)
            loop = None
            if resume is not None:  # the draws below then repeat those of the first fit
                try:
                    loop, drawn_from = _checkpoint.read(resume, self, data)
                except (ValueError, OSError) as error:
                    refuse(error)
                random_state = np.random.RandomState()
                random_state.set_state(drawn_from)
            drawn_from = random_state.get_state()
            self._shuffle_seed = int(random_state.randint(2**62))
            holdout = self._holdout(problem, random_state) if self.early_stopping else None
            done = loop.state.epochs if loop else 0
            result = self._train(engine, problem, coef=coef, intercept=intercept,
                                 max_epochs=self.max_epochs - done, tol=self.tol,
                                 early_stopping=holdout, resume=loop,
                                 checkpoint=None if self.checkpoint is None else partial(
                                     self._write_checkpoint, drawn_from=drawn_from, data=data))
            self.history_ = result.history
            return self._keep(result, result.n_iter)

    def _start(self, shape, previous, coef_init, intercept_init):
        """(coef (k, d), intercept (k,) or None: where the loss starts it, see train) to
        start a fit from."""
        k = shape[0]
        if coef_init is not None:
            expected = np.shape(self._shaped(np.zeros(shape)))
            coef = as_coef(coef_init, expected, "coef_init").reshape(shape)
        else:
            coef = previous[0] if previous is not None else np.zeros(shape)
        intercept = (as_intercept(intercept_init, k, "intercept_init")
                     if intercept_init is not None
                     else previous[1] if previous is not None else None)
        return coef, intercept

    def _check_checkpointing(self, resume, coef_init, intercept_init):
        """Refuse, before any work, what would lose a checkpoint or fail at the first one."""
        if resume is not None and (coef_init is not None or intercept_init is not None):
            raise ValueError("resume= goes on from the checkpoint's parameters: coef_init and "
                             "intercept_init cannot be given with it")
        if self.checkpoint is None:
            return
        check_output_path(self.checkpoint)
        if isinstance(self.random_state, np.random.RandomState):
            raise ValueError("checkpoint= needs random_state to be None or an int (a "
                             "RandomState instance cannot be saved in a checkpoint)")
        ours = resume is not None and os.path.exists(resume) and os.path.exists(
            self.checkpoint) and os.path.samefile(resume, self.checkpoint)
        if os.path.exists(self.checkpoint) and not ours:
            raise ValueError(f"checkpoint={os.fspath(self.checkpoint)!r} exists: a new fit "
                             f"would overwrite it. Go on from it with fit(..., resume="
                             f"{os.fspath(self.checkpoint)!r}), or delete it or choose another "
                             f"path")

    def _write_checkpoint(self, loop: _training.LoopState, drawn_from, data):
        """Save the model as of `loop` (an epoch's end) with the state to resume from."""
        snapshot = copy.copy(self)  # the parameters and what the data fixed
        coef, intercept = in_original_units(loop.state.std, loop.state.theta,
                                            self.n_features_in_)
        snapshot._set_fitted(coef, intercept, len(loop.history["loss"]), loop.history,
                             loop.state.learning_rate, loop.state.std)
        _checkpoint.write(self.checkpoint, snapshot, loop, drawn_from, data)

    def _partial_fit(self, X, y, sample_weight, client, **encoding):
        self._check_params()
        if self.optimizer in FULL_BATCH_SOLVERS:
            raise ValueError(f"partial_fit trains one epoch of a first-order optimizer "
                             f"({', '.join(optimizers.OPTIMIZERS)}); optimizer="
                             f"{self.optimizer!r} fits the whole data: use fit")
        fitted = hasattr(self, "coef_")
        problem = self._validate(X, y, sample_weight, reset=not fitted, client=client,
                                 **encoding)
        with _dask.released(problem.X):  # a cluster keeps nothing, however the fit ends
            self.solver_ = self._resolved_optimizer()
            state = getattr(self, "_state", None) if fitted else None
            if state is not None:
                state = self._solver().go_on_from(state)
            if state is None or not hasattr(self, "_shuffle_seed"):
                self._shuffle_seed = int(check_random_state(self.random_state).randint(2**62))
            coef, intercept = (self._parameters() if fitted
                               else (np.zeros((problem.k, problem.n_features)), None))
            result = self._train(engine_for(problem.X, self.engine, self.n_threads), problem,
                                 coef=coef, intercept=intercept, max_epochs=1, tol=None,
                                 state=state)
            done = self.n_iter_ if fitted and state is not None else 0
            if fitted and state is not None:
                for key, values in result.history.items():
                    self.history_[key].extend(values)
            else:
                self.history_ = result.history
            return self._keep(result, done + result.n_iter)

    def _mean_loss(self, X, y, sample_weight=None, **encoding) -> float:
        """The fitted model's mean loss on (X, y): the history's losses are each step's
        start, and a solver's last step (Newton's exact one, say) ends elsewhere."""
        return self._loss_on(self._validate(X, y, sample_weight, reset=False, **encoding))

    def _loss_on(self, problem) -> float:
        """The fitted model's mean loss on a validated problem."""
        coef, intercept = self._parameters()
        return float(engine_for(problem.X, self.engine, self.n_threads).loss_and_grad(
            problem, coef, intercept)[0])

    def _parameters(self):
        """(coef (k, d), intercept (k,)) of the fitted model."""
        coef = np.asarray(self.coef_, dtype=np.float64)
        return coef.reshape(-1, coef.shape[-1]), np.atleast_1d(self.intercept_).astype(float)

    def _validate(self, X, y, sample_weight, reset, client=None, **encoding) -> Problem:
        """The problem for the engines; for a Dask array X, its X and Y are one
        fastgd._dask.Shards on the cluster, which holds the sample weights too."""
        if _dask.is_dask_array(X):
            return self._validate_dask(X, y, sample_weight, reset, client, **encoding)
        if client is not None:
            raise ValueError("client= is for training on Dask arrays; X is not one")
        sparse = is_sparse(X)
        if sparse:  # checked before scikit-learn converts anything (fastgd/_sparse.py)
            X = as_csr(X)
        try:
            if reset and not sparse and _plain(X, y):  # nothing for scikit-learn to convert
                self.n_features_in_ = X.shape[1]
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
            else:
                X, y = validate_data(self, X, y, accept_sparse="csr",
                                     dtype=[np.float64, np.float32], order=None,
                                     ensure_all_finite=False, reset=reset, **self._y_checks)
        except (ValueError, TypeError) as error:  # scikit-learn's words, with the culprit
            raise type(error)(f"{_culprit(X, error)}: {error}") from None
        X = X if sparse else as_matrix(X)
        sample_weight = as_sample_weight(sample_weight, X.shape[0], X.dtype)
        Y, sample_weight, loss, k = self._encode(y, X.dtype, sample_weight, reset, **encoding)
        loss.check_targets(Y, k)
        return Problem(X, Y, sample_weight, loss, k)

    def _validate_dask(self, X, y, sample_weight, reset, client, **encoding) -> Problem:
        if self.engine != "cython":
            raise ValueError(f"On Dask arrays fastgd trains with the compiled engine: engine "
                             f"must be 'cython', got {self.engine!r}")
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got a Dask array of shape {X.shape}")
        if X.dtype.kind in "iub":  # as in memory; other non-float dtypes fail on the workers
            X = X.astype(np.float64)
        if reset:
            self.n_features_in_ = X.shape[1]
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        client = _dask._client(client)
        y = y if _dask.is_dask_array(y) else np.asarray(y)
        with client.as_current():  # what encoding computes (the labels), on this cluster
            Y, sample_weight, loss, k = self._encode(y, X.dtype, sample_weight, reset,
                                                     **encoding)
        shards = _dask.Shards.of(X, Y, sample_weight, client=client,
                                 check_targets=partial(loss.check_targets, k=k))
        return Problem(shards, shards, None, loss, k)

    def _on_blocks(self, method, X, n_columns, dtype=None):
        """method (predict, predict_proba, ...) on each row block of a Dask array X, lazily."""
        if dtype is None:
            dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
        return _dask.map_rows(method, X, n_columns, dtype)

    def _holdout(self, problem, random_state) -> _training.EarlyStopping:
        """Validation rows drawn by random_state; the rest, in their order, train."""
        if isinstance(problem.X, _dask.Shards):
            return self._holdout_shards(problem.X, random_state)
        n = len(problem.Y)
        n_val = int(np.ceil(self.validation_fraction * n))
        if not 1 <= n_val < n:
            raise ValueError(f"early_stopping=True needs rows to train on and to validate "
                             f"on: validation_fraction={self.validation_fraction} of {n} "
                             f"rows leaves {n - n_val} to train on")
        held_out = np.zeros(n, dtype=bool)
        held_out[self._validation_rows(problem.Y, n_val, random_state)] = True
        return _training.EarlyStopping(np.flatnonzero(~held_out), np.flatnonzero(held_out),
                                       int(self.n_iter_no_change))

    def _holdout_shards(self, shards, random_state) -> _training.EarlyStopping:
        """On a cluster, whole row blocks validate: validation_fraction of them (rounded
        up), drawn by random_state (not stratified by class)."""
        n = len(shards.rows)
        n_val = int(np.ceil(self.validation_fraction * n))
        if not 1 <= n_val < n:
            raise ValueError(f"early_stopping=True on a Dask array validates on whole row "
                             f"blocks: validation_fraction={self.validation_fraction} of "
                             f"{n} blocks leaves {n - n_val} to train on; use more blocks")
        val = np.sort(random_state.permutation(n)[:n_val])
        return _training.EarlyStopping(np.setdiff1d(np.arange(n), val), val,
                                       int(self.n_iter_no_change))

    def _validation_rows(self, Y, n_val, random_state):
        return random_state.permutation(len(Y))[:n_val]

    def _train(self, engine, problem, *, coef, intercept, max_epochs, tol, state=None,
               early_stopping=None, resume=None, checkpoint=None):
        return _training.train(
            engine, problem, self._solver(self._shuffle_seed, shuffle_blocks=(
                _shuffling.shuffle_blocks(problem.X, self.shuffle))),
            coef=coef, intercept=intercept,
            standardize=self.standardize if self.standardize == "scale"
            else bool(self.standardize), max_epochs=max_epochs, tol=tol,
            callbacks=self._callbacks(), verbose=int(self.verbose), state=state,
            early_stopping=early_stopping, resume=resume, checkpoint=checkpoint,
            checkpoint_every=int(self.checkpoint_every))

    def _optimizer(self, name: str) -> optimizers.Optimizer:
        """The first-order optimizer `name` with this estimator's settings (those it
        takes)."""
        return optimizers.get(name, momentum=self.momentum, beta1=self.beta1,
                              beta2=self.beta2, rho=self.rho, epsilon=self.epsilon,
                              weight_decay=self.weight_decay)

    def _solver(self, shuffle_seed: int | None = None, name: str | None = None,
                shuffle_blocks: tuple | None = None) -> FirstOrder | LBFGS | Newton:
        """The solver of these settings, named `name` (default: the one this fit resolved,
        solver_); shuffle_seed: the row orders' (fit draws it), shuffle_blocks their blocks
        (fastgd/_shuffling.py)."""
        name = name or getattr(self, "solver_", None) or self._resolved_optimizer()
        learning_rate = self.learning_rate
        if not (isinstance(learning_rate, str) and learning_rate == "auto"):
            learning_rate = float(learning_rate)
        if name == "newton":
            return Newton(learning_rate, float(self.tolerance_grad),
                          l2=float(self.alpha * (1 - self.l1_ratio)))
        if name == "lbfgs":
            return LBFGS(learning_rate, int(self.history_size), self.line_search_fn,
                         float(self.tolerance_grad), float(self.tolerance_change),
                         max_eval=int(self.max_epochs) * 5 // 4,
                         l2=float(self.alpha * (1 - self.l1_ratio)))
        return FirstOrder(
            self._optimizer(name), learning_rate,
            schedule={name: getattr(self, name) for name in SCHEDULE_PARAMS},
            batch_size=self.batch_size, shuffle_seed=shuffle_seed if self.shuffle else None,
            shuffle_blocks=shuffle_blocks,
            horizon=self.max_epochs, l1=float(self.alpha * self.l1_ratio),
            l2=float(self.alpha * (1 - self.l1_ratio)),
            clip_norm=0.0 if self.clip_norm is None else float(self.clip_norm))

    def _keep(self, result, n_iter):
        """Store a training result as the fitted attributes; raise its divergence."""
        self._set_fitted(result.coef, result.intercept, n_iter, self.history_,
                         result.learning_rate, result.standardization)
        self._state = result.state
        if result.error is not None:
            raise result.error
        return self

    def _set_fitted(self, coef, intercept, n_iter, history, learning_rate, std):
        self.coef_, self.intercept_ = self._shaped(coef), self._shaped(intercept)
        self.n_iter_, self.history_, self.learning_rate_ = n_iter, history, learning_rate
        self.mean_, self.scale_ = (std.mean, std.scale) if std else (None, None)

    def _linear(self, X):
        """The raw outputs X @ coef_.T + intercept_ in X's floating dtype, after the usual
        checks (fastgd.LinearModel computes them)."""
        check_is_fitted(self)
        X = validate_data(self, as_csr(X) if is_sparse(X) else X, reset=False,
                          accept_sparse="csr", dtype=[np.float64, np.float32])
        return self._model().raw_outputs(X)

    def _model(self) -> LinearModel:
        """The fitted model, as the small object that predicts without scikit-learn."""
        return LinearModel(self.coef_, self.intercept_, self._fitted_loss(),
                           classes=getattr(self, "classes_", None),
                           feature_names=getattr(self, "feature_names_in_", None))

    # What save() writes and load() reads back (see fastgd/_persist.py).
    _saved = ("n_features_in_", "coef_", "intercept_", "n_iter_", "learning_rate_", "solver_",
              "history_", "mean_", "scale_", "feature_names_in_", *ENCODING)

    def save(self, path):
        """Save the fitted model to `path` (read it back with ``fastgd.load``).

        The file is a ZIP archive of JSON metadata and ``.npy`` arrays, versioned and
        documented in fastgd/_persist.py; no pickle. It is written to a temporary file
        beside `path`, flushed to disk and renamed over it: an interrupted save never
        leaves a half-written file where a good model was.
        """
        check_is_fitted(self)
        self._save(path)

    def to_onnx(self, dtype=np.float32):
        """The fitted model as an ONNX graph (onnx.ModelProto) for ONNX Runtime: input X
        of `dtype` (float32 or float64), outputs ``variable`` for a regressor, ``label``
        and ``probabilities`` for a classifier, as skl2onnx names them. Needs
        ``fastgd[onnx]``; see fastgd/onnx.py, and ``fastgd.register_skl2onnx()`` for a
        Pipeline."""
        check_is_fitted(self)
        return self._model().to_onnx(dtype)

    def _save(self, path, training: dict | None = None):
        _persist.save(path, type(self).__name__, self.get_params(deep=False),
                      {name: getattr(self, name, None) for name in self._saved}, training)

    @staticmethod
    def _from_saved(saved: _persist.Saved):
        return from_saved(saved)

    def _check_loaded(self):
        """Refuse a loaded model whose parameters or attributes are not what fit makes."""
        self._check_params()
        _persist.check_value(self, "n_features_in_", numbers.Integral, minimum=1)
        d = self.n_features_in_
        self._check_loaded_parameters(d)
        _persist.check_value(self, "n_iter_", numbers.Integral, minimum=0)
        _persist.check_value(self, "learning_rate_", numbers.Real, minimum=0)
        solver = getattr(self, "solver_", None)  # files of before optimizer="auto" lack it
        if solver is not None and solver not in solver_names():
            raise ValueError(f"solver_ {solver!r} is not a solver")
        _persist.check_history(self, ("loss", "learning_rate", "seconds"), self.n_iter_,
                               optional=("val_loss", "objective", "passes"))
        if not (self.random_state is None or (isinstance(self.random_state, int)
                                              and 0 <= self.random_state < 2**32)):
            raise ValueError("random_state must be None or an int in [0, 2**32)")
        _persist.check_array(self, "mean_", np.float64, (d,), optional=True)
        _persist.check_array(self, "scale_", np.float64, (d,), optional=self.mean_ is None)
        if self.mean_ is not None and self.scale_ is None:
            raise ValueError("mean_ is saved without scale_")
        _persist.check_array(self, "feature_names_in_", np.object_, (d,), optional=True)
        if self.feature_names_in_ is None:
            del self.feature_names_in_  # as fit leaves it without DataFrame input
        self._check_loaded_encoding(d)

    def _check_loaded_encoding(self, d):
        """The command line's encoding of a table (fastgd/_encoding.py), if saved: the
        input features, each indicator's level and input feature, d columns in all."""
        features = getattr(self, "input_features_", None)
        if features is None:
            for name in ENCODING:  # as fit leaves them
                self.__dict__.pop(name, None)
            return
        _persist.check_array(self, "input_features_", np.object_, (len(features),))
        m = len(getattr(self, "categories_", ()))
        _persist.check_array(self, "categories_", np.object_, (m,))
        _persist.check_array(self, "category_of_", np.integer, (m,))
        check_encoding(features, self.categories_, self.category_of_, d)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        return tags


def _plain(X, y) -> bool:
    """Whether (X, y) passes scikit-learn's checks of a fit as it is: a non-empty 2-D float
    array X and a 1-D numeric array y of its length, finite (X's values are the kernels' to
    check). Their machinery costs a small fit a fifth of its time; anything else goes
    through it."""
    return (type(X) is np.ndarray and X.dtype in (np.float64, np.float32) and X.ndim == 2
            and X.shape[0] > 0 and X.shape[1] > 0 and type(y) is np.ndarray and y.ndim == 1
            and len(y) == X.shape[0] and y.dtype.kind in "biuf"
            and (y.dtype.kind != "f" or bool(np.isfinite(y).all())))


def _culprit(X, error) -> str:
    """Which argument scikit-learn's validation of X and y refused: X if X alone fails its
    checks or has the wrong number of features, both if their lengths differ, else y."""
    if "inconsistent numbers of samples" in str(error):
        return "X and y"
    if str(error).startswith("X has") and "features" in str(error):
        return "X"
    try:
        check_array(X, accept_sparse="csr", dtype=[np.float64, np.float32],
                    ensure_all_finite=False)
    except (ValueError, TypeError):
        return "X"
    return "y"


def _store(estimator, params: dict) -> None:
    """__init__'s work: keep each parameter as it was given (scikit-learn's convention)."""
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


class GDRegressor(RegressorMixin, _GDEstimator):
    _losses = losses.names("regression")
    _y_checks = {"y_numeric": True, "multi_output": True}

    def __init__(self, *, loss="squared", delta=1.0, power=1.5, quantile=0.5, optimizer="auto",
                 learning_rate="auto", momentum=0.9, beta1=0.9, beta2=0.999, rho=0.99, epsilon=None,
                 weight_decay=0.01, history_size=10, line_search_fn="strong_wolfe",
                 tolerance_grad=1e-7, tolerance_change=1e-9, schedule="constant",
                 step_size=10, gamma=0.1, power_t=0.25, eta_min=0.0, warmup_epochs=0,
                 alpha=0.0, l1_ratio=0.0,
                 clip_norm=None, batch_size=None, shuffle=True, random_state=None,
                 max_epochs=1000, tol=1e-6, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=5, standardize=True, warm_start=False,
                 callbacks=None, checkpoint=None, checkpoint_every=1, verbose=0,
                 n_threads=None, engine="cython"):
        _store(self, locals())

    def fit(self, X, y, sample_weight=None, *, offset=None, coef_init=None,
            intercept_init=None, client=None, resume=None):
        """Train on X (n_samples, n_features) and y (n_samples,) or (n_samples, n_outputs);
        returns self.

        ``offset`` (n_samples,), or (n_samples, n_outputs) for the identity-link losses,
        is added to each row's raw output: the model is z = X coef_ + intercept_ + offset
        (e.g. the log of each row's exposure for the log-link losses: predictions are then
        e^z, counts for that exposure; give ``predict`` the same offset). A log-link fit
        with an offset is the fit of y e^-offset with sample weights scaled by
        e^((2 - power) offset) (exactly: the deviances scale so), whose ``history_`` losses
        are per unit of that weight; for the other losses, of y - offset.

        Training starts from `coef_init` and `intercept_init` (shaped as ``coef_`` and
        ``intercept_``) when given, else (with ``warm_start=True``) from the previous fit's
        ``coef_`` and ``intercept_``, else from zeros; but for the log-link losses (poisson,
        gamma, tweedie) the intercept starts at the best constant, log(mean y), whatever
        the targets' scale. The optimizer state and the schedule start afresh.
        """
        return self._fit(X, y, sample_weight, coef_init, intercept_init, client, resume,
                         offset=offset)

    fit.__doc__ += FIT_DATA

    def partial_fit(self, X, y, sample_weight=None, *, offset=None, client=None):
        """One epoch on X and y, going on from where the last fit or partial_fit stopped.

        The optimizer state (momentum, Adam's moments, the step count), the schedule
        (each call is its next epoch; the cosine's horizon is max_epochs) and the row
        orders carry over; so do the standardization and the learning rate, which the
        first call fixes from its data. ``history_`` grows by one epoch a call, and
        ``n_iter_`` counts every epoch. A model loaded by ``fastgd.load``, or one whose
        training diverged, was interrupted or ended by early stopping (whose parameters
        are not where the optimizer state is), starts afresh from its ``coef_`` and
        ``intercept_``: a new optimizer state, schedule, standardization and history.
        """
        return self._partial_fit(X, y, sample_weight, client, offset=offset)

    def predict(self, X, offset=None):
        """Predictions X @ coef_.T + intercept_ (+ offset, as fit took it) through the
        loss's inverse link (e^z for the log-link losses), (n_samples,) or (n_samples,
        n_outputs), in X's floating dtype (a Dask array for a Dask array X; with an
        offset, a Dask X is computed first and the predictions are a NumPy array)."""
        if _dask.is_dask_array(X):
            if offset is not None:
                X = X.compute()
            else:
                return self._on_blocks(self.predict, X,
                                       None if self._one_output else len(self.coef_))
        z = self._linear(X)
        if offset is not None:
            shift = self._offset(offset, len(z), 1 if z.ndim == 1 else z.shape[1])
            z = z + (shift[:, 0] if z.ndim == 1 else shift)
        return self._fitted_loss().inverse_link(z)

    def score(self, X, y, sample_weight=None, offset=None):
        """R^2 of the predictions; for the log-link losses (poisson, gamma, tweedie) D^2,
        the share of the deviance explained, 1 - loss / (the best constant's loss), as
        scikit-learn's PoissonRegressor, GammaRegressor and TweedieRegressor score (with
        an offset: the best of the models e^(b + offset))."""
        loss = self._fitted_loss()
        if not loss.deviance_score:
            if offset is None:
                return super().score(X, y, sample_weight)
            from sklearn.metrics import r2_score

            return r2_score(y, self.predict(X, offset), sample_weight=sample_weight)
        if _dask.is_dask_array(X):
            X, y = X.compute(), np.asarray(y)
        problem = self._validate(X, y, sample_weight, reset=False, offset=offset)
        Y, weights = problem.Y, problem.sample_weight
        total, sums = loss.target_sums(Y, weights, problem.k)
        null = loss.constant_loss(total, sums, lambda z: losses.constant_loss_sum(
            loss, Y, weights, z))
        return 1.0 - self._loss_on(problem) / null

    def _encode(self, y, dtype, sample_weight, reset, offset=None):
        held = _dask.is_dask_array(y)  # checked on the workers, as in memory
        y = y if held else np.asarray(y)
        k = 1 if y.ndim == 1 else y.shape[1]
        if not reset and (y.ndim, k) != (np.ndim(self.coef_), len(self._parameters()[1])):
            fitted = ("y of shape (n,)" if np.ndim(self.coef_) == 1
                      else f"y of shape (n, {len(self.coef_)})")
            raise ValueError(f"y has shape {y.shape}, but the model was fitted to {fitted}")
        self._one_output = y.ndim == 1
        loss = self._fitted_loss()
        Y = y if held else as_targets(y, len(y), k, dtype)
        if offset is not None:  # the same problem without one (Loss.with_offset)
            Y, sample_weight = self._without_offset(Y, sample_weight, offset, k, dtype, loss)
        return Y, sample_weight, loss, k

    def _without_offset(self, Y, sample_weight, offset, k, dtype, loss):
        """(Y, sample_weight) of the problem whose loss at z is this one's at z + offset,
        in the data's dtype; a ValueError naming offset if it is not (n,) or (n, k) finite
        values, or if the problem without it overflows."""
        if _dask.is_dask_array(Y):  # checked here, its blocks transformed on the workers
            import dask.array as da

            offset = da.asarray(offset)
            offset = offset.reshape(-1, 1) if offset.ndim == 1 else offset
            Y = Y.reshape(-1, k) if Y.ndim == 1 else Y
            if offset.shape[0] != Y.shape[0] or offset.shape[1] not in (1, k):
                raise ValueError(f"offset has shape {offset.shape}, y {Y.shape}: it must be "
                                 f"({Y.shape[0]},) or ({Y.shape[0]}, {k})")
            if not bool(da.isfinite(offset).all().compute()):
                raise ValueError("offset contains NaN or infinity")
        else:
            offset = self._offset(offset, len(Y), k)
        with np.errstate(all="ignore"):  # overflow: refused below
            Y, sample_weight = loss.with_offset(Y, sample_weight, offset)
            Y = Y.astype(dtype)
            sample_weight = None if sample_weight is None else sample_weight.astype(dtype)
        if not _dask.is_dask_array(Y) and not (np.isfinite(Y).all() and (
                sample_weight is None or (np.isfinite(sample_weight).all()
                                          and sample_weight.sum(dtype=np.float64) > 0))):
            raise ValueError(f"offset is too large for {np.dtype(dtype).name} arithmetic "
                             f"with the {loss.name} loss: the problem without it (y - offset,"
                             f" or y e^-offset weighted by e^((2 - power) offset)) "
                             f"overflows or weighs nothing; rescale it")
        return Y, sample_weight

    @staticmethod
    def _offset(offset, n: int, k: int):
        """offset (n,) or (n, k), finite, as float64 (n, 1) or (n, k)."""
        offset = np.asarray(offset)
        return as_targets(offset, n, 1 if offset.ndim == 1 else k, np.float64, "offset")

    def _fitted_loss(self) -> losses.Loss:
        return losses.get(self.loss, **self._loss_settings())

    def _shaped(self, array):
        """coef_ (n_outputs, d) and intercept_ (n_outputs,), or (d,) and a float for y of
        one dimension (scikit-learn's LinearRegression does the same)."""
        if not self._one_output:
            return array
        return array[0] if array.ndim == 2 else float(array[0])

    def _check_loaded_parameters(self, d):
        if np.ndim(getattr(self, "coef_", None)) == 2:
            k = max(len(self.coef_), 1)
            _persist.check_array(self, "coef_", np.float64, (k, d))
            _persist.check_array(self, "intercept_", np.float64, (k,))
        else:
            _persist.check_array(self, "coef_", np.float64, (d,))
            _persist.check_value(self, "intercept_", numbers.Real)
        self._one_output = self.coef_.ndim == 1

    _saved = (*_GDEstimator._saved, OFFSET)

    def _check_loaded(self):
        """As any estimator, and the command line's --offset column if saved: a name
        other than the features'."""
        super()._check_loaded()
        column = getattr(self, OFFSET, None)
        if column is None:
            self.__dict__.pop(OFFSET, None)  # as fit leaves it
            return
        features = getattr(self, "input_features_", None)
        check_offset_column(column, None, getattr(self, "feature_names_in_", None)
                            if features is None else features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


GDRegressor.__doc__ = f"""Linear regression trained by gradient descent on the mean squared
    error (or Huber's loss), for one target or several at once.

    Each epoch reads X from memory once: the forward pass, the loss and the gradient are
    fused in a compiled, multi-threaded kernel whose result does not depend on the number
    of threads. With y of shape (n_samples, n_outputs), every output is fitted in the same
    pass over X; the loss is the sum of the outputs' losses, so each output trains as it
    would alone (except that ``clip_norm``, early stopping and ``tol`` see all outputs).

    Parameters
    ----------
{_loss_doc("regression", "squared")}
{COMMON_PARAMETERS.strip(chr(10))}

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_outputs, n_features)
    intercept_ : float or ndarray of shape (n_outputs,)
    offset_column_ : str
        Only in a model ``fastgd train --offset COLUMN`` made: the table's column that
        ``fastgd predict`` and ``evaluate`` add to the raw outputs (Python's ``predict``
        takes it as ``offset=``, as ``fit`` did).
{COMMON_ATTRIBUTES.strip(chr(10))}
    With ``standardize=False``, no sample weights and n rows, the penalty compares with
    scikit-learn's as: ElasticNet / Lasso ``alpha`` = alpha / 2 with the same l1_ratio,
    Ridge ``alpha`` = n alpha / 2.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgd import GDRegressor
    >>> X = np.array([[1.0], [2.0], [3.0]]); y = np.array([2.0, 4.0, 6.0])
    >>> model = GDRegressor(optimizer="sgd", learning_rate=0.1, max_epochs=2, tol=None,
    ...                     standardize=False)
    >>> [round(loss, 4) for loss in model.fit(X, y).history_["loss"]]
    [18.6667, 0.2963]
    >>> round(float(model.coef_[0]), 4), round(model.intercept_, 4)
    (1.6711, 0.6933)
    """


class GDClassifier(ClassifierMixin, _GDEstimator):
    _losses = losses.names("classification")
    _y_checks = {}

    def __init__(self, *, loss="log", class_weight=None, optimizer="auto",
                 learning_rate="auto", momentum=0.9, beta1=0.9, beta2=0.999, rho=0.99,
                 epsilon=None, weight_decay=0.01, history_size=10,
                 line_search_fn="strong_wolfe", tolerance_grad=1e-7, tolerance_change=1e-9,
                 schedule="constant", step_size=10, gamma=0.1, power_t=0.25, eta_min=0.0,
                 warmup_epochs=0, alpha=1e-3,
                 l1_ratio=0.0, clip_norm=None, batch_size=None, shuffle=True,
                 random_state=None, max_epochs=1000, tol=1e-6, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=5, standardize=True,
                 warm_start=False, callbacks=None, checkpoint=None, checkpoint_every=1,
                 verbose=0, n_threads=None, engine="cython"):
        _store(self, locals())

    def fit(self, X, y, sample_weight=None, *, coef_init=None, intercept_init=None,
            client=None, resume=None):
        """Train on X (n_samples, n_features) and labels y (n_samples,); returns self.

        The classes are y's distinct labels (``classes_``, sorted). Training starts from
        `coef_init` and `intercept_init` (shaped as ``coef_`` and ``intercept_``) when
        given, else (with ``warm_start=True``) from the previous fit's, else from zeros.
        """
        return self._fit(X, y, sample_weight, coef_init, intercept_init, client, resume)

    fit.__doc__ += FIT_DATA

    def _check_params(self):
        weights = self.class_weight
        if isinstance(weights, dict):
            for label, weight in weights.items():
                check_number(f"class_weight[{label!r}]", weight, allow_zero=True)
        elif not (weights is None or (isinstance(weights, str) and weights == "balanced")):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict of class "
                             f"weights, got {weights!r}")
        return super()._check_params()

    def partial_fit(self, X, y, classes=None, sample_weight=None, *, client=None):
        """One epoch on X and y, going on from where the last fit or partial_fit stopped
        (see GDRegressor.partial_fit). The first call must list every class the model
        will see in `classes` (as scikit-learn's SGDClassifier); later calls may omit it.
        """
        if not hasattr(self, "coef_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            raise ValueError("class_weight='balanced' needs all of y at once: it is not "
                             "supported by partial_fit; give a dict of class weights")
        return self._partial_fit(X, y, sample_weight, client, classes=classes)

    def decision_function(self, X):
        """The logits X @ coef_.T + intercept_: (n_samples,) for two classes (positive
        for classes_[1]), else (n_samples, n_classes)."""
        if _dask.is_dask_array(X):
            return self._on_blocks(self.decision_function, X, self._logit_columns())
        z = self._linear(X)
        return z[:, 0] if z.shape[1] == 1 else z

    def _logit_columns(self):
        return None if len(self.classes_) == 2 else len(self.classes_)

    def predict(self, X):
        """The most probable class of each row."""
        if _dask.is_dask_array(X):
            return self._on_blocks(self.predict, X, None, self.classes_.dtype)
        best = LinearModel.best_class(self._linear(X))
        return self.classes_[best]

    def _check_proba(self):
        """True if the loss gives class probabilities (sklearn's available_if: else
        predict_proba is not there, hasattr is False, and calling it an AttributeError)."""
        loss = losses.LOSSES.get(self.loss)  # (an unknown loss: fit's error to give)
        if loss is not None and not loss.probabilities:
            raise AttributeError(f"probability estimates are not available for "
                                 f"loss={self.loss!r}: use loss='log' or "
                                 f"'modified_huber', or decision_function")
        return True

    @available_if(_check_proba)
    def predict_log_proba(self, X):
        """Log-probabilities of the classes (columns in the order of ``classes_``): for the
        log loss from the log-softmax of the logits (for two classes, of (0, logit)), no
        overflow at any logit; for modified Huber, the log of predict_proba's."""
        if _dask.is_dask_array(X):
            return self._on_blocks(self.predict_log_proba, X, len(self.classes_))
        z = self._linear(X)
        return self._fitted_loss().log_proba(z)

    @available_if(_check_proba)
    def predict_proba(self, X):
        """Probabilities of the classes (columns in the order of ``classes_``): the
        softmax's for the log loss; for modified Huber SGDClassifier's, (clip(z, -1, 1) +
        1) / 2 normalized over the classes (Loss.proba). Not for the losses that have
        none (hinge, squared_hinge): an AttributeError."""
        if _dask.is_dask_array(X):
            return self._on_blocks(self.predict_proba, X, len(self.classes_))
        z = self._linear(X)  # (first: an unfitted model's NotFittedError)
        return self._fitted_loss().proba(z)

    def _encode(self, y, dtype, sample_weight, reset, classes=None):
        if _dask.is_dask_array(y):
            return self._encode_dask(y, dtype, sample_weight, reset, classes)
        if not (type(y) is np.ndarray and y.ndim == 1 and y.dtype.kind in "biu"):
            check_classification_targets(y)  # integer labels are classes: nothing to check
        if reset:
            labels = np.unique(y if classes is None else np.asarray(classes))
            if len(labels) < 2:
                raise ValueError(f"y has one class only, {labels.tolist()}: GDClassifier "
                                 f"needs samples of at least 2 classes")
            self.classes_ = labels
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={classes!r} differs from the classes the model was "
                             f"fitted with, {self.classes_.tolist()}")
        index = np.searchsorted(self.classes_, y)
        unknown = (index >= len(self.classes_)) | (self.classes_[index.clip(
            max=len(self.classes_) - 1)] != y)
        if unknown.any():
            raise ValueError(f"y holds labels that are not among classes_ "
                             f"{self.classes_.tolist()}: {np.unique(y[unknown]).tolist()}")
        if self.class_weight is not None:
            per_class = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
            weights = per_class[index] if sample_weight is None else sample_weight * per_class[
                index]
            sample_weight = as_sample_weight(weights, len(y), dtype)
        loss, k = self._fitted_loss(), self._n_outputs()
        return _class_targets(index, loss, k, dtype), sample_weight, loss, k

    def _n_outputs(self) -> int:
        """One logit for two classes, one a class for more."""
        return 1 if len(self.classes_) == 2 else len(self.classes_)

    def _fitted_loss(self) -> losses.Loss:
        """The loss of two classes, or its multiclass form for more."""
        return losses.for_classes(len(self.classes_), self.loss, **self._loss_settings())

    def _encode_dask(self, y, dtype, sample_weight, reset, classes):
        """The in-memory encoding of y's distinct labels (few, computed on the cluster)
        sets and checks classes_; each block of y then becomes class indices lazily."""
        if self.class_weight is not None:
            raise ValueError("class_weight on Dask arrays is not supported yet; pass "
                             "sample_weight")
        import dask.array as da

        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        elif y.ndim != 1:
            raise ValueError(f"y must be 1-D for GDClassifier, got a Dask array of shape "
                             f"{y.shape}")
        labels = np.asarray(da.unique(y).compute())
        _, _, loss, k = self._encode(labels, dtype, None, reset, classes)
        index = y.map_blocks(partial(np.searchsorted, self.classes_), dtype=np.intp)
        if loss.class_indices or k == 1:
            return index.astype(dtype)[:, None], sample_weight, loss, k
        return (index.map_blocks(_class_targets, loss, k, dtype, new_axis=1, dtype=dtype,
                                 chunks=(index.chunks[0], (k,))), sample_weight, loss, k)

    def _shaped(self, array):
        return array

    def _validation_rows(self, Y, n_val, random_state):
        """Stratified: each class in the validation rows in its share of all rows."""
        split = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=random_state)
        labels = Y[:, 0] if Y.shape[1] == 1 else Y.argmax(axis=1)  # indices, or one-hot
        try:
            return next(split.split(np.zeros(len(Y)), labels))[1]
        except ValueError as error:  # a class too rare to share out
            raise ValueError(f"early_stopping=True draws validation rows stratified by "
                             f"class: {error}") from None

    _saved = (*_GDEstimator._saved, "classes_")

    def _check_loaded_parameters(self, d):
        classes = getattr(self, "classes_", None)
        if (not isinstance(classes, np.ndarray) or classes.ndim != 1 or len(classes) < 2
                or not np.all(classes[1:] > classes[:-1])):
            raise ValueError("classes_ is not a sorted array of 2 distinct labels or more")
        if isinstance(self.class_weight, dict) and not set(self.class_weight) <= set(classes):
            raise ValueError("class_weight names labels that are not among classes_")
        k = 1 if len(classes) == 2 else len(classes)
        _persist.check_array(self, "coef_", np.float64, (k, d))
        _persist.check_array(self, "intercept_", np.float64, (k,))


GDClassifier.__doc__ = f"""Logistic regression (two classes) and softmax regression (more),
    trained by gradient descent on the log loss; or linear support vector machines and
    SGDClassifier's other margin losses.

    Two classes: one logit z = x . coef_[0] + intercept_[0], the probability of classes_[1]
    is sigmoid(z), and the loss torch's ``BCEWithLogitsLoss``. More classes: one logit per
    class, probabilities softmax(z), and the loss torch's ``CrossEntropyLoss`` (the
    multinomial log loss, as scikit-learn's LogisticRegression). Every class's logit comes
    from the same pass over X; the losses are computed so that no logit overflows.

    The margin losses (``"hinge"``, ``"squared_hinge"``, ``"modified_huber"``) are
    SGDClassifier's, of the label as t = -1 or +1: one decision value for two classes,
    and for more one a class against the rest (one-vs-rest, each its own binary problem,
    all from the same passes). Only modified Huber has probabilities, SGDClassifier's
    (``predict_proba``); for the hinges ``predict_proba`` is not there (hasattr is False,
    a call an AttributeError): use ``decision_function``. The hinge has a kink: the
    default solver (Newton) smooths it and, with up to 200 features, ends at the exact
    optimum: SVC(kernel="linear")'s with C = 1 / (n_samples alpha) and
    ``standardize=False`` (LinearSVC's but for its penalty on the intercept); L-BFGS
    refuses it.

    Parameters
    ----------
{_loss_doc("classification", "log")}
        With more than two classes, its multiclass form: the softmax cross-entropy for
        "log", one-vs-rest for the others.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, multiplying sample_weight: ``{{label: weight}}``, or
        "balanced": n_samples / (n_classes * count of the class) (not with partial_fit).
{COMMON_PARAMETERS.strip(chr(10))}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels, sorted; any type numpy can sort (strings too).
    coef_ : ndarray of shape (1, n_features) for two classes, else (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
{COMMON_ATTRIBUTES.strip(chr(10))}
    With ``standardize=False``, ``l1_ratio=0`` and no sample weights, the objective is
    scikit-learn LogisticRegression's with ``C = 1 / (n_samples alpha)`` (divided by
    C n_samples).

    Examples
    --------
    >>> import numpy as np
    >>> from fastgd import GDClassifier
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array(["no", "no", "yes", "yes"])
    >>> model = GDClassifier(learning_rate=1.0).fit(X, y)
    >>> model.predict([[0.5], [2.5]]).tolist()
    ['no', 'yes']
    """


def _class_targets(index, loss, k: int, dtype):
    """The targets (n, targets per row) of class indices (n,): the indices themselves for
    two classes (0 or 1) or a loss of class indices (the softmax's), else one column a
    class, 1 in the row's class's (one-vs-rest: the margin losses')."""
    if loss.class_indices or k == 1:
        return index[:, None].astype(dtype)
    Y = np.zeros((len(index), k), dtype)
    Y[np.arange(len(index)), index] = 1
    return Y


ESTIMATORS = {cls.__name__: cls for cls in (GDRegressor, GDClassifier)}  # for fastgd.load


def from_saved(saved: _persist.Saved):
    """The estimator of a model file's contents (fastgd/_persist.py), checked."""
    cls = ESTIMATORS.get(saved.kind)
    if cls is None:
        raise ValueError(f"unknown estimator {saved.kind!r}")
    estimator = cls()
    unknown = set(saved.params) - set(estimator.get_params(deep=False))
    if unknown:
        raise ValueError(f"unknown parameters {sorted(unknown)}")
    estimator.set_params(**saved.params)
    for name, value in (*saved.values.items(), *saved.arrays.items()):
        if name not in cls._saved:
            raise ValueError(f"unexpected attribute {name!r}")
        setattr(estimator, name, value)
    estimator._check_loaded()
    return estimator
