"""fastgd: gradient-descent training of linear models at the speed of memory."""

from fastgd import reference
from fastgd._api import make_loss_and_grad
from fastgd._compiled import kernels
from fastgd._config import show_config
from fastgd._errors import ConvergenceWarning, DivergenceError, PerformanceWarning
from fastgd._persist import read as _read
from fastgd._version import __version__
from fastgd.model import LinearModel

loss_and_grad = make_loss_and_grad(kernels, "fastgd")


def load(path):
    """The model saved at `path` by ``save`` (a checkpoint's model too): the estimator
    (GDRegressor or GDClassifier) where scikit-learn is installed, else a
    fastgd.LinearModel, which predicts the same (``LinearModel.load`` always gives one).
    Anything but a fastgd model file is a ValueError; the file is never unpickled."""
    try:
        from fastgd.estimators import from_saved
    except ImportError as error:
        if error.name is None or not error.name.startswith(("sklearn", "scipy")):
            raise
        return LinearModel.load(path)
    return _read(path, from_saved)[0]


def register_skl2onnx() -> None:
    """Teach skl2onnx GDRegressor and GDClassifier, so that ``skl2onnx.to_onnx(pipeline,
    X[:1])`` converts a Pipeline that ends with one (fastgd/onnx.py; needs skl2onnx)."""
    from fastgd._skl2onnx import register

    register()


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


__all__ = ["ConvergenceWarning", "DivergenceError", "GDClassifier", "GDRegressor",
           "PerformanceWarning",
           "LinearModel", "__version__", "load", "loss_and_grad", "reference", "register_skl2onnx",
           "show_config"]
