"""What training raises and warns: importable without the training loop or scikit-learn."""

from __future__ import annotations

import functools
import os
import sys

PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class DivergenceError(ValueError):
    """Training diverged: the loss became non-finite or exploded.

    The estimator keeps the parameters of the last epoch whose loss was finite; `epoch`
    (1-based) is the epoch whose forward pass saw the bad loss.
    """

    def __init__(self, message: str, epoch: int):
        super().__init__(message)
        self.epoch = epoch


class ConvergenceWarning(UserWarning):
    """Training stopped at max_epochs before it converged."""


class PerformanceWarning(UserWarning):
    """The settings ask for much more work than the data need (and say what would not)."""


def convergence_warning() -> type[Warning]:
    """The class to warn with: fastgd's ConvergenceWarning, and when scikit-learn is loaded
    (the estimators load it) a subclass of both it and scikit-learn's, so that filters on
    either apply; importing scikit-learn only to warn would cost a second."""
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    if sklearn_exceptions is None:
        return ConvergenceWarning
    return _both(sklearn_exceptions.ConvergenceWarning)


@functools.lru_cache(maxsize=1)
def _both(theirs: type) -> type:
    return type("ConvergenceWarning", (ConvergenceWarning, theirs),
                {"__module__": __name__, "__doc__": ConvergenceWarning.__doc__})


def user_stacklevel() -> int:
    """warnings.warn's stacklevel, for the function that calls it, that points at the first
    caller outside fastgd (the user's fit, say)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
