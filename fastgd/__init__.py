"""fastgd: gradient-descent training of linear models at the speed of memory."""

from fastgd import reference
from fastgd._api import make_loss_and_grad
from fastgd._compiled import kernels
from fastgd._driver import DivergenceError
from fastgd._persist import load
from fastgd.estimators import GDRegressor

__version__ = "0.1.0.dev0"

loss_and_grad = make_loss_and_grad(kernels.grad_pass, "fastgd")

__all__ = ["DivergenceError", "GDRegressor", "__version__", "load", "loss_and_grad",
           "reference"]
