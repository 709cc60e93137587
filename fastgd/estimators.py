"""scikit-learn estimators on top of the shared training driver."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from fastgd import _driver, reference
from fastgd._compiled import kernels
from fastgd._validation import (
    as_matrix,
    as_sample_weight,
    as_vector,
    check_choice,
    check_number,
    effective_n_threads,
)

ENGINES = {"cython": kernels, "numpy": reference}
OPTIMIZERS = ("sgd",)


class GDRegressor(RegressorMixin, BaseEstimator):
    """Linear regression trained by gradient descent on the mean squared error.

    Each epoch reads X from memory once: the forward pass, the loss and the gradient are
    fused in a compiled, multi-threaded kernel whose result does not depend on the number
    of threads.

    Parameters
    ----------
    optimizer : {"sgd"}, default="sgd"
        The update rule. ``"sgd"`` is the plain step ``theta -= learning_rate * grad``
        (full-batch gradient descent when ``batch_size=None``).
    learning_rate : float, default=0.01
    batch_size : int or None, default=None
        Rows per gradient step; None uses all rows (full batch). The last, partial batch
        of an epoch is used too (its gradient is the mean over its rows).
    max_epochs : int, default=1000
    tol : float or None, default=1e-4
        Stop when an epoch's training loss improves on the previous one by tol or less
        (a rising loss is not convergence). None runs all max_epochs.
    standardize : bool, default=True
        Train on standardized features (zero mean, unit variance) without copying X;
        ``coef_`` and ``intercept_`` are reported in the original units.
    n_threads : int or None, default=None
        None: what OpenMP allows (OMP_NUM_THREADS, threadpoolctl), at most the physical
        cores; -1: all of those. Results are identical for any value.
    engine : {"cython", "numpy"}, default="cython"
        ``"numpy"`` runs the same training loop on :mod:`fastgd.reference`, the plain
        NumPy definition of the mathematics: the baseline and the check.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
    intercept_ : float
    n_iter_ : int
        Epochs run.
    history_ : dict of lists
        ``history_["loss"][k]`` is the mean training loss of epoch k's forward pass, at the
        parameters before that epoch's updates.
    mean_, scale_ : ndarray of shape (n_features,) or None
        The standardization used (``standardize=True``).
    n_features_in_ : int

    Raises
    ------
    fastgd.DivergenceError
        From ``fit``, when the loss becomes non-finite or explodes. The estimator is then
        fitted with the parameters of the last epoch with a finite loss.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgd import GDRegressor
    >>> X = np.array([[1.0], [2.0], [3.0]]); y = np.array([2.0, 4.0, 6.0])
    >>> model = GDRegressor(learning_rate=0.1, max_epochs=2, tol=None, standardize=False)
    >>> [round(loss, 4) for loss in model.fit(X, y).history_["loss"]]
    [18.6667, 0.2963]
    >>> round(float(model.coef_[0]), 4), round(model.intercept_, 4)
    (1.6711, 0.6933)
    """

    def __init__(self, *, optimizer="sgd", learning_rate=0.01, batch_size=None,
                 max_epochs=1000, tol=1e-4, standardize=True, n_threads=None,
                 engine="cython"):
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.tol = tol
        self.standardize = standardize
        self.n_threads = n_threads
        self.engine = engine

    def _check_params(self):
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("engine", self.engine, tuple(ENGINES))
        check_number("learning_rate", self.learning_rate)
        check_number("batch_size", self.batch_size, integer=True, allow_none=True)
        check_number("max_epochs", self.max_epochs, integer=True)
        check_number("tol", self.tol, allow_none=True, allow_zero=True)
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise TypeError(f"standardize must be True or False, got {self.standardize!r}")
        return effective_n_threads(self.n_threads)

    def fit(self, X, y, sample_weight=None):
        """Train on X (n_samples, n_features) and y (n_samples,); returns self."""
        n_threads = self._check_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], order=None,
                             ensure_all_finite=False, y_numeric=True)
        X = as_matrix(X)
        n, d = X.shape
        y = as_vector(y, "y", n, X.dtype)
        sample_weight = as_sample_weight(sample_weight, n, X.dtype)
        result = _driver.train(
            ENGINES[self.engine], X, y, sample_weight,
            coef=np.zeros(d), intercept=0.0, loss="squared",
            learning_rate=float(self.learning_rate), batch_size=self.batch_size,
            max_epochs=self.max_epochs, tol=self.tol, standardize=bool(self.standardize),
            n_threads=n_threads)
        self.coef_ = result.coef
        self.intercept_ = result.intercept
        self.n_iter_ = result.n_iter
        self.history_ = result.history
        std = result.standardization
        self.mean_, self.scale_ = (std.mean, std.scale) if std else (None, None)
        if result.error is not None:
            raise result.error
        return self

    def predict(self, X):
        """Predictions X @ coef_ + intercept_, in X's floating dtype."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return X @ self.coef_.astype(X.dtype) + X.dtype.type(self.intercept_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
