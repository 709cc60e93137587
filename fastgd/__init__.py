"""fastgd: gradient-descent training of linear models at the speed of memory."""

from fastgd import reference
from fastgd._api import make_loss_and_grad
from fastgd._compiled import kernels
from fastgd._driver import DivergenceError
from fastgd._persist import load

__version__ = "0.1.0.dev0"

from fastgd._config import show_config  # noqa: E402 (reads __version__)

loss_and_grad = make_loss_and_grad(kernels.grad_pass, "fastgd")


def __getattr__(name):
    """The estimators load on first use: they need scikit-learn, the kernel does not."""
    if name in ("GDRegressor", "GDClassifier"):
        try:
            from fastgd import estimators
        except ImportError as error:
            if error.name is None or not error.name.startswith(("sklearn", "scipy")):
                raise
            raise ImportError(f"fastgd.{name} needs scikit-learn: pip install "
                              f"'fastgd[sklearn]' (the kernel, fastgd.loss_and_grad, does "
                              f"not)") from error
        return getattr(estimators, name)
    raise AttributeError(f"module 'fastgd' has no attribute {name!r}")

__all__ = ["DivergenceError", "GDClassifier", "GDRegressor", "__version__", "load", "loss_and_grad",
           "reference", "show_config"]
